"""Gap filling: kernels and Sequence.fill_gaps against a literal reference.

The definition is docs/contract.md#gap-filling.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from reference import fill_gaps as reference_fill
from sima_fast import Sequence
from sima_fast.kernels.gaps import fill_forward, first_finite, last_finite_before


@given(
    frames=st.integers(1, 30),
    dtype=st.sampled_from(["float32", "float64"]),
    pattern=st.sampled_from(["scattered", "rows", "all-nan-frame", "none", "mostly"]),
    chunk=st.integers(1, 9),
    seed=st.integers(0, 10_000),
)
def test_fill_gaps_matches_definition(frames, dtype, pattern, chunk, seed):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(frames, 2, 4, 5, 2)).astype(dtype)
    if pattern == "scattered":
        data[rng.random(data.shape) < 0.4] = np.nan
    elif pattern == "rows":
        for t in range(frames):
            data[t, :, : rng.integers(0, 3)] = np.nan
            data[t, :, :, : rng.integers(0, 3)] = np.inf
    elif pattern == "all-nan-frame":
        data[rng.integers(0, frames)] = np.nan
    elif pattern == "mostly":
        data[rng.random(data.shape) < 0.95] = np.nan
    data[:, 0, 0, 0, 0] = np.nan  # never observed: stays NaN
    seq = Sequence.create("ndarray", data).fill_gaps()
    expected = reference_fill(data)
    assert seq.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(seq), expected)
    got = np.concatenate([c.copy() for _, c in seq.iter_chunks(chunk, reuse_buffer=True)])
    np.testing.assert_array_equal(got, expected.astype(dtype))
    # random access: a read that starts in the middle rebuilds the carried values
    t0 = int(rng.integers(0, frames))
    t1 = int(rng.integers(t0, frames + 1))
    np.testing.assert_array_equal(seq.read_chunk(t0, t1), expected[t0:t1].astype(dtype))


def test_fill_gaps_on_integers_is_identity():
    seq = Sequence.create("ndarray", np.ones((3, 1, 2, 2, 1), dtype=np.uint16))
    assert seq.fill_gaps() is seq


def test_kernels_directly():
    x = np.array([[np.nan, 1.0, np.nan], [2.0, np.nan, np.nan], [np.nan, 3.0, np.nan]])
    found = np.zeros(3, bool)
    first = np.full(3, np.nan)
    assert first_finite(x, found, first) == 1
    np.testing.assert_array_equal(first, [2.0, 1.0, np.nan])
    out = np.empty_like(x)
    last = first.copy()
    fill_forward(x, last, out)
    np.testing.assert_array_equal(out, [[2, 1, np.nan], [2, 1, np.nan], [2, 3, np.nan]])
    np.testing.assert_array_equal(last, [2.0, 3.0, np.nan])
    found[:] = False
    value = np.full(3, np.nan)
    assert last_finite_before(x, found, value) == 1
    np.testing.assert_array_equal(value, [2.0, 3.0, np.nan])


def test_first_pass_stops_early(monkeypatch):
    data = np.random.default_rng(0).normal(size=(50, 1, 3, 3, 1))
    data[0, 0, 0, 0, 0] = np.nan
    base = Sequence.create("ndarray", data).mask([])  # a float wrapper read through _read
    cls = type(base)
    monkeypatch.setattr(cls, "default_chunk_frames", lambda self: 5)
    reads = []
    real = cls._read

    def spy(self, start, stop, out):
        reads.append((start, stop))
        return real(self, start, stop, out)

    monkeypatch.setattr(cls, "_read", spy)
    base.fill_gaps().first_values()
    assert reads == [(0, 5)]  # every pixel was seen in the first chunk


def test_filled_sequence_round_trips_through_a_dataset(tmp_path):
    import sima_fast as sima

    data = np.random.default_rng(1).normal(size=(6, 1, 3, 4, 1))
    data[2] = np.nan
    seq = Sequence.create("ndarray", data).fill_gaps()
    ds = sima.ImagingDataset([seq], str(tmp_path / "filled"))
    again = sima.ImagingDataset.load(ds.savedir)
    np.testing.assert_array_equal(np.asarray(again.sequences[0]), reference_fill(data))

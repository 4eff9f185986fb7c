"""BatchRegistrar on several threads, and RigidRegistration2D reading integer frames as they are.

With ``workers`` above 1 the frames of each call are shared out between
threads that each run the whole registration chain on their share; the
answers must be those of one thread, whatever the number of frames, the
block size or the dtype, and the buffers must stay bounded by the block.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

import sima_fast as sima
from sima_fast.motion.base import iter_estimation_chunks
from sima_fast.registration import BatchRegistrar


def _frames(n: int, size: int, seed: int, truth: bool = False) -> tuple[np.ndarray, ...]:
    """A reference crop of a smooth random field and ``n`` whole-pixel crops, with noise.

    Frame ``k`` is the field from ``offsets[k]`` on, the reference from
    ``(4, 4)`` on: its displacement is ``offsets[k] - 4``.
    """
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal((size + 16, size + 16)), 2.0) * 200 + 1000
    offsets = rng.integers(0, 9, (n, 2))
    frames = np.stack([field[y : y + size, x : x + size] for y, x in offsets])
    frames += rng.normal(0, 5, frames.shape)
    ref = field[4 : 4 + size, 4 : 4 + size]
    return (ref, frames, offsets - 4) if truth else (ref, frames)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 11),
    workers=st.integers(2, 4),
    block=st.integers(1, 6),
    dtype=st.sampled_from(["uint16", "float32", "float64"]),
    seed=st.integers(0, 2**16),
)
def test_threads_give_the_answers_of_one_thread(n, workers, block, dtype, seed):
    ref, frames = _frames(n, 40, seed)
    frames = frames.astype(dtype)
    one = BatchRegistrar(ref, max_shift=8)
    many = BatchRegistrar(ref, max_shift=8, workers=workers)
    one.BLOCK = many.BLOCK = block
    expected = one.register(frames)
    got = many.register(frames)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # and again, reusing the buffers
    np.testing.assert_allclose(many.register(frames[::-1]), expected[::-1], rtol=0, atol=1e-6)


def test_threads_find_known_shifts_and_share_the_block():
    ref, frames, truth = _frames(9, 64, seed=5, truth=True)
    reg = BatchRegistrar(ref, max_shift=10, workers=2)
    reg.BLOCK = 4
    d = reg.register(frames)
    assert d.shape == (9, 3)
    assert np.all(d[:, 2] > 0.2)
    # each of the 2 threads has buffers for BLOCK // 2 frames: the block in all
    assert [s[0].shape[0] for s in reg._scratch] == [2, 2]
    assert np.abs(d[:, :2] - truth).max() < 0.2


def test_threads_pass_on_a_bad_block():
    ref, frames = _frames(4, 32, seed=2)
    reg = BatchRegistrar(ref, workers=2)
    with pytest.raises(ValueError, match="frames must be"):
        reg.register(frames[:, :, :20])


def test_a_blank_frame_gives_zero_on_threads():
    ref, frames = _frames(5, 32, seed=3)
    frames[2] = np.nan
    d = BatchRegistrar(ref, workers=3).register(frames)
    assert d[2].tolist() == [0.0, 0.0, 0.0]
    assert np.all(d[[0, 1, 3, 4], 2] > 0)


def test_raw_chunks_are_the_frames_as_stored():
    data = np.arange(5 * 2 * 3 * 4, dtype=np.uint16).reshape(5, 2, 3, 4, 1)
    seq = sima.Sequence.create("ndarray", data)
    blocks = list(iter_estimation_chunks(seq, 2, raw=True))
    assert [t for t, _ in blocks] == [0, 2, 4]
    assert all(b.dtype == np.uint16 and b.shape[1:] == (2, 3, 4) for _, b in blocks)
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), data[..., 0])
    # several channels are summed as without raw
    two = sima.Sequence.create("ndarray", np.concatenate([data, data], axis=-1))
    (_, summed), *_ = iter_estimation_chunks(two, 5, raw=True)
    assert summed.dtype == np.float32
    np.testing.assert_array_equal(summed, 2 * data[..., 0].astype(np.float32))


@pytest.mark.parametrize("workers", [1, 2])
def test_rigid_strategy_reads_integers_as_they_are(tmp_path, monkeypatch, workers):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path))
    _, frames = _frames(12, 64, seed=8)
    ints = np.round(frames).astype(np.uint16)
    seq_int = sima.Sequence.create("ndarray", ints[:, None, :, :, None])
    seq_float = sima.Sequence.create("ndarray", ints.astype(np.float32)[:, None, :, :, None])
    strategy = sima.motion.RigidRegistration2D(max_displacement=12, n_processes=workers)
    a = strategy.estimate([seq_int])[0]
    b = strategy.estimate([seq_float])[0]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", ["float16", ">u2", "bool"])
def test_rigid_strategy_converts_what_the_kernels_cannot_read(tmp_path, monkeypatch, dtype):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path))
    _, frames = _frames(6, 48, seed=9)
    data = frames > 1000 if dtype == "bool" else frames.astype(dtype)
    seq = sima.Sequence.create("ndarray", data[:, None, :, :, None])
    d = sima.motion.RigidRegistration2D(max_displacement=10).estimate([seq])[0]
    assert d.shape == (6, 1, 2) and np.isfinite(d).all()

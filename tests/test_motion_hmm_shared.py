"""The 2-D and 3-D hidden Markov models are one implementation.

The ``(dy, dx)`` kernels of ``sima_fast.kernels.hmm`` are the ``(dz, dy, dx)``
ones with a single plane offset, and :class:`HiddenMarkov2D` and
:class:`HiddenMarkov3D` share their arguments and estimation. These tests pin
that down where it shows: the 2-D kernels give exactly what the 3-D ones give
at ``iz = 0`` (same arithmetic, so bit for bit, NaN rows and both float
dtypes included), both strategies validate and print themselves alike, and
each strategy's verbose output names itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sima_fast as sima
from sima_fast._validate import ArgumentTypeError
from sima_fast.kernels.hmm import (
    accumulate_rows,
    accumulate_rows3d,
    beam_viterbi,
    beam_viterbi3d,
    mark_nan_rows,
    row_prefix_sums,
    unit_loglik,
    unit_loglik3d,
)
from sima_fast.motion.hmm import HiddenMarkov2D, HiddenMarkov3D


def canvas(Z, Y, X, ny, nx, rng):
    lam = rng.uniform(0.3, 6.0, (Z, Y + ny - 1, X + nx - 1))
    cum = np.zeros((*lam.shape[:2], lam.shape[2] + 1))
    row_prefix_sums(lam, cum)
    return lam, np.log(lam), cum


def counts(rng, shape, nan_frac, dtype):
    frames = rng.poisson(2.5, shape).astype(dtype)
    frames[rng.random(shape) < nan_frac] = np.nan
    return frames


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    Z=st.integers(1, 3),
    Y=st.integers(1, 5),
    X=st.integers(1, 7),
    nan_frac=st.sampled_from([0.0, 0.25]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_unit_loglik_is_unit_loglik3d_at_plane_offset_zero(seed, Z, Y, X, nan_frac, dtype):
    rng = np.random.default_rng(seed)
    n, ny, nx = 2, 3, 4
    frames = counts(rng, (n, Z, Y, X), nan_frac, dtype)
    lam, logref, cum = canvas(Z, Y, X, ny, nx, rng)
    nan_rows = np.zeros(n * Z * Y, np.bool_)
    mark_nan_rows(frames, nan_rows)
    for _ in range(4):
        nrows = int(rng.integers(1, n * Z * Y + 1))
        row0 = int(rng.integers(0, n * Z * Y - nrows + 1))
        iy, ix = int(rng.integers(0, ny)), int(rng.integers(0, nx))
        a = unit_loglik(frames, row0, nrows, nan_rows, iy, ix, logref, lam, cum)
        b = unit_loglik3d(frames, row0, nrows, nan_rows, 0, iy, ix, logref, lam, cum)
        assert a == b


@pytest.mark.parametrize("seed", [0, 5])
def test_accumulate_rows_is_accumulate_rows3d_at_plane_offset_zero(seed):
    rng = np.random.default_rng(seed)
    n, Z, Y, X, ny, nx = 4, 2, 5, 6, 3, 2
    frames = counts(rng, (n, Z, Y, X), 0.15, np.float32)
    iy = rng.integers(0, ny, (n, Z, Y)).astype(np.int32)
    ix = rng.integers(0, nx, (n, Z, Y)).astype(np.int32)
    shape = (Z, Y + ny - 1, X + nx - 1)
    two = [np.zeros(shape) for _ in range(3)]
    three = [np.zeros(shape) for _ in range(3)]
    accumulate_rows(frames, iy, ix, *two)
    accumulate_rows3d(frames, np.zeros_like(iy), iy, ix, *three)
    for a, b in zip(two, three):
        np.testing.assert_array_equal(a, b)
    assert two[2].sum() == np.isfinite(frames).sum()


def run(kernel, frames, sizes, lam, logref, cum, steps, prior, k, margin):
    """Run one beam kernel over every row of ``frames`` (one row per unit)."""
    rows = frames.shape[0] * frames.shape[1] * frames.shape[2]
    S = int(np.prod(sizes))
    nan_rows = np.zeros(rows, np.bool_)
    mark_nan_rows(frames, nan_rows)
    bp, stt = np.zeros((rows, k), np.int16), np.zeros((rows, k), np.int32)
    nslots = np.zeros(rows, np.int32)
    beam = (np.zeros(k, np.int32), np.zeros(k), np.zeros(1, np.int64))
    done = kernel(
        frames, 0, rows, 1, *sizes, logref, lam, cum, nan_rows, *steps, *steps, prior,
        True, margin, *beam, bp, stt, nslots, 0,
        np.full(S, -np.inf), np.zeros(S, np.int32), np.zeros(S, np.int32),
    )  # fmt: skip
    return done, bp, stt, nslots, beam[1]


@pytest.mark.parametrize("margin", [np.inf, 4.0])
def test_beam_viterbi_is_beam_viterbi3d_with_one_z_state(margin):
    rng = np.random.default_rng(11)
    Z, Y, X, ny, nx, k = 2, 5, 6, 4, 3, 5
    frames = counts(rng, (3, Z, Y, X), 0.1, np.float32)
    lam, logref, cum = canvas(Z, Y, X, ny, nx, rng)
    d = np.arange(-1, 2)
    sy, sx = (a.ravel().astype(np.int64) for a in np.meshgrid(d, d, indexing="ij"))
    lp = -0.7 * (sy * sy + sx * sx).astype(np.float64)
    prior = rng.normal(0.0, 1.0, ny * nx)
    two = run(beam_viterbi, frames, (ny, nx), lam, logref, cum, (sy, sx, lp), prior, k, margin)
    sz = np.zeros_like(sy)
    three = run(
        beam_viterbi3d, frames, (1, ny, nx), lam, logref, cum, (sz, sy, sx, lp), prior, k, margin
    )
    assert two[0] == three[0] == 3 * Z * Y
    for a, b in zip(two[1:], three[1:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("cls", "good", "bad"),
    [(HiddenMarkov2D, (2, 3), (1, 2, 3)), (HiddenMarkov3D, (1, 2, 3), (2, 3))],
)
def test_both_strategies_validate_and_print_themselves_alike(cls, good, bad):
    strategy = cls(granularity=("row", 2), max_displacement=good, restarts=0, verbose=False)
    text = repr(strategy)
    assert text.startswith(f"{cls.__name__}(granularity=('row', 2), num_states_retained=50, ")
    assert eval(text, {cls.__name__: cls}).__dict__.keys() == strategy.__dict__.keys()
    assert repr(eval(text, {cls.__name__: cls})) == text
    with pytest.raises(ArgumentTypeError, match="max_displacement"):
        cls(max_displacement=bad)
    with pytest.raises(ValueError, match="num_states_retained"):
        cls(num_states_retained=0)


def test_each_strategy_names_itself_in_its_verbose_output(capsys):
    rng = np.random.default_rng(2)
    volume = rng.poisson(25.0, (5, 16, 16)).astype(np.uint16)
    frames = np.stack([volume[t % 2 : t % 2 + 3, 1:13, 1:13] for t in range(4)])
    seq = sima.Sequence.create("ndarray", frames[..., None])
    d3 = HiddenMarkov3D(verbose=True).estimate([seq])[0]
    err3 = capsys.readouterr().err
    d2 = HiddenMarkov2D(verbose=True).estimate([seq])[0]
    err2 = capsys.readouterr().err
    assert d3.shape == (4, 3, 12, 3) and d2.shape == (4, 3, 12, 2)
    assert "HiddenMarkov3D: rigid first pass" in err3 and "HiddenMarkov2D" not in err3
    assert "HiddenMarkov2D: rigid first pass" in err2 and "HiddenMarkov3D" not in err2

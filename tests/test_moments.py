"""The streaming-moments kernel and MomentState against numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from sima_fast.kernels.moments import MomentState, update_moments

DTYPES = ["uint16", "int16", "float32", "float64"]


def random_frames(rng, shape, dtype):
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -30000), min(info.max, 65535), size=shape, dtype=dtype)
    return (rng.normal(1000, 300, size=shape)).astype(dtype)


def assert_state_matches(state: MomentState, frames: np.ndarray, rtol=1e-10):
    expected = ref.projections(frames)
    np.testing.assert_allclose(
        state.mean_value(), expected["time_averages"], rtol=rtol, equal_nan=True
    )
    np.testing.assert_allclose(state.std(), expected["time_std"], rtol=rtol, equal_nan=True)
    np.testing.assert_allclose(
        state.kurtosis(), expected["time_kurtosis"], rtol=rtol, equal_nan=True
    )


@given(
    frames=st.integers(1, 40),
    pixels=st.integers(1, 70),
    dtype=st.sampled_from(DTYPES),
    chunks=st.lists(st.integers(1, 17), min_size=1, max_size=4),
    nan_fraction=st.sampled_from([0.0, 0.3, 0.9]),
    seed=st.integers(0, 10_000),
)
def test_chunked_updates_match_numpy_scipy(frames, pixels, dtype, chunks, nan_fraction, seed):
    rng = np.random.default_rng(seed)
    data = random_frames(rng, (frames, pixels), dtype)
    if np.dtype(dtype).kind == "f" and nan_fraction:
        data[rng.random(data.shape) < nan_fraction] = np.nan
        data[:, 0] = np.nan  # a never-observed pixel
        if frames > 2:
            data[1, :] = np.inf  # non-finite values are skipped too
    state = MomentState.empty((pixels,))
    t = 0
    for size in chunks * (frames // max(sum(chunks), 1) + 1):
        if t >= frames:
            break
        state.update(data[t : t + size])
        t += size
    clean = np.where(np.isfinite(data.astype(np.float64)), data, np.nan)
    assert_state_matches(state, clean)


def test_accuracy_on_uint16_with_mostly_nan_pixels():
    """1e-10 relative against float64 numpy/scipy, pixels NaN in most frames included."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 65535, size=(2000, 64), dtype=np.uint16).astype(np.float32)
    data[:, :32][rng.random((2000, 32)) < 0.97] = np.nan
    data[:5, 40] = 60000.0  # an outlying start: the first shift is far from the mean
    state = MomentState.empty((64,))
    for t0 in range(0, 2000, 128):
        state.update(data[t0 : t0 + 128])
    assert_state_matches(state, data.astype(np.float64), rtol=1e-10)


def test_large_offset_uint16_is_accurate():
    rng = np.random.default_rng(1)
    data = (65000 + rng.integers(-3, 4, size=(3000, 16))).astype(np.uint16)
    state = MomentState.empty((16,))
    for t0 in range(0, 3000, 250):
        state.update(data[t0 : t0 + 250])
    assert_state_matches(state, data, rtol=1e-10)


def test_constant_and_unobserved_pixels():
    data = np.full((20, 3), 7.0, dtype=np.float32)
    data[:, 1] = np.nan
    data[::2, 2] = np.nan
    state = MomentState.empty((3,))
    state.update(data[:13])
    state.update(data[13:])
    assert state.n.tolist() == [20, 0, 10]
    assert state.m2.tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(state.kurtosis()).all()
    assert np.isnan(state.mean_value()[1]) and np.isnan(state.std()[1])
    assert state.mean_value()[0] == 7.0 and state.std()[2] == 0.0


@given(split=st.integers(0, 30), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 1000))
def test_merge_equals_one_pass(split, dtype, seed):
    rng = np.random.default_rng(seed)
    data = random_frames(rng, (30, 2, 3), dtype)
    if np.dtype(dtype).kind == "f":
        data[rng.random(data.shape) < 0.3] = np.nan
    a, b, whole = (MomentState.empty((2, 3)) for _ in range(3))
    a.update(data[:split])
    b.update(data[split:])
    whole.update(data)
    merged = a.merge(b)
    for name in ("n", "mean", "m2", "m3", "m4"):
        np.testing.assert_allclose(
            getattr(merged, name), getattr(whole, name), rtol=1e-9, atol=1e-6, err_msg=name
        )
    np.testing.assert_allclose(merged.kurtosis(), whole.kurtosis(), rtol=1e-10, equal_nan=True)


def test_kernel_interface_and_errors():
    state = MomentState.empty((2, 2))
    with pytest.raises(ValueError, match="do not match"):
        state.update(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="2-D"):
        update_moments(np.zeros(3), *[np.zeros(3)] * 5)
    with pytest.raises(TypeError, match="numbers"):
        update_moments(np.zeros((2, 2), dtype="U1"), *[np.zeros(2)] * 5)
    with pytest.raises(ValueError, match="shapes"):
        state.merge(MomentState.empty((3,)))
    state.update(np.zeros((0, 2, 2)))  # no frames: nothing changes
    assert state.n.sum() == 0
    copy = state.copy()
    state.update(np.ones((1, 2, 2), dtype=np.uint8))
    assert copy.n.sum() == 0 and state.n.sum() == 4


def test_single_frame_gives_zero_std_and_nan_kurtosis():
    state = MomentState.empty((5,))
    state.update(np.arange(5, dtype=np.float64)[None])
    np.testing.assert_array_equal(state.std(), np.zeros(5))
    assert np.isnan(state.kurtosis()).all()
    np.testing.assert_array_equal(
        scipy.stats.kurtosis(np.arange(5.0)[None], fisher=False, bias=True, axis=0).shape, (5,)
    )


def test_gaps_appearing_after_clean_chunks():
    """The unchecked fast path must notice a NaN or inf that turns up later."""
    rng = np.random.default_rng(5)
    data = rng.normal(100, 5, size=(40, 300)).astype(np.float32)
    data[25, 7] = np.nan
    data[33, 200] = np.inf
    data[38, 201] = -np.inf
    state = MomentState.empty((300,))
    for t0 in range(0, 40, 10):
        state.update(data[t0 : t0 + 10])
    assert state.frames == 40
    assert state.n[7] == 39 and state.n[200] == 39 and state.n[201] == 39 and state.n[0] == 40
    clean = np.where(np.isfinite(data), data, np.nan).astype(np.float64)
    assert_state_matches(state, clean)
    # without the hint (frames_seen=-1) the kernel still detects and redoes
    n, mean, m2, m3, m4 = (np.zeros(300) for _ in range(5))
    for t0 in range(0, 40, 10):
        update_moments(data[t0 : t0 + 10], n, mean, m2, m3, m4)
    np.testing.assert_array_equal(n, state.n)
    np.testing.assert_allclose(m2, state.m2, rtol=1e-12)


def test_finalisers_equal_the_numpy_expressions_bit_for_bit():
    """The fused finalisers against the plain numpy formulas, on every edge of their domain.

    n of 0 and NaN, M2 negative (rounding), zero, tiny (M2² underflows), NaN and
    inf, M4 NaN; in a non-contiguous 2-D state, whose shape the results keep.
    """
    rng = np.random.default_rng(11)
    size = 6000
    n = rng.choice([0.0, 1.0, 5.0, 100.0, np.nan], size)
    mean = rng.normal(size=size) * 1e3
    m2 = rng.choice([-1e-12, 0.0, np.nan, np.inf, 1e-300, 1.0, 123.4], size) * rng.random(size)
    m4 = rng.random(size) * 1e5
    m4[::7] = np.nan
    arrays = [a.reshape(60, 100)[:, ::2] for a in (n, mean, m2, m2.copy(), m4)]
    state = MomentState(*arrays)
    n, mean, m2, _, m4 = arrays
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        expected = {
            "mean_value": np.where(n > 0, mean, np.nan),
            "std": np.where(n > 0, np.sqrt(np.maximum(m2, 0.0) / n), np.nan),
            "kurtosis": np.where((n > 0) & (m2 > 0), n * m4 / (m2 * m2), np.nan),
        }
    for name, want in expected.items():
        got = getattr(state, name)()
        assert got.shape == (60, 50) and got.dtype == np.float64
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_empty_state_arrays_are_zero_and_independent():
    state = MomentState.empty((3, 4))
    arrays = (state.n, state.mean, state.m2, state.m3, state.m4)
    assert all(a.shape == (3, 4) and a.dtype == np.float64 and not a.any() for a in arrays)
    state.m2[0, 0] = 1.0  # views of one block, but no two share an element
    assert sum(int(a[0, 0] != 0) for a in arrays) == 1
    scalar = MomentState.empty(())  # one-pixel frames of shape (): arrays, not numpy scalars
    scalar.update(np.array([1.0, 2.0, 4.0]))
    assert scalar.n.shape == () and scalar.std().shape == ()
    np.testing.assert_allclose(scalar.std(), np.std([1.0, 2.0, 4.0]), rtol=1e-14)

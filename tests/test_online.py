"""The online extractor (``sima_fast.online``) against the offline code and exact solvers.

Extraction and projections are compared with ``ImagingDataset.extract`` and
the dataset's projections on the same frames; the online AR(1) deconvolution
with a slow exact solution of the same penalised problem (cvxpy + Clarabel).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
from multiprocessing import shared_memory

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from sima_fast import ImagingDataset, Sequence
from sima_fast.kernels.moments import MomentState
from sima_fast.online import OnlineExtractor
from sima_fast.ROI import ROI
from sima_fast.spikes import estimate_roi_parameters

RTOL = 1e-6  # raw is float32 in both
ATOL = 1e-6


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def random_movie(rng, shape, dtype) -> np.ndarray:
    """Positive (T, Z, Y, X, C) data with spatial structure (μ is never 0)."""
    values = rng.uniform(0.5, 3.0, shape[1:]) * rng.uniform(20.0, 1000.0, shape)
    if dtype == "uint16":
        return np.clip(np.rint(values), 1, 65535).astype(np.uint16)
    return values.astype(dtype)


def random_rois(rng, zyx, n, weighted=False) -> list[ROI]:
    rois = []
    for _ in range(n):
        keep = rng.random(zyx) < rng.uniform(0.1, 0.5)
        mask = np.where(keep, rng.uniform(0.1, 0.9, zyx), 0.0) if weighted else keep
        rois.append(ROI(mask=mask))
    return rois


def as_input(frames: np.ndarray, ndim: int) -> np.ndarray:
    """(T, Z, Y, X, C) frames as (T, Y, X), (T, Z, Y, X) or themselves."""
    if ndim == 2:
        return frames[:, 0, :, :, 0]
    if ndim == 3:
        return frames[..., 0]
    return frames


def feed(online: OnlineExtractor, frames) -> OnlineExtractor:
    for frame in frames:
        online.update(frame)
    return online


def offline(frames5d, rois, channel=0, remove_overlap=True):
    """``extract()`` record and the dataset, with empty-ROI warnings silenced."""
    ds = ImagingDataset([Sequence.create("ndarray", frames5d)], None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*empty ROI", UserWarning)
        rec = ds.extract(rois, signal_channel=channel, remove_overlap=remove_overlap)
    return rec, ds


def make_online(rois, frame_shape, **kwargs) -> OnlineExtractor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*empty ROI", UserWarning)
        return OnlineExtractor(rois, frame_shape, **kwargs)


def assert_raw_equal(got, expected) -> None:
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def assert_projections_equal(online: OnlineExtractor, frames5d: np.ndarray) -> None:
    expected = ref.projections(frames5d)
    for name in ("time_averages", "time_std", "time_kurtosis"):
        np.testing.assert_allclose(
            getattr(online, name), expected[name], rtol=1e-10, atol=0, equal_nan=True, err_msg=name
        )


def penalised_reference(y, gamma, lam, b):
    """Exact solution of ½ Σ_obs (y - b - c)² + λ Σ_{t>=1} s_t, c_0 >= 0, s >= 0 (cvxpy)."""
    cp = pytest.importorskip("cvxpy")
    T = y.size
    obs = np.isfinite(y)
    c = cp.Variable(T)
    s = c[1:] - gamma * c[:-1]
    objective = 0.5 * cp.sum_squares((y[obs] - b) - c[obs]) + lam * cp.sum(s)
    problem = cp.Problem(cp.Minimize(objective), [c[0] >= 0, s >= 0])
    problem.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    cv = np.asarray(c.value)
    return np.concatenate([[0.0], cv[1:] - gamma * cv[:-1]]), cv


def ar1_traces(rng, n, T, gamma, sigma, nan_fraction=0.0) -> np.ndarray:
    """Sparse spikes through AR(1) calcium, baseline 1, white noise; (n, T) float32."""
    s = (rng.random((n, T)) < 0.05) * rng.uniform(0.5, 3.0, (n, T))
    c = np.zeros((n, T))
    c[:, 0] = rng.uniform(0, 2, n)
    for t in range(1, T):
        c[:, t] = gamma * c[:, t - 1] + s[:, t]
    y = 1.0 + c + sigma * rng.standard_normal((n, T))
    y[rng.random((n, T)) < nan_fraction] = np.nan
    return y.astype(np.float32)


def pixel_rois(n: int) -> list[ROI]:
    """ROI i is pixel (0, i) of a (1, n) frame: frames are then the traces themselves."""
    rois = []
    for i in range(n):
        mask = np.zeros((1, n), dtype=bool)
        mask[0, i] = True
        rois.append(ROI(mask=mask))
    return rois


def trace_extractor(traces: np.ndarray, **kwargs) -> OnlineExtractor:
    """An extractor fed with ``traces`` (n, T) as (1, n) float32 frames."""
    n = traces.shape[0]
    online = OnlineExtractor(pixel_rois(n), (1, n), dtype="float32", **kwargs)
    return feed(online, traces.T[:, None, :].copy())


# ----------------------------------------------------------------------------
# extraction and projections = offline
# ----------------------------------------------------------------------------


@st.composite
def online_cases(draw):
    Z = draw(st.integers(1, 2))
    Y = draw(st.integers(3, 9))
    X = draw(st.integers(3, 9))
    C = draw(st.integers(1, 2))
    T = draw(st.integers(1, 20))
    dtype = draw(st.sampled_from(["uint16", "float32", "float64"]))
    ndims = [4] if C > 1 else ([2, 3, 4] if Z == 1 else [3, 4])
    ndim = draw(st.sampled_from(ndims))
    channel = draw(st.integers(0, C - 1))
    remove_overlap = draw(st.booleans())
    weighted = draw(st.booleans())
    n_rois = draw(st.integers(1, 4))
    batch = draw(st.integers(1, 6))
    nans = dtype != "uint16" and draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    frames = random_movie(rng, (T, Z, Y, X, C), dtype)
    if nans:
        frames[rng.random(frames.shape) < 0.2] = np.nan
        frames[int(rng.integers(T))] = np.nan  # a whole frame missing
    rois = random_rois(rng, (Z, Y, X), n_rois, weighted)
    return frames, rois, channel, ndim, remove_overlap, batch


@given(case=online_cases())
def test_online_equals_offline_extract_and_projections(case):
    frames, rois, channel, ndim, remove_overlap, batch = case
    T = frames.shape[0]
    try:
        rec, ds = offline(frames, rois, channel, remove_overlap)
    except ValueError as err:  # every ROI empty: the online object refuses too
        with pytest.raises(ValueError, match="no ROI has any pixel"):
            make_online(rois, as_input(frames, ndim).shape[1:], signal_channel=channel)
        assert "no ROI has any pixel" in str(err)
        return
    inputs = as_input(frames, ndim)
    online = make_online(
        rois,
        inputs.shape[1:],
        signal_channel=channel,
        mean_frame=ds.time_averages,
        dtype=frames.dtype,
        remove_overlap=remove_overlap,
        moment_batch=batch,
        gamma=0.9,
        penalty=0.01,
        baseline=1.0,
        warmup=False,
    )
    half = T // 2
    feed(online, inputs[:half])
    if half:
        assert_projections_equal(online, frames[:half])  # a query midway changes nothing
    feed(online, inputs[half:])
    assert online.n_frames == T
    assert_raw_equal(online.raw, rec["raw"][0])
    assert_projections_equal(online, frames)
    np.testing.assert_allclose(online.time_averages, ds.time_averages, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
def test_plain_weighted_means_without_mean_frame(dtype):
    rng = np.random.default_rng(3)
    frames = random_movie(rng, (12, 2, 7, 6, 1), dtype)
    if dtype != "uint16":
        frames[rng.random(frames.shape) < 0.25] = np.nan
    rois = random_rois(rng, (2, 7, 6), 3) + random_rois(rng, (2, 7, 6), 2, weighted=True)
    masks = np.stack([np.asarray(r).astype(float) for r in rois])
    flags = [True, True, True, False, False]
    expected = ref.extract_reference(
        [frames[..., 0].astype(np.float64)], masks, flags, True, np.ones((2, 7, 6))
    )[0]
    online = feed(make_online(rois, (2, 7, 6), dtype=dtype, warmup=False), frames[..., 0])
    assert_raw_equal(online.raw, expected.astype(np.float32))


def test_nan_pixels_and_all_nan_frames():
    """Missing pixels re-weight an ROI; an ROI or a frame with nothing finite gives NaN."""
    frames = np.full((4, 4, 4), 2.0, dtype=np.float32)
    frames[:, 0, 0] = 10.0
    frames[1, 0, 1] = np.nan  # ROI 0 loses one of its 4 pixels
    frames[2] = np.nan  # a whole frame missing
    frames[3, 2:4, 2:4] = np.nan  # ROI 1 has no finite pixel
    a = np.zeros((4, 4), dtype=bool)
    a[0:2, 0:2] = True
    b = np.zeros((4, 4), dtype=bool)
    b[2:4, 2:4] = True
    online = feed(OnlineExtractor([ROI(mask=a), ROI(mask=b)], (4, 4), dtype="float32"), frames)
    expected = np.array([[4.0, 14.0 / 3.0, np.nan, 4.0], [2.0, 2.0, np.nan, np.nan]])
    np.testing.assert_allclose(online.raw, expected, rtol=1e-6)
    rec, _ = offline(frames[:, None, :, :, None], [ROI(mask=a), ROI(mask=b)])
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(frames, axis=0)
    online_mu = feed(
        OnlineExtractor([ROI(mask=a), ROI(mask=b)], (4, 4), dtype="float32", mean_frame=mean),
        frames,
    )
    assert_raw_equal(online_mu.raw, rec["raw"][0])
    # a pixel never observed is NaN in every projection; the rest are finite
    frames[:, 3, 0] = np.nan
    online = feed(OnlineExtractor([ROI(mask=a)], (4, 4), dtype="float32"), frames)
    assert np.isnan(online.time_averages[0, 3, 0, 0]) and np.isnan(online.time_std[0, 3, 0, 0])
    assert np.isfinite(online.time_averages[0, 0, 0, 0])


def test_pseudo_inverse_path_with_kept_overlap():
    """remove_overlap=False with overlapping ROIs and missing pixels, as extract() does it."""
    rng = np.random.default_rng(5)
    frames = random_movie(rng, (15, 1, 6, 6, 1), "float64")
    frames[rng.random(frames.shape) < 0.2] = np.nan
    a = np.zeros((6, 6), dtype=bool)
    a[1:4, 1:4] = True
    b = np.zeros((6, 6), dtype=bool)
    b[2:5, 2:5] = True
    rois = [ROI(mask=a), ROI(mask=b)]
    rec, ds = offline(frames, rois, remove_overlap=False)
    online = make_online(
        rois, (6, 6), dtype="float64", mean_frame=ds.time_averages, remove_overlap=False,
        gamma=0.9, penalty=0.1, baseline=1.0,
    )  # fmt: skip
    feed(online, frames[:, 0, :, :, 0])
    assert_raw_equal(online.raw, rec["raw"][0])
    assert np.isfinite(online.spikes()).all()


def test_frame_shape_variants_agree():
    rng = np.random.default_rng(7)
    frames = random_movie(rng, (10, 1, 5, 6, 1), "uint16")
    rois = random_rois(rng, (1, 5, 6), 3)
    results = []
    for ndim in (2, 3, 4):
        inputs = as_input(frames, ndim)
        online = feed(make_online(rois, inputs.shape[1:], gamma=0.8, sigma=0.2, baseline=1.0,
                                  warmup=False), inputs)  # fmt: skip
        results.append((online.raw, online.spikes(), online.time_std))
    for raw, spikes, std in results[1:]:
        np.testing.assert_array_equal(raw, results[0][0])
        np.testing.assert_array_equal(spikes, results[0][1])
        np.testing.assert_array_equal(std, results[0][2])
    assert results[0][2].shape == (1, 5, 6, 1)


def test_signal_channel_of_multichannel_frames():
    rng = np.random.default_rng(8)
    frames = random_movie(rng, (9, 2, 4, 5, 3), "float32")
    rois = random_rois(rng, (2, 4, 5), 2)
    rec, ds = offline(frames, rois, channel=2)
    online = make_online(rois, (2, 4, 5, 3), signal_channel=-1, dtype="float32",
                         mean_frame=ds.time_averages[..., 2])  # fmt: skip
    feed(online, frames)
    assert online.signal_channel == 2
    assert_raw_equal(online.raw, rec["raw"][0])
    assert online.time_averages.shape == (2, 4, 5, 3)
    assert_projections_equal(online, frames)


def test_ring_buffer_views_and_layouts(tmp_path):
    """Frames given as views (strided, read-only, Fortran, shared memory, memory-mapped file)
    give the same results."""
    rng = np.random.default_rng(9)
    frames = random_movie(rng, (12, 1, 6, 7, 1), "uint16")[:, 0, :, :, 0]
    rois = random_rois(rng, (1, 6, 7), 3)
    kwargs = {"gamma": 0.9, "penalty": 0.05, "baseline": 500.0, "moment_batch": 3}
    expected = feed(make_online(rois, (6, 7), **kwargs), frames)

    wide = np.zeros((12, 6, 9), dtype=np.uint16)
    wide[:, :, 1:8] = frames
    strided = np.zeros((12, 12, 14), dtype=np.uint16)
    strided[:, ::2, ::2] = frames
    readonly = frames.copy()
    readonly.flags.writeable = False
    fortran = [np.asfortranarray(f) for f in frames]
    shm = shared_memory.SharedMemory(create=True, size=frames.nbytes)
    try:
        ring = np.ndarray(frames.shape, dtype=np.uint16, buffer=shm.buf)
        ring[:] = frames
        mapped = np.memmap(tmp_path / "ring.dat", dtype=np.uint16, mode="w+", shape=(12, 6, 8))
        mapped[:, :, :7] = frames
        layouts = (wide[:, :, 1:8], strided[:, ::2, ::2], readonly, fortran, ring, mapped[..., :7])
        for views in layouts:
            online = feed(make_online(rois, (6, 7), **kwargs), views)
            np.testing.assert_array_equal(online.raw, expected.raw)
            np.testing.assert_array_equal(online.spikes(), expected.spikes())
            np.testing.assert_array_equal(online.time_kurtosis, expected.time_kurtosis)
        del ring, online, mapped, views
    finally:
        shm.close()
        shm.unlink()


def test_history_ring_keeps_the_last_frames():
    rng = np.random.default_rng(10)
    frames = random_movie(rng, (12, 1, 5, 5, 1), "float32")
    rois = random_rois(rng, (1, 5, 5), 2)
    kwargs = {"dtype": "float32", "gamma": 0.8, "penalty": 0.1, "baseline": 500.0, "lag": 3}
    full = feed(make_online(rois, (5, 5), **kwargs), frames[:, 0, :, :, 0])
    ring = feed(make_online(rois, (5, 5), max_frames=5, **kwargs), frames[:, 0, :, :, 0])
    assert ring.first_frame == 7 and ring.raw.shape == (2, 5)
    np.testing.assert_array_equal(ring.raw, full.raw[:, 7:])
    np.testing.assert_array_equal(ring.spikes(), full.spikes()[:, 7:])
    np.testing.assert_array_equal(ring.calcium(final_only=True), full.calcium(True)[:, 7:])
    np.testing.assert_array_equal(ring.spikes_final, full.spikes_final[:, 7:])
    assert_projections_equal(ring, frames)  # the projections cover every frame


def test_moment_state_merges_with_offline_state():
    rng = np.random.default_rng(11)
    frames = random_movie(rng, (30, 2, 4, 4, 2), "uint16")
    online = feed(make_online(random_rois(rng, (2, 4, 4), 1), (2, 4, 4, 2)), frames[:17])
    later = MomentState.empty((2, 4, 4, 2))
    later.update(frames[17:])
    merged = online.moment_state().merge(later)
    expected = ref.projections(frames)
    np.testing.assert_allclose(merged.mean_value(), expected["time_averages"], rtol=1e-12)
    np.testing.assert_allclose(merged.kurtosis(), expected["time_kurtosis"], rtol=1e-9)
    assert merged.frames == 30


def test_update_returns_its_buffer():
    rng = np.random.default_rng(12)
    frames = random_movie(rng, (3, 1, 4, 4, 1), "uint16")[:, 0, :, :, 0]
    online = make_online(random_rois(rng, (1, 4, 4), 2), (4, 4))
    first = online.update(frames[0])
    second = online.update(frames[1])
    assert first is second and second.dtype == np.float32
    np.testing.assert_array_equal(second, online.raw[:, 1])


# ----------------------------------------------------------------------------
# online AR(1) deconvolution
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ar1_equals_exact_penalised_solution(seed):
    """With lag >= T nothing freezes: the estimate is the offline optimum."""
    rng = np.random.default_rng(seed)
    gamma, sigma, T = [0.8, 0.9, 0.95][seed], 0.2, 150
    traces = ar1_traces(rng, 3, T, gamma, sigma, nan_fraction=0.1 * seed)
    traces[0, :4] = np.nan  # missing samples at the start
    lam = [0.05, 0.4, 1.5]
    online = trace_extractor(traces, gamma=gamma, penalty=lam, baseline=1.0, lag=T)
    assert online.n_final == 0
    spikes, calcium = online.spikes(), online.calcium()
    for i in range(3):
        s_ref, c_ref = penalised_reference(traces[i].astype(np.float64), gamma, lam[i], 1.0)
        np.testing.assert_allclose(spikes[i], s_ref, atol=2e-5, err_msg=f"trace {i}")
        np.testing.assert_allclose(calcium[i], c_ref, atol=2e-5, err_msg=f"trace {i}")


def test_provisional_estimate_is_exact_for_every_prefix():
    rng = np.random.default_rng(4)
    traces = ar1_traces(rng, 1, 60, 0.85, 0.15)
    online = OnlineExtractor(pixel_rois(1), (1, 1), dtype="float32", gamma=0.85, penalty=0.3,
                             baseline=1.0, lag=100)  # fmt: skip
    for t in range(60):
        online.update(traces[:, t : t + 1])
        if t in (0, 1, 7, 33, 59):
            s_ref, _ = penalised_reference(traces[0, : t + 1].astype(np.float64), 0.85, 0.3, 1.0)
            np.testing.assert_allclose(online.spikes()[0], s_ref, atol=2e-5, err_msg=str(t))


def test_final_spikes_never_change_and_lag_counts():
    rng = np.random.default_rng(6)
    T, lag = 120, 7
    traces = ar1_traces(rng, 4, T, 0.9, 0.2, nan_fraction=0.05)
    online = OnlineExtractor(pixel_rois(4), (1, 4), dtype="float32", gamma=0.9, penalty=0.3,
                             baseline=1.0, lag=lag)  # fmt: skip
    previous = np.zeros((4, 0), dtype=np.float32)
    for t in range(T):
        online.update(traces[:, t][None, :])
        n = t + 1
        assert online.n_final == max(0, n - lag)
        final = online.spikes_final
        assert final.shape == (4, online.n_final)
        assert online.spikes_provisional.shape == (4, n - online.n_final)
        np.testing.assert_array_equal(final[:, : previous.shape[1]], previous)
        assert (final >= 0).all() and np.isfinite(final).all()
        both = online.spikes()
        np.testing.assert_array_equal(both[:, : online.n_final], final)
        assert np.isnan(online.spikes(final_only=True)[:, online.n_final :]).all()
        previous = final


def test_freezing_changes_final_spikes_by_order_gamma_to_the_lag():
    rng = np.random.default_rng(8)
    gamma, T = 0.8, 400
    traces = ar1_traces(rng, 5, T, gamma, 0.2)
    kwargs = {"gamma": gamma, "penalty": 0.4, "baseline": 1.0}
    exact = trace_extractor(traces, lag=T, **kwargs)
    frozen = trace_extractor(traces, lag=60, **kwargs)  # γ^60 ≈ 1.5e-6
    assert frozen.n_final == T - 60
    np.testing.assert_allclose(frozen.spikes(), exact.spikes(), atol=1e-4)
    np.testing.assert_allclose(frozen.calcium(), exact.calcium(), atol=1e-4)
    short = trace_extractor(traces, lag=2, **kwargs)  # freezing that early does change things
    assert np.abs(short.spikes() - exact.spikes()).max() > 1e-3


def test_parameters_are_estimated_after_the_window():
    rng = np.random.default_rng(13)
    traces = ar1_traces(rng, 3, 300, 0.9, 0.1)
    traces[2] = np.nan  # an ROI that is never observed
    window = 120
    online = OnlineExtractor(pixel_rois(3), (1, 3), dtype="float32", estimate_frames=window,
                             lag=20)  # fmt: skip
    feed(online, traces.T[: window - 1, None, :].copy())
    assert np.isnan(online.parameters["gamma"]).all() and online.n_final == 0
    assert np.isnan(online.spikes()).all()
    feed(online, traces.T[window - 1 :, None, :].copy())
    params = online.parameters
    est = estimate_roi_parameters([traces[:2, :window].astype(np.float64)])
    np.testing.assert_allclose(params["gamma"][:2], est["gamma"])
    np.testing.assert_allclose(params["sigma"][:2], est["sigma"])
    np.testing.assert_allclose(params["baseline"][:2], np.median(traces[:2, :window], axis=1))
    gamma = params["gamma"][:2]
    np.testing.assert_allclose(
        params["penalty"][:2], 1.5 * params["sigma"][:2] / np.sqrt(1 - gamma**2)
    )
    assert np.isnan([params[k][2] for k in params]).all()
    # the same as giving those parameters from the start
    given = trace_extractor(
        traces[:2], gamma=gamma, penalty=params["penalty"][:2], baseline=params["baseline"][:2],
        lag=20,
    )  # fmt: skip
    np.testing.assert_array_equal(online.spikes()[:2], given.spikes())
    np.testing.assert_array_equal(online.calcium(final_only=True)[:2], given.calcium(True))
    assert np.isnan(online.spikes()[2]).all()


def test_sigma_sets_the_penalty():
    online = OnlineExtractor(pixel_rois(2), (1, 2), dtype="float32", gamma=0.6, sigma=[0.1, 0.2],
                             baseline=0.0, penalty_scale=2.0)  # fmt: skip
    np.testing.assert_allclose(online.parameters["penalty"], [0.25, 0.5])


# ----------------------------------------------------------------------------
# real-time properties
# ----------------------------------------------------------------------------


def test_update_allocates_nothing():
    """tracemalloc over 1,000 updates: no memory kept by sima_fast, no per-frame buffers.

    A snapshot difference filtered to sima_fast's files must be empty (net 0
    bytes). The peak during the updates may exceed the starting level only by
    what calling any numba function with the same arguments costs (numba's
    dispatcher builds small Python objects, about 1 kB here) plus a few small
    objects (the shape tuple of a frame, the new value of the frame counter):
    a frame-sized temporary (8 kB here) would show. Numba's own allocations
    are checked by the next test.
    """
    rng = np.random.default_rng(14)
    frames = random_movie(rng, (50, 1, 64, 64, 1), "uint16")[:, 0, :, :, 0]
    rois = []
    for k in range(16):  # a 4 x 4 grid of 12 x 12 squares
        mask = np.zeros((64, 64), dtype=bool)
        mask[16 * (k // 4) : 16 * (k // 4) + 12, 16 * (k % 4) : 16 * (k % 4) + 12] = True
        rois.append(ROI(mask=mask))
    online = OnlineExtractor(rois, (64, 64), gamma=0.9, sigma=0.05, baseline=1.0, lag=10,
                             max_frames=64)  # fmt: skip
    # Past the first wrap of every ring, and past 256 frames: the frame counter is then a
    # Python int allocated per frame (small ints are cached) and freed at the next one.
    for i in range(300):
        online.update(frames[i % 50])

    @numba.njit
    def nothing(frame, *args):
        return None

    args = (*online._args, True)
    nothing(frames[0], *args)

    def measure(call):
        tracemalloc.start()
        try:
            for i in range(10):  # so that the counter's current value is a traced object too
                call(i)
            before = tracemalloc.take_snapshot()
            tracemalloc.reset_peak()
            start = tracemalloc.get_traced_memory()[0]
            for i in range(1000):
                call(i)
            peak = tracemalloc.get_traced_memory()[1]
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        return before, after, peak - start

    before, after, peak = measure(lambda i: online.update(frames[i % 50]))
    ours = [tracemalloc.Filter(True, "*sima_fast*"), tracemalloc.Filter(True, "*kernels*")]
    diff = after.filter_traces(ours).compare_to(before.filter_traces(ours), "filename")
    assert sum(d.size_diff for d in diff) == 0, diff
    *_, dispatch = measure(lambda i: nothing(frames[i % 50], *args))
    assert peak - dispatch < 512, (peak, dispatch)


def test_update_makes_no_numba_allocations():
    """With numba's allocation statistics on, 1,000 updates allocate nothing in the kernels.

    Calling any numba function wraps each array argument in a small MemInfo
    record (freed on return); the update makes exactly as many allocations
    as a do-nothing numba function called with the same arguments, and frees
    them all.
    """
    script = textwrap.dedent(
        """
        import warnings
        import numpy as np
        from numba import njit
        from numba.core.runtime import rtsys
        from sima_fast.online import OnlineExtractor
        from sima_fast.ROI import ROI
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 4000, (40, 24, 24)).astype(np.float32)
        frames[3, :5] = np.nan
        rois = [ROI(mask=rng.random((24, 24)) < 0.2) for _ in range(5)]
        online = OnlineExtractor(rois, (24, 24), dtype="float32", estimate_frames=20, lag=5)
        for f in frames:
            online.update(f)

        @njit
        def nothing(frame, *args):
            return None

        args = (frames[0], *online._args, True)
        nothing(*args)

        def count(call):
            before = rtsys.get_allocation_stats()
            for i in range(1000):
                call(i)
            after = rtsys.get_allocation_stats()
            return after.alloc - before.alloc, after.free - before.free

        used = count(lambda i: online.update(frames[i % 40]))
        wrappers = count(lambda i: nothing(frames[i % 40], *args[1:]))
        print(used[0] - wrappers[0], used[0] - used[1], wrappers[0])
        """
    )
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    extra, net, wrappers = (int(v) for v in out.stdout.split())
    assert (extra, net) == (0, 0), out.stdout + out.stderr
    assert wrappers > 0  # the statistics were on


def test_warmup_compiles_everything_and_keeps_state():
    rng = np.random.default_rng(15)
    frames = random_movie(rng, (5, 1, 6, 6, 1), "float64")[:, 0, :, :, 0]
    online = make_online(random_rois(rng, (1, 6, 6), 2), (6, 6), dtype="float64")
    online.update(frames[0])
    raw = online.raw
    assert online.warmup() < 5.0
    assert online.n_frames == 1
    np.testing.assert_array_equal(online.raw, raw)
    assert "n_frames=1" in repr(online)


# ----------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------


def _rois():
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 1:3] = True
    return [ROI(mask=mask)]


def test_bad_frames_are_rejected_with_clear_errors():
    online = OnlineExtractor(_rois(), (4, 5), dtype="uint16", warmup=False)
    with pytest.raises(TypeError, match=r"frame has dtype float32.*uint16"):
        online.update(np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"frame has shape \(5, 4\).*\(4, 5\)"):
        online.update(np.zeros((5, 4), dtype=np.uint16))
    with pytest.raises(ValueError, match="frame has shape"):
        online.update(np.zeros((1, 4, 5), dtype=np.uint16))
    with pytest.raises(TypeError, match=r"frame must be a numpy\.ndarray"):
        online.update([[0] * 5] * 4)
    with pytest.raises(TypeError, match="frame has dtype"):
        online.update(np.zeros((4, 5), dtype=">u2"))
    assert online.n_frames == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"frame_shape": (4,)}, ValueError, "frame_shape"),
        ({"frame_shape": (4, 0)}, ValueError, "frame_shape"),
        ({"frame_shape": "ab"}, TypeError, "frame_shape"),
        ({"frame_shape": (4, 5, 1, 2, 1)}, ValueError, "frame_shape"),
        ({"signal_channel": 1}, ValueError, "signal_channel"),
        ({"signal_channel": 1.0}, TypeError, "signal_channel"),
        ({"dtype": "int8"}, TypeError, "dtype"),
        ({"dtype": "not a dtype"}, TypeError, "dtype"),
        ({"mean_frame": np.ones((5, 4))}, ValueError, "mean_frame"),
        ({"gamma": 1.0}, ValueError, "gamma"),
        ({"gamma": [0.5, 0.5]}, ValueError, "gamma"),
        ({"sigma": -1.0}, ValueError, "sigma"),
        ({"penalty": np.nan}, ValueError, "penalty"),
        ({"sigma": 1.0, "penalty": 1.0}, ValueError, "sigma or penalty"),
        ({"lag": -1}, ValueError, "lag"),
        ({"lag": 2.5}, TypeError, "lag"),
        ({"max_frames": 0}, ValueError, "max_frames"),
        ({"estimate_frames": 4}, ValueError, "estimate_frames"),
        ({"estimate_frames": 50, "max_frames": 20}, ValueError, "estimate_frames"),
        ({"moment_batch": 0}, ValueError, "moment_batch"),
        ({"penalty_scale": -1.0}, ValueError, "penalty_scale"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, match):
    args = {"frame_shape": (4, 5), "warmup": False, **kwargs}
    shape = args.pop("frame_shape")
    with pytest.raises(error, match=match):
        OnlineExtractor(_rois(), shape, **args)


def test_roi_problems_are_reported_like_extract():
    empty = ROI(mask=np.zeros((4, 5), dtype=bool))
    with pytest.raises(ValueError, match="no ROI has any pixel"):
        OnlineExtractor([empty], (4, 5), warmup=False)
    with pytest.warns(UserWarning, match="empty ROI"):
        online = OnlineExtractor([*_rois(), empty], (4, 5), gamma=0.5, sigma=1.0, baseline=0.0)
    online.update(np.ones((4, 5), dtype=np.uint16))
    assert np.isnan(online.raw[1]).all() and np.isfinite(online.raw[0]).all()
    with pytest.raises(ValueError, match="does not fit frames"):
        OnlineExtractor(_rois(), (2, 5), warmup=False)

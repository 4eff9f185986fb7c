"""Parameter estimators of spike inference (docs/contract.md#parameter-estimation)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter, welch

import sima_fast.spikes as spikes
from sima_fast.spikes import (
    GAMMA_CAP,
    GAMMA_FLOOR,
    MODES,
    SpikeInferenceWarning,
    autocovariance,
    estimate_decay,
    estimate_noise,
    estimate_roi_parameters,
)

FS = 30.0  # Hz
TAU = 1.0  # s
TRUE_GAMMA = float(np.exp(-1.0 / (FS * TAU)))
TRUE_SIGMA = 0.3


# ----------------------------------------------------------------------------
# References and data
# ----------------------------------------------------------------------------


def reference_acov(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Literal double loop: pairs with both samples observed, about the finite mean."""
    x = np.asarray(x, dtype=np.float64)
    observed = [v for v in x if np.isfinite(v)]
    mean = sum(observed) / len(observed) if observed else 0.0
    out = np.zeros(max_lag + 1)
    for k in range(max_lag + 1):
        total = 0.0
        for t in range(len(x) - k):
            if np.isfinite(x[t]) and np.isfinite(x[t + k]):
                total += (x[t] - mean) * (x[t + k] - mean)
        out[k] = total
    return out


def reference_psd_log(x: np.ndarray) -> float:
    """mean(log(P/2)) over 0.25 < f < 0.5 of the observed samples joined."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    f, p = welch(x, fs=1.0, nperseg=min(x.size, 256))
    band = (f > 0.25) & (f < 0.5)
    return float(np.mean(np.log(p[band] / 2)))


def simulate(
    num_frames: int = 10_000,
    num_rois: int = 1,
    seed: int = 0,
    sigma: float = TRUE_SIGMA,
    baseline: float = 1.5,
) -> np.ndarray:
    """AR(1) calcium from 1 Hz Poisson spikes at 30 Hz, tau = 1 s, plus noise."""
    rng = np.random.default_rng(seed)
    spikes_ = rng.poisson(1.0 / FS, size=(num_rois, num_frames)).astype(np.float64)
    calcium = lfilter([1.0], [1.0, -TRUE_GAMMA], spikes_, axis=1)
    noise = sigma * rng.standard_normal((num_rois, num_frames))
    return baseline + calcium + noise


@pytest.fixture(scope="module")
def trace() -> np.ndarray:
    return simulate(seed=11)[0]


# ----------------------------------------------------------------------------
# autocovariance
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("nan_fraction", [0.0, 0.2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_autocovariance_matches_double_loop(seed, nan_fraction):
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, size=rng.integers(10, 200))
    x[rng.random(x.size) < nan_fraction] = np.nan
    got = autocovariance(x, 5)
    assert got.dtype == np.float64 and got.shape == (6,)
    np.testing.assert_allclose(got, reference_acov(x, 5), rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), st.just(float("nan"))
        ),
        min_size=1,
        max_size=40,
    ),
    max_lag=st.integers(0, 45),
)
def test_autocovariance_property(values, max_lag):
    expected = reference_acov(np.array(values), max_lag)
    got = autocovariance(np.array(values), max_lag)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * max(expected[0], 1.0))


def test_autocovariance_conventions():
    # Lags at or beyond the length are empty sums; so is an all-NaN trace.
    np.testing.assert_array_equal(autocovariance([1.0, 3.0], 4)[2:], 0.0)
    np.testing.assert_array_equal(autocovariance([np.nan, np.nan, np.nan], 2), 0.0)
    # Infinite samples count as missing, like NaN.
    x = np.array([1.0, 4.0, np.inf, 2.0, 7.0, 0.5])
    np.testing.assert_allclose(
        autocovariance(x, 3), autocovariance(np.where(np.isinf(x), np.nan, x), 3)
    )
    # Not divided by T; integer input works.
    np.testing.assert_allclose(autocovariance([1, 2, 3, 4], 2), [5.0, 1.25, -1.5])


def test_autocovariance_stacks_along_last_axis():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 50))
    x[0, 1, ::7] = np.nan
    got = autocovariance(x, 3)
    assert got.shape == (2, 3, 4)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(got[i, j], reference_acov(x[i, j], 3), atol=1e-12)


def test_autocovariance_validation():
    with pytest.raises(ValueError, match="max_lag"):
        autocovariance(np.ones(10), -1)
    with pytest.raises(TypeError, match="max_lag"):
        autocovariance(np.ones(10), 1.5)
    with pytest.raises(ValueError, match="trace"):
        autocovariance(3.0, 1)
    with pytest.raises(TypeError, match="trace"):
        autocovariance(np.ones(10, dtype=complex), 1)


# ----------------------------------------------------------------------------
# Accuracy on simulated AR(1) traces
# ----------------------------------------------------------------------------


def test_gamma_and_sigma_recover_the_simulation(trace):
    gamma = estimate_decay(trace)
    assert abs(gamma - TRUE_GAMMA) < 0.01
    correct = estimate_noise(trace, gamma, "correct")
    assert abs(correct - TRUE_SIGMA) < 0.05 * TRUE_SIGMA
    assert abs(estimate_noise(trace, TRUE_GAMMA) - TRUE_SIGMA) < 0.05 * TRUE_SIGMA
    robust = estimate_noise(trace, gamma, "robust")
    assert robust >= correct
    assert estimate_noise(trace, None, "robust") == robust  # gamma unused
    psd = estimate_noise(trace, gamma, "psd")
    assert abs(psd - TRUE_SIGMA) < 0.10 * TRUE_SIGMA


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_accuracy_over_seeds(seed):
    signals = [simulate(num_rois=2, seed=seed)]
    params = estimate_roi_parameters(signals, share_gamma=False)
    np.testing.assert_allclose(params["gamma"], TRUE_GAMMA, atol=0.01)
    np.testing.assert_allclose(params["sigma"], TRUE_SIGMA, rtol=0.05)


# ----------------------------------------------------------------------------
# Several sequences of one ROI
# ----------------------------------------------------------------------------


def test_sums_over_sequences():
    lengths = (3000, 5000, 2000)
    traces = [simulate(n, seed=20 + i, baseline=1.0 + i)[0] for i, n in enumerate(lengths)]
    traces[1][100:160] = np.nan
    acov = sum(reference_acov(t, 3) for t in traces)
    observed = sum(int(np.isfinite(t).sum()) for t in traces)
    gamma = estimate_decay(traces)
    assert gamma == pytest.approx(acov[3] / acov[2], rel=1e-12)
    c0, c1 = acov[0] / observed, acov[1] / observed
    assert estimate_noise(traces, gamma) == pytest.approx(np.sqrt(c0 - c1 / gamma), rel=1e-12)
    assert estimate_noise(traces, 0.9, "robust") == pytest.approx(np.sqrt(c0 - c1), rel=1e-12)
    weights = [int(np.isfinite(t).sum()) for t in traces]
    log_mean = np.average([reference_psd_log(t) for t in traces], weights=weights)
    assert estimate_noise(traces, gamma, "psd") == pytest.approx(np.exp(log_mean / 2), rel=1e-12)
    # Each sequence is centred on its own mean: different baselines do not
    # leak into the estimate, unlike concatenating the traces.
    assert abs(gamma - TRUE_GAMMA) < 0.01
    assert estimate_decay(np.concatenate(traces)) != pytest.approx(gamma, rel=1e-6)


def test_estimate_parameters_matches_single_roi_functions(monkeypatch):
    # Small blocks force the blocked code paths (several blocks, ragged last).
    monkeypatch.setattr(spikes, "_BLOCK_ELEMENTS", 700)
    monkeypatch.setattr(spikes, "_PSD_BLOCK_ELEMENTS", 900)
    signals = [simulate(400, num_rois=7, seed=30), simulate(250, num_rois=7, seed=31)]
    signals[0][2, 50:80] = np.nan
    signals[1][5, ::9] = np.nan
    signals[1][6, 3::9] = np.nan  # as many samples as row 5: one Welch batch
    signals[1] = signals[1].astype(np.float32)
    rows = [[seq[i] for seq in signals] for i in range(7)]
    gammas = np.array([estimate_decay(r) for r in rows])
    for mode in MODES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SpikeInferenceWarning)
            params = estimate_roi_parameters(signals, share_gamma=False, mode=mode)
            expected = [estimate_noise(r, g, mode) for r, g in zip(rows, gammas)]
        assert params["gamma"].dtype == params["sigma"].dtype == np.float64
        np.testing.assert_allclose(params["gamma"], gammas, rtol=1e-12)
        np.testing.assert_allclose(params["sigma"], expected, rtol=1e-10)


def test_share_gamma_uses_the_median():
    signals = [simulate(3000, num_rois=5, seed=40)]
    for i, scale in enumerate([0.2, 0.5, 1.0, 2.0, 4.0]):
        signals[0][i] *= scale  # gamma is scale-free; make the rows distinct anyway
    signals[0][3] += 0.5 * np.sin(np.arange(3000) / 40.0)
    per_roi = estimate_roi_parameters(signals, share_gamma=False)["gamma"]
    shared = estimate_roi_parameters(signals, share_gamma=True)
    np.testing.assert_array_equal(shared["gamma"], np.median(per_roi))
    rows = [[signals[0][i]] for i in range(5)]
    expected = [estimate_noise(r, float(np.median(per_roi))) for r in rows]
    np.testing.assert_allclose(shared["sigma"], expected, rtol=1e-12)
    assert len(set(per_roi.tolist())) > 1


def test_given_gamma_and_sigma():
    signals = simulate(2000, num_rois=3, seed=50)  # a single 2-D array is one sequence
    params = estimate_roi_parameters(signals, gamma=0.9)
    np.testing.assert_array_equal(params["gamma"], 0.9)
    expected = [estimate_noise(row, 0.9) for row in signals]
    np.testing.assert_allclose(params["sigma"], expected, rtol=1e-12)
    params = estimate_roi_parameters([signals], gamma=[0.8, 0.9, 0.95], sigma=[0.0, 1.0, 2.0])
    np.testing.assert_array_equal(params["gamma"], [0.8, 0.9, 0.95])
    np.testing.assert_array_equal(params["sigma"], [0.0, 1.0, 2.0])
    params = estimate_roi_parameters([signals], sigma=0.25, mode="psd")
    np.testing.assert_array_equal(params["sigma"], 0.25)
    assert abs(params["gamma"][0] - TRUE_GAMMA) < 0.02


def test_no_rois():
    params = estimate_roi_parameters([np.zeros((0, 20)), np.zeros((0, 9))])
    assert params["gamma"].shape == params["sigma"].shape == (0,)


# ----------------------------------------------------------------------------
# Repairs
# ----------------------------------------------------------------------------


def test_gamma_at_least_one_is_capped():
    # For a period-6 oscillation acov(k) is proportional to cos(2 pi k / 6):
    # acov(2) ~ -0.5 and acov(3) ~ -1, a ratio of about 2.
    t = np.arange(600)
    x = np.cos(2 * np.pi * t / 6) + 0.01 * np.random.default_rng(0).standard_normal(600)
    with pytest.warns(SpikeInferenceWarning, match=">= 1"):
        assert estimate_decay(x) == GAMMA_CAP
    signals = [np.vstack([x, simulate(600, seed=1)[0]])]
    with pytest.warns(RuntimeWarning, match=r"gamma >= 1 for ROI 0\b"):
        params = estimate_roi_parameters(signals, share_gamma=False, mode="robust")
    assert params["gamma"][0] == GAMMA_CAP
    assert 0 < params["gamma"][1] < GAMMA_CAP


def test_gamma_negative_or_undefined_is_floored():
    t = np.arange(600)
    with pytest.warns(SpikeInferenceWarning, match="<= 0 or undefined"):
        assert estimate_decay(np.cos(2 * np.pi * t / 10)) == GAMMA_FLOOR
    # Observed only where t % 4 is 0 or 1: no lag-2 pair, acov(2) = 0.
    rng = np.random.default_rng(1)
    x = rng.standard_normal(200)
    x[np.isin(t[:200] % 4, (2, 3))] = np.nan
    assert autocovariance(x, 3)[2] == 0.0
    with pytest.warns(SpikeInferenceWarning, match="<= 0 or undefined"):
        gamma = estimate_decay(x)
    assert gamma == GAMMA_FLOOR
    with pytest.warns(SpikeInferenceWarning, match="<= 0 or undefined"):
        params = estimate_roi_parameters([x[None, :]], mode="psd")
    assert params["gamma"][0] == GAMMA_FLOOR and np.isfinite(params["sigma"][0])


def test_negative_radicand_falls_back_to_psd():
    rng = np.random.default_rng(2)
    t = np.arange(2000)
    x = 10 * np.sin(2 * np.pi * t / 500) + 0.1 * rng.standard_normal(t.size)
    psd = estimate_noise(x, 0.5, "psd")
    assert abs(psd - 0.1) < 0.01
    with pytest.warns(SpikeInferenceWarning, match="could not be estimated"):
        assert estimate_noise(x, 0.5, "correct") == psd
    signals = [np.vstack([rng.standard_normal(t.size), x])]
    with pytest.warns(SpikeInferenceWarning, match=r"noise level \(sigma\) of ROI 1\b"):
        params = estimate_roi_parameters(signals, gamma=0.5, mode="correct")
    assert params["sigma"][1] == pytest.approx(psd, rel=1e-12)
    assert params["sigma"][0] == pytest.approx(estimate_noise(signals[0][0], 0.5), rel=1e-12)


def test_constant_trace_gives_zero_sigma_with_warning():
    x = np.full(50, 2.0)
    with pytest.warns(SpikeInferenceWarning, match="could not be estimated"):
        assert estimate_noise(x, 0.9, "robust") == 0.0


# ----------------------------------------------------------------------------
# Missing samples
# ----------------------------------------------------------------------------


def test_nan_gaps_are_left_out(trace):
    x = trace.copy()
    for start in range(100, x.size, 1000):
        x[start : start + 150] = np.nan  # 15 % missing, in blocks
    gamma = estimate_decay(x)
    assert abs(gamma - TRUE_GAMMA) < 0.01
    for mode, tol in (("correct", 0.05), ("psd", 0.10)):
        sigma = estimate_noise(x, gamma, mode)
        assert abs(sigma - TRUE_SIGMA) < tol * TRUE_SIGMA


def test_scattered_nan_samples(trace):
    rng = np.random.default_rng(5)
    x = trace.copy()
    x[rng.random(x.size) < 0.1] = np.nan
    gamma = estimate_decay(x)
    assert abs(gamma - TRUE_GAMMA) < 0.01
    # NaN samples are dropped before the Welch spectrum: no NaN, little bias.
    psd = estimate_noise(x, gamma, "psd")
    assert psd == pytest.approx(np.exp(reference_psd_log(x) / 2), rel=1e-12)
    assert abs(psd - TRUE_SIGMA) < 0.10 * TRUE_SIGMA
    # The lag-1 pairs lost to isolated gaps bias 'correct' upwards (documented).
    assert TRUE_SIGMA < estimate_noise(x, gamma, "correct") < 1.5 * TRUE_SIGMA
    params = estimate_roi_parameters([x[None, :], trace[None, :3000]])
    assert np.all(np.isfinite(params["gamma"])) and np.all(np.isfinite(params["sigma"]))
    for mode in MODES:
        params = estimate_roi_parameters([np.vstack([x, trace])], gamma=0.95, mode=mode)
        assert np.all(np.isfinite(params["sigma"])) and np.all(params["sigma"] > 0)


# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------


def test_short_traces_are_rejected():
    with pytest.raises(ValueError, match=r"traces\[0\] has 7 observed"):
        estimate_decay(np.arange(7.0))
    x = np.arange(10.0)
    x[[1, 4, 6]] = np.nan
    with pytest.raises(ValueError, match=r"traces\[1\] has 7 observed"):
        estimate_noise([np.arange(20.0), x], 0.9)
    short = np.ones((2, 9))
    short[1, :4] = np.nan
    with pytest.raises(ValueError, match=r"ROI 1 of signals\[1\] has 5"):
        estimate_roi_parameters([np.ones((2, 20)), short], gamma=0.9, sigma=1.0)
    with pytest.warns(SpikeInferenceWarning):  # 8 samples are enough
        estimate_decay(np.array([0.0, 1, 0, 2, 1, 3, 0, 1]))


def test_bad_arguments_are_rejected():
    x = simulate(100, seed=6)[0]
    for call in (
        lambda: estimate_noise(x, 0.9, mode="fast"),
        lambda: estimate_roi_parameters([x[None]], mode="Correct"),
    ):
        with pytest.raises(ValueError, match="'correct', 'robust', 'psd'"):
            call()
    for bad in (0.0, 1.0, -0.2, 1.5, np.nan):
        with pytest.raises(ValueError, match="gamma"):
            estimate_noise(x, bad)
        with pytest.raises(ValueError, match="gamma"):
            estimate_roi_parameters([x[None]], gamma=bad)
    with pytest.raises(ValueError, match="gamma"):
        estimate_noise(x, None, "correct")
    with pytest.raises(ValueError, match="gamma"):
        estimate_roi_parameters([x[None]], gamma=[0.5, 0.5])
    for bad in (-1.0, np.nan, [1.0, -0.5]):
        with pytest.raises(ValueError, match="sigma"):
            estimate_roi_parameters([np.vstack([x, x])], sigma=bad)
    with pytest.raises(ValueError, match="signals"):
        estimate_roi_parameters([])
    with pytest.raises(ValueError, match="signals"):
        estimate_roi_parameters([x])
    with pytest.raises(ValueError, match="ROIs"):
        estimate_roi_parameters([np.ones((2, 20)), np.ones((3, 20))])
    with pytest.raises(TypeError, match="signals"):
        estimate_roi_parameters([np.array([["a"] * 10])])
    with pytest.raises(ValueError, match="traces"):
        estimate_decay([])
    with pytest.raises(ValueError, match="1-D"):
        estimate_decay([np.ones((2, 10))])

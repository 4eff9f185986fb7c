"""AR(1) deconvolution, spike_inference and ImagingDataset.infer_spikes.

See docs/contract.md#spike-inference. The reference for the noise-constrained
problem is a conic programme solved by cvxpy with Clarabel (a test-only
dependency): plainly the problem as docs/contract.md#the-optimisation-problem
writes it, with no reformulation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sima_fast as sima
from sima_fast.kernels import ar1
from sima_fast.spikes import (
    SpikeInferenceWarning,
    deconvolve,
    estimate_roi_parameters,
    infer_spikes_from_signals,
    spike_inference,
)

cp = pytest.importorskip("cvxpy")

FS = 30.0
TRUE_GAMMA = float(np.exp(-1.0 / FS))  # tau = 1 s at 30 Hz
TRUE_SIGMA = 0.3


# ----------------------------------------------------------------------------
# References and data
# ----------------------------------------------------------------------------


def simulate(n_t, gamma=TRUE_GAMMA, rate=1.0 / FS, sigma=TRUE_SIGMA, baseline=1.0, seed=0):
    """Poisson spikes through AR(1) calcium, plus baseline and white noise."""
    rng = np.random.default_rng(seed)
    spikes = rng.poisson(rate, n_t).astype(float)
    calcium = np.zeros(n_t)
    prev = 0.0
    for t in range(n_t):
        prev = gamma * prev + spikes[t]
        calcium[t] = prev
    return baseline + calcium + sigma * rng.standard_normal(n_t), spikes


def reference_solve(y, gamma, sigma):
    """Objective, calcium and baseline of the noise-constrained problem as a conic programme.

    Returns None when the programme is infeasible.
    """
    y = np.asarray(y, dtype=np.float64)
    obs = np.isfinite(y)
    n_t = y.shape[0]
    c = cp.Variable(n_t)
    b = cp.Variable()
    c_init = cp.Variable(nonneg=True)
    s = c - gamma * cp.hstack([c_init, c[:-1]])
    constraints = [s >= 0, cp.norm(y[obs] - b - c[obs]) <= sigma * np.sqrt(obs.sum())]
    problem = cp.Problem(cp.Minimize(cp.sum(s)), constraints)
    problem.solve(solver="CLARABEL")
    if problem.status in ("infeasible", "infeasible_inaccurate"):
        return None
    assert problem.status == "optimal", problem.status
    return problem.value, c.value, b.value


def noise_ratio(y, result, sigma):
    """‖y - b - c‖ / (σ √T) over the observed samples."""
    obs = np.isfinite(y)
    r = (np.asarray(y, dtype=np.float64) - result["baseline"] - result["calcium"])[obs]
    return np.linalg.norm(r) / (sigma * np.sqrt(obs.sum()))


def check_against_reference(y, gamma, sigma, result):
    ref = reference_solve(y, gamma, sigma)
    if ref is None:
        assert result["status"] == "infeasible"
        return
    objective, _, _ = ref
    assert result["status"] in ("optimal", "no spikes")
    assert noise_ratio(y, result, sigma) <= 1 + 1e-3
    ours = result["spikes"].sum()
    assert abs(ours - objective) <= 1e-3 * abs(objective) + 1e-6 * sigma * np.sqrt(len(y))


# ----------------------------------------------------------------------------
# The solver against the conic reference
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("gamma", [0.5, 0.9, TRUE_GAMMA, 0.995])
def test_matches_conic_reference(seed, gamma):
    y, _ = simulate(300, gamma=gamma, rate=0.05, seed=seed)
    if seed % 2:
        y[40:55] = np.nan
        y[::23] = np.nan
    result = deconvolve(y, gamma, TRUE_SIGMA)
    assert result["solver"] == "fast"
    check_against_reference(y, gamma, TRUE_SIGMA, result)


@settings(max_examples=20)
@given(
    n_t=st.integers(8, 150),
    gamma=st.floats(0.2, 0.99),
    sigma_factor=st.floats(0.6, 3.0),
    rate=st.floats(0.0, 0.3),
    missing=st.floats(0.0, 0.4),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_property_matches_conic_reference(n_t, gamma, sigma_factor, rate, missing, dtype, seed):
    y, _ = simulate(n_t, gamma=gamma, rate=rate, sigma=0.2, seed=seed)
    rng = np.random.default_rng(seed + 1)
    y[rng.random(n_t) < missing] = np.nan
    if np.isfinite(y).sum() < 8:
        y[:8] = 1.0 + 0.2 * rng.standard_normal(8)
    y = y.astype(dtype)
    sigma = 0.2 * sigma_factor
    result = deconvolve(y, gamma, sigma)
    check_against_reference(y.astype(np.float64), gamma, sigma, result)
    obs = np.isfinite(y)
    assert np.all(np.isfinite(result["calcium"]))
    assert np.all(result["spikes"] >= 0) and result["spikes"][0] == 0
    assert np.all(result["calcium"][obs] >= -1e-9)


def test_osqp_path_agrees_with_fast_path_on_long_traces():
    for seed in range(2):
        y, _ = simulate(2000, seed=seed)
        y[500:520] = np.nan
        fast = deconvolve(y, TRUE_GAMMA, TRUE_SIGMA, solver="fast")
        slow = deconvolve(y, TRUE_GAMMA, TRUE_SIGMA, solver="osqp")
        assert slow["solver"] == "osqp" and fast["solver"] == "fast"
        assert slow["status"] == fast["status"] == "optimal"
        assert noise_ratio(y, slow, TRUE_SIGMA) <= 1 + 1e-3
        assert slow["spikes"].sum() == pytest.approx(fast["spikes"].sum(), rel=1e-3)
        assert slow["baseline"] == pytest.approx(fast["baseline"], abs=1e-3)
        np.testing.assert_allclose(slow["calcium"], fast["calcium"], atol=2e-3)


def test_auto_falls_back_to_osqp_when_fast_path_is_uncertified(monkeypatch):
    y, _ = simulate(200, seed=3)
    real = ar1.deconvolve_batch

    def no_sweeps(*args):
        args = list(args)
        args[10] = 1  # max_iter: one sweep cannot certify this trace
        real(*args)

    monkeypatch.setattr(ar1, "deconvolve_batch", no_sweeps)
    fast = deconvolve(y, TRUE_GAMMA, TRUE_SIGMA, solver="fast")
    assert fast["status"] == "uncertified" and fast["solver"] == "fast"
    auto = deconvolve(y, TRUE_GAMMA, TRUE_SIGMA)
    assert auto["solver"] == "osqp" and auto["status"] == "optimal"
    check_against_reference(y, TRUE_GAMMA, TRUE_SIGMA, auto)


def test_penalized_kernel_is_the_exact_penalized_solution():
    y, _ = simulate(120, gamma=0.9, rate=0.1, seed=4)
    y[30:35] = np.nan
    lam, b = 0.7, 0.95
    c = np.empty(120)
    s = np.empty(120)
    total = ar1.deconvolve_penalized(y, 0.9, lam, b, c, s)
    obs = np.isfinite(y)
    cv = cp.Variable(120)
    c_init = cp.Variable(nonneg=True)
    sv = cv - 0.9 * cp.hstack([c_init, cv[:-1]])
    objective = 0.5 * cp.sum_squares(y[obs] - b - cv[obs]) + lam * cp.sum(sv)
    problem = cp.Problem(cp.Minimize(objective), [sv >= 0])
    problem.solve(solver="CLARABEL")
    ours = 0.5 * np.sum((y[obs] - b - c[obs]) ** 2) + lam * total
    assert ours == pytest.approx(problem.value, rel=1e-7, abs=1e-9)
    np.testing.assert_allclose(c, cv.value, atol=1e-4)


def test_batch_equals_single_traces_and_thread_count_does_not_matter():
    rows = np.array([simulate(1500, seed=k)[0] for k in range(7)])
    rows[2, 100:130] = np.nan
    gammas = np.linspace(0.9, 0.97, 7)
    one = deconvolve(rows, gammas, TRUE_SIGMA, n_processes=1)
    two = deconvolve(rows, gammas, TRUE_SIGMA, n_processes=2)
    for key in ("calcium", "spikes", "baseline", "lam"):
        np.testing.assert_array_equal(one[key], two[key])
    for k in (0, 2, 6):
        single = deconvolve(rows[k], gammas[k], TRUE_SIGMA)
        np.testing.assert_array_equal(single["calcium"], one["calcium"][k])
        assert single["baseline"] == one["baseline"][k]
        assert single["status"] == one["status"][k]


def test_float32_and_float64_traces_agree():
    y, _ = simulate(3000, seed=9)
    y32 = y.astype(np.float32)
    a = deconvolve(y32, TRUE_GAMMA, TRUE_SIGMA)
    b = deconvolve(y32.astype(np.float64), TRUE_GAMMA, TRUE_SIGMA)
    np.testing.assert_array_equal(a["calcium"], b["calcium"])
    assert a["baseline"] == b["baseline"]


def test_long_trace_warm_start_reaches_the_same_answer():
    y, _ = simulate(20_000, seed=11)
    out = {}
    for warm in (0, ar1.WARM_LEN):
        c = np.empty(y.size)
        s = np.empty(y.size)
        b, lam, status, _, _, _ = ar1.deconvolve_trace(
            y, TRUE_GAMMA, TRUE_SIGMA, c, s, 1e-6, 60, warm
        )
        assert status == ar1.STATUS_OPTIMAL
        out[warm] = (s.sum(), b, lam)
    assert out[0][0] == pytest.approx(out[ar1.WARM_LEN][0], rel=1e-5)
    assert out[0][1] == pytest.approx(out[ar1.WARM_LEN][1], abs=1e-5)


# ----------------------------------------------------------------------------
# Accuracy on simulated recordings (issue 5)
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recordings():
    sims = [simulate(10_000, seed=100 + k) for k in range(6)]
    return np.array([y for y, _ in sims]), np.array([s for _, s in sims])


def test_correlation_with_true_spikes_matches_exact_solution(recordings):
    traces, truth = recordings
    result = deconvolve(traces, TRUE_GAMMA, TRUE_SIGMA)
    ours = np.mean([np.corrcoef(result["spikes"][k], truth[k])[0, 1] for k in range(6)])
    exact = []
    for k in range(2):
        value, c, _b = reference_solve(traces[k], TRUE_GAMMA, TRUE_SIGMA)
        s = np.diff(c, prepend=0.0) - np.r_[0.0, (TRUE_GAMMA - 1.0) * c[:-1]]
        s[0] = 0.0
        exact.append(np.corrcoef(np.maximum(s, 0.0), truth[k])[0, 1])
        assert result["spikes"][k].sum() == pytest.approx(value, rel=1e-3)
    ours_first = np.mean([np.corrcoef(result["spikes"][k], truth[k])[0, 1] for k in range(2)])
    assert ours_first >= np.mean(exact) - 0.005
    assert 0.85 <= ours <= 0.92


def test_estimators_recover_gamma_and_sigma(recordings):
    traces, _ = recordings
    params = estimate_roi_parameters([traces])
    assert abs(params["gamma"][0] - TRUE_GAMMA) <= 0.01
    np.testing.assert_allclose(params["sigma"], TRUE_SIGMA, rtol=0.05)


def test_infer_spikes_from_signals_end_to_end(recordings):
    traces, truth = recordings
    raw = [traces[:, :6000].astype(np.float32), traces[:, 6000:]]
    spikes, fits, params = infer_spikes_from_signals(raw)
    assert [s.shape for s in spikes] == [(6, 6000), (6, 4000)]
    assert [f.shape for f in fits] == [(6, 6000), (6, 4000)]
    for k in range(2):
        assert np.allclose(np.nanmax(spikes[k], axis=1), 1.0)
        assert set(params[k]) == {"sigma", "gamma", "baseline", "lambda", "status", "solver"}
        assert np.all(params[k]["gamma"] == params[k]["gamma"][0])  # shared
        assert np.all(params[k]["status"] == "optimal")
        assert np.all(params[k]["solver"] == "fast")
    corr = np.corrcoef(spikes[0][0], truth[0, :6000])[0, 1]
    assert corr > 0.8
    # The sparsest fit leaves small transients in the baseline: it sits above the true 1.0.
    assert np.all(np.abs(params[0]["baseline"] - 1.0) < 0.3)


# ----------------------------------------------------------------------------
# Edge cases (docs/contract.md#spike-inference: no exceptions, no NaN where data existed)
# ----------------------------------------------------------------------------


def test_nan_samples_are_left_out_and_filled_by_the_model():
    y, _ = simulate(2000, seed=5)
    y[::7] = np.nan
    y[300:400] = np.nan
    spikes, fit, params = spike_inference(y)
    assert np.all(np.isfinite(spikes)) and np.all(np.isfinite(fit))
    assert params["status"] == "optimal"
    check_against_reference(
        y, params["gamma"], params["sigma"], deconvolve(y, params["gamma"], params["sigma"])
    )


def test_eight_samples_and_shorter():
    y = np.array([1.0, 1.2, 3.0, 2.5, 2.0, 1.7, 1.5, 1.3])
    spikes, fit, _params = spike_inference(y, gamma=0.8, sigma=0.05)
    assert np.all(np.isfinite(spikes)) and np.all(np.isfinite(fit))
    with pytest.raises(ValueError, match="at least 8"):
        spike_inference(y[:7], gamma=0.8, sigma=0.05)
    with pytest.raises(ValueError, match="at least 8"):
        deconvolve(np.r_[y[:7], np.nan], 0.8, 0.05)


def test_constant_trace_has_no_spikes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpikeInferenceWarning)
        spikes, fit, params = spike_inference(np.full(500, 3.0))
    assert np.all(spikes == 0)
    np.testing.assert_allclose(fit, 3.0)
    assert params["baseline"] == pytest.approx(3.0)


def test_all_zero_spikes_when_noise_explains_everything():
    rng = np.random.default_rng(0)
    y = 2.0 + 0.3 * rng.standard_normal(1000)
    result = deconvolve(y, 0.9, 0.5)
    assert result["status"] == "no spikes" and np.all(result["spikes"] == 0)
    spikes, fit, params = spike_inference(y, gamma=0.9, sigma=0.5)
    assert np.all(spikes == 0) and np.all(np.isfinite(fit))
    assert params["lambda"] == np.inf


def test_gamma_close_to_one():
    y, _ = simulate(3000, gamma=0.999, rate=0.01, seed=6)
    result = deconvolve(y, 0.999, TRUE_SIGMA)
    assert result["status"] == "optimal"
    assert noise_ratio(y, result, TRUE_SIGMA) == pytest.approx(1.0, abs=1e-5)
    short = y[:200]
    check_against_reference(short, 0.999, TRUE_SIGMA, deconvolve(short, 0.999, TRUE_SIGMA))


def test_tiny_noise_level_is_still_met():
    # With a free baseline any positive sigma can be met (the baseline can drop
    # until every fall of the trace is a decay), so the answer stays feasible.
    rng = np.random.default_rng(1)
    y = rng.standard_normal(200)
    result = deconvolve(y, 0.5, 1e-3)
    assert result["status"] == "optimal"
    assert noise_ratio(y, result, 1e-3) <= 1 + 1e-3
    assert np.all(np.isfinite(result["calcium"]))


def test_zero_sigma_is_the_exact_fit_limit():
    # With y = b + c exactly, the sparsest fit takes the largest baseline that
    # keeps every spike y_t - b - gamma (y_{t-1} - b) and c_0 = y_0 - b non-negative.
    rng = np.random.default_rng(2)
    y = rng.standard_normal(300)
    gamma = 0.7
    b_exact = min(y[0], np.min((y[1:] - gamma * y[:-1]) / (1 - gamma)))
    result = deconvolve(y, gamma, 0.0)
    assert result["status"] == "optimal"
    assert result["baseline"] == pytest.approx(b_exact, abs=1e-6)
    np.testing.assert_allclose(result["baseline"] + result["calcium"], y, atol=1e-6)


def test_empty_roi_gives_nan_rows_with_a_warning():
    y, _ = simulate(500, seed=7)
    raw = np.vstack([y, np.full(500, np.nan)])
    with pytest.warns(SpikeInferenceWarning, match="ROI 1 has no observed samples"):
        spikes, fits, params = infer_spikes_from_signals([raw])
    assert np.all(np.isnan(spikes[0][1])) and np.all(np.isnan(fits[0][1]))
    assert np.all(np.isfinite(spikes[0][0]))
    assert params[0]["status"].tolist() == ["optimal", "empty"]


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


def test_bad_arguments_name_the_argument():
    y, _ = simulate(100, seed=8)
    with pytest.raises(ValueError, match="mode"):
        spike_inference(y, mode="exact")
    with pytest.raises(ValueError, match="gamma"):
        spike_inference(y, gamma=1.0)
    with pytest.raises(ValueError, match="gamma"):
        deconvolve(y, 0.0, 0.3)
    with pytest.raises(ValueError, match="sigma"):
        spike_inference(y, sigma=-1.0)
    with pytest.raises(ValueError, match="sigma"):
        deconvolve(y, 0.9, np.nan)
    with pytest.raises(ValueError, match="solver"):
        deconvolve(y, 0.9, 0.3, solver="cvxopt")
    with pytest.raises(ValueError, match="n_processes"):
        deconvolve(y, 0.9, 0.3, n_processes=0)
    with pytest.raises(ValueError, match="traces"):
        deconvolve(np.zeros((2, 3, 4)), 0.9, 0.3)
    with pytest.raises(TypeError, match="traces"):
        deconvolve(np.array(["a"] * 10), 0.9, 0.3)
    with pytest.raises(ValueError, match="1-D"):
        spike_inference(np.zeros((2, 20)))


# ----------------------------------------------------------------------------
# ImagingDataset.infer_spikes
# ----------------------------------------------------------------------------


def _dataset_with_signals(savedir=None):
    """A tiny dataset with one stored extraction whose raw traces are simulated."""
    movie = np.zeros((20, 1, 4, 4, 1), dtype=np.float32)
    dataset = sima.ImagingDataset([sima.Sequence.create("ndarray", movie)], savedir)
    traces = np.array([simulate(3000, seed=20 + k)[0] for k in range(3)])
    record = {"raw": [traces[:, :1800], traces[:, 1800:]], "timestamp": "2026-01-01-00h00m00s"}
    dataset._store_signals(0, "sim", record)
    return dataset, traces


def test_infer_spikes_in_memory():
    dataset, traces = _dataset_with_signals()
    spikes, _fits, _params = dataset.infer_spikes()
    assert [s.shape for s in spikes] == [(3, 1800), (3, 1200)]
    direct = infer_spikes_from_signals([traces[:, :1800], traces[:, 1800:]])
    np.testing.assert_array_equal(spikes[1], direct[0][1])
    record = dataset.signals()["sim"]
    assert "spikes" in record and "spikes_params" in record


def test_infer_spikes_stored_with_signals(tmp_path, capsys):
    dataset, _ = _dataset_with_signals(str(tmp_path / "d.sima"))
    spikes, fits, params = dataset.infer_spikes(
        label="sim", gamma=0.96, mode="robust", verbose=True
    )
    out = capsys.readouterr().out
    assert out.count("infer_spikes: sequence") == 2
    np.testing.assert_allclose(params[0]["gamma"], 0.96)
    loaded = sima.ImagingDataset.load(str(tmp_path / "d.sima"))
    record = loaded.signals()["sim"]
    for k in range(2):
        np.testing.assert_array_equal(record["spikes"][k], spikes[k])
        np.testing.assert_array_equal(record["fits"][k], fits[k])
        np.testing.assert_array_equal(
            record["spikes_params"][k]["baseline"], params[k]["baseline"]
        )
        assert list(record["spikes_params"][k]["solver"]) == ["fast"] * 3
    assert len(record["raw"]) == 2  # the extraction itself is kept


def test_infer_spikes_bad_input():
    movie = np.zeros((20, 1, 4, 4, 2), dtype=np.float32)
    dataset = sima.ImagingDataset([sima.Sequence.create("ndarray", movie)], None)
    with pytest.raises(ValueError, match="no extracted signals"):
        dataset.infer_spikes(channel=1)
    with pytest.raises(ValueError, match="channel"):
        dataset.infer_spikes(channel=5)
    dataset, _ = _dataset_with_signals()
    with pytest.raises(KeyError, match="no signals labelled 'other'"):
        dataset.infer_spikes(label="other")
    with pytest.raises(ValueError, match="mode"):
        dataset.infer_spikes(mode="fast")
    with pytest.raises(ValueError, match="gamma"):
        dataset.infer_spikes(gamma=1.5)


def test_infer_spikes_on_a_sima_dataset_is_refused_without_writing(sima132):
    import os

    path = os.path.join(sima132, "hdf5_and_ndarray.sima")
    dataset = sima.ImagingDataset.load(path)
    with pytest.raises(PermissionError, match=r"SIMA 1\.x"):
        dataset.infer_spikes()

"""Spike inference: the numba AR(1) solver against oasis-deconv, OSQP and SIMA's anchor.

Traces are simulated as in issue 5: 30 Hz, tau 1 s (gamma = exp(-1/30)),
1 Hz Poisson spikes, baseline 1, noise sigma 0.3, with gamma and sigma given
(so only the solver is timed) unless the group says otherwise.

Groups
------
``spikes-trace-10k``
    One 10,000-sample trace per call, single thread, cycling through 50
    different traces (the same trace over and over lets the branch predictor
    learn the solver's merge decisions and flatters every implementation).
    ``ours`` is ``kernels.ar1.deconvolve_trace`` (noise-constrained, baseline
    solved jointly); ``oasis`` is oasis-deconv's ``constrained_oasisAR1(y,
    g, sn, optimize_b=True)`` (GPL; only when installed in the benchmark
    environment, skipped otherwise); ``osqp`` is sima_fast's OSQP path on
    the same problem (two calls).
``spikes-trace-1k``
    ``ours`` on 1,000-sample traces; ``extra_info['sima_anchor_s']`` is
    SIMA 1.3.2's time for such a trace on this kind of machine (DESIGN.md,
    "Anchors": 2.7 s; SIMA no longer installs, so it is not re-measured).
``spikes-batch``
    ``infer_spikes_from_signals`` on 1,000 ROIs x 10,000 frames of float32
    (parameter estimation included; two threads), and ``deconvolve`` alone
    on the same traces with the parameters given.

Every case checks its answer (status, noise norm), so a broken solver cannot
report a fast number. Run with::

    python -m pytest benchmarks/test_spikes.py --benchmark-only -p no:cacheprovider \\
        --benchmark-json=results.json
    python benchmarks/report.py results.json
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sima_fast.kernels import ar1
from sima_fast.spikes import _osqp_trace, deconvolve, infer_spikes_from_signals

GAMMA = float(np.exp(-1.0 / 30.0))
SIGMA = 0.3
SIMA_SECONDS_PER_1K_TRACE = 2.7


def _simulate(n_rows: int, n_t: int, seed: int) -> np.ndarray:
    """``(n_rows, n_t)`` traces: AR(1) calcium of Poisson spikes, baseline and noise."""
    rng = np.random.default_rng(seed)
    spikes = rng.poisson(1.0 / 30.0, (n_rows, n_t)).astype(np.float64)
    from scipy.signal import lfilter

    calcium = lfilter([1.0], [1.0, -GAMMA], spikes, axis=1)
    return 1.0 + calcium + SIGMA * rng.standard_normal((n_rows, n_t))


@pytest.fixture(scope="module")
def traces_10k() -> np.ndarray:
    return _simulate(50, 10_000, 1)


@pytest.fixture(scope="module")
def traces_1k() -> np.ndarray:
    return _simulate(50, 1_000, 2)


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return _simulate(1000, 10_000, 3).astype(np.float32)


def _norm_ratio(y: np.ndarray, fit: np.ndarray) -> float:
    return float(np.linalg.norm(y - fit) / (SIGMA * np.sqrt(y.size)))


def _ours_cycle(traces: np.ndarray):
    n_t = traces.shape[1]
    c = np.empty(n_t)
    s = np.empty(n_t)
    rows = itertools.cycle(range(traces.shape[0]))
    ar1.deconvolve_trace(traces[0], GAMMA, SIGMA, c, s)  # compile / load from cache

    def run():
        i = next(rows)
        b, _lam, status, _, _, _ = ar1.deconvolve_trace(traces[i], GAMMA, SIGMA, c, s)
        return i, b, status

    return run, c


@pytest.mark.benchmark(group="spikes-trace-10k")
def test_trace_10k_ours(benchmark, traces_10k):
    run, c = _ours_cycle(traces_10k)
    i, b, status = benchmark(run)
    assert status == ar1.STATUS_OPTIMAL
    assert _norm_ratio(traces_10k[i], b + c) == pytest.approx(1.0, abs=1e-5)
    benchmark.extra_info["per_trace_ms"] = benchmark.stats.stats.median * 1e3


@pytest.mark.benchmark(group="spikes-trace-10k")
def test_trace_10k_oasis(benchmark, traces_10k):
    oasis = pytest.importorskip(
        "oasis.oasis_methods", reason="oasis-deconv is not installed in this environment"
    )
    rows = itertools.cycle(range(traces_10k.shape[0]))
    oasis.constrained_oasisAR1(traces_10k[0], GAMMA, SIGMA, optimize_b=True)

    def run():
        i = next(rows)
        return i, oasis.constrained_oasisAR1(traces_10k[i], GAMMA, SIGMA, optimize_b=True)

    i, (c, _s, b, _g, _lam) = benchmark(run)
    assert _norm_ratio(traces_10k[i], b + c) == pytest.approx(1.0, abs=1e-2)
    benchmark.extra_info["per_trace_ms"] = benchmark.stats.stats.median * 1e3


@pytest.mark.benchmark(group="spikes-trace-10k")
def test_trace_10k_osqp(benchmark, traces_10k):
    rows = itertools.cycle(range(traces_10k.shape[0]))

    def run():
        i = next(rows)
        return i, _osqp_trace(traces_10k[i], GAMMA, SIGMA)

    i, (c, b, _lam, status) = benchmark.pedantic(run, rounds=2, iterations=1)
    assert status == "optimal"
    assert _norm_ratio(traces_10k[i], b + c) == pytest.approx(1.0, abs=1e-4)
    benchmark.extra_info["per_trace_ms"] = benchmark.stats.stats.median * 1e3


@pytest.mark.benchmark(group="spikes-trace-1k")
def test_trace_1k_ours(benchmark, traces_1k):
    run, c = _ours_cycle(traces_1k)
    i, b, status = benchmark(run)
    assert status == ar1.STATUS_OPTIMAL
    assert _norm_ratio(traces_1k[i], b + c) == pytest.approx(1.0, abs=1e-5)
    median = benchmark.stats.stats.median
    benchmark.extra_info["sima_anchor_s"] = SIMA_SECONDS_PER_1K_TRACE
    benchmark.extra_info["speedup_vs_sima_anchor"] = SIMA_SECONDS_PER_1K_TRACE / median


@pytest.mark.benchmark(group="spikes-batch")
def test_batch_infer_spikes(benchmark, batch):
    infer_spikes_from_signals([batch[:2]], n_processes=2)  # compile / load from cache
    spikes, fits, params = benchmark.pedantic(
        infer_spikes_from_signals, args=([batch],), kwargs={"n_processes": 2}, rounds=3
    )
    assert np.all(params[0]["status"] == "optimal")
    assert abs(params[0]["gamma"][0] - GAMMA) < 0.01
    assert spikes[0].shape == batch.shape and np.all(np.isfinite(fits[0]))


@pytest.mark.benchmark(group="spikes-batch")
def test_batch_deconvolve_given_parameters(benchmark, batch):
    deconvolve(batch[:2], GAMMA, SIGMA, n_processes=2)
    result = benchmark.pedantic(
        deconvolve, args=(batch, GAMMA, SIGMA), kwargs={"n_processes": 2}, rounds=3
    )
    assert np.all(result["status"] == "optimal")

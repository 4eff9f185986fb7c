"""Spike inference: the numba AR(1) solver against oasis-deconv, OSQP and SIMA's time.

Traces are simulated (:func:`sima_fast.bench.cases.simulate_traces`): 30 Hz,
tau 1 s (gamma = exp(-1/30)), 1 Hz Poisson spikes, baseline 1, noise sigma
0.3, with gamma and sigma given (so only the solver is timed) unless the
group says otherwise.

Groups
------
``spikes-trace-10k``
    (a case of :mod:`sima_fast.bench.cases`, also in ``sima-fast bench``)
    One 10,000-sample trace per call, single thread, cycling through 50
    different traces (the same trace over and over lets the branch predictor
    learn the solver's merge decisions and flatters every implementation).
    ``ours`` is ``kernels.ar1.deconvolve_trace`` (noise-constrained, baseline
    solved jointly); ``oasis`` is oasis-deconv's ``constrained_oasisAR1(y,
    g, sn, optimize_b=True)`` (GPL; only when installed in the benchmark
    environment, skipped otherwise); ``osqp`` is sima_fast's OSQP path
    (``spikes.osqp_trace``) on the same problem (two calls).
``spikes-trace-1k``
    ``ours`` on 1,000-sample traces; ``extra_info['sima_anchor_s']`` is
    SIMA 1.3.2's time for such a trace on this kind of machine (2.7 s; SIMA
    no longer installs, so it is not re-measured).
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

import numpy as np
import pytest

from conftest import case_params, run_case
from sima_fast.bench.cases import GAMMA, SIGMA, simulate_traces
from sima_fast.spikes import deconvolve, infer_spikes_from_signals


@pytest.mark.parametrize(("case_inputs", "impl"), case_params("spikes"), indirect=["case_inputs"])
def test_trace(benchmark, case_inputs, impl):
    run_case(benchmark, case_inputs, impl)
    if benchmark.stats is None:  # --benchmark-disable: run and checked, not timed
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["per_trace_ms"] = median * 1e3
    if "sima_anchor_s" in benchmark.extra_info:
        benchmark.extra_info["speedup_vs_sima_anchor"] = (
            benchmark.extra_info["sima_anchor_s"] / median
        )


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return simulate_traces(1000, 10_000, 3).astype(np.float32)


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

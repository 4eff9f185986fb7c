"""Online extraction: the per-frame latency of ``OnlineExtractor.update`` and its warm-up.

Groups
------
``online-update-<dtype>``
    (cases of :mod:`sima_fast.bench.cases`; ``sima-fast bench`` runs the uint16
    one) The scene is that of the extraction benchmarks, 500 simulated cells on
    512×512 frames, ``SIMA_FAST_BENCH_ONLINE_MOVIE`` frames (default 300)
    simulated and cycled through. ``ours`` is ``update(frame)`` (extraction
    of the 500 ROIs with ``1/μ`` weights, the moments of the frame, one AR(1)
    step per ROI; γ, σ and the baseline given) for uint16 frames and the same
    values as float32, timed one call per round over
    ``SIMA_FAST_BENCH_ONLINE_FRAMES`` frames (default 10,000) after 1,000
    frames of warm-up, in this process, on one core (the kernels are not
    parallel); ``offline_per_frame`` is what the offline algebra would do for
    one frame (a CSR product and a moments update). ``extra_info`` holds the
    median, p99, p99.9 and maximum in microseconds and ``others_cpu`` (the
    share of the CPUs other processes used meanwhile: on a shared machine
    the tail of the distribution is theirs). Targets: median ≤ 250 µs, p99
    ≤ 500 µs.
``online-warmup``
    ``OnlineExtractor.warmup()`` in a fresh Python process whose numba cache
    is warm (the first round fills it). ``extra_info``: ``kernels_s``, the
    warm-up of an extractor with all parameters given (every kernel loaded
    from the cache); ``estimators_s``, what the warm-up of an extractor that
    will estimate its parameters adds; ``warmup_s``, their sum (target
    ≤ 1 s); ``background_s``, when the estimators' imports, started in a
    background thread by the second warm-up, are done (from the start of the
    first); medians over the child processes. The benchmark times the two
    warm-ups as seen from this process (the child has imported sima_fast
    before the clock starts).

Every run checks the values of the last frames against the offline kernel
and the time averages of a few pixels against numpy, so a broken kernel
cannot report a fast number. Run with::

    python -m pytest benchmarks/test_online.py --benchmark-only -p no:cacheprovider
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import case_params, run_case


@pytest.mark.parametrize(("case_inputs", "impl"), case_params("online"), indirect=["case_inputs"])
def test_online_update(benchmark, case_inputs, impl):
    run_case(benchmark, case_inputs, impl)


_WARMUP_SCRIPT = """
import json, sys, time
import numpy as np
start = time.perf_counter()
from sima_fast.online import OnlineExtractor
from sima_fast.ROI import ROI
imported = time.perf_counter()
mask = np.zeros((512, 512), dtype=bool)
mask[10:20, 10:20] = True
given = OnlineExtractor([ROI(mask=mask)], (512, 512), dtype=sys.argv[1], gamma=0.9, sigma=0.1,
                        baseline=1.0, warmup=False)
estimated = OnlineExtractor([ROI(mask=mask)], (512, 512), dtype=sys.argv[1], warmup=False)
print("ready", flush=True)
sys.stdin.readline()
go = time.perf_counter()
kernels = given.warmup()
estimators = estimated.warmup()  # the kernels are loaded: only the estimators' part
print("warmed", flush=True)
estimated._loader.join()  # their imports, in a background thread
loaded = time.perf_counter()
print(json.dumps({"import_s": imported - start, "kernels_s": kernels,
                  "estimators_s": estimators, "background_s": loaded - go}), flush=True)
"""


def _start_child(dtype: str) -> subprocess.Popen:
    """A child process that has imported sima_fast.online and waits to run the warm-ups."""
    child = subprocess.Popen(
        [sys.executable, "-c", _WARMUP_SCRIPT, dtype],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    return child


def _run_child(child: subprocess.Popen) -> None:
    """Let the child warm up; return when it has."""
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "warmed"


def _reap(child: subprocess.Popen) -> dict[str, float]:
    """What the child measured, once it is done."""
    report = json.loads(child.stdout.readline())
    child.stdin.close()
    child.stdout.close()
    child.wait(timeout=60)
    return report


@pytest.mark.parametrize("impl", ["ours"])
@pytest.mark.parametrize("dtype", ["uint16"])
def test_online_warmup(benchmark, dtype, impl):
    benchmark.group = "online-warmup"
    first = _start_child(dtype)
    _run_child(first)  # fills the numba cache if it is cold
    _reap(first)
    children: list[subprocess.Popen] = []

    def setup():
        children.append(_start_child(dtype))
        return (children[-1],), {}

    try:
        benchmark.pedantic(_run_child, setup=setup, rounds=3, iterations=1)
    finally:
        reports = [_reap(child) for child in children]
    median = {k: float(np.median([r[k] for r in reports])) for k in reports[0]}
    warmup = median["kernels_s"] + median["estimators_s"]
    benchmark.extra_info.update(
        size=f"{dtype} frames, from a warm numba cache",
        warmup_s=round(warmup, 3),
        **{k: round(v, 3) for k, v in median.items()},
    )
    print(
        f"\nonline warmup ({dtype}, warm cache): {warmup * 1e3:.0f} ms (kernels "
        f"{median['kernels_s'] * 1e3:.0f} ms + estimators {median['estimators_s'] * 1e3:.0f} ms); "
        f"estimators' imports done in the background after "
        f"{median['background_s'] * 1e3:.0f} ms; import of sima_fast.online "
        f"{median['import_s'] * 1e3:.0f} ms"
    )

"""What the suites share: the registry's cases as pytest parameters, their runner, fixtures.

The cases themselves (data, implementations, checks) are in
:mod:`sima_fast.bench.cases`, which also feeds ``sima-fast bench``. Each
suite parametrises one test over ``case_params("<suite>")``: the module-scoped
``case_inputs`` fixture builds one case's data at a time (at the case's full
size, which the ``SIMA_FAST_BENCH_*`` variables named in the case's ``env``
override, e.g. ``SIMA_FAST_BENCH_FRAMES=300`` for a quick check), and
:func:`run_case` times one implementation with pytest-benchmark and checks its
answer. Files go to ``SIMA_FAST_BENCH_DIR`` (kept between runs) or a scratch
directory under the system's temporary directory.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from typing import Any

import numpy as np
import pytest

from sima_fast.bench.cases import (
    BenchCase,
    Inputs,
    cases_of,
    get_case,
    release_shared,
    write_hdf5_movie,
)

#: Frames of the file movies (conftest's HDF5 file, also used by test_dask).
FRAMES = get_case("read-hdf5").size()["frames"]


def cpu_seconds(children: bool = False) -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process), Linux only.

    With ``children``, the CPU seconds of this process's descendants (e.g.
    Dask workers, through psutil) count as this process's.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # not idle/iowait
    if not children:
        own = os.times()
        return busy, own.user + own.system
    import psutil

    me = psutil.Process()
    own_s = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:  # a worker that just exited
            continue
        own_s += t.user + t.system
    return busy, own_s


class OthersCPU:
    """Context manager: the share of all CPUs that other processes used during the block.

    ``share`` (a fraction of ``os.cpu_count()`` CPUs, or None where /proc/stat
    is unavailable) and ``elapsed`` (seconds) are set on exit. Above a few per
    cent the timings of the block are contaminated by other work on the
    (shared) machine and should be re-run.
    """

    def __init__(self, children: bool = False):
        self.children = children
        self.share: float | None = None
        self.elapsed = 0.0

    def __enter__(self) -> OthersCPU:
        self._before = cpu_seconds(self.children)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self._start
        after = cpu_seconds(self.children)
        if self._before is not None and after is not None:
            others = (after[0] - self._before[0]) - (after[1] - self._before[1])
            self.share = max(others, 0.0) / self.elapsed / (os.cpu_count() or 1)

    def record(self, benchmark) -> None:
        """Store ``share`` as ``benchmark.extra_info['others_cpu']`` (when measured)."""
        if self.share is not None:
            benchmark.extra_info["others_cpu"] = round(self.share, 3)


def scratch_dir() -> str:
    """The directory of the benchmark files: ``SIMA_FAST_BENCH_DIR`` or a fixed temporary one."""
    path = os.environ.get("SIMA_FAST_BENCH_DIR") or os.path.join(
        tempfile.gettempdir(), "sima_fast_bench"
    )
    os.makedirs(path, exist_ok=True)
    return path


def case_params(suite: str) -> list:
    """``(case name, implementation name)`` parameters of the registry's cases of one suite.

    For ``@pytest.mark.parametrize(("case_inputs", "impl"), case_params(...),
    indirect=["case_inputs"])``: test ids are ``<case>-<implementation>``.
    """
    return [
        pytest.param(case.name, impl.name, id=f"{case.name}-{impl.name}")
        for case in cases_of(suite)
        for impl in case.implementations
    ]


@pytest.fixture(scope="module")
def case_inputs(request) -> Any:
    """``(case, inputs)`` of the case named by the parameter, built once per module."""
    case = get_case(request.param)
    inputs = case.setup(scratch_dir(), **case.size())
    yield case, inputs
    del inputs
    gc.collect()


@pytest.fixture(scope="module", autouse=True)
def _release_shared_data():
    """Drop the data the cases of a module shared (the simulated scene) after the module."""
    yield
    release_shared()
    gc.collect()


def run_case(benchmark, case_inputs: tuple[BenchCase, Inputs], impl: str) -> Any:
    """Time implementation ``impl`` of a case with pytest-benchmark, then check its answer.

    The entry's group is the case's name; ``extra_info`` gets the size, the
    bytes of one pass (for GB/s), the case's fixed facts, ``others_cpu``
    (see :class:`OthersCPU`) and, for per-frame cases, the latency
    percentiles in microseconds. An implementation whose optional package is
    missing is skipped.
    """
    case, inputs = case_inputs
    implementation = case.implementation(impl)
    reason = implementation.why_unavailable()
    if reason is not None:
        pytest.skip(reason)
    if implementation.warmup is not None:
        implementation.warmup(inputs)  # compile, fill the page cache: outside the timing
    benchmark.group = case.name
    benchmark.extra_info["size"] = inputs.size
    if inputs.nbytes:
        benchmark.extra_info["bytes"] = inputs.nbytes
    benchmark.extra_info.update(case.extra_info)
    rounds = inputs.rounds.get(impl, implementation.rounds)
    with OthersCPU() as busy:
        result = benchmark.pedantic(
            implementation.run, args=(inputs,), rounds=rounds, iterations=1
        )
    busy.record(benchmark)
    if case.unit == "frame" and benchmark.stats is not None:  # None with --benchmark-disable
        times = np.asarray(benchmark.stats.stats.data) * 1e6
        p50, p99, p999 = np.percentile(times, [50, 99, 99.9])
        benchmark.extra_info.update(
            median_us=round(float(p50), 1),
            p99_us=round(float(p99), 1),
            p999_us=round(float(p999), 1),
            max_us=round(float(times.max()), 1),
        )
        print(
            f"\n{case.name} {impl}: median {p50:.1f} µs, p99 {p99:.1f} µs, "
            f"p99.9 {p999:.1f} µs, max {times.max():.1f} µs"
        )
    case.check(inputs, impl, result)
    return result


@pytest.fixture(scope="session")
def hdf5_movie() -> str:
    """The (FRAMES, 512, 512) uint16 HDF5 movie, dataset 'imaging', contiguous layout."""
    return write_hdf5_movie(scratch_dir(), FRAMES)

"""sima_fast against its baselines: the ``sima-fast bench`` harness.

:mod:`sima_fast.bench.cases` is the one registry of benchmark cases (the
setup of each case's data, sima_fast's implementation, the baselines, the
checks). It feeds both this harness and the pytest-benchmark suites in
``benchmarks/``. The harness times, in one run, sima_fast's implementation
and each baseline of the cases marked ``cli`` on the same data, checks every
answer, and reports medians, the ratios ``baseline / ours`` and sima_fast's
throughput as a fraction of the machine's memory-read bandwidth (measured
first, in the same run, by a two-thread streaming sum). That share is given
only for cases that read more than :data:`CACHE_FACTOR` times the last-level
cache per call (:func:`last_level_cache_bytes`); smaller working sets are
partly served by the caches, so they get an em dash and a footnote. Shared
machines are noisy: the ratios, not the absolute times, are what carries from
one run to the next.

One case's data is alive at a time. On the 2-core benchmark machine
``sima-fast bench --quick`` takes about 30 s and peaks at about 2.0 GiB of
resident memory; the full sizes take about 3.5 minutes and peak at about
4.6 GiB (measured 2026-12-06; see the README's Benchmarks section).

Cases of ``sima-fast bench`` (sizes: ``--quick`` / full):

* projections -- mean, std and kurtosis in one pass of
  :class:`~sima_fast.kernels.moments.MomentState` against numpy ``mean`` +
  ``std`` + ``scipy.stats.kurtosis`` and against numpy ``mean`` alone;
  uint16 and float32, 512×512 frames (200 / 2,000 frames).
* gap filling -- the streaming forward fill (see "Gap filling" in
  docs/contract.md) against a per-frame numpy loop and against
  ``np.copyto`` of the same data (float32, about 10 % NaN).
* HDF5 read -- chunked reading through ``Sequence.iter_chunks`` against
  h5py slicing, each chunk consumed (300 / 3,000 frames).
* deconvolution -- one 10,000-sample AR(1) trace (noise-constrained,
  baseline solved jointly) against sima_fast's OSQP path and, when
  installed, oasis-deconv's ``constrained_oasisAR1``.
* extraction -- the run-length sparse-mask kernel with 500 ROIs of ~140
  pixels against SIMA's algebra (a scipy CSR mask matrix times 500-frame
  batches) and, when installed, suite2p; uint16 (300 / 3,000 frames).
* online -- ``OnlineExtractor.update`` on one 512×512 uint16 frame with 500
  ROIs (extraction, moments and AR(1)), against the per-frame work the
  offline algebra would do (a CSR product and a moments update).
* motion correction (full run only, 300 frames; the suites use 2,000) --
  ``RigidRegistration2D`` estimate + apply on simulated sub-pixel motion
  (±20 px, Poisson noise) against a plain ``scipy.fft`` phase-correlation
  loop with ``scipy.ndimage.shift``.

Use it as ``sima-fast bench [--quick] [--json out.json] [--plot out.png]`` or
call :func:`run_benchmarks`.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from sima_fast.bench.cases import BenchCase, Inputs, cases_of, release_shared

__all__ = [
    "CACHE_FACTOR",
    "DEFAULT_CACHE_BYTES",
    "CaseResult",
    "in_memory",
    "last_level_cache_bytes",
    "machine_description",
    "markdown_table",
    "memory_bandwidth",
    "plot_ratios",
    "run_benchmarks",
    "time_case",
]


@dataclass
class CaseResult:
    """Medians (seconds) of one case: sima_fast's and each baseline's.

    Attributes
    ----------
    work, size : str
        What was done, on what (the first two columns of the table).
    ours : float
        sima_fast's median time, seconds.
    baselines : dict
        Median time of each baseline (by its label), seconds.
    nbytes : int or None
        Bytes one call of sima_fast's implementation reads.
    notes : list of str
        Remarks (e.g. a baseline skipped because its package is not installed).
    """

    work: str
    size: str
    ours: float
    baselines: dict[str, float]
    nbytes: int | None
    notes: list[str]

    def bandwidth_share(self, bandwidth: float, cache_bytes: int) -> float | None:
        """Return sima_fast's throughput as a fraction of the memory-read bandwidth, if meaningful.

        A share is given only when one call reads more than
        :data:`CACHE_FACTOR` times the last-level cache: a smaller working
        set stays (partly) in the caches between rounds, and its throughput
        can exceed what memory delivers.

        Parameters
        ----------
        bandwidth : float
            The memory-read bandwidth, GB/s.
        cache_bytes : int
            The size of the last-level cache, bytes.

        Returns
        -------
        float or None
            ``nbytes / ours / bandwidth`` (bandwidth in bytes per second), or
            None when the bytes are unknown or the working set is too small.
        """
        if not self.nbytes or not in_memory(self.nbytes, cache_bytes):
            return None
        return self.nbytes / self.ours / 1e9 / bandwidth

    def ratios(self) -> dict[str, float]:
        """Return ``baseline / ours`` for every baseline (above 1: sima_fast is faster).

        Returns
        -------
        dict of str to float
            The ratio of each baseline's median time to sima_fast's, by the
            baseline's label.
        """
        return {k: v / self.ours for k, v in self.baselines.items()}


def _median_time(fn: Callable[[], Any], rounds: int, budget: float) -> tuple[float, Any]:
    """Median wall time of ``fn`` over up to ``rounds`` calls within ``budget`` seconds."""
    times = []
    result = None
    start = time.perf_counter()
    for _ in range(max(1, rounds)):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return statistics.median(times), result


# -- memory bandwidth ---------------------------------------------------------------------

#: A working set counts as read from memory (and gets a bandwidth share) above this many
#: times the last-level cache.
CACHE_FACTOR = 4
#: The last-level cache size assumed when the system does not tell, bytes.
DEFAULT_CACHE_BYTES = 32 * 2**20


def _parse_size(text: str) -> int:
    """Bytes of a sysfs cache size such as ``"32768K"``, ``"1M"`` or ``"512"``."""
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
    return int(text[:-1] if scale > 1 else text) * scale


def last_level_cache_bytes(sysfs: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """Return the size of the CPU's last-level cache (the highest level holding data).

    Read from Linux's sysfs (``index*/level``, ``type`` and ``size`` under
    ``sysfs``), else from ``os.sysconf`` (``SC_LEVEL3_CACHE_SIZE``, then
    ``SC_LEVEL2_CACHE_SIZE``), else :data:`DEFAULT_CACHE_BYTES`.

    Parameters
    ----------
    sysfs : str
        The cache directory of one CPU.

    Returns
    -------
    int
        Bytes.
    """
    best: tuple[int, int] | None = None
    try:
        entries = sorted(os.listdir(sysfs))
    except OSError:
        entries = []
    for entry in entries:
        if not entry.startswith("index"):
            continue
        path = os.path.join(sysfs, entry)
        try:
            with open(os.path.join(path, "type")) as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(os.path.join(path, "level")) as f:
                level = int(f.read())
            with open(os.path.join(path, "size")) as f:
                size = _parse_size(f.read())
        except (OSError, ValueError):
            continue
        if size > 0 and (best is None or level > best[0]):
            best = (level, size)
    if best is not None:
        return best[1]
    for name in ("SC_LEVEL3_CACHE_SIZE", "SC_LEVEL2_CACHE_SIZE"):
        try:
            size = os.sysconf(name)
        except (ValueError, OSError, AttributeError):
            continue
        if size > 0:
            return size
    return DEFAULT_CACHE_BYTES


def in_memory(nbytes: int, cache_bytes: int) -> bool:
    """Tell whether a working set of ``nbytes`` is read from memory rather than the caches.

    Parameters
    ----------
    nbytes : int
        Bytes one call reads.
    cache_bytes : int
        The last-level cache size, bytes.

    Returns
    -------
    bool
        True when ``nbytes`` exceeds :data:`CACHE_FACTOR` times ``cache_bytes``.
    """
    return nbytes > CACHE_FACTOR * cache_bytes


def memory_bandwidth(nbytes: int = 1 << 29, threads: int = 2) -> float:
    """Measure the memory-read bandwidth: a streaming sum over ``nbytes`` of float32.

    The array is far larger than the caches; the best of five passes counts.

    Parameters
    ----------
    nbytes : int
        Size of the array summed, bytes (512 MiB by default).
    threads : int
        Threads reading it (at most numba's thread count).

    Returns
    -------
    float
        Bytes read per second of the best pass, in GB/s (10⁹ bytes per second).

    Raises
    ------
    RuntimeError
        If the kernel's sum is wrong (the measurement would not be a read).
    """
    import numba

    from sima_fast._threads import kernel_threads
    from sima_fast.kernels.bandwidth import read_sum

    # Written, not just allocated: untouched pages all map to one zero page.
    x = np.full(nbytes // 4, 0.25, dtype=np.float32)
    with kernel_threads(min(threads, numba.config.NUMBA_NUM_THREADS)) as n:
        read_sum(x[: 1 << 20], n)
        best = np.inf
        for _ in range(5):
            t0 = time.perf_counter()
            total = read_sum(x, n)
            best = min(best, time.perf_counter() - t0)
    if abs(total - 0.25 * x.size) > 0.01 * 0.25 * x.size:
        raise RuntimeError("bandwidth kernel returned a wrong sum")
    return x.nbytes / best / 1e9


# -- timing a case ---------------------------------------------------------------------


def time_case(
    case: BenchCase, inputs: Inputs, budget: float, out: TextIO | None = None
) -> CaseResult:
    """Time and check sima_fast's implementation of a case and its ``cli`` baselines.

    Each implementation is warmed up (when it says how), timed (the median of
    its rounds, stopping early once ``budget`` seconds are spent) and its last
    answer checked, before the next one runs (they may share output buffers).
    Baselines whose package is missing are skipped with a note.

    Parameters
    ----------
    case : BenchCase
        The case.
    inputs : Inputs
        What ``case.setup`` built.
    budget : float
        Seconds after which an implementation's timing loop stops.
    out : file, optional
        Where to print progress (default: nowhere).

    Returns
    -------
    CaseResult
    """
    if out is not None:
        print(f"  timing {case.work} ...", file=out, flush=True)
    notes = list(inputs.notes)
    medians: dict[str, float] = {}
    ours = case.ours
    for impl in [ours, *(i for i in case.implementations if i.cli and i is not ours)]:
        reason = impl.why_unavailable()
        if reason is not None:
            notes.append(reason)
            continue
        if impl.warmup is not None:
            impl.warmup(inputs)
        rounds = inputs.rounds.get(impl.name, impl.rounds)
        medians[impl.name], result = _median_time(
            lambda impl=impl: impl.run(inputs), rounds, budget
        )
        case.check(inputs, impl.name, result)
        del result
        gc.collect()  # the baselines' temporaries (several GB at full size)
    baselines = {
        impl.label: medians[impl.name]
        for impl in case.implementations
        if impl is not ours and impl.name in medians
    }
    return CaseResult(case.work, inputs.size, medians["ours"], baselines, inputs.nbytes, notes)


# -- reporting ---------------------------------------------------------------------------


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def markdown_table(
    results: list[CaseResult], bandwidth: float, cache_bytes: int | None = None
) -> str:
    """Format the results as one Markdown table (one row per baseline).

    sima_fast's throughput is shown as a share of the memory-read bandwidth
    only for cases that read more than :data:`CACHE_FACTOR` times the
    last-level cache per call; the others get an em dash and a footnote
    under the table (their data stays in the caches between rounds).

    Parameters
    ----------
    results : list of CaseResult
        The timed cases, in the order of the table.
    bandwidth : float
        The machine's memory-read bandwidth, GB/s.
    cache_bytes : int, optional
        The last-level cache size, bytes (default:
        :func:`last_level_cache_bytes`).

    Returns
    -------
    str
        The table, followed by the footnote when a share is withheld,
        without a trailing newline.
    """
    if cache_bytes is None:
        cache_bytes = last_level_cache_bytes()
    lines = [
        "| work | size | ours (median) | baseline | baseline (median) | baseline / ours "
        "| ours, share of memory bandwidth |",
        "|---|---|---|---|---|---|---|",
    ]
    withheld = False
    for r in results:
        share = ""
        fraction = r.bandwidth_share(bandwidth, cache_bytes)
        if fraction is not None:
            share = f"{r.nbytes / r.ours / 1e9:.1f} GB/s ({fraction:.0%})"
        elif r.nbytes:
            share = "—¹"
            withheld = True
        first = True
        for name, value in r.baselines.items() or {"—": float("nan")}.items():
            ratio = value / r.ours
            lines.append(
                "| "
                + " | ".join(
                    [
                        r.work if first else "",
                        r.size if first else "",
                        _fmt_time(r.ours) if first else "",
                        name,
                        _fmt_time(value) if np.isfinite(value) else "—",
                        f"{ratio:,.1f}×" if np.isfinite(ratio) else "—",
                        share if first else "",
                    ]
                )
                + " |"
            )
            first = False
    if withheld:
        lines += [
            "",
            f"¹ No share: one call reads at most {CACHE_FACTOR}× the last-level cache "
            f"({cache_bytes / 2**20:.0f} MiB), so much of it comes from the caches and the "
            "throughput is not a measure of memory bandwidth.",
        ]
    return "\n".join(lines)


def machine_description(bandwidth: float) -> str:
    """Describe the machine, the software and the measured bandwidth in one line.

    Parameters
    ----------
    bandwidth : float
        The memory-read bandwidth measured in this run, GB/s.

    Returns
    -------
    str
        CPU model and count, Python, numpy, scipy and numba versions, and
        the bandwidth.
    """
    import numba
    import scipy

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, numba {numba.__version__}; "
        f"memory read {bandwidth:.1f} GB/s (2 threads, this run)"
    )


def plot_ratios(results: list[CaseResult], path: str) -> None:
    """Draw a horizontal bar chart of ``baseline / ours`` (log scale), written atomically.

    Needs matplotlib (imported here, with the Agg backend).

    Parameters
    ----------
    results : list of CaseResult
        The timed cases: one bar per baseline of each.
    path : str
        The image file to write; its extension names the format (PNG when
        there is none).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sima_fast._atomic import atomic_write

    labels, values = [], []
    for r in results:
        for name, ratio in r.ratios().items():
            labels.append(f"{r.work}\nvs {name}")
            values.append(ratio)
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(values) + 1.5))
    colours = ["tab:green" if v >= 1 else "tab:red" for v in values]
    ax.barh(range(len(values)), values, color=colours)
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="k", lw=0.8)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:,.1f}×", va="center", fontsize=7)
    ax.set_xlabel("baseline time / sima_fast time (higher is better for sima_fast)")
    ax.set_title("sima_fast speed-ups, measured in one run")
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format=os.path.splitext(path)[1][1:] or "png", dpi=120)
    plt.close(fig)


# -- running ---------------------------------------------------------------------------


def run_benchmarks(
    quick: bool = False,
    json_path: str | None = None,
    plot_path: str | None = None,
    out: TextIO | None = None,
    cases: Iterable[BenchCase] | None = None,
) -> dict[str, Any]:
    """Run every case; print the Markdown table; optionally write JSON and a plot.

    One case's data is alive at a time: each case's inputs are built just
    before it is timed and released (with the data cases share, see
    :func:`~sima_fast.bench.cases.release_shared`) before the next one is
    built.

    Parameters
    ----------
    quick : bool
        Small sizes (about 30 s on 2 cores, peak memory about 2.0 GiB) instead
        of the sizes of the performance targets (about 3.5 minutes, peak
        memory about 4.6 GiB); see the README's Benchmarks section.
    json_path, plot_path : str, optional
        Where to write the results as JSON and the bar chart of ratios.
    out : file, optional
        Where to print (default: stdout).
    cases : iterable of BenchCase, optional
        The cases to run (default: those of ``sima-fast bench``,
        ``cases_of(cli=True)``).

    Returns
    -------
    dict
        ``machine``, ``bandwidth_gbs``, ``llc_bytes`` (the last-level cache
        size the bandwidth shares were judged by), ``quick`` and ``results``
        (one dict per case; ``bandwidth_share`` is None where withheld).
    """
    out = sys.stdout if out is None else out
    start = time.perf_counter()
    print("measuring memory-read bandwidth ...", file=out, flush=True)
    bandwidth = memory_bandwidth(1 << (28 if quick else 30))
    cache_bytes = last_level_cache_bytes()
    results: list[CaseResult] = []
    budget = 20.0 if quick else 120.0
    with tempfile.TemporaryDirectory(prefix="sima_fast_bench_") as directory:
        for case in cases_of(cli=True) if cases is None else cases:
            if quick and not case.cli_quick:
                continue
            # One case's data at a time (movies of 1–3 GB at full size): built
            # here, released before the next case is built.
            print(f"  preparing {case.name} ...", file=out, flush=True)
            inputs = case.setup(directory, **case.size(quick, environ={}, cli=True))
            results.append(time_case(case, inputs, budget, out))
            del inputs
            release_shared()
            gc.collect()
    machine = machine_description(bandwidth)
    table = markdown_table(results, bandwidth, cache_bytes)
    print(file=out)
    print(f"Machine: {machine}", file=out)
    print(file=out)
    print(table, file=out)
    for r in results:
        for note in r.notes:
            print(f"\nNote ({r.work}): {note}", file=out)
    print(f"\nbench finished in {time.perf_counter() - start:.0f} s", file=out)
    payload = {
        "machine": machine,
        "bandwidth_gbs": bandwidth,
        "llc_bytes": cache_bytes,
        "quick": quick,
        "results": [
            {
                "work": r.work,
                "size": r.size,
                "ours_s": r.ours,
                "baselines_s": r.baselines,
                "ratios": r.ratios(),
                "bytes": r.nbytes,
                "bandwidth_share": r.bandwidth_share(bandwidth, cache_bytes),
                "notes": r.notes,
            }
            for r in results
        ],
    }
    if json_path:
        from sima_fast._atomic import atomic_write

        with atomic_write(json_path) as tmp, open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
    if plot_path:
        plot_ratios(results, plot_path)
    return payload

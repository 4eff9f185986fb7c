"""The benchmark harness behind ``sima-fast bench``: sima_fast against its baselines.

Every case times sima_fast's implementation and each baseline on the same data
in the same run, checks that they agree, and reports medians, the ratios
``baseline / ours`` and sima_fast's throughput as a fraction of the machine's
memory-read bandwidth (measured first, in the same run, by a two-thread
streaming sum). Shared machines are noisy: the ratios, not the absolute
times, are what carries from one run to the next.

Cases (sizes: ``--quick`` / full):

* ``projections`` -- mean, std and kurtosis in one pass of
  :class:`~sima_fast.kernels.moments.MomentState` against numpy ``mean`` +
  ``std`` + ``scipy.stats.kurtosis`` and against numpy ``mean`` alone;
  uint16 and float32, 512×512 frames (200 / 2,000 frames).
* ``gap filling`` -- the streaming forward fill of SPEC §2.1 against a
  per-frame numpy loop and against ``np.copyto`` of the same data (float32,
  10 % NaN rows).
* ``extraction`` -- the run-length sparse-mask kernel with 500 ROIs of
  ~140 pixels against SIMA's algebra (a scipy CSR mask matrix times
  500-frame batches), uint16 (300 / 3,000 frames).
* ``HDF5 read`` -- chunked reading through ``Sequence.iter_chunks`` against
  h5py slicing, each chunk consumed.
* ``deconvolution`` -- one 10,000-sample AR(1) trace (noise-constrained,
  baseline solved jointly) against sima_fast's OSQP path and, when installed,
  oasis-deconv's ``constrained_oasisAR1``.
* ``online`` -- ``OnlineExtractor.update`` on one 512×512 uint16 frame with
  500 ROIs (extraction, moments and AR(1)), against the per-frame work the
  offline algebra would do (a CSR product and numpy moment updates).

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

__all__ = ["Case", "CaseResult", "memory_bandwidth", "run_benchmarks"]


@dataclass
class Case:
    """One comparison: sima_fast's callable and its baselines on the same data."""

    work: str
    size: str
    ours: Callable[[], Any]
    baselines: dict[str, Callable[[], Any]]
    nbytes: int | None = None
    check: Callable[[Any, dict[str, Any]], None] | None = None
    rounds: dict[str, int] = field(default_factory=dict)
    unit: str = "call"
    notes: list[str] = field(default_factory=list)


@dataclass
class CaseResult:
    """Medians (seconds) of one case."""

    work: str
    size: str
    ours: float
    baselines: dict[str, float]
    nbytes: int | None
    notes: list[str]

    def ratios(self) -> dict[str, float]:
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


def memory_bandwidth(nbytes: int = 1 << 29, threads: int = 2) -> float:
    """Measured memory-read bandwidth in GB/s: a streaming sum over ``nbytes`` of float32.

    The array is far larger than the caches; the best of five passes counts.
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


# -- cases -----------------------------------------------------------------------------


def _moments_cases(quick: bool) -> list[Case]:
    import scipy.stats

    from sima_fast.kernels.moments import MomentState

    frames = 200 if quick else 2000
    shape = (512, 512)
    rng = np.random.default_rng(0)
    cases = []
    for dtype in (np.uint16, np.float32):
        movie = rng.integers(0, 4096, size=(frames, shape[0] * shape[1]), dtype=np.uint16)
        if dtype == np.float32:
            movie = movie.astype(np.float32)

        def ours(movie=movie):
            state = MomentState.empty((movie.shape[1],))
            state.update(movie)
            return state.mean_value(), state.std(), state.kurtosis()

        def numpy_scipy(movie=movie):
            return (
                movie.mean(0),
                movie.std(0),
                scipy.stats.kurtosis(movie, axis=0, fisher=False, bias=True),
            )

        def numpy_mean(movie=movie):
            return movie.mean(0)

        def check(res, base):
            cols = slice(0, None, 997)
            # numpy's float32 mean accumulates in float32: allow for that.
            for got, want in zip(res, base["numpy+scipy"]):
                np.testing.assert_allclose(got[cols], want[cols], rtol=1e-5)

        ours(movie[:8])  # compile or load the numba cache
        cases.append(
            Case(
                work=f"mean + std + kurtosis, one pass ({np.dtype(dtype).name})",
                size=f"{frames}×512×512 {np.dtype(dtype).name}",
                ours=ours,
                baselines={"numpy+scipy": numpy_scipy, "numpy mean": numpy_mean},
                nbytes=movie.nbytes,
                check=check,
                rounds={"ours": 7, "numpy+scipy": 3, "numpy mean": 3},
            )
        )
    return cases


def _gaps_case(quick: bool) -> Case:
    from sima_fast.kernels.gaps import fill_forward

    frames = 200 if quick else 2000
    pixels = 512 * 512
    rng = np.random.default_rng(1)
    movie = rng.random((frames, pixels), dtype=np.float32)
    rows = rng.random((frames, 512)) < 0.1
    movie.reshape(frames, 512, 512)[rows] = np.nan
    movie[0] = rng.random(pixels, dtype=np.float32)  # every pixel seen in frame 0
    out = np.empty_like(movie)

    def ours():
        last = movie[0].copy()
        for t0 in range(0, frames, 100):
            fill_forward(movie[t0 : t0 + 100], last, out[t0 : t0 + 100])
        return out

    def loop():
        last = movie[0].copy()
        for t in range(frames):
            frame = movie[t]
            ok = np.isfinite(frame)
            last[ok] = frame[ok]
            out[t] = last
        return out

    def copyto():
        np.copyto(out, movie)
        return out

    def check(res, base):
        expect = loop().copy()
        np.testing.assert_array_equal(ours(), expect)

    ours()
    return Case(
        work="gap filling (SPEC §2.1), 10 % NaN rows",
        size=f"{frames}×512×512 float32",
        ours=ours,
        baselines={"numpy loop": loop, "np.copyto": copyto},
        nbytes=movie.nbytes,
        check=check,
        rounds={"ours": 7, "numpy loop": 3, "np.copyto": 7},
    )


def _extraction_scene(frames: int) -> dict[str, Any]:
    from sima_fast.extract import ExtractionWeights
    from sima_fast.misc import simulate_movie
    from sima_fast.ROI import ROI

    sim = simulate_movie(
        num_frames=frames,
        frame_shape=(512, 512),
        num_channels=1,
        cells_per_plane=500,
        cell_radius=6.7,
        seed=2024,
    )
    movie = sim.movie[:, 0, :, :, 0].reshape(frames, -1)
    rois = [ROI(mask=m) for m in sim.masks]
    mean = movie.mean(axis=0, dtype=np.float64).reshape(1, 512, 512)
    weights = ExtractionWeights(rois, (1, 512, 512), mean, remove_overlap=True)
    return {"movie": movie, "rois": rois, "mean": mean, "weights": weights}


def _extraction_case(scene: dict[str, Any]) -> Case:
    from sima_fast._threads import kernel_threads
    from sima_fast.kernels.extract import extract_runs

    movie = scene["movie"]
    weights = scene["weights"]
    frames = movie.shape[0]
    mu = scene["mean"].reshape(-1)
    masks = weights.masks.tocsr()
    out = np.empty((frames, weights.n_rois))

    def ours():
        with kernel_threads(2):
            return extract_runs(movie, weights.plan, out)

    def scipy_csr():
        res = np.empty((weights.n_rois, frames))
        for t0 in range(0, frames, 500):
            batch = movie[t0 : t0 + 500].astype(np.float64).T / mu[:, None]
            res[:, t0 : t0 + 500] = masks @ batch
        return res

    def check(res, base):
        got = ours()[:3].T
        want = masks @ (movie[:3].astype(np.float64).T / mu[:, None])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)

    baselines: dict[str, Callable[[], Any]] = {"scipy CSR × 500-frame batches (SIMA)": scipy_csr}
    notes = []
    try:
        from suite2p.extraction.extract import extract_traces
    except ImportError:
        notes.append("suite2p not installed: its extraction baseline skipped")
    else:
        inv_mu = 1.0 / mu
        cells = [
            (masks.indices[a:b], (masks.data[a:b] * inv_mu[masks.indices[a:b]]).astype(np.float32))
            for a, b in zip(masks.indptr[:-1], masks.indptr[1:])
        ]
        no_neuropil = [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))] * len(cells)
        frames3d = movie.reshape(frames, 512, 512)

        def suite2p():
            return extract_traces(frames3d, cells, no_neuropil, 500)

        baselines["suite2p extract_traces"] = suite2p

    ours()
    return Case(
        work="extraction, 500 ROIs (~140 px, overlaps removed), in memory",
        size=f"{frames}×512×512 uint16",
        ours=ours,
        baselines=baselines,
        nbytes=movie.nbytes,
        check=check,
        rounds={"ours": 7, "scipy CSR × 500-frame batches (SIMA)": 2, "suite2p extract_traces": 2},
        notes=notes,
    )


def _hdf5_case(quick: bool, directory: str) -> Case:
    import h5py

    from sima_fast import Sequence

    frames = 300 if quick else 3000
    path = os.path.join(directory, "bench_movie.h5")
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("imaging", (frames, 512, 512), dtype=np.uint16)
        for t0 in range(0, frames, 100):
            ds[t0 : t0 + 100] = rng.integers(0, 4096, size=(min(100, frames - t0), 512, 512))
    seq = Sequence.create("HDF5", path, "tyx")

    def ours():
        total = 0
        for _, chunk in seq.iter_chunks(chunk_frames=100):
            total += int(chunk.max())
        return total

    def h5py_slices():
        total = 0
        with h5py.File(path, "r") as f:
            ds = f["imaging"]
            for t0 in range(0, frames, 100):
                total += int(ds[t0 : t0 + 100].max())
        return total

    def check(res, base):
        assert res == base["h5py slices"]

    h5py_slices()  # page cache
    return Case(
        work="chunked read from HDF5, each chunk consumed",
        size=f"{frames}×512×512 uint16",
        ours=ours,
        baselines={"h5py slices": h5py_slices},
        nbytes=frames * 512 * 512 * 2,
        check=check,
        rounds={"ours": 5, "h5py slices": 5},
    )


def _deconvolution_case(quick: bool) -> Case:
    import itertools

    from scipy.signal import lfilter

    from sima_fast.kernels import ar1
    from sima_fast.spikes import _osqp_trace

    gamma = float(np.exp(-1.0 / 30.0))
    sigma = 0.3
    n_t = 10_000
    rng = np.random.default_rng(4)
    spikes = rng.poisson(1.0 / 30.0, (40, n_t)).astype(np.float64)
    traces = 1.0 + lfilter([1.0], [1.0, -gamma], spikes, axis=1)
    traces += sigma * rng.standard_normal(traces.shape)
    c = np.empty(n_t)
    s = np.empty(n_t)
    cycle = itertools.cycle(range(len(traces)))
    osqp_len = 2000 if quick else n_t

    def ours():
        # One trace per call, a different one each time (see benchmarks/test_spikes.py).
        i = next(cycle)
        return i, ar1.deconvolve_trace(traces[i], gamma, sigma, c, s)

    baselines: dict[str, Callable[[], Any]] = {}
    notes = []

    def osqp():
        return _osqp_trace(traces[0, :osqp_len], gamma, sigma)

    baselines[f"OSQP path ({osqp_len} samples)" if quick else "OSQP path"] = osqp
    try:
        from oasis.oasis_methods import constrained_oasisAR1
    except ImportError:
        notes.append("oasis-deconv not installed: baseline skipped (pip install oasis-deconv)")
    else:
        oasis_cycle = itertools.cycle(range(len(traces)))

        def oasis():
            i = next(oasis_cycle)
            return constrained_oasisAR1(traces[i], gamma, sigma, optimize_b=True)

        baselines["oasis constrained_oasisAR1"] = oasis

    def check(res, base):
        _, out = res
        assert out[2] == ar1.STATUS_OPTIMAL

    ours()
    return Case(
        work="AR(1) deconvolution, one trace, 1 thread",
        size=f"{n_t} samples",
        ours=ours,
        baselines=baselines,
        check=check,
        rounds={"ours": 200, "oasis constrained_oasisAR1": 200, next(iter(baselines)): 1},
        notes=notes,
    )


def _online_case(scene: dict[str, Any]) -> Case | None:
    try:
        from sima_fast.online import OnlineExtractor
    except ImportError:
        return None
    import scipy.sparse

    from sima_fast.kernels.moments import MomentState

    movie = scene["movie"]
    frames = movie.shape[0]
    rois = scene["rois"]
    mean = scene["mean"]
    extractor = OnlineExtractor(
        rois, (512, 512), mean_frame=mean[0], gamma=0.95, sigma=0.05, dtype="uint16"
    )
    extractor.warmup()
    frames2d = movie.reshape(frames, 512, 512)
    cycle = iter(range(10**9))
    weights = scene["weights"]
    masks = scipy.sparse.csr_matrix(weights.masks)
    mu = mean.reshape(-1)
    state = MomentState.empty((512 * 512,))

    def ours():
        return extractor.update(frames2d[next(cycle) % frames])

    baseline_cycle = iter(range(10**9))

    def offline_per_frame():
        frame = movie[next(baseline_cycle) % frames]
        values = masks @ (frame / mu)
        state.update(frame[None, :])
        return values

    return Case(
        work="online update(): extract 500 ROIs + moments + AR(1), one frame",
        size="512×512 uint16 frame",
        ours=ours,
        baselines={"scipy CSR product + MomentState per frame": offline_per_frame},
        nbytes=512 * 512 * 2,
        rounds={"ours": 2000, "scipy CSR product + MomentState per frame": 300},
        unit="frame",
    )


# -- running ---------------------------------------------------------------------------


def _case_groups(quick: bool, directory: str, out: TextIO) -> Iterator[list[Case]]:
    """The cases, one group at a time, built only when the previous group is done.

    Each group's data (movies of 1–3 GB at full size, and the baselines'
    float64 temporaries) is released before the next is built, so the full
    run fits in the memory of a small workstation.
    """
    builders: list[tuple[str, Callable[[], list[Case]]]] = [
        ("projections", lambda: _moments_cases(quick)),
        ("gap filling", lambda: [_gaps_case(quick)]),
        ("HDF5 read", lambda: [_hdf5_case(quick, directory)]),
        ("deconvolution", lambda: [_deconvolution_case(quick)]),
    ]
    scene_frames = 300 if quick else 3000
    scene: dict[str, Any] = {}

    def extraction() -> list[Case]:
        scene.update(_extraction_scene(scene_frames))
        return [_extraction_case(scene)]

    def online() -> list[Case]:
        case = _online_case(scene)
        scene.clear()  # the online case holds what it needs
        return [case] if case is not None else []

    builders += [("extraction", extraction), ("online", online)]
    for name, build in builders:
        print(f"  preparing {name} ...", file=out, flush=True)
        yield build()
        gc.collect()


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def markdown_table(results: list[CaseResult], bandwidth: float) -> str:
    """The results as one Markdown table (one row per baseline)."""
    lines = [
        "| work | size | ours (median) | baseline | baseline (median) | baseline / ours "
        "| ours, share of memory bandwidth |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        share = ""
        if r.nbytes:
            gbs = r.nbytes / r.ours / 1e9
            share = f"{gbs:.1f} GB/s ({gbs / bandwidth:.0%})"
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
    return "\n".join(lines)


def machine_description(bandwidth: float) -> str:
    """One line naming the machine, the software and the measured bandwidth."""
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
    """A horizontal bar chart of ``baseline / ours`` (log scale), written atomically."""
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


def run_benchmarks(
    quick: bool = False,
    json_path: str | None = None,
    plot_path: str | None = None,
    out: TextIO | None = None,
) -> dict[str, Any]:
    """Run every case; print the Markdown table; optionally write JSON and a plot.

    Parameters
    ----------
    quick : bool
        Small sizes (about a minute on 2 cores) instead of the sizes of the
        performance targets.
    json_path, plot_path : str, optional
        Where to write the results as JSON and the bar chart of ratios.
    out : file, optional
        Where to print (default: stdout).

    Returns
    -------
    dict
        ``machine``, ``bandwidth_gbs`` and ``results`` (one dict per case).
    """
    out = sys.stdout if out is None else out
    start = time.perf_counter()
    print("measuring memory-read bandwidth ...", file=out, flush=True)
    bandwidth = memory_bandwidth(1 << (28 if quick else 30))
    results: list[CaseResult] = []
    budget = 20.0 if quick else 120.0
    with tempfile.TemporaryDirectory(prefix="sima_fast_bench_") as directory:
        for group in _case_groups(quick, directory, out):
            while group:
                case = group.pop(0)
                print(f"  timing {case.work} ...", file=out, flush=True)
                ours_t, ours_res = _median_time(case.ours, case.rounds.get("ours", 5), budget)
                base_times, base_res = {}, {}
                for name, fn in case.baselines.items():
                    base_times[name], base_res[name] = _median_time(
                        fn, case.rounds.get(name, 3), budget
                    )
                    gc.collect()  # the baselines' temporaries (several GB at full size)
                if case.check is not None:
                    case.check(ours_res, base_res)
                results.append(
                    CaseResult(case.work, case.size, ours_t, base_times, case.nbytes, case.notes)
                )
                del case, ours_res, base_res
    machine = machine_description(bandwidth)
    table = markdown_table(results, bandwidth)
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
        "quick": quick,
        "results": [
            {
                "work": r.work,
                "size": r.size,
                "ours_s": r.ours,
                "baselines_s": r.baselines,
                "ratios": r.ratios(),
                "bytes": r.nbytes,
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

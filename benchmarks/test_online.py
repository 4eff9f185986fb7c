"""Online extraction: the per-frame latency of ``OnlineExtractor.update`` and its warm-up.

The scene is the one of ``benchmarks/test_extract.py``: ``simulate_movie``
with 500 cells of equivalent radius 6.7 px (about 140 pixels each,
neighbours overlapping slightly; overlapping pixels removed) on 512×512
frames, the ROIs being the simulated cell masks. ``SIMA_FAST_BENCH_ONLINE_MOVIE``
frames (default 300) are simulated and cycled through.

Groups
------
``online-update-<dtype>``
    ``update(frame)`` (extraction of the 500 ROIs with ``1/μ`` weights,
    the moments of the frame, one AR(1) step per ROI; γ, σ and the baseline
    given) for uint16 frames and the same values as float32, timed one call
    per round over ``SIMA_FAST_BENCH_ONLINE_FRAMES`` frames (default 10,000)
    after 1,000 frames of warm-up, in this process, on one core (the
    kernels are not parallel). ``extra_info`` holds the median, p99, p99.9
    and maximum in microseconds and ``others_cpu`` (the share of the CPUs
    other processes used meanwhile: on a shared machine the tail of the
    distribution is theirs). Targets (DESIGN.md): median ≤ 250 µs, p99 ≤
    500 µs.
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
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from conftest import SHAPE, OthersCPU
from sima_fast.kernels.extract import extract_runs
from sima_fast.misc import simulate_movie
from sima_fast.online import OnlineExtractor
from sima_fast.ROI import ROI

MOVIE_FRAMES = int(os.environ.get("SIMA_FAST_BENCH_ONLINE_MOVIE", "300"))
FRAMES = int(os.environ.get("SIMA_FAST_BENCH_ONLINE_FRAMES", "10000"))
WARMUP_FRAMES = 1000
N_ROIS = 500
CELL_RADIUS = 6.7
PIXELS = SHAPE[0] * SHAPE[1]
CHECK = np.arange(0, PIXELS, 4099)  # pixels whose time average is checked against numpy

_SCENE: dict[str, Any] = {}


def _scene() -> dict[str, Any]:
    """The simulated uint16 movie (T, Y, X), its ROIs and its mean frame."""
    if not _SCENE:
        sim = simulate_movie(
            num_frames=MOVIE_FRAMES,
            frame_shape=SHAPE,
            num_channels=1,
            cells_per_plane=N_ROIS,
            cell_radius=CELL_RADIUS,
            seed=2024,
        )
        movie = np.ascontiguousarray(sim.movie[:, 0, :, :, 0])
        mean = movie.mean(axis=0, dtype=np.float64)
        _SCENE.update(movie=movie, rois=[ROI(mask=m) for m in sim.masks], mean=mean)
    return _SCENE


def _check(online: OnlineExtractor, movie: np.ndarray, order: np.ndarray) -> None:
    """Last frames' values against the offline kernel; a few time averages against numpy."""
    last = order[-5:]
    out = np.empty((5, online.n_rois))
    flat = movie[last].reshape(5, PIXELS)
    extract_runs(flat, online.weights.plan, out)
    np.testing.assert_allclose(online.raw[:, -5:], out.T, rtol=2e-7)
    counts = np.bincount(order, minlength=len(movie)).astype(np.float64)
    picked = movie.reshape(len(movie), PIXELS)[:, CHECK].astype(np.float64)
    expected = counts @ picked / counts.sum()
    np.testing.assert_allclose(online.time_averages.reshape(PIXELS)[CHECK], expected, rtol=1e-10)


@pytest.mark.parametrize("impl", ["ours"])
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_online_update(benchmark, dtype, impl):
    benchmark.group = f"online-update-{dtype}"
    scene = _scene()
    movie = scene["movie"] if dtype == "uint16" else scene["movie"].astype(np.float32)
    online = OnlineExtractor(
        scene["rois"],
        SHAPE,
        mean_frame=scene["mean"],
        dtype=dtype,
        gamma=0.95,
        sigma=0.05,
        baseline=1.0,
        max_frames=FRAMES + WARMUP_FRAMES,
    )
    n = len(movie)
    for t in range(WARMUP_FRAMES):
        online.update(movie[t % n])
    frames = iter(range(WARMUP_FRAMES, WARMUP_FRAMES + FRAMES))

    def setup():
        return (movie[next(frames) % n],), {}

    with OthersCPU() as busy:
        benchmark.pedantic(online.update, setup=setup, rounds=FRAMES, iterations=1)
    times = np.asarray(benchmark.stats.stats.data) * 1e6
    p50, p99, p999 = np.percentile(times, [50, 99, 99.9])
    benchmark.extra_info.update(
        size=f"{SHAPE[0]}×{SHAPE[1]} {dtype}, {N_ROIS} ROIs, {FRAMES} frames",
        median_us=round(float(p50), 1),
        p99_us=round(float(p99), 1),
        p999_us=round(float(p999), 1),
        max_us=round(float(times.max()), 1),
    )
    busy.record(benchmark)
    print(
        f"\nonline update {dtype}: median {p50:.1f} µs, p99 {p99:.1f} µs, "
        f"p99.9 {p999:.1f} µs, max {times.max():.1f} µs"
    )
    _check(online, movie, np.arange(WARMUP_FRAMES + FRAMES) % n)


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

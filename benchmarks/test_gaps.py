"""Gap filling: sima_fast's ``fill_forward`` kernel against a per-frame numpy loop and a copy.

Group ``fill-gaps``: a float32 movie T×512×512 (``SIMA_FAST_BENCH_GAPS_FRAMES``,
default 2000) with about 10 % NaN: whole rows at the top or bottom of each
frame (like the edges left by motion correction) plus scattered single pixels.
Every implementation writes the filled movie into the same preallocated
output:

``ours``
    ``first_finite`` (initial state, stops once every pixel is seen) then
    ``fill_forward`` over the whole movie.
``numpy_loop``
    The same two steps in numpy, frame by frame.
``copyto``
    ``np.copyto(out, movie)``: the memory-bandwidth yardstick.

``ours`` is checked once against the numpy loop over the whole movie (exact,
NaN equal to NaN), and every run against it on a subset of pixels. Run with::

    python -m pytest benchmarks/test_gaps.py --benchmark-only -p no:cacheprovider
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import SHAPE
from sima_fast.kernels.gaps import fill_forward, first_finite

GAPS_FRAMES = int(os.environ.get("SIMA_FAST_BENCH_GAPS_FRAMES", "2000"))
PIXELS = SHAPE[0] * SHAPE[1]
CHECK = np.arange(0, PIXELS, 4099)
ROUNDS = {"ours": 10, "numpy_loop": 3, "copyto": 10}


@pytest.fixture(scope="module")
def movie() -> np.ndarray:
    """(T, pixels) float32: NaN edge rows (0–80 per frame, top or bottom), 2 % scattered NaN."""
    rng = np.random.default_rng(7)
    data = np.empty((GAPS_FRAMES, *SHAPE), dtype=np.float32)
    for t0 in range(0, GAPS_FRAMES, 100):
        t1 = min(t0 + 100, GAPS_FRAMES)
        block = data[t0:t1]
        block[...] = rng.integers(0, 4096, size=block.shape, dtype=np.uint16)
        block[rng.random(block.shape, dtype=np.float32) < 0.02] = np.nan
        for frame in block:
            rows = int(rng.integers(0, 81))
            if rng.random() < 0.5:
                frame[:rows] = np.nan
            else:
                frame[SHAPE[0] - rows :] = np.nan
    return data.reshape(GAPS_FRAMES, PIXELS)


@pytest.fixture(scope="module")
def out(movie) -> np.ndarray:
    buffer = np.empty_like(movie)
    buffer.fill(0.0)  # fault the pages in now, not in the first implementation's first round
    return buffer


def fill_ours(movie: np.ndarray, out: np.ndarray) -> np.ndarray:
    found = np.zeros(movie.shape[1], dtype=bool)
    last = np.full(movie.shape[1], np.nan, dtype=movie.dtype)
    first_finite(movie, found, last)
    return fill_forward(movie, last, out)


def fill_numpy_loop(movie: np.ndarray, out: np.ndarray) -> np.ndarray:
    last = np.full(movie.shape[1], np.nan, dtype=movie.dtype)
    missing = np.ones(movie.shape[1], dtype=bool)
    for frame in movie:  # each pixel's first finite value
        take = missing & np.isfinite(frame)
        last[take] = frame[take]
        missing &= ~take
        if not missing.any():
            break
    for t, frame in enumerate(movie):
        last = np.where(np.isfinite(frame), frame, last)
        out[t] = last
    return out


def fill_copyto(movie: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.copyto(out, movie)
    return out


FILLS = {"ours": fill_ours, "numpy_loop": fill_numpy_loop, "copyto": fill_copyto}


@pytest.mark.benchmark(group="fill-gaps")
@pytest.mark.parametrize("impl", list(FILLS))
def test_fill_gaps(benchmark, movie, out, impl):
    fn = FILLS[impl]
    if impl == "ours":
        fill_ours(movie[:8], out[:8])  # compile (or load the numba cache) outside the timing
    benchmark.extra_info["bytes"] = movie.nbytes
    benchmark.extra_info["size"] = f"{GAPS_FRAMES}×{SHAPE[0]}×{SHAPE[1]} float32"
    benchmark.extra_info["nan_fraction"] = round(float(np.isnan(movie[::10]).mean()), 4)
    result = benchmark.pedantic(fn, args=(movie, out), rounds=ROUNDS[impl], iterations=1)
    if impl == "copyto":
        np.testing.assert_array_equal(result[:, CHECK], movie[:, CHECK])
        return
    subset = movie[:, CHECK]
    np.testing.assert_array_equal(result[:, CHECK], fill_numpy_loop(subset, np.empty_like(subset)))
    if impl == "ours":  # once: the whole movie, bit for bit
        np.testing.assert_array_equal(result, fill_numpy_loop(movie, np.empty_like(movie)))

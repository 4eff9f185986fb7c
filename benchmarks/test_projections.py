"""Projections: sima_fast's streaming moments kernel against numpy/scipy, and HDF5 end to end.

Groups
------
``moments-<dtype>``
    Mean, std and Pearson kurtosis of an in-memory 512×512×T movie (uint16 in
    [0, 4096) and the same values as float32): ``ours`` is
    ``MomentState.update`` plus the three finalisers; ``numpy_mean_std_scipy_kurtosis``
    is ``movie.mean(0)``, ``movie.std(0)`` and ``scipy.stats.kurtosis``;
    ``numpy_mean`` is ``movie.mean(0)`` alone. T is ``SIMA_FAST_BENCH_PROJ_FRAMES``
    (default 2000).
``projections-hdf5``
    ``projections([Sequence.create('HDF5', path, 'tyx')])`` on conftest's
    uint16 HDF5 movie (``SIMA_FAST_BENCH_FRAMES`` frames) against reading the
    same file with h5py in ``CHUNK``-frame slices and nothing else. The page
    cache is warm (the file is read once before measuring).

Every benchmark checks its result against numpy on a small set of pixels, so a
broken kernel cannot report a fast number. Run with::

    python -m pytest benchmarks/test_projections.py --benchmark-only -p no:cacheprovider
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import scipy.stats

from conftest import FRAMES, SHAPE, read_hdf5_raw
from sima_fast import Sequence
from sima_fast._projections import projections
from sima_fast.kernels.moments import MomentState

PROJ_FRAMES = int(os.environ.get("SIMA_FAST_BENCH_PROJ_FRAMES", "2000"))
PIXELS = SHAPE[0] * SHAPE[1]
#: Pixels checked against numpy: spread over the frame (and over the kernel's blocks).
CHECK = np.arange(0, PIXELS, 4099)
ROUNDS = {"ours": 10, "numpy_mean": 3, "numpy_mean_std_scipy_kurtosis": 3}


def _reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std and Pearson kurtosis of ``x`` (frames, pixels) in float64."""
    x = x.astype(np.float64)
    return x.mean(0), x.std(0), scipy.stats.kurtosis(x, axis=0, fisher=False, bias=True)


@pytest.fixture(scope="module", params=["uint16", "float32"])
def movie(request) -> np.ndarray:
    """A (T, 512, 512) movie, deterministic random values in [0, 4096).

    Parametrised at module scope, so pytest runs all tests of one dtype, then
    drops that movie before building the next (one movie in memory at a time).
    """
    rng = np.random.default_rng(2024)
    data = np.empty((PROJ_FRAMES, *SHAPE), dtype=request.param)
    for t0 in range(0, PROJ_FRAMES, 250):
        t1 = min(t0 + 250, PROJ_FRAMES)
        data[t0:t1] = rng.integers(0, 4096, size=(t1 - t0, *SHAPE), dtype=np.uint16)
    return data


def moments_ours(movie: np.ndarray):
    state = MomentState.empty((PIXELS,))
    state.update(movie.reshape(len(movie), -1))
    return state.mean_value(), state.std(), state.kurtosis()


def moments_numpy_scipy(movie: np.ndarray):
    return (
        movie.mean(0),
        movie.std(0),
        scipy.stats.kurtosis(movie, axis=0, fisher=False, bias=True),
    )


def moments_numpy_mean(movie: np.ndarray):
    return (movie.mean(0),)


MOMENTS = {
    "ours": moments_ours,
    "numpy_mean_std_scipy_kurtosis": moments_numpy_scipy,
    "numpy_mean": moments_numpy_mean,
}


@pytest.mark.parametrize("impl", list(MOMENTS))
def test_moments(benchmark, movie, impl):
    fn = MOMENTS[impl]
    if impl == "ours":
        moments_ours(movie[:16])  # compile (or load the numba cache) outside the timing
    benchmark.group = f"moments-{movie.dtype}"
    benchmark.extra_info["bytes"] = movie.nbytes
    benchmark.extra_info["size"] = f"{PROJ_FRAMES}×{SHAPE[0]}×{SHAPE[1]} {movie.dtype}"
    result = benchmark.pedantic(fn, args=(movie,), rounds=ROUNDS[impl], iterations=1)
    expected = _reference(movie.reshape(len(movie), -1)[:, CHECK])
    # numpy's float32 mean accumulates in float32: allow for that, nothing more
    rtol = 1e-5 if movie.dtype == np.float32 and impl != "ours" else 1e-9
    for got, want in zip(result, expected):
        np.testing.assert_allclose(got.reshape(-1)[CHECK], want, rtol=rtol)


# -- HDF5 end to end ---------------------------------------------------------------------


def projections_ours(path: str) -> dict[str, np.ndarray]:
    return projections([Sequence.create("HDF5", path, "tyx")])


@pytest.mark.benchmark(group="projections-hdf5")
@pytest.mark.parametrize("impl", ["raw", "ours"])
def test_projections_hdf5(benchmark, hdf5_movie, impl):
    fn = {"raw": read_hdf5_raw, "ours": projections_ours}[impl]
    fn(hdf5_movie)  # warm the page cache (and numba)
    benchmark.extra_info["bytes"] = FRAMES * PIXELS * 2
    benchmark.extra_info["size"] = f"{FRAMES}×{SHAPE[0]}×{SHAPE[1]} uint16"
    result = benchmark.pedantic(fn, args=(hdf5_movie,), rounds=5, iterations=1)
    if impl == "raw":
        assert result == FRAMES
        return
    with h5py.File(hdf5_movie, "r") as f:
        sample = f["imaging"][:, 7, :]  # one row of every frame
    expected = _reference(sample)
    keys = ("time_averages", "time_std", "time_kurtosis")
    for key, want in zip(keys, expected):
        assert result[key].shape == (1, *SHAPE, 1)
        np.testing.assert_allclose(result[key][0, 7, :, 0], want, rtol=1e-9)

"""Signal extraction: sima_fast's run-based kernel and ``extract_rois`` against scipy and I/O.

The scene is ``simulate_movie`` with 500 cells of equivalent radius 6.7 px
(about 140 pixels each; neighbours overlap slightly, and the overlapping
pixels are removed, ``remove_overlap=True``) on 512×512 frames. The ROIs are
the simulated cell masks, as ``ROI(mask=...)``. The weights
(``ExtractionWeights`` with the movie's mean frame) are built once per module
for the kernel path; ``extract_rois`` builds its own on every call.

Groups
------
``extract-uint16-memory`` / ``extract-float32-memory``
    The simulated movie, T×512×512 (``SIMA_FAST_BENCH_EXTRACT_FRAMES``,
    default 3000) in memory, uint16 and the same values as float32.
    ``ours`` is ``extract_runs`` over the whole movie (2-D view, one call,
    float64 output); ``ours_api`` is ``extract_rois(dataset, rois,
    n_processes=2)`` on an ``ndarray`` sequence of that movie whose time
    averages are already cached (so it also pays for building the weights);
    ``scipy_csr_batches`` is SIMA's algebra in 500-frame batches:
    ``M @ (batch.reshape(500, -1).T / mu[:, None])`` with ``M`` the CSR mask
    weights (after overlap removal) and ``mu`` the mean frame, in float64.
``extract-weights``
    ``ExtractionWeights(rois, (1, 512, 512), mean, True)`` alone: the fixed
    cost of every ``extract_rois`` call.
``extract-nan``
    ``ours`` is ``extract_runs`` on the float32 movie with 20 % NaN rows (102
    whole image rows per frame, split between a band at the top and one at
    the bottom whose sizes vary per frame, like motion-correction edges);
    ``nan_free`` is the same call on the NaN-free float32 movie.
``extract-hdf5``
    ``extract_rois(..., n_processes=2)`` on ``Sequence.create('HDF5',
    hdf5_movie, 'tyx')`` (conftest's uint16 movie, ``SIMA_FAST_BENCH_FRAMES``
    frames) with the dataset's time averages computed before timing, against
    ``raw``: h5py reading the file in ``CHUNK``-frame slices. The page cache
    is warm.
``extract-tiff``
    ``extract_rois(..., n_processes=2)`` on ``Sequence.create('TIFF',
    tiff_movie)`` (memory-mapped) against ``memory``: the same call on an
    ``ndarray`` sequence holding the same movie.

Every run is checked against the scipy algebra (NaN-aware where needed) on a
few frames, so a broken kernel cannot report a fast number. Large movies are
built lazily and at most one float32 (or conftest) movie is alive beside the
uint16 one, so the peak is about 1.5 GB + 3 GB plus the baseline's batches.
Each entry records ``extra_info['others_cpu']``, the share of the CPUs other
processes used while it ran: on a shared machine, re-run entries where it is
above a few per cent. Run with::

    python -m pytest benchmarks/test_extract.py --benchmark-only -p no:cacheprovider \\
        --benchmark-json=results.json
    python benchmarks/report.py results.json

and ``NUMBA_NUM_THREADS=1`` in front, with ``-k "memory and not scipy or nan"``,
for the single-thread kernel numbers.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np
import pytest

from conftest import CHUNK, FRAMES, SHAPE, OthersCPU, read_hdf5_raw
from sima_fast import ImagingDataset, Sequence
from sima_fast.extract import ExtractionWeights, extract_rois
from sima_fast.kernels.extract import extract_runs
from sima_fast.misc import simulate_movie
from sima_fast.ROI import ROI

EXTRACT_FRAMES = int(os.environ.get("SIMA_FAST_BENCH_EXTRACT_FRAMES", "3000"))
PIXELS = SHAPE[0] * SHAPE[1]
N_ROIS = 500
CELL_RADIUS = 6.7  # px: π·6.7² ≈ 141 pixels per cell
NAN_ROWS = round(0.2 * SHAPE[0])  # rows set to NaN in every frame of the NaN movie
BATCH = 500  # frames per batch of the scipy baseline
N_PROCESSES = 2  # extract_rois' thread count: the targets are for 2 cores
ROUNDS = {
    "ours": 10,
    "nan_free": 10,
    "ours_api": 5,
    "memory": 5,
    "raw": 5,
    "scipy_csr_batches": 3,
}


def _check_frames(n: int) -> np.ndarray:
    """Frames compared with the reference: both ends, the middle, a batch boundary."""
    return np.unique(np.array([0, 1, min(BATCH, n - 1), n // 2, n - 1]))


def _timed(benchmark, fn, args: tuple, rounds: int) -> Any:
    """``benchmark.pedantic`` that also records how busy other processes kept the CPUs.

    ``extra_info['others_cpu']`` is the CPU time used by other processes during
    the measurement, as a fraction of all CPUs: above a few per cent the
    timings are contaminated (the machine is shared) and should be re-run.
    """
    with OthersCPU() as busy:
        result = benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1)
    busy.record(benchmark)
    return result


# -- scene: ROIs, weights and the movies ---------------------------------------------------

_SCENE: dict[str, Any] = {}
_SLOT: dict[str, Any] = {}  # the one big secondary movie alive: {"key": ..., "movie": ...}


def _scene() -> dict[str, Any]:
    """The simulated uint16 movie (T, Y, X), its ROIs, mean frame and extraction weights."""
    if not _SCENE:
        sim = simulate_movie(
            num_frames=EXTRACT_FRAMES,
            frame_shape=SHAPE,
            num_channels=1,
            cells_per_plane=N_ROIS,
            cell_radius=CELL_RADIUS,
            seed=2024,
        )
        movie = sim.movie[:, 0, :, :, 0]  # (T, Y, X) view of the contiguous (T, 1, Y, X, 1)
        rois = [ROI(mask=m) for m in sim.masks]
        dataset = ImagingDataset([Sequence.create("ndarray", sim.movie)], None)
        mean = dataset.time_averages[..., 0]  # computed once here, cached in the dataset
        weights = ExtractionWeights(rois, (1, *SHAPE), mean, remove_overlap=True)
        assert weights.n_rois == N_ROIS and not weights.empty.any()
        _SCENE.update(
            movie=movie,
            rois=rois,
            mean=mean,
            mu=mean.reshape(PIXELS).astype(np.float64),
            weights=weights,
            dataset=dataset,
        )
    return _SCENE


def _as_float32(movie: np.ndarray) -> np.ndarray:
    out = np.empty(movie.shape, dtype=np.float32)
    for t0 in range(0, len(movie), 250):
        out[t0 : t0 + 250] = movie[t0 : t0 + 250]
    return out


def _nan_rows(movie: np.ndarray) -> np.ndarray:
    """Set ``NAN_ROWS`` whole rows of every frame to NaN (top and bottom bands), in place."""
    top = np.random.default_rng(11).integers(0, NAN_ROWS + 1, size=len(movie))
    for frame, k in zip(movie, top):
        frame[:k] = np.nan
        frame[SHAPE[0] - (NAN_ROWS - k) :] = np.nan
    return movie


def _secondary(key: str, hdf5_path: str | None = None) -> dict[str, Any]:
    """One of the big secondary movies, replacing whichever was alive (bounded memory).

    ``float32``: the simulated movie as float32; ``float32_nan``: the same with
    NaN rows (made in place from ``float32`` when that is the one alive);
    ``conftest``: conftest's uint16 movie read from ``hdf5_path``. Each comes
    with an in-memory dataset whose time averages are computed on first use.
    """
    if _SLOT.get("key") == key:
        return _SLOT
    base = _SLOT["movie"] if key == "float32_nan" and _SLOT.get("key") == "float32" else None
    _SLOT.clear()  # drop the old movie before allocating the new one
    if key == "float32":
        movie = _as_float32(_scene()["movie"])
    elif key == "float32_nan":
        movie = _nan_rows(base if base is not None else _as_float32(_scene()["movie"]))
    elif key == "conftest":
        with h5py.File(hdf5_path, "r") as f:
            movie = f["imaging"][...]
    else:
        raise KeyError(key)
    dataset = ImagingDataset([Sequence.create("ndarray", movie[:, None, :, :, None])], None)
    _SLOT.update(key=key, movie=movie, dataset=dataset)
    return _SLOT


def _cached_means(dataset: ImagingDataset) -> np.ndarray:
    """The dataset's mean frame, computing (and caching) its projections if needed."""
    return dataset.time_averages[..., 0].reshape(PIXELS).astype(np.float64)


# -- reference and checks --------------------------------------------------------------------


def _reference(frames: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """SIMA's algebra with NaN re-weighting, (n_frames, n_rois) float64.

    ``Σ_finite (w/μ) x · Σ_all w² / Σ_finite w²`` with ``w`` the mask weights
    after overlap removal (``ExtractionWeights.masks``); NaN where no pixel of
    the ROI is finite. Without NaN this is ``M @ (x / μ)``.
    """
    masks = _scene()["weights"].masks
    x = frames.reshape(len(frames), PIXELS).astype(np.float64)
    finite = np.isfinite(x)
    num = masks @ (np.where(finite, x, 0.0).T / mu[:, None])
    w2 = masks.multiply(masks).tocsr()
    seen = w2 @ finite.T.astype(np.float64)
    total = np.asarray(w2.sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(seen > 0, num * (total / seen), np.nan)
    return value.T


def _check(got: np.ndarray, frames: np.ndarray, mu: np.ndarray, rtol: float) -> None:
    """``got`` (len(frames), n_rois) against the reference on ``frames``."""
    want = _reference(frames, mu)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)


def _check_record(record: dict, movie: np.ndarray, mu: np.ndarray) -> None:
    raw = record["raw"][0]  # (n_rois, T) float32
    assert raw.shape == (N_ROIS, len(movie))
    idx = _check_frames(len(movie))
    _check(raw[:, idx].T, movie[idx], mu, rtol=2e-6)


# -- implementations -------------------------------------------------------------------------


def kernel_ours(movie: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The kernel over the whole in-memory movie in one call."""
    return extract_runs(movie.reshape(len(movie), PIXELS), _scene()["weights"].plan, out)


def scipy_csr_batches(movie: np.ndarray, out: np.ndarray) -> np.ndarray:
    """SIMA's algebra, ``M @ (frames.T / mu)``, over 500-frame batches in float64."""
    scene = _scene()
    masks, mu = scene["weights"].masks, scene["mu"]
    flat = movie.reshape(len(movie), PIXELS)
    for t0 in range(0, len(flat), BATCH):
        batch = flat[t0 : t0 + BATCH]
        out[t0 : t0 + len(batch)] = (masks @ (batch.T / mu[:, None])).T
    return out


def api_ours(dataset: ImagingDataset) -> dict:
    return extract_rois(dataset, _scene()["rois"], n_processes=N_PROCESSES)


def _kernel_bench(benchmark, movie: np.ndarray, impl: str, mu: np.ndarray, nan: bool) -> None:
    """Time ``impl`` (a kernel-level implementation) on ``movie`` and check it."""
    fn = {"ours": kernel_ours, "nan_free": kernel_ours, "scipy_csr_batches": scipy_csr_batches}
    out = np.empty((len(movie), N_ROIS), dtype=np.float64)
    if impl != "scipy_csr_batches":
        kernel_ours(movie[:2], out[:2])  # compile (or load the numba cache) outside the timing
    benchmark.extra_info["bytes"] = movie.nbytes
    benchmark.extra_info["size"] = (
        f"{len(movie)}×{SHAPE[0]}×{SHAPE[1]} {movie.dtype}{' 20 % NaN rows' if nan else ''}, "
        f"{N_ROIS} ROIs"
    )
    _timed(benchmark, fn[impl], (movie, out), ROUNDS[impl])
    idx = _check_frames(len(movie))
    _check(out[idx], movie[idx], mu, rtol=1e-9)


def _api_bench(benchmark, dataset: ImagingDataset, movie: np.ndarray, impl: str) -> None:
    mu = _cached_means(dataset)  # outside the timing: the targets assume cached averages
    api_ours(dataset)  # warm-up: numba cache, page cache, ROI rasterisation code paths
    benchmark.extra_info["bytes"] = movie.nbytes
    benchmark.extra_info["size"] = f"{len(movie)}×{SHAPE[0]}×{SHAPE[1]} {movie.dtype}"
    record = _timed(benchmark, api_ours, (dataset,), ROUNDS[impl])
    _check_record(record, movie, mu)


# -- in memory ---------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["ours", "ours_api", "scipy_csr_batches"])
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_extract_memory(benchmark, dtype, impl):
    benchmark.group = f"extract-{dtype}-memory"
    scene = _scene()
    if dtype == "uint16":
        movie, dataset = scene["movie"], scene["dataset"]
    else:
        slot = _secondary("float32")
        movie, dataset = slot["movie"], slot["dataset"]
    if impl == "ours_api":
        _api_bench(benchmark, dataset, movie, impl)
    else:
        _kernel_bench(benchmark, movie, impl, scene["mu"], nan=False)


@pytest.mark.parametrize("impl", ["ours"])
def test_extract_weights(benchmark, impl):
    scene = _scene()
    benchmark.group = "extract-weights"
    benchmark.extra_info["size"] = f"{N_ROIS} ROIs on {SHAPE[0]}×{SHAPE[1]}"
    args = (scene["rois"], (1, *SHAPE), scene["mean"], True)
    weights = _timed(benchmark, ExtractionWeights, args, 5)
    ref = scene["weights"]
    assert (weights.masks != ref.masks).nnz == 0
    np.testing.assert_array_equal(weights.plan.weights, ref.plan.weights)


# -- NaN rows ------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["nan_free", "ours"])
def test_extract_nan(benchmark, impl):
    benchmark.group = "extract-nan"
    movie = _secondary("float32" if impl == "nan_free" else "float32_nan")["movie"]
    if impl == "ours":
        frame = movie[len(movie) // 2]
        assert np.isnan(frame).all(axis=1).sum() == NAN_ROWS
    _kernel_bench(benchmark, movie, impl, _scene()["mu"], nan=impl == "ours")


# -- files -----------------------------------------------------------------------------------

_FILE_DATASETS: dict[str, ImagingDataset] = {}


def _file_dataset(kind: str, path: str) -> ImagingDataset:
    """A dataset over the conftest file, kept per module so its time averages stay cached."""
    if kind not in _FILE_DATASETS:
        if kind == "hdf5":
            seq = Sequence.create("HDF5", path, "tyx")
        else:
            seq = Sequence.create("TIFF", path)
        _FILE_DATASETS[kind] = ImagingDataset([seq], None)
    return _FILE_DATASETS[kind]


def _sample_frames(path: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["imaging"][_check_frames(FRAMES)]


@pytest.mark.benchmark(group="extract-hdf5")
@pytest.mark.parametrize("impl", ["raw", "ours"])
def test_extract_hdf5(benchmark, hdf5_movie, impl):
    benchmark.extra_info["bytes"] = FRAMES * PIXELS * 2
    benchmark.extra_info["size"] = f"{FRAMES}×{SHAPE[0]}×{SHAPE[1]} uint16, {N_ROIS} ROIs"
    read_hdf5_raw(hdf5_movie)  # warm the page cache
    if impl == "raw":
        result = _timed(benchmark, read_hdf5_raw, (hdf5_movie,), ROUNDS[impl])
        assert result == FRAMES
        return
    dataset = _file_dataset("hdf5", hdf5_movie)
    mu = _cached_means(dataset)
    api_ours(dataset)
    record = _timed(benchmark, api_ours, (dataset,), ROUNDS[impl])
    raw = record["raw"][0]
    _check(raw[:, _check_frames(FRAMES)].T, _sample_frames(hdf5_movie), mu, rtol=2e-6)


@pytest.mark.benchmark(group="extract-tiff")
@pytest.mark.parametrize("impl", ["memory", "ours"])
def test_extract_tiff(benchmark, hdf5_movie, tiff_movie, impl):
    benchmark.extra_info["bytes"] = FRAMES * PIXELS * 2
    benchmark.extra_info["size"] = f"{FRAMES}×{SHAPE[0]}×{SHAPE[1]} uint16, {N_ROIS} ROIs"
    if impl == "memory":
        dataset = _secondary("conftest", hdf5_movie)["dataset"]
    else:
        dataset = _file_dataset("tiff", tiff_movie)
        seq = dataset.sequences[0]
        assert seq.view(0, min(CHUNK, FRAMES)) is not None, "the TIFF should be memory-mapped"
    mu = _cached_means(dataset)
    api_ours(dataset)
    record = _timed(benchmark, api_ours, (dataset,), ROUNDS[impl])
    raw = record["raw"][0]
    _check(raw[:, _check_frames(FRAMES)].T, _sample_frames(hdf5_movie), mu, rtol=2e-6)


def _suite2p_extract():
    """suite2p's trace extraction, if an installed version has the expected API."""
    s2p = pytest.importorskip(
        "suite2p.extraction.extract",
        reason="suite2p is not installed in this environment (optional baseline)",
    )
    fn = getattr(s2p, "extract_traces", None)
    if fn is None:
        pytest.skip("this suite2p version has no extraction.extract.extract_traces")
    return fn


@pytest.mark.benchmark(group="extract-uint16-memory")
def test_extract_suite2p(benchmark):
    """suite2p's extraction of the same masks (no neuropil), when installed.

    suite2p takes each cell as (flat pixel indices, weights) and the movie as
    (frames, Y, X); the weights here are the same mask weights with 1/μ folded
    in, so its F equals our raw traces.
    """
    extract_traces = _suite2p_extract()
    scene = _scene()
    movie = scene["movie"]
    weights = scene["weights"]
    csr = weights.masks.tocsr()
    inv_mu = 1.0 / scene["mu"]
    cells = [
        (csr.indices[a:b], (csr.data[a:b] * inv_mu[csr.indices[a:b]]).astype(np.float32))
        for a, b in zip(csr.indptr[:-1], csr.indptr[1:])
    ]
    empty = [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))] * len(cells)
    try:
        result = _timed(benchmark, extract_traces, (movie, cells, empty, BATCH), 3)
    except TypeError as exc:  # a different signature in this suite2p version
        pytest.skip(f"suite2p's extract_traces has another signature: {exc}")
    traces = np.asarray(result[0])
    frames = _check_frames(len(movie))
    sample = movie[frames].reshape(len(frames), -1).astype(np.float64)
    want = csr @ (sample.T / scene["mu"][:, None])
    np.testing.assert_allclose(traces[:, frames], want, rtol=1e-4)

"""The one registry of benchmark cases, shared by ``sima-fast bench`` and ``benchmarks/``.

A case (:class:`BenchCase`) is one piece of work done by sima_fast and by its
baselines on the same data: a setup that builds the inputs for a given size,
the implementations (:class:`Implementation`, one of them named ``"ours"``),
a check of every implementation's answer, and the bytes a pass reads (for
the throughput). :data:`CASES` lists them all:

* ``sima-fast bench`` (:func:`sima_fast.bench.run_benchmarks`) times the cases
  and implementations marked ``cli`` at their ``quick`` or ``full`` size;
* the pytest-benchmark suites in ``benchmarks/`` parametrise over the cases
  of their ``suite`` × implementations, at the ``full`` size unless an
  environment variable named in ``env`` says otherwise.

Movies are 512×512 (:data:`SHAPE`); files are read in :data:`CHUNK`-frame
chunks. Every check compares with numpy or scipy (or with sima_fast's offline
path) on a subset, so a broken kernel cannot report a fast number.

Memory: both harnesses build one case's data at a time and release it (and
:func:`release_shared`'s scene) before the next. Within a case, the numpy +
scipy moments baseline runs on slabs of rows (:func:`slab_rows`), the
extraction scene keeps one dtype of its movie (:func:`simulated_cells`) and
checks compare a block of frames at a time, so at full size no case holds
much more than its movie, its output and its baseline's bounded temporaries
(the largest: the 3 GB float32 extraction movie with the scipy baseline's
2 GB of batch temporaries).
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CASES",
    "CELL_RADIUS",
    "CHUNK",
    "GAMMA",
    "MOTION_PAD",
    "MOTION_SHIFT",
    "MOTION_THREADS",
    "NONRIGID_AMPLITUDE",
    "N_ROIS",
    "PIXELS",
    "SHAPE",
    "SIGMA",
    "SLAB_BYTES",
    "BenchCase",
    "Implementation",
    "Inputs",
    "cases_of",
    "get_case",
    "gradient_energy",
    "motion_movie",
    "motion_scene",
    "movie_block",
    "read_hdf5_raw",
    "release_shared",
    "simulate_traces",
    "simulated_cells",
    "simulated_rois",
    "slab_rows",
    "write_hdf5_movie",
    "write_tiff_movie",
]

#: Frame shape of every benchmark movie.
SHAPE = (512, 512)
#: Frames per chunk of every chunked read.
CHUNK = 100
#: Pixels per frame.
PIXELS = SHAPE[0] * SHAPE[1]
#: Pixels checked against the reference: spread over the frame (and the kernels' blocks).
CHECK = np.arange(0, PIXELS, 4099)


@dataclass
class Inputs:
    """What a case's setup built: the data and how to describe it.

    Attributes
    ----------
    size : str
        The size, as shown in the table (e.g. ``"2000×512×512 uint16"``).
    nbytes : int or None
        Bytes one call of ``ours`` reads (for GB/s), if meaningful.
    data : dict
        The arrays, files and objects the implementations use (also
        reachable as ``inputs[key]``).
    rounds : dict
        Timed calls per implementation name, where the size sets them
        (overrides :attr:`Implementation.rounds`).
    notes : list of str
        Remarks printed under the table (e.g. a baseline on fewer samples).
    """

    size: str
    nbytes: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        """Return ``self.data[key]``."""
        return self.data[key]


@dataclass(frozen=True)
class Implementation:
    """One way of doing a case's work: sima_fast's own (``"ours"``) or a baseline.

    Attributes
    ----------
    name : str
        Identifier (the ``impl`` parameter of the suites; ``"ours"`` for sima_fast).
    label : str
        Name in the ``sima-fast bench`` table.
    run : callable
        ``run(inputs)``, the timed call; returns what :attr:`BenchCase.check` checks.
    rounds : int
        Timed calls (the median counts), unless the inputs say otherwise.
    warmup : callable, optional
        ``warmup(inputs)``, called once before timing (compile the kernels,
        fill the page cache).
    unavailable : callable, optional
        ``unavailable()``: None when the implementation can run, otherwise why
        not (an optional package missing); it is then skipped with that note.
    cli : bool
        Also timed by ``sima-fast bench`` (otherwise only in the suites).
    """

    name: str
    label: str
    run: Callable[[Inputs], Any]
    rounds: int = 3
    warmup: Callable[[Inputs], Any] | None = None
    unavailable: Callable[[], str | None] | None = None
    cli: bool = True

    def why_unavailable(self) -> str | None:
        """Tell whether the implementation can run here.

        Returns
        -------
        str or None
            None if it can run, otherwise the reason it cannot (the note
            printed when it is skipped).
        """
        return None if self.unavailable is None else self.unavailable()


@dataclass(frozen=True)
class BenchCase:
    """One comparison: the work, how to build its inputs, its implementations and check.

    Attributes
    ----------
    name : str
        Identifier; the pytest-benchmark group of the suites.
    work : str
        What is done, as shown in the ``sima-fast bench`` table.
    suite : str
        The ``benchmarks/test_<suite>.py`` file that runs it.
    setup : callable
        ``setup(scratch, **size)`` returns the :class:`Inputs`; ``scratch`` is
        a directory for files the case writes.
    implementations : tuple of Implementation
        In the order they are timed; one is named ``"ours"``.
    check : callable
        ``check(inputs, name, result)`` raises if the result of implementation
        ``name`` is wrong.
    quick, full : dict
        Keyword arguments of ``setup`` for ``sima-fast bench --quick`` and
        for the full size (``sima-fast bench`` and the suites).
    env : dict
        Environment variables that override a ``full`` size keyword in the
        suites (keyword -> variable).
    unit : str
        What one call processes (``"call"``, ``"frame"``).
    cli : bool
        Part of ``sima-fast bench``.
    extra_info : dict
        Fixed facts the suites record with each entry (e.g. a reference time
        measured elsewhere).
    cli_size : dict or None
        The size of the full ``sima-fast bench`` run when it differs from
        ``full`` (the suites' size), e.g. a reduced size for a slow case.
    cli_quick : bool
        Part of ``sima-fast bench --quick`` too (when ``cli``).
    """

    name: str
    work: str
    suite: str
    setup: Callable[..., Inputs]
    implementations: tuple[Implementation, ...]
    check: Callable[[Inputs, str, Any], None]
    quick: dict[str, int]
    full: dict[str, int]
    env: dict[str, str] = field(default_factory=dict)
    unit: str = "call"
    cli: bool = True
    extra_info: dict[str, float] = field(default_factory=dict)
    cli_size: dict[str, int] | None = None
    cli_quick: bool = True

    @property
    def ours(self) -> Implementation:
        """sima_fast's implementation."""
        return self.implementation("ours")

    def implementation(self, name: str) -> Implementation:
        """Return the implementation called ``name``.

        Parameters
        ----------
        name : str
            :attr:`Implementation.name`.

        Returns
        -------
        Implementation

        Raises
        ------
        KeyError
            If the case has no implementation of that name.
        """
        for impl in self.implementations:
            if impl.name == name:
                return impl
        raise KeyError(f"case {self.name!r} has no implementation {name!r}")

    def size(
        self, quick: bool = False, environ: dict[str, str] | None = None, cli: bool = False
    ) -> dict[str, int]:
        """Return the setup's keyword arguments: ``quick`` or ``full``, with ``env`` overrides.

        Parameters
        ----------
        quick : bool
            The quick size (environment variables are then ignored).
        environ : dict, optional
            Where to look up the variables of :attr:`env` (default: ``os.environ``).
        cli : bool, optional
            The size of ``sima-fast bench``: :attr:`cli_size`, when set,
            instead of ``full``.

        Returns
        -------
        dict
            Keyword arguments for :attr:`setup`.
        """
        if quick:
            return dict(self.quick)
        environ = os.environ if environ is None else environ
        size = dict(self.cli_size if cli and self.cli_size is not None else self.full)
        for key, var in self.env.items():
            if environ.get(var):
                size[key] = int(environ[var])
        return size


# -- shared data -------------------------------------------------------------------------


def movie_block(t0: int, t1: int) -> np.ndarray:
    """Frames ``t0:t1`` of the file benchmarks' movie: uint16 in [0, 4096), seeded by ``t0``.

    Parameters
    ----------
    t0, t1 : int
        First and past-the-last frame (blocks are written 500 frames at a time).

    Returns
    -------
    numpy.ndarray, uint16 (t1 - t0, 512, 512)
    """
    rng = np.random.default_rng(t0)
    return rng.integers(0, 4096, size=(t1 - t0, *SHAPE), dtype=np.uint16)


def _write_blocks(frames: int, write: Callable[[int, int], None]) -> None:
    for t0 in range(0, frames, 500):
        write(t0, min(t0 + 500, frames))


def write_hdf5_movie(directory: str, frames: int) -> str:
    """Write (once) the (frames, 512, 512) uint16 HDF5 movie, dataset ``imaging``.

    Parameters
    ----------
    directory : str
        Where to write ``movie_<frames>.h5``; an existing file is reused.
    frames : int
        Number of frames.

    Returns
    -------
    str
        The path of the file.
    """
    import h5py

    path = os.path.join(directory, f"movie_{frames}.h5")
    if not os.path.exists(path):
        tmp = path + ".part"
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset("imaging", shape=(frames, *SHAPE), dtype=np.uint16)

            def write(t0: int, t1: int) -> None:
                ds[t0:t1] = movie_block(t0, t1)

            _write_blocks(frames, write)
        os.replace(tmp, path)
    return path


def write_tiff_movie(directory: str, frames: int) -> str:
    """Write (once) the same movie as :func:`write_hdf5_movie` as an uncompressed TIFF.

    Parameters
    ----------
    directory : str
        Where to write ``movie_<frames>.tif``; an existing file is reused.
    frames : int
        Number of frames (one page each).

    Returns
    -------
    str
        The path of the file.
    """
    import tifffile

    path = os.path.join(directory, f"movie_{frames}.tif")
    if not os.path.exists(path):
        tmp = path + ".part.tif"
        with tifffile.TiffWriter(tmp) as w:

            def write(t0: int, t1: int) -> None:
                for frame in movie_block(t0, t1):
                    w.write(frame, photometric="minisblack", contiguous=True)

            _write_blocks(frames, write)
        os.replace(tmp, path)
    return path


def read_hdf5_raw(path: str) -> int:
    """Read every :data:`CHUNK`-frame slice of the ``imaging`` dataset with h5py.

    Parameters
    ----------
    path : str
        An HDF5 file written by :func:`write_hdf5_movie`.

    Returns
    -------
    int
        The number of frames read.
    """
    import h5py

    frames = 0
    with h5py.File(path, "r") as f:
        ds = f["imaging"]
        for t0 in range(0, len(ds), CHUNK):
            frames += len(ds[t0 : t0 + CHUNK])
    return frames


def _missing(
    module: str, attribute: str | None = None, hint: str = ""
) -> Callable[[], str | None]:
    """Build an ``unavailable`` test: the reason if ``module`` or its ``attribute`` is missing."""

    def unavailable() -> str | None:
        import importlib

        try:
            mod = importlib.import_module(module)
        except ImportError:
            return f"{module.split('.')[0]} not installed: baseline skipped{hint}"
        if attribute is not None and not hasattr(mod, attribute):
            return f"this version of {module} has no {attribute}: baseline skipped"
        return None

    return unavailable


def _size(frames: int, dtype: Any, extra: str = "") -> str:
    return f"{frames}×{SHAPE[0]}×{SHAPE[1]} {np.dtype(dtype).name}{extra}"


# -- projections -------------------------------------------------------------------------


def _moments_setup(scratch: str, frames: int, dtype: str) -> Inputs:
    rng = np.random.default_rng(2024)
    movie = np.empty((frames, *SHAPE), dtype=dtype)
    for t0 in range(0, frames, 250):
        t1 = min(t0 + 250, frames)
        movie[t0:t1] = rng.integers(0, 4096, size=(t1 - t0, *SHAPE), dtype=np.uint16)
    notes = []
    rows = slab_rows(frames)
    if rows < SHAPE[0]:
        notes.append(
            f"numpy+scipy runs its calls on slabs of {rows} rows of every frame, one slab at "
            f"a time, so scipy's temporaries stay under about {4 * SLAB_BYTES / 2**30:.0f} GiB "
            "instead of several copies of the movie; each pixel's result is bit-identical "
            "to one call on the whole movie"
        )
    return Inputs(_size(frames, dtype), movie.nbytes, {"movie": movie}, notes=notes)


def _moments_ours(inputs: Inputs, frames: int | None = None):
    from sima_fast.kernels.moments import MomentState

    movie = inputs["movie"][:frames]
    state = MomentState.empty((PIXELS,))
    state.update(movie.reshape(len(movie), -1))
    return state.mean_value(), state.std(), state.kurtosis()


#: Bytes of a float64 copy of one slab of rows of the movie, in the numpy+scipy moments
#: baseline: its temporaries (a float64 copy, the deviations, their powers) are about four
#: times this, instead of about four float64 copies of the whole movie.
SLAB_BYTES = 512 * 2**20


def slab_rows(frames: int, width: int = SHAPE[1], slab_bytes: int | None = None) -> int:
    """Rows of frame per slab of the numpy+scipy moments baseline.

    The baseline computes numpy ``mean`` and ``std`` and ``scipy.stats.kurtosis``
    along the time axis of one slab of whole rows at a time (every frame of
    rows ``r0:r0 + n``): each pixel's statistics are computed by the same
    functions, in the same order over its frames and the same dtype as on the
    whole movie, but the temporaries scipy allocates are bounded by the slab.

    Parameters
    ----------
    frames : int
        Frames of the movie.
    width : int
        Pixels per row.
    slab_bytes : int, optional
        Bytes of a float64 copy of one slab (default :data:`SLAB_BYTES`).

    Returns
    -------
    int
        Rows per slab (at least 1).
    """
    slab_bytes = SLAB_BYTES if slab_bytes is None else slab_bytes
    return max(1, slab_bytes // (frames * width * 8))


def _moments_numpy_scipy(inputs: Inputs):
    import scipy.stats

    movie = inputs["movie"]
    step = slab_rows(len(movie), movie.shape[2])
    parts: tuple[list, list, list] = ([], [], [])
    for r0 in range(0, movie.shape[1], step):
        slab = movie[:, r0 : r0 + step]  # a view: every frame, rows r0:r0 + step
        parts[0].append(slab.mean(0))
        parts[1].append(slab.std(0))
        parts[2].append(scipy.stats.kurtosis(slab, axis=0, fisher=False, bias=True))
    return tuple(np.concatenate(p) for p in parts)


def _moments_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std and Pearson kurtosis of ``x`` (frames, pixels) in float64."""
    import scipy.stats

    x = x.astype(np.float64)
    return x.mean(0), x.std(0), scipy.stats.kurtosis(x, axis=0, fisher=False, bias=True)


def _moments_check(inputs: Inputs, name: str, result: Any) -> None:
    movie = inputs["movie"]
    expected = _moments_reference(movie.reshape(len(movie), -1)[:, CHECK])
    # numpy's float32 mean accumulates in float32: allow for that, nothing more
    rtol = 1e-5 if movie.dtype == np.float32 and name != "ours" else 1e-9
    for got, want in zip(result, expected):
        np.testing.assert_allclose(np.asarray(got).reshape(-1)[CHECK], want, rtol=rtol)


_MOMENTS_IMPLS = (
    Implementation(
        "ours",
        "ours",
        _moments_ours,
        rounds=10,
        warmup=functools.partial(_moments_ours, frames=16),
    ),
    Implementation("numpy_mean_std_scipy_kurtosis", "numpy+scipy", _moments_numpy_scipy),
    Implementation("numpy_mean", "numpy mean", lambda inputs: (inputs["movie"].mean(0),)),
)


def _moments_case(dtype: str) -> BenchCase:
    return BenchCase(
        name=f"moments-{dtype}",
        work=f"mean + std + kurtosis, one pass ({dtype})",
        suite="projections",
        setup=functools.partial(_moments_setup, dtype=dtype),
        implementations=_MOMENTS_IMPLS,
        check=_moments_check,
        quick={"frames": 200},
        full={"frames": 2000},
        env={"frames": "SIMA_FAST_BENCH_PROJ_FRAMES"},
    )


def _hdf5_setup(scratch: str, frames: int) -> Inputs:
    path = write_hdf5_movie(scratch, frames)
    return Inputs(_size(frames, np.uint16), frames * PIXELS * 2, {"path": path, "frames": frames})


def _projections_hdf5(inputs: Inputs) -> dict[str, np.ndarray]:
    from sima_fast import Sequence
    from sima_fast._projections import projections

    return projections([Sequence.create("HDF5", inputs["path"], "tyx")])


def _projections_hdf5_check(inputs: Inputs, name: str, result: Any) -> None:
    if name == "raw":
        assert result == inputs["frames"]
        return
    import h5py

    with h5py.File(inputs["path"], "r") as f:
        sample = f["imaging"][:, 7, :]  # one row of every frame
    keys = ("time_averages", "time_std", "time_kurtosis")
    for key, want in zip(keys, _moments_reference(sample)):
        assert result[key].shape == (1, *SHAPE, 1)
        np.testing.assert_allclose(result[key][0, 7, :, 0], want, rtol=1e-9)


def _read_raw(inputs: Inputs) -> int:
    return read_hdf5_raw(inputs["path"])


# -- gap filling ---------------------------------------------------------------------------


def _gaps_setup(scratch: str, frames: int) -> Inputs:
    """(T, pixels) float32: NaN edge rows (0–80 per frame, top or bottom), 2 % scattered NaN."""
    rng = np.random.default_rng(7)
    data = np.empty((frames, *SHAPE), dtype=np.float32)
    for t0 in range(0, frames, 100):
        block = data[t0 : min(t0 + 100, frames)]
        block[...] = rng.integers(0, 4096, size=block.shape, dtype=np.uint16)
        block[rng.random(block.shape, dtype=np.float32) < 0.02] = np.nan
        for frame in block:
            rows = int(rng.integers(0, 81))
            if rng.random() < 0.5:
                frame[:rows] = np.nan
            else:
                frame[SHAPE[0] - rows :] = np.nan
    movie = data.reshape(frames, PIXELS)
    out = np.empty_like(movie)
    out.fill(0.0)  # fault the pages in now, not in the first implementation's first round
    return Inputs(_size(frames, np.float32), movie.nbytes, {"movie": movie, "out": out})


def _fill_ours(inputs: Inputs, frames: int | None = None) -> np.ndarray:
    from sima_fast.kernels.gaps import fill_forward, first_finite

    movie = inputs["movie"][:frames]
    found = np.zeros(movie.shape[1], dtype=bool)
    last = np.full(movie.shape[1], np.nan, dtype=movie.dtype)
    first_finite(movie, found, last)
    return fill_forward(movie, last, inputs["out"][: len(movie)])


def _first_finite_numpy(movie: np.ndarray) -> np.ndarray:
    """Each pixel's first finite value over the frames (NaN if it has none)."""
    last = np.full(movie.shape[1], np.nan, dtype=movie.dtype)
    missing = np.ones(movie.shape[1], dtype=bool)
    for frame in movie:
        take = missing & np.isfinite(frame)
        last[take] = frame[take]
        missing &= ~take
        if not missing.any():
            break
    return last


def _fill_from(movie: np.ndarray, last: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Forward-fill ``movie`` into ``out`` frame by frame from ``last``; return the last values."""
    for t, frame in enumerate(movie):
        last = np.where(np.isfinite(frame), frame, last)
        out[t] = last
    return last


def _fill_numpy(movie: np.ndarray, out: np.ndarray) -> np.ndarray:
    _fill_from(movie, _first_finite_numpy(movie), out)
    return out


def _fill_copyto(inputs: Inputs) -> np.ndarray:
    np.copyto(inputs["out"], inputs["movie"])
    return inputs["out"]


def _gaps_check(inputs: Inputs, name: str, result: Any) -> None:
    movie = inputs["movie"]
    if name == "copyto":
        np.testing.assert_array_equal(result[:, CHECK], movie[:, CHECK])
        return
    subset = movie[:, CHECK]
    np.testing.assert_array_equal(result[:, CHECK], _fill_numpy(subset, np.empty_like(subset)))
    if name == "ours":  # the whole movie, bit for bit, a block of frames at a time
        last = _first_finite_numpy(movie)
        want = np.empty((min(CHUNK, len(movie)), movie.shape[1]), dtype=movie.dtype)
        for t0 in range(0, len(movie), CHUNK):
            block = movie[t0 : t0 + CHUNK]
            last = _fill_from(block, last, want)
            np.testing.assert_array_equal(result[t0 : t0 + CHUNK], want[: len(block)])


# -- reading -------------------------------------------------------------------------------


def _read_ours(inputs: Inputs) -> int:
    from sima_fast import Sequence

    if inputs["format"] == "hdf5":
        seq = Sequence.create("HDF5", inputs["path"], "tyx")
    else:
        seq = Sequence.create("TIFF", inputs["path"])
    acc = 0
    for _, chunk in seq.iter_chunks(CHUNK, reuse_buffer=True):
        acc = max(acc, int(chunk.max()))  # consumed: a memory map is charged for its bytes
    return acc


def _read_library(inputs: Inputs) -> int:
    acc = 0
    frames = inputs["frames"]
    if inputs["format"] == "hdf5":
        import h5py

        with h5py.File(inputs["path"], "r") as f:
            ds = f["imaging"]
            for t0 in range(0, frames, CHUNK):
                acc = max(acc, int(ds[t0 : t0 + CHUNK].max()))
    else:
        import tifffile

        with tifffile.TiffFile(inputs["path"]) as tif:
            for t0 in range(0, frames, CHUNK):
                acc = max(acc, int(tif.asarray(key=range(t0, min(t0 + CHUNK, frames))).max()))
    return acc


def _read_setup(scratch: str, frames: int, fmt: str) -> Inputs:
    write = write_hdf5_movie if fmt == "hdf5" else write_tiff_movie
    path = write(scratch, frames)
    data = {"path": path, "frames": frames, "format": fmt}
    return Inputs(_size(frames, np.uint16), frames * PIXELS * 2, data)


def _read_check(inputs: Inputs, name: str, result: Any) -> None:
    if "expected" not in inputs.data:
        inputs.data["expected"] = _read_library(inputs)
    assert result == inputs["expected"], (result, inputs["expected"])


def _read_case(fmt: str, library: str, cli: bool) -> BenchCase:
    return BenchCase(
        name=f"read-{fmt}",
        work=f"chunked read from {fmt.upper()}, each chunk consumed",
        suite="reading",
        setup=functools.partial(_read_setup, fmt=fmt),
        implementations=(
            Implementation("raw", library, _read_library, rounds=5, warmup=_read_library),
            Implementation("ours", "ours", _read_ours, rounds=5, warmup=_read_ours),
        ),
        check=_read_check,
        quick={"frames": 300},
        full={"frames": 3000},
        env={"frames": "SIMA_FAST_BENCH_FRAMES"},
        cli=cli,
    )


# -- spike inference ------------------------------------------------------------------------

#: AR(1) decay per sample of the simulated traces (30 Hz, τ = 1 s).
GAMMA = float(np.exp(-1.0 / 30.0))
#: Noise standard deviation of the simulated traces.
SIGMA = 0.3


def simulate_traces(n_rows: int, n_t: int, seed: int) -> np.ndarray:
    """Simulate fluorescence traces: AR(1) calcium of Poisson spikes, baseline and noise.

    30 Hz sampling, decay time 1 s (``γ =`` :data:`GAMMA`), 1 Hz Poisson
    spikes, baseline 1 and Gaussian noise of standard deviation :data:`SIGMA`.

    Parameters
    ----------
    n_rows, n_t : int
        Number of traces and samples per trace.
    seed : int
        Seed of the generator.

    Returns
    -------
    numpy.ndarray, float64 (n_rows, n_t)
    """
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    spikes = rng.poisson(1.0 / 30.0, (n_rows, n_t)).astype(np.float64)
    calcium = lfilter([1.0], [1.0, -GAMMA], spikes, axis=1)
    return 1.0 + calcium + SIGMA * rng.standard_normal((n_rows, n_t))


def _spikes_setup(scratch: str, n_t: int, osqp_samples: int, seed: int) -> Inputs:
    # Fifty different traces, one per call in turn: the same trace over and over
    # lets the branch predictor learn the solver's merge decisions.
    traces = simulate_traces(50, n_t, seed)
    data = {
        "traces": traces,
        "c": np.empty(n_t),
        "s": np.empty(n_t),
        "osqp_samples": min(osqp_samples, n_t),
        "rows": {},
    }
    notes = []
    if osqp_samples < n_t:
        notes.append(f"the OSQP path solves the first {osqp_samples} samples of each trace")
    return Inputs(f"{n_t} samples", None, data, notes=notes)


def _next_row(inputs: Inputs, name: str) -> int:
    rows = inputs["rows"]
    if name not in rows:
        rows[name] = itertools.cycle(range(inputs["traces"].shape[0]))
    return next(rows[name])


def _spikes_ours(inputs: Inputs) -> tuple[int, float, int]:
    from sima_fast.kernels import ar1

    i = _next_row(inputs, "ours")
    b, _lam, status, _, _, _ = ar1.deconvolve_trace(
        inputs["traces"][i], GAMMA, SIGMA, inputs["c"], inputs["s"]
    )
    return i, b, status


def _spikes_osqp(inputs: Inputs) -> tuple[int, Any]:
    from sima_fast.spikes import osqp_trace

    i = _next_row(inputs, "osqp")
    return i, osqp_trace(inputs["traces"][i, : inputs["osqp_samples"]], GAMMA, SIGMA)


def _spikes_oasis(inputs: Inputs) -> tuple[int, Any]:
    from oasis.oasis_methods import constrained_oasisAR1

    i = _next_row(inputs, "oasis")
    return i, constrained_oasisAR1(inputs["traces"][i], GAMMA, SIGMA, optimize_b=True)


def _norm_ratio(y: np.ndarray, fit: np.ndarray) -> float:
    return float(np.linalg.norm(y - fit) / (SIGMA * np.sqrt(y.size)))


def _spikes_check(inputs: Inputs, name: str, result: Any) -> None:
    from sima_fast.kernels import ar1

    traces = inputs["traces"]
    if name == "ours":
        i, b, status = result
        assert status == ar1.STATUS_OPTIMAL
        assert abs(_norm_ratio(traces[i], b + inputs["c"]) - 1.0) <= 1e-5
    elif name == "osqp":
        i, (c, b, _lam, status) = result
        assert status == "optimal"
        y = traces[i, : inputs["osqp_samples"]]
        assert abs(_norm_ratio(y, b + c) - 1.0) <= 1e-4
    else:
        i, (c, _s, b, _g, _lam) = result
        assert abs(_norm_ratio(traces[i], b + c) - 1.0) <= 1e-2


_SPIKES_OURS = Implementation("ours", "ours", _spikes_ours, rounds=200, warmup=_spikes_ours)


# -- extraction ----------------------------------------------------------------------------

#: Cells (ROIs) of the simulated extraction scene.
N_ROIS = 500
#: Equivalent radius of a simulated cell, px: π·6.7² ≈ 141 pixels.
CELL_RADIUS = 6.7
BATCH = 500  # frames per batch of the scipy baseline
N_PROCESSES = 2  # extract_rois' threads: the targets are for 2 cores

_SHARED: dict[tuple, Any] = {}


def release_shared() -> None:
    """Drop the data that cases share (the simulated extraction scene)."""
    _SHARED.clear()


def simulated_cells(frames: int, dtype: str = "uint16") -> dict[str, Any]:
    """Return the simulated scene of the extraction cases: 500 cells on 512×512 frames.

    ``simulate_movie`` with 500 cells of equivalent radius 6.7 px (about 140
    pixels each, neighbours overlapping slightly), uint16, one channel. The
    last scene built is kept until :func:`release_shared`, with its movie in
    one dtype at a time: asking for the other dtype converts the movie (its
    values are integers below 2¹⁶, exact in float32) and keeps only the
    converted one, so a 3,000-frame scene holds 1.5 GB (uint16) or 3 GB
    (float32), never both.

    Parameters
    ----------
    frames : int
        Number of frames.
    dtype : {"uint16", "float32"}
        The dtype of the movie returned.

    Returns
    -------
    dict
        ``movie`` (frames, 512, 512) in ``dtype``, C-contiguous (the cached
        array itself: do not modify it), and ``rois`` (``ROI(mask=...)`` per
        cell).
    """
    key = ("cells", frames)
    if key not in _SHARED:
        from sima_fast.misc import simulate_movie
        from sima_fast.ROI import ROI

        release_shared()  # one scene at a time
        sim = simulate_movie(
            num_frames=frames,
            frame_shape=SHAPE,
            num_channels=1,
            cells_per_plane=N_ROIS,
            cell_radius=CELL_RADIUS,
            seed=2024,
        )
        movie = sim.movie[:, 0, :, :, 0]  # (T, Y, X) view of the contiguous (T, 1, Y, X, 1)
        _SHARED[key] = {"movie": movie, "rois": [ROI(mask=m) for m in sim.masks]}
    scene = _SHARED[key]
    if scene["movie"].dtype != np.dtype(dtype):
        scene["movie"] = _converted(scene["movie"], dtype)  # the other dtype is dropped
    return dict(scene)


def simulated_rois() -> list:
    """Return the ROIs of the simulated scene, which do not depend on its number of frames.

    They are taken from the scene :func:`simulated_cells` keeps, if any, or
    from a one-frame scene (which is then kept instead).

    Returns
    -------
    list of ROI
        ``ROI(mask=...)`` per simulated cell, as in :func:`simulated_cells`.
    """
    for key, scene in _SHARED.items():
        if key[0] == "cells":
            return scene["rois"]
    return simulated_cells(1)["rois"]


def _dataset(movie: np.ndarray) -> Any:
    """Wrap a (T, Y, X) movie in an in-memory dataset, its time averages computed (and cached)."""
    from sima_fast import ImagingDataset, Sequence

    dataset = ImagingDataset([Sequence.create("ndarray", movie[:, None, :, :, None])], None)
    dataset.time_averages  # noqa: B018 - computed once here, outside any timing
    return dataset


def _mean_of(dataset: Any) -> np.ndarray:
    return dataset.time_averages[..., 0].reshape(PIXELS).astype(np.float64)


def _converted(movie: np.ndarray, dtype: Any) -> np.ndarray:
    """Copy ``movie`` into a new array of ``dtype``, 250 frames at a time (no other temporary)."""
    out = np.empty(movie.shape, dtype=dtype)
    for t0 in range(0, len(movie), 250):
        out[t0 : t0 + 250] = movie[t0 : t0 + 250]
    return out


def _check_frames(n: int) -> np.ndarray:
    """Frames compared with the reference: both ends, the middle, a batch boundary."""
    return np.unique(np.array([0, 1, min(BATCH, n - 1), n // 2, n - 1]))


def _extraction_reference(masks: Any, frames: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """SIMA's algebra with NaN re-weighting, (n_frames, n_rois) float64.

    ``Σ_finite (w/μ) x · Σ_all w² / Σ_finite w²`` with ``w`` the mask weights
    after overlap removal; NaN where no pixel of the ROI is finite. Without
    NaN this is ``M @ (x / μ)``.

    Returns
    -------
    numpy.ndarray of float64, shape (n_frames, n_rois)
        The value of every ROI in every frame.
    """
    x = frames.reshape(len(frames), PIXELS).astype(np.float64)
    finite = np.isfinite(x)
    num = masks @ (np.where(finite, x, 0.0).T / mu[:, None])
    w2 = masks.multiply(masks).tocsr()
    seen = w2 @ finite.T.astype(np.float64)
    total = np.asarray(w2.sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(seen > 0, num * (total / seen), np.nan)
    return value.T


def _extraction_inputs(movie: np.ndarray, dataset: Any, rois: list, extra: str = "") -> Inputs:
    from sima_fast.extract import ExtractionWeights

    mu = _mean_of(dataset)
    weights = ExtractionWeights(rois, (1, *SHAPE), mu.reshape(1, *SHAPE), remove_overlap=True)
    assert weights.n_rois == N_ROIS and not weights.empty.any()
    data = {
        "movie": movie,
        "dataset": dataset,
        "rois": rois,
        "mu": mu,
        "weights": weights,
        "out": np.empty((len(movie), N_ROIS)),
    }
    size = _size(len(movie), movie.dtype, f"{extra}, {N_ROIS} ROIs")
    return Inputs(size, movie.nbytes, data)


def _extract_memory_setup(scratch: str, frames: int, dtype: str) -> Inputs:
    # the scene's own movie, not a copy: the float32 one replaces the uint16 one in the cache
    scene = simulated_cells(frames, dtype)
    return _extraction_inputs(scene["movie"], _dataset(scene["movie"]), scene["rois"])


def _kernel_ours(inputs: Inputs, frames: int | None = None) -> np.ndarray:
    from sima_fast._threads import kernel_threads
    from sima_fast.kernels.extract import extract_runs

    movie = inputs["movie"][:frames]
    with kernel_threads(N_PROCESSES):
        return extract_runs(
            movie.reshape(len(movie), PIXELS), inputs["weights"].plan, inputs["out"][: len(movie)]
        )


def _scipy_csr_batches(inputs: Inputs) -> np.ndarray:
    masks, mu, out = inputs["weights"].masks, inputs["mu"], inputs["out"]
    flat = inputs["movie"].reshape(len(inputs["movie"]), PIXELS)
    for t0 in range(0, len(flat), BATCH):
        batch = flat[t0 : t0 + BATCH]
        out[t0 : t0 + len(batch)] = (masks @ (batch.T / mu[:, None])).T
    return out


def _extract_api(inputs: Inputs) -> dict:
    from sima_fast.extract import extract_rois

    return extract_rois(inputs["dataset"], inputs["rois"], n_processes=N_PROCESSES)


def _suite2p_cells(inputs: Inputs) -> tuple[list, list]:
    """suite2p's (pixel indices, weights) per cell: the mask weights with 1/μ folded in."""
    if "cells" not in inputs.data:
        csr = inputs["weights"].masks.tocsr()
        inv_mu = 1.0 / inputs["mu"]
        cells = [
            (csr.indices[a:b], (csr.data[a:b] * inv_mu[csr.indices[a:b]]).astype(np.float32))
            for a, b in zip(csr.indptr[:-1], csr.indptr[1:])
        ]
        empty = [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))] * len(cells)
        inputs.data["cells"] = (cells, empty)
    return inputs["cells"]


def _suite2p(inputs: Inputs) -> Any:
    from suite2p.extraction.extract import extract_traces

    cells, no_neuropil = _suite2p_cells(inputs)
    return extract_traces(inputs["movie"], cells, no_neuropil, BATCH)


def _extraction_check(inputs: Inputs, name: str, result: Any) -> None:
    movie = inputs["movie"]
    masks, mu = inputs["weights"].masks, inputs["mu"]
    idx = _check_frames(len(movie))
    if name == "ours_api":
        raw = result["raw"][0]  # (n_rois, T) float32
        assert raw.shape == (N_ROIS, len(movie))
        want = _extraction_reference(masks, movie[idx], mu)
        np.testing.assert_allclose(raw[:, idx].T, want, rtol=2e-6, atol=0)
    elif name == "suite2p":
        sample = movie[idx].reshape(len(idx), -1).astype(np.float64)
        want = masks @ (sample.T / mu[:, None])
        np.testing.assert_allclose(np.asarray(result[0])[:, idx], want, rtol=1e-4)
    else:
        want = _extraction_reference(masks, movie[idx], mu)
        np.testing.assert_allclose(result[idx], want, rtol=1e-9, atol=0)


_KERNEL_OURS = Implementation(
    "ours", "ours", _kernel_ours, rounds=10, warmup=functools.partial(_kernel_ours, frames=2)
)
_SCIPY_CSR = Implementation(
    "scipy_csr_batches", "scipy CSR × 500-frame batches (SIMA)", _scipy_csr_batches
)
_API_OURS = Implementation(
    "ours_api", "extract_rois (whole call)", _extract_api, rounds=5, warmup=_extract_api, cli=False
)


def _extract_memory_case(dtype: str) -> BenchCase:
    impls = [_KERNEL_OURS, _API_OURS, _SCIPY_CSR]
    if dtype == "uint16":
        impls.append(
            Implementation(
                "suite2p",
                "suite2p extract_traces",
                _suite2p,
                unavailable=_missing("suite2p.extraction.extract", "extract_traces"),
            )
        )
    return BenchCase(
        name=f"extract-{dtype}-memory",
        work=f"extraction, {N_ROIS} ROIs (~140 px, overlaps removed), in memory"
        + ("" if dtype == "uint16" else f" ({dtype})"),
        suite="extract",
        setup=functools.partial(_extract_memory_setup, dtype=dtype),
        implementations=tuple(impls),
        check=_extraction_check,
        quick={"frames": 300},
        full={"frames": 3000},
        env={"frames": "SIMA_FAST_BENCH_EXTRACT_FRAMES"},
        cli=dtype == "uint16",
    )


def _extract_neuropil_setup(scratch: str, frames: int) -> Inputs:
    from sima_fast.extract import ExtractionWeights

    scene = simulated_cells(frames)
    inputs = _extraction_inputs(
        scene["movie"], _dataset(scene["movie"]), scene["rois"], " + neuropil surrounds"
    )
    mu = inputs["mu"].reshape(1, *SHAPE)
    weights = ExtractionWeights(scene["rois"], (1, *SHAPE), mu, remove_overlap=True, neuropil=True)
    inputs.data["neuropil_weights"] = weights
    inputs.data["neuropil_out"] = np.empty((len(scene["movie"]), weights.n_outputs))
    return inputs


def _kernel_neuropil(inputs: Inputs, frames: int | None = None) -> np.ndarray:
    from sima_fast._threads import kernel_threads
    from sima_fast.kernels.extract import extract_runs

    movie = inputs["movie"][:frames]
    with kernel_threads(N_PROCESSES):
        return extract_runs(
            movie.reshape(len(movie), PIXELS),
            inputs["neuropil_weights"].plan,
            inputs["neuropil_out"][: len(movie)],
        )


def _extract_neuropil_check(inputs: Inputs, name: str, result: Any) -> None:
    if name == "plain":
        _extraction_check(inputs, "ours", result)
        return
    movie, mu = inputs["movie"], inputs["mu"]
    weights = inputs["neuropil_weights"]
    idx = _check_frames(len(movie))
    want = _extraction_reference(weights.masks, movie[idx], mu)
    np.testing.assert_allclose(result[idx, :N_ROIS], want, rtol=1e-9, atol=0)
    # surround i: the ROI's Σ w/μ times the mean of the frame over the surround
    sample = movie[idx].reshape(len(idx), PIXELS).astype(np.float64)
    surround = weights.surround
    mean = (surround @ sample.T) / np.asarray(surround.sum(axis=1))
    want_np = (weights.roi_scale[:, None] * mean).T
    np.testing.assert_allclose(result[idx, N_ROIS:], want_np, rtol=1e-9, atol=0)
    assert (weights.surround_pixels >= 350).all()


NAN_ROWS = round(0.2 * SHAPE[0])  # rows set to NaN in every frame of the NaN movie


def _nan_rows(movie: np.ndarray) -> np.ndarray:
    """Set ``NAN_ROWS`` whole rows of every frame to NaN (top and bottom bands), in place."""
    top = np.random.default_rng(11).integers(0, NAN_ROWS + 1, size=len(movie))
    for frame, k in zip(movie, top):
        frame[:k] = np.nan
        frame[SHAPE[0] - (NAN_ROWS - k) :] = np.nan
    return movie


def _extract_nan_setup(scratch: str, frames: int) -> Inputs:
    scene = simulated_cells(frames)
    clean = _converted(scene["movie"], np.float32)  # its own copy: NaN rows go in
    inputs = _extraction_inputs(clean, _dataset(clean), scene["rois"], " 20 % NaN rows")
    inputs.data["state"] = "clean"
    return inputs


def _nan_movie(inputs: Inputs, nan: bool) -> np.ndarray:
    """Return the float32 movie with or without the NaN rows: one copy, turned over in place.

    Only one 3 GB movie is alive at full size: the NaN rows are written into
    the clean movie, and the clean one is rebuilt from the scene if needed.

    Returns
    -------
    numpy.ndarray of float32, shape (T, 512, 512)
        ``inputs["movie"]``, now in the state asked for.
    """
    movie = inputs["movie"]
    if nan and inputs["state"] == "clean":
        _nan_rows(movie)
    elif not nan and inputs["state"] == "nan":
        movie[...] = simulated_cells(len(movie))["movie"]
    inputs.data["state"] = "nan" if nan else "clean"
    return movie


def _kernel_on(nan: bool) -> Callable[[Inputs], np.ndarray]:
    def run(inputs: Inputs, frames: int | None = None) -> np.ndarray:
        _nan_movie(inputs, nan)
        return _kernel_ours(inputs, frames)

    return run


def _extract_nan_check(inputs: Inputs, name: str, result: Any) -> None:
    movie = _nan_movie(inputs, name == "ours")
    if name == "ours":
        assert np.isnan(movie[len(movie) // 2]).all(axis=1).sum() == NAN_ROWS
    _extraction_check(inputs, name, result)


def _extract_file_setup(scratch: str, frames: int, fmt: str) -> Inputs:
    import h5py

    from sima_fast import ImagingDataset, Sequence

    path = write_hdf5_movie(scratch, frames)
    if fmt == "hdf5":
        seq = Sequence.create("HDF5", path, "tyx")
    else:
        seq = Sequence.create("TIFF", write_tiff_movie(scratch, frames))
        assert seq.zero_copy, "the TIFF should be memory-mapped"
    dataset = ImagingDataset([seq], None)
    dataset.time_averages  # noqa: B018 - cached before timing: the targets assume it
    with h5py.File(path, "r") as f:
        sample = f["imaging"][_check_frames(frames)]
    inputs = _extraction_inputs(sample, dataset, simulated_rois())
    inputs.size = _size(frames, np.uint16, f", {N_ROIS} ROIs")
    inputs.nbytes = frames * PIXELS * 2
    inputs.data.update(path=path, frames=frames)
    if fmt == "tiff":  # the same frames in memory, read when first needed
        inputs.data["memory"] = None
    return inputs


def _extract_file_check(inputs: Inputs, name: str, result: Any) -> None:
    if name == "raw":
        assert result == inputs["frames"]
        return
    raw = result["raw"][0]
    assert raw.shape == (N_ROIS, inputs["frames"])
    idx = _check_frames(inputs["frames"])
    want = _extraction_reference(inputs["weights"].masks, inputs["movie"], inputs["mu"])
    np.testing.assert_allclose(raw[:, idx].T, want, rtol=2e-6, atol=0)


def _extract_in_memory(inputs: Inputs) -> dict:
    """``extract_rois`` on an in-memory dataset of the file's frames (loaded once)."""
    import h5py

    from sima_fast.extract import extract_rois

    if inputs["memory"] is None:
        with h5py.File(inputs["path"], "r") as f:
            inputs.data["memory"] = _dataset(f["imaging"][...])
    return extract_rois(inputs["memory"], inputs["rois"], n_processes=N_PROCESSES)


# -- dataset writes (the directory lock) ----------------------------------------------------

WRITE_SHAPE = (128, 128)  # frame of the dataset-writes case: small, so writing dominates
WRITE_ROIS = 50


def _writes_setup(scratch: str, frames: int) -> Inputs:
    import tempfile

    from sima_fast import ImagingDataset, Sequence
    from sima_fast.ROI import ROI, ROIList

    rng = np.random.default_rng(5)
    movie = rng.gamma(4.0, 25.0, (frames, 1, *WRITE_SHAPE, 1)).astype(np.float32)
    rois = []
    for i in range(WRITE_ROIS):
        mask = np.zeros((1, *WRITE_SHAPE), dtype=bool)
        y, x = rng.integers(0, WRITE_SHAPE[0] - 8, size=2)
        mask[0, y : y + 8, x : x + 8] = True
        rois.append(ROI(mask=mask, id=str(i)))
    savedir = os.path.join(tempfile.mkdtemp(prefix="writes-", dir=scratch), "writes")
    dataset = ImagingDataset([Sequence.create("ndarray", movie)], savedir)
    dataset.time_averages  # noqa: B018 - cached on disk before timing
    data = {"dataset": dataset, "rois": ROIList(rois), "movie": movie, "calls": [0]}
    size = f"{frames}×{WRITE_SHAPE[0]}×{WRITE_SHAPE[1]} float32, {WRITE_ROIS} ROIs, on disk"
    return Inputs(size, None, data)


def _writes_ours(inputs: Inputs) -> dict:
    """``add_ROIs`` then ``extract`` into the dataset directory (each holds its lock)."""
    dataset, rois = inputs["dataset"], inputs["rois"]
    label = f"run{inputs['calls'][0] % 4}"  # a few labels: the files stay the same size
    inputs["calls"][0] += 1
    dataset.add_ROIs(rois, label)
    return dataset.extract(rois, label=label, save_summary=False)


def _lock_only(inputs: Inputs) -> int:
    """Take and release the directory lock as those two calls do (two cycles)."""
    from sima_fast.storage import dataset_lock

    savedir = inputs["dataset"].savedir
    for operation in ("add_ROIs", "extract"):
        with dataset_lock(savedir, operation):
            pass
    return 2


def _writes_check(inputs: Inputs, name: str, result: Any) -> None:
    if name == "lock":
        assert result == 2
        return
    movie, rois = inputs["movie"], inputs["rois"]
    mu = movie.mean(axis=0, dtype=np.float64).reshape(-1)
    masks = np.stack([np.asarray(r.mask[0].todense()).reshape(-1) for r in rois]).astype(float)
    masks /= masks.sum(axis=1, keepdims=True)  # overlaps removed below, as extract does
    shared = (masks > 0).sum(axis=0) > 1
    masks[:, shared] = 0
    masks /= np.where(masks.sum(axis=1, keepdims=True) > 0, masks.sum(axis=1, keepdims=True), 1)
    idx = np.arange(0, len(movie), 37)
    want = (movie[idx].reshape(len(idx), -1) / mu) @ masks.T
    stored = inputs["dataset"].signals()[f"run{(inputs['calls'][0] - 1) % 4}"]
    for raw in (result["raw"][0], stored["raw"][0]):
        np.testing.assert_allclose(raw[:, idx].T, want, rtol=1e-5, atol=1e-6)


# -- online --------------------------------------------------------------------------------

WARMUP_FRAMES = 1000


def _online_setup(scratch: str, movie_frames: int, updates: int, dtype: str) -> Inputs:
    import scipy.sparse

    from sima_fast.online import OnlineExtractor

    scene = simulated_cells(movie_frames)
    movie = scene["movie"] if dtype == "uint16" else scene["movie"].astype(np.float32)
    mean = scene["movie"].mean(axis=0, dtype=np.float64)
    online = OnlineExtractor(
        scene["rois"],
        SHAPE,
        mean_frame=mean,
        dtype=dtype,
        gamma=0.95,
        sigma=0.05,
        baseline=1.0,
        max_frames=updates + WARMUP_FRAMES + 10,
    )
    n = len(movie)
    for t in range(WARMUP_FRAMES):
        online.update(movie[t % n])
    masks = scipy.sparse.csr_matrix(online.weights.masks)
    data = {
        "movie": movie,
        "online": online,
        "fed": [WARMUP_FRAMES],  # frames given to update() so far
        "baseline_fed": [0],
        "masks": masks,
        "mu": mean.reshape(-1),
        "state": None,
    }
    size = f"{SHAPE[0]}×{SHAPE[1]} {dtype} frame, {N_ROIS} ROIs"
    return Inputs(size, PIXELS * movie.itemsize, data, rounds={"ours": updates})


def _online_ours(inputs: Inputs) -> np.ndarray:
    fed = inputs["fed"]
    frame = inputs["movie"][fed[0] % len(inputs["movie"])]
    fed[0] += 1
    return inputs["online"].update(frame)


def _online_offline_per_frame(inputs: Inputs) -> tuple[int, np.ndarray]:
    """Do what the offline algebra does per frame: a CSR product and a moments update."""
    from sima_fast.kernels.moments import MomentState

    if inputs["state"] is None:
        inputs.data["state"] = MomentState.empty((PIXELS,))
    movie = inputs["movie"]
    fed = inputs["baseline_fed"]
    t = fed[0] % len(movie)
    fed[0] += 1
    frame = movie[t].reshape(-1)
    values = inputs["masks"] @ (frame / inputs["mu"])
    inputs["state"].update(frame[None, :])
    return t, values


def _online_check(inputs: Inputs, name: str, result: Any) -> None:
    from sima_fast.kernels.extract import extract_runs

    online, movie = inputs["online"], inputs["movie"]
    plan = online.weights.plan
    if name != "ours":
        t, values = result
        out = np.empty((1, online.n_rois))
        extract_runs(movie[t].reshape(1, PIXELS), plan, out)
        np.testing.assert_allclose(values, out[0], rtol=1e-9)
        return
    # the last frames' values against the offline kernel, a few time averages against numpy
    order = np.arange(inputs["fed"][0]) % len(movie)
    last = order[-5:]
    out = np.empty((5, online.n_rois))
    extract_runs(movie[last].reshape(5, PIXELS), plan, out)
    np.testing.assert_allclose(online.raw[:, -5:], out.T, rtol=2e-7)
    counts = np.bincount(order, minlength=len(movie)).astype(np.float64)
    picked = movie.reshape(len(movie), PIXELS)[:, CHECK].astype(np.float64)
    expected = counts @ picked / counts.sum()
    np.testing.assert_allclose(online.time_averages.reshape(PIXELS)[CHECK], expected, rtol=1e-10)


def _online_case(dtype: str) -> BenchCase:
    return BenchCase(
        name=f"online-update-{dtype}",
        work=f"online update(): extract {N_ROIS} ROIs + moments + AR(1), one frame"
        + ("" if dtype == "uint16" else f" ({dtype})"),
        suite="online",
        setup=functools.partial(_online_setup, dtype=dtype),
        implementations=(
            Implementation("ours", "ours", _online_ours, rounds=2000),
            Implementation(
                "offline_per_frame",
                "scipy CSR product + MomentState per frame",
                _online_offline_per_frame,
                rounds=300,
            ),
        ),
        check=_online_check,
        quick={"movie_frames": 300, "updates": 2000},
        full={"movie_frames": 300, "updates": 10_000},
        env={
            "movie_frames": "SIMA_FAST_BENCH_ONLINE_MOVIE",
            "updates": "SIMA_FAST_BENCH_ONLINE_FRAMES",
        },
        unit="frame",
        cli=dtype == "uint16",
    )


# -- motion correction -------------------------------------------------------------------

#: Largest rigid shift (px, each axis) of the simulated motion movies.
MOTION_SHIFT = 20.0
#: Margin (px) of the simulated motion scene around the 512×512 field of view.
MOTION_PAD = 32
#: Peak amplitude (px) of the smooth non-rigid deformation of the non-rigid movie.
NONRIGID_AMPLITUDE = 3.0
#: Threads of every motion implementation (the targets are for 2 cores).
MOTION_THREADS = 2


@functools.lru_cache(maxsize=1)
def motion_scene() -> np.ndarray:
    """Return the scene the motion movies are cut from (photons per pixel).

    Returns
    -------
    numpy.ndarray, float64, (512 + 2 pad)²
        Periodic (so that Fourier shifts are exact): a smooth background of
        10-40 photons and 600 Gaussian cells (sigma 3 px) of up to 120 more.
    """
    from scipy.ndimage import gaussian_filter

    n = SHAPE[0] + 2 * MOTION_PAD
    rng = np.random.default_rng(14)
    background = gaussian_filter(rng.random((n, n)), 16, mode="wrap")
    background = (background - background.min()) / np.ptp(background)
    cells = np.zeros((n, n))
    where = rng.integers(0, n, size=(600, 2))
    np.add.at(cells, (where[:, 0], where[:, 1]), rng.uniform(0.5, 1.5, 600))
    cells = gaussian_filter(cells, 3.0, mode="wrap")
    return 10 + 30 * background + 120 * cells / cells.max()


def motion_movie(
    frames: int, seed: int = 0, nonrigid: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate a 512×512 movie of the :func:`motion_scene` moving by known shifts.

    Frame ``t`` shows the scene moved by ``shifts[t]`` (sub-pixel, uniform in
    ±:data:`MOTION_SHIFT`, by an exact Fourier shift), optionally deformed
    by a smooth field (``nonrigid`` px at most: ``dy = a sin(2 pi x / 512 +
    p)``, ``dx = b cos(2 pi y / 512 + q)``, bilinear), with Poisson noise;
    values ``100 + 10 * photons`` (below 2**15, so the frames read the same
    as uint16 and int16).

    Parameters
    ----------
    frames : int
        Number of frames.
    seed : int, optional
        Seed of the motion and the noise.
    nonrigid : float, optional
        Amplitude of the deformation (default 0: rigid motion only).

    Returns
    -------
    movie : numpy.ndarray, int16 (frames, 512, 512)
    shifts : numpy.ndarray, float64 (frames, 2)
        The content shift ``(dy, dx)`` of every frame; the displacement that
        corrects it (``sima_fast.motion`` convention) is ``-shifts``.
    reference : numpy.ndarray, float64 (512, 512)
        The noise-free, unmoved field of view.
    """
    from scipy import fft
    from scipy.ndimage import map_coordinates

    scene = motion_scene()
    n, pad = scene.shape[0], MOTION_PAD
    spectrum = fft.rfft2(scene)
    ky, kx = np.fft.fftfreq(n), np.fft.rfftfreq(n)
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(-MOTION_SHIFT, MOTION_SHIFT, size=(frames, 2))
    movie = np.empty((frames, *SHAPE), dtype=np.int16)
    grid = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float64)
    for t, (sy, sx) in enumerate(shifts):
        ramp = np.exp(-2j * np.pi * ky * sy)[:, None] * np.exp(-2j * np.pi * kx * sx)[None, :]
        moved = fft.irfft2(spectrum * ramp, s=scene.shape, workers=MOTION_THREADS)
        if nonrigid:
            a, b, p, q = rng.uniform(-1, 1, 4) * (nonrigid, nonrigid, np.pi, np.pi)
            dy = a * np.sin(2 * np.pi * grid[1] / SHAPE[1] + p)
            dx = b * np.cos(2 * np.pi * grid[0] / SHAPE[0] + q)
            view = map_coordinates(moved, [grid[0] + pad - dy, grid[1] + pad - dx], order=1)
        else:
            view = moved[pad : pad + SHAPE[0], pad : pad + SHAPE[1]]
        movie[t] = 100 + 10 * rng.poisson(np.clip(view, 0, None))
    return movie, shifts, scene[pad : pad + SHAPE[0], pad : pad + SHAPE[1]].copy()


def _motion_setup(scratch: str, frames: int, nonrigid: bool) -> Inputs:
    from sima_fast.sequence import Sequence

    movie, shifts, reference = motion_movie(
        frames, seed=3 if nonrigid else 2, nonrigid=NONRIGID_AMPLITUDE if nonrigid else 0.0
    )
    extra = ", non-rigid" if nonrigid else ", rigid"
    return Inputs(
        size=_size(frames, np.uint16, f"{extra}, shifts ±{MOTION_SHIFT:g} px"),
        nbytes=movie.nbytes,
        data={
            "movie": movie,  # int16 for suite2p; the same bytes as uint16 for the others
            "sequence": Sequence.create("ndarray", movie.view(np.uint16)[:, None, :, :, None]),
            "shifts": shifts,
            "reference": reference,
            "out": np.empty(movie.shape, dtype=np.float32),
            "out_int16": np.empty(movie.shape, dtype=np.int16),
            "accuracy": {},
            "nonrigid": nonrigid,
        },
        rounds={"ours": 3, "scipy_loop": 1, "suite2p": 1},
    )


def _write_corrected(view: Any, displacements: np.ndarray, out: np.ndarray) -> None:
    """Stream a corrected view into ``out`` (T, 512, 512), cropped at the median displacement."""
    centre = np.median(displacements.reshape(len(out), -1, 2), axis=0)[0]
    y0, x0 = (int(v) for v in np.round(centre))
    for t0, block in view.iter_chunks(CHUNK, reuse_buffer=True):
        out[t0 : t0 + len(block)] = block[:, 0, y0 : y0 + SHAPE[0], x0 : x0 + SHAPE[1], 0]


def _motion_ours(inputs: Inputs) -> np.ndarray:
    """Run RigidRegistration2D: reference built from the data, estimate, corrected frames."""
    from sima_fast.motion import RigidRegistration2D

    # the reference is built from the data, so it can sit anywhere within the motion: the
    # frames can be up to twice the largest shift away from it
    strategy = RigidRegistration2D(
        max_displacement=2 * MOTION_SHIFT + 4, n_processes=MOTION_THREADS
    )
    seq = inputs["sequence"]
    start = time.perf_counter()
    d = strategy.estimate([seq])[0]
    estimated = time.perf_counter()
    grow = np.ceil(d.reshape(-1, 2).max(axis=0)).astype(int)
    view = strategy.corrected_sequence(seq, d, (1, SHAPE[0] + grow[0], SHAPE[1] + grow[1]))
    _write_corrected(view, d, inputs["out"])
    _record_parts(inputs, "ours", estimated - start, time.perf_counter() - estimated)
    return d[:, 0]


def _record_parts(inputs: Inputs, name: str, estimate: float, apply: float) -> None:
    """Keep the seconds of the estimation and of the application (the last call's)."""
    inputs.data.setdefault("parts", {})[name] = {
        "estimate_s": round(estimate, 3),
        "apply_s": round(apply, 3),
    }


def _nonrigid_ours(inputs: Inputs) -> np.ndarray:
    """Run the non-rigid strategy of sima_fast.motion (128×128 blocks): estimate, correct."""
    import sima_fast.motion

    strategy = sima_fast.motion.NonRigid2D(
        block_size=(128, 128), max_displacement=MOTION_SHIFT + 4, n_processes=MOTION_THREADS
    )
    seq = inputs["sequence"]
    d = strategy.estimate([seq])[0]
    grow = np.ceil(d.reshape(-1, 2).max(axis=0)).astype(int)
    view = strategy.corrected_sequence(seq, d, (1, SHAPE[0] + grow[0], SHAPE[1] + grow[1]))
    _write_corrected(view, d, inputs["out"])
    return d[:, 0].reshape(len(d), -1, 2).mean(axis=1)  # the mean block shift


def _motion_scipy_loop(inputs: Inputs) -> np.ndarray:
    """Register by a plain scipy.fft phase-correlation loop (true reference), ndimage.shift.

    Plain: scipy's defaults (one thread), float64, one frame at a time, the
    integer peak, bilinear shift. It is given the true reference, so it
    builds none (ours builds its reference from the data, inside the timing).

    Returns
    -------
    numpy.ndarray, (T, 2)
        The displacement found for every frame.
    """
    from scipy import fft, ndimage

    workers = inputs.data.get("loop_workers")
    ref = inputs["reference"]
    conj_ref = np.conj(fft.fft2(ref - ref.mean()))
    out = inputs["out"]
    found = np.empty((len(out), 2))
    applying = 0.0
    start = time.perf_counter()
    for t, frame in enumerate(inputs["movie"].view(np.uint16)):
        f = frame.astype(np.float64)
        cross = fft.fft2(f - f.mean(), workers=workers) * conj_ref
        cross /= np.abs(cross) + 1e-12
        surface = fft.ifft2(cross, workers=workers).real
        peak = np.array(np.unravel_index(np.argmax(surface), surface.shape), dtype=np.float64)
        peak[peak > np.array(surface.shape) // 2] -= np.array(surface.shape)[
            peak > np.array(surface.shape) // 2
        ]
        found[t] = -peak  # the content moved by the peak: move it back
        before = time.perf_counter()
        out[t] = ndimage.shift(f, found[t], order=1, cval=np.nan)
        applying += time.perf_counter() - before
    _record_parts(inputs, "scipy_loop", time.perf_counter() - start - applying, applying)
    return found


def _motion_suite2p(inputs: Inputs, nonrigid: bool = False) -> np.ndarray:
    """Run suite2p's registration on the CPU: reference from 400 frames, register_frames."""
    import logging

    import torch
    from suite2p.parameters import default_settings
    from suite2p.registration import register

    logging.getLogger("suite2p").setLevel(logging.WARNING)
    torch.set_num_threads(MOTION_THREADS)
    cpu = torch.device("cpu")
    settings = default_settings()["registration"]
    movie = inputs["movie"]
    pick = np.unique(np.linspace(0, len(movie) - 1, min(settings["nimg_init"], len(movie))))
    ref = register.compute_reference(movie[pick.astype(int)].copy(), settings=settings, device=cpu)
    offsets = register.register_frames(
        movie,
        ref,
        f_align_out=inputs["out_int16"],
        batch_size=settings["batch_size"],
        norm_frames=settings["norm_frames"],
        smooth_sigma=settings["smooth_sigma"],
        spatial_taper=settings["spatial_taper"],
        block_size=(128, 128),
        nonrigid=nonrigid,
        maxregshift=settings["maxregshift"],
        snr_thresh=settings["snr_thresh"],
        maxregshiftNR=settings["maxregshiftNR"],
        subpixel=settings["subpixel"],
        device=cpu,
    )[3]
    rigid = -np.stack([offsets[0], offsets[1]], axis=1).astype(np.float64)
    if nonrigid:  # the mean block shift: rigid part plus the blocks' mean offset
        rigid -= np.stack([offsets[3].mean(axis=1), offsets[4].mean(axis=1)], axis=1)
    return rigid


def gradient_energy(image: np.ndarray, margin: int = 32) -> float:
    """Sharpness of an image: the mean squared gradient of its interior, NaN ignored.

    Parameters
    ----------
    image : numpy.ndarray, (Y, X)
        E.g. the mean of motion-corrected frames.
    margin : int, optional
        Pixels left out at every edge (where frames are partly unobserved).

    Returns
    -------
    float
    """
    inner = np.asarray(image, dtype=np.float64)[margin:-margin, margin:-margin]
    gy, gx = np.gradient(inner)
    return float(np.nanmean(gy * gy + gx * gx))


def _motion_check(inputs: Inputs, name: str, result: Any) -> None:
    """Check the displacements against the truth and record RMS error and sharpness."""
    truth = -inputs["shifts"]
    err = np.asarray(result, dtype=np.float64) - truth
    err -= np.median(err, axis=0)  # each implementation has its own origin
    rms = float(np.sqrt(np.mean(np.sum(err * err, axis=1) / 2)))
    out = inputs["out_int16"] if name == "suite2p" else inputs["out"]
    mean = np.nanmean(out.astype(np.float32), axis=0)
    inputs["accuracy"][name] = {
        "rms_px": rms,
        "gradient_energy": gradient_energy(mean),
    }
    nonrigid = inputs.data.get("nonrigid", False)
    limit = (0.5 if nonrigid else 0.2) if name == "ours" else 1.0
    if not rms < limit:
        raise AssertionError(f"{name}: RMS error {rms:.3f} px against the true shifts (> {limit})")


def _no_nonrigid() -> str | None:
    import sima_fast.motion

    if getattr(sima_fast.motion, "NonRigid2D", None) is None:
        return "this build of sima_fast.motion has no NonRigid2D: the non-rigid case is skipped"
    return None


def _motion_case(nonrigid: bool) -> BenchCase:
    ours = Implementation(
        "ours",
        "ours",
        _nonrigid_ours if nonrigid else _motion_ours,
        warmup=None,
        unavailable=_no_nonrigid if nonrigid else None,
    )
    suite2p = Implementation(
        "suite2p",
        "suite2p register_frames (CPU, torch)" + (", non-rigid" if nonrigid else ", rigid"),
        functools.partial(_motion_suite2p, nonrigid=nonrigid),
        rounds=1,
        unavailable=_missing("suite2p.registration.register", hint=" (pip install suite2p)"),
        cli=False,
    )
    impls = (ours, suite2p)
    if not nonrigid:
        impls = (
            ours,
            Implementation(
                "scipy_loop",
                "plain scipy.fft phase-correlation loop + ndimage.shift (1 thread)",
                _motion_scipy_loop,
                rounds=1,
            ),
            suite2p,
        )
    return BenchCase(
        name="motion-nonrigid" if nonrigid else "motion-rigid",
        work=(
            "non-rigid motion correction (128×128 blocks), estimate + apply"
            if nonrigid
            else "rigid motion correction (sub-pixel), estimate + apply"
        ),
        suite="motion",
        setup=functools.partial(_motion_setup, nonrigid=nonrigid),
        implementations=impls,
        check=_motion_check,
        quick={"frames": 100},
        full={"frames": 2000},
        cli_size={"frames": 300},
        cli_quick=False,
        env={"frames": "SIMA_FAST_BENCH_MOTION_FRAMES"},
        unit="call",
        cli=not nonrigid,
    )


# -- online registration -------------------------------------------------------------------

#: Largest motion of the registration case's frames, px (each axis, uniform in ±).
REGISTER_MOTION = 20.0
#: Margin of the canvas the registration frames are cut from, px (more than the motion).
REGISTER_PAD = 32


def _register_setup(scratch: str, frames: int, updates: int) -> Inputs:
    """Build 512×512 uint16 frames of a simulated scene under known subpixel motion.

    The scene is simulated on a canvas :data:`REGISTER_PAD` px larger on every
    side; frame ``t`` is the crop of the canvas's frame ``t`` translated by
    ``m_t`` (uniform in ±:data:`REGISTER_MOTION` px per axis) exactly, in
    Fourier space, so the true correction is ``-m_t``. The reference is the
    crop of the untranslated canvas's mean.

    Returns
    -------
    Inputs
        The frames, the motions, a warmed-up ``OnlineRegistrar`` and the
        baseline's reference spectrum.
    """
    import scipy.fft
    from scipy.ndimage import fourier_shift

    from sima_fast.misc import simulate_movie
    from sima_fast.online_motion import OnlineRegistrar

    P = REGISTER_PAD
    canvas = simulate_movie(
        num_frames=frames,
        frame_shape=(SHAPE[0] + 2 * P, SHAPE[1] + 2 * P),
        num_channels=1,
        cells_per_plane=N_ROIS * 5 // 4,
        cell_radius=CELL_RADIUS,
        seed=2025,
        dtype="float32",
    ).movie[:, 0, :, :, 0]
    rng = np.random.default_rng(2025)
    motions = rng.uniform(-REGISTER_MOTION, REGISTER_MOTION, (frames, 2))
    movie = np.empty((frames, *SHAPE), dtype=np.uint16)
    crop = (slice(P, P + SHAPE[0]), slice(P, P + SHAPE[1]))
    for t in range(frames):
        moved = scipy.fft.ifft2(fourier_shift(scipy.fft.fft2(canvas[t]), motions[t])).real
        movie[t] = np.clip(np.rint(moved[crop]), 0, 65535)
    reference = canvas.mean(axis=0, dtype=np.float64)[crop]
    registrar = OnlineRegistrar(
        reference, dtype="uint16", max_displacement=int(REGISTER_MOTION) + 4
    )
    for t in range(frames):  # plans, caches
        registrar.register(movie[t])
    ref32 = (reference - reference.mean()).astype(np.float32)
    data = {
        "movie": movie,
        "motions": motions,
        "registrar": registrar,
        "fed": [0],
        "baseline_fed": [0],
        "ref_conj": np.conj(scipy.fft.rfft2(ref32)),
    }
    size = f"{SHAPE[0]}×{SHAPE[1]} uint16 frame, motion ±{REGISTER_MOTION:g} px"
    return Inputs(size, PIXELS * 2, data, rounds={"ours": updates})


def _register_ours(inputs: Inputs) -> int:
    fed = inputs["fed"]
    t = fed[0] % len(inputs["movie"])
    fed[0] += 1
    inputs["registrar"].register(inputs["movie"][t])
    return t


def _register_scipy(inputs: Inputs) -> tuple[int, np.ndarray]:
    """Register one frame the plain way: scipy.fft, whitening, argmax + parabola, ndimage.shift."""
    import scipy.fft
    import scipy.ndimage

    fed = inputs["baseline_fed"]
    t = fed[0] % len(inputs["movie"])
    fed[0] += 1
    frame = inputs["movie"][t].astype(np.float32)
    cross = scipy.fft.rfft2(frame - frame.mean(), workers=1) * inputs["ref_conj"]
    cross /= np.abs(cross) + 1e-12
    corr = scipy.fft.irfft2(cross, s=frame.shape, workers=1)
    peak = np.unravel_index(np.argmax(corr), corr.shape)
    motion = np.empty(2)
    for axis, n in enumerate(corr.shape):
        i = peak[axis]
        step = np.eye(2, dtype=int)[axis]
        a = corr[tuple((np.array(peak) - step) % corr.shape)]
        b = corr[peak]
        d = corr[tuple((np.array(peak) + step) % corr.shape)]
        den = a - 2 * b + d
        offset = 0.5 * (a - d) / den if den < 0 else 0.0
        motion[axis] = (i + offset + n / 2) % n - n / 2
    scipy.ndimage.shift(frame, -motion, order=1, mode="constant", cval=np.nan)
    return t, -motion


def _register_check(inputs: Inputs, name: str, result: Any) -> None:
    from sima_fast.kernels.warp import shift_frame

    movie, motions = inputs["movie"], inputs["motions"]
    if name != "ours":
        t, shift = result
        assert np.abs(shift + motions[t]).max() < 1.0, (shift, -motions[t])
        return
    registrar = inputs["registrar"]
    errors = np.array([registrar.register(f)[0] + m for f, m in zip(movie, motions)])
    rms = float(np.sqrt((errors**2).mean()))
    assert rms <= 0.1, f"registration RMS error {rms:.3f} px"
    shift, registered = registrar.register(movie[result])
    want = np.empty(SHAPE, dtype=np.float32)
    shift_frame(movie[result], tuple(shift), want)
    np.testing.assert_allclose(registered, want, rtol=1e-6, atol=1e-3)


# -- the registry --------------------------------------------------------------------------

CASES: tuple[BenchCase, ...] = (
    _moments_case("uint16"),
    _moments_case("float32"),
    BenchCase(
        name="projections-hdf5",
        work="projections of an HDF5 movie (mean, std, kurtosis)",
        suite="projections",
        setup=_hdf5_setup,
        implementations=(
            Implementation("raw", "h5py slices", _read_raw, rounds=5, warmup=_read_raw),
            Implementation("ours", "ours", _projections_hdf5, rounds=5, warmup=_projections_hdf5),
        ),
        check=_projections_hdf5_check,
        quick={"frames": 300},
        full={"frames": 3000},
        env={"frames": "SIMA_FAST_BENCH_FRAMES"},
        cli=False,
    ),
    BenchCase(
        name="fill-gaps",
        work="gap filling (forward fill), ~10 % NaN (edge rows, scattered pixels)",
        suite="gaps",
        setup=_gaps_setup,
        implementations=(
            Implementation(
                "ours",
                "ours",
                _fill_ours,
                rounds=10,
                warmup=functools.partial(_fill_ours, frames=8),
            ),
            Implementation(
                "numpy_loop",
                "numpy loop",
                lambda inputs: _fill_numpy(inputs["movie"], inputs["out"]),
            ),
            Implementation("copyto", "np.copyto", _fill_copyto, rounds=10),
        ),
        check=_gaps_check,
        quick={"frames": 200},
        full={"frames": 2000},
        env={"frames": "SIMA_FAST_BENCH_GAPS_FRAMES"},
    ),
    _read_case("hdf5", "h5py slices", cli=True),
    _read_case("tiff", "tifffile pages", cli=False),
    BenchCase(
        name="spikes-trace-10k",
        work="AR(1) deconvolution, one trace, 1 thread",
        suite="spikes",
        setup=functools.partial(_spikes_setup, seed=1),
        implementations=(
            _SPIKES_OURS,
            Implementation("osqp", "OSQP path", _spikes_osqp, rounds=2),
            Implementation(
                "oasis",
                "oasis constrained_oasisAR1",
                _spikes_oasis,
                rounds=200,
                warmup=_spikes_oasis,
                unavailable=_missing("oasis.oasis_methods", hint=" (pip install oasis-deconv)"),
            ),
        ),
        check=_spikes_check,
        quick={"n_t": 10_000, "osqp_samples": 2000},
        full={"n_t": 10_000, "osqp_samples": 10_000},
    ),
    BenchCase(
        name="spikes-trace-1k",
        work="AR(1) deconvolution, one 1,000-sample trace, 1 thread",
        suite="spikes",
        setup=functools.partial(_spikes_setup, seed=2),
        implementations=(_SPIKES_OURS,),
        check=_spikes_check,
        quick={"n_t": 1000, "osqp_samples": 1000},
        full={"n_t": 1000, "osqp_samples": 1000},
        cli=False,
        # SIMA 1.3.2's time for one 1,000-sample trace on this kind of machine
        # (SIMA no longer installs, so it is not re-measured)
        extra_info={"sima_anchor_s": 2.7},
    ),
    _extract_memory_case("uint16"),
    _extract_memory_case("float32"),
    BenchCase(
        name="extract-neuropil",
        work=f"extraction, {N_ROIS} ROIs + their neuropil surrounds (suite2p's defaults, "
        "≥ 350 px), uint16 in memory",
        suite="extract",
        setup=_extract_neuropil_setup,
        implementations=(
            Implementation(
                "plain",
                "the same call without neuropil",
                _kernel_ours,
                rounds=10,
                warmup=functools.partial(_kernel_ours, frames=2),
            ),
            Implementation(
                "ours",
                "ours",
                _kernel_neuropil,
                rounds=10,
                warmup=functools.partial(_kernel_neuropil, frames=2),
            ),
        ),
        check=_extract_neuropil_check,
        quick={"frames": 300},
        full={"frames": 3000},
        env={"frames": "SIMA_FAST_BENCH_EXTRACT_FRAMES"},
    ),
    BenchCase(
        name="extract-nan",
        work=f"extraction, {N_ROIS} ROIs, float32 with 20 % NaN rows",
        suite="extract",
        setup=_extract_nan_setup,
        implementations=(
            Implementation(
                "nan_free",
                "the same call on the NaN-free movie",
                _kernel_on(False),
                rounds=10,
                warmup=functools.partial(_kernel_on(False), frames=2),
            ),
            Implementation(
                "ours",
                "ours",
                _kernel_on(True),
                rounds=10,
                warmup=functools.partial(_kernel_on(True), frames=2),
            ),
        ),
        check=_extract_nan_check,
        quick={"frames": 300},
        full={"frames": 3000},
        env={"frames": "SIMA_FAST_BENCH_EXTRACT_FRAMES"},
        cli=False,
    ),
    BenchCase(
        name="extract-hdf5",
        work=f"extract_rois, {N_ROIS} ROIs, from HDF5",
        suite="extract",
        setup=functools.partial(_extract_file_setup, fmt="hdf5"),
        implementations=(
            Implementation("raw", "h5py slices", _read_raw, rounds=5, warmup=_read_raw),
            Implementation("ours", "ours", _extract_api, rounds=5, warmup=_extract_api),
        ),
        check=_extract_file_check,
        quick={"frames": 300},
        full={"frames": 3000},
        env={"frames": "SIMA_FAST_BENCH_FRAMES"},
        cli=False,
    ),
    BenchCase(
        name="extract-tiff",
        work=f"extract_rois, {N_ROIS} ROIs, from a memory-mapped TIFF",
        suite="extract",
        setup=functools.partial(_extract_file_setup, fmt="tiff"),
        implementations=(
            Implementation(
                "memory",
                "the same frames in memory",
                _extract_in_memory,
                rounds=5,
                warmup=_extract_in_memory,
            ),
            Implementation("ours", "ours", _extract_api, rounds=5, warmup=_extract_api),
        ),
        check=_extract_file_check,
        quick={"frames": 300},
        full={"frames": 3000},
        env={"frames": "SIMA_FAST_BENCH_FRAMES"},
        cli=False,
    ),
    _online_case("uint16"),
    _online_case("float32"),
    _motion_case(nonrigid=False),
    _motion_case(nonrigid=True),
    BenchCase(
        name="online-register",
        work="OnlineRegistrar.register(): subpixel rigid registration of one frame",
        suite="online",
        setup=_register_setup,
        implementations=(
            Implementation("ours", "ours", _register_ours, rounds=2000),
            Implementation(
                "scipy",
                "scipy.fft phase correlation + ndimage.shift",
                _register_scipy,
                rounds=200,
            ),
        ),
        check=_register_check,
        quick={"frames": 16, "updates": 500},
        full={"frames": 16, "updates": 5000},
        env={"updates": "SIMA_FAST_BENCH_REGISTER_FRAMES"},
        unit="frame",
        cli=False,
    ),
    BenchCase(
        name="dataset-writes",
        work=f"add_ROIs + extract into a dataset directory, {WRITE_ROIS} ROIs (locked)",
        suite="extract",
        setup=_writes_setup,
        implementations=(
            Implementation("ours", "ours", _writes_ours, rounds=10, warmup=_writes_ours),
            Implementation("lock", "the directory lock alone (2 cycles)", _lock_only, rounds=50),
        ),
        check=_writes_check,
        quick={"frames": 200},
        full={"frames": 200},
        cli=False,
    ),
)


def get_case(name: str) -> BenchCase:
    """Return the registered case called ``name``.

    Parameters
    ----------
    name : str
        :attr:`BenchCase.name`.

    Returns
    -------
    BenchCase

    Raises
    ------
    KeyError
        If no case has that name.
    """
    for case in CASES:
        if case.name == name:
            return case
    raise KeyError(f"no benchmark case {name!r}")


def cases_of(suite: str | None = None, cli: bool | None = None) -> Iterator[BenchCase]:
    """Iterate over the registered cases of one suite and/or of ``sima-fast bench``, in order.

    Parameters
    ----------
    suite : str, optional
        Only the cases of ``benchmarks/test_<suite>.py``.
    cli : bool, optional
        Only the cases that ``sima-fast bench`` runs (True) or does not (False).

    Yields
    ------
    BenchCase
        Each matching case, in the order of :data:`CASES`.
    """
    for case in CASES:
        if (suite is None or case.suite == suite) and (cli is None or case.cli == cli):
            yield case

"""The example dataset: simulated on first use, cached, never downloaded.

This module owns the cache layout and the build of the example dataset
returned by :func:`sima_fast.misc.example_data`. Everything lives in one
versioned folder of the cache directory::

    <cache>/example-v2/
        example.sima/      the ImagingDataset (two sequences)
        example.h5         sequence 0: motion-free frames, dataset 'imaging', 'tzyxc'
        example.tif        sequence 1: the frames of a moving microscope (multi-page)
        ground_truth.h5    masks, outlines, spikes, calcium, displacements, ...
        example_rois.zip   the true cell outlines as ImageJ ROIs
        COMPLETE.json      written last; marks the folder as complete

The folder is built under a temporary name beside its final place and
renamed into place at the end, so an interrupted build never leaves a partial
example and concurrent builders are safe (the first rename wins; the others
discard their copy). The folder's name and its ``COMPLETE.json`` carry
:data:`EXAMPLE_VERSION`: when the content changes the version is bumped, so
a cached copy of an older version is never used (a new folder is built
beside it; version 2 added the acquisition metadata, frame rate, planes and
channels, to ``example.h5`` and to the dataset's record of sequence 1).

The uncorrected motion examples (:func:`example_uncorrected`) live in their
own folders, one per kind of motion, versioned separately so that the
example dataset above never changes with them::

    <cache>/example-motion-v1-rigid/       (also -nonrigid, -rowwise)
        movie.h5        dataset 'imaging' ('tzyxc', uint16) as recorded, and
                        group 'motion' holding the true motion
        COMPLETE.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from sima_fast.kernels._jit import cache_directory
from sima_fast.misc.motion_truth import MOTION_KINDS, MotionTruth
from sima_fast.misc.simulate import SimulatedMovie, simulate_movie

__all__ = [
    "CHANNEL_NAMES",
    "EXAMPLE_VERSION",
    "MOTION_EXAMPLE_VERSION",
    "ExampleGroundTruth",
    "UncorrectedExample",
    "cache_directory",
    "example_data",
    "example_ground_truth",
    "example_hdf5",
    "example_imagej_rois",
    "example_tiff",
    "example_uncorrected",
    "read_ground_truth",
    "read_motion_truth",
]

#: Bump when the content of the example changes: a new folder is built.
#: 2: the sequences carry their acquisition metadata (frame rate, planes, channels).
EXAMPLE_VERSION = 2
#: Channel names of the example dataset (activity, structural).
CHANNEL_NAMES = ("GCaMP", "tdTomato")

_FOLDER = f"example-v{EXAMPLE_VERSION}"
_MARKER = "COMPLETE.json"
_DATASET = "example.sima"
_HDF5 = "example.h5"
_TIFF = "example.tif"
_GROUND_TRUTH = "ground_truth.h5"
_ROIS = "example_rois.zip"
_FILES = (_DATASET, _HDF5, _TIFF, _GROUND_TRUTH, _ROIS)
_GROUND_TRUTH_FORMAT = "sima_fast example ground truth"

#: Bump when the uncorrected motion examples change (the example above does not).
MOTION_EXAMPLE_VERSION = 1
_MOTION_MOVIE = "movie.h5"
_MOTION_FORMAT = "sima_fast motion truth"
# A scene a little larger than the example's, so the observed frames are 128 × 128.
_MOTION_SCENE = {
    "num_frames": 120,
    "num_planes": 2,
    "frame_shape": (140, 140),
    "num_channels": 2,
    "cells_per_plane": 43,
    "frame_rate": 15.0,
    "dtype": "uint16",
    "scene_seed": 2024,
}
_MOTION_PARAMS = {
    "rigid": {"seed": 11, "motion_amplitude": 6.0},
    "nonrigid": {"seed": 12, "motion_amplitude": 4.0, "nonrigid_amplitude": 2.0},
    "rowwise": {"seed": 13, "motion_amplitude": 6.0},
}

# The scene shared by both sequences, and each sequence's own activity.
_SCENE = {
    "num_planes": 2,
    "frame_shape": (128, 128),
    "num_channels": 2,
    "cells_per_plane": 36,
    "frame_rate": 15.0,
    "tau": 1.0,
    "spike_rate": 1.0,
    "cell_radius": (4.0, 6.5),
    "dtype": "uint16",
    "scene_seed": 2024,
}
_SEQUENCES = (
    {"num_frames": 200, "seed": 1, "max_displacement": (0, 0)},
    {"num_frames": 200, "seed": 2, "max_displacement": (6, 8)},
)


def example_data() -> str:
    """Return the path of the example dataset, building it on first use.

    The example is a simulated two-photon recording (see
    :func:`sima_fast.misc.simulate_movie`): two planes of 128 × 128 pixels,
    two channels named ``'GCaMP'`` (activity) and ``'tdTomato'`` (a static
    structural label), 36 cells per plane, 15 frames per second, and two
    sequences of 200 frames showing the same cells with different activity:

    - sequence 0 reads ``example.h5`` (HDF5 dataset ``'imaging'``, dimension
      order ``'tzyxc'``, uint16), recorded without motion;
    - sequence 1 reads ``example.tif`` (multi-page uint16 TIFF, page
      ``t·P·C + p·C + c``) recorded by a moving microscope, 122 × 120 pixels,
      wrapped in ``apply_displacements`` with the true displacements, so it is
      motion corrected and has NaN gaps at the edges.

    ``example.h5`` carries the recording's acquisition metadata (15 Hz, two
    planes, two channels and their names) as the JSON attribute
    ``acquisition_metadata`` of its dataset, so
    ``dataset.acquisition_metadata.frame_rate`` is 15.0; the TIFF file is
    a plain page stack, so sequence 1's same metadata is set on the sequence
    and kept in the dataset's ``metadata.json``. The simulation has no
    physical pixel size, so none is given.

    The ground truth is available from :func:`example_ground_truth` and the
    true outlines as ImageJ ROIs from :func:`example_imagej_rois`. Nothing is
    downloaded; the build takes about a second and is cached (see
    :func:`cache_directory`).

    Returns
    -------
    str
        Path of the ``example.sima`` dataset directory.

    Examples
    --------
    >>> from sima_fast import ImagingDataset
    >>> from sima_fast.misc import example_data
    >>> dataset = ImagingDataset.load(example_data())  # doctest: +SKIP
    >>> dataset.frame_shape, dataset.channel_names  # doctest: +SKIP
    ((2, 128, 128, 2), ['GCaMP', 'tdTomato'])
    """
    return os.path.join(_example_folder(), _DATASET)


def example_hdf5() -> str:
    """Return the path of the example's HDF5 file (sequence 0), building it if needed.

    Returns
    -------
    str
        Path of ``example.h5``: dataset ``'imaging'`` of shape
        ``(200, 2, 128, 128, 2)``, uint16, dimension order ``'tzyxc'``.
    """
    return os.path.join(_example_folder(), _HDF5)


def example_tiff() -> str:
    """Return the path of the example's TIFF file (sequence 1), building it if needed.

    Returns
    -------
    str
        Path of ``example.tif``: 800 uint16 pages of 122 × 120 pixels, page
        ``t·P·C + p·C + c`` for frame t, plane p, channel c (P = C = 2), as
        recorded by the moving microscope (before motion correction).
    """
    return os.path.join(_example_folder(), _TIFF)


def example_imagej_rois() -> str:
    """Return the path of an ImageJ ROI zip of the example's true cell outlines.

    One polygon ROI per cell, named ``cell_000.roi``, ``cell_001.roi``, ...
    in the order of the ground truth, with sub-pixel vertex coordinates and
    the ROI position field set to ``plane + 1`` (ImageJ counts slices from
    one). The zip is built with the example (see :func:`example_data`).

    Returns
    -------
    str
        Path of ``example_rois.zip``.

    Examples
    --------
    >>> import roifile
    >>> rois = roifile.roiread(example_imagej_rois())  # doctest: +SKIP
    >>> rois[0].name, rois[0].position  # doctest: +SKIP
    ('cell_000', 1)
    """
    return os.path.join(_example_folder(), _ROIS)


@dataclasses.dataclass(frozen=True, eq=False)
class ExampleGroundTruth:
    """Ground truth of the example dataset (see :func:`example_ground_truth`).

    ``n`` cells; ``T_k`` frames in sequence ``k``; frames ``(Z, Y, X, C)``.

    Attributes
    ----------
    path : str
        The ``ground_truth.h5`` file the values were read from.
    channel_names : list of str
        ``['GCaMP', 'tdTomato']``.
    frame_shape : tuple of int
        ``(Z, Y, X, C)`` of the (motion-corrected) dataset frames.
    frame_rate, tau, gamma, spike_rate : float
        Frames per second, indicator decay (s), AR(1) coefficient per frame,
        firing rate (Hz).
    gain, read_noise : float
        Noise parameters of the simulation.
    cell_names : list of str
        ``'cell_000'``, ``'cell_001'``, ... (the ImageJ ROI names).
    planes : numpy.ndarray of int64, shape (n,)
    polygons : list of numpy.ndarray, each (N_i, 3)
        Open rings of ``(x, y, z)`` vertices.
    masks : numpy.ndarray of bool, shape (n, Z, Y, X)
    amplitudes, resting, structural : numpy.ndarray, shape (n,)
        Activity amplitude per unit calcium, resting brightness (channel 0)
        and structural brightness (channel 1), in counts.
    baseline : numpy.ndarray of float64, shape (Z, Y, X, C)
        Expected image at rest.
    spikes, calcium : list of numpy.ndarray, each (n, T_k)
        Spike counts and AR(1) calcium per sequence.
    displacements : list of numpy.ndarray of int64, each (T_k, 2)
        ``(dy, dx)`` per frame (all zero for sequence 0).
    neuropil : list of numpy.ndarray, each (Z, T_k)
        Relative neuropil fluctuation per plane.
    seeds : list of int
        Activity seed of each sequence (the scene seed is shared).
    """

    path: str
    channel_names: list[str]
    frame_shape: tuple[int, int, int, int]
    frame_rate: float
    tau: float
    gamma: float
    spike_rate: float
    gain: float
    read_noise: float
    cell_names: list[str]
    planes: np.ndarray
    polygons: list[np.ndarray]
    masks: np.ndarray
    amplitudes: np.ndarray
    resting: np.ndarray
    structural: np.ndarray
    baseline: np.ndarray
    spikes: list[np.ndarray]
    calcium: list[np.ndarray]
    displacements: list[np.ndarray]
    neuropil: list[np.ndarray]
    seeds: list[int]

    @property
    def num_sequences(self) -> int:
        """Number of sequences in the example."""
        return len(self.spikes)

    @property
    def num_cells(self) -> int:
        """Number of cells."""
        return int(self.planes.shape[0])


def example_ground_truth() -> ExampleGroundTruth:
    """Return the ground truth of the example dataset, building it if needed.

    Returns
    -------
    ExampleGroundTruth
        Masks, outlines, spikes, calcium, displacements and simulation
        parameters, read from ``ground_truth.h5`` beside the dataset.

    Examples
    --------
    >>> truth = example_ground_truth()  # doctest: +SKIP
    >>> truth.masks.shape, len(truth.spikes)  # doctest: +SKIP
    ((72, 2, 128, 128), 2)
    """
    return read_ground_truth(os.path.join(_example_folder(), _GROUND_TRUTH))


def read_ground_truth(path: str | os.PathLike) -> ExampleGroundTruth:
    """Read a ground-truth file written by the example builder.

    Parameters
    ----------
    path : str or path-like
        A ``ground_truth.h5`` file.

    Returns
    -------
    ExampleGroundTruth
    """
    import h5py

    path = os.fspath(path)
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != _GROUND_TRUTH_FORMAT:
            raise ValueError(f"{path!r} is not a sima_fast example ground-truth file")
        cells = f["cells"]
        vertices = cells["polygon_vertices"][()]
        offsets = cells["polygon_offsets"][()]
        sequences = [f["sequences"][str(k)] for k in range(int(f.attrs["num_sequences"]))]
        return ExampleGroundTruth(
            path=os.path.abspath(path),
            channel_names=[_text(s) for s in f.attrs["channel_names"]],
            frame_shape=tuple(int(s) for s in f.attrs["frame_shape"]),  # type: ignore[arg-type]
            frame_rate=float(f.attrs["frame_rate"]),
            tau=float(f.attrs["tau"]),
            gamma=float(f.attrs["gamma"]),
            spike_rate=float(f.attrs["spike_rate"]),
            gain=float(f.attrs["gain"]),
            read_noise=float(f.attrs["read_noise"]),
            cell_names=[_text(s) for s in cells["names"][()]],
            planes=cells["planes"][()],
            polygons=[vertices[a:b] for a, b in itertools.pairwise(offsets)],
            masks=cells["masks"][()],
            amplitudes=cells["amplitudes"][()],
            resting=cells["resting"][()],
            structural=cells["structural"][()],
            baseline=f["baseline"][()],
            spikes=[g["spikes"][()] for g in sequences],
            calcium=[g["calcium"][()] for g in sequences],
            displacements=[g["displacements"][()] for g in sequences],
            neuropil=[g["neuropil"][()] for g in sequences],
            seeds=[int(g.attrs["seed"]) for g in sequences],
        )


# ---------------------------------------------------------------- the cache


def _example_folder() -> str:
    """Return the complete example folder, building it when missing."""
    return _cached_folder(_FOLDER, EXAMPLE_VERSION, lambda folder: _build_example(folder))


def _cached_folder(name: str, version: int, build: Callable[[str], None]) -> str:
    """Return the complete cache folder ``name``, building it with ``build`` when missing."""
    root = cache_directory()
    final = os.path.join(root, name)
    if _is_complete(final, version):
        return final
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.build-", dir=root)
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the cache is not secret
        build(staging)
        _install(staging, final, version)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _is_complete(folder: str, version: int = EXAMPLE_VERSION) -> bool:
    """Tell whether ``folder`` holds a finished build of this version."""
    try:
        with open(os.path.join(folder, _MARKER), encoding="utf-8") as fh:
            marker = json.load(fh)
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("version") != version:
        return False
    return all(os.path.exists(os.path.join(folder, name)) for name in marker.get("files", ()))


def _install(staging: str, final: str, version: int = EXAMPLE_VERSION) -> None:
    """Rename ``staging`` to ``final`` unless a complete build got there first."""
    name = os.path.basename(final)
    for _ in range(3):
        try:
            os.rename(staging, final)
            return
        except OSError:
            if _is_complete(final, version):
                return  # another process finished first; ours is discarded
        # ``final`` exists but is damaged: move it aside, then retry.
        trash = tempfile.mkdtemp(prefix=f".{name}.old-", dir=os.path.dirname(final))
        with contextlib.suppress(OSError):
            os.rename(final, os.path.join(trash, name))
        shutil.rmtree(trash, ignore_errors=True)
    raise OSError(f"could not install the example dataset at {final!r}")


# ---------------------------------------------------------------- the build


def _simulate_sequences() -> list[SimulatedMovie]:
    return [simulate_movie(**_SCENE, **params) for params in _SEQUENCES]  # type: ignore[arg-type]


def _build_example(folder: str) -> None:
    """Write the complete example (data files, ground truth, ROIs, dataset) into ``folder``."""
    from sima_fast.imaging import ImagingDataset
    from sima_fast.sequence import Sequence

    sims = _simulate_sequences()
    _write_files(folder, sims)
    z, y, x, c = sims[0].frame_shape
    s0 = Sequence.create("HDF5", os.path.join(folder, _HDF5), "tzyxc", key="imaging")
    s1 = Sequence.create(
        "TIFF", os.path.join(folder, _TIFF), num_planes=z, num_channels=c
    ).apply_displacements(sims[1].displacements, frame_shape=(z, y, x))
    # The TIFF file is a plain page stack: its metadata is kept in the dataset's metadata.json.
    s1.acquisition_metadata = _acquisition(sims[1])
    ImagingDataset([s0, s1], os.path.join(folder, _DATASET), channel_names=list(CHANNEL_NAMES))
    marker = {"version": EXAMPLE_VERSION, "files": list(_FILES)}
    with open(os.path.join(folder, _MARKER), "w", encoding="utf-8") as fh:
        json.dump(marker, fh, indent=2)


def _acquisition(sim: SimulatedMovie) -> dict[str, Any]:
    """Return the acquisition metadata of a simulated recording (it has no pixel size)."""
    _, z, _, _, c = sim.movie.shape
    return {
        "frame_rate": float(sim.frame_rate),
        "n_planes": int(z),
        "n_channels": int(c),
        "channel_names": list(CHANNEL_NAMES),
        "source": "sima_fast simulation",
    }


def _write_files(folder: str, sims: list[SimulatedMovie]) -> None:
    """Write the raw data, the ground truth and the ImageJ ROIs (not the dataset)."""
    _write_hdf5(os.path.join(folder, _HDF5), sims[0].movie, _acquisition(sims[0]))
    _write_tiff(os.path.join(folder, _TIFF), sims[1].observed)
    _write_ground_truth(os.path.join(folder, _GROUND_TRUTH), sims)
    _write_imagej_rois(os.path.join(folder, _ROIS), sims[0])


def _write_hdf5(path: str, movie: np.ndarray, acquisition: dict[str, Any] | None = None) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        ds = f.create_dataset("imaging", data=movie)
        for dim, label in zip(ds.dims, "tzyxc", strict=True):
            dim.label = label
        ds.attrs["channel_names"] = list(CHANNEL_NAMES)
        if acquisition is not None:  # read back by sima_fast.sequence.metadata
            ds.attrs["acquisition_metadata"] = json.dumps(acquisition)


def _write_tiff(path: str, observed: np.ndarray) -> None:
    import tifffile

    t, z, y, x, c = observed.shape
    pages = np.ascontiguousarray(observed.transpose(0, 1, 4, 2, 3)).reshape(t * z * c, y, x)
    tifffile.imwrite(path, pages, photometric="minisblack")


def _write_ground_truth(path: str, sims: list[SimulatedMovie]) -> None:
    import h5py

    first = sims[0]
    names = [f"cell_{i:03d}" for i in range(first.num_cells)]
    lengths = [len(p) for p in first.polygons]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    vertices = np.concatenate(first.polygons) if first.polygons else np.zeros((0, 3))
    with h5py.File(path, "w") as f:
        f.attrs["format"] = _GROUND_TRUTH_FORMAT
        f.attrs["version"] = EXAMPLE_VERSION
        f.attrs["channel_names"] = list(CHANNEL_NAMES)
        f.attrs["frame_shape"] = np.array(first.frame_shape, dtype=np.int64)
        f.attrs["num_sequences"] = len(sims)
        f.attrs["frame_rate"] = first.frame_rate
        f.attrs["tau"] = first.tau
        f.attrs["gamma"] = first.gamma
        f.attrs["spike_rate"] = first.spike_rate
        f.attrs["gain"] = first.gain
        f.attrs["read_noise"] = first.read_noise
        f.attrs["scene_seed"] = first.scene_seed
        cells = f.create_group("cells")
        cells["names"] = names
        cells["planes"] = first.planes
        cells.create_dataset("masks", data=first.masks, compression="gzip", shuffle=True)
        cells["polygon_vertices"] = vertices
        cells["polygon_offsets"] = offsets
        cells["amplitudes"] = first.amplitudes
        cells["resting"] = first.resting
        cells["structural"] = first.structural
        f["baseline"] = first.baseline
        group = f.create_group("sequences")
        for k, sim in enumerate(sims):
            g = group.create_group(str(k))
            g.attrs["seed"] = sim.seed
            g.attrs["file"] = _HDF5 if k == 0 else _TIFF
            g.attrs["moving"] = sim.observed is not sim.movie
            g["spikes"] = sim.spikes
            g["calcium"] = sim.calcium
            g["displacements"] = sim.displacements
            g["neuropil"] = sim.neuropil


def _write_imagej_rois(path: str, sim: SimulatedMovie) -> None:
    import roifile

    rois = []
    for i, (poly, plane) in enumerate(zip(sim.polygons, sim.planes, strict=True)):
        roi = roifile.ImagejRoi.frompoints(poly[:, :2], name=f"cell_{i:03d}", position=int(plane))
        roi.roitype = roifile.ROI_TYPE.POLYGON
        rois.append(roi)
    roifile.roiwrite(path, rois, mode="w")


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------- motion examples


@dataclasses.dataclass(frozen=True, eq=False)
class UncorrectedExample:
    """A movie recorded with known motion, not corrected (see :func:`example_uncorrected`).

    Attributes
    ----------
    path : str
        The HDF5 file; the frames are dataset :attr:`key`.
    key : str
        ``'imaging'``.
    dim_order : str
        ``'tzyxc'``.
    channel_names : list of str
        ``['GCaMP', 'tdTomato']``.
    kind : {'rigid', 'nonrigid', 'rowwise'}
        The kind of motion.
    truth : MotionTruth
        The true motion (``truth.displacements`` and, for non-rigid,
        ``truth.field()``), in the sign convention of
        ``Sequence.apply_displacements`` (see
        :mod:`sima_fast.misc.motion_truth`).
    frame_rate : float
        Frames per second.
    """

    path: str
    key: str
    dim_order: str
    channel_names: list[str]
    kind: str
    truth: MotionTruth
    frame_rate: float

    def sequence(self) -> Any:
        """Return the recorded frames as a Sequence (read from :attr:`path`).

        Returns
        -------
        Sequence
            ``Sequence.create('HDF5', path, 'tzyxc', key='imaging')``.
        """
        from sima_fast.sequence import Sequence

        return Sequence.create("HDF5", self.path, self.dim_order, key=self.key)


def example_uncorrected(kind: str = "rigid") -> UncorrectedExample:
    """Return a simulated movie with known motion, before correction; build it on first use.

    The scene is like the example dataset's (:func:`example_data`): two
    planes, channels ``'GCaMP'`` and ``'tdTomato'``, 15 frames per second,
    uint16, here 120 frames of a 140 × 140 scene seen through 128 × 128
    observed frames. The motion (see :func:`sima_fast.misc.simulate_movie`):

    - ``'rigid'``: sub-pixel translation per plane, ±6 px (0 … 12 px);
    - ``'nonrigid'``: translation of ±4 px plus a smooth deformation of up
      to 2 px (field from ``truth.field()``);
    - ``'rowwise'``: whole-pixel motion per scanned row, ±6 px.

    Each kind is built separately into its own cache folder (about a second;
    see the module docstring) and never changes the example dataset.

    Parameters
    ----------
    kind : {'rigid', 'nonrigid', 'rowwise'}
        The kind of motion.

    Returns
    -------
    UncorrectedExample
        The movie's path and its true motion.

    Raises
    ------
    ValueError
        For an unknown ``kind``.

    Examples
    --------
    >>> example = example_uncorrected("rigid")  # doctest: +SKIP
    >>> seq = example.sequence()  # doctest: +SKIP
    >>> seq.shape, example.truth.displacements.shape  # doctest: +SKIP
    ((120, 2, 128, 128, 2), (120, 2, 2))
    """
    if kind not in MOTION_KINDS:
        raise ValueError(f"kind must be one of {MOTION_KINDS}, got {kind!r}")
    name = f"example-motion-v{MOTION_EXAMPLE_VERSION}-{kind}"
    folder = _cached_folder(name, MOTION_EXAMPLE_VERSION, lambda f: _build_motion(f, kind))
    path = os.path.join(folder, _MOTION_MOVIE)
    import h5py

    with h5py.File(path, "r") as f:
        frame_rate = float(f.attrs["frame_rate"])
    return UncorrectedExample(
        path=path,
        key="imaging",
        dim_order="tzyxc",
        channel_names=list(CHANNEL_NAMES),
        kind=kind,
        truth=read_motion_truth(path),
        frame_rate=frame_rate,
    )


def _simulate_motion(kind: str) -> SimulatedMovie:
    return simulate_movie(**_MOTION_SCENE, **_MOTION_PARAMS[kind], motion=kind)  # type: ignore[arg-type]


def _build_motion(folder: str, kind: str) -> None:
    """Write one uncorrected motion example (movie and truth) into ``folder``."""
    import h5py

    sim = _simulate_motion(kind)
    path = os.path.join(folder, _MOTION_MOVIE)
    _write_hdf5(path, sim.observed)
    with h5py.File(path, "a") as f:
        f.attrs["frame_rate"] = sim.frame_rate
        f.attrs["seed"] = sim.seed
        f.attrs["scene_seed"] = sim.scene_seed
        _write_motion_truth(f.create_group("motion"), sim.motion)  # type: ignore[arg-type]
    marker = {"version": MOTION_EXAMPLE_VERSION, "files": [_MOTION_MOVIE]}
    with open(os.path.join(folder, _MARKER), "w", encoding="utf-8") as fh:
        json.dump(marker, fh, indent=2)


def _write_motion_truth(group: Any, truth: MotionTruth) -> None:
    group.attrs["format"] = _MOTION_FORMAT
    group.attrs["kind"] = truth.kind
    group.attrs["scene_shape"] = np.array(truth.scene_shape, dtype=np.int64)
    group.attrs["observed_shape"] = np.array(truth.observed_shape, dtype=np.int64)
    for name in ("displacements", "wavevectors", "phases", "weights"):
        group[name] = getattr(truth, name)


def read_motion_truth(path: str | os.PathLike, group: str = "motion") -> MotionTruth:
    """Read the true motion stored beside an uncorrected example movie.

    Parameters
    ----------
    path : str or path-like
        An HDF5 file written by :func:`example_uncorrected`.
    group : str
        The group holding the truth (default ``'motion'``).

    Returns
    -------
    MotionTruth

    Raises
    ------
    ValueError
        If the file holds no motion truth.
    """
    import h5py

    path = os.fspath(path)
    with h5py.File(path, "r") as f:
        g = f.get(group)
        if g is None or g.attrs.get("format") != _MOTION_FORMAT:
            raise ValueError(f"{path!r} holds no sima_fast motion truth in {group!r}")
        return MotionTruth(
            kind=_text(g.attrs["kind"]),
            scene_shape=tuple(int(v) for v in g.attrs["scene_shape"]),  # type: ignore[arg-type]
            observed_shape=tuple(int(v) for v in g.attrs["observed_shape"]),  # type: ignore[arg-type]
            displacements=g["displacements"][()],
            wavevectors=g["wavevectors"][()],
            phases=g["phases"][()],
            weights=g["weights"][()],
        )

"""Example files in SIMA's layout, simulated on first use and cached (never downloaded).

SIMA's scripts and tests open its example files with fixed shapes
(``Sequence.create('HDF5', example_hdf5(), 'yxt')``,
``Sequence.create('TIFF', example_tiff(), 2, 2)``, a glob of single-page
TIFFs, a 5-D volume). sima_fast's own example (:func:`sima_fast.misc.example_data`)
has another layout, so the files here are built separately, by
:func:`sima_fast.misc.simulate_movie`, with the shapes SIMA's files have::

    <cache>/sima-layout-v1/
        example.tif        20 uint16 pages of 128 × 256 (one plane, one channel)
        example.h5         dataset 'imaging', (128, 256, 20) uint16, order 'yxt'
                           (the same frames as example.tif)
        imagej_rois.zip    two polygon ROIs around cells of that movie
        example-tiffs/     0.tif, 1.tif, 2.tif: one uint16 page of 173 × 173 each
        example-volume.h5  dataset 'imaging', (10, 3, 64, 64, 2) uint8, 'tzyxc'
        example.sima/      a dataset reading example.tif as 10 frames of channels
                           'red' and 'green' (the path relative: '../example.tif')
        COMPLETE.json      written last; marks the folder as complete

Under the ``sima`` alias (:mod:`sima_fast.compat`), ``sima.misc.example_data``,
``example_tiff``, ``example_hdf5`` and ``example_imagej_rois`` are the ``sima_example_*``
functions of this module; :func:`example_tiffs` and :func:`example_volume`
have no other form. The folder is built under a temporary name and renamed
into place, so concurrent builders are safe and an interrupted build leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable

import numpy as np

from sima_fast.kernels._jit import cache_directory
from sima_fast.misc.simulate import simulate_movie

__all__ = [
    "SIMA_EXAMPLE_VERSION",
    "example_tiffs",
    "example_volume",
    "sima_example_data",
    "sima_example_hdf5",
    "sima_example_imagej_rois",
    "sima_example_tiff",
]

#: Bump when the content of these files changes: a new folder is built.
SIMA_EXAMPLE_VERSION = 1

_FOLDER = f"sima-layout-v{SIMA_EXAMPLE_VERSION}"
_MARKER = "COMPLETE.json"
_TIFF = "example.tif"
_HDF5 = "example.h5"
_ROIS = "imagej_rois.zip"
_TIFFS = "example-tiffs"
_VOLUME = "example-volume.h5"
_DATASET = "example.sima"
_FILES = (_TIFF, _HDF5, _ROIS, _TIFFS, _VOLUME, _DATASET)


def sima_example_data() -> str:
    """Return the path of a dataset laid out like SIMA's ``example.sima``.

    Returns
    -------
    str
        A dataset directory whose one sequence reads :func:`sima_example_tiff`
        as 10 frames of one plane and two channels named ``'red'`` and
        ``'green'`` (pages alternate between them). The TIFF is referenced as
        ``../example.tif``, so a copy of the directory placed beside a copy of
        the TIFF opens, as in SIMA's tutorial.

    Examples
    --------
    >>> import sima_fast as sima
    >>> ds = sima.ImagingDataset.load(sima_example_data())  # doctest: +SKIP
    >>> ds.channel_names, ds.frame_shape  # doctest: +SKIP
    (['red', 'green'], (1, 128, 256, 2))
    """
    return os.path.join(_folder(), _DATASET)


def sima_example_tiff() -> str:
    """Return the path of a TIFF shaped like SIMA's ``example.tif``.

    Returns
    -------
    str
        A multi-page TIFF of 20 uint16 pages of 128 × 256 pixels (a simulated
        recording of one plane and one channel; read it as 20 frames, or as 5
        frames of 2 planes and 2 channels with
        ``Sequence.create('TIFF', path, 2, 2)``).

    Examples
    --------
    >>> import sima_fast as sima
    >>> seq = sima.Sequence.create('TIFF', sima_example_tiff())  # doctest: +SKIP
    >>> seq.shape  # doctest: +SKIP
    (20, 1, 128, 256, 1)
    """
    return os.path.join(_folder(), _TIFF)


def sima_example_hdf5() -> str:
    """Return the path of an HDF5 file shaped like SIMA's ``example.h5``.

    Returns
    -------
    str
        An HDF5 file whose dataset ``'imaging'`` holds the frames of
        :func:`sima_example_tiff` as a ``(128, 256, 20)`` uint16 array in
        dimension order ``'yxt'`` (no dimension labels).

    Examples
    --------
    >>> import sima_fast as sima
    >>> seq = sima.Sequence.create('HDF5', sima_example_hdf5(), 'yxt')  # doctest: +SKIP
    >>> seq.shape  # doctest: +SKIP
    (20, 1, 128, 256, 1)
    """
    return os.path.join(_folder(), _HDF5)


def sima_example_imagej_rois() -> str:
    """Return the path of an ImageJ ROI zip for :func:`sima_example_hdf5`'s frames.

    Returns
    -------
    str
        A zip of two polygon ROIs (``cell_000``, ``cell_001``) outlining two
        simulated cells of the 128 × 256 movie, ROI position 1 (plane 0).
    """
    return os.path.join(_folder(), _ROIS)


def example_tiffs() -> str:
    """Return a glob pattern matching three single-page TIFFs, as SIMA's ``example_tiffs``.

    Returns
    -------
    str
        ``'<folder>/*.tif'``: files ``0.tif``, ``1.tif`` and ``2.tif``, each
        one uint16 page of 173 × 173 pixels (three frames of a simulated
        recording). SIMA's ``'TIFFs'`` sequences take a list (planes) of lists
        (channels) of such patterns.

    Examples
    --------
    >>> import glob
    >>> len(glob.glob(example_tiffs()))  # doctest: +SKIP
    3
    """
    return os.path.join(_folder(), _TIFFS, "*.tif")


def example_volume() -> str:
    """Return the path of an HDF5 volume shaped like SIMA's ``example-volume.h5``.

    Returns
    -------
    str
        An HDF5 file whose dataset ``'imaging'`` is ``(10, 3, 64, 64, 2)``
        uint8 in dimension order ``'tzyxc'`` (labelled): 10 frames of 3
        planes and 2 channels of a simulated recording.

    Examples
    --------
    >>> import sima_fast as sima
    >>> seq = sima.Sequence.create('HDF5', example_volume(), 'tzyxc')  # doctest: +SKIP
    >>> seq.shape  # doctest: +SKIP
    (10, 3, 64, 64, 2)
    """
    return os.path.join(_folder(), _VOLUME)


# ---------------------------------------------------------------- the cache


def _folder() -> str:
    """Return the complete folder of SIMA-layout files, building it when missing."""
    return _cached(_FOLDER, _build)


def _is_complete(folder: str) -> bool:
    try:
        with open(os.path.join(folder, _MARKER), encoding="utf-8") as fh:
            marker = json.load(fh)
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("version") != SIMA_EXAMPLE_VERSION:
        return False
    return all(os.path.exists(os.path.join(folder, name)) for name in _FILES)


def _cached(name: str, build: Callable[[str], None]) -> str:
    root = cache_directory()
    final = os.path.join(root, name)
    if _is_complete(final):
        return final
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.build-", dir=root)
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the cache is not secret
        build(staging)
        with open(os.path.join(staging, _MARKER), "w", encoding="utf-8") as fh:
            json.dump({"version": SIMA_EXAMPLE_VERSION, "files": list(_FILES)}, fh, indent=2)
        try:
            os.rename(staging, final)
        except OSError:
            if not _is_complete(final):  # a damaged folder: move it aside and retry once
                trash = tempfile.mkdtemp(prefix=f".{name}.old-", dir=root)
                with contextlib.suppress(OSError):
                    os.rename(final, os.path.join(trash, name))
                shutil.rmtree(trash, ignore_errors=True)
                os.rename(staging, final)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return final


# ---------------------------------------------------------------- the build


def _build(folder: str) -> None:
    import h5py
    import roifile
    import tifffile

    from sima_fast.imaging import ImagingDataset
    from sima_fast.sequence import Sequence

    plane = simulate_movie(
        num_frames=20, frame_shape=(128, 256), num_channels=1, cells_per_plane=24, seed=7
    )
    frames = plane.movie[:, 0, :, :, 0]  # (T, Y, X)
    tifffile.imwrite(os.path.join(folder, _TIFF), frames, photometric="minisblack")
    with h5py.File(os.path.join(folder, _HDF5), "w") as f:
        f.create_dataset("imaging", data=np.ascontiguousarray(frames.transpose(1, 2, 0)))
    rois = []
    for i, poly in enumerate(plane.polygons[:2]):
        # roifile stores ``position + 1``: ImageJ's position 1, plane 0.
        roi = roifile.ImagejRoi.frompoints(poly[:, :2], name=f"cell_{i:03d}", position=0)
        roi.roitype = roifile.ROI_TYPE.POLYGON
        rois.append(roi)
    roifile.roiwrite(os.path.join(folder, _ROIS), rois, mode="w")
    sequence = Sequence.create("TIFF", os.path.join(folder, _TIFF), num_channels=2)
    ImagingDataset([sequence], os.path.join(folder, _DATASET), channel_names=["red", "green"])

    os.mkdir(os.path.join(folder, _TIFFS))
    glob_movie = simulate_movie(
        num_frames=3, frame_shape=(173, 173), num_channels=1, cells_per_plane=20, seed=8
    )
    for t in range(3):
        tifffile.imwrite(
            os.path.join(folder, _TIFFS, f"{t}.tif"),
            glob_movie.movie[t, 0, :, :, 0],
            photometric="minisblack",
        )

    volume = simulate_movie(
        num_frames=10,
        num_planes=3,
        frame_shape=(64, 64),
        num_channels=2,
        cells_per_plane=6,
        dtype="float32",
        seed=9,
    ).movie
    scaled = np.clip(np.rint(volume * (255.0 / max(float(volume.max()), 1.0))), 0, 255)
    with h5py.File(os.path.join(folder, _VOLUME), "w") as f:
        ds = f.create_dataset("imaging", data=scaled.astype(np.uint8))
        for dim, label in zip(ds.dims, "tzyxc", strict=True):
            dim.label = label

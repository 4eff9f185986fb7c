"""suite2p output folders, written and read (format ``'suite2p'``).

suite2p saves one folder per plane, ``suite2p/plane<k>/``, holding numpy
files: ``stat.npy`` (an object array of per-ROI dicts: pixel coordinates,
weights and shape statistics), ``F.npy``, ``Fneu.npy`` and ``spks.npy``
(``(n_rois, n_frames)`` traces), ``iscell.npy`` (``(n_rois, 2)``: label
and probability) and the run's settings and images (``ops.npy`` in suite2p
up to 0.14; ``db.npy`` and ``settings.npy`` from suite2p 1.0 on). The
layout is described in suite2p's documentation ("Outputs") and in
docs/suite2p.md.

* :func:`write_suite2p` writes such a folder from an extraction of a
  dataset (:meth:`sima_fast.imaging.ImagingDataset.export_suite2p`), with
  every ``stat`` field and image computed from sima_fast's own masks,
  traces and frames, so that suite2p's GUI and roiextractors'
  ``Suite2pSegmentationExtractor`` open it.
* :func:`read_suite2p` reads one plane's ROIs (or, with ``plane='all'``,
  every plane's, each on its own plane of ``(nplanes, Ly, Lx)`` frames),
  with their ``lam`` weights kept as weighted masks; it is registered as the
  ROI reader ``'suite2p'``
  (``ROIList.load(folder, fmt='suite2p', plane=0, iscell='cells')``).

``stat.npy``, ``ops.npy`` and ``db.npy`` are pickles inside ``.npy`` files;
they are read only through the restricted, bounded loader
:func:`sima_fast._legacy.load_npy` (plain dicts, lists, numbers, strings
and numpy arrays), never through ``numpy.load(allow_pickle=True)``.
suite2p itself is not needed for either direction.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from sima_fast._atomic import atomic_write, make_staging_dir
from sima_fast._legacy import load_npy
from sima_fast._timestamps import TIMESTAMP_FORMAT
from sima_fast._validate import ArgumentTypeError, check_real
from sima_fast._warnings import warn
from sima_fast.io._registry import roi_readers
from sima_fast.ROI import ROI, ROIList

__all__ = [
    "SUITE2P_DIRNAME",
    "SUITE2P_NEUROPIL_COEFFICIENT",
    "Suite2pFormatError",
    "enhanced_mean_image",
    "local_correlation_image",
    "read_suite2p",
    "same_rois",
    "write_suite2p",
]

SUITE2P_DIRNAME = "suite2p"
"""Name of the folder written inside the export folder, as suite2p names it."""

SUITE2P_NEUROPIL_COEFFICIENT = 0.7
"""suite2p's default neuropil coefficient r in ``F - r * Fneu``."""

_DEFAULT_FS = 10.0  # suite2p's default sampling rate (Hz)
_DEFAULT_TAU = 1.0  # suite2p's default indicator timescale (s)
_MEDIAN_OF_FIRST = 100  # npix_norm divides by the median size of the first 100 ROIs
_GAUSS_THRES = 2.0  # radius: 2 standard deviations of the Gaussian fit
_SHARPEN_SIGMA = 3.0  # meanImgE: high-pass by a Gaussian of 3 pixels
_BLOCK_BYTES = 32 * 2**20  # float64 frames converted at a time for the image pass


class Suite2pFormatError(ValueError):
    """A suite2p file holds the wrong fields, shapes or types; the message names the file."""


# --------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------


def enhanced_mean_image(mean_image: Any, aspect: float = 1.0) -> np.ndarray:
    """suite2p's enhanced mean image (``meanImgE``) of a mean image.

    The mean image minus its Gaussian blur of standard deviation 3 pixels
    (``3 * aspect`` along y), a high-pass filter, then rescaled so that its
    1st percentile becomes 0 and its 99th percentile 1, and clipped to
    ``[0, 1]``: suite2p 1.x's documented definition ("a high-pass filtered
    version of meanImg"). Non-finite pixels count as 0.

    Parameters
    ----------
    mean_image : array_like
        ``(Ly, Lx)`` mean image.
    aspect : float, optional
        Pixel aspect ratio (y over x), as suite2p's ``aspect``. Default: 1.

    Returns
    -------
    numpy.ndarray
        ``(Ly, Lx)`` float32 in ``[0, 1]`` (all zeros for a flat image).

    Raises
    ------
    ValueError
        If ``mean_image`` is not 2-D.

    Examples
    --------
    >>> img = np.zeros((9, 9)); img[4, 4] = 10.0
    >>> e = enhanced_mean_image(img)
    >>> float(e[4, 4]), float(e.min())
    (1.0, 0.0)
    """
    import scipy.ndimage

    img = np.nan_to_num(np.asarray(mean_image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if img.ndim != 2:
        raise ValueError(f"mean_image must be 2-D (Ly, Lx), got shape {img.shape}")
    aspect = check_real("aspect", aspect, low=0.0)
    high = img - scipy.ndimage.gaussian_filter(
        img, sigma=(_SHARPEN_SIGMA * max(aspect, 1e-6), _SHARPEN_SIGMA), mode="reflect"
    )
    lo, hi = np.percentile(high, [1.0, 99.0])
    if not hi > lo:
        return np.zeros(img.shape, np.float32)
    return np.clip((high - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


# the four neighbour offsets (dy, dx) whose pairs, with their mirror images,
# make up the 8-neighbourhood
_OFFSETS = ((0, 1), (1, -1), (1, 0), (1, 1))


def _pair_slices(
    dy: int, dx: int, Y: int, X: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices ``a`` and ``b`` such that pixel ``a[i]`` has neighbour ``b[i]`` at ``(dy, dx)``."""
    ya, yb = slice(0, Y - dy), slice(dy, Y)
    if dx >= 0:
        xa, xb = slice(0, X - dx), slice(dx, X)
    else:
        xa, xb = slice(-dx, X), slice(0, X + dx)
    return (ya, xa), (yb, xb)


class _ImageState:
    """Running sums for ``max_proj`` and the local correlation image of one channel."""

    def __init__(self, mean: np.ndarray) -> None:
        Z, Y, X = mean.shape
        self.mean = np.where(np.isfinite(mean), mean, 0.0)
        self.max = np.full((Z, Y, X), -np.inf)
        self.ss = np.zeros((Z, Y, X))
        self.cross = []
        for dy, dx in _OFFSETS:
            (ya, xa), _ = _pair_slices(dy, dx, Y, X)
            self.cross.append(np.zeros((Z, ya.stop - ya.start, xa.stop - xa.start)))

    def add(self, frames: np.ndarray) -> None:
        """Add ``(n, Z, Y, X)`` frames (any dtype)."""
        x = frames.astype(np.float64)
        finite = np.isfinite(x)
        np.fmax(self.max, np.where(finite, x, -np.inf).max(axis=0), out=self.max)
        x -= self.mean
        x[~finite] = 0.0  # a missing sample sits at the mean: it adds nothing
        self.ss += np.einsum("tzyx,tzyx->zyx", x, x)
        Y, X = x.shape[2:]
        for acc, (dy, dx) in zip(self.cross, _OFFSETS):
            (ya, xa), (yb, xb) = _pair_slices(dy, dx, Y, X)
            acc += np.einsum("tzyx,tzyx->zyx", x[:, :, ya, xa], x[:, :, yb, xb])

    def max_projection(self) -> np.ndarray:
        return np.where(np.isfinite(self.max), self.max, 0.0)

    def correlation(self) -> np.ndarray:
        return _correlation_from_sums(self.ss, self.cross)


def _correlation_from_sums(ss: np.ndarray, cross: list[np.ndarray]) -> np.ndarray:
    """Mean correlation with the existing 8 neighbours from centred sums."""
    Z, Y, X = ss.shape
    total = np.zeros((Z, Y, X))
    count = np.zeros((Y, X))
    norm = np.sqrt(ss)
    for acc, (dy, dx) in zip(cross, _OFFSETS):
        (ya, xa), (yb, xb) = _pair_slices(dy, dx, Y, X)
        den = norm[:, ya, xa] * norm[:, yb, xb]
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(den > 0, acc / np.where(den > 0, den, 1.0), 0.0)
        total[:, ya, xa] += r
        total[:, yb, xb] += r
        count[ya, xa] += 1
        count[yb, xb] += 1
    return total / np.maximum(count, 1)


def local_correlation_image(frames: Any) -> np.ndarray:
    """Mean Pearson correlation of each pixel's time course with its 8 neighbours.

    Each pixel's samples are centred on their mean over its finite values;
    non-finite samples are then counted as that mean (they add nothing to the
    sums). A pixel (or neighbour) that never varies contributes 0. Edge pixels
    average over the neighbours they have. This is the ``Vcorr`` that
    :func:`write_suite2p` stores, where the same sums are accumulated chunk
    by chunk over the whole dataset.

    Parameters
    ----------
    frames : array_like
        ``(T, Y, X)`` or ``(T, Z, Y, X)`` movie.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` float64 in ``[-1, 1]``.

    Raises
    ------
    ValueError
        If ``frames`` is not 3-D or 4-D.

    Examples
    --------
    >>> t = np.arange(6.0)[:, None, None]
    >>> float(local_correlation_image(t * np.ones((6, 3, 3)))[1, 1])
    1.0
    """
    a = np.asarray(frames)
    if a.ndim not in (3, 4):
        raise ValueError(f"frames must be (T, Y, X) or (T, Z, Y, X), got shape {a.shape}")
    planar = a.ndim == 3
    if planar:
        a = a[:, None]
    x = a.astype(np.float64)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(x)
        n = finite.sum(axis=0)
        mean = np.where(n > 0, np.where(finite, x, 0.0).sum(axis=0) / np.maximum(n, 1), 0.0)
    state = _ImageState(mean)
    state.add(x)
    out = state.correlation()
    return out[0] if planar else out


def _dataset_images(dataset: Any, channel: int) -> dict[str, np.ndarray]:
    """``meanImg``, ``max_proj`` and ``Vcorr`` of every plane, ``(Z, Y, X)``, in one pass."""
    mean = np.asarray(dataset.time_averages[..., channel], dtype=np.float64)
    state = _ImageState(mean)
    # about 32 MiB of float64 per block: memory follows the frame, not the movie
    frames = max(1, _BLOCK_BYTES // (8 * mean.size))
    for seq in dataset.sequences:
        for _, chunk in seq.iter_chunks(chunk_frames=frames, reuse_buffer=True):
            state.add(chunk[..., channel])
    return {
        "meanImg": np.where(np.isfinite(mean), mean, 0.0),
        "max_proj": state.max_projection(),
        "Vcorr": state.correlation(),
    }


# --------------------------------------------------------------------------
# stat fields
# --------------------------------------------------------------------------


def _median_pixel(ypix: np.ndarray, xpix: np.ndarray) -> list[int]:
    """Return the ROI pixel nearest the per-axis median of its coordinates (first on ties)."""
    ym, xm = np.median(ypix), np.median(xpix)
    i = int(np.argmin((ypix - ym) ** 2 + (xpix - xm) ** 2))
    return [int(ypix[i]), int(xpix[i])]


def _soma_crop(ypix: np.ndarray, xpix: np.ndarray, lam: np.ndarray, med: list[int]) -> np.ndarray:
    """Return which pixels lie inside the soma, from the radial profile of the weights.

    suite2p's documented rule: the weight inside radius r, A(r), is taken at
    r = 0, 1, 2, ... pixels; the soma ends at the first radius after the
    steepest rise where the rise per pixel drops below a third of its
    maximum (radii measured from ``med``). ROIs of 10 pixels or fewer are
    kept whole, and so is an ROI the rule would empty.

    Returns
    -------
    numpy.ndarray
        One bool per pixel.
    """
    keep = np.ones(ypix.size, bool)
    if ypix.size <= 10:
        return keep
    dist = np.hypot(ypix - med[0], xpix - med[1])
    radii = np.arange(0.0, dist.max(), 1.0)
    if radii.size < 2:
        return keep
    # A(r) = sum of lam over pixels strictly closer than r
    order = np.argsort(dist, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(lam[order])])
    area = cum[np.searchsorted(dist[order], radii, side="left")]
    rise = np.diff(area)
    threshold = rise.max() / 3.0
    cut = radii[-1]
    above = np.flatnonzero(rise > threshold)
    if above.size:
        below = np.flatnonzero(rise[above[0] :] < threshold)
        if below.size:
            cut = radii[below[0] + above[0]]
    keep = dist < cut
    if not keep.any():
        keep[:] = True
    return keep


def _disk_distances(n_max: int, d0: np.ndarray) -> np.ndarray:
    """Sorted distances (in diameters) of grid points from a centre, at least ``n_max`` of them."""
    half_y = int(max(3 * d0[0], np.sqrt(n_max / np.pi) * max(1.0, d0[0] / d0[1]) + 2))
    half_x = int(max(3 * d0[1], np.sqrt(n_max / np.pi) * max(1.0, d0[1] / d0[0]) + 2))
    gy, gx = np.meshgrid(
        np.arange(-half_y, half_y + 1) / d0[0],
        np.arange(-half_x, half_x + 1) / d0[1],
        indexing="ij",
    )
    return np.sort(np.hypot(gy, gx).ravel())


def _gaussian_radii(ypix: np.ndarray, xpix: np.ndarray, lam: np.ndarray, d0: np.ndarray):
    """Return the axis radii (2 SD, in diameters) of the lam-weighted Gaussian, descending."""
    w = np.where(lam > 0, lam, 0.0)
    if not w.sum() > 0:
        w = np.ones_like(lam)
    w = w / w.sum()
    yx = np.stack([ypix / d0[0], xpix / d0[1]])
    mu = yx @ w
    c = (yx - mu[:, None]) * np.sqrt(w)
    eig = np.linalg.eigvalsh(c @ c.T)
    return np.sort(_GAUSS_THRES * np.sqrt(np.maximum(eig, 0.0)))[::-1]


def _solidity(ypix: np.ndarray, xpix: np.ndarray) -> float:
    """Pixels over the area of the convex hull of the pixels' squares (1 for a convex ROI)."""
    from scipy.spatial import ConvexHull, QhullError

    corners = np.concatenate(
        [np.stack([ypix + dy, xpix + dx], 1) for dy in (-0.5, 0.5) for dx in (-0.5, 0.5)]
    ).astype(np.float64)
    try:
        area = ConvexHull(np.unique(corners, axis=0)).volume
    except QhullError:  # pragma: no cover - squares always span an area
        return 1.0
    return float(ypix.size / area)


def _shape_stats(stats: list[dict], diameter: np.ndarray, Ly: int, Lx: int) -> None:
    """Add suite2p's shape statistics to each ``stat`` dict of one plane (in place)."""
    if not stats:
        return
    d0 = np.asarray(diameter, dtype=np.float64)
    disk = _disk_distances(max(s["npix"] for s in stats), d0)
    count = np.zeros((Ly, Lx), np.int64)
    for s in stats:
        np.add.at(count, (s["ypix"], s["xpix"]), 1)
    for s in stats:
        ypix, xpix, lam = s["ypix"], s["xpix"], s["lam"].astype(np.float64)
        s["med"] = _median_pixel(ypix, xpix)
        crop = _soma_crop(ypix, xpix, lam, s["med"])
        s["soma_crop"] = crop
        s["npix_soma"] = int(crop.sum())
        cy, cx, cl = ypix[crop], xpix[crop], lam[crop]
        dist = np.hypot((cy - np.median(cy)) / d0[0], (cx - np.median(cx)) / d0[1])
        s["mrs"] = float(dist.mean())
        s["mrs0"] = float(disk[: cy.size].mean())
        s["compact"] = float(max(1.0, s["mrs"] / (1e-10 + s["mrs0"])))
        r = _gaussian_radii(cy, cx, cl, d0)
        s["radius"] = float(r[0] * d0.mean())
        s["aspect_ratio"] = float(2 * r[0] / (0.01 + r[0] + r[1]))
        s["solidity"] = _solidity(ypix, xpix)
        s["footprint"] = 0
        s["overlap"] = count[ypix, xpix] > 1
    soma = np.array([s["npix_soma"] for s in stats], dtype=np.float64)
    npix = np.array([s["npix"] for s in stats], dtype=np.float64)
    norm_soma = np.median(soma[:_MEDIAN_OF_FIRST]) + 1e-10
    norm_npix = np.median(npix[:_MEDIAN_OF_FIRST]) + 1e-10
    for s, a, b in zip(stats, soma, npix):
        s["npix_norm"] = float(a / norm_soma)
        s["npix_norm_no_crop"] = float(b / norm_npix)


def _activity_stats(dF: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``snr``, ``skew`` and ``std`` of each row over its finite samples (0 where undefined)."""
    n = dF.shape[0]
    snr, skew, std = np.zeros(n), np.zeros(n), np.zeros(n)
    for i, row in enumerate(np.asarray(dF, dtype=np.float64)):
        ok = np.isfinite(row)
        x = row[ok]
        if x.size < 2:
            continue
        c = x - x.mean()
        m2 = float(np.mean(c * c))
        std[i] = np.sqrt(m2)
        if m2 > 0:
            skew[i] = float(np.mean(c**3) / m2**1.5)
            pairs = ok[1:] & ok[:-1]
            steps = np.diff(row)[pairs]
            if steps.size > 1:
                snr[i] = 1.0 - 0.5 * float(np.var(steps)) / m2
    return snr, skew, std


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------


def _roi_pixels(roi_dict: Any, im_shape: tuple[int, int, int], index: int):
    """Return the plane, pixels and weights of one ROI of an extraction record.

    Boolean masks get the weights extraction gives them, ``1 / n_pixels``;
    weighted masks keep their values.

    Returns
    -------
    tuple
        ``(plane, ypix, xpix, lam)``: int, int32 arrays and a float32 array.
    """
    roi = roi_dict.copy() if isinstance(roi_dict, ROI) else ROI(**roi_dict)
    roi.im_shape = im_shape
    name = f"ROI {index}" + (f" (label {roi.label!r})" if roi.label is not None else "")
    planes = [z for z, m in enumerate(roi.mask) if m.count_nonzero()]
    if not planes:
        raise ValueError(f"{name} has no pixel: suite2p cannot represent an empty ROI")
    if len(planes) > 1:
        raise ValueError(
            f"{name} spans planes {planes}; a suite2p ROI lies on one plane: split it into "
            "one ROI per plane and extract again"
        )
    m = roi.mask[planes[0]].tocoo()
    keep = m.data != 0
    ypix, xpix, data = m.row[keep], m.col[keep], m.data[keep]
    order = np.lexsort((xpix, ypix))
    ypix, xpix, data = ypix[order], xpix[order], data[order]
    if data.dtype == bool:
        lam = np.full(ypix.size, 1.0 / ypix.size)
    else:
        lam = data.astype(np.float64)
    return planes[0], ypix.astype(np.int32), xpix.astype(np.int32), lam.astype(np.float32)


def _concat(record: dict, key: str, n_rois: int, lengths: list[int]) -> np.ndarray | None:
    """One ``(n_rois, T)`` float32 array from a record's per-sequence list, or None."""
    value = record.get(key)
    if value is None:
        return None
    parts = [np.asarray(v, dtype=np.float32).reshape(n_rois, -1) for v in value]
    if [p.shape[1] for p in parts] != lengths:
        raise ValueError(
            f"the signals record's {key!r} has {[p.shape[1] for p in parts]} frames per "
            f"sequence, its 'raw' {lengths}"
        )
    return np.concatenate(parts, axis=1) if parts else np.zeros((n_rois, 0), np.float32)


def _tau(record: dict, fs: float) -> float:
    """Return the decay time (s) from infer_spikes' decay factors, else suite2p's default."""
    params = record.get("spikes_params")
    gammas = []
    for p in params or []:
        if isinstance(p, dict) and "gamma" in p:
            g = np.asarray(p["gamma"], dtype=np.float64).ravel()
            gammas.append(g[np.isfinite(g) & (g > 0) & (g < 1)])
    g = np.concatenate(gammas) if gammas else np.zeros(0)
    if not g.size:
        return _DEFAULT_TAU
    return float(-1.0 / (fs * np.log(np.median(g))))


def _save_npy(directory: str, name: str, value: Any) -> None:
    """``np.save`` one file atomically (object arrays are pickled, as suite2p writes them)."""
    with atomic_write(os.path.join(directory, name)) as tmp, open(tmp, "wb") as fh:
        np.save(fh, value, allow_pickle=True)


def _object_array(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def same_rois(record_rois: Sequence[Any], rois: Sequence[ROI], im_shape: Sequence[int]) -> bool:
    """Whether an extraction record's ROIs are ``rois``: same count, same masks at ``im_shape``.

    Parameters
    ----------
    record_rois : sequence of dict or ROI
        The ``rois`` of a signals record (``ROI.todict()`` layout).
    rois : sequence of ROI
        An ROI set, e.g. ``dataset.ROIs[label]``.
    im_shape : tuple of int
        ``(Z, Y, X)`` at which to compare the masks.

    Returns
    -------
    bool
    """
    if len(record_rois) != len(rois):
        return False
    shape = tuple(int(v) for v in im_shape)
    for a, b in zip(record_rois, rois):
        ra = ROI(**a) if isinstance(a, dict) else a.copy()
        rb = b.copy()
        ra.im_shape = shape
        rb.im_shape = shape
        for ma, mb in zip(ra.mask, rb.mask):
            if ma.shape != mb.shape or (ma.astype(np.float64) != mb.astype(np.float64)).nnz:
                return False
    return True


def write_suite2p(
    dataset: Any,
    folder: str | os.PathLike,
    record: dict,
    *,
    channel: int,
    signals_label: str,
    overwrite: bool = False,
    fs: float | None = None,
) -> str:
    """Write ``folder/suite2p/plane<k>/`` for every plane from one extraction record.

    The folder is staged beside its final place and renamed into place when
    complete; an existing ``folder/suite2p`` is replaced only with
    ``overwrite``. Called by
    :meth:`sima_fast.imaging.ImagingDataset.export_suite2p`, which validates
    the arguments and picks the record; docs/suite2p.md lists what each file
    holds.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset extracted (its frames give the images).
    folder : str or path-like
        The directory ``suite2p/`` is created in; it is created too (with
        its parents) when missing, once the export is known to be valid.
    record : dict
        The signals record (``raw``, ``rois``, optionally ``neuropil``,
        ``corrected``, ``spikes``, ``spikes_params``).
    channel : int
        The channel index the record was extracted from.
    signals_label : str
        The record's label, noted in ``ops.npy``.
    overwrite : bool, optional
        Replace an existing ``folder/suite2p``. Default: False.
    fs : float, optional
        Frames per second. Default: the dataset's acquisition metadata's
        frame rate when known, else suite2p's default of 10 with a warning.

    Returns
    -------
    str
        The path of the ``suite2p`` folder written.

    Raises
    ------
    NotADirectoryError
        If ``folder`` exists and is not a directory.
    OSError
        If ``folder`` (created when missing, with its parents) cannot be
        created.
    FileExistsError
        If ``folder/suite2p`` exists and ``overwrite`` is False.
    ValueError
        If an ROI is empty or spans several planes (suite2p ROIs lie on one
        plane), the record's traces do not match its ROIs, or ``fs`` is not
        positive.
    ArgumentTypeError
        If ``fs`` is not a real number.
    """
    if fs is not None:
        fs = check_real("fs", fs, low=0.0)
        if not fs > 0:
            raise ValueError(f"fs must be positive, got {fs}")
    folder = os.path.abspath(os.fspath(folder))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"folder: {folder!r} exists and is not a directory")
    final = os.path.join(folder, SUITE2P_DIRNAME)
    if os.path.lexists(final) and not overwrite:
        raise FileExistsError(
            f"folder: {final!r} already exists; pass overwrite=True to replace it"
        )
    if fs is None:
        meta = getattr(dataset, "acquisition_metadata", None)
        rate = getattr(meta, "frame_rate", None)
        if rate is not None and np.isfinite(rate) and rate > 0:
            fs = float(rate)
        else:
            fs = _DEFAULT_FS
            warn(
                f"the frame rate is unknown: ops['fs'] is suite2p's default of {_DEFAULT_FS} Hz; "
                "pass fs= to export_suite2p to set it"
            )

    Z, Y, X = dataset.frame_shape[:3]
    rois = list(record["rois"])
    raw_parts = [np.asarray(r) for r in record["raw"]]
    n_rois = len(rois)
    lengths = [int(r.shape[1]) if r.ndim == 2 else 0 for r in raw_parts]
    F = _concat(record, "raw", n_rois, lengths)
    nframes = int(sum(lengths))
    pixels = [_roi_pixels(d, (Z, Y, X), i) for i, d in enumerate(rois)]

    notes = {
        "written_by": "sima_fast export_suite2p",
        "signals_label": signals_label,
        "channel": int(channel),
        "F": "sima_fast's 'raw' signals: sum over pixels of w * frame / time average",
    }
    coefficient = SUITE2P_NEUROPIL_COEFFICIENT
    Fneu = _concat(record, "neuropil", n_rois, lengths)
    if Fneu is None:
        Fneu = np.zeros_like(F)
        notes["Fneu"] = "zeros: the extraction estimated no neuropil"
        dF = F
    else:
        notes["Fneu"] = "sima_fast's 'neuropil' signals"
        params = record.get("neuropil_params")
        if isinstance(params, dict) and "coefficient" in params:
            per_roi = np.asarray(params["coefficient"], dtype=np.float64).ravel()
            notes["neuropil_coefficient"] = per_roi
            if per_roi.size and np.isfinite(per_roi).any():
                coefficient = float(np.nanmedian(per_roi))
        corrected = _concat(record, "corrected", n_rois, lengths)
        dF = corrected if corrected is not None else F - coefficient * Fneu
    spks = _concat(record, "spikes", n_rois, lengths)
    if spks is None:
        spks = np.zeros_like(F)
        notes["spks"] = "zeros: infer_spikes was not run on this extraction"
    else:
        notes["spks"] = "infer_spikes' spikes, each ROI's row divided by its maximum"
    snr, skew, std = _activity_stats(dF)
    tau = _tau(record, fs)
    sizes = [p[1].size for p in pixels]
    d = float(np.median(2 * np.sqrt(np.asarray(sizes) / np.pi))) if sizes else 12.0
    diameter = [max(d, 1.0), max(d, 1.0)]

    images = _dataset_images(dataset, channel)
    # created only now, when everything is known to be writable: a refused export leaves
    # no new folder behind
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OSError(f"folder: cannot create {folder!r} ({exc})") from exc
    staging = make_staging_dir(final)
    try:
        for z in range(Z):
            rows = [i for i, p in enumerate(pixels) if p[0] == z]
            stats = []
            for i in rows:
                _, ypix, xpix, lam = pixels[i]
                stats.append(
                    {"ypix": ypix, "xpix": xpix, "lam": lam, "npix": int(ypix.size), "iplane": z}
                )
            _shape_stats(stats, diameter, Y, X)
            for s, i in zip(stats, rows):
                s["snr"], s["skew"], s["std"] = float(snr[i]), float(skew[i]), float(std[i])
            plane_dir = os.path.join(staging, f"plane{z}")
            os.mkdir(plane_dir)
            mean = images["meanImg"][z].astype(np.float32)
            db = {
                "Ly": int(Y),
                "Lx": int(X),
                "nframes": nframes,
                "frames_per_file": np.asarray(lengths, dtype=np.int64),
                "nplanes": int(Z),
                "iplane": int(z),
                "nchannels": 1,
                "functional_chan": 1,
                "meanImg": mean,
                "meanImgE": enhanced_mean_image(mean),
                "refImg": mean.copy(),
                "max_proj": images["max_proj"][z].astype(np.float32),
                "Vcorr": images["Vcorr"][z].astype(np.float32),
                "xrange": np.array([0, X], dtype=np.int64),
                "yrange": np.array([0, Y], dtype=np.int64),
                "save_path": os.path.join(final, f"plane{z}"),
                "save_path0": folder,
                "sima_fast": dict(notes),
            }
            settings = {
                "fs": float(fs),
                "tau": float(tau),
                "diameter": list(diameter),
                "aspect": 1.0,
                "neuropil_coefficient": coefficient,
            }
            ops = {**db, **settings}
            idx = np.asarray(rows, dtype=np.intp)
            _save_npy(plane_dir, "stat.npy", _object_array(stats))
            _save_npy(plane_dir, "F.npy", F[idx])
            _save_npy(plane_dir, "Fneu.npy", Fneu[idx])
            _save_npy(plane_dir, "spks.npy", spks[idx])
            _save_npy(plane_dir, "iscell.npy", np.ones((len(rows), 2), dtype=np.float32))
            _save_npy(plane_dir, "ops.npy", np.array(ops, dtype=object))
            _save_npy(plane_dir, "db.npy", np.array(db, dtype=object))
            _save_npy(plane_dir, "settings.npy", np.array(settings, dtype=object))
        _publish_directory(staging, final, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _publish_directory(staging: str, final: str, overwrite: bool) -> None:
    """Rename the complete ``staging`` directory to ``final`` (replacing it when allowed)."""
    old = None
    if os.path.lexists(final):
        if not overwrite:
            raise FileExistsError(
                f"folder: {final!r} already exists; pass overwrite=True to replace it"
            )
        old = staging + ".old"
        os.rename(final, old)
    try:
        os.rename(staging, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    if old is not None:
        if os.path.isdir(old) and not os.path.islink(old):
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(old)
    with contextlib.suppress(OSError):
        fd = os.open(os.path.dirname(final), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------


def _plane_folder(path: str, plane: int | None) -> tuple[str, int]:
    """Find the plane folder meant by ``path`` (a plane folder, ``suite2p/`` or its parent)."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise NotADirectoryError(f"{path!r} is not a suite2p folder (not a directory)")
    base = os.path.basename(path)
    if base.startswith("plane") and base[5:].isdigit():
        own = int(base[5:])
        if plane is not None and plane != own:
            raise ValueError(f"plane={plane} but {path!r} is the folder of plane {own}")
        return path, own
    if os.path.exists(os.path.join(path, "stat.npy")):
        return path, 0 if plane is None else plane
    k = 0 if plane is None else plane
    for candidate in (
        os.path.join(path, f"plane{k}"),
        os.path.join(path, SUITE2P_DIRNAME, f"plane{k}"),
    ):
        if os.path.isdir(candidate):
            return candidate, k
    raise FileNotFoundError(
        f"{path!r} holds no suite2p plane {k}: looked for stat.npy in it, for plane{k}/ "
        f"and for {SUITE2P_DIRNAME}/plane{k}/"
    )


def _require(folder: str, name: str, why: str) -> str:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing ({why})")
    return path


def _read_ops_size(folder: str) -> tuple[int, int, int | None, str]:
    """``(Ly, Lx, nplanes or None, file read)`` from ``ops.npy``, else ``db.npy``."""
    for name in ("ops.npy", "db.npy"):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        arr = load_npy(path)
        if arr.shape != () or not isinstance(arr.item(), dict):
            raise Suite2pFormatError(
                f"{path}: expected a dict saved by numpy (a 0-d object array)"
            )
        ops = arr.item()
        size = []
        for key in ("Ly", "Lx"):
            v = ops.get(key)
            if isinstance(v, np.ndarray) and v.shape == ():
                v = v.item()
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
                raise Suite2pFormatError(f"{path}: {key!r} must be a positive integer, got {v!r}")
            size.append(int(v))
        nplanes = ops.get("nplanes")
        if isinstance(nplanes, np.ndarray) and nplanes.shape == ():
            nplanes = nplanes.item()
        if not isinstance(nplanes, (int, np.integer)) or isinstance(nplanes, bool) or nplanes < 1:
            nplanes = None
        return size[0], size[1], None if nplanes is None else int(nplanes), path
    raise FileNotFoundError(
        f"{os.path.join(folder, 'ops.npy')}: missing (and no db.npy either); one of them gives "
        "the frame size Ly, Lx"
    )


def _read_frame_size(folder: str) -> tuple[int, int, int]:
    """``(Ly, Lx, nplanes)`` from ``ops.npy``, else ``db.npy`` (nplanes 1 when not given)."""
    Ly, Lx, nplanes, _ = _read_ops_size(folder)
    return Ly, Lx, 1 if nplanes is None else nplanes


def _check_stat(path: str, stat: Any, Ly: int, Lx: int) -> list[tuple]:
    """Validate ``stat.npy``'s entries; return ``(ypix, xpix, lam)`` per ROI."""
    if not isinstance(stat, np.ndarray) or stat.ndim != 1:
        raise Suite2pFormatError(
            f"{path}: expected a 1-D array of per-ROI dicts, got "
            f"{getattr(stat, 'shape', type(stat).__name__)}"
        )
    out = []
    for i, s in enumerate(stat):
        if not isinstance(s, dict):
            raise Suite2pFormatError(f"{path}: ROI {i} is a {type(s).__name__}, not a dict")
        missing = [k for k in ("ypix", "xpix", "lam") if k not in s]
        if missing:
            raise Suite2pFormatError(f"{path}: ROI {i} has no field(s) {missing}")
        arrays = {}
        for key in ("ypix", "xpix", "lam"):
            a = np.asarray(s[key])
            if a.dtype == object or a.dtype.kind not in ("i", "u", "f", "b") or a.ndim > 1:
                raise Suite2pFormatError(
                    f"{path}: ROI {i}'s {key!r} must be a 1-D numeric array, got "
                    f"{a.dtype} of shape {a.shape}"
                )
            arrays[key] = a.ravel()
        ypix, xpix, lam = arrays["ypix"], arrays["xpix"], arrays["lam"]
        if not (ypix.size == xpix.size == lam.size):
            raise Suite2pFormatError(
                f"{path}: ROI {i} has {ypix.size} ypix, {xpix.size} xpix and {lam.size} lam values"
            )
        for key, a, n in (("ypix", ypix, Ly), ("xpix", xpix, Lx)):
            if a.dtype.kind == "f":
                if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
                    raise Suite2pFormatError(f"{path}: ROI {i}'s {key!r} holds non-integer values")
            if a.dtype.kind == "b":
                raise Suite2pFormatError(f"{path}: ROI {i}'s {key!r} is boolean, not coordinates")
            if a.size and (a.min() < 0 or a.max() >= n):
                raise Suite2pFormatError(
                    f"{path}: ROI {i}'s {key!r} spans [{a.min()}, {a.max()}], outside the "
                    f"frame's 0..{n - 1}"
                )
        if not np.all(np.isfinite(lam.astype(np.float64))):
            raise Suite2pFormatError(f"{path}: ROI {i}'s 'lam' holds NaN or infinite weights")
        yi, xi = ypix.astype(np.int64), xpix.astype(np.int64)
        if np.unique(yi * Lx + xi).size != yi.size:
            raise Suite2pFormatError(f"{path}: ROI {i} lists a pixel more than once")
        out.append((yi, xi, lam.astype(np.float64)))
    return out


def _iscell_choice(iscell: Any) -> tuple[str, float | None]:
    if isinstance(iscell, str):
        if iscell not in ("cells", "all"):
            raise ValueError(f"iscell must be 'cells', 'all' or a probability, got {iscell!r}")
        return iscell, None
    if isinstance(iscell, (bool, np.bool_)) or not isinstance(iscell, (int, float, np.number)):
        raise ArgumentTypeError(
            f"iscell must be 'cells', 'all' or a probability in [0, 1], got {iscell!r}"
        )
    return "threshold", check_real("iscell", iscell, low=0.0, high=1.0)


_PLANE_ACCEPTED = "a plane index (an integer >= 0), None or 'all'"
_PLANE_DIR = re.compile(r"plane(0|[1-9][0-9]*)")


def _plane_choice(plane: Any) -> int | str | None:
    """Validate ``plane``: None, a non-negative integer, or ``'all'``."""
    if plane is None or (isinstance(plane, str) and plane == "all"):
        return plane
    if isinstance(plane, (bool, np.bool_)) or not isinstance(plane, (int, np.integer)):
        raise ArgumentTypeError(f"plane must be {_PLANE_ACCEPTED}, got {plane!r}")
    if plane < 0:
        raise ValueError(f"plane must be {_PLANE_ACCEPTED}, got {plane!r}")
    return int(plane)


def _kept_rois(folder: str, mode: str, threshold: float | None):
    """Read one plane folder: ``(stat path, Ly, Lx, nplanes, [(index, ypix, xpix, lam)])``."""
    stat_path = _require(folder, "stat.npy", "suite2p's per-ROI pixels and weights")
    Ly, Lx, nplanes = _read_frame_size(folder)
    stat = load_npy(stat_path)
    pixels = _check_stat(stat_path, stat, Ly, Lx)
    n = len(pixels)
    if mode == "all":
        keep = np.ones(n, bool)
    else:
        iscell_path = _require(
            folder, "iscell.npy", "the cell labels; pass iscell='all' to read every ROI"
        )
        labels = load_npy(iscell_path)
        if labels.dtype.kind not in ("i", "u", "f", "b") or labels.ndim not in (1, 2):
            raise Suite2pFormatError(
                f"{iscell_path}: expected a numeric (n_rois, 2) array, got {labels.dtype} of "
                f"shape {labels.shape}"
            )
        if labels.shape[0] != n or (labels.ndim == 2 and labels.shape[1] < 1):
            raise Suite2pFormatError(
                f"{iscell_path}: shape {labels.shape} does not match the {n} ROIs of stat.npy"
            )
        table = (labels if labels.ndim == 2 else labels[:, None]).astype(np.float64)
        if mode == "cells":
            keep = table[:, 0] > 0.5
        else:
            if table.shape[1] < 2:
                raise Suite2pFormatError(
                    f"{iscell_path}: has no probability column; use iscell='cells' or 'all'"
                )
            keep = table[:, 1] >= threshold
    return stat_path, Ly, Lx, nplanes, [(int(i), *pixels[i]) for i in np.flatnonzero(keep)]


def _plane_roi(k: int, shape: tuple[int, int, int], pixels: tuple, name: str) -> ROI:
    """Make a weighted-mask ROI holding ``lam`` at ``(ypix, xpix)`` on plane ``k``."""
    import scipy.sparse

    Z, Ly, Lx = shape
    _, ypix, xpix, lam = pixels
    planes = [scipy.sparse.csr_matrix((Ly, Lx), dtype=np.float64) for _ in range(Z)]
    planes[k] = scipy.sparse.csr_matrix((lam, (ypix, xpix)), shape=(Ly, Lx))
    return ROI(mask=planes, label=name, id=name, tags={"suite2p"}, im_shape=shape)


def _timestamp(paths: Sequence[str]) -> str:
    """Format the newest modification time of ``paths`` as ROIList timestamps are."""
    newest = max(os.path.getmtime(p) for p in paths)
    return time.strftime(TIMESTAMP_FORMAT, time.localtime(newest))


def _suite2p_root(path: str) -> str:
    """Find the folder holding the ``plane<k>`` folders: ``path`` or ``path/suite2p``."""
    if any(_PLANE_DIR.fullmatch(n) for n in os.listdir(path)):
        return path
    inner = os.path.join(path, SUITE2P_DIRNAME)
    if os.path.isdir(inner) and any(_PLANE_DIR.fullmatch(n) for n in os.listdir(inner)):
        return inner
    raise FileNotFoundError(
        f"{path!r} holds no suite2p plane folders: looked for plane<k>/ in it and in "
        f"{SUITE2P_DIRNAME}/"
    )


def _read_all_planes(root: str, mode: str, threshold: float | None) -> ROIList:
    """Every ``plane<k>`` folder of ``root``, as one ROIList on ``(nplanes, Ly, Lx)`` frames."""
    found = {}
    for name in os.listdir(root):
        m = _PLANE_DIR.fullmatch(name)
        if m and os.path.isdir(os.path.join(root, name)):
            found[int(m.group(1))] = os.path.join(root, name)
    first = min(found)
    Ly, Lx, nplanes, ref = _read_ops_size(found[first])
    if nplanes is None:  # no plane count in ops/db: the folders found are the planes
        nplanes = max(found) + 1
        said = f"the plane folders found (up to plane{max(found)})"
    else:
        said = f"{ref} (nplanes={nplanes})"
    for k in range(nplanes):
        if k not in found:
            raise FileNotFoundError(
                f"{os.path.join(root, f'plane{k}')}: missing; {said} says the run has "
                f"{nplanes} plane(s)"
            )
    extra = sorted(k for k in found if k >= nplanes)
    if extra:
        raise Suite2pFormatError(
            f"{found[extra[0]]}: a plane folder beyond the {nplanes} plane(s) {said} gives"
        )
    shape = (nplanes, Ly, Lx)
    rois, stats = [], []
    for k in range(nplanes):
        ly, lx, n_k, own = _read_ops_size(found[k])
        if (ly, lx) != (Ly, Lx):
            raise Suite2pFormatError(
                f"{own}: frame size (Ly, Lx) = ({ly}, {lx}) differs from ({Ly}, {Lx}) in {ref}; "
                "the planes of one run share a frame size"
            )
        if n_k is not None and n_k != nplanes:
            raise Suite2pFormatError(f"{own}: nplanes={n_k} differs from {nplanes} ({said})")
        stat_path, _, _, _, kept = _kept_rois(found[k], mode, threshold)
        stats.append(stat_path)
        rois.extend(_plane_roi(k, shape, p, f"{k}/{p[0]}") for p in kept)
    out = ROIList(rois)
    out.timestamp = _timestamp(stats)
    return out


def read_suite2p(
    path: str | os.PathLike,
    label: str | None = None,
    *,
    plane: int | str | None = None,
    iscell: str | float = "cells",
    im_shape: Sequence[int] | None = None,
) -> ROIList:
    """Read one plane's ROIs, or every plane's, from a suite2p folder, weights (``lam``) kept.

    Registered as the ROI reader ``'suite2p'``:
    ``ROIList.load(path, fmt='suite2p', plane=0, iscell='cells')``.

    Parameters
    ----------
    path : str or path-like
        A plane folder (``.../suite2p/plane0``), a ``suite2p`` folder, or the
        folder containing ``suite2p/``.
    label : str, optional
        Ignored: a plane folder holds one ROI set.
    plane : int or 'all', optional
        Which ``plane<k>`` folder to read when ``path`` is not a plane folder
        itself. Default: 0 (or the plane ``path`` names). ``'all'`` reads
        every ``plane<k>`` folder, ``k = 0 .. nplanes - 1`` with ``nplanes``
        from ``ops.npy`` (or ``db.npy``; when neither gives it, the plane
        folders present); ``path`` must then be a ``suite2p`` folder or the
        folder containing it. A folder that holds ``stat.npy`` itself and is
        not a plane folder (suite2p's ``combined/`` mosaic) is read as with
        ``plane=None``: its ROIs on plane 0.
    iscell : {'cells', 'all'} or float, optional
        Which ROIs to keep: ``'cells'`` those suite2p (or its user) labelled
        cells (``iscell.npy``'s first column), ``'all'`` every ROI, a number
        ``p`` in ``[0, 1]`` those whose cell probability (second column) is at
        least ``p``. Default: ``'cells'``. With ``plane='all'`` it applies to
        each plane's ``iscell.npy``.
    im_shape : tuple of int, optional
        Accepted for :meth:`ROIList.load`; the frame size always comes from
        ``ops.npy`` (or ``db.npy``).

    Returns
    -------
    ROIList
        One weighted-mask ROI per kept suite2p ROI, in file order, with
        ``label`` and ``id`` its index in ``stat.npy`` (as a string), the tag
        ``'suite2p'``, and ``im_shape`` ``(nplanes, Ly, Lx)``; the mask lies
        on plane ``plane``. With ``plane='all'``, the planes in order, each
        ROI on its own plane, with ``label`` and ``id`` ``'<k>/<i>'`` (plane
        ``k``, index ``i`` in that plane's ``stat.npy``). The list's
        timestamp is the (newest) ``stat.npy``'s modification time.

    Raises
    ------
    FileNotFoundError
        If the plane folder (with ``plane='all'``: any of the ``nplanes``
        that ``ops.npy`` gives), ``stat.npy``, ``ops.npy`` (and ``db.npy``)
        or, unless ``iscell='all'``, ``iscell.npy`` is missing; the message
        names the file.
    Suite2pFormatError
        If ``stat.npy``, ``ops.npy`` or ``iscell.npy`` holds the wrong fields,
        shapes or types (a :class:`ValueError`; the message names the file
        and the ROI); with ``plane='all'``, if the planes' frame sizes or
        plane counts disagree (naming both files) or a ``plane<k>`` folder
        lies beyond ``nplanes``.
    sima_fast._legacy.UnsafePickleError
        If ``stat.npy`` or ``ops.npy`` names anything outside the restricted
        loader's allow-list.
    ArgumentTypeError
        If ``plane`` is not an integer, None or ``'all'``, or ``iscell`` has
        the wrong type.
    ValueError
        If ``plane`` is negative, ``plane='all'`` is given with a plane
        folder as ``path``, or ``iscell`` is an unknown string or a number
        outside ``[0, 1]``.
    """
    del label, im_shape
    plane = _plane_choice(plane)
    mode, threshold = _iscell_choice(iscell)
    if plane == "all":
        where = os.path.abspath(os.fspath(path))
        if not os.path.isdir(where):
            raise NotADirectoryError(f"{where!r} is not a suite2p folder (not a directory)")
        base = os.path.basename(where)
        if base.startswith("plane") and base[5:].isdigit():  # as _plane_folder tells
            raise ValueError(
                f"plane='all' reads every plane of a suite2p folder, but {where!r} is the "
                f"folder of plane {int(base[5:])}: pass the suite2p folder (its parent), or "
                f"plane={int(base[5:])}"
            )
        if not os.path.exists(os.path.join(where, "stat.npy")):
            return _read_all_planes(_suite2p_root(where), mode, threshold)
        plane = None  # a folder holding stat.npy itself (suite2p's combined/): as today
    folder, k = _plane_folder(os.fspath(path), plane)
    stat_path, Ly, Lx, nplanes, kept = _kept_rois(folder, mode, threshold)
    shape = (max(nplanes, k + 1), Ly, Lx)
    out = ROIList([_plane_roi(k, shape, p, str(p[0])) for p in kept])
    out.timestamp = _timestamp([stat_path])
    return out


roi_readers.register("suite2p", read_suite2p)

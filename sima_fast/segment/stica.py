"""Spatio-temporal ICA segmentation (:class:`STICA`) and the streamed PCA it rests on.

This module owns three things:

- :class:`STICA`, SIMA's spatio-temporal independent component analysis
  strategy (Mukamel, Nimmerjahn & Schnitzer 2009);
- the plane-by-plane strategy base shared with
  :mod:`sima_fast.segment.normcut` (each plane of a volume is segmented on
  its own and the ROIs are placed back on their plane);
- :func:`plane_pca`, a randomised, streamed principal component analysis of
  one plane of a dataset, whose memory does not grow with the number of
  frames. The normalised-cut strategies use it too.

How the PCA sees the movie
--------------------------
For one plane and channel, pixel ``p`` at frame ``t`` becomes

``z[p, t] = (F[p, t] - mean[p]) / noise[p]``

with ``mean`` the dataset's time average and ``noise`` the pixel's white-noise
level, ``sqrt(mean((F[t] - F[t-1])**2) / 2)`` over consecutive finite values
of each sequence. Missing (NaN) values count as the mean. The plane's mean
trace ``g[t]`` (the average of the centred frame; shared neuropil and
illumination fluctuations) is then projected out of every pixel by least
squares, ``z'[p] = z[p] - beta[p] * g``. The noise normalisation puts every
pixel's noise at unit variance, so the singular values of pure noise stay
below the Marchenko–Pastur edge ``sqrt(pixels) + sqrt(frames)`` and the
components above it carry signal.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import math
import sys
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg
import scipy.sparse

from sima_fast._threads import blas_threads
from sima_fast._validate import (
    check_bool,
    check_channel,
    check_int,
    check_real,
    resolve_channel,
)
from sima_fast.ROI import ROI, ROIList
from sima_fast.segment._rois import dataset_im_shape
from sima_fast.segment.base import SegmentationStrategy
from sima_fast.segment.postprocess import (
    MergeOverlapping,
    SmoothROIBoundaries,
    SparseROIsFromMasks,
)

if TYPE_CHECKING:
    from sima_fast.imaging import ImagingDataset

__all__ = [
    "STICA",
    "Blob",
    "PlanePCA",
    "distinct_blobs",
    "plane_pca",
    "significant_blobs",
]

#: Bytes of one float32 working chunk of a plane (frames × pixels).
CHUNK_BYTES = 128 * 2**20
#: Planes to segment are read into memory at once when they take at most this many bytes.
IN_MEMORY_BYTES = 256 * 2**20
#: Extra random directions of the sketch beyond the requested components.
OVERSAMPLING = 15
#: Products of a chunk of frames with the sketch below this many multiply-adds run on one
#: BLAS thread (a multi-threaded BLAS spends more synchronising than computing on them:
#: 15 sequences of 10 frames of 120 × 120 took 4.2 CPU s on 2 threads, 0.3 s on one).
SMALL_PRODUCT = 2**28
#: Power (subspace) iterations of the randomised PCA.
POWER_ITERATIONS = 1
#: Singular values must exceed the noise edge by this factor to count as signal.
EDGE_MARGIN = 1.02
#: Most spatial rows FastICA is fitted on (the highest-energy pixels).
ICA_FIT_ROWS = 40_000
#: FastICA iteration limit and tolerance.
ICA_MAX_ITER = 400
ICA_TOL = 1e-4
#: A component map needs a pixel this many robust noise deviations above its median.
SIGNIFICANCE = 5.0
#: Fewest differences of consecutive frames (per plane) STICA segments from. Each pixel's
#: noise level is estimated from them, and the noise edge rests on those levels: movies of
#: pure noise normalised from 11, 19, 29 and 49 differences put their largest singular
#: value at 1.12, 1.05, 1.02 and 1.01 times the edge, so below about 30 noise alone passes
#: the edge (by ``EDGE_MARGIN``) and its components would be taken for cells.
MIN_DIFFERENCES = 30


# --------------------------------------------------------------------------
# The plane-by-plane base
# --------------------------------------------------------------------------


def plane_masks_to_rois(masks: list[np.ndarray], plane: int, im_shape: tuple[int, int, int]):
    """Return ROIs on ``plane`` of an ``im_shape`` volume, one per 2-D (boolean or weighted) mask.

    Parameters
    ----------
    masks : list of numpy.ndarray or scipy.sparse matrix
        ``(Y, X)`` masks; each keeps its dtype and values.
    plane : int
        The plane they were found on, in ``range(Z)``.
    im_shape : tuple of int
        ``(Z, Y, X)`` of the volume.

    Returns
    -------
    list of ROI
        Mask ROIs with ``im_shape`` set, empty on every other plane.
    """
    n_planes, rows, cols = im_shape
    out = []
    for mask in masks:
        dtype = mask.dtype
        planes = [scipy.sparse.csr_matrix((rows, cols), dtype=dtype) for _ in range(n_planes)]
        planes[plane] = scipy.sparse.csr_matrix(mask)
        out.append(ROI(mask=planes, im_shape=im_shape))
    return out


def planes_in_memory(dataset: ImagingDataset, planes: np.ndarray) -> ImagingDataset | None:
    """Read some planes of a dataset into memory at once, if they fit in ``IN_MEMORY_BYTES``.

    The strategies read each plane's frames several times (a PCA makes three
    passes); reading the planes once, all together, saves the repeated reads
    and decoding (and, for motion-corrected views, the repeated placing of
    displaced rows).

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset.
    planes : numpy.ndarray of int
        The planes wanted, in the order wanted.

    Returns
    -------
    ImagingDataset or None
        A dataset of in-memory sequences (one per sequence of ``dataset``, in
        its dtype) holding the planes in the order given, with the same
        channel names; None when they would take more than
        ``IN_MEMORY_BYTES``.
    """
    from sima_fast.imaging import ImagingDataset
    from sima_fast.sequence import Sequence

    _, rows, cols, n_channels = (int(v) for v in dataset.frame_shape)
    planes = np.asarray(planes, dtype=np.int64)
    itemsize = max(np.dtype(seq.dtype).itemsize for seq in dataset.sequences)
    size = int(dataset.num_frames) * planes.size * rows * cols * n_channels * itemsize
    if size > IN_MEMORY_BYTES:
        return None
    contiguous = planes.size == 1 or bool(np.all(np.diff(planes) == 1))
    select = slice(int(planes[0]), int(planes[-1]) + 1) if contiguous else planes
    sequences = []
    for seq in dataset.sequences:
        data = np.empty((len(seq), planes.size, rows, cols, n_channels), dtype=seq.dtype)
        for start, block in seq.iter_chunks(prefetch=True):
            data[start : start + block.shape[0]] = block[:, select]
        sequences.append(Sequence.create("ndarray", data))
    return ImagingDataset(sequences, None, channel_names=list(dataset.channel_names))


class PlaneByPlaneStrategy(SegmentationStrategy):
    """Base of the strategies that segment each plane of a volume on its own.

    Subclasses set ``self.channel`` and implement :meth:`_segment_plane`,
    which returns 2-D masks for one plane; they are turned into ROIs on that
    plane of the dataset's volume. ``segment(dataset, planes=...)`` segments
    only the selected planes, one after the other.
    """

    channel: int | str = 0
    verbose: bool = False

    def _segment(self, dataset: ImagingDataset) -> ROIList:
        return self._segment_planes(dataset, np.arange(dataset.frame_shape[0]))

    def _segment_planes(self, dataset: ImagingDataset, planes: np.ndarray) -> ROIList:
        im_shape = dataset_im_shape(dataset)
        assert im_shape is not None
        channel = resolve_channel(self.channel, dataset.channel_names)
        source = planes_in_memory(dataset, planes)
        out = ROIList()
        for k, p in enumerate(planes):
            self._say(f"segmenting plane {int(p)}")
            if source is None:
                masks = self._segment_plane(dataset, int(p), channel)
            else:
                masks = self._segment_plane(source, k, channel)
            out.extend(plane_masks_to_rois(masks, int(p), im_shape))
        return out

    @abc.abstractmethod
    def _segment_plane(self, dataset: ImagingDataset, plane: int, channel: int) -> list:
        """Masks, each a ``(Y, X)`` array (boolean or weighted), found on one plane.

        Parameters
        ----------
        dataset : ImagingDataset
            The whole dataset.
        plane : int
            The plane to segment.
        channel : int
            The resolved channel index.
        """

    def _say(self, message: str) -> None:
        if self.verbose:
            print(f"{type(self).__name__}: {message}", file=sys.stderr)


def no_signal_note(plane: int, dataset: ImagingDataset) -> str:
    """Reason given when a plane's movie has no principal component above the noise level.

    Parameters
    ----------
    plane : int
        The plane.
    dataset : ImagingDataset
        The dataset (its number of frames is quoted).

    Returns
    -------
    str
    """
    return (
        f"plane {plane}: no principal component of the movie rose above the noise level "
        f"(the noise edge of {int(dataset.num_frames)} frames), so no pixel's activity can be "
        "told from noise: the recording is too short or its activity too weak"
    )


# --------------------------------------------------------------------------
# Streamed, randomised PCA of one plane
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PlanePCA:
    """Principal components of one plane of a dataset (see :func:`plane_pca`).

    ``P = Y * X`` pixels, ``T`` frames, ``l`` computed components.

    Attributes
    ----------
    shape : tuple of int
        ``(Y, X)`` of the plane.
    spatial : numpy.ndarray of float64, shape (P, l)
        Orthonormal spatial components (left singular vectors); rows of
        unusable pixels are 0.
    values : numpy.ndarray of float64, shape (l,)
        Singular values, in decreasing order.
    temporal : numpy.ndarray of float64, shape (T, l)
        Orthonormal temporal components (right singular vectors).
    energy : numpy.ndarray of float64, shape (P,)
        ``sum_t z'[p, t]**2``: each pixel's total energy in the normalised
        movie the components decompose.
    usable : numpy.ndarray of bool, shape (P,)
        Pixels with a finite mean and a non-zero noise level.
    noise_edge : float
        ``sqrt(usable pixels) + sqrt(T)``, the largest singular value
        expected from noise alone.
    """

    shape: tuple[int, int]
    spatial: np.ndarray
    values: np.ndarray
    temporal: np.ndarray
    energy: np.ndarray
    usable: np.ndarray
    noise_edge: float

    @property
    def num_signal(self) -> int:
        """Number of components whose singular value clears the noise edge."""
        return int(np.count_nonzero(self.values > EDGE_MARGIN * self.noise_edge))


def _orthonormal(a: np.ndarray, rounds: int = 2) -> np.ndarray:
    """Return an orthonormal basis of the columns of ``a``, by Cholesky QR.

    Each round (one ``l × l`` Gram matrix and one product with the inverse
    Cholesky factor, both large matrix products) leaves an orthonormality
    error of about ``cond(a)**2 * 1e-16``; two rounds give an orthonormal
    basis to machine precision, one is enough for the bases of
    the power iterations. Falls back to Householder QR when the columns are
    too close to dependent.

    Returns
    -------
    numpy.ndarray
        ``(n, l)``, spanning the columns of the ``(n, l)`` input.
    """
    q = a
    try:
        for _ in range(rounds):
            upper = np.linalg.cholesky(q.T @ q).T
            q = q @ scipy.linalg.solve_triangular(upper, np.eye(upper.shape[0]))
    except np.linalg.LinAlgError:
        with blas_threads():
            return np.linalg.qr(a)[0]
    return np.ascontiguousarray(q)


def _plane_blocks(
    dataset: ImagingDataset, plane: int, channel: int, chunk: int
) -> Iterator[tuple[bool, np.ndarray]]:
    """``(starts_a_sequence, block)`` over the dataset's frames; block is ``(n, Y, X)``."""
    for seq in dataset.sequences:
        first = True
        for _, block in seq.iter_chunks(chunk, reuse_buffer=True, prefetch=True):
            yield first, block[:, plane, :, :, channel]
            first = False


def plane_pca(
    dataset: ImagingDataset,
    plane: int,
    channel: int,
    num_components: int,
    *,
    seed: int = 0,
) -> PlanePCA:
    """Principal components of one plane of a dataset, streamed over time chunks.

    The movie is normalised as described in the module notes (centred,
    divided by each pixel's noise level, the plane's mean trace projected
    out) and decomposed by a randomised singular value decomposition
    (Halko, Martinsson & Tropp 2011) with one power iteration: the data are
    read in chunks of frames, four times in all (the dataset's time average,
    the sketch, the power iteration and the projection), and only
    ``O(pixels × components)`` numbers are kept, whatever the number of
    frames.

    Parameters
    ----------
    dataset : ImagingDataset
        The data.
    plane : int
        Plane index.
    channel : int
        Channel index.
    num_components : int
        Number of components wanted (at least 1). A few more are computed
        (``OVERSAMPLING``), as far as the frames and pixels allow.
    seed : int, optional
        Seed of the random sketch; the result is deterministic for a seed.

    Returns
    -------
    PlanePCA

    Examples
    --------
    >>> import sima_fast as sima
    >>> rng = np.random.default_rng(0)
    >>> movie = rng.normal(100.0, 5.0, size=(200, 1, 16, 16, 1))
    >>> movie[:, 0, 4:8, 4:8, 0] += 20 * np.sin(np.arange(200) / 10)[:, None, None]
    >>> ds = sima.ImagingDataset([sima.Sequence.create('ndarray', movie)], None)
    >>> pca = plane_pca(ds, 0, 0, 5)
    >>> pca.num_signal, pca.spatial.shape
    (1, (256, 20))
    """
    rows, cols = (int(v) for v in dataset.frame_shape[1:3])
    n_pixels = rows * cols
    n_frames = int(dataset.num_frames)
    rank = max(1, min(int(num_components) + OVERSAMPLING, n_frames, n_pixels))
    chunk = int(max(1, min(n_frames, CHUNK_BYTES // (4 * n_pixels))))
    block = int(np.median([min(len(seq), chunk) for seq in dataset.sequences]))
    # Many small products (short sequences, small planes) run far faster on one BLAS thread.
    small = block * n_pixels * rank < SMALL_PRODUCT
    with blas_threads() if small else contextlib.nullcontext():
        return _plane_pca(dataset, plane, channel, num_components, seed)


def _plane_pca(
    dataset: ImagingDataset, plane: int, channel: int, num_components: int, seed: int
) -> PlanePCA:
    from sima_fast.kernels.segment import center_frames

    rows, cols = (int(s) for s in dataset.frame_shape[1:3])
    n_pixels = rows * cols
    n_frames = int(dataset.num_frames)
    mean = np.ascontiguousarray(dataset.time_averages[plane, :, :, channel], dtype=np.float64)
    rank = max(1, min(int(num_components) + OVERSAMPLING, n_frames, n_pixels))
    chunk = int(max(1, min(n_frames, CHUNK_BYTES // (4 * n_pixels))))
    omega = np.random.default_rng(seed).standard_normal((n_frames, rank)).astype(np.float32)

    z = np.empty((chunk, n_pixels), dtype=np.float32)
    frame_sums = np.empty((rows, chunk))
    prev = np.full((rows, cols), np.nan)
    sum_sq = np.zeros((rows, cols))
    sum_dsq = np.zeros((rows, cols))
    n_dsq = np.zeros((rows, cols), dtype=np.int64)
    ones = np.ones((rows, cols))
    finite_mean = np.isfinite(mean).ravel()
    n_finite = max(int(finite_mean.sum()), 1)

    # Pass 1: sketch of the centred data (unscaled), noise levels, the mean trace.
    trace = np.zeros(n_frames)
    sketch = np.zeros((n_pixels, rank + 1))  # last column: sum_t z[p, t] * g[t]
    t = 0
    for first, block in _plane_blocks(dataset, plane, channel, chunk):
        n = block.shape[0]
        if first:
            prev.fill(np.nan)
        center_frames(block, mean, ones, z, frame_sums, prev, True, sum_sq, sum_dsq, n_dsq)
        trace[t : t + n] = frame_sums[:, :n].sum(axis=0) / n_finite
        right = np.empty((n, rank + 1), dtype=np.float32)
        right[:, :rank] = omega[t : t + n]
        right[:, rank] = trace[t : t + n]
        sketch += z[:n].T @ right
        t += n

    with np.errstate(divide="ignore", invalid="ignore"):
        noise_var = sum_dsq / (2.0 * n_dsq)
    usable_2d = np.isfinite(mean) & (n_dsq > 0) & (noise_var > 0)
    inv_noise = np.zeros((rows, cols))
    inv_noise[usable_2d] = 1.0 / np.sqrt(noise_var[usable_2d])
    inv = inv_noise.ravel()
    usable = usable_2d.ravel()

    sketch *= inv[:, None]
    trace_sq = float(trace @ trace)
    beta = sketch[:, rank] / trace_sq if trace_sq > 0 else np.zeros(n_pixels)
    energy = np.maximum(sum_sq.ravel() * inv**2 - beta**2 * trace_sq, 0.0)
    sketch = sketch[:, :rank] - np.outer(beta, trace @ omega.astype(np.float64))

    def project(basis: np.ndarray, accumulate: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """``W = Z'^T basis`` and, when asked, ``Z' W`` (one more pass over the data)."""
        basis32 = basis.astype(np.float32)
        shift = (beta @ basis).astype(np.float32)
        w = np.empty((n_frames, basis.shape[1]))
        grown = np.zeros((n_pixels, basis.shape[1])) if accumulate else None
        pos = 0
        for _, blk in _plane_blocks(dataset, plane, channel, chunk):
            m = blk.shape[0]
            center_frames(blk, mean, inv_noise, z, frame_sums, prev, False, sum_sq, sum_dsq, n_dsq)
            wc = z[:m] @ basis32
            wc -= trace[pos : pos + m, None].astype(np.float32) * shift[None, :]
            w[pos : pos + m] = wc
            if grown is not None:
                grown += z[:m].T @ wc
            pos += m
        if grown is not None:
            grown -= np.outer(beta, trace @ w)
        return w, grown

    basis = _orthonormal(sketch, rounds=1 if POWER_ITERATIONS else 2)
    for i in range(POWER_ITERATIONS):
        _, grown = project(basis, True)
        assert grown is not None
        basis = _orthonormal(grown, rounds=2 if i == POWER_ITERATIONS - 1 else 1)
    w, _ = project(basis, False)
    with blas_threads():
        left, values, right_t = np.linalg.svd(w.T, full_matrices=False)
    spatial = basis @ left
    spatial[~usable] = 0.0
    n_usable = int(usable.sum())
    edge = math.sqrt(n_usable) + math.sqrt(n_frames) if n_usable else 0.0
    return PlanePCA(
        shape=(rows, cols),
        spatial=spatial,
        values=values,
        temporal=right_t.T.copy(),
        energy=np.where(usable, energy, 0.0),
        usable=usable,
        noise_edge=edge,
    )


# --------------------------------------------------------------------------
# STICA
# --------------------------------------------------------------------------


def _standardise(a: np.ndarray) -> np.ndarray:
    """Columns of ``a`` centred and scaled to unit standard deviation (constant columns: 0)."""
    centred = a - a.mean(axis=0)
    std = centred.std(axis=0)
    std[std == 0] = 1.0
    return centred / std


def _check_components(components: object) -> int | list[int]:
    """``components`` as STICA takes it: a positive int, or a list of distinct indices."""
    if isinstance(components, (list, tuple, np.ndarray)):
        values = [check_int("components[i]", c, low=0, integral_float=True) for c in components]
        if not values:
            raise ValueError(
                "components must be a positive integer or a non-empty list of indices"
            )
        if len(set(values)) != len(values):
            raise ValueError(f"components must not repeat an index, got {values}")
        return sorted(values)
    return check_int("components", components, low=1, integral_float=True)


def _skewness(values: np.ndarray) -> float:
    centred = values - values.mean()
    var = float(np.mean(centred**2))
    return float(np.mean(centred**3)) / var**1.5 if var > 0 else 0.0


#: Blobs extend over the connected pixels at least this many (smoothed) noise deviations high.
BLOB_FLOOR = 2.0
#: Blobs whose cores overlap by more than this fraction of the smaller core are one cell.
BLOB_OVERLAP = 0.5


@dataclasses.dataclass(frozen=True)
class Blob:
    """One significant spot of an independent component's spatial map.

    The arrays cover only the spot's bounding box, ``window``.

    Attributes
    ----------
    window : tuple of slice
        ``(rows, columns)`` of the map the spot's arrays cover.
    image : numpy.ndarray of float64
        The map over the spot, oriented positive and scaled to a maximum of
        1; 0 elsewhere in the window.
    core : numpy.ndarray of bool
        The spot's pixels at least half its (smoothed) peak.
    score : float
        The smoothed peak, in robust noise deviations of the smoothed map.
    component : int
        Index of the independent component it came from.
    """

    window: tuple[slice, slice]
    image: np.ndarray
    core: np.ndarray
    score: float
    component: int

    def full(self, shape: tuple[int, int]) -> np.ndarray:
        """Return the image on the whole map, of ``shape``, 0 outside the window.

        Parameters
        ----------
        shape : tuple of int
            ``(Y, X)`` of the map.

        Returns
        -------
        numpy.ndarray of float64
        """
        out = np.zeros(shape)
        out[self.window] = self.image
        return out


def _distinct_peaks(s: np.ndarray, window: tuple[slice, slice]) -> list[tuple[int, int]]:
    """Local maxima of ``s`` in ``window`` at least ``SIGNIFICANCE`` high that stand apart.

    A maximum of height ``h`` is a spot of its own when the connected
    region of ``s >= h / 2`` around it holds no higher maximum: a dip to
    below half its height separates it from every stronger spot (the rule
    by which a map thresholded at half a spot's peak would show it as a
    separate piece). ``window`` holds one connected region of pixels above
    ``BLOB_FLOOR``, so every half-height region of its maxima lies inside it.

    Returns
    -------
    list of tuple of int
        Row and column (in the window) of each distinct maximum, highest first.
    """
    import scipy.ndimage as ndi

    local = s[window]
    candidates = (local >= SIGNIFICANCE) & (local == ndi.maximum_filter(local, size=3))
    rr, cc = np.nonzero(candidates)
    order = np.argsort(-local[rr, cc], kind="stable")
    taken = np.zeros(local.shape, dtype=bool)
    peaks = []
    for r, c in zip(rr[order].tolist(), cc[order].tolist()):
        if taken[r, c]:
            continue
        labels, _ = ndi.label(local >= 0.5 * local[r, c], structure=np.ones((3, 3)))
        region = labels == labels[r, c]
        separate = not np.any(region & taken)  # a higher maximum marked it first
        taken |= region
        if separate:
            peaks.append((r, c))
    return peaks


def significant_blobs(z: np.ndarray, component: int = 0) -> list[Blob]:
    """Split a component map into its significant spots, of either sign.

    A spatial component computed from fewer components than there are cells
    holds many cells at once, each weighted by how its activity projects on
    the component's time course, a weight of either sign. Every spot that
    stands out of the map's noise is a candidate cell, however weak it is
    next to the map's strongest spot; thresholding the whole map at a
    fraction of its maximum would keep only the strongest few.

    The map (in robust noise deviations) is smoothed with a Gaussian of 1
    pixel and rescaled by the smoothed map's robust deviation. For each
    sign and each connected region of pixels above ``BLOB_FLOOR``, the
    distinct local maxima at least ``SIGNIFICANCE`` high (those that a dip
    below half their height separates from every higher one) seed a
    watershed (:func:`skimage.segmentation.watershed`) of the region; each
    basin is one spot.

    Parameters
    ----------
    z : numpy.ndarray, shape (Y, X)
        The map, centred on its median and divided by its robust standard
        deviation.
    component : int, optional
        Recorded in each blob.

    Returns
    -------
    list of Blob
        The spots of both signs, in no particular order.
    """
    import scipy.ndimage as ndi
    from skimage.segmentation import watershed

    smooth = ndi.gaussian_filter(z, 1.0)
    smooth = smooth - np.median(smooth)
    spread = 1.4826 * float(np.median(np.abs(smooth)))
    if spread <= 0:
        return []
    smooth /= spread
    out = []
    for sign in (1.0, -1.0):
        s = sign * smooth
        if float(s.max()) < SIGNIFICANCE:
            continue
        regions, _ = ndi.label(s > BLOB_FLOOR, structure=np.ones((3, 3)))
        for index, window in enumerate(ndi.find_objects(regions), start=1):
            if window is None or float(s[window].max()) < SIGNIFICANCE:
                continue
            inside = regions[window] == index
            local = np.where(inside, s[window], BLOB_FLOOR)
            peaks = _distinct_peaks(local, (slice(None), slice(None)))
            markers = np.zeros(local.shape, dtype=np.int32)
            for k, (r, c) in enumerate(peaks, start=1):
                markers[r, c] = k
            basins = watershed(-local, markers, mask=inside)
            signed = sign * z[window]
            for k, (r, c) in enumerate(peaks, start=1):
                own = basins == k
                rows = np.flatnonzero(own.any(axis=1))
                cols = np.flatnonzero(own.any(axis=0))
                box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
                values = np.where(own[box], np.maximum(signed[box], 0.0), 0.0)
                peak = float(values.max())
                if peak <= 0:
                    continue
                score = float(local[r, c])
                core = own[box] & (local[box] >= 0.5 * score)
                out.append(
                    Blob(
                        window=(
                            slice(window[0].start + box[0].start, window[0].start + box[0].stop),
                            slice(window[1].start + box[1].start, window[1].start + box[1].stop),
                        ),
                        image=values / peak,
                        core=core,
                        score=score,
                        component=component,
                    )
                )
    return out


def distinct_blobs(blobs: list[Blob]) -> list[Blob]:
    """Keep one blob per cell: the strongest of those whose cores overlap.

    Parameters
    ----------
    blobs : list of Blob
        Spots from any number of component maps.

    Returns
    -------
    list of Blob
        Strongest first; a blob is dropped when its core overlaps a kept
        blob's core by more than ``BLOB_OVERLAP`` of the smaller core.
    """
    kept: list[Blob] = []
    boxes = np.empty((0, 4), dtype=np.int64)  # y0, y1, x0, x1 of the kept blobs
    sizes: list[int] = []
    for blob in sorted(blobs, key=lambda b: -b.score):
        size = int(blob.core.sum())
        if size == 0:
            continue
        (ys, xs) = blob.window
        near = np.flatnonzero(
            (boxes[:, 0] < ys.stop)
            & (boxes[:, 1] > ys.start)
            & (boxes[:, 2] < xs.stop)
            & (boxes[:, 3] > xs.start)
        )
        duplicate = False
        for j in near.tolist():
            other = kept[j]
            oy, ox = other.window
            y0, y1 = max(ys.start, oy.start), min(ys.stop, oy.stop)
            x0, x1 = max(xs.start, ox.start), min(xs.stop, ox.stop)
            mine = blob.core[y0 - ys.start : y1 - ys.start, x0 - xs.start : x1 - xs.start]
            theirs = other.core[y0 - oy.start : y1 - oy.start, x0 - ox.start : x1 - ox.start]
            if np.count_nonzero(mine & theirs) > BLOB_OVERLAP * min(size, sizes[j]):
                duplicate = True
                break
        if duplicate:
            continue
        kept.append(blob)
        sizes.append(size)
        boxes = np.vstack([boxes, [[ys.start, ys.stop, xs.start, xs.stop]]])
    return kept


class STICA(PlaneByPlaneStrategy):
    """Segmentation by spatio-temporal independent component analysis (stICA).

    Each plane's movie is reduced by principal component analysis, and
    independent component analysis of the spatial and temporal parts of the
    components together separates the signals of individual cells
    (Mukamel, Nimmerjahn & Schnitzer 2009). Every independent component
    gives a *weighted* ROI, its spatial map; the post-processing steps that
    STICA appends to itself at construction turn those maps into cell ROIs.

    Parameters
    ----------
    channel : int or str, optional
        Channel whose signals are analysed (index or name). Default: 0.
    mu : float, optional
        Weight of spatial against temporal information, in ``[0, 1]``: 0 is
        purely temporal ICA, 1 purely spatial ICA; low values favour the
        temporal signals. Default: 0.01.
    components : int or list of int, optional
        Number of principal components to use (≥ 1), or, as a list, the
        indices (from 0, largest first) of the principal components to use;
        there are as many independent components as principal components
        used. Default: 75.
    static_threshold : float, optional
        In ``[0, 1]``: a pixel belongs to an ROI when the smoothed
        component map reaches this fraction of its maximum. Default: 0.5.
    min_area : int, optional
        Smallest ROI, in pixels (≥ 0). Default: 50.
    x_smoothing : float, optional
        Amount of smoothing of the component maps, counted as SIMA counts
        it, in successive Gaussian blurs of 1 pixel (≥ 0). Their combined
        effect, one Gaussian blur of ``sqrt(x_smoothing)`` pixels, is
        applied. Default: 4.
    overlap_per : float, optional
        ROIs overlapping by more than this fraction of the smaller one are
        merged; values outside ``(0, 1]`` merge nothing. Default: 0.
    verbose : bool, optional
        Print progress to standard error. Default: False.
    post_process : bool, optional (keyword only)
        Append the post-processing steps below (default True). Without
        them :meth:`segment` returns the weighted component maps, for a
        pipeline of your own.

    Raises
    ------
    ValueError
        If a parameter is of the wrong type or out of range; the message
        names it.

    Notes
    -----
    Per plane:

    0. **Length.** A plane whose sequences give fewer than
       ``MIN_DIFFERENCES`` (30) differences of consecutive frames gives no
       ROI, with the reason in the :class:`SegmentationWarning`: the noise
       levels the PCA is normalised by come from those differences, and
       with fewer of them noise alone clears the noise edge.
    1. **PCA.** :func:`plane_pca` computes the principal components
       (the first ``components``, or those up to the largest index listed)
       of the noise-normalised movie (the plane's mean trace removed),
       streaming the frames. Components whose singular value does not clear
       the noise edge (``sqrt(pixels) + sqrt(frames)``, by 2 %) are noise and are dropped
       **[differs: SIMA used all of them]**; without any signal component
       the plane gives no ROI. With a list, the listed components that
       clear the edge are used.
    2. **stICA.** The ``k`` components used, spatial ``U`` (pixels × k)
       and temporal ``V`` (frames × k), each standardised per
       component, are stacked as samples ``[sqrt(mu)·U; sqrt(1-mu)·V]``, so
       that ``mu`` and ``1 - mu`` are the two parts' shares of each
       component's variance per sample, and scikit-learn's
       :class:`~sklearn.decomposition.FastICA` (``random_state=0``) unmixes
       them into ``k`` independent components. On large planes the fit uses
       the 40,000 pixels of highest energy (all frames); the unmixing is
       then applied to every pixel. A fit that stops at the iteration limit
       is kept (it is reported with ``verbose``).
    3. **Maps.** Each independent component's spatial map is shifted to a
       zero median, divided by its robust standard deviation (1.4826 ×
       median absolute value) and oriented so that its skewness is positive
       (cells are bright, sparse spots).

       - With the post-processing (the default), every map is split into
         its significant spots of either sign (:func:`significant_blobs`):
         with fewer components than cells a component holds many cells,
         each weighted by how its activity follows the component's time
         course, with either sign, and a threshold at a fraction of the
         map's maximum would keep only the strongest few. A cell seen in
         several maps is kept once, from the map where it stands out most
         (:func:`distinct_blobs`). Each spot is one weighted mask (the map
         over the spot, scaled to a maximum of 1), so the thresholds of the
         steps below apply to each spot on its own **[differs: SIMA
         thresholded each whole map; STICA(components=5) on sima_fast's
         example finds 66 of 72 cells instead of 22]**.
       - With ``post_process=False`` each map with a pixel 5 robust
         deviations above its median is returned whole, scaled to a
         maximum of 1, negative values set to 0.

    Post-processing appended at construction (see
    :attr:`post_processing_steps`), in order:
    :class:`~sima_fast.segment.SparseROIsFromMasks` ``(min_size=min_area,
    static_threshold=static_threshold, smooth_size=sqrt(x_smoothing))``,
    :class:`~sima_fast.segment.SmoothROIBoundaries` ``()`` and, when
    ``0 < overlap_per <= 1``,
    :class:`~sima_fast.segment.MergeOverlapping` ``(threshold=overlap_per)``.
    Steps you append run after these.

    Memory per plane: the PCA keeps a few ``pixels × (components + 16)``
    float64 arrays and one 128 MiB chunk of frames; nothing grows with the
    number of frames beyond ``frames × (components + 16)`` numbers.

    References
    ----------
    E. A. Mukamel, A. Nimmerjahn and M. J. Schnitzer, "Automated analysis of
    cellular signals from large-scale calcium imaging data", Neuron 63(6),
    747-760 (2009), https://doi.org/10.1016/j.neuron.2009.08.009.

    N. Halko, P.-G. Martinsson and J. A. Tropp, "Finding structure with
    randomness", SIAM Review 53(2), 217-288 (2011),
    https://doi.org/10.1137/090771806.

    Examples
    --------
    >>> import sima_fast as sima
    >>> from sima_fast.misc import simulate_movie
    >>> sim = simulate_movie(num_frames=300, frame_shape=(64, 64), num_channels=1,
    ...                      cells_per_plane=6, seed=1)
    >>> ds = sima.ImagingDataset([sima.Sequence.create('ndarray', sim.movie)], None)
    >>> rois = STICA(components=20).segment(ds)
    >>> len(rois)
    6
    """

    def __init__(
        self,
        channel: int | str = 0,
        mu: float = 0.01,
        components: int | list[int] = 75,
        static_threshold: float = 0.5,
        min_area: int = 50,
        x_smoothing: float = 4,
        overlap_per: float = 0,
        verbose: bool = False,
        *,
        post_process: bool = True,
    ) -> None:
        super().__init__()
        self.channel = check_channel("channel", channel)
        self.mu = check_real("mu", mu, low=0.0, high=1.0)
        self.components = _check_components(components)
        self.static_threshold = check_real("static_threshold", static_threshold, low=0.0, high=1.0)
        self.min_area = check_int("min_area", min_area, low=0, integral_float=True)
        self.x_smoothing = check_real("x_smoothing", x_smoothing, low=0.0)
        self.overlap_per = check_real("overlap_per", overlap_per)
        self.verbose = check_bool("verbose", verbose)
        self.post_process = check_bool("post_process", post_process)
        if self.post_process:
            self.append(
                SparseROIsFromMasks(
                    min_size=self.min_area,
                    static_threshold=self.static_threshold,
                    smooth_size=math.sqrt(self.x_smoothing),  # type: ignore[arg-type]
                )
            )
            self.append(SmoothROIBoundaries())
            if 0.0 < self.overlap_per <= 1.0:  # type: ignore[operator]
                self.append(MergeOverlapping(threshold=self.overlap_per))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        """Return ``STICA(name=value, ...)`` with the strategy's parameters."""
        return (
            f"STICA(channel={self.channel!r}, mu={self.mu}, components={self.components}, "
            f"static_threshold={self.static_threshold}, min_area={self.min_area}, "
            f"x_smoothing={self.x_smoothing}, overlap_per={self.overlap_per})"
        )

    def _segment_plane(self, dataset: ImagingDataset, plane: int, channel: int) -> list:
        from sklearn.decomposition import FastICA
        from sklearn.exceptions import ConvergenceWarning

        differences = sum(max(len(seq) - 1, 0) for seq in dataset.sequences)
        if differences < MIN_DIFFERENCES:
            self._note_empty(
                f"plane {plane}: the recording is too short for STICA: its "
                f"{int(dataset.num_frames)} frames give {differences} differences of consecutive "
                f"frames, and each pixel's noise level, estimated from them, needs at least "
                f"{MIN_DIFFERENCES} before noise can be told from cells (with fewer, noise alone "
                "rises above the noise edge and its components would be returned as cells); "
                f"segment a recording (or the sequences of several trials together) of at least "
                f"{MIN_DIFFERENCES + 1} frames, or draw ROIs by hand"
            )
            return []
        if isinstance(self.components, list):
            wanted = np.asarray(self.components, dtype=np.int64)
        else:
            wanted = np.arange(self.components)
        pca = plane_pca(dataset, plane, channel, int(wanted.max()) + 1)
        chosen = wanted[wanted < pca.num_signal]
        k = int(chosen.size)
        self._say(
            f"{pca.num_signal} signal component(s) above the noise edge; using {k}"
            f"{'' if k == wanted.size else f' of the {wanted.size} asked for'}"
        )
        if k == 0:
            self._note_empty(no_signal_note(plane, dataset))
            return []
        usable = np.flatnonzero(pca.usable)
        spatial = _standardise(pca.spatial[usable][:, chosen])
        temporal = _standardise(pca.temporal[:, chosen])
        mu = float(self.mu)  # type: ignore[arg-type]
        fit_rows = spatial
        if usable.size > ICA_FIT_ROWS:
            weight = (pca.spatial[usable][:, chosen] * pca.values[chosen]) ** 2
            top = np.argpartition(weight.sum(axis=1), -ICA_FIT_ROWS)[-ICA_FIT_ROWS:]
            fit_rows = spatial[np.sort(top)]
        samples = np.concatenate([math.sqrt(mu) * fit_rows, math.sqrt(1.0 - mu) * temporal])
        ica = FastICA(
            n_components=k,
            whiten="unit-variance",
            whiten_solver="eigh",
            max_iter=ICA_MAX_ITER,
            tol=ICA_TOL,
            random_state=0,
        )
        with warnings.catch_warnings(), blas_threads():
            # A fit that reaches the iteration limit still unmixes usefully; report it instead.
            warnings.simplefilter("ignore", ConvergenceWarning)
            ica.fit(samples.astype(np.float32))
        if ica.n_iter_ >= ICA_MAX_ITER:
            self._say(f"FastICA stopped after {ICA_MAX_ITER} iterations without converging")
        maps = spatial @ ica.components_.T.astype(np.float64)
        rows, cols = pca.shape
        found = []
        blobs: list[Blob] = []
        for j in range(k):
            values = maps[:, j] - np.median(maps[:, j])
            if _skewness(values) < 0:
                values = -values
            noise = 1.4826 * float(np.median(np.abs(values)))
            peak = float(values.max())
            if noise <= 0 or peak <= 0:
                continue
            image = np.zeros(rows * cols)
            image[usable] = values / noise
            image = image.reshape(rows, cols)
            if self.post_process:
                blobs.extend(significant_blobs(image, j))
            elif peak >= SIGNIFICANCE * noise:
                found.append(np.maximum(image, 0.0) / (peak / noise))
        if self.post_process:
            found = []
            for blob in distinct_blobs(blobs):
                rr, cc = np.nonzero(blob.image)
                found.append(
                    scipy.sparse.csr_matrix(
                        (
                            blob.image[rr, cc],
                            (rr + blob.window[0].start, cc + blob.window[1].start),
                        ),
                        shape=(rows, cols),
                    )
                )
        self._say(f"{len(found)} of {k} independent component(s) kept")
        if not found:
            self._note_empty(
                f"plane {plane}: none of the {k} independent component maps has a spot "
                f"{SIGNIFICANCE:g} robust deviations from its median (no spot-like cell)"
            )
        return found

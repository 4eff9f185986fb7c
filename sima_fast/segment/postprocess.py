"""Post-processing steps that refine the ROIs found by a segmentation strategy.

Each step is a :class:`~sima_fast.segment.PostProcessingStep`: append it to a
strategy with ``strategy.append(step)`` or call ``step.apply(rois, dataset)``
directly. Steps never modify the ROIs they are given. The steps and their
parameters carry SIMA's names:

- :class:`ROIFilter` keeps the ROIs a predicate accepts;
- :class:`CircularityFilter` keeps round ROIs;
- :class:`SparseROIsFromMasks` turns weighted (e.g. ICA) maps into boolean ROIs;
- :class:`SmoothROIBoundaries` simplifies ROI outlines;
- :class:`MergeOverlapping` merges ROIs that largely overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import scipy.ndimage
import scipy.sparse
import scipy.sparse.csgraph

from sima_fast._validate import check_bool, check_int, check_real
from sima_fast.ROI import ROI, ROIList
from sima_fast.segment._rois import (
    Shape3,
    as_roilist,
    dataset_im_shape,
    derived_roi,
    planes_from_indices,
    resolve_im_shape,
    roi_im_shape,
    roi_outlines,
    roi_planes,
    support_indices,
)
from sima_fast.segment.base import PostProcessingStep

if TYPE_CHECKING:
    from sima_fast.imaging import ImagingDataset

__all__ = [
    "CircularityFilter",
    "MergeOverlapping",
    "ROIFilter",
    "SmoothROIBoundaries",
    "SparseROIsFromMasks",
    "polygon_circularity",
]

_T = TypeVar("_T")
_R = TypeVar("_R")


def _map(func: Callable[[_T], _R], items: list[_T], n_processes: int) -> list[_R]:
    """``[func(x) for x in items]``, spread over a thread pool when ``n_processes > 1``."""
    if n_processes <= 1 or len(items) <= 1:
        return [func(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(n_processes, len(items))) as pool:
        return list(pool.map(func, items))


# --------------------------------------------------------------------------
# ROIFilter
# --------------------------------------------------------------------------


class ROIFilter(PostProcessingStep):
    """Keep the ROIs that a predicate accepts.

    Parameters
    ----------
    func : callable
        Called as ``func(roi)`` for each ROI; the ROI is kept when the result
        is truthy.

    Raises
    ------
    TypeError
        If ``func`` is not callable.

    Notes
    -----
    The kept ROIs are the input objects themselves (label, tags and id
    unchanged), in their input order.

    Examples
    --------
    >>> rois = ROIList([ROI(mask=np.ones((3, 3))), ROI(mask=np.eye(3))])
    >>> [roi.size for roi in ROIFilter(lambda roi: roi.size > 5).apply(rois)]
    [9]
    """

    def __init__(self, func: Callable[[ROI], Any]) -> None:
        if not callable(func):
            raise TypeError(f"func must be callable, got {type(func).__name__}")
        self.func = func

    def apply(self, rois: ROIList, dataset: ImagingDataset | None = None) -> ROIList:
        """Return the ROIs for which ``func(roi)`` is truthy.

        Parameters
        ----------
        rois : ROIList
            The ROIs to filter.
        dataset : ImagingDataset, optional
            Unused; accepted for the common step interface.

        Returns
        -------
        ROIList
        """
        return as_roilist([roi for roi in rois if self.func(roi)], like=rois)


# --------------------------------------------------------------------------
# CircularityFilter
# --------------------------------------------------------------------------


def _ring_area_perimeter(ring: np.ndarray) -> tuple[float, float]:
    x, y = ring[:, 0], ring[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    area = 0.5 * abs(float(np.dot(x, yn) - np.dot(xn, y)))
    perimeter = float(np.hypot(xn - x, yn - y).sum())
    return area, perimeter


def polygon_circularity(vertices: Any) -> float:
    """Circularity ``4π·area / perimeter²`` of a closed polygon.

    It is 1 for a circle, ``π/4`` for a square, and tends to 0 for long thin
    shapes.

    Parameters
    ----------
    vertices : array_like, shape (N, 2) or (N, 3)
        ``(x, y[, z])`` vertices of the ring, open or closed (a repeated
        first vertex is ignored).

    Returns
    -------
    float
        The circularity; 0.0 for a degenerate ring (fewer than three
        vertices, or no perimeter).

    Examples
    --------
    >>> round(polygon_circularity([[0, 0], [1, 0], [1, 1], [0, 1]]), 4)
    0.7854
    """
    ring = np.asarray(vertices, dtype=np.float64)
    if ring.ndim != 2 or ring.shape[1] < 2:
        raise ValueError(f"vertices must be an (N, 2) or (N, 3) array, got shape {ring.shape}")
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]
    if len(ring) < 3:
        return 0.0
    area, perimeter = _ring_area_perimeter(ring)
    if perimeter == 0.0:
        return 0.0
    return 4.0 * np.pi * area / perimeter**2


def _plane_circularities(roi: ROI) -> dict[int, float]:
    """``{plane: circularity of the largest-area ring on that plane}``."""
    best: dict[int, tuple[float, float]] = {}
    for ring in roi_outlines(roi):
        z = int(ring[0, 2])
        area, _ = _ring_area_perimeter(ring)
        if z not in best or area > best[z][0]:
            best[z] = (area, polygon_circularity(ring))
    return {z: c for z, (_, c) in best.items()}


class CircularityFilter(PostProcessingStep):
    """Keep ROIs whose outline is round enough.

    The circularity of a ring is ``4π·area / perimeter²`` (see
    :func:`polygon_circularity`). On each plane where the ROI has an outline,
    the ring of largest area is measured (smaller rings, such as holes or
    stray fragments, are ignored); the ROI is kept when that circularity is at
    least the threshold on **every** such plane.

    Parameters
    ----------
    circularity_threhold : float, optional
        The threshold, in ``[0, 1]``; default 0.5. (SIMA's spelling of the
        parameter.)
    circularity_threshold : float, optional
        Keyword-only alias with the usual spelling; when given it is used
        instead of ``circularity_threhold``.

    Raises
    ------
    ValueError
        If the threshold is not a real number in ``[0, 1]``.
    TypeError
        If both spellings are given with different values.

    Notes
    -----
    Outlines are the ROI's polygons; for mask ROIs they are the 0.5-level
    contours of the mask (:func:`sima_fast.ROI.mask2poly`, of the non-zero
    pixels for weighted masks), whose corners are cut at 45°, so a pixelated
    disc measures close to 1 and a single pixel ``π/4``. ROIs without any
    outline (empty masks) are removed. Kept ROIs are the input objects.

    Examples
    --------
    >>> yy, xx = np.mgrid[:20, :20]
    >>> disc = ROI(mask=(yy - 10) ** 2 + (xx - 10) ** 2 < 36)
    >>> bar = ROI(mask=(yy == 3) & (xx < 18))
    >>> kept = CircularityFilter(0.5).apply(ROIList([disc, bar]))
    >>> [roi is disc for roi in kept]
    [True]
    """

    def __init__(
        self,
        circularity_threhold: float = 0.5,
        *,
        circularity_threshold: float | None = None,
    ) -> None:
        if circularity_threshold is not None:
            if circularity_threhold != 0.5 and circularity_threhold != circularity_threshold:
                raise TypeError(
                    "give the threshold once: circularity_threhold and circularity_threshold "
                    "are the same parameter"
                )
            circularity_threhold = circularity_threshold
        self.circularity_threshold = check_real(
            "circularity_threhold", circularity_threhold, low=0.0, high=1.0
        )

    @property
    def circularity_threhold(self) -> float:
        """The threshold (SIMA's spelling of :attr:`circularity_threshold`)."""
        return self.circularity_threshold  # type: ignore[return-value]

    def apply(self, rois: ROIList, dataset: ImagingDataset | None = None) -> ROIList:
        """Return the ROIs that are circular enough.

        Parameters
        ----------
        rois : ROIList
            The ROIs to filter.
        dataset : ImagingDataset, optional
            Unused; accepted for the common step interface.

        Returns
        -------
        ROIList
        """
        threshold = self.circularity_threshold
        kept = []
        for roi in rois:
            circ = _plane_circularities(roi)
            if circ and min(circ.values()) >= threshold:
                kept.append(roi)
        return as_roilist(kept, like=rois)


# --------------------------------------------------------------------------
# SparseROIsFromMasks
# --------------------------------------------------------------------------


def _components(binary: np.ndarray, min_size: int, diagonal: bool = False) -> list[np.ndarray]:
    """Return the flat indices of each large 4-connected component of a 2-D boolean image.

    A component is kept when it has at least ``min_size`` pixels; with
    ``diagonal``, pixels that touch at a corner are connected too.
    Components come in the raster order of their first pixel.

    Returns
    -------
    list of numpy.ndarray
        Increasing flat pixel indices ``y * X + x``, one array per component.
    """
    labels, n = scipy.ndimage.label(binary, np.ones((3, 3)) if diagonal else None)
    if n == 0:
        return []
    flat = labels.ravel()
    pixels = np.flatnonzero(flat)
    ids = flat[pixels]
    counts = np.bincount(ids, minlength=n + 1)[1:]
    order = np.argsort(ids, kind="stable")
    groups = np.split(pixels[order], np.cumsum(counts)[:-1])
    return [g for g, c in zip(groups, counts) if c >= max(min_size, 1)]


class SparseROIsFromMasks(PostProcessingStep):
    """Turn weighted, possibly signed masks (e.g. ICA maps) into sparse boolean ROIs.

    Each input ROI is processed on its own, as a dense ``(Z, Y, X)`` float
    array of its mask values (NaN and infinite values count as 0).

    An ROI that is **already sparse** (its non-zero values are one positive
    number, as for boolean masks and polygon ROIs, e.g. the output of this
    step or of a strategy that post-processes its own maps) is only split
    into its connected components of at least ``min_size`` pixels per
    plane (8-connected: the raster of a smoothed outline may touch itself only
    at a corner): it is neither smoothed nor thresholded again, so appending this
    step to a strategy that already ran it changes nothing. (SIMA's step
    gives the same result on such masks: their pixels all pass its
    weight threshold.) Any other ROI goes through:

    1. **Smoothing.** Each plane is filtered with
       ``scipy.ndimage.gaussian_filter(plane, sigma=smooth_size)`` (default
       boundary mode ``'reflect'``); planes are not mixed. ``smooth_size`` of
       0 or None skips this.
    2. **Sign split.** With ``sign_split`` the positive part ``max(m, 0)`` and
       the negative part ``max(-m, 0)`` are processed separately (positive
       first), so the two lobes of a signed map give separate ROIs. Without
       it the magnitude ``|m|`` is processed.
    3. **Threshold.** Over all planes of one part: with ``static_threshold``
       the pixels with ``value ≥ static_threshold · max(part)`` and
       ``value > 0`` are kept; with ``static_threshold=None`` the pixels with
       ``value > t`` are kept, where ``t`` is Otsu's threshold
       (:func:`skimage.filters.threshold_otsu`) of all the part's pixel values
       (zeros included). A part that is zero everywhere gives no ROI.
    4. **Components.** On each plane, the 4-connected components
       (``scipy.ndimage.label``) of the kept pixels with at least
       ``min_size`` pixels each become one ROI.

    Parameters
    ----------
    min_size : int, optional
        Smallest component, in pixels, that becomes an ROI; default 50.
    static_threshold : float or None, optional
        Fraction of the part's maximum, in ``[0, 1]``; default None (Otsu).
    smooth_size : float or None, optional
        Gaussian ``sigma`` in pixels (≥ 0); default 4.
    sign_split : bool, optional
        Split positive and negative parts; default True.
    n_processes : int, optional
        Number of threads over which ROIs are spread (≥ 1); default 1.

    Raises
    ------
    ValueError
        If a parameter is of the wrong type or out of range; the message
        names it.

    Notes
    -----
    Output ROIs are boolean sparse-mask ROIs with ``im_shape`` the dataset's
    ``(Z, Y, X)`` (or, without a dataset, the input ROIs' shape). They come in
    the order: input ROI, then part (positive, negative), then plane, then
    raster order of each component's first pixel. Each output ROI takes the
    label and a copy of the tags of the ROI it came from; the id is kept only
    when that ROI gives exactly one output ROI (ids should stay unique), and
    is None otherwise.

    Examples
    --------
    >>> weights = np.zeros((12, 12))
    >>> weights[1:5, 1:5] = 1.0
    >>> weights[7:11, 6:11] = -0.5
    >>> step = SparseROIsFromMasks(min_size=4, smooth_size=0)
    >>> [roi.size for roi in step.apply(ROIList([ROI(mask=weights)]))]
    [16, 20]
    """

    def __init__(
        self,
        min_size: int = 50,
        static_threshold: float | None = None,
        smooth_size: float | None = 4,
        sign_split: bool = True,
        n_processes: int = 1,
    ) -> None:
        self.min_size = check_int("min_size", min_size, low=0, integral_float=True)
        self.static_threshold = check_real(
            "static_threshold", static_threshold, low=0.0, high=1.0, allow_none=True
        )
        self.smooth_size = check_real("smooth_size", smooth_size, low=0.0, allow_none=True)
        self.sign_split = check_bool("sign_split", sign_split)
        self.n_processes = check_int("n_processes", n_processes, low=1, integral_float=True)

    def _threshold(self, part: np.ndarray) -> np.ndarray:
        top = float(part.max()) if part.size else 0.0
        if top <= 0.0:
            return np.zeros(part.shape, dtype=bool)
        if self.static_threshold is not None:
            return (part > 0) & (part >= self.static_threshold * top)
        from skimage.filters import threshold_otsu

        low = float(part.min())
        if low == top:  # one value everywhere: Otsu has nothing to separate
            return part > 0
        return part > threshold_otsu(part)

    def _split(self, roi: ROI, im_shape: Shape3) -> list[ROI]:
        planes = roi_planes(roi, im_shape)
        values = np.stack([p.toarray() for p in planes]).astype(np.float64)
        values[~np.isfinite(values)] = 0.0
        nonzero = values[values != 0.0]
        if nonzero.size == 0 or (nonzero[0] > 0.0 and np.all(nonzero == nonzero[0])):
            return self._components_only(roi, values > 0.0, im_shape)
        if self.smooth_size:
            for z in range(values.shape[0]):
                values[z] = scipy.ndimage.gaussian_filter(values[z], sigma=self.smooth_size)
        parts = (
            [np.maximum(values, 0.0), np.maximum(-values, 0.0)]
            if self.sign_split
            else [np.abs(values)]
        )
        _, rows, cols = im_shape
        found: list[np.ndarray] = []
        for part in parts:
            keep = self._threshold(part)
            for z in range(keep.shape[0]):
                for comp in _components(keep[z], self.min_size):
                    found.append(comp + z * rows * cols)
        return self._derived(roi, found, im_shape)

    def _components_only(self, roi: ROI, keep: np.ndarray, im_shape: Shape3) -> list[ROI]:
        """Split an already sparse ROI's support into components (no smoothing, no threshold)."""
        _, rows, cols = im_shape
        found = [
            comp + z * rows * cols
            for z in range(keep.shape[0])
            for comp in _components(keep[z], self.min_size, diagonal=True)
        ]
        return self._derived(roi, found, im_shape)

    @staticmethod
    def _derived(roi: ROI, found: list[np.ndarray], im_shape: Shape3) -> list[ROI]:
        keep_id = len(found) == 1
        return [
            derived_roi(
                roi, keep_id=keep_id, mask=planes_from_indices(flat, im_shape), im_shape=im_shape
            )
            for flat in found
        ]

    def apply(self, rois: ROIList, dataset: ImagingDataset | None = None) -> ROIList:
        """Replace each ROI by the sparse boolean ROIs extracted from its mask.

        Parameters
        ----------
        rois : ROIList
            The (weighted) ROIs; polygon ROIs are rasterised first.
        dataset : ImagingDataset, optional
            Gives the image shape; without it the ROIs' own shape is used.

        Returns
        -------
        ROIList
        """
        rois_in = list(rois)
        if not rois_in:
            return as_roilist([], like=rois)
        im_shape = resolve_im_shape(rois_in, dataset)
        results = _map(lambda r: self._split(r, im_shape), rois_in, self.n_processes)
        return as_roilist([r for group in results for r in group], like=rois)


# --------------------------------------------------------------------------
# SmoothROIBoundaries
# --------------------------------------------------------------------------


def _simplify_ring(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas–Peucker simplification of one open ring; the ring itself if that degenerates."""
    from skimage.measure import approximate_polygon

    if tolerance == 0.0 or len(ring) < 4:
        return ring
    xy = ring[:, :2]
    closed = np.vstack([xy, xy[:1]])
    simple = approximate_polygon(closed, tolerance)
    if len(simple) > 1 and np.array_equal(simple[0], simple[-1]):
        simple = simple[:-1]
    if len(simple) < 3 or _ring_area_perimeter(simple)[0] == 0.0:
        return ring
    return np.column_stack([simple, np.full(len(simple), ring[0, 2])])


class SmoothROIBoundaries(PostProcessingStep):
    """Replace ROI outlines by simplified polygons.

    Every ring of an ROI's outline (its polygons, or for mask ROIs the
    0.5-level contours of the non-zero pixels on each plane, see
    :func:`sima_fast.ROI.mask2poly`) is simplified with the Douglas–Peucker
    algorithm (:func:`skimage.measure.approximate_polygon`) at ``tolerance``:
    the simplified ring keeps a subset of the vertices, and every dropped
    vertex lies within ``tolerance`` pixels of it. The result is a polygon ROI.

    Parameters
    ----------
    tolerance : float, optional
        Largest allowed distance, in pixels, between the outline and its
        simplification (≥ 0; 0 keeps the outline); default 0.5.
    min_verts : int, optional
        Rings with fewer vertices than this are kept as they are (≥ 0);
        default 8, as SIMA's.
    n_processes : int, optional
        Number of threads over which ROIs are spread (≥ 1); default 1.

    Raises
    ------
    ValueError
        If a parameter is of the wrong type or out of range; the message
        names it.

    Notes
    -----
    A ring that would degenerate (fewer than three vertices, or zero area,
    e.g. the outline of a single pixel) is kept unsimplified, so no part of an
    ROI disappears. ROIs with no outline at all (empty masks) are dropped.
    Each output ROI keeps its input's label, tags (copied) and id, and its
    ``im_shape``; an input without one gets the dataset's ``(Z, Y, X)``, or
    without a dataset, for a mask ROI, the shape of its mask. Rasterising a
    polygon ROI fills holes, as it does for any polygon ROI.

    Examples
    --------
    >>> yy, xx = np.mgrid[:30, :30]
    >>> disc = ROI(mask=(yy - 15) ** 2 + (xx - 15) ** 2 < 100, label='cell')
    >>> smooth = SmoothROIBoundaries(tolerance=1.0).apply(ROIList([disc]))[0]
    >>> smooth.is_mask_roi, smooth.label, len(disc.rings[0]), len(smooth.rings[0])
    (False, 'cell', 24, 8)
    """

    def __init__(self, tolerance: float = 0.5, min_verts: int = 8, n_processes: int = 1) -> None:
        self.tolerance = check_real("tolerance", tolerance, low=0.0)
        self.min_verts = check_int("min_verts", min_verts, low=0, integral_float=True)
        self.n_processes = check_int("n_processes", n_processes, low=1, integral_float=True)

    def _smooth(self, roi: ROI, im_shape: Shape3 | None) -> ROI | None:
        rings = roi_outlines(roi)
        if not rings:
            return None
        tolerance = float(self.tolerance)  # type: ignore[arg-type]
        simple = [
            ring if len(ring) < self.min_verts else _simplify_ring(ring, tolerance)
            for ring in rings
        ]
        shape = roi.im_shape if roi.im_shape is not None else im_shape
        if shape is None and roi.is_mask_roi:
            shape = roi_im_shape(roi)
        return derived_roi(roi, polygons=simple, im_shape=shape)

    def apply(self, rois: ROIList, dataset: ImagingDataset | None = None) -> ROIList:
        """Return polygon ROIs with simplified outlines.

        Parameters
        ----------
        rois : ROIList
            The ROIs to smooth.
        dataset : ImagingDataset, optional
            Gives ``im_shape`` to ROIs that have none.

        Returns
        -------
        ROIList
        """
        im_shape = dataset_im_shape(dataset)
        results = _map(lambda r: self._smooth(r, im_shape), list(rois), self.n_processes)
        return as_roilist([r for r in results if r is not None], like=rois)


# --------------------------------------------------------------------------
# MergeOverlapping
# --------------------------------------------------------------------------


def _common(values: Iterable[Any]) -> Any:
    """Return the shared value of ``values`` when they are all equal, else None."""
    values = list(values)
    first = values[0]
    return first if all(v == first for v in values[1:]) else None


class MergeOverlapping(PostProcessingStep):
    """Merge ROIs that overlap by more than a fraction of the smaller one.

    Two ROIs overlap by ``|A ∩ B| / min(|A|, |B|)``, where ``|·|`` counts the
    non-zero pixels of a mask. ROIs are grouped by the connected components of
    the graph linking every pair whose overlap is strictly greater than
    ``threshold`` (so merging is transitive: if A overlaps B and B overlaps C,
    all three merge, even when A and C do not touch), and each group of two or
    more becomes one ROI whose mask is the union of the members' masks. ROIs
    on different planes share no pixels and so never merge.

    Parameters
    ----------
    threshold : float
        Overlap fraction above which two ROIs merge, in ``[0, 1]``; 0 merges
        any two ROIs that share a pixel, 1 merges nothing.

    Raises
    ------
    ValueError
        If ``threshold`` is not a real number in ``[0, 1]``.

    Notes
    -----
    All pairwise intersections come from one sparse product ``M @ M.T`` of
    the boolean ROIs × pixels CSR matrix ``M``, so the cost grows with the
    number of overlapping pixel pairs, never with the square of the number of
    ROIs or pixels. Overlaps are computed once, on the input ROIs (a merged
    union is not compared again).

    Output order: each group appears at the position of its first member;
    ROIs that merge with nothing are returned unchanged (the same objects). A
    merged ROI is a boolean mask ROI with the dataset's ``im_shape``, the
    union of its members' tags, and the members' label and id when they all
    share the same one (None otherwise).

    Examples
    --------
    >>> a = np.zeros((6, 6), bool); a[0:3, 0:3] = True
    >>> b = np.zeros((6, 6), bool); b[1:4, 1:4] = True
    >>> c = np.zeros((6, 6), bool); c[5, 5] = True
    >>> rois = ROIList([ROI(mask=a), ROI(mask=b), ROI(mask=c)])
    >>> [roi.size for roi in MergeOverlapping(0.3).apply(rois)]
    [14, 1]
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = check_real("threshold", threshold, low=0.0, high=1.0)

    def apply(self, rois: ROIList, dataset: ImagingDataset | None = None) -> ROIList:
        """Return the ROIs with overlapping groups merged.

        Parameters
        ----------
        rois : ROIList
            The ROIs to merge.
        dataset : ImagingDataset, optional
            Gives the image shape; without it the ROIs' own shape is used.

        Returns
        -------
        ROIList
        """
        rois_in = list(rois)
        n = len(rois_in)
        if n < 2:
            return as_roilist(rois_in, like=rois)
        im_shape = resolve_im_shape(rois_in, dataset)
        supports = [support_indices(r, im_shape) for r in rois_in]
        sizes = np.array([s.size for s in supports], dtype=np.int64)
        indptr = np.concatenate([[0], np.cumsum(sizes)])
        matrix = scipy.sparse.csr_matrix(
            (
                np.ones(int(indptr[-1]), dtype=np.int32),
                np.concatenate(supports) if supports else np.empty(0, np.int64),
                indptr,
            ),
            shape=(n, int(np.prod(im_shape))),
        )
        overlaps = (matrix @ matrix.T).tocoo()
        i, j, shared = overlaps.row, overlaps.col, overlaps.data
        upper = i < j
        i, j, shared = i[upper], j[upper], shared[upper]
        linked = shared / np.minimum(sizes[i], sizes[j]) > self.threshold
        graph = scipy.sparse.csr_matrix(
            (np.ones(int(linked.sum()), dtype=np.int8), (i[linked], j[linked])), shape=(n, n)
        )
        _, group = scipy.sparse.csgraph.connected_components(graph, directed=False)
        members: dict[int, list[int]] = {}
        for k, g in enumerate(group.tolist()):
            members.setdefault(g, []).append(k)
        out: list[ROI] = []
        for idx in members.values():  # dicts keep first-member order
            if len(idx) == 1:
                out.append(rois_in[idx[0]])
                continue
            union = np.unique(np.concatenate([supports[k] for k in idx]))
            group_rois = [rois_in[k] for k in idx]
            out.append(
                ROI(
                    mask=planes_from_indices(union, im_shape),
                    label=_common(r.label for r in group_rois),
                    tags=set().union(*(r.tags for r in group_rois)),
                    id=_common(r.id for r in group_rois),
                    im_shape=im_shape,
                )
            )
        return as_roilist(out, like=rois)

"""Private helpers shared by the segmentation framework and its post-processing steps.

They move ROI geometry between three representations: an :class:`~sima_fast.ROI.ROI`,
its per-plane sparse masks, and the sorted *flat pixel indices* of its support
(``z * Y * X + y * X + x``), which is what the sparse ROIs × pixels matrices are
built from. Parameter checks live in :mod:`sima_fast._validate`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse

from sima_fast.ROI import ROI, ROIList, check_mask_in_frame, mask2rings

Shape3 = tuple[int, int, int]


# --------------------------------------------------------------------------
# Shapes and masks
# --------------------------------------------------------------------------


def dataset_im_shape(dataset: Any) -> Shape3 | None:
    """Return the ``(Z, Y, X)`` frame shape of a dataset.

    Parameters
    ----------
    dataset : ImagingDataset or None
        Anything with a ``(Z, Y, X, C)`` ``frame_shape``.

    Returns
    -------
    tuple of int or None
        ``(Z, Y, X)``, or None when ``dataset`` is None.
    """
    if dataset is None:
        return None
    z, y, x, _ = dataset.frame_shape
    return (int(z), int(y), int(x))


def roi_im_shape(roi: ROI) -> Shape3 | None:
    """Return the ROI's own ``im_shape``, else the shape of its stored mask, else None.

    Parameters
    ----------
    roi : ROI
        The ROI.

    Returns
    -------
    tuple of int or None
        ``(Z, Y, X)``: the ROI's ``im_shape`` when set; for a mask ROI
        without one, its number of planes and the shape of its first plane;
        None for a polygon ROI without one.
    """
    if roi.im_shape is not None:
        return roi.im_shape
    if roi.is_mask_roi:
        planes = roi.mask
        return (len(planes), int(planes[0].shape[0]), int(planes[0].shape[1]))
    return None


def resolve_im_shape(rois: Iterable[ROI], dataset: Any) -> Shape3:
    """Return the ``(Z, Y, X)`` pixel space shared by ``rois``.

    The dataset's frame shape wins; without a dataset every ROI must report
    the same shape through :func:`roi_im_shape`.

    Parameters
    ----------
    rois : iterable of ROI
        The ROIs.
    dataset : ImagingDataset or None
        The dataset they belong to, if known.

    Returns
    -------
    tuple of int
        ``(Z, Y, X)``; ``(1, 1, 1)`` for no ROIs and no dataset.

    Raises
    ------
    ValueError
        Without a dataset, if a polygon ROI has no ``im_shape`` or the ROIs
        disagree on their shapes.
    """
    shape = dataset_im_shape(dataset)
    if shape is not None:
        return shape
    shapes = {roi_im_shape(r) for r in rois}
    if None in shapes:
        raise ValueError(
            "a polygon ROI has no im_shape; pass the dataset or set roi.im_shape on every ROI"
        )
    if len(shapes) > 1:
        raise ValueError(
            f"the ROIs have different image shapes {sorted(shapes)}; pass the dataset to apply()"
        )
    if not shapes:
        return (1, 1, 1)
    return shapes.pop()


def roi_planes(roi: ROI, im_shape: Shape3) -> list[scipy.sparse.csr_matrix]:
    """Return the ROI's per-plane masks in the ``im_shape`` pixel space (the ROI is not modified).

    A mask ROI without ``im_shape`` whose planes already have the frame's
    ``(Y, X)`` is padded with empty planes up to ``Z``; any other ROI is
    rasterised (polygons) or zero-padded and cropped (masks, as SIMA does
    for a mask drawn on another frame size) at ``im_shape``. Only empty
    margins may be cropped: a mask with non-zero weight outside
    ``im_shape`` is refused.

    Parameters
    ----------
    roi : ROI
        The ROI.
    im_shape : tuple of int
        ``(Z, Y, X)``.

    Returns
    -------
    list of scipy.sparse.csr_matrix
        ``Z`` matrices of shape ``(Y, X)``, with the ROI's values (boolean
        for polygons).

    Raises
    ------
    ValueError
        For a mask ROI with non-zero weight outside ``im_shape`` (see
        :func:`sima_fast.ROI.check_mask_in_frame`).
    """
    if roi.im_shape == im_shape:
        return roi.mask
    if roi.is_mask_roi:
        name = "ROI" + (f" (label {roi.label!r})" if roi.label is not None else "")
        check_mask_in_frame(roi, im_shape, name)
    if roi.im_shape is None and roi.is_mask_roi:
        stored = roi.mask  # the stored planes, as given
        if len(stored) <= im_shape[0] and stored[0].shape == tuple(im_shape[1:]):
            empty = scipy.sparse.csr_matrix(im_shape[1:], dtype=stored[0].dtype)
            return stored + [empty.copy() for _ in range(im_shape[0] - len(stored))]
    tmp = roi.copy()
    tmp.im_shape = im_shape
    return tmp.mask


def support_indices(roi: ROI, im_shape: Shape3) -> np.ndarray:
    """Return the sorted flat indices ``z * Y * X + y * X + x`` of the ROI's non-zero pixels.

    Parameters
    ----------
    roi : ROI
        The ROI.
    im_shape : tuple of int
        ``(Z, Y, X)`` of the pixel space (see :func:`roi_planes`).

    Returns
    -------
    numpy.ndarray of int64
        Distinct, increasing indices; empty for an ROI with no pixel.
    """
    _, rows, cols = im_shape
    parts = []
    for z, plane in enumerate(roi_planes(roi, im_shape)):
        if not plane.nnz:
            continue
        if not plane.has_canonical_format:
            plane = plane.copy()
            plane.sum_duplicates()
        row = np.repeat(np.arange(rows, dtype=np.int64), np.diff(plane.indptr))
        flat = z * rows * cols + row * cols + plane.indices
        parts.append(flat[plane.data != 0])
    if not parts:
        return np.empty(0, dtype=np.int64)
    return np.concatenate(parts).astype(np.int64, copy=False)  # row-major: already sorted


def planes_from_indices(flat: np.ndarray, im_shape: Shape3) -> list[scipy.sparse.csr_matrix]:
    """Return boolean per-plane CSR masks whose support is the flat indices ``flat``.

    Parameters
    ----------
    flat : array_like of int
        Sorted, distinct flat indices ``z * Y * X + y * X + x``, all inside
        ``im_shape``.
    im_shape : tuple of int
        ``(Z, Y, X)``.

    Returns
    -------
    list of scipy.sparse.csr_matrix
        ``Z`` boolean matrices of shape ``(Y, X)``, True exactly at ``flat``.
    """
    n_planes, rows, cols = im_shape
    flat = np.asarray(flat, dtype=np.int64)
    # row counts of the (Z * Y, X) stack, then one plane's slice of them at a time
    counts = np.bincount(flat // cols, minlength=n_planes * rows)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    columns = (flat % cols).astype(np.int32)
    planes = []
    for z in range(n_planes):
        ptr = indptr[z * rows : (z + 1) * rows + 1]
        start, stop = int(ptr[0]), int(ptr[-1])
        planes.append(
            scipy.sparse.csr_matrix(
                (np.ones(stop - start, dtype=bool), columns[start:stop], ptr - start),
                shape=(rows, cols),
            )
        )
    return planes


def roi_outlines(roi: ROI) -> list[np.ndarray]:
    """Return the open rings of the ROI: its polygons, or the outline of its non-zero mask.

    Parameters
    ----------
    roi : ROI
        The ROI.

    Returns
    -------
    list of numpy.ndarray
        ``(N, 3)`` rings of ``(x, y, z)`` vertices: :attr:`ROI.rings`,
        or for a weighted mask the contours of its non-zero pixels (which
        ``polygons`` refuses).
    """
    if not roi.is_mask_roi or not roi.is_weighted:
        return roi.rings
    return mask2rings([plane != 0 for plane in roi.mask])


def derived_roi(source: ROI, *, keep_id: bool = True, **geometry: Any) -> ROI:
    """Return a new ROI with ``geometry`` and the source's label, tags (copied) and maybe id.

    Parameters
    ----------
    source : ROI
        The ROI the new one is derived from.
    keep_id : bool, optional
        Copy ``source.id`` (default) rather than leaving the id None.
    **geometry
        ``mask=...`` or ``polygons=...`` (and optionally ``im_shape=...``),
        passed to :class:`ROI`.

    Returns
    -------
    ROI
    """
    return ROI(
        label=source.label,
        tags=set(source.tags),
        id=source.id if keep_id else None,
        **geometry,
    )


def as_roilist(rois: Iterable[ROI], like: Any = None) -> ROIList:
    """Return ``rois`` as an ROIList, keeping the timestamp of ``like`` when it is an ROIList.

    Parameters
    ----------
    rois : iterable of ROI
        The ROIs.
    like : object, optional
        The list the ROIs came from; its ``timestamp`` is kept when it is an
        :class:`ROIList`, otherwise the new list is stamped now.

    Returns
    -------
    ROIList
    """
    timestamp = like.timestamp if isinstance(like, ROIList) else None
    return ROIList(rois, timestamp=timestamp)

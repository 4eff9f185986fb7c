"""Scoring segmentations against ground truth: one-to-one matching of ROIs by overlap.

:func:`match_rois` pairs found ROIs with true cell masks (each found ROI with
at most one cell and vice versa) and reports precision, recall and F1 at an
intersection-over-union threshold, the usual figures for cell detection. The
demo and the tests score the segmentation strategies with it against the
ground truth of :func:`sima_fast.misc.simulate_movie` and
:func:`sima_fast.misc.example_ground_truth`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse

from sima_fast._validate import check_real
from sima_fast.ROI import ROI
from sima_fast.segment._rois import support_indices

__all__ = ["match_rois"]


def _truth_matrix(truth_masks: Any) -> tuple[scipy.sparse.csr_matrix, tuple[int, int, int]]:
    """Boolean ``(n, Z·Y·X)`` CSR matrix of the true masks and their ``(Z, Y, X)`` shape."""
    if isinstance(truth_masks, ROI):
        raise TypeError("truth_masks must be a collection of masks, not a single ROI")
    if isinstance(truth_masks, np.ndarray) or not isinstance(truth_masks, Iterable):
        masks = np.asarray(truth_masks)
    else:
        items = list(truth_masks)
        if items and all(isinstance(r, ROI) for r in items):
            shapes = {r.im_shape for r in items}
            if None in shapes or len(shapes) > 1:
                raise ValueError("true ROIs must all have the same, known im_shape")
            masks = np.stack([np.asarray(r) != 0 for r in items])
        else:
            masks = np.asarray(items) if items else np.zeros((0, 1, 1, 1), dtype=bool)
    if masks.ndim == 3:
        masks = masks[:, None]
    if masks.ndim != 4:
        raise ValueError(
            f"truth_masks must have shape (n, Y, X) or (n, Z, Y, X), got {masks.shape}"
        )
    n = masks.shape[0]
    shape = tuple(int(s) for s in masks.shape[1:])
    flat = scipy.sparse.csr_matrix(masks.reshape(n, int(np.prod(shape))) != 0)
    return flat, shape  # type: ignore[return-value]


def _found_matrix(found: Iterable[Any], im_shape: tuple[int, int, int]) -> scipy.sparse.csr_matrix:
    """Boolean ``(m, Z·Y·X)`` CSR matrix of the supports of the found ROIs or masks."""
    rows: list[np.ndarray] = []
    for item in found:
        if isinstance(item, ROI):
            rows.append(support_indices(item, im_shape))
        else:
            mask = np.asarray(item) != 0
            if mask.ndim == 2:
                mask = mask[None]
            if mask.shape != im_shape:
                raise ValueError(
                    f"a found mask has shape {mask.shape}, but the true masks are {im_shape}"
                )
            rows.append(np.flatnonzero(mask))
    sizes = np.array([r.size for r in rows], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(sizes)])
    indices = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    return scipy.sparse.csr_matrix(
        (np.ones(indices.size, dtype=bool), indices, indptr),
        shape=(len(rows), int(np.prod(im_shape))),
    )


def match_rois(found: Iterable[Any], truth_masks: Any, iou_threshold: float = 0.5) -> dict:
    """Match found ROIs to true cells one to one and score the detection.

    The intersection over union (IoU) of the supports (non-zero pixels) of
    every found ROI and every true mask is computed; a maximum matching of
    the pairs with ``IoU >= iou_threshold`` then pairs each found ROI with at
    most one true cell and vice versa (Hungarian algorithm,
    :func:`scipy.optimize.linear_sum_assignment`): it has as many pairs as
    possible and, among those, the largest total IoU.

    Parameters
    ----------
    found : iterable of ROI or array_like
        The segmentation: :class:`~sima_fast.ROI.ROI` objects (polygon ROIs
        are rasterised in the true masks' ``(Z, Y, X)`` space) or masks of
        the true masks' shape (a 2-D mask is plane 0).
    truth_masks : array_like or iterable of ROI
        The true cells: boolean masks of shape ``(n, Y, X)`` or
        ``(n, Z, Y, X)`` (e.g. ``simulate_movie(...).masks`` or
        ``example_ground_truth().masks``), or ROIs sharing one ``im_shape``.
    iou_threshold : float, optional
        Smallest IoU of a match, in ``(0, 1]``. Default: 0.5.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1`` (floats), ``n_found``, ``n_true``,
        ``n_matched`` (ints), ``matches`` (int array ``(n_matched, 2)`` of
        ``(found index, true index)`` pairs, by found index), ``ious``
        (float array, the IoU of each match) and ``mean_iou`` (their mean;
        NaN without matches). Precision is 1 when nothing was found and
        recall 1 when there is nothing to find; F1 is their harmonic mean
        (0 when both are 0).

    Raises
    ------
    ValueError
        If ``iou_threshold`` is out of range or the masks' shapes disagree.

    Examples
    --------
    >>> truth = np.zeros((2, 8, 8), bool)
    >>> truth[0, :4, :4] = True
    >>> truth[1, 4:, 4:] = True
    >>> found = [truth[0], np.pad(truth[1, 4:, 4:7], ((4, 0), (4, 1)))]
    >>> score = match_rois(found + [np.eye(8)], truth)
    >>> score['n_matched'], round(score['precision'], 3), score['recall']
    (2, 0.667, 1.0)
    >>> score['ious'].round(2).tolist()
    [1.0, 0.75]
    """
    threshold = check_real("iou_threshold", iou_threshold, low=0.0, high=1.0)
    if threshold == 0.0:
        raise ValueError("iou_threshold must be greater than 0, got 0")
    truth, im_shape = _truth_matrix(truth_masks)
    candidates = _found_matrix(found, im_shape)
    n_found, n_true = candidates.shape[0], truth.shape[0]
    inter = (candidates.astype(np.int64) @ truth.T.astype(np.int64)).tocoo()
    found_size = np.asarray(candidates.sum(axis=1)).ravel()
    true_size = np.asarray(truth.sum(axis=1)).ravel()
    union = found_size[inter.row] + true_size[inter.col] - inter.data
    iou = np.where(union > 0, inter.data / np.maximum(union, 1), 0.0)
    keep = iou >= threshold
    rows, cols, vals = inter.row[keep], inter.col[keep], iou[keep]
    matches = np.empty((0, 2), dtype=np.int64)
    ious = np.empty(0)
    if rows.size:
        # Compress to the ROIs and cells that have a candidate pair, then maximise
        # (number of pairs, total IoU): each pair is worth 1 + IoU, in [1, 2].
        fu, fi = np.unique(rows, return_inverse=True)
        tu, ti = np.unique(cols, return_inverse=True)
        gain = np.zeros((fu.size, tu.size))
        gain[fi, ti] = 1.0 + vals
        r, c = scipy.optimize.linear_sum_assignment(gain, maximize=True)
        ok = gain[r, c] > 0
        r, c = r[ok], c[ok]
        order = np.argsort(fu[r], kind="stable")
        matches = np.column_stack([fu[r][order], tu[c][order]]).astype(np.int64)
        ious = gain[r, c][order] - 1.0
    n_matched = int(matches.shape[0])
    precision = n_matched / n_found if n_found else 1.0
    recall = n_matched / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "n_found": int(n_found),
        "n_true": int(n_true),
        "n_matched": n_matched,
        "matches": matches,
        "ious": ious,
        "mean_iou": float(ious.mean()) if ious.size else float("nan"),
    }

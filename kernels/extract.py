"""Sparse-mask signal extraction: per frame and ROI, a NaN-aware weighted sum.

The ROI weights are stored as *runs*: for every ROI, the stretches of
consecutive flattened pixels it covers (a cell of ~140 pixels is a dozen
runs, one per image row), each with its weights. The kernel walks the runs of
every ROI in every frame, so the inner loop is a short contiguous dot product
that vectorises, and the frame (a few hundred kB) stays in cache while all
ROIs read it.

For ROI ``r`` in frame ``t`` it computes, over the pixels whose value is
finite in that frame::

    value = Σ a_p x_p · (Σ_all w_p² / Σ_finite w_p²)

where ``a_p`` are the extraction weights (``w_p / μ_p`` for sima_fast's
``extract``) and ``w_p`` the mask weights used for the re-weighting of
SPEC.md §5. An ROI with no finite pixel in a frame gives NaN. Integer input
needs no finiteness test. Frames are independent, so the work is split over
frames and the result does not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["RunWeights", "extract_runs", "runs_from_csr"]

_FASTMATH = {"contract", "reassoc"}  # lets the dot products vectorise; NaN/inf keep meaning


class RunWeights:
    """ROI weights laid out as runs of consecutive pixels (see the module docstring).

    Attributes
    ----------
    roi_ptr : int64 (n_rois + 1,)
        Runs of ROI r are ``roi_ptr[r]:roi_ptr[r + 1]``.
    run_start, run_length, run_offset : int64 (n_runs,)
        First pixel of each run, its length, and where its weights start.
    weights : float64 (nnz,)
        Extraction weights ``a_p``.
    reweight : float64 (nnz,)
        ``w_p²``, the squares of the mask weights used for the NaN re-weighting.
    total : float64 (n_rois,)
        ``Σ_all w_p²`` per ROI.
    """

    def __init__(self, roi_ptr, run_start, run_length, run_offset, weights, reweight, total):
        self.roi_ptr = roi_ptr
        self.run_start = run_start
        self.run_length = run_length
        self.run_offset = run_offset
        self.weights = weights
        self.reweight = reweight
        self.total = total

    @property
    def n_rois(self) -> int:
        """Number of ROIs."""
        return int(self.roi_ptr.size - 1)


def runs_from_csr(indptr, indices, weights, mask_weights) -> RunWeights:
    """Build :class:`RunWeights` from a CSR matrix of ROIs × pixels.

    Parameters
    ----------
    indptr, indices : int arrays
        CSR structure (one row per ROI; column indices are flattened pixels).
    weights : float array
        Extraction weights ``a_p`` in CSR order.
    mask_weights : float array
        Mask weights ``w_p`` in CSR order (for the NaN re-weighting).
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    n_rois = indptr.size - 1
    order = np.empty(indices.size, dtype=np.int64)
    for r in range(n_rois):  # sort the pixels of each ROI
        lo, hi = indptr[r], indptr[r + 1]
        order[lo:hi] = lo + np.argsort(indices[lo:hi], kind="stable")
    idx = indices[order]
    a = np.asarray(weights, dtype=np.float64)[order]
    w2 = np.asarray(mask_weights, dtype=np.float64)[order] ** 2
    new_run = np.ones(idx.size, dtype=bool)
    if idx.size:
        new_run[1:] = idx[1:] != idx[:-1] + 1
        new_run[indptr[:-1][indptr[:-1] < idx.size]] = True
    run_offset = np.flatnonzero(new_run).astype(np.int64)
    run_start = idx[run_offset]
    run_length = np.diff(np.append(run_offset, idx.size)).astype(np.int64)
    roi_ptr = np.searchsorted(run_offset, indptr).astype(np.int64)
    owner = np.repeat(np.arange(n_rois), np.diff(indptr))
    total = np.bincount(owner, weights=w2, minlength=n_rois).astype(np.float64)
    return RunWeights(roi_ptr, run_start, run_length, run_offset, a, w2, total)


@njit(cache=True, nogil=True, parallel=True, fastmath=_FASTMATH)
def _extract_float(x, roi_ptr, run_start, run_length, run_offset, a, w2, total, out):
    n = x.shape[0]
    n_rois = roi_ptr.size - 1
    for t in prange(n):  # pragma: no cover - compiled
        row = x[t]
        res = out[t]
        for r in range(n_rois):
            acc = 0.0
            seen = 0.0
            for q in range(roi_ptr[r], roi_ptr[r + 1]):
                s = run_start[q]
                o = run_offset[q]
                for i in range(run_length[q]):
                    v = np.float64(row[s + i])
                    ok = v - v == 0.0
                    acc += a[o + i] * v if ok else 0.0
                    seen += w2[o + i] if ok else 0.0
            if seen > 0.0:
                res[r] = acc if seen == total[r] else acc * (total[r] / seen)
            else:
                res[r] = np.nan


@njit(cache=True, nogil=True, parallel=True, fastmath=_FASTMATH)
def _extract_int(x, roi_ptr, run_start, run_length, run_offset, a, total, out):
    n = x.shape[0]
    n_rois = roi_ptr.size - 1
    for t in prange(n):  # pragma: no cover - compiled
        row = x[t]
        res = out[t]
        for r in range(n_rois):
            acc = 0.0
            for q in range(roi_ptr[r], roi_ptr[r + 1]):
                s = run_start[q]
                o = run_offset[q]
                for i in range(run_length[q]):
                    acc += a[o + i] * np.float64(row[s + i])
            res[r] = acc if total[r] > 0.0 else np.nan


def extract_runs(chunk: np.ndarray, plan: RunWeights, out: np.ndarray) -> np.ndarray:
    """Weighted sums of every ROI in every frame of a chunk.

    Parameters
    ----------
    chunk : numpy.ndarray, shape (frames, pixels)
        C-contiguous frames (uint8/uint16/int16/int32/float32/float64).
    plan : RunWeights
        The ROI weights.
    out : numpy.ndarray, shape (frames, n_rois), float32 or float64
        Written in place.

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    x = np.ascontiguousarray(chunk)
    if out.shape != (x.shape[0], plan.n_rois):
        raise ValueError(f"out must have shape {(x.shape[0], plan.n_rois)}, got {out.shape}")
    args = (plan.roi_ptr, plan.run_start, plan.run_length, plan.run_offset, plan.weights)
    if x.dtype.kind == "f":
        _extract_float(x, *args, plan.reweight, plan.total, out)
    elif x.dtype.kind in "iu":
        _extract_int(x, *args, plan.total, out)
    else:
        raise TypeError(f"chunk must hold numbers, got dtype {x.dtype}")
    return out

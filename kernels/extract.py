"""Sparse-mask signal extraction: per frame and ROI, a NaN-aware weighted sum.

The ROI weights start as *runs* (:class:`RunWeights`): for every ROI, the
stretches of consecutive flattened pixels it covers (a cell of ~140 pixels is
a dozen runs, one per image row), each with its weights. For the kernels the
runs are cut into fixed-width *chunks* of 16 pixels with zero-padded weights
(:func:`chunk_runs`), so the innermost loop has a constant trip count and
compiles to a few straight vector instructions with no loop-exit branch to
mispredict.

Four frames are summed per pass over an ROI's chunks, so each weight is
loaded once for four frames. The four are written out (four frame rows, four
accumulators) in the sum helpers, so they stay in registers: the number is
part of the code, not a setting. For ROI ``r`` in frame ``t`` the kernels compute,
over the pixels whose value is finite in that frame::

    value = Σ a_p x_p · (Σ_all w_p² / Σ_finite w_p²)

where ``a_p`` are the extraction weights (``w_p / μ_p`` for sima_fast's
``extract``) and ``w_p`` the mask weights used for the NaN re-weighting
(see "Extraction" in docs/contract.md). An ROI with no finite pixel in a frame gives NaN.

Memory access is *banded* (:class:`ChunkLayout`): the frame is walked in bands
of rows (64 KiB of each frame). Each band of the four frames is first read in
one sequential sweep, which the hardware prefetchers stream at full memory
bandwidth, and then every ROI whose last pixel lies in that band is summed,
its rows all still in the core's L2 cache. Walking the ROIs in their stored
order instead reads a few bytes at scattered places of four frames (2–4 MB,
more than L2) and waits on the L3 cache or on memory at every chunk; banding
is about 1.5x faster on 512x512 frames with 500 cells.

The sweep of a band also tells float input whether the band holds a NaN or
an infinity in any of the four frames. ROIs that only touch clean bands are
summed without a finiteness test; the others take the tested loop. Integer
input needs no test. Groups of four frames are independent, so the work is
split over them and the result does not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from sima_fast.kernels._jit import FASTMATH, jit

__all__ = ["ChunkLayout", "RunWeights", "chunk_runs", "extract_runs", "runs_from_csr"]


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
    n_weighted : int
        Rows from ``n_weighted`` on have one weight for all their pixels (the
        neuropil surrounds): on 8- and 16-bit integer frames their pixels
        are summed as integers and the sum scaled once. Default: every row
        is weighted pixel by pixel.
    """

    def __init__(
        self, roi_ptr, run_start, run_length, run_offset, weights, reweight, total, n_weighted=None
    ):
        self.roi_ptr = roi_ptr
        self.run_start = run_start
        self.run_length = run_length
        self.run_offset = run_offset
        self.weights = weights
        self.reweight = reweight
        self.total = total
        self.n_weighted = self.n_rois if n_weighted is None else int(n_weighted)

    @property
    def n_rois(self) -> int:
        """Number of ROIs."""
        return int(self.roi_ptr.size - 1)


def runs_from_csr(indptr, indices, weights, mask_weights, n_weighted=None) -> RunWeights:
    """Build :class:`RunWeights` from a CSR matrix of ROIs × pixels.

    Parameters
    ----------
    indptr, indices : int arrays
        CSR structure (one row per ROI; column indices are flattened pixels).
    weights : float array
        Extraction weights ``a_p`` in CSR order.
    mask_weights : float array
        Mask weights ``w_p`` in CSR order (for the NaN re-weighting).
    n_weighted : int, optional
        Rows from this one on have a single weight each (see
        :class:`RunWeights`); their weights are checked to be so. Default:
        none.

    Returns
    -------
    RunWeights
        Each ROI's pixels sorted and cut into runs of consecutive pixels,
        with ``weights`` and ``reweight = w_p²`` in that order (float64) and
        ``total = Σ w_p²`` per ROI (0 for an ROI without pixels).
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
    if n_weighted is not None:
        tail = slice(int(indptr[n_weighted]), None)
        ta, to = a[tail], owner[tail]
        if ta.size and (ta != a[indptr[to]]).any():
            raise ValueError("rows from n_weighted on must have one weight each")
    return RunWeights(roi_ptr, run_start, run_length, run_offset, a, w2, total, n_weighted)


#: Pixels per chunk of the padded layout (see :func:`chunk_runs`). The kernels
#: are compiled for this width; frames of fewer pixels are padded to it.
CHUNK_WIDTH = 16

_W = np.uint64(CHUNK_WIDTH)  # the kernels' chunk loop (a compile-time constant)

#: Bytes of each frame per band (see the module docstring): four frames of one
#: band, plus the band before it that the ROIs reach back into, fit in a 1 MiB L2.
BAND_BYTES = 1 << 16


def chunk_runs(
    roi_ptr: np.ndarray,
    run_start: np.ndarray,
    run_length: np.ndarray,
    run_offset: np.ndarray,
    weights: np.ndarray,
    reweight: np.ndarray,
    n_pixels: int,
    width: int = CHUNK_WIDTH,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lay the runs of :class:`RunWeights` out as fixed-width chunks.

    Every run is cut into chunks of ``width`` consecutive pixels (fewer for a
    frame of fewer pixels); a chunk's weights are padded with zeros, and a
    chunk that would pass the end of the frame starts earlier instead, its
    weights shifted to match. A loop over chunks has a fixed trip count, which
    avoids a mispredicted branch at the end of every short run. Zero-weight
    pixels add nothing (their NaNs are skipped like any other and do not
    count as missing).

    Parameters
    ----------
    roi_ptr : numpy.ndarray of int, shape (n_rois + 1,)
        Runs of ROI ``r`` are ``roi_ptr[r]:roi_ptr[r + 1]``.
    run_start, run_length, run_offset : numpy.ndarray of int, shape (n_runs,)
        First pixel of each run, its length, and where its weights start in
        ``weights`` and ``reweight``.
    weights : numpy.ndarray of float, shape (nnz,)
        Extraction weights ``a_p``.
    reweight : numpy.ndarray of float, shape (nnz,)
        Squared mask weights ``w_p²``.
    n_pixels : int
        Pixels per frame: no chunk reaches past it.
    width : int, optional
        Pixels per chunk (default :data:`CHUNK_WIDTH`, the width the kernels
        are compiled for); at most ``n_pixels``.

    Returns
    -------
    chunk_ptr : int64 (n_rois + 1,)
        Chunks of ROI r are ``chunk_ptr[r]:chunk_ptr[r + 1]``.
    chunk_start : int64 (n_chunks,)
        First pixel of each chunk.
    a, w2 : float64 (n_chunks * width,)
        Extraction weights and squared mask weights, ``width`` per chunk.

    Examples
    --------
    >>> ptr, start, a, w2 = chunk_runs(np.array([0, 1]), np.array([3]), np.array([5]),
    ...                                np.array([0]), np.arange(1.0, 6.0), np.ones(5), 8, 4)
    >>> ptr.tolist(), start.tolist(), a.tolist()
    ([0, 2], [3, 4], [1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 5.0])
    """
    width = int(max(1, min(width, n_pixels)))
    length = np.asarray(run_length, dtype=np.int64)
    per_run = -(-length // width)
    n_chunks = int(per_run.sum())
    run_of = np.repeat(np.arange(length.size), per_run)
    first_chunk = np.cumsum(per_run) - per_run
    c0 = (np.arange(n_chunks) - first_chunk[run_of]) * width  # offset of the chunk in its run
    n_in = np.minimum(width, length[run_of] - c0)
    want = np.asarray(run_start, dtype=np.int64)[run_of] + c0
    start = np.minimum(want, n_pixels - width)
    shift = want - start
    a = np.zeros(n_chunks * width)
    w2 = np.zeros(n_chunks * width)
    chunk_of = np.repeat(np.arange(n_chunks), n_in)
    within = np.arange(chunk_of.size) - np.repeat(np.cumsum(n_in) - n_in, n_in)
    dest = chunk_of * width + shift[chunk_of] + within
    src = np.asarray(run_offset, dtype=np.int64)[run_of][chunk_of] + c0[chunk_of] + within
    a[dest] = np.asarray(weights, dtype=np.float64)[src]
    w2[dest] = np.asarray(reweight, dtype=np.float64)[src]
    run_ptr = np.asarray(roi_ptr, dtype=np.int64)
    chunk_ptr = np.concatenate([[0], np.cumsum(per_run)])[run_ptr]
    return chunk_ptr.astype(np.int64), start.astype(np.int64), a, w2


class ChunkLayout:
    """The kernels' view of :class:`RunWeights` for frames of a given size and dtype.

    Attributes
    ----------
    ptr, start, a, w2 : numpy.ndarray
        The chunks of :func:`chunk_runs` (width :data:`CHUNK_WIDTH`).
    band : int
        Pixels per band (:data:`BAND_BYTES` of one frame, at least one chunk).
    order : int64 (n_rois,)
        ROIs sorted by their last pixel.
    band_end : int64 (n_bands,)
        ROIs ``order[:band_end[k]]`` end in bands ``0..k``.
    first_band : int64 (n_rois,)
        The band of each ROI's first pixel.
    """

    def __init__(self, plan: RunWeights, n_pixels: int, itemsize: int):
        if n_pixels < CHUNK_WIDTH:
            raise ValueError(f"frames of {n_pixels} pixels must be padded to {CHUNK_WIDTH}")
        self.ptr, self.start, self.a, self.w2 = chunk_runs(
            plan.roi_ptr, plan.run_start, plan.run_length, plan.run_offset, plan.weights,
            plan.reweight, n_pixels, CHUNK_WIDTH,
        )  # fmt: skip
        band = max(CHUNK_WIDTH, BAND_BYTES // int(itemsize))
        self.band = int(band)
        n_rois = self.ptr.size - 1
        n_chunks = np.diff(self.ptr)
        has = n_chunks > 0
        first = np.zeros(n_rois, dtype=np.int64)
        last = np.zeros(n_rois, dtype=np.int64)
        if self.start.size:
            # the ROIs with chunks, in order: one reduceat segment each
            lo = self.ptr[:-1][has]
            first[has] = np.minimum.reduceat(self.start, lo)
            last[has] = np.maximum.reduceat(self.start, lo) + CHUNK_WIDTH - 1
        n_bands = -(-n_pixels // band)
        self.order = np.argsort(last, kind="stable").astype(np.int64)
        ends = (np.arange(n_bands, dtype=np.int64) + 1) * band
        self.band_end = np.searchsorted(last[self.order], ends, side="left").astype(np.int64)
        self.band_end[-1] = n_rois
        self.first_band = (first // band).astype(np.int64)
        # uniform rows (RunWeights.n_weighted) on small integers: a 0/-1 mask and one scale
        self.n_weighted = int(plan.n_weighted) if int(itemsize) <= 2 else n_rois
        if self.n_weighted < n_rois:
            self.mask = (self.a != 0.0).astype(np.float32)
            self.scale = np.zeros(n_rois)
            ok = has[self.n_weighted :]
            rows = np.arange(self.n_weighted, n_rois)[ok]
            self.scale[rows] = plan.weights[plan.run_offset[plan.roi_ptr[rows]]]
        else:
            self.mask = np.zeros(1, dtype=np.float32)
            self.scale = np.zeros(1)


def _layout(plan: RunWeights, n_pixels: int, itemsize: int) -> ChunkLayout:
    """Return the (cached) :class:`ChunkLayout` of ``plan`` for ``n_pixels`` × ``itemsize``."""
    cache = plan.__dict__.setdefault("_layouts", {})
    key = (int(n_pixels), int(itemsize))
    if key not in cache:
        cache[key] = ChunkLayout(plan, n_pixels, itemsize)
    return cache[key]


@jit(inline="always")
def _sweep_int(x0, x1, x2, x3, lo, hi):  # pragma: no cover - compiled
    """Read pixels ``lo:hi`` of four integer frames in one sequential pass."""
    y0 = x0[lo:hi]
    y1 = x1[lo:hi]
    y2 = x2[lo:hi]
    y3 = x3[lo:hi]
    acc = y0[0] ^ y0[0]
    for i in range(y0.shape[0]):
        acc ^= (y0[i] ^ y1[i]) ^ (y2[i] ^ y3[i])
    return acc


@jit(inline="always", fastmath=FASTMATH)
def _sweep_float(x0, x1, x2, x3, lo, hi):  # pragma: no cover - compiled
    """Read pixels ``lo:hi`` of four float frames; True if they are all finite."""
    y0 = x0[lo:hi]
    y1 = x1[lo:hi]
    y2 = x2[lo:hi]
    y3 = x3[lo:hi]
    acc = y0[0] - y0[0]
    for i in range(y0.shape[0]):
        # x - x is 0 for a finite x and NaN for NaN or ±inf
        acc += ((y0[i] - y0[i]) + (y1[i] - y1[i])) + ((y2[i] - y2[i]) + (y3[i] - y3[i]))
    return acc == 0.0


@jit(inline="always", fastmath=FASTMATH)
def _sum4(x0, x1, x2, x3, lo, hi, start, a):  # pragma: no cover - compiled
    """Σ a_p x_p over chunks ``lo:hi`` for four frames (no finiteness test)."""
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    for q in range(lo, hi):
        # unsigned indices: no negative-index wraparound, so the chunk loop vectorises
        s = np.uint64(start[q])
        o = np.uint64(q) * _W
        # per-chunk partial sums keep the loop-carried dependency to one add
        c0 = 0.0
        c1 = 0.0
        c2 = 0.0
        c3 = 0.0
        for i in range(_W):
            wi = a[o + i]
            c0 += wi * np.float64(x0[s + i])
            c1 += wi * np.float64(x1[s + i])
            c2 += wi * np.float64(x2[s + i])
            c3 += wi * np.float64(x3[s + i])
        a0 += c0
        a1 += c1
        a2 += c2
        a3 += c3
    return a0, a1, a2, a3


@jit(inline="always", fastmath=FASTMATH)
def _sum4_mask(x0, x1, x2, x3, lo, hi, start, mask):  # pragma: no cover - compiled
    """Σ x_p over the pixels of chunks ``lo:hi`` where ``mask`` is 1, four integer frames."""
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    for q in range(lo, hi):
        s = np.uint64(start[q])
        o = np.uint64(q) * _W
        # 16 pixels of at most 16 bits: the chunk's sum (< 2**24) is exact in float32,
        # which holds twice as many lanes per vector as float64
        c0 = np.float32(0.0)
        c1 = np.float32(0.0)
        c2 = np.float32(0.0)
        c3 = np.float32(0.0)
        for i in range(_W):
            m = mask[o + i]
            c0 += np.float32(x0[s + i]) * m
            c1 += np.float32(x1[s + i]) * m
            c2 += np.float32(x2[s + i]) * m
            c3 += np.float32(x3[s + i]) * m
        a0 += np.float64(c0)
        a1 += np.float64(c1)
        a2 += np.float64(c2)
        a3 += np.float64(c3)
    return a0, a1, a2, a3


@jit(inline="always", fastmath=FASTMATH)
def _sum4_checked(x0, x1, x2, x3, lo, hi, start, a, w2, acc, seen):  # pragma: no cover
    """Σ a_p x_p into ``acc`` and Σ w_p² into ``seen`` over the finite pixels, four frames."""
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    v0 = 0.0
    v1 = 0.0
    v2 = 0.0
    v3 = 0.0
    for q in range(lo, hi):
        s = np.uint64(start[q])
        o = np.uint64(q) * _W
        c0 = 0.0
        c1 = 0.0
        c2 = 0.0
        c3 = 0.0
        d0 = 0.0
        d1 = 0.0
        d2 = 0.0
        d3 = 0.0
        for i in range(_W):
            wi = a[o + i]
            qi = w2[o + i]
            y0 = x0[s + i]
            y1 = x1[s + i]
            y2 = x2[s + i]
            y3 = x3[s + i]
            ok0 = y0 - y0 == 0
            ok1 = y1 - y1 == 0
            ok2 = y2 - y2 == 0
            ok3 = y3 - y3 == 0
            c0 += wi * np.float64(y0) if ok0 else 0.0
            c1 += wi * np.float64(y1) if ok1 else 0.0
            c2 += wi * np.float64(y2) if ok2 else 0.0
            c3 += wi * np.float64(y3) if ok3 else 0.0
            d0 += qi if ok0 else 0.0
            d1 += qi if ok1 else 0.0
            d2 += qi if ok2 else 0.0
            d3 += qi if ok3 else 0.0
        a0 += c0
        a1 += c1
        a2 += c2
        a3 += c3
        v0 += d0
        v1 += d1
        v2 += d2
        v3 += d3
    acc[0] = a0
    acc[1] = a1
    acc[2] = a2
    acc[3] = a3
    seen[0] = v0
    seen[1] = v1
    seen[2] = v2
    seen[3] = v3


@jit(parallel=True, fastmath=FASTMATH)
def _extract_int(
    x, ptr, start, a, total, order, band_end, band, n_weighted, mask, scale, out, sink
):
    n, P = x.shape
    nblocks = (n + 3) // 4
    for b in prange(nblocks):  # pragma: no cover - compiled
        t0 = 4 * b
        m = min(4, n - t0)
        x0 = x[t0]
        x1 = x[t0 + min(1, m - 1)]
        x2 = x[t0 + min(2, m - 1)]
        x3 = x[t0 + min(3, m - 1)]
        acc = np.empty(4)
        touched = 0
        j = 0
        for k in range(band_end.shape[0]):
            touched += _sweep_int(x0, x1, x2, x3, k * band, min(P, (k + 1) * band))
            while j < band_end[k]:
                r = order[j]
                j += 1
                if r < n_weighted:
                    acc[0], acc[1], acc[2], acc[3] = _sum4(
                        x0, x1, x2, x3, ptr[r], ptr[r + 1], start, a
                    )
                else:
                    i0, i1, i2, i3 = _sum4_mask(x0, x1, x2, x3, ptr[r], ptr[r + 1], start, mask)
                    c = scale[r]
                    acc[0] = i0 * c
                    acc[1] = i1 * c
                    acc[2] = i2 * c
                    acc[3] = i3 * c
                empty = not total[r] > 0.0
                for i in range(m):
                    out[t0 + i, r] = np.nan if empty else acc[i]
        sink[b] = touched


@jit(parallel=True, fastmath=FASTMATH)
def _extract_float(x, ptr, start, a, w2, total, order, band_end, first_band, band, out):
    n, P = x.shape
    n_bands = band_end.shape[0]
    nblocks = (n + 3) // 4
    for b in prange(nblocks):  # pragma: no cover - compiled
        t0 = 4 * b
        m = min(4, n - t0)
        x0 = x[t0]
        x1 = x[t0 + min(1, m - 1)]
        x2 = x[t0 + min(2, m - 1)]
        x3 = x[t0 + min(3, m - 1)]
        acc = np.empty(4)
        seen = np.empty(4)
        # dirty_since[k]: the last band <= k holding a NaN/inf in one of the frames
        dirty_since = np.empty(n_bands, dtype=np.int64)
        last_dirty = -1
        j = 0
        for k in range(n_bands):
            if not _sweep_float(x0, x1, x2, x3, k * band, min(P, (k + 1) * band)):
                last_dirty = k
            dirty_since[k] = last_dirty
            while j < band_end[k]:
                r = order[j]
                j += 1
                lo = ptr[r]
                hi = ptr[r + 1]
                tot = total[r]
                if dirty_since[k] < first_band[r]:
                    acc[0], acc[1], acc[2], acc[3] = _sum4(x0, x1, x2, x3, lo, hi, start, a)
                    for i in range(m):
                        out[t0 + i, r] = acc[i] if tot > 0.0 else np.nan
                else:
                    _sum4_checked(x0, x1, x2, x3, lo, hi, start, a, w2, acc, seen)
                    for i in range(m):
                        if seen[i] > 0.0:
                            out[t0 + i, r] = acc[i] if seen[i] == tot else acc[i] * (tot / seen[i])
                        else:
                            out[t0 + i, r] = np.nan


def extract_runs(chunk: np.ndarray, plan: RunWeights, out: np.ndarray) -> np.ndarray:
    """Weighted sums of every ROI in every frame of a chunk.

    Parameters
    ----------
    chunk : numpy.ndarray, shape (frames, pixels)
        Frames (uint8/uint16/int16/int32/float32/float64); made C-contiguous
        if they are not.
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
    if x.ndim != 2:
        raise ValueError(f"chunk must be 2-D (frames, pixels), got shape {x.shape}")
    if out.shape != (x.shape[0], plan.n_rois):
        raise ValueError(f"out must have shape {(x.shape[0], plan.n_rois)}, got {out.shape}")
    if x.dtype.kind not in "iuf":
        raise TypeError(f"chunk must hold numbers, got dtype {x.dtype}")
    if x.shape[0] == 0 or plan.n_rois == 0:
        return out
    if x.shape[1] < CHUNK_WIDTH:  # tiny frames: pad with zeros (zero weights there)
        padded = np.zeros((x.shape[0], CHUNK_WIDTH), dtype=x.dtype)
        padded[:, : x.shape[1]] = x
        x = padded
    lay = _layout(plan, x.shape[1], x.itemsize)
    if x.dtype.kind == "f":
        _extract_float(
            x, lay.ptr, lay.start, lay.a, lay.w2, plan.total, lay.order, lay.band_end,
            lay.first_band, lay.band, out,
        )  # fmt: skip
    else:
        sink = np.empty((x.shape[0] + 3) // 4, dtype=np.int64)
        _extract_int(
            x, lay.ptr, lay.start, lay.a, plan.total, lay.order, lay.band_end, lay.band,
            lay.n_weighted, lay.mask, lay.scale, out, sink,
        )  # fmt: skip
    return out

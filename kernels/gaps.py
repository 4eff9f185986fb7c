"""Kernels that move pixels in time or space: gap filling and displacement placement.

Gap filling (see "Gap filling" in docs/contract.md): per pixel, the output
at frame t is the last finite value at or before t; before the first finite
value it is that first finite value; a pixel never observed stays NaN. It
streams in two passes: :func:`first_finite` finds each pixel's first finite
value (and stops as soon as every pixel has one), then :func:`fill_forward`
emits chunk after chunk, carrying each pixel's last finite value as state.
:func:`last_finite_before` rebuilds that state for a read that starts in the
middle of a sequence.

:func:`place_displaced_rows` is the engine behind
``Sequence.apply_displacements``: every source row of every frame is written
at its displaced position and pixels that receive several values get their
mean, or NaN if any of those values is NaN or infinite (as in SIMA, a
missing value is not averaged away); pixels that receive none are NaN.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from sima_fast.kernels._jit import jit

__all__ = ["fill_forward", "first_finite", "last_finite_before", "place_displaced_rows"]

#: Pixels per parallel work item of the gap-filling kernels.
BLOCK_PIXELS = 16384


@jit(parallel=True)
def _fill_forward(x, last, out, block):  # pragma: no cover - compiled
    T, P = x.shape
    nblocks = (P + block - 1) // block
    for b in prange(nblocks):
        p0 = b * block
        p1 = min(P, p0 + block)
        state = last[p0:p1]
        for t in range(T):
            src = x[t, p0:p1]
            dst = out[t, p0:p1]
            for i in range(p1 - p0):
                v = src[i]
                keep = v - v == 0
                w = v if keep else state[i]
                state[i] = w
                dst[i] = w


@jit(parallel=True)
def _scan_finite(x, found, value, reverse, block):  # pragma: no cover - compiled
    T, P = x.shape
    nblocks = (P + block - 1) // block
    missing = np.zeros(nblocks, dtype=np.int64)
    for b in prange(nblocks):
        p0 = b * block
        p1 = min(P, p0 + block)
        left = 0
        for i in range(p0, p1):
            if not found[i]:
                left += 1
        for s in range(T):
            if left == 0:
                break
            t = T - 1 - s if reverse else s
            for i in range(p0, p1):
                if not found[i]:
                    v = x[t, i]
                    if v - v == 0:
                        value[i] = v
                        found[i] = True
                        left -= 1
        missing[b] = left
    return missing.sum()


def fill_forward(chunk: np.ndarray, last: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Replace non-finite values by each pixel's last finite value, streaming.

    Parameters
    ----------
    chunk : numpy.ndarray, shape (frames, pixels), float32 or float64
        Consecutive frames.
    last : numpy.ndarray, shape (pixels,), same dtype as ``out``
        Each pixel's last finite value before the chunk (or its first finite
        value when there is none before; NaN when never observed). Updated in
        place to the state after the chunk.
    out : numpy.ndarray, shape (frames, pixels)
        The filled frames (may be ``chunk`` itself).

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    _fill_forward(chunk, last, out, BLOCK_PIXELS)
    return out


def first_finite(chunk: np.ndarray, found: np.ndarray, value: np.ndarray) -> int:
    """Record each not-yet-found pixel's first finite value in ``chunk``.

    Called on consecutive chunks from the start of a sequence, it gives every
    pixel's first finite value; the scan of a block of pixels stops as soon
    as all of them are found.

    Parameters
    ----------
    chunk : numpy.ndarray, shape (frames, pixels)
        Consecutive frames (float32 or float64), read.
    found : numpy.ndarray of bool, shape (pixels,)
        Updated in place: pixels already found are skipped, and a pixel is
        set to True when its first finite value turns up.
    value : numpy.ndarray, shape (pixels,)
        Updated in place: receives the first finite value of each pixel
        found in this chunk (entries of other pixels are left as they are).

    Returns
    -------
    int
        How many pixels are still without a finite value; 0 means later
        chunks need not be read.
    """
    return int(_scan_finite(chunk, found, value, False, BLOCK_PIXELS))


def last_finite_before(chunk: np.ndarray, found: np.ndarray, value: np.ndarray) -> int:
    """Record each not-yet-found pixel's last finite value in ``chunk``.

    Like :func:`first_finite`, scanning the chunk from its last frame
    backwards. Called on chunks going backwards from a frame ``t``, it gives
    each pixel's last finite value before ``t``: the state from which
    :func:`fill_forward` continues a read that starts at ``t``.

    Parameters
    ----------
    chunk : numpy.ndarray, shape (frames, pixels)
        Consecutive frames (float32 or float64), read.
    found : numpy.ndarray of bool, shape (pixels,)
        Updated in place: pixels already found are skipped, and a pixel is
        set to True when a finite value turns up.
    value : numpy.ndarray, shape (pixels,)
        Updated in place: receives the last finite value in this chunk of
        each pixel found in it.

    Returns
    -------
    int
        How many pixels are still without a finite value; 0 means earlier
        chunks need not be read.
    """
    return int(_scan_finite(chunk, found, value, True, BLOCK_PIXELS))


@jit(parallel=True)
def _place_rows(src, rows, out):  # pragma: no cover - compiled
    n, Z, Y, X, C = src.shape
    Zo, Yo, Xo = out.shape[1], out.shape[2], out.shape[3]
    nan = np.nan
    for t in prange(n):
        # Counting sort of the source rows by the output row they land on.
        count = np.zeros(Zo * Yo + 1, dtype=np.int64)
        for z in range(Z):
            for y in range(Y):
                tz = z + rows[t, z, y, 0]
                ty = y + rows[t, z, y, 1]
                if 0 <= tz < Zo and 0 <= ty < Yo:
                    count[tz * Yo + ty + 1] += 1
        for k in range(Zo * Yo):
            count[k + 1] += count[k]
        fill = count[:-1].copy()
        order = np.empty(count[-1], dtype=np.int64)
        for z in range(Z):
            for y in range(Y):
                tz = z + rows[t, z, y, 0]
                ty = y + rows[t, z, y, 1]
                if 0 <= tz < Zo and 0 <= ty < Yo:
                    order[fill[tz * Yo + ty]] = z * Y + y
                    fill[tz * Yo + ty] += 1
        for tz in range(Zo):
            for ty in range(Yo):
                lo = count[tz * Yo + ty]
                hi = count[tz * Yo + ty + 1]
                dst = out[t, tz, ty]
                flat = dst.reshape(Xo * C)
                if hi == lo:  # nothing lands here
                    for i in range(Xo * C):
                        flat[i] = nan
                elif hi - lo == 1:  # one source row: a shifted copy
                    z = order[lo] // Y
                    y = order[lo] % Y
                    dx = rows[t, z, y, 2]
                    row = src[t, z, y].reshape(X * C)
                    i0 = min(max(dx, 0), Xo) * C
                    i1 = min(max(dx + X, 0), Xo) * C
                    shift = dx * C
                    for i in range(i0):
                        flat[i] = nan
                    for i in range(i0, i1):
                        v = row[i - shift]
                        flat[i] = v if v - v == 0 else nan
                    for i in range(i1, Xo * C):
                        flat[i] = nan
                else:  # several source rows: their mean; NaN if any of them is missing
                    acc = np.zeros((Xo, C))
                    cnt = np.zeros((Xo, C), dtype=np.int64)
                    for q in range(lo, hi):
                        z = order[q] // Y
                        y = order[q] % Y
                        dx = rows[t, z, y, 2]
                        row = src[t, z, y]
                        for x in range(max(dx, 0), min(dx + X, Xo)):
                            for c in range(C):
                                v = np.float64(row[x - dx, c])
                                if v - v == 0:
                                    if cnt[x, c] >= 0:
                                        acc[x, c] += v
                                        cnt[x, c] += 1
                                else:  # a missing value makes the pixel missing (SIMA's rule)
                                    cnt[x, c] = -1
                    for x in range(Xo):
                        for c in range(C):
                            k = cnt[x, c]
                            dst[x, c] = acc[x, c] / k if k > 0 else nan


def place_displaced_rows(src: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write every source row at its displaced position, averaging rows that collide.

    Parameters
    ----------
    src : numpy.ndarray, shape (n, Z, Y, X, C)
        Source frames (uint16, int16, float32 or float64; any numeric dtype).
    rows : numpy.ndarray of int64, shape (n, Z, Y, 3)
        ``(dz, dy, dx)`` for every source row: row ``y`` of plane ``z`` lands
        at plane ``z + dz``, row ``y + dy``, columns shifted by ``dx``.
    out : numpy.ndarray of float32 or float64, shape (n, Zo, Yo, Xo, C)
        Output frames, overwritten.

    Returns
    -------
    numpy.ndarray
        ``out``: the mean of the values that landed on each pixel; NaN where
        none did or where any of them is NaN or infinite (SIMA's rule: a
        missing value is never averaged away). Values falling outside
        ``out`` are dropped.
    """
    if (
        src.ndim != 5
        or out.ndim != 5
        or src.shape[0] != out.shape[0]
        or src.shape[4] != out.shape[4]
    ):
        raise ValueError(f"incompatible shapes: src {src.shape}, out {out.shape}")
    if rows.shape != (*src.shape[:3], 3):
        raise ValueError(f"rows must have shape {(*src.shape[:3], 3)}, got {rows.shape}")
    _place_rows(src, np.ascontiguousarray(rows, dtype=np.int64), out)
    return out

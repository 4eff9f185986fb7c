"""Kernels that move pixels in time or space: displacement placement.

:func:`place_displaced_rows` is the engine behind
``Sequence.apply_displacements``: every source row of every frame is written
at its displaced position and pixels that receive several values get their
mean (non-finite source values are ignored); pixels that receive none are NaN.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["place_displaced_rows"]


@njit(cache=True, nogil=True, parallel=True)
def _place_rows(src, rows, out):  # pragma: no cover - compiled
    n, Z, Y, X, C = src.shape
    Zo, Yo, Xo = out.shape[1], out.shape[2], out.shape[3]
    for t in prange(n):
        acc = np.zeros((Zo, Yo, Xo, C), dtype=np.float64)
        cnt = np.zeros((Zo, Yo, Xo, C), dtype=np.int32)
        for z in range(Z):
            for y in range(Y):
                tz = z + rows[t, z, y, 0]
                ty = y + rows[t, z, y, 1]
                dx = rows[t, z, y, 2]
                if tz < 0 or tz >= Zo or ty < 0 or ty >= Yo:
                    continue
                for x in range(X):
                    tx = x + dx
                    if tx < 0 or tx >= Xo:
                        continue
                    for c in range(C):
                        v = np.float64(src[t, z, y, x, c])
                        if np.isfinite(v):
                            acc[tz, ty, tx, c] += v
                            cnt[tz, ty, tx, c] += 1
        for z in range(Zo):
            for y in range(Yo):
                for x in range(Xo):
                    for c in range(C):
                        k = cnt[z, y, x, c]
                        if k == 0:
                            out[t, z, y, x, c] = np.nan
                        elif k == 1:
                            out[t, z, y, x, c] = acc[z, y, x, c]
                        else:
                            out[t, z, y, x, c] = acc[z, y, x, c] / k


def place_displaced_rows(src: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Write every source row at its displaced position, averaging collisions.

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
        ``out``: the mean of the finite values that landed on each pixel, NaN
        where none did. Values falling outside ``out`` are dropped.
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

"""Yardsticks for the benchmarks: what the machine allows a pass over a movie.

:func:`read_sum` is a streaming read of a large array, the machine's
memory-read bandwidth: the benchmark harness reports sima_fast's throughput
as a fraction of what it reaches on the same machine in the same run (the sum
of a float32 array far larger than the caches, split into one contiguous
block per thread).

:func:`mean_var_sums` is the moments pass of
:mod:`sima_fast.kernels.moments` with its third and fourth powers left out
(half the arithmetic): between the bare read and the full pass, it tells
whether a pass is bound by memory or by arithmetic.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from sima_fast.kernels._jit import FASTMATH, jit

__all__ = ["mean_var_sums", "read_sum"]


@jit(fastmath=True)
def _block_sum(x, start, stop):  # pragma: no cover - compiled
    # A slice indexed from 0 (no negative-index wraparound) and fastmath
    # (reassociation) let the loop vectorise, so it is bound by memory.
    y = x[start:stop]
    total = np.float32(0.0)
    for i in range(y.shape[0]):
        total += y[i]
    return total


@jit(parallel=True)
def _read_sum(x, n_blocks):  # pragma: no cover - compiled
    size = x.shape[0]
    partial = np.zeros(n_blocks)
    for j in prange(n_blocks):
        partial[j] = _block_sum(x, size * j // n_blocks, size * (j + 1) // n_blocks)
    return partial.sum()


def read_sum(x: np.ndarray, n_threads: int) -> float:
    """Sum a large float32 array in one streaming read: the memory-bandwidth yardstick.

    The array is cut into one contiguous block per thread; each block is
    summed in float32 lanes (so the sum is approximate), the blocks' sums in
    float64.

    Parameters
    ----------
    x : numpy.ndarray of float32, shape (n,)
        The array, read.
    n_threads : int
        Contiguous blocks, one per numba thread (at least 1).

    Returns
    -------
    float
        The approximate sum (returned, so the read cannot be optimised
        away; :func:`sima_fast.bench.memory_bandwidth` checks it).

    Raises
    ------
    ValueError
        If ``x`` is not a 1-D float32 array.
    """
    if x.ndim != 1 or x.dtype != np.float32:
        raise ValueError("x must be a 1-D float32 array")
    return float(_read_sum(x, max(1, int(n_threads))))


@jit(parallel=True, fastmath=FASTMATH)
def _mean_var_sums(x, k, s1, s2, block):  # pragma: no cover - compiled
    T, P = x.shape
    for b in prange((P + block - 1) // block):
        p0 = b * block
        p1 = min(P, p0 + block)
        kk = k[p0:p1]
        a1 = s1[p0:p1]
        a2 = s2[p0:p1]
        for t in range(0, T - T % 8, 8):
            r0 = x[t, p0:p1]
            r1 = x[t + 1, p0:p1]
            r2 = x[t + 2, p0:p1]
            r3 = x[t + 3, p0:p1]
            r4 = x[t + 4, p0:p1]
            r5 = x[t + 5, p0:p1]
            r6 = x[t + 6, p0:p1]
            r7 = x[t + 7, p0:p1]
            for i in range(p1 - p0):  # 1-D rows indexed from 0: the loop vectorises
                ki = kk[i]
                d0 = np.float64(r0[i]) - ki
                d1 = np.float64(r1[i]) - ki
                d2 = np.float64(r2[i]) - ki
                d3 = np.float64(r3[i]) - ki
                d4 = np.float64(r4[i]) - ki
                d5 = np.float64(r5[i]) - ki
                d6 = np.float64(r6[i]) - ki
                d7 = np.float64(r7[i]) - ki
                a1[i] += ((d0 + d1) + (d2 + d3)) + ((d4 + d5) + (d6 + d7))
                a2[i] += ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)) + (
                    (d4 * d4 + d5 * d5) + (d6 * d6 + d7 * d7)
                )


def mean_var_sums(
    x: np.ndarray, shift: np.ndarray, s1: np.ndarray, s2: np.ndarray, block: int
) -> None:
    """Add ``Σ (x - shift)`` and ``Σ (x - shift)²`` per pixel: half the moments pass.

    The loop is that of the moments kernel (eight frames per pass over a
    block of pixels, float64 arithmetic) without the third and fourth powers,
    and without the frames left over after the last group of eight. It
    exists to be timed beside the full pass and the bare read.

    Parameters
    ----------
    x : numpy.ndarray, shape (frames, pixels)
        The movie, C-contiguous.
    shift : float64 (pixels,)
        The value subtracted from every pixel before the sums.
    s1, s2 : float64 (pixels,)
        The sums, updated in place.
    block : int
        Pixels per parallel work item (e.g.
        :func:`sima_fast.kernels.moments.default_block`).
    """
    if x.ndim != 2 or not x.flags.c_contiguous:
        raise ValueError("x must be a C-contiguous (frames, pixels) array")
    _mean_var_sums(x, shift, s1, s2, max(1, int(block)))

"""A streaming read of a large array: the machine's memory-read bandwidth.

The benchmark harness reports sima_fast's throughput as a fraction of what
this kernel reaches on the same machine in the same run: the sum of a float32
array far larger than the caches, split into one contiguous block per thread.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["read_sum"]


@njit(cache=True, nogil=True, fastmath=True)
def _block_sum(x, start, stop):  # pragma: no cover - compiled
    # A slice indexed from 0 (no negative-index wraparound) and fastmath
    # (reassociation) let the loop vectorise, so it is bound by memory.
    y = x[start:stop]
    total = np.float32(0.0)
    for i in range(y.shape[0]):
        total += y[i]
    return total


@njit(cache=True, nogil=True, parallel=True)
def _read_sum(x, n_blocks):  # pragma: no cover - compiled
    size = x.shape[0]
    partial = np.zeros(n_blocks)
    for j in prange(n_blocks):
        partial[j] = _block_sum(x, size * j // n_blocks, size * (j + 1) // n_blocks)
    return partial.sum()


def read_sum(x: np.ndarray, n_threads: int) -> float:
    """Sum (in float32 lanes, so approximate) of a 1-D float32 array, read by ``n_threads``."""
    if x.ndim != 1 or x.dtype != np.float32:
        raise ValueError("x must be a 1-D float32 array")
    return float(_read_sum(x, max(1, int(n_threads))))

"""How many threads the numba kernels use, for the calling thread only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def kernel_threads(n: int | None = None, reserve: int = 0) -> Iterator[int]:
    """Run numba kernels on ``n`` threads (default: the current setting) minus ``reserve``.

    ``reserve`` leaves cores to other work of the caller (e.g. a thread reading
    the next chunk of a file). At least one thread is always used; the setting
    is restored on exit. Yields the thread count in force.
    """
    import numba

    before = numba.get_num_threads()
    count = before if n is None else min(int(n), numba.config.NUMBA_NUM_THREADS)
    count = max(1, count - max(0, int(reserve)))
    numba.set_num_threads(count)
    try:
        yield count
    finally:
        numba.set_num_threads(before)

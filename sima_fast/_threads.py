"""Thread limits, in one place: numba's kernel threads and the BLAS library's threads."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from sima_fast._validate import check_int

__all__ = ["blas_threads", "kernel_threads"]


@contextlib.contextmanager
def kernel_threads(n: int | None = None, reserve: int = 0) -> Iterator[int]:
    """Run numba kernels on ``n`` threads (default: the current setting) minus ``reserve``.

    ``reserve`` leaves cores to other work of the caller (e.g. a thread reading
    the next chunk of a file). At least one thread is always used; the setting
    is restored on exit. Use it as a context manager.

    Parameters
    ----------
    n : int, optional
        Threads to run on, capped at numba's ``NUMBA_NUM_THREADS``. Default:
        numba's current setting.
    reserve : int, optional
        Threads to leave free for the caller's other work (negative values
        count as 0). Default: 0.

    Yields
    ------
    int
        The number of threads in force inside the ``with`` block.
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


_CONTROLLER: Any = None
_CONTROLLER_LOCK = threading.Lock()


def _blas_controller() -> Any:
    """Return the process's threadpoolctl controller, built once (it scans loaded libraries)."""
    global _CONTROLLER
    with _CONTROLLER_LOCK:
        if _CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        return _CONTROLLER


@contextlib.contextmanager
def blas_threads(n: int = 1) -> Iterator[None]:
    """Run the BLAS library (OpenBLAS, MKL, ...) on at most ``n`` threads inside the block.

    LAPACK factorisations of tall, thin matrices (QR, SVD, ``eigh``) make many
    small BLAS calls; on a busy machine, right after numba's parallel kernels,
    a multi-threaded BLAS can spend seconds synchronising its threads on them.
    The limit is set through threadpoolctl (a dependency of scikit-learn) and
    restored on exit. BLAS thread pools are shared by the whole process, so
    the limit also applies to other Python threads while the block runs.

    Parameters
    ----------
    n : int, optional
        Maximum number of BLAS threads, at least 1. Default: 1.

    Yields
    ------
    None
        Nothing: the function is a context manager, and the limit applies
        inside its ``with`` block.

    Raises
    ------
    ArgumentTypeError, ValueError
        If ``n`` is not an integer >= 1 (see :mod:`sima_fast._validate`).

    Examples
    --------
    >>> import numpy as np
    >>> with blas_threads():
    ...     q, r = np.linalg.qr(np.eye(3))
    """
    limit = check_int("n", n, low=1)
    with _blas_controller().limit(limits=limit, user_api="blas"):
        yield

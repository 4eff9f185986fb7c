"""Thread limits (sima_fast._threads): numba kernel threads and BLAS threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from sima_fast._threads import blas_threads, kernel_threads
from sima_fast._validate import ArgumentTypeError


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_blas_threads_limits_and_restores():
    np.linalg.qr(np.eye(4))  # numpy's BLAS is loaded
    before = _blas_threads()
    assert before, "numpy should bring a BLAS library threadpoolctl can see"
    with blas_threads():
        assert _blas_threads() == [1] * len(before)
        q, r = np.linalg.qr(np.eye(3) * 2.0)
        np.testing.assert_allclose(np.abs(q @ r), np.eye(3) * 2.0)
    assert _blas_threads() == before
    with blas_threads(2):
        assert all(n <= 2 for n in _blas_threads())
    assert _blas_threads() == before


def test_blas_threads_nests_and_restores_after_an_error():
    before = _blas_threads()
    with pytest.raises(RuntimeError, match="boom"), blas_threads(2):
        with blas_threads(1):
            assert max(_blas_threads()) == 1
        assert max(_blas_threads()) <= 2
        raise RuntimeError("boom")
    assert _blas_threads() == before


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("1", ArgumentTypeError),
        (True, ArgumentTypeError),
        (1.0, ArgumentTypeError),
        (0, ValueError),
    ],
)
def test_blas_threads_rejects_bad_counts(bad, error):
    with pytest.raises(error, match=r"^n must be (an integer )?>= 1, got"), blas_threads(bad):
        pass


def test_kernel_threads_sets_and_restores():
    before = numba.get_num_threads()
    with kernel_threads(1) as n:
        assert n == 1 == numba.get_num_threads()
    assert numba.get_num_threads() == before
    with kernel_threads(reserve=10**6) as n:  # always at least one thread
        assert n == 1 == numba.get_num_threads()
    with kernel_threads(10**6) as n:  # never more than numba has
        assert n == numba.config.NUMBA_NUM_THREADS
    assert numba.get_num_threads() == before

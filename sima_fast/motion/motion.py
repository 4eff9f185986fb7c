"""SIMA's ``sima.motion.motion``: the strategy base class, ResonantCorrection, add_with_offset.

:class:`MotionEstimationStrategy` (:mod:`sima_fast.motion.base`) and
:class:`ResonantCorrection` (:mod:`sima_fast.motion.rigid`) are sima_fast's
own classes under the module path SIMA scripts import them from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sima_fast._validate import ArgumentTypeError, check_int
from sima_fast.motion.base import MotionEstimationStrategy
from sima_fast.motion.rigid import ResonantCorrection

__all__ = ["MotionEstimationStrategy", "ResonantCorrection", "add_with_offset"]


def add_with_offset(array1: np.ndarray, array2: Any, offset: Any) -> None:
    """Add ``array2`` into ``array1`` in place, its first element at index ``offset``.

    ``array1[o0:o0 + n0, o1:o1 + n1, ...] += array2`` for ``array2`` of
    shape ``(n0, n1, ...)``.

    Parameters
    ----------
    array1 : numpy.ndarray
        The array added to (modified in place).
    array2 : array_like
        The block added; as many axes as ``array1``.
    offset : sequence of int
        Where the block's first element lands: one non-negative index per
        axis.

    Raises
    ------
    ArgumentTypeError
        ``array1`` not a numpy array, or ``offset`` not a sequence of
        integers.
    ValueError
        ``array2`` with another number of axes, an offset of the wrong
        length or negative, or a block that does not fit inside ``array1``
        at ``offset``.

    Examples
    --------
    >>> total = np.zeros((3, 4))
    >>> add_with_offset(total, np.ones((2, 2)), (1, 2))
    >>> total
    array([[0., 0., 0., 0.],
           [0., 0., 1., 1.],
           [0., 0., 1., 1.]])
    """
    if not isinstance(array1, np.ndarray):
        raise ArgumentTypeError(
            f"array1 must be a numpy array (it is added to in place), got {type(array1)!r}"
        )
    block = np.asarray(array2)
    if block.ndim != array1.ndim:
        raise ValueError(
            f"array2 must have as many axes as array1 ({array1.ndim}), got shape {block.shape}"
        )
    if isinstance(offset, (str, bytes)) or np.ndim(offset) != 1:
        raise ArgumentTypeError(f"offset must be a sequence of integers, got {offset!r}")
    if len(offset) != array1.ndim:
        raise ValueError(f"offset must have {array1.ndim} entries (one per axis), got {offset!r}")
    starts = [check_int(f"offset[{i}]", o, low=0) for i, o in enumerate(offset)]
    if any(s + n > m for s, n, m in zip(starts, block.shape, array1.shape)):
        raise ValueError(
            f"array2 of shape {block.shape} at offset {tuple(starts)} does not fit inside "
            f"array1 of shape {array1.shape}"
        )
    array1[tuple(slice(s, s + n) for s, n in zip(starts, block.shape))] += block

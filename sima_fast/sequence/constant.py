"""Constant sequences (``'constant'``): one value everywhere, stored as a description.

``Sequence.create('constant', value, shape)`` is SIMA's constant sequence: a
``(T, Z, Y, X, C)`` sequence whose every value is ``value``. Nothing is held
in memory beyond the value, frames are filled when read, and a dataset saves
it as its value, dtype and shape (no data file). Its usual use is as an
operand of sequence arithmetic, e.g. inverting a Scanbox recording::

    full = Sequence.create('constant', np.iinfo('uint16').max, shape=seq.shape)
    inverted = full - seq
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import numpy as np

from sima_fast._validate import ArgumentTypeError, check_int
from sima_fast.sequence.base import (
    DescriptionError,
    LoadContext,
    SaveContext,
    Sequence,
    check_numeric,
)

__all__ = ["ConstantSequence"]

_AXES = ("num_frames", "num_planes", "num_rows", "num_columns", "num_channels")


def _check_shape(shape: Any) -> tuple[int, int, int, int, int]:
    """``shape`` as five ints: ``T >= 0`` frames, every other axis ``>= 1``."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__"):
        raise ArgumentTypeError(
            f"shape must be a tuple of 5 ints (num_frames, num_planes, num_rows, "
            f"num_columns, num_channels), got {shape!r}"
        )
    if len(shape) != 5:
        raise ValueError(
            f"shape must have exactly 5 entries (T, Z, Y, X, C), got {len(shape)}: {shape!r}"
        )
    return tuple(
        check_int(f"shape[{i}] ({axis})", s, low=0 if i == 0 else 1)
        for i, (axis, s) in enumerate(zip(_AXES, shape))
    )


class ConstantSequence(Sequence, format="constant"):
    """A sequence holding one value at every frame, plane, row, column and channel.

    Created by ``Sequence.create('constant', value, shape)``, as in SIMA.

    Parameters
    ----------
    value : int, float, bool or numpy number
        The value. Its dtype is the sequence's, as in SIMA (where frames
        were ``numpy.ones(..., dtype=type(value)) * value``): a Python
        ``int`` gives ``int64``, a ``float`` ``float64``, a numpy scalar its
        own dtype; ``bool`` is read as ``uint8``, like every bool sequence.
        NaN and infinities are allowed for float values.
    shape : tuple of 5 int
        ``(num_frames, num_planes, num_rows, num_columns, num_channels)``;
        ``num_frames`` may be 0, every other entry must be at least 1.
    dtype : numpy dtype-like, optional
        Store the value as this dtype instead (sima_fast's addition, e.g.
        ``'uint16'`` to subtract a uint16 recording from its maximum without
        widening). The value must be representable in it exactly.

    Raises
    ------
    ArgumentTypeError
        ``value`` is not a real number (a string, a complex, None, an
        array), ``shape`` is not a sequence of integers, or ``dtype`` is not
        one the kernels read.
    ValueError
        ``shape`` has other than 5 entries or an entry out of range, or
        ``value`` does not fit ``dtype`` exactly.

    Examples
    --------
    >>> import numpy as np
    >>> from sima_fast import Sequence
    >>> seq = Sequence.create('constant', 7, shape=(3, 1, 2, 2, 1))
    >>> seq.shape, seq.dtype
    ((3, 1, 2, 2, 1), dtype('int64'))
    >>> seq._get_frame(2).ravel()
    array([7., 7., 7., 7.])
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {
        "value": "str",
        "dtype": "str",
        "shape": "ints",
    }

    def __init__(self, value: Any, shape: Any, dtype: Any = None) -> None:
        if (
            isinstance(value, np.ndarray)
            or not isinstance(value, (numbers.Real, np.bool_))
            or isinstance(value, (str, bytes))
        ):
            raise ArgumentTypeError(
                f"value must be a real number (int, float, bool or a numpy scalar), got {value!r}"
            )
        self._shape = _check_shape(shape)
        natural = np.asarray(value).dtype
        if dtype is None:
            target = check_numeric(natural, "value")
        else:
            try:
                wanted = np.dtype(dtype)
            except TypeError:
                raise ArgumentTypeError(f"dtype must be a numpy dtype, got {dtype!r}") from None
            target = check_numeric(wanted, "dtype")
        with np.errstate(all="ignore"):
            stored = np.asarray(value).astype(target)[()]
        same = stored == value or (
            isinstance(value, (float, np.floating)) and math.isnan(value) and np.isnan(stored)
        )
        if not same:
            raise ValueError(f"value {value!r} cannot be stored exactly as dtype {target}")
        self._dtype = target
        self._value = stored

    @property
    def value(self) -> Any:
        """The value, as a numpy scalar of :attr:`dtype`."""
        return self._value

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)`` as given."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """The value's dtype (see the class)."""
        return self._dtype

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        out.fill(self._value)

    def describe(self) -> str:
        """Describe the sequence in one line: ``'Constant 65535 (int64)'``.

        Returns
        -------
        str
        """
        return f"Constant {self._value} ({self._dtype})"

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the sequence: its value (as text, exact), dtype and shape; no data file.

        Parameters
        ----------
        ctx : SaveContext
            Unused: a constant needs no file or array.

        Returns
        -------
        dict
            ``'fmt'``, ``'value'`` (``str`` of the value, which reads back
            exactly, ``'nan'`` and ``'inf'`` included), ``'dtype'`` and
            ``'shape'``.
        """
        return {
            "fmt": self.format,
            "value": str(self._value),
            "dtype": self._dtype.str,
            "shape": list(self._shape),
        }

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Rebuild the sequence from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description.
        ctx : LoadContext
            Unused.

        Returns
        -------
        ConstantSequence

        Raises
        ------
        DescriptionError
            A dtype, value or shape that does not make a constant sequence.
        """
        try:
            dtype = np.dtype(d["dtype"])
        except TypeError:
            raise DescriptionError("dtype", f"not a numpy dtype: {d['dtype']!r}") from None
        if dtype.kind not in "iuf":
            raise DescriptionError("dtype", f"expected an integer or float dtype, got {dtype}")
        try:
            value = dtype.type(d["value"])
        except (TypeError, ValueError, OverflowError):
            raise DescriptionError(
                "value", f"{d['value']!r} is not a number of dtype {dtype}"
            ) from None
        try:
            return cls(value, tuple(d["shape"]), dtype)
        except (TypeError, ValueError) as err:
            raise DescriptionError("shape", str(err)) from None

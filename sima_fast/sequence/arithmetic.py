"""Element-wise arithmetic between sequences (``'arithmetic'``), lazily, as SIMA's sequence math.

``a + b``, ``a - b``, ``a * b``, ``a / b`` and ``a // b`` for two sequences of
the same shape give a view whose frames are computed when read, chunk by
chunk, with numpy's ufunc on the operands' stored values. A dataset saves the
view as a description of the operation and of both operands (no data file).

Dtype: the result has the dtype numpy's ufunc gives for the two stored
dtypes (``numpy.subtract.resolve_dtypes``): ``uint16 - uint16`` stays
``uint16`` and wraps around as numpy's does, ``int64 - uint16`` is
``int64``, anything with a float is a float, and ``/`` of integers is
``float64``. NaN propagates as in numpy; a division by zero gives ``inf``,
``nan`` (floats) or ``0`` (integers) without a warning.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from sima_fast._validate import ArgumentTypeError
from sima_fast.sequence.base import (
    DescriptionError,
    LoadContext,
    SaveContext,
    Sequence,
    WrapperSequence,
    check_numeric,
)

__all__ = ["OPERATIONS", "ArithmeticSequence"]

#: Operation name (as saved) -> (numpy ufunc, Python operator symbol).
OPERATIONS: dict[str, tuple[np.ufunc, str]] = {
    "add": (np.add, "+"),
    "subtract": (np.subtract, "-"),
    "multiply": (np.multiply, "*"),
    "true_divide": (np.true_divide, "/"),
    "floor_divide": (np.floor_divide, "//"),
}


class ArithmeticSequence(WrapperSequence, format="arithmetic"):
    """``left <op> right`` element-wise, for two sequences of the same shape.

    Made by the operators of :class:`~sima_fast.sequence.base.Sequence`
    (``a - b`` and so on), as SIMA's sequence math was.

    Parameters
    ----------
    operation : {'add', 'subtract', 'multiply', 'true_divide', 'floor_divide'}
        The numpy ufunc's name.
    left, right : Sequence
        The operands, of equal :attr:`~Sequence.shape`.

    Raises
    ------
    ValueError
        Unknown ``operation``, or operands of different shapes (the message
        names both operands and their shapes).
    ArgumentTypeError
        An operand that is not a :class:`Sequence` (both a TypeError and a
        ValueError).

    Examples
    --------
    >>> import numpy as np
    >>> from sima_fast import Sequence
    >>> a = Sequence.create('ndarray', np.full((2, 1, 2, 2, 1), 10, dtype='uint16'))
    >>> b = Sequence.create('constant', 3, shape=a.shape)
    >>> c = a - b
    >>> c.dtype, c.read_chunk(0, 1).ravel().tolist()
    (dtype('int64'), [7, 7, 7, 7])
    >>> c.describe()
    '(Ndarray - Constant 3 (int64))'
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {
        "operation": "str",
        "left": "description",
        "right": "description",
    }

    def __init__(self, operation: str, left: Sequence, right: Sequence) -> None:
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {sorted(OPERATIONS)}, got {operation!r}")
        ufunc, symbol = OPERATIONS[operation]
        for side, operand in (("left", left), ("right", right)):
            if not isinstance(operand, Sequence):
                raise ArgumentTypeError(
                    f"sequence arithmetic '{symbol}': the {side} operand must be a Sequence of "
                    f"the same shape, got {type(operand).__name__} {operand!r:.80}; for a "
                    f"number use Sequence.create('constant', value, shape=seq.shape)"
                )
        if left.shape != right.shape:
            raise ValueError(
                f"sequence arithmetic '{symbol}': the operands' shapes differ: left operand "
                f"{left.describe()} has shape {left.shape}, right operand {right.describe()} "
                f"has shape {right.shape}"
            )
        super().__init__(left, right)
        self._operation = operation
        self._ufunc = ufunc
        self._symbol = symbol
        resolved = ufunc.resolve_dtypes((left.dtype, right.dtype, None))[-1]
        self._dtype = check_numeric(resolved, f"the result of '{symbol}'")

    @property
    def operation(self) -> str:
        """The operation's name (a key of :data:`OPERATIONS`)."""
        return self._operation

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)``: the operands' common shape."""
        return self.children[0].shape

    @property
    def dtype(self) -> np.dtype:
        """The dtype numpy's ufunc gives for the operands' dtypes (see the module)."""
        return self._dtype

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        left, right = self.children
        with np.errstate(all="ignore"):
            self._ufunc(left.read_chunk(start, stop), right.read_chunk(start, stop), out=out)

    def describe(self) -> str:
        """Describe the view in one line, e.g. ``'(Constant 65535 (int64) - Memmap x.sbx)'``.

        Returns
        -------
        str
        """
        left, right = self.children
        return f"({left.describe()} {self._symbol} {right.describe()})"

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the operation and both operands, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; the operands are described in it too.

        Returns
        -------
        dict
            ``'fmt'``, ``'operation'``, ``'left'`` and ``'right'``.
        """
        left, right = self.children
        return {
            "fmt": self.format,
            "operation": self._operation,
            "left": left.todict(ctx),
            "right": right.todict(ctx),
        }

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Rebuild the view from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description; ``'left'`` and ``'right'`` are rebuilt with
            :meth:`Sequence.fromdict`.
        ctx : LoadContext
            The dataset being loaded.

        Returns
        -------
        ArithmeticSequence

        Raises
        ------
        DescriptionError
            An unknown operation, or operands whose shapes differ.
        """
        if d["operation"] not in OPERATIONS:
            raise DescriptionError(
                "operation", f"expected one of {sorted(OPERATIONS)}, got {d['operation']!r}"
            )
        left = Sequence.fromdict(d["left"], ctx)
        right = Sequence.fromdict(d["right"], ctx)
        try:
            return cls(d["operation"], left, right)
        except ValueError as err:
            raise DescriptionError("right", str(err)) from None

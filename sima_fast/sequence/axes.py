"""Axis orders and axis indices of sequences.

Every sequence is seen as ``(T, Z, Y, X, C)`` (:data:`DIM_ORDER`) whatever the
axis order of its storage. The helpers here translate between a storage's
dimension order and that canonical view, and turn the indices of
``seq[t, z, y, x, c]`` (and of ``dataset[s, t, z, y, x, c]``) into lazy
per-axis selections that never drop an axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "DIM_ORDER",
    "canonical_shape",
    "expand_ellipsis",
    "index_from_json",
    "index_length",
    "index_to_json",
    "normalize_axis_index",
    "to_canonical",
    "validate_dim_order",
]

#: The canonical axis order of a sequence: time, plane, row, column, channel.
DIM_ORDER = "tzyxc"


def validate_dim_order(dim_order: Any, ndim: int | None, argname: str = "dim_order") -> str:
    """Check a dimension-order string against :data:`DIM_ORDER`.

    Parameters
    ----------
    dim_order : str
        One letter from ``'tzyxc'`` per axis of the stored data; ``'t'`` is
        required, every letter may appear once.
    ndim : int or None
        The number of axes of the stored data, or None not to check it.
    argname : str, optional
        The argument's name in error messages.

    Returns
    -------
    str
        ``dim_order`` in lower case.

    Raises
    ------
    ValueError
        Not a string, unknown or repeated letters, no ``'t'``, or a length
        other than ``ndim``.

    Examples
    --------
    >>> validate_dim_order('TYX', 3)
    'tyx'
    """
    if not isinstance(dim_order, str):
        raise ValueError(
            f"{argname} must be a string of letters from {DIM_ORDER!r}, got {dim_order!r}"
        )
    letters = dim_order.lower()
    bad = sorted(set(letters) - set(DIM_ORDER))
    if bad or len(set(letters)) != len(letters) or "t" not in letters:
        raise ValueError(
            f"{argname} must use each of the letters {DIM_ORDER!r} at most once and must "
            f"contain 't'; got {dim_order!r}"
        )
    if ndim is not None and len(letters) != ndim:
        raise ValueError(
            f"{argname} {dim_order!r} has {len(letters)} letters but the data has {ndim} "
            "dimensions (one letter per axis expected)"
        )
    return letters


def canonical_shape(shape: tuple[int, ...], dim_order: str) -> tuple[int, ...]:
    """Return the ``(T, Z, Y, X, C)`` shape of data stored with ``dim_order``.

    Parameters
    ----------
    shape : tuple of int
        The stored shape, one entry per letter of ``dim_order``.
    dim_order : str
        A validated dimension order (see :func:`validate_dim_order`).

    Returns
    -------
    tuple of int
        Five sizes; axes absent from ``dim_order`` have size 1.

    Examples
    --------
    >>> canonical_shape((10, 64, 32), 'tyx')
    (10, 1, 64, 32, 1)
    """
    return tuple(int(shape[dim_order.index(d)]) if d in dim_order else 1 for d in DIM_ORDER)


def to_canonical(block: np.ndarray, dim_order: str) -> np.ndarray:
    """View a block stored in ``dim_order`` as ``(t, z, y, x, c)`` without copying.

    Parameters
    ----------
    block : numpy.ndarray
        Data with one axis per letter of ``dim_order``.
    dim_order : str
        A validated dimension order.

    Returns
    -------
    numpy.ndarray
        A five-dimensional view of ``block`` (transposed, absent axes added
        with size 1).

    Examples
    --------
    >>> import numpy as np
    >>> to_canonical(np.zeros((3, 4, 2)), 'xty').shape
    (4, 1, 2, 3, 1)
    """
    present = [d for d in DIM_ORDER if d in dim_order]
    view = np.transpose(block, [dim_order.index(d) for d in present])
    for axis, d in enumerate(DIM_ORDER):
        if d not in dim_order:
            view = np.expand_dims(view, axis)
    return view


def normalize_axis_index(index: Any, size: int, axis: str) -> slice | np.ndarray:
    """Turn one axis index into a slice (kept lazily) or an int64 index array.

    Integers become length-one selections, so indexing never drops an axis.

    Parameters
    ----------
    index : int, slice, or 1-D array_like of int or bool
        The index along one axis.
    size : int
        The axis length.
    axis : str
        The axis name, for error messages.

    Returns
    -------
    slice or numpy.ndarray
        A slice with non-negative ``start`` (and ``stop`` unless the step is
        negative and runs past 0), or an int64 array of non-negative
        positions (an empty selection is an empty array).

    Raises
    ------
    IndexError
        Out-of-range integers, a boolean index of the wrong length, or an
        index of another kind.

    Examples
    --------
    >>> normalize_axis_index(-1, 5, 't')
    slice(4, 5, 1)
    >>> normalize_axis_index([0, -1], 5, 't')
    array([0, 4])
    """
    if isinstance(index, slice):
        start, stop, step = index.indices(size)
        if len(range(start, stop, step)) == 0:
            return np.zeros(0, dtype=np.int64)
        if stop < 0:  # a negative step running past index 0
            stop = None
        return slice(start, stop, step)
    if isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_)):
        i = int(index)
        if not -size <= i < size:
            raise IndexError(f"index {i} is out of bounds for axis {axis!r} of size {size}")
        i %= size
        return slice(i, i + 1, 1)
    arr = np.asarray(index)
    if arr.dtype == bool:
        if arr.shape != (size,):
            raise IndexError(
                f"boolean index for axis {axis!r} must have length {size}, got shape {arr.shape}"
            )
        return np.flatnonzero(arr).astype(np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise IndexError(
            f"index for axis {axis!r} must be an int, a slice, or a 1-D integer or boolean "
            f"array; got {index!r}"
        )
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < -size or arr.max() >= size):
        raise IndexError(f"index out of bounds for axis {axis!r} of size {size}")
    return arr % size if size else arr


def expand_ellipsis(indices: tuple, ndim: int) -> tuple:
    """Replace one ``...`` by as many full slices as needed for ``ndim`` axes.

    Parameters
    ----------
    indices : tuple
        Per-axis indices, possibly holding one ``Ellipsis``.
    ndim : int
        The number of axes indexed.

    Returns
    -------
    tuple
        ``indices`` without the ellipsis (unchanged when it has none).

    Raises
    ------
    IndexError
        More than one ellipsis.

    Examples
    --------
    >>> expand_ellipsis((0, ..., 1), 4)
    (0, slice(None, None, None), slice(None, None, None), 1)
    """
    count = sum(1 for i in indices if i is Ellipsis)
    if count > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if count == 0:
        return indices
    pos = next(k for k, i in enumerate(indices) if i is Ellipsis)
    fill = (slice(None),) * (ndim - len(indices) + 1)
    return indices[:pos] + fill + indices[pos + 1 :]


def index_length(index: slice | np.ndarray, size: int) -> int:
    """Count the positions a normalized axis index selects.

    Parameters
    ----------
    index : slice or numpy.ndarray
        A result of :func:`normalize_axis_index`.
    size : int
        The axis length.

    Returns
    -------
    int
    """
    if isinstance(index, slice):
        return len(range(*index.indices(size)))
    return int(index.size)


def index_to_json(index: slice | np.ndarray) -> Any:
    """Convert a normalized axis index to JSON-compatible form (see :func:`index_from_json`).

    Parameters
    ----------
    index : slice or numpy.ndarray
        A result of :func:`normalize_axis_index`.

    Returns
    -------
    dict or list of int
        ``{'slice': [start, stop, step]}`` or the list of positions.
    """
    if isinstance(index, slice):
        return {"slice": [index.start, index.stop, index.step]}
    return [int(i) for i in index]


def index_from_json(obj: Any) -> slice | np.ndarray:
    """Rebuild the axis index described by :func:`index_to_json`.

    Parameters
    ----------
    obj : dict or list of int
        A stored axis index.

    Returns
    -------
    slice or numpy.ndarray

    Examples
    --------
    >>> index_from_json(index_to_json(slice(1, None, 2)))
    slice(1, None, 2)
    """
    if isinstance(obj, dict) and "slice" in obj:
        return slice(*obj["slice"])
    return np.asarray(obj, dtype=np.int64)

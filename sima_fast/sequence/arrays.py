"""In-memory arrays (``'ndarray'``) and raw memory-mapped files (``'memmap'``)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np

from sima_fast.sequence.axes import canonical_shape, to_canonical, validate_dim_order
from sima_fast.sequence.base import (
    LoadContext,
    SaveContext,
    Sequence,
    check_numeric,
    path_record,
    require_file,
    resolve_path,
)
from sima_fast.sequence.hdf5 import write_hdf5_copy

__all__ = ["MemmapSequence", "NdarraySequence"]


class NdarraySequence(Sequence, format="ndarray"):
    """An in-memory ``(T, Z, Y, X, C)`` array, kept by reference (see :meth:`Sequence.create`).

    Parameters
    ----------
    array : array_like
        Five-dimensional numeric data; anything with ``shape`` and ``dtype``
        that slices like a numpy array is kept as it is. ``bool`` arrays are
        read as ``uint8`` and ``float16`` arrays as ``float32``, one chunk at
        a time (the array itself is not copied).

    Raises
    ------
    ArgumentTypeError
        ``array`` has a dtype the kernels cannot read (complex, object,
        extended precision, ...); the message lists the supported dtypes.
    """

    def __init__(self, array: Any) -> None:
        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            array = np.asarray(array)
        if array.ndim != 5:
            raise ValueError(
                f"array must have 5 dimensions (T, Z, Y, X, C), got shape {tuple(array.shape)}"
            )
        self._dtype = check_numeric(array.dtype, "array")
        self._array = array

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)`` of the array."""
        return tuple(int(s) for s in self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        """The array's dtype in native byte order (``uint8`` for bool, ``float32`` for float16)."""
        return self._dtype

    def view(self, start: int, stop: int) -> np.ndarray | None:
        """Return frames ``start`` to ``stop`` without copying, when possible.

        Possible when the array is C-contiguous in native byte order and its
        dtype is the one chunks are read in.

        Parameters
        ----------
        start, stop : int
            Frame range, ``0 <= start <= stop <= len(self)``.

        Returns
        -------
        numpy.ndarray or None
            A read-only, C-contiguous ``(stop - start, Z, Y, X, C)`` view of
            :attr:`dtype`, or None when the frames must be copied into a buffer.
        """
        block = self._array[start:stop]
        if block.flags.c_contiguous and block.dtype == self._dtype:
            view = block.view()
            view.flags.writeable = False
            return view
        return None

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        np.copyto(out, self._array[start:stop], casting="unsafe")

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Copy the array into a new HDF5 file of the dataset directory; describe that.

        An in-memory array cannot be referred to by a description, so the saved
        dataset holds a copy (see :func:`write_hdf5_copy`) and reloads as an
        ``'HDF5'`` sequence.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; it must have a dataset directory.

        Returns
        -------
        dict
            The description of the copy.

        Raises
        ------
        ValueError
            ``ctx`` has no dataset directory.
        """
        return write_hdf5_copy(self, ctx)


class MemmapSequence(Sequence, format="memmap"):
    """A raw binary file mapped with :class:`numpy.memmap` (see :meth:`Sequence.create`).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    shape : tuple of int
        The stored shape, one entry per letter of ``dim_order``.
    dim_order : str
        One letter of ``'tzyxc'`` per stored axis.
    dtype : numpy dtype-like, optional
        The stored dtype (default ``'float32'``).
    order : {'C', 'F'}, optional
        The stored memory order.
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {
        "path": "path",
        "shape": "ints",
        "dim_order": "str",
        "dtype": "?str",
        "order": "?str",
    }

    def __init__(
        self,
        path: Any,
        shape: tuple[int, ...],
        dim_order: str,
        dtype: Any = "float32",
        order: str = "C",
    ) -> None:
        self._path = os.path.abspath(require_file(path))
        try:
            file_shape = tuple(int(s) for s in shape)
        except TypeError:
            raise ValueError(f"shape must be a tuple of ints, got {shape!r}") from None
        if any(s < 0 for s in file_shape):
            raise ValueError(f"shape must be non-negative, got {file_shape}")
        self._dim_order = validate_dim_order(dim_order, len(file_shape))
        self._dtype = check_numeric(np.dtype(dtype), "dtype")
        if order not in ("C", "F"):
            raise ValueError(f"order must be 'C' or 'F', got {order!r}")
        expected = int(np.prod(file_shape)) * np.dtype(dtype).itemsize
        actual = os.path.getsize(self._path)
        if actual < expected:
            raise ValueError(
                f"path: {self._path!r} holds {actual} bytes but shape {file_shape} of {dtype} "
                f"needs {expected}"
            )
        self._file_shape, self._order, self._raw_dtype = file_shape, order, np.dtype(dtype)
        self._memmap = np.memmap(self._path, self._raw_dtype, "r", shape=file_shape, order=order)
        self._shape = canonical_shape(file_shape, self._dim_order)

    def _mm(self) -> np.ndarray:
        if getattr(self, "_memmap", None) is None:
            self._memmap = np.memmap(
                self._path, self._raw_dtype, "r", shape=self._file_shape, order=self._order
            )
        return self._memmap

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)``, absent axes of the storage as size 1."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """The stored dtype, in native byte order."""
        return self._dtype

    @property
    def path(self) -> str:
        """The raw file (absolute path)."""
        return self._path

    def data_files(self) -> list[str]:
        """List the data file this sequence reads.

        Returns
        -------
        list of str
            The raw file (absolute path).
        """
        return [self._path]

    def describe(self) -> str:
        """Describe the sequence in one line: its kind and its file's name.

        Returns
        -------
        str
            E.g. ``'Memmap movie.raw'``.
        """
        return f"{super().describe()} {os.path.basename(self._path)}"

    def _block(self, start: int, stop: int) -> np.ndarray:
        mm = self._mm()
        sel = [slice(None)] * mm.ndim
        sel[self._dim_order.index("t")] = slice(start, stop)
        return to_canonical(mm[tuple(sel)], self._dim_order)

    def view(self, start: int, stop: int) -> np.ndarray | None:
        """Return frames ``start`` to ``stop`` without copying, when possible.

        Possible when the stored axes come in the order t, z, y, x, c (absent ones
        aside), in C order and native byte order.

        Parameters
        ----------
        start, stop : int
            Frame range, ``0 <= start <= stop <= len(self)``.

        Returns
        -------
        numpy.ndarray or None
            A read-only, C-contiguous ``(stop - start, Z, Y, X, C)`` view of
            :attr:`dtype`, or None when the frames must be copied into a buffer.
        """
        block = self._block(start, stop)
        if block.flags.c_contiguous and block.dtype == self._dtype:
            return np.asarray(block)
        return None

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        np.copyto(out, self._block(start, stop), casting="unsafe")

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the sequence in JSON-compatible form, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; the file's path is recorded both absolute
            and relative to ``ctx.savedir``.

        Returns
        -------
        dict
            ``'fmt'``, ``'path'`` (a :func:`path_record`) and
            the stored ``shape``, ``dim_order``, ``dtype`` and ``order``.
        """
        return {
            "fmt": self.format,
            "path": path_record(self._path, ctx.savedir),
            "shape": list(self._file_shape),
            "dim_order": self._dim_order,
            "dtype": self._raw_dtype.str,
            "order": self._order,
        }

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Reopen the sequence from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description.
        ctx : LoadContext
            The dataset being loaded; the raw file is looked for relative to
            ``ctx.savedir`` first, then at its absolute path.

        Returns
        -------
        MemmapSequence

        Raises
        ------
        FileNotFoundError
            The raw file is at neither path.
        """
        path = resolve_path(d["path"], ctx.savedir, "memmap file")
        return cls(
            path, tuple(d["shape"]), d["dim_order"], d.get("dtype", "float32"), d.get("order", "C")
        )

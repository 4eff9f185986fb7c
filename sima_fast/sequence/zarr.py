"""zarr sequences (``Sequence.create('zarr', path_or_store, dim_order)``)."""

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
    resolve_path,
)

__all__ = ["ZarrSequence"]


class ZarrSequence(Sequence, format="zarr"):
    """A zarr array, any axis order (see :meth:`Sequence.create`).

    Parameters
    ----------
    path_or_store : str, os.PathLike, zarr store or array
        A path on disk (the only kind that can be saved in a dataset), a
        store, or an opened array (anything with ``shape`` and ``dtype``
        that slices like a numpy array).
    dim_order : str
        One letter of ``'tzyxc'`` per axis of the array.
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {"path": "path", "dim_order": "str"}

    def __init__(self, path_or_store: Any, dim_order: str) -> None:
        import zarr

        self._path = None
        if isinstance(path_or_store, (str, os.PathLike)):
            path = os.fspath(path_or_store)
            if not os.path.exists(path):
                raise FileNotFoundError(f"path_or_store: no such zarr store: {path!r}")
            self._path = os.path.abspath(path)
            try:
                arr = zarr.open(self._path, mode="r")
            except Exception as exc:
                raise OSError(f"path_or_store: cannot open {path!r} as zarr ({exc})") from exc
        elif hasattr(path_or_store, "shape") and hasattr(path_or_store, "dtype"):
            arr = path_or_store
        else:
            try:
                arr = zarr.open(path_or_store, mode="r")
            except Exception as exc:
                raise OSError(f"path_or_store: cannot open the zarr store ({exc})") from exc
        if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
            raise ValueError(
                "path_or_store must hold a single zarr array, not a group; open the group and "
                "pass the array"
            )
        self._array = arr
        self._dim_order = validate_dim_order(dim_order, len(arr.shape))
        self._dtype = check_numeric(np.dtype(arr.dtype), "zarr array")
        self._shape = canonical_shape(tuple(arr.shape), self._dim_order)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)``, absent axes of the storage as size 1."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """The stored dtype, in native byte order."""
        return self._dtype

    @property
    def path(self) -> str | None:
        """The store's path on disk (None for a store or array opened in memory)."""
        return self._path

    def data_files(self) -> list[str]:
        """List the zarr store this sequence reads.

        Returns
        -------
        list of str
            The store's absolute path, or nothing for a store or array opened
            in memory.
        """
        return [] if self._path is None else [self._path]

    def describe(self) -> str:
        """Describe the sequence in one line: its kind and, on disk, its store's name.

        Returns
        -------
        str
            E.g. ``'Zarr movie.zarr'``, or ``'Zarr'`` for a store in memory.
        """
        kind = super().describe()
        return kind if self._path is None else f"{kind} {os.path.basename(self._path)}"

    def _tchunk(self) -> int | None:
        chunks = getattr(self._array, "chunks", None)
        return int(chunks[self._dim_order.index("t")]) if chunks else None

    @property
    def storage_chunk_frames(self) -> int:
        """The array's chunk length along time (1 for an array without chunks)."""
        tchunk = self._tchunk()
        return 1 if tchunk is None else tchunk

    def default_chunk_frames(self) -> int:
        """Return about 64 MiB of frames per chunk, rounded to whole chunks of the array.

        Returns
        -------
        int
            :meth:`Sequence.default_chunk_frames`, rounded down to a multiple of
            :attr:`storage_chunk_frames` (at least one storage chunk) when the
            array is chunked.
        """
        n = super().default_chunk_frames()
        tchunk = self._tchunk()
        if tchunk:
            n = max(tchunk, (n // tchunk) * tchunk)
        return n

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        sel = [slice(None)] * len(self._array.shape)
        sel[self._dim_order.index("t")] = slice(start, stop)
        block = np.asarray(self._array[tuple(sel)])
        np.copyto(out, to_canonical(block, self._dim_order), casting="unsafe")

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
            ``dim_order``.

        Raises
        ------
        ValueError
            The sequence was opened from a store or array in memory, which a
            description cannot refer to.
        """
        if self._path is None:
            raise ValueError(
                "a zarr sequence opened from an in-memory store or array cannot be saved; "
                "create it from a path on disk"
            )
        return {
            "fmt": self.format,
            "path": path_record(self._path, ctx.savedir),
            "dim_order": self._dim_order,
        }

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Reopen the sequence from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description.
        ctx : LoadContext
            The dataset being loaded; the zarr store is looked for relative to
            ``ctx.savedir`` first, then at its absolute path.

        Returns
        -------
        ZarrSequence

        Raises
        ------
        FileNotFoundError
            The zarr store is at neither path.
        """
        return cls(resolve_path(d["path"], ctx.savedir, "zarr store"), d["dim_order"])

    def __getstate__(self) -> dict[str, Any]:
        """Return the state to pickle; an array on disk travels as its path only.

        Returns
        -------
        dict
        """
        state = super().__getstate__()
        if self._path is not None:
            state.pop("_array", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled sequence, reopening the array from its path if needed.

        Parameters
        ----------
        state : dict
            What :meth:`__getstate__` returned.
        """
        self.__dict__.update(state)
        if "_array" not in state:
            import zarr

            self._array = zarr.open(self._path, mode="r")

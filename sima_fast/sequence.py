"""Imaging sequences: lazy, chunk-readable views of ``(T, Z, Y, X, C)`` movies.

A :class:`Sequence` is what an :class:`~sima_fast.imaging.ImagingDataset` is
made of. It is created from a file or an array with :meth:`Sequence.create`
and can be wrapped (indexed, joined across channels, masked, motion
corrected) without copying data. Every sequence offers two ways in:

* iteration and :meth:`Sequence._get_frame`, which return ``float64`` frames
  ``(Z, Y, X, C)`` exactly as SIMA did, for drop-in use;
* :meth:`Sequence.read_chunk` and :meth:`Sequence.iter_chunks`, which return
  contiguous blocks of frames in the sequence's native :attr:`Sequence.dtype`
  (``uint16`` stays ``uint16``). This is what sima_fast's kernels consume; the
  readers fill caller-provided buffers straight from the file (``h5py``
  ``read_direct``, memory-mapped TIFF pages) and never load a whole file.

Sequences serialise to a JSON-compatible description (:meth:`Sequence._todict`)
that :mod:`sima_fast.storage` writes into a dataset directory.
"""

from __future__ import annotations

import abc
import glob as _glob
import os
import uuid
from collections.abc import Iterator
from collections.abc import Sequence as _SequenceABC
from typing import Any

import numpy as np

__all__ = ["DIM_ORDER", "Sequence"]

#: The canonical axis order of a sequence: time, plane, row, column, channel.
DIM_ORDER = "tzyxc"

#: Target size of one chunk returned by :meth:`Sequence.iter_chunks`.
DEFAULT_CHUNK_BYTES = 64 * 2**20

#: Size of the float64 blocks behind frame-by-frame iteration.
ITER_CHUNK_BYTES = 16 * 2**20


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _validate_dim_order(dim_order: Any, ndim: int | None, argname: str = "dim_order") -> str:
    """Check a dimension-order string against :data:`DIM_ORDER`."""
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


def _canonical_shape(shape: tuple[int, ...], dim_order: str) -> tuple[int, ...]:
    """The ``(T, Z, Y, X, C)`` shape of data stored with ``dim_order``."""
    return tuple(int(shape[dim_order.index(d)]) if d in dim_order else 1 for d in DIM_ORDER)


def _to_canonical(block: np.ndarray, dim_order: str) -> np.ndarray:
    """View a block stored in ``dim_order`` as ``(t, z, y, x, c)`` (no copy)."""
    present = [d for d in DIM_ORDER if d in dim_order]
    view = np.transpose(block, [dim_order.index(d) for d in present])
    for axis, d in enumerate(DIM_ORDER):
        if d not in dim_order:
            view = np.expand_dims(view, axis)
    return view


def _float_dtype(dtype: np.dtype) -> np.dtype:
    """Smallest float dtype that holds every value of ``dtype`` exactly (f32 or f64)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    if dtype.kind in "iub" and dtype.itemsize <= 2:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _check_numeric(dtype: np.dtype, what: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise TypeError(
            f"{what} has dtype {dtype}; a numeric (integer or float) dtype is required"
        )
    return dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype


def _path_record(path: str, savedir: str | None) -> dict[str, str | None]:
    """Absolute path plus, when saving into ``savedir``, the relative one."""
    abspath = os.path.abspath(path)
    rel = None
    if savedir is not None:
        try:
            rel = os.path.relpath(abspath, savedir)
        except ValueError:  # different drive on Windows
            rel = None
    return {"abspath": abspath, "relpath": rel}


def _resolve_path(record: dict[str, Any], savedir: str | None, what: str) -> str:
    """Find a data file: the path relative to ``savedir`` first, then the absolute one."""
    tried = []
    rel, absolute = record.get("relpath"), record.get("abspath")
    if rel is not None and savedir is not None:
        cand = os.path.normpath(os.path.join(savedir, rel))
        tried.append(cand)
        if os.path.exists(cand):
            return cand
    if absolute is not None:
        tried.append(absolute)
        if os.path.exists(absolute):
            return absolute
    name = os.path.basename(absolute or rel or "?")
    raise FileNotFoundError(
        f"cannot find the {what} {name!r} of this dataset; tried: " + ", ".join(map(repr, tried))
    )


def _require_file(path: Any, argname: str = "path") -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{argname} must be a path (str or os.PathLike), got {type(path).__name__}"
        )
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{argname}: no such file: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{argname}: expected a file, got the directory {path!r}")
    return path


def _normalize_axis_index(index: Any, size: int, axis: str) -> slice | np.ndarray:
    """Turn one axis index into a slice (kept lazily) or an int64 index array.

    Integers become length-one selections, so indexing never drops an axis.
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


def _expand_ellipsis(indices: tuple, ndim: int) -> tuple:
    """Replace one ``...`` by as many full slices as needed for ``ndim`` axes."""
    count = sum(1 for i in indices if i is Ellipsis)
    if count > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if count == 0:
        return indices
    pos = next(k for k, i in enumerate(indices) if i is Ellipsis)
    fill = (slice(None),) * (ndim - len(indices) + 1)
    return indices[:pos] + fill + indices[pos + 1 :]


def _index_len(idx: slice | np.ndarray, size: int) -> int:
    if isinstance(idx, slice):
        return len(range(*idx.indices(size)))
    return int(idx.size)


def _index_to_json(idx: slice | np.ndarray) -> Any:
    if isinstance(idx, slice):
        return {"slice": [idx.start, idx.stop, idx.step]}
    return [int(i) for i in idx]


def _index_from_json(obj: Any) -> slice | np.ndarray:
    if isinstance(obj, dict) and "slice" in obj:
        return slice(*obj["slice"])
    return np.asarray(obj, dtype=np.int64)


def _prefetched(
    seq: Sequence, start: int, stop: int, chunk_frames: int, reuse_buffer: bool
) -> Iterator[tuple[int, np.ndarray]]:
    """Blocks of ``seq`` read one step ahead by a background thread.

    Two tokens circulate between the reader and the consumer: with
    ``reuse_buffer`` they are the two preallocated buffers (a buffer goes back
    to the reader only when the consumer asks for the following block),
    otherwise they only bound the read-ahead to two blocks.
    """
    import queue
    import threading

    shape = (chunk_frames, *seq.shape[1:])
    free: queue.Queue = queue.Queue()
    ready: queue.Queue = queue.Queue()
    for _ in range(2):
        free.put(np.empty(shape, dtype=seq.dtype) if reuse_buffer else None)
    stopping = threading.Event()

    def reader() -> None:
        try:
            for t0 in range(start, stop, chunk_frames):
                token = free.get()
                if stopping.is_set():
                    return
                t1 = min(t0 + chunk_frames, stop)
                out = None if token is None else token[: t1 - t0]
                ready.put((t0, seq.read_chunk(t0, t1, out=out), token, None))
        except BaseException as exc:  # handed to the consumer
            ready.put((None, None, None, exc))

    thread = threading.Thread(target=reader, name="sima_fast-prefetch", daemon=True)
    thread.start()
    held: list = []
    try:
        for _ in range(start, stop, chunk_frames):
            t0, block, token, exc = ready.get()
            if exc is not None:
                raise exc
            while held:
                free.put(held.pop())
            if reuse_buffer:
                held.append(token)
            else:
                free.put(token)
            yield t0, block
    finally:
        stopping.set()
        free.put(None)
        free.put(None)
        thread.join()


# ---------------------------------------------------------------------------
# serialisation context
# ---------------------------------------------------------------------------


class _SaveContext:
    """Collects what a sequence description needs beyond JSON while saving."""

    def __init__(self, savedir: str | None, writedir: str | None = None) -> None:
        self.savedir = savedir
        self.writedir = savedir if writedir is None else writedir
        self.arrays: dict[str, np.ndarray] = {}
        self.new_files: list[str] = []

    def add_array(self, array: np.ndarray) -> str:
        key = f"a{len(self.arrays):04d}"
        self.arrays[key] = np.asarray(array)
        return key


class _LoadContext:
    """Resolves array references and file paths while loading."""

    def __init__(self, savedir: str | None, arrays: Any) -> None:
        self.savedir = savedir
        self.arrays = arrays  # mapping key -> ndarray (e.g. an open h5py group)

    def get_array(self, key: str) -> np.ndarray:
        if self.arrays is None or key not in self.arrays:
            raise ValueError(f"the dataset's array store has no entry {key!r} (corrupt dataset?)")
        return np.asarray(self.arrays[key])


# ---------------------------------------------------------------------------
# the public base class
# ---------------------------------------------------------------------------


class Sequence(abc.ABC):
    """A sequence of imaging frames shaped ``(T, Z, Y, X, C)``.

    Create sequences with :meth:`Sequence.create`; derive new ones by
    indexing (``seq[t, z, y, x, c]``), :meth:`join`, :meth:`mask` and
    :meth:`apply_displacements`. Sequences are lazy: nothing is read until
    frames or chunks are requested.

    Examples
    --------
    >>> import numpy as np
    >>> from sima_fast import Sequence
    >>> seq = Sequence.create('ndarray', np.arange(24.).reshape(2, 1, 3, 4, 1))
    >>> seq.shape
    (2, 1, 3, 4, 1)
    >>> seq[:, :, 1:].shape              # indexing never drops an axis
    (2, 1, 2, 4, 1)
    >>> [frame.shape for frame in seq]   # frames are (Z, Y, X, C) float arrays
    [(1, 3, 4, 1), (1, 3, 4, 1)]
    >>> seq.read_chunk(0, 2).shape       # chunks are (n, Z, Y, X, C) in the native dtype
    (2, 1, 3, 4, 1)
    """

    #: Name of the format in the saved description.
    _fmt: str = ""

    # -- what a concrete sequence must provide ---------------------------------

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(num_frames, num_planes, num_rows, num_columns, num_channels)``."""

    @property
    @abc.abstractmethod
    def dtype(self) -> np.dtype:
        """The dtype of the blocks returned by :meth:`read_chunk`."""

    @abc.abstractmethod
    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        """Fill ``out`` (``(stop - start, Z, Y, X, C)``, :attr:`dtype`) with frames."""

    @abc.abstractmethod
    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        """A JSON-compatible description of the sequence (arrays via ``ctx``)."""

    def _view(self, start: int, stop: int) -> np.ndarray | None:
        """A zero-copy block of frames when the storage allows it, else ``None``."""
        return None

    # -- construction ----------------------------------------------------------

    @classmethod
    def create(cls, fmt: str, *args: Any, **kwargs: Any) -> Sequence:
        """Create a sequence from a file or an array.

        Parameters
        ----------
        fmt : {'HDF5', 'TIFF', 'TIFFs', 'ndarray', 'memmap', 'zarr', 'dask'}
            The storage format. The remaining arguments depend on it:

            ``'HDF5'``: ``path, dim_order, group=None, key=None``
                ``dim_order`` gives one letter from ``'tzyxc'`` per axis of
                the HDF5 dataset (e.g. ``'tyx'``); absent z, y, x, c axes
                have size 1. ``group`` defaults to the root; ``key`` may be
                omitted when the group holds exactly one dataset.
            ``'TIFF'``: ``path, num_planes=1, num_channels=1, len_=None``
                One multi-page TIFF whose pages interleave planes and
                channels: the page of frame t, plane p, channel c is
                ``t * num_planes * num_channels + p * num_channels + c``.
                Incomplete trailing frames are dropped; ``len_`` keeps only
                the first ``len_`` frames.
            ``'TIFFs'``: ``paths``
                ``paths[p][c]`` is a glob pattern of single-image TIFF files
                for plane p and channel c. Each pattern's matches are sorted
                by name and the t-th file of every pattern forms frame t.
            ``'ndarray'``: ``array``
                A ``(T, Z, Y, X, C)`` array (kept by reference).
            ``'memmap'``: ``path, shape, dim_order, dtype='float32', order='C'``
                A raw binary file mapped with :class:`numpy.memmap`.
            ``'zarr'``: ``path_or_store, dim_order``
                A zarr array (a path, a store, or an opened array).
            ``'dask'``: ``array, dim_order='tzyxc'``
                A ``dask.array`` (kept lazy; chunks are computed when read,
                and on a cluster its blocks feed the kernels directly).

        Returns
        -------
        Sequence

        Raises
        ------
        ValueError
            Unknown ``fmt``, a bad ``dim_order``, inconsistent shapes.
        FileNotFoundError
            A path that does not exist.
        KeyError
            An HDF5 group or key that is not in the file.

        Examples
        --------
        >>> import numpy as np
        >>> from sima_fast import Sequence
        >>> Sequence.create('ndarray', np.zeros((5, 1, 8, 8, 2))).shape
        (5, 1, 8, 8, 2)
        """
        try:
            factory = _FORMATS[fmt]
        except (KeyError, TypeError):
            raise ValueError(f"fmt must be one of {sorted(_FORMATS)}, got {fmt!r}") from None
        return factory(*args, **kwargs)

    # -- array-like protocol ---------------------------------------------------

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """``(num_planes, num_rows, num_columns, num_channels)``."""
        return self.shape[1:]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: shape={self.shape}, dtype={self.dtype}>"

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield each frame as a ``float64`` array ``(Z, Y, X, C)``."""
        frame_bytes = max(int(np.prod(self.shape[1:])) * 8, 1)
        chunk_frames = max(1, ITER_CHUNK_BYTES // frame_bytes)
        for _, chunk in self.iter_chunks(chunk_frames):
            yield from chunk.astype(np.float64)

    def _get_frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as a ``float64`` array ``(Z, Y, X, C)``."""
        n = len(self)
        if not -n <= t < n:
            raise IndexError(f"frame index {t} out of range for a sequence of {n} frames")
        t %= n
        return self.read_chunk(t, t + 1)[0].astype(np.float64)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.read_chunk(0, len(self)).astype(np.float64 if dtype is None else dtype)
        return out

    def __getitem__(self, indices: Any) -> Sequence:
        """Index the sequence as ``seq[t, z, y, x, c]`` without dropping axes."""
        return _IndexedSequence(self, indices)

    # -- chunked reading -------------------------------------------------------

    def read_chunk(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read frames ``start`` to ``stop`` (exclusive) as one block.

        Parameters
        ----------
        start, stop : int
            Frame range, ``0 <= start <= stop <= len(self)``.
        out : numpy.ndarray, optional
            A C-contiguous ``(stop - start, Z, Y, X, C)`` buffer of
            :attr:`dtype` to fill. Without it, a new array is returned, or a
            read-only zero-copy view when the storage allows (memory-mapped
            TIFF, in-memory arrays).

        Returns
        -------
        numpy.ndarray
            ``(stop - start, Z, Y, X, C)`` in :attr:`dtype`.
        """
        n = len(self)
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"chunk [{start}, {stop}) is outside the sequence's {n} frames")
        shape = (stop - start, *self.shape[1:])
        if out is None:
            view = self._view(start, stop)
            if view is not None:
                return view
            out = np.empty(shape, dtype=self.dtype)
        else:
            if out.shape != shape or out.dtype != self.dtype or not out.flags.c_contiguous:
                raise ValueError(
                    f"out must be a C-contiguous {self.dtype} array of shape {shape}; got "
                    f"{out.dtype} {out.shape}"
                )
        if stop > start:
            self._read(start, stop, out)
        return out

    def default_chunk_frames(self) -> int:
        """Number of frames per chunk so that one chunk is about 64 MiB."""
        frame_bytes = max(int(np.prod(self.shape[1:])) * self.dtype.itemsize, 1)
        return int(max(1, min(len(self) or 1, DEFAULT_CHUNK_BYTES // frame_bytes)))

    def iter_chunks(
        self,
        chunk_frames: int | None = None,
        start: int = 0,
        stop: int | None = None,
        reuse_buffer: bool = False,
        prefetch: bool = False,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Iterate over contiguous blocks of frames.

        Parameters
        ----------
        chunk_frames : int, optional
            Frames per block (default: :meth:`default_chunk_frames`).
        start, stop : int, optional
            Frame range to cover (default: the whole sequence).
        reuse_buffer : bool, optional
            Fill one preallocated buffer again and again instead of returning
            a fresh array per block. The caller must consume each block before
            asking for the next. Default: False.
        prefetch : bool, optional
            Read the next block in a background thread while the caller works
            on the current one (two buffers; with ``reuse_buffer`` a block is
            valid until the next one is requested). Pays off when the caller
            releases the GIL, as sima_fast's kernels do. Default: False.

        Yields
        ------
        (int, numpy.ndarray)
            The index of the block's first frame and the block
            ``(n, Z, Y, X, C)`` in :attr:`dtype`.
        """
        n = len(self)
        stop = n if stop is None else int(stop)
        start = int(start)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"range [{start}, {stop}) is outside the sequence's {n} frames")
        if chunk_frames is None:
            chunk_frames = self.default_chunk_frames()
        chunk_frames = int(chunk_frames)
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be a positive integer, got {chunk_frames}")
        if prefetch and stop - start > chunk_frames and self._view(start, start + 1) is None:
            yield from _prefetched(self, start, stop, chunk_frames, reuse_buffer)
            return
        buffer = None
        for t0 in range(start, stop, chunk_frames):
            t1 = min(t0 + chunk_frames, stop)
            if reuse_buffer:
                view = self._view(t0, t1)
                if view is not None:
                    yield t0, view
                    continue
                if buffer is None:
                    buffer = np.empty((chunk_frames, *self.shape[1:]), dtype=self.dtype)
                yield t0, self.read_chunk(t0, t1, out=buffer[: t1 - t0])
            else:
                yield t0, self.read_chunk(t0, t1)

    def to_dask(self, chunks: int | None = None) -> Any:
        """View the sequence as a lazy ``dask.array`` of shape ``(T, Z, Y, X, C)``.

        Each block holds whole frames and is read by :meth:`read_chunk` when
        dask computes it, so a block costs what a chunk of the sequence's own
        reader costs. The graph holds the sequence once, pickled: for a file
        that is its path and parameters, not its data, so the array computes
        on the workers of a Dask cluster that see the same files. Needs the
        ``dask`` extra (``pip install "sima_fast[dask]"``).

        Parameters
        ----------
        chunks : int, optional
            Frames per block (default: :meth:`default_chunk_frames`, about
            64 MiB per block).

        Returns
        -------
        dask.array.Array
            ``(T, Z, Y, X, C)`` in :attr:`dtype`, chunked along time only.

        Examples
        --------
        >>> import numpy as np
        >>> from sima_fast import Sequence
        >>> seq = Sequence.create('ndarray', np.arange(24.).reshape(4, 1, 2, 3, 1))
        >>> arr = seq.to_dask(chunks=3)
        >>> arr.chunks[0]
        (3, 1)
        >>> float(arr.sum().compute(scheduler='sync'))
        276.0
        """
        from sima_fast.distributed import sequence_to_dask

        return sequence_to_dask(self, chunks)

    # -- wrappers --------------------------------------------------------------

    @staticmethod
    def join(*sequences: Any) -> Sequence:
        """Concatenate sequences along the channel axis.

        Parameters
        ----------
        *sequences : Sequence
            Sequences with equal ``(T, Z, Y, X)``; a single list of sequences
            is accepted too (SIMA's calling convention).

        Returns
        -------
        Sequence
            Channels of the first sequence, then of the second, and so on.

        Examples
        --------
        >>> import numpy as np
        >>> from sima_fast import Sequence
        >>> a = Sequence.create('ndarray', np.zeros((4, 1, 5, 6, 1)))
        >>> Sequence.join(a, a).shape
        (4, 1, 5, 6, 2)
        """
        if len(sequences) == 1 and isinstance(sequences[0], (list, tuple)):
            sequences = tuple(sequences[0])
        return _JoinedSequence(list(sequences))

    def mask(self, masks: list[tuple]) -> Sequence:
        """Set selected pixels to NaN.

        Parameters
        ----------
        masks : list of tuple
            Each entry is ``(frames, zyx_mask, channels)`` or
            ``(frames, planes, yx_mask, channels)``. ``frames``, ``planes``
            and ``channels`` are an int, a list of ints or ``None`` (all);
            ``zyx_mask`` is a boolean ``(Z, Y, X)`` array and ``yx_mask`` a
            boolean ``(Y, X)`` array (True = masked) or ``None`` (every pixel).

        Returns
        -------
        Sequence
            A float view of this sequence with the masked values NaN.

        Examples
        --------
        >>> import numpy as np
        >>> from sima_fast import Sequence
        >>> seq = Sequence.create('ndarray', np.ones((4, 1, 2, 2, 1)))
        >>> masked = seq.mask([(3, None, None)])
        >>> [bool(np.isnan(frame).all()) for frame in masked]
        [False, False, False, True]
        """
        return _MaskedSequence(self, masks)

    def apply_displacements(
        self, displacements: np.ndarray, frame_shape: tuple[int, ...] | None = None
    ) -> Sequence:
        """A motion-corrected view of the sequence.

        Parameters
        ----------
        displacements : array_like of int, all >= 0
            ``(T, 2)`` per frame, ``(T, Z, 2)`` per plane or ``(T, Z, Y, 2)``
            per row, as ``(dy, dx)``; a last axis of 3 holds ``(dz, dy, dx)``.
            Source plane p, row i, column j of frame t lands at plane
            ``p + dz``, row ``i + dy``, column ``j + dx``.
        frame_shape : tuple of int, optional
            ``(Z, Y, X)`` of the corrected frames. Default: the source frame
            shape plus the largest displacement along each axis.

        Returns
        -------
        Sequence
            Pixels that receive several values hold their mean; pixels that
            receive none are NaN.

        Examples
        --------
        >>> import numpy as np
        >>> from sima_fast import Sequence
        >>> seq = Sequence.create('ndarray', np.ones((2, 1, 3, 3, 1)))
        >>> moved = seq.apply_displacements(np.array([[0, 0], [1, 2]]))
        >>> moved.shape
        (2, 1, 4, 5, 1)
        >>> int(np.isnan(moved._get_frame(1)).sum())
        11
        """
        return _MotionCorrectedSequence(self, displacements, frame_shape)

    def fill_gaps(self) -> Sequence:
        """A view with every NaN (or infinite) value filled from the nearest observation.

        Per pixel, frame t shows the last finite value at or before t; before
        a pixel's first finite value it shows that first value; a pixel never
        observed stays NaN (SPEC.md §2.1). Reading streams: one pass finds
        each pixel's first observation (stopping as soon as every pixel has
        one), then chunks are filled one after the other carrying the last
        values, so memory stays bounded whatever the length.

        Returns
        -------
        Sequence
            Integer sequences (which cannot hold gaps) are returned as they are.

        Examples
        --------
        >>> import numpy as np
        >>> from sima_fast import Sequence
        >>> data = np.array([np.nan, 1.0, np.nan, 3.0]).reshape(4, 1, 1, 1, 1)
        >>> np.asarray(Sequence.create('ndarray', data).fill_gaps()).ravel()
        array([1., 1., 1., 3.])
        """
        if self.dtype.kind != "f":
            return self
        return _FilledSequence(self)

    # -- serialisation ---------------------------------------------------------

    @staticmethod
    def _fromdict(d: dict[str, Any], ctx: _LoadContext) -> Sequence:
        try:
            fmt = d["fmt"]
            cls = _FROM_DICT[fmt]
        except (KeyError, TypeError):
            raise ValueError(f"unknown sequence description {d!r}") from None
        return cls._fromdict_impl(d, ctx)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in ("_file", "_handle", "_memmap"):
            state.pop(key, None)
        return state


# ---------------------------------------------------------------------------
# file formats
# ---------------------------------------------------------------------------


class _HDF5Sequence(Sequence):
    _fmt = "HDF5"

    def __init__(
        self, path: Any, dim_order: str, group: str | None = None, key: str | None = None
    ) -> None:
        import h5py

        self._path = os.path.abspath(_require_file(path))
        self._group = "/" if group is None else str(group)
        try:
            f = h5py.File(self._path, "r")
        except OSError as exc:
            raise OSError(f"path: cannot open {self._path!r} as an HDF5 file ({exc})") from exc
        if self._group not in f:
            groups = sorted(n for n, o in f.items() if isinstance(o, h5py.Group))
            f.close()
            raise KeyError(
                f"group {self._group!r} is not in {self._path!r}; groups at the root: {groups}"
            )
        grp = f[self._group]
        if not isinstance(grp, h5py.Group):
            f.close()
            raise ValueError(f"group {self._group!r} in {self._path!r} is a dataset, not a group")
        datasets = sorted(n for n, o in grp.items() if isinstance(o, h5py.Dataset))
        if key is None:
            if len(datasets) != 1:
                f.close()
                raise ValueError(
                    f"key is required: group {self._group!r} of {self._path!r} holds "
                    f"{len(datasets)} datasets {datasets}, not exactly one"
                )
            key = datasets[0]
        key = str(key)
        if key not in datasets:
            f.close()
            raise KeyError(
                f"key {key!r} is not a dataset in group {self._group!r} of {self._path!r}; "
                f"available: {datasets}"
            )
        self._key = key
        ds = grp[key]
        try:
            self._dim_order = _validate_dim_order(dim_order, ds.ndim)
            self._dtype = _check_numeric(ds.dtype, f"HDF5 dataset {key!r}")
        except (ValueError, TypeError):
            f.close()
            raise
        self._shape = _canonical_shape(ds.shape, self._dim_order)
        self._file, self._dataset = f, ds
        self._direct = self._dim_order == "".join(d for d in DIM_ORDER if d in self._dim_order)

    def _ds(self):
        if getattr(self, "_file", None) is None or not self._file.id.valid:
            import h5py

            self._file = h5py.File(self._path, "r")
            self._dataset = self._file[self._group][self._key]
        return self._dataset

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_dataset", None)
        state["_file"] = None
        return state

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def default_chunk_frames(self) -> int:
        n = super().default_chunk_frames()
        chunks = self._ds().chunks
        if chunks is not None:
            tchunk = chunks[self._dim_order.index("t")]
            n = max(tchunk, (n // tchunk) * tchunk)
        return n

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        ds = self._ds()
        t_axis = self._dim_order.index("t")
        sel = [slice(None)] * ds.ndim
        sel[t_axis] = slice(start, stop)
        sel = tuple(sel)
        if self._direct and ds.dtype == out.dtype:
            file_shape = list(ds.shape)
            file_shape[t_axis] = stop - start
            ds.read_direct(out.reshape(file_shape), source_sel=sel)
        else:
            block = ds[sel]
            np.copyto(out, _to_canonical(block, self._dim_order), casting="unsafe")

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        return {
            "fmt": self._fmt,
            "path": _path_record(self._path, ctx.savedir),
            "dim_order": self._dim_order,
            "group": self._group,
            "key": self._key,
        }

    @classmethod
    def _fromdict_impl(cls, d: dict[str, Any], ctx: _LoadContext) -> Sequence:
        path = _resolve_path(d["path"], ctx.savedir, "HDF5 file")
        return cls(path, d["dim_order"], group=d.get("group"), key=d.get("key"))


class _PageSource:
    """Pages of a TIFF file: memory-mapped when stored raw, decoded otherwise."""

    def __init__(self, path: str) -> None:
        import tifffile

        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:
            raise OSError(f"cannot read {path!r} as a TIFF file ({exc})") from exc
        with tif:
            pages = tif.pages
            pages.useframes = True
            n = len(pages)
            if n == 0:
                raise ValueError(f"TIFF file {path!r} has no pages")
            first = pages[0]
            if first.samplesperpixel != 1 or len(first.shape) != 2:
                raise ValueError(
                    f"TIFF file {path!r}: pages must be single-sample 2-D images, got page "
                    f"shape {first.shape}"
                )
            self.page_shape = tuple(int(s) for s in first.shape)
            raw_dtype = np.dtype(first.dtype).newbyteorder(tif.byteorder)
            self.dtype = _check_numeric(raw_dtype, f"TIFF file {path!r}")
            offsets = np.empty(n, dtype=np.int64)
            raw = True
            page_bytes = int(np.prod(self.page_shape)) * raw_dtype.itemsize
            for i in range(n):
                page = pages[i]
                if tuple(page.shape) != self.page_shape:
                    raise ValueError(
                        f"TIFF file {path!r}: page {i} has shape {page.shape}, page 0 has "
                        f"{self.page_shape}; all pages must match"
                    )
                if raw:
                    offs, counts = page.dataoffsets, page.databytecounts
                    key = getattr(page, "keyframe", None) or page
                    contiguous = (
                        key.compression == 1
                        and getattr(key, "predictor", 1) in (None, 1)
                        and getattr(key, "fillorder", 1) == 1
                        and len(offs) > 0
                        and sum(counts) == page_bytes
                        and all(offs[k + 1] == offs[k] + counts[k] for k in range(len(offs) - 1))
                    )
                    if contiguous:
                        offsets[i] = offs[0]
                    else:
                        raw = False
        self.path = path
        self.num_pages = n
        self.raw_dtype = raw_dtype
        self.offsets = offsets if raw else None
        self._array = None
        if raw:
            stride = np.diff(offsets)
            if n == 1 or (stride.min() == stride.max() and stride[0] >= page_bytes):
                step = int(stride[0]) if n > 1 else page_bytes
                mm = np.memmap(path, dtype=np.uint8, mode="r")
                self._array = np.ndarray(
                    (n, *self.page_shape),
                    dtype=raw_dtype,
                    buffer=mm,
                    offset=int(offsets[0]),
                    strides=(
                        step,
                        self.page_shape[1] * raw_dtype.itemsize,
                        raw_dtype.itemsize,
                    ),
                )

    def pages(self, start: int, stop: int) -> np.ndarray:
        """Pages ``start..stop`` as an array ``(n, Y, X)`` (a view when mapped)."""
        if self._array is not None:
            return self._array[start:stop]
        out = np.empty((stop - start, *self.page_shape), dtype=self.raw_dtype)
        if self.offsets is not None:
            with open(self.path, "rb") as fh:
                for k, i in enumerate(range(start, stop)):
                    fh.seek(int(self.offsets[i]))
                    fh.readinto(memoryview(out[k]).cast("B"))
            return out
        import tifffile

        with tifffile.TiffFile(self.path) as tif:
            for k, i in enumerate(range(start, stop)):
                out[k] = tif.pages[i].asarray()
        return out


class _TIFFSequence(Sequence):
    _fmt = "TIFF"

    def __init__(
        self, path: Any, num_planes: int = 1, num_channels: int = 1, len_: int | None = None
    ) -> None:
        self._path = os.path.abspath(_require_file(path))
        for name, value in (("num_planes", num_planes), ("num_channels", num_channels)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self._num_planes, self._num_channels = int(num_planes), int(num_channels)
        self._source = _PageSource(self._path)
        per_frame = self._num_planes * self._num_channels
        available = self._source.num_pages // per_frame
        if len_ is not None:
            if not isinstance(len_, (int, np.integer)) or len_ < 0 or len_ > available:
                raise ValueError(
                    f"len_ must be an integer between 0 and {available} (the complete frames in "
                    f"{self._path!r}), got {len_!r}"
                )
            available = int(len_)
        self._len = available
        self._dtype = self._source.dtype

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        y, x = self._source.page_shape
        return (self._len, self._num_planes, y, x, self._num_channels)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _pages_block(self, start: int, stop: int) -> np.ndarray:
        p, c = self._num_planes, self._num_channels
        pages = self._source.pages(start * p * c, stop * p * c)
        y, x = self._source.page_shape
        return pages.reshape(stop - start, p, c, y, x).transpose(0, 1, 3, 4, 2)

    def _view(self, start: int, stop: int) -> np.ndarray | None:
        if (
            self._num_channels == 1
            and self._source._array is not None
            and self._source.raw_dtype == self._dtype
        ):
            block = self._pages_block(start, stop)
            if block.flags.c_contiguous:
                return block
        return None

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        np.copyto(out, self._pages_block(start, stop), casting="unsafe")

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        return {
            "fmt": self._fmt,
            "path": _path_record(self._path, ctx.savedir),
            "num_planes": self._num_planes,
            "num_channels": self._num_channels,
            "len_": self._len,
        }

    @classmethod
    def _fromdict_impl(cls, d: dict[str, Any], ctx: _LoadContext) -> Sequence:
        path = _resolve_path(d["path"], ctx.savedir, "TIFF file")
        return cls(path, d.get("num_planes", 1), d.get("num_channels", 1), d.get("len_"))

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_source", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._source = _PageSource(self._path)


class _TIFFsSequence(Sequence):
    _fmt = "TIFFs"

    def __init__(self, paths: Any) -> None:
        if (
            not isinstance(paths, _SequenceABC)
            or isinstance(paths, str)
            or not paths
            or not all(
                isinstance(pl, _SequenceABC) and not isinstance(pl, str) and pl for pl in paths
            )
        ):
            raise ValueError(
                "paths must be a non-empty list (one entry per plane) of non-empty lists (one "
                "glob pattern per channel), e.g. [['ch0_*.tif', 'ch1_*.tif']]"
            )
        nchan = {len(pl) for pl in paths}
        if len(nchan) != 1:
            raise ValueError(f"paths: every plane needs the same number of channels, got {nchan}")
        self._patterns = [[os.fspath(p) for p in plane] for plane in paths]
        files = []
        for plane in self._patterns:
            row = []
            for pattern in plane:
                matches = sorted(_glob.glob(pattern))
                if not matches:
                    raise FileNotFoundError(f"paths: the pattern {pattern!r} matches no file")
                row.append([os.path.abspath(m) for m in matches])
            files.append(row)
        counts = {len(f) for row in files for f in row}
        if len(counts) != 1:
            raise ValueError(
                "paths: every pattern must match the same number of files (one per frame); "
                f"got counts {sorted(counts)}"
            )
        self._files = files
        import tifffile

        with tifffile.TiffFile(files[0][0][0]) as tif:
            page = tif.pages[0]
            if len(page.shape) != 2:
                raise ValueError(f"{files[0][0][0]!r}: expected 2-D single-sample images")
            self._yx = tuple(int(s) for s in page.shape)
            self._dtype = _check_numeric(page.dtype, f"TIFF file {files[0][0][0]!r}")
        self._len = counts.pop()

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (self._len, len(self._files), *self._yx, len(self._files[0]))

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        import tifffile

        for p, row in enumerate(self._files):
            for c, files in enumerate(row):
                for k, t in enumerate(range(start, stop)):
                    img = tifffile.imread(files[t], key=0)
                    if img.shape != self._yx:
                        raise ValueError(
                            f"{files[t]!r} has shape {img.shape}; expected {self._yx} like the "
                            "first file"
                        )
                    out[k, p, :, :, c] = img

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        return {
            "fmt": self._fmt,
            "patterns": [
                [_path_record(p, ctx.savedir) for p in plane] for plane in self._patterns
            ],
        }

    @classmethod
    def _fromdict_impl(cls, d: dict[str, Any], ctx: _LoadContext) -> Sequence:
        patterns = []
        for plane in d["patterns"]:
            row = []
            for rec in plane:
                rel = rec.get("relpath")
                cand = (
                    os.path.normpath(os.path.join(ctx.savedir, rel))
                    if rel is not None and ctx.savedir is not None
                    else None
                )
                if cand is not None and _glob.glob(cand):
                    row.append(cand)
                elif _glob.glob(rec["abspath"]):
                    row.append(rec["abspath"])
                else:
                    tried = [p for p in (cand, rec["abspath"]) if p]
                    raise FileNotFoundError(
                        "cannot find the TIFF files of pattern "
                        f"{os.path.basename(rec['abspath'])!r};"
                        " tried: " + ", ".join(map(repr, tried))
                    )
            patterns.append(row)
        return cls(patterns)


class _NdarraySequence(Sequence):
    _fmt = "ndarray"

    def __init__(self, array: Any) -> None:
        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            array = np.asarray(array)
        if array.ndim != 5:
            raise ValueError(
                f"array must have 5 dimensions (T, Z, Y, X, C), got shape {tuple(array.shape)}"
            )
        self._dtype = _check_numeric(array.dtype, "array")
        self._array = array

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return tuple(int(s) for s in self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _view(self, start: int, stop: int) -> np.ndarray | None:
        block = self._array[start:stop]
        if block.flags.c_contiguous and block.dtype == self._dtype:
            view = block.view()
            view.flags.writeable = False
            return view
        return None

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        np.copyto(out, self._array[start:stop], casting="unsafe")

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        if ctx.savedir is None:
            raise ValueError(
                "an ndarray sequence can only be described inside a dataset directory"
            )
        import h5py

        from sima_fast._atomic import atomic_write

        name = f"sequence_{uuid.uuid4().hex}.h5"
        path = os.path.join(ctx.writedir, name)
        with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
            dset = f.create_dataset("imaging", shape=self.shape, dtype=self._dtype)
            for t0, chunk in self.iter_chunks():
                dset[t0 : t0 + len(chunk)] = chunk
            for i, label in enumerate(DIM_ORDER):
                dset.dims[i].label = label
        ctx.new_files.append(path)
        return {
            "fmt": "HDF5",
            "path": _path_record(os.path.join(ctx.savedir, name), ctx.savedir),
            "dim_order": DIM_ORDER,
            "group": "/",
            "key": "imaging",
        }


class _MemmapSequence(Sequence):
    _fmt = "memmap"

    def __init__(
        self,
        path: Any,
        shape: tuple[int, ...],
        dim_order: str,
        dtype: Any = "float32",
        order: str = "C",
    ) -> None:
        self._path = os.path.abspath(_require_file(path))
        try:
            file_shape = tuple(int(s) for s in shape)
        except TypeError:
            raise ValueError(f"shape must be a tuple of ints, got {shape!r}") from None
        if any(s < 0 for s in file_shape):
            raise ValueError(f"shape must be non-negative, got {file_shape}")
        self._dim_order = _validate_dim_order(dim_order, len(file_shape))
        self._dtype = _check_numeric(np.dtype(dtype), "dtype")
        if order not in ("C", "F"):
            raise ValueError(f"order must be 'C' or 'F', got {order!r}")
        expected = int(np.prod(file_shape)) * self._dtype.itemsize
        actual = os.path.getsize(self._path)
        if actual < expected:
            raise ValueError(
                f"path: {self._path!r} holds {actual} bytes but shape {file_shape} of {dtype} "
                f"needs {expected}"
            )
        self._file_shape, self._order, self._raw_dtype = file_shape, order, np.dtype(dtype)
        self._memmap = np.memmap(self._path, self._raw_dtype, "r", shape=file_shape, order=order)
        self._shape = _canonical_shape(file_shape, self._dim_order)

    def _mm(self) -> np.ndarray:
        if getattr(self, "_memmap", None) is None:
            self._memmap = np.memmap(
                self._path, self._raw_dtype, "r", shape=self._file_shape, order=self._order
            )
        return self._memmap

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _block(self, start: int, stop: int) -> np.ndarray:
        mm = self._mm()
        sel = [slice(None)] * mm.ndim
        sel[self._dim_order.index("t")] = slice(start, stop)
        return _to_canonical(mm[tuple(sel)], self._dim_order)

    def _view(self, start: int, stop: int) -> np.ndarray | None:
        block = self._block(start, stop)
        if block.flags.c_contiguous and block.dtype == self._dtype:
            return np.asarray(block)
        return None

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        np.copyto(out, self._block(start, stop), casting="unsafe")

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        return {
            "fmt": self._fmt,
            "path": _path_record(self._path, ctx.savedir),
            "shape": list(self._file_shape),
            "dim_order": self._dim_order,
            "dtype": self._raw_dtype.str,
            "order": self._order,
        }

    @classmethod
    def _fromdict_impl(cls, d: dict[str, Any], ctx: _LoadContext) -> Sequence:
        path = _resolve_path(d["path"], ctx.savedir, "memmap file")
        return cls(
            path, tuple(d["shape"]), d["dim_order"], d.get("dtype", "float32"), d.get("order", "C")
        )


class _ZarrSequence(Sequence):
    _fmt = "zarr"

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
        self._dim_order = _validate_dim_order(dim_order, len(arr.shape))
        self._dtype = _check_numeric(np.dtype(arr.dtype), "zarr array")
        self._shape = _canonical_shape(tuple(arr.shape), self._dim_order)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def default_chunk_frames(self) -> int:
        n = super().default_chunk_frames()
        chunks = getattr(self._array, "chunks", None)
        if chunks:
            tchunk = int(chunks[self._dim_order.index("t")])
            n = max(tchunk, (n // tchunk) * tchunk)
        return n

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        sel = [slice(None)] * len(self._array.shape)
        sel[self._dim_order.index("t")] = slice(start, stop)
        block = np.asarray(self._array[tuple(sel)])
        np.copyto(out, _to_canonical(block, self._dim_order), casting="unsafe")

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        if self._path is None:
            raise ValueError(
                "a zarr sequence opened from an in-memory store or array cannot be saved; "
                "create it from a path on disk"
            )
        return {
            "fmt": self._fmt,
            "path": _path_record(self._path, ctx.savedir),
            "dim_order": self._dim_order,
        }

    @classmethod
    def _fromdict_impl(cls, d: dict[str, Any], ctx: _LoadContext) -> Sequence:
        return cls(_resolve_path(d["path"], ctx.savedir, "zarr store"), d["dim_order"])

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if self._path is not None:
            state.pop("_array", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_array" not in state:
            import zarr

            self._array = zarr.open(self._path, mode="r")


class _DaskSequence(Sequence):
    """A lazy ``dask.array`` seen as a sequence (``Sequence.create('dask', array)``)."""

    _fmt = "dask"

    def __init__(self, array: Any, dim_order: str = DIM_ORDER) -> None:
        import dask.array as da

        if not isinstance(array, da.Array):
            raise TypeError(
                f"array must be a dask.array.Array, got {type(array).__name__} (use "
                "Sequence.create('ndarray', ...) for numpy arrays)"
            )
        order = _validate_dim_order(dim_order, array.ndim)
        if any(np.isnan(s) for s in array.shape):
            raise ValueError(
                f"array has unknown dimensions {array.shape}; call compute_chunk_sizes() first"
            )
        present = [d for d in DIM_ORDER if d in order]
        view = array.transpose([order.index(d) for d in present])
        view = view[tuple(slice(None) if d in order else None for d in DIM_ORDER)]
        self._dtype = _check_numeric(view.dtype, "array")
        self._array = view

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return tuple(int(s) for s in self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        np.copyto(out, np.asarray(self._array[start:stop].compute()), casting="unsafe")

    def to_dask(self, chunks: int | None = None) -> Any:
        if chunks is None:
            return self._array.rechunk({1: -1, 2: -1, 3: -1, 4: -1})
        return self._array.rechunk({0: int(chunks), 1: -1, 2: -1, 3: -1, 4: -1})

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        # Saved like an in-memory array: computed chunk by chunk into an HDF5 file.
        return _NdarraySequence._todict(self, ctx)


# ---------------------------------------------------------------------------
# wrappers
# ---------------------------------------------------------------------------


class _WrapperSequence(Sequence):
    """A sequence defined in terms of another one."""

    def __init__(self, base: Sequence) -> None:
        if not isinstance(base, Sequence):
            raise TypeError(f"expected a Sequence to wrap, got {type(base).__name__}")
        self._base = base


class _IndexedSequence(_WrapperSequence):
    _fmt = "indexed"

    def __init__(self, base: Sequence, indices: Any) -> None:
        super().__init__(base)
        if not isinstance(indices, tuple):
            indices = (indices,)
        indices = _expand_ellipsis(indices, 5)
        if len(indices) > 5:
            raise IndexError(
                f"too many indices: a sequence has 5 axes (t, z, y, x, c), got {len(indices)}"
            )
        indices = indices + (slice(None),) * (5 - len(indices))
        self._indices = tuple(
            _normalize_axis_index(idx, size, axis)
            for idx, size, axis in zip(indices, base.shape, DIM_ORDER)
        )
        self._shape = tuple(_index_len(idx, size) for idx, size in zip(self._indices, base.shape))
        t_idx = self._indices[0]
        self._times = (
            np.arange(*t_idx.indices(base.shape[0]), dtype=np.int64)
            if isinstance(t_idx, slice)
            else t_idx
        )
        spatial = self._indices[1:]
        self._spatial_is_full = all(
            isinstance(i, slice) and i == slice(0, size, 1)
            for i, size in zip(spatial, base.shape[1:])
        )

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._base.dtype

    def _select_spatial(self, block: np.ndarray) -> np.ndarray:
        if self._spatial_is_full:
            return block
        for axis, idx in enumerate(self._indices[1:], start=1):
            if isinstance(idx, slice):
                sl = [slice(None)] * 5
                sl[axis] = idx
                block = block[tuple(sl)]
            else:
                block = np.take(block, idx, axis=axis)
        return block

    def _view(self, start: int, stop: int) -> np.ndarray | None:
        if not self._spatial_is_full or stop <= start:
            return None
        times = self._times[start:stop]
        if times[-1] - times[0] != len(times) - 1 or np.any(np.diff(times) != 1):
            return None
        return self._base._view(int(times[0]), int(times[-1]) + 1)

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        times = self._times[start:stop]
        pos = 0
        n = len(times)
        while pos < n:
            # the longest run of consecutive increasing frames (read as one block),
            # allowing small gaps (e.g. a step of 2) to be read through.
            end = pos + 1
            while end < n and 0 < times[end] - times[end - 1] <= 4:
                end += 1
            t0, t1 = int(times[pos]), int(times[end - 1]) + 1
            block = self._base.read_chunk(t0, t1)
            block = block[times[pos:end] - t0] if t1 - t0 != end - pos else block
            np.copyto(out[pos:end], self._select_spatial(block), casting="unsafe")
            pos = end

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        return {
            "fmt": self._fmt,
            "base": self._base._todict(ctx),
            "indices": [_index_to_json(i) for i in self._indices],
        }

    @classmethod
    def _fromdict_impl(cls, d: dict[str, Any], ctx: _LoadContext) -> Sequence:
        base = Sequence._fromdict(d["base"], ctx)
        return cls(base, tuple(_index_from_json(i) for i in d["indices"]))


class _JoinedSequence(Sequence):
    _fmt = "joined"

    def __init__(self, sequences: list[Sequence]) -> None:
        if not sequences:
            raise ValueError("join needs at least one sequence")
        for i, s in enumerate(sequences):
            if not isinstance(s, Sequence):
                raise TypeError(f"sequences[{i}] is a {type(s).__name__}, not a Sequence")
        ref = sequences[0].shape[:4]
        for i, s in enumerate(sequences[1:], start=1):
            if s.shape[:4] != ref:
                raise ValueError(
                    f"sequences[{i}] has (T, Z, Y, X) = {s.shape[:4]} but sequences[0] has "
                    f"{ref}; joined sequences must match in everything but channels"
                )
        self._sequences = list(sequences)
        self._dtype = np.result_type(*[s.dtype for s in sequences])

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (*self._sequences[0].shape[:4], sum(s.shape[4] for s in self._sequences))

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        c0 = 0
        for s in self._sequences:
            c1 = c0 + s.shape[4]
            np.copyto(out[..., c0:c1], s.read_chunk(start, stop), casting="unsafe")
            c0 = c1

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        return {"fmt": self._fmt, "sequences": [s._todict(ctx) for s in self._sequences]}

    @classmethod
    def _fromdict_impl(cls, d: dict[str, Any], ctx: _LoadContext) -> Sequence:
        return cls([Sequence._fromdict(s, ctx) for s in d["sequences"]])


def _selection(value: Any, size: int, what: str) -> np.ndarray | None:
    """None (everything) or a sorted int array of positions along one axis."""
    if value is None:
        return None
    arr = np.atleast_1d(np.asarray(value))
    if arr.dtype == bool:
        if arr.shape != (size,):
            raise ValueError(f"masks: boolean {what} selection must have length {size}")
        return np.flatnonzero(arr)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"masks: {what} must be None, an int or a list of ints, got {value!r}")
    if arr.size and (arr.min() < -size or arr.max() >= size):
        raise ValueError(f"masks: {what} {value!r} out of range for size {size}")
    return np.unique(arr.astype(np.int64) % size)


class _MaskedSequence(_WrapperSequence):
    _fmt = "masked"

    def __init__(self, base: Sequence, masks: Any) -> None:
        super().__init__(base)
        if not isinstance(masks, (list, tuple)):
            raise TypeError(
                "masks must be a list of tuples (frames, zyx_mask, channels) or "
                "(frames, planes, yx_mask, channels)"
            )
        T, Z, Y, X, C = base.shape
        self._entries = []  # (frames | None, zyx bool | None, channels | None)
        self._raw_masks = []
        for k, m in enumerate(masks):
            if not isinstance(m, (tuple, list)) or len(m) not in (3, 4):
                raise ValueError(
                    f"masks[{k}] must be (frames, zyx_mask, channels) or (frames, planes, "
                    f"yx_mask, channels), got {m!r}"
                )
            frames = _selection(m[0], T, "frames")
            channels = _selection(m[-1], C, "channels")
            if len(m) == 3:
                spatial = None if m[1] is None else np.asarray(m[1], dtype=bool)
                if spatial is not None and spatial.shape != (Z, Y, X):
                    raise ValueError(
                        f"masks[{k}]: the zyx mask must have shape {(Z, Y, X)}, "
                        f"got {spatial.shape}"
                    )
            else:
                planes = _selection(m[1], Z, "planes")
                yx = None if m[2] is None else np.asarray(m[2], dtype=bool)
                if yx is not None and yx.shape != (Y, X):
                    raise ValueError(
                        f"masks[{k}]: the yx mask must have shape {(Y, X)}, got {yx.shape}"
                    )
                if planes is None and yx is None:
                    spatial = None
                else:
                    spatial = np.zeros((Z, Y, X), dtype=bool)
                    spatial[planes if planes is not None else slice(None)] = (
                        True if yx is None else yx
                    )
            self._entries.append(
                (frames, None if spatial is None else np.nonzero(spatial), channels)
            )
            self._raw_masks.append((frames, spatial, channels))
        self._dtype = _float_dtype(base.dtype)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return self._base.shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        np.copyto(out, self._base.read_chunk(start, stop), casting="unsafe")
        C = out.shape[4]
        for frames, spatial, channels in self._entries:
            if frames is None:
                local = np.arange(stop - start)
            else:
                lo, hi = np.searchsorted(frames, [start, stop])
                local = frames[lo:hi] - start
                if local.size == 0:
                    continue
            for c in range(C) if channels is None else channels:
                plane = out[..., c]
                if spatial is None:
                    plane[local] = np.nan
                else:
                    z, y, x = spatial
                    plane[local[:, None], z[None], y[None], x[None]] = np.nan

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        entries = []
        for frames, spatial, channels in self._raw_masks:
            entries.append(
                {
                    "frames": None if frames is None else [int(f) for f in frames],
                    "zyx_mask": None if spatial is None else {"array": ctx.add_array(spatial)},
                    "channels": None if channels is None else [int(c) for c in channels],
                }
            )
        return {"fmt": self._fmt, "base": self._base._todict(ctx), "masks": entries}

    @classmethod
    def _fromdict_impl(cls, d: dict[str, Any], ctx: _LoadContext) -> Sequence:
        base = Sequence._fromdict(d["base"], ctx)
        masks = []
        for e in d["masks"]:
            zyx = None if e["zyx_mask"] is None else ctx.get_array(e["zyx_mask"]["array"])
            masks.append((e["frames"], zyx, e["channels"]))
        return cls(base, masks)


class _MotionCorrectedSequence(_WrapperSequence):
    _fmt = "motion_corrected"

    def __init__(
        self, base: Sequence, displacements: Any, frame_shape: tuple[int, ...] | None = None
    ) -> None:
        super().__init__(base)
        T, Z, Y, X, _ = base.shape
        disp = np.asarray(displacements)
        if (
            disp.dtype.kind not in "iuf"
            or disp.ndim not in (2, 3, 4)
            or disp.shape[-1]
            not in (
                2,
                3,
            )
        ):
            raise ValueError(
                "displacements must be a numeric array of shape (T, 2|3), (T, Z, 2|3) or "
                f"(T, Z, Y, 2|3); got {disp.dtype} {disp.shape}"
            )
        expected = {2: (T,), 3: (T, Z), 4: (T, Z, Y)}[disp.ndim]
        if disp.shape[:-1] != expected:
            raise ValueError(
                f"displacements of shape {disp.shape} do not match the sequence: expected "
                f"{(*expected, disp.shape[-1])} for (T, Z, Y) = {(T, Z, Y)}"
            )
        if disp.dtype.kind == "f":
            if not np.all(np.isfinite(disp)) or np.any(disp != np.round(disp)):
                raise ValueError("displacements must be whole numbers of pixels")
        if disp.size and disp.min() < 0:
            raise ValueError(
                f"displacements must be >= 0 (shift them so the smallest is 0); got minimum "
                f"{disp.min()}"
            )
        self._displacements = disp.astype(np.int64)
        # Canonical per-row (T, Z, Y, 3) table of (dz, dy, dx).
        full = np.zeros((T, Z, Y, 3), dtype=np.int64)
        d = self._displacements
        if d.shape[-1] == 2:
            d = np.concatenate([np.zeros((*d.shape[:-1], 1), np.int64), d], axis=-1)
        full[...] = {2: lambda a: a[:, None, None], 3: lambda a: a[:, :, None], 4: lambda a: a}[
            d.ndim
        ](d)
        self._rows = full
        if frame_shape is None:
            mx = full.reshape(-1, 3).max(axis=0) if full.size else np.zeros(3, np.int64)
            frame_shape = (Z + int(mx[0]), Y + int(mx[1]), X + int(mx[2]))
        else:
            try:
                frame_shape = tuple(int(s) for s in frame_shape)
            except TypeError:
                raise ValueError(f"frame_shape must be (Z, Y, X), got {frame_shape!r}") from None
            if len(frame_shape) == 4:
                frame_shape = frame_shape[:3]
            if len(frame_shape) != 3 or min(frame_shape) < 1:
                raise ValueError(
                    f"frame_shape must be three positive ints (Z, Y, X), got {frame_shape!r}"
                )
        self._frame_shape = frame_shape
        self._dtype = _float_dtype(base.dtype)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (self._base.shape[0], *self._frame_shape, self._base.shape[4])

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        from sima_fast.kernels.gaps import place_displaced_rows

        src = self._base.read_chunk(start, stop)
        place_displaced_rows(src, self._rows[start:stop], out)

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        return {
            "fmt": self._fmt,
            "base": self._base._todict(ctx),
            "displacements": {"array": ctx.add_array(self._displacements)},
            "frame_shape": list(self._frame_shape),
        }

    @classmethod
    def _fromdict_impl(cls, d: dict[str, Any], ctx: _LoadContext) -> Sequence:
        base = Sequence._fromdict(d["base"], ctx)
        disp = ctx.get_array(d["displacements"]["array"])
        return cls(base, disp, tuple(d["frame_shape"]))


class _FilledSequence(_WrapperSequence):
    _fmt = "filled"

    def __init__(self, base: Sequence) -> None:
        super().__init__(base)
        self._first: np.ndarray | None = None
        self._resume: tuple[int, np.ndarray] | None = None  # (next frame, carried values)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return self._base.shape

    @property
    def dtype(self) -> np.dtype:
        return self._base.dtype

    def _npix(self) -> int:
        return int(np.prod(self.shape[1:]))

    def _first_values(self) -> np.ndarray:
        """Each pixel's first finite value over the whole sequence (NaN if none)."""
        if self._first is None:
            from sima_fast.kernels.gaps import first_finite

            found = np.zeros(self._npix(), dtype=bool)
            first = np.full(self._npix(), np.nan, dtype=self.dtype)
            for _, chunk in self._base.iter_chunks(reuse_buffer=True):
                if first_finite(chunk.reshape(len(chunk), -1), found, first) == 0:
                    break
            self._first = first
        return self._first

    def _carried_before(self, start: int) -> np.ndarray:
        """The values carried into frame ``start``: the last finite ones before it."""
        if self._resume is not None and self._resume[0] == start:
            return self._resume[1].copy()
        last = self._first_values().copy()
        if start == 0:
            return last
        from sima_fast.kernels.gaps import last_finite_before

        found = np.zeros(self._npix(), dtype=bool)
        step = self._base.default_chunk_frames()
        for t1 in range(start, 0, -step):
            t0 = max(0, t1 - step)
            chunk = self._base.read_chunk(t0, t1)
            if last_finite_before(chunk.reshape(len(chunk), -1), found, last) == 0:
                break
        return last

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        from sima_fast.kernels.gaps import fill_forward

        last = self._carried_before(start)
        src = self._base.read_chunk(start, stop)
        fill_forward(src.reshape(len(src), -1), last, out.reshape(len(out), -1))
        self._resume = (stop, last)

    def _todict(self, ctx: _SaveContext) -> dict[str, Any]:
        return {"fmt": self._fmt, "base": self._base._todict(ctx)}

    @classmethod
    def _fromdict_impl(cls, d: dict[str, Any], ctx: _LoadContext) -> Sequence:
        return cls(Sequence._fromdict(d["base"], ctx))

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_resume"] = None
        return state


_FORMATS = {
    "HDF5": _HDF5Sequence,
    "TIFF": _TIFFSequence,
    "TIFFs": _TIFFsSequence,
    "ndarray": _NdarraySequence,
    "memmap": _MemmapSequence,
    "zarr": _ZarrSequence,
    "dask": _DaskSequence,
}

_FROM_DICT = {
    cls._fmt: cls
    for cls in (
        _HDF5Sequence,
        _TIFFSequence,
        _TIFFsSequence,
        _MemmapSequence,
        _ZarrSequence,
        _IndexedSequence,
        _JoinedSequence,
        _MaskedSequence,
        _MotionCorrectedSequence,
        _FilledSequence,
    )
}

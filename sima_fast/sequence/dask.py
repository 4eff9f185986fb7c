"""Sequences and dask arrays, both ways.

* ``Sequence.create('dask', array)`` (:class:`DaskSequence`) reads a lazy
  ``dask.array`` as a sequence;
* :meth:`Sequence.to_dask <sima_fast.sequence.base.Sequence.to_dask>`
  (:func:`sequence_to_dask`) views any sequence as a ``dask.array`` whose
  blocks are read by the sequence's own chunked reader.

Both rest on :class:`SequencePayload`, the sequence packed once for the
workers of a cluster (the Dask cluster code in :mod:`sima_fast.distributed`
sends its tasks the same payload). Nothing here imports dask until it is
used.
"""

from __future__ import annotations

import os
import pickle
import threading
import uuid
from typing import Any

import numpy as np

from sima_fast.sequence.axes import DIM_ORDER, validate_dim_order
from sima_fast.sequence.base import SaveContext, Sequence, check_numeric
from sima_fast.sequence.hdf5 import write_hdf5_copy

__all__ = ["DaskSequence", "SequencePayload", "add_note", "sequence_to_dask", "worker_location"]


class DaskSequence(Sequence, format="dask"):
    """A lazy ``dask.array`` seen as a sequence (``Sequence.create('dask', array)``).

    Parameters
    ----------
    array : dask.array.Array
        The data, with known dimensions.
    dim_order : str, optional
        One letter of ``'tzyxc'`` per axis of ``array`` (default
        ``'tzyxc'``).
    """

    def __init__(self, array: Any, dim_order: str = DIM_ORDER) -> None:
        import dask.array as da

        if not isinstance(array, da.Array):
            raise TypeError(
                f"array must be a dask.array.Array, got {type(array).__name__} (use "
                "Sequence.create('ndarray', ...) for numpy arrays)"
            )
        order = validate_dim_order(dim_order, array.ndim)
        if any(np.isnan(s) for s in array.shape):
            raise ValueError(
                f"array has unknown dimensions {array.shape}; call compute_chunk_sizes() first"
            )
        present = [d for d in DIM_ORDER if d in order]
        view = array.transpose([order.index(d) for d in present])
        view = view[tuple(slice(None) if d in order else None for d in DIM_ORDER)]
        self._dtype = check_numeric(view.dtype, "array")
        if view.dtype != self._dtype:  # bool, float16: converted block by block when computed
            view = view.astype(self._dtype)
        self._array = view

    @staticmethod
    def sequence_to_dask(seq: Sequence, chunks: Any = None) -> Any:
        """Return any sequence as a lazy dask array; what :meth:`Sequence.to_dask` calls.

        Parameters
        ----------
        seq : Sequence
            The sequence to wrap.
        chunks : int or tuple of int, optional
            Frames per block, or the block lengths along time.

        Returns
        -------
        dask.array.Array
            ``(T, Z, Y, X, C)`` in the sequence's dtype.
        """
        return sequence_to_dask(seq, chunks)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)`` of the array."""
        return tuple(int(s) for s in self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        """The array's dtype, in native byte order."""
        return self._dtype

    @property
    def storage_chunk_frames(self) -> int:
        """The frames of the array's first block along time."""
        return max(1, int(self._array.chunks[0][0]))

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        np.copyto(out, np.asarray(self._array[start:stop].compute()), casting="unsafe")

    def to_dask(self, chunks: int | tuple[int, ...] | None = None) -> Any:
        """Return the array itself, ``(T, Z, Y, X, C)``, rechunked to whole frames.

        Parameters
        ----------
        chunks : int or tuple of int, optional
            Frames per block, or every block's length in turn (default: the
            array's own blocks along time).

        Returns
        -------
        dask.array.Array
        """
        if chunks is None:
            return self._array.rechunk({1: -1, 2: -1, 3: -1, 4: -1})
        chunks = int(chunks) if np.ndim(chunks) == 0 else tuple(int(c) for c in chunks)
        return self._array.rechunk({0: chunks, 1: -1, 2: -1, 3: -1, 4: -1})

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Compute the array into an HDF5 file of the dataset directory; describe that.

        A dask graph cannot be referred to by a description, so the saved
        dataset holds a copy, computed chunk by chunk (see
        :func:`write_hdf5_copy`), and reloads as an ``'HDF5'`` sequence.

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


# ---------------------------------------------------------------------------
# sequences on workers
# ---------------------------------------------------------------------------


def worker_location() -> str:
    """Where the caller runs: ``'worker <address>'`` in a Dask worker, else ``'the client'``.

    Returns
    -------
    str

    Examples
    --------
    >>> worker_location()
    'the client'
    """
    try:
        from distributed import get_worker

        return f"worker {get_worker().address}"
    except (ImportError, ValueError):
        return "the client"


def add_note(exc: BaseException, note: str) -> None:
    """Attach ``note`` to an exception's report (Python 3.11+; a no-op before).

    Parameters
    ----------
    exc : BaseException
        The exception being raised.
    note : str
        A line of context, such as the frames and the worker involved.
    """
    if hasattr(exc, "add_note"):  # Python >= 3.11
        exc.add_note(note)


class SequencePayload:
    """A sequence packed for the workers and unpacked inside the tasks.

    The sequence is pickled once on the client (with cloudpickle, so classes
    defined in a notebook travel too; array data out of band, so an in-memory
    sequence is not copied again on a worker) and unpickled on each
    worker thread the first time a task there needs it: sequences keep
    per-reader state (open files, gap-filling positions), so threads never
    share one. Unpacking inside the task, not on arrival, turns a data file
    that a worker cannot see into a clear error of that task.

    Parameters
    ----------
    seq : Sequence
        The sequence to pack.

    Attributes
    ----------
    description : str
        ``repr(seq)``, for messages.
    files : list of str
        :meth:`Sequence.data_files` of ``seq``, checked before unpacking.
    shape : tuple of int
    dtype : numpy.dtype
    nbytes : int
        The packed size (pickle plus out-of-band buffers).
    """

    def __init__(self, seq: Sequence) -> None:
        import cloudpickle  # a dependency of dask: sequence classes of a notebook travel too

        buffers: list[pickle.PickleBuffer] = []
        self.blob = cloudpickle.dumps(seq, protocol=5, buffer_callback=buffers.append)
        self.buffers = buffers
        self.description = repr(seq)
        self.files = seq.data_files()
        self.shape = tuple(seq.shape)
        self.dtype = np.dtype(seq.dtype)
        self.nbytes = len(self.blob) + sum(memoryview(b).nbytes for b in buffers)
        self.token = uuid.uuid4().hex
        self._local = threading.local()

    def __dask_tokenize__(self) -> tuple[str, str]:
        """Return the payload's identity for dask's graph keys.

        Returns
        -------
        tuple of str
            A constant tag and a random token fixed at packing, so dask never
            hashes the pickled sequence.
        """
        return ("sima-fast-sequence", self.token)

    def __getstate__(self) -> dict[str, Any]:
        """Return the state to pickle, without this process's per-thread copies.

        Returns
        -------
        dict
        """
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled payload with no sequence unpacked yet.

        Parameters
        ----------
        state : dict
            What :meth:`__getstate__` returned.
        """
        self.__dict__.update(state)
        self._local = threading.local()

    def load(self) -> Sequence:
        """Return this thread's copy of the sequence, unpacking it on first use.

        Returns
        -------
        Sequence

        Raises
        ------
        FileNotFoundError
            A data file of the sequence is missing here; the message names
            the files and the worker.
        """
        seq = getattr(self._local, "seq", None)
        if seq is None:
            missing = [f for f in self.files if not os.path.exists(f)]
            if missing:
                raise FileNotFoundError(
                    f"{worker_location()} cannot read {self.description}: missing data file(s) "
                    + ", ".join(map(repr, missing))
                    + " (the workers must see the data at the same paths as the client, "
                    "e.g. on a shared file system)"
                )
            try:
                seq = pickle.loads(self.blob, buffers=self.buffers)
            except Exception as exc:
                add_note(exc, f"while opening {self.description} on {worker_location()}")
                raise
            self._local.seq = seq
        return seq


class _FrameReader:
    """Array-like view of a sequence for ``dask.array.from_array``: slices read frames."""

    def __init__(self, payload: SequencePayload) -> None:
        self.payload = payload
        self.shape = payload.shape
        self.dtype = payload.dtype
        self.ndim = 5

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        t = key[0] if key else slice(None)
        if not isinstance(t, slice):
            raise TypeError(f"frames are read by slices of time, got {t!r}")
        start, stop, step = t.indices(self.shape[0])
        seq = self.payload.load()
        if step == 1:
            block = seq.read_chunk(start, max(start, stop))
        else:
            frames = [seq.read_chunk(i, i + 1) for i in range(start, stop, step)]
            block = np.concatenate(frames) if frames else seq.read_chunk(0, 0)
        rest = key[1:]
        return block[(slice(None), *rest)] if rest else block


def _time_chunks(n_frames: int, chunks: Any, default: int) -> tuple[int, ...]:
    """Block lengths along time: ``chunks`` frames each, or the lengths given."""
    if chunks is None or np.ndim(chunks) == 0:
        step = default if chunks is None else int(chunks)
        if step < 1:
            raise ValueError(f"chunks must be a positive number of frames, got {chunks!r}")
        return tuple(min(step, n_frames - t) for t in range(0, n_frames, step)) or (0,)
    lengths = tuple(int(c) for c in chunks)
    if any(c < 0 for c in lengths) or sum(lengths) != n_frames:
        raise ValueError(
            f"chunks must be block lengths summing to the {n_frames} frames, got {chunks!r}"
        )
    return lengths or (0,)


def sequence_to_dask(seq: Sequence, chunks: int | tuple[int, ...] | None = None) -> Any:
    """Return a lazy ``dask.array`` ``(T, Z, Y, X, C)`` reading ``seq`` by time chunks.

    This is :meth:`Sequence.to_dask <sima_fast.sequence.base.Sequence.to_dask>`.
    The graph holds the sequence once (a :class:`SequencePayload`) and one
    read task per block.

    Parameters
    ----------
    seq : Sequence
        The sequence.
    chunks : int or tuple of int, optional
        Frames per block (default: :meth:`Sequence.default_chunk_frames`), or
        every block's length in turn.

    Returns
    -------
    dask.array.Array

    Examples
    --------
    >>> import numpy as np
    >>> from sima_fast import Sequence
    >>> data = np.arange(40, dtype=np.uint16).reshape(5, 1, 2, 4, 1)
    >>> arr = sequence_to_dask(Sequence.create('ndarray', data), chunks=2)
    >>> arr.shape, arr.chunks[0], arr.dtype
    ((5, 1, 2, 4, 1), (2, 2, 1), dtype('uint16'))
    >>> bool((arr.compute(scheduler='sync') == data).all())
    True
    >>> sequence_to_dask(Sequence.create('ndarray', data), chunks=(1, 4)).chunks[0]
    (1, 4)
    """
    import dask.array as da

    default = None if chunks is not None else seq.default_chunk_frames()
    tchunks = _time_chunks(len(seq), chunks, default)
    reader = _FrameReader(SequencePayload(seq))
    return da.from_array(
        reader,
        chunks=(tchunks, *seq.shape[1:]),
        name=f"sima-fast-sequence-{uuid.uuid4().hex}",
        asarray=False,
        fancy=False,
        lock=False,
        inline_array=False,
        meta=np.empty((0,) * 5, dtype=seq.dtype),
    )

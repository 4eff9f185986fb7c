"""The :class:`Sequence` base class: the protocol every imaging sequence answers.

A :class:`Sequence` is what an :class:`~sima_fast.imaging.ImagingDataset` is
made of: a lazy, chunk-readable view of a ``(T, Z, Y, X, C)`` movie. It is
created from a file or an array with :meth:`Sequence.create` and can be
wrapped (indexed, joined across channels, masked, motion corrected, gap
filled) without copying data. Every sequence offers two ways in:

* iteration and :meth:`Sequence._get_frame`, which return ``float64`` frames
  ``(Z, Y, X, C)`` exactly as SIMA did, for drop-in use;
* :meth:`Sequence.read_chunk` and :meth:`Sequence.iter_chunks`, which return
  contiguous blocks of frames in the sequence's native :attr:`Sequence.dtype`
  (``uint16`` stays ``uint16``). This is what sima_fast's kernels consume; the
  readers fill caller-provided buffers straight from the file (``h5py``
  ``read_direct``, memory-mapped TIFF pages) and never load a whole file.

Beyond reading, every sequence answers the same public questions, so that no
other module needs to know which kind of sequence it holds:
:meth:`~Sequence.data_files` (the files it reads),
:attr:`~Sequence.storage_chunk_frames` (the storage's chunk length along
time), :attr:`~Sequence.zero_copy` and :meth:`~Sequence.view` (whether reads
are views of memory), :meth:`~Sequence.describe` (a one-line description),
:attr:`~Sequence.children` (the sequences a view wraps), and
:meth:`~Sequence.todict` / :meth:`Sequence.fromdict` (the JSON-compatible
description :mod:`sima_fast.storage` writes into a dataset directory).

A concrete sequence provides :attr:`~Sequence.shape`, :attr:`~Sequence.dtype`,
``_read(start, stop, out)`` (fill a buffer with frames) and
:meth:`~Sequence.todict`; it names its format in the class statement, which
registers it for :meth:`Sequence.create` and :meth:`Sequence.fromdict`::

    class MySequence(Sequence, format="mine"):
        ...

The built-in formats live one per module beside this one (``hdf5``,
``tiff``, ``arrays``, ``zarr``, ``dask``) and the views in ``views``.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from sima_fast._validate import ArgumentTypeError

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "ITER_CHUNK_BYTES",
    "MAX_DESCRIPTION_DEPTH",
    "SUPPORTED_DTYPES",
    "CorruptFileError",
    "DescriptionError",
    "LoadContext",
    "SaveContext",
    "Sequence",
    "WrapperSequence",
    "check_numeric",
    "float_dtype",
    "path_record",
    "require_file",
    "resolve_path",
    "validate_description",
]

#: Target size of one chunk returned by :meth:`Sequence.iter_chunks`.
DEFAULT_CHUNK_BYTES = 64 * 2**20

#: Size of the float64 blocks behind frame-by-frame iteration.
ITER_CHUNK_BYTES = 16 * 2**20

#: How deeply sequence descriptions may nest (a view of a view of ...): deeper
#: descriptions are refused as corrupt instead of exhausting the stack.
MAX_DESCRIPTION_DEPTH = 64

#: The dtypes a sequence may hold, as :meth:`Sequence.create` and the readers
#: accept them. ``bool`` is read as ``uint8`` and ``float16`` as ``float32``,
#: chunk by chunk (see :func:`check_numeric`).
SUPPORTED_DTYPES = (
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
)


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


class CorruptFileError(OSError):
    """A data file is truncated or corrupt.

    Raised when a file's own structure promises data that is not there (a
    TIFF page whose strips end past the end of the file, a page chain cut
    short, fewer pages than the file's metadata announces, a virtual HDF5
    dataset whose source files are missing) or when its data cannot be
    decoded (a damaged zlib strip, a corrupt HDF5 chunk). Readers check what
    they can when a sequence is opened, so a damaged file is refused then
    rather than read as a shorter movie; decoding errors can only show when
    the damaged frames are read.

    It subclasses :class:`OSError` (like :class:`gzip.BadGzipFile`), so code
    that catches ``OSError`` around file reading keeps working.

    Parameters
    ----------
    message : str
        What is wrong; names the file (full path) and where in it.
    path : str, optional
        The file, also kept as :attr:`filename`.

    Attributes
    ----------
    filename : str or None
        The damaged file.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.filename = path

    def __str__(self) -> str:
        """Return the message."""
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple:
        """Pickle with the path (errors travel from Dask workers)."""
        return (type(self), (self.args[0] if self.args else "", self.filename))


class DescriptionError(ValueError):
    """A sequence description (from a dataset's ``metadata.json``) is malformed.

    Parameters
    ----------
    field : str
        Where in the description, e.g. ``'path'`` or ``'base.indices[2]'``.
    message : str
        What was expected and what was found.

    Attributes
    ----------
    field : str
        As given; :func:`validate_description` prefixes it with the path of
        the enclosing description (``'sequences[0].base.path'``).
    detail : str
        ``message`` without the field.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message

    def __reduce__(self) -> tuple:
        """Pickle with the field and the message."""
        return (type(self), (self.field, self.detail))


# ---------------------------------------------------------------------------
# helpers shared by the readers
# ---------------------------------------------------------------------------


def float_dtype(dtype: Any) -> np.dtype:
    """Smallest float dtype that holds every value of ``dtype`` exactly.

    Parameters
    ----------
    dtype : numpy dtype-like
        The dtype of the source values.

    Returns
    -------
    numpy.dtype
        ``float32`` for floats up to 32 bits and integers up to 16 bits,
        ``float64`` otherwise.

    Examples
    --------
    >>> float_dtype('uint16'), float_dtype('int32')
    (dtype('float32'), dtype('float64'))
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    if dtype.kind in "iub" and dtype.itemsize <= 2:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def check_numeric(dtype: Any, what: str) -> np.dtype:
    """Check that ``dtype`` is one the kernels can read; give the dtype chunks are read in.

    Integers of 8 to 64 bits and ``float32``/``float64`` are read as they are
    stored (in native byte order). ``bool`` is read as ``uint8`` and
    ``float16`` as ``float32``: each chunk is converted as it is read (the
    source is never copied whole), so every accepted dtype works in
    projections, extraction and exports.

    Parameters
    ----------
    dtype : numpy dtype-like
        The dtype of some stored data.
    what : str
        What holds the data (the argument's name or the file), for the error
        message.

    Returns
    -------
    numpy.dtype
        The dtype of the chunks a sequence over this data returns, in the
        machine's byte order.

    Raises
    ------
    ArgumentTypeError
        ``dtype`` is not one of :data:`SUPPORTED_DTYPES` (complex, object,
        strings, structured records, extended-precision floats). It is both a
        :class:`TypeError` and a :class:`ValueError`.

    Examples
    --------
    >>> check_numeric('>u2', 'the file') == np.dtype('uint16')
    True
    >>> check_numeric('float16', 'array'), check_numeric(bool, 'array')
    (dtype('float32'), dtype('uint8'))
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype.kind == "f" and dtype.itemsize == 2:
        return np.dtype(np.float32)
    if not (
        (dtype.kind in "iu" and dtype.itemsize <= 8)
        or (dtype.kind == "f" and dtype.itemsize in (4, 8))
    ):
        raise ArgumentTypeError(
            f"{what} has dtype {dtype}; a numeric dtype the kernels read is required: "
            f"{', '.join(SUPPORTED_DTYPES)}"
        )
    return dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype


def path_record(path: str, savedir: str | None) -> dict[str, str | None]:
    """How a description records a data file: absolute and relative paths.

    Parameters
    ----------
    path : str
        The data file.
    savedir : str or None
        The dataset directory being written, if any.

    Returns
    -------
    dict
        ``{'abspath': ..., 'relpath': ...}``; ``relpath`` is relative to
        ``savedir`` (None without one, or across Windows drives). See
        :func:`resolve_path` for the way back.
    """
    abspath = os.path.abspath(path)
    rel = None
    if savedir is not None:
        try:
            rel = os.path.relpath(abspath, savedir)
        except ValueError:  # different drive on Windows
            rel = None
    return {"abspath": abspath, "relpath": rel}


def resolve_path(record: dict[str, Any], savedir: str | None, what: str) -> str:
    """Find a recorded data file: relative to ``savedir`` first, then absolute.

    A dataset directory moved together with its data files keeps working
    through the relative path; one moved alone, through the absolute path.

    Parameters
    ----------
    record : dict
        A :func:`path_record` (``'abspath'`` and ``'relpath'``, either may be
        None).
    savedir : str or None
        The dataset directory being loaded.
    what : str
        What the file is, for the error message (e.g. ``'HDF5 file'``).

    Returns
    -------
    str
        The path of an existing file.

    Raises
    ------
    FileNotFoundError
        Neither path exists; the message lists both.
    """
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


def require_file(path: Any, argname: str = "path") -> str:
    """Check that ``path`` names an existing file.

    Parameters
    ----------
    path : str or os.PathLike
        The path given by the caller.
    argname : str, optional
        The argument's name in error messages.

    Returns
    -------
    str
        ``path`` as a string.

    Raises
    ------
    TypeError
        Not a path.
    FileNotFoundError
        No such file.
    IsADirectoryError
        A directory.
    """
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


# ---------------------------------------------------------------------------
# checking descriptions (what metadata.json holds) before they are used
# ---------------------------------------------------------------------------

_REQUIRED = object()


def _brief(value: Any) -> str:
    """Describe a JSON value in a few words, without recursion, for error messages."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return f"a {'JSON object' if isinstance(value, dict) else type(value).__name__}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ints(value: Any, field: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, list):
        raise DescriptionError(
            field,
            f"expected a list of integers{' or null' if optional else ''}, got {_brief(value)}",
        )
    for i, v in enumerate(value):
        if not _is_int(v):
            raise DescriptionError(f"{field}[{i}]", f"expected an integer, got {_brief(v)}")


def _check_path(value: Any, field: str) -> None:
    if not isinstance(value, dict):
        raise DescriptionError(
            field,
            f"expected a path record {{'abspath': ..., 'relpath': ...}}, got {_brief(value)}",
        )
    for key in ("abspath", "relpath"):
        v = value.get(key)
        if v is not None and not isinstance(v, str):
            raise DescriptionError(f"{field}.{key}", f"expected a string or null, got {_brief(v)}")
    if value.get("abspath") is None and value.get("relpath") is None:
        raise DescriptionError(field, "the path record has neither 'abspath' nor 'relpath'")


def _check_array_ref(value: Any, field: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, dict) or not isinstance(value.get("array"), str):
        raise DescriptionError(
            field, f"expected {{'array': <key in the array store>}}, got {_brief(value)}"
        )


def _check_index(value: Any, field: str) -> None:
    if isinstance(value, dict):
        bounds = value.get("slice")
        if not isinstance(bounds, list) or not 1 <= len(bounds) <= 3:
            raise DescriptionError(
                f"{field}.slice",
                f"expected a list of 1 to 3 integers or nulls, got {_brief(bounds)}",
            )
        for i, b in enumerate(bounds):
            if b is not None and not _is_int(b):
                raise DescriptionError(
                    f"{field}.slice[{i}]", f"expected an integer or null, got {_brief(b)}"
                )
        return
    _check_ints(value, field)


def _check_field(kind: str, value: Any, field: str) -> list[tuple[str, Any]]:
    """Check one field of a description and return the nested descriptions it holds."""
    if kind in ("str", "str?"):
        if not (isinstance(value, str) or (kind == "str?" and value is None)):
            raise DescriptionError(field, f"expected a string, got {_brief(value)}")
    elif kind in ("int", "int?"):
        if not (_is_int(value) or (kind == "int?" and value is None)):
            raise DescriptionError(field, f"expected an integer, got {_brief(value)}")
    elif kind in ("ints", "ints?"):
        _check_ints(value, field, optional=kind == "ints?")
    elif kind == "path":
        _check_path(value, field)
    elif kind == "path lists":
        if not isinstance(value, list) or not value:
            raise DescriptionError(
                field, f"expected a non-empty list of lists, got {_brief(value)}"
            )
        for p, plane in enumerate(value):
            if not isinstance(plane, list) or not plane:
                raise DescriptionError(
                    f"{field}[{p}]",
                    f"expected a non-empty list of path records, got {_brief(plane)}",
                )
            for c, rec in enumerate(plane):
                _check_path(rec, f"{field}[{p}][{c}]")
                if not isinstance(rec.get("abspath"), str):
                    raise DescriptionError(f"{field}[{p}][{c}].abspath", "missing")
    elif kind == "array":
        _check_array_ref(value, field)
    elif kind == "indices":
        if not isinstance(value, list):
            raise DescriptionError(field, f"expected a list of axis indices, got {_brief(value)}")
        for i, index in enumerate(value):
            _check_index(index, f"{field}[{i}]")
    elif kind == "masks":
        if not isinstance(value, list):
            raise DescriptionError(field, f"expected a list of masks, got {_brief(value)}")
        for i, entry in enumerate(value):
            where = f"{field}[{i}]"
            if not isinstance(entry, dict):
                raise DescriptionError(where, f"expected a JSON object, got {_brief(entry)}")
            for key in ("frames", "zyx_mask", "channels"):
                if key not in entry:
                    raise DescriptionError(f"{where}.{key}", "missing")
            _check_ints(entry["frames"], f"{where}.frames", optional=True)
            _check_array_ref(entry["zyx_mask"], f"{where}.zyx_mask", optional=True)
            _check_ints(entry["channels"], f"{where}.channels", optional=True)
    elif kind == "description":
        return [(field, value)]
    elif kind == "descriptions":
        if not isinstance(value, list) or not value:
            raise DescriptionError(
                field, f"expected a non-empty list of sequence descriptions, got {_brief(value)}"
            )
        return [(f"{field}[{i}]", v) for i, v in enumerate(value)]
    else:  # pragma: no cover - a class declared a kind this module does not know
        raise ValueError(f"unknown description field kind {kind!r}")
    return []


def validate_description(d: Any, where: str = "") -> None:
    """Check a sequence description, and every description nested in it, before use.

    Every field a loadable format declares in its
    :attr:`Sequence.description_fields` is checked for presence and type,
    without opening any file, and nesting is limited to
    :data:`MAX_DESCRIPTION_DEPTH` levels; the walk uses no recursion, so a
    hostile description cannot exhaust the stack. :meth:`Sequence.fromdict`
    calls it, and :func:`sima_fast.storage.read_metadata` calls it for every
    sequence of a dataset.

    Parameters
    ----------
    d : object
        The description (normally a dict parsed from JSON).
    where : str, optional
        Its position, prefixed to the field names in errors (e.g.
        ``'sequences[0]'``).

    Raises
    ------
    DescriptionError
        A missing field, a field of the wrong type, an unknown or unloadable
        ``fmt``, or nesting deeper than :data:`MAX_DESCRIPTION_DEPTH`; its
        :attr:`~DescriptionError.field` gives the full position, e.g.
        ``'sequences[0].base.path'``.

    Examples
    --------
    >>> validate_description({'fmt': 'HDF5', 'dim_order': 'tyx'}, 'sequences[0]')
    Traceback (most recent call last):
    ...
    sima_fast.sequence.base.DescriptionError: sequences[0].path: missing
    """

    def join(prefix: str, field: str) -> str:
        return f"{prefix}.{field}" if prefix else field

    stack = [(d, where, 1)]
    while stack:
        node, pos, depth = stack.pop()
        if depth > MAX_DESCRIPTION_DEPTH:
            short = pos if len(pos) <= 100 else f"{pos[:50]}...{pos[-40:]}"
            raise DescriptionError(
                short or "description",
                f"sequence descriptions nest more than {MAX_DESCRIPTION_DEPTH} levels deep",
            )
        if not isinstance(node, dict):
            raise DescriptionError(
                pos or "description",
                f"unknown sequence description: expected a JSON object, got {_brief(node)}",
            )
        fmt = node.get("fmt")
        target = _REGISTRY.get(fmt) if isinstance(fmt, str) else None
        if target is None or target.fromdict.__func__ is Sequence.fromdict.__func__:
            loadable = sorted(
                name
                for name, cls in _REGISTRY.items()
                if cls.fromdict.__func__ is not Sequence.fromdict.__func__
            )
            raise DescriptionError(
                join(pos, "fmt"),
                f"unknown sequence description: expected one of the loadable formats "
                f"{loadable}, got {_brief(fmt)}",
            )
        for field, kind in target.description_fields.items():
            optional = kind.startswith("?")
            kind = kind.lstrip("?")
            if field not in node:
                if optional:
                    continue
                raise DescriptionError(join(pos, field), "missing")
            for child_pos, child in _check_field(kind, node[field], join(pos, field)):
                stack.append((child, child_pos, depth + 1))


def _prefetched(
    seq: Sequence, start: int, stop: int, chunk_frames: int, reuse_buffer: bool
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield blocks of ``seq`` read one step ahead by a background thread.

    Two tokens circulate between the reader and the consumer: with
    ``reuse_buffer`` they are the two preallocated buffers (a buffer goes back
    to the reader only when the consumer asks for the following block),
    otherwise they only bound the read-ahead to two blocks.

    Yields
    ------
    (int, numpy.ndarray)
        The index of the block's first frame and the block, as
        :meth:`Sequence.iter_chunks` yields them.
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
# serialisation contexts
# ---------------------------------------------------------------------------


class SaveContext:
    """What describing sequences needs beyond JSON, collected while saving.

    Parameters
    ----------
    savedir : str or None
        The dataset directory the description will live in (paths are
        recorded relative to it).
    writedir : str, optional
        Where new files are written now (default: ``savedir``); a staging
        directory that will be renamed to ``savedir``.

    Attributes
    ----------
    savedir, writedir : str or None
        As given.
    arrays : dict of str to numpy.ndarray
        Arrays referenced by the descriptions (stored by the caller, e.g. in
        one HDF5 file of the dataset directory).
    new_files : list of str
        Files written while describing (removed by the caller on failure).
    """

    def __init__(self, savedir: str | None, writedir: str | None = None) -> None:
        self.savedir = savedir
        self.writedir = savedir if writedir is None else writedir
        self.arrays: dict[str, np.ndarray] = {}
        self.new_files: list[str] = []

    def add_array(self, array: Any) -> str:
        """Keep an array for the dataset's array store.

        Parameters
        ----------
        array : array_like
            The array.

        Returns
        -------
        str
            The key under which a :class:`LoadContext` gives it back.
        """
        key = f"a{len(self.arrays):04d}"
        self.arrays[key] = np.asarray(array)
        return key


class LoadContext:
    """Resolves array references and file paths while loading descriptions.

    Parameters
    ----------
    savedir : str or None
        The dataset directory the descriptions come from.
    arrays : mapping of str to array_like, or None
        The dataset's array store (e.g. an open ``h5py`` group).
    """

    def __init__(self, savedir: str | None, arrays: Any) -> None:
        self.savedir = savedir
        self.arrays = arrays

    def get_array(self, key: str) -> np.ndarray:
        """Return the array stored under ``key`` by :meth:`SaveContext.add_array`.

        Parameters
        ----------
        key : str
            The array's key.

        Returns
        -------
        numpy.ndarray

        Raises
        ------
        ValueError
            The store has no such key (a corrupt dataset).
        """
        if self.arrays is None or key not in self.arrays:
            raise ValueError(f"the dataset's array store has no entry {key!r} (corrupt dataset?)")
        return np.asarray(self.arrays[key])


# ---------------------------------------------------------------------------
# the public base class
# ---------------------------------------------------------------------------

#: Registered formats: name -> class (filled by Sequence.__init_subclass__).
_REGISTRY: dict[str, type] = {}


def _registered(fmt: str) -> Any:
    """Return the class registered under ``fmt``.

    The base class makes its views and dask arrays through the registry rather
    than by importing ``views`` and ``dask``, which import this module: the
    package ``__init__`` imports every reader and view, so they are registered
    before any sequence exists.

    Returns
    -------
    type
        A :class:`Sequence` subclass.
    """
    return _REGISTRY[fmt]


class Sequence(abc.ABC):
    """A sequence of imaging frames shaped ``(T, Z, Y, X, C)``.

    Create sequences with :meth:`Sequence.create`; derive new ones by
    indexing (``seq[t, z, y, x, c]``), :meth:`join`, :meth:`mask`,
    :meth:`apply_displacements` and :meth:`fill_gaps`. Sequences are lazy:
    nothing is read until frames or chunks are requested.

    Subclasses provide :attr:`shape`, :attr:`dtype`, ``_read(start, stop,
    out)`` and :meth:`todict` (and :meth:`fromdict` to be loadable), and name
    their format in the class statement (``class S(Sequence, format='S')``)
    to be found by :meth:`create` and :meth:`fromdict`.

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
    >>> seq.describe(), seq.data_files()
    ('Ndarray', [])
    """

    #: The format's name: the ``fmt`` of :meth:`create` and of saved
    #: descriptions (None for a class that did not register one).
    format: ClassVar[str | None] = None

    #: The fields of this format's description and their kinds, checked by
    #: :func:`validate_description` before :meth:`fromdict` runs: ``'str'``,
    #: ``'int'``, ``'ints'`` (list of integers), ``'path'`` (a
    #: :func:`path_record`), ``'path lists'``, ``'array'`` (``{'array': key}``),
    #: ``'indices'``, ``'masks'``, ``'description'`` (a nested description) or
    #: ``'descriptions'`` (a non-empty list of them); a trailing ``'?'`` also
    #: allows null, a leading ``'?'`` makes the field optional.
    description_fields: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, format: str | None = None, **kwargs: Any) -> None:
        """Register a subclass under its format name.

        Parameters
        ----------
        format : str, optional
            The name :meth:`create` and :meth:`fromdict` know the class by.
            Readers (not :class:`WrapperSequence` views) become creatable;
            classes that define :meth:`fromdict` become loadable. Without it
            the class is not registered (and inherits its parent's name).
        **kwargs
            Passed on to the next ``__init_subclass__`` in the method order.

        Raises
        ------
        ValueError
            The name is empty or already taken by another class.
        """
        super().__init_subclass__(**kwargs)
        if format is None:
            return
        if not isinstance(format, str) or not format:
            raise ValueError(f"format must be a non-empty string, got {format!r}")
        existing = _REGISTRY.get(format)
        if existing is not None and (existing.__module__, existing.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise ValueError(
                f"the sequence format {format!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        cls.format = format
        _REGISTRY[format] = cls

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
        """Fill ``out`` (``(stop - start, Z, Y, X, C)``, :attr:`dtype`) with frames.

        The one reading hook of a subclass; :meth:`read_chunk` has checked
        the range and the buffer.
        """

    @abc.abstractmethod
    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the sequence in JSON-compatible form, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            Where arrays (masks, displacements) are put, files are written,
            and paths are made relative to.

        Returns
        -------
        dict
            Holds ``'fmt'`` (a registered format name) and what that
            format's :meth:`fromdict` needs.
        """

    # -- the protocol every sequence answers -----------------------------------

    def view(self, start: int, stop: int) -> np.ndarray | None:
        """Frames ``start`` to ``stop`` without copying, when the storage allows it.

        Parameters
        ----------
        start, stop : int
            Frame range, ``0 <= start <= stop <= len(self)``.

        Returns
        -------
        numpy.ndarray or None
            A read-only C-contiguous ``(stop - start, Z, Y, X, C)`` block of
            :attr:`dtype` that views memory (an in-memory array, a
            memory-mapped file), or None when the frames must be read into a
            buffer.
        """
        return None

    @property
    def zero_copy(self) -> bool:
        """Whether chunks are views of memory rather than reads into buffers.

        True for in-memory arrays and memory-mapped files: reading costs no
        I/O thread, so a caller need not leave a core to a prefetching
        reader. Decided on the first frame.
        """
        return self.view(0, min(1, len(self))) is not None

    @property
    def children(self) -> tuple[Sequence, ...]:
        """The sequences this one is computed from (empty for a reader)."""
        return ()

    def data_files(self) -> list[str]:
        """Every data file this sequence, and the sequences it wraps, reads.

        Returns
        -------
        list of str
            Absolute paths, sorted, without repetitions; empty for data held
            in memory.
        """
        return sorted({f for child in self.children for f in child.data_files()})

    @property
    def storage_chunk_frames(self) -> int:
        """Frames per chunk of the storage along time (1 when it has no chunks).

        Reading whole storage chunks avoids decoding a chunk twice: the
        chunked formats (HDF5, zarr, dask) give their chunk length, and a
        planner aligns the time ranges it hands out on multiples of it.
        """
        return 1

    @property
    def acquisition_metadata(self) -> Any:
        """What the microscope recorded about the acquisition, or None.

        An :class:`~sima_fast.sequence.metadata.AcquisitionMetadata`:
        frame rate, zoom, planes, channels, pixel size and their source.
        Read lazily from the data file the first time it is asked for, then
        kept (ScanImage, ImageJ, OME-TIFF metadata and resolution tags for
        TIFF files, attributes for HDF5 datasets; see
        :func:`~sima_fast.sequence.metadata.read_tiff_metadata` and
        :func:`~sima_fast.sequence.metadata.read_hdf5_metadata`). Views pass
        their source's metadata through, adjusted for what they select
        (``seq[::2]`` has half the frame rate). Values set by the user
        (assign an ``AcquisitionMetadata``, or a dict of its fields) win
        over the file's; assigning None removes them. Metadata that cannot
        be read gives None with an
        :class:`~sima_fast.sequence.metadata.AcquisitionMetadataWarning`,
        never an error.

        Examples
        --------
        >>> import numpy as np
        >>> from sima_fast import Sequence
        >>> seq = Sequence.create('ndarray', np.zeros((4, 1, 2, 2, 1)))
        >>> seq.acquisition_metadata is None
        True
        >>> seq.acquisition_metadata = {'frame_rate': 30.0}
        >>> seq[::2].acquisition_metadata.frame_rate
        15.0
        """
        found = self._source_acquisition_metadata()
        user = self.__dict__.get("_acquisition_user")
        if user is None:
            return found
        return user if found is None else found.merge(user)

    @acquisition_metadata.setter
    def acquisition_metadata(self, value: Any) -> None:
        from sima_fast.sequence.metadata import check_acquisition_metadata

        self.__dict__["_acquisition_user"] = check_acquisition_metadata(value)

    @property
    def user_acquisition_metadata(self) -> Any:
        """The acquisition metadata assigned to this sequence by the user, or None.

        What a dataset saves in its ``metadata.json`` for the sequence; the
        file's own metadata is read again from the file.
        """
        return self.__dict__.get("_acquisition_user")

    def _source_acquisition_metadata(self) -> Any:
        """Return the metadata the data itself carries (readers read it, views adapt it)."""
        return None

    def describe(self) -> str:
        """Describe the sequence in one line, e.g. ``'MotionCorrected of HDF5 movie.h5'``.

        Returns
        -------
        str
            The kind of sequence, its file's name for a file reader, and
            ``'of ...'`` the sequence a single-sequence view wraps.
        """
        return type(self).__name__.strip("_").replace("Sequence", "") or "Sequence"

    # -- construction ----------------------------------------------------------

    @staticmethod
    def formats() -> list[str]:
        """List the formats :meth:`create` accepts (every registered reader), sorted.

        Returns
        -------
        list of str

        Examples
        --------
        >>> from sima_fast import Sequence
        >>> [f for f in Sequence.formats() if f in ('HDF5', 'TIFF', 'ndarray', 'indexed')]
        ['HDF5', 'TIFF', 'ndarray']
        """
        return sorted(
            name for name, cls in _REGISTRY.items() if not issubclass(cls, WrapperSequence)
        )

    @classmethod
    def create(cls, fmt: str, *args: Any, **kwargs: Any) -> Sequence:
        """Create a sequence from a file or an array.

        Parameters
        ----------
        fmt : {'HDF5', 'TIFF', 'TIFFs', 'ndarray', 'memmap', 'zarr', 'dask', 'constant'}
            The storage format (or the name of another registered reader,
            see :meth:`formats`). The remaining arguments depend on it:

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
            ``'constant'``: ``value, shape, dtype=None``
                ``value`` at every position of a ``(T, Z, Y, X, C)``
                ``shape``, in the value's own dtype (a Python int is
                ``int64``) unless ``dtype`` is given; nothing is stored.
        *args, **kwargs
            The format's arguments, as listed under ``fmt``; passed to the
            registered class.

        Returns
        -------
        Sequence

        Raises
        ------
        ValueError
            Unknown ``fmt``, a bad ``dim_order``, inconsistent shapes.
        ArgumentTypeError
            Data of a dtype the kernels cannot read (see
            :data:`SUPPORTED_DTYPES`; ``bool`` is read as ``uint8`` and
            ``float16`` as ``float32``). Both a TypeError and a ValueError.
        FileNotFoundError
            A path that does not exist (or a missing source file of a
            virtual HDF5 dataset).
        CorruptFileError
            A truncated or corrupt file (an :class:`OSError`), detected when
            the file is opened where the format allows (TIFF page table and
            metadata, HDF5 structure) and otherwise when the damaged frames
            are read.
        KeyError
            An HDF5 group or key that is not in the file, or a dangling link.

        Examples
        --------
        >>> import numpy as np
        >>> from sima_fast import Sequence
        >>> Sequence.create('ndarray', np.zeros((5, 1, 8, 8, 2))).shape
        (5, 1, 8, 8, 2)
        """
        target = _REGISTRY.get(fmt) if isinstance(fmt, str) else None
        if target is None or issubclass(target, WrapperSequence):
            raise ValueError(f"fmt must be one of {Sequence.formats()}, got {fmt!r}")
        return target(*args, **kwargs)

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Rebuild a sequence from its :meth:`todict` description.

        Called on :class:`Sequence`, it hands ``d`` to the class registered
        under ``d['fmt']``; loadable subclasses override it to build
        themselves (wrapped sequences through ``Sequence.fromdict`` again).

        Parameters
        ----------
        d : dict
            A description written by :meth:`todict`.
        ctx : LoadContext
            The dataset directory and its array store.

        Returns
        -------
        Sequence

        Raises
        ------
        DescriptionError
            The description is malformed: no loadable class is registered
            under ``d['fmt']``, or a field is missing or of the wrong type (see
            :func:`validate_description`). A :class:`ValueError`.
        FileNotFoundError
            A data file of the description cannot be found.
        CorruptFileError
            A data file is truncated or corrupt.
        """
        validate_description(d)
        return _REGISTRY[d["fmt"]].fromdict(d, ctx)

    # -- array-like protocol ---------------------------------------------------

    def __len__(self) -> int:
        """Return the number of frames, ``T``."""
        return self.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """``(num_planes, num_rows, num_columns, num_channels)``."""
        return self.shape[1:]

    def __repr__(self) -> str:
        """Return ``<ClassName: shape=..., dtype=...>``."""
        return f"<{type(self).__name__}: shape={self.shape}, dtype={self.dtype}>"

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield each frame as a ``float64`` array ``(Z, Y, X, C)``."""
        frame_bytes = max(int(np.prod(self.shape[1:])) * 8, 1)
        chunk_frames = max(1, ITER_CHUNK_BYTES // frame_bytes)
        for _, chunk in self.iter_chunks(chunk_frames):
            yield from chunk.astype(np.float64)

    def _get_frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as a ``float64`` array ``(Z, Y, X, C)`` (SIMA's accessor)."""
        n = len(self)
        if not -n <= t < n:
            raise IndexError(f"frame index {t} out of range for a sequence of {n} frames")
        t %= n
        return self.read_chunk(t, t + 1)[0].astype(np.float64)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """Read every frame into one array (what :func:`numpy.asarray` calls).

        Parameters
        ----------
        dtype : numpy dtype-like, optional
            The result's dtype (default ``float64``, as frames are).
        copy : bool, optional
            Accepted for NumPy 2's protocol; the result is always a new array.

        Returns
        -------
        numpy.ndarray
            ``(T, Z, Y, X, C)``.
        """
        out = self.read_chunk(0, len(self)).astype(np.float64 if dtype is None else dtype)
        return out

    def __getitem__(self, indices: Any) -> Sequence:
        """Index the sequence as ``seq[t, z, y, x, c]`` without dropping axes."""
        return _registered("indexed")(self, indices)

    # -- arithmetic (SIMA's sequence math) ---------------------------------------

    def __add__(self, other: Sequence) -> Sequence:
        """Add frames element-wise: a lazy view (see :mod:`sima_fast.sequence.arithmetic`)."""
        return _registered("arithmetic")("add", self, other)

    def __sub__(self, other: Sequence) -> Sequence:
        """Subtract frames element-wise: a lazy view (see :mod:`sima_fast.sequence.arithmetic`)."""
        return _registered("arithmetic")("subtract", self, other)

    def __mul__(self, other: Sequence) -> Sequence:
        """Multiply frames element-wise: a lazy view (see :mod:`sima_fast.sequence.arithmetic`)."""
        return _registered("arithmetic")("multiply", self, other)

    def __truediv__(self, other: Sequence) -> Sequence:
        """Divide frames element-wise: a lazy view (see :mod:`sima_fast.sequence.arithmetic`)."""
        return _registered("arithmetic")("true_divide", self, other)

    def __floordiv__(self, other: Sequence) -> Sequence:
        """Floor-divide frames element-wise: a lazy view (see :mod:`.arithmetic`).

        Parameters
        ----------
        other : Sequence
            The right operand, of the same shape.

        Returns
        -------
        Sequence
            ``self // other``.
        """
        return _registered("arithmetic")("floor_divide", self, other)

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
            view = self.view(start, stop)
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
        """Return the number of frames per chunk that makes one chunk about 64 MiB.

        Returns
        -------
        int
            At least 1 and at most ``len(self)``; a chunk of that many frames of
            :attr:`dtype` holds about :data:`DEFAULT_CHUNK_BYTES` bytes.
        """
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
        if prefetch and stop - start > chunk_frames and self.view(start, start + 1) is None:
            yield from _prefetched(self, start, stop, chunk_frames, reuse_buffer)
            return
        buffer = None
        for t0 in range(start, stop, chunk_frames):
            t1 = min(t0 + chunk_frames, stop)
            if reuse_buffer:
                view = self.view(t0, t1)
                if view is not None:
                    yield t0, view
                    continue
                if buffer is None:
                    buffer = np.empty((chunk_frames, *self.shape[1:]), dtype=self.dtype)
                yield t0, self.read_chunk(t0, t1, out=buffer[: t1 - t0])
            else:
                yield t0, self.read_chunk(t0, t1)

    def to_dask(self, chunks: int | tuple[int, ...] | None = None) -> Any:
        """View the sequence as a lazy ``dask.array`` of shape ``(T, Z, Y, X, C)``.

        Each block holds whole frames and is read by :meth:`read_chunk` when
        dask computes it, so a block costs what a chunk of the sequence's own
        reader costs. The graph holds the sequence once, pickled: for a file
        that is its path and parameters, not its data, so the array computes
        on the workers of a Dask cluster that see the same files. Needs the
        ``dask`` extra (``pip install "sima_fast[dask]"``).

        Parameters
        ----------
        chunks : int or tuple of int, optional
            Frames per block (default: :meth:`default_chunk_frames`, about
            64 MiB per block), or the length of every block in turn (summing
            to ``len(self)``).

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
        return _registered("dask").sequence_to_dask(self, chunks)

    # -- views -----------------------------------------------------------------

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
        return _registered("joined")(list(sequences))

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
        return _registered("masked")(self, masks)

    def apply_displacements(
        self, displacements: np.ndarray, frame_shape: tuple[int, ...] | None = None
    ) -> Sequence:
        """Return a motion-corrected view of the sequence.

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
            Pixels that receive several values hold their mean, or NaN if
            any of those values is NaN or infinite (SIMA's rule); pixels
            that receive none are NaN.

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
        return _registered("motion_corrected")(self, displacements, frame_shape)

    def fill_gaps(self) -> Sequence:
        """Return a view with every NaN (or infinite) value filled from the nearest observation.

        Per pixel, frame t shows the last finite value at or before t; before
        a pixel's first finite value it shows that first value; a pixel never
        observed stays NaN (see docs/contract.md). Reading streams: one pass finds
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
        return _registered("filled")(self)

    # -- export ----------------------------------------------------------------

    def export(
        self,
        filenames: Any,
        fmt: str = "TIFF16",
        fill_gaps: bool = False,
        channel_names: list[str] | None = None,
        compression: str | None = None,
        scale_values: bool = False,
    ) -> None:
        """Save every frame of this sequence as TIFF or HDF5, streaming.

        Parameters
        ----------
        filenames : str or list of list of str
            For ``'TIFF8'``/``'TIFF16'``, ``filenames[j][k]`` is the file of
            plane j, channel k (one page per frame). For ``'HDF5'``, a single
            path.
        fmt : str, optional
            Output format: a name registered in
            :data:`sima_fast.io.frames_writers`; built in: ``'TIFF16'``,
            ``'TIFF8'``, ``'HDF5'``. Default: 16-bit TIFF.
        fill_gaps : bool, optional
            Replace NaN values by the pixel's nearest observation, as
            :meth:`fill_gaps` defines. Default: False.
        channel_names : list of str, optional
            One name per channel, stored as the HDF5 attribute
            ``channel_names``. Default: ``'0'``, ``'1'``, ...
        compression : {None, 'gzip', 'lzf', 'szip'}, optional
            Lossless HDF5 compression filter (ignored for TIFF).
        scale_values : bool, optional
            Stretch each channel to the output's full range,
            ``(2**bits - 1) * v / max`` with the channel's maximum over the
            sequence (16 bits for HDF5). Default: False.

        Raises
        ------
        ValueError
            Unknown ``fmt`` or ``compression``, ``filenames`` not of the form
            above, ``channel_names`` of the wrong length, or an output path
            that this sequence reads (checked before anything is written).
        ArgumentTypeError
            ``fill_gaps``, ``scale_values`` or ``channel_names`` of the
            wrong type.
        OSError
            An output directory that cannot be created or written.

        Notes
        -----
        The frames are written by the same writers as
        :meth:`ImagingDataset.export_frames <sima_fast.imaging.ImagingDataset.export_frames>`
        (see docs/contract.md#exports): HDF5 files hold a float32 dataset
        ``imaging`` shaped ``(T, Z, Y, X, C)`` with dimension labels t, z, y,
        x, c; TIFF values are clipped to the type's range and truncated
        (NaN becomes 0). Memory does not grow with the number of frames, and
        all files are published together only when all are complete.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from sima_fast import Sequence
        >>> seq = Sequence.create('ndarray', np.arange(12.0).reshape(3, 1, 2, 2, 1))
        >>> out = os.path.join(tempfile.mkdtemp(), 'movie.h5')
        >>> seq.export(out, fmt='HDF5', channel_names=['GCaMP'])
        >>> Sequence.create('HDF5', out, 'tzyxc', key='imaging').shape
        (3, 1, 2, 2, 1)
        """
        from sima_fast.io._export import export_sequence

        export_sequence(
            self,
            filenames,
            fmt=fmt,
            fill_gaps=fill_gaps,
            channel_names=channel_names,
            compression=compression,
            scale_values=scale_values,
        )

    # -- pickling --------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Return the state to pickle, without open files or memory maps.

        Readers reopen their files on first use after unpickling, so a sequence
        sent to another process (a Dask worker) carries its path and parameters
        only.

        Returns
        -------
        dict
            A copy of the instance dict without ``_file``, ``_handle`` and
            ``_memmap``.
        """
        state = self.__dict__.copy()
        for key in ("_file", "_handle", "_memmap"):
            state.pop(key, None)
        return state


class WrapperSequence(Sequence):
    """A sequence computed from other sequences: the base of the views.

    Views (indexed, joined, masked, motion-corrected, gap-filled) are made
    by :class:`Sequence` methods, not by :meth:`Sequence.create`; their data
    files are those of the sequences they wrap.

    Parameters
    ----------
    *sequences : Sequence
        The wrapped sequences (one for every view but a join).

    Raises
    ------
    TypeError
        Something that is not a :class:`Sequence`.
    """

    def __init__(self, *sequences: Sequence) -> None:
        if not sequences:
            raise ValueError("a view needs at least one sequence to wrap")
        for s in sequences:
            if not isinstance(s, Sequence):
                raise TypeError(f"expected a Sequence to wrap, got {type(s).__name__}")
        self._children = tuple(sequences)

    @property
    def children(self) -> tuple[Sequence, ...]:
        """The wrapped sequences."""
        return self._children

    @property
    def base(self) -> Sequence:
        """The wrapped sequence (the first one of a join)."""
        return self._children[0]

    def _source_acquisition_metadata(self) -> Any:
        """Return the wrapped sequence's metadata, unchanged (selecting views adapt it)."""
        if len(self._children) == 1:
            return self._children[0].acquisition_metadata
        return None

    def describe(self) -> str:
        """Describe the view: its kind, and ``'of ...'`` the sequence it wraps when it wraps one.

        Returns
        -------
        str
            E.g. ``'MotionCorrected of HDF5 movie.h5'``; a join gives its kind only.
        """
        kind = super().describe()
        if len(self._children) == 1:
            return f"{kind} of {self._children[0].describe()}"
        return kind

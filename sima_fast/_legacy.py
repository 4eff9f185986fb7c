"""Restricted, bounded reading of pickles: SIMA 0.x and 1.x files and ``.npy`` object arrays.

SIMA stored its dataset directories as pickles, and numpy stores arrays of
Python objects (suite2p's ``stat.npy`` and ``ops.npy``) as pickles inside
``.npy`` files. Unpickling runs code named by the file and builds whatever
the file describes, so sima_fast never hands such a file to :mod:`pickle`
unguarded:

* **Allow-list.** Only the globals of an explicit allow-list resolve (plain
  containers, numpy array and scalar reconstruction, and for SIMA files scipy
  sparse matrices, SIMA 1.x's sequence classes and SIMA 0.x's
  ``sima.iterables`` channel classes); everything else is refused with
  :class:`UnsafePickleError`, whose message says what the file is and what
  to do with it. SIMA's own classes are never imported or
  instantiated: they become inert :class:`LegacyClass` markers that
  :mod:`sima_fast.storage` translates into sima_fast objects, and sparse
  matrices become :class:`LegacySparse` records converted with
  :func:`sparse_from_legacy`.
* **Bounds.** A small file may not make the reader build a large result or
  work for long. Before anything is built, the opcodes are scanned: every
  length they declare must lie inside the file and the number of objects they
  create is capped. Every allow-listed constructor that could allocate from a
  small argument (``bytearray(n)``, numpy's array, buffer and scalar
  reconstruction, ``list(x)``...) checks the size *before* allocating. After
  loading, one linear pass measures the result as a tree (a container
  reached through several references counts every time, as a recursive
  consumer would expand it), its nesting depth and reference cycles. The
  limits are described by :class:`PickleLimits` and can be raised for one
  block of code with :func:`pickle_limits`.

Every error names the file (full path) and, for a limit, the limit hit.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import datetime
import functools
import io
import mmap
import os
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "MIN_ALLOC_SLACK",
    "MIN_MAX_OBJECTS",
    "LegacyClass",
    "LegacySparse",
    "PickleLimits",
    "UnsafePickleError",
    "current_limits",
    "legacy_load",
    "load_npy",
    "pickle_limits",
    "sparse_from_legacy",
]

DEFAULT_MAX_DEPTH = 100
"""Default nesting depth limit (real SIMA and suite2p files nest about 10 deep)."""

MIN_MAX_OBJECTS = 1_000_000
"""Floor of the default object limit; the default is ``max(MIN_MAX_OBJECTS, file size)``."""

MIN_ALLOC_SLACK = 64 * 2**20
"""Bytes a single constructor call may allocate beyond the file's size by default (64 MiB)."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle was refused: outside the allow-list, over a limit, or corrupt.

    Parameters
    ----------
    message : str
        What was refused; starts with the file's path when it is known.
    path : str, optional
        The file.
    limit : str, optional
        The :class:`PickleLimits` field that was exceeded, if that is why.

    Attributes
    ----------
    path : str or None
        The file.
    limit : str or None
        The limit hit (``'max_depth'``, ``'max_objects'``,
        ``'max_alloc_per_call'``, ``'max_alloc_total'``), or None.
    """

    def __init__(self, message: str = "", *, path: str | None = None, limit: str | None = None):
        super().__init__(message)
        self.path = path
        self.limit = limit


# ---------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PickleLimits:
    """What one pickle may build; None means the size-relative default.

    The defaults are far above anything SIMA or suite2p wrote: those files
    contain their data, so a real file never builds much more than its own
    size, while a hostile one would.

    Parameters
    ----------
    max_depth : int, optional
        Maximum nesting depth of containers (lists, tuples, dicts, sets,
        object arrays, sparse-matrix states). Default :data:`DEFAULT_MAX_DEPTH`
        (100), so every consumer may walk the result recursively.
    max_objects : int or None, optional
        Maximum number of objects: both those the opcodes create and the
        size of the result counted as a tree (a container reached through
        ``k`` references counts ``k`` times, as converting, printing or
        saving it would expand it). None (default):
        ``max(MIN_MAX_OBJECTS, file size in bytes)``; a file without shared
        containers always fits, since every object needs at least one byte.
    max_alloc_per_call : int or None, optional
        Maximum bytes one constructor call may allocate (``bytearray(n)``,
        array, buffer and scalar reconstruction, sparse conversion). None
        (default): file size + :data:`MIN_ALLOC_SLACK` (64 MiB). Array data
        is always checked against the bytes the file really holds.
    max_alloc_total : int or None, optional
        Maximum bytes all such calls together may allocate. None (default):
        twice the file size + 4 × :data:`MIN_ALLOC_SLACK`.

    Examples
    --------
    >>> PickleLimits().max_depth
    100
    >>> PickleLimits(max_objects=10**8).max_objects
    100000000
    """

    max_depth: int = DEFAULT_MAX_DEPTH
    max_objects: int | None = None
    max_alloc_per_call: int | None = None
    max_alloc_total: int | None = None

    def __post_init__(self) -> None:
        from sima_fast._validate import check_int

        check_int("max_depth", self.max_depth, low=1)
        for name in ("max_objects", "max_alloc_per_call", "max_alloc_total"):
            value = getattr(self, name)
            if value is not None:
                check_int(name, value, low=1)

    def resolved(self, file_size: int) -> dict[str, int]:
        """Return the limits in force for a file of ``file_size`` bytes.

        Parameters
        ----------
        file_size : int
            Size of the pickle in bytes.

        Returns
        -------
        dict
            ``max_depth``, ``max_objects``, ``max_alloc_per_call`` and
            ``max_alloc_total`` as integers.

        Examples
        --------
        >>> PickleLimits().resolved(1000)['max_objects']
        1000000
        """
        return {
            "max_depth": int(self.max_depth),
            "max_objects": int(
                self.max_objects
                if self.max_objects is not None
                else max(MIN_MAX_OBJECTS, file_size)
            ),
            "max_alloc_per_call": int(
                self.max_alloc_per_call
                if self.max_alloc_per_call is not None
                else file_size + MIN_ALLOC_SLACK
            ),
            "max_alloc_total": int(
                self.max_alloc_total
                if self.max_alloc_total is not None
                else 2 * file_size + 4 * MIN_ALLOC_SLACK
            ),
        }


_DEFAULT_LIMITS = PickleLimits()
_LIMITS: contextvars.ContextVar[PickleLimits | None] = contextvars.ContextVar(
    "sima_fast_pickle_limits", default=None
)


@contextlib.contextmanager
def pickle_limits(**overrides: Any) -> Iterator[PickleLimits]:
    """Change the pickle limits for the code run inside a ``with`` block.

    Every restricted read in the block (``ImagingDataset.load`` of a SIMA
    directory, its ROIs and signals, :func:`legacy_load`, :func:`load_npy`)
    uses the new limits; the previous ones come back on exit. The setting
    is per thread and per asyncio task (a :mod:`contextvars` variable).

    Parameters
    ----------
    **overrides
        Fields of :class:`PickleLimits` (``max_depth``, ``max_objects``,
        ``max_alloc_per_call``, ``max_alloc_total``); None restores a field's
        size-relative default.

    Yields
    ------
    PickleLimits
        The limits in force inside the block.

    Raises
    ------
    TypeError
        For an unknown field name.
    ValueError
        For a limit that is not a positive integer.

    Examples
    --------
    >>> with pickle_limits(max_objects=50_000_000) as limits:
    ...     limits.max_objects
    50000000
    >>> PickleLimits() == current_limits()
    True
    """
    limits = dataclasses.replace(current_limits(), **overrides)
    token = _LIMITS.set(limits)
    try:
        yield limits
    finally:
        _LIMITS.reset(token)


def current_limits() -> PickleLimits:
    """Return the :class:`PickleLimits` in force (set by :func:`pickle_limits`).

    Returns
    -------
    PickleLimits
    """
    return _LIMITS.get() or _DEFAULT_LIMITS


# ---------------------------------------------------------------------------
# Inert stand-ins for SIMA objects
# ---------------------------------------------------------------------------


class LegacyClass:
    """Inert stand-in for a class named in a SIMA pickle (never imported).

    Markers compare equal when they name the same class; calling one (as
    unpickling a SIMA object would) raises :class:`UnsafePickleError`.

    Parameters
    ----------
    module : str
        The module the pickle names, e.g. ``'sima.sequence'``.
    name : str
        The class name, e.g. ``'_Sequence_HDF5'``.
    source : str, optional
        The file the marker was read from, for error messages.
    """

    def __init__(self, module: str, name: str, source: str | None = None) -> None:
        self.module = module
        self.name = name
        self.source = source

    def __repr__(self) -> str:
        return f"LegacyClass({self.module}.{self.name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LegacyClass) and (self.module, self.name) == (
            other.module,
            other.name,
        )

    def __hash__(self) -> int:
        return hash((self.module, self.name))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError(
            f"{self.source or '<pickle>'}: the pickle tries to construct "
            f"{self.module}.{self.name}; only SIMA's dictionary form of sequences is supported",
            path=self.source,
        )

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(
            f"{self.source or '<pickle>'}: the pickle tries to set the state of the class "
            f"marker {self.module}.{self.name}",
            path=self.source,
        )


class LegacySparse:
    """The saved state of a scipy.sparse matrix, recorded without scipy's code.

    Attributes
    ----------
    format : str
        ``'lil'``, ``'csr'``, ``'csc'`` or ``'coo'``.
    source : str or None
        The file the record was read from.
    max_alloc_bytes : int or None
        The per-call allocation limit of that read, applied by
        :func:`sparse_from_legacy`.
    state : dict
        The matrix's pickled ``__dict__`` (set when the pickle builds it).
    """

    format = "unknown"
    source: str | None = None
    max_alloc_bytes: int | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickleError(
                f"{self.source or '<pickle>'}: unexpected state for a pickled sparse matrix "
                f"({type(state).__name__}, expected a dict)",
                path=self.source,
            )
        self.state = state


def _sparse_class(fmt: str, source: str | None = None, max_alloc: int | None = None) -> type:
    return type(
        f"LegacySparse_{fmt}",
        (LegacySparse,),
        {"format": fmt, "source": source, "max_alloc_bytes": max_alloc},
    )


_SPARSE_FORMATS = ("lil", "csr", "csc", "coo")


def sparse_from_legacy(obj: Any):
    """Convert a :class:`LegacySparse` record (or a real sparse matrix) to CSR.

    Parameters
    ----------
    obj : LegacySparse or scipy.sparse matrix
        A record produced by :func:`legacy_load`.

    Returns
    -------
    scipy.sparse.csr_matrix

    Raises
    ------
    TypeError
        If ``obj`` is neither.
    UnsafePickleError
        If the record is malformed or its conversion would allocate more
        than the read's per-call limit (the message names the file).
    """
    import scipy.sparse

    if scipy.sparse.issparse(obj):
        return scipy.sparse.csr_matrix(obj)
    if not isinstance(obj, LegacySparse):
        raise TypeError(f"expected a pickled sparse matrix, got {type(obj).__name__}")
    where = obj.source or "<pickle>"
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        raise UnsafePickleError(
            f"{where}: pickled {obj.format} sparse matrix has no state", path=obj.source
        )
    try:
        return _sparse_from_state(obj, state)
    except UnsafePickleError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:
        what = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UnsafePickleError(
            f"{where}: malformed pickled {obj.format} sparse matrix ({what})", path=obj.source
        ) from exc


def _sparse_from_state(obj: LegacySparse, state: dict):
    import scipy.sparse

    where = obj.source or "<pickle>"
    shape = state.get("_shape", state.get("shape"))
    if shape is None:
        raise UnsafePickleError(f"{where}: pickled sparse matrix has no shape", path=obj.source)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 0:
        raise UnsafePickleError(
            f"{where}: pickled sparse matrix has shape {shape}, expected 2 sizes >= 0",
            path=obj.source,
        )
    cap = obj.max_alloc_bytes
    # CSR needs an index pointer of shape[0] + 1 entries whatever the data.
    if cap is not None and 8 * (shape[0] + 1) > cap:
        raise UnsafePickleError(
            f"{where}: pickled sparse matrix of shape {shape} would need "
            f"{8 * (shape[0] + 1)} bytes of row pointers; the limit per call is {cap} bytes "
            "(max_alloc_per_call)",
            path=obj.source,
            limit="max_alloc_per_call",
        )
    if obj.format == "lil":
        rows, data = state["rows"], state["data"]
        if len(rows) != shape[0] or len(data) != shape[0]:
            raise UnsafePickleError(
                f"{where}: pickled lil matrix has {len(rows)} rows of indices and "
                f"{len(data)} of values for shape {shape}",
                path=obj.source,
            )
        dtype = np.dtype(state.get("dtype", np.asarray(data[0]).dtype if len(data) else float))
        if dtype.hasobject:
            raise UnsafePickleError(f"{where}: sparse matrix of objects refused", path=obj.source)
        r_idx, c_idx, vals = [], [], []
        for r, (cols, values) in enumerate(zip(rows, data)):
            if len(cols) != len(values):
                raise UnsafePickleError(
                    f"{where}: pickled lil matrix row {r} has {len(cols)} indices and "
                    f"{len(values)} values",
                    path=obj.source,
                )
            r_idx.extend([r] * len(cols))
            c_idx.extend(cols)
            vals.extend(values)
        return scipy.sparse.csr_matrix(
            (np.asarray(vals, dtype=dtype), (np.asarray(r_idx, int), np.asarray(c_idx, int))),
            shape=shape,
        )
    if obj.format in ("csr", "csc"):
        if obj.format == "csc" and cap is not None and 8 * (shape[1] + 1) > cap:
            raise UnsafePickleError(
                f"{where}: pickled csc matrix of shape {shape} exceeds the per-call "
                f"allocation limit of {cap} bytes (max_alloc_per_call)",
                path=obj.source,
                limit="max_alloc_per_call",
            )
        cls = scipy.sparse.csr_matrix if obj.format == "csr" else scipy.sparse.csc_matrix
        m = cls((state["data"], state["indices"], state["indptr"]), shape=shape)
        return scipy.sparse.csr_matrix(m)
    if obj.format == "coo":
        row = state.get("row", state.get("coords", (None, None))[0])
        col = state.get("col", state.get("coords", (None, None))[1])
        return scipy.sparse.csr_matrix((state["data"], (row, col)), shape=shape)
    raise UnsafePickleError(
        f"{where}: unsupported pickled sparse format {obj.format!r}", path=obj.source
    )


# ---------------------------------------------------------------------------
# numpy internals, resolved once
# ---------------------------------------------------------------------------


@functools.cache
def _np_attr(*candidates: str) -> Any:
    """First of ``module:attr`` names that numpy provides (numpy 1.x vs 2.x)."""
    import importlib
    import warnings

    for cand in candidates:
        mod, _, attr = cand.partition(":")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy provides none of {candidates}")


def _np_reconstruct() -> Any:
    return _np_attr("numpy._core.multiarray:_reconstruct", "numpy.core.multiarray:_reconstruct")


def _np_frombuffer() -> Any:
    return _np_attr("numpy._core.numeric:_frombuffer", "numpy.core.numeric:_frombuffer")


def _np_scalar() -> Any:
    return _np_attr("numpy._core.multiarray:scalar", "numpy.core.multiarray:scalar")


# ---------------------------------------------------------------------------
# The opcode scan: declared lengths inside the file, object count capped
# ---------------------------------------------------------------------------

# Opcodes that only move references or set up state (everything else creates
# at most one object, or calls a guarded constructor).
_NON_CREATING = frozenset(
    ord(c)
    for c in (
        "(",  # MARK
        "0",  # POP
        ".",  # STOP
        "1",  # POP_MARK
        "2",  # DUP
        "s",  # SETITEM
        "u",  # SETITEMS
        "a",  # APPEND
        "e",  # APPENDS
        "p",  # PUT
        "q",  # BINPUT
        "r",  # LONG_BINPUT
        "g",  # GET
        "h",  # BINGET
        "j",  # LONG_BINGET
        "b",  # BUILD
        "\x80",  # PROTO
        "\x90",  # ADDITEMS
        "\x94",  # MEMOIZE
        "\x95",  # FRAME
    )
)

_SCAN_TABLES: tuple | None = None


def _scan_tables() -> tuple:
    """Return per-opcode tables ``(step, creates, special)`` for :func:`_scan`.

    ``step[code]`` is ``1 + width`` for an opcode with a fixed-width argument
    (or none), 0 for the others, whose ``special[code]`` is ``('counted',
    width, signed)``, ``('lines', n)``, ``('frame',)``, ``('stop',)`` or None
    (not an opcode); ``creates[code]`` is 1 if the opcode creates an object.

    Returns
    -------
    tuple
        ``(step, creates, special)``, three tuples of 256 entries.
    """
    global _SCAN_TABLES
    if _SCAN_TABLES is None:
        import pickletools

        step = [0] * 256
        creates = [0] * 256
        special: list = [None] * 256
        counted = {
            pickletools.TAKEN_FROM_ARGUMENT1: (1, False),  # uint1: SHORT_BIN* lengths 0-255
            pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
            pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
            pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
        }
        for op in pickletools.opcodes:
            code = ord(op.code)
            creates[code] = 0 if code in _NON_CREATING else 1
            arg = op.arg
            if op.name == "STOP":
                special[code] = ("stop",)
            elif op.name == "FRAME":
                special[code] = ("frame",)
            elif arg is None:
                step[code] = 1
            elif arg.n == pickletools.UP_TO_NEWLINE:
                special[code] = ("lines", 2 if arg.name == "stringnl_noescape_pair" else 1)
            elif arg.n in counted:
                special[code] = ("counted", *counted[arg.n])
            else:
                step[code] = 1 + arg.n
        _SCAN_TABLES = (tuple(step), tuple(creates), tuple(special))
    return _SCAN_TABLES


def _scan(buf: Any, start: int, ctx: _LoadContext) -> None:
    """Walk the opcodes of the pickle at ``buf[start:]`` without building anything.

    Checks that every length an opcode declares (data, frames, lines) lies
    inside the file, so the unpickler never allocates for data that is not
    there, and counts the objects the opcodes create against
    ``max_objects``. Pure Python, about 0.2 µs per opcode.
    """
    step, creates, special = _scan_tables()
    end = len(buf)
    i = start
    created = 0
    while True:
        if i >= end:
            ctx.corrupt("truncated: no STOP opcode before the end of the file")
        code = buf[i]
        st = step[code]
        if st:
            i += st
            created += creates[code]
            continue
        spec = special[code]
        if spec is None:
            ctx.corrupt(f"invalid pickle opcode {bytes([code])!r} at byte {i}")
        kind = spec[0]
        if kind == "stop":
            break
        created += creates[code]
        i += 1
        if kind == "counted":
            width, signed = spec[1], spec[2]
            if i + width > end:
                ctx.corrupt(f"truncated at byte {i}")
            n = int.from_bytes(buf[i : i + width], "little", signed=signed)
            i += width
            if n < 0 or n > end - i:
                ctx.corrupt(
                    f"the opcode at byte {i - width - 1} declares {n} bytes of data but only "
                    f"{end - i} remain (truncated or corrupt)"
                )
            i += n
        elif kind == "frame":
            if i + 8 > end:
                ctx.corrupt(f"truncated at byte {i}")
            n = int.from_bytes(buf[i : i + 8], "little")
            i += 8
            if n > end - i:
                ctx.corrupt(
                    f"the frame at byte {i - 9} declares {n} bytes but only {end - i} remain "
                    "(truncated or corrupt)"
                )
        else:  # one or two lines of text
            for _ in range(spec[1]):
                j = buf.find(b"\n", i)
                if j < 0:
                    ctx.corrupt(f"truncated at byte {i} (missing end of line)")
                i = j + 1
    if created > ctx.max_objects:
        ctx.refuse(
            f"the pickle creates {created} objects; the limit is {ctx.max_objects} (max_objects)",
            limit="max_objects",
        )
    ctx.created = created


# ---------------------------------------------------------------------------
# Guarded constructors and the array placeholder
# ---------------------------------------------------------------------------


class _PendingArray:
    """An ndarray under construction: numpy's own ``__setstate__`` never sees the state.

    Every array-producing constructor returns one, so a pickle's BUILD
    reaches :meth:`__setstate__`, which checks the state against the data
    actually present before numpy allocates. :meth:`_LoadContext.settle`
    swaps each for its array.
    """

    __slots__ = ("array", "chain", "ctx")
    __hash__ = None  # type: ignore[assignment]  # like an ndarray

    def __init__(self, ctx: _LoadContext, array: np.ndarray) -> None:
        self.ctx = ctx
        self.array = array
        self.chain = 1

    def __setstate__(self, state: Any) -> None:
        self.ctx.build_array(self, state)

    def __reduce__(self) -> Any:
        raise TypeError("an array under construction cannot be pickled")


class _NdarrayMarker:
    """What ``numpy.ndarray`` resolves to: accepted by reconstruction, never called."""

    def __init__(self, ctx: _LoadContext) -> None:
        self.ctx = ctx

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.ctx.refuse("the pickle calls numpy.ndarray directly (only numpy's reconstruction)")


def _object_base_marker(ctx: _LoadContext) -> type:
    """Make what ``builtins.object`` resolves to: the base of copyreg reconstruction.

    Returns
    -------
    type
        A class whose instantiation (by REDUCE or NEWOBJ) is refused.
    """

    def refuse(cls: type, *args: Any, **kwargs: Any) -> Any:
        ctx.refuse(
            "refusing to instantiate builtins.object (accepted only as the base of "
            "protocol 0/1 reconstruction)"
        )

    return type("object", (), {"__new__": refuse})


def _shape_of(ctx: _LoadContext, shape: Any, what: str) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or len(shape) > 64:
        ctx.refuse(f"{what}: unexpected array shape {type(shape).__name__}")
    out = []
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            ctx.refuse(f"{what}: array shape must hold sizes >= 0, got {s!r}")
        out.append(int(s))
    return tuple(out)


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


class _LoadContext:
    """State of one restricted read: the file, its limits and what was spent."""

    def __init__(self, path: str, file_size: int, limits: PickleLimits, profile: str) -> None:
        self.path = path
        self.profile = profile
        lim = limits.resolved(file_size)
        self.max_depth = lim["max_depth"]
        self.max_objects = lim["max_objects"]
        self.max_call = lim["max_alloc_per_call"]
        self.max_total = lim["max_alloc_total"]
        self.allocated = 0
        self.created = 0
        self.sparse = {fmt: _sparse_class(fmt, path, self.max_call) for fmt in _SPARSE_FORMATS}
        self.ndarray = _NdarrayMarker(self)
        self.object_base = _object_base_marker(self)

    # -- errors and budgets --------------------------------------------------

    def refuse(self, message: str, limit: str | None = None) -> None:
        raise UnsafePickleError(f"{self.path}: {message}", path=self.path, limit=limit)

    def corrupt(self, detail: str) -> None:
        kind = "SIMA pickle" if self.profile == "sima" else "pickle (.npy object array)"
        self.refuse(f"not a readable {kind} ({detail})")

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes > self.max_call:
            self.refuse(
                f"{what} would allocate {nbytes} bytes; the limit per call is {self.max_call} "
                "bytes (max_alloc_per_call)",
                limit="max_alloc_per_call",
            )
        self.allocated += nbytes
        if self.allocated > self.max_total:
            self.refuse(
                f"{what} brings the allocations to {self.allocated} bytes; the limit is "
                f"{self.max_total} bytes (max_alloc_total)",
                limit="max_alloc_total",
            )

    def charge_items(self, n: int, what: str) -> None:
        self.created += n
        if self.created > self.max_objects:
            self.refuse(
                f"{what} takes the pickle over {self.max_objects} objects (max_objects)",
                limit="max_objects",
            )

    # -- guarded constructors ------------------------------------------------

    def container(self, ctor: type, name: str) -> Any:
        def build(*args: Any, **kwargs: Any) -> Any:
            if kwargs or len(args) > 1:
                self.refuse(f"unexpected arguments to {name}()")
            if args:
                src = args[0]
                if isinstance(src, _PendingArray) or not hasattr(src, "__len__"):
                    self.refuse(f"{name}() of a {type(src).__name__} refused")
                self.charge_items(len(src), f"{name}() of {len(src)} items")
            return ctor(*args)

        build.__name__ = f"guarded_{name}"
        return build

    def bytearray_(self, *args: Any) -> bytearray:
        if len(args) > 3:
            self.refuse("unexpected arguments to bytearray()")
        if args:
            src = args[0]
            if isinstance(src, bool):
                self.refuse("bytearray() of a bool refused")
            if isinstance(src, (int, np.integer)):
                self.charge(int(src), f"bytearray({int(src)})")
            elif isinstance(src, str):
                if len(args) < 2 or not isinstance(args[1], str):
                    self.refuse("bytearray() of a str needs an encoding")
                self.charge(4 * len(src), "bytearray() of a str")
            elif isinstance(src, (bytes, bytearray, list, tuple)):
                self.charge(len(src), "bytearray() of a buffer")
            else:
                self.refuse(f"bytearray() of a {type(src).__name__} refused")
        return bytearray(*args)

    def bytes_(self, *args: Any) -> bytes:
        # Protocols 0-2 of Python 3 write b'' as bytes(); checked as bytearray().
        return bytes(self.bytearray_(*args))

    def complex_(self, *args: Any) -> complex:
        if len(args) > 2 or not all(
            isinstance(a, (int, float, str, np.integer, np.floating)) for a in args
        ):
            self.refuse("complex() takes numbers or a string")
        return complex(*args)

    def slice_(self, *args: Any) -> slice:
        if len(args) > 3 or not all(
            a is None or (isinstance(a, (int, np.integer)) and not isinstance(a, bool))
            for a in args
        ):
            self.refuse("slice() takes integers or None")
        return slice(*args)

    def codecs_encode(self, obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8"):
            self.refuse("unexpected codecs.encode call in pickle")
        self.charge(len(obj) * (1 if encoding != "utf-8" else 4), "codecs.encode()")
        return obj.encode(encoding, errors)

    def copyreg_reconstructor(self, cls: Any, base: Any, state: Any) -> Any:
        # Protocol 0/1 object creation: only for classes that passed find_class.
        if base is not self.object_base or not (
            isinstance(cls, type) and issubclass(cls, LegacySparse)
        ):
            self.refuse("copyreg reconstruction of a non-allow-listed type refused")
        return cls.__new__(cls)

    def dtype_(self, *args: Any) -> np.dtype:
        if not 1 <= len(args) <= 3:
            self.refuse("unexpected arguments to numpy.dtype()")
        dt = np.dtype(*args)
        if dt.itemsize > self.max_call:
            self.refuse(
                f"numpy.dtype with items of {dt.itemsize} bytes; the limit per call is "
                f"{self.max_call} bytes (max_alloc_per_call)",
                limit="max_alloc_per_call",
            )
        return dt

    def _dtype_arg(self, typecode: Any, what: str) -> np.dtype:
        if isinstance(typecode, np.dtype):
            return typecode
        if isinstance(typecode, (str, bytes)) and len(typecode) <= 64:
            try:
                return np.dtype(typecode)
            except TypeError:
                pass
        self.refuse(f"{what}: unexpected dtype {typecode!r:.60}")
        raise AssertionError  # unreachable

    def reconstruct(self, subtype: Any, shape: Any, typecode: Any) -> _PendingArray:
        if subtype is not self.ndarray:
            self.refuse("array reconstruction of a non-ndarray type refused")
        what = "numpy array reconstruction"
        shape = _shape_of(self, shape, what)
        dt = self._dtype_arg(typecode, what)
        self.charge(_count(shape) * dt.itemsize, f"{what} of shape {shape}")
        arr = _np_reconstruct()(np.ndarray, shape, typecode)
        return _PendingArray(self, arr)

    def frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any) -> _PendingArray:
        what = "numpy buffer reconstruction"
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            self.refuse(f"{what} of an object array refused")
        if not isinstance(buf, (bytes, bytearray)):
            self.refuse(f"{what} from a {type(buf).__name__} refused")
        shape = _shape_of(self, shape, what)
        if order not in ("C", "F", "A", "K"):
            self.refuse(f"{what}: unexpected order {order!r:.20}")
        need = _count(shape) * dtype.itemsize
        if need != len(buf):
            self.refuse(f"{what}: shape {shape} needs {need} bytes, the pickle holds {len(buf)}")
        return _PendingArray(self, _np_frombuffer()(buf, dtype, shape, order))

    def scalar(self, dtype: Any, *args: Any) -> Any:
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            self.refuse("object scalar reconstruction refused")
        if len(args) != 1 or not isinstance(args[0], (bytes, str)):
            self.refuse("numpy scalar reconstruction without its bytes refused")
        if len(args[0]) < dtype.itemsize:
            self.refuse(
                f"numpy scalar of {dtype.itemsize} bytes from {len(args[0])} bytes of data"
            )
        self.charge(dtype.itemsize, "numpy scalar reconstruction")
        return _np_scalar()(dtype, *args)

    def build_array(self, pending: _PendingArray, state: Any) -> None:
        """Check an array's pickled state against the data it carries, then apply it."""
        what = "numpy array state"
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            self.refuse(f"{what}: unexpected {type(state).__name__}")
        shape, dtype, _fortran, raw = state[-4:]
        shape = _shape_of(self, shape, what)
        if not isinstance(dtype, np.dtype):
            self.refuse(f"{what}: dtype is a {type(dtype).__name__}")
        n = _count(shape)
        if dtype.hasobject:
            if dtype != np.dtype(object):
                self.refuse(f"{what}: arrays of {dtype} refused")
            if not isinstance(raw, list) or len(raw) != n:
                got = len(raw) if isinstance(raw, list) else type(raw).__name__
                self.refuse(f"{what}: shape {shape} needs {n} items, the pickle holds {got}")
            chain = 1
            for item in raw:
                if isinstance(item, _PendingArray) and item.chain >= chain:
                    chain = item.chain + 1
            if chain > self.max_depth:
                self.refuse(
                    f"object arrays nested more than {self.max_depth} deep (max_depth)",
                    limit="max_depth",
                )
            pending.chain = chain
        else:
            if not isinstance(raw, (bytes, bytearray, str)):
                self.refuse(f"{what}: data is a {type(raw).__name__}")
            need = n * dtype.itemsize
            if need != len(raw):
                self.refuse(
                    f"{what}: shape {shape} needs {need} bytes, the pickle holds {len(raw)}"
                )
            self.charge(need, f"numpy array of shape {shape}")
        arr = _np_reconstruct()(np.ndarray, (0,), b"b")
        arr.__setstate__(state)
        pending.array = arr

    # -- the pass over the result --------------------------------------------

    def settle(self, root: Any) -> Any:
        """Measure ``root`` as a tree and swap array placeholders for their arrays.

        One pass over the distinct containers (memoised by identity) with an
        explicit stack: time linear in what the file holds, no Python
        recursion. Refuses a reference cycle, nesting deeper than
        ``max_depth`` and a tree of more than ``max_objects`` objects.

        Returns
        -------
        object
            ``root`` with every placeholder replaced by its array (tuples
            holding one rebuilt; lists, dicts and object arrays updated in
            place).
        """
        if type(root) is _PendingArray and not root.array.dtype.hasobject:
            return root.array
        if not _is_container(root):
            return root
        max_objects = self.max_objects
        max_depth = self.max_depth
        leaf_types = _LEAF_TYPES
        flat_types = _FLAT_TYPES
        memo: dict[int, tuple[Any, int, int, Any]] = {}
        on_path = {id(root)}
        stack = [_Frame(root, None)]
        while stack:
            frame = stack[-1]
            size = frame.size
            for index, child in frame.it:
                t = type(child)
                if t in leaf_types:
                    size += 1
                    continue
                if t is _PendingArray:
                    if not child.array.dtype.hasobject:  # a numeric array: swap it in
                        size += 1
                        frame.changes.append((index, child.array))
                        continue
                elif t is np.ndarray:
                    if not child.dtype.hasobject:
                        size += 1
                        continue
                elif t not in flat_types and not isinstance(
                    child, (dict, list, tuple, set, frozenset, LegacySparse)
                ):
                    size += 1  # any other scalar (numpy scalars, dtypes...)
                    continue
                elif not child:  # an empty list, tuple, set or dict
                    size += 1
                    if frame.depth < 1:
                        frame.depth = 1
                    continue
                if (
                    t in flat_types
                    and len(child) <= 16
                    and leaf_types.issuperset(map(type, child))
                ):
                    size += 1 + len(child)  # a short flat container: cheaper than memoising
                    if frame.depth < 1:
                        frame.depth = 1
                    continue
                cid = id(child)
                hit = memo.get(cid)
                if hit is None and t in flat_types and leaf_types.issuperset(map(type, child)):
                    hit = memo[cid] = (child, 1 + len(child), 1, child)
                if hit is not None:
                    size += hit[1]
                    if size > max_objects:
                        self._too_many(max_objects)
                    if hit[2] > frame.depth:
                        frame.depth = hit[2]
                    if hit[0] is not child:
                        frame.changes.append((index, hit[0]))
                    continue
                if cid in on_path:
                    self.refuse("the pickle holds a reference cycle")
                if len(stack) >= max_depth:
                    self.refuse(
                        f"containers nested more than {max_depth} deep (max_depth)",
                        limit="max_depth",
                    )
                frame.size = size
                stack.append(_Frame(child, index))
                on_path.add(cid)
                break
            else:  # the frame's children are exhausted: close it
                if size > max_objects:
                    self._too_many(max_objects)
                stack.pop()
                on_path.discard(id(frame.orig))
                value = _apply_replacements(frame.obj, frame.changes)
                res = (value, size, frame.depth + 1, frame.orig)
                memo[id(frame.orig)] = res
                if not stack:
                    return value
                parent = stack[-1]
                parent.size += size
                if parent.size > max_objects:
                    self._too_many(max_objects)
                if res[2] > parent.depth:
                    parent.depth = res[2]
                if value is not frame.orig:
                    parent.changes.append((frame.index, value))
        raise AssertionError("unreachable")  # pragma: no cover

    def _too_many(self, max_objects: int) -> None:
        self.refuse(
            f"the pickle's data, counted as a tree (a shared container once per reference), "
            f"holds more than {max_objects} objects (max_objects)",
            limit="max_objects",
        )


class _Frame:
    """One open container of :meth:`_LoadContext.settle`."""

    __slots__ = ("changes", "depth", "index", "it", "obj", "orig", "size")

    def __init__(self, orig: Any, index: Any) -> None:
        obj = orig.array if type(orig) is _PendingArray else orig
        if type(obj) is np.ndarray:  # an object array; C-order items, as ``.flat`` indexes
            it: Iterator = enumerate(obj.reshape(-1).tolist())
        elif isinstance(obj, dict):
            it = _dict_children(obj)
        elif isinstance(obj, LegacySparse):
            it = iter(((None, getattr(obj, "state", None)),))
        else:
            it = enumerate(obj)
        self.orig = orig
        self.obj = obj
        self.it = it
        self.size = 1
        self.depth = 0
        self.changes: list = []
        self.index = index


def _is_container(x: Any) -> bool:
    t = type(x)
    if t in _LEAF_TYPES:
        return False
    if t is _PendingArray:
        return x.array.dtype.hasobject
    if t is np.ndarray:
        return x.dtype.hasobject
    return isinstance(x, (list, tuple, dict, set, frozenset, LegacySparse))


_END = object()

_LEAF_TYPES = frozenset(
    {
        str,
        bytes,
        bytearray,
        int,
        float,
        bool,
        complex,
        type(None),
        slice,
        np.dtype,
        LegacyClass,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        datetime.timezone,
    }
)


_LEAF_TYPES = _LEAF_TYPES | frozenset(
    t for t in set(np.sctypeDict.values()) if issubclass(t, np.generic) and t is not np.object_
)
_FLAT_TYPES = frozenset({list, tuple, set, frozenset})


def _dict_children(d: dict) -> Iterator[tuple[Any, Any]]:
    for k, v in d.items():
        yield ("key", k), k
        yield ("value", k), v


def _apply_replacements(obj: Any, changes: list | None) -> Any:
    if not changes:
        return obj
    if isinstance(obj, list):
        for i, v in changes:
            obj[i] = v
        return obj
    if isinstance(obj, dict):
        for (_, k), v in changes:
            obj[k] = v
        return obj
    if isinstance(obj, tuple):
        items = list(obj)
        for i, v in changes:
            items[i] = v
        return tuple(items)
    if isinstance(obj, np.ndarray):
        flat = obj.flat
        for i, v in changes:
            flat[i] = v
        return obj
    if isinstance(obj, LegacySparse):
        for _, v in changes:
            obj.state = v
        return obj
    return obj  # sets hold only hashable items, never arrays


# ---------------------------------------------------------------------------
# The unpickler
# ---------------------------------------------------------------------------

# SIMA's sequence classes, across the 1.x releases.
_SIMA_SEQUENCE_CLASSES = frozenset(
    {
        "_Sequence_HDF5",
        "_Sequence_ndarray",
        "_Sequence_TIFF_Interleaved",
        "_Sequence_TIFFs",
        "_Sequence_memmap",
        "_IndexedSequence",
        "_MaskedSequence",
        "_MotionCorrectedSequence",
        "_Joined_Sequence",
        "_Sequence_constant",
        "_AddWrapperSequence",
        "_SubtractWrapperSequence",
        "_MultiplyWrapperSequence",
        "_DivideWrapperSequence",
        "_TrueDivideWrapperSequence",
        "_FloorDivideWrapperSequence",
    }
)

# SIMA 0.x's channel classes (``dataset.pkl`` of a 0.x directory): the ones
# SIMA 1.3.2's version-0 converter understands.
_SIMA_V0_CLASSES = frozenset({"MultiPageTIFF", "HDF5"})

_CONTAINERS = {
    "set": set,
    "frozenset": frozenset,
    "list": list,
    "dict": dict,
    "tuple": tuple,
}

_DATETIME = {
    "datetime": datetime.datetime,
    "date": datetime.date,
    "time": datetime.time,
    "timedelta": datetime.timedelta,
    "timezone": datetime.timezone,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals, each to a guarded constructor of ``ctx``."""

    def __init__(self, file: io.BufferedIOBase, ctx: _LoadContext) -> None:
        super().__init__(file, encoding="latin1")
        self._ctx = ctx
        self._guards: dict[tuple[str, str], Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key not in self._guards:
            self._guards[key] = self._resolve(module, name)
        return self._guards[key]

    def _resolve(self, module: str, name: str) -> Any:
        ctx = self._ctx
        if module in ("builtins", "__builtin__"):
            if name in _CONTAINERS:
                return ctx.container(_CONTAINERS[name], name)
            if name == "bytearray":
                return ctx.bytearray_
            if name == "bytes":
                return ctx.bytes_
            if name == "complex":
                return ctx.complex_
            if name == "slice":
                return ctx.slice_
        if module == "collections" and name == "OrderedDict":
            return ctx.container(collections.OrderedDict, "OrderedDict")
        if module == "_codecs" and name == "encode":
            return ctx.codecs_encode
        if module == "numpy" and name == "ndarray":
            return ctx.ndarray
        if module == "numpy" and name == "dtype":
            return ctx.dtype_
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            if name == "_reconstruct":
                return ctx.reconstruct
            if name == "scalar":
                return ctx.scalar
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return ctx.frombuffer
        if ctx.profile == "sima":
            if module in ("copy_reg", "copyreg") and name == "_reconstructor":
                return ctx.copyreg_reconstructor
            if module in ("builtins", "__builtin__") and name == "object":
                return ctx.object_base
            if module.startswith("scipy.sparse"):
                fmt = name.split("_")[0]
                if name.endswith("_matrix") and fmt in ctx.sparse:
                    return ctx.sparse[fmt]
            if module == "sima.sequence" and name in _SIMA_SEQUENCE_CLASSES:
                return LegacyClass(module, name, ctx.path)
            if module == "sima.iterables" and name in _SIMA_V0_CLASSES:
                return LegacyClass(module, name, ctx.path)
            if module == "sima" or module.startswith("sima."):
                ctx.refuse(_unknown_sima_class(module, name))
            allowed = "plain containers, numpy arrays, scipy sparse matrices and SIMA sequences"
        else:
            if module == "datetime" and name in _DATETIME:
                return _DATETIME[name]
            allowed = "plain containers, numpy arrays and scalars, datetimes"
        what = (
            "this SIMA file (a pickle)"
            if ctx.profile == "sima"
            else "this .npy file's object array (a pickle)"
        )
        ctx.refuse(
            f"refusing to load '{module}.{name}': it is not in the allow-list of the "
            f"restricted reader ({allowed}). {what} names code that sima_fast never runs; "
            "if the file is yours and trusted, convert it where that code is installed "
            "(e.g. re-save the dataset with SIMA 1.3.2) or rebuild the data with "
            "sima_fast.Sequence.create"
        )


def _unknown_sima_class(module: str, name: str) -> str:
    """Say what the file is and what to do, for a SIMA class outside the allow-list."""
    if module == "sima.iterables":
        return (
            f"this is a SIMA 0.x dataset whose sequence class '{module}.{name}' sima_fast does "
            f"not map (it reads SIMA 0.x's {', '.join(sorted(_SIMA_V0_CLASSES))} channels, as "
            "SIMA 1.3.2's converter does); open the directory with SIMA and re-save it in the "
            "1.x format, or create its sequences with sima_fast.Sequence.create"
        )
    return (
        f"this SIMA pickle refers to '{module}.{name}', a SIMA class that sima_fast does not "
        "read (it maps SIMA 1.x's sequence classes and SIMA 0.x's sima.iterables channels, "
        "and never runs SIMA's code); re-save the data with SIMA 1.3.2, or create the "
        "sequences with sima_fast.Sequence.create and a new sima_fast.ImagingDataset"
    )


def _load_pickle(fh: Any, path: str, start: int, profile: str, limits: PickleLimits | None) -> Any:
    """Scan, unpickle and settle the pickle in ``fh`` from byte ``start``."""
    size = os.fstat(fh.fileno()).st_size
    ctx = _LoadContext(path, max(size - start, 0), limits or current_limits(), profile)
    if size <= start:
        ctx.corrupt("the file is empty where a pickle should start")
    with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        _scan(buf, start, ctx)
    fh.seek(start)
    unpickler = _RestrictedUnpickler(fh, ctx)
    try:
        obj = unpickler.load()
    except UnsafePickleError as exc:
        if exc.path is None:
            raise UnsafePickleError(f"{path}: {exc}", path=path, limit=exc.limit) from exc
        raise
    except MemoryError as exc:
        raise MemoryError(f"{path}: out of memory while reading the pickle") from exc
    except Exception as exc:  # corrupt data, a refused call's TypeError
        try:
            ctx.corrupt(f"{type(exc).__name__}: {exc}")
        except UnsafePickleError as err:
            raise err from exc
    finally:
        del unpickler
    return ctx.settle(obj)


def legacy_load(path: str | os.PathLike, *, limits: PickleLimits | None = None) -> Any:
    """Read a SIMA 1.x pickle through the allow-list unpickler, within limits.

    Parameters
    ----------
    path : str or path-like
        A ``.pkl`` file written by SIMA (Python 2 or 3 pickle protocols).
    limits : PickleLimits, optional
        What the pickle may build. Default: the limits in force
        (:func:`current_limits`, changed with :func:`pickle_limits`).

    Returns
    -------
    object
        Plain Python containers, numpy arrays and scalars, with SIMA classes
        replaced by :class:`LegacyClass` markers and sparse matrices by
        :class:`LegacySparse` records. No container is nested deeper than
        ``max_depth``, the result counted as a tree holds at most
        ``max_objects`` objects and it has no reference cycle, so it may be
        walked recursively.

    Raises
    ------
    UnsafePickleError
        If the file names any global outside the allow-list, exceeds a
        limit (``err.limit`` says which), is truncated or corrupt. The
        message starts with the file's path.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        return _load_pickle(fh, path, 0, "sima", limits)


def load_npy(
    path: str | os.PathLike,
    *,
    mmap_mode: str | None = None,
    limits: PickleLimits | None = None,
) -> np.ndarray:
    """Read a ``.npy`` file, including arrays of Python objects, without running its code.

    Numeric arrays are read by :func:`numpy.load` with ``allow_pickle=False``
    after the header's size is checked against the file. Arrays of objects
    (suite2p's ``stat.npy`` and ``ops.npy``: dicts of arrays, numbers,
    strings and lists) are pickles; they go through the same restricted,
    bounded unpickler as SIMA files, with an allow-list of plain containers,
    numpy arrays, scalars and dtypes, and :mod:`datetime` values.

    Parameters
    ----------
    path : str or path-like
        The ``.npy`` file.
    mmap_mode : {None, 'r', 'r+', 'c'}, optional
        Memory-map a numeric array instead of reading it (see
        :func:`numpy.load`). Arrays of objects are always read into memory.
    limits : PickleLimits, optional
        What an object array's pickle may build. Default: the limits in force
        (:func:`current_limits`).

    Returns
    -------
    numpy.ndarray
        Of the header's dtype and shape. For an object array the elements
        are plain containers, arrays and scalars (``ops.npy`` holds a 0-d
        array: use ``.item()`` for its dict).

    Raises
    ------
    ValueError
        If the file is not a ``.npy`` file or is shorter than its header
        declares (the message names the file).
    UnsafePickleError
        If an object array's pickle names anything outside the allow-list,
        exceeds a limit, is corrupt or does not match the header.
    FileNotFoundError
        If ``path`` does not exist.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     stat = np.array([{'ypix': np.arange(3), 'npix': 3}], dtype=object)
    ...     np.save(os.path.join(tmp, 'stat.npy'), stat)
    ...     load_npy(os.path.join(tmp, 'stat.npy'))[0]['npix']
    3
    """
    from numpy.lib import format as npy_format

    path = os.fspath(path)
    if mmap_mode not in (None, "r", "r+", "c", "readonly", "copyonwrite", "readwrite"):
        raise ValueError(f"mmap_mode must be None, 'r', 'r+' or 'c', got {mmap_mode!r}")
    with open(path, "rb") as fh:
        try:
            version = npy_format.read_magic(fh)
            if version == (1, 0):
                shape, _fortran, dtype = npy_format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _fortran, dtype = npy_format.read_array_header_2_0(fh)
            else:
                shape = dtype = None
        except (ValueError, EOFError, SyntaxError) as exc:
            raise ValueError(f"{path}: not a readable .npy file ({exc})") from exc
        if dtype is None:  # version 3.0: numeric only (numpy writes objects as 1.0)
            try:
                return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
            except ValueError as exc:
                raise ValueError(f"{path}: unsupported .npy file ({exc})") from exc
        offset = fh.tell()
        size = os.fstat(fh.fileno()).st_size
        if not dtype.hasobject:
            need = _count(tuple(shape)) * dtype.itemsize
            if need > size - offset:
                raise ValueError(
                    f"{path}: the header declares {shape} of {dtype} ({need} bytes) but the "
                    f"file holds {size - offset} bytes of data (truncated)"
                )
            try:
                return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
            except (ValueError, EOFError) as exc:
                raise ValueError(f"{path}: unreadable .npy data ({exc})") from exc
        array = _load_pickle(fh, path, offset, "npy", limits)
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != tuple(shape):
        got = (
            f"{array.dtype} array of shape {array.shape}"
            if isinstance(array, np.ndarray)
            else type(array).__name__
        )
        raise UnsafePickleError(
            f"{path}: the pickled data is a {got}, the header declares {dtype} of shape "
            f"{tuple(shape)}",
            path=path,
        )
    return array

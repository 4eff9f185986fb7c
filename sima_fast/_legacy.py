"""Restricted reading of the pickles written by SIMA 1.x.

SIMA stored its dataset directories as pickles. Unpickling runs arbitrary code
named by the file, so sima_fast never hands a SIMA file to :mod:`pickle`
unguarded: :func:`legacy_load` resolves only the globals in an explicit
allow-list (plain containers, numpy array and scalar reconstruction, scipy
sparse matrices and SIMA's sequence classes) and refuses everything else with
:class:`UnsafePickleError`. SIMA's own classes are never imported or
instantiated: they become inert :class:`LegacyClass` markers that
:mod:`sima_fast.storage` translates into sima_fast objects, and sparse
matrices become :class:`LegacySparse` records converted with
:func:`sparse_from_legacy`.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from typing import Any

import numpy as np

__all__ = [
    "LegacyClass",
    "LegacySparse",
    "UnsafePickleError",
    "legacy_load",
    "sparse_from_legacy",
]


class UnsafePickleError(pickle.UnpicklingError):
    """A legacy pickle referenced something outside the allow-list."""


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
    """

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

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
            f"the pickle tries to construct {self.module}.{self.name}; only SIMA's "
            "dictionary form of sequences is supported"
        )


class LegacySparse:
    """The saved state of a scipy.sparse matrix, recorded without scipy's code."""

    format = "unknown"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickleError("unexpected state for a pickled sparse matrix")
        self.state = state


def _sparse_class(fmt: str) -> type:
    return type(f"LegacySparse_{fmt}", (LegacySparse,), {"format": fmt})


_SPARSE_CLASSES = {fmt: _sparse_class(fmt) for fmt in ("lil", "csr", "csc", "coo")}


def sparse_from_legacy(obj: Any):
    """Convert a :class:`LegacySparse` record (or a real sparse matrix) to CSR.

    Parameters
    ----------
    obj : LegacySparse or scipy.sparse matrix
        A record produced by :func:`legacy_load`.

    Returns
    -------
    scipy.sparse.csr_matrix
    """
    import scipy.sparse

    if scipy.sparse.issparse(obj):
        return scipy.sparse.csr_matrix(obj)
    if not isinstance(obj, LegacySparse):
        raise TypeError(f"expected a pickled sparse matrix, got {type(obj).__name__}")
    state = obj.state
    shape = state.get("_shape", state.get("shape"))
    if shape is None:
        raise UnsafePickleError("pickled sparse matrix has no shape")
    shape = tuple(int(s) for s in shape)
    if obj.format == "lil":
        rows, data = state["rows"], state["data"]
        dtype = np.dtype(state.get("dtype", np.asarray(data[0]).dtype if len(data) else float))
        r_idx, c_idx, vals = [], [], []
        for r, (cols, values) in enumerate(zip(rows, data)):
            r_idx.extend([r] * len(cols))
            c_idx.extend(cols)
            vals.extend(values)
        return scipy.sparse.csr_matrix(
            (np.asarray(vals, dtype=dtype), (np.asarray(r_idx, int), np.asarray(c_idx, int))),
            shape=shape,
        )
    if obj.format in ("csr", "csc"):
        cls = scipy.sparse.csr_matrix if obj.format == "csr" else scipy.sparse.csc_matrix
        m = cls((state["data"], state["indices"], state["indptr"]), shape=shape)
        return scipy.sparse.csr_matrix(m)
    if obj.format == "coo":
        row = state.get("row", state.get("coords", (None, None))[0])
        col = state.get("col", state.get("coords", (None, None))[1])
        return scipy.sparse.csr_matrix((state["data"], (row, col)), shape=shape)
    raise UnsafePickleError(f"unsupported pickled sparse format {obj.format!r}")


def _np_attr(*candidates: str) -> Any:
    """First of ``module:attr`` names that numpy provides (numpy 1.x vs 2.x)."""
    import importlib

    for cand in candidates:
        mod, _, attr = cand.partition(":")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy provides none of {candidates}")


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError("array reconstruction of a non-ndarray type refused")
    return _np_attr("numpy._core.multiarray:_reconstruct", "numpy.core.multiarray:_reconstruct")(
        subtype, shape, dtype
    )


def _safe_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("buffer reconstruction of an object array refused")
    return _np_attr("numpy._core.numeric:_frombuffer", "numpy.core.numeric:_frombuffer")(
        buf, dtype, shape, order
    )


def _safe_scalar(dtype: Any, *args: Any) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("object scalar reconstruction refused")
    return _np_attr("numpy._core.multiarray:scalar", "numpy.core.multiarray:scalar")(dtype, *args)


def _safe_codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8"):
        raise UnsafePickleError("unexpected codecs.encode call in pickle")
    return obj.encode(encoding, errors)


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # Protocol 0/1 object creation: only for classes that passed find_class.
    if base is not object or not (isinstance(cls, type) and issubclass(cls, LegacySparse)):
        raise UnsafePickleError("copyreg reconstruction of a non-allow-listed type refused")
    return cls.__new__(cls)


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
    }
)

_BUILTINS = {
    "slice": slice,
    "set": set,
    "frozenset": frozenset,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "complex": complex,
    "bytearray": bytearray,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return _BUILTINS[name]
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _safe_reconstructor
        if module == "_codecs" and name == "encode":
            return _safe_codecs_encode
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            if name == "_reconstruct":
                return _safe_reconstruct
            if name == "scalar":
                return _safe_scalar
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
            return _safe_frombuffer
        if module.startswith("scipy.sparse"):
            fmt = name.split("_")[0]
            if name.endswith("_matrix") and fmt in _SPARSE_CLASSES:
                return _SPARSE_CLASSES[fmt]
        if module == "sima.sequence" and name in _SIMA_SEQUENCE_CLASSES:
            return LegacyClass(module, name)
        raise UnsafePickleError(
            f"{self._source}: refusing to load '{module}.{name}': it is not in the allow-list "
            "of the SIMA 1.x reader (plain containers, numpy arrays, scipy sparse matrices and "
            "SIMA sequences)"
        )


def legacy_load(path: str | os.PathLike) -> Any:
    """Read a SIMA 1.x pickle through the allow-list unpickler.

    Parameters
    ----------
    path : str or path-like
        A ``.pkl`` file written by SIMA (Python 2 or 3 pickle protocols).

    Returns
    -------
    object
        Plain Python containers, numpy arrays and scalars, with SIMA classes
        replaced by :class:`LegacyClass` markers and sparse matrices by
        :class:`LegacySparse` records.

    Raises
    ------
    UnsafePickleError
        If the file names any global outside the allow-list, or is corrupt.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), path).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or corrupt data
        raise UnsafePickleError(f"{path}: not a readable SIMA pickle ({exc})") from exc

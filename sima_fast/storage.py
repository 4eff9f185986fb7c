"""The dataset directory format, atomic writes and the SIMA 1.x reader.

A sima_fast dataset directory (``<name>.sima``) holds:

``metadata.json``
    Human-readable, versioned: format name and version, channel names, frame
    shape, frames per sequence, and a description of every sequence (format,
    arguments, data paths both relative to the directory and absolute).
``arrays_<id>.h5``
    Arrays that sequence descriptions refer to (masks, displacements).
``sequence_<id>.h5``
    Frames of sequences that lived in memory (``'ndarray'``) when saved.
``rois.h5``
    ROI sets, one HDF5 group per label.
``signals_<channel>.h5``
    Extracted signals (and inferred spikes), one group per label.
``projections.h5``
    Cached time projections, tagged with the id of the sequences they
    were computed from.
``.sima_fast.lock``, ``.sima_fast.lock.holder``
    The directory's lock and, while it is held, who holds it
    (:mod:`sima_fast._lock`).

No pickle is written anywhere. Every file is written to a temporary name and
moved into place with :func:`os.replace`; ``metadata.json`` is replaced last,
so an interrupted save leaves the previous state readable.

Every read-modify-write of a directory (:func:`rewrite_h5_groups`,
:func:`write_projections`, an in-place save) holds the directory's lock
(:func:`dataset_lock`), so concurrent writers in several threads or processes
take turns and none loses another's update; readers never wait for it.
The metadata lists the data files sima_fast wrote (``owned_files``), and
:func:`remove_unreferenced` deletes only those: anything else a user puts in
the directory stays.

Directories written by SIMA 1.x (``dataset.pkl``, ``sequences.pkl``, ...) are
read through the allow-list unpickler of :mod:`sima_fast._legacy` and never
modified.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from sima_fast._atomic import RecoveryReport, atomic_write, recover
from sima_fast._legacy import (
    LegacyClass,
    LegacySparse,
    PickleLimits,
    UnsafePickleError,
    legacy_load,
    pickle_limits,
    sparse_from_legacy,
)
from sima_fast._lock import (
    DatasetLockedError,
    dataset_lock,
    lock_timeout,
    set_lock_timeout,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DatasetChangedError",
    "DatasetFormatError",
    "DatasetLockedError",
    "PickleLimits",
    "RecoveryReport",
    "UnsafePickleError",
    "dataset_lock",
    "is_dataset_dir",
    "is_legacy_dir",
    "lock_timeout",
    "pickle_limits",
    "recover",
    "set_lock_timeout",
]

FORMAT_NAME = "sima_fast.ImagingDataset"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
ROIS_FILE = "rois.h5"
PROJECTIONS_FILE = "projections.h5"


#: Names of the data files sima_fast generates (``uuid4().hex`` ids); only
#: such files, and only when the metadata says sima_fast wrote them, are ever
#: deleted.
GENERATED_FILE = re.compile(r"(arrays|sequence)_[0-9a-f]{32}\.h5")


class DatasetFormatError(ValueError):
    """A dataset directory or one of its files is missing, corrupt or of an unknown version."""


class DatasetChangedError(OSError):
    """The directory no longer holds the dataset this object was loaded from.

    Raised by an in-place save when another process replaced the directory's
    sequences (a new ``sequences_id``) since this object read them: writing
    this object's metadata would refer to files that are no longer the
    dataset's. Load the directory again.
    """


def with_fits_alias(record: Any) -> Any:
    """Give a signals record both names of the spike fits, ``spikes_fits`` and ``fits``.

    SIMA (and sima_fast now) store the denoised fluorescence of
    ``infer_spikes`` under ``spikes_fits``; earlier sima_fast versions
    stored it under ``fits``. The returned record has both keys, holding
    the same array list, whichever was stored.

    Parameters
    ----------
    record : dict or object
        A signals record as read; anything else is returned unchanged.

    Returns
    -------
    dict or object
        A shallow copy of the record with both keys when it had one of them;
        otherwise ``record`` itself.

    Examples
    --------
    >>> rec = with_fits_alias({'raw': [], 'spikes_fits': [1]})
    >>> rec['fits'] is rec['spikes_fits']
    True
    """
    if not isinstance(record, dict) or ("fits" in record) == ("spikes_fits" in record):
        return record
    out = dict(record)
    fits = out.get("spikes_fits", out.get("fits"))
    out["fits"] = out["spikes_fits"] = fits
    return out


def signals_file(channel: int) -> str:
    """Return the file name holding the signals of one channel.

    Parameters
    ----------
    channel : int
        Channel index (not name).

    Returns
    -------
    str
        ``'signals_<channel>.h5'``, relative to the dataset directory.
    """
    return f"signals_{int(channel)}.h5"


def normalize_savedir(path: Any) -> str:
    """Return the absolute path of a dataset directory, ending in ``.sima``.

    Parameters
    ----------
    path : str or path-like
        The directory as given by the user; ``.sima`` is appended when it
        does not end with it, and a trailing separator is dropped.

    Returns
    -------
    str
        The absolute path.

    Raises
    ------
    TypeError
        If ``path`` is neither a ``str`` nor an :class:`os.PathLike`.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"savedir must be a path (str or os.PathLike), got {type(path).__name__}")
    path = os.path.abspath(os.fspath(path)).rstrip(os.sep)
    if not path.endswith(".sima"):
        path += ".sima"
    return path


def is_dataset_dir(path: str) -> bool:
    """Tell whether a directory is a sima_fast dataset directory.

    Parameters
    ----------
    path : str
        The directory to inspect.

    Returns
    -------
    bool
        True when it holds a ``metadata.json`` file.
    """
    return os.path.isfile(os.path.join(path, METADATA_FILE))


def is_legacy_dir(path: str) -> bool:
    """Tell whether a directory looks like one written by SIMA 1.x.

    Parameters
    ----------
    path : str
        The directory to inspect.

    Returns
    -------
    bool
        True when it holds ``sequences.pkl`` or ``dataset.pkl``.
    """
    return os.path.isfile(os.path.join(path, "sequences.pkl")) or os.path.isfile(
        os.path.join(path, "dataset.pkl")
    )


# ---------------------------------------------------------------------------
# generic tree <-> HDF5 (used for signals and other nested results)
# ---------------------------------------------------------------------------


def _member(key: str) -> str:
    return key.replace("%", "%25").replace("/", "%2F") if key not in (".", "") else f"%{key}"


def _unmember(name: str) -> str:
    if name in ("%.", "%"):
        return name[1:]
    return name.replace("%2F", "/").replace("%25", "%")


def write_tree(group: Any, obj: Any) -> None:
    """Store a nested Python value (dicts, lists, arrays, scalars, sparse) in an h5py group.

    The value is written as the group's content; :func:`read_tree` rebuilds it.

    Parameters
    ----------
    group : h5py.Group
        An empty, writable group. A dict's items become its members; any
        other value is stored under the member ``'value'``.
    obj : object
        The value: dicts with ``str`` keys, lists, tuples, sets (frozensets
        are read back as sets), None, ``str``, ``bool``, ``int``,
        ``float`` (numpy scalars included), numpy arrays (string and object
        arrays stored as strings) and scipy sparse matrices (stored as CSR),
        nested to any depth.

    Raises
    ------
    TypeError
        If a dict key is not a ``str`` or a value has another type.
    """
    import h5py
    import scipy.sparse

    def put(parent: Any, name: str, value: Any) -> None:
        if isinstance(value, dict):
            g = parent.create_group(name)
            g.attrs["kind"] = "dict"
            for k, v in value.items():
                if not isinstance(k, str):
                    raise TypeError(f"only str keys can be stored, got {k!r}")
                put(g, _member(k), v)
        elif isinstance(value, (list, tuple, set, frozenset)):
            g = parent.create_group(name)
            kind = {list: "list", tuple: "tuple"}.get(type(value), "set")
            items = sorted(value, key=repr) if kind == "set" else value
            g.attrs["kind"] = kind
            g.attrs["length"] = len(items)
            for i, v in enumerate(items):
                put(g, str(i), v)
        elif value is None:
            parent.create_group(name).attrs["kind"] = "none"
        elif scipy.sparse.issparse(value):
            m = scipy.sparse.csr_matrix(value)
            g = parent.create_group(name)
            g.attrs["kind"] = "csr"
            g.attrs["shape"] = np.asarray(m.shape, dtype=np.int64)
            g.create_dataset("data", data=m.data)
            g.create_dataset("indices", data=m.indices)
            g.create_dataset("indptr", data=m.indptr)
        elif isinstance(value, str):
            d = parent.create_dataset(name, data=value, dtype=h5py.string_dtype())
            d.attrs["kind"] = "str"
        elif isinstance(value, (bool, np.bool_)):
            parent.create_dataset(name, data=bool(value)).attrs["kind"] = "bool"
        elif isinstance(value, (int, np.integer)):
            parent.create_dataset(name, data=int(value)).attrs["kind"] = "int"
        elif isinstance(value, (float, np.floating)):
            parent.create_dataset(name, data=float(value)).attrs["kind"] = "float"
        elif isinstance(value, np.ndarray):
            if value.dtype.kind in "US" or value.dtype == object:
                d = parent.create_dataset(
                    name,
                    data=np.asarray(value, dtype=object).astype(str).astype(object),
                    dtype=h5py.string_dtype(),
                )
                d.attrs["kind"] = "str_array"
            else:
                parent.create_dataset(name, data=value).attrs["kind"] = "array"
        else:
            raise TypeError(f"cannot store a value of type {type(value).__name__}")

    if isinstance(obj, dict):
        group.attrs["kind"] = "dict"
        for k, v in obj.items():
            put(group, _member(k), v)
    else:
        put(group, "value", obj)
        group.attrs["kind"] = "wrapped"


def read_tree(node: Any) -> Any:
    """Rebuild the value that :func:`write_tree` stored.

    Parameters
    ----------
    node : h5py.Group or h5py.Dataset
        The group given to :func:`write_tree`, or any member below it.

    Returns
    -------
    object
        The stored value, with its container types (dict, list, tuple, set)
        restored; sparse matrices come back as ``scipy.sparse.csr_matrix``
        and numpy scalars as Python ``bool``, ``int`` or ``float``.
    """
    import h5py
    import scipy.sparse

    kind = node.attrs.get("kind")
    if isinstance(kind, bytes):
        kind = kind.decode()
    if isinstance(node, h5py.Dataset):
        if kind == "str":
            v = node[()]
            return v.decode() if isinstance(v, bytes) else str(v)
        if kind == "str_array":
            return np.asarray(
                [s.decode() if isinstance(s, bytes) else s for s in node[()].ravel()], dtype=str
            ).reshape(node.shape)
        if kind == "bool":
            return bool(node[()])
        if kind == "int":
            return int(node[()])
        if kind == "float":
            return float(node[()])
        return node[()]
    if kind == "wrapped":
        return read_tree(node["value"])
    if kind == "none":
        return None
    if kind == "csr":
        shape = tuple(int(s) for s in node.attrs["shape"])
        return scipy.sparse.csr_matrix(
            (node["data"][()], node["indices"][()], node["indptr"][()]), shape=shape
        )
    if kind in ("list", "tuple", "set"):
        items = [read_tree(node[str(i)]) for i in range(int(node.attrs["length"]))]
        return {"list": list, "tuple": tuple, "set": set}[kind](items)
    return {_unmember(k): read_tree(node[k]) for k in node}


def rewrite_h5_groups(
    path: str,
    updates: dict[str, Callable[[Any], None] | None],
    operation: str | None = None,
    lock: bool = True,
) -> None:
    """Atomically rewrite an HDF5 file of labelled groups, holding its directory's lock.

    The file is read, the new version written beside it and moved onto it,
    all while holding :func:`dataset_lock` of the file's directory, so two
    writers changing different labels at the same time both keep their
    change.

    Parameters
    ----------
    path : str
        The file (created if missing).
    updates : dict
        ``label -> writer(group)`` to (re)write a group, or ``label -> None``
        to delete it. Other groups are copied unchanged.
    operation : str, optional
        What is being done, recorded for other writers waiting for the lock
        (default: ``'rewrite <file name>'``).
    lock : bool, optional
        Take the lock (default). False only for a directory no other process
        can see yet (the staging directory of a new dataset).

    Raises
    ------
    DatasetLockedError
        If another writer holds the directory's lock for longer than
        :func:`lock_timeout`.

    Notes
    -----
    When no group remains the file is removed.
    """
    if not lock:
        _rewrite_h5_groups(path, updates)
        return
    directory = os.path.dirname(os.path.abspath(path))
    with dataset_lock(directory, operation or f"rewrite {os.path.basename(path)}"):
        _rewrite_h5_groups(path, updates)


def _rewrite_h5_groups(path: str, updates: dict[str, Callable[[Any], None] | None]) -> None:
    import h5py

    old = h5py.File(path, "r") if os.path.exists(path) else None
    try:
        keep = [k for k in (old.keys() if old is not None else []) if k not in updates]
        new_labels = [k for k, w in updates.items() if w is not None]
        if not keep and not new_labels:
            if old is not None:
                old.close()
                old = None
                os.remove(path)
            return
        with atomic_write(path) as tmp:
            with h5py.File(tmp, "w", track_order=True) as f:
                f.attrs["format"] = FORMAT_NAME
                f.attrs["version"] = FORMAT_VERSION
                for k in keep:
                    old.copy(old[k], f, name=k)
                for k in new_labels:
                    g = f.create_group(k)
                    updates[k](g)
            if old is not None:
                old.close()
                old = None
    finally:
        if old is not None:
            old.close()


def read_h5_groups(path: str, reader: Callable[[Any], Any]) -> dict[str, Any]:
    """Read every labelled group of an HDF5 file.

    Parameters
    ----------
    path : str
        The file, as written by :func:`rewrite_h5_groups`. A missing file
        reads as no groups.
    reader : callable
        ``reader(group)`` turns one open ``h5py.Group`` into its value.

    Returns
    -------
    dict
        ``label -> reader(group)``, in file order.

    Raises
    ------
    DatasetFormatError
        If the file exists but HDF5 cannot read it.
    """
    import h5py

    # Writers replace the file atomically and remove it with its last group,
    # so between HDF5's open and its stat the path can vanish or change
    # (HDF5 then says "can't retrieve stat info", not FileNotFoundError): a
    # vanished file reads as no groups, a replaced one is opened again.
    for attempt in range(3):
        if not os.path.exists(path):
            return {}
        try:
            with h5py.File(path, "r") as f:
                return {k: reader(f[k]) for k in f}
        except FileNotFoundError:  # a writer removed its last group since the check
            return {}
        except OSError as exc:
            if not os.path.exists(path):
                return {}
            if attempt == 2:
                raise DatasetFormatError(f"cannot read {path!r}: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


# ---------------------------------------------------------------------------
# metadata and sequences
# ---------------------------------------------------------------------------


#: How deeply ``metadata.json`` may nest (objects and lists); a legitimate file
#: stays far below, a hostile one is refused before anything walks it.
MAX_METADATA_DEPTH = 256


def _json_depth(obj: Any, limit: int) -> int:
    """Return the nesting depth of a parsed JSON value, stopping once past ``limit``."""
    deepest = 0
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def read_metadata(savedir: str) -> dict[str, Any]:
    """Read and validate ``metadata.json`` of a dataset directory.

    Nothing is trusted: the nesting depth is bounded, the top-level fields
    are type-checked, and every sequence description is checked field by
    field (:func:`sima_fast.sequence.base.validate_description`) before any
    of it is used, so a damaged or hand-edited file gives one error naming
    the file and the field instead of a ``KeyError`` or ``RecursionError``
    later.

    Parameters
    ----------
    savedir : str
        The dataset directory.

    Returns
    -------
    dict
        The parsed metadata; its format name is checked, its version is at
        most :data:`FORMAT_VERSION`, ``channel_names`` is a list of strings,
        ``frame_shape`` four non-negative integers, ``num_frames`` a list of
        non-negative integers as long as ``sequences``, and every entry of
        ``sequences`` a well-formed sequence description.

    Raises
    ------
    DatasetFormatError
        If the file is missing, is not valid JSON, nests deeper than
        :data:`MAX_METADATA_DEPTH`, is not sima_fast metadata, has an invalid
        or too new version, or lacks a required field or holds one of the
        wrong type; the message gives the file's full path and the field
        (e.g. ``sequences[0].path``).
    """
    from sima_fast.sequence.base import DescriptionError, validate_description

    path = os.path.abspath(os.path.join(savedir, METADATA_FILE))
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except FileNotFoundError:
        raise DatasetFormatError(
            f"{savedir!r} is not a sima_fast dataset: {METADATA_FILE} is missing"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(
            f"{path!r} is corrupt or truncated (invalid JSON: {exc}); the dataset cannot be loaded"
        ) from exc
    except RecursionError:
        raise DatasetFormatError(
            f"{path!r} nests objects or lists too deeply to be sima_fast metadata (a corrupt or "
            f"hostile file); at most {MAX_METADATA_DEPTH} levels are read"
        ) from None
    if _json_depth(meta, MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise DatasetFormatError(
            f"{path!r} nests objects or lists more than {MAX_METADATA_DEPTH} levels deep (a "
            "corrupt or hostile file)"
        )
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DatasetFormatError(
            f"{path!r} is not sima_fast dataset metadata (format field missing)"
        )
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DatasetFormatError(f"{path!r} has an invalid format version {version!r}")
    if version > FORMAT_VERSION:
        raise DatasetFormatError(
            f"{path!r} was written in format version {version} by a newer sima_fast; this "
            f"version reads up to {FORMAT_VERSION}"
        )
    required = {"channel_names": list, "frame_shape": list, "num_frames": list, "sequences": list}
    for key, typ in required.items():
        if not isinstance(meta.get(key), typ):
            raise DatasetFormatError(f"{path!r}: field {key!r} is missing or not a {typ.__name__}")

    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    for i, name in enumerate(meta["channel_names"]):
        if not isinstance(name, str):
            raise DatasetFormatError(
                f"{path!r}: field 'channel_names[{i}]' must be a string, got a "
                f"{type(name).__name__}"
            )
    if len(meta["frame_shape"]) != 4 or not all(count(v) for v in meta["frame_shape"]):
        raise DatasetFormatError(
            f"{path!r}: field 'frame_shape' must be four non-negative integers (Z, Y, X, C)"
        )
    for i, n in enumerate(meta["num_frames"]):
        if not count(n):
            raise DatasetFormatError(
                f"{path!r}: field 'num_frames[{i}]' must be a non-negative integer"
            )
    if len(meta["num_frames"]) != len(meta["sequences"]):
        raise DatasetFormatError(f"{path!r}: num_frames and sequences disagree in length")
    for i, desc in enumerate(meta["sequences"]):
        try:
            validate_description(desc, f"sequences[{i}]")
        except DescriptionError as exc:
            raise DatasetFormatError(
                f"{path!r}: field {exc.field!r} of a sequence description: {exc.detail}"
            ) from None
    if meta.get("acquisition_metadata") is not None:
        check_acquisition_record(meta["acquisition_metadata"], len(meta["sequences"]), path)
    owned = meta.get("owned_files")
    if owned is not None and (
        not isinstance(owned, list) or not all(isinstance(n, str) for n in owned)
    ):
        raise DatasetFormatError(f"{path!r}: field 'owned_files' is not a list of file names")
    return meta


def check_acquisition_record(record: Any, num_sequences: int, path: str) -> None:
    """Check the ``acquisition_metadata`` field of ``metadata.json``.

    Parameters
    ----------
    record : object
        The field's parsed value: ``{"dataset": <metadata or null>,
        "sequences": <null or a list of metadata or null, one per
        sequence>}``, each metadata an
        :meth:`~sima_fast.sequence.metadata.AcquisitionMetadata.todict` object.
    num_sequences : int
        How many sequences the dataset has.
    path : str
        The metadata file, for the error message.

    Raises
    ------
    DatasetFormatError
        The field is not of that form, or a metadata object has an unknown
        key or a value of the wrong type or range; the message names the
        file and the field (e.g. ``acquisition_metadata.sequences[1]``).
    """
    from sima_fast.sequence.metadata import AcquisitionMetadata

    where = "acquisition_metadata"
    if not isinstance(record, dict):
        raise DatasetFormatError(
            f"{path!r}: field {where!r} must be an object with 'dataset' and 'sequences'"
        )
    unknown = sorted(set(record) - {"dataset", "sequences"})
    if unknown:
        raise DatasetFormatError(f"{path!r}: field {where!r} has unknown key(s) {unknown}")
    entries = [(f"{where}.dataset", record.get("dataset"))]
    per_sequence = record.get("sequences")
    if per_sequence is not None:
        if not isinstance(per_sequence, list) or len(per_sequence) != num_sequences:
            raise DatasetFormatError(
                f"{path!r}: field '{where}.sequences' must be null or a list of "
                f"{num_sequences} entries (one per sequence)"
            )
        entries += [(f"{where}.sequences[{i}]", v) for i, v in enumerate(per_sequence)]
    for field, value in entries:
        if value is None:
            continue
        try:
            AcquisitionMetadata.fromdict(value)
        except (TypeError, ValueError) as exc:
            raise DatasetFormatError(f"{path!r}: field {field!r}: {exc}") from None


def load_sequences(savedir: str, meta: dict[str, Any]) -> list:
    """Rebuild the sequences described in a dataset's metadata.

    Parameters
    ----------
    savedir : str
        The dataset directory; relative data paths are resolved against it.
    meta : dict
        Metadata from :func:`read_metadata`: each entry of ``sequences`` is
        passed to :meth:`Sequence.fromdict`, with the arrays file
        ``arrays_file`` (when named) open for the descriptions that refer to it.

    Returns
    -------
    list of Sequence
        One sequence per description, in order.

    Raises
    ------
    DatasetFormatError
        If the arrays file is missing, or a sequence's shape is no longer
        ``(num_frames[i], *frame_shape)`` (its data changed since the save).
    """
    import h5py

    from sima_fast.sequence import DescriptionError, LoadContext, Sequence

    arrays_name = meta.get("arrays_file")
    arrays = None
    if arrays_name:
        arrays_path = os.path.join(savedir, arrays_name)
        if not os.path.exists(arrays_path):
            raise DatasetFormatError(f"{savedir!r}: the array store {arrays_name!r} is missing")
        arrays = h5py.File(arrays_path, "r")
    try:
        ctx = LoadContext(savedir, arrays)
        sequences = []
        for i, d in enumerate(meta["sequences"]):
            try:
                sequences.append(Sequence.fromdict(d, ctx))
            except (DatasetFormatError, DescriptionError):
                raise
            except (ValueError, TypeError) as exc:
                # a value of the right type that the sequence refuses (e.g. dim_order='qq')
                raise DatasetFormatError(
                    f"{os.path.join(savedir, METADATA_FILE)!r}: sequences[{i}] cannot be "
                    f"rebuilt: {exc}"
                ) from exc
    finally:
        if arrays is not None:
            arrays.close()
    frame_shape = tuple(meta["frame_shape"])
    for i, (seq, n) in enumerate(zip(sequences, meta["num_frames"])):
        if seq.shape != (n, *frame_shape):
            raise DatasetFormatError(
                f"sequence {i} of {savedir!r} now has shape {seq.shape}, but the dataset recorded "
                f"{(n, *frame_shape)}: its data file changed since the dataset was saved"
            )
    return sequences


def serialize_sequences(sequences: list, savedir: str, writedir: str) -> dict[str, Any]:
    """Describe ``sequences`` for ``metadata.json``; write their arrays into ``writedir``.

    Paths are recorded relative to ``savedir`` (the final location), while new
    files are written in ``writedir`` (the same, or a staging directory that
    will be renamed to ``savedir``). If anything fails, the files written so
    far are removed before the exception propagates.

    Parameters
    ----------
    sequences : list of Sequence
        The dataset's sequences.
    savedir : str
        The directory the dataset will live in.
    writedir : str
        The directory the new files are written to now.

    Returns
    -------
    dict
        ``sequences`` (one JSON-compatible description per sequence),
        ``arrays_file`` (name of the new ``arrays_<id>.h5``, or None when no
        description stored an array), ``sequences_id`` (a new random hex id)
        and ``new_files`` (base names of every file written).
    """
    import h5py

    from sima_fast.sequence import SaveContext

    ctx = SaveContext(savedir, writedir)
    try:
        descs = [s.todict(ctx) for s in sequences]
        arrays_file = None
        if ctx.arrays:
            arrays_file = f"arrays_{uuid.uuid4().hex}.h5"
            with (
                atomic_write(os.path.join(writedir, arrays_file)) as tmp,
                h5py.File(tmp, "w") as f,
            ):
                for key, arr in ctx.arrays.items():
                    f.create_dataset(key, data=arr)
            ctx.new_files.append(os.path.join(writedir, arrays_file))
    except BaseException:
        for p in ctx.new_files:
            if os.path.exists(p):
                os.remove(p)
        raise
    return {
        "sequences": descs,
        "arrays_file": arrays_file,
        "sequences_id": uuid.uuid4().hex,
        "new_files": [os.path.basename(p) for p in ctx.new_files],
    }


def write_metadata(writedir: str, meta: dict[str, Any]) -> None:
    """Atomically write ``metadata.json``.

    Parameters
    ----------
    writedir : str
        The directory to write it in.
    meta : dict
        JSON-compatible fields; the format name and version are prepended.
    """
    payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **meta}
    text = json.dumps(payload, indent=2, sort_keys=False)
    with atomic_write(os.path.join(writedir, METADATA_FILE)) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.write("\n")


def referenced_files(meta: dict[str, Any]) -> set[str]:
    """Return the base names of the files a dataset's metadata refers to.

    Parameters
    ----------
    meta : dict
        Metadata as written by :func:`write_metadata`.

    Returns
    -------
    set of str
        Its ``arrays_file`` and the base name of every data file named (by
        ``abspath``) in its sequence descriptions, wherever that file lives
        (so a file is kept whenever any description could mean it).
    """
    used = set()
    if isinstance(meta.get("arrays_file"), str):
        used.add(meta["arrays_file"])

    def walk(d: Any) -> None:
        if isinstance(d, dict):
            path = d.get("path")
            if isinstance(path, dict) and isinstance(path.get("abspath"), str):
                used.add(os.path.basename(path["abspath"]))
            for v in d.values():
                walk(v)
        elif isinstance(d, list):
            for v in d:
                walk(v)

    walk(meta.get("sequences", []))
    return used


def owned_files(meta: dict[str, Any]) -> set[str]:
    """Return the data files of a directory that sima_fast wrote, as its metadata records.

    Parameters
    ----------
    meta : dict
        Metadata of the directory. Its ``owned_files`` list is used when
        present. Metadata written before that field existed counts as ours
        only the files it refers to (:func:`referenced_files`) whose names
        are exactly those sima_fast generates (``arrays_<32 hex digits>.h5``,
        ``sequence_<32 hex digits>.h5``).

    Returns
    -------
    set of str
        Base names of files in the directory; never a path with a separator.
    """
    listed = meta.get("owned_files")
    if isinstance(listed, list):
        names = {n for n in listed if isinstance(n, str)}
    else:
        names = {n for n in referenced_files(meta) if GENERATED_FILE.fullmatch(n)}
    return {n for n in names if n == os.path.basename(n) and n not in ("", ".", "..")}


def ownership(
    meta: dict[str, Any], previous: dict[str, Any] | None, new_files: list[str]
) -> list[str]:
    """Return the ``owned_files`` entry of new metadata.

    Parameters
    ----------
    meta : dict
        The new metadata (its sequence descriptions and ``arrays_file``).
    previous : dict or None
        The metadata it replaces in the same directory, or None for a new
        directory.
    new_files : list of str
        Base names of the files written for ``meta`` (:func:`serialize_sequences`).

    Returns
    -------
    list of str
        Sorted base names: the files sima_fast wrote (now or, per
        ``previous``, before) that ``meta`` still uses.
    """
    ours = set(new_files)
    if previous is not None:
        ours |= owned_files(previous)
    return sorted(ours & referenced_files(meta))


def remove_unreferenced(
    savedir: str, meta: dict[str, Any], previous: dict[str, Any] | None = None
) -> list[str]:
    """Delete the data files sima_fast wrote that ``meta`` no longer uses.

    Only a file that the metadata records as sima_fast's own (:func:`owned_files`
    of ``meta`` or ``previous``), whose name is one sima_fast generates, and
    that ``meta`` does not refer to is deleted; any other file in the
    directory is left alone, whatever its name.

    Parameters
    ----------
    savedir : str
        The dataset directory.
    meta : dict
        The metadata just written.
    previous : dict, optional
        The metadata it replaced; its files stop being needed now.

    Returns
    -------
    list of str
        The base names of the files deleted.
    """
    candidates = owned_files(meta)
    if previous is not None:
        candidates |= owned_files(previous)
    removed = []
    for name in sorted(candidates - referenced_files(meta)):
        path = os.path.join(savedir, name)
        if GENERATED_FILE.fullmatch(name) and os.path.isfile(path) and not os.path.islink(path):
            os.remove(path)
            removed.append(name)
    return removed


# ---------------------------------------------------------------------------
# projections cache
# ---------------------------------------------------------------------------


def read_projections(savedir: str, sequences_id: str) -> dict[str, np.ndarray]:
    """Return the cached projections of a dataset if they are still valid.

    Parameters
    ----------
    savedir : str
        The dataset directory.
    sequences_id : str
        The ``sequences_id`` of the current metadata.

    Returns
    -------
    dict of str to numpy.ndarray
        ``name -> projection`` when ``projections.h5`` was computed from the
        sequences ``sequences_id``; empty when the file is missing,
        unreadable or stale.
    """
    import h5py

    path = os.path.join(savedir, PROJECTIONS_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("sequences_id") != sequences_id:
                return {}
            return {k: f[k][()] for k in f}
    except OSError:
        return {}


def write_projections(
    savedir: str, sequences_id: str, arrays: dict[str, np.ndarray], lock: bool = True
) -> bool:
    """Atomically store projections computed from the sequences ``sequences_id``.

    Parameters
    ----------
    savedir : str
        The dataset directory; ``projections.h5`` is replaced.
    sequences_id : str
        The ``sequences_id`` of the metadata the projections belong to.
    arrays : dict of str to numpy.ndarray
        ``name -> projection``.
    lock : bool, optional
        Hold the directory's lock and write only if its ``metadata.json``
        still has ``sequences_id`` (default). False only for a directory no
        other process can see yet (a new dataset's staging directory, whose
        metadata is written last).

    Returns
    -------
    bool
        True when the file was written; False when the directory's sequences
        changed meanwhile (the projections would be stale) or its metadata
        cannot be read.

    Raises
    ------
    DatasetLockedError
        If another writer holds the directory's lock for longer than
        :func:`lock_timeout`.
    """
    import h5py

    path = os.path.join(savedir, PROJECTIONS_FILE)
    with dataset_lock(savedir, "cache projections") if lock else contextlib.nullcontext():
        if lock:
            try:
                current = read_metadata(savedir).get("sequences_id")
            except DatasetFormatError:
                return False
            if current != sequences_id:
                return False
        with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["sequences_id"] = sequences_id
            for k, v in arrays.items():
                f.create_dataset(k, data=v)
    return True


# ---------------------------------------------------------------------------
# SIMA 1.x directories
# ---------------------------------------------------------------------------


def _legacy_record(d: dict[str, Any]) -> dict[str, Any]:
    return {"abspath": d.get("_abspath", d.get("path")), "relpath": d.get("_relpath")}


MAX_LEGACY_SEQUENCE_RECORDS = 10_000
"""Most sequence records a ``sequences.pkl`` may expand to (each wrapper counts once per use).

SIMA datasets hold a few sequences, each wrapped a few times; sima_fast's
sequence views walk their wrapped sequences as a tree, so a file sharing
records (``[s, s]`` nested) must not expand beyond this.
"""

_WRAPPED = {
    "_IndexedSequence": "base",
    "_MaskedSequence": "base",
    "_MotionCorrectedSequence": "base",
    "_Joined_Sequence": "sequences",
}

# SIMA's sequence math (``a - b`` and friends): record name -> the operator,
# applied to the records under ``'base'`` and ``'other'``. SIMA's
# ``_DivideWrapperSequence`` (Python 2's ``/``) divides as numpy's ``divide``
# does on Python 3: true division.
_LEGACY_MATH = {
    "_AddWrapperSequence": "__add__",
    "_SubtractWrapperSequence": "__sub__",
    "_MultiplyWrapperSequence": "__mul__",
    "_DivideWrapperSequence": "__truediv__",
    "_TrueDivideWrapperSequence": "__truediv__",
    "_FloorDivideWrapperSequence": "__floordiv__",
}
_WRAPPED.update(dict.fromkeys(_LEGACY_MATH, ("base", "other")))


def _legacy_record_count(d: Any, path: str, memo: dict[int, int]) -> int:
    """Count the records under ``d`` as a tree (each shared record once per use).

    Linear in the distinct records (memoised by identity); recursion depth
    is bounded by the unpickler's ``max_depth``.

    Returns
    -------
    int
    """
    if not isinstance(d, dict) or not isinstance(d.get("__class__"), LegacyClass):
        return 1  # reported with the file name when converted
    hit = memo.get(id(d))
    if hit is not None:
        return hit
    key = _WRAPPED.get(d["__class__"].name)
    if isinstance(key, tuple):
        children = [d.get(k) for k in key]
    else:
        children = [] if key is None else d.get(key)
    if key == "base":
        children = [children]
    count = 1
    if isinstance(children, (list, tuple)):
        for child in children:
            count += _legacy_record_count(child, path, memo)
            if count > MAX_LEGACY_SEQUENCE_RECORDS:
                raise UnsafePickleError(
                    f"{path}: the sequences expand to more than {MAX_LEGACY_SEQUENCE_RECORDS} "
                    "records, counting a shared record once per use "
                    "(MAX_LEGACY_SEQUENCE_RECORDS)",
                    path=path,
                    limit="MAX_LEGACY_SEQUENCE_RECORDS",
                )
    memo[id(d)] = count
    return count


def _legacy_sequences(raw: list, savedir: str, path: str) -> list:
    """Convert the records of ``sequences.pkl`` (``path``), bounded and naming the file.

    The records are first counted as a tree against
    :data:`MAX_LEGACY_SEQUENCE_RECORDS`; then each distinct record is
    converted once (a shared record gives a shared Sequence). Wrappers nest
    no deeper than the unpickler's depth limit, so the recursion in
    :func:`_legacy_sequence` is bounded.

    Returns
    -------
    list of Sequence
    """
    counts: dict[int, int] = {}
    total = 0
    for d in raw:
        total += _legacy_record_count(d, path, counts)
        if total > MAX_LEGACY_SEQUENCE_RECORDS:
            raise UnsafePickleError(
                f"{path}: the sequences expand to more than {MAX_LEGACY_SEQUENCE_RECORDS} "
                "records (MAX_LEGACY_SEQUENCE_RECORDS)",
                path=path,
                limit="MAX_LEGACY_SEQUENCE_RECORDS",
            )
    memo: dict[int, Any] = {}
    out = []
    for i, d in enumerate(raw):
        try:
            out.append(_legacy_sequence(d, savedir, path, memo))
        except KeyError as exc:
            raise DatasetFormatError(
                f"{path}: sequence {i}: a SIMA sequence record lacks the entry {exc}"
            ) from exc
        except DatasetFormatError:
            raise
        except (TypeError, IndexError, ValueError) as exc:
            raise DatasetFormatError(f"{path}: sequence {i}: {exc}") from exc
    return out


def _legacy_sequence(
    d: Any, savedir: str, path: str | None = None, memo: dict | None = None
) -> Any:
    """Convert one SIMA sequence record (memoised by identity in ``memo``).

    Returns
    -------
    Sequence
    """
    if memo is None:
        memo = {}
    where = path or os.path.join(savedir, "sequences.pkl")
    if not isinstance(d, dict) or not isinstance(d.get("__class__"), LegacyClass):
        raise DatasetFormatError(f"{where}: unexpected entry in sequences.pkl: {type(d).__name__}")
    hit = memo.get(id(d))
    if hit is None:
        hit = memo[id(d)] = _legacy_sequence_new(d, savedir, where, memo)
    return hit


def _legacy_sequence_new(d: dict, savedir: str, where: str, memo: dict) -> Any:
    from sima_fast.sequence import Sequence, resolve_path

    def base(key: str = "base") -> Any:
        return _legacy_sequence(d[key], savedir, where, memo)

    name = d["__class__"].name
    if name == "_Sequence_HDF5":
        path = resolve_path(_legacy_record(d), savedir, "HDF5 file")
        return Sequence.create(
            "HDF5", path, d["dim_order"], group=d.get("group"), key=d.get("key")
        )
    if name == "_Sequence_TIFF_Interleaved":
        path = resolve_path(_legacy_record(d), savedir, "TIFF file")
        return Sequence.create(
            "TIFF", path, d.get("num_planes", 1), d.get("num_channels", 1), d.get("len_")
        )
    if name == "_Sequence_ndarray":
        if d.get("array") is not None:
            return Sequence.create("ndarray", np.asarray(d["array"]))
        path = resolve_path(_legacy_record(d), savedir, "array file")
        return Sequence.create("ndarray", np.load(path, mmap_mode="r", allow_pickle=False))
    if name == "_Sequence_memmap":
        path = resolve_path(_legacy_record(d), savedir, "memmap file")
        return Sequence.create(
            "memmap",
            path,
            tuple(d["shape"]),
            d["dim_order"],
            d.get("dtype", "float32"),
            d.get("order", "C"),
        )
    if name == "_Sequence_TIFFs":
        from sima_fast.io.sima_legacy import tiffs_patterns

        paths = d.get("paths")
        if paths is None:
            raise DatasetFormatError(f"{where}: unsupported _Sequence_TIFFs record")
        if not isinstance(paths, np.ndarray):  # patterns, not SIMA's (T, Z, C) file table
            return Sequence.create("TIFFs", paths)
        return Sequence.create("TIFFs", tiffs_patterns(paths, savedir, where))
    if name == "_IndexedSequence":
        return base()[tuple(d["indices"])]
    if name == "_MaskedSequence":
        return base().mask(list(d["outers"]))
    if name == "_MotionCorrectedSequence":
        extent = d.get("extent")
        return base().apply_displacements(
            np.asarray(d["displacements"]),
            None if extent is None else tuple(int(e) for e in extent),
        )
    if name == "_Joined_Sequence":
        parts = d["sequences"]
        if not isinstance(parts, (list, tuple)):
            raise DatasetFormatError(f"{where}: _Joined_Sequence holds no list of sequences")
        return Sequence.join([_legacy_sequence(s, savedir, where, memo) for s in parts])
    if name == "_Sequence_constant":
        return Sequence.create("constant", d["value"], tuple(d["shape"]))
    if name in _LEGACY_MATH:
        return getattr(base(), _LEGACY_MATH[name])(base("other"))
    raise DatasetFormatError(f"{where}: unsupported SIMA sequence class {name}")


def _legacy_describe(value: Any) -> str:
    """Name a value's type and size without printing it (it may be huge or deep)."""
    size = f" of {len(value)} items" if isinstance(value, (list, tuple, dict, set)) else ""
    inner = ""
    if isinstance(value, (list, tuple)):
        bad = [type(n).__name__ for n in value if not isinstance(n, (str, bytes, int, float))]
        inner = f" holding {bad[0]}" if bad else ""
    return f"{type(value).__name__}{size}{inner}"


def convert_legacy(obj: Any) -> Any:
    """Replace :class:`LegacySparse` records by CSR matrices throughout a structure.

    The walk uses an explicit stack (no recursion, whatever the nesting) and
    converts each distinct container once, so containers shared in the
    input stay shared in the output and the time is linear in the number of
    distinct containers.

    Parameters
    ----------
    obj : object
        A value from :func:`legacy_load`; dicts, lists and tuples are walked.

    Returns
    -------
    object
        A copy of the containers with every record converted by
        :func:`sparse_from_legacy`; other values are returned as they are.

    Raises
    ------
    UnsafePickleError
        If a sparse record is malformed (the message names its file).
    ValueError
        If the structure holds a reference cycle.
    """
    walked = (dict, list, tuple)
    if not isinstance(obj, (*walked, LegacySparse)):
        return obj
    memo: dict[int, Any] = {}
    keep: list = []  # the inputs stay alive, so their ids stay unique

    def convert_leafish(x: Any) -> tuple[bool, Any]:
        if isinstance(x, LegacySparse):
            key = id(x)
            if key not in memo:
                memo[key] = sparse_from_legacy(x)
                keep.append(x)
            return True, memo[key]
        if isinstance(x, walked):
            if id(x) in memo:
                return True, memo[id(x)]
            return False, None
        return True, x

    done, value = convert_leafish(obj)
    if done:
        return value
    on_path = {id(obj)}
    items = obj.items() if isinstance(obj, dict) else obj
    stack: list[list] = [[obj, iter(items), []]]
    while True:
        node, it, out = stack[-1]
        for item in it:
            child = item[1] if isinstance(node, dict) else item
            done, value = convert_leafish(child)
            if not done:
                if id(child) in on_path:
                    raise ValueError("convert_legacy: the structure holds a reference cycle")
                on_path.add(id(child))
                sub = child.items() if isinstance(child, dict) else child
                stack.append([child, iter(sub), []])
                out.append((item[0], None) if isinstance(node, dict) else None)
                break
            out.append((item[0], value) if isinstance(node, dict) else value)
        else:
            stack.pop()
            on_path.discard(id(node))
            if isinstance(node, dict):
                result: Any = dict(out)
            elif isinstance(node, list):
                result = out
            else:
                result = tuple(out)
            memo[id(node)] = result
            keep.append(node)
            if not stack:
                return result
            parent = stack[-1]
            last = parent[2][-1]
            parent[2][-1] = (last[0], result) if isinstance(parent[0], dict) else result


def load_legacy(savedir: str) -> dict[str, Any]:
    """Read a SIMA directory: sequences, channel names and cached projections.

    A SIMA 0.x directory (a ``dataset.pkl`` listing ``iterables`` and no
    ``sequences.pkl``) is mapped by
    :func:`sima_fast.io.sima_legacy.load_version0`; its projections are
    recomputed when asked for.

    Parameters
    ----------
    savedir : str
        A directory written by SIMA 0.x or 1.x. It is not modified.

    Returns
    -------
    dict
        ``sequences`` (list of Sequence), ``channel_names`` (list of str, or
        None when ``dataset.pkl`` names none) and ``projections``
        (``'time_averages'`` and ``'time_std'`` as float64 arrays, when the
        pickles exist).

    Raises
    ------
    DatasetFormatError
        If ``sequences.pkl`` is missing or a pickle holds an unexpected
        structure or sequence class (``channel_names`` not a list of
        strings, a sequence record without a required entry...); the
        message names the file.
    UnsafePickleError
        If a pickle refers to anything outside the allow-list, is corrupt,
        or exceeds the limits of :class:`sima_fast._legacy.PickleLimits`
        (raise them with :func:`sima_fast.storage.pickle_limits`), or the
        sequence records expand to more than
        :data:`MAX_LEGACY_SEQUENCE_RECORDS`; the message names the file
        and the limit.
    """
    ds_path = os.path.join(savedir, "dataset.pkl")
    info = legacy_load(ds_path) if os.path.exists(ds_path) else {}
    if not isinstance(info, dict):
        raise DatasetFormatError(f"{ds_path!r} does not hold SIMA dataset information")
    seq_path = os.path.join(savedir, "sequences.pkl")
    if not os.path.exists(seq_path) and "iterables" in info:  # SIMA 0.x
        from sima_fast.io.sima_legacy import load_version0

        try:
            sequences = load_version0(savedir, info, ds_path)
        except ValueError as exc:
            raise DatasetFormatError(str(exc)) from exc
        return {
            "sequences": sequences,
            "channel_names": _legacy_channel_names(info, ds_path),
            "projections": {},
        }
    if not os.path.exists(seq_path):
        raise DatasetFormatError(f"{savedir!r}: sequences.pkl is missing")
    raw = legacy_load(seq_path)
    if not isinstance(raw, list):
        raise DatasetFormatError(f"{seq_path!r} does not hold a list of sequences")
    sequences = _legacy_sequences(raw, savedir, seq_path)
    projections = {}
    for name in ("time_averages", "time_std"):
        p = os.path.join(savedir, f"{name}.pkl")
        if os.path.exists(p):
            arr = legacy_load(p)
            if isinstance(arr, np.ndarray):
                projections[name] = np.asarray(arr, dtype=np.float64)
    # time_kurtosis.pkl held SIMA's 4th central moment, not kurtosis: ignored.
    return {
        "sequences": sequences,
        "channel_names": _legacy_channel_names(info, ds_path),
        "projections": projections,
    }


def _legacy_channel_names(info: dict[str, Any], ds_path: str) -> list[str] | None:
    names = info.get("channel_names")
    if names is None:
        return None
    if not isinstance(names, (list, tuple)) or not all(
        isinstance(n, (str, bytes, int, float, np.generic)) for n in names
    ):
        raise DatasetFormatError(
            f"{ds_path}: channel_names must be a list of strings, got {_legacy_describe(names)}"
        )
    return [str(n) for n in names]


def legacy_roi_labels(savedir: str) -> dict[str, Any]:
    """Read the ROI sets of a SIMA 1.x directory.

    Parameters
    ----------
    savedir : str
        A directory written by SIMA 1.x.

    Returns
    -------
    dict of str to ROIList
        ``label -> ROIList`` from ``rois.pkl``; empty when it is missing.

    Raises
    ------
    DatasetFormatError
        If ``rois.pkl`` does not hold a dict of ROI sets.
    UnsafePickleError
        If the pickle is refused (outside the allow-list, corrupt, over a
        limit of :class:`sima_fast._legacy.PickleLimits`); the message
        names the file.
    ValueError
        If an ROI is malformed (the message names the file and the set).
    """
    from sima_fast.io.sima_legacy import sima_roilist

    path = os.path.join(savedir, "rois.pkl")
    if not os.path.exists(path):
        return {}
    labels = legacy_load(path)
    if not isinstance(labels, dict) or not all(
        isinstance(v, dict) and "rois" in v for v in labels.values()
    ):
        raise DatasetFormatError(f"{path!r} does not hold SIMA ROI sets")
    # One read for all sets (reading the file once per label was quadratic).
    out = {}
    for label, entry in labels.items():
        if not isinstance(entry["rois"], (list, tuple)):
            raise DatasetFormatError(f"{path}: ROI set {label!r} holds no list of ROIs")
        out[label] = sima_roilist(entry, f"{path}:{label}")
    return out


def legacy_signals(savedir: str, channel: int) -> dict[str, Any]:
    """Read the extracted signals of one channel of a SIMA 1.x directory.

    Parameters
    ----------
    savedir : str
        A directory written by SIMA 1.x.
    channel : int
        Channel index.

    Returns
    -------
    dict
        ``label -> signals record`` from ``signals_<channel>.pkl``, sparse
        matrices converted to CSR; empty when the file is missing.

    Raises
    ------
    DatasetFormatError
        If the pickle does not hold a dict.
    UnsafePickleError
        If the pickle is refused (outside the allow-list, corrupt, over a
        limit of :class:`sima_fast._legacy.PickleLimits`) or holds a
        malformed sparse matrix; the message names the file.
    """
    path = os.path.join(savedir, f"signals_{int(channel)}.pkl")
    if not os.path.exists(path):
        return {}
    data = legacy_load(path)
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path!r} does not hold SIMA signals")
    return convert_legacy(data)

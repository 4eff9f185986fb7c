"""SIMA's pickled records, read only: ROI files, ``TIFFs`` file tables, 0.x datasets.

* A SIMA ROI file is a pickled ``{label: {'rois': [roi dict, ...],
  'timestamp': str}}``; each ROI dict has SIMA's keys (``mask`` or
  ``polygons``, ``label``, ``tags``, ``id``, ``im_shape``).
  :mod:`sima_fast.io.native` reads these files for ``fmt='pkl'``/``'h5'``
  and converts them when a set is saved over one.
* SIMA 1.x saved a ``'TIFFs'`` sequence as the table of the files its glob
  patterns had matched, a ``(T, Z, C)`` array of paths;
  :func:`tiffs_patterns` turns the table back into patterns that match
  exactly those files (:func:`sima_fast.storage.load_legacy` uses it).
* A SIMA 0.x directory has no ``sequences.pkl``: its ``dataset.pkl`` lists
  ``iterables`` (per sequence, one ``sima.iterables.MultiPageTIFF`` or
  ``sima.iterables.HDF5`` record per channel), and ``displacements.pkl``
  and the trim coordinates describe the motion correction.
  :func:`load_version0` maps them onto sima_fast sequences as SIMA 1.3.2's
  converter does.

Every file is read by :func:`sima_fast._legacy.legacy_load`, which refuses
anything outside its allow-list and never runs code from the file; nothing
here writes a pickle.
"""

from __future__ import annotations

import glob
import os
from typing import Any

import numpy as np
import scipy.sparse

from sima_fast.ROI import ROI, ROIList

__all__ = ["load_version0", "read_sima_roi_sets", "sima_roilist", "tiffs_patterns"]


def _sima_roi(d: Any, where: str) -> ROI:
    from sima_fast._legacy import LegacySparse, sparse_from_legacy

    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected an ROI dict, got {type(d).__name__}")
    polygons = d.get("polygons")
    mask = d.get("mask")
    kwargs: dict[str, Any] = {
        "label": d.get("label"),
        "id": d.get("id"),
        "tags": d.get("tags"),
        "im_shape": d.get("im_shape"),
    }
    if polygons is not None:
        kwargs["polygons"] = list(polygons) if isinstance(polygons, (list, tuple)) else polygons
    elif mask is not None:
        planes = mask if isinstance(mask, (list, tuple)) else [mask]
        kwargs["mask"] = [
            sparse_from_legacy(p) if isinstance(p, LegacySparse) or scipy.sparse.issparse(p) else p
            for p in planes
        ]
    else:
        raise ValueError(f"{where}: ROI has neither polygons nor a mask")
    try:
        return ROI(**kwargs)
    except (ValueError, TypeError) as exc:
        raise (ValueError if isinstance(exc, ValueError) else TypeError)(
            f"{where}: {exc}"
        ) from exc


def read_sima_roi_sets(path: str) -> dict[Any, Any]:
    """Unpickle a SIMA ``rois.pkl`` and check its layout.

    Parameters
    ----------
    path : str
        The pickle file.

    Returns
    -------
    dict
        ``{label: {'rois': [roi dict, ...], 'timestamp': ...}}`` as stored
        (sparse masks still in the unpickler's representation; convert a set
        with :func:`sima_roilist`).

    Raises
    ------
    ValueError
        If the pickle does not hold ROI sets.
    sima_fast._legacy.UnsafePickleError
        If the file is not a pickle, is corrupt, or names anything outside
        the allow-list.
    """
    from sima_fast._legacy import legacy_load

    data = legacy_load(path)
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and "rois" in v for v in data.values()
    ):
        raise ValueError(f"{path}: not a SIMA ROI file (expected {{label: {{'rois': ...}}}})")
    return data


def sima_roilist(entry: dict[str, Any], where: str) -> ROIList:
    """Convert one set of :func:`read_sima_roi_sets` into an ROIList.

    Parameters
    ----------
    entry : dict
        ``{'rois': [roi dict, ...], 'timestamp': ...}``.
    where : str
        Where the set comes from (e.g. ``'path:label'``), for error messages.

    Returns
    -------
    ROIList
        With the set's timestamp (None when it has none).

    Raises
    ------
    ValueError
        If an ROI is not a dict or has neither polygons nor a mask.
    """
    rois = ROIList([_sima_roi(d, f"{where}[{i}]") for i, d in enumerate(entry["rois"])])
    ts = entry.get("timestamp")
    rois.timestamp = None if ts is None else str(ts)
    return rois


# ---------------------------------------------------------------------------
# 'TIFFs' sequences: the table of files, back to glob patterns
# ---------------------------------------------------------------------------


def _resolve_tiff(path: str, savedir: str) -> str | None:
    """Find ``path``: as recorded (absolute, or from the cwd), then inside ``savedir``."""
    for cand in (path, os.path.join(savedir, path)):
        if os.path.isfile(cand):
            return os.path.abspath(cand)
    return None


def _common_start(names: list[str]) -> str:
    """Return the longest string every name starts with (character by character)."""
    first, last = min(names), max(names)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def _pattern_candidates(files: list[str]) -> list[str]:
    """Glob patterns that may match exactly ``files`` (absolute paths), most general first."""
    if len(files) == 1:
        return [glob.escape(files[0])]
    prefix = _common_start(files)
    tails = [f[len(prefix) :] for f in files]
    suffix = _common_start([t[::-1] for t in tails])[::-1]
    out = [glob.escape(prefix) + "*" + glob.escape(suffix)]
    if len({len(f) for f in files}) == 1:  # the positions that vary, as character classes
        parts = []
        for chars in zip(*files):
            if len(set(chars)) == 1:
                parts.append(glob.escape(chars[0]))
            elif all(c.isalnum() for c in chars):
                parts.append("[" + "".join(sorted(set(chars))) + "]")
            else:
                return out
        out.append("".join(parts))
    return out


def tiffs_patterns(paths: Any, savedir: str, where: str) -> list[list[str]]:
    """Turn SIMA's table of TIFF files back into one glob pattern per plane and channel.

    SIMA 1.x expanded the glob patterns of a ``'TIFFs'`` sequence when it
    was created and saved the matched files as an array of shape
    ``(T, Z, C)``. SIMA 1.3.2 built that array by reshaping the
    ``(Z, C, T)`` array of matches without reordering its axes, so with
    several planes or channels its rows mix up frames, planes and channels;
    the intended table (frame ``t``, plane ``z``, channel ``c``) is that
    layout undone, and it is tried first. A table already in
    ``(T, Z, C)`` order is tried next.

    sima_fast's ``'TIFFs'`` sequences keep patterns, so for each plane and
    channel a pattern is sought that matches exactly that column of files,
    in that order (sorted by name, as SIMA sorted its matches): first
    ``prefix*suffix`` around the part where the names differ, then, for
    names of equal length, a character class at each position that
    differs. Every pattern is checked against the files on disk.

    Parameters
    ----------
    paths : array_like of str
        The ``(T, Z, C)`` table (a numpy array of str or of objects, or
        nested lists), as SIMA saved it.
    savedir : str
        The SIMA directory; a relative path that does not exist from the
        current directory is looked up there.
    where : str
        Where the table comes from, for error messages.

    Returns
    -------
    list of list of str
        ``patterns[z][c]``, for ``Sequence.create('TIFFs', patterns)``.

    Raises
    ------
    ValueError
        If the table is not a ``(T, Z, C)`` table of strings, or the files
        of a plane and channel cannot be described by a pattern in either
        layout (other files in their folder match it, or they are not in
        name order).
    FileNotFoundError
        If a file of the table does not exist (the message names it).

    Examples
    --------
    >>> import tempfile, tifffile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for t in range(3):
    ...         tifffile.imwrite(os.path.join(tmp, f'f{t:02d}.tif'), np.zeros((2, 2), 'uint16'))
    ...     table = [[[os.path.join(tmp, f'f{t:02d}.tif')]] for t in range(3)]
    ...     pattern = tiffs_patterns(table, tmp, 'example')[0][0]
    ...     os.path.basename(pattern)
    'f0*.tif'
    """
    table = np.asarray(paths, dtype=object)
    if table.ndim != 3 or table.size == 0:
        raise ValueError(
            f"{where}: a SIMA 'TIFFs' record holds a (T, Z, C) table of file names; got an "
            f"array of shape {table.shape}"
        )
    T, Z, C = table.shape
    files = np.empty(table.shape, dtype=object)
    for (t, z, c), name in np.ndenumerate(table):
        if isinstance(name, bytes):
            name = name.decode("latin1")
        if not isinstance(name, str):
            raise ValueError(
                f"{where}: entry ({t}, {z}, {c}) of the TIFFs table is a "
                f"{type(name).__name__}, not a file name"
            )
        found = _resolve_tiff(name, savedir)
        if found is None:
            raise FileNotFoundError(
                f"{where}: cannot find the TIFF file {name!r} (entry ({t}, {z}, {c}) of the "
                f"TIFFs table); tried it as recorded and inside {savedir!r}"
            )
        files[t, z, c] = found
    layouts = [files.reshape(-1).reshape(Z, C, T).transpose(2, 0, 1)]  # SIMA 1.3.2's
    if Z * C > 1:
        layouts.append(files)
    for layout in layouts:
        patterns = _column_patterns(layout)
        if isinstance(patterns, list):
            return patterns
    z, c, first = patterns
    raise ValueError(
        f"{where}: the {T} TIFF files of plane {z}, channel {c} (from {first!r}) cannot be "
        "described by a glob pattern: other files in their folder match, or they are not in "
        "name order; move the other files away, or create the sequence with "
        "Sequence.create('TIFFs', ...)"
    )


def _column_patterns(files: np.ndarray) -> list[list[str]] | tuple[int, int, str]:
    """Find a pattern for every (plane, channel) column, or say which column has none."""
    _, Z, C = files.shape
    patterns: list[list[str]] = []
    for z in range(Z):
        row = []
        for c in range(C):
            column = list(files[:, z, c])
            for pattern in _pattern_candidates(column):
                if sorted(os.path.abspath(m) for m in glob.glob(pattern)) == column:
                    row.append(pattern)
                    break
            else:
                return z, c, column[0]
        patterns.append(row)
    return patterns


# ---------------------------------------------------------------------------
# SIMA 0.x directories
# ---------------------------------------------------------------------------


def _clip_index(clip: Any, where: str) -> tuple:
    """SIMA 0.x's ``clip`` (``[[y0, y1], [x0, x1]]``, 0 meaning "no bound") as y and x slices."""
    try:
        dims = [tuple(int(v) for v in dim) for dim in clip]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: 'clip' must be pairs of integers, got {clip!r}") from None
    if len(dims) != 2 or any(len(d) != 2 for d in dims):
        raise ValueError(f"{where}: 'clip' must be [[y0, y1], [x0, x1]], got {clip!r}")
    return tuple(slice(*[None if v == 0 else v for v in d]) for d in dims)


def _v0_channel(record: Any, savedir: str, where: str) -> Any:
    from sima_fast._legacy import LegacyClass
    from sima_fast.sequence import Sequence, resolve_path

    if not isinstance(record, dict) or not isinstance(record.get("__class__"), LegacyClass):
        got = type(record).__name__
        raise ValueError(f"{where}: expected a SIMA 0.x channel record, got {got}")
    klass = record["__class__"]
    path = resolve_path(
        {"abspath": record.get("_abspath", record.get("path")), "relpath": record.get("_relpath")},
        savedir,
        "TIFF file" if klass.name == "MultiPageTIFF" else "HDF5 file",
    )
    clip = record.get("clip")
    if klass.name == "MultiPageTIFF":
        seq = Sequence.create("TIFF", path)
    elif klass.name == "HDF5":
        dim_order = record["dim_order"]
        seq = Sequence.create("HDF5", path, dim_order, record.get("group"), record.get("key"))
        chan = record.get("channel")
        if chan is not None and "c" in dim_order:
            seq = seq[:, :, :, :, int(chan) : int(chan) + 1]
    else:  # the reader only lets the classes of _legacy's 0.x allow-list through
        raise ValueError(f"{where}: unsupported SIMA 0.x class {klass.module}.{klass.name}")
    if clip is not None:
        y, x = _clip_index(clip, where)
        seq = seq[:, :, y, x]
    return seq


def load_version0(savedir: str, info: dict[str, Any], where: str) -> list:
    """Map a SIMA 0.x dataset onto sima_fast sequences, as SIMA 1.3.2's converter does.

    Each entry of ``info['iterables']`` is one sequence: a list of channel
    records, ``sima.iterables.MultiPageTIFF`` (a TIFF file, one plane and
    channel) or ``sima.iterables.HDF5`` (a file, ``dim_order``, ``group``,
    ``key`` and the ``channel`` taken from it), each optionally cropped by
    ``clip``; the channels are joined. When ``displacements.pkl`` exists,
    its per-row displacements (one array per sequence, non-negative) are
    applied with a frame enlarged by the largest displacement, and the
    frames are then cropped to the saved trim coordinates
    (``_lazy__trim_coords``, ``[[y0, x0], [y1, x1]]``). As in SIMA, sequences
    beyond the number of displacement arrays are left out (with a warning).

    Parameters
    ----------
    savedir : str
        The SIMA 0.x directory; data files are found through their relative
        path first, then the absolute one.
    info : dict
        The content of its ``dataset.pkl``, read by
        :func:`sima_fast._legacy.legacy_load`.
    where : str
        The ``dataset.pkl`` path, for error messages.

    Returns
    -------
    list of Sequence
        Read-only views of the data files; nothing is written.

    Raises
    ------
    ValueError
        If a record lacks a field or holds unexpected values, a
        displacement is negative, or the dataset records a trim criterion
        without trim coordinates (SIMA could not convert those either).
    FileNotFoundError
        If a data file cannot be found.
    sima_fast._legacy.UnsafePickleError
        If ``displacements.pkl`` is refused by the restricted reader.
    """
    from sima_fast._legacy import legacy_load
    from sima_fast._warnings import warn
    from sima_fast.sequence import Sequence

    iterables = info.get("iterables")
    if not isinstance(iterables, (list, tuple)) or not iterables:
        raise ValueError(f"{where}: a SIMA 0.x dataset.pkl must list its 'iterables'")
    sequences = []
    for i, channels in enumerate(iterables):
        if not isinstance(channels, (list, tuple)) or not channels:
            raise ValueError(f"{where}: iterables[{i}] is not a list of channel records")
        try:
            parts = [
                _v0_channel(c, savedir, f"{where}: iterables[{i}][{j}]")
                for j, c in enumerate(channels)
            ]
        except KeyError as exc:
            raise ValueError(f"{where}: iterables[{i}] lacks the entry {exc}") from None
        sequences.append(parts[0] if len(parts) == 1 else Sequence.join(parts))
    disp_path = os.path.join(savedir, "displacements.pkl")
    if not os.path.exists(disp_path):
        return sequences
    displacements = legacy_load(disp_path)
    if not isinstance(displacements, (list, tuple)) or not all(
        isinstance(d, np.ndarray) and d.dtype.kind in "iuf" and d.ndim >= 1 and d.shape[-1] == 2
        for d in displacements
    ):
        raise ValueError(f"{disp_path}: expected a list of (..., 2) numeric arrays")
    if len(displacements) != len(sequences):
        warn(
            f"{disp_path} holds {len(displacements)} displacement arrays for "
            f"{len(sequences)} sequences; as SIMA does, only the first "
            f"{min(len(displacements), len(sequences))} sequences are used"
        )
    if not displacements:
        return sequences[:0]
    if any(np.nanmin(d) < 0 for d in displacements if d.size):
        raise ValueError(f"{disp_path}: displacements must be >= 0")
    max_disp = np.nanmax([np.nanmax(d.reshape(-1, 2), axis=0) for d in displacements], axis=0)
    Z, Y, X = sequences[0].shape[1:4]
    frame_shape = (Z, Y + int(max_disp[0]), X + int(max_disp[1]))
    moved = []
    for k, (seq, d) in enumerate(zip(sequences, displacements)):
        T, Z, Y = seq.shape[:3]
        if d.size != T * Z * Y * 2:
            raise ValueError(
                f"{disp_path}: array {k} holds {d.size // 2} displacements; sequence {k} has "
                f"{T} frames of {Z} planes of {Y} rows"
            )
        moved.append(seq.apply_displacements(d.reshape(T, Z, Y, 2), frame_shape))
    trim = info.get("_lazy__trim_coords")
    if trim is None:
        if info.get("trim_criterion") is not None:
            raise ValueError(
                f"{where}: the dataset records a trim criterion "
                f"({info['trim_criterion']!r}) but no trim coordinates; SIMA 1.3.2 could not "
                "convert it either. Create the sequences with Sequence.create and "
                "apply_displacements"
            )
        return moved
    try:
        (y0, x0), (y1, x1) = ((int(a), int(b)) for a, b in trim)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: unexpected trim coordinates {trim!r}") from None
    return [s[:, :, y0:y1, x0:x1] for s in moved]

"""sima_fast's own ROI files: named ROI sets in HDF5 (formats 'h5' and 'pkl').

An ROI file holds one HDF5 group per ROI set, named by the set's label, in
the layout of :func:`write_roilist_group`; a dataset directory stores its ROI
sets in the same layout. Reading with ``fmt='h5'`` or ``fmt='pkl'`` accepts
either such a file or a SIMA 1.x ``rois.pkl`` (told apart by the HDF5
signature, the pickle read by :mod:`sima_fast.io.sima_legacy`); writing never
produces a pickle: ``'pkl'`` is accepted for SIMA compatibility and writes
HDF5, converting the sets of an existing SIMA ``rois.pkl`` at ``path``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse

from sima_fast._atomic import atomic_write
from sima_fast._timestamps import timestamp_key
from sima_fast.io._registry import roi_readers, roi_writers
from sima_fast.io.sima_legacy import read_sima_roi_sets, sima_roilist
from sima_fast.ROI import ROI, ROIList

__all__ = [
    "is_hdf5",
    "read_roi_file",
    "read_roilist_group",
    "write_roi_file",
    "write_roilist_group",
]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_GROUP_FORMAT_ATTR = "sima_fast_roilist"
_GROUP_FORMAT_VERSION = 1
_FILE_FORMAT_ATTR = "sima_fast_format"
_FILE_FORMAT_NAME = "roi_sets"


# --------------------------------------------------------------------------
# One ROI set in an HDF5 group
# --------------------------------------------------------------------------


def _write_roi(group: Any, roi: ROI) -> None:
    if roi.label is not None:
        group.attrs["label"] = str(roi.label)
    if roi.id is not None:
        group.attrs["id"] = str(roi.id)
    group.attrs["tags"] = json.dumps(sorted(roi.tags))
    if roi.im_shape is not None:
        group.attrs["im_shape"] = np.asarray(roi.im_shape, dtype=np.int64)
    if not roi.is_mask_roi:
        polys = group.create_group("polygons")
        for k, ring in enumerate(roi.rings):
            polys.create_dataset(str(k), data=np.asarray(ring, dtype=np.float64))
    else:
        masks = group.create_group("mask")
        for z, plane in enumerate(roi.todict()["mask"]):
            g = masks.create_group(str(z))
            g.create_dataset("data", data=plane.data)
            g.create_dataset("indices", data=plane.indices)
            g.create_dataset("indptr", data=plane.indptr)
            g.attrs["shape"] = np.asarray(plane.shape, dtype=np.int64)


def _read_roi(group: Any) -> ROI:
    attrs = group.attrs
    label = attrs.get("label")
    roi_id = attrs.get("id")
    tags = json.loads(attrs["tags"]) if "tags" in attrs else []
    im_shape = tuple(int(v) for v in attrs["im_shape"]) if "im_shape" in attrs else None
    kwargs: dict[str, Any] = {
        "label": None if label is None else str(label),
        "id": None if roi_id is None else str(roi_id),
        "tags": tags,
        "im_shape": im_shape,
    }
    if "polygons" in group:
        polys = group["polygons"]
        kwargs["polygons"] = [polys[k][()] for k in sorted(polys, key=int)]
    elif "mask" in group:
        masks = group["mask"]
        planes = []
        for k in sorted(masks, key=int):
            g = masks[k]
            shape = tuple(int(v) for v in g.attrs["shape"])
            planes.append(
                scipy.sparse.csr_matrix(
                    (g["data"][()], g["indices"][()], g["indptr"][()]), shape=shape
                )
            )
        kwargs["mask"] = planes
    else:
        raise ValueError(f"ROI group {group.name!r} holds neither polygons nor a mask")
    return ROI(**kwargs)


def write_roilist_group(h5group: Any, roilist: Iterable[ROI]) -> None:
    """Write one ROI set into an open, writable h5py group.

    Anything already in the group is removed first. Layout::

        <group>                 attrs: sima_fast_roilist=1, timestamp, n_rois
        <group>/rois/<i>        one group per ROI, i = 0, 1, ... (list order)
            attrs: label, id (absent when None), tags (JSON list of str),
                   im_shape (absent when None)
            polygons/<k>        float64 (N, 3) open ring of (x, y, z) vertices
          or
            mask/<z>/data, indices, indptr   CSR arrays of plane z (dtype kept)
            mask/<z> attrs: shape (Y, X)

    Parameters
    ----------
    h5group : h5py.Group
        The destination group (for instance ``h5file.require_group(label)``).
    roilist : ROIList or iterable of ROI
        The ROIs to write; a plain iterable gets a fresh timestamp.
    """
    if not isinstance(roilist, ROIList):
        roilist = ROIList(roilist)
    for key in list(h5group.keys()):
        del h5group[key]
    for key in list(h5group.attrs.keys()):
        del h5group.attrs[key]
    h5group.attrs[_GROUP_FORMAT_ATTR] = _GROUP_FORMAT_VERSION
    if roilist.timestamp is not None:
        h5group.attrs["timestamp"] = str(roilist.timestamp)
    h5group.attrs["n_rois"] = len(roilist)
    rois = h5group.create_group("rois")
    for i, roi in enumerate(roilist):
        _write_roi(rois.create_group(str(i)), roi)


def read_roilist_group(h5group: Any) -> ROIList:
    """Read an ROI set written by :func:`write_roilist_group`.

    Parameters
    ----------
    h5group : h5py.Group
        The group holding the set.

    Returns
    -------
    ROIList

    Raises
    ------
    ValueError
        If the group is not an ROI set, or an ROI in it is malformed (the
        message names the file, the set and the ROI's index).
    """
    if _GROUP_FORMAT_ATTR not in h5group.attrs or "rois" not in h5group:
        raise ValueError(f"HDF5 group {h5group.name!r} does not hold a sima_fast ROI set")
    rois_group = h5group["rois"]
    rois = []
    for k in sorted(rois_group, key=int):
        try:
            rois.append(_read_roi(rois_group[k]))
        except (ValueError, TypeError) as exc:
            raise (ValueError if isinstance(exc, ValueError) else TypeError)(
                f"{h5group.file.filename}: ROI set {h5group.name!r}, ROI {k}: {exc}"
            ) from exc
    n = h5group.attrs.get("n_rois")
    if n is not None and int(n) != len(rois):
        raise ValueError(
            f"HDF5 group {h5group.name!r} is truncated: {len(rois)} of {int(n)} ROIs present"
        )
    ts = h5group.attrs.get("timestamp")
    out = ROIList(rois)
    out.timestamp = None if ts is None else str(ts)
    return out


# --------------------------------------------------------------------------
# ROI files: several named sets
# --------------------------------------------------------------------------


def is_hdf5(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` starts with the HDF5 signature.

    Parameters
    ----------
    path : str or path-like
        An existing file.

    Returns
    -------
    bool
    """
    with open(path, "rb") as fh:
        return fh.read(8) == _HDF5_SIGNATURE


def _pick_label(timestamps: dict[str, Any], label: Any, path: str) -> str:
    if not timestamps:
        raise ValueError(f"{path}: the file holds no ROI sets")
    if label is None:
        ordered = list(timestamps.items())
        best = max(range(len(ordered)), key=lambda i: (timestamp_key(ordered[i][1]), i))
        return ordered[best][0]
    if label not in timestamps:
        raise KeyError(
            f"no ROI set labelled {label!r} in {path}; available labels: "
            f"{sorted(map(str, timestamps))}"
        )
    return label


def _read_h5(path: str, label: Any) -> ROIList:
    import h5py

    with h5py.File(path, "r") as f:
        timestamps = {
            name: f[name].attrs.get("timestamp")
            for name in f
            if isinstance(f[name], h5py.Group) and _GROUP_FORMAT_ATTR in f[name].attrs
        }
        chosen = _pick_label(timestamps, None if label is None else str(label), path)
        return read_roilist_group(f[chosen])


def _read_sima(path: str, label: Any) -> ROIList:
    sets = read_sima_roi_sets(path)
    chosen = _pick_label({k: v.get("timestamp") for k, v in sets.items()}, label, path)
    return sima_roilist(sets[chosen], f"{path}:{chosen}")


@roi_readers.register("pkl")
@roi_readers.register("h5")
def read_roi_file(path: str | os.PathLike, label: str | None = None) -> ROIList:
    """Read one ROI set from a sima_fast ROI file or a SIMA 1.x ``rois.pkl``.

    Parameters
    ----------
    path : str or path-like
        An existing file: HDF5 (recognised by its signature) in the layout
        of this module, or else a SIMA pickle (read through the restricted
        unpickler of :mod:`sima_fast._legacy`).
    label : str, optional
        The set to read; by default the most recent one (by timestamp, the
        last one on ties).

    Returns
    -------
    ROIList

    Raises
    ------
    KeyError
        If ``label`` names no set in the file.
    ValueError
        If the file holds no ROI set or is not an ROI file.
    sima_fast._legacy.UnsafePickleError
        If a SIMA pickle is corrupt or names anything outside the allow-list.
    """
    path = os.fspath(path)
    if is_hdf5(path):
        return _read_h5(path, label)
    return _read_sima(path, label)


@roi_writers.register("pkl")
@roi_writers.register("h5")
def write_roi_file(rois: ROIList, path: str | os.PathLike, label: str | None = None) -> None:
    """Add or replace one ROI set in a sima_fast ROI file, atomically.

    Parameters
    ----------
    rois : ROIList
        The set to write.
    path : str or path-like
        The ROI file. Other sets already in it are kept (those of an
        existing SIMA ``rois.pkl`` are converted); a set named ``label`` is
        replaced.
    label : str, optional
        Name of the set in the file. Default: ``rois.timestamp``.

    Raises
    ------
    ValueError
        For an invalid label (empty, ``'.'``, ``'..'`` or containing ``'/'``)
        or an existing file that is not an ROI file.

    Notes
    -----
    The new file is built beside ``path`` and moved over it only when
    complete, so a failure leaves any previous file unchanged.
    """
    path = os.fspath(path)
    import h5py

    if label is None:
        label = rois.timestamp
    name = str(label)
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid ROI set label {label!r} (empty, '.', '..' or contains '/')")
    old_h5 = old_legacy = False
    if os.path.exists(path) and os.path.getsize(path) > 0:
        if is_hdf5(path):
            old_h5 = True
        else:
            try:
                legacy = read_sima_roi_sets(path)
            except Exception as exc:
                raise ValueError(
                    f"{path} exists and is not an ROI file; refusing to overwrite it"
                ) from exc
            old_legacy = True

    with atomic_write(path) as tmp, h5py.File(tmp, "w", track_order=True) as out:
        out.attrs[_FILE_FORMAT_ATTR] = _FILE_FORMAT_NAME
        out.attrs["version"] = _GROUP_FORMAT_VERSION
        written = False

        def write_new() -> None:
            write_roilist_group(out.create_group(name, track_order=True), rois)

        if old_h5:
            with h5py.File(path, "r") as old:
                for key in old:
                    if key == name:
                        write_new()
                        written = True
                    elif isinstance(old[key], h5py.Group):
                        old.copy(old[key], out, name=key)
        elif old_legacy:
            for key, entry in legacy.items():
                if str(key) == name:
                    write_new()
                    written = True
                else:
                    rl = sima_roilist(entry, f"{path}:{key}")
                    grp = out.create_group(str(key), track_order=True)
                    write_roilist_group(grp, rl)
        if not written:
            write_new()

"""SIMA 1.x ROI files (``rois.pkl``): read only, through the restricted unpickler.

A SIMA ROI file is a pickled ``{label: {'rois': [roi dict, ...],
'timestamp': str}}``; each ROI dict has SIMA's keys (``mask`` or
``polygons``, ``label``, ``tags``, ``id``, ``im_shape``). The file is read by
:func:`sima_fast._legacy.legacy_load`, which refuses anything outside its
allow-list; nothing here writes a pickle. :mod:`sima_fast.io.native` reads
these files for ``fmt='pkl'``/``'h5'`` and converts them when a set is saved
over one.
"""

from __future__ import annotations

from typing import Any

import scipy.sparse

from sima_fast.ROI import ROI, ROIList

__all__ = ["read_sima_roi_sets", "sima_roilist"]


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

"""ImageJ ROI files: ``.roi`` files and ``.zip`` archives of them (format 'ImageJ').

Reading translates every ImageJ shape into an :class:`~sima_fast.ROI.ROI`
(see :func:`read_imagej`); writing stores each polygon of each ROI as one
polygon member of a zip (see :func:`write_imagej`). ``roifile`` is imported
by this module only, when a file is read or written.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse

from sima_fast._atomic import atomic_write
from sima_fast._timestamps import TIMESTAMP_FORMAT
from sima_fast._warnings import warn
from sima_fast.io._registry import roi_readers, roi_writers
from sima_fast.ROI import ROI, ROIList

__all__ = ["imagej_to_roi", "polygon_to_imagej", "read_imagej", "write_imagej"]


def _imagej_plane(iroi: Any) -> int:
    """Plane index of an ImageJ ROI (0 when no position is stored)."""
    if iroi.c_position > 0 or iroi.z_position > 0 or iroi.t_position > 0:
        return max(int(iroi.z_position) - 1, 0)
    return max(int(iroi.position) - 1, 0)


def _imagej_bounds(iroi: Any) -> tuple[float, float, float, float]:
    """``(left, top, width, height)`` of a rectangle or oval, sub-pixel if stored."""
    if iroi.subpixelrect:
        return float(iroi.xd), float(iroi.yd), float(iroi.widthd), float(iroi.heightd)
    return (
        float(iroi.left),
        float(iroi.top),
        float(iroi.right - iroi.left),
        float(iroi.bottom - iroi.top),
    )


def _shape_mask(
    bounds: tuple[float, float, float, float], z: int, inside: Callable[..., np.ndarray]
) -> list[scipy.sparse.csr_matrix]:
    """Mask planes ``0..z`` with ``inside(px, py)`` evaluated at pixel centres of plane z."""
    left, top, width, height = bounds
    n_rows = max(int(np.ceil(top + height)), 1)
    n_cols = max(int(np.ceil(left + width)), 1)
    plane = np.zeros((n_rows, n_cols), dtype=bool)
    x0, y0 = max(int(np.floor(left)), 0), max(int(np.floor(top)), 0)
    if width > 0 and height > 0 and x0 < n_cols and y0 < n_rows:
        px = np.arange(x0, n_cols, dtype=np.float64)[None, :] + 0.5
        py = np.arange(y0, n_rows, dtype=np.float64)[:, None] + 0.5
        plane[y0:, x0:] = inside(px, py)
    empty = scipy.sparse.csr_matrix((n_rows, n_cols), dtype=bool)
    return [empty.copy() for _ in range(z)] + [scipy.sparse.csr_matrix(plane)]


def _oval_mask(bounds: tuple[float, float, float, float], z: int) -> list:
    left, top, width, height = bounds
    a, b = width / 2.0, height / 2.0
    cx, cy = left + a, top + b

    def inside(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        return ((px - cx) / a) ** 2 + ((py - cy) / b) ** 2 <= 1.0

    return _shape_mask(bounds, z, inside)


def _rounded_rect_mask(bounds: tuple[float, float, float, float], arc: float, z: int) -> list:
    left, top, width, height = bounds
    rx, ry = min(arc, width) / 2.0, min(arc, height) / 2.0
    right, bottom = left + width, top + height

    def inside(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        in_rect = (px > left) & (px < right) & (py > top) & (py < bottom)
        dx = np.maximum(np.maximum(left + rx - px, px - (right - rx)), 0.0)
        dy = np.maximum(np.maximum(top + ry - py, py - (bottom - ry)), 0.0)
        return in_rect & ((dx / rx) ** 2 + (dy / ry) ** 2 <= 1.0)

    return _shape_mask(bounds, z, inside)


def imagej_to_roi(iroi: Any, label: str) -> ROI:
    """Translate one ImageJ ROI into an :class:`~sima_fast.ROI.ROI`.

    Parameters
    ----------
    iroi : roifile.ImagejRoi
        The ImageJ ROI.
    label : str
        The label of the new ROI.

    Returns
    -------
    ROI
        A polygon or mask ROI, as described in :func:`read_imagej`.

    Raises
    ------
    ValueError
        For text and image ROIs, shapes without any vertex or point, and
        unknown ROI types.
    """
    from roifile import ROI_SUBTYPE, ROI_TYPE

    z = _imagej_plane(iroi)
    rtype, subtype = iroi.roitype, iroi.subtype
    if subtype in (ROI_SUBTYPE.TEXT, ROI_SUBTYPE.IMAGE):
        raise ValueError(f"{subtype.name.lower()} ROIs have no area and are not supported")

    def ring(xy: Any) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return np.column_stack([xy, np.full(len(xy), float(z))])

    if iroi.composite:
        paths = [p for p in iroi.coordinates(multi=True) if len(p)]
        if not paths:
            raise ValueError("composite ROI without any path")
        return ROI(polygons=[ring(p) for p in paths], label=label)
    if rtype == ROI_TYPE.OVAL:
        return ROI(mask=_oval_mask(_imagej_bounds(iroi), z), label=label)
    if rtype == ROI_TYPE.RECT:
        left, top, width, height = bounds = _imagej_bounds(iroi)
        if iroi.rounded_rect_arc_size > 0 and width > 0 and height > 0:
            mask = _rounded_rect_mask(bounds, float(iroi.rounded_rect_arc_size), z)
            return ROI(mask=mask, label=label)
        corners = [
            [left, top],
            [left + width, top],
            [left + width, top + height],
            [left, top + height],
        ]
        return ROI(polygons=ring(corners), label=label)
    if rtype == ROI_TYPE.LINE:
        return ROI(polygons=ring([[iroi.x1, iroi.y1], [iroi.x2, iroi.y2]]), label=label)
    if rtype == ROI_TYPE.POINT:
        points = np.asarray(iroi.coordinates(), dtype=np.float64).reshape(-1, 2)
        if not len(points):
            raise ValueError("point ROI without any point")
        planes = np.full(len(points), z, dtype=np.int64)
        if iroi.counter_positions is not None and len(iroi.counter_positions) == len(points):
            pos = np.asarray(iroi.counter_positions, dtype=np.int64)
            planes = np.where(pos > 0, pos - 1, planes)
        squares = []
        for (x, y), pz in zip(np.floor(points), planes, strict=True):
            sq = [[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1]]
            squares.append(np.column_stack([sq, np.full(4, float(pz))]))
        return ROI(polygons=squares, label=label)
    if rtype in (
        ROI_TYPE.POLYGON,
        ROI_TYPE.FREEHAND,
        ROI_TYPE.TRACED,
        ROI_TYPE.POLYLINE,
        ROI_TYPE.FREELINE,
        ROI_TYPE.ANGLE,
    ):
        coords = iroi.coordinates()
        if not len(coords):
            raise ValueError(f"{rtype.name.lower()} ROI without any vertex")
        return ROI(polygons=ring(coords), label=label)
    raise ValueError(f"unsupported ImageJ ROI type {rtype.name}")


def _imagej_member(data: bytes, name: str, path: str) -> ROI:
    from roifile import ImagejRoi

    label = name[:-4] if name.lower().endswith(".roi") else name
    try:
        return imagej_to_roi(ImagejRoi.frombytes(data), label)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read ImageJ ROI member {name!r}: {exc}") from exc


@roi_readers.register("ImageJ")
def read_imagej(path: str | os.PathLike, label: str | None = None) -> ROIList:
    """Read the ROIs of an ImageJ ``.zip`` of ``.roi`` members or of one ``.roi`` file.

    Parameters
    ----------
    path : str or path-like
        An existing ``.zip`` or ``.roi`` file.
    label : str, optional
        Ignored: an ImageJ file holds a single set.

    Returns
    -------
    ROIList
        One ROI per member, in archive order, timestamped with the file's
        modification time.

    Raises
    ------
    ValueError
        For an unreadable zip file or an unsupported or corrupt member (the
        message names the member).

    Notes
    -----
    ImageJ shapes are translated as follows. Polygon, freehand, traced,
    polyline, freeline, angle, ellipse and rotated-rectangle ROIs become
    one polygon from their stored vertices (line types are read as
    closed rings); straight lines become two-vertex polygons (no area);
    composite ROIs give one polygon per sub-path (holes are not
    subtracted). Rectangles become a 4-vertex polygon (sub-pixel bounds
    when stored). Ovals become a boolean mask holding the pixels whose
    centre ``(x + 0.5, y + 0.5)`` satisfies
    ``((x + 0.5 - cx) / a)**2 + ((y + 0.5 - cy) / b)**2 <= 1`` for the
    ellipse inscribed in the bounding rectangle (ImageJ's OvalRoi mask
    rule); rounded rectangles likewise become the mask of pixels whose
    centre lies in the rectangle with elliptical corners of diameter
    ``rounded_rect_arc_size``. Each point of a point ROI becomes the unit
    square of the pixel containing it (plane from the point's counter
    position when stored). Mask planes from ImageJ are sized to the
    shape's bounding box and are cropped or padded once ``im_shape`` is
    set. The plane is ``z_position - 1`` for hyperstack ROIs, else
    ``position - 1``, else 0. Labels are the member names without
    ``.roi`` (the file stem for a single ``.roi``); ids are None.
    """
    path = os.fspath(path)
    rois: list[ROI] = []
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    if info.is_dir():
                        continue
                    try:
                        data = zf.read(info)
                    except Exception as exc:
                        raise ValueError(
                            f"{path}: cannot read ImageJ ROI member {info.filename!r}: {exc}"
                        ) from exc
                    rois.append(_imagej_member(data, info.filename, path))
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{path}: not a readable ImageJ ROI zip file ({exc})") from exc
    elif path.lower().endswith(".zip"):
        raise ValueError(f"{path}: not a readable ImageJ ROI zip file")
    else:
        with open(path, "rb") as fh:
            data = fh.read()
        rois.append(_imagej_member(data, os.path.basename(path), path))
    out = ROIList(rois)
    out.timestamp = time.strftime(TIMESTAMP_FORMAT, time.localtime(os.path.getmtime(path)))
    return out


def _unique_names(labels: list[Any]) -> list[str]:
    """Member names: the label, with ``-1``, ``-2``, ... for repeats and None."""
    used: set[str] = set()
    names = []
    for label in labels:
        base = "roi" if label is None else str(label)
        name = base
        if label is None or name in used:
            k = 1
            while f"{base}-{k}" in used:
                k += 1
            name = f"{base}-{k}"
        used.add(name)
        names.append(name)
    return names


def polygon_to_imagej(ring: np.ndarray, name: str, position: int | None) -> Any:
    """One polygon as an ImageJ polygon ROI.

    Parameters
    ----------
    ring : numpy.ndarray
        ``(N, 2)`` or ``(N, 3)`` vertices; only ``x`` and ``y`` are used.
    name : str
        The ROI name stored in the ImageJ ROI.
    position : int or None
        The stored ``position`` (plane + 1), or None for none.

    Returns
    -------
    roifile.ImagejRoi
        Integer coordinates when every vertex is integral and within
        ImageJ's integer range, else 32-bit float (sub-pixel) coordinates.
    """
    from roifile import ROI_TYPE, ImagejRoi

    xy = ring[:, :2]
    integral = np.all(xy == np.round(xy)) and np.all(xy >= -5000) and np.all(xy <= 60535)
    points = xy.astype(np.int64) if integral else xy
    iroi = ImagejRoi.frompoints(points, name=name, position=position)
    iroi.roitype = ROI_TYPE.POLYGON
    return iroi


@roi_writers.register("ImageJ")
def write_imagej(rois: ROIList, path: str | os.PathLike, label: str | None = None) -> None:
    """Write ROIs as an ImageJ ``.zip`` of polygon ``.roi`` members, atomically.

    Parameters
    ----------
    rois : ROIList
        The ROIs to write.
    path : str or path-like
        The destination zip file.
    label : str, optional
        Ignored: an ImageJ file holds a single set.

    Raises
    ------
    ValueError
        If an ROI has a weighted mask (no polygon equivalent).

    Notes
    -----
    Each member is named ``<label>.roi``; a repeated label gets ``-1``,
    ``-2``, ... appended, and a missing label is written as ``roi-1``,
    ``roi-2``, .... Mask ROIs are written as their contour polygons. When
    any polygon of the set lies on a plane other than 0, every member stores
    ``position = z + 1``. Coordinates are stored as integers when integral,
    otherwise as 32-bit floats (sub-pixel resolution). Mask ROIs with no
    pixels are skipped with a warning. The zip is built beside ``path`` and
    moved over it only when complete.
    """
    path = os.fspath(path)
    entries: list[tuple[Any, np.ndarray]] = []
    for roi in rois:
        rings = roi.polygons
        if not rings:
            warn(f"ROI {roi.label!r} has an empty mask; it is not written to the ImageJ file")
        entries.extend((roi.label, r) for r in rings)
    multi_plane = any(r[0, 2] != 0 for _, r in entries)
    names = _unique_names([lab for lab, _ in entries])
    with (
        atomic_write(path, suffix=".zip") as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        for name, (_, ring) in zip(names, entries, strict=True):
            position = int(ring[0, 2]) if multi_plane else None
            iroi = polygon_to_imagej(ring, name, position)
            zf.writestr(name + ".roi", iroi.tobytes())

"""ImageJ ROI files: ``.roi`` files and ``.zip`` archives of them (format 'ImageJ').

Reading translates every ImageJ shape into an :class:`~sima_fast.ROI.ROI`
(see :func:`read_imagej`); writing stores each polygon of each ROI as one
polygon member of a zip (see :func:`write_imagej`). ``roifile`` is imported
by this module only, when a file is read or written.

Reading is bounded, so a small hostile file cannot demand much memory or
time: a single ``.roi`` file or zip member may hold at most
:data:`IMAGEJ_MAX_MEMBER_BYTES` bytes (checked against the zip's declared
size and again while decompressing), a zip at most
:data:`IMAGEJ_MAX_MEMBERS` members and :data:`IMAGEJ_MAX_TOTAL_BYTES`
bytes in all, and an oval or rounded rectangle read without a frame shape
may span at most :data:`IMAGEJ_MAX_MASK_PIXELS` pixels. Going over a limit
raises :class:`ImageJLimitError`, naming the file, the member and the size.
"""

from __future__ import annotations

import os
import re
import time
import unicodedata
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

__all__ = [
    "IMAGEJ_MAX_MASK_PIXELS",
    "IMAGEJ_MAX_MEMBERS",
    "IMAGEJ_MAX_MEMBER_BYTES",
    "IMAGEJ_MAX_TOTAL_BYTES",
    "ImageJLimitError",
    "imagej_member_stem",
    "imagej_to_roi",
    "polygon_to_imagej",
    "read_imagej",
    "write_imagej",
]

IMAGEJ_MAX_MEMBER_BYTES = 16 * 2**20
"""Largest ``.roi`` file or zip member read, in (uncompressed) bytes: 16 MiB.

An ImageJ ROI takes 64-128 header bytes plus 4-12 bytes per vertex, so
this allows polygons of more than a million vertices."""

IMAGEJ_MAX_MEMBERS = 100_000
"""Most members read from one ImageJ zip."""

IMAGEJ_MAX_TOTAL_BYTES = 256 * 2**20
"""Most bytes decompressed from one ImageJ zip, over all members: 256 MiB."""

IMAGEJ_MAX_MASK_PIXELS = 2**24
"""Most pixels of an oval or rounded-rectangle mask read without a frame shape.

Without ``im_shape`` such a mask spans planes ``0..z`` and rows and columns
from 0 to the bottom-right corner of the shape's bounding box; the product
``(z + 1) * rows * columns`` may be at most 16,777,216 (a 4096 × 4096
plane). With ``im_shape`` the mask is clipped to the frame and not capped."""


class ImageJLimitError(ValueError):
    """An ImageJ ROI file, zip member or shape exceeds one of the reading limits."""


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
    bounds: tuple[float, float, float, float],
    z: int,
    inside: Callable[..., np.ndarray],
    im_shape: tuple[int, int, int] | None,
) -> list[scipy.sparse.csr_matrix]:
    """Mask planes ``0..z`` with ``inside(px, py)`` evaluated at pixel centres of plane z.

    Planes are ``im_shape[1:]`` when given (the shape clipped to the frame),
    else they reach from the origin to the bounding box's far corner (at
    most :data:`IMAGEJ_MAX_MASK_PIXELS` pixels in all). Only the bounding
    box, clipped to the plane, is evaluated, a block of rows at a time, so
    memory follows the pixels inside the clipped box.

    Returns
    -------
    list of scipy.sparse.csr_matrix
    """
    left, top, width, height = bounds
    if not np.all(np.isfinite(bounds)):
        raise ValueError(f"the bounding box {bounds} is not finite")
    if im_shape is not None:
        n_planes, n_rows, n_cols = im_shape
        if z >= n_planes:
            raise ValueError(
                f"the shape is on plane {z}, outside the {n_planes} plane(s) of "
                f"im_shape {im_shape}"
            )
    else:
        n_rows = max(int(np.ceil(top + height)), 1)
        n_cols = max(int(np.ceil(left + width)), 1)
        declared = (z + 1) * n_rows * n_cols
        if declared > IMAGEJ_MAX_MASK_PIXELS:
            raise ImageJLimitError(
                f"its mask would span {z + 1} plane(s) of {n_rows} x {n_cols} pixels "
                f"({declared} pixels), more than IMAGEJ_MAX_MASK_PIXELS = "
                f"{IMAGEJ_MAX_MASK_PIXELS}; pass the frame shape (ROIList.load(..., "
                f"im_shape=...)) to clip the shape to the frame"
            )
    x0, y0 = max(int(np.floor(left)), 0), max(int(np.floor(top)), 0)
    x1 = min(int(np.ceil(left + width)), n_cols) if width > 0 else x0
    y1 = min(int(np.ceil(top + height)), n_rows) if height > 0 else y0
    counts = np.zeros(n_rows, dtype=np.int64)
    columns: list[np.ndarray] = []
    if x1 > x0 and y1 > y0:
        px = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
        step = max(1, 2**20 // (x1 - x0))
        for r0 in range(y0, y1, step):
            r1 = min(r0 + step, y1)
            py = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5
            block = np.broadcast_to(inside(px, py), (r1 - r0, x1 - x0))
            counts[r0:r1] = block.sum(axis=1)
            columns.append((np.nonzero(block)[1] + x0).astype(np.int32))
    indices = np.concatenate(columns) if columns else np.zeros(0, np.int32)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    plane = scipy.sparse.csr_matrix(
        (np.ones(len(indices), dtype=bool), indices, indptr), shape=(n_rows, n_cols)
    )
    empty = scipy.sparse.csr_matrix((n_rows, n_cols), dtype=bool)
    return [empty.copy() for _ in range(z)] + [plane]


def _oval_mask(
    bounds: tuple[float, float, float, float], z: int, im_shape: tuple[int, int, int] | None
) -> list:
    left, top, width, height = bounds
    a, b = width / 2.0, height / 2.0
    cx, cy = left + a, top + b

    def inside(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        return ((px - cx) / a) ** 2 + ((py - cy) / b) ** 2 <= 1.0

    return _shape_mask(bounds, z, inside, im_shape)


def _rounded_rect_mask(
    bounds: tuple[float, float, float, float],
    arc: float,
    z: int,
    im_shape: tuple[int, int, int] | None,
) -> list:
    left, top, width, height = bounds
    rx, ry = min(arc, width) / 2.0, min(arc, height) / 2.0
    right, bottom = left + width, top + height

    def inside(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        in_rect = (px > left) & (px < right) & (py > top) & (py < bottom)
        dx = np.maximum(np.maximum(left + rx - px, px - (right - rx)), 0.0)
        dy = np.maximum(np.maximum(top + ry - py, py - (bottom - ry)), 0.0)
        return in_rect & ((dx / rx) ** 2 + (dy / ry) ** 2 <= 1.0)

    return _shape_mask(bounds, z, inside, im_shape)


def imagej_to_roi(iroi: Any, label: str, im_shape: Any = None) -> ROI:
    """Translate one ImageJ ROI into an :class:`~sima_fast.ROI.ROI`.

    Parameters
    ----------
    iroi : roifile.ImagejRoi
        The ImageJ ROI.
    label : str
        The label of the new ROI.
    im_shape : tuple of int, optional
        ``(Z, Y, X)`` or ``(Y, X)`` of the frame. Ovals and rounded
        rectangles are then rasterised within the frame only (clipped to
        it); without it their mask is capped at
        :data:`IMAGEJ_MAX_MASK_PIXELS`.

    Returns
    -------
    ROI
        A polygon or mask ROI, as described in :func:`read_imagej`.

    Raises
    ------
    ImageJLimitError
        If, without ``im_shape``, an oval or rounded rectangle would need a
        mask of more than :data:`IMAGEJ_MAX_MASK_PIXELS` pixels.
    ValueError
        For text and image ROIs, shapes without any vertex or point, unknown
        ROI types, non-finite coordinates, and (with ``im_shape``) a mask
        shape on a plane outside the frame.
    """
    from roifile import ROI_SUBTYPE, ROI_TYPE

    from sima_fast.ROI import normalise_im_shape

    shape = normalise_im_shape(im_shape)
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
        return ROI(mask=_oval_mask(_imagej_bounds(iroi), z, shape), label=label)
    if rtype == ROI_TYPE.RECT:
        left, top, width, height = bounds = _imagej_bounds(iroi)
        if iroi.rounded_rect_arc_size > 0 and width > 0 and height > 0:
            mask = _rounded_rect_mask(bounds, float(iroi.rounded_rect_arc_size), z, shape)
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


def _member_label(iroi: Any, stem: str) -> str:
    """Give a member's label: its stored ImageJ name when the file name was made from it.

    :func:`write_imagej` stores each label in the ROI's name field and
    names the member after :func:`imagej_member_stem` of it, possibly with
    ``-<k>`` appended; such a member gets its stored name back. Any other
    member (e.g. one whose name field holds an identifier ImageJ or roifile
    made up) is labelled by its file name without ``.roi``.

    Returns
    -------
    str
    """
    name = iroi.name if isinstance(iroi.name, str) else ""
    if name:
        base = imagej_member_stem(name)
        if stem == base or re.fullmatch(re.escape(base) + r"-\d+", stem):
            return name
    return stem


def _imagej_member(
    data: bytes, name: str, path: str, im_shape: tuple[int, int, int] | None
) -> ROI:
    from roifile import ImagejRoi

    stem = name[:-4] if name.lower().endswith(".roi") else name
    try:
        iroi = ImagejRoi.frombytes(data)
        return imagej_to_roi(iroi, _member_label(iroi, stem), im_shape)
    except ImageJLimitError as exc:
        raise ImageJLimitError(f"{path}: ImageJ ROI member {name!r}: {exc}") from None
    except Exception as exc:
        raise ValueError(f"{path}: cannot read ImageJ ROI member {name!r}: {exc}") from exc


def _read_capped(fh: Any, path: str, name: str) -> bytes:
    """Read at most :data:`IMAGEJ_MAX_MEMBER_BYTES` bytes, refusing anything longer.

    Reads 64 KiB at a time: one large ``read(n)`` of a zip member would let
    the decompressor produce up to ``n`` bytes at once, whatever the member
    declares.

    Returns
    -------
    bytes
    """
    limit = IMAGEJ_MAX_MEMBER_BYTES
    chunks: list[bytes] = []
    total = 0
    while chunk := fh.read(min(2**16, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise ImageJLimitError(
                f"{path}: ImageJ ROI member {name!r} holds more than IMAGEJ_MAX_MEMBER_BYTES = "
                f"{limit} bytes"
            )
    return b"".join(chunks)


def _read_zip_members(path: str) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of every file member of an ImageJ zip, within the limits."""
    out: list[tuple[str, bytes]] = []
    total = 0
    with zipfile.ZipFile(path) as zf:
        infos = [info for info in zf.infolist() if not info.is_dir()]
        if len(infos) > IMAGEJ_MAX_MEMBERS:
            raise ImageJLimitError(
                f"{path}: the ImageJ zip has {len(infos)} members, more than "
                f"IMAGEJ_MAX_MEMBERS = {IMAGEJ_MAX_MEMBERS}"
            )
        for info in infos:
            name = info.filename
            if info.file_size > IMAGEJ_MAX_MEMBER_BYTES:
                raise ImageJLimitError(
                    f"{path}: ImageJ ROI member {name!r} declares {info.file_size} bytes, "
                    f"more than IMAGEJ_MAX_MEMBER_BYTES = {IMAGEJ_MAX_MEMBER_BYTES}"
                )
            try:
                with zf.open(info) as fh:
                    # read in bounded steps: the declared size may lie
                    data = _read_capped(fh, path, name)
            except ImageJLimitError:
                raise
            except Exception as exc:
                raise ValueError(f"{path}: cannot read ImageJ ROI member {name!r}: {exc}") from exc
            total += len(data)
            if total > IMAGEJ_MAX_TOTAL_BYTES:
                raise ImageJLimitError(
                    f"{path}: the ImageJ zip's members hold more than IMAGEJ_MAX_TOTAL_BYTES = "
                    f"{IMAGEJ_MAX_TOTAL_BYTES} bytes (reached at member {name!r})"
                )
            out.append((name, data))
    return out


@roi_readers.register("ImageJ")
def read_imagej(
    path: str | os.PathLike, label: str | None = None, im_shape: Any = None
) -> ROIList:
    """Read the ROIs of an ImageJ ``.zip`` of ``.roi`` members or of one ``.roi`` file.

    Parameters
    ----------
    path : str or path-like
        An existing ``.zip`` or ``.roi`` file.
    label : str, optional
        Ignored: an ImageJ file holds a single set.
    im_shape : tuple of int, optional
        ``(Z, Y, X)`` or ``(Y, X)`` of the frames the ROIs belong to: ovals
        and rounded rectangles are rasterised within it only (clipped to
        the frame). The ROIs' own ``im_shape`` is left unset (see
        :meth:`sima_fast.ROI.ROIList.load`, which sets it).

    Returns
    -------
    ROIList
        One ROI per member, in archive order, timestamped with the file's
        modification time.

    Raises
    ------
    ImageJLimitError
        (a ValueError) If the file or a member is larger than
        :data:`IMAGEJ_MAX_MEMBER_BYTES` (declared or actual), the zip has
        more than :data:`IMAGEJ_MAX_MEMBERS` members or more than
        :data:`IMAGEJ_MAX_TOTAL_BYTES` bytes in all, or, without
        ``im_shape``, a shape's mask would exceed
        :data:`IMAGEJ_MAX_MASK_PIXELS`. The message names the file, the
        member and the size.
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
    position when stored). Without ``im_shape``, mask planes from ImageJ
    are sized to the shape's bounding box (capped at
    :data:`IMAGEJ_MAX_MASK_PIXELS`); with it they are the frame's size and
    hold the pixels of the shape inside the frame (reading with
    ``im_shape`` gives the same mask as reading without and setting
    ``roi.im_shape`` afterwards). Polygons are not clipped. The plane is
    ``z_position - 1`` for hyperstack ROIs, else ``position - 1``, else 0.
    Labels are the member names without ``.roi`` (the file stem for a
    single ``.roi``), except for members written by :func:`write_imagej`,
    which get back the label kept in the ROI's name field (see
    :func:`write_imagej`); ids are None.
    """
    from sima_fast.ROI import normalise_im_shape

    path = os.fspath(path)
    shape = normalise_im_shape(im_shape)
    rois: list[ROI] = []
    if zipfile.is_zipfile(path):
        try:
            members = _read_zip_members(path)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{path}: not a readable ImageJ ROI zip file ({exc})") from exc
        rois.extend(_imagej_member(data, name, path, shape) for name, data in members)
    elif path.lower().endswith(".zip"):
        raise ValueError(f"{path}: not a readable ImageJ ROI zip file")
    else:
        name = os.path.basename(path)
        size = os.path.getsize(path)
        if size > IMAGEJ_MAX_MEMBER_BYTES:
            raise ImageJLimitError(
                f"{path}: the ImageJ ROI file holds {size} bytes, more than "
                f"IMAGEJ_MAX_MEMBER_BYTES = {IMAGEJ_MAX_MEMBER_BYTES}"
            )
        with open(path, "rb") as fh:
            data = _read_capped(fh, path, name)
        rois.append(_imagej_member(data, name, path, shape))
    out = ROIList(rois)
    out.timestamp = time.strftime(TIMESTAMP_FORMAT, time.localtime(os.path.getmtime(path)))
    return out


_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{d}{k}" for d in ("COM", "LPT") for k in range(1, 10)]
)
_MEMBER_STEM_BYTES = 200


def imagej_member_stem(label: Any) -> str:
    r"""Make a safe zip member name (without ``.roi``) from an ROI label.

    The result is one plain file name on every common file system, so
    unpacking the zip anywhere cannot write outside the destination folder:
    path separators (``/``, ``\``), the characters ``: * ? " < > |``,
    control and other non-printing characters (including NUL) become
    ``_``; runs of two or more dots become ``_`` (no ``..``); leading and
    trailing dots and spaces are removed (no hidden or ``.`` names) and a
    name made only of replaced characters is dropped; Windows device names
    (``CON``, ``NUL``, ``COM1``, ..., also with an extension) get ``_``
    after the device name; the result is cut to at most 200 UTF-8 bytes;
    an empty result becomes ``roi``. Ordinary labels (letters, digits,
    spaces, ``-``, ``_``, single dots) are kept unchanged.

    Parameters
    ----------
    label : object
        The label (None and non-strings are turned into text with ``str``).

    Returns
    -------
    str
        The member name stem.

    Examples
    --------
    >>> imagej_member_stem('../../evil'), imagej_member_stem('/abs/path')
    ('____evil', '_abs_path')
    >>> imagej_member_stem('cell 3'), imagej_member_stem('\x00'), imagej_member_stem('con')
    ('cell 3', 'roi', 'con_')
    """
    text = "roi" if label is None else str(label)
    chars = [
        "_" if c in '/\\:*?"<>|' or unicodedata.category(c).startswith("C") else c for c in text
    ]
    stem = re.sub(r"\.{2,}", "_", "".join(chars)).strip(" .")
    stem = stem.encode("utf-8")[:_MEMBER_STEM_BYTES].decode("utf-8", "ignore").rstrip(" .")
    if not stem.strip("_"):
        stem = ""  # nothing but replaced characters
    head, dot, tail = stem.partition(".")
    if head.rstrip(" ").upper() in _WINDOWS_DEVICES:
        stem = f"{head}_{dot}{tail}"
    return stem or "roi"


def _unique_names(labels: list[Any]) -> list[tuple[str, str]]:
    """Give the stored name and the member stem of each entry.

    The stored name is the label, with ``-1``, ``-2``, ... for repeats and
    None; the member stem is :func:`imagej_member_stem` of it, with
    ``-1``, ``-2``, ... added if it is already taken (compared without
    case, as on case-insensitive file systems).

    Returns
    -------
    list of (str, str)
    """
    used: set[str] = set()
    taken: set[str] = set()
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
        stem_base = imagej_member_stem(name)
        stem, k = stem_base, 0
        while stem.casefold() in taken:
            k += 1
            stem = f"{stem_base}-{k}"
        taken.add(stem.casefold())
        names.append((name, stem))
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
    Each polygon is stored under a name made from its ROI's label: the
    label itself, with ``-1``, ``-2``, ... appended to a repeated label,
    and ``roi-1``, ``roi-2``, ... for a missing one. That name is kept in
    the ImageJ ROI's name field, and the member is named
    ``<imagej_member_stem(name)>.roi`` (path separators, ``..``, control
    characters and other unsafe characters replaced; ``-1``, ``-2``, ...
    appended if two members would otherwise share a name, ignoring case),
    so member names are always plain, unique file names.
    :func:`read_imagej` gives such members their stored name back as the
    label, so any string label round-trips. Mask ROIs are written as their
    contour polygons. When
    any polygon of the set lies on a plane other than 0, every member stores
    ``position = z + 1``. Coordinates are stored as integers when integral,
    otherwise as 32-bit floats (sub-pixel resolution). Mask ROIs with no
    pixels are skipped with a warning. The zip is built beside ``path`` and
    moved over it only when complete.
    """
    path = os.fspath(path)
    entries: list[tuple[Any, np.ndarray]] = []
    for roi in rois:
        rings = roi.rings
        if not rings:
            warn(f"ROI {roi.label!r} has an empty mask; it is not written to the ImageJ file")
        entries.extend((roi.label, r) for r in rings)
    multi_plane = any(r[0, 2] != 0 for _, r in entries)
    names = _unique_names([lab for lab, _ in entries])
    with (
        atomic_write(path, suffix=".zip") as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        for (name, stem), (_, ring) in zip(names, entries, strict=True):
            position = int(ring[0, 2]) if multi_plane else None
            iroi = polygon_to_imagej(ring, name, position)
            zf.writestr(stem + ".roi", iroi.tobytes())

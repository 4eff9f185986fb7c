"""Regions of interest (ROIs) and named sets of them.

An :class:`ROI` is either a set of planar polygons or a per-plane mask
(boolean or weighted); a :class:`ROIList` is an ordered collection of ROIs with
a timestamp. :meth:`ROIList.load` and :meth:`ROIList.save` read and write
files through the format registries of :mod:`sima_fast.io` (built in:
sima_fast's own HDF5 files, SIMA 1.x ``rois.pkl`` files, read only, and
ImageJ ``.roi``/``.zip`` files).

Coordinates follow one convention throughout: polygon vertices are
``(x, y, z)``, pixel ``(y, x)`` covers the square ``[x, x + 1) × [y, y + 1)``
and ``z`` is the plane index. A pixel belongs to a polygon iff its centre is
strictly inside the polygon (see :mod:`sima_fast._geometry`).

Outlines are given as SIMA gives them, as shapely ``MultiPolygon`` objects with
``z`` as third coordinate (:attr:`ROI.polygons`, :func:`mask2poly`), and as
vertex arrays (:attr:`ROI.rings`, :func:`mask2rings`). shapely is imported
only when geometry is computed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse

from sima_fast._geometry import polygon_to_mask
from sima_fast._timestamps import current_timestamp

__all__ = [
    "ROI",
    "NonBooleanMask",
    "ROIList",
    "check_mask_in_frame",
    "mask2poly",
    "mask2rings",
    "poly2mask",
    "rings_to_multipolygon",
]


class NonBooleanMask(ValueError):
    """A weighted (non-boolean) mask was asked for its polygon outline.

    Raised by :attr:`ROI.polygons` (and :attr:`ROI.rings`, :attr:`ROI.coords`)
    for a mask whose non-zero values are not all 1: such a mask has no
    polygon equivalent. It is a :class:`ValueError`.
    """


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def normalise_im_shape(im_shape: Any) -> tuple[int, int, int] | None:
    """Check an image shape and give it as ``(Z, Y, X)``.

    Parameters
    ----------
    im_shape : tuple of int or None
        ``(Y, X)`` or ``(Z, Y, X)`` positive integers (integral floats are
        accepted); a 2-tuple means one plane.

    Returns
    -------
    tuple of int or None
        ``(Z, Y, X)``, or None when ``im_shape`` is None.

    Raises
    ------
    TypeError
        If it is not a sequence of integers.
    ValueError
        If it has not 2 or 3 entries, or an entry is not positive.
    """
    if im_shape is None:
        return None
    try:
        values = tuple(im_shape)
    except TypeError:
        raise TypeError(f"im_shape must be a 2- or 3-tuple of ints, got {im_shape!r}") from None
    if len(values) not in (2, 3):
        raise ValueError(f"im_shape must have 2 or 3 entries, got {len(values)}: {im_shape!r}")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            if isinstance(v, (float, np.floating)) and float(v).is_integer():
                v = int(v)
            else:
                raise TypeError(f"im_shape entries must be integers, got {im_shape!r}")
        if int(v) <= 0:
            raise ValueError(f"im_shape entries must be positive, got {im_shape!r}")
        out.append(int(v))
    if len(out) == 2:
        out.insert(0, 1)
    return (out[0], out[1], out[2])


def _normalise_tags(tags: Any) -> set[str]:
    if tags is None:
        return set()
    if isinstance(tags, str):
        return {tags}
    result = set()
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"ROI tags must be strings, got {tag!r}")
        result.add(tag)
    return result


def _as_vertex_array(poly: Any) -> np.ndarray:
    """One polygon as an open ``(N, 3)`` float64 ring on a single plane."""
    arr = np.array(poly, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3) or arr.shape[0] == 0:
        raise ValueError(
            f"a polygon must be an (N, 2) or (N, 3) array of vertices, got shape {arr.shape}"
        )
    if arr.shape[1] == 2:
        arr = np.column_stack([arr, np.zeros(len(arr))])
    if not np.all(np.isfinite(arr)):
        raise ValueError("polygon vertices must be finite")
    z = arr[:, 2]
    if np.any(z != z[0]):
        raise ValueError(
            f"each polygon must lie on one plane, got z values {np.unique(z).tolist()}"
        )
    if not float(z[0]).is_integer():
        raise ValueError(f"polygon plane index z must be an integer, got {z[0]}")
    if len(arr) > 1 and np.array_equal(arr[0], arr[-1]):
        arr = arr[:-1]
    return np.ascontiguousarray(arr)


def _is_shapely(obj: Any) -> bool:
    return type(obj).__module__.startswith("shapely.")


def _shapely_rings(geom: Any) -> list[np.ndarray]:
    """Open ``(N, 3)`` exterior rings of a shapely Polygon or MultiPolygon (z 0 when absent)."""
    import warnings

    import shapely

    if geom.geom_type == "Polygon":
        parts = [geom]
    elif geom.geom_type == "MultiPolygon":
        parts = list(geom.geoms)
    else:
        raise TypeError(
            f"ROI polygons must be shapely Polygons or MultiPolygons, got a {geom.geom_type}"
        )
    rings = []
    for part in parts:
        if part.is_empty:
            continue
        if len(part.interiors):
            warnings.warn(
                "an ROI polygon has holes; ROIs keep exterior rings only, so the holes are "
                "filled (as in SIMA)",
                UserWarning,
                stacklevel=4,
            )
        xyz = shapely.get_coordinates(part.exterior, include_z=True)
        if not part.has_z:
            xyz[:, 2] = 0.0
        rings.append(xyz)
    return rings


def _normalise_polygons(polygons: Any) -> list[np.ndarray]:
    """Accept vertex arrays or shapely polygons (one or a sequence); return open rings."""
    if _is_shapely(polygons):
        candidates: Iterable[Any] = _shapely_rings(polygons)
    elif isinstance(polygons, (list, tuple)) and any(_is_shapely(p) for p in polygons):
        candidates = []
        for p in polygons:
            candidates.extend(_shapely_rings(p) if _is_shapely(p) else [p])
    elif isinstance(polygons, np.ndarray) and polygons.dtype != object:
        candidates = [polygons] if polygons.ndim == 2 else list(polygons)
    else:
        try:
            arr = np.asarray(polygons, dtype=np.float64)
        except (ValueError, TypeError):
            arr = None
        if arr is not None and arr.ndim == 2:
            candidates = [arr]
        elif arr is not None and arr.ndim == 3:
            candidates = list(arr)
        else:
            candidates = list(polygons)
    result = [_as_vertex_array(p) for p in candidates]
    if not result:
        raise ValueError("an ROI needs at least one polygon")
    return result


def _as_csr(plane: Any) -> scipy.sparse.csr_matrix:
    if scipy.sparse.issparse(plane):
        m = scipy.sparse.csr_matrix(plane, copy=True)
    else:
        dense = np.asarray(plane)
        if dense.ndim != 2:
            raise ValueError(f"each mask plane must be 2-D, got shape {dense.shape}")
        m = scipy.sparse.csr_matrix(dense)
    if m.ndim != 2:
        raise ValueError("each mask plane must be 2-D")
    m.eliminate_zeros()
    m.sort_indices()
    return m


def _normalise_mask(mask: Any) -> list[scipy.sparse.csr_matrix]:
    if scipy.sparse.issparse(mask):
        planes: list[Any] = [mask]
    elif isinstance(mask, np.ndarray):
        if mask.ndim == 2:
            planes = [mask]
        elif mask.ndim == 3:
            planes = list(mask)
        else:
            raise ValueError(f"a mask array must be 2-D or 3-D (Z, Y, X), got shape {mask.shape}")
    else:
        planes = list(mask)
    if not planes:
        raise ValueError("a mask needs at least one plane")
    out = [_as_csr(p) for p in planes]
    shapes = {m.shape for m in out}
    if len(shapes) != 1:
        raise ValueError(f"all mask planes must have the same shape, got {sorted(shapes)}")
    if any(m.dtype.kind not in "biuf" for m in out):
        raise TypeError("mask values must be boolean, integer or floating point")
    return out


def _resize_plane(plane: scipy.sparse.csr_matrix, shape: tuple[int, int]):
    """Crop or zero-pad one sparse plane to ``shape`` (top-left aligned)."""
    if plane.shape == shape:
        return plane.copy()
    coo = plane.tocoo()
    keep = (coo.row < shape[0]) & (coo.col < shape[1])
    return scipy.sparse.csr_matrix(
        (coo.data[keep], (coo.row[keep], coo.col[keep])), shape=shape, dtype=plane.dtype
    )


def check_mask_in_frame(roi: Any, im_shape: Any, name: str) -> None:
    """Refuse a mask ROI with non-zero weight outside a frame.

    Only non-zero content counts: a mask larger than the frame whose extra
    rows, columns or planes are all zero passes (setting ``im_shape`` crops
    them without loss). Polygon ROIs always pass (their vertices are checked
    where they are rasterised).

    Parameters
    ----------
    roi : ROI
        The ROI to check; its mask is checked as given, whatever its own
        ``im_shape``.
    im_shape : tuple of int
        ``(Z, Y, X)`` or ``(Y, X)`` of the frames.
    name : str
        How to name the ROI in the message (e.g. ``"rois[3] (label 'a')"``).

    Raises
    ------
    ValueError
        If a non-zero weight lies on a plane ``>= Z``, a row ``>= Y`` or a
        column ``>= X``; the message names the ROI, the plane, the mask
        shape, the frame shape and the farthest row and column reached.

    Examples
    --------
    >>> m = np.zeros((4, 4), bool)
    >>> m[3, 0] = True
    >>> check_mask_in_frame(ROI(mask=m), (4, 2), "rois[0]")
    >>> check_mask_in_frame(ROI(mask=m), (3, 4), "rois[0]")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: rois[0]: mask plane 0 of shape (4, 4) does not fit frames of ... row 3, column 0
    """
    if not isinstance(roi, ROI) or roi._mask is None:
        return
    shape = normalise_im_shape(im_shape)
    if shape is None:
        raise ValueError("check_mask_in_frame needs im_shape")
    n_planes, rows, cols = shape
    for z, plane in enumerate(roi._mask):
        if plane.nnz == 0:
            continue
        last_row = int(np.flatnonzero(np.diff(plane.indptr))[-1])
        last_col = int(plane.indices.max())
        if z >= n_planes or last_row >= rows or last_col >= cols:
            raise ValueError(
                f"{name}: mask plane {z} of shape {plane.shape} does not fit frames of "
                f"(Z, Y, X) = {shape}: it has non-zero weight up to row {last_row}, "
                f"column {last_col}"
            )


# --------------------------------------------------------------------------
# Mask <-> polygon conversion
# --------------------------------------------------------------------------


def _mask_planes_dense(mask: Any) -> list[np.ndarray]:
    """Give a 2-D or 3-D mask (dense, sparse, or a list of planes) as dense float planes."""
    if scipy.sparse.issparse(mask):
        planes: list[Any] = [mask]
    elif isinstance(mask, np.ndarray):
        if mask.ndim not in (2, 3):
            raise ValueError(f"a mask must be 2-D (Y, X) or 3-D (Z, Y, X), got shape {mask.shape}")
        planes = [mask] if mask.ndim == 2 else list(mask)
    else:
        planes = list(mask)
    out = []
    for plane in planes:
        dense = plane.toarray() if scipy.sparse.issparse(plane) else np.asarray(plane)
        if dense.ndim != 2:
            raise ValueError(f"each mask plane must be 2-D, got shape {dense.shape}")
        if dense.dtype.kind not in "biuf":
            raise TypeError("mask values must be boolean, integer or floating point")
        out.append(dense.astype(np.float64))
    return out


def mask2rings(mask: Any, threshold: float = 0.5) -> list[np.ndarray]:
    """Outline a mask as open vertex rings (the array form of :func:`mask2poly`).

    Parameters
    ----------
    mask : array_like, scipy.sparse matrix or list of them
        A ``(Y, X)`` plane (plane 0) or a ``(Z, Y, X)`` stack / list of
        planes.
    threshold : float, optional
        Contour level; 0.5 outlines a boolean mask.

    Returns
    -------
    list of numpy.ndarray
        Open rings, each an ``(N, 3)`` float array of ``(x, y, z)``
        vertices, in the order and with the vertices of :func:`mask2poly`'s
        polygons (without the closing vertex).

    Raises
    ------
    ValueError
        If a plane is not 2-D.
    TypeError
        If the mask is not numeric.

    Examples
    --------
    >>> mask2rings(np.array([[True]]))[0][:, :2].tolist()
    [[0.5, 1.0], [0.0, 0.5], [0.5, 0.0], [1.0, 0.5]]
    """
    return [
        np.asarray(p.exterior.coords)[:-1]
        for p in _mask_polygons(_mask_planes_dense(mask), float(threshold))
    ]


def _mask_polygons(planes: list[np.ndarray], threshold: float) -> list:
    """Outline each plane at ``threshold`` as shapely polygons (z as third coordinate)."""
    import shapely
    from skimage.measure import find_contours

    out = []
    for z, plane in enumerate(planes):
        above = plane > threshold if threshold >= 0 else np.ones(plane.shape, bool)
        rows_any = np.flatnonzero(above.any(axis=1))
        if not len(rows_any):
            continue
        cols_any = np.flatnonzero(above.any(axis=0))
        # Contours are local: trace the bounding box of the foreground, padded by one
        # pixel of zeros so that outlines touching the edge close.
        r0, r1, c0, c1 = rows_any[0], rows_any[-1] + 1, cols_any[0], cols_any[-1] + 1
        window = np.pad(plane[r0:r1, c0:c1], 1)
        for contour in find_contours(window, threshold, fully_connected="low"):
            xyz = np.column_stack(
                [contour[:, 1] + (c0 - 0.5), contour[:, 0] + (r0 - 0.5), np.full(len(contour), z)]
            )
            if len(xyz) < 4:
                continue
            # tolerance 0 removes collinear vertices and nothing else
            out.append(shapely.simplify(shapely.Polygon(xyz), 0.0))
    return out


def rings_to_multipolygon(rings: Any) -> Any:
    """Give vertex rings as one shapely ``MultiPolygon`` with ``z`` as third coordinate.

    Parameters
    ----------
    rings : list of array_like
        ``(N, 2)`` or ``(N, 3)`` vertex arrays, open or closed (as held by
        :attr:`ROI.rings`). A ring of fewer than three distinct vertices
        (e.g. an ImageJ straight line) becomes a zero-area polygon.

    Returns
    -------
    shapely.geometry.MultiPolygon
        One polygon per ring, in order; empty for no rings.

    Examples
    --------
    >>> mp = rings_to_multipolygon([[[0, 0, 1], [2, 0, 1], [2, 2, 1]]])
    >>> mp.geoms[0].area, mp.has_z
    (2.0, True)
    """
    import shapely

    polys = []
    for ring in rings:
        arr = np.asarray(ring, dtype=np.float64)
        if arr.shape[1] == 2:
            arr = np.column_stack([arr, np.zeros(len(arr))])
        if len(arr) > 1 and np.array_equal(arr[0], arr[-1]):
            arr = arr[:-1]
        while len(arr) < 3:
            arr = np.vstack([arr, arr[-1:]])
        polys.append(shapely.Polygon(arr))
    return shapely.MultiPolygon(polys)


def mask2poly(mask: Any, threshold: float = 0.5) -> Any:
    """Outline a mask as a shapely ``MultiPolygon`` (SIMA's ``mask2poly``).

    The outlines are the iso-contours of the mask at ``threshold`` (computed
    with :func:`skimage.measure.find_contours`; for a boolean mask the
    foreground is 4-connected), in the pixel-corner convention: each
    foreground pixel centre lies strictly inside its component's polygon and
    every other centre outside, so rasterising the polygons gives the mask
    back for masks without holes (a hole becomes a polygon of its own).
    Collinear vertices are removed.

    Parameters
    ----------
    mask : array_like, scipy.sparse matrix or list of them
        A ``(Y, X)`` plane (plane 0), or a ``(Z, Y, X)`` stack or list of
        planes; plane ``z`` is written as every vertex's third coordinate.
    threshold : float, optional
        Contour level: 0.5 outlines a boolean mask; for a two-valued mask
        choose the midpoint of its values.

    Returns
    -------
    shapely.geometry.MultiPolygon
        One polygon per outline, with ``(x, y, z)`` coordinates (empty when
        the mask is). Use ``.geoms`` to iterate (shapely 2 multi-part
        geometries are not sequences); :func:`mask2rings` gives the same
        outlines as vertex arrays.

    Raises
    ------
    ValueError
        If a plane is not 2-D.
    TypeError
        If the mask is not numeric.

    Examples
    --------
    >>> mp = mask2poly(np.array([[0, 1, 1], [0, 1, 1]], dtype=bool))
    >>> len(mp.geoms), mp.geoms[0].area, mp.has_z
    (1, 3.5, True)
    """
    import shapely

    return shapely.MultiPolygon(_mask_polygons(_mask_planes_dense(mask), float(threshold)))


def poly2mask(
    polygons: Any, im_size: Any = None, im_shape: Any = None
) -> list[scipy.sparse.csr_matrix]:
    """Rasterise polygons onto per-plane boolean sparse masks.

    A pixel belongs to a polygon iff its centre lies strictly inside it;
    several polygons on the same plane are combined with a logical OR.

    Parameters
    ----------
    polygons : array_like, shapely geometry, or list of them
        One ``(N, 2)``/``(N, 3)`` vertex array, a shapely ``Polygon`` or
        ``MultiPolygon`` (z from the third coordinate, else 0), or a list
        of these.
    im_size : tuple of int
        ``(Z, Y, X)`` or ``(Y, X)`` (SIMA's name for it).
    im_shape : tuple of int, optional
        The same, under sima_fast's name; give one of the two.

    Returns
    -------
    list of scipy.sparse.csr_matrix
        One boolean ``(Y, X)`` matrix per plane.

    Raises
    ------
    TypeError
        If neither or both of ``im_size`` and ``im_shape`` are given.
    ValueError
        If a polygon's plane index is outside ``range(Z)``.

    Examples
    --------
    >>> m = poly2mask([[0, 0], [1, 0], [1, 1], [0, 1]], (2, 2))
    >>> m[0].toarray().astype(int).tolist()
    [[1, 0], [0, 0]]
    """
    if (im_size is None) == (im_shape is None):
        raise TypeError("poly2mask needs exactly one of im_size and im_shape")
    rings = _normalise_polygons(polygons)
    shape = normalise_im_shape(im_shape if im_size is None else im_size)
    assert shape is not None
    return _rasterise(rings, shape)


def _window_pixels(ring: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``(row, col)`` indices of the pixels inside one ring, clipped to the frame.

    Only the window of pixels whose centres can fall inside the ring's
    bounding box is rasterised, with :func:`polygon_to_mask` applied to the
    vertices shifted by the window's integer origin (an exact shift).

    Returns
    -------
    rows, cols : numpy.ndarray of int
        Equal-length index arrays (empty when the ring misses the frame).
    """
    xs, ys = ring[:, 0], ring[:, 1]
    x0 = max(int(np.floor(xs.min())), 0)
    y0 = max(int(np.floor(ys.min())), 0)
    x1 = min(int(np.ceil(xs.max())), cols)
    y1 = min(int(np.ceil(ys.max())), rows)
    if x1 <= x0 or y1 <= y0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    local = ring[:, :2] - np.array([x0, y0], dtype=np.float64)
    r, c = np.nonzero(polygon_to_mask(local, (y1 - y0, x1 - x0)))
    return r + y0, c + x0


def _rasterise(rings: list[np.ndarray], shape: tuple[int, int, int]) -> list:
    n_planes, rows, cols = shape
    hits: dict[int, list[np.ndarray]] = {}
    for ring in rings:
        z = int(ring[0, 2])
        if not 0 <= z < n_planes:
            raise ValueError(
                f"polygon on plane z={z} is outside the {n_planes} plane(s) of im_shape {shape}"
            )
        r, c = _window_pixels(ring, rows, cols)
        hits.setdefault(z, []).append(r * cols + c)
    planes = []
    for z in range(n_planes):
        flat = np.unique(np.concatenate(hits[z])) if z in hits else np.empty(0, np.int64)
        planes.append(
            scipy.sparse.csr_matrix(
                (np.ones(len(flat), dtype=bool), (flat // cols, flat % cols)),
                shape=(rows, cols),
            )
        )
    return planes


# --------------------------------------------------------------------------
# ROI
# --------------------------------------------------------------------------


class ROI:
    """A region of interest: planar polygons or a per-plane (weighted) mask.

    Parameters
    ----------
    mask : array_like, scipy.sparse matrix or list of them, optional
        A 2-D ``(Y, X)`` array (one plane), a 3-D ``(Z, Y, X)`` array, or a
        list of 2-D arrays or sparse matrices (one per plane). Boolean masks
        and weighted (numeric) masks are both kept exactly as given
        (extraction refuses NaN or infinite weights, which would turn the
        ROI's whole trace into NaN; segmentation steps may use them).
    polygons : array_like, shapely geometry, or list of them, optional
        One ``(N, 2)`` or ``(N, 3)`` array of ``(x, y[, z])`` vertices, a
        shapely ``Polygon`` or ``MultiPolygon`` (e.g. :attr:`polygons` of
        another ROI, or a union of them), or a list of such arrays or
        polygons (several polygons, possibly on several planes; ``z``
        defaults to 0). Each polygon must lie on one plane. Rings may be
        given open or closed; of a shapely polygon with holes only the
        exterior is kept (with a warning).
    label : str, optional
        A name for the ROI, e.g. to match ROIs across datasets.
    tags : iterable of str, optional
        Free-form tags; stored as a set.
    id : str, optional
        An identifier for the ROI.
    im_shape : tuple of int, optional
        ``(Z, Y, X)`` or ``(Y, X)`` of the imaging frame; needed to rasterise
        a polygon ROI.

    Raises
    ------
    TypeError
        If neither or both of ``mask`` and ``polygons`` are given.
    ValueError
        If the geometry or ``im_shape`` is malformed.

    Examples
    --------
    >>> roi = ROI(polygons=[[0, 0], [2, 0], [2, 1], [0, 1]], im_shape=(2, 3))
    >>> np.asarray(roi).astype(int).tolist()
    [[[1, 1, 0], [0, 0, 0]]]
    >>> roi.size
    2
    """

    def __init__(
        self,
        mask: Any = None,
        polygons: Any = None,
        label: Any = None,
        tags: Iterable[str] | str | None = None,
        id: Any = None,
        im_shape: Sequence[int] | None = None,
    ) -> None:
        if (mask is None) == (polygons is None):
            raise TypeError("an ROI needs exactly one of 'mask' and 'polygons'")
        self._mask: list[scipy.sparse.csr_matrix] | None = None
        self._polygons: list[np.ndarray] | None = None
        if polygons is not None:
            self._polygons = _normalise_polygons(polygons)
        else:
            self._mask = _normalise_mask(mask)
        self._im_shape = normalise_im_shape(im_shape)
        self._tags = _normalise_tags(tags)
        self.label = label
        self.id = id
        self._mask_cache: tuple[Any, list] | None = None
        self._poly_cache: list[np.ndarray] | None = None

    # -- simple properties -------------------------------------------------

    @property
    def tags(self) -> set[str]:
        """The ROI's tags (a mutable set of strings)."""
        return self._tags

    @tags.setter
    def tags(self, value: Iterable[str] | str | None) -> None:
        self._tags = _normalise_tags(value)

    @property
    def im_shape(self) -> tuple[int, int, int] | None:
        """``(Z, Y, X)`` frame shape, or None; a ``(Y, X)`` value means one plane."""
        return self._im_shape

    @im_shape.setter
    def im_shape(self, value: Sequence[int] | None) -> None:
        self._im_shape = normalise_im_shape(value)
        self._mask_cache = None

    @property
    def is_mask_roi(self) -> bool:
        """True if the ROI was defined by a mask rather than by polygons."""
        return self._mask is not None

    @property
    def is_weighted(self) -> bool:
        """True for a mask ROI whose non-zero values are not all 1 (or True)."""
        if self._mask is None:
            return False
        for m in self._mask:
            if m.dtype != bool and np.any(m.data != 1):
                return True
        return False

    # -- geometry ----------------------------------------------------------

    @property
    def polygons(self) -> Any:
        """The ROI outline as a shapely ``MultiPolygon`` with ``z`` as third coordinate.

        As in SIMA: ``.area``, ``.exterior`` of each part (``.geoms``),
        unions and every other shapely operation work on it. For a polygon
        ROI the parts are its polygons, with their vertices as given; for a
        mask ROI they are the 0.5-level contours of each plane (see
        :func:`mask2poly`), which needs a boolean mask. :attr:`rings` gives
        the same outlines as vertex arrays.

        Raises
        ------
        NonBooleanMask
            For a weighted mask, which has no polygon equivalent.
        """
        return rings_to_multipolygon(self._outline_rings())

    @property
    def rings(self) -> list[np.ndarray]:
        """The ROI outline as open rings, each an ``(N, 3)`` float array of ``(x, y, z)``.

        The array form of :attr:`polygons` (the same outlines, without the
        closing vertex); :attr:`coords` gives them closed.

        Raises
        ------
        NonBooleanMask
            For a weighted mask, which has no polygon equivalent.
        """
        return [p.copy() for p in self._outline_rings()]

    def _outline_rings(self) -> list[np.ndarray]:
        if self._polygons is not None:
            return self._polygons
        if self._poly_cache is None:
            if self.is_weighted:
                raise NonBooleanMask(
                    "polygons are only defined for boolean masks; this ROI has a weighted "
                    "(non-boolean) mask"
                )
            self._poly_cache = mask2rings(self._mask or [])
        return self._poly_cache

    @property
    def coords(self) -> list[np.ndarray]:
        """The outlines as closed rings, each an ``(N + 1, 3)`` float array of ``(x, y, z)``.

        Raises
        ------
        NonBooleanMask
            For a weighted mask, which has no polygon equivalent.
        """
        return [np.vstack([p, p[:1]]) for p in self._outline_rings()]

    @property
    def mask(self) -> list[scipy.sparse.csr_matrix]:
        """One ``scipy.sparse.csr_matrix`` per plane.

        Polygon ROIs are rasterised (boolean) at ``im_shape``; mask ROIs are
        returned with their values, padded with empty planes up to
        ``im_shape[0]`` and cropped or zero-padded to ``im_shape[1:]`` when
        ``im_shape`` is set. (Datasets never rely on that cropping for
        non-zero weights: :meth:`~sima_fast.imaging.ImagingDataset.add_ROIs`
        and extraction refuse such masks, see :func:`check_mask_in_frame`.)

        Raises
        ------
        ValueError
            If a polygon ROI has no ``im_shape``, or the geometry lies on a
            plane outside ``im_shape``.
        """
        shape = self._im_shape
        if self._mask_cache is not None and self._mask_cache[0] == shape:
            return [m.copy() for m in self._mask_cache[1]]
        if self._polygons is not None:
            if shape is None:
                raise ValueError(
                    "im_shape is needed to rasterise a polygon ROI into a mask; set roi.im_shape"
                )
            planes = _rasterise(self._polygons, shape)
        else:
            stored = self._mask or []
            if shape is None:
                planes = [m.copy() for m in stored]
            else:
                n_planes = shape[0]
                for z in range(n_planes, len(stored)):
                    if stored[z].count_nonzero():
                        raise ValueError(
                            f"the mask has pixels on plane {z}, outside the {n_planes} plane(s) "
                            f"of im_shape {shape}"
                        )
                dtype = stored[0].dtype
                planes = [_resize_plane(m, shape[1:]) for m in stored[:n_planes]]
                planes += [
                    scipy.sparse.csr_matrix(shape[1:], dtype=dtype)
                    for _ in range(n_planes - len(planes))
                ]
        self._mask_cache = (shape, planes)
        return [m.copy() for m in planes]

    @property
    def size(self) -> int:
        """Number of non-zero mask pixels over all planes."""
        return int(sum(m.count_nonzero() for m in self.mask))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """Dense ``(Z, Y, X)`` mask: bool for boolean/polygon ROIs, float if weighted."""
        planes = self.mask
        out = np.stack([m.toarray() for m in planes])
        if out.dtype != bool and out.dtype.kind != "f":
            out = out.astype(np.float64)
        if dtype is not None:
            out = out.astype(dtype)
        return out

    # -- serialisation -----------------------------------------------------

    def todict(self) -> dict[str, Any]:
        """Return the ROI as a plain dict in SIMA's layout, accepted by ``ROI(**d)``.

        Returns
        -------
        dict
            Keys ``mask`` (list of sparse matrices, or None), ``polygons``
            (list of closed ``(N + 1, 3)`` rings, or None), ``label``,
            ``tags`` (a set), ``id`` and ``im_shape``.

        Examples
        --------
        >>> d = ROI(polygons=[[0, 0], [1, 0], [1, 1]], label='a').todict()
        >>> sorted(d), d['mask'], d['polygons'][0].shape
        (['id', 'im_shape', 'label', 'mask', 'polygons', 'tags'], None, (4, 3))
        >>> ROI(**d).label
        'a'
        """
        return {
            "mask": None if self._mask is None else [m.copy() for m in self._mask],
            "polygons": None if self._polygons is None else self.coords,
            "label": self.label,
            "tags": set(self._tags),
            "id": self.id,
            "im_shape": self._im_shape,
        }

    @classmethod
    def fromdict(cls, d: dict[str, Any]) -> ROI:
        """Build an ROI from :meth:`todict` output (equivalent to ``ROI(**d)``).

        Parameters
        ----------
        d : dict
            A dict with the keys produced by :meth:`todict`.

        Returns
        -------
        ROI
        """
        return cls(**d)

    def copy(self) -> ROI:
        """Return an independent copy of the ROI (geometry, label, id, tags, im_shape).

        Returns
        -------
        ROI
            A new ROI built from :meth:`todict`; its masks, polygons and tags
            are copies, so changing one ROI leaves the other as it was.
        """
        return ROI(**self.todict())

    def __repr__(self) -> str:
        """Return ``<ROI: label=..., id=..., mask|polygons, im_shape=...>``."""
        kind = "mask" if self._mask is not None else "polygons"
        return f"<ROI: label={self.label!r}, id={self.id!r}, {kind}, im_shape={self._im_shape}>"


# --------------------------------------------------------------------------
# ROIList
# --------------------------------------------------------------------------


def _accepts_im_shape(reader: Callable[..., Any]) -> bool:
    """Whether a registered ROI reader takes an ``im_shape`` keyword."""
    import inspect

    try:
        params = inspect.signature(reader).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "im_shape" or p.kind is p.VAR_KEYWORD for p in params)


def _accepts_options(reader: Callable[..., Any], options: dict[str, Any]) -> bool:
    """Whether a registered ROI reader takes every keyword in ``options``."""
    import inspect

    try:
        params = inspect.signature(reader).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return True
    named = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return set(options) <= named - {"path", "label", "im_shape"}


def _check_roi(value: Any) -> ROI:
    if not isinstance(value, ROI):
        raise TypeError(f"ROIList elements must be ROI objects, got {type(value).__name__}")
    return value


class ROIList(list):
    """An ordered list of :class:`ROI` objects with a timestamp.

    Parameters
    ----------
    rois : iterable of ROI or dict
        The ROIs. A dict is turned into ``ROI(**d)`` (as SIMA does, e.g.
        for the output of :meth:`ROI.todict`).
    timestamp : str, optional
        When the set was made, formatted ``'%Y-%m-%d-%Hh%Mm%Ss'``
        (default: now).

    Raises
    ------
    TypeError
        If an element is neither an :class:`ROI` nor a dict of ROI
        arguments.

    Examples
    --------
    >>> rois = ROIList([ROI(polygons=[[0, 0], [1, 0], [1, 1]], tags={'cell'})])
    >>> len(rois.subset(tags=['cell'])), len(rois.subset(neg_tags=['cell']))
    (1, 0)
    """

    def __init__(self, rois: Iterable[ROI] = (), timestamp: str | None = None) -> None:
        super().__init__(_check_roi(ROI(**r) if isinstance(r, dict) else r) for r in rois)
        self.timestamp = current_timestamp() if timestamp is None else timestamp

    # keep the list homogeneous
    def append(self, roi: ROI) -> None:
        """Append an ROI.

        Parameters
        ----------
        roi : ROI
            The ROI to add at the end.

        Raises
        ------
        TypeError
            If ``roi`` is not an :class:`ROI`.
        """
        super().append(_check_roi(roi))

    def insert(self, index: Any, roi: ROI) -> None:
        """Insert an ROI before position ``index``.

        Parameters
        ----------
        index : int
            Position, as for :meth:`list.insert`.
        roi : ROI
            The ROI to insert.

        Raises
        ------
        TypeError
            If ``roi`` is not an :class:`ROI`.
        """
        super().insert(index, _check_roi(roi))

    def extend(self, rois: Iterable[ROI]) -> None:
        """Append every ROI of an iterable.

        Parameters
        ----------
        rois : iterable of ROI
            The ROIs to add at the end, in order.

        Raises
        ------
        TypeError
            If an element is not an :class:`ROI`.
        """
        super().extend(_check_roi(r) for r in rois)

    def __iadd__(self, rois: Iterable[ROI]) -> ROIList:  # type: ignore[override]
        """Append every ROI of an iterable (``rois_a += rois_b``), keeping the list.

        Parameters
        ----------
        rois : iterable of ROI
            The ROIs to add at the end, in order.

        Returns
        -------
        ROIList
            This list.
        """
        self.extend(rois)
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        """Replace an element (or a slice of elements) by ROIs.

        Parameters
        ----------
        index : int or slice
            Which element(s) to replace, as for a list.
        value : ROI or iterable of ROI
            The new ROI, or the new ROIs for a slice.

        Raises
        ------
        TypeError
            If a new element is not an :class:`ROI`.
        """
        if isinstance(index, slice):
            value = [_check_roi(v) for v in value]
        else:
            value = _check_roi(value)
        super().__setitem__(index, value)

    def __repr__(self) -> str:
        """Return ``<ROIList: n ROIs, timestamp=...>``."""
        return f"<ROIList: {len(self)} ROIs, timestamp={self.timestamp!r}>"

    # -- loading -------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        label: str | None = None,
        fmt: str = "pkl",
        reassign_label: bool = False,
        im_shape: Sequence[int] | None = None,
        **options: Any,
    ) -> ROIList:
        """Read one ROI set from a file.

        Parameters
        ----------
        path : str or path-like
            The file to read.
        label : str, optional
            Which set to read from a multi-set file; by default the most
            recent one (by timestamp, the last one on ties). Ignored for
            ImageJ files, which hold a single set.
        fmt : str, optional
            A format registered in :data:`sima_fast.io.roi_readers` (any
            case). Built in: ``'pkl'`` reads a sima_fast ROI file (HDF5,
            recognised by its signature) or a SIMA 1.x ``rois.pkl`` (through
            the restricted unpickler of :mod:`sima_fast._legacy`); ``'h5'``
            is an alias. ``'ImageJ'`` reads a ``.zip`` of ``.roi`` members or
            a single ``.roi`` file (shapes translated as described in
            :func:`sima_fast.io.imagej.read_imagej`).
        reassign_label : bool, optional
            If True, replace every ROI's label by its position in the list,
            as a string (``'0'``, ``'1'``, ...).
        im_shape : tuple of int, optional
            ``(Z, Y, X)`` or ``(Y, X)`` of the frames the ROIs are meant
            for (e.g. ``dataset.frame_shape[:3]``). A reader that accepts an
            ``im_shape`` keyword gets it: ImageJ ovals and rounded
            rectangles are then rasterised within the frame only (clipped
            to it), so the memory needed follows the frame, not the shape's
            declared bounding box. ROIs read without an ``im_shape`` get
            this one, and a mask ROI with non-zero weight outside the frame
            is refused (see :func:`check_mask_in_frame`).
        **options
            Keyword options of the format's reader, passed on to it: for
            ``'suite2p'``, ``plane`` (an index, or ``'all'`` for every
            plane) and ``iscell`` (see
            :func:`sima_fast.io.suite2p.read_suite2p`); for ``'NWB'``,
            ``plane_segmentation``, the table's name (the same choice as
            ``label``; see :func:`sima_fast.io.nwb.read_nwb_rois`). A reader
            that takes no such option raises ``TypeError``.

        Returns
        -------
        ROIList

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        KeyError
            If ``label`` names no set in the file.
        ValueError
            For an unknown ``fmt`` (the message lists the registered ones),
            an unreadable file (a suite2p folder with wrong fields:
            :class:`sima_fast.io.suite2p.Suite2pFormatError`), an unsupported
            or corrupt ImageJ member
            (the message names the member), an ImageJ file over one of the
            size limits of :mod:`sima_fast.io.imagej`
            (:class:`sima_fast.io.imagej.ImageJLimitError`), or a mask that
            does not fit ``im_shape``.
        sima_fast._legacy.UnsafePickleError
            If a SIMA pickle is corrupt or names anything outside the
            restricted unpickler's allow-list.
        """
        from sima_fast.io import roi_readers

        path = os.fspath(path)
        reader = roi_readers.lookup(fmt)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such ROI file: {path!r}")
        shape = normalise_im_shape(im_shape)
        if options and not _accepts_options(reader, options):
            raise TypeError(f"the {fmt!r} ROI reader takes no option(s) {sorted(options)}")
        if shape is not None and _accepts_im_shape(reader):
            rois = reader(path, label, im_shape=shape, **options)
        else:
            rois = reader(path, label, **options)
        result = cls(rois, timestamp=rois.timestamp)
        if shape is not None:
            for i, roi in enumerate(result):
                where = f"{path}: ROI {i} (label {roi.label!r})"
                check_mask_in_frame(roi, shape, where)
                if roi.im_shape is None:
                    roi.im_shape = shape
        if reassign_label:
            for i, roi in enumerate(result):
                roi.label = str(i)
        return result

    # -- saving --------------------------------------------------------------

    def save(self, path: str | os.PathLike, label: str | None = None, fmt: str = "h5") -> None:
        """Write the ROI set to a file, atomically.

        Parameters
        ----------
        path : str or path-like
            Destination file.
        label : str, optional
            Name of the set inside an HDF5 file (default: the timestamp).
            Other sets already in the file are kept; a set with the same
            label is replaced. Ignored for ImageJ.
        fmt : str, optional
            A format registered in :data:`sima_fast.io.roi_writers` (any
            case). Built in: ``'h5'`` writes sima_fast's HDF5 ROI file
            (``'pkl'`` is accepted as an alias for SIMA compatibility: no
            pickle is ever written). If ``path`` is an existing SIMA
            ``rois.pkl``, its sets are converted and kept in the new HDF5
            file. ``'ImageJ'`` writes a ``.zip`` with one polygon member per
            polygon (see :func:`sima_fast.io.imagej.write_imagej` for member
            names, planes and coordinates; mask ROIs with no pixels are
            skipped with a warning).

        Raises
        ------
        ValueError
            For an unknown ``fmt`` (the message lists the registered ones),
            an invalid label, an existing file that is not an ROI file, or
            (ImageJ) a weighted mask ROI.

        Notes
        -----
        The new file is built beside ``path`` and moved over it only when
        complete, so a failure leaves any previous file unchanged.
        """
        from sima_fast.io import roi_writers

        path = os.fspath(path)
        writer = roi_writers.lookup(fmt)
        writer(self, path, label)

    # -- derived lists -----------------------------------------------------

    def transform(
        self,
        transforms: Any,
        im_shape: Sequence[int] | None = None,
        copy_properties: bool = True,
    ) -> ROIList:
        """Apply a per-plane geometric transform to every ROI.

        Parameters
        ----------
        transforms : array_like, callable, or sequence of them
            Per plane (indexed by ``z``): a 2×3 or 3×3 matrix acting on the
            column vector ``(x, y, 1)`` (a 3×3 with a non-trivial last row is
            applied as a projective map), or a callable mapping an ``(N, 2)``
            array of ``(x, y)`` to an ``(N, 2)`` array. A single matrix or
            callable applies to all planes.
        im_shape : tuple of int, optional
            ``im_shape`` of the transformed ROIs.
        copy_properties : bool, optional
            Copy label, id and tags to the new ROIs (default True).

        Returns
        -------
        ROIList
            New polygon ROIs (mask ROIs are transformed through their contour
            polygons, so weighted masks raise ValueError).

        Raises
        ------
        ValueError
            If a plane has no transform or a transform is malformed.

        Examples
        --------
        >>> rois = ROIList([ROI(polygons=[[0, 0], [1, 0], [1, 1]])])
        >>> shift = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 3.0]])
        >>> rois.transform(shift)[0].rings[0][:, :2].tolist()
        [[2.0, 3.0], [3.0, 3.0], [3.0, 4.0]]
        """
        per_plane = _per_plane_transforms(transforms)
        out = []
        for roi in self:
            rings = []
            for ring in roi.rings:
                z = int(ring[0, 2])
                tf = per_plane(z)
                xy = tf(ring[:, :2].copy())
                rings.append(np.column_stack([xy, ring[:, 2]]))
            kwargs: dict[str, Any] = {"polygons": rings, "im_shape": im_shape}
            if copy_properties:
                kwargs.update(label=roi.label, id=roi.id, tags=set(roi.tags))
            out.append(ROI(**kwargs))
        return ROIList(out)

    def subset(
        self, tags: Iterable[str] | str | None = None, neg_tags: Iterable[str] | str | None = None
    ) -> ROIList:
        """ROIs carrying all of ``tags`` and none of ``neg_tags``.

        Parameters
        ----------
        tags : iterable of str, optional
            Required tags.
        neg_tags : iterable of str, optional
            Excluded tags.

        Returns
        -------
        ROIList
            The matching ROIs (the same objects), with this list's timestamp.
        """
        need = _normalise_tags(tags)
        avoid = _normalise_tags(neg_tags)
        return ROIList(
            [r for r in self if need <= r.tags and not (avoid & r.tags)], timestamp=self.timestamp
        )


def _matrix_transform(matrix: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape not in ((2, 3), (3, 3)) or not np.all(np.isfinite(m)):
        raise ValueError(f"a transform matrix must be finite 2x3 or 3x3, got shape {m.shape}")

    def apply(xy: np.ndarray) -> np.ndarray:
        homog = np.column_stack([xy, np.ones(len(xy))])
        res = homog @ m.T
        if m.shape == (3, 3):
            res = res[:, :2] / res[:, 2:3]
        return res

    return apply


def _callable_transform(fn: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], np.ndarray]:
    def apply(xy: np.ndarray) -> np.ndarray:
        res = np.asarray(fn(xy), dtype=np.float64)
        if res.shape != xy.shape:
            raise ValueError(
                f"a transform callable must map (N, 2) to (N, 2), got {xy.shape} -> {res.shape}"
            )
        return res

    return apply


def _wrap_transform(tf: Any) -> Callable[[np.ndarray], np.ndarray]:
    return _callable_transform(tf) if callable(tf) else _matrix_transform(tf)


def _per_plane_transforms(transforms: Any) -> Callable[[int], Callable]:
    if callable(transforms):
        single = _callable_transform(transforms)
        return lambda z: single
    if isinstance(transforms, np.ndarray) or not isinstance(transforms, (list, tuple)):
        arr = np.asarray(transforms, dtype=np.float64)
        if arr.ndim == 2:
            single = _matrix_transform(arr)
            return lambda z: single
        items: list[Any] = list(arr)
    else:
        try:
            arr = np.asarray(transforms, dtype=np.float64)
        except (ValueError, TypeError):
            arr = None
        if arr is not None and arr.ndim == 2:
            single = _matrix_transform(arr)
            return lambda z: single
        items = list(transforms)
    wrapped = [_wrap_transform(t) for t in items]

    def pick(z: int) -> Callable[[np.ndarray], np.ndarray]:
        if not 0 <= z < len(wrapped):
            raise ValueError(f"no transform for plane {z}: {len(wrapped)} transform(s) given")
        return wrapped[z]

    return pick

"""Regions of interest (ROIs) and named sets of them.

An :class:`ROI` is either a set of planar polygons or a per-plane mask
(boolean or weighted); a :class:`ROIList` is an ordered collection of ROIs with
a timestamp. ROI sets are read from and written to sima_fast's own HDF5 files,
SIMA 1.x ``rois.pkl`` files (read only, through a restricted unpickler) and
ImageJ ``.roi``/``.zip`` files.

Coordinates follow one convention throughout: polygon vertices are
``(x, y, z)``, pixel ``(y, x)`` covers the square ``[x, x + 1) × [y, y + 1)``
and ``z`` is the plane index. A pixel belongs to a polygon iff its centre is
strictly inside the polygon (see :mod:`sima_fast._geometry`).
"""

from __future__ import annotations

import json
import os
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse

from sima_fast._atomic import atomic_write
from sima_fast._geometry import polygon_to_mask

__all__ = [
    "ROI",
    "ROIList",
    "mask2poly",
    "poly2mask",
    "read_roilist_group",
    "write_roilist_group",
]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_TIMESTAMP_FORMAT = "%Y-%m-%d-%Hh%Mm%Ss"
_LOAD_FORMATS = ("pkl", "h5", "ImageJ")
_SAVE_FORMATS = ("h5", "pkl", "ImageJ")
_GROUP_FORMAT_ATTR = "sima_fast_roilist"
_GROUP_FORMAT_VERSION = 1
_FILE_FORMAT_ATTR = "sima_fast_format"
_FILE_FORMAT_NAME = "roi_sets"


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _normalise_im_shape(im_shape: Any) -> tuple[int, int, int] | None:
    """Return ``im_shape`` as a ``(Z, Y, X)`` tuple of positive ints, or None."""
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


def _normalise_polygons(polygons: Any) -> list[np.ndarray]:
    """Accept one vertex array or a sequence of them; return open rings."""
    if isinstance(polygons, np.ndarray) and polygons.dtype != object:
        candidates: Iterable[Any] = [polygons] if polygons.ndim == 2 else list(polygons)
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


# --------------------------------------------------------------------------
# Mask <-> polygon conversion
# --------------------------------------------------------------------------


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    """Remove vertices of an open ring that lie on the line through their neighbours."""
    if len(ring) < 4:
        return ring
    prev = np.roll(ring, 1, axis=0)
    nxt = np.roll(ring, -1, axis=0)
    cross = (ring[:, 0] - prev[:, 0]) * (nxt[:, 1] - prev[:, 1]) - (ring[:, 1] - prev[:, 1]) * (
        nxt[:, 0] - prev[:, 0]
    )
    keep = cross != 0
    if keep.sum() < 3:
        return ring
    return ring[keep]


def mask2poly(mask: Any, z: int = 0) -> list[np.ndarray]:
    """Outline the foreground of a boolean 2-D mask as polygons.

    The outlines are the iso-contours at level 0.5 of the mask (computed with
    :func:`skimage.measure.find_contours`, foreground pixels 4-connected),
    shifted into the pixel-corner convention, so each pixel centre of the mask
    lies strictly inside its component's polygon and every other centre lies
    outside. Rasterising the polygons therefore returns the mask for masks
    without holes (holes become separate rings).

    Parameters
    ----------
    mask : array_like or scipy.sparse matrix, shape (Y, X)
        Boolean mask (any non-zero value counts as foreground).
    z : int, optional
        Plane index written in the third column of every vertex.

    Returns
    -------
    list of numpy.ndarray
        Open rings, each an ``(N, 3)`` float array of ``(x, y, z)`` vertices.

    Examples
    --------
    >>> ring = mask2poly(np.array([[True]]))[0]
    >>> ring[:, :2].tolist()
    [[0.5, 1.0], [0.0, 0.5], [0.5, 0.0], [1.0, 0.5]]
    """
    from skimage.measure import find_contours

    dense = mask.toarray() if scipy.sparse.issparse(mask) else np.asarray(mask)
    if dense.ndim != 2:
        raise ValueError(f"mask2poly needs a 2-D mask, got shape {dense.shape}")
    binary = dense != 0
    rows_any, cols_any = np.nonzero(binary.any(axis=1))[0], np.nonzero(binary.any(axis=0))[0]
    if not len(rows_any):
        return []
    # Contours are local: trace only the bounding box of the foreground.
    r0, r1, c0, c1 = rows_any[0], rows_any[-1] + 1, cols_any[0], cols_any[-1] + 1
    padded = np.pad(binary[r0:r1, c0:c1], 1).astype(np.float64)
    rings = []
    for contour in find_contours(padded, 0.5, fully_connected="low"):
        ring = contour[:-1] if np.array_equal(contour[0], contour[-1]) else contour
        xy = np.column_stack([ring[:, 1] + (c0 - 0.5), ring[:, 0] + (r0 - 0.5)])
        xy = _drop_collinear(xy)
        rings.append(np.column_stack([xy, np.full(len(xy), float(z))]))
    return rings


def poly2mask(polygons: Any, im_shape: Any) -> list[scipy.sparse.csr_matrix]:
    """Rasterise polygons onto per-plane boolean sparse masks.

    A pixel belongs to a polygon iff its centre lies strictly inside it;
    several polygons on the same plane are combined with a logical OR.

    Parameters
    ----------
    polygons : array_like or list of array_like
        One ``(N, 2)``/``(N, 3)`` vertex array or a list of them.
    im_shape : tuple of int
        ``(Z, Y, X)`` or ``(Y, X)``.

    Returns
    -------
    list of scipy.sparse.csr_matrix
        One boolean ``(Y, X)`` matrix per plane.

    Raises
    ------
    ValueError
        If a polygon's plane index is outside ``range(Z)``.

    Examples
    --------
    >>> m = poly2mask([[0, 0], [1, 0], [1, 1], [0, 1]], (2, 2))
    >>> m[0].toarray().astype(int).tolist()
    [[1, 0], [0, 0]]
    """
    rings = _normalise_polygons(polygons)
    shape = _normalise_im_shape(im_shape)
    if shape is None:
        raise ValueError("poly2mask needs im_shape")
    return _rasterise(rings, shape)


def _window_pixels(ring: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """``(row, col)`` indices of the pixels inside one ring, clipped to the frame.

    Only the window of pixels whose centres can fall inside the ring's
    bounding box is rasterised, with :func:`polygon_to_mask` applied to the
    vertices shifted by the window's integer origin (an exact shift).
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
        and weighted (numeric) masks are both kept exactly as given.
    polygons : array_like or list of array_like, optional
        One ``(N, 2)`` or ``(N, 3)`` array of ``(x, y[, z])`` vertices, or a
        list of such arrays (several polygons, possibly on several planes;
        ``z`` defaults to 0). Each polygon must lie on one plane. Rings may be
        given open or closed.
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
        self._im_shape = _normalise_im_shape(im_shape)
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
        self._im_shape = _normalise_im_shape(value)
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
    def polygons(self) -> list[np.ndarray]:
        """The ROI outline as open rings, each an ``(N, 3)`` array of ``(x, y, z)``.

        For a mask ROI the rings are the 0.5-level contours of each plane
        (see :func:`mask2poly`); this needs a boolean mask.

        Raises
        ------
        ValueError
            For a weighted mask, which has no polygon equivalent.
        """
        if self._polygons is not None:
            return [p.copy() for p in self._polygons]
        if self._poly_cache is None:
            if self.is_weighted:
                raise ValueError(
                    "polygons are only defined for boolean masks; this ROI has a weighted "
                    "(non-boolean) mask"
                )
            rings: list[np.ndarray] = []
            for z, plane in enumerate(self._mask or []):
                rings.extend(mask2poly(plane, z))
            self._poly_cache = rings
        return [p.copy() for p in self._poly_cache]

    @property
    def coords(self) -> list[np.ndarray]:
        """The polygons as closed rings, each an ``(N + 1, 3)`` float array."""
        return [np.vstack([p, p[:1]]) for p in self.polygons]

    @property
    def mask(self) -> list[scipy.sparse.csr_matrix]:
        """One ``scipy.sparse.csr_matrix`` per plane.

        Polygon ROIs are rasterised (boolean) at ``im_shape``; mask ROIs are
        returned with their values, padded with empty planes up to
        ``im_shape[0]`` and cropped or zero-padded to ``im_shape[1:]`` when
        ``im_shape`` is set.

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
        """The ROI as a plain dict in SIMA's layout, accepted by ``ROI(**d)``.

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
        """An independent copy of the ROI (geometry, label, id, tags, im_shape)."""
        return ROI(**self.todict())

    def __repr__(self) -> str:
        kind = "mask" if self._mask is not None else "polygons"
        return f"<ROI: label={self.label!r}, id={self.id!r}, {kind}, im_shape={self._im_shape}>"


# --------------------------------------------------------------------------
# HDF5 serialisation
# --------------------------------------------------------------------------


def _write_roi(group: Any, roi: ROI) -> None:
    if roi.label is not None:
        group.attrs["label"] = str(roi.label)
    if roi.id is not None:
        group.attrs["id"] = str(roi.id)
    group.attrs["tags"] = json.dumps(sorted(roi.tags))
    if roi.im_shape is not None:
        group.attrs["im_shape"] = np.asarray(roi.im_shape, dtype=np.int64)
    if roi._polygons is not None:
        polys = group.create_group("polygons")
        for k, ring in enumerate(roi._polygons):
            polys.create_dataset(str(k), data=np.asarray(ring, dtype=np.float64))
    else:
        masks = group.create_group("mask")
        for z, plane in enumerate(roi._mask or []):
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
        If the group is not an ROI set.
    """
    if _GROUP_FORMAT_ATTR not in h5group.attrs or "rois" not in h5group:
        raise ValueError(f"HDF5 group {h5group.name!r} does not hold a sima_fast ROI set")
    rois_group = h5group["rois"]
    rois = [_read_roi(rois_group[k]) for k in sorted(rois_group, key=int)]
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
# ROI set selection, legacy (SIMA) and HDF5 file reading
# --------------------------------------------------------------------------


def _timestamp_key(ts: Any) -> tuple[int, float]:
    """Sort key for timestamps: parseable ones by time, others first."""
    if isinstance(ts, str):
        try:
            return (1, time.mktime(time.strptime(ts, _TIMESTAMP_FORMAT)))
        except (ValueError, OverflowError):
            pass
    return (0, 0.0)


def _pick_label(timestamps: dict[str, Any], label: Any, path: str) -> str:
    if not timestamps:
        raise ValueError(f"{path}: the file holds no ROI sets")
    if label is None:
        ordered = list(timestamps.items())
        best = max(range(len(ordered)), key=lambda i: (_timestamp_key(ordered[i][1]), i))
        return ordered[best][0]
    if label not in timestamps:
        raise KeyError(
            f"no ROI set labelled {label!r} in {path}; available labels: "
            f"{sorted(map(str, timestamps))}"
        )
    return label


def _is_hdf5(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == _HDF5_SIGNATURE


def _legacy_roi(d: Any, where: str) -> ROI:
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
    return ROI(**kwargs)


def _legacy_sets(path: str) -> dict[Any, Any]:
    from sima_fast._legacy import legacy_load

    data = legacy_load(path)
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and "rois" in v for v in data.values()
    ):
        raise ValueError(f"{path}: not a SIMA ROI file (expected {{label: {{'rois': ...}}}})")
    return data


def _legacy_roilist(entry: dict[str, Any], where: str) -> ROIList:
    rois = ROIList([_legacy_roi(d, f"{where}[{i}]") for i, d in enumerate(entry["rois"])])
    ts = entry.get("timestamp")
    rois.timestamp = None if ts is None else str(ts)
    return rois


def _load_h5(path: str, label: Any) -> ROIList:
    import h5py

    with h5py.File(path, "r") as f:
        timestamps = {
            name: f[name].attrs.get("timestamp")
            for name in f
            if isinstance(f[name], h5py.Group) and _GROUP_FORMAT_ATTR in f[name].attrs
        }
        chosen = _pick_label(timestamps, None if label is None else str(label), path)
        return read_roilist_group(f[chosen])


def _load_legacy(path: str, label: Any) -> ROIList:
    sets = _legacy_sets(path)
    chosen = _pick_label({k: v.get("timestamp") for k, v in sets.items()}, label, path)
    return _legacy_roilist(sets[chosen], f"{path}:{chosen}")


# --------------------------------------------------------------------------
# ImageJ
# --------------------------------------------------------------------------


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


def _imagej_to_roi(iroi: Any, label: str) -> ROI:
    """Translate one :class:`roifile.ImagejRoi` into an ROI (see ROIList.load)."""
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
        return _imagej_to_roi(ImagejRoi.frombytes(data), label)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read ImageJ ROI member {name!r}: {exc}") from exc


def _load_imagej(path: str) -> ROIList:
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
    out.timestamp = time.strftime(_TIMESTAMP_FORMAT, time.localtime(os.path.getmtime(path)))
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


def _polygon_to_imagej(ring: np.ndarray, name: str, position: int | None) -> Any:
    from roifile import ROI_TYPE, ImagejRoi

    xy = ring[:, :2]
    integral = np.all(xy == np.round(xy)) and np.all(xy >= -5000) and np.all(xy <= 60535)
    points = xy.astype(np.int64) if integral else xy
    iroi = ImagejRoi.frompoints(points, name=name, position=position)
    iroi.roitype = ROI_TYPE.POLYGON
    return iroi


# --------------------------------------------------------------------------
# ROIList
# --------------------------------------------------------------------------


def _check_roi(value: Any) -> ROI:
    if not isinstance(value, ROI):
        raise TypeError(f"ROIList elements must be ROI objects, got {type(value).__name__}")
    return value


class ROIList(list):
    """An ordered list of :class:`ROI` objects with a timestamp.

    Parameters
    ----------
    rois : iterable of ROI
        The ROIs.
    timestamp : str, optional
        When the set was made, formatted ``'%Y-%m-%d-%Hh%Mm%Ss'``
        (default: now).

    Raises
    ------
    TypeError
        If an element is not an :class:`ROI`.

    Examples
    --------
    >>> rois = ROIList([ROI(polygons=[[0, 0], [1, 0], [1, 1]], tags={'cell'})])
    >>> len(rois.subset(tags=['cell'])), len(rois.subset(neg_tags=['cell']))
    (1, 0)
    """

    def __init__(self, rois: Iterable[ROI] = (), timestamp: str | None = None) -> None:
        super().__init__(_check_roi(r) for r in rois)
        self.timestamp = time.strftime(_TIMESTAMP_FORMAT) if timestamp is None else timestamp

    # keep the list homogeneous
    def append(self, roi: ROI) -> None:
        super().append(_check_roi(roi))

    def insert(self, index: Any, roi: ROI) -> None:
        super().insert(index, _check_roi(roi))

    def extend(self, rois: Iterable[ROI]) -> None:
        super().extend(_check_roi(r) for r in rois)

    def __iadd__(self, rois: Iterable[ROI]) -> ROIList:  # type: ignore[override]
        self.extend(rois)
        return self

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            value = [_check_roi(v) for v in value]
        else:
            value = _check_roi(value)
        super().__setitem__(index, value)

    def __repr__(self) -> str:
        return f"<ROIList: {len(self)} ROIs, timestamp={self.timestamp!r}>"

    # -- loading -------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        label: str | None = None,
        fmt: str = "pkl",
        reassign_label: bool = False,
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
        fmt : {'pkl', 'h5', 'ImageJ'}
            ``'pkl'`` reads a sima_fast ROI file (HDF5, recognised by its
            signature) or a SIMA 1.x ``rois.pkl`` (through the restricted
            unpickler of :mod:`sima_fast._legacy`); ``'h5'`` is an alias.
            ``'ImageJ'`` reads a ``.zip`` of ``.roi`` members or a single
            ``.roi`` file.
        reassign_label : bool, optional
            If True, replace every ROI's label by its position in the list,
            as a string (``'0'``, ``'1'``, ...).

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
            For an unknown ``fmt``, an unreadable file or an unsupported or
            corrupt ImageJ member (the message names the member).
        sima_fast._legacy.UnsafePickleError
            If a SIMA pickle is corrupt or names anything outside the
            restricted unpickler's allow-list.

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
        fmt_key = str(fmt).lower()
        if fmt_key not in ("pkl", "h5", "imagej"):
            raise ValueError(f"unknown ROI file format {fmt!r}; accepted: {list(_LOAD_FORMATS)}")
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such ROI file: {path!r}")
        if fmt_key == "imagej":
            rois = _load_imagej(path)
        elif _is_hdf5(path):
            rois = _load_h5(path, label)
        else:
            rois = _load_legacy(path, label)
        result = cls(rois, timestamp=rois.timestamp)
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
        fmt : {'h5', 'pkl', 'ImageJ'}
            ``'h5'`` writes sima_fast's HDF5 ROI file (``'pkl'`` is accepted
            as an alias for SIMA compatibility: no pickle is ever written).
            If ``path`` is an existing SIMA ``rois.pkl``, its sets are
            converted and kept in the new HDF5 file. ``'ImageJ'`` writes a
            ``.zip`` with one polygon member per polygon.

        Raises
        ------
        ValueError
            For an unknown ``fmt``, an invalid label, an existing file that is
            not an ROI file, or (ImageJ) a weighted mask ROI.

        Notes
        -----
        The new file is built beside ``path`` and moved over it only when
        complete, so a failure leaves any previous file unchanged.

        In ImageJ zips, each member is named ``<label>.roi``; a repeated
        label gets ``-1``, ``-2``, ... appended, and a missing label is
        written as ``roi-1``, ``roi-2``, .... Mask ROIs are written as their
        contour polygons. When any polygon of the set lies on a plane other
        than 0, every member stores ``position = z + 1``. Coordinates are
        stored as integers when integral, otherwise as 32-bit floats
        (sub-pixel resolution). Mask ROIs with no pixels are skipped with a
        warning.
        """
        path = os.fspath(path)
        fmt_key = str(fmt).lower()
        if fmt_key in ("h5", "pkl"):
            self._save_h5(path, self.timestamp if label is None else label)
        elif fmt_key == "imagej":
            self._save_imagej(path)
        else:
            raise ValueError(f"unknown ROI file format {fmt!r}; accepted: {list(_SAVE_FORMATS)}")

    def _save_h5(self, path: str, label: Any) -> None:
        import h5py

        name = str(label)
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"invalid ROI set label {label!r} (empty, '.', '..' or contains '/')")
        old_h5 = old_legacy = False
        if os.path.exists(path) and os.path.getsize(path) > 0:
            if _is_hdf5(path):
                old_h5 = True
            else:
                try:
                    legacy = _legacy_sets(path)
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
                write_roilist_group(out.create_group(name, track_order=True), self)

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
                        rl = _legacy_roilist(entry, f"{path}:{key}")
                        grp = out.create_group(str(key), track_order=True)
                        write_roilist_group(grp, rl)
            if not written:
                write_new()

    def _save_imagej(self, path: str) -> None:
        entries: list[tuple[Any, np.ndarray]] = []
        for roi in self:
            rings = roi.polygons
            if not rings:
                warnings.warn(
                    f"ROI {roi.label!r} has an empty mask; it is not written to the ImageJ file",
                    stacklevel=3,
                )
            entries.extend((roi.label, r) for r in rings)
        multi_plane = any(r[0, 2] != 0 for _, r in entries)
        names = _unique_names([lab for lab, _ in entries])
        with (
            atomic_write(path, suffix=".zip") as tmp,
            zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        ):
            for name, (_, ring) in zip(names, entries, strict=True):
                position = int(ring[0, 2]) if multi_plane else None
                iroi = _polygon_to_imagej(ring, name, position)
                zf.writestr(name + ".roi", iroi.tobytes())

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
        >>> rois.transform(shift)[0].polygons[0][:, :2].tolist()
        [[2.0, 3.0], [3.0, 3.0], [3.0, 4.0]]
        """
        per_plane = _per_plane_transforms(transforms)
        out = []
        for roi in self:
            rings = []
            for ring in roi.polygons:
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

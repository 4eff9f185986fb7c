"""Carry ROIs from one imaging session to another (docs/contract.md#roi-import).

This module owns the capability behind
``ImagingDataset.import_transformed_ROIs``: estimating, plane by plane, the
geometric transform that maps the coordinates of a *source* dataset onto those
of a *target* dataset, and mapping an ROI set through it.

Two ways of finding the transform are offered:

- from **anchor ROIs** drawn in both datasets
  (:func:`estimate_plane_transforms_from_anchors`): the vertices of one ROI
  per plane are matched point to point and the transform is fitted with
  :func:`skimage.transform.estimate_transform`;
- from the **time-average images**, registered by
  :func:`sima_fast.registration.register_images` (a starting alignment from
  SIFT key points matched under RANSAC or from the Fourier–Mellin method,
  then a least-squares refinement of the whole model on the image
  intensities).

The mapped ROIs are clipped to the target frame (:func:`clip_rois_to_frame`).

Coordinates: ROI vertices use the pixel-corner convention of
:mod:`sima_fast.ROI` (pixel ``(y, x)`` covers ``[x, x + 1) × [y, y + 1)``),
while :mod:`sima_fast.registration` works, like :func:`skimage.transform.warp`,
with pixel centres at integer ``(column, row)`` coordinates. The dataset-level
functions return transforms in ROI coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sima_fast._timestamps import timestamp_key
from sima_fast._validate import ArgumentTypeError, check_bool, check_int, check_label
from sima_fast._warnings import warn
from sima_fast.registration import (
    PRE_PROCESSING_METHODS,
    check_polynomial_order,
    check_transform_method,
    far_corners,
    fit_point_transform,
    pre_process_image,
    register_images,
)
from sima_fast.ROI import ROI, ROIList

__all__ = [
    "MissingAnchorWarning",
    "ROIOutsideFrameWarning",
    "clip_rois_to_frame",
    "estimate_plane_transforms",
    "estimate_plane_transforms_from_anchors",
    "import_transformed_rois",
    "match_anchor_order",
]

# Minimum number of point pairs each model needs (polynomial: see _min_points).
_MIN_POINTS = {
    "euclidean": 2,
    "similarity": 2,
    "affine": 3,
    "projective": 4,
    "piecewise-affine": 3,
}


class MissingAnchorWarning(UserWarning):
    """A plane has no anchor points; a neighbouring plane's transform is used."""


class ROIOutsideFrameWarning(UserWarning):
    """Some transformed ROIs fell entirely outside the target frame and were dropped."""


def _min_points(method: str, method_kwargs: dict[str, Any]) -> int:
    if method == "polynomial":
        order = check_polynomial_order(method_kwargs.get("order", 2))
        return (order + 1) * (order + 2) // 2
    return _MIN_POINTS[method]


# --------------------------------------------------------------------------
# Anchors
# --------------------------------------------------------------------------


def match_anchor_order(source_points: Any, target_points: Any) -> np.ndarray:
    """Rotate a closed ring of target points to best match the source ring.

    Anchor polygons drawn in two sessions need not start at the same vertex.
    The target ring is shifted cyclically (its orientation is kept) to the
    start that minimises the summed Euclidean distance between corresponding
    points.

    Parameters
    ----------
    source_points, target_points : array_like, shape (N, 2)
        ``(x, y)`` vertices of the two rings, with the same ``N``.

    Returns
    -------
    numpy.ndarray, shape (N, 2)
        ``target_points`` re-ordered as ``np.roll(target_points, -k, axis=0)``
        for the best ``k``.

    Raises
    ------
    ValueError
        If the rings have different lengths.

    Examples
    --------
    >>> src = np.array([[0, 0], [10, 0], [10, 10], [0, 10]])
    >>> match_anchor_order(src, np.roll(src, 1, axis=0) + 0.5).tolist()
    [[0.5, 0.5], [10.5, 0.5], [10.5, 10.5], [0.5, 10.5]]
    """
    src = np.asarray(source_points, dtype=np.float64)
    dst = np.asarray(target_points, dtype=np.float64)
    if src.shape != dst.shape:
        raise ValueError(
            f"anchor rings differ in size: {len(src)} source and {len(dst)} target points"
        )
    n = len(dst)
    # cost[k] = sum_i |src_i - dst_{(i + k) mod n}|
    index = (np.arange(n)[None, :] + np.arange(n)[:, None]) % n
    cost = np.linalg.norm(src[None, :, :] - dst[index], axis=2).sum(axis=1)
    return np.roll(dst, -int(np.argmin(cost)), axis=0)


def _anchor_ring(anchors: Sequence[ROI], plane: int) -> np.ndarray | None:
    """``(x, y)`` vertices of the first anchor polygon lying on ``plane``, or None."""
    for roi in anchors:
        for ring in roi.rings:
            if int(ring[0, 2]) == plane:
                return ring[:, :2]
    return None


def _fit_points(
    method: str,
    src: np.ndarray,
    dst: np.ndarray,
    extent: tuple[float, float, float, float],
    **method_kwargs: Any,
) -> Any:
    """Fit ``method`` to point pairs; piecewise-affine gets four far corners.

    The corners, placed around ``extent`` (the region that must be covered),
    are mapped by the affine fit of the same pairs, so the mesh of the
    piecewise-affine transform covers the whole frame and continues it
    affinely beyond the outermost points.

    Returns
    -------
    skimage geometric transform
        What :func:`fit_point_transform` returns for ``method``.
    """
    if method == "piecewise-affine":
        affine = fit_point_transform("affine", src, dst)
        corners = far_corners(extent)
        src = np.vstack([src, corners])
        dst = np.vstack([dst, affine(corners)])
    return fit_point_transform(method, src, dst, **method_kwargs)


def estimate_plane_transforms_from_anchors(
    source_anchors: Sequence[ROI],
    target_anchors: Sequence[ROI],
    num_planes: int,
    method: str = "affine",
    *,
    frame_shape: tuple[int, int] | None = None,
    anchor_label: str | None = None,
    **method_kwargs: Any,
) -> list[Any]:
    """Per-plane transforms from matching anchor polygons in two sessions.

    On each plane the first anchor ROI with a polygon on that plane provides
    the points (the vertices of that polygon). The target ring is re-ordered
    cyclically with :func:`match_anchor_order` and the model is fitted with
    :func:`skimage.transform.estimate_transform` from source to target
    points. A plane without anchor points in either session takes the
    transform of the nearest plane that has them (the lower one on ties),
    with a :class:`MissingAnchorWarning`.

    Parameters
    ----------
    source_anchors, target_anchors : sequence of ROI
        The anchor ROIs of the source and of the target session.
    num_planes : int
        Number of planes (both sessions must have it).
    method : str, optional
        One of :data:`~sima_fast.registration.TRANSFORM_METHODS`. For
        ``'piecewise-affine'`` four far corner points are added, placed one
        frame size outside the frame and mapped by the affine fit of the
        anchors, so that every point of the frame is covered.
    frame_shape : tuple of int, optional
        ``(Y, X)`` of the source frame, which the piecewise-affine mesh must
        cover; by default the bounding box of the source anchor points.
    anchor_label : str, optional
        Name of the anchor set, used in error messages.
    **method_kwargs
        Passed to ``estimate_transform`` (e.g. ``order`` for ``'polynomial'``).

    Returns
    -------
    list
        One skimage geometric transform per plane, mapping source ``(x, y)``
        to target ``(x, y)`` (any common coordinate convention, e.g. ROI
        vertices).

    Raises
    ------
    ValueError
        For an unknown method, anchors with different point counts on a
        plane, too few points for the model, degenerate points, or no
        anchors on any plane.

    Examples
    --------
    >>> square = np.array([[10, 10], [50, 10], [50, 40], [10, 40]], dtype=float)
    >>> src = [ROI(polygons=square)]
    >>> dst = [ROI(polygons=np.roll(square, 2, axis=0) + [3, -2])]
    >>> (tf,) = estimate_plane_transforms_from_anchors(src, dst, 1, 'euclidean')
    >>> (np.round(tf.params, 6) + 0.0).tolist()
    [[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]]
    """
    method = check_transform_method(method)
    num_planes = int(num_planes)
    if num_planes < 1:
        raise ValueError(f"num_planes must be at least 1, got {num_planes}")
    name = "anchor ROIs" if anchor_label is None else f"anchor ROI set {anchor_label!r}"
    needed = _min_points(method, method_kwargs)
    fitted: dict[int, Any] = {}
    for z in range(num_planes):
        src = _anchor_ring(source_anchors, z)
        dst = _anchor_ring(target_anchors, z)
        if src is None or dst is None:
            continue
        if len(src) != len(dst):
            raise ValueError(
                f"{name}: plane {z} has {len(src)} anchor points in the source dataset but "
                f"{len(dst)} in the target dataset; the anchor polygons must have the same "
                "number of vertices"
            )
        if len(src) < needed:
            raise ValueError(
                f"{name}: plane {z} has {len(src)} anchor points but the {method!r} "
                f"transform needs at least {needed}"
            )
        dst = match_anchor_order(src, dst)
        if frame_shape is not None:
            extent = (0.0, 0.0, float(frame_shape[1]), float(frame_shape[0]))
        else:
            extent = (*src.min(axis=0), *src.max(axis=0))
        try:
            fitted[z] = _fit_points(method, src, dst, extent, **method_kwargs)
        except ValueError as exc:
            raise ValueError(f"{name}, plane {z}: {exc}") from exc
    if not fitted:
        raise ValueError(f"{name}: no plane has anchor points in both datasets")
    return _fill_missing_planes(fitted, num_planes, name)


def _fill_missing_planes(fitted: dict[int, Any], num_planes: int, name: str) -> list[Any]:
    """Give every plane without its own transform that of the nearest fitted plane."""
    out = []
    have = sorted(fitted)
    for z in range(num_planes):
        if z in fitted:
            out.append(fitted[z])
            continue
        nearest = min(have, key=lambda k: (abs(k - z), k))
        warn(
            f"{name}: plane {z} has no anchor points in both datasets; using the transform "
            f"of plane {nearest}",
            MissingAnchorWarning,
        )
        out.append(fitted[nearest])
    return out


# --------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------


def _plane_image(dataset: Any, plane: int, channel: int) -> np.ndarray:
    return np.asarray(dataset.time_averages[plane, :, :, channel], dtype=np.float64)


def _to_roi_coordinates(tf: Any, method: str, points: Any, **method_kwargs: Any) -> Any:
    """Re-express a pixel-centre transform in ROI (pixel-corner) coordinates."""
    if points is not None:
        src, dst = points
        kwargs = {"order": method_kwargs["order"]} if method == "polynomial" else {}
        return fit_point_transform(method, src + 0.5, dst + 0.5, **kwargs)
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    matrix = shift @ tf.params @ np.linalg.inv(shift)
    return type(tf)(matrix=matrix)


def estimate_plane_transforms(
    target_dataset: Any,
    source_dataset: Any,
    method: str = "affine",
    source_channel: Any = 0,
    target_channel: Any = 0,
    anchor_label: str | None = None,
    pre_processing_method: str | None = None,
    pre_processing_kwargs: dict[str, Any] | None = None,
    **method_kwargs: Any,
) -> list[Any]:
    """Per-plane transforms from a source dataset's ROI coordinates to a target's.

    With ``anchor_label``, the ROI set of that label in each dataset gives
    matching points (:func:`estimate_plane_transforms_from_anchors`).
    Otherwise each plane's time averages of the given channels are
    pre-processed (:func:`sima_fast.registration.pre_process_image`) and registered
    (:func:`sima_fast.registration.register_images`, source as the fixed image).

    Parameters
    ----------
    target_dataset, source_dataset : sima_fast.ImagingDataset
        The datasets; they must have the same number of planes.
    method : str, optional
        One of :data:`~sima_fast.registration.TRANSFORM_METHODS`.
    source_channel, target_channel : int or str, optional
        Channels (index or name) of the images to register.
    anchor_label : str, optional
        Label of the anchor ROI set present in both datasets.
    pre_processing_method : str, optional
        One of :data:`~sima_fast.registration.PRE_PROCESSING_METHODS` (image registration only).
    pre_processing_kwargs : dict, optional
        Keyword arguments of the pre-processing.
    **method_kwargs
        With anchors, passed to ``skimage.transform.estimate_transform``
        (e.g. ``order``); without, to :func:`sima_fast.registration.register_images` (``order``,
        ``highpass_sigma``).

    Returns
    -------
    list
        One skimage geometric transform per plane mapping source ROI
        vertices ``(x, y)`` to target ROI vertices.

    Raises
    ------
    ValueError
        Different plane counts, unknown method or pre-processing, invalid
        channels, or a failed estimation.
    KeyError
        If ``anchor_label`` names no ROI set in one of the datasets.
    """
    from sima_fast._validate import resolve_channel

    method = check_transform_method(method)
    _check_datasets(target_dataset, source_dataset)
    if pre_processing_method is not None and pre_processing_method not in PRE_PROCESSING_METHODS:
        raise ValueError(
            f"pre_processing_method: unknown pre-processing method {pre_processing_method!r}; "
            f"known methods: {list(PRE_PROCESSING_METHODS)} (or None)"
        )
    if pre_processing_kwargs is not None and not isinstance(pre_processing_kwargs, dict):
        raise ArgumentTypeError(
            f"pre_processing_kwargs must be a dict or None, got {pre_processing_kwargs!r}"
        )
    if anchor_label is not None and not isinstance(anchor_label, str):
        raise ArgumentTypeError(f"anchor_label must be a str or None, got {anchor_label!r}")
    num_planes = int(target_dataset.frame_shape[0])
    source_planes = int(source_dataset.frame_shape[0])
    if num_planes != source_planes:
        raise ValueError(
            f"the source dataset has {source_planes} plane(s) but the target dataset has "
            f"{num_planes}; ROIs can only be imported between datasets with the same number "
            "of planes"
        )
    if anchor_label is not None:
        source_anchors = _roi_set(source_dataset, anchor_label, "source")
        target_anchors = _roi_set(target_dataset, anchor_label, "target")
        return estimate_plane_transforms_from_anchors(
            source_anchors,
            target_anchors,
            num_planes,
            method,
            frame_shape=tuple(source_dataset.frame_shape[1:3]),
            anchor_label=anchor_label,
            **method_kwargs,
        )
    src_c = resolve_channel(source_channel, list(source_dataset.channel_names), "source_channel")
    tgt_c = resolve_channel(target_channel, list(target_dataset.channel_names), "target_channel")
    order = check_polynomial_order(method_kwargs.get("order", 2)) if method == "polynomial" else 2
    options = {k: v for k, v in method_kwargs.items() if k != "order"}
    unknown = set(options) - {"highpass_sigma"}
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {sorted(unknown)} for image registration; "
            "accepted: order, highpass_sigma"
        )
    pre_kwargs = dict(pre_processing_kwargs or {})
    transforms = []
    for z in range(num_planes):
        fixed, moving = (
            pre_process_image(_plane_image(ds, z, c), pre_processing_method, **pre_kwargs)
            for ds, c in ((source_dataset, src_c), (target_dataset, tgt_c))
        )
        tf, points = register_images(
            fixed, moving, method, order=order, return_points=True, **options
        )
        transforms.append(_to_roi_coordinates(tf, method, points, order=order))
    return transforms


# --------------------------------------------------------------------------
# ROIs
# --------------------------------------------------------------------------


def _roi_set(dataset: Any, label: str, which: str) -> ROIList:
    sets = dataset.ROIs
    if label not in sets:
        raise KeyError(
            f"anchor_label: the {which} dataset has no ROI set labelled {label!r}; available: "
            f"{sorted(sets)}"
        )
    return sets[label]


def _check_datasets(target_dataset: Any, source_dataset: Any) -> None:
    """Refuse anything but dataset objects (a path is a common mistake).

    Checked by the attributes used here, so that this module need not import
    :mod:`sima_fast.imaging` (which imports it).
    """
    for name, value in (("target_dataset", target_dataset), ("source_dataset", source_dataset)):
        if isinstance(value, (str, bytes)) or not all(
            hasattr(value, a) for a in ("ROIs", "frame_shape", "channel_names", "time_averages")
        ):
            hint = (
                " (open it first with ImagingDataset.load)"
                if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__")
                else ""
            )
            raise ArgumentTypeError(
                f"{name} must be a sima_fast ImagingDataset, got {value!r}{hint}"
            )


def _most_recent_label(sets: dict[str, Any], exclude: str | None) -> str:
    candidates = [(label, rois) for label, rois in sets.items() if label != exclude]
    if not candidates:
        extra = f" other than the anchor set {exclude!r}" if exclude is not None else ""
        raise ValueError(f"the source dataset has no ROI set{extra} to import")
    best = max(
        range(len(candidates)),
        key=lambda i: (timestamp_key(getattr(candidates[i][1], "timestamp", None)), i),
    )
    return candidates[best][0]


def _clip_ring(ring: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip one polygon to the rectangle ``[0, width] × [0, height]``.

    Sutherland–Hodgman clipping against the four edges in turn, followed by
    the removal of repeated consecutive vertices.

    Returns
    -------
    numpy.ndarray
        ``(n, 2)`` vertices, possibly none (shape ``(0, 2)``); a polygon
        wholly inside is returned unchanged.
    """
    pts = np.asarray(ring, dtype=np.float64)
    if pts[:, 0].min() >= 0 and pts[:, 1].min() >= 0:
        if pts[:, 0].max() <= width and pts[:, 1].max() <= height:
            return pts
    edges = ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True))
    for axis, bound, below in edges:  # keep coord <= bound if below, else coord >= bound
        if len(pts) == 0:
            break
        inside = pts[:, axis] <= bound if below else pts[:, axis] >= bound
        out = []
        for p, q, p_in, q_in in zip(
            pts, np.roll(pts, 1, axis=0), inside, np.roll(inside, 1), strict=True
        ):
            if p_in != q_in:  # the edge q -> p crosses the boundary
                t = (bound - q[axis]) / (p[axis] - q[axis])
                crossing = q + t * (p - q)
                crossing[axis] = bound
                out.append(crossing)
            if p_in:
                out.append(p)
        pts = np.array(out).reshape(-1, 2)
    if len(pts) > 1:
        pts = pts[np.any(pts != np.roll(pts, 1, axis=0), axis=1)]
    return pts


def clip_rois_to_frame(rois: Sequence[ROI], im_shape: Sequence[int]) -> ROIList:
    """Clip polygon ROIs to the frame ``[0, X] × [0, Y]`` of ``im_shape``.

    Polygons partly outside are cut at the frame edges; polygons that vanish
    (fewer than three vertices or no area left) are removed, and an ROI left
    without polygons is dropped with a :class:`ROIOutsideFrameWarning`.
    Labels, ids and tags are kept and ``im_shape`` is set.

    Parameters
    ----------
    rois : sequence of ROI
        ROIs defined by polygons (mask ROIs are clipped through their
        outlines).
    im_shape : tuple of int
        ``(Z, Y, X)`` or ``(Y, X)`` of the frame.

    Returns
    -------
    ROIList

    Examples
    --------
    >>> roi = ROI(polygons=[[-2, -2], [4, -2], [4, 4], [-2, 4]], label='a')
    >>> (clipped,) = clip_rois_to_frame([roi], (10, 10))
    >>> clipped.rings[0][:, :2].tolist()
    [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]]
    """
    if isinstance(im_shape, (str, bytes)) or not hasattr(im_shape, "__len__"):
        raise ArgumentTypeError(f"im_shape must be (Z, Y, X) or (Y, X) ints, got {im_shape!r}")
    if len(im_shape) not in (2, 3):
        raise ValueError(f"im_shape must be (Z, Y, X) or (Y, X), got {im_shape!r}")
    shape = tuple(check_int(f"im_shape[{i}]", s, low=1) for i, s in enumerate(im_shape))
    if len(shape) == 2:
        shape = (1, *shape)
    height, width = float(shape[1]), float(shape[2])
    out = []
    dropped = []
    for roi in rois:
        rings = []
        for ring in roi.rings:
            xy = _clip_ring(ring[:, :2], width, height)
            if len(xy) < 3:
                continue
            x, y = xy[:, 0], xy[:, 1]
            if abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) == 0:
                continue
            rings.append(np.column_stack([xy, np.full(len(xy), ring[0, 2])]))
        if not rings:
            dropped.append(roi.label if roi.label is not None else roi.id)
            continue
        out.append(ROI(polygons=rings, label=roi.label, id=roi.id, tags=roi.tags, im_shape=shape))
    if dropped:
        warn(
            f"{len(dropped)} ROI(s) fall entirely outside the {shape[2]}×{shape[1]} frame and "
            f"were dropped: {dropped[:10]}{' ...' if len(dropped) > 10 else ''}",
            ROIOutsideFrameWarning,
        )
    return ROIList(out)


def import_transformed_rois(
    target_dataset: Any,
    source_dataset: Any,
    method: str = "affine",
    source_channel: Any = 0,
    target_channel: Any = 0,
    source_label: str | None = None,
    target_label: str | None = None,
    anchor_label: str | None = None,
    copy_properties: bool = True,
    pre_processing_method: str | None = None,
    pre_processing_kwargs: dict[str, Any] | None = None,
    **method_kwargs: Any,
) -> ROIList:
    """Map an ROI set of ``source_dataset`` into the frame of ``target_dataset``.

    The per-plane transforms come from :func:`estimate_plane_transforms`
    (anchor ROIs or image registration). The source ROIs are mapped with
    :meth:`sima_fast.ROI.ROIList.transform`, clipped to the target frame by
    :func:`clip_rois_to_frame` and given the target's ``(Z, Y, X)`` as
    ``im_shape``. Nothing is saved: ``ImagingDataset.import_transformed_ROIs``
    stores the result with ``add_ROIs(rois, target_label)``.

    Parameters
    ----------
    target_dataset : sima_fast.ImagingDataset
        The dataset receiving the ROIs.
    source_dataset : sima_fast.ImagingDataset
        The dataset holding them.
    method : str, optional
        Transform model, one of :data:`~sima_fast.registration.TRANSFORM_METHODS` (default
        ``'affine'``).
    source_channel, target_channel : int or str, optional
        Channels whose time averages are registered (no anchors).
    source_label : str, optional
        ROI set of ``source_dataset`` to import; default the most recent
        set (by timestamp) other than ``anchor_label``.
    target_label : str, optional
        Label under which the caller stores the result (``None``: the
        timestamp, as ``add_ROIs`` does). It must differ from
        ``anchor_label``, whose set it would replace.
    anchor_label : str, optional
        ROI set present in both datasets whose first polygon per plane gives
        the matching points; without it the images are registered.
    copy_properties : bool, optional
        Keep each ROI's label, id and tags (default True); otherwise the new
        ROIs have none.
    pre_processing_method : str, optional
        Image enhancement before registration, one of
        :data:`~sima_fast.registration.PRE_PROCESSING_METHODS`.
    pre_processing_kwargs : dict, optional
        Keyword arguments of the pre-processing.
    **method_kwargs
        Options of the estimation (see :func:`estimate_plane_transforms`).

    Returns
    -------
    ROIList
        The transformed ROIs (polygon ROIs, timestamped now).

    Raises
    ------
    ValueError
        Different plane counts, unknown method or pre-processing name,
        mismatched anchor point counts, ``target_label`` equal to
        ``anchor_label``, or a failed estimation.
    KeyError
        If ``source_label`` or ``anchor_label`` names no ROI set.

    Warns
    -----
    MissingAnchorWarning
        A plane without anchors uses a neighbouring plane's transform.
    ROIOutsideFrameWarning
        ROIs falling entirely outside the target frame are dropped.
    sima_fast.registration.RegistrationWarning
        The registered images agree poorly.

    Examples
    --------
    >>> import sima_fast as sima
    >>> frames = np.zeros((2, 1, 32, 32, 1))
    >>> src = sima.ImagingDataset([sima.Sequence.create('ndarray', frames)], None)
    >>> tgt = sima.ImagingDataset([sima.Sequence.create('ndarray', frames)], None)
    >>> anchor = np.array([[4, 4], [28, 6], [26, 28], [5, 25]], dtype=float)
    >>> src.add_ROIs(ROIList([ROI(polygons=anchor)]), 'anchors')
    >>> tgt.add_ROIs(ROIList([ROI(polygons=anchor + [2, 1])]), 'anchors')
    >>> cell = ROI(polygons=[[10, 10], [14, 10], [14, 14]], label='cell')
    >>> src.add_ROIs(ROIList([cell]), 'cells')
    >>> (moved,) = import_transformed_rois(tgt, src, source_label='cells',
    ...                                    anchor_label='anchors')
    >>> moved.label, np.round(moved.rings[0][:, :2], 6).tolist()
    ('cell', [[12.0, 11.0], [16.0, 11.0], [16.0, 15.0]])
    """
    method = check_transform_method(method)
    _check_datasets(target_dataset, source_dataset)
    if target_label is not None:
        target_label = check_label("target_label", target_label)
    copy_properties = check_bool("copy_properties", copy_properties)
    if source_label is not None and not isinstance(source_label, str):
        raise ArgumentTypeError(f"source_label must be a str or None, got {source_label!r}")
    if anchor_label is not None and not isinstance(anchor_label, str):
        raise ArgumentTypeError(f"anchor_label must be a str or None, got {anchor_label!r}")
    if anchor_label is not None and target_label is not None and target_label == anchor_label:
        raise ValueError(
            f"target_label {target_label!r} is the anchor set's label; storing the imported "
            "ROIs under it would replace the anchors"
        )
    sets = source_dataset.ROIs
    if source_label is None:
        source_label = _most_recent_label(sets, anchor_label)
    elif source_label not in sets:
        raise KeyError(
            f"source_label: the source dataset has no ROI set labelled {source_label!r}; "
            f"available: {sorted(sets)}"
        )
    source_rois = sets[source_label]
    transforms = estimate_plane_transforms(
        target_dataset,
        source_dataset,
        method,
        source_channel=source_channel,
        target_channel=target_channel,
        anchor_label=anchor_label,
        pre_processing_method=pre_processing_method,
        pre_processing_kwargs=pre_processing_kwargs,
        **method_kwargs,
    )
    moved = ROIList(source_rois).transform(transforms, copy_properties=copy_properties)
    return clip_rois_to_frame(moved, tuple(target_dataset.frame_shape[:3]))

"""Carry ROIs from one imaging session to another (SPEC.md §9).

This module owns the capability behind
``ImagingDataset.import_transformed_ROIs``: estimating, plane by plane, the
geometric transform that maps the coordinates of a *source* dataset onto those
of a *target* dataset, and mapping an ROI set through it.

Two ways of finding the transform are offered:

- from **anchor ROIs** drawn in both datasets
  (:func:`estimate_plane_transforms_from_anchors`): the vertices of one ROI
  per plane are matched point to point and the transform is fitted with
  :func:`skimage.transform.estimate_transform`;
- from the **time-average images** (:func:`register_images`): a starting
  alignment from SIFT key points matched under RANSAC or from the
  Fourier–Mellin method (log-polar phase correlation), then a least-squares
  refinement of the whole model on the image intensities with
  :func:`scipy.optimize.least_squares`.

The mapped ROIs are clipped to the target frame (:func:`clip_rois_to_frame`).

Coordinates: ROI vertices use the pixel-corner convention of
:mod:`sima_fast.ROI` (pixel ``(y, x)`` covers ``[x, x + 1) × [y, y + 1)``),
while :func:`register_images` works, like :func:`skimage.transform.warp`, with
pixel centres at integer ``(column, row)`` coordinates. The dataset-level
functions return transforms in ROI coordinates.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sima_fast._timestamps import timestamp_key
from sima_fast.ROI import ROI, ROIList

__all__ = [
    "PRE_PROCESSING_METHODS",
    "TRANSFORM_METHODS",
    "MissingAnchorWarning",
    "ROIOutsideFrameWarning",
    "RegistrationWarning",
    "clip_rois_to_frame",
    "estimate_plane_transforms",
    "estimate_plane_transforms_from_anchors",
    "import_transformed_rois",
    "match_anchor_order",
    "pre_process_image",
    "register_images",
]

#: Transform models accepted as ``method`` (the names of
#: :func:`skimage.transform.estimate_transform`).
TRANSFORM_METHODS = (
    "affine",
    "similarity",
    "euclidean",
    "projective",
    "polynomial",
    "piecewise-affine",
)

#: Image pre-processing accepted as ``pre_processing_method``.
PRE_PROCESSING_METHODS = ("equalize_hist", "equalize_adapthist", "gaussian")

# Minimum number of point pairs each model needs (polynomial: see _min_points).
_MIN_POINTS = {
    "euclidean": 2,
    "similarity": 2,
    "affine": 3,
    "projective": 4,
    "piecewise-affine": 3,
}
# Image registration settings (documented in register_images).
_ANGLE_BINS = 720  # rows of the log-polar spectrum over a full turn
_SPECTRUM_UPSAMPLE = 20  # sub-bin resolution of the log-polar correlation
_RANSAC_THRESHOLD = 2.0  # px, largest residual of a RANSAC inlier
_MIN_INLIERS = 6  # fewest matched key points for a feature-based start
_SMOOTHING = (4.0, 2.0, 1.0)  # Gaussian sigmas (px) of the coarse-to-fine refinement
_MESH_SMOOTHING = (2.0, 1.0)  # the same for the piecewise-affine mesh
_MESH_NODES = 4  # mesh nodes per axis of the piecewise-affine registration
_COARSE_SIZE = 256  # px, images are block-averaged to at most this size for the start
_MAX_POINTS = 1 << 16  # pixels sampled (on a regular grid) by each refinement step
_MIN_OVERLAP = 0.1  # smallest overlap (fraction of the fixed frame) accepted
_SMALL_OVERLAP = 0.25  # warn below this overlap of the registered images
_LOW_CORRELATION = 0.4  # warn below this correlation of the registered images
_FAR_CORNER_FACTOR = 1.0  # far corners lie this many frame sizes outside the frame


class MissingAnchorWarning(UserWarning):
    """A plane has no anchor points; a neighbouring plane's transform is used."""


class ROIOutsideFrameWarning(UserWarning):
    """Some transformed ROIs fell entirely outside the target frame and were dropped."""


class RegistrationWarning(UserWarning):
    """The registered images agree poorly; the estimated transform may be wrong."""


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _check_method(method: Any) -> str:
    if not isinstance(method, str) or method.lower() not in TRANSFORM_METHODS:
        raise ValueError(
            f"unknown transform method {method!r}; known methods: {list(TRANSFORM_METHODS)}"
        )
    return method.lower()


def _polynomial_order(method_kwargs: dict[str, Any]) -> int:
    order = method_kwargs.get("order", 2)
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"polynomial order must be an integer >= 1, got {order!r}")
    return int(order)


def _min_points(method: str, method_kwargs: dict[str, Any]) -> int:
    if method == "polynomial":
        order = _polynomial_order(method_kwargs)
        return (order + 1) * (order + 2) // 2
    return _MIN_POINTS[method]


def _estimate(method: str, src: np.ndarray, dst: np.ndarray, **method_kwargs: Any) -> Any:
    """``skimage.transform.estimate_transform`` with a clear error on failure."""
    from skimage.transform import estimate_transform

    tf = estimate_transform(method, src, dst, **method_kwargs)
    if tf is None or not tf:
        raise ValueError(
            f"the {method!r} transform could not be estimated from {len(src)} point pairs "
            "(degenerate, e.g. collinear or repeated points)"
        )
    return tf


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
        for ring in roi.polygons:
            if int(ring[0, 2]) == plane:
                return ring[:, :2]
    return None


def _far_corners(extent: tuple[float, float, float, float]) -> np.ndarray:
    """Four points one frame size outside the box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = extent
    mx = _FAR_CORNER_FACTOR * max(x1 - x0, 1.0)
    my = _FAR_CORNER_FACTOR * max(y1 - y0, 1.0)
    return np.array(
        [[x0 - mx, y0 - my], [x1 + mx, y0 - my], [x1 + mx, y1 + my], [x0 - mx, y1 + my]]
    )


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
    """
    if method == "piecewise-affine":
        affine = _estimate("affine", src, dst)
        corners = _far_corners(extent)
        src = np.vstack([src, corners])
        dst = np.vstack([dst, affine(corners)])
    return _estimate(method, src, dst, **method_kwargs)


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
        One of :data:`TRANSFORM_METHODS`. For ``'piecewise-affine'`` four far
        corner points are added, placed one frame size outside the frame and
        mapped by the affine fit of the anchors, so that every point of the
        frame is covered.
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
    method = _check_method(method)
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
        warnings.warn(
            f"{name}: plane {z} has no anchor points in both datasets; using the transform "
            f"of plane {nearest}",
            MissingAnchorWarning,
            stacklevel=3,
        )
        out.append(fitted[nearest])
    return out


# --------------------------------------------------------------------------
# Image pre-processing
# --------------------------------------------------------------------------


def _fill_nan(image: np.ndarray) -> np.ndarray:
    """Float64 copy of a 2-D image with non-finite pixels set to the finite mean."""
    img = np.array(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"images must be 2-D, got shape {img.shape}")
    finite = np.isfinite(img)
    if not finite.any():
        raise ValueError("the image has no finite pixel")
    if not finite.all():
        img[~finite] = img[finite].mean()
    return img


def pre_process_image(image: Any, method: str | None, **kwargs: Any) -> np.ndarray:
    """Enhance an image before registration.

    The image is first converted to float64 with non-finite pixels replaced
    by the mean of the finite ones and rescaled to ``[0, 1]``; then

    - ``'equalize_hist'``: :func:`skimage.exposure.equalize_hist`;
    - ``'equalize_adapthist'``: :func:`skimage.exposure.equalize_adapthist`
      (contrast-limited adaptive histogram equalisation);
    - ``'gaussian'``: :func:`skimage.filters.gaussian` (default ``sigma=1``);
    - ``None``: no change beyond the conversion.

    Parameters
    ----------
    image : array_like, shape (Y, X)
        The image.
    method : str or None
        One of :data:`PRE_PROCESSING_METHODS`, or None.
    **kwargs
        Passed to the skimage function.

    Returns
    -------
    numpy.ndarray of float64, shape (Y, X)

    Raises
    ------
    ValueError
        For an unknown method (the message lists the known ones).

    Examples
    --------
    >>> img = np.arange(12.0).reshape(3, 4) ** 2
    >>> out = pre_process_image(img, 'equalize_hist')
    >>> out.shape, float(out.min()) > 0, float(out.max())
    ((3, 4), True, 1.0)
    """
    if method is not None and method not in PRE_PROCESSING_METHODS:
        raise ValueError(
            f"unknown pre-processing method {method!r}; known methods: "
            f"{list(PRE_PROCESSING_METHODS)} (or None)"
        )
    img = _fill_nan(image)
    low, high = img.min(), img.max()
    img = (img - low) / (high - low) if high > low else np.zeros_like(img)
    if method == "equalize_hist":
        from skimage.exposure import equalize_hist

        return np.asarray(equalize_hist(img, **kwargs), dtype=np.float64)
    if method == "equalize_adapthist":
        from skimage.exposure import equalize_adapthist

        return np.asarray(equalize_adapthist(img, **kwargs), dtype=np.float64)
    if method == "gaussian":
        from skimage.filters import gaussian

        kwargs.setdefault("sigma", 1.0)
        return np.asarray(gaussian(img, **kwargs), dtype=np.float64)
    return img


# --------------------------------------------------------------------------
# Image registration
# --------------------------------------------------------------------------


def _normalise(image: np.ndarray, highpass_sigma: float) -> np.ndarray:
    """Remove slow shading (Gaussian high-pass) and scale to zero mean, unit variance."""
    from scipy.ndimage import gaussian_filter

    img = _fill_nan(image)
    if highpass_sigma > 0:
        img = img - gaussian_filter(img, highpass_sigma, mode="reflect")
    std = img.std()
    if not std > 0:
        raise ValueError("cannot register a constant image")
    return (img - img.mean()) / std


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _apply_matrix(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    homog = np.column_stack([xy, np.ones(len(xy))]) @ matrix.T
    return homog[:, :2] / homog[:, 2:3]


def _warp_matrix(
    image: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``image`` at ``matrix @ (x, y, 1)`` for every pixel of ``shape``.

    Returns the warped image (zero outside) and the mask of samples inside
    ``image``.
    """
    from scipy.ndimage import map_coordinates

    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    xy = _apply_matrix(matrix, np.column_stack([cols.ravel(), rows.ravel()]))
    x, y = xy[:, 0], xy[:, 1]
    inside = (x >= 0) & (x <= image.shape[1] - 1) & (y >= 0) & (y <= image.shape[0] - 1)
    values = map_coordinates(image, [y, x], order=1, mode="nearest")
    values[~inside] = 0.0
    return values.reshape(shape[:2]), inside.reshape(shape[:2])


def _overlap_correlation(
    fixed: np.ndarray, warped: np.ndarray, inside: np.ndarray
) -> tuple[float, float]:
    """Pearson correlation over the overlap, and the overlap's fraction of the frame."""
    frac = float(inside.mean())
    if inside.sum() < 16:
        return -1.0, frac
    a = fixed[inside] - fixed[inside].mean()
    b = warped[inside] - warped[inside].mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return (float((a * b).sum()) / denom if denom > 0 else -1.0), frac


def _log_polar_spectrum(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """High-passed Fourier magnitude of a square image on a log-polar grid (half turn)."""
    from skimage.transform import warp_polar

    n = image.shape[0]
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(image * window)))
    freq = np.fft.fftshift(np.fft.fftfreq(n))
    cos = np.cos(np.pi * freq[:, None]) * np.cos(np.pi * freq[None, :])
    spectrum *= (1.0 - cos) * (2.0 - cos)  # suppress the low frequencies (DC, shading)
    radius = n // 2
    polar = warp_polar(
        spectrum,
        center=(n // 2, n // 2),
        radius=radius,
        output_shape=(_ANGLE_BINS, radius),
        scaling="log",
        order=1,
    )
    # The magnitude spectrum of a real image repeats every half turn.
    return polar[: _ANGLE_BINS // 2]


def _fourier_mellin_candidates(fixed: np.ndarray, moving: np.ndarray) -> list[np.ndarray]:
    """Similarities (3×3, fixed → moving) from the Fourier–Mellin method.

    Rotation and scale come from the phase correlation of the log-polar
    spectra; the angle is known modulo a half turn, so both candidates are
    returned, each with its translation from masked normalised
    cross-correlation.
    """
    from skimage.filters import window as make_window
    from skimage.registration import phase_cross_correlation

    size = max(*fixed.shape, *moving.shape)
    padded = []
    for img in (fixed, moving):
        pad = np.zeros((size, size))
        pad[: img.shape[0], : img.shape[1]] = img
        padded.append(pad)
    win = make_window("hann", (size, size))
    shift = phase_cross_correlation(
        _log_polar_spectrum(padded[0], win),
        _log_polar_spectrum(padded[1], win),
        upsample_factor=_SPECTRUM_UPSAMPLE,
        normalization=None,
    )[0]
    angle = -np.deg2rad(shift[0] * 360.0 / _ANGLE_BINS)
    scale = float(np.exp(shift[1] * np.log(size // 2) / (size // 2)))
    c_fixed = (np.array(fixed.shape[::-1], dtype=np.float64) - 1) / 2
    c_moving = (np.array(moving.shape[::-1], dtype=np.float64) - 1) / 2
    out = []
    for theta in (angle, angle + np.pi):
        cos, sin = scale * math.cos(theta), scale * math.sin(theta)
        sim = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
        sim[:2, 2] = c_moving - sim[:2, :2] @ c_fixed
        warped, inside = _warp_matrix(moving, sim, fixed.shape)
        if inside.sum() < 16:
            continue
        dy, dx = phase_cross_correlation(
            fixed,
            warped,
            reference_mask=np.ones(fixed.shape, dtype=bool),
            moving_mask=inside,
            overlap_ratio=_MIN_OVERLAP,
        )[0]
        # fixed(p) ≈ warped(p - d) = moving(sim (p - d))
        out.append(sim @ _translation(-float(dx), -float(dy)))
    return out


def _feature_candidate(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray | None:
    """Affine map (3×3, fixed → moving) from SIFT key points matched under RANSAC.

    Returns None when too few consistent matches are found.
    """
    from skimage.feature import SIFT, match_descriptors
    from skimage.measure import ransac
    from skimage.transform import AffineTransform

    found = []
    for img in (fixed, moving):
        low, high = np.percentile(img, [0.5, 99.5])
        scaled = np.clip((img - low) / (high - low), 0.0, 1.0) if high > low else img * 0
        octaves = int(np.clip(np.log2(min(img.shape)) - 4, 1, 8))
        detector = SIFT(upsampling=1, n_octaves=octaves)
        try:
            detector.detect_and_extract(scaled)
        except RuntimeError:  # no key points at all
            return None
        found.append((detector.keypoints[:, ::-1].astype(np.float64), detector.descriptors))
    if min(len(f[0]) for f in found) < _MIN_INLIERS:
        return None
    matches = match_descriptors(found[0][1], found[1][1], cross_check=True, max_ratio=0.8)
    if len(matches) < _MIN_INLIERS:
        return None
    src, dst = found[0][0][matches[:, 0]], found[1][0][matches[:, 1]]
    model, inliers = ransac(
        (src, dst),
        AffineTransform,
        min_samples=3,
        residual_threshold=_RANSAC_THRESHOLD,
        max_trials=1000,
        rng=0,
    )
    if model is None or not model or inliers is None or inliers.sum() < _MIN_INLIERS:
        return None
    return np.asarray(model.params, dtype=np.float64)


def _coarse_alignment(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Best starting map (3×3, fixed → moving) among feature and Fourier–Mellin candidates."""
    from scipy.ndimage import gaussian_filter

    candidates = _fourier_mellin_candidates(fixed, moving)
    feature = _feature_candidate(fixed, moving)
    if feature is not None:
        candidates.insert(0, feature)
    smooth_fixed = gaussian_filter(fixed, 1.0)
    smooth_moving = gaussian_filter(moving, 1.0)
    best, best_score = None, -np.inf
    for matrix in candidates:
        score, frac = _overlap_correlation(
            smooth_fixed, *_warp_matrix(smooth_moving, matrix, fixed.shape)
        )
        if frac >= _MIN_OVERLAP and score > best_score:
            best, best_score = matrix, score
    if best is None:
        raise ValueError("image registration failed: no alignment makes the images overlap")
    return best


def _reduced_coarse_alignment(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """:func:`_coarse_alignment` on block-averaged copies of large images.

    Both images are reduced by the same integer factor ``f`` so that no side
    exceeds ``_COARSE_SIZE``; a reduced pixel ``i`` covers full pixels
    ``f i .. f i + f - 1``, i.e. its centre lies at ``f i + (f - 1) / 2``.
    """
    from skimage.transform import downscale_local_mean

    factor = math.ceil(max(*fixed.shape, *moving.shape) / _COARSE_SIZE)
    if factor <= 1:
        return _coarse_alignment(fixed, moving)
    reduced = []
    for img in (fixed, moving):
        rows, cols = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
        reduced.append(downscale_local_mean(img[:rows, :cols], (factor, factor)))
    small = _coarse_alignment(*reduced)
    offset = (factor - 1) / 2
    to_full = np.array([[factor, 0.0, offset], [0.0, factor, offset], [0.0, 0.0, 1.0]])
    return to_full @ small @ np.linalg.inv(to_full)


# -- models of the least-squares refinement ---------------------------------
#
# Fixed pixel coordinates p are normalised as u = (p - c_fixed) / h and mapped
# to w(u); the moving pixel coordinates are c_moving + h * w. Each model gives
# w and its Jacobian dw/dparams, of shape (N, 2, P).


def _monomials(u: np.ndarray, order: int) -> np.ndarray:
    """``x**i * y**j`` for ``i + j <= order``: 1, x, y, x², xy, y², ..."""
    x, y = u[:, 0], u[:, 1]
    return np.stack([x ** (j - i) * y**i for j in range(order + 1) for i in range(j + 1)], axis=1)


def _barycentric_weights(triangulation: Any, u: np.ndarray) -> np.ndarray:
    """Dense ``(N, K)`` piecewise-linear interpolation weights of the K mesh nodes."""
    simplex = triangulation.find_simplex(u)
    weights = np.zeros((len(u), len(triangulation.points)))
    ok = simplex >= 0
    tr = triangulation.transform[simplex[ok]]
    b = np.einsum("nij,nj->ni", tr[:, :2], u[ok] - tr[:, 2])
    bary = np.column_stack([b, 1.0 - b.sum(axis=1)])
    rows = np.nonzero(ok)[0]
    for k in range(3):
        weights[rows, triangulation.simplices[simplex[ok], k]] = bary[:, k]
    return weights


class _Model:
    """A parametric map ``w(u)`` with its Jacobian (see the comment above).

    ``method`` is a matrix model ('euclidean', 'similarity', 'affine',
    'projective'), 'polynomial' (of ``order``) or 'mesh': a piecewise-linear
    map on the Delaunay triangulation of ``nodes``, whose images are the
    parameters except for the last ``len(anchored)`` nodes, held at
    ``anchored``.
    """

    def __init__(
        self,
        method: str,
        order: int = 1,
        nodes: np.ndarray | None = None,
        anchored: np.ndarray | None = None,
    ) -> None:
        self.method = method
        self.order = order if method == "polynomial" else 1
        if method == "mesh":
            from scipy.spatial import Delaunay

            if nodes is None or anchored is None:
                raise ValueError("a mesh model needs its nodes and anchored node images")
            self.triangulation = Delaunay(nodes)
            self.n_free = len(nodes) - len(anchored)
            self.anchored = anchored

    def prepare(self, u: np.ndarray) -> Any:
        """Quantities of ``u`` that do not depend on the parameters."""
        if self.method in ("affine", "polynomial"):
            return _monomials(u, self.order)
        if self.method == "mesh":
            return _barycentric_weights(self.triangulation, u)
        return None

    def initial(self, h_norm: np.ndarray) -> np.ndarray:
        """Parameters closest to the map ``h_norm`` (3×3, normalised coordinates)."""
        a, t = h_norm[:2, :2], h_norm[:2, 2]
        if self.method in ("euclidean", "similarity"):
            angle = math.atan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1])
            if self.method == "euclidean":
                return np.array([angle, t[0], t[1]])
            return np.array([angle, 0.5 * math.log(abs(np.linalg.det(a))), t[0], t[1]])
        if self.method == "projective":
            return np.concatenate([a.ravel(), t, h_norm[2, :2] / h_norm[2, 2]])
        if self.method == "mesh":
            free = self.triangulation.points[: self.n_free]
            return _apply_matrix(h_norm, free).ravel()
        coef = np.zeros((2, (self.order + 1) * (self.order + 2) // 2))
        coef[:, 0] = t
        coef[:, 1:3] = a
        return coef.ravel()

    def map(self, params: np.ndarray, u: np.ndarray, prep: Any) -> tuple[np.ndarray, np.ndarray]:
        """``w(u)`` and ``dw/dparams``."""
        n = len(u)
        jac = np.zeros((n, 2, len(params)))
        if self.method in ("euclidean", "similarity"):
            scale = math.exp(params[1]) if self.method == "similarity" else 1.0
            c, s = math.cos(params[0]), math.sin(params[0])
            ru = scale * (u @ np.array([[c, s], [-s, c]]))  # rows of s R u
            jac[:, 0, 0] = -ru[:, 1]  # d(sRu)/d angle = (-(sRu)_y, (sRu)_x)
            jac[:, 1, 0] = ru[:, 0]
            if self.method == "similarity":
                jac[:, :, 1] = ru
            jac[:, 0, -2] = 1.0
            jac[:, 1, -1] = 1.0
            return ru + params[-2:], jac
        if self.method == "projective":
            a = params[:4].reshape(2, 2)
            den = 1.0 + u @ params[6:8]
            w = (u @ a.T + params[4:6]) / den[:, None]
            for i in range(2):
                jac[:, i, 2 * i] = u[:, 0] / den
                jac[:, i, 2 * i + 1] = u[:, 1] / den
                jac[:, i, 4 + i] = 1.0 / den
                jac[:, i, 6] = -w[:, i] * u[:, 0] / den
                jac[:, i, 7] = -w[:, i] * u[:, 1] / den
            return w, jac
        if self.method == "mesh":
            free = prep[:, : self.n_free]
            w = free @ params.reshape(-1, 2) + prep[:, self.n_free :] @ self.anchored
            jac[:, 0, 0::2] = free
            jac[:, 1, 1::2] = free
            return w, jac
        k = prep.shape[1]
        w = prep @ params.reshape(2, k).T
        jac[:, 0, :k] = prep
        jac[:, 1, k:] = prep
        return w, jac

    def matrix(self, params: np.ndarray) -> np.ndarray:
        """3×3 matrix of a matrix model, in normalised coordinates."""
        m = np.eye(3)
        if self.method in ("euclidean", "similarity"):
            scale = math.exp(params[1]) if self.method == "similarity" else 1.0
            c, s = math.cos(params[0]), math.sin(params[0])
            m[:2, :2] = scale * np.array([[c, -s], [s, c]])
            m[:2, 2] = params[-2:]
        elif self.method == "projective":
            m[:2, :2] = params[:4].reshape(2, 2)
            m[:2, 2] = params[4:6]
            m[2, :2] = params[6:8]
        else:
            coef = params.reshape(2, -1)
            m[:2, :2] = coef[:, 1:3]
            m[:2, 2] = coef[:, 0]
        return m


def _refine(
    fixed: np.ndarray,
    moving: np.ndarray,
    model: _Model,
    params: np.ndarray,
    frame: tuple[np.ndarray, np.ndarray, float],
    sigmas: Sequence[float],
) -> np.ndarray:
    """Coarse-to-fine least-squares fit of ``model`` to the image intensities.

    The residual at fixed pixel p is ``g * moving(map(p)) + b - fixed(p)``
    over the pixels mapped inside the moving image, with a gain ``g`` and an
    offset ``b`` fitted alongside the geometric parameters by
    :func:`scipy.optimize.least_squares` (analytic Jacobian from the image
    gradient), on both images smoothed by a Gaussian of each of ``sigmas``.
    """
    from scipy.ndimage import gaussian_filter, map_coordinates
    from scipy.optimize import least_squares

    c_fixed, c_moving, h = frame
    n_geo = len(params)
    limit = np.array([moving.shape[1] - 1, moving.shape[0] - 1], dtype=np.float64)
    x = np.concatenate([params, [1.0, 0.0]])
    for sigma in sigmas:
        step = max(1, round(sigma), math.ceil(math.sqrt(fixed.size / _MAX_POINTS)))
        rows, cols = np.mgrid[0 : fixed.shape[0] : step, 0 : fixed.shape[1] : step]
        u = (np.column_stack([cols.ravel(), rows.ravel()]) - c_fixed) / h
        prep = model.prepare(u)
        target = gaussian_filter(fixed, sigma)[rows.ravel(), cols.ravel()]
        smooth = gaussian_filter(moving, sigma)
        grad_y, grad_x = np.gradient(smooth)
        cache: dict[bytes, tuple] = {}

        def evaluate(
            x_all: np.ndarray,
            u: np.ndarray = u,
            prep: Any = prep,
            smooth: np.ndarray = smooth,
            grad_x: np.ndarray = grad_x,
            grad_y: np.ndarray = grad_y,
            cache: dict[bytes, tuple] = cache,
        ) -> tuple:
            key = x_all.tobytes()
            if key not in cache:
                w, dw = model.map(x_all[:n_geo], u, prep)
                p = c_moving + h * w
                inside = np.all((p >= 0) & (p <= limit), axis=1)
                coords = [p[:, 1], p[:, 0]]
                cache.clear()
                cache[key] = (
                    map_coordinates(smooth, coords, order=1, mode="nearest"),
                    map_coordinates(grad_x, coords, order=1, mode="nearest"),
                    map_coordinates(grad_y, coords, order=1, mode="nearest"),
                    dw,
                    inside,
                )
            return cache[key]

        def residuals(
            x_all: np.ndarray, evaluate: Callable = evaluate, target: np.ndarray = target
        ) -> np.ndarray:
            val, _, _, _, inside = evaluate(x_all)
            return np.where(inside, x_all[n_geo] * val + x_all[n_geo + 1] - target, 0.0)

        def jacobian(x_all: np.ndarray, evaluate: Callable = evaluate) -> np.ndarray:
            val, gx, gy, dw, inside = evaluate(x_all)
            jac = np.empty((len(val), n_geo + 2))
            jac[:, :n_geo] = x_all[n_geo] * h * (gx[:, None] * dw[:, 0] + gy[:, None] * dw[:, 1])
            jac[:, n_geo] = val
            jac[:, n_geo + 1] = 1.0
            jac[~inside] = 0.0
            return jac

        x = least_squares(residuals, x, jac=jacobian, method="lm", x_scale="jac", max_nfev=50).x
    return x[:n_geo]


def _mesh_nodes(shape: tuple[int, ...]) -> np.ndarray:
    """Free nodes of the piecewise-affine mesh: a slightly perturbed grid over the frame.

    The perturbation (fixed, at most 10 % of the spacing) keeps the Delaunay
    triangulation unique, so that it does not change when the nodes are
    shifted or scaled.
    """
    ys = np.linspace(0.0, shape[0] - 1.0, _MESH_NODES)
    xs = np.linspace(0.0, shape[1] - 1.0, _MESH_NODES)
    grid = np.array([(x, y) for y in ys for x in xs])
    spacing = np.array([xs[1] - xs[0], ys[1] - ys[0]])
    jitter = np.random.default_rng(0).uniform(-0.1, 0.1, grid.shape)
    return grid + jitter * spacing


def _register(
    fixed: Any,
    moving: Any,
    method: str,
    *,
    order: int,
    highpass_sigma: float | None = None,
) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None]:
    """Core of :func:`register_images`; also returns the defining point pairs.

    For polynomial and piecewise-affine models the point pairs (fixed,
    moving) that determine the transform exactly are returned, so that the
    caller can refit it in another coordinate convention; matrix models
    return None.
    """
    from skimage.transform import (
        AffineTransform,
        EuclideanTransform,
        ProjectiveTransform,
        SimilarityTransform,
    )

    images = []
    for name, img in (("fixed", np.asarray(fixed)), ("moving", np.asarray(moving))):
        if img.ndim != 2 or min(img.shape) < 16:
            raise ValueError(
                f"{name} must be a 2-D image of at least 16×16 pixels, got shape {img.shape}"
            )
        images.append(img)
    if highpass_sigma is None:
        highpass_sigma = max(4.0, min(*images[0].shape, *images[1].shape) / 16)
    fixed_n = _normalise(images[0], float(highpass_sigma))
    moving_n = _normalise(images[1], float(highpass_sigma))

    c_fixed = (np.array(fixed_n.shape[::-1], dtype=np.float64) - 1) / 2
    c_moving = (np.array(moving_n.shape[::-1], dtype=np.float64) - 1) / 2
    h = max(*fixed_n.shape, *moving_n.shape) / 2
    frame = (c_fixed, c_moving, h)
    # normalised <-> pixel coordinates
    from_fixed = np.array([[1 / h, 0, -c_fixed[0] / h], [0, 1 / h, -c_fixed[1] / h], [0, 0, 1]])
    to_moving = np.array([[h, 0, c_moving[0]], [0, h, c_moving[1]], [0, 0, 1]])

    coarse = _reduced_coarse_alignment(fixed_n, moving_n)
    h_norm = np.linalg.inv(to_moving) @ coarse @ np.linalg.inv(from_fixed)
    global_method = "affine" if method == "piecewise-affine" else method
    model = _Model(global_method, order)
    params = _refine(fixed_n, moving_n, model, model.initial(h_norm), frame, _SMOOTHING)

    points = None
    if method in ("euclidean", "similarity", "affine", "projective"):
        matrix = to_moving @ model.matrix(params) @ from_fixed
        cls = {
            "euclidean": EuclideanTransform,
            "similarity": SimilarityTransform,
            "affine": AffineTransform,
            "projective": ProjectiveTransform,
        }[method]
        tf = cls(matrix=matrix / matrix[2, 2])
    elif method == "polynomial":
        gy, gx = np.mgrid[0 : fixed_n.shape[0] - 1 : 8j, 0 : fixed_n.shape[1] - 1 : 8j]
        src = np.column_stack([gx.ravel(), gy.ravel()])
        u = (src - c_fixed) / h
        w, _ = model.map(params, u, model.prepare(u))
        points = (src, c_moving + h * w)
        tf = _estimate("polynomial", *points, order=order)
    else:
        affine_norm = model.matrix(params)
        free = _mesh_nodes(fixed_n.shape)
        corners = _far_corners((0.0, 0.0, fixed_n.shape[1] - 1.0, fixed_n.shape[0] - 1.0))
        nodes = (np.vstack([free, corners]) - c_fixed) / h
        mesh = _Model("mesh", nodes=nodes, anchored=_apply_matrix(affine_norm, nodes[len(free) :]))
        node_params = _refine(
            fixed_n, moving_n, mesh, mesh.initial(affine_norm), frame, _MESH_SMOOTHING
        )
        dst = np.vstack([node_params.reshape(-1, 2), mesh.anchored])
        points = (np.vstack([free, corners]), c_moving + h * dst)
        tf = _estimate("piecewise-affine", *points)

    warped = _warp_transform(moving_n, tf, fixed_n.shape)
    inside = np.isfinite(warped)
    score, frac = _overlap_correlation(fixed_n, np.where(inside, warped, 0.0), inside)
    if frac < _MIN_OVERLAP:
        raise ValueError(
            f"image registration failed: the registered images overlap on {frac:.0%} of the "
            f"frame, less than {_MIN_OVERLAP:.0%}"
        )
    if score < _LOW_CORRELATION or frac < _SMALL_OVERLAP:
        warnings.warn(
            f"the registered images correlate poorly (r = {score:.2f} over {frac:.0%} of the "
            "frame); the estimated transform may be wrong (try pre_processing_method or "
            "anchor ROIs)",
            RegistrationWarning,
            stacklevel=3,
        )
    return tf, points


def _warp_transform(image: np.ndarray, tf: Callable, shape: tuple[int, ...]) -> np.ndarray:
    """``image`` sampled at ``tf(p)`` for each pixel p of ``shape`` (NaN outside)."""
    from scipy.ndimage import map_coordinates

    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    mapped = np.asarray(tf(np.column_stack([cols.ravel(), rows.ravel()])))
    x, y = mapped[:, 0], mapped[:, 1]
    inside = (x >= 0) & (x <= image.shape[1] - 1) & (y >= 0) & (y <= image.shape[0] - 1)
    values = map_coordinates(image, [y, x], order=1, mode="nearest")
    values[~inside] = np.nan
    return values.reshape(shape[:2])


def register_images(
    fixed: Any,
    moving: Any,
    method: str = "affine",
    *,
    order: int = 2,
    highpass_sigma: float | None = None,
) -> Any:
    """Find the transform that maps ``fixed`` image coordinates onto ``moving``.

    The images may be rotated, scaled, sheared and shifted relative to each
    other (tested to ±15°, ±10 % scale, shear 0.1 and shifts of 20 % of the
    field of view) and may differ in size, brightness and contrast. Steps:

    1. non-finite pixels are filled, slow shading is removed by subtracting
       a Gaussian blur of width ``highpass_sigma``, and both images are
       scaled to zero mean and unit variance;
    2. starting points, found on copies block-averaged to at most 256 px
       per side: an affine map from SIFT key points
       (:class:`skimage.feature.SIFT`, Lowe 2004) matched under RANSAC
       (:func:`skimage.measure.ransac`), and the two similarities of the
       Fourier–Mellin method (Reddy & Chatterji 1996): rotation and scale from
       the phase correlation (:func:`skimage.registration.phase_cross_correlation`)
       of the log-polar (:func:`skimage.transform.warp_polar`), high-passed
       Fourier magnitudes, known modulo a half turn, each completed by a
       masked normalised cross-correlation for the translation (Padfield
       2012). The one under which the images correlate best is kept;
    3. the model is refined on the image intensities by
       :func:`scipy.optimize.least_squares` (Levenberg–Marquardt, analytic
       Jacobian), with a gain and an offset, on images smoothed by Gaussians
       of 4, 2 and 1 px in turn (at most 65,536 pixels, on a regular grid,
       enter each step);
    4. ``'piecewise-affine'``: the affine result is refined further as a
       piecewise-linear map on a 4 × 4 mesh of nodes over the frame (nodes
       moved freely, least squares again), with four far corner nodes held
       at the affine map so that points outside the frame are covered too.

    On synthetic two-photon sessions the mean error is below 0.1 px; a
    128 × 128 pair takes about 0.5 s and a 512 × 512 pair about 3 s.

    Parameters
    ----------
    fixed, moving : array_like, shape (Y, X)
        The two images (at least 16×16 pixels each).
    method : str, optional
        The model, one of :data:`TRANSFORM_METHODS`.
    order : int, optional
        Order of the ``'polynomial'`` model (default 2).
    highpass_sigma : float, optional
        Width (px) of the Gaussian whose blur is subtracted; 0 disables it.
        Default: ``max(4, min_size / 16)``.

    Returns
    -------
    skimage geometric transform
        ``tf`` maps ``(x, y) = (column, row)`` of ``fixed`` to those of
        ``moving`` (pixel centres at integers), so that
        ``skimage.transform.warp(moving, tf, output_shape=fixed.shape)``
        resamples ``moving`` onto ``fixed``.

    Raises
    ------
    ValueError
        Unknown method, images that are too small or constant, or that do
        not overlap once registered.

    Warns
    -----
    RegistrationWarning
        When the registered images correlate poorly (Pearson r < 0.4 over
        their overlap) or overlap on less than a quarter of ``fixed``.

    References
    ----------
    D. G. Lowe, "Distinctive image features from scale-invariant keypoints",
    Int. J. Comput. Vis. 60, 91-110 (2004). :doi:`10.1023/B:VISI.0000029664.99615.94`

    B. S. Reddy and B. N. Chatterji, "An FFT-based technique for translation,
    rotation, and scale-invariant image registration", IEEE Trans. Image
    Process. 5(8), 1266-1271 (1996). :doi:`10.1109/83.506761`

    D. Padfield, "Masked object registration in the Fourier domain", IEEE
    Trans. Image Process. 21(5), 2706-2718 (2012). :doi:`10.1109/TIP.2011.2181402`

    Examples
    --------
    >>> from scipy.ndimage import gaussian_filter
    >>> from skimage.transform import EuclideanTransform, warp
    >>> rng = np.random.default_rng(0)
    >>> scene = gaussian_filter(rng.standard_normal((96, 96)), 2)
    >>> truth = EuclideanTransform(rotation=0.1, translation=(-4, 7))
    >>> moving = warp(scene, truth.inverse, order=3)
    >>> tf = register_images(scene, moving, 'euclidean')
    >>> round(float(tf.rotation), 2), np.round(tf.translation).tolist()
    (0.1, [-4.0, 7.0])
    """
    method = _check_method(method)
    if method == "polynomial":
        order = _polynomial_order({"order": order})
    return _register(fixed, moving, method, order=order, highpass_sigma=highpass_sigma)[0]


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
        return _estimate(method, src + 0.5, dst + 0.5, **kwargs)
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
    pre-processed (:func:`pre_process_image`) and registered
    (:func:`register_images`, source as the fixed image).

    Parameters
    ----------
    target_dataset, source_dataset : sima_fast.ImagingDataset
        The datasets; they must have the same number of planes.
    method : str, optional
        One of :data:`TRANSFORM_METHODS`.
    source_channel, target_channel : int or str, optional
        Channels (index or name) of the images to register.
    anchor_label : str, optional
        Label of the anchor ROI set present in both datasets.
    pre_processing_method : str, optional
        One of :data:`PRE_PROCESSING_METHODS` (image registration only).
    pre_processing_kwargs : dict, optional
        Keyword arguments of the pre-processing.
    **method_kwargs
        With anchors, passed to ``skimage.transform.estimate_transform``
        (e.g. ``order``); without, to :func:`register_images` (``order``,
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

    method = _check_method(method)
    if pre_processing_method is not None and pre_processing_method not in PRE_PROCESSING_METHODS:
        raise ValueError(
            f"unknown pre-processing method {pre_processing_method!r}; known methods: "
            f"{list(PRE_PROCESSING_METHODS)} (or None)"
        )
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
    src_c = resolve_channel(source_channel, list(source_dataset.channel_names))
    tgt_c = resolve_channel(target_channel, list(target_dataset.channel_names))
    order = _polynomial_order(method_kwargs) if method == "polynomial" else 2
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
        tf, points = _register(fixed, moving, method, order=order, **options)
        transforms.append(_to_roi_coordinates(tf, method, points, order=order))
    return transforms


# --------------------------------------------------------------------------
# ROIs
# --------------------------------------------------------------------------


def _roi_set(dataset: Any, label: str, which: str) -> ROIList:
    sets = dataset.ROIs
    if label not in sets:
        raise KeyError(
            f"the {which} dataset has no ROI set labelled {label!r}; available: {sorted(sets)}"
        )
    return sets[label]


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
    the removal of repeated consecutive vertices; the result may be empty
    (shape ``(0, 2)``). A polygon wholly inside is returned unchanged.
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
    >>> clipped.polygons[0][:, :2].tolist()
    [[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]]
    """
    shape = tuple(int(s) for s in im_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    height, width = float(shape[1]), float(shape[2])
    out = []
    dropped = []
    for roi in rois:
        rings = []
        for ring in roi.polygons:
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
        warnings.warn(
            f"{len(dropped)} ROI(s) fall entirely outside the {shape[2]}×{shape[1]} frame and "
            f"were dropped: {dropped[:10]}{' ...' if len(dropped) > 10 else ''}",
            ROIOutsideFrameWarning,
            stacklevel=2,
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
        Transform model, one of :data:`TRANSFORM_METHODS` (default
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
        :data:`PRE_PROCESSING_METHODS`.
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
    RegistrationWarning
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
    >>> moved.label, np.round(moved.polygons[0][:, :2], 6).tolist()
    ('cell', [[12.0, 11.0], [16.0, 11.0], [16.0, 15.0]])
    """
    method = _check_method(method)
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
            f"the source dataset has no ROI set labelled {source_label!r}; available: "
            f"{sorted(sets)}"
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

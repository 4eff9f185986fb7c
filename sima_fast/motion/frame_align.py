"""SIMA's ``sima.motion.frame_align``: its strategies and its alignment functions.

The strategies are sima_fast's own (:mod:`sima_fast.motion.rigid`), under
the module path SIMA scripts import them from. The functions align two
images, or two volumes, by whole pixels; every image is an array whose
last axis holds channels (``(Y, X, C)`` or ``(Z, Y, X, C)``, as SIMA's
frames without their time axis):

- :func:`shifted_corr`: the correlation of two images at one displacement;
- :func:`align_cross_correlation`: the displacement of highest normalised
  cross-correlation, over every displacement at once (FFTs);
- :func:`base_alignment`: the displacement alone;
- :func:`pyr_down_3d`: Gaussian smoothing and halving along some axes;
- :func:`pyramid_align`: coarse-to-fine alignment on such halved images,
  refined by :func:`shifted_corr` level by level;
- :func:`within_bounds`: whether a displacement lies within bounds.

Convention (SIMA's): a displacement ``d`` aligns ``target`` with
``reference`` when ``target[p] ≈ reference[p + d]``; bounds are ``(2, D)``
arrays, the lower row inclusive, the upper row exclusive.
"""

from __future__ import annotations

import itertools
import types
import warnings
from typing import Any

import numpy as np

from sima_fast._validate import ArgumentTypeError, check_int
from sima_fast.motion.rigid import PlaneTranslation2D, VolumeTranslation

__all__ = [
    "PlaneTranslation2D",
    "Struct",
    "VolumeTranslation",
    "align_cross_correlation",
    "base_alignment",
    "pyr_down_3d",
    "pyramid_align",
    "shifted_corr",
    "within_bounds",
]

#: Displacements whose overlap holds fewer than this fraction of the larger
#: image's pixels get correlation 0 (SIMA's rule: too little to compare).
MIN_OVERLAP_FRACTION = 0.25

#: Standard deviation (px) of the Gaussian applied before halving an axis.
PYRAMID_SIGMA = 1.05


class Struct(types.SimpleNamespace):
    """A bag of attributes: ``Struct(a=1).a == 1`` (SIMA's helper of that name).

    Parameters
    ----------
    **entries
        The attributes and their values.
    """


def _image(name: str, value: Any) -> np.ndarray:
    """Return an image with channels last as float64 (a copy: inputs are never modified)."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            f"{name} must be a numeric array whose last axis holds channels, got {type(value)!r}"
        ) from None
    if arr.ndim < 2:
        raise ValueError(
            f"{name} must have at least one spatial axis and a channel axis, got shape {arr.shape}"
        )
    if 0 in arr.shape:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    return arr


def _pair(reference: Any, target: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a = _image(names[0], reference)
    b = _image(names[1], target)
    if a.ndim != b.ndim or a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of axes and of channels "
            f"(last axis), got shapes {a.shape} and {b.shape}"
        )
    return a, b


def _displacement(name: str, value: Any, ndim: int) -> np.ndarray:
    """Return a whole-pixel displacement of ``ndim`` components as int64."""
    if isinstance(value, (str, bytes)) or np.ndim(value) != 1 or len(value) != ndim:
        raise ArgumentTypeError(f"{name} must be a sequence of {ndim} integers, got {value!r}")
    return np.array(
        [check_int(f"{name}[{i}]", v, integral_float=True) for i, v in enumerate(value)],
        dtype=np.int64,
    )


def _bounds(name: str, value: Any, ndim: int) -> np.ndarray | None:
    """``(2, ndim)`` int64 bounds, lower < upper on every axis, or None."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or np.shape(value) != (2, ndim):
        raise ArgumentTypeError(
            f"{name} must be None or a (2, {ndim}) array of integers (lower, upper), got {value!r}"
        )
    rows = [_displacement(f"{name}[{k}]", value[k], ndim) for k in range(2)]
    out = np.stack(rows)
    if np.any(out[0] >= out[1]):
        raise ValueError(
            f"{name} must have its lower row below its upper row on every axis, got {out.tolist()}"
        )
    return out


def _overlap_slices(
    shape_a: tuple[int, ...], shape_b: tuple[int, ...], d: np.ndarray
) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Slices of ``a`` and ``b`` pairing ``a[p + d]`` with ``b[p]``; None without overlap."""
    sa, sb = [], []
    for na, nb, k in zip(shape_a, shape_b, d.tolist()):
        lo = max(0, -k)
        hi = min(nb, na - k)
        if hi <= lo:
            return None
        sb.append(slice(lo, hi))
        sa.append(slice(lo + k, hi + k))
    return tuple(sa), tuple(sb)


def shifted_corr(reference: Any, image: Any, displacement: Any) -> float:
    """Correlation of ``image`` with ``reference`` displaced by ``displacement``.

    Over the overlap, ``image[p]`` is compared with ``reference[p +
    displacement]``: in each channel both parts are centred on their mean
    (NaN pixels ignored in the mean, then counted as the mean), and the
    normalised inner product of the two is taken; the result is the mean
    over the channels whose parts are not constant.

    Parameters
    ----------
    reference, image : array_like
        Images of the same number of axes and channels, channels last
        (``(Z, Y, X, C)`` in SIMA; any number of spatial axes is accepted).
        Their spatial shapes may differ. Neither is modified.
    displacement : sequence of int
        One whole-pixel component per spatial axis.

    Returns
    -------
    float
        The correlation, in [-1, 1]; NaN when every channel's overlap is
        constant in one of the images.

    Raises
    ------
    ArgumentTypeError
        An argument of the wrong type (named).
    ValueError
        Images of different numbers of axes or channels, or a displacement
        that leaves no overlap.

    Examples
    --------
    >>> ref = np.arange(24.0).reshape(1, 4, 6, 1) ** 2
    >>> moved = ref[:, 1:, 2:]          # moved[p] == ref[p + (0, 1, 2)]
    >>> round(shifted_corr(ref, moved, [0, 1, 2]), 6)
    1.0
    """
    ref, im = _pair(reference, image, ("reference", "image"))
    d = _displacement("displacement", displacement, ref.ndim - 1)
    cut = _overlap_slices(ref.shape[:-1], im.shape[:-1], d)
    if cut is None:
        raise ValueError(
            f"displacement {d.tolist()} leaves no overlap between reference of shape "
            f"{ref.shape} and image of shape {im.shape}"
        )
    r = ref[cut[0]].reshape(-1, ref.shape[-1])
    i = im[cut[1]].reshape(-1, im.shape[-1])
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        r = np.nan_to_num(r - np.nanmean(r, axis=0), nan=0.0)
        i = np.nan_to_num(i - np.nanmean(i, axis=0), nan=0.0)
        den = np.sqrt((r * r).sum(axis=0) * (i * i).sum(axis=0))
        per_channel = np.where(den > 0, (r * i).sum(axis=0) / den, np.nan)
        if np.all(np.isnan(per_channel)):
            return float("nan")
        return float(np.clip(np.nanmean(per_channel), -1.0, 1.0))


def _candidate_range(
    shape_a: tuple[int, ...], shape_b: tuple[int, ...], bounds: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest displacement (inclusive) with overlap, within bounds."""
    lo = -(np.array(shape_b) - 1)
    hi = np.array(shape_a) - 1
    if bounds is not None:
        lo = np.maximum(lo, bounds[0])
        hi = np.minimum(hi, bounds[1] - 1)
    return lo, hi


def _ncc_surface(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``a[p + d]`` with ``b[p]`` over their overlap, for every ``d``.

    ``a`` and ``b`` hold one channel each, same number of axes; NaN pixels
    are left out of the pairs. Index ``k`` of the result along an axis is
    the displacement ``k - (b.shape[axis] - 1)``. Displacements whose
    overlap holds fewer than :data:`MIN_OVERLAP_FRACTION` of the larger
    image's pixels, or over which either image is constant, get 0.

    Returns
    -------
    numpy.ndarray of float64
        The correlations, shape ``a.shape + b.shape - 1``.
    """
    from scipy import fft

    full = tuple(na + nb - 1 for na, nb in zip(a.shape, b.shape))
    size = tuple(fft.next_fast_len(n, real=True) for n in full)
    axes = tuple(range(a.ndim))

    def spectrum(x: np.ndarray) -> np.ndarray:
        return fft.rfftn(x, s=size, axes=axes)

    def correlate(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        out = fft.irfftn(fx * np.conj(fy), s=size, axes=axes)
        # Circular index d mod size -> displacements -(nb - 1) .. na - 1 in order.
        idx = np.ix_(*[np.arange(-(nb - 1), na) % n for na, nb, n in zip(a.shape, b.shape, size)])
        return out[idx]

    ma = np.isfinite(a)
    mb = np.isfinite(b)
    a = np.where(ma, a - (a[ma].mean() if ma.any() else 0.0), 0.0)
    b = np.where(mb, b - (b[mb].mean() if mb.any() else 0.0), 0.0)
    fa, fa2, fma = spectrum(a), spectrum(a * a), spectrum(ma.astype(np.float64))
    fb, fb2, fmb = spectrum(b), spectrum(b * b), spectrum(mb.astype(np.float64))
    n = np.rint(correlate(fma, fmb))
    sa = correlate(fa, fmb)
    sb = correlate(fma, fb)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = correlate(fa, fb) - sa * sb / n
        va = correlate(fa2, fmb) - sa * sa / n
        vb = correlate(fma, fb2) - sb * sb / n
        tiny_a = 1e-9 * max(float((a * a).sum()), 1e-300)
        tiny_b = 1e-9 * max(float((b * b).sum()), 1e-300)
        ok = n >= MIN_OVERLAP_FRACTION * np.prod(np.maximum(a.shape, b.shape))
        ok &= (va > tiny_a) & (vb > tiny_b)
        r = np.where(ok, cov / np.sqrt(np.where(ok, va * vb, 1.0)), 0.0)
    return np.clip(r, -1.0, 1.0)


def align_cross_correlation(
    pixels1: Any, pixels2: Any, displacement_bounds: Any = None
) -> tuple[np.ndarray, float]:
    """Find the whole-pixel displacement aligning ``pixels2`` with ``pixels1`` by correlation.

    For every displacement ``d`` at which the images overlap, the Pearson
    correlation of ``pixels1[p + d]`` with ``pixels2[p]`` over the overlap is
    computed (all displacements at once, with FFTs; NaN pixels are left out
    of the pairs); it is averaged over the channels and the displacement of
    the highest value is returned. Displacements whose overlap holds fewer
    than a quarter of the larger image's pixels score 0, as in SIMA, so
    that a few pixels at the edge cannot win.

    Parameters
    ----------
    pixels1, pixels2 : array_like
        Images of the same number of axes and channels, channels last
        (``(Y, X, C)`` or ``(Z, Y, X, C)``); their spatial shapes may differ.
    displacement_bounds : array_like of int, shape (2, D), optional
        Lowest (inclusive) and highest (exclusive) displacement per spatial
        axis. Default: every displacement with an overlap.

    Returns
    -------
    displacement : numpy.ndarray of int64, shape (D,)
        ``pixels2[p]`` matches ``pixels1[p + displacement]``.
    correlation : float
        The channel-averaged correlation there.

    Raises
    ------
    ArgumentTypeError
        An argument of the wrong type (named).
    ValueError
        Images of different numbers of axes or channels, bounds whose lower
        row is not below the upper one, or bounds that leave no displacement
        at which the images overlap.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(40, 50, 1))
    >>> moved = np.roll(ref, (-3, 5), axis=(0, 1))     # moved[p] == ref[p + (3, -5)]
    >>> d, corr = align_cross_correlation(ref, moved)
    >>> d.tolist(), round(corr, 6)
    ([3, -5], 1.0)
    """
    a, b = _pair(pixels1, pixels2, ("pixels1", "pixels2"))
    D = a.ndim - 1
    bounds = _bounds("displacement_bounds", displacement_bounds, D)
    lo, hi = _candidate_range(a.shape[:-1], b.shape[:-1], bounds)
    if np.any(lo > hi):
        raise ValueError(
            f"displacement_bounds {bounds.tolist()} leave no displacement at which images of "
            f"shapes {a.shape} and {b.shape} overlap"
        )
    surface = sum(_ncc_surface(a[..., c], b[..., c]) for c in range(a.shape[-1])) / a.shape[-1]
    origin = np.array(b.shape[:-1]) - 1  # index of displacement 0
    window = tuple(slice(int(low + o), int(high + o + 1)) for low, high, o in zip(lo, hi, origin))
    sub = surface[window]
    k = np.unravel_index(int(np.argmax(sub)), sub.shape)
    return np.array(k, dtype=np.int64) + lo.astype(np.int64), float(sub[k])


def base_alignment(reference: Any, target: Any, bounds: Any = None) -> np.ndarray:
    """Return the displacement :func:`align_cross_correlation` finds, without its correlation.

    Parameters
    ----------
    reference, target : array_like
        Images with channels last, as for :func:`align_cross_correlation`.
    bounds : array_like of int, shape (2, D), optional
        Lowest (inclusive) and highest (exclusive) displacement per axis.

    Returns
    -------
    numpy.ndarray of int64, shape (D,)
        ``target[p]`` matches ``reference[p + displacement]``.

    Raises
    ------
    ArgumentTypeError, ValueError
        As :func:`align_cross_correlation`.
    """
    return align_cross_correlation(reference, target, bounds)[0]


def _axes(value: Any, ndim: int) -> tuple[int, ...]:
    if value is None:
        return tuple(range(ndim))
    if isinstance(value, (str, bytes)) or np.ndim(value) != 1:
        raise ArgumentTypeError(f"axes must be None or a sequence of integers, got {value!r}")
    out = tuple(check_int("axes", v, low=-ndim, high=ndim - 1) % ndim for v in value)
    if len(set(out)) != len(out):
        raise ValueError(f"axes must not repeat an axis, got {value!r}")
    return out


def pyr_down_3d(image: Any, axes: Any = None) -> np.ndarray:
    """Smooth an image with a Gaussian and keep every other pixel along some axes.

    Parameters
    ----------
    image : array_like
        The image (any number of axes).
    axes : sequence of int, optional
        The axes to halve (each smoothed with a Gaussian of standard
        deviation 1.05 px, mirrored at the edges, then sampled at even
        indices). Default: every axis.

    Returns
    -------
    numpy.ndarray
        The smaller image: length ``ceil(n / 2)`` along the halved axes.
        Floating-point images keep their dtype, others become float64.

    Raises
    ------
    ArgumentTypeError
        A non-numeric image or non-integer axes.
    ValueError
        An empty image, or an axis out of range or repeated.

    Examples
    --------
    >>> pyr_down_3d(np.ones((5, 8, 2)), axes=(0, 1)).shape
    (3, 4, 2)
    """
    from scipy import ndimage

    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"image must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0 or 0 in arr.shape:
        raise ValueError(f"image must not be empty, got shape {arr.shape}")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    chosen = _axes(axes, arr.ndim)
    sigma = [PYRAMID_SIGMA if i in chosen else 0.0 for i in range(arr.ndim)]
    smooth = ndimage.gaussian_filter(arr, sigma)
    keep = tuple(slice(None, None, 2) if i in chosen else slice(None) for i in range(arr.ndim))
    return smooth[keep]


def within_bounds(displacement: Any, bounds: Any) -> bool:
    """Whether a displacement lies within bounds (lower inclusive, upper exclusive).

    Parameters
    ----------
    displacement : sequence of int
        One component per axis.
    bounds : array_like of int, shape (2, D), or None
        Lowest (inclusive) and highest (exclusive) value per axis; None
        bounds nothing.

    Returns
    -------
    bool

    Raises
    ------
    ArgumentTypeError
        Bounds that are not a ``(2, D)`` array for a displacement of ``D``
        components.

    Examples
    --------
    >>> within_bounds([0, 4], [[-2, -2], [3, 4]])
    False
    """
    if bounds is None:
        return True
    d = np.asarray(displacement)
    if d.ndim != 1 or d.dtype.kind not in "iuf":
        raise ArgumentTypeError(
            f"displacement must be a sequence of numbers, got {displacement!r}"
        )
    b = np.asarray(bounds)
    if b.shape != (2, len(d)) or b.dtype.kind not in "iuf":
        raise ArgumentTypeError(
            f"bounds must be None or a (2, {len(d)}) numeric array, got {bounds!r}"
        )
    return bool(np.all(b[0] <= d) and np.all(d < b[1]))


def _pyramid(
    ref: np.ndarray,
    tgt: np.ndarray,
    min_shape: np.ndarray,
    levels_left: float,
    bounds: np.ndarray | None,
) -> np.ndarray | None:
    halve = np.minimum(ref.shape[:-1], tgt.shape[:-1]) >= 2 * min_shape
    if levels_left <= 0 or not halve.any():
        lo, hi = _candidate_range(ref.shape[:-1], tgt.shape[:-1], bounds)
        if np.any(lo > hi):
            return None
        return align_cross_correlation(ref, tgt, bounds)[0]
    axes = tuple(int(i) for i in np.flatnonzero(halve))
    factor = 1 + halve.astype(np.int64)
    coarse_bounds = None
    if bounds is not None:
        coarse_bounds = np.stack(
            [np.floor(bounds[0] / factor), np.ceil(bounds[1] / factor)]
        ).astype(np.int64)
    coarse = _pyramid(
        pyr_down_3d(ref, axes), pyr_down_3d(tgt, axes), min_shape, levels_left - 1, coarse_bounds
    )
    if coarse is None:
        return None
    best, best_corr = None, -np.inf
    steps = [range(-1, 2) if h else range(1) for h in halve]
    for step in itertools.product(*steps):
        d = factor * coarse + np.array(step, dtype=np.int64)
        overlaps = _overlap_slices(ref.shape[:-1], tgt.shape[:-1], d) is not None
        if not overlaps or not within_bounds(d, bounds):
            continue
        corr = shifted_corr(ref, tgt, d)
        if best is None or corr > best_corr:  # NaN (constant overlap) never beats a number
            best, best_corr = d, corr
    return best


def pyramid_align(
    reference: Any,
    target: Any,
    min_shape: Any = 32,
    max_levels: int | None = None,
    bounds: Any = None,
) -> np.ndarray | None:
    """Whole-pixel alignment coarse to fine, on images halved level by level.

    Every spatial axis on which both images are at least ``2 * min_shape``
    long is halved (:func:`pyr_down_3d`), and so on while some axis is long
    enough and levels remain; the smallest images are aligned by
    :func:`align_cross_correlation`. Going back up, the displacement found
    is doubled along the halved axes and the best of it and its neighbours
    (±1 px along those axes, within ``bounds``) by :func:`shifted_corr` on
    that level's images is kept.

    Parameters
    ----------
    reference, target : array_like
        Images of the same number of axes and channels, channels last
        (``(Z, Y, X, C)`` or ``(Y, X, C)``).
    min_shape : int or sequence of int, optional
        Smallest length an axis is halved to (per spatial axis or one for
        all). Default 32.
    max_levels : int, optional
        Most halvings; default: as many as ``min_shape`` allows. 0 aligns the
        images as given.
    bounds : array_like of int, shape (2, D), optional
        Lowest (inclusive) and highest (exclusive) displacement per axis.

    Returns
    -------
    numpy.ndarray of int64, shape (D,), or None
        ``target[p]`` matches ``reference[p + displacement]``; None (with a
        warning) when no displacement within ``bounds`` overlaps.

    Raises
    ------
    ArgumentTypeError
        An argument of the wrong type (named).
    ValueError
        Images of different numbers of axes or channels, ``min_shape`` below
        1, ``max_levels`` below 0, or bounds whose lower row is not below
        the upper one.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> ref = rng.normal(size=(80, 96, 1))
    >>> moved = np.roll(ref, (6, -9), axis=(0, 1))
    >>> pyramid_align(ref, moved, min_shape=16).tolist()
    [-6, 9]
    """
    ref, tgt = _pair(reference, target, ("reference", "target"))
    D = ref.ndim - 1
    if isinstance(min_shape, (str, bytes)) or np.ndim(min_shape) > 1:
        raise ArgumentTypeError(f"min_shape must be an integer or {D} integers, got {min_shape!r}")
    if np.ndim(min_shape) == 0:
        shape = np.full(D, check_int("min_shape", min_shape, low=1), dtype=np.int64)
    elif len(min_shape) == D:
        shape = np.array([check_int("min_shape", v, low=1) for v in min_shape], dtype=np.int64)
    else:
        raise ArgumentTypeError(f"min_shape must be an integer or {D} integers, got {min_shape!r}")
    levels = np.inf if max_levels is None else check_int("max_levels", max_levels, low=0)
    b = _bounds("bounds", bounds, D)
    out = _pyramid(ref, tgt, shape, levels, b)
    if out is None:
        warnings.warn(
            f"pyramid_align: no displacement within bounds {b.tolist()} overlaps the images",
            RuntimeWarning,
            stacklevel=2,
        )
    return out

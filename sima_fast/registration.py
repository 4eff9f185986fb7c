"""Image registration: translations, warps and the geometric registration engine.

This module holds the image-registration building blocks of sima_fast, shared
by the import of ROIs across sessions (:mod:`sima_fast.transform_rois`) and by
motion correction:

- preparing images: :func:`fill_nan` (non-finite pixels set to the finite
  mean), :func:`normalise` (Gaussian high-pass, zero mean and unit variance)
  and :func:`pre_process_image` (contrast enhancement);
- translations: :func:`phase_correlation` estimates the shift between two
  images with sub-pixel precision and :func:`shift_image` applies one;
  :class:`RigidRegistrar` registers blocks of frames against one reference
  (the engine of the rigid motion correction strategies, on the kernels of
  :mod:`sima_fast.kernels.motion`);
- warps: :func:`warp_image` resamples an image through a matrix or any
  coordinate map (bilinear, NaN outside), on the numba kernels of
  :mod:`sima_fast.kernels.warp`;
- point transforms: :data:`TRANSFORM_METHODS`, :func:`check_transform_method`,
  :func:`check_polynomial_order`, :func:`fit_point_transform` and
  :func:`far_corners` fit the scikit-image models to point pairs;
- :func:`register_images`: the full registration of two images that may be
  rotated, scaled, sheared and shifted relative to each other (SIFT and
  Fourier–Mellin starting points, then a least-squares refinement on the
  intensities).

Coordinates: pixel centres are at integer positions. Shifts are given as
``(dy, dx)`` (rows, columns); matrices and transforms act on ``(x, y) =
(column, row)``, as in :mod:`skimage.transform`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from sima_fast._warnings import warn

__all__ = [
    "PRE_PROCESSING_METHODS",
    "TRANSFORM_METHODS",
    "BatchRegistrar",
    "RegistrationWarning",
    "RigidRegistrar",
    "ShiftEstimate",
    "check_polynomial_order",
    "check_transform_method",
    "far_corners",
    "fill_nan",
    "fit_point_transform",
    "normalise",
    "phase_correlation",
    "pre_process_image",
    "register_images",
    "shift_image",
    "warp_image",
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
_SUBPIXEL_HALF_WIDTH = 0.75  # px searched on each side of the integer correlation peak
_MIN_TAPER = 32.0  # px, narrowest default taper of BatchRegistrar (up to a quarter of the side)


class RegistrationWarning(UserWarning):
    """The registered images agree poorly; the estimated transform may be wrong."""


class ShiftEstimate(NamedTuple):
    """A translation found by :func:`phase_correlation`.

    ``fixed(y, x) ≈ moving(y - dy, x - dx)``: shifting ``moving`` by
    ``(dy, dx)`` (:func:`shift_image`) aligns it with ``fixed``.
    """

    dy: float
    """Shift along rows (px)."""
    dx: float
    """Shift along columns (px)."""
    peak: float
    """Height of the correlation peak (see :func:`phase_correlation`)."""


# --------------------------------------------------------------------------
# Point transforms
# --------------------------------------------------------------------------


def check_transform_method(method: Any) -> str:
    """Validate the name of a transform model.

    Parameters
    ----------
    method : str
        One of :data:`TRANSFORM_METHODS`, in any letter case.

    Returns
    -------
    str
        The name in lower case.

    Raises
    ------
    ValueError
        If ``method`` is not a known model (the message lists them).

    Examples
    --------
    >>> check_transform_method('Affine')
    'affine'
    """
    if not isinstance(method, str) or method.lower() not in TRANSFORM_METHODS:
        raise ValueError(
            f"unknown transform method {method!r}; known methods: {list(TRANSFORM_METHODS)}"
        )
    return method.lower()


def check_polynomial_order(order: Any) -> int:
    """Validate the order of a ``'polynomial'`` transform.

    Parameters
    ----------
    order : int
        The order; an integer of at least 1 (``bool`` is refused).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        For anything else.
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise ValueError(f"polynomial order must be an integer >= 1, got {order!r}")
    return int(order)


def fit_point_transform(
    method: str, src: np.ndarray, dst: np.ndarray, **method_kwargs: Any
) -> Any:
    """Fit a scikit-image transform model to point pairs, failing loudly.

    Parameters
    ----------
    method : str
        One of :data:`TRANSFORM_METHODS`.
    src, dst : numpy.ndarray, shape (N, 2)
        Corresponding ``(x, y)`` points; the transform maps ``src`` to
        ``dst``.
    **method_kwargs
        Passed to :func:`skimage.transform.estimate_transform` (e.g.
        ``order`` for ``'polynomial'``).

    Returns
    -------
    skimage geometric transform

    Raises
    ------
    ValueError
        If the model cannot be estimated (degenerate points, e.g. collinear
        or repeated).

    Examples
    --------
    >>> src = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    >>> tf = fit_point_transform('affine', src, src + [2.0, -1.0])
    >>> np.round(tf.translation, 6).tolist()
    [2.0, -1.0]
    """
    from skimage.transform import estimate_transform

    tf = estimate_transform(method, src, dst, **method_kwargs)
    if tf is None or not tf:
        raise ValueError(
            f"the {method!r} transform could not be estimated from {len(src)} point pairs "
            "(degenerate, e.g. collinear or repeated points)"
        )
    return tf


def far_corners(extent: tuple[float, float, float, float]) -> np.ndarray:
    """Four points one box size outside the box ``(x0, y0, x1, y1)``.

    A piecewise-affine transform is only defined inside the convex hull of
    its points; adding these corners (mapped by an affine fit) makes it cover
    the whole box and continue affinely beyond it.

    Parameters
    ----------
    extent : tuple of float
        ``(x0, y0, x1, y1)`` of the box.

    Returns
    -------
    numpy.ndarray, shape (4, 2)
        ``(x, y)`` of the corners, clockwise from the top left (sides of
        zero length count as 1).

    Examples
    --------
    >>> far_corners((0.0, 0.0, 10.0, 20.0)).tolist()
    [[-10.0, -20.0], [20.0, -20.0], [20.0, 40.0], [-10.0, 40.0]]
    """
    x0, y0, x1, y1 = extent
    mx = _FAR_CORNER_FACTOR * max(x1 - x0, 1.0)
    my = _FAR_CORNER_FACTOR * max(y1 - y0, 1.0)
    return np.array(
        [[x0 - mx, y0 - my], [x1 + mx, y0 - my], [x1 + mx, y1 + my], [x0 - mx, y1 + my]]
    )


# --------------------------------------------------------------------------
# Image preparation
# --------------------------------------------------------------------------


def fill_nan(image: Any) -> np.ndarray:
    """Float64 copy of a 2-D image with non-finite pixels set to the finite mean.

    Parameters
    ----------
    image : array_like, shape (Y, X)
        The image (any numeric dtype; NaN or ±inf mark missing pixels).

    Returns
    -------
    numpy.ndarray of float64, shape (Y, X)
        A new array; ``image`` is not modified.

    Raises
    ------
    ValueError
        If the image is not 2-D or has no finite pixel.

    Examples
    --------
    >>> fill_nan([[1.0, np.nan], [np.inf, 3.0]]).tolist()
    [[1.0, 2.0], [2.0, 3.0]]
    """
    img = np.array(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"images must be 2-D, got shape {img.shape}")
    finite = np.isfinite(img)
    if not finite.any():
        raise ValueError("the image has no finite pixel")
    if not finite.all():
        img[~finite] = img[finite].mean()
    return img


def normalise(image: Any, highpass_sigma: float) -> np.ndarray:
    """Remove slow shading and scale an image to zero mean and unit variance.

    Non-finite pixels are filled first (:func:`fill_nan`); then a Gaussian
    blur of width ``highpass_sigma`` (reflecting edges) is subtracted, which
    removes vignetting and other shading slower than that width.

    Parameters
    ----------
    image : array_like, shape (Y, X)
        The image.
    highpass_sigma : float
        Width (px) of the subtracted blur; 0 skips the high-pass.

    Returns
    -------
    numpy.ndarray of float64, shape (Y, X)
        The normalised image (mean 0, standard deviation 1).

    Raises
    ------
    ValueError
        If the image is not 2-D, has no finite pixel, or is constant (after
        the high-pass).

    Examples
    --------
    >>> out = normalise(np.arange(12.0).reshape(3, 4), 0)
    >>> round(float(out.mean()), 12) + 0.0, round(float(out.std()), 12)
    (0.0, 1.0)
    """
    from scipy.ndimage import gaussian_filter

    img = fill_nan(image)
    if highpass_sigma > 0:
        img = img - gaussian_filter(img, highpass_sigma, mode="reflect")
    std = img.std()
    if not std > 0:
        raise ValueError("cannot register a constant image")
    return (img - img.mean()) / std


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
    img = fill_nan(image)
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
# Translations
# --------------------------------------------------------------------------


def _shift_limits(max_shift: Any) -> np.ndarray:
    """``(max |dy|, max |dx|)`` from None, a number or a pair."""
    if max_shift is None:
        return np.array([np.inf, np.inf])
    limits = np.broadcast_to(np.asarray(max_shift, dtype=np.float64), (2,)).copy()
    if np.isnan(limits).any() or (limits < 0).any():
        raise ValueError(f"max_shift must be non-negative, got {max_shift!r}")
    return limits


def _signed_shifts(n: int) -> np.ndarray:
    """Return the circular shift of each index of an ``n``-point correlation: 0, 1, ..., -1."""
    index = np.arange(n)
    return np.where(index > n // 2, index - n, index)


def _upsampled_correlation(spectrum: np.ndarray, ty: np.ndarray, tx: np.ndarray) -> np.ndarray:
    """Evaluate the inverse DFT of ``spectrum`` at the shifts ``ty`` × ``tx`` only (real part).

    Evaluates ``(1/N) sum_k spectrum[k] exp(2πi (ky ty / ny + kx tx / nx))``
    for every pair of ``ty`` and ``tx`` as two matrix products, which costs
    far less than an inverse FFT of an upsampled spectrum (Guizar-Sicairos et
    al. 2008).

    Returns
    -------
    numpy.ndarray
        ``(len(ty), len(tx))`` real correlation values.
    """
    ny, nx = spectrum.shape
    ky = np.fft.fftfreq(ny) * ny
    kx = np.fft.fftfreq(nx) * nx
    rows = np.exp(2j * np.pi * np.outer(ty, ky) / ny)
    cols = np.exp(2j * np.pi * np.outer(kx, tx) / nx)
    return (rows @ spectrum @ cols).real / (ny * nx)


def phase_correlation(
    fixed: Any,
    moving: Any,
    *,
    upsample: int = 1,
    max_shift: float | tuple[float, float] | None = None,
    normalization: str | None = "phase",
    window: bool = True,
) -> ShiftEstimate:
    """Estimate the translation between two images by phase correlation.

    Both images are filled (:func:`fill_nan`: NaN or infinite pixels take
    the finite mean, so that after the mean is subtracted they contribute
    nothing), their means are subtracted, and (``window``, the default) both
    are multiplied by a 2-D Hann window. The cross-power spectrum
    ``F · conj(M)`` of their Fourier transforms is divided by its magnitude
    (``normalization='phase'``, Kuglin & Hines 1975) so that every frequency
    counts equally, and transformed back: the correlation surface peaks at
    the shift that aligns ``moving`` with ``fixed``. The highest peak within
    ``max_shift`` is taken at whole-pixel precision, then, with
    ``upsample > 1``, refined on a grid of ``1 / upsample`` px over ±0.75 px
    around it by evaluating the inverse DFT at those shifts only (the
    matrix-multiply DFT of Guizar-Sicairos et al. 2008).

    Parameters
    ----------
    fixed, moving : array_like, shape (Y, X)
        The reference image and the image to align, of the same shape (any
        numeric dtype).
    upsample : int, optional
        Sub-pixel resolution: the shift is found to ``1 / upsample`` px
        (default 1, whole pixels).
    max_shift : float or (float, float), optional
        Largest ``|dy|`` and ``|dx|`` considered (one number for both);
        default: any circular shift, i.e. up to half the image size.
    normalization : {'phase', None}, optional
        ``'phase'`` (default): phase correlation. ``None``: plain
        cross-correlation, whose peak is the Pearson correlation of the
        (windowed) images at that circular shift.
    window : bool, optional
        Apply a Hann window before the transform (default True). Frames of
        a moving field of view are not periodic: without the window their
        borders, which do not move, produce a spurious peak at zero shift.
        Use ``False`` only for images that are circular shifts of each
        other, where the window would blur the estimate.

    Returns
    -------
    ShiftEstimate
        ``(dy, dx, peak)``: ``fixed(y, x) ≈ moving(y - dy, x - dx)``, i.e.
        ``shift_image(moving, (dy, dx))`` aligns ``moving`` with ``fixed``
        (the convention of :func:`skimage.registration.phase_cross_correlation`).
        ``peak`` is the height of the correlation surface at the shift: for
        phase correlation at most 1, reached (with ``window=False``) when
        the images are exact circular shifts of each other, and near 0 when
        they are unrelated (frequencies whose cross-power is below 1e-12 of
        the strongest one carry no usable phase; they are left out and lower
        the peak); for ``normalization=None`` a Pearson correlation, in
        ``[-1, 1]``.

    Raises
    ------
    ValueError
        For images that are not 2-D, differ in shape, have no finite pixel or
        are constant, or for an invalid ``upsample``, ``max_shift`` or
        ``normalization``.

    Notes
    -----
    Shifts are circular: a shift of ``d`` cannot be told from ``d - Y``
    (rows) or ``d - X`` (columns), so the estimate lies in
    ``[-Y/2, Y/2]`` × ``[-X/2, X/2]``; ``max_shift`` narrows that range. The
    cost is two forward FFTs and one inverse FFT of the image size, plus
    ``O(upsample · Y · X)`` for the refinement.

    Accuracy measured in ``tests/test_registration.py`` (smoothed-noise
    images, ``upsample=100``): exact circular sub-pixel shifts are found to
    the grid step with ``window=False`` (up to 0.02 px for even sizes, whose
    Nyquist frequency cannot carry a sub-pixel shift of a real image);
    shifted 128 × 128 crops of a larger field to about 0.05 px. Missing
    pixels cost more with phase correlation, which weights the sharp edges
    of a filled hole like any other detail (errors up to about 0.2 px when
    4 % of a smooth image is missing), than with ``normalization=None``
    (0.02 px).

    References
    ----------
    C. D. Kuglin and D. C. Hines, "The phase correlation image alignment
    method", Proc. IEEE Int. Conf. on Cybernetics and Society, 163-165 (1975).

    M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel
    image registration algorithms", Opt. Lett. 33(2), 156-158 (2008).
    :doi:`10.1364/OL.33.000156`

    Examples
    --------
    Two crops of one field of view, the second seeing it moved by
    ``(-3.25, 1.5)`` px:

    >>> from scipy.ndimage import fourier_shift, gaussian_filter
    >>> rng = np.random.default_rng(0)
    >>> field = gaussian_filter(rng.standard_normal((160, 160)), 1.5)
    >>> moved = np.fft.ifft2(fourier_shift(np.fft.fft2(field), (-3.25, 1.5))).real
    >>> fixed, moving = field[16:144, 16:144], moved[16:144, 16:144]
    >>> dy, dx, peak = phase_correlation(fixed, moving, upsample=20)
    >>> dy, dx
    (3.25, -1.5)

    so that ``shift_image(moving, (dy, dx))`` lies on ``fixed``.
    """
    from scipy import fft

    a = fill_nan(fixed)
    b = fill_nan(moving)
    if a.shape != b.shape:
        raise ValueError(f"the images differ in shape: {a.shape} and {b.shape}")
    if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)) or upsample < 1:
        raise ValueError(f"upsample must be an integer >= 1, got {upsample!r}")
    if normalization not in ("phase", None):
        raise ValueError(f"normalization must be 'phase' or None, got {normalization!r}")
    limits = _shift_limits(max_shift)
    a -= a.mean()
    b -= b.mean()
    if window:
        taper = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
        a *= taper
        b *= taper
    spectrum = fft.fft2(a) * np.conj(fft.fft2(b))
    magnitude = np.abs(spectrum)
    largest = float(magnitude.max())
    if not largest > 0:
        raise ValueError("cannot register a constant image")
    if normalization == "phase":
        keep = magnitude > largest * 1e-12
        spectrum = np.where(keep, spectrum / np.where(keep, magnitude, 1.0), 0.0)
        scale = 1.0
    else:
        scale = math.sqrt(float((a * a).sum() * (b * b).sum()))
    surface = fft.ifft2(spectrum).real / scale
    sy = _signed_shifts(a.shape[0])
    sx = _signed_shifts(a.shape[1])
    allowed = (np.abs(sy) <= limits[0])[:, None] & (np.abs(sx) <= limits[1])[None, :]
    iy, ix = np.unravel_index(np.argmax(np.where(allowed, surface, -np.inf)), surface.shape)
    dy, dx, peak = float(sy[iy]), float(sx[ix]), float(surface[iy, ix])
    if upsample > 1:
        half = math.ceil(_SUBPIXEL_HALF_WIDTH * upsample)
        offsets = np.arange(-half, half + 1) / upsample
        ty, tx = dy + offsets, dx + offsets
        fine = _upsampled_correlation(spectrum, ty, tx) / scale
        ok = (np.abs(ty) <= limits[0])[:, None] & (np.abs(tx) <= limits[1])[None, :]
        jy, jx = np.unravel_index(np.argmax(np.where(ok, fine, -np.inf)), fine.shape)
        dy, dx, peak = float(ty[jy]), float(tx[jx]), float(fine[jy, jx])
    return ShiftEstimate(dy + 0.0, dx + 0.0, peak)


def _half_spectrum_correlation(
    half: np.ndarray, nx: int, ty: np.ndarray, tx: np.ndarray
) -> np.ndarray:
    """:func:`_upsampled_correlation` of a real surface given by its ``rfft2`` half spectrum.

    The surface is real, so its spectrum is Hermitian: the columns left out
    by ``rfft2`` contribute the complex conjugates of the ones kept, and the
    real part of the sum over the half, counting every column but the first
    (and the Nyquist column of an even width) twice, is the full sum.

    Returns
    -------
    numpy.ndarray
        ``(len(ty), len(tx))`` real correlation values.
    """
    ny, nxr = half.shape
    ky = np.fft.fftfreq(ny) * ny
    kx = np.arange(nxr, dtype=np.float64)
    weight = np.full(nxr, 2.0)
    weight[0] = 1.0
    if nx % 2 == 0:
        weight[-1] = 1.0
    rows = np.exp(2j * np.pi * np.outer(ty, ky) / ny)
    cols = np.exp(2j * np.pi * np.outer(kx, tx) / nx) * weight[:, None]
    return (rows @ half @ cols).real / (ny * nx)


def _frame_block(frames: Any, shape: tuple[int, int]) -> np.ndarray:
    """Return frames as an ``(n, Y, X)`` array the kernels read as it is (checked).

    Returns
    -------
    numpy.ndarray
        Native integer, float32 or float64 frames (anything else, e.g.
        float16, bool or byte-swapped, converted to float64).

    Raises
    ------
    ValueError
        Frames of another shape.
    """
    arr = np.asarray(frames)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != shape:
        raise ValueError(f"frames must be (n, {shape[0]}, {shape[1]}); got {arr.shape}")
    readable = arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and arr.dtype.itemsize >= 4)
    if not readable or not arr.dtype.isnative:
        arr = arr.astype(np.float64)
    return arr


class RigidRegistrar:
    """Register blocks of frames against one reference image by (phase) correlation.

    The engine of the rigid motion-correction strategies
    (:mod:`sima_fast.motion`): built once per reference, it keeps the
    reference's spectrum and reuses its buffers, and :meth:`register`
    estimates the translation of every frame of a block at once. Each frame
    is mean-subtracted, its unobserved (NaN) pixels set to 0, and tapered
    at its edges (:func:`sima_fast.kernels.motion.prepare_frames`); the
    cross-power spectrum with the reference is whitened (phase correlation)
    or not (plain cross-correlation) and multiplied by a Gaussian of width
    ``smooth_sigma`` (which smooths the correlation surface and damps the
    noisy high frequencies that whitening amplifies); the highest peak
    within ``max_shift`` is found (:func:`sima_fast.kernels.motion.find_peaks`)
    and, when asked, refined to a fraction of a pixel.

    Parameters
    ----------
    reference : array_like, shape (Y, X)
        The reference image (NaN marks unknown pixels).
    whiten : bool, optional
        Phase correlation (default True) or plain cross-correlation.
    smooth_sigma : float, optional
        Width (px) of the Gaussian smoothing of the correlation surface;
        0 (default) for none.
    taper : float, optional
        Width (px) of the raised-cosine fall to 0 at the frame edges
        (:func:`sima_fast.kernels.motion.edge_taper`); default: an eighth of
        the smaller side.
    max_shift : float or (float, float), optional
        Largest ``|dy|``, ``|dx|`` searched; default: any circular shift.
    subpixel : {None, 'gaussian', 'upsample'}, optional
        None (default): whole pixels. ``'gaussian'``: a three-point Gaussian
        fit along each axis of the (smoothed) surface. ``'upsample'``: the
        surface evaluated on a ``1 / upsample`` px grid over ±0.75 px around
        the integer peak (matrix-multiply DFT, Guizar-Sicairos et al. 2008).
    upsample : int, optional
        Grid factor of ``subpixel='upsample'`` (default 20).
    recentre : bool, optional
        Register twice, the second time with each frame's
        taper moved by its whole-pixel shift so that it covers the content
        the reference's taper covers (default True). A taper fixed to the
        frame pulls estimates towards zero (about 0.5 % of the shift);
        moving it halves the error of large shifts, for twice the work.
    workers : int, optional
        Threads of ``scipy.fft`` (default 1).

    Raises
    ------
    ValueError
        For a reference that is not 2-D or has no finite pixel, or an
        invalid option.

    Examples
    --------
    >>> from scipy.ndimage import gaussian_filter
    >>> rng = np.random.default_rng(1)
    >>> field = gaussian_filter(rng.standard_normal((96, 96)), 2.0)
    >>> ref = field[16:80, 16:80]
    >>> frames = np.stack([field[13:77, 18:82], field[16:80, 16:80]])
    >>> RigidRegistrar(ref).register(frames)[:, :2].tolist()  # the first moved up 3, right 2
    [[-3.0, 2.0], [0.0, 0.0]]
    """

    def __init__(
        self,
        reference: Any,
        *,
        whiten: bool = True,
        smooth_sigma: float = 0.0,
        taper: float | None = None,
        max_shift: float | tuple[float, float] | None = None,
        subpixel: str | None = None,
        upsample: int = 20,
        recentre: bool = True,
        workers: int = 1,
    ) -> None:
        from sima_fast.kernels.motion import edge_taper, prepare_frames

        ref = np.asarray(reference, dtype=np.float64)
        if ref.ndim != 2:
            raise ValueError(f"reference must be 2-D, got shape {ref.shape}")
        if not np.isfinite(ref).any():
            raise ValueError("reference has no finite pixel")
        if subpixel not in (None, "gaussian", "upsample"):
            raise ValueError(f"subpixel must be None, 'gaussian' or 'upsample', got {subpixel!r}")
        if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)):
            raise ValueError(f"upsample must be an integer >= 1, got {upsample!r}")
        if upsample < 1:
            raise ValueError(f"upsample must be an integer >= 1, got {upsample!r}")
        if not smooth_sigma >= 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma!r}")
        self.shape = ref.shape
        ny, nx = ref.shape
        self.whiten = bool(whiten)
        self.subpixel = subpixel
        self.upsample = int(upsample)
        self.recentre = bool(recentre)
        self.workers = int(workers)
        self.limits = _shift_limits(max_shift)
        width = min(ny, nx) / 8.0 if taper is None else float(taper)
        if not width >= 0:
            raise ValueError(f"taper must be >= 0, got {taper!r}")
        self.taper = edge_taper(ref.shape, width)
        self.dtype = np.float64
        self._buffer = np.empty((0, ny, nx), dtype=np.float64)
        prepared = prepare_frames(
            ref[None], self.taper, np.zeros((1, 2), np.int64), np.empty((1, ny, nx))
        )[0]
        from scipy import fft

        spec = fft.rfft2(prepared)
        mag = np.abs(spec)
        if not mag.max() > 0:
            raise ValueError("cannot register against a constant reference")
        if self.whiten:
            spec = spec / (mag + 1e-6 * mag.max())
        if smooth_sigma > 0:
            ky = np.fft.fftfreq(ny)[:, None]
            kx = np.fft.rfftfreq(nx)[None, :]
            spec = spec * np.exp(-2.0 * np.pi**2 * smooth_sigma**2 * (ky**2 + kx**2))
        self._reference = np.ascontiguousarray(spec)

    def register(self, frames: Any) -> np.ndarray:
        """Estimate the translation of every frame of a block.

        Parameters
        ----------
        frames : array_like, shape (n, Y, X) or (Y, X)
            Frames of the reference's shape, any real dtype (read as they
            are); NaN marks unobserved pixels.

        Returns
        -------
        numpy.ndarray of float64, shape (n, 3)
            ``(dy, dx, peak)`` per frame: ``reference(p) ≈ frame(p - d)``, so
            frame pixel ``p`` belongs at ``p + d`` (whole numbers unless
            ``subpixel``); ``peak`` is the height of the correlation surface
            there (relative: higher is a better match). A frame with no
            finite pixel gives ``(0, 0, 0)``.

        Raises
        ------
        ValueError
            Frames of another shape.
        """
        from scipy import fft

        from sima_fast.kernels.motion import cross_power, find_peaks, prepare_frames

        arr = _frame_block(frames, self.shape)
        n = arr.shape[0]
        if self._buffer.shape[0] < n:
            self._buffer = np.empty((n, *self.shape), dtype=self.dtype)
        buf = self._buffer[:n]
        offsets = np.zeros((n, 2), dtype=np.int64)
        out = np.empty((n, 3))
        passes = 2 if self.recentre else 1
        for _ in range(passes):
            prepare_frames(arr, self.taper, offsets, buf)
            spectra = fft.rfft2(buf, workers=self.workers)
            cross_power(spectra, self._reference, self.whiten, 1e-6)
            surfaces = fft.irfft2(spectra, s=self.shape, workers=self.workers)
            find_peaks(
                surfaces,
                float(self.limits[0]),
                float(self.limits[1]),
                self.subpixel == "gaussian",
                out,
            )
            ok = np.isfinite(out[:, :2]).all(axis=1)
            offsets[ok] = np.round(out[ok, :2]).astype(np.int64)
        if self.subpixel == "upsample" and self.upsample > 1:
            half = math.ceil(_SUBPIXEL_HALF_WIDTH * self.upsample)
            offsets = np.arange(-half, half + 1) / self.upsample
            for i in range(n):
                if not np.isfinite(out[i, 0]):
                    continue
                ty, tx = np.round(out[i, 0]) + offsets, np.round(out[i, 1]) + offsets
                fine = _half_spectrum_correlation(spectra[i], self.shape[1], ty, tx)
                ok = (np.abs(ty) <= self.limits[0])[:, None] & (np.abs(tx) <= self.limits[1])[
                    None, :
                ]
                jy, jx = np.unravel_index(np.argmax(np.where(ok, fine, -np.inf)), fine.shape)
                out[i] = ty[jy], tx[jx], fine[jy, jx]
        empty = ~np.isfinite(out[:, 0])
        out[empty] = 0.0
        return out


class BatchRegistrar:
    """Register blocks of frames against one reference, sub-pixel, in float32.

    The per-frame method of :class:`sima_fast.OnlineRegistrar`, a block of
    frames at a time on its kernels (:mod:`sima_fast.kernels.online`): the
    reference is made periodic (its edge jumps removed, no taper), whitened
    and multiplied by a Gaussian of width ``smooth_sigma`` once; each frame
    is tapered at its edges (raised cosine, its weighted mean removed,
    unobserved pixels as the mean), transformed (float32 ``scipy.fft``), its
    spectrum whitened and multiplied by the reference's; the correlation map
    is transformed back only on the rows the search window needs, and its
    highest point within ``max_shift`` is refined by a parabola through the
    logarithms of the peak and its neighbours. As only the frame is
    tapered, the estimates are not pulled towards zero shift, so one pass
    suffices (:class:`RigidRegistrar` needs two for that, with
    ``recentre``). Buffers are kept from block to block. With several
    ``workers`` the frames are shared out between threads, each running the
    whole chain on its share (single-threaded FFTs and kernels), rather than
    every step being split between threads: no thread idles or spins between
    the steps (numba's OpenMP threads busy-wait after each parallel kernel,
    taking cores from the FFT's own threads).

    Parameters
    ----------
    reference : array_like, shape (Y, X)
        The reference image (NaN marks unknown pixels, filled with the mean).
    smooth_sigma : float, optional
        Width (px) of the Gaussian smoothing of the correlation map (default 1.5).
    taper : float, optional
        Width (px) of the frames' edge taper; default: an eighth of the
        smaller side, but at least 32 px and at most a quarter of it (a
        narrow taper lets content moving in and out at the edges bias
        small frames).
    max_shift : float or (float, float), optional
        Largest ``|dy|``, ``|dx|`` searched; default: up to half the frame.
    workers : int, optional
        Threads registering the frames, each a share of every block
        (default 1).

    Raises
    ------
    ValueError
        For a reference that is not 2-D (at least 2×2), has no finite
        pixel or is constant, or an invalid option.

    Examples
    --------
    >>> from scipy.ndimage import gaussian_filter
    >>> field = gaussian_filter(np.random.default_rng(7).standard_normal((160, 160)), 3.0)
    >>> frames = np.stack([field[13:141, 18:146], field[16:144, 16:144]])
    >>> d = BatchRegistrar(field[16:144, 16:144]).register(frames)
    >>> (np.round(d[:, :2]) + 0.0).tolist()  # the first frame moved up 3, right 2
    [[-3.0, 2.0], [0.0, 0.0]]
    """

    #: Frames transformed together (bounds the buffers: about 1.6 MB per 512² frame).
    BLOCK = 32

    def __init__(
        self,
        reference: Any,
        *,
        smooth_sigma: float = 1.5,
        taper: float | None = None,
        max_shift: float | tuple[float, float] | None = None,
        workers: int = 1,
    ) -> None:
        from sima_fast.kernels.online import reference_spectrum, taper_window

        ref = np.asarray(reference, dtype=np.float64)
        if ref.ndim != 2 or min(ref.shape) < 2:
            raise ValueError(f"reference must be 2-D, at least 2×2, got shape {ref.shape}")
        finite = np.isfinite(ref)
        if not finite.any():
            raise ValueError("reference has no finite pixel")
        if ref[finite].min() == ref[finite].max():
            raise ValueError("cannot register against a constant reference")
        if not smooth_sigma >= 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma!r}")
        ny, nx = self.shape = ref.shape
        side = min(ny, nx)
        width = min(max(side / 8.0, _MIN_TAPER), side / 4.0) if taper is None else float(taper)
        if not width >= 0:
            raise ValueError(f"taper must be >= 0, got {taper!r}")
        self.workers = int(workers)
        self.limits = _shift_limits(max_shift)
        # whole-pixel search window, within what the map can tell apart
        self._window = tuple(
            int(min(lim, (n - 1) // 2)) for lim, n in zip(self.limits, self.shape)
        )
        ref = np.where(finite, ref, ref[finite].mean())
        self._reference, self._ideal = reference_spectrum(ref, float(smooth_sigma))
        self._wy = taper_window(ny, width)
        self._wx = taper_window(nx, width)
        rows = 2 * (self._window[0] + 1) + 1
        self._row0 = rows // 2 if rows < ny else 0
        self._map_rows = rows
        # per thread: (frames tapered, rows of the correlation maps), grown on demand
        self._scratch: list[tuple[np.ndarray, np.ndarray]] = []

    def _buffers(self, slot: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the scratch buffers of thread ``slot``, for blocks of at least ``n`` frames."""
        while len(self._scratch) <= slot:
            self._scratch.append((np.empty((0, *self.shape), dtype=np.float32), np.empty(0)))
        if self._scratch[slot][0].shape[0] < n:
            self._scratch[slot] = (
                np.empty((n, *self.shape), dtype=np.float32),
                np.empty((n, self._map_rows, self.shape[1] // 2 + 1), dtype=np.complex64),
            )
        return self._scratch[slot]

    def register(self, frames: Any) -> np.ndarray:
        """Estimate the translation of every frame of a block.

        With ``workers`` above 1 the frames are split between that many
        threads, each running the whole chain (taper, FFTs, peak) on its
        share with single-threaded FFTs and kernels: no thread waits for
        another between the steps.

        Parameters
        ----------
        frames : array_like, shape (n, Y, X) or (Y, X)
            Frames of the reference's shape, any real dtype and layout (read
            as they are); NaN marks unobserved pixels.

        Returns
        -------
        numpy.ndarray of float64, shape (n, 3)
            ``(dy, dx, peak)`` per frame: ``reference(p) ≈ frame(p - d)``, so
            frame pixel ``p`` belongs at ``p + d``; ``peak`` is the height of
            the correlation map there relative to a perfect match (1). A frame
            with no finite pixel gives ``(0, 0, 0)``.

        Raises
        ------
        ValueError
            Frames of another shape.
        """
        arr = _frame_block(frames, self.shape)
        n = arr.shape[0]
        out = np.empty((n, 3))
        parts = max(1, min(self.workers, n))
        if parts == 1:
            self._chain(arr, out, 0, self.BLOCK, self.workers)
        else:
            from concurrent.futures import ThreadPoolExecutor

            # the buffers stay about BLOCK frames in all
            block = max(1, self.BLOCK // parts)
            bounds = [n * k // parts for k in range(parts + 1)]
            for k in range(parts):
                self._buffers(k, min(block, bounds[k + 1] - bounds[k]))

            def run(k: int) -> None:
                a, b = bounds[k], bounds[k + 1]
                self._chain(arr[a:b], out[a:b], k, block, 1)

            with ThreadPoolExecutor(parts) as pool:
                for done in [pool.submit(run, k) for k in range(parts)]:
                    done.result()
        np.clip(out[:, 0], -self.limits[0], self.limits[0], out=out[:, 0])
        np.clip(out[:, 1], -self.limits[1], self.limits[1], out=out[:, 1])
        empty = ~np.isfinite(out[:, :2]).all(axis=1)
        out[empty] = 0.0
        return out

    def _chain(
        self, arr: np.ndarray, out: np.ndarray, slot: int, block: int, workers: int
    ) -> None:
        """Register ``arr`` (n, Y, X) into ``out`` (n, 3), ``block`` frames at a time.

        The kernels are the serial, per-frame ones (numba's threads are not
        used: threads of this class run side by side, which numba's workqueue
        threading layer would not allow for parallel kernels); ``workers``
        threads run the FFTs.
        """
        from scipy import fft

        from sima_fast.kernels.online import correlation_peak, taper_image, whiten_cross

        n = arr.shape[0]
        if n == 0:
            return
        block = min(n, block)
        work_all, rows_all = self._buffers(slot, block)
        ny, nx = self.shape
        my, mx = self._window
        r0 = self._row0
        wy, wx, reference = self._wy, self._wx, self._reference
        for s in range(0, n, block):
            m = min(block, n - s)
            work = work_all[:m]
            for i in range(m):
                taper_image(arr[s + i], wy, wx, work[i])
            spectra = fft.rfft2(work, workers=workers)
            for i in range(m):
                whiten_cross(spectra[i], reference)
            if r0 == 0:
                corr = fft.irfft2(spectra, s=self.shape, workers=workers, overwrite_x=True)
            else:
                half = fft.ifft(spectra, axis=1, workers=workers, overwrite_x=True)
                rows = rows_all[:m]
                rows[:, :r0] = half[:, ny - r0 :]
                rows[:, r0:] = half[:, : r0 + 1]
                corr = fft.irfft(rows, n=nx, axis=2, workers=workers)
            for i in range(m):
                py, px, height = correlation_peak(corr[i], my, mx, r0)
                out[s + i] = -py, -px, height / self._ideal


def _output_array(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Float32 output for float32 images, float64 otherwise."""
    dtype = np.float32 if image.dtype == np.float32 else np.float64
    return np.empty(shape, dtype=dtype)


def _as_image(image: Any) -> np.ndarray:
    """Return ``image`` as a 2-D or 3-D array the kernels read as it is.

    Native integer, float32 and float64 arrays are kept; anything else
    (float16, bool, byte-swapped data) is converted to float64.

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` or ``(Y, X, C)``.
    """
    img = np.asarray(image)
    native = img.dtype.isnative and (img.dtype.kind in "iu" or img.dtype.itemsize >= 4)
    if not native or img.dtype.kind not in "iuf":
        img = img.astype(np.float64)
    if img.ndim not in (2, 3):
        raise ValueError(f"images must have shape (Y, X) or (Y, X, C), got {img.shape}")
    return img


def shift_image(image: Any, shift: tuple[float, float], *, cval: float = np.nan) -> np.ndarray:
    """Translate an image by ``shift = (dy, dx)`` pixels (bilinear, sub-pixel).

    ``out[y, x] = image(y - dy, x - dx)``: positive shifts move the content
    down and to the right (as :func:`scipy.ndimage.shift`). Whole-pixel
    shifts copy the values exactly. Runs on
    :func:`sima_fast.kernels.warp.shift_frame`.

    Parameters
    ----------
    image : array_like, shape (Y, X) or (Y, X, C)
        The image (channels are shifted together).
    shift : tuple of float
        ``(dy, dx)`` in pixels, e.g. the ``dy, dx`` of
        :func:`phase_correlation`.
    cval : float, optional
        Value of the pixels shifted in from outside (default NaN).

    Returns
    -------
    numpy.ndarray, same shape as ``image``
        float32 for a float32 image, float64 otherwise.

    Raises
    ------
    ValueError
        If the image is not 2-D or 3-D, or the shift is not finite.

    Examples
    --------
    >>> shift_image(np.arange(4.0).reshape(1, 4), (0, 1.5)).tolist()
    [[nan, nan, 0.5, 1.5]]
    """
    from sima_fast.kernels.warp import shift_frame

    img = _as_image(image)
    return shift_frame(img, shift, _output_array(img, img.shape), cval)


def warp_image(
    image: Any,
    transform: Any,
    output_shape: tuple[int, int] | None = None,
    *,
    cval: float = np.nan,
) -> np.ndarray:
    """Resample an image through a coordinate map (bilinear, ``cval`` outside).

    Output pixel ``(row, col)`` takes the value of ``image`` at
    ``transform((col, row))`` by bilinear interpolation; samples outside
    ``image`` (beyond its outermost pixel centres) are ``cval``. This is the
    convention of :func:`skimage.transform.warp` with an inverse map: the
    transforms of :func:`register_images` (fixed → moving) resample
    ``moving`` onto the frame of ``fixed``. A NaN pixel spoils only the
    samples it takes part in with a nonzero weight (see
    :mod:`sima_fast.kernels.warp`).

    Parameters
    ----------
    image : array_like, shape (Y, X) or (Y, X, C)
        The image (channels are resampled together); uint16, float32 and
        float64 images are read without a converted copy.
    transform : array_like or callable
        A 3×3 (affine or projective) or 2×3 (affine) matrix, a
        :class:`skimage.transform.ProjectiveTransform` (or subclass: affine,
        similarity, Euclidean), all resampled directly by
        :func:`sima_fast.kernels.warp.warp_affine`; or any callable mapping
        an ``(N, 2)`` array of output ``(x, y)`` to input ``(x, y)`` (e.g. a
        polynomial or piecewise-affine transform), sampled by
        :func:`sima_fast.kernels.warp.sample_bilinear`.
    output_shape : tuple of int, optional
        ``(Y, X)`` of the output (default: that of ``image``).
    cval : float, optional
        Value outside the image (default NaN).

    Returns
    -------
    numpy.ndarray, shape ``output_shape`` (+ channels)
        float32 for a float32 image, float64 otherwise.

    Raises
    ------
    ValueError
        For an image that is not 2-D or 3-D or a matrix of the wrong shape.

    Examples
    --------
    >>> img = np.arange(12.0).reshape(3, 4)
    >>> shift_right = [[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]]  # output x samples input x - 1
    >>> warp_image(img, shift_right)[0].tolist()
    [nan, 0.0, 1.0, 2.0]
    """
    from sima_fast.kernels.warp import sample_bilinear, warp_affine

    img = _as_image(image)
    rows, cols = img.shape[:2] if output_shape is None else (int(s) for s in output_shape[:2])
    out = _output_array(img, (rows, cols, *img.shape[2:]))
    matrix = _transform_matrix(transform)
    if matrix is not None:
        return warp_affine(img, matrix, out, cval)
    r, c = np.mgrid[:rows, :cols].astype(np.float64)
    mapped = np.asarray(transform(np.column_stack([c.ravel(), r.ravel()])), dtype=np.float64)
    flat = out.reshape(rows * cols, *img.shape[2:])
    sample_bilinear(img, mapped[:, 1], mapped[:, 0], flat, cval)
    return out


def _transform_matrix(transform: Any) -> np.ndarray | None:
    """Return the 3×3 matrix of a matrix or projective-family transform; None for other maps."""
    if not callable(transform):
        m = np.asarray(transform, dtype=np.float64)
        if m.shape == (2, 3):
            m = np.vstack([m, [0.0, 0.0, 1.0]])
        if m.shape != (3, 3):
            raise ValueError(f"a transform matrix must be 3×3 or 2×3, got shape {m.shape}")
        return m
    from skimage.transform import ProjectiveTransform

    if isinstance(transform, ProjectiveTransform):
        m = np.asarray(transform.params, dtype=np.float64)
        if m.shape != (3, 3):
            raise ValueError(f"expected a 2-D transform (3×3 matrix), got shape {m.shape}")
        return m
    return None


# --------------------------------------------------------------------------
# Image registration
# --------------------------------------------------------------------------


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _apply_matrix(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    homog = np.column_stack([xy, np.ones(len(xy))]) @ matrix.T
    return homog[:, :2] / homog[:, 2:3]


def _warp_matrix(
    image: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Sample a finite ``image`` at ``matrix @ (x, y, 1)`` for every pixel of ``shape``.

    Returns
    -------
    warped : numpy.ndarray
        The warped image, zero outside ``image``.
    inside : numpy.ndarray of bool
        Where the sample fell inside ``image``.
    """
    warped = warp_image(image, matrix, shape[:2])
    inside = np.isfinite(warped)
    warped[~inside] = 0.0
    return warped, inside


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
    """Return similarities (3×3, fixed → moving) from the Fourier–Mellin method.

    Rotation and scale come from the phase correlation of the log-polar
    spectra; the angle is known modulo a half turn, so both candidates are
    returned, each with its translation from masked normalised
    cross-correlation.

    Returns
    -------
    list of numpy.ndarray
        The candidate 3×3 matrices.
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
    """Return the affine map (3×3, fixed → moving) from SIFT key points matched under RANSAC.

    Returns
    -------
    numpy.ndarray or None
        The 3×3 matrix, or None when too few consistent matches are found.
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
    """Run :func:`_coarse_alignment` on block-averaged copies of large images.

    Both images are reduced by the same integer factor ``f`` so that no side
    exceeds ``_COARSE_SIZE``; a reduced pixel ``i`` covers full pixels
    ``f i .. f i + f - 1``, i.e. its centre lies at ``f i + (f - 1) / 2``.

    Returns
    -------
    numpy.ndarray
        The 3×3 matrix (fixed → moving) in full-resolution pixels.
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
    """Fit ``model`` to the image intensities by coarse-to-fine least squares.

    The residual at fixed pixel p is ``g * moving(map(p)) + b - fixed(p)``
    over the pixels mapped inside the moving image, with a gain ``g`` and an
    offset ``b`` fitted alongside the geometric parameters by
    :func:`scipy.optimize.least_squares` (analytic Jacobian from the image
    gradient), on both images smoothed by a Gaussian of each of ``sigmas``.

    Returns
    -------
    numpy.ndarray
        The refined geometric parameters (gain and offset dropped).
    """
    from scipy.ndimage import gaussian_filter
    from scipy.optimize import least_squares

    from sima_fast.kernels.warp import sample_bilinear

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
        # the smoothed image and its gradient, sampled together at each evaluation
        stack = np.stack([smooth, grad_x, grad_y], axis=-1)
        cache: dict[bytes, tuple] = {}

        def evaluate(
            x_all: np.ndarray,
            u: np.ndarray = u,
            prep: Any = prep,
            stack: np.ndarray = stack,
            cache: dict[bytes, tuple] = cache,
        ) -> tuple:
            key = x_all.tobytes()
            if key not in cache:
                w, dw = model.map(x_all[:n_geo], u, prep)
                p = c_moving + h * w
                inside = np.all((p >= 0) & (p <= limit), axis=1)
                cache.clear()
                sampled = sample_bilinear(stack, p[:, 1], p[:, 0], np.empty((len(p), 3)), 0.0)
                cache[key] = (sampled[:, 0], sampled[:, 1], sampled[:, 2], dw, inside)
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
    """Return the free nodes of the piecewise-affine mesh: a slightly perturbed grid.

    The perturbation (fixed, at most 10 % of the spacing) keeps the Delaunay
    triangulation unique, so that it does not change when the nodes are
    shifted or scaled.

    Returns
    -------
    numpy.ndarray
        ``(n, 2)`` node positions ``(x, y)`` spread over a frame of ``shape``.
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
    """Register ``moving`` on ``fixed`` (the core of :func:`register_images`).

    For polynomial and piecewise-affine models the point pairs (fixed,
    moving) that determine the transform exactly are returned too, so that
    the caller can refit it in another coordinate convention.

    Returns
    -------
    tf : skimage geometric transform
        As :func:`register_images` returns it.
    points : tuple of numpy.ndarray or None
        ``(fixed, moving)`` point pairs, or None for matrix models.
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
    fixed_n = normalise(images[0], float(highpass_sigma))
    moving_n = normalise(images[1], float(highpass_sigma))

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
        tf = fit_point_transform("polynomial", *points, order=order)
    else:
        affine_norm = model.matrix(params)
        free = _mesh_nodes(fixed_n.shape)
        corners = far_corners((0.0, 0.0, fixed_n.shape[1] - 1.0, fixed_n.shape[0] - 1.0))
        nodes = (np.vstack([free, corners]) - c_fixed) / h
        mesh = _Model("mesh", nodes=nodes, anchored=_apply_matrix(affine_norm, nodes[len(free) :]))
        node_params = _refine(
            fixed_n, moving_n, mesh, mesh.initial(affine_norm), frame, _MESH_SMOOTHING
        )
        dst = np.vstack([node_params.reshape(-1, 2), mesh.anchored])
        points = (np.vstack([free, corners]), c_moving + h * dst)
        tf = fit_point_transform("piecewise-affine", *points)

    warped = warp_image(moving_n, tf, fixed_n.shape)
    inside = np.isfinite(warped)
    score, frac = _overlap_correlation(fixed_n, np.where(inside, warped, 0.0), inside)
    if frac < _MIN_OVERLAP:
        raise ValueError(
            f"image registration failed: the registered images overlap on {frac:.0%} of the "
            f"frame, less than {_MIN_OVERLAP:.0%}"
        )
    if score < _LOW_CORRELATION or frac < _SMALL_OVERLAP:
        warn(
            f"the registered images correlate poorly (r = {score:.2f} over {frac:.0%} of the "
            "frame); the estimated transform may be wrong (try pre_processing_method or "
            "anchor ROIs)",
            RegistrationWarning,
        )
    return tf, points


def register_images(
    fixed: Any,
    moving: Any,
    method: str = "affine",
    *,
    order: int = 2,
    highpass_sigma: float | None = None,
    return_points: bool = False,
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
       the cross-correlation (:func:`skimage.registration.phase_cross_correlation`)
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
    return_points : bool, optional
        Also return the point pairs that define the transform (default
        False).

    Returns
    -------
    tf : skimage geometric transform
        ``tf`` maps ``(x, y) = (column, row)`` of ``fixed`` to those of
        ``moving`` (pixel centres at integers), so that
        ``skimage.transform.warp(moving, tf, output_shape=fixed.shape)`` or
        :func:`warp_image` resamples ``moving`` onto ``fixed``.
    points : tuple of numpy.ndarray or None
        Only with ``return_points``: for the ``'polynomial'`` and
        ``'piecewise-affine'`` models, the ``(fixed, moving)`` point pairs,
        each of shape ``(N, 2)``, from which ``tf`` was fitted exactly (so
        that it can be refitted in another coordinate convention, e.g. with
        :func:`fit_point_transform`); None for the matrix models, whose
        ``tf.params`` can be conjugated instead.

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
    method = check_transform_method(method)
    if method == "polynomial":
        order = check_polynomial_order(order)
    tf, points = _register(fixed, moving, method, order=order, highpass_sigma=highpass_sigma)
    return (tf, points) if return_points else tf

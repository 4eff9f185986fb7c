"""Tests for sima_fast.registration and the warp kernels (sima_fast.kernels.warp).

Ground truth comes by construction: shifts made with integer rolls or with
:func:`scipy.ndimage.fourier_shift`, crops of a larger field, and warps whose
matrix is known. Each kernel is compared with a slow, obviously correct
reference: :func:`scipy.ndimage.map_coordinates` / :func:`scipy.ndimage.shift`
(``order=1``, ``mode='constant'``, ``cval=NaN``) on finite images, and a
literal per-point bilinear interpolation (:func:`bilinear_reference`) on images
with NaN, where scipy lets a NaN leak through a zero interpolation weight.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.ndimage import fourier_shift, gaussian_filter, map_coordinates
from scipy.ndimage import shift as ndi_shift
from skimage.transform import (
    AffineTransform,
    EuclideanTransform,
    PiecewiseAffineTransform,
    PolynomialTransform,
    ProjectiveTransform,
    SimilarityTransform,
    warp,
)

from sima_fast.kernels.warp import SNAP, sample_bilinear, shift_frame, warp_affine
from sima_fast.registration import (
    TRANSFORM_METHODS,
    ShiftEstimate,
    check_polynomial_order,
    check_transform_method,
    far_corners,
    fill_nan,
    fit_point_transform,
    normalise,
    phase_correlation,
    register_images,
    shift_image,
    warp_image,
)

# --------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------


def snapped(s: float) -> tuple[int, float]:
    """Whole pixel and fraction of ``s``; within ``SNAP`` of a pixel centre is the centre."""
    i = math.floor(s)
    f = s - i
    if f < SNAP:
        return i, 0.0
    if f > 1.0 - SNAP:
        return i + 1, 0.0
    return i, f


def bilinear_reference(image: np.ndarray, ys, xs, cval: float = np.nan) -> np.ndarray:
    """Bilinear samples, one point at a time, by the definition in kernels/warp.py.

    ``image`` is (Y, X) or (Y, X, C); returns (N,) or (N, C) float64.
    """
    img = np.asarray(image, dtype=np.float64)
    img3 = img[:, :, None] if img.ndim == 2 else img
    ny, nx, nc = img3.shape
    ys = np.asarray(ys, dtype=np.float64).ravel()
    xs = np.asarray(xs, dtype=np.float64).ravel()
    out = np.full((len(ys), nc), float(cval))
    for i, (y, x) in enumerate(zip(ys, xs)):
        if not (0 <= y <= ny - 1 and 0 <= x <= nx - 1):
            continue
        (y0, fy), (x0, fx) = snapped(y), snapped(x)
        value = np.zeros(nc)
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                if wy * wx > 0:
                    value = value + wy * wx * img3[y0 + dy, x0 + dx]
        out[i] = value
    return out[:, 0] if img.ndim == 2 else out


def grid_coordinates(matrix: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Input (rows, cols) sampled for each output pixel: ``matrix @ (x, y, 1)``."""
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    h = np.stack([cols.ravel(), rows.ravel(), np.ones(rows.size)])
    u, v, w = matrix @ h
    return (v / w).reshape(shape), (u / w).reshape(shape)


def warp_reference(image: np.ndarray, matrix: np.ndarray, shape, cval=np.nan) -> np.ndarray:
    """:func:`warp_affine` by scipy (finite images) — per channel."""
    y, x = grid_coordinates(matrix, shape)
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        return map_coordinates(img, [y, x], order=1, mode="constant", cval=cval)
    return np.stack(
        [
            map_coordinates(img[..., c], [y, x], order=1, mode="constant", cval=cval)
            for c in range(img.shape[2])
        ],
        axis=-1,
    )


def smooth_noise(shape, sigma=1.5, seed=0, wrap=True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap" if wrap else "reflect")


def circular_shift(image: np.ndarray, shift) -> np.ndarray:
    """``image`` moved by ``shift`` = (dy, dx), circularly: out(p) = image(p - shift)."""
    return np.fft.ifft2(fourier_shift(np.fft.fft2(image), shift)).real


def random_matrix(rng: np.random.Generator, projective: bool) -> np.ndarray:
    angle = rng.uniform(-0.5, 0.5)
    scale = rng.uniform(0.7, 1.4)
    c, s = math.cos(angle), math.sin(angle)
    m = np.array([[scale * c, -scale * s, 0.0], [scale * s, scale * c, 0.0], [0.0, 0.0, 1.0]])
    m[0, 1] += rng.uniform(-0.2, 0.2)  # shear
    m[:2, 2] = rng.uniform(-4, 4, 2)
    if projective:
        m[2, :2] = rng.uniform(-0.02, 0.02, 2)
    return m


def make_image(rng, shape, dtype, nan_fraction):
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 65535, shape).astype(dtype)
    img = rng.normal(size=shape).astype(dtype)
    if nan_fraction:
        img[rng.random(shape) < nan_fraction] = np.nan
    return img


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------


def test_reference_agrees_with_scipy_on_finite_images():
    """The literal reference is itself checked against map_coordinates."""
    rng = np.random.default_rng(0)
    img = rng.normal(size=(7, 9))
    ys = np.concatenate([rng.uniform(-1, 7, 200), [0, 6, 6, 0, 3, 2.5]])
    xs = np.concatenate([rng.uniform(-1, 9, 200), [0, 8, 0, 8, 4, 8]])
    expected = map_coordinates(img, [ys, xs], order=1, mode="constant", cval=np.nan)
    np.testing.assert_allclose(bilinear_reference(img, ys, xs), expected, rtol=0, atol=1e-12)


def test_warp_affine_fixed_cases():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(20, 30))
    out = np.empty((20, 30))
    # identity: an exact copy
    np.testing.assert_array_equal(warp_affine(img, np.eye(3), out), img)
    # whole-pixel translation: a shifted copy, NaN where nothing lands
    m = np.array([[1.0, 0.0, -3.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0]])
    warp_affine(img, m, out)
    expected = np.full_like(img, np.nan)
    expected[:-2, 3:] = img[2:, :-3]
    np.testing.assert_array_equal(out, expected)
    # rotation + scale + shear to another output shape, and a projective map
    for matrix in (random_matrix(rng, False), random_matrix(rng, True)):
        out = np.empty((25, 17))
        warp_affine(img, matrix, out)
        ref = warp_reference(img, matrix, (25, 17))
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
    # cval instead of NaN outside
    warp_affine(img, m, np.empty((20, 30)), cval=-1.0)
    assert warp_affine(img, m, np.empty((20, 30)), cval=-1.0)[-1, 0] == -1.0


def test_warp_affine_nan_only_spoils_samples_it_takes_part_in():
    img = np.arange(25.0).reshape(5, 5)
    img[2, 2] = np.nan
    out = np.empty((5, 5))
    warp_affine(img, np.eye(3), out)  # exact pixel centres: only (2, 2) is NaN
    assert np.isnan(out).sum() == 1 and np.isnan(out[2, 2])
    half = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    warp_affine(img, half, out)  # x + 0.5: (2, 1) and (2, 2) mix in the NaN
    assert np.isnan(out).sum() == 2 + 5  # ... plus the last column, sampled outside
    assert np.isnan(out[2, 1]) and np.isnan(out[2, 2]) and np.isnan(out[:, 4]).all()


@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    out_shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    channels=st.sampled_from([None, 1, 3]),
    dtype=st.sampled_from(["float32", "float64", "uint16"]),
    out_dtype=st.sampled_from(["float32", "float64"]),
    nan_fraction=st.sampled_from([0.0, 0.2]),
    projective=st.booleans(),
    cval=st.sampled_from([np.nan, 0.0]),
    seed=st.integers(0, 10_000),
)
def test_warp_affine_matches_references(
    shape, out_shape, channels, dtype, out_dtype, nan_fraction, projective, cval, seed
):
    rng = np.random.default_rng(seed)
    full = shape if channels is None else (*shape, channels)
    img = make_image(rng, full, dtype, nan_fraction)
    matrix = random_matrix(rng, projective)
    out = np.empty(out_shape if channels is None else (*out_shape, channels), dtype=out_dtype)
    assert warp_affine(img, matrix, out, cval) is out
    y, x = grid_coordinates(matrix, out_shape)
    expected = bilinear_reference(img, y, x, cval).reshape(out.shape)
    tol = 1e-12 if out_dtype == "float64" else 1e-6
    scale = max(1.0, float(np.nanmax(np.abs(img.astype(np.float64)), initial=0.0)))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * scale)
    if nan_fraction == 0.0 and dtype != "uint16" and np.isnan(cval):
        np.testing.assert_allclose(
            out, warp_reference(img, matrix, out_shape).reshape(out.shape), atol=tol * scale
        )


@given(
    shape=st.tuples(st.integers(1, 10), st.integers(1, 10)),
    channels=st.sampled_from([None, 2]),
    dtype=st.sampled_from(["float32", "float64", "uint16"]),
    nan_fraction=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 10_000),
)
def test_sample_bilinear_matches_reference(shape, channels, dtype, nan_fraction, seed):
    rng = np.random.default_rng(seed)
    full = shape if channels is None else (*shape, channels)
    img = make_image(rng, full, dtype, nan_fraction)
    n = 50
    ys = rng.uniform(-1.5, shape[0] + 0.5, n)
    xs = rng.uniform(-1.5, shape[1] + 0.5, n)
    # exact pixel centres and the frame's edges, where the rounding matters
    ys[:4] = [0, shape[0] - 1, 0, shape[0] - 1]
    xs[:4] = [0, 0, shape[1] - 1, shape[1] - 1]
    out = np.empty(n if channels is None else (n, channels))
    sample_bilinear(img, ys, xs, out)
    expected = bilinear_reference(img, ys, xs)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-9)
    if nan_fraction == 0.0:
        assert np.isfinite(out[:4]).all()


@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    channels=st.sampled_from([None, 2]),
    dtype=st.sampled_from(["float32", "float64", "uint16"]),
    out_dtype=st.sampled_from(["float32", "float64"]),
    nan_fraction=st.sampled_from([0.0, 0.2]),
    dy=st.one_of(st.integers(-14, 14).map(float), st.floats(-14, 14)),
    dx=st.one_of(st.integers(-14, 14).map(float), st.floats(-14, 14)),
    seed=st.integers(0, 10_000),
)
# a shift of 3e-288 px: a weight that rounds to nothing must not bring in a NaN neighbour
@example(
    shape=(1, 4),
    channels=2,
    dtype="float32",
    out_dtype="float32",
    nan_fraction=0.2,
    dy=0.0,
    dx=-2.8836029012458504e-288,
    seed=0,
)
def test_shift_frame_matches_references(
    shape, channels, dtype, out_dtype, nan_fraction, dy, dx, seed
):
    rng = np.random.default_rng(seed)
    full = shape if channels is None else (*shape, channels)
    img = make_image(rng, full, dtype, nan_fraction)
    out = np.empty(full, dtype=out_dtype)
    assert shift_frame(img, (dy, dx), out) is out
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    expected = bilinear_reference(img, rows - dy, cols - dx).reshape(full)
    tol = 1e-12 if out_dtype == "float64" else 1e-6
    scale = max(1.0, float(np.nanmax(np.abs(img.astype(np.float64)), initial=0.0)))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * scale)
    if nan_fraction == 0.0 and dtype != "uint16":
        shifts = (dy, dx) if channels is None else (dy, dx, 0)
        ref = ndi_shift(img.astype(np.float64), shifts, order=1, mode="constant", cval=np.nan)
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * scale)


def test_shift_frame_whole_pixels_copies_exactly():
    rng = np.random.default_rng(2)
    img = rng.normal(size=(9, 11, 2))
    for dy, dx in [(0, 0), (3, -2), (-8, 10), (9, 0), (0, -11), (20, 20)]:
        out = np.empty_like(img)
        shift_frame(img, (dy, dx), out)
        expected = np.full_like(img, np.nan)
        ys = slice(max(dy, 0), min(9 + dy, 9))
        xs = slice(max(dx, 0), min(11 + dx, 11))
        src_ys = slice(max(-dy, 0), max(min(9 - dy, 9), 0))
        src_xs = slice(max(-dx, 0), max(min(11 - dx, 11), 0))
        if ys.start < ys.stop and xs.start < xs.stop:
            expected[ys, xs] = img[src_ys, src_xs]
        np.testing.assert_array_equal(out, expected)


def test_kernel_argument_errors():
    img = np.zeros((4, 5))
    with pytest.raises(TypeError, match="float32 or float64"):
        warp_affine(img, np.eye(3), np.empty((4, 5), dtype=np.int32))
    with pytest.raises(ValueError, match="3×3"):
        warp_affine(img, np.eye(2), np.empty((4, 5)))
    with pytest.raises(ValueError, match="incompatible"):
        warp_affine(img, np.eye(3), np.empty((4, 5, 2)))
    with pytest.raises(ValueError, match="incompatible"):
        shift_frame(img, (1, 1), np.empty((5, 4)))
    with pytest.raises(ValueError, match="finite"):
        shift_frame(img, (np.nan, 1), np.empty((4, 5)))
    with pytest.raises(ValueError, match="one length"):
        sample_bilinear(img, np.zeros(3), np.zeros(2), np.empty(3))
    with pytest.raises(ValueError, match=r"\(Y, X\)"):
        warp_affine(np.zeros((2, 3, 4, 5)), np.eye(3), np.empty((2, 3, 4, 5)))


# --------------------------------------------------------------------------
# Image preparation and point transforms
# --------------------------------------------------------------------------


def test_fill_nan():
    img = np.array([[1.0, np.nan], [-np.inf, 5.0]])
    out = fill_nan(img)
    np.testing.assert_array_equal(out, [[1.0, 3.0], [3.0, 5.0]])
    assert out.dtype == np.float64 and np.isnan(img[0, 1])  # the input is untouched
    u16 = np.arange(6, dtype=np.uint16).reshape(2, 3)
    np.testing.assert_array_equal(fill_nan(u16), u16)
    with pytest.raises(ValueError, match="2-D"):
        fill_nan(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="no finite pixel"):
        fill_nan(np.full((2, 2), np.nan))


def test_normalise():
    rng = np.random.default_rng(3)
    detail = rng.normal(size=(64, 64))
    yy, xx = np.mgrid[:64, :64]
    shading = 50.0 + 0.5 * xx + 0.3 * yy  # slow, removed by the high-pass
    out = normalise(detail + shading, 4.0)
    assert abs(out.mean()) < 1e-12 and abs(out.std() - 1) < 1e-12
    assert np.corrcoef(out.ravel(), detail.ravel())[0, 1] > 0.9
    without = normalise(detail + shading, 0)  # no high-pass: the shading dominates
    assert np.corrcoef(without.ravel(), detail.ravel())[0, 1] < 0.5
    holed = detail.copy()
    holed[10:20, 10:20] = np.nan
    assert np.isfinite(normalise(holed, 4.0)).all()
    with pytest.raises(ValueError, match="constant"):
        normalise(np.full((8, 8), 3.0), 2.0)


def test_point_transform_helpers():
    assert check_transform_method("PIECEWISE-AFFINE") == "piecewise-affine"
    assert set(TRANSFORM_METHODS) >= {"affine", "polynomial", "projective"}
    for bad in ("rigid", None, 3):
        with pytest.raises(ValueError, match="known methods"):
            check_transform_method(bad)
    assert check_polynomial_order(np.int64(3)) == 3
    for bad in (0, True, 2.0, "2"):
        with pytest.raises(ValueError, match="integer >= 1"):
            check_polynomial_order(bad)
    src = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    truth = AffineTransform(rotation=0.2, translation=(3, -4))
    tf = fit_point_transform("affine", src, truth(src))
    np.testing.assert_allclose(tf.params, truth.params, atol=1e-12)
    with pytest.raises(ValueError, match="could not be estimated"):
        fit_point_transform("affine", np.zeros((3, 2)), np.zeros((3, 2)))
    corners = far_corners((2.0, 1.0, 12.0, 5.0))
    np.testing.assert_array_equal(corners, [[-8, -3], [22, -3], [22, 9], [-8, 9]])
    np.testing.assert_array_equal(far_corners((0, 0, 0, 0)), [[-1, -1], [1, -1], [1, 1], [-1, 1]])


# --------------------------------------------------------------------------
# Phase correlation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 64), (48, 70), (33, 51)])
def test_phase_correlation_integer_rolls(shape):
    """Circular whole-pixel shifts are found exactly, with a peak near 1 (white noise)."""
    rng = np.random.default_rng(4)
    fixed = rng.normal(size=shape)
    for d in [(0, 0), (5, -7), (-12, 20), (shape[0] // 2 - 1, -(shape[1] // 2) + 1)]:
        moving = np.roll(fixed, (-d[0], -d[1]), axis=(0, 1))  # fixed(p) = moving(p - d)
        est = phase_correlation(fixed, moving, window=False)
        assert isinstance(est, ShiftEstimate)
        assert (est.dy, est.dx) == d
        assert est.peak > 0.99
        aligned = shift_image(moving, (est.dy, est.dx))
        inside = np.isfinite(aligned)
        assert inside.sum() == (shape[0] - abs(d[0])) * (shape[1] - abs(d[1]))
        np.testing.assert_array_equal(aligned[inside], fixed[inside])
        if max(abs(d[0]), abs(d[1])) <= 20:  # the window leaves little of larger shifts
            est = phase_correlation(fixed, moving, upsample=10)
            assert abs(est.dy - d[0]) <= 0.1 and abs(est.dx - d[1]) <= 0.1


@settings(max_examples=30)
@given(
    dy=st.floats(-12, 12),
    dx=st.floats(-12, 12),
    normalization=st.sampled_from(["phase", None]),
    even=st.booleans(),
)
def test_phase_correlation_subpixel_circular(dy, dx, normalization, even):
    """Exact circular sub-pixel shifts, found to the upsampling grid.

    With an odd size the construction is exact and the error is at most half
    a grid step (0.005 px); with an even size, the Nyquist row and column of
    a real image cannot carry a sub-pixel shift, which costs up to 0.02 px
    (skimage's phase_cross_correlation shows the same).
    """
    shape, tol = ((64, 80), 0.025) if even else ((63, 81), 0.006)
    fixed = smooth_noise(shape, sigma=1.0, seed=5)
    moving = circular_shift(fixed, (-dy, -dx))  # fixed(p) = moving(p - d)
    est = phase_correlation(fixed, moving, upsample=100, window=False, normalization=normalization)
    assert abs(est.dy - dy) <= tol and abs(est.dx - dx) <= tol
    assert est.peak > 0.9


def test_phase_correlation_crops():
    """Crops of a moved field (not periodic), with the default window."""
    field = smooth_noise((300, 300), seed=6, wrap=False)
    rng = np.random.default_rng(6)
    errors = []
    for _ in range(10):
        d = rng.uniform(-10, 10, 2)
        moved = circular_shift(field, d)  # moved(p) = field(p - d)
        fixed, moving = field[60:188, 50:178], moved[60:188, 50:178]
        est = phase_correlation(fixed, moving, upsample=50)
        errors.append(max(abs(est.dy + d[0]), abs(est.dx + d[1])))
        est = phase_correlation(fixed, moving, upsample=50, normalization=None)
        errors.append(max(abs(est.dy + d[0]), abs(est.dx + d[1])))
    assert max(errors) < 0.08


@pytest.mark.parametrize("normalization", ["phase", None])
def test_phase_correlation_with_nan_holes(normalization):
    fixed = smooth_noise((64, 80), seed=7)
    rng = np.random.default_rng(7)
    for _ in range(10):
        d = rng.uniform(-10, 10, 2)
        moving = circular_shift(fixed, -d)
        moving[20:30, 40:52] = np.nan  # a hole of 2 % of the frame
        moving[0, :] = np.inf  # and one row
        est = phase_correlation(
            fixed, moving, upsample=100, window=False, normalization=normalization
        )
        tol = 0.25 if normalization == "phase" else 0.03
        assert abs(est.dy - d[0]) <= tol and abs(est.dx - d[1]) <= tol
        assert np.isfinite(est.peak)


def test_phase_correlation_max_shift():
    """max_shift keeps the estimate in range and picks the in-range peak."""
    rng = np.random.default_rng(8)
    fixed = rng.normal(size=(64, 64))
    near, far = (2, 1), (15, -9)
    # two copies of the scene: a weak one shifted by `near`, a strong one by `far`
    moving = 0.6 * np.roll(fixed, (-near[0], -near[1]), axis=(0, 1)) + np.roll(
        fixed, (-far[0], -far[1]), axis=(0, 1)
    )
    assert phase_correlation(fixed, moving, window=False)[:2] == far
    assert phase_correlation(fixed, moving, window=False, max_shift=4)[:2] == near
    assert phase_correlation(fixed, moving, window=False, max_shift=(16, 9))[:2] == far
    assert phase_correlation(fixed, moving, window=False, max_shift=(16, 8))[:2] == near
    est = phase_correlation(fixed, moving, window=False, max_shift=2.2, upsample=20)
    assert abs(est.dy) <= 2.2 and abs(est.dx) <= 2.2
    assert abs(est.dy - near[0]) < 0.1 and abs(est.dx - near[1]) < 0.1
    # a limit below the true shift: the estimate stays inside it
    est = phase_correlation(fixed, np.roll(fixed, (-6, 7), axis=(0, 1)), max_shift=3, upsample=4)
    assert abs(est.dy) <= 3 and abs(est.dx) <= 3


def test_phase_correlation_peak_is_pearson_without_normalisation():
    rng = np.random.default_rng(9)
    fixed = rng.normal(size=(40, 50))
    d = (3, -4)
    moving = np.roll(fixed, (-d[0], -d[1]), axis=(0, 1)) + 0.7 * rng.normal(size=fixed.shape)
    est = phase_correlation(fixed, moving, normalization=None, window=False)
    assert (est.dy, est.dx) == d
    aligned = np.roll(moving, d, axis=(0, 1))
    assert est.peak == pytest.approx(np.corrcoef(fixed.ravel(), aligned.ravel())[0, 1], abs=1e-12)
    unrelated = phase_correlation(fixed, rng.normal(size=fixed.shape), window=False)
    assert unrelated.peak < 0.2


def test_phase_correlation_dtypes_and_convention():
    """Integer and float32 inputs give the float64 result; the sign matches skimage."""
    from skimage.registration import phase_cross_correlation

    base = smooth_noise((48, 48), seed=10)
    fixed = np.round(1000 + 200 * base).astype(np.uint16)
    moving = np.round(1000 + 200 * circular_shift(base, (-4.4, 2.6))).astype(np.uint16)
    ref = phase_correlation(fixed.astype(np.float64), moving.astype(np.float64), upsample=20)
    assert phase_correlation(fixed, moving, upsample=20) == ref
    est32 = phase_correlation(fixed.astype(np.float32), moving.astype(np.float32), upsample=20)
    assert est32[:2] == ref[:2]
    sk = phase_cross_correlation(fixed.astype(float), moving.astype(float), upsample_factor=20)[0]
    np.testing.assert_allclose(
        phase_correlation(fixed, moving, upsample=20, window=False)[:2], sk, atol=0.051
    )


def test_phase_correlation_errors():
    a = np.random.default_rng(0).normal(size=(8, 8))
    with pytest.raises(ValueError, match="differ in shape"):
        phase_correlation(a, a[:, :7])
    with pytest.raises(ValueError, match="2-D"):
        phase_correlation(a[None], a[None])
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="upsample"):
            phase_correlation(a, a, upsample=bad)
    with pytest.raises(ValueError, match="normalization"):
        phase_correlation(a, a, normalization="full")
    with pytest.raises(ValueError, match="max_shift"):
        phase_correlation(a, a, max_shift=-1)
    with pytest.raises(ValueError, match="constant"):
        phase_correlation(a, np.ones((8, 8)))


# --------------------------------------------------------------------------
# Shifts and warps
# --------------------------------------------------------------------------


def test_shift_image_undoes_a_measured_shift():
    field = smooth_noise((200, 200), seed=11, wrap=False)
    moved = circular_shift(field, (-2.5, 3.25))
    fixed, moving = field[40:168, 40:168], moved[40:168, 40:168]
    est = phase_correlation(fixed, moving, upsample=20)
    aligned = shift_image(moving, (est.dy, est.dx))
    core = (slice(8, -8), slice(8, -8))
    # bilinear resampling of smoothed noise: small residual
    assert np.abs(aligned[core] - fixed[core]).max() < 0.1 * np.abs(fixed).max()
    assert shift_image(moving.astype(np.float32), (1, 1)).dtype == np.float32
    assert shift_image(np.ones((3, 3), dtype=np.uint16), (1, 1)).dtype == np.float64
    filled = shift_image(np.ones((3, 3)), (1, 0), cval=0.0)
    np.testing.assert_array_equal(filled, [[0, 0, 0], [1, 1, 1], [1, 1, 1]])


def test_warp_image_matrix_transform_and_callable_agree():
    img = smooth_noise((40, 50), seed=12)
    tf = AffineTransform(rotation=0.1, scale=1.05, shear=0.05, translation=(-3, 2))
    by_matrix = warp_image(img, tf.params, (45, 38))
    by_tf = warp_image(img, tf, (45, 38))
    by_two_rows = warp_image(img, tf.params[:2], (45, 38))
    by_callable = warp_image(img, lambda xy: tf(xy), (45, 38))
    ref = warp_reference(img, tf.params, (45, 38))
    for got in (by_matrix, by_tf, by_two_rows, by_callable):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_allclose(got, ref, atol=1e-12)
    # skimage.transform.warp (order 1) agrees wherever both sample inside the image
    sk = warp(img, tf, output_shape=(45, 38), order=1, cval=np.nan)
    both = np.isfinite(sk) & np.isfinite(by_tf)
    assert both.mean() > 0.5
    np.testing.assert_allclose(by_tf[both], sk[both], atol=1e-9)
    # every skimage matrix family, and channels resampled together
    stack = np.stack([img, 2 * img], axis=-1)
    for cls in (EuclideanTransform, SimilarityTransform, ProjectiveTransform):
        m = cls(matrix=tf.params) if cls is ProjectiveTransform else cls(rotation=0.2)
        out = warp_image(stack, m)
        np.testing.assert_allclose(out[..., 1], 2 * out[..., 0], atol=1e-12)
        np.testing.assert_allclose(out[..., 0], warp_reference(img, m.params, img.shape))


def test_warp_image_non_matrix_transforms():
    img = smooth_noise((40, 40), seed=13)
    params = np.array([[1.0, 1.02, 0.01, 1e-4, 0.0, 0.0], [-2.0, 0.01, 0.98, 0.0, 1e-4, 0.0]])
    poly = PolynomialTransform(params)
    src = np.array([[0, 0], [39, 0], [39, 39], [0, 39], [20, 15]], dtype=float)
    moved = src + np.array([[1, 0], [0, 1], [-1, 0], [0, 0], [2, 1]])
    pw = fit_point_transform("piecewise-affine", src, moved)
    assert isinstance(pw, PiecewiseAffineTransform)
    for tf in (poly, pw):
        got = warp_image(img, tf)
        rows, cols = np.mgrid[:40, :40].astype(float)
        xy = tf(np.column_stack([cols.ravel(), rows.ravel()]))
        expected = bilinear_reference(img, xy[:, 1], xy[:, 0]).reshape(40, 40)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got, expected, atol=1e-12)
    assert warp_image(img.astype(np.float32), poly).dtype == np.float32
    with pytest.raises(ValueError, match="3×3 or 2×3"):
        warp_image(img, np.eye(4))
    with pytest.raises(ValueError, match=r"\(Y, X\)"):
        warp_image(np.zeros(5), np.eye(3))


def test_register_images_return_points():
    """The point pairs refit the polynomial transform; matrix models return None."""
    scene = smooth_noise((96, 96), sigma=2, seed=14, wrap=False)
    truth = EuclideanTransform(rotation=0.05, translation=(3, -2))
    moving = warp(scene, truth.inverse, order=3)
    tf, points = register_images(scene, moving, "euclidean", return_points=True)
    assert points is None
    np.testing.assert_allclose(tf.params, register_images(scene, moving, "euclidean").params)
    tf, points = register_images(scene, moving, "polynomial", order=2, return_points=True)
    src, dst = points
    assert src.shape == dst.shape == (64, 2)
    refit = fit_point_transform("polynomial", src, dst, order=2)
    np.testing.assert_allclose(refit(src), tf(src), atol=1e-8)
    # the registered moving image lies on the fixed one
    aligned = warp_image(moving, tf, scene.shape)
    core = (slice(12, -12), slice(12, -12))
    assert np.corrcoef(aligned[core].ravel(), scene[core].ravel())[0, 1] > 0.99


def test_warp_image_dtypes():
    """Native uint16/float32/float64 go to the kernel as they are; others are converted."""
    img = smooth_noise((20, 24), seed=15)
    tf = AffineTransform(rotation=0.1, translation=(1.5, -2.0))
    ref = warp_image(img, tf)
    counts = np.round(1000 + 100 * img)
    for dtype in ("<u2", ">u2", "i8", ">f8", "f2"):
        got = warp_image(counts.astype(dtype), tf)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, warp_image(counts, tf), atol=0.5 if dtype == "f2" else 0)
    got32 = warp_image(img.astype(np.float32), tf)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, ref, atol=1e-5)
    np.testing.assert_array_equal(np.isnan(got32), np.isnan(ref))
    assert shift_image(counts.astype(">u2"), (0.5, 0)).dtype == np.float64

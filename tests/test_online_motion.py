"""Per-frame rigid registration: ``sima_fast.online_motion.OnlineRegistrar`` and its kernels.

Each kernel of the registration (``kernels/online.py``: ``taper_plane``,
``whiten_cross``, ``correlation_peak``, ``shift_planes``) is compared with a
slow, literal numpy reference, over shapes, dtypes and missing pixels. The
registrar is checked on frames whose motion is known by construction (crops of
a larger scene translated exactly in Fourier space, with noise), for its
memory (flat over many calls), inside ``OnlineExtractor(motion=...)`` against
extraction from the pre-aligned movie, and for its errors.
"""

from __future__ import annotations

import gc
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.ndimage import fourier_shift, gaussian_filter
from scipy.ndimage import shift as ndi_shift

from sima_fast._validate import ArgumentTypeError
from sima_fast.kernels import online as kern
from sima_fast.kernels.warp import shift_frame
from sima_fast.online import OnlineExtractor
from sima_fast.online_motion import OnlineRegistrar
from sima_fast.ROI import ROI

# ----------------------------------------------------------------------------
# references and data
# ----------------------------------------------------------------------------


def taper_reference(plane: np.ndarray, wy: np.ndarray, wx: np.ndarray) -> tuple[np.ndarray, float]:
    """``(x - m) w`` with ``m`` the w-weighted mean of the finite pixels; 0 where not finite.

    Exact zeros for a plane without finite pixels (``m`` 0) or a constant one.
    """
    x = plane.astype(np.float64)
    w = np.outer(wy.astype(np.float64), wx.astype(np.float64))
    ok = np.isfinite(x)
    if not ok.any():
        return np.zeros_like(x), 0.0
    if x[ok].min() == x[ok].max():  # constant: exact zeros
        return np.zeros_like(x), float(x[ok][0])
    m = float((w[ok] * x[ok]).sum() / w[ok].sum())
    return np.where(ok, (np.where(ok, x, 0.0) - m) * w, 0.0), m


def snapped(d: float) -> float:
    """``d``, or the nearest whole number when within ``kern.SNAP`` of it."""
    return float(round(d)) if abs(d - round(d)) < kern.SNAP else d


def bilinear_shift_reference(plane: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``out(y, x) = plane(y - dy, x - dx)``, one pixel at a time, NaN outside.

    Only the taps with a nonzero weight are read (a sample on a pixel centre is
    that pixel, whatever its neighbours); shifts within ``kern.SNAP`` of a
    whole pixel are whole.
    """
    dy, dx = snapped(dy), snapped(dx)
    ny, nx = plane.shape
    src = plane.astype(np.float64)
    out = np.full((ny, nx), np.nan)
    for y in range(ny):
        for x in range(nx):
            sy, sx = y - dy, x - dx
            if not (0 <= sy <= ny - 1 and 0 <= sx <= nx - 1):
                continue
            y0, x0 = math.floor(sy), math.floor(sx)
            fy, fx = sy - y0, sx - x0
            acc = 0.0
            for oy, wy in ((0, 1 - fy), (1, fy)):
                for ox, wx in ((0, 1 - fx), (1, fx)):
                    if wy * wx != 0.0:
                        acc += wy * wx * src[y0 + oy, x0 + ox]
            out[y, x] = acc
    return out


def peak_reference(corr: np.ndarray, my: int, mx: int) -> tuple[float, float, float]:
    """The integer maximum in the window (first in row-major offset order), then log-parabolas.

    ``corr`` is the whole periodic map (offset 0 at index (0, 0)).
    """
    ny, nx = corr.shape
    best, by, bx = -np.inf, 0, 0
    for dy in range(-my, my + 1):
        for dx in range(-mx, mx + 1):
            v = float(corr[dy % ny, dx % nx])
            if v > best:
                best, by, bx = v, dy, dx
    if not (0 < best < np.inf):
        return np.nan, np.nan, best

    def vertex(a: float, b: float, d: float) -> float:
        if a > 0 and b > 0 and d > 0:
            la, lb, ld = np.log([a, b, d])
            den = la - 2 * lb + ld
            off = 0.5 * (la - ld) / den if den < 0 else 0.0
        else:
            den = a - 2 * b + d
            off = 0.5 * (a - d) / den if den < 0 else 0.0
        return float(np.clip(off, -0.5, 0.5))

    oy = vertex(float(corr[(by - 1) % ny, bx % nx]), best, float(corr[(by + 1) % ny, bx % nx]))
    ox = vertex(float(corr[by % ny, (bx - 1) % nx]), best, float(corr[by % ny, (bx + 1) % nx]))
    return float(np.clip(by + oy, -my, my)), float(np.clip(bx + ox, -mx, mx)), best


def make_frame(rng, shape, dtype, nan_fraction=0.0) -> np.ndarray:
    values = rng.uniform(0.0, 1000.0, shape)
    if dtype == "uint16":
        return np.rint(values).astype(np.uint16)
    out = values.astype(dtype)
    if nan_fraction:
        out[rng.random(shape) < nan_fraction] = np.nan
    return out


class Scene:
    """A textured scene on a canvas larger than the frames; frames are exact translations.

    ``frame(m)`` is the crop of the canvas translated by ``m`` (Fourier shift of
    the whole canvas, so the motion is exact and sub-pixel): ``frame(m)(p) =
    reference(p - m)`` where both are defined.
    """

    def __init__(self, size: int, pad: int = 24, seed: int = 0, cells: int = 40):
        rng = np.random.default_rng(seed)
        n = size + 2 * pad
        canvas = gaussian_filter(rng.standard_normal((n, n)), 2.0) * 300.0 + 1000.0
        yy, xx = np.mgrid[:n, :n]
        for _ in range(cells * n * n // size**2):
            cy, cx = rng.uniform(0, n, 2)
            r = rng.uniform(2.5, 5.0)
            canvas += 800.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        self.size, self.pad = size, pad
        self.spectrum = np.fft.fft2(canvas)
        self.reference = canvas[pad : pad + size, pad : pad + size]

    def frame(self, m, rng=None, noise: float = 0.0) -> np.ndarray:
        moved = np.fft.ifft2(fourier_shift(self.spectrum, m)).real
        p, s = self.pad, self.size
        crop = moved[p : p + s, p : p + s]
        if rng is not None and noise:
            crop = crop + rng.normal(0.0, noise, crop.shape)
        return crop


@pytest.fixture(scope="module")
def scene() -> Scene:
    return Scene(128)


# ----------------------------------------------------------------------------
# kernels against references
# ----------------------------------------------------------------------------


def test_taper_window_formula():
    w = kern.taper_window(10, 3.0)
    e = np.minimum(np.arange(10), 9 - np.arange(10))
    want = np.where(e < 3, 0.5 - 0.5 * np.cos(np.pi * (e + 0.5) / 3.0), 1.0)
    np.testing.assert_allclose(w, want, rtol=1e-6)
    assert w.dtype == np.float32 and (w > 0).all()
    for width in (0.0, 0.25, 0.5):
        np.testing.assert_array_equal(kern.taper_window(5, width), np.ones(5, np.float32))
    w = kern.taper_window(6, 0.75)  # only the edge pixels are below 1, and still positive
    assert (w[1:-1] == 1).all() and 0 < w[0] == w[-1] < 1


@given(shape=st.tuples(st.integers(2, 12), st.integers(2, 12)), seed=st.integers(0, 10_000))
def test_periodic_component_solves_the_poisson_equation(shape, seed):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=shape) + np.linspace(0, 5, shape[1])[None, :]  # a ramp: big edge jumps
    p = kern.periodic_component(u)
    s = u - p
    # the jumps across opposite edges, literally
    b = np.zeros(shape)
    b[0, :] += u[-1, :] - u[0, :]
    b[-1, :] += u[0, :] - u[-1, :]
    b[:, 0] += u[:, -1] - u[:, 0]
    b[:, -1] += u[:, 0] - u[:, -1]
    laplacian = sum(np.roll(s, k, axis=a) for k in (1, -1) for a in (0, 1)) - 4 * s
    np.testing.assert_allclose(laplacian, b, atol=1e-9)
    assert abs(s.mean()) < 1e-9


@given(
    zyxc=st.tuples(st.integers(1, 2), st.integers(2, 12), st.integers(2, 12), st.integers(1, 2)),
    dtype=st.sampled_from(["uint16", "float32", "float64"]),
    nan=st.sampled_from([0.0, 0.3, 1.0]),
    strided=st.booleans(),
    constant=st.booleans(),
    width=st.floats(0.0, 4.0),
    seed=st.integers(0, 10_000),
)
def test_taper_plane_matches_reference(zyxc, dtype, nan, strided, constant, width, seed):
    rng = np.random.default_rng(seed)
    Z, Y, X, C = zyxc
    frame = make_frame(rng, (Z, Y, 2 * X if strided else X, C), dtype, nan)
    if constant:
        frame[np.isfinite(frame)] = 321
    if strided:
        frame = frame[:, :, ::2]
    wy, wx = kern.taper_window(Y, width), kern.taper_window(X, width)
    out = np.full((Y, X), 7.0, dtype=np.float32)
    for z in range(Z):
        for c in range(C):
            m = kern.taper_plane(frame, z, c, wy, wx, out)
            want, want_m = taper_reference(frame[z, :, :, c], wy, wx)
            assert m == pytest.approx(want_m, rel=1e-9, abs=1e-9)
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-3)
            if constant or (dtype != "uint16" and nan == 1.0):
                assert not out.any()


@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    zeros=st.floats(0.0, 0.5),
    seed=st.integers(0, 10_000),
)
def test_whiten_cross_matches_reference(shape, zeros, seed):
    rng = np.random.default_rng(seed)
    s = (rng.normal(size=shape) + 1j * rng.normal(size=shape)) * 10.0 ** rng.uniform(-3, 3, shape)
    s[rng.random(shape) < zeros] = 0
    r = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    spec = s.astype(np.complex64)
    ref = r.astype(np.complex64)
    mag = np.abs(spec.astype(np.complex128))
    want = np.where(mag > 0, spec / np.where(mag > 0, mag, 1) * ref.astype(np.complex128), 0)
    kern.whiten_cross(spec, ref)
    np.testing.assert_allclose(spec, want, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@given(
    shape=st.tuples(st.integers(3, 16), st.integers(3, 16)),
    dtype=st.sampled_from(["float32", "float64"]),
    frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 10_000),
)
def test_correlation_peak_matches_reference(shape, dtype, frac, seed):
    rng = np.random.default_rng(seed)
    corr = rng.normal(size=shape).astype(dtype)
    my, mx = int(frac * (shape[0] - 1) // 2), int(frac * (shape[1] - 1) // 2)
    got = kern.correlation_peak(corr, my, mx, 0)
    want = peak_reference(corr, my, mx)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # only the rows -r..r of the map (r = my + 1), in order: the same answer
    r = my + 1
    if 2 * r + 1 <= shape[0]:
        rows = np.concatenate([corr[shape[0] - r :], corr[: r + 1]])
        np.testing.assert_allclose(kern.correlation_peak(rows, my, mx, r), want, rtol=1e-9)


@given(
    py=st.floats(-6.0, 6.0),
    px=st.floats(-6.0, 6.0),
    sigma=st.floats(0.8, 3.0),
)
def test_correlation_peak_locates_sampled_gaussians_exactly(py, px, sigma):
    n = 32
    d = np.arange(n)
    d = np.where(d < n // 2, d, d - n).astype(np.float64)  # periodic offsets
    gy = np.exp(-((d - py) ** 2) / (2 * sigma**2))
    gx = np.exp(-((d - px) ** 2) / (2 * sigma**2))
    corr = np.outer(gy, gx)
    y, x, height = kern.correlation_peak(corr, 8, 8, 0)
    assert (y, x) == (pytest.approx(py, abs=1e-6), pytest.approx(px, abs=1e-6))
    assert height == corr.max()


def test_correlation_peak_without_a_positive_maximum_is_nan():
    for corr in (np.zeros((6, 6)), -np.ones((6, 6)), np.full((6, 6), np.nan)):
        y, x, _ = kern.correlation_peak(corr, 2, 2, 0)
        assert math.isnan(y) and math.isnan(x)
    corr = np.zeros((7, 7))
    corr[3, 3] = 5.0  # outside the window ±2: the window's maximum (0) is not positive
    assert math.isnan(kern.correlation_peak(corr, 2, 2, 0)[0])
    assert kern.correlation_peak(corr, 3, 3, 0)[:2] == (3.0, 3.0)


shift_values = st.one_of(
    st.integers(-14, 14).map(float),
    st.floats(-14, 14),
    st.sampled_from([1e-17, -1e-17, 2 - 1e-15, -3 + 1e-15, 0.5, -0.5, 1 + 2e-9, -2e-9]),
)


@given(
    zyxc=st.tuples(st.integers(1, 2), st.integers(1, 11), st.integers(1, 11), st.integers(1, 2)),
    dtype=st.sampled_from(["uint16", "float32", "float64"]),
    out_dtype=st.sampled_from(["float32", "float64"]),
    nan=st.sampled_from([0.0, 0.2]),
    strided=st.booleans(),
    dy=shift_values,
    dx=shift_values,
    seed=st.integers(0, 10_000),
)
def test_shift_planes_matches_references(zyxc, dtype, out_dtype, nan, strided, dy, dx, seed):
    rng = np.random.default_rng(seed)
    Z, Y, X, C = zyxc
    frame = make_frame(rng, (Z, Y, X, 2 * C if strided else C), dtype, nan)
    if strided:
        frame = frame[..., ::2]
    shifts = np.array([[dy, dx], [dx, dy]][:Z], dtype=np.float64)
    out = np.full(frame.shape, 5.0, dtype=out_dtype)
    kern.shift_planes(frame, shifts, out, np.nan)
    tol = 1e-12 if out_dtype == "float64" else 1e-6
    for z in range(Z):
        for c in range(C):
            plane = frame[z, :, :, c]
            want = bilinear_shift_reference(plane, *shifts[z])
            np.testing.assert_array_equal(np.isnan(out[z, :, :, c]), np.isnan(want))
            np.testing.assert_allclose(out[z, :, :, c], want, rtol=tol, atol=tol * 1000)
        # the same values as the frame-shift kernel of kernels/warp.py (which does not snap)
        if all(snapped(d) == d for d in shifts[z]):
            warp_out = np.empty(frame.shape[1:], dtype=out_dtype)
            shift_frame(frame[z], tuple(shifts[z]), warp_out)
            np.testing.assert_allclose(out[z], warp_out, rtol=tol, atol=tol * 1000)
        if nan == 0.0 and dtype != "uint16":
            for c in range(C):
                scipy_out = ndi_shift(
                    frame[z, :, :, c].astype(np.float64),
                    [snapped(d) for d in shifts[z]],
                    order=1,
                    mode="constant",
                    cval=np.nan,
                )
                np.testing.assert_allclose(out[z, :, :, c], scipy_out, rtol=tol, atol=tol * 1000)


def test_shift_planes_whole_pixels_copy_and_far_or_nan_shifts_fill():
    rng = np.random.default_rng(3)
    frame = rng.normal(size=(1, 9, 11, 2))
    frame[0, 4, 5, 0] = np.nan
    out = np.empty_like(frame)
    kern.shift_planes(frame, np.array([[2.0, -3.0]]), out, -1.0)
    want = np.full_like(frame, -1.0)
    want[0, 2:, :8] = frame[0, :7, 3:]
    np.testing.assert_array_equal(out, want)  # exact copies; the NaN moves, it does not spread
    for shift in ([np.nan, 0.0], [0.0, np.inf], [9.0, 0.0], [0.0, -11.5], [1e300, 1.0]):
        kern.shift_planes(frame, np.array([shift]), out, -1.0)
        assert (out == -1.0).all(), shift


# ----------------------------------------------------------------------------
# the registrar
# ----------------------------------------------------------------------------


def test_accuracy_on_known_subpixel_motion_with_noise():
    scene = Scene(192, pad=24, seed=1)
    rng = np.random.default_rng(5)
    reg = OnlineRegistrar(scene.reference, dtype="float32", max_displacement=22)
    motions = rng.uniform(-20, 20, (24, 2))
    errors = []
    for m in motions:
        frame = scene.frame(m, rng, noise=40.0).astype(np.float32)
        shift, registered = reg.register(frame)
        errors.append(shift + m)  # the correction is minus the motion
        assert 0.3 < reg.correlation[0] <= 1.0
    errors = np.array(errors)
    rms = float(np.sqrt((errors**2).mean()))
    assert rms <= 0.1, rms
    # a registered noise-free frame is the reference where it is defined (away from the edges)
    shift, registered = reg.register(scene.frame(motions[0]).astype(np.float32))
    inner = (slice(24, -24), slice(24, -24))
    diff = registered[inner] - scene.reference[inner]
    assert np.nanstd(diff) < 0.05 * scene.reference.std()


def test_sign_convention_and_apply_displacements_semantics(scene):
    # content moved by m = (3, -2): frame(p) = reference(p - m); the correction is d = -m and the
    # registered frame is frame(p - d), i.e. frame pixel p lands at p + d
    frame = scene.frame((3.0, -2.0))
    reg = OnlineRegistrar(scene.reference, dtype="float64")
    shift, registered = reg.register(frame)
    np.testing.assert_allclose(shift, [-3.0, 2.0], atol=0.05)
    want = np.empty_like(frame)
    shift_frame(frame, tuple(shift), want)
    np.testing.assert_array_equal(registered, want.astype(np.float32))
    d = np.rint(shift).astype(int)
    p = (40, 50)
    assert registered[p[0] + d[0], p[1] + d[1]] == pytest.approx(frame[p], rel=0.02)


def test_a_small_window_transforms_fewer_rows_with_the_same_answer(scene):
    frame = scene.frame((3.3, -1.7))
    small = OnlineRegistrar(scene.reference, dtype="float64", max_displacement=6)
    full = OnlineRegistrar(scene.reference, dtype="float64")
    assert small._rows is not None and full._rows is None  # the two paths
    np.testing.assert_allclose(small.register(frame)[0], full.register(frame)[0], atol=1e-4)
    np.testing.assert_allclose(small.correlation, full.correlation, rtol=1e-4)
    np.testing.assert_allclose(small.corrected, full.corrected, rtol=1e-4, equal_nan=True)


def test_planes_get_their_own_shifts_and_channels_share_them():
    scenes = [Scene(128, seed=s) for s in (2, 3)]
    motions = np.array([[1.25, -3.5], [-4.75, 2.0]])
    ref = np.stack([s.reference for s in scenes])  # (Z, Y, X)
    frame = np.empty((2, 128, 128, 2), dtype=np.float64)
    for z, s in enumerate(scenes):
        frame[z, :, :, 1] = s.frame(motions[z])
        frame[z, :, :, 0] = 0.5 * frame[z, :, :, 1] + 10.0  # another channel, same motion
    reg = OnlineRegistrar(ref, frame_shape=frame.shape, dtype="float64", channel=1)
    shift, registered = reg.register(frame)
    assert shift.shape == (2, 2)
    np.testing.assert_allclose(shift, -motions, atol=0.1)
    for z in range(2):
        want = np.empty(frame.shape[1:])
        shift_frame(frame[z], tuple(shift[z]), want)
        np.testing.assert_allclose(registered[z], want, rtol=1e-6)
    # a 4-D reference (e.g. time_averages) with the same channel gives the same shifts
    ref4 = np.stack([0.5 * ref + 10.0, ref], axis=-1)
    shift4, _ = OnlineRegistrar(ref4, dtype="float64", channel=-1).register(frame)
    np.testing.assert_allclose(shift4, shift, atol=1e-6)


def test_missing_pixels_blank_planes_and_fill(scene):
    rng = np.random.default_rng(4)
    frame = scene.frame((2.5, 1.5)).astype(np.float32)
    frame[rng.random(frame.shape) < 0.05] = np.nan
    frame[10:14] = np.nan  # missing rows
    ref = scene.reference.copy()
    ref[-3:] = np.nan
    reg = OnlineRegistrar(ref, dtype="float32", fill=-1.0)
    shift, registered = reg.register(frame)
    np.testing.assert_allclose(shift, [-2.5, -1.5], atol=0.1)
    assert (registered[-3:] == -1.0).all()  # no source below the frame
    assert np.isnan(registered).any()  # the missing pixels move with the frame
    for blank in (np.full_like(frame, np.nan), np.full_like(frame, 100.0)):
        shift, registered = reg.register(blank)
        assert np.isnan(shift).all() and (registered == -1.0).all()
        assert reg.correlation[0] == 0.0  # nothing correlates


def test_out_argument_dtypes_and_layouts(scene):
    frame64 = scene.frame((1.5, -0.5))
    frame = np.rint(frame64).astype(np.uint16)
    reg = OnlineRegistrar(scene.reference, dtype="uint16")
    shift, registered = reg.register(frame)
    assert registered is reg.corrected and registered.dtype == np.float32
    keep = shift.copy()
    out = np.empty(frame.shape, dtype=np.float64)
    shift2, out2 = reg.register(frame, out=out)
    assert out2 is out and shift2 is shift  # the same arrays, overwritten
    np.testing.assert_array_equal(shift2, keep)
    np.testing.assert_allclose(out, registered, rtol=1e-6)
    wide = np.zeros((128, 256), dtype=np.uint16)
    wide[:, ::2] = frame
    ro = wide[:, ::2]
    ro.flags.writeable = False
    np.testing.assert_array_equal(reg.register(ro)[0], keep)


def test_memory_does_not_grow_over_many_calls():
    rng = np.random.default_rng(6)
    ref = gaussian_filter(rng.random((32, 32)), 1.5)
    frame = np.roll(ref, (1, -2), axis=(0, 1)).astype(np.float32)
    reg = OnlineRegistrar(ref, dtype="float32")
    for _ in range(200):
        reg.register(frame)
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(500):
            reg.register(frame)
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5000):
            reg.register(frame)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 2048, after - before


# ----------------------------------------------------------------------------
# OnlineExtractor(motion=...)
# ----------------------------------------------------------------------------


def cell_rois(rng, size: int, n: int) -> list[ROI]:
    yy, xx = np.mgrid[:size, :size]
    rois = []
    for _ in range(n):
        cy, cx = rng.uniform(20, size - 20, 2)
        rois.append(ROI(mask=(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(9, 30)))
    return rois


@pytest.mark.parametrize("ndim", [2, 4])
def test_extractor_with_motion_matches_the_pre_aligned_movie(scene, ndim):
    rng = np.random.default_rng(7)
    T = 30
    motions = rng.uniform(-5, 5, (T, 2))
    movie = np.stack([scene.frame(m) * rng.uniform(0.8, 1.2) for m in motions])
    raw_movie = np.rint(movie).astype(np.uint16)
    shape = (128, 128) if ndim == 2 else (1, 128, 128, 1)
    rois = cell_rois(rng, 128, 8)
    params = dict(gamma=0.9, penalty=0.1, baseline=1000.0, lag=5)
    reg = OnlineRegistrar(
        scene.reference.reshape(shape[:-1] if ndim == 4 else shape),
        frame_shape=shape,
        dtype="uint16",
        max_displacement=8,
    )
    online = OnlineExtractor(rois, shape, dtype="uint16", motion=reg, **params)
    aligned = OnlineExtractor(rois, shape, dtype="float32", **params)
    for t in range(T):
        online.update(raw_movie[t].reshape(shape))
        # the pre-aligned frame: registered with the true correction, -m
        pre = np.empty(raw_movie[t].shape, dtype=np.float32)
        shift_frame(raw_movie[t], tuple(-motions[t]), pre)
        aligned.update(pre.reshape(shape))
    shifts = online.shifts
    assert shifts.shape == (T, 1, 2)
    err = shifts[:, 0] + motions
    assert float(np.sqrt((err**2).mean())) < 0.1
    np.testing.assert_allclose(online.raw, aligned.raw, rtol=0.01)
    assert aligned.shifts is None
    # without motion the raw (misaligned) traces differ much more
    plain = OnlineExtractor(rois, shape, dtype="uint16", **params)
    for t in range(T):
        plain.update(raw_movie[t].reshape(shape))
    worst_plain = np.abs(plain.raw / aligned.raw - 1).max()
    worst_online = np.abs(online.raw / aligned.raw - 1).max()
    assert worst_online < worst_plain / 3


def test_extractor_shift_history_is_a_ring(scene):
    reg = OnlineRegistrar(scene.reference, dtype="float64")
    rois = cell_rois(np.random.default_rng(8), 128, 2)
    online = OnlineExtractor(
        rois, (128, 128), dtype="float64", motion=reg, gamma=0.9, penalty=0.1, baseline=0.0,
        lag=2, max_frames=4,
    )  # fmt: skip
    motions = [(0.5 * t, -0.25 * t) for t in range(6)]
    for m in motions:
        online.update(scene.frame(m))
    assert online.first_frame == 2 and online.shifts.shape == (4, 1, 2)
    np.testing.assert_allclose(online.shifts[:, 0], -np.array(motions[2:]), atol=0.1)


# ----------------------------------------------------------------------------
# bad inputs
# ----------------------------------------------------------------------------


def test_registrar_argument_errors():
    ref = np.zeros((16, 20))
    ref[5, 5] = 1.0
    with pytest.raises(ValueError, match="reference plane 1 has no finite pixel"):
        OnlineRegistrar(np.stack([ref, np.full_like(ref, np.nan)]))
    with pytest.raises(ValueError, match="reference plane 0 is constant"):
        OnlineRegistrar(np.where(ref > 0, np.nan, 3.0))
    with pytest.raises(ValueError, match="reference must have shape"):
        OnlineRegistrar(np.zeros(16))
    with pytest.raises(ValueError, match="at least 2×2"):
        OnlineRegistrar(np.zeros((1, 20)))
    with pytest.raises(ArgumentTypeError, match="reference"):
        OnlineRegistrar(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="does not match frame_shape"):
        OnlineRegistrar(ref, frame_shape=(16, 21))
    with pytest.raises(ValueError, match="does not match frame_shape"):
        OnlineRegistrar(ref, frame_shape=(2, 16, 20))
    with pytest.raises(ValueError, match="channel"):
        OnlineRegistrar(np.zeros((1, 16, 20, 2)), frame_shape=(1, 16, 20, 3))
    with pytest.raises(ArgumentTypeError, match="frame_shape"):
        OnlineRegistrar(ref, frame_shape="16x20")
    with pytest.raises(ValueError, match="max_displacement"):
        OnlineRegistrar(ref, max_displacement=-1)
    with pytest.raises(
        ValueError, match=r"max_displacement along x must be at most \(n - 1\) // 2 = 9"
    ):
        OnlineRegistrar(ref, max_displacement=(7, 10))
    with pytest.raises(
        ValueError, match=r"max_displacement along y must be at most \(n - 1\) // 2 = 7"
    ):
        OnlineRegistrar(ref, max_displacement=8)
    with pytest.raises(ArgumentTypeError, match="max_displacement"):
        OnlineRegistrar(ref, max_displacement=2.5)
    with pytest.raises(ValueError, match="max_displacement"):
        OnlineRegistrar(ref, max_displacement=(1, 2, 3))
    with pytest.raises(ValueError, match="max_displacement"):
        OnlineRegistrar(ref, max_displacement=(1,))
    with pytest.raises(ArgumentTypeError, match="max_displacement"):
        OnlineRegistrar(ref, max_displacement=3.0)
    with pytest.raises(ValueError, match="channel 2 is out of range"):
        OnlineRegistrar(np.zeros((1, 16, 20, 2)), channel=2)
    with pytest.raises(ArgumentTypeError, match="channel"):
        OnlineRegistrar(ref, channel=0.0)
    with pytest.raises(ValueError, match="smooth_sigma"):
        OnlineRegistrar(ref, smooth_sigma=-1.0)
    with pytest.raises(ValueError, match="taper"):
        OnlineRegistrar(ref, taper=np.nan)
    with pytest.raises(ValueError, match="workers"):
        OnlineRegistrar(ref, workers=0)
    with pytest.raises(ArgumentTypeError, match="fill"):
        OnlineRegistrar(ref, fill="nan")
    with pytest.raises(ArgumentTypeError, match="dtype"):
        OnlineRegistrar(ref, dtype="int8")
    with pytest.raises(ArgumentTypeError, match="warmup"):
        OnlineRegistrar(ref, warmup=1)
    assert OnlineRegistrar(ref, max_displacement=(7, 9), warmup=False).max_displacement == (7, 9)


def test_register_errors():
    ref = np.random.default_rng(0).random((16, 20))
    reg = OnlineRegistrar(ref, dtype="float32")
    good = ref.astype(np.float32)
    with pytest.raises(TypeError, match="frame has dtype float64"):
        reg.register(ref)
    with pytest.raises(ValueError, match="frame has shape"):
        reg.register(good[:, :19])
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        reg.register(good.tolist())
    with pytest.raises(TypeError, match="out must be"):
        reg.register(good, out=np.empty((16, 20), dtype=np.int32))
    with pytest.raises(ValueError, match="out has shape"):
        reg.register(good, out=np.empty((20, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="share memory"):
        reg.register(good, out=good)
    ro = np.empty((16, 20), dtype=np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        reg.register(good, out=ro)


def test_extractor_motion_errors():
    ref = np.random.default_rng(0).random((16, 20))
    rois = [ROI(mask=np.eye(16, 20, dtype=bool))]
    reg = OnlineRegistrar(ref, dtype="uint16")
    with pytest.raises(ArgumentTypeError, match="motion must be an OnlineRegistrar"):
        OnlineExtractor(rois, (16, 20), motion="rigid")
    with pytest.raises(ValueError, match="motion was prepared for frames of shape"):
        OnlineExtractor([ROI(mask=np.eye(16, 20, dtype=bool)[None])], (1, 16, 20), motion=reg)
    with pytest.raises(ValueError, match="motion was prepared for uint16 frames"):
        OnlineExtractor(rois, (16, 20), dtype="float32", motion=reg)
    online = OnlineExtractor(rois, (16, 20), motion=reg, gamma=0.5, penalty=0.1, baseline=0.0)
    with pytest.raises(TypeError, match="frame has dtype"):
        online.update(ref)
    assert online.n_frames == 0 and online.shifts.shape == (0, 1, 2)

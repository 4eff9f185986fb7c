"""The motion kernels against slow numpy references (hypothesis over shapes, dtypes, NaN rows)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sima_fast.kernels.motion import cross_power, edge_taper, find_peaks, prepare_frames


def _prepare_ref(frames, taper, offsets):
    out = np.zeros(frames.shape)
    ny, nx = taper.shape
    for i, f in enumerate(frames.astype(np.float64)):
        ok = np.isfinite(f)
        mean = f[ok].mean() if ok.any() else 0.0
        oy, ox = offsets[i]
        for y in range(ny):
            for x in range(nx):
                if ok[y, x] and 0 <= y + oy < ny and 0 <= x + ox < nx:
                    out[i, y, x] = (f[y, x] - mean) * taper[y + oy, x + ox]
    return out


def _peaks_ref(surfaces, my, mx):
    out = []
    for s in surfaces:
        ny, nx = s.shape
        sy = np.where(np.arange(ny) > ny // 2, np.arange(ny) - ny, np.arange(ny))
        sx = np.where(np.arange(nx) > nx // 2, np.arange(nx) - nx, np.arange(nx))
        allowed = (np.abs(sy) <= my)[:, None] & (np.abs(sx) <= mx)[None, :]
        iy, ix = np.unravel_index(np.argmax(np.where(allowed, s, -np.inf)), s.shape)
        out.append((sy[iy], sx[ix], s[iy, ix]))
    return np.array(out, dtype=float)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 3),
    ny=st.integers(2, 9),
    nx=st.integers(2, 9),
    dtype=st.sampled_from(["uint16", "float32", "float64"]),
    nan_row=st.booleans(),
    width=st.floats(0, 4),
    off=st.integers(-2, 2),
    seed=st.integers(0, 99),
)
def test_prepare_frames(n, ny, nx, dtype, nan_row, width, off, seed):
    rng = np.random.default_rng(seed)
    frames = (rng.random((n, ny, nx)) * 1000).astype(dtype)
    if nan_row and dtype != "uint16":
        frames[0, 0] = np.nan
    taper = edge_taper((ny, nx), width)
    offsets = np.full((n, 2), off, dtype=np.int64)
    for out_dtype in (np.float32, np.float64):
        out = prepare_frames(frames, taper, offsets, np.empty((n, ny, nx), out_dtype))
        tol = 1e-4 if out_dtype == np.float32 or dtype == "float32" else 1e-9
        np.testing.assert_allclose(out, _prepare_ref(frames, taper, offsets), rtol=tol, atol=tol)


def test_prepare_frames_all_nan_frame_is_zero():
    frames = np.full((1, 3, 4), np.nan)
    out = prepare_frames(frames, np.ones((3, 4)), np.zeros((1, 2), np.int64), np.empty((1, 3, 4)))
    assert (out == 0).all()


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 3),
    ny=st.integers(1, 7),
    nx=st.integers(1, 7),
    whiten=st.booleans(),
    seed=st.integers(0, 99),
)
def test_cross_power(n, ny, nx, whiten, seed):
    rng = np.random.default_rng(seed)
    spec = rng.standard_normal((n, ny, nx)) + 1j * rng.standard_normal((n, ny, nx))
    ref = rng.standard_normal((ny, nx)) + 1j * rng.standard_normal((ny, nx))
    expected = ref[None] * np.conj(spec)
    if whiten:
        floor = 1e-6 * np.abs(spec).reshape(n, -1).max(axis=1)[:, None, None]
        expected = expected / (np.abs(spec) + floor)
    out = cross_power(spec.copy(), ref, whiten, 1e-6)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    ny=st.integers(1, 9),
    nx=st.integers(1, 9),
    my=st.sampled_from([0.0, 1.0, 2.0, np.inf]),
    mx=st.sampled_from([0.0, 1.0, 3.0, np.inf]),
    seed=st.integers(0, 99),
)
def test_find_peaks_integer(n, ny, nx, my, mx, seed):
    surfaces = np.random.default_rng(seed).random((n, ny, nx))
    out = find_peaks(surfaces, my, mx, False, np.empty((n, 3)))
    np.testing.assert_array_equal(out, _peaks_ref(surfaces, my, mx))


def test_find_peaks_subpixel_recovers_a_sampled_gaussian():
    ny, nx = 16, 20
    y = np.arange(ny)[:, None]
    x = np.arange(nx)[None, :]
    y = np.where(y > ny // 2, y - ny, y)
    x = np.where(x > nx // 2, x - nx, x)
    for cy, cx in [(0.3, -0.4), (2.45, 1.1), (-3.2, 4.49)]:
        s = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 1.5**2))[None]
        out = find_peaks(s, np.inf, np.inf, True, np.empty((1, 3)))
        np.testing.assert_allclose(out[0, :2], [cy, cx], atol=1e-9)
    # the limits hold after refinement
    s = np.exp(-((y - 1.4) ** 2 + x**2) / 2.0)[None]
    assert find_peaks(s, 1.0, np.inf, True, np.empty((1, 3)))[0, 0] == 1.0


def test_edge_taper():
    t = edge_taper((10, 30), 4)
    assert t.shape == (10, 30) and t.max() == 1.0 and t.min() > 0
    np.testing.assert_allclose(t, t[::-1, ::-1])
    assert (edge_taper((5, 5), 0) == 1).all()

"""The separable shift of ``kernels/warp.py`` (rigid correction) against the per-pixel warp.

The separable kernel combines the interior rows and columns (taps all inside
the frame, all weights nonzero) without tests per tap; the rest goes through
the general loop. Both must give the per-pixel affine warp's values (the
same taps, summed in the same order), NaN where its NaN rule says, for
every shift: whole, half, negative, beyond the frame.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sima_fast.kernels.warp import shift_frame, warp_affine, warp_field

ZERO = np.array([0.0])


def _per_pixel(frame: np.ndarray, dy: float, dx: float, shape: tuple, name: str) -> np.ndarray:
    """Shift by the per-pixel affine warp: output (col, row) samples (col - dx, row - dy)."""
    matrix = np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy], [0.0, 0.0, 1.0]])
    return warp_affine(frame, matrix, np.empty(shape), np.nan, name)


shifts = st.one_of(
    st.floats(-12.0, 12.0, allow_nan=False),
    st.integers(-12, 12).map(float),
    st.integers(-24, 24).map(lambda v: v / 2),
)


@settings(max_examples=60, deadline=None)
@given(
    ny=st.integers(1, 20),
    nx=st.integers(1, 20),
    grow=st.tuples(st.integers(-3, 4), st.integers(-3, 4)),
    dy=shifts,
    dx=shifts,
    dtype=st.sampled_from(["uint16", "float32", "float64"]),
    nans=st.integers(0, 6),
    name=st.sampled_from(["cubic", "linear", "nearest"]),
    seed=st.integers(0, 2**16),
)
def test_the_separable_shift_equals_the_per_pixel_warp(
    ny, nx, grow, dy, dx, dtype, nans, name, seed
):
    rng = np.random.default_rng(seed)
    frame = (rng.random((ny, nx)) * 1000).astype(dtype)
    if dtype != "uint16" and nans:
        frame[rng.integers(0, ny, nans), rng.integers(0, nx, nans)] = np.nan
    oy, ox = max(1, ny + grow[0]), max(1, nx + grow[1])
    per_pixel = _per_pixel(frame, dy, dx, (oy, ox), name)
    out = np.empty((1, 1, oy, ox, 1))
    disp = np.array([dy, dx]).reshape(1, 1, 1, 1, 2)
    warp_field(frame[None, None, :, :, None], disp, ZERO, ZERO, out, interpolation=name)
    np.testing.assert_array_equal(np.isnan(out[0, 0, :, :, 0]), np.isnan(per_pixel))
    np.testing.assert_allclose(out[0, 0, :, :, 0], per_pixel, rtol=1e-12, atol=1e-9)
    if grow == (0, 0):
        same = shift_frame(frame, (dy, dx), np.empty((ny, nx)), interpolation=name)
        np.testing.assert_array_equal(same, out[0, 0, :, :, 0])


@pytest.mark.parametrize("name", ["cubic", "linear", "nearest"])
def test_a_block_of_frames_shifts_each_frame_by_its_own_shift(name):
    rng = np.random.default_rng(4)
    frames = (rng.random((5, 2, 30, 34, 1)) * 4000).astype(np.uint16)
    d = rng.uniform(-6, 6, (5, 2, 1, 1, 2))
    d[0, 0] = 0.0
    d[1, 1] = [2.0, -3.0]
    out = np.empty((5, 2, 33, 36, 1), np.float32)
    warp_field(frames, d, ZERO, ZERO, out, interpolation=name)
    for t in range(5):
        for z in range(2):
            one = _per_pixel(frames[t, z, :, :, 0], *d[t, z, 0, 0], (33, 36), name)
            np.testing.assert_allclose(out[t, z, :, :, 0], one, rtol=1e-6, atol=1e-3)
    # whole shifts copy the values
    np.testing.assert_array_equal(out[0, 0, :30, :34, 0], frames[0, 0, :, :, 0])
    np.testing.assert_array_equal(out[1, 1, 2:32, 0:31, 0], frames[1, 1, :30, 3:34, 0])

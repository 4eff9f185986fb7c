"""Motion-corrected views: rows landing on one pixel give their mean, or NaN if one is missing.

This is SIMA's rule (its row-wise alignment sums the values and divides by
their count, so a NaN among them makes the pixel NaN); the reference below
is that definition written with numpy sums.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sima_fast import Sequence


def sum_over_count(data: np.ndarray, disp: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Per frame: add every source value at its displaced pixel, divide by the count there."""
    T, Z, Y, X, C = data.shape
    total = np.zeros((T, *shape, C))
    count = np.zeros((T, *shape))
    for t in range(T):
        for z in range(Z):
            for y in range(Y):
                dy, dx = disp[t, z, y]
                ty = y + dy
                if ty >= shape[1]:
                    continue
                cols = slice(dx, min(dx + X, shape[2]))
                n = cols.stop - cols.start
                if n <= 0:
                    continue
                with np.errstate(invalid="ignore"):
                    total[t, z, ty, cols] += data[t, z, y, :n]
                count[t, z, ty, cols] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count[..., None]
    out[~np.isfinite(out)] = np.nan  # SIMA's inf stays inf; sima_fast reads it as missing
    return out


def test_a_missing_value_is_not_averaged_away():
    data = np.zeros((2, 1, 2, 4, 1))
    data[:, 0, 0, :, 0] = [1.0, 2.0, 3.0, 4.0]
    data[:, 0, 1, :, 0] = [5.0, np.nan, 7.0, np.inf]
    disp = np.zeros((2, 1, 2, 2), dtype=int)
    disp[0, 0, 0] = (1, 0)  # frame 0: row 0 lands on row 1 too
    seq = Sequence.create("ndarray", data).apply_displacements(disp, (1, 2, 4))
    frames = np.asarray(seq)[:, 0, :, :, 0]
    np.testing.assert_array_equal(frames[0, 1], [3.0, np.nan, 5.0, np.nan])
    assert np.isnan(frames[0, 0]).all()  # nothing landed there
    np.testing.assert_array_equal(frames[1, 1], [5.0, np.nan, 7.0, np.nan])  # one row only
    # Gap filling then takes the pixel from the nearest frame that observed it.
    filled = np.asarray(seq.fill_gaps())[:, 0, :, :, 0]
    np.testing.assert_array_equal(filled[0, 1], [3.0, np.nan, 5.0, np.nan])
    np.testing.assert_array_equal(filled[1, 1], [5.0, np.nan, 7.0, np.nan])
    np.testing.assert_array_equal(filled[1, 0], [1.0, 2.0, 3.0, 4.0])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    dtype=st.sampled_from(["float32", "float64"]),
    n_missing=st.integers(0, 6),
)
def test_row_displacements_match_sum_over_count(seed, dtype, n_missing):
    rng = np.random.default_rng(seed)
    T, Z, Y, X, C = 3, 2, 5, 4, 2
    data = rng.normal(100, 10, (T, Z, Y, X, C)).astype(dtype)
    for _ in range(n_missing):
        idx = tuple(int(rng.integers(0, n)) for n in data.shape)
        data[idx] = np.nan if rng.random() < 0.7 else np.inf
    disp = rng.integers(0, 3, (T, Z, Y, 2))
    shape = (Z, Y + 2, X + 2)
    got = np.asarray(Sequence.create("ndarray", data).apply_displacements(disp, shape))
    expected = sum_over_count(data.astype(np.float64), disp, shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)

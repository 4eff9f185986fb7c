"""The banded sparse-mask kernel (``kernels/extract.py``) against a dense numpy reference.

``tests/test_extract.py`` checks extraction through ``ImagingDataset.extract``
on small frames, which all fit in one band. Here the kernel is called
directly, with bands shrunk to a few pixels so that ROIs span several bands,
clean and dirty bands alternate and the ROI ordering by last pixel matters.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sima_fast.kernels import extract as kx

DTYPES = ["uint8", "uint16", "int16", "int32", "float32", "float64"]


def dense_reference(x, rois):
    """Per ROI and frame: Σ a·x over finite pixels, scaled by Σw² / Σ_finite w².

    The rule of docs/contract.md#missing-pixels.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.full((x.shape[0], len(rois)), np.nan)
    for r, (pix, a, w) in enumerate(rois):
        total = np.sum(w**2)
        for t in range(x.shape[0]):
            v = x[t, pix]
            ok = np.isfinite(v)
            seen = np.sum(w[ok] ** 2)
            if seen > 0:
                out[t, r] = np.sum(a[ok] * v[ok]) * (total / seen)
    return out


def plan_of(rois):
    indptr = np.concatenate([[0], np.cumsum([len(p) for p, _, _ in rois])])
    cat = [np.concatenate([item[k] for item in rois]) if rois else np.zeros(0) for k in range(3)]
    return kx.runs_from_csr(indptr, cat[0].astype(np.int64), cat[1], cat[2])


@st.composite
def kernel_cases(draw):
    n_pixels = draw(st.integers(1, 300))
    n_frames = draw(st.integers(0, 9))
    dtype = draw(st.sampled_from(DTYPES))
    band_bytes = draw(st.sampled_from([1, 32, 64, 200, kx.BAND_BYTES]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rois = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["blob", "scattered", "empty", "zero-weight", "all"]))
        if kind == "empty":
            pix = np.zeros(0, dtype=np.int64)
        elif kind == "all":
            pix = np.arange(n_pixels)
        elif kind == "blob":
            lo = int(rng.integers(0, n_pixels))
            pix = np.arange(lo, min(n_pixels, lo + int(rng.integers(1, 40))))
        else:
            size = int(rng.integers(1, n_pixels + 1))
            pix = np.sort(rng.choice(n_pixels, size=size, replace=False))
        a = rng.uniform(-2, 2, pix.size)
        w = rng.uniform(0.1, 1.5, pix.size)
        if kind == "zero-weight" and pix.size:
            w[rng.random(pix.size) < 0.5] = 0.0
        rois.append((pix.astype(np.int64), a, w))
    if np.dtype(dtype).kind == "f":
        x = rng.normal(100, 30, (n_frames, n_pixels)).astype(dtype)
        pattern = draw(st.sets(st.sampled_from(["scattered", "runs", "frame", "inf"])))
        if n_frames and "scattered" in pattern:
            x[rng.random(x.shape) < 0.15] = np.nan
        if n_frames and "runs" in pattern:
            t = rng.integers(0, n_frames)
            lo = rng.integers(0, n_pixels)
            x[t, lo : lo + 24] = np.nan
        if n_frames and "frame" in pattern:
            x[rng.integers(0, n_frames)] = np.nan
        if n_frames and "inf" in pattern:
            x[rng.integers(0, n_frames), rng.integers(0, n_pixels)] = np.inf
    else:
        info = np.iinfo(dtype)
        x = rng.integers(max(info.min, -1000), min(info.max, 4000), (n_frames, n_pixels))
        x = x.astype(dtype)
    return x, rois, band_bytes


@settings(max_examples=150, deadline=None)
@given(case=kernel_cases(), out_dtype=st.sampled_from([np.float32, np.float64]))
def test_kernel_matches_dense_reference(case, out_dtype):
    x, rois, band_bytes = case
    with mock.patch.object(kx, "BAND_BYTES", band_bytes):
        plan = plan_of(rois)
        out = np.full((x.shape[0], len(rois)), -7.0, dtype=out_dtype)
        got = kx.extract_runs(x, plan, out)
    assert got is out
    want = dense_reference(x, rois)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    rtol = 1e-6 if out_dtype == np.float32 else 1e-10
    scale = np.nanmax(np.abs(want), initial=1.0)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_bands_do_not_change_the_result(dtype):
    """Every band size gives the same values (to rounding) on a 64×64 movie of 40 cells."""
    rng = np.random.default_rng(3)
    n_pixels = 64 * 64
    x = rng.integers(0, 4000, (10, n_pixels)).astype(dtype)
    if dtype == "float32":
        x[2, 130:700] = np.nan
        x[7, ::97] = np.nan
    yy, xx = np.mgrid[:64, :64]
    rois = []
    for _ in range(40):
        cy, cx = rng.uniform(0, 64, 2)
        pix = np.flatnonzero(((yy - cy) ** 2 + (xx - cx) ** 2).ravel() < 20)
        rois.append((pix, rng.uniform(0.5, 1, pix.size), np.ones(pix.size)))
    results = []
    for band_bytes in (2, 64, 512, 4096, kx.BAND_BYTES):
        with mock.patch.object(kx, "BAND_BYTES", band_bytes):
            results.append(kx.extract_runs(x, plan_of(rois), np.empty((10, 40))))
    want = dense_reference(x, rois)
    for got in results:
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_layout_orders_rois_by_last_pixel_and_bands():
    rois = [
        (np.arange(40, 60), np.ones(20), np.ones(20)),  # last pixel 59
        (np.arange(0, 5), np.ones(5), np.ones(5)),  # last pixel 4
        (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)),  # empty
        (np.arange(20, 30), np.ones(10), np.ones(10)),  # last pixel 29
    ]
    with mock.patch.object(kx, "BAND_BYTES", 64):
        lay = kx.ChunkLayout(plan_of(rois), 100, 2)  # bands of 32 pixels
    assert lay.band == 32
    # chunks are 16 wide, so the last chunk of ROI 3 covers pixels 20..35 (band 1)
    assert lay.order.tolist() == [2, 1, 3, 0]
    assert lay.band_end.tolist() == [2, 3, 4, 4]
    assert lay.first_band.tolist() == [1, 0, 0, 0]


def test_bad_arguments():
    plan = plan_of([(np.arange(3), np.ones(3), np.ones(3))])
    with pytest.raises(ValueError, match="out must have shape"):
        kx.extract_runs(np.zeros((2, 10)), plan, np.empty((3, 1)))
    with pytest.raises(ValueError, match="2-D"):
        kx.extract_runs(np.zeros(10), plan, np.empty((1, 1)))
    with pytest.raises(TypeError, match="numbers"):
        kx.extract_runs(np.zeros((2, 10), dtype=complex), plan, np.empty((2, 1)))

"""Tests for the warped view (sima_fast.sequence.warped) and its kernels.

The kernels :func:`~sima_fast.kernels.warp.interpolate_field` and
:func:`~sima_fast.kernels.warp.warp_field` are checked against slow references
written here: ``numpy.interp`` along each axis for the field (bilinear between
block centres, constant beyond), :func:`scipy.ndimage.map_coordinates`
(``order=1``) for the sampling, and a pixel-by-pixel loop for the NaN rule.
The view is checked for chunked reads, save/load through a dataset, extraction,
planes and channels, and its errors.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.ndimage import map_coordinates

import sima_fast as sima
from sima_fast import Sequence
from sima_fast.kernels.warp import SNAP, interpolate_field, warp_field
from sima_fast.sequence import LoadContext, SaveContext, WarpedSequence
from sima_fast.sequence import warped as warped_module

# ---------------------------------------------------------------------------
# slow references
# ---------------------------------------------------------------------------


def field_reference(blocks, cy, cx, shape):
    """Bilinear between centres, constant beyond: np.interp along x, then along y."""
    ny, nx = shape
    out = np.empty((ny, nx, 2))
    for k in range(2):
        rows = np.array([np.interp(np.arange(nx), cx, blocks[g, :, k]) for g in range(len(cy))])
        for col in range(nx):
            out[:, col, k] = np.interp(np.arange(ny), cy, rows[:, col])
    return out


def warp_reference_scipy(frames, blocks, cy, cx, out_shape):
    """map_coordinates(order=1, cval=NaN) at p - d(p), per frame, plane and channel."""
    n, nz, _, _, nc = frames.shape
    oy, ox = out_shape
    out = np.empty((n, nz, oy, ox, nc))
    yy, xx = np.mgrid[:oy, :ox].astype(float)
    for t in range(n):
        for z in range(nz):
            f = field_reference(blocks[t, z], cy, cx, (oy, ox))
            coords = [yy - f[..., 0], xx - f[..., 1]]
            for c in range(nc):
                img = frames[t, z, :, :, c].astype(np.float64)
                out[t, z, :, :, c] = map_coordinates(
                    img, coords, order=1, mode="constant", cval=np.nan
                )
    return out


def on_the_edge(blocks, cy, cx, shape):
    """(n, Z, Y, X): pixels whose source point is within 1e-9 px of the frame's edge."""
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    near = np.zeros((*blocks.shape[:2], ny, nx), bool)
    for t in range(blocks.shape[0]):
        for z in range(blocks.shape[1]):
            f = field_reference(blocks[t, z], cy, cx, shape)
            for s, n in ((yy - f[..., 0], ny), (xx - f[..., 1], nx)):
                near[t, z] |= (np.abs(s) < 1e-9) | (np.abs(s - (n - 1)) < 1e-9)
    return near


def snapped(s: float) -> tuple[int, float]:
    """Whole pixel and fraction of ``s``; within ``SNAP`` of a pixel centre is the centre."""
    i = math.floor(s)
    f = s - i
    if f < SNAP:
        return i, 0.0
    if f > 1.0 - SNAP:
        return i + 1, 0.0
    return i, f


def bilinear_loop(image, y, x):
    """One bilinear sample by the definition: NaN outside; only pixels of nonzero weight count."""
    ny, nx = image.shape
    if not (0 <= y <= ny - 1 and 0 <= x <= nx - 1):
        return np.nan
    (y0, fy), (x0, fx) = snapped(y), snapped(x)
    total = 0.0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            if wy * wx != 0:
                total += wy * wx * float(image[y0 + dy, x0 + dx])
    return total


def warp_reference_loop(frames, blocks, cy, cx, out_shape):
    """Pixel by pixel, on the field of ``interpolate_field`` (checked against np.interp).

    Using the kernel's own field makes the comparison exact where a source point
    falls within rounding of a pixel centre, which decides which pixels are needed.
    """
    n, nz, _, _, nc = frames.shape
    oy, ox = out_shape
    out = np.empty((n, nz, oy, ox, nc))
    for t in range(n):
        for z in range(nz):
            f = interpolate_field(blocks[t, z], cy, cx, np.empty((oy, ox, 2)))
            for r in range(oy):
                for q in range(ox):
                    for c in range(nc):
                        out[t, z, r, q, c] = bilinear_loop(
                            frames[t, z, :, :, c], r - f[r, q, 0], q - f[r, q, 1]
                        )
    return out


def textured(shape, rng, dtype=np.float64):
    data = rng.random(shape) * 1000
    return data.astype(dtype)


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    gy=st.integers(1, 4),
    gx=st.integers(1, 4),
    ny=st.integers(1, 17),
    nx=st.integers(1, 17),
    seed=st.integers(0, 2**31 - 1),
)
def test_interpolate_field_matches_numpy_interp(gy, gx, ny, nx, seed):
    rng = np.random.default_rng(seed)
    cy = np.sort(rng.choice(np.linspace(-3, ny + 3, 41), gy, replace=False))
    cx = np.sort(rng.choice(np.linspace(-3, nx + 3, 41), gx, replace=False))
    blocks = rng.normal(size=(gy, gx, 2)) * 3
    out = np.empty((ny, nx, 2))
    interpolate_field(blocks, cy, cx, out)
    np.testing.assert_allclose(out, field_reference(blocks, cy, cx, (ny, nx)), atol=1e-12)


def test_interpolate_field_is_exact_at_the_centres_and_constant_beyond():
    blocks = np.arange(12, dtype=float).reshape(2, 3, 2)
    cy, cx = np.array([2.0, 6.0]), np.array([1.0, 4.0, 8.0])
    out = interpolate_field(blocks, cy, cx, np.empty((10, 12, 2)))
    for i, r in enumerate((2, 6)):
        for j, q in enumerate((1, 4, 8)):
            np.testing.assert_array_equal(out[r, q], blocks[i, j])
    np.testing.assert_array_equal(out[0, 0], blocks[0, 0])
    np.testing.assert_array_equal(out[9, 11], blocks[1, 2])
    np.testing.assert_allclose(out[4, 1], (blocks[0, 0] + blocks[1, 0]) / 2)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    nz=st.integers(1, 2),
    nc=st.integers(1, 2),
    ny=st.integers(2, 14),
    nx=st.integers(2, 14),
    grid=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dtype=st.sampled_from(["uint16", "float32", "float64"]),
    out_dtype=st.sampled_from(["float32", "float64"]),
    scale=st.sampled_from([0.0, 0.4, 2.5]),
    whole=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_warp_field_matches_map_coordinates(
    n, nz, nc, ny, nx, grid, dtype, out_dtype, scale, whole, seed
):
    rng = np.random.default_rng(seed)
    frames = textured((n, nz, ny, nx, nc), rng, dtype)
    gy, gx = grid
    cy = np.linspace(0, ny - 1, gy + 2)[1:-1]
    cx = np.linspace(0, nx - 1, gx + 2)[1:-1]
    blocks = rng.normal(size=(n, nz, gy, gx, 2)) * scale
    if whole:
        blocks = np.round(blocks)
    out = np.empty((n, nz, ny, nx, nc), dtype=out_dtype)
    warp_field(frames, blocks, cy, cx, out)
    expected = warp_reference_scipy(frames, blocks, cy, cx, (ny, nx))
    # a source point within rounding of the frame's edge may fall either side of it
    edge = np.broadcast_to(on_the_edge(blocks, cy, cx, (ny, nx))[..., None], out.shape)
    np.testing.assert_array_equal(np.isnan(out)[~edge], np.isnan(expected)[~edge])
    tol = 1e-3 if out_dtype == "float32" else 1e-9
    np.testing.assert_allclose(
        np.where(edge, np.nan, out), np.where(edge, np.nan, expected), rtol=tol, atol=tol
    )
    if scale == 0.0:  # no motion: an exact copy
        np.testing.assert_array_equal(out, frames.astype(out_dtype))


@settings(max_examples=25, deadline=None)
@given(
    ny=st.integers(2, 9),
    nx=st.integers(2, 9),
    nan_rows=st.lists(st.integers(0, 8), max_size=2),
    nan_pixels=st.integers(0, 4),
    whole=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
@example(ny=4, nx=3, nan_rows=[], nan_pixels=2, whole=True, seed=1497549)  # near a centre
def test_warp_field_nan_rule_matches_the_pixel_loop(ny, nx, nan_rows, nan_pixels, whole, seed):
    rng = np.random.default_rng(seed)
    frames = textured((2, 1, ny, nx, 1), rng)
    for r in nan_rows:
        if r < ny:
            frames[:, :, r] = np.nan
    for _ in range(nan_pixels):
        frames[rng.integers(2), 0, rng.integers(ny), rng.integers(nx), 0] = np.nan
    cy, cx = np.array([0.0, ny - 1.0]), np.array([nx / 2])
    blocks = rng.normal(size=(2, 1, 2, 1, 2)) * 1.5
    if whole:
        blocks = np.round(blocks)
    out = warp_field(frames, blocks, cy, cx, np.empty_like(frames))
    expected = warp_reference_loop(frames, blocks, cy, cx, (ny, nx))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_allclose(out, expected, atol=1e-9)


def test_warp_field_errors():
    frames = np.zeros((2, 1, 5, 6, 1))
    out = np.empty_like(frames)
    cy, cx = np.array([2.0]), np.array([3.0])
    good = np.zeros((2, 1, 1, 1, 2))
    with pytest.raises(TypeError, match="out must be"):
        warp_field(frames, good, cy, cx, np.empty(frames.shape, np.int32))
    with pytest.raises(ValueError, match="displacements must have shape"):
        warp_field(frames, np.zeros((2, 1, 1, 2)), cy, cx, out)
    with pytest.raises(ValueError, match="finite"):
        warp_field(frames, np.full((2, 1, 1, 1, 2), np.nan), cy, cx, out)
    with pytest.raises(ValueError, match="centres_y"):
        warp_field(frames, good, np.array([1.0, 2.0]), cx, out)
    with pytest.raises(ValueError, match="strictly increasing"):
        interpolate_field(np.zeros((2, 1, 2)), [3.0, 3.0], [1.0], np.empty((4, 4, 2)))
    with pytest.raises(ValueError, match="incompatible"):
        warp_field(frames, good, cy, cx, np.empty((2, 1, 5, 6, 2)))


# ---------------------------------------------------------------------------
# the view
# ---------------------------------------------------------------------------


def movie(shape=(7, 2, 12, 15, 2), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return textured(shape, rng, dtype)


def block_view(data, seed=1, frame_shape=None):
    rng = np.random.default_rng(seed)
    T, Z, Y, X, _ = data.shape
    blocks = rng.normal(size=(T, Z, 2, 3, 2)) * 1.5
    grid = (np.array([3.0, Y - 4.0]), np.array([2.0, X / 2, X - 3.0]))
    seq = Sequence.create("ndarray", data)
    return WarpedSequence(seq, blocks, grid=grid, frame_shape=frame_shape), blocks, grid


def test_the_view_equals_the_reference_and_reads_the_same_by_chunks(monkeypatch):
    data = movie()
    view, blocks, grid = block_view(data)
    assert view.shape == data.shape and view.dtype == np.float32
    whole = view.read_chunk(0, len(view))
    expected = warp_reference_scipy(data, blocks, *grid, data.shape[2:4])
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(expected))
    np.testing.assert_allclose(whole, expected, rtol=1e-5, atol=1e-3)
    for chunk in (1, 3, 7):
        parts = np.concatenate([c for _, c in view.iter_chunks(chunk)])
        np.testing.assert_array_equal(parts, whole)
    # the view reads its source in bounded slices: force slices of one frame
    monkeypatch.setattr(warped_module, "ITER_CHUNK_BYTES", 1)
    np.testing.assert_array_equal(view.read_chunk(0, len(view)), whole)
    frames = list(view)
    assert frames[0].dtype == np.float64 and frames[0].shape == data.shape[1:]
    np.testing.assert_array_equal(np.stack(frames), whole.astype(np.float64))


def test_planes_have_their_own_field_and_channels_share_it():
    data = movie()
    data[..., 1] = 2 * data[..., 0] + 5
    view, blocks, _ = block_view(data)
    out = view.read_chunk(0, len(view)).astype(np.float64)
    np.testing.assert_allclose(out[..., 1], 2 * out[..., 0] + 5, rtol=1e-5)
    # plane 1 alone, warped by its own field, equals plane 1 of the view
    one = WarpedSequence(
        Sequence.create("ndarray", data[:, 1:]), blocks[:, 1:], grid=view.grid
    ).read_chunk(0, len(view))
    np.testing.assert_array_equal(one, out[:, 1:].astype(np.float32))
    field = view.field(3, 1)
    np.testing.assert_allclose(
        field, field_reference(blocks[3, 1], *view.grid, data.shape[2:4]), atol=1e-12
    )


def test_rigid_per_plane_shifts_match_scipy_shift():
    from scipy.ndimage import shift

    data = movie((4, 2, 10, 11, 1), np.float64)
    rng = np.random.default_rng(3)
    disp = rng.uniform(-2.5, 2.5, size=(4, 2, 2))
    view = WarpedSequence(Sequence.create("ndarray", data), disp)
    assert view.grid is None
    out = view.read_chunk(0, 4)
    for t in range(4):
        for z in range(2):
            expected = shift(data[t, z, :, :, 0], disp[t, z], order=1, cval=np.nan)
            got = out[t, z, :, :, 0]
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
            np.testing.assert_allclose(got, expected, atol=1e-9)


def test_whole_pixel_fields_equal_apply_displacements():
    data = movie((5, 1, 9, 10, 2), np.uint16)
    rng = np.random.default_rng(4)
    disp = rng.integers(0, 3, size=(5, 1, 2))
    seq = Sequence.create("ndarray", data)
    moved = seq.apply_displacements(disp)
    warped = WarpedSequence(seq, disp.astype(float), frame_shape=moved.shape[1:4])
    assert warped.shape == moved.shape
    np.testing.assert_array_equal(np.asarray(warped), np.asarray(moved))


def test_larger_frame_shape_and_nan_source_rows():
    data = movie((3, 1, 8, 9, 1), np.float64)
    data[1, 0, 4] = np.nan
    seq = Sequence.create("ndarray", data)
    view = WarpedSequence(seq, np.zeros((3, 1, 2)), frame_shape=(1, 10, 12))
    out = np.asarray(view)
    assert out.shape == (3, 1, 10, 12, 1)
    np.testing.assert_array_equal(out[:, :, :8, :9], data)
    assert np.isnan(out[:, :, 8:]).all() and np.isnan(out[:, :, :, 9:]).all()
    shifted = np.asarray(WarpedSequence(seq, np.full((3, 1, 2), [0.5, 0.0])))
    assert np.isnan(shifted[1, 0, 4:6]).all()  # rows 4 and 5 need source row 4
    assert np.isfinite(shifted[1, 0, 6:]).all() and np.isfinite(shifted[1, 0, 1:4]).all()


def test_description_round_trip_with_contexts(tmp_path):
    data = movie()
    view, _, _ = block_view(data, frame_shape=(2, 13, 14))
    ctx = SaveContext(str(tmp_path))
    d = view.todict(ctx)
    assert json.loads(json.dumps(d)) == d
    assert d["fmt"] == "warped" and d["frame_shape"] == [2, 13, 14]
    again = Sequence.fromdict(d, LoadContext(str(tmp_path), ctx.arrays))
    assert isinstance(again, WarpedSequence)
    np.testing.assert_array_equal(np.asarray(again), np.asarray(view))
    rigid = WarpedSequence(Sequence.create("ndarray", data), np.ones((7, 2, 2)) * 0.25)
    d = rigid.todict(ctx)
    assert "grid_y" not in d
    again = Sequence.fromdict(d, LoadContext(str(tmp_path), ctx.arrays))
    np.testing.assert_array_equal(np.asarray(again), np.asarray(rigid))
    broken = dict(d, grid_y={"array": d["displacements"]["array"]})
    with pytest.raises(ValueError, match="only one of grid_y"):
        Sequence.fromdict(broken, LoadContext(str(tmp_path), ctx.arrays))
    with pytest.raises(ValueError, match="displacements"):
        Sequence.fromdict(dict(d, displacements=7), LoadContext(str(tmp_path), ctx.arrays))


def test_dataset_of_warped_views_saves_loads_and_extracts(tmp_path):
    from sima_fast.ROI import ROI, ROIList

    data = movie((6, 1, 12, 15, 1), np.uint16)
    view, _, _ = block_view(data)
    ds = sima.ImagingDataset([view], str(tmp_path / "warped.sima"))
    saved = json.loads((tmp_path / "warped.sima" / "metadata.json").read_text())
    assert saved["sequences"][0]["fmt"] == "warped"
    again = sima.ImagingDataset.load(ds.savedir)
    assert isinstance(again.sequences[0], WarpedSequence)
    np.testing.assert_array_equal(np.asarray(again.sequences[0]), np.asarray(view))
    mask = np.zeros((1, 12, 15), bool)
    mask[0, 4:8, 5:10] = True
    signals = again.extract(ROIList([ROI(mask=mask)]), label="cells")
    frames = np.asarray(view)[:, 0, 4:8, 5:10, 0]
    mean = np.nanmean(np.asarray(view)[:, 0, 4:8, 5:10, 0], axis=0)
    expected = np.array([np.nanmean(f / mean) for f in frames])
    np.testing.assert_allclose(signals["raw"][0][0], expected, rtol=1e-4)


def test_view_errors():
    seq = Sequence.create("ndarray", movie((4, 1, 8, 9, 1)))
    grid = ([2.0, 5.0], [4.0])
    ok = np.zeros((4, 1, 2, 1, 2))
    with pytest.raises(TypeError, match="displacements must be a numeric"):
        WarpedSequence(seq, "up")
    with pytest.raises(ValueError, match=r"displacements must have shape \(T, Z, 2\)"):
        WarpedSequence(seq, np.zeros((3, 1, 2)))
    with pytest.raises(ValueError, match="finite"):
        WarpedSequence(seq, np.full((4, 1, 2), np.inf))
    with pytest.raises(ValueError, match="grid must be None"):
        WarpedSequence(seq, np.zeros((4, 1, 2)), grid=grid)
    with pytest.raises(ValueError, match=r"grid=.*required"):
        WarpedSequence(seq, ok)
    with pytest.raises(TypeError, match="grid must be a pair"):
        WarpedSequence(seq, ok, grid=np.zeros(3))
    with pytest.raises(ValueError, match="centres_y must hold 2"):
        WarpedSequence(seq, ok, grid=([1.0], [4.0]))
    with pytest.raises(ValueError, match="centres_y must be finite and strictly"):
        WarpedSequence(seq, ok, grid=([5.0, 2.0], [4.0]))
    with pytest.raises(TypeError, match="centres_x must be a 1-D array of numbers"):
        WarpedSequence(seq, ok, grid=([2.0, 5.0], ["a"]))
    with pytest.raises(ValueError, match="planes"):
        WarpedSequence(seq, ok, grid=grid, frame_shape=(2, 8, 9))
    with pytest.raises(ValueError, match="channels"):
        WarpedSequence(seq, ok, grid=grid, frame_shape=(1, 8, 9, 3))
    with pytest.raises(TypeError, match="frame_shape"):
        WarpedSequence(seq, ok, grid=grid, frame_shape="big")
    view = WarpedSequence(seq, ok, grid=grid)
    with pytest.raises(IndexError):
        view.field(4)

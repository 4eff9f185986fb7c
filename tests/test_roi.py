"""Tests for sima_fast.ROI: geometry, serialisation (HDF5, SIMA pickle, ImageJ)."""

from __future__ import annotations

import os
import re
import shutil
import time
import zipfile
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pytest
import roifile
import scipy.ndimage
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st
from roifile import ROI_OPTIONS, ROI_SUBTYPE, ROI_TYPE, ImagejRoi

import sima_fast.io.imagej as imagej_module
import sima_fast.io.native as native_module
from sima_fast._geometry import polygon_to_mask
from sima_fast.io.native import read_roilist_group, write_roilist_group
from sima_fast.ROI import ROI, ROIList

DATA = Path(__file__).parent / "data" / "sima132"
LEGACY_PKL = DATA / "hdf5_and_ndarray.sima" / "rois.pkl"
EXPECTED = DATA / "hdf5_and_ndarray_expected.npz"

SQUARE = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)


# --------------------------------------------------------------------------
# Plain references
# --------------------------------------------------------------------------


def _centre_strictly_inside(vertices, cx, cy) -> bool:
    """Exact (rational) even-odd test; a point on an edge counts as outside."""
    pts = [(Fraction(float(x)), Fraction(float(y))) for x, y in vertices]
    inside = False
    for i in range(len(pts)):
        (ax, ay), (bx, by) = pts[i], pts[(i + 1) % len(pts)]
        cross = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if cross == 0 and min(ax, bx) <= cx <= max(ax, bx) and min(ay, by) <= cy <= max(ay, by):
            return False
        if (ay > cy) != (by > cy):
            x_cross = ax + (cy - ay) * (bx - ax) / (by - ay)
            if cx < x_cross:
                inside = not inside
    return inside


def reference_mask(polygons, im_shape) -> np.ndarray:
    """Slow per-pixel rasterisation with the strict pixel-centre rule."""
    _, rows, cols = im_shape
    out = np.zeros(im_shape, dtype=bool)
    for poly in polygons:
        poly = np.asarray(poly, dtype=float)
        z = int(poly[0, 2]) if poly.shape[1] == 3 else 0
        for y in range(rows):
            for x in range(cols):
                centre = (Fraction(2 * x + 1, 2), Fraction(2 * y + 1, 2))
                if _centre_strictly_inside(poly[:, :2], *centre):
                    out[z, y, x] = True
    return out


def reference_ellipse_mask(left, top, width, height, shape) -> np.ndarray:
    """Pixels whose centre lies inside or on the ellipse inscribed in the box."""
    out = np.zeros(shape, dtype=bool)
    a, b = width / 2, height / 2
    cx, cy = left + a, top + b
    for y in range(shape[0]):
        for x in range(shape[1]):
            if ((x + 0.5 - cx) / a) ** 2 + ((y + 0.5 - cy) / b) ** 2 <= 1:
                out[y, x] = True
    return out


def dense(roi: ROI) -> np.ndarray:
    return np.asarray(roi)


def same_rings(a, b, atol=0.0):
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        np.testing.assert_allclose(p, q, atol=atol, rtol=0)


# --------------------------------------------------------------------------
# ROI geometry
# --------------------------------------------------------------------------


def test_unit_square_is_pixel_zero():
    roi = ROI(polygons=SQUARE, im_shape=(1, 3, 3))
    expected = np.zeros((1, 3, 3), bool)
    expected[0, 0, 0] = True
    np.testing.assert_array_equal(dense(roi), expected)
    assert dense(roi).dtype == bool
    assert roi.size == 1


def test_polygon_storage_conventions():
    open_ring = ROI(polygons=SQUARE)
    closed_ring = ROI(polygons=np.vstack([SQUARE, SQUARE[:1]]))
    for roi in (open_ring, closed_ring):
        (poly,) = roi.rings
        assert poly.shape == (4, 3)
        np.testing.assert_array_equal(poly[:, 2], 0)
        (ring,) = roi.coords
        assert ring.shape == (5, 3)
        np.testing.assert_array_equal(ring[0], ring[-1])
    # nested lists: one polygon, several polygons
    assert len(ROI(polygons=SQUARE.tolist()).rings) == 1
    assert len(ROI(polygons=[SQUARE.tolist(), (SQUARE + 2).tolist()]).rings) == 2
    ragged = [SQUARE, np.array([[0, 0, 1], [3, 0, 1], [0, 3, 1]])]
    assert [p.shape for p in ROI(polygons=ragged).rings] == [(4, 3), (3, 3)]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-8, 56), st.integers(-8, 48)),
        min_size=3,
        max_size=7,
    )
)
def test_polygon_rasterisation_matches_reference(vertices):
    poly = np.array(vertices, dtype=float) / 4.0  # quarter-pixel grid: exercises edge ties
    im_shape = (1, 10, 12)
    roi = ROI(polygons=poly, im_shape=im_shape)
    np.testing.assert_array_equal(dense(roi), reference_mask([poly], im_shape))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-5, 40, allow_subnormal=False), st.floats(-5, 30, allow_subnormal=False)
        ),
        min_size=3,
        max_size=9,
    )
)
def test_windowed_rasterisation_equals_full_frame(vertices):
    poly = np.array(vertices)
    im_shape = (1, 24, 32)
    roi = ROI(polygons=poly, im_shape=im_shape)
    np.testing.assert_array_equal(dense(roi)[0], polygon_to_mask(poly, im_shape[1:]))


def test_several_polygons_and_planes():
    a = np.column_stack([SQUARE * 3, np.zeros(4)])  # pixels (0..2, 0..2) on plane 0
    b = np.column_stack([SQUARE * 2 + 2, np.zeros(4)])  # overlaps a at pixel (2, 2)
    c = np.column_stack([SQUARE + np.array([4, 1]), np.full(4, 2.0)])  # plane 2
    roi = ROI(polygons=[a, b, c], im_shape=(3, 6, 6))
    np.testing.assert_array_equal(dense(roi), reference_mask([a, b, c], (3, 6, 6)))
    assert dense(roi)[0].sum() == 9 + 4 - 1
    assert dense(roi)[1].sum() == 0
    assert dense(roi)[2, 1, 4]
    assert [m.shape for m in roi.mask] == [(6, 6)] * 3
    assert all(isinstance(m, scipy.sparse.csr_matrix) for m in roi.mask)


def test_legacy_manual_masks_match_sima():
    expected = np.load(EXPECTED)
    rois = ROIList.load(LEGACY_PKL, label="manual")
    for i, roi in enumerate(rois):
        roi.im_shape = (2, 20, 24)
        got = dense(roi)
        assert got.dtype == bool
        np.testing.assert_array_equal(got, expected[f"mask_roi{i}"])


def _hole_free(mask: np.ndarray) -> np.ndarray:
    return scipy.ndimage.binary_fill_holes(mask)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.2, 0.7))
def test_mask_polygon_mask_round_trip(seed, density):
    rng = np.random.default_rng(seed)
    mask = _hole_free(rng.random((9, 11)) < density)
    roi = ROI(mask=mask)
    back = ROI(polygons=roi.rings, im_shape=(1, 9, 11)) if roi.rings else None
    got = np.zeros((1, 9, 11), bool) if back is None else dense(back)
    np.testing.assert_array_equal(got[0], mask)


def test_mask_polygons_pixel_corner_convention():
    mask = np.zeros((5, 6), bool)
    mask[1:4, 2:5] = True  # a 3x3 blob at x 2..4, y 1..3
    (poly,) = ROI(mask=mask).rings
    assert poly.shape[1] == 3
    np.testing.assert_array_equal(poly[:, 2], 0)
    # the outline passes half a pixel outside the blob's pixel centres
    assert poly[:, 0].min() == 2.0 and poly[:, 0].max() == 5.0
    assert poly[:, 1].min() == 1.0 and poly[:, 1].max() == 4.0
    again = ROI(polygons=poly, im_shape=(5, 6))
    np.testing.assert_array_equal(dense(again)[0], mask)


def test_mask_inputs_are_equivalent():
    rng = np.random.default_rng(3)
    stack = rng.random((2, 5, 7)) < 0.4
    variants = [
        stack,
        list(stack),
        [scipy.sparse.csr_matrix(p) for p in stack],
        [scipy.sparse.lil_matrix(p) for p in stack],
    ]
    for v in variants:
        roi = ROI(mask=v)
        np.testing.assert_array_equal(dense(roi), stack)
        assert dense(roi).dtype == bool
        assert roi.size == stack.sum()
    single = ROI(mask=stack[0])
    assert dense(single).shape == (1, 5, 7)


def test_weighted_mask_preserved():
    w = np.zeros((4, 5))
    w[1:3, 1:4] = [[0.25, 0.5, 1.0], [2.0, 0.125, 0.75]]
    roi = ROI(mask=w)
    got = dense(roi)
    assert got.dtype.kind == "f"
    np.testing.assert_array_equal(got[0], w)
    np.testing.assert_array_equal(roi.mask[0].toarray(), w)
    assert roi.size == 6
    with pytest.raises(ValueError, match="weighted"):
        _ = roi.rings
    with pytest.raises(ValueError, match="weighted"):
        _ = roi.coords
    f32 = ROI(mask=w.astype(np.float32))
    assert f32.mask[0].dtype == np.float32


def test_mask_padding_and_cropping_with_im_shape():
    m = np.zeros((4, 4), bool)
    m[1, 1] = m[3, 3] = True
    roi = ROI(mask=m, im_shape=(3, 4, 4))
    planes = roi.mask
    assert len(planes) == 3
    assert [p.shape for p in planes] == [(4, 4)] * 3
    assert planes[1].nnz == 0 and planes[2].nnz == 0
    roi.im_shape = (1, 6, 5)
    assert dense(roi).shape == (1, 6, 5)
    assert dense(roi)[0, :4, :4].tolist() == m.tolist()
    roi.im_shape = (3, 3)  # crops the pixel at (3, 3)
    assert dense(roi).sum() == 1
    two_planes = ROI(mask=np.stack([m, m]))
    two_planes.im_shape = (1, 4, 4)
    with pytest.raises(ValueError, match="plane 1"):
        _ = two_planes.mask


def test_im_shape_normalisation_and_validation():
    roi = ROI(polygons=SQUARE, im_shape=(4, 5))
    assert roi.im_shape == (1, 4, 5)
    roi.im_shape = (2, 3, 4)
    assert roi.im_shape == (2, 3, 4)
    assert dense(roi).shape == (2, 3, 4)
    roi.im_shape = None
    assert roi.im_shape is None
    for bad, exc in [((0, 4), ValueError), ((1, -2, 3), ValueError), ((1, 2, 3, 4), ValueError)]:
        with pytest.raises(exc):
            ROI(polygons=SQUARE, im_shape=bad)
    with pytest.raises(TypeError):
        roi.im_shape = (1.5, 3)
    with pytest.raises(TypeError):
        roi.im_shape = 5


def test_constructor_errors():
    with pytest.raises(TypeError):
        ROI()
    with pytest.raises(TypeError):
        ROI(mask=np.ones((2, 2), bool), polygons=SQUARE)
    with pytest.raises(ValueError, match="im_shape"):
        _ = ROI(polygons=SQUARE).mask
    with pytest.raises(ValueError, match="im_shape"):
        np.asarray(ROI(polygons=SQUARE))
    with pytest.raises(ValueError, match="one plane"):
        ROI(polygons=[[0, 0, 0], [1, 0, 0], [1, 1, 1]])
    with pytest.raises(ValueError):
        ROI(polygons=np.zeros((0, 2)))
    with pytest.raises(ValueError):
        ROI(polygons=[[0, 0], [1, np.nan], [1, 1]])
    with pytest.raises(ValueError, match="same shape"):
        ROI(mask=[np.ones((2, 2)), np.ones((3, 2))])
    with pytest.raises(TypeError):
        ROI(polygons=SQUARE, tags=[1, 2])


def test_bad_plane_index():
    poly = np.column_stack([SQUARE, np.full(4, 2.0)])
    roi = ROI(polygons=poly, im_shape=(2, 4, 4))
    with pytest.raises(ValueError, match="z=2"):
        _ = roi.mask
    roi.im_shape = (3, 4, 4)
    assert dense(roi)[2, 0, 0]
    neg = ROI(polygons=np.column_stack([SQUARE, np.full(4, -1.0)]), im_shape=(2, 4, 4))
    with pytest.raises(ValueError):
        _ = neg.mask


def test_properties_and_tags():
    roi = ROI(polygons=SQUARE, label="cell1", tags=["a", "b"], id="x7")
    assert roi.label == "cell1" and roi.id == "x7"
    assert roi.tags == {"a", "b"} and isinstance(roi.tags, set)
    roi.tags.add("c")
    assert "c" in roi.tags
    roi.tags = "single"
    assert roi.tags == {"single"}
    assert ROI(polygons=SQUARE).tags == set()
    # returned geometry is a copy
    roi.rings[0][:] = 99
    assert roi.rings[0].max() == 1


@pytest.mark.parametrize("kind", ["polygons", "mask", "weighted"])
def test_todict_round_trip(kind):
    if kind == "polygons":
        roi = ROI(
            polygons=[SQUARE * 2, np.column_stack([SQUARE + 1, np.ones(4)])],
            label="L",
            tags={"t"},
            id="i",
            im_shape=(2, 5, 5),
        )
    else:
        m = np.zeros((2, 5, 6))
        m[0, 1:3, 2:4] = 1 if kind == "mask" else 0.5
        m[1, 4, 5] = 1 if kind == "mask" else 3.0
        roi = ROI(mask=m.astype(bool) if kind == "mask" else m, label=None, tags=None)
    d = roi.todict()
    assert set(d) == {"mask", "polygons", "label", "tags", "id", "im_shape"}
    assert (d["mask"] is None) == (kind == "polygons")
    assert (d["polygons"] is None) != (kind == "polygons")
    if kind == "polygons":
        assert all(np.array_equal(p[0], p[-1]) for p in d["polygons"])
    else:
        assert all(scipy.sparse.issparse(m) for m in d["mask"])
    again = ROI(**d)
    assert (again.label, again.id, again.tags, again.im_shape) == (
        roi.label,
        roi.id,
        roi.tags,
        roi.im_shape,
    )
    if kind == "polygons":
        same_rings(again.rings, roi.rings)
    np.testing.assert_array_equal(dense(again), dense(roi))
    assert dense(again).dtype == dense(roi).dtype
    assert ROI.fromdict(d).label == roi.label


# --------------------------------------------------------------------------
# ROIList basics
# --------------------------------------------------------------------------


def test_roilist_validation_and_timestamp():
    rois = ROIList([ROI(polygons=SQUARE)])
    assert isinstance(rois, list)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d-\d\dh\d\dm\d\ds", rois.timestamp)
    time.strptime(rois.timestamp, "%Y-%m-%d-%Hh%Mm%Ss")
    assert ROIList([], timestamp="2001-01-01-00h00m00s").timestamp == "2001-01-01-00h00m00s"
    with pytest.raises(TypeError):
        ROIList([ROI(polygons=SQUARE), "nope"])
    with pytest.raises(TypeError):
        rois.append({"polygons": SQUARE})
    with pytest.raises(TypeError):
        rois.extend([1])
    with pytest.raises(TypeError):
        rois[0] = 3
    rois.append(ROI(polygons=SQUARE + 1))
    assert len(rois) == 2


def test_subset():
    rois = ROIList(
        [
            ROI(polygons=SQUARE, id="1", tags={"cell", "good"}),
            ROI(polygons=SQUARE, id="2", tags={"cell"}),
            ROI(polygons=SQUARE, id="3", tags={"dendrite", "good"}),
            ROI(polygons=SQUARE, id="4"),
        ]
    )
    ids = lambda rl: [r.id for r in rl]  # noqa: E731
    assert ids(rois.subset(tags=["cell"])) == ["1", "2"]
    assert ids(rois.subset(tags=["cell", "good"])) == ["1"]
    assert ids(rois.subset(neg_tags=["good"])) == ["2", "4"]
    assert ids(rois.subset(tags="good", neg_tags="cell")) == ["3"]
    assert ids(rois.subset()) == ["1", "2", "3", "4"]
    assert isinstance(rois.subset(tags=["x"]), ROIList)


# --------------------------------------------------------------------------
# transform
# --------------------------------------------------------------------------


def _rigid(theta, tx, ty):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, tx], [s, c, ty]])


def test_transform_affine_matches_numpy():
    poly0 = np.array([[1.0, 2.0, 0.0], [6.0, 2.0, 0.0], [5.0, 7.0, 0.0]])
    poly1 = np.array([[3.0, 3.0, 1.0], [4.0, 3.5, 1.0], [3.5, 6.0, 1.0], [2.0, 5.0, 1.0]])
    rois = ROIList(
        [ROI(polygons=[poly0, poly1], label="a", id="i", tags={"t"}, im_shape=(2, 10, 10))]
    )
    m0, m1 = _rigid(0.3, 2.0, -1.0), _rigid(-1.1, 0.5, 4.0)
    out = rois.transform([m0, m1], im_shape=(2, 12, 12))
    assert isinstance(out, ROIList) and len(out) == 1
    new = out[0]
    assert (new.label, new.id, new.tags, new.im_shape) == ("a", "i", {"t"}, (2, 12, 12))
    for src, dst, m in [(poly0, new.rings[0], m0), (poly1, new.rings[1], m1)]:
        expected = (m[:, :2] @ src[:, :2].T).T + m[:, 2]
        np.testing.assert_allclose(dst[:, :2], expected, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(dst[:, 2], src[:, 2])
    # the same as 3x3 homogeneous matrices, and as callables
    as3 = [np.vstack([m, [0, 0, 1]]) for m in (m0, m1)]
    same_rings(rois.transform(as3)[0].rings, new.rings, atol=1e-12)
    fns = [lambda xy, m=m: xy @ m[:, :2].T + m[:, 2] for m in (m0, m1)]
    same_rings(rois.transform(fns)[0].rings, new.rings, atol=1e-12)
    bare = rois.transform([m0, m1], copy_properties=False)[0]
    assert (bare.label, bare.id, bare.tags, bare.im_shape) == (None, None, set(), None)


def test_transform_single_and_mask_rois():
    m = np.zeros((6, 6), bool)
    m[1:3, 1:4] = True
    rois = ROIList([ROI(mask=m, label="m")])
    shift = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
    out = rois.transform(shift, im_shape=(1, 6, 6))
    expected = np.zeros((6, 6), bool)
    expected[2:4, 3:6] = True
    np.testing.assert_array_equal(dense(out[0])[0], expected)
    with pytest.raises(ValueError, match="plane 1"):
        ROIList([ROI(polygons=np.column_stack([SQUARE, np.ones(4)]))]).transform([shift])
    with pytest.raises(ValueError):
        rois.transform(np.eye(4))
    with pytest.raises(ValueError, match="weighted"):
        ROIList([ROI(mask=m * 0.5)]).transform(shift)


# --------------------------------------------------------------------------
# HDF5 format
# --------------------------------------------------------------------------


def _sample_rois(timestamp="2020-01-01-00h00m00s") -> ROIList:
    w = np.zeros((2, 6, 7), np.float32)
    w[0, 1, 2] = 0.5
    w[1, 3, 4] = 2.5
    b = np.zeros((6, 7), bool)
    b[2:4, 2:5] = True
    return ROIList(
        [
            ROI(
                polygons=[SQUARE * 2, np.column_stack([SQUARE + 3, np.ones(4)])],
                label="p",
                id="id-p",
                tags={"cell", "good"},
                im_shape=(2, 6, 7),
            ),
            ROI(mask=b, label=None, id=None, tags=None),
            ROI(mask=w, label="w", tags={"weighted"}),
            ROI(mask=[scipy.sparse.csr_matrix(b.astype(np.uint8))], label="u8"),
        ],
        timestamp=timestamp,
    )


def _assert_same_rois(a: ROIList, b: ROIList):
    assert len(a) == len(b)
    assert a.timestamp == b.timestamp
    for r, s in zip(a, b, strict=True):
        assert (r.label, r.id, r.tags, r.im_shape) == (s.label, s.id, s.tags, s.im_shape)
        assert r.is_mask_roi == s.is_mask_roi
        if r.is_mask_roi:
            assert len(r.mask) == len(s.mask)
            for p, q in zip(r.mask, s.mask, strict=True):
                assert p.dtype == q.dtype and p.shape == q.shape
                np.testing.assert_array_equal(p.toarray(), q.toarray())
        else:
            same_rings(r.rings, s.rings)


def test_h5_round_trip_several_labels_and_replacement(tmp_path):
    path = tmp_path / "rois.h5"
    first = _sample_rois("2020-01-01-00h00m00s")
    second = ROIList([ROI(polygons=SQUARE * 4, label="only")], timestamp="2021-05-05-10h00m00s")
    first.save(path, label="first")
    second.save(path)  # default label: the timestamp
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89HDF\r\n\x1a\n"
    _assert_same_rois(ROIList.load(path, label="first"), first)
    _assert_same_rois(ROIList.load(path, label=second.timestamp), second)
    _assert_same_rois(ROIList.load(path), second)  # most recent timestamp
    _assert_same_rois(ROIList.load(path, label="first", fmt="h5"), first)
    replacement = ROIList([ROI(polygons=SQUARE, label="new")], timestamp="2019-01-01-00h00m00s")
    replacement.save(path, label="first")
    _assert_same_rois(ROIList.load(path, label="first"), replacement)
    _assert_same_rois(ROIList.load(path, label=second.timestamp), second)
    with h5py.File(path, "r") as f:
        assert set(f) == {"first", second.timestamp}
    with pytest.raises(KeyError, match=r"nope.*first"):
        ROIList.load(path, label="nope")


def test_h5_latest_timestamp_tie_picks_last(tmp_path):
    path = tmp_path / "rois.h5"
    ts = "2022-02-02-02h02m02s"
    ROIList([ROI(polygons=SQUARE, label="x")], timestamp=ts).save(path, label="zz")
    ROIList([ROI(polygons=SQUARE, label="y")], timestamp=ts).save(path, label="aa")
    assert ROIList.load(path)[0].label == "y"


def test_h5_group_helpers_and_empty_list(tmp_path):
    path = tmp_path / "dataset.h5"
    rois = _sample_rois()
    with h5py.File(path, "w") as f:
        write_roilist_group(f.create_group("sets/manual"), rois)
        write_roilist_group(f.create_group("empty"), ROIList([], timestamp="2000-01-01-00h00m00s"))
    with h5py.File(path, "r") as f:
        _assert_same_rois(read_roilist_group(f["sets/manual"]), rois)
        empty = read_roilist_group(f["empty"])
        assert len(empty) == 0 and empty.timestamp == "2000-01-01-00h00m00s"
        g = f["sets/manual/rois/0"]
        assert g["polygons/0"].dtype == np.float64 and g["polygons/0"].shape == (4, 3)
        assert "id" not in f["sets/manual/rois/1"].attrs
        assert f["sets/manual/rois/2/mask/0/data"].dtype == np.float32
        with pytest.raises(ValueError):
            read_roilist_group(f["sets"])
    # rewriting a group replaces its content
    with h5py.File(path, "a") as f:
        write_roilist_group(f["sets/manual"], [ROI(polygons=SQUARE)])
        assert len(read_roilist_group(f["sets/manual"])) == 1


def test_h5_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "rois.h5"
    old = _sample_rois()
    old.save(path, label="keep")
    before = path.read_bytes()
    calls = []

    def exploding(group, roilist):
        calls.append(group.name)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(native_module, "write_roilist_group", exploding)
    with pytest.raises(RuntimeError, match="disk on fire"):
        ROIList([ROI(polygons=SQUARE)]).save(path, label="keep")
    with pytest.raises(RuntimeError):
        ROIList([ROI(polygons=SQUARE)]).save(path, label="other")
    assert calls
    monkeypatch.undo()
    assert path.read_bytes() == before
    _assert_same_rois(ROIList.load(path, label="keep"), old)
    assert sorted(os.listdir(tmp_path)) == ["rois.h5"]


def test_save_refuses_to_clobber_unknown_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("precious")
    with pytest.raises(ValueError, match="not an ROI file"):
        ROIList([ROI(polygons=SQUARE)]).save(path)
    assert path.read_text() == "precious"


def test_save_over_legacy_pickle_keeps_its_sets(tmp_path):
    path = tmp_path / "rois.pkl"
    shutil.copy(LEGACY_PKL, path)
    new = ROIList([ROI(polygons=SQUARE, label="n")], timestamp="2099-01-01-00h00m00s")
    new.save(path, label="new")
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89HDF\r\n\x1a\n"
    assert [r.id for r in ROIList.load(path, label="manual")] == ["a", "b", "c"]
    assert ROIList.load(path, label="weighted_set")[0].id == "w"
    assert ROIList.load(path)[0].label == "n"


def test_load_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ROIList.load(tmp_path / "missing.pkl")
    with pytest.raises(ValueError, match="ImageJ"):
        ROIList.load(LEGACY_PKL, fmt="xml")
    with pytest.raises(ValueError, match="ImageJ"):
        ROIList([]).save(tmp_path / "x", fmt="xml")
    with pytest.raises(ValueError):
        ROIList([]).save(tmp_path / "x.h5", label="a/b")


# --------------------------------------------------------------------------
# SIMA 1.x pickles
# --------------------------------------------------------------------------


def test_legacy_manual_set():
    rois = ROIList.load(LEGACY_PKL, label="manual")
    assert isinstance(rois, ROIList)
    assert [r.id for r in rois] == ["a", "b", "c"]
    a, b, c = rois
    assert not a.is_mask_roi and a.tags == {"cell", "good"}
    np.testing.assert_array_equal(a.rings[0][:, 2], 0)
    assert b.is_mask_roi and b.mask[0].dtype == bool and b.tags == {"cell"}
    assert not c.is_mask_roi
    np.testing.assert_array_equal(c.rings[0][:, 2], 1)
    assert isinstance(rois.timestamp, str)


def test_legacy_weighted_set_and_default_label():
    (w,) = ROIList.load(LEGACY_PKL, label="weighted_set")
    assert w.id == "w" and w.is_weighted
    got = dense(w)
    assert got.dtype.kind == "f"
    assert got.shape == (2, 20, 24)
    assert set(np.unique(got)) == {0.0, 0.5}
    assert (got == 0.5).sum() == 16
    # both sets share a timestamp: the later one wins
    assert ROIList.load(LEGACY_PKL)[0].id == "w"
    with pytest.raises(KeyError, match=r"'missing'.*manual.*weighted_set"):
        ROIList.load(LEGACY_PKL, label="missing")


def test_reassign_label():
    rois = ROIList.load(LEGACY_PKL, label="manual", reassign_label=True)
    assert [r.label for r in rois] == ["0", "1", "2"]
    assert [r.id for r in rois] == ["a", "b", "c"]


# --------------------------------------------------------------------------
# ImageJ
# --------------------------------------------------------------------------


def _write_zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, iroi in members:
            zf.writestr(name, iroi if isinstance(iroi, bytes) else iroi.tobytes())


def _load_one(tmp_path, iroi, name="shape.roi"):
    path = tmp_path / "one.zip"
    _write_zip(path, [(name, iroi)])
    (roi,) = ROIList.load(path, fmt="ImageJ")
    return roi


def _area_roi(roitype, left, top, right, bottom):
    iroi = ImagejRoi()
    iroi.roitype = roitype
    iroi.left, iroi.top, iroi.right, iroi.bottom = left, top, right, bottom
    return iroi


@pytest.mark.parametrize(
    "roitype",
    [
        ROI_TYPE.POLYGON,
        ROI_TYPE.FREEHAND,
        ROI_TYPE.TRACED,
        ROI_TYPE.POLYLINE,
        ROI_TYPE.FREELINE,
        ROI_TYPE.ANGLE,
    ],
)
def test_imagej_vertex_types(tmp_path, roitype):
    pts = np.array([[2, 1], [9, 3], [7, 8], [3, 6]])
    iroi = ImagejRoi.frompoints(pts)
    iroi.roitype = roitype
    roi = _load_one(tmp_path, iroi)
    (poly,) = roi.rings
    np.testing.assert_array_equal(poly[:, :2], pts)
    np.testing.assert_array_equal(poly[:, 2], 0)
    roi.im_shape = (1, 10, 12)
    np.testing.assert_array_equal(dense(roi), reference_mask([poly], (1, 10, 12)))


def test_imagej_subpixel_polygon_and_position(tmp_path):
    pts = np.array([[1.25, 0.5], [8.75, 2.5], [6.5, 7.25]])
    iroi = ImagejRoi.frompoints(pts, position=2)
    assert iroi.subpixel_coordinates is not None and iroi.position == 3
    roi = _load_one(tmp_path, iroi)
    (poly,) = roi.rings
    np.testing.assert_array_equal(poly[:, :2], pts)
    np.testing.assert_array_equal(poly[:, 2], 2)


def test_imagej_hyperstack_z_position(tmp_path):
    iroi = ImagejRoi.frompoints(np.array([[1, 1], [4, 1], [4, 4]]), c=0, z=3, t=5)
    assert iroi.z_position == 4
    assert _load_one(tmp_path, iroi).rings[0][0, 2] == 3
    unset = ImagejRoi.frompoints(np.array([[1, 1], [4, 1], [4, 4]]))
    assert _load_one(tmp_path, unset).rings[0][0, 2] == 0


def test_imagej_line(tmp_path):
    iroi = _area_roi(ROI_TYPE.LINE, 1, 2, 6, 5)
    iroi.x1, iroi.y1, iroi.x2, iroi.y2 = 1.5, 2.0, 5.5, 4.5
    roi = _load_one(tmp_path, iroi)
    np.testing.assert_array_equal(roi.rings[0][:, :2], [[1.5, 2.0], [5.5, 4.5]])
    roi.im_shape = (8, 8)
    assert roi.size == 0


def test_imagej_rect(tmp_path):
    roi = _load_one(tmp_path, _area_roi(ROI_TYPE.RECT, 2, 1, 6, 4))
    np.testing.assert_array_equal(roi.rings[0][:, :2], [[2, 1], [6, 1], [6, 4], [2, 4]])
    roi.im_shape = (1, 6, 8)
    expected = np.zeros((1, 6, 8), bool)
    expected[0, 1:4, 2:6] = True
    np.testing.assert_array_equal(dense(roi), expected)


def test_imagej_subpixel_rect(tmp_path):
    iroi = _area_roi(ROI_TYPE.RECT, 1, 1, 5, 4)
    iroi.options = ROI_OPTIONS.SUB_PIXEL_RESOLUTION
    iroi.xd, iroi.yd, iroi.widthd, iroi.heightd = 1.25, 0.75, 3.5, 2.5
    roi = _load_one(tmp_path, iroi)
    np.testing.assert_array_equal(
        roi.rings[0][:, :2], [[1.25, 0.75], [4.75, 0.75], [4.75, 3.25], [1.25, 3.25]]
    )


def test_imagej_rounded_rect(tmp_path):
    iroi = _area_roi(ROI_TYPE.RECT, 1, 2, 11, 10)
    iroi.rounded_rect_arc_size = 6
    roi = _load_one(tmp_path, iroi)
    roi.im_shape = (1, 12, 13)
    expected = np.zeros((12, 13), bool)
    rx = ry = 3.0
    for y in range(12):
        for x in range(13):
            cx, cy = x + 0.5, y + 0.5
            if not (1 < cx < 11 and 2 < cy < 10):
                continue
            dx = max(1 + rx - cx, cx - (11 - rx), 0)
            dy = max(2 + ry - cy, cy - (10 - ry), 0)
            expected[y, x] = (dx / rx) ** 2 + (dy / ry) ** 2 <= 1
    np.testing.assert_array_equal(dense(roi)[0], expected)
    assert not expected[2, 1] and expected[2, 4] and expected[5, 1]


def test_imagej_oval_small_known_masks(tmp_path):
    # ImageJ's 4x4 oval leaves out the four corner pixels; its 3x3 oval is full.
    roi = _load_one(tmp_path, _area_roi(ROI_TYPE.OVAL, 0, 0, 4, 4))
    assert roi.is_mask_roi
    got = dense(roi)[0]
    expected = np.ones((4, 4), bool)
    expected[[0, 0, 3, 3], [0, 3, 0, 3]] = False
    np.testing.assert_array_equal(got, expected)
    three = _load_one(tmp_path, _area_roi(ROI_TYPE.OVAL, 0, 0, 3, 3))
    assert dense(three).sum() == 9


@pytest.mark.parametrize("box", [(3, 2, 14, 9), (0, 0, 7, 12), (5, 1, 6, 2), (2, 3, 12, 13)])
def test_imagej_oval_matches_ellipse_rule(tmp_path, box):
    left, top, right, bottom = box
    iroi = _area_roi(ROI_TYPE.OVAL, left, top, right, bottom)
    iroi.position = 2
    roi = _load_one(tmp_path, iroi)
    roi.im_shape = (2, 15, 16)
    got = dense(roi)
    assert got[0].sum() == 0
    expected = reference_ellipse_mask(left, top, right - left, bottom - top, (15, 16))
    np.testing.assert_array_equal(got[1], expected)


def test_imagej_subpixel_oval(tmp_path):
    iroi = _area_roi(ROI_TYPE.OVAL, 1, 1, 9, 7)
    iroi.options = ROI_OPTIONS.SUB_PIXEL_RESOLUTION
    iroi.xd, iroi.yd, iroi.widthd, iroi.heightd = 1.25, 0.5, 7.5, 6.25
    roi = _load_one(tmp_path, iroi)
    roi.im_shape = (10, 10)
    expected = reference_ellipse_mask(1.25, 0.5, 7.5, 6.25, (10, 10))
    np.testing.assert_array_equal(dense(roi)[0], expected)


def test_imagej_ellipse_and_rotated_rect(tmp_path):
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    pts = np.column_stack([8 + 5 * np.cos(t), 6 + 3 * np.sin(t)]).astype(np.float32)
    ell = ImagejRoi.frompoints(pts)
    ell.subtype = ROI_SUBTYPE.ELLIPSE
    ell.x1, ell.y1, ell.x2, ell.y2 = 3.0, 6.0, 13.0, 6.0
    roi = _load_one(tmp_path, ell)
    np.testing.assert_allclose(roi.rings[0][:, :2], pts, rtol=0, atol=0)

    corners = np.array([[4.0, 1.0], [9.0, 4.0], [7.0, 7.5], [2.0, 4.5]], np.float32)
    rot = ImagejRoi.frompoints(corners)
    rot.subtype = ROI_SUBTYPE.ROTATED_RECT
    rot.x1, rot.y1, rot.x2, rot.y2 = 3.0, 2.75, 8.0, 5.75
    roi = _load_one(tmp_path, rot)
    np.testing.assert_array_equal(roi.rings[0][:, :2], corners)


def test_imagej_composite(tmp_path):
    a = [[1, 1], [4, 1], [4, 3], [1, 3]]
    b = [[6, 2], [9, 2], [9, 7]]
    path = []
    for poly in (a, b):
        path += [0, *poly[0]]
        for v in poly[1:]:
            path += [1, *v]
        path += [4]
    iroi = _area_roi(ROI_TYPE.RECT, 1, 1, 9, 7)
    iroi.multi_coordinates = np.array(path, np.float32)
    iroi.shape_roi_size = len(path)
    iroi.z_position = 2
    roi = _load_one(tmp_path, iroi)
    polys = roi.rings
    assert len(polys) == 2
    np.testing.assert_array_equal(polys[0][:, :2], a)
    np.testing.assert_array_equal(polys[1][:, :2], b)
    np.testing.assert_array_equal(np.concatenate(polys)[:, 2], 1)


def test_imagej_points(tmp_path):
    pts = np.array([[2, 3], [5, 1], [0, 0]])
    iroi = ImagejRoi.frompoints(pts)
    iroi.roitype = ROI_TYPE.POINT
    roi = _load_one(tmp_path, iroi)
    roi.im_shape = (6, 7)
    expected = np.zeros((6, 7), bool)
    expected[pts[:, 1], pts[:, 0]] = True
    np.testing.assert_array_equal(dense(roi)[0], expected)
    # sub-pixel points and per-point stack positions
    sub = ImagejRoi.frompoints(np.array([[2.75, 3.25], [5.5, 1.5]]))
    sub.roitype = ROI_TYPE.POINT
    sub.counters = np.zeros(2, np.uint8)
    sub.counter_positions = np.array([1, 2], np.uint32)
    roi = _load_one(tmp_path, sub)
    roi.im_shape = (2, 6, 7)
    got = dense(roi)
    assert got.sum() == 2 and got[0, 3, 2] and got[1, 1, 5]


def test_imagej_labels_single_file_and_roifile_names(tmp_path):
    pts = np.array([[1, 1], [5, 1], [5, 5], [1, 5]])
    zpath = tmp_path / "set.zip"
    _write_zip(
        zpath,
        [("0001-0023.roi", ImagejRoi.frompoints(pts)), ("cellB.roi", ImagejRoi.frompoints(pts))],
    )
    assert [r.label for r in ROIList.load(zpath, fmt="imagej")] == ["0001-0023", "cellB"]
    assert [r.label for r in ROIList.load(zpath, fmt="ImageJ", reassign_label=True)] == ["0", "1"]
    single = tmp_path / "lonely.roi"
    ImagejRoi.frompoints(pts).tofile(single)
    (roi,) = ROIList.load(single, fmt="ImageJ")
    assert roi.label == "lonely"
    np.testing.assert_array_equal(roi.rings[0][:, :2], pts)


def test_imagej_corrupt_and_unsupported_members(tmp_path):
    good = ImagejRoi.frompoints(np.array([[1, 1], [5, 1], [5, 5]]))
    path = tmp_path / "bad.zip"
    _write_zip(
        path, [("fine.roi", good), ("broken-7.roi", b"this is not an ImageJ ROI file!" * 3)]
    )
    with pytest.raises(ValueError, match=r"broken-7\.roi"):
        ROIList.load(path, fmt="ImageJ")
    text = _area_roi(ROI_TYPE.RECT, 0, 0, 4, 4)
    text.subtype = ROI_SUBTYPE.TEXT
    text.text = "hello"
    _write_zip(path, [("words.roi", text)])
    with pytest.raises(ValueError, match=r"words\.roi"):
        ROIList.load(path, fmt="ImageJ")
    notzip = tmp_path / "garbage.zip"
    notzip.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"garbage\.zip"):
        ROIList.load(notzip, fmt="ImageJ")


def test_imagej_write_read_round_trip(tmp_path):
    blob = np.zeros((12, 12), bool)
    blob[2:6, 3:8] = True
    blob[4:9, 6:8] = True
    rois = ROIList(
        [
            ROI(polygons=np.array([[1, 1], [6, 1], [6, 5], [1, 4]]), label="int"),
            ROI(polygons=np.array([[1.25, 2.5, 1], [7.5, 2.0, 1], [4.75, 8.25, 1]]), label="sub"),
            ROI(polygons=[SQUARE * 2, SQUARE * 2 + 5], label="two"),
            ROI(polygons=SQUARE + 3, label="int"),
            ROI(polygons=SQUARE + 7),
            ROI(polygons=SQUARE + 8),
            ROI(mask=blob, label="blob"),
        ]
    )
    path = tmp_path / "out.zip"
    rois.save(path, fmt="ImageJ")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert names == [
        "int.roi",
        "sub.roi",
        "two.roi",
        "two-1.roi",
        "int-1.roi",
        "roi-1.roi",
        "roi-2.roi",
        "blob.roi",
    ]
    back = ROIList.load(path, fmt="ImageJ")
    expected_polys = [p for r in rois for p in r.rings]
    assert [r.label for r in back] == [n[:-4] for n in names]
    same_rings([r.rings[0] for r in back], expected_polys)
    # roifile reads the same vertices, with ImageJ's 1-based position = z + 1
    for iroi, poly in zip(roifile.roiread(path), expected_polys, strict=True):
        np.testing.assert_array_equal(iroi.coordinates(), poly[:, :2])
        assert iroi.position == int(poly[0, 2]) + 1
    # the mask ROI survives as the same pixels
    (blob_back,) = [r for r in back if r.label == "blob"]
    blob_back.im_shape = (12, 12)
    np.testing.assert_array_equal(dense(blob_back)[0], blob)


def test_imagej_single_plane_has_no_position_and_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "set.zip"
    ROIList([ROI(polygons=SQUARE * 3, label="a")]).save(path, fmt="ImageJ")
    (iroi,) = roifile.roiread(path)
    assert iroi.position == 0
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(imagej_module, "polygon_to_imagej", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        ROIList([ROI(polygons=SQUARE, label="b")]).save(path, fmt="ImageJ")
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["set.zip"]


def test_imagej_write_rejects_weighted_and_warns_on_empty(tmp_path):
    w = np.zeros((4, 4))
    w[1, 1] = 0.5
    with pytest.raises(ValueError, match="weighted"):
        ROIList([ROI(mask=w)]).save(tmp_path / "w.zip", fmt="ImageJ")
    assert not (tmp_path / "w.zip").exists()
    with pytest.warns(UserWarning, match="empty"):
        ROIList([ROI(mask=np.zeros((3, 3), bool), label="e")]).save(
            tmp_path / "e.zip", fmt="ImageJ"
        )

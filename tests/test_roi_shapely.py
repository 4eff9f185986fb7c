"""ROI geometry as shapely objects (what SIMA's ROI.polygons and mask2poly give).

``ROI.polygons`` and ``mask2poly`` return a shapely ``MultiPolygon`` whose
vertices carry the plane index as third coordinate; ``ROI(polygons=...)`` and
``poly2mask`` take shapely geometry back. ``ROI.rings``/``mask2rings`` are the
vertex-array forms of the same outlines.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.ndimage
import shapely
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from shapely.geometry import MultiPolygon, Polygon

from sima_fast._geometry import polygon_to_mask
from sima_fast.ROI import (
    ROI,
    NonBooleanMask,
    ROIList,
    mask2poly,
    mask2rings,
    poly2mask,
    rings_to_multipolygon,
)


def _rect_mask(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[..., y0:y1, x0:x1] = True
    return m


def test_polygons_are_a_multipolygon_with_plane_as_z():
    stack = np.zeros((3, 7, 9), bool)
    stack[0, 1:3, 1:4] = True  # 2 x 3 pixels on plane 0
    stack[2, 4:7, 5:9] = True  # 3 x 4 pixels on plane 2, touching two edges
    roi = ROI(mask=stack)
    mp = roi.polygons
    assert isinstance(mp, MultiPolygon) and mp.has_z
    parts = list(mp.geoms)
    assert [int(p.exterior.coords[0][2]) for p in parts] == [0, 2]
    # the 0.5-level contour cuts each corner by a triangle of area 1/8
    assert [p.area for p in parts] == [6 - 0.5, 12 - 0.5]
    assert mp.area == pytest.approx(17.0)
    for part in parts:
        assert part.is_valid and part.exterior.is_ring
        assert {c[2] for c in part.exterior.coords} == {part.exterior.coords[0][2]}


def test_polygon_roi_gives_its_vertices_back():
    square = [[1, 1, 0], [4, 1, 0], [4, 3, 0], [1, 3, 0]]
    roi = ROI(polygons=square, im_shape=(5, 6))
    (part,) = roi.polygons.geoms
    assert np.array_equal(np.asarray(part.exterior.coords), np.vstack([square, square[:1]]))
    assert part.area == 6.0
    np.testing.assert_array_equal(roi.rings[0], square)
    np.testing.assert_array_equal(roi.coords[0], np.vstack([square, square[:1]]))


def test_unions_and_other_shapely_operations_work():
    a = ROI(mask=_rect_mask((1, 10, 10), 1, 5, 1, 5))
    b = ROI(mask=_rect_mask((1, 10, 10), 3, 8, 3, 8))
    union = shapely.unary_union([a.polygons, b.polygons])
    both = a.polygons.intersection(b.polygons)
    assert union.area == pytest.approx(a.polygons.area + b.polygons.area - both.area)
    # a union handed back to ROI rasterises to the union of the masks
    merged = ROI(polygons=union, im_shape=(10, 10))
    np.testing.assert_array_equal(np.asarray(merged), np.asarray(a) | np.asarray(b))


@pytest.mark.parametrize("kind", ["Polygon", "MultiPolygon", "list", "2d-list", "mixed"])
def test_roi_accepts_shapely_polygons(kind):
    tri = [(0.0, 0.0, 1.0), (6.0, 0.0, 1.0), (0.0, 5.0, 1.0)]
    box = [(3.0, 3.0, 0.0), (6.0, 3.0, 0.0), (6.0, 5.0, 0.0), (3.0, 5.0, 0.0)]
    given = {
        "Polygon": Polygon(tri),
        "MultiPolygon": MultiPolygon([Polygon(tri), Polygon(box)]),
        "list": [Polygon(tri), Polygon(box)],
        "2d-list": [Polygon([c[:2] for c in box])],
        "mixed": [Polygon(tri), np.array(box)],
    }[kind]
    want_rings = {
        "Polygon": [tri],
        "MultiPolygon": [tri, box],
        "list": [tri, box],
        "2d-list": [box],
        "mixed": [tri, box],
    }[kind]
    roi = ROI(polygons=given, im_shape=(2, 6, 7))
    assert len(roi.rings) == len(want_rings)
    for got, want in zip(roi.rings, want_rings, strict=True):
        np.testing.assert_array_equal(got, want)
    from_arrays = ROI(polygons=[np.array(r) for r in want_rings], im_shape=(2, 6, 7))
    np.testing.assert_array_equal(np.asarray(roi), np.asarray(from_arrays))


def test_shapely_holes_are_filled_with_a_warning():
    holed = Polygon([(0, 0), (6, 0), (6, 6), (0, 6)], holes=[[(2, 2), (4, 2), (4, 4), (2, 4)]])
    with pytest.warns(UserWarning, match="holes are filled"):
        roi = ROI(polygons=holed, im_shape=(6, 6))
    assert roi.size == 36


def test_non_polygon_shapely_geometry_is_refused():
    with pytest.raises(TypeError, match="LineString"):
        ROI(polygons=shapely.LineString([(0, 0), (3, 3)]))


def test_mask2poly_types_threshold_and_planes():
    w = np.zeros((2, 6, 6))
    w[1, 1:4, 2:5] = 3.0
    w[1, 2, 3] = 1.0  # below a threshold of 2: a hole
    mp = mask2poly(w, threshold=2.0)
    assert isinstance(mp, MultiPolygon)
    assert {int(c[2]) for p in mp.geoms for c in p.exterior.coords} == {1}
    outlines = sorted(mp.geoms, key=lambda p: p.area)
    assert len(outlines) == 2  # the outer outline and the hole's outline
    assert outlines[0].area == pytest.approx(0.5)  # a single pixel's diamond
    # the default threshold outlines a boolean (or 0/1) mask
    assert mask2poly(w[1] > 0).equals(mask2poly((w[1] > 0).astype(float)))
    assert mask2poly(np.zeros((4, 4), bool)).is_empty
    # the array form holds the same vertices
    for ring, part in zip(mask2rings(w, 2.0), mp.geoms, strict=True):
        np.testing.assert_array_equal(np.vstack([ring, ring[:1]]), part.exterior.coords)


def test_mask2poly_drops_collinear_vertices():
    (part,) = mask2poly(_rect_mask((10, 10), 2, 4, 3, 7)).geoms
    assert len(part.exterior.coords) == 9  # 8 corners (each cut) + closing vertex
    xs, ys = part.exterior.xy
    assert (min(xs), max(xs), min(ys), max(ys)) == (3.0, 7.0, 2.0, 4.0)


def test_weighted_mask_has_no_polygons():
    w = np.zeros((4, 4))
    w[1:3, 1:3] = [[0.5, 1.0], [1.0, 2.0]]
    roi = ROI(mask=w)
    for attr in ("polygons", "rings", "coords"):
        with pytest.raises(NonBooleanMask, match="weighted"):
            getattr(roi, attr)
    assert issubclass(NonBooleanMask, ValueError)
    # a 0/1 float mask is boolean in value
    assert ROI(mask=(w > 0).astype(float)).polygons.area == pytest.approx(3.5)


def test_poly2mask_shapely_input_and_size_keywords():
    square = Polygon([(0, 0, 0), (2, 0, 0), (2, 2, 0), (0, 2, 0)])
    by_size = poly2mask(square, im_size=(3, 3))
    by_shape = poly2mask([square], im_shape=(1, 3, 3))
    positional = poly2mask(MultiPolygon([square]), (3, 3))
    want = _rect_mask((3, 3), 0, 2, 0, 2)
    for planes in (by_size, by_shape, positional):
        np.testing.assert_array_equal(planes[0].toarray(), want)
    with pytest.raises(TypeError, match="exactly one"):
        poly2mask(square)
    with pytest.raises(TypeError, match="exactly one"):
        poly2mask(square, (3, 3), im_shape=(3, 3))
    with pytest.raises(ValueError, match="plane z=2"):
        poly2mask(Polygon([(0, 0, 2), (1, 0, 2), (1, 1, 2)]), (2, 3, 3))


def test_degenerate_rings_become_zero_area_polygons():
    line = ROI(polygons=[[1.0, 1.0], [4.0, 3.0]], im_shape=(5, 5))
    (part,) = line.polygons.geoms
    assert part.area == 0.0 and line.size == 0
    assert rings_to_multipolygon([]).is_empty


def test_transform_of_mask_rois_and_round_trip_through_polygons():
    mask = _rect_mask((1, 8, 8), 2, 5, 1, 4)
    roi = ROI(mask=mask, label="m")
    shift = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, 2.0]])
    (moved,) = ROIList([roi]).transform([shift], im_shape=(1, 8, 8))
    assert moved.label == "m"
    np.testing.assert_array_equal(np.asarray(moved)[0], np.roll(mask[0], (2, 3), axis=(0, 1)))
    again = ROI(polygons=roi.polygons, im_shape=(1, 8, 8))
    np.testing.assert_array_equal(np.asarray(again), mask)


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------


def _reference_inside(vertices, shape):
    """Even-odd crossing test at pixel centres, with on-edge centres outside (slow, exact)."""
    from fractions import Fraction

    v = [(Fraction(x), Fraction(y)) for x, y in np.asarray(vertices, dtype=float)[:, :2]]
    out = np.zeros(shape, bool)
    for r in range(shape[0]):
        for c in range(shape[1]):
            px, py = Fraction(2 * c + 1, 2), Fraction(2 * r + 1, 2)
            inside, on_edge = False, False
            for (ax, ay), (bx, by) in zip(v, v[1:] + v[:1]):
                cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
                if (
                    cross == 0
                    and min(ax, bx) <= px <= max(ax, bx)
                    and min(ay, by) <= py <= max(ay, by)
                ):
                    on_edge = True
                if (ay > py) != (by > py) and px < ax + (py - ay) * (bx - ax) / (by - ay):
                    inside = not inside
            out[r, c] = inside and not on_edge
    return out


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.int64, st.tuples(st.integers(3, 7), st.just(2)), elements=st.integers(-2, 16)),
)
# found by CI: a ring walking back over its own edge; GEOS took it for a rectangle
@example(np.array([[0, 2], [2, 2], [2, 0], [2, 2]]))
@example(np.array([[0, 0], [4, 0], [4, 4], [0, 4]]))  # a true rectangle
@example(np.array([[0, 0], [4, 0], [0, 0], [0, 4]]))
@example(np.array([[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]))  # closed, 5 given vertices
def test_polygon_to_mask_matches_exact_even_odd_rule(half_units):
    vertices = half_units / 2.0  # half-integer vertices put many centres exactly on edges
    np.testing.assert_array_equal(
        polygon_to_mask(vertices, (7, 7)), _reference_inside(vertices, (7, 7))
    )


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 8), st.integers(1, 8))))
def test_mask_to_polygons_and_back_fills_only_holes(mask):
    # foreground is 4-connected, background 8-connected: a hole is a background
    # component (8-connected) that does not reach the border
    filled = scipy.ndimage.binary_fill_holes(mask, structure=np.ones((3, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mp = mask2poly(mask)
    assert all(p.has_z for p in mp.geoms)
    back = poly2mask(mp, mask.shape)[0].toarray() if not mp.is_empty else np.zeros_like(mask)
    np.testing.assert_array_equal(back, filled)
    assert shapely.equals_exact(ROI(mask=mask).polygons, mp, tolerance=0)


def test_roilist_turns_dicts_into_rois():
    source = ROI(polygons=Polygon([(0, 0, 0), (3, 0, 0), (3, 2, 0)]), label="a", tags={"t"})
    rois = ROIList([source.todict(), ROI(mask=np.eye(3, dtype=bool))])
    assert all(isinstance(r, ROI) for r in rois)
    assert rois[0].label == "a" and rois[0].tags == {"t"}
    assert shapely.equals_exact(rois[0].polygons, source.polygons, tolerance=0)
    with pytest.raises(TypeError, match="ROI objects"):
        ROIList([[0, 0]])

"""Tests for sima_fast.segment: the strategy framework and the post-processing steps.

Every post-processing step is compared with a plain reference written below
(explicit loops, flood fill, pairwise merging), on fixed and random inputs.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import scipy.ndimage
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.filters import threshold_otsu
from skimage.measure import approximate_polygon

import sima_fast as sima
import sima_fast.segment as segment
from sima_fast.imaging import ImagingDataset
from sima_fast.ROI import ROI, ROIList, mask2rings
from sima_fast.segment import (
    CircularityFilter,
    MergeOverlapping,
    PlaneWiseSegmentation,
    PostProcessingStep,
    ROIFilter,
    SegmentationStrategy,
    SmoothROIBoundaries,
    SparseROIsFromMasks,
    polygon_circularity,
)

# --------------------------------------------------------------------------
# Synthetic data and a tiny concrete strategy
# --------------------------------------------------------------------------


def make_dataset(movie: np.ndarray) -> ImagingDataset:
    return ImagingDataset([sima.Sequence.create("ndarray", movie)], None)


def blob_movie(n_planes: int = 3, shape: tuple[int, int] = (24, 24), frames: int = 4):
    """A movie whose time average has one or two bright squares per plane, at known places.

    Plane ``z`` has a square of side 4 at rows/cols ``3 + 2z``; odd planes also
    have a second square in the lower right corner.
    """
    movie = np.zeros((frames, n_planes, *shape, 1))
    truth: dict[int, list[np.ndarray]] = {}
    for z in range(n_planes):
        masks = []
        m = np.zeros(shape, bool)
        m[3 + 2 * z : 7 + 2 * z, 3 + 2 * z : 7 + 2 * z] = True
        masks.append(m)
        if z % 2:
            m2 = np.zeros(shape, bool)
            m2[shape[0] - 6 : shape[0] - 2, shape[1] - 7 : shape[1] - 3] = True
            masks.append(m2)
        for m in masks:
            movie[:, z, m, 0] = 1.0 + z
        truth[z] = masks
    return movie, truth


class ThresholdStrategy(SegmentationStrategy):
    """Each 4-connected component of ``time_average > level`` on a plane is one ROI."""

    def __init__(self, level: float = 0.5, polygons: bool = False) -> None:
        super().__init__()
        self.level = level
        self.polygons = polygons
        self.seen_shapes: list[tuple[int, ...]] = []
        self.seen_means: list[float] = []

    def _segment(self, dataset):
        self.seen_shapes.append(dataset.frame_shape)
        mean = dataset.time_averages[..., 0]
        self.seen_means.append(float(mean.max()))
        rois = []
        for z in range(mean.shape[0]):
            labels, n = scipy.ndimage.label(mean[z] > self.level)
            for k in range(1, n + 1):
                tags = {f"plane{z}"}
                if self.polygons:
                    rings = [r + np.array([0, 0, z]) for r in mask2rings(labels == k)]
                    rois.append(ROI(polygons=rings, label=f"c{k}", tags=tags, id=f"{z}-{k}"))
                else:
                    m = np.zeros(mean.shape, bool)
                    m[z] = labels == k
                    rois.append(ROI(mask=m, label=f"c{k}", tags=tags, id=f"{z}-{k}"))
        return ROIList(rois)


class RecordingStep(PostProcessingStep):
    """Logs its name and what it received; optionally drops the first ROI."""

    def __init__(self, name: str, log: list, drop_first: bool = False) -> None:
        self.name = name
        self.log = log
        self.drop_first = drop_first

    def apply(self, rois, dataset=None):
        self.log.append((self.name, len(rois), dataset))
        return ROIList(list(rois)[1:] if self.drop_first else list(rois))


def dense(roi: ROI, im_shape=None) -> np.ndarray:
    if im_shape is not None and roi.im_shape != tuple(im_shape):
        roi = roi.copy()
        roi.im_shape = im_shape
    return np.asarray(roi) != 0


def planes_of(roi: ROI) -> list[int]:
    return np.flatnonzero(dense(roi).any(axis=(1, 2))).tolist()


# --------------------------------------------------------------------------
# Plain references
# --------------------------------------------------------------------------


def ref_components(binary: np.ndarray) -> list[list[tuple[int, int]]]:
    """4-connected components by breadth-first flood fill, in raster order of first pixel."""
    rows, cols = binary.shape
    seen = np.zeros_like(binary, dtype=bool)
    comps = []
    for r in range(rows):
        for c in range(cols):
            if not binary[r, c] or seen[r, c]:
                continue
            comp = []
            queue = deque([(r, c)])
            seen[r, c] = True
            while queue:
                y, x = queue.popleft()
                comp.append((y, x))
                for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < rows and 0 <= nx < cols and binary[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
            comps.append(comp)
    return comps


def ref_sparse_rois(values, min_size, static_threshold, smooth_size, sign_split):
    """Dense boolean (Z, Y, X) masks, following the documented recipe step by step."""
    values = np.array(values, dtype=np.float64)
    if smooth_size:
        values = np.stack([scipy.ndimage.gaussian_filter(p, sigma=smooth_size) for p in values])
    parts = [np.clip(values, 0, None), np.clip(-values, 0, None)] if sign_split else [abs(values)]
    out = []
    for part in parts:
        top = part.max()
        if top <= 0:
            continue
        if static_threshold is not None:
            keep = (part > 0) & (part >= static_threshold * top)
        elif part.min() == top:
            keep = part > 0
        else:
            keep = part > threshold_otsu(part)
        for z in range(part.shape[0]):
            for comp in ref_components(keep[z]):
                if len(comp) >= max(min_size, 1):
                    m = np.zeros(part.shape, bool)
                    for y, x in comp:
                        m[z, y, x] = True
                    out.append(m)
    return out


def ref_shoelace_circularity(ring) -> float:
    ring = [tuple(v[:2]) for v in ring]
    n = len(ring)
    twice_area = 0.0
    perimeter = 0.0
    for k in range(n):
        (x0, y0), (x1, y1) = ring[k], ring[(k + 1) % n]
        twice_area += x0 * y1 - x1 * y0
        perimeter += math.hypot(x1 - x0, y1 - y0)
    return 4 * math.pi * abs(twice_area) / 2 / perimeter**2


def ref_keep_circular(roi: ROI, threshold: float) -> bool:
    by_plane: dict[int, tuple[float, float]] = {}
    for ring in roi.rings:
        z = int(ring[0, 2])
        area = abs(
            sum(
                ring[k, 0] * ring[(k + 1) % len(ring), 1]
                - ring[(k + 1) % len(ring), 0] * ring[k, 1]
                for k in range(len(ring))
            )
            / 2
        )
        if z not in by_plane or area > by_plane[z][0]:
            by_plane[z] = (area, ref_shoelace_circularity(ring))
    return bool(by_plane) and all(c >= threshold for _, c in by_plane.values())


def ref_merge(masks: list[np.ndarray], threshold: float) -> list[list[int]]:
    """Groups of ROI indices to merge: explicit pairwise overlaps and union-find."""
    n = len(masks)
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for a in range(n):
        for b in range(a + 1, n):
            inter = int(np.logical_and(masks[a], masks[b]).sum())
            smaller = min(int(masks[a].sum()), int(masks[b].sum()))
            if smaller and inter / smaller > threshold:
                parent[find(b)] = find(a)
    groups: dict[int, list[int]] = {}
    for k in range(n):
        groups.setdefault(find(k), []).append(k)
    return sorted(groups.values(), key=lambda g: g[0])


def point_segment_distance(p, a, b) -> float:
    ab = b - a
    denom = float(ab @ ab)
    t = 0.0 if denom == 0 else min(max(float((p - a) @ ab) / denom, 0.0), 1.0)
    return float(np.hypot(*(a + t * ab - p)))


# --------------------------------------------------------------------------
# Framework
# --------------------------------------------------------------------------


def test_public_names():
    for name in segment.__all__:
        assert getattr(sima.segment, name) is getattr(segment, name)
    for name in ("STICA", "PlaneNormalizedCuts", "PlaneCA1PC", "CA1PCNucleus", "match_rois"):
        assert name in segment.__all__


def test_abstract_bases_cannot_be_instantiated():
    with pytest.raises(TypeError):
        SegmentationStrategy()
    with pytest.raises(TypeError):
        PostProcessingStep()


def test_segment_finds_rois_and_sets_im_shape():
    movie, truth = blob_movie()
    ds = make_dataset(movie)
    rois = ThresholdStrategy().segment(ds)
    assert isinstance(rois, ROIList)
    expected = [(z, m) for z in sorted(truth) for m in truth[z]]
    assert len(rois) == len(expected)
    for roi, (z, m) in zip(rois, expected):
        assert roi.im_shape == (3, 24, 24)
        want = np.zeros((3, 24, 24), bool)
        want[z] = m
        np.testing.assert_array_equal(dense(roi), want)


def test_strategy_result_without_im_shape_gets_dataset_shape():
    class NoShape(SegmentationStrategy):
        def _segment(self, dataset):
            return [ROI(polygons=[[1, 1], [3, 1], [3, 3], [1, 3]])]  # a plain list

    rois = NoShape().segment(make_dataset(np.zeros((2, 2, 5, 6, 1))))
    assert isinstance(rois, ROIList)
    assert rois[0].im_shape == (2, 5, 6)
    assert rois[0].size == 4


def test_steps_run_in_order_on_previous_output():
    movie, _ = blob_movie()
    ds = make_dataset(movie)
    log: list = []
    strategy = ThresholdStrategy()
    strategy.append(RecordingStep("first", log, drop_first=True))
    strategy.append(RecordingStep("second", log))
    strategy.append(RecordingStep("third", log, drop_first=True))
    rois = strategy.segment(ds)
    assert [(name, n) for name, n, _ in log] == [("first", 4), ("second", 3), ("third", 3)]
    assert all(d is ds for _, _, d in log)
    assert len(rois) == 2
    names = [type(s).__name__ for s in strategy.post_processing_steps]
    assert names == ["RecordingStep"] * 3
    strategy.post_processing_steps.clear()  # a copy: the strategy keeps its steps
    assert len(strategy.post_processing_steps) == 3


@pytest.mark.parametrize(
    "bad", [None, lambda rois, ds: rois, ROIFilter, ThresholdStrategy(), "MergeOverlapping"]
)
def test_append_rejects_non_steps(bad):
    strategy = ThresholdStrategy()
    with pytest.raises(TypeError, match="PostProcessingStep"):
        strategy.append(bad)
    assert strategy.post_processing_steps == []


@pytest.mark.parametrize("bad", [None, np.zeros((2, 1, 4, 4, 1)), "dataset.sima"])
def test_segment_rejects_non_datasets(bad):
    with pytest.raises(TypeError, match="ImagingDataset"):
        ThresholdStrategy().segment(bad)


def test_sequence_is_not_a_dataset():
    seq = sima.Sequence.create("ndarray", np.zeros((2, 1, 4, 4, 1)))
    with pytest.raises(TypeError, match="ImagingDataset"):
        ThresholdStrategy().segment(seq)


def test_strategy_and_step_must_return_rois():
    class Broken(SegmentationStrategy):
        def _segment(self, dataset):
            return None

    ds = make_dataset(np.zeros((2, 1, 4, 4, 1)))
    with pytest.raises(TypeError, match="_segment"):
        Broken().segment(ds)

    class BadStep(PostProcessingStep):
        def apply(self, rois, dataset=None):
            return [1, 2]

    strategy = ThresholdStrategy()
    strategy.append(BadStep())
    with pytest.raises(TypeError, match="BadStep"):
        strategy.segment(ds)


def test_subclass_without_super_init_still_keeps_steps():
    class Lazy(SegmentationStrategy):
        def __init__(self):  # no super().__init__()
            self.level = 0.5

        def _segment(self, dataset):
            return ROIList([ROI(mask=np.ones(dataset.frame_shape[:3], bool))])

    strategy = Lazy()
    strategy.append(ROIFilter(lambda roi: False))
    with pytest.warns(segment.SegmentationWarning, match="ROIFilter"):
        assert strategy.segment(make_dataset(np.zeros((2, 1, 3, 3, 1)))) == []


def test_planes_restriction_for_a_volume_strategy():
    movie, _ = blob_movie(n_planes=4)
    ds = make_dataset(movie)
    full = ThresholdStrategy().segment(ds)
    for planes in ([0, 2], [3, 1], [-1], 2, [1, 2, 3], np.array([0, 3])):
        strategy = ThresholdStrategy()
        rois = strategy.segment(ds, planes=planes)
        wanted = sorted(int(p) % 4 for p in np.atleast_1d(planes))
        assert strategy.seen_shapes == [(len(wanted), 24, 24, 1)]
        expected = [r for r in full if planes_of(r)[0] in wanted]
        assert len(rois) == len(expected)
        for got, want in zip(rois, expected):
            assert got.im_shape == (4, 24, 24)
            np.testing.assert_array_equal(dense(got), dense(want))
            assert got.label == want.label


def test_planes_restriction_moves_polygons():
    movie, _ = blob_movie(n_planes=3)
    ds = make_dataset(movie)
    rois = ThresholdStrategy(polygons=True).segment(ds, planes=[1, 2])
    assert not any(r.is_mask_roi for r in rois)
    full = ThresholdStrategy(polygons=True).segment(ds)
    assert [planes_of(r) for r in rois] == [planes_of(r) for r in full if planes_of(r)[0] > 0]
    for roi in rois:
        assert {int(z) for ring in roi.rings for z in ring[:, 2]} == set(planes_of(roi))


@pytest.mark.parametrize("planes", [[], [0, 0], [1, -2], [3], [-4], ["0"], [0.0], 1.5, [True]])
def test_planes_validation(planes):
    ds = make_dataset(np.zeros((2, 3, 4, 4, 1)))
    with pytest.raises(ValueError, match="plane"):
        ThresholdStrategy().segment(ds, planes=planes)
    with pytest.raises(ValueError, match="plane"):
        PlaneWiseSegmentation(ThresholdStrategy()).segment(ds, planes=planes)


# --------------------------------------------------------------------------
# PlaneWiseSegmentation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("polygons", [False, True])
def test_planewise_puts_rois_on_their_planes(polygons):
    movie, truth = blob_movie(n_planes=3)
    ds = make_dataset(movie)
    inner = ThresholdStrategy(polygons=polygons)
    rois = PlaneWiseSegmentation(inner).segment(ds)
    assert inner.seen_shapes == [(1, 24, 24, 1)] * 3
    expected = [(z, m) for z in sorted(truth) for m in truth[z]]
    assert len(rois) == len(expected)
    for roi, (z, m) in zip(rois, expected):
        assert roi.im_shape == (3, 24, 24)
        assert roi.is_mask_roi is not polygons
        want = np.zeros((3, 24, 24), bool)
        want[z] = m
        np.testing.assert_array_equal(dense(roi), want)
        # the inner strategy saw a one-plane dataset: its ids say plane 0
        assert roi.id.startswith("0-") and roi.tags == {"plane0"}
        if polygons:
            assert all(np.all(ring[:, 2] == z) for ring in roi.rings)
        else:
            assert len(roi.mask) == 3
            assert [p.nnz > 0 for p in roi.mask] == [k == z for k in range(3)]


def test_planewise_steps_run_per_plane_and_once_overall():
    movie, _ = blob_movie(n_planes=3)
    ds = make_dataset(movie)
    inner_log: list = []
    outer_log: list = []
    inner = ThresholdStrategy()
    inner.append(RecordingStep("inner", inner_log, drop_first=True))
    outer = PlaneWiseSegmentation(inner)
    outer.append(RecordingStep("outer", outer_log))
    rois = outer.segment(ds)
    assert [n for _, n, _ in inner_log] == [1, 2, 1]
    assert all(d.frame_shape == (1, 24, 24, 1) for _, _, d in inner_log)
    assert [(n, d) for _, n, d in outer_log] == [(1, ds)]
    assert [planes_of(r) for r in rois] == [[1]]


def test_planewise_planes_restriction_reads_only_those_planes():
    movie, _ = blob_movie(n_planes=4)
    ds = make_dataset(movie)
    inner = ThresholdStrategy()
    rois = PlaneWiseSegmentation(inner).segment(ds, planes=[3, 0])
    assert inner.seen_means == [1.0, 4.0]  # plane z has brightness 1 + z
    assert sorted({p for r in rois for p in planes_of(r)}) == [0, 3]
    assert all(r.im_shape == (4, 24, 24) for r in rois)


def test_planewise_validates_plane_strategy():
    for bad in (None, ThresholdStrategy, MergeOverlapping(0.5), "STICA"):
        with pytest.raises(TypeError, match="plane_strategy"):
            PlaneWiseSegmentation(bad)


def test_planewise_rejects_rois_outside_the_plane():
    class Wrong(SegmentationStrategy):
        def _segment(self, dataset):
            return ROIList([ROI(polygons=[[0, 0, 1], [2, 0, 1], [2, 2, 1]])])

    with pytest.raises(ValueError, match="plane 1"):
        PlaneWiseSegmentation(Wrong()).segment(make_dataset(np.zeros((2, 2, 4, 4, 1))))


# --------------------------------------------------------------------------
# ROIFilter
# --------------------------------------------------------------------------


def test_roifilter_matches_reference():
    rng = np.random.default_rng(0)
    rois = ROIList([ROI(mask=rng.random((6, 6)) < p, label=str(p)) for p in np.linspace(0, 1, 9)])
    rois.timestamp = "stamp"
    kept = ROIFilter(lambda roi: roi.size > 10).apply(rois)
    assert [id(r) for r in kept] == [id(r) for r in rois if r.size > 10]
    assert kept.timestamp == "stamp"


def test_roifilter_rejects_non_callable():
    with pytest.raises(TypeError, match="func"):
        ROIFilter(3)


# --------------------------------------------------------------------------
# CircularityFilter
# --------------------------------------------------------------------------


def regular_polygon(n: int, radius: float, phase: float, centre=(20.0, 20.0), z: int = 0):
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.column_stack(
        [centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t), np.full(n, z)]
    )


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 40),
    radius=st.floats(0.5, 50),
    phase=st.floats(0, 2 * np.pi),
    closed=st.booleans(),
)
def test_polygon_circularity_of_regular_polygons(n, radius, phase, closed):
    ring = regular_polygon(n, radius, phase)
    if closed:
        ring = np.vstack([ring, ring[:1]])
    expected = np.pi / (n * np.tan(np.pi / n))  # 4π·area/perimeter² of a regular n-gon
    assert polygon_circularity(ring) == pytest.approx(expected, rel=1e-9)
    assert polygon_circularity(ring[:, :2]) == pytest.approx(ref_shoelace_circularity(ring))


def test_polygon_circularity_of_rectangles_and_degenerate_rings():
    assert polygon_circularity([[0, 0], [1, 0], [1, 1], [0, 1]]) == pytest.approx(np.pi / 4)
    w, h = 20.0, 1.0
    rect = [[0, 0], [w, 0], [w, h], [0, h]]
    assert polygon_circularity(rect) == pytest.approx(4 * np.pi * w * h / (2 * (w + h)) ** 2)
    assert polygon_circularity([[0, 0], [1, 1]]) == 0.0
    assert polygon_circularity([[1, 1], [1, 1], [1, 1]]) == 0.0


def test_circularity_filter_disc_kept_thin_rectangle_dropped():
    yy, xx = np.mgrid[:40, :40]
    disc = ROI(mask=(yy - 20) ** 2 + (xx - 20) ** 2 < 64)
    bar = ROI(mask=(yy == 5) & (xx >= 2) & (xx < 32))
    kept = CircularityFilter(0.85).apply(ROIList([disc, bar]))
    assert [r is disc for r in kept] == [True]
    assert polygon_circularity(disc.rings[0]) > 0.85
    assert polygon_circularity(bar.rings[0]) < 0.2


@settings(max_examples=25, deadline=None)
@given(
    shapes=st.lists(
        st.tuples(
            st.integers(0, 2),  # plane
            st.integers(3, 12),  # number of vertices
            st.floats(0.2, 1.0),  # aspect ratio
            st.floats(0, np.pi),  # rotation
        ),
        min_size=1,
        max_size=4,
    ),
    threshold=st.floats(0, 1),
)
def test_circularity_filter_matches_reference_on_polygons(shapes, threshold):
    rois = []
    for k, (z, n, aspect, phase) in enumerate(shapes):
        ring = regular_polygon(n, 6.0, phase, z=z)
        ring[:, 1] = 20 + (ring[:, 1] - 20) * aspect
        small = regular_polygon(4, 1.0, 0.0, centre=(5.0, 5.0), z=z)
        small[:, 0] = 5 + (small[:, 0] - 5) * 10  # a thin sliver, sometimes the larger ring
        other = regular_polygon(20, 5.0, 0.0, z=(z + 1) % 3)
        polys = [ring, small] if k % 2 else [ring, other]
        rois.append(ROI(polygons=polys, im_shape=(3, 40, 40)))
    kept = CircularityFilter(threshold).apply(ROIList(rois))
    assert [id(r) for r in kept] == [id(r) for r in rois if ref_keep_circular(r, threshold)]


def test_circularity_filter_every_plane_must_pass():
    yy, xx = np.mgrid[:30, :30]
    disc = (yy - 15) ** 2 + (xx - 15) ** 2 < 49
    bar = (yy == 4) & (xx < 25)
    both_round = ROI(mask=np.stack([disc, disc]))
    one_thin = ROI(mask=np.stack([disc, bar]))
    ring = ROI(mask=disc & ((yy - 15) ** 2 + (xx - 15) ** 2 >= 9))  # a hole is ignored
    weighted = ROI(mask=disc * np.linspace(0.5, 2, 30))
    empty = ROI(mask=np.zeros((30, 30)))
    kept = CircularityFilter(0.8).apply(ROIList([both_round, one_thin, ring, weighted, empty]))
    assert [id(r) for r in kept] == [id(both_round), id(ring), id(weighted)]


def test_circularity_filter_parameter_spellings():
    assert CircularityFilter().circularity_threhold == 0.5
    f = CircularityFilter(circularity_threshold=0.7)
    assert f.circularity_threhold == f.circularity_threshold == 0.7
    assert CircularityFilter(circularity_threhold=0.3).circularity_threshold == 0.3
    assert CircularityFilter(0.6, circularity_threshold=0.6).circularity_threshold == 0.6
    with pytest.raises(TypeError, match="once"):
        CircularityFilter(0.6, circularity_threshold=0.7)
    with pytest.raises(ValueError, match="circularity_threhold"):
        CircularityFilter(circularity_threshold=1.5)


# --------------------------------------------------------------------------
# SparseROIsFromMasks
# --------------------------------------------------------------------------


def random_signed_map(rng, shape=(2, 18, 18), n_blobs=4):
    z, y, x = np.indices(shape)
    out = np.zeros(shape)
    for _ in range(n_blobs):
        cz, cy, cx = rng.integers(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(0, shape[2])
        sign = rng.choice([-1.0, 1.0])
        out += (
            sign
            * rng.uniform(0.5, 2.0)
            * (z == cz)
            * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * rng.uniform(1, 3) ** 2))
        )
    return out + 0.05 * rng.standard_normal(shape)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    min_size=st.sampled_from([0, 1, 5, 20]),
    static_threshold=st.one_of(st.none(), st.floats(0.05, 0.95)),
    smooth_size=st.sampled_from([None, 0, 0.7, 2]),
    sign_split=st.booleans(),
    n_processes=st.sampled_from([1, 3]),
)
def test_sparse_rois_match_reference(
    seed, min_size, static_threshold, smooth_size, sign_split, n_processes
):
    rng = np.random.default_rng(seed)
    maps = [random_signed_map(rng) for _ in range(2)]
    rois = ROIList([ROI(mask=m, label=f"ic{k}", tags={"ica"}) for k, m in enumerate(maps)])
    step = SparseROIsFromMasks(min_size, static_threshold, smooth_size, sign_split, n_processes)
    got = step.apply(rois)
    expected = []
    for k, m in enumerate(maps):
        for mask in ref_sparse_rois(m, min_size, static_threshold, smooth_size, sign_split):
            expected.append((f"ic{k}", mask))
    assert len(got) == len(expected)
    for roi, (label, mask) in zip(got, expected):
        assert roi.label == label and roi.tags == {"ica"}
        assert roi.is_mask_roi and not roi.is_weighted
        assert all(p.dtype == bool for p in roi.mask)
        assert roi.im_shape == (2, 18, 18)
        np.testing.assert_array_equal(dense(roi), mask)


def test_sparse_rois_split_signed_map_into_lobes():
    weights = np.zeros((1, 30, 30))
    weights[0, 3:11, 3:11] = 1.0
    weights[0, 15:25, 16:26] = -0.4
    weights[0, 28, 28] = 0.9  # a lone pixel: too small
    src = ROI(mask=weights, label="ic", tags={"t"}, id="only")
    rois = SparseROIsFromMasks(min_size=10, smooth_size=0).apply(ROIList([src]))
    assert [r.size for r in rois] == [64, 100]
    assert all(r.id is None for r in rois)  # two ROIs from one: ids dropped
    magnitude = SparseROIsFromMasks(
        min_size=10, smooth_size=0, sign_split=False, static_threshold=0.3
    ).apply(ROIList([src]))
    assert [r.size for r in magnitude] == [64, 100]  # |m|: both lobes, in raster order
    otsu = SparseROIsFromMasks(min_size=10, smooth_size=0, sign_split=False)
    assert [r.size for r in otsu.apply(ROIList([src]))] == [64]  # Otsu splits 0.4 from 1
    single = SparseROIsFromMasks(
        min_size=10, smooth_size=0, static_threshold=0.5, sign_split=False
    ).apply(ROIList([src]))
    assert [(r.size, r.id, r.label) for r in single] == [(64, "only", "ic")]


def test_sparse_rois_with_dataset_polygons_and_empty_masks():
    ds = make_dataset(np.zeros((2, 2, 16, 16, 1)))
    poly = ROI(polygons=[[2, 2, 1], [12, 2, 1], [12, 12, 1], [2, 12, 1]])
    empty = ROI(mask=np.zeros((2, 16, 16)))
    rois = SparseROIsFromMasks(min_size=5, smooth_size=1).apply(ROIList([poly, empty]), ds)
    assert len(rois) == 1
    assert rois[0].im_shape == (2, 16, 16)
    assert planes_of(rois[0]) == [1]
    # a polygon is already sparse: its pixels are kept as they are, not smoothed again
    np.testing.assert_array_equal(dense(rois[0])[1], dense(poly, (2, 16, 16))[1] != 0)
    assert SparseROIsFromMasks().apply(ROIList([])) == []


def test_sparse_rois_ignore_non_finite_values():
    weights = np.zeros((10, 10))
    weights[2:6, 2:6] = 1.0
    weights[0, 0] = np.nan
    weights[9, 9] = np.inf
    weights[8, 0] = -np.inf
    rois = SparseROIsFromMasks(min_size=1, smooth_size=1).apply(ROIList([ROI(mask=weights)]))
    finite = np.where(np.isfinite(weights), weights, 0.0)
    expected = ref_sparse_rois(finite[None], 1, None, 1, True)
    assert len(rois) == len(expected) == 1
    np.testing.assert_array_equal(dense(rois[0]), expected[0])


def test_sparse_rois_constant_mask_keeps_everything():
    rois = SparseROIsFromMasks(min_size=1, smooth_size=0).apply(
        ROIList([ROI(mask=np.ones((4, 5)))])
    )
    assert [r.size for r in rois] == [20]


# --------------------------------------------------------------------------
# SmoothROIBoundaries
# --------------------------------------------------------------------------


def blob_masks(rng, n=3, shape=(2, 30, 30)):
    z, y, x = np.indices(shape)
    masks = []
    for _ in range(n):
        cz, cy, cx = rng.integers(0, shape[0]), rng.uniform(8, 22), rng.uniform(8, 22)
        ry, rx = rng.uniform(2, 7, size=2)
        m = (z == cz) & (((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1)
        m |= (z == cz) & (rng.random(shape) < 0.02)  # stray pixels: extra rings
        masks.append(m)
    return masks


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), tolerance=st.floats(0.0, 3.0), min_verts=st.integers(0, 12))
def test_smooth_boundaries_match_reference(seed, tolerance, min_verts):
    rng = np.random.default_rng(seed)
    rois = ROIList(
        [ROI(mask=m, label=f"r{k}", id=k, tags={"x"}) for k, m in enumerate(blob_masks(rng))]
    )
    got = SmoothROIBoundaries(tolerance=tolerance, min_verts=min_verts, n_processes=2).apply(rois)
    assert len(got) == len(rois)
    for src, roi in zip(rois, got):
        assert not roi.is_mask_roi
        assert (roi.label, roi.id, roi.tags) == (src.label, src.id, src.tags)
        assert src.im_shape is None and roi.im_shape == (2, 30, 30)  # the mask's shape
        outlines = src.rings
        assert len(roi.rings) == len(outlines)
        for ring, simple in zip(outlines, roi.rings):
            closed = np.vstack([ring[:, :2], ring[:1, :2]])
            ref = approximate_polygon(closed, tolerance) if tolerance > 0 else closed
            ref = ref[:-1]
            area = abs(
                np.dot(ref[:, 0], np.roll(ref[:, 1], -1))
                - np.dot(np.roll(ref[:, 0], -1), ref[:, 1])
            )
            if len(ref) < 3 or area == 0 or len(ring) < min_verts:
                ref = ring[:, :2]  # degenerate simplification, or too few vertices: kept
            np.testing.assert_array_equal(simple[:, :2], ref)
            assert np.all(simple[:, 2] == ring[0, 2])
            # every original vertex lies within tolerance of the simplified outline
            edges = list(zip(simple[:, :2], np.roll(simple[:, :2], -1, axis=0)))
            for p in ring[:, :2]:
                assert min(point_segment_distance(p, a, b) for a, b in edges) <= tolerance + 1e-9


def test_smooth_boundaries_zero_tolerance_keeps_mask():
    rng = np.random.default_rng(3)
    masks = [scipy.ndimage.binary_fill_holes(m) for m in blob_masks(rng)]
    rois = ROIList([ROI(mask=m) for m in masks])
    for src, roi in zip(rois, SmoothROIBoundaries(tolerance=0).apply(rois)):
        np.testing.assert_array_equal(dense(roi), dense(src))


def test_smooth_boundaries_edge_cases():
    ds = make_dataset(np.zeros((2, 1, 8, 8, 1)))
    pixel = ROI(mask=np.eye(8)[None, :, :] * (np.arange(8) == 3))  # one pixel
    weighted = np.zeros((8, 8))
    weighted[2:6, 2:6] = np.linspace(-1, 2, 16).reshape(4, 4)
    weighted[3, 3] = 0.5  # linspace has no zero here; every pixel of the square is non-zero
    poly = ROI(polygons=[[1, 1], [5, 1], [5, 2], [5, 5], [1, 5]])
    empty = ROI(mask=np.zeros((8, 8)))
    rois = ROIList([pixel, ROI(mask=weighted), poly, empty])
    assert len(SmoothROIBoundaries(tolerance=0.5).apply(rois, ds)[2].rings[0]) == 5  # < 8 kept
    out = SmoothROIBoundaries(tolerance=0.5, min_verts=0).apply(rois, ds)
    assert len(out) == 3  # the empty ROI is dropped
    assert out[0].size == 1  # a single pixel's outline cannot be simplified away
    assert out[1].size == 16
    assert len(out[2].rings[0]) == 4  # the collinear vertex of the polygon is dropped
    assert out[2].im_shape == (1, 8, 8)


# --------------------------------------------------------------------------
# MergeOverlapping
# --------------------------------------------------------------------------


def rectangle_masks(rng, n, shape=(2, 14, 14)):
    masks = []
    for _ in range(n):
        m = np.zeros(shape, bool)
        z = rng.integers(0, shape[0])
        y0, x0 = rng.integers(0, shape[1] - 1), rng.integers(0, shape[2] - 1)
        h, w = rng.integers(1, 6, size=2)
        m[z, y0 : y0 + h, x0 : x0 + w] = True
        masks.append(m)
    return masks


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 14),
    threshold=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]),
)
def test_merge_overlapping_matches_pairwise_reference(seed, n, threshold):
    rng = np.random.default_rng(seed)
    masks = rectangle_masks(rng, n)
    rois = ROIList([ROI(mask=m, tags={f"t{k}"}) for k, m in enumerate(masks)])
    got = MergeOverlapping(threshold).apply(rois, make_dataset(np.zeros((1, 2, 14, 14, 1))))
    groups = ref_merge(masks, threshold)
    assert len(got) == len(groups)
    for roi, group in zip(got, groups):
        if len(group) == 1:
            assert roi is rois[group[0]]
            continue
        union = np.logical_or.reduce([masks[k] for k in group])
        np.testing.assert_array_equal(dense(roi), union)
        assert roi.tags == {f"t{k}" for k in group}
        assert roi.im_shape == (2, 14, 14)
        assert all(p.dtype == bool for p in roi.mask)


def test_merge_overlapping_is_transitive_and_plane_aware():
    def box(z, y0, x0, h=4, w=4):
        m = np.zeros((2, 20, 20), bool)
        m[z, y0 : y0 + h, x0 : x0 + w] = True
        return m

    a, b, c = box(0, 0, 0), box(0, 0, 2), box(0, 0, 4)  # a-b and b-c overlap half, a-c none
    d = box(1, 0, 0)  # same place as a, other plane
    rois = ROIList(
        [
            ROI(mask=a, label="cell", id="x", tags={"a"}),
            ROI(mask=d, label="cell", id="d"),
            ROI(mask=b, label="cell", id="x", tags={"b"}),
            ROI(mask=c, label="cell", id="x"),
        ]
    )
    rois.timestamp = "when"
    out = MergeOverlapping(0.4).apply(rois)
    assert out.timestamp == "when"
    assert len(out) == 2
    np.testing.assert_array_equal(dense(out[0]), a | b | c)
    assert (out[0].label, out[0].id, out[0].tags) == ("cell", "x", {"a", "b"})
    assert out[1] is rois[1]
    assert len(MergeOverlapping(0.5).apply(rois)) == 4  # overlap exactly 0.5 is not > 0.5
    mixed = ROIList([ROI(mask=a, label="p", id=1), ROI(mask=b, label="q", id=1)])
    merged = MergeOverlapping(0.0).apply(mixed)[0]
    assert (merged.label, merged.id) == (None, 1)


def test_merge_overlapping_weighted_and_polygon_rois():
    weights = np.zeros((10, 10))
    weights[1:5, 1:5] = np.linspace(-1, 1, 16).reshape(4, 4)
    weights[2, 2] = 0.25
    poly = ROI(polygons=[[2, 2], [6, 2], [6, 6], [2, 6]], im_shape=(10, 10))
    out = MergeOverlapping(0.2).apply(ROIList([ROI(mask=weights), poly]))
    assert len(out) == 1
    np.testing.assert_array_equal(dense(out[0])[0], (weights != 0) | dense(poly)[0])
    with pytest.raises(ValueError, match="im_shape"):
        MergeOverlapping(0.2).apply(
            ROIList([ROI(mask=weights), ROI(polygons=[[0, 0], [1, 0], [1, 1]])])
        )


def test_merge_overlapping_many_rois():
    """3,000 ROIs: pairs of overlapping squares tiled over a 512×512 frame."""

    def square(y0, x0, side=6):
        rr, cc = np.mgrid[y0 : y0 + side, x0 : x0 + side]
        data = np.ones(rr.size, bool)
        return scipy.sparse.csr_matrix((data, (rr.ravel(), cc.ravel())), shape=(512, 512))

    rois = []
    for k in range(1500):
        y0, x0 = 10 * (k // 50), 10 * (k % 50)
        rois += [ROI(mask=square(y0, x0)), ROI(mask=square(y0 + 1, x0 + 1))]
    out = MergeOverlapping(0.5).apply(ROIList(rois))
    assert len(out) == 1500
    assert {r.size for r in out} == {47}  # 36 + 36 - 25


# --------------------------------------------------------------------------
# Parameter validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (CircularityFilter, {"circularity_threhold": -0.1}, "circularity_threhold"),
        (CircularityFilter, {"circularity_threhold": "high"}, "circularity_threhold"),
        (CircularityFilter, {"circularity_threhold": float("nan")}, "circularity_threhold"),
        (SparseROIsFromMasks, {"min_size": -1}, "min_size"),
        (SparseROIsFromMasks, {"min_size": 2.5}, "min_size"),
        (SparseROIsFromMasks, {"min_size": True}, "min_size"),
        (SparseROIsFromMasks, {"static_threshold": 1.5}, "static_threshold"),
        (SparseROIsFromMasks, {"static_threshold": "otsu"}, "static_threshold"),
        (SparseROIsFromMasks, {"smooth_size": -1}, "smooth_size"),
        (SparseROIsFromMasks, {"smooth_size": float("inf")}, "smooth_size"),
        (SparseROIsFromMasks, {"sign_split": "yes"}, "sign_split"),
        (SparseROIsFromMasks, {"sign_split": 1}, "sign_split"),
        (SparseROIsFromMasks, {"n_processes": 0}, "n_processes"),
        (SparseROIsFromMasks, {"n_processes": None}, "n_processes"),
        (SmoothROIBoundaries, {"tolerance": -0.5}, "tolerance"),
        (SmoothROIBoundaries, {"tolerance": None}, "tolerance"),
        (SmoothROIBoundaries, {"n_processes": 1.5}, "n_processes"),
        (MergeOverlapping, {"threshold": 1.01}, "threshold"),
        (MergeOverlapping, {"threshold": -0.01}, "threshold"),
        (MergeOverlapping, {"threshold": None}, "threshold"),
        (MergeOverlapping, {"threshold": [0.5]}, "threshold"),
    ],
)
def test_parameter_validation(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


def test_defaults_and_accepted_values():
    s = SparseROIsFromMasks()
    assert (s.min_size, s.static_threshold, s.smooth_size, s.sign_split, s.n_processes) == (
        50,
        None,
        4.0,
        True,
        1,
    )
    s = SparseROIsFromMasks(np.int64(3), np.float32(0.5), 0, np.bool_(False), 2.0)
    assert (s.min_size, s.static_threshold, s.smooth_size, s.sign_split, s.n_processes) == (
        3,
        0.5,
        0.0,
        False,
        2,
    )
    b = SmoothROIBoundaries()
    assert (b.tolerance, b.n_processes) == (0.5, 1)
    assert MergeOverlapping(np.float64(0.25)).threshold == 0.25
    with pytest.raises(TypeError):
        MergeOverlapping()  # threshold has no default, as in SIMA


# --------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------


def test_pipeline_end_to_end():
    """Weighted maps → sparse ROIs → smooth outlines → circular ones → merged, plane by plane."""
    yy, xx = np.mgrid[:32, :32]
    movie = np.zeros((3, 2, 32, 32, 1))
    movie[:, 0, :, :, 0] = np.exp(-((yy - 10) ** 2 + (xx - 10) ** 2) / 18.0)
    movie[:, 1, :, :, 0] = np.exp(-((yy - 20) ** 2 + (xx - 22) ** 2) / 18.0)
    movie[:, 1, 28, 2:30, 0] = 1.0  # a long thin bright line: not a cell

    class MeanMap(SegmentationStrategy):
        def _segment(self, dataset):
            return ROIList([ROI(mask=dataset.time_averages[..., 0])])

    plane = MeanMap()
    plane.append(SparseROIsFromMasks(min_size=10, smooth_size=0.5))
    plane.append(SmoothROIBoundaries(tolerance=0.5))
    plane.append(CircularityFilter(0.7))
    strategy = PlaneWiseSegmentation(plane)
    strategy.append(MergeOverlapping(0.5))
    rois = strategy.segment(make_dataset(movie))
    assert [planes_of(r) for r in rois] == [[0], [1]]
    centres = [np.argwhere(dense(r)).mean(axis=0) for r in rois]
    np.testing.assert_allclose(centres[0], [0, 10, 10], atol=0.5)
    np.testing.assert_allclose(centres[1], [1, 20, 22], atol=0.5)
    assert all(not r.is_mask_roi and r.im_shape == (2, 32, 32) for r in rois)


def test_dataset_segment_stores_rois(tmp_path):
    movie, truth = blob_movie()
    for savedir in (None, str(tmp_path / "seg")):
        ds = ImagingDataset([sima.Sequence.create("ndarray", movie)], savedir)
        rois = ds.segment(ThresholdStrategy(), label="auto", planes=[1])
        assert len(rois) == len(truth[1])
        assert all(planes_of(r) == [1] for r in rois)
        if savedir is not None:
            ds = ImagingDataset.load(savedir)
        stored = ds.ROIs["auto"]
        assert [dense(r).tolist() for r in stored] == [dense(r).tolist() for r in rois]
        with pytest.raises(TypeError, match="SegmentationStrategy"):
            ds.segment(object())


def test_dataset_segment_takes_any_object_with_a_segment_method():
    """ImagingDataset.segment needs only ``segment(dataset, planes=...)``, not the base class."""

    class Wrapper:  # not a SegmentationStrategy
        def __init__(self):
            self.calls = []

        def segment(self, dataset, planes=None):
            self.calls.append(planes)
            return ThresholdStrategy().segment(dataset, planes=planes)

    movie, truth = blob_movie()
    ds = make_dataset(movie)
    wrapper = Wrapper()
    rois = ds.segment(wrapper, label="wrapped", planes=[1])
    assert wrapper.calls == [[1]]
    assert len(rois) == len(truth[1]) and ds.ROIs["wrapped"] is not None
    for bad in (Wrapper, ThresholdStrategy, None, "STICA"):  # classes too: no instance
        with pytest.raises(TypeError, match="SegmentationStrategy"):
            ds.segment(bad)


def test_a_dataset_is_recognised_without_computing_projections():
    """The strategy's dataset check reads the class, not the time_averages property."""

    class CountingDataset(ImagingDataset):
        reads = 0

        @property
        def time_averages(self):
            type(self).reads += 1
            return super().time_averages

    movie, _ = blob_movie()
    ds = CountingDataset([sima.Sequence.create("ndarray", movie)], None)

    class ShapeOnly(SegmentationStrategy):
        def _segment(self, dataset):
            return ROIList([])

    with pytest.warns(segment.SegmentationWarning):
        assert len(ShapeOnly().segment(ds)) == 0
    assert CountingDataset.reads == 0

"""Tests for the segmentation strategies (STICA, PlaneNormalizedCuts, PlaneCA1PC) and scoring.

The kernels and the streamed PCA are compared with plain numpy references on
small inputs; the strategies are scored against the ground truth of simulated
movies and of the example dataset with ``match_rois`` (one-to-one matching at
IoU >= 0.5), and must reach F1 >= 0.8.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

import sima_fast as sima
import sima_fast.segment.stica as stica_module
from sima_fast.imaging import ImagingDataset
from sima_fast.kernels.segment import (
    affinity_edges,
    center_frames,
    ncut_sweep,
    neighbour_dots,
    path_maxima,
)
from sima_fast.misc import example_data, example_ground_truth, simulate_movie
from sima_fast.ROI import ROI, ROIList
from sima_fast.segment import (
    STICA,
    CA1PCNucleus,
    MergeOverlapping,
    PlaneCA1PC,
    PlaneNormalizedCuts,
    PlaneWiseSegmentation,
    SegmentationStrategy,
    SmoothROIBoundaries,
    SparseROIsFromMasks,
    match_rois,
)
from sima_fast.segment.normcut import (
    _path_steps,
    neighbour_correlations,
    neighbour_offsets,
    normalized_cut_regions,
)
from sima_fast.segment.stica import plane_pca

MIN_F1 = 0.8

# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def make_dataset(movie: np.ndarray, channel_names=None) -> ImagingDataset:
    return ImagingDataset([sima.Sequence.create("ndarray", movie)], None, channel_names)


@pytest.fixture(scope="module")
def sim36():
    """128 × 128 × 500 frames, 36 cells, one channel."""
    return simulate_movie(
        num_frames=500, frame_shape=(128, 128), num_channels=1, cells_per_plane=36, seed=3
    )


@pytest.fixture(scope="module")
def sim30():
    """128 × 128 × 500 frames, 30 cells, two channels (activity in 'green')."""
    return simulate_movie(
        num_frames=500, frame_shape=(128, 128), num_channels=2, cells_per_plane=30, seed=11
    )


@pytest.fixture(scope="module")
def sim100():
    """192 × 192 × 500 frames, 100 cells."""
    return simulate_movie(
        num_frames=500, frame_shape=(192, 192), num_channels=1, cells_per_plane=100, seed=5
    )


@pytest.fixture(scope="module")
def sim_planes():
    """Two planes of 64 × 64 × 300 frames with 6 cells each."""
    return simulate_movie(
        num_frames=300,
        num_planes=2,
        frame_shape=(64, 64),
        num_channels=1,
        cells_per_plane=6,
        seed=4,
    )


@pytest.fixture(scope="module")
def example():
    """The example dataset (in memory, so that storing ROIs leaves the cache alone)."""
    loaded = ImagingDataset.load(example_data())
    return ImagingDataset(loaded.sequences, None, loaded.channel_names), example_ground_truth()


def ca1_movie(frames: int = 300, size: int = 64, seed: int = 0):
    """Ring-shaped somata (active cytoplasm) around dark, inactive nuclei, packed on a grid.

    Returns the movie ``(T, 1, Y, X, 1)`` and the true nucleus masks ``(n, Y, X)``.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = [
        (y + rng.uniform(-1.5, 1.5), x + rng.uniform(-1.5, 1.5))
        for y in range(10, size - 5, 15)
        for x in range(10, size - 5, 15)
    ]
    base = np.full((size, size), 300.0)
    activity = np.zeros((frames, size, size))
    nuclei = []
    for cy, cx in centres:
        r2 = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2
        nucleus = r2 < 3.5**2
        ring = (r2 < 6.5**2) & ~nucleus
        base[ring] += 300.0
        base[nucleus] -= 150.0
        spikes = rng.poisson(0.08, frames).astype(float)
        calcium = np.zeros(frames)
        for t in range(frames):
            calcium[t] = (0.93 * calcium[t - 1] if t else 0.0) + spikes[t]
        activity[:, ring] += 250.0 * calcium[:, None]
        nuclei.append(nucleus)
    mean = base[None] + activity
    movie = rng.normal(mean, np.sqrt(4 * mean + 25))
    return movie[:, None, :, :, None], np.array(nuclei)


def dense_masks(rois) -> list[np.ndarray]:
    return [np.asarray(roi) != 0 for roi in rois]


def same_rois(a, b) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x, y) for x, y in zip(dense_masks(a), dense_masks(b))
    )


# --------------------------------------------------------------------------
# match_rois
# --------------------------------------------------------------------------


def square(shape, y, x, size):
    m = np.zeros(shape, bool)
    m[y : y + size, x : x + size] = True
    return m


def test_match_rois_perfect_and_empty():
    truth = np.array([square((20, 20), 2, 2, 5), square((20, 20), 10, 10, 6)])
    score = match_rois([ROI(mask=m) for m in truth], truth)
    assert (score["precision"], score["recall"], score["f1"]) == (1.0, 1.0, 1.0)
    assert score["matches"].tolist() == [[0, 0], [1, 1]]
    assert score["mean_iou"] == 1.0
    none = match_rois([], truth)
    assert (none["precision"], none["recall"], none["f1"], none["n_matched"]) == (1.0, 0.0, 0.0, 0)
    assert np.isnan(none["mean_iou"])
    nothing = match_rois([], np.zeros((0, 20, 20), bool))
    assert nothing["f1"] == 1.0


def test_match_rois_is_one_to_one_and_maximal():
    truth = np.array([square((20, 20), 0, 0, 4), square((20, 20), 0, 4, 4)])
    # ROI 0 overlaps both cells (IoU 1/3 each), ROIs 1 and 2 duplicate cell 0
    wide = np.zeros((20, 20), bool)
    wide[0:4, 0:8] = True
    found = [wide, truth[0], truth[0].copy(), truth[1]]
    score = match_rois(found, truth, iou_threshold=0.3)
    assert score["n_matched"] == 2
    assert score["matches"][:, 1].tolist() in ([0, 1], [1, 0])
    assert len(set(score["matches"][:, 0])) == 2
    assert score["ious"].tolist() == [1.0, 1.0]
    assert score["precision"] == 0.5 and score["recall"] == 1.0


def test_match_rois_maximises_the_number_of_matches():
    # Greedy best-IoU matching pairs ROI 0 with cell 0 (IoU 0.82) and leaves ROI 1
    # unmatched; the maximum matching pairs ROI 0 with cell 1 and ROI 1 with cell 0.
    truth = np.zeros((2, 1, 20), bool)
    truth[0, 0, 0:10] = True
    truth[1, 0, 3:13] = True
    a = np.zeros((1, 20), bool)
    a[0, 1:11] = True  # IoU 9/11 with cell 0, 8/12 with cell 1
    b = np.zeros((1, 20), bool)
    b[0, 0:6] = True  # IoU 0.6 with cell 0, 3/13 with cell 1
    score = match_rois([a, b], truth, iou_threshold=0.5)
    assert score["n_matched"] == 2
    assert score["matches"].tolist() == [[0, 1], [1, 0]]
    np.testing.assert_allclose(score["ious"], [8 / 12, 0.6])


def test_match_rois_threshold_and_planes():
    truth = np.zeros((2, 2, 10, 10), bool)
    truth[0, 0, :4, :4] = True
    truth[1, 1, :4, :4] = True
    roi = ROI(mask=truth[1])  # the same square on the other plane
    score = match_rois([roi], truth)
    assert score["matches"].tolist() == [[0, 1]]
    half = np.zeros((2, 10, 10), bool)
    half[0, :4, :2] = True
    assert match_rois([half], truth, iou_threshold=0.5)["n_matched"] == 1
    assert match_rois([half], truth, iou_threshold=0.51)["n_matched"] == 0
    polygon = ROI(polygons=[[0, 0, 1], [4, 0, 1], [4, 4, 1], [0, 4, 1]])
    assert match_rois([polygon], truth)["matches"].tolist() == [[0, 1]]


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "0.5", None])
def test_match_rois_rejects_bad_threshold(bad):
    with pytest.raises(ValueError, match="iou_threshold"):
        match_rois([], np.zeros((1, 4, 4), bool), iou_threshold=bad)


def test_match_rois_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        match_rois([np.zeros((5, 5), bool)], np.zeros((1, 4, 4), bool))
    with pytest.raises(ValueError, match="truth_masks"):
        match_rois([], np.zeros((4, 4), bool))


# --------------------------------------------------------------------------
# Kernels against numpy references
# --------------------------------------------------------------------------


def ref_center(block, mean, scale, prev):
    x = np.asarray(block, dtype=np.float64)
    d = (x - mean) * scale
    d[~np.isfinite(d)] = 0.0
    out = d.reshape(len(x), -1).astype(np.float32)
    sums = d.sum(axis=2).T
    sum_sq = (out.astype(np.float64) ** 2).sum(axis=0).reshape(mean.shape)
    seq = np.concatenate([prev[None], x])
    diff = seq[1:] - seq[:-1]
    ok = np.isfinite(diff)
    return out, sums, sum_sq, np.where(ok, diff**2, 0).sum(axis=0), ok.sum(axis=0), x[-1]


@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32", "float64"])
@pytest.mark.parametrize("strided", [False, True])
def test_center_frames_matches_reference(dtype, strided):
    rng = np.random.default_rng(1)
    full = rng.integers(0, 3000, size=(7, 2, 5, 6, 2)).astype(dtype)
    if dtype.startswith("float"):
        full[rng.random(full.shape) < 0.1] = np.nan
    block = full[:, 1, :, :, 0] if strided else np.ascontiguousarray(full[:, 1, :, :, 0])
    mean = rng.normal(1500, 100, size=(5, 6))
    mean[0, 0] = np.nan
    scale = rng.random((5, 6))
    scale[1, 1] = 0.0
    prev = rng.normal(1500, 100, size=(5, 6))
    prev[2, 2] = np.nan
    expected = ref_center(block, mean, scale, prev)
    out = np.empty((7, 30), np.float32)
    sums = np.empty((5, 9))  # wider than needed: only the first 7 columns are written
    sum_sq, sum_dsq, n_dsq = np.ones((5, 6)), np.ones((5, 6)), np.ones((5, 6), np.int64)
    state = prev.copy()
    center_frames(block, mean, scale, out, sums, state, True, sum_sq, sum_dsq, n_dsq)
    np.testing.assert_allclose(out, expected[0], rtol=1e-6)
    np.testing.assert_allclose(sums[:, :7], expected[1], rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(sum_sq, 1 + expected[2], rtol=1e-10)
    np.testing.assert_allclose(sum_dsq, 1 + expected[3], rtol=1e-10)
    np.testing.assert_array_equal(n_dsq, 1 + expected[4])
    np.testing.assert_array_equal(state, expected[5])
    # without statistics: same output, state untouched
    out2 = np.empty_like(out)
    center_frames(block, mean, scale, out2, sums, state, False, sum_sq, sum_dsq, n_dsq)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(state, expected[5])
    np.testing.assert_array_equal(n_dsq, 1 + expected[4])


def ref_neighbour_dots(features, offsets):
    rows, cols, _ = features.shape
    out = np.zeros((len(offsets), rows, cols))
    for o, (dy, dx) in enumerate(offsets):
        for y in range(rows):
            for x in range(cols):
                if 0 <= y + dy < rows and 0 <= x + dx < cols:
                    out[o, y, x] = features[y, x] @ features[y + dy, x + dx]
    return out


def test_neighbour_dots_and_correlations():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((6, 7, 3))
    offsets = neighbour_offsets((2, 2))
    out = np.empty((len(offsets), 6, 7))
    neighbour_dots(features, offsets, out)
    np.testing.assert_allclose(out, ref_neighbour_dots(features, offsets), rtol=1e-12)
    energy = (features**2).sum(axis=2) * 1.5
    energy[0, 0] = 0.0
    corr = neighbour_correlations(features, energy, offsets)
    ref = ref_neighbour_dots(features, offsets)
    for o, (dy, dx) in enumerate(offsets):
        for y in range(6):
            for x in range(7):
                if 0 <= y + dy < 6 and 0 <= x + dx < 7 and energy[y, x] > 0:
                    expected = ref[o, y, x] / np.sqrt(energy[y, x] * energy[y + dy, x + dx])
                    if energy[y + dy, x + dx] == 0:
                        expected = 0.0
                else:
                    expected = 0.0
                assert corr[o, y, x] == pytest.approx(expected, abs=1e-12)
    assert np.abs(corr).max() <= 1.0


def test_neighbour_offsets_cover_each_pair_once():
    offsets = neighbour_offsets((2, 3))
    pairs = {(int(dy), int(dx)) for dy, dx in offsets}
    box = {(dy, dx) for dy in range(-2, 3) for dx in range(-3, 4) if (dy, dx) != (0, 0)}
    assert len(pairs) == len(offsets)
    assert pairs | {(-dy, -dx) for dy, dx in pairs} == box
    assert not pairs & {(-dy, -dx) for dy, dx in pairs}


def test_path_steps_and_maxima():
    offsets = np.array([[1, 0], [0, 2], [-2, 1], [2, 2]])
    ptr, steps = _path_steps(offsets)
    for o, (dy, dx) in enumerate(offsets):
        path = steps[ptr[o] : ptr[o + 1]]
        assert path[0].tolist() == [0, 0] and path[-1].tolist() == [dy, dx]
        assert np.abs(np.diff(path, axis=0)).max() == 1  # 8-connected steps
    rng = np.random.default_rng(3)
    image = rng.random((5, 6))
    out = np.empty((len(offsets), 5, 6))
    path_maxima(image, offsets, ptr, steps, out)
    for o, (dy, dx) in enumerate(offsets):
        for y in range(5):
            for x in range(6):
                if 0 <= y + dy < 5 and 0 <= x + dx < 6:
                    path = steps[ptr[o] : ptr[o + 1]]
                    expected = max(image[y + sy, x + sx] for sy, sx in path)
                else:
                    expected = -np.inf
                assert out[o, y, x] == expected


def test_affinity_edges_matches_reference():
    rng = np.random.default_rng(4)
    offsets = neighbour_offsets((1, 1))
    corr = rng.uniform(-1, 1, size=(len(offsets), 4, 5))
    log_factor = rng.normal(size=corr.shape)
    log_factor[0, 1, 1] = -np.inf
    rows, cols, weights = affinity_edges(corr, offsets, log_factor, 9.0, 0.2)
    expected = {}
    for o, (dy, dx) in enumerate(offsets):
        for y in range(4):
            for x in range(5):
                if not (0 <= y + dy < 4 and 0 <= x + dx < 5):
                    continue
                if corr[o, y, x] >= 0.2 and np.isfinite(log_factor[o, y, x]):
                    key = (y * 5 + x, (y + dy) * 5 + x + dx)
                    expected[key] = np.exp(9 * corr[o, y, x] + log_factor[o, y, x])
    got = {(int(a), int(b)): w for a, b, w in zip(rows, cols, weights)}
    assert got.keys() == expected.keys()
    for key, w in expected.items():
        assert got[key] == pytest.approx(w, rel=1e-12)


def ref_ncut(w: np.ndarray, part: np.ndarray) -> float:
    cut = w[part][:, ~part].sum()
    return cut / w[part].sum() + cut / w[~part].sum()


def test_ncut_sweep_matches_brute_force():
    rng = np.random.default_rng(5)
    w = rng.random((9, 9)) * (rng.random((9, 9)) < 0.5)
    w = np.triu(w, 1)
    w = w + w.T
    w[0, 1] = w[1, 0] = 0.3  # make sure node 0 has an edge
    sparse = scipy.sparse.csr_matrix(w)
    degree = w.sum(axis=1)
    order = rng.permutation(9).astype(np.int64)
    costs = ncut_sweep(sparse.indptr, sparse.indices, sparse.data, degree, order)
    for j in range(1, 9):
        part = np.zeros(9, bool)
        part[order[:j]] = True
        if degree[part].sum() > 0 and degree[~part].sum() > 0:
            assert costs[j - 1] == pytest.approx(ref_ncut(w, part), rel=1e-10)


# --------------------------------------------------------------------------
# Recursive normalised cuts
# --------------------------------------------------------------------------


def cliques(sizes, bridge=0.01, isolated=0):
    """Block-diagonal cliques (weight 1) in a chain joined by ``bridge`` edges."""
    n = sum(sizes) + isolated
    w = np.zeros((n, n))
    start = 0
    for k, size in enumerate(sizes):
        w[start : start + size, start : start + size] = 1.0
        if k:
            w[start - 1, start] = w[start, start - 1] = bridge
        start += size
    np.fill_diagonal(w, 0.0)
    return scipy.sparse.csr_matrix(w)


def test_normalized_cut_regions_splits_weak_links():
    regions = normalized_cut_regions(cliques([10, 12, 8]), min_size=5, max_size=100)
    assert [r.tolist() for r in regions] == [
        list(range(10)),
        list(range(10, 22)),
        list(range(22, 30)),
    ]


def test_normalized_cut_regions_size_rules():
    graph = cliques([10, 12, 8], isolated=3)
    # below min_size: never cut; isolated nodes are left out
    assert len(normalized_cut_regions(graph, min_size=31, max_size=100)) == 1
    assert normalized_cut_regions(graph, min_size=31)[0].tolist() == list(range(30))
    # max_pen 0: no cut is cheap enough, unless the region is too large
    assert len(normalized_cut_regions(graph, max_pen=0.0, min_size=1, max_size=100)) == 1
    forced = normalized_cut_regions(graph, max_pen=0.0, min_size=1, max_size=15)
    assert all(r.size <= 15 for r in forced) and sum(r.size for r in forced) == 30
    # disconnected pieces always separate
    two = scipy.sparse.block_diag([cliques([5]), cliques([6])]).tocsr()
    assert [r.size for r in normalized_cut_regions(two, min_size=100)] == [5, 6]


def test_normalized_cut_regions_large_region_uses_sparse_solver():
    graph = cliques([300, 350], bridge=0.001)
    regions = normalized_cut_regions(graph, min_size=10, max_size=1000)
    assert [r.size for r in regions] == [300, 350]


# --------------------------------------------------------------------------
# Streamed PCA
# --------------------------------------------------------------------------


def ref_pca(sequences: list[np.ndarray], plane: int = 0, channel: int = 0):
    """Normalised, mean-trace-free movie (pixels × frames) by the documented recipe."""
    frames = [np.asarray(s[:, plane, :, :, channel], dtype=np.float64) for s in sequences]
    allf = np.concatenate(frames).reshape(sum(len(f) for f in frames), -1)
    mean = np.nanmean(allf, axis=0)
    dsq = sum(np.nansum(np.diff(f.reshape(len(f), -1), axis=0) ** 2, axis=0) for f in frames)
    count = sum(np.isfinite(np.diff(f.reshape(len(f), -1), axis=0)).sum(axis=0) for f in frames)
    noise = np.sqrt(dsq / (2 * count))
    centred = np.nan_to_num(allf - mean)
    trace = centred.sum(axis=1) / centred.shape[1]
    z = (centred / noise).T
    beta = z @ trace / (trace @ trace)
    return z - np.outer(beta, trace)


def test_plane_pca_matches_exact_svd(monkeypatch):
    sim = simulate_movie(
        num_frames=240,
        frame_shape=(40, 40),
        num_channels=2,
        cells_per_plane=5,
        seed=7,
        dtype="float32",
        nan_fraction=0.01,
    )
    parts = [sim.movie[:100], sim.movie[100:]]
    ds = ImagingDataset([sima.Sequence.create("ndarray", p) for p in parts], None)
    pca = plane_pca(ds, 0, 0, 10)
    z = ref_pca(parts)
    np.testing.assert_allclose(pca.energy, (z**2).sum(axis=1), rtol=1e-4)
    u, s, vt = np.linalg.svd(z, full_matrices=False)
    k = pca.num_signal
    assert k == 5
    np.testing.assert_allclose(pca.values[:k], s[:k], rtol=1e-2)
    # the signal subspaces agree (cosines of the principal angles close to 1)
    cosines = np.linalg.svd(pca.spatial[:, :k].T @ u[:, :k], compute_uv=False)
    assert cosines.min() > 0.99
    cosines = np.linalg.svd(pca.temporal[:, :k].T @ vt[:k].T, compute_uv=False)
    assert cosines.min() > 0.99
    assert pca.noise_edge == pytest.approx(np.sqrt(1600) + np.sqrt(240))
    # streaming in many small chunks gives the same result
    monkeypatch.setattr(stica_module, "CHUNK_BYTES", 7 * 4 * 1600)
    small = plane_pca(ds, 0, 0, 10)
    np.testing.assert_allclose(small.values[:k], pca.values[:k], rtol=1e-5)
    np.testing.assert_allclose(np.abs(small.spatial[:, :k]), np.abs(pca.spatial[:, :k]), atol=1e-4)


def test_plane_pca_of_pure_noise_has_no_signal():
    rng = np.random.default_rng(8)
    movie = rng.normal(500.0, 20.0, size=(300, 1, 32, 32, 1))
    pca = plane_pca(make_dataset(movie), 0, 0, 20)
    assert pca.num_signal == 0
    for strategy in (STICA(), PlaneNormalizedCuts()):  # nothing found: a warning says why
        with pytest.warns(sima.segment.SegmentationWarning, match="noise level"):
            assert strategy.segment(make_dataset(movie)) == []


# --------------------------------------------------------------------------
# Accuracy against ground truth
# --------------------------------------------------------------------------


def stica_pipeline() -> STICA:
    """STICA with the sparse/smooth/merge post-processing (its defaults) and merging on."""
    return STICA(overlap_per=0.5)


def test_stica_default_steps():
    steps = STICA().post_processing_steps
    assert [type(s) for s in steps] == [SparseROIsFromMasks, SmoothROIBoundaries]
    assert steps[0].min_size == 50 and steps[0].static_threshold == 0.5
    assert steps[0].smooth_size == pytest.approx(2.0)
    merged = stica_pipeline().post_processing_steps
    assert isinstance(merged[-1], MergeOverlapping) and merged[-1].threshold == 0.5
    assert STICA(post_process=False).post_processing_steps == []


@pytest.mark.parametrize("name", ["sim36", "sim30", "sim100"])
def test_stica_finds_simulated_cells(name, request):
    sim = request.getfixturevalue(name)
    ds = make_dataset(sim.movie, ["green", "red"][: sim.movie.shape[-1]])
    rois = STICA(channel="green").segment(ds)
    score = match_rois(rois, sim.masks)
    assert score["f1"] >= MIN_F1, score
    assert score["precision"] >= 0.95, score
    assert all(not roi.is_mask_roi for roi in rois)  # smoothed outlines


@pytest.mark.parametrize("name", ["sim36", "sim30", "sim100"])
def test_normalized_cuts_find_simulated_cells(name, request):
    sim = request.getfixturevalue(name)
    rois = PlaneNormalizedCuts().segment(make_dataset(sim.movie))
    score = match_rois(rois, sim.masks)
    assert score["f1"] >= 0.95, score
    assert score["mean_iou"] >= 0.9, score


def test_strategies_find_example_cells(example):
    dataset, truth = example
    for strategy in (stica_pipeline(), PlaneNormalizedCuts()):
        rois = dataset.segment(strategy, label=type(strategy).__name__)
        score = match_rois(rois, truth.masks)
        assert score["f1"] >= MIN_F1, (strategy, score)
        assert len(dataset.ROIs[type(strategy).__name__]) == len(rois)
        planes = {int(np.flatnonzero(m.any(axis=(1, 2)))[0]) for m in dense_masks(rois)}
        assert planes == {0, 1}


def test_segment_honours_planes(sim_planes):
    ds = make_dataset(sim_planes.movie)
    everything = PlaneNormalizedCuts().segment(ds)
    only = PlaneNormalizedCuts().segment(ds, planes=[1])
    on_plane_1 = [r for r in everything if np.asarray(r)[1].any()]
    assert len(only) == 6 and same_rois(only, on_plane_1)
    assert all(r.im_shape == (2, 64, 64) for r in only)
    wise = PlaneWiseSegmentation(PlaneNormalizedCuts()).segment(ds)
    assert same_rois(wise, everything)
    score = match_rois(everything, sim_planes.masks)
    assert score["f1"] >= MIN_F1
    stica_rois = STICA(components=20).segment(ds, planes=[-2])
    assert stica_rois and all(not np.asarray(r)[1].any() for r in stica_rois)


def test_strategies_are_deterministic(sim_planes):
    ds = make_dataset(sim_planes.movie[:, :1])
    assert same_rois(STICA().segment(ds), STICA().segment(ds))
    assert same_rois(PlaneNormalizedCuts().segment(ds), PlaneNormalizedCuts().segment(ds))


def test_stica_raw_maps_and_verbose(sim_planes, capsys):
    ds = make_dataset(sim_planes.movie[:, :1])
    maps = STICA(components=10, post_process=False, verbose=True).segment(ds)
    assert 1 <= len(maps) <= 10
    for roi in maps:
        values = np.asarray(roi)
        assert roi.is_mask_roi and values.min() >= 0 and values.max() == pytest.approx(1.0)
    err = capsys.readouterr().err
    assert "STICA: segmenting plane 0" in err and "independent component" in err


def test_stica_reports_unconverged_ica_instead_of_warning(sim_planes, monkeypatch, capsys):
    monkeypatch.setattr(stica_module, "ICA_MAX_ITER", 1)
    ds = make_dataset(sim_planes.movie[:, :1])
    STICA(components=10, verbose=True).segment(ds)  # warnings are errors in this suite
    assert "without converging" in capsys.readouterr().err


def test_plane_ca1pc_finds_nuclei():
    movie, nuclei = ca1_movie()
    strategy = PlaneCA1PC(x_diameter=7, y_diameter=7)
    rois = strategy.segment(make_dataset(movie))
    score = match_rois(rois, nuclei)
    assert score["recall"] >= 0.9, score
    assert score["mean_iou"] >= 0.8, score
    assert all(roi.size >= 20 for roi in rois)


def test_plane_ca1pc_parameters():
    steps = PlaneCA1PC().post_processing_steps
    assert [type(s).__name__ for s in steps] == [
        "ROIFilter",
        "CA1PCNucleus",
        "ROIFilter",
        "CircularityFilter",
    ]
    assert PlaneCA1PC(circularity_threhold=0.7).circularity_threhold == 0.7
    assert PlaneCA1PC(circularity_threshold=0.3).circularity_threshold == 0.3
    assert steps[-1].circularity_threshold == 0.5
    with pytest.raises(TypeError):
        PlaneCA1PC(circularity_threhold=0.7, circularity_threshold=0.3)


def test_ca1pc_nucleus_needs_dataset():
    with pytest.raises(ValueError, match="dataset"):
        CA1PCNucleus().apply(ROIList([ROI(mask=np.ones((4, 4)))]))


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (STICA, {"mu": 1.5}, "mu"),
        (STICA, {"mu": "low"}, "mu"),
        (STICA, {"components": 0}, "components"),
        (STICA, {"components": 2.5}, "components"),
        (STICA, {"static_threshold": -0.1}, "static_threshold"),
        (STICA, {"min_area": -1}, "min_area"),
        (STICA, {"x_smoothing": -1}, "x_smoothing"),
        (STICA, {"overlap_per": float("nan")}, "overlap_per"),
        (STICA, {"verbose": "yes"}, "verbose"),
        (STICA, {"channel": 1.0}, "channel"),
        (PlaneNormalizedCuts, {"num_pcs": 0}, "num_pcs"),
        (PlaneNormalizedCuts, {"max_dist": (2, -1)}, "max_dist"),
        (PlaneNormalizedCuts, {"max_dist": (1, 2, 3)}, "max_dist"),
        (PlaneNormalizedCuts, {"max_dist": (0, 0)}, "max_dist"),
        (PlaneNormalizedCuts, {"spatial_decay": (0, 2)}, "spatial_decay"),
        (PlaneNormalizedCuts, {"spatial_decay": "wide"}, "spatial_decay"),
        (PlaneNormalizedCuts, {"num_cuts": 0}, "num_cuts"),
        (PlaneNormalizedCuts, {"cut_max_pen": -1}, "cut_max_pen"),
        (PlaneNormalizedCuts, {"cut_min_size": 1.5}, "cut_min_size"),
        (PlaneNormalizedCuts, {"cut_max_size": -5}, "cut_max_size"),
        (PlaneCA1PC, {"x_diameter": 0}, "x_diameter"),
        (PlaneCA1PC, {"min_roi_size": -1}, "min_roi_size"),
        (PlaneCA1PC, {"min_cut_size": "big"}, "min_cut_size"),
        (PlaneCA1PC, {"circularity_threhold": 2}, "circularity_threhold"),
        (CA1PCNucleus, {"y_diameter": -3}, "y_diameter"),
    ],
)
def test_bad_parameters_name_the_argument(cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


def test_bad_channel_and_strategy(sim_planes):
    ds = make_dataset(sim_planes.movie)
    with pytest.raises(ValueError, match="channel"):
        STICA(channel="red").segment(ds)
    with pytest.raises(ValueError, match="channel"):
        PlaneNormalizedCuts(channel=3).segment(ds)
    with pytest.raises(TypeError, match="SegmentationStrategy"):
        ds.segment(STICA)  # the class, not an instance
    assert isinstance(STICA(), SegmentationStrategy)

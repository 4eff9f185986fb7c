"""Segmentation quality and SIMA's usage patterns: the tutorial's appended steps, SIMA's
parameters for PlaneCA1PC, the affinity_method form of the normalised cuts, and what happens
on a recording where nothing can be found."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

import sima_fast as sima
import sima_fast.segment.stica as stica_module
from sima_fast.misc import simulate_movie
from sima_fast.ROI import ROI, ROIList
from sima_fast.segment import (
    STICA,
    AffinityMatrixCA1PC,
    AffinityMatrixMethod,
    BasicAffinityMatrix,
    CA1PCNucleus,
    MergeOverlapping,
    PlaneCA1PC,
    PlaneNormalizedCuts,
    PlaneWiseSegmentation,
    SegmentationWarning,
    SmoothROIBoundaries,
    SparseROIsFromMasks,
    match_rois,
)

MIN_F1 = 0.8


def dataset_of(movie, channel_names=None):
    return sima.ImagingDataset([sima.Sequence.create("ndarray", movie)], None, channel_names)


@pytest.fixture(scope="module")
def scene():
    """64 x 64 pixels, 300 frames, 6 cells (filled somata, no dark nucleus)."""
    return simulate_movie(
        num_frames=300, frame_shape=(64, 64), num_channels=1, cells_per_plane=6, seed=1
    )


def short_recording(frames: int = 12, seed: int = 5) -> np.ndarray:
    """A few frames of bright, nearly silent cells on a structured neuropil with shot noise.

    Like a short snapshot of a real field of view: the cells stand out in the mean image but
    barely change over the frames, so no activity separates them from noise.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :64]
    neuropil = 200 + 40 * np.sin(yy / 5.0) * np.cos(xx / 7.0) + 15 * rng.standard_normal((48, 64))
    cells = np.zeros((48, 64))
    for cy, cx in [(10, 12), (14, 40), (30, 20), (34, 50), (40, 8)]:
        cells += 300.0 * (((yy - cy) ** 2 + (xx - cx) ** 2) < 16)
    expected = np.clip(neuropil + cells, 1.0, None)
    frames_ = rng.poisson(np.broadcast_to(expected, (frames, 48, 64))).astype(np.float32)
    return frames_[:, None, :, :, None]


def tutorial_stica(**params) -> STICA:
    """SIMA's tutorial: a STICA strategy with three steps appended by the user."""
    strategy = STICA(**params)
    strategy.append(SparseROIsFromMasks())
    strategy.append(SmoothROIBoundaries())
    strategy.append(MergeOverlapping(threshold=0.5))
    return strategy


# --------------------------------------------------------------------------
# The steps SIMA users append do not undo STICA's own post-processing
# --------------------------------------------------------------------------


def test_tutorial_pattern_keeps_the_cells_stica_found(scene):
    ds = dataset_of(scene.movie)
    own = STICA(components=20).segment(ds)
    tutorial = tutorial_stica(components=20).segment(ds)
    assert match_rois(own, scene.masks)["f1"] >= MIN_F1
    # the same outlines, neither shrunk nor blurred: the appended steps only merge what
    # MergeOverlapping merges
    merged = MergeOverlapping(threshold=0.5).apply(own, ds)
    assert len(tutorial) == len(merged)
    pairs = match_rois(tutorial, np.stack([np.asarray(r)[0] != 0 for r in merged]), 0.9)
    assert pairs["n_matched"] == len(merged)
    assert match_rois(tutorial, scene.masks)["recall"] >= match_rois(merged, scene.masks)["recall"]


def test_sparse_rois_from_masks_leaves_sparse_rois_alone():
    yy, xx = np.mgrid[:32, :32]
    disc = ((yy - 10) ** 2 + (xx - 12) ** 2) < 30
    pair = disc | (((yy - 24) ** 2 + (xx - 22) ** 2) < 20)
    step = SparseROIsFromMasks()  # SIMA's defaults: smoothing 4, min_size 50
    once = step.apply(ROIList([ROI(mask=pair.astype(float)), ROI(mask=np.zeros((32, 32)))]))
    sizes = [r.size for r in once]
    assert sizes == [int(disc.sum()), 61] or sizes == [int(disc.sum())]  # min_size applies
    np.testing.assert_array_equal(np.asarray(once[0])[0] != 0, disc)
    twice = step.apply(once)
    assert [np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(once, twice)] == [
        True
    ] * len(once)
    # a weighted map is still smoothed and thresholded
    weighted = ROI(mask=np.where(pair, 1.0 + 0.01 * xx, 0.0))
    assert step.apply(ROIList([weighted]))[0].size != int(disc.sum())


# --------------------------------------------------------------------------
# PlaneCA1PC with SIMA's parameters finds cells with and without a visible nucleus
# --------------------------------------------------------------------------


def test_ca1pc_finds_filled_cells_with_defaults_and_workflow_parameters(scene):
    ds = dataset_of(scene.movie, ["GCaMP"])
    default = PlaneCA1PC(x_diameter=8, y_diameter=8).segment(ds)
    assert match_rois(default, scene.masks)["f1"] >= MIN_F1
    workflow = PlaneCA1PC(
        channel="GCaMP",
        num_pcs=30,
        max_dist=(3, 6),
        spatial_decay=(3, 6),
        cut_max_pen=0.10,
        cut_min_size=50,
        cut_max_size=150,
        x_diameter=14,
        y_diameter=7,
        circularity_threhold=0.5,
        min_roi_size=20,
        min_cut_size=40,
    ).segment(ds)
    assert match_rois(workflow, scene.masks)["f1"] >= MIN_F1


def test_ca1pc_nucleus_keeps_a_region_without_an_enclosed_dark_blob():
    yy, xx = np.mgrid[:30, :30]
    d2 = (yy - 15) ** 2 + (xx - 15) ** 2
    cell = d2 < 49
    image = 100.0 + 200.0 * cell - 2.0 * np.sqrt(d2) * cell  # brightest at the centre
    movie = np.broadcast_to(image[:, :, None], (3, 1, 30, 30, 1)).copy()
    ds = dataset_of(movie)
    region = cell | ((yy - 15) ** 2 + (xx - 15) ** 2 < 64)  # the cell and a dim rim
    out = CA1PCNucleus(x_diameter=8).apply(ROIList([ROI(mask=region)]), ds)
    assert len(out) == 1
    np.testing.assert_array_equal(np.asarray(out[0])[0] != 0, region)


# --------------------------------------------------------------------------
# The affinity_method form of the normalised cuts
# --------------------------------------------------------------------------


def same_rois(a, b) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(np.asarray(x) != 0, np.asarray(y) != 0) for x, y in zip(a, b)
    )


def test_affinity_method_forms_agree(scene):
    ds = dataset_of(scene.movie)
    default = PlaneNormalizedCuts().segment(ds)
    assert match_rois(default, scene.masks)["f1"] >= MIN_F1
    explicit = PlaneNormalizedCuts(BasicAffinityMatrix(channel=0, num_pcs=75)).segment(ds)
    shorthand = PlaneNormalizedCuts(channel=0, num_pcs=75, max_dist=(2, 2)).segment(ds)
    assert same_rois(default, explicit) and same_rois(default, shorthand)
    ca1 = PlaneNormalizedCuts(AffinityMatrixCA1PC(x_diameter=8, y_diameter=8)).segment(ds)
    assert match_rois(ca1, scene.masks)["f1"] >= MIN_F1


def test_basic_affinity_matrix_calculate(scene):
    ds = dataset_of(scene.movie)
    matrix = BasicAffinityMatrix().calculate(ds)
    assert matrix.shape == (64 * 64, 64 * 64)
    assert abs(matrix - matrix.T).max() == 0
    assert matrix.nnz > 0 and matrix.data.min() > 0
    volume = dataset_of(np.concatenate([scene.movie, scene.movie], axis=1))
    with pytest.raises(ValueError, match="plane_affinity"):
        BasicAffinityMatrix().calculate(volume)
    same = BasicAffinityMatrix().plane_affinity(volume, 1)
    assert abs(same - matrix).max() == 0


class BrightNeighbours(AffinityMatrixMethod):
    """A user's own affinity: neighbouring pixels that are both bright in the mean image."""

    def calculate(self, dataset):
        mean = dataset.time_averages[0, :, :, 0]
        bright = (mean > np.percentile(mean, 90)).ravel()
        rows, cols = mean.shape
        n = rows * cols
        right = scipy.sparse.diags(np.ones(n - 1), 1, shape=(n, n), format="csr")
        right = right.multiply((np.arange(n) % cols != cols - 1)[:, None])
        down = scipy.sparse.diags(np.ones(n - cols), cols, shape=(n, n), format="csr")
        both = scipy.sparse.diags(bright.astype(float))
        upper = both @ (right + down) @ both
        return (upper + upper.T).tocsr()


class WrongShape(AffinityMatrixMethod):
    def calculate(self, dataset):
        return scipy.sparse.identity(3, format="csr")


def test_user_affinity_methods(scene):
    ds = dataset_of(scene.movie)
    rois = PlaneNormalizedCuts(BrightNeighbours(), cut_min_size=10).segment(ds)
    assert match_rois(rois, scene.masks, 0.3)["n_matched"] >= 3
    with pytest.raises(ValueError, match="expected"):
        PlaneNormalizedCuts(WrongShape()).segment(ds)


def test_affinity_method_arguments_are_checked():
    with pytest.raises(TypeError, match="affinity_method"):
        PlaneNormalizedCuts(0)  # SIMA's first parameter is the affinity method
    with pytest.raises(TypeError, match="num_pcs"):
        PlaneNormalizedCuts(BasicAffinityMatrix(), num_pcs=10)
    with pytest.raises(ValueError, match="x_diameter"):
        AffinityMatrixCA1PC(x_diameter=0)
    assert PlaneCA1PC(channel="GCaMP").channel == "GCaMP"


# --------------------------------------------------------------------------
# Nothing found: a warning with the reason, and plain errors downstream
# --------------------------------------------------------------------------


@pytest.mark.parametrize("make", [PlaneNormalizedCuts, PlaneCA1PC])
def test_nothing_found_warns_with_reason_and_advice(make):
    ds = dataset_of(short_recording())
    with pytest.warns(SegmentationWarning, match="significantly correlated") as caught:
        assert len(make().segment(ds)) == 0
    text = str(caught[0].message)
    assert "12 frames" in text and "What to try" in text


def test_nothing_found_by_stica_on_noise_says_so():
    rng = np.random.default_rng(4)
    movie = rng.poisson(300.0, size=(200, 1, 24, 24, 1)).astype(np.float32)
    with pytest.warns(SegmentationWarning, match="noise level") as caught:
        assert len(tutorial_stica(components=5).segment(dataset_of(movie))) == 0
    assert "200 frames" in str(caught[0].message)


def test_empty_rois_stored_and_extract_says_why(tmp_path):
    ds = sima.ImagingDataset(
        [sima.Sequence.create("ndarray", short_recording())], str(tmp_path / "short.sima")
    )
    with pytest.warns(SegmentationWarning):
        ds.segment(PlaneNormalizedCuts(), "auto")
    assert len(ds.ROIs["auto"]) == 0
    with pytest.raises(ValueError, match="no ROI"):
        ds.extract(label="auto")


def test_plane_wise_segmentation_warns_once_for_the_volume():
    movie = np.concatenate([short_recording(seed=1), short_recording(seed=2)], axis=1)
    with pytest.warns(SegmentationWarning) as caught:
        PlaneWiseSegmentation(PlaneNormalizedCuts()).segment(dataset_of(movie))
    assert len(caught) == 1
    assert "plane 0" in str(caught[0].message) and "plane 1" in str(caught[0].message)


# --------------------------------------------------------------------------
# Reading the planes once gives the same result as streaming them
# --------------------------------------------------------------------------


def test_in_memory_planes_give_the_streamed_result(scene, monkeypatch):
    movie = np.concatenate([scene.movie, scene.movie[:, :, ::-1]], axis=1)
    ds = dataset_of(movie)
    loaded = PlaneNormalizedCuts().segment(ds, planes=[1, 0])
    monkeypatch.setattr(stica_module, "IN_MEMORY_BYTES", 0)
    assert stica_module.planes_in_memory(ds, np.array([0])) is None
    streamed = PlaneNormalizedCuts().segment(ds, planes=[1, 0])
    assert same_rois(loaded, streamed)
    assert {int(np.flatnonzero(np.asarray(r).any(axis=(1, 2)))[0]) for r in loaded} == {0, 1}


# --------------------------------------------------------------------------
# SIMA's module paths
# --------------------------------------------------------------------------


def test_sima_module_paths():
    import sima_fast.segment as seg
    from sima_fast.segment import ca1pc, normcut, segment, stica

    assert ca1pc.PlaneCA1PC is seg.PlaneCA1PC and ca1pc.AffinityMatrixCA1PC is AffinityMatrixCA1PC
    assert ca1pc.CA1PCNucleus is CA1PCNucleus
    assert normcut.BasicAffinityMatrix is BasicAffinityMatrix
    assert normcut.AffinityMatrixMethod is AffinityMatrixMethod
    assert normcut.PlaneNormalizedCuts is PlaneNormalizedCuts
    assert stica.STICA is STICA
    for name in (
        "SegmentationStrategy",
        "PostProcessingStep",
        "PlaneWiseSegmentation",
        "ROIFilter",
        "CircularityFilter",
        "MergeOverlapping",
        "SparseROIsFromMasks",
        "SmoothROIBoundaries",
    ):
        assert getattr(segment, name) is getattr(seg, name)


def test_offset_pca_matches_the_offset_covariance(tmp_path):
    from sima_fast.segment import oPCA

    rng = np.random.default_rng(2)
    slow = np.cumsum(rng.normal(size=(120, 3)), axis=0)
    for dims in (5, 300):  # more observations than dimensions, and fewer
        data = slow @ rng.normal(size=(3, dims)) + rng.normal(size=(120, dims))
        variances, opcs, signals = oPCA.offsetPCA(data, num_pcs=3)
        x = data - data.mean(axis=0)
        cov = (x[1:].T @ x[:-1] + x[:-1].T @ x[1:]) / (2 * 119)
        ref = np.sort(np.linalg.eigvalsh(cov))[::-1][:3]
        np.testing.assert_allclose(variances, ref, rtol=1e-8)
        np.testing.assert_allclose(cov @ opcs, opcs * variances, atol=1e-8 * ref[0])
        np.testing.assert_allclose(signals, x @ opcs, atol=1e-9)
        em = oPCA.EM_oPCA(list(data), 3)
        np.testing.assert_allclose(em[0], variances)
    with pytest.raises(ValueError, match="2-D"):
        oPCA.offsetPCA(np.zeros(5))
    movie = simulate_movie(num_frames=60, frame_shape=(24, 24), num_channels=1, seed=3).movie
    ds = dataset_of(movie)
    path = tmp_path / "opca.npz"
    variances, opcs, signals = oPCA.dataset_opca(ds, num_pcs=4, path=path)
    assert opcs.shape == (1, 24, 24, 4) and signals.shape == (60, 4)
    again = oPCA.dataset_opca(ds, num_pcs=2, path=path)  # loaded from the file
    np.testing.assert_array_equal(again[1], opcs[..., :2])

"""Issue 22, segmentation: STICA with few components, ``components`` as a list, recordings too
short for STICA, PlaneCA1PC on a short recording made of trials, PlaneWiseSegmentation with one
strategy per plane, and oPCA by power iteration."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sima_fast as sima
import sima_fast.segment.stica as stica_module
from sima_fast._validate import ArgumentTypeError
from sima_fast.misc import simulate_movie
from sima_fast.ROI import ROI, ROIList
from sima_fast.segment import (
    STICA,
    MergeOverlapping,
    PlaneCA1PC,
    PlaneWiseSegmentation,
    SegmentationStrategy,
    SegmentationWarning,
    SmoothROIBoundaries,
    SparseROIsFromMasks,
    match_rois,
)
from sima_fast.segment.oPCA import offsetPCA, power_iteration_oPCA
from sima_fast.segment.stica import MIN_DIFFERENCES, distinct_blobs, significant_blobs

#: PlaneCA1PC's parameters in SIMA's example script ``workflow.py``.
WORKFLOW = dict(
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
    verbose=False,
)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))


def dataset_of(*movies):
    return sima.ImagingDataset([sima.Sequence.create("ndarray", m) for m in movies], None)


def tutorial(strategy: STICA) -> STICA:
    """The steps SIMA's tutorial appends to STICA."""
    strategy.append(SparseROIsFromMasks())
    strategy.append(SmoothROIBoundaries())
    strategy.append(MergeOverlapping(threshold=0.5))
    return strategy


@pytest.fixture(scope="module")
def crowded():
    """80 x 80 pixels, 300 frames, 12 active cells: four times as many cells as components."""
    return simulate_movie(
        num_frames=300, frame_shape=(80, 80), num_channels=1, cells_per_plane=12, seed=2
    )


# --------------------------------------------------------------------------
# Few components, many cells
# --------------------------------------------------------------------------


def test_three_components_find_most_of_twelve_cells(crowded):
    ds = dataset_of(crowded.movie)
    found = tutorial(STICA(components=3)).segment(ds)
    score = match_rois(found, crowded.masks)
    assert score["f1"] >= 0.8
    assert score["precision"] >= 0.9


def test_thresholding_whole_maps_would_keep_only_the_strongest_cells(crowded):
    # The maps STICA computes hold many cells each; cutting each whole map at half its
    # maximum (SIMA's way) finds far fewer cells than thresholding each spot on its own.
    ds = dataset_of(crowded.movie)
    maps = STICA(components=3, post_process=False).segment(ds)
    assert len(maps) == 3
    whole = SparseROIsFromMasks(min_size=50, static_threshold=0.5, smooth_size=2).apply(maps, ds)
    per_spot = STICA(components=3).segment(ds)
    assert len(per_spot) >= 2 * len(whole)


def spot(shape, centre, height, width=2.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return height * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * width**2))


def test_significant_blobs_keeps_weak_and_negative_spots():
    rng = np.random.default_rng(3)
    shape = (64, 64)
    z = rng.standard_normal(shape)
    z += spot(shape, (15, 15), 40.0) + spot(shape, (15, 45), 8.0) - spot(shape, (45, 30), 12.0)
    blobs = significant_blobs(z, component=7)
    peaks = sorted(tuple(np.unravel_index(np.argmax(b.full(shape)), shape)) for b in blobs)
    assert len(blobs) == 3
    for (r, c), want in zip(peaks, [(15, 15), (15, 45), (45, 30)]):
        assert abs(r - want[0]) <= 1 and abs(c - want[1]) <= 1
    for b in blobs:
        assert b.component == 7
        assert b.image.max() == pytest.approx(1.0)
        assert b.image.min() >= 0.0
        assert b.core.any() and not (b.core & (b.image == 0)).any()


def test_significant_blobs_of_noise_and_of_a_flat_map():
    rng = np.random.default_rng(11)
    assert significant_blobs(rng.standard_normal((64, 64))) == []
    assert significant_blobs(np.zeros((16, 16))) == []


def test_two_close_peaks_of_one_cell_are_one_spot():
    # A dip to only 80 % of the lower peak does not separate two spots.
    shape = (40, 40)
    z = np.random.default_rng(0).standard_normal(shape) * 0.2
    z += spot(shape, (20, 17), 30.0, 2.5) + spot(shape, (20, 23), 30.0, 2.5)
    assert len(significant_blobs(z)) == 1


def test_distinct_blobs_keeps_the_strongest_view_of_a_cell():
    shape = (48, 48)
    rng = np.random.default_rng(5)
    cell = spot(shape, (20, 20), 1.0)
    other = spot(shape, (20, 36), 1.0)
    strong = significant_blobs(rng.standard_normal(shape) + 40 * cell, component=0)
    weak = significant_blobs(rng.standard_normal(shape) + 10 * cell + 20 * other, component=1)
    kept = distinct_blobs(strong + weak)
    assert len(kept) == 2
    assert {b.component for b in kept} == {0, 1}
    assert kept[0].component == 0 and kept[0].score > kept[1].score


# --------------------------------------------------------------------------
# components as a list
# --------------------------------------------------------------------------


def test_components_list_of_the_first_n_is_components_n(crowded):
    ds = dataset_of(crowded.movie[:200])
    by_int = STICA(components=4).segment(ds)
    by_list = STICA(components=[3, 1, 0, 2]).segment(ds)
    assert len(by_int) == len(by_list) > 0
    for a, b in zip(by_int, by_list):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_components_list_uses_only_the_listed_components(crowded, monkeypatch, capsys):
    asked = []
    real = stica_module.plane_pca

    def spy(dataset, plane, channel, num_components, **kw):
        asked.append(num_components)
        return real(dataset, plane, channel, num_components, **kw)

    monkeypatch.setattr(stica_module, "plane_pca", spy)
    ds = dataset_of(crowded.movie[:200])
    strategy = STICA(components=[0, 5], verbose=True)
    strategy.segment(ds)
    assert asked == [6]
    assert "using 2" in capsys.readouterr().err
    assert "components=[0, 5]" in repr(strategy)
    # indices past the signal components are dropped, as SIMA drops those past the PCs
    STICA(components=[0, 2000], verbose=True).segment(ds)
    assert "using 1 of the 2 asked for" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad, error",
    [
        ([], ValueError),
        ([1, 1], ValueError),
        ([-1], ValueError),
        ([0.5], ArgumentTypeError),
        (["a"], ArgumentTypeError),
        (0, ValueError),
        ("5", ArgumentTypeError),
    ],
)
def test_components_is_checked(bad, error):
    with pytest.raises(error, match="components"):
        STICA(components=bad)


# --------------------------------------------------------------------------
# Recordings too short for STICA
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def busy():
    return simulate_movie(
        num_frames=40, frame_shape=(48, 48), num_channels=1, cells_per_plane=6, seed=9
    )


def test_twelve_frames_warn_instead_of_segmenting(busy):
    ds = dataset_of(busy.movie[:12])
    with pytest.warns(SegmentationWarning, match="too short for STICA") as caught:
        assert len(tutorial(STICA(components=5)).segment(ds)) == 0
    text = str(caught[0].message)
    assert "12 frames give 11 differences" in text
    assert f"at least {MIN_DIFFERENCES + 1} frames" in text


def test_too_short_counts_differences_within_sequences(busy):
    # Trials are separate sequences: differences never cross from one to the next.
    enough = dataset_of(*[busy.movie[10 * i : 10 * i + 11] for i in range(3)])  # 3 x 10
    short = dataset_of(*[busy.movie[10 * i : 10 * i + 10] for i in range(3)])  # 3 x 9
    with warnings.catch_warnings():
        warnings.simplefilter("error", SegmentationWarning)
        assert len(STICA(components=10).segment(enough)) > 0
    with pytest.warns(SegmentationWarning, match="30 frames give 27 differences"):
        STICA(components=10).segment(short)


# --------------------------------------------------------------------------
# PlaneCA1PC on ~150 frames recorded as 15 trials of 10 frames
# --------------------------------------------------------------------------


def trials(cells: int) -> tuple[sima.ImagingDataset, np.ndarray]:
    sim = simulate_movie(
        num_frames=150,
        frame_shape=(120, 120),
        num_channels=1,
        cells_per_plane=cells,
        spike_rate=0.2,  # about two transients per cell in the whole recording
        seed=5,
    )
    return dataset_of(*[sim.movie[10 * i : 10 * (i + 1)] for i in range(15)]), sim.masks


def test_ca1pc_with_workflow_parameters_finds_sparse_cells_in_short_trials():
    ds, masks = trials(20)
    found = PlaneCA1PC(**WORKFLOW).segment(ds)
    assert match_rois(found, masks)["f1"] >= 0.8


def test_ca1pc_with_workflow_parameters_on_noise_trials_warns():
    ds, _ = trials(0)
    with pytest.warns(SegmentationWarning, match="noise level"):
        assert len(PlaneCA1PC(**WORKFLOW).segment(ds)) == 0


# --------------------------------------------------------------------------
# PlaneWiseSegmentation with one strategy per plane
# --------------------------------------------------------------------------


class Above(SegmentationStrategy):
    """One ROI: the pixels of the time average above ``level``."""

    def __init__(self, level):
        super().__init__()
        self.level = level

    def _segment(self, dataset):
        return ROIList([ROI(mask=dataset.time_averages[..., 0] > self.level)])


def test_plane_wise_with_a_list_uses_one_strategy_per_plane():
    movie = np.zeros((3, 2, 6, 6, 1))
    movie[:, :, 1:5, 1:5] = 1.0
    movie[:, :, 2:4, 2:4] = 2.0
    strategy = PlaneWiseSegmentation([Above(0.5), Above(1.5)])
    rois = strategy.segment(dataset_of(movie))
    sizes = [np.count_nonzero(np.asarray(r), axis=(1, 2)).tolist() for r in rois]
    assert sizes == [[16, 0], [0, 4]]
    assert isinstance(strategy.strategy, list) and len(strategy.strategy) == 2
    only_second = strategy.segment(dataset_of(movie), planes=[1])
    assert [np.count_nonzero(np.asarray(r), axis=(1, 2)).tolist() for r in only_second] == [[0, 4]]


def test_plane_wise_list_is_checked():
    movie = np.ones((3, 2, 6, 6, 1))
    with pytest.raises(ValueError, match="one per plane"):
        PlaneWiseSegmentation([Above(0.5)] * 3).segment(dataset_of(movie))
    with pytest.raises(TypeError, match=r"plane_strategy\[1\]"):
        PlaneWiseSegmentation([Above(0.5), "STICA"])
    with pytest.raises(ValueError, match="empty"):
        PlaneWiseSegmentation([])


# --------------------------------------------------------------------------
# oPCA by power iteration
# --------------------------------------------------------------------------


def slow_data(rng, n_obs, n_dim, n_slow):
    walks = np.cumsum(rng.standard_normal((n_obs, n_slow)), axis=0)
    return walks @ rng.standard_normal((n_slow, n_dim)) + rng.standard_normal((n_obs, n_dim))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n_obs=st.integers(40, 120),
    n_dim=st.integers(3, 30),
    num_pcs=st.integers(1, 3),
)
def test_power_iteration_matches_the_exact_opcs(seed, n_obs, n_dim, num_pcs):
    data = slow_data(np.random.default_rng(seed), n_obs, n_dim, 3)
    exact_vars = offsetPCA(data, num_pcs + 1)[0]
    values = np.sort(np.abs(exact_vars))
    gap = np.min(np.diff(exact_vars[: num_pcs + 1])) if num_pcs < len(exact_vars) else 1.0
    if abs(gap) < 1e-3 * values[-1]:
        return  # nearly equal eigenvalues: the eigenvectors are not defined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        variances, opcs, signals = power_iteration_oPCA(data, num_pcs, tolerance=1e-9)
    assert variances.shape == (num_pcs,) and opcs.shape == (n_dim, num_pcs)
    assert signals.shape == (n_obs, num_pcs)
    np.testing.assert_allclose(variances, exact_vars[:num_pcs], rtol=1e-5, atol=1e-8 * values[-1])
    np.testing.assert_allclose(opcs.T @ opcs, np.eye(num_pcs), atol=1e-8)
    centred = data - data.mean(axis=0)
    np.testing.assert_allclose(signals, centred @ opcs, atol=1e-8 * math.sqrt(values[-1]) + 1e-8)


def test_power_iteration_defaults_and_limits():
    rng = np.random.default_rng(1)
    data = slow_data(rng, 200, 12, 2)
    exact_vars, exact, _ = offsetPCA(data, 2)
    variances, opcs, _ = power_iteration_oPCA(data, 2)  # SIMA's defaults
    assert np.abs(np.sum(opcs * exact, axis=0)).min() > 0.99
    np.testing.assert_allclose(variances, exact_vars, rtol=1e-3)
    with pytest.warns(RuntimeWarning, match="max_iter=1"):
        power_iteration_oPCA(data, 2, tolerance=1e-12, max_iter=1)
    # the observations one by one, as SIMA's data iterables give them
    again = power_iteration_oPCA(iter(list(data)), 2)
    np.testing.assert_allclose(again[0], variances)
    # more oPCs than dimensions: as many as there are dimensions
    assert power_iteration_oPCA(data[:, :3], 5)[1].shape == (3, 3)
    for kwargs, error in [
        (dict(num_pcs=0), ValueError),
        (dict(num_pcs=2, tolerance=0.0), ValueError),
        (dict(num_pcs=2, max_iter=0), ValueError),
        (dict(num_pcs=2.5), ArgumentTypeError),
    ]:
        with pytest.raises(error):
            power_iteration_oPCA(data, **kwargs)
    with pytest.raises(ValueError, match="2-D"):
        power_iteration_oPCA(np.zeros(5), 1)

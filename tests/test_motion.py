"""Motion correction: the base class contract and every strategy on simulated motion."""

from __future__ import annotations

import os

import numpy as np
import pytest

import sima_fast as sima
from sima_fast.motion.base import (
    MotionEstimationStrategy,
    check_max_displacement,
    check_reference,
    check_reference_shape,
    normalise_displacements,
    observation_counts,
    trim_slices,
)


class _Known(MotionEstimationStrategy):
    """Returns given displacements: tests the base class alone."""

    def __init__(self, displacements):
        self.displacements = displacements

    def _estimate(self, dataset):
        return [np.array(d) for d in self.displacements]


def _seq(T=4, Z=1, Y=8, X=9, C=1, seed=0):
    rng = np.random.default_rng(seed)
    return sima.Sequence.create("ndarray", rng.random((T, Z, Y, X, C)))


def test_lazy_import():
    assert sima.motion.MotionEstimationStrategy is MotionEstimationStrategy


def test_estimate_normalises_each_component_over_all_sequences():
    a, b = _seq(2), _seq(3)
    d = _Known([[[[-1, 4]], [[2, 3]]], [[[0, 5]], [[1, 6]], [[3, 3]]]]).estimate([a, b])
    assert d[0].dtype.kind == "i"
    assert d[0][:, 0].tolist() == [[0, 1], [3, 0]]
    assert d[1][:, 0].tolist() == [[1, 2], [2, 3], [4, 0]]


def test_normalise_keeps_masks_and_floats():
    m = np.ma.array([[[1.5, 2.0]], [[9.0, -1.0]]], mask=[[[0, 0]], [[1, 1]]])
    (out,) = normalise_displacements([m])
    assert out[0, 0].tolist() == [0.0, 0.0] and out.mask[1].all()


def test_estimate_checks_what_the_subclass_returns():
    with pytest.raises(RuntimeError, match="shape"):
        _Known([np.zeros((3, 1, 2), int)]).estimate([_seq(4)])
    with pytest.raises(RuntimeError, match="1 displacement arrays for 2"):
        _Known([np.zeros((4, 1, 2), int)]).estimate([_seq(4), _seq(4)])


def test_estimate_refuses_bad_datasets():
    with pytest.raises(TypeError, match="dataset"):
        _Known([]).estimate("movie.h5")
    with pytest.raises(ValueError, match="frame shape"):
        _Known([]).estimate([_seq(Y=8), _seq(Y=9)])
    with pytest.raises(ValueError, match="no sequence"):
        _Known([]).estimate([])


def test_observation_counts_per_plane_row_and_volume():
    # per plane
    c = observation_counts(np.array([[[0, 0]], [[1, 2]]]), (1, 2, 2), (1, 3, 4))
    assert c[0].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1]]
    # per row: row 1 moved right by one
    rows = np.array([[[[0, 0], [0, 1]]]])
    c = observation_counts(rows, (1, 2, 2), (1, 2, 3))
    assert c[0].tolist() == [[1, 1, 0], [0, 1, 1]]
    # volume (T, 3)
    c = observation_counts(np.array([[1, 0, 0]]), (2, 1, 1), (3, 1, 1))
    assert c[:, 0, 0].tolist() == [0, 1, 1]
    # sub-pixel: a shift of 0.5 observes only the pixels between moved centres
    c = observation_counts(np.array([[[0.5, 0.0]]]), (1, 3, 1), (1, 4, 1))
    assert c[0, :, 0].tolist() == [0, 1, 1, 0]


def test_trim_slices_criterion():
    d = np.array([[[0, 0]], [[0, 0]], [[0, 0]], [[2, 0]]])
    counts = observation_counts(d, (1, 4, 3), (1, 6, 3))
    planes, rows, cols = trim_slices(counts, 4, (1, 4, 3), None)
    assert (rows.start, rows.stop) == (2, 4)  # seen by every frame
    assert (planes, cols) == (slice(0, 1), slice(0, 3))
    rows = trim_slices(counts, 4, (1, 4, 3), 0.75)[1]
    assert (rows.start, rows.stop) == (0, 4)
    rows = trim_slices(counts, 4, (1, 4, 3), 0.0)[1]
    assert (rows.start, rows.stop) == (0, 6)
    far = observation_counts(np.array([[[0, 0]], [[5, 0]]]), (1, 4, 3), (1, 9, 3))
    with pytest.raises(ValueError, match="trim_criterion"):
        trim_slices(far, 2, (1, 4, 3), 1.0)


def test_check_helpers():
    assert check_max_displacement(None) is None
    assert check_max_displacement([1, 2]).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="max_displacement"):
        check_max_displacement(-1)
    with pytest.raises(TypeError, match="max_displacement"):
        check_max_displacement("5")
    with pytest.raises(TypeError, match="max_displacement"):
        check_max_displacement([1, 2, 3])
    ref = check_reference(np.ones((4, 5)))
    assert ref.shape == (1, 4, 5)
    check_reference_shape(ref, (1, 4, 5, 2))
    with pytest.raises(ValueError, match="reference has shape"):
        check_reference_shape(ref, (1, 5, 4, 1))
    with pytest.raises(TypeError, match="reference"):
        check_reference("image")
    with pytest.raises(ValueError, match="finite"):
        check_reference(np.full((3, 3), np.nan))


def test_correct_base_saves_loads_and_trims(tmp_path):
    seq = _seq(T=3, Y=6, X=5, C=2)
    disp = [[[[0, 0]], [[1, 0]], [[2, 1]]]]
    out = _Known(disp).correct([seq], tmp_path / "mc", channel_names=["g", "r"])
    assert out.frame_shape == (1, 4, 4, 2)
    assert out.channel_names == ["g", "r"]
    loaded = sima.ImagingDataset.load(tmp_path / "mc.sima")
    frames = np.asarray(loaded.sequences[0])
    raw = np.asarray(seq)
    # kept: rows 2..5 and columns 1..4 of the enlarged frame; frame 2 moved by (2, 1)
    np.testing.assert_array_equal(frames[2, 0], raw[2, 0, 0:4, 0:4])
    np.testing.assert_array_equal(frames[1, 0], raw[1, 0, 1:5, 1:5])
    np.testing.assert_array_equal(frames[0, 0], raw[0, 0, 2:6, 1:5])
    assert not np.isnan(frames).any()


def test_correct_refuses_before_writing(tmp_path):
    seq = _seq()
    (tmp_path / "exists.sima").mkdir()
    with pytest.raises(FileExistsError):
        _Known([np.zeros((4, 1, 2), int)]).correct([seq], tmp_path / "exists")
    with pytest.raises(ValueError, match="correction_channels"):
        _Known([np.zeros((4, 1, 2), int)]).correct([seq], tmp_path / "a", correction_channels=[3])
    with pytest.raises(ValueError, match="trim_criterion"):
        _Known([np.zeros((4, 1, 2), int)]).correct([seq], tmp_path / "a", trim_criterion=1.5)
    with pytest.raises(TypeError, match="info"):
        _Known([np.zeros((4, 1, 2), int)]).correct([seq], tmp_path / "a", info="x")
    with pytest.raises(ValueError, match="channel"):
        _Known([np.zeros((4, 1, 2), int)]).correct([seq], tmp_path / "a", channel_names=["a", "b"])
    with pytest.raises(ValueError, match="trim_criterion"):
        _Known([[[[0, 0]], [[9, 0]], [[0, 0]], [[0, 0]]]]).correct([seq], tmp_path / "a")
    assert sorted(os.listdir(tmp_path)) == ["exists.sima"]


def test_correct_uses_correction_channels_and_masks_rejected_frames(tmp_path):
    seq = _seq(T=3, C=2)

    class Seen(MotionEstimationStrategy):
        def _estimate(self, dataset):
            self.channels = dataset.frame_shape[3]
            d = np.ma.zeros((3, 1, 2), dtype=int)
            d[1] = np.ma.masked
            return [d]

    s = Seen()
    out = s.correct([seq], None, correction_channels=["1"])
    assert s.channels == 1
    frames = np.asarray(out.sequences[0])
    assert np.isnan(frames[1]).all() and not np.isnan(frames[[0, 2]]).any()

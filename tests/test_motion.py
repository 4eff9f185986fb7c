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
    frame_coverage,
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


# ---------------------------------------------------------------------------
# strategies on simulated motion
# ---------------------------------------------------------------------------


def _field(size, seed=0):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return (
        gaussian_filter(rng.standard_normal((size, size)), 2.0) * 10
        + gaussian_filter(rng.standard_normal((size, size)), 6.0) * 20
    )


def _movie(shifts, n=64, pad=24, noise=0.1, seed=0):
    """Frames seeing a field moved by ``shifts`` (T, 2): frame(p) = field(p - s)."""
    from scipy.ndimage import fourier_shift

    big = _field(n + 2 * pad, seed)
    spec = np.fft.fft2(big)
    rng = np.random.default_rng(seed + 1)
    frames = []
    for s in shifts:
        if np.all(np.asarray(s) == np.round(s)):
            moved = np.roll(big, tuple(int(v) for v in s), axis=(0, 1))
        else:
            moved = np.fft.ifft2(fourier_shift(spec, s)).real
        frames.append(moved[pad : pad + n, pad : pad + n])
    frames = np.array(frames)
    return frames + rng.standard_normal(frames.shape) * noise * frames.std()


def _expected(shifts):
    """Displacements that undo ``shifts``, normalised to a minimum of 0."""
    d = -np.asarray(shifts, dtype=float)
    return d - d.min(axis=0)


INT_SHIFTS = np.array([[0, 0], [3, -2], [-4, 5], [1, 1], [-2, -6], [5, 0], [0, 3], [2, -1]])


@pytest.mark.parametrize(
    "strategy",
    [
        lambda: sima.motion.PlaneTranslation2D(),
        lambda: sima.motion.PlaneTranslation2D(method="phase", max_displacement=8),
        lambda: sima.motion.DiscreteFourier2D(),
    ],
)
def test_integer_strategies_exact_on_integer_shifts(strategy):
    frames = _movie(INT_SHIFTS)
    seq = sima.Sequence.create("ndarray", frames[:, None, :, :, None])
    (d,) = strategy().estimate([seq])
    assert d.dtype.kind == "i" and d.shape == (len(INT_SHIFTS), 1, 2)
    np.testing.assert_array_equal(d[:, 0], _expected(INT_SHIFTS))


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
def test_subpixel_rigid_accuracy(dtype):
    rng = np.random.default_rng(3)
    shifts = rng.uniform(-20, 20, (40, 2))
    frames = _movie(shifts, n=96, pad=28, noise=0.1, seed=2)
    if dtype == "uint16":
        frames = np.round(frames - frames.min() + 10).astype(np.uint16)
    frames = frames.astype(dtype)
    seq = sima.Sequence.create("ndarray", frames[:, None, :, :, None])
    (d,) = sima.motion.RigidRegistration2D().estimate([seq])
    assert d.dtype.kind == "f"
    err = d[:, 0] - _expected(shifts)
    err -= err.mean(axis=0)  # the reference's own origin is arbitrary
    assert np.sqrt((err**2).mean()) <= 0.1


def test_dft_upsampled_is_subpixel():
    shifts = np.array([[0.0, 0.0], [1.5, -2.25], [-3.4, 0.6], [2.2, 2.8], [0.3, -1.1]])
    frames = _movie(shifts, n=64, noise=0.02)
    seq = sima.Sequence.create("ndarray", frames[:, None, :, :, None])
    (d,) = sima.motion.DiscreteFourier2D(upsample_factor=10).estimate([seq])
    err = d[:, 0] - _expected(shifts)
    assert np.abs(err - err.mean(axis=0)).max() < 0.25


def test_nan_rows_and_user_reference():
    frames = _movie(INT_SHIFTS)
    ref = _movie([[0, 0]], noise=0.0)[0]
    frames[2, 5:8] = np.nan
    seq = sima.Sequence.create("ndarray", frames[:, None, :, :, None])
    (d,) = sima.motion.PlaneTranslation2D(reference=ref).estimate([seq])
    np.testing.assert_array_equal(d[:, 0], _expected(INT_SHIFTS))
    with pytest.raises(ValueError, match="reference has shape"):
        sima.motion.PlaneTranslation2D(reference=ref[:-1]).estimate([seq])


def test_multiplane_multichannel_correct_from_one_channel(tmp_path):
    frames = _movie(INT_SHIFTS, seed=4)
    plane2 = _movie(INT_SHIFTS, seed=5)
    signal = np.stack([frames, plane2], axis=1)  # (T, 2, Y, X)
    rng = np.random.default_rng(9)
    noise = rng.random(signal.shape)  # a channel that carries no motion information
    data = np.stack([noise, signal], axis=-1)
    seq = sima.Sequence.create("ndarray", data)
    strategy = sima.motion.PlaneTranslation2D()
    out = strategy.correct(
        [seq], tmp_path / "mc", channel_names=["red", "green"], correction_channels=["green"]
    )
    loaded = sima.ImagingDataset.load(tmp_path / "mc")
    corrected = np.asarray(loaded.sequences[0])
    assert corrected.shape == out.sequences[0].shape
    # every frame now shows the same field in both planes and both channels moved alike
    for c in (0, 1):
        for z in (0, 1):
            spread = np.nanstd(corrected[:, z, :, :, c], axis=0)
            if c == 1:
                assert np.nanmax(spread) < 0.5 * np.nanstd(signal[:, z])
    (d,) = strategy.estimate([seq[:, :, :, :, [1]]])
    np.testing.assert_array_equal(d[:, 0], _expected(INT_SHIFTS))
    np.testing.assert_array_equal(d[:, 1], _expected(INT_SHIFTS))
    # the red channel was moved by the green channel's displacements
    t = 1
    dy, dx = d[t, 0]
    raw_red = data[t, 0, :, :, 0]
    rows = out.sequences[0]
    full = np.asarray(sima.motion.PlaneTranslation2D().corrected_sequence(seq, d, (2, 75, 75)))
    np.testing.assert_array_equal(full[t, 0, dy : dy + 64, dx : dx + 64, 0], raw_red)
    assert rows.shape[2] <= 64


def test_volume_translation():
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    vol = gaussian_filter(rng.standard_normal((10, 100, 100)), (1.0, 1.5, 1.5))
    shifts = np.array([[0, 0, 0], [1, 2, -3], [-1, -2, 1], [0, 4, 2], [1, -1, -1]])
    frames = np.stack([np.roll(vol, tuple(s), axis=(0, 1, 2))[3:7, 10:90, 10:90] for s in shifts])
    seq = sima.Sequence.create("ndarray", frames[..., None])
    (d,) = sima.motion.VolumeTranslation(max_displacement=[2, 8, 8]).estimate([seq])
    assert d.shape == (5, 3)
    np.testing.assert_array_equal(d, _expected(shifts))


def test_volume_translation_criterion_masks_bad_frames():
    frames = _movie(INT_SHIFTS)
    frames[4] = np.random.default_rng(0).standard_normal(frames[4].shape)
    seq = sima.Sequence.create("ndarray", frames[:, None, :, :, None])
    (d,) = sima.motion.VolumeTranslation(criterion=2.0).estimate([seq])
    assert np.ma.isMaskedArray(d) and np.ma.getmaskarray(d)[:, 0].tolist() == [
        t == 4 for t in range(8)
    ]
    out = sima.motion.VolumeTranslation(criterion=2.0).correct([seq], None)
    assert np.isnan(np.asarray(out.sequences[0])[4]).all()


def test_resonant_correction_offset():
    frames = _movie(INT_SHIFTS)
    seq = sima.Sequence.create("ndarray", frames[:, None, :, :, None])
    (d,) = sima.motion.ResonantCorrection(sima.motion.PlaneTranslation2D(), offset=2).estimate(
        [seq]
    )
    assert d.shape == (8, 1, 64, 2)
    assert (d[:, :, 1::2, 1] - d[:, :, 0::2, 1] == 2).all()
    assert (d[:, :, :, 0] % 2 == d[0, 0, 0, 0] % 2).all()  # half-height shifts doubled
    with pytest.raises(ValueError, match="even number of rows"):
        sima.motion.ResonantCorrection(sima.motion.PlaneTranslation2D()).estimate(
            [sima.Sequence.create("ndarray", frames[:, None, :63, :, None])]
        )
    with pytest.raises(TypeError, match="base_strategy"):
        sima.motion.ResonantCorrection("hmm")


def test_correct_saves_loads_and_extracts(tmp_path):
    from sima_fast.ROI import ROI, ROIList

    frames = _movie(INT_SHIFTS) + 100
    seq = sima.Sequence.create("ndarray", frames[:, None, :, :, None])
    ds = sima.motion.PlaneTranslation2D().correct([seq], tmp_path / "c.sima")
    loaded = sima.ImagingDataset.load(tmp_path / "c.sima")
    assert loaded.frame_shape == ds.frame_shape == (1, 64 - 9, 64 - 11, 1)
    mask = np.zeros(loaded.frame_shape[:3], bool)
    mask[0, 5:10, 5:10] = True
    signals = loaded.extract(ROIList([ROI(mask=mask, label="a")]), save_summary=False)
    raw = np.asarray(signals["raw"][0])
    assert raw.shape == (1, 8) and np.isfinite(raw).all()
    # the corrected frames agree where the motion was undone
    assert np.asarray(loaded.sequences[0]).std(axis=0).max() < 0.5 * frames.std()


def test_trim_criterion_keeps_more_with_lower_values():
    frames = _movie(INT_SHIFTS)
    seq = sima.Sequence.create("ndarray", frames[:, None, :, :, None])
    strategy = sima.motion.PlaneTranslation2D()
    strict = strategy.correct([seq], None).frame_shape
    loose = strategy.correct([seq], None, trim_criterion=0.0).frame_shape
    assert strict == (1, 55, 53, 1) and loose == (1, 64 + 9, 64 + 11, 1)


@pytest.mark.parametrize(
    ("make", "match", "error"),
    [
        (
            lambda: sima.motion.PlaneTranslation2D(max_displacement=-1),
            "max_displacement",
            ValueError,
        ),
        (lambda: sima.motion.PlaneTranslation2D(method="ECC"), "method", ValueError),
        (lambda: sima.motion.PlaneTranslation2D(n_processes=0), "n_processes", ValueError),
        (lambda: sima.motion.RigidRegistration2D(smooth_sigma="x"), "smooth_sigma", TypeError),
        (lambda: sima.motion.DiscreteFourier2D(upsample_factor=0), "upsample_factor", ValueError),
        (lambda: sima.motion.VolumeTranslation(criterion=-1), "criterion", ValueError),
        (lambda: sima.motion.RigidRegistration2D(reference="img"), "reference", TypeError),
    ],
)
def test_bad_parameters(make, match, error):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs_leave_nothing_on_disk(tmp_path):
    frames = _movie(INT_SHIFTS)
    seq = sima.Sequence.create("ndarray", frames[:, None, :, :, None])
    other = sima.Sequence.create("ndarray", frames[:, None, :40, :, None])
    with pytest.raises(ValueError, match="larger than the frame"):
        sima.motion.PlaneTranslation2D(max_displacement=64).correct([seq], tmp_path / "a")
    with pytest.raises(ValueError, match="frame shape"):
        sima.motion.PlaneTranslation2D().correct([seq, other], tmp_path / "b")
    with pytest.raises(ValueError, match="reference has shape"):
        sima.motion.RigidRegistration2D(reference=np.ones((3, 3))).correct([seq], tmp_path / "c")
    with pytest.raises(ValueError, match="correction_channels"):
        sima.motion.PlaneTranslation2D().correct([seq], tmp_path / "d", correction_channels=["x"])
    assert os.listdir(tmp_path) == []


def test_trim_keeps_a_plane_every_frame_sees_when_its_area_is_a_hair_under_the_mean():
    # Two planes moved by different sub-pixel shifts: plane 1 covers slightly
    # fewer whole pixels than the mean, but every frame sees it, so the
    # default criterion must keep it (a regression: it was dropped).
    rng = np.random.default_rng(5)
    T, raw = 50, (2, 20, 20)
    d = np.empty((T, 2, 2))
    d[:, 0] = rng.uniform(0, 3, (T, 2))
    d[:, 1] = np.round(rng.uniform(0, 3, (T, 2))) + np.where(rng.random((T, 2)) < 0.1, 0.5, 0)
    frame_shape = (2, 24, 24)
    counts = observation_counts(d, raw, frame_shape)
    coverage = frame_coverage([d], raw, frame_shape, T)
    planes, rows, cols = trim_slices(counts, T, raw, None, coverage)
    assert (planes.start, planes.stop) == (0, 2)
    assert rows.stop > rows.start and cols.stop > cols.start
    # a row missed by one frame is not rounding: it is trimmed at criterion 1
    d2 = np.zeros((T, 1, 2))
    d2[0] = (2, 0)  # frame 0 lands 2 rows lower: rows 0-1 are missed by it
    counts2 = observation_counts(d2, (1, 20, 20), (1, 22, 20))
    _, rows2, _ = trim_slices(
        counts2, T, (1, 20, 20), None, frame_coverage([d2], (1, 20, 20), (1, 22, 20), T)
    )
    assert rows2.start == 2

"""Signal extraction (docs/contract.md#extraction): ``ImagingDataset.extract`` and ``extract``."""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sima_fast
from reference import extract_reference
from sima_fast import ImagingDataset, Sequence
from sima_fast.extract import demixing_matrix, extract_rois
from sima_fast.ROI import ROI, ROIList

SIMA132_EXPECTED = os.path.join(
    os.path.dirname(__file__), "data", "sima132", "hdf5_and_ndarray_expected.npz"
)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}h\d{2}m\d{2}s$")
RTOL = 1e-5  # raw is float32
ATOL = 1e-6  # values are of order 1 (divided by the time average)


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


def make_dataset(arrays, savedir=None, channel_names=None) -> ImagingDataset:
    """A dataset of ``Sequence.create('ndarray', a)`` for each ``(T, Z, Y, X, C)`` array."""
    seqs = [Sequence.create("ndarray", a) for a in arrays]
    return ImagingDataset(seqs, savedir, channel_names=channel_names)


def nanmean_frames(frames_list) -> np.ndarray:
    """Time average over all frames of all sequences, NaN-aware (float64)."""
    stacked = np.concatenate([np.asarray(f, dtype=np.float64) for f in frames_list])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # never-observed pixels
        return np.nanmean(stacked, axis=0)


def reference_for(arrays, channel, masks, flags, remove_overlap):
    """Reference signals of the ``channel`` of ``arrays`` and its time average."""
    frames = [np.asarray(a[..., channel], dtype=np.float64) for a in arrays]
    mean = nanmean_frames(frames)
    return extract_reference(frames, masks, flags, remove_overlap, mean), mean


def overlap_reference(masks: np.ndarray, remove_overlap: bool = True):
    """Flat overlap indices and, per ROI, whether it is left without pixels."""
    flat = np.asarray(masks).reshape(len(masks), -1) != 0
    overlap = np.flatnonzero(flat.sum(axis=0) > 1)
    if remove_overlap:
        flat[:, overlap] = False
    return overlap, ~flat.any(axis=1)


def assert_signals_equal(raw, expected, rtol=RTOL, atol=ATOL) -> None:
    """Per sequence: float32, same shape, NaN at the same places, values within tolerance."""
    assert len(raw) == len(expected)
    for got, exp in zip(raw, expected, strict=True):
        assert got.dtype == np.float32
        assert got.shape == exp.shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(exp))
        np.testing.assert_allclose(got, exp, rtol=rtol, atol=atol, equal_nan=True)


def run_extract(ds, rois, empty, **kwargs):
    """``ds.extract(rois, ...)`` expecting ValueError, an empty-ROI warning, or nothing."""
    if empty.all():
        with pytest.raises(ValueError, match="no ROI has any pixel"):
            ds.extract(rois, **kwargs)
        return None
    if empty.any():
        with pytest.warns(UserWarning, match="empty ROI") as record:
            rec = ds.extract(rois, **kwargs)
        assert str(np.flatnonzero(empty).tolist()) in str(record[0].message)
        return rec
    return ds.extract(rois, **kwargs)


def rect_polygon(x0, y0, x1, y1, z=0) -> list[list[float]]:
    return [[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]]


# ----------------------------------------------------------------------------
# hypothesis: random datasets against the reference
# ----------------------------------------------------------------------------

ROI_KINDS = ("boolean", "weighted", "empty", "rectangle", "triangle", "plane0")


@dataclasses.dataclass
class Case:
    arrays: list
    channel: int
    rois: ROIList
    masks: np.ndarray  # (n_rois, Z, Y, X)
    flags: list
    remove_overlap: bool


def _fill_values(rng, shape, dtype):
    """Positive data with some spatial structure (so that μ is never 0)."""
    base = rng.uniform(0.5, 3.0, shape[1:])
    values = base * rng.uniform(20.0, 1000.0, shape)
    if dtype == "uint16":
        return np.clip(np.rint(values), 1, 65535).astype(np.uint16)
    return values.astype(dtype)


def _add_nans(rng, arrays, channel, patterns):
    """Set NaN patterns in the signal channel; every pixel stays observed at least once."""
    originals = [a[..., channel].copy() for a in arrays]
    n_total = sum(len(a) for a in arrays)
    blank = None
    for a in arrays:
        T, Z, Y, X, _ = a.shape
        if "scattered" in patterns:
            a[..., channel][rng.random((T, Z, Y, X)) < rng.uniform(0.05, 0.6)] = np.nan
        if "rows" in patterns:
            for t in range(T):
                if rng.random() < 0.5:
                    a[t, rng.integers(Z), rng.integers(Y), :, channel] = np.nan
                if rng.random() < 0.3:
                    a[t, rng.integers(Z), :, rng.integers(X), channel] = np.nan
    if "frame" in patterns and n_total > 1:
        k = int(rng.integers(len(arrays)))
        blank = (k, int(rng.integers(len(arrays[k]))))
        arrays[k][blank[1], ..., channel] = np.nan
    observed = sum(np.isfinite(a[..., channel]).sum(axis=0) for a in arrays)
    for z, y, x in zip(*np.nonzero(observed == 0)):
        choices = [(k, t) for k, a in enumerate(arrays) for t in range(len(a)) if (k, t) != blank]
        k, t = choices[int(rng.integers(len(choices)))]
        arrays[k][t, z, y, x, channel] = originals[k][t, z, y, x]


def _make_roi(rng, kind, shape, index):
    """One ROI of ``kind`` and its dense mask and boolean flag."""
    Z, Y, X = shape
    dense = np.zeros(shape)
    name = {"id": f"id{index}", "label": f"roi{index}", "tags": {kind, "t"}}
    if kind == "boolean":
        mask = rng.random(shape) < rng.uniform(0.05, 0.5)
        return ROI(mask=mask, **name), mask.astype(float), True
    if kind == "weighted":
        keep = rng.random(shape) < rng.uniform(0.05, 0.5)
        mask = np.where(keep, rng.uniform(0.05, 0.95, shape), 0.0)
        return ROI(mask=mask, **name), mask, False
    if kind == "empty":
        return ROI(mask=np.zeros(shape, dtype=bool), **name), dense, True
    if kind == "plane0":  # a single (Y, X) plane: plane 0 of a Z-plane frame
        mask = rng.random((Y, X)) < rng.uniform(0.1, 0.6)
        dense[0] = mask
        return ROI(mask=mask, **name), dense, True
    z = int(rng.integers(Z))
    if kind == "rectangle":  # integer corners: pixels x0..x1-1, y0..y1-1 (centres inside)
        x0, y0 = int(rng.integers(X)), int(rng.integers(Y))
        x1, y1 = int(rng.integers(x0 + 1, X + 1)), int(rng.integers(y0 + 1, Y + 1))
        dense[z, y0:y1, x0:x1] = 1.0
        return ROI(polygons=rect_polygon(x0, y0, x1, y1, z), **name), dense, True
    # triangle with sub-pixel vertices: the rasterised mask comes from the ROI itself
    pts = np.column_stack([rng.uniform(0, X, 3), rng.uniform(0, Y, 3), np.full(3, z)])
    roi = ROI(polygons=pts, **name)
    copy = roi.copy()
    copy.im_shape = shape
    return roi, np.asarray(copy).astype(float), True


@st.composite
def extraction_cases(draw, kinds=ROI_KINDS, nan_patterns=True, remove_overlap=None):
    Z = draw(st.integers(1, 2))
    Y = draw(st.integers(3, 12))
    X = draw(st.integers(3, 12))
    C = draw(st.integers(1, 2))
    channel = draw(st.integers(0, C - 1))
    dtype = draw(st.sampled_from(["uint16", "float32", "float64"]))
    lengths = draw(st.lists(st.integers(1, 15), min_size=1, max_size=3))
    roi_kinds = draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=5))
    if remove_overlap is None:
        remove_overlap = draw(st.booleans())
    patterns = set()
    if nan_patterns and dtype != "uint16":
        patterns = draw(st.sets(st.sampled_from(["scattered", "rows", "frame"])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays = [_fill_values(rng, (T, Z, Y, X, C), dtype) for T in lengths]
    _add_nans(rng, arrays, channel, patterns)
    made = [_make_roi(rng, kind, (Z, Y, X), i) for i, kind in enumerate(roi_kinds)]
    rois = ROIList([m[0] for m in made])
    masks = np.stack([m[1] for m in made])
    return Case(arrays, channel, rois, masks, [m[2] for m in made], remove_overlap)


def check_case(case: Case, n_processes: int = 1) -> None:
    ds = make_dataset(case.arrays)
    overlap, empty = overlap_reference(case.masks, case.remove_overlap)
    rec = run_extract(
        ds,
        case.rois,
        empty,
        signal_channel=case.channel,
        remove_overlap=case.remove_overlap,
        n_processes=n_processes,
    )
    if rec is None:
        return
    expected, mean = reference_for(
        case.arrays, case.channel, case.masks, case.flags, case.remove_overlap
    )
    assert_signals_equal(rec["raw"], expected)
    for i in np.flatnonzero(empty):
        assert all(np.isnan(r[i]).all() for r in rec["raw"])
    np.testing.assert_array_equal(rec["overlap"][1], overlap)
    np.testing.assert_array_equal(rec["overlap"][0], np.zeros(overlap.size))
    np.testing.assert_allclose(rec["mean_frame"], mean, rtol=1e-12)
    assert rec["mean_frame"].shape == case.arrays[0].shape[1:4]
    assert rec["signal_channel"] == case.channel
    assert "demixed_raw" not in rec
    assert [d["id"] for d in rec["rois"]] == [r.id for r in case.rois]
    assert all(tuple(d["im_shape"]) == mean.shape for d in rec["rois"])
    assert TIMESTAMP.match(rec["timestamp"])


@settings(max_examples=25, deadline=None)
@given(case=extraction_cases())
def test_extract_matches_reference(case):
    check_case(case)


@settings(max_examples=20, deadline=None)
@given(case=extraction_cases(kinds=("boolean", "weighted", "plane0"), remove_overlap=False))
def test_kept_overlap_uses_pseudo_inverse(case):
    """remove_overlap=False with overlapping masks and NaNs: the pinv path."""
    check_case(case, n_processes=2)


@settings(max_examples=15, deadline=None)
@given(case=extraction_cases(kinds=("rectangle", "triangle"), nan_patterns=False))
def test_polygon_rois_match_reference(case):
    check_case(case)


# ----------------------------------------------------------------------------
# small worked examples (and the reference itself)
# ----------------------------------------------------------------------------


def test_worked_example_boolean_and_weighted():
    """Hand-computed values: boolean k of n finite → 1/k; weighted rescaled by Σw²/Σ_f w²."""
    data = np.array(
        [
            [[2.0, 4.0, 6.0, 8.0, 10.0, 12.0]],
            [[np.nan, 4.0, 6.0, 8.0, np.nan, 12.0]],
            [[np.nan] * 6],
        ]
    )  # (T, Y, X) = (3, 1, 6); μ = [2, 4, 6, 8, 10, 12]
    arr = data[:, None, :, :, None]
    boolean = np.array([[[True, True, True, False, False, False]]])
    weights = np.array([[[0.0, 0.0, 0.0, 0.5, 0.25, 0.0]]])
    rois = ROIList([ROI(mask=boolean), ROI(mask=weights)])
    rec = make_dataset([arr]).extract(rois)
    # frame 0: all at rest → mean of ones = 1; 0.5*1 + 0.25*1 = 0.75
    # frame 1: boolean keeps pixels 1, 2 (1/2 each) → 1; weighted keeps pixel 3 only:
    #          0.5 * 1 * (0.25 + 0.0625) / 0.25 = 0.625
    expected = np.array([[1.0, 1.0, np.nan], [0.75, 0.625, np.nan]])
    assert_signals_equal(rec["raw"], [expected])
    ref = extract_reference(
        [data[:, None]], np.stack([boolean, weights]), [True, False], True, data[0][None]
    )
    np.testing.assert_allclose(ref[0], expected, rtol=1e-12)


def test_worked_example_overlap_removed_and_kept():
    """Two masks sharing pixel 1: removed from both, or separated through pinv(M)."""
    data = np.array([[1.0, 1.0, 1.0], [1.0, 3.0, 2.0], [np.nan, 3.0, 2.0]])  # (T, X)
    arr = np.concatenate([np.ones((1, 3)), data])[:, None, None, :, None]  # (T, 1, 1, 3, 1)
    mu = np.nanmean(arr[:, 0, 0, :, 0], axis=0)
    a = np.array([[[True, True, False]]])
    b = np.array([[[False, True, True]]])
    ds = make_dataset([arr])
    rec = ds.extract(ROIList([ROI(mask=a), ROI(mask=b)]))
    y = arr[:, 0, 0, :, 0] / mu
    np.testing.assert_array_equal(rec["overlap"][1], [1])
    removed = np.vstack([y[:, 0], y[:, 2]])  # each ROI keeps its own pixel only
    assert_signals_equal(rec["raw"], [removed])
    kept = ds.extract(ROIList([ROI(mask=a), ROI(mask=b)]), remove_overlap=False)
    M = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    expected = M @ y.T  # all pixels finite: the weights are M itself
    # last frame, pixel 0 missing: weights pinv(pinv(M)[1:]) over pixels 1, 2
    expected[:, -1] = np.linalg.pinv(np.linalg.pinv(M)[1:]) @ y[-1, 1:]
    assert_signals_equal(kept["raw"], [expected])
    np.testing.assert_allclose(
        extract_reference([arr[..., 0]], np.stack([a, b]), [True, True], False, mu[None, None])[0],
        expected,
        rtol=1e-12,
    )


def test_roi_without_finite_pixel_is_nan_only_in_that_frame():
    arr = np.full((4, 1, 3, 3, 1), 7.0, dtype=np.float32)
    arr[2, 0, 0, :2, 0] = np.nan
    mask = np.zeros((1, 3, 3), bool)
    mask[0, 0, :2] = True
    other = np.zeros((1, 3, 3), bool)
    other[0, 2, :] = True
    rec = make_dataset([arr]).extract(ROIList([ROI(mask=mask), ROI(mask=other)]))
    raw = rec["raw"][0]
    np.testing.assert_array_equal(np.isnan(raw), [[False, False, True, False], [False] * 4])
    np.testing.assert_allclose(raw[np.isfinite(raw)], 1.0, rtol=1e-6)


def test_empty_roi_gives_nan_row_with_warning():
    arr = np.random.default_rng(3).uniform(1, 2, (5, 1, 4, 4, 1))
    full = np.ones((1, 4, 4), bool)
    rois = ROIList([ROI(mask=np.zeros((1, 4, 4), bool)), ROI(mask=full)])
    with pytest.warns(UserWarning, match=r"1 empty ROI\(s\) \(indices \[0\]\)"):
        rec = make_dataset([arr]).extract(rois)
    assert np.isnan(rec["raw"][0][0]).all()
    assert np.isfinite(rec["raw"][0][1]).all()


def test_roi_emptied_by_overlap_removal_warns():
    arr = np.random.default_rng(4).uniform(1, 2, (5, 1, 4, 4, 1))
    big = np.ones((1, 4, 4), bool)
    small = np.zeros((1, 4, 4), bool)
    small[0, 1, 1] = True
    rois = ROIList([ROI(mask=small), ROI(mask=big)])
    with pytest.warns(UserWarning, match=r"indices \[0\]"):
        rec = make_dataset([arr]).extract(rois)
    assert np.isnan(rec["raw"][0][0]).all()
    assert np.isfinite(rec["raw"][0][1]).all()
    rec = make_dataset([arr]).extract(rois, remove_overlap=False)  # both kept, no warning
    assert np.isfinite(rec["raw"][0]).all()


@pytest.mark.parametrize("emptied_by_overlap", [False, True])
def test_last_roi_empty(emptied_by_overlap):
    """An empty last ROI (also when emptied by overlap removal) is an all-NaN row."""
    arr = np.random.default_rng(4).uniform(1, 2, (5, 1, 4, 4, 1))
    big = np.ones((1, 4, 4), bool)
    small = np.zeros((1, 4, 4), bool)
    if emptied_by_overlap:
        small[0, 1, 1] = True
    rois = ROIList([ROI(mask=big), ROI(mask=small)])
    with pytest.warns(UserWarning, match=r"indices \[1\]"):
        rec = make_dataset([arr]).extract(rois)
    assert np.isnan(rec["raw"][0][1]).all()
    assert np.isfinite(rec["raw"][0][0]).all()


@pytest.mark.parametrize(
    ("dtype", "remove_overlap"),
    [("float64", True), ("uint16", True), ("uint16", False), ("float64", False)],
)
def test_never_observed_pixel_is_left_out_and_reweighted(dtype, remove_overlap):
    """A pixel NaN in every frame (μ NaN), or always 0 (μ = 0), is never observed.

    As docs/contract.md#missing-pixels says, it is left out and the remaining
    weights rescaled (a boolean ROI with k of n pixels observed weighs each 1/k).
    """
    arr = np.full((4, 1, 2, 3, 1), 5.0)
    arr[:, 0, 1, 2, 0] = 9.0 + np.arange(4)  # varying pixel
    if dtype == "uint16":
        arr[:, 0, 0, 0, 0] = 0
        arr = arr.astype(np.uint16)
    else:
        arr[:, 0, 0, 0, 0] = np.nan
    a = np.zeros((1, 2, 3), bool)
    a[0, 0, :2] = True  # pixel (0, 0) never observed + pixel (0, 1)
    a[0, 1, 2] = True
    b = np.zeros((1, 2, 3), bool)
    b[0, 1, 1:] = True  # shares (1, 2) with a
    rois = ROIList([ROI(mask=a), ROI(mask=b)])
    rec = make_dataset([arr]).extract(rois, remove_overlap=remove_overlap)
    expected, _ = reference_for([arr], 0, np.stack([a, b]), [True, True], remove_overlap)
    assert_signals_equal(rec["raw"], expected)


# ----------------------------------------------------------------------------
# the SIMA 1.3.2 fixture
# ----------------------------------------------------------------------------


def test_sima132_manual_rois_reproduce_sima(sima132):
    expected = np.load(SIMA132_EXPECTED)
    ds = ImagingDataset.load(os.path.join(sima132, "hdf5_and_ndarray.sima"))
    rois = ds.ROIs["manual"]
    rec = extract_rois(ds, rois, 0, True, 1, None)
    for k in range(2):
        np.testing.assert_allclose(rec["raw"][k], expected[f"raw_seq{k}"], rtol=0, atol=1e-6)
    assert rec["overlap"][1].size == 0
    threaded = extract_rois(ds, rois, 0, True, 2, None)  # sequence 0 reads an HDF5 file
    for a, b in zip(rec["raw"], threaded["raw"], strict=True):
        assert a.tobytes() == b.tobytes()
    # the legacy directory is never written: extract() refuses, save() converts
    with pytest.raises(PermissionError, match=r"SIMA 1\.x"):
        ds.extract(rois)
    new = os.path.join(sima132, "converted.sima")
    ds.save(new)
    rec = ds.extract(ds.ROIs["manual"], label="again", save_summary=False)
    for k in range(2):
        np.testing.assert_allclose(rec["raw"][k], expected[f"raw_seq{k}"], rtol=0, atol=1e-6)
    stored = ImagingDataset.load(new).signals(0)
    assert {"manual_signals", "again"} <= set(stored)
    for k in range(2):
        np.testing.assert_array_equal(stored["again"]["raw"][k], rec["raw"][k])


def test_sima132_masks_match_reference(sima132):
    """The reference with SIMA's rasterised masks agrees with SIMA's own signals."""
    expected = np.load(SIMA132_EXPECTED)
    ds = ImagingDataset.load(os.path.join(sima132, "hdf5_and_ndarray.sima"))
    masks = np.stack([expected[f"mask_roi{i}"] for i in range(3)])
    frames = [np.asarray(seq, dtype=np.float64)[..., 0] for seq in ds.sequences]
    ref = extract_reference(frames, masks, [True] * 3, True, ds.time_averages[..., 0])
    for k in range(2):
        np.testing.assert_allclose(ref[k], expected[f"raw_seq{k}"], rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------
# threads, arguments and errors
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("remove_overlap", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_n_processes_results_are_bitwise_identical(dtype, remove_overlap):
    import numba

    rng = np.random.default_rng(11)
    arrays = [_fill_values(rng, (T, 2, 24, 20, 1), dtype) for T in (37, 64, 5)]
    if dtype == "float32":
        _add_nans(rng, arrays, 0, {"scattered", "rows", "frame"})
    rois = ROIList([ROI(mask=rng.random((2, 24, 20)) < 0.2) for _ in range(12)])
    ds = make_dataset(arrays)
    threads = numba.get_num_threads()
    results = [
        ds.extract(rois, remove_overlap=remove_overlap, n_processes=n)["raw"] for n in (1, 2, 7)
    ]
    assert numba.get_num_threads() == threads
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert a.tobytes() == b.tobytes()


def _small_dataset(savedir=None, channel_names=None):
    arr = np.random.default_rng(5).uniform(1, 2, (6, 1, 5, 6, 2)).astype(np.float32)
    return make_dataset([arr], savedir, channel_names), arr


def _block(y0, y1, x0, x1, shape=(1, 5, 6)):
    m = np.zeros(shape, bool)
    m[:, y0:y1, x0:x1] = True
    return m


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
def test_bad_n_processes(bad):
    ds, _ = _small_dataset()
    with pytest.raises(ValueError, match="n_processes"):
        ds.extract(ROIList([ROI(mask=_block(0, 2, 0, 2))]), n_processes=bad)


def test_channels_by_name_and_unknown_channel():
    ds, arr = _small_dataset(channel_names=["green", "red"])
    rois = ROIList([ROI(mask=_block(0, 2, 0, 3))])
    rec = ds.extract(rois, signal_channel="red")
    assert rec["signal_channel"] == 1
    expected, _ = reference_for([arr], 1, np.stack([_block(0, 2, 0, 3)]), [True], True)
    assert_signals_equal(rec["raw"], expected)
    for kwargs in ({"signal_channel": "blue"}, {"signal_channel": 2}, {"demix_channel": "x"}):
        with pytest.raises(ValueError, match="channel"):
            ds.extract(rois, **kwargs)
    with pytest.raises(ValueError, match="demix_channel must differ"):
        ds.extract(rois, signal_channel="green", demix_channel=0)


def test_roi_geometry_errors():
    ds, _ = _small_dataset()
    good = ROI(mask=_block(0, 2, 0, 2))
    # masks drawn on another frame size, with nothing outside this one: padded or
    # cropped to the frames, and every ROI takes the frames' im_shape (as in SIMA)
    resized = [
        ROI(mask=_block(0, 2, 0, 2, (1, 5, 7))),
        ROI(mask=_block(0, 2, 0, 2), im_shape=(1, 5, 7)),
        ROI(mask=_block(0, 2, 0, 2), im_shape=(2, 5, 6)),
    ]
    for roi in resized:
        rec = ds.extract(ROIList([roi]))
        assert np.isfinite(rec["raw"][0]).all() and roi.im_shape == (1, 5, 6)
    bad_rois = [
        (ROI(mask=_block(0, 2, 5, 7, (1, 5, 7))), "does not fit"),
        (ROI(polygons=rect_polygon(4, 1, 7, 3)), "outside the frame"),
        (ROI(polygons=rect_polygon(-1, 0, 2, 2)), "outside the frame"),
        (ROI(polygons=rect_polygon(0, 0, 2, 2, z=1)), "outside the frame"),
    ]
    for roi, match in bad_rois:
        with pytest.raises(ValueError, match=match):
            ds.extract(ROIList([good, roi]))
    # a polygon touching the far edges is inside
    rec = ds.extract(ROIList([ROI(polygons=rect_polygon(0, 0, 6, 5))]))
    assert np.isfinite(rec["raw"][0]).all()


def test_no_usable_roi():
    ds, _ = _small_dataset()
    with pytest.raises(ValueError, match="no ROI has any pixel"):
        ds.extract(ROIList([ROI(mask=np.zeros((1, 5, 6), bool))] * 2))
    same = ROI(mask=_block(0, 2, 0, 2))
    with pytest.raises(ValueError, match="no ROI has any pixel"):
        ds.extract(ROIList([same, same.copy()]))  # everything overlaps
    with pytest.raises(ValueError, match="empty"):
        ds.extract(ROIList([]))
    with pytest.raises(TypeError, match=r"not a sima_fast\.ROI\.ROI"):
        ds.extract([same, np.ones((1, 5, 6))])


def test_rois_none_uses_most_recent_set():
    ds, _ = _small_dataset()
    with pytest.raises(KeyError):
        ds.extract()
    newer = ROIList([ROI(mask=_block(0, 2, 0, 2))], timestamp="2021-05-01-10h00m00s")
    older = ROIList([ROI(mask=_block(0, 2, 0, 2)), ROI(mask=_block(3, 5, 3, 6))])
    older.timestamp = "2020-05-01-10h00m00s"
    ds.add_ROIs(newer, "newer")
    ds.add_ROIs(older, "older")  # added last, but older by its timestamp
    assert len(ds.extract()["raw"][0]) == 1
    rows = [ROI(mask=_block(y, y + 1, 0, 6)) for y in range(3)]
    latest = ROIList(rows, timestamp="2022-01-01-00h00m00s")
    ds.add_ROIs(latest, "latest")
    assert len(ds.extract()["raw"][0]) == 3


def test_rois_none_on_saved_dataset(tmp_path):
    ds, _ = _small_dataset(str(tmp_path / "d"))
    with pytest.raises(KeyError):
        ds.extract()
    ds.add_ROIs(ROIList([ROI(mask=_block(0, 2, 0, 2))], timestamp="2020-01-01-00h00m00s"), "b")
    two = [ROI(mask=_block(0, 2, 0, 2)), ROI(mask=_block(3, 5, 0, 2))]
    ds.add_ROIs(ROIList(two, timestamp="2021-01-01-00h00m00s"), "a")
    rec = ImagingDataset.load(ds.savedir).extract(save_summary=False)
    assert len(rec["raw"][0]) == 2


def test_rois_none_equal_timestamps_uses_last_added(tmp_path):
    """Sets made in the same second (default timestamps): the last added is the most recent."""
    ds, _ = _small_dataset(str(tmp_path / "d"))
    stamp = "2020-01-01-00h00m00s"
    ds.add_ROIs(ROIList([ROI(mask=_block(0, 2, 0, 2))], timestamp=stamp), "z")
    two = [ROI(mask=_block(0, 2, 0, 2)), ROI(mask=_block(3, 5, 0, 2))]
    ds.add_ROIs(ROIList(two, timestamp=stamp), "a")
    assert len(ds.extract(save_summary=False)["raw"][0]) == 2


def test_in_memory_dataset_does_not_store():
    ds, _ = _small_dataset()
    ds.extract(ROIList([ROI(mask=_block(0, 2, 0, 2))]), label="x")
    assert ds.signals() == {}


# ----------------------------------------------------------------------------
# storage, export and the summary
# ----------------------------------------------------------------------------


def test_storage_export_and_summary(tmp_path):
    rng = np.random.default_rng(8)
    arrays = [rng.uniform(10, 20, (T, 2, 6, 7, 1)).astype(np.float32) for T in (4, 3)]
    arrays[1][1, 0, 2, :, 0] = np.nan
    ds = make_dataset(arrays, str(tmp_path / "d"))
    savedir = ds.savedir
    a = np.zeros((2, 6, 7), bool)
    a[0, 1:4, 1:4] = True
    b = np.zeros((2, 6, 7), bool)
    b[1, 2:5, 2:6] = True
    rois = ROIList(
        [
            ROI(mask=a, id="r0", label="cell", tags={"y", "x"}),
            ROI(polygons=rect_polygon(2, 2, 6, 5, z=1), id="r1", label="other"),
        ]
    )
    rec = ds.extract(rois, label="x")
    pdf = os.path.join(savedir, f"extractSummary_{rec['timestamp']}.pdf")
    with open(pdf, "rb") as fh:
        assert fh.read(4) == b"%PDF"
    expected, _ = reference_for(arrays, 0, np.stack([a, b]), [True, True], True)
    assert_signals_equal(rec["raw"], expected)

    loaded = ImagingDataset.load(savedir)
    stored = loaded.signals()["x"]
    assert len(stored["raw"]) == 2
    for got, ret in zip(stored["raw"], rec["raw"], strict=True):
        np.testing.assert_array_equal(got, ret)
    np.testing.assert_array_equal(stored["mean_frame"], rec["mean_frame"])
    assert stored["signal_channel"] == 0
    assert stored["timestamp"] == rec["timestamp"]
    assert [r["id"] for r in stored["rois"]] == ["r0", "r1"]
    assert loaded.signals("0").keys() == {"x"}

    # export: three header rows, then one row per frame
    out = tmp_path / "signals.csv"
    loaded.export_signals(out)
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0] == ["sequence", "frame", "r0", "r1"]
    assert rows[1] == ["", "label", "cell", "other"]
    assert rows[2] == ["", "tags", "x,y", ""]
    assert len(rows) == 3 + 4 + 3
    frames = [(k, t) for k, arr in enumerate(arrays) for t in range(len(arr))]
    assert [(int(r[0]), int(r[1])) for r in rows[3:]] == frames
    values = np.array([[float(v) for v in r[2:]] for r in rows[3:]])
    np.testing.assert_array_equal(values, np.hstack(rec["raw"]).T.astype(np.float64))

    # a failed extraction leaves the stored signals (and the directory) untouched
    before = sorted(os.listdir(savedir))
    with pytest.raises(ValueError, match="outside the frame"):
        loaded.extract(ROIList([ROI(polygons=rect_polygon(0, 0, 9, 2))]), label="x")
    with pytest.raises(ValueError, match="n_processes"):
        loaded.extract(rois, label="x", n_processes=0)
    assert sorted(os.listdir(savedir)) == before
    again = ImagingDataset.load(savedir).signals()["x"]
    for got, ret in zip(again["raw"], rec["raw"], strict=True):
        np.testing.assert_array_equal(got, ret)

    # a second extraction without a label or summary is stored under its timestamp
    rec2 = loaded.extract(rois, remove_overlap=False, save_summary=False)
    assert set(ImagingDataset.load(savedir).signals()) == {"x", rec2["timestamp"]}
    assert sorted(os.listdir(savedir)) == before  # no new PDF
    # replacing a label
    rec3 = loaded.extract(ROIList(rois[:1]), label="x", save_summary=False)
    replaced = ImagingDataset.load(savedir).signals()["x"]
    assert replaced["raw"][0].shape == rec3["raw"][0].shape == (1, 4)


def test_read_only_dataset_refuses_to_extract(tmp_path):
    ds, _ = _small_dataset(str(tmp_path / "d"))
    ro = ImagingDataset.load(ds.savedir, read_only=True)
    with pytest.raises(PermissionError):
        ro.extract(ROIList([ROI(mask=_block(0, 2, 0, 2))]))
    assert ro.signals() == {}


# ----------------------------------------------------------------------------
# demixing
# ----------------------------------------------------------------------------


def _bleed_through_movie(seed=1, size=48, T=60, block=8, bleed=0.3):
    """Channel 0 = true signal + bleed · channel 1; independent textures per channel."""
    rng = np.random.default_rng(seed)
    green = rng.exponential(100.0, (size, size)) + 5.0
    red = rng.exponential(100.0, (size, size)) + 5.0
    n_blocks = (size // block) ** 2
    blocks = (np.arange(size)[:, None] // block) * (size // block) + np.arange(size) // block
    time = np.linspace(0, 6, T)[None]

    def activity():
        freq = rng.uniform(0.5, 3.0, (n_blocks, 1))
        return 1 + 0.5 * np.sin(time * freq + rng.uniform(0, 6, (n_blocks, 1)))

    act_green, act_red = activity(), activity()
    true = green[None] * act_green[blocks].transpose(2, 0, 1)
    structural = red[None] * act_red[blocks].transpose(2, 0, 1)
    arr = np.stack([true + bleed * structural, structural], axis=-1)[:, None]
    masks = np.stack([(blocks == i)[None] for i in range(n_blocks)])
    return arr.astype(np.float32), true[:, None], masks, act_green


def test_demixing_removes_bleed_through():
    arr, true, masks, activity = _bleed_through_movie()
    ds = make_dataset([arr])
    rois = ROIList([ROI(mask=m) for m in masks])
    rec = ds.extract(rois, demix_channel=1)
    assert rec["demix_channel"] == 1
    raw, demixed = rec["raw"][0], rec["demixed_raw"][0]
    assert demixed.dtype == np.float32
    assert demixed.shape == raw.shape
    W = demixing_matrix(ds.time_averages[..., 0], ds.time_averages[..., 1])
    np.testing.assert_array_equal(np.diag(W), [1.0, 1.0])
    assert abs(W[0, 1] + 0.3) < 0.1
    assert abs(W[1, 0]) < 0.1
    # demixed_raw is F_s + W[0, 1] F_d with the weights (and μ) of the signal channel
    mu = ds.time_averages[..., 0]
    flags = [True] * len(rois)
    demixed_frames = arr[..., 0].astype(np.float64) + W[0, 1] * arr[..., 1]
    expected = extract_reference([demixed_frames], masks, flags, True, mu)
    assert_signals_equal(rec["demixed_raw"], expected, rtol=1e-4)
    assert_signals_equal(rec["raw"], extract_reference([arr[..., 0]], masks, flags, True, mu))
    # closer to the true signal extracted the same way
    truth = extract_reference([true], masks, flags, True, mu)[0]
    err_raw = np.abs(raw - truth).mean()
    err_demixed = np.abs(demixed - truth).mean()
    assert err_demixed < 0.25 * err_raw

    def corr(x):
        return np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(x, activity)])

    assert corr(demixed) > corr(raw) + 0.02
    assert corr(demixed) > 0.99


def test_demixing_matrix_properties():
    rng = np.random.default_rng(2)
    s = rng.exponential(1.0, 4000)
    r = rng.exponential(1.0, 4000)
    W = demixing_matrix(s + 0.3 * r, r)
    np.testing.assert_array_equal(np.diag(W), [1.0, 1.0])
    np.testing.assert_allclose(W, [[1.0, -0.3], [0.0, 1.0]], atol=0.05)
    np.testing.assert_array_equal(W, demixing_matrix(s + 0.3 * r, r))  # deterministic
    Ws = demixing_matrix(r, s + 0.3 * r)  # channels swapped: still diagonal-dominant
    np.testing.assert_array_equal(np.diag(Ws), [1.0, 1.0])
    np.testing.assert_allclose(Ws, [[1.0, 0.0], [-0.3, 1.0]], atol=0.05)
    with pytest.raises(ValueError, match="at least 3 pixels"):
        demixing_matrix(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0, np.nan]))


# ----------------------------------------------------------------------------
# ImageJ ROIs on the example dataset
# ----------------------------------------------------------------------------


def test_example_imagej_rois_track_true_calcium():
    from sima_fast.misc import example_data, example_ground_truth, example_imagej_rois

    ds = ImagingDataset.load(example_data(), read_only=True)
    rois = ROIList.load(example_imagej_rois(), fmt="ImageJ")
    truth = example_ground_truth()
    assert [r.label for r in rois] == truth.cell_names
    rec = sima_fast.extract.extract_rois(ds, rois, 0, True, 2, None)
    correlations = []
    for raw, calcium in zip(rec["raw"], truth.calcium, strict=True):
        assert raw.shape == calcium.shape
        assert np.isfinite(raw).all()
        correlations += [np.corrcoef(a, b)[0, 1] for a, b in zip(raw, calcium)]
    # measured: mean 0.990 (0.988 / 0.992 per sequence), minimum 0.934
    assert np.mean(correlations) > 0.95
    assert np.min(correlations) > 0.85


def test_extract_range_reports_every_chunk_and_progress_changes_nothing():
    from sima_fast.extract import extract_range, extraction_setup

    rng = np.random.default_rng(3)
    movie = rng.uniform(1, 2, size=(37, 1, 6, 7, 1)).astype(np.float32)
    seq = Sequence.create("ndarray", movie)
    mask = np.zeros((1, 6, 7), dtype=bool)
    mask[0, 1:4, 2:5] = True
    rois = [ROI(mask=mask, label="a")]
    weights, demix = extraction_setup(rois, (1, 6, 7), movie.mean(axis=0), 0, True, None)
    seen = []
    raw, _ = extract_range(seq, 3, 37, weights, 0, demix, 1, seen.append)
    assert sum(seen) == 34 and all(n > 0 for n in seen)
    quiet, _ = extract_range(seq, 3, 37, weights, 0, demix, 1)
    np.testing.assert_array_equal(raw, quiet)
    dataset = ImagingDataset([seq], None)
    a = dataset.extract(rois, save_summary=False, progress=True)["raw"][0]
    b = dataset.extract(rois, save_summary=False)["raw"][0]
    np.testing.assert_array_equal(a, b)

"""ROIs drawn on another frame size: zero-padded or cropped to the frames, as SIMA does.

A mask smaller than the frames (e.g. drawn before motion correction enlarged
them) is padded with zeros; a larger one is cropped when what is cut away is
empty. Pixels that would be cut away are refused with a message naming the
ROI. Every ROI takes the frames' ``(Z, Y, X)`` as ``im_shape``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from sima_fast import ImagingDataset, Sequence
from sima_fast.online import OnlineExtractor
from sima_fast.ROI import ROI, ROIList
from sima_fast.segment import MergeOverlapping

FRAMES = (2, 6, 8)  # (Z, Y, X)


def _dataset(savedir=None, seed=11):
    rng = np.random.default_rng(seed)
    data = rng.uniform(10.0, 20.0, (7, *FRAMES, 1)).astype(np.float32)
    return ImagingDataset([Sequence.create("ndarray", data)], savedir), data


def _padded(mask, shape=FRAMES):
    """The mask placed top-left in zeros of ``shape`` (the expected padding)."""
    out = np.zeros(shape, dtype=mask.dtype)
    m = mask if mask.ndim == 3 else mask[None]
    out[: m.shape[0], : m.shape[1], : m.shape[2]] = m[: shape[0], : shape[1], : shape[2]]
    return out


def _expected_trace(ds, full_mask):
    """The trace of the same ROI given at the frames' shape."""
    return ds.extract(ROIList([ROI(mask=full_mask)]))["raw"][0][0]


@pytest.mark.parametrize(
    "mask",
    [
        np.pad(np.ones((2, 3), bool), ((1, 1), (2, 1))),  # (4, 6): one plane, smaller
        np.stack([np.zeros((4, 6), bool), np.pad(np.ones((2, 4), bool), 1)]),  # plane 1
        np.pad(np.full((3, 2), 0.25), ((0, 1), (1, 3))),  # weighted (4, 6)
    ],
    ids=["bool-2d", "bool-plane1", "weighted"],
)
def test_smaller_mask_is_zero_padded(mask):
    ds, _ = _dataset()
    roi = ROI(mask=mask)
    rec = ds.extract(ROIList([roi]))
    assert roi.im_shape == FRAMES
    assert np.asarray(roi).shape == FRAMES
    full = _padded(mask)
    np.testing.assert_array_equal(np.asarray(roi) != 0, full != 0)
    np.testing.assert_allclose(rec["raw"][0][0], _expected_trace(ds, full), rtol=1e-6)


def test_larger_mask_with_empty_margins_is_cropped():
    ds, _ = _dataset()
    big = np.zeros((3, 9, 12), bool)  # one more plane, more rows and columns
    big[1, 2:5, 3:7] = True
    roi = ROI(mask=big)
    rec = ds.extract(ROIList([roi]))
    assert roi.im_shape == FRAMES and roi.size == 12
    np.testing.assert_allclose(rec["raw"][0][0], _expected_trace(ds, _padded(big)), rtol=1e-6)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ((0, 6, 0), r"mask plane 0 of shape \(9, 12\) does not fit .* row 6, column 1"),
        ((0, 0, 8), r"mask plane 0 of shape \(9, 12\) does not fit .* row 1, column 8"),
        ((2, 0, 0), r"mask plane 2 of shape \(9, 12\) does not fit"),
    ],
)
def test_pixels_outside_the_frame_are_refused(where, message):
    ds, _ = _dataset()
    big = np.zeros((3, 9, 12), bool)
    big[0, 1, 1] = True
    big[where] = True
    for call in (
        lambda r: ds.extract(ROIList([r])),
        lambda r: ds.add_ROIs(ROIList([r]), "x"),
        lambda r: OnlineExtractor([r], (*FRAMES, 1), warmup=False),
    ):
        with pytest.raises(ValueError, match=r"\(label 'out'\): " + message):
            call(ROI(mask=big, label="out"))
    assert "x" not in ds.ROIs


def test_explicit_im_shape_of_another_size_is_replaced():
    ds, _ = _dataset()
    small = np.zeros((4, 6), bool)
    small[1:3, 2:5] = True
    by_mask = ROI(mask=small, im_shape=(4, 6))
    by_poly = ROI(polygons=[[2, 1], [5, 1], [5, 3], [2, 3]], im_shape=(1, 4, 6))
    rec = ds.extract(ROIList([by_mask, by_poly]), remove_overlap=False)
    assert by_mask.im_shape == by_poly.im_shape == FRAMES
    want = _expected_trace(ds, _padded(small))
    np.testing.assert_allclose(rec["raw"][0][0], want, rtol=1e-6)
    np.testing.assert_allclose(rec["raw"][0][1], want, rtol=1e-6)
    assert rec["raw"][0].dtype == want.dtype


def test_add_rois_keeps_padded_rois_and_reextracts(tmp_path):
    ds, _ = _dataset(savedir=str(tmp_path / "d.sima"))
    small = np.zeros((1, 3, 5), bool)
    small[0, 1:3, 1:4] = True
    ds.add_ROIs(ROIList([ROI(mask=small, label="early", im_shape=(1, 3, 5))]), "drawn")
    again = ImagingDataset.load(str(tmp_path / "d.sima"))
    (roi,) = again.ROIs["drawn"]
    assert roi.im_shape == FRAMES and roi.size == 6
    rec = again.extract(again.ROIs["drawn"], save_summary=False)
    want = _expected_trace(_dataset()[0], _padded(small))
    np.testing.assert_allclose(rec["raw"][0][0], want, rtol=1e-6)


def test_online_extractor_pads_like_extract():
    ds, data = _dataset()
    small = np.zeros((1, 4, 6), bool)
    small[0, 1:4, 2:5] = True
    online = OnlineExtractor(
        [ROI(mask=small)],
        (*FRAMES, 1),
        dtype="float32",
        warmup=False,
        mean_frame=ds.time_averages[..., 0],
    )
    for frame in data:
        online.update(frame)
    offline = ds.extract(ROIList([ROI(mask=small)]))
    np.testing.assert_allclose(online.raw[0], offline["raw"][0][0], rtol=1e-5)


def test_sparse_planes_of_other_sizes_are_padded():
    ds, _ = _dataset()
    planes = [scipy.sparse.csr_matrix(np.eye(3, 4, dtype=bool))]
    roi = ROI(mask=planes)
    rec = ds.extract(ROIList([roi]))
    full = _padded(np.eye(3, 4, dtype=bool))
    np.testing.assert_allclose(rec["raw"][0][0], _expected_trace(ds, full), rtol=1e-6)


def test_segmentation_steps_pad_and_refuse_like_extract():
    ds, _ = _dataset()
    a = np.zeros((4, 6), bool)
    a[0:3, 0:3] = True
    b = np.zeros((4, 6), bool)
    b[1:3, 1:3] = True
    (merged,) = MergeOverlapping(threshold=0.1).apply(ROIList([ROI(mask=a), ROI(mask=b)]), ds)
    assert np.asarray(merged).shape == FRAMES and merged.size == 9
    c = np.zeros((9, 9), bool)
    c[7, 7] = True
    with pytest.raises(ValueError, match="does not fit frames"):
        MergeOverlapping(threshold=0.1).apply(ROIList([ROI(mask=a), ROI(mask=c)]), ds)

"""Reading the directories SIMA 1.3.2 wrote (tests/data/sima132), safely."""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest

from sima_fast import storage
from sima_fast._legacy import UnsafePickleError, legacy_load
from sima_fast.imaging import ImagingDataset
from sima_fast.ROI import ROIList

WRAPPER_EXPECTED = {
    "tiff_motion": "motion_frames",
    "tiff_masked": "masked_frames",
    "tiff_indexed": "indexed_frames",
}


def tree_digest(path):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(full.encode())
            with open(full, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def test_hdf5_and_ndarray_sequences(sima132):
    expected = np.load(os.path.join(sima132, "hdf5_and_ndarray_expected.npz"))
    ds = ImagingDataset.load(os.path.join(sima132, "hdf5_and_ndarray.sima"))
    assert ds.channel_names == ["GCaMP", "tdTomato"]
    assert ds.frame_shape == (2, 20, 24, 2)
    assert [len(s) for s in ds] == [60, 40]
    import h5py

    with h5py.File(os.path.join(sima132, "movie_a.h5"), "r") as f:
        movie_a = f["imaging"][()].astype(np.float64)
    movie_b = np.load(
        os.path.join(sima132, "hdf5_and_ndarray.sima", "seq_f566c86a0ef540709314c50fd1dc534f.npy")
    )
    for seq, ref in zip(ds, (movie_a, movie_b)):
        for frame, ref_frame in zip(seq, ref):
            np.testing.assert_array_equal(frame, ref_frame)
    np.testing.assert_array_equal(ds.time_averages, expected["time_averages"])
    np.testing.assert_array_equal(ds.time_std, expected["time_std"])
    # Pearson kurtosis from the data, not SIMA's cached 4th central moment
    allf = np.concatenate([movie_a, movie_b])
    m = allf.mean(0)
    m2 = ((allf - m) ** 2).mean(0)
    m4 = ((allf - m) ** 4).mean(0)
    np.testing.assert_allclose(ds.time_kurtosis, m4 / m2**2, rtol=1e-10)
    assert not np.allclose(ds.time_kurtosis, expected["sima_time_4th_central_moment"])


@pytest.mark.parametrize("name", sorted(WRAPPER_EXPECTED))
def test_tiff_wrappers_frame_for_frame(sima132, name):
    expected = np.load(os.path.join(sima132, "tiff_wrappers_expected.npz"))[WRAPPER_EXPECTED[name]]
    ds = ImagingDataset.load(os.path.join(sima132, f"{name}.sima"))
    assert ds.num_sequences == 1
    assert ds.sequences[0].shape == expected.shape
    for frame, ref in zip(ds.sequences[0], expected):
        np.testing.assert_array_equal(frame, ref)


def test_motion_time_averages(sima132):
    expected = np.load(os.path.join(sima132, "tiff_wrappers_expected.npz"))
    ds = ImagingDataset.load(os.path.join(sima132, "tiff_motion.sima"))
    np.testing.assert_allclose(ds.time_averages, expected["motion_time_averages"], rtol=1e-12)
    ds._projections.clear()  # recompute from the frames instead of SIMA's cache
    np.testing.assert_allclose(ds.time_averages, expected["motion_time_averages"], rtol=1e-12)


def test_rois_and_signals_are_readable(sima132):
    expected = np.load(os.path.join(sima132, "hdf5_and_ndarray_expected.npz"))
    ds = ImagingDataset.load(os.path.join(sima132, "hdf5_and_ndarray.sima"))
    rois = ds.ROIs
    assert sorted(rois) == ["manual", "weighted_set"]
    manual = rois["manual"]
    assert isinstance(manual, ROIList)
    assert [r.id for r in manual] == ["a", "b", "c"]
    assert manual[0].tags == {"cell", "good"}
    for k, roi in enumerate(manual):
        roi.im_shape = (2, 20, 24)
        np.testing.assert_array_equal(np.asarray(roi), expected[f"mask_roi{k}"])
    signals = ds.signals("GCaMP")
    assert list(signals) == ["manual_signals"]
    rec = signals["manual_signals"]
    np.testing.assert_array_equal(rec["raw"][0], expected["raw_seq0"])
    np.testing.assert_array_equal(rec["raw"][1], expected["raw_seq1"])
    assert rec["signal_channel"] == 0
    assert rec["mean_frame"].shape == (2, 20, 24)
    assert ds.signals(1) == {}


def test_loading_never_modifies_and_save_converts(sima132, tmp_path):
    path = os.path.join(sima132, "hdf5_and_ndarray.sima")
    before = tree_digest(sima132)
    ds = ImagingDataset.load(path)
    _ = ds.time_kurtosis, ds.ROIs, ds.signals(0)
    with pytest.raises(PermissionError, match=r"SIMA 1\.x"):
        ds.save()
    from sima_fast.ROI import ROI

    with pytest.raises(PermissionError, match="save\\(new_path\\)"):
        ds.add_ROIs(ROIList([ROI(polygons=[[1, 1], [4, 1], [4, 4]])]), "new")
    assert tree_digest(sima132) == before
    ds.save(str(tmp_path / "converted"))
    assert tree_digest(sima132) == before
    assert ds.savedir == str(tmp_path / "converted.sima")
    assert not any(n.endswith(".pkl") for n in os.listdir(ds.savedir))
    conv = ImagingDataset.load(str(tmp_path / "converted"))
    assert conv.channel_names == ["GCaMP", "tdTomato"]
    for a, b in zip(conv, ImagingDataset.load(path)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert sorted(conv.ROIs) == ["manual", "weighted_set"]
    np.testing.assert_array_equal(
        conv.signals(0)["manual_signals"]["raw"][1],
        ImagingDataset.load(path).signals(0)["manual_signals"]["raw"][1],
    )
    conv.add_ROIs(ROIList([ROI(polygons=[[1, 1], [4, 1], [4, 4]])]), "new")  # now writable
    assert sorted(conv.ROIs) == ["manual", "new", "weighted_set"]


@pytest.mark.parametrize("name", sorted(WRAPPER_EXPECTED))
def test_converted_wrappers_round_trip(sima132, tmp_path, name):
    ds = ImagingDataset.load(os.path.join(sima132, f"{name}.sima"))
    ds.save(str(tmp_path / name))
    again = ImagingDataset.load(str(tmp_path / name))
    np.testing.assert_array_equal(np.asarray(again.sequences[0]), np.asarray(ds.sequences[0]))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload, match",
    [
        (_Evil(), "posix.system|os.system|refusing"),
        ({"x": pickle.loads(pickle.dumps(np.float64(1)))}, None),
        (np.array([object()], dtype=object), "refusing"),
    ],
)
def test_restricted_unpickler(tmp_path, payload, match):
    path = tmp_path / "p.pkl"
    try:
        data = pickle.dumps(payload, protocol=2)
    except (pickle.PicklingError, TypeError, AttributeError):
        pytest.skip("payload cannot be pickled on this Python")
    path.write_bytes(data)
    if match is None:
        assert legacy_load(path) == {"x": 1.0}
    else:
        with pytest.raises(UnsafePickleError, match=match):
            legacy_load(path)


def test_unsafe_sequences_pickle_is_refused(sima132):
    path = os.path.join(sima132, "tiff_indexed.sima", "sequences.pkl")
    with open(path, "wb") as fh:
        pickle.dump([_Evil()], fh)
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        ImagingDataset.load(os.path.join(sima132, "tiff_indexed.sima"))


def test_truncated_pickle(sima132):
    path = os.path.join(sima132, "tiff_masked.sima", "sequences.pkl")
    with open(path, "rb") as fh:
        data = fh.read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
    with pytest.raises(UnsafePickleError, match="not a readable SIMA pickle"):
        ImagingDataset.load(os.path.join(sima132, "tiff_masked.sima"))


def test_missing_data_file_names_paths_tried(sima132):
    os.remove(os.path.join(sima132, "movie_b.tif"))
    with pytest.raises(
        FileNotFoundError, match=r"movie_b\.tif.*tried.*/data/sima132/movie_b\.tif"
    ):
        ImagingDataset.load(os.path.join(sima132, "tiff_motion.sima"))


def test_not_a_dataset(tmp_path):
    (tmp_path / "empty.sima").mkdir()
    with pytest.raises(storage.DatasetFormatError, match="neither"):
        ImagingDataset.load(str(tmp_path / "empty.sima"))

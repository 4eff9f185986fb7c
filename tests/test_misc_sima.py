"""sima.misc names SIMA scripts import, and the example files in SIMA's layout."""

from __future__ import annotations

import glob
import os
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter, shift

import sima_fast.misc.sima_examples as sima_examples
from sima_fast._validate import ArgumentTypeError
from sima_fast.misc import (
    TransformError,
    copy_label_to_id,
    estimate_array_transform,
    estimate_coordinate_transform,
    example_tiffs,
    example_volume,
    mkdir_p,
    most_recent_key,
    sima_example_data,
    sima_example_hdf5,
    sima_example_imagej_rois,
    sima_example_tiff,
)

# ---------------------------------------------------------------- mkdir_p


def test_mkdir_p_makes_parents_and_accepts_an_existing_directory(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    mkdir_p(target)
    assert target.is_dir()
    mkdir_p(str(target))  # again: nothing happens
    assert target.is_dir()


def test_mkdir_p_refuses_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(FileExistsError):
        mkdir_p(path)


# ---------------------------------------------------------------- most_recent_key


def test_most_recent_key_reads_items_or_attributes():
    items = {
        "old": {"timestamp": "2023-05-01-09h00m00s"},
        "new": {"timestamp": "2024-01-01-00h00m00s"},
        "mid": {"timestamp": "2023-12-31-23h59m59s"},
    }
    assert most_recent_key(items) == "new"
    attrs = {
        1: types.SimpleNamespace(timestamp="2020-01-01-00h00m00s"),
        2: types.SimpleNamespace(timestamp="2019-01-01-00h00m00s"),
    }
    assert most_recent_key(attrs) == 1


def test_most_recent_key_later_entry_wins_a_tie():
    same = "2024-02-02-02h02m02s"
    assert most_recent_key({"first": {"timestamp": same}, "second": {"timestamp": same}}) == (
        "second"
    )


def test_most_recent_key_errors():
    with pytest.raises(ValueError, match="empty"):
        most_recent_key({})
    with pytest.raises(KeyError, match="'x' has no timestamp"):
        most_recent_key({"x": {"time": 1}})
    with pytest.raises(ArgumentTypeError, match="d must be a mapping"):
        most_recent_key([("a", 1)])


# ---------------------------------------------------------------- copy_label_to_id


def test_copy_label_to_id_sets_ids_in_place():
    from sima_fast.ROI import ROI, ROIList

    rois = ROIList(
        [
            ROI(mask=np.eye(3, dtype=bool), label="cell_a", id="x"),
            ROI(mask=np.eye(3, dtype=bool)[::-1], label="cell_b"),
        ]
    )
    assert copy_label_to_id(rois) is None
    assert [r.id for r in rois] == ["cell_a", "cell_b"]
    assert [r.label for r in rois] == ["cell_a", "cell_b"]


# ---------------------------------------------------------------- transforms


def _scene(seed: int, shape=(80, 80)) -> np.ndarray:
    return gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 2.0)


def test_estimate_array_transform_finds_a_shift():
    from skimage.transform import AffineTransform

    source = _scene(3)
    target = shift(source, (-4, 5), order=3)  # rows -4, columns +5
    tf = estimate_array_transform(source, target)
    assert isinstance(tf, AffineTransform)
    np.testing.assert_allclose(tf.translation, [5, -4], atol=0.2)
    np.testing.assert_allclose(tf.params[:2, :2], np.eye(2), atol=0.02)
    # a point of source maps to the same content in target
    np.testing.assert_allclose(tf([[10.0, 20.0]]), [[15.0, 16.0]], atol=0.3)


def test_estimate_array_transform_other_models_and_sizes():
    source = _scene(4, (90, 70))
    target = shift(source, (2, 3), order=3)[:80, :64]  # a smaller template
    tf = estimate_array_transform(source, target, method="euclidean")
    np.testing.assert_allclose(tf.translation, [3, 2], atol=0.3)


def test_estimate_array_transform_failures():
    with pytest.raises(TransformError, match="cannot estimate the affine transform"):
        estimate_array_transform(np.ones((40, 40)), np.ones((40, 40)))
    with pytest.raises(ValueError, match="source must be a 2-D array"):
        estimate_array_transform(np.zeros((2, 40, 40)), np.zeros((40, 40)))
    with pytest.raises(ArgumentTypeError, match="target must be a 2-D numeric array"):
        estimate_array_transform(np.zeros((40, 40)), "image")
    with pytest.raises(ValueError, match="unknown transform method"):
        estimate_array_transform(_scene(1), _scene(1), method="rigid-ish")


def test_transform_error_is_a_value_error():
    assert issubclass(TransformError, ValueError)


def test_estimate_coordinate_transform_models():
    src = np.array([[0, 0], [30, 0], [0, 20], [30, 20], [12, 7]], dtype=float)
    tf = estimate_coordinate_transform(src, src @ [[1, 0.1], [0, 1]] + [4, -2], "affine")
    np.testing.assert_allclose(tf(src), src @ [[1, 0.1], [0, 1]] + [4, -2], atol=1e-9)
    dst = src + 0.001 * src**2
    poly = estimate_coordinate_transform(src, dst, "polynomial", order=2)
    np.testing.assert_allclose(poly(src), dst, atol=1e-6)


def test_estimate_coordinate_transform_failures():
    line = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    repeated = np.zeros((3, 2))
    with pytest.raises(TransformError, match="could not be estimated"):
        estimate_coordinate_transform(repeated, repeated + 1, "affine")
    with pytest.raises(ValueError, match=r"source must be an \(N, 2\) array"):
        estimate_coordinate_transform(np.zeros((3, 3)), np.zeros((3, 3)), "affine")
    with pytest.raises(ValueError, match="target must have the shape of source"):
        estimate_coordinate_transform(np.zeros((3, 2)), np.zeros((4, 2)), "affine")
    with pytest.raises(ValueError, match="unknown transform method"):
        estimate_coordinate_transform(line, line, "bogus")


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 12),
    matrix=st.lists(st.floats(-2, 2), min_size=4, max_size=4),
    offset=st.lists(st.floats(-50, 50), min_size=2, max_size=2),
    seed=st.integers(0, 2**16),
)
def test_estimate_coordinate_transform_recovers_any_affine_map(n, matrix, offset, seed):
    a = np.array(matrix).reshape(2, 2)
    if abs(np.linalg.det(a)) < 0.05:
        a = a + np.eye(2)  # keep the map invertible
    src = np.random.default_rng(seed).uniform(-100, 100, (n, 2))
    dst = src @ a.T + offset
    tf = estimate_coordinate_transform(src, dst, "affine")
    np.testing.assert_allclose(tf(src), dst, atol=1e-6 * (1 + np.abs(dst).max()))


# ---------------------------------------------------------------- SIMA-layout examples


@pytest.fixture(scope="module")
def sima_layout(tmp_path_factory):
    pytest.importorskip("sima_fast.imaging")
    cache = tmp_path_factory.mktemp("sima_layout_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIMA_FAST_CACHE", str(cache))
        paths = {
            "tiff": sima_example_tiff(),
            "hdf5": sima_example_hdf5(),
            "rois": sima_example_imagej_rois(),
            "tiffs": example_tiffs(),
            "volume": example_volume(),
            "dataset": sima_example_data(),
            "cache": str(cache),
        }
    return paths


def test_sima_layout_files_have_sima_shapes(sima_layout):
    import h5py
    import tifffile

    from sima_fast import Sequence

    folder = os.path.join(sima_layout["cache"], "sima-layout-v1")
    assert all(p.startswith(folder) for k, p in sima_layout.items() if k != "cache")
    assert sorted(os.listdir(sima_layout["cache"])) == ["sima-layout-v1"]  # no leftovers
    with h5py.File(sima_layout["hdf5"], "r") as f:
        assert f["imaging"].shape == (128, 256, 20) and f["imaging"].dtype == np.uint16
        hdf5_frames = f["imaging"][()].transpose(2, 0, 1)
    pages = tifffile.imread(sima_layout["tiff"])
    assert pages.shape == (20, 128, 256) and pages.dtype == np.uint16
    np.testing.assert_array_equal(pages, hdf5_frames)
    assert pages.std() > 0

    assert Sequence.create("HDF5", sima_layout["hdf5"], "yxt").shape == (20, 1, 128, 256, 1)
    assert Sequence.create("TIFF", sima_layout["tiff"], 2, 2).shape == (5, 2, 128, 256, 2)

    files = sorted(glob.glob(sima_layout["tiffs"]))
    assert [os.path.basename(f) for f in files] == ["0.tif", "1.tif", "2.tif"]
    for f in files:
        page = tifffile.imread(f)
        assert page.shape == (173, 173) and page.dtype == np.uint16
    tiffs = Sequence.create("TIFFs", [[sima_layout["tiffs"]] * 2] * 4)
    assert tiffs.shape == (3, 4, 173, 173, 2)

    with h5py.File(sima_layout["volume"], "r") as f:
        volume = f["imaging"]
        assert volume.shape == (10, 3, 64, 64, 2) and volume.dtype == np.uint8
        assert [d.label for d in volume.dims] == list("tzyxc")
        assert 0 < volume[()].max() <= 255
    assert Sequence.create("HDF5", sima_layout["volume"], "tzyxc").shape == (10, 3, 64, 64, 2)


def test_sima_layout_rois_extract_from_the_sima_layout_movie(sima_layout):
    from sima_fast import ImagingDataset, Sequence
    from sima_fast.ROI import ROIList

    rois = ROIList.load(sima_layout["rois"], fmt="ImageJ")
    assert len(rois) == 2
    seq = Sequence.create("HDF5", sima_layout["hdf5"], "yxt")
    ds = ImagingDataset([seq, seq], None)
    signals = ds.extract(rois, label="rois")
    assert len(signals["raw"]) == 2
    raw = np.asarray(signals["raw"][0])
    assert raw.shape == (2, 20) and np.isfinite(raw).all() and raw.std() > 0


def test_sima_layout_dataset_survives_the_tutorials_copy(sima_layout, tmp_path, monkeypatch):
    import shutil

    from sima_fast import ImagingDataset

    ds = ImagingDataset.load(sima_layout["dataset"])
    assert ds.channel_names == ["red", "green"]
    assert ds.frame_shape == (1, 128, 256, 2) and ds.num_frames == 10
    # SIMA's tutorial copies the dataset and the TIFF beside each other, then loads the copy
    monkeypatch.chdir(tmp_path)
    shutil.copytree(sima_layout["dataset"], "example.sima")
    shutil.copy(sima_layout["tiff"], "example.tif")
    shutil.copy(sima_layout["hdf5"], "example.h5")
    copy = ImagingDataset.load("example.sima")
    np.testing.assert_array_equal(np.asarray(copy.sequences[0]), np.asarray(ds.sequences[0]))


def test_sima_layout_is_cached_and_an_interrupted_build_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "ok"))
    calls = []
    build = sima_examples._build

    def counting(folder):
        calls.append(folder)
        build(folder)

    monkeypatch.setattr(sima_examples, "_build", counting)
    first = example_volume()
    assert example_tiffs() and sima_example_tiff() and example_volume() == first
    assert len(calls) == 1
    os.remove(first)  # a damaged folder is rebuilt
    assert example_volume() == first and os.path.exists(first) and len(calls) == 2

    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "broken"))

    def failing(folder):
        open(os.path.join(folder, "partial"), "w").close()
        raise KeyboardInterrupt

    monkeypatch.setattr(sima_examples, "_build", failing)
    with pytest.raises(KeyboardInterrupt):
        example_tiffs()
    assert os.listdir(tmp_path / "broken") == []

"""The format registries of sima_fast.io: the public methods dispatch through them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import sima_fast as sima
from sima_fast.io import (
    Registry,
    averages_writers,
    frames_writers,
    roi_readers,
    roi_writers,
    signals_writers,
)
from sima_fast.io._export import per_sequence_paths
from sima_fast.io._frames import converted_frames
from sima_fast.ROI import ROI, ROIList

SQUARE = [[0, 0], [2, 0], [2, 2], [0, 2]]


@pytest.fixture
def register():
    """Register test-local functions; unregister them whatever the test does."""
    added: list[tuple[Registry, str]] = []

    def _register(registry: Registry, name: str, func) -> None:
        registry.register(name, func)
        added.append((registry, name))

    yield _register
    for registry, name in reversed(added):
        if name in registry:
            registry.unregister(name)


def test_builtin_formats_listed_once_in_registration_order():
    assert roi_readers.names() == ["h5", "pkl", "ImageJ", "suite2p", "NWB"]
    assert roi_writers.names() == ["h5", "pkl", "ImageJ"]
    assert averages_writers.names() == ["TIFF8", "TIFF16", "HDF5"]
    assert frames_writers.names() == ["TIFF8", "TIFF16", "HDF5"]
    assert signals_writers.names() == ["csv"]
    assert "imagej" in roi_readers and "IMAGEJ" in roi_writers
    assert "tiff16" not in frames_writers and ["HDF5"] not in frames_writers


def test_local_roi_format_is_used_by_load_and_save(tmp_path, register):
    calls = []

    def save_json(rois, path, label):
        calls.append(("save", label))
        rings = [[r.rings[0][:, :2].tolist(), r.label] for r in rois]
        with open(path, "w") as fh:
            json.dump({"timestamp": rois.timestamp, "rois": rings}, fh)

    def load_json(path, label):
        calls.append(("load", label))
        with open(path) as fh:
            d = json.load(fh)
        out = ROIList([ROI(polygons=p, label=lab) for p, lab in d["rois"]])
        out.timestamp = d["timestamp"]
        return out

    register(roi_writers, "JSONtest", save_json)
    register(roi_readers, "JSONtest", load_json)
    assert roi_readers.names()[-1] == "JSONtest"
    rois = ROIList(
        [ROI(polygons=SQUARE, label="a"), ROI(polygons=SQUARE, label="b")],
        timestamp="2020-01-02-03h04m05s",
    )
    path = tmp_path / "rois.json"
    rois.save(path, label="mine", fmt="jsontest")  # any case
    back = ROIList.load(path, label="mine", fmt="JSONTEST", reassign_label=True)
    assert calls == [("save", "mine"), ("load", "mine")]
    assert isinstance(back, ROIList) and back.timestamp == "2020-01-02-03h04m05s"
    assert [r.label for r in back] == ["0", "1"]
    np.testing.assert_array_equal(back[0].rings[0], rois[0].rings[0])
    with pytest.raises(FileNotFoundError):
        ROIList.load(tmp_path / "missing.json", fmt="JSONtest")
    assert len(calls) == 2  # the reader is not called for a missing file


def test_unknown_formats_list_the_registered_names(tmp_path, register):
    register(roi_readers, "Extra", lambda path, label: ROIList([]))
    with pytest.raises(ValueError) as info:
        ROIList.load(tmp_path, fmt="xml")
    assert str(info.value) == (
        "unknown ROI file format 'xml'; "
        "accepted: ['h5', 'pkl', 'ImageJ', 'suite2p', 'NWB', 'Extra']"
    )
    with pytest.raises(ValueError, match=r"accepted: \['h5', 'pkl', 'ImageJ'\]$"):
        ROIList([]).save(tmp_path / "x", fmt="Extra")  # a reader only: no writer
    ds = sima.ImagingDataset([sima.Sequence.create("ndarray", np.zeros((2, 1, 3, 4, 1)))], None)
    with pytest.raises(ValueError, match=r"^fmt must be one of \['TIFF8', 'TIFF16', 'HDF5'\]"):
        ds.export_frames([str(tmp_path / "a.png")], fmt="PNG")
    with pytest.raises(ValueError, match=r"^fmt must be one of \['TIFF8', 'TIFF16', 'HDF5'\]"):
        ds.export_averages([str(tmp_path / "a.png")], fmt=["HDF5"])
    with pytest.raises(ValueError, match=r"^fmt must be one of \['csv'\], got 'xlsx'"):
        ds.export_signals(str(tmp_path / "s.xlsx"), fmt="xlsx")
    assert list(tmp_path.iterdir()) == []


def test_local_frames_and_averages_exporters_are_used(tmp_path, register):
    frames = np.arange(2 * 5 * 1 * 3 * 4 * 2, dtype=np.float32).reshape(10, 1, 3, 4, 2)
    frames[3, 0, 1, 1, 0] = np.nan
    seqs = [
        sima.Sequence.create("ndarray", frames[:6]),
        sima.Sequence.create("ndarray", frames[6:]),
    ]
    ds = sima.ImagingDataset(seqs, None, channel_names=["g", "r"])
    seen = {}

    def write_npy(dataset, filenames, *, fill_gaps, scale_values, compression, client):
        seen.update(fill_gaps=fill_gaps, scale_values=scale_values, compression=compression)
        paths = per_sequence_paths(filenames, "NPYtest", dataset.num_sequences)
        sequences, blocks = converted_frames(
            dataset, fill_gaps, scale_values, 16, lambda c, scale: np.array(c), client
        )
        for seq, path in zip(sequences, paths, strict=True):
            np.save(path, np.concatenate([b for _, b in blocks(seq)]))

    def write_mean(dataset, filenames, *, scale_values, projection_type):
        seen.update(projection_type=projection_type)
        np.save(filenames, dataset.time_averages)

    register(frames_writers, "NPYtest", write_npy)
    register(averages_writers, "NPYtest", write_mean)
    paths = [str(tmp_path / "s0.npy"), str(tmp_path / "s1.npy")]
    ds.export_frames(paths, fmt="NPYtest", fill_gaps=False, compression="gzip")
    assert seen == {"fill_gaps": False, "scale_values": False, "compression": "gzip"}
    np.testing.assert_array_equal(np.load(paths[0]), frames[:6])
    np.testing.assert_array_equal(np.load(paths[1]), frames[6:])
    with pytest.raises(ValueError, match="compression"):  # checked before the writer runs
        ds.export_frames(paths, fmt="NPYtest", compression="zstd")
    with pytest.raises(ValueError, match=r"fmt must be one of .*'NPYtest'"):
        ds.export_frames(paths, fmt="npytest")  # exporter names are case-sensitive
    ds.export_averages(str(tmp_path / "mean.npy"), fmt="NPYtest", projection_type="std")
    assert seen["projection_type"] == "std"
    np.testing.assert_array_equal(np.load(tmp_path / "mean.npy"), ds.time_averages)
    with pytest.raises(ValueError, match="projection_type"):
        ds.export_averages(str(tmp_path / "mean.npy"), fmt="NPYtest", projection_type="max")


def test_local_signals_writer_gets_the_chosen_record(tmp_path, register):
    got = []
    register(signals_writers, "list", lambda path, signals: got.append((path, signals)))
    seq = sima.Sequence.create("ndarray", np.ones((4, 1, 4, 4, 1), np.float32))
    ds = sima.ImagingDataset([seq], str(tmp_path / "d.sima"))
    ds.extract(ROIList([ROI(polygons=SQUARE)]), label="s", save_summary=False)
    ds.export_signals("out", fmt="list")
    assert got[0][0] == "out"
    np.testing.assert_array_equal(got[0][1]["raw"][0], [[1.0, 1.0, 1.0, 1.0]])


def test_register_and_unregister_rules():
    reg = frames_writers
    with pytest.raises(ValueError, match="already registered for format 'HDF5'"):
        reg.register("HDF5", lambda *a, **k: None)
    with pytest.raises(ValueError, match="already registered for format 'ImageJ'"):
        roi_readers.register("imagej", lambda path, label: None)  # case-insensitive
    with pytest.raises(TypeError, match="callable"):
        reg.register("X", "not a function")
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("", lambda *a, **k: None)
    with pytest.raises(KeyError, match="'nope'"):
        reg.unregister("nope")
    original = reg.lookup("HDF5")
    replacement = reg.register("HDF5", lambda *a, **k: None, replace=True)
    try:
        assert reg.lookup("HDF5") is replacement
        assert reg.names() == ["TIFF8", "TIFF16", "HDF5"]
    finally:
        reg.register("HDF5", original, replace=True)

    @reg.register("Decorated")
    def decorated(*args, **kwargs):
        return None

    try:
        assert reg.lookup("Decorated") is decorated
    finally:
        reg.unregister("Decorated")
    assert "Decorated" not in reg


def test_registries_import_no_optional_dependency():
    code = (
        "import sys, sima_fast.io as io; "
        "before = [m for m in sys.modules if m.startswith('sima_fast.io.')]; "
        "names = io.roi_readers.names() + io.frames_writers.names(); "
        "heavy = [m for m in ('roifile', 'tifffile', 'h5py', 'tqdm', 'dask') "
        "if m in sys.modules]; print(before, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['sima_fast.io._registry'] []"

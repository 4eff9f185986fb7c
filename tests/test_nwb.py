"""NWB export and import: round trips through pynwb and roiextractors, nwbinspector, bad input."""

from __future__ import annotations

import json
import os
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

pynwb = pytest.importorskip("pynwb")
pytest.importorskip("nwbinspector")

from sima_fast import ImagingDataset, Sequence  # noqa: E402
from sima_fast.io import nwb as nwbio  # noqa: E402
from sima_fast.io.nwb import NWBMetadataError  # noqa: E402
from sima_fast.ROI import ROI, ROIList  # noqa: E402

T, Y, X = 40, 8, 10  # time the longest axis, as nwbinspector expects

META = {
    "session_description": "two sequences of a synthetic movie",
    "session_start_time": "2024-05-01T10:00:00+02:00",
    "experimenter": ["Doe, Jane"],
    "institution": "Test University",
    "lab": "Imaging lab",
    "experiment_description": "round trip of sima_fast's NWB export",
    "keywords": ["calcium imaging"],
    "subject": {
        "subject_id": "m1",
        "species": "Mus musculus",
        "sex": "F",
        "age": "P90D",
        "description": "a test mouse",
    },
    "imaging_plane": {
        "excitation_lambda": 920.0,
        "indicator": "GCaMP6f",
        "location": "VISp",
        "imaging_rate": 30.0,
        "optical_channel": {"emission_lambda": 510.0},
    },
}


def _movie(seed: int = 0, planes: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = 50 + 10 * rng.random((1, planes, Y, X, 1))
    wave = 1 + 0.3 * np.sin(np.arange(T) / 3.0)[:, None, None, None, None]
    return (base * wave + rng.random((T, planes, Y, X, 1))).astype(np.float32)


def _rois(planes: int = 1) -> ROIList:
    a = np.zeros((planes, Y, X), bool)
    a[0, 2:5, 3:7] = True
    b = np.zeros((planes, Y, X))
    b[-1, 5:8, 6:9] = 0.5
    b[-1, 6, 7] = 2.0
    return ROIList(
        [ROI(mask=a, label="a", tags=["x", "y"], id="r1"), ROI(mask=b, label="b", id=None)]
    )


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    """A saved two-sequence dataset with ROIs, signals and spikes."""
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    data = _movie()
    seqs = [Sequence.create("ndarray", data[:25]), Sequence.create("ndarray", data[25:])]
    ds = ImagingDataset(seqs, str(tmp_path / "d.sima"))
    ds.add_ROIs(_rois(), "cells")
    ds.extract(label="cells", save_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.infer_spikes()
    return ds


def _read(path):
    io = pynwb.NWBHDF5IO(str(path), "r")
    return io, io.read()


def test_export_reads_back_with_pynwb(dataset, tmp_path):
    out = tmp_path / "s.nwb"
    verdict = dataset.export_nwb(out, metadata=META, frames=True, inspect=True)
    assert verdict.ok, [str(m) for m in verdict.failing()]
    assert verdict.path == str(out)
    record = dataset.signals()["cells"]
    io, f = _read(out)
    try:
        ophys = f.processing["ophys"]
        ps = ophys["ImageSegmentation"]["PlaneSegmentation"]
        masks = np.asarray(ps["image_mask"].data[:])  # (roi, x, y)
        for i, roi in enumerate(_rois()):
            np.testing.assert_allclose(masks[i].T, np.asarray(roi, dtype=float)[0])
        assert list(ps["roi_label"].data[:]) == ["a", "b"]
        assert list(ps["roi_tags"].data[:]) == ["x,y", ""]
        fl = ophys["Fluorescence"]
        raw = fl["RoiResponseSeries"]
        np.testing.assert_allclose(raw.data[:].T, np.concatenate(record["raw"], axis=1), 1e-6)
        assert raw.rate == 30.0 and raw.starting_time == 0.0
        np.testing.assert_allclose(
            fl["Deconvolved"].data[:].T, np.concatenate(record["spikes"], axis=1), 1e-6
        )
        params = ophys["SpikeInferenceParameters"].to_dataframe()
        assert len(params) == 4  # 2 sequences x 2 ROIs
        np.testing.assert_allclose(
            params["gamma"].to_numpy()[:2], record["spikes_params"][0]["gamma"]
        )
        images = ophys["SegmentationImages"]
        np.testing.assert_allclose(
            images["mean"].data[:].T, dataset.time_averages[0, :, :, 0], rtol=1e-6
        )
        assert set(images.images) == {"mean", "std", "kurtosis"}
        # two sequences: two series, back to back, and one epoch each
        s0, s1 = f.acquisition["TwoPhotonSeries000"], f.acquisition["TwoPhotonSeries001"]
        assert s1.starting_time == pytest.approx(25 / 30.0)
        np.testing.assert_array_equal(
            s1.data[:], np.asarray(dataset.sequences[1])[:, 0, :, :, 0].transpose(0, 2, 1)
        )
        assert s0.data.compression == "gzip"
        epochs = f.epochs.to_dataframe()
        assert list(epochs["start_time"]) == pytest.approx([0.0, 25 / 30.0])
        assert f.subject.species == "Mus musculus"
        assert str(f.session_start_time.utcoffset()) == "2:00:00"
    finally:
        io.close()


def test_dandi_config_is_clean_too(dataset, tmp_path):
    out = dataset.export_nwb(tmp_path / "s.nwb", metadata=META)
    verdict = nwbio.inspect_nwb(out, config="dandi")
    assert verdict.ok, [str(m) for m in verdict.failing()]
    assert "passed" in verdict.summary()


def test_roiextractors_reads_masks_traces_and_frames(dataset, tmp_path):
    roiextractors = pytest.importorskip("roiextractors")
    out = dataset.export_nwb(tmp_path / "s.nwb", metadata=META, frames=True, epochs=False)
    record = dataset.signals()["cells"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = roiextractors.NwbSegmentationExtractor(out)
        masks = seg.get_roi_image_masks()  # (Y, X, n)
        traces = seg.get_traces_dict()
        img = roiextractors.NwbImagingExtractor(out, "TwoPhotonSeries001")
        frames = img.get_series()
    for i, roi in enumerate(_rois()):
        np.testing.assert_allclose(masks[..., i], np.asarray(roi, dtype=float)[0])
    np.testing.assert_allclose(traces["raw"], np.concatenate(record["raw"], axis=1).T, 1e-6)
    np.testing.assert_allclose(
        traces["denoised"], np.concatenate(record["spikes_fits"], axis=1).T, 1e-6
    )
    np.testing.assert_array_equal(frames, np.asarray(dataset.sequences[1])[:, 0, :, :, 0])
    assert img.get_sampling_frequency() == 30.0


def test_nwb_sequence_reads_lazily_and_saves_as_description(dataset, tmp_path):
    out = dataset.export_nwb(tmp_path / "s.nwb", metadata=META, frames=True)
    with pytest.raises(ValueError, match="TwoPhotonSeries000"):
        Sequence.create("NWB", out)  # two series: name one
    seq = Sequence.create("NWB", out, series="TwoPhotonSeries001")
    assert seq.shape == (15, 1, Y, X, 1) and seq.dtype == np.float32
    assert seq.rate == 30.0 and seq.describe() == "NWB s.nwb:TwoPhotonSeries001"
    np.testing.assert_array_equal(seq.read_chunk(3, 9), _movie()[28:34])
    again = pickle.loads(pickle.dumps(seq))
    np.testing.assert_array_equal(np.asarray(again), np.asarray(seq))
    ds2 = ImagingDataset([seq], str(tmp_path / "from_nwb.sima"))
    with open(tmp_path / "from_nwb.sima" / "metadata.json") as fh:
        desc = json.load(fh)["sequences"][0]
    assert desc["fmt"] == "NWB" and desc["series"] == "TwoPhotonSeries001"
    loaded = ImagingDataset.load(ds2.savedir)
    np.testing.assert_array_equal(np.asarray(loaded.sequences[0]), _movie()[25:])


def test_nwb_sequence_reads_in_chunks(dataset, tmp_path, monkeypatch):
    out = dataset.export_nwb(tmp_path / "s.nwb", metadata=META, frames=True)
    seq = Sequence.create("NWB", out, series="TwoPhotonSeries000")
    import h5py

    spans = []
    real = h5py.Dataset.__getitem__

    def spy(self, sel, *args, **kwargs):
        if self.name.endswith("/data") and isinstance(sel, tuple):
            spans.append(sel[0].stop - sel[0].start)
        return real(self, sel, *args, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    total = sum(len(c) for _, c in seq.iter_chunks(chunk_frames=4))
    assert total == 25 and max(spans) == 4


def test_frames_are_streamed_in_chunks(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(nwbio, "_CHUNK_BYTES", 5 * Y * X * 4)
    seen = []
    real = Sequence.iter_chunks

    def spy(self, chunk_frames=None, *args, **kwargs):
        seen.append(chunk_frames)
        return real(self, chunk_frames, *args, **kwargs)

    monkeypatch.setattr(Sequence, "iter_chunks", spy)
    out = dataset.export_nwb(tmp_path / "s.nwb", metadata=META, frames=True, projections=False)
    assert seen == [5, 5]
    io, f = _read(out)
    try:
        assert f.acquisition["TwoPhotonSeries000"].data.chunks == (5, X, Y)
    finally:
        io.close()


def test_rois_round_trip_pixel_masks_and_labels(dataset, tmp_path):
    for masks in ("image", "pixel"):
        out = dataset.export_nwb(tmp_path / f"{masks}.nwb", metadata=META, masks=masks)
        io, f = _read(out)
        try:
            cols = f.processing["ophys"]["ImageSegmentation"]["PlaneSegmentation"].colnames
            assert f"{masks}_mask" in cols
        finally:
            io.close()
        rois = ROIList.load(out, fmt="NWB", im_shape=(1, Y, X))
        assert [r.label for r in rois] == ["a", "b"]
        assert [r.tags for r in rois] == [{"x", "y"}, set()]
        assert [r.id for r in rois] == ["r1", None]
        for got, want in zip(rois, _rois()):
            np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float))
        assert rois[1].is_weighted and not rois[0].is_weighted


def test_volume_uses_voxel_masks(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    ds = ImagingDataset([Sequence.create("ndarray", _movie(planes=2))], str(tmp_path / "v.sima"))
    ds.add_ROIs(_rois(planes=2), "cells")
    ds.extract(save_summary=False)
    verdict = ds.export_nwb(tmp_path / "v.nwb", metadata=META, frames=True, inspect=True)
    assert verdict.ok, [str(m) for m in verdict.failing()]
    io, f = _read(verdict.path)
    try:
        ps = f.processing["ophys"]["ImageSegmentation"]["PlaneSegmentation"]
        assert "voxel_mask" in ps.colnames
        assert f.acquisition["TwoPhotonSeries"].data.shape == (T, X, Y, 2)
        assert "mean_plane1" in f.processing["ophys"]["SegmentationImages"].images
    finally:
        io.close()
    rois = ROIList.load(verdict.path, fmt="NWB")
    for got, want in zip(rois, _rois(planes=2)):
        np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float))
    seq = Sequence.create("NWB", verdict.path)
    np.testing.assert_array_equal(np.asarray(seq), _movie(planes=2))


def _other_tool_file(path, movie, masks):
    """An NWB file as another tool writes it: weighted image masks, no sima_fast columns."""
    from datetime import datetime, timezone

    from pynwb.ophys import ImageSegmentation, OpticalChannel, TwoPhotonSeries

    f = pynwb.NWBFile("other", "id1", datetime(2024, 1, 1, tzinfo=timezone.utc))
    dev = f.create_device(name="scope")
    plane = f.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=OpticalChannel(name="ch", description="green", emission_lambda=510.0),
        device=dev,
        excitation_lambda=920.0,
        indicator="GCaMP",
        location="VISp",
        imaging_rate=10.0,
    )
    f.add_acquisition(
        TwoPhotonSeries(
            name="movie",
            data=movie.transpose(0, 2, 1),
            imaging_plane=plane,
            rate=10.0,
            unit="n.a.",
        )
    )
    mod = f.create_processing_module("ophys", "processed")
    seg = ImageSegmentation()
    mod.add(seg)
    ps = seg.create_plane_segmentation("cells found elsewhere", plane, name="Cells")
    for m in masks:
        ps.add_roi(image_mask=m.T)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(f)


def test_rois_of_another_tool_extract_the_reference_traces(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    movie = (100 + 20 * rng.random((30, Y, X))).astype(np.float32)
    masks = np.zeros((3, Y, X))
    masks[0, 1:4, 1:5] = rng.random((3, 4)) + 0.1
    masks[1, 5:8, 1:4] = 1.0
    masks[2, 4:8, 6:10] = rng.random((4, 4))
    path = tmp_path / "other.nwb"
    _other_tool_file(path, movie, masks)
    seq = Sequence.create("NWB", path, series="movie")
    np.testing.assert_array_equal(np.asarray(seq)[:, 0, :, :, 0], movie)
    rois = ROIList.load(path, label="Cells", fmt="NWB")
    assert [r.label for r in rois] == ["0", "1", "2"]
    ds = ImagingDataset([seq], None)
    record = ds.extract(rois, save_summary=False)
    mu = movie.astype(np.float64).mean(axis=0)
    ref = []
    for m in masks:
        w = m / m.sum() if np.all(m[m != 0] == 1) else m
        ref.append((movie * (w / mu)).sum(axis=(1, 2)))
    np.testing.assert_allclose(record["raw"][0], np.array(ref), rtol=1e-5)
    with pytest.raises(KeyError, match="Cells"):
        ROIList.load(path, label="Nope", fmt="NWB")


def test_link_frames_to_tiff_sources(tmp_path, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    movie = (_movie()[:, 0, :, :, 0]).astype(np.uint16)
    tif = tmp_path / "raw" / "movie.tif"
    tif.parent.mkdir()
    tifffile.imwrite(tif, movie)
    ds = ImagingDataset([Sequence.create("TIFF", str(tif))], None)
    ds.add_ROIs(_rois(), "cells")
    out = tmp_path / "out" / "linked.nwb"
    out.parent.mkdir()
    verdict = ds.export_nwb(out, metadata=META, frames="link", inspect=True)
    assert verdict.ok, [str(m) for m in verdict.failing()]
    io, f = _read(out)
    try:
        ts = f.acquisition["TwoPhotonSeries"]
        assert list(ts.external_file[:]) == [os.path.join("..", "raw", "movie.tif")]
        assert ts.format == "external"
    finally:
        io.close()
    memory = ImagingDataset([Sequence.create("ndarray", _movie())], None)
    memory.add_ROIs(_rois(), "cells")
    with pytest.raises(ValueError, match="frames=True"):
        memory.export_nwb(tmp_path / "x.nwb", metadata=META, frames="link")
    assert not (tmp_path / "x.nwb").exists()


def test_metadata_from_yaml_and_json_files(dataset, tmp_path):
    yaml = pytest.importorskip("yaml")
    yml = tmp_path / "meta.yaml"
    yml.write_text(yaml.safe_dump(META))
    js = tmp_path / "meta.json"
    js.write_text(json.dumps(META))
    for source in (yml, js):
        out = dataset.export_nwb(tmp_path / f"{source.suffix[1:]}.nwb", metadata=source)
        io, f = _read(out)
        try:
            assert f.imaging_planes["ImagingPlane"].indicator == "GCaMP6f"
            assert f.devices["Microscope"] is not None
        finally:
            io.close()


def test_missing_metadata_names_every_field(dataset, tmp_path):
    meta = {"session_description": "x", "subject": {"species": "Mus musculus"}}
    with pytest.raises(NWBMetadataError) as info:
        dataset.export_nwb(tmp_path / "m.nwb", metadata=meta)
    missing = info.value.missing
    assert missing == [
        "session_start_time",
        "subject.subject_id",
        "subject.sex",
        "subject.age",
        "imaging_plane.excitation_lambda",
        "imaging_plane.indicator",
        "imaging_plane.location",
        "imaging_plane.imaging_rate",
        "imaging_plane.optical_channel.emission_lambda",
    ]
    text = str(info.value)
    assert all(name in text for name in missing) and "--metadata" in text
    assert not (tmp_path / "m.nwb").exists()


def test_acquisition_metadata_gives_the_rate(dataset, tmp_path):
    from sima_fast.sequence import AcquisitionMetadata

    dataset.acquisition_metadata = AcquisitionMetadata(frame_rate=15.0, pixel_size_um=(0.5, 0.5))
    meta = json.loads(json.dumps(META))
    del meta["imaging_plane"]["imaging_rate"]
    out = dataset.export_nwb(tmp_path / "a.nwb", metadata=meta)
    io, f = _read(out)
    try:
        plane = f.imaging_planes["ImagingPlane"]
        assert plane.imaging_rate == 15.0
        assert list(plane.grid_spacing[:]) == pytest.approx([0.5e-6, 0.5e-6])
        assert f.processing["ophys"]["Fluorescence"]["RoiResponseSeries"].rate == 15.0
    finally:
        io.close()


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"session_start_time": "2024-05-01T10:00:00"}, NWBMetadataError, "timezone"),
        ({"session_start_time": "yesterday"}, TypeError, "ISO 8601"),
        ({"lab": 3}, TypeError, "lab must be a string"),
        ({"imaging_plane": {"excitation_lambda": "920"}}, TypeError, "excitation_lambda"),
        ({"subjet": {}}, NWBMetadataError, "subjet"),
    ],
)
def test_malformed_metadata(dataset, tmp_path, change, error, match):
    meta = json.loads(json.dumps(META))
    for key, value in change.items():
        if isinstance(value, dict) and key in meta:
            meta[key].update(value)
        else:
            meta[key] = value
    with pytest.raises(error, match=match):
        dataset.export_nwb(tmp_path / "m.nwb", metadata=meta)


def test_bad_arguments(dataset, tmp_path):
    with pytest.raises(TypeError, match="frames"):
        dataset.export_nwb(tmp_path / "a.nwb", metadata=META, frames=1)
    with pytest.raises(TypeError, match="metadata"):
        dataset.export_nwb(tmp_path / "a.nwb", metadata=5)
    with pytest.raises(TypeError, match="path"):
        dataset.export_nwb(5, metadata=META)
    with pytest.raises(ValueError, match="masks"):
        dataset.export_nwb(tmp_path / "a.nwb", metadata=META, masks="dense")
    with pytest.raises(KeyError, match="signals_label"):
        dataset.export_nwb(tmp_path / "a.nwb", metadata=META, signals_label="nope")
    with pytest.raises(ValueError, match="channel"):
        dataset.export_nwb(tmp_path / "a.nwb", metadata=META, channel="red")
    with pytest.raises(FileNotFoundError, match="metadata"):
        dataset.export_nwb(tmp_path / "a.nwb", metadata=tmp_path / "none.yaml")
    assert not (tmp_path / "a.nwb").exists()


def test_existing_path_and_dataset_files_are_refused(dataset, tmp_path):
    out = tmp_path / "s.nwb"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        dataset.export_nwb(out, metadata=META)
    assert out.read_bytes() == b"keep me"
    dataset.export_nwb(out, metadata=META, overwrite=True, frames=True)
    assert out.read_bytes()[:4] == b"\x89HDF"
    inside = os.path.join(dataset.savedir, "metadata.json")
    with pytest.raises(ValueError, match="refusing"):
        dataset.export_nwb(inside, metadata=META, overwrite=True)
    # a file the dataset reads: an NWB sequence exported onto itself
    seq = Sequence.create("NWB", out, series="TwoPhotonSeries001")
    ds2 = ImagingDataset([seq], None)
    with pytest.raises(ValueError, match="refusing"):
        ds2.export_nwb(out, metadata=META, overwrite=True)


def test_failed_write_leaves_no_file(dataset, tmp_path, monkeypatch):
    out = tmp_path / "s.nwb"

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pynwb.NWBHDF5IO, "write", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        dataset.export_nwb(out, metadata=META, frames=True)
    assert os.listdir(tmp_path) == ["d.sima"] or sorted(os.listdir(tmp_path)) == sorted(
        ["d.sima", "cache"]
    )
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        dataset.export_nwb(out, metadata=META, overwrite=True)
    assert out.read_bytes() == b"old"


def test_missing_series_and_non_nwb_files(dataset, tmp_path):
    out = dataset.export_nwb(tmp_path / "s.nwb", metadata=META)  # no frames
    with pytest.raises(KeyError, match=r"s\.nwb"):
        Sequence.create("NWB", out)
    out = dataset.export_nwb(tmp_path / "f.nwb", metadata=META, frames=True)
    with pytest.raises(KeyError, match="TwoPhotonSeries000"):
        Sequence.create("NWB", out, series="Other")
    with pytest.raises(FileNotFoundError, match="path"):
        Sequence.create("NWB", tmp_path / "none.nwb")
    junk = tmp_path / "junk.nwb"
    junk.write_text("not hdf5")
    with pytest.raises(OSError, match=r"junk\.nwb"):
        Sequence.create("NWB", junk)
    with pytest.raises(OSError, match=r"junk\.nwb"):
        ROIList.load(junk, fmt="NWB")


def test_dfof_and_neuropil_keys_are_exported(dataset, tmp_path):
    record = dict(dataset.signals()["cells"])
    record["neuropil"] = [0.5 * r for r in record["raw"]]
    record["corrected"] = [r - 0.7 * n for r, n in zip(record["raw"], record["neuropil"])]
    record["dfof"] = [r / np.mean(r, axis=1, keepdims=True) - 1 for r in record["raw"]]
    record["demixed_neuropil"] = [0.25 * r for r in record["raw"]]
    record["demixed_corrected"] = [r - 0.5 * n for r, n in zip(record["raw"], record["neuropil"])]
    dataset._store_signals(0, "more", record)
    verdict = dataset.export_nwb(
        tmp_path / "n.nwb", metadata=META, signals_label="more", inspect=True
    )
    assert verdict.ok, [str(m) for m in verdict.failing()]
    io, f = _read(verdict.path)
    try:
        ophys = f.processing["ophys"]
        np.testing.assert_allclose(
            ophys["Fluorescence"]["NeuropilCorrected"].data[:].T,
            np.concatenate(record["corrected"], axis=1),
            rtol=1e-6,
        )
        assert "Neuropil" in ophys["Fluorescence"].roi_response_series
        for key, name in (
            ("demixed_neuropil", "DemixedNeuropil"),
            ("demixed_corrected", "DemixedNeuropilCorrected"),
        ):
            np.testing.assert_allclose(
                ophys["Fluorescence"][name].data[:].T,
                np.concatenate(record[key], axis=1),
                rtol=1e-6,
            )
        np.testing.assert_allclose(
            ophys["DfOverF"]["RoiResponseSeries"].data[:].T,
            np.concatenate(record["dfof"], axis=1),
            rtol=1e-5,
            atol=1e-7,
        )
    finally:
        io.close()


def test_sequence_starting_times_give_timestamps(dataset, tmp_path):
    meta = dict(META, sequence_starting_times=[0.0, 10.0])
    verdict = dataset.export_nwb(tmp_path / "t.nwb", metadata=meta, frames=True, inspect=True)
    assert verdict.ok, [str(m) for m in verdict.failing()]
    io, f = _read(verdict.path)
    try:
        raw = f.processing["ophys"]["Fluorescence"]["RoiResponseSeries"]
        stamps = raw.timestamps[:]
        assert stamps[25] == pytest.approx(10.0) and stamps[24] == pytest.approx(24 / 30)
        assert f.acquisition["TwoPhotonSeries001"].starting_time == 10.0
    finally:
        io.close()
    with pytest.raises(NWBMetadataError, match="sequence_starting_times"):
        dataset.export_nwb(tmp_path / "u.nwb", metadata=dict(META, sequence_starting_times=[0.0]))
    with pytest.raises(NWBMetadataError, match="before"):
        dataset.export_nwb(
            tmp_path / "u.nwb", metadata=dict(META, sequence_starting_times=[0.0, 0.1])
        )


def test_cli_export_nwb(dataset, tmp_path, capsys):
    from sima_fast.cli import main

    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps(META))
    out = tmp_path / "cli.nwb"
    assert main(["export-nwb", dataset.savedir, str(out), "--metadata", str(meta)]) == 0
    text = capsys.readouterr().out
    assert "nwbinspector: passed" in text and str(out) in text
    assert main(["export-nwb", dataset.savedir, str(out), "--metadata", str(meta)]) == 1
    err = capsys.readouterr().err
    assert "exists; pass --overwrite" in err and "overwrite=True" not in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"session_description": "x"}))
    code = main(["export-nwb", dataset.savedir, str(tmp_path / "b.nwb"), "--metadata", str(bad)])
    assert code == 1
    err = capsys.readouterr().err
    assert "subject.species" in err and "imaging_plane.indicator" in err


def test_link_frames_to_an_hdf5_dataset(tmp_path, monkeypatch):
    import h5py

    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    movie = _movie()[:, 0, :, :, 0]
    src = tmp_path / "movie.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("frames", data=movie.transpose(0, 2, 1))  # (t, x, y)
    ds = ImagingDataset([Sequence.create("HDF5", str(src), "txy", key="frames")], None)
    ds.add_ROIs(_rois(), "cells")
    out = ds.export_nwb(tmp_path / "l.nwb", metadata=META, frames="link")
    io, f = _read(out)
    try:
        data = f.acquisition["TwoPhotonSeries"].data
        assert os.path.basename(data.file.filename) == "movie.h5"  # a link, not a copy
        np.testing.assert_array_equal(data[:].transpose(0, 2, 1), movie)
    finally:
        io.close()
    np.testing.assert_array_equal(np.asarray(Sequence.create("NWB", out))[:, 0, :, :, 0], movie)
    src2 = tmp_path / "movie_tyx.h5"
    with h5py.File(src2, "w") as f:
        f.create_dataset("frames", data=movie)
    tyx = ImagingDataset([Sequence.create("HDF5", str(src2), "tyx", key="frames")], None)
    tyx.add_ROIs(_rois(), "cells")
    with pytest.raises(ValueError, match="'txy'"):
        tyx.export_nwb(tmp_path / "m.nwb", metadata=META, frames="link")


def test_demo_step_without_the_extra_says_how_to_install(monkeypatch, capsys):
    import importlib.util
    import sys
    import types

    from sima_fast import demo

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pynwb" else real(name, *a)
    )
    outputs = types.SimpleNamespace(out=sys.stdout)
    assert demo._export_nwb(None, None, outputs) is None
    text = capsys.readouterr().out
    assert text.count("\n") == 1 and "pip install 'sima_fast[nwb]'" in text


@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8", "float64"])
def test_frames_keep_their_dtype(tmp_path, monkeypatch, dtype):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    movie = (_movie() * 2).astype(dtype)
    ds = ImagingDataset([Sequence.create("ndarray", movie)], None)
    out = ds.export_nwb(tmp_path / "f.nwb", metadata=META, frames=True, projections=False)
    seq = Sequence.create("NWB", out)
    assert seq.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(seq.read_chunk(0, len(seq))), movie)


@settings(max_examples=3, deadline=None)
@given(
    weights=hnp.arrays(
        np.float64,
        (3, 4, 5),
        elements=st.sampled_from([0.0, 0.0, 1.0, 0.25, 3.5]),
    ),
    kind=st.sampled_from(["image", "pixel", "auto"]),
)
@example(weights=np.zeros((3, 4, 5)), kind="pixel")  # found by CI: empty ROIs
@example(weights=np.zeros((3, 4, 5)), kind="auto")
def test_mask_weights_survive_any_layout(tmp_path_factory, weights, kind):
    path = tmp_path_factory.mktemp("h") / "m.nwb"
    rois = ROIList([ROI(mask=w, label=str(i)) for i, w in enumerate(weights)])
    ds = ImagingDataset([Sequence.create("ndarray", np.ones((30, 1, 4, 5, 1)))], None)
    ds.add_ROIs(rois, "r")
    if kind == "pixel" and not all(w.any() for w in weights):
        # an empty ROI cannot be a pixel_mask: refused by name, and no file is left
        with pytest.raises(ValueError, match=r"^rois: ROI .*has no pixel.*masks='image'"):
            ds.export_nwb(path, metadata=META, masks=kind, projections=False)
        assert not path.exists()
        return
    ds.export_nwb(path, metadata=META, masks=kind, projections=False)
    back = ROIList.load(path, fmt="NWB", im_shape=(1, 4, 5))
    assert len(back) == 3
    for got, want in zip(back, weights):
        np.testing.assert_array_equal(np.asarray(got, dtype=float)[0], want)

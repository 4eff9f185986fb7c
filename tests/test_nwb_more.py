"""NWB: linked sources protected from writers, choosing a PlaneSegmentation by name."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")
h5py = pytest.importorskip("h5py")

from sima_fast import ImagingDataset, Sequence  # noqa: E402
from sima_fast._validate import ArgumentTypeError  # noqa: E402
from sima_fast.ROI import ROI, ROIList  # noqa: E402

T, Y, X = 24, 6, 7

META = {
    "session_description": "a small synthetic session",
    "session_start_time": "2025-03-04T09:00:00+00:00",
    "subject": {"subject_id": "s7", "species": "Mus musculus", "sex": "M", "age": "P60D"},
    "imaging_plane": {
        "excitation_lambda": 940.0,
        "indicator": "jGCaMP8m",
        "location": "VISp",
        "imaging_rate": 15.0,
        "optical_channel": {"emission_lambda": 520.0},
    },
}


def _frames(seed: int = 1) -> np.ndarray:
    """A (T, Y, X) float32 movie with a slow ripple."""
    rng = np.random.default_rng(seed)
    ripple = 1 + 0.2 * np.cos(np.arange(T) / 2.5)[:, None, None]
    return (80 * ripple + 5 * rng.random((T, Y, X))).astype(np.float32)


def _two_rois() -> ROIList:
    a = np.zeros((1, Y, X), bool)
    a[0, 1:3, 1:4] = True
    b = np.zeros((1, Y, X), bool)
    b[0, 3:6, 4:7] = True
    return ROIList([ROI(mask=a, label="first"), ROI(mask=b, label="second")])


@pytest.fixture
def linked(tmp_path, monkeypatch):
    """An HDF5 movie in raw/, an NWB file in out/ that links to it, and the movie."""
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    movie = _frames()
    (tmp_path / "raw").mkdir()
    (tmp_path / "out").mkdir()
    src = tmp_path / "raw" / "movie.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("imaging/frames", data=movie.transpose(0, 2, 1))  # (t, x, y)
    ds = ImagingDataset([Sequence.create("HDF5", str(src), "txy", "imaging", "frames")], None)
    ds.add_ROIs(_two_rois(), "cells")
    nwb = ds.export_nwb(tmp_path / "out" / "linked.nwb", metadata=META, frames="link")
    return src, nwb, movie


# -- 1. the files an NWB sequence reads ---------------------------------------------


def test_data_files_name_the_linked_source(linked, tmp_path, monkeypatch):
    src, nwb, movie = linked
    with h5py.File(nwb, "r") as f:
        link = f["acquisition/TwoPhotonSeries"].get("data", getlink=True)
        assert isinstance(link, h5py.ExternalLink) and not os.path.isabs(link.filename)
    monkeypatch.chdir(tmp_path / "raw")  # resolved next to the NWB file, not the cwd
    seq = Sequence.create("NWB", nwb)
    assert seq.data_files() == sorted([os.path.abspath(nwb), str(src)])
    np.testing.assert_array_equal(np.asarray(seq)[:, 0, :, :, 0], movie)


def test_data_files_of_a_series_stored_in_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    ds = ImagingDataset([Sequence.create("ndarray", _frames()[:, None, :, :, None])], None)
    ds.add_ROIs(_two_rois(), "cells")
    nwb = ds.export_nwb(tmp_path / "copy.nwb", metadata=META, frames=True)
    assert Sequence.create("NWB", nwb).data_files() == [os.path.abspath(nwb)]


def test_writers_refuse_the_linked_source(linked, tmp_path):
    src, nwb, _ = linked
    before = src.read_bytes()
    ds = ImagingDataset([Sequence.create("NWB", nwb)], None)
    ds.add_ROIs(_two_rois(), "cells")
    with pytest.raises(ValueError, match=r"^path: refusing to write .*movie\.h5"):
        ds.export_nwb(src, metadata=META, overwrite=True)
    with pytest.raises(ValueError, match=r"^filenames: refusing to write .*movie\.h5"):
        ds.export_frames([[str(src)]], fmt="HDF5")
    with pytest.raises(ValueError, match=r"^filenames: refusing"):
        ds.export_averages([str(src)], fmt="HDF5")
    assert src.read_bytes() == before
    # reached through another name (a symbolic link) it is refused all the same
    alias = tmp_path / "alias.h5"
    try:
        alias.symlink_to(src)
    except OSError:  # pragma: no cover - no symbolic links on this file system
        return
    with pytest.raises(ValueError, match=r"alias\.h5"):
        ds.export_frames([[str(alias)]], fmt="HDF5")
    assert src.read_bytes() == before


def test_a_saved_dataset_still_protects_the_source(linked, tmp_path):
    src, nwb, _ = linked
    ds = ImagingDataset([Sequence.create("NWB", nwb)], str(tmp_path / "d.sima"))
    again = ImagingDataset.load(ds.savedir)
    assert str(src) in again.sequences[0].data_files()
    with pytest.raises(ValueError, match="filenames: refusing"):
        again.export_frames([[str(src)]], fmt="HDF5")


def test_data_files_include_virtual_dataset_sources(tmp_path):
    """A TwoPhotonSeries whose data is a virtual dataset over another file."""
    movie = _frames(2).transpose(0, 2, 1)  # (t, x, y)
    part = tmp_path / "part.h5"
    with h5py.File(part, "w") as f:
        f.create_dataset("frames", data=movie)
    nwb = _other_tool_file(tmp_path / "vds.nwb", planes=["Cells"])
    layout = h5py.VirtualLayout(shape=movie.shape, dtype=movie.dtype)
    layout[:] = h5py.VirtualSource("part.h5", "frames", shape=movie.shape)
    with h5py.File(nwb, "a") as f:
        grp = f["acquisition/movie"]
        del grp["data"]
        grp.create_virtual_dataset("data", layout)
    seq = Sequence.create("NWB", nwb, series="movie")
    assert seq.data_files() == sorted([str(nwb), str(part)])
    np.testing.assert_array_equal(np.asarray(seq)[:, 0, :, :, 0], _frames(2))


# -- 2. choosing a PlaneSegmentation ----------------------------------------------------


def _other_tool_file(path, planes, modules=("ophys",)):
    """An NWB file with a movie and one PlaneSegmentation per name in each module."""
    from pynwb.ophys import ImageSegmentation, OpticalChannel, TwoPhotonSeries

    f = pynwb.NWBFile("elsewhere", "id-more", datetime(2025, 1, 2, tzinfo=timezone.utc))
    plane = f.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=OpticalChannel(name="ch", description="green", emission_lambda=520.0),
        device=f.create_device(name="scope"),
        excitation_lambda=940.0,
        indicator="GCaMP",
        location="VISp",
        imaging_rate=15.0,
    )
    movie = _frames(2).transpose(0, 2, 1)
    f.add_acquisition(
        TwoPhotonSeries(name="movie", data=movie, imaging_plane=plane, rate=15.0, unit="n.a.")
    )
    for m, module in enumerate(modules):
        seg = ImageSegmentation()
        f.create_processing_module(module, "processed").add(seg)
        for k, name in enumerate(planes):
            ps = seg.create_plane_segmentation(f"rois {name} of {module}", plane, name=name)
            for i in range(k + m + 1):  # a different number of rows in each table
                mask = np.zeros((X, Y), np.float32)
                mask[i, i : i + 2] = 1.0
                ps.add_roi(image_mask=mask)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def test_plane_segmentation_keyword_selects_a_table(tmp_path):
    path = _other_tool_file(tmp_path / "two.nwb", planes=["PlaneSegmentationA", "Soma"])
    rois = ROIList.load(path, fmt="NWB", plane_segmentation="Soma")
    assert len(rois) == 2
    assert len(ROIList.load(path, fmt="NWB", label="PlaneSegmentationA")) == 1
    same = ROIList.load(path, fmt="NWB", label="Soma", plane_segmentation="Soma")
    assert len(same) == 2
    np.testing.assert_array_equal(
        np.asarray(same[1], dtype=float), np.asarray(rois[1], dtype=float)
    )


def test_plane_segmentation_and_label_must_agree(tmp_path):
    path = _other_tool_file(tmp_path / "two.nwb", planes=["PlaneSegmentationA", "Soma"])
    with pytest.raises(ValueError, match=r"label='Soma'.*plane_segmentation='PlaneSegmentationA'"):
        ROIList.load(path, fmt="NWB", label="Soma", plane_segmentation="PlaneSegmentationA")
    with pytest.raises(ArgumentTypeError, match="plane_segmentation"):
        ROIList.load(path, fmt="NWB", plane_segmentation=3)


def test_several_tables_and_none_chosen_lists_them(tmp_path):
    path = _other_tool_file(tmp_path / "two.nwb", planes=["Dendrites", "Soma"])
    with pytest.raises(ValueError, match=r"plane_segmentation: .*\['Dendrites', 'Soma'\]"):
        ROIList.load(path, fmt="NWB")
    with pytest.raises(KeyError, match=r"plane_segmentation: .*'Axons'.*\['Dendrites', 'Soma'\]"):
        ROIList.load(path, fmt="NWB", plane_segmentation="Axons")
    # one table: chosen without a name, as before
    one = _other_tool_file(tmp_path / "one.nwb", planes=["Soma"])
    assert len(ROIList.load(one, fmt="NWB")) == 1


def test_same_name_in_two_modules_is_named_by_path(tmp_path):
    path = _other_tool_file(tmp_path / "dup.nwb", planes=["Soma"], modules=("ophys", "ophys2"))
    with pytest.raises(KeyError, match="give one's path"):
        ROIList.load(path, fmt="NWB", plane_segmentation="Soma")
    with pytest.raises(ValueError, match=r"ophys/ImageSegmentation/Soma"):
        ROIList.load(path, fmt="NWB")
    a = ROIList.load(path, fmt="NWB", plane_segmentation="ophys/ImageSegmentation/Soma")
    b = ROIList.load(path, fmt="NWB", plane_segmentation="ophys2/ImageSegmentation/Soma")
    assert (len(a), len(b)) == (1, 2)


# -- 3. frames of every channel ----------------------------------------------------------


def _two_channel_dataset(savedir=None, names=("green", "red")):
    """Two sequences of a two-channel movie, signals extracted from the second channel."""
    movie = np.stack([_frames(1), 3 * _frames(4) + 7], axis=-1)[:, None]  # (T, 1, Y, X, 2)
    seqs = [Sequence.create("ndarray", movie[:14]), Sequence.create("ndarray", movie[14:])]
    ds = ImagingDataset(seqs, savedir, channel_names=list(names))
    ds.add_ROIs(_two_rois(), "cells")
    ds.extract(label="cells", save_summary=False, signal_channel=names[1])
    return ds, movie


def _meta_for_channels(*emissions):
    meta = {k: v for k, v in META.items() if k != "imaging_plane"}
    plane = {k: v for k, v in META["imaging_plane"].items() if k != "optical_channel"}
    plane["optical_channel"] = [
        {"name": f"Channel{i}", "emission_lambda": e} for i, e in enumerate(emissions)
    ]
    return {**meta, "imaging_plane": plane}


def test_every_channel_gets_its_series_and_plane(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    ds, movie = _two_channel_dataset(str(tmp_path / "two.sima"))
    out = tmp_path / "two.nwb"
    verdict = ds.export_nwb(
        out, metadata=_meta_for_channels(525.0, 600.0), frames=True, channel="red", inspect=True
    )
    assert verdict.ok, [str(m) for m in verdict.failing()]
    from sima_fast.io.nwb import inspect_nwb

    dandi = inspect_nwb(out, config="dandi")
    assert dandi.ok, [str(m) for m in dandi.failing()]
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        f = io.read()
        assert sorted(f.acquisition) == [
            "TwoPhotonSeries000_green",
            "TwoPhotonSeries000_red",
            "TwoPhotonSeries001_green",
            "TwoPhotonSeries001_red",
        ]
        assert sorted(f.imaging_planes) == ["ImagingPlane_green", "ImagingPlane_red"]
        for c, (name, emission) in enumerate((("green", 525.0), ("red", 600.0))):
            plane = f.imaging_planes[f"ImagingPlane_{name}"]
            (optical,) = plane.optical_channel
            assert (optical.name, optical.emission_lambda) == (f"Channel{c}", emission)
            for k, (lo, hi) in enumerate(((0, 14), (14, T))):
                ts = f.acquisition[f"TwoPhotonSeries{k:03d}_{name}"]
                assert ts.imaging_plane is plane
                assert ts.starting_time == pytest.approx(lo / 15.0)
                np.testing.assert_array_equal(
                    ts.data[:], movie[lo:hi, 0, :, :, c].transpose(0, 2, 1)
                )
        ps = f.processing["ophys"]["ImageSegmentation"]["PlaneSegmentation"]
        assert ps.imaging_plane.name == "ImagingPlane_red"
        assert ps.reference_images[0].name == "TwoPhotonSeries000_red"
        raw = f.processing["ophys"]["Fluorescence"]["RoiResponseSeries"].data[:]
        np.testing.assert_allclose(raw.T, np.concatenate(ds.signals("red")["cells"]["raw"], 1))
    # the reader picks each channel's series by name
    red = Sequence.create("NWB", out, series="TwoPhotonSeries001_red")
    np.testing.assert_array_equal(np.asarray(red)[..., 0], movie[14:, ..., 1])
    with pytest.raises(ValueError, match="TwoPhotonSeries000_green"):
        Sequence.create("NWB", out)


def test_one_sequence_names_and_odd_channel_names(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    ds, _ = _two_channel_dataset(names=("GCaMP 6f", "td/Tomato"))
    one = ImagingDataset([ds.sequences[0]], None, channel_names=ds.channel_names)
    out = one.export_nwb(
        tmp_path / "one.nwb", metadata=_meta_for_channels(510.0, 580.0), frames=True
    )
    with pynwb.NWBHDF5IO(out, "r") as io:
        f = io.read()
        assert sorted(f.acquisition) == ["TwoPhotonSeries_GCaMP_6f", "TwoPhotonSeries_td_Tomato"]
        ts = f.acquisition["TwoPhotonSeries_td_Tomato"]
        assert "'td/Tomato'" in ts.description and "'td/Tomato'" in ts.imaging_plane.description
    # names that collide once cleaned are numbered instead
    same = ImagingDataset([ds.sequences[0]], None, channel_names=["a b", "a/b"])
    out = same.export_nwb(
        tmp_path / "same.nwb", metadata=_meta_for_channels(510.0, 580.0), frames=True
    )
    with pynwb.NWBHDF5IO(out, "r") as io:
        assert sorted(io.read().acquisition) == ["TwoPhotonSeries_ch0", "TwoPhotonSeries_ch1"]


def test_several_channels_need_an_optical_channel_each(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    from sima_fast.io.nwb import NWBMetadataError

    ds, _ = _two_channel_dataset()
    out = tmp_path / "x.nwb"
    # one mapping describes the exported channel only: the other one is named as missing
    with pytest.raises(NWBMetadataError, match="one TwoPhotonSeries each") as err:
        ds.export_nwb(out, metadata=META, frames=True)
    assert err.value.missing == ["imaging_plane.optical_channel[1].emission_lambda"]
    with pytest.raises(NWBMetadataError) as err:
        ds.export_nwb(out, metadata=META, frames=True, channel="red")
    assert err.value.missing == ["imaging_plane.optical_channel[0].emission_lambda"]
    three = _meta_for_channels(510.0, 580.0, 620.0)
    with pytest.raises(NWBMetadataError, match=r"3 optical channels .* 2 channels"):
        ds.export_nwb(out, metadata=three, frames=True)
    gap = _meta_for_channels(510.0, 580.0)
    del gap["imaging_plane"]["optical_channel"][0]["emission_lambda"]
    with pytest.raises(NWBMetadataError) as err:
        ds.export_nwb(out, metadata=gap, frames=True)
    assert err.value.missing == ["imaging_plane.optical_channel[0].emission_lambda"]
    bad = _meta_for_channels(510.0, "far red")
    with pytest.raises(ArgumentTypeError, match=r"optical_channel\[1\]\.emission_lambda"):
        ds.export_nwb(out, metadata=bad, frames=True)
    with pytest.raises(ArgumentTypeError, match="optical_channel"):
        ds.export_nwb(out, metadata={**META, "imaging_plane": {"optical_channel": [1]}})
    assert not out.exists()


def test_without_frames_one_plane_as_before(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    ds, _ = _two_channel_dataset()
    # a mapping is enough when no frames are written
    ds.export_nwb(tmp_path / "a.nwb", metadata=META, channel="red")
    # a list: the exported channel's entry describes the single imaging plane
    out = ds.export_nwb(
        tmp_path / "b.nwb", metadata=_meta_for_channels(525.0, 600.0), channel="red"
    )
    with pynwb.NWBHDF5IO(out, "r") as io:
        f = io.read()
        assert list(f.imaging_planes) == ["ImagingPlane"] and not f.acquisition
        (optical,) = f.imaging_planes["ImagingPlane"].optical_channel
        assert optical.emission_lambda == 600.0
    gap = _meta_for_channels(525.0, 600.0)
    del gap["imaging_plane"]["optical_channel"][1]["emission_lambda"]
    from sima_fast.io.nwb import NWBMetadataError

    with pytest.raises(NWBMetadataError) as err:
        ds.export_nwb(tmp_path / "c.nwb", metadata=gap, channel="red")
    assert err.value.missing == ["imaging_plane.optical_channel[1].emission_lambda"]


def test_data_files_of_a_vanished_file_still_name_it(linked):
    import pickle

    _, nwb, _ = linked
    again = pickle.loads(pickle.dumps(Sequence.create("NWB", nwb)))  # reopens on demand
    os.remove(nwb)
    assert again.data_files() == [os.path.abspath(nwb)]

"""Acquisition metadata through views, datasets, metadata.json and ``sima-fast info``."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st

import sima_fast as sima
from sima_fast._validate import ArgumentTypeError
from sima_fast.cli import main
from sima_fast.sequence.metadata import AcquisitionMetadata, index_metadata
from sima_fast.storage import DatasetFormatError

SOFTWARE = """SI.VERSION_MAJOR = '2021'
SI.hRoiManager.scanFrameRate = 30
SI.hRoiManager.scanZoomFactor = 2
SI.hStackManager.numSlices = 1
SI.hChannels.channelSave = [1;2]
SI.hChannels.channelName = {'Green' 'Red' 'C3' 'C4'}
"""


@pytest.fixture
def scanimage_tif(tmp_path):
    path = tmp_path / "raw" / "si.tif"
    path.parent.mkdir()
    pages = np.arange(20 * 2 * 6 * 8, dtype=np.uint16).reshape(40, 6, 8)
    tifffile.imwrite(path, pages, software=SOFTWARE)
    return str(path)


def ndarray_seq(frames=10, planes=1, channels=2, **meta):
    seq = sima.Sequence.create("ndarray", np.zeros((frames, planes, 6, 8, channels), np.float32))
    if meta:
        seq.acquisition_metadata = AcquisitionMetadata(**meta)
    return seq


# ---------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------


def test_indexing_adjusts_rate_pixel_size_planes_and_channels():
    seq = ndarray_seq(
        frames=12,
        planes=4,
        frame_rate=30.0,
        n_planes=4,
        plane_spacing_um=5.0,
        pixel_size_um=(0.5, 0.4),
        n_channels=2,
        channel_names=("g", "r"),
        zoom=2.0,
    )
    assert seq[2:9].acquisition_metadata == seq.acquisition_metadata
    half = seq[::2].acquisition_metadata
    assert half.frame_rate == 15.0 and half.zoom == 2.0
    assert seq[::-3].acquisition_metadata.frame_rate == 10.0
    assert seq[[1, 3, 5]].acquisition_metadata.frame_rate == 15.0
    assert seq[[0, 1, 5]].acquisition_metadata.frame_rate is None  # irregular
    assert seq[[4]].acquisition_metadata.frame_rate == 30.0
    coarse = seq[:, :, ::2, ::4].acquisition_metadata
    assert coarse.pixel_size_um == (1.0, 1.6)
    planes = seq[:, ::2].acquisition_metadata
    assert planes.n_planes == 2 and planes.plane_spacing_um == 10.0
    one_plane = seq[:, 1].acquisition_metadata
    assert one_plane.n_planes == 1 and one_plane.plane_spacing_um is None
    red = seq[:, :, :, :, 1].acquisition_metadata
    assert red.n_channels == 1 and red.channel_names == ("r",)
    swapped = seq[:, :, :, :, [1, 0]].acquisition_metadata
    assert swapped.channel_names == ("r", "g")


@given(
    step=st.integers(1, 5),
    start=st.integers(0, 4),
    rate=st.floats(0.5, 200.0),
)
def test_a_time_step_divides_the_frame_rate(step, start, rate):
    seq = ndarray_seq(frames=20, frame_rate=rate)
    view = seq[start::step]
    assert view.acquisition_metadata.frame_rate == pytest.approx(rate / step)
    assert view[::2].acquisition_metadata.frame_rate == pytest.approx(rate / step / 2)


def test_index_metadata_of_empty_selections():
    meta = AcquisitionMetadata(n_planes=2, n_channels=2, channel_names=("a", "b"))
    empty = np.zeros(0, dtype=np.int64)
    out = index_metadata(
        meta, (slice(0, 4, 1), empty, slice(0, 2, 1), slice(0, 2, 1), empty), (4, 2, 2, 2, 2)
    )
    assert out.n_planes is None and out.n_channels is None and out.channel_names is None
    assert index_metadata(None, (), (1, 1, 1, 1, 1)) is None


def test_other_views_pass_it_through():
    seq = ndarray_seq(frame_rate=20.0, pixel_size_um=(1.0, 1.0), n_channels=2)
    meta = seq.acquisition_metadata
    disp = np.zeros((10, 2), dtype=int)
    disp[::2, 1] = 1
    assert seq.apply_displacements(disp).acquisition_metadata == meta
    assert seq.mask([(0, None, None)]).acquisition_metadata == meta
    assert seq.mask([(0, None, None)]).fill_gaps().acquisition_metadata == meta
    assert ndarray_seq().apply_displacements(disp).acquisition_metadata is None


def test_join_puts_channels_side_by_side():
    a = ndarray_seq(channels=1, frame_rate=30.0, zoom=2.0, n_channels=1, channel_names=("g",))
    b = ndarray_seq(channels=2, frame_rate=30.0, zoom=3.0, n_channels=2, channel_names=("r", "b"))
    joined = sima.Sequence.join(a, b).acquisition_metadata
    assert joined.frame_rate == 30.0
    assert joined.zoom is None  # the two disagree
    assert joined.n_channels == 3 and joined.channel_names == ("g", "r", "b")
    unnamed = sima.Sequence.join(a, ndarray_seq(channels=1)).acquisition_metadata
    assert unnamed.n_channels == 2 and unnamed.channel_names is None
    assert (
        sima.Sequence.join(ndarray_seq(channels=1), ndarray_seq(channels=1)).acquisition_metadata
        is None
    )


def test_user_values_win_over_the_file(scanimage_tif):
    seq = sima.Sequence.create("TIFF", scanimage_tif, num_channels=2)
    assert seq.acquisition_metadata.frame_rate == 30.0
    seq.acquisition_metadata = {"frame_rate": 29.97, "pixel_size_um": [0.5, 0.5]}
    meta = seq.acquisition_metadata
    assert (meta.frame_rate, meta.zoom, meta.pixel_size_um) == (29.97, 2.0, (0.5, 0.5))
    assert meta.source == "user; ScanImage 2016+"
    assert seq[::3].acquisition_metadata.frame_rate == pytest.approx(9.99)
    seq.acquisition_metadata = None
    assert seq.acquisition_metadata.frame_rate == 30.0
    with pytest.raises(ArgumentTypeError, match="acquisition_metadata"):
        seq.acquisition_metadata = 30.0
    with pytest.raises(ValueError, match="frame_rate must be > 0"):
        seq.acquisition_metadata = {"frame_rate": -1}


def test_pickled_sequences_keep_it(scanimage_tif):
    import pickle

    seq = sima.Sequence.create("TIFF", scanimage_tif, num_channels=2)[::2]
    seq.acquisition_metadata = {"zoom": 4.0}
    copy = pickle.loads(pickle.dumps(seq))
    assert copy.acquisition_metadata == seq.acquisition_metadata
    assert copy.acquisition_metadata.frame_rate == 15.0


# ---------------------------------------------------------------------------
# datasets and metadata.json
# ---------------------------------------------------------------------------


def test_dataset_merges_its_sequences():
    a = ndarray_seq(frame_rate=30.0, zoom=2.0)
    b = ndarray_seq(frame_rate=30.0, zoom=4.0, pixel_size_um=(1.0, 1.0))
    ds = sima.ImagingDataset([a, b], None)
    meta = ds.acquisition_metadata
    assert meta.frame_rate == 30.0 and meta.zoom is None and meta.pixel_size_um == (1.0, 1.0)
    ds.acquisition_metadata = AcquisitionMetadata(zoom=3.0)
    assert ds.acquisition_metadata.zoom == 3.0 and ds.acquisition_metadata.frame_rate == 30.0
    assert ds[:, ::2].acquisition_metadata.frame_rate == 15.0
    assert ds[1].acquisition_metadata.zoom == 3.0
    assert sima.ImagingDataset([ndarray_seq()], None).acquisition_metadata is None
    with pytest.raises(ArgumentTypeError):
        ds.acquisition_metadata = "30 Hz"


def _metadata_json(savedir):
    with open(os.path.join(savedir, "metadata.json"), encoding="utf-8") as fh:
        return json.load(fh)


def test_it_persists_in_the_dataset(tmp_path, scanimage_tif):
    seq = sima.Sequence.create("TIFF", scanimage_tif, num_channels=2)
    ds = sima.ImagingDataset([seq], str(tmp_path / "s"), channel_names=["g", "r"])
    assert "acquisition_metadata" not in _metadata_json(ds.savedir)  # nothing set
    assert sima.ImagingDataset.load(ds.savedir).acquisition_metadata.frame_rate == 30.0

    ds.acquisition_metadata = {"pixel_size_um": [0.7, 0.7], "extra": {"laser_nm": 920}}
    record = _metadata_json(ds.savedir)["acquisition_metadata"]
    assert record["dataset"]["pixel_size_um"] == [0.7, 0.7] and record["sequences"] is None
    again = sima.ImagingDataset.load(ds.savedir)
    meta = again.acquisition_metadata
    assert meta.pixel_size_um == (0.7, 0.7) and meta.frame_rate == 30.0
    assert meta.extra["laser_nm"] == 920

    again.sequences[0].acquisition_metadata = {"frame_rate": 29.0}
    again.save()
    third = sima.ImagingDataset.load(ds.savedir)
    assert third.sequences[0].acquisition_metadata.frame_rate == 29.0
    assert third.acquisition_metadata.frame_rate == 29.0
    third.acquisition_metadata = None
    assert sima.ImagingDataset.load(ds.savedir).acquisition_metadata.pixel_size_um is None


def test_values_set_on_a_wrapped_sequence_are_saved(tmp_path):
    raw = ndarray_seq(frame_rate=12.0)
    disp = np.zeros((10, 2), dtype=int)
    ds = sima.ImagingDataset([raw.apply_displacements(disp)[:, :, 1:]], str(tmp_path / "w"))
    loaded = sima.ImagingDataset.load(ds.savedir)
    assert loaded.acquisition_metadata.frame_rate == 12.0
    copy = tmp_path / "copy"
    loaded.save(str(copy))
    assert sima.ImagingDataset.load(str(copy) + ".sima").acquisition_metadata.frame_rate == 12.0


def test_old_directories_without_the_field_load(tmp_path):
    ds = sima.ImagingDataset([ndarray_seq()], str(tmp_path / "old"))
    ds.acquisition_metadata = {"zoom": 2.0}
    path = os.path.join(ds.savedir, "metadata.json")
    meta = _metadata_json(ds.savedir)
    del meta["acquisition_metadata"]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    assert sima.ImagingDataset.load(ds.savedir).acquisition_metadata is None


@pytest.mark.parametrize(
    "field, words",
    [
        ([1, 2], "must be an object"),
        ({"dataset": None, "seqs": None}, "unknown key"),
        ({"dataset": {"frame_rate": "fast"}}, "acquisition_metadata.dataset"),
        ({"dataset": {"frame_rate": -1}}, "acquisition_metadata.dataset"),
        ({"dataset": {"rate": 1}}, "unknown field"),
        ({"dataset": None, "sequences": [None, None]}, "list of 1 entries"),
        ({"dataset": None, "sequences": [{"zoom": [1]}]}, "acquisition_metadata.sequences[0]"),
        (
            {"dataset": None, "sequences": [{"extra": {"a": {"b": None}}, "n_planes": 0}]},
            "n_planes",
        ),
    ],
)
def test_a_malformed_field_is_refused_on_load(tmp_path, field, words):
    ds = sima.ImagingDataset([ndarray_seq()], str(tmp_path / "bad"))
    meta = _metadata_json(ds.savedir)
    meta["acquisition_metadata"] = field
    with open(os.path.join(ds.savedir, "metadata.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    with pytest.raises(DatasetFormatError) as info:
        sima.ImagingDataset.load(ds.savedir)
    assert words in str(info.value) and "metadata.json" in str(info.value)


def test_read_only_datasets_refuse_it(tmp_path):
    ds = sima.ImagingDataset([ndarray_seq()], str(tmp_path / "ro"))
    ro = sima.ImagingDataset.load(ds.savedir, read_only=True)
    with pytest.raises(PermissionError):
        ro.acquisition_metadata = {"zoom": 2.0}
    assert ro.acquisition_metadata is None


def test_another_process_setting_it_is_kept(tmp_path):
    ds = sima.ImagingDataset([ndarray_seq()], str(tmp_path / "shared"), channel_names=["a", "b"])
    first = sima.ImagingDataset.load(ds.savedir)
    second = sima.ImagingDataset.load(ds.savedir)
    first.acquisition_metadata = {"frame_rate": 15.0}
    second.channel_names = ["green", "red"]  # saved in place, acquisition unchanged here
    final = sima.ImagingDataset.load(ds.savedir)
    assert final.channel_names == ["green", "red"]
    assert final.acquisition_metadata.frame_rate == 15.0
    assert second.acquisition_metadata.frame_rate == 15.0


# ---------------------------------------------------------------------------
# sima-fast info
# ---------------------------------------------------------------------------


def test_info_shows_the_acquisition_block(tmp_path, scanimage_tif, capsys):
    out = str(tmp_path / "cli.sima")
    seq = sima.Sequence.create("TIFF", scanimage_tif, num_channels=2)
    sima.ImagingDataset([seq], out)
    assert main(["info", out]) == 0
    text = capsys.readouterr().out
    block = text[text.index("  acquisition:") :].splitlines()
    assert block[1:] == [
        "    frame rate: 30 Hz",
        "    zoom: 2",
        "    planes: 1",
        "    channels: 2 (Green, Red)",
        "    pixel size: unknown",
        "    source: ScanImage 2016+",
    ]
    bare = str(tmp_path / "bare.sima")
    sima.ImagingDataset([ndarray_seq()], bare)
    assert main(["info", bare]) == 0
    assert "  acquisition: unknown" in capsys.readouterr().out

"""AcquisitionMetadata: the type, and reading it from TIFF (ScanImage, ImageJ, OME) and HDF5."""

from __future__ import annotations

import dataclasses
import json
import warnings

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
from hypothesis import given
from hypothesis import strategies as st

import sima_fast as sima
from sima_fast._validate import ArgumentTypeError
from sima_fast.sequence.metadata import (
    FIELDS,
    AcquisitionMetadata,
    AcquisitionMetadataWarning,
    check_acquisition_metadata,
    read_hdf5_metadata,
    read_tiff_metadata,
)

# 6 frames x 2 pages (planes or channels), 8 x 10 pixels
PAGES = np.arange(12 * 8 * 10, dtype=np.uint16).reshape(12, 8, 10)


# ---------------------------------------------------------------------------
# the type
# ---------------------------------------------------------------------------


def test_values_are_normalised():
    meta = AcquisitionMetadata(
        frame_rate=np.float32(15.5),
        zoom=2,
        n_planes=np.int64(3),
        n_channels=2,
        pixel_size_um=[0.5, np.float64(0.75)],
        plane_spacing_um=4,
        channel_names=["green", "red"],
        source="ScanImage 2016+",
        extra={"version": np.int16(5), "rates": np.array([1.5, 2.0])},
    )
    assert meta.frame_rate == 15.5 and type(meta.frame_rate) is float
    assert meta.zoom == 2.0 and type(meta.zoom) is float
    assert meta.n_planes == 3 and type(meta.n_planes) is int
    assert meta.pixel_size_um == (0.5, 0.75)
    assert meta.channel_names == ("green", "red")
    assert meta.extra == {"version": 5, "rates": [1.5, 2.0]}
    assert json.loads(json.dumps(meta.todict())) == meta.todict()
    assert list(meta.todict()) == list(FIELDS)


def test_defaults_and_empty():
    meta = AcquisitionMetadata()
    assert meta.empty and meta.source == "user" and meta.extra == {}
    assert not AcquisitionMetadata(zoom=1.0).empty
    assert not AcquisitionMetadata(extra={"a": 1}).empty


def test_frozen_and_extra_is_a_copy():
    extra = {"laser_nm": 920}
    meta = AcquisitionMetadata(extra=extra)
    extra["laser_nm"] = 1040
    assert meta.extra == {"laser_nm": 920}
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.frame_rate = 3.0


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"frame_rate": "30"}, ArgumentTypeError, "frame_rate"),
        ({"frame_rate": True}, ArgumentTypeError, "frame_rate"),
        ({"frame_rate": 0.0}, ValueError, "frame_rate must be > 0"),
        ({"frame_rate": float("nan")}, ValueError, "finite"),
        ({"zoom": -1}, ValueError, "zoom must be > 0"),
        ({"n_planes": 1.5}, ArgumentTypeError, "n_planes must be an integer"),
        ({"n_channels": 0}, ValueError, "n_channels"),
        ({"pixel_size_um": 0.5}, ArgumentTypeError, "pixel_size_um must be a pair"),
        ({"pixel_size_um": (0.5, 0.5, 1.0)}, ArgumentTypeError, "pixel_size_um"),
        ({"pixel_size_um": (0.5, 0)}, ValueError, "pixel_size_um[1]"),
        ({"plane_spacing_um": float("inf")}, ValueError, "plane_spacing_um"),
        ({"channel_names": "GCaMP"}, ArgumentTypeError, "channel_names"),
        ({"channel_names": ["a", 2]}, ArgumentTypeError, "channel_names[1]"),
        ({"channel_names": []}, ValueError, "at least one"),
        ({"channel_names": ["a"], "n_channels": 2}, ValueError, "n_channels is 2"),
        ({"source": ""}, ArgumentTypeError, "source"),
        ({"extra": [1, 2]}, ArgumentTypeError, "extra must be a dict"),
        ({"extra": {"a": object()}}, ArgumentTypeError, "extra['a']"),
        ({"extra": {1: "a"}}, ArgumentTypeError, "keys must be strings"),
        ({"extra": {"a": float("nan")}}, ValueError, "finite"),
    ],
)
def test_bad_values_are_refused(kwargs, error, words):
    with pytest.raises(error) as info:
        AcquisitionMetadata(**kwargs)
    assert words in str(info.value)


def test_fromdict_refuses_unknown_fields_and_non_dicts():
    with pytest.raises(ValueError, match="unknown field"):
        AcquisitionMetadata.fromdict({"frame_rate": 30.0, "framerate": 30.0})
    with pytest.raises(ArgumentTypeError, match="JSON object"):
        AcquisitionMetadata.fromdict([("frame_rate", 30.0)])
    # null source and extra (a hand-written file) take the defaults
    meta = AcquisitionMetadata.fromdict({"zoom": 2, "source": None, "extra": None})
    assert meta.source == "user" and meta.extra == {}


positive = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)
metadata = st.builds(
    AcquisitionMetadata,
    frame_rate=st.none() | positive,
    zoom=st.none() | positive,
    n_planes=st.none() | st.integers(1, 64),
    pixel_size_um=st.none() | st.tuples(positive, positive),
    plane_spacing_um=st.none() | positive,
    source=st.sampled_from(["user", "ScanImage 2016+", "ImageJ", "OME-TIFF"]),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=5), st.integers() | st.text(max_size=5) | positive, max_size=3
    ),
)


@given(metadata)
def test_todict_fromdict_round_trip(meta):
    text = json.dumps(meta.todict())
    assert AcquisitionMetadata.fromdict(json.loads(text)) == meta


@given(metadata, metadata)
def test_merge_lets_the_other_values_win(a, b):
    merged = a.merge(b)
    for name in ("frame_rate", "zoom", "n_planes", "pixel_size_um", "plane_spacing_um"):
        mine, theirs = getattr(a, name), getattr(b, name)
        assert getattr(merged, name) == (theirs if theirs is not None else mine)
    if b.empty:
        assert merged is a
    elif a.empty:
        assert merged is b
    else:
        assert merged.extra == {**a.extra, **b.extra}
    assert a.merge(None) is a


def test_merge_sources_and_channels():
    file_meta = AcquisitionMetadata(
        frame_rate=30.0, n_channels=2, channel_names=("g", "r"), source="ScanImage 2016+"
    )
    user = AcquisitionMetadata(frame_rate=29.97)
    merged = file_meta.merge(user)
    assert merged.frame_rate == 29.97 and merged.channel_names == ("g", "r")
    assert merged.source == "user; ScanImage 2016+"
    # a count that no longer fits the names drops the names; names set win over a count
    assert file_meta.merge(AcquisitionMetadata(n_channels=1)).channel_names is None
    renamed = file_meta.merge(AcquisitionMetadata(channel_names=("only",)))
    assert renamed.n_channels == 1 and renamed.channel_names == ("only",)
    assert file_meta.merge(AcquisitionMetadata()) is file_meta
    assert AcquisitionMetadata().merge(user) is user
    with pytest.raises(ArgumentTypeError, match="other"):
        file_meta.merge({"frame_rate": 1.0})


def test_check_acquisition_metadata():
    assert check_acquisition_metadata(None) is None
    meta = check_acquisition_metadata({"frame_rate": 10})
    assert meta == AcquisitionMetadata(frame_rate=10.0)
    with pytest.raises(ArgumentTypeError, match="acquisition_metadata must be"):
        check_acquisition_metadata(30.0)
    with pytest.raises(ValueError, match=r"acquisition_metadata: .*unknown"):
        check_acquisition_metadata({"rate": 30.0})
    with pytest.raises(ArgumentTypeError, match="acquisition_metadata: frame_rate"):
        check_acquisition_metadata({"frame_rate": "fast"})


def test_summary_lines():
    lines = AcquisitionMetadata(
        frame_rate=30.0,
        n_planes=3,
        plane_spacing_um=5.0,
        n_channels=1,
        channel_names=("GCaMP",),
        pixel_size_um=(0.5, 0.6),
    ).summary()
    assert lines[0] == "frame rate: 30 Hz"
    assert "zoom: unknown" in lines
    assert "planes: 3 (5 µm apart)" in lines
    assert "channels: 1 (GCaMP)" in lines
    assert "pixel size: 0.5 x 0.6 µm (y x)" in lines
    assert lines[-1] == "source: user"


# ---------------------------------------------------------------------------
# ScanImage
# ---------------------------------------------------------------------------

SI_2016 = """SI.VERSION_MAJOR = '2020'
SI.VERSION_MINOR = '1'
SI.hRoiManager.scanFrameRate = 29.5
SI.hRoiManager.scanVolumeRate = 9.8333
SI.hRoiManager.scanZoomFactor = 3
SI.hStackManager.numSlices = {slices}
SI.hStackManager.stackZStepSize = -12
SI.hFastZ.enable = {fastz}
SI.hChannels.channelSave = {save}
SI.hChannels.channelName = {{'Green PMT' 'Red PMT' 'Channel 3' 'Channel 4'}}
SI.objectiveResolution = 20
"""

ROI_GROUPS = {
    "RoiGroups": {
        "imagingRoiGroup": {
            "rois": {"scanfields": {"sizeXY": [4.0, 3.0], "pixelResolutionXY": [10, 8]}}
        }
    }
}


def write_scanimage(path, slices=1, fastz="false", save="[1;2]", artist=None):
    tifffile.imwrite(
        path,
        PAGES,
        software=SI_2016.format(slices=slices, fastz=fastz, save=save),
        description="frameNumbers = 1\nframeTimestamps_sec = 0.000\n",
        extratags=[(315, "s", 0, json.dumps(ROI_GROUPS) if artist is None else artist, True)],
    )
    return str(path)


def test_scanimage_2016_two_channels(tmp_path):
    path = write_scanimage(tmp_path / "si.tif")
    seq = sima.Sequence.create("TIFF", path, num_channels=2)
    meta = seq.acquisition_metadata
    assert meta.source == "ScanImage 2016+"
    assert meta.frame_rate == 29.5
    assert meta.zoom == 3.0
    assert meta.n_planes == 1 and meta.n_channels == 2
    assert meta.channel_names == ("Green PMT", "Red PMT")
    # 3 degrees * 20 um/degree over 8 rows, 4 degrees * 20 over 10 columns
    assert meta.pixel_size_um == pytest.approx((7.5, 8.0))
    assert meta.plane_spacing_um is None
    assert meta.extra["SI.VERSION_MAJOR"] == "2020"
    assert meta.extra["SI.objectiveResolution"] == 20
    assert seq.acquisition_metadata is meta  # read once, then kept


def test_scanimage_2016_volumes_use_the_volume_rate(tmp_path):
    path = write_scanimage(tmp_path / "vol.tif", slices=2, fastz="true", save="1")
    meta = read_tiff_metadata(path)
    assert meta.n_planes == 2 and meta.n_channels == 1
    assert meta.frame_rate == pytest.approx(9.8333)
    assert meta.plane_spacing_um == 12.0
    assert meta.channel_names == ("Green PMT",)
    seq = sima.Sequence.create("TIFF", path, num_planes=2)
    assert seq.acquisition_metadata.n_planes == seq.shape[1] == 2


def test_scanimage_2016_slow_stack_is_marked(tmp_path):
    path = tmp_path / "stack.tif"
    software = (
        SI_2016.format(slices=2, fastz="false", save="1") + "SI.hStackManager.enable = true\n"
    )
    tifffile.imwrite(path, PAGES, software=software)
    meta = read_tiff_metadata(str(path))
    assert meta.n_planes == 2 and meta.frame_rate == 29.5
    assert meta.extra["stack_mode"] == "slow"
    assert meta.pixel_size_um is None  # no ROI groups in this file


def test_scanimage_2016_bad_roi_groups_keep_the_frame_data(tmp_path):
    path = write_scanimage(tmp_path / "badroi.tif", artist="{not json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = read_tiff_metadata(path)
    assert meta.frame_rate == 29.5 and meta.pixel_size_um is None


def test_scanimage_3(tmp_path):
    path = tmp_path / "si3.tif"
    header = "\r".join(
        [
            "state.configPath='C:\\Configs'",
            "state.software.version=3.8",
            "state.acq.frameRate=15.625",
            "state.acq.zoomFactor=4",
            "state.acq.numberOfChannelsSave=2",
            "state.acq.numberOfZSlices=1",
            "state.acq.zStepSize=2",
        ]
    )
    tifffile.imwrite(path, PAGES, description=header)
    meta = sima.Sequence.create("TIFF", path, num_channels=2).acquisition_metadata
    assert meta.source == "ScanImage 3.x/4/5"
    assert (meta.frame_rate, meta.zoom, meta.n_channels, meta.n_planes) == (15.625, 4.0, 2, 1)
    assert meta.plane_spacing_um is None
    assert meta.extra["state.software.version"] == 3.8


@pytest.mark.parametrize(
    "prefix, zoom_key", [("scanimage.SI4.", "scanZoomFactor"), ("scanimage.SI5.", "zoomFactor")]
)
def test_scanimage_4_and_5(tmp_path, prefix, zoom_key):
    lines = [
        f"{prefix}scanFrameRate = 30",
        f"{prefix}{zoom_key} = 1.5",
        f"{prefix}channelsSave = [1;2]",
        f"{prefix}stackNumSlices = 3",
        f"{prefix}fastZEnable = 1",
        f"{prefix}stackZStepSize = -5",
    ]
    path = tmp_path / "si45.tif"
    tifffile.imwrite(path, PAGES, description="\n".join(lines))
    meta = read_tiff_metadata(str(path))
    assert meta.zoom == 1.5 and meta.n_channels == 2 and meta.n_planes == 3
    assert meta.frame_rate == 10.0  # three planes per volume
    assert meta.plane_spacing_um == 5.0


# ---------------------------------------------------------------------------
# ImageJ, OME, resolution tags
# ---------------------------------------------------------------------------


def test_imagej_hyperstack(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        PAGES.reshape(3, 2, 2, 8, 10),
        imagej=True,
        resolution=(1 / 0.4, 1 / 0.3),  # pixels per micrometre (x, y)
        metadata={"axes": "TZCYX", "finterval": 0.25, "spacing": 2.5, "unit": "micron"},
    )
    meta = sima.Sequence.create("TIFF", path, num_planes=2, num_channels=2).acquisition_metadata
    assert meta.source == "ImageJ"
    assert meta.frame_rate == 4.0
    assert (meta.n_planes, meta.n_channels) == (2, 2)
    assert meta.pixel_size_um == pytest.approx((0.3, 0.4))
    assert meta.plane_spacing_um == 2.5


def test_imagej_units_in_nanometres(tmp_path):
    path = tmp_path / "ij_nm.tif"
    tifffile.imwrite(
        path,
        PAGES,
        imagej=True,
        resolution=(1 / 500, 1 / 500),
        metadata={"axes": "TYX", "unit": "nm"},
    )
    meta = read_tiff_metadata(str(path))
    assert meta.pixel_size_um == pytest.approx((0.5, 0.5))
    assert meta.frame_rate is None


def test_ome_tiff(tmp_path):
    path = tmp_path / "movie.ome.tif"
    tifffile.imwrite(
        path,
        PAGES.reshape(6, 2, 8, 10),
        ome=True,
        metadata={
            "axes": "TCYX",
            "PhysicalSizeX": 650.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 0.7,
            "TimeIncrement": 50.0,
            "TimeIncrementUnit": "ms",
            "Channel": {"Name": ["GCaMP", "tdTomato"]},
        },
    )
    meta = sima.Sequence.create("TIFF", path, num_channels=2).acquisition_metadata
    assert meta.source == "OME-TIFF"
    assert meta.frame_rate == pytest.approx(20.0)
    assert meta.pixel_size_um == pytest.approx((0.7, 0.65))
    assert (meta.n_planes, meta.n_channels) == (1, 2)
    assert meta.channel_names == ("GCaMP", "tdTomato")


def test_resolution_tags_as_a_last_resort(tmp_path):
    calibrated = tmp_path / "cm.tif"
    tifffile.imwrite(
        calibrated, PAGES, resolution=(1e4 / 0.8, 1e4 / 0.6), resolutionunit="CENTIMETER"
    )
    meta = read_tiff_metadata(str(calibrated))
    assert meta.source == "TIFF tags" and meta.pixel_size_um == pytest.approx((0.6, 0.8))
    assert meta.frame_rate is None
    screen = tmp_path / "dpi.tif"  # 72 dpi is a software default, not a calibration
    tifffile.imwrite(screen, PAGES, resolution=(72, 72), resolutionunit="INCH")
    assert read_tiff_metadata(str(screen)) is None
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, PAGES)
    assert sima.Sequence.create("TIFF", plain).acquisition_metadata is None


def test_tiffs_sequences_read_their_first_file(tmp_path):
    for t in range(3):
        tifffile.imwrite(
            tmp_path / f"f{t}.tif",
            PAGES[t],
            imagej=True,
            resolution=(2.0, 2.0),
            metadata={"finterval": 0.5, "unit": "um"},
        )
    seq = sima.Sequence.create("TIFFs", [[str(tmp_path / "f*.tif")]])
    assert seq.acquisition_metadata.frame_rate == 2.0
    assert seq.acquisition_metadata.pixel_size_um == (0.5, 0.5)


# ---------------------------------------------------------------------------
# malformed metadata warns and gives None; the movie still loads
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "description",
    [
        '<?xml version="1.0"?><OME><Image><Pixels SizeZ="1"></Image></OME>',  # not well-formed
        '<?xml version="1.0"?><!DOCTYPE OME [<!ENTITY a "aaaa">]><OME>&a;</OME>',  # entities
    ],
)
def test_malformed_ome_warns_and_gives_none(tmp_path, description):
    path = tmp_path / "bad.ome.tif"
    tifffile.imwrite(path, PAGES, description=description, metadata=None)
    seq = sima.Sequence.create("TIFF", path)
    with pytest.warns(AcquisitionMetadataWarning, match="bad.ome.tif"):
        assert seq.acquisition_metadata is None
    assert seq.read_chunk(0, 2).shape == (2, 1, 8, 10, 1)


@pytest.mark.parametrize(
    "software",
    [
        "SI.hRoiManager.scanFrameRate = 'fast'\nSI.hChannels.channelSave = {'a' 'b'}\n",
        "SI.hRoiManager.scanFrameRate = -3\nSI.hRoiManager.scanZoomFactor = [1 2]\n",
        "SI.hRoiManager.scanFrameRate = [\nSI.hStackManager.numSlices = 2.5\n",
        "SI.hChannels.channelName = 7\nSI.hChannels.channelSave = [9;10]\n",
    ],
)
def test_odd_scanimage_values_are_left_unknown(tmp_path, software):
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, PAGES, software=software)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        meta = read_tiff_metadata(str(path))
    assert meta is None or (meta.frame_rate is None and meta.zoom is None)


def test_odd_scanimage_3_values_are_left_unknown(tmp_path):
    path = tmp_path / "odd3.tif"
    tifffile.imwrite(path, PAGES, description="state.acq.frameRate=abc\rstate.acq.zoomFactor=0")
    meta = read_tiff_metadata(str(path))
    assert meta.frame_rate is None and meta.zoom is None


def test_unreadable_file_warns(tmp_path):
    path = tmp_path / "not.tif"
    path.write_bytes(b"II*\x00garbage")
    with pytest.warns(AcquisitionMetadataWarning, match="cannot be read"):
        assert read_tiff_metadata(str(path)) is None


# ---------------------------------------------------------------------------
# HDF5 attributes
# ---------------------------------------------------------------------------


def test_hdf5_attributes(tmp_path):
    path = tmp_path / "movie.h5"
    with h5py.File(path, "w") as f:
        f.attrs["zoom"] = 2.0
        grp = f.create_group("imaging")
        grp.attrs["frame_rate"] = 7.5
        ds = grp.create_dataset("data", data=np.zeros((4, 3, 8, 10), np.uint16))
        ds.attrs["element_size_um"] = [5.0, 0.5, 0.6]
        ds.attrs["channel_names"] = ["GCaMP"]
    seq = sima.Sequence.create("HDF5", path, "tzyx", group="imaging", key="data")
    meta = seq.acquisition_metadata
    assert meta.source == "HDF5 attributes"
    assert (meta.frame_rate, meta.zoom) == (7.5, 2.0)
    assert meta.pixel_size_um == (0.5, 0.6) and meta.plane_spacing_um == 5.0
    assert meta.channel_names == ("GCaMP",)


def test_hdf5_json_attribute_and_nothing(tmp_path):
    path = tmp_path / "movie.h5"
    stored = AcquisitionMetadata(frame_rate=31.0, n_planes=1, source="ScanImage 2016+")
    with h5py.File(path, "w") as f:
        f.create_dataset("plain", data=np.zeros((2, 4, 4)))
        ds = f.create_dataset("tagged", data=np.zeros((2, 4, 4)))
        ds.attrs["acquisition_metadata"] = json.dumps(stored.todict())
        bad = f.create_dataset("bad", data=np.zeros((2, 4, 4)))
        bad.attrs["acquisition_metadata"] = "{frame_rate: 3"
    assert sima.Sequence.create("HDF5", path, "tyx", key="plain").acquisition_metadata is None
    tagged = sima.Sequence.create("HDF5", path, "tyx", key="tagged")
    assert tagged.acquisition_metadata == stored
    with h5py.File(path, "r") as f, pytest.warns(AcquisitionMetadataWarning, match="'/bad'"):
        assert read_hdf5_metadata(f["bad"]) is None


# ---------------------------------------------------------------------------
# Scanbox and Prairie parameters
# ---------------------------------------------------------------------------

PRAIRIE = """<?xml version="1.0" encoding="utf-8"?>
<PVScan version="5.4.64.100">
  <PVStateShard>
    <PVStateValue key="framePeriod" value="0.04" />
    <PVStateValue key="opticalZoom" value="2.5" />
    <PVStateValue key="laserWavelength"><IndexedValue index="0" value="920" /></PVStateValue>
    <PVStateValue key="micronsPerPixel">
      <IndexedValue index="XAxis" value="0.8" />
      <IndexedValue index="YAxis" value="0.9" />
      <IndexedValue index="ZAxis" value="2" />
    </PVStateValue>
  </PVStateShard>
</PVScan>
"""


def test_from_prairie(tmp_path):
    path = tmp_path / "TSeries-001.xml"
    path.write_text(PRAIRIE)
    params = sima.imaging_parameters.prairie_imaging_parameters(path)
    meta = AcquisitionMetadata.from_prairie(params)
    assert meta == AcquisitionMetadata.from_prairie(str(path))
    assert meta.source == "Prairie"
    assert meta.frame_rate == pytest.approx(25.0) and meta.zoom == 2.5
    assert meta.pixel_size_um == (0.9, 0.8) and meta.plane_spacing_um == 2.0
    assert meta.extra["laserWavelength"] == {"0": 920.0}
    old = {"framePeriod": 0.5, "micronsPerPixel_XAxis": 1.0, "micronsPerPixel_YAxis": 1.5}
    assert AcquisitionMetadata.from_prairie(old).pixel_size_um == (1.5, 1.0)
    with pytest.raises(ArgumentTypeError, match="params"):
        AcquisitionMetadata.from_prairie(3)


def test_from_scanbox(tmp_path):
    mat = tmp_path / "mouse_000_001.mat"
    info = {
        "resfreq": 7930,
        "recordsPerBuffer": 256,
        "sz": np.array([512, 796]),
        "channels": 2,
        "scanmode": 0,  # bidirectional: 2 lines per resonant period
        "config": {
            "lines": 512,
            "magnification": 2,
            "magnification_list": np.array([1.0, 2.0, 4.0]),
        },
        "scanbox_version": 2,
        "otwave": np.array([0, 20, 40]),
        "volscan": 1,
    }
    scipy.io.savemat(str(mat), {"info": info})
    (tmp_path / "mouse_000_001.sbx").write_bytes(b"\0" * 16)
    meta = AcquisitionMetadata.from_scanbox(str(mat))
    assert meta.source == "Scanbox"
    assert meta.frame_rate == pytest.approx(7930 * 2 / 512 / 3)
    assert meta.zoom == 2.0 and meta.n_planes == 3 and meta.n_channels == 1
    assert meta.extra["resfreq"] == 7930.0
    params = sima.imaging_parameters.scanbox_imaging_parameters(mat)
    assert AcquisitionMetadata.from_scanbox(params) == meta
    uni = AcquisitionMetadata.from_scanbox(
        {"resfreq": 8000, "recordsPerBuffer": 400, "scanmode": 1, "dxcal": 1.2, "dycal": 1.1}
    )
    assert uni.frame_rate == pytest.approx(20.0) and uni.pixel_size_um == (1.1, 1.2)
    with pytest.raises(ArgumentTypeError, match="info"):
        AcquisitionMetadata.from_scanbox([1, 2])

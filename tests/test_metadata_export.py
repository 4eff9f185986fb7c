"""Acquisition metadata leaves with the frames: exports, the command line, the example.

HDF5 frames files carry the sequence's metadata as the JSON attribute
``acquisition_metadata``; TIFF frames files are ImageJ hyperstacks with the
frame interval and the calibrated pixel size; nothing is written when nothing
is known. ``sima-fast create`` prints the acquisition block ``info`` prints.
The example dataset knows its frame rate.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings

import h5py
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

import sima_fast as sima
from sima_fast.cli import main
from sima_fast.io.tiff import imagej_frames_options
from sima_fast.sequence.metadata import AcquisitionMetadata

# 12 frames, 2 planes, 6 x 5 pixels, 2 channels; values 0..~700 (fit uint16 unscaled)
MOVIE = (np.arange(12 * 2 * 6 * 5 * 2, dtype=np.float32) % 701).reshape(12, 2, 6, 5, 2)
META = {
    "frame_rate": 30.0,
    "zoom": 2.5,
    "n_planes": 2,
    "n_channels": 2,
    "pixel_size_um": [0.8, 0.4],
    "plane_spacing_um": 12.0,
    "channel_names": ["green", "red"],
    "source": "ScanImage 2016+",
    "extra": {"SI.VERSION_MAJOR": 2021},
}


def _sequence(meta=META, movie=MOVIE):
    seq = sima.Sequence.create("ndarray", movie.copy())
    if meta is not None:
        seq.acquisition_metadata = meta
    return seq


def _dataset(*seqs, names=("green", "red")):
    return sima.ImagingDataset(list(seqs), None, channel_names=list(names[: seqs[0].shape[4]]))


def _h5_meta(path):
    return sima.Sequence.create("HDF5", str(path), "tzyxc", key="imaging").acquisition_metadata


def _tiff_names(tmp_path, ds, stem="f"):
    Z, C = ds.frame_shape[0], ds.frame_shape[3]
    return [
        [[str(tmp_path / f"{stem}{i}_{j}_{k}.tif") for k in range(C)] for j in range(Z)]
        for i in range(ds.num_sequences)
    ]


# ---------------------------------------------------------------------------
# HDF5
# ---------------------------------------------------------------------------


def test_hdf5_export_round_trips_the_metadata(tmp_path):
    ds = _dataset(_sequence())
    out = tmp_path / "out.h5"
    ds.export_frames([str(out)], fmt="HDF5")
    back = _h5_meta(out)
    assert back == ds.acquisition_metadata == AcquisitionMetadata.fromdict(META)
    with h5py.File(out, "r") as f:
        stored = json.loads(f["imaging"].attrs["acquisition_metadata"])
    assert stored == AcquisitionMetadata.fromdict(META).todict()


def test_hdf5_export_of_views_writes_the_selection(tmp_path):
    seq = _sequence()
    ds = _dataset(seq)
    ds[:, ::2].export_frames([str(tmp_path / "half.h5")], fmt="HDF5")
    half = _h5_meta(tmp_path / "half.h5")
    assert half.frame_rate == 15.0 and half.n_planes == 2 and half.zoom == 2.5

    ds[:, :, 1:2, :, :, [1]].export_frames([str(tmp_path / "one.h5")], fmt="HDF5")
    one = _h5_meta(tmp_path / "one.h5")
    assert (one.n_planes, one.n_channels, one.channel_names) == (1, 1, ("red",))
    assert one.plane_spacing_um is None and one.frame_rate == 30.0

    ds[:, :, :, ::2, ::2].export_frames([str(tmp_path / "coarse.h5")], fmt="HDF5")
    assert _h5_meta(tmp_path / "coarse.h5").pixel_size_um == (1.6, 0.8)


def test_each_sequence_file_carries_its_own_rate(tmp_path):
    seq = _sequence()
    ds = _dataset(seq, seq[::3])
    assert ds.acquisition_metadata.frame_rate is None  # the two sequences disagree
    ds.acquisition_metadata = {"zoom": 4.0}  # set on the dataset: laid over both
    paths = [str(tmp_path / "a.h5"), str(tmp_path / "b.h5")]
    ds.export_frames(paths, fmt="HDF5")
    a, b = (_h5_meta(p) for p in paths)
    assert (a.frame_rate, b.frame_rate) == (30.0, 10.0)
    assert a.zoom == b.zoom == 4.0
    assert a.channel_names == b.channel_names == ("green", "red")


def test_sequence_export_carries_the_sequence_metadata(tmp_path):
    seq = _sequence()[::2]
    seq.export(str(tmp_path / "s.h5"), fmt="HDF5")
    assert _h5_meta(tmp_path / "s.h5") == seq.acquisition_metadata
    assert seq.acquisition_metadata.frame_rate == 15.0
    names = [[str(tmp_path / f"s_{j}_{k}.tif") for k in range(2)] for j in range(2)]
    seq.export(names, fmt="TIFF16")
    back = sima.Sequence.create("TIFF", names[1][0]).acquisition_metadata
    assert back.frame_rate == pytest.approx(15.0)
    assert back.pixel_size_um == pytest.approx((0.8, 0.4))


def test_no_metadata_writes_nothing_and_warns_nothing(tmp_path):
    ds = _dataset(_sequence(meta=None))
    assert ds.acquisition_metadata is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds.export_frames([str(tmp_path / "plain.h5")], fmt="HDF5")
        names = _tiff_names(tmp_path, ds)
        ds.export_frames(names, fmt="TIFF16")
    with h5py.File(tmp_path / "plain.h5", "r") as f:
        assert "acquisition_metadata" not in f["imaging"].attrs
    back = _h5_meta(tmp_path / "plain.h5")  # only the channel_names attribute, as before
    assert back.frame_rate is None and back.channel_names == ("green", "red")
    with tifffile.TiffFile(names[0][1][1]) as tif:
        assert not tif.is_imagej
        assert tif.pages.first.tags.get("XResolution").value == (1, 1)
    assert sima.Sequence.create("TIFF", names[0][1][1]).acquisition_metadata is None


# ---------------------------------------------------------------------------
# TIFF
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["TIFF8", "TIFF16"])
def test_tiff_export_is_an_imagej_hyperstack_with_rate_and_pixel_size(tmp_path, fmt):
    ds = _dataset(_sequence())
    names = _tiff_names(tmp_path, ds)
    ds.export_frames(names, fmt=fmt, scale_values=True)
    path = names[0][1][0]
    with tifffile.TiffFile(path) as tif:
        ij = tif.imagej_metadata
        assert ij["images"] == ij["frames"] == 12 and ij["unit"] == "um"
        assert ij["finterval"] == pytest.approx(1 / 30)
        assert tif.series[0].axes == "TYX" and tif.series[0].shape == (12, 6, 5)
        pages = tif.asarray()
    seq = sima.Sequence.create("TIFF", path)
    np.testing.assert_array_equal(np.asarray(seq)[:, 0, :, :, 0], pages)
    meta = seq.acquisition_metadata
    assert meta.source == "ImageJ" and meta.frame_rate == pytest.approx(30.0)
    assert meta.pixel_size_um == pytest.approx((0.8, 0.4))
    assert (meta.n_planes, meta.n_channels) == (1, 1)
    assert meta.zoom is None and meta.channel_names is None  # no standard place in the file


def test_tiff_values_are_unchanged_by_the_metadata(tmp_path):
    plain = _dataset(_sequence(meta=None))
    tagged = _dataset(_sequence())
    a, b = _tiff_names(tmp_path, plain, "a"), _tiff_names(tmp_path, tagged, "b")
    plain.export_frames(a, fmt="TIFF16")
    tagged.export_frames(b, fmt="TIFF16")
    for j in range(2):
        for k in range(2):
            np.testing.assert_array_equal(tifffile.imread(a[0][j][k]), tifffile.imread(b[0][j][k]))
            np.testing.assert_array_equal(tifffile.imread(b[0][j][k]), MOVIE[:, j, :, :, k])


def test_tiff_rate_only_and_size_only(tmp_path):
    rate = _dataset(_sequence(meta={"frame_rate": 7.5}))
    names = _tiff_names(tmp_path, rate, "r")
    rate.export_frames(names, fmt="TIFF16")
    meta = sima.Sequence.create("TIFF", names[0][0][0]).acquisition_metadata
    assert meta.frame_rate == pytest.approx(7.5) and meta.pixel_size_um is None

    size = _dataset(_sequence(meta={"pixel_size_um": [1.25, 1.25]}))
    names = _tiff_names(tmp_path, size, "s")
    size.export_frames(names, fmt="TIFF16")
    meta = sima.Sequence.create("TIFF", names[0][1][1]).acquisition_metadata
    assert meta.frame_rate is None and meta.pixel_size_um == pytest.approx((1.25, 1.25))

    zoom_only = _dataset(_sequence(meta={"zoom": 3.0}))
    names = _tiff_names(tmp_path, zoom_only, "z")
    zoom_only.export_frames(names, fmt="TIFF16")
    with tifffile.TiffFile(names[0][0][0]) as tif:
        assert not tif.is_imagej  # nothing the ImageJ format can hold: left as before


def test_imagej_frames_options():
    assert imagej_frames_options(None, 10) == {}
    assert imagej_frames_options(AcquisitionMetadata(zoom=2.0), 10) == {}
    assert imagej_frames_options(AcquisitionMetadata(frame_rate=5.0), 0) == {}
    options = imagej_frames_options(AcquisitionMetadata(pixel_size_um=(0.5, 0.25)), 3)
    assert options["resolution"] == (4.0, 2.0)  # pixels per µm along x, then y
    assert "images=3" in options["description"] and "unit=um" in options["description"]


@settings(max_examples=15, deadline=None)
@given(
    rate=st.floats(0.01, 5000, allow_nan=False),
    size_y=st.floats(0.01, 100),
    size_x=st.floats(0.01, 100),
    frames=st.integers(1, 4),
)
def test_rate_and_pixel_size_survive_both_formats(rate, size_y, size_x, frames):
    movie = np.ones((frames, 1, 3, 4, 1), np.float32)
    meta = {"frame_rate": rate, "pixel_size_um": [size_y, size_x]}
    ds = _dataset(_sequence(meta=meta, movie=movie), names=("g",))
    with tempfile.TemporaryDirectory() as tmp:
        h5 = os.path.join(tmp, "m.h5")
        ds.export_frames([h5], fmt="HDF5")
        assert _h5_meta(h5) == ds.acquisition_metadata  # JSON: exact
        tif = os.path.join(tmp, "m.tif")
        ds.export_frames([[[tif]]], fmt="TIFF16")
        back = sima.Sequence.create("TIFF", tif).acquisition_metadata
        assert back.frame_rate == pytest.approx(rate, rel=1e-9)
        assert back.pixel_size_um == pytest.approx((size_y, size_x), rel=1e-6)


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------


def _acquisition_block(printed):
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  acquisition"))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        block.append(line)
    return block


def test_create_prints_the_acquisition_block_of_info(tmp_path, capsys):
    movie = tmp_path / "movie.h5"
    with h5py.File(movie, "w") as f:
        d = f.create_dataset("imaging", data=MOVIE[:, 0, :, :, 0])
        d.attrs["frame_rate"] = 20.0
        d.attrs["pixel_size_um"] = [0.5, 0.5]
    out = str(tmp_path / "s.sima")
    assert main(["create", out, str(movie), "--format", "HDF5", "--dim-order", "tyx"]) == 0
    created = _acquisition_block(capsys.readouterr().out)
    assert main(["info", out]) == 0
    shown = _acquisition_block(capsys.readouterr().out)
    assert created == shown
    assert created[0] == "  acquisition:"
    assert "    frame rate: 20 Hz" in created
    assert "    pixel size: 0.5 x 0.5 µm (y x)" in created
    assert created[-1] == "    source: HDF5 attributes"


def test_create_without_metadata_says_unknown(tmp_path, capsys):
    movie = tmp_path / "movie.h5"
    with h5py.File(movie, "w") as f:
        f.create_dataset("imaging", data=MOVIE[:, 0, :, :, 0])
    out = str(tmp_path / "s.sima")
    assert main(["create", out, str(movie), "--format", "HDF5", "--dim-order", "tyx"]) == 0
    assert _acquisition_block(capsys.readouterr().out) == [
        "  acquisition: unknown (no metadata in the data files; none set)"
    ]


# ---------------------------------------------------------------------------
# the example dataset
# ---------------------------------------------------------------------------


@pytest.fixture
def small_example(tmp_path, monkeypatch):
    from sima_fast.misc import _example

    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path))
    for params in _example._SEQUENCES:
        monkeypatch.setitem(params, "num_frames", 6)
    return _example


def test_example_knows_its_frame_rate(small_example):
    from sima_fast.misc import example_data, example_hdf5

    ds = sima.ImagingDataset.load(example_data())
    meta = ds.acquisition_metadata
    assert meta.frame_rate == 15.0 and (meta.n_planes, meta.n_channels) == (2, 2)
    assert meta.channel_names == ("GCaMP", "tdTomato") and meta.pixel_size_um is None
    for seq in ds.sequences:
        assert seq.acquisition_metadata.frame_rate == 15.0
    raw = sima.Sequence.create("HDF5", example_hdf5(), "tzyxc", key="imaging")
    assert raw.acquisition_metadata.frame_rate == 15.0


def test_a_stale_cached_example_is_not_used(small_example, tmp_path):
    from sima_fast.misc import example_data

    assert small_example.EXAMPLE_VERSION >= 2
    old = tmp_path / "example-v1"  # a complete build of the version without metadata
    (old / "example.sima").mkdir(parents=True)
    (old / "COMPLETE.json").write_text(json.dumps({"version": 1, "files": ["example.sima"]}))
    path = example_data()
    assert os.path.dirname(path) == str(tmp_path / f"example-v{small_example.EXAMPLE_VERSION}")
    assert sima.ImagingDataset.load(path).acquisition_metadata.frame_rate == 15.0
    # a folder of the current name left by an older build (its marker says version 1)
    current = tmp_path / f"example-v{small_example.EXAMPLE_VERSION}"
    marker = current / "COMPLETE.json"
    marker.write_text(json.dumps({"version": 1, "files": ["example.sima"]}))
    assert not small_example._is_complete(str(current))
    assert example_data() == path
    assert json.loads(marker.read_text())["version"] == small_example.EXAMPLE_VERSION

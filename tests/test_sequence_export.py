"""Sequence.export: SIMA's signature and file layout, read back with h5py/tifffile."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
import sima_fast as sima
import sima_fast.sequence.base as seqbase
from sima_fast._validate import ArgumentTypeError

RNG = np.random.default_rng(2026)


def movie(T=6, Z=2, Y=4, X=5, C=2, dtype=np.float32, gaps=False):
    data = RNG.uniform(0, 900, size=(T, Z, Y, X, C)).astype(dtype)
    if gaps:
        data[0, 0, 1, :, 0] = np.nan  # a row missing at the start
        data[2:4, 1, :, 2, 1] = np.nan  # a column missing for two frames
        data[:, 0, 3, 4, 1] = np.nan  # a pixel never observed
    return data


def tiff_names(folder, Z, C, stem="m"):
    return [[str(folder / f"{stem}_plane{j}_ch{k}.tif") for k in range(C)] for j in range(Z)]


def saturated(values, bits):
    """NaN -> 0, clip to the type's range, truncate: written plainly."""
    v = np.array(values, dtype=np.float64)
    v[np.isnan(v)] = 0
    return np.trunc(np.clip(v, 0, 2**bits - 1)).astype(np.uint8 if bits == 8 else np.uint16)


# --------------------------------------------------------------------------
# HDF5
# --------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "gzip", "lzf"])
def test_hdf5_holds_the_frames_with_labels_and_channel_names(tmp_path, compression):
    data = movie()
    seq = sima.Sequence.create("ndarray", data)
    out = tmp_path / "out" / "movie.h5"  # the folder is created
    seq.export(str(out), fmt="HDF5", channel_names=["GCaMP", "tdTom"], compression=compression)
    with h5py.File(out, "r") as f:
        dset = f["imaging"]
        assert dset.dtype == np.float32
        assert [d.label for d in dset.dims] == list("tzyxc")
        assert [n.decode() for n in dset.attrs["channel_names"]] == ["GCaMP", "tdTom"]
        assert dset.compression == compression
        np.testing.assert_array_equal(dset[()], data)


def test_hdf5_default_channel_names_and_path_like(tmp_path):
    seq = sima.Sequence.create("ndarray", movie(C=3))
    seq.export(tmp_path / "m.h5", fmt="HDF5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert [n.decode() for n in f["imaging"].attrs["channel_names"]] == ["0", "1", "2"]


def test_hdf5_keeps_gaps_by_default_and_fills_them_on_request(tmp_path):
    data = movie(gaps=True)
    seq = sima.Sequence.create("ndarray", data)
    seq.export(str(tmp_path / "raw.h5"), fmt="HDF5")  # SIMA's default: fill_gaps=False
    seq.export(str(tmp_path / "filled.h5"), fmt="HDF5", fill_gaps=True)
    with h5py.File(tmp_path / "raw.h5", "r") as f:
        np.testing.assert_array_equal(f["imaging"][()], data)
    with h5py.File(tmp_path / "filled.h5", "r") as f:
        np.testing.assert_array_equal(f["imaging"][()], ref.fill_gaps(data).astype(np.float32))


def test_hdf5_scale_values_stretches_each_channel_to_16_bits(tmp_path):
    data = movie()
    seq = sima.Sequence.create("ndarray", data)
    seq.export(str(tmp_path / "s.h5"), fmt="HDF5", scale_values=True)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        got = f["imaging"][()]
    np.testing.assert_allclose(got.max(axis=(0, 1, 2, 3)), [65535, 65535], rtol=1e-6)
    want = data.astype(np.float32) * ((2**16 - 1) / data.max(axis=(0, 1, 2, 3)))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_hdf5_export_streams_in_several_chunks(tmp_path, monkeypatch):
    data = movie(T=23, Z=1, C=1)
    seq = sima.Sequence.create("ndarray", data)
    frame_bytes = data[0].nbytes
    monkeypatch.setattr(seqbase, "DEFAULT_CHUNK_BYTES", 4 * frame_bytes)  # chunks of 4 frames
    starts = []
    original = seq.iter_chunks

    def spying(*args, **kwargs):
        for t0, chunk in original(*args, **kwargs):
            starts.append(t0)
            yield t0, chunk

    monkeypatch.setattr(seq, "iter_chunks", spying)
    seq.export(str(tmp_path / "long.h5"), fmt="HDF5")
    assert starts == list(range(0, 23, 4))
    with h5py.File(tmp_path / "long.h5", "r") as f:
        np.testing.assert_array_equal(f["imaging"][()], data)


@given(
    shape=st.tuples(
        st.integers(1, 5),
        st.integers(1, 2),
        st.integers(1, 4),
        st.integers(1, 4),
        st.integers(1, 3),
    ),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int16, np.float32, np.float64]),
)
def test_hdf5_round_trip_of_any_shape_and_dtype(tmp_path_factory, shape, dtype):
    data = (np.arange(np.prod(shape)) % 251).reshape(shape).astype(dtype)
    out = tmp_path_factory.mktemp("rt") / "m.h5"
    sima.Sequence.create("ndarray", data).export(str(out), fmt="HDF5")
    back = sima.Sequence.create("HDF5", str(out), "tzyxc", key="imaging")
    assert back.shape == shape
    np.testing.assert_array_equal(np.asarray(back), data.astype(np.float32))


# --------------------------------------------------------------------------
# TIFF
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,bits", [("TIFF8", 8), ("TIFF16", 16)])
def test_tiff_one_file_per_plane_and_channel_one_page_per_frame(tmp_path, fmt, bits):
    data = movie(T=5, Z=2, C=2)
    data[1, 0, 0, 0, 0] = 70000.0  # above both ranges: saturates
    data[2, 1, 1, 1, 1] = -3.0  # below: 0
    seq = sima.Sequence.create("ndarray", data)
    names = tiff_names(tmp_path / "tif", 2, 2)
    seq.export(names, fmt=fmt)
    for j in range(2):
        for k in range(2):
            got = tifffile.imread(names[j][k])
            assert got.shape == (5, 4, 5)
            assert got.dtype == (np.uint8 if bits == 8 else np.uint16)
            np.testing.assert_array_equal(got, saturated(data[:, j, :, :, k], bits))


@pytest.mark.parametrize("fmt,bits", [("TIFF8", 8), ("TIFF16", 16)])
def test_tiff_scale_values_as_sima_per_channel(tmp_path, fmt, bits):
    data = movie(T=4, Z=2, C=2, dtype=np.float64)
    seq = sima.Sequence.create("ndarray", data)
    names = tiff_names(tmp_path, 2, 2)
    seq.export(names, fmt=fmt, scale_values=True)
    top = 2**bits - 1
    for k in range(2):
        m = data[..., k].max()
        for j in range(2):
            got = tifffile.imread(names[j][k])
            want = np.trunc(top * data[:, j, :, :, k] / m).astype(got.dtype)
            np.testing.assert_array_equal(got, want)
        # the brightest pixel of each channel reaches the top of the range
        assert max(tifffile.imread(names[j][k]).max() for j in range(2)) == top


def test_tiff_fill_gaps_fills_from_the_nearest_observation(tmp_path):
    data = movie(T=6, Z=2, C=2, gaps=True)
    seq = sima.Sequence.create("ndarray", data)
    names = tiff_names(tmp_path, 2, 2)
    seq.export(names, fmt="TIFF16", fill_gaps=True)
    filled = ref.fill_gaps(data)
    for j in range(2):
        for k in range(2):
            got = tifffile.imread(names[j][k])
            np.testing.assert_array_equal(got, saturated(filled[:, j, :, :, k], 16))


def test_dataset_export_frames_and_sequence_export_write_the_same_files(tmp_path):
    data = movie(T=5, Z=2, C=2, gaps=True)
    seq = sima.Sequence.create("ndarray", data)
    ds = sima.ImagingDataset([seq], None)
    seq_names = tiff_names(tmp_path, 2, 2, "seq")
    ds_names = [tiff_names(tmp_path, 2, 2, "ds")]
    seq.export(seq_names, fmt="TIFF16", fill_gaps=True)
    ds.export_frames(ds_names, fmt="TIFF16", fill_gaps=True)
    for j in range(2):
        for k in range(2):
            with open(seq_names[j][k], "rb") as a, open(ds_names[0][j][k], "rb") as b:
                assert a.read() == b.read()


def test_file_sequences_export_and_read_back(tmp_path):
    data = (np.arange(4 * 2 * 3 * 4 * 2) % 1000).reshape(4, 2, 3, 4, 2).astype(np.uint16)
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("raw", data=data)
    seq = sima.Sequence.create("HDF5", str(src), "tzyxc", key="raw")
    names = tiff_names(tmp_path, 2, 2)
    seq.export(names, fmt="TIFF16")
    back = sima.Sequence.create("TIFF", names[1][0])  # one plane, one channel
    np.testing.assert_array_equal(np.asarray(back)[:, 0, :, :, 0], data[:, 1, :, :, 0])


# --------------------------------------------------------------------------
# arguments, refusals, atomicity
# --------------------------------------------------------------------------


def test_wrong_arguments_raise_before_anything_is_written(tmp_path):
    seq = sima.Sequence.create("ndarray", movie(Z=2, C=2))
    h5 = str(tmp_path / "m.h5")
    with pytest.raises(ValueError, match=r"^fmt must be one of \['TIFF8', 'TIFF16', 'HDF5'\]"):
        seq.export(h5, fmt="PNG")
    with pytest.raises(ValueError, match=r"^compression must be one of"):
        seq.export(h5, fmt="HDF5", compression="zstd")
    with pytest.raises(ValueError, match=r"single path for fmt='HDF5'"):
        seq.export([h5], fmt="HDF5")
    with pytest.raises(ValueError, match=r"filenames\[plane\]\[channel\]: a list of 2 lists of 2"):
        seq.export([h5, h5], fmt="TIFF16")
    with pytest.raises(ValueError, match=r"a list of 2 lists of 2 paths for fmt='TIFF8'"):
        seq.export(h5, fmt="TIFF8")
    with pytest.raises(ValueError, match=r"channel_names has 1 name\(s\) but the sequence has 2"):
        seq.export(h5, fmt="HDF5", channel_names=["only"])
    with pytest.raises(ArgumentTypeError, match=r"channel_names\[1\] must be a str"):
        seq.export(h5, fmt="HDF5", channel_names=["a", None])
    with pytest.raises(ArgumentTypeError, match=r"channel_names must be a list of 2 names"):
        seq.export(h5, fmt="HDF5", channel_names="ab")
    with pytest.raises(ArgumentTypeError, match=r"^fill_gaps must be True or False, got 1"):
        seq.export(h5, fmt="HDF5", fill_gaps=1)
    with pytest.raises(ArgumentTypeError, match=r"^scale_values must be True or False"):
        seq.export(h5, fmt="HDF5", scale_values="yes")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_the_file_it_reads(tmp_path):
    data = movie(Z=1, C=1)
    src = tmp_path / "movie.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("imaging", data=data)
    before = src.read_bytes()
    seq = sima.Sequence.create("HDF5", str(src), "tzyxc", key="imaging")
    with pytest.raises(ValueError, match=r"refusing to write .*movie\.h5.*a sequence of the"):
        seq.export(str(src), fmt="HDF5")
    link = tmp_path / "alias.h5"
    os.symlink(src, link)
    with pytest.raises(ValueError, match="refusing to write"):
        seq.export(str(link), fmt="HDF5")  # the same file under another name
    tif = tmp_path / "movie.tif"
    tifffile.imwrite(tif, data[:, 0, :, :, 0].astype(np.uint16))
    tseq = sima.Sequence.create("TIFF", str(tif))
    with pytest.raises(ValueError, match="refusing to write"):
        tseq.export([[str(tif)]], fmt="TIFF16")
    assert src.read_bytes() == before


def test_a_failure_midway_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    data = movie(T=8, Z=2, C=1)
    seq = sima.Sequence.create("ndarray", data)
    names = tiff_names(tmp_path, 2, 1)
    with open(names[0][0], "wb") as f:
        f.write(b"previous export")

    def failing(*args, **kwargs):
        yield 0, np.asarray(data[:4])
        raise OSError("the disk went away")

    monkeypatch.setattr(seq, "iter_chunks", failing)
    with pytest.raises(OSError, match="the disk went away"):
        seq.export(names, fmt="TIFF16")
    assert sorted(p.name for p in tmp_path.iterdir()) == [os.path.basename(names[0][0])]
    with open(names[0][0], "rb") as f:
        assert f.read() == b"previous export"


def test_a_sequence_view_exports_its_own_frames(tmp_path):
    data = movie(T=6, Z=2, C=2)
    seq = sima.Sequence.create("ndarray", data)[1:5, :, 1:3]
    seq.export(str(tmp_path / "v.h5"), fmt="HDF5")
    with h5py.File(tmp_path / "v.h5", "r") as f:
        np.testing.assert_array_equal(f["imaging"][()], data[1:5, :, 1:3])

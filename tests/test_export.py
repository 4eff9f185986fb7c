"""export_averages and export_frames read back with tifffile/h5py against numpy references."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import tifffile

import reference as ref
import sima_fast as sima

RNG = np.random.default_rng(11)


def make_dataset(with_nan=True):
    a = RNG.normal(300, 80, size=(7, 2, 5, 6, 2)).astype(np.float32)
    b = RNG.normal(300, 80, size=(4, 2, 5, 6, 2)).astype(np.float32)
    if with_nan:
        a[1, :, 0] = np.nan
        b[:, 1, :, 0, 1] = np.nan
        a[0] = np.nan
    seqs = [sima.Sequence.create("ndarray", a), sima.Sequence.create("ndarray", b)]
    return sima.ImagingDataset(seqs, None, channel_names=["g", "r"]), [a, b]


def unsigned_reference(values, bits, maximum):
    """Stretch as SIMA's to8bit/to16bit, NaN -> 0, clip to the range, truncate: written plainly."""
    v = np.array(values, dtype=np.float64)
    if maximum is not None:
        v = (2**bits - 1) * v / maximum  # multiplication first, as SIMA
    v[np.isnan(v)] = 0
    v = np.clip(v, 0, 2**bits - 1)
    return np.trunc(v).astype(np.uint8 if bits == 8 else np.uint16)


@pytest.mark.parametrize("projection", ["average", "std", "kurtosis"])
@pytest.mark.parametrize("fmt", ["TIFF8", "TIFF16", "HDF5"])
@pytest.mark.parametrize("scale_values", [True, False])
def test_export_averages(tmp_path, projection, fmt, scale_values):
    ds, arrays = make_dataset()
    expected = ref.projections(np.concatenate(arrays))[
        {"average": "time_averages", "std": "time_std", "kurtosis": "time_kurtosis"}[projection]
    ]
    bits = 8 if fmt == "TIFF8" else 16
    if fmt == "HDF5":
        path = tmp_path / "avg.h5"
        ds.export_averages(
            str(path), fmt=fmt, scale_values=scale_values, projection_type=projection
        )
        maximum = np.nanmax(expected) if scale_values else None
        with h5py.File(path, "r") as f:
            name = f"time_{projection}"
            got = f[name][()]
            assert [d.label for d in f[name].dims] == ["z", "y", "x", "c"]
            assert [n.decode() for n in f[name].attrs["channel_names"]] == ["g", "r"]
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, unsigned_reference(expected, 16, maximum))
    else:
        paths = [str(tmp_path / f"avg_{c}.tif") for c in range(2)]
        ds.export_averages(paths, fmt=fmt, scale_values=scale_values, projection_type=projection)
        for c, path in enumerate(paths):
            got = tifffile.imread(path)
            channel = expected[..., c]
            maximum = np.nanmax(channel) if scale_values else None
            assert got.shape == (2, 5, 6)  # one page per plane
            np.testing.assert_array_equal(got, unsigned_reference(channel, bits, maximum))


@pytest.mark.parametrize("fill_gaps", [True, False])
@pytest.mark.parametrize("scale_values", [False, True])
@pytest.mark.parametrize("compression", [None, "gzip", "lzf"])
def test_export_frames_hdf5(tmp_path, fill_gaps, scale_values, compression):
    ds, arrays = make_dataset()
    paths = [str(tmp_path / f"seq{i}.h5") for i in range(2)]
    ds.export_frames(
        paths, fmt="HDF5", fill_gaps=fill_gaps, scale_values=scale_values, compression=compression
    )
    frames = [ref.fill_gaps(a) if fill_gaps else a.astype(np.float64) for a in arrays]
    scale = None
    if scale_values:
        scale = (2**16 - 1) / np.nanmax(np.concatenate(frames), axis=(0, 1, 2, 3))
    for path, expected in zip(paths, frames):
        with h5py.File(path, "r") as f:
            dset = f["imaging"]
            assert dset.dtype == np.float32
            assert [d.label for d in dset.dims] == list("tzyxc")
            assert dset.compression == compression
            got = dset[()]
        want = expected.astype(np.float32)
        if scale is not None:
            want = (want * scale).astype(np.float32)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fmt", ["TIFF8", "TIFF16"])
@pytest.mark.parametrize("scale_values", [False, True])
def test_export_frames_tiff(tmp_path, fmt, scale_values):
    ds, arrays = make_dataset()
    bits = 8 if fmt == "TIFF8" else 16
    names = [
        [[str(tmp_path / f"s{i}" / f"p{j}_c{k}.tif") for k in range(2)] for j in range(2)]
        for i in range(2)
    ]
    ds.export_frames(names, fmt=fmt, scale_values=scale_values)
    frames = [ref.fill_gaps(a) for a in arrays]
    maximum = None
    if scale_values:
        maximum = np.nanmax(np.concatenate(frames), axis=(0, 1, 2, 3))
    for i, expected in enumerate(frames):
        want = unsigned_reference(expected, bits, maximum)
        for j in range(2):
            for k in range(2):
                got = tifffile.imread(names[i][j][k])
                assert got.shape == (len(expected), 5, 6)
                np.testing.assert_array_equal(got, want[:, j, :, :, k])


def test_export_frames_matches_sima_fixture(sima132, tmp_path):
    ds = sima.ImagingDataset.load(os.path.join(sima132, "tiff_motion.sima"))
    out = tmp_path / "filled.h5"
    ds.export_frames([str(out)], fmt="HDF5", fill_gaps=True)
    with h5py.File(out, "r") as f, h5py.File(os.path.join(sima132, "motion_filled.h5")) as g:
        np.testing.assert_array_equal(f["imaging"][()], g["imaging"][()])


def test_bad_arguments_leave_nothing_behind(tmp_path):
    ds, _ = make_dataset()
    with pytest.raises(ValueError, match="fmt must be one of"):
        ds.export_averages([str(tmp_path / "a.tif")] * 2, fmt="PNG")
    with pytest.raises(ValueError, match="projection_type"):
        ds.export_averages([str(tmp_path / "a.tif")] * 2, projection_type="median")
    with pytest.raises(ValueError, match="list of 2 paths"):
        ds.export_averages([str(tmp_path / "a.tif")])
    with pytest.raises(ValueError, match="single path"):
        ds.export_averages([str(tmp_path / "a.h5"), str(tmp_path / "b.h5")], fmt="HDF5")
    with pytest.raises(ValueError, match="compression"):
        ds.export_frames([str(tmp_path / "a.h5")] * 2, fmt="HDF5", compression="zstd")
    with pytest.raises(ValueError, match="list of 2 paths"):
        ds.export_frames([str(tmp_path / "a.h5")], fmt="HDF5")
    with pytest.raises(ValueError, match=r"filenames\[sequence\]\[plane\]\[channel\]"):
        ds.export_frames([[str(tmp_path / "a.tif")]] * 2)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="filenames"):
        ds.export_frames([str(blocker / "a.h5"), str(tmp_path / "b.h5")], fmt="HDF5")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_failure_mid_export_leaves_no_partial_file(tmp_path):
    ds, arrays = make_dataset()

    class Boom(Exception):
        pass

    broken = sima.Sequence.create("ndarray", arrays[1]).mask([])

    def explode(self, start, stop, out):
        raise Boom("read error")

    type(broken)._read, real = explode, type(broken)._read
    try:
        bad = sima.ImagingDataset([ds.sequences[0], broken], None)
        with pytest.raises(Boom):
            bad.export_frames([str(tmp_path / "0.h5"), str(tmp_path / "1.h5")], fmt="HDF5")
    finally:
        type(broken)._read = real
    assert os.listdir(tmp_path) == []

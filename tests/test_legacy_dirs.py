"""SIMA directories that need more than the 1.x sequence records: 'TIFFs' file tables and 0.x.

The pickles are written here opcode by opcode, in protocol 2 as SIMA's
Python 2 pickles were (see :mod:`pickletools`), by :func:`sima_pickle`: no
SIMA class is ever imported or pickled, only named.
"""

from __future__ import annotations

import os
import struct
import warnings

import h5py
import numpy as np
import pytest
import tifffile

from sima_fast import Sequence
from sima_fast._legacy import UnsafePickleError
from sima_fast.cli import main as cli_main
from sima_fast.imaging import ImagingDataset, NotADatasetError
from sima_fast.ROI import ROI, ROIList
from sima_fast.storage import DatasetFormatError

# ---------------------------------------------------------------------------
# a small protocol-2 pickle writer
# ---------------------------------------------------------------------------


class Global:
    """A class named in the pickle (GLOBAL opcode), never resolved here."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


def _ops(obj) -> bytes:
    if obj is None:
        return b"N"
    if obj is True or obj is False:
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, Global):
        return b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n"
    if isinstance(obj, (int, np.integer)):
        return b"J" + struct.pack("<i", int(obj))
    if isinstance(obj, float):
        return b"G" + struct.pack(">d", obj)
    if isinstance(obj, str):
        data = obj.encode()
        return b"X" + struct.pack("<I", len(data)) + data
    if isinstance(obj, list):
        return b"](" + b"".join(_ops(x) for x in obj) + b"e"
    if isinstance(obj, tuple):
        return b"(" + b"".join(_ops(x) for x in obj) + b"t"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_ops(k) + _ops(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, np.ndarray):
        return _array_ops(obj)
    raise TypeError(type(obj))


def _array_ops(a: np.ndarray) -> bytes:
    """numpy's own pickled form: ``_reconstruct`` then BUILD with the array's state."""
    head = (
        _ops(Global("numpy.core.multiarray", "_reconstruct"))
        + _ops(Global("numpy", "ndarray"))
        + _ops((0,))
        + b"U\x01b"  # a Python 2 str 'b'
        + b"\x87R"
    )
    if a.dtype == object:
        dtype = _ops(Global("numpy", "dtype")) + b"U\x02O8" + _ops(0) + _ops(1) + b"\x87R"
        dtype += _ops((3, "|", None, None, None, -1, -1, 63)) + b"b"
        data = _ops(list(a.reshape(-1)))
    else:
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        code = a.dtype.str[1:].encode()
        dtype = _ops(Global("numpy", "dtype")) + b"U" + bytes([len(code)]) + code
        sized = (a.dtype.itemsize, 4, 8) if a.dtype.kind == "U" else (-1, -1, 0)
        dtype += _ops(0) + _ops(1) + b"\x87R" + _ops((3, "<", None, None, None, *sized)) + b"b"
        raw = a.tobytes()
        data = b"T" + struct.pack("<I", len(raw)) + raw  # a Python 2 str
    state = b"(" + _ops(1) + _ops(tuple(a.shape)) + dtype + b"\x89" + data + b"t"
    return head + state + b"b"


def sima_pickle(obj) -> bytes:
    """Return ``obj`` pickled in protocol 2, with :class:`Global` markers as class names."""
    return b"\x80\x02" + _ops(obj) + b"."


def write_pickle(path, obj) -> None:
    with open(path, "wb") as fh:
        fh.write(sima_pickle(obj))


def test_the_writer_makes_real_pickles():
    import pickle

    value = {"a": [1, 2.5, None, True], "b": (np.arange(6, dtype=np.int16).reshape(2, 3),)}
    back = pickle.loads(sima_pickle(value), encoding="latin1")
    assert back["a"] == [1, 2.5, None, True]
    np.testing.assert_array_equal(back["b"][0], value["b"][0])
    names = np.array([["x", "y"]], dtype=object)
    np.testing.assert_array_equal(pickle.loads(sima_pickle(names), encoding="latin1"), names)


# ---------------------------------------------------------------------------
# 'TIFFs' sequences saved by SIMA 1.x: a (T, Z, C) table of files
# ---------------------------------------------------------------------------

TIFFS = Global("sima.sequence", "_Sequence_TIFFs")


def _tiff_frames(folder, T=4, Z=2, C=2, decoy=True):
    """Single-page TIFFs ``z{z}_c{c}_{t:03d}.tif``; returns the data and the file table."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(3)
    data = rng.integers(0, 4000, (T, Z, 5, 7, C)).astype(np.uint16)
    table = np.empty((T, Z, C), dtype=object)
    for t in range(T):
        for z in range(Z):
            for c in range(C):
                name = os.path.join(folder, f"z{z}_c{c}_{t:03d}.tif")
                tifffile.imwrite(name, data[t, z, :, :, c])
                table[t, z, c] = name
    if decoy:  # a file beside the series, matching 'z0_c0_00*.tif', must not be picked up
        tifffile.imwrite(os.path.join(folder, "z0_c0_00x.tif"), data[0, 0, :, :, 0])
    return data, table


def sima_layout(table):
    """Return the table as SIMA 1.3.2 saved it: (Z, C, T) matches reshaped as they lie."""
    T, Z, C = table.shape
    return np.ascontiguousarray(table.transpose(1, 2, 0)).reshape(T, Z, C)


def _tiffs_dir(tmp_path, table, name="tiffs.sima"):
    savedir = tmp_path / name
    savedir.mkdir()
    write_pickle(savedir / "sequences.pkl", [{"__class__": TIFFS, "paths": table}])
    write_pickle(savedir / "dataset.pkl", {"channel_names": ["green", "red"], "savedir": "x"})
    return str(savedir)


def test_sima_tiffs_table_loads_as_its_frames(tmp_path):
    data, table = _tiff_frames(str(tmp_path / "raw"))
    assert not np.array_equal(sima_layout(table), table)  # 2 planes, 2 channels: rows mixed
    ds = ImagingDataset.load(_tiffs_dir(tmp_path, sima_layout(table)))
    assert ds.channel_names == ["green", "red"]
    assert ds.sequences[0].shape == data.shape
    np.testing.assert_array_equal(np.asarray(ds.sequences[0]), data)
    # Converted to a sima_fast directory, the sequence keeps reading exactly those files.
    ds.save(str(tmp_path / "converted.sima"))
    again = ImagingDataset.load(str(tmp_path / "converted.sima"))
    np.testing.assert_array_equal(np.asarray(again.sequences[0]), data)


def test_sima_tiffs_table_of_relative_names_is_found_in_the_directory(tmp_path):
    savedir = tmp_path / "rel.sima"
    data, table = _tiff_frames(str(savedir / "frames"), T=3, Z=1, C=1, decoy=False)
    rel = np.empty(table.shape, dtype=object)
    for idx in np.ndindex(table.shape):
        rel[idx] = os.path.relpath(table[idx], savedir)
    write_pickle(savedir / "sequences.pkl", [{"__class__": TIFFS, "paths": rel}])
    ds = ImagingDataset.load(str(savedir))
    np.testing.assert_array_equal(np.asarray(ds.sequences[0]), data)


def test_sima_tiffs_table_in_frame_order_and_numpy_string_dtype(tmp_path):
    data, table = _tiff_frames(str(tmp_path / "raw"), T=3, Z=1, C=2)
    savedir = _tiffs_dir(tmp_path, table.astype(str))  # already (T, Z, C), as str
    np.testing.assert_array_equal(np.asarray(ImagingDataset.load(savedir).sequences[0]), data)
    other = _tiffs_dir(tmp_path, sima_layout(table).astype(str), "sima.sima")
    np.testing.assert_array_equal(np.asarray(ImagingDataset.load(other).sequences[0]), data)


def test_sima_tiffs_table_errors_name_the_file(tmp_path):
    _, table = _tiff_frames(str(tmp_path / "raw"), T=3, Z=1, C=1, decoy=False)
    shuffled = table[[2, 0, 1]]  # not in name order: no pattern gives this order
    with pytest.raises(DatasetFormatError, match="cannot be described by a glob pattern"):
        ImagingDataset.load(_tiffs_dir(tmp_path, shuffled, "shuffled.sima"))
    missing = table.copy()
    missing[1, 0, 0] = str(tmp_path / "raw" / "gone.tif")
    with pytest.raises(FileNotFoundError, match=r"gone\.tif"):
        ImagingDataset.load(_tiffs_dir(tmp_path, missing, "missing.sima"))
    flat = table.reshape(3, 1)
    with pytest.raises(DatasetFormatError, match=r"\(T, Z, C\) table"):
        ImagingDataset.load(_tiffs_dir(tmp_path, flat, "flat.sima"))


# ---------------------------------------------------------------------------
# SIMA 0.x directories
# ---------------------------------------------------------------------------

MULTIPAGE = Global("sima.iterables", "MultiPageTIFF")
HDF5 = Global("sima.iterables", "HDF5")


def _movie(T=6, Y=12, X=14, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(100, 3000, (T, Y, X)).astype(np.uint16)


def _reference_motion(frames, disp, shape):
    """Place each row of each frame at (y + dy, x + dx) of a NaN frame (no two rows collide)."""
    T, Y, X = frames.shape
    out = np.full((T, *shape), np.nan)
    for t in range(T):
        for y in range(Y):
            dy, dx = disp[t, y]
            out[t, y + dy, dx : dx + X] = frames[t, y]
    return out


def _v0_dir(tmp_path, n_sequences=3, n_displacements=1, trim=((1, 2), (12, 14))):
    """A SIMA 0.x directory shaped like SIMA's own example: a TIFF beside it, used twice."""
    movie = _movie()
    tifffile.imwrite(tmp_path / "movie.tif", movie)
    savedir = tmp_path / "old.sima"
    savedir.mkdir()
    channel = {
        "_relpath": "../movie.tif",
        "_abspath": "/nonexistent/movie.tif",
        "__class__": MULTIPAGE,
        "clip": None,
    }
    info = {
        "iterables": [[dict(channel), dict(channel)] for _ in range(n_sequences)],
        "channel_names": ["red", "green"],
        "trim_criterion": None,
        "num_frames": 6 * n_sequences,
    }
    if trim is not None:
        info["_lazy__trim_coords"] = [[np.int64(v) for v in trim[0]], list(trim[1])]
    write_pickle(savedir / "dataset.pkl", info)
    rng = np.random.default_rng(1)
    disp = np.zeros((6, 12, 2), dtype=np.int64)
    disp[:, :, 0] = rng.integers(0, 3, 6)[:, None]  # one dy per frame: rows never collide
    disp[:, :, 1] = rng.integers(0, 4, (6, 12))  # dx per row
    if n_displacements:
        write_pickle(savedir / "displacements.pkl", [disp.reshape(-1, 2)] * n_displacements)
    return str(savedir), movie, disp


def test_sima_0x_directory_opens_as_sima_converts_it(tmp_path):
    savedir, movie, disp = _v0_dir(tmp_path)
    with pytest.warns(UserWarning, match="1 displacement arrays for 3 sequences"):
        ds = ImagingDataset.load(savedir)
    assert ds.channel_names == ["red", "green"]
    assert ds.num_sequences == 1  # as SIMA: only the sequences that have displacements
    shape = (12 + disp[..., 0].max(), 14 + disp[..., 1].max())
    moved = _reference_motion(movie, disp, shape)[:, 1:12, 2:14]
    got = np.asarray(ds.sequences[0])
    assert got.shape == (6, 1, 11, 12, 2)
    for c in range(2):
        np.testing.assert_array_equal(got[:, 0, :, :, c], moved)


def test_sima_0x_directory_is_read_only_and_converts(tmp_path):
    savedir, _, _ = _v0_dir(tmp_path, n_sequences=2, n_displacements=2, trim=None)
    before = sorted(os.listdir(savedir))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = ImagingDataset.load(savedir)
    assert ds.num_sequences == 2
    roi = ROI(mask=np.ones((1, 3, 3), bool), label="a")
    with pytest.raises(PermissionError):
        ds.add_ROIs(ROIList([roi]), "cells")
    ds.save(str(tmp_path / "new.sima"))
    assert sorted(os.listdir(savedir)) == before
    np.testing.assert_array_equal(
        np.asarray(ImagingDataset.load(str(tmp_path / "new.sima")).sequences[1]),
        np.asarray(ds.sequences[1]),
    )


def test_sima_0x_hdf5_channel_and_clip(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.normal(size=(5, 9, 11, 3)).astype(np.float32)  # t, y, x, c
    with h5py.File(tmp_path / "movie.h5", "w") as f:
        f.create_dataset("imaging", data=data)
    savedir = tmp_path / "h5.sima"
    savedir.mkdir()
    record = {
        "__class__": HDF5,
        "_abspath": str(tmp_path / "movie.h5"),
        "dim_order": "tyxc",
        "group": "/",
        "key": "imaging",
        "channel": 1,
        "clip": [[2, 0], [0, -3]],  # rows 2:, columns :-3 (0: no bound, as in SIMA)
    }
    write_pickle(savedir / "dataset.pkl", {"iterables": [[record]], "channel_names": ["g"]})
    ds = ImagingDataset.load(str(savedir))
    np.testing.assert_array_equal(np.asarray(ds.sequences[0])[:, 0], data[:, 2:, :-3, 1:2])


def test_unknown_sima_classes_are_refused_saying_what_to_do(tmp_path):
    savedir = tmp_path / "odd.sima"
    savedir.mkdir()
    record = {"__class__": Global("sima.iterables", "TIFFStack"), "_abspath": "x.tif"}
    write_pickle(savedir / "dataset.pkl", {"iterables": [[record]], "channel_names": ["g"]})
    with pytest.raises(UnsafePickleError, match=r"SIMA 0\.x dataset.*re-save") as err:
        ImagingDataset.load(str(savedir))
    assert str(savedir / "dataset.pkl") in str(err.value)
    write_pickle(savedir / "dataset.pkl", {"x": Global("sima.ROI", "ROIList")})
    with pytest.raises(UnsafePickleError, match=r"sima\.ROI\.ROIList.*does not read"):
        ImagingDataset.load(str(savedir))
    write_pickle(savedir / "dataset.pkl", {"x": Global("os", "system")})
    with pytest.raises(UnsafePickleError, match=r"not in the allow-list.*never runs"):
        ImagingDataset.load(str(savedir))


def test_info_reports_legacy_directories_and_failures_in_one_line(tmp_path, capsys):
    savedir, _, _ = _v0_dir(tmp_path, n_sequences=1, n_displacements=1)
    assert cli_main(["info", savedir]) == 0
    out = capsys.readouterr().out
    assert "red" in out and "green" in out
    os.remove(os.path.join(savedir, "displacements.pkl"))
    with open(os.path.join(savedir, "displacements.pkl"), "wb") as fh:
        fh.write(sima_pickle([Global("sima.iterables", "Odd")]))
    assert cli_main(["info", savedir]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "SIMA 0.x" in err and "Traceback" not in err


def test_info_one_line_for_an_unexpected_failure(tmp_path, capsys, monkeypatch):
    savedir, _, _ = _v0_dir(tmp_path, n_sequences=1, n_displacements=1)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(ImagingDataset, "load", classmethod(broken))
    assert cli_main(["info", savedir]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "RuntimeError: disk on fire second line" in err


# ---------------------------------------------------------------------------
# what SIMA's scripts call
# ---------------------------------------------------------------------------


def test_load_of_a_folder_without_a_dataset_is_an_ioerror(tmp_path):
    (tmp_path / "empty.sima").mkdir()
    with pytest.raises(IOError) as err:
        ImagingDataset.load(str(tmp_path / "empty.sima"))
    assert isinstance(err.value, NotADatasetError)
    assert isinstance(err.value, DatasetFormatError)  # and still what sima_fast raised before
    with pytest.raises(IOError):
        ImagingDataset.load(str(tmp_path / "absent.sima"))


def test_resolve_channel_has_simas_semantics():
    seq = Sequence.create("ndarray", np.zeros((2, 1, 3, 3, 2)))
    ds = ImagingDataset([seq], None, channel_names=["Ch1", "Ch2"])
    assert ds._resolve_channel(None) is None
    assert ds._resolve_channel("Ch2") == 1
    assert ds._resolve_channel(0) == 0
    assert ds._resolve_channel(-1) == 1
    for bad in ("Ch3", 2, 1.5):
        with pytest.raises(ValueError):
            ds._resolve_channel(bad)

"""ImagingDataset: construction, properties, indexing, storage, projections, signals."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
import sima_fast as sima
from sima_fast import storage
from sima_fast._validate import resolve_channel
from sima_fast.imaging import ImagingDataset

RNG = np.random.default_rng(7)
A = RNG.normal(100, 10, size=(6, 2, 5, 7, 2))
B = RNG.normal(100, 10, size=(4, 2, 5, 7, 2))


def ndarray_dataset(savedir=None, **kw):
    seqs = [sima.Sequence.create("ndarray", A), sima.Sequence.create("ndarray", B)]
    return ImagingDataset(seqs, savedir, **kw)


def file_sequences(tmp_path):
    """One sequence of each file format (and wrappers), all (T, 2, 5, 7, 2)."""
    h5 = str(tmp_path / "movie.h5")
    with h5py.File(h5, "w") as f:
        f.create_dataset("imaging", data=A.astype("float32").transpose(0, 4, 1, 2, 3))
    tif = str(tmp_path / "movie.tif")
    pages = np.round(B).astype("uint16").transpose(0, 1, 4, 2, 3).reshape(-1, 5, 7)
    tifffile.imwrite(tif, pages, photometric="minisblack")
    raw = str(tmp_path / "movie.raw")
    A.astype("float64").tofile(raw)
    import zarr

    zpath = str(tmp_path / "movie.zarr")
    z = zarr.open(zpath, mode="w", shape=A.shape, dtype="float32", chunks=(2, 2, 5, 7, 2))
    z[:] = A.astype("float32")
    hseq = sima.Sequence.create("HDF5", h5, "tczyx")
    tseq = sima.Sequence.create("TIFF", tif, num_planes=2, num_channels=2)
    return {
        "hdf5": hseq,
        "tiff": tseq,
        "memmap": sima.Sequence.create("memmap", raw, A.shape, "tzyxc", dtype="float64"),
        "zarr": sima.Sequence.create("zarr", zpath, "tzyxc"),
        "ndarray": sima.Sequence.create("ndarray", B),
        "indexed": hseq[1:5],
        "masked": tseq.mask([(1, None, [0]), (None, [1], np.eye(5, 7, dtype=bool), None)]),
        "motion": sima.Sequence.create("ndarray", B[:, :, :4, :6]).apply_displacements(
            np.array([[0, 0], [1, 1], [0, 1], [1, 0]]), (2, 5, 7)
        ),
        "joined": sima.Sequence.join(hseq[:4, ..., :1], tseq[:, :, :, :, 1]),
    }


# ---------------------------------------------------------------------------
# construction and validation
# ---------------------------------------------------------------------------


def test_construction_and_properties():
    ds = ndarray_dataset(channel_names=["GCaMP", "tdTomato"])
    assert ds.num_sequences == 2
    assert ds.frame_shape == (2, 5, 7, 2)
    assert ds.num_frames == 10
    assert ds.channel_names == ["GCaMP", "tdTomato"]
    assert ds.savedir is None
    assert ds.ROIs == {}
    assert ds.read_only is False
    assert repr(ds) == "<ImagingDataset: num_sequences=2, frame_shape=(2, 5, 7, 2), num_frames=10>"
    assert ndarray_dataset().channel_names == ["0", "1"]
    assert ImagingDataset([sima.Sequence.create("ndarray", A)], None, [1, 2]).channel_names == [
        "1",
        "2",
    ]


def test_constructor_errors(tmp_path):
    seq = sima.Sequence.create("ndarray", A)
    with pytest.raises(TypeError, match="list of Sequence"):
        ImagingDataset(seq, None)
    with pytest.raises(TypeError, match=r"sequences\[1\]"):
        ImagingDataset([seq, A], None)
    with pytest.raises(ValueError, match=r"sequences\[1\] has frame shape"):
        ImagingDataset([seq, seq[:, :, 1:]], None)
    with pytest.raises(ValueError, match="at least one"):
        ImagingDataset([], None)
    with pytest.raises(ValueError, match="channel_names has 3"):
        ImagingDataset([seq], None, ["a", "b", "c"])
    with pytest.raises(ValueError, match="unique"):
        ImagingDataset([seq], None, ["a", "a"])
    (tmp_path / "exists.sima").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        ImagingDataset([seq], str(tmp_path / "exists"))


def test_iteration_order_is_plain_numpy():
    ds = ndarray_dataset()
    seqs = list(ds)
    assert len(seqs) == 2
    frames = list(seqs[0])
    np.testing.assert_array_equal(frames[3], A[3])
    values = [ch for plane in frames[0] for row in plane for col in row for ch in col]
    np.testing.assert_array_equal(values, A[0].ravel())


def test_channel_resolution():
    names = ["GCaMP", "tdTomato"]
    assert resolve_channel(1, names) == 1
    assert resolve_channel(np.int64(1), names) == 1
    assert resolve_channel(np.uint8(0), names) == 0
    assert resolve_channel(-1, names) == 1
    assert resolve_channel("tdTomato", names) == 1
    with pytest.raises(ValueError, match=r"no channel named 'red'.*GCaMP"):
        resolve_channel("red", names)
    with pytest.raises(ValueError, match="out of range"):
        resolve_channel(2, names)
    with pytest.raises(ValueError, match="channel must be"):
        resolve_channel(1.0, names)
    with pytest.raises(ValueError):
        resolve_channel(True, names)
    ds = ndarray_dataset(channel_names=names)
    with pytest.raises(ValueError, match="valid names"):
        ds.signals("red")


# ---------------------------------------------------------------------------
# indexing
# ---------------------------------------------------------------------------


def test_indexing_as_documented():
    ds = ndarray_dataset(channel_names=["g", "r"])
    assert ds[0].num_sequences == 1
    assert ds[0].channel_names == ["g", "r"]
    assert ds[:, 0].num_frames == ds.num_sequences
    assert ds[:, 0].frame_shape == ds.frame_shape
    assert ds[-1].num_frames == 4
    assert ds[::-1].sequences[0].shape[0] == 4
    sub = ds[1, 1:3, :, 2, ::2, "r" == "r" and 1]
    assert sub.frame_shape == (2, 1, 4, 1)
    assert sub.channel_names == ["r"]
    np.testing.assert_array_equal(np.asarray(sub.sequences[0]), B[1:3, :, [2], ::2][..., [1]])
    assert sub.savedir is None
    assert ds[np.int64(1)].num_frames == 4
    with pytest.raises(IndexError):
        ds[2]
    with pytest.raises(IndexError, match="too many"):
        ds[0, 0, 0, 0, 0, 0, 0]


@given(
    s=st.integers(-2, 1) | st.slices(2),
    t=st.integers(-4, 3) | st.slices(4),
    c=st.integers(-2, 1) | st.slices(2),
)
def test_indexing_matches_numpy(s, t, c):
    ds = ndarray_dataset()
    arrays = [A, B]
    picked = [arrays[s]] if isinstance(s, int) else arrays[s]
    if not picked:
        return
    expected = [
        ref.index_like_sequence(a, (t, slice(None), slice(None), slice(None), c)) for a in picked
    ]
    if any(0 in e.shape for e in expected):
        return
    sub = ds[s, t, :, :, :, c]
    assert sub.num_sequences == len(picked)
    for seq, e in zip(sub, expected):
        np.testing.assert_array_equal(np.asarray(seq), e)


# ---------------------------------------------------------------------------
# storage
# ---------------------------------------------------------------------------


def test_save_load_round_trip_every_format(tmp_path):
    seqs = file_sequences(tmp_path)
    for name, seq in seqs.items():
        ds = ImagingDataset([seq, seq], str(tmp_path / f"ds_{name}"), channel_names=["g", "r"])
        assert ds.savedir.endswith(".sima")
        loaded = ImagingDataset.load(ds.savedir)
        assert loaded.channel_names == ["g", "r"]
        assert loaded.frame_shape == ds.frame_shape
        for a, b in zip(loaded, ds):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
        meta = json.loads(Path(os.path.join(ds.savedir, storage.METADATA_FILE)).read_text())
        assert meta["format"] == storage.FORMAT_NAME
        assert meta["version"] == storage.FORMAT_VERSION
        assert not any(f.endswith(".pkl") for f in os.listdir(ds.savedir))


def test_load_without_suffix_and_save_with_or_without_suffix(tmp_path):
    ds = ndarray_dataset(str(tmp_path / "a"))
    assert os.path.isdir(tmp_path / "a.sima")
    assert ImagingDataset.load(str(tmp_path / "a")).num_frames == 10
    ds.save(str(tmp_path / "b.sima"))
    ds.save(str(tmp_path / "c"))
    assert ds.savedir == str(tmp_path / "c.sima")
    for d in ("b", "c"):
        assert ImagingDataset.load(str(tmp_path / d)).num_frames == 10
    with pytest.raises(FileExistsError):
        ds.save(str(tmp_path / "b"))
    with pytest.raises(FileNotFoundError, match="no dataset directory"):
        ImagingDataset.load(str(tmp_path / "zzz"))
    with pytest.raises(ValueError, match="no directory"):
        ndarray_dataset().save()


def test_moved_dataset_resolves_relative_paths(tmp_path):
    src = tmp_path / "orig"
    src.mkdir()
    seqs = file_sequences(src)
    ImagingDataset([seqs["hdf5"], seqs["masked"][:6]], str(src / "ds"))
    shutil.move(str(src), str(tmp_path / "moved"))
    ds = ImagingDataset.load(str(tmp_path / "moved" / "ds.sima"))
    assert ds.num_frames == 10
    os.remove(tmp_path / "moved" / "movie.tif")
    with pytest.raises(FileNotFoundError, match=r"movie\.tif.*tried.*moved.*orig"):
        ImagingDataset.load(str(tmp_path / "moved" / "ds.sima"))


def test_corrupt_metadata(tmp_path):
    ds = ndarray_dataset(str(tmp_path / "c"))
    path = os.path.join(ds.savedir, storage.METADATA_FILE)
    text = Path(path).read_text()
    with open(path, "w") as fh:
        fh.write(text[: len(text) // 2])
    with pytest.raises(storage.DatasetFormatError, match="corrupt or truncated"):
        ImagingDataset.load(ds.savedir)
    meta = json.loads(text)
    meta["version"] = 99
    with open(path, "w") as fh:
        json.dump(meta, fh)
    with pytest.raises(storage.DatasetFormatError, match="newer sima_fast"):
        ImagingDataset.load(ds.savedir)
    del meta["sequences"]
    meta["version"] = 1
    with open(path, "w") as fh:
        json.dump(meta, fh)
    with pytest.raises(storage.DatasetFormatError, match="sequences"):
        ImagingDataset.load(ds.savedir)
    os.remove(path)
    with pytest.raises(storage.DatasetFormatError, match="neither"):
        ImagingDataset.load(ds.savedir)


def test_changed_data_file_is_detected(tmp_path):
    h5 = str(tmp_path / "m.h5")
    with h5py.File(h5, "w") as f:
        f.create_dataset("imaging", data=np.zeros((5, 4, 4)))
    ds = ImagingDataset([sima.Sequence.create("HDF5", h5, "tyx")], str(tmp_path / "d"))
    with h5py.File(h5 + ".new", "w") as f:  # replaced by another program
        f.create_dataset("imaging", data=np.zeros((3, 4, 4)))
    os.replace(h5 + ".new", h5)
    with pytest.raises(storage.DatasetFormatError, match="changed"):
        ImagingDataset.load(ds.savedir)


def test_failed_save_leaves_previous_state(tmp_path, monkeypatch):
    ds = ndarray_dataset(str(tmp_path / "s"), channel_names=["a", "b"])
    before = sorted(os.listdir(ds.savedir))
    meta_before = Path(os.path.join(ds.savedir, storage.METADATA_FILE)).read_text()

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(storage, "write_metadata", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        ds.channel_names = ["x", "y"]
    assert ds.channel_names == ["a", "b"]
    # A failed save into a new directory leaves nothing behind.
    with pytest.raises(RuntimeError, match="disk full"):
        ds.save(str(tmp_path / "other"))
    assert not os.path.exists(tmp_path / "other.sima")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".other")]
    monkeypatch.undo()
    assert sorted(os.listdir(ds.savedir)) == before
    assert Path(os.path.join(ds.savedir, storage.METADATA_FILE)).read_text() == meta_before
    loaded = ImagingDataset.load(ds.savedir)
    assert loaded.channel_names == ["a", "b"]
    np.testing.assert_array_equal(np.asarray(loaded.sequences[1]), B)


def test_failure_inside_atomic_write_keeps_old_file(tmp_path, monkeypatch):
    ds = ndarray_dataset(str(tmp_path / "s"))
    path = os.path.join(ds.savedir, storage.METADATA_FILE)
    old = Path(path).read_text()
    real_dumps = json.dumps

    def half_written(obj, **kw):
        raise OSError("crash while writing")

    monkeypatch.setattr(json, "dumps", half_written)
    with pytest.raises(OSError):
        ds.save()
    monkeypatch.setattr(json, "dumps", real_dumps)
    assert Path(path).read_text() == old
    assert not [p for p in os.listdir(ds.savedir) if p.startswith(".tmp-")]


def test_read_only(tmp_path):
    ndarray_dataset(str(tmp_path / "r"))
    ds = ImagingDataset.load(str(tmp_path / "r"), read_only=True)
    assert ds.read_only
    with pytest.raises(PermissionError, match="read_only"):
        ds.save()
    with pytest.raises(PermissionError):
        ds.channel_names = ["p", "q"]
    _ = ds.time_averages  # computing is fine; nothing is written
    assert storage.PROJECTIONS_FILE not in os.listdir(ds.savedir)


def test_pickling_a_dataset_is_not_needed_for_storage(tmp_path):
    ds = ndarray_dataset(str(tmp_path / "p"))
    assert not any(name.endswith(".pkl") for name in os.listdir(ds.savedir))


# ---------------------------------------------------------------------------
# projections
# ---------------------------------------------------------------------------


@given(seed=st.integers(0, 1000), dtype=st.sampled_from(["uint16", "float32", "float64"]))
def test_projections_match_numpy_scipy(seed, dtype):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 4000, size=(5, 1, 3, 4, 2)).astype(dtype)
    b = rng.integers(0, 4000, size=(3, 1, 3, 4, 2)).astype(dtype)
    seqs = [sima.Sequence.create("ndarray", a), sima.Sequence.create("ndarray", b)]
    if dtype != "uint16":
        seqs = [s.mask([(0, None, None), (None, rng.random((1, 3, 4)) < 0.4, [1])]) for s in seqs]
    seqs.append(sima.Sequence.create("ndarray", np.full((2, 1, 3, 4, 2), 7, dtype=dtype)))
    ds = ImagingDataset(seqs, None)
    frames = np.concatenate([np.asarray(s) for s in seqs])
    expected = ref.projections(frames)
    for name in ("time_averages", "time_std", "time_kurtosis"):
        np.testing.assert_allclose(getattr(ds, name), expected[name], rtol=1e-10, equal_nan=True)


def test_projection_edge_cases():
    data = np.full((4, 1, 2, 2, 1), 5.0)
    data[:, 0, 0, 1, 0] = np.nan  # never observed
    data[1:, 0, 1, 0, 0] = np.nan  # observed once
    data[:, 0, 1, 1, 0] = [1.0, 2.0, 3.0, 10.0]
    ds = ImagingDataset([sima.Sequence.create("ndarray", data)], None)
    mean, std, kurt = ds.time_averages, ds.time_std, ds.time_kurtosis
    assert np.isnan(mean[0, 0, 1, 0]) and np.isnan(std[0, 0, 1, 0]) and np.isnan(kurt[0, 0, 1, 0])
    assert mean[0, 1, 0, 0] == 5.0 and std[0, 1, 0, 0] == 0.0 and np.isnan(kurt[0, 1, 0, 0])
    assert np.isnan(kurt[0, 0, 0, 0])  # constant pixel
    import scipy.stats

    assert kurt[0, 1, 1, 0] == pytest.approx(
        scipy.stats.kurtosis([1, 2, 3, 10], fisher=False, bias=True), rel=1e-12
    )


def test_projections_are_cached_on_disk(tmp_path, monkeypatch):
    ds = ndarray_dataset(str(tmp_path / "p"))
    mean = ds.time_averages
    assert storage.PROJECTIONS_FILE in os.listdir(ds.savedir)
    from sima_fast import _projections

    def fail(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(_projections, "projections", fail)
    again = ImagingDataset.load(ds.savedir)
    np.testing.assert_array_equal(again.time_std, ds.time_std)
    np.testing.assert_array_equal(again.time_averages, mean)
    # a new directory carries the cache over
    ds.save(str(tmp_path / "q"))
    np.testing.assert_array_equal(
        ImagingDataset.load(str(tmp_path / "q")).time_kurtosis, ds.time_kurtosis
    )


# ---------------------------------------------------------------------------
# signals
# ---------------------------------------------------------------------------


def signals_record():
    return {
        "raw": [np.arange(12, dtype="float32").reshape(2, 6), np.ones((2, 4), "float32")],
        "mean_frame": np.ones((2, 5, 7)),
        "overlap": (np.zeros(0, np.int64), np.zeros(0, np.int64)),
        "signal_channel": 0,
        "rois": [
            {
                "id": "a",
                "label": "one",
                "tags": {"cell", "big"},
                "polygons": None,
                "mask": None,
                "im_shape": (2, 5, 7),
            },
            {
                "id": None,
                "label": None,
                "tags": set(),
                "polygons": [np.zeros((4, 3))],
                "mask": None,
                "im_shape": None,
            },
        ],
        "timestamp": "2026-01-01-00h00m00s",
    }


def test_signals_store_and_export(tmp_path):
    for savedir in (None, str(tmp_path / "sig")):
        ds = ndarray_dataset(savedir, channel_names=["g", "r"])
        ds._store_signals(1, "first", signals_record())
        later = signals_record()
        later["timestamp"] = "2026-02-01-00h00m00s"
        later["raw"] = [r * 2 for r in later["raw"]]
        ds._store_signals(1, "second", later)
        if savedir is not None:
            ds = ImagingDataset.load(savedir)
        got = ds.signals("r")
        assert sorted(got) == ["first", "second"]
        assert ds.signals(0) == {}
        rec = got["first"]
        np.testing.assert_array_equal(rec["raw"][0], signals_record()["raw"][0])
        assert rec["rois"][0]["tags"] == {"cell", "big"}
        assert rec["rois"][1]["id"] is None
        assert isinstance(rec["overlap"], tuple)
        out = tmp_path / f"out_{savedir is None}.csv"
        ds.export_signals(str(out), channel="r")  # most recent: 'second'
        lines = out.read_text().splitlines()
        assert lines[0].split("\t") == ["sequence", "frame", "a", ""]
        assert lines[1].split("\t") == ["", "label", "one", ""]
        assert lines[2].split("\t") == ["", "tags", "big,cell", ""]
        assert len(lines) == 3 + 10
        assert lines[3].split("\t") == ["0", "0", "0.0", "12.0"]
        assert lines[-1].split("\t") == ["1", "3", "2.0", "2.0"]
        ds.export_signals(str(out), channel=1, signals_label="first")
        assert out.read_text().splitlines()[3].split("\t")[2:] == ["0.0", "6.0"]
        with pytest.raises(KeyError, match="third"):
            ds.export_signals(str(out), channel=1, signals_label="third")
        with pytest.raises(ValueError, match="no extracted signals"):
            ds.export_signals(str(out), channel=0)
        with pytest.raises(ValueError, match="fmt"):
            ds.export_signals(str(out), fmt="xlsx", channel=1)

"""Damaged data files and metadata are refused with typed errors, never read short.

Issue 20: a truncated TIFF opened as a 1-frame movie, a truncated zlib TIFF
failed mid-read with ``zlib.error``, a corrupt HDF5 chunk gave an ``OSError``
without a file name, a virtual HDF5 dataset with a missing source read as
zeros, a dangling external link read as "holds 0 datasets", a malformed
``metadata.json`` gave ``KeyError``/``AttributeError``/``RecursionError``, and
float16 and bool arrays were accepted and then failed inside the kernels.
"""

from __future__ import annotations

import json
import os
import re

import h5py
import numpy as np
import pytest
import tifffile

import sima_fast as sima
from sima_fast import Sequence
from sima_fast._validate import ArgumentTypeError
from sima_fast.ROI import ROI, ROIList
from sima_fast.sequence import CorruptFileError, DescriptionError, LoadContext
from sima_fast.storage import DatasetFormatError

T, Y, X = 100, 16, 12
FRACTIONS = (0.999, 0.9, 0.75, 0.5, 0.25, 0.05)


def movie(dtype=np.uint16) -> np.ndarray:
    rng = np.random.default_rng(20)
    return rng.integers(0, 4000, (T, Y, X)).astype(dtype)


def truncate(src, dst, fraction: float) -> str:
    with open(src, "rb") as fh:
        data = fh.read()
    with open(dst, "wb") as fh:
        fh.write(data[: int(len(data) * fraction)])
    return str(dst)


def named(path) -> str:
    """A regex matching the full path as it appears in messages."""
    return re.escape(os.path.abspath(str(path)))


TIFF_VARIANTS = {
    "plain": {},
    "zlib": {"compression": "zlib"},
    "imagej": {"imagej": True},
    "bigtiff": {"bigtiff": True},
    "strips": {"rowsperstrip": 4},
    "imagej_one_ifd": {"imagej": True, "truncate": True},
    "shaped_one_ifd": {"truncate": True},
}


# ---------------------------------------------------------------------------
# TIFF
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(TIFF_VARIANTS))
def test_truncated_tiff_is_refused_at_open(tmp_path, variant):
    data = movie()
    full = tmp_path / f"{variant}.tif"
    tifffile.imwrite(full, data, **TIFF_VARIANTS[variant])
    seq = Sequence.create("TIFF", str(full))  # the intact file reads whole
    assert len(seq) == T
    np.testing.assert_array_equal(np.asarray(seq)[:, 0, :, :, 0], data)
    for fraction in FRACTIONS:
        cut = truncate(full, tmp_path / f"{variant}_{fraction}.tif", fraction)
        with pytest.raises(CorruptFileError, match=named(cut)) as info:
            Sequence.create("TIFF", cut)
        assert isinstance(info.value, OSError)
        assert info.value.filename == os.path.abspath(cut)


def test_truncated_tiff_multi_plane_and_channel(tmp_path):
    full = tmp_path / "zc.tif"
    tifffile.imwrite(full, movie())
    assert Sequence.create("TIFF", str(full), num_planes=2, num_channels=2).shape[0] == T // 4
    cut = truncate(full, tmp_path / "zc_half.tif", 0.5)
    with pytest.raises(CorruptFileError, match="truncated"):
        Sequence.create("TIFF", cut, num_planes=2, num_channels=2)


@pytest.mark.parametrize("description", ["ImageJ=1.11a\nimages=100\n", '{"shape": [100, 16, 12]}'])
def test_tiff_with_fewer_pages_than_its_metadata_announces(tmp_path, description):
    path = tmp_path / "short.tif"
    tifffile.imwrite(path, movie()[:50], description=description, metadata=None)
    with pytest.raises(CorruptFileError, match=r"holds 50 page\(s\) but .* announces 100"):
        Sequence.create("TIFF", str(path))


def test_corrupt_zlib_strip_fails_at_read_naming_file_and_page(tmp_path):
    path = tmp_path / "zlib.tif"
    tifffile.imwrite(path, movie(), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[37].dataoffsets[0]
    raw = bytearray(path.read_bytes())
    raw[offset + 2 : offset + 40] = bytes(38)  # same size, undecodable
    path.write_bytes(bytes(raw))
    seq = Sequence.create("TIFF", str(path))
    assert len(seq) == T  # nothing is missing from the structure
    seq.read_chunk(0, 37)  # the pages before the damage read
    with pytest.raises(CorruptFileError, match=named(path) + ".*page 37"):
        seq.read_chunk(30, 40)
    ds = sima.ImagingDataset([seq], None)
    with pytest.raises(CorruptFileError, match="page 37"):
        ds.time_averages  # noqa: B018 - the property computes


def test_tiff_header_damage_is_corrupt_not_foreign(tmp_path):
    path = tmp_path / "tiny.tif"
    tifffile.imwrite(path, movie()[:5])
    truncate(path, path, 0.01)  # header only: a damaged TIFF
    with pytest.raises(CorruptFileError, match=named(path)):
        Sequence.create("TIFF", str(path))
    foreign = tmp_path / "foreign.tif"
    foreign.write_bytes(b"GIF89a" + bytes(100))
    with pytest.raises(OSError, match="TIFF") as info:
        Sequence.create("TIFF", str(foreign))
    assert not isinstance(info.value, CorruptFileError)


def write_frames(folder, n=10) -> tuple[str, np.ndarray]:
    data = movie()[:n]
    folder.mkdir()
    for t in range(n):
        tifffile.imwrite(folder / f"f{t:03d}.tif", data[t])
    return str(folder / "f*.tif"), data


def test_tiffs_truncated_file_is_named_at_read(tmp_path):
    pattern, data = write_frames(tmp_path / "frames")
    victim = tmp_path / "frames" / "f006.tif"
    truncate(victim, victim, 0.5)
    seq = Sequence.create("TIFFs", [[pattern]])
    assert len(seq) == 10
    np.testing.assert_array_equal(seq.read_chunk(0, 6)[:, 0, :, :, 0], data[:6])
    with pytest.raises(CorruptFileError, match=named(victim)):
        seq.read_chunk(0, 10)


def test_tiffs_empty_or_truncated_first_file_refused_at_create(tmp_path):
    pattern, _ = write_frames(tmp_path / "a")
    (tmp_path / "a" / "f004.tif").write_bytes(b"")
    with pytest.raises(CorruptFileError, match=named(tmp_path / "a" / "f004.tif")):
        Sequence.create("TIFFs", [[pattern]])
    pattern, _ = write_frames(tmp_path / "b")
    first = tmp_path / "b" / "f000.tif"
    truncate(first, first, 0.6)
    with pytest.raises(CorruptFileError, match=named(first)):
        Sequence.create("TIFFs", [[pattern]])


# ---------------------------------------------------------------------------
# HDF5
# ---------------------------------------------------------------------------


def test_corrupt_gzip_chunk_names_file_and_dataset(tmp_path):
    path = tmp_path / "gz.h5"
    data = movie()
    with h5py.File(path, "w") as f:
        dset = f.create_group("imaging").create_dataset(
            "mov", data=data, chunks=(10, Y, X), compression="gzip"
        )
        info = dset.id.get_chunk_info(4)  # frames 40..49
    raw = bytearray(path.read_bytes())
    for k in range(info.byte_offset + 4, info.byte_offset + 24):
        raw[k] ^= 0xFF
    path.write_bytes(bytes(raw))
    seq = Sequence.create("HDF5", str(path), "tyx", group="imaging")
    np.testing.assert_array_equal(seq.read_chunk(0, 40)[:, 0, :, :, 0], data[:40])
    with pytest.raises(CorruptFileError, match=named(path) + ".*'/imaging/mov'") as err:
        seq.read_chunk(35, 45)
    assert err.value.filename == str(path)
    ds = sima.ImagingDataset([seq], None)
    with pytest.raises(CorruptFileError, match=named(path)):
        ds.time_averages  # noqa: B018 - the property computes


def test_truncated_hdf5_is_corrupt_at_open(tmp_path):
    path = tmp_path / "cut.h5"
    with h5py.File(path, "w") as f:
        f["mov"] = movie()
    truncate(path, path, 0.5)
    with pytest.raises(CorruptFileError, match=named(path)):
        Sequence.create("HDF5", str(path), "tyx")


def make_vds(tmp_path, source_name="src.h5"):
    data = movie().astype(np.float32)
    with h5py.File(tmp_path / source_name, "w") as f:
        f["x"] = data
    layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
    layout[:] = h5py.VirtualSource(source_name, "x", shape=data.shape)
    with h5py.File(tmp_path / "vds.h5", "w") as f:
        f.create_virtual_dataset("v", layout, fillvalue=0)
    return tmp_path / "vds.h5", data


def test_virtual_dataset_resolves_sources_next_to_the_file(tmp_path, monkeypatch):
    vds, data = make_vds(tmp_path)
    monkeypatch.chdir(tmp_path.parent)  # relative source names are found next to the file
    seq = Sequence.create("HDF5", str(vds), "tyx")
    np.testing.assert_array_equal(np.asarray(seq)[:, 0, :, :, 0], data)


def test_virtual_dataset_with_missing_source_is_refused(tmp_path, monkeypatch):
    vds, _ = make_vds(tmp_path)
    os.remove(tmp_path / "src.h5")
    monkeypatch.chdir(tmp_path.parent)
    with pytest.raises(FileNotFoundError, match=r"'src\.h5' of the virtual dataset '/v'"):
        Sequence.create("HDF5", str(vds), "tyx")


def test_virtual_dataset_whose_source_lacks_the_dataset_is_refused(tmp_path):
    vds, _ = make_vds(tmp_path)
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f["other"] = np.zeros(3)
    with pytest.raises(CorruptFileError, match="has no dataset 'x'"):
        Sequence.create("HDF5", str(vds), "tyx")


def test_dangling_links_say_where_they_point(tmp_path):
    path = tmp_path / "links.h5"
    with h5py.File(path, "w") as f:
        f["mov"] = h5py.ExternalLink("gone.h5", "/data")
    with pytest.raises(
        ValueError, match=r"dangling external link to '/data' in the file 'gone\.h5'"
    ):
        Sequence.create("HDF5", str(path), "tyx")
    with pytest.raises(KeyError, match=re.escape(str(tmp_path / "gone.h5"))):
        Sequence.create("HDF5", str(path), "tyx", key="mov")
    with h5py.File(path, "w") as f:
        f["data"] = movie()
        f["soft"] = h5py.SoftLink("/nowhere")
        f["grp"] = h5py.ExternalLink(str(path), "/missing_group")
    assert len(Sequence.create("HDF5", str(path), "tyx", key="data")) == T
    with pytest.raises(KeyError, match="dangling soft link to '/nowhere'"):
        Sequence.create("HDF5", str(path), "tyx", key="soft")
    with pytest.raises(KeyError, match=r"group 'grp' .* dangling external link"):
        Sequence.create("HDF5", str(path), "tyx", group="grp")


# ---------------------------------------------------------------------------
# metadata.json
# ---------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    src = tmp_path / "movie.h5"
    with h5py.File(src, "w") as f:
        f["mov"] = movie()[:10]
    seq = Sequence.create("HDF5", str(src), "tyx")
    savedir = tmp_path / "d.sima"
    sima.ImagingDataset([seq, seq[:5].mask([(0, None, None)])], str(savedir))
    return savedir


def edit_metadata(savedir, change) -> str:
    path = savedir / "metadata.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return str(path)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["sequences"][0].pop("path"), "sequences[0].path"),
        (lambda m: m["sequences"][0].update(path="movie.h5"), "sequences[0].path"),
        (lambda m: m["sequences"][0]["path"].update(abspath=3), "sequences[0].path.abspath"),
        (lambda m: m["sequences"][0].update(dim_order=None), "sequences[0].dim_order"),
        (lambda m: m["sequences"][0].update(fmt="AVI"), "sequences[0].fmt"),
        (lambda m: m["sequences"].__setitem__(0, "HDF5"), "sequences[0]"),
        (lambda m: m["sequences"][1]["base"].pop("base"), "sequences[1].base.base"),
        (lambda m: m["sequences"][1]["masks"][0].pop("frames"), "sequences[1].masks[0].frames"),
        (
            lambda m: m["sequences"][1]["base"]["indices"].__setitem__(0, {"slice": "x"}),
            "sequences[1].base.indices[0].slice",
        ),
        (lambda m: m.update(channel_names=[None]), "channel_names[0]"),
        (lambda m: m.update(num_frames=[10, "5"]), "num_frames[1]"),
    ],
)
def test_malformed_metadata_names_file_and_field(saved, change, field):
    assert sima.ImagingDataset.load(str(saved)).num_sequences == 2
    path = edit_metadata(saved, change)
    with pytest.raises(DatasetFormatError, match=re.escape(repr(path))) as info:
        sima.ImagingDataset.load(str(saved))
    assert f"'{field}'" in str(info.value)


def test_deeply_nested_metadata_is_refused(saved):
    path = saved / "metadata.json"
    text = path.read_text()
    for nesting in ("[" * 100_000 + "]" * 100_000, "[" * 600 + "]" * 600):
        path.write_text(text[: text.rindex("}")] + f', "extra": {nesting}}}')
        with pytest.raises(DatasetFormatError, match=re.escape(repr(str(path))) + ".*deep"):
            sima.ImagingDataset.load(str(saved))


def test_deeply_nested_sequence_descriptions_are_refused(saved):
    def nest(meta):
        d = meta["sequences"][0]
        for _ in range(100):
            d = {"fmt": "filled", "base": d}
        meta["sequences"][0] = d

    edit_metadata(saved, nest)
    with pytest.raises(DatasetFormatError, match="nest more than 64 levels"):
        sima.ImagingDataset.load(str(saved))


def test_fromdict_checks_descriptions_directly():
    ctx = LoadContext(None, None)
    with pytest.raises(DescriptionError, match="path: missing") as info:
        Sequence.fromdict({"fmt": "TIFF"}, ctx)
    assert info.value.field == "path" and isinstance(info.value, ValueError)
    bad = {"fmt": "joined", "sequences": [{"fmt": "TIFF", "path": "x.tif"}]}
    with pytest.raises(DescriptionError) as info:
        Sequence.fromdict(bad, ctx)
    assert info.value.field == "sequences[0].path"


# ---------------------------------------------------------------------------
# dtypes accepted at create work everywhere
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "read_as"), [("float16", "float32"), ("bool", "uint8")])
def test_float16_and_bool_arrays_work_everywhere(tmp_path, dtype, read_as):
    rng = np.random.default_rng(1)
    values = (
        rng.integers(0, 2, (12, 1, 16, 16, 1))
        if dtype == "bool"
        else rng.random((12, 1, 16, 16, 1))
    )
    array = values.astype(dtype)
    seq = Sequence.create("ndarray", array)
    assert seq.dtype == np.dtype(read_as)
    array[3] = array[4]  # kept by reference: converted chunk by chunk, never copied whole
    chunk = seq.read_chunk(2, 7)
    assert chunk.dtype == np.dtype(read_as)
    np.testing.assert_array_equal(chunk, array[2:7].astype(read_as))
    ds = sima.ImagingDataset([seq], None)
    np.testing.assert_allclose(
        ds.time_averages, array.astype(np.float64).mean(axis=0), rtol=1e-6, atol=1e-6
    )
    mask = np.zeros((1, 16, 16), bool)
    mask[0, 4:9, 3:8] = True
    signals = ds.extract(ROIList([ROI(mask=mask)]), save_summary=False)["raw"][0]
    assert signals.shape == (1, 12) and np.isfinite(signals).all()
    ds.export_frames([str(tmp_path / "out.h5")], fmt="HDF5")
    with h5py.File(tmp_path / "out.h5") as f:
        exported = np.asarray(next(iter(f.values())))
    np.testing.assert_allclose(
        exported.reshape(array.shape).astype(np.float64), array.astype(np.float64), atol=1e-3
    )
    ds.export_frames([[[str(tmp_path / "out.tif")]]], fmt="TIFF16")
    assert tifffile.imread(tmp_path / "out.tif").shape[0] == 12


def test_float16_and_bool_files_are_read_converted(tmp_path):
    data = movie()[:6]
    with h5py.File(tmp_path / "f16.h5", "w") as f:
        f["half"] = data.astype(np.float16)
        f["flag"] = data > 2000
    half = Sequence.create("HDF5", str(tmp_path / "f16.h5"), "tyx", key="half")
    flag = Sequence.create("HDF5", str(tmp_path / "f16.h5"), "tyx", key="flag")
    assert (half.dtype, flag.dtype) == (np.float32, np.uint8)
    np.testing.assert_array_equal(half.read_chunk(0, 6)[:, 0, :, :, 0], data.astype(np.float16))
    np.testing.assert_array_equal(flag.read_chunk(0, 6)[:, 0, :, :, 0], data > 2000)
    raw = tmp_path / "f16.raw"
    data.astype(np.float16).tofile(raw)
    mapped = Sequence.create("memmap", str(raw), data.shape, "tyx", dtype="float16")
    assert mapped.dtype == np.float32 and mapped.view(0, 6) is None
    np.testing.assert_array_equal(mapped.read_chunk(0, 6)[:, 0, :, :, 0], data.astype(np.float16))
    tifffile.imwrite(tmp_path / "f16.tif", data.astype(np.float16))
    tiff = Sequence.create("TIFF", str(tmp_path / "f16.tif"))
    assert tiff.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(tiff)[:, 0, :, :, 0], data.astype(np.float16))


@pytest.mark.parametrize("dtype", ["complex64", "longdouble", "object", "U3", "datetime64[s]"])
def test_unsupported_dtypes_are_refused_at_create(tmp_path, dtype):
    if np.dtype(dtype) == np.dtype(np.float64):
        pytest.skip("longdouble is float64 on this platform")
    array = np.zeros((2, 1, 3, 3, 1), dtype=dtype)
    with pytest.raises(ArgumentTypeError, match=r"^array has dtype .*float16, float32, float64"):
        Sequence.create("ndarray", array)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(bytes(64 * 18))
    if np.dtype(dtype).kind not in "OU":
        with pytest.raises(TypeError, match="numeric"):
            Sequence.create("memmap", str(raw), (2, 3, 3), "tyx", dtype=dtype)


def test_float16_and_bool_dask_arrays_are_converted_lazily():
    da = pytest.importorskip("dask.array")
    data = movie()[:6].reshape(6, 1, Y, X, 1)
    for dtype, read_as in (("float16", "float32"), ("bool", "uint8")):
        seq = Sequence.create("dask", da.from_array(data.astype(dtype), chunks=(2, 1, Y, X, 1)))
        assert seq.dtype == read_as and seq.to_dask().dtype == read_as
        np.testing.assert_array_equal(seq.read_chunk(0, 6), data.astype(dtype).astype(read_as))
        assert float(sima.ImagingDataset([seq], None).time_averages.sum()) > 0


def test_corrupt_file_error_pickles_with_its_path():
    import pickle

    err = CorruptFileError("TIFF file '/x.tif' is truncated", "/x.tif")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is CorruptFileError and again.filename == "/x.tif"
    assert str(again) == str(err)

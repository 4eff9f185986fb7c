"""Every reader and wrapper against the plain numpy references in ``reference.py``."""

from __future__ import annotations

import json
import os
import pickle

import h5py
import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st

import reference as ref
from sima_fast import Sequence

DTYPES = ["uint16", "float32", "float64"]


def random_movie(rng, shape, dtype):
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 65535, size=shape, dtype=dtype)
    return rng.normal(100, 20, size=shape).astype(dtype)


def check_sequence(seq: Sequence, expected: np.ndarray, native_dtype=None) -> None:
    """Frames, full array, chunks (several sizes) and single frames all match."""
    assert seq.shape == expected.shape
    assert len(seq) == expected.shape[0]
    frames = list(seq)
    assert len(frames) == expected.shape[0]
    for f, e in zip(frames, expected):
        assert f.dtype == np.float64
        np.testing.assert_array_equal(f, e)
    np.testing.assert_array_equal(np.asarray(seq), expected)
    if native_dtype is not None:
        assert seq.dtype == np.dtype(native_dtype)
    T = expected.shape[0]
    for chunk in (1, 2, 3, max(T, 1)):
        parts = [c for _, c in seq.iter_chunks(chunk)]
        got = np.concatenate(parts) if parts else np.empty((0, *expected.shape[1:]), seq.dtype)
        assert got.dtype == seq.dtype
        np.testing.assert_array_equal(got.astype(np.float64), expected)
        parts = [c.copy() for _, c in seq.iter_chunks(chunk, reuse_buffer=True)]
        if parts:
            np.testing.assert_array_equal(np.concatenate(parts).astype(np.float64), expected)
    if T:
        np.testing.assert_array_equal(seq._get_frame(T - 1), expected[T - 1])
        np.testing.assert_array_equal(seq._get_frame(-1), expected[-1])
        out = np.empty((1, *expected.shape[1:]), dtype=seq.dtype)
        assert seq.read_chunk(0, 1, out=out) is out
        np.testing.assert_array_equal(out[0].astype(np.float64), expected[0])


# ---------------------------------------------------------------------------
# HDF5
# ---------------------------------------------------------------------------


@st.composite
def dim_order_strategy(draw):
    letters = draw(st.lists(st.sampled_from("zyxc"), unique=True, max_size=4))
    pos = draw(st.integers(0, len(letters)))
    return "".join([*letters[:pos], "t", *letters[pos:]])


dim_orders = dim_order_strategy()


@given(dim_order=dim_orders, dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_hdf5_any_dim_order(tmp_path, dim_order, dtype, seed):
    rng = np.random.default_rng(seed)
    sizes = {"t": int(rng.integers(1, 6)), "z": 2, "y": 3, "x": 4, "c": 2}
    data = random_movie(rng, [sizes[d] for d in dim_order], dtype)
    path = tmp_path / f"m_{dim_order}_{dtype}_{seed}.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("imaging", data=data, chunks=True if data.size > 1 else None)
    seq = Sequence.create("HDF5", str(path), dim_order)
    check_sequence(seq, ref.to_tzyxc(data, dim_order), dtype)


def test_hdf5_group_and_key(tmp_path):
    data = np.arange(2 * 3 * 4, dtype="uint16").reshape(2, 3, 4)
    path = str(tmp_path / "g.h5")
    with h5py.File(path, "w") as f:
        g = f.create_group("acq/run1")
        g.create_dataset("green", data=data)
        g.create_dataset("red", data=data + 1)
        f.create_dataset("single/only", data=data)
    seq = Sequence.create("HDF5", path, "tyx", group="acq/run1", key="red")
    check_sequence(seq, ref.read_hdf5(path, "tyx", "red", "acq/run1"))
    only = Sequence.create("HDF5", path, "tyx", group="single")  # one dataset: key optional
    assert only.shape == (2, 1, 3, 4, 1)
    with pytest.raises(ValueError, match="key is required"):
        Sequence.create("HDF5", path, "tyx", group="acq/run1")
    with pytest.raises(KeyError, match=r"'blue'.*available"):
        Sequence.create("HDF5", path, "tyx", group="acq/run1", key="blue")
    with pytest.raises(KeyError, match="group 'nope'"):
        Sequence.create("HDF5", path, "tyx", group="nope", key="red")


@pytest.mark.parametrize(
    "dim_order, match",
    [
        ("tyxq", "letters"),
        ("tyy", "at most once"),
        ("yx", "contain 't'"),
        ("tyxcz", "dimensions"),
        (3, "string"),
    ],
)
def test_hdf5_bad_dim_order(tmp_path, dim_order, match):
    path = str(tmp_path / "a.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("imaging", data=np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=match):
        Sequence.create("HDF5", path, dim_order)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        Sequence.create("HDF5", str(tmp_path / "missing.h5"), "tyx")
    with pytest.raises(FileNotFoundError):
        Sequence.create("TIFF", str(tmp_path / "missing.tif"))
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not hdf5")
    with pytest.raises(OSError, match="HDF5"):
        Sequence.create("HDF5", str(junk), "tyx")
    with pytest.raises(OSError, match="TIFF"):
        Sequence.create("TIFF", str(junk))
    with pytest.raises(ValueError, match="fmt must be one of"):
        Sequence.create("AVI", str(junk))
    with pytest.raises(TypeError, match="path"):
        Sequence.create("HDF5", 12, "tyx")


# ---------------------------------------------------------------------------
# TIFF
# ---------------------------------------------------------------------------


@given(
    planes=st.integers(1, 3),
    channels=st.integers(1, 3),
    frames=st.integers(1, 5),
    extra_pages=st.integers(0, 2),
    dtype=st.sampled_from(["uint16", "float32"]),
    layout=st.sampled_from(["contiguous", "strided", "irregular", "compressed", "bigendian"]),
)
def test_tiff_interleaved(tmp_path, planes, channels, frames, extra_pages, dtype, layout):
    rng = np.random.default_rng(planes * 100 + channels * 10 + frames)
    extra = extra_pages % (planes * channels)  # an incomplete trailing frame is dropped
    pages = random_movie(rng, (frames * planes * channels + extra, 5, 7), dtype)
    path = str(tmp_path / f"{layout}_{planes}{channels}{frames}{extra}{dtype}.tif")
    if layout == "contiguous":
        tifffile.imwrite(path, pages, photometric="minisblack")
    elif layout == "bigendian":
        tifffile.imwrite(path, pages, photometric="minisblack", byteorder=">")
    else:
        with tifffile.TiffWriter(path) as w:
            for i, page in enumerate(pages):
                kwargs = {"photometric": "minisblack", "contiguous": False}
                if layout == "compressed":
                    kwargs["compression"] = "zlib"
                if layout == "irregular":
                    kwargs["description"] = "x" * (i * 37 % 11)
                w.write(page, **kwargs)
    seq = Sequence.create("TIFF", path, planes, channels)
    expected = ref.read_interleaved_tiff(path, planes, channels)
    assert expected.shape[0] == frames
    check_sequence(seq, expected, dtype)
    short = Sequence.create("TIFF", path, planes, channels, len_=frames - 1)
    assert short.shape[0] == frames - 1


def test_tiff_chunks_are_views_when_mapped(tmp_path):
    pages = np.arange(6 * 4 * 5, dtype="uint16").reshape(6, 4, 5)
    path = str(tmp_path / "v.tif")
    tifffile.imwrite(path, pages, photometric="minisblack")
    seq = Sequence.create("TIFF", path, num_planes=2)
    block = seq.read_chunk(1, 3)
    assert not block.flags.owndata and not block.flags.writeable
    np.testing.assert_array_equal(block[..., 0], pages[2:6].reshape(2, 2, 4, 5))


def test_tiff_bad_arguments(tmp_path):
    path = str(tmp_path / "b.tif")
    tifffile.imwrite(path, np.zeros((4, 3, 3), "uint16"), photometric="minisblack")
    with pytest.raises(ValueError, match="num_planes"):
        Sequence.create("TIFF", path, num_planes=0)
    with pytest.raises(ValueError, match="len_"):
        Sequence.create("TIFF", path, len_=5)
    rgb = str(tmp_path / "rgb.tif")
    tifffile.imwrite(rgb, np.zeros((3, 4, 3), "uint8"), photometric="rgb")
    with pytest.raises(ValueError, match="single-sample"):
        Sequence.create("TIFF", rgb)


def test_tiffs_pairs_planes_and_channels(tmp_path):
    rng = np.random.default_rng(3)
    T, P, C = 4, 2, 3
    data = random_movie(rng, (T, P, 5, 6, C), "uint16")
    patterns = []
    for p in range(P):
        row = []
        for c in range(C):
            for t in range(T):
                tifffile.imwrite(tmp_path / f"p{p}_c{c}_{t:03d}.tif", data[t, p, :, :, c])
            row.append(str(tmp_path / f"p{p}_c{c}_*.tif"))
        patterns.append(row)
    seq = Sequence.create("TIFFs", patterns)
    check_sequence(seq, data.astype(np.float64), "uint16")
    with pytest.raises(FileNotFoundError, match="matches no file"):
        Sequence.create("TIFFs", [[str(tmp_path / "none_*.tif")]])
    os.remove(tmp_path / "p1_c2_003.tif")
    with pytest.raises(ValueError, match="same number of files"):
        Sequence.create("TIFFs", patterns)
    with pytest.raises(ValueError, match="list"):
        Sequence.create("TIFFs", "p0_c0_*.tif")


# ---------------------------------------------------------------------------
# ndarray, memmap, zarr
# ---------------------------------------------------------------------------


@given(dtype=st.sampled_from(DTYPES), t=st.integers(0, 4))
def test_ndarray(dtype, t):
    data = random_movie(np.random.default_rng(t), (t, 2, 3, 4, 2), dtype)
    check_sequence(Sequence.create("ndarray", data), data.astype(np.float64), dtype)


def test_ndarray_needs_five_dimensions():
    with pytest.raises(ValueError, match="5 dimensions"):
        Sequence.create("ndarray", np.zeros((3, 4, 5)))
    with pytest.raises(TypeError, match="numeric"):
        Sequence.create("ndarray", np.zeros((1, 1, 1, 1, 1), dtype=object))


@given(dim_order=dim_orders, dtype=st.sampled_from(DTYPES), order=st.sampled_from("CF"))
def test_memmap(tmp_path, dim_order, dtype, order):
    rng = np.random.default_rng(len(dim_order))
    sizes = {"t": 3, "z": 2, "y": 3, "x": 4, "c": 2}
    shape = tuple(sizes[d] for d in dim_order)
    data = random_movie(rng, shape, dtype)
    path = str(tmp_path / f"{dim_order}{dtype}{order}.raw")
    np.asarray(data, order=order).ravel(order="K" if order == "C" else "F").tofile(path)
    seq = Sequence.create("memmap", path, shape, dim_order, dtype=dtype, order=order)
    check_sequence(seq, ref.to_tzyxc(data, dim_order), dtype)


def test_memmap_too_small(tmp_path):
    path = str(tmp_path / "s.raw")
    np.zeros(10, "float32").tofile(path)
    with pytest.raises(ValueError, match="needs"):
        Sequence.create("memmap", path, (3, 4, 5), "tyx")


def test_zarr(tmp_path):
    import zarr

    rng = np.random.default_rng(0)
    data = random_movie(rng, (5, 3, 4, 2), "uint16")  # t, y, x, c
    path = str(tmp_path / "m.zarr")
    arr = zarr.open(path, mode="w", shape=data.shape, chunks=(2, 3, 4, 2), dtype=data.dtype)
    arr[:] = data
    seq = Sequence.create("zarr", path, "tyxc")
    check_sequence(seq, ref.to_tzyxc(data, "tyxc"), "uint16")
    assert seq.default_chunk_frames() % 2 == 0
    check_sequence(Sequence.create("zarr", arr, "tyxc"), ref.to_tzyxc(data, "tyxc"))
    with pytest.raises(FileNotFoundError):
        Sequence.create("zarr", str(tmp_path / "none.zarr"), "tyxc")


# ---------------------------------------------------------------------------
# wrappers
# ---------------------------------------------------------------------------

BASE = np.random.default_rng(42).normal(size=(7, 3, 5, 6, 2))


def axis_index(size):
    ints = st.integers(-size, size - 1)
    slices = st.builds(
        slice,
        st.none() | st.integers(-size - 1, size + 1),
        st.none() | st.integers(-size - 1, size + 1),
        st.none() | st.sampled_from([1, 2, 3, -1, -2]),
    )
    lists = st.lists(st.integers(0, size - 1), min_size=1, max_size=4)
    return ints | slices | lists


index_tuples = st.tuples(*[axis_index(s) for s in BASE.shape]).flatmap(
    lambda full: st.integers(1, 5).map(lambda k: full[:k])
)


@given(indices=index_tuples)
def test_indexing_matches_numpy_and_keeps_axes(indices):
    seq = Sequence.create("ndarray", BASE)
    expected = ref.index_like_sequence(BASE, indices)
    if 0 in expected.shape[1:]:
        return
    indexed = seq[indices]
    check_sequence(indexed, expected)


def test_nested_indexing_and_errors():
    seq = Sequence.create("ndarray", BASE)
    check_sequence(seq[1:6][::2, :, 1], BASE[1:6][::2][:, :, [1]])
    check_sequence(seq[0], BASE[[0]])
    with pytest.raises(IndexError, match="out of bounds"):
        seq[7]
    with pytest.raises(IndexError, match="too many"):
        seq[0, 0, 0, 0, 0, 0]
    with pytest.raises(IndexError):
        seq[:, "a"]


def test_join_concatenates_channels():
    a = Sequence.create("ndarray", BASE)
    b = Sequence.create("ndarray", BASE[..., :1].astype("float32"))
    check_sequence(
        Sequence.join(a, b), np.concatenate([BASE, BASE[..., :1].astype("float32")], -1)
    )
    check_sequence(Sequence.join([a, a]), np.concatenate([BASE, BASE], -1))
    with pytest.raises(ValueError, match="match in everything but channels"):
        Sequence.join(a, a[1:])
    with pytest.raises(TypeError):
        Sequence.join(a, BASE)


@given(
    frames=st.none() | st.integers(0, 6) | st.lists(st.integers(0, 6), min_size=1, max_size=3),
    channels=st.none() | st.integers(0, 1) | st.just([1]),
    form=st.sampled_from(["zyx", "planes", "none"]),
    seed=st.integers(0, 100),
)
def test_mask_matches_reference(frames, channels, form, seed):
    rng = np.random.default_rng(seed)
    if form == "zyx":
        entry = (frames, rng.random((3, 5, 6)) < 0.3, channels)
    elif form == "planes":
        entry = (frames, [0, 2], rng.random((5, 6)) < 0.5, channels)
    else:
        entry = (frames, None, channels)
    masks = [entry, (3, None, None)]
    data = BASE.astype("float32")
    seq = Sequence.create("ndarray", data).mask(masks)
    check_sequence(seq, ref.mask_frames(data, masks), "float32")


def test_mask_on_uint16_gives_float32_and_validates():
    data = np.ones((3, 1, 2, 2, 1), "uint16")
    seq = Sequence.create("ndarray", data)
    assert seq.mask([(0, None, None)]).dtype == np.float32
    with pytest.raises(ValueError, match="zyx mask must have shape"):
        seq.mask([(None, np.zeros((2, 2), bool), None)])
    with pytest.raises(ValueError, match="out of range"):
        seq.mask([(5, None, None)])
    with pytest.raises(ValueError, match="frames, zyx_mask"):
        seq.mask([(None, None)])


@given(
    kind=st.sampled_from(["frame", "plane", "row", "frame3"]),
    seed=st.integers(0, 1000),
    dtype=st.sampled_from(DTYPES),
    nan=st.booleans(),
)
def test_apply_displacements_matches_reference(kind, seed, dtype, nan):
    rng = np.random.default_rng(seed)
    T, Z, Y, X, C = 4, 2, 5, 6, 2
    data = random_movie(rng, (T, Z, Y, X, C), dtype)
    if nan and dtype != "uint16":
        data[1, 0, 2, :, 0] = np.nan
    shape = {"frame": (T, 2), "plane": (T, Z, 2), "row": (T, Z, Y, 2), "frame3": (T, 3)}[kind]
    disp = rng.integers(0, 3, size=shape)
    if kind == "frame3":
        disp[:, 0] = rng.integers(0, 2, size=T)
    seq = Sequence.create("ndarray", data).apply_displacements(disp)
    expected = ref.displace(data, disp)
    assert seq.dtype == (np.float64 if dtype == "float64" else np.float32)
    got = np.asarray(seq)
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)
    if dtype != "float64" and kind != "row":  # no collisions: exact
        np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_apply_displacements_averages_collisions_and_crops():
    data = np.zeros((1, 1, 2, 3, 1))
    data[0, 0, 0] = 2.0
    data[0, 0, 1] = 4.0
    disp = np.array([[[[1, 0], [0, 0]]]])  # row 0 lands on row 1, row 1 stays: collision
    seq = Sequence.create("ndarray", data).apply_displacements(disp)
    frame = seq._get_frame(0)[0, :, :, 0]
    assert frame.shape == (3, 3)  # base rows plus the largest dy
    np.testing.assert_array_equal(frame[1], [3.0, 3.0, 3.0])
    assert np.isnan(frame[0]).all() and np.isnan(frame[2]).all()
    cropped = Sequence.create("ndarray", data).apply_displacements(np.array([[0, 2]]), (1, 2, 3))
    assert cropped.shape == (1, 1, 2, 3, 1)
    np.testing.assert_array_equal(cropped._get_frame(0)[0, 0, :, 0], [np.nan, np.nan, 2.0])


def test_apply_displacements_validation():
    seq = Sequence.create("ndarray", np.zeros((3, 2, 4, 4, 1)))
    with pytest.raises(ValueError, match=">= 0"):
        seq.apply_displacements(-np.ones((3, 2), int))
    with pytest.raises(ValueError, match="do not match"):
        seq.apply_displacements(np.zeros((4, 2), int))
    with pytest.raises(ValueError, match="whole numbers"):
        seq.apply_displacements(np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="shape"):
        seq.apply_displacements(np.zeros((3,), int))
    with pytest.raises(ValueError, match="frame_shape"):
        seq.apply_displacements(np.zeros((3, 2), int), frame_shape=(1, 0, 2))


def test_read_chunk_validation():
    seq = Sequence.create("ndarray", BASE)
    with pytest.raises(IndexError):
        seq.read_chunk(3, 9)
    with pytest.raises(ValueError, match="C-contiguous"):
        seq.read_chunk(0, 2, out=np.empty((2, 3, 5, 6, 2), "float32"))
    with pytest.raises(ValueError, match="chunk_frames"):
        next(seq.iter_chunks(0))


def test_sequences_pickle(tmp_path):
    path = str(tmp_path / "p.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("imaging", data=np.arange(24, dtype="uint16").reshape(2, 3, 4))
    tif = str(tmp_path / "p.tif")
    tifffile.imwrite(tif, np.arange(24, dtype="uint16").reshape(2, 3, 4), photometric="minisblack")
    for seq in (Sequence.create("HDF5", path, "tyx"), Sequence.create("TIFF", tif)):
        clone = pickle.loads(pickle.dumps(seq[:, :, 1:]))
        np.testing.assert_array_equal(np.asarray(clone), np.asarray(seq[:, :, 1:]))


# ---------------------------------------------------------------------------
# the public protocol
# ---------------------------------------------------------------------------


def one_of_each(tmp_path):
    """A sequence of every reader, keyed by format, all from small files."""
    import dask.array as da
    import zarr

    rng = np.random.default_rng(11)
    data = random_movie(rng, (6, 3, 4), "float32")  # t, y, x
    h5 = str(tmp_path / "movie.h5")
    with h5py.File(h5, "w") as f:
        f.create_dataset("imaging", data=data)
    tif = str(tmp_path / "movie.tif")
    tifffile.imwrite(tif, data, photometric="minisblack")
    for t in range(6):
        tifffile.imwrite(tmp_path / f"frame_{t}.tif", data[t])
    raw = str(tmp_path / "movie.raw")
    data.tofile(raw)
    store = str(tmp_path / "movie.zarr")
    arr = zarr.open(store, mode="w", shape=data.shape, chunks=(2, 3, 4), dtype=data.dtype)
    arr[:] = data
    return {
        "HDF5": Sequence.create("HDF5", h5, "tyx"),
        "TIFF": Sequence.create("TIFF", tif),
        "TIFFs": Sequence.create("TIFFs", [[str(tmp_path / "frame_*.tif")]]),
        "memmap": Sequence.create("memmap", raw, data.shape, "tyx"),
        "zarr": Sequence.create("zarr", store, "tyx"),
        "ndarray": Sequence.create("ndarray", data.reshape(6, 1, 3, 4, 1)),
        "dask": Sequence.create("dask", da.from_array(data, chunks=(4, 3, 4)), "tyx"),
    }


def test_data_files_of_every_format_and_of_nested_views(tmp_path):
    seqs = one_of_each(tmp_path)
    expected = {
        "HDF5": [str(tmp_path / "movie.h5")],
        "TIFF": [str(tmp_path / "movie.tif")],
        "TIFFs": [str(tmp_path / f"frame_{t}.tif") for t in range(6)],
        "memmap": [str(tmp_path / "movie.raw")],
        "zarr": [str(tmp_path / "movie.zarr")],
        "ndarray": [],
        "dask": [],
    }
    assert set(seqs) <= set(Sequence.formats())
    for fmt, seq in seqs.items():
        assert seq.format == fmt
        assert seq.data_files() == expected[fmt], fmt
        assert seq.children == ()
    import zarr

    in_memory = zarr.zeros((2, 3, 4), chunks=(1, 3, 4), dtype="uint16")
    assert Sequence.create("zarr", in_memory, "tyx").data_files() == []

    masked = seqs["HDF5"][::-1].mask([(0, None, None)])
    moved = seqs["TIFFs"].apply_displacements(np.zeros((6, 2), int))
    joined = Sequence.join(masked, moved, seqs["ndarray"], seqs["memmap"][:, :, :, :])
    nested = joined.fill_gaps()[::2]
    want = sorted(expected["HDF5"] + expected["TIFFs"] + expected["memmap"])
    assert nested.data_files() == want
    assert joined.children[0] is masked and len(joined.children) == 4
    assert nested.children[0].children == (joined,)
    assert Sequence.join(seqs["HDF5"], seqs["HDF5"]).data_files() == expected["HDF5"]


def test_storage_chunk_frames(tmp_path):
    import dask.array as da
    import zarr

    data = np.zeros((3, 10, 4), "uint16")  # y, t, x: time is not the first axis
    path = str(tmp_path / "c.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("chunked", data=data, chunks=(3, 4, 2))
        f.create_dataset("contiguous", data=data)
    chunked = Sequence.create("HDF5", path, "ytx", key="chunked")
    assert chunked.storage_chunk_frames == 4
    assert Sequence.create("HDF5", path, "ytx", key="contiguous").storage_chunk_frames == 1
    os.rename(path, path + ".moved")  # known without the file
    assert chunked.storage_chunk_frames == 4

    store = str(tmp_path / "c.zarr")
    arr = zarr.open(store, mode="w", shape=(3, 10, 4), chunks=(3, 5, 4), dtype="uint16")
    assert Sequence.create("zarr", store, "ytx").storage_chunk_frames == 5
    assert Sequence.create("zarr", arr, "ytx").storage_chunk_frames == 5
    assert Sequence.create("zarr", data, "ytx").storage_chunk_frames == 1  # a plain array

    lazy = da.from_array(np.zeros((10, 1, 2, 2, 1)), chunks=(3, 1, 2, 2, 1))
    assert Sequence.create("dask", lazy).storage_chunk_frames == 3
    empty = da.from_array(np.zeros((0, 1, 2, 2, 1)), chunks=(1, 1, 2, 2, 1))
    assert Sequence.create("dask", empty).storage_chunk_frames == 1

    assert Sequence.create("ndarray", np.zeros((4, 1, 2, 2, 1))).storage_chunk_frames == 1
    assert chunked[2:].storage_chunk_frames == 1  # a view's times need not align


def test_describe(tmp_path):
    seqs = one_of_each(tmp_path)
    assert {fmt: s.describe() for fmt, s in seqs.items()} == {
        "HDF5": "HDF5 movie.h5",
        "TIFF": "TIFF movie.tif",
        "TIFFs": "TIFFs",
        "memmap": "Memmap movie.raw",
        "zarr": "Zarr movie.zarr",
        "ndarray": "Ndarray",
        "dask": "Dask",
    }
    h5 = seqs["HDF5"]
    assert h5.apply_displacements(np.zeros((6, 2), int)).describe() == (
        "MotionCorrected of HDF5 movie.h5"
    )
    assert h5[1:].mask([]).fill_gaps().describe() == "Filled of Masked of Indexed of HDF5 movie.h5"
    assert Sequence.join(h5, seqs["TIFF"]).describe() == "Joined"


def test_zero_copy_and_view(tmp_path):
    seqs = one_of_each(tmp_path)
    zero_copy = {fmt for fmt, s in seqs.items() if s.zero_copy}
    assert zero_copy == {"TIFF", "memmap", "ndarray"}
    block = seqs["ndarray"].view(1, 3)
    assert block.shape == (2, 1, 3, 4, 1) and not block.flags.writeable
    assert seqs["HDF5"].view(1, 3) is None
    assert seqs["ndarray"][2:5].view(0, 2) is not None  # contiguous frames stay views
    assert seqs["ndarray"][::2].view(0, 2) is None
    assert seqs["ndarray"][:, :, 1:].zero_copy is False
    assert seqs["ndarray"].mask([]).zero_copy is False


class RampSequence(Sequence, format="test_ramp"):
    """A test-local format: frame t holds ``start + t`` everywhere. No file."""

    def __init__(self, num_frames, frame_shape, start=0.0):
        self._n, self._frame_shape, self._start = int(num_frames), tuple(frame_shape), start

    @property
    def shape(self):
        return (self._n, *self._frame_shape)

    @property
    def dtype(self):
        return np.dtype("float32")

    def _read(self, start, stop, out):
        out[...] = (self._start + np.arange(start, stop, dtype=np.float32)).reshape(-1, 1, 1, 1, 1)

    def todict(self, ctx):
        return {
            "fmt": self.format,
            "num_frames": self._n,
            "frame_shape": list(self._frame_shape),
            "start": self._start,
        }

    @classmethod
    def fromdict(cls, d, ctx):
        return cls(d["num_frames"], d["frame_shape"], d["start"])


def ramp_values(n, frame_shape, start):
    values = start + np.arange(n, dtype=np.float64)
    return np.broadcast_to(values.reshape(-1, 1, 1, 1, 1), (n, *frame_shape)).copy()


def test_a_new_format_registers_itself_and_round_trips_through_a_dataset(tmp_path):
    import sima_fast as sima

    assert "test_ramp" in Sequence.formats()
    seq = Sequence.create("test_ramp", 5, (1, 2, 3, 1), start=10.0)
    assert isinstance(seq, RampSequence)
    check_sequence(seq, ramp_values(5, (1, 2, 3, 1), 10.0), "float32")
    assert seq.describe() == "Ramp" and seq.data_files() == []
    assert seq.storage_chunk_frames == 1 and not seq.zero_copy

    masked = seq[1:].mask([(0, None, None)])
    expected = ramp_values(5, (1, 2, 3, 1), 10.0)[1:]
    expected[0] = np.nan
    ds = sima.ImagingDataset([seq, masked], str(tmp_path / "ramp.sima"))
    saved = json.loads((tmp_path / "ramp.sima" / "metadata.json").read_text())["sequences"]
    assert saved[0] == {
        "fmt": "test_ramp",
        "num_frames": 5,
        "frame_shape": [1, 2, 3, 1],
        "start": 10.0,
    }
    assert saved[1]["fmt"] == "masked" and saved[1]["base"]["base"]["fmt"] == "test_ramp"
    again = sima.ImagingDataset.load(ds.savedir)
    assert isinstance(again.sequences[0], RampSequence)
    np.testing.assert_array_equal(
        np.asarray(again.sequences[0]), ramp_values(5, (1, 2, 3, 1), 10.0)
    )
    np.testing.assert_array_equal(np.asarray(again.sequences[1]), expected)


def test_format_registration_rules():
    with pytest.raises(ValueError, match="already registered"):

        class Impostor(Sequence, format="HDF5"):
            pass

    assert "indexed" not in Sequence.formats()  # views come from methods, not create
    with pytest.raises(ValueError, match="fmt must be one of"):
        Sequence.create("indexed", Sequence.create("ndarray", BASE), 0)
    with pytest.raises(ValueError, match="non-empty string"):

        class Nameless(Sequence, format=""):
            pass

    from sima_fast.sequence import LoadContext

    ctx = LoadContext(None, None)
    for d in ({"fmt": "AVI"}, {"fmt": "ndarray"}, {"no": "fmt"}, "HDF5"):
        with pytest.raises(ValueError, match="unknown sequence description"):
            Sequence.fromdict(d, ctx)


def test_todict_fromdict_with_contexts(tmp_path):
    from sima_fast.sequence import LoadContext, SaveContext

    seqs = one_of_each(tmp_path)
    zyx = np.zeros((1, 3, 4), bool)
    zyx[0, 1, 2] = True
    view = Sequence.join(
        seqs["HDF5"].mask([(None, zyx, None)]),
        seqs["TIFF"].apply_displacements(np.zeros((6, 2), int), (1, 3, 4))[:, :, ::-1],
    ).fill_gaps()
    ctx = SaveContext(str(tmp_path))
    d = view.todict(ctx)
    assert json.loads(json.dumps(d)) == d
    assert len(ctx.arrays) == 2 and ctx.new_files == []
    again = Sequence.fromdict(d, LoadContext(str(tmp_path), ctx.arrays))
    assert again.describe() == view.describe()
    np.testing.assert_array_equal(np.asarray(again), np.asarray(view))
    with pytest.raises(ValueError, match="dataset directory"):
        seqs["ndarray"].todict(SaveContext(None))


def test_fill_gaps_by_ranges_equals_the_filled_view():
    from sima_fast.sequence.views import (
        FilledSequence,
        fill_gaps_range,
        first_finite_values,
        last_finite_values,
    )

    rng = np.random.default_rng(5)
    data = rng.normal(size=(20, 1, 3, 4, 2)).astype("float32")
    data[rng.random(data.shape) < 0.5] = np.nan
    data[:, 0, 0, 0, 0] = np.nan
    seq = Sequence.create("ndarray", data)
    want = np.asarray(seq.fill_gaps(), dtype=np.float32)
    found, first = first_finite_values(seq, chunk_frames=3)
    assert not found[0] and found.sum() == found.size - 1
    carried = first.copy()
    parts = []
    for t0 in range(0, 20, 7):  # as a cluster does: range after range
        t1 = min(t0 + 7, 20)
        ends = last_finite_values(seq, t0, t1, chunk_frames=2)
        filled = FilledSequence(seq)
        filled.resume_at(t0, carried)
        parts.append(filled.read_chunk(t0, t1))
        np.testing.assert_array_equal(parts[-1], fill_gaps_range(seq, t0, t1, carried.copy()))
        carried = np.where(ends[0], ends[1], carried)
    np.testing.assert_array_equal(np.concatenate(parts), want)
    assert (
        FilledSequence(seq).carried_values(13).tobytes()
        == np.asarray(fill_gaps_range(seq, 0, 13, first.copy())[-1]).ravel().tobytes()
    )


def test_to_dask_block_lengths():
    import dask.array as da

    seq = Sequence.create("ndarray", BASE)
    arr = seq.to_dask((2, 0, 5))
    assert arr.chunks[0] == (2, 0, 5)
    np.testing.assert_array_equal(arr.compute(scheduler="sync"), BASE)
    with pytest.raises(ValueError, match="summing"):
        seq.to_dask((2, 2))
    with pytest.raises(ValueError, match="positive"):
        seq.to_dask(0)
    lazy = Sequence.create("dask", da.from_array(BASE, chunks=(3, 3, 5, 6, 2)))
    assert lazy.to_dask((4, 3)).chunks[0] == (4, 3)
    assert lazy.to_dask(2).chunks[0] == (2, 2, 2, 1)


def test_the_sequence_layer_imports_no_feature_module():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from sima_fast import Sequence\n"
        "seq = Sequence.create('ndarray', np.ones((4, 1, 2, 2, 1)))\n"
        "assert float(seq.to_dask(2).sum().compute(scheduler='sync')) == 16.0\n"
        "assert float(np.asarray(seq.fill_gaps()[1:].mask([])).sum()) == 12.0\n"
        "bad = [m for m in ('sima_fast.distributed', 'sima_fast.extract', 'sima_fast.spikes',\n"
        "       'sima_fast.imaging', 'sima_fast.storage') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

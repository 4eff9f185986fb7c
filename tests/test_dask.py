"""sima_fast on a Dask cluster: every operation equals its single-machine result.

One ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` on
loopback serves the whole module. The single-machine code is the reference:
projections agree within 1e-12 relative, extraction, export and spike
inference are bit-identical; a worker killed mid-run changes nothing; a data
file a worker cannot see fails with an error naming it.
"""

from __future__ import annotations

import os
import re
import warnings

import h5py
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from sima_fast import ImagingDataset, Sequence, _projections
from sima_fast import distributed as sd
from sima_fast.batch import BatchError, map_datasets
from sima_fast.ROI import ROI, ROIList
from sima_fast.sequence import WrapperSequence

distributed = pytest.importorskip("distributed")

pytestmark = [
    # Dask's own notice when the machine's disk is slow at cluster start.
    pytest.mark.filterwarnings("ignore:Creating scratch directories is taking:UserWarning"),
    # Random ROIs on tiny frames may lose every pixel to overlap removal.
    pytest.mark.filterwarnings("ignore:.*empty ROI.*:UserWarning"),
    # The client's event-loop thread in this process uses the `random` module; when
    # it happens to run while hypothesis draws an example, hypothesis mistakes it for
    # the strategy's own use. The strategies below draw plain integers only.
    pytest.mark.filterwarnings(
        "ignore:Do not use the `random` module inside strategies"
        ":hypothesis.errors.HypothesisDeprecationWarning"
    ),
]

SMALL = settings(max_examples=15, deadline=None)


@pytest.fixture(scope="module")
def client():
    """A two-process cluster on loopback, started once for the module."""
    import dask
    from distributed import Client, LocalCluster

    with (
        dask.config.set(sd.DASK_CONFIG),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            worker_dashboard_address=None,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


def movie(seed: int, shape: tuple, dtype: str, gaps: bool) -> np.ndarray:
    """A random movie; float movies get NaN gaps, a dead pixel and a constant one."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        return rng.integers(1000, 1040, size=shape).astype(dtype)
    data = (1000 + rng.normal(0, 5, size=shape)).astype(dtype)
    if gaps:
        T = shape[0]
        data[rng.random(shape) < 0.1] = np.nan
        t0 = int(rng.integers(0, T))
        data[t0 : t0 + int(rng.integers(1, T + 1)), 0, 0, :] = np.nan  # a long gap
        data[:, -1, -1, -1, 0] = np.nan  # never observed
    data[:, 0, -1, 0, :] = 7.0  # constant
    return data


def movies(max_sequences: int = 2) -> st.SearchStrategy:
    """Descriptions of small multi-sequence movies; :func:`make_movies` builds them."""
    return st.tuples(
        st.integers(0, 2**16),  # seed
        st.lists(st.integers(1, 30), min_size=1, max_size=max_sequences),  # lengths
        st.tuples(st.integers(1, 2), st.integers(3, 8), st.integers(3, 8)),  # Z, Y, X
        st.integers(1, 2),  # channels
        st.sampled_from(["uint16", "float32", "float64"]),
    )


def make_movies(spec: tuple) -> list[np.ndarray]:
    seed, lengths, frame, channels, dtype = spec
    return [
        movie(seed + k, (T, *frame, channels), dtype, gaps=True) for k, T in enumerate(lengths)
    ]


def random_rois(rng: np.random.Generator, frame: tuple, n: int) -> ROIList:
    """``n`` ROIs over random pixels; ROI 0 also takes some of ROI 1's; ROI 2 is weighted."""
    owner = rng.integers(-1, n, size=frame)
    rois = []
    for k in range(n):
        mask = owner == k
        if k == 0:
            mask |= (owner == 1) & (rng.random(frame) < 0.5)
        if k == 2:
            rois.append(ROI(mask=np.where(mask, 0.5 + rng.random(frame), 0.0)))
        else:
            rois.append(ROI(mask=mask))
    return ROIList(rois)


def assert_same(a, b) -> None:
    """Deep equality of records: dicts, sequences, arrays, sparse matrices, scalars."""
    import scipy.sparse

    if isinstance(b, dict):
        assert isinstance(a, dict) and list(a) == list(b)
        for key in b:
            assert_same(a[key], b[key])
    elif scipy.sparse.issparse(b):
        assert a.shape == b.shape and (a != b).nnz == 0
    elif isinstance(b, np.ndarray):
        np.testing.assert_array_equal(a, b)
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def dataset_of(arrays: list[np.ndarray], savedir=None) -> ImagingDataset:
    return ImagingDataset([Sequence.create("ndarray", a) for a in arrays], savedir)


def assert_projections_close(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_array_equal(np.isnan(got[key]), np.isnan(want[key]), err_msg=key)
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=0, err_msg=key)


def assert_records_equal(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key in want:
        if key == "timestamp":
            continue
        if key in ("raw", "demixed_raw"):
            assert len(got[key]) == len(want[key])
            for a, b in zip(got[key], want[key]):
                assert a.dtype == b.dtype == np.float32
                np.testing.assert_array_equal(a, b)  # bit-identical, NaN where NaN
        else:
            assert_same(got[key], want[key])


# ---------------------------------------------------------------------------
# sequences as dask arrays
# ---------------------------------------------------------------------------


def every_kind_of_sequence(tmp_path) -> list[tuple[str, Sequence]]:
    import zarr

    rng = np.random.default_rng(1)
    data = rng.integers(0, 60000, size=(13, 2, 6, 7, 2)).astype(np.uint16)
    h5 = str(tmp_path / "movie.h5")
    with h5py.File(h5, "w") as f:
        f.create_dataset("imaging", data=data.transpose(0, 4, 1, 2, 3), chunks=(4, 2, 2, 6, 7))
    tif = str(tmp_path / "movie.tif")
    with tifffile.TiffWriter(tif) as w:
        for t in range(13):
            for p in range(2):
                for c in range(2):
                    w.write(data[t, p, :, :, c], photometric="minisblack", contiguous=True)
    for t in range(13):
        for c in range(2):
            tifffile.imwrite(tmp_path / f"ch{c}_{t:03d}.tif", data[t, 0, :, :, c])
    raw = str(tmp_path / "movie.raw")
    data.astype(np.float32).tofile(raw)
    store = str(tmp_path / "movie.zarr")
    z = zarr.open(store, mode="w", shape=data.shape, chunks=(5, 2, 6, 7, 2), dtype="uint16")
    z[:] = data
    hdf5 = Sequence.create("HDF5", h5, "tczyx")
    floats = Sequence.create("ndarray", data.astype(np.float64))
    disp = rng.integers(0, 3, size=(13, 2))
    return [
        ("HDF5", hdf5),
        ("TIFF", Sequence.create("TIFF", tif, num_planes=2, num_channels=2)),
        ("TIFFs", Sequence.create("TIFFs", [[str(tmp_path / f"ch{c}_*.tif") for c in range(2)]])),
        ("ndarray", floats),
        ("memmap", Sequence.create("memmap", raw, data.shape, "tzyxc", dtype="float32")),
        ("zarr", Sequence.create("zarr", store, "tzyxc")),
        ("indexed", hdf5[2:11:2, :, 1:5, ::-1, 1]),
        ("joined", Sequence.join(hdf5, floats)),
        ("masked", hdf5.mask([([1, 4], None, [0]), (None, 1, np.eye(6, 7, dtype=bool), None)])),
        ("motion", hdf5.apply_displacements(disp)),
        ("filled", hdf5.apply_displacements(disp).fill_gaps()),
    ]


def test_to_dask_reads_every_kind_of_sequence(client, tmp_path):
    kinds = every_kind_of_sequence(tmp_path)
    for name, seq in kinds:
        want = seq.read_chunk(0, len(seq))
        arr = seq.to_dask(chunks=4)
        assert arr.shape == seq.shape and arr.dtype == seq.dtype, name
        assert arr.chunks[0] == tuple(min(4, len(seq) - t) for t in range(0, len(seq), 4))
        assert arr.chunks[1:] == tuple((s,) for s in seq.shape[1:]), name
        got = client.compute(arr).result()  # read on the workers: the sequence travelled
        np.testing.assert_array_equal(got, want, err_msg=name)
        np.testing.assert_array_equal(arr[3:9, :, 1].compute(scheduler="threads"), want[3:9, :, 1])
    seq = kinds[0][1]
    assert seq.to_dask().chunks[0] == (12, 1)  # 64 MiB chunks, aligned to the file's (4)
    with pytest.raises(ValueError, match="positive"):
        seq.to_dask(chunks=0)


def test_dask_format_wraps_an_array(tmp_path):
    import dask.array as da

    rng = np.random.default_rng(2)
    data = rng.normal(size=(9, 5, 4, 3)).astype(np.float32)  # t, x, y, c
    seq = Sequence.create("dask", da.from_array(data, chunks=(2, 5, 2, 3)), "txyc")
    want = data.transpose(0, 2, 1, 3)[:, None]
    assert seq.shape == (9, 1, 4, 5, 3) and seq.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(seq), want)
    np.testing.assert_array_equal(seq.read_chunk(3, 7), want[3:7])
    np.testing.assert_array_equal(seq[1:4, :, 2].read_chunk(0, 3), want[1:4, :, 2:3])
    assert seq.to_dask().chunks == ((2, 2, 2, 2, 1), (1,), (4,), (5,), (3,))
    assert seq.to_dask(chunks=4).chunks[0] == (4, 4, 1)
    # Saved like an in-memory array, and read back identically.
    ds = ImagingDataset([seq], str(tmp_path / "dask.sima"))
    again = ImagingDataset.load(ds.savedir)
    np.testing.assert_array_equal(np.asarray(again.sequences[0]), want)
    with pytest.raises(TypeError, match=r"dask\.array"):
        Sequence.create("dask", data)
    with pytest.raises(ValueError, match="dim_order"):
        Sequence.create("dask", da.from_array(data), "tyx")
    with pytest.raises(ValueError, match="unknown dimensions"):
        arr = da.from_array(data)
        Sequence.create("dask", arr[arr[:, 0, 0, 0] > 0], "txyc")


# ---------------------------------------------------------------------------
# the generic mappers
# ---------------------------------------------------------------------------


def _frame_sums(seq, t0, t1, scale):
    """A test-local per-range function: ``scale`` times the sum of every frame of the range."""
    frames = np.asarray(seq.read_chunk(t0, t1), dtype=np.float64)
    return scale * np.nansum(frames, axis=(1, 2, 3, 4))


def _concatenate(*parts):
    return np.concatenate(parts)


def _weighted_sum(values, weights, offset):
    return float(np.dot(values, weights)) + offset


def sequences_for_mapping() -> list[Sequence]:
    """In-memory sequences, an empty one and a dask-backed one."""
    import dask.array as da

    a = movie(13, (23, 1, 3, 4, 2), "float32", gaps=True)
    b = movie(14, (9, 2, 3, 4, 2), "uint16", gaps=False).reshape(9, 1, 6, 4, 2)
    c = movie(15, (17, 1, 3, 4, 2), "float64", gaps=True)
    return [
        Sequence.create("ndarray", a),
        Sequence.create("ndarray", np.zeros((0, 1, 3, 4, 2), np.float32)),
        Sequence.create("ndarray", b)[:, :, :3],
        Sequence.create("dask", da.from_array(c, chunks=(4, 1, 3, 4, 2))),
    ]


@pytest.mark.parametrize("chunk", [None, 1, 5, 40])
def test_map_ranges_runs_a_per_range_function_over_every_range(client, chunk):
    sequences = sequences_for_mapping()
    futures = sd.map_ranges(client, sequences, _frame_sums, 2.0, chunk_frames=chunk)
    assert len(futures) == len(sequences)
    for seq, fs in zip(sequences, futures):
        assert len(fs) >= 1  # an empty sequence still has one (empty) range
        parts = client.gather(fs)
        if chunk is not None and len(seq):
            assert [len(p) for p in parts] == [
                min(chunk, len(seq) - t) for t in range(0, len(seq), chunk)
            ]
        # The ranges, in order, cover the sequence: the same function run here over
        # the whole sequence gives the same values.
        np.testing.assert_array_equal(np.concatenate(parts), _frame_sums(seq, 0, len(seq), 2.0))


@pytest.mark.parametrize("chunk", [1, 3])
def test_map_ranges_merges_in_order_with_reduce(client, chunk):
    sequences = sequences_for_mapping()
    # Over 40 ranges with chunk=1: a merge tree of two levels; the order must hold.
    merged = sd.map_ranges(
        client, sequences, _frame_sums, 1.0, chunk_frames=chunk, reduce=_concatenate
    )
    want = np.concatenate([_frame_sums(s, 0, len(s), 1.0) for s in sequences])
    np.testing.assert_array_equal(merged.result(), want)


def test_feature_range_functions_agree_here_and_on_the_cluster(client):
    from sima_fast._projections import maxima_of_range, moments_of_range
    from sima_fast.extract import extract_range, extraction_setup

    data = movie(16, (29, 1, 8, 7, 2), "float32", gaps=True)
    seq = Sequence.create("ndarray", data)
    ranges = [(t, min(t + 6, len(seq))) for t in range(0, len(seq), 6)]
    # moments: the state of each range, bit for bit
    there = client.gather(sd.map_ranges(client, [seq], moments_of_range, chunk_frames=6)[0])
    for (t0, t1), state in zip(ranges, there, strict=True):
        here = moments_of_range(seq, t0, t1)
        for name in ("n", "mean", "m2", "m3", "m4"):
            np.testing.assert_array_equal(getattr(state, name), getattr(here, name))
        assert state.frames == here.frames == t1 - t0
    # channel maxima of each range
    there = client.gather(sd.map_ranges(client, [seq], maxima_of_range, chunk_frames=6)[0])
    for (t0, t1), maxima in zip(ranges, there, strict=True):
        np.testing.assert_array_equal(maxima, maxima_of_range(seq, t0, t1))
    # extraction of each range, with demixing
    rois = random_rois(np.random.default_rng(3), (1, 8, 7), 4)
    mean = _projections.projections([seq])["time_averages"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty ROIs, FastICA convergence
        weights, demix = extraction_setup(rois, (1, 8, 7), mean, 0, True, 1)
    futures = sd.map_ranges(client, [seq], extract_range, weights, 0, demix, chunk_frames=6)
    for (t0, t1), (raw, demixed) in zip(ranges, client.gather(futures[0]), strict=True):
        want_raw, want_demixed = extract_range(seq, t0, t1, weights, 0, demix)
        assert raw.shape == (t1 - t0, weights.n_rois)
        np.testing.assert_array_equal(raw, want_raw)
        np.testing.assert_array_equal(demixed, want_demixed)


def test_map_blocks_keeps_the_order_of_blocks(client):
    rng = np.random.default_rng(17)
    blocks = [(rng.normal(size=n), rng.normal(size=n)) for n in (3, 0, 8, 1, 5)]
    got = sd.map_blocks(client, _weighted_sum, blocks, 0.5)
    assert got == [_weighted_sum(v, w, 0.5) for v, w in blocks]


def test_mapper_arguments_are_checked(client):
    seq = Sequence.create("ndarray", np.zeros((4, 1, 2, 2, 1)))
    with pytest.raises(ValueError, match="chunk_frames"):
        sd.map_ranges(client, [seq], _frame_sums, 1.0, chunk_frames=0)
    with pytest.raises(TypeError, match="Client"):
        sd.map_ranges(object(), [seq], _frame_sums, 1.0)
    with pytest.raises(TypeError, match="Client"):
        sd.map_blocks(object(), _weighted_sum, [])


# ---------------------------------------------------------------------------
# projections
# ---------------------------------------------------------------------------


@SMALL
@given(arrays=movies(), chunk=st.integers(1, 12))
def test_projections_equal_single_machine(client, arrays, chunk):
    arrays = make_movies(arrays)
    sequences = [Sequence.create("ndarray", a) for a in arrays]
    want = _projections.projections(sequences)
    got = sd.projections(sequences, client, chunk_frames=chunk)
    assert_projections_close(got, want)
    state = sd.moment_state(sequences, client, chunk_frames=chunk)
    assert state.frames == sum(len(a) for a in arrays)


def test_projections_planned_automatically_and_through_the_dataset(client, tmp_path):
    arrays = [
        movie(3, (40, 2, 9, 7, 2), "float32", gaps=True),
        movie(4, (9, 2, 9, 7, 2), "float32", True),
    ]
    local = dataset_of(arrays).compute_projections()
    ds = dataset_of(arrays, str(tmp_path / "p.sima"))
    got = ds.compute_projections(client=client)
    assert_projections_close(got, local)
    assert ds.time_averages is got["time_averages"]  # the properties return the cache
    again = ImagingDataset.load(ds.savedir)  # and it was stored in the directory
    assert_projections_close(again.compute_projections(), local)


def test_projections_of_a_dask_backed_sequence(client):
    import dask.array as da

    data = movie(5, (31, 1, 8, 6, 2), "float64", gaps=True)
    seq = Sequence.create("dask", da.from_array(data, chunks=(7, 1, 4, 6, 2)))
    want = _projections.projections([Sequence.create("ndarray", data)])
    assert_projections_close(sd.projections([seq], client), want)
    assert_projections_close(
        sd.projections([seq, seq[4:]], client, chunk_frames=5),
        _projections.projections(
            [Sequence.create("ndarray", data), Sequence.create("ndarray", data[4:])]
        ),
    )


def test_projections_of_nothing(client):
    seq = Sequence.create("ndarray", np.zeros((0, 1, 2, 2, 1)))
    got = sd.projections([seq], client)
    assert np.isnan(got["time_averages"]).all()


# ---------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------


@SMALL
@given(arrays=movies(), chunk=st.integers(1, 12), overlap=st.booleans(), seed=st.integers(0, 99))
def test_extraction_is_bit_identical(client, arrays, chunk, overlap, seed):
    ds = dataset_of(make_movies(arrays))
    frame = ds.frame_shape[:3]
    rois = random_rois(np.random.default_rng(seed), frame, 4)
    ds.compute_projections(client=client)  # both paths divide by the same time average
    demix = 1 if ds.frame_shape[3] == 2 and seed % 2 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty ROIs, FastICA convergence
        want = ds.extract(rois, remove_overlap=overlap, demix_channel=demix, save_summary=False)
        got = sd.extract_rois(ds, rois, 0, overlap, demix, client, chunk_frames=chunk)
    assert_records_equal(got, want)


def test_extract_method_with_client_stores_the_record(client, tmp_path):
    arrays = [movie(6, (35, 1, 12, 10, 2), "float32", gaps=True)]
    rois = random_rois(np.random.default_rng(0), (1, 12, 10), 5)
    ds = dataset_of(arrays, str(tmp_path / "e.sima"))
    ds.add_ROIs(rois, "cells")
    got = ds.extract(label="cluster", signal_channel=1, client=client, save_summary=False)
    want = ds.extract(label="here", signal_channel=1, save_summary=False)
    assert_records_equal(got, want)
    stored = ImagingDataset.load(ds.savedir).signals(1)
    np.testing.assert_array_equal(stored["cluster"]["raw"][0], want["raw"][0])


def test_extraction_of_a_dask_backed_sequence(client):
    import dask.array as da

    data = movie(7, (26, 2, 7, 8, 1), "float32", gaps=True)
    rois = random_rois(np.random.default_rng(1), (2, 7, 8), 3)
    dask_ds = ImagingDataset(
        [Sequence.create("dask", da.from_array(data, chunks=(5, 2, 7, 8, 1)))], None
    )
    ds = dataset_of([data])
    mean = ds.compute_projections()
    dask_ds._projections.update(mean)  # the same time average, so the traces are comparable
    want = ds.extract(rois, save_summary=False)
    got = dask_ds.extract(rois, client=client, save_summary=False)
    assert_records_equal(got, want)


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["HDF5", "TIFF16", "TIFF8"])
def test_export_frames_is_identical(client, tmp_path, monkeypatch, fmt):
    # Small chunks, so that each sequence is exported in several blocks.
    monkeypatch.setattr("sima_fast.sequence.base.DEFAULT_CHUNK_BYTES", 2000)
    rng = np.random.default_rng(8)
    data = (100 + 10 * rng.normal(size=(37, 2, 5, 6, 2))).astype(np.float32)
    data[rng.random(data.shape) < 0.3] = np.nan
    data[:20, 0, 1, 1, 0] = np.nan  # a leading gap spanning several blocks
    data[5:30, 1, 2, 2, 1] = np.nan  # an inner gap spanning several blocks
    data[:, 1, 4, 5, 0] = np.nan  # never observed
    ints = rng.integers(0, 4000, size=(11, 2, 5, 6, 2)).astype(np.uint16)
    ds = ImagingDataset([Sequence.create("ndarray", data), Sequence.create("ndarray", ints)], None)
    for fill in (True, False):
        for scale in (True, False):
            outputs = {}
            for where in ("here", "cluster"):
                if fmt == "HDF5":
                    names = [str(tmp_path / f"{where}{i}.h5") for i in range(2)]
                else:
                    names = [
                        [
                            [str(tmp_path / f"{where}{i}{j}{k}.tif") for k in range(2)]
                            for j in range(2)
                        ]
                        for i in range(2)
                    ]
                ds.export_frames(
                    names,
                    fmt=fmt,
                    fill_gaps=fill,
                    scale_values=scale,
                    client=client if where == "cluster" else None,
                )
                if fmt == "HDF5":
                    outputs[where] = []
                    for name in names:
                        with h5py.File(name, "r") as f:
                            outputs[where].append(f["imaging"][()])
                else:
                    outputs[where] = [tifffile.imread(n) for n in np.ravel(names)]
            for a, b in zip(outputs["here"], outputs["cluster"]):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)
            if fmt == "HDF5" and fill:
                assert np.isnan(outputs["cluster"][0][:, 1, 4, 5, 0]).all()
                assert not np.isnan(outputs["cluster"][0][:, 0, 1, 1, 0]).any()


@SMALL
@given(arrays=movies(max_sequences=1), chunk=st.integers(1, 9))
def test_frame_blocks_fill_gaps_exactly(client, arrays, chunk):
    seq = Sequence.create("ndarray", make_movies(arrays)[0])
    want = np.asarray(seq.fill_gaps().read_chunk(0, len(seq)))
    blocks = list(
        sd.frame_blocks(seq, client, np.asarray, fill_gaps=True, chunk_frames=chunk, window=2)
    )
    assert [t0 for t0, _ in blocks] == list(range(0, len(seq), chunk))
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), want)


class _SmallChunks(WrapperSequence):
    """Reads its base into buffers, two frames per chunk by default (also on the workers)."""

    @property
    def shape(self):
        return self.base.shape

    @property
    def dtype(self):
        return self.base.dtype

    def default_chunk_frames(self):
        return 2

    def _read(self, start, stop, out):
        np.copyto(out, self.base.read_chunk(start, stop))

    def todict(self, ctx):
        return self.base.todict(ctx)


def test_frame_blocks_of_ranges_read_in_several_chunks(client):
    # A range of 7 frames is read in 2-frame chunks through reused buffers, and
    # np.asarray keeps each chunk as it is: the range must not alias the buffers.
    seq = _SmallChunks(Sequence.create("ndarray", movie(12, (23, 1, 3, 4, 2), "float32", True)))
    for fill in (False, True):
        want = np.asarray((seq.fill_gaps() if fill else seq).read_chunk(0, len(seq)))
        blocks = list(sd.frame_blocks(seq, client, np.asarray, fill_gaps=fill, chunk_frames=7))
        assert [t0 for t0, _ in blocks] == [0, 7, 14, 21]
        np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), want)


# ---------------------------------------------------------------------------
# spike inference
# ---------------------------------------------------------------------------


def traces(seed: int, n_rois: int, lengths: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for T in lengths:
        spikes = (rng.random((n_rois, T)) < 0.04).astype(float)
        calcium = np.zeros_like(spikes)
        for t in range(T):
            calcium[:, t] = (0.9 * calcium[:, t - 1] if t else 0.0) + spikes[:, t]
        y = 1.0 + calcium + 0.15 * rng.standard_normal((n_rois, T))
        y[rng.random(y.shape) < 0.05] = np.nan
        out.append(y.astype(np.float32))
    if n_rois > 2:
        for y in out:
            y[1] = np.nan  # an empty ROI
    return out


def assert_spikes_equal(got, want) -> None:
    for a_list, b_list in zip(got[:2], want[:2]):
        assert len(a_list) == len(b_list)
        for a, b in zip(a_list, b_list):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(got[2], want[2]):
        assert list(a) == list(b)
        for key in b:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@SMALL
@given(
    seed=st.integers(0, 999),
    n_rois=st.integers(1, 9),
    lengths=st.lists(st.integers(30, 120), min_size=1, max_size=3),
    per_task=st.integers(1, 4),
    share=st.booleans(),
    mode=st.sampled_from(["correct", "robust", "psd"]),
)
def test_infer_spikes_equals_single_machine(client, seed, n_rois, lengths, per_task, share, mode):
    from sima_fast.spikes import infer_spikes_from_signals

    raw = traces(seed, n_rois, lengths)
    with warnings.catch_warnings(record=True) as here:
        warnings.simplefilter("always")
        want = infer_spikes_from_signals(raw, share_gamma=share, mode=mode)
    with warnings.catch_warnings(record=True) as there:
        warnings.simplefilter("always")
        got = sd.infer_spikes_from_signals(
            raw, client, share_gamma=share, mode=mode, rois_per_task=per_task
        )
    assert_spikes_equal(got, want)
    assert [str(w.message) for w in there] == [str(w.message) for w in here]


def test_infer_spikes_method_with_client(client, tmp_path, capsys):
    from sima_fast.spikes import SpikeInferenceWarning

    ds = dataset_of([movie(9, (10, 1, 4, 4, 1), "float32", gaps=False)], str(tmp_path / "s.sima"))
    raw = traces(3, 20, [200, 150])
    record = {"raw": raw, "rois": [], "timestamp": "2020-01-01-00h00m00s"}
    ds._store_signals(0, "sim", record)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpikeInferenceWarning)  # gamma repairs, empty ROI
        want = ds.infer_spikes(label="sim", verbose=True)
        got = ds.infer_spikes(label="sim", client=client, verbose=True)
    assert_spikes_equal(got, want)
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == out[2:]
    stored = ImagingDataset.load(ds.savedir).signals(0)["sim"]
    np.testing.assert_array_equal(stored["spikes"][1], want[0][1])


# ---------------------------------------------------------------------------
# failures
# ---------------------------------------------------------------------------


class _KillOnce(WrapperSequence):
    """Reads its base, but the first read on a worker kills that worker's process."""

    def __init__(self, base: Sequence, marker: str) -> None:
        super().__init__(base)
        self._marker = marker

    @property
    def shape(self):
        return self.base.shape

    @property
    def dtype(self):
        return self.base.dtype

    def _read(self, start, stop, out):
        try:
            from distributed import get_worker

            get_worker()
            on_worker = True
        except ValueError:
            on_worker = False
        if on_worker:
            try:
                fd = os.open(self._marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(1)  # a crash: no cleanup, no goodbye to the scheduler
        np.copyto(out, self.base.read_chunk(start, stop))

    def todict(self, ctx):
        return self.base.todict(ctx)


def test_a_worker_killed_mid_run_changes_nothing(client, tmp_path):
    data = movie(10, (60, 1, 16, 16, 1), "float32", gaps=True)
    rois = random_rois(np.random.default_rng(2), (1, 16, 16), 6)
    marker = str(tmp_path / "killed")
    ds = ImagingDataset([_KillOnce(Sequence.create("ndarray", data), marker)], None)
    ds.compute_projections()  # here: nothing is killed
    want = ds.extract(rois, save_summary=False)
    before = set(client.scheduler_info()["workers"])
    got = sd.extract_rois(ds, rois, 0, True, None, client, chunk_frames=6)
    assert os.path.exists(marker)  # a worker did die
    assert_records_equal(got, want)
    client.wait_for_workers(2, timeout=60)
    assert set(client.scheduler_info()["workers"]) != before  # the nanny replaced it


@pytest.mark.parametrize("fmt", ["HDF5", "TIFF"])
def test_a_missing_file_names_the_file(client, tmp_path, fmt):
    data = np.arange(5 * 4 * 3, dtype=np.uint16).reshape(5, 4, 3)
    if fmt == "HDF5":
        path = str(tmp_path / "gone.h5")
        with h5py.File(path, "w") as f:
            f["imaging"] = data
        seq = Sequence.create("HDF5", path, "tyx")
    else:
        path = str(tmp_path / "gone.tif")
        with tifffile.TiffWriter(path) as w:
            for page in data:
                w.write(page, photometric="minisblack", contiguous=True)
        seq = Sequence.create("TIFF", path)
    ds = ImagingDataset([seq[1:]], None)
    os.rename(path, path + ".moved")
    with pytest.raises(FileNotFoundError, match=re.escape(repr(path))) as info:
        ds.compute_projections(client=client)
    assert "worker tcp://" in str(info.value)
    assert "missing data file" in str(info.value) and "same paths" in str(info.value)


def test_not_a_client():
    seq = Sequence.create("ndarray", np.zeros((2, 1, 1, 1, 1)))
    with pytest.raises(TypeError, match="Client"):
        sd.projections([seq], object())


# ---------------------------------------------------------------------------
# many datasets
# ---------------------------------------------------------------------------


def _frames_unless_short(dataset):
    if dataset.num_frames < 5:
        raise ValueError(f"too short: {dataset.num_frames} frames")
    return dataset.num_frames


@pytest.mark.parametrize("on_cluster", [True, False])
def test_map_datasets_reports_failures_and_keeps_results(client, tmp_path, on_cluster):
    paths = []
    for k, T in enumerate([6, 3, 8]):
        ds = dataset_of([np.ones((T, 1, 2, 2, 1))], str(tmp_path / f"d{k}.sima"))
        paths.append(ds.savedir)
    missing = str(tmp_path / "missing.sima")
    batch = map_datasets(
        _frames_unless_short, [*paths, missing], client=client if on_cluster else None
    )
    assert batch.results == {paths[0]: 6, paths[2]: 8}
    assert list(batch.errors) == [paths[1], missing]
    short = batch.errors[paths[1]]
    assert short.error == "ValueError: too short: 3 frames"
    assert "_frames_unless_short" in short.traceback
    assert short.where.startswith("worker tcp://" if on_cluster else "the client")
    assert batch.errors[missing].error.startswith("FileNotFoundError")
    assert not batch.ok
    with pytest.raises(BatchError, match=r"2 of 4 dataset\(s\) failed"):
        batch.raise_if_failed()
    with pytest.raises(ValueError, match="more than once"):
        map_datasets(len, [paths[0], paths[0]], client=client)
    assert map_datasets(len, paths, client=client, load=False).results == {
        p: len(p) for p in paths
    }


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------


def test_cli_runs_on_the_scheduler(client, tmp_path, capsys):
    from sima_fast.cli import main
    from sima_fast.spikes import SpikeInferenceWarning

    data = movie(11, (50, 1, 10, 12, 1), "float32", gaps=True)
    rois = random_rois(np.random.default_rng(5), (1, 10, 12), 4)
    ds = dataset_of([data], str(tmp_path / "cli.sima"))
    ds.add_ROIs(rois, "cells")
    address = client.scheduler.address
    assert main(["project", ds.savedir, "--scheduler", address]) == 0
    out = capsys.readouterr().out
    assert "time projections" in out and "channel 0: mean" in out
    assert "[####" in out  # Dask's progress bar
    assert (
        main(
            [
                "extract",
                ds.savedir,
                "--label",
                "sig",
                "--no-summary",
                "--scheduler",
                address,
                "--quiet",
            ]
        )
        == 0
    )
    assert "signals of 4 ROIs x 50 frames (label 'sig')" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpikeInferenceWarning)  # noise movie: gamma repaired
        assert main(["infer-spikes", ds.savedir, "--label", "sig", "--scheduler", address]) == 0
    assert "spikes of 4 ROIs x 50 frames" in capsys.readouterr().out

    local = dataset_of([data])
    local.compute_projections()
    want = local.extract(rois, save_summary=False)
    stored = ImagingDataset.load(ds.savedir)
    assert_projections_close(stored.compute_projections(), local.compute_projections())
    np.testing.assert_array_equal(stored.signals()["sig"]["raw"][0], want["raw"][0])
    # Failures are per dataset; the others still run.
    missing = str(tmp_path / "missing.sima")
    assert main(["project", missing, ds.savedir, "--scheduler", address, "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "missing.sima" in captured.err and "time projections" in captured.out


def test_cli_runs_here_or_on_a_local_cluster(tmp_path, capsys):
    from sima_fast.cli import main

    data = movie(12, (20, 1, 6, 6, 1), "float32", gaps=True)
    ds = dataset_of([data], str(tmp_path / "h.sima"))
    assert main(["project", ds.savedir, "--quiet"]) == 0
    assert "time projections" in capsys.readouterr().out
    again = dataset_of([data], str(tmp_path / "l.sima"))
    assert main(["project", again.savedir, "--scheduler", "local", "--quiet"]) == 0
    assert "time projections" in capsys.readouterr().out
    assert_projections_close(
        ImagingDataset.load(again.savedir).compute_projections(),
        ImagingDataset.load(ds.savedir).compute_projections(),
    )

"""Chunked reading: sima_fast's readers against h5py / tifffile raw reads, same chunks.

Every implementation reads the whole 512×512×T uint16 movie in chunks of
``CHUNK`` frames and consumes each chunk with ``chunk.max()`` (so a zero-copy
memory map is charged for touching its bytes, like a real kernel would).
The file is in the page cache (written just before). Run with::

    python -m pytest benchmarks/test_reading.py --benchmark-only

and compare the medians of ``ours`` and ``raw`` in each group.
"""

from __future__ import annotations

import h5py
import pytest
import tifffile

from conftest import CHUNK, FRAMES
from sima_fast import Sequence


def consume(chunk) -> int:
    return int(chunk.max())


def read_hdf5_raw(path: str) -> int:
    acc = 0
    with h5py.File(path, "r") as f:
        ds = f["imaging"]
        for t0 in range(0, FRAMES, CHUNK):
            acc = max(acc, consume(ds[t0 : t0 + CHUNK]))
    return acc


def read_hdf5_ours(path: str) -> int:
    acc = 0
    seq = Sequence.create("HDF5", path, "tyx")
    for _, chunk in seq.iter_chunks(CHUNK, reuse_buffer=True):
        acc = max(acc, consume(chunk))
    return acc


def read_tiff_raw(path: str) -> int:
    acc = 0
    with tifffile.TiffFile(path) as tif:
        for t0 in range(0, FRAMES, CHUNK):
            block = tif.asarray(key=range(t0, min(t0 + CHUNK, FRAMES)))
            acc = max(acc, consume(block))
    return acc


def read_tiff_ours(path: str) -> int:
    acc = 0
    seq = Sequence.create("TIFF", path)
    for _, chunk in seq.iter_chunks(CHUNK, reuse_buffer=True):
        acc = max(acc, consume(chunk))
    return acc


@pytest.mark.benchmark(group="read-hdf5")
@pytest.mark.parametrize("impl", ["raw", "ours"])
def test_read_hdf5(benchmark, hdf5_movie, impl):
    fn = {"raw": read_hdf5_raw, "ours": read_hdf5_ours}[impl]
    fn(hdf5_movie)  # warm the page cache
    benchmark.extra_info["bytes"] = FRAMES * 512 * 512 * 2
    result = benchmark.pedantic(fn, args=(hdf5_movie,), rounds=5, iterations=1)
    assert result == read_hdf5_raw(hdf5_movie)


@pytest.mark.benchmark(group="read-tiff")
@pytest.mark.parametrize("impl", ["raw", "ours"])
def test_read_tiff(benchmark, tiff_movie, impl):
    fn = {"raw": read_tiff_raw, "ours": read_tiff_ours}[impl]
    fn(tiff_movie)
    benchmark.extra_info["bytes"] = FRAMES * 512 * 512 * 2
    result = benchmark.pedantic(fn, args=(tiff_movie,), rounds=5, iterations=1)
    assert result == read_tiff_raw(tiff_movie)

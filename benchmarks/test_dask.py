"""Scaling on a Dask cluster: projections and extraction with 1 and 2 local workers.

The movie is conftest's 512×512×``SIMA_FAST_BENCH_FRAMES`` (default 3,000)
uint16 HDF5 file, and the same frames in a zarr store (100-frame chunks,
zarr's default compressor), both in the page cache. Each group times one
operation four ways:

``dask_2_workers``
    ``sima_fast.distributed`` on a ``LocalCluster(n_workers=2,
    threads_per_worker=1, processes=True)``.
``dask_1_worker``
    The same on one worker: ``dask_1_worker / dask_2_workers`` is the scaling
    from 1 to 2 workers (target ≥ 1.6).
``here_1_thread``
    The single-machine path with one kernel thread (what one worker runs,
    without Dask): ``dask_1_worker / here_1_thread - 1`` is the task overhead
    (target ≤ 0.1).
``here``
    The single-machine path with the default two kernel threads.

Every implementation is sima_fast, so none is called ``ours``:
``benchmarks/report.py`` names the sides ("Dask, 2 workers", "single
process, 2 threads", ...) in a table of its own. Groups:
``dask-projections-<fmt>`` (mean, std and kurtosis, what
``compute_projections`` runs) and ``dask-extraction-<fmt>`` (500 disc ROIs of
~140 pixels, time average cached). Dask entries also record, from one extra
run watched with ``get_task_stream``, ``extra_info['task_seconds']`` (the
busy time of the kernel tasks, summed over workers) and
``extra_info['wall_seconds']``. Every entry records
``extra_info['others_cpu']``, the share of the CPUs other processes used
while it ran: on a shared machine, re-run entries where it is above a few
per cent. Run with::

    python -m pytest benchmarks/test_dask.py --benchmark-only -p no:cacheprovider \\
        --benchmark-json=dask.json
    python benchmarks/report.py dask.json
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import numpy as np
import pytest

from conftest import FRAMES, OthersCPU, scratch_dir
from sima_fast import ImagingDataset, Sequence
from sima_fast import distributed as sd
from sima_fast._projections import projections
from sima_fast._threads import kernel_threads
from sima_fast.bench.cases import CELL_RADIUS, N_ROIS, SHAPE, movie_block, write_hdf5_movie
from sima_fast.extract import extract_rois
from sima_fast.ROI import ROI, ROIList

pytest.importorskip("distributed")

IMPLS = ["dask_2_workers", "dask_1_worker", "here_1_thread", "here"]
ROUNDS = 5

WORKERS = {"dask_2_workers": 2, "dask_1_worker": 1}


_CLUSTERS: dict[int, Any] = {}


def _local_cluster(n: int) -> tuple[Any, Any]:
    """A LocalCluster of ``n`` one-thread worker processes, and a client of it."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set(sd.DASK_CONFIG):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        )
    return cluster, Client(cluster)


@pytest.fixture(scope="module")
def clients():
    """``clients(n)``: a client of a LocalCluster with ``n`` one-thread workers (kept)."""

    def get(n: int):
        if n not in _CLUSTERS:
            _CLUSTERS[n] = _local_cluster(n)
        return _CLUSTERS[n][1]

    yield get
    for cluster, client in _CLUSTERS.values():
        client.close()
        cluster.close()
    _CLUSTERS.clear()


def _hdf5_path() -> str:
    """conftest's HDF5 movie (the same file), written here when run as a script."""
    return write_hdf5_movie(scratch_dir(), FRAMES)


def _zarr_path() -> str:
    """The same frames in a zarr store, 100-frame chunks, zarr's default compressor."""
    import zarr

    path = os.path.join(scratch_dir(), f"movie_{FRAMES}.zarr")
    if not os.path.exists(path):
        tmp = path + ".part"
        z = zarr.open(tmp, mode="w", shape=(FRAMES, *SHAPE), chunks=(100, *SHAPE), dtype="uint16")
        for t0 in range(0, FRAMES, 500):
            t1 = min(t0 + 500, FRAMES)
            z[t0:t1] = movie_block(t0, t1)
        os.replace(tmp, path)
    return path


@pytest.fixture(scope="session")
def zarr_movie() -> str:
    return _zarr_path()


def _sequence(fmt: str, hdf5_movie: str, zarr_movie: str) -> Sequence:
    if fmt == "hdf5":
        return Sequence.create("HDF5", hdf5_movie, "tyx")
    return Sequence.create("zarr", zarr_movie, "tyx")


def _rois() -> ROIList:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    rois = []
    for _ in range(N_ROIS):
        cy, cx = rng.uniform(CELL_RADIUS + 1, SHAPE[0] - CELL_RADIUS - 1, 2)
        rois.append(ROI(mask=(((yy - cy) ** 2 + (xx - cx) ** 2) <= CELL_RADIUS**2)[None]))
    return ROIList(rois)


def _run(benchmark, fn, impl: str, client: Any) -> Any:
    result = fn()  # warm: compile, open files, fill the page cache
    with OthersCPU(children=True) as busy:
        result = benchmark.pedantic(fn, rounds=ROUNDS, iterations=1)
    busy.record(benchmark)
    benchmark.extra_info["bytes"] = FRAMES * SHAPE[0] * SHAPE[1] * 2
    if client is not None:
        from distributed import get_task_stream

        with get_task_stream(client) as stream:
            start = time.perf_counter()
            fn()
            wall = time.perf_counter() - start
        busy = sum(
            s["stop"] - s["start"]
            for record in stream.data
            for s in record["startstops"]
            if s["action"] == "compute" and not record["key"].startswith("_merge")
        )
        benchmark.extra_info["task_seconds"] = round(busy, 3)
        benchmark.extra_info["wall_seconds"] = round(wall, 3)
    return result


def _client_for(impl: str, clients) -> Any:
    return clients(WORKERS[impl]) if impl in WORKERS else None


@pytest.mark.parametrize("fmt", ["hdf5", "zarr"])
@pytest.mark.parametrize("impl", IMPLS)
def test_projections(benchmark, clients, hdf5_movie, zarr_movie, fmt, impl):
    benchmark.group = f"dask-projections-{fmt}"
    seq = _sequence(fmt, hdf5_movie, zarr_movie)
    client = _client_for(impl, clients)
    if client is not None:

        def fn():
            return sd.projections([seq], client)

    else:
        threads = 1 if impl == "here_1_thread" else None

        def fn():
            with kernel_threads(threads):
                return projections([seq])

    result = _run(benchmark, fn, impl, client)
    reference = projections([seq])
    for key, value in reference.items():
        np.testing.assert_allclose(result[key], value, rtol=1e-12)


@pytest.mark.parametrize("fmt", ["hdf5", "zarr"])
@pytest.mark.parametrize("impl", IMPLS)
def test_extraction(benchmark, clients, hdf5_movie, zarr_movie, fmt, impl):
    benchmark.group = f"dask-extraction-{fmt}"
    seq = _sequence(fmt, hdf5_movie, zarr_movie)
    dataset = ImagingDataset([seq], None)
    dataset.compute_projections()  # the same cached time average for every impl
    rois = _rois()
    client = _client_for(impl, clients)
    if client is not None:

        def fn():
            return sd.extract_rois(dataset, rois, 0, True, None, client)

    else:
        threads = 1 if impl == "here_1_thread" else 2

        def fn():
            return extract_rois(dataset, rois, 0, True, threads, None)

    record = _run(benchmark, fn, impl, client)
    reference = extract_rois(dataset, rois, 0, True, 2, None)
    np.testing.assert_array_equal(record["raw"][0], reference["raw"][0])


# -- the scaling table of docs/distributed.md --------------------------------------------------


def _sample(fn) -> tuple[float, float]:
    """(seconds, share of the CPUs other processes used meanwhile) of one call."""
    with OthersCPU(children=True) as busy:
        fn()
    return busy.elapsed, busy.share or 0.0


def scaling_table(rounds: int = 15, max_others: float = 0.05) -> str:
    """Interleaved timings of every implementation, keeping only quiet samples.

    On a shared machine other processes come and go; every round times each
    (operation, format, implementation) once, in turn, and a sample counts
    only when other processes used less than ``max_others`` of the CPUs
    while it ran. Medians of the quiet samples make the table.
    """
    import statistics

    hdf5, zarr_path = _hdf5_path(), _zarr_path()
    rois = _rois()
    clusters = {n: _local_cluster(n) for n in (1, 2)}
    try:
        cases = {}
        for fmt in ("hdf5", "zarr"):
            seq = _sequence(fmt, hdf5, zarr_path)
            dataset = ImagingDataset([seq], None)
            dataset.compute_projections()
            for impl in IMPLS:
                client = clusters[WORKERS[impl]][1] if impl in WORKERS else None
                threads = 1 if impl == "here_1_thread" else 2
                if client is None:
                    cases[("projections", fmt, impl)] = functools.partial(
                        _here_projections, seq, threads
                    )
                    cases[("extraction", fmt, impl)] = functools.partial(
                        extract_rois, dataset, rois, 0, True, threads, None
                    )
                else:
                    cases[("projections", fmt, impl)] = functools.partial(
                        sd.projections, [seq], client
                    )
                    cases[("extraction", fmt, impl)] = functools.partial(
                        sd.extract_rois, dataset, rois, 0, True, None, client
                    )
        for fn in cases.values():
            fn()  # warm
        quiet: dict = {key: [] for key in cases}
        for _ in range(rounds):
            for key, fn in cases.items():
                seconds, others = _sample(fn)
                if others < max_others:
                    quiet[key].append(seconds)
    finally:
        for cluster, client in clusters.values():
            client.close()
            cluster.close()
    lines = [
        "| operation | format | here, 1 thread | here, 2 threads | Dask, 1 worker "
        "| Dask, 2 workers | Dask, 1 worker / Dask, 2 workers "
        "| overhead: Dask, 1 worker / here, 1 thread − 1 | samples |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for op in ("projections", "extraction"):
        for fmt in ("hdf5", "zarr"):
            med = {
                impl: statistics.median(quiet[(op, fmt, impl)]) if quiet[(op, fmt, impl)] else None
                for impl in IMPLS
            }
            counts = "/".join(str(len(quiet[(op, fmt, impl)])) for impl in IMPLS)
            if None in med.values():
                lines.append(f"| {op} | {fmt} | (no quiet sample: {counts}) |")
                continue
            lines.append(
                f"| {op} | {fmt} | {med['here_1_thread']:.3f} s | {med['here']:.3f} s "
                f"| {med['dask_1_worker']:.3f} s | {med['dask_2_workers']:.3f} s "
                f"| {med['dask_1_worker'] / med['dask_2_workers']:.2f}× "
                f"| {100 * (med['dask_1_worker'] / med['here_1_thread'] - 1):+.0f} % "
                f"| {counts} |"
            )
    return "\n".join(lines)


def _here_projections(seq: Sequence, threads: int) -> Any:
    with kernel_threads(threads):
        return projections([seq])


if __name__ == "__main__":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    print(scaling_table(rounds=int(sys.argv[1]) if len(sys.argv) > 1 else 15))

"""Shared benchmark data: movies written once per session into a scratch directory.

Sizes follow DESIGN.md (512×512 frames, 3,000 frames, uint16). Set
``SIMA_FAST_BENCH_FRAMES`` to run smaller (e.g. 300 for a quick check) and
``SIMA_FAST_BENCH_DIR`` to keep the files between runs.
"""

from __future__ import annotations

import os
import tempfile
import time

import h5py
import numpy as np
import pytest
import tifffile

FRAMES = int(os.environ.get("SIMA_FAST_BENCH_FRAMES", "3000"))
SHAPE = (512, 512)
CHUNK = 100  # frames per chunk for every implementation


def cpu_seconds(children: bool = False) -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process), Linux only.

    With ``children``, the CPU seconds of this process's descendants (e.g.
    Dask workers, through psutil) count as this process's.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # not idle/iowait
    if not children:
        own = os.times()
        return busy, own.user + own.system
    import psutil

    me = psutil.Process()
    own_s = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:  # a worker that just exited
            continue
        own_s += t.user + t.system
    return busy, own_s


class OthersCPU:
    """Context manager: the share of all CPUs that other processes used during the block.

    ``share`` (a fraction of ``os.cpu_count()`` CPUs, or None where /proc/stat
    is unavailable) and ``elapsed`` (seconds) are set on exit. Above a few per
    cent the timings of the block are contaminated by other work on the
    (shared) machine and should be re-run.
    """

    def __init__(self, children: bool = False):
        self.children = children
        self.share: float | None = None
        self.elapsed = 0.0

    def __enter__(self) -> OthersCPU:
        self._before = cpu_seconds(self.children)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self._start
        after = cpu_seconds(self.children)
        if self._before is not None and after is not None:
            others = (after[0] - self._before[0]) - (after[1] - self._before[1])
            self.share = max(others, 0.0) / self.elapsed / (os.cpu_count() or 1)

    def record(self, benchmark) -> None:
        """Store ``share`` as ``benchmark.extra_info['others_cpu']`` (when measured)."""
        if self.share is not None:
            benchmark.extra_info["others_cpu"] = round(self.share, 3)


def _scratch() -> str:
    path = os.environ.get("SIMA_FAST_BENCH_DIR") or os.path.join(
        tempfile.gettempdir(), "sima_fast_bench"
    )
    os.makedirs(path, exist_ok=True)
    return path


def _movie_block(t0: int, t1: int) -> np.ndarray:
    rng = np.random.default_rng(t0)
    return rng.integers(0, 4096, size=(t1 - t0, *SHAPE), dtype=np.uint16)


def read_hdf5_raw(path: str) -> int:
    """Read every ``CHUNK``-frame slice with h5py; return the number of frames read."""
    frames = 0
    with h5py.File(path, "r") as f:
        ds = f["imaging"]
        for t0 in range(0, len(ds), CHUNK):
            frames += len(ds[t0 : t0 + CHUNK])
    return frames


def write_hdf5_movie() -> str:
    """Write (once) the (T, 512, 512) uint16 HDF5 movie, dataset 'imaging'; return its path."""
    path = os.path.join(_scratch(), f"movie_{FRAMES}.h5")
    if not os.path.exists(path):
        tmp = path + ".part"
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset("imaging", shape=(FRAMES, *SHAPE), dtype=np.uint16)
            for t0 in range(0, FRAMES, 500):
                t1 = min(t0 + 500, FRAMES)
                ds[t0:t1] = _movie_block(t0, t1)
        os.replace(tmp, path)
    return path


@pytest.fixture(scope="session")
def hdf5_movie() -> str:
    """A (T, 512, 512) uint16 HDF5 dataset 'imaging', contiguous layout."""
    return write_hdf5_movie()


@pytest.fixture(scope="session")
def tiff_movie() -> str:
    """The same movie as an uncompressed multi-page TIFF."""
    path = os.path.join(_scratch(), f"movie_{FRAMES}.tif")
    if not os.path.exists(path):
        tmp = path + ".part.tif"
        with tifffile.TiffWriter(tmp) as w:
            for t0 in range(0, FRAMES, 500):
                t1 = min(t0 + 500, FRAMES)
                for frame in _movie_block(t0, t1):
                    w.write(frame, photometric="minisblack", contiguous=True)
        os.replace(tmp, path)
    return path

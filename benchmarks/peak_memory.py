"""Peak memory of ``projections`` on a long HDF5 movie, measured in a child process.

Writes a FRAMES×512×512 uint16 HDF5 file (default 20,000 frames, 10.5 GB; the
writer goes block by block so it stays small), then runs, each in a fresh
child process:

1. ``import sima_fast`` only (the baseline resident size; the package imports
   lazily, so this is little more than the interpreter);
2. the imports that the projections need (h5py, numpy, numba, the kernel
   module), without running anything;
3. ``projections([Sequence.create('HDF5', path, 'tyx')])``, or with ``--work
   motion``, ``RigidRegistration2D(max_displacement=20).correct(...)`` into a
   new dataset directory and then the projections of the corrected (warped)
   view, which streams every corrected frame once.

and reports each child's peak RSS (``resource.getrusage(RUSAGE_CHILDREN)``)
and the wall time. Each child is started by a minimal launcher process that
reads ``RUSAGE_CHILDREN`` once its only child has exited: Linux carries the
peak RSS of a process over ``exec`` (so a child forked from this script would
report at least this script's own peak, e.g. the writer's), and
``RUSAGE_CHILDREN`` is a maximum over all children, so neither may be read in
this script directly. The projections are checked
against numpy on one row of pixels. Usage::

    python benchmarks/peak_memory.py [--frames 20000] [--path FILE] [--keep] [--cold]
                                     [--work projections|motion]

An existing file of the right shape at ``--path`` is reused (and kept). A file
written by the script is removed at the end unless ``--keep`` is given.
``--cold`` evicts the file from the page cache (``posix_fadvise``) before the
measurement, so the projections read from disk.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

SHAPE = (512, 512)
BLOCK = 200  # frames per write: 100 MiB
CHECK_ROW = 7
MARGIN = 512 * 2**20  # free space to leave on the disk

CHILD_IMPORT = """
import json, resource
import sima_fast
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

CHILD_IMPORT_ALL = """
import json, resource
import h5py
from sima_fast import Sequence
from sima_fast._projections import projections
import sima_fast.kernels.moments
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

CHILD_PROJECTIONS = """
import json, resource, sys, time
t0 = time.perf_counter()
from sima_fast import Sequence
from sima_fast._projections import projections
t1 = time.perf_counter()
result = projections([Sequence.create("HDF5", sys.argv[1], "tyx")])
t2 = time.perf_counter()
row = int(sys.argv[2])
print(json.dumps({
    "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "import_s": t1 - t0,
    "projections_s": t2 - t1,
    "row": {k: v[0, row, :, 0].tolist() for k, v in result.items()},
}))
"""

CHILD_MOTION = """
import json, os, resource, sys, tempfile, time
t0 = time.perf_counter()
from sima_fast import Sequence
from sima_fast.motion import RigidRegistration2D
t1 = time.perf_counter()
seq = Sequence.create("HDF5", sys.argv[1], "tyx")
with tempfile.TemporaryDirectory(dir=os.path.dirname(sys.argv[1])) as scratch:
    strategy = RigidRegistration2D(max_displacement=20)
    corrected = strategy.correct([seq], os.path.join(scratch, "corrected.sima"))
    t2 = time.perf_counter()
    mean = corrected.time_averages
    t3 = time.perf_counter()
print(json.dumps({
    "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "import_s": t1 - t0,
    "correct_s": t2 - t1,
    "projections_s": t3 - t2,
    "mean_finite": float(mean[0, 20:-20, 20:-20, 0].mean()),
}))
"""


def _matches(path: str, frames: int) -> bool:
    try:
        with h5py.File(path, "r") as f:
            ds = f["imaging"]
            return ds.shape == (frames, *SHAPE) and ds.dtype == np.uint16
    except (OSError, KeyError):
        return False


def write_movie(path: str, frames: int) -> None:
    """Write the movie block by block (the writer holds one block at a time)."""
    tmp = path + ".part"
    try:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset("imaging", shape=(frames, *SHAPE), dtype=np.uint16)
            for t0 in range(0, frames, BLOCK):
                t1 = min(t0 + BLOCK, frames)
                rng = np.random.default_rng(t0)
                ds[t0:t1] = rng.integers(0, 4096, size=(t1 - t0, *SHAPE), dtype=np.uint16)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def evict(path: str) -> None:
    """Drop the file's pages from the page cache (this file only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


LAUNCHER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[1:])
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"returncode": code, "wall_s": wall, "children_maxrss_kb": peak}))
"""


def run_child(code: str, *args: str) -> tuple[dict, float, int]:
    """Run ``code`` in a child; its JSON line, wall time and RUSAGE_CHILDREN peak (KiB)."""
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LAUNCHER, sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    launcher = json.loads(lines[-1]) if proc.returncode == 0 and lines else {}
    if launcher.get("returncode") != 0:
        sys.exit(f"child failed ({launcher or proc.returncode}):\n{proc.stderr}")
    return json.loads(lines[-2]), launcher["wall_s"], launcher["children_maxrss_kb"]


def check(path: str, row: dict) -> float:
    """Largest relative deviation of the child's projections from numpy on one row."""
    import scipy.stats

    with h5py.File(path, "r") as f:
        x = f["imaging"][:, CHECK_ROW, :].astype(np.float64)
    want = {
        "time_averages": x.mean(0),
        "time_std": x.std(0),
        "time_kurtosis": scipy.stats.kurtosis(x, axis=0, fisher=False, bias=True),
    }
    return max(float(np.max(np.abs(np.asarray(row[k]) / want[k] - 1))) for k in want)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=20_000, help="frames (default 20000)")
    parser.add_argument("--path", help="HDF5 file to write or reuse")
    parser.add_argument("--keep", action="store_true", help="keep a file written here")
    parser.add_argument("--cold", action="store_true", help="evict the file from the cache")
    parser.add_argument(
        "--work",
        choices=("projections", "motion"),
        default="projections",
        help="what the measured child does (default: projections)",
    )
    args = parser.parse_args(argv)

    frames = args.frames
    nbytes = frames * SHAPE[0] * SHAPE[1] * 2
    path = args.path
    if path is None:
        scratch = os.environ.get("SIMA_FAST_BENCH_DIR") or os.path.join(
            tempfile.gettempdir(), "sima_fast_bench"
        )
        os.makedirs(scratch, exist_ok=True)
        path = os.path.join(scratch, f"peak_{frames}.h5")
    path = os.path.abspath(path)

    wrote = False
    if _matches(path, frames):
        print(f"reusing {path}", file=sys.stderr)
    else:
        free = shutil.disk_usage(os.path.dirname(path)).free
        if free < nbytes + MARGIN:
            sys.exit(
                f"not enough disk space in {os.path.dirname(path)}: {frames} frames need "
                f"{(nbytes + MARGIN) / 1e9:.1f} GB (file + margin), {free / 1e9:.1f} GB free; "
                "use --frames to shrink the movie or --path elsewhere"
            )
        print(f"writing {path} ({nbytes / 1e9:.2f} GB)", file=sys.stderr)
        start = time.perf_counter()
        write_movie(path, frames)
        wrote = True
        print(f"written in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    writer_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        if args.cold:
            evict(path)
        _, _, base_peak = run_child(CHILD_IMPORT)
        _, _, imports_peak = run_child(CHILD_IMPORT_ALL)
        if args.work == "motion":
            out, wall, peak = run_child(CHILD_MOTION, path)
        else:
            out, wall, peak = run_child(CHILD_PROJECTIONS, path, str(CHECK_ROW))
            error = check(path, out["row"])
    finally:
        if wrote and not args.keep:
            os.remove(path)
    if args.work == "motion":
        # Uniform noise in [0, 4096): the corrected view's mean is about 2047.5 wherever
        # frames land, so a broken view (zeros, NaN everywhere) cannot pass unnoticed.
        ok = abs(out["mean_finite"] - 2047.5) < 20
        print(
            f"peak_memory: {frames} frames 512x512 uint16 ({nbytes / 1e9:.2f} GB, "
            f"{'cold' if args.cold else 'warm'} cache): RigidRegistration2D.correct + "
            f"projections of the corrected view, child peak RSS {peak / 1024:.0f} MiB "
            f"(child importing sima_fast only {base_peak / 1024:.0f} MiB); wall {wall:.1f} s "
            f"(correct {out['correct_s']:.1f} s = {frames / out['correct_s']:.0f} frames/s, "
            f"projections of the corrected view {out['projections_s']:.1f} s); "
            f"check {'ok' if ok else 'MISMATCH (mean ' + format(out['mean_finite'], '.1f') + ')'}"
        )
        return 0 if ok else 1
    status = "ok" if error < 1e-9 else f"MISMATCH (rel. error {error:.1e})"
    print(
        f"peak_memory: {frames} frames 512x512 uint16 ({nbytes / 1e9:.2f} GB, "
        f"{'cold' if args.cold else 'warm'} cache): projections child peak RSS "
        f"{peak / 1024:.0f} MiB (child importing sima_fast only {base_peak / 1024:.0f} MiB; "
        f"importing what projections use {imports_peak / 1024:.0f} MiB, so the work adds "
        f"{(peak - imports_peak) / 1024:.0f} MiB); wall {wall:.1f} s "
        f"(projections {out['projections_s']:.1f} s = {nbytes / out['projections_s'] / 1e9:.2f}"
        f" GB/s, import {out['import_s']:.1f} s); this script's peak RSS "
        f"{writer_kb / 1024:.0f} MiB; check {status}"
    )
    return 0 if error < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())

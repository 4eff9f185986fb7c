"""How close the float32 moments pass is to what this machine allows, in one run.

The float32 target of the projections (≥ 70× numpy ``mean`` + ``std`` +
``scipy.stats.kurtosis``) sits where two limits meet: reading the movie from
memory, and the float64 arithmetic of the pass. This script times, on the
``moments-float32`` case of :mod:`sima_fast.bench.cases` (a T×512×512
float32 movie, default 2000 frames) and in the same run:

``baseline``
    that case's ``numpy_mean_std_scipy_kurtosis`` implementation: numpy
    ``mean`` + ``std`` + ``scipy.stats.kurtosis`` (median of ``--rounds``),
    called on slabs of rows of every frame in turn so that scipy's
    temporaries stay bounded (see :func:`sima_fast.bench.cases.slab_rows`;
    each pixel's result is the same as from one call on the whole movie);
``read``
    a bare streaming read of the movie (:func:`sima_fast.kernels.bandwidth.read_sum`),
    the floor for any pass over it;
``mean+var only``
    the moments loop with the third and fourth powers left out, half the
    arithmetic (:func:`sima_fast.kernels.bandwidth.mean_var_sums`);
``ours``
    that case's ``ours``: ``MomentState.update`` plus the three finalisers.

and prints each time with the ratio ``baseline / time``, so a reader can see at
once whether 70× is within reach of the machine the script runs on (the read
alone gives the upper bound). Usage::

    python benchmarks/moments_bounds.py [--frames 2000] [--rounds 3]

At the default size it holds the 2.1 GB movie and the baseline's slab
temporaries (about 1 GB); the README's Benchmarks section gives the measured
peak and run time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numba
import numpy as np

from sima_fast.bench.cases import PIXELS, get_case
from sima_fast.kernels.bandwidth import mean_var_sums, read_sum
from sima_fast.kernels.moments import default_block


def _times(fn, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=get_case("moments-float32").full["frames"])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the baseline")
    args = parser.parse_args(argv)

    case = get_case("moments-float32")
    with tempfile.TemporaryDirectory() as scratch:
        inputs = case.setup(scratch, frames=args.frames)
    movie = inputs["movie"].reshape(args.frames, PIXELS)
    threads = numba.get_num_threads()
    block = default_block(PIXELS)
    shift = np.full(PIXELS, 2048.0)
    sums = np.zeros((2, PIXELS))
    ours = case.implementation("ours")
    baseline = case.implementation("numpy_mean_std_scipy_kurtosis")

    cases = {
        "read": lambda: read_sum(movie.reshape(-1), threads),
        "mean+var only": lambda: mean_var_sums(movie, shift, sums[0], sums[1], block),
        "ours": lambda: ours.run(inputs),
    }
    for fn in cases.values():  # compile, and fault the output pages in
        fn()
    case.check(inputs, "ours", ours.run(inputs))

    base = statistics.median(_times(lambda: baseline.run(inputs), args.rounds))
    print(f"{args.frames}×512×512 float32 ({movie.nbytes / 1e9:.2f} GB), {threads} threads")
    print(f"{'baseline':>14}: {base:8.2f} s   (numpy mean + std + scipy kurtosis)")
    for name, fn in cases.items():
        times = _times(fn, 9)
        best, median = min(times), statistics.median(times)
        print(
            f"{name:>14}: {median * 1e3:8.1f} ms median, {best * 1e3:.1f} best, "
            f"{movie.nbytes / median / 1e9:5.1f} GB/s, baseline / this: {base / median:6.1f}×"
        )


if __name__ == "__main__":
    main()

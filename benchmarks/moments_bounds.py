"""How close the float32 moments pass is to what this machine allows, in one run.

The float32 target of the projections (≥ 70× numpy ``mean`` + ``std`` +
``scipy.stats.kurtosis``) sits where two limits meet: reading the movie from
memory, and the float64 arithmetic of the pass. This script times, on the same
2000×512×512 float32 movie and in the same run:

``baseline``
    numpy ``mean`` + ``std`` + ``scipy.stats.kurtosis`` (median of ``--rounds``);
``read``
    a bare streaming read of the movie (:func:`sima_fast.kernels.bandwidth.read_sum`),
    the floor for any pass over it;
``mean+var only``
    the moments loop with the third and fourth powers left out (half the
    arithmetic), defined here for this measurement only;
``ours``
    ``MomentState.update`` plus the three finalisers, as in
    ``test_projections.py``.

and prints each time with the ratio ``baseline / time``, so a reader can see at
once whether 70× is within reach of the machine the script runs on (the read
alone gives the upper bound). Usage::

    python benchmarks/moments_bounds.py [--frames 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
import scipy.stats
from numba import njit, prange

from sima_fast.kernels.bandwidth import read_sum
from sima_fast.kernels.moments import MomentState, default_block


@njit(nogil=True, parallel=True, fastmath={"contract", "reassoc"})
def _mean_var_only(x, k, s1, s2, block):  # pragma: no cover - compiled
    """Σ (x - k) and Σ (x - k)² per pixel: the moments pass without its 3rd and 4th powers."""
    T, P = x.shape
    for b in prange((P + block - 1) // block):
        p0 = b * block
        p1 = min(P, p0 + block)
        kk = k[p0:p1]
        a1 = s1[p0:p1]
        a2 = s2[p0:p1]
        for t in range(0, T - T % 8, 8):
            r0 = x[t, p0:p1]
            r1 = x[t + 1, p0:p1]
            r2 = x[t + 2, p0:p1]
            r3 = x[t + 3, p0:p1]
            r4 = x[t + 4, p0:p1]
            r5 = x[t + 5, p0:p1]
            r6 = x[t + 6, p0:p1]
            r7 = x[t + 7, p0:p1]
            for i in range(p1 - p0):  # 1-D rows indexed from 0: the loop vectorises
                ki = kk[i]
                d0 = np.float64(r0[i]) - ki
                d1 = np.float64(r1[i]) - ki
                d2 = np.float64(r2[i]) - ki
                d3 = np.float64(r3[i]) - ki
                d4 = np.float64(r4[i]) - ki
                d5 = np.float64(r5[i]) - ki
                d6 = np.float64(r6[i]) - ki
                d7 = np.float64(r7[i]) - ki
                a1[i] += ((d0 + d1) + (d2 + d3)) + ((d4 + d5) + (d6 + d7))
                a2[i] += ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)) + (
                    (d4 * d4 + d5 * d5) + (d6 * d6 + d7 * d7)
                )


def _times(fn, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the baseline")
    args = parser.parse_args(argv)

    pixels = 512 * 512
    rng = np.random.default_rng(2024)
    movie = np.empty((args.frames, pixels), dtype=np.float32)
    for t0 in range(0, args.frames, 250):
        t1 = min(t0 + 250, args.frames)
        movie[t0:t1] = rng.integers(0, 4096, size=(t1 - t0, pixels), dtype=np.uint16)
    threads = numba.get_num_threads()
    block = default_block(pixels)
    shift = np.full(pixels, 2048.0)
    sums = np.zeros((2, pixels))

    def ours():
        state = MomentState.empty((pixels,))
        state.update(movie)
        return state.mean_value(), state.std(), state.kurtosis()

    cases = {
        "read": lambda: read_sum(movie.reshape(-1), threads),
        "mean+var only": lambda: _mean_var_only(movie, shift, sums[0], sums[1], block),
        "ours": ours,
    }
    for fn in cases.values():  # compile, and fault the output pages in
        fn()

    frames = movie.reshape(args.frames, 512, 512)  # the baseline sees frames, as in the suites
    baseline = statistics.median(
        _times(
            lambda: (
                frames.mean(0),
                frames.std(0),
                scipy.stats.kurtosis(frames, axis=0, fisher=False, bias=True),
            ),
            args.rounds,
        )
    )
    print(f"{args.frames}×512×512 float32 ({movie.nbytes / 1e9:.2f} GB), {threads} threads")
    print(f"{'baseline':>14}: {baseline:8.2f} s   (numpy mean + std + scipy kurtosis)")
    for name, fn in cases.items():
        times = _times(fn, 9)
        best, median = min(times), statistics.median(times)
        print(
            f"{name:>14}: {median * 1e3:8.1f} ms median, {best * 1e3:.1f} best, "
            f"{movie.nbytes / median / 1e9:5.1f} GB/s, baseline / this: {baseline / median:6.1f}×"
        )


if __name__ == "__main__":
    main()

"""A live acquisition loop: frames in shared memory, OnlineExtractor consuming them.

A producer process stands in for the microscope: it writes simulated 512×512
uint16 frames into a ring of slots in ``multiprocessing.shared_memory`` at a
fixed rate (30 Hz by default) and publishes a frame counter and a timestamp
per slot. The consumer (this process) prepares an
:class:`sima_fast.online.OnlineExtractor` for the simulated cells, then
calls ``update`` on each new slot *in place* (a view into the shared
buffer, no copy) and finally prints latency percentiles: the time spent in
``update`` and the time from the producer publishing a frame to its values
being ready.

Run::

    python examples/online_shared_memory.py --seconds 10

Options: ``--rate`` (frames per second), ``--cells`` (ROIs), ``--size``
(frame side in pixels), ``--slots`` (ring length).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import warnings
from multiprocessing import shared_memory

import numpy as np

HEADER = 2  # int64 header: [frames published, stop flag]


def simulate(size: int, cells: int, frames: int):
    """A short simulated movie (cycled by the producer) and its cell masks."""
    from sima_fast.misc import simulate_movie

    return simulate_movie(
        num_frames=frames,
        frame_shape=(size, size),
        num_channels=1,
        cells_per_plane=cells,
        cell_radius=6.7,
        seed=1,
    )


def producer(names: dict, size: int, slots: int, rate: float, cells: int, frames: int) -> None:
    """Write frames into the shared ring at ``rate`` Hz until the stop flag is set."""
    movie = simulate(size, cells, frames).movie[:, 0, :, :, 0]
    ring_shm = shared_memory.SharedMemory(name=names["ring"])
    head_shm = shared_memory.SharedMemory(name=names["header"])
    ring = np.ndarray((slots, size, size), dtype=np.uint16, buffer=ring_shm.buf)
    header = np.ndarray(HEADER, dtype=np.int64, buffer=head_shm.buf)
    stamps = np.ndarray(slots, dtype=np.int64, buffer=head_shm.buf, offset=8 * HEADER)
    period = 1.0 / rate
    start = time.monotonic()
    k = 0
    try:
        while not header[1]:
            ring[k % slots] = movie[k % len(movie)]
            stamps[k % slots] = time.monotonic_ns()
            header[0] = k + 1  # publish after the frame is written
            k += 1
            delay = start + k * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    finally:
        del ring, header, stamps
        ring_shm.close()
        head_shm.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to acquire")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--cells", type=int, default=500, help="number of cells (ROIs)")
    parser.add_argument("--size", type=int, default=512, help="frame side in pixels")
    parser.add_argument("--slots", type=int, default=8, help="frames in the shared ring")
    args = parser.parse_args(argv)

    from sima_fast.online import OnlineExtractor
    from sima_fast.ROI import ROI
    from sima_fast.spikes import SpikeInferenceWarning

    # The noise estimate falls back to the power spectrum for many simulated cells
    # (neuropil makes the lag-1 autocovariance large); that is expected here.
    warnings.simplefilter("ignore", SpikeInferenceWarning)

    size, slots = args.size, args.slots
    movie_frames = 90
    sim = simulate(size, args.cells, movie_frames)  # the consumer knows the cells
    mean = sim.movie[:, 0, :, :, 0].mean(axis=0)  # e.g. from a reference recording

    ring_shm = shared_memory.SharedMemory(create=True, size=slots * size * size * 2)
    head_shm = shared_memory.SharedMemory(create=True, size=8 * (HEADER + slots))
    ring = np.ndarray((slots, size, size), dtype=np.uint16, buffer=ring_shm.buf)
    header = np.ndarray(HEADER, dtype=np.int64, buffer=head_shm.buf)
    stamps = np.ndarray(slots, dtype=np.int64, buffer=head_shm.buf, offset=8 * HEADER)
    header[:] = 0
    names = {"ring": ring_shm.name, "header": head_shm.name}
    process = None
    try:
        t0 = time.perf_counter()
        online = OnlineExtractor(
            [ROI(mask=m) for m in sim.masks],
            (size, size),
            mean_frame=mean,
            dtype="uint16",
            estimate_frames=150,  # γ, σ and the baseline from the first 5 s
            max_frames=int(args.seconds * args.rate) + 100,
        )
        print(f"prepared {online.n_rois} ROIs in {time.perf_counter() - t0:.2f} s")

        process = mp.get_context("spawn").Process(
            target=producer,
            args=(names, size, slots, args.rate, args.cells, movie_frames),
            daemon=True,
        )
        process.start()
        update_us, delay_ms = [], []
        done = dropped = 0
        deadline = None
        while deadline is None or time.monotonic() < deadline:
            available = int(header[0])
            if available == done:
                if not process.is_alive():
                    raise RuntimeError("the producer stopped")
                time.sleep(0.0002)
                continue
            if deadline is None:  # the producer has started: time the acquisition
                deadline = time.monotonic() + args.seconds
            if available - done > slots - 1:  # overwritten before we got to them
                dropped += available - done - (slots - 1)
                done = available - (slots - 1)
            slot = done % slots
            a = time.perf_counter()
            online.update(ring[slot])
            b = time.perf_counter()
            update_us.append((b - a) * 1e6)
            delay_ms.append((time.monotonic_ns() - int(stamps[slot])) / 1e6)
            done += 1
        header[1] = 1
        process.join(timeout=5)
    finally:
        header[1] = 1
        if process is not None and process.is_alive():
            process.terminate()
        del ring, header, stamps
        ring_shm.close()
        ring_shm.unlink()
        head_shm.close()
        head_shm.unlink()

    up = np.percentile(update_us, [50, 99]) if update_us else (np.nan, np.nan)
    dp = np.percentile(delay_ms, [50, 99]) if delay_ms else (np.nan, np.nan)
    print(f"frames processed: {done}  dropped: {dropped}  (rate {args.rate:g} Hz)")
    print(
        f"update():       median {up[0]:7.1f} µs   p99 {up[1]:7.1f} µs   "
        f"max {max(update_us, default=np.nan):7.1f} µs"
    )
    print(
        f"frame to value: median {dp[0]:7.2f} ms   p99 {dp[1]:7.2f} ms   "
        f"max {max(delay_ms, default=np.nan):7.2f} ms"
    )
    spikes = online.spikes_final
    print(
        f"final spike estimates: {online.n_final} frames "
        f"({online.n_frames - online.n_final} provisional), "
        f"{int((spikes > 0).sum())} non-zero; "
        f"median gamma {np.nanmedian(online.parameters['gamma']):.3f}"
    )


if __name__ == "__main__":
    main()

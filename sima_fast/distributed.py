"""Running sima_fast's kernels on a Dask cluster (the ``client=`` argument).

A ``dask.distributed.Client`` passed to :meth:`ImagingDataset.compute_projections
<sima_fast.imaging.ImagingDataset.compute_projections>`, ``extract``,
``export_frames`` or ``infer_spikes`` sends the work here. The movie is cut
into contiguous time ranges (ROI blocks for spike inference); every range
becomes one task that reads its frames through the sequence's own chunked
reader, on the worker, and runs the very kernel the single-machine path runs.
What comes back is small and merges exactly:

* projections: one :class:`~sima_fast.kernels.moments.MomentState` per range,
  merged on the workers in a tree with the pairwise Chan/Pébay formulas
  (equal to one pass within about 1e-15 relative);
* extraction: the ``(frames, n_rois)`` traces of each range, concatenated in
  time order (bit-identical: the kernel works frame by frame);
* export: the converted frames of each range, written by the client in order
  while the next ranges are computed (gap filling carries each pixel's last
  finite value across range boundaries, so the output is bit-identical);
* spike inference: the ROIs' parameters are estimated once on the client,
  then blocks of ROIs are deconvolved on the workers (bit-identical).

Data never travels through the scheduler: a task carries only a packed
description of its sequence (scattered once to every worker, like the
extraction weights) and a frame range, so the workers must see the data files
at the same paths as the client (a shared file system, or the same object
store). A file missing on a worker fails the call with a
:class:`FileNotFoundError` that names the file and the worker.

Each task runs its kernel on one thread: parallelism comes from the cluster's
worker threads, so give workers one thread per core. Sequences created with
``Sequence.create('dask', array)`` are computed block by block by the cluster
itself (their blocks feed the kernels directly).

Nothing here imports dask until it is called; install the ``dask`` extra
(``pip install "sima_fast[dask]"``) to use it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from sima_fast.kernels.moments import MomentState
from sima_fast.sequence.dask import DaskSequence, SequencePayload, add_note, worker_location
from sima_fast.sequence.views import FilledSequence, first_finite_values, last_finite_values

__all__ = [
    "DASK_CONFIG",
    "channel_maxima",
    "extract_rois",
    "frame_blocks",
    "infer_spikes_from_signals",
    "moment_state",
    "projections",
    "report_progress",
    "time_ranges",
]

#: Tasks per worker thread when the ranges are planned automatically. Every
#: task beyond one costs a merge of frame-sized states (about 10-40 ms for a
#: 512×512 frame, as long as a single thread takes to fold ~50 MB of movie), so
#: large datasets are split by MAX_TASK_BYTES instead, which also bounds the
#: work redone when a worker is lost.
TASKS_PER_THREAD = 1

#: Bounds on the bytes of movie one task reads (automatic planning).
MIN_TASK_BYTES = 64 * 2**20
MAX_TASK_BYTES = 4 * 2**30

#: Partial states merged by one task of the reduction tree.
MERGE_FAN_IN = 8

#: ROIs per spike-inference task, at least (automatic planning).
MIN_ROIS_PER_TASK = 16

#: Read the next chunk in a background thread while a task's kernel runs.
PREFETCH = True

#: Packed sequences smaller than this travel inside each task (no scatter round
#: trip); larger ones (in-memory arrays) are scattered once to every worker.
EMBED_BYTES = 2**20

#: The Dask configuration sima_fast's own local clusters use, and recommends for
#: workers that run its kernels: Dask's nannies set ``MALLOC_TRIM_THRESHOLD_``,
#: which turns off glibc's adaptive mmap threshold, so every scratch array of a
#: kernel is mapped afresh and page-faulted (measured 1.5x slower projections).
#: Use it as ``with dask.config.set(DASK_CONFIG): LocalCluster(...)``, or the
#: equivalent YAML for a deployed cluster (docs/distributed.md).
DASK_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


# ---------------------------------------------------------------------------
# planning
# ---------------------------------------------------------------------------


def time_ranges(n_frames: int, n_parts: int, align: int = 1) -> list[tuple[int, int]]:
    """Split ``[0, n_frames)`` into at most ``n_parts`` contiguous ranges.

    Range boundaries fall on multiples of ``align`` (e.g. the file's chunk
    length along time), and ranges differ in length by at most ``align``.

    Examples
    --------
    >>> time_ranges(10, 3)
    [(0, 4), (4, 7), (7, 10)]
    >>> time_ranges(1000, 3, align=100)
    [(0, 400), (400, 700), (700, 1000)]
    >>> time_ranges(0, 4)
    []
    """
    n_frames, align = int(n_frames), max(1, int(align))
    if n_frames <= 0:
        return []
    units = math.ceil(n_frames / align)
    parts = max(1, min(int(n_parts), units))
    bounds = [min(n_frames, align * -(-k * units // parts)) for k in range(parts + 1)]
    return list(itertools.pairwise(bounds))


def _total_threads(client: Any) -> int:
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:
        return 1


def _plan(sequences: list, client: Any, chunk_frames: int | None) -> list[list[tuple[int, int]]]:
    """Time ranges per sequence: ``chunk_frames`` each, or planned for the cluster."""
    if chunk_frames is not None:
        step = int(chunk_frames)
        if step < 1:
            raise ValueError(f"chunk_frames must be a positive integer, got {chunk_frames!r}")
        return [[(t, min(t + step, len(s))) for t in range(0, len(s), step)] for s in sequences]
    sizes = [len(s) * int(np.prod(s.shape[1:])) * s.dtype.itemsize for s in sequences]
    total = max(1, sum(sizes))
    wanted = TASKS_PER_THREAD * _total_threads(client)
    wanted = max(wanted, math.ceil(total / MAX_TASK_BYTES))
    wanted = min(wanted, max(1, total // MIN_TASK_BYTES))
    plans = []
    for seq, size in zip(sequences, sizes):
        parts = max(1, round(wanted * size / total))
        plans.append(time_ranges(len(seq), parts, seq.storage_chunk_frames))
    return plans


def _check_client(client: Any) -> Any:
    if not (hasattr(client, "submit") and hasattr(client, "scatter")):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    return client


_PROGRESS = threading.local()


@contextlib.contextmanager
def report_progress() -> Iterator[None]:
    """Show Dask's progress bar for every cluster computation started inside the block.

    The dataset methods (``extract(client=...)`` and friends) take no
    progress argument; this context switches the bars on for them, as the
    ``sima-fast`` command does.

    Examples
    --------
    >>> with report_progress():
    ...     pass
    """
    before = getattr(_PROGRESS, "on", False)
    _PROGRESS.on = True
    try:
        yield
    finally:
        _PROGRESS.on = before


def _show_progress(futures: list, wanted: bool = True) -> None:
    """Dask's own progress bar (text on a terminal), blocking until ``futures`` finish."""
    if futures and (wanted or getattr(_PROGRESS, "on", False)):
        from distributed import progress

        progress(futures)


def _tree_reduce(client: Any, futures: list, func: Callable) -> Any:
    """Combine futures on the cluster, in order: ``func(*group)`` of up to
    :data:`MERGE_FAN_IN` neighbours at each level of a tree.
    """
    while len(futures) > 1:
        futures = [
            client.submit(func, *futures[i : i + MERGE_FAN_IN])
            if len(futures[i : i + MERGE_FAN_IN]) > 1
            else futures[i]
            for i in range(0, len(futures), MERGE_FAN_IN)
        ]
    return futures[0]


def _range_task(func: Callable) -> Callable:
    """Run ``func(seq, t0, t1, ...)`` on this thread's copy of the sequence, on one thread."""

    @functools.wraps(func)
    def task(payload: SequencePayload, t0: int, t1: int, *args: Any) -> Any:
        from sima_fast._threads import kernel_threads

        seq = payload.load()
        try:
            with kernel_threads(1):
                return func(seq, t0, t1, *args)
        except Exception as exc:
            add_note(
                exc,
                f"while reading frames {t0}:{t1} of {payload.description} on {worker_location()}",
            )
            raise

    return task


def _shared_payload(client: Any, seq: Any) -> Any:
    """The packed sequence, or a future of it scattered to every worker when it is large."""
    payload = SequencePayload(seq)
    if payload.nbytes < EMBED_BYTES:
        return payload
    return client.scatter(payload, broadcast=True, hash=False)


def _submit_ranges(
    client: Any,
    sequences: list,
    plans: list[list[tuple[int, int]]],
    range_func: Callable,
    block_func: Callable,
    *args: Any,
) -> list[list]:
    """One future per range of every sequence (blocks of dask-backed sequences)."""
    import dask

    out = []
    for seq, ranges in zip(sequences, plans):
        if not ranges:
            out.append([])
            continue
        if isinstance(seq, DaskSequence):
            arr = seq.to_dask(tuple(b - a for a, b in ranges))
            blocks = arr.to_delayed().ravel().tolist()
            tasks = [dask.delayed(block_func, pure=True)(block, *args) for block in blocks]
            out.append(client.compute(tasks))
        else:
            payload = _shared_payload(client, seq)
            out.append([client.submit(range_func, payload, a, b, *args) for a, b in ranges])
    return out


# ---------------------------------------------------------------------------
# projections
# ---------------------------------------------------------------------------


def _moments_of_chunks(shape: tuple[int, ...], chunks: Iterator) -> MomentState:
    state = MomentState.empty(shape)
    for _, chunk in chunks:
        state.update(chunk)
    return state


@_range_task
def _moments_range(seq: Any, t0: int, t1: int) -> MomentState:
    chunks = seq.iter_chunks(start=t0, stop=t1, reuse_buffer=True, prefetch=PREFETCH)
    return _moments_of_chunks(seq.shape[1:], chunks)


def _moments_block(block: np.ndarray) -> MomentState:
    from sima_fast._threads import kernel_threads

    with kernel_threads(1):
        return _moments_of_chunks(block.shape[1:], [(0, block)])


def _merge_states(*states: MomentState) -> MomentState:
    return functools.reduce(lambda a, b: a.merge(b), states)


def _moment_state_future(
    sequences: list, client: Any, chunk_frames: int | None, progress: bool
) -> Any:
    """A future of the merged state (``None`` when there are no frames)."""
    client = _check_client(client)
    plans = _plan(sequences, client, chunk_frames)
    parts = [
        f
        for fs in _submit_ranges(client, sequences, plans, _moments_range, _moments_block)
        for f in fs
    ]
    if not parts:
        return None
    _show_progress(parts, progress)
    return _tree_reduce(client, parts, _merge_states)


def moment_state(
    sequences: list,
    client: Any,
    *,
    chunk_frames: int | None = None,
    progress: bool = False,
) -> MomentState:
    """The per-pixel moment state of every frame of ``sequences``, computed on a cluster.

    Parameters
    ----------
    sequences : list of Sequence
        Sequences of equal frame shape.
    client : dask.distributed.Client
        The cluster to run on.
    chunk_frames : int, optional
        Frames per task; by default one task per worker thread (more for
        very large data, see :data:`MAX_TASK_BYTES`).
    progress : bool, optional
        Show Dask's progress bar while the tasks run.

    Returns
    -------
    MomentState
        Equal to :func:`sima_fast._projections.moment_state` within about
        1e-15 relative (partial states merge with the Chan/Pébay formulas).
    """
    future = _moment_state_future(sequences, client, chunk_frames, progress)
    if future is None:
        return MomentState.empty(tuple(sequences[0].shape[1:]))
    return future.result()


def _finish_projections(state: MomentState) -> dict[str, np.ndarray]:
    return {
        "time_averages": state.mean_value(),
        "time_std": state.std(),
        "time_kurtosis": state.kurtosis(),
    }


def projections(
    sequences: list,
    client: Any,
    *,
    chunk_frames: int | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Mean, std and Pearson kurtosis of ``sequences`` computed on a cluster.

    The distributed counterpart of :func:`sima_fast._projections.projections`
    (same keys, within 1e-12 relative of it); see :func:`moment_state`. The
    three arrays are computed from the merged state on a worker, so only
    they travel to the client.
    """
    future = _moment_state_future(sequences, client, chunk_frames, progress)
    if future is None:
        return _finish_projections(MomentState.empty(tuple(sequences[0].shape[1:])))
    return client.submit(_finish_projections, future).result()


# ---------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------


def _extract_chunks(
    chunks: Iterator, n_frames: int, npix: int, weights: Any, channel: int, demix: Any
) -> tuple[np.ndarray, np.ndarray | None]:
    """Traces ``(n_frames, n_rois)`` of consecutive chunks (and their demixed version)."""
    from sima_fast.kernels.extract import extract_runs

    out = np.empty((n_frames, weights.n_rois), dtype=np.float32)
    out_d = None if demix is None else np.empty_like(out)
    pos = 0
    for _, chunk in chunks:
        n = len(chunk)
        targets = [(chunk[..., channel], out)]
        if demix is not None:
            d_channel, factor = demix
            mixed = (
                chunk[..., channel].astype(np.float32) + np.float32(factor) * chunk[..., d_channel]
            )
            targets.append((mixed, out_d))
        for frames, dest in targets:
            flat = np.ascontiguousarray(frames).reshape(n, npix)
            block = dest[pos : pos + n]
            extract_runs(flat, weights.plan, block)
            if weights.pinv_base is not None:
                weights.pinv_extract(flat, block)
        pos += n
    return out, out_d


@_range_task
def _extract_range(
    seq: Any, t0: int, t1: int, weights: Any, channel: int, demix: Any
) -> tuple[np.ndarray, np.ndarray | None]:
    chunks = seq.iter_chunks(start=t0, stop=t1, reuse_buffer=True, prefetch=PREFETCH)
    return _extract_chunks(chunks, t1 - t0, int(np.prod(seq.shape[1:4])), weights, channel, demix)


def _extract_block(
    block: np.ndarray, weights: Any, channel: int, demix: Any
) -> tuple[np.ndarray, np.ndarray | None]:
    from sima_fast._threads import kernel_threads

    with kernel_threads(1):
        npix = int(np.prod(block.shape[1:4]))
        return _extract_chunks([(0, block)], len(block), npix, weights, channel, demix)


def extract_rois(
    dataset: Any,
    rois: Any,
    signal_channel: int,
    remove_overlap: bool,
    demix_channel: int | None,
    client: Any,
    *,
    chunk_frames: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """:func:`sima_fast.extract.extract_rois` with the traces computed on a cluster.

    The weights are built once on the client (from the time average, itself
    computed on the cluster when not cached) and scattered to every worker;
    each task extracts a time range with the same kernel, so the record is
    bit-identical to the single-machine one (its ``timestamp`` aside).
    """
    from sima_fast.extract import ExtractionWeights, demixing_matrix

    client = _check_client(client)
    Z, Y, X = dataset.frame_shape[:3]
    mean = dataset.compute_projections(client=client)["time_averages"]
    weights = ExtractionWeights(rois, (Z, Y, X), mean[..., signal_channel], remove_overlap)
    demix = None
    if demix_channel is not None:
        W = demixing_matrix(mean[..., signal_channel], mean[..., demix_channel])
        demix = (demix_channel, float(W[0, 1]))
    sequences = dataset.sequences
    plans = _plan(sequences, client, chunk_frames)
    shared = client.scatter(weights, broadcast=True, hash=False)
    futures = _submit_ranges(
        client, sequences, plans, _extract_range, _extract_block, shared, signal_channel, demix
    )
    _show_progress([f for fs in futures for f in fs], progress)
    raws, demixed = [], []
    for fs in futures:
        parts = client.gather(fs)
        raw = [p[0] for p in parts] or [np.empty((0, weights.n_rois), np.float32)]
        raws.append(np.ascontiguousarray(np.concatenate(raw).T))
        if demix is not None:
            mixed = [p[1] for p in parts] or [np.empty((0, weights.n_rois), np.float32)]
            demixed.append(np.ascontiguousarray(np.concatenate(mixed).T))
    from sima_fast.extract import signals_record

    return signals_record(
        raws,
        demixed if demix is not None else None,
        demix_channel,
        mean,
        signal_channel,
        weights,
        rois,
        (Z, Y, X),
    )


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------


def _chunk_maxima(chunk: np.ndarray) -> np.ndarray:
    flat = chunk.reshape(-1, chunk.shape[-1])
    if flat.dtype.kind == "f":
        return np.fmax.reduce(np.where(np.isfinite(flat), flat, np.nan), axis=0)
    return flat.max(axis=0).astype(np.float64)


@_range_task
def _maxima_range(seq: Any, t0: int, t1: int) -> np.ndarray | None:
    best = None
    for _, chunk in seq.iter_chunks(start=t0, stop=t1, reuse_buffer=True, prefetch=PREFETCH):
        m = _chunk_maxima(chunk)
        best = m if best is None else np.fmax(best, m)
    return best


def _maxima_block(block: np.ndarray) -> np.ndarray | None:
    return _chunk_maxima(block) if len(block) else None


def channel_maxima(sequences: list, client: Any, *, chunk_frames: int | None = None) -> np.ndarray:
    """Largest finite value of every channel over all frames (NaN when none), on a cluster."""
    client = _check_client(client)
    plans = _plan(sequences, client, chunk_frames)
    futures = _submit_ranges(client, sequences, plans, _maxima_range, _maxima_block)
    best = None
    for fs in futures:
        for m in client.gather(fs):
            if m is not None:
                best = m if best is None else np.fmax(best, m)
    if best is None:
        best = np.full(sequences[0].shape[4], np.nan)
    return np.asarray(best, dtype=np.float64)


def _scan_frames(seq: Any) -> int:
    """Frames per read of the gap scans, which usually stop after the first read."""
    return max(1, seq.default_chunk_frames() // 8)


@_range_task
def _first_finite_range(seq: Any, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's first finite value in the range (``found``, ``value``)."""
    return first_finite_values(seq, t0, t1, _scan_frames(seq))


@_range_task
def _last_finite_range(seq: Any, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's last finite value in the range (``found``, ``value``), read backwards."""
    return last_finite_values(seq, t0, t1, _scan_frames(seq))


def _carry_after(carry: np.ndarray, ends: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The values carried out of a range: its last finite values, else what came in."""
    found, value = ends
    return np.where(found, value, carry)


def _first_values(client: Any, payload: Any, ranges: list[tuple[int, int]]) -> np.ndarray:
    """Each pixel's first finite value in the sequence (NaN if never observed).

    Ranges are scanned from the start, 1, 2, 4, ... at a time, until every
    pixel has been seen: usually the first range is the only one read.
    """
    found = value = None
    k, batch = 0, 1
    while k < len(ranges) and (found is None or not found.all()):
        futures = [
            client.submit(_first_finite_range, payload, a, b) for a, b in ranges[k : k + batch]
        ]
        for f, v in client.gather(futures):
            if found is None:
                found, value = f.copy(), v.copy()
            else:
                take = f & ~found
                value[take] = v[take]
                found |= f
        k += batch
        batch *= 2
    return value


@_range_task
def _export_range(
    seq: Any, t0: int, t1: int, carry: np.ndarray | None, convert: Callable
) -> np.ndarray:
    """The converted frames of a range, gap-filled from ``carry`` when one is given.

    Gap filling reads the range through the gap-filled view that the
    single-machine export reads, resumed at ``t0`` with the carried values.
    """
    step = seq.default_chunk_frames()
    if carry is not None:
        seq = FilledSequence(seq)
        seq.resume_at(t0, carry)
    out = None
    chunks = seq.iter_chunks(step, start=t0, stop=t1, reuse_buffer=True, prefetch=PREFETCH)
    for t, chunk in chunks:
        block = convert(chunk)
        if out is None:
            out = np.empty((t1 - t0, *block.shape[1:]), dtype=block.dtype)
        out[t - t0 : t - t0 + len(block)] = block
    return out


def frame_blocks(
    seq: Any,
    client: Any,
    convert: Callable[[np.ndarray], np.ndarray],
    *,
    fill_gaps: bool = False,
    chunk_frames: int | None = None,
    window: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Converted blocks of frames of one sequence, in order, computed on a cluster.

    Parameters
    ----------
    seq : Sequence
        The sequence (not gap-filled: that is done here).
    client : dask.distributed.Client
        The cluster to run on.
    convert : callable
        Applied on the worker to each chunk ``(n, Z, Y, X, C)``, after gap
        filling (e.g. the conversion to the output's dtype). Must be picklable.
    fill_gaps : bool, optional
        Fill NaN values as :meth:`Sequence.fill_gaps` does (exactly: each range
        starts from the last finite values of the ranges before it, found by a
        backward scan of every range that stops as soon as each pixel is seen).
    chunk_frames : int, optional
        Frames per block (default: :meth:`Sequence.default_chunk_frames`).
    window : int, optional
        Blocks computed ahead of the one being consumed (default: two per
        worker thread), which bounds the memory the blocks take.

    Yields
    ------
    (int, numpy.ndarray)
        The first frame of each block and the converted block.
    """
    client = _check_client(client)
    step = seq.default_chunk_frames() if chunk_frames is None else int(chunk_frames)
    ranges = [(t, min(t + step, len(seq))) for t in range(0, len(seq), step)]
    if not ranges:
        return
    window = 2 * _total_threads(client) if window is None else max(1, int(window))
    payload = _shared_payload(client, seq)
    fill = fill_gaps and seq.dtype.kind == "f"
    carry = None
    if fill:
        carry = client.scatter(_first_values(client, payload, ranges), hash=False)
    pending: list = []
    k = 0
    try:
        while k < len(ranges) or pending:
            while k < len(ranges) and len(pending) < window:
                a, b = ranges[k]
                pending.append((a, client.submit(_export_range, payload, a, b, carry, convert)))
                if fill and k + 1 < len(ranges):
                    ends = client.submit(_last_finite_range, payload, a, b)
                    carry = client.submit(_carry_after, carry, ends)
                k += 1
            a, future = pending.pop(0)
            block = future.result()
            future.release()
            yield a, block
    finally:
        for _, future in pending:
            future.cancel()


# ---------------------------------------------------------------------------
# spike inference
# ---------------------------------------------------------------------------


def _spikes_block(
    traces: list[np.ndarray], gamma: np.ndarray, sigma: np.ndarray, mode: str, solver: str
) -> tuple[list, list, list]:
    from sima_fast.spikes import SpikeInferenceWarning, infer_spikes_from_signals

    with warnings.catch_warnings():
        # The client re-issues these warnings with the ROIs' global indices.
        warnings.simplefilter("ignore", SpikeInferenceWarning)
        return infer_spikes_from_signals(
            traces,
            gamma=gamma,
            share_gamma=False,
            mode=mode,
            sigma=sigma,
            solver=solver,
            n_processes=1,
        )


def infer_spikes_from_signals(
    signals: Any,
    client: Any,
    gamma: Any = None,
    share_gamma: bool = True,
    mode: str = "correct",
    verbose: bool = False,
    *,
    sigma: Any = None,
    solver: str = "auto",
    rois_per_task: int | None = None,
    progress: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray], list[dict[str, np.ndarray]]]:
    """:func:`sima_fast.spikes.infer_spikes_from_signals` with the ROIs solved on a cluster.

    The decay factors and noise levels are estimated on the client, from all
    ROIs at once (a shared ``gamma`` is the median over every ROI), exactly
    as the single-machine function does; then blocks of ROIs, with their
    parameters fixed, are deconvolved on the workers. Every ROI is solved
    independently, so the results are identical to the single-machine ones.

    Parameters
    ----------
    signals, gamma, share_gamma, mode, verbose, sigma, solver
        As in :func:`sima_fast.spikes.infer_spikes_from_signals`.
    client : dask.distributed.Client
        The cluster to run on.
    rois_per_task : int, optional
        ROIs per task (default: about two tasks per worker thread, and at
        least 16 ROIs per task).
    progress : bool, optional
        Show Dask's progress bar while the tasks run.
    """
    from sima_fast import spikes as sp

    client = _check_client(client)
    seqs, empty, gammas, sigmas = sp._prepare(signals, gamma, share_gamma, mode, sigma, solver)
    n_used = int((~empty).sum())
    n = seqs[0].shape[0]
    # Empty ROIs get placeholders (their outputs are NaN whatever they are).
    solve_gamma = np.where(empty, 0.5, gammas)
    solve_sigma = np.where(empty, 1.0, sigmas)

    if rois_per_task is None:
        per = math.ceil(n / (TASKS_PER_THREAD * _total_threads(client))) if n else 1
        rois_per_task = max(MIN_ROIS_PER_TASK, per)
    rois_per_task = int(rois_per_task)
    if rois_per_task < 1:
        raise ValueError(f"rois_per_task must be a positive integer, got {rois_per_task}")
    blocks = [(r, min(r + rois_per_task, n)) for r in range(0, n, rois_per_task)]
    traces = client.scatter(
        [[np.ascontiguousarray(seq[a:b]) for seq in seqs] for a, b in blocks], hash=False
    )
    futures = [
        client.submit(_spikes_block, block, solve_gamma[a:b], solve_sigma[a:b], mode, solver)
        for block, (a, b) in zip(traces, blocks)
    ]
    _show_progress(futures, progress)
    results = client.gather(futures)

    spikes_out, fits_out, params_out = [], [], []
    for k, seq in enumerate(seqs):
        if results:
            spikes = np.concatenate([r[0][k] for r in results])
            fits = np.concatenate([r[1][k] for r in results])
            part = {
                key: np.concatenate([r[2][k][key] for r in results])
                for key in ("baseline", "lambda", "status", "solver")
            }
        else:
            spikes = np.empty((0, seq.shape[1]))
            fits = np.empty((0, seq.shape[1]))
            part = {
                "baseline": np.empty(0),
                "lambda": np.empty(0),
                "status": np.empty(0, dtype=str),
                "solver": np.empty(0, dtype=str),
            }
        infeasible = np.flatnonzero(part["status"] == "infeasible")
        if infeasible.size:
            warnings.warn(
                f"sequence {k}: the noise bound cannot be met for {sp._rois_text(infeasible)} "
                "(sigma too small for the data); the least-residual fit is returned",
                sp.SpikeInferenceWarning,
                stacklevel=2,
            )
        spikes_out.append(spikes)
        fits_out.append(fits)
        params_out.append({"sigma": sigmas.copy(), "gamma": gammas.copy(), **part})
        if verbose:
            n_osqp = int((part["solver"] == "osqp").sum())
            print(
                f"infer_spikes: sequence {k + 1}/{len(seqs)}: {n_used} ROIs x {seq.shape[1]} "
                "frames" + (f" ({n_osqp} solved by OSQP)" if n_osqp else "")
            )
    return spikes_out, fits_out, params_out

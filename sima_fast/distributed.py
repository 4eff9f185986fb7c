"""Running sima_fast's work on a Dask cluster (the ``client=`` argument).

This module plans, submits and merges; it computes nothing itself. Every
feature module owns the function that does its work on one part of the data,
and the single-machine path runs that same function over whole sequences:

* :func:`sima_fast._projections.moments_of_range` (projections) and
  :func:`sima_fast._projections.maxima_of_range` (the export's value scaling)
  fold a time range into a partial result, merged with
  :func:`~sima_fast._projections.merge_moments` and
  :func:`~sima_fast._projections.merge_maxima`;
* :func:`sima_fast.extract.extract_range` extracts the traces of a time range,
  joined in time order by :func:`~sima_fast.extract.sequence_traces`;
* :func:`sima_fast.spikes.deconvolve_block` solves a block of ROIs, joined by
  :func:`~sima_fast.spikes.collect_sequence`;
* :func:`sima_fast.motion.base.displacements_of_range` registers a time range
  against references fixed beforehand, joined in time order (passed in by
  the motion strategies, which call this module);
* the export reads each time range through the gap-filled view of
  :mod:`sima_fast.sequence.views` and applies the writer's conversion.

Two generic mappers run them: :func:`map_ranges` cuts sequences into
contiguous time ranges and runs ``func(seq, t0, t1, *args)`` once per range,
on a worker, through the sequence's own chunked reader (a dask-backed
sequence's blocks are computed by the cluster and handed over as in-memory
sequences); with ``reduce`` the partial results are merged on the workers in
a tree. :func:`map_blocks` runs a function over blocks of arguments (blocks of
ROIs for spike inference). :func:`frame_blocks` streams a sequence's frames
range by range, in order, for writers. The public functions below are a few
lines each on top of them:

* projections: one :class:`~sima_fast.kernels.moments.MomentState` per range,
  merged with the pairwise Chan/Pébay formulas (equal to one pass within
  about 1e-15 relative);
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

Each task runs its kernels on one thread: parallelism comes from the
cluster's worker threads, so give workers one thread per core.

Nothing here imports dask until it is called; install the ``dask`` extra
(``pip install "sima_fast[dask]"``) to use it. See docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from sima_fast._projections import (
    maxima_of_range,
    merge_maxima,
    merge_moments,
    moments_of_range,
    projections_of_state,
)
from sima_fast._threads import kernel_threads
from sima_fast._validate import check_bool, check_int
from sima_fast.kernels.moments import MomentState
from sima_fast.sequence import Sequence
from sima_fast.sequence.dask import DaskSequence, SequencePayload, add_note, worker_location
from sima_fast.sequence.views import FilledSequence, first_finite_values, last_finite_values

__all__ = [
    "DASK_CONFIG",
    "channel_maxima",
    "estimate_motion",
    "extract_rois",
    "frame_blocks",
    "infer_spikes_from_signals",
    "map_blocks",
    "map_ranges",
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

    Parameters
    ----------
    n_frames : int
        Number of frames to split.
    n_parts : int
        Largest number of ranges wanted.
    align : int, optional
        Boundaries fall on multiples of it. Default: 1.

    Returns
    -------
    list of (int, int)
        ``(start, stop)`` of each range, in order; empty when there are no
        frames.

    Examples
    --------
    >>> time_ranges(10, 3)
    [(0, 4), (4, 7), (7, 10)]
    >>> time_ranges(1000, 3, align=100)
    [(0, 400), (400, 700), (700, 1000)]
    >>> time_ranges(0, 4)
    []
    """
    n_frames = check_int("n_frames", n_frames)
    n_parts = check_int("n_parts", n_parts, low=1)
    align = check_int("align", align, low=1)
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
    """Plan the time ranges of every sequence.

    Every sequence gets at least one range (``(0, 0)`` when it has no frames),
    so that every sequence has a partial result.

    Returns
    -------
    list of list of (int, int)
        Per sequence, ranges of ``chunk_frames`` frames each when it is given,
        else ranges planned for the cluster's threads and task sizes.
    """
    if chunk_frames is not None:
        step = check_int("chunk_frames", chunk_frames, low=1)
        plans = [[(t, min(t + step, len(s))) for t in range(0, len(s), step)] for s in sequences]
    else:
        sizes = [len(s) * int(np.prod(s.shape[1:])) * s.dtype.itemsize for s in sequences]
        total = max(1, sum(sizes))
        wanted = TASKS_PER_THREAD * _total_threads(client)
        wanted = max(wanted, math.ceil(total / MAX_TASK_BYTES))
        wanted = min(wanted, max(1, total // MIN_TASK_BYTES))
        plans = []
        for seq, size in zip(sequences, sizes):
            parts = max(1, round(wanted * size / total))
            plans.append(time_ranges(len(seq), parts, seq.storage_chunk_frames))
    return [ranges or [(0, 0)] for ranges in plans]


def _roi_blocks(n: int, client: Any, per_task: int | None) -> list[tuple[int, int]]:
    """Consecutive blocks of ``n`` ROIs (one empty block when there are none)."""
    if per_task is None:
        per = math.ceil(n / (TASKS_PER_THREAD * _total_threads(client))) if n else 1
        per_task = max(MIN_ROIS_PER_TASK, per)
    per_task = check_int("rois_per_task", per_task, low=1)
    return [(r, min(r + per_task, n)) for r in range(0, n, per_task)] or [(0, 0)]


def _check_client(client: Any) -> Any:
    if not (hasattr(client, "submit") and hasattr(client, "scatter")):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    return client


# ---------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------

_PROGRESS = threading.local()


@contextlib.contextmanager
def report_progress() -> Iterator[None]:
    """Show Dask's progress bar for every cluster computation started inside the block.

    The dataset methods (``extract(client=...)`` and friends) take no
    progress argument; this context switches the bars on for them, as the
    ``sima-fast`` command does.

    Yields
    ------
    None

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


# ---------------------------------------------------------------------------
# the mappers
# ---------------------------------------------------------------------------


def _run_range(payload: SequencePayload, t0: int, t1: int, func: Callable, *args: Any) -> Any:
    """Run ``func(seq, t0, t1, *args)`` on one time range, as a cluster task."""
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


def _run_dask_block(block: np.ndarray, func: Callable, *args: Any) -> Any:
    """Run ``func`` on one block of a dask-backed sequence, seen as an in-memory sequence."""
    with kernel_threads(1):
        return func(Sequence.create("ndarray", block), 0, len(block), *args)


def _run_args(block: tuple, func: Callable, *args: Any) -> Any:
    """Run ``func(*block, *args)`` on one block of arguments, as a cluster task."""
    with kernel_threads(1):
        return func(*block, *args)


def _shared_payload(client: Any, seq: Any) -> Any:
    """Pack a sequence for tasks; scatter it to every worker first when it is large."""
    payload = SequencePayload(seq)
    if payload.nbytes < EMBED_BYTES:
        return payload
    return client.scatter(payload, broadcast=True, hash=False)


def _submit_ranges(
    client: Any, seq: Any, ranges: list[tuple[int, int]], func: Callable, args: tuple
) -> list:
    """One future per range of one sequence (per block of a dask-backed sequence)."""
    if isinstance(seq, DaskSequence) and len(seq):
        import dask

        arr = seq.to_dask(tuple(b - a for a, b in ranges))
        blocks = arr.to_delayed().ravel().tolist()
        return client.compute(
            [dask.delayed(_run_dask_block, pure=True)(block, func, *args) for block in blocks]
        )
    payload = _shared_payload(client, seq)
    return [client.submit(_run_range, payload, a, b, func, *args) for a, b in ranges]


def _tree_reduce(client: Any, futures: list, func: Callable) -> Any:
    """Combine futures on the cluster, in order, in a tree.

    Each level applies ``func(*group)`` to groups of up to
    :data:`MERGE_FAN_IN` neighbours.

    Returns
    -------
    distributed.Future
        The future of the combined result.
    """
    while len(futures) > 1:
        futures = [
            client.submit(func, *futures[i : i + MERGE_FAN_IN])
            if len(futures[i : i + MERGE_FAN_IN]) > 1
            else futures[i]
            for i in range(0, len(futures), MERGE_FAN_IN)
        ]
    return futures[0]


def map_ranges(
    client: Any,
    sequences: list,
    func: Callable[..., Any],
    *args: Any,
    chunk_frames: int | None = None,
    reduce: Callable[..., Any] | None = None,
    progress: bool = False,
) -> Any:
    """Run a per-time-range function over every sequence on a cluster.

    The sequences are cut into contiguous time ranges and every range becomes
    one task, ``func(seq, t0, t1, *args)``, run on one kernel thread of a
    worker with the worker's own copy of the sequence (which reads its frames
    there). The ranges of a dask-backed sequence (``Sequence.create('dask',
    ...)``) are blocks of its array, computed by the cluster and passed as an
    in-memory sequence with ``t0 = 0``. Every sequence has at least one
    range (``(0, 0)`` when it has no frames), so ``func`` must accept an
    empty range.

    Parameters
    ----------
    client : dask.distributed.Client
        The cluster to run on.
    sequences : list of Sequence
        The sequences (of equal frame shape when the results are merged).
    func : callable
        ``func(seq, t0, t1, *args)``, the work on frames ``t0`` to ``t1``
        of ``seq``; must be picklable (module-level functions are, and so
        are closures, through cloudpickle).
    *args
        Further arguments of every call (futures of scattered data are
        resolved on the workers).
    chunk_frames : int, optional
        Frames per range; by default one range per worker thread (more for
        very large data, see :data:`MAX_TASK_BYTES`), boundaries aligned to
        the storage's chunks along time.
    reduce : callable, optional
        ``reduce(*parts)`` merges the results of consecutive ranges into
        one; applied on the workers in a tree of fan-in
        :data:`MERGE_FAN_IN`, keeping the order of ranges and sequences.
    progress : bool, optional
        Show Dask's progress bar (blocking until the ranges are done).

    Returns
    -------
    list of list of distributed.Future, or distributed.Future
        Without ``reduce``: per sequence, the futures of its ranges in time
        order. With ``reduce``: one future of the merged result.

    Raises
    ------
    TypeError
        ``client`` is not a Dask client.
    ValueError
        ``chunk_frames`` is not a positive integer.
    """
    if chunk_frames is not None:
        check_int("chunk_frames", chunk_frames, low=1)
    progress = check_bool("progress", progress)
    client = _check_client(client)
    plans = _plan(sequences, client, chunk_frames)
    futures = [
        _submit_ranges(client, seq, ranges, func, args) for seq, ranges in zip(sequences, plans)
    ]
    flat = [f for fs in futures for f in fs]
    _show_progress(flat, progress)
    if reduce is None:
        return futures
    return _tree_reduce(client, flat, reduce)


def map_blocks(
    client: Any,
    func: Callable[..., Any],
    blocks: Iterable[tuple],
    *args: Any,
    progress: bool = False,
) -> list:
    """Run a function over blocks of arguments on a cluster and gather the results.

    Each block (e.g. the traces and parameters of a block of ROIs) is
    scattered to the cluster and becomes one task, ``func(*block, *args)``,
    run on one kernel thread.

    Parameters
    ----------
    client : dask.distributed.Client
        The cluster to run on.
    func : callable
        The per-block work; must be picklable.
    blocks : iterable of tuple
        The arguments proper to each block.
    *args
        Further arguments of every call (small: they travel with each task).
    progress : bool, optional
        Show Dask's progress bar.

    Returns
    -------
    list
        ``func``'s results, in the order of ``blocks``.

    Raises
    ------
    TypeError
        ``client`` is not a Dask client.
    """
    progress = check_bool("progress", progress)
    client = _check_client(client)
    scattered = client.scatter([tuple(b) for b in blocks], hash=False)
    futures = [client.submit(_run_args, block, func, *args) for block in scattered]
    _show_progress(futures, progress)
    return client.gather(futures)


# ---------------------------------------------------------------------------
# projections
# ---------------------------------------------------------------------------


def moment_state(
    sequences: list,
    client: Any,
    *,
    chunk_frames: int | None = None,
    progress: bool = False,
) -> MomentState:
    """Compute the per-pixel moment state of every frame of ``sequences`` on a cluster.

    :func:`~sima_fast._projections.moments_of_range` over the ranges of
    :func:`map_ranges`, merged with
    :func:`~sima_fast._projections.merge_moments`.

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
    merged = map_ranges(
        client,
        sequences,
        moments_of_range,
        chunk_frames=chunk_frames,
        reduce=merge_moments,
        progress=progress,
    )
    return merged.result()


def projections(
    sequences: list,
    client: Any,
    *,
    chunk_frames: int | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Compute the mean, std and Pearson kurtosis of ``sequences`` on a cluster.

    The distributed counterpart of :func:`sima_fast._projections.projections`
    (same keys, within 1e-12 relative of it); see :func:`moment_state`. The
    three arrays are computed from the merged state on a worker, so only
    they travel to the client.

    Parameters
    ----------
    sequences : list of Sequence
        Sequences of equal frame shape.
    client : dask.distributed.Client
        The cluster to run on.
    chunk_frames : int, optional
        Frames per task (see :func:`moment_state`).
    progress : bool, optional
        Show Dask's progress bar while the tasks run.

    Returns
    -------
    dict
        ``time_averages``, ``time_std`` and ``time_kurtosis``, each
        ``(Z, Y, X, C)`` float64.
    """
    merged = map_ranges(
        client,
        sequences,
        moments_of_range,
        chunk_frames=chunk_frames,
        reduce=merge_moments,
        progress=progress,
    )
    return client.submit(projections_of_state, merged).result()


# ---------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------


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
    neuropil: Any = None,
) -> dict[str, Any]:
    """Extract the signals of ``rois`` with the traces computed on a cluster.

    The distributed counterpart of :func:`sima_fast.extract.extract_rois`:
    :func:`~sima_fast.extract.extraction_setup` builds the weights once on
    the client (from the time average, itself computed on the cluster when
    not cached), they are scattered to every worker, and
    :func:`~sima_fast.extract.extract_range` runs over the ranges of
    :func:`map_ranges`. The record is bit-identical to the single-machine
    one (its ``timestamp`` aside).

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset.
    rois : sequence of ROI
        The ROIs, in output-row order.
    signal_channel : int
        Index of the channel to extract.
    remove_overlap : bool
        Remove pixels shared by several ROIs from all of them.
    demix_channel : int or None
        Index of a channel whose bleed-through is removed first.
    client : dask.distributed.Client
        The cluster to run on.
    chunk_frames : int, optional
        Frames per task (see :func:`map_ranges`).
    progress : bool, optional
        Show Dask's progress bar while the tasks run.
    neuropil : None, bool, dict or NeuropilOptions, optional
        Neuropil correction, as :meth:`ImagingDataset.extract`'s. Default: None.

    Returns
    -------
    dict
        The extraction record (docs/contract.md#the-extraction-record).
    """
    from sima_fast.extract import extract_range, extraction_setup, sequence_traces, signals_record

    remove_overlap = check_bool("remove_overlap", remove_overlap)
    progress = check_bool("progress", progress)
    if chunk_frames is not None:
        check_int("chunk_frames", chunk_frames, low=1)
    client = _check_client(client)
    im_shape = tuple(dataset.frame_shape[:3])
    mean = dataset.compute_projections(client=client)["time_averages"]
    weights, demix = extraction_setup(
        rois, im_shape, mean, signal_channel, remove_overlap, demix_channel, neuropil
    )
    shared = client.scatter(weights, broadcast=True, hash=False)
    futures = map_ranges(
        client,
        dataset.sequences,
        extract_range,
        shared,
        signal_channel,
        demix,
        1,
        chunk_frames=chunk_frames,
        progress=progress,
    )
    traces = [sequence_traces(client.gather(fs)) for fs in futures]
    return signals_record(traces, demix_channel, mean, signal_channel, weights, rois, im_shape)


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------


def channel_maxima(sequences: list, client: Any, *, chunk_frames: int | None = None) -> np.ndarray:
    """Find the largest finite value of every channel over all frames on a cluster.

    :func:`~sima_fast._projections.maxima_of_range` over the ranges of
    :func:`map_ranges`, merged with
    :func:`~sima_fast._projections.merge_maxima`.

    Parameters
    ----------
    sequences : list of Sequence
        The sequences to scan.
    client : dask.distributed.Client
        The cluster to run on.
    chunk_frames : int, optional
        Frames per task (see :func:`map_ranges`).

    Returns
    -------
    numpy.ndarray
        ``(C,)`` float64, NaN for a channel without any finite value.
    """
    merged = map_ranges(
        client, sequences, maxima_of_range, chunk_frames=chunk_frames, reduce=merge_maxima
    )
    return merged.result()


def _converted_range(
    seq: Any, t0: int, t1: int, carried: np.ndarray | None, convert: Callable
) -> np.ndarray:
    """Read and convert frames ``t0`` to ``t1``.

    They are read through the gap-filled view when ``carried`` (the values
    carried into ``t0``) is given.

    Returns
    -------
    numpy.ndarray
        ``convert`` of the frames.
    """
    if carried is not None:
        seq = FilledSequence(seq)
        seq.resume_at(t0, carried)
    return convert(seq.read_chunk(t0, t1))


def _scan_frames(seq: Any) -> int:
    """Frames per read of the gap scans, which usually stop after the first read."""
    return max(1, seq.default_chunk_frames() // 8)


def _carry_after(carry: np.ndarray, ends: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Give the values carried out of a range: its last finite values, else what came in."""
    found, value = ends
    return np.where(found, value, carry)


def _first_values(
    client: Any, payload: Any, ranges: list[tuple[int, int]], scan: int
) -> np.ndarray:
    """Find each pixel's first finite value in the sequence.

    Ranges are scanned from the start, 1, 2, 4, ... at a time, until every
    pixel has been seen: usually the first range is the only one read.

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X, C)`` first finite values, NaN where never observed.
    """
    found = value = None
    k, batch = 0, 1
    while k < len(ranges) and (found is None or not found.all()):
        futures = [
            client.submit(_run_range, payload, a, b, first_finite_values, scan)
            for a, b in ranges[k : k + batch]
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


def frame_blocks(
    seq: Any,
    client: Any,
    convert: Callable[[np.ndarray], np.ndarray],
    *,
    fill_gaps: bool = False,
    chunk_frames: int | None = None,
    window: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream the converted frames of one sequence, block by block in order, from a cluster.

    The ordered counterpart of :func:`map_ranges` for writers: each block of
    frames is read (and gap-filled) on a worker and passed through
    ``convert`` there, while the client consumes the blocks in time order
    and at most ``window`` of them are computed ahead.

    Parameters
    ----------
    seq : Sequence
        The sequence (not gap-filled: that is done here).
    client : dask.distributed.Client
        The cluster to run on.
    convert : callable
        Applied on the worker to each block ``(n, Z, Y, X, C)``, after gap
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
    fill_gaps = check_bool("fill_gaps", fill_gaps)
    if chunk_frames is not None:
        check_int("chunk_frames", chunk_frames, low=1)
    if window is not None:
        check_int("window", window, low=1)
    client = _check_client(client)
    step = seq.default_chunk_frames() if chunk_frames is None else int(chunk_frames)
    ranges = [(t, min(t + step, len(seq))) for t in range(0, len(seq), step)]
    if not ranges:
        return
    window = 2 * _total_threads(client) if window is None else max(1, int(window))
    payload = _shared_payload(client, seq)
    fill = fill_gaps and seq.dtype.kind == "f"
    scan = _scan_frames(seq)
    carry = None
    if fill:
        carry = client.scatter(_first_values(client, payload, ranges, scan), hash=False)
    pending: list = []
    k = 0
    try:
        while k < len(ranges) or pending:
            while k < len(ranges) and len(pending) < window:
                a, b = ranges[k]
                block = client.submit(_run_range, payload, a, b, _converted_range, carry, convert)
                pending.append((a, block))
                if fill and k + 1 < len(ranges):
                    ends = client.submit(_run_range, payload, a, b, last_finite_values, scan)
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
# motion estimation
# ---------------------------------------------------------------------------


def estimate_motion(
    sequences: list,
    client: Any,
    range_function: Callable[..., np.ndarray],
    job: Any,
    *,
    chunk_frames: int | None = None,
    progress: bool = False,
) -> list[np.ndarray]:
    """Register every time range of ``sequences`` against fixed references on a cluster.

    The distributed step of
    :meth:`sima_fast.motion.MotionEstimationStrategy.estimate` with
    ``client=``: ``job`` (the strategy and its setup, e.g. references fixed
    on the client) is scattered once to every worker, and ``range_function``
    (:func:`sima_fast.motion.base.displacements_of_range`, passed in so that
    this module does not import the motion package that calls it) runs over
    the ranges of :func:`map_ranges`. Every frame is registered
    independently of the others against the same references, so the joined
    displacements are identical to the single-machine ones.

    Parameters
    ----------
    sequences : list of Sequence
        The sequences (restricted to the channels to estimate from).
    client : dask.distributed.Client
        The cluster to run on.
    range_function : callable
        ``range_function(seq, t0, t1, job)``: the displacements of frames
        ``t0`` to ``t1``, first axis the frames.
    job : object
        Its last argument (picklable).
    chunk_frames : int, optional
        Frames per task (see :func:`map_ranges`).
    progress : bool, optional
        Show Dask's progress bar while the tasks run.

    Returns
    -------
    list of numpy.ndarray
        Per sequence, the displacements of its frames in time order.

    Raises
    ------
    TypeError
        ``client`` is not a Dask client.
    """
    progress = check_bool("progress", progress)
    if chunk_frames is not None:
        check_int("chunk_frames", chunk_frames, low=1)
    client = _check_client(client)
    # a list of one item, so that a tuple travels as one object, not one future each
    shared = client.scatter([job], broadcast=True, hash=False)[0]
    futures = map_ranges(
        client,
        sequences,
        range_function,
        shared,
        chunk_frames=chunk_frames,
        progress=progress,
    )
    return [np.concatenate(client.gather(fs)) for fs in futures]


# ---------------------------------------------------------------------------
# spike inference
# ---------------------------------------------------------------------------


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
    """Infer spikes for every ROI of an extraction, with the ROIs solved on a cluster.

    The distributed counterpart of
    :func:`sima_fast.spikes.infer_spikes_from_signals`:
    :func:`~sima_fast.spikes.prepare_inference` estimates the decay factors
    and noise levels on the client, from all ROIs at once (a shared ``gamma``
    is the median over every ROI), exactly as the single-machine function
    does; then :func:`~sima_fast.spikes.deconvolve_block` solves blocks of
    ROIs of each sequence on the workers (:func:`map_blocks`), and
    :func:`~sima_fast.spikes.collect_sequence` joins them. Every ROI is
    solved independently, so the results are identical to the
    single-machine ones.

    Parameters
    ----------
    signals, gamma, share_gamma, mode, verbose, sigma, solver
        As in :func:`sima_fast.spikes.infer_spikes_from_signals`.
    client : dask.distributed.Client
        The cluster to run on.
    rois_per_task : int, optional
        ROIs per task (default: about one block per worker thread, and at
        least 16 ROIs per task).
    progress : bool, optional
        Show Dask's progress bar while the tasks run.

    Returns
    -------
    spikes, fits, parameters : list
        As :func:`sima_fast.spikes.infer_spikes_from_signals` returns them.
    """
    from sima_fast.spikes import collect_sequence, deconvolve_block, prepare_inference

    share_gamma = check_bool("share_gamma", share_gamma)
    verbose = check_bool("verbose", verbose)
    progress = check_bool("progress", progress)
    if rois_per_task is not None:
        check_int("rois_per_task", rois_per_task, low=1)
    client = _check_client(client)
    prepared = prepare_inference(signals, gamma, share_gamma, mode, sigma, solver)
    blocks = _roi_blocks(len(prepared.empty), client, rois_per_task)
    work = [
        (
            np.ascontiguousarray(seq[a:b]),
            prepared.gamma[a:b],
            prepared.sigma[a:b],
            prepared.empty[a:b],
        )
        for seq in prepared.signals
        for a, b in blocks
    ]
    results = map_blocks(client, deconvolve_block, work, solver, 1, progress=progress)
    spikes_out, fits_out, params_out = [], [], []
    for k in range(len(prepared.signals)):
        parts = results[k * len(blocks) : (k + 1) * len(blocks)]
        spikes, fits, params = collect_sequence(prepared, k, parts, verbose)
        spikes_out.append(spikes)
        fits_out.append(fits)
        params_out.append(params)
    return spikes_out, fits_out, params_out

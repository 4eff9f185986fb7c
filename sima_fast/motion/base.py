"""The base class of motion correction strategies and the helpers they share.

A strategy estimates, for every frame of every sequence of a dataset, where
the imaged tissue moved, and corrects the dataset by moving it back:

- :meth:`MotionEstimationStrategy.estimate` returns one displacement array
  per sequence;
- :meth:`MotionEstimationStrategy.correct` builds motion-corrected views of
  the sequences (:meth:`MotionEstimationStrategy.corrected_sequence`), trims
  the edges that too few frames observe and saves them as a new dataset.

Displacements follow :meth:`sima_fast.Sequence.apply_displacements`: source
pixel ``p`` of a frame lands at ``p + d`` of the corrected frame. Their
shape tells their kind: ``(T, Z, 2)`` rigid per plane ``(dy, dx)``,
``(T, Z, Y, 2)`` per row, ``(T, 3)`` or ``(T, Z, 3)`` per volume or plane
``(dz, dy, dx)``, ``(T, Z, Gy, Gx, 2)`` per block of a non-rigid grid.
:meth:`~MotionEstimationStrategy.estimate` shifts them so that the smallest
value of each component, over all frames of all sequences, is 0 (as SIMA
does): the corrected frames then hold every observed pixel at a non-negative
position. See docs/motion.md.

Frames reach a strategy through :func:`iter_estimation_chunks`: blocks of
frames in time order, channels summed, so memory is bounded by the block
size whatever the length of the movie.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from sima_fast._validate import ArgumentTypeError, check_bool, check_real, resolve_channel

__all__ = [
    "ESTIMATION_CHUNK_BYTES",
    "MotionEstimationStrategy",
    "as_sequences",
    "check_max_displacement",
    "check_reference",
    "check_reference_shape",
    "displacements_of_range",
    "frame_coverage",
    "iter_estimation_chunks",
    "normalise_displacements",
    "observation_counts",
    "trim_slices",
]

#: Target size of one block of frames read for estimation (float64 after the
#: channels are summed): the memory a strategy's reading costs.
ESTIMATION_CHUNK_BYTES = 32 * 2**20

#: Called with the number of frames of every block :func:`iter_estimation_chunks`
#: yields, while :meth:`MotionEstimationStrategy.estimate` shows a progress bar.
_ON_FRAMES: contextvars.ContextVar[Callable[[int], Any] | None] = contextvars.ContextVar(
    "sima_fast_motion_on_frames", default=None
)


# ---------------------------------------------------------------------------
# argument helpers shared by the strategies
# ---------------------------------------------------------------------------


def as_sequences(dataset: Any, name: str = "dataset") -> list:
    """Return the sequences of a dataset, or of a list of sequences, checked.

    Parameters
    ----------
    dataset : ImagingDataset or list of Sequence
        What a strategy was given.
    name : str, optional
        The argument's name for error messages (default ``'dataset'``).

    Returns
    -------
    list of Sequence
        At least one, all of one frame shape ``(Z, Y, X, C)``.

    Raises
    ------
    ArgumentTypeError
        If ``dataset`` is neither an ImagingDataset nor a list of Sequence.
    ValueError
        If it holds no sequence, or sequences of different frame shapes.
    """
    from sima_fast.imaging import ImagingDataset
    from sima_fast.sequence import Sequence

    if isinstance(dataset, ImagingDataset):
        sequences = list(dataset.sequences)
    elif isinstance(dataset, Sequence):
        sequences = [dataset]
    elif isinstance(dataset, (list, tuple)):
        sequences = list(dataset)
        for i, s in enumerate(sequences):
            if not isinstance(s, Sequence):
                raise ArgumentTypeError(
                    f"{name}[{i}] is a {type(s).__name__}; expected a sima_fast Sequence"
                )
    else:
        raise ArgumentTypeError(
            f"{name} must be an ImagingDataset or a list of Sequence, got {type(dataset).__name__}"
        )
    if not sequences:
        raise ValueError(f"{name} holds no sequence")
    shape = sequences[0].shape[1:]
    for i, s in enumerate(sequences[1:], start=1):
        if s.shape[1:] != shape:
            raise ValueError(
                f"{name}: sequence {i} has frame shape {s.shape[1:]} but sequence 0 has "
                f"{shape}; all sequences must share (Z, Y, X, C)"
            )
    return sequences


def check_max_displacement(value: Any, ndim: int = 2) -> np.ndarray | None:
    """Validate a ``max_displacement`` argument (before the frame shape is known).

    Parameters
    ----------
    value : None, number or sequence of numbers
        The largest allowed displacement magnitude: one number for every
        axis, or one per axis (``[y, x]`` or ``[z, y, x]``). None: no limit.
    ndim : int, optional
        Number of axes the displacements have (2 or 3).

    Returns
    -------
    numpy.ndarray of float64, shape (ndim,), or None

    Raises
    ------
    ArgumentTypeError
        A value that is not a number or a sequence of ``ndim`` numbers.
    ValueError
        A negative or non-finite value.

    Examples
    --------
    >>> check_max_displacement(5).tolist()
    [5.0, 5.0]
    >>> check_max_displacement([2, 3, 4], ndim=3).tolist()
    [2.0, 3.0, 4.0]
    """
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ArgumentTypeError(
            f"max_displacement must be None, a number or {ndim} numbers, got {value!r}"
        )
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            f"max_displacement must be None, a number or {ndim} numbers, got {value!r}"
        ) from None
    if arr.ndim == 0:
        arr = np.full(ndim, float(arr))
    if arr.shape != (ndim,):
        raise ArgumentTypeError(
            f"max_displacement must be None, a number or {ndim} numbers, got {value!r}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(
            f"max_displacement must be non-negative and finite, got {np.asarray(value).tolist()}"
        )
    return arr


def check_max_displacement_fits(limits: np.ndarray | None, extent: tuple[int, ...]) -> None:
    """Refuse a ``max_displacement`` larger than the frame it applies to.

    Parameters
    ----------
    limits : numpy.ndarray or None
        From :func:`check_max_displacement`.
    extent : tuple of int
        The frame's size along the same axes (``(Y, X)`` or ``(Z, Y, X)``).

    Raises
    ------
    ValueError
        If a limit is at least the frame's size along its axis (no overlap
        would be left between a frame and its reference).
    """
    if limits is None:
        return
    for axis, (lim, size) in enumerate(zip(limits, extent)):
        if lim >= size and size > 1:
            names = "yx" if len(extent) == 2 else "zyx"
            raise ValueError(
                f"max_displacement {limits.tolist()} is larger than the frame: along "
                f"{names[axis]} it must be below {size} px"
            )


def check_reference(reference: Any) -> np.ndarray | None:
    """Validate a user reference image (its shape is checked against the data later).

    Parameters
    ----------
    reference : array_like or None
        A ``(Y, X)`` image (single plane) or ``(Z, Y, X)`` volume; any real
        dtype; NaN marks unknown pixels.

    Returns
    -------
    numpy.ndarray of float64, shape (Z, Y, X), or None

    Raises
    ------
    ArgumentTypeError
        If it is not a real numeric array of 2 or 3 dimensions.
    ValueError
        If it has no finite pixel.
    """
    if reference is None:
        return None
    try:
        ref = np.asarray(reference)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            "reference must be a (Y, X) or (Z, Y, X) numeric array, got "
            f"{type(reference).__name__}"
        ) from None
    if ref.dtype.kind not in "iuf" or ref.ndim not in (2, 3) or ref.size == 0:
        raise ArgumentTypeError(
            f"reference must be a non-empty (Y, X) or (Z, Y, X) numeric array, got "
            f"{ref.dtype} {ref.shape}"
        )
    ref = ref.astype(np.float64)
    if ref.ndim == 2:
        ref = ref[None]
    if not np.isfinite(ref).any():
        raise ValueError("reference has no finite pixel")
    return ref


def check_reference_shape(reference: np.ndarray | None, frame_shape: tuple[int, ...]) -> None:
    """Refuse a reference whose shape differs from the frames' ``(Z, Y, X)``.

    Parameters
    ----------
    reference : numpy.ndarray or None
        From :func:`check_reference`, shape ``(Z, Y, X)``.
    frame_shape : tuple of int
        The dataset's frame shape ``(Z, Y, X, C)`` or ``(Z, Y, X)``.

    Raises
    ------
    ValueError
        If the shapes differ; names both.
    """
    if reference is None:
        return
    expected = tuple(int(s) for s in frame_shape[:3])
    if reference.shape != expected:
        raise ValueError(
            f"reference has shape {reference.shape} but the frames are (Z, Y, X) = {expected}"
            " (a (Y, X) image is accepted for single-plane data)"
        )


def iter_estimation_chunks(
    sequence: Any,
    chunk_frames: int | None = None,
    start: int = 0,
    stop: int | None = None,
    raw: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield blocks of frames for estimation, channels summed, in time order.

    While :meth:`MotionEstimationStrategy.estimate` shows a progress bar,
    every block yielded advances it.

    Parameters
    ----------
    sequence : Sequence
        The sequence (already restricted to the channels to use).
    chunk_frames : int, optional
        Frames per block; default: about :data:`ESTIMATION_CHUNK_BYTES`.
    start, stop : int, optional
        The frames to read (default: all).
    raw : bool, optional
        With one channel, yield the frames as read (their own dtype, possibly
        a view of a buffer reused for the next block: read only, and only
        until the next block), for kernels that read any dtype; several
        channels are summed as usual (default False).

    Yields
    ------
    (int, numpy.ndarray)
        The first frame's index (in ``sequence``) and a ``(n, Z, Y, X)``
        block: float32 for data of at most 16-bit integers or float32,
        float64 otherwise. NaN marks unobserved pixels (a NaN in any channel
        makes the sum NaN).
    """
    T, Z, Y, X, C = sequence.shape
    kind = np.dtype(sequence.dtype)
    small = (kind.kind in "iu" and kind.itemsize <= 2) or kind == np.float32
    dtype = np.float32 if small else np.float64
    if chunk_frames is None:
        frame_bytes = max(Z * Y * X * C * 8, 1)
        chunk_frames = max(1, min(T or 1, ESTIMATION_CHUNK_BYTES // frame_bytes))
    on_frames = _ON_FRAMES.get()
    for t0, block in sequence.iter_chunks(
        int(chunk_frames), start=start, stop=stop, reuse_buffer=True
    ):
        if C == 1 and raw:
            out = block[..., 0]
        elif C == 1:
            out = np.asarray(block[..., 0], dtype=dtype)
            if out is block[..., 0] or np.shares_memory(out, block):
                out = out.copy()
        else:
            out = block.sum(axis=-1, dtype=dtype)
        yield t0, out
        if on_frames is not None:
            on_frames(len(out))


@contextlib.contextmanager
def _estimation_progress(total: int, wanted: bool, desc: str) -> Iterator[None]:
    """Show a tqdm bar of ``total`` frames advanced by :func:`iter_estimation_chunks`."""
    if not wanted:
        yield
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="frame", disable=None) as bar:
        token = _ON_FRAMES.set(bar.update)
        try:
            yield
        finally:
            _ON_FRAMES.reset(token)


def displacements_of_range(sequence: Any, t0: int, t1: int, job: tuple) -> np.ndarray:
    """Estimate the displacements of frames ``t0`` to ``t1`` of one sequence.

    The per-range function of motion estimation against a fixed reference:
    the single-machine path runs it over whole sequences, and
    :func:`sima_fast.distributed.estimate_motion` over time ranges on a
    cluster; either way :meth:`MotionEstimationStrategy.estimate` finishes
    the joined ranges the same way.

    Parameters
    ----------
    sequence : Sequence
        The sequence (already restricted to the channels to use).
    t0, t1 : int
        The frames (``t0 == t1`` gives an empty array).
    job : (MotionEstimationStrategy, object)
        The strategy and what its ``_range_setup`` returned for the dataset
        (e.g. its reference images).

    Returns
    -------
    numpy.ndarray
        The raw displacements of the ``t1 - t0`` frames (before the
        strategy's finishing step and the normalisation of
        :meth:`~MotionEstimationStrategy.estimate`).
    """
    strategy, setup = job
    return strategy._estimate_range(setup, sequence, int(t0), int(t1))


# ---------------------------------------------------------------------------
# displacements: normalisation, coverage and trimming
# ---------------------------------------------------------------------------


def normalise_displacements(displacements: list) -> list:
    """Shift displacements so that each component's minimum over all sequences is 0.

    Parameters
    ----------
    displacements : list of numpy.ndarray
        One array per sequence, the components on the last axis (masked
        arrays allowed: masked entries are ignored and stay masked).

    Returns
    -------
    list of numpy.ndarray
        Same shapes and dtypes (integers stay integers).

    Examples
    --------
    >>> out = normalise_displacements([np.array([[[-2, 3]]]), np.array([[[1, 5]]])])
    >>> [d.tolist() for d in out]
    [[[[0, 0]]], [[[3, 2]]]]
    """
    k = displacements[0].shape[-1]
    mins = []
    for d in displacements:
        flat = d.reshape(-1, k)
        if flat.shape[0]:
            m = np.ma.min(flat, axis=0) if np.ma.isMaskedArray(d) else np.nanmin(flat, axis=0)
            mins.append(np.ma.filled(np.ma.asarray(m, dtype=np.float64), np.nan))
    if not mins:
        return list(displacements)
    low = np.nanmin(np.vstack(mins), axis=0)
    low = np.where(np.isfinite(low), low, 0.0)
    out = []
    for d in displacements:
        shift = low.astype(d.dtype) if d.dtype.kind in "iu" else low
        out.append(d - shift)
    return out


def _source_extents(disp: np.ndarray, raw: tuple[int, int, int]) -> tuple:
    """Per source unit (plane or row of a frame): its plane, and the integer box it covers.

    Returns
    -------
    tuple of numpy.ndarray
        ``t, z, y0, y1, x0, x1`` (flat int arrays; ``y1``, ``x1`` exclusive)
        of every source unit: its frame, its plane and the whole pixels it
        covers.
    """
    Z, Y, X = raw
    d = np.ma.filled(np.ma.asarray(disp, dtype=np.float64), np.nan)
    T = d.shape[0]
    k = d.shape[-1]
    if k == 3 and d.ndim == 2:  # (T, 3): the whole volume
        d = np.broadcast_to(d[:, None, :], (T, Z, 3))
    if d.ndim == 5:  # (T, Z, Gy, Gx, 2): a non-rigid field, bounded by its extremes
        lo = d.min(axis=(2, 3))
        hi = d.max(axis=(2, 3))
    else:
        lo = hi = d
    if k == 2:
        zeros = np.zeros((*lo.shape[:-1], 1))
        lo = np.concatenate([zeros, lo], axis=-1)
        hi = np.concatenate([zeros, hi], axis=-1)
    valid = np.isfinite(lo).all(axis=-1) & np.isfinite(hi).all(axis=-1)
    # a unit covers positions [ceil(d_hi), floor(d_lo) + extent) along y and x
    if lo.ndim == 4:  # per row: (T, Z, Y, 3)
        plane = np.broadcast_to(np.arange(Z)[None, :, None], lo.shape[:-1])
        row = np.broadcast_to(np.arange(Y)[None, None, :], lo.shape[:-1])
        height = 1
    else:  # per plane: (T, Z, 3)
        plane = np.broadcast_to(np.arange(Z)[None, :], lo.shape[:-1])
        row = np.zeros(lo.shape[:-1], dtype=np.int64)
        height = Y
    frame = np.broadcast_to(np.arange(T).reshape((T,) + (1,) * (lo.ndim - 2)), lo.shape[:-1])
    t = frame[valid]
    lo, hi = lo[valid], hi[valid]
    z = plane[valid] + np.round(lo[:, 0]).astype(np.int64)
    y0 = row[valid] + np.ceil(hi[:, 1] - 1e-9).astype(np.int64)
    y1 = row[valid] + np.floor(lo[:, 1] + 1e-9).astype(np.int64) + height
    x0 = np.ceil(hi[:, 2] - 1e-9).astype(np.int64)
    x1 = np.floor(lo[:, 2] + 1e-9).astype(np.int64) + X
    return t, z, y0, y1, x0, x1


def observation_counts(
    displacements: np.ndarray, raw_shape: tuple[int, ...], frame_shape: tuple[int, ...]
) -> np.ndarray:
    """Count, per pixel of the corrected frame, the frames that observe it.

    Parameters
    ----------
    displacements : numpy.ndarray
        One sequence's displacements (any of the shapes of this module;
        masked or NaN entries observe nothing).
    raw_shape : tuple of int
        ``(Z, Y, X)`` of the uncorrected frames.
    frame_shape : tuple of int
        ``(Z, Y, X)`` of the corrected frames.

    Returns
    -------
    numpy.ndarray of int64, shape ``frame_shape``
        For a sub-pixel displacement a pixel counts as observed when it
        lies within the moved frame (between its outermost pixel centres);
        for a non-rigid field, when every block's shift keeps it inside.

    Examples
    --------
    >>> observation_counts(np.array([[[0, 0]], [[1, 2]]]), (1, 2, 2), (1, 3, 4))[0].tolist()
    [[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1]]
    """
    Zo, Yo, Xo = (int(s) for s in frame_shape[:3])
    _, z, y0, y1, x0, x1 = _source_extents(displacements, tuple(int(s) for s in raw_shape[:3]))
    keep = (z >= 0) & (z < Zo)
    z, y0, y1, x0, x1 = z[keep], y0[keep], y1[keep], x0[keep], x1[keep]
    y0, y1 = np.clip(y0, 0, Yo), np.clip(y1, 0, Yo)
    x0, x1 = np.clip(x0, 0, Xo), np.clip(x1, 0, Xo)
    ok = (y1 > y0) & (x1 > x0)
    z, y0, y1, x0, x1 = z[ok], y0[ok], y1[ok], x0[ok], x1[ok]
    diff = np.zeros((Zo, Yo + 1, Xo + 1), dtype=np.int64)
    np.add.at(diff, (z, y0, x0), 1)
    np.add.at(diff, (z, y1, x0), -1)
    np.add.at(diff, (z, y0, x1), -1)
    np.add.at(diff, (z, y1, x1), 1)
    return diff.cumsum(axis=1).cumsum(axis=2)[:, :Yo, :Xo]


def frame_coverage(
    displacements: list[np.ndarray],
    raw_shape: tuple[int, ...],
    frame_shape: tuple[int, ...],
    num_frames: int,
) -> tuple[np.ndarray, float, float]:
    """How much of the corrected frame one uncorrected frame covers.

    A frame moved by a sub-pixel displacement covers one row and one column
    fewer whole pixels than it has, and a non-rigid field fewer still, so
    :func:`trim_slices` measures rows and columns against what a frame can
    cover rather than against the frame's size, and planes by the frames
    that land on them.

    Parameters
    ----------
    displacements : list of numpy.ndarray
        The displacements of every sequence (any shape of this module).
    raw_shape : tuple of int
        ``(Z, Y, X)`` of the uncorrected frames.
    frame_shape : tuple of int
        ``(Z', Y', X')`` of the corrected frames.
    num_frames : int
        Frames (not rejected) of all sequences together.

    Returns
    -------
    (numpy.ndarray, float, float)
        The fraction of the frames that land on each corrected plane
        (``(Z',)``), the rows one plane of one frame covers, and the columns
        each covered row spans, on average.
    """
    Z, Y, X = (int(v) for v in raw_shape[:3])
    Zo = int(frame_shape[0])
    seen = np.zeros(Zo)
    area = height = 0.0
    for d in displacements:
        t, z, y0, y1, x0, x1 = _source_extents(d, (Z, Y, X))
        h = np.clip(y1 - y0, 0, None).astype(np.float64)
        w = np.clip(x1 - x0, 0, None).astype(np.float64)
        area += float((h * w).sum())
        height += float(h.sum())
        hit = (h > 0) & (w > 0) & (z >= 0) & (z < Zo)
        pairs = np.unique(np.stack([t[hit], z[hit]]), axis=1)
        np.add.at(seen, pairs[1], 1)
    frames = max(int(num_frames), 1)
    if height == 0:
        return seen / frames, float(Y), float(X)
    return seen / frames, height / (frames * Z), area / height


def trim_slices(
    counts: np.ndarray,
    num_frames: int,
    raw_shape: tuple[int, ...],
    trim_criterion: float | None,
    coverage: tuple[float, float, float] | None = None,
) -> tuple[slice, slice, slice]:
    """Planes, rows and columns of a corrected frame observed often enough.

    A plane, row or column is kept when its pixels are observed, on
    average, in at least ``trim_criterion`` of the frames, counted against
    the size of an uncorrected frame (so with the default 1.0 a row is kept
    only when the whole width of a frame lands in it in every frame); the
    result is the smallest box holding every kept plane, row and column.

    Parameters
    ----------
    counts : numpy.ndarray, shape (Z', Y', X')
        Summed :func:`observation_counts` of all sequences.
    num_frames : int
        Frames of all sequences together.
    raw_shape : tuple of int
        ``(Z, Y, X)`` of the uncorrected frames.
    trim_criterion : float or None
        In ``[0, 1]``; None means 1.0 (keep only what every frame sees, as
        SIMA); 0 keeps everything observed at least once.
    coverage : (numpy.ndarray, float, float), optional
        What the frames cover (:func:`frame_coverage`): the fraction of
        frames landing on each plane, and the height and width one frame
        covers. Default: planes by their pixels against ``Y·X``, rows and
        columns against the uncorrected frame's ``X`` and ``Y``, exact for
        whole-pixel displacements.

    Returns
    -------
    (slice, slice, slice)
        Along planes, rows and columns.

    Raises
    ------
    ValueError
        When nothing meets the criterion (the motion is larger than the
        frame for that criterion); the message names ``trim_criterion``.
    """
    crit = 1.0 if trim_criterion is None else float(trim_criterion)
    # Half a frame of slack: coverage is measured in pixels and averaged over
    # a unit's extent, so a plane, row or column seen by every frame can come
    # out a hair under 1 (a frame covering one pixel less than the mean);
    # missing a whole frame is not rounding.
    eps = 0.5 / max(int(num_frames), 1)
    Z, Y, X = (int(s) for s in raw_shape[:3])
    occupancy = counts.astype(np.float64) / max(int(num_frames), 1)
    out = []
    if coverage is None:
        seen, height, width = None, float(Y), float(X)
    else:
        seen, height, width = coverage
    norms = (("planes", float(Y * X)), ("rows", Z * width), ("columns", Z * height))
    for axis, (name, norm) in enumerate(norms):
        others = tuple(a for a in range(3) if a != axis)
        if axis == 0 and seen is not None:
            marginal = np.asarray(seen, dtype=np.float64)
        else:
            marginal = occupancy.sum(axis=others) / norm
        good = marginal + eps >= crit if crit > 0 else marginal > 0
        idx = np.flatnonzero(good)
        if idx.size == 0:
            raise ValueError(
                f"trim_criterion={crit:g} leaves no {name}: no {name[:-1]} is observed in that "
                "fraction of the frames (lower trim_criterion or max_displacement)"
            )
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return out[0], out[1], out[2]


# ---------------------------------------------------------------------------
# the base class
# ---------------------------------------------------------------------------


class MotionEstimationStrategy(abc.ABC):
    """Base class of the motion correction strategies (SIMA's ``sima.motion`` API).

    A subclass implements ``_estimate(dataset)``, returning one displacement
    array per sequence (see the module docstring for the shapes), and may
    override :meth:`corrected_sequence` (sub-pixel and non-rigid strategies
    return a warped view). :meth:`estimate` and :meth:`correct` are shared.

    Examples
    --------
    A strategy that finds every frame one pixel further down than the last:

    >>> import numpy as np, sima_fast as sima
    >>> class Drift(sima.motion.MotionEstimationStrategy):
    ...     def _estimate(self, dataset):
    ...         out = []
    ...         for seq in dataset:
    ...             d = np.zeros((len(seq), seq.shape[1], 2), dtype=int)
    ...             d[:, :, 0] = -np.arange(len(seq))[:, None]
    ...             out.append(d)
    ...         return out
    >>> seq = sima.Sequence.create('ndarray', np.ones((3, 1, 8, 8, 1)))
    >>> [d[:, 0].tolist() for d in Drift().estimate([seq])]
    [[[2, 0], [1, 0], [0, 0]]]
    >>> Drift().correct([seq], None).frame_shape  # rows seen by every frame
    (1, 6, 8, 1)
    """

    @abc.abstractmethod
    def _estimate(self, dataset: Any) -> list:
        """Estimate the displacements of every sequence of ``dataset`` (an ImagingDataset)."""

    # A strategy whose frames are registered one by one against references fixed
    # before any frame is read can be run in time ranges (on a cluster with
    # ``client=``). It returns what every range needs from ``_range_setup`` (called
    # once, on the client; picklable), estimates a range in ``_estimate_range`` and
    # post-processes the joined ranges of every sequence in ``_finish_ranges``;
    # its ``_estimate`` should be those three steps over whole sequences, so that
    # both paths give the same result. ``_range_setup`` returning None (the
    # default) means the frames' estimates depend on each other.

    def _range_setup(self, dataset: Any) -> Any:
        """Return what estimating any time range of ``dataset`` needs (None: cannot be split)."""
        return None

    def _estimate_range(self, setup: Any, sequence: Any, t0: int, t1: int) -> np.ndarray:
        """Raw displacements of frames ``t0:t1`` of ``sequence`` (given ``_range_setup``)."""
        raise TypeError(
            f"{type(self).__name__} returned a range setup but does not define _estimate_range"
        )

    def _finish_ranges(self, dataset: Any, setup: Any, displacements: list) -> list:
        """Post-process the joined per-sequence displacements of the ranges (default: none)."""
        return displacements

    def estimate(
        self, dataset: Any, *, client: Any = None, progress: bool = False
    ) -> list[np.ndarray]:
        """Estimate the displacements of every frame of a dataset.

        Parameters
        ----------
        dataset : ImagingDataset or list of Sequence
            The data; every channel is used, summed (select channels by
            indexing, ``seq[:, :, :, :, [0]]``, or with ``correction_channels``
            of :meth:`correct`).
        client : dask.distributed.Client, optional
            Register on this Dask cluster: the references are fixed first
            (given, or built here from a sample of frames), then every time
            range of every sequence is one task
            (:func:`sima_fast.distributed.estimate_motion`). The result equals
            the one without ``client`` for the rigid plane strategies and
            :class:`NonRigid2D`; :class:`HiddenMarkov2D` fits its model on a
            sample and decodes each range against it (see docs/motion.md).
            Strategies that cannot be split in time (volume, resonant) raise
            ValueError.
        progress : bool, optional
            Show a progress bar over the frames registered (tqdm here, Dask's
            with ``client``). Default False.

        Returns
        -------
        list of numpy.ndarray
            One array per sequence, first axis the frames: integers for the
            whole-pixel strategies, floats for the sub-pixel ones; each
            component shifted so that its minimum over all sequences is 0.
            Frames whose estimate a strategy rejects are masked
            (:class:`numpy.ma.MaskedArray`).

        Raises
        ------
        ArgumentTypeError
            If ``dataset`` is neither an ImagingDataset nor a list of Sequence.
        ValueError
            An empty dataset, sequences of different frame shapes, or data
            that the strategy's parameters do not fit (``max_displacement``
            larger than the frame, a reference of another shape); a
            ``client`` given to a strategy that cannot be split in time.
        TypeError
            ``client`` is not a Dask client.
        """
        from sima_fast.imaging import ImagingDataset

        progress = check_bool("progress", progress)
        sequences = as_sequences(dataset)
        data = ImagingDataset(sequences, None)
        total = sum(len(s) for s in sequences)
        desc = f"motion ({type(self).__name__})"
        setup = self._range_setup(data)
        if setup is None:
            if client is not None:
                raise ValueError(
                    f"client: {type(self).__name__} does not register frames against a fixed "
                    "reference, so it cannot be split into time ranges; run it without client"
                )
            with _estimation_progress(total, progress, desc):
                shifts = self._estimate(data)
        else:
            if client is None:
                with _estimation_progress(total, progress, desc):
                    parts = [
                        displacements_of_range(s, 0, len(s), (self, setup)) for s in sequences
                    ]
            else:
                from sima_fast.distributed import estimate_motion

                parts = estimate_motion(
                    sequences, client, displacements_of_range, (self, setup), progress=progress
                )
            shifts = self._finish_ranges(data, setup, parts)
        if len(shifts) != len(sequences):
            raise RuntimeError(
                f"{type(self).__name__} returned {len(shifts)} displacement arrays for "
                f"{len(sequences)} sequences"
            )
        out = []
        for i, (d, s) in enumerate(zip(shifts, sequences)):
            if not np.ma.isMaskedArray(d):
                d = np.asarray(d)
            if d.ndim < 2 or d.shape[0] != len(s) or d.shape[-1] not in (2, 3):
                raise RuntimeError(
                    f"{type(self).__name__} returned displacements of shape {d.shape} for "
                    f"sequence {i} of {len(s)} frames"
                )
            out.append(d)
        return normalise_displacements(out)

    def corrected_sequence(
        self, sequence: Any, displacements: np.ndarray, frame_shape: tuple[int, ...]
    ) -> Any:
        """Return the motion-corrected view of one sequence.

        The default moves whole pixels (:meth:`Sequence.apply_displacements`,
        float displacements rounded); sub-pixel and non-rigid strategies
        override it to interpolate.

        Parameters
        ----------
        sequence : Sequence
            The uncorrected sequence (all channels).
        displacements : numpy.ndarray
            Its displacements from :meth:`estimate` (masked frames are
            placed unmoved; :meth:`correct` blanks them).
        frame_shape : tuple of int
            ``(Z, Y, X)`` of the corrected frames.

        Returns
        -------
        Sequence
        """
        d = np.ma.filled(np.ma.asarray(displacements), 0)
        if d.dtype.kind == "f":
            d = np.round(d).astype(np.int64)
        return sequence.apply_displacements(d, tuple(int(s) for s in frame_shape))

    def correct(
        self,
        dataset: Any,
        savedir: str | os.PathLike | None,
        channel_names: list[str] | None = None,
        info: dict | None = None,
        correction_channels: list | None = None,
        trim_criterion: float | None = None,
        *,
        client: Any = None,
        progress: bool = False,
    ) -> Any:
        """Estimate the motion of a dataset and save the motion-corrected dataset.

        Parameters
        ----------
        dataset : ImagingDataset or list of Sequence
            The data to correct.
        savedir : str, path-like or None
            The new dataset's directory (``.sima`` appended when missing); it
            must not exist. None keeps the corrected dataset in memory.
        channel_names : list of str, optional
            Names of the channels (default: the dataset's names, or ``'0'``,
            ``'1'``, ...).
        info : dict, optional
            Acquisition details, accepted for compatibility with SIMA, which
            does not use them either; must be a dict or None.
        correction_channels : list of int or str, optional
            The channels (indices or names) whose sum the motion is estimated
            from; the displacements are applied to every channel. Default
            (None or empty): all channels.
        trim_criterion : float, optional
            In ``[0, 1]``: the fraction of frames in which a location must be
            in the field of view to be kept (see :func:`trim_slices`).
            Default None: only what every frame observes, as SIMA.
        client : dask.distributed.Client, optional
            Estimate on this Dask cluster (see :meth:`estimate`).
        progress : bool, optional
            Show a progress bar while estimating (default False).

        Returns
        -------
        ImagingDataset
            The corrected sequences (views of the originals; their
            descriptions, and so the saved directory, hold the
            displacements).

        Raises
        ------
        ArgumentTypeError
            An argument of the wrong type (names it).
        ValueError
            Sequences of different frame shapes, an unknown channel, a
            ``trim_criterion`` outside ``[0, 1]`` or one that leaves nothing,
            a strategy parameter that does not fit the data, or a ``client``
            for a strategy that cannot be split in time.
        TypeError
            ``client`` is not a Dask client.
        FileExistsError
            If ``savedir`` exists.
        FileNotFoundError
            If the parent directory of ``savedir`` does not exist.

        Notes
        -----
        Everything is checked, and the motion estimated, before anything is
        written; the dataset directory is written in a staging directory and
        renamed into place, so a failure leaves nothing behind.
        """
        from sima_fast import storage
        from sima_fast.imaging import ImagingDataset

        sequences = as_sequences(dataset)
        target = None
        if savedir is not None:
            target = storage.normalize_savedir(savedir)
            if os.path.exists(target):
                raise FileExistsError(f"savedir {target!r} already exists; choose a new directory")
            parent = os.path.dirname(target)
            if not os.path.isdir(parent):
                raise FileNotFoundError(f"savedir: the parent directory {parent!r} does not exist")
        progress = check_bool("progress", progress)
        if info is not None and not isinstance(info, dict):
            raise ArgumentTypeError(f"info must be a dict or None, got {type(info).__name__}")
        num_channels = sequences[0].shape[4]
        if channel_names is None:
            names = (
                list(dataset.channel_names)
                if isinstance(dataset, ImagingDataset)
                else [str(i) for i in range(num_channels)]
            )
        else:
            # the dataset's own check, on an in-memory dataset, before any work
            names = ImagingDataset(sequences, None, channel_names=channel_names).channel_names
        if trim_criterion is not None:
            trim_criterion = check_real("trim_criterion", trim_criterion, low=0.0, high=1.0)
        if correction_channels is None or (
            isinstance(correction_channels, (list, tuple)) and len(correction_channels) == 0
        ):
            mc_sequences = sequences
        else:
            if isinstance(correction_channels, (str, int, np.integer)):
                correction_channels = [correction_channels]
            if not isinstance(correction_channels, (list, tuple, np.ndarray)):
                raise ArgumentTypeError(
                    "correction_channels must be a list of channel indices or names, got "
                    f"{type(correction_channels).__name__}"
                )
            idx = sorted(
                {resolve_channel(c, names, "correction_channels") for c in correction_channels}
            )
            mc_sequences = [s[:, :, :, :, idx] for s in sequences]
        displacements = self.estimate(mc_sequences, client=client, progress=progress)
        raw = tuple(int(v) for v in sequences[0].shape[1:4])
        k = displacements[0].shape[-1]
        largest = np.zeros(k)
        for d in displacements:
            flat = np.ma.filled(np.ma.asarray(d, dtype=np.float64).reshape(-1, k), 0.0)
            if flat.size:
                largest = np.maximum(largest, np.nanmax(flat, axis=0))
        grow = [math.ceil(v - 1e-9) for v in largest]
        if k == 2:
            frame_shape = (raw[0], raw[1] + grow[0], raw[2] + grow[1])
        else:
            frame_shape = (raw[0] + grow[0], raw[1] + grow[1], raw[2] + grow[2])
        counts = sum(observation_counts(d, raw, frame_shape) for d in displacements)
        valid_frames = sum(
            int((~np.ma.getmaskarray(d).reshape(len(d), -1).any(axis=1)).sum())
            for d in displacements
        )
        coverage = frame_coverage(displacements, raw, frame_shape, valid_frames)
        planes, rows, cols = trim_slices(counts, valid_frames, raw, trim_criterion, coverage)
        corrected = []
        for s, d in zip(sequences, displacements):
            view = self.corrected_sequence(s, d, frame_shape)
            if np.ma.isMaskedArray(d) and np.ma.getmaskarray(d).any():
                bad = np.ma.getmaskarray(d).reshape(len(s), -1).any(axis=1)
                view = view.mask([([int(t) for t in np.flatnonzero(bad)], None, None)])
            corrected.append(view[:, planes, rows, cols])
        return ImagingDataset(corrected, target, channel_names=names)

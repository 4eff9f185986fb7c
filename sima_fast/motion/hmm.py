"""Row-wise motion estimation of line-scanned movies by a hidden Markov model.

A laser-scanning microscope acquires a frame one row after the other, so the
tissue can move *during* a frame: each row (or group of rows) has its own
displacement. Following Dubbs, Guevara & Yuste (2016), the displacement
``(dy, dx)`` of each scan unit is the hidden state of a Markov chain that
runs along the raster (rows of plane 0, then plane 1, ..., then the next
frame):

- **Emission.** An observed row under state ``d`` is compared with the
  reference image shifted by ``d``: pixel values, converted to photon units
  with a gain and an offset estimated from the data (the variance of a pixel
  over the aligned frames grows linearly with its mean), are Poisson with the
  reference's rate.
- **Transitions.** A Gaussian random walk: between the units of one plane,
  with a covariance first estimated from a rigid (per-frame) pass and then
  from the decoded paths; into the first unit of a plane (the scanner's
  return, where more motion accumulates) with a covariance of its own.
- **Decoding.** Viterbi with a beam of ``num_states_retained`` states per
  unit (states more than 30 nats below the best are not expanded); the
  paths are traced back whenever all the beam's paths meet, so memory stays
  bounded by the chunk of frames being decoded (plus the result).
- **Iteration.** The reference (and the gain, offset and transition
  covariances) is rebuilt from the frames placed row by row at the decoded
  displacements, and the movie decoded again: coarse to fine (blocks of 16
  rows, then 4, then single rows), because the first reference, averaged at
  the rigid estimates, is blurred by the motion within frames. Between
  passes a warp of the reference (bands of rows shifted against each other,
  which the decoded rows would otherwise carry in the opposite direction) is
  removed: over time every row of the frame has the same mean displacement.

The first pass is a whole-pixel rigid registration of each frame (planes
summed; Hann-tapered cross-correlation) against a reference seeded with the
frame most like the mean of the first 100 frames and refined twice.

:class:`HiddenMarkov2D` is the strategy (SIMA's name and parameters);
:class:`HiddenMarkov3D` the same with displacements ``(dz, dy, dx)`` (the
state grid, the canvas and the random walk gain a z axis; the first pass is
:class:`~sima_fast.motion.VolumeTranslation`); :func:`estimate_rowwise` is the
estimation itself, for arrays or any source of frame chunks. SIMA's building
blocks :class:`MovementModel`, :class:`PositionIterator` and
:class:`NormalizedIterator` live in :mod:`sima_fast.motion.hmm_model` and are
importable from here too. See docs/motion.md.
"""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from sima_fast._validate import ArgumentTypeError, check_bool, check_int
from sima_fast.motion.base import (
    MotionEstimationStrategy,
    check_max_displacement,
    check_max_displacement_fits,
    check_reference,
    check_reference_shape,
    iter_estimation_chunks,
)
from sima_fast.motion.hmm_model import MovementModel, NormalizedIterator, PositionIterator

__all__ = [
    "HiddenMarkov2D",
    "HiddenMarkov3D",
    "MovementModel",
    "NormalizedIterator",
    "PositionIterator",
    "estimate_rowwise",
    "parse_granularity",
]

#: Granularity names and the axis SIMA numbers them with.
_AXES = {"frame": 0, "plane": 1, "row": 2, "column": 3}
_NAMES = {v: k for k, v in _AXES.items()}

#: Bytes of float32 counts decoded per chunk.
_CHUNK_BYTES = 16 * 2**20

#: Smallest variance (px²) of the random walk within a plane, per unit, and
#: into the first unit of a plane: without them a movie with no motion in
#: its first pass would forbid every step afterwards.
_MIN_UNIT_VAR = 0.01
_MIN_BOUNDARY_VAR = 0.25

#: Beam states more than this many nats (log-likelihood) below the best one
#: are not expanded: their paths are e^-30 ≈ 1e-13 times less likely, and
#: skipping them makes decoding ~3x faster with the same result on the
#: simulated movies of tests/test_motion_hmm.py.
_BEAM_MARGIN = 30.0


def parse_granularity(granularity: Any) -> tuple[str, int]:
    """Read a granularity in any of SIMA's forms.

    Parameters
    ----------
    granularity : int, str or tuple
        ``'frame'`` (or 0), ``'plane'`` (1) or ``'row'`` (2): one displacement
        per frame, per plane or per row; ``(name_or_axis, n)``: one per ``n``
        consecutive frames, planes or rows.

    Returns
    -------
    (str, int)
        The unit's name (``'frame'``, ``'plane'`` or ``'row'``) and how many
        of them make one unit.

    Raises
    ------
    ArgumentTypeError
        Anything but an int, a str or a pair of them.
    ValueError
        An unknown name or axis, ``'column'`` (one displacement per pixel,
        which no corrected view can apply), or ``n < 1``.

    Examples
    --------
    >>> parse_granularity(2)
    ('row', 1)
    >>> parse_granularity(('row', 8))
    ('row', 8)
    >>> parse_granularity('frame')
    ('frame', 1)
    """
    if isinstance(granularity, tuple):
        if len(granularity) != 2:
            raise ArgumentTypeError(
                f"granularity must be an int, a str or a pair (name or axis, count), "
                f"got {granularity!r}"
            )
        axis, count = granularity
        count = check_int("granularity[1]", count, low=1)
    else:
        axis, count = granularity, 1
    if isinstance(axis, str):
        if axis not in _AXES:
            raise ValueError(f"granularity must name 'frame', 'plane' or 'row', got {axis!r}")
        name = axis
    elif isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        if int(axis) not in _NAMES:
            raise ValueError(f"granularity must be 0 (frame), 1 (plane) or 2 (row), got {axis!r}")
        name = _NAMES[int(axis)]
    else:
        raise ArgumentTypeError(
            f"granularity must be an int, a str or a pair (name or axis, count), "
            f"got {granularity!r}"
        )
    if name == "column":
        raise ValueError(
            "granularity 'column' (one displacement per pixel) is not supported: "
            "the finest granularity is 'row'"
        )
    return name, count


# ---------------------------------------------------------------------------
# sources of frames
# ---------------------------------------------------------------------------

Source = Callable[[int], Iterable[tuple[int, np.ndarray]]]


def _array_source(array: np.ndarray) -> Source:
    """Chunks of an in-memory (T, Z, Y, X) array."""

    def chunks(chunk_frames: int) -> Iterator[tuple[int, np.ndarray]]:
        for t0 in range(0, array.shape[0], chunk_frames):
            yield t0, array[t0 : t0 + chunk_frames]

    return chunks


def _as_source(item: Any, index: int) -> Source:
    if callable(item):
        return item
    array = np.asarray(item)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise ValueError(
            f"frames[{index}] must be a (T, Y, X) or (T, Z, Y, X) array or a chunk source, "
            f"got shape {array.shape}"
        )
    if array.dtype.kind not in "iuf":
        raise ArgumentTypeError(f"frames[{index}] must hold numbers, got dtype {array.dtype}")
    return _array_source(array)


def _blocks(source: Source, chunk_frames: int) -> Iterator[tuple[int, np.ndarray]]:
    for t0, block in source(chunk_frames):
        block = np.asarray(block)
        if block.ndim == 3:
            block = block[:, None]
        yield int(t0), block


def _frame_shape(source: Source) -> tuple[int, int, int]:
    for _, block in _blocks(source, 1):
        return tuple(int(v) for v in block.shape[1:])  # type: ignore[return-value]
    raise ValueError("a sequence has no frames")


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------


class _Model:
    """What a decoding pass needs: the state grid, the canvas and the transitions.

    States are ``(dy, dx)`` (``lo``, ``hi`` of length 2) or ``(dz, dy, dx)``
    (length 3); the canvas pads the frame by the grid's extent along the
    axes that have states.
    """

    def __init__(self, lo: np.ndarray, hi: np.ndarray, frame_shape: tuple[int, int, int]):
        self.lo = lo.astype(np.int64)
        self.hi = hi.astype(np.int64)
        self.sizes = tuple(int(h - a + 1) for a, h in zip(lo, hi))
        self.ny, self.nx = self.sizes[-2:]
        self.nstates = math.prod(self.sizes)
        dims = len(self.sizes)
        self.frame_shape = frame_shape
        pad = (0,) * (3 - dims) + tuple(n - 1 for n in self.sizes)
        self.canvas_shape = tuple(f + p for f, p in zip(frame_shape, pad))
        self.offset = 0.0
        self.gain = 1.0
        self.logref = np.zeros(self.canvas_shape)
        self.lam = np.ones(self.canvas_shape)
        self.lamcum = np.zeros((*self.canvas_shape[:2], self.canvas_shape[2] + 1))
        self.unit_cov = np.eye(dims) * _MIN_UNIT_VAR
        self.boundary_cov = np.eye(dims) * _MIN_BOUNDARY_VAR
        self.prior_cov = np.eye(dims)

    def set_reference(
        self,
        total: np.ndarray,
        total_sq: np.ndarray,
        count: np.ndarray,
        fixed: np.ndarray | None = None,
    ) -> None:
        """Derive the gain, the offset and the canvas rates from the canvas sums.

        ``fixed`` (canvas-shaped, NaN where unknown) replaces the data's mean
        wherever it is finite.
        """
        from sima_fast.kernels.hmm import row_prefix_sums

        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
            var = (total_sq - count * mean * mean) / (count - 1.0)
        good = (count >= max(2.0, 0.5 * float(count.max()))) & np.isfinite(var)
        # residual misalignment adds variance where the image has edges:
        # fit the noise model on the flattest pixels only
        gy, gx = np.gradient(np.where(count > 0, mean, 0.0), axis=(1, 2))
        slope = np.hypot(gy, gx)
        if good.sum() >= 64:
            good &= slope <= np.quantile(slope[good], 0.25)
        self.gain, self.offset = _noise_model(mean[good], var[good])
        observed = count > 0
        if fixed is not None:
            known = np.isfinite(fixed)
            mean = np.where(known, fixed, mean)
            observed = observed | known
        rate = (mean - self.offset) / self.gain
        fill = float(np.mean(rate[observed])) if observed.any() else 1.0
        rate = np.where(observed, rate, fill)
        floor = max(1e-3 * abs(fill), 1e-6)
        rate = np.maximum(rate, floor)
        self.lam = np.ascontiguousarray(rate, dtype=np.float64)
        self.logref = np.log(self.lam)
        self.lamcum = np.zeros((*self.canvas_shape[:2], self.canvas_shape[2] + 1))
        row_prefix_sums(self.lam, self.lamcum)

    def steps(self, cov: np.ndarray, cap: int) -> tuple[np.ndarray, ...]:
        """Build the step table of a discretised Gaussian random walk of covariance ``cov``.

        The walk reaches 3 standard deviations (at least 1 step, at most
        ``cap`` and the grid's extent): with ``(dy, dx)`` states, of the
        larger one along both axes; with ``(dz, dy, dx)``, of each axis's own.

        Returns
        -------
        tuple of numpy.ndarray
            The steps along each axis (int64) and their log-probabilities.
        """
        sd = np.sqrt(np.maximum(np.diag(cov), 1e-12))
        if len(self.sizes) == 2:
            reach = int(
                min(max(1, math.ceil(3.0 * float(sd.max()))), cap, max(self.sizes) - 1, 127)
            )
            reaches = [max(reach, 1)] * 2
        else:
            reaches = [
                max(int(min(max(1, math.ceil(3.0 * float(v))), cap, n - 1, 127)), 0)
                for v, n in zip(sd, self.sizes)
            ]
        axes = [np.arange(-r, r + 1) for r in reaches]
        grid = [a.ravel() for a in np.meshgrid(*axes, indexing="ij")]
        logp = -0.5 * _quadratic_form(np.linalg.inv(cov + 1e-6 * np.eye(len(grid))), grid)
        logp -= np.log(np.exp(logp - logp.max()).sum()) + logp.max()
        return (*(g.astype(np.int64) for g in grid), logp.astype(np.float64))

    def prior(self, centre: np.ndarray) -> np.ndarray:
        """Log prior of every state: Gaussian around ``centre`` (grid indices)."""
        idx = np.meshgrid(*(np.arange(n) for n in self.sizes), indexing="ij")
        d = [g.ravel() - c for g, c in zip(idx, centre)]
        inv = np.linalg.inv(self.prior_cov + 1e-6 * np.eye(len(d)))
        return np.ascontiguousarray(-0.5 * _quadratic_form(inv, d), dtype=np.float64)

    def components(self, states: np.ndarray) -> tuple[np.ndarray, ...]:
        """State indices -> grid indices, one array per axis (``iy, ix`` or ``iz, iy, ix``)."""
        out = []
        stride = self.nstates
        for a, n in enumerate(self.sizes):
            stride //= n
            c = states // stride if stride > 1 else states
            out.append(c if a == 0 else c % n)
        return tuple(out)

    def kernel(self) -> Callable:
        """Return the beam Viterbi kernel of this model's states."""
        from sima_fast.kernels import hmm

        return hmm.beam_viterbi if len(self.sizes) == 2 else hmm.beam_viterbi3d

    def accumulate(
        self,
        data: np.ndarray,
        comps: tuple[np.ndarray, ...],
        total: np.ndarray,
        total_sq: np.ndarray,
        count: np.ndarray,
    ) -> None:
        """Add a chunk's rows onto the canvas sums at their states' grid indices."""
        from sima_fast.kernels import hmm

        accumulate = hmm.accumulate_rows if len(self.sizes) == 2 else hmm.accumulate_rows3d
        accumulate(data, *comps, total, total_sq, count)


def _quadratic_form(inv: np.ndarray, d: list[np.ndarray]) -> np.ndarray:
    """``Σ_ij inv[i, j] d_i d_j`` of a symmetric ``inv``, elementwise over the arrays ``d``."""
    q = None
    for i in range(len(d)):
        for j in range(i, len(d)):
            coef = inv[i, j] if i == j else 2 * inv[i, j]
            term = coef * d[i] * d[j]
            q = term if q is None else q + term
    return q


def _noise_model(mean: np.ndarray, var: np.ndarray) -> tuple[float, float]:
    """Fit the gain and offset of ``var = gain * (mean - offset)`` over pixels.

    Pixels are binned by their mean (quantile bins) and the line is fitted to
    the bins' median variances, which keeps a few pixels with activity or
    motion residue from pulling the fit.

    Returns
    -------
    (float, float)
        The gain (> 0) and the offset.
    """
    if mean.size < 4:
        return 1.0, 0.0
    edges = np.unique(np.quantile(mean, np.linspace(0.0, 1.0, 21)))
    if edges.size < 3:
        gain = float(np.median(var) / max(np.median(mean), 1e-12))
        return (gain if np.isfinite(gain) and gain > 0 else 1.0), 0.0
    which = np.clip(np.searchsorted(edges, mean, side="right") - 1, 0, edges.size - 2)
    xs, ys = [], []
    for b in range(edges.size - 1):
        sel = which == b
        if sel.sum() >= 3:
            xs.append(float(np.median(mean[sel])))
            ys.append(float(np.median(var[sel])))
    xs_a, ys_a = np.array(xs), np.array(ys)
    if xs_a.size >= 2 and np.ptp(xs_a) > 0:
        slope, intercept = np.polyfit(xs_a, ys_a, 1)
    else:
        slope, intercept = 0.0, 0.0
    if not (np.isfinite(slope) and slope > 0):
        ratio = np.median(var) / max(float(np.median(mean)), 1e-12)
        return (float(ratio) if np.isfinite(ratio) and ratio > 0 else 1.0), 0.0
    offset = -intercept / slope
    # an offset above the darkest pixels would give them negative rates
    offset = float(min(offset, np.quantile(mean, 0.01)))
    return float(slope), offset


def _covariance(steps: np.ndarray, floor: float) -> np.ndarray:
    """Zero-mean covariance of ``(n, D)`` steps, with ``floor`` added on the diagonal."""
    dims = steps.shape[1]
    if steps.shape[0] == 0:
        return np.eye(dims) * floor
    cov = steps.T.astype(np.float64) @ steps.astype(np.float64) / steps.shape[0]
    return cov + np.eye(dims) * floor


# ---------------------------------------------------------------------------
# passes over the data
# ---------------------------------------------------------------------------


def _chunk_frames(frame_shape: tuple[int, int, int], frames_per_unit: int) -> int:
    frame_bytes = 4 * frame_shape[0] * frame_shape[1] * frame_shape[2]
    n = max(1, _CHUNK_BYTES // max(frame_bytes, 1))
    return max(frames_per_unit, (n // frames_per_unit) * frames_per_unit)


def _accumulate(
    model: _Model,
    sources: list[Source],
    row_states: list[tuple[np.ndarray, np.ndarray]],
    chunk_frames: int,
    fixed: np.ndarray | None = None,
) -> None:
    """One pass: place every row at its state on the canvas and rebuild the reference."""
    total = np.zeros(model.canvas_shape)
    total_sq = np.zeros(model.canvas_shape)
    count = np.zeros(model.canvas_shape)
    for i, (source, comps) in enumerate(zip(sources, row_states)):
        T = comps[0].shape[0]
        seen = 0
        for t0, block in _blocks(source, chunk_frames):
            n = block.shape[0]
            if t0 != seen or t0 + n > T or block.shape[1:] != model.frame_shape:
                raise ValueError(
                    f"frames[{i}] yielded frames {t0}..{t0 + n - 1} of shape {block.shape[1:]}: "
                    f"expected consecutive frames of shape {model.frame_shape}, "
                    f"{T} in all (as many as rigid[{i}] has)"
                )
            seen = t0 + n
            data = np.ascontiguousarray(block, dtype=np.float32)
            model.accumulate(data, tuple(c[t0 : t0 + n] for c in comps), total, total_sq, count)
        if seen != T:
            raise ValueError(f"frames[{i}] has {seen} frames but rigid[{i}] has {T}")
    model.set_reference(total, total_sq, count, fixed)


class _Decoder:
    """The beam, its back-pointer buffer and the work arrays of one decoding pass."""

    def __init__(self, model: _Model, k: int, units_per_chunk: int):
        nstates = model.nstates
        self.k = min(k, nstates)
        self.capacity = 2 * units_per_chunk + 2
        self.bp = np.zeros((self.capacity, self.k), dtype=np.int16)
        self.st = np.zeros((self.capacity, self.k), dtype=np.int32)
        self.nslots = np.zeros(self.capacity, dtype=np.int32)
        self.beam_state = np.zeros(self.k, dtype=np.int32)
        self.beam_score = np.zeros(self.k, dtype=np.float64)
        self.beam_n = np.zeros(1, dtype=np.int64)
        self.dense = np.full(nstates, -np.inf)
        self.dense_bp = np.zeros(nstates, dtype=np.int32)
        self.touched = np.zeros(nstates, dtype=np.int32)
        self.mark = np.zeros(self.k, dtype=np.bool_)
        self.prev = np.zeros(self.k, dtype=np.bool_)
        self.path = np.zeros(self.capacity, dtype=np.int32)
        self.filled = 0  # units in the buffer
        self.first_unit = 0  # global index of the buffer's first unit

    def commit(self, states: np.ndarray, upto: int, slot: int) -> None:
        """Write the path ending at slot ``slot`` of buffer unit ``upto`` and drop those units."""
        from sima_fast.kernels.hmm import backtrace

        backtrace(self.bp, self.st, upto, slot, self.path)
        states[self.first_unit : self.first_unit + upto + 1] = self.path[: upto + 1]
        rest = self.filled - (upto + 1)
        if rest > 0:
            self.bp[:rest] = self.bp[upto + 1 : self.filled].copy()
            self.st[:rest] = self.st[upto + 1 : self.filled].copy()
            self.nslots[:rest] = self.nslots[upto + 1 : self.filled].copy()
        self.first_unit += upto + 1
        self.filled = rest

    def commit_all(self, states: np.ndarray) -> None:
        """Commit every buffered unit along the best path of the current beam."""
        if self.filled == 0:
            return
        n = int(self.beam_n[0])
        slot = int(np.argmax(self.beam_score[:n]))
        self.commit(states, self.filled - 1, slot)

    def commit_merged(self, states: np.ndarray) -> None:
        """Commit the units before the point where every beam path meets, if any."""
        from sima_fast.kernels.hmm import coalescence

        u, slot = coalescence(self.bp, self.nslots, self.filled, self.mark, self.prev)
        if u >= 0:
            self.commit(states, int(u), int(slot))


def _decode(
    model: _Model,
    source: Source,
    T: int,
    rigid: np.ndarray,
    unit_rows: int,
    restart_rows: int | None,
    k: int,
    chunk_frames: int,
) -> np.ndarray:
    """Decode one sequence; return the state (grid index) of every unit."""
    from sima_fast.kernels.hmm import mark_nan_rows

    beam_viterbi = model.kernel()

    Z, Y, X = model.frame_shape
    rows_per_frame = Z * Y
    total_rows = T * rows_per_frame
    n_units = -(-total_rows // unit_rows)
    states = np.zeros(n_units, dtype=np.int32)
    units_per_chunk = -(-chunk_frames * rows_per_frame // unit_rows)
    dec = _Decoder(model, k, units_per_chunk)
    step = model.steps(model.unit_cov, 3)
    bstep = model.steps(model.boundary_cov, 15)
    counts = np.empty((chunk_frames, Z, Y, X), dtype=np.float32)
    nan_rows = np.zeros(chunk_frames * rows_per_frame, dtype=np.bool_)
    scale = np.float32(1.0 / model.gain)
    offset = np.float32(model.offset)
    for t0, block in _blocks(source, chunk_frames):
        n = block.shape[0]
        if n > chunk_frames or ((n * rows_per_frame) % unit_rows and t0 + n != T):
            raise ValueError(
                f"a source yielded a block of {n} frames at frame {t0}: blocks must hold at "
                f"most {chunk_frames} frames and whole units of {unit_rows} rows"
            )
        buf = counts[:n]
        np.subtract(block, offset, out=buf, casting="unsafe")
        buf *= scale
        mark_nan_rows(buf, nan_rows)
        g0 = t0 * rows_per_frame
        # segments of the chunk between restarts
        row = 0
        stop = n * rows_per_frame
        while row < stop:
            grow = g0 + row
            restart = grow == 0 or (restart_rows is not None and grow % restart_rows == 0)
            seg_stop = stop
            if restart_rows is not None:
                nxt = (grow // restart_rows + 1) * restart_rows - g0
                seg_stop = min(stop, max(nxt, row + unit_rows))
                # units never straddle a restart: round to whole units
                seg_stop = min(stop, row + -(-(seg_stop - row) // unit_rows) * unit_rows)
            seg_units = -(-(seg_stop - row) // unit_rows)
            if restart:
                dec.commit_all(states)
                t = grow // rows_per_frame
                z = (grow // Y) % Z
                prior = model.prior(rigid[t, z] - model.lo)
            else:
                prior = dec.dense  # not read
            if dec.filled + seg_units > dec.capacity:
                # the paths have not met for two chunks: keep the best one
                dec.commit_all(states)
            done = beam_viterbi(
                buf,
                row,
                seg_stop,
                unit_rows,
                *model.sizes,
                model.logref,
                model.lam,
                model.lamcum,
                nan_rows,
                *step,
                *bstep,
                prior,
                restart,
                _BEAM_MARGIN,
                dec.beam_state,
                dec.beam_score,
                dec.beam_n,
                dec.bp,
                dec.st,
                dec.nslots,
                dec.filled,
                dec.dense,
                dec.dense_bp,
                dec.touched,
            )
            dec.filled += int(done)
            dec.commit_merged(states)
            row = seg_stop
    dec.commit_all(states)
    return states


def _row_states(states: np.ndarray, model: _Model, T: int, unit_rows: int) -> tuple:
    Z, Y, _ = model.frame_shape
    rows = np.repeat(states, unit_rows)[: T * Z * Y].reshape(T, Z, Y)
    return tuple(np.ascontiguousarray(c, dtype=np.int32) for c in model.components(rows))


def _whole_pixel_cov(v: np.ndarray) -> np.ndarray:
    """Covariance of the whole-pixel steps of a random walk of variance ``v`` (per axis).

    Sampled at whole pixels, a walk with ``v << 1`` steps by one pixel about
    ``sqrt(2 v / pi)`` of the time: the variance of its steps is then about
    ``0.8 sqrt(v)``, far above ``v``. The floor is added on the diagonal.

    Returns
    -------
    numpy.ndarray, shape (D, D)
        A diagonal covariance (``D`` = the length of ``v``).
    """
    v = np.maximum(np.asarray(v, dtype=np.float64), 0.0)
    return np.diag(np.maximum(v, 0.8 * np.sqrt(v))) + np.eye(v.size) * _MIN_UNIT_VAR


def _continuous_var(d: np.ndarray) -> np.ndarray:
    """Invert :func:`_whole_pixel_cov` (without its floor): step variance -> walk variance."""
    d = np.maximum(np.asarray(d, dtype=np.float64), 0.0)
    return np.where(d < 0.64, (d / 0.8) ** 2, d)


def _coarse_levels(Y: int, unit_rows: int, n: int) -> list[int]:
    """Rows per unit of the first ``n`` passes: from blocks of up to 16 rows down by 4.

    Every level divides ``Y`` and is a multiple of ``unit_rows``; the passes
    after the coarse levels decode ``unit_rows`` (at least the last two of
    ``n + 1`` passes, when there are enough).

    Returns
    -------
    list of int
        ``n`` unit sizes in rows.
    """
    sizes = [u for u in range(unit_rows, min(16, Y // 4) + 1, unit_rows) if Y % u == 0]
    levels: list[int] = []
    if sizes and sizes[-1] > unit_rows:
        levels.append(sizes[-1])
        while True:
            nxt = levels[-1] // 4
            if nxt <= unit_rows or Y % nxt or nxt % unit_rows:
                break
            levels.append(nxt)
    keep = max(1, n - 1) if n > 1 else 1
    levels = levels[:keep][:n]
    return levels + [unit_rows] * (n - len(levels))


def _check_image(name: str, image: Any, shape: tuple[int, int, int]) -> np.ndarray | None:
    """``image`` as a float64 ``(Z, Y, X)`` array of the frames' shape, or None."""
    if image is None:
        return None
    out = np.asarray(image, dtype=np.float64)
    if out.ndim == 2:
        out = out[None]
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape} but the frames are (Z, Y, X) = {shape}")
    return out


def _on_canvas(image: np.ndarray, model: _Model) -> np.ndarray:
    """Place a ``(Z, Y, X)`` image seen at displacement 0 on the canvas (NaN elsewhere)."""
    out = np.full(model.canvas_shape, np.nan)
    # image pixel p is frame pixel p at displacement 0: canvas p - lo (along
    # the axes that have states; every plane along z for (dy, dx) models)
    origin = [0] * (3 - len(model.lo)) + [-int(v) for v in model.lo]
    src, dst = [], []
    for axis, o in enumerate(origin):
        n = model.frame_shape[axis]
        a0, a1 = max(o, 0), min(o + n, model.canvas_shape[axis])
        if a1 <= a0:
            return out
        dst.append(slice(a0, a1))
        src.append(slice(a0 - o, a1 - o))
    out[tuple(dst)] = image[tuple(src)]
    return out


def _unwarp(row_states: list[tuple[np.ndarray, np.ndarray]], model: _Model) -> list[tuple]:
    """Remove a warp of the reference from the decoded rows before it is rebuilt.

    A reference whose rows are shifted against each other (a band one pixel
    off) fits the data as well as the true one once the decoded rows carry
    the opposite shift, so decoding and rebuilding can settle on it. Motion
    does not prefer any row of the frame: over time every row's mean
    displacement is the same. The departure of each row's mean from the
    median over rows, rounded, is the warp; it is taken off the rows'
    states, so that the next reference is built without it.

    Returns
    -------
    list of tuple of numpy.ndarray
        The rows' ``(iy, ix)`` (or ``(iz, iy, ix)``) states without the
        warp (the same objects when there is none).
    """
    if len(model.sizes) == 3:
        return _unwarp_volume(row_states, model)
    totals: list | None = None
    n = 0
    for comps in row_states:
        sums = [c.sum(axis=0, dtype=np.float64) for c in comps]
        totals = sums if totals is None else [a + b for a, b in zip(totals, sums)]
        n += comps[0].shape[0]
    if totals is None or n == 0:
        return row_states
    out = []
    warp = []
    for total in totals:
        mean = total / n  # (Z, Y)
        # the lower median is a value of the profile: with two bands of equal
        # size one pixel apart, one of them is the reference, not their middle
        centre = np.quantile(mean, 0.5, axis=1, method="lower", keepdims=True)
        warp.append(np.rint(mean - centre).astype(np.int32))
    if not any(np.any(w) for w in warp):
        return row_states
    for comps in row_states:
        out.append(
            tuple(
                np.ascontiguousarray(np.clip(c - w[None], 0, size - 1), np.int32)
                for c, w, size in zip(comps, warp, model.sizes)
            )
        )
    return out


def _unwarp_volume(row_states: list[tuple], model: _Model) -> list[tuple]:
    """:func:`_unwarp` for ``(dz, dy, dx)`` states: the warp lives on the canvas planes.

    Rows observed in plane ``z`` at state ``iz`` were compared with canvas
    plane ``z + iz``, so a band of a canvas plane that is off shows in the
    rows that landed on it, whatever plane they were observed in. Rows are
    grouped by (canvas plane, row); each group's mean displacement is
    compared with the lower median over the rows of the same canvas plane.

    Returns
    -------
    list of tuple of numpy.ndarray
        The rows' ``(iz, iy, ix)`` without the warp.
    """
    Z, Y, _ = model.frame_shape
    P = Z + model.sizes[0] - 1
    counts = np.zeros(P * Y)
    sums = np.zeros((3, P * Y))
    keys = []
    for comps in row_states:
        key = ((np.arange(Z)[None, :, None] + comps[0]) * Y + np.arange(Y)[None, None, :]).ravel()
        keys.append(key)
        counts += np.bincount(key, minlength=P * Y)
        for a in range(3):
            sums[a] += np.bincount(key, weights=comps[a].ravel(), minlength=P * Y)
    seen = (counts > 0).reshape(P, Y)
    warp = np.zeros((3, P, Y), dtype=np.int32)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums / counts).reshape(3, P, Y)
    for a in range(3):
        for p in range(P):
            if not seen[p].any():
                continue
            centre = np.quantile(means[a, p][seen[p]], 0.5, method="lower")
            warp[a, p] = np.where(seen[p], np.rint(means[a, p] - centre), 0)
    # whole canvas planes off against each other: within each volume, the
    # rows that landed on a canvas plane sit, on average over the volumes,
    # where the volume's other rows sit (the motion does not know planes)
    dev = np.zeros((3, P))
    dev_n = np.zeros(P)
    for comps, key in zip(row_states, keys):
        plane_of = key // Y
        T = comps[0].shape[0]
        for a in (1, 2):
            c = comps[a].reshape(T, -1).astype(np.float64)
            rel = (c - c.mean(axis=1, keepdims=True)).ravel()
            rel -= (warp[a].reshape(-1)[key]).astype(np.float64)
            dev[a] += np.bincount(plane_of, weights=rel, minlength=P)
        dev_n += np.bincount(plane_of, minlength=P)
    enough = dev_n >= 2 * Y
    if enough.sum() >= 2:
        for a in (1, 2):
            mean_dev = dev[a][enough] / dev_n[enough]
            centre = np.quantile(mean_dev, 0.5, method="lower")
            shift = np.zeros(P, dtype=np.int32)
            shift[enough] = np.rint(mean_dev - centre).astype(np.int32)
            warp[a] += shift[:, None]
    if not np.any(warp):
        return row_states
    flat = warp.reshape(3, -1)
    out = []
    for comps, key in zip(row_states, keys):
        shape = comps[0].shape
        out.append(
            tuple(
                np.ascontiguousarray(
                    np.clip(c - flat[a][key].reshape(shape), 0, size - 1), np.int32
                )
                for a, (c, size) in enumerate(zip(comps, model.sizes))
            )
        )
    return out


def _reestimate_transitions(model: _Model, unit_states: list[np.ndarray], unit_rows: int) -> None:
    """Covariances of the decoded steps within planes and into the first unit of a plane."""
    Y = model.frame_shape[1]
    inner, boundary = [], []
    for states in unit_states:
        if states.size < 2:
            continue
        pos = np.stack(model.components(states), axis=1).astype(np.int64)
        d = np.diff(pos, axis=0)
        starts = (np.arange(1, states.size) * unit_rows) % Y == 0
        inner.append(d[~starts])
        boundary.append(d[starts])
    if inner:
        model.unit_cov = _covariance(np.concatenate(inner), _MIN_UNIT_VAR)
    if boundary:
        model.boundary_cov = _covariance(np.concatenate(boundary), _MIN_BOUNDARY_VAR)


# ---------------------------------------------------------------------------
# the estimation
# ---------------------------------------------------------------------------


def estimate_rowwise(
    frames: list,
    rigid: list,
    *,
    granularity: Any = "row",
    num_states_retained: int = 50,
    max_displacement: Any = None,
    restarts: int | None = None,
    reference: Any = None,
    n_iterations: int = 4,
    n_threads: int = 1,
    verbose: bool = False,
) -> list[np.ndarray]:
    """Estimate row-wise displacements of line-scanned movies with a hidden Markov model.

    Parameters
    ----------
    frames : list
        One item per sequence: a ``(T, Y, X)`` or ``(T, Z, Y, X)`` array, or a
        callable ``source(chunk_frames)`` returning an iterable of
        ``(t0, block)`` pairs, ``block`` of shape ``(n, Z, Y, X)`` holding
        frames ``t0 .. t0 + n - 1`` in order (it is called once per pass over
        the data, and memory is bounded by the blocks). NaN marks unobserved
        pixels. All sequences share one frame shape and one reference.
    rigid : list of array_like
        Per sequence, a rigid (per-frame) first estimate: ``(T, 2)`` or
        ``(T, Z, 2)`` displacements ``(dy, dx)`` in the same convention as
        the result (any constant offset; rounded to whole pixels). A last
        axis of 3, ``(dz, dy, dx)``, estimates three-dimensional displacements
        (a plane offset too; see :class:`HiddenMarkov3D`).
    granularity : int, str or tuple, optional
        One displacement per ``'row'`` (default), ``'plane'`` or ``'frame'``,
        or per ``n`` of them with ``(name, n)`` (see
        :func:`parse_granularity`); ``n`` must divide the number of rows
        (planes) of a frame.
    num_states_retained : int, optional
        Beam width of the Viterbi decoding (default 50).
    max_displacement : int or (int, int), optional
        Largest spread ``max - min`` of the displacements along y and x
        (``(int, int, int)`` along z, y and x for 3-D estimates).
        Default: the rigid estimates' spread plus a margin for the motion
        within frames.
    restarts : {None, 0, 1}, optional
        Start the chain afresh at every frame (0) or plane (1); default None:
        only at the start of each sequence.
    reference : array_like, shape (Y, X) or (Z, Y, X), optional
        A fixed reference image, in the data's units (e.g. a time average of
        the data): displacements are then relative to it (``rigid`` too), and
        only the noise model and the transitions are re-estimated between
        passes. Default: built from the data, first from the rigid
        estimates, then from each pass's decoded rows.
    n_iterations : int, optional
        Decoding passes, each after rebuilding the reference from the
        previous one (default 4). With one displacement per row (or per
        few rows) the first passes decode blocks of rows, coarse to fine
        (16, then 4 rows), and the last two every unit.
    n_threads : int, optional
        Sequences decoded at the same time, on threads (default 1).
    verbose : bool, optional
        Print a line per pass.

    Returns
    -------
    list of numpy.ndarray of int32, shape (T, Z, Y, 2) or (T, Z, Y, 3)
        Per sequence, the ``(dy, dx)`` (or ``(dz, dy, dx)``) of every row
        (source row ``y`` lands at row ``y + dy``), shifted so that each
        component's minimum over all sequences is 0.

    Raises
    ------
    ArgumentTypeError
        Arguments of the wrong type.
    ValueError
        Sequences of different frame shapes, rigid estimates of the wrong
        shape, a granularity that does not divide the frame, a negative
        ``max_displacement`` or one larger than the frame.
    """
    fit = _fit(
        frames,
        rigid,
        granularity=granularity,
        num_states_retained=num_states_retained,
        max_displacement=max_displacement,
        restarts=restarts,
        reference=reference,
        n_iterations=n_iterations,
        n_threads=n_threads,
        verbose=verbose,
    )
    out = [_absolute(*comps, model=fit.model) for comps in fit.row_states]
    low = np.min([d.reshape(-1, d.shape[-1]).min(axis=0) for d in out], axis=0)
    return [(d - low.astype(np.int32)).astype(np.int32) for d in out]


def _absolute(*comps: np.ndarray, model: _Model) -> np.ndarray:
    """Grid indices of the rows' states -> int32 ``(T, Z, Y, D)`` displacements."""
    return np.stack([c + lo for c, lo in zip(comps, model.lo)], axis=-1).astype(np.int32)


class _Fit:
    """The outcome of the decoding passes: the model, the rows' states and how to decode."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def _fit(
    frames: list,
    rigid: list,
    *,
    granularity: Any,
    num_states_retained: int,
    max_displacement: Any,
    restarts: int | None,
    reference: Any,
    n_iterations: int,
    n_threads: int,
    verbose: bool,
    extra_margin: float = 0.0,
    final_update: bool = False,
) -> _Fit:
    """Run the passes of :func:`estimate_rowwise` (same arguments) and return their state.

    ``extra_margin`` widens the state grid beyond the rigid estimates' range
    by that fraction of the range (at least 2 px when positive), for frames
    that were not among ``frames``; ``final_update`` rebuilds the reference,
    the noise model and the transitions once more from the last pass, so
    that the model can decode other frames of the same movie.

    Returns
    -------
    _Fit
        ``model``, ``row_states`` (per source, grid indices ``(iy, ix)``),
        ``unit_rows``, ``restart_rows``, ``k``, ``chunk_frames``.
    """
    name, per = parse_granularity(granularity)
    k = check_int("num_states_retained", num_states_retained, low=1, high=32767)
    n_iterations = check_int("n_iterations", n_iterations, low=1)
    n_threads = check_int("n_threads", n_threads, low=1)
    verbose = check_bool("verbose", verbose)
    if restarts is not None:
        restarts = check_int("restarts", restarts, low=0, high=1)
    if not isinstance(frames, (list, tuple)) or len(frames) == 0:
        raise ArgumentTypeError("frames must be a non-empty list (one item per sequence)")
    if not isinstance(rigid, (list, tuple)) or len(rigid) != len(frames):
        raise ArgumentTypeError("rigid must be a list with one array per sequence of frames")
    sources = [_as_source(item, i) for i, item in enumerate(frames)]
    shapes = [_frame_shape(s) for s in sources]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"all sequences must have one frame shape, got {sorted(set(shapes))}")
    Z, Y, X = shapes[0]
    rig = []
    first = np.ma.filled(np.ma.asarray(rigid[0], dtype=np.float64), np.nan)
    D = 3 if first.ndim in (2, 3) and first.shape[-1] == 3 else 2
    for i, r in enumerate(rigid):
        r = np.ma.filled(np.ma.asarray(r, dtype=np.float64), np.nan)
        if r.ndim == 2:
            r = np.repeat(r[:, None, :], Z, axis=1)
        if r.ndim != 3 or r.shape[1:] != (Z, D) or not np.all(np.isfinite(r)):
            raise ValueError(
                f"rigid[{i}] must be finite (T, {D}) or (T, {Z}, {D}) displacements, "
                f"got shape {r.shape}"
            )
        rig.append(np.rint(r).astype(np.int64))
    T_list = [r.shape[0] for r in rig]
    reference = _check_image("reference", reference, (Z, Y, X))
    limit = _max_displacement(max_displacement, (Y, X) if D == 2 else (Z, Y, X))

    if name == "row":
        if Y % per:
            raise ValueError(f"granularity ('row', {per}): {per} must divide the {Y} rows")
        unit_rows, frames_per_unit = per, 1
    elif name == "plane":
        if Z % per:
            raise ValueError(f"granularity ('plane', {per}): {per} must divide the {Z} planes")
        unit_rows, frames_per_unit = per * Y, 1
    else:
        unit_rows, frames_per_unit = per * Z * Y, per
    restart_rows = None if restarts is None else (Z * Y if restarts == 0 else Y)

    # planes imaged together move together: put every plane's rigid estimate
    # in plane 0's frame of reference (their references may differ by a shift)
    if D == 2 and Z > 1 and reference is None:
        allr = np.concatenate(rig, axis=0)
        plane_offset = np.median(allr - allr[:, :1], axis=0).round().astype(np.int64)
        rig = [r - plane_offset[None] for r in rig]
    increments = [np.diff(r.mean(axis=1), axis=0) for r in rig if r.shape[0] > 1]
    frame_cov = _covariance(np.concatenate(increments) if increments else np.zeros((0, D)), 0.0)
    allr = np.concatenate([r.reshape(-1, D) for r in rig], axis=0)
    rmin, rmax = allr.min(axis=0), allr.max(axis=0)
    margin = np.maximum(2, np.ceil(3.0 * np.sqrt(np.diag(frame_cov)))).astype(np.int64)
    if D == 3:
        # planes are few: one plane of room beyond the rigid range along z
        margin[0] = max(1, min(int(margin[0]), Z // 2))
    if extra_margin > 0:
        margin = margin + np.maximum(2, np.ceil(extra_margin * (rmax - rmin))).astype(np.int64)
    lo, hi = rmin - margin, rmax + margin
    if limit is not None:
        for a in range(D):
            if hi[a] - lo[a] <= limit[a]:
                continue
            if rmax[a] - rmin[a] <= limit[a]:
                extra = (limit[a] - (rmax[a] - rmin[a])) // 2
                lo[a] = rmin[a] - extra
            else:
                lo[a] = int(np.median(allr[:, a])) - limit[a] // 2
            hi[a] = lo[a] + limit[a]
        rig = [np.clip(r, lo, hi) for r in rig]
    model = _Model(lo, hi, (Z, Y, X))

    # a random walk of variance v per unit, sampled at whole pixels, steps by
    # one pixel about sqrt(2 v / pi) of the time when v << 1: the variance of
    # the whole-pixel steps is then ~0.8 sqrt(v), far above v
    def walk_cov(rows: int) -> np.ndarray:
        return _whole_pixel_cov(np.diag(frame_cov) * rows / (Z * Y))

    # coarse to fine: with one displacement per row, the first pass decodes
    # blocks of rows, which the blurred first reference tells apart more
    # reliably than single rows; the later passes decode every unit
    schedule = [unit_rows] * n_iterations
    if name == "row" and n_iterations > 1:
        schedule[: n_iterations - 1] = _coarse_levels(Y, unit_rows, n_iterations - 1)
    model.unit_cov = walk_cov(schedule[0])
    model.boundary_cov = frame_cov + np.eye(D) * _MIN_BOUNDARY_VAR
    if name != "row":
        model.boundary_cov = model.unit_cov
    model.prior_cov = frame_cov + np.eye(D)
    chunk_frames = _chunk_frames((Z, Y, X), frames_per_unit)

    fixed = None if reference is None else _on_canvas(reference, model)
    row_states = []
    for r in rig:
        row_states.append(
            tuple(
                np.repeat((r[:, :, a] - lo[a])[:, :, None], Y, axis=2).astype(np.int32)
                for a in range(D)
            )
        )
    for it, rows in enumerate(schedule):
        _accumulate(model, sources, row_states, chunk_frames, fixed)
        if verbose:
            print(
                f"HiddenMarkov: pass {it + 1}/{n_iterations}: gain {model.gain:.3g}, "
                f"offset {model.offset:.3g}, {'x'.join(map(str, model.sizes))} states, "
                f"{rows} rows per unit",
                file=sys.stderr,
            )
        jobs = list(zip(sources, T_list, rig))

        def decode(job: tuple, model: _Model = model, rows: int = rows) -> np.ndarray:
            source, T, r = job
            return _decode(model, source, T, r, rows, restart_rows, k, chunk_frames)

        if n_threads > 1 and len(jobs) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(n_threads, len(jobs))) as pool:
                unit_states = list(pool.map(decode, jobs))
        else:
            unit_states = [decode(job) for job in jobs]
        row_states = [_row_states(s, model, T, rows) for s, T in zip(unit_states, T_list)]
        if it + 1 < n_iterations:
            if name == "row":
                _reestimate_transitions(model, unit_states, rows)
                if schedule[it + 1] != rows:
                    # the decoded walk's variance, per unit of the next pass
                    cont = _continuous_var(np.diag(model.unit_cov) - _MIN_UNIT_VAR)
                    model.unit_cov = _whole_pixel_cov(cont * schedule[it + 1] / rows)
            model.prior_cov = model.boundary_cov + np.eye(D)
            if name == "row" and fixed is None:
                row_states = _unwarp(row_states, model)
    if final_update:
        if name == "row":
            _reestimate_transitions(model, unit_states, schedule[-1])
            if fixed is None:
                row_states = _unwarp(row_states, model)
        model.prior_cov = model.boundary_cov + np.eye(D)
        _accumulate(model, sources, row_states, chunk_frames, fixed)
    return _Fit(
        model=model,
        row_states=row_states,
        unit_rows=unit_rows,
        restart_rows=restart_rows,
        k=k,
        chunk_frames=chunk_frames,
        limit=limit,
    )


def _max_displacement(value: Any, extent: tuple[int, ...]) -> np.ndarray | None:
    """Validate ``max_displacement``: None, or one number or one per axis of ``extent``."""
    if value is None:
        return None
    arr = np.asarray(value)
    dims = len(extent)
    axes = "[y, x]" if dims == 2 else "[z, y, x]"
    if arr.dtype.kind not in "iuf" or arr.ndim > 1 or (arr.ndim == 1 and arr.size != dims):
        raise ArgumentTypeError(
            f"max_displacement must be None, a number or {dims} numbers {axes}, got {value!r}"
        )
    arr = np.broadcast_to(arr.astype(np.float64), (dims,))
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"max_displacement must be finite and >= 0, got {value!r}")
    if np.any(arr >= np.asarray(extent)):
        raise ValueError(
            f"max_displacement must be smaller than the frame {extent} "
            f"({'rows, columns' if dims == 2 else 'planes, rows, columns'}), "
            f"got {value!r}"
        )
    return np.floor(arr).astype(np.int64)


# ---------------------------------------------------------------------------
# the rigid first pass and the strategy
# ---------------------------------------------------------------------------

#: Frames of the first sequence averaged into the first rigid reference.
_RIGID_REFERENCE_FRAMES = 100

#: Frames the model of a cluster run (``estimate(client=...)``) is fitted on, at most.
RANGE_MODEL_FRAMES = 400
#: Stretches of consecutive frames, spread over the data, that make up that sample.
RANGE_MODEL_STRETCHES = 8
#: Widening of the state grid beyond the sample's range, for a cluster run (fraction).
RANGE_GRID_MARGIN = 0.25


def _plane_sum(block: np.ndarray) -> np.ndarray:
    """``(n, Z, Y, X)`` -> ``(n, Y, X)``: the planes of each frame summed (NaN if any is)."""
    return block.sum(axis=1, dtype=np.float64)


def _rigid_reference(
    sources: list[Source],
    limit: np.ndarray | None,
    reference: np.ndarray | None,
    chunk_frames: int,
    workers: int = 1,
) -> np.ndarray:
    """Return the rigid pass's image: ``reference`` summed over planes, or built from the data.

    Built: the mean of the first frames of the first sequence, aligned to
    their own mean twice, seeded with the frame most like that mean.

    Returns
    -------
    numpy.ndarray, shape (Y, X)
    """
    from sima_fast.registration import shift_image

    if reference is not None:
        return reference.sum(axis=0)
    first = []
    for _, block in _blocks(sources[0], chunk_frames):
        first.append(_plane_sum(block))
        if sum(b.shape[0] for b in first) >= _RIGID_REFERENCE_FRAMES:
            break
    stack = np.concatenate(first)[:_RIGID_REFERENCE_FRAMES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels no frame covers
        mean = np.nanmean(stack, axis=0)
    # seed with the frame most like the mean (the mean itself blurs, and
    # is ambiguous when the field alternates between two positions)
    flat = np.nan_to_num(stack - np.nanmean(stack, axis=(1, 2), keepdims=True))
    fixed = stack[int(np.argmax(flat.reshape(len(stack), -1) @ np.nan_to_num(mean).ravel()))]
    for _ in range(2):
        matcher = _RigidMatcher(fixed, limit, workers)
        if matcher.flat:
            break
        moved = [shift_image(f, tuple(d)) for f, d in zip(stack, matcher.shifts(stack))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # pixels no frame covers
            fixed = np.nanmean(moved, axis=0)
    return fixed


def _rigid_shifts(
    matcher: _RigidMatcher, source: Source, T: int, Z: int, chunk_frames: int
) -> np.ndarray:
    """``(T, Z, 2)`` int64 whole-pixel shifts of one source's frames (planes summed)."""
    shifts = np.zeros((T, 2), dtype=np.int64)
    if not matcher.flat:
        for t0, block in _blocks(source, chunk_frames):
            shifts[t0 : t0 + block.shape[0]] = matcher.shifts(_plane_sum(block))
    return np.repeat(shifts[:, None, :], Z, axis=1)


def _rigid_pass(
    sources: list[Source],
    T_list: list[int],
    frame_shape: tuple[int, int, int],
    limit: np.ndarray | None,
    reference: np.ndarray | None,
    chunk_frames: int,
    workers: int = 1,
) -> list[np.ndarray]:
    """Whole-pixel shift of every frame (planes summed) against one reference image.

    The reference is :func:`_rigid_reference`'s.

    Returns
    -------
    list of numpy.ndarray of int64, shape (T, Z, 2)
        Per sequence, ``d`` with ``fixed(p + d) ≈ frame(p)``.
    """
    fixed = _rigid_reference(sources, limit, reference, chunk_frames, workers)
    matcher = _RigidMatcher(fixed, limit, workers)
    return [
        _rigid_shifts(matcher, source, T, frame_shape[0], chunk_frames)
        for source, T in zip(sources, T_list)
    ]


class _RigidMatcher:
    """Whole-pixel cross-correlation of frames with one reference (Hann-tapered, FFT)."""

    def __init__(self, fixed: np.ndarray, limit: np.ndarray | None, workers: int = 1):
        from scipy import fft

        Y, X = fixed.shape
        self.window = np.outer(np.hanning(Y), np.hanning(X)).astype(np.float32)
        ref = _centred(fixed[None])[0]
        self.flat = not np.any(ref)
        self.spectrum = fft.rfft2(ref * self.window).astype(np.complex64)
        sy = np.fft.fftfreq(Y, 1.0 / Y).astype(np.int64)
        sx = np.fft.fftfreq(X, 1.0 / X).astype(np.int64)
        self.sy, self.sx = sy, sx
        allowed = np.ones((Y, X), dtype=bool)
        if limit is not None:
            allowed = (np.abs(sy) <= limit[0])[:, None] & (np.abs(sx) <= limit[1])[None, :]
        self.penalty = np.where(allowed, 0.0, -np.inf).astype(np.float32)
        self.limited = limit is not None
        self.workers = workers

    def shifts(self, frames: np.ndarray) -> np.ndarray:
        """``(n, Y, X)`` frames -> ``(n, 2)`` int64 ``d`` with ``fixed(p + d) ≈ frame(p)``."""
        from scipy import fft

        Y, X = self.window.shape
        a = _centred(frames)
        a *= self.window
        # c(d) = Σ_p fixed(p + d) frame(p); single precision is plenty for a peak
        spectrum = fft.rfft2(a, workers=self.workers)
        np.conjugate(spectrum, out=spectrum)
        spectrum *= self.spectrum
        surface = fft.irfft2(spectrum, s=(Y, X), workers=self.workers)
        if self.limited:
            surface += self.penalty
        best = np.argmax(surface.reshape(len(frames), -1), axis=1)
        iy, ix = np.divmod(best, X)
        out = np.stack([self.sy[iy], self.sx[ix]], axis=1)
        out[~np.any(a.reshape(len(frames), -1), axis=1)] = 0  # flat frames: no estimate
        return out


def _centred(frames: np.ndarray) -> np.ndarray:
    """Each frame minus its finite mean, NaN set to 0 (contributes nothing)."""
    a = np.array(frames, dtype=np.float32)
    ok = np.isfinite(a)
    a[~ok] = 0.0
    n = ok.sum(axis=(1, 2))
    mean = a.sum(axis=(1, 2), dtype=np.float64) / np.maximum(n, 1)
    a -= mean[:, None, None].astype(np.float32)
    a[~ok] = 0.0
    return a


def _sample_stretches(
    sequences: list, total: int, stretches: int, multiple: int
) -> tuple[list[Source], list[int]]:
    """Pick at most ``total`` frames: every sequence whole, or stretches spread over them.

    When all sequences hold at most ``total`` frames they are used whole;
    otherwise ``stretches`` runs of consecutive frames (a multiple of
    ``multiple`` long) start at evenly spaced frames of the concatenated
    sequences, moved back where a run would pass its sequence's end.

    Returns
    -------
    sources : list of callable
        ``source(chunk_frames)`` yielding ``(t0, block)``, ``t0`` from 0.
    lengths : list of int
        Frames of each source.
    """

    def source(seq: Any, start: int, stop: int) -> Source:
        def chunks(chunk_frames: int) -> Iterator[tuple[int, np.ndarray]]:
            for t, block in iter_estimation_chunks(seq, chunk_frames, start=start, stop=stop):
                yield t - start, block

        return chunks

    lengths = [len(s) for s in sequences]
    if sum(lengths) <= total:
        kept = [(s, n) for s, n in zip(sequences, lengths) if n > 0]
        return [source(s, 0, n) for s, n in kept], [n for _, n in kept]
    run = max(multiple, (total // stretches) // multiple * multiple)
    firsts = np.cumsum([0, *lengths])
    out, sizes, seen = [], [], set()
    for g in np.linspace(0, firsts[-1] - 1, stretches).round().astype(np.int64):
        i = int(np.searchsorted(firsts, g, side="right") - 1)
        t = int(g - firsts[i])
        start = min(t, max(0, lengths[i] - run))  # a whole stretch when the sequence allows
        start -= start % multiple  # whole units of `multiple` frames from the sequence's start
        stop = min(lengths[i], start + run)
        if (i, start) not in seen:
            seen.add((i, start))
            out.append(source(sequences[i], start, stop))
            sizes.append(stop - start)
    return out, sizes


class _RowwiseStrategy(MotionEstimationStrategy):
    """What :class:`HiddenMarkov2D` and :class:`HiddenMarkov3D` share.

    The arguments, their checks and the estimation: the subclass's
    ``_checked_limit`` and rigid first pass (``_rigid_first_pass``), then
    :func:`estimate_rowwise`. ``_DIMS`` is the number of displacement axes.

    Parameters
    ----------
    granularity, num_states_retained, max_displacement, n_processes, restarts, verbose, reference
        See :class:`HiddenMarkov2D`.
    """

    _DIMS = 2

    def __init__(
        self,
        granularity: Any = 2,
        num_states_retained: int = 50,
        max_displacement: Any = None,
        n_processes: int = 1,
        restarts: int | None = None,
        verbose: bool = True,
        *,
        reference: Any = None,
    ) -> None:
        self._granularity = parse_granularity(granularity)
        self._k = check_int("num_states_retained", num_states_retained, low=1, high=32767)
        self._max_displacement = check_max_displacement(max_displacement, ndim=self._DIMS)
        self._n_processes = check_int("n_processes", n_processes, low=1)
        if restarts is not None:
            restarts = check_int("restarts", restarts, low=0, high=1)
        self._restarts = restarts
        self._verbose = check_bool("verbose", verbose)
        self._reference = check_reference(reference)
        self._on_cluster = False  # set by estimate(client=...) while it runs

    def __repr__(self) -> str:
        """Return the constructor call that makes this strategy."""
        name, n = self._granularity
        limit = None if self._max_displacement is None else self._max_displacement.tolist()
        return (
            f"{type(self).__name__}(granularity=({name!r}, {n}), "
            f"num_states_retained={self._k}, "
            f"max_displacement={limit}, n_processes={self._n_processes}, "
            f"restarts={self._restarts}, verbose={self._verbose})"
        )

    def _estimate(self, dataset: Any) -> list:
        """Estimate every sequence's row displacements, ``(T, Z, Y, D)`` int32 each."""
        sequences = list(dataset.sequences)
        frame_shape = tuple(int(v) for v in sequences[0].shape[1:4])
        limit = self._checked_limit(frame_shape)
        if self._verbose:
            print(f"{type(self).__name__}: rigid first pass", file=sys.stderr)
        sources: list[Source] = [
            (lambda cf, s=seq: iter_estimation_chunks(s, cf)) for seq in sequences
        ]
        name, n = self._granularity
        chunk = _chunk_frames(frame_shape, n if name == "frame" else 1)
        T_list = [len(s) for s in sequences]
        rigid = self._rigid_first_pass(sources, T_list, frame_shape, limit, chunk)
        return estimate_rowwise(
            sources,
            rigid,
            granularity=self._granularity,
            num_states_retained=self._k,
            max_displacement=limit,
            restarts=self._restarts,
            reference=self._reference,
            n_threads=self._n_processes,
            verbose=self._verbose,
        )


class HiddenMarkov2D(_RowwiseStrategy):
    """Row-wise motion of line-scanned planes, by a hidden Markov model (SIMA's strategy).

    The displacement ``(dy, dx)`` of every scan unit (by default every row)
    is decoded with a beam Viterbi search along the raster, after a rigid
    first pass (phase correlation of each frame, planes summed, against a
    reference built from the first frames) that seeds the reference image,
    the noise model and the random-walk covariance (see
    :func:`estimate_rowwise` and docs/motion.md).

    Parameters
    ----------
    granularity : int, str or tuple, optional
        One displacement per row (``2`` or ``'row'``, the default), plane
        (``1``, ``'plane'``) or frame (``0``, ``'frame'``), or per ``n`` of
        them: ``('row', 8)``. ``'column'`` (3) is not supported.
    num_states_retained : int, optional
        States kept per unit by the beam search (default 50).
    max_displacement : int or (int, int), optional
        Largest spread of the displacements along ``[y, x]`` (also the
        largest shift the rigid pass looks for). Default: no limit beyond
        the frame.
    n_processes : int, optional
        Threads: sequences decoded at the same time (the kernels release
        the GIL) and the rigid pass's FFTs. Default 1.
    restarts : {None, 0, 1}, optional
        Start the hidden chain afresh at every frame (0) or plane (1), for
        data with long pauses between them; default None: once per sequence.
    verbose : bool, optional
        Print a line per pass on standard error (default True).
    reference : array_like, shape (Y, X) or (Z, Y, X), optional
        A fixed reference image in the data's units, beyond SIMA (see
        :func:`estimate_rowwise`). Default: built from the data.

    Raises
    ------
    ArgumentTypeError
        An argument of the wrong type.
    ValueError
        An unknown or unsupported granularity, ``num_states_retained < 1``,
        a negative ``max_displacement``, ``restarts`` other than None, 0
        or 1, ``n_processes < 1``.

    Examples
    --------
    >>> import numpy as np, sima_fast as sima
    >>> from sima_fast.motion.hmm import HiddenMarkov2D
    >>> rng = np.random.default_rng(0)
    >>> field = rng.poisson(20.0, (24, 28)).astype(np.uint16)
    >>> frames = np.stack([field[2 + (t % 2) :][:20, 2:26] for t in range(6)])
    >>> seq = sima.Sequence.create('ndarray', frames[:, None, :, :, None])
    >>> d = HiddenMarkov2D(verbose=False).estimate([seq])[0]
    >>> d.shape, d[:, 0, :, 0].min(axis=1).tolist()
    ((6, 1, 20, 2), [0, 1, 0, 1, 0, 1])
    """

    def estimate(
        self, dataset: Any, *, client: Any = None, progress: bool = False
    ) -> list[np.ndarray]:
        """Estimate the row displacements of every frame of a dataset.

        Without ``client`` every pass decodes all frames, each sequence as one
        hidden chain. With ``client`` the model (reference image, gain and
        offset, transitions, state grid) is fitted first, here, on a sample of
        at most :data:`RANGE_MODEL_FRAMES` frames (all of them when there are
        no more; otherwise :data:`RANGE_MODEL_STRETCHES` stretches of
        consecutive frames spread over the data), and then every time range
        is decoded by one Dask task against that fixed model: its chain
        starts afresh at the range's first frame (a prior around the frame's
        rigid estimate), so Viterbi paths do not cross range boundaries, the
        reference is the sample's, and the state grid is the sample's range
        widened by :data:`RANGE_GRID_MARGIN` (frames beyond it are clipped).

        Parameters
        ----------
        dataset : ImagingDataset or list of Sequence
            The data (every channel summed).
        client : dask.distributed.Client, optional
            Decode on this Dask cluster (see above).
        progress : bool, optional
            Show a progress bar (default False).

        Returns
        -------
        list of numpy.ndarray of int32, shape (T, Z, Y, 2)
            One per sequence, each component's minimum over all sequences 0.

        Raises
        ------
        ArgumentTypeError
            If ``dataset`` is neither an ImagingDataset nor a list of Sequence.
        ValueError
            An empty dataset, sequences of different frame shapes, a
            ``max_displacement`` or a reference that does not fit the frames.
        TypeError
            ``client`` is not a Dask client.
        """
        self._on_cluster = client is not None
        try:
            return super().estimate(dataset, client=client, progress=progress)
        finally:
            self._on_cluster = False

    def _checked_limit(self, frame_shape: tuple[int, int, int]) -> np.ndarray | None:
        Z, Y, X = frame_shape
        check_max_displacement_fits(self._max_displacement, (Y, X))
        check_reference_shape(self._reference, (Z, Y, X))
        if self._max_displacement is None:
            return None
        return np.floor(self._max_displacement).astype(np.int64)

    def _range_setup(self, dataset: Any) -> Any:
        """Fit the model on a sample of frames, for a cluster run (None without a client)."""
        if not self._on_cluster:
            return None
        sequences = list(dataset.sequences)
        Z, Y, X = (int(v) for v in sequences[0].shape[1:4])
        limit = self._checked_limit((Z, Y, X))
        name, n = self._granularity
        chunk = _chunk_frames((Z, Y, X), n if name == "frame" else 1)
        sources, lengths = _sample_stretches(
            sequences, RANGE_MODEL_FRAMES, RANGE_MODEL_STRETCHES, n if name == "frame" else 1
        )
        if self._verbose:
            print(
                f"HiddenMarkov2D: fitting the model on {sum(lengths)} frames "
                f"({len(sources)} stretches)",
                file=sys.stderr,
            )
        fixed = _rigid_reference(sources, limit, self._reference, chunk, self._n_processes)
        matcher = _RigidMatcher(fixed, limit, self._n_processes)
        rigid = [_rigid_shifts(matcher, src, T, Z, chunk) for src, T in zip(sources, lengths)]
        fit = _fit(
            sources,
            rigid,
            granularity=self._granularity,
            num_states_retained=self._k,
            max_displacement=limit,
            restarts=self._restarts,
            reference=self._reference,
            n_iterations=4,
            n_threads=self._n_processes,
            verbose=self._verbose,
            extra_margin=RANGE_GRID_MARGIN,
            final_update=True,
        )
        fit.row_states = None  # the sample's own states are not needed by the ranges
        fit.rigid_image = fixed
        return fit

    def _estimate_range(self, setup: Any, sequence: Any, t0: int, t1: int) -> np.ndarray:
        """Decode frames ``t0:t1`` against the fixed model: ``(t1 - t0, Z, Y, 2)`` int32."""
        Z, Y = setup.model.frame_shape[:2]
        T = t1 - t0
        if T == 0:
            return np.zeros((0, Z, Y, 2), dtype=np.int32)

        def source(chunk_frames: int) -> Iterator[tuple[int, np.ndarray]]:
            for t, block in iter_estimation_chunks(sequence, chunk_frames, start=t0, stop=t1):
                yield t - t0, block

        matcher = _RigidMatcher(setup.rigid_image, setup.limit, self._n_processes)
        rigid = _rigid_shifts(matcher, source, T, Z, setup.chunk_frames)
        rigid = np.clip(rigid, setup.model.lo, setup.model.hi)
        states = _decode(
            setup.model,
            source,
            T,
            rigid,
            setup.unit_rows,
            setup.restart_rows,
            setup.k,
            setup.chunk_frames,
        )
        return _absolute(*_row_states(states, setup.model, T, setup.unit_rows), model=setup.model)

    def _rigid_first_pass(
        self,
        sources: list[Source],
        T_list: list[int],
        frame_shape: tuple[int, int, int],
        limit: np.ndarray | None,
        chunk: int,
    ) -> list[np.ndarray]:
        """Whole-pixel ``(dy, dx)`` of every frame (planes summed).

        Returns
        -------
        list of numpy.ndarray of int64, shape (T, Z, 2)
            Per sequence.
        """
        return _rigid_pass(
            sources, T_list, frame_shape, limit, self._reference, chunk, self._n_processes
        )


#: Volumes of the first sequence that the first pass's reference volume is built from.
_Z_REFERENCE_FRAMES = 100


def _plane_correlations(volume: np.ndarray, canvas: np.ndarray, reach: int) -> np.ndarray:
    """Mean Pearson correlation of a volume's planes with the canvas at each plane offset.

    ``canvas`` has ``Z + 2 * reach`` planes (NaN where unknown); offset ``k``
    compares plane ``z`` with canvas plane ``z + k``. Offsets overlapping
    fewer than half of the planes score ``-inf``.

    Returns
    -------
    numpy.ndarray, shape (2 * reach + 1,)
    """
    Z = volume.shape[0]
    scores = np.full(2 * reach + 1, -np.inf)
    for k in range(2 * reach + 1):
        corr = []
        for z in range(Z):
            a, b = volume[z], canvas[z + k]
            ok = np.isfinite(a) & np.isfinite(b)
            if ok.sum() < 8:
                continue
            a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
            den = math.sqrt(float(a @ a) * float(b @ b))
            corr.append(float(a @ b) / den if den > 0 else 0.0)
        if 2 * len(corr) >= Z:
            scores[k] = float(np.mean(corr))
    return scores


def _rigid_planes(
    sources: list[Source],
    T_list: list[int],
    planar: list[np.ndarray],
    frame_shape: tuple[int, int, int],
    reach: int,
    reference: np.ndarray | None,
    chunk_frames: int,
) -> list[np.ndarray]:
    """Whole-plane offset ``dz`` of every volume, once its ``(dy, dx)`` is known.

    Each volume's planes are moved by its ``(dy, dx)``; a reference volume
    (``reference``, or built from the first volumes: seeded with the one
    most like their mean, then up to four rounds of placing each at its
    best offset and averaging) is compared with
    every volume at offsets ``-reach .. reach`` planes (mean correlation of
    the overlapping planes); the best offset wins.

    Returns
    -------
    list of numpy.ndarray of int64, shape (T,)
        Per sequence, ``dz`` with ``reference[z + dz] ≈ volume[z]``.
    """
    from sima_fast.registration import shift_image

    Z = frame_shape[0]
    if reach <= 0 or Z == 1:
        return [np.zeros(T, dtype=np.int64) for T in T_list]

    def aligned(block: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        out = np.empty(block.shape, dtype=np.float64)
        for i, (vol, d) in enumerate(zip(block, shifts)):
            for z in range(Z):
                out[i, z] = shift_image(vol[z].astype(np.float64), tuple(int(v) for v in d[z]))
        return out

    canvas = np.full((Z + 2 * reach, *frame_shape[1:]), np.nan)
    if reference is not None:
        canvas[reach : reach + Z] = reference
    else:
        sample = []
        for t0, block in _blocks(sources[0], chunk_frames):
            sample.append(aligned(block, planar[0][t0 : t0 + block.shape[0]]))
            if sum(b.shape[0] for b in sample) >= _Z_REFERENCE_FRAMES:
                break
        vols = np.concatenate(sample)[:_Z_REFERENCE_FRAMES]
        # seeded with the volume most like the mean (the mean of volumes at
        # different depths matches every one of them best at offset 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # pixels no volume covers
            mean = np.nanmean(vols, axis=0)
        flat = np.nan_to_num(vols - np.nanmean(vols, axis=(1, 2, 3), keepdims=True))
        seed = int(np.argmax(flat.reshape(len(vols), -1) @ np.nan_to_num(mean).ravel()))
        canvas[reach : reach + Z] = vols[seed]
        offsets = None
        for _ in range(4):
            new = np.array(
                [int(np.argmax(_plane_correlations(v, canvas, reach))) - reach for v in vols]
            )
            new -= int(np.median(new))  # keep the canvas centred
            new = np.clip(new, -reach, reach)
            if offsets is not None and np.array_equal(new, offsets):
                break
            offsets = new
            total = np.zeros(canvas.shape)
            count = np.zeros(canvas.shape)
            for vol, k in zip(vols, offsets):
                ok = np.isfinite(vol)
                total[reach + k : reach + k + Z] += np.where(ok, vol, 0.0)
                count[reach + k : reach + k + Z] += ok
            with np.errstate(invalid="ignore", divide="ignore"):
                canvas = np.where(count > 0, total / count, np.nan)
    out = []
    for source, T, shifts in zip(sources, T_list, planar):
        dz = np.zeros(T, dtype=np.int64)
        for t0, block in _blocks(source, chunk_frames):
            vols = aligned(block, shifts[t0 : t0 + block.shape[0]])
            for i, vol in enumerate(vols):
                dz[t0 + i] = int(np.argmax(_plane_correlations(vol, canvas, reach))) - reach
        out.append(dz)
    return out


class HiddenMarkov3D(_RowwiseStrategy):
    """Row-wise motion in three dimensions ``(dz, dy, dx)``, by a hidden Markov model.

    SIMA's 3-D strategy: as :class:`HiddenMarkov2D`, every scan unit (by
    default every row) of every plane has its own displacement, here with a
    plane offset ``dz`` as well, for volumes imaged plane by plane while the
    tissue moves in depth too. The first pass is a whole-pixel rigid
    registration of each volume (:class:`~sima_fast.motion.VolumeTranslation`);
    the reference volume, the noise model and the Gaussian random walk of the
    displacements are then fitted and the rows decoded by a beam Viterbi
    search over ``(dz, dy, dx)`` states, coarse to fine, as in 2-D (see
    :func:`estimate_rowwise` and docs/motion.md).

    Parameters
    ----------
    granularity : int, str or tuple, optional
        One displacement per row (``2`` or ``'row'``, the default), plane
        (``1``, ``'plane'``) or volume (``0``, ``'frame'``), or per ``n`` of
        them: ``('row', 8)``. ``'column'`` (3) is not supported.
    num_states_retained : int, optional
        States kept per unit by the beam search (default 50).
    max_displacement : int or (int, int, int), optional
        Largest spread of the displacements along ``[z, y, x]`` (also the
        largest shift the rigid pass looks for). Default: no limit beyond
        the volume.
    n_processes : int, optional
        Threads: sequences decoded at the same time (default 1).
    restarts : {None, 0, 1}, optional
        Start the hidden chain afresh at every volume (0) or plane (1);
        default None: once per sequence.
    verbose : bool, optional
        Print a line per pass on standard error (default True).
    reference : array_like, shape (Z, Y, X), optional
        A fixed reference volume in the data's units, beyond SIMA. Default:
        built from the data.

    Raises
    ------
    ArgumentTypeError
        An argument of the wrong type.
    ValueError
        An unknown or unsupported granularity, ``num_states_retained < 1``,
        a negative ``max_displacement``, ``restarts`` other than None, 0
        or 1, ``n_processes < 1``.

    Examples
    --------
    >>> import numpy as np, sima_fast as sima
    >>> from sima_fast.motion.hmm import HiddenMarkov3D
    >>> rng = np.random.default_rng(1)
    >>> volume = rng.poisson(30.0, (6, 22, 22)).astype(np.uint16)
    >>> frames = np.stack([volume[t % 2 : t % 2 + 4, 1:19, 1:19] for t in range(6)])
    >>> seq = sima.Sequence.create('ndarray', frames[..., None])
    >>> d = HiddenMarkov3D(verbose=False).estimate([seq])[0]
    >>> d.shape, d[:, 0, 0, 0].tolist()
    ((6, 4, 18, 3), [0, 1, 0, 1, 0, 1])
    """

    _DIMS = 3

    def _checked_limit(self, frame_shape: tuple[int, int, int]) -> np.ndarray | None:
        Z, Y, X = frame_shape
        check_max_displacement_fits(self._max_displacement, (Z, Y, X))
        check_reference_shape(self._reference, (Z, Y, X))
        if self._max_displacement is None:
            return None
        limit = np.floor(self._max_displacement).astype(np.int64)
        limit[0] = min(int(limit[0]), Z - 1)  # a single plane has no z spread
        return limit

    def _rigid_first_pass(
        self,
        sources: list[Source],
        T_list: list[int],
        frame_shape: tuple[int, int, int],
        limit: np.ndarray | None,
        chunk: int,
    ) -> list[np.ndarray]:
        """Whole-pixel ``(dz, dy, dx)`` of every volume.

        ``(dy, dx)`` by the 2-D rigid pass on the planes summed, then ``dz``
        against a reference volume built from the volumes so aligned.

        Returns
        -------
        list of numpy.ndarray of int64, shape (T, 3)
            Per sequence.
        """
        Z = frame_shape[0]
        planar = _rigid_pass(
            sources,
            T_list,
            frame_shape,
            None if limit is None else limit[1:],
            self._reference,
            chunk,
            self._n_processes,
        )
        z_reach = min(Z - 1, max(1, Z // 2)) if limit is None else int(limit[0])
        dz = _rigid_planes(sources, T_list, planar, frame_shape, z_reach, self._reference, chunk)
        return [np.concatenate([d[:, None], p[:, 0]], axis=1) for d, p in zip(dz, planar)]

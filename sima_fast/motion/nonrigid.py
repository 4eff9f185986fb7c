"""Non-rigid (piecewise-rigid) motion correction by block-wise phase correlation.

Brain tissue under a two-photon microscope does not move as one piece: the
field of view shears and bends a little while it translates, and fast
raster scanning adds distortions that differ across the frame. Piecewise
rigid registration (Pnevmatikakis & Giovannucci 2017; the non-rigid step of
Pachitariu et al. 2017) models that motion as a smooth field: the frame is
cut into overlapping blocks, each block is registered rigidly against the
same block of a reference image, and the block shifts are interpolated into
a per-pixel displacement field that is applied with interpolation.

:class:`NonRigid2D` does it per plane, in four steps:

1. **reference**: unless one is given, a reference image per plane is built
   from the data (about ``reference_frames`` frames spread over all
   sequences): their mean, refined by registering the frames to it and
   averaging them again, three times rigidly and once block-wise;
2. **rigid pre-alignment**: each frame is registered as a whole against
   the reference (phase correlation of the tapered frame, whitened
   cross-power spectrum smoothed by a Gaussian), so the blocks need only
   look for the small residual motion;
3. **blocks**: the blocks of each frame, followed to where the rigid shift
   moved them (:func:`sima_fast.kernels.warp.gather_blocks`: mean
   subtracted, tapered), are phase-correlated with the reference's blocks;
   all blocks of a time chunk go through one batched ``scipy.fft``; the
   peak of each correlation surface within ``max_block_displacement`` is
   refined to a fraction of a pixel by a three-point Gaussian fit;
4. **regularisation**: a block whose correlation peak does not stand out
   (its height over the highest value away from it is below
   ``snr_threshold``) takes its shift from the mean of its own and its
   neighbours' correlation surfaces, so featureless blocks follow their
   neighbours instead of jumping.

The result is one ``(dy, dx)`` per block, frame and plane: displacements
``(T, Z, Gy, Gx, 2)`` in the convention of
:meth:`sima_fast.Sequence.apply_displacements` (the content at ``q``
belongs at ``q + d``), on the grid of block centres the strategy records in
:attr:`NonRigid2D.grid`. The corrected sequences are
:class:`~sima_fast.sequence.WarpedSequence` views: the field is bilinear
between block centres and constant beyond them, and frames are resampled
bilinearly, NaN where nothing lands. See docs/motion.md.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from sima_fast._validate import ArgumentTypeError, check_int, check_real
from sima_fast.motion.base import (
    MotionEstimationStrategy,
    check_max_displacement,
    check_max_displacement_fits,
    check_reference,
    check_reference_shape,
    iter_estimation_chunks,
)

__all__ = ["NonRigid2D", "block_grid"]

#: Relative regulariser of the spectral whitening (``|F| + eps · max|F|``).
WHITEN_EPS = 1e-6

#: Floats held at once by the block buffers of one batch of frames.
BATCH_VALUES = 8 * 2**20


def block_grid(length: int, block: int, overlap: float) -> np.ndarray:
    """Return the first pixel of each block along one axis of a frame.

    Blocks of ``block`` pixels cover ``length`` pixels from edge to edge,
    evenly spaced, neighbours sharing at least ``overlap`` of a block.

    Parameters
    ----------
    length : int
        The frame's size along the axis.
    block : int
        The block's size, at most ``length``.
    overlap : float
        In ``[0, 1)``: the least fraction of a block its neighbour shares.

    Returns
    -------
    numpy.ndarray of int64
        Increasing starts, the first 0 and the last ``length - block``.

    Examples
    --------
    >>> block_grid(256, 128, 0.5).tolist()
    [0, 64, 128]
    >>> block_grid(100, 100, 0.5).tolist()
    [0]
    """
    if block >= length:
        return np.zeros(1, dtype=np.int64)
    step = block * (1.0 - overlap)
    count = math.ceil((length - block) / step - 1e-9) + 1
    return np.round(np.linspace(0, length - block, count)).astype(np.int64)


def _taper(shape: tuple[int, int], width: float) -> np.ndarray:
    """1 inside, a raised cosine falling towards 0 over ``width`` px at each edge."""
    axes = []
    for n in shape:
        w = min(float(width), n / 2.0)
        dist = np.minimum(np.arange(n) + 0.5, n - 0.5 - np.arange(n))
        axes.append(
            np.ones(n)
            if w <= 0
            else np.where(dist >= w, 1.0, 0.5 - 0.5 * np.cos(np.pi * np.minimum(dist / w, 1.0)))
        )
    return np.outer(axes[0], axes[1])


def _gaussian_spectrum(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Return the ``rfft2`` of a unit-sum Gaussian of ``sigma`` px (real, ``(Y, X//2+1)``)."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    return np.exp(-2.0 * np.pi**2 * sigma**2 * (ky**2 + kx**2))


def _refine(lo: np.ndarray, mid: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Vertex offset in [-0.5, 0.5] of three samples at -1, 0, 1 (Gaussian fit, else parabola)."""
    positive = (lo > 0) & (mid > 0) & (hi > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(positive, np.log(np.where(positive, lo, 1.0)), lo)
        b = np.where(positive, np.log(np.where(positive, mid, 1.0)), mid)
        c = np.where(positive, np.log(np.where(positive, hi, 1.0)), hi)
        den = a - 2.0 * b + c
        off = np.where(den < 0, 0.5 * (a - c) / np.where(den < 0, den, -1.0), 0.0)
    return np.clip(off, -0.5, 0.5)


def _windows(surfaces: np.ndarray, my: int, mx: int) -> np.ndarray:
    """Return the circular shifts ``-m-1 .. m+1`` of each surface as a centred window."""
    ny, nx = surfaces.shape[-2:]
    ys = np.arange(-my - 1, my + 2) % ny
    xs = np.arange(-mx - 1, mx + 2) % nx
    return surfaces[..., ys[:, None], xs[None, :]]


def _peaks(win: np.ndarray, my: int, mx: int, subpixel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Highest point of each centred window (its margin of one excluded) and its height.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(..., 2)`` shifts ``(dy, dx)`` and ``(...)`` peak heights.
    """
    lead = win.shape[:-2]
    inner = win[..., 1:-1, 1:-1].reshape(*lead, -1)
    k = np.argmax(inner, axis=-1)
    py, px = np.divmod(k, 2 * mx + 1)
    idx = np.indices(lead)
    cy, cx = py + 1, px + 1
    mid = win[(*idx, cy, cx)]
    dy = (py - my).astype(np.float64)
    dx = (px - mx).astype(np.float64)
    if subpixel:
        dy = dy + _refine(win[(*idx, cy - 1, cx)], mid, win[(*idx, cy + 1, cx)])
        dx = dx + _refine(win[(*idx, cy, cx - 1)], mid, win[(*idx, cy, cx + 1)])
    return np.stack([dy, dx], axis=-1), mid


def _prominence(win: np.ndarray, my: int, mx: int) -> np.ndarray:
    """Peak height over the highest value more than one pixel away from the peak."""
    inner = win[..., 1:-1, 1:-1]
    lead = inner.shape[:-2]
    flat = inner.reshape(*lead, -1)
    k = np.argmax(flat, axis=-1)
    py, px = np.divmod(k, 2 * mx + 1)
    peak = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    yy = np.arange(2 * my + 1)[:, None]
    xx = np.arange(2 * mx + 1)[None, :]
    near = (np.abs(yy - py[..., None, None]) <= 1) & (np.abs(xx - px[..., None, None]) <= 1)
    rest = np.where(near, -np.inf, inner).reshape(*lead, -1).max(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(rest > 0, peak / rest, np.inf)
    return np.where(np.isfinite(rest) | (peak > 0), ratio, np.inf)


def _neighbour_mean(win: np.ndarray) -> np.ndarray:
    """Average each block's window with its (up to 8) neighbours' on the block grid.

    Returns
    -------
    numpy.ndarray
        The same shape as ``win``, ``(n, Gy, Gx, h, w)``.
    """
    n, gy, gx = win.shape[:3]
    padded = np.zeros((n, gy + 2, gx + 2, *win.shape[3:]), dtype=win.dtype)
    padded[:, 1:-1, 1:-1] = win
    count = np.zeros((gy + 2, gx + 2))
    count[1:-1, 1:-1] = 1
    total = np.zeros_like(win)
    norm = np.zeros((gy, gx))
    for i in range(3):
        for j in range(3):
            total += padded[:, i : i + gy, j : j + gx]
            norm += count[i : i + gy, j : j + gx]
    return total / norm[None, :, :, None, None]


class _PlaneRegistrar:
    """Rigid and block-wise registration of frames of one plane against its reference."""

    def __init__(
        self,
        reference: np.ndarray,
        block: tuple[int, int],
        starts_y: np.ndarray,
        starts_x: np.ndarray,
        rigid_limit: tuple[int, int],
        block_limit: tuple[int, int],
        smooth_sigma: float,
        snr_threshold: float,
        workers: int,
    ) -> None:
        from sima_fast.kernels.warp import gather_blocks

        self.shape = reference.shape
        self.block = block
        self.grid_shape = (len(starts_y), len(starts_x))
        sy, sx = np.meshgrid(starts_y, starts_x, indexing="ij")
        self.starts = np.stack([sy.ravel(), sx.ravel()], axis=1).astype(np.int64)
        self.rigid_limit = rigid_limit
        self.block_limit = block_limit
        self.snr_threshold = snr_threshold
        self.workers = workers
        self.smooth_sigma = smooth_sigma
        self.frame_taper = _taper(self.shape, min(self.shape) / 8.0)
        self.block_taper = _taper(block, min(block) / 8.0)
        ref = reference[None].astype(np.float64)
        whole = gather_blocks(
            ref,
            np.zeros((1, 2), np.int64),
            np.zeros((1, 2), np.int64),
            self.frame_taper,
            np.empty((1, 1, *self.shape)),
        )
        self.frame_ref = self._reference_spectrum(whole[0])  # (1, Y, Xr)
        blocks = gather_blocks(
            ref,
            np.zeros((1, 2), np.int64),
            self.starts,
            self.block_taper,
            np.empty((1, len(self.starts), *block)),
        )
        self.block_ref = self._reference_spectrum(blocks[0])  # (B, By, Bxr)

    def _reference_spectrum(self, images: np.ndarray) -> np.ndarray:
        import scipy.fft

        spec = scipy.fft.rfft2(images, workers=self.workers)
        mag = np.abs(spec)
        floor = WHITEN_EPS * mag.max(axis=(-2, -1), keepdims=True) + 1e-300
        spec = spec / (mag + floor)
        if self.smooth_sigma > 0:
            spec *= _gaussian_spectrum(images.shape[-2:], self.smooth_sigma)
        return spec

    def _surfaces(self, prepared: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Whitened cross-power with the reference, back to correlation surfaces."""
        import scipy.fft

        spec = scipy.fft.rfft2(prepared, workers=self.workers)
        mag = np.abs(spec)
        floor = WHITEN_EPS * mag.max(axis=(-2, -1), keepdims=True) + 1e-300
        spec *= 1.0 / (mag + floor)
        np.conjugate(spec, out=spec)
        spec *= reference
        return scipy.fft.irfft2(spec, s=prepared.shape[-2:], workers=self.workers)

    def rigid(self, frames: np.ndarray, subpixel: bool) -> np.ndarray:
        """Whole-frame shifts ``(n, 2)``: ``reference(p) ≈ frame(p - d)``."""
        from sima_fast.kernels.warp import gather_blocks

        n = frames.shape[0]
        prepared = gather_blocks(
            frames,
            np.zeros((n, 2), np.int64),
            np.zeros((1, 2), np.int64),
            self.frame_taper,
            np.empty((n, 1, *self.shape), dtype=np.float32),
        )
        surfaces = self._surfaces(prepared[:, 0], self.frame_ref[0])
        my, mx = self.rigid_limit
        shifts, _ = _peaks(_windows(surfaces, my, mx), my, mx, subpixel)
        return shifts

    def register(self, frames: np.ndarray) -> np.ndarray:
        """Block shifts ``(n, Gy, Gx, 2)`` of frames ``(n, Y, X)``."""
        from sima_fast.kernels.warp import gather_blocks

        out = np.empty((frames.shape[0], *self.grid_shape, 2))
        per_frame = max(1, len(self.starts) * self.block[0] * self.block[1])
        batch = max(1, BATCH_VALUES // per_frame)
        for i in range(0, frames.shape[0], batch):
            part = frames[i : i + batch]
            n = part.shape[0]
            whole = np.round(self.rigid(part, subpixel=False)).astype(np.int64)
            blocks = gather_blocks(
                part,
                whole,
                self.starts,
                self.block_taper,
                np.empty((n, len(self.starts), *self.block), dtype=np.float32),
            )
            surfaces = self._surfaces(blocks, self.block_ref)
            my, mx = self.block_limit
            win = _windows(surfaces, my, mx).reshape(n, *self.grid_shape, 2 * my + 3, 2 * mx + 3)
            if self.snr_threshold > 0 and len(self.starts) > 1:
                weak = _prominence(win, my, mx) < self.snr_threshold
                if weak.any():
                    win = np.where(weak[..., None, None], _neighbour_mean(win), win)
            shifts, _ = _peaks(win, my, mx, subpixel=True)
            out[i : i + n] = shifts + whole[:, None, None, :]
        return out


class NonRigid2D(MotionEstimationStrategy):
    """Piecewise-rigid (non-rigid) motion correction by block-wise phase correlation.

    Each plane of each frame is pre-aligned rigidly to a reference, then cut
    into overlapping blocks, each registered against the reference's block by
    phase correlation to a fraction of a pixel; the block shifts, regularised
    where a block's correlation is weak, define a smooth displacement field
    that :meth:`corrected_sequence` applies by interpolation. See the module
    docstring for the method and docs/motion.md for the conventions.

    Parameters
    ----------
    block_size : int or (int, int), optional
        ``(rows, columns)`` of a block (default ``(128, 128)``); one number
        for square blocks. At least 8 and at most the frame.
    overlap : float, optional
        Least fraction of a block shared with each neighbour, in ``[0, 1)``
        (default 0.5). Blocks always cover the frame from edge to edge.
    max_displacement : float or (float, float), optional
        Largest ``|dy|``, ``|dx|`` of the rigid pre-alignment (px); default:
        up to half the frame.
    max_block_displacement : float or (float, float), optional
        Largest motion of a block relative to the rigid pre-alignment (px,
        default 5); below half the block size.
    reference : array_like, optional
        ``(Y, X)`` or ``(Z, Y, X)`` reference image. Default: built from the
        data (see the module docstring).
    smooth_sigma : float, optional
        Width (px) of the Gaussian that smooths the correlation surfaces
        (default 1.0; 0 for none). It damps the noisy high frequencies that
        whitening amplifies and shapes the peak for the sub-pixel fit.
    snr_threshold : float, optional
        A block whose peak is less than this many times the highest value
        away from it takes the mean of its neighbours' correlation surfaces
        with its own (default 1.2; 0 turns the regularisation off).
    reference_frames : int, optional
        Frames used to build the reference (default 100, spread evenly over
        all sequences).
    n_processes : int, optional
        Threads of the FFTs (``scipy.fft`` ``workers``), default 1.

    Attributes
    ----------
    grid : (numpy.ndarray, numpy.ndarray) or None
        ``(centres_y, centres_x)`` of the blocks of the last :meth:`estimate`,
        in the corrected frame's coordinates of the displacements it returned
        (None before the first estimate).
    reference_image : numpy.ndarray or None
        The ``(Z, Y, X)`` reference of the last estimate.

    Raises
    ------
    ArgumentTypeError
        A parameter of the wrong type (names it).
    ValueError
        A parameter out of its range (names it).

    Examples
    --------
    >>> import numpy as np, sima_fast as sima
    >>> from sima_fast.motion.nonrigid import NonRigid2D
    >>> rng = np.random.default_rng(0)
    >>> movie = np.repeat(rng.random((1, 1, 64, 64, 1)), 4, axis=0)
    >>> strategy = NonRigid2D(block_size=32, reference_frames=4)
    >>> d = strategy.estimate([sima.Sequence.create('ndarray', movie)])[0]
    >>> d.shape, [len(c) for c in strategy.grid]
    ((4, 1, 3, 3, 2), [3, 3])
    >>> bool(np.abs(d).max() < 0.05)  # a still movie does not move
    True
    """

    def __init__(
        self,
        block_size: Any = (128, 128),
        overlap: float = 0.5,
        max_displacement: Any = None,
        max_block_displacement: Any = 5.0,
        reference: Any = None,
        smooth_sigma: float = 1.0,
        snr_threshold: float = 1.2,
        reference_frames: int = 100,
        n_processes: int = 1,
    ) -> None:
        self.block_size = self._pair("block_size", block_size)
        self.overlap = check_real("overlap", overlap, low=0.0)
        if self.overlap >= 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
        self.max_displacement = check_max_displacement(max_displacement)
        if max_block_displacement is None:
            raise ArgumentTypeError("max_block_displacement must be a number or two numbers")
        try:
            self.max_block_displacement = check_max_displacement(max_block_displacement)
        except ArgumentTypeError as exc:
            raise ArgumentTypeError(
                str(exc).replace("max_displacement", "max_block_displacement")
            ) from None
        except ValueError as exc:
            raise ValueError(
                str(exc).replace("max_displacement", "max_block_displacement")
            ) from None
        self.reference = check_reference(reference)
        self.smooth_sigma = check_real("smooth_sigma", smooth_sigma, low=0.0)
        self.snr_threshold = check_real("snr_threshold", snr_threshold, low=0.0)
        self.reference_frames = check_int("reference_frames", reference_frames, low=1)
        self.n_processes = check_int("n_processes", n_processes, low=1)
        self.grid: tuple[np.ndarray, np.ndarray] | None = None
        self.reference_image: np.ndarray | None = None

    @staticmethod
    def _pair(name: str, value: Any) -> tuple[int, int]:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = (value, value)
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ArgumentTypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        return (check_int(name, value[0], low=8), check_int(name, value[1], low=8))

    def _check_frame(self, frame_shape: tuple[int, ...]) -> None:
        Y, X = frame_shape[1], frame_shape[2]
        by, bx = self.block_size
        if by > Y or bx > X:
            raise ValueError(
                f"block_size {self.block_size} is larger than the frame (Y, X) = {(Y, X)}"
            )
        check_max_displacement_fits(self.max_displacement, (Y, X))
        for lim, size, axis in zip(self.max_block_displacement, self.block_size, "yx"):
            if lim > size / 2 - 2:
                raise ValueError(
                    f"max_block_displacement {self.max_block_displacement.tolist()} is too large "
                    f"for block_size {self.block_size}: along {axis} it must be at most "
                    f"{size / 2 - 2:g} px (half a block, less a margin)"
                )
        check_reference_shape(self.reference, frame_shape)

    def _registrar(self, reference: np.ndarray) -> _PlaneRegistrar:
        Y, X = reference.shape
        by, bx = self.block_size
        if self.max_displacement is None:
            rigid = (Y // 2 - 1, X // 2 - 1)
        else:
            rigid = tuple(
                int(min(math.floor(m), n // 2 - 1)) for m, n in zip(self.max_displacement, (Y, X))
            )
        blim = tuple(math.ceil(m) for m in self.max_block_displacement)
        ref = np.where(np.isfinite(reference), reference, np.nanmean(reference))
        return _PlaneRegistrar(
            ref,
            (by, bx),
            block_grid(Y, by, self.overlap),
            block_grid(X, bx, self.overlap),
            (max(rigid[0], 0), max(rigid[1], 0)),
            blim,
            self.smooth_sigma,
            self.snr_threshold,
            self.n_processes,
        )

    def _sample(self, sequences: list) -> np.ndarray:
        """About ``reference_frames`` frames ``(n, Z, Y, X)`` spread over all sequences."""
        lengths = [len(s) for s in sequences]
        total = sum(lengths)
        picks = np.unique(np.linspace(0, total - 1, min(total, self.reference_frames)).round())
        parts = []
        first = 0
        for seq, n in zip(sequences, lengths):
            mine = [int(p - first) for p in picks if first <= p < first + n]
            first += n
            if mine:
                for _, block in iter_estimation_chunks(seq[mine]):
                    parts.append(block)
        return np.concatenate(parts).astype(np.float64)

    def _build_reference(self, frames: np.ndarray) -> np.ndarray:
        """Build one plane's reference from frames ``(n, Y, X)``: iterated registered means."""
        from sima_fast.kernels.warp import warp_field

        def mean(images: np.ndarray) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                m = np.nanmean(images, axis=0)
            finite = np.isfinite(m)
            return np.where(finite, m, m[finite].mean() if finite.any() else 0.0)

        ref = mean(frames)
        zero = np.zeros(1)
        stack = frames[:, None, :, :, None]
        for _ in range(3):
            shifts = self._registrar(ref).rigid(frames, subpixel=True)
            moved = warp_field(
                stack, shifts[:, None, None, None, :], zero, zero, np.empty(stack.shape)
            )
            ref = mean(moved[:, 0, :, :, 0])
        registrar = self._registrar(ref)
        blocks = registrar.register(frames)
        cy, cx = self._centres(registrar)
        moved = warp_field(stack, blocks[:, None], cy, cx, np.empty(stack.shape))
        return mean(moved[:, 0, :, :, 0])

    def _centres(self, registrar: _PlaneRegistrar) -> tuple[np.ndarray, np.ndarray]:
        Y, X = registrar.shape
        by, bx = self.block_size
        cy = block_grid(Y, by, self.overlap) + (by - 1) / 2.0
        cx = block_grid(X, bx, self.overlap) + (bx - 1) / 2.0
        return cy.astype(np.float64), cx.astype(np.float64)

    def _estimate(self, dataset: Any) -> list:
        """Block shifts ``(T, Z, Gy, Gx, 2)`` of every sequence (see :meth:`estimate`)."""
        sequences = list(dataset.sequences)
        frame_shape = sequences[0].shape[1:]
        self._check_frame(frame_shape)
        Z = frame_shape[0]
        if self.reference is not None:
            reference = self.reference
        else:
            sample = self._sample(sequences)
            reference = np.stack([self._build_reference(sample[:, z]) for z in range(Z)])
        registrars = [self._registrar(reference[z]) for z in range(Z)]
        cy, cx = self._centres(registrars[0])
        out = []
        for seq in sequences:
            shifts = np.empty((len(seq), Z, len(cy), len(cx), 2))
            for t0, block in iter_estimation_chunks(seq):
                for z in range(Z):
                    shifts[t0 : t0 + len(block), z] = registrars[z].register(block[:, z])
            out.append(shifts)
        # estimate() shifts each component so that its minimum is 0: the block
        # centres move with it into the corrected frame's coordinates
        flat = np.concatenate([d.reshape(-1, 2) for d in out])
        low = flat.min(axis=0) if flat.size else np.zeros(2)
        self.grid = (cy - low[0], cx - low[1])
        self.reference_image = reference
        return out

    def corrected_sequence(
        self, sequence: Any, displacements: np.ndarray, frame_shape: tuple[int, ...]
    ) -> Any:
        """Return the warped view of one sequence by its block displacements.

        Parameters
        ----------
        sequence : Sequence
            The uncorrected sequence (all channels).
        displacements : numpy.ndarray
            Its ``(T, Z, Gy, Gx, 2)`` block shifts from :meth:`estimate` (on
            :attr:`grid`).
        frame_shape : tuple of int
            ``(Z, Y, X)`` of the corrected frames.

        Returns
        -------
        WarpedSequence
            Bilinear field between the block centres, bilinear resampling,
            NaN where nothing lands.

        Raises
        ------
        ValueError
            No :meth:`estimate` has recorded a grid yet, or the displacements
            do not fit it.
        """
        from sima_fast.sequence import WarpedSequence

        if self.grid is None:
            raise ValueError(
                "corrected_sequence needs the block grid of an estimate: call estimate first"
            )
        d = np.ma.filled(np.ma.asarray(displacements, dtype=np.float64), 0.0)
        return WarpedSequence(
            sequence, d, grid=self.grid, frame_shape=tuple(int(s) for s in frame_shape)
        )

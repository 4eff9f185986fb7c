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
   sequences): the frame whose nearest neighbours are most alike averaged
   with those neighbours, refined by registering all the frames to it and
   averaging them again, three times rigidly and once block-wise, centred
   on the frames' positions (see :meth:`NonRigid2D._build_reference`);
   the time ranges of a cluster run (``estimate(client=...)``) are then
   registered against these fixed references;
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

#: Pixels (about) of the binned frames compared to seed the reference.
SIMILARITY_PIXELS = 16384


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
    # whole-pixel starts cannot be closer than one pixel: with a step below a pixel
    # (overlaps near 1 on small blocks) more blocks would repeat a start
    count = min(count, length - block + 1)
    return np.round(np.linspace(0, length - block, count)).astype(np.int64)


def _gaussian_spectrum(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Return the ``rfft2`` of a unit-sum Gaussian of ``sigma`` px (real, ``(Y, X//2+1)``)."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    return np.exp(-2.0 * np.pi**2 * sigma**2 * (ky**2 + kx**2))


def _windows(surfaces: np.ndarray, my: int, mx: int) -> np.ndarray:
    """Return the circular shifts ``-m-1 .. m+1`` of each surface, still circular.

    Index ``i`` of the result is the shift ``i`` for ``i <= m + 1`` and
    ``i - (2m + 3)`` beyond, the layout :func:`sima_fast.kernels.motion.find_peaks`
    reads; a peak within ``±m`` has both its neighbours in the window.

    Returns
    -------
    numpy.ndarray
        ``(..., 2 my + 3, 2 mx + 3)``.
    """
    ny, nx = surfaces.shape[-2:]
    ys = np.r_[0 : my + 2, -my - 1 : 0] % ny
    xs = np.r_[0 : mx + 2, -mx - 1 : 0] % nx
    return surfaces[..., ys[:, None], xs[None, :]]


def _prominence(win: np.ndarray, my: int, mx: int) -> np.ndarray:
    """Peak height over the highest value more than one pixel away from it (within ``±m``)."""
    h, w = win.shape[-2:]
    sy = np.where(np.arange(h) > h // 2, np.arange(h) - h, np.arange(h))
    sx = np.where(np.arange(w) > w // 2, np.arange(w) - w, np.arange(w))
    allowed = (np.abs(sy)[:, None] <= my) & (np.abs(sx)[None, :] <= mx)
    inner = np.where(allowed, win, -np.inf)
    lead = win.shape[:-2]
    flat = inner.reshape(*lead, -1)
    k = np.argmax(flat, axis=-1)
    py, px = np.divmod(k, w)
    peak = np.take_along_axis(flat, k[..., None], axis=-1)[..., 0]
    dy = np.abs(sy[:, None] - sy[py][..., None, None])
    dx = np.abs(sx[None, :] - sx[px][..., None, None])
    near = (dy <= 1) & (dx <= 1)
    rest = np.where(near, -np.inf, inner).reshape(*lead, -1).max(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(rest > 0, peak / rest, np.inf)
    return ratio


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
    return total / norm[None, :, :, None, None].astype(win.dtype)


def _finite_mean(images: np.ndarray) -> np.ndarray:
    """Mean over the first axis, NaN ignored; pixels never finite get the image's mean."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(images, axis=0)
    finite = np.isfinite(m)
    return np.where(finite, m, m[finite].mean() if finite.any() else 0.0)


def _most_alike(frames: np.ndarray) -> tuple[int, np.ndarray]:
    """Find the frame whose nearest neighbours are most alike, and those neighbours.

    Frames ``(n, Y, X)``, binned to about :data:`SIMILARITY_PIXELS` pixels,
    are compared by the Pearson correlation of their finite pixels (NaN
    read as the frame's mean, a bin with a NaN is NaN); each frame's score is the
    mean correlation with its ``k = clip(n // 5, 1, 10)`` best matches
    (itself included).

    Returns
    -------
    centre : int
        Index of the chosen frame.
    neighbours : numpy.ndarray of int
        Indices of its ``k`` best matches, ``centre`` first.
    """
    n, Y, X = frames.shape
    # compared on frames binned to at most about SIMILARITY_PIXELS pixels: cheap, and the
    # neighbours are registered to the chosen frame before they are averaged anyway
    f = max(1, math.isqrt(Y * X // SIMILARITY_PIXELS))
    binned = frames[:, : Y - Y % f, : X - X % f].astype(np.float32)
    binned = binned.reshape(n, Y // f, f, X // f, f).mean(axis=(2, 4))
    flat = binned.reshape(n, -1)
    finite = np.isfinite(flat)
    counts = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    means = np.where(finite, flat, 0.0).sum(axis=1, keepdims=True) / counts
    flat = np.where(finite, flat - means, 0.0)
    norm = np.sqrt((flat * flat).sum(axis=1))
    norm[norm == 0] = 1.0
    flat /= norm[:, None]
    # einsum's own loops, not BLAS: a BLAS product of these sizes can stall for seconds
    # when its threads compete with other processes for the cores
    cc = np.einsum("ik,jk->ij", flat, flat)
    k = max(1, min(10, n // 5))
    top = np.argsort(-cc, axis=1, kind="stable")[:, :k]
    score = np.take_along_axis(cc, top, axis=1).mean(axis=1)
    centre = int(np.argmax(score))
    rest = [int(i) for i in top[centre] if i != centre]
    return centre, np.array([centre, *rest[: k - 1]], dtype=np.int64)


class _PlaneRegistrar:
    """Rigid and block-wise registration of frames of one plane against its reference."""

    def __init__(
        self,
        reference: np.ndarray,
        block: tuple[int, int],
        starts_y: np.ndarray,
        starts_x: np.ndarray,
        rigid_limit: np.ndarray | None,
        block_limit: tuple[int, int],
        smooth_sigma: float,
        snr_threshold: float,
        workers: int,
    ) -> None:
        from sima_fast.kernels.motion import edge_taper

        self.shape = reference.shape
        self.block = block
        self.grid_shape = (len(starts_y), len(starts_x))
        sy, sx = np.meshgrid(starts_y, starts_x, indexing="ij")
        self.starts = np.stack([sy.ravel(), sx.ravel()], axis=1).astype(np.int64)
        self.block_limit = block_limit
        self.snr_threshold = snr_threshold
        self.workers = workers
        self.rigid_limit = (
            (np.inf, np.inf) if rigid_limit is None else tuple(float(v) for v in rigid_limit)
        )
        self.frame_taper = edge_taper(self.shape, min(self.shape) / 8.0)
        self.frame_ref = self._spectrum(reference, (0, 0), self.shape, smooth_sigma)
        self.block_taper = edge_taper(block, min(block) / 8.0)
        self.block_ref = self._spectrum(reference, self.starts, block, smooth_sigma)

    def _spectrum(
        self, reference: np.ndarray, starts: Any, block: tuple[int, int], smooth_sigma: float
    ) -> np.ndarray:
        """Whitened, smoothed spectra ``(B, By, Bx // 2 + 1)`` of the reference's blocks."""
        import scipy.fft

        from sima_fast.kernels.warp import gather_blocks

        starts = np.asarray(starts, dtype=np.int64).reshape(-1, 2)
        taper = self.frame_taper if block == self.shape else self.block_taper
        blocks = gather_blocks(
            reference[None].astype(np.float64),
            np.zeros((1, 2), np.int64),
            starts,
            taper,
            np.empty((1, len(starts), *block)),
        )[0]
        spec = scipy.fft.rfft2(blocks, workers=self.workers)
        mag = np.abs(spec)
        spec /= mag + WHITEN_EPS * mag.max(axis=(-2, -1), keepdims=True) + 1e-300
        if smooth_sigma > 0:
            spec *= _gaussian_spectrum(block, smooth_sigma)
        return spec.astype(np.complex64)

    def _correlate(
        self,
        frames: np.ndarray,
        offsets: np.ndarray,
        starts: np.ndarray,
        taper: np.ndarray,
        reference: np.ndarray,
        window: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Correlation surfaces of the frames' blocks with the reference's.

        Returns
        -------
        numpy.ndarray
            ``(n, B, By, Bx)``; with ``window=(my, mx)`` only the circular
            shifts ``-m-1 .. m+1`` (as :func:`_windows` lays them out), the
            inverse transform done for those rows alone.
        """
        import scipy.fft

        from sima_fast.kernels.warp import block_cross_power, gather_blocks

        n = frames.shape[0]
        blocks = gather_blocks(
            frames, offsets, starts, taper, np.empty((n, len(starts), *taper.shape), np.float32)
        )
        spectra = scipy.fft.rfft2(blocks, workers=self.workers)
        block_cross_power(spectra, reference, WHITEN_EPS)
        by, bx = taper.shape
        if window is None:
            return scipy.fft.irfft2(spectra, s=(by, bx), workers=self.workers)
        my, mx = window
        ys = np.r_[0 : my + 2, -my - 1 : 0] % by
        xs = np.r_[0 : mx + 2, -mx - 1 : 0] % bx
        columns = scipy.fft.ifft(spectra, axis=-2, workers=self.workers)[..., ys, :]
        rows = scipy.fft.irfft(columns, n=bx, axis=-1, workers=self.workers)
        return rows[..., xs]

    def rigid(self, frames: np.ndarray, subpixel: bool = False) -> np.ndarray:
        """Shifts ``(n, 2)`` of whole frames: ``reference(p) ≈ frame(p - d)``.

        Returns
        -------
        numpy.ndarray
            ``int64`` whole pixels, or ``float64`` with ``subpixel``.
        """
        from sima_fast.kernels.motion import find_peaks

        n = frames.shape[0]
        zeros = np.zeros((n, 2), np.int64)
        surfaces = self._correlate(frames, zeros, zeros[:1], self.frame_taper, self.frame_ref)
        peaks = np.empty((n, 3))
        find_peaks(surfaces[:, 0], self.rigid_limit[0], self.rigid_limit[1], subpixel, peaks)
        shifts = np.nan_to_num(peaks[:, :2])
        return shifts if subpixel else shifts.astype(np.int64)

    def register(self, frames: np.ndarray) -> np.ndarray:
        """Block shifts ``(n, Gy, Gx, 2)`` of frames ``(n, Y, X)``."""
        from sima_fast.kernels.motion import find_peaks

        out = np.empty((frames.shape[0], *self.grid_shape, 2))
        nb = len(self.starts)
        batch = max(1, BATCH_VALUES // max(1, nb * self.block[0] * self.block[1]))
        my, mx = self.block_limit
        for i in range(0, frames.shape[0], batch):
            part = frames[i : i + batch]
            n = part.shape[0]
            whole = self.rigid(part)
            win = self._correlate(
                part, whole, self.starts, self.block_taper, self.block_ref, (my, mx)
            ).reshape(n, *self.grid_shape, 2 * my + 3, 2 * mx + 3)
            if self.snr_threshold > 0 and nb > 1:
                weak = _prominence(win, my, mx) < self.snr_threshold
                if weak.any():
                    win = np.where(weak[..., None, None], _neighbour_mean(win), win)
            peaks = np.empty((n * nb, 3))
            find_peaks(
                np.ascontiguousarray(win.reshape(n * nb, 2 * my + 3, 2 * mx + 3)),
                float(my),
                float(mx),
                True,
                peaks,
            )
            shifts = np.nan_to_num(peaks[:, :2]).reshape(n, *self.grid_shape, 2)
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
        (default 0.25: 5 × 5 blocks of 128 px on a 512 × 512 frame). Blocks
        always cover the frame from edge to edge.
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
    interpolation : {'cubic', 'linear', 'nearest'}, optional
        How :meth:`corrected_sequence` resamples the frames (the warped
        view's interpolation): Keys' cubic convolution by default (the
        sharpest mean image), bilinear, or the nearest pixel.

    Attributes
    ----------
    grid : (numpy.ndarray, numpy.ndarray) or None
        ``(centres_y, centres_x)`` of the blocks of the last :meth:`estimate`,
        in the corrected frame's coordinates of the displacements it returned
        (None before the first estimate).
    block_centres : (numpy.ndarray, numpy.ndarray) or None
        The same centres in the reference image's coordinates (where the
        blocks were cut; ``grid`` minus the normalisation offset), for
        scoring block shifts against a known field.
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
        overlap: float = 0.25,
        max_displacement: Any = None,
        max_block_displacement: Any = 5.0,
        reference: Any = None,
        smooth_sigma: float = 1.0,
        snr_threshold: float = 1.2,
        reference_frames: int = 100,
        n_processes: int = 1,
        interpolation: str = "cubic",
    ) -> None:
        from sima_fast.sequence.warped import check_interpolation

        self._interpolation = check_interpolation(interpolation)
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
        self.block_centres: tuple[np.ndarray, np.ndarray] | None = None
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
        ref = np.where(np.isfinite(reference), reference, np.nanmean(reference))
        return _PlaneRegistrar(
            ref,
            (by, bx),
            block_grid(Y, by, self.overlap),
            block_grid(X, bx, self.overlap),
            self.max_displacement,
            tuple(math.ceil(m) for m in self.max_block_displacement),
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
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _build_reference(self, frames: np.ndarray) -> np.ndarray:
        """Build one plane's reference from frames ``(n, Y, X)``: iterated registered means.

        The first reference is the frame whose nearest neighbours (by
        correlation) are most alike, averaged with those neighbours once they
        are registered to it: the plain mean of frames that move by more than
        a cell's size is a blur whose whitened spectrum is mostly the frames'
        own noise, so every frame would register to it at zero. Each later
        pass registers all frames, moves them by their shifts less the
        median shift (the last rigid pass and the block-wise pass: less the
        middle of the shifts' range, so that ``max_displacement``, which
        counts from the reference, reaches the frames at both ends) and
        averages them.

        Returns
        -------
        numpy.ndarray, float32 or float64 (Y, X)
            Finite everywhere.
        """
        from sima_fast.kernels.warp import warp_field

        zero = np.zeros(1)
        stack = frames[:, None, :, :, None]

        def moved_mean(index: np.ndarray, shifts: np.ndarray, cy: Any, cx: Any) -> np.ndarray:
            part = np.ascontiguousarray(stack[index])
            moved = warp_field(part, shifts[:, None], cy, cx, np.empty(part.shape, np.float32))
            return _finite_mean(moved[:, 0, :, :, 0])

        everyone = np.arange(len(frames))
        centre, neighbours = _most_alike(frames)
        shifts = self._registrar(_finite_mean(frames[[centre]])).rigid(
            frames[neighbours], subpixel=True
        )
        ref = moved_mean(neighbours, shifts[:, None, None, :], zero, zero)
        for last in (False, False, True):
            shifts = self._registrar(ref).rigid(frames, subpixel=True)
            if last:  # the middle of the frames' positions: max_displacement reaches both ends
                shifts -= (shifts.min(axis=0) + shifts.max(axis=0)) / 2.0
            else:  # robust while the reference may still mislead some frames
                shifts -= np.median(shifts, axis=0)
            ref = moved_mean(everyone, shifts[:, None, None, :], zero, zero)
        registrar = self._registrar(ref)
        blocks = registrar.register(frames)
        means = blocks.reshape(len(frames), -1, 2).mean(axis=1)
        blocks -= (means.min(axis=0) + means.max(axis=0)) / 2.0
        cy, cx = self._centres(registrar.shape)
        return moved_mean(everyone, blocks, cy, cx)

    def _centres(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        Y, X = shape[-2:]
        by, bx = self.block_size
        cy = block_grid(Y, by, self.overlap) + (by - 1) / 2.0
        cx = block_grid(X, bx, self.overlap) + (bx - 1) / 2.0
        return cy.astype(np.float64), cx.astype(np.float64)

    def _range_setup(self, dataset: Any) -> np.ndarray:
        """Check the frames and fix every plane's reference ``(Z, Y, X)`` (given or built)."""
        sequences = list(dataset.sequences)
        frame_shape = sequences[0].shape[1:]
        self._check_frame(frame_shape)
        if self.reference is not None:
            return np.asarray(self.reference, dtype=np.float64)
        sample = self._sample(sequences)
        return np.stack([self._build_reference(sample[:, z]) for z in range(frame_shape[0])])

    def _estimate_range(self, setup: Any, sequence: Any, t0: int, t1: int) -> np.ndarray:
        """Block shifts ``(t1 - t0, Z, Gy, Gx, 2)`` of frames ``t0:t1`` against the references."""
        registrars = [self._registrar(plane) for plane in setup]
        gy, gx = registrars[0].grid_shape
        shifts = np.empty((t1 - t0, len(registrars), gy, gx, 2))
        for t, block in iter_estimation_chunks(sequence, start=t0, stop=t1):
            for z, registrar in enumerate(registrars):
                shifts[t - t0 : t - t0 + len(block), z] = registrar.register(block[:, z])
        return shifts

    def _finish_ranges(self, dataset: Any, setup: Any, displacements: list) -> list:
        """Record the grid (moved as :meth:`estimate` will normalise) and the reference."""
        cy, cx = self._centres(setup.shape)
        # estimate() shifts each component so that its minimum is 0: the block
        # centres move with it into the corrected frame's coordinates
        flat = np.concatenate([d.reshape(-1, 2) for d in displacements])
        low = flat.min(axis=0) if flat.size else np.zeros(2)
        self.grid = (cy - low[0], cx - low[1])
        self.block_centres = (cy, cx)
        self.reference_image = setup
        return displacements

    def _estimate(self, dataset: Any) -> list:
        """Block shifts ``(T, Z, Gy, Gx, 2)`` of every sequence (see :meth:`estimate`)."""
        setup = self._range_setup(dataset)
        parts = [self._estimate_range(setup, s, 0, len(s)) for s in dataset.sequences]
        return self._finish_ranges(dataset, setup, parts)

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
            Bilinear field between the block centres, resampled by the
            strategy's interpolation, NaN where nothing lands.

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
            sequence,
            d,
            grid=self.grid,
            frame_shape=tuple(int(s) for s in frame_shape),
            interpolation=self._interpolation,
        )

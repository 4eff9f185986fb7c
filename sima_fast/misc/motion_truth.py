"""Ground truth of simulated motion, and scores of motion estimates against it.

:func:`sima_fast.misc.simulate_movie` with ``motion='rigid'``, ``'nonrigid'``
or ``'rowwise'`` returns a :class:`MotionTruth` (``SimulatedMovie.motion``)
that says exactly where every observed pixel came from. The functions here
compare an estimate with it:

- :func:`rigid_rms_error`: RMS error of per-frame (per-plane) translations;
- :func:`row_exact_fraction`: fraction of row displacements exactly right
  (row-wise, line-scan motion, as estimated by a hidden Markov model);
- :func:`block_rms_error`: RMS error of piecewise-rigid block shifts against
  the true field averaged over each block;
- :func:`gradient_energy` and :func:`mean_image_sharpness`: how sharp the mean
  image of a corrected movie is (motion blurs it).

**Coordinates and sign.** Positions are array indices: the value
``frame[i, j]`` sits at ``(y, x) = (i, j)``. Displacements ``d = (dy, dx)``
follow ``Sequence.apply_displacements``: the observed pixel at ``p`` shows the
scene point ``p + d`` and lands at ``p + d`` in the corrected frame; in
other words ``corrected(q) = observed(q − d)``. With ``T`` frames, ``Z``
planes, a scene of ``Y × X`` pixels and observed frames of ``Yo × Xo``
pixels:

- rigid: ``d[t, z]`` of shape ``(T, Z, 2)``, float:
  ``observed[t, z, i, j] = scene_t,z(i + dy, j + dx)``;
- row-wise: ``d[t, z, i]`` of shape ``(T, Z, Yo, 2)``, integer, indexed by
  the observed row ``i`` (each row is scanned at its own time):
  ``observed[t, z, i, j] = scene[t, z, i + dy_i, j + dx_i]``;
- non-rigid: a smooth field ``d(t, z, q)`` over the scene (corrected) grid,
  shape ``(T, Z, Y, X, 2)`` from :meth:`MotionTruth.field`, in the pull
  convention of warped views: ``corrected(q) = observed(q − d(q))``, so the
  observed pixel ``p`` shows the scene point ``q`` solving ``q − d(q) = p``.
  For a translation the two readings coincide.

All displacements are ``>= 0`` (the observed frame is a window of the scene),
so the integer ones can be passed to ``apply_displacements`` with
``frame_shape=(Z, Y, X)`` to put the observed frames back onto the scene.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np

from sima_fast._validate import check_int

__all__ = [
    "MOTION_KINDS",
    "MotionTruth",
    "block_rms_error",
    "gradient_energy",
    "mean_image_sharpness",
    "rigid_rms_error",
    "row_exact_fraction",
]

#: The kinds of simulated motion (``simulate_movie(motion=...)``).
MOTION_KINDS = ("rigid", "nonrigid", "rowwise")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class MotionTruth:
    """The true motion of a simulated movie (see the module docstring for the sign).

    The non-rigid field is stored compactly and evaluated on demand:
    ``d(t, z, y, x) = translation[t, z] + Σ_k weights[t, z, k] ·
    cos(2π (ky_k·y + kx_k·x) + phase_k)``.

    Attributes
    ----------
    kind : {'rigid', 'nonrigid', 'rowwise'}
        The kind of motion.
    scene_shape : tuple of int
        ``(Z, Y, X)`` of the motion-free scene (``SimulatedMovie.movie``).
    observed_shape : tuple of int
        ``(Z, Yo, Xo)`` of the observed frames (``SimulatedMovie.observed``).
    displacements : numpy.ndarray
        Rigid: float64 ``(T, Z, 2)``; row-wise: int64 ``(T, Z, Yo, 2)``;
        non-rigid: float64 ``(T, Z, 2)``, the translation part of the field.
    wavevectors : numpy.ndarray of float64, shape (K, 2)
        ``(ky, kx)`` in cycles per pixel of the field's components (K = 0
        unless non-rigid).
    phases : numpy.ndarray of float64, shape (K,)
        Phase of each component, in radians.
    weights : numpy.ndarray of float64, shape (T, Z, K, 2)
        Per-frame, per-plane ``(dy, dx)`` amplitude of each component.
    """

    kind: str
    scene_shape: tuple[int, int, int]
    observed_shape: tuple[int, int, int]
    displacements: np.ndarray
    wavevectors: np.ndarray
    phases: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        """Check that the arrays agree with each other."""
        if self.kind not in MOTION_KINDS:
            raise ValueError(f"kind must be one of {MOTION_KINDS}, got {self.kind!r}")
        t, z = self.displacements.shape[:2]
        expected = (t, z, self.observed_shape[1], 2) if self.kind == "rowwise" else (t, z, 2)
        if self.displacements.shape != expected or z != self.scene_shape[0]:
            raise ValueError(
                f"displacements of shape {self.displacements.shape} do not fit a "
                f"{self.kind} truth for scene {self.scene_shape}"
            )
        k = self.wavevectors.shape[0]
        if self.wavevectors.shape != (k, 2) or self.phases.shape != (k,):
            raise ValueError("wavevectors must be (K, 2) and phases (K,)")
        if self.weights.shape != (t, z, k, 2):
            raise ValueError(f"weights must have shape {(t, z, k, 2)}, got {self.weights.shape}")

    @property
    def num_frames(self) -> int:
        """Number of frames ``T``."""
        return int(self.displacements.shape[0])

    def __repr__(self) -> str:
        """Return ``<MotionTruth: kind, frames, scene -> observed>``."""
        return (
            f"<MotionTruth: kind={self.kind!r}, frames={self.num_frames}, "
            f"scene={self.scene_shape}, observed={self.observed_shape}>"
        )

    def evaluate(self, t: Any, z: Any, y: Any, x: Any) -> np.ndarray:
        """Return the displacement at scene points (pull convention of the module).

        Parameters
        ----------
        t, z : int or array_like of int
            Frame and plane indices (broadcast with ``y`` and ``x``).
        y, x : float or array_like of float
            Positions in the scene (corrected) frame; any real values.

        Returns
        -------
        numpy.ndarray of float64, shape (broadcast shape, 2)
            ``(dy, dx)`` at each point.

        Raises
        ------
        ValueError
            For a row-wise truth: its displacements belong to observed rows,
            not to scene points (use ``displacements``).
        """
        self._pointwise()
        t, z, y, x = np.broadcast_arrays(
            np.asarray(t), np.asarray(z), np.asarray(y, dtype=np.float64), np.asarray(x)
        )
        out = self.displacements[t, z].astype(np.float64)
        for k, (ky, kx) in enumerate(self.wavevectors):
            wave = np.cos(2.0 * np.pi * (ky * y + kx * x) + self.phases[k])
            out += self.weights[t, z, k] * wave[..., None]
        return out

    def jacobian(self, t: Any, z: Any, y: Any, x: Any) -> np.ndarray:
        """Return the spatial derivatives of the displacement at scene points.

        Parameters
        ----------
        t, z, y, x : array_like
            As for :meth:`evaluate`.

        Returns
        -------
        numpy.ndarray of float64, shape (broadcast shape, 2, 2)
            ``J[..., a, b] = ∂d_a / ∂q_b`` with ``a, b`` in ``(y, x)``; zero
            for a translation.

        Raises
        ------
        ValueError
            For a row-wise truth (see :meth:`evaluate`).
        """
        self._pointwise()
        t, z, y, x = np.broadcast_arrays(
            np.asarray(t), np.asarray(z), np.asarray(y, dtype=np.float64), np.asarray(x)
        )
        out = np.zeros((*y.shape, 2, 2))
        for k, (ky, kx) in enumerate(self.wavevectors):
            slope = -2.0 * np.pi * np.sin(2.0 * np.pi * (ky * y + kx * x) + self.phases[k])
            w = self.weights[t, z, k]
            out[..., :, 0] += w * (slope * ky)[..., None]
            out[..., :, 1] += w * (slope * kx)[..., None]
        return out

    def field(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Return the per-pixel displacement field over the scene grid.

        Parameters
        ----------
        start, stop : int, optional
            Frame range, as in ``range(start, stop)``; ``stop`` defaults to
            the number of frames. The field takes ``16·Z·Y·X`` bytes per
            frame, so ask for long movies in pieces.

        Returns
        -------
        numpy.ndarray of float64, shape (stop - start, Z, Y, X, 2)
            ``d(t, z, q)``: ``corrected(q) = observed(q − d(q))``.

        Raises
        ------
        ValueError
            For a bad frame range, or a row-wise truth (see :meth:`evaluate`).
        """
        start, stop = self._frames(start, stop)
        self._pointwise()
        _, ny, nx = self.scene_shape
        y = np.arange(ny, dtype=np.float64)[:, None]
        x = np.arange(nx, dtype=np.float64)[None, :]
        return self._combine(self._basis(y, x), start, stop)

    def block_means(
        self,
        centres_y: Any,
        centres_x: Any,
        block_shape: tuple[int, int] | None = None,
        offset: tuple[float, float] = (0.0, 0.0),
        start: int = 0,
        stop: int | None = None,
    ) -> np.ndarray:
        """Return the true displacement averaged over blocks (block-wise scoring).

        A block centred at ``(cy, cx)`` of shape ``(h, w)`` covers the pixel
        positions ``cy − (h − 1)/2 + (0 … h − 1)`` by ``cx − (w − 1)/2 + (0 …
        w − 1)``. ``offset`` moves every position before evaluation and is
        subtracted from the result: it expresses the field in a corrected frame
        whose origin sits at ``offset`` in the scene (as a reference-based
        estimate's frame does), ``d'(u) = d(u + offset) − offset``.

        Parameters
        ----------
        centres_y, centres_x : array_like of float, 1-D
            Block centres along y (``Gy``) and x (``Gx``).
        block_shape : (int, int), optional
            ``(h, w)``; None evaluates the field at the centres only.
        offset : (float, float)
            ``(oy, ox)``, see above.
        start, stop : int, optional
            Frame range.

        Returns
        -------
        numpy.ndarray of float64, shape (stop - start, Z, Gy, Gx, 2)
            Mean ``(dy, dx)`` over each block.

        Raises
        ------
        ValueError
            For bad centres, block shape or frame range, or a row-wise truth.
        """
        start, stop = self._frames(start, stop)
        self._pointwise()
        cy = _vector("centres_y", centres_y)
        cx = _vector("centres_x", centres_x)
        oy, ox = (float(v) for v in offset)
        if block_shape is None:
            h = w = 1
        else:
            h, w = (check_int("block_shape", v, low=1) for v in block_shape)
        # The block mean of each component does not depend on time.
        y = (cy[:, None] + np.arange(h) - (h - 1) / 2.0 + oy)[:, None, :, None]
        x = (cx[:, None] + np.arange(w) - (w - 1) / 2.0 + ox)[None, :, None, :]
        basis = self._basis(y, x).mean(axis=(3, 4))
        return self._combine(basis, start, stop) - np.array([oy, ox])

    def _pointwise(self) -> None:
        if self.kind == "rowwise":
            raise ValueError(
                "a rowwise truth is defined per observed row: use MotionTruth.displacements"
            )

    def _basis(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Components ``cos(2π(ky·y + kx·x) + φ)``, shape ``(K, *broadcast(y, x))``."""
        shape = np.broadcast_shapes(np.shape(y), np.shape(x))
        out = np.empty((self.wavevectors.shape[0], *shape))
        for k, (ky, kx) in enumerate(self.wavevectors):
            out[k] = np.cos(2.0 * np.pi * (ky * y + kx * x) + self.phases[k])
        return out

    def _combine(self, basis: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Return ``translation + Σ_k weights_k · basis_k`` for frames ``start:stop``."""
        grid = basis.shape[1:]
        trans = self.displacements[start:stop].astype(np.float64)
        out = np.empty((stop - start, trans.shape[1], *grid, 2))
        out[...] = trans.reshape(trans.shape[0], trans.shape[1], *([1] * len(grid)), 2)
        if basis.shape[0]:
            flat = basis.reshape(basis.shape[0], -1)
            weights = self.weights[start:stop]
            for a in range(2):
                out[..., a] += (weights[..., a] @ flat).reshape(out.shape[:-1])
        return out

    def _frames(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = self.num_frames if stop is None else stop
        start = check_int("start", start)
        stop = check_int("stop", stop)
        if not 0 <= start <= stop <= self.num_frames:
            raise ValueError(f"frames start={start}, stop={stop} are outside 0..{self.num_frames}")
        return start, stop


# ---------------------------------------------------------------- scores


def _vector(name: str, value: Any) -> np.ndarray:
    out = np.asarray(value, dtype=np.float64)
    if out.ndim != 1 or out.size == 0 or not np.isfinite(out).all():
        raise ValueError(f"{name} must be a non-empty 1-D array of finite numbers")
    return out


def _displacements(name: str, value: Any, ndim: tuple[int, ...]) -> np.ndarray:
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be an array of numbers, got {type(value).__name__}"
        ) from None
    if out.ndim not in ndim or out.shape[-1] != 2:
        shapes = " or ".join(f"{n}-D" for n in ndim)
        raise ValueError(f"{name} must be a {shapes} array ending in (dy, dx), got {out.shape}")
    if not np.isfinite(out).all():
        raise ValueError(f"{name} has non-finite values")
    return out


def _paired(estimated: Any, true: Any, ndim: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Return both arrays with a plane axis, checking that they agree."""
    est = _displacements("estimated", estimated, ndim)
    tru = _displacements("true", true, ndim)
    if est.ndim == min(ndim):
        est = est[:, None]
    if tru.ndim == min(ndim):
        tru = tru[:, None]
    try:
        est, tru = np.broadcast_arrays(est, tru)
    except ValueError:
        raise ValueError(
            f"estimated {est.shape} and true {tru.shape} displacements do not match"
        ) from None
    if est.shape[0] == 0:
        raise ValueError("no frames to compare")
    return est, tru


def rigid_rms_error(estimated: Any, true: Any, *, remove_offset: bool = True) -> float:
    """Return the RMS error (in pixels) of estimated per-frame translations.

    Parameters
    ----------
    estimated, true : array_like, shape (T, 2) or (T, Z, 2)
        ``(dy, dx)`` per frame (and plane) in the sign convention of
        ``apply_displacements``. A ``(T, 2)`` array applies to every plane.
    remove_offset : bool
        Subtract the mean error of each plane first (default). A
        reference-based estimate is only defined up to a constant: the
        position of its reference in the scene.

    Returns
    -------
    float
        ``sqrt(mean over frames and planes of (ey² + ex²))``.

    Raises
    ------
    ValueError
        For arrays of a wrong shape, mismatched shapes or non-finite values.

    Examples
    --------
    >>> true = np.array([[0.0, 0.0], [1.5, 2.0], [3.0, 1.0]])
    >>> rigid_rms_error(true + [4.0, -2.0], true)  # a constant offset costs nothing
    0.0
    >>> round(rigid_rms_error(true + [[0.1, 0.0], [-0.1, 0.0], [0.0, 0.0]], true), 4)
    0.0816
    """
    est, tru = _paired(estimated, true, (2, 3))
    err = est - tru
    if remove_offset:
        err -= err.mean(axis=0, keepdims=True)
    return float(np.sqrt(np.mean(np.sum(err**2, axis=-1))))


def row_exact_fraction(estimated: Any, true: Any, *, remove_offset: bool = True) -> float:
    """Return the fraction of row displacements estimated exactly.

    Parameters
    ----------
    estimated, true : array_like, shape (T, Y, 2) or (T, Z, Y, 2)
        Row-wise ``(dy, dx)`` per observed row. Estimates are rounded to the
        nearest integer.
    remove_offset : bool
        Subtract, in each plane, the most common integer difference between
        estimate and truth first (default): a reference-based estimate is
        only defined up to a whole-frame translation.

    Returns
    -------
    float
        Fraction of rows whose ``dy`` and ``dx`` are both right.

    Raises
    ------
    ValueError
        For arrays of a wrong shape, mismatched shapes or non-finite values.

    Examples
    --------
    >>> true = np.zeros((2, 4, 2), dtype=int)
    >>> est = true + 3
    >>> est[1, 2] = [4, 3]
    >>> row_exact_fraction(est, true)
    0.875
    """
    est, tru = _paired(estimated, true, (3, 4))
    diff = np.rint(est).astype(np.int64) - np.rint(tru).astype(np.int64)
    if remove_offset:
        for z in range(diff.shape[1]):
            pairs, counts = np.unique(diff[:, z].reshape(-1, 2), axis=0, return_counts=True)
            diff[:, z] -= pairs[np.argmax(counts)]
    return float(np.mean(np.all(diff == 0, axis=-1)))


def block_rms_error(
    estimated: Any,
    truth: MotionTruth,
    centres_y: Any,
    centres_x: Any,
    *,
    block_shape: tuple[int, int] | None = None,
    remove_offset: bool = True,
    start: int = 0,
) -> float:
    """Return the RMS error (in pixels) of piecewise-rigid block shifts.

    The estimate lives in the strategy's corrected frame, whose origin sits at
    some unknown offset ``c`` in the scene (where its reference was taken).
    With ``remove_offset`` the offset is found by least squares (a fixed-point
    iteration: the truth is re-evaluated at the shifted block positions), for
    each plane separately (each plane is registered to its own reference),
    and the estimate compared with :meth:`MotionTruth.block_means` at ``c``.

    Parameters
    ----------
    estimated : array_like, shape (T, Gy, Gx, 2) or (T, Z, Gy, Gx, 2)
        Block shifts ``(dy, dx)`` (pull convention: ``corrected(u) =
        observed(u − d(u))``) of frames ``start … start + T − 1``.
    truth : MotionTruth
        A rigid or non-rigid truth.
    centres_y, centres_x : array_like of float, 1-D
        Block centres (``Gy`` and ``Gx`` of them) in the corrected frame.
    block_shape : (int, int), optional
        Average the truth over blocks of this shape; None samples it at the
        centres.
    remove_offset : bool
        Fit the offset ``c`` (default); otherwise ``c = (0, 0)``.
    start : int
        First frame of the truth the estimate corresponds to.

    Returns
    -------
    float
        ``sqrt(mean over frames, planes and blocks of (ey² + ex²))``.

    Raises
    ------
    ValueError
        For arrays of a wrong shape, a row-wise truth, or non-finite values.

    Examples
    --------
    >>> from sima_fast.misc import simulate_movie
    >>> sim = simulate_movie(num_frames=6, frame_shape=(48, 48), cells_per_plane=2,
    ...                      motion="nonrigid", motion_amplitude=2.0, seed=3)
    >>> cy = cx = np.array([12.0, 28.0])
    >>> est = sim.motion.block_means(cy, cx, (16, 16), offset=(1.5, 2.0))
    >>> block_rms_error(est, sim.motion, cy, cx, block_shape=(16, 16)) < 1e-6
    True
    """
    if not isinstance(truth, MotionTruth):
        raise ValueError(f"truth must be a MotionTruth, got {type(truth).__name__}")
    est = _displacements("estimated", estimated, (4, 5))
    if est.ndim == 4:
        est = np.broadcast_to(est[:, None], (est.shape[0], truth.scene_shape[0], *est.shape[1:]))
    cy = _vector("centres_y", centres_y)
    cx = _vector("centres_x", centres_x)
    if est.shape[1:] != (truth.scene_shape[0], cy.size, cx.size, 2):
        raise ValueError(
            f"estimated has shape {est.shape}; expected (T, {truth.scene_shape[0]}, "
            f"{cy.size}, {cx.size}, 2) for these centres"
        )
    start = check_int("start", start, low=0)
    stop = start + est.shape[0]
    squared = []
    for z in range(est.shape[1]):  # each plane has its own reference, so its own offset
        offset = np.zeros(2)
        for _ in range(50 if remove_offset else 0):
            true = truth.block_means(cy, cx, block_shape, offset, start, stop)[:, z]
            # d_est(u) = d(u + c) − c  ⇒  c = mean(d(u + c) − d_est(u)) (first order)
            new = offset + (true - est[:, z]).reshape(-1, 2).mean(axis=0)
            if np.max(np.abs(new - offset)) < 1e-10:
                offset = new
                break
            offset = new
        true = truth.block_means(cy, cx, block_shape, offset, start, stop)[:, z]
        squared.append(np.sum((est[:, z] - true) ** 2, axis=-1))
    return float(np.sqrt(np.mean(squared)))


def gradient_energy(image: Any, *, normalize: bool = True) -> float:
    """Return the gradient energy of an image (a sharpness measure).

    Forward differences along the last two axes (y, x); each axis
    contributes the mean squared difference over the pairs of finite
    neighbours, so NaN borders of corrected movies are ignored.

    Parameters
    ----------
    image : array_like, shape (..., Y, X)
        One image, or several (planes, channels) whose energies are averaged.
    normalize : bool
        Divide by the squared mean of the finite values (default), so the
        measure does not depend on the intensity scale.

    Returns
    -------
    float
        ``mean(∂y²) + mean(∂x²)`` (over ``mean²`` when normalised).

    Raises
    ------
    ValueError
        If ``image`` has fewer than two axes, or no two finite neighbours.

    Examples
    --------
    >>> flat = np.full((4, 4), 10.0)
    >>> gradient_energy(flat)
    0.0
    >>> edge = np.array([[0.0, 0.0, 2.0, 2.0]] * 4)
    >>> gradient_energy(edge)  # (0 + 4/3) / 1**2
    1.3333333333333333
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim < 2:
        raise ValueError(f"image must have at least 2 axes (y, x), got shape {img.shape}")
    dy = np.diff(img, axis=-2)
    dx = np.diff(img, axis=-1)
    dy, dx = dy[np.isfinite(dy)], dx[np.isfinite(dx)]
    if dy.size == 0 and dx.size == 0:
        raise ValueError("image has no two finite neighbouring pixels")
    energy = (np.mean(dy**2) if dy.size else 0.0) + (np.mean(dx**2) if dx.size else 0.0)
    if normalize:
        finite = img[np.isfinite(img)]
        scale = float(np.mean(finite)) ** 2
        if scale == 0.0:
            raise ValueError("image has a mean of zero; pass normalize=False")
        energy /= scale
    return float(energy)


def mean_image_sharpness(
    frames: Any, *, channel: int = 0, border: int = 0, normalize: bool = True
) -> float:
    """Return the gradient energy of the time-averaged image of a movie.

    Motion blurs the mean image, so a better corrected movie has a sharper
    one. Frames are averaged ignoring NaN (gaps at the edges of corrected
    frames), one frame at a time, so a Sequence of any length can be passed.

    Parameters
    ----------
    frames : numpy.ndarray of shape (T, Z, Y, X, C), or an iterable of frames
        The movie, e.g. a ``Sequence`` (iterating yields ``(Z, Y, X, C)``
        frames) or an array.
    channel : int
        Channel to average (default 0).
    border : int
        Pixels dropped on every side of the mean image before scoring
        (default 0), to compare movies on the same interior.
    normalize : bool
        Passed to :func:`gradient_energy`.

    Returns
    -------
    float
        :func:`gradient_energy` of the mean image (planes averaged).

    Raises
    ------
    ValueError
        For frames that are not ``(Z, Y, X, C)``, no frames, a bad channel
        or a border that leaves nothing.

    Examples
    --------
    >>> still = np.zeros((4, 1, 8, 8, 1))
    >>> still[:, :, :, 4:] = 1.0
    >>> moving = np.stack([np.roll(f, t, axis=2) for t, f in enumerate(still)])
    >>> mean_image_sharpness(still) > mean_image_sharpness(moving)
    True
    """
    channel = check_int("channel", channel, low=0)
    border = check_int("border", border, low=0)
    total = count = None
    iterator: Iterable[Any] = frames
    for frame in iterator:
        f = np.asarray(frame, dtype=np.float64)
        if f.ndim != 4:
            raise ValueError(f"frames must be (Z, Y, X, C) each, got shape {f.shape}")
        if channel >= f.shape[-1]:
            raise ValueError(f"channel {channel} does not exist (frames have {f.shape[-1]})")
        f = f[..., channel]
        if total is None:
            total, count = np.zeros(f.shape), np.zeros(f.shape)
        finite = np.isfinite(f)
        total[finite] += f[finite]
        count += finite
    if total is None:
        raise ValueError("frames holds no frame")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    ny, nx = mean.shape[-2:]
    if 2 * border >= min(ny, nx) - 1:
        raise ValueError(f"border {border} leaves nothing of a {ny} × {nx} image")
    if border:
        mean = mean[..., border : ny - border, border : nx - border]
    return gradient_energy(mean, normalize=normalize)

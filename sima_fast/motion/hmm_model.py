"""SIMA's hidden-Markov building blocks: the movement model and the two iterators.

SIMA's ``sima.motion.hmm`` module exposes, besides its strategies, the
pieces its HMM is made of. They are here with SIMA's names, constructors and
return types (imported as ``sima_fast.motion.hmm.MovementModel`` and so on):

- :class:`MovementModel`: a first-order autoregressive (AR(1)) Gaussian model
  of displacements, ``d[t+1] - m = A (d[t] - m) + e``, ``e ~ N(0, C)``, with
  ``A`` symmetric, its eigenvalues clipped to ``[0, 1]`` (motion decays and
  never grows or oscillates). ``estimate`` fits it to displacements; it gives
  the decay and covariance over any time step, the log-probabilities of whole
  pixel steps and the stationary distribution of the first displacement.
- :class:`PositionIterator`: for each scan unit (frame, plane, row, pixel or
  a group of them), the ``(z, y, x)`` positions of its pixels.
- :class:`NormalizedIterator`: for each scan unit, its pixels in photon units
  (divided by the gain), with ``log(k!)`` and their likelihood under the
  pixels' overall Gaussian distribution.

sima_fast's own HMM (:class:`~sima_fast.motion.hmm.HiddenMarkov2D`,
:class:`~sima_fast.motion.hmm.HiddenMarkov3D`) runs on compiled kernels and
does not use these classes; they are for code written against SIMA's. The
differences from SIMA's versions are listed in docs/motion.md.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np

from sima_fast._validate import ArgumentTypeError, check_int, check_real

__all__ = ["MovementModel", "NormalizedIterator", "PositionIterator", "parse_sima_granularity"]

#: SIMA's granularity names and the axis of a (T, Z, Y, X) shape they split.
_AXES = {"frame": 0, "plane": 1, "row": 2, "column": 3}

#: Quadrature nodes per axis for the probabilities of whole-pixel steps.
_STEP_NODES = 20


def parse_sima_granularity(granularity: Any) -> tuple[int, int]:
    """Read a granularity as SIMA's iterators do: ``(axis, count)``.

    Parameters
    ----------
    granularity : int, str or tuple
        ``'frame'`` (0), ``'plane'`` (1), ``'row'`` (2) or ``'column'`` (3),
        or ``(name_or_axis, n)``: ``n`` consecutive units together.

    Returns
    -------
    (int, int)
        The axis of ``(T, Z, Y, X)`` a unit ends at and the units per group.

    Raises
    ------
    ArgumentTypeError
        Anything but an int, a str or a pair of them.
    ValueError
        An unknown name, an axis outside 0..3, or ``n < 1``.

    Examples
    --------
    >>> parse_sima_granularity('row')
    (2, 1)
    >>> parse_sima_granularity(('plane', 2))
    (1, 2)
    """
    count: Any = 1
    axis = granularity
    if isinstance(granularity, tuple):
        if len(granularity) != 2:
            raise ArgumentTypeError(
                f"granularity must be an int, a str or a pair (name or axis, count), "
                f"got {granularity!r}"
            )
        axis, count = granularity
    count = check_int("granularity[1]", count, low=1)
    if isinstance(axis, str):
        if axis not in _AXES:
            raise ValueError(
                f"granularity must name 'frame', 'plane', 'row' or 'column', got {axis!r}"
            )
        return _AXES[axis], count
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        if not 0 <= int(axis) <= 3:
            raise ValueError(f"granularity axis must be 0, 1, 2 or 3, got {axis!r}")
        return int(axis), count
    raise ArgumentTypeError(
        f"granularity must be an int, a str or a pair (name or axis, count), got {granularity!r}"
    )


def _square(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] not in (2, 3):
        raise ValueError(f"{name} must be a 2x2 or 3x3 matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _vector(name: str, value: Any, size: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (size,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be {size} finite numbers, got {value!r}")
    return arr


class MovementModel:
    """AR(1) Gaussian model of displacements (SIMA's ``MovementModel``).

    ``d[t+1] - mean_shift = A (d[t] - mean_shift) + e``, ``e ~ N(0, C)``, over
    one time step, with ``A = U diag(s) U^T``. Over ``dt`` steps the decay is
    ``U diag(s**dt) U^T`` and the noise covariance ``C * dt``.

    Parameters
    ----------
    cov_matrix : array_like, shape (D, D)
        The covariance ``C`` of one step's noise (``D`` = 2 for ``(y, x)``,
        3 for ``(z, y, x)``); symmetric positive definite.
    U : array_like, shape (D, D)
        Orthonormal eigenvectors of the decay matrix ``A`` (columns).
    s : array_like, shape (D,)
        Its eigenvalues, each in ``[0, 1]``.
    mean_shift : array_like, shape (D,)
        The displacements' mean.

    Attributes
    ----------
    mean_shift : numpy.ndarray
        The mean displacement.

    Raises
    ------
    ValueError
        Matrices of the wrong shape, non-finite values, a covariance that is
        not positive definite, eigenvalues outside ``[0, 1]``.

    Examples
    --------
    >>> m = MovementModel(np.eye(2), np.eye(2), [0.5, 0.5], [0.0, 0.0])
    >>> m.decay_matrix(2.0).tolist()
    [[0.25, 0.0], [0.0, 0.25]]
    >>> m.cov_matrix(0.5).tolist()
    [[0.5, 0.0], [0.0, 0.5]]
    """

    def __init__(self, cov_matrix: Any, U: Any, s: Any, mean_shift: Any) -> None:
        cov = _square("cov_matrix", cov_matrix)
        D = cov.shape[0]
        if not np.allclose(cov, cov.T, rtol=1e-9, atol=1e-12):
            raise ValueError("cov_matrix must be symmetric")
        if np.linalg.eigvalsh(cov).min() <= 0:
            raise ValueError("cov_matrix must be positive definite")
        U = _square("U", U)
        if U.shape != (D, D):
            raise ValueError(f"U must be {D}x{D} like cov_matrix, got shape {U.shape}")
        s = _vector("s", s, D)
        if np.any(s < 0) or np.any(s > 1):
            raise ValueError(f"s (the decay's eigenvalues) must lie in [0, 1], got {s.tolist()}")
        self._cov_matrix = cov
        self._U = U
        self._s = s
        self.mean_shift = _vector("mean_shift", mean_shift, D)

    def __repr__(self) -> str:
        """Return a summary: dimensions, mean shift and decay eigenvalues."""
        return (
            f"MovementModel(D={len(self._s)}, mean_shift={self.mean_shift.tolist()}, "
            f"s={self._s.tolist()})"
        )

    @classmethod
    def estimate(cls, shifts: Any, times: Any = None) -> MovementModel:
        """Fit the model to displacement estimates.

        The displacements of all arrays, in order, make one series (each
        array flattened to ``(n, D)``). ``A`` is the symmetric matrix that
        best predicts each centred displacement from the previous one (least
        squares), with its eigenvalues clipped to ``[0, 1]``; ``C`` is the
        covariance of the prediction residuals, with its eigenvalues raised
        to at least ``1 / n`` so that it stays invertible. NaN (and masked)
        displacements count as the mean.

        Parameters
        ----------
        shifts : list of array_like
            Displacements, last axis ``D`` = 2 or 3 (e.g. ``(T, Z, 2)`` per
            plane or ``(T, 3)`` per volume).
        times : optional
            Accepted for SIMA compatibility and ignored (as in SIMA).

        Returns
        -------
        MovementModel

        Raises
        ------
        ArgumentTypeError
            If ``shifts`` is not a non-empty list of numeric arrays.
        ValueError
            If the last axis is not 2 or 3, the arrays disagree on it, or
            there are fewer than 2 displacements.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> walk = np.cumsum(rng.normal(size=(500, 2)), axis=0)
        >>> model = MovementModel.estimate([walk])
        >>> model.decay_matrix().shape
        (2, 2)
        """
        del times
        if isinstance(shifts, np.ndarray) or not isinstance(shifts, (list, tuple)) or not shifts:
            raise ArgumentTypeError("shifts must be a non-empty list of displacement arrays")
        arrays = []
        for i, item in enumerate(shifts):
            arr = np.ma.filled(np.ma.asarray(item).astype(np.float64), np.nan)
            if arr.ndim < 1 or arr.shape[-1] not in (2, 3):
                raise ValueError(
                    f"shifts[{i}] must have a last axis of 2 (y, x) or 3 (z, y, x), "
                    f"got shape {arr.shape}"
                )
            arrays.append(arr.reshape(-1, arr.shape[-1]))
        D = arrays[0].shape[1]
        if any(a.shape[1] != D for a in arrays):
            raise ValueError("every array of shifts must have the same last axis")
        series = np.concatenate(arrays)
        n = series.shape[0]
        if n < 2:
            raise ValueError(f"shifts must hold at least 2 displacements, got {n}")
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(series, axis=0) if np.isfinite(series).any() else np.zeros(D)
        mean = np.nan_to_num(mean)
        centred = np.nan_to_num(series - mean)
        past, future = centred[:-1], centred[1:]
        # A symmetric: unknowns are its upper triangle; column k of the design
        # is past @ E_k, flattened, for the symmetric basis matrix E_k
        iu = np.triu_indices(D)
        design = np.empty((past.size, len(iu[0])))
        for k, (i, j) in enumerate(zip(*iu)):
            basis = np.zeros((D, D))
            basis[i, j] = basis[j, i] = 1.0
            design[:, k] = (past @ basis).ravel()
        coef = np.linalg.lstsq(design, future.ravel(), rcond=None)[0]
        A = np.zeros((D, D))
        A[iu] = coef
        A = A + np.triu(A, 1).T
        residual = future - past @ A  # rows: (A x_t)^T = x_t^T A for symmetric A
        cov = np.atleast_2d(np.cov(residual.T)) if n > 2 else np.zeros((D, D))
        cov = np.nan_to_num(0.5 * (cov + cov.T))
        w, V = np.linalg.eigh(cov)
        cov = (V * np.maximum(w, 1.0 / n)) @ V.T
        cov = 0.5 * (cov + cov.T)
        s, U = np.linalg.eigh(A)
        return cls(cov, U, np.clip(s, 0.0, 1.0), mean)

    def decay_matrix(self, dt: float = 1.0) -> np.ndarray:
        """Return the decay ``A**dt = U diag(s**dt) U^T`` of the AR(1) model over ``dt`` steps.

        Parameters
        ----------
        dt : float, optional
            Time in steps (>= 0; fractions allowed). Default 1.

        Returns
        -------
        numpy.ndarray, shape (D, D)

        Raises
        ------
        ArgumentTypeError, ValueError
            A ``dt`` that is not a number >= 0.
        """
        dt = check_real("dt", dt, low=0.0)
        return (self._U * self._s**dt) @ self._U.T

    def cov_matrix(self, dt: float = 1.0) -> np.ndarray:
        """Return the covariance ``C * dt`` of the noise over ``dt`` steps.

        Parameters
        ----------
        dt : float, optional
            Time in steps (> 0). Default 1.

        Returns
        -------
        numpy.ndarray, shape (D, D)

        Raises
        ------
        ArgumentTypeError, ValueError
            A ``dt`` that is not a number > 0.
        """
        dt = check_real("dt", dt, low=0.0)
        if dt <= 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        return self._cov_matrix * dt

    def log_transition_matrix(self, max_distance: int = 1, dt: float = 1.0) -> np.ndarray:
        """Log-probabilities of whole-pixel steps over ``dt``, by step magnitude per axis.

        A step of ``r`` whole pixels (per axis) happens when the continuous
        Gaussian increment ``N(0, C dt)`` plus the difference of two uniform
        sub-pixel positions rounds to ``r``: ``P(r) = ∫ p(r + u) Π (1 - |u_i|)
        du`` over ``u`` in ``[-1, 1]^D`` (the triangle is the density of that
        difference), computed on a grid of 20 nodes per axis.

        Parameters
        ----------
        max_distance : int, optional
            Largest step magnitude per axis (>= 0). Default 1.
        dt : float, optional
            Time in steps (> 0). Default 1.

        Returns
        -------
        numpy.ndarray
            ``out[|r_z|, |r_y|, |r_x|]``, shape ``(max_distance + 1,) * 3``;
            for a 2-D model ``(1, max_distance + 1, max_distance + 1)``
            (SIMA's shape, z steps impossible).

        Raises
        ------
        ArgumentTypeError, ValueError
            A ``max_distance`` that is not an int >= 0, a ``dt`` that is not a
            number > 0.
        """
        max_distance = check_int("max_distance", max_distance, low=0)
        cov = self.cov_matrix(dt)
        D = cov.shape[0]
        nodes = np.linspace(-1.0, 1.0, _STEP_NODES + 2)[1:-1]
        weights = 1.0 - np.abs(nodes)
        log_w = np.log(weights / weights.sum())
        grid_u = np.stack([g.ravel() for g in np.meshgrid(*[nodes] * D, indexing="ij")], axis=1)
        log_wu = sum(g.ravel() for g in np.meshgrid(*[log_w] * D, indexing="ij"))
        inv = np.linalg.inv(cov)
        log_norm = -0.5 * (D * np.log(2.0 * np.pi) + np.linalg.slogdet(cov)[1])
        out = np.empty((max_distance + 1,) * D)
        for r in itertools.product(range(max_distance + 1), repeat=D):
            x = grid_u + np.asarray(r, dtype=np.float64)
            terms = log_norm - 0.5 * np.einsum("ni,ij,nj->n", x, inv, x) + log_wu
            top = terms.max()
            out[r] = top + np.log(np.exp(terms - top).sum())
        if D == 2:
            out = out[None]
        return out

    def _stationary_cov(self) -> np.ndarray:
        """Covariance of the displacements after many steps from the mean (diagonal >= 0.1)."""
        A = self.decay_matrix()
        Q = self.cov_matrix()
        C = Q.copy()
        for _ in range(1000):
            nxt = A @ C @ A.T + Q
            if np.allclose(nxt, C, rtol=1e-12, atol=0.0):
                break
            C = nxt
        idx = np.diag_indices_from(C)
        C[idx] = np.maximum(C[idx], 0.1)
        return C

    def initial_probs(
        self, displacement_tbl: Any, min_displacements: Any, max_displacements: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log-probabilities of the allowed displacements at the start of a chain.

        The first displacement follows the model's stationary distribution:
        Gaussian around ``mean_shift`` with the covariance the AR(1) process
        settles to (its diagonal at least 0.1).

        Parameters
        ----------
        displacement_tbl : array_like, shape (n, D) or (n, 3)
            Candidate displacements (for a 2-D model, rows ``(z, y, x)`` are
            read as ``(y, x)``, z ignored).
        min_displacements, max_displacements : array_like
            Bounds (inclusive), one per column of ``displacement_tbl``.

        Returns
        -------
        states : numpy.ndarray of int
            Indices of the rows of ``displacement_tbl`` within the bounds.
        log_p : numpy.ndarray of float
            Their log-densities.

        Raises
        ------
        ValueError
            A table of the wrong shape, bounds of the wrong length, or no
            displacement within the bounds.
        """
        table = np.asarray(displacement_tbl, dtype=np.float64)
        D = len(self.mean_shift)
        if table.ndim != 2 or table.shape[1] not in (D, 3) or table.shape[1] < D:
            raise ValueError(
                f"displacement_tbl must be an (n, {D}) or (n, 3) array, got shape {table.shape}"
            )
        lo = _vector("min_displacements", min_displacements, table.shape[1])
        hi = _vector("max_displacements", max_displacements, table.shape[1])
        inside = np.all((table >= lo) & (table <= hi), axis=1)
        states = np.flatnonzero(inside)
        if states.size == 0:
            raise ValueError("no displacement of displacement_tbl lies within the bounds")
        x = table[states][:, -D:] - self.mean_shift
        C = self._stationary_cov()
        log_norm = -0.5 * (D * np.log(2.0 * np.pi) + np.linalg.slogdet(C)[1])
        log_p = log_norm - 0.5 * np.einsum("ni,ij,nj->n", x, np.linalg.inv(C), x)
        return states.astype(int), log_p


def _shape4(shape: Any) -> tuple[int, int, int, int]:
    if not isinstance(shape, (tuple, list)) or len(shape) != 4:
        raise ArgumentTypeError(f"shape must be (times, planes, rows, columns), got {shape!r}")
    return tuple(check_int(f"shape[{i}]", v, low=1) for i, v in enumerate(shape))  # type: ignore[return-value]


class PositionIterator:
    """The ``(z, y, x)`` positions of the pixels of each scan unit (SIMA's iterator).

    Parameters
    ----------
    shape : tuple of int
        ``(times, planes, rows, columns)`` of the data.
    granularity : int, str or tuple
        The scan unit: ``'frame'`` (0), ``'plane'`` (1), ``'row'`` (2) or
        ``'column'`` (3, one pixel), or ``(unit, n)`` for ``n`` consecutive
        units together (see :func:`parse_sima_granularity`).
    offset : sequence of int, optional
        Added to the positions: ``(z, y, x)``, ``(y, x)`` or ``(x,)``
        (right-aligned on ``(t, z, y, x)``). Default none.

    Raises
    ------
    ArgumentTypeError
        A malformed shape, granularity or offset.
    ValueError
        ``n`` does not divide ``shape`` along the unit's axis.

    Notes
    -----
    Iterating yields one ``(N, 3)`` int array per unit, in scan order. Units
    finer than a frame, and single frames, repeat every frame, so the
    iteration never ends (pair it with the data, as SIMA does with ``zip``);
    groups of ``n > 1`` frames stop after ``times // n`` groups.

    Examples
    --------
    >>> pi = PositionIterator((10, 2, 4, 6), ('row', 2), [1, 3])
    >>> first = next(iter(pi))
    >>> first.shape, first[0].tolist(), first[-1].tolist()
    ((12, 3), [0, 1, 3], [0, 2, 8])
    """

    def __init__(self, shape: Any, granularity: Any, offset: Any = None) -> None:
        self.shape = _shape4(shape)
        self.granularity = parse_sima_granularity(granularity)
        axis, n = self.granularity
        if self.shape[axis] % n != 0:
            raise ValueError(
                f"granularity[1] = {n} must divide the shape along dimension {axis} "
                f"({self.shape[axis]})"
            )
        if offset is None:
            self.offset = [0, 0, 0, 0]
        else:
            if isinstance(offset, (str, bytes)) or not hasattr(offset, "__len__"):
                raise ArgumentTypeError(f"offset must be a sequence of ints, got {offset!r}")
            if len(offset) > 4:
                raise ArgumentTypeError(f"offset must have at most 4 entries, got {offset!r}")
            values = [check_int(f"offset[{i}]", v) for i, v in enumerate(offset)]
            self.offset = [0, 0, 0, 0, *values][-4:]

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield the ``(N, 3)`` positions of each unit (see the class notes)."""
        axis, n = self.granularity
        T = self.shape[0]
        off = np.asarray(self.offset[1:], dtype=int)
        # every (z, y, x) of one frame, in scan order, grouped by unit
        grids = np.meshgrid(*(np.arange(v) for v in self.shape[1:]), indexing="ij")
        frame = np.stack([g.ravel() for g in grids], axis=1) + off
        if axis == 0:
            block = np.tile(frame, (n, 1))
            if n == 1:
                while True:
                    yield block.copy()
            for _ in range(T // n):
                yield block.copy()
            return
        units = int(np.prod(self.shape[1 : axis + 1]))
        per_unit = frame.shape[0] // units
        groups = frame.reshape(units // n, n * per_unit, 3)
        while True:
            for g in groups:
                yield g.copy()


class NormalizedIterator:
    """Each scan unit's pixels in photon units, with their likelihood terms (SIMA's iterator).

    Parameters
    ----------
    sequence : Sequence or array_like, shape (T, Z, Y, X, C)
        Frames (anything iterating over ``(Z, Y, X, C)`` arrays).
    gains : array_like, shape (C,)
        Intensity per photon of each channel (> 0).
    pixel_means : array_like, shape (C,)
        Mean pixel intensity of each channel.
    pixel_variances : array_like, shape (C,)
        Pixel intensity variance of each channel (> 0).
    granularity : int, str or tuple
        The scan unit (see :class:`PositionIterator`).

    Raises
    ------
    ArgumentTypeError
        A malformed granularity.
    ValueError
        Non-positive gains or variances, non-finite means.

    Notes
    -----
    Iterating yields, per unit, ``(im, log_im_fac, log_im_p)``, each of
    shape ``(N, C)``: ``im`` the unit's pixels divided by the gains (NaN
    pixels replaced by the channel's mean in photon units),
    ``log_im_fac = log Γ(im + 1)`` and ``log_im_p`` the log-density of ``im``
    under a Gaussian of the channel's mean and variance (in photon units).
    Groups of ``n`` frames (``('frame', n)``) span consecutive frames.

    Examples
    --------
    >>> data = np.ones((3, 2, 4, 5, 1))
    >>> im, fac, logp = next(iter(NormalizedIterator(data, [2.0], [2.0], [4.0], 'row')))
    >>> im.shape, float(im[0, 0]), round(float(fac[0, 0]), 6)
    ((5, 1), 0.5, -0.120782)
    """

    def __init__(
        self,
        sequence: Any,
        gains: Any,
        pixel_means: Any,
        pixel_variances: Any,
        granularity: Any,
    ) -> None:
        self.sequence = sequence
        self.gains = np.atleast_1d(np.asarray(gains, dtype=np.float64))
        self.pixel_means = np.atleast_1d(np.asarray(pixel_means, dtype=np.float64))
        self.pixel_variances = np.atleast_1d(np.asarray(pixel_variances, dtype=np.float64))
        if not np.all(np.isfinite(self.gains)) or np.any(self.gains <= 0):
            raise ValueError(f"gains must be finite and > 0, got {gains!r}")
        if not np.all(np.isfinite(self.pixel_means)):
            raise ValueError(f"pixel_means must be finite, got {pixel_means!r}")
        if not np.all(np.isfinite(self.pixel_variances)) or np.any(self.pixel_variances <= 0):
            raise ValueError(f"pixel_variances must be finite and > 0, got {pixel_variances!r}")
        self.granularity = parse_sima_granularity(granularity)

    def _normalised(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from scipy.special import gammaln

        means = self.pixel_means / self.gains
        variances = self.pixel_variances / self.gains**2
        im = np.asarray(pixels, dtype=np.float64) / self.gains
        im = np.where(np.isnan(im), means, im)
        if not np.all(np.isfinite(im)):
            raise ValueError("the frames hold infinite values")
        log_im_fac = gammaln(im + 1.0)
        log_im_p = -((im - means) ** 2) / (2.0 * variances) - 0.5 * np.log(2.0 * np.pi * variances)
        return im, log_im_fac, log_im_p

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(im, log_im_fac, log_im_p)`` for each unit (see the class notes)."""
        axis, n = self.granularity
        pending: list[np.ndarray] = []
        for frame in self.sequence:
            frame = np.asarray(frame)
            if frame.ndim != 4:
                raise ValueError(f"frames must be (Z, Y, X, C) arrays, got shape {frame.shape}")
            C = frame.shape[-1]
            if axis == 0:
                pending.append(frame.reshape(-1, C))
                if len(pending) == n:
                    yield self._normalised(np.concatenate(pending))
                    pending = []
                continue
            units = int(np.prod(frame.shape[:axis]))
            if units % n:
                raise ValueError(f"granularity[1] = {n} must divide the {units} units of a frame")
            for group in frame.reshape(units // n, -1, C):
                yield self._normalised(group)

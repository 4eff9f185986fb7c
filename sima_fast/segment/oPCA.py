"""Offset principal component analysis (SIMA's module ``sima.segment.oPCA``).

Offset PCA finds the directions of largest *lag-one* covariance of a
multivariate time series: the eigenvectors of the symmetrised offset
covariance ``(X[1:]^T X[:-1] + X[:-1]^T X[1:]) / (2 (T - 1))`` of the centred
data ``X`` (observations × dimensions). Noise that is independent from one
observation to the next has no offset covariance, so slow signals such as
calcium transients dominate the leading components.

The functions carry SIMA's names, parameters and return values. They compute
the components exactly, from the singular value decomposition of ``X``: with
``X = U S V^T`` the offset covariance is ``V (S U^T A U S) V^T``, ``A`` the
matrix joining consecutive observations, so its eigenvectors come from a
small symmetric eigenproblem whatever the shape of ``X``.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> slow = np.cumsum(rng.normal(size=500))
>>> data = np.outer(slow, [1.0, 2.0, 0.0]) + rng.normal(size=(500, 3)) * 5
>>> variances, opcs, signals = offsetPCA(data, num_pcs=1)
>>> round(opcs[1, 0] / opcs[0, 0]), bool(abs(opcs[2, 0]) < 0.1), signals.shape
(2, True, (500, 1))
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from sima_fast._threads import blas_threads
from sima_fast._validate import ArgumentTypeError, check_bool, check_int, check_real

if TYPE_CHECKING:
    from sima_fast.imaging import ImagingDataset

#: Vectors iterated beyond those wanted by :func:`power_iteration_oPCA`.
POWER_EXTRA = 8

__all__ = ["EM_oPCA", "dataset_opca", "offsetPCA", "power_iteration_oPCA"]


def _as_matrix(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        matrix = data
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        matrix = np.asarray([np.asarray(row, dtype=np.float64).ravel() for row in data])
    else:
        raise ArgumentTypeError(f"data must be a 2-D array, got {type(data).__name__}")
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 2 or matrix.shape[1] < 1:
        raise ValueError(
            "data must be a 2-D array (observations, dimensions) with at least 2 observations, "
            f"got shape {matrix.shape}"
        )
    return matrix


def offsetPCA(data: Any, num_pcs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Perform offset principal component analysis.

    Parameters
    ----------
    data : array_like, shape (num_observations, num_dimensions)
        The data; NaN values count as the mean of their dimension.
    num_pcs : int, optional
        Number of offset principal components (oPCs) wanted (≥ 1). Default:
        all (``min(num_observations, num_dimensions)``).

    Returns
    -------
    variances : numpy.ndarray, shape (num_pcs,)
        Offset variance of each oPC, largest first.
    OPCs : numpy.ndarray, shape (num_dimensions, num_pcs)
        The oPCs, unit vectors (each up to its sign).
    signals : numpy.ndarray, shape (num_observations, num_pcs)
        The centred data projected on each oPC.

    Raises
    ------
    ValueError
        If ``data`` is not 2-D with at least 2 observations, or ``num_pcs``
        is not a positive integer.
    """
    x = _as_matrix(data)
    x = x - np.nanmean(x, axis=0)
    x[~np.isfinite(x)] = 0.0
    n_obs = x.shape[0]
    with blas_threads():
        u, s, vt = np.linalg.svd(x, full_matrices=False)
        keep = s > s[0] * 1e-12 if s.size and s[0] > 0 else np.zeros(s.size, dtype=bool)
        u, s, vt = u[:, keep], s[keep], vt[keep]
        offset = u[1:].T @ u[:-1]
        small = s[:, None] * (offset + offset.T) * s[None, :]
        values, vectors = np.linalg.eigh(small)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    count = values.size if num_pcs is None else check_int("num_pcs", num_pcs, low=1)
    count = min(int(count), values.size)
    opcs = vt.T @ vectors[:, :count]
    return values[:count] / (2.0 * (n_obs - 1)), opcs, x @ opcs


def EM_oPCA(
    data: Any,
    num_pcs: int,
    tolerance: float = 0.01,
    max_iter: int = 1000,
    verbose: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute offset principal components (SIMA's expectation-maximisation entry point).

    SIMA iterated towards the oPCs; here they are computed exactly (see the
    module notes), so ``tolerance`` and ``max_iter`` only bound what SIMA's
    iteration would have done and are checked for validity.

    Parameters
    ----------
    data : array_like or iterable of array_like
        ``(num_observations, num_dimensions)`` data, or the observations one
        by one (each flattened).
    num_pcs : int
        Number of oPCs wanted (≥ 1).
    tolerance : float, optional
        SIMA's convergence criterion (> 0). Default: 0.01.
    max_iter : int, optional
        SIMA's iteration limit (≥ 1). Default: 1000.
    verbose : bool, optional
        Accepted for compatibility; there is no iteration to report.

    Returns
    -------
    variances, OPCs, signals
        As for :func:`offsetPCA`.

    Raises
    ------
    ValueError
        If a parameter is out of range or the data are not 2-D.
    """
    check_real("tolerance", tolerance, low=0.0)
    check_int("max_iter", max_iter, low=1)
    check_bool("verbose", verbose)
    return offsetPCA(data, check_int("num_pcs", num_pcs, low=1))


def power_iteration_oPCA(
    data: Any, num_pcs: int, tolerance: float = 0.01, max_iter: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compute offset principal components by power iteration on the offset covariance.

    The symmetrised offset covariance ``C = (X[1:]^T X[:-1] + X[:-1]^T
    X[1:]) / (2 (T - 1))`` of the centred data ``X`` is never formed: each
    iteration multiplies a block of ``num_pcs`` vectors by it through two
    products with the data. ``C`` can have negative eigenvalues (noise that
    alternates from one observation to the next), so the iteration runs on
    ``C + r I``, ``r`` an estimate of a bound of ``C``'s spectral radius, whose
    leading eigenvectors are ``C``'s eigenvectors of largest (signed)
    eigenvalue. Each iteration orthonormalises the block and rotates it to
    the eigenvectors of the small projected matrix (Rayleigh–Ritz); eight
    more vectors than wanted are iterated, which speeds convergence. It stops
    when every vector's residual ``|C v - λ v|``, relative to ``|λ|``, falls
    below ``tolerance``, or after ``max_iter`` iterations (with a
    :class:`RuntimeWarning`). Memory and time per iteration are
    ``O(T × D × num_pcs)``, for data too wide for :func:`offsetPCA`'s
    decomposition.

    Parameters
    ----------
    data : array_like or iterable of array_like
        ``(num_observations, num_dimensions)`` data, or the observations one
        by one (each flattened); NaN values count as the mean of their
        dimension.
    num_pcs : int
        Number of oPCs wanted (≥ 1); at most ``num_dimensions`` are computed.
    tolerance : float, optional
        Largest relative residual at which the oPCs are taken as converged
        (> 0). Default: 0.01.
    max_iter : int, optional
        Most iterations (≥ 1). Default: 1000.

    Returns
    -------
    variances : numpy.ndarray, shape (num_pcs,)
        Offset variance of each oPC (its eigenvalue of ``C``), largest first.
    OPCs : numpy.ndarray, shape (num_dimensions, num_pcs)
        The oPCs, orthonormal columns.
    signals : numpy.ndarray, shape (num_observations, num_pcs)
        The centred data projected on each oPC.

    Raises
    ------
    ValueError
        If the data are not 2-D with at least 2 observations or a parameter
        is out of range.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> slow = np.cumsum(rng.normal(size=400))
    >>> data = np.outer(slow, [3.0, 4.0, 0.0]) + rng.normal(size=(400, 3))
    >>> variances, opcs, signals = power_iteration_oPCA(data, 1, tolerance=1e-8)
    >>> np.round(np.abs(opcs[:, 0]), 2).tolist(), signals.shape
    ([0.6, 0.8, 0.0], (400, 1))
    """
    import warnings

    wanted = check_int("num_pcs", num_pcs, low=1)
    tol = check_real("tolerance", tolerance, low=0.0)
    if tol <= 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    limit = check_int("max_iter", max_iter, low=1)
    x = _as_matrix(data)
    x = x - np.nanmean(x, axis=0)
    x[~np.isfinite(x)] = 0.0
    n_obs, n_dim = x.shape
    count = min(wanted, n_dim)
    scale = 2.0 * (n_obs - 1)

    def offset_times(v: np.ndarray) -> np.ndarray:
        return (x[1:].T @ (x[:-1] @ v) + x[:-1].T @ (x[1:] @ v)) / scale

    rng = np.random.default_rng(0)
    with blas_threads():
        # |C| <= |X|_2^2 / (T - 1); |X|_2 from a few power steps on X^T X (a lower estimate,
        # hence the margin; only C's most negative eigenvalue must be outweighed).
        probe = rng.standard_normal(n_dim)
        for _ in range(20):
            probe = x.T @ (x @ probe)
            norm = float(np.linalg.norm(probe))
            if norm == 0:
                break
            probe /= norm
        radius = 1.1 * float(np.sum((x @ probe) ** 2)) / (n_obs - 1)
        # A few extra vectors speed the convergence of the wanted ones.
        width = min(n_dim, count + POWER_EXTRA)
        block = np.linalg.qr(rng.standard_normal((n_dim, width)))[0]
        values = np.zeros(width)
        for _ in range(limit):
            grown = offset_times(block) + radius * block
            basis = np.linalg.qr(grown)[0]
            product = offset_times(basis)
            small = basis.T @ product
            values, rotation = np.linalg.eigh((small + small.T) / 2.0)
            order = np.argsort(values)[::-1]
            values, rotation = values[order], rotation[:, order]
            block = basis @ rotation
            # Residual of each eigen-equation, relative to its eigenvalue.
            residual = np.linalg.norm(product @ rotation - block * values, axis=0)[:count]
            floor = max(1e-12 * float(np.abs(values).max()), np.finfo(float).tiny)
            change = float(np.max(residual / np.maximum(np.abs(values[:count]), floor)))
            if change < tol:
                break
        else:
            warnings.warn(
                f"power_iteration_oPCA stopped after max_iter={limit} iterations before the "
                f"residual fell below tolerance={tol}",
                RuntimeWarning,
                stacklevel=2,
            )
    values, block = values[:count], block[:, :count]
    return values, block, x @ block


def dataset_opca(
    dataset: ImagingDataset,
    ch: int | str = 0,
    num_pcs: int = 75,
    path: str | os.PathLike | None = None,
    verbose: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Perform offset principal component analysis of a dataset's frames.

    Each frame of channel ``ch`` (all planes) is one observation, centred by
    the dataset's time average; NaN values count as the average.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset.
    ch : int or str, optional
        Channel (index or name). Default: 0.
    num_pcs : int, optional
        Number of oPCs (≥ 1); at most ``num_frames - 1`` and the number of
        pixels are computed. Default: 75.
    path : str or path-like, optional
        A ``.npz`` file: when it holds at least ``num_pcs`` components they
        are loaded from it; otherwise they are computed and saved there
        (atomically). Default: None.
    verbose : bool, optional
        Accepted for compatibility. Default: False.

    Returns
    -------
    oPC_vars : numpy.ndarray, shape (num_pcs,)
        Offset variance of each oPC.
    oPCs : numpy.ndarray, shape (num_planes, num_rows, num_columns, num_pcs)
        The spatial representation of each oPC.
    oPC_signals : numpy.ndarray, shape (num_frames, num_pcs)
        The temporal representation of each oPC.

    Raises
    ------
    ValueError
        If the channel is unknown or ``num_pcs`` is not a positive integer.

    Notes
    -----
    The frames are held in memory as float32 (``frames × pixels × 4``
    bytes).
    """
    from sima_fast._atomic import atomic_write
    from sima_fast._validate import resolve_channel

    channel = resolve_channel(ch, dataset.channel_names)
    check_bool("verbose", verbose)
    z, y, x, _ = (int(v) for v in dataset.frame_shape)
    wanted = min(check_int("num_pcs", num_pcs, low=1), int(dataset.num_frames) - 1, z * y * x)
    if path is not None and os.path.exists(path):
        with np.load(path, allow_pickle=False) as stored:
            if stored["oPC_signals"].shape[1] >= wanted:
                return (
                    stored["oPC_vars"][:wanted],
                    stored["oPCs"][..., :wanted],
                    stored["oPC_signals"][:, :wanted],
                )
    mean = np.asarray(dataset.time_averages[..., channel], dtype=np.float32).ravel()
    frames = np.empty((int(dataset.num_frames), z * y * x), dtype=np.float32)
    t = 0
    for seq in dataset.sequences:
        for _, block in seq.iter_chunks():
            n = block.shape[0]
            frames[t : t + n] = block[..., channel].reshape(n, -1) - mean
            t += n
    frames[~np.isfinite(frames)] = 0.0
    variances, opcs, signals = offsetPCA(frames, max(wanted, 1))
    opcs = opcs.reshape(z, y, x, -1)
    if path is not None:
        with atomic_write(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, oPCs=opcs, oPC_vars=variances, oPC_signals=signals)
    return variances, opcs, signals

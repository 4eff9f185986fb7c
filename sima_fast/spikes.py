"""Spike inference from extracted fluorescence signals (SPEC.md §8).

This module owns spike inference for sima_fast. Inference works on the
``raw`` signals of an extraction, a list over sequences of
``(n_rois, T_k)`` arrays, and models each ROI trace as a first-order
autoregressive (AR(1)) calcium process plus a baseline and white Gaussian
noise, as in [1]_ and [2]_::

    c_t = gamma * c_{t-1} + s_t,        y_t = b + c_t + noise_t,

with a decay factor ``0 < gamma < 1`` and a noise standard deviation
``sigma``. The functions here estimate those two model parameters from the
data; the deconvolution solver that turns them into spike trains lands in
this module together with the AR(1) kernel.

All estimators are built from the un-normalised autocovariance

    acov(x, k) = sum_t (x_t - mean(x)) * (x_{t+k} - mean(x)),

computed over the observed (finite) samples only: see
:func:`autocovariance` for the exact convention on missing samples. For
one ROI recorded in several sequences the autocovariances of the separate
traces (each centred on its own mean) are summed before any ratio is
taken, so that long sequences weigh more than short ones.

* :func:`estimate_gamma` -- the decay factor from the ratio of the lag-3
  and lag-2 autocovariances.
* :func:`estimate_sigma` -- the noise level, by one of three methods
  (``'correct'``, ``'robust'`` or ``'psd'``, the last from a Welch power
  spectrum [3]_).
* :func:`estimate_parameters` -- both, for every ROI of an extraction at
  once (vectorised over ROIs).

Questionable estimates are repaired rather than rejected, and every repair
issues a :class:`SpikeInferenceWarning` (a :class:`RuntimeWarning`).

References
----------
.. [1] Pnevmatikakis, E. A. et al. (2016). Simultaneous denoising,
   deconvolution, and demixing of calcium imaging data. *Neuron* 89(2),
   285-299. https://doi.org/10.1016/j.neuron.2015.11.037
.. [2] Friedrich, J., Zhou, P., & Paninski, L. (2017). Fast online
   deconvolution of calcium imaging data. *PLoS Computational Biology*
   13(3), e1005423. https://doi.org/10.1371/journal.pcbi.1005423
.. [3] Welch, P. (1967). The use of fast Fourier transform for the
   estimation of power spectra: a method based on time averaging over
   short, modified periodograms. *IEEE Transactions on Audio and
   Electroacoustics* 15(2), 70-73. https://doi.org/10.1109/TAU.1967.1161901
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "GAMMA_CAP",
    "GAMMA_FLOOR",
    "MIN_SAMPLES",
    "MODES",
    "SpikeInferenceWarning",
    "autocovariance",
    "estimate_gamma",
    "estimate_parameters",
    "estimate_sigma",
]

#: Noise estimation methods accepted by :func:`estimate_sigma`.
MODES: tuple[str, ...] = ("correct", "robust", "psd")

#: Value given to an estimated decay factor that comes out at or above 1.
GAMMA_CAP: float = 0.98

#: Value given to an estimated decay factor that comes out at or below 0,
#: or undefined (for instance when the lag-2 autocovariance is zero).
GAMMA_FLOOR: float = 0.01

#: Fewest observed (finite) samples a single trace must have.
MIN_SAMPLES: int = 8

# Frequency band (in units of the sampling rate) used by the 'psd' method,
# both ends excluded, and the longest Welch segment.
_PSD_BAND = (0.25, 0.5)
_PSD_NPERSEG = 256

# Rows per block when computing autocovariances: blocks of about 2 MB of
# float64 keep the centred copy in cache while the lagged products run.
_BLOCK_ELEMENTS = 1 << 18
# Welch spectra are computed for blocks of rows of about this many samples
# (scipy's segment copies of a whole 1,000 x 10,000 array are slow).
_PSD_BLOCK_ELEMENTS = 1 << 21


class SpikeInferenceWarning(RuntimeWarning):
    """A spike-inference parameter was estimated poorly and has been repaired.

    Issued when an estimated decay factor is clipped into ``(0, 1)`` or when
    a noise estimate falls back to the ``'psd'`` method. It is a subclass of
    :class:`RuntimeWarning`, so filters on either class catch it.
    """


# ----------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------


def _check_real(array: NDArray, name: str) -> None:
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")


def _as_real_array(value: Any, name: str) -> NDArray[np.float64]:
    array = np.asarray(value)
    _check_real(array, name)
    return np.asarray(array, dtype=np.float64)


def _traces_list(traces: ArrayLike | Iterable[ArrayLike], name: str) -> list[NDArray]:
    """One ROI's traces as a list of float64 1-D arrays, one per sequence."""
    if isinstance(traces, np.ndarray) and traces.ndim == 1:
        items: list[Any] = [traces]
    elif isinstance(traces, np.ndarray) and traces.ndim == 2:
        items = list(traces)
    else:
        try:
            items = list(traces)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"{name} must be a 1-D array or a sequence of 1-D arrays") from None
    if not items:
        raise ValueError(f"{name} must contain at least one trace")
    out = []
    for k, item in enumerate(items):
        array = _as_real_array(item, name)
        if array.ndim != 1:
            raise ValueError(
                f"{name}[{k}] must be a 1-D trace, got an array of shape {array.shape}"
            )
        out.append(array)
    _check_lengths([np.isfinite(a).sum(keepdims=True) for a in out], name, single=True)
    return out


def _signals_list(signals: Any) -> list[NDArray]:
    """The 'raw' signals as a list of ``(n_rois, T_k)`` arrays (not copied)."""
    if isinstance(signals, np.ndarray) and signals.ndim == 2:
        items: list[Any] = [signals]
    else:
        try:
            items = list(signals)
        except TypeError:
            raise TypeError(
                "signals must be a list over sequences of (n_rois, T) arrays"
            ) from None
    if not items:
        raise ValueError("signals must contain at least one sequence")
    out = []
    for k, item in enumerate(items):
        array = np.asarray(item)
        if array.ndim != 2:
            raise ValueError(
                f"signals[{k}] must be a 2-D (n_rois, T) array, got shape {array.shape}"
            )
        _check_real(array, f"signals[{k}]")
        if out and array.shape[0] != out[0].shape[0]:
            raise ValueError(
                f"signals[{k}] has {array.shape[0]} ROIs but signals[0] has {out[0].shape[0]}"
            )
        out.append(array)
    return out


def _check_lengths(counts: Sequence[NDArray], name: str, single: bool = False) -> None:
    """Raise if any trace has fewer than MIN_SAMPLES observed samples."""
    for k, count in enumerate(counts):
        short = np.flatnonzero(count < MIN_SAMPLES)
        if short.size:
            n = int(count[short[0]])
            where = f"{name}[{k}]" if single else f"ROI {int(short[0])} of {name}[{k}]"
            raise ValueError(
                f"{where} has {n} observed (finite) samples; spike-inference parameters "
                f"need at least {MIN_SAMPLES} per trace"
            )


def _check_mode(mode: Any) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")
    return mode


def _check_gamma(gamma: Any, n: int | None = None) -> NDArray[np.float64]:
    """A given decay factor (scalar, or one per ROI when ``n`` is set)."""
    if isinstance(gamma, (bool, np.bool_)):
        raise TypeError(f"gamma must be a real number, got {gamma!r}")
    values = _as_real_array(gamma, "gamma")
    if n is None:
        if values.ndim != 0:
            raise ValueError(f"gamma must be a single number, got shape {values.shape}")
    elif values.ndim > 1 or (values.ndim == 1 and values.shape[0] != n):
        raise ValueError(f"gamma must be a number or have one value per ROI ({n})")
    if not np.all((values > 0) & (values < 1)):
        raise ValueError(f"gamma must lie strictly between 0 and 1, got {gamma!r}")
    return values


def _check_sigma(sigma: Any, n: int) -> NDArray[np.float64]:
    if isinstance(sigma, (bool, np.bool_)):
        raise TypeError(f"sigma must be a real number, got {sigma!r}")
    values = _as_real_array(sigma, "sigma")
    if values.ndim > 1 or (values.ndim == 1 and values.shape[0] != n):
        raise ValueError(f"sigma must be a number or have one value per ROI ({n})")
    if not np.all(np.isfinite(values) & (values >= 0)):
        raise ValueError(f"sigma must be finite and non-negative, got {sigma!r}")
    return values


def _rois_text(indices: NDArray) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:10])
    more = f", ... ({indices.size} in all)" if indices.size > 10 else ""
    return f"ROI{'s' if indices.size > 1 else ''} {shown}{more}"


# ----------------------------------------------------------------------------
# Computational core
# ----------------------------------------------------------------------------


def _acov_rows(x: NDArray, max_lag: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Autocovariances of the rows of a 2-D array, and their observed counts.

    Missing samples are handled exactly by centring the finite samples on
    their mean and setting the others to zero: a product involving a zero
    adds nothing, which is the same as leaving the pair out of the sum.
    """
    n, length = x.shape
    acov = np.zeros((n, max_lag + 1))
    counts = np.full(n, length, dtype=np.int64)
    if n == 0 or length == 0:
        counts[:] = 0
        return acov, counts
    lags = range(min(max_lag, length - 1) + 1)
    block = max(1, _BLOCK_ELEMENTS // length)
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = np.asarray(x[start:stop], dtype=np.float64)
        finite = np.isfinite(rows)
        if finite.all():
            centred = rows - rows.mean(axis=1, keepdims=True)
        else:
            observed = finite.sum(axis=1)
            counts[start:stop] = observed
            zeroed = np.where(finite, rows, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = zeroed.sum(axis=1) / observed
            centred = np.where(finite, rows - means[:, None], 0.0)
        for k in lags:
            acov[start:stop, k] = np.einsum("ij,ij->i", centred[:, : length - k], centred[:, k:])
    return acov, counts


def _psd_log_power(x: NDArray) -> NDArray[np.float64]:
    """Mean over the noise band of log(P/2), per row (rows without NaN)."""
    from scipy.signal import welch

    nperseg = min(x.shape[1], _PSD_NPERSEG)
    freqs, power = welch(x, fs=1.0, nperseg=nperseg, axis=-1)
    band = (freqs > _PSD_BAND[0]) & (freqs < _PSD_BAND[1])
    with np.errstate(divide="ignore"):
        return np.log(power[:, band] / 2.0).mean(axis=1)


def _psd_sigma_rows(seqs: Sequence[NDArray], rows: NDArray) -> NDArray[np.float64]:
    """The 'psd' noise estimate for the selected ROIs over all sequences."""
    total = np.zeros(rows.size)
    weight = np.zeros(rows.size)
    for seq in seqs:
        block = max(1, _PSD_BLOCK_ELEMENTS // max(seq.shape[1], 1))
        for start in range(0, rows.size, block):
            x = np.asarray(seq[rows[start : start + block]], dtype=np.float64)
            finite = np.isfinite(x)
            counts = finite.sum(axis=1)
            complete = counts == x.shape[1]
            logp = np.empty(x.shape[0])
            if complete.any():
                logp[complete] = _psd_log_power(x[complete])
            # Rows with missing samples: drop them, then batch the rows that
            # keep the same number of samples (often all, when whole frames
            # are missing).
            partial = np.flatnonzero(~complete)
            for count in np.unique(counts[partial]):
                same = partial[counts[partial] == count]
                kept = x[same][finite[same]].reshape(same.size, int(count))
                logp[same] = _psd_log_power(kept)
            total[start : start + block] += counts * logp
            weight[start : start + block] += counts
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.exp(total / weight))


def _gamma_from_acov(a2: NDArray, a3: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """Ratio acov(3)/acov(2), clipped; returns (gamma, capped, floored) masks."""
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = a3 / a2
    finite = np.isfinite(gamma)
    capped = finite & (gamma >= 1)
    floored = ~finite | (gamma <= 0)
    gamma = np.where(capped, GAMMA_CAP, gamma)
    gamma = np.where(floored, GAMMA_FLOOR, gamma)
    return gamma, capped, floored


def _sigma_radicand(c0: NDArray, c1: NDArray, gamma: NDArray, mode: str) -> NDArray:
    if mode == "correct":
        return c0 - c1 / gamma
    return c0 - c1


# ----------------------------------------------------------------------------
# Public estimators
# ----------------------------------------------------------------------------


def autocovariance(trace: ArrayLike, max_lag: int) -> NDArray[np.float64]:
    """Un-normalised autocovariance of a trace over its observed samples.

    Parameters
    ----------
    trace : array_like
        The signal, along the last axis. A 1-D trace is the usual input;
        an N-D array is treated as a stack of independent traces.
    max_lag : int
        Largest lag ``k`` to compute (``>= 0``).

    Returns
    -------
    numpy.ndarray of float64, shape ``trace.shape[:-1] + (max_lag + 1,)``
        ``acov[..., k]`` for ``k = 0, ..., max_lag``.

    Raises
    ------
    ValueError
        If ``max_lag`` is negative or ``trace`` is 0-D.
    TypeError
        If ``max_lag`` is not an integer or ``trace`` is not real.

    Notes
    -----
    With ``x`` the trace, the observed samples are its finite entries (NaN
    and infinities count as missing) and ``xbar`` is the mean of the
    observed samples. Then::

        acov(x, k) = sum_t (x_t - xbar) * (x_{t+k} - xbar),

    where the sum runs over the indices ``t`` for which *both* ``x_t`` and
    ``x_{t+k}`` are observed. The sum is **not** divided by the number of
    terms. An empty sum is 0: so are lags at or beyond the trace length,
    and every lag of a trace with no observed sample.

    Examples
    --------
    >>> autocovariance([1.0, 2.0, 3.0, 4.0], 2)
    array([ 5.  ,  1.25, -1.5 ])
    >>> autocovariance([1.0, 2.0, float('nan'), 4.0], 1)  # mean 7/3; one lag-1 pair
    array([4.66666667, 0.44444444])
    """
    if isinstance(max_lag, (bool, np.bool_)) or not isinstance(max_lag, numbers.Integral):
        raise TypeError(f"max_lag must be an integer, got {max_lag!r}")
    max_lag = int(max_lag)
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    x = _as_real_array(trace, "trace")
    if x.ndim == 0:
        raise ValueError("trace must have at least one dimension")
    lead = x.shape[:-1]
    acov, _ = _acov_rows(x.reshape(-1, x.shape[-1]), max_lag)
    return acov.reshape((*lead, max_lag + 1))


def estimate_gamma(traces: ArrayLike | Iterable[ArrayLike]) -> float:
    """Estimate the AR(1) decay factor of one ROI from its traces.

    Parameters
    ----------
    traces : array_like or sequence of array_like
        The ROI's fluorescence, one 1-D trace per sequence (the traces may
        have different lengths). A single 1-D array is one sequence; the
        rows of a 2-D array are sequences of equal length.

    Returns
    -------
    float
        The decay factor ``gamma``, in ``(0, 1)``.

    Raises
    ------
    ValueError
        If there is no trace, a trace is not 1-D, or a trace has fewer than
        8 observed (finite) samples.
    TypeError
        If a trace is not real-valued.

    Warns
    -----
    SpikeInferenceWarning
        When the estimate is clipped (see Notes).

    Notes
    -----
    For an AR(1) calcium process ``c`` plus white noise [1]_, the autocovariance
    of the observations at lag ``k >= 1`` is that of ``c``, proportional to
    ``gamma**k``; lags 2 and 3 are used so that noise correlated across
    adjacent frames does not bias the ratio. With sums over sequences,

    ``gamma = sum acov(y, 3) / sum acov(y, 2)``,

    each trace centred on the mean of its own observed samples (see
    :func:`autocovariance`). The ratio is repaired with a
    :class:`SpikeInferenceWarning` when it does not describe a decaying
    process: ``gamma >= 1`` (for instance an oscillation with a period of
    a few frames) becomes :data:`GAMMA_CAP` (0.98), and ``gamma <= 0`` or an undefined
    ratio (``acov(2) = 0``) becomes :data:`GAMMA_FLOOR` (0.01), meaning
    calcium that decays within a frame.

    References
    ----------
    .. [1] Pnevmatikakis, E. A. et al. (2016). Simultaneous denoising,
       deconvolution, and demixing of calcium imaging data. *Neuron* 89(2),
       285-299. https://doi.org/10.1016/j.neuron.2015.11.037

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> c = np.zeros(5000)
    >>> for t in range(1, c.size):
    ...     c[t] = 0.9 * c[t - 1] + rng.standard_normal()
    >>> round(estimate_gamma([c[:3000], c[3000:]]), 2)
    0.9
    """
    seqs = _traces_list(traces, "traces")
    acov = sum(_acov_rows(t[None, :], 3)[0][0] for t in seqs)
    gamma, capped, floored = _gamma_from_acov(acov[2:3], acov[3:4])
    if capped[0]:
        warnings.warn(
            f"estimated gamma = acov(3)/acov(2) = {acov[3] / acov[2]:.4g} is >= 1 "
            f"(not a decaying process); using gamma = {GAMMA_CAP}",
            SpikeInferenceWarning,
            stacklevel=2,
        )
    elif floored[0]:
        warnings.warn(
            f"estimated gamma = acov(3)/acov(2) is <= 0 or undefined "
            f"(acov(3) = {acov[3]:.4g}, acov(2) = {acov[2]:.4g}); using gamma = {GAMMA_FLOOR}",
            SpikeInferenceWarning,
            stacklevel=2,
        )
    return float(gamma[0])


def estimate_sigma(
    traces: ArrayLike | Iterable[ArrayLike], gamma: float | None, mode: str = "correct"
) -> float:
    """Estimate the noise standard deviation of one ROI from its traces.

    Parameters
    ----------
    traces : array_like or sequence of array_like
        The ROI's fluorescence, one 1-D trace per sequence (the traces may
        have different lengths). A single 1-D array is one sequence; the
        rows of a 2-D array are sequences of equal length.
    gamma : float or None
        The AR(1) decay factor, strictly between 0 and 1. Only the
        ``'correct'`` mode uses it; the others accept None.
    mode : {'correct', 'robust', 'psd'}
        Estimation method; see Notes.

    Returns
    -------
    float
        The noise standard deviation ``sigma >= 0``.

    Raises
    ------
    ValueError
        If ``mode`` is unknown, ``gamma`` is outside ``(0, 1)`` (or None in
        the ``'correct'`` mode), or a trace is not 1-D or has fewer than 8
        observed (finite) samples.
    TypeError
        If ``gamma`` or a trace is not real-valued.

    Warns
    -----
    SpikeInferenceWarning
        When the ``'correct'`` or ``'robust'`` estimate is not positive and
        the ``'psd'`` estimate is used instead.

    Notes
    -----
    Let ``N`` be the total number of observed samples over all traces and
    ``c0 = sum acov(y, 0) / N``, ``c1 = sum acov(y, 1) / N`` (sums over
    sequences, see :func:`autocovariance`). For an AR(1) process ``c`` plus
    white noise of variance ``sigma**2``, ``c0 = var(c) + sigma**2`` and
    ``c1 = gamma var(c)``, hence the methods

    * ``'correct'``: ``sigma = sqrt(c0 - c1 / gamma)``;
    * ``'robust'``: ``sigma = sqrt(c0 - c1)``, which does not need
      ``gamma`` and is at least the ``'correct'`` value whenever
      ``c1 >= 0``: it overestimates the noise by ``var(c) (1 - gamma)``;
    * ``'psd'``: the noise floor of the power spectrum. For each trace the
      Welch spectrum ``P(f)`` [1]_ is computed (Hann window,
      ``nperseg = min(T, 256)``, half overlap, mean removed, sampling rate
      1) and ``log(P(f) / 2)`` is averaged over the frequencies strictly
      between 0.25 and 0.5 (where white noise dominates the slow calcium
      signal). These per-trace values are averaged over sequences,
      weighted by their numbers of observed samples, and
      ``sigma = sqrt(exp(average))``. Missing samples are dropped: the
      spectrum is that of the observed samples joined end to end, with
      ``T`` their number. (Interpolating across gaps instead would hide
      noise and bias the estimate low.)

    Missing samples reduce ``N`` by one each, but an isolated missing
    sample removes two lag-1 pairs from ``acov(y, 1)``. Scattered missing
    samples therefore bias ``c1`` low by about the missing fraction, and
    the ``'correct'`` and ``'robust'`` estimates high (by roughly 25 % for
    10 % of samples missing at random in a typical recording); a
    contiguous gap costs a single pair and is harmless. The ``'psd'``
    estimate is insensitive to either.

    When the radicand of ``'correct'`` or ``'robust'`` is not positive,
    which happens when the lag-1 autocovariance is large compared with the
    variance, the ``'psd'`` estimate is returned with a warning. It can be
    0 only for a constant trace.

    References
    ----------
    .. [1] Welch, P. (1967). The use of fast Fourier transform for the
       estimation of power spectra. *IEEE Transactions on Audio and
       Electroacoustics* 15(2), 70-73. https://doi.org/10.1109/TAU.1967.1161901

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> noise = 0.5 * rng.standard_normal(20000)
    >>> round(estimate_sigma(noise, None, mode='robust'), 1)
    0.5
    >>> round(estimate_sigma(noise, None, mode='psd'), 1)
    0.5
    """
    mode = _check_mode(mode)
    if gamma is None:
        if mode == "correct":
            raise ValueError("gamma is required by the 'correct' mode (got None)")
        gamma_value = GAMMA_CAP  # unused by the other modes
    else:
        gamma_value = float(_check_gamma(gamma))
    seqs = _traces_list(traces, "traces")
    rows = np.zeros(1, dtype=np.intp)
    stacked = [t[None, :] for t in seqs]
    if mode == "psd":
        return float(_psd_sigma_rows(stacked, rows)[0])
    acov = np.zeros(2)
    total = 0
    for t in stacked:
        a, counts = _acov_rows(t, 1)
        acov[:2] += a[0]
        total += int(counts[0])
    c0, c1 = acov[0] / total, acov[1] / total
    radicand = float(_sigma_radicand(np.array(c0), np.array(c1), np.array(gamma_value), mode))
    if radicand > 0 and math.isfinite(radicand):
        return math.sqrt(radicand)
    sigma = float(_psd_sigma_rows(stacked, rows)[0])
    warnings.warn(
        f"the {mode!r} noise estimate has a non-positive radicand ({radicand:.4g}); "
        f"using the 'psd' estimate sigma = {sigma:.4g}",
        SpikeInferenceWarning,
        stacklevel=2,
    )
    return sigma


def estimate_parameters(
    signals: Sequence[ArrayLike] | NDArray,
    gamma: float | ArrayLike | None = None,
    share_gamma: bool = True,
    mode: str = "correct",
    *,
    sigma: float | ArrayLike | None = None,
) -> dict[str, NDArray[np.float64]]:
    """Estimate the decay factor and noise level of every ROI of an extraction.

    Parameters
    ----------
    signals : sequence of array_like
        The ``raw`` signals of an extraction: a list over sequences of
        ``(n_rois, T_k)`` arrays (the same ROIs, in the same row order, in
        every sequence; lengths may differ). A single 2-D array is one
        sequence. NaN (or infinite) samples are treated as missing.
    gamma : float or array_like, optional
        A given decay factor in ``(0, 1)``, for all ROIs or one per ROI.
        By default it is estimated per ROI with the method of
        :func:`estimate_gamma`.
    share_gamma : bool
        With an estimated ``gamma``, give every ROI the median of the
        per-ROI estimates (taken after clipping). Ignored when ``gamma`` is
        given.
    mode : {'correct', 'robust', 'psd'}
        Noise estimation method, as in :func:`estimate_sigma`; the
        ``'correct'`` mode uses each ROI's final (possibly shared) ``gamma``.
    sigma : float or array_like, optional
        A given noise level (``>= 0``), for all ROIs or one per ROI, used
        instead of an estimate.

    Returns
    -------
    dict
        ``{'gamma': ndarray, 'sigma': ndarray}``, both float64 of shape
        ``(n_rois,)``.

    Raises
    ------
    ValueError
        If ``signals`` is empty, an entry is not 2-D, the entries disagree
        on the number of ROIs, a trace (one ROI in one sequence) has fewer
        than 8 observed samples, ``mode`` is unknown, ``gamma`` is outside
        ``(0, 1)``, or ``sigma`` is negative or not finite.
    TypeError
        If the signals, ``gamma`` or ``sigma`` are not real-valued.

    Warns
    -----
    SpikeInferenceWarning
        Once per kind of repair (``gamma`` capped, ``gamma`` floored,
        ``sigma`` from the ``'psd'`` fallback), naming the ROIs concerned.

    Notes
    -----
    These are the parameters of the AR(1) model of [1]_ and [2]_. The
    results for each ROI equal those of :func:`estimate_gamma` and
    :func:`estimate_sigma` on that ROI's traces, but the autocovariances
    of all ROIs are computed at once, block by block, with missing samples
    handled without a per-ROI loop. The ``'psd'`` estimate batches the
    Welch spectra of all ROIs that keep the same number of observed samples
    in a sequence. For 1,000 ROIs of 10,000 frames the ``'correct'`` and
    ``'robust'`` modes take a few tens of milliseconds, ``'psd'`` a few
    tenths of a second.

    References
    ----------
    .. [1] Pnevmatikakis, E. A. et al. (2016). Simultaneous denoising,
       deconvolution, and demixing of calcium imaging data. *Neuron* 89(2),
       285-299. https://doi.org/10.1016/j.neuron.2015.11.037
    .. [2] Friedrich, J., Zhou, P., & Paninski, L. (2017). Fast online
       deconvolution of calcium imaging data. *PLoS Computational Biology*
       13(3), e1005423. https://doi.org/10.1371/journal.pcbi.1005423

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> raw = [rng.standard_normal((3, 500)), rng.standard_normal((3, 300))]
    >>> raw[0][1, 10:20] = np.nan
    >>> params = estimate_parameters(raw, gamma=0.95, mode='robust')
    >>> params['gamma']
    array([0.95, 0.95, 0.95])
    >>> params['sigma'].round(1)
    array([1., 1., 1.])
    """
    mode = _check_mode(mode)
    seqs = _signals_list(signals)
    n = seqs[0].shape[0]
    given_gamma = None if gamma is None else _check_gamma(gamma, n)
    given_sigma = None if sigma is None else _check_sigma(sigma, n)

    need_acov = given_gamma is None or (given_sigma is None and mode != "psd")
    acov = np.zeros((n, 4))
    total = np.zeros(n, dtype=np.int64)
    counts_per_seq = []
    for seq in seqs:
        if need_acov:
            a, counts = _acov_rows(seq, 3)
            acov += a
        else:
            counts = np.isfinite(seq).sum(axis=1)
        counts_per_seq.append(counts)
        total += counts
    _check_lengths(counts_per_seq, "signals")

    if given_gamma is not None:
        gammas = np.broadcast_to(given_gamma, (n,)).astype(np.float64)
    else:
        gammas, capped, floored = _gamma_from_acov(acov[:, 2], acov[:, 3])
        if capped.any():
            warnings.warn(
                f"estimated gamma >= 1 for {_rois_text(np.flatnonzero(capped))} "
                f"(not a decaying process); using gamma = {GAMMA_CAP} there",
                SpikeInferenceWarning,
                stacklevel=2,
            )
        if floored.any():
            warnings.warn(
                f"estimated gamma <= 0 or undefined for {_rois_text(np.flatnonzero(floored))}; "
                f"using gamma = {GAMMA_FLOOR} there",
                SpikeInferenceWarning,
                stacklevel=2,
            )
        if share_gamma and n:
            gammas = np.full(n, np.median(gammas))

    if given_sigma is not None:
        sigmas = np.broadcast_to(given_sigma, (n,)).astype(np.float64)
    elif mode == "psd":
        sigmas = _psd_sigma_rows(seqs, np.arange(n))
    else:
        radicand = _sigma_radicand(acov[:, 0] / total, acov[:, 1] / total, gammas, mode)
        bad = ~(radicand > 0)
        sigmas = np.sqrt(np.where(bad, 1.0, radicand))
        if bad.any():
            rows = np.flatnonzero(bad)
            sigmas[rows] = _psd_sigma_rows(seqs, rows)
            warnings.warn(
                f"the {mode!r} noise estimate has a non-positive radicand for "
                f"{_rois_text(rows)}; using the 'psd' estimate there",
                SpikeInferenceWarning,
                stacklevel=2,
            )
    return {"gamma": np.ascontiguousarray(gammas), "sigma": np.ascontiguousarray(sigmas)}

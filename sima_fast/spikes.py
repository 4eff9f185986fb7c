"""Spike inference from extracted fluorescence signals (see docs/contract.md#spike-inference).

This module owns spike inference for sima_fast. Inference works on the
``raw`` signals of an extraction, a list over sequences of
``(n_rois, T_k)`` arrays, and models each ROI trace as a first-order
autoregressive (AR(1)) calcium process plus a baseline and white Gaussian
noise, as in [1]_ and [2]_::

    c_t = gamma * c_{t-1} + s_t,        y_t = b + c_t + noise_t,

with a decay factor ``0 < gamma < 1`` and a noise standard deviation
``sigma``. The functions here estimate those two model parameters from the
data and then find the sparsest spike train whose fit leaves a residual of
exactly the noise level (the noise-constrained problem of
docs/contract.md#the-optimisation-problem):

* :func:`deconvolve` -- the exact solver, numba's active-set kernel
  (:mod:`sima_fast.kernels.ar1`) with an OSQP fallback, for given
  parameters.
* :func:`infer_spikes_from_signals` -- estimation and deconvolution for a
  whole extraction; ``ImagingDataset.infer_spikes`` calls it. Its two
  halves are public so that a cluster runs the same code
  (:mod:`sima_fast.distributed`): :func:`prepare_inference` validates the
  signals and estimates the parameters from all ROIs at once, and
  :func:`deconvolve_block` solves a block of ROIs with them fixed
  (:func:`collect_sequence` joins the blocks).
* :func:`spike_inference` -- the same for one trace, as in SIMA.

All estimators are built from the un-normalised autocovariance

    acov(x, k) = sum_t (x_t - mean(x)) * (x_{t+k} - mean(x)),

computed over the observed (finite) samples only: see
:func:`autocovariance` for the exact convention on missing samples. For
one ROI recorded in several sequences the autocovariances of the separate
traces (each centred on its own mean) are summed before any ratio is
taken, so that long sequences weigh more than short ones.

* :func:`estimate_decay` -- the decay factor from the ratio of the lag-3
  and lag-2 autocovariances.
* :func:`estimate_noise` -- the noise level, by one of three methods
  (``'correct'``, ``'robust'`` or ``'psd'``, the last from a Welch power
  spectrum [3]_).
* :func:`estimate_roi_parameters` -- both, for every ROI of an extraction at
  once (vectorised over ROIs).

Questionable estimates are repaired rather than rejected, and
every repair issues a :class:`SpikeInferenceWarning` (a
:class:`RuntimeWarning`).

SIMA's public helpers are here too, with SIMA's signatures, defaults and
return types, so that SIMA's scripts run unchanged:
:func:`get_poisson_spikes`, :func:`estimate_parameters` (one ROI's
traces, returns ``(gamma, sigma)``), :func:`estimate_sigma` (the spectral
noise level of one trace), :func:`estimate_gamma` (AR(p) coefficients),
:func:`default_psd_opts` and :func:`spike_inference`.

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
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sima_fast._validate import ArgumentTypeError, check_bool, check_int, check_real
from sima_fast._warnings import warn

__all__ = [
    "GAMMA_CAP",
    "GAMMA_FLOOR",
    "MIN_SAMPLES",
    "MODES",
    "RSS_RTOL",
    "SOLVERS",
    "PreparedInference",
    "SpikeInferenceWarning",
    "autocovariance",
    "collect_sequence",
    "deconvolve",
    "deconvolve_block",
    "default_psd_opts",
    "estimate_decay",
    "estimate_gamma",
    "estimate_noise",
    "estimate_parameters",
    "estimate_roi_parameters",
    "estimate_sigma",
    "get_poisson_spikes",
    "infer_spikes_from_signals",
    "prepare_inference",
    "spike_inference",
]

#: Noise estimation methods accepted by :func:`estimate_noise`.
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
    if array.dtype.kind == "b":
        raise ArgumentTypeError(
            f"{name} must hold real numbers, got a bool array (a mask, not a trace?)"
        )
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")


#: Largest magnitude of a sample that spike inference accepts. Sums of squares
#: over a trace must stay finite in float64 (about 1.8e308); real fluorescence
#: values are many orders of magnitude below this, so larger values mean
#: corrupt or wrongly scaled data, refused with an error naming the trace.
MAX_MAGNITUDE: float = 1e100


def _check_magnitude(array: NDArray, name: str, rows: bool = True) -> None:
    """Raise if a finite sample of ``array`` exceeds :data:`MAX_MAGNITUDE` in magnitude."""
    if array.dtype.kind != "f" or float(np.finfo(array.dtype).max) <= MAX_MAGNITUDE:
        return  # float32 and integers cannot exceed the limit
    with np.errstate(invalid="ignore"):
        big = np.abs(array) > MAX_MAGNITUDE
    big &= np.isfinite(array)
    if not big.any():
        return
    first = np.argwhere(big)[0]
    where = name if not rows or array.ndim < 2 else f"{name} (ROI {int(first[0])})"
    peak = float(np.max(np.abs(array[big])))
    raise ValueError(
        f"{where} has values up to {peak:.3g} in magnitude, too large to estimate the noise "
        f"level and decay or to deconvolve (float64 sums of squares overflow); spike "
        f"inference accepts |x| <= {MAX_MAGNITUDE:.0e}: rescale the traces, e.g. divide "
        "them by their maximum"
    )


class _NotEstimable(ValueError):
    """Parameters that come out non-finite from finite samples (values too large)."""

    def __init__(self, message: str, rows: NDArray, peak: float) -> None:
        super().__init__(message)
        self.rows = rows
        self.peak = peak


def _check_estimates(
    seqs: Sequence[NDArray], gammas: NDArray, sigmas: NDArray, given: tuple[bool, bool]
) -> None:
    """Raise if an estimated gamma or sigma is not finite (samples too large for float64)."""
    bad = np.zeros(len(gammas), dtype=bool)
    if not given[0]:
        bad |= ~np.isfinite(gammas)
    if not given[1]:
        bad |= ~np.isfinite(sigmas)
    if not bad.any():
        return
    rows = np.flatnonzero(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        peak = max(
            float(np.nanmax(np.abs(np.where(np.isfinite(q), q, np.nan)[rows]))) for q in seqs
        )
    which = [w for w, g in (("gamma", given[0]), ("sigma", given[1])) if not g]
    raise _NotEstimable(
        f"signals: the {' and '.join(which)} of {_rois_text(rows)} cannot be estimated: "
        f"their values (|x| up to {peak:.3g}) are too large for float64 arithmetic (the "
        "autocovariance or spectrum overflows); rescale the traces, e.g. divide them by "
        "their maximum",
        rows,
        peak,
    )


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
        _check_magnitude(array, f"{name}[{k}]")
        if array.ndim != 1:
            raise ValueError(
                f"{name}[{k}] must be a 1-D trace, got an array of shape {array.shape}"
            )
        out.append(array)
    _check_lengths([np.isfinite(a).sum(keepdims=True) for a in out], name, single=True)
    return out


def _signals_list(signals: Any) -> list[NDArray]:
    """Give the 'raw' signals as a list of ``(n_rois, T_k)`` arrays (not copied)."""
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
        _check_magnitude(array, f"signals[{k}]")
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
    """Check a given decay factor (scalar, or one per ROI when ``n`` is set)."""
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
    """Compute the autocovariances of the rows of a 2-D array.

    Missing samples are handled exactly by centring the finite samples on
    their mean and setting the others to zero: a product involving a zero
    adds nothing, which is the same as leaving the pair out of the sum.

    Returns
    -------
    numpy.ndarray
        ``(n, max_lag + 1)`` autocovariances (sums, not divided by length).
    numpy.ndarray
        ``(n,)`` int64: the observed samples of each row.
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
    """Compute the 'psd' noise estimate for the selected ROIs over all sequences."""
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
    """Compute the un-normalised autocovariance of a trace over its observed samples.

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


def estimate_decay(traces: ArrayLike | Iterable[ArrayLike]) -> float:
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
    >>> round(estimate_decay([c[:3000], c[3000:]]), 2)
    0.9
    """
    seqs = _traces_list(traces, "traces")
    acov = sum(_acov_rows(t[None, :], 3)[0][0] for t in seqs)
    gamma, capped, floored = _gamma_from_acov(acov[2:3], acov[3:4])
    if capped[0]:
        warn(
            f"estimated gamma = acov(3)/acov(2) = {acov[3] / acov[2]:.4g} is >= 1 "
            f"(not a decaying process); using gamma = {GAMMA_CAP}",
            SpikeInferenceWarning,
        )
    elif floored[0]:
        warn(
            f"estimated gamma = acov(3)/acov(2) is <= 0 or undefined "
            f"(acov(3) = {acov[3]:.4g}, acov(2) = {acov[2]:.4g}); using gamma = {GAMMA_FLOOR}",
            SpikeInferenceWarning,
        )
    return float(gamma[0])


def estimate_noise(
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
    >>> round(estimate_noise(noise, None, mode='robust'), 1)
    0.5
    >>> round(estimate_noise(noise, None, mode='psd'), 1)
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
    warn(
        f"the noise level (sigma) could not be estimated in {mode!r} mode: its "
        f"formula gave a variance of {radicand:.4g} (the trace varies slowly compared "
        f"with its noise); using the spectral ('psd') estimate sigma = {sigma:.4g}",
        SpikeInferenceWarning,
    )
    return sigma


def estimate_roi_parameters(
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
        :func:`estimate_decay`.
    share_gamma : bool
        With an estimated ``gamma``, give every ROI the median of the
        per-ROI estimates (taken after clipping). Ignored when ``gamma`` is
        given.
    mode : {'correct', 'robust', 'psd'}
        Noise estimation method, as in :func:`estimate_noise`; the
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
    results for each ROI equal those of :func:`estimate_decay` and
    :func:`estimate_noise` on that ROI's traces, but the autocovariances
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
    >>> params = estimate_roi_parameters(raw, gamma=0.95, mode='robust')
    >>> params['gamma']
    array([0.95, 0.95, 0.95])
    >>> params['sigma'].round(1)
    array([1., 1., 1.])
    """
    mode = _check_mode(mode)
    share_gamma = check_bool("share_gamma", share_gamma)
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
    overflow = ~np.isfinite(acov).all(axis=1) if need_acov else np.zeros(n, dtype=bool)

    if given_gamma is not None:
        gammas = np.broadcast_to(given_gamma, (n,)).astype(np.float64)
    else:
        gammas, capped, floored = _gamma_from_acov(acov[:, 2], acov[:, 3])
        if capped.any():
            warn(
                f"estimated gamma >= 1 for {_rois_text(np.flatnonzero(capped))} "
                f"(not a decaying process); using gamma = {GAMMA_CAP} there",
                SpikeInferenceWarning,
            )
        if floored.any():
            warn(
                f"estimated gamma <= 0 or undefined for {_rois_text(np.flatnonzero(floored))}; "
                f"using gamma = {GAMMA_FLOOR} there",
                SpikeInferenceWarning,
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
            warn(
                f"the noise level (sigma) of {_rois_text(rows)} could not be estimated "
                f"in {mode!r} mode: its formula gave a variance <= 0 (the trace varies "
                "slowly compared with its noise); the spectral ('psd') estimate is used "
                "there",
                SpikeInferenceWarning,
            )
    _check_estimates(
        seqs,
        np.where(overflow, np.nan, gammas),
        np.where(overflow, np.nan, sigmas),
        (given_gamma is not None, given_sigma is not None),
    )
    return {"gamma": np.ascontiguousarray(gammas), "sigma": np.ascontiguousarray(sigmas)}


# ----------------------------------------------------------------------------
# Deconvolution
# ----------------------------------------------------------------------------

#: Solvers accepted by :func:`deconvolve` (``'auto'``: the numba active-set
#: solver, with OSQP for any trace it cannot certify).
SOLVERS: tuple[str, ...] = ("auto", "fast", "osqp")

#: Relative tolerance on ``RSS = σ² T`` to which the noise bound is met.
RSS_RTOL: float = 1e-6

_STATUS_NAMES = {0: "optimal", 1: "no spikes", 2: "infeasible", 3: "uncertified"}

# sigma = 0 (an exact fit) is solved with this fraction of the trace's spread.
_EXACT_FIT_SIGMA = 1e-9


def _check_solver(solver: Any) -> str:
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))}; got {solver!r}")
    return solver


def _penalty_weights(n_t: int, gamma: float) -> NDArray[np.float64]:
    """``k`` with ``Σ_{t>=1} s_t = k · c`` (see :mod:`sima_fast.kernels.ar1`)."""
    k = np.full(n_t, 1.0 - gamma)
    if n_t == 1:
        k[0] = 0.0
    else:
        k[0] = -gamma
        k[-1] = 1.0
    return k


def osqp_trace(
    trace: NDArray, gamma: float, sigma: float, rtol: float = RSS_RTOL
) -> tuple[NDArray[np.float64], float, float, str]:
    """Solve one trace's noise-constrained AR(1) problem with the OSQP solver.

    This is the general-purpose path behind ``deconvolve(..., solver="osqp")``
    and, with ``solver="auto"``, the fallback for the traces whose answer the
    fast solver cannot certify; the benchmarks also time it as a baseline of
    :func:`sima_fast.kernels.ar1.deconvolve_trace`.

    Parameters
    ----------
    trace : array_like, shape (T,)
        The fluorescence trace; NaN or infinite samples are missing and left
        out of the fit. At least one sample must be finite.
    gamma : float
        AR(1) decay per sample.
    sigma : float
        Noise standard deviation: the residual is held at ``σ² T_obs``.
    rtol : float
        Relative tolerance on that residual.

    Returns
    -------
    calcium : numpy.ndarray, float64 (T,)
        The fitted calcium, without the baseline (missing samples get the
        model's value).
    baseline : float
        The fitted baseline.
    lam : float
        The penalty ``λ`` that meets the noise bound (``inf`` when the
        spike-free fit already meets it; when the problem is infeasible, the
        small ``λ`` of the least-residual fit returned).
    status : str
        ``"optimal"``, ``"no spikes"``, ``"infeasible"``, or OSQP's own
        status when OSQP did not report the last programme solved.

    Notes
    -----
    The noise-constrained problem is solved as a sequence of penalised
    quadratic programmes in ``x = (c_0 .. c_{T-1}, b)``::

        minimise ½ Σ_obs (y_t - b - c_t)² + λ k·c   s.t.  c_0 >= 0,  c_t - γ c_{t-1} >= 0,

    with ``λ`` found by Brent's method on ``RSS(λ) = σ² T_obs`` (the residual
    is non-decreasing in ``λ``). Each solve is warm-started from the last and
    polished: once OSQP has found the active set at a moderate tolerance,
    polishing solves the equality-constrained system on it exactly.
    """
    import osqp
    import scipy.optimize
    import scipy.sparse as sp

    from sima_fast.kernels.ar1 import spike_free_fit

    gamma = float(_check_gamma(gamma))
    sigma = float(_check_sigma(sigma, 1))
    rtol = check_real("rtol", rtol, low=0.0)
    array = np.asarray(trace)
    _check_real(array, "trace")
    _check_magnitude(array, "trace", rows=False)
    if array.ndim != 1 or not np.isfinite(array).any():
        raise ValueError(
            f"trace must be 1-D with at least one finite sample, got shape {array.shape}"
        )
    y = np.asarray(array, dtype=np.float64)
    n_t = y.shape[0]
    obs = np.isfinite(y)
    w = obs.astype(np.float64)
    n_obs = float(w.sum())
    shift = float(y[obs].mean())
    yy = np.where(obs, y - shift, 0.0)
    target = sigma * sigma * n_obs
    gpow = gamma ** np.arange(n_t + 1, dtype=np.float64)

    b_free, v_free, rss_free = spike_free_fit(yy, w, gpow, n_obs)
    if rss_free <= target * (1.0 + rtol):
        return v_free * gpow[:n_t], b_free + shift, math.inf, "no spikes"

    # P = [[diag(w), w], [w', n_obs]] (upper triangle), A = [bidiagonal | 0].
    p = sp.bmat(
        [[sp.diags(w), sp.csc_matrix(w[:, None])], [None, sp.csc_matrix([[n_obs]])]],
        format="csc",
    )
    a = sp.diags([np.ones(n_t), np.full(n_t - 1, -gamma)], [0, -1], shape=(n_t, n_t))
    a = sp.hstack([a, sp.csc_matrix((n_t, 1))], format="csc")
    q_data = -np.concatenate([w * yy, [float((w * yy).sum())]])
    q_pen = np.concatenate([_penalty_weights(n_t, gamma), [0.0]])
    solver = osqp.OSQP()
    solver.setup(
        p,
        q_data.copy(),
        a,
        np.zeros(n_t),
        np.full(n_t, np.inf),
        verbose=False,
        eps_abs=1e-7,
        eps_rel=1e-7,
        polishing=True,
        max_iter=200_000,
        eps_prim_inf=1e-15,
        eps_dual_inf=1e-15,
    )
    state: dict[str, Any] = {}

    def solve(lam: float) -> float:
        solver.update(q=q_data + lam * q_pen)
        result = solver.solve(raise_error=False)
        x = np.asarray(result.x, dtype=np.float64)
        c = np.maximum(x[:n_t], 0.0)
        b = float(x[n_t])
        r = (yy - b - c)[obs]
        rss = float(r @ r)
        state[lam] = (c, b, str(result.info.status))
        return rss - target

    # At λ = 0 the programme has a cost-free direction (constant calcium
    # against the baseline), so the search starts just above it.
    lo = 1e-9 * max(sigma, 1e-12)
    if solve(lo) > target * rtol:
        c, b, status = state[lo]
        return c, b + shift, lo, "infeasible" if status == "solved" else status
    hi = max(sigma, 1e-12)
    while solve(hi) < 0.0:
        lo = hi
        hi *= 4.0
        if hi > 1e12 * max(sigma, 1.0):
            break
    lam = scipy.optimize.brentq(solve, lo, hi, xtol=1e-14 * hi, rtol=1e-12, maxiter=200)
    if lam not in state:
        solve(lam)
    c, b, status = state[lam]
    return c, b + shift, float(lam), "optimal" if status == "solved" else status


def deconvolve(
    traces: ArrayLike,
    gamma: float | ArrayLike,
    sigma: float | ArrayLike,
    *,
    solver: str = "auto",
    n_processes: int | None = None,
) -> dict[str, NDArray]:
    """Solve the noise-constrained AR(1) deconvolution problem for each trace.

    For a trace ``y`` with decay factor ``γ`` and noise level ``σ`` this finds
    the calcium ``c``, spikes ``s`` and baseline ``b`` of::

        minimise Σ_t s_t   subject to   c_t = γ c_{t-1} + s_t,  s >= 0,  c_{-1} >= 0,
                                        ‖y - b - c‖ <= σ √T

    with the norm and ``T`` over the observed (finite) samples only
    (docs/contract.md#the-optimisation-problem). The initial calcium
    ``c_{-1}`` is free, so ``s_0`` is always 0 and the decay of whatever
    calcium the recording starts with is part of ``c``. Missing samples get
    the model's calcium but do not enter the fit.

    Parameters
    ----------
    traces : array_like
        One trace ``(T,)`` or several ``(n, T)``; float32 or float64 (other
        real types are converted). NaN or infinite samples are missing.
    gamma : float or array_like
        Decay factor in ``(0, 1)``, for all traces or one per trace.
    sigma : float or array_like
        Noise standard deviation ``>= 0``, for all traces or one per trace.
        ``0`` asks for an exact fit and is solved as its limit, ``σ`` equal
        to ``1e-9`` times the trace's standard deviation.
    solver : {'auto', 'fast', 'osqp'}
        ``'fast'``: the numba active-set solver of
        :mod:`sima_fast.kernels.ar1` alone. ``'osqp'``: the same problem
        through OSQP (for checking; a hundred or more times slower).
        ``'auto'`` (default): the fast solver, and OSQP for any trace whose
        answer it cannot certify.
    n_processes : int, optional
        Threads for the fast solver (default: numba's thread count). The
        results do not depend on it.

    Returns
    -------
    dict
        ``calcium`` and ``spikes`` (float64, the shape of ``traces``; spikes
        not normalised), and per trace (scalars for one trace): ``baseline``,
        ``lam`` (the multiplier of the spike penalty, ``inf`` when no spikes
        are needed), ``status`` (``'optimal'``, ``'no spikes'``,
        ``'infeasible'`` when even a spike at every sample cannot bring the
        residual down to ``σ √T``, in which case the least-residual fit is
        returned, ``'empty'`` for a trace without observed samples, whose
        outputs are NaN) and ``solver`` (``'fast'`` or ``'osqp'``, the path
        that produced the answer).

    Raises
    ------
    ValueError
        A trace with 1 to 7 observed samples, ``gamma`` outside ``(0, 1)``,
        a negative or non-finite ``sigma``, an unknown ``solver``, or
        ``n_processes < 1``.

    Notes
    -----
    The fast solver is exact: each sweep solves the penalised problem for
    fixed ``(λ, b)`` by pool-adjacent violators [1]_, and the search stops
    only when both optimality conditions hold at once (residual sum of
    squares equal to ``σ² T`` within a relative ``1e-6``, and the residuals
    summing to zero, which makes ``b`` optimal). About three sweeps suffice
    for typical traces: roughly half a millisecond for 10,000 samples on
    one core.

    References
    ----------
    .. [1] Friedrich, J., Zhou, P., & Paninski, L. (2017). Fast online
       deconvolution of calcium imaging data. *PLoS Computational Biology*
       13(3), e1005423. https://doi.org/10.1371/journal.pcbi.1005423

    Examples
    --------
    >>> gamma = 0.9
    >>> spikes = np.zeros(60)
    >>> spikes[[10, 30, 31]] = [1.0, 2.0, 1.0]
    >>> calcium = np.zeros(60)
    >>> for t in range(60):
    ...     calcium[t] = (gamma * calcium[t - 1] if t else 0.0) + spikes[t]
    >>> noise = 0.01 * np.random.default_rng(0).standard_normal(60)
    >>> result = deconvolve(3.0 + calcium + noise, gamma, 0.01)
    >>> result['status'], result['solver']
    ('optimal', 'fast')
    >>> np.flatnonzero(result['spikes'] > 0.5)
    array([10, 30, 31])
    >>> round(float(result['baseline']), 1)
    3.0
    """
    from sima_fast._threads import kernel_threads
    from sima_fast.kernels import ar1

    solver = _check_solver(solver)
    array = np.asarray(traces)
    _check_real(array, "traces")
    _check_magnitude(array, "traces")
    if array.ndim not in (1, 2):
        raise ValueError(f"traces must be 1-D (T,) or 2-D (n, T), got shape {array.shape}")
    single = array.ndim == 1
    rows = array[None, :] if single else array
    if rows.dtype not in (np.float32, np.float64):
        rows = rows.astype(np.float64)
    rows = np.ascontiguousarray(rows)
    n, n_t = rows.shape
    gammas = np.broadcast_to(_check_gamma(gamma, n), (n,)).astype(np.float64)
    sigmas = np.broadcast_to(_check_sigma(sigma, n), (n,)).astype(np.float64)
    if n_processes is not None:
        n_processes = check_int("n_processes", n_processes, low=1)

    counts = np.isfinite(rows).sum(axis=1)
    zero = np.flatnonzero((sigmas == 0) & (counts > 0))
    if zero.size:
        # An exact fit: solved as its limit, a noise level far below the data's spread.
        with np.errstate(invalid="ignore"):
            spread = np.nanstd(rows[zero].astype(np.float64), axis=1)
        sigmas = sigmas.copy()
        sigmas[zero] = _EXACT_FIT_SIGMA * np.where(spread > 0, spread, 1.0)
    short = np.flatnonzero((counts > 0) & (counts < MIN_SAMPLES))
    if short.size:
        raise ValueError(
            f"trace {int(short[0])} has {int(counts[short[0]])} observed (finite) samples; "
            f"deconvolution needs at least {MIN_SAMPLES}"
        )
    empty = counts == 0
    todo = np.flatnonzero(~empty)
    full = todo.size == n
    # Outputs are written by the kernel in place when no row is empty.
    calcium = np.empty((n, n_t)) if full else np.full((n, n_t), np.nan)
    spikes = np.empty((n, n_t)) if full else np.full((n, n_t), np.nan)
    baseline = np.full(n, np.nan)
    lam = np.full(n, np.nan)
    codes = np.full(n, -1, dtype=np.int64)
    used = np.full(n, "fast", dtype=object)

    if todo.size and solver != "osqp":
        sub = rows if full else rows[todo]
        c = calcium if full else np.empty((todo.size, n_t))
        s = spikes if full else np.empty((todo.size, n_t))
        b = np.empty(todo.size)
        lm = np.empty(todo.size)
        st = np.empty(todo.size, dtype=np.int64)
        sw = np.empty(todo.size, dtype=np.int64)
        with kernel_threads(n_processes) as threads:
            n_work = min(todo.size, 4 * threads) if threads > 1 else 1
            ar1.deconvolve_batch(
                sub,
                gammas[todo],
                sigmas[todo],
                c,
                s,
                b,
                lm,
                st,
                sw,
                RSS_RTOL,
                60,
                n_work,
                ar1.WARM_LEN,
            )
        if not full:
            calcium[todo] = c
            spikes[todo] = s
        baseline[todo] = b
        lam[todo] = lm
        codes[todo] = st
    status = np.array(["empty", *(_STATUS_NAMES[k] for k in range(4))], dtype=object)[codes + 1]
    redo = todo if solver == "osqp" else todo[status[todo] == "uncertified"]
    if solver == "fast":
        redo = redo[:0]
    for i in redo:
        c_i, b_i, lam_i, status_i = osqp_trace(rows[i], float(gammas[i]), float(sigmas[i]))
        calcium[i] = c_i
        spikes[i, 0] = 0.0
        spikes[i, 1:] = np.maximum(c_i[1:] - gammas[i] * c_i[:-1], 0.0)
        baseline[i] = b_i
        lam[i] = lam_i
        status[i] = status_i
        used[i] = "osqp"
    out: dict[str, Any] = {
        "calcium": calcium,
        "spikes": spikes,
        "baseline": baseline,
        "lam": lam,
        "status": status.astype(str),
        "solver": used.astype(str),
    }
    if single:
        out = {k: (v[0] if k in ("calcium", "spikes") else v[0].item()) for k, v in out.items()}
    return out


def _normalise_rows(spikes: NDArray) -> None:
    """Divide each row by its maximum, in place (all-zero and all-NaN rows unchanged)."""
    if spikes.size == 0:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        peak = np.nanmax(spikes, axis=-1, keepdims=True)
    spikes /= np.where(peak > 0, peak, 1.0)


class PreparedInference(NamedTuple):
    """Validated spike-inference inputs and the parameters of every ROI.

    What :func:`prepare_inference` returns and what :func:`deconvolve_block`
    and :func:`collect_sequence` take; unpacks as a 4-tuple.

    Attributes
    ----------
    signals : list of numpy.ndarray
        The signals, one ``(n_rois, T_k)`` array per sequence (not copied).
    empty : numpy.ndarray of bool
        ROIs with no finite sample in any sequence.
    gamma, sigma : numpy.ndarray of float64
        The decay factor and noise level per ROI (NaN for empty ROIs).
    """

    signals: list[NDArray]
    empty: NDArray[np.bool_]
    gamma: NDArray[np.float64]
    sigma: NDArray[np.float64]


def prepare_inference(
    signals: Sequence[ArrayLike] | NDArray,
    gamma: float | ArrayLike | None = None,
    share_gamma: bool = True,
    mode: str = "correct",
    sigma: float | ArrayLike | None = None,
    solver: str = "auto",
) -> PreparedInference:
    """Validate the inputs of spike inference, flag empty ROIs and find γ and σ.

    The part of :func:`infer_spikes_from_signals` that looks at all ROIs at
    once (a shared ``gamma`` is the median over every ROI); what follows is
    independent per ROI, so it can be split into blocks of ROIs
    (:func:`deconvolve_block`). ROIs without any finite sample are reported
    in one :class:`SpikeInferenceWarning`, attributed to the caller's caller,
    and get NaN parameters.

    Parameters
    ----------
    signals : sequence of array_like
        The ``raw`` signals: a list over sequences of ``(n_rois, T_k)``
        arrays (one 2-D array is one sequence).
    gamma, share_gamma, mode, sigma
        As in :func:`estimate_roi_parameters`.
    solver : {'auto', 'fast', 'osqp'}
        As in :func:`deconvolve` (validated here, before any work).

    Returns
    -------
    PreparedInference
        ``(signals, empty, gamma, sigma)``.

    Raises
    ------
    ValueError, TypeError
        As :func:`infer_spikes_from_signals`.
    """
    seqs = _signals_list(signals)
    _check_solver(solver)
    share_gamma = check_bool("share_gamma", share_gamma)
    n = seqs[0].shape[0]
    observed = np.zeros(n, dtype=np.int64)
    for seq in seqs:
        observed += np.isfinite(seq).sum(axis=1)
    empty = observed == 0
    if empty.any():
        warn(
            f"{_rois_text(np.flatnonzero(empty))} ha{'ve' if empty.sum() > 1 else 's'} no "
            "observed samples (empty ROI?); their spikes and fits are NaN",
            SpikeInferenceWarning,
        )
    keep = np.flatnonzero(~empty)
    gammas = np.full(n, np.nan)
    sigmas = np.full(n, np.nan)
    if keep.size:
        sub_gamma, sub_sigma = gamma, sigma
        if gamma is not None and np.ndim(gamma) == 1:
            sub_gamma = np.asarray(_check_gamma(gamma, n))[keep]
        if sigma is not None and np.ndim(sigma) == 1:
            sub_sigma = np.asarray(_check_sigma(sigma, n))[keep]
        sub = [seq if keep.size == n else seq[keep] for seq in seqs]
        params = estimate_roi_parameters(sub, sub_gamma, share_gamma, mode, sigma=sub_sigma)
        gammas[keep] = params["gamma"]
        sigmas[keep] = params["sigma"]
    else:
        _check_mode(mode)
    return PreparedInference(seqs, empty, gammas, sigmas)


def deconvolve_block(
    traces: ArrayLike,
    gamma: ArrayLike,
    sigma: ArrayLike,
    empty: ArrayLike,
    solver: str = "auto",
    n_processes: int | None = None,
) -> dict[str, NDArray]:
    """Deconvolve a block of ROIs of one sequence with their parameters fixed.

    The per-ROI work of :func:`infer_spikes_from_signals`: every ROI is
    solved independently, so blocks solved apart and joined by
    :func:`collect_sequence` are identical to one call over all ROIs.

    Parameters
    ----------
    traces : array_like
        ``(n, T)`` traces of ``n`` ROIs in one sequence; NaN samples are
        missing.
    gamma, sigma : array_like
        ``(n,)`` decay factors and noise levels (as
        :func:`prepare_inference` gives them; ignored for empty ROIs).
    empty : array_like of bool
        ``(n,)``: ROIs with no observed sample in any sequence; their outputs
        are NaN.
    solver : {'auto', 'fast', 'osqp'}
        As in :func:`deconvolve`.
    n_processes : int, optional
        Kernel threads (default: numba's thread count).

    Returns
    -------
    dict
        ``spikes`` ``(n, T)`` (each row divided by its maximum), ``fits``
        ``(n, T)`` (the denoised fluorescence ``b + c``), and per ROI
        ``baseline``, ``lambda``, ``status`` and ``solver`` (``''`` for a
        trace without observed samples).
    """
    empty = np.asarray(empty, dtype=bool)
    # Empty ROIs are NaN rows for deconvolve(); give them placeholder parameters.
    solve_gamma = np.where(empty, 0.5, gamma)
    solve_sigma = np.where(empty, 1.0, sigma)
    result = deconvolve(traces, solve_gamma, solve_sigma, solver=solver, n_processes=n_processes)
    calcium = result["calcium"]
    spikes = result["spikes"]
    status = result["status"]
    _normalise_rows(spikes)
    calcium += result["baseline"][:, None]  # the fit b + c, in place
    return {
        "spikes": spikes,
        "fits": calcium,
        "baseline": result["baseline"],
        "lambda": result["lam"],
        "status": status,
        "solver": np.where(status == "empty", "", result["solver"]),
    }


def collect_sequence(
    prepared: PreparedInference, k: int, blocks: list[dict[str, NDArray]], verbose: bool = False
) -> tuple[NDArray, NDArray, dict[str, NDArray]]:
    """Join the blocks of ROIs of one sequence into its spike-inference outputs.

    Warns (a :class:`SpikeInferenceWarning`, attributed to the caller's
    caller) about ROIs whose noise bound could not be met, with their global
    indices, and prints the progress line of ``verbose``.

    Parameters
    ----------
    prepared : PreparedInference
        What :func:`prepare_inference` returned.
    k : int
        Index of the sequence.
    blocks : list of dict
        :func:`deconvolve_block` of consecutive blocks of ROIs covering all
        ROIs of sequence ``k``, in ROI order (at least one).
    verbose : bool, optional
        Print one progress line.

    Returns
    -------
    spikes, fits : numpy.ndarray
        ``(n_rois, T_k)``.
    parameters : dict
        Per-ROI arrays ``sigma``, ``gamma``, ``baseline``, ``lambda``,
        ``status`` and ``solver``.
    """
    verbose = check_bool("verbose", verbose)
    if len(blocks) == 1:
        joined = blocks[0]
    else:
        joined = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}
    status = joined["status"]
    infeasible = np.flatnonzero(status == "infeasible")
    if infeasible.size:
        warn(
            f"sequence {k}: the noise bound cannot be met for {_rois_text(infeasible)} "
            "(sigma too small for the data); the least-residual fit is returned",
            SpikeInferenceWarning,
        )
    if verbose:
        n_osqp = int((joined["solver"] == "osqp").sum())
        print(
            f"infer_spikes: sequence {k + 1}/{len(prepared.signals)}: "
            f"{int((~prepared.empty).sum())} ROIs x {prepared.signals[k].shape[1]} frames"
            + (f" ({n_osqp} solved by OSQP)" if n_osqp else "")
        )
    parameters = {
        "sigma": prepared.sigma.copy(),
        "gamma": prepared.gamma.copy(),
        "baseline": joined["baseline"],
        "lambda": joined["lambda"],
        "status": status,
        "solver": joined["solver"],
    }
    return joined["spikes"], joined["fits"], parameters


def infer_spikes_from_signals(
    signals: Sequence[ArrayLike] | NDArray,
    gamma: float | ArrayLike | None = None,
    share_gamma: bool = True,
    mode: str = "correct",
    verbose: bool = False,
    *,
    sigma: float | ArrayLike | None = None,
    solver: str = "auto",
    n_processes: int | None = None,
) -> tuple[list[NDArray], list[NDArray], list[dict[str, NDArray]]]:
    """Infer spikes for every ROI of an extraction (the work of ``infer_spikes``).

    :func:`prepare_inference` estimates the parameters from all ROIs, then
    each sequence is one :func:`deconvolve_block` over all its ROIs
    (:mod:`sima_fast.distributed` solves blocks of ROIs on a cluster
    instead), joined by :func:`collect_sequence`.

    Parameters
    ----------
    signals : sequence of array_like
        The ``raw`` signals: a list over sequences of ``(n_rois, T_k)``
        arrays (one 2-D array is one sequence). NaN samples are missing. A
        ROI with no observed sample at all (an empty ROI) gets NaN outputs
        and a :class:`SpikeInferenceWarning`.
    gamma, share_gamma, mode, sigma
        As in :func:`estimate_roi_parameters`: the decay factor and noise level
        are estimated per ROI from all of its sequences unless given.
    verbose : bool
        Print one progress line per sequence.
    solver : {'auto', 'fast', 'osqp'}
        As in :func:`deconvolve`.
    n_processes : int, optional
        Kernel threads (default: numba's thread count).

    Returns
    -------
    spikes : list of ndarray
        Per sequence, ``(n_rois, T_k)`` float64 spikes, each ROI's row divided
        by its maximum (an all-zero row stays zero).
    fits : list of ndarray
        Per sequence, the denoised fluorescence ``b + c`` ``(n_rois, T_k)``,
        including the decay of the calcium present at the first frame and
        defined at missing samples too.
    parameters : list of dict
        Per sequence, per-ROI arrays ``sigma``, ``gamma``, ``baseline``,
        ``lambda`` (spike-penalty multiplier; ``inf`` when no spikes were
        needed), ``status`` and ``solver`` (see :func:`deconvolve`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> gamma, n_t = 0.95, 3000
    >>> spikes = (rng.random((2, n_t)) < 0.02).astype(float)
    >>> calcium = np.zeros_like(spikes)
    >>> for t in range(n_t):
    ...     calcium[:, t] = (gamma * calcium[:, t - 1] if t else 0.0) + spikes[:, t]
    >>> raw = [1.0 + calcium + 0.2 * rng.standard_normal((2, n_t))]
    >>> inferred, fits, params = infer_spikes_from_signals(raw)
    >>> params[0]['gamma'].round(1), params[0]['sigma'].round(1)
    (array([0.9, 0.9]), array([0.2, 0.2]))
    >>> bool(all(np.corrcoef(inferred[0][i], spikes[i])[0, 1] > 0.9 for i in range(2)))
    True
    """
    verbose = check_bool("verbose", verbose)
    prepared = prepare_inference(signals, gamma, share_gamma, mode, sigma, solver)
    spikes_out: list[NDArray] = []
    fits_out: list[NDArray] = []
    params_out: list[dict[str, NDArray]] = []
    for k, seq in enumerate(prepared.signals):
        block = deconvolve_block(
            seq, prepared.gamma, prepared.sigma, prepared.empty, solver, n_processes
        )
        spikes, fits, params = collect_sequence(prepared, k, [block], verbose)
        spikes_out.append(spikes)
        fits_out.append(fits)
        params_out.append(params)
    return spikes_out, fits_out, params_out


def spike_inference(
    fluor: ArrayLike,
    sigma: float | None = None,
    gamma: float | None = None,
    mode: str = "correct",
    ar_order: int = 2,
    psd_opts: dict[str, Any] | None = None,
    verbose: bool = False,
    *,
    solver: str = "auto",
) -> tuple[NDArray[np.float64], NDArray[np.float64], dict[str, Any]]:
    """Infer the spike train under one fluorescence trace (SIMA's single-trace call).

    Parameters
    ----------
    fluor : array_like
        1-D fluorescence trace; NaN samples are missing.
    sigma : float, optional
        Noise standard deviation; estimated with ``mode`` if None.
    gamma : float, optional
        Decay factor in ``(0, 1)``; estimated from the autocovariance if None.
    mode : {'correct', 'robust', 'psd'}
        Noise estimation method (see :func:`estimate_noise`).
    ar_order : int, optional
        Accepted for SIMA's signature (its ``'psd'`` mode fitted an AR(p)
        model); sima_fast's model is AR(1) whatever the value. Default: 2.
    psd_opts : dict, optional
        SIMA's options of the ``'psd'`` mode (see :func:`default_psd_opts`):
        ``noise_range`` and ``noise_method`` set how an unknown ``sigma`` is
        estimated (by :func:`estimate_sigma`); the other keys are accepted
        and unused. Default: None (the ``'psd'`` estimate of
        :func:`estimate_noise`).
    verbose : bool, optional
        Print one line with the estimates and the solver's result.
        Default: False.
    solver : {'auto', 'fast', 'osqp'}
        As in :func:`deconvolve`.

    Returns
    -------
    spikes : ndarray
        The inferred spikes, divided by their maximum (all zeros if none).
    fit : ndarray
        The denoised fluorescence ``b + c``.
    parameters : dict
        ``sigma``, ``gamma``, ``baseline`` and ``lambda`` (floats), ``status``
        and ``solver`` (str).

    Raises
    ------
    ValueError
        If ``fluor`` is not 1-D, has fewer than 8 observed samples or values
        too large to estimate with; an unknown ``mode``; ``gamma`` outside
        ``(0, 1)``; a negative ``sigma``; ``ar_order`` below 1.
    TypeError
        If ``fluor`` is not real-valued, ``psd_opts`` is not a dict or
        ``verbose`` not a bool.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> calcium = np.zeros(2000)
    >>> for t in range(1, 2000):
    ...     calcium[t] = 0.9 * calcium[t - 1] + (rng.random() < 0.03)
    >>> trace = 2.0 + calcium + 0.1 * rng.standard_normal(2000)
    >>> spikes, fit, params = spike_inference(trace)
    >>> round(params['gamma'], 2), round(params['sigma'], 1), round(params['baseline'], 1)
    (0.9, 0.1, 2.0)
    >>> float(spikes.max())
    1.0
    """
    array = np.asarray(fluor)
    _check_real(array, "fluor")
    if array.ndim != 1:
        raise ValueError(f"fluor must be a 1-D trace, got an array of shape {array.shape}")
    _check_magnitude(array, "fluor", rows=False)
    _check_lengths([np.isfinite(array).sum(keepdims=True)], "fluor", single=True)
    mode = _check_mode(mode)
    check_int("ar_order", ar_order, low=1)
    verbose = check_bool("verbose", verbose)
    opts = _psd_options(psd_opts)
    if gamma is not None:
        _check_gamma(gamma)
    if sigma is not None:
        _check_sigma(sigma, 1)
    elif mode == "psd" and psd_opts is not None:
        sigma = estimate_sigma(array, opts["noise_range"], opts["noise_method"])
    try:
        spikes, fits, params = infer_spikes_from_signals(
            [array[None, :]], gamma, False, mode, sigma=sigma, solver=solver
        )
    except _NotEstimable as err:
        missing = " and ".join(n for n, v in (("gamma", gamma), ("sigma", sigma)) if v is None)
        raise ValueError(
            f"fluor: its values (|x| up to {err.peak:.3g}) are too large to estimate {missing} "
            "(float64 overflows); rescale the trace (e.g. divide it by its maximum) or pass "
            f"{missing}"
        ) from None
    p = params[0]
    out = {
        "sigma": float(p["sigma"][0]),
        "gamma": float(p["gamma"][0]),
        "baseline": float(p["baseline"][0]),
        "lambda": float(p["lambda"][0]),
        "status": str(p["status"][0]),
        "solver": str(p["solver"][0]),
    }
    if verbose:
        print(
            f"spike_inference: {int(np.isfinite(array).sum())} samples, gamma = "
            f"{out['gamma']:.4g}, sigma = {out['sigma']:.4g}, baseline = {out['baseline']:.4g}: "
            f"{out['status']} ({out['solver']} solver)"
        )
    return spikes[0][0], fits[0][0], out


# ----------------------------------------------------------------------------
# SIMA's helpers, with SIMA's signatures
# ----------------------------------------------------------------------------

_SIGMA_AVERAGES = ("mean", "median", "logmexp")


def default_psd_opts() -> dict[str, Any]:
    """Return the default options of the ``'psd'`` mode, as SIMA named them.

    Returns
    -------
    dict
        ``noise_range`` ``(0.25, 0.5)`` and ``noise_method`` ``'logmexp'``
        (used by :func:`estimate_sigma`), ``lags`` 5 and ``fudge_factor`` 1
        (used by :func:`estimate_gamma`), and SIMA's solver settings
        ``method``, ``bas_nonneg``, ``resparse`` and ``verbosity``, accepted
        and unused (sima_fast has its own solver).

    Examples
    --------
    >>> default_psd_opts()['noise_range']
    (0.25, 0.5)
    """
    return {
        "method": "cvx",
        "bas_nonneg": True,
        "noise_range": _PSD_BAND,
        "noise_method": "logmexp",
        "lags": 5,
        "resparse": 0,
        "fudge_factor": 1,
        "verbosity": False,
    }


def _psd_options(psd_opts: Any) -> dict[str, Any]:
    if psd_opts is None:
        return default_psd_opts()
    if not isinstance(psd_opts, dict):
        raise ArgumentTypeError(
            f"psd_opts must be a dict (see default_psd_opts) or None, got {psd_opts!r}"
        )
    return {**default_psd_opts(), **psd_opts}


def _one_trace(fluor: Any, name: str = "fluor") -> NDArray[np.float64]:
    """Return a single 1-D trace as float64, its missing samples dropped."""
    array = _as_real_array(fluor, name)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D trace, got an array of shape {array.shape}")
    _check_magnitude(array, name, rows=False)
    array = array[np.isfinite(array)]
    _check_lengths([np.array([array.size])], name, single=True)
    return array


def get_poisson_spikes(
    seed: int = 11111, rate: float = 5, steps: int = 1000, deltat: float = 1 / 30
) -> NDArray[np.float64]:
    """Generate a Poisson spike train: each time bin holds a spike with probability rate × deltat.

    Parameters
    ----------
    seed : int, optional
        Seed of the random generator (0 <= seed < 2**32). Default: 11111.
    rate : float, optional
        Mean firing rate in Hz. Default: 5.
    steps : int, optional
        Number of time bins. Default: 1000.
    deltat : float, optional
        Width of a time bin in seconds. Default: 1/30.

    Returns
    -------
    numpy.ndarray
        ``(steps,)`` float64 of 0.0 and 1.0. The same seed gives the same
        train as SIMA's function of this name (the uniform draws of numpy's
        legacy ``RandomState``), without touching numpy's global generator.

    Raises
    ------
    ValueError
        For a negative ``rate``, ``steps`` or ``deltat``, or a seed outside
        ``[0, 2**32)``.
    sima_fast._validate.ArgumentTypeError
        For a non-number.

    Examples
    --------
    >>> train = get_poisson_spikes(seed=1, rate=3, steps=3000, deltat=0.01)
    >>> train.shape, sorted(set(train.tolist()))
    ((3000,), [0.0, 1.0])
    >>> bool(60 < train.sum() < 120)
    True
    """
    seed = check_int("seed", seed, low=0, high=2**32 - 1)
    rate = check_real("rate", rate, low=0)
    steps = check_int("steps", steps, low=0)
    deltat = check_real("deltat", deltat, low=0)
    draws = np.random.RandomState(seed).uniform(0.0, 1.0, steps)
    return (draws <= rate * deltat).astype(np.float64)


def estimate_sigma(
    fluor: ArrayLike, range_ff: tuple[float, float] = (0.25, 0.5), method: str = "logmexp"
) -> float:
    """Estimate the noise level from the high-frequency power spectrum of one trace (SIMA's form).

    The Welch power spectrum ``P(f)`` of the trace (Hann window, segments of
    ``min(T, 256)`` samples overlapping by half, mean removed, one sample
    per unit time) is averaged over the frequencies strictly inside
    ``range_ff``, where white noise dominates slow calcium transients, and
    ``sigma = sqrt(average of P / 2)``.

    Parameters
    ----------
    fluor : array_like
        1-D fluorescence trace; missing (non-finite) samples are dropped.
    range_ff : tuple of 2 floats, optional
        The frequency band, in cycles per sample (0 to 0.5, the Nyquist
        frequency). Default: ``(0.25, 0.5)``.
    method : {'logmexp', 'mean', 'median'}, optional
        How ``P / 2`` is averaged over the band: the exponential of the mean
        of its logarithm (default), the mean or the median.

    Returns
    -------
    float
        The noise standard deviation.

    Raises
    ------
    ValueError
        If ``fluor`` is not 1-D or has fewer than 8 observed samples, the
        band is not ``0 <= low < high <= 0.5`` or holds no frequency of the
        spectrum, or ``method`` is unknown.
    TypeError
        If ``fluor`` is not real-valued.

    See Also
    --------
    estimate_noise : the noise level of one ROI by the ``'correct'``,
        ``'robust'`` or ``'psd'`` method, over several sequences.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> round(estimate_sigma(0.5 * rng.standard_normal(20000)), 1)
    0.5
    """
    from scipy.signal import welch

    x = _one_trace(fluor)
    try:
        low, high = (float(v) for v in range_ff)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            f"range_ff must be a pair of frequencies (low, high), got {range_ff!r}"
        ) from None
    if not 0 <= low < high <= 0.5:
        raise ValueError(
            f"range_ff must satisfy 0 <= low < high <= 0.5 (cycles per sample), got {range_ff!r}"
        )
    if method not in _SIGMA_AVERAGES:
        raise ValueError(f"method must be one of {_SIGMA_AVERAGES}, got {method!r}")
    freqs, power = welch(x, nperseg=min(x.size, _PSD_NPERSEG))
    band = power[(freqs > low) & (freqs < high)] / 2.0
    if band.size == 0:
        raise ValueError(
            f"range_ff {range_ff!r} holds no frequency of the spectrum of {x.size} samples; "
            "widen the band"
        )
    if method == "mean":
        return float(np.sqrt(np.mean(band)))
    if method == "median":
        return float(np.sqrt(np.median(band)))
    with np.errstate(divide="ignore"):
        return float(np.sqrt(np.exp(np.mean(np.log(band)))))


def estimate_gamma(
    fluor: ArrayLike,
    sigma: float | None,
    p: int = 2,
    lags: int = 5,
    fudge_factor: float = 1,
) -> NDArray[np.float64]:
    """Estimate the coefficients of an AR(p) calcium model from one trace (SIMA's form).

    With ``c(k)`` the autocovariance of the trace at lag ``k`` divided by
    its number of samples, the Yule-Walker equations corrected for white
    noise of variance ``sigma**2``,
    ``sum_j gamma_j (c(|i - j|) - sigma**2 [i = j]) = c(i)`` for
    ``i = 1 .. lags + p`` and ``j = 1 .. p``, are solved by least squares.
    With ``fudge_factor < 1`` the roots of the AR polynomial are shrunk by
    that factor to reduce the bias of short traces (roots above 1 become
    0.95, negative ones 0.15).

    Parameters
    ----------
    fluor : array_like
        1-D fluorescence trace; missing (non-finite) samples are left out of
        the autocovariance.
    sigma : float or None
        The noise standard deviation; None estimates it with
        :func:`estimate_sigma`.
    p : int, optional
        Order of the autoregressive model. Default: 2.
    lags : int, optional
        Number of lags beyond ``p`` in the equations. Default: 5.
    fudge_factor : float, optional
        In ``(0, 1]``; 1 (default) leaves the estimate unchanged.

    Returns
    -------
    numpy.ndarray
        ``(p,)`` float64: the coefficients ``gamma_1 .. gamma_p`` of
        ``c_t = sum_j gamma_j c_{t-j} + s_t``. For ``p = 1``, the decay
        factor of sima_fast's AR(1) model.

    Raises
    ------
    ValueError
        If ``fluor`` is not 1-D or has fewer than 8 observed samples, or an
        argument is out of range.
    TypeError
        If ``fluor`` is not real-valued.

    See Also
    --------
    estimate_decay : the AR(1) decay factor sima_fast's inference uses.

    Notes
    -----
    SIMA's version subtracted ``sigma**2`` from autocovariances that were
    not divided by the number of samples, which made the noise correction
    negligible; here both are per sample, as the equations require.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> c = np.zeros(20000)
    >>> for t in range(1, c.size):
    ...     c[t] = 0.9 * c[t - 1] + rng.standard_normal()
    >>> estimate_gamma(c + 0.5 * rng.standard_normal(c.size), 0.5, p=1).round(2)
    array([0.9])
    """
    x = _as_real_array(fluor, "fluor")
    if x.ndim != 1:
        raise ValueError(f"fluor must be a 1-D trace, got an array of shape {x.shape}")
    _check_magnitude(x, "fluor", rows=False)
    p = check_int("p", p, low=1)
    lags = check_int("lags", lags, low=0)
    fudge_factor = check_real("fudge_factor", fudge_factor, low=0)
    if not 0 < fudge_factor <= 1:
        raise ValueError(f"fudge_factor must lie in (0, 1], got {fudge_factor!r}")
    if sigma is None:
        sigma = estimate_sigma(x)
    sigma = float(_check_sigma(sigma, 1))
    n_eq = lags + p
    acov, counts = _acov_rows(x[None, :], n_eq)
    _check_lengths([counts], "fluor", single=True)
    if counts[0] <= n_eq:
        raise ValueError(
            f"fluor has {int(counts[0])} observed samples; estimate_gamma with p = {p} and "
            f"lags = {lags} needs more than {n_eq}"
        )
    c = acov[0] / counts[0]
    idx = np.abs(np.subtract.outer(np.arange(n_eq), np.arange(p)))
    a = c[idx] - sigma**2 * np.eye(n_eq, p)
    gamma = np.linalg.lstsq(a, c[1 : n_eq + 1], rcond=None)[0]
    if fudge_factor < 1:
        roots = fudge_factor * np.roots(np.concatenate([[1.0], -gamma]))
        roots = roots.real
        roots[roots > 1] = 0.95
        roots[roots < 0] = 0.15
        gamma = -np.poly(roots)[1:]
    return np.asarray(gamma, dtype=np.float64).reshape(p)


def estimate_parameters(
    fluor: ArrayLike | Iterable[ArrayLike],
    gamma: float | None = None,
    sigma: float | None = None,
    mode: str = "correct",
    ar_order: int = 2,
    psd_opts: dict[str, Any] | None = None,
) -> tuple[Any, float]:
    """Estimate the decay factor and noise level shared by some traces (SIMA's form).

    Parameters
    ----------
    fluor : array_like or sequence of array_like
        One 1-D trace, or several (a list of 1-D traces, or the rows of a
        2-D array) fitted with the same parameters, e.g. one ROI in several
        sequences. Missing (non-finite) samples are left out.
    gamma : float, optional
        A known decay factor in ``(0, 1)``; estimated if None.
    sigma : float, optional
        A known noise level (``>= 0``; SIMA's code passes 0 to skip the
        noise estimate); estimated if None.
    mode : {'correct', 'robust', 'psd'}, optional
        ``'correct'`` and ``'robust'``: ``gamma`` as :func:`estimate_decay`
        and ``sigma`` as :func:`estimate_noise` compute them, over all the
        traces. ``'psd'``: the traces joined end to end, ``sigma`` from
        :func:`estimate_sigma` and ``gamma`` the AR(``ar_order``)
        coefficients of :func:`estimate_gamma`, with the options of
        ``psd_opts``. Default: ``'correct'``.
    ar_order : int, optional
        Model order of the ``'psd'`` mode. Default: 2.
    psd_opts : dict, optional
        Options of the ``'psd'`` mode (see :func:`default_psd_opts`).

    Returns
    -------
    gamma : float or numpy.ndarray
        The decay factor; in the ``'psd'`` mode (when estimated) the
        ``(ar_order,)`` AR coefficients, as in SIMA.
    sigma : float
        The noise standard deviation.

    Raises
    ------
    ValueError
        If a trace is not 1-D or has fewer than 8 observed samples, ``mode``
        is unknown, ``gamma`` lies outside ``(0, 1)`` or ``sigma`` is
        negative.
    TypeError
        If the traces are not real-valued or ``psd_opts`` is not a dict.

    Warns
    -----
    SpikeInferenceWarning
        When an estimate is repaired, as :func:`estimate_decay` and
        :func:`estimate_noise` describe.

    See Also
    --------
    estimate_roi_parameters : the same for every ROI of an extraction at
        once, with per-ROI arrays.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> c = np.zeros(20000)
    >>> for t in range(1, c.size):
    ...     c[t] = 0.9 * c[t - 1] + (rng.random() < 0.05)
    >>> gamma, sigma = estimate_parameters(c + 0.1 * rng.standard_normal(c.size))
    >>> round(gamma, 2), round(sigma, 2)
    (0.9, 0.1)
    """
    mode = _check_mode(mode)
    ar_order = check_int("ar_order", ar_order, low=1)
    opts = _psd_options(psd_opts)
    traces = _traces_list(fluor, "fluor")
    if gamma is not None:
        gamma = float(_check_gamma(gamma))
    if sigma is not None:
        sigma = float(_check_sigma(sigma, 1))
    if mode == "psd":
        joined = np.concatenate([t[np.isfinite(t)] for t in traces])
        if sigma is None:
            sigma = estimate_sigma(joined, opts["noise_range"], opts["noise_method"])
        if gamma is None:
            gamma = estimate_gamma(joined, sigma, ar_order, opts["lags"], opts["fudge_factor"])
        return gamma, float(sigma)
    if gamma is None:
        gamma = estimate_decay(traces)
    if sigma is None:
        sigma = estimate_noise(traces, gamma, mode)
    return float(gamma), float(sigma)

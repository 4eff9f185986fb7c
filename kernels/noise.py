"""Fast, deterministic detector noise for the simulator (a small numba kernel).

Drawing exact normal variates with numpy costs about 10 ns each, which would
dominate the simulation of large movies. Instead each noise variate is read
from a table of the standard normal quantiles at the 65,536 midpoints
``(k + 0.5) / 65536`` (rescaled to exactly zero mean and unit variance),
indexed by 16 bits of the generator's raw output. This quantised normal has
its first two moments exact, matches the normal distribution to within
``1 / 65536`` in every quantile and differs from it only beyond ``|ε| ≈ 4.3``
(which it never reaches). The kernel fuses the noise with rounding, clipping
and the cast to the output dtype, so the output is written in one pass.
"""

from __future__ import annotations

import numpy as np
import scipy.special

from sima_fast.kernels._jit import jit

__all__ = ["add_noise", "normal_table"]

_TABLE_BITS = 16


def normal_table(dtype: np.dtype | type = np.float64) -> np.ndarray:
    """Return the 65,536 quantised standard-normal levels as ``dtype``.

    Level ``k`` is the standard normal quantile at ``(k + 0.5) / 65536``;
    the whole table is then shifted and scaled to mean 0 and variance 1 (in
    float64, to rounding) and cast to ``dtype``.

    Parameters
    ----------
    dtype : numpy.dtype or type
        The table's dtype: that of the means given to :func:`add_noise`.

    Returns
    -------
    numpy.ndarray, shape (65536,)
        The levels, level ``k`` at index ``k`` (so in increasing order).

    Examples
    --------
    >>> t = normal_table()
    >>> t.shape, round(float(t.mean()), 12), round(float((t**2).mean()), 12)
    ((65536,), 0.0, 1.0)
    """
    levels = 1 << _TABLE_BITS
    table = scipy.special.ndtri((np.arange(levels) + 0.5) / levels)
    table -= table.mean()
    table /= np.sqrt(np.mean(table**2))
    return table.astype(dtype)


@jit
def _noise_kernel(mean, bits, table, gain, read_var, rounding, low, high, out):  # pragma: no cover
    frames, size = mean.shape
    zero = mean.dtype.type(0)
    for t in range(frames):
        for word in range(bits.shape[1]):
            b = bits[t, word]
            for i in range(4 * word, min(4 * word + 4, size)):
                m = mean[t, i]
                value = m + np.sqrt(max(gain * m + read_var, zero)) * table[b & 0xFFFF]
                b >>= 16
                if rounding:
                    value = min(max(np.rint(value), low), high)
                out[t, i] = value


def add_noise(
    mean: np.ndarray,
    rng: np.random.Generator,
    table: np.ndarray,
    gain: float,
    read_noise: float,
    out: np.ndarray,
) -> None:
    """Write ``mean + √(gain·mean + read_noise²)·ε`` into ``out``.

    Parameters
    ----------
    mean : numpy.ndarray, shape (k, ...)
        C-contiguous float32 or float64 means of ``k`` frames.
    rng : numpy.random.Generator
        Source of the raw bits: ``ceil(frame size / 4)`` 64-bit words per
        frame, 16 bits per value, so the noise of a frame does not depend on
        how the frames are grouped into calls.
    table : numpy.ndarray
        :func:`normal_table` in the dtype of ``mean``.
    gain, read_noise : float
        Noise parameters (counts per photon; detector standard deviation).
    out : numpy.ndarray
        C-contiguous output of ``mean``'s shape. Integer outputs are rounded
        to the nearest integer (ties to even) and clipped to their range.
    """
    if not (mean.flags.c_contiguous and out.flags.c_contiguous and mean.shape == out.shape):
        raise ValueError("mean and out must be C-contiguous arrays of the same shape")
    frames = mean.shape[0]
    flat_mean = mean.reshape(frames, -1)
    flat_out = out.reshape(frames, -1)
    words = (flat_mean.shape[1] + 3) // 4
    bits = rng.bit_generator.random_raw(frames * words).reshape(frames, words)
    work = flat_mean.dtype.type
    if out.dtype.kind in "iu":
        info = np.iinfo(out.dtype)
        rounding, low, high = True, work(info.min), work(info.max)
    else:
        rounding, low, high = False, work(-np.inf), work(np.inf)
    _noise_kernel(
        flat_mean,
        bits,
        table,
        work(gain),
        work(read_noise**2),
        rounding,
        low,
        high,
        flat_out,
    )

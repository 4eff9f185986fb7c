"""Kernels of rigid motion estimation: frame preparation, whitening and peak search.

Rigid registration of a block of frames against a reference runs in three
kernels around two FFTs (``scipy.fft``, which numba lacks):

1. :func:`prepare_frames`: each frame minus the mean of its finite pixels,
   unobserved (NaN) pixels set to 0, times a spatial taper, written into a
   preallocated float buffer (the frame's own dtype is read as it is);
2. the caller's ``rfft2`` of the buffer, then :func:`cross_power` in place:
   ``ref · conj(F) / (|F| + eps)`` per frame (whitened, the phase
   correlation of Kuglin & Hines 1975) or ``ref · conj(F)`` (plain
   cross-correlation), where ``ref`` already holds the reference spectrum
   (whitened and multiplied by a Gaussian to smooth the correlation surface
   when the caller wants it);
3. the caller's ``irfft2``, then :func:`find_peaks`: the highest value of
   each correlation surface among the circular shifts allowed by the limits,
   refined to a fraction of a pixel by a three-point Gaussian fit along each
   axis (parabolic where a value is not positive).

The peak of the surface is at ``d`` when ``reference(p) ≈ frame(p - d)``:
frame pixel ``p`` belongs at ``p + d``, the displacement convention of
:meth:`sima_fast.Sequence.apply_displacements`.

:func:`edge_taper` builds the taper (1 inside, falling to 0 over ``width``
pixels at the edges, as a raised cosine).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from sima_fast.kernels._jit import FASTMATH, jit

__all__ = ["cross_power", "edge_taper", "find_peaks", "mean_finite", "prepare_frames"]


def edge_taper(shape: tuple[int, int], width: float) -> np.ndarray:
    """Return a ``(Y, X)`` taper: 1 inside, a raised cosine to 0 over ``width`` px at the edges.

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)``.
    width : float
        Pixels over which the taper falls at each edge; below 1e-6 (e.g. 0) gives all ones.
        Limited to half of each side.

    Returns
    -------
    numpy.ndarray of float64, shape ``shape``

    Examples
    --------
    >>> edge_taper((1, 6), 2.0).round(3).tolist()
    [[0.146, 0.854, 1.0, 1.0, 0.854, 0.146]]
    """
    axes = []
    for n in shape:
        w = min(float(width), n / 2.0)
        if w < 1e-6:  # narrower than any pixel: no taper
            axes.append(np.ones(n))
            continue
        # distance of each pixel centre from the nearest edge, in pixels
        dist = np.minimum(np.arange(n) + 0.5, n - 0.5 - np.arange(n))
        axes.append(np.where(dist >= w, 1.0, 0.5 - 0.5 * np.cos(np.pi * np.minimum(dist / w, 1))))
    return np.outer(axes[0], axes[1])


@jit(parallel=True, fastmath=FASTMATH)
def prepare_frames(frames, taper, offsets, out):  # pragma: no cover - compiled
    """Mean-subtract, zero the NaN pixels of and taper every frame of a block.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n, Y, X)
        The frames, any real dtype; NaN (float data) marks unobserved pixels.
    taper : numpy.ndarray of float64, shape (Y, X)
        Multiplies each mean-subtracted frame.
    offsets : numpy.ndarray of int64, shape (n, 2)
        Frame ``i`` is multiplied by the taper moved by ``-offsets[i]``:
        pixel ``(y, x)`` by ``taper[y + oy, x + ox]`` (0 outside the taper),
        so that a frame whose content belongs at ``p + offset`` is tapered
        over the same content as the reference. Zeros: the taper as it is.
    out : numpy.ndarray of float32 or float64, shape (n, Y, X)
        Filled with ``(frame - mean of its finite pixels) * taper``, 0 where
        the frame is not finite (0 everywhere for a frame with no finite
        pixel).

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    n, ny, nx = frames.shape
    for i in prange(n):
        total = 0.0
        count = 0
        for y in range(ny):
            for x in range(nx):
                v = np.float64(frames[i, y, x])
                if v - v == 0.0:
                    total += v
                    count += 1
        mean = total / count if count > 0 else 0.0
        oy = offsets[i, 0]
        ox = offsets[i, 1]
        for y in range(ny):
            ty = y + oy
            for x in range(nx):
                tx = x + ox
                v = np.float64(frames[i, y, x])
                if v - v == 0.0 and 0 <= ty < ny and 0 <= tx < nx:
                    out[i, y, x] = (v - mean) * taper[ty, tx]
                else:
                    out[i, y, x] = 0.0
    return out


@jit(parallel=True, fastmath=FASTMATH)
def cross_power(spectra, reference, whiten, eps):  # pragma: no cover - compiled
    """Replace each frame's spectrum by its (whitened) cross-power with the reference, in place.

    Parameters
    ----------
    spectra : numpy.ndarray of complex, shape (n, Y, Xr)
        The frames' (real) FFTs; overwritten.
    reference : numpy.ndarray of complex, shape (Y, Xr)
        The reference's spectrum as it should multiply, e.g. whitened and
        smoothed by the caller.
    whiten : bool
        Divide by ``|F| + eps · max|F|`` (phase correlation); otherwise a
        plain product (cross-correlation).
    eps : float
        Relative regulariser of the whitening.

    Returns
    -------
    numpy.ndarray
        ``spectra``, now ``reference · conj(F) [/ (|F| + eps · max|F|)]``.
    """
    n, ny, nx = spectra.shape
    # real arithmetic on the parts: numba's complex abs (hypot) and complex
    # division cost about 25x more per element than this
    for i in prange(n):
        floor = 0.0
        if whiten:
            largest = 0.0
            for y in range(ny):
                for x in range(nx):
                    f = spectra[i, y, x]
                    a = f.real * f.real + f.imag * f.imag
                    if a > largest:
                        largest = a
            floor = eps * math.sqrt(largest)
            if floor <= 0.0:
                floor = 1e-300
        for y in range(ny):
            for x in range(nx):
                f = spectra[i, y, x]
                r = reference[y, x]
                re = r.real * f.real + r.imag * f.imag  # r * conj(f)
                im = r.imag * f.real - r.real * f.imag
                if whiten:
                    scale = 1.0 / (math.sqrt(f.real * f.real + f.imag * f.imag) + floor)
                    re *= scale
                    im *= scale
                spectra[i, y, x] = complex(re, im)
    return spectra


@jit(inline="always")
def _refine(lo, mid, hi):  # pragma: no cover - compiled
    """Offset in (-0.5, 0.5) of the vertex through three samples at -1, 0, 1 (Gaussian fit)."""
    if lo > 0.0 and mid > 0.0 and hi > 0.0:
        a = math.log(lo)
        b = math.log(mid)
        c = math.log(hi)
    else:
        a, b, c = lo, mid, hi
    den = a - 2.0 * b + c
    if den >= 0.0:  # not a maximum: keep the integer position
        return 0.0
    off = 0.5 * (a - c) / den
    if off > 0.5:
        return 0.5
    if off < -0.5:
        return -0.5
    return off


@jit(parallel=True)
def find_peaks(surfaces, max_dy, max_dx, subpixel, out):  # pragma: no cover - compiled
    """Find the highest point of each circular correlation surface within the shift limits.

    Parameters
    ----------
    surfaces : numpy.ndarray of float, shape (n, Y, X)
        Correlation surfaces: index ``(i, j)`` is the circular shift
        ``(i, j)``, read as ``i - Y`` when ``i > Y // 2`` (same along x).
    max_dy, max_dx : float
        Largest ``|dy|`` and ``|dx|`` allowed (``inf`` for any).
    subpixel : bool
        Refine each integer peak by a three-point fit along each axis.
    out : numpy.ndarray of float64, shape (n, 3)
        Filled with ``(dy, dx, peak)``; a surface with no allowed finite
        value gives ``(nan, nan, nan)``.

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    n, ny, nx = surfaces.shape
    for i in prange(n):
        best = -np.inf
        by = -1
        bx = -1
        for y in range(ny):
            sy = y - ny if y > ny // 2 else y
            if abs(sy) > max_dy:
                continue
            for x in range(nx):
                sx = x - nx if x > nx // 2 else x
                if abs(sx) > max_dx:
                    continue
                v = surfaces[i, y, x]
                if v > best:
                    best = v
                    by = y
                    bx = x
        if by < 0:
            out[i, 0] = np.nan
            out[i, 1] = np.nan
            out[i, 2] = np.nan
            continue
        dy = float(by - ny if by > ny // 2 else by)
        dx = float(bx - nx if bx > nx // 2 else bx)
        if subpixel:
            if ny >= 3:
                dy += _refine(surfaces[i, (by - 1) % ny, bx], best, surfaces[i, (by + 1) % ny, bx])
            if nx >= 3:
                dx += _refine(surfaces[i, by, (bx - 1) % nx], best, surfaces[i, by, (bx + 1) % nx])
            if dy > max_dy:
                dy = max_dy
            elif dy < -max_dy:
                dy = -max_dy
            if dx > max_dx:
                dx = max_dx
            elif dx < -max_dx:
                dx = -max_dx
        out[i, 0] = dy
        out[i, 1] = dx
        out[i, 2] = best
    return out


@jit(parallel=True, fastmath=FASTMATH)
def mean_finite(frames, out):  # pragma: no cover - compiled
    """Mean over the first axis of the finite values of every pixel of a stack.

    Parameters
    ----------
    frames : numpy.ndarray of float, shape (n, Y, X)
        The images; NaN (or inf) marks a missing value.
    out : numpy.ndarray of float64, shape (Y, X)
        Filled with the mean of each pixel's finite values, NaN where it has
        none.

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    n, ny, nx = frames.shape
    for y in prange(ny):
        count = np.zeros(nx, dtype=np.int64)
        for x in range(nx):
            out[y, x] = 0.0
        for i in range(n):
            for x in range(nx):
                v = np.float64(frames[i, y, x])
                if v - v == 0.0:
                    out[y, x] += v
                    count[x] += 1
        for x in range(nx):
            out[y, x] = out[y, x] / count[x] if count[x] > 0 else np.nan
    return out

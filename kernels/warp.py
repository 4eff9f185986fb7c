"""Kernels that resample images: warps, point sampling, frame shifts and displacement fields.

One sampling rule serves every kernel here, in three interpolations
(:data:`INTERPOLATIONS`):

``'nearest'``
    the pixel nearest to the point (``floor(s + 0.5)`` along each axis, so a
    point half-way between two pixels takes the lower-right one): exact
    values of the source, no smoothing, up to half a pixel of misplacement;
``'linear'``
    bilinear: ``(1 - f) v[i] + f v[i + 1]`` along each axis, with
    ``i = floor(s)``, ``f = s - i``;
``'cubic'``
    Keys' cubic convolution with ``a = -0.5`` (separable, 4 × 4 pixels):
    weights ``W(1 + f), W(f), W(1 - f), W(2 - f)`` on the pixels
    ``i - 1 .. i + 2``, where ``W(t) = 1.5|t|³ - 2.5|t|² + 1`` for
    ``|t| <= 1`` and ``-0.5|t|³ + 2.5|t|² - 4|t| + 2`` for ``1 < |t| < 2``.
    It reproduces quadratics exactly and smooths far less than bilinear
    interpolation (which averages noise and detail between neighbours).

Pixel centres are at integers. Along one axis of ``n`` pixels a position
``s`` is *inside* when ``0 <= s <= n - 1`` (the same for all three
interpolations, so they leave the same pixels without a value); a sample
whose point is not inside along both axes gets the fill value ``cval`` (NaN
by default). The *support* of a sample is the set of pixels with a nonzero
weight: one pixel when the point falls on a pixel centre along an axis
(``f == 0``; then the value is copied exactly, whatever its neighbours),
else 2 (linear) or 4 (cubic) pixels along that axis. Cubic taps that fall
beyond the frame's edge (the points within one pixel of it) repeat the edge
pixel. A NaN anywhere in the support makes the sample NaN; NaN pixels
outside the support do not matter.

Images are read in their own dtype (uint16, float32, float64, ...; native
byte order) without a converted copy; arithmetic is in float64 and the result
is stored in the dtype of the preallocated output (float32 or float64).

:func:`warp_affine` samples an image on the grid ``matrix @ (x, y, 1)`` of
every output pixel (an affine or projective map);
:func:`sample_bilinear` samples it at arbitrary points; :func:`shift_frame`
translates a frame (with channels) by a sub-pixel or integer shift;
:func:`warp_field` moves blocks of frames ``(n, Z, Y, X, C)`` by smooth
displacement fields given at block centres (non-rigid motion correction; a
single centre is a rigid shift of each plane), and :func:`interpolate_field`
gives such a field per pixel; :func:`gather_blocks` cuts the tapered blocks
that block-wise registration correlates and :func:`block_cross_power`
whitens their spectra against the reference's blocks.

A constant shift (:func:`shift_frame`, or :func:`warp_field` with one block)
is applied separably: each output row first combines its source rows (a
contiguous pass over the row), then each output pixel combines its columns;
a varying field combines the support of each pixel directly. Both use the
same taps (:func:`_axis_taps`) and give the same values up to rounding.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import prange

from sima_fast.kernels._jit import FASTMATH, jit

__all__ = [
    "INTERPOLATIONS",
    "block_cross_power",
    "gather_blocks",
    "interpolate_field",
    "interpolation_order",
    "sample_bilinear",
    "shift_frame",
    "warp_affine",
    "warp_field",
]

#: The interpolations of the sampling kernels, and their polynomial order.
INTERPOLATIONS = {"nearest": 0, "linear": 1, "cubic": 3}

#: Output rows per task of the parallel separable shift (the column taps are
#: computed once per task).
_ROWS_PER_TASK = 16


def interpolation_order(interpolation: Any) -> int:
    """Return the order (0, 1 or 3) of an interpolation named in :data:`INTERPOLATIONS`.

    Parameters
    ----------
    interpolation : str
        ``'nearest'``, ``'linear'`` or ``'cubic'``.

    Returns
    -------
    int
        0, 1 or 3.

    Raises
    ------
    TypeError
        If ``interpolation`` is not a string.
    ValueError
        If it names no interpolation.
    """
    if not isinstance(interpolation, str):
        raise TypeError(
            f"interpolation must be one of {list(INTERPOLATIONS)}, got "
            f"{type(interpolation).__name__}"
        )
    try:
        return INTERPOLATIONS[interpolation]
    except KeyError:
        raise ValueError(
            f"interpolation must be one of {list(INTERPOLATIONS)}, got {interpolation!r}"
        ) from None


# ---------------------------------------------------------------------------
# the sampling core
# ---------------------------------------------------------------------------

#: A source position closer than this (px) to a pixel centre is sampled at the
#: centre, so weights too small to matter never bring in a NaN neighbour.
SNAP = 1e-9


@jit(fastmath=FASTMATH, inline="always")
def _axis_taps(s, n, order):  # pragma: no cover - compiled
    """Taps of the position ``s`` along an axis of ``n`` pixels.

    Returns
    -------
    (bool, int, tuple of 4 float)
        ``(inside, first, weights)``: the pixels ``first .. first + k - 1``
        (``k`` = 1, 2 or 4 for the orders 0, 1 and 3; to be clamped to
        ``0 .. n - 1``) take the weights ``weights[:k]``, of which only the
        nonzero ones form the support; ``inside`` is False when ``s`` is
        outside ``[0, n - 1]`` (or NaN).
    """
    if not (0.0 <= s <= n - 1.0):
        return False, 0, (0.0, 0.0, 0.0, 0.0)
    if order == 0:
        return True, math.floor(s + 0.5), (1.0, 0.0, 0.0, 0.0)
    i = math.floor(s)
    f = s - i
    # within SNAP of a pixel centre counts as the centre: a weight that rounds
    # to nothing must not pull in a NaN neighbour (nor differ between kernels)
    if f < SNAP:
        f = 0.0
    elif f > 1.0 - SNAP:
        i += 1
        f = 0.0
    if order == 1:
        return True, i, (1.0 - f, f, 0.0, 0.0)
    if f == 0.0:
        return True, i - 1, (0.0, 1.0, 0.0, 0.0)
    # Keys' kernel W at 1 + f, f, 1 - f and 2 - f, expanded in f (no branches)
    f2 = f * f
    f3 = f2 * f
    return (
        True,
        i - 1,
        (
            -0.5 * f3 + f2 - 0.5 * f,
            1.5 * f3 - 2.5 * f2 + 1.0,
            -1.5 * f3 + 2.0 * f2 + 0.5 * f,
            0.5 * f3 - 0.5 * f2,
        ),
    )


@jit(fastmath=FASTMATH, inline="always")
def _combine(image, c, y0, wy, x0, wx, k):  # pragma: no cover - compiled
    """Sum of channel ``c`` of ``image`` (Y, X, C) over ``k × k`` edge-clamped taps."""
    # taps of zero weight are skipped: a NaN outside the support does not spoil the sample
    ny = image.shape[0]
    nx = image.shape[1]
    acc = 0.0
    if (
        wy[0] != 0.0
        and wy[k - 1] != 0.0
        and wx[0] != 0.0
        and wx[k - 1] != 0.0
        and 0 <= y0
        and y0 + k <= ny
        and 0 <= x0
        and x0 + k <= nx
    ):
        # the usual case: every weight nonzero (the end weights are zero only at
        # a pixel centre) and every tap inside the frame; no tests per tap
        for i in range(k):
            row = 0.0
            for j in range(k):
                row += wx[j] * np.float64(image[y0 + i, x0 + j, c])
            acc += wy[i] * row
        return acc
    for i in range(k):
        if wy[i] != 0.0:
            yy = min(max(y0 + i, 0), ny - 1)
            row = 0.0
            for j in range(k):
                if wx[j] != 0.0:
                    row += wx[j] * np.float64(image[yy, min(max(x0 + j, 0), nx - 1), c])
            acc += wy[i] * row
    return acc


@jit(fastmath=FASTMATH, inline="always")
def _sample_k(image, y, x, order, cval, out, i, k):  # pragma: no cover - compiled
    ny, nx, nc = image.shape
    oky, y0, wy = _axis_taps(y, ny, order)
    okx, x0, wx = _axis_taps(x, nx, order)
    for c in range(nc):
        if oky and okx:
            out[i, c] = _combine(image, c, y0, wy, x0, wx, k)
        else:
            out[i, c] = cval


@jit(fastmath=FASTMATH, inline="always")
def _sample_into(image, y, x, order, cval, out, i):  # pragma: no cover - compiled
    """Every channel of ``image`` (Y, X, C) sampled at ``(y, x)`` into ``out[i, :]``."""
    # one branch per order, so that each combines a fixed number of taps
    if order == 3:
        _sample_k(image, y, x, 3, cval, out, i, 4)
    elif order == 1:
        _sample_k(image, y, x, 1, cval, out, i, 2)
    else:
        _sample_k(image, y, x, 0, cval, out, i, 1)


@jit(fastmath=FASTMATH)
def _warp_affine(image, matrix, order, out, cval):  # pragma: no cover - compiled
    oy, ox = out.shape[0], out.shape[1]
    m00, m01, m02 = matrix[0, 0], matrix[0, 1], matrix[0, 2]
    m10, m11, m12 = matrix[1, 0], matrix[1, 1], matrix[1, 2]
    m20, m21, m22 = matrix[2, 0], matrix[2, 1], matrix[2, 2]
    affine = m20 == 0.0 and m21 == 0.0 and m22 == 1.0
    for row in range(oy):
        r = np.float64(row)
        for col in range(ox):
            q = np.float64(col)
            x = m00 * q + m01 * r + m02
            y = m10 * q + m11 * r + m12
            if not affine:
                w = m20 * q + m21 * r + m22
                x = x / w
                y = y / w
            _sample_into(image, y, x, order, cval, out[row], col)


@jit(fastmath=FASTMATH)
def _sample_points(image, ys, xs, order, out, cval):  # pragma: no cover - compiled
    for i in range(ys.shape[0]):
        _sample_into(image, np.float64(ys[i]), np.float64(xs[i]), order, cval, out, i)


@jit(parallel=True, fastmath=FASTMATH)
def _shift_planes(src, shifts, order, out, cval):  # pragma: no cover - compiled
    """``out[t, z](p) = src[t, z](p - shifts[t, z])``, separably, in parallel over row blocks."""
    n, nz, ny, nx, nc = src.shape
    oy, ox = out.shape[2], out.shape[3]
    blocks = (oy + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK
    for job in prange(n * nz * blocks):
        t = job // (nz * blocks)
        z = (job // blocks) % nz
        r0 = (job % blocks) * _ROWS_PER_TASK
        r1 = min(r0 + _ROWS_PER_TASK, oy)
        image = src[t, z]
        dy = shifts[t, z, 0]
        dx = shifts[t, z, 1]
        # the column taps of this plane, and one combined source row
        k = 4 if order == 3 else order + 1
        inside = np.empty(ox, dtype=np.bool_)
        first = np.empty(ox, dtype=np.int64)
        weight = np.empty((ox, 4), dtype=np.float64)
        for col in range(ox):
            okx, x0, wx = _axis_taps(np.float64(col) - dx, nx, order)
            inside[col] = okx
            first[col] = x0
            for j in range(4):
                weight[col, j] = wx[j]
        # the columns whose taps all lie inside the frame, all with nonzero weights (every
        # column but a few at the edges, unless the shift is whole): one contiguous run,
        # combined without tests per tap (the same sums, in the same order)
        lo = 0
        while lo < ox and not _plain_taps(inside[lo], first[lo], weight[lo], k, nx):
            lo += 1
        hi = lo
        while (
            hi < ox
            and first[hi] - hi == first[lo] - lo
            and _plain_taps(inside[hi], first[hi], weight[hi], k, nx)
        ):
            hi += 1
        line = np.empty(nx, dtype=np.float64)
        for row in range(r0, r1):
            oky, y0, wy = _axis_taps(np.float64(row) - dy, ny, order)
            plain_rows = oky and 0 <= y0 and y0 + k <= ny
            for i in range(k):
                plain_rows = plain_rows and wy[i] != 0.0
            for c in range(nc):
                if not oky:
                    for col in range(ox):
                        out[t, z, row, col, c] = cval
                    continue
                if plain_rows and k == 4:
                    w0, w1, w2, w3 = wy[0], wy[1], wy[2], wy[3]
                    for x in range(nx):
                        line[x] = (
                            (
                                (0.0 + w0 * np.float64(image[y0, x, c]))
                                + w1 * np.float64(image[y0 + 1, x, c])
                            )
                            + w2 * np.float64(image[y0 + 2, x, c])
                        ) + w3 * np.float64(image[y0 + 3, x, c])
                elif plain_rows and k == 2:
                    w0, w1 = wy[0], wy[1]
                    for x in range(nx):
                        line[x] = (0.0 + w0 * np.float64(image[y0, x, c])) + w1 * np.float64(
                            image[y0 + 1, x, c]
                        )
                else:
                    line[:] = 0.0
                    for i in range(k):
                        w = wy[i]
                        if w != 0.0:
                            yy = min(max(y0 + i, 0), ny - 1)
                            for x in range(nx):
                                line[x] += w * np.float64(image[yy, x, c])
                for col in range(ox):
                    if lo <= col < hi:
                        continue
                    if not inside[col]:
                        out[t, z, row, col, c] = cval
                        continue
                    x0 = first[col]
                    acc = 0.0
                    for j in range(k):
                        w = weight[col, j]
                        if w != 0.0:
                            acc += w * line[min(max(x0 + j, 0), nx - 1)]
                    out[t, z, row, col, c] = acc
                if hi > lo and k == 4:
                    off = first[lo] - lo
                    for col in range(lo, hi):
                        x0 = col + off
                        out[t, z, row, col, c] = (
                            ((0.0 + weight[col, 0] * line[x0]) + weight[col, 1] * line[x0 + 1])
                            + weight[col, 2] * line[x0 + 2]
                        ) + weight[col, 3] * line[x0 + 3]
                elif hi > lo and k == 2:
                    off = first[lo] - lo
                    for col in range(lo, hi):
                        x0 = col + off
                        out[t, z, row, col, c] = (0.0 + weight[col, 0] * line[x0]) + weight[
                            col, 1
                        ] * line[x0 + 1]
                elif hi > lo:
                    off = first[lo] - lo
                    for col in range(lo, hi):
                        out[t, z, row, col, c] = line[col + off]


@jit(inline="always")
def _plain_taps(inside, x0, w, k, n):  # pragma: no cover - compiled
    """Whether ``k`` taps from ``x0`` lie inside ``0 .. n - 1``, all with a nonzero weight."""
    ok = inside and 0 <= x0 and x0 + k <= n
    for j in range(k):
        ok = ok and w[j] != 0.0
    return ok


def _with_channels(array: np.ndarray, name: str) -> np.ndarray:
    """Return a (Y, X, C) view of a (Y, X) or (Y, X, C) array (no copy)."""
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim == 3:
        return array
    raise ValueError(f"{name} must have shape (Y, X) or (Y, X, C), got {array.shape}")


def _check_out(out: np.ndarray) -> None:
    if not isinstance(out, np.ndarray) or out.dtype not in (np.float32, np.float64):
        raise TypeError("out must be a float32 or float64 numpy array")


def warp_affine(
    image: np.ndarray,
    matrix: np.ndarray,
    out: np.ndarray,
    cval: float = np.nan,
    interpolation: str = "linear",
) -> np.ndarray:
    """Resample ``image`` at ``matrix @ (x, y, 1)`` for every pixel of ``out``.

    Output pixel ``(row, col)`` takes the sample of ``image`` at
    ``(x, y) = (u / w, v / w)`` with ``(u, v, w) = matrix @ (col, row, 1)``,
    i.e. ``matrix`` maps output coordinates to input coordinates
    ``(column, row)`` with pixel centres at integers (the convention of
    :func:`skimage.transform.warp` with an inverse map). See the module
    docstring for the interpolations and the treatment of NaN.

    Parameters
    ----------
    image : numpy.ndarray, shape (Y, X) or (Y, X, C)
        Input image, any numeric dtype (float32, float64, uint16, ...); read
        as it is, without a converted copy.
    matrix : numpy.ndarray, shape (3, 3)
        Affine (last row ``0, 0, 1``) or projective map.
    out : numpy.ndarray of float32 or float64, shape (Yo, Xo) or (Yo, Xo, C)
        Output, overwritten; its shape sets the output grid.
    cval : float, optional
        Value of the samples that fall outside ``image`` (default NaN).
    interpolation : {'linear', 'cubic', 'nearest'}, optional
        See :data:`INTERPOLATIONS` (default ``'linear'``).

    Returns
    -------
    numpy.ndarray
        ``out``.

    Raises
    ------
    ValueError
        For mismatched dimensions or channel counts, a matrix that is not
        3×3, or an unknown interpolation.
    TypeError
        If ``out`` is not a float32 or float64 array.
    """
    order = interpolation_order(interpolation)
    _check_out(out)
    src = _with_channels(image, "image")
    dst = _with_channels(out, "out")
    if image.ndim != out.ndim or src.shape[2] != dst.shape[2]:
        raise ValueError(f"incompatible shapes: image {image.shape}, out {out.shape}")
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"matrix must be 3×3, got shape {m.shape}")
    _warp_affine(src, m, order, dst, float(cval))
    return out


def sample_bilinear(
    image: np.ndarray, ys: np.ndarray, xs: np.ndarray, out: np.ndarray, cval: float = np.nan
) -> np.ndarray:
    """Bilinear samples of ``image`` at the points ``(ys[i], xs[i])``.

    Parameters
    ----------
    image : numpy.ndarray, shape (Y, X) or (Y, X, C)
        Input image, any numeric dtype; read without a converted copy.
    ys, xs : numpy.ndarray, shape (N,)
        Row and column of each point (pixel centres at integers).
    out : numpy.ndarray of float32 or float64, shape (N,) or (N, C)
        Output, overwritten (``(N, C)`` for an image with channels).
    cval : float, optional
        Value of the points outside ``image`` (default NaN).

    Returns
    -------
    numpy.ndarray
        ``out``.

    Raises
    ------
    ValueError
        For points and output of different lengths or mismatched channels.
    TypeError
        If ``out`` is not a float32 or float64 array.
    """
    _check_out(out)
    src = _with_channels(image, "image")
    ys = np.asarray(ys)
    xs = np.asarray(xs)
    if ys.ndim != 1 or ys.shape != xs.shape or out.shape[:1] != ys.shape:
        raise ValueError(
            f"ys, xs and out must have one length: {ys.shape}, {xs.shape}, {out.shape}"
        )
    dst = out[:, None] if out.ndim == 1 else out
    if (image.ndim == 2) != (out.ndim == 1) or dst.shape[1] != src.shape[2]:
        raise ValueError(f"incompatible shapes: image {image.shape}, out {out.shape}")
    _sample_points(src, ys, xs, 1, dst, float(cval))
    return out


def shift_frame(
    frame: np.ndarray,
    shift: tuple[float, float],
    out: np.ndarray,
    cval: float = np.nan,
    interpolation: str = "linear",
) -> np.ndarray:
    """Translate a frame by ``shift = (dy, dx)`` pixels (sub-pixel or whole).

    ``out[y, x] = frame(y - dy, x - dx)``: positive shifts move the content
    down and to the right, as :func:`scipy.ndimage.shift` does. Pixels whose
    source lies outside the frame get ``cval``. A whole-pixel shift copies the
    values exactly (every interpolation). Rows are shared out among numba's
    threads.

    Parameters
    ----------
    frame : numpy.ndarray, shape (Y, X) or (Y, X, C)
        Input frame, any numeric dtype; read without a converted copy.
    shift : tuple of float
        ``(dy, dx)`` in pixels.
    out : numpy.ndarray of float32 or float64, same shape as ``frame``
        Output, overwritten; must not share memory with ``frame``.
    cval : float, optional
        Value of the pixels shifted in from outside (default NaN).
    interpolation : {'linear', 'cubic', 'nearest'}, optional
        See :data:`INTERPOLATIONS` (default ``'linear'``).

    Returns
    -------
    numpy.ndarray
        ``out``.

    Raises
    ------
    ValueError
        If ``out`` has another shape than ``frame``, the shift is not
        finite or the interpolation is unknown.
    TypeError
        If ``out`` is not a float32 or float64 array.
    """
    order = interpolation_order(interpolation)
    _check_out(out)
    if out.shape != frame.shape:
        raise ValueError(f"incompatible shapes: frame {frame.shape}, out {out.shape}")
    dy, dx = (float(s) for s in shift)
    if not (math.isfinite(dy) and math.isfinite(dx)):
        raise ValueError(f"the shift must be finite, got {shift!r}")
    src = _with_channels(frame, "frame")[None, None]
    dst = _with_channels(out, "out")[None, None]
    _shift_planes(src, np.array([[[dy, dx]]]), order, dst, float(cval))
    return out


# ---------------------------------------------------------------------------
# displacement fields: per-pixel shifts interpolated between block centres
# ---------------------------------------------------------------------------


@jit(fastmath=FASTMATH)
def _grid_weights(n, centres):  # pragma: no cover - compiled
    """Lower grid index and weight of the upper one for each position ``0 .. n-1``.

    Bilinear interpolation between the (increasing) ``centres``, constant
    beyond the first and the last: position ``p`` takes
    ``(1 - w) * v[i] + w * v[min(i + 1, G - 1)]``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``int64`` indices ``i`` and ``float64`` weights ``w``, each ``(n,)``.
    """
    g = centres.shape[0]
    index = np.zeros(n, dtype=np.int64)
    weight = np.zeros(n, dtype=np.float64)
    i = 0
    for p in range(n):
        q = np.float64(p)
        if g == 1 or q <= centres[0]:
            index[p] = 0
            weight[p] = 0.0
            continue
        if q >= centres[g - 1]:
            index[p] = g - 1
            weight[p] = 0.0
            continue
        while centres[i + 1] <= q:
            i += 1
        index[p] = i
        weight[p] = (q - centres[i]) / (centres[i + 1] - centres[i])
    return index, weight


@jit(fastmath=FASTMATH, inline="always")
def _field_at(disp, k, iy, wy, ix, wx):  # pragma: no cover - compiled
    """Component ``k`` of a ``(Gy, Gx, 2)`` block field interpolated at one pixel."""
    gy = disp.shape[0]
    gx = disp.shape[1]
    iy1 = min(iy + 1, gy - 1)
    ix1 = min(ix + 1, gx - 1)
    # a + w (b - a): exactly a when b == a, so a uniform field stays exact
    a = disp[iy, ix, k]
    top = a + wx * (disp[iy, ix1, k] - a)
    b = disp[iy1, ix, k]
    bottom = b + wx * (disp[iy1, ix1, k] - b)
    return top + wy * (bottom - top)


@jit(fastmath=FASTMATH)
def _interpolate_field(disp, cy, cx, out):  # pragma: no cover - compiled
    ny, nx = out.shape[0], out.shape[1]
    iys, wys = _grid_weights(ny, cy)
    ixs, wxs = _grid_weights(nx, cx)
    for row in range(ny):
        for col in range(nx):
            for k in range(2):
                out[row, col, k] = _field_at(disp, k, iys[row], wys[row], ixs[col], wxs[col])


@jit(parallel=True, fastmath=FASTMATH)
def _warp_field_frames(src, disp, cy, cx, order, out, cval):  # pragma: no cover - compiled
    n, nz = src.shape[0], src.shape[1]
    oy, ox = out.shape[2], out.shape[3]
    iys, wys = _grid_weights(oy, cy)
    ixs, wxs = _grid_weights(ox, cx)
    rows = nz * oy
    for job in prange(n * rows):
        t = job // rows
        z = (job % rows) // oy
        row = job % oy
        image = src[t, z]
        field = disp[t, z]
        iy = iys[row]
        wy = wys[row]
        r = np.float64(row)
        line = out[t, z, row]
        for col in range(ox):
            dy = _field_at(field, 0, iy, wy, ixs[col], wxs[col])
            dx = _field_at(field, 1, iy, wy, ixs[col], wxs[col])
            _sample_into(image, r - dy, np.float64(col) - dx, order, cval, line, col)


def _check_grid(centres: Any, size: int, name: str) -> np.ndarray:
    c = np.ascontiguousarray(centres, dtype=np.float64)
    if c.ndim != 1 or c.shape[0] != size:
        raise ValueError(
            f"{name} must be a 1-D array of {size} block centres, got shape {c.shape}"
        )
    if not np.all(np.isfinite(c)) or np.any(np.diff(c) <= 0):
        raise ValueError(f"{name} must be finite and strictly increasing")
    return c


def interpolate_field(
    displacements: np.ndarray, centres_y: Any, centres_x: Any, out: np.ndarray
) -> np.ndarray:
    """Per-pixel displacement field from shifts given at block centres.

    Pixel ``(row, col)`` takes the bilinear interpolation of the block shifts
    between the centres around it; beyond the first or the last centre along
    an axis the field is constant (the edge blocks' shifts extend to the
    frame's borders).

    Parameters
    ----------
    displacements : numpy.ndarray, shape (Gy, Gx, 2)
        ``(dy, dx)`` of each block.
    centres_y, centres_x : array_like, shapes (Gy,) and (Gx,)
        Row and column of the block centres, strictly increasing.
    out : numpy.ndarray of float32 or float64, shape (Y, X, 2)
        The field, overwritten.

    Returns
    -------
    numpy.ndarray
        ``out``.

    Raises
    ------
    ValueError
        For mismatched shapes or centres that are not strictly increasing.
    TypeError
        If ``out`` is not a float32 or float64 array.
    """
    _check_out(out)
    disp = np.ascontiguousarray(displacements, dtype=np.float64)
    if disp.ndim != 3 or disp.shape[2] != 2:
        raise ValueError(f"displacements must have shape (Gy, Gx, 2), got {disp.shape}")
    if out.ndim != 3 or out.shape[2] != 2:
        raise ValueError(f"out must have shape (Y, X, 2), got {out.shape}")
    cy = _check_grid(centres_y, disp.shape[0], "centres_y")
    cx = _check_grid(centres_x, disp.shape[1], "centres_x")
    _interpolate_field(disp, cy, cx, out)
    return out


def warp_field(
    frames: np.ndarray,
    displacements: np.ndarray,
    centres_y: Any,
    centres_x: Any,
    out: np.ndarray,
    cval: float = np.nan,
    interpolation: str = "linear",
) -> np.ndarray:
    """Warp frames by displacement fields given at block centres.

    For every frame ``t`` and plane ``z``, the per-pixel field ``d(p)`` is
    interpolated from ``displacements[t, z]`` as :func:`interpolate_field`
    does, and ``out[t, z, p] = frames[t, z](p - d(p))`` is the sample
    defined in the module docstring (NaN, or ``cval``, where the source point
    lies outside the frame or a pixel of its support is NaN). Every channel is
    moved by the same field. A single centre per axis gives a rigid
    (sub-pixel) shift of each plane, applied separably (faster). Rows (or,
    for rigid shifts, blocks of rows) are shared out among numba's threads.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n, Z, Y, X, C)
        Source frames, any numeric dtype; read without a converted copy.
    displacements : numpy.ndarray, shape (n, Z, Gy, Gx, 2)
        ``(dy, dx)`` at each block centre of each frame and plane.
    centres_y, centres_x : array_like, shapes (Gy,) and (Gx,)
        Block centres (output pixel coordinates), strictly increasing.
    out : numpy.ndarray of float32 or float64, shape (n, Z, Yo, Xo, C)
        Output, overwritten; its rows and columns set the output grid (the
        field is defined in output coordinates). Must not share memory with
        ``frames``.
    cval : float, optional
        Value where nothing lands (default NaN).
    interpolation : {'linear', 'cubic', 'nearest'}, optional
        See :data:`INTERPOLATIONS` (default ``'linear'``).

    Returns
    -------
    numpy.ndarray
        ``out``.

    Raises
    ------
    ValueError
        For mismatched shapes, non-finite displacements, invalid centres or
        an unknown interpolation.
    TypeError
        If ``out`` is not a float32 or float64 array.
    """
    order = interpolation_order(interpolation)
    _check_out(out)
    if frames.ndim != 5 or out.ndim != 5:
        raise ValueError(
            f"frames and out must have shape (n, Z, Y, X, C), got {frames.shape}, {out.shape}"
        )
    n, nz, _, _, nc = frames.shape
    if out.shape[:2] != (n, nz) or out.shape[4] != nc:
        raise ValueError(f"incompatible shapes: frames {frames.shape}, out {out.shape}")
    disp = np.ascontiguousarray(displacements, dtype=np.float64)
    if disp.ndim != 5 or disp.shape[:2] != (n, nz) or disp.shape[4] != 2:
        raise ValueError(f"displacements must have shape ({n}, {nz}, Gy, Gx, 2), got {disp.shape}")
    if not np.all(np.isfinite(disp)):
        raise ValueError("displacements must be finite")
    cy = _check_grid(centres_y, disp.shape[2], "centres_y")
    cx = _check_grid(centres_x, disp.shape[3], "centres_x")
    if disp.shape[2] == 1 and disp.shape[3] == 1:
        # one block: a constant shift per plane, applied separably
        _shift_planes(frames, disp[:, :, 0, 0], order, out, float(cval))
    else:
        _warp_field_frames(frames, disp, cy, cx, order, out, float(cval))
    return out


# ---------------------------------------------------------------------------
# blocks of frames for block-wise (piecewise-rigid) registration
# ---------------------------------------------------------------------------


@jit(parallel=True, fastmath=FASTMATH)
def _gather_blocks(frames, offsets, starts, taper, out):  # pragma: no cover - compiled
    n, ny, nx = frames.shape
    nb = starts.shape[0]
    by, bx = taper.shape
    for job in prange(n * nb):
        f = job // nb
        b = job % nb
        y0 = starts[b, 0] - offsets[f, 0]
        x0 = starts[b, 1] - offsets[f, 1]
        total = 0.0
        count = 0
        for i in range(by):
            yy = y0 + i
            for j in range(bx):
                xx = x0 + j
                if 0 <= yy < ny and 0 <= xx < nx:
                    v = np.float64(frames[f, yy, xx])
                    if v - v == 0.0:
                        total += v
                        count += 1
        mean = total / count if count > 0 else 0.0
        for i in range(by):
            yy = y0 + i
            for j in range(bx):
                xx = x0 + j
                v = np.nan
                if 0 <= yy < ny and 0 <= xx < nx:
                    v = np.float64(frames[f, yy, xx])
                if v - v == 0.0:
                    out[f, b, i, j] = (v - mean) * taper[i, j]
                else:
                    out[f, b, i, j] = 0.0


def gather_blocks(
    frames: np.ndarray, offsets: np.ndarray, starts: np.ndarray, taper: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """Cut tapered, mean-subtracted blocks out of frames, each frame at its own offset.

    Block ``b`` of frame ``f`` is the ``(By, Bx)`` window of the frame whose
    top-left corner is ``starts[b] - offsets[f]`` (a block of the reference
    at ``starts[b]``, followed to where the frame's content was moved by a
    whole-pixel shift ``offsets[f]``). Its finite pixels inside the frame
    minus their mean, times ``taper``, fill ``out[f, b]``; pixels outside the
    frame or not finite are 0.

    Parameters
    ----------
    frames : numpy.ndarray, shape (n, Y, X)
        Frames, any real dtype (NaN marks unobserved pixels).
    offsets : numpy.ndarray of int, shape (n, 2)
        Whole-pixel ``(dy, dx)`` per frame.
    starts : numpy.ndarray of int, shape (B, 2)
        Top-left corner ``(y, x)`` of each block in reference coordinates.
    taper : numpy.ndarray, shape (By, Bx)
        Window multiplying each block.
    out : numpy.ndarray of float32 or float64, shape (n, B, By, Bx)
        Output, overwritten.

    Returns
    -------
    numpy.ndarray
        ``out``.

    Raises
    ------
    ValueError
        For mismatched shapes.
    TypeError
        If ``out`` is not a float32 or float64 array.
    """
    _check_out(out)
    off = np.ascontiguousarray(offsets, dtype=np.int64)
    st = np.ascontiguousarray(starts, dtype=np.int64)
    tp = np.ascontiguousarray(taper, dtype=np.float64)
    if frames.ndim != 3 or off.shape != (frames.shape[0], 2):
        raise ValueError(
            f"frames (n, Y, X) and offsets (n, 2) expected, got {frames.shape}, {off.shape}"
        )
    if st.ndim != 2 or st.shape[1] != 2 or tp.ndim != 2:
        raise ValueError(f"starts (B, 2) and taper (By, Bx) expected, got {st.shape}, {tp.shape}")
    if out.shape != (frames.shape[0], st.shape[0], *tp.shape):
        raise ValueError(
            f"out must have shape {(frames.shape[0], st.shape[0], *tp.shape)}, got {out.shape}"
        )
    _gather_blocks(frames, off, st, tp, out)
    return out


@jit(parallel=True, fastmath=FASTMATH)
def _block_cross_power(spectra, reference, eps):  # pragma: no cover - compiled
    n, nb, ny, nx = spectra.shape
    for job in prange(n * nb):
        f = job // nb
        b = job % nb
        largest = 0.0
        for y in range(ny):
            for x in range(nx):
                v = spectra[f, b, y, x]
                a = v.real * v.real + v.imag * v.imag
                if a > largest:
                    largest = a
        floor = eps * math.sqrt(largest) + 1e-30
        for y in range(ny):
            for x in range(nx):
                v = spectra[f, b, y, x]
                r = reference[b, y, x]
                inv = 1.0 / (math.sqrt(v.real * v.real + v.imag * v.imag) + floor)
                re = (r.real * v.real + r.imag * v.imag) * inv
                im = (r.imag * v.real - r.real * v.imag) * inv
                spectra[f, b, y, x] = complex(re, im)


def block_cross_power(spectra: np.ndarray, reference: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Whitened cross-power spectra of blocks with their own reference blocks, in place.

    ``spectra[f, b]`` becomes ``reference[b] · conj(F) / (|F| + eps · max|F|)``
    with ``F = spectra[f, b]``: the phase correlation of block ``b`` of frame
    ``f`` with block ``b`` of the reference, whose spectrum the caller has
    prepared (whitened, smoothed). Its inverse transform peaks at ``d`` when
    ``reference(p) ≈ block(p - d)``.

    Parameters
    ----------
    spectra : numpy.ndarray of complex64 or complex128, shape (n, B, Ky, Kx)
        The blocks' ``rfft2``; overwritten.
    reference : numpy.ndarray of complex, shape (B, Ky, Kx)
        The reference blocks' spectra as they should multiply.
    eps : float, optional
        Relative regulariser of the whitening (default 1e-6).

    Returns
    -------
    numpy.ndarray
        ``spectra``.

    Raises
    ------
    ValueError
        For mismatched shapes or arrays that are not complex.
    """
    if spectra.dtype.kind != "c" or reference.dtype.kind != "c":
        raise ValueError("spectra and reference must be complex arrays")
    if spectra.ndim != 4 or reference.shape != spectra.shape[1:]:
        raise ValueError(
            f"spectra (n, B, Ky, Kx) and reference (B, Ky, Kx) expected, got {spectra.shape}, "
            f"{reference.shape}"
        )
    _block_cross_power(spectra, reference, float(eps))
    return spectra

"""Kernels that resample images: bilinear warps, point sampling and frame shifts.

All three kernels share one definition of bilinear interpolation. A sample at
the continuous position ``(y, x)`` (pixel centres at integers) is defined when
``0 <= y <= Y - 1`` and ``0 <= x <= X - 1``; it is the weighted sum of the
(up to) four pixels around it, ``(1 - fy)(1 - fx) v[y0, x0] + ...`` with
``y0 = floor(y)``, ``fy = y - y0`` (the same along x). Only the pixels with a
nonzero weight take part, so a sample that falls exactly on a pixel centre
returns that pixel's value even when its neighbours are NaN; a NaN among the
pixels that do take part makes the sample NaN. A sample outside the frame gets
the fill value ``cval`` (NaN by default).

Images are read in their own dtype (uint16, float32, float64, ...; native byte
order) without a converted copy; arithmetic is in float64 and the result is stored in the dtype
of the preallocated output (float32 or float64).

:func:`warp_affine` samples an image on the grid ``matrix @ (x, y, 1)`` of
every output pixel (an affine or projective map);
:func:`sample_bilinear` samples it at arbitrary points; :func:`shift_frame`
translates a frame (with channels) by a sub-pixel or integer shift, copying
the values exactly when the shift is a whole number of pixels;
:func:`warp_field` moves blocks of frames ``(n, Z, Y, X, C)`` by smooth
displacement fields given at block centres (non-rigid motion correction), and
:func:`interpolate_field` gives such a field per pixel; :func:`gather_blocks`
cuts the tapered blocks that block-wise registration correlates and
:func:`block_cross_power` whitens their spectra against the reference's blocks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from sima_fast.kernels._jit import FASTMATH, jit

__all__ = [
    "block_cross_power",
    "gather_blocks",
    "interpolate_field",
    "sample_bilinear",
    "shift_frame",
    "warp_affine",
    "warp_field",
]


@njit(cache=True, nogil=True, inline="always")
def _bilinear(image, c, y, x, ny, nx, cval):  # pragma: no cover - compiled
    """Bilinear sample of channel ``c`` of ``image`` (Y, X, C) at ``(y, x)``."""
    if not (0.0 <= y <= ny - 1.0 and 0.0 <= x <= nx - 1.0):
        return cval
    y0 = math.floor(y)
    x0 = math.floor(x)
    fy = y - y0
    fx = x - x0
    acc = (1.0 - fy) * (1.0 - fx) * np.float64(image[y0, x0, c])
    if fx > 0.0:
        acc += (1.0 - fy) * fx * np.float64(image[y0, x0 + 1, c])
    if fy > 0.0:
        acc += fy * (1.0 - fx) * np.float64(image[y0 + 1, x0, c])
        if fx > 0.0:
            acc += fy * fx * np.float64(image[y0 + 1, x0 + 1, c])
    return acc


@njit(cache=True, nogil=True)
def _warp_affine(image, matrix, out, cval):  # pragma: no cover - compiled
    ny, nx, nc = image.shape
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
            for c in range(nc):
                out[row, col, c] = _bilinear(image, c, y, x, ny, nx, cval)


@njit(cache=True, nogil=True)
def _sample_points(image, ys, xs, out, cval):  # pragma: no cover - compiled
    ny, nx, nc = image.shape
    for i in range(ys.shape[0]):
        y = np.float64(ys[i])
        x = np.float64(xs[i])
        for c in range(nc):
            out[i, c] = _bilinear(image, c, y, x, ny, nx, cval)


@njit(cache=True, nogil=True)
def _axis_samples(n, d):  # pragma: no cover - compiled
    """Source index, fraction and validity of the positions ``i - d``, ``i < n``."""
    base = np.empty(n, dtype=np.int64)
    frac = np.empty(n, dtype=np.float64)
    ok = np.empty(n, dtype=np.bool_)
    for i in range(n):
        s = np.float64(i) - d
        ok[i] = 0.0 <= s <= n - 1.0
        if ok[i]:
            base[i] = math.floor(s)
            frac[i] = s - base[i]
        else:
            base[i] = 0
            frac[i] = 0.0
    return base, frac, ok


@njit(cache=True, nogil=True)
def _shift_frame(frame, dy, dx, out, cval):  # pragma: no cover - compiled
    ny, nx, nc = frame.shape
    # out[y, x] = frame(y - dy, x - dx): the source positions of each row and
    # of each column are computed once.
    y0s, fys, oky = _axis_samples(ny, dy)
    x0s, fxs, okx = _axis_samples(nx, dx)
    for row in range(ny):
        if not oky[row]:
            for col in range(nx):
                for c in range(nc):
                    out[row, col, c] = cval
            continue
        y0 = y0s[row]
        fy = fys[row]
        for col in range(nx):
            if not okx[col]:
                for c in range(nc):
                    out[row, col, c] = cval
                continue
            x0 = x0s[col]
            fx = fxs[col]
            for c in range(nc):
                acc = (1.0 - fy) * (1.0 - fx) * np.float64(frame[y0, x0, c])
                if fx > 0.0:
                    acc += (1.0 - fy) * fx * np.float64(frame[y0, x0 + 1, c])
                if fy > 0.0:
                    acc += fy * (1.0 - fx) * np.float64(frame[y0 + 1, x0, c])
                    if fx > 0.0:
                        acc += fy * fx * np.float64(frame[y0 + 1, x0 + 1, c])
                out[row, col, c] = acc


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
    image: np.ndarray, matrix: np.ndarray, out: np.ndarray, cval: float = np.nan
) -> np.ndarray:
    """Resample ``image`` at ``matrix @ (x, y, 1)`` for every pixel of ``out``.

    Output pixel ``(row, col)`` takes the bilinear sample of ``image`` at
    ``(x, y) = (u / w, v / w)`` with ``(u, v, w) = matrix @ (col, row, 1)``,
    i.e. ``matrix`` maps output coordinates to input coordinates
    ``(column, row)`` with pixel centres at integers (the convention of
    :func:`skimage.transform.warp` with an inverse map). See the module
    docstring for the interpolation and the treatment of NaN.

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

    Returns
    -------
    numpy.ndarray
        ``out``.

    Raises
    ------
    ValueError
        For mismatched dimensions or channel counts, or a matrix that is not
        3×3.
    TypeError
        If ``out`` is not a float32 or float64 array.
    """
    _check_out(out)
    src = _with_channels(image, "image")
    dst = _with_channels(out, "out")
    if image.ndim != out.ndim or src.shape[2] != dst.shape[2]:
        raise ValueError(f"incompatible shapes: image {image.shape}, out {out.shape}")
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"matrix must be 3×3, got shape {m.shape}")
    _warp_affine(src, m, dst, float(cval))
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
    _sample_points(src, ys, xs, dst, float(cval))
    return out


def shift_frame(
    frame: np.ndarray, shift: tuple[float, float], out: np.ndarray, cval: float = np.nan
) -> np.ndarray:
    """Translate a frame by ``shift = (dy, dx)`` pixels (bilinear, sub-pixel).

    ``out[y, x] = frame(y - dy, x - dx)``: positive shifts move the content
    down and to the right, as :func:`scipy.ndimage.shift` does. Pixels whose
    source lies outside the frame get ``cval``. A whole-pixel shift copies the
    values exactly.

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

    Returns
    -------
    numpy.ndarray
        ``out``.

    Raises
    ------
    ValueError
        If ``out`` has another shape than ``frame`` or the shift is not
        finite.
    TypeError
        If ``out`` is not a float32 or float64 array.
    """
    _check_out(out)
    if out.shape != frame.shape:
        raise ValueError(f"incompatible shapes: frame {frame.shape}, out {out.shape}")
    dy, dx = (float(s) for s in shift)
    if not (math.isfinite(dy) and math.isfinite(dx)):
        raise ValueError(f"the shift must be finite, got {shift!r}")
    _shift_frame(_with_channels(frame, "frame"), dy, dx, _with_channels(out, "out"), float(cval))
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
def _warp_field_frames(src, disp, cy, cx, out, cval):  # pragma: no cover - compiled
    n, nz, ny, nx, nc = src.shape
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
        for col in range(ox):
            dy = _field_at(field, 0, iy, wy, ixs[col], wxs[col])
            dx = _field_at(field, 1, iy, wy, ixs[col], wxs[col])
            y = r - dy
            x = np.float64(col) - dx
            for c in range(nc):
                out[t, z, row, col, c] = _bilinear(image, c, y, x, ny, nx, cval)


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
) -> np.ndarray:
    """Warp frames by displacement fields given at block centres (bilinear).

    For every frame ``t`` and plane ``z``, the per-pixel field ``d(p)`` is
    interpolated from ``displacements[t, z]`` as :func:`interpolate_field`
    does, and ``out[t, z, p] = frames[t, z](p - d(p))`` is the bilinear
    sample defined in the module docstring (NaN, or ``cval``, where the source
    point lies outside the frame or a source pixel it needs is NaN). Every
    channel is moved by the same field. A single centre per axis gives a
    rigid (sub-pixel) shift of each plane.

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

    Returns
    -------
    numpy.ndarray
        ``out``.

    Raises
    ------
    ValueError
        For mismatched shapes, non-finite displacements or invalid centres.
    TypeError
        If ``out`` is not a float32 or float64 array.
    """
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
    _warp_field_frames(frames, disp, cy, cx, out, float(cval))
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

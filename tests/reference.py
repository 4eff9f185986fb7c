"""Slow, obviously-correct reference implementations the fast code is checked against.

Everything here is plain numpy / scipy / h5py / tifffile, written for clarity,
never for speed. Tests compare sima_fast's readers, wrappers and kernels with
these functions.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

DIMS = "tzyxc"


def to_tzyxc(array: np.ndarray, dim_order: str) -> np.ndarray:
    """Rearrange an array stored in ``dim_order`` into (t, z, y, x, c), as float64."""
    arr = np.asarray(array, dtype=np.float64)
    for d in DIMS:
        if d not in dim_order:
            arr = arr[..., np.newaxis]
            dim_order = dim_order + d
    return np.transpose(arr, [dim_order.index(d) for d in DIMS]).copy()


def read_hdf5(path: str, dim_order: str, key: str, group: str = "/") -> np.ndarray:
    """Read a whole HDF5 dataset with h5py and rearrange it."""
    import h5py

    with h5py.File(path, "r") as f:
        data = f[group][key][()]
    return to_tzyxc(data, dim_order)


def read_interleaved_tiff(path: str, planes: int, channels: int) -> np.ndarray:
    """Read every page with tifffile; page of (t, p, c) is t*P*C + p*C + c."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        pages = [p.asarray() for p in tif.pages]
    n = len(pages) // (planes * channels)
    y, x = pages[0].shape
    out = np.empty((n, planes, y, x, channels))
    for t in range(n):
        for p in range(planes):
            for c in range(channels):
                out[t, p, :, :, c] = pages[t * planes * channels + p * channels + c]
    return out


def index_like_sequence(array: np.ndarray, indices: tuple) -> np.ndarray:
    """Apply per-axis indices to a (t, z, y, x, c) array, keeping integer-indexed axes."""
    if not isinstance(indices, tuple):
        indices = (indices,)
    out = np.asarray(array)
    for axis, idx in enumerate(indices):
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        sl = [slice(None)] * out.ndim
        sl[axis] = idx
        out = out[tuple(sl)]
    return out


def mask_frames(array: np.ndarray, masks: list) -> np.ndarray:
    """Set masked pixels to NaN, entry by entry, with explicit loops."""
    out = np.asarray(array, dtype=np.float64).copy()
    T, Z, Y, X, C = out.shape

    def listify(v, n):
        if v is None:
            return list(range(n))
        return [int(i) % n for i in np.atleast_1d(v)]

    for m in masks:
        frames, channels = listify(m[0], T), listify(m[-1], C)
        if len(m) == 3:
            spatial = np.ones((Z, Y, X), bool) if m[1] is None else np.asarray(m[1], bool)
        else:
            spatial = np.zeros((Z, Y, X), bool)
            for p in listify(m[1], Z):
                spatial[p] = True if m[2] is None else np.asarray(m[2], bool)
        for t in frames:
            for c in channels:
                for z, y, x in zip(*np.nonzero(spatial)):
                    out[t, z, y, x, c] = np.nan
    return out


def displace(array: np.ndarray, displacements: np.ndarray, frame_shape=None) -> np.ndarray:
    """Place every source pixel at its displaced position; average collisions; NaN if none.

    A pixel that receives a non-finite value is NaN (SIMA's rule).
    """
    src = np.asarray(array, dtype=np.float64)
    T, Z, Y, X, C = src.shape
    d = np.asarray(displacements, dtype=np.int64)
    if d.shape[-1] == 2:
        d = np.concatenate([np.zeros((*d.shape[:-1], 1), np.int64), d], axis=-1)
    rows = np.zeros((T, Z, Y, 3), np.int64)
    for t in range(T):
        for z in range(Z):
            for y in range(Y):
                if d.ndim == 2:
                    rows[t, z, y] = d[t]
                elif d.ndim == 3:
                    rows[t, z, y] = d[t, z]
                else:
                    rows[t, z, y] = d[t, z, y]
    if frame_shape is None:
        frame_shape = (
            Z + rows[..., 0].max(initial=0),
            Y + rows[..., 1].max(initial=0),
            X + rows[..., 2].max(initial=0),
        )
    Zo, Yo, Xo = frame_shape
    total = np.zeros((T, Zo, Yo, Xo, C))
    count = np.zeros((T, Zo, Yo, Xo, C))
    missing = np.zeros((T, Zo, Yo, Xo, C), dtype=bool)
    for t in range(T):
        for z in range(Z):
            for y in range(Y):
                dz, dy, dx = rows[t, z, y]
                for x in range(X):
                    tz, ty, tx = z + dz, y + dy, x + dx
                    if tz < Zo and ty < Yo and tx < Xo:
                        for c in range(C):
                            v = src[t, z, y, x, c]
                            count[t, tz, ty, tx, c] += 1
                            if np.isfinite(v):
                                total[t, tz, ty, tx, c] += v
                            else:
                                missing[t, tz, ty, tx, c] = True
    with np.errstate(invalid="ignore"):
        return np.where((count > 0) & ~missing, total / np.maximum(count, 1), np.nan)


def projections(frames: np.ndarray) -> dict[str, np.ndarray]:
    """nanmean, nanstd (ddof 0) and Pearson kurtosis per pixel with numpy/scipy."""
    x = np.asarray(frames, dtype=np.float64)
    mean = np.full(x.shape[1:], np.nan)
    std = np.full(x.shape[1:], np.nan)
    kurt = np.full(x.shape[1:], np.nan)
    flat = x.reshape(x.shape[0], -1)
    for p in range(flat.shape[1]):
        v = flat[:, p]
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        idx = np.unravel_index(p, x.shape[1:])
        mean[idx] = v.mean()
        std[idx] = v.std()
        if np.ptp(v) > 0:
            kurt[idx] = scipy.stats.kurtosis(v, fisher=False, bias=True)
    return {"time_averages": mean, "time_std": std, "time_kurtosis": kurt}


def fill_gaps(frames: np.ndarray) -> np.ndarray:
    """The definition, pixel by pixel, with plain loops."""
    x = np.asarray(frames, dtype=np.float64)
    out = np.full_like(x, np.nan)
    flat_in = x.reshape(len(x), -1)
    flat_out = out.reshape(len(x), -1)
    for p in range(flat_in.shape[1]):
        trace = flat_in[:, p]
        finite = np.flatnonzero(np.isfinite(trace))
        if finite.size == 0:
            continue
        current = trace[finite[0]]
        for t in range(len(trace)):
            if np.isfinite(trace[t]):
                current = trace[t]
            flat_out[t, p] = current
    return out


def extract_reference(
    frames_list: list,
    masks_dense: np.ndarray,
    boolean_flags: list,
    remove_overlap: bool,
    mean_frame: np.ndarray,
) -> list[np.ndarray]:
    """ROI signals as docs/contract.md#extraction defines them, densely, frame by frame.

    ``frames_list``: per sequence, the signal channel as ``(T, Z, Y, X)``;
    ``masks_dense``: ``(n_rois, Z, Y, X)`` mask values; ``boolean_flags[i]``:
    whether ROI i is a boolean mask (normalised to sum to 1). Pixels whose mean
    ``mean_frame`` is 0 or not finite count as never observed (NaN in every
    frame). Returns, per sequence, an ``(n_rois, T)`` float64 array.
    """
    masks = np.asarray(masks_dense, dtype=np.float64)
    n = masks.shape[0]
    M = masks.reshape(n, -1).copy()
    npix = M.shape[1]
    mu = np.asarray(mean_frame, dtype=np.float64).reshape(npix)
    # 1.-2. sparse rows over the flattened pixels; pixels in more than one mask
    in_masks = (M != 0).sum(axis=0)
    overlap = [p for p in range(npix) if in_masks[p] > 1]
    if remove_overlap:
        for p in overlap:
            M[:, p] = 0.0
    # 3. boolean masks sum to 1; weighted masks as given; empty ROIs give NaN
    sizes = (M != 0).sum(axis=1)
    for i in range(n):
        if boolean_flags[i] and sizes[i] > 0:
            M[i] = (M[i] != 0).astype(np.float64) / sizes[i]
    used = [i for i in range(n) if sizes[i] > 0]
    observed_mean = np.isfinite(mu) & (mu != 0)
    # 4. the pseudo-inverse path: overlapping masks that are kept
    pinv_path = (not remove_overlap) and len(overlap) > 0
    if pinv_path:
        pixels = [p for p in range(npix) if any(M[i, p] != 0 for i in used)]
        M_used = M[np.ix_(used, pixels)]  # rows = ROIs, columns = masked pixels
        A = np.linalg.pinv(M_used)
    out = []
    for frames in frames_list:
        x = np.asarray(frames, dtype=np.float64)
        T = x.shape[0]
        res = np.full((n, T), np.nan)
        for t in range(T):
            y = np.full(npix, np.nan)  # F_p(t) / μ_p; NaN where not observed
            flat = x[t].reshape(npix)
            for p in range(npix):
                if observed_mean[p] and np.isfinite(flat[p]):
                    y[p] = flat[p] / mu[p]
            finite = np.isfinite(y)
            if pinv_path:
                f = finite[pixels]
                if f.all():
                    weights = M_used  # pinv(pinv(M)) = M
                elif f.any():
                    weights = np.linalg.pinv(A[f])  # (n_used, n_finite)
                else:
                    continue
                values = weights @ y[pixels][f]
                for k, i in enumerate(used):
                    imaged = any(M[i, p] != 0 for p in np.asarray(pixels)[f])
                    if imaged:
                        res[i, t] = values[k]
                continue
            for i in used:
                in_mask = M[i] != 0
                ok = in_mask & finite
                if not ok.any():
                    continue
                total = 0.0
                for p in np.flatnonzero(ok):
                    total += M[i, p] * y[p]
                rescale = np.sum(M[i, in_mask] ** 2) / np.sum(M[i, ok] ** 2)
                res[i, t] = total * rescale
        out.append(res)
    return out


def surround_reference(
    masks_dense: np.ndarray,
    usable: np.ndarray,
    inner_radius: float,
    outer_radius: float | None,
    min_pixels: int,
    exclude_rois: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Neuropil surrounds as docs/contract.md#neuropil defines them, on whole planes.

    ``masks_dense``: ``(n_rois, Z, Y, X)`` mask values (an ROI's pixels are its
    non-zero ones); ``usable``: ``(Z, Y, X)`` bool. For every ROI, the distance
    of each pixel of each of its planes to the ROI's nearest pixel in that plane
    (a Euclidean distance transform of the whole plane); candidates are farther
    than ``inner_radius``, usable and (``exclude_rois``) in no ROI. With
    ``outer_radius`` None the radius is the ``min_pixels``-th smallest candidate
    distance (all candidates if fewer). Returns ``(n_rois, Z, Y, X)`` bool
    surrounds and the radii.
    """
    from scipy.ndimage import distance_transform_edt

    masks = np.asarray(masks_dense) != 0
    n = masks.shape[0]
    allowed = np.asarray(usable, dtype=bool).copy()
    if exclude_rois:
        allowed &= ~masks.any(axis=0)
    out = np.zeros(masks.shape, dtype=bool)
    radii = np.full(n, np.nan)
    for i in range(n):
        dist = np.full(masks.shape[1:], np.inf)
        for z in range(masks.shape[1]):
            if masks[i, z].any():
                dist[z] = distance_transform_edt(~masks[i, z])
        candidate = (dist > inner_radius) & allowed & np.isfinite(dist)
        if not masks[i].any():
            continue
        if outer_radius is not None:
            radius = outer_radius
        else:
            d = np.sort(dist[candidate])
            radius = d[min_pixels - 1] if d.size >= min_pixels else (d[-1] if d.size else np.inf)
        out[i] = candidate & (dist <= radius)
        radii[i] = radius
    return out, radii


def neuropil_reference(
    frames_list: list,
    masks_dense: np.ndarray,
    boolean_flags: list,
    remove_overlap: bool,
    mean_frame: np.ndarray,
    surrounds: np.ndarray,
) -> list[np.ndarray]:
    """Neuropil traces as docs/contract.md#neuropil defines them, by dense products.

    ``neuropil_i(t) = s_i · (mean of F over the finite pixels of surround i in
    frame t)``, with ``s_i = Σ_p w_ip / μ_p`` the ROI's weights (after overlap
    removal and normalisation) over its observed pixels, rescaled by
    ``Σ_all w² / Σ_observed w²`` as for the ROI's own signal. NaN for an ROI
    left without pixels or a frame with no finite surround pixel. Returns, per
    sequence, ``(n_rois, T)`` float64.
    """
    masks = np.asarray(masks_dense, dtype=np.float64)
    n = masks.shape[0]
    M = masks.reshape(n, -1).copy()
    mu = np.asarray(mean_frame, dtype=np.float64).reshape(-1)
    if remove_overlap:
        M[:, (M != 0).sum(axis=0) > 1] = 0.0
    sizes = (M != 0).sum(axis=1)
    for i in range(n):
        if boolean_flags[i] and sizes[i] > 0:
            M[i] = (M[i] != 0).astype(np.float64) / sizes[i]
    observed = np.isfinite(mu) & (mu != 0)
    inv_mu = np.where(observed, 1.0 / np.where(observed, mu, 1.0), 0.0)
    scale = np.zeros(n)
    for i in range(n):
        w = M[i]
        seen = (w**2 * observed).sum()
        if sizes[i] > 0 and seen > 0:
            scale[i] = (w * inv_mu).sum() * (w**2).sum() / seen
    S = np.asarray(surrounds, dtype=np.float64).reshape(n, -1)
    out = []
    for frames in frames_list:
        x = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1)
        finite = np.isfinite(x)
        sums = S @ np.where(finite, x, 0.0).T
        counts = S @ finite.T.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(counts > 0, scale[:, None] * sums / counts, np.nan)
        value[sizes == 0] = np.nan
        out.append(value)
    return out

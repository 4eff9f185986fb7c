"""Kernels behind automatic segmentation: chunk centring, neighbour products, affinities, cuts.

The segmentation strategies (:mod:`sima_fast.segment.stica`,
:mod:`sima_fast.segment.normcut`) stream a movie plane chunk by chunk and
reduce it to a few principal components, then build a sparse graph of
neighbouring pixels and cut it. The array work of those steps lives here:

- :func:`center_frames` turns a raw ``(frames, Y, X)`` chunk of any numeric
  dtype into centred, scaled float32 rows ready for BLAS, and at the same
  time accumulates the per-pixel statistics the PCA needs (squared
  deviations, squared frame-to-frame differences for the noise level) and the
  per-frame sums that make up the plane's mean trace;
- :func:`neighbour_dots` forms, for every pixel and every offset of a small
  neighbourhood, the dot product of the two pixels' feature vectors (their
  coordinates in principal-component space);
- :func:`path_maxima` takes, for every pixel pair, the largest value of an
  image along the straight path between the two pixels;
- :func:`affinity_edges` turns per-offset correlations into the edge list of
  a sparse affinity matrix;
- :func:`ncut_sweep` evaluates the normalised cut of every split of an
  ordered node list in one pass over the edges.

All are pure functions of arrays; the parallel ones split work by image rows,
so each thread owns its outputs and no two threads write the same element.

References
----------
J. Shi and J. Malik, "Normalized cuts and image segmentation", IEEE Trans.
Pattern Anal. Mach. Intell. 22(8), 888-905 (2000),
https://doi.org/10.1109/34.868688.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from sima_fast.kernels._jit import jit

__all__ = [
    "affinity_edges",
    "center_frames",
    "ncut_sweep",
    "neighbour_dots",
    "path_maxima",
]


@jit(parallel=True)
def center_frames(
    block, mean, scale, out, frame_sums, prev, stats, sum_sq, sum_dsq, n_dsq
):  # pragma: no cover - compiled
    """Centre and scale a chunk of frames of one plane, optionally accumulating statistics.

    Parameters
    ----------
    block : ndarray, shape (n, Y, X)
        Raw frames (any real dtype, any strides). Non-finite values count as
        missing.
    mean : ndarray of float64, shape (Y, X)
        Per-pixel centre; a non-finite centre marks a pixel as unusable.
    scale : ndarray of float64, shape (Y, X)
        Per-pixel factor applied after centring (0 drops a pixel).
    out : ndarray of float32, shape (n, Y * X)
        Receives ``(block - mean) * scale`` with missing values and unusable
        pixels set to 0.
    frame_sums : ndarray of float64, shape (Y, n)
        Receives, per image row and frame, the sum of the row's ``out``
        values (sum over axis 0 for the per-frame totals).
    prev : ndarray of float64, shape (Y, X)
        The frame before ``block[0]`` (NaN where there is none). Updated in
        place to ``block[-1]`` when ``stats`` is true.
    stats : bool
        Whether to accumulate ``sum_sq``, ``sum_dsq`` and ``n_dsq``.
    sum_sq : ndarray of float64, shape (Y, X)
        Accumulates ``out ** 2`` (in float64) over the frames.
    sum_dsq : ndarray of float64, shape (Y, X)
        Accumulates the squared difference of consecutive finite values.
    n_dsq : ndarray of int64, shape (Y, X)
        Counts those differences.
    """
    n, rows, cols = block.shape
    for y in prange(rows):
        m = mean[y]
        s = scale[y]
        last = prev[y]
        base = y * cols
        for t in range(n):
            src = block[t, y]
            dst = out[t, base : base + cols]
            acc = 0.0
            for x in range(cols):
                v = np.float64(src[x])
                d = (v - m[x]) * s[x]
                d = d if d - d == 0.0 else 0.0  # missing value, unusable pixel
                dst[x] = np.float32(d)
                acc += d
            frame_sums[y, t] = acc
            if stats:
                sq = sum_sq[y]
                dsq = sum_dsq[y]
                cnt = n_dsq[y]
                for x in range(cols):
                    v = np.float64(src[x])
                    d = np.float64(dst[x])
                    sq[x] += d * d
                    diff = v - last[x]
                    if diff - diff == 0.0:  # both values finite
                        dsq[x] += diff * diff
                        cnt[x] += 1
                    last[x] = v


@jit(parallel=True)
def neighbour_dots(features, offsets, out):  # pragma: no cover - compiled
    """Dot products of the feature vectors of each pixel and its neighbours.

    Parameters
    ----------
    features : ndarray of float64, shape (Y, X, k)
        One feature vector per pixel.
    offsets : ndarray of int64, shape (m, 2)
        ``(dy, dx)`` of each neighbour.
    out : ndarray of float64, shape (m, Y, X)
        Receives ``features[y, x] · features[y + dy, x + dx]``, or 0 where
        the neighbour falls outside the image.
    """
    rows, cols, k = features.shape
    m = offsets.shape[0]
    for y in prange(rows):
        for o in range(m):
            dy = offsets[o, 0]
            dx = offsets[o, 1]
            yy = y + dy
            for x in range(cols):
                xx = x + dx
                acc = 0.0
                if 0 <= yy < rows and 0 <= xx < cols:
                    for j in range(k):
                        acc += features[y, x, j] * features[yy, xx, j]
                out[o, y, x] = acc


@jit(parallel=True)
def path_maxima(image, offsets, path_ptr, path_steps, out):  # pragma: no cover - compiled
    """Largest image value on the path from each pixel to each of its neighbours.

    Parameters
    ----------
    image : ndarray of float64, shape (Y, X)
        The image.
    offsets : ndarray of int64, shape (m, 2)
        ``(dy, dx)`` of each neighbour.
    path_ptr : ndarray of int64, shape (m + 1,)
        Offset ``o`` visits the relative pixels ``path_steps[path_ptr[o]:path_ptr[o + 1]]``.
    path_steps : ndarray of int64, shape (N, 2)
        Relative ``(dy, dx)`` of the pixels on the paths (both ends included).
    out : ndarray of float64, shape (m, Y, X)
        Receives the maximum of ``image`` over the path, or ``-inf`` where
        the neighbour falls outside the image.
    """
    rows, cols = image.shape
    m = offsets.shape[0]
    for y in prange(rows):
        for o in range(m):
            yy = y + offsets[o, 0]
            for x in range(cols):
                xx = x + offsets[o, 1]
                best = -np.inf
                if 0 <= yy < rows and 0 <= xx < cols:
                    for s in range(path_ptr[o], path_ptr[o + 1]):
                        v = image[y + path_steps[s, 0], x + path_steps[s, 1]]
                        if v > best:
                            best = v
                out[o, y, x] = best


@jit
def affinity_edges(corr, offsets, log_factor, gain, min_corr):  # pragma: no cover - compiled
    """Edge list of a sparse affinity matrix from per-offset pixel correlations.

    Pixel ``a = y * X + x`` and its neighbour ``b`` at ``(y + dy, x + dx)``
    are joined when both are in the image and their correlation ``c`` is at
    least ``min_corr``; the edge weight is ``exp(gain * c + log_factor)``.

    Parameters
    ----------
    corr : ndarray of float64, shape (m, Y, X)
        Correlation of each pixel with its neighbour at each offset.
    offsets : ndarray of int64, shape (m, 2)
        ``(dy, dx)`` of each neighbour.
    log_factor : ndarray of float64, shape (m, Y, X)
        Additional log-weight of each edge (e.g. the spatial decay); edges
        with a non-finite value are left out.
    gain : float
        Multiplier of the correlation in the exponent.
    min_corr : float
        Smallest correlation that makes an edge.

    Returns
    -------
    rows, cols : ndarray of int64
        Node indices of the edges (each undirected edge once).
    weights : ndarray of float64
        Edge weights.
    """
    m, n_rows, n_cols = corr.shape
    count = 0
    for o in range(m):
        dy = offsets[o, 0]
        dx = offsets[o, 1]
        for y in range(n_rows):
            yy = y + dy
            if yy < 0 or yy >= n_rows:
                continue
            for x in range(n_cols):
                xx = x + dx
                if 0 <= xx < n_cols:
                    c = corr[o, y, x]
                    f = log_factor[o, y, x]
                    if c >= min_corr and f - f == 0.0:
                        count += 1
    rows = np.empty(count, dtype=np.int64)
    cols = np.empty(count, dtype=np.int64)
    weights = np.empty(count, dtype=np.float64)
    k = 0
    for o in range(m):
        dy = offsets[o, 0]
        dx = offsets[o, 1]
        for y in range(n_rows):
            yy = y + dy
            if yy < 0 or yy >= n_rows:
                continue
            for x in range(n_cols):
                xx = x + dx
                if 0 <= xx < n_cols:
                    c = corr[o, y, x]
                    f = log_factor[o, y, x]
                    if c >= min_corr and f - f == 0.0:
                        rows[k] = y * n_cols + x
                        cols[k] = yy * n_cols + xx
                        weights[k] = np.exp(gain * c + f)
                        k += 1
    return rows, cols, weights


@jit
def ncut_sweep(indptr, indices, data, degree, order):  # pragma: no cover - compiled
    """Normalised-cut value of every split of an ordered list of graph nodes.

    Split ``j`` (``1 <= j < n``) puts ``order[:j]`` in part A and the rest in
    part B; its value is ``cut / assoc(A) + cut / assoc(B)`` with ``cut`` the
    total weight of the edges between the parts and ``assoc`` the summed
    degree of a part. Nodes move from B to A one at a time, so all values
    cost one pass over the edges.

    Parameters
    ----------
    indptr, indices, data : ndarray
        The symmetric weight matrix in CSR form (no self-loops needed).
    degree : ndarray of float64, shape (n,)
        Row sums of the weight matrix.
    order : ndarray of int64, shape (n,)
        A permutation of the nodes.

    Returns
    -------
    ndarray of float64, shape (n - 1,)
        The value of split ``j`` at index ``j - 1``; ``inf`` where a part
        has no degree.
    """
    n = order.shape[0]
    in_a = np.zeros(n, dtype=np.bool_)
    total = 0.0
    for i in range(n):
        total += degree[i]
    costs = np.empty(max(n - 1, 0), dtype=np.float64)
    cut = 0.0
    assoc_a = 0.0
    for j in range(n - 1):
        v = order[j]
        to_a = 0.0
        to_b = 0.0
        for e in range(indptr[v], indptr[v + 1]):
            u = indices[e]
            if u == v:
                continue
            if in_a[u]:
                to_a += data[e]
            else:
                to_b += data[e]
        in_a[v] = True
        cut += to_b - to_a
        assoc_a += degree[v]
        assoc_b = total - assoc_a
        if assoc_a > 0.0 and assoc_b > 0.0:
            costs[j] = max(cut, 0.0) / assoc_a + max(cut, 0.0) / assoc_b
        else:
            costs[j] = np.inf
    return costs

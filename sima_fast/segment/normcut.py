"""Normalised-cut segmentation: PlaneNormalizedCuts, PlaneCA1PC and its CA1PCNucleus step.

Each plane becomes a graph whose nodes are pixels and whose edges join pixels
less than ``max_dist`` apart, weighted by how well their activity is
correlated. The graph is then cut in two again and again by the normalised
cut criterion of Shi & Malik (2000) until the pieces are cell-sized;
:class:`PlaneCA1PC` adds the steps SIMA uses for the somata of CA1 pyramidal
cells, whose dark nuclei show in the time-averaged image.

How the pixel correlations are estimated
----------------------------------------
:func:`~sima_fast.segment.stica.plane_pca` decomposes the plane's
noise-normalised movie ``z'`` (its mean trace removed) into principal
components. Pixel ``p`` gets the feature vector ``a[p] = U[p, :k] * S[:k]``
of its coordinates on the ``k`` components that clear the noise edge (at most
``num_pcs``), and two pixels the correlation

``c[p, q] = a[p] · a[q] / sqrt(E[p] * E[q])``

with ``E[p] = sum_t z'[p, t]**2`` the pixel's total energy. The numerator is
the covariance of the pixels' signal part (noise outside the signal
components is left out), the denominator the pixels' full variance, so
``c`` estimates the activity correlation without the noise bias and stays
near 0 for pixels without signal.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.ndimage
import scipy.sparse
import scipy.sparse.csgraph

from sima_fast._threads import blas_threads
from sima_fast._validate import (
    ArgumentTypeError,
    check_bool,
    check_channel,
    check_int,
    check_real,
    resolve_channel,
)
from sima_fast.ROI import ROI, ROIList
from sima_fast.segment._rois import (
    as_roilist,
    derived_roi,
    resolve_im_shape,
    roi_planes,
)
from sima_fast.segment.base import PostProcessingStep
from sima_fast.segment.postprocess import CircularityFilter, ROIFilter
from sima_fast.segment.stica import PlaneByPlaneStrategy, plane_pca

if TYPE_CHECKING:
    from sima_fast.imaging import ImagingDataset

__all__ = ["CA1PCNucleus", "PlaneCA1PC", "PlaneNormalizedCuts", "normalized_cut_regions"]

#: Affinity of two pixels with correlation c is proportional to exp(CORRELATION_GAIN * c).
CORRELATION_GAIN = 9.0
#: Pixel pairs need a correlation this many noise deviations above 0 to be joined ...
EDGE_SIGMAS = 6.0
#: ... and at least this correlation.
MIN_EDGE_CORRELATION = 0.1
#: Regions up to this many pixels are split with a dense eigensolver.
DENSE_LIMIT = 400
#: Larger regions: ARPACK in shift-invert mode just above the top eigenvalue (1) of
#: D^-1/2 W D^-1/2 (close, so that nearly equal eigenvalues still separate), with a
#: loose tolerance (the vectors only propose cuts; every cut is scored exactly).
EIGEN_SHIFT = 1e-8
EIGEN_TOL = 1e-4
#: PlaneCA1PC: affinity falls as exp(-CA1_PATH_GAIN * b) with the brightness b in [0, 1]
#: of the brightest pixel between the two pixels.
CA1_PATH_GAIN = 3.0
#: Weight of the unsharp mask in the CA1 processed image.
UNSHARP_WEIGHT = 0.5


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def _check_pair(name: str, value: Any, *, default: tuple[float, float], integer: bool):
    """Return ``value`` as a pair of non-negative numbers (``default`` when None).

    A single number stands for both entries. A non-iterable raises
    ArgumentTypeError; a wrong length or a bad entry ValueError (see
    :mod:`sima_fast._validate`).

    Returns
    -------
    tuple
        ``(rows, columns)``: ints when ``integer``, floats otherwise.
    """
    if value is None:
        return default
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        value = (value, value)
    try:
        items = tuple(value)
    except TypeError:
        raise ArgumentTypeError(f"{name} must be a pair (rows, columns), got {value!r}") from None
    if len(items) != 2:
        raise ValueError(f"{name} must be a pair (rows, columns), got {value!r}")
    if integer:
        return tuple(check_int(name, v, low=0, integral_float=True) for v in items)
    return tuple(check_real(name, v, low=0.0) for v in items)


# --------------------------------------------------------------------------
# Correlations and affinities
# --------------------------------------------------------------------------


def neighbour_offsets(max_dist: tuple[int, int]) -> np.ndarray:
    """Return the ``(dy, dx)`` of the neighbours of a pixel within ``max_dist``, each pair once.

    Half of the ``(2 * max_dy + 1) × (2 * max_dx + 1)`` box: ``dx = 0`` with
    ``dy > 0``, and ``dx > 0`` with any ``dy``.

    Parameters
    ----------
    max_dist : tuple of int
        ``(max_dy, max_dx)``, the largest offsets along rows and columns.

    Returns
    -------
    numpy.ndarray of int64
        ``(m, 2)`` offsets, ``m = max_dy + max_dx * (2 * max_dy + 1)``, in the
        order above.

    Examples
    --------
    >>> neighbour_offsets((1, 1)).tolist()
    [[1, 0], [-1, 1], [0, 1], [1, 1]]
    """
    my, mx = (int(v) for v in max_dist)
    out = [(dy, 0) for dy in range(1, my + 1)]
    out += [(dy, dx) for dx in range(1, mx + 1) for dy in range(-my, my + 1)]
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[y, x] = image[y + dy, x + dx]`` (0 outside the image)."""
    rows, cols = image.shape
    out = np.zeros_like(image)
    ys, yd = slice(max(dy, 0), rows + min(dy, 0)), slice(max(-dy, 0), rows + min(-dy, 0))
    xs, xd = slice(max(dx, 0), cols + min(dx, 0)), slice(max(-dx, 0), cols + min(-dx, 0))
    out[yd, xd] = image[ys, xs]
    return out


def neighbour_correlations(
    features: np.ndarray, energy: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Correlation of every pixel with its neighbour at each offset.

    Parameters
    ----------
    features : numpy.ndarray, shape (Y, X, k)
        Signal coordinates of each pixel.
    energy : numpy.ndarray, shape (Y, X)
        Total energy of each pixel (at least the squared norm of its features).
    offsets : numpy.ndarray of int, shape (m, 2)
        Neighbour offsets ``(dy, dx)``.

    Returns
    -------
    numpy.ndarray, shape (m, Y, X)
        ``features[p] · features[q] / sqrt(energy[p] * energy[q])`` clipped to
        ``[-1, 1]``; 0 where a pixel has no energy or the neighbour is
        outside the image.
    """
    from sima_fast.kernels.segment import neighbour_dots

    feats = np.ascontiguousarray(features, dtype=np.float64)
    dots = np.empty((offsets.shape[0], *energy.shape))
    neighbour_dots(feats, np.ascontiguousarray(offsets, dtype=np.int64), dots)
    root = np.sqrt(np.maximum(energy, 0.0))
    for o, (dy, dx) in enumerate(offsets):
        denom = root * _shifted(root, int(dy), int(dx))
        with np.errstate(divide="ignore", invalid="ignore"):
            dots[o] = np.where(denom > 0, dots[o] / denom, 0.0)
    return np.clip(dots, -1.0, 1.0, out=dots)


def _edge_threshold(corr: np.ndarray, valid: np.ndarray) -> float:
    """Smallest correlation that joins two pixels (see PlaneNormalizedCuts, Notes)."""
    values = corr[valid]
    negative = values[values < 0]
    noise = math.sqrt(float(np.mean(negative**2))) if negative.size else 0.0
    return max(MIN_EDGE_CORRELATION, EDGE_SIGMAS * noise)


def _valid_pairs(shape: tuple[int, int], offsets: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """``(m, Y, X)`` mask of the pixel pairs with both pixels in the image and usable."""
    out = np.empty((offsets.shape[0], *shape), dtype=bool)
    for o, (dy, dx) in enumerate(offsets):
        out[o] = usable & _shifted(usable, int(dy), int(dx))  # False beyond the edge
    return out


def _affinity_matrix(
    corr: np.ndarray,
    offsets: np.ndarray,
    log_factor: np.ndarray,
    min_corr: float,
) -> scipy.sparse.csr_matrix:
    """Symmetric sparse affinity matrix of the plane's pixels."""
    from sima_fast.kernels.segment import affinity_edges

    n = corr.shape[1] * corr.shape[2]
    rows, cols, weights = affinity_edges(
        np.ascontiguousarray(corr),
        offsets,
        np.ascontiguousarray(log_factor),
        CORRELATION_GAIN,
        float(min_corr),
    )
    upper = scipy.sparse.coo_matrix((weights, (rows, cols)), shape=(n, n))
    return (upper + upper.T).tocsr()


# --------------------------------------------------------------------------
# Recursive normalised cuts
# --------------------------------------------------------------------------


def _candidate_vectors(sub: scipy.sparse.csr_matrix, degree: np.ndarray, count: int) -> np.ndarray:
    """Return generalised eigenvectors ``(D - W) y = λ D y`` of the smallest non-trivial ``λ``.

    Returns
    -------
    numpy.ndarray
        ``(n, c)`` with ``c <= count`` columns, from the second smallest
        eigenvalue upwards.
    """
    n = sub.shape[0]
    count = max(1, min(count, n - 1))
    inv_sqrt = 1.0 / np.sqrt(degree)
    scaled = scipy.sparse.diags(inv_sqrt) @ sub @ scipy.sparse.diags(inv_sqrt)
    if n <= DENSE_LIMIT or n <= count + 2:
        with blas_threads():
            _, vectors = np.linalg.eigh(scaled.toarray())
        top = vectors[:, ::-1][:, 1 : count + 1]
    else:
        from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, splu

        sigma = 1.0 + EIGEN_SHIFT
        shifted = (scaled - sigma * scipy.sparse.identity(n)).tocsc()
        # ``shifted`` is symmetric negative definite: a symmetric fill-reducing ordering
        # without pivoting fills in half as much as splu's default, and factorises faster.
        lu = splu(
            shifted,
            permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )
        inverse = LinearOperator((n, n), matvec=lu.solve, dtype=np.float64)
        start = np.linspace(1.0, 2.0, n)
        try:
            values, vectors = eigsh(
                scaled,
                k=count + 1,
                sigma=sigma,
                which="LM",
                OPinv=inverse,
                v0=start,
                tol=EIGEN_TOL,
            )
        except ArpackNoConvergence as err:  # keep what converged
            values, vectors = err.eigenvalues, err.eigenvectors
        order = np.argsort(values)[::-1]
        top = vectors[:, order][:, 1 : count + 1]
    return top * inv_sqrt[:, None]


def _best_split(
    sub: scipy.sparse.csr_matrix, degree: np.ndarray, num_cuts: int
) -> tuple[np.ndarray, float]:
    """Boolean part A of the lowest normalised cut found, and its value."""
    from sima_fast.kernels.segment import ncut_sweep

    best_cost = np.inf
    best_part = None
    vectors = _candidate_vectors(sub, degree, num_cuts)
    for j in range(vectors.shape[1]):
        order = np.argsort(vectors[:, j], kind="stable").astype(np.int64)
        costs = ncut_sweep(sub.indptr, sub.indices, sub.data, degree, order)
        if costs.size == 0:
            continue
        k = int(np.argmin(costs))
        if costs[k] < best_cost:
            best_cost = float(costs[k])
            part = np.zeros(sub.shape[0], dtype=bool)
            part[order[: k + 1]] = True
            best_part = part
    if best_part is None:
        return np.zeros(sub.shape[0], dtype=bool), np.inf
    return best_part, best_cost


def normalized_cut_regions(
    affinity: scipy.sparse.csr_matrix,
    *,
    num_cuts: int = 6,
    max_pen: float = 0.01,
    min_size: int = 40,
    max_size: int = 200,
) -> list[np.ndarray]:
    """Recursively bipartition a graph by normalised cuts.

    Nodes without any edge are left out. A region that is not connected is
    always replaced by its connected components (so the first regions are
    the components of the graph). A connected region with fewer than
    ``min_size`` nodes is final; any other is split by the best normalised
    cut found (see Notes), and the two parts replace it when the cut's value
    is below ``max_pen`` or the region has more than ``max_size`` nodes;
    otherwise the region is final.

    Parameters
    ----------
    affinity : scipy.sparse.csr_matrix, shape (n, n)
        Symmetric, non-negative weights.
    num_cuts : int, optional
        Eigenvectors tried per split (≥ 1). Default: 6.
    max_pen : float, optional
        Largest normalised-cut value at which splitting goes on. Default: 0.01.
    min_size, max_size : int, optional
        Region sizes below which splitting stops and above which it is
        forced. Defaults: 40 and 200.

    Returns
    -------
    list of numpy.ndarray of int64
        The final regions as sorted node indices, in increasing order of
        their first node.

    Notes
    -----
    A connected region with weights ``W`` and degrees ``D`` is split along
    the generalised eigenvectors ``(D - W) y = λ D y`` of the ``num_cuts``
    smallest non-zero ``λ`` (Shi & Malik 2000): the nodes are sorted by each
    vector in turn and every split of the sorted list is scored by its
    normalised cut ``cut(A, B) / assoc(A) + cut(A, B) / assoc(B)``; the
    lowest score over all vectors and splits wins. Regions of up to 400
    nodes use a dense eigensolver, larger ones ARPACK in shift-invert mode
    (:func:`scipy.sparse.linalg.eigsh`, relative tolerance 1e-4, with a
    SuperLU factorisation in minimum-degree order) from a fixed start
    vector, so the result is deterministic.

    Examples
    --------
    Two triangles joined by one weak edge split apart:

    >>> import scipy.sparse
    >>> w = np.zeros((6, 6))
    >>> for a, b in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)]:
    ...     w[a, b] = w[b, a] = 1.0
    >>> w[2, 3] = w[3, 2] = 0.01
    >>> regions = normalized_cut_regions(scipy.sparse.csr_matrix(w), min_size=4, max_size=10)
    >>> [r.tolist() for r in regions]
    [[0, 1, 2], [3, 4, 5]]
    """
    affinity = scipy.sparse.csr_matrix(affinity)
    degree_all = np.asarray(affinity.sum(axis=1)).ravel()
    pending = [np.flatnonzero(degree_all > 0)]
    final: list[np.ndarray] = []
    while pending:
        region = pending.pop()
        if region.size == 0:
            continue
        sub = affinity[region][:, region].tocsr()
        n_comp, labels = scipy.sparse.csgraph.connected_components(sub, directed=False)
        if n_comp > 1:
            pending.extend(region[labels == c] for c in range(n_comp))
            continue
        n = region.size
        if n < max(min_size, 2):
            final.append(region)
            continue
        degree = np.asarray(sub.sum(axis=1)).ravel()
        part, cost = _best_split(sub, degree, num_cuts)
        if part.any() and not part.all() and (cost < max_pen or n > max_size):
            pending.append(region[part])
            pending.append(region[~part])
        else:
            final.append(region)
    final = [np.sort(r) for r in final]
    final.sort(key=lambda r: int(r[0]))
    return final


# --------------------------------------------------------------------------
# PlaneNormalizedCuts
# --------------------------------------------------------------------------


class PlaneNormalizedCuts(PlaneByPlaneStrategy):
    """Segmentation of each plane by iterated normalised cuts of a pixel-correlation graph.

    Parameters
    ----------
    channel : int or str, optional
        Channel whose signals are analysed (index or name). Default: 0.
    num_pcs : int, optional
        Number of principal components used to estimate the pixel
        correlations (≥ 1). Default: 75.
    max_dist : (int, int), optional
        Largest ``(row, column)`` distance between two pixels joined in the
        graph. Default: ``(2, 2)``.
    spatial_decay : (float, float), optional
        ``(row, column)`` length scales ``(sy, sx)`` of the spatial factor
        ``exp(-((dy / sy)**2 + (dx / sx)**2) / 2)`` of the affinity.
        Default: ``(2, 2)``.
    num_cuts : int, optional
        Number of eigenvectors tried as cut directions at each split (≥ 1).
        Default: 6.
    cut_max_pen : float, optional
        Splitting goes on while the normalised-cut value of the split is
        below this (≥ 0). Default: 0.01.
    cut_min_size : int, optional
        Regions with fewer pixels are not split (≥ 0). Default: 40.
    cut_max_size : int, optional
        Regions with more pixels are always split (≥ 0). Default: 200.
    verbose : bool, optional
        Print progress to standard error. Default: False.

    Raises
    ------
    ValueError
        If a parameter is of the wrong type or out of range; the message
        names it.

    Notes
    -----
    Per plane:

    1. The pixel correlations ``c`` of every pixel with its neighbours within
       ``max_dist`` are estimated from the principal components, as the
       module notes describe (components below the noise edge are not used;
       a plane without any signal component gives no ROI).
    2. Two pixels are joined by an edge of weight
       ``exp(9 c) · exp(-((dy / sy)² + (dx / sx)²) / 2)`` when their
       correlation is significant: at least 0.1 and at least 6 times the
       noise level of the correlations, estimated from the negative ones
       (``sqrt(mean(c²))`` over ``c < 0``; correlations of pixels without
       signal scatter symmetrically around 0). Pixels left without an edge
       are background **[differs: SIMA joined every pair of neighbours and
       returned the background cut into pieces as well]**.
    3. :func:`normalized_cut_regions` cuts the graph with ``num_cuts``,
       ``cut_max_pen``, ``cut_min_size`` and ``cut_max_size``.
    4. Each final region of at least ``max(cut_min_size // 4, 2)`` pixels
       becomes a boolean mask ROI (smaller regions are fragments of cell
       borders).

    References
    ----------
    J. Shi and J. Malik, "Normalized cuts and image segmentation", IEEE
    Trans. Pattern Anal. Mach. Intell. 22(8), 888-905 (2000),
    https://doi.org/10.1109/34.868688.

    Examples
    --------
    >>> import sima_fast as sima
    >>> from sima_fast.misc import simulate_movie
    >>> sim = simulate_movie(num_frames=300, frame_shape=(64, 64), num_channels=1,
    ...                      cells_per_plane=6, seed=1)
    >>> ds = sima.ImagingDataset([sima.Sequence.create('ndarray', sim.movie)], None)
    >>> rois = PlaneNormalizedCuts().segment(ds)
    >>> len(rois)
    6
    """

    prune_background = True

    def __init__(
        self,
        channel: int | str = 0,
        num_pcs: int = 75,
        max_dist: tuple[int, int] | None = None,
        spatial_decay: tuple[float, float] | None = None,
        num_cuts: int = 6,
        cut_max_pen: float = 0.01,
        cut_min_size: int = 40,
        cut_max_size: int = 200,
        verbose: bool = False,
    ) -> None:
        super().__init__()
        self.channel = check_channel("channel", channel)
        self.num_pcs = check_int("num_pcs", num_pcs, low=1, integral_float=True)
        self.max_dist = _check_pair("max_dist", max_dist, default=(2, 2), integer=True)
        if self.max_dist == (0, 0):
            raise ValueError("max_dist must join each pixel to some neighbour, got (0, 0)")
        self.spatial_decay = _check_pair(
            "spatial_decay", spatial_decay, default=(2.0, 2.0), integer=False
        )
        if 0.0 in self.spatial_decay:
            raise ValueError(f"spatial_decay must be positive, got {spatial_decay!r}")
        self.num_cuts = check_int("num_cuts", num_cuts, low=1, integral_float=True)
        self.cut_max_pen = check_real("cut_max_pen", cut_max_pen, low=0.0)
        self.cut_min_size = check_int("cut_min_size", cut_min_size, low=0, integral_float=True)
        self.cut_max_size = check_int("cut_max_size", cut_max_size, low=0, integral_float=True)
        self.verbose = check_bool("verbose", verbose)

    def __repr__(self) -> str:
        """Return ``ClassName(name=value, ...)`` with the strategy's parameters."""
        return (
            f"{type(self).__name__}(channel={self.channel!r}, num_pcs={self.num_pcs}, "
            f"max_dist={self.max_dist}, spatial_decay={self.spatial_decay}, "
            f"num_cuts={self.num_cuts}, cut_max_pen={self.cut_max_pen}, "
            f"cut_min_size={self.cut_min_size}, cut_max_size={self.cut_max_size})"
        )

    def _log_factor(
        self, dataset: ImagingDataset, plane: int, channel: int, offsets: np.ndarray
    ) -> np.ndarray:
        """Log of the non-correlation factors of the affinity, ``(m, Y, X)``."""
        rows, cols = (int(s) for s in dataset.frame_shape[1:3])
        sy, sx = self.spatial_decay
        spatial = -0.5 * ((offsets[:, 0] / sy) ** 2 + (offsets[:, 1] / sx) ** 2)
        return np.broadcast_to(spatial[:, None, None], (offsets.shape[0], rows, cols)).copy()

    def _regions(self, dataset: ImagingDataset, plane: int, channel: int) -> list[np.ndarray]:
        """Return the final cut regions of one plane, as sorted flat pixel indices."""
        pca = plane_pca(dataset, plane, channel, self.num_pcs)
        k = min(int(self.num_pcs), pca.num_signal)
        self._say(f"{pca.num_signal} signal component(s) above the noise edge; using {k}")
        rows, cols = pca.shape
        if k == 0 and self.prune_background:
            return []
        features = (pca.spatial[:, :k] * pca.values[:k]).reshape(rows, cols, k)
        energy = pca.energy.reshape(rows, cols)
        offsets = neighbour_offsets(self.max_dist)
        corr = neighbour_correlations(features, energy, offsets)
        valid = _valid_pairs((rows, cols), offsets, pca.usable.reshape(rows, cols))
        log_factor = self._log_factor(dataset, plane, channel, offsets)
        log_factor[~valid] = -np.inf
        if self.prune_background:
            min_corr = _edge_threshold(corr, valid)
            self._say(f"pixel pairs need a correlation of at least {min_corr:.3f}")
        else:
            min_corr = -np.inf
        affinity = _affinity_matrix(corr, offsets, log_factor, min_corr)
        regions = normalized_cut_regions(
            affinity,
            num_cuts=int(self.num_cuts),
            max_pen=float(self.cut_max_pen),  # type: ignore[arg-type]
            min_size=int(self.cut_min_size),
            max_size=int(self.cut_max_size),
        )
        self._say(f"{len(regions)} region(s) after cutting")
        return regions

    def _segment_plane(self, dataset: ImagingDataset, plane: int, channel: int) -> list:
        rows, cols = (int(s) for s in dataset.frame_shape[1:3])
        smallest = max(int(self.cut_min_size) // 4, 2)
        out = []
        for region in self._regions(dataset, plane, channel):
            if region.size >= smallest:
                mask = np.zeros(rows * cols, dtype=bool)
                mask[region] = True
                out.append(mask.reshape(rows, cols))
        return out


# --------------------------------------------------------------------------
# CA1 pyramidal cells
# --------------------------------------------------------------------------


def ca1pc_processed_image(image: np.ndarray, x_diameter: float, y_diameter: float) -> np.ndarray:
    """Contrast-equalised, sharpened time-average image in which nuclei stand out as dark spots.

    The image (NaN counts as its smallest finite value) is rescaled to
    ``[0, 1]``, equalised by contrast-limited adaptive histogram equalisation
    (:func:`skimage.exposure.equalize_adapthist`, tiles of one cell diameter)
    and sharpened by an unsharp mask: ``1.5 · e - 0.5 · G(e)`` with ``G`` a
    Gaussian blur of ``(y_diameter, x_diameter)`` pixels.

    Parameters
    ----------
    image : numpy.ndarray, shape (Y, X)
        The time-averaged image of one plane.
    x_diameter, y_diameter : float
        Expected cell diameter in pixels along the columns and rows.

    Returns
    -------
    numpy.ndarray of float64, shape (Y, X)

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :40]
    >>> image = 1.0 + ((yy - 20) ** 2 + (xx - 20) ** 2 < 16)
    >>> processed = ca1pc_processed_image(image, 8, 8)
    >>> bool(processed[20, 20] > processed[5, 5])
    True
    """
    from skimage.exposure import equalize_adapthist

    img = np.array(image, dtype=np.float64)
    finite = np.isfinite(img)
    if not finite.any():
        return np.zeros(img.shape)
    low, high = float(img[finite].min()), float(img[finite].max())
    img[~finite] = low
    scaled = (img - low) / (high - low) if high > low else np.zeros(img.shape)
    rows, cols = scaled.shape
    kernel = (max(round(y_diameter), 2), max(round(x_diameter), 2))
    kernel = (min(kernel[0], rows), min(kernel[1], cols))
    equalised = equalize_adapthist(scaled, kernel_size=kernel) if high > low else scaled
    blurred = scipy.ndimage.gaussian_filter(equalised, sigma=(y_diameter, x_diameter))
    return (1.0 + UNSHARP_WEIGHT) * equalised - UNSHARP_WEIGHT * blurred


def _path_steps(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels crossed by the straight segment of each offset (CSR-like ``ptr``, ``steps``)."""
    ptr = [0]
    steps: list[tuple[int, int]] = []
    for dy, dx in offsets:
        n = int(max(abs(dy), abs(dx)))
        seen = []
        for s in range(n + 1):
            point = (round(s * dy / n), round(s * dx / n)) if n else (0, 0)
            if point not in seen:
                seen.append(point)
        steps.extend(seen)
        ptr.append(len(steps))
    return np.array(ptr, dtype=np.int64), np.array(steps, dtype=np.int64).reshape(-1, 2)


class CA1PCNucleus(PostProcessingStep):
    """Find the dark nucleus of a CA1 pyramidal cell inside each region.

    For every ROI (on each plane it covers), the pixels of the processed
    time-average image (:func:`ca1pc_processed_image`) inside the ROI that
    are darker than the ROI's Otsu threshold are kept; a binary opening then
    a closing (3 × 3 cross) clean them up, and each 4-connected blob that
    remains becomes a boolean ROI. ROIs whose pixels all have one value give
    nothing.

    Parameters
    ----------
    channel : int or str, optional
        Channel of the time-average image (index or name). Default: 0.
    x_diameter : float, optional
        Expected nucleus diameter along the columns, in pixels (> 0).
        Default: 8.
    y_diameter : float, optional
        Along the rows; defaults to ``x_diameter``.

    Raises
    ------
    ValueError
        If a parameter is of the wrong type or out of range.

    Examples
    --------
    A bright ring (cytoplasm) around a dark disc of 45 pixels (nucleus):

    >>> import sima_fast as sima
    >>> yy, xx = np.mgrid[:30, :30]
    >>> d2 = (yy - 15) ** 2 + (xx - 15) ** 2
    >>> ring = (d2 < 64) & (d2 >= 16)
    >>> movie = np.broadcast_to((1.0 + ring)[:, :, None], (3, 1, 30, 30, 1)).copy()
    >>> ds = sima.ImagingDataset([sima.Sequence.create('ndarray', movie)], None)
    >>> nuclei = CA1PCNucleus(x_diameter=6).apply(ROIList([ROI(mask=d2 < 64)]), ds)
    >>> [(roi.size, bool(np.asarray(roi)[0, 15, 15])) for roi in nuclei]
    [(37, True)]
    """

    def __init__(
        self, channel: int | str = 0, x_diameter: float = 8, y_diameter: float | None = None
    ) -> None:
        self.channel = check_channel("channel", channel)
        self.x_diameter = check_real("x_diameter", x_diameter, low=0.0)
        self.y_diameter = (
            self.x_diameter
            if y_diameter is None
            else check_real("y_diameter", y_diameter, low=0.0)
        )
        if not self.x_diameter or not self.y_diameter:
            raise ValueError("x_diameter and y_diameter must be positive")

    def apply(self, rois: ROIList, dataset: ImagingDataset | None = None) -> ROIList:
        """Replace each ROI by the nucleus blobs found in it.

        Parameters
        ----------
        rois : ROIList
            The regions (typically normalised cuts).
        dataset : ImagingDataset
            The dataset; its time-average image is required.

        Returns
        -------
        ROIList
        """
        from skimage.filters import threshold_otsu

        if dataset is None:
            raise ValueError("CA1PCNucleus needs the dataset (for its time-average image)")
        channel = resolve_channel(self.channel, dataset.channel_names)
        means = dataset.time_averages[..., channel]
        im_shape = resolve_im_shape(list(rois), dataset)
        processed: dict[int, np.ndarray] = {}
        cross = scipy.ndimage.generate_binary_structure(2, 1)
        out: list[ROI] = []
        for roi in rois:
            for z, plane in enumerate(roi_planes(roi, im_shape)):
                if not plane.nnz:
                    continue
                if z not in processed:
                    processed[z] = ca1pc_processed_image(
                        means[z],
                        self.x_diameter,  # type: ignore[arg-type]
                        self.y_diameter,  # type: ignore[arg-type]
                    )
                inside = plane.toarray() != 0
                values = processed[z][inside]
                if values.min() == values.max():
                    continue
                dark = np.zeros(inside.shape, dtype=bool)
                dark[inside] = values < threshold_otsu(values)
                padded = np.pad(dark, 1)
                padded = scipy.ndimage.binary_closing(
                    scipy.ndimage.binary_opening(padded, cross), cross
                )
                labels, n = scipy.ndimage.label(padded[1:-1, 1:-1], cross)
                for k in range(1, n + 1):
                    mask = np.zeros(im_shape, dtype=bool)
                    mask[z] = labels == k
                    out.append(derived_roi(roi, keep_id=False, mask=mask, im_shape=im_shape))
        return as_roilist(out, like=rois)


class PlaneCA1PC(PlaneNormalizedCuts):
    """Segmentation of CA1 pyramidal cell somata: normalised cuts, then their nuclei.

    Parameters
    ----------
    channel : int or str, optional
        Channel analysed (index or name). Default: 0.
    num_pcs, max_dist, spatial_decay, cut_max_pen, cut_min_size, cut_max_size
        As for :class:`PlaneNormalizedCuts`.
    x_diameter, y_diameter : float, optional
        Expected nucleus diameter along the columns and rows, in pixels
        (> 0). Default: 10 each.
    circularity_threhold : float, optional
        ROIs less circular than this are discarded, in ``[0, 1]``
        (SIMA's spelling). Default: 0.5.
    min_roi_size : int, optional
        ROIs with fewer pixels are discarded (≥ 0). Default: 20.
    min_cut_size : int, optional
        Regions of the cut with fewer pixels give no ROI (≥ 0). Default: 30.
    verbose : bool, optional
        Print progress to standard error. Default: False.
    circularity_threshold : float, optional (keyword only)
        The usual spelling of ``circularity_threhold``; when given it is used
        instead.

    Raises
    ------
    ValueError
        If a parameter is of the wrong type or out of range; the message
        names it.

    Notes
    -----
    The normalised cuts run as in :class:`PlaneNormalizedCuts` with two
    differences, as in SIMA: every pair of neighbouring pixels is joined
    (dark, inactive nuclei must stay in the graph), and each affinity is
    multiplied by ``exp(-3 b)``, where ``b`` in ``[0, 1]`` is the brightness
    of the brightest pixel on the straight path between the two pixels in
    the processed time-average image (:func:`ca1pc_processed_image`,
    standardised, clipped to ±2 standard deviations and rescaled), so that
    cuts follow the bright cytoplasm between dark nuclei. The cut regions
    then go through the post-processing steps appended at construction:
    ``ROIFilter(size >= min_cut_size)``, :class:`CA1PCNucleus`
    ``(channel, x_diameter, y_diameter)``, ``ROIFilter(size >= min_roi_size)``
    and :class:`~sima_fast.segment.CircularityFilter`
    ``(circularity_threhold)``. Every cut region of the plane is returned
    before them, so this strategy is slower than
    :class:`PlaneNormalizedCuts` on large frames.

    Examples
    --------
    >>> strategy = PlaneCA1PC(x_diameter=8, y_diameter=8)
    >>> [type(step).__name__ for step in strategy.post_processing_steps]
    ['ROIFilter', 'CA1PCNucleus', 'ROIFilter', 'CircularityFilter']
    """

    prune_background = False

    def __init__(
        self,
        channel: int | str = 0,
        num_pcs: int = 75,
        max_dist: tuple[int, int] | None = None,
        spatial_decay: tuple[float, float] | None = None,
        cut_max_pen: float = 0.01,
        cut_min_size: int = 40,
        cut_max_size: int = 200,
        x_diameter: float = 10,
        y_diameter: float = 10,
        circularity_threhold: float = 0.5,
        min_roi_size: int = 20,
        min_cut_size: int = 30,
        verbose: bool = False,
        *,
        circularity_threshold: float | None = None,
    ) -> None:
        super().__init__(
            channel=channel,
            num_pcs=num_pcs,
            max_dist=max_dist,
            spatial_decay=spatial_decay,
            cut_max_pen=cut_max_pen,
            cut_min_size=cut_min_size,
            cut_max_size=cut_max_size,
            verbose=verbose,
        )
        self.x_diameter = check_real("x_diameter", x_diameter, low=0.0)
        self.y_diameter = check_real("y_diameter", y_diameter, low=0.0)
        if not self.x_diameter or not self.y_diameter:
            raise ValueError("x_diameter and y_diameter must be positive")
        self.min_roi_size = check_int("min_roi_size", min_roi_size, low=0, integral_float=True)
        self.min_cut_size = check_int("min_cut_size", min_cut_size, low=0, integral_float=True)
        circularity = CircularityFilter(
            circularity_threhold, circularity_threshold=circularity_threshold
        )
        self.circularity_threshold = circularity.circularity_threshold
        self.append(ROIFilter(_AtLeast(self.min_cut_size)))
        self.append(CA1PCNucleus(self.channel, self.x_diameter, self.y_diameter))
        self.append(ROIFilter(_AtLeast(self.min_roi_size)))
        self.append(circularity)

    @property
    def circularity_threhold(self) -> float:
        """The circularity threshold (SIMA's spelling of :attr:`circularity_threshold`)."""
        return self.circularity_threshold  # type: ignore[return-value]

    def _log_factor(
        self, dataset: ImagingDataset, plane: int, channel: int, offsets: np.ndarray
    ) -> np.ndarray:
        from sima_fast.kernels.segment import path_maxima

        log_factor = super()._log_factor(dataset, plane, channel, offsets)
        image = ca1pc_processed_image(
            dataset.time_averages[plane, :, :, channel],
            self.x_diameter,  # type: ignore[arg-type]
            self.y_diameter,  # type: ignore[arg-type]
        )
        std = float(image.std())
        z = np.clip((image - image.mean()) / std, -2.0, 2.0) if std > 0 else np.zeros(image.shape)
        brightness = (z + 2.0) / 4.0
        ptr, steps = _path_steps(offsets)
        path = np.empty(log_factor.shape)
        path_maxima(np.ascontiguousarray(brightness), offsets, ptr, steps, path)
        return log_factor - CA1_PATH_GAIN * path

    def _segment_plane(self, dataset: ImagingDataset, plane: int, channel: int) -> list:
        rows, cols = (int(s) for s in dataset.frame_shape[1:3])
        out = []
        for region in self._regions(dataset, plane, channel):
            mask = np.zeros(rows * cols, dtype=bool)
            mask[region] = True
            out.append(mask.reshape(rows, cols))
        return out


class _AtLeast:
    """Picklable ROI predicate ``roi.size >= size``."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, roi: ROI) -> bool:
        return roi.size >= self.size

    def __repr__(self) -> str:
        return f"size >= {self.size}"

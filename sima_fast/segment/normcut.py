"""Normalised-cut segmentation: PlaneNormalizedCuts and the affinity matrices it cuts.

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

import abc
import math
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
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
from sima_fast.segment.stica import PlaneByPlaneStrategy, no_signal_note, plane_pca

if TYPE_CHECKING:
    from sima_fast.imaging import ImagingDataset

__all__ = [
    "AffinityMatrixMethod",
    "BasicAffinityMatrix",
    "PlaneNormalizedCuts",
    "cv2_available",
    "normalized_cut_regions",
    "path_steps",
]

#: SIMA's flag for its OpenCV-based steps (boundary smoothing, the CA1 processed
#: image). sima_fast does them without OpenCV, so they are always available.
cv2_available = True

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


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Return ``out[y, x] = image[y + dy, x + dx]``, 0 (False) where that is outside the image.

    Parameters
    ----------
    image : numpy.ndarray, shape (Y, X)
        The image.
    dy, dx : int
        The offset.

    Returns
    -------
    numpy.ndarray, shape (Y, X), dtype of ``image``

    Examples
    --------
    >>> shifted(np.arange(3)[None], 0, 1).tolist()
    [[1, 2, 0]]
    """
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
        denom = root * shifted(root, int(dy), int(dx))
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
        out[o] = usable & shifted(usable, int(dy), int(dx))  # False beyond the edge
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
# Affinity matrices
# --------------------------------------------------------------------------


def _one_plane(dataset: ImagingDataset, plane: int) -> ImagingDataset:
    """Return ``dataset[:, :, plane:plane + 1]`` (the dataset itself if it has one plane)."""
    if int(dataset.frame_shape[0]) == 1:
        return dataset
    return dataset[:, :, plane : plane + 1]


class AffinityMatrixMethod(abc.ABC):
    """Method for calculating the affinity matrix that normalised cuts partition (SIMA's name).

    A subclass implements :meth:`calculate`, which returns the symmetric,
    non-negative affinities between the pixels of a one-plane dataset as a
    sparse ``(Y·X, Y·X)`` matrix (pixel ``y * X + x``). Strategies call
    :meth:`plane_affinity`, which by default runs :meth:`calculate` on the
    one-plane view of the plane; subclasses that can work on a plane of a
    volume directly override it.

    Examples
    --------
    >>> import scipy.sparse
    >>> class Neighbours(AffinityMatrixMethod):
    ...     def calculate(self, dataset):
    ...         n = dataset.frame_shape[1] * dataset.frame_shape[2]
    ...         return scipy.sparse.diags([1.0, 1.0], [-1, 1], shape=(n, n), format='csr')
    >>> Neighbours().calculate  # doctest: +ELLIPSIS
    <bound method ...calculate of ...>
    """

    #: Channel read by the method (strategies resolve it against the dataset's names).
    channel: int | str = 0

    @abc.abstractmethod
    def calculate(self, dataset: ImagingDataset) -> scipy.sparse.spmatrix:
        """Calculate the affinity matrix of a one-plane dataset.

        Parameters
        ----------
        dataset : ImagingDataset
            A dataset with a single plane.

        Returns
        -------
        scipy.sparse matrix, shape (Y·X, Y·X)
            The affinities between the image pixels.
        """

    def plane_affinity(self, dataset: ImagingDataset, plane: int) -> scipy.sparse.csr_matrix:
        """Calculate the affinity matrix of one plane of a dataset.

        Parameters
        ----------
        dataset : ImagingDataset
            The dataset (any number of planes).
        plane : int
            The plane.

        Returns
        -------
        scipy.sparse.csr_matrix, shape (Y·X, Y·X)

        Raises
        ------
        ValueError
            If :meth:`calculate` returns a matrix of another shape.
        """
        n = int(dataset.frame_shape[1]) * int(dataset.frame_shape[2])
        matrix = scipy.sparse.csr_matrix(self.calculate(_one_plane(dataset, plane)))
        if matrix.shape != (n, n):
            raise ValueError(
                f"{type(self).__name__}.calculate returned a matrix of shape {matrix.shape}; "
                f"the plane has {n} pixels, so ({n}, {n}) was expected"
            )
        return matrix


class BasicAffinityMatrix(AffinityMatrixMethod):
    """Affinities of neighbouring pixels from the correlation of their activity (SIMA's name).

    Pixels ``i`` and ``j`` less than ``max_dist`` apart get the affinity
    ``A[i, j] = exp(9 c[i, j]) · exp(-((dy / sy)² + (dx / sx)²) / 2)``, with
    ``c`` the correlation of their activity (estimated from principal
    components, see the module notes) and ``(sy, sx) = spatial_decay``.

    Parameters
    ----------
    channel : int or str, optional
        Channel whose signals are analysed (index or name). Default: 0.
    max_dist : (int, int), optional
        Largest ``(row, column)`` distance between two pixels joined in the
        graph. Default: ``(2, 2)``.
    spatial_decay : (float, float), optional
        ``(row, column)`` length scales of the spatial factor. Default:
        ``(2, 2)``.
    num_pcs : int, optional
        Number of principal components used to estimate the correlations
        (≥ 1). Default: 75.
    verbose : bool, optional
        Print progress to standard error. Default: False.

    Raises
    ------
    ValueError
        If a parameter is of the wrong type or out of range; the message
        names it.

    Notes
    -----
    Only significant correlations make edges: at least 0.1 and at least 6
    times the noise level of the correlations, estimated from the negative
    ones (``sqrt(mean(c²))`` over ``c < 0``; correlations of pixels without
    signal scatter symmetrically around 0). Pixels left without an edge are
    background and take no part in the cuts **[differs: SIMA joined every
    pair of neighbours, so the background was cut into pieces as well]**.
    Components whose singular value does not clear the noise edge are not
    used; a plane without any gives an empty matrix, and
    :attr:`empty_reason` says so.

    Examples
    --------
    >>> method = BasicAffinityMatrix(channel=0, num_pcs=30)
    >>> method.max_dist, method.spatial_decay
    ((2, 2), (2.0, 2.0))
    """

    #: Whether insignificant correlations are left out of the graph.
    prune_background = True

    def __init__(
        self,
        channel: int | str = 0,
        max_dist: tuple[int, int] | None = None,
        spatial_decay: tuple[float, float] | None = None,
        num_pcs: int = 75,
        verbose: bool = False,
    ) -> None:
        self.channel = check_channel("channel", channel)
        self.max_dist = _check_pair("max_dist", max_dist, default=(2, 2), integer=True)
        if self.max_dist == (0, 0):
            raise ValueError("max_dist must join each pixel to some neighbour, got (0, 0)")
        self.spatial_decay = _check_pair(
            "spatial_decay", spatial_decay, default=(2.0, 2.0), integer=False
        )
        if 0.0 in self.spatial_decay:
            raise ValueError(f"spatial_decay must be positive, got {spatial_decay!r}")
        self.num_pcs = check_int("num_pcs", num_pcs, low=1, integral_float=True)
        self.verbose = check_bool("verbose", verbose)
        #: Why the last matrix calculated has no edge (None when it has some).
        self.empty_reason: str | None = None

    def __repr__(self) -> str:
        """Return ``ClassName(name=value, ...)`` with the method's parameters."""
        return (
            f"{type(self).__name__}(channel={self.channel!r}, max_dist={self.max_dist}, "
            f"spatial_decay={self.spatial_decay}, num_pcs={self.num_pcs})"
        )

    def _say(self, message: str) -> None:
        if self.verbose:
            print(f"{type(self).__name__}: {message}", file=sys.stderr)

    def calculate(self, dataset: ImagingDataset) -> scipy.sparse.csr_matrix:
        """Calculate the affinity matrix of a one-plane dataset.

        Parameters
        ----------
        dataset : ImagingDataset
            A dataset with a single plane (use :meth:`plane_affinity` for a
            plane of a volume).

        Returns
        -------
        scipy.sparse.csr_matrix, shape (Y·X, Y·X)

        Raises
        ------
        ValueError
            If the dataset has several planes, or the channel is unknown.
        """
        if int(dataset.frame_shape[0]) != 1:
            raise ValueError(
                f"calculate needs a one-plane dataset, got {int(dataset.frame_shape[0])} planes; "
                "use plane_affinity(dataset, plane)"
            )
        return self.plane_affinity(dataset, 0)

    def _log_factor(
        self, dataset: ImagingDataset, plane: int, channel: int, offsets: np.ndarray
    ) -> np.ndarray:
        """Log of the non-correlation factors of the affinity, ``(m, Y, X)``."""
        rows, cols = (int(s) for s in dataset.frame_shape[1:3])
        sy, sx = self.spatial_decay
        spatial = -0.5 * ((offsets[:, 0] / sy) ** 2 + (offsets[:, 1] / sx) ** 2)
        return np.broadcast_to(spatial[:, None, None], (offsets.shape[0], rows, cols)).copy()

    def _min_corr(self, corr: np.ndarray, valid: np.ndarray) -> np.ndarray | float:
        """Return the smallest correlation that makes an edge."""
        min_corr = _edge_threshold(corr, valid)
        self._say(f"pixel pairs need a correlation of at least {min_corr:.3f}")
        return min_corr

    def _extra_edges(
        self,
        affinity: scipy.sparse.csr_matrix,
        corr: np.ndarray,
        offsets: np.ndarray,
        log_factor: np.ndarray,
        min_corr: float,
    ) -> scipy.sparse.csr_matrix:
        """Edges added to the significant ones (none here; see AffinityMatrixCA1PC)."""
        return affinity

    def plane_affinity(self, dataset: ImagingDataset, plane: int) -> scipy.sparse.csr_matrix:
        """Calculate the affinity matrix of one plane of a dataset.

        Parameters
        ----------
        dataset : ImagingDataset
            The dataset (any number of planes).
        plane : int
            The plane.

        Returns
        -------
        scipy.sparse.csr_matrix, shape (Y·X, Y·X)
            Symmetric; empty when no pair of pixels is significantly
            correlated (then :attr:`empty_reason` says why).

        Raises
        ------
        ValueError
            If the channel is unknown.
        """
        channel = resolve_channel(self.channel, dataset.channel_names)
        self.empty_reason = None
        pca = plane_pca(dataset, plane, channel, int(self.num_pcs))
        k = min(int(self.num_pcs), pca.num_signal)
        self._say(f"{pca.num_signal} signal component(s) above the noise edge; using {k}")
        rows, cols = pca.shape
        n = rows * cols
        if k == 0 and self.prune_background:
            self.empty_reason = no_signal_note(plane, dataset)
            return scipy.sparse.csr_matrix((n, n))
        features = (pca.spatial[:, :k] * pca.values[:k]).reshape(rows, cols, k)
        energy = pca.energy.reshape(rows, cols)
        offsets = neighbour_offsets(self.max_dist)
        corr = neighbour_correlations(features, energy, offsets)
        valid = _valid_pairs((rows, cols), offsets, pca.usable.reshape(rows, cols))
        log_factor = self._log_factor(dataset, plane, channel, offsets)
        log_factor[~valid] = -np.inf
        min_corr = self._min_corr(corr, valid) if self.prune_background else -np.inf
        affinity = _affinity_matrix(corr, offsets, log_factor, min_corr)
        affinity = self._extra_edges(affinity, corr, offsets, log_factor, min_corr)
        if affinity.nnz == 0:
            self.empty_reason = (
                f"plane {plane}: no two neighbouring pixels have significantly correlated activity"
            )
        return affinity


def _affinity_method(value: Any) -> AffinityMatrixMethod:
    if not isinstance(value, AffinityMatrixMethod):
        raise ArgumentTypeError(
            "affinity_method must be an AffinityMatrixMethod (e.g. BasicAffinityMatrix(...)), "
            f"got {value!r}; pass channel, num_pcs, max_dist and spatial_decay by keyword"
        )
    return value


# --------------------------------------------------------------------------
# PlaneNormalizedCuts
# --------------------------------------------------------------------------


class PlaneNormalizedCuts(PlaneByPlaneStrategy):
    """Segmentation of each plane by iterated normalised cuts of a pixel-affinity graph.

    Parameters
    ----------
    affinity_method : AffinityMatrixMethod, optional
        How the affinities of the pixels are calculated. Default:
        ``BasicAffinityMatrix(channel, max_dist, spatial_decay, num_pcs)``
        with the keyword arguments below (SIMA's default is
        ``BasicAffinityMatrix(channel=0, num_pcs=75)``).
    cut_max_pen : float, optional
        Splitting goes on while the normalised-cut value of the split is
        below this (≥ 0). Default: 0.01.
    cut_min_size : int, optional
        Regions with fewer pixels are not split (≥ 0). Default: 40.
    cut_max_size : int, optional
        Regions with more pixels are always split (≥ 0). Default: 200.
    num_cuts : int, optional (keyword only)
        Number of eigenvectors tried as cut directions at each split (≥ 1).
        Default: 6.
    verbose : bool, optional (keyword only)
        Print progress to standard error. Default: False.
    channel, max_dist, spatial_decay, num_pcs : optional (keyword only)
        Shorthand for ``affinity_method=BasicAffinityMatrix(channel=...,
        max_dist=..., spatial_decay=..., num_pcs=...)`` (defaults 0,
        ``(2, 2)``, ``(2, 2)``, 75); not allowed together with
        ``affinity_method``.

    Raises
    ------
    ValueError
        If a parameter is out of range; the message names it.
    TypeError
        If ``affinity_method`` is not an :class:`AffinityMatrixMethod`, or
        is given together with the shorthand keywords.

    Notes
    -----
    Per plane:

    1. ``affinity_method.plane_affinity(dataset, plane)`` gives the graph
       (see :class:`BasicAffinityMatrix`; a plane without significant
       correlations gives no ROI).
    2. :func:`normalized_cut_regions` cuts it with ``num_cuts``,
       ``cut_max_pen``, ``cut_min_size`` and ``cut_max_size``.
    3. Each final region of at least ``max(cut_min_size // 4, 2)`` pixels
       becomes a boolean mask ROI (smaller regions are fragments of cell
       borders).

    Unlike SIMA's, the strategy works on volumes (plane by plane).

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
    >>> rois = PlaneNormalizedCuts(BasicAffinityMatrix(num_pcs=75)).segment(ds)
    >>> len(rois)
    6
    """

    def __init__(
        self,
        affinity_method: AffinityMatrixMethod | None = None,
        cut_max_pen: float = 0.01,
        cut_min_size: int = 40,
        cut_max_size: int = 200,
        *,
        num_cuts: int = 6,
        verbose: bool = False,
        channel: int | str | None = None,
        max_dist: tuple[int, int] | None = None,
        spatial_decay: tuple[float, float] | None = None,
        num_pcs: int | None = None,
    ) -> None:
        super().__init__()
        self.verbose = check_bool("verbose", verbose)
        shorthand = {
            "channel": channel,
            "max_dist": max_dist,
            "spatial_decay": spatial_decay,
            "num_pcs": num_pcs,
        }
        given = {k: v for k, v in shorthand.items() if v is not None}
        if affinity_method is None:
            affinity_method = BasicAffinityMatrix(verbose=self.verbose, **given)  # type: ignore[arg-type]
        elif given:
            raise TypeError(
                f"give {', '.join(sorted(given))} to the affinity method, not together with "
                "affinity_method"
            )
        self.affinity_method = _affinity_method(affinity_method)
        self.num_cuts = check_int("num_cuts", num_cuts, low=1, integral_float=True)
        self.cut_max_pen = check_real("cut_max_pen", cut_max_pen, low=0.0)
        self.cut_min_size = check_int("cut_min_size", cut_min_size, low=0, integral_float=True)
        self.cut_max_size = check_int("cut_max_size", cut_max_size, low=0, integral_float=True)

    @property  # type: ignore[override]
    def channel(self) -> int | str:
        """The channel analysed: the affinity method's."""
        return getattr(self.affinity_method, "channel", 0)

    def __repr__(self) -> str:
        """Return ``ClassName(name=value, ...)`` with the strategy's parameters."""
        return (
            f"{type(self).__name__}(affinity_method={self.affinity_method!r}, "
            f"cut_max_pen={self.cut_max_pen}, cut_min_size={self.cut_min_size}, "
            f"cut_max_size={self.cut_max_size}, num_cuts={self.num_cuts})"
        )

    def _regions(self, dataset: ImagingDataset, plane: int, channel: int) -> list[np.ndarray]:
        """Return the final cut regions of one plane, as sorted flat pixel indices."""
        method = self.affinity_method
        affinity = method.plane_affinity(dataset, plane)
        if affinity.nnz == 0:
            reason = getattr(method, "empty_reason", None)
            self._note_empty(reason or f"plane {plane}: the affinity matrix has no edge")
            return []
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
        regions = self._regions(dataset, plane, channel)
        for region in regions:
            if region.size >= smallest:
                mask = np.zeros(rows * cols, dtype=bool)
                mask[region] = True
                out.append(mask.reshape(rows, cols))
        if regions and not out:
            self._note_empty(
                f"plane {plane}: the {len(regions)} region(s) cut were all smaller than "
                f"{smallest} pixels (fragments, not cells)"
            )
        return out


def path_steps(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels crossed by the straight segment of each neighbour offset.

    Parameters
    ----------
    offsets : numpy.ndarray of int, shape (m, 2)
        ``(dy, dx)`` of each neighbour.

    Returns
    -------
    ptr : numpy.ndarray of int64, shape (m + 1,)
        Offset ``o`` crosses ``steps[ptr[o]:ptr[o + 1]]``.
    steps : numpy.ndarray of int64, shape (N, 2)
        Relative ``(dy, dx)`` of the pixels crossed (both ends included).

    Examples
    --------
    >>> ptr, steps = path_steps(np.array([[0, 2]]))
    >>> ptr.tolist(), steps.tolist()
    ([0, 3], [[0, 0], [0, 1], [0, 2]])
    """
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


#: The old private name (kept for callers of earlier versions).
_path_steps = path_steps

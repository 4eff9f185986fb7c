"""Signal extraction from ROIs (see docs/contract.md#extraction).

An extraction is built once by :func:`extraction_setup`: the ROIs become
sparse weights (overlap removal, normalisation of boolean masks, ``1/μ``
folded in, :class:`ExtractionWeights`) and, with demixing, the unmixing factor
of a second channel. The work on one time range is :func:`extract_range`,
which streams the frames through the numba kernel of
:mod:`sima_fast.kernels.extract`. :func:`extract_rois` runs it once over each
whole sequence; :mod:`sima_fast.distributed` runs the same function over
time ranges on a cluster. Either way :func:`sequence_traces` joins the ranges
and :func:`signals_record` builds the record: a dict with ``raw`` (a list over
sequences of ``(n_rois, T_k)`` float32 arrays), ``demixed_raw`` (when
demixing), ``mean_frame``, ``overlap``, ``signal_channel``, ``rois`` (ROI
dicts in row order) and ``timestamp`` (docs/contract.md#the-extraction-record);
:mod:`sima_fast.io.csv` exports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from sima_fast._threads import kernel_threads
from sima_fast._timestamps import current_timestamp
from sima_fast._validate import (
    ArgumentTypeError,
    check_bool,
    check_int,
    check_real,
    resolve_channel,
)
from sima_fast._warnings import warn

__all__ = [
    "ExtractionWeights",
    "NeuropilOptions",
    "demixing_matrix",
    "estimate_neuropil_coefficient",
    "extract_range",
    "extract_rois",
    "extraction_setup",
    "roi_mask_matrix",
    "save_extract_summary",
    "sequence_traces",
    "signals_record",
    "surround_masks",
]


# ---------------------------------------------------------------------------
# neuropil
# ---------------------------------------------------------------------------


class NeuropilOptions:
    """How :meth:`~sima_fast.imaging.ImagingDataset.extract` estimates and removes neuropil.

    Each ROI gets a *surround*: the pixels of its planes farther than
    ``inner_radius`` from the ROI's nearest pixel and at most ``outer_radius``
    from it, without the pixels of any ROI (``exclude_rois``). With
    ``outer_radius=None`` the surround grows outwards until it holds at least
    ``min_pixels`` pixels. The defaults are suite2p's (Pachitariu et al.
    2017): 2 px, 350 pixels, r = 0.7. See docs/contract.md#neuropil.

    Parameters
    ----------
    inner_radius : float, optional
        Pixels at most this far (in pixels, centre to centre, within a plane)
        from the ROI are left out of its surround. At least 0. Default: 2.
    outer_radius : float or None, optional
        The surround's outer radius, larger than ``inner_radius``; None
        (default) grows it until the surround has ``min_pixels`` pixels.
    min_pixels : int, optional
        The size the surround grows to (with ``outer_radius=None``); with a
        fixed ``outer_radius``, a smaller surround only warns. At least 1.
        Default: 350.
    coefficient : float or 'estimate', optional
        The contamination ratio ``r`` in ``corrected = raw - r * neuropil``,
        in ``[0, 1]``, or ``'estimate'`` for one ratio per ROI from the data
        (:func:`estimate_neuropil_coefficient`). Default: 0.7.
    exclude_rois : bool, optional
        Leave every ROI's pixels (those of its mask, overlapping pixels
        included) out of every surround. Default: True.

    Raises
    ------
    sima_fast._validate.ArgumentTypeError
        An option of the wrong type.
    ValueError
        A negative ``inner_radius``, ``outer_radius <= inner_radius``,
        ``min_pixels < 1`` or a coefficient outside ``[0, 1]``.

    Examples
    --------
    >>> NeuropilOptions(inner_radius=1, coefficient='estimate').coefficient
    'estimate'
    """

    def __init__(
        self,
        inner_radius: float = 2.0,
        outer_radius: float | None = None,
        min_pixels: int = 350,
        coefficient: Any = 0.7,
        exclude_rois: bool = True,
    ) -> None:
        self.inner_radius = check_real("inner_radius", inner_radius, low=0.0)
        self.outer_radius = check_real("outer_radius", outer_radius, allow_none=True)
        if self.outer_radius is not None and not self.outer_radius > self.inner_radius:
            raise ValueError(
                f"outer_radius must be larger than inner_radius ({self.inner_radius:g}), "
                f"got {self.outer_radius:g}"
            )
        self.min_pixels = check_int("min_pixels", min_pixels, low=1)
        if isinstance(coefficient, str):
            if coefficient != "estimate":
                raise ValueError(
                    f"coefficient must be a number in [0, 1] or 'estimate', got {coefficient!r}"
                )
            self.coefficient: Any = "estimate"
        else:
            self.coefficient = check_real("coefficient", coefficient, low=0.0, high=1.0)
        self.exclude_rois = check_bool("exclude_rois", exclude_rois)

    @classmethod
    def resolve(cls, neuropil: Any) -> NeuropilOptions | None:
        """Turn ``extract``'s ``neuropil`` argument into options (None: no neuropil).

        Parameters
        ----------
        neuropil : None, bool, dict or NeuropilOptions
            None or False: no neuropil; True: the defaults; a dict: keyword
            arguments of :class:`NeuropilOptions`.

        Returns
        -------
        NeuropilOptions or None
            The options.

        Raises
        ------
        sima_fast._validate.ArgumentTypeError
            Another type, or a dict with an unknown key.
        """
        if neuropil is None or neuropil is False:
            return None
        if neuropil is True:
            return cls()
        if isinstance(neuropil, cls):
            return neuropil
        if isinstance(neuropil, dict):
            known = {"inner_radius", "outer_radius", "min_pixels", "coefficient", "exclude_rois"}
            unknown = sorted(set(map(str, neuropil)) - known)
            if unknown:
                raise ArgumentTypeError(
                    f"neuropil has unknown option(s) {unknown}; expected some of {sorted(known)}"
                )
            return cls(**neuropil)
        raise ArgumentTypeError(
            "neuropil must be None, a bool, a dict of options or a "
            f"sima_fast.extract.NeuropilOptions, got {neuropil!r}"
        )

    def todict(self) -> dict[str, Any]:
        """Return the options as a dict (the keyword arguments that rebuild them).

        Returns
        -------
        dict
            ``inner_radius``, ``outer_radius``, ``min_pixels``,
            ``coefficient`` and ``exclude_rois``.
        """
        return {
            "inner_radius": self.inner_radius,
            "outer_radius": self.outer_radius,
            "min_pixels": self.min_pixels,
            "coefficient": self.coefficient,
            "exclude_rois": self.exclude_rois,
        }

    def __repr__(self) -> str:
        """Show the options as the call that builds them."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.todict().items())
        return f"NeuropilOptions({args})"


def surround_masks(
    masks: Any,
    im_shape: tuple[int, int, int],
    options: Any = True,
    usable: np.ndarray | None = None,
    rois: Any = None,
):
    """Compute the neuropil surround of every ROI (docs/contract.md#neuropil).

    Parameters
    ----------
    masks : scipy.sparse matrix
        ``(n_rois, Z*Y*X)`` ROI masks (:func:`roi_mask_matrix`); an ROI's
        pixels are its non-zero entries.
    im_shape : tuple of int
        ``(Z, Y, X)`` of the frames.
    options : NeuropilOptions, dict or True, optional
        The surround's geometry (see :class:`NeuropilOptions`). Default: the
        defaults.
    usable : numpy.ndarray of bool, optional
        ``(Z*Y*X,)``: pixels that may be used (e.g. those with a finite,
        non-zero time average). Default: all.
    rois : sequence of ROI, optional
        Only to name an ROI (by index and label) in errors and warnings.

    Returns
    -------
    surround : scipy.sparse.csr_matrix
        ``(n_rois, Z*Y*X)``, 1.0 on the surround's pixels.
    outer_radius : numpy.ndarray of float64
        ``(n_rois,)``: the outer radius used for each ROI.
    n_pixels : numpy.ndarray of int64
        ``(n_rois,)``: pixels in each surround.

    Raises
    ------
    ValueError
        An ROI whose surround has no pixel (e.g. ROIs tiling the frame, or
        an ``outer_radius`` too small), named by index and label.
    """
    import scipy.sparse
    from scipy.ndimage import distance_transform_edt

    opts = NeuropilOptions.resolve(options)
    if opts is None:
        raise ArgumentTypeError("options must describe a surround, got None/False")
    Z, Y, X = _check_im_shape(im_shape)
    masks = scipy.sparse.csr_matrix(masks)
    n = masks.shape[0]
    plane = Y * X
    allowed = np.ones(Z * plane, dtype=bool) if usable is None else np.asarray(usable, bool).copy()
    if opts.exclude_rois and masks.nnz:
        allowed[masks.indices[masks.data != 0]] = False
    allowed = allowed.reshape(Z, Y, X)
    inner = opts.inner_radius
    rows: list[np.ndarray] = []
    outer = np.zeros(n)
    n_pixels = np.zeros(n, dtype=np.int64)
    few: list[int] = []

    def name(i: int) -> str:
        label = getattr(rois[i], "label", None) if rois is not None else None
        return f"rois[{i}]" + (f" (label {label!r})" if label is not None else "")

    for i in range(n):
        lo, hi = masks.indptr[i], masks.indptr[i + 1]
        pix = masks.indices[lo:hi][masks.data[lo:hi] != 0].astype(np.int64)
        if pix.size == 0:
            rows.append(np.zeros(0, dtype=np.int64))
            outer[i] = np.nan
            continue
        z_of, rest = np.divmod(pix, plane)
        y_of, x_of = np.divmod(rest, X)
        planes = np.unique(z_of)
        if opts.outer_radius is not None:
            pad = int(np.ceil(opts.outer_radius))
        else:
            pad = int(np.ceil(inner + np.sqrt((opts.min_pixels + 2 * pix.size) / np.pi))) + 1
        while True:
            found_d, found_p = [], []
            whole = True
            for z in planes:
                sel = z_of == z
                y0 = max(0, int(y_of[sel].min()) - pad)
                y1 = min(Y, int(y_of[sel].max()) + pad + 1)
                x0 = max(0, int(x_of[sel].min()) - pad)
                x1 = min(X, int(x_of[sel].max()) + pad + 1)
                whole &= y0 == 0 and x0 == 0 and y1 == Y and x1 == X
                box = np.ones((y1 - y0, x1 - x0), dtype=bool)
                box[y_of[sel] - y0, x_of[sel] - x0] = False
                d = distance_transform_edt(box)
                ok = (d > inner) & allowed[z, y0:y1, x0:x1]
                yy, xx = np.nonzero(ok)
                found_d.append(d[yy, xx])
                found_p.append(z * plane + (yy + y0) * X + (xx + x0))
            d_all = np.concatenate(found_d)
            p_all = np.concatenate(found_p)
            if opts.outer_radius is not None:
                radius = opts.outer_radius
                break
            # every pixel within `pad` of the ROI lies in the boxes
            complete = d_all if whole else d_all[d_all <= pad]
            if complete.size >= opts.min_pixels:
                radius = float(np.partition(complete, opts.min_pixels - 1)[opts.min_pixels - 1])
                break
            if whole:
                radius = float(d_all.max()) if d_all.size else np.inf
                break
            pad *= 2
        chosen = np.sort(p_all[d_all <= radius])
        if chosen.size == 0:
            raise ValueError(
                f"{name(i)} has no pixel in its neuropil surround (inner_radius "
                f"{inner:g}, outer_radius {radius:g}): every pixel around it belongs to an ROI, "
                "is never observed or is outside the frame; lower inner_radius, raise "
                "outer_radius or pass exclude_rois=False"
            )
        if chosen.size < opts.min_pixels:
            few.append(i)
        rows.append(chosen)
        outer[i] = radius
        n_pixels[i] = chosen.size
    if few:
        warn(
            f"{len(few)} neuropil surround(s) have fewer than min_pixels={opts.min_pixels} "
            f"pixels (ROIs {few[:20]}{' ...' if len(few) > 20 else ''})"
        )
    counts = np.array([r.size for r in rows], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    surround = scipy.sparse.csr_matrix(
        (np.ones(indices.size), indices, indptr), shape=(n, Z * plane)
    )
    return surround, outer, n_pixels


def _corrected(
    raw: list[np.ndarray], neuropil: list[np.ndarray], coefficient: np.ndarray
) -> list[np.ndarray]:
    """Give ``raw − r·neuropil`` per sequence (float32, computed in float64)."""
    return [
        (r.astype(np.float64) - coefficient[:, None] * f.astype(np.float64)).astype(np.float32)
        for r, f in zip(raw, neuropil)
    ]


def estimate_neuropil_coefficient(
    raw: np.ndarray,
    neuropil: np.ndarray,
    n_bins: int = 20,
    percentile: float = 5.0,
    default: float = 0.7,
) -> np.ndarray:
    """Estimate each ROI's contamination ratio ``r`` from the lower envelope of raw vs neuropil.

    The neuropil values of an ROI are cut into ``n_bins`` bins of equal width;
    in each bin holding at least 5 frames, the ``percentile``-th percentile of
    the ROI's raw values is its lower envelope there (the frames where the
    cell itself is silent). The slope of the least-squares line through these
    points (bin median of neuropil, envelope of raw) is ``r``, clipped to
    ``[0, 1]``. A lower-envelope fit of this kind is robust to the cell's own
    transients, which only lift the upper part of each bin.

    Parameters
    ----------
    raw, neuropil : numpy.ndarray
        ``(n_rois, T)`` traces (all sequences joined); NaN frames are
        ignored.
    n_bins : int, optional
        Bins of neuropil values. Default: 20.
    percentile : float, optional
        The envelope's percentile of raw in each bin. Default: 5.
    default : float, optional
        The ratio given to an ROI with too few usable bins (fewer than 3,
        e.g. a constant neuropil), with a warning. Default: 0.7.

    Returns
    -------
    numpy.ndarray of float64
        ``(n_rois,)`` ratios in ``[0, 1]``.

    Examples
    --------
    >>> t = np.linspace(0, 20, 2000)
    >>> npil = 1 + 0.5 * np.sin(t)
    >>> raw = 0.4 * npil + 0.2 + (np.sin(7 * t) > 0.9)
    >>> float(np.round(estimate_neuropil_coefficient(raw[None], npil[None])[0], 2))
    0.4
    """
    n_bins = check_int("n_bins", n_bins, low=2)
    percentile = check_real("percentile", percentile, low=0.0, high=100.0)
    default = check_real("default", default, low=0.0, high=1.0)
    raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
    neuropil = np.atleast_2d(np.asarray(neuropil, dtype=np.float64))
    if raw.shape != neuropil.shape:
        raise ValueError(f"raw has shape {raw.shape} but neuropil has {neuropil.shape}")
    out = np.full(raw.shape[0], default)
    fallback = []
    for i in range(raw.shape[0]):
        ok = np.isfinite(raw[i]) & np.isfinite(neuropil[i])
        f, g = raw[i, ok], neuropil[i, ok]
        xs, ys = [], []
        if g.size and g.max() > g.min():
            edges = np.linspace(g.min(), g.max(), n_bins + 1)
            which = np.clip(np.searchsorted(edges, g, side="right") - 1, 0, n_bins - 1)
            for b in range(n_bins):
                inside = which == b
                if inside.sum() >= 5:
                    xs.append(np.median(g[inside]))
                    ys.append(np.percentile(f[inside], percentile))
        if len(xs) < 3:
            fallback.append(i)
            continue
        slope = np.polyfit(np.asarray(xs), np.asarray(ys), 1)[0]
        out[i] = float(np.clip(slope, 0.0, 1.0))
    if fallback:
        warn(
            f"the neuropil coefficient of {len(fallback)} ROI(s) could not be estimated "
            f"(too few frames or a constant neuropil; ROIs {fallback[:20]}): {default:g} used"
        )
    return out


# ---------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------


class ExtractionWeights:
    """The sparse weights of one extraction, built once and reused per frame.

    Parameters
    ----------
    rois : sequence of ROI
        The ROIs, in output-row order.
    im_shape : tuple of int
        ``(Z, Y, X)`` of the frames.
    mean_frame : numpy.ndarray or None
        ``(Z, Y, X)`` time average of the signal channel: the weights become
        ``w / μ``. ``None`` keeps plain weighted means. Pixels whose mean is
        not finite or is 0 are left out (as if never observed).
    remove_overlap : bool
        Remove pixels that belong to more than one ROI from every ROI.
    neuropil : None, bool, dict or NeuropilOptions, optional
        Also weigh each ROI's neuropil surround (:func:`surround_masks`):
        one row per ROI after the ROIs' rows in ``plan``, with uniform
        weights ``s_i / n_i`` (``s_i = Σ_p a_p`` the ROI's own extraction
        weights), so the kernel writes the neuropil traces in the same pass.
        Default: None.

    Raises
    ------
    ValueError
        If an ROI does not fit the frames (a mask with non-zero weight
        outside them, see :func:`sima_fast.ROI.check_mask_in_frame`, or a
        polygon vertex outside them) or has a NaN or infinite mask weight;
        the message names the ROI by index and label.

    Attributes
    ----------
    masks : scipy.sparse.csr_matrix, (n_rois, Z*Y*X)
        The mask weights ``w`` (boolean masks normalised to sum to 1).
    overlap : numpy.ndarray of int
        Flattened indices of the pixels in more than one ROI.
    empty : numpy.ndarray of bool
        ROIs left without pixels (their rows are NaN).
    plan : sima_fast.kernels.extract.RunWeights
        The kernel's layout of the weights.
    neuropil : NeuropilOptions or None
        The neuropil options.
    surround : scipy.sparse.csr_matrix or None
        With neuropil, ``(n_rois, Z*Y*X)`` surrounds (1.0 on their pixels);
        also ``outer_radius``, ``surround_pixels`` and ``roi_scale``
        (``s_i``) per ROI.
    pinv_rows : None or numpy.ndarray
        With overlapping masks kept (``remove_overlap=False``), the masked
        pixels, and ``pinv_base`` the pseudo-inverse of the mask matrix over
        them; frames with missing pixels are then extracted through the
        pseudo-inverse of that matrix restricted to the finite pixels.
    """

    def __init__(
        self,
        rois: Any,
        im_shape: tuple[int, int, int],
        mean_frame: np.ndarray | None,
        remove_overlap: bool = True,
        neuropil: Any = None,
    ) -> None:
        import scipy.sparse

        remove_overlap = check_bool("remove_overlap", remove_overlap)
        neuropil = NeuropilOptions.resolve(neuropil)
        Z, Y, X = _check_im_shape(im_shape)
        _check_rois(rois)
        npix = Z * Y * X
        if len(rois) == 0:
            raise ValueError(
                "rois is empty: the ROI list has no ROI, so there is nothing to extract (a "
                "segmentation that found no cells stores an empty list: see its warning)"
            )
        masks, boolean = _mask_matrix(rois, (Z, Y, X))
        footprints = masks
        counts = np.asarray((masks != 0).sum(axis=0)).ravel()
        self.overlap = np.flatnonzero(counts > 1)
        if remove_overlap and self.overlap.size:
            keep = np.ones(npix)
            keep[self.overlap] = 0.0
            masks = (masks @ scipy.sparse.diags(keep)).tocsr()
            masks.eliminate_zeros()
        nnz = np.diff(masks.indptr)
        scale = np.where(boolean & (nnz > 0), 1.0 / np.maximum(nnz, 1), 1.0)
        masks = (scipy.sparse.diags(scale) @ masks).tocsr()
        masks.sort_indices()
        self.masks = masks
        self.empty = nnz == 0
        if self.empty.all():
            raise ValueError(
                "no ROI has any pixel left to extract (all empty, outside the frame, or "
                "entirely overlapping other ROIs with remove_overlap=True)"
            )
        if self.empty.any():
            warn(
                f"{int(self.empty.sum())} empty ROI(s) (indices "
                f"{np.flatnonzero(self.empty).tolist()}) will give all-NaN signals"
            )
        if mean_frame is None:
            inv_mu = np.ones(npix)
        else:
            mu = np.asarray(mean_frame, dtype=np.float64).reshape(npix)
            with np.errstate(divide="ignore", invalid="ignore"):
                inv_mu = np.where(np.isfinite(mu) & (mu != 0), 1.0 / mu, np.nan)
        self.inv_mu = inv_mu
        data = masks.data
        a = data * inv_mu[masks.indices]
        w = data.copy()
        # Pixels without a usable mean (never observed, or mean 0) are missing in
        # every frame: leave them out and rescale the ROI's other weights once,
        # by Σ_all w² / Σ_usable w² (docs/contract.md#missing-pixels).
        unusable = ~np.isfinite(a)
        a[unusable] = 0.0
        w[unusable] = 0.0
        owner = np.repeat(np.arange(masks.shape[0]), np.diff(masks.indptr))
        all_sq = np.bincount(owner, weights=data * data, minlength=masks.shape[0])
        usable_sq = np.bincount(owner, weights=w * w, minlength=masks.shape[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(usable_sq > 0, all_sq / usable_sq, 1.0)
        a *= factor[owner]
        from sima_fast.kernels.extract import runs_from_csr

        self.neuropil = neuropil
        self.surround = None
        if neuropil is None:
            self.plan = runs_from_csr(masks.indptr, masks.indices, a, w)
        else:
            self._add_surrounds(rois, footprints, (Z, Y, X), masks, a, w, owner)
        self.pinv_rows = None
        self.pinv_base = None
        if not remove_overlap and self.overlap.size:
            used = np.flatnonzero(~self.empty)
            sub = masks[used]
            pixels = np.unique(sub.indices)
            dense = sub[:, pixels].toarray()  # (n_used, n_pixels)
            self.pinv_rows = used
            self.pinv_pixels = pixels
            self.pinv_base = np.linalg.pinv(dense)  # (n_pixels, n_used)
            self._pinv_cache: dict[bytes, np.ndarray] = {}

    def _add_surrounds(self, rois, footprints, im_shape, masks, a, w, owner) -> None:
        """Append one surround row per ROI to the run plan (one pass computes both)."""
        from sima_fast.kernels.extract import runs_from_csr

        usable = np.isfinite(self.inv_mu)
        surround, outer, n_pixels = surround_masks(
            footprints, im_shape, self.neuropil, usable=usable, rois=rois
        )
        n = masks.shape[0]
        # The ROI's own scale: Σ_p a_p = Σ_p w_p / μ_p (with the never-observed
        # rescaling), so a surround whose every pixel equals the ROI's reads
        # what the ROI reads (docs/contract.md#neuropil).
        self.roi_scale = np.bincount(owner, weights=a, minlength=n)
        counts = np.diff(surround.indptr)
        keep_row = ~self.empty  # an empty ROI gets an empty (all-NaN) surround row too
        row_len = np.where(keep_row, counts, 0)
        take = np.repeat(keep_row, counts)
        s_idx = surround.indices[take].astype(np.int64)
        s_owner = np.repeat(np.arange(n), row_len)
        s_w = 1.0 / np.maximum(counts, 1)[s_owner]
        s_a = s_w * self.roi_scale[s_owner]
        indptr = np.concatenate(
            [masks.indptr[:-1], masks.indptr[-1] + np.cumsum(np.r_[0, row_len])]
        )
        indices = np.concatenate([masks.indices.astype(np.int64), s_idx])
        self.plan = runs_from_csr(
            indptr, indices, np.concatenate([a, s_a]), np.concatenate([w, s_w]), n_weighted=n
        )
        self.surround = surround
        self.outer_radius = outer
        self.surround_pixels = n_pixels

    @property
    def n_rois(self) -> int:
        """Number of ROIs (rows of the output)."""
        return self.masks.shape[0]

    @property
    def n_outputs(self) -> int:
        """Columns the kernel writes: the ROIs, then (with neuropil) one surround per ROI."""
        return self.plan.n_rois

    def pinv_weights(self, finite: np.ndarray) -> np.ndarray:
        """Compute the pseudo-inverse weights for a pattern of finite masked pixels.

        Parameters
        ----------
        finite : numpy.ndarray of bool
            ``(n_pixels,)``: which of the masked pixels (``pinv_pixels``) are
            finite in the frame.

        Returns
        -------
        numpy.ndarray
            ``(n_used, n_finite)`` float64 weights; the last 4,096 patterns
            are cached.
        """
        key = np.packbits(finite).tobytes()
        w = self._pinv_cache.get(key)
        if w is None:
            w = np.linalg.pinv(self.pinv_base[finite])
            if len(self._pinv_cache) < 4096:
                self._pinv_cache[key] = w
        return w

    def pinv_extract(self, flat: np.ndarray, block: np.ndarray) -> None:
        """Re-extract the frames with missing masked pixels by the pseudo-inverse path.

        Used with ``remove_overlap=False`` and overlapping masks
        (docs/contract.md#missing-pixels): for each frame of ``flat`` in which a
        pixel of an overlapping mask is not finite, the weights are the
        pseudo-inverse of the mask matrix restricted to the finite pixels.

        Parameters
        ----------
        flat : numpy.ndarray
            ``(frames, Z*Y*X)`` frames of the signal channel, flattened.
        block : numpy.ndarray
            ``(frames, n_rois)`` float output, already holding the kernel's
            values; the rows of frames with missing pixels are overwritten.
        """
        pix = self.pinv_pixels
        vals = flat[:, pix].astype(np.float64) * self.inv_mu[pix]
        finite = np.isfinite(vals)
        partial = np.flatnonzero(~finite.all(axis=1))
        used = self.pinv_rows
        for t in partial:
            f = finite[t]
            row = np.full(self.n_rois, np.nan)
            if f.any():
                w = self.pinv_weights(f)  # (n_used, n_finite)
                res = w @ vals[t, f]
                imaged = np.asarray((self.masks[used][:, pix[f]] != 0).sum(axis=1)).ravel() > 0
                res[~imaged] = np.nan
                row[used] = res
            block[t, : self.n_rois] = row


def roi_mask_matrix(rois: Any, im_shape: tuple[int, int, int]):
    """Rasterise the ROIs' masks into one sparse matrix (their own values).

    Parameters
    ----------
    rois : sequence of ROI
        The ROIs, in row order.
    im_shape : tuple of int
        ``(Z, Y, X)`` of the frames.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(n_rois, Z*Y*X)`` float64 mask values.

    Raises
    ------
    ValueError
        As :class:`ExtractionWeights`: an ROI that does not fit the frames
        or has a NaN or infinite mask weight.
    """
    im_shape = _check_im_shape(im_shape)
    _check_rois(rois)
    return _mask_matrix(rois, im_shape)[0]


def _check_im_shape(im_shape: Any) -> tuple[int, int, int]:
    """Return ``im_shape`` as three positive ints, or raise an error naming it."""
    if isinstance(im_shape, (str, bytes)) or not hasattr(im_shape, "__len__"):
        raise ArgumentTypeError(f"im_shape must be a tuple (Z, Y, X) of ints, got {im_shape!r}")
    if len(im_shape) != 3:
        raise ValueError(f"im_shape must be (Z, Y, X): 3 ints, got {im_shape!r}")
    return tuple(check_int(f"im_shape[{i}]", s, low=1) for i, s in enumerate(im_shape))


def _check_rois(rois: Any) -> None:
    """Refuse ``rois`` that is not a sequence (the elements are checked one by one later)."""
    if isinstance(rois, (str, bytes)) or not hasattr(rois, "__len__"):
        raise ArgumentTypeError(
            f"rois must be a ROIList or a list of sima_fast.ROI.ROI objects, got {rois!r}"
        )


def _mask_matrix(rois: Any, im_shape: tuple[int, int, int]):
    """Stack all ROIs into one CSR matrix.

    Built in one step from the per-plane CSR arrays (no per-ROI sparse
    construction). ROIs without an ``im_shape`` get the frames' shape, as
    :meth:`ImagingDataset.add_ROIs` does, so their rasterised masks are cached.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``(n_rois, Z*Y*X)`` mask weights.
    numpy.ndarray
        ``(n_rois,)`` bool: whether each ROI's mask is boolean.
    """
    import scipy.sparse

    Z, Y, X = im_shape
    rows, cols, vals, boolean = [], [], [], []
    for i, roi in enumerate(rois):
        planes, is_bool = _roi_planes(roi, im_shape, i)
        boolean.append(is_bool)
        for z, plane in enumerate(planes):
            if plane.nnz == 0:
                continue
            r = np.repeat(np.arange(plane.shape[0]), np.diff(plane.indptr))
            cols.append(z * Y * X + r * X + plane.indices)
            vals.append(np.asarray(plane.data, dtype=np.float64))
            rows.append(np.full(plane.nnz, i))
    n = len(boolean)
    if cols:
        rows_, cols_, vals_ = (np.concatenate(v) for v in (rows, cols, vals))
    else:
        rows_ = cols_ = np.zeros(0, np.int64)
        vals_ = np.zeros(0)
    keep = vals_ != 0
    m = scipy.sparse.csr_matrix(
        (vals_[keep], (rows_[keep], cols_[keep])), shape=(n, Z * Y * X), dtype=np.float64
    )
    m.sum_duplicates()
    return m, np.array(boolean, dtype=bool)


def _roi_planes(roi: Any, im_shape: tuple[int, int, int], index: int):
    """Give the per-plane CSR masks of one ROI at ``im_shape`` (validated), and whether boolean."""
    from sima_fast.ROI import ROI, check_mask_in_frame

    if not isinstance(roi, ROI):
        raise TypeError(f"rois[{index}] is a {type(roi).__name__}, not a sima_fast.ROI.ROI")
    name = f"rois[{index}]" + (f" (label {roi.label!r})" if roi.label is not None else "")
    Z, Y, X = im_shape
    if roi.is_mask_roi:
        # A mask drawn on another frame size (e.g. before motion correction
        # enlarged the frame) is padded with zeros or cropped to the frames, as
        # SIMA does; only non-zero weight that would be cropped away is refused.
        check_mask_in_frame(roi, im_shape, name)
    else:
        for ring in roi.rings:
            x, y, z = ring[:, 0], ring[:, 1], ring[:, 2]
            if (
                x.min() < 0
                or y.min() < 0
                or x.max() > X
                or y.max() > Y
                or z.min() < 0
                or (z.max() >= Z)
            ):
                raise ValueError(
                    f"{name} lies outside the frame: its vertices span x [{x.min()}, {x.max()}], "
                    f"y [{y.min()}, {y.max()}], z [{z.min()}, {z.max()}] but frames are "
                    f"X={X}, Y={Y} pixels and Z={Z} plane(s)"
                )
    # Every ROI takes the frames' shape (SIMA's extract sets it on each ROI),
    # whatever im_shape it was drawn with.
    if roi.im_shape != im_shape:
        roi.im_shape = im_shape
    planes = roi.mask
    for z, plane in enumerate(planes):
        if plane.dtype.kind == "f" and not np.isfinite(plane.data).all():
            bad = np.flatnonzero(~np.isfinite(plane.data))
            row = int(np.searchsorted(plane.indptr, bad[0], side="right") - 1)
            raise ValueError(
                f"{name}: mask plane {z} has {bad.size} non-finite weight(s) (NaN or inf), "
                f"the first at row {row}, column {int(plane.indices[bad[0]])}; mask weights "
                "must be finite to extract a signal"
            )
    return planes, not roi.is_weighted


# ---------------------------------------------------------------------------
# demixing
# ---------------------------------------------------------------------------


def demixing_matrix(
    signal_image: np.ndarray, demix_image: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Estimate the 2×2 unmixing matrix of two channels by FastICA on their images.

    Pixels are the samples. Rows are ordered so the diagonal dominates and
    scaled to a unit diagonal, so ``W[0, 1]`` is what to add (times the
    second channel) to the first channel to remove the second's bleed-through.

    Parameters
    ----------
    signal_image, demix_image : numpy.ndarray
        Time averages of the signal channel and of the channel to demix.
    seed : int, optional
        Random state of FastICA (the estimate is deterministic for a seed).

    Returns
    -------
    numpy.ndarray, shape (2, 2)
        The unmixing matrix, with a unit diagonal.
    """
    from sklearn.decomposition import FastICA

    seed = check_int("seed", seed, low=0, high=2**32 - 1)
    if np.shape(signal_image) != np.shape(demix_image):
        raise ValueError(
            f"demix_image has shape {np.shape(demix_image)} but signal_image has "
            f"{np.shape(signal_image)}; the two time averages must have the same shape"
        )
    a = np.asarray(signal_image, dtype=np.float64).ravel()
    b = np.asarray(demix_image, dtype=np.float64).ravel()
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        raise ValueError("demixing needs at least 3 pixels observed in both channels")
    samples = np.column_stack([a[ok], b[ok]])
    ica = FastICA(n_components=2, random_state=seed, whiten="unit-variance", max_iter=1000)
    ica.fit(samples)
    W = np.array(ica.components_, dtype=np.float64)
    if abs(W[0, 0] * W[1, 1]) < abs(W[0, 1] * W[1, 0]):
        W = W[::-1]
    W[0] /= W[0, 0]
    W[1] /= W[1, 1]
    return W


# ---------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------


def extraction_setup(
    rois: Any,
    im_shape: tuple[int, int, int],
    mean: np.ndarray,
    signal_channel: int = 0,
    remove_overlap: bool = True,
    demix_channel: int | None = None,
    neuropil: Any = None,
) -> tuple[ExtractionWeights, tuple[int, float] | None]:
    """Build what every time range of one extraction needs: the weights and the demixing.

    Parameters
    ----------
    rois : sequence of ROI
        The ROIs, in output-row order.
    im_shape : tuple of int
        ``(Z, Y, X)`` of the frames.
    mean : numpy.ndarray
        ``(Z, Y, X, C)`` time average of every channel.
    signal_channel : int, optional
        Index of the channel to extract. Default: 0.
    remove_overlap : bool, optional
        Remove pixels shared by several ROIs from all of them. Default: True.
    demix_channel : int, optional
        Index of a channel whose bleed-through is removed (FastICA on the two
        channels' time averages, :func:`demixing_matrix`).
    neuropil : None, bool, dict or NeuropilOptions, optional
        Also extract each ROI's neuropil surround (:class:`NeuropilOptions`):
        its rows follow the ROIs' in the same run plan. Default: None.

    Returns
    -------
    weights : ExtractionWeights
        The sparse weights, ``1/μ`` of the signal channel folded in.
    demix : tuple of (int, float) or None
        ``(demix_channel, factor)``: the demixed frames are the signal channel
        plus ``factor`` times that channel. None without demixing.
    """
    weights = ExtractionWeights(
        rois, im_shape, mean[..., signal_channel], remove_overlap, neuropil=neuropil
    )
    demix = None
    if demix_channel is not None:
        W = demixing_matrix(mean[..., signal_channel], mean[..., demix_channel])
        demix = (int(demix_channel), float(W[0, 1]))
    return weights, demix


def extract_range(
    seq: Any,
    t0: int,
    t1: int,
    weights: ExtractionWeights,
    channel: int,
    demix: tuple[int, float] | None = None,
    n_threads: int | None = 1,
    on_chunk: Callable[[int], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Extract the traces of frames ``t0`` to ``t1`` of one sequence.

    Every chunk of the range is read once (the next one prefetched), whatever
    the number of outputs, and goes through the kernel of
    :mod:`sima_fast.kernels.extract` (and the pseudo-inverse path for frames
    with missing pixels under overlapping masks). Each output row depends on
    its frame only, so ranges extracted apart and concatenated are
    bit-identical to one pass.

    Parameters
    ----------
    seq : Sequence
        The sequence.
    t0, t1 : int
        The frame range, ``0 <= t0 <= t1 <= len(seq)``.
    weights : ExtractionWeights
        The weights (:func:`extraction_setup`).
    channel : int
        Index of the signal channel.
    demix : tuple of (int, float), optional
        ``(channel, factor)`` from :func:`extraction_setup`: also extract the
        signal channel plus ``factor`` times that channel.
    n_threads : int, optional
        Kernel threads (default 1; None keeps numba's current setting).
        Results do not depend on it.
    on_chunk : callable, optional
        Called with the number of frames after each chunk is extracted (e.g.
        a progress bar's ``update``).

    Returns
    -------
    raw : numpy.ndarray
        ``(t1 - t0, weights.n_outputs)`` float32 traces, frame-major as the
        kernel writes them: the ROIs, then (with neuropil) their surrounds.
    demixed : numpy.ndarray or None
        The same for the demixed frames (None without ``demix``).
    """
    from sima_fast.kernels.extract import extract_runs

    out = np.empty((t1 - t0, weights.n_outputs), dtype=np.float32)
    outputs = [(None, out)]
    if demix is not None:
        outputs.append((demix, np.empty_like(out)))
    npix = int(np.prod(seq.shape[1:4]))
    many = n_threads is None or n_threads > 1
    with kernel_threads(n_threads, reserve=1 if not seq.zero_copy and many else 0):
        chunks = seq.iter_chunks(start=t0, stop=t1, reuse_buffer=True, prefetch=True)
        for t, chunk in chunks:
            n = len(chunk)
            for mix, dest in outputs:
                frames = chunk[..., channel]
                if mix is not None:
                    d_channel, factor = mix
                    frames = frames.astype(np.float32) + np.float32(factor) * chunk[..., d_channel]
                flat = np.ascontiguousarray(frames).reshape(n, npix)
                block = dest[t - t0 : t - t0 + n]
                extract_runs(flat, weights.plan, block)
                if weights.pinv_base is not None:
                    weights.pinv_extract(flat, block)
            if on_chunk is not None:
                on_chunk(n)
    return out, outputs[1][1] if demix is not None else None


def sequence_traces(
    parts: list[tuple[np.ndarray, np.ndarray | None]],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Join the consecutive ranges of one sequence into its ROI-major traces.

    Parameters
    ----------
    parts : list of tuple
        What :func:`extract_range` returned for consecutive ranges covering
        the sequence, in time order (at least one).

    Returns
    -------
    raw : numpy.ndarray
        ``(n_outputs, T)`` float32, C-contiguous (with neuropil, the
        surrounds' rows follow the ROIs').
    demixed : numpy.ndarray or None
        The same for the demixed traces (None without demixing).
    """

    def join(arrays: list[np.ndarray]) -> np.ndarray:
        whole = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        return np.ascontiguousarray(whole.T)

    raw = join([p[0] for p in parts])
    demixed = None if parts[0][1] is None else join([p[1] for p in parts])
    return raw, demixed


def extract_rois(
    dataset: Any,
    rois: Any,
    signal_channel: int = 0,
    remove_overlap: bool = True,
    n_processes: int = 1,
    demix_channel: int | None = None,
    progress: bool = False,
    neuropil: Any = None,
) -> dict[str, Any]:
    """Extract the signals of ``rois`` from every sequence of ``dataset``.

    See docs/contract.md#extraction and
    :meth:`sima_fast.imaging.ImagingDataset.extract` for the full
    description; this function computes and returns the record without
    storing it. Each sequence is one :func:`extract_range` over all its
    frames.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset; its time average is computed here when not cached.
    rois : sequence of ROI
        The ROIs, in output-row order.
    signal_channel : int or str, optional
        Index (or name) of the channel to extract. Default: 0.
    remove_overlap : bool, optional
        Remove pixels shared by several ROIs from all of them. Default: True.
    n_processes : int, optional
        Kernel threads (results do not depend on it). Default: 1.
    demix_channel : int or str, optional
        Index (or name) of a channel whose bleed-through into the signal
        channel is removed first (the traces go to ``demixed_raw``).
    progress : bool, optional
        Show a progress bar over the frames (on terminals only), for the time
        average when it is not cached and for the extraction itself.
    neuropil : None, bool, dict or NeuropilOptions, optional
        Neuropil correction (:class:`NeuropilOptions`; True: suite2p's
        defaults). Default: None (none).

    Returns
    -------
    dict
        The extraction record (docs/contract.md#the-extraction-record).

    Raises
    ------
    sima_fast._validate.ArgumentTypeError
        An argument of the wrong type (``remove_overlap='no'``,
        ``n_processes=True``, a float channel, ...); it is also a ValueError.
    ValueError
        An unknown channel, ``demix_channel`` equal to ``signal_channel``,
        ``n_processes < 1``, no ROIs or ROIs that do not fit the frames.
    """
    from tqdm.auto import tqdm

    signal_channel = resolve_channel(signal_channel, dataset.channel_names, "signal_channel")
    if demix_channel is not None:
        demix_channel = resolve_channel(demix_channel, dataset.channel_names, "demix_channel")
        if demix_channel == signal_channel:
            raise ValueError("demix_channel must differ from signal_channel")
    remove_overlap = check_bool("remove_overlap", remove_overlap)
    n_processes = check_int("n_processes", n_processes, low=1)
    progress = check_bool("progress", progress)
    neuropil = NeuropilOptions.resolve(neuropil)
    im_shape = tuple(dataset.frame_shape[:3])
    if progress:
        dataset.compute_projections(progress=True)
    mean = dataset.time_averages
    weights, demix = extraction_setup(
        rois, im_shape, mean, signal_channel, remove_overlap, demix_channel, neuropil
    )
    total = sum(len(seq) for seq in dataset.sequences)
    with tqdm(
        total=total, desc="extract", unit="frame", disable=None if progress else True
    ) as bar:
        traces = [
            sequence_traces(
                [
                    extract_range(
                        seq, 0, len(seq), weights, signal_channel, demix, n_processes, bar.update
                    )
                ]
            )
            for seq in dataset.sequences
        ]
    return signals_record(traces, demix_channel, mean, signal_channel, weights, rois, im_shape)


def signals_record(
    traces: list[tuple[np.ndarray, np.ndarray | None]],
    demix_channel: int | None,
    mean: np.ndarray,
    signal_channel: int,
    weights: ExtractionWeights,
    rois: Any,
    im_shape: tuple[int, int, int],
) -> dict[str, Any]:
    """Assemble the signals record of one extraction (docs/contract.md#the-extraction-record).

    Parameters
    ----------
    traces : list of tuple
        Per sequence, ``(raw, demixed)`` as :func:`sequence_traces` returns.
    demix_channel : int or None
        Index of the demixed channel, or None without demixing.
    mean : numpy.ndarray
        ``(Z, Y, X, C)`` time average the weights were built from.
    signal_channel : int
        Index of the extracted channel.
    weights : ExtractionWeights
        The weights of the extraction.
    rois : sequence of ROI
        The ROIs, in output-row order.
    im_shape : tuple of int
        ``(Z, Y, X)`` of the frames.

    Returns
    -------
    dict
        ``raw``, ``demixed_raw`` and ``demix_channel`` (with demixing),
        ``neuropil``, ``corrected`` and ``neuropil_params`` (with neuropil;
        with both, also ``demixed_neuropil`` and ``demixed_corrected``),
        ``mean_frame``, ``overlap``, ``signal_channel``, ``rois`` and
        ``timestamp``, the layout ``extract()`` stores.
    """
    n = weights.n_rois
    record: dict[str, Any] = {"raw": [raw[:n] for raw, _ in traces]}
    if demix_channel is not None:
        record["demixed_raw"] = [demixed[:n] for _, demixed in traces]
        record["demix_channel"] = int(demix_channel)
    if weights.neuropil is not None:
        entries = _neuropil_entries(record["raw"], [raw[n:] for raw, _ in traces], weights)
        record.update(entries)
        if demix_channel is not None:
            # the demixed frames' surrounds came from the same pass; the contamination
            # ratio is raw's (given, or estimated on raw), so both corrections agree
            coefficient = entries["neuropil_params"]["coefficient"]
            neuropil = [np.ascontiguousarray(demixed[n:]) for _, demixed in traces]
            record["demixed_neuropil"] = neuropil
            record["demixed_corrected"] = _corrected(record["demixed_raw"], neuropil, coefficient)
    record["mean_frame"] = np.asarray(mean[..., signal_channel], dtype=np.float64)
    record["overlap"] = (np.zeros(weights.overlap.size, dtype=np.int64), weights.overlap)
    record["signal_channel"] = int(signal_channel)
    from sima_fast.ROI import normalise_im_shape

    shape = normalise_im_shape(im_shape)
    rois_out = []
    for roi in rois:
        d = roi.todict()  # an independent copy of the geometry
        d["im_shape"] = shape
        rois_out.append(d)
    record["rois"] = rois_out
    record["timestamp"] = current_timestamp()
    return record


def _neuropil_entries(
    raw: list[np.ndarray], neuropil: list[np.ndarray], weights: ExtractionWeights
) -> dict[str, Any]:
    """Give the record's ``neuropil``, ``corrected`` and ``neuropil_params`` entries."""
    opts = weights.neuropil
    neuropil = [np.ascontiguousarray(block) for block in neuropil]
    estimated = opts.coefficient == "estimate"
    if estimated:
        coefficient = estimate_neuropil_coefficient(
            np.concatenate(raw, axis=1), np.concatenate(neuropil, axis=1)
        )
    else:
        coefficient = np.full(weights.n_rois, float(opts.coefficient))
    corrected = _corrected(raw, neuropil, coefficient)
    params = {
        "inner_radius": float(opts.inner_radius),
        "outer_radius": np.asarray(weights.outer_radius, dtype=np.float64),
        "n_pixels": np.asarray(weights.surround_pixels, dtype=np.int64),
        "min_pixels": int(opts.min_pixels),
        "exclude_rois": bool(opts.exclude_rois),
        "coefficient": np.asarray(coefficient, dtype=np.float64),
        "estimated": bool(estimated),
    }
    return {"neuropil": neuropil, "corrected": corrected, "neuropil_params": params}


def save_extract_summary(
    record: dict[str, Any],
    path: str | os.PathLike,
    masks: Any,
    label: str | None = None,
) -> list[str]:
    """Draw the ROIs of an extraction on its mean frame, as a PDF and a PNG.

    Per plane, the mean frame of the signal channel in grey with axes in
    pixels, every ROI outlined on its own and labelled with its id (its row
    in the signals when it has none), and the pixels shared by several
    ROIs filled in a colour named in the legend. The size of each page
    follows the frame's aspect. The PDF has one page per plane; the PNG
    beside it (same name, ``.png``) shows all planes side by side. See
    :func:`sima_fast.figures.roi_figure`.

    Parameters
    ----------
    record : dict
        The extraction record (``mean_frame``, ``overlap``, ``rois``,
        ``timestamp``).
    path : str or path-like
        The PDF to write (atomically); the PNG goes beside it.
    masks : scipy.sparse matrix or None
        ``(n_rois, Z*Y*X)`` masks (:func:`roi_mask_matrix`), outlined on the
        mean frame.
    label : str, optional
        The label the signals are stored under, shown in the title.
        Default: the record's timestamp.

    Returns
    -------
    list of str
        The files written: the PDF and the PNG; empty (with a warning) when
        matplotlib is not installed.
    """
    from sima_fast import figures

    try:
        figures.require_matplotlib()
    except ImportError:
        warn("matplotlib is not installed: no extraction summary written")
        return []
    mean = np.asarray(record["mean_frame"], dtype=np.float64)
    overlap = np.zeros(mean.size, dtype=bool)
    overlap[np.asarray(record["overlap"][1], dtype=np.int64)] = True
    overlap = overlap.reshape(mean.shape)
    rois = record.get("rois", [])
    has_id = [roi.get("id") not in (None, "") for roi in rois]
    texts = [str(roi["id"]) if ok else str(i) for i, (roi, ok) in enumerate(zip(rois, has_id))]
    if all(has_id):
        meaning = "ROI outline, labelled with the ROI's id"
    elif any(has_id):
        meaning = "ROI outline, labelled with the ROI's id (its row in the signals if none)"
    else:
        meaning = "ROI outline, numbered by its row in the signals"
    name = label if label is not None else str(record["timestamp"])
    title = f"Signals '{name}': {len(rois)} ROIs on the time average"
    pdf_path = os.fspath(path)
    png_path = os.path.splitext(pdf_path)[0] + ".png"
    pages = [
        figures.roi_figure(mean, masks, texts, overlap, title, [z], meaning)
        for z in range(mean.shape[0])
    ]
    figures.save_pdf_pages(pages, pdf_path, title)
    overview = (
        pages[0]
        if len(pages) == 1
        else figures.roi_figure(mean, masks, texts, overlap, title, None, meaning)
    )
    figures.save_figure(overview, png_path)
    return [pdf_path, png_path]

"""CA1 pyramidal cell segmentation: PlaneCA1PC, its affinity matrix and the CA1PCNucleus step.

The somata of CA1 pyramidal cells expressing a cytoplasmic calcium indicator
show in the time-averaged image as bright rings of cytoplasm around dark
nuclei. :class:`PlaneCA1PC` (SIMA's method, module ``sima.segment.ca1pc``)
cuts each plane by normalised cuts (:mod:`sima_fast.segment.normcut`) with
:class:`AffinityMatrixCA1PC`, whose affinities fall across bright cytoplasm,
and :class:`CA1PCNucleus` then finds the nucleus inside each region.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.ndimage
import scipy.sparse

from sima_fast._validate import check_channel, check_int, check_real, resolve_channel
from sima_fast.ROI import ROI, ROIList
from sima_fast.segment._rois import as_roilist, derived_roi, resolve_im_shape, roi_planes
from sima_fast.segment.base import PostProcessingStep
from sima_fast.segment.normcut import (
    CORRELATION_GAIN,
    BasicAffinityMatrix,
    PlaneNormalizedCuts,
    path_steps,
    shifted,
)
from sima_fast.segment.postprocess import CircularityFilter, ROIFilter

if TYPE_CHECKING:
    from sima_fast.imaging import ImagingDataset

__all__ = [
    "AffinityMatrixCA1PC",
    "CA1PCNucleus",
    "PlaneCA1PC",
    "ca1pc_processed_image",
    "cv2_available",
]

#: SIMA's flag for its OpenCV-based steps (boundary smoothing, the CA1 processed
#: image). sima_fast does them without OpenCV, so they are always available.
cv2_available = True

#: Affinity falls as exp(-CA1_PATH_GAIN * b) with the brightness b in [0, 1] of the
#: brightest pixel between the two pixels.
CA1_PATH_GAIN = 3.0
#: Weight of the unsharp mask in the CA1 processed image.
UNSHARP_WEIGHT = 0.5


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


class CA1PCNucleus(PostProcessingStep):
    """Find the dark nucleus of a CA1 pyramidal cell inside each region.

    For every ROI (on each plane it covers), the pixels of the processed
    time-average image (:func:`ca1pc_processed_image`) inside the ROI that
    are darker than the ROI's Otsu threshold are kept; a binary opening then
    a closing (3 × 3 cross) clean them up, and each 4-connected blob that
    remains *enclosed* by the ROI (no pixel of the blob is next to a pixel
    outside the ROI: a nucleus inside its ring of cytoplasm) becomes a
    boolean ROI. A region without an enclosed dark blob shows no nucleus
    (a cell filled by its indicator, or whose nucleus does not show); it
    is kept whole, as a boolean ROI **[differs: SIMA kept the dark part of
    every region, which for such cells is the dim rim and background
    around them]**. ROIs whose pixels all have one value give nothing.

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
                # a blob next to a pixel outside the region is not a nucleus: the rim
                rim = scipy.ndimage.binary_dilation(~inside, cross)
                touching = np.unique(labels[rim & (labels > 0)])
                nuclei = [k for k in range(1, n + 1) if k not in set(touching.tolist())]
                if not nuclei:
                    mask = np.zeros(im_shape, dtype=bool)
                    mask[z] = inside
                    out.append(derived_roi(roi, keep_id=False, mask=mask, im_shape=im_shape))
                for k in nuclei:
                    mask = np.zeros(im_shape, dtype=bool)
                    mask[z] = labels == k
                    out.append(derived_roi(roi, keep_id=False, mask=mask, im_shape=im_shape))
        return as_roilist(out, like=rois)


class AffinityMatrixCA1PC(BasicAffinityMatrix):
    """Pixel affinities for CA1 pyramidal cells: correlation, distance and the dark nuclei.

    The affinity of :class:`~sima_fast.segment.BasicAffinityMatrix` times
    ``exp(-3 b)``, where ``b`` in ``[0, 1]`` is the brightness of the
    brightest pixel on the straight path between the two pixels in the
    processed time-average image (:func:`ca1pc_processed_image`,
    standardised, clipped to ±2 standard deviations and rescaled), so that
    cuts follow the bright cytoplasm between dark nuclei (SIMA's name and
    parameters).

    Parameters
    ----------
    channel, max_dist, spatial_decay, num_pcs, verbose
        As for :class:`~sima_fast.segment.BasicAffinityMatrix`.
    x_diameter, y_diameter : float, optional
        Expected nucleus diameter along the columns and rows, in pixels
        (> 0). Default: 10 each.

    Raises
    ------
    ValueError
        If a parameter is of the wrong type or out of range.

    Notes
    -----
    The graph keeps the significantly correlated pixels (see
    :class:`~sima_fast.segment.BasicAffinityMatrix`) and every pixel they
    enclose: a dark, inactive nucleus inside an active ring of cytoplasm is
    a hole of the active pixels, and stays in the graph, joined to its
    neighbours whatever their correlation **[differs: SIMA joined every pair
    of neighbouring pixels of the plane, background included]**.

    Examples
    --------
    >>> method = AffinityMatrixCA1PC(channel=0, max_dist=(3, 6), x_diameter=14, y_diameter=7)
    >>> method.max_dist, method.x_diameter, method.y_diameter
    ((3, 6), 14.0, 7.0)
    """

    def __init__(
        self,
        channel: int | str = 0,
        max_dist: tuple[int, int] | None = None,
        spatial_decay: tuple[float, float] | None = None,
        num_pcs: int = 75,
        x_diameter: float = 10,
        y_diameter: float = 10,
        verbose: bool = False,
    ) -> None:
        super().__init__(channel, max_dist, spatial_decay, num_pcs, verbose)
        self.x_diameter = check_real("x_diameter", x_diameter, low=0.0)
        self.y_diameter = check_real("y_diameter", y_diameter, low=0.0)
        if not self.x_diameter or not self.y_diameter:
            raise ValueError("x_diameter and y_diameter must be positive")

    def __repr__(self) -> str:
        """Return ``AffinityMatrixCA1PC(name=value, ...)`` with the method's parameters."""
        return (
            f"{super().__repr__()[:-1]}, x_diameter={self.x_diameter}, "
            f"y_diameter={self.y_diameter})"
        )

    def _extra_edges(
        self,
        affinity: scipy.sparse.csr_matrix,
        corr: np.ndarray,
        offsets: np.ndarray,
        log_factor: np.ndarray,
        min_corr: float,
    ) -> scipy.sparse.csr_matrix:
        """Join the pixels enclosed by the active ones (dark nuclei) to their neighbours."""
        from sima_fast.kernels.segment import affinity_edges

        _, rows, cols = corr.shape
        active = (np.diff(affinity.indptr) > 0).reshape(rows, cols)
        holes = scipy.ndimage.binary_fill_holes(active) & ~active
        if not holes.any():
            return affinity
        filled = active | holes
        extra = np.full(log_factor.shape, -np.inf)
        for o, (dy, dx) in enumerate(offsets):
            there_filled = shifted(filled, int(dy), int(dx))
            there_hole = shifted(holes, int(dy), int(dx))
            pair = filled & there_filled & (holes | there_hole) & (corr[o] < min_corr)
            extra[o][pair] = log_factor[o][pair]
        r, c, w = affinity_edges(
            np.ascontiguousarray(corr), offsets, extra, CORRELATION_GAIN, -np.inf
        )
        n = rows * cols
        upper = scipy.sparse.coo_matrix((w, (r, c)), shape=(n, n))
        return (affinity + upper + upper.T).tocsr()

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
        ptr, steps = path_steps(offsets)
        path = np.empty(log_factor.shape)
        path_maxima(np.ascontiguousarray(brightness), offsets, ptr, steps, path)
        return log_factor - CA1_PATH_GAIN * path


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
        affinity = AffinityMatrixCA1PC(
            channel, max_dist, spatial_decay, num_pcs, x_diameter, y_diameter, verbose
        )
        super().__init__(affinity, cut_max_pen, cut_min_size, cut_max_size, verbose=verbose)
        self.x_diameter = affinity.x_diameter
        self.y_diameter = affinity.y_diameter
        self.min_roi_size = check_int("min_roi_size", min_roi_size, low=0, integral_float=True)
        self.min_cut_size = check_int("min_cut_size", min_cut_size, low=0, integral_float=True)
        circularity = CircularityFilter(
            circularity_threhold, circularity_threshold=circularity_threshold
        )
        self.circularity_threshold = circularity.circularity_threshold
        self.append(ROIFilter(_AtLeast(self.min_cut_size)))
        self.append(CA1PCNucleus(affinity.channel, self.x_diameter, self.y_diameter))
        self.append(ROIFilter(_AtLeast(self.min_roi_size)))
        self.append(circularity)

    @property
    def circularity_threhold(self) -> float:
        """The circularity threshold (SIMA's spelling of :attr:`circularity_threshold`)."""
        return self.circularity_threshold  # type: ignore[return-value]

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

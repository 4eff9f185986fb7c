"""The segmentation framework: strategies, post-processing steps and plane-wise segmentation.

A :class:`SegmentationStrategy` turns an
:class:`~sima_fast.imaging.ImagingDataset` into an
:class:`~sima_fast.ROI.ROIList`; :class:`PostProcessingStep` objects appended
to a strategy refine that list (filter, split, smooth, merge) in the order in
which they were appended. :class:`PlaneWiseSegmentation` lifts a strategy
written for single-plane data to volumes by running it on each plane.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse

from sima_fast._validate import ArgumentTypeError
from sima_fast.ROI import ROI, ROIList
from sima_fast.segment._rois import Shape3, dataset_im_shape

if TYPE_CHECKING:
    from sima_fast.imaging import ImagingDataset

__all__ = [
    "PlaneWiseSegmentation",
    "PostProcessingStep",
    "SegmentationStrategy",
    "SegmentationWarning",
]

#: What to try when a strategy finds nothing (the end of every empty-result warning).
WHAT_TO_TRY = (
    "What to try: check the channel (the activity channel, not a structural one); segment a "
    "longer recording (hundreds of frames: the strategies need each cell to be active several "
    "times); try another strategy (STICA, PlaneNormalizedCuts, PlaneCA1PC) or looser "
    "parameters; or draw or import the ROIs (sima_fast.ROI, ImagingDataset.import_rois)."
)


class SegmentationWarning(UserWarning):
    """Issued when a segmentation finds no ROIs; the message says why and what to try.

    :meth:`SegmentationStrategy.segment` issues it when the ROI list it would
    return is empty (the empty list is still returned, and
    ``ImagingDataset.segment`` still stores it, as SIMA does). Turn it into
    an error with ``warnings.simplefilter('error', SegmentationWarning)``.

    Examples
    --------
    >>> issubclass(SegmentationWarning, UserWarning)
    True
    """


class PostProcessingStep(abc.ABC):
    """Base class of the steps that refine the ROIs found by a segmentation strategy.

    Subclasses implement :meth:`apply`. A step must not modify the ROIs it is
    given; it returns new ROIs, or the unchanged input ROI objects.

    Examples
    --------
    >>> class DropTagged(PostProcessingStep):
    ...     def apply(self, rois, dataset=None):
    ...         return ROIList([r for r in rois if 'junk' not in r.tags])
    >>> rois = ROIList([ROI(mask=np.ones((2, 2)), tags={'junk'}), ROI(mask=np.ones((2, 2)))])
    >>> len(DropTagged().apply(rois))
    1
    """

    @abc.abstractmethod
    def apply(self, rois: ROIList, dataset: ImagingDataset | None = None) -> ROIList:
        """Refine a set of ROIs.

        Parameters
        ----------
        rois : ROIList
            The ROIs to process.
        dataset : ImagingDataset, optional
            The dataset the ROIs were found in. Steps that need the image
            shape take it from here, or from the ROIs' ``im_shape`` when it is
            None.

        Returns
        -------
        ROIList
            The processed ROIs.
        """


def _normalise_planes(planes: Any, n_planes: int) -> np.ndarray:
    """Return plane indices as a sorted int64 array of distinct planes in ``range(n_planes)``.

    Accepts one int or an iterable of ints; negative indices count from the end.

    Returns
    -------
    numpy.ndarray of int64
    """
    if isinstance(planes, (int, np.integer)) and not isinstance(planes, (bool, np.bool_)):
        values: list[Any] = [planes]
    else:
        try:
            values = list(planes)
        except TypeError:
            raise ArgumentTypeError(
                f"planes must be an int or a list of ints, got {planes!r}"
            ) from None
    if not values:
        raise ValueError("planes must name at least one plane")
    out = []
    for p in values:
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, np.integer)):
            raise ArgumentTypeError(f"planes must contain integers, got {p!r}")
        if not -n_planes <= int(p) < n_planes:
            raise ValueError(
                f"planes: plane {int(p)} is out of range for a dataset with {n_planes} plane(s)"
            )
        out.append(int(p) % n_planes)
    arr = np.array(out, dtype=np.int64)
    unique = np.unique(arr)
    if unique.size != arr.size:
        raise ValueError(f"planes must not repeat a plane, got {values!r}")
    return unique


def _place_on_planes(roi: ROI, plane_map: Sequence[int] | np.ndarray, im_shape: Shape3) -> ROI:
    """Move an ROI found on a plane subset into the full ``(Z, Y, X)`` volume.

    Plane ``k`` of the subset becomes plane ``plane_map[k]``: mask planes are
    moved there (other planes empty), polygon vertices get ``z = plane_map[k]``.
    Label, tags and id are kept; ``im_shape`` becomes ``im_shape``.

    Returns
    -------
    ROI
        A new ROI; ``roi`` is not modified.
    """
    plane_map = np.asarray(plane_map, dtype=np.int64)
    n_local = plane_map.size
    geometry: dict[str, Any]
    if roi.is_mask_roi:
        local = roi.mask
        for k in range(n_local, len(local)):
            if local[k].count_nonzero():
                raise ValueError(
                    f"an ROI returned by the strategy has pixels on plane {k}, but the data it "
                    f"segmented had {n_local} plane(s)"
                )
        if local[0].shape != tuple(im_shape[1:]):
            raise ValueError(
                f"an ROI returned by the strategy has mask planes of shape {local[0].shape}, "
                f"but the frames are (Y, X) = {tuple(im_shape[1:])}"
            )
        dtype = local[0].dtype
        planes = [scipy.sparse.csr_matrix(im_shape[1:], dtype=dtype) for _ in range(im_shape[0])]
        for k, plane in enumerate(local[:n_local]):
            planes[plane_map[k]] = plane
        geometry = {"mask": planes}
    else:
        rings = roi.rings
        for ring in rings:
            k = int(ring[0, 2])
            if not 0 <= k < n_local:
                raise ValueError(
                    f"an ROI returned by the strategy has a polygon on plane {k}, but the data "
                    f"it segmented had {n_local} plane(s)"
                )
            ring[:, 2] = plane_map[k]
        geometry = {"polygons": rings}
    return ROI(label=roi.label, tags=set(roi.tags), id=roi.id, im_shape=im_shape, **geometry)


def _plane_subset(dataset: ImagingDataset, planes: np.ndarray) -> ImagingDataset:
    """Return the dataset restricted to ``planes`` (a lazy view; a slice if contiguous)."""
    first, last = int(planes[0]), int(planes[-1])
    if last - first + 1 == planes.size:
        if planes.size == dataset.frame_shape[0]:
            return dataset
        return dataset[:, :, first : last + 1]
    return dataset[:, :, planes]


#: What a strategy and its steps use of a dataset; a Sequence has only ``frame_shape``.
_DATASET_ATTRIBUTES = ("sequences", "frame_shape", "num_frames", "channel_names", "time_averages")


def _is_dataset(obj: Any) -> bool:
    """Tell whether ``obj`` is an ImagingDataset, judged by its class's attributes.

    The class is inspected, not the instance, so the ``time_averages``
    property is not computed. (Importing ``sima_fast.imaging`` here would make
    an import cycle: the dataset's ``segment`` method uses this package.)

    Returns
    -------
    bool
    """
    cls = type(obj)
    return not isinstance(obj, type) and all(hasattr(cls, a) for a in _DATASET_ATTRIBUTES)


class SegmentationStrategy(abc.ABC):
    """Base class of segmentation strategies.

    A strategy implements :meth:`_segment`, which finds ROIs in a dataset.
    :meth:`segment` runs it and then the post-processing steps added with
    :meth:`append`, in order, each receiving the previous step's output.

    Notes
    -----
    Subclasses that define ``__init__`` should call ``super().__init__()``;
    a strategy that does not still works (its list of steps is created on
    first use).

    Examples
    --------
    >>> import sima_fast as sima
    >>> from sima_fast.segment import ROIFilter
    >>> class BrightPixels(SegmentationStrategy):
    ...     def _segment(self, dataset):
    ...         mean = dataset.time_averages[..., 0]
    ...         return ROIList([ROI(mask=mean > mean.mean())])
    >>> movie = np.zeros((4, 1, 5, 5, 1))
    >>> movie[:, :, 1:3, 1:3] = 1.0
    >>> dataset = sima.ImagingDataset([sima.Sequence.create('ndarray', movie)], None)
    >>> strategy = BrightPixels()
    >>> strategy.append(ROIFilter(lambda roi: roi.size >= 4))
    >>> rois = strategy.segment(dataset)
    >>> [roi.size for roi in rois], rois[0].im_shape
    ([4], (1, 5, 5))
    """

    def __init__(self) -> None:
        self._post_processing_steps: list[PostProcessingStep] = []

    @property
    def post_processing_steps(self) -> list[PostProcessingStep]:
        """The appended post-processing steps, in the order they run (a copy)."""
        return list(self._steps())

    def _steps(self) -> list[PostProcessingStep]:
        steps = self.__dict__.get("_post_processing_steps")
        if steps is None:
            steps = self._post_processing_steps = []
        return steps

    def append(self, post_processing_step: PostProcessingStep) -> None:
        """Add a post-processing step to run after the ones already added.

        Parameters
        ----------
        post_processing_step : PostProcessingStep
            The step.

        Raises
        ------
        TypeError
            If ``post_processing_step`` is not a :class:`PostProcessingStep`.
        """
        if not isinstance(post_processing_step, PostProcessingStep):
            raise TypeError(
                "post_processing_step must be a sima_fast.segment.PostProcessingStep, got "
                f"{type(post_processing_step).__name__}"
            )
        self._steps().append(post_processing_step)

    def segment(
        self, dataset: ImagingDataset, planes: Iterable[int] | int | None = None
    ) -> ROIList:
        """Find ROIs in a dataset and post-process them.

        Parameters
        ----------
        dataset : ImagingDataset
            The data to segment.
        planes : int or iterable of int, optional
            Segment only these planes (negative indices count from the end).
            The strategy then sees the dataset restricted to the selected
            planes, in increasing order (see :meth:`_segment_planes`), and
            the ROIs it returns are moved back to the planes they came from.
            Default: all planes.

        Returns
        -------
        ROIList
            The ROIs. ROIs that the strategy returned without an ``im_shape``
            get the dataset's ``(Z, Y, X)``.

        Raises
        ------
        TypeError
            If ``dataset`` is not an :class:`~sima_fast.imaging.ImagingDataset`,
            or the strategy or a step returns something other than ROIs.
        ValueError
            If ``planes`` is empty, repeats a plane or names a missing one.
        """
        if not _is_dataset(dataset):
            raise TypeError(
                f"dataset must be a sima_fast ImagingDataset, got {type(dataset).__name__}"
            )
        im_shape = dataset_im_shape(dataset)
        assert im_shape is not None
        self.__dict__["_empty_notes"] = []
        if planes is None:
            rois = self._as_rois(self._segment(dataset), "_segment")
        else:
            selected = _normalise_planes(planes, im_shape[0])
            rois = self._as_rois(self._segment_planes(dataset, selected), "_segment_planes")
        for roi in rois:
            if roi.im_shape is None:
                roi.im_shape = im_shape
        counts = [len(rois)]
        for step in self._steps():
            rois = self._as_rois(step.apply(rois, dataset), f"{type(step).__name__}.apply")
            counts.append(len(rois))
        if not len(rois):
            warnings.warn(self._empty_message(dataset, counts), SegmentationWarning, stacklevel=2)
        return rois

    def _note_empty(self, message: str) -> None:
        """Record why a plane gave nothing (quoted if the whole segmentation finds no ROI)."""
        notes = self.__dict__.setdefault("_empty_notes", [])
        if message not in notes:
            notes.append(message)

    def _empty_message(self, dataset: ImagingDataset, counts: list[int]) -> str:
        """Return the text of the warning issued when :meth:`segment` finds no ROI."""
        t = int(dataset.num_frames)
        z, y, x, c = (int(v) for v in dataset.frame_shape)
        head = (
            f"{type(self).__name__} found no ROIs in the dataset ({t} frames of {z} plane(s) "
            f"of {y}x{x} pixels, {c} channel(s))"
        )
        reasons = list(self.__dict__.get("_empty_notes", []))
        if counts[0]:
            steps = self._steps()
            last = next(k for k in range(1, len(counts)) if counts[k] == 0)
            reasons.append(
                f"the strategy found {counts[0]} candidate(s), but the post-processing step "
                f"{type(steps[last - 1]).__name__} (step {last} of {len(steps)}) removed all that "
                f"reached it ({counts[last - 1]}); loosen its parameters (sizes, thresholds)"
            )
        elif not reasons:
            reasons.append("the strategy itself returned no candidate region")
        return f"{head}: {'; '.join(reasons)}. {WHAT_TO_TRY}"

    @staticmethod
    def _as_rois(result: Any, where: str) -> ROIList:
        if isinstance(result, ROIList):
            return result
        if result is None or isinstance(result, (str, bytes, ROI)):
            raise TypeError(f"{where} must return an ROIList, got {type(result).__name__}")
        try:
            return ROIList(result)
        except TypeError as err:
            raise TypeError(f"{where} must return an ROIList: {err}") from None

    @abc.abstractmethod
    def _segment(self, dataset: ImagingDataset) -> ROIList:
        """Find ROIs in ``dataset`` (implemented by each strategy).

        Parameters
        ----------
        dataset : ImagingDataset
            The data to segment.

        Returns
        -------
        ROIList
            ROIs in the dataset's pixel space.
        """

    def _segment_planes(self, dataset: ImagingDataset, planes: np.ndarray) -> ROIList:
        """Segment only ``planes`` of ``dataset`` (used by ``segment(dataset, planes)``).

        The default runs :meth:`_segment` on the dataset restricted to the
        selected planes (a lazy view of them, adjacent to each other in
        increasing order) and moves each returned ROI from plane ``k`` of that
        view to plane ``planes[k]``, with ``im_shape`` the full ``(Z, Y, X)``.
        Strategies with a cheaper way to skip planes override this method.

        Parameters
        ----------
        dataset : ImagingDataset
            The whole dataset.
        planes : numpy.ndarray of int
            Sorted, distinct plane indices.

        Returns
        -------
        ROIList
            ROIs in the whole dataset's pixel space.
        """
        im_shape = dataset_im_shape(dataset)
        assert im_shape is not None
        local = self._as_rois(self._segment(_plane_subset(dataset, planes)), "_segment")
        return ROIList([_place_on_planes(roi, planes, im_shape) for roi in local])


class PlaneWiseSegmentation(SegmentationStrategy):
    """Segment each plane of a volume separately with a single-plane strategy.

    Plane ``p`` is segmented as the one-plane dataset ``dataset[:, :, p:p+1]``
    (post-processing steps appended to ``plane_strategy`` therefore run plane
    by plane); each ROI found there is moved to plane ``p`` of the volume:
    mask planes are placed at index ``p`` (all other planes empty), polygon
    vertices get ``z = p``, and ``im_shape`` becomes the dataset's
    ``(Z, Y, X)``. Label, tags and id of the ROIs are kept. Steps appended to
    the :class:`PlaneWiseSegmentation` itself run once, on the ROIs of all
    planes together.

    Parameters
    ----------
    plane_strategy : SegmentationStrategy or list of SegmentationStrategy
        The strategy to run on each plane, or one strategy per plane (item
        ``p`` segments plane ``p``; the list must have as many items as the
        dataset has planes).

    Raises
    ------
    TypeError
        If ``plane_strategy`` is not a :class:`SegmentationStrategy` or a
        list of them.
    ValueError
        If the list is empty; at :meth:`segment`, if its length is not the
        dataset's number of planes.

    Notes
    -----
    ``segment(dataset, planes=[...])`` segments only the listed planes; the
    other planes are not read at all.

    Examples
    --------
    >>> import sima_fast as sima
    >>> class BrightPixels(SegmentationStrategy):
    ...     def _segment(self, dataset):
    ...         mean = dataset.time_averages[..., 0]
    ...         return ROIList([ROI(mask=mean > mean.mean())])
    >>> movie = np.zeros((4, 3, 5, 5, 1))
    >>> movie[:, :, 1:3, 1:3] = 1.0
    >>> dataset = sima.ImagingDataset([sima.Sequence.create('ndarray', movie)], None)
    >>> rois = PlaneWiseSegmentation(BrightPixels()).segment(dataset, planes=[0, 2])
    >>> [np.flatnonzero(np.asarray(roi).any(axis=(1, 2))).tolist() for roi in rois]
    [[0], [2]]
    """

    def __init__(
        self, plane_strategy: SegmentationStrategy | Sequence[SegmentationStrategy]
    ) -> None:
        super().__init__()
        if isinstance(plane_strategy, (list, tuple)):
            if not plane_strategy:
                raise ValueError("plane_strategy must not be an empty list")
            for k, each in enumerate(plane_strategy):
                if not isinstance(each, SegmentationStrategy):
                    raise TypeError(
                        f"plane_strategy[{k}] must be a sima_fast.segment.SegmentationStrategy, "
                        f"got {type(each).__name__}"
                    )
            self.plane_strategy: SegmentationStrategy | list[SegmentationStrategy] = list(
                plane_strategy
            )
        elif isinstance(plane_strategy, SegmentationStrategy):
            self.plane_strategy = plane_strategy
        else:
            raise TypeError(
                "plane_strategy must be a sima_fast.segment.SegmentationStrategy or a list of "
                f"them (one per plane), got {type(plane_strategy).__name__}"
            )

    @property
    def strategy(self) -> SegmentationStrategy | list[SegmentationStrategy]:
        """The per-plane strategy, or the list of them (SIMA's attribute name)."""
        return self.plane_strategy

    def _strategy_for(self, plane: int, n_planes: int) -> SegmentationStrategy:
        if isinstance(self.plane_strategy, list):
            if len(self.plane_strategy) != n_planes:
                raise ValueError(
                    f"PlaneWiseSegmentation was given {len(self.plane_strategy)} strategies for "
                    f"a dataset of {n_planes} plane(s); give exactly one per plane"
                )
            return self.plane_strategy[plane]
        return self.plane_strategy

    def _segment(self, dataset: ImagingDataset) -> ROIList:
        return self._segment_planes(dataset, np.arange(dataset.frame_shape[0]))

    def _segment_planes(self, dataset: ImagingDataset, planes: np.ndarray) -> ROIList:
        im_shape = dataset_im_shape(dataset)
        assert im_shape is not None
        out = ROIList()
        for p in planes:
            p = int(p)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SegmentationWarning)
                strategy = self._strategy_for(p, im_shape[0])
                found = strategy.segment(dataset[:, :, p : p + 1])
            for w in caught:  # said once, for the whole volume, if every plane is empty
                if issubclass(w.category, SegmentationWarning):
                    self._note_empty(f"plane {p}: {str(w.message).split('. What to try')[0]}")
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            out.extend(_place_on_planes(roi, [p], im_shape) for roi in found)
        return out

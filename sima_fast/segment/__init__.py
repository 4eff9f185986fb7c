"""Automatic segmentation: strategies that find ROIs and steps that refine them.

A :class:`SegmentationStrategy` finds ROIs in an
:class:`~sima_fast.imaging.ImagingDataset`; post-processing steps appended to
it with :meth:`SegmentationStrategy.append` run on the result, in order.
``ImagingDataset.segment(strategy, label, planes)`` runs a strategy and saves
its ROIs. The names and parameters are SIMA's (``sima.segment``).

Framework (:mod:`sima_fast.segment.base`): :class:`SegmentationStrategy`,
:class:`PostProcessingStep`, :class:`PlaneWiseSegmentation`.

Strategies: :class:`STICA` (spatio-temporal ICA, :mod:`sima_fast.segment.stica`),
:class:`PlaneNormalizedCuts` (normalised cuts of a pixel-affinity graph,
:mod:`sima_fast.segment.normcut`, whose affinities come from an
:class:`AffinityMatrixMethod` such as :class:`BasicAffinityMatrix`) and
:class:`PlaneCA1PC` (:mod:`sima_fast.segment.ca1pc`: normalised cuts with
:class:`AffinityMatrixCA1PC`, then the nucleus step :class:`CA1PCNucleus`).
A segmentation that finds no ROI issues a :class:`SegmentationWarning` that
says why and what to try.

SIMA's module paths work too: ``sima_fast.segment.segment`` (the framework
and post-processing steps), ``.stica``, ``.normcut``, ``.ca1pc`` and
``.oPCA`` (offset principal component analysis).

Post-processing (:mod:`sima_fast.segment.postprocess`): :class:`ROIFilter`,
:class:`CircularityFilter`, :class:`SparseROIsFromMasks`,
:class:`SmoothROIBoundaries`, :class:`MergeOverlapping`, and the helper
:func:`polygon_circularity`.

Scoring (:mod:`sima_fast.segment.score`): :func:`match_rois` matches found
ROIs to true cell masks and reports precision, recall and F1.

Examples
--------
>>> import numpy as np
>>> import sima_fast as sima
>>> from sima_fast.ROI import ROI, ROIList
>>> from sima_fast.segment import MergeOverlapping, SegmentationStrategy
>>> class BrightPixels(SegmentationStrategy):
...     def _segment(self, dataset):
...         mean = dataset.time_averages[..., 0]
...         return ROIList([ROI(mask=mean > 0.5), ROI(mask=mean > 1.5)])
>>> movie = np.zeros((5, 1, 8, 8, 1))
>>> movie[:, 0, 2:6, 2:6] = 1.0
>>> movie[:, 0, 3:5, 3:5] = 2.0
>>> dataset = sima.ImagingDataset([sima.Sequence.create('ndarray', movie)], None)
>>> strategy = BrightPixels()
>>> strategy.append(MergeOverlapping(threshold=0.5))
>>> [roi.size for roi in strategy.segment(dataset)]
[16]
"""

from sima_fast.segment.base import (
    PlaneWiseSegmentation,
    PostProcessingStep,
    SegmentationStrategy,
    SegmentationWarning,
)
from sima_fast.segment.ca1pc import AffinityMatrixCA1PC, CA1PCNucleus, PlaneCA1PC
from sima_fast.segment.normcut import (
    AffinityMatrixMethod,
    BasicAffinityMatrix,
    PlaneNormalizedCuts,
)
from sima_fast.segment.postprocess import (
    CircularityFilter,
    MergeOverlapping,
    ROIFilter,
    SmoothROIBoundaries,
    SparseROIsFromMasks,
    polygon_circularity,
)
from sima_fast.segment.score import match_rois
from sima_fast.segment.stica import STICA

__all__ = [
    "STICA",
    "AffinityMatrixCA1PC",
    "AffinityMatrixMethod",
    "BasicAffinityMatrix",
    "CA1PCNucleus",
    "CircularityFilter",
    "MergeOverlapping",
    "PlaneCA1PC",
    "PlaneNormalizedCuts",
    "PlaneWiseSegmentation",
    "PostProcessingStep",
    "ROIFilter",
    "SegmentationStrategy",
    "SegmentationWarning",
    "SmoothROIBoundaries",
    "SparseROIsFromMasks",
    "match_rois",
    "polygon_circularity",
]

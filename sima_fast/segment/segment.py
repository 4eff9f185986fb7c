"""SIMA's module ``sima.segment.segment``: the segmentation framework and post-processing steps.

Scripts written for SIMA import these names from here; they are the same
objects as in :mod:`sima_fast.segment` (defined in
:mod:`sima_fast.segment.base` and :mod:`sima_fast.segment.postprocess`).

Examples
--------
>>> from sima_fast.segment.segment import SegmentationStrategy, MergeOverlapping
>>> import sima_fast.segment
>>> MergeOverlapping is sima_fast.segment.MergeOverlapping
True
"""

from sima_fast.segment.base import (
    PlaneWiseSegmentation,
    PostProcessingStep,
    SegmentationStrategy,
    SegmentationWarning,
)
from sima_fast.segment.postprocess import (
    CircularityFilter,
    MergeOverlapping,
    ROIFilter,
    SmoothROIBoundaries,
    SparseROIsFromMasks,
)

__all__ = [
    "CircularityFilter",
    "MergeOverlapping",
    "PlaneWiseSegmentation",
    "PostProcessingStep",
    "ROIFilter",
    "SegmentationStrategy",
    "SegmentationWarning",
    "SmoothROIBoundaries",
    "SparseROIsFromMasks",
]

"""Miscellaneous helpers: the movie simulator and the example dataset.

- :func:`simulate_movie` makes a deterministic two-photon calcium imaging
  movie of any size together with its ground truth;
- :func:`example_data` returns a small example dataset built from it on first
  use in a cache directory (no download), with its ground truth
  (:func:`example_ground_truth`), its raw files (:func:`example_hdf5`,
  :func:`example_tiff`) and the true outlines as ImageJ ROIs
  (:func:`example_imagej_rois`);
- :func:`example_uncorrected` returns a movie recorded with known motion
  (rigid, non-rigid or row-wise), before correction, with its
  :class:`MotionTruth`; :mod:`sima_fast.misc.motion_truth` scores motion
  estimates against it (:func:`rigid_rms_error`, :func:`row_exact_fraction`,
  :func:`block_rms_error`, :func:`mean_image_sharpness`).
"""

from sima_fast.misc._example import (
    CHANNEL_NAMES,
    EXAMPLE_VERSION,
    MOTION_EXAMPLE_VERSION,
    ExampleGroundTruth,
    UncorrectedExample,
    cache_directory,
    example_data,
    example_ground_truth,
    example_hdf5,
    example_imagej_rois,
    example_tiff,
    example_uncorrected,
    read_ground_truth,
    read_motion_truth,
)
from sima_fast.misc.convert import to8bit, to16bit
from sima_fast.misc.helpers import (
    TransformError,
    copy_label_to_id,
    estimate_array_transform,
    estimate_coordinate_transform,
    mkdir_p,
    most_recent_key,
)
from sima_fast.misc.motion_truth import (
    MOTION_KINDS,
    MotionTruth,
    block_rms_error,
    gradient_energy,
    mean_image_sharpness,
    rigid_rms_error,
    row_exact_fraction,
)
from sima_fast.misc.sima_examples import (
    SIMA_EXAMPLE_VERSION,
    example_tiffs,
    example_volume,
    sima_example_data,
    sima_example_hdf5,
    sima_example_imagej_rois,
    sima_example_tiff,
)
from sima_fast.misc.simulate import SimulatedMovie, simulate_movie

__all__ = [
    "CHANNEL_NAMES",
    "EXAMPLE_VERSION",
    "MOTION_EXAMPLE_VERSION",
    "MOTION_KINDS",
    "SIMA_EXAMPLE_VERSION",
    "ExampleGroundTruth",
    "MotionTruth",
    "SimulatedMovie",
    "TransformError",
    "UncorrectedExample",
    "block_rms_error",
    "cache_directory",
    "copy_label_to_id",
    "estimate_array_transform",
    "estimate_coordinate_transform",
    "example_data",
    "example_ground_truth",
    "example_hdf5",
    "example_imagej_rois",
    "example_tiff",
    "example_tiffs",
    "example_uncorrected",
    "example_volume",
    "gradient_energy",
    "mean_image_sharpness",
    "mkdir_p",
    "most_recent_key",
    "read_ground_truth",
    "read_motion_truth",
    "rigid_rms_error",
    "row_exact_fraction",
    "sima_example_data",
    "sima_example_hdf5",
    "sima_example_imagej_rois",
    "sima_example_tiff",
    "simulate_movie",
    "to8bit",
    "to16bit",
]

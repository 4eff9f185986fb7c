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
from sima_fast.misc.motion_truth import (
    MOTION_KINDS,
    MotionTruth,
    block_rms_error,
    gradient_energy,
    mean_image_sharpness,
    rigid_rms_error,
    row_exact_fraction,
)
from sima_fast.misc.simulate import SimulatedMovie, simulate_movie

__all__ = [
    "CHANNEL_NAMES",
    "EXAMPLE_VERSION",
    "MOTION_EXAMPLE_VERSION",
    "MOTION_KINDS",
    "ExampleGroundTruth",
    "MotionTruth",
    "SimulatedMovie",
    "UncorrectedExample",
    "block_rms_error",
    "cache_directory",
    "example_data",
    "example_ground_truth",
    "example_hdf5",
    "example_imagej_rois",
    "example_tiff",
    "example_uncorrected",
    "gradient_energy",
    "mean_image_sharpness",
    "read_ground_truth",
    "read_motion_truth",
    "rigid_rms_error",
    "row_exact_fraction",
    "simulate_movie",
]

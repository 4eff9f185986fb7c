"""Miscellaneous helpers: the movie simulator and the example dataset.

- :func:`simulate_movie` makes a deterministic two-photon calcium imaging
  movie of any size together with its ground truth;
- :func:`example_data` returns a small example dataset built from it on first
  use in a cache directory (no download), with its ground truth
  (:func:`example_ground_truth`), its raw files (:func:`example_hdf5`,
  :func:`example_tiff`) and the true outlines as ImageJ ROIs
  (:func:`example_imagej_rois`).
"""

from sima_fast.misc._example import (
    CHANNEL_NAMES,
    EXAMPLE_VERSION,
    ExampleGroundTruth,
    cache_directory,
    example_data,
    example_ground_truth,
    example_hdf5,
    example_imagej_rois,
    example_tiff,
    read_ground_truth,
)
from sima_fast.misc.simulate import SimulatedMovie, simulate_movie

__all__ = [
    "CHANNEL_NAMES",
    "EXAMPLE_VERSION",
    "ExampleGroundTruth",
    "SimulatedMovie",
    "cache_directory",
    "example_data",
    "example_ground_truth",
    "example_hdf5",
    "example_imagej_rois",
    "example_tiff",
    "read_ground_truth",
    "simulate_movie",
]

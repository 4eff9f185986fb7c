"""Projections: sima_fast's streaming moments kernel against numpy/scipy, and HDF5 end to end.

The cases are those of ``suite="projections"`` in :mod:`sima_fast.bench.cases`
(the same that ``sima-fast bench`` runs):

``moments-<dtype>``
    Mean, std and Pearson kurtosis of an in-memory 512×512×T movie (uint16 in
    [0, 4096) and the same values as float32): ``ours`` is
    ``MomentState.update`` plus the three finalisers; ``numpy_mean_std_scipy_kurtosis``
    is ``mean(0)``, ``std(0)`` and ``scipy.stats.kurtosis`` called on slabs of
    rows of every frame in turn (:func:`sima_fast.bench.cases.slab_rows`:
    each pixel's result is that of one call on the whole movie, and scipy's
    float64 temporaries stay under about 2 GiB instead of about 17 GB for
    2,000 uint16 frames);
    ``numpy_mean`` is ``movie.mean(0)`` alone. T is ``SIMA_FAST_BENCH_PROJ_FRAMES``
    (default 2000).
``projections-hdf5``
    ``projections([Sequence.create('HDF5', path, 'tyx')])`` on the uint16 HDF5
    movie (``SIMA_FAST_BENCH_FRAMES`` frames, default 3000) against ``raw``:
    reading the same file with h5py in 100-frame slices and nothing else. The
    page cache is warm (the file is read once before measuring).

Every benchmark checks its result against numpy on a small set of pixels, so a
broken kernel cannot report a fast number. Run with::

    python -m pytest benchmarks/test_projections.py --benchmark-only -p no:cacheprovider
"""

from __future__ import annotations

import pytest

from conftest import case_params, run_case


@pytest.mark.parametrize(
    ("case_inputs", "impl"), case_params("projections"), indirect=["case_inputs"]
)
def test_projections(benchmark, case_inputs, impl):
    run_case(benchmark, case_inputs, impl)

"""Signal extraction: sima_fast's run-based kernel and ``extract_rois`` against scipy and I/O.

The scene (:func:`sima_fast.bench.cases.simulated_cells`) is
``simulate_movie`` with 500 cells of equivalent radius 6.7 px (about 140
pixels each; neighbours overlap slightly, and the overlapping pixels are
removed, ``remove_overlap=True``) on 512×512 frames. The ROIs are the
simulated cell masks, as ``ROI(mask=...)``. The weights
(``ExtractionWeights`` with the movie's mean frame) are built once per case
for the kernel path; ``extract_rois`` builds its own on every call.

Groups (cases of :mod:`sima_fast.bench.cases`; ``sima-fast bench`` runs the
uint16 one without ``ours_api``)
------
``extract-uint16-memory`` / ``extract-float32-memory``
    The simulated movie, T×512×512 (``SIMA_FAST_BENCH_EXTRACT_FRAMES``,
    default 3000) in memory, uint16 and the same values as float32.
    ``ours`` is ``extract_runs`` over the whole movie (2-D view, one call,
    float64 output, two threads); ``ours_api`` is ``extract_rois(dataset, rois,
    n_processes=2)`` on an ``ndarray`` sequence of that movie whose time
    averages are already cached (so it also pays for building the weights);
    ``scipy_csr_batches`` is SIMA's algebra in 500-frame batches:
    ``M @ (batch.reshape(500, -1).T / mu[:, None])`` with ``M`` the CSR mask
    weights (after overlap removal) and ``mu`` the mean frame, in float64;
    ``suite2p`` is suite2p's ``extract_traces`` on the same masks with 1/μ
    folded into the weights (no neuropil), when installed.
``extract-weights``
    ``ExtractionWeights(rois, (1, 512, 512), mean, True)`` alone: the fixed
    cost of every ``extract_rois`` call.
``extract-neuropil``
    ``ours`` is ``extract_runs`` on the uint16 movie with the plan of
    ``ExtractionWeights(..., neuropil=True)``: the 500 ROIs and their 500
    neuropil surrounds (suite2p's defaults: from 2 px off the ROI, grown to
    at least 350 pixels, every ROI's pixels excluded) in one pass over each
    frame; ``plain`` is the same call with the ROIs alone, timed in the same
    run (the target: at most 1.3× ``plain``).
``extract-nan``
    ``ours`` is ``extract_runs`` on the float32 movie with 20 % NaN rows (102
    whole image rows per frame, split between a band at the top and one at
    the bottom whose sizes vary per frame, like motion-correction edges);
    ``nan_free`` is the same call on the NaN-free float32 movie.
``extract-hdf5``
    ``extract_rois(..., n_processes=2)`` on ``Sequence.create('HDF5', path,
    'tyx')`` (the uint16 file movie, ``SIMA_FAST_BENCH_FRAMES`` frames) with
    the dataset's time averages computed before timing, against ``raw``: h5py
    reading the file in 100-frame slices. The page cache is warm.
``extract-tiff``
    ``extract_rois(..., n_processes=2)`` on ``Sequence.create('TIFF', path)``
    (memory-mapped) against ``memory``: the same call on an ``ndarray``
    sequence holding the same movie.
``dataset-writes``
    ``ours`` is ``add_ROIs`` + ``extract(save_summary=False)`` into a
    200×128×128 float32 dataset on disk with 50 ROIs (small, so writing
    dominates); ``lock`` is two acquire-and-release cycles of its directory
    lock alone: the cost the lock adds to every write.

Every run is checked against the scipy algebra (NaN-aware where needed) on a
few frames, so a broken kernel cannot report a fast number. One case's data is
alive at a time, and the shared scene keeps its movie in one dtype at a time
(:func:`sima_fast.bench.cases.simulated_cells`), so the peak is about the
3 GB float32 movie plus the scipy baseline's 500-frame batch temporaries
(about 2 GB). The file cases use only the scene's ROIs, which do not depend on
its number of frames. Each entry records ``extra_info['others_cpu']``, the
share of the CPUs other processes used while it ran: on a shared machine,
re-run entries where it is above a few per cent. Run with::

    python -m pytest benchmarks/test_extract.py --benchmark-only -p no:cacheprovider \\
        --benchmark-json=results.json
    python benchmarks/report.py results.json

and ``NUMBA_NUM_THREADS=1`` in front, with ``-k "memory and not scipy or nan"``,
for the single-thread kernel numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import OthersCPU, case_params, run_case
from sima_fast.bench.cases import N_ROIS, SHAPE, get_case, simulated_cells
from sima_fast.extract import ExtractionWeights


@pytest.mark.parametrize(("case_inputs", "impl"), case_params("extract"), indirect=["case_inputs"])
def test_extract(benchmark, case_inputs, impl):
    run_case(benchmark, case_inputs, impl)


@pytest.mark.benchmark(group="extract-weights")
@pytest.mark.parametrize("impl", ["ours"])
def test_extract_weights(benchmark, impl):
    frames = get_case("extract-uint16-memory").size()["frames"]
    scene = simulated_cells(frames)
    mean = scene["movie"].mean(axis=0, dtype=np.float64)[None]
    args = (scene["rois"], (1, *SHAPE), mean, True)
    reference = ExtractionWeights(*args)
    benchmark.extra_info["size"] = f"{N_ROIS} ROIs on {SHAPE[0]}×{SHAPE[1]}"
    with OthersCPU() as busy:
        weights = benchmark.pedantic(ExtractionWeights, args=args, rounds=5, iterations=1)
    busy.record(benchmark)
    assert weights.n_rois == N_ROIS
    assert (weights.masks != reference.masks).nnz == 0
    np.testing.assert_array_equal(weights.plan.weights, reference.plan.weights)

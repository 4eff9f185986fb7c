"""Chunked reading: sima_fast's readers against h5py / tifffile raw reads, same chunks.

Groups ``read-hdf5`` and ``read-tiff`` (cases of :mod:`sima_fast.bench.cases`;
``sima-fast bench`` runs the HDF5 one): every implementation reads the whole
512×512×T uint16 movie (``SIMA_FAST_BENCH_FRAMES``, default 3000) in chunks
of 100 frames and consumes each chunk with ``chunk.max()`` (so a zero-copy
memory map is charged for touching its bytes, like a real kernel would).
The file is in the page cache (read once before measuring). Run with::

    python -m pytest benchmarks/test_reading.py --benchmark-only

and compare the medians of ``ours`` and ``raw`` in each group.
"""

from __future__ import annotations

import pytest

from conftest import case_params, run_case


@pytest.mark.parametrize(("case_inputs", "impl"), case_params("reading"), indirect=["case_inputs"])
def test_read(benchmark, case_inputs, impl):
    run_case(benchmark, case_inputs, impl)

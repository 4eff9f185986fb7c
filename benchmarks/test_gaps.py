"""Gap filling: sima_fast's ``fill_forward`` kernel against a per-frame numpy loop and a copy.

Group ``fill-gaps`` (the case of :mod:`sima_fast.bench.cases` that
``sima-fast bench`` also runs): a float32 movie T×512×512
(``SIMA_FAST_BENCH_GAPS_FRAMES``, default 2000) with about 10 % NaN: whole
rows at the top or bottom of each frame (like the edges left by motion
correction) plus scattered single pixels. Every implementation writes the
filled movie into the same preallocated output:

``ours``
    ``first_finite`` (initial state, stops once every pixel is seen) then
    ``fill_forward`` over the whole movie.
``numpy_loop``
    The same two steps in numpy, frame by frame.
``copyto``
    ``np.copyto(out, movie)``: the memory-bandwidth yardstick.

``ours`` is checked against the numpy loop over the whole movie (exact, NaN
equal to NaN), the loop against itself on a subset of pixels. Run with::

    python -m pytest benchmarks/test_gaps.py --benchmark-only -p no:cacheprovider
"""

from __future__ import annotations

import pytest

from conftest import case_params, run_case


@pytest.mark.parametrize(("case_inputs", "impl"), case_params("gaps"), indirect=["case_inputs"])
def test_fill_gaps(benchmark, case_inputs, impl):
    run_case(benchmark, case_inputs, impl)

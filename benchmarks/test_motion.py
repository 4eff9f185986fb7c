"""Motion correction: sima_fast's rigid and non-rigid registration against suite2p and scipy.

Movies are simulated (:func:`sima_fast.bench.cases.motion_movie`): 512×512
frames of a scene of 600 cells on a smooth background, moved by sub-pixel
shifts uniform in ±20 px (exact Fourier shifts), with Poisson noise; the
non-rigid movie adds a smooth deformation of up to 3 px. The true shifts are
known, so every implementation's answer is checked (RMS error of the
displacements, after removing each implementation's constant offset) and
its accuracy and the sharpness (gradient energy) of its corrected mean image
recorded in ``extra_info``.

Groups
------
``motion-rigid``
    (also in the full ``sima-fast bench``, at 300 frames) estimate + apply:
    ``ours`` is ``RigidRegistration2D(n_processes=2)`` (reference built from
    the data, then every frame registered and its corrected frame written to
    a float32 movie); ``scipy_loop`` a plain per-frame loop (``scipy.fft``
    defaults, float64: ``fft2`` of the frame, whitened cross-power with the
    true reference, ``ifft2``, ``argmax``, ``scipy.ndimage.shift(order=1)``);
    ``suite2p`` suite2p's ``compute_reference`` (400 frames) and
    ``register_frames(nonrigid=False)`` on the CPU (torch, 2 threads), only
    when suite2p is installed in the benchmark environment (skipped
    otherwise; it is not a dependency).
``motion-nonrigid``
    ``ours`` is the non-rigid strategy of ``sima_fast.motion`` (``NonRigid2D``,
    128×128 blocks) when this build has it; ``suite2p`` is
    ``register_frames(nonrigid=True, block_size=(128, 128))``.

Targets (512×512 uint16, 2,000 frames, 2 cores): rigid ≥ 5× the scipy loop
and ≥ 2× suite2p; non-rigid ≥ 1.5× suite2p. ``SIMA_FAST_BENCH_MOTION_FRAMES``
sets the number of frames (default 2,000). Run with::

    python -m pytest benchmarks/test_motion.py --benchmark-only -p no:cacheprovider \\
        --benchmark-json=results.json
    python benchmarks/report.py results.json
"""

from __future__ import annotations

import pytest

from conftest import case_params, run_case


@pytest.mark.parametrize(("case_inputs", "impl"), case_params("motion"), indirect=["case_inputs"])
def test_motion(benchmark, case_inputs, impl):
    run_case(benchmark, case_inputs, impl)
    _, inputs = case_inputs
    accuracy = inputs["accuracy"][impl]
    benchmark.extra_info["rms_error_px"] = round(accuracy["rms_px"], 4)
    benchmark.extra_info["gradient_energy"] = round(accuracy["gradient_energy"], 2)
    parts = inputs.data.get("parts", {}).get(impl)
    if parts:  # the last call's estimation and application, apart
        benchmark.extra_info.update(parts)
    if benchmark.stats is not None:
        frames = len(inputs["movie"])
        benchmark.extra_info["frames_per_s"] = round(frames / benchmark.stats.stats.median, 1)

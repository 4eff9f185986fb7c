"""NonRigid2D on movies whose frames jump by up to ±20 px independently of each other.

Regression tests for a reference built from the plain mean of such frames:
that mean is a blur whose whitened spectrum is mostly the frames' own noise,
so every frame registered to it at zero (and the reference could also settle
far from the frames' median position, beyond ``max_displacement``). The
movies are made here: a periodic scene of cell-like blobs on a smooth
background, sampled through a known field (a translation drawn uniformly per
frame plus an optional smooth bending), with Poisson noise. The truth is a
:class:`sima_fast.misc.motion_truth.MotionTruth`, so the estimates are scored
by :func:`sima_fast.misc.motion_truth.block_rms_error` (per-block RMS error).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter, map_coordinates

from sima_fast import Sequence
from sima_fast.misc.motion_truth import MotionTruth, block_rms_error
from sima_fast.motion.nonrigid import NonRigid2D

BLOCK = 64
SHAPE = (128, 128)


def jumping_movie(frames, shift, bend, seed, shape=SHAPE, photons=60.0):
    """A movie whose every frame moves by its own uniform shift in ``[0, 2 shift]``.

    Parameters are the number of frames, the half-range of the translation
    (px), the bound on the bending added to it (px, 0 for none) and the seed.

    Returns
    -------
    movie : numpy.ndarray, float32 (T, 1, Y, X, 1)
    truth : MotionTruth
        ``observed(p) = scene(q)`` where ``q - d(q) = p``.
    """
    rng = np.random.default_rng(seed)
    Y, X = shape
    pad = int(np.ceil(2 * shift + 2 * bend)) + 4
    size = (Y + pad, X + pad)
    blobs = np.zeros(size)
    n = size[0] * size[1] // 150
    blobs[rng.integers(0, size[0], n), rng.integers(0, size[1], n)] = rng.uniform(0.5, 1.5, n)
    blobs = gaussian_filter(blobs, 2.0, mode="wrap")
    background = gaussian_filter(rng.random(size), 12, mode="wrap")
    scene = 0.2 + (background - background.min()) / np.ptp(background)
    scene += 3 * blobs / blobs.max()
    translation = rng.uniform(0, 2 * shift, (frames, 1, 2)) + bend
    if bend > 0:
        wavevectors = 0.75 * np.array([[1 / Y, 0.0], [0.0, 1 / X], [1 / Y, 1 / X]])
        phases = rng.uniform(0, 2 * np.pi, 3)
        weights = rng.uniform(-1, 1, (frames, 1, 3, 2))
        weights *= bend / np.abs(weights).sum(axis=2, keepdims=True)
    else:
        wavevectors, phases, weights = np.zeros((0, 2)), np.zeros(0), np.zeros((frames, 1, 0, 2))
    truth = MotionTruth(
        "nonrigid" if bend > 0 else "rigid",
        (1, *size),
        (1, Y, X),
        translation,
        wavevectors,
        phases,
        weights,
    )
    py, px = np.mgrid[:Y, :X].astype(np.float64)
    movie = np.empty((frames, 1, Y, X, 1), np.float32)
    for t in range(frames):
        qy, qx = py + translation[t, 0, 0], px + translation[t, 0, 1]
        for _ in range(8 if bend > 0 else 0):  # q = p + d(q), a contraction
            d = truth.evaluate(t, 0, qy, qx)
            qy, qx = py + d[..., 0], px + d[..., 1]
        image = map_coordinates(scene, [qy, qx], order=3, mode="grid-wrap")
        movie[t, 0, :, :, 0] = rng.poisson(photons * np.clip(image, 0, None))
    return movie, truth


def score(movie, truth, **options):
    strategy = NonRigid2D(block_size=BLOCK, **options)
    d = strategy.estimate([Sequence.create("ndarray", movie)])[0]
    return block_rms_error(d, truth, *strategy.grid, block_shape=(BLOCK, BLOCK))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bending_movie_with_20px_jumps(seed):
    movie, truth = jumping_movie(16, 20.0, 1.0, seed)
    assert score(movie, truth) <= 0.3


def test_reference_stays_at_the_median_position():
    # max_displacement = 25 leaves room for the ±20 px motion only when the
    # reference sits near the middle of the frames' positions (their median
    # is 14 px from the far end here)
    movie, truth = jumping_movie(16, 20.0, 0.0, 3)
    assert score(movie, truth, max_displacement=25) <= 0.3


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    seed=st.integers(0, 2**16),
    shift=st.floats(0.0, 20.0),
)
@example(seed=0, shift=20.0)  # both registered every frame at zero to the plain mean
@example(seed=5, shift=20.0)
def test_rigid_jumps_up_to_20px(seed, shift):
    movie, truth = jumping_movie(10, shift, 0.0, seed)
    assert score(movie, truth) <= 0.3

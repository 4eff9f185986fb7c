"""Ground truth of the simulator's motion, the scoring helpers and the motion examples.

The truth is checked against independent implementations: numpy bilinear
un-warping, scipy's generic spline sampler, a numpy phase correlation and the
integer ``apply_displacements`` view.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import scipy.ndimage
from hypothesis import given
from hypothesis import strategies as st

import sima_fast.misc._example as example_module
from sima_fast import Sequence
from sima_fast.misc import (
    MotionTruth,
    block_rms_error,
    example_uncorrected,
    gradient_energy,
    mean_image_sharpness,
    read_motion_truth,
    rigid_rms_error,
    row_exact_fraction,
    simulate_movie,
)

QUIET = {"gain": 0.0, "read_noise": 0.0, "dtype": "float64"}  # observed = sampled mean exactly


def bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Plain numpy bilinear sampling (NaN outside the image)."""
    ny, nx = image.shape
    inside = (y >= 0) & (y <= ny - 1) & (x >= 0) & (x <= nx - 1)
    yc, xc = np.clip(y, 0, ny - 1), np.clip(x, 0, nx - 1)
    y0 = np.minimum(np.floor(yc).astype(int), ny - 2)
    x0 = np.minimum(np.floor(xc).astype(int), nx - 2)
    fy, fx = yc - y0, xc - x0
    out = (
        (1 - fy) * (1 - fx) * image[y0, x0]
        + (1 - fy) * fx * image[y0, x0 + 1]
        + fy * (1 - fx) * image[y0 + 1, x0]
        + fy * fx * image[y0 + 1, x0 + 1]
    )
    return np.where(inside, out, np.nan)


def phase_correlation(a: np.ndarray, b: np.ndarray, upsample: int = 50) -> np.ndarray:
    """Shift ``s`` with ``b(p) ≈ a(p + s)``: FFT peak refined by an upsampled DFT."""
    # b(p) = a(p + s) ⇒ B = A·exp(2πi k·s) ⇒ A·conj(B) = |A|²·exp(−2πi k·s), peak at +s.
    window = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    fa = np.fft.fft2((a - a.mean()) * window)
    fb = np.fft.fft2((b - b.mean()) * window)
    cross = fa * np.conj(fb)
    cross /= np.abs(cross) + 1e-12  # whitened, then smoothed (a Gaussian low-pass)
    ky, kx = np.meshgrid(*(np.fft.fftfreq(m) for m in a.shape), indexing="ij")
    cross *= np.exp(-(ky**2 + kx**2) / (2 * 0.1**2))
    corr = np.fft.ifft2(cross).real
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape), dtype=float)
    n = np.array(a.shape)
    peak = np.where(peak > n / 2, peak - n, peak)
    offsets = np.arange(-1.5, 1.5 + 1e-9, 1.0 / upsample)
    ky, kx = (np.fft.fftfreq(m) for m in a.shape)
    ey = np.exp(2j * np.pi * np.outer(peak[0] + offsets, ky))
    ex = np.exp(2j * np.pi * np.outer(kx, peak[1] + offsets))
    fine = (ey @ cross @ ex).real
    i, j = np.unravel_index(np.argmax(fine), fine.shape)
    return peak + offsets[[i, j]]


# ---------------------------------------------------------------- unchanged defaults


@pytest.mark.parametrize(
    ("args", "digest"),
    [
        (
            {"num_frames": 12, "frame_shape": (40, 48), "cells_per_plane": 4, "seed": 3},
            "9c478dea9c3d9a2715a0b6a29f09efecbd5eb1b7cc0aa138441c74b048598adf",
        ),
        (
            {
                "num_frames": 9,
                "num_planes": 2,
                "frame_shape": (36, 36),
                "cells_per_plane": 3,
                "max_displacement": (3, 5),
                "seed": 7,
                "dtype": "float32",
                "nan_fraction": 0.01,
            },
            "ab0e54d9b1b716408e3788fb8568f9b6f58e750e840e4ff5047d4a6b6e036876",
        ),
    ],
)
def test_outputs_without_motion_are_unchanged(args, digest):
    # Digests taken from the simulator before continuous motion was added.
    s = simulate_movie(**args)
    h = hashlib.sha256()
    for a in (s.movie, s.observed, s.displacements, s.masks, s.spikes, s.calcium):
        h.update(np.ascontiguousarray(a).tobytes())
    for a in (s.baseline, s.neuropil):
        h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest() == digest
    assert s.motion is None


@pytest.mark.parametrize("kind", ["rigid", "nonrigid", "rowwise"])
def test_motion_leaves_the_motion_free_movie_alone(kind):
    args = {"num_frames": 6, "frame_shape": (48, 48), "cells_per_plane": 3, "seed": 4}
    still = simulate_movie(**args)
    moving = simulate_movie(**args, motion=kind, motion_amplitude=2.5)
    for name in ("movie", "masks", "spikes", "calcium", "baseline", "neuropil"):
        np.testing.assert_array_equal(getattr(moving, name), getattr(still, name))
    assert moving.observed is not moving.movie
    assert moving.displacements is moving.motion.displacements


# ---------------------------------------------------------------- rigid


def test_rigid_observed_is_the_spline_scene_at_p_plus_d():
    s = simulate_movie(
        num_frames=5, num_planes=2, frame_shape=(40, 44), cells_per_plane=3,
        motion="rigid", motion_amplitude=(3.0, 4.5), seed=2, **QUIET,
    )  # fmt: skip
    assert s.observed.shape == (5, 2, 34, 35, 2)
    mu = s.expected()
    yy, xx = np.mgrid[0:34, 0:35].astype(float)
    for t in range(5):
        for z in range(2):
            dy, dx = s.motion.displacements[t, z]
            for c in range(2):
                ref = scipy.ndimage.map_coordinates(
                    mu[t, z, :, :, c], [yy + dy, xx + dx], order=3, mode="mirror"
                )
                np.testing.assert_allclose(s.observed[t, z, :, :, c], ref, rtol=0, atol=1e-9)


def test_rigid_unwarp_recovers_the_scene_and_the_sign_matters():
    # A smooth scene (no cells), so bilinear interpolation error is small.
    s = simulate_movie(
        num_frames=4, frame_shape=(64, 64), cells_per_plane=0, num_channels=1,
        motion="rigid", motion_amplitude=4.0, seed=5, **QUIET,
    )  # fmt: skip
    mu = s.expected()
    qy, qx = np.mgrid[8:56, 8:56].astype(float)
    for t in range(4):
        d = s.motion.displacements[t, 0]
        right = bilinear(s.observed[t, 0, :, :, 0], qy - d[0], qx - d[1])
        truth = mu[t, 0, 8:56, 8:56, 0]
        ok = np.isfinite(right)
        assert ok.mean() > 0.5
        rel = np.abs(right[ok] - truth[ok]) / truth[ok]
        assert rel.max() < 0.01
        if np.abs(d).max() > 1.0:  # the opposite sign lands elsewhere
            wrong = bilinear(s.observed[t, 0, :, :, 0], qy + d[0], qx + d[1])
            fine = np.isfinite(wrong)
            error = np.abs(right[ok] - truth[ok]).mean()
            assert np.abs(wrong[fine] - truth[fine]).mean() > 5 * error


def test_phase_correlation_finds_the_true_subpixel_shifts():
    s = simulate_movie(
        num_frames=8, frame_shape=(96, 96), cells_per_plane=12,
        motion="rigid", motion_amplitude=5.0, seed=8, **QUIET,
    )  # fmt: skip
    static = s.observed[:, 0, :, :, 1]  # the structural channel does not change
    d = s.motion.displacements[:, 0]
    est = np.array([phase_correlation(static[0], static[t]) for t in range(8)])
    np.testing.assert_allclose(est, d - d[0], atol=0.1)
    assert np.abs((d - d[0]) % 1.0 - 0.5).min() < 0.45  # truly sub-pixel shifts occur
    assert rigid_rms_error(est, d) < 0.06


# ---------------------------------------------------------------- non-rigid


def test_nonrigid_field_unwarps_the_scene():
    s = simulate_movie(
        num_frames=4, frame_shape=(80, 72), cells_per_plane=0, num_channels=1,
        motion="nonrigid", motion_amplitude=2.0, nonrigid_amplitude=2.0, seed=6, **QUIET,
    )  # fmt: skip
    assert s.observed.shape == (4, 1, 72, 64, 1)
    field = s.motion.field()
    assert field.shape == (4, 1, 80, 72, 2)
    local = field - s.motion.displacements[:, :, None, None, :]
    assert np.abs(local).max() <= 2.0 + 1e-12 and np.abs(local).max() > 0.3
    mu = s.expected()
    qy, qx = np.mgrid[0:80, 0:72].astype(float)
    for t in range(4):
        d = field[t, 0]
        right = bilinear(s.observed[t, 0, :, :, 0], qy - d[..., 0], qx - d[..., 1])
        ok = np.isfinite(right)
        ok[:3], ok[-3:], ok[:, :3], ok[:, -3:] = False, False, False, False
        assert ok.mean() > 0.5
        truth = mu[t, 0, :, :, 0]
        assert (np.abs(right[ok] - truth[ok]) / truth[ok]).max() < 0.01
        # The opposite sign lands elsewhere.
        wrong = bilinear(s.observed[t, 0, :, :, 0], qy + d[..., 0], qx + d[..., 1])
        both = ok & np.isfinite(wrong)
        error = np.abs(right[both] - truth[both]).mean()
        assert np.abs(wrong[both] - truth[both]).mean() > 5 * error


def test_nonrigid_truth_methods_agree():
    s = simulate_movie(
        num_frames=3, frame_shape=(64, 64), cells_per_plane=2,
        motion="nonrigid", motion_amplitude=1.0, seed=9,
    )  # fmt: skip
    m = s.motion
    field = m.field(1, 3)
    np.testing.assert_allclose(field[1, 0, 10, 20], m.evaluate(2, 0, 10.0, 20.0))
    centres = np.array([8.0, 24.5, 40.0])
    at = m.block_means(centres, centres)
    np.testing.assert_allclose(at[:, 0, 0, 0], m.evaluate(np.arange(3), 0, 8.0, 8.0))
    blocks = m.block_means(np.array([15.5]), np.array([31.5]), (16, 16))
    np.testing.assert_allclose(blocks[:, 0, 0, 0], field_mean(m, 8, 24, 24, 40), atol=1e-12)
    # Numerical derivative of the field.
    h = 1e-5
    jac = m.jacobian(0, 0, 30.0, 12.0)
    dy = (m.evaluate(0, 0, 30.0 + h, 12.0) - m.evaluate(0, 0, 30.0 - h, 12.0)) / (2 * h)
    np.testing.assert_allclose(jac[:, 0], dy, atol=1e-7)


def field_mean(m: MotionTruth, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    return m.field()[:, 0, y0:y1, x0:x1].mean(axis=(1, 2))


def test_nonrigid_amplitude_limit():
    with pytest.raises(ValueError, match="nonrigid_amplitude"):
        simulate_movie(
            num_frames=2, frame_shape=(40, 40), cells_per_plane=0,
            motion="nonrigid", nonrigid_amplitude=2.0,
        )  # fmt: skip
    s = simulate_movie(
        num_frames=2, frame_shape=(40, 40), cells_per_plane=0, motion="nonrigid"
    )  # the default shrinks to what a small frame allows
    assert np.abs(s.motion.weights).sum(axis=2).max() <= 40 / (8 * math.pi) + 1e-12


# ---------------------------------------------------------------- row-wise


def test_rowwise_rows_are_exact_scene_rows():
    s = simulate_movie(
        num_frames=6, num_planes=2, frame_shape=(48, 40), cells_per_plane=3,
        motion="rowwise", motion_amplitude=(3.0, 2.0), seed=3, **QUIET,
    )  # fmt: skip
    d = s.motion.displacements
    assert d.shape == (6, 2, 42, 2) and d.dtype == np.int64
    assert d[..., 0].min() == 0 and d[..., 0].max() == 6 and d[..., 1].max() == 4
    assert len(np.unique(d[:, 0, :, 1], axis=0)) > 1  # rows of a frame move differently
    mu = s.expected()
    for t in range(6):
        for z in range(2):
            for i in range(42):
                dy, dx = d[t, z, i]
                np.testing.assert_array_equal(s.observed[t, z, i], mu[t, z, i + dy, dx : dx + 36])
    # The integer view puts every observed value back where it came from.
    back = Sequence.create("ndarray", s.observed).apply_displacements(d, frame_shape=(2, 48, 40))
    for t, frame in enumerate(np.asarray(back)):
        seen = np.isfinite(frame)
        assert seen.mean() > 0.5
        # Rows landing on the same place are averaged: equal up to rounding.
        np.testing.assert_allclose(frame[seen], mu[t][seen], rtol=1e-12)


def test_rowwise_truth_is_per_observed_row():
    s = simulate_movie(num_frames=2, frame_shape=(32, 32), cells_per_plane=1, motion="rowwise")
    with pytest.raises(ValueError, match="row"):
        s.motion.field()
    with pytest.raises(ValueError, match="row"):
        s.motion.evaluate(0, 0, 1.0, 1.0)


# ---------------------------------------------------------------- hypothesis


@given(
    kind=st.sampled_from(["rigid", "nonrigid", "rowwise"]),
    rows=st.integers(24, 48),
    cols=st.integers(24, 48),
    planes=st.integers(1, 2),
    frames=st.integers(1, 5),
    ay=st.floats(0.0, 4.0),
    ax=st.floats(0.0, 4.0),
    seed=st.integers(0, 1000),
)
def test_shapes_ranges_and_exactness(kind, rows, cols, planes, frames, ay, ax, seed):
    s = simulate_movie(
        num_frames=frames, num_planes=planes, frame_shape=(rows, cols), num_channels=1,
        cells_per_plane=1, motion=kind, motion_amplitude=(ay, ax), seed=seed, **QUIET,
    )  # fmt: skip
    m = s.motion
    warp = np.abs(m.weights).sum(axis=2).max() if m.weights.size else 0.0
    margin = [math.ceil(2 * (a + (min(2.0, _limit(rows, cols)) if kind == "nonrigid" else 0)))
              for a in (ay, ax)]  # fmt: skip
    assert s.observed.shape == (frames, planes, rows - margin[0], cols - margin[1], 1)
    d = m.displacements
    lead = d.reshape(-1, 2)
    assert lead.min() >= 0 and np.all(
        lead.max(axis=0) <= np.array([2 * ay, 2 * ax]) + 2 * warp + 0.5
    )
    if kind == "rigid" and frames * planes > 1:
        for axis, a in enumerate((ay, ax)):
            assert (
                lead[:, axis].max() == pytest.approx(2 * a) or a == 0 or np.ptp(lead[:, axis]) == 0
            )
    mu = s.expected()
    yy, xx = np.mgrid[0 : s.observed.shape[2], 0 : s.observed.shape[3]].astype(float)
    t, z = frames - 1, planes - 1
    if kind == "rowwise":
        ii = np.arange(yy.shape[0])[:, None] + d[t, z, :, 0:1]
        jj = np.arange(yy.shape[1])[None, :] + d[t, z, :, 1:2]
        np.testing.assert_array_equal(s.observed[t, z, :, :, 0], mu[t, z, :, :, 0][ii, jj])
        return
    if kind == "rigid":
        qy, qx = yy + d[t, z, 0], xx + d[t, z, 1]
    else:  # the scene point solves q − d(q) = p
        qy, qx = yy + d[t, z, 0], xx + d[t, z, 1]
        for _ in range(200):
            f = m.evaluate(t, z, qy, qx)
            qy, qx = yy + f[..., 0], xx + f[..., 1]
        f = m.evaluate(t, z, qy, qx)
        np.testing.assert_allclose(qy - f[..., 0], yy, atol=1e-8)
    ref = scipy.ndimage.map_coordinates(mu[t, z, :, :, 0], [qy, qx], order=3, mode="mirror")
    np.testing.assert_allclose(s.observed[t, z, :, :, 0], ref, rtol=0, atol=1e-7)


def _limit(rows: int, cols: int) -> float:
    return 1.0 / (4 * math.sqrt(2) * math.pi * math.hypot(1 / rows, 1 / cols))


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ({"motion": "wobble"}, "motion"),
        ({"motion": "rigid", "max_displacement": (1, 1)}, "max_displacement"),
        ({"motion": "rigid", "motion_amplitude": -1.0}, "motion_amplitude"),
        ({"motion": "rigid", "motion_amplitude": (1.0, float("nan"))}, "motion_amplitude"),
        ({"motion": "rigid", "motion_amplitude": "big"}, "motion_amplitude"),
        ({"motion": "rigid", "motion_amplitude": 16.0}, "motion_amplitude"),
        ({"motion": "nonrigid", "nonrigid_amplitude": -0.5}, "nonrigid_amplitude"),
        ({"motion": "nonrigid", "nonrigid_amplitude": 5.0}, "nonrigid_amplitude"),
    ],
)
def test_bad_motion_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        simulate_movie(num_frames=2, frame_shape=(32, 32), cells_per_plane=1, **args)


# ---------------------------------------------------------------- scores


def test_rigid_rms_error_cases():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 10, (50, 2, 2))
    noise = rng.normal(0, 0.1, true.shape)
    noise -= noise.mean(axis=0)
    expected = np.sqrt(np.mean(np.sum(noise**2, axis=-1)))
    offsets = np.array([[3.0, -1.0], [0.5, 7.0]])  # one per plane
    assert rigid_rms_error(true + noise + offsets, true) == pytest.approx(expected)
    assert rigid_rms_error(true + offsets, true, remove_offset=False) > 3
    assert rigid_rms_error(true[:, 0] + 1.0, true[:, :1]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="estimated"):
        rigid_rms_error(np.zeros((5, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="match"):
        rigid_rms_error(np.zeros((5, 2)), np.zeros((6, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        rigid_rms_error(np.full((5, 2), np.nan), np.zeros((5, 2)))


def test_row_exact_fraction_cases():
    true = np.random.default_rng(1).integers(0, 8, (10, 2, 16, 2))
    est = true + np.array([2, -3])
    assert row_exact_fraction(est, true) == 1.0
    assert row_exact_fraction(est, true, remove_offset=False) == 0.0
    est[0, 0, :4, 1] += 1  # 4 of 320 rows wrong
    assert row_exact_fraction(est + 0.2, true) == pytest.approx(1 - 4 / 320)
    # Each plane has its own offset.
    est2 = true.copy()
    est2[:, 1] += 5
    assert row_exact_fraction(est2, true) == 1.0


def test_block_rms_error_fits_the_reference_offset():
    s = simulate_movie(
        num_frames=10, frame_shape=(96, 96), cells_per_plane=2,
        motion="nonrigid", motion_amplitude=3.0, seed=2,
    )  # fmt: skip
    m = s.motion
    cy = cx = np.array([16.0, 48.0, 80.0]) - 4.0
    est = m.block_means(cy, cx, (32, 32), offset=(4.0, 3.0))
    assert block_rms_error(est, m, cy, cx, block_shape=(32, 32)) < 1e-8
    # Against the truth at the wrong place, the field's variation shows.
    assert block_rms_error(est, m, cy, cx, block_shape=(32, 32), remove_offset=False) > 1.0
    noise = np.random.default_rng(3).normal(0, 0.2, est.shape)
    noise -= noise.reshape(-1, 2).mean(axis=0)
    err = block_rms_error(est + noise, m, cy, cx, block_shape=(32, 32))
    assert err == pytest.approx(np.sqrt(np.mean(np.sum(noise**2, axis=-1))), rel=0.02)
    # A plane-less estimate of frames 4..9.
    part = block_rms_error(est[4:, 0], m, cy, cx, block_shape=(32, 32), start=4)
    assert part < 1e-8
    with pytest.raises(ValueError, match="estimated"):
        block_rms_error(est[:, :, :2], m, cy, cx)
    with pytest.raises(ValueError, match="MotionTruth"):
        block_rms_error(est, est, cy, cx)


def test_rigid_truth_scores_as_blocks():
    s = simulate_movie(num_frames=4, frame_shape=(48, 48), cells_per_plane=2, motion="rigid")
    blocks = np.broadcast_to(s.motion.displacements[:, :, None, None, :] - 1.0, (4, 1, 2, 2, 2))
    assert block_rms_error(blocks, s.motion, [10.0, 30.0], [10.0, 30.0]) < 1e-10


def test_gradient_energy_and_sharpness():
    ramp = np.tile(np.arange(5.0), (4, 1))  # dx = 1 everywhere
    assert gradient_energy(ramp, normalize=False) == 1.0
    assert gradient_energy(ramp) == pytest.approx(1.0 / 4.0)  # mean 2
    with_nan = ramp.copy()
    with_nan[0, 0] = np.nan
    assert gradient_energy(with_nan, normalize=False) == 1.0
    with pytest.raises(ValueError, match="axes"):
        gradient_energy(np.ones(4))
    with pytest.raises(ValueError, match="finite"):
        gradient_energy(np.full((3, 3), np.nan))
    s = simulate_movie(
        num_frames=30, frame_shape=(64, 64), cells_per_plane=6,
        motion="rigid", motion_amplitude=4.0, seed=1,
    )  # fmt: skip
    # Moving frames blur the mean image; correcting with the true shifts sharpens it.
    d = np.rint(s.motion.displacements).astype(int)
    fixed = Sequence.create("ndarray", s.observed).apply_displacements(d)
    raw = mean_image_sharpness(s.observed, border=4)
    corrected = mean_image_sharpness(fixed, border=8)
    assert corrected > 1.3 * raw
    assert mean_image_sharpness(Sequence.create("ndarray", s.observed), border=4) == raw
    with pytest.raises(ValueError, match="channel"):
        mean_image_sharpness(s.observed, channel=2)
    with pytest.raises(ValueError, match="border"):
        mean_image_sharpness(s.observed, border=40)
    with pytest.raises(ValueError, match="no frame"):
        mean_image_sharpness(s.observed[:0])


# ---------------------------------------------------------------- the examples


def test_uncorrected_rowwise_example(tmp_path):
    example = example_uncorrected("rowwise")
    assert example.kind == "rowwise" and example.channel_names == ["GCaMP", "tdTomato"]
    seq = example.sequence()
    assert seq.shape == (120, 2, 128, 128, 2)
    assert example.truth.displacements.shape == (120, 2, 128, 2)
    sim = example_module._simulate_motion("rowwise")
    np.testing.assert_array_equal(np.asarray(seq), sim.observed)
    np.testing.assert_array_equal(example.truth.displacements, sim.motion.displacements)
    again = example_uncorrected("rowwise")  # from the cache
    assert again.path == example.path
    with pytest.raises(ValueError, match="kind"):
        example_uncorrected("shaky")
    with pytest.raises(ValueError, match="motion truth"):
        read_motion_truth(example_module.example_hdf5())


def test_uncorrected_nonrigid_example_round_trips(monkeypatch, tmp_path):
    # A short version, to keep the test fast; the real one has 120 frames. It
    # is built in a cache of its own: the shared cache may hold the real one
    # (the demo builds it), and must never receive this short one.
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path))
    monkeypatch.setitem(example_module._MOTION_SCENE, "num_frames", 6)
    example = example_uncorrected("nonrigid")
    sim = example_module._simulate_motion("nonrigid")
    truth = example.truth
    assert truth.kind == "nonrigid" and truth.scene_shape == (2, 140, 140)
    for name in ("displacements", "wavevectors", "phases", "weights"):
        np.testing.assert_array_equal(getattr(truth, name), getattr(sim.motion, name))
    np.testing.assert_array_equal(truth.field(0, 2), sim.motion.field(0, 2))
    assert example.frame_rate == 15.0


def test_motion_examples_do_not_touch_the_example_dataset():
    # 2 since the example's data files carry their acquisition metadata (not the motion examples)
    assert example_module.EXAMPLE_VERSION == 2
    assert example_module._FOLDER == "example-v2"
    for kind, params in example_module._MOTION_PARAMS.items():
        assert kind in ("rigid", "nonrigid", "rowwise") and "seed" in params

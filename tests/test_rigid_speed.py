"""The batched rigid registration engine (BatchRegistrar) and the kernels it shares.

``RigidRegistration2D`` registers blocks of frames on the per-frame kernels of
``OnlineRegistrar`` (``kernels/online.py``), run over a block in parallel. The
block kernels are compared with the per-frame ones and with numpy, the engine
with ``OnlineRegistrar`` and with known shifts, and its memory is checked to
depend on the block size, not on the number of frames.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import fourier_shift, gaussian_filter

import sima_fast as sima
from sima_fast.kernels import motion as mkern
from sima_fast.kernels import online as kern
from sima_fast.registration import BatchRegistrar, RigidRegistrar


def _scene(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.standard_normal((n, n)), 2.0, mode="wrap") * 100 + 500


def _moved(scene: np.ndarray, shifts: np.ndarray, crop: int, noise: float, seed: int = 1):
    """Frames of ``scene`` moved by ``shifts`` (exact Fourier shifts), cropped, with noise."""
    rng = np.random.default_rng(seed)
    spec = np.fft.fft2(scene)
    pad = (scene.shape[0] - crop) // 2
    frames = np.stack(
        [
            np.fft.ifft2(fourier_shift(spec, s)).real[pad : pad + crop, pad : pad + crop]
            for s in shifts
        ]
    )
    return frames + noise * frames.std() * rng.standard_normal(frames.shape)


# -- block kernels against the per-frame ones ---------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 4),
    shape=st.tuples(st.integers(2, 12), st.integers(2, 12)),
    dtype=st.sampled_from(["uint16", "float32", "float64"]),
    nan=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_taper_images_matches_taper_plane(n, shape, dtype, nan, seed):
    rng = np.random.default_rng(seed)
    images = (rng.random((n, *shape)) * 1000).astype(dtype)
    if nan and dtype != "uint16":
        images[rng.random(images.shape) < 0.2] = np.nan
    wy = kern.taper_window(shape[0], 2.5)
    wx = kern.taper_window(shape[1], 1.5)
    got = kern.taper_images(images, wy, wx, np.empty((n, *shape), np.float32))
    for i in range(n):
        want = np.empty(shape, np.float32)
        kern.taper_plane(images[i][None, :, :, None], 0, 0, wy, wx, want)
        np.testing.assert_array_equal(got[i], want)


def test_whiten_cross_and_peaks_of_a_block_match_per_frame():
    rng = np.random.default_rng(2)
    spectra = (rng.standard_normal((3, 8, 5)) + 1j * rng.standard_normal((3, 8, 5))).astype(
        np.complex64
    )
    spectra[1, 2, 3] = 0.0
    ref = (rng.standard_normal((8, 5)) + 1j * rng.standard_normal((8, 5))).astype(np.complex64)
    want = spectra.copy()
    for s in want:
        kern.whiten_cross(s, ref)
    kern.whiten_cross_images(spectra, ref)
    np.testing.assert_array_equal(spectra, want)
    maps = rng.random((3, 9, 10))
    peaks = kern.correlation_peaks(maps, 3, 4, 0, np.empty((3, 3)))
    for m, p in zip(maps, peaks):
        assert tuple(p) == kern.correlation_peak(m, 3, 4, 0)


def test_shift_images_matches_shift_planes():
    rng = np.random.default_rng(3)
    images = rng.random((4, 9, 11))
    images[2, 4, 5] = np.nan
    shifts = np.array([[0.0, 0.0], [1.25, -2.5], [-0.5, 0.75], [np.nan, 1.0]])
    got = kern.shift_images(images, shifts, np.empty(images.shape), np.nan)
    for i in range(4):
        want = np.empty((1, 9, 11, 1))
        kern.shift_planes(images[i][None, :, :, None], shifts[i : i + 1], want, np.nan)
        np.testing.assert_array_equal(got[i], want[0, :, :, 0])


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 5),
    shape=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    frac=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_mean_finite_is_nanmean(n, shape, frac, seed):
    rng = np.random.default_rng(seed)
    frames = rng.standard_normal((n, *shape))
    frames[rng.random(frames.shape) < frac] = np.nan
    got = mkern.mean_finite(frames, np.empty(shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        want = np.nanmean(frames, axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# -- the engine ---------------------------------------------------------------------------------


def test_batch_registrar_finds_subpixel_shifts():
    shifts = np.random.default_rng(4).uniform(-6, 6, (12, 2))
    scene = _scene(96)
    frames = _moved(scene, shifts, 64, noise=0.05)
    ref = scene[16:80, 16:80]
    for dtype in ("float32", "float64"):
        d = BatchRegistrar(ref, max_shift=8).register(frames.astype(dtype))
        assert d.shape == (12, 3)
        err = d[:, :2] + shifts  # frame pixel p belongs at p + d: d undoes the motion
        assert np.sqrt((err**2).mean()) < 0.1
        assert (d[:, 2] > 0.2).all() and (d[:, 2] <= 1.0 + 1e-6).all()


def test_batch_registrar_agrees_with_online_registrar():
    shifts = np.random.default_rng(5).uniform(-5, 5, (6, 2))
    scene = _scene(96, seed=1)
    frames = np.round(_moved(scene, shifts, 64, noise=0.02)).astype(np.uint16)
    ref = scene[16:80, 16:80]
    batch = BatchRegistrar(ref, taper=16.0, max_shift=10, smooth_sigma=1.5).register(frames)
    online = sima.OnlineRegistrar(
        ref, dtype="uint16", taper=16.0, max_displacement=10, smooth_sigma=1.5, warmup=False
    )
    for f, d in zip(frames, batch):
        np.testing.assert_allclose(online.register(f)[0], d[:2], atol=1e-4)


def test_batch_registrar_limits_blank_frames_and_errors():
    scene = _scene(64, seed=2)
    ref = scene[8:56, 8:56]
    frames = _moved(scene, np.array([[3.3, -2.2], [0.0, 0.0]]), 48, noise=0.0)
    frames[1] = np.nan  # nothing observed
    d = BatchRegistrar(ref, max_shift=(1.5, 1.0)).register(frames)
    assert np.abs(d[0, 0]) <= 1.5 and np.abs(d[0, 1]) <= 1.0
    assert d[1].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="frames must be"):
        BatchRegistrar(ref).register(np.zeros((2, 48, 47)))
    with pytest.raises(ValueError, match="constant"):
        BatchRegistrar(np.ones((8, 8)))
    with pytest.raises(ValueError, match="no finite"):
        BatchRegistrar(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        BatchRegistrar(np.ones(8))
    with pytest.raises(ValueError, match="taper"):
        BatchRegistrar(ref, taper=-1.0)


def test_batch_registrar_memory_is_bounded_by_the_block():
    scene = _scene(96, seed=3)
    ref = scene[16:80, 16:80]
    frames = _moved(scene, np.zeros((64, 2)), 64, noise=0.1).astype(np.float32)
    reg = BatchRegistrar(ref)
    reg.BLOCK = 8
    reg.register(frames[:8])  # buffers made, FFTs planned

    def peak(n: int) -> int:
        tracemalloc.start()
        reg.register(frames[:n])
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return size

    small, large = peak(16), peak(64)
    assert large < small + 64 * 3 * 8 + 4096  # only the (n, 3) result grows with n
    assert reg._scratch[0][0].shape[0] == 8


# -- the strategy -------------------------------------------------------------------------------


def test_rigid_strategy_engines_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path))
    shifts = np.random.default_rng(6).uniform(-8, 8, (16, 2))
    frames = _moved(_scene(128, seed=4), shifts, 96, noise=0.05)
    frames[3, 10:14] = np.nan  # unobserved rows
    seq = sima.Sequence.create("ndarray", frames[:, None, :, :, None])
    fast = sima.motion.RigidRegistration2D()
    assert isinstance(fast._registrar(frames[0]), BatchRegistrar)
    slow = sima.motion.RigidRegistration2D(recentre=True)
    assert isinstance(slow._registrar(frames[0]), RigidRegistrar)
    results = []
    for strategy in (fast, slow):
        (d,) = strategy.estimate([seq])
        err = d[:, 0] + shifts
        err -= err.mean(axis=0)
        assert np.sqrt((err**2).mean()) < 0.1
        results.append(d[:, 0] - d[:, 0].mean(axis=0))
    np.testing.assert_allclose(results[0], results[1], atol=0.15)


@settings(max_examples=6, deadline=None)
@given(
    size=st.sampled_from([48, 64, 80]),
    dtype=st.sampled_from(["uint16", "float32", "float64"]),
    seed=st.integers(0, 1000),
)
def test_rigid_strategy_accuracy_over_shapes(size, dtype, seed):
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(-size / 8, size / 8, (10, 2))
    frames = _moved(_scene(size + 32, seed=seed), shifts, size, noise=0.05, seed=seed)
    frames = (frames - frames.min() + 10).astype(dtype)
    seq = sima.Sequence.create("ndarray", frames[:, None, :, :, None])
    (d,) = sima.motion.RigidRegistration2D().estimate([seq])
    err = d[:, 0] + shifts
    err -= err.mean(axis=0)
    assert np.sqrt((err**2).mean()) < 0.1

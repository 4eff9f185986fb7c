"""Tests for the non-rigid (piecewise-rigid) strategy, sima_fast.motion.nonrigid.

Movies are simulated here: a textured scene (smoothed noise, cell-sized
features) is sampled through a known smooth displacement field per frame (a
random translation plus slow sinusoidal bending), with noise. The true block
shifts are the field's values at the block centres, in the displacement
convention (frame content at ``q`` belongs at ``q + d``): with the frame made
as ``frame(q) = scene(q + e(q))``, the shift at ``p`` solves ``d = e(p - d)``.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter, map_coordinates

import sima_fast as sima
from sima_fast import Sequence
from sima_fast.kernels.warp import block_cross_power, gather_blocks
from sima_fast.motion.nonrigid import NonRigid2D, block_grid
from sima_fast.sequence import WarpedSequence

MARGIN = 16


class Motion:
    """A smooth random field per frame: translation plus sinusoidal bending."""

    def __init__(self, T, shape, amp, rigid, rng):
        self.Y, self.X = shape
        self.shift = rng.uniform(-rigid, rigid, (T, 2))
        self.phase = rng.uniform(0, 2 * np.pi, (T, 4))
        self.amp = amp
        self.k = 2 * np.pi / (2.0 * max(shape))  # wavelength: twice the frame

    def __call__(self, t, y, x):
        p = self.phase[t]
        ey = self.shift[t, 0] + self.amp * np.sin(self.k * y + p[0]) * np.cos(self.k * x + p[1])
        ex = self.shift[t, 1] + self.amp * np.cos(self.k * y + p[2]) * np.sin(self.k * x + p[3])
        return ey, ex

    def truth(self, t, py, px):
        """Shift d at (py, px) with frame(p - d) = scene(p): solves d = e(p - d)."""
        dy = np.zeros_like(py, dtype=float)
        dx = np.zeros_like(px, dtype=float)
        for _ in range(50):
            dy, dx = self(t, py - dy, px - dx)
        return np.stack([dy, dx], axis=-1)


def simulate(T=16, shape=(96, 96), planes=1, amp=1.0, rigid=3.0, noise=0.03, seed=0):
    """Return (movie (T, Z, Y, X, 1), motions per plane, scenes (Z, Y, X))."""
    rng = np.random.default_rng(seed)
    Y, X = shape
    yy, xx = np.mgrid[:Y, :X].astype(float)
    movie = np.empty((T, planes, Y, X, 1))
    motions, scenes = [], []
    for z in range(planes):
        scene = gaussian_filter(rng.normal(size=(Y + 2 * MARGIN, X + 2 * MARGIN)), 1.0)
        scene = (scene - scene.min()) / np.ptp(scene)
        motion = Motion(T, shape, amp, rigid, rng)
        for t in range(T):
            ey, ex = motion(t, yy, xx)
            frame = map_coordinates(scene, [yy + MARGIN + ey, xx + MARGIN + ex], order=3)
            movie[t, z, :, :, 0] = frame + noise * rng.normal(size=frame.shape)
        motions.append(motion)
        scenes.append(scene[MARGIN:-MARGIN, MARGIN:-MARGIN])
    return movie, motions, np.stack(scenes)


def block_errors(strategy, displacements, motions, shape, block):
    """(T, Z, Gy, Gx, 2) estimated minus true shifts at the block centres, and the truth."""
    cy = block_grid(shape[0], block, strategy.overlap) + (block - 1) / 2
    cx = block_grid(shape[1], block, strategy.overlap) + (block - 1) / 2
    # estimate() shifted every component to a minimum of 0 and the grid with it
    low = np.array([cy[0] - strategy.grid[0][0], cx[0] - strategy.grid[1][0]])
    raw = displacements + low
    py, px = np.meshgrid(cy, cx, indexing="ij")
    T, Z = raw.shape[:2]
    truth = np.stack([np.stack([motions[z].truth(t, py, px) for z in range(Z)]) for t in range(T)])
    return raw - truth, truth


def rms(err):
    return float(np.sqrt((err**2).sum(-1).mean()))


# ---------------------------------------------------------------------------
# helpers and kernels
# ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(8, 600),
    block=st.integers(8, 600),
    overlap=st.floats(0, 0.95),
)
@example(length=9, block=8, overlap=0.9375)  # a step under a pixel repeated a start
def test_block_grid_covers_the_frame_with_the_overlap(length, block, overlap):
    block = min(block, length)
    starts = block_grid(length, block, overlap)
    assert starts[0] == 0 and starts[-1] == length - block
    assert np.all(np.diff(starts) > 0)
    # neighbours share at least `overlap` of a block (up to the rounding of starts)
    assert np.all(np.diff(starts) <= block * (1 - overlap) + 1)


def gather_reference(frames, offsets, starts, taper):
    n, B = len(frames), len(starts)
    by, bx = taper.shape
    out = np.zeros((n, B, by, bx))
    ny, nx = frames.shape[1:]
    for f in range(n):
        for b in range(B):
            window = np.full((by, bx), np.nan)
            for i in range(by):
                for j in range(bx):
                    y = starts[b][0] - offsets[f][0] + i
                    x = starts[b][1] - offsets[f][1] + j
                    if 0 <= y < ny and 0 <= x < nx:
                        window[i, j] = frames[f, y, x]
            ok = np.isfinite(window)
            mean = window[ok].mean() if ok.any() else 0.0
            out[f, b] = np.where(ok, (window - mean) * taper, 0.0)
    return out


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 3),
    shape=st.tuples(st.integers(3, 12), st.integers(3, 12)),
    block=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    dtype=st.sampled_from(["uint16", "float32", "float64"]),
    nan_row=st.integers(-1, 11),
    seed=st.integers(0, 2**31 - 1),
)
def test_gather_blocks_matches_the_loop(n, shape, block, dtype, nan_row, seed):
    rng = np.random.default_rng(seed)
    frames = (rng.random((n, *shape)) * 100).astype(dtype)
    if dtype != "uint16" and 0 <= nan_row < shape[0]:
        frames[0, nan_row] = np.nan
    starts = rng.integers(0, 8, (3, 2))
    offsets = rng.integers(-4, 5, (n, 2))
    taper = rng.random(block)
    out = gather_blocks(frames, offsets, starts, taper, np.empty((n, 3, *block)))
    np.testing.assert_allclose(out, gather_reference(frames, offsets, starts, taper), atol=1e-9)


def test_gather_blocks_errors():
    frames = np.zeros((2, 5, 5))
    with pytest.raises(ValueError, match="offsets"):
        gather_blocks(
            frames, np.zeros((3, 2)), np.zeros((1, 2)), np.ones((2, 2)), np.empty((2, 1, 2, 2))
        )
    with pytest.raises(TypeError, match="out must be"):
        gather_blocks(
            frames, np.zeros((2, 2)), np.zeros((1, 2)), np.ones((2, 2)), np.empty(3, np.int32)
        )
    with pytest.raises(ValueError, match="out must have shape"):
        gather_blocks(
            frames, np.zeros((2, 2)), np.zeros((1, 2)), np.ones((2, 2)), np.empty((2, 1, 3, 2))
        )


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 3),
    nb=st.integers(1, 4),
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    dtype=st.sampled_from(["complex64", "complex128"]),
    zero_block=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_block_cross_power_matches_numpy(n, nb, shape, dtype, zero_block, seed):
    rng = np.random.default_rng(seed)
    spectra = (rng.normal(size=(n, nb, *shape)) + 1j * rng.normal(size=(n, nb, *shape))).astype(
        dtype
    )
    if zero_block:
        spectra[0, 0] = 0  # an empty block: no phase, all zeros
    reference = (rng.normal(size=(nb, *shape)) + 1j * rng.normal(size=(nb, *shape))).astype(dtype)
    mag = np.abs(spectra.astype(np.complex128))
    floor = 1e-3 * mag.max(axis=(2, 3), keepdims=True) + 1e-30
    expected = reference[None] * np.conj(spectra) / (mag + floor)
    out = block_cross_power(spectra, reference, 1e-3)
    assert out is spectra
    tol = 1e-5 if dtype == "complex64" else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    if zero_block:
        assert not np.any(out[0, 0])
    with pytest.raises(ValueError, match="complex"):
        block_cross_power(spectra.real.copy(), reference)
    with pytest.raises(ValueError, match="reference"):
        block_cross_power(spectra, reference[..., None])


# ---------------------------------------------------------------------------
# accuracy on simulated non-rigid motion
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "block"), [((96, 96), 32), ((128, 112), 64)])
def test_block_shifts_against_the_truth_with_the_true_reference(shape, block):
    movie, motions, scenes = simulate(T=12, shape=shape, amp=1.0, seed=block)
    strategy = NonRigid2D(block_size=block, max_block_displacement=5, reference=scenes[0])
    d = strategy.estimate([Sequence.create("ndarray", movie)])[0]
    assert d.dtype == np.float64 and d.shape[:2] == (12, 1) and d.shape[-1] == 2
    assert d.shape[2:4] == tuple(len(c) for c in strategy.grid)
    starts = [block_grid(n, block, strategy.overlap) for n in shape]
    for centres, first in zip(strategy.block_centres, starts):
        np.testing.assert_array_equal(centres, first + (block - 1) / 2)
    assert d.reshape(-1, 2).min(axis=0).tolist() == [0.0, 0.0]
    err, truth = block_errors(strategy, d, motions, shape, block)
    assert rms(err) <= 0.3, rms(err)
    assert np.abs(err).max() < 1.0
    # a rigid model would miss the bending: the blocks' own motion is measured
    assert rms(err) < 0.5 * rms(truth - truth.mean(axis=(2, 3), keepdims=True))


def test_block_shifts_with_a_reference_built_from_the_data():
    movie, motions, _ = simulate(T=24, amp=1.0, seed=5)
    strategy = NonRigid2D(block_size=32, max_block_displacement=5, reference_frames=24)
    d = strategy.estimate([Sequence.create("ndarray", movie)])[0]
    err, _ = block_errors(strategy, d, motions, (96, 96), 32)
    # a reference built from the data has a shape of its own (the mean of the
    # frames' bending): shifts are relative to it, the same for every frame
    relative = err - err.mean(axis=0)
    assert rms(relative) <= 0.3, rms(relative)
    assert strategy.reference_image.shape == (1, 96, 96)


def test_correct_saves_loads_and_extracts_and_sharpens_the_mean(tmp_path):
    from sima_fast.ROI import ROI, ROIList

    movie, _, scenes = simulate(T=10, shape=(64, 64), planes=2, amp=1.0, seed=2)
    other = 2 * movie + 1  # a second channel moving with the first
    data = np.concatenate([movie, other], axis=-1).astype(np.float32)
    seqs = [Sequence.create("ndarray", data[:6]), Sequence.create("ndarray", data[6:])]
    strategy = NonRigid2D(block_size=32, max_block_displacement=4, reference=scenes)
    # trim_criterion 0.9: sima_fast.motion.base counts a sub-pixel field as
    # observing a whole row only when every frame covers it entirely
    ds = strategy.correct(seqs, str(tmp_path / "nr"), correction_channels=[0], trim_criterion=0.9)
    assert all(isinstance(s.base, WarpedSequence) for s in ds.sequences)
    saved = json.loads((tmp_path / "nr.sima" / "metadata.json").read_text())
    assert saved["sequences"][0]["base"]["fmt"] == "warped"
    again = sima.ImagingDataset.load(str(tmp_path / "nr.sima"))
    frames = np.concatenate([np.asarray(s) for s in again.sequences])
    np.testing.assert_array_equal(frames, np.concatenate([np.asarray(s) for s in ds.sequences]))
    # both channels moved by one field
    np.testing.assert_allclose(frames[..., 1], 2 * frames[..., 0] + 1, rtol=1e-4, atol=1e-4)
    # the corrected movie, before trimming, matches the scene far better than the raw one
    full = np.concatenate([np.asarray(s.base) for s in ds.sequences])
    Yc, Xc = full.shape[2:4]
    for z in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # pixels no frame observes
            corrected = np.nanmean(full[:, z, :, :, 0], axis=0)
        raw = data[:, z, :, :, 0].mean(axis=0)
        ok = np.isfinite(corrected)
        grid = strategy.grid
        assert grid[0][0] >= 15.5 - 1e-9  # the centres moved with the normalisation
        off = (round(grid[0][0] - 15.5), round(grid[1][0] - 15.5))
        scene = np.full((Yc, Xc), np.nan)
        h, w = min(64, Yc - off[0]), min(64, Xc - off[1])
        scene[off[0] : off[0] + h, off[1] : off[1] + w] = scenes[z, :h, :w]
        ok &= np.isfinite(scene)
        c_corr = np.corrcoef(corrected[ok], scene[ok])[0, 1]
        r = np.corrcoef(raw[:h, :w].ravel(), scenes[z, :h, :w].ravel())[0, 1]
        assert c_corr > 0.9 and c_corr > r + 0.2, (c_corr, r)
    mask = np.zeros((2, *frames.shape[2:4]), bool)
    mask[0, 10:20, 10:20] = True
    signals = again.extract(ROIList([ROI(mask=mask)]), signal_channel=1, label="cells")
    assert signals["raw"][0].shape == (1, 6) and np.isfinite(signals["raw"][0]).all()


def test_estimate_reads_chunks_and_planes_independently(monkeypatch):
    import sima_fast.motion.base as base

    movie, motions, scenes = simulate(T=8, shape=(64, 64), planes=2, amp=0.5, seed=9)
    seq = Sequence.create("ndarray", movie)
    strategy = NonRigid2D(block_size=32, max_block_displacement=4, reference=scenes)
    whole = strategy.estimate([seq])[0]
    monkeypatch.setattr(base, "ESTIMATION_CHUNK_BYTES", 64 * 64 * 2 * 8 * 3)  # 3 frames
    chunked = strategy.estimate([seq])[0]
    np.testing.assert_allclose(chunked, whole, atol=1e-9)
    err, _ = block_errors(strategy, whole, motions, (64, 64), 32)
    assert rms(err) <= 0.3


def test_a_still_movie_with_nan_rows_does_not_move():
    rng = np.random.default_rng(1)
    frame = gaussian_filter(rng.normal(size=(64, 64)), 1.0)
    movie = np.repeat(frame[None, None, :, :, None], 5, axis=0)
    movie[2, 0, 30:33] = np.nan
    d = NonRigid2D(block_size=32, reference_frames=5).estimate([Sequence.create("ndarray", movie)])
    clean = d[0][[0, 1, 3, 4]]
    np.testing.assert_allclose(clean, clean[:1].repeat(4, axis=0), atol=1e-6)
    spread = clean[0].reshape(-1, 2).max(axis=0) - clean[0].reshape(-1, 2).min(axis=0)
    assert np.all(spread < 0.02)  # one shift for every block of a still frame
    assert np.abs(d[0][2] - clean[0]).max() < 0.1  # the NaN rows bias a block a little


# ---------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------


def test_bad_parameters_name_the_argument():
    with pytest.raises(TypeError, match="block_size"):
        NonRigid2D(block_size="big")
    with pytest.raises(TypeError, match="block_size"):
        NonRigid2D(block_size=(32, 32, 32))
    with pytest.raises(ValueError, match="block_size"):
        NonRigid2D(block_size=4)
    with pytest.raises(ValueError, match="overlap"):
        NonRigid2D(overlap=-0.1)
    with pytest.raises(ValueError, match="overlap"):
        NonRigid2D(overlap=1.0)
    with pytest.raises(TypeError, match="overlap"):
        NonRigid2D(overlap="half")
    with pytest.raises(ValueError, match="max_block_displacement"):
        NonRigid2D(max_block_displacement=-1)
    with pytest.raises(TypeError, match="max_block_displacement"):
        NonRigid2D(max_block_displacement=None)
    with pytest.raises(TypeError, match="max_block_displacement"):
        NonRigid2D(max_block_displacement=[1, 2, 3])
    with pytest.raises(ValueError, match="max_displacement"):
        NonRigid2D(max_displacement=-2)
    with pytest.raises(ValueError, match="smooth_sigma"):
        NonRigid2D(smooth_sigma=-1)
    with pytest.raises(ValueError, match="snr_threshold"):
        NonRigid2D(snr_threshold=-1)
    with pytest.raises(ValueError, match="n_processes"):
        NonRigid2D(n_processes=0)
    with pytest.raises(ValueError, match="reference_frames"):
        NonRigid2D(reference_frames=0)
    with pytest.raises(TypeError, match="reference"):
        NonRigid2D(reference="image")


def test_parameters_that_do_not_fit_the_data(tmp_path):
    seq = Sequence.create("ndarray", np.random.default_rng(0).random((3, 1, 40, 48, 1)))
    with pytest.raises(ValueError, match="block_size"):
        NonRigid2D(block_size=64).estimate([seq])
    with pytest.raises(ValueError, match="block_size"):
        NonRigid2D(block_size=(32, 50)).estimate([seq])
    with pytest.raises(ValueError, match="max_block_displacement"):
        NonRigid2D(block_size=16, max_block_displacement=7).estimate([seq])
    with pytest.raises(ValueError, match="max_displacement"):
        NonRigid2D(block_size=16, max_displacement=45).estimate([seq])
    with pytest.raises(ValueError, match="reference"):
        NonRigid2D(block_size=16, reference=np.zeros((40, 40))).estimate([seq])
    with pytest.raises(ValueError, match="estimate first"):
        NonRigid2D().corrected_sequence(seq, np.zeros((3, 1, 1, 1, 2)), (1, 40, 48))
    (tmp_path / "exists.sima").mkdir()
    with pytest.raises(FileExistsError):
        NonRigid2D(block_size=16).correct([seq], str(tmp_path / "exists.sima"))
    with pytest.raises(ValueError, match="correction_channels"):
        NonRigid2D(block_size=16).correct([seq], None, correction_channels=[3])

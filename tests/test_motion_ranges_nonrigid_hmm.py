"""NonRigid2D and HiddenMarkov2D on a Dask cluster, one task per time range.

NonRigid2D registers every frame against references fixed before any frame
is read, so its cluster result equals the local one exactly. HiddenMarkov2D
fits its model (reference, noise model, transitions) on a sample first and
decodes each range against it, its chain starting afresh at the range's first
frame: the result is compared with the truth and with the local result, row
by row. The movies are simulated here (line-scanned blobs for the HMM,
textured frames moved by whole pixels for the blocks).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import sima_fast as sima
from sima_fast import distributed as sd
from sima_fast.motion import hmm as hmm_module
from sima_fast.motion.hmm import HiddenMarkov2D
from sima_fast.motion.nonrigid import NonRigid2D

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """A two-worker, in-process cluster (threads), started once for the module."""
    import dask
    from distributed import Client, LocalCluster

    with (
        dask.config.set(sd.DASK_CONFIG),
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def split(monkeypatch):
    """Plan several ranges per sequence even for these small movies."""
    monkeypatch.setattr(sd, "MIN_TASK_BYTES", 1)


def blobs(H, W, rng):
    """A smooth background with cell-like blobs, values about 0.2 .. 3."""
    background = ndimage.gaussian_filter(rng.random((H, W)), 6)
    background = (background - background.min()) / np.ptp(background)
    spots = np.zeros((H, W))
    n = max(1, H * W // 150)
    spots[rng.integers(0, H, n), rng.integers(0, W, n)] = rng.uniform(0.5, 1.5, n)
    return 0.2 + 0.5 * background + 25 * ndimage.gaussian_filter(spots, 2.0)


def line_scan(T, Y, X, seed, max_disp=5, step_sd=0.12):
    """Frames (T, 1, Y, X) whose rows follow a random walk, and the (T, 1, Y, 2) truth."""
    rng = np.random.default_rng(seed)
    pad = max_disp + 3
    field = blobs(Y + 2 * pad, X + 2 * pad, rng)
    walk = np.zeros((T * Y, 2))
    pos = np.zeros(2)
    for i, step in enumerate(rng.normal(0.0, step_sd, (T * Y, 2))):
        pos = np.clip(pos * (1 - 1 / 400) + step, -max_disp, max_disp)
        walk[i] = pos
    d = np.rint(walk).astype(np.int64).reshape(T, 1, Y, 2)
    frames = np.empty((T, 1, Y, X))
    ys, xs = np.arange(Y), np.arange(X)
    for t in range(T):
        rows = ys + d[t, 0, :, 0] + pad
        cols = xs[None, :] + d[t, 0, :, 1][:, None] + pad
        frames[t, 0] = field[rows[:, None], cols]
    return rng.poisson(frames * 40.0).astype(np.uint16), d


def exact_fraction(est, truth):
    """Fraction of rows whose (dy, dx) is exact, up to one constant offset."""
    diff = (np.asarray(est, dtype=np.int64) - truth).reshape(-1, 2)
    off = [np.bincount(c - c.min()).argmax() + c.min() for c in diff.T]
    return float(np.mean(np.all(diff == np.array(off), axis=1)))


def sequence(frames):
    return sima.Sequence.create("ndarray", np.asarray(frames)[..., None])


# -- NonRigid2D ----------------------------------------------------------------------------


def textured_movie(T, size, seed, planes=1):
    """Crops of smooth random fields moved by whole pixels: (T, Z, size, size, 1) float32."""
    rng = np.random.default_rng(seed)
    pad = 6
    out = np.empty((T, planes, size, size, 1), np.float32)
    for z in range(planes):
        field = ndimage.gaussian_filter(rng.random((size + 2 * pad, size + 2 * pad)), 1.5)
        for t, (dy, dx) in enumerate(rng.integers(-pad + 1, pad, (T, 2))):
            crop = field[pad + dy : pad + dy + size, pad + dx : pad + dx + size]
            out[t, z, :, :, 0] = 1000 * crop + rng.normal(0, 2, crop.shape)
    return out


@pytest.mark.parametrize(
    "make",
    [
        lambda: NonRigid2D(block_size=32, reference_frames=10),
        lambda: NonRigid2D(block_size=(32, 48), overlap=0.5, max_block_displacement=3),
    ],
)
def test_nonrigid_on_a_cluster_equals_local(client, split, make):
    seqs = [sima.Sequence.create("ndarray", textured_movie(6, 64, s, planes=2)) for s in (0, 1)]
    here = make()
    local = here.estimate(seqs)
    there = make()
    remote = there.estimate(seqs, client=client)
    for a, b in zip(local, remote):
        assert a.shape == b.shape == (6, 2, *here.grid[0].shape, *here.grid[1].shape, 2)
        np.testing.assert_array_equal(a, b)
    for a, b in zip(here.grid, there.grid):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(here.reference_image, there.reference_image)


def test_nonrigid_correct_on_a_cluster_equals_local(client, split):
    seqs = [sima.Sequence.create("ndarray", textured_movie(8, 48, 2))]
    here = NonRigid2D(block_size=24).correct(seqs, None)
    there = NonRigid2D(block_size=24).correct(seqs, None, client=client)
    assert here.frame_shape == there.frame_shape
    np.testing.assert_array_equal(np.asarray(here.sequences[0]), np.asarray(there.sequences[0]))


# -- HiddenMarkov2D ------------------------------------------------------------------------


def test_hmm_on_a_cluster_matches_the_truth_and_the_local_run(client, split):
    frames, truth = line_scan(40, 96, 96, 3)
    movies = [(frames[:20], truth[:20]), (frames[20:], truth[20:])]  # one tissue, two runs
    seqs = [sequence(f) for f, _ in movies]
    local = HiddenMarkov2D(verbose=False).estimate(seqs)
    remote = HiddenMarkov2D(verbose=False).estimate(seqs, client=client)
    for a, b, (frames, _) in zip(local, remote, movies):
        assert a.shape == b.shape == (len(frames), 1, 96, 2)
        assert b.dtype == np.int32
    assert np.concatenate(remote).reshape(-1, 2).min(axis=0).tolist() == [0, 0]
    assert exact_fraction(np.concatenate(local), truth) >= 0.95
    assert exact_fraction(np.concatenate(remote), truth) >= 0.95
    # both in the same frame of reference: nearly every row agrees exactly
    same = np.all(np.concatenate(local) == np.concatenate(remote), axis=-1)
    assert same.mean() >= 0.98


def test_hmm_cluster_model_is_fitted_on_spread_stretches(client, split, monkeypatch):
    monkeypatch.setattr(hmm_module, "RANGE_MODEL_FRAMES", 20)
    monkeypatch.setattr(hmm_module, "RANGE_MODEL_STRETCHES", 4)
    frames, truth = line_scan(40, 96, 96, 5)
    d = HiddenMarkov2D(verbose=False).estimate([sequence(frames)], client=client)[0]
    assert d.shape == (40, 1, 96, 2)
    assert exact_fraction(d, truth) >= 0.93  # the local run: 0.97


def test_hmm_stretches_cover_the_data():
    seqs = [sequence(np.zeros((n, 1, 8, 8), np.uint16)) for n in (30, 10)]
    sources, lengths = hmm_module._sample_stretches(seqs, 12, 4, 1)
    assert lengths == [3, 3, 3, 3]  # the last moved back to fit in the 10-frame sequence
    firsts = [next(iter(src(2)))[0] for src in sources]
    assert firsts == [0, 0, 0, 0]  # every stretch counts its frames from 0
    sources, lengths = hmm_module._sample_stretches(seqs, 100, 4, 1)
    assert lengths == [30, 10]  # few enough frames: the sequences whole
    _, lengths = hmm_module._sample_stretches(seqs, 12, 4, 4)
    assert all(n % 4 == 0 or n < 4 for n in lengths)  # whole units of 4 frames


def test_hmm_cluster_verbose_says_what_the_model_is_fitted_on(client, capsys):
    frames, _ = line_scan(8, 32, 32, 6)
    HiddenMarkov2D(verbose=True).estimate([sequence(frames)], client=client)
    assert "fitting the model on 8 frames (1 stretches)" in capsys.readouterr().err


def test_hmm_runs_locally_without_a_client():
    # without a client the strategy decodes every pass over all frames (no range setup)
    strategy = HiddenMarkov2D(verbose=False)
    data = sima.ImagingDataset([sequence(line_scan(4, 16, 16, 7)[0])], None)
    assert strategy._range_setup(data) is None


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["nonrigid", "hmm"])
def test_cli_scheduler_runs_nonrigid_and_hmm(tmp_path, capsys, strategy):
    import h5py

    from sima_fast.cli import main

    frames = textured_movie(6, 144, 3)[:, 0, :, :, 0] if strategy == "nonrigid" else None
    if frames is None:
        frames = line_scan(8, 32, 32, 8)[0][:, 0].astype(np.float32)
    path = str(tmp_path / "run.h5")
    with h5py.File(path, "w") as f:
        f["imaging"] = frames
    base = ["motion", path, "--dim-order", "tyx", "--strategy", strategy, "--quiet"]
    if strategy == "nonrigid":
        base += ["--max-displacement", "8"]
    assert main([*base, "--out", str(tmp_path / "here")]) == 0
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",
        dashboard_address=":0",  # any free port: tests run in parallel
    ) as cluster:
        argv = [*base, "--out", str(tmp_path / "there"), "--scheduler", cluster.scheduler_address]
        assert main(argv) == 0
    text = capsys.readouterr().out
    assert "run.h5: 6 frames" in text or "run.h5: 8 frames" in text
    there = sima.ImagingDataset.load(str(tmp_path / "there.sima"))
    assert len(there.sequences[0]) == len(frames)
    if strategy == "nonrigid":  # the same displacements, so the same corrected frames
        here = sima.ImagingDataset.load(str(tmp_path / "here.sima"))
        np.testing.assert_array_equal(
            np.asarray(here.sequences[0]), np.asarray(there.sequences[0])
        )

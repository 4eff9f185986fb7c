"""Motion estimation on a Dask cluster equals the single-machine estimate; progress bars.

The rigid plane strategies fix their references first (given, or built from
a sample of frames on the client), then register every time range of every
sequence as one task (``estimate(client=...)``); the displacements must be
identical to those computed without a cluster. A strategy that cannot be
split in time refuses a client. Also: the default trim of a sub-pixel
correction keeps the region every frame sees.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import sima_fast as sima
from sima_fast import distributed as sd
from sima_fast.motion import base as motion_base

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    """A two-worker, in-process cluster (threads), started once for the module."""
    import dask
    from distributed import Client, LocalCluster

    with (
        dask.config.set(sd.DASK_CONFIG),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def split(monkeypatch):
    """Plan several ranges per sequence even for these tiny movies."""
    monkeypatch.setattr(sd, "MIN_TASK_BYTES", 1)


def shifted_movie(shifts, size=40, planes=1, channels=1, seed=0, dtype=np.float32):
    """Crops of one smooth random field moved by integer ``shifts`` (dy, dx), noise from ``seed``.

    Returns (T, Z, Y, X, C); channel c is the field times c + 1.
    """
    pad = 8
    field = np.random.default_rng(0).random((planes, size + 2 * pad, size + 2 * pad))
    field = gaussian_filter(field, (0, 2, 2))
    rng = np.random.default_rng(seed + 1)
    field = 1000 + 4000 * (field - field.min()) / np.ptp(field)
    frames = np.empty((len(shifts), planes, size, size, channels))
    for t, (dy, dx) in enumerate(shifts):
        crop = field[:, pad - dy : pad - dy + size, pad - dx : pad - dx + size]
        frames[t] = crop[..., None] * (1 + np.arange(channels))
    frames += rng.normal(0, 5, frames.shape)
    return frames.astype(dtype)


SHIFTS = [(0, 0), (3, -2), (1, 4), (-2, 1), (4, 3), (0, -3), (2, 2), (-1, 0), (3, 1), (1, -1)]


def sequences(n=2, **kwargs):
    return [
        sima.Sequence.create("ndarray", shifted_movie(SHIFTS[k:] + SHIFTS[:k], seed=k, **kwargs))
        for k in range(n)
    ]


STRATEGIES = [
    lambda: sima.motion.RigidRegistration2D(num_reference_frames=8),
    lambda: sima.motion.PlaneTranslation2D(),
    lambda: sima.motion.PlaneTranslation2D(method="phase", max_displacement=6),
    lambda: sima.motion.DiscreteFourier2D(num_images_for_mean=8, laplace=1.0),
    lambda: sima.motion.DiscreteFourier2D(upsample_factor=4, num_images_for_mean=8),
]


@pytest.mark.parametrize("make", STRATEGIES)
def test_cluster_equals_local(client, split, make):
    seqs = sequences()
    local = make().estimate(seqs)
    remote = make().estimate(seqs, client=client)
    assert len(remote) == len(local) == 2
    for a, b in zip(local, remote):
        assert a.dtype == b.dtype and a.shape == b.shape == (len(SHIFTS), 1, 2)
        np.testing.assert_array_equal(a, b)


def test_cluster_equals_local_with_reference_planes_and_channels(client, split):
    seqs = sequences(planes=2, channels=2, dtype=np.uint16)
    reference = seqs[0].read_chunk(0, 1)[0].sum(axis=-1)
    for make in (
        lambda: sima.motion.RigidRegistration2D(reference=reference),
        lambda: sima.motion.RigidRegistration2D(),  # two planes, own references aligned
    ):
        local = make().estimate(seqs)
        remote = make().estimate(seqs, client=client)
        for a, b in zip(local, remote):
            np.testing.assert_array_equal(a, b)
    # with a fixed reference the estimates undo the known shifts (content moved
    # by s is put back by d = -s), to within the bias of 40x40 noisy frames
    d = sima.motion.RigidRegistration2D(reference=reference).estimate(seqs, client=client)
    truth = -np.array(SHIFTS, dtype=float)
    truth = truth - truth.min(axis=0)
    np.testing.assert_allclose(d[0][:, 0], truth, atol=0.6)
    np.testing.assert_allclose(d[0][:, 1], truth, atol=0.6)


def test_ranges_are_really_split(client, split):
    seqs = sequences(n=1)
    futures = sd.map_ranges(client, seqs, motion_base.displacements_of_range, None)
    assert len(futures[0]) == 2  # MIN_TASK_BYTES patched: one range per worker thread


def test_estimate_motion_small_ranges(client):
    seqs = sequences()
    strategy = sima.motion.PlaneTranslation2D(reference=seqs[0].read_chunk(0, 1)[0, ..., 0])
    whole = strategy.estimate(seqs)
    ranges = sima.motion.PlaneTranslation2D(reference=seqs[0].read_chunk(0, 1)[0, ..., 0])
    setup = [seqs[0].read_chunk(0, 1)[0, 0, ..., 0].astype(np.float64)]
    raw = sd.estimate_motion(
        seqs, client, motion_base.displacements_of_range, (ranges, setup), chunk_frames=3
    )
    assert [r.shape for r in raw] == [(len(SHIFTS), 1, 2)] * 2
    joined = motion_base.normalise_displacements([np.round(r).astype(np.int64) for r in raw])
    for a, b in zip(whole, joined):
        np.testing.assert_array_equal(a, b)


def test_correct_on_cluster_equals_local(client, split):
    seqs = sequences()
    strategy = sima.motion.PlaneTranslation2D()
    local = strategy.correct(seqs, None, trim_criterion=0.5)
    remote = strategy.correct(seqs, None, trim_criterion=0.5, client=client)
    assert local.frame_shape == remote.frame_shape
    for a, b in zip(local.sequences, remote.sequences):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_empty_sequence_on_cluster(client):
    seqs = sequences(n=1)
    empty = sima.Sequence.create("ndarray", np.zeros((0, *seqs[0].shape[1:]), np.float32))
    ref = seqs[0].read_chunk(0, 1)[0, ..., 0]
    d = sima.motion.RigidRegistration2D(reference=ref).estimate([*seqs, empty], client=client)
    assert d[1].shape == (0, 1, 2)
    assert d[0].shape == (len(SHIFTS), 1, 2)


class Drift(sima.motion.MotionEstimationStrategy):
    """Every frame one pixel below the last: its estimates depend on the frame index only."""

    def _estimate(self, dataset):
        out = []
        for seq in dataset:
            d = np.zeros((len(seq), seq.shape[1], 2), dtype=int)
            d[:, :, 0] = -np.arange(len(seq))[:, None]
            out.append(d)
        return out


def test_client_refused_by_a_strategy_that_cannot_be_split(client):
    with pytest.raises(ValueError, match=r"^client: Drift .*cannot be split"):
        Drift().estimate(sequences(n=1), client=client)
    with pytest.raises(TypeError, match=r"client must be a dask\.distributed\.Client"):
        sima.motion.PlaneTranslation2D().estimate(sequences(n=1), client="tcp://nowhere")


class Bar:
    """A stand-in for tqdm that records the frames counted."""

    made: ClassVar[list] = []

    def __init__(self, total, desc, unit, disable):
        self.total, self.desc, self.n = total, desc, 0
        Bar.made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        self.n += n


@pytest.mark.parametrize("strategy", [sima.motion.PlaneTranslation2D(), Drift()])
def test_progress_counts_every_frame_once(monkeypatch, strategy):
    import tqdm.auto

    Bar.made = []
    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    seqs = sequences()
    strategy.estimate(seqs, progress=True)
    (bar,) = Bar.made
    assert bar.total == 2 * len(SHIFTS)
    assert bar.desc == f"motion ({type(strategy).__name__})"
    # the rigid strategy reads every frame once through the estimation chunks
    assert bar.n == (bar.total if isinstance(strategy, sima.motion.PlaneTranslation2D) else 0)
    Bar.made = []
    strategy.estimate(seqs)  # no bar without progress
    assert Bar.made == []
    with pytest.raises(ValueError, match="progress"):
        strategy.estimate(seqs, progress="yes")


def test_subpixel_correct_keeps_what_every_frame_sees():
    """The default trim (1.0) of sub-pixel displacements: the moved frames' intersection."""
    seqs = sequences()
    out = sima.motion.RigidRegistration2D().correct(seqs, None)
    span = np.ptp(np.array(SHIFTS), axis=0)
    Z, Y, X, C = out.frame_shape
    assert (Z, C) == (1, 1)
    # whole-pixel span s: 40 - s rows; sub-pixel estimates lose at most one more
    assert 40 - span[0] - 1 <= Y <= 40 - span[0]
    assert 40 - span[1] - 1 <= X <= 40 - span[1]
    frames = np.concatenate([np.asarray(s) for s in out.sequences])
    assert frames.shape[1:] == (1, Y, X, 1)

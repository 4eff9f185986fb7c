"""The demo's motion step: correcting, scoring and drawing the uncorrected examples.

The full demo (tests/test_demo.py) runs the step with the strategies
``sima_fast.motion`` has. Here the step runs alone on the first frames of the
examples, with the row-wise and non-rigid strategies missing (skipped with a
note) or replaced by oracles that return the true motion, so the scoring is
checked whatever strategies are installed.
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import pytest

import sima_fast.motion as motion
from sima_fast import ImagingDataset, demo, figures
from sima_fast.misc import example_uncorrected

FRAMES = 16
ROWWISE = ("HiddenMarkov2D",)
NONRIGID = ("NonRigid2D", "PiecewiseRigid2D", "BlockRegistration2D")


@pytest.fixture(scope="module")
def _examples(tmp_path_factory):
    """Build the three uncorrected examples once, in a cache of this module's own.

    Not the session's cache (conftest.py): other tests build shortened
    examples there and expect to find none already built.
    """
    cache = str(tmp_path_factory.mktemp("demo_motion_cache"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIMA_FAST_CACHE", cache)
        for kind in ("rigid", "rowwise", "nonrigid"):
            example_uncorrected(kind)
    return cache


@pytest.fixture(autouse=True)
def _cache(_isolated_cache, _examples, monkeypatch):
    """Point every test of this module at that cache."""
    monkeypatch.setenv("SIMA_FAST_CACHE", _examples)


def _run_step(folder, frames=FRAMES):
    out = io.StringIO()
    root = demo.prepare_output_folder(folder)
    outputs = demo._Outputs(root, out)
    score = demo._score_motion(outputs, frames=frames)
    return score, out.getvalue(), outputs


def _without(mp, names):
    for name in names:
        mp.delattr(motion, name, raising=False)


def _no_matplotlib(mp):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        mp.setitem(sys.modules, name, None)
    mp.setitem(sys.modules, "matplotlib", None)


class OracleRows(motion.MotionEstimationStrategy):
    """Return the rowwise example's true row displacements, shifted by a whole frame."""

    def __init__(self, verbose=True, n_processes=1):
        self.verbose = verbose

    def _estimate(self, dataset):
        truth = example_uncorrected("rowwise").truth
        return [truth.displacements[: len(dataset.sequences[0])] + 3]


class OracleBlocks(motion.MotionEstimationStrategy):
    """Return the non-rigid example's true block means on a 3 x 3 grid of 64 px blocks."""

    def __init__(self, block_size=(128, 128), n_processes=1):
        self.block_size = tuple(block_size)
        self.grid = None

    def _estimate(self, dataset):
        truth = example_uncorrected("nonrigid").truth
        centres = np.array([31.5, 63.5, 95.5])
        stop = len(dataset.sequences[0])
        d = truth.block_means(centres, centres, self.block_size, stop=stop)
        # plane 1 seen from another reference position, as its own reference gives
        moved = truth.block_means(centres, centres, self.block_size, (1.25, -0.5), stop=stop)
        d[:, 1] = moved[:, 1]
        low = d.reshape(-1, 2).min(axis=0)  # estimate() moves the minimum to 0 ...
        self.grid = (centres - low[0], centres - low[1])  # ... and the grid with it
        return [d]


def test_motion_step_skips_missing_strategies(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        _without(mp, ROWWISE + NONRIGID)
        score, out, outputs = _run_step(tmp_path / "demo")
    assert score.frames == FRAMES
    assert score.rigid_rms_error <= demo.MOTION_TARGETS["rigid_rms_px"]
    assert score.sharpness_corrected > score.sharpness_uncorrected
    assert score.rowwise_strategy is None and score.rowwise_exact_fraction is None
    assert score.nonrigid_strategy is None and score.nonrigid_rms_error is None
    assert len(score.notes) == 2
    assert "- row-wise example skipped: sima_fast.motion has no HiddenMarkov2D" in out
    assert "- non-rigid example skipped: sima_fast.motion has no NonRigid2D" in out
    assert f"the first {FRAMES} frames" in out  # the subset is said
    assert score.summary() == f"motion RMS error {score.rigid_rms_error:.3f} px (rigid)"
    # the outputs: the corrected dataset and the figure
    root = outputs.root
    assert score.corrected_path == os.path.join(root, "motion.sima")
    corrected = ImagingDataset.load(score.corrected_path, read_only=True)
    assert corrected.num_frames == FRAMES
    assert corrected.channel_names == ["GCaMP", "tdTomato"]
    png = os.path.join(root, "fig5_motion.png")
    assert outputs.files == [png]
    with open(png, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_motion_step_scores_rowwise_and_nonrigid_strategies(tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        _without(mp, ROWWISE + NONRIGID)
        mp.setattr(motion, "HiddenMarkov2D", OracleRows, raising=False)
        mp.setattr(motion, "PiecewiseRigid2D", OracleBlocks, raising=False)
        _no_matplotlib(mp)  # quicker, and the figure is skipped cleanly
        score, out, outputs = _run_step(tmp_path / "demo")
    assert outputs.skipped == ["fig5_motion.png"] and outputs.files == []
    assert "figure fig5_motion.png skipped: matplotlib is not installed" in out
    assert os.path.isdir(score.corrected_path)
    assert score.notes == ()
    assert score.rowwise_strategy == "OracleRows"
    assert score.rowwise_exact_fraction == 1.0  # a whole-frame offset costs nothing
    assert score.nonrigid_strategy == "OracleBlocks"
    # the demo asked for 64 px blocks; each plane's own offset is removed
    assert score.nonrigid_rms_error < 1e-6
    assert "row-wise: 100.0% of the row displacements exact (target >= 95%)" in out
    assert "non-rigid: block RMS error 0.000 px over 3 x 3 blocks (target <= 0.3 px)" in out
    assert score.within_targets and "MISSED" not in out


def test_motion_step_reports_a_missed_target(tmp_path):
    class WrongRows(OracleRows):
        def _estimate(self, dataset):
            (d,) = super()._estimate(dataset)
            d[:, :, ::2, 1] += 1  # every other row one pixel off
            return [d]

    with pytest.MonkeyPatch.context() as mp:
        _without(mp, ROWWISE + NONRIGID)
        mp.setattr(motion, "HiddenMarkov2D", WrongRows, raising=False)
        _no_matplotlib(mp)
        score, out, _ = _run_step(tmp_path / "demo", frames=8)
    assert score.rowwise_exact_fraction == pytest.approx(0.5)
    assert "exact (target >= 95%)  MISSED" in out
    assert not score.within_targets


def test_motion_figure_checks_its_input(tmp_path):
    rng = np.random.default_rng(0)
    before = rng.random((40, 50))
    after = np.full((36, 44), np.nan)
    after[2:-2, 2:-2] = rng.random((32, 40))
    true = np.cumsum(rng.normal(size=(20, 2)), axis=0)
    time = np.arange(20) / 15.0
    fig = figures.motion_figure(before, after, time, true + 3.0, true, title="t")
    path = figures.save_figure(fig, tmp_path / "motion.png")
    assert os.path.getsize(path) > 0
    with pytest.raises(ValueError, match="2-D images"):
        figures.motion_figure(before[None], after, time, true, true)
    with pytest.raises(ValueError, match=r"must both be \(20, 2\)"):
        figures.motion_figure(before, after, time, true[:-1], true)

"""The end-to-end demo (``sima-fast demo``): its scores, its outputs and its report."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import sys

import pytest

from sima_fast import demo
from sima_fast.cli import main

FIGURES = (
    "fig1_rois.png",
    "fig2_traces.png",
    "fig3_cross_session.png",
    "fig4_segmentation.png",
    "fig5_motion.png",
)
EXPORTS = (
    "average_GCaMP.tif",
    "average_tdTomato.tif",
    "sequence_0.h5",
    "sequence_1.h5",
    "signals.csv",
)
try:  # the demo exports NWB when the nwb extra is installed
    import nwbinspector  # noqa: F401
    import pynwb  # noqa: F401

    EXPORTS += ("example.nwb",)
except ImportError:
    pass


def _snapshot(folder):
    """Every file under ``folder`` with its size and modification time."""
    state = {}
    for top, _dirs, files in os.walk(folder):
        for name in files:
            st = os.stat(os.path.join(top, name))
            state[os.path.relpath(os.path.join(top, name), folder)] = (st.st_size, st.st_mtime_ns)
    return state


def _run(argv):
    """Run the command line; return its exit code, output, error output and report."""
    reports = []
    real_run_demo = demo.run_demo

    def spy(**kwargs):
        reports.append(real_run_demo(**kwargs))
        return reports[-1]

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(demo, "run_demo", spy)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    return code, out.getvalue(), err.getvalue(), (reports[0] if reports else None)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One demo run on a private example cache, with the cache's state before and after."""
    from sima_fast.misc import cache_directory, example_data, example_uncorrected

    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIMA_FAST_CACHE", str(root / "cache"))
        example_data()  # builds the example
        for kind in ("rigid", "rowwise", "nonrigid"):
            example_uncorrected(kind)  # and the uncorrected motion examples
        cache = cache_directory()
        before = _snapshot(cache)
        out_dir = root / "out"
        code, out, err, report = _run(["demo", "--quiet", "--out", str(out_dir)])
        after = _snapshot(cache)
        files = _snapshot(out_dir)  # before the second run replaces them
        heads = {}
        for name in files:
            with open(out_dir / name, "rb") as fh:
                heads[name.replace(os.sep, "/")] = fh.read(8)
        marker = json.loads((out_dir / demo.MARKER).read_text(encoding="utf-8"))
        # a second run into the same folder, without matplotlib
        for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
            mp.setitem(sys.modules, name, None)
        mp.setitem(sys.modules, "matplotlib", None)
        again = _run(["demo", "--quiet", "--out", str(out_dir)])
    return {
        "code": code,
        "out": out,
        "err": err,
        "report": report,
        "cache_before": before,
        "cache_after": after,
        "folder": str(out_dir),
        "files": files,
        "heads": heads,
        "marker": marker,
        "again": again,
    }


def test_demo_runs_and_scores(demo_run):
    assert demo_run["code"] == 0, demo_run["err"]
    out = demo_run["out"]
    assert "time projections" in out
    assert "72/72 ROI masks exact" in out
    report = demo_run["report"]
    assert isinstance(report, demo.DemoReport)
    assert report.summary() in out
    assert report.projections.max_relative_error < 1e-10
    assert report.rois.exact_masks == report.rois.cells == 72
    assert report.extraction.median_correlation > 0.95
    assert report.extraction.min_correlation > 0.8
    assert report.spikes.median_correlation > 0.9
    assert report.spikes.fast_solver_fraction == 1.0
    assert report.cross_session.mean_vertex_error < 0.5
    assert report.cross_session.fraction_iou_at_least_0_7 >= 0.95
    assert report.segmentation["stica"].f1 >= 0.8
    assert report.segmentation["normcut"].f1 >= 0.8
    # motion: the rigid example corrected, the others estimated when the strategies exist
    import sima_fast.motion

    motion = report.motion
    assert motion.frames == 120 and motion.rigid_strategy == "RigidRegistration2D"
    assert motion.rigid_rms_error <= demo.MOTION_TARGETS["rigid_rms_px"]
    assert motion.sharpness_corrected > 2 * motion.sharpness_uncorrected
    assert "rigid: RMS error" in out and "(target <= 0.1 px)" in out
    has_hmm = hasattr(sima_fast.motion, "HiddenMarkov2D")
    assert (motion.rowwise_exact_fraction is not None) == has_hmm
    if has_hmm:
        assert motion.rowwise_exact_fraction >= demo.MOTION_TARGETS["rowwise_exact"]
        assert "of the row displacements exact (target >= 95%)" in out
    else:
        assert "row-wise example skipped: sima_fast.motion has no HiddenMarkov2D" in out
    has_nonrigid = any(
        hasattr(sima_fast.motion, n)
        for n in ("NonRigid2D", "PiecewiseRigid2D", "BlockRegistration2D")
    )
    assert (motion.nonrigid_rms_error is not None) == has_nonrigid
    if has_nonrigid:
        assert motion.nonrigid_rms_error <= demo.MOTION_TARGETS["nonrigid_rms_px"]
        assert "(target <= 0.3 px)" in out
    else:
        assert "non-rigid example skipped" in out
    assert motion.within_targets
    assert "MISSED" not in out


def test_demo_writes_its_figures_and_exports(demo_run):
    folder, report, out = demo_run["folder"], demo_run["report"], demo_run["out"]
    assert report.output_dir == folder
    assert report.dataset_path == os.path.join(folder, "example.sima")
    assert report.skipped_figures == ()
    expected = [os.path.join(folder, "exports", name) for name in EXPORTS]
    expected += [os.path.join(folder, name) for name in (*FIGURES, "fig1_rois.pdf")]
    assert sorted(report.files) == sorted(expected)
    sizes = {name.replace(os.sep, "/"): size for name, (size, _) in demo_run["files"].items()}
    for path in report.files:
        name = os.path.relpath(path, folder).replace(os.sep, "/")
        assert sizes[name] > 0
        assert f"wrote {name}" in out or f", {name}" in out  # where each file went
    for name in FIGURES:
        assert demo_run["heads"][name] == b"\x89PNG\r\n\x1a\n"
    assert demo_run["heads"]["fig1_rois.pdf"][:4] == b"%PDF"
    assert f"open {os.path.join(folder, 'fig1_rois.png')} to see" in out
    # the dataset copy holds the demo's ROI sets and signals
    from sima_fast import ImagingDataset

    copy = ImagingDataset.load(report.dataset_path, read_only=True)
    assert {"imagej", "demo_stica", "demo_normcut"} <= set(copy.ROIs)
    assert "demo" in copy.signals("GCaMP")
    # the corrected motion example is a dataset of its own, outside the exports
    assert report.motion.corrected_path == os.path.join(folder, "motion.sima")
    corrected = ImagingDataset.load(report.motion.corrected_path, read_only=True)
    assert corrected.channel_names == ["GCaMP", "tdTomato"]
    assert corrected.num_frames == 120 and corrected.frame_shape[0] == 2
    assert "wrote motion.sima/" in out
    # the marker lists everything the demo wrote, so a re-run can replace it
    listed = {e for e in demo_run["marker"]["entries"] if not e.endswith("/")}
    assert listed == {p.replace(os.sep, "/") for p in demo_run["files"]} - {demo.MARKER}
    # the noise-level note is one plain line, not the estimator's internals
    assert "radicand" not in out
    assert report.spikes.noise_fallback_rois == 0 or (
        f"noise level: {report.spikes.noise_fallback_rois} of 72 ROIs" in out
    )


def test_demo_leaves_the_shared_example_unchanged(demo_run):
    assert demo_run["cache_before"]  # the snapshot saw the example
    assert demo_run["cache_after"] == demo_run["cache_before"]


def test_demo_reruns_without_matplotlib(demo_run):
    code, out, err, report = demo_run["again"]
    assert code == 0, err
    folder = demo_run["folder"]
    assert report.skipped_figures == FIGURES
    assert "matplotlib is not installed" in out
    for name in FIGURES:
        assert f"figure {name} skipped" in out
    assert f"open {os.path.join(folder, 'exports', 'signals.csv')}" in out
    # the first run's figures are gone (they were the demo's own), the exports are new
    left = sorted(os.listdir(folder))
    assert left == sorted(["example.sima", "motion.sima", "exports", demo.MARKER])
    assert sorted(os.listdir(os.path.join(folder, "exports"))) == sorted(EXPORTS)
    assert report.rois.exact_masks == 72
    assert report.motion.rigid_rms_error <= demo.MOTION_TARGETS["rigid_rms_px"]
    assert report.summary() in out


def test_demo_refuses_a_folder_it_did_not_write(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    code, _out, err, report = _run(["demo", "--out", str(folder)])
    assert code == 2 and report is None
    assert "was not written by sima-fast demo" in err and "notes.txt" in err
    assert sorted(os.listdir(folder)) == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "keep me"

    file = tmp_path / "a_file"
    file.write_text("x")
    with pytest.raises(NotADirectoryError):
        demo.prepare_output_folder(file)


def test_output_folder_is_created_and_reclaimed(tmp_path):
    folder = tmp_path / "new" / "demo"
    root = demo.prepare_output_folder(folder)
    assert root == str(folder) and os.listdir(folder) == [demo.MARKER]
    # files the marker lists are the demo's: cleared on the next run
    (folder / "exports").mkdir()
    (folder / "exports" / "signals.csv").write_text("old")
    (folder / "fig2_traces.png").write_text("old")
    marker = json.loads((folder / demo.MARKER).read_text())
    marker["entries"] = ["exports/", "exports/signals.csv", "fig2_traces.png"]
    (folder / demo.MARKER).write_text(json.dumps(marker))
    demo.prepare_output_folder(folder)
    assert os.listdir(folder) == [demo.MARKER]
    # a file the marker does not list is the user's: refused, nothing deleted
    (folder / "fig2_traces.png").write_text("old")
    (folder / "mine.txt").write_text("keep me")
    marker["entries"] = ["fig2_traces.png"]
    (folder / demo.MARKER).write_text(json.dumps(marker))
    with pytest.raises(FileExistsError, match=r"mine\.txt"):
        demo.prepare_output_folder(folder)
    assert sorted(os.listdir(folder)) == sorted([demo.MARKER, "fig2_traces.png", "mine.txt"])
    # a marker that is not the demo's does not count
    (folder / "mine.txt").unlink()
    (folder / demo.MARKER).write_text(json.dumps({"entries": ["fig2_traces.png"]}))
    with pytest.raises(FileExistsError, match="not written by sima-fast demo"):
        demo.prepare_output_folder(folder)
    # an empty folder is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    assert os.listdir(demo.prepare_output_folder(empty)) == [demo.MARKER]


def _report(**changes):
    report = demo.DemoReport(
        dataset_path="example.sima",
        projections=demo.ProjectionCheck({"mean": 1e-16, "std": 3e-15, "kurtosis": 2e-15}),
        exports=demo.ExportCheck(tiff_files=2, hdf5_files=2, size_bytes=10, nan_left=0),
        rois=demo.ROIImportScore(imported=3, exact_masks=2, cells=3),
        extraction=demo.ExtractionScore(
            traces=3,
            frames=10,
            median_correlation=0.9876,
            mean_correlation=0.9,
            min_correlation=0.8,
        ),
        spikes=demo.SpikeScore(
            per_roi=(0.5, 0.9, 0.7),
            per_roi_binned=(0.6, 0.8),
            gamma=0.9,
            sigma_median=0.03,
            fast_solver_traces=3,
            traces=4,
            notes=(),
        ),
        cross_session=demo.CrossSessionScore(
            imported=3, mean_vertex_error=0.1, fraction_iou_at_least_0_7=1.0, median_iou=0.9
        ),
        segmentation={
            "stica": demo.SegmentationScore("STICA", 3, 3, 1.0, 2 / 3, 0.8, 0.9),
            "normcut": demo.SegmentationScore("PlaneNormalizedCuts", 3, 3, 1.0, 1.0, 1.0, 1.0),
        },
    )
    return dataclasses.replace(report, **changes)


def test_report_summary_and_derived_scores():
    report = _report()
    assert report.summary() == (
        "2/3 ROI masks exact, traces correlate with the true calcium at median r = 0.988, "
        "inferred spikes correlate with the true spikes at median r = 0.700, "
        "segmentation F1 0.80 (STICA) / 1.00 (normalised cuts)"
    )
    assert report.projections.max_relative_error == 3e-15
    assert report.spikes.median_correlation == 0.7
    assert report.spikes.median_correlation_binned == pytest.approx(0.7)
    assert report.spikes.fast_solver_fraction == 0.75
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.rois = None


def test_report_summary_with_motion_scores():
    motion = demo.MotionScore(
        frames=120,
        rigid_strategy="RigidRegistration2D",
        rigid_rms_error=0.0167,
        sharpness_uncorrected=0.02,
        sharpness_corrected=0.13,
        corrected_path="motion.sima",
    )
    report = _report(motion=motion)
    assert report.summary().endswith(
        "segmentation F1 0.80 (STICA) / 1.00 (normalised cuts), motion RMS error 0.017 px (rigid)"
    )
    assert motion.sharpness_gain == pytest.approx(6.5)
    assert motion.within_targets
    full = dataclasses.replace(
        motion,
        rowwise_strategy="HiddenMarkov2D",
        rowwise_exact_fraction=0.9954,
        nonrigid_strategy="NonRigid2D",
        nonrigid_rms_error=0.159,
    )
    assert full.summary() == (
        "motion RMS error 0.017 px (rigid), 99.5% rows exact (row-wise), 0.16 px (non-rigid)"
    )
    assert full.within_targets
    # each target is checked on its own
    assert not dataclasses.replace(full, rigid_rms_error=0.11).within_targets
    assert not dataclasses.replace(full, rowwise_exact_fraction=0.94).within_targets
    assert not dataclasses.replace(full, nonrigid_rms_error=0.31).within_targets

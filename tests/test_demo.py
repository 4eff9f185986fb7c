"""The end-to-end demo (``sima-fast demo``): its scores and its report."""

from __future__ import annotations

import dataclasses

import pytest

from sima_fast import demo
from sima_fast.cli import main


def test_demo_runs_and_scores(capsys, monkeypatch):
    # One run through the command line; the spy keeps the report it returns.
    reports = []
    real_run_demo = demo.run_demo

    def spy(**kwargs):
        reports.append(real_run_demo(**kwargs))
        return reports[-1]

    monkeypatch.setattr(demo, "run_demo", spy)
    assert main(["demo", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "time projections" in out
    assert "72/72 ROI masks exact" in out
    (report,) = reports
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

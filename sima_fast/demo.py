"""The ``sima-fast demo`` job: the main analysis run end to end, scored.

:func:`run_demo` loads the bundled example dataset (built on first use
from the deterministic simulator, see :func:`sima_fast.misc.example_data`)
and runs the whole analysis on it, step by step, printing what each step
did, how long it took and how it compares with the simulator's ground
truth:

1. load the example dataset and print its summary;
2. compute the time projections (mean, std, kurtosis) in one streaming
   pass and check them against float64 numpy/scipy on a pixel sample;
3. export the averages to TIFF and the gap-filled frames to HDF5;
4. import the example ImageJ ROIs and compare their rasterisation with the
   true cell masks;
5. extract the traces of those ROIs and correlate them with the true
   calcium;
6. infer spikes and correlate them with the true spikes;
7. warp a second session by a known affine transform, import the ROIs into
   it by registration and measure how close they land to where they should;
8. segment the dataset with STICA and with normalised cuts and score both
   against the true cells.

The scores come back as a :class:`DemoReport`, so that tests and users can
check them without parsing the printed text. The demo stores its ROIs,
signals and segmentations in the example dataset directory, under labels
starting with ``imagej`` and ``demo``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

__all__ = [
    "CrossSessionScore",
    "DemoReport",
    "ExportCheck",
    "ExtractionScore",
    "ProjectionCheck",
    "ROIImportScore",
    "SegmentationScore",
    "SpikeScore",
    "run_demo",
]


@dataclass(frozen=True)
class ProjectionCheck:
    """The streaming time projections checked against numpy/scipy.

    Attributes
    ----------
    relative_errors : dict of str to float
        Largest relative difference, over a sample of every 16th row and
        column, between the streaming result and float64 numpy/scipy, for
        ``'mean'``, ``'std'`` and ``'kurtosis'``.
    """

    relative_errors: dict[str, float]

    @property
    def max_relative_error(self) -> float:
        """The largest of :attr:`relative_errors`."""
        return max(self.relative_errors.values())


@dataclass(frozen=True)
class ExportCheck:
    """What the export step wrote.

    Attributes
    ----------
    tiff_files, hdf5_files : int
        Number of TIFF projections (one per channel) and HDF5 movies (one
        per sequence) written.
    size_bytes : int
        Their total size on disk.
    nan_left : int
        Values still NaN in the gap-filled movies (pixels never observed).
    """

    tiff_files: int
    hdf5_files: int
    size_bytes: int
    nan_left: int


@dataclass(frozen=True)
class ROIImportScore:
    """The example ImageJ ROIs compared with the true cell masks.

    Attributes
    ----------
    imported : int
        Number of ROIs read from the zip.
    exact_masks : int
        ROIs whose rasterised mask equals the true mask of their cell.
    cells : int
        Number of true cells.
    """

    imported: int
    exact_masks: int
    cells: int


@dataclass(frozen=True)
class ExtractionScore:
    """Extracted traces compared with the true calcium.

    Attributes
    ----------
    traces, frames : int
        Number of ROIs extracted and of frames over all sequences.
    median_correlation, mean_correlation, min_correlation : float
        Statistics of the Pearson correlation, per ROI and sequence, between
        the extracted trace and the true calcium (finite frames only).
    """

    traces: int
    frames: int
    median_correlation: float
    mean_correlation: float
    min_correlation: float


@dataclass(frozen=True)
class SpikeScore:
    """Inferred spikes compared with the true spikes.

    Attributes
    ----------
    per_roi : tuple of float
        Pearson correlation, per scored ROI, of the inferred and true spike
        trains over all sequences, frame by frame. ROIs whose true or
        inferred train is constant (or not finite) are not scored.
    per_roi_binned : tuple of float
        The same correlation after summing both trains in 0.5 s bins.
    gamma : float
        The AR(1) decay shared by the traces of the first sequence.
    sigma_median : float
        Median noise level of the traces of the first sequence.
    fast_solver_traces, traces : int
        Traces (ROIs times sequences) certified by the fast solver, and all
        traces.
    notes : tuple of str
        The messages of the spike-inference warnings raised on the way.
    """

    per_roi: tuple[float, ...]
    per_roi_binned: tuple[float, ...]
    gamma: float
    sigma_median: float
    fast_solver_traces: int
    traces: int
    notes: tuple[str, ...]

    @property
    def median_correlation(self) -> float:
        """Median of :attr:`per_roi`."""
        return float(np.median(self.per_roi))

    @property
    def median_correlation_binned(self) -> float:
        """Median of :attr:`per_roi_binned`."""
        return float(np.median(self.per_roi_binned))

    @property
    def fast_solver_fraction(self) -> float:
        """Share of the traces certified by the fast solver."""
        return self.fast_solver_traces / self.traces


@dataclass(frozen=True)
class CrossSessionScore:
    """ROIs imported into an affinely warped second session.

    Attributes
    ----------
    imported : int
        ROIs imported into the second session (those falling outside its
        field of view are dropped).
    mean_vertex_error : float
        Mean distance, in pixels, between the imported vertices and the
        true ones, over the ROIs well inside the field of view.
    fraction_iou_at_least_0_7 : float
        Share of the scored ROIs (true mask of at least 20 pixels) whose
        imported mask overlaps the true one with IoU >= 0.7.
    median_iou : float
        Median IoU of those ROIs.
    """

    imported: int
    mean_vertex_error: float
    fraction_iou_at_least_0_7: float
    median_iou: float


@dataclass(frozen=True)
class SegmentationScore:
    """A segmentation strategy scored against the true cells.

    Attributes
    ----------
    strategy : str
        Class name of the strategy.
    found, cells : int
        Number of ROIs found and of true cells.
    precision, recall, f1, mean_iou : float
        Detection scores at IoU >= 0.5, as returned by
        :func:`sima_fast.segment.match_rois`.
    """

    strategy: str
    found: int
    cells: int
    precision: float
    recall: float
    f1: float
    mean_iou: float


@dataclass(frozen=True)
class DemoReport:
    """Everything :func:`run_demo` measured, one attribute per step.

    Attributes
    ----------
    dataset_path : str
        Directory of the example dataset the demo ran on.
    projections : ProjectionCheck
    exports : ExportCheck
    rois : ROIImportScore
    extraction : ExtractionScore
    spikes : SpikeScore
    cross_session : CrossSessionScore
    segmentation : dict of str to SegmentationScore
        Keyed ``'stica'`` and ``'normcut'``.
    """

    dataset_path: str
    projections: ProjectionCheck
    exports: ExportCheck
    rois: ROIImportScore
    extraction: ExtractionScore
    spikes: SpikeScore
    cross_session: CrossSessionScore
    segmentation: dict[str, SegmentationScore]

    def summary(self) -> str:
        """One line with the headline scores.

        Returns
        -------
        str
            ROI masks exact, median trace and spike correlations and the
            F1 score of both segmentations.
        """
        return (
            f"{self.rois.exact_masks}/{self.rois.cells} ROI masks exact, traces correlate with "
            f"the true calcium at median r = {self.extraction.median_correlation:.3f}, "
            f"inferred spikes correlate with the true spikes at median r = "
            f"{self.spikes.median_correlation:.3f}, segmentation F1 "
            f"{self.segmentation['stica'].f1:.2f} (STICA) / "
            f"{self.segmentation['normcut'].f1:.2f} (normalised cuts)"
        )


def run_demo(out: TextIO | None = None, quiet: bool = False) -> DemoReport:
    """Run the end-to-end demo on the example dataset and score it.

    The steps are listed in :mod:`sima_fast.demo`. Each is announced with
    ``- <step> ...``, followed by its duration and its scores; the whole run
    takes about a minute on two cores once the example dataset exists.

    Parameters
    ----------
    out : text stream, optional
        Where to print the progress and the scores. Default: standard
        output.
    quiet : bool, optional
        Hide the progress bar of the projection pass. Default: False.

    Returns
    -------
    DemoReport
        The scores printed, one attribute per step.
    """
    out = sys.stdout if out is None else out
    dataset, truth = _load_example(out)
    projections = _check_projections(dataset, out, progress=not quiet)
    exports = _check_exports(dataset, out)
    rois, roi_score = _import_imagej_rois(dataset, truth, out)
    extraction = _score_extraction(dataset, rois, truth, out)
    spikes = _score_spikes(dataset, truth, out)
    with _step("cross-session ROI import: a second session seen through a known affine", out):
        cross_session = _score_cross_session(dataset, rois, out)
    segmentation = _score_segmentation(dataset, truth, out)
    return DemoReport(
        dataset_path=str(dataset.savedir),
        projections=projections,
        exports=exports,
        rois=roi_score,
        extraction=extraction,
        spikes=spikes,
        cross_session=cross_session,
        segmentation=segmentation,
    )


@contextlib.contextmanager
def _step(name: str, out: TextIO) -> Iterator[None]:
    """Announce a step, then print how long its body took."""
    start = time.perf_counter()
    print(f"- {name} ...", file=out, flush=True)
    yield
    print(f"  done in {time.perf_counter() - start:.2f} s", file=out, flush=True)


def _load_example(out: TextIO) -> tuple[Any, Any]:
    """Load the example dataset (built on first use) and its ground truth.

    Returns
    -------
    dataset : ImagingDataset
    truth : ExampleGroundTruth
        What :func:`sima_fast.misc.example_ground_truth` returns.
    """
    from sima_fast.imaging import ImagingDataset
    from sima_fast.misc import example_data, example_ground_truth
    from sima_fast.summary import dataset_summary

    with _step("example dataset (built on first use from the simulator)", out):
        path = example_data()
        truth = example_ground_truth()
        dataset = ImagingDataset.load(path)
    print(dataset_summary(dataset), file=out)
    return dataset, truth


def _check_projections(dataset: Any, out: TextIO, progress: bool) -> ProjectionCheck:
    """Compute the three projections in one pass; compare a pixel sample with scipy."""
    import scipy.stats

    with _step("time projections: mean, std and kurtosis in one streaming pass", out):
        dataset.compute_projections(progress=progress)
    mean, std, kurt = dataset.time_averages, dataset.time_std, dataset.time_kurtosis
    for ch, name in enumerate(dataset.channel_names):
        print(
            f"  channel {name}: mean {np.nanmean(mean[..., ch]):.1f}, "
            f"std {np.nanmean(std[..., ch]):.1f}, "
            f"kurtosis {np.nanmedian(kurt[..., ch]):.2f} (median over pixels)",
            file=out,
        )
    frames = np.concatenate([np.asarray(s[:, :, ::16, ::16]) for s in dataset.sequences])
    with np.errstate(invalid="ignore"):
        ref = {
            "mean": np.nanmean(frames, axis=0),
            "std": np.nanstd(frames, axis=0),
            "kurtosis": scipy.stats.kurtosis(
                frames, axis=0, fisher=False, bias=True, nan_policy="omit"
            ),
        }
    ours = {"mean": mean, "std": std, "kurtosis": kurt}
    errors = {
        k: float(np.nanmax(np.abs(ours[k][:, ::16, ::16] - np.asarray(ref[k])) / np.abs(ref[k])))
        for k in ref
    }
    print(
        "  against numpy/scipy on a pixel sample: max relative error "
        + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()),
        file=out,
    )
    return ProjectionCheck(relative_errors=errors)


def _check_exports(dataset: Any, out: TextIO) -> ExportCheck:
    """Export the averages and the gap-filled frames to a temporary folder; count NaNs."""
    import h5py

    with (
        _step("exports: averages to TIFF16, gap-filled frames to HDF5", out),
        tempfile.TemporaryDirectory() as tmp,
    ):
        tifs = [os.path.join(tmp, f"average_{n}.tif") for n in dataset.channel_names]
        dataset.export_averages(tifs, fmt="TIFF16")
        h5s = [os.path.join(tmp, f"sequence_{i}.h5") for i in range(dataset.num_sequences)]
        dataset.export_frames(h5s, fmt="HDF5", fill_gaps=True)
        nan_left = 0
        for path in h5s:
            with h5py.File(path, "r") as f:
                nan_left += int(np.isnan(f["imaging"][()]).sum())
        sizes = sum(os.path.getsize(p) for p in tifs + h5s)
    print(
        f"  {len(tifs)} TIFF projections and {len(h5s)} HDF5 movies ({sizes / 1e6:.1f} MB); "
        f"values left NaN by gap filling (pixels never observed): {nan_left}",
        file=out,
    )
    return ExportCheck(
        tiff_files=len(tifs), hdf5_files=len(h5s), size_bytes=sizes, nan_left=nan_left
    )


def _import_imagej_rois(dataset: Any, truth: Any, out: TextIO) -> tuple[Any, ROIImportScore]:
    """Store the example ImageJ ROIs as ``'imagej'``; count masks equal to the true ones."""
    from sima_fast.misc import example_imagej_rois
    from sima_fast.ROI import ROIList

    with _step("ImageJ ROIs: import the example zip and store it with the dataset", out):
        rois = ROIList.load(example_imagej_rois(), fmt="ImageJ")
        dataset.add_ROIs(rois, "imagej")
        stored = dataset.ROIs["imagej"]
        true_masks = np.asarray(truth.masks, dtype=bool)
        exact = sum(
            bool(np.array_equal(np.asarray(roi, dtype=bool), true_masks[i]))
            for i, roi in enumerate(stored)
        )
    print(
        f"  {len(stored)} ROIs imported; {exact}/{len(true_masks)} rasterise exactly to the "
        "simulator's true masks",
        file=out,
    )
    return stored, ROIImportScore(imported=len(stored), exact_masks=exact, cells=len(true_masks))


def _score_extraction(dataset: Any, rois: Any, truth: Any, out: TextIO) -> ExtractionScore:
    """Extract the ROIs' GCaMP traces as ``'demo'``; correlate them with the true calcium."""
    with _step("signal extraction: ImageJ ROIs, GCaMP channel, F/mean per ROI and frame", out):
        signals = dataset.extract(
            rois, signal_channel="GCaMP", label="demo", n_processes=2, save_summary=False
        )
    corr = []
    for k, raw in enumerate(signals["raw"]):
        true = truth.calcium[k]
        for i in range(raw.shape[0]):
            ok = np.isfinite(raw[i])
            if ok.sum() > 2 and np.std(true[i][ok]) > 0:
                corr.append(float(np.corrcoef(raw[i][ok], true[i][ok])[0, 1]))
    corr = np.asarray(corr)
    frames = sum(r.shape[1] for r in signals["raw"])
    print(
        f"  {len(rois)} traces x {frames} frames; "
        f"correlation with the simulator's true calcium: median {np.median(corr):.3f}, "
        f"mean {corr.mean():.3f}, min {corr.min():.3f}",
        file=out,
    )
    return ExtractionScore(
        traces=len(rois),
        frames=frames,
        median_correlation=float(np.median(corr)),
        mean_correlation=float(corr.mean()),
        min_correlation=float(corr.min()),
    )


def _score_spikes(dataset: Any, truth: Any, out: TextIO) -> SpikeScore:
    """Infer spikes from the ``'demo'`` signals; correlate them with the true spikes."""
    from sima_fast.spikes import SpikeInferenceWarning

    with _step("spike inference: AR(1) deconvolution of every extracted trace", out):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SpikeInferenceWarning)
            spikes, _fits, params = dataset.infer_spikes(channel="GCaMP", label="demo")
    notes = tuple(str(w.message) for w in caught)
    for note in notes:
        print(f"  note: {note}", file=out)
    # Compare at the imaging frame rate and in 0.5 s bins (spike timing within
    # a few frames is all the indicator allows).
    width = max(1, round(0.5 * truth.frame_rate))
    per_roi = []
    per_roi_binned = []
    for i in range(spikes[0].shape[0]):
        inferred = np.concatenate([s[i] for s in spikes])
        true = np.concatenate([t[i] for t in truth.spikes]).astype(np.float64)
        if np.std(true) == 0 or not np.all(np.isfinite(inferred)) or np.std(inferred) == 0:
            continue
        per_roi.append(float(np.corrcoef(inferred, true)[0, 1]))
        n = inferred.size // width * width
        a = inferred[:n].reshape(-1, width).sum(axis=1)
        b = true[:n].reshape(-1, width).sum(axis=1)
        per_roi_binned.append(float(np.corrcoef(a, b)[0, 1]))
    solvers = np.concatenate([p["solver"] for p in params])
    score = SpikeScore(
        per_roi=tuple(per_roi),
        per_roi_binned=tuple(per_roi_binned),
        gamma=float(params[0]["gamma"][0]),
        sigma_median=float(np.median(params[0]["sigma"])),
        fast_solver_traces=int((solvers == "fast").sum()),
        traces=int(solvers.size),
        notes=notes,
    )
    print(
        f"  gamma {score.gamma:.3f} (shared), sigma median {score.sigma_median:.3f}; "
        f"{score.fast_solver_traces}/{score.traces} traces certified by the fast solver",
        file=out,
    )
    print(
        f"  correlation of inferred with true spikes per ROI: median "
        f"{score.median_correlation:.3f} (frame by frame), "
        f"{score.median_correlation_binned:.3f} (0.5 s bins); "
        f"min {np.min(per_roi):.3f} / {np.min(per_roi_binned):.3f}",
        file=out,
    )
    return score


def _score_cross_session(dataset: Any, rois: Any, out: TextIO) -> CrossSessionScore:
    """Warp the first 40 frames by a known affine, import the ROIs by registration, score."""
    from skimage.transform import AffineTransform, warp

    from sima_fast import ImagingDataset, Sequence
    from sima_fast._geometry import polygon_to_mask
    from sima_fast.transform_rois import ROIOutsideFrameWarning

    _, rows, cols, _ = dataset.frame_shape
    centre = np.array([cols / 2, rows / 2])
    # In ROI coordinates (pixel centres at +0.5): rotate 8°, scale 1.05 and shear
    # about the centre, then shift by 6% and -4% of the field of view.
    affine = (
        AffineTransform(translation=-centre)
        + AffineTransform(rotation=np.deg2rad(8.0), scale=1.05, shear=0.03)
        + AffineTransform(translation=centre + np.array([0.06 * cols, -0.04 * rows]))
    )
    frames = np.asarray(dataset.sequences[0][:40], dtype=np.float64)  # (T, Z, Y, X, C)
    warped = np.empty_like(frames)

    def source_pixel(q: np.ndarray) -> np.ndarray:
        return affine.inverse(q + 0.5) - 0.5

    for t in range(frames.shape[0]):
        for z in range(frames.shape[1]):
            for c in range(frames.shape[4]):
                warped[t, z, :, :, c] = warp(
                    frames[t, z, :, :, c],
                    source_pixel,
                    order=1,
                    preserve_range=True,
                    mode="edge",
                )
    session = ImagingDataset(
        [Sequence.create("ndarray", warped)], None, channel_names=dataset.channel_names
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ROIOutsideFrameWarning)
        imported = session.import_transformed_ROIs(
            dataset, source_label="imagej", target_label="from_session_1"
        )
    by_label = {roi.label: roi for roi in imported}  # ImageJ ROIs have labels, not ids
    errors, ious = [], []
    for roi in rois:
        ring = roi.polygons[0]
        z = int(ring[0, 2]) if ring.shape[1] > 2 else 0
        true_xy = affine(ring[:, :2])
        true_mask = polygon_to_mask(true_xy, (rows, cols))
        if true_mask.sum() < 20 or roi.label not in by_label:
            continue
        got_mask = np.asarray(by_label[roi.label])[z]
        ious.append((true_mask & got_mask).sum() / (true_mask | got_mask).sum())
        inside = true_xy.min() >= 2 and true_xy[:, 0].max() <= cols - 2
        if inside and true_xy[:, 1].max() <= rows - 2:
            got = by_label[roi.label].polygons[0]
            if got.shape[0] == ring.shape[0]:
                errors.append(float(np.linalg.norm(got[:, :2] - true_xy, axis=1).mean()))
    iou = np.asarray(ious)
    print(
        f"  {len(imported)} ROIs imported by registering the time averages (8° rotation, "
        f"5 % scale, shear, shifts); mean vertex error {np.mean(errors):.2f} px, "
        f"{(iou >= 0.7).mean():.0%} with IoU >= 0.7 (median IoU {np.median(iou):.2f})",
        file=out,
    )
    return CrossSessionScore(
        imported=len(imported),
        mean_vertex_error=float(np.mean(errors)),
        fraction_iou_at_least_0_7=float((iou >= 0.7).mean()),
        median_iou=float(np.median(iou)),
    )


def _score_segmentation(dataset: Any, truth: Any, out: TextIO) -> dict[str, SegmentationScore]:
    """Segment with STICA and normalised cuts (default pipelines); match with the true cells."""
    from sima_fast.segment import STICA, PlaneNormalizedCuts, match_rois

    scores = {}
    for name, strategy in (("stica", STICA()), ("normcut", PlaneNormalizedCuts())):
        title = type(strategy).__name__
        with _step(f"segmentation: {title} (default pipeline) against the true cells", out):
            found = dataset.segment(strategy, label=f"demo_{name}")
            score = match_rois(found, truth.masks, iou_threshold=0.5)
        print(
            f"  {len(found)} ROIs found for {len(truth.masks)} cells: precision "
            f"{score['precision']:.2f}, recall {score['recall']:.2f}, F1 {score['f1']:.2f} "
            f"(IoU >= 0.5, mean IoU of matches {score['mean_iou']:.2f})",
            file=out,
        )
        scores[name] = SegmentationScore(
            strategy=title,
            found=len(found),
            cells=len(truth.masks),
            **{k: float(score[k]) for k in ("precision", "recall", "f1", "mean_iou")},
        )
    return scores

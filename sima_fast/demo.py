"""The ``sima-fast demo`` job: the main analysis run end to end, scored and drawn.

:func:`run_demo` copies the bundled example dataset (built on first use
from the deterministic simulator, see :func:`sima_fast.misc.example_data`)
into an output folder and runs the whole analysis on the copy, step by
step, printing what each step did, how long it took and how it compares
with the simulator's ground truth:

1. copy the example dataset into the folder and print its summary;
2. compute the time projections (mean, std, kurtosis) in one streaming
   pass and check them against float64 numpy/scipy on a pixel sample;
3. export the averages to TIFF and the gap-filled frames to HDF5;
4. import the example ImageJ ROIs and compare their rasterisation with the
   true cell masks;
5. extract the traces of those ROIs, export them to CSV, correlate them
   with the true calcium and draw the ROIs on the mean image;
6. infer spikes, correlate them with the true spikes and draw example
   traces beside the truth; export ROIs, traces, spikes and images as NWB
   and print nwbinspector's verdict (when the ``nwb`` extra is installed);
7. warp a second session by a known affine transform, import the ROIs into
   it by registration, measure how close they land to where they should
   and draw the registration;
8. segment the dataset with STICA and with normalised cuts, score both
   against the true cells and draw them over the true outlines;
9. motion-correct the uncorrected rigid example
   (:func:`sima_fast.misc.example_uncorrected`) with
   :class:`sima_fast.motion.RigidRegistration2D` into a new dataset, score
   the displacements against the true ones and the sharpness of the mean
   image, and draw both; estimate the row-wise example with
   ``HiddenMarkov2D`` and the non-rigid one with a non-rigid strategy, when
   ``sima_fast.motion`` has them, and score them too.

The output folder (``./sima_fast_demo`` by default) ends up holding::

    sima_fast_demo.json     marks the folder as the demo's and lists its files
    example.sima/           the copy of the dataset, with the demo's ROI sets and signals
    motion.sima/            the rigid motion example, corrected (views of the cached movie)
    exports/                average_<channel>.tif, sequence_<k>.h5, signals.csv,
                            example.nwb (with the nwb extra)
    fig1_rois.png, .pdf     the mean image with the numbered ROI outlines
    fig2_traces.png         example traces with inferred and true spikes
    fig3_cross_session.png  the registration of the second session
    fig4_segmentation.png   found outlines against the true cells
    fig5_motion.png         mean image before and after motion correction, displacements

The shared example and the uncorrected motion examples in the cache are
only read (the copies refer to their frame files). Running the demo again
into the same folder replaces the files the marker lists; a folder holding
anything else is refused, so the demo never deletes a file it did not
write. Without matplotlib the figures are skipped and the rest runs. The
scores come back as a :class:`DemoReport`, so that tests and users can
check them without parsing the printed text.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TextIO

import numpy as np

__all__ = [
    "DEFAULT_OUTPUT_DIR",
    "MARKER",
    "MOTION_TARGETS",
    "CrossSessionScore",
    "DemoReport",
    "ExportCheck",
    "ExtractionScore",
    "MotionScore",
    "ProjectionCheck",
    "ROIImportScore",
    "SegmentationScore",
    "SpikeScore",
    "prepare_output_folder",
    "run_demo",
]

#: Where the demo writes when no folder is given (relative to the current directory).
DEFAULT_OUTPUT_DIR = "sima_fast_demo"
#: The file marking a folder as the demo's; it lists every file the demo wrote there.
MARKER = "sima_fast_demo.json"
_MARKER_KIND = "sima-fast demo output"

#: The accuracy the motion step aims at (issue 14): rigid RMS error (px), fraction of
#: row displacements exact (row-wise, hidden Markov model), non-rigid block RMS error (px).
MOTION_TARGETS = {"rigid_rms_px": 0.1, "rowwise_exact": 0.95, "nonrigid_rms_px": 0.3}
#: Names under which sima_fast.motion may offer a row-wise and a non-rigid strategy.
_ROWWISE_NAMES = ("HiddenMarkov2D",)
_NONRIGID_NAMES = ("NonRigid2D", "PiecewiseRigid2D", "BlockRegistration2D")
#: Blocks of the non-rigid strategy on the 128 x 128 example frames (3 x 3 blocks).
_NONRIGID_BLOCK = (64, 64)


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
    noise_fallback_rois : int
        ROIs whose noise level came from the spectral estimate because
        their traces are too short or too correlated in time for the
        autocovariance estimate.
    """

    per_roi: tuple[float, ...]
    per_roi_binned: tuple[float, ...]
    gamma: float
    sigma_median: float
    fast_solver_traces: int
    traces: int
    notes: tuple[str, ...]
    noise_fallback_rois: int = 0

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
class MotionScore:
    """Motion correction of the uncorrected examples scored against the true motion.

    Attributes
    ----------
    frames : int
        Frames of each example used (all of them, 120, in the demo).
    rigid_strategy : str
        Class name of the rigid strategy (``'RigidRegistration2D'``).
    rigid_rms_error : float
        RMS error, in pixels, of the displacements the correction applied
        against the true ones (:func:`sima_fast.misc.rigid_rms_error`, each
        plane's mean difference removed).
    sharpness_uncorrected, sharpness_corrected : float
        Gradient energy of the mean image of the structural channel before
        and after correction (:func:`sima_fast.misc.mean_image_sharpness`).
    corrected_path : str
        The corrected dataset's directory.
    rowwise_strategy : str or None
        Class name of the row-wise strategy; None when ``sima_fast.motion``
        has none (the step was skipped).
    rowwise_exact_fraction : float or None
        Fraction of row displacements estimated exactly
        (:func:`sima_fast.misc.row_exact_fraction`).
    nonrigid_strategy : str or None
        Class name of the non-rigid strategy; None when skipped.
    nonrigid_rms_error : float or None
        RMS error, in pixels, of its block shifts against the true field
        averaged over each block (:func:`sima_fast.misc.block_rms_error`,
        each plane's offset fitted).
    notes : tuple of str
        Why a part was skipped.
    """

    frames: int
    rigid_strategy: str
    rigid_rms_error: float
    sharpness_uncorrected: float
    sharpness_corrected: float
    corrected_path: str
    rowwise_strategy: str | None = None
    rowwise_exact_fraction: float | None = None
    nonrigid_strategy: str | None = None
    nonrigid_rms_error: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def sharpness_gain(self) -> float:
        """Ratio of the corrected to the uncorrected mean image's sharpness."""
        return self.sharpness_corrected / self.sharpness_uncorrected

    @property
    def within_targets(self) -> bool:
        """Whether every score measured meets its :data:`MOTION_TARGETS` entry."""
        ok = self.rigid_rms_error <= MOTION_TARGETS["rigid_rms_px"]
        if self.rowwise_exact_fraction is not None:
            ok &= self.rowwise_exact_fraction >= MOTION_TARGETS["rowwise_exact"]
        if self.nonrigid_rms_error is not None:
            ok &= self.nonrigid_rms_error <= MOTION_TARGETS["nonrigid_rms_px"]
        return bool(ok)

    def summary(self) -> str:
        """Put the motion scores in a few words, for :meth:`DemoReport.summary`.

        Returns
        -------
        str
            The rigid RMS error, and the row-wise and non-rigid scores when
            they were measured.
        """
        parts = [f"motion RMS error {self.rigid_rms_error:.3f} px (rigid)"]
        if self.rowwise_exact_fraction is not None:
            parts.append(f"{self.rowwise_exact_fraction:.1%} rows exact (row-wise)")
        if self.nonrigid_rms_error is not None:
            parts.append(f"{self.nonrigid_rms_error:.2f} px (non-rigid)")
        return ", ".join(parts)


@dataclass(frozen=True)
class DemoReport:
    """Everything :func:`run_demo` measured and wrote, one attribute per step.

    Attributes
    ----------
    dataset_path : str
        Directory of the dataset the demo ran on: its copy of the example.
    projections : ProjectionCheck
    exports : ExportCheck
    rois : ROIImportScore
    extraction : ExtractionScore
    spikes : SpikeScore
    cross_session : CrossSessionScore
    segmentation : dict of str to SegmentationScore
        Keyed ``'stica'`` and ``'normcut'``.
    motion : MotionScore or None
        The motion step (None in reports built without it).
    nwb_verdict : str or None
        nwbinspector's one-line verdict on ``exports/example.nwb``, or None
        when the ``nwb`` extra is not installed.
    output_dir : str or None
        The folder the demo wrote into (absolute).
    files : tuple of str
        The exports and figures written, absolute paths in the order
        written (the dataset copy is :attr:`dataset_path`).
    skipped_figures : tuple of str
        File names of the figures not drawn because matplotlib is missing.
    """

    dataset_path: str
    projections: ProjectionCheck
    exports: ExportCheck
    rois: ROIImportScore
    extraction: ExtractionScore
    spikes: SpikeScore
    cross_session: CrossSessionScore
    segmentation: dict[str, SegmentationScore]
    output_dir: str | None = None
    files: tuple[str, ...] = ()
    skipped_figures: tuple[str, ...] = ()
    motion: MotionScore | None = None
    nwb_verdict: str | None = None

    def summary(self) -> str:
        """One line with the headline scores.

        Returns
        -------
        str
            ROI masks exact, median trace and spike correlations, the F1
            score of both segmentations and the motion scores.
        """
        motion = "" if self.motion is None else f", {self.motion.summary()}"
        return (
            f"{self.rois.exact_masks}/{self.rois.cells} ROI masks exact, traces correlate with "
            f"the true calcium at median r = {self.extraction.median_correlation:.3f}, "
            f"inferred spikes correlate with the true spikes at median r = "
            f"{self.spikes.median_correlation:.3f}, segmentation F1 "
            f"{self.segmentation['stica'].f1:.2f} (STICA) / "
            f"{self.segmentation['normcut'].f1:.2f} (normalised cuts)"
            f"{motion}"
        )


# ----------------------------------------------------------------------------
# The output folder
# ----------------------------------------------------------------------------


def prepare_output_folder(path: str | os.PathLike) -> str:
    """Create the demo's output folder, or clear the demo's own files from it.

    A missing or empty folder is created and marked with :data:`MARKER`. A
    folder already marked is emptied of the files and folders its marker
    lists, and only of those. A folder holding anything else (no marker, or
    entries the marker does not list) is refused before anything is
    touched: the demo never deletes a file it did not write.

    Parameters
    ----------
    path : str or path-like
        The folder.

    Returns
    -------
    str
        Its absolute path, holding only the marker.

    Raises
    ------
    FileExistsError
        If the folder holds files the demo did not write; the message names
        a few of them.
    NotADirectoryError
        If ``path`` is a file.
    """
    root = os.path.abspath(os.fspath(path))
    if os.path.lexists(root) and not os.path.isdir(root):
        raise NotADirectoryError(f"the demo's output folder {root} is a file, not a folder")
    os.makedirs(root, exist_ok=True)
    entries = _folder_entries(root)
    if entries:
        listed = _read_marker(root)
        if listed is None:
            raise FileExistsError(
                f"{root} already exists and was not written by sima-fast demo (it holds "
                f"{_some(entries)}); the demo never deletes files it did not write: choose "
                "another folder with --out, or empty this one"
            )
        foreign = [e for e in entries if e != MARKER and e not in listed]
        if foreign:
            raise FileExistsError(
                f"{root} holds files the demo did not write ({_some(foreign)}); the demo "
                "never deletes them: move them elsewhere or choose another folder with --out"
            )
        # deepest first, so that every folder is empty when it is removed
        for entry in sorted(entries, key=lambda e: e.rstrip("/").count("/"), reverse=True):
            full = os.path.join(root, entry.rstrip("/"))
            if entry.endswith("/"):
                os.rmdir(full)
            elif entry != MARKER:
                os.remove(full)
    _write_marker(root)
    return root


def _folder_entries(root: str) -> list[str]:
    """Every file and folder under ``root``, relative, folders ending in ``/``."""
    entries = []
    for top, dirs, files in os.walk(root):
        rel = os.path.relpath(top, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        for name in dirs:
            is_link = os.path.islink(os.path.join(top, name))  # never descended into
            entries.append(prefix + name + ("" if is_link else "/"))
        entries.extend(prefix + name for name in files)
    return sorted(entries)


def _read_marker(root: str) -> set[str] | None:
    """Return the entries the demo's marker lists, or None without a valid marker."""
    try:
        with open(os.path.join(root, MARKER), encoding="utf-8") as fh:
            marker = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("written_by") != _MARKER_KIND:
        return None
    entries = marker.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        return None
    return set(entries)


def _write_marker(root: str) -> None:
    """Mark ``root`` as the demo's, listing everything in it now."""
    from sima_fast import __version__
    from sima_fast._atomic import atomic_write

    marker = {
        "written_by": _MARKER_KIND,
        "sima_fast_version": __version__,
        "about": "sima-fast demo wrote this folder. Running it here again deletes the "
        "entries listed below, and only those, before writing them anew.",
        "entries": [e for e in _folder_entries(root) if e != MARKER],
    }
    with atomic_write(os.path.join(root, MARKER)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(marker, fh, indent=2)
        fh.write("\n")


def _some(entries: list[str], limit: int = 4) -> str:
    """Name a few entries: ``'a', 'b', … (12 in all)``."""
    shown = ", ".join(repr(e) for e in entries[:limit])
    return shown if len(entries) <= limit else f"{shown}, … ({len(entries)} in all)"


class _Outputs:
    """The files the demo writes into its folder, and the figures it skips."""

    def __init__(self, root: str, out: TextIO) -> None:
        from sima_fast import figures

        self.root = root
        self.out = out
        self.files: list[str] = []
        self.skipped: list[str] = []
        try:
            figures.require_matplotlib()
            self.can_draw = True
        except ImportError:
            self.can_draw = False

    def path(self, *parts: str) -> str:
        """Absolute path of an output, its folder created."""
        full = os.path.join(self.root, *parts)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return full

    def wrote(self, paths: list[str], what: str) -> None:
        """Record files written and print where they went."""
        self.files.extend(paths)
        names = ", ".join(os.path.relpath(p, self.root).replace(os.sep, "/") for p in paths)
        print(f"  wrote {names}: {what}", file=self.out)

    def figure(self, name: str, what: str, draw: Callable[[], list[str]]) -> None:
        """Draw a figure with ``draw`` (returning the files it wrote), or note it skipped."""
        if not self.can_draw:
            self.skipped.append(name)
            print(f"  figure {name} skipped: matplotlib is not installed", file=self.out)
            return
        self.wrote(draw(), what)


# ----------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------

_FIGURES = {
    "fig1_rois.png": "the mean image with the numbered ROI outlines (also as PDF)",
    "fig2_traces.png": "example traces with inferred spikes beside the simulator's truth",
    "fig3_cross_session.png": "the second session: overlays before and after registration, "
    "imported ROIs",
    "fig4_segmentation.png": "STICA and normalised cuts against the true cells",
    "fig5_motion.png": "mean image before and after motion correction, displacements "
    "against the truth",
}


def run_demo(
    out: TextIO | None = None,
    quiet: bool = False,
    output_dir: str | os.PathLike = DEFAULT_OUTPUT_DIR,
) -> DemoReport:
    """Run the end-to-end demo on a copy of the example dataset; score and draw it.

    The steps and the files written are listed in :mod:`sima_fast.demo`.
    Each step is announced with ``- <step> ...``, followed by its duration,
    its scores and the files it wrote; the whole run takes about a minute
    on two cores once the example dataset exists. The example in the cache
    is only read.

    Parameters
    ----------
    out : text stream, optional
        Where to print the progress and the scores. Default: standard
        output.
    quiet : bool, optional
        Hide the progress bar of the projection pass. Default: False.
    output_dir : str or path-like, optional
        The folder to write into (see :func:`prepare_output_folder`).
        Default: ``sima_fast_demo`` in the current directory.

    Returns
    -------
    DemoReport
        The scores printed, one attribute per step, and the files written.

    Raises
    ------
    FileExistsError
        If ``output_dir`` holds files the demo did not write.
    NotADirectoryError
        If ``output_dir`` is a file.
    """
    out = sys.stdout if out is None else out
    root = prepare_output_folder(output_dir)
    outputs = _Outputs(root, out)
    print(f"- output folder: {root}", file=out)
    if not outputs.can_draw:
        print(
            "  matplotlib is not installed: the demo runs without its figures "
            "(pip install 'sima_fast[plot]' to draw them)",
            file=out,
        )
    try:
        dataset, truth = _load_example(os.path.join(root, "example.sima"), out)
        projections = _check_projections(dataset, out, progress=not quiet)
        exports = _check_exports(dataset, outputs)
        rois, roi_score = _import_imagej_rois(dataset, truth, out)
        extraction, record = _score_extraction(dataset, rois, truth, outputs)
        spikes = _score_spikes(dataset, record, truth, outputs)
        nwb_verdict = _export_nwb(dataset, truth, outputs)
        cross_session = _score_cross_session(dataset, rois, outputs)
        segmentation = _score_segmentation(dataset, truth, outputs)
        motion = _score_motion(outputs)
    finally:
        _write_marker(root)  # whatever happened, what is in the folder now is the demo's
    _print_outputs(outputs, len(rois))
    return DemoReport(
        dataset_path=str(dataset.savedir),
        projections=projections,
        exports=exports,
        rois=roi_score,
        extraction=extraction,
        spikes=spikes,
        cross_session=cross_session,
        segmentation=segmentation,
        output_dir=root,
        files=tuple(outputs.files),
        skipped_figures=tuple(outputs.skipped),
        motion=motion,
        nwb_verdict=nwb_verdict,
    )


def _print_outputs(outputs: _Outputs, n_rois: int) -> None:
    """List the folder's contents and say which file to open first."""
    out = outputs.out
    print(f"- outputs in {outputs.root}", file=out)
    print(
        "  example.sima/           the copy of the example dataset, with the demo's ROI sets "
        "and signals",
        file=out,
    )
    print(
        "  motion.sima/            the rigid motion example, corrected (views of the cached "
        "movie, with the displacements)",
        file=out,
    )
    exported = [p for p in outputs.files if os.path.dirname(p).endswith("exports")]
    print(
        "  exports/                " + ", ".join(os.path.basename(p) for p in exported), file=out
    )
    for name, what in _FIGURES.items():
        state = "" if name not in outputs.skipped else "  (skipped: no matplotlib)"
        print(f"  {name:<23} {what}{state}", file=out)
    if outputs.can_draw:
        first = os.path.join(outputs.root, "fig1_rois.png")
        print(f"open {first} to see the {n_rois} ROIs numbered on the mean image", file=out)
    else:
        first = os.path.join(outputs.root, "exports", "signals.csv")
        print(
            f"open {first} to see the {n_rois} extracted traces (install matplotlib for the "
            "figures)",
            file=out,
        )


@contextlib.contextmanager
def _step(name: str, out: TextIO) -> Iterator[None]:
    """Announce a step, then print how long its body took."""
    start = time.perf_counter()
    print(f"- {name} ...", file=out, flush=True)
    yield
    print(f"  done in {time.perf_counter() - start:.2f} s", file=out, flush=True)


def _load_example(savedir: str, out: TextIO) -> tuple[Any, Any]:
    """Copy the example dataset (built on first use) to ``savedir``; load its ground truth.

    The copy is a new dataset directory over the example's sequences: it
    reads the cached frame files and carries none of the cache's ROI sets,
    signals or projections, so the demo never writes into the cache.

    Returns
    -------
    dataset : ImagingDataset
    truth : ExampleGroundTruth
        What :func:`sima_fast.misc.example_ground_truth` returns.
    """
    from sima_fast.imaging import ImagingDataset
    from sima_fast.misc import example_data, example_ground_truth
    from sima_fast.summary import dataset_summary

    with _step("example dataset (built on first use from the simulator), copied", out):
        shared = ImagingDataset.load(example_data(), read_only=True)
        truth = example_ground_truth()
        dataset = ImagingDataset(
            list(shared.sequences), savedir, channel_names=list(shared.channel_names)
        )
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


def _check_exports(dataset: Any, outputs: _Outputs) -> ExportCheck:
    """Export the averages and the gap-filled frames into ``exports/``; count NaNs."""
    import h5py

    with _step("exports: averages to TIFF16, gap-filled frames to HDF5", outputs.out):
        tifs = [outputs.path("exports", f"average_{n}.tif") for n in dataset.channel_names]
        dataset.export_averages(tifs, fmt="TIFF16")
        h5s = [outputs.path("exports", f"sequence_{i}.h5") for i in range(dataset.num_sequences)]
        dataset.export_frames(h5s, fmt="HDF5", fill_gaps=True)
        nan_left = 0
        for path in h5s:
            with h5py.File(path, "r") as f:
                nan_left += int(np.isnan(f["imaging"][()]).sum())
        sizes = sum(os.path.getsize(p) for p in tifs + h5s)
    print(
        f"  {len(tifs)} TIFF projections and {len(h5s)} HDF5 movies ({sizes / 1e6:.1f} MB); "
        f"values left NaN by gap filling (pixels never observed): {nan_left}",
        file=outputs.out,
    )
    outputs.wrote(tifs, "time averages, one 16-bit TIFF per channel")
    outputs.wrote(h5s, "gap-filled frames, one HDF5 movie per sequence")
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


def _score_extraction(
    dataset: Any, rois: Any, truth: Any, outputs: _Outputs
) -> tuple[ExtractionScore, dict[str, Any]]:
    """Extract the ROIs' GCaMP traces as ``'demo'``; correlate with the true calcium; draw."""
    from sima_fast.extract import roi_mask_matrix, save_extract_summary

    out = outputs.out
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
    csv_path = outputs.path("exports", "signals.csv")
    dataset.export_signals(csv_path, channel="GCaMP", signals_label="demo")
    outputs.wrote([csv_path], "the traces, one column per ROI, one row per frame")
    outputs.figure(
        "fig1_rois.png",
        _FIGURES["fig1_rois.png"],
        lambda: save_extract_summary(
            signals,
            outputs.path("fig1_rois.pdf"),
            roi_mask_matrix(rois, dataset.frame_shape[:3]),
            label="demo",
        )[::-1],  # the PNG first
    )
    score = ExtractionScore(
        traces=len(rois),
        frames=frames,
        median_correlation=float(np.median(corr)),
        mean_correlation=float(corr.mean()),
        min_correlation=float(corr.min()),
    )
    return score, signals


def _noise_fallbacks(raw: list[np.ndarray], gammas: np.ndarray) -> tuple[int, set[str]]:
    """Count the ROIs whose noise level needs the spectral fallback.

    Returns
    -------
    count : int
        ROIs for which :func:`sima_fast.spikes.estimate_noise` (``'correct'``
        mode, with the ROI's decay) falls back to the spectral estimate.
    messages : set of str
        The warnings :func:`sima_fast.spikes.estimate_roi_parameters` raises about
        the noise level alone (its decay given), to tell them from the others.
    """
    from sima_fast.spikes import SpikeInferenceWarning, estimate_noise, estimate_roi_parameters

    count = 0
    for i in range(raw[0].shape[0]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SpikeInferenceWarning)
            estimate_noise([r[i] for r in raw], float(gammas[i]), mode="correct")
        count += any(issubclass(w.category, SpikeInferenceWarning) for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpikeInferenceWarning)
        estimate_roi_parameters(raw, gamma=gammas, mode="correct")
    return count, {str(w.message) for w in caught}


def _score_spikes(
    dataset: Any, record: dict[str, Any], truth: Any, outputs: _Outputs
) -> SpikeScore:
    """Infer spikes from the ``'demo'`` signals; correlate with the true spikes; draw examples."""
    from sima_fast.spikes import SpikeInferenceWarning

    out = outputs.out
    with _step("spike inference: AR(1) deconvolution of every extracted trace", out):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SpikeInferenceWarning)
            spikes, _fits, params = dataset.infer_spikes(channel="GCaMP", label="demo")
    notes = tuple(str(w.message) for w in caught)
    gammas = np.asarray(params[0]["gamma"], dtype=np.float64)
    fallbacks, noise_messages = _noise_fallbacks(record["raw"], gammas)
    if fallbacks:
        print(
            f"  noise level: {fallbacks} of {gammas.size} ROIs too short or too correlated in "
            "time for the autocovariance estimate; the spectral estimate was used for them",
            file=out,
        )
    for note in notes:
        if note not in noise_messages:
            print(f"  note: {note}", file=out)
    # Compare at the imaging frame rate and in 0.5 s bins (spike timing within
    # a few frames is all the indicator allows).
    width = max(1, round(0.5 * truth.frame_rate))
    scored = []  # (roi, r, r binned)
    for i in range(spikes[0].shape[0]):
        inferred = np.concatenate([s[i] for s in spikes])
        true = np.concatenate([t[i] for t in truth.spikes]).astype(np.float64)
        if np.std(true) == 0 or not np.all(np.isfinite(inferred)) or np.std(inferred) == 0:
            continue
        n = inferred.size // width * width
        a = inferred[:n].reshape(-1, width).sum(axis=1)
        b = true[:n].reshape(-1, width).sum(axis=1)
        scored.append(
            (i, float(np.corrcoef(inferred, true)[0, 1]), float(np.corrcoef(a, b)[0, 1]))
        )
    per_roi = [r for _, r, _ in scored]
    per_roi_binned = [r for _, _, r in scored]
    solvers = np.concatenate([p["solver"] for p in params])
    score = SpikeScore(
        per_roi=tuple(per_roi),
        per_roi_binned=tuple(per_roi_binned),
        gamma=float(params[0]["gamma"][0]),
        sigma_median=float(np.median(params[0]["sigma"])),
        fast_solver_traces=int((solvers == "fast").sum()),
        traces=int(solvers.size),
        notes=notes,
        noise_fallback_rois=fallbacks,
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
    outputs.figure(
        "fig2_traces.png",
        _FIGURES["fig2_traces.png"],
        lambda: [_draw_traces(record, spikes, truth, scored, outputs.path("fig2_traces.png"))],
    )
    return score


def _export_nwb(dataset: Any, truth: Any, outputs: _Outputs) -> str | None:
    """Export the ``'demo'`` results as NWB and print nwbinspector's verdict."""
    import importlib.util

    out = outputs.out
    if any(importlib.util.find_spec(m) is None for m in ("pynwb", "nwbinspector")):
        print(
            "- NWB export skipped: install the nwb extra (pip install 'sima_fast[nwb]') to write "
            "exports/example.nwb",
            file=out,
        )
        return None
    metadata = {
        "session_description": "sima_fast demo: the simulated example dataset",
        "session_start_time": "2024-01-01T00:00:00+00:00",
        "experiment_description": "a deterministic simulation of two-photon calcium imaging",
        "subject": {
            "subject_id": "simulated-1",
            "species": "Mus musculus",
            "sex": "U",
            "age": "P90D",
            "description": "no animal: the frames come from sima_fast's simulator",
        },
        "imaging_plane": {
            "excitation_lambda": 920.0,
            "indicator": "GCaMP (simulated)",
            "location": "VISp",
            "imaging_rate": float(truth.frame_rate),
            "optical_channel": {"name": "GCaMP", "emission_lambda": 510.0},
        },
    }
    path = outputs.path("exports", "example.nwb")
    with _step(
        "NWB export: ROIs, traces, spikes and time projections, checked by nwbinspector", out
    ):
        verdict = dataset.export_nwb(
            path,
            metadata=metadata,
            channel="GCaMP",
            signals_label="demo",
            overwrite=True,
            inspect=True,
        )
    outputs.wrote([path], "masks, traces, spikes and images for pynwb, DANDI and roiextractors")
    print(f"  {verdict.summary()}", file=out)
    return verdict.summary()


def _draw_traces(
    record: dict[str, Any], spikes: list[np.ndarray], truth: Any, scored: list, path: str
) -> str:
    """Draw sequence 0 of the best, median, lower-quartile and worst scored ROIs."""
    from sima_fast import figures

    ranked = sorted(scored, key=lambda s: -s[1])
    picks = []
    for q in (0.0, 0.5, 0.75, 1.0):
        pick = ranked[round(q * (len(ranked) - 1))]
        if pick not in picks:
            picks.append(pick)
    rows = [i for i, _, _ in picks]
    kinds = ["best", "median", "lower quartile", "worst"][: len(rows)]
    names = [
        f"ROI {i} (plane {int(truth.planes[i])}), {kind}: inferred vs true spikes r = {r:.2f} "
        f"frame by frame, {rb:.2f} in 0.5 s bins"
        for (i, r, rb), kind in zip(picks, kinds, strict=True)
    ]
    raw = record["raw"][0]
    fig = figures.traces_figure(
        np.arange(raw.shape[1]) / truth.frame_rate,
        raw[rows],
        spikes[0][rows],
        true_spikes=truth.spikes[0][rows],
        true_calcium=truth.calcium[0][rows],
        names=names,
        title="Sequence 0: extracted traces and inferred spikes against the simulator's truth",
    )
    return figures.save_figure(fig, path)


def _score_cross_session(dataset: Any, rois: Any, outputs: _Outputs) -> CrossSessionScore:
    """Warp the first 40 frames by a known affine, import the ROIs by registration, score."""
    from skimage.transform import AffineTransform, warp

    from sima_fast import ImagingDataset, Sequence
    from sima_fast._geometry import polygon_to_mask
    from sima_fast.transform_rois import ROIOutsideFrameWarning

    step = "cross-session ROI import: a second session seen through a known affine"
    with _step(step, outputs.out):
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
            ring = roi.rings[0]
            z = int(ring[0, 2]) if ring.shape[1] > 2 else 0
            true_xy = affine(ring[:, :2])
            true_mask = polygon_to_mask(true_xy, (rows, cols))
            if true_mask.sum() < 20 or roi.label not in by_label:
                continue
            got_mask = np.asarray(by_label[roi.label])[z]
            ious.append((true_mask & got_mask).sum() / (true_mask | got_mask).sum())
            inside = true_xy.min() >= 2 and true_xy[:, 0].max() <= cols - 2
            if inside and true_xy[:, 1].max() <= rows - 2:
                got = by_label[roi.label].rings[0]
                if got.shape[0] == ring.shape[0]:
                    errors.append(float(np.linalg.norm(got[:, :2] - true_xy, axis=1).mean()))
    iou = np.asarray(ious)
    print(
        f"  {len(imported)} ROIs imported by registering the time averages (8° rotation, "
        f"5 % scale, shear, shifts); mean vertex error {np.mean(errors):.2f} px, "
        f"{(iou >= 0.7).mean():.0%} with IoU >= 0.7 (median IoU {np.median(iou):.2f})",
        file=outputs.out,
    )
    outputs.figure(
        "fig3_cross_session.png",
        _FIGURES["fig3_cross_session.png"],
        lambda: [
            _draw_cross_session(
                dataset, session, rois, imported, affine, outputs.path("fig3_cross_session.png")
            )
        ],
    )
    return CrossSessionScore(
        imported=len(imported),
        mean_vertex_error=float(np.mean(errors)),
        fraction_iou_at_least_0_7=float((iou >= 0.7).mean()),
        median_iou=float(np.median(iou)),
    )


def _draw_cross_session(
    dataset: Any, session: Any, rois: Any, imported: Any, affine: Any, path: str
) -> str:
    """Draw plane 0 of the two sessions before and after registration, and the imported ROIs."""
    from sima_fast import figures
    from sima_fast.registration import warp_image
    from sima_fast.transform_rois import estimate_plane_transforms

    # The overlays show the structural channel, whose brightness does not
    # change with activity; the transform is the one the import used.
    channel = list(dataset.channel_names).index("tdTomato")
    source = dataset.time_averages[0, :, :, channel]
    target = session.time_averages[0, :, :, channel]
    (transform, *_) = estimate_plane_transforms(session, dataset)  # source ROI → target ROI

    def source_pixel(q: np.ndarray) -> np.ndarray:
        return transform.inverse(q + 0.5) - 0.5

    registered = warp_image(source, source_pixel)

    def on_plane_0(roi_list: Any) -> list[np.ndarray]:
        return [
            np.asarray(ring, dtype=np.float64)[:, :2]
            for roi in roi_list
            for ring in roi.rings
            if np.asarray(ring).shape[1] < 3 or int(ring[0, 2]) == 0
        ]

    fig = figures.registration_figure(
        source,
        target,
        registered,
        imported=[figures.outline_points(r) for r in on_plane_0(imported)],
        expected=[figures.outline_points(affine(r)) for r in on_plane_0(rois)],
        title="Second session: the first seen through a known affine (8° rotation, 5 % scale, "
        "shear, shift); plane 0, tdTomato time averages",
    )
    return figures.save_figure(fig, path)


def _score_segmentation(
    dataset: Any, truth: Any, outputs: _Outputs
) -> dict[str, SegmentationScore]:
    """Segment with STICA and normalised cuts (default pipelines); match with the true cells."""
    from sima_fast.segment import STICA, PlaneNormalizedCuts, match_rois

    scores = {}
    results = []
    for name, strategy in (("stica", STICA()), ("normcut", PlaneNormalizedCuts())):
        title = type(strategy).__name__
        with _step(
            f"segmentation: {title} (default pipeline) against the true cells", outputs.out
        ):
            found = dataset.segment(strategy, label=f"demo_{name}")
            score = match_rois(found, truth.masks, iou_threshold=0.5)
        print(
            f"  {len(found)} ROIs found for {len(truth.masks)} cells: precision "
            f"{score['precision']:.2f}, recall {score['recall']:.2f}, F1 {score['f1']:.2f} "
            f"(IoU >= 0.5, mean IoU of matches {score['mean_iou']:.2f})",
            file=outputs.out,
        )
        scores[name] = SegmentationScore(
            strategy=title,
            found=len(found),
            cells=len(truth.masks),
            **{k: float(score[k]) for k in ("precision", "recall", "f1", "mean_iou")},
        )
        masks = np.stack([np.asarray(roi, dtype=bool) for roi in found]) if len(found) else []
        results.append((title, masks, score["matches"]))

    def draw() -> list[str]:
        from sima_fast import figures

        fig = figures.segmentation_figure(
            dataset.time_averages[..., 0],
            truth.masks,
            results,
            title="Segmentation against the simulator's true cells (match: IoU >= 0.5)",
        )
        return [figures.save_figure(fig, outputs.path("fig4_segmentation.png"))]

    outputs.figure("fig4_segmentation.png", _FIGURES["fig4_segmentation.png"], draw)
    return scores


# ----------------------------------------------------------------------------
# Motion correction
# ----------------------------------------------------------------------------


@contextlib.contextmanager
def _recording(strategy: Any) -> Iterator[list[np.ndarray]]:
    """Record the displacements ``strategy.correct`` applies, one array per sequence.

    The strategy's own ``corrected_sequence`` still builds every view; the
    list yielded receives the displacements it was given, so the demo scores
    exactly what the correction applied, from one estimation.

    Yields
    ------
    list of numpy.ndarray
        Filled while ``strategy.correct`` runs.
    """
    applied: list[np.ndarray] = []
    build = strategy.corrected_sequence

    def corrected_sequence(sequence: Any, displacements: Any, frame_shape: Any) -> Any:
        applied.append(displacements)
        return build(sequence, displacements, frame_shape)

    strategy.corrected_sequence = corrected_sequence
    try:
        yield applied
    finally:
        del strategy.corrected_sequence


def _find_strategy(module: Any, names: tuple[str, ...]) -> Any:
    """Return the first of ``names`` that ``module`` has, or None."""
    for name in names:
        found = getattr(module, name, None)
        if found is not None:
            return found
    return None


def _make(cls: Any, **options: Any) -> Any:
    """Instantiate ``cls`` with the options its constructor accepts."""
    import inspect

    try:
        accepted = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
        return cls()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return cls(**options)
    return cls(**{k: v for k, v in options.items() if k in accepted})


def _plane_truth(truth: Any, z: int) -> Any:
    """Return the true motion of plane ``z`` alone (a one-plane MotionTruth)."""
    return replace(
        truth,
        scene_shape=(1, *truth.scene_shape[1:]),
        observed_shape=(1, *truth.observed_shape[1:]),
        displacements=truth.displacements[:, z : z + 1],
        weights=truth.weights[:, z : z + 1],
    )


def _score_motion(outputs: _Outputs, frames: int | None = None) -> MotionScore:
    """Correct the rigid example, estimate the row-wise and non-rigid ones; score and draw.

    Parameters
    ----------
    outputs : _Outputs
        Where to write (``motion.sima`` and ``fig5_motion.png``) and print.
    frames : int, optional
        Use the first ``frames`` frames of each example (default: all).

    Returns
    -------
    MotionScore
    """
    import sima_fast.motion as motion
    from sima_fast.misc import (
        block_rms_error,
        example_uncorrected,
        mean_image_sharpness,
        rigid_rms_error,
        row_exact_fraction,
    )

    out = outputs.out
    notes: list[str] = []
    example = example_uncorrected("rigid")
    seq = example.sequence()
    n = len(seq) if frames is None else max(2, min(int(frames), len(seq)))
    if n < len(seq):
        seq = seq[:n]
    used = f"{n} frames" if n == example.truth.num_frames else f"the first {n} frames"
    structural = example.channel_names.index("tdTomato")
    savedir = outputs.path("motion.sima")
    strategy = motion.RigidRegistration2D(n_processes=2)
    name = type(strategy).__name__
    with _step(
        f"motion correction: {name} on the uncorrected example (sub-pixel rigid motion of up "
        f"to ±6 px, {used}, {seq.shape[1]} planes, {seq.shape[2]} x {seq.shape[3]} px), saved "
        "as motion.sima",
        out,
    ):
        with _recording(strategy) as applied:
            corrected = strategy.correct(
                [seq],
                savedir,
                channel_names=example.channel_names,
            )
        rigid_error = rigid_rms_error(applied[0], example.truth.displacements[:n])
        before = mean_image_sharpness(seq, channel=structural)
        after = mean_image_sharpness(corrected.sequences[0], channel=structural)
    target = MOTION_TARGETS["rigid_rms_px"]
    print(
        f"  rigid: RMS error {rigid_error:.3f} px against the true displacements "
        f"(target <= {target:g} px){'' if rigid_error <= target else '  MISSED'}",
        file=out,
    )
    print(
        f"  mean-image sharpness (gradient energy, tdTomato): {before:.4f} uncorrected -> "
        f"{after:.4f} corrected ({after / before:.1f}x); corrected frames "
        f"{corrected.frame_shape[1]} x {corrected.frame_shape[2]} px (the rows and columns every "
        "frame sees)",
        file=out,
    )
    print(f"  wrote motion.sima/: the corrected dataset, {corrected.savedir}", file=out)

    rowwise_cls = _find_strategy(motion, _ROWWISE_NAMES)
    rowwise_fraction = None
    if rowwise_cls is None:
        notes.append(
            "row-wise example skipped: sima_fast.motion has no " + " / ".join(_ROWWISE_NAMES)
        )
        print(f"- {notes[-1]}", file=out)
    else:
        rows = example_uncorrected("rowwise")
        rseq = rows.sequence()[:n]
        with _step(
            f"motion estimation: {rowwise_cls.__name__} on the line-scan example (whole-pixel "
            f"motion of every scanned row, {used})",
            out,
        ):
            estimator = _make(rowwise_cls, verbose=False, n_processes=2)
            estimated = estimator.estimate([rseq])[0]
            rowwise_fraction = row_exact_fraction(estimated, rows.truth.displacements[:n])
        target = MOTION_TARGETS["rowwise_exact"]
        print(
            f"  row-wise: {rowwise_fraction:.1%} of the row displacements exact "
            f"(target >= {target:.0%}){'' if rowwise_fraction >= target else '  MISSED'}",
            file=out,
        )

    nonrigid_cls = _find_strategy(motion, _NONRIGID_NAMES)
    nonrigid_error = None
    if nonrigid_cls is None:
        notes.append(
            "non-rigid example skipped: sima_fast.motion has no " + " / ".join(_NONRIGID_NAMES)
        )
        print(f"- {notes[-1]}", file=out)
    else:
        bent = example_uncorrected("nonrigid")
        bseq = bent.sequence()[:n]
        with _step(
            f"motion estimation: {nonrigid_cls.__name__} on the non-rigid example (±4 px "
            f"translation, up to 2 px of deformation, {used})",
            out,
        ):
            estimator = _make(nonrigid_cls, block_size=_NONRIGID_BLOCK, n_processes=2)
            estimated = np.asarray(estimator.estimate([bseq])[0], dtype=np.float64)
            grid = getattr(estimator, "grid", None)
            block = getattr(estimator, "block_size", None)
            if grid is not None and estimated.ndim == 5:
                block = None if block is None else tuple(int(b) for b in block)
                # each plane is registered to its own reference: its own offset
                errors = [
                    block_rms_error(
                        estimated[:, z : z + 1],
                        _plane_truth(bent.truth, z),
                        grid[0],
                        grid[1],
                        block_shape=block,
                    )
                    for z in range(estimated.shape[1])
                ]
                nonrigid_error = float(np.sqrt(np.mean(np.square(errors))))
        if nonrigid_error is None:
            notes.append(
                f"non-rigid example not scored: {nonrigid_cls.__name__} records no block grid "
                "(a 'grid' attribute) beside (T, Z, Gy, Gx, 2) block shifts"
            )
            print(f"  {notes[-1]}", file=out)
        else:
            target = MOTION_TARGETS["nonrigid_rms_px"]
            gy, gx = estimated.shape[2:4]
            print(
                f"  non-rigid: block RMS error {nonrigid_error:.3f} px over {gy} x {gx} blocks "
                f"(target <= {target:g} px){'' if nonrigid_error <= target else '  MISSED'}",
                file=out,
            )

    outputs.figure(
        "fig5_motion.png",
        _FIGURES["fig5_motion.png"],
        lambda: [
            _draw_motion(
                seq,
                corrected.sequences[0],
                applied[0],
                example,
                structural,
                rigid_error,
                outputs.path("fig5_motion.png"),
            )
        ],
    )
    return MotionScore(
        frames=n,
        rigid_strategy=name,
        rigid_rms_error=rigid_error,
        sharpness_uncorrected=before,
        sharpness_corrected=after,
        corrected_path=str(corrected.savedir),
        rowwise_strategy=None if rowwise_cls is None else rowwise_cls.__name__,
        rowwise_exact_fraction=rowwise_fraction,
        nonrigid_strategy=None if nonrigid_cls is None else nonrigid_cls.__name__,
        nonrigid_rms_error=nonrigid_error,
        notes=tuple(notes),
    )


def _draw_motion(
    raw: Any,
    corrected: Any,
    displacements: Any,
    example: Any,
    channel: int,
    rms: float,
    path: str,
) -> str:
    """Draw plane 0: mean images before and after, estimated and true displacements."""
    from sima_fast import figures

    def mean_image(sequence: Any) -> np.ndarray:
        # (sequences keep every axis when indexed)
        frames = np.asarray(sequence[:, 0, :, :, channel], dtype=np.float64)[:, 0, :, :, 0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # pixels no frame observes
            return np.nanmean(frames, axis=0)

    n = len(raw)
    estimated = np.ma.filled(np.ma.asarray(displacements, dtype=np.float64), np.nan)[:, 0]
    fig = figures.motion_figure(
        mean_image(raw),
        mean_image(corrected),
        np.arange(n) / example.frame_rate,
        estimated,
        example.truth.displacements[:n, 0],
        title=f"Rigid motion correction of the uncorrected example (plane 0, tdTomato): "
        f"RMS error {rms:.3f} px over both planes",
    )
    return figures.save_figure(fig, path)

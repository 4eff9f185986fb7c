"""The ``sima-fast`` command line.

``sima-fast demo``
    Runs the main job end to end on the bundled example dataset (built on
    first use from the deterministic simulator) and scores what it can
    against the simulator's ground truth.
``sima-fast info PATH``
    Prints the summary of a dataset directory (sima_fast or SIMA 1.x).
``sima-fast project|extract|infer-spikes PATH ... [--scheduler ADDRESS]``
    Computes the time projections, extracts signals or infers spikes for
    one or more dataset directories, here or on a Dask cluster (an existing
    scheduler's address, or ``local`` for a cluster on this machine), with
    Dask's progress bars.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from collections.abc import Sequence as _Seq
from typing import Any, TextIO

import numpy as np

__all__ = ["dataset_summary", "main"]


def dataset_summary(dataset: Any) -> str:
    """A human-readable, multi-line summary of an :class:`ImagingDataset`.

    It lists the sequences (kind, shape, dtype), the frame shape, the
    channels, the ROI sets and the labels of extracted signals.
    """
    lines = [repr(dataset)]
    lines.append(f"  directory: {dataset.savedir or '(in memory)'}")
    z, y, x, c = dataset.frame_shape
    lines.append(f"  frame shape: {z} plane(s) x {y} rows x {x} columns x {c} channel(s)")
    lines.append(f"  channels: {', '.join(dataset.channel_names)}")
    for i, seq in enumerate(dataset.sequences):
        lines.append(f"  sequence {i}: {len(seq)} frames, {seq.dtype}, {seq.describe()}")
    rois = dataset.ROIs
    if rois:
        for label, roilist in rois.items():
            lines.append(f"  ROI set {label!r}: {len(roilist)} ROI(s)")
    else:
        lines.append("  ROI sets: none")
    any_signals = False
    for ch, name in enumerate(dataset.channel_names):
        for label, rec in dataset.signals(ch).items():
            any_signals = True
            n = len(rec.get("rois", [])) if isinstance(rec, dict) else 0
            lines.append(f"  signals {label!r} (channel {name}): {n} ROI(s)")
    if not any_signals:
        lines.append("  signals: none")
    return "\n".join(lines)


@contextlib.contextmanager
def _step(name: str, out: TextIO) -> Iterator[None]:
    start = time.perf_counter()
    print(f"- {name} ...", file=out, flush=True)
    yield
    print(f"  done in {time.perf_counter() - start:.2f} s", file=out, flush=True)


def run_demo(quiet: bool = False, out: TextIO | None = None) -> dict[str, Any]:
    """Run the end-to-end demo on the example dataset; return the scores.

    Steps: build (or reuse) the example dataset, print its summary, compute
    the time projections in one streaming pass, export them, import the
    example ImageJ ROIs and check them against the simulator's true masks,
    extract the traces and infer spikes, scoring both against the
    simulator's ground truth.
    """
    from sima_fast.imaging import ImagingDataset
    from sima_fast.misc import example_data, example_ground_truth, example_imagej_rois
    from sima_fast.ROI import ROIList

    out = sys.stdout if out is None else out
    results: dict[str, Any] = {}
    with _step("example dataset (built on first use from the simulator)", out):
        path = example_data()
        truth = example_ground_truth()
        dataset = ImagingDataset.load(path)
    print(dataset_summary(dataset), file=out)

    with _step("time projections: mean, std and kurtosis in one streaming pass", out):
        dataset._ensure_projections(progress=not quiet)
    mean, std, kurt = dataset.time_averages, dataset.time_std, dataset.time_kurtosis
    for ch, name in enumerate(dataset.channel_names):
        print(
            f"  channel {name}: mean {np.nanmean(mean[..., ch]):.1f}, "
            f"std {np.nanmean(std[..., ch]):.1f}, "
            f"kurtosis {np.nanmedian(kurt[..., ch]):.2f} (median over pixels)",
            file=out,
        )
    # Check the single streaming pass against float64 numpy/scipy on a pixel sample.
    import scipy.stats

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
    results["projections"] = {"max_relative_error": max(errors.values())}

    with _step("exports: averages to TIFF16, gap-filled frames to HDF5", out):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            tifs = [os.path.join(tmp, f"average_{n}.tif") for n in dataset.channel_names]
            dataset.export_averages(tifs, fmt="TIFF16")
            h5s = [os.path.join(tmp, f"sequence_{i}.h5") for i in range(dataset.num_sequences)]
            dataset.export_frames(h5s, fmt="HDF5", fill_gaps=True)
            import h5py

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
    results["exports"] = {"nan_left": nan_left}

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
    results["rois"] = {"imported": len(stored), "exact_masks": exact, "cells": len(true_masks)}

    with _step("signal extraction: ImageJ ROIs, GCaMP channel, F/mean per ROI and frame", out):
        signals = dataset.extract(
            stored, signal_channel="GCaMP", label="demo", n_processes=2, save_summary=False
        )
    corr = []
    for k, raw in enumerate(signals["raw"]):
        true = truth.calcium[k]
        for i in range(raw.shape[0]):
            ok = np.isfinite(raw[i])
            if ok.sum() > 2 and np.std(true[i][ok]) > 0:
                corr.append(float(np.corrcoef(raw[i][ok], true[i][ok])[0, 1]))
    corr = np.asarray(corr)
    print(
        f"  {len(stored)} traces x {sum(r.shape[1] for r in signals['raw'])} frames; "
        f"correlation with the simulator's true calcium: median {np.median(corr):.3f}, "
        f"mean {corr.mean():.3f}, min {corr.min():.3f}",
        file=out,
    )
    results["extraction"] = {
        "median_correlation": float(np.median(corr)),
        "mean_correlation": float(corr.mean()),
        "min_correlation": float(corr.min()),
    }

    with _step("spike inference: AR(1) deconvolution of every extracted trace", out):
        import warnings

        from sima_fast.spikes import SpikeInferenceWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SpikeInferenceWarning)
            spikes, _fits, params = dataset.infer_spikes(channel="GCaMP", label="demo")
    for w in caught:
        print(f"  note: {w.message}", file=out)
    # Compare at the imaging frame rate and in 0.5 s bins (spike timing within
    # a few frames is all the indicator allows).
    width = max(1, round(0.5 * truth.frame_rate))
    per_roi = []
    per_roi_binned = []
    n_rois = spikes[0].shape[0]
    for i in range(n_rois):
        inferred = np.concatenate([s[i] for s in spikes])
        true = np.concatenate([t[i] for t in truth.spikes]).astype(np.float64)
        if np.std(true) == 0 or not np.all(np.isfinite(inferred)) or np.std(inferred) == 0:
            continue
        per_roi.append(float(np.corrcoef(inferred, true)[0, 1]))
        n = inferred.size // width * width
        a = inferred[:n].reshape(-1, width).sum(axis=1)
        b = true[:n].reshape(-1, width).sum(axis=1)
        per_roi_binned.append(float(np.corrcoef(a, b)[0, 1]))
    per_roi_arr = np.asarray(per_roi)
    binned = np.asarray(per_roi_binned)
    solvers = np.concatenate([p["solver"] for p in params])
    print(
        f"  gamma {float(params[0]['gamma'][0]):.3f} (shared), sigma median "
        f"{float(np.median(params[0]['sigma'])):.3f}; "
        f"{int((solvers == 'fast').sum())}/{solvers.size} traces certified by the fast solver",
        file=out,
    )
    print(
        f"  correlation of inferred with true spikes per ROI: median "
        f"{np.median(per_roi_arr):.3f} (frame by frame), {np.median(binned):.3f} "
        f"(0.5 s bins); min {per_roi_arr.min():.3f} / {binned.min():.3f}",
        file=out,
    )
    results["spikes"] = {
        "median_correlation": float(np.median(per_roi_arr)),
        "median_correlation_binned": float(np.median(binned)),
        "per_roi": per_roi,
        "fast_solver_fraction": float((solvers == "fast").mean()),
    }

    with _step("cross-session ROI import: a second session seen through a known affine", out):
        results["cross_session"] = _demo_cross_session(dataset, stored, out)

    from sima_fast.segment import STICA, PlaneNormalizedCuts, match_rois

    results["segmentation"] = {}
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
        results["segmentation"][name] = {
            k: float(score[k]) for k in ("precision", "recall", "f1", "mean_iou")
        }
    return results


def _demo_cross_session(dataset: Any, rois: Any, out: TextIO) -> dict[str, Any]:
    """Warp the first 40 frames by a known affine, import the ROIs by registration, score."""
    import warnings

    from skimage.transform import AffineTransform, warp

    from sima_fast._geometry import polygon_to_mask
    from sima_fast.imaging import ImagingDataset
    from sima_fast.sequence import Sequence
    from sima_fast.transform_rois import ROIOutsideFrameWarning

    _, rows, cols, _ = dataset.frame_shape
    centre = np.array([cols / 2, rows / 2])
    # In ROI coordinates (pixel centres at +0.5): rotate 8°, scale 1.05 and shear
    # about the centre, then shift by 6% and -4% of the field of view.
    truth = (
        AffineTransform(translation=-centre)
        + AffineTransform(rotation=np.deg2rad(8.0), scale=1.05, shear=0.03)
        + AffineTransform(translation=centre + np.array([0.06 * cols, -0.04 * rows]))
    )
    frames = np.asarray(dataset.sequences[0][:40], dtype=np.float64)  # (T, Z, Y, X, C)
    warped = np.empty_like(frames)

    def source_pixel(q: np.ndarray) -> np.ndarray:
        return truth.inverse(q + 0.5) - 0.5

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
        true_xy = truth(ring[:, :2])
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
    return {
        "mean_vertex_error": float(np.mean(errors)),
        "iou_at_least_0.7": float((iou >= 0.7).mean()),
        "median_iou": float(np.median(iou)),
    }


@contextlib.contextmanager
def _dask_client(address: str | None) -> Iterator[Any]:
    """A ``dask.distributed.Client`` for ``address`` (``'local'``: a new LocalCluster)."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SystemExit(
            "sima-fast: --scheduler needs Dask: pip install 'sima_fast[dask]'"
        ) from None
    if address == "local":
        import dask

        from sima_fast.distributed import DASK_CONFIG

        with (
            dask.config.set(DASK_CONFIG),
            LocalCluster(processes=True, threads_per_worker=1, dashboard_address=":0") as cluster,
            Client(cluster) as client,
        ):
            yield client
    else:
        with Client(address, timeout="30s") as client:
            yield client


def _channel_arg(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _run_dataset_command(args: argparse.Namespace) -> int:
    """``project``, ``extract`` and ``infer-spikes`` over ``args.paths``; 1 if any failed."""
    import warnings

    from sima_fast.imaging import ImagingDataset

    failures = 0
    try:
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(_dask_client(args.scheduler))
            if client is not None and not args.quiet:
                from sima_fast.distributed import report_progress

                stack.enter_context(report_progress())
                print(f"sima-fast {args.command}: running on {client}", flush=True)
            for path in args.paths:
                start = time.perf_counter()
                try:
                    dataset = ImagingDataset.load(path)
                    if args.command == "project":
                        proj = dataset.compute_projections(client=client, progress=not args.quiet)
                        what = "time projections (mean, std, kurtosis)"
                        for c, name in enumerate(dataset.channel_names):
                            with warnings.catch_warnings():
                                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN
                                print(
                                    f"  channel {name}: mean "
                                    f"{np.nanmean(proj['time_averages'][..., c]):.4g}, std "
                                    f"{np.nanmean(proj['time_std'][..., c]):.4g}, kurtosis "
                                    f"{np.nanmedian(proj['time_kurtosis'][..., c]):.4g} "
                                    "(median over pixels)"
                                )
                    elif args.command == "extract":
                        rois = None if args.rois is None else dataset.ROIs[args.rois]
                        record = dataset.extract(
                            rois,
                            signal_channel=_channel_arg(args.channel),
                            label=args.label,
                            remove_overlap=not args.keep_overlap,
                            save_summary=not args.no_summary,
                            client=client,
                        )
                        frames = sum(r.shape[1] for r in record["raw"])
                        what = (
                            f"signals of {record['raw'][0].shape[0]} ROIs x {frames} frames "
                            f"(label {args.label or record['timestamp']!r})"
                        )
                    else:
                        spikes, _, params = dataset.infer_spikes(
                            channel=_channel_arg(args.channel),
                            label=args.label,
                            mode=args.mode,
                            client=client,
                        )
                        frames = sum(s.shape[1] for s in spikes)
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN
                            gamma = float(np.nanmedian(params[0]["gamma"]))
                        what = (
                            f"spikes of {spikes[0].shape[0]} ROIs x {frames} frames "
                            f"(median gamma {gamma:.3f})"
                        )
                except (OSError, ValueError, KeyError, TypeError, PermissionError) as exc:
                    failures += 1
                    print(f"sima-fast {args.command}: {path}: {exc}", file=sys.stderr)
                    continue
                print(f"{path}: {what} in {time.perf_counter() - start:.2f} s", flush=True)
    except OSError as exc:  # the scheduler cannot be reached
        print(f"sima-fast {args.command}: {exc}", file=sys.stderr)
        return 2
    return 1 if failures else 0


def main(argv: _Seq[str] | None = None) -> int:
    """Entry point of the ``sima-fast`` console script."""
    parser = argparse.ArgumentParser(
        prog="sima-fast",
        description="Fast, drop-in analysis of two-photon calcium imaging data.",
    )
    from sima_fast import __version__

    parser.add_argument("--version", action="version", version=f"sima_fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the end-to-end demo on the example dataset")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    info = sub.add_parser("info", help="print the summary of a dataset directory")
    info.add_argument("path", help="a .sima directory (sima_fast or SIMA 1.x)")
    bench = sub.add_parser(
        "bench", help="time sima_fast against its baselines and print a Markdown table"
    )
    bench.add_argument(
        "--quick", action="store_true", help="small sizes (about a minute on 2 cores)"
    )
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.add_argument("--plot", metavar="PATH", help="also draw the ratios as a bar chart")
    commands = {
        "project": "compute and cache the time projections (mean, std, kurtosis)",
        "extract": "extract the signals of an ROI set",
        "infer-spikes": "infer spikes from extracted signals",
    }
    for name, text in commands.items():
        cmd = sub.add_parser(name, help=f"{text}, here or on a Dask cluster")
        cmd.add_argument("paths", nargs="+", metavar="PATH", help="dataset directories")
        cmd.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="run on the Dask scheduler at ADDRESS (e.g. tcp://host:8786), or 'local' "
            "for a cluster of this machine's cores; default: run here without Dask",
        )
        cmd.add_argument("--quiet", action="store_true", help="no progress bars")
        if name != "project":
            cmd.add_argument("--channel", default="0", help="channel index or name (default 0)")
            cmd.add_argument("--label", help="signals label (default: timestamp / most recent)")
        if name == "extract":
            cmd.add_argument("--rois", metavar="LABEL", help="ROI set (default: most recent)")
            cmd.add_argument(
                "--keep-overlap",
                action="store_true",
                help="keep pixels shared by several ROIs (separated by the pseudo-inverse)",
            )
            cmd.add_argument("--no-summary", action="store_true", help="no PDF summary")
        if name == "infer-spikes":
            cmd.add_argument(
                "--mode",
                default="correct",
                choices=["correct", "robust", "psd"],
                help="noise estimate (default: correct)",
            )
    args = parser.parse_args(argv)

    if args.command == "demo":
        start = time.perf_counter()
        results = run_demo(quiet=args.quiet)
        rois = results["rois"]
        print(
            f"demo finished in {time.perf_counter() - start:.1f} s: "
            f"{rois['exact_masks']}/{rois['cells']} ROI masks exact, traces correlate with the "
            f"true calcium at median r = {results['extraction']['median_correlation']:.3f}, "
            f"inferred spikes correlate with the true spikes at median r = "
            f"{results['spikes']['median_correlation']:.3f}, segmentation F1 "
            f"{results['segmentation']['stica']['f1']:.2f} (STICA) / "
            f"{results['segmentation']['normcut']['f1']:.2f} (normalised cuts)"
        )
        return 0
    if args.command == "bench":
        from sima_fast.bench import run_benchmarks

        run_benchmarks(quick=args.quick, json_path=args.json, plot_path=args.plot)
        return 0
    if args.command == "info":
        from sima_fast.imaging import ImagingDataset

        try:
            dataset = ImagingDataset.load(args.path, read_only=True)
        except (OSError, ValueError) as exc:
            print(f"sima-fast info: {exc}", file=sys.stderr)
            return 2
        print(dataset_summary(dataset))
        return 0
    if args.command in commands:
        return _run_dataset_command(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

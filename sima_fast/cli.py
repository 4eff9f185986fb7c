"""The ``sima-fast`` command line.

``sima-fast demo``
    Runs the main job end to end on the bundled example dataset (built on
    first use from the deterministic simulator) and scores what it can
    against the simulator's ground truth (see :mod:`sima_fast.demo`).
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
import sys
import time
from collections.abc import Iterator
from collections.abc import Sequence as _Seq
from typing import Any

import numpy as np

__all__ = ["main"]


@contextlib.contextmanager
def _dask_client(address: str | None) -> Iterator[Any]:
    """Open a ``dask.distributed.Client`` for ``address`` (``'local'``: a new LocalCluster).

    Yields
    ------
    distributed.Client or None
        The client, closed (with its local cluster) on exit; None when
        ``address`` is None (run without Dask).

    Raises
    ------
    SystemExit
        Dask is not installed.
    """
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
    """Run ``project``, ``extract`` or ``infer-spikes`` over ``args.paths``.

    Returns
    -------
    int
        The exit status: 0, 1 if any dataset failed, 2 if the scheduler cannot
        be reached.
    """
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
    """Run the ``sima-fast`` command line (the console script's entry point).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 on success, 1 when ``project``, ``extract`` or
        ``infer-spikes`` failed on some dataset, 2 when ``info`` cannot read
        its dataset or the Dask scheduler cannot be reached.

    Raises
    ------
    SystemExit
        From :mod:`argparse` for ``--help``, ``--version`` and invalid
        arguments, and when ``--scheduler`` is given without Dask installed.
    """
    parser = argparse.ArgumentParser(
        prog="sima-fast",
        description="Fast, drop-in analysis of two-photon calcium imaging data.",
    )
    from sima_fast import __version__

    parser.add_argument("--version", action="version", version=f"sima_fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the end-to-end demo on the example dataset")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument(
        "--out",
        metavar="DIR",
        default="sima_fast_demo",
        help="folder for the demo's copy of the dataset, exports and figures "
        "(default: ./sima_fast_demo; re-runs replace the demo's own files only)",
    )
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
        from sima_fast.demo import run_demo

        start = time.perf_counter()
        try:
            report = run_demo(quiet=args.quiet, output_dir=args.out)
        except (FileExistsError, NotADirectoryError) as exc:
            print(f"sima-fast demo: {exc}", file=sys.stderr)
            return 2
        print(f"demo finished in {time.perf_counter() - start:.1f} s: {report.summary()}")
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
        from sima_fast.summary import dataset_summary

        print(dataset_summary(dataset))
        return 0
    if args.command in commands:
        return _run_dataset_command(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

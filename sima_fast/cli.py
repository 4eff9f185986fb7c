"""The ``sima-fast`` command line.

``sima-fast demo``
    Runs the main job end to end on the bundled example dataset (built on
    first use from the deterministic simulator) and scores what it can
    against the simulator's ground truth (see :mod:`sima_fast.demo`).
``sima-fast info PATH``
    Prints the summary of a dataset directory (sima_fast or SIMA 1.x).
``sima-fast bench``
    Times sima_fast against its baselines (see :mod:`sima_fast.bench`).
``sima-fast create OUT MOVIE ... --format F``
    Makes a dataset directory with one sequence per movie file.
``sima-fast motion PATH ... --out DIR --strategy NAME [--scheduler ADDRESS]``
    Motion-corrects movie files (or a dataset directory) into a new dataset
    with a strategy of :mod:`sima_fast.motion`, here with a progress bar or
    on a Dask cluster (one time range per task against fixed references).
``sima-fast import-rois PATH ROIS``
    Stores an ROI set read from a file (ImageJ zip by default).
``sima-fast segment PATH --strategy NAME``
    Finds ROIs with a segmentation strategy at its default parameters.
``sima-fast project|extract|infer-spikes PATH ... [--scheduler ADDRESS]``
    Computes the time projections, extracts signals or infers spikes for
    one or more dataset directories, here (with a progress bar) or on a
    Dask cluster (an existing scheduler's address, or ``local`` for a
    cluster on this machine) with Dask's progress bars.
``sima-fast export PATH averages|frames|signals OUT ...``
    Writes time projections, frames or signals to TIFF, HDF5 or CSV files.

From a movie to spikes without writing Python (each subcommand's ``--help``
shows an example)::

    sima-fast create session.sima movie.h5 --format HDF5 --dim-order tyx
    sima-fast import-rois session.sima RoiSet.zip --label cells
    sima-fast extract session.sima --rois cells --label cells
    sima-fast infer-spikes session.sima --label cells
    sima-fast export session.sima signals cells.csv --label cells

Output goes dataset by dataset: the dataset's path first, then its lines,
indented. An expected error is one line on standard error, naming the
argument or path at fault, never a traceback. Exit status: 0 on success;
2 when the command line is wrong (an unknown option or format, an option
that does not apply, an input path that does not exist, a channel, label or
plane the dataset does not have, an unreachable scheduler), found before
anything is written; 1 when the work itself fails. ``project``, ``extract``
and ``infer-spikes`` go on with the other datasets when one fails, and then
exit with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import re
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from collections.abc import Sequence as _Seq
from typing import Any, NoReturn

import numpy as np

from sima_fast._timestamps import most_recent

__all__ = ["main"]

_USAGE = 2  # the command line is wrong
_RUNTIME = 1  # the work failed

_EXPECTED = (
    OSError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    ImportError,
    pickle.UnpicklingError,
)
"""Exceptions the library raises for bad input or failed I/O: reported in one line."""


class _Failure(Exception):
    """An expected failure of a command: a one-line message and an exit status."""

    def __init__(self, message: str, status: int = _RUNTIME) -> None:
        super().__init__(message)
        self.status = status


def _usage(message: str) -> _Failure:
    return _Failure(message, _USAGE)


def _message(exc: BaseException) -> str:
    """Return the text of an exception on one line (a KeyError's without its quotes)."""
    text = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else exc
    return " ".join(str(text).split()) or type(exc).__name__


@contextlib.contextmanager
def _about(what: str | None, status: int = _RUNTIME) -> Iterator[None]:
    """Turn an expected exception raised in the block into a failure about ``what``.

    A failure raised in the block keeps its status and gets ``what`` in front.
    """
    try:
        yield
    except _Failure as exc:
        if what is None:
            raise
        raise _Failure(f"{what}: {exc}", exc.status) from None
    except _EXPECTED as exc:
        text = _message(exc)
        raise _Failure(f"{what}: {text}" if what else text, status) from None


@contextlib.contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Print the warnings raised in the block as ``sima-fast CMD: warning: ...`` lines."""

    def formatwarning(message: Any, category: Any, filename: Any, lineno: Any, line: Any = None):
        return f"sima-fast {command}: warning: {' '.join(str(message).split())}\n"

    original = warnings.formatwarning
    warnings.formatwarning = formatwarning
    try:
        yield
    finally:
        warnings.formatwarning = original


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line pointing at ``--help``.

    Arguments left over after a subcommand are reported by that subcommand
    (``sima-fast project: unrecognized arguments: ...``).
    """

    _subcommands: Any = None

    def error(self, message: str) -> NoReturn:
        self.exit(_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")

    def add_subparsers(self, **kwargs: Any) -> Any:
        self._subcommands = super().add_subparsers(**kwargs)
        return self._subcommands

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            choices = self._subcommands.choices if self._subcommands is not None else {}
            parser = choices.get(getattr(parsed, "command", None), self)
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


class _RegistryChoices:
    """The format names of io registries, as argparse ``choices``.

    The registries are only read when a value is checked or the help
    printed, so building the parser (``sima-fast --version``) imports no io
    module, and formats registered later are offered too. Membership follows
    the registries (ROI formats match in any case).
    """

    def __init__(self, *registries: str) -> None:
        self._names = registries

    def _registries(self) -> list[Any]:
        import sima_fast.io

        return [getattr(sima_fast.io, name) for name in self._names]

    def __contains__(self, value: object) -> bool:
        return any(value in registry for registry in self._registries())

    def __iter__(self) -> Iterator[str]:
        names = [n for registry in self._registries() for n in registry.names()]
        return iter(dict.fromkeys(names))


def _describe(parser: argparse.ArgumentParser, description: str, example: str) -> None:
    """Give a subcommand's parser its description and an example for ``--help``.

    Paragraphs of ``description`` are wrapped, except indented ones (lists).
    """
    paragraphs = [
        p
        if any(line.startswith(" ") for line in p.splitlines())
        else textwrap.fill(" ".join(p.split()), 79)
        for p in description.split("\n\n")
    ]
    parser.description = "\n\n".join(paragraphs)
    parser.epilog = "example:\n" + example.strip("\n")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# -- helpers shared by the subcommands ---------------------------------------------------------


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


def _open(path: str, read_only: bool = False) -> Any:
    """Load the dataset directory ``path``; a missing directory is a usage error."""
    from sima_fast import storage
    from sima_fast.imaging import ImagingDataset

    if not (os.path.isdir(path) or os.path.isdir(storage.normalize_savedir(path))):
        raise _usage("no dataset directory here (make one with 'sima-fast create')")
    with _about(None):
        return ImagingDataset.load(path, read_only=read_only)


def _channel(dataset: Any, text: str, option: str = "--channel") -> int:
    """Return the index of channel ``text`` (index or name); a usage error if there is none."""
    from sima_fast._validate import resolve_channel

    with _about(option, _USAGE):
        return resolve_channel(_channel_arg(text), dataset.channel_names)


def _label_arg(label: str | None, option: str = "--label") -> str | None:
    """Check a label given on the command line (see sima_fast._validate.check_label)."""
    from sima_fast._validate import check_label

    if label is None:
        return None
    with _about(option, _USAGE):
        return check_label("a label", label)


def _pick_signals(dataset: Any, channel: int, label: str | None) -> tuple[str, dict[str, Any]]:
    """Return the label and record of a channel's signals (default: the most recent)."""
    records = dataset.signals(channel)
    name = dataset.channel_names[channel]
    if not records:
        raise _Failure(f"channel {name} has no extracted signals; run 'sima-fast extract' first")
    if label is None:
        label = most_recent(
            {
                k: (r.get("timestamp", "") if isinstance(r, dict) else "")
                for k, r in records.items()
            }
        )
    elif label not in records:
        raise _usage(
            f"--label: channel {name} has no signals labelled {label!r}; "
            f"available: {', '.join(sorted(records))}"
        )
    return label, records[label]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- create ------------------------------------------------------------------------------------

# Movie formats made from files: each maps to Sequence.create(fmt, ...) with the
# options that apply to it (their values become the keyword arguments named).
_MOVIE_FORMATS = {
    "HDF5": {
        "text": "an HDF5 dataset per file (--dim-order required; --key, --group)",
        "options": {"dim_order": "dim_order", "key": "key", "group": "group"},
    },
    "TIFF": {
        "text": "a multi-page TIFF per file, pages interleaving planes and channels "
        "(--planes, --channels)",
        "options": {"planes": "num_planes", "channels": "num_channels"},
    },
    "TIFFs": {
        "text": "single-image TIFFs matched by quoted glob patterns, --planes x --channels "
        "patterns per sequence (plane by plane, channels within a plane)",
        "options": {"planes": None, "channels": None},
    },
    "zarr": {
        "text": "a zarr array per path (--dim-order required)",
        "options": {"dim_order": "dim_order"},
    },
}
_CREATE_OPTIONS = {
    "dim_order": "--dim-order",
    "key": "--key",
    "group": "--group",
    "planes": "--planes",
    "channels": "--channels",
}


def _add_create(sub: Any) -> None:
    cmd = sub.add_parser("create", help="make a dataset from movie files")
    formats = "\n".join(
        textwrap.fill(spec["text"], 79, initial_indent=f"  {name:7s}", subsequent_indent=" " * 9)
        for name, spec in _MOVIE_FORMATS.items()
    )
    _describe(
        cmd,
        "Make a dataset directory OUT with one sequence per movie file (the files are "
        "referenced, not copied), then print its summary.\n\nformats:\n" + formats,
        """
  sima-fast create session.sima run1.h5 run2.h5 --format HDF5 --dim-order tyx
  sima-fast create session.sima run1.tif --format TIFF --channels 2 \\
      --channel-names GCaMP,tdTomato
  sima-fast create session.sima 'run1/ch0_*.tif' 'run1/ch1_*.tif' --format TIFFs --channels 2
""",
    )
    cmd.add_argument("out", metavar="OUT", help="the new dataset directory (.sima is appended)")
    cmd.add_argument("movies", nargs="+", metavar="MOVIE", help="movie files, one per sequence")
    cmd.add_argument("--format", required=True, choices=list(_MOVIE_FORMATS), help="movie format")
    cmd.add_argument(
        "--dim-order",
        metavar="ORDER",
        help="HDF5, zarr: one letter per axis of the data from 'tzyxc' (e.g. tyx, tzyxc)",
    )
    cmd.add_argument("--key", help="HDF5: the dataset in the group (needed if it holds several)")
    cmd.add_argument("--group", help="HDF5: the group holding the dataset (default: the root)")
    cmd.add_argument("--planes", type=_positive_int, help="TIFF, TIFFs: planes (default 1)")
    cmd.add_argument("--channels", type=_positive_int, help="TIFF, TIFFs: channels (default 1)")
    cmd.add_argument(
        "--channel-names",
        metavar="NAMES",
        help="comma-separated, one per channel (e.g. GCaMP,tdTomato)",
    )


def _check_movie_options(args: argparse.Namespace, fmt: str) -> None:
    """Refuse the movie options that do not apply to ``fmt``, and a missing ``--dim-order``."""
    spec = _MOVIE_FORMATS[fmt]["options"]
    for attr, option in _CREATE_OPTIONS.items():
        if getattr(args, attr) is not None and attr not in spec:
            takers = [f for f, s in _MOVIE_FORMATS.items() if attr in s["options"]]
            raise _usage(
                f"{option} does not apply to --format {fmt} (only to {', '.join(takers)})"
            )
    if "dim_order" in spec and args.dim_order is None:
        raise _usage(
            f"--dim-order is required with --format {fmt}: one letter per axis of the data "
            "from 'tzyxc', e.g. tyx for one plane and one channel"
        )


def _new_dataset_dir(path: str, option: str = "OUT") -> str:
    """Return the normalised path of a dataset directory to make; a usage error if it cannot be."""
    from sima_fast import storage

    out = storage.normalize_savedir(path)
    if os.path.exists(out):
        raise _usage(f"{option}: {out!r} already exists; choose a new directory")
    if not os.path.isdir(os.path.dirname(out)):
        raise _usage(f"{option}: the parent directory of {out!r} does not exist")
    return out


def _channel_names_arg(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise _usage(f"--channel-names: empty name in {text!r}")
    return names


def _movie_sequences(
    args: argparse.Namespace, fmt: str, movies: list[str], names: list[str] | None
) -> tuple[list[str], list[Any]]:
    """Open one sequence per movie file (per group of patterns for TIFFs), checked.

    Returns
    -------
    what : list of str
        How each sequence is named in messages (its file or patterns).
    sequences : list of Sequence
        Of one frame shape, matching ``names`` when given.
    """
    import glob

    from sima_fast.sequence import Sequence

    spec = _MOVIE_FORMATS[fmt]["options"]
    if fmt == "TIFFs":
        planes, channels = args.planes or 1, args.channels or 1
        per = planes * channels
        if len(movies) % per:
            raise _usage(
                f"MOVIE: --format TIFFs takes {per} pattern(s) per sequence ({planes} plane(s) x "
                f"{channels} channel(s)), got {len(movies)}"
            )
        for pattern in movies:
            if not glob.glob(pattern):
                raise _usage(f"{pattern}: no file matches this pattern")
        groups = [movies[i : i + per] for i in range(0, len(movies), per)]
        made = [
            (
                " ".join(g),
                ("TIFFs", [[g[p * channels + c] for c in range(channels)] for p in range(planes)]),
                {},
            )
            for g in groups
        ]
    else:
        for movie in movies:
            if not os.path.exists(movie):
                raise _usage(f"{movie}: no such file")
        kwargs = {
            spec[attr]: getattr(args, attr)
            for attr in spec
            if attr != "dim_order" and getattr(args, attr) is not None
        }
        lead = (args.dim_order,) if "dim_order" in spec else ()
        made = [(movie, (fmt, movie, *lead), kwargs) for movie in movies]
    sequences = []
    for what, create_args, kwargs in made:
        try:
            sequences.append(Sequence.create(*create_args, **kwargs))
        except (ValueError, KeyError) as exc:  # the options do not fit the file
            raise _usage(f"{what}: {_message(exc)}") from None
        except _EXPECTED as exc:  # the file cannot be read
            raise _Failure(f"{what}: {_message(exc)}") from None
    frame_shape = sequences[0].shape[1:]
    for (what, _, _), seq in zip(made, sequences):
        if seq.shape[1:] != frame_shape:
            raise _Failure(
                f"{what}: frames of shape (Z, Y, X, C) = {seq.shape[1:]}, but {made[0][0]} has "
                f"{frame_shape}; the sequences of a dataset share their frame shape"
            )
    if names is not None and len(names) != frame_shape[3]:
        raise _usage(
            f"--channel-names: {_plural(len(names), 'name')} for "
            f"{_plural(frame_shape[3], 'channel')}"
        )
    return [m[0] for m in made], sequences


def _create(args: argparse.Namespace) -> int:
    from sima_fast.imaging import ImagingDataset
    from sima_fast.summary import dataset_summary

    fmt = args.format
    _check_movie_options(args, fmt)
    out = _new_dataset_dir(args.out)
    names = _channel_names_arg(args.channel_names)
    _, sequences = _movie_sequences(args, fmt, args.movies, names)
    with _about(f"OUT {args.out}"):
        dataset = ImagingDataset(sequences, out, channel_names=names)
    print(dataset_summary(dataset))
    _print_acquisition(dataset)
    return 0


# -- motion ------------------------------------------------------------------------------------

# Strategy names of the command line: the sima_fast.motion class each one runs
# (looked up when used, so a strategy added to the package later is found), and
# what it does.
_MOTION_STRATEGIES = {
    "rigid": (
        "RigidRegistration2D",
        "sub-pixel rigid registration per plane (tapered, smoothed phase correlation)",
    ),
    "translation": ("PlaneTranslation2D", "whole-pixel translation per plane (cross-correlation)"),
    "dft": ("DiscreteFourier2D", "whole-pixel phase correlation per plane"),
    "hmm": ("HiddenMarkov2D", "row-by-row displacements by a hidden Markov model (line scans)"),
    "nonrigid": ("NonRigid2D", "piecewise-rigid registration of overlapping blocks"),
}
_MOVIE_EXTENSIONS = {
    ".h5": "HDF5",
    ".hdf5": "HDF5",
    ".hdf": "HDF5",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".zarr": "zarr",
}


def _strategy_list(table: dict[str, tuple[str, str]], name_width: int) -> str:
    """List the strategies for a help text: name, class and purpose, wrapped at 79."""
    return "\n".join(
        textwrap.fill(
            f"{cls}: {text}",
            79,
            initial_indent=f"  {name:{name_width}s}",
            subsequent_indent=" " * (name_width + 2),
        )
        for name, (cls, text) in table.items()
    )


def _add_motion(sub: Any) -> None:
    cmd = sub.add_parser("motion", help="motion-correct movies into a new dataset")
    strategies = _strategy_list(_MOTION_STRATEGIES, 12)
    _describe(
        cmd,
        "Estimate the motion of every frame of the movies (one sequence per file, read as "
        "'sima-fast create' reads them; --format is taken from the extension when not given) "
        "or of a dataset directory, and save the motion-corrected dataset in OUT (the "
        "movies are referenced, not copied). Prints the range of each sequence's "
        "displacements. With --scheduler the references are fixed first and every time "
        "range of every movie is one Dask task (every strategy below).\n\n"
        "strategies (sima_fast.motion, default parameters otherwise):\n" + strategies,
        """
  sima-fast motion run1.h5 run2.h5 --dim-order tyx --out session.sima --strategy rigid
  sima-fast motion raw.sima --out corrected.sima --strategy hmm --channel GCaMP
  sima-fast motion run*.tif --out s.sima --strategy rigid --scheduler local
""",
    )
    cmd.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="movie files (one sequence each), or one dataset directory",
    )
    cmd.add_argument(
        "--out", required=True, metavar="DIR", help="the new dataset directory (.sima appended)"
    )
    cmd.add_argument(
        "--strategy", required=True, choices=list(_MOTION_STRATEGIES), help="see the list above"
    )
    cmd.add_argument(
        "--format",
        choices=list(_MOVIE_FORMATS),
        help="movie format (default: from the extension: .h5/.hdf5 HDF5, .tif/.tiff TIFF, "
        ".zarr zarr)",
    )
    cmd.add_argument("--dim-order", metavar="ORDER", help="HDF5, zarr: as for 'create'")
    cmd.add_argument("--key", help="HDF5: the dataset in the group")
    cmd.add_argument("--group", help="HDF5: the group holding the dataset")
    cmd.add_argument("--planes", type=_positive_int, help="TIFF, TIFFs: planes (default 1)")
    cmd.add_argument("--channels", type=_positive_int, help="TIFF, TIFFs: channels (default 1)")
    cmd.add_argument(
        "--channel-names", metavar="NAMES", help="movies: comma-separated, one per channel"
    )
    cmd.add_argument(
        "--channel",
        help="channel (index or name) the motion is estimated from (default: all, summed); "
        "the correction applies to every channel",
    )
    cmd.add_argument(
        "--max-displacement",
        type=_non_negative_real,
        metavar="N",
        help="largest displacement (px) from the reference (default: the strategy's)",
    )
    cmd.add_argument(
        "--trim-criterion",
        type=_fraction,
        metavar="F",
        help="keep the rows and columns observed in at least this fraction of the frames "
        "(0 to 1; default 1: only what every frame sees)",
    )
    cmd.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="estimate on the Dask scheduler at ADDRESS (e.g. tcp://host:8786), or 'local' "
        "for a cluster of this machine's cores; default: here without Dask",
    )
    cmd.add_argument("--quiet", action="store_true", help="no progress bars")


def _non_negative_real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def _motion_strategy(args: argparse.Namespace) -> Any:
    """Build the strategy of ``--strategy`` (a usage error if it is not available)."""
    import inspect

    import sima_fast.motion

    def available(name: str) -> bool:
        try:
            return getattr(sima_fast.motion, _MOTION_STRATEGIES[name][0], None) is not None
        except ImportError:
            return False

    class_name, _ = _MOTION_STRATEGIES[args.strategy]
    if not available(args.strategy):
        have = [n for n in _MOTION_STRATEGIES if available(n)]
        raise _usage(
            f"--strategy: {args.strategy} ({class_name}) is not available in this "
            f"installation; available: {', '.join(have)}"
        )
    cls = getattr(sima_fast.motion, class_name)
    accepted = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {}
    if args.max_displacement is not None:
        if "max_displacement" not in accepted:
            raise _usage(f"--max-displacement does not apply to --strategy {args.strategy}")
        kwargs["max_displacement"] = args.max_displacement
    if "verbose" in accepted:
        kwargs["verbose"] = False
    with _about("--strategy", _USAGE):
        return cls(**kwargs)


def _motion_input(args: argparse.Namespace) -> tuple[list[str], list[Any], list[str] | None]:
    """Open the sequences to correct: the movies, or the sequences of one dataset directory.

    Returns
    -------
    what : list of str
        How each sequence is named in the output.
    sequences : list of Sequence
    names : list of str or None
        The channel names (None: the default ``'0'``, ``'1'``, ...).
    """
    from sima_fast import storage

    datasets = [
        p
        for p in args.paths
        if any(
            storage.is_dataset_dir(d) or storage.is_legacy_dir(d)
            for d in {p, storage.normalize_savedir(p)}
            if os.path.isdir(d)
        )
    ]
    if datasets:
        if len(args.paths) > 1:
            raise _usage(
                f"PATH: {datasets[0]} is a dataset directory; give one dataset directory or "
                "movie files, not both or several"
            )
        for option, value in (
            ("--format", args.format),
            ("--channel-names", args.channel_names),
            *((o, getattr(args, a)) for a, o in _CREATE_OPTIONS.items()),
        ):
            if value is not None:
                raise _usage(f"{option} applies to movie files, not to a dataset directory")
        dataset = _open(args.paths[0], read_only=True)
        what = [f"sequence {i}" for i in range(dataset.num_sequences)]
        return what, list(dataset.sequences), list(dataset.channel_names)
    fmt = args.format
    if fmt is None:
        found = {
            _MOVIE_EXTENSIONS.get(os.path.splitext(p.rstrip("/"))[1].lower()) for p in args.paths
        }
        if len(found) != 1 or None in found:
            raise _usage(
                "--format: cannot tell the movie format from the file extensions "
                f"({', '.join(args.paths)}); give --format"
            )
        fmt = found.pop()
    _check_movie_options(args, fmt)
    names = _channel_names_arg(args.channel_names)
    what, sequences = _movie_sequences(args, fmt, args.paths, names)
    return what, sequences, names


def _displacement_range(d: np.ndarray) -> str:
    """Describe the range of each component of a displacement array."""
    arr = np.ma.filled(np.ma.asarray(d, dtype=np.float64), np.nan)
    k = arr.shape[-1]
    flat = arr.reshape(-1, k)
    axes = "yx" if k == 2 else "zyx"
    if not np.isfinite(flat).any():
        return "no displacement estimated"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN component
        lo, hi = np.nanmin(flat, axis=0), np.nanmax(flat, axis=0)
    whole = np.all(np.isnan(flat) | (flat == np.round(flat)))
    fmt = "{:.0f}" if whole else "{:.2f}"
    parts = [f"{a} {fmt.format(a0)} to {fmt.format(a1)}" for a, a0, a1 in zip(axes, lo, hi)]
    return "displacements " + ", ".join(parts) + " px"


def _motion(args: argparse.Namespace) -> int:
    from sima_fast.motion import MotionEstimationStrategy
    from sima_fast.motion.base import check_max_displacement, check_max_displacement_fits

    strategy = _motion_strategy(args)
    if (
        args.scheduler is not None
        and type(strategy)._range_setup is MotionEstimationStrategy._range_setup
    ):
        raise _usage(
            f"--scheduler does not apply to --strategy {args.strategy}: it does not register "
            "frames against a fixed reference, so it cannot be split into time ranges"
        )
    out = _new_dataset_dir(args.out, "--out")
    what, sequences, names = _motion_input(args)
    frame_shape = sequences[0].shape[1:]
    if args.max_displacement is not None:
        with _about("--max-displacement", _USAGE):
            check_max_displacement_fits(
                check_max_displacement(args.max_displacement), tuple(frame_shape[1:3])
            )
    channels = None
    if args.channel is not None:
        from sima_fast._validate import resolve_channel

        listed = names or [str(c) for c in range(frame_shape[3])]
        with _about("--channel", _USAGE):
            channels = [resolve_channel(_channel_arg(args.channel), listed)]
    frames = sum(len(s) for s in sequences)
    class_name = type(strategy).__name__
    try:
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(_dask_client(args.scheduler))
            if not args.quiet:
                where = "here" if client is None else f"on {client}"
                print(
                    f"estimating the motion of {frames} frames in "
                    f"{_plural(len(sequences), 'sequence')} with {args.strategy} "
                    f"({class_name}) {where} ...",
                    flush=True,
                )
            # keep the displacements that correct() estimates, to print their ranges
            recorded: list = []
            estimate = strategy.estimate

            def recording_estimate(*a: Any, **k: Any) -> list:
                recorded.append(estimate(*a, **k))
                return recorded[-1]

            strategy.estimate = recording_estimate
            start = time.perf_counter()
            with _about(None):
                dataset = strategy.correct(
                    sequences,
                    out,
                    channel_names=names,
                    correction_channels=channels,
                    trim_criterion=args.trim_criterion,
                    client=client,
                    progress=not args.quiet,
                )
            seconds = time.perf_counter() - start
    except OSError as exc:  # the scheduler cannot be reached
        raise _usage(f"--scheduler: {_message(exc)}") from None
    print(out)
    for name, seq, d in zip(what, dataset.sequences, recorded[-1]):
        print(f"  {name}: {len(seq)} frames, {_displacement_range(d)}")
    print(
        f"  corrected frames (Z, Y, X, C) = {tuple(dataset.frame_shape)} from "
        f"{tuple(frame_shape)} in {seconds:.1f} s"
    )
    return 0


# -- import-rois -------------------------------------------------------------------------------


def _add_import_rois(sub: Any) -> None:
    cmd = sub.add_parser("import-rois", help="store ROIs read from a file (e.g. ImageJ)")
    _describe(
        cmd,
        "Read an ROI set from a file and store it with the dataset under LABEL (an existing "
        "set of that label is replaced).",
        """
  sima-fast import-rois session.sima RoiSet.zip --label cells
""",
    )
    cmd.add_argument("path", metavar="PATH", help="a dataset directory")
    cmd.add_argument("rois", metavar="ROIS", help="the ROI file (e.g. an ImageJ .zip or .roi)")
    cmd.add_argument(
        "--format",
        default="ImageJ",
        choices=_RegistryChoices("roi_readers"),
        metavar="FORMAT",
        help="ROI file format, any case: %(choices)s (default: %(default)s)",
    )
    cmd.add_argument("--label", help="name of the ROI set (default: the current time)")


def _import_rois(args: argparse.Namespace) -> int:
    from sima_fast._timestamps import current_timestamp
    from sima_fast.ROI import ROIList

    label = _label_arg(args.label)
    with _about(args.path):
        dataset = _open(args.path)
    if not os.path.isfile(args.rois):
        raise _usage(f"{args.rois}: no such file")
    with _about(args.rois):
        rois = ROIList.load(args.rois, fmt=args.format, im_shape=dataset.frame_shape[:3])
    label = label or current_timestamp()
    replaced = label in dataset.ROIs
    print(args.path, flush=True)
    with _about(args.path):
        dataset.add_ROIs(rois, label)
    print(
        f"  {_plural(len(rois), 'ROI')} from {args.rois} stored as ROI set {label!r}"
        + (" (replacing the previous set)" if replaced else "")
    )
    return 0


# -- segment -----------------------------------------------------------------------------------

# Strategy names of the command line: the sima_fast.segment class each one runs
# at its default parameters, and what it does.
_STRATEGIES = {
    "stica": ("STICA", "spatio-temporal independent component analysis"),
    "normcuts": ("PlaneNormalizedCuts", "normalised cuts of each plane's pixel correlations"),
    "ca1pc": ("PlaneCA1PC", "normalised cuts tuned to CA1 pyramidal cell bodies"),
}


def _add_segment(sub: Any) -> None:
    cmd = sub.add_parser("segment", help="find ROIs with a segmentation strategy")
    strategies = _strategy_list(_STRATEGIES, 10)
    _describe(
        cmd,
        "Find ROIs with a segmentation strategy at its default parameters (see "
        "sima_fast.segment for the parameters) and store them under LABEL.\n\nstrategies:\n"
        + strategies,
        """
  sima-fast segment session.sima --strategy stica --label auto --channel GCaMP --planes 0,1
""",
    )
    cmd.add_argument("path", metavar="PATH", help="a dataset directory")
    cmd.add_argument(
        "--strategy", required=True, choices=list(_STRATEGIES), help="see the list above"
    )
    cmd.add_argument("--label", help="name of the ROI set (default: the current time)")
    cmd.add_argument("--channel", default="0", help="channel index or name (default 0)")
    cmd.add_argument(
        "--planes", metavar="LIST", help="comma-separated plane indices (default: all planes)"
    )


def _planes(dataset: Any, text: str | None) -> list[int] | None:
    """Return the plane indices of ``--planes`` (None: every plane); a usage error if invalid."""
    if text is None:
        return None
    num_planes = dataset.frame_shape[0]
    try:
        planes = [int(p) for p in text.split(",")]
    except ValueError:
        raise _usage(f"--planes: expected comma-separated integers, got {text!r}") from None
    if any(not 0 <= p < num_planes for p in planes) or len(set(planes)) != len(planes):
        raise _usage(
            f"--planes: {text!r} is not a list of distinct planes from 0 to {num_planes - 1}"
        )
    return planes


def _segment(args: argparse.Namespace) -> int:
    import sima_fast.segment
    from sima_fast._timestamps import current_timestamp

    label = _label_arg(args.label)
    with _about(args.path):
        dataset = _open(args.path)
    with _about(args.path):
        channel = _channel(dataset, args.channel)
        planes = _planes(dataset, args.planes)
    label = label or current_timestamp()
    class_name, _ = _STRATEGIES[args.strategy]
    strategy = getattr(sima_fast.segment, class_name)(channel=channel)
    which = "every plane" if planes is None else _plural(len(planes), "plane")
    print(args.path, flush=True)
    print(
        f"  segmenting {which} of channel {dataset.channel_names[channel]} with "
        f"{args.strategy} ({class_name}, default parameters) ...",
        flush=True,
    )
    start = time.perf_counter()
    with _about(args.path):
        rois = dataset.segment(strategy, label, planes)
    print(
        f"  {_plural(len(rois), 'ROI')} stored as ROI set {label!r} in "
        f"{time.perf_counter() - start:.1f} s"
    )
    return 0


# -- project, extract, infer-spikes -------------------------------------------------------------

_DATASET_COMMANDS = {
    "project": "compute and cache the time projections (mean, std, kurtosis)",
    "extract": "extract the signals of an ROI set",
    "infer-spikes": "infer spikes from extracted signals",
}
_DATASET_EXAMPLES = {
    "project": """
  sima-fast project session1.sima session2.sima
  sima-fast project session*.sima --scheduler tcp://scheduler:8786
""",
    "extract": """
  sima-fast extract session.sima --rois cells --label cells --channel GCaMP
  sima-fast extract session*.sima --scheduler local --no-summary
  sima-fast extract session.sima --neuropil
  sima-fast extract session.sima --neuropil-coefficient estimate --neuropil-min-pixels 200

Neuropil correction (--neuropil or any --neuropil-* option) also stores, per
ROI, the trace of its surround (pixels more than --neuropil-inner px from the
ROI, without any ROI's pixels, grown until it holds --neuropil-min-pixels
pixels or cut at --neuropil-outer px) and corrected = raw - r * neuropil,
normalised like raw. Defaults are suite2p's: 2 px, 350 pixels, r = 0.7.
""",
    "infer-spikes": """
  sima-fast infer-spikes session.sima --label cells --channel GCaMP
""",
}


def _add_dataset_command(sub: Any, name: str) -> None:
    text = _DATASET_COMMANDS[name]
    cmd = sub.add_parser(name, help=f"{text}, here or on a Dask cluster")
    _describe(
        cmd,
        f"{text[0].upper()}{text[1:]} of each dataset, here or on a Dask cluster. A dataset "
        "that fails is reported and the others still run (exit status 1).",
        _DATASET_EXAMPLES[name],
    )
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
        cmd.add_argument(
            "--label",
            help="signals label (default: the extraction's timestamp / the most recent one)",
        )
    if name == "extract":
        cmd.add_argument("--rois", metavar="LABEL", help="ROI set (default: the most recent)")
        cmd.add_argument(
            "--keep-overlap",
            action="store_true",
            help="keep pixels shared by several ROIs (separated by the pseudo-inverse)",
        )
        cmd.add_argument("--no-summary", action="store_true", help="no PDF summary")
        cmd.add_argument(
            "--neuropil",
            action="store_true",
            help="also extract each ROI's neuropil surround and the corrected traces "
            "(suite2p's defaults unless set by the options below)",
        )
        cmd.add_argument(
            "--neuropil-inner",
            metavar="PX",
            type=float,
            help="surround starts beyond PX pixels from the ROI (default 2)",
        )
        cmd.add_argument(
            "--neuropil-outer",
            metavar="PX",
            type=float,
            help="fixed outer radius in pixels (default: grow to --neuropil-min-pixels)",
        )
        cmd.add_argument(
            "--neuropil-min-pixels",
            metavar="N",
            type=int,
            help="pixels the surround grows to (default 350)",
        )
        cmd.add_argument(
            "--neuropil-coefficient",
            metavar="R",
            help="r in corrected = raw - r * neuropil, in [0, 1], or 'estimate' for one "
            "per ROI from the data (default 0.7)",
        )
        cmd.add_argument(
            "--neuropil-include-rois",
            action="store_true",
            help="let surrounds include other ROIs' pixels (default: excluded)",
        )
    if name == "infer-spikes":
        cmd.add_argument(
            "--mode",
            default="correct",
            choices=["correct", "robust", "psd"],
            help="noise estimate (default: correct)",
        )


def _project_one(dataset: Any, args: argparse.Namespace, client: Any) -> list[str]:
    start = time.perf_counter()
    proj = dataset.compute_projections(client=client, progress=not args.quiet)
    lines = [f"time projections (mean, std, kurtosis) in {time.perf_counter() - start:.2f} s"]
    for c, name in enumerate(dataset.channel_names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN
            lines.append(
                f"channel {name}: mean "
                f"{np.nanmean(proj['time_averages'][..., c]):.4g}, std "
                f"{np.nanmean(proj['time_std'][..., c]):.4g}, kurtosis "
                f"{np.nanmedian(proj['time_kurtosis'][..., c]):.4g} "
                "(median over pixels)"
            )
    return lines


def _neuropil_arg(args: argparse.Namespace) -> Any:
    """Return the ``neuropil`` argument of ``extract`` given by the ``--neuropil*`` options."""
    from sima_fast.extract import NeuropilOptions

    options: dict[str, Any] = {}
    given = {
        "inner_radius": ("--neuropil-inner", args.neuropil_inner),
        "outer_radius": ("--neuropil-outer", args.neuropil_outer),
        "min_pixels": ("--neuropil-min-pixels", args.neuropil_min_pixels),
        "coefficient": ("--neuropil-coefficient", args.neuropil_coefficient),
    }
    for key, (flag, value) in given.items():
        if value is None:
            continue
        if key == "coefficient" and value != "estimate":
            try:
                value = float(value)
            except ValueError:
                raise _usage(
                    f"{flag}: expected a number in [0, 1] or 'estimate', got {value!r}"
                ) from None
        options[key] = value
    if args.neuropil_include_rois:
        options["exclude_rois"] = False
    if not options and not args.neuropil:
        return None
    try:
        return NeuropilOptions(**options)
    except ValueError as exc:  # ArgumentTypeError is one too
        flags = {k: v[0] for k, v in given.items()}
        text = _message(exc)
        flag = next((f for k, f in flags.items() if text.startswith(k)), "--neuropil")
        raise _usage(f"{flag}: {text}") from None


def _extract_one(dataset: Any, args: argparse.Namespace, client: Any) -> list[str]:
    neuropil = getattr(args, "neuropil_options", None)
    channel = _channel(dataset, args.channel)
    label = _label_arg(args.label)
    sets = dataset.ROIs
    if not sets:
        raise _Failure(
            "the dataset has no ROI set; add one with 'sima-fast import-rois' or "
            "'sima-fast segment'"
        )
    if args.rois is None:
        roi_label = most_recent({k: v.timestamp or "" for k, v in sets.items()})
    elif args.rois in sets:
        roi_label = args.rois
    else:
        raise _usage(f"--rois: no ROI set labelled {args.rois!r}; available: {', '.join(sets)}")
    rois = sets[roi_label]
    frames = sum(len(s) for s in dataset.sequences)
    if client is None and not args.quiet:
        print(
            f"  extracting {_plural(len(rois), 'ROI')} (ROI set {roi_label!r}) of channel "
            f"{dataset.channel_names[channel]} from {frames} frames in "
            f"{_plural(dataset.num_sequences, 'sequence')} ...",
            flush=True,
        )
    start = time.perf_counter()
    record = dataset.extract(
        rois,
        signal_channel=channel,
        label=label,
        remove_overlap=not args.keep_overlap,
        save_summary=not args.no_summary,
        client=client,
        progress=client is None and not args.quiet,
        neuropil=neuropil,
    )
    lines = [
        f"signals of {record['raw'][0].shape[0]} ROIs x {frames} frames "
        f"(label {label or record['timestamp']!r}) in {time.perf_counter() - start:.2f} s"
    ]
    if neuropil is not None:
        p = record["neuropil_params"]
        r = p["coefficient"]
        how = f"estimated, median {np.median(r):.3f}" if p["estimated"] else f"{r[0]:g}"
        lines.append(
            f"neuropil: surrounds of median {int(np.median(p['n_pixels']))} pixels, "
            f"r = {how}; stored as 'neuropil' and 'corrected'"
        )
    return lines


def _infer_spikes_one(dataset: Any, args: argparse.Namespace, client: Any) -> list[str]:
    channel = _channel(dataset, args.channel)
    label, _ = _pick_signals(dataset, channel, _label_arg(args.label))
    start = time.perf_counter()
    spikes, _, params = dataset.infer_spikes(
        channel=channel, label=label, mode=args.mode, client=client
    )
    frames = sum(s.shape[1] for s in spikes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN
        gamma = float(np.nanmedian(params[0]["gamma"]))
    return [
        f"spikes of {spikes[0].shape[0]} ROIs x {frames} frames (label {label!r}, "
        f"median gamma {gamma:.3f}) in {time.perf_counter() - start:.2f} s"
    ]


_DATASET_WORK = {
    "project": _project_one,
    "extract": _extract_one,
    "infer-spikes": _infer_spikes_one,
}


def _run_dataset_command(args: argparse.Namespace) -> int:
    """Run ``project``, ``extract`` or ``infer-spikes`` over ``args.paths``.

    Each dataset's path is printed first, then its progress and result lines.

    Returns
    -------
    int
        The exit status: 0, 1 if any dataset failed, 2 if the scheduler cannot
        be reached.
    """
    work = _DATASET_WORK[args.command]
    if args.command == "extract":  # bad options are a usage error before any dataset is opened
        args.neuropil_options = _neuropil_arg(args)
    failures = 0
    try:
        with contextlib.ExitStack() as stack:
            client = stack.enter_context(_dask_client(args.scheduler))
            if client is not None and not args.quiet:
                from sima_fast.distributed import report_progress

                stack.enter_context(report_progress())
                print(f"sima-fast {args.command}: running on {client}", flush=True)
            for path in args.paths:
                try:
                    dataset = _open(path)
                    print(path, flush=True)
                    with _about(None):
                        lines = work(dataset, args, client)
                except _Failure as exc:
                    failures += 1
                    print(f"sima-fast {args.command}: {path}: {exc}", file=sys.stderr, flush=True)
                    continue
                for line in lines:
                    print(f"  {line}", flush=True)
    except OSError as exc:  # the scheduler cannot be reached
        print(f"sima-fast {args.command}: --scheduler: {_message(exc)}", file=sys.stderr)
        return _USAGE
    return _RUNTIME if failures else 0


# -- export ------------------------------------------------------------------------------------

_EXPORT_REGISTRIES = {
    "averages": "averages_writers",
    "frames": "frames_writers",
    "signals": "signals_writers",
}
_EXPORT_DEFAULTS = {"averages": "TIFF16", "frames": "TIFF16", "signals": "csv"}
_EXTENSIONS = {"TIFF8": ".tif", "TIFF16": ".tif", "HDF5": ".h5", "csv": ".csv"}


def _add_export(sub: Any) -> None:
    cmd = sub.add_parser("export", help="write projections, frames or signals to files")
    _describe(
        cmd,
        """\
Write a time projection of every channel (averages), every frame (frames) or
extracted signals (signals) to files.

OUT: give every file, or one path from which the names are derived. The files:
  averages  TIFF: one per channel; other formats: one file
  frames    TIFF: one per sequence, plane and channel (in that order, channels
            fastest); other formats: one per sequence
  signals   one file

From one path STEM.EXT the names are STEM followed by _seqI (sequence I), _planeJ
(plane J) and _NAME (channel name), each only where the dataset has more than one,
then .EXT (default .tif, .h5 or .csv). A path ending in '/' or naming a folder
gives names inside it, with the stem time_average (or time_std, time_kurtosis),
frames or signals.""",
        """
  sima-fast export session.sima averages mean.tif      # mean_GCaMP.tif, mean_tdTomato.tif
  sima-fast export session.sima frames out/ --format HDF5      # out/frames_seq0.h5, ...
  sima-fast export session.sima signals cells.csv --label cells --channel GCaMP
""",
    )
    cmd.add_argument("path", metavar="PATH", help="a dataset directory")
    cmd.add_argument("kind", choices=list(_EXPORT_REGISTRIES), help="what to export")
    cmd.add_argument("outputs", nargs="+", metavar="OUT", help="output files, or a stem or folder")
    cmd.add_argument(
        "--format",
        choices=_RegistryChoices(*_EXPORT_REGISTRIES.values()),
        metavar="FORMAT",
        help="one of %(choices)s, as the kind allows (default: TIFF16 for averages and "
        "frames, csv for signals)",
    )
    cmd.add_argument(
        "--channel",
        help="signals: the channel whose signals (default 0); averages, frames: export "
        "only this channel (default: all)",
    )
    cmd.add_argument("--label", help="signals: which extraction (default: the most recent)")
    cmd.add_argument(
        "--projection",
        choices=["average", "std", "kurtosis"],
        help="averages: which time projection (default: average)",
    )
    cmd.add_argument(
        "--fill-gaps",
        action=argparse.BooleanOptionalAction,
        help="frames: replace missing (NaN) pixels by their nearest observation (default: yes)",
    )
    cmd.add_argument(
        "--scale",
        action=argparse.BooleanOptionalAction,
        help="averages, frames: stretch values to the output type's range "
        "(default: yes for averages, no for frames)",
    )


def _safe_part(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text) or "_"


def _output_paths(args: argparse.Namespace, dataset: Any, fmt: str) -> tuple[Any, list[str]]:
    """Name the files of an export from the OUT arguments (see the ``export`` help).

    Returns
    -------
    filenames : str or list
        The ``filenames`` argument of the dataset's export method.
    files : list of str
        The same files as a flat list, in the order the help gives.
    """
    kind, outputs = args.kind, args.outputs
    seqs, planes, channels = dataset.num_sequences, dataset.frame_shape[0], dataset.frame_shape[3]
    names = [_safe_part(n) for n in dataset.channel_names]
    tiff = fmt.upper().startswith("TIFF")
    if kind == "averages" and tiff:
        parts = [[names[c]] if channels > 1 else [] for c in range(channels)]
        what = "one per channel"
    elif kind == "frames" and tiff:
        parts = [
            [
                p
                for p, keep in (
                    (f"seq{i}", seqs > 1),
                    (f"plane{j}", planes > 1),
                    (names[k], channels > 1),
                )
                if keep
            ]
            for i in range(seqs)
            for j in range(planes)
            for k in range(channels)
        ]
        what = "one per sequence, plane and channel"
    elif kind == "frames":
        parts = [[f"seq{i}"] if seqs > 1 else [] for i in range(seqs)]
        what = "one per sequence"
    else:
        parts = [[]]
        what = "one file"
    single = kind == "signals" or (kind == "averages" and not tiff)

    first = outputs[0]
    folder = len(outputs) == 1 and (first.endswith(("/", os.sep)) or os.path.isdir(first))
    if len(outputs) == len(parts) and not folder:
        flat = list(outputs)
    elif len(outputs) == 1:
        if folder:
            stem = "frames" if kind == "frames" else "signals"
            if kind == "averages":
                stem = f"time_{args.projection or 'average'}"
            stem, ext = os.path.join(first, stem), ""
        else:
            stem, ext = os.path.splitext(first)
        ext = ext or _EXTENSIONS.get(fmt, f".{fmt.lower()}")
        flat = [stem + "".join(f"_{p}" for p in part) + ext for part in parts]
    else:
        raise _usage(
            f"OUT: {kind} as {fmt} take {_plural(len(parts), 'path')} ({what}), or one stem or "
            f"folder to derive them from; got {len(outputs)}"
        )
    if single:
        return flat[0], flat
    if kind == "frames" and tiff:
        it = iter(flat)
        nested = [
            [[next(it) for _ in range(channels)] for _ in range(planes)] for _ in range(seqs)
        ]
        return nested, flat
    return flat, flat


def _export(args: argparse.Namespace) -> int:
    import sima_fast.io

    kind = args.kind
    registry = getattr(sima_fast.io, _EXPORT_REGISTRIES[kind])
    fmt = args.format or _EXPORT_DEFAULTS[kind]
    if fmt not in registry:
        raise _usage(
            f"--format: {fmt!r} is not a format for {kind}; choose from "
            f"{', '.join(registry.names())}"
        )
    applies = {
        "--label": (args.label, ("signals",)),
        "--projection": (args.projection, ("averages",)),
        "--fill-gaps": (args.fill_gaps, ("frames",)),
        "--scale": (args.scale, ("averages", "frames")),
    }
    for option, (value, kinds) in applies.items():
        if value is not None and kind not in kinds:
            raise _usage(f"{option} does not apply to {kind} (only to {', '.join(kinds)})")
    label = _label_arg(args.label)
    with _about(args.path):
        dataset = _open(args.path)
    if kind == "signals":
        with _about(args.path):
            channel = _channel(dataset, args.channel or "0")
            label, _ = _pick_signals(dataset, channel, label)
        path, files = _output_paths(args, dataset, fmt)
        print(args.path, flush=True)
        with _about("OUT"):
            dataset.export_signals(path, fmt=fmt, channel=channel, signals_label=label)
        what = f"signals {label!r} of channel {dataset.channel_names[channel]}"
    else:
        if args.channel is not None:
            with _about(args.path):
                c = _channel(dataset, args.channel)
            dataset = dataset[:, :, :, :, :, c : c + 1]
        filenames, files = _output_paths(args, dataset, fmt)
        print(args.path, flush=True)
        if kind == "averages":
            projection = args.projection or "average"
            scale = True if args.scale is None else args.scale
            with _about("OUT"):
                dataset.export_averages(
                    filenames, fmt=fmt, scale_values=scale, projection_type=projection
                )
            what = f"time {projection} of {_plural(len(dataset.channel_names), 'channel')}"
        else:
            fill = True if args.fill_gaps is None else args.fill_gaps
            with _about("OUT"):
                dataset.export_frames(
                    filenames, fmt=fmt, fill_gaps=fill, scale_values=bool(args.scale)
                )
            what = f"{sum(len(s) for s in dataset.sequences)} frames"
    print(f"  {what} as {fmt}:")
    for name in files:
        print(f"    {name}")
    return 0


# -- export-nwb --------------------------------------------------------------------------------


def _add_export_nwb(sub: Any) -> None:
    cmd = sub.add_parser("export-nwb", help="write the dataset as an NWB file (DANDI, pynwb)")
    _describe(
        cmd,
        """\
Write the ROIs, traces, spikes and time projections of one channel (and optionally
the frames of every channel) as a Neurodata Without Borders file, then check it with
nwbinspector.
The metadata file (YAML or JSON) gives the session, subject and imaging plane;
docs/nwb.md has an example. Needs the nwb extra: pip install "sima_fast[nwb]".""",
        """
  sima-fast export-nwb session.sima session.nwb --metadata session.yaml --frames
""",
    )
    cmd.add_argument("path", metavar="DATASET", help="a dataset directory")
    cmd.add_argument("out", metavar="OUT.nwb", help="the NWB file to write")
    cmd.add_argument("--metadata", metavar="FILE", required=True, help="YAML or JSON metadata")
    group = cmd.add_mutually_exclusive_group()
    group.add_argument(
        "--frames", action="store_true", help="copy the frames, every channel (compressed)"
    )
    group.add_argument(
        "--link-frames", action="store_true", help="link to the frames' TIFF or HDF5 files"
    )
    cmd.add_argument("--channel", default="0", help="channel index or name (default 0)")
    cmd.add_argument("--rois", metavar="LABEL", help="ROI set (default: that of the signals)")
    cmd.add_argument("--label", help="which extraction (default: the most recent)")
    cmd.add_argument("--no-spikes", action="store_true", help="leave the inferred spikes out")
    cmd.add_argument(
        "--no-projections", action="store_true", help="leave the mean/std/kurtosis images out"
    )
    cmd.add_argument("--overwrite", action="store_true", help="replace an existing OUT.nwb")
    cmd.add_argument("--no-inspect", action="store_true", help="do not run nwbinspector")


def _export_nwb(args: argparse.Namespace) -> int:
    with _about(args.path):
        dataset = _open(args.path, read_only=True)
        channel = _channel(dataset, args.channel)
    frames = "link" if args.link_frames else bool(args.frames)
    print(args.path, flush=True)
    if not args.overwrite and os.path.lexists(args.out):
        raise _Failure(f"{args.out}: exists; pass --overwrite to replace it")
    with _about(args.out):
        result = dataset.export_nwb(
            args.out,
            metadata=args.metadata,
            rois_label=args.rois,
            signals_label=_label_arg(args.label),
            channel=channel,
            frames=frames,
            spikes=not args.no_spikes,
            projections=not args.no_projections,
            overwrite=args.overwrite,
            inspect=not args.no_inspect,
        )
    if args.no_inspect:
        print(f"  wrote {result}")
        return 0
    print(f"  wrote {result.path}")
    print(f"  {result.summary()}")
    for message in result.failing():
        print(f"    {message.importance.name}: {message.object_name}: {message.message}")
    return 0 if result.ok else _RUNTIME


# -- info --------------------------------------------------------------------------------------


def _info(args: argparse.Namespace) -> int:
    from sima_fast.summary import dataset_summary

    with _about(args.path):
        try:
            dataset = _open(args.path, read_only=True)
        except (_Failure, *_EXPECTED):
            raise
        except Exception as exc:  # any load failure is one line, never a traceback
            raise _Failure(f"cannot open it: {type(exc).__name__}: {_message(exc)}") from None
    print(dataset_summary(dataset))
    _print_acquisition(dataset)
    return 0


def _acquisition_lines(meta: Any) -> list[str]:
    """Return the acquisition block of ``info`` and ``create``: indented lines, one per value."""
    if meta is None:
        return ["  acquisition: unknown (no metadata in the data files; none set)"]
    return ["  acquisition:", *(f"    {line}" for line in meta.summary())]


def _print_acquisition(dataset: Any) -> None:
    """Print the dataset's acquisition metadata as one block (frame rate, zoom, ... source)."""
    for line in _acquisition_lines(dataset.acquisition_metadata):
        print(line)


_HANDLERS = {
    "create": _create,
    "motion": _motion,
    "import-rois": _import_rois,
    "segment": _segment,
    "export": _export,
    "export-nwb": _export_nwb,
    "info": _info,
}


def main(argv: _Seq[str] | None = None) -> int:
    """Run the ``sima-fast`` command line (the console script's entry point).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 on success, 2 when the command line is wrong (an
        unknown format or label, an input path that does not exist, an
        unreachable scheduler), 1 when the work fails (for ``project``,
        ``extract`` and ``infer-spikes``: when some dataset failed). The
        error is one line on standard error.

    Raises
    ------
    SystemExit
        From :mod:`argparse` for ``--help``, ``--version`` and invalid
        arguments (status 2, one line), and when ``--scheduler`` is given
        without Dask installed.
    """
    parser = _Parser(
        prog="sima-fast",
        description="Fast, drop-in analysis of two-photon calcium imaging data.",
        epilog="""\
from a movie to spikes:
  sima-fast create session.sima movie.h5 --format HDF5 --dim-order tyx
  sima-fast import-rois session.sima RoiSet.zip --label cells
  sima-fast extract session.sima --rois cells --label cells
  sima-fast infer-spikes session.sima --label cells
  sima-fast export session.sima signals cells.csv --label cells

'sima-fast COMMAND --help' shows a command's options and an example.""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    _describe(
        info,
        "Print the sequences, frame shape, channels, ROI sets and extracted signals of a "
        "dataset directory, and its acquisition metadata (frame rate, zoom, planes, "
        "channels, pixel size, and where they come from).",
        "  sima-fast info session.sima",
    )
    bench = sub.add_parser(
        "bench", help="time sima_fast against its baselines and print a Markdown table"
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: about 30 s on 2 cores and 2 GiB of memory "
        "(full size: about 3.5 min, 4.6 GiB)",
    )
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.add_argument("--plot", metavar="PATH", help="also draw the ratios as a bar chart")
    warm = sub.add_parser(
        "warmup", help="compile the kernels now (once per machine and version), not at first use"
    )
    _describe(
        warm,
        "Compile sima_fast's numba kernels for this machine ahead of time, e.g. on an "
        "acquisition computer after installing, so that no experiment waits for the compiler. "
        "Later processes load them from the cache.",
        "  sima-fast warmup",
    )
    run_sima = sub.add_parser("run-sima", help="run an unchanged SIMA script on sima_fast")
    run_sima.add_argument("--force", action="store_true", help="shadow an installed SIMA")
    run_sima.add_argument("script", help="the SIMA script (.py)")
    run_sima.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    _describe(
        run_sima,
        "Run a script written for SIMA, unchanged: 'import sima' and 'from sima.X import Y' "
        "give sima_fast's modules (see docs/migrating.md). Refuses when a real SIMA is "
        "installed, unless --force. The exit status is the script's.",
        "  sima-fast run-sima workflow.py --verbose",
    )
    _add_create(sub)
    _add_motion(sub)
    _add_import_rois(sub)
    _add_segment(sub)
    for name in _DATASET_COMMANDS:
        _add_dataset_command(sub, name)
    _add_export(sub)
    _add_export_nwb(sub)
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
    if args.command == "run-sima":
        from sima_fast.compat import run_with_status

        return run_with_status(args.script, args.args, args.force, "sima-fast run-sima")
    if args.command == "warmup":
        from sima_fast.kernels._jit import kernel_cache_directory
        from sima_fast.precompile import warmup

        seconds = warmup(verbose=True)
        print(f"kernels ready in {seconds:.1f} s (cache: {kernel_cache_directory()})")
        return 0
    with _one_line_warnings(args.command):
        try:
            if args.command in _DATASET_COMMANDS:
                return _run_dataset_command(args)
            return _HANDLERS[args.command](args)
        except _Failure as exc:
            sys.stdout.flush()
            print(f"sima-fast {args.command}: {exc}", file=sys.stderr)
            return exc.status
        except KeyboardInterrupt:
            print(f"sima-fast {args.command}: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

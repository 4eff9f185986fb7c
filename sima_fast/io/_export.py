"""What every projection and frames writer shares: arguments, paths, values.

Writers validate the nesting of ``filenames`` with the ``*_paths`` helpers
(which also create the output directories), write every output to a
temporary file with :func:`all_or_nothing`, so a failed export leaves no
file behind and a crashed one is completed or undone by the next export into
its directories, and convert values with :func:`to_unsigned` (SIMA's
full-range stretch, then saturation). Frames are read chunk by chunk through
:func:`sima_fast.io._frames.converted_frames`, so memory does not grow with
the number of frames.

:func:`export_sequence` (behind :meth:`sima_fast.sequence.Sequence.export`)
presents one sequence to the registered frames writers as a one-sequence
dataset (:class:`SequenceSource`), so a sequence is written by the same code
as :meth:`~sima_fast.imaging.ImagingDataset.export_frames`. This module does
not import the sequences, the Dask layer or any writer module.
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
from collections.abc import Iterator
from collections.abc import Sequence as _SeqABC
from typing import Any

import numpy as np

from sima_fast._atomic import atomic_publish
from sima_fast._validate import ArgumentTypeError, check_bool
from sima_fast.io._registry import frames_writers

__all__ = [
    "COMPRESSIONS",
    "NESTED_TIFF_FORMATS",
    "PROJECTION_TYPES",
    "SequenceSource",
    "all_or_nothing",
    "export_sequence",
    "exported_metadata",
    "exported_metadata_json",
    "finite_maximum",
    "full_range_scale",
    "is_path",
    "nested_frame_paths",
    "per_channel_paths",
    "per_sequence_paths",
    "prepare_path",
    "projection",
    "refuse_dataset_files",
    "sequence_filenames",
    "single_path",
    "to_unsigned",
]

PROJECTION_TYPES = {"average": "time_averages", "std": "time_std", "kurtosis": "time_kurtosis"}
"""``projection_type`` of ``export_averages`` -> the ``ImagingDataset`` property it writes."""

COMPRESSIONS = (None, "gzip", "lzf", "szip")
"""The ``compression`` values ``export_frames`` accepts."""

NESTED_TIFF_FORMATS = ("TIFF8", "TIFF16")
"""Formats whose frames files are nested by plane and channel (one file per pair)."""


# --------------------------------------------------------------------------
# filenames
# --------------------------------------------------------------------------


def is_path(p: Any) -> bool:
    """Tell whether ``p`` is a str or an ``os.PathLike``.

    Parameters
    ----------
    p : object
        Any value.

    Returns
    -------
    bool
    """
    return isinstance(p, (str, os.PathLike))


def _is_list(x: Any) -> bool:
    return isinstance(x, _SeqABC) and not isinstance(x, (str, bytes))


def _flat_paths(filenames: Any) -> list[Any]:
    if is_path(filenames):
        return [filenames]
    if isinstance(filenames, (list, tuple)):
        return [p for item in filenames for p in _flat_paths(item)]
    return []


def refuse_dataset_files(dataset: Any, filenames: Any, argname: str) -> None:
    """Refuse output paths that would overwrite what a dataset reads or stores.

    Checked before anything is written, so a refused call changes nothing on
    disk. Links are followed: a path reaching an input file under another
    name is refused too.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset being exported.
    filenames : str, path-like or nested lists of them
        The output paths, in any nesting (entries that are not paths are left
        to the writer's own checks).
    argname : str
        How the argument is named in the error message.

    Raises
    ------
    ValueError
        If an output path is a data file that a sequence of ``dataset`` reads,
        or an existing file of the dataset's own directory; the message names
        the path as the user gave it.
    """
    inputs = {
        os.path.realpath(f): "a sequence of the dataset reads it"
        for seq in dataset.sequences
        for f in seq.data_files()
    }
    savedir = getattr(dataset, "savedir", None)
    if savedir and os.path.isdir(savedir):
        for name in os.listdir(savedir):
            full = os.path.realpath(os.path.join(savedir, name))
            if os.path.isfile(full):
                inputs.setdefault(full, "it is a file of the dataset's directory")
    for path in _flat_paths(filenames):
        why = inputs.get(os.path.realpath(os.path.abspath(os.fspath(path))))
        if why is not None:
            raise ValueError(
                f"{argname}: refusing to write {os.fspath(path)!r}: {why}; "
                "choose another output path"
            )


def prepare_path(path: Any, argname: str) -> str:
    """Absolute output path with its directory created.

    Parameters
    ----------
    path : str or path-like
        The output file.
    argname : str
        How the argument is named in error messages (e.g. ``'filenames[0]'``).

    Returns
    -------
    str
        The absolute path.

    Raises
    ------
    ValueError
        If ``path`` is not a path.
    OSError
        If the directory cannot be created or written, or ``path`` is a
        directory (the message names ``argname`` and the path).
    """
    if not is_path(path):
        raise ValueError(f"{argname} must be a path (str or os.PathLike), got {path!r}")
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{argname}: cannot create the directory of {path!r} ({exc})") from exc
    if not os.access(directory, os.W_OK):
        raise OSError(f"{argname}: the directory of {path!r} is not writable")
    if os.path.isdir(path):
        raise OSError(f"{argname}: {path!r} is a directory")
    return path


def single_path(filenames: Any, fmt: str) -> str:
    """Return the one output file of a format that writes all channels to one file.

    Parameters
    ----------
    filenames : str, path-like, or a list of one of them
        The output file.
    fmt : str
        The format name, for the error message.

    Returns
    -------
    str
        The prepared absolute path (see :func:`prepare_path`).

    Raises
    ------
    ValueError
        If ``filenames`` is not a single path.
    """
    if _is_list(filenames) and len(filenames) == 1:
        filenames = filenames[0]
    if not is_path(filenames):
        raise ValueError(
            f"filenames must be a single path for fmt={fmt!r} (one file holding every "
            f"channel), got {filenames!r}"
        )
    return prepare_path(filenames, "filenames")


def per_channel_paths(filenames: Any, fmt: str, channel_names: list[str]) -> list[str]:
    """One output file per channel.

    Parameters
    ----------
    filenames : list of str or path-like
        ``filenames[c]`` is the file of channel ``c``.
    fmt : str
        The format name, for the error message.
    channel_names : list of str
        The dataset's channel names.

    Returns
    -------
    list of str
        The prepared absolute paths.

    Raises
    ------
    ValueError
        If ``filenames`` is not a list of one path per channel.
    """
    C = len(channel_names)
    if not _is_list(filenames) or len(filenames) != C or not all(map(is_path, filenames)):
        raise ValueError(
            f"filenames must be a list of {C} paths for fmt={fmt!r} (one file per "
            f"channel, channels {channel_names}), got {filenames!r}"
        )
    return [prepare_path(f, f"filenames[{c}]") for c, f in enumerate(filenames)]


def per_sequence_paths(filenames: Any, fmt: str, num_sequences: int) -> list[str]:
    """One output file per sequence.

    Parameters
    ----------
    filenames : list of str or path-like
        ``filenames[i]`` is the file of sequence ``i``.
    fmt : str
        The format name, for the error message.
    num_sequences : int
        The dataset's number of sequences.

    Returns
    -------
    list of str
        The prepared absolute paths.

    Raises
    ------
    ValueError
        If ``filenames`` is not a list of one path per sequence.
    """
    S = num_sequences
    if not _is_list(filenames) or len(filenames) != S or not all(map(is_path, filenames)):
        raise ValueError(
            f"filenames must be a list of {S} paths for fmt={fmt!r} (filenames[i] is the "
            f"file of sequence i), got {filenames!r}"
        )
    return [prepare_path(f, f"filenames[{i}]") for i, f in enumerate(filenames)]


def nested_frame_paths(
    filenames: Any, fmt: str, num_sequences: int, num_planes: int, num_channels: int
) -> list[list[list[str]]]:
    """One output file per sequence, plane and channel.

    Parameters
    ----------
    filenames : nested list of str or path-like
        ``filenames[i][j][k]`` is the file of sequence ``i``, plane ``j``,
        channel ``k``.
    fmt : str
        The format name, for the error message.
    num_sequences, num_planes, num_channels : int
        The dataset's numbers of sequences, planes and channels.

    Returns
    -------
    list of list of list of str
        The prepared absolute paths, nested like ``filenames``.

    Raises
    ------
    ValueError
        If ``filenames`` is not nested as described.
    """
    S, Z, C = num_sequences, num_planes, num_channels
    ok = (
        _is_list(filenames)
        and len(filenames) == S
        and all(_is_list(p) and len(p) == Z for p in filenames)
        and all(_is_list(c) and len(c) == C for p in filenames for c in p)
        and all(is_path(f) for p in filenames for c in p for f in c)
    )
    if not ok:
        raise ValueError(
            f"filenames must be nested as filenames[sequence][plane][channel]: a list of "
            f"{S} lists of {Z} lists of {C} paths for fmt={fmt!r}"
        )
    return [
        [
            [prepare_path(f, f"filenames[{i}][{j}][{k}]") for k, f in enumerate(ch)]
            for j, ch in enumerate(pl)
        ]
        for i, pl in enumerate(filenames)
    ]


@contextlib.contextmanager
def all_or_nothing(paths: list[str]) -> Iterator[list[str]]:
    """Temporary paths for every output; all are published together only on success.

    Parameters
    ----------
    paths : list of str
        The final destinations (in one or several directories).

    Yields
    ------
    list of str
        One temporary path beside each destination, in the same order.

    Raises
    ------
    ValueError
        If a destination appears twice.

    Notes
    -----
    A thin wrapper of :func:`sima_fast._atomic.atomic_publish`: interrupted
    exports of earlier runs in these directories are recovered first; if the
    body raises, no destination changes; the outputs are published through a
    journal, so after a crash the next export into (or
    :func:`sima_fast._atomic.recover` of) any of these directories leaves
    every destination new or every destination as it was.
    """
    with atomic_publish(paths) as tmps:
        yield tmps


# --------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------


def projection(dataset: Any, projection_type: str) -> np.ndarray:
    """Return the ``(Z, Y, X, C)`` time projection named by ``projection_type``.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset; the projection is computed (and cached) if needed.
    projection_type : {'average', 'std', 'kurtosis'}
        Which projection: ``time_averages``, ``time_std`` or
        ``time_kurtosis`` of the dataset (see :data:`PROJECTION_TYPES`).

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X, C)`` float64.
    """
    return getattr(dataset, PROJECTION_TYPES[projection_type])


def to_unsigned(values: Any, dtype: Any, maximum: Any = None) -> np.ndarray:
    """Convert to an unsigned integer type: optionally stretch, then saturate and truncate.

    With ``maximum``, values are first stretched to the type's full range
    exactly as SIMA's ``to8bit``/``to16bit`` compute it,
    ``(2**bits - 1) * v / maximum`` in float64 (multiplication first), so
    the results agree with SIMA's bit for bit. A maximum that is not
    positive and finite leaves its values unstretched. Then NaN becomes 0,
    values are clipped to the type's range (saturation: SIMA's ``astype``
    wraps out-of-range values around, which is undefined behaviour in C and
    differs across platforms) and truncated toward zero.

    Parameters
    ----------
    values : array_like
        Real values.
    dtype : numpy dtype
        An unsigned integer type.
    maximum : float or array_like, optional
        The value that maps to the top of the range: a scalar, or one per
        channel (broadcast against the last axis of ``values``). Default:
        no stretch.

    Returns
    -------
    numpy.ndarray
        ``values`` converted to ``dtype``, same shape.
    """
    info = np.iinfo(dtype)
    v = np.array(values, dtype=np.float64)  # a copy: converted in place below
    if maximum is not None:
        m = np.asarray(maximum, dtype=np.float64)
        ok = np.isfinite(m) & (m > 0)
        np.multiply(v, np.where(ok, float(info.max), 1.0), out=v)
        np.divide(v, np.where(ok, m, 1.0), out=v)
    np.nan_to_num(v, copy=False, nan=0.0, posinf=float(info.max), neginf=0.0)
    np.clip(v, 0, info.max, out=v)
    return v.astype(dtype)


def finite_maximum(values: Any) -> float:
    """Return the largest finite value (NaN when there is none).

    Parameters
    ----------
    values : array_like
        Real values.

    Returns
    -------
    float
        The maximum over the finite values; NaN and infinities are skipped.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    return float(finite.max()) if finite.size else float("nan")


def full_range_scale(maximum: np.ndarray | float, bits: int) -> np.ndarray:
    """``(2**bits - 1) / maximum`` (1 where the maximum is not positive or not finite).

    Parameters
    ----------
    maximum : float or numpy.ndarray
        The largest value (per channel when an array).
    bits : int
        Bits of the output type.

    Returns
    -------
    numpy.ndarray
        The factor stretching ``maximum`` to the top of the output range.
    """
    m = np.asarray(maximum, dtype=np.float64)
    ok = np.isfinite(m) & (m > 0)
    return np.where(ok, (2.0**bits - 1.0) / np.where(ok, m, 1.0), 1.0)


# --------------------------------------------------------------------------
# acquisition metadata
# --------------------------------------------------------------------------


def exported_metadata(dataset: Any, index: int) -> Any:
    """Return the acquisition metadata the frames file of sequence ``index`` carries.

    It is what the dataset says of that sequence: the sequence's own
    metadata (read from its file, adjusted by its views: ``seq[::2]`` has
    half the frame rate, a plane or channel selection sets the counts) with
    the values set on the dataset laid over it, i.e.
    ``dataset[index].acquisition_metadata``. With one sequence this is
    ``dataset.acquisition_metadata``.

    Parameters
    ----------
    dataset : ImagingDataset or SequenceSource
        The dataset being exported (anything with ``num_sequences`` and
        ``acquisition_metadata``; several sequences also need ``dataset[i]``).
    index : int
        The sequence.

    Returns
    -------
    AcquisitionMetadata or None
        None when nothing is known (then nothing is written).
    """
    if getattr(dataset, "num_sequences", 1) == 1:
        meta = getattr(dataset, "acquisition_metadata", None)
    elif hasattr(dataset, "__getitem__"):
        meta = getattr(dataset[index], "acquisition_metadata", None)
    else:
        meta = getattr(dataset.sequences[index], "acquisition_metadata", None)
    if meta is None or getattr(meta, "empty", False):
        return None
    return meta


def exported_metadata_json(dataset: Any, index: int) -> str | None:
    """Return :func:`exported_metadata` as the JSON text the HDF5 reader reads back.

    Parameters
    ----------
    dataset : ImagingDataset or SequenceSource
        The dataset being exported.
    index : int
        The sequence.

    Returns
    -------
    str or None
        ``json.dumps(meta.todict())`` (what
        :func:`sima_fast.sequence.metadata.read_hdf5_metadata` reads from an
        ``acquisition_metadata`` attribute), or None when nothing is known.
    """
    meta = exported_metadata(dataset, index)
    return None if meta is None else json.dumps(meta.todict())


# --------------------------------------------------------------------------
# one sequence
# --------------------------------------------------------------------------


class SequenceSource:
    """One sequence presented to the frames writers as a one-sequence dataset.

    It has what a registered frames writer and
    :func:`refuse_dataset_files` read of an
    :class:`~sima_fast.imaging.ImagingDataset`: ``sequences``,
    ``num_sequences``, ``frame_shape``, ``channel_names`` and ``savedir``
    (None: nothing is stored), and ``acquisition_metadata`` (the sequence's).

    Parameters
    ----------
    sequence : Sequence
        The sequence to write.
    channel_names : list of str
        One name per channel of ``sequence``.
    """

    def __init__(self, sequence: Any, channel_names: list[str]) -> None:
        self.sequences = [sequence]
        self.num_sequences = 1
        self.frame_shape = tuple(sequence.shape[1:])
        self.channel_names = list(channel_names)
        self.savedir = None

    @property
    def acquisition_metadata(self) -> Any:
        """The sequence's acquisition metadata (an ``AcquisitionMetadata``), or None."""
        return self.sequences[0].acquisition_metadata

    def __repr__(self) -> str:
        return f"<SequenceSource of {self.sequences[0]!r}>"


def _sequence_channel_names(channel_names: Any, num_channels: int) -> list[str]:
    """``channel_names`` checked against the channel count (default '0', '1', ...)."""
    if channel_names is None:
        return [str(c) for c in range(num_channels)]
    if not _is_list(channel_names):
        raise ArgumentTypeError(
            f"channel_names must be a list of {num_channels} names, got {channel_names!r}"
        )
    names = []
    for i, n in enumerate(channel_names):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (str, numbers.Integral)):
            raise ArgumentTypeError(
                f"channel_names[{i}] must be a str (or an int, used as its digits), got {n!r}"
            )
        names.append(str(n))
    if len(names) != num_channels:
        raise ValueError(
            f"channel_names has {len(names)} name(s) but the sequence has {num_channels} "
            f"channel(s): {names}"
        )
    return names


def sequence_filenames(filenames: Any, fmt: str, num_planes: int, num_channels: int) -> list:
    """Check a sequence export's ``filenames`` and nest them as for a one-sequence dataset.

    Parameters
    ----------
    filenames : str, path-like, or nested list of them
        For the nested TIFF formats (:data:`NESTED_TIFF_FORMATS`),
        ``filenames[j][k]`` is the file of plane j, channel k; for ``'HDF5'``
        a single path; for another registered format, what its writer takes
        for one sequence.
    fmt : str
        The format name.
    num_planes, num_channels : int
        The sequence's numbers of planes and channels.

    Returns
    -------
    list
        ``[filenames]``: the form the dataset frames writers take
        (``filenames[sequence]...``).

    Raises
    ------
    ValueError
        If ``filenames`` is not of the form ``fmt`` needs; the message says
        the expected form.
    """
    Z, C = num_planes, num_channels
    if fmt in NESTED_TIFF_FORMATS:
        ok = (
            _is_list(filenames)
            and len(filenames) == Z
            and all(_is_list(p) and len(p) == C for p in filenames)
            and all(is_path(f) for p in filenames for f in p)
        )
        if not ok:
            raise ValueError(
                f"filenames must be nested as filenames[plane][channel]: a list of {Z} "
                f"lists of {C} paths for fmt={fmt!r}, got {filenames!r}"
            )
    elif fmt == "HDF5" and not is_path(filenames):
        raise ValueError(
            f"filenames must be a single path for fmt='HDF5' (one file holding every "
            f"plane and channel), got {filenames!r}"
        )
    return [filenames]


def export_sequence(
    sequence: Any,
    filenames: Any,
    fmt: str = "TIFF16",
    fill_gaps: bool = False,
    channel_names: Any = None,
    compression: str | None = None,
    scale_values: bool = False,
) -> None:
    """Write every frame of one sequence with the registered frames writer of ``fmt``.

    The implementation of :meth:`sima_fast.sequence.Sequence.export`: the
    arguments are checked before anything is written, then the sequence is
    handed to the same writer :meth:`ImagingDataset.export_frames` uses, as a
    one-sequence dataset, so it streams in time chunks and publishes all
    its files atomically.

    Parameters
    ----------
    sequence : Sequence
        The sequence to write.
    filenames : str, path-like, or nested list of them
        See :func:`sequence_filenames`.
    fmt : str, optional
        A name registered in :data:`sima_fast.io.frames_writers`; built in:
        ``'TIFF16'``, ``'TIFF8'``, ``'HDF5'``. Default: 16-bit TIFF.
    fill_gaps : bool, optional
        Fill NaN values from the pixel's nearest observation. Default: False.
    channel_names : list of str, optional
        Channel names stored with HDF5 output. Default: '0', '1', ...
    compression : {None, 'gzip', 'lzf', 'szip'}, optional
        Lossless HDF5 compression filter.
    scale_values : bool, optional
        Stretch each channel to the output's full range by its maximum over
        the sequence. Default: False.

    Raises
    ------
    ValueError
        Unknown ``fmt`` or ``compression``, ``filenames`` not of the form
        ``fmt`` needs, wrong ``channel_names``, or an output path that the
        sequence reads.
    ArgumentTypeError
        ``fill_gaps``, ``scale_values`` or ``channel_names`` of the wrong type.
    OSError
        An output directory that cannot be created or written.
    """
    fill_gaps = check_bool("fill_gaps", fill_gaps)
    scale_values = check_bool("scale_values", scale_values)
    writer = frames_writers.lookup(fmt)
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {list(COMPRESSIONS)}, got {compression!r}")
    shape = sequence.shape
    names = _sequence_channel_names(channel_names, shape[4])
    nested = sequence_filenames(filenames, fmt, shape[1], shape[4])
    source = SequenceSource(sequence, names)
    refuse_dataset_files(source, filenames, "filenames")
    writer(
        source,
        nested,
        fill_gaps=fill_gaps,
        scale_values=scale_values,
        compression=compression,
        client=None,
    )

"""What every projection and frames writer shares: arguments, paths, scaling, streaming.

Writers validate the nesting of ``filenames`` with the ``*_paths`` helpers
(which also create the output directories), write every output to a
temporary file with :func:`all_or_nothing`, so a failed export leaves no
file behind and a crashed one is completed or undone by the next export into
its directories, and read the frames chunk by chunk through
:func:`converted_frames`, so memory does not grow with the number of frames.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from collections.abc import Sequence as _SeqABC
from typing import Any

import numpy as np

from sima_fast._atomic import atomic_publish
from sima_fast._projections import channel_maxima

__all__ = [
    "COMPRESSIONS",
    "PROJECTION_TYPES",
    "all_or_nothing",
    "converted_frames",
    "full_range_scale",
    "is_path",
    "nested_frame_paths",
    "per_channel_paths",
    "per_sequence_paths",
    "prepare_path",
    "progress_bar",
    "projection",
    "refuse_dataset_files",
    "single_path",
    "to_unsigned",
]

PROJECTION_TYPES = {"average": "time_averages", "std": "time_std", "kurtosis": "time_kurtosis"}
"""``projection_type`` of ``export_averages`` -> the ``ImagingDataset`` property it writes."""

COMPRESSIONS = (None, "gzip", "lzf", "szip")
"""The ``compression`` values ``export_frames`` accepts."""


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


def to_unsigned(values: np.ndarray, dtype: Any, scale: float | np.ndarray | None) -> np.ndarray:
    """Convert to an unsigned integer type: optionally scale, then clip, truncate.

    NaN becomes 0; values are clipped to the type's range after scaling and
    truncated toward zero (SIMA's ``astype`` convention).

    Parameters
    ----------
    values : numpy.ndarray
        The values.
    dtype : numpy dtype
        An unsigned integer type.
    scale : float or numpy.ndarray or None
        Factor applied first (broadcast against ``values``), or None.

    Returns
    -------
    numpy.ndarray
        ``values`` converted to ``dtype``.
    """
    info = np.iinfo(dtype)
    v = np.asarray(values, dtype=np.float64)
    if scale is not None:
        v = v * scale
    v = np.nan_to_num(v, nan=0.0, posinf=float(info.max), neginf=0.0)
    return np.clip(v, 0, info.max).astype(dtype)


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
# frames
# --------------------------------------------------------------------------


def converted_frames(
    dataset: Any,
    fill_gaps: bool,
    scale_values: bool,
    bits: int,
    convert: Callable[..., np.ndarray],
    client: Any = None,
) -> tuple[list, Callable[[Any], Iterator[tuple[int, np.ndarray]]]]:
    """Give the sequences to write and, per sequence, its frames converted block by block.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset whose frames are exported.
    fill_gaps : bool
        Replace NaN values by the pixel's nearest observation
        (:meth:`Sequence.fill_gaps`).
    scale_values : bool
        Pass ``scale = (2**bits - 1) / max`` per channel (over the whole
        dataset) to ``convert``; otherwise ``scale=None``.
    bits : int
        Bits of the output values, for the scale.
    convert : callable
        ``convert(chunk, scale=...)`` turns a ``(t, Z, Y, X, C)`` chunk into
        the block to write; it must be picklable when ``client`` is given.
    client : dask.distributed.Client, optional
        Read, gap-fill and convert on this Dask cluster, time range by time
        range (:func:`sima_fast.distributed.frame_blocks`, and
        :func:`sima_fast.distributed.channel_maxima` for the scale); the
        blocks are identical.

    Returns
    -------
    sequences : list of Sequence
        The sequences, in order (their ``shape`` and ``len`` give the
        output sizes).
    blocks : callable
        ``blocks(seq)`` iterates ``(t0, block)`` over one of ``sequences``,
        in time order.
    """
    if client is None:
        sequences = [s.fill_gaps() if fill_gaps else s for s in dataset.sequences]
        maxima = channel_maxima
        frames = _local_blocks
    else:
        from sima_fast import distributed

        sequences = list(dataset.sequences)  # gaps are filled on the cluster
        # (filling copies finite values, so it does not change the maxima)
        maxima = functools.partial(distributed.channel_maxima, client=client)
        frames = functools.partial(distributed.frame_blocks, client=client, fill_gaps=fill_gaps)
    scale = full_range_scale(maxima(sequences), bits) if scale_values else None  # (C,)
    return sequences, functools.partial(frames, convert=functools.partial(convert, scale=scale))


def _local_blocks(seq: Any, convert: Callable) -> Iterator[tuple[int, np.ndarray]]:
    """``(t0, convert(chunk))`` for every chunk of ``seq``, read here."""
    for t0, chunk in seq.iter_chunks(reuse_buffer=True, prefetch=True):
        yield t0, convert(chunk)


def progress_bar(sequences: list, desc: str = "export_frames") -> Any:
    """Return a progress bar over the frames of ``sequences`` (shown on terminals only).

    Parameters
    ----------
    sequences : list of Sequence
        The sequences being written.
    desc : str, optional
        The bar's label.

    Returns
    -------
    tqdm.tqdm
        A context manager; call ``update(n)`` after writing ``n`` frames.
    """
    from tqdm.auto import tqdm

    total = sum(len(s) for s in sequences)
    return tqdm(total=total, desc=desc, unit="frame", disable=None)

"""Streaming the frames a frames writer writes: gap filling, scaling, conversion, progress.

Kept apart from :mod:`sima_fast.io._export` because it reaches
:mod:`sima_fast.distributed` (and through it the sequences) for exports on a
Dask cluster, while the argument and path helpers of ``_export`` are also
used by :meth:`sima_fast.sequence.Sequence.export`, below the sequences.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from sima_fast._projections import channel_maxima
from sima_fast.io._export import full_range_scale

__all__ = ["converted_frames", "progress_bar"]


def converted_frames(
    dataset: Any,
    fill_gaps: bool,
    scale_values: bool,
    bits: int,
    convert: Callable[..., np.ndarray],
    client: Any = None,
    by_maximum: bool = False,
) -> tuple[list, Callable[[Any], Iterator[tuple[int, np.ndarray]]]]:
    """Give the sequences to write and, per sequence, its frames converted block by block.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset whose frames are exported (anything with a
        ``sequences`` list, such as :class:`sima_fast.io._export.SequenceSource`).
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
    by_maximum : bool, optional
        Call ``convert(chunk, maximum=...)`` instead, with the ``(C,)``
        per-channel maxima over the dataset (None when ``scale_values`` is
        False), for converters that stretch as ``(2**bits - 1) * v / max``
        (:func:`sima_fast.io._export.to_unsigned`). Default: False.

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
    top = maxima(sequences) if scale_values else None  # (C,)
    if by_maximum:
        bound = functools.partial(convert, maximum=top)
    else:
        scale = None if top is None else full_range_scale(top, bits)
        bound = functools.partial(convert, scale=scale)
    return sequences, functools.partial(frames, convert=bound)


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

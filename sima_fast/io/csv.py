"""Extracted signals as tab-separated text (format 'csv')."""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np

from sima_fast._atomic import atomic_publish
from sima_fast.io._registry import signals_writers

__all__ = ["write_signals_csv"]


def _roi_field(roi: Any, key: str) -> Any:
    if isinstance(roi, dict):
        return roi.get(key)
    return getattr(roi, key, None)


@signals_writers.register("csv")
def write_signals_csv(path: str | os.PathLike, signals: dict[str, Any]) -> None:
    r"""Write one extraction record as tab-separated text (atomically).

    Interrupted writes of earlier runs in the output directory are recovered
    first (see ``sima_fast.storage.recover``).

    Parameters
    ----------
    path : str or path-like
        Output file.
    signals : dict
        An extraction record with ``raw`` (list over sequences of
        ``(n_rois, T_k)`` arrays) and ``rois`` (ROI dicts in row order);
        with ``neuropil`` and ``corrected`` (same layout, from
        ``extract(neuropil=...)``) their blocks follow raw's.

    Raises
    ------
    ValueError
        If ``raw`` is missing or a block's shape does not match the ROIs.

    Notes
    -----
    Header rows: ``sequence, frame, <ROI ids>``; ``'', label, <ROI labels>``;
    ``'', tags, <sorted tags joined by commas>``. Then one row per frame:
    sequence index, frame index within the sequence, one value per ROI.
    A record with neuropil traces has three blocks of ROI columns, ``raw``,
    ``neuropil`` then ``corrected`` (the header rows repeated per block), and
    a fourth header row ``'', trace, <raw|neuropil|corrected>`` naming each
    column's block; a record without them is written exactly as before.

    Examples
    --------
    >>> import io, os, tempfile, numpy as np
    >>> rec = {'raw': [np.array([[1.0, 2.0]])],
    ...        'rois': [{'id': 'a', 'label': 'cell', 'tags': {'x', 'b'}}]}
    >>> path = os.path.join(tempfile.mkdtemp(), 'signals.csv')
    >>> write_signals_csv(path, rec)
    >>> with open(path) as fh:
    ...     print(fh.read().replace('\t', '|'))
    sequence|frame|a
    |label|cell
    |tags|b,x
    0|0|1.0
    0|1|2.0
    <BLANKLINE>
    """
    raw = signals.get("raw")
    rois = signals.get("rois", [])
    if raw is None:
        raise ValueError("signals has no 'raw' traces to export")
    n_rois = len(rois)
    names = ["raw"] + [key for key in ("neuropil", "corrected") if signals.get(key) is not None]
    traces = [signals[key] for key in names]
    for key, blocks in zip(names, traces):
        if len(blocks) != len(raw):
            raise ValueError(f"{key} has {len(blocks)} sequence(s) but raw has {len(raw)}")
        for k, block in enumerate(blocks):
            if np.ndim(block) != 2 or np.shape(block) != (n_rois, np.shape(raw[k])[1]):
                raise ValueError(
                    f"{key}[{k}] has shape {np.shape(block)}; expected ({n_rois}, frames) to "
                    f"match the {n_rois} ROIs and raw[{k}]"
                )
    repeat = len(names)

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    # atomic_publish of one file: one rename, and the directory is recovered first
    with atomic_publish([path]) as (tmp,), open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        ids = [text(_roi_field(r, "id")) for r in rois]
        labels = [text(_roi_field(r, "label")) for r in rois]
        tags = [",".join(sorted(_roi_field(r, "tags") or [])) for r in rois]
        writer.writerow(["sequence", "frame", *ids * repeat])
        writer.writerow(["", "label", *labels * repeat])
        writer.writerow(["", "tags", *tags * repeat])
        if repeat > 1:
            writer.writerow(["", "trace", *[key for key in names for _ in rois]])
        for k in range(len(raw)):
            block = np.concatenate([np.asarray(blocks[k]) for blocks in traces])
            for t in range(block.shape[1]):
                writer.writerow([k, t, *(repr(float(v)) for v in block[:, t])])

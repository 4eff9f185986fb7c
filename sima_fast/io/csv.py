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
        ``(n_rois, T_k)`` arrays) and ``rois`` (ROI dicts in row order).

    Raises
    ------
    ValueError
        If ``raw`` is missing or a block's shape does not match the ROIs.

    Notes
    -----
    Header rows: ``sequence, frame, <ROI ids>``; ``'', label, <ROI labels>``;
    ``'', tags, <sorted tags joined by commas>``. Then one row per frame:
    sequence index, frame index within the sequence, one value per ROI.

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
    for k, block in enumerate(raw):
        if np.ndim(block) != 2 or np.shape(block)[0] != n_rois:
            raise ValueError(
                f"raw[{k}] has shape {np.shape(block)}; expected ({n_rois}, frames) to match "
                f"the {n_rois} ROIs"
            )

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    # atomic_publish of one file: one rename, and the directory is recovered first
    with atomic_publish([path]) as (tmp,), open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["sequence", "frame", *[text(_roi_field(r, "id")) for r in rois]])
        writer.writerow(["", "label", *[text(_roi_field(r, "label")) for r in rois]])
        writer.writerow(
            ["", "tags", *[",".join(sorted(_roi_field(r, "tags") or [])) for r in rois]]
        )
        for k, block in enumerate(raw):
            block = np.asarray(block)
            for t in range(block.shape[1]):
                writer.writerow([k, t, *(repr(float(v)) for v in block[:, t])])

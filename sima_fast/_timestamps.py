"""Timestamps of ROI sets and signals: one format and one ordering.

ROI sets carry a timestamp string such as ``'2024-03-01-14h05m09s'``. When a
file or dataset holds several sets and none is named, the most recent one is
used; :func:`timestamp_key` defines "most recent" in one place for every
reader.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["TIMESTAMP_FORMAT", "current_timestamp", "timestamp_key"]

TIMESTAMP_FORMAT = "%Y-%m-%d-%Hh%Mm%Ss"
"""The :func:`time.strftime` format of ROI set and signal timestamps."""


def current_timestamp() -> str:
    """Return the current local time as a timestamp string.

    Returns
    -------
    str
        The time in :data:`TIMESTAMP_FORMAT`, e.g. ``'2024-03-01-14h05m09s'``:
        the default label of ROI sets and signals, as in SIMA.
    """
    return time.strftime(TIMESTAMP_FORMAT)


def timestamp_key(ts: Any) -> tuple[int, float]:
    """Sort key ordering timestamps by time, unparseable ones first.

    Parameters
    ----------
    ts : Any
        A timestamp string in :data:`TIMESTAMP_FORMAT`, or anything else
        (None, a malformed string), which sorts before every valid one.

    Returns
    -------
    tuple of (int, float)
        ``(1, seconds since the epoch)`` for a valid timestamp, else
        ``(0, 0.0)``.

    Examples
    --------
    >>> timestamp_key(None) < timestamp_key('2020-01-01-00h00m00s')
    True
    >>> timestamp_key('2020-01-01-00h00m00s') < timestamp_key('2021-01-01-00h00m00s')
    True
    """
    if isinstance(ts, str):
        try:
            return (1, time.mktime(time.strptime(ts, TIMESTAMP_FORMAT)))
        except (ValueError, OverflowError):
            pass
    return (0, 0.0)

"""Timestamps of ROI sets and signals: one format and one ordering.

ROI sets carry a timestamp string such as ``'2024-03-01-14h05m09s'``. When a
file or dataset holds several sets and none is named, the most recent one is
used; :func:`timestamp_key` defines "most recent" in one place for every
reader.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["TIMESTAMP_FORMAT", "current_timestamp", "most_recent", "timestamp_key"]

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


def most_recent(timestamps: dict[str, Any]) -> str | None:
    """Return the label whose timestamp is the latest; what "the most recent" means.

    Timestamps compare as strings, which orders :data:`TIMESTAMP_FORMAT`
    chronologically; a later entry wins a tie, so of two sets made in the same
    second the one added last is taken.

    Parameters
    ----------
    timestamps : dict of str to str
        Label to timestamp (anything that is not a string counts as ``''``).

    Returns
    -------
    str or None
        The label, or None when ``timestamps`` is empty.

    Examples
    --------
    >>> most_recent({'a': '2024-01-02-10h00m00s', 'b': '2024-01-01-10h00m00s'})
    'a'
    >>> most_recent({'a': '', 'b': ''})
    'b'
    """
    best, best_ts = None, ""
    for label, ts in timestamps.items():
        ts = ts if isinstance(ts, str) else ""
        if best is None or ts >= best_ts:
            best, best_ts = label, ts
    return best

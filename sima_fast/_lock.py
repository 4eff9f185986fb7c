"""One lock per dataset directory, held by every read-modify-write of it.

sima_fast rewrites a file of a dataset directory by reading it, building the
new version beside it and replacing it (:mod:`sima_fast._atomic`). Two
processes doing that at once would each start from the same old file and the
second replacement would drop the first one's change. :func:`dataset_lock`
serialises them: every change to a directory (ROI sets, signals, metadata,
the projection cache) happens while holding an exclusive lock on
``<directory>/.sima_fast.lock``.

* The lock is :class:`filelock.FileLock`: ``flock(2)`` on Unix,
  ``LockFileEx`` on Windows. The operating system releases it when its
  process ends, so a crash never leaves a directory locked.
* It is re-entrant within a thread: an operation that calls another one on
  the same directory (a save that rewrites the metadata, then removes files)
  takes it once. Other threads of the same process wait like other
  processes do.
* The holder writes who it is (pid, host, operation, start time) into
  ``<directory>/.sima_fast.lock.holder`` after acquiring and removes that
  file before releasing, so a writer that gives up can say who is in the way.
* A writer waits at most :func:`lock_timeout` seconds (default 60; the
  environment variable ``SIMA_FAST_LOCK_TIMEOUT`` or
  :func:`set_lock_timeout` change it), then raises
  :class:`DatasetLockedError`.
* Readers never take the lock: every file is replaced atomically, so they
  see the old version or the new one.

What is guaranteed across machines depends on the file system: on a local
disk, and on NFS where the server provides locks (NFSv4, or NFSv3 with
``lockd``; Linux maps ``flock`` onto NFS byte-range locks), writers on all
clients exclude each other. A mount with ``nolock`` (or ``local_lock=all``)
makes the lock local to each client, so writers on different machines are
then not serialised. On file systems without ``flock`` filelock falls back
to a marker-file lock (with a warning); a process killed while holding it
leaves the marker behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from sima_fast._atomic import atomic_write

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "HOLDER_FILE",
    "LOCK_FILE",
    "LOCK_TIMEOUT_ENV",
    "DatasetLockedError",
    "create_lock_file",
    "dataset_lock",
    "lock_timeout",
    "read_holder",
    "set_lock_timeout",
]

#: The lock file, inside the dataset directory.
LOCK_FILE = ".sima_fast.lock"
#: Who holds the lock (JSON), written after acquiring and removed before releasing.
HOLDER_FILE = ".sima_fast.lock.holder"
#: Environment variable giving the lock timeout in seconds.
LOCK_TIMEOUT_ENV = "SIMA_FAST_LOCK_TIMEOUT"
#: Seconds a writer waits for the lock unless told otherwise.
DEFAULT_LOCK_TIMEOUT = 60.0

# Seconds between attempts while the lock is held by someone else. filelock
# polls (flock has no timed wait); 10 ms keeps a queue of writers moving
# without measurable CPU use.
_POLL_INTERVAL = 0.01
# filelock treats a negative timeout as "forever" and then refuses to wait for
# another thread of this process (it reports a deadlock); "forever" is this.
_FOREVER = 10.0 * 365 * 24 * 3600

_setting: float | None = None  # set_lock_timeout's value; None: environment or default
_held = threading.local()  # .depth: {real directory path: nesting depth} of this thread


def _reset_after_fork() -> None:
    # A forked child does not hold its parent's locks (its acquisitions open
    # their own descriptor), so it must not believe it does.
    global _held
    _held = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class DatasetLockedError(TimeoutError):
    """Another writer held a dataset directory's lock for longer than the lock timeout.

    Parameters
    ----------
    directory : str
        The dataset directory.
    operation : str
        What this writer wanted to do.
    timeout : float
        Seconds waited.
    holder : dict or None
        What the holder recorded (``pid``, ``host``, ``operation``,
        ``since``), or None when it recorded nothing readable.

    Attributes
    ----------
    directory, operation, timeout, holder
        As given.
    """

    def __init__(
        self, directory: str, operation: str, timeout: float, holder: dict[str, Any] | None
    ) -> None:
        self.directory = directory
        self.operation = operation
        self.timeout = timeout
        self.holder = holder
        lock = os.path.join(directory, LOCK_FILE)
        if holder is None:
            who = (
                "a writer that did not record itself (it may have just started or be an "
                f"older sima_fast; {os.path.join(directory, HOLDER_FILE)!r} is missing)"
            )
        else:
            since = holder.get("since", "?")
            age = ""
            if isinstance(holder.get("since_epoch"), (int, float)):
                age = f", {max(time.time() - holder['since_epoch'], 0.0):.1f} s ago"
            who = (
                f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')!r}, running "
                f"{holder.get('operation', '?')!r} since {since}{age}"
            )
        super().__init__(
            f"could not lock the dataset directory {directory!r} for {operation!r} within "
            f"{timeout:g} s: its lock {lock!r} is held by {who}. Wait for that writer to "
            f"finish, or allow a longer wait with the environment variable {LOCK_TIMEOUT_ENV} "
            "or sima_fast.storage.set_lock_timeout(seconds)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle with the constructor's arguments (the error crosses process boundaries).

        Returns
        -------
        tuple
            The class and its constructor arguments.
        """
        return (type(self), (self.directory, self.operation, self.timeout, self.holder))


def _check_timeout(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 seconds (math.inf: wait forever), got {value}")
    return value


def set_lock_timeout(seconds: float | None) -> float | None:
    """Set how long a writer waits for a dataset directory's lock, for this process.

    Parameters
    ----------
    seconds : float or None
        Seconds to wait (``0``: one attempt; ``math.inf``: wait forever).
        None goes back to the environment variable ``SIMA_FAST_LOCK_TIMEOUT``,
        or to 60 s when it is not set.

    Returns
    -------
    float or None
        The previous setting (None if there was none), so that it can be
        restored.

    Raises
    ------
    TypeError
        If ``seconds`` is not a number.
    ValueError
        If ``seconds`` is negative or NaN.

    Examples
    --------
    >>> from sima_fast.storage import lock_timeout, set_lock_timeout
    >>> previous = set_lock_timeout(5)
    >>> lock_timeout()
    5.0
    >>> _ = set_lock_timeout(previous)
    """
    global _setting
    previous = _setting
    _setting = None if seconds is None else _check_timeout("seconds", seconds)
    return previous


def lock_timeout() -> float:
    """Return how long a writer waits for a dataset directory's lock.

    Returns
    -------
    float
        Seconds: the value given to :func:`set_lock_timeout`, else the
        environment variable ``SIMA_FAST_LOCK_TIMEOUT``, else 60.

    Raises
    ------
    ValueError
        If ``SIMA_FAST_LOCK_TIMEOUT`` is set but is not a number of seconds >= 0.
    """
    if _setting is not None:
        return _setting
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_LOCK_TIMEOUT
    try:
        return _check_timeout(LOCK_TIMEOUT_ENV, float(raw))
    except ValueError:
        raise ValueError(
            f"the environment variable {LOCK_TIMEOUT_ENV}={raw!r} must be a number of seconds "
            ">= 0 (inf: wait forever)"
        ) from None


def read_holder(directory: str) -> dict[str, Any] | None:
    """Return what the current holder of a directory's lock recorded about itself.

    Parameters
    ----------
    directory : str
        The dataset directory.

    Returns
    -------
    dict or None
        ``pid``, ``host``, ``operation``, ``since`` (local time, ISO 8601)
        and ``since_epoch``; None when nobody holds the lock or the record is
        missing or unreadable.
    """
    try:
        with open(os.path.join(directory, HOLDER_FILE), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_holder(directory: str, operation: str) -> None:
    now = time.time()
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "operation": operation,
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "since_epoch": now,
    }
    # Written beside and renamed (atomic_write), so a waiter never reads half a
    # record, and a temporary left by a kill carries this process's id and is
    # removed by the next recovery of the directory.
    with atomic_write(os.path.join(directory, HOLDER_FILE)) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(record))


def create_lock_file(directory: str) -> None:
    """Create an empty lock file in a new dataset directory (before it is published).

    The lock file then exists from the start, with the permissions the
    user's umask gives new files, and later writers only open it.

    Parameters
    ----------
    directory : str
        The (staging) directory.
    """
    fd = os.open(os.path.join(directory, LOCK_FILE), os.O_WRONLY | os.O_CREAT, 0o666)
    os.close(fd)


@contextlib.contextmanager
def dataset_lock(directory: str, operation: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock of a dataset directory for the duration of the block.

    Re-entrant: a thread that already holds the directory's lock enters
    immediately. The first entry creates ``.sima_fast.lock`` (with the
    user's umask) if it does not exist yet.

    Parameters
    ----------
    directory : str
        The dataset directory; it must exist.
    operation : str
        What the block does (``'add_ROIs'``, ``'save'``, ...), recorded for
        other writers' error messages.
    timeout : float, optional
        Seconds to wait for this acquisition (``0``: one attempt, e.g. for
        optional housekeeping). Default: :func:`lock_timeout`.

    Yields
    ------
    None
        Inside the block the lock is held.

    Raises
    ------
    DatasetLockedError
        If another writer holds the lock for longer than :func:`lock_timeout`.
    FileNotFoundError
        If the directory does not exist.
    """
    key = os.path.realpath(directory)
    depth = getattr(_held, "depth", None)
    if depth is None:
        depth = _held.depth = {}
    if depth.get(key, 0) > 0:
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"cannot lock the dataset directory {directory!r} for {operation!r}: it does not exist"
        )
    from filelock import FileLock, Timeout

    timeout = lock_timeout() if timeout is None else _check_timeout("timeout", timeout)
    lock = FileLock(
        os.path.join(directory, LOCK_FILE),
        thread_local=False,  # this object belongs to one acquisition of one thread
        poll_interval=_POLL_INTERVAL,
    )
    try:
        lock.acquire(timeout=_FOREVER if math.isinf(timeout) else timeout)
    except Timeout:
        raise DatasetLockedError(directory, operation, timeout, read_holder(directory)) from None
    depth[key] = 1
    try:
        with contextlib.suppress(OSError):  # the record is informative only
            _write_holder(directory, operation)
        yield
    finally:
        depth.pop(key, None)
        try:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, HOLDER_FILE))
        finally:
            lock.release()

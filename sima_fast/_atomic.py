"""Atomic file writes: write a temporary file beside the target, then replace.

Every file sima_fast writes into a dataset directory (and every export) goes
through :func:`atomic_write`, so an exception or a crash part-way through a
write leaves either the old file or the complete new one, never a mixture.
The file gets the permissions the user's umask gives a new file (the
temporary file's private 0600 mode is never what the user ends up with), so
colleagues on a shared server can read results as they read anything else of
the user's.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator

__all__ = ["atomic_write", "new_file_mode"]

_UMASK_LOCK = threading.Lock()


def new_file_mode() -> int:
    """Return the mode a new file gets from the process's umask.

    Returns
    -------
    int
        ``0o666 & ~umask``, e.g. ``0o644`` for the usual umask ``022``.
    """
    with _UMASK_LOCK:  # reading the umask means setting it: keep threads out
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yield a temporary path; on success move it onto ``path`` atomically.

    Parameters
    ----------
    path : str or path-like
        The final destination. Its directory must exist and be writable.
    suffix : str, optional
        Suffix of the temporary file (default: that of ``path``), so that
        writers which infer a format from the file name keep working.

    Yields
    ------
    str
        The temporary path to write. It lives in the destination directory so
        that :func:`os.replace` is a rename on the same file system.

    Notes
    -----
    If the body raises, the temporary file is removed and ``path`` is left
    exactly as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: directory {directory!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path!r}: it is a directory; give a file name")
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise

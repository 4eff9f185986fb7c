"""Atomic file writes: write a temporary file beside the target, then replace.

Every file sima_fast writes into a dataset directory (and every export) goes
through :func:`atomic_write`, so an exception or a crash part-way through a
write leaves either the old file or the complete new one, never a mixture.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_write"]


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
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise

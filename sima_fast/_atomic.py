"""Atomic and crash-consistent writes, and the recovery of interrupted ones.

Three tools, one naming scheme:

* :func:`atomic_write` writes one file: a temporary file beside the target,
  then :func:`os.replace`. An exception or a crash part-way through leaves
  the old file or the complete new one, never a mixture. Every file
  sima_fast writes into a dataset directory goes through it.
* :func:`atomic_publish` writes several files as one unit (the exports). All
  outputs are staged under temporary names beside their destinations and
  flushed to disk; then a small *publish journal* listing every
  ``staged -> final`` pair is written (atomically) beside the outputs; then
  the renames happen; then the journal is removed. The journal is the commit
  point: a crash before it exists leaves every destination untouched (the
  staged files are stale and get removed), a crash after it leaves a journal
  that the next recovery *rolls forward* (it completes the remaining
  renames), so once recovery has run all outputs are new or all are as they
  were.
* :func:`recover` does that recovery for one directory: it completes
  interrupted publishes whose writer is gone and removes the temporary files
  and dataset staging directories such writers left behind. It runs by
  itself at the start of every export into a directory and on every writable
  ``ImagingDataset.load``.

Names. Everything temporary carries its writer's host, process id and a
random part, so that cleanup can tell "ours and dead" from "ours and still
being written by a live process" (possibly another process, or another
machine sharing the file system)::

    .tmp-<host>.<pid>.<random><suffix>           staged file (suffix: the destination's)
    .publish-<host>.<pid>.<random>.json          publish journal
    .<name>.sima.tmp-<host>.<pid>.<random>       staging directory of a new dataset

``<host>`` is the short host name (letters and digits, at most 16) and six
hex digits of a hash of the full host name; ``<random>`` is 12 hex digits.
A temporary of this host is removed once its process no longer exists; one
of another host once it is older than :data:`STALE_AGE` (24 hours), as its
process cannot be checked from here. Only entries whose name matches these
patterns exactly, and that are regular files (directories for staging
directories), are ever touched; symbolic links are never followed nor
removed. Staging directories named by earlier versions
(``.<name>.sima.tmp-<8 hex digits>``) are removed once older than
:data:`STALE_AGE`; temporary files of earlier versions (``.tmp-<8
characters><suffix>``) cannot be told apart from a user's file and are left
alone.

Files get the permissions the user's umask gives a new file (the temporary
file's private 0600 mode is never what the user ends up with), so
colleagues on a shared server can read results as they read anything else of
the user's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
import threading
import time
import warnings
from collections.abc import Iterator, Sequence

__all__ = [
    "STALE_AGE",
    "RecoveryReport",
    "atomic_publish",
    "atomic_write",
    "host_token",
    "make_staging_dir",
    "new_file_mode",
    "process_alive",
    "recover",
    "recover_dataset_dir",
    "remove_stale_staging",
]

STALE_AGE = 24 * 3600.0
"""Seconds after which a temporary of another host counts as abandoned."""

_UMASK_LOCK = threading.Lock()
_HOST = r"[A-Za-z0-9]{1,16}-[0-9a-f]{6}"
_OWNER = rf"(?P<host>{_HOST})\.(?P<pid>[0-9]{{1,10}})\.(?P<rand>[0-9a-f]{{12}})"
_TEMP_RE = re.compile(rf"\.tmp-{_OWNER}(?P<suffix>\.[^/\\]{{0,32}})?")
_JOURNAL_RE = re.compile(rf"\.publish-{_OWNER}\.json")
_STAGING_RE = re.compile(rf"\.(?P<target>.+\.sima)\.tmp-{_OWNER}")
_OLD_STAGING_RE = re.compile(r"\..+\.sima\.tmp-[0-9a-f]{8}")
_JOURNAL_FORMAT = "sima_fast.publish"
_JOURNAL_MAX_BYTES = 64 * 2**20

# Journals of this process whose publish failed after its commit point (an
# exception during the renames): this process is alive, so recover() would
# otherwise leave them alone until it exits.
_ORPHANED: set[str] = set()
_ORPHANED_LOCK = threading.Lock()


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


@functools.lru_cache(maxsize=1)
def host_token() -> str:
    """Return the host part of this machine's temporary names.

    Returns
    -------
    str
        The short host name reduced to letters and digits (at most 16, or
        ``'host'``), a dash and the first six hex digits of the SHA-1 of the
        full host name, e.g. ``'node17-3fa2c1'``. Two machines whose short
        names agree still get different tokens.
    """
    name = socket.gethostname() or "localhost"
    short = re.sub(r"[^A-Za-z0-9]", "", name.split(".")[0])[:16] or "host"
    digest = hashlib.sha1(name.encode("utf-8", "replace"), usedforsecurity=False).hexdigest()
    return f"{short}-{digest[:6]}"


def process_alive(pid: int) -> bool:
    """Tell whether a process of this machine with id ``pid`` may still exist.

    Parameters
    ----------
    pid : int
        A process id.

    Returns
    -------
    bool
        False only when the process certainly does not exist; any doubt
        (no permission to signal it, an id this system cannot check) counts
        as alive, so that cleanup never removes a file still being written.
        A process that has exited but not yet been waited for (a zombie)
        counts as alive.
    """
    if pid <= 0:
        return True
    if pid == os.getpid():
        return True
    if os.name == "nt":  # pragma: no cover - exercised on Windows only
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's process; or unknown
        return True
    return True


def _windows_process_alive(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return kernel32.GetLastError() != 87  # ERROR_INVALID_PARAMETER: no such process
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def _owner_part() -> str:
    return f"{host_token()}.{os.getpid()}.{secrets.token_hex(6)}"


def _owner_gone(match: re.Match, mtime: float, now: float, max_age: float) -> bool:
    """Whether the writer named in a temporary name is certainly finished."""
    pid = int(match["pid"])
    if match["host"] == host_token():
        return pid != os.getpid() and not process_alive(pid)
    return now - mtime > max_age


def _temp_suffix(path: str, suffix: str | None) -> str:
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    if suffix and (len(suffix) > 32 or not suffix.startswith(".") or "/" in suffix):
        suffix = ""  # not a format extension; keep the name within the patterns
    return suffix


def _check_destination(path: str) -> str:
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: directory {directory!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path!r}: it is a directory; give a file name")
    return path


def _create_temp(path: str, suffix: str | None = None) -> str:
    """Create an empty private temporary file beside ``path`` and return its name."""
    directory = os.path.dirname(path)
    suffix = _temp_suffix(path, suffix)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    while True:
        tmp = os.path.join(directory, f".tmp-{_owner_part()}{suffix}")
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        os.close(fd)
        return tmp


def _finish_temp(tmp: str) -> None:
    """Flush a written temporary file to disk and give it the umask's mode."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
        os.fchmod(fh.fileno(), new_file_mode())


def _fsync_dir(directory: str) -> None:
    """Make renames in ``directory`` durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":  # pragma: no cover
        return
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


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
        The temporary path to write, named ``.tmp-<host>.<pid>.<random><suffix>``.
        It lives in the destination directory so that :func:`os.replace` is
        a rename on the same file system.

    Raises
    ------
    FileNotFoundError
        If the directory of ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a directory.

    Notes
    -----
    If the body raises, the temporary file is removed and ``path`` is left
    exactly as it was. If the process is killed, the temporary file stays
    until :func:`recover` runs in that directory.
    """
    path = _check_destination(path)
    tmp = _create_temp(path, suffix)
    try:
        yield tmp
        _finish_temp(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


# --------------------------------------------------------------------------
# several files as one unit
# --------------------------------------------------------------------------


def _write_journal(path: str, record: dict) -> None:
    """Write one journal copy atomically and durably."""
    data = json.dumps(record, indent=1).encode("utf-8")
    tmp = _create_temp(path, ".json")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(os.path.dirname(path))


@contextlib.contextmanager
def atomic_publish(paths: Sequence[str | os.PathLike]) -> Iterator[list[str]]:
    """Yield temporary paths for several outputs; publish them all, or none, at the end.

    Parameters
    ----------
    paths : sequence of str or path-like
        The final destinations, in any directories (each must exist). No
        destination may appear twice.

    Yields
    ------
    list of str
        One temporary path beside each destination, in the same order.

    Raises
    ------
    ValueError
        If a destination appears twice.
    FileNotFoundError
        If the directory of a destination does not exist.
    IsADirectoryError
        If a destination is a directory.

    Notes
    -----
    Before staging, :func:`recover` runs in every destination directory.
    When the body returns, every temporary file is flushed to disk, a publish
    journal (``.publish-<host>.<pid>.<random>.json``) is written in every
    destination directory, the one beside the first output last (that copy
    is the commit point), the temporary files are renamed onto their
    destinations, and the journals are removed.

    * The body raises, or the process dies before the commit point: no
      destination changes; the temporary files are removed (at once, or by
      the next :func:`recover` after a crash).
    * The process dies after the commit point: the next :func:`recover` in
      any destination directory completes the renames.
    * A rename fails after the commit point (e.g. permission denied): the
      error is raised, the journal stays, and :func:`recover` completes the
      publish once the cause is fixed.

    Each destination is replaced by one rename, so a reader never sees a
    half-written file. Until the last rename (or the recovery after a
    crash) some destinations may already hold the new content while others
    still hold the old.
    """
    finals = [_check_destination(p) for p in paths]
    seen: set[str] = set()
    for f in finals:
        if f in seen:
            raise ValueError(f"paths: {f!r} is given twice; every output needs its own file")
        seen.add(f)
    dirs = list(dict.fromkeys(os.path.dirname(f) for f in finals))
    for d in dirs:
        recover(d)
    staged: list[str] = []
    journals: list[str] = []
    committed = False
    try:
        for f in finals:
            staged.append(_create_temp(f))
        yield list(staged)
        for s in staged:
            _finish_temp(s)
        if len(finals) == 1:  # one rename is atomic by itself
            os.replace(staged[0], finals[0])
            committed = True
            _fsync_dir(dirs[0])
            return
        for d in dirs:
            _fsync_dir(d)
        name = f".publish-{_owner_part()}.json"
        copies = [os.path.join(d, name) for d in dirs[1:]] + [os.path.join(dirs[0], name)]
        record = {
            "format": _JOURNAL_FORMAT,
            "version": 1,
            "primary": copies[-1],
            "copies": copies,
            "pairs": [[s, f] for s, f in zip(staged, finals)],
        }
        for copy in copies:  # the primary (beside the first output) last: the commit point
            _write_journal(copy, record)
            journals.append(copy)
        committed = True
        try:
            for s, f in zip(staged, finals):
                os.replace(s, f)
            for d in dirs:
                _fsync_dir(d)
            for copy in copies:  # the primary last, so a journal copy never outlives it
                _remove_quietly(copy)
        except BaseException:
            with _ORPHANED_LOCK:
                _ORPHANED.add(copies[-1])
            raise
    except BaseException:
        if not committed:
            for s in staged:
                with contextlib.suppress(OSError):
                    os.remove(s)
            for copy in journals:
                with contextlib.suppress(OSError):
                    os.remove(copy)
        raise


# --------------------------------------------------------------------------
# recovery
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover` did in a directory.

    Attributes
    ----------
    published : tuple of str
        Destinations whose interrupted publish was completed (rolled forward).
    removed : tuple of str
        Abandoned temporary files, journals of uncommitted publishes and
        staging directories that were removed.
    kept : tuple of str
        Temporaries of ours left in place: their writer may still be running
        (a live process of this host, or another host's within
        :data:`STALE_AGE`), or their journal could not be read.
    failed : tuple of (str, str)
        ``(path, reason)`` for every removal or rename that failed.
    """

    published: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()


class _Tally:
    def __init__(self) -> None:
        self.published: list[str] = []
        self.removed: list[str] = []
        self.kept: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def report(self) -> RecoveryReport:
        return RecoveryReport(
            tuple(self.published), tuple(self.removed), tuple(self.kept), tuple(self.failed)
        )


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _is_regular(path: str) -> bool:
    st = _lstat(path)
    return st is not None and stat.S_ISREG(st.st_mode)


def _read_journal(path: str) -> dict | None:
    """Return the journal's record if it is one of ours and consistent, else None."""
    try:
        if os.lstat(path).st_size > _JOURNAL_MAX_BYTES:
            return None
        with open(path, "rb") as fh:
            record = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("format") != _JOURNAL_FORMAT:
        return None
    pairs, copies, primary = record.get("pairs"), record.get("copies"), record.get("primary")
    name = os.path.basename(path)
    owner = _JOURNAL_RE.fullmatch(name)
    if not (isinstance(pairs, list) and isinstance(copies, list) and isinstance(primary, str)):
        return None
    for copy in copies:
        if not (isinstance(copy, str) and os.path.isabs(copy) and os.path.basename(copy) == name):
            return None
    if primary not in copies or _this_copy(copies, path) is None:
        return None
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2):
            return None
        if not all(isinstance(p, str) for p in pair):
            return None
        staged, final = pair
        # Only our own temporaries, each renamed within its directory.
        if not (os.path.isabs(staged) and os.path.isabs(final)):
            return None
        if os.path.dirname(staged) != os.path.dirname(final):
            return None
        temp = _TEMP_RE.fullmatch(os.path.basename(staged))
        if temp is None or owner is None:
            return None
        if (temp["host"], temp["pid"]) != (owner["host"], owner["pid"]):
            return None  # a writer only ever publishes its own temporaries
    return record


def _same_path(a: str, b: str) -> bool:
    return a == b or os.path.realpath(a) == os.path.realpath(b)


def _this_copy(copies: list[str], path: str) -> str | None:
    """Return which of a journal's copies ``path`` is, as the writer named it.

    Returns
    -------
    str or None
        The copy, or None if it cannot be told. The writer may have reached
        the directory under another name (a symbolic link, another mount
        point): a single copy is identified by its unique name alone, one of
        several must resolve to the same file.
    """
    for copy in copies:
        if _same_path(copy, path):
            return copy
    if len(copies) == 1:
        return copies[0]
    return None


def _localise(record: dict, path: str) -> dict:
    """Rewrite the journal's paths in ``path``'s directory to the name it was found under.

    Returns
    -------
    dict
        ``primary``, ``copies`` and ``pairs``, with the paths in the journal's
        own directory spelled as ``path`` spells it; paths in other
        directories stay as recorded.
    """
    here = os.path.dirname(path)
    spelled = os.path.dirname(_this_copy(record["copies"], path))

    def local(p: str) -> str:
        return os.path.join(here, os.path.basename(p)) if os.path.dirname(p) == spelled else p

    return {
        "primary": local(record["primary"]),
        "copies": [local(c) for c in record["copies"]],
        "pairs": [[local(a), local(b)] for a, b in record["pairs"]],
    }


def _remove_entry(path: str, tally: _Tally) -> None:
    try:
        os.remove(path)
        tally.removed.append(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        tally.failed.append((path, str(exc)))


def _settle_journal(path: str, record: dict, tally: _Tally) -> bool:
    """Roll a dead writer's publish forward (committed) or back (not committed).

    Returns
    -------
    bool
        Whether the journal had to stay (the publish could not be settled).
    """
    record = _localise(record, path)
    primary = record["primary"]
    if not _same_path(path, primary) and not _is_regular(primary):
        if not os.path.isdir(os.path.dirname(primary)):  # unmounted or moved: cannot decide
            tally.kept.append(path)
            return True
        # Never committed: the staged files are abandoned.
        for staged, _ in record["pairs"]:
            if _is_regular(staged):
                _remove_entry(staged, tally)
        for copy in record["copies"]:
            if copy != primary and _is_regular(copy):
                _remove_entry(copy, tally)
        return False
    # Committed: finish the renames that did not happen.
    complete = True
    for staged, final in record["pairs"]:
        if not os.path.isdir(os.path.dirname(staged)):  # unmounted or moved
            complete = False
            tally.failed.append((final, "its directory cannot be reached"))
            continue
        if not _is_regular(staged):
            continue  # renamed already (by the writer or another recovery)
        try:
            os.replace(staged, final)
            tally.published.append(final)
        except FileNotFoundError:
            pass
        except OSError as exc:
            complete = False
            tally.failed.append((final, str(exc)))
    if not complete:
        return True  # keep the journal: a later recovery finishes the publish
    for d in dict.fromkeys(os.path.dirname(f) for _, f in record["pairs"]):
        _fsync_dir(d)
    for copy in [c for c in record["copies"] if c != primary] + [primary]:
        _remove_entry(copy, tally)
    with _ORPHANED_LOCK:
        _ORPHANED.difference_update({primary, path})
    return False


def _scan(directory: str) -> list[os.DirEntry]:
    with os.scandir(directory) as it:
        return list(it)


def _check_directory(directory: str | os.PathLike, argname: str) -> str:
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.exists(directory):
        raise FileNotFoundError(f"{argname}: {directory!r} does not exist")
    if not os.path.isdir(directory):
        raise NotADirectoryError(f"{argname}: {directory!r} is not a directory")
    return directory


def _remove_staging(entries: list[os.DirEntry], now: float, max_age: float, tally: _Tally) -> None:
    for entry in entries:
        match = _STAGING_RE.fullmatch(entry.name)
        old_style = match is None and _OLD_STAGING_RE.fullmatch(entry.name) is not None
        if match is None and not old_style:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        gone = now - mtime > max_age if old_style else _owner_gone(match, mtime, now, max_age)
        if not gone:
            tally.kept.append(entry.path)
            continue
        try:
            shutil.rmtree(entry.path)
            tally.removed.append(entry.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            tally.failed.append((entry.path, str(exc)))


def _warn(directory: str, tally: _Tally) -> None:
    if tally.failed:
        lines = "; ".join(f"{p}: {why}" for p, why in tally.failed[:5])
        warnings.warn(
            f"recovery in {directory!r} could not complete {len(tally.failed)} step(s) "
            f"({lines}); run sima_fast.storage.recover({directory!r}) again once the cause "
            "is fixed",
            RuntimeWarning,
            stacklevel=3,
        )


def _matching_files(entries: list, pattern: re.Pattern) -> Iterator[tuple]:
    """Yield ``(entry, match, mtime)`` for the regular files whose names match ``pattern``.

    Symbolic links and entries that vanish or cannot be stat'ed are skipped.

    Yields
    ------
    tuple
        The :class:`os.DirEntry`, the :class:`re.Match` of its name and its
        modification time.
    """
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        yield entry, match, mtime


def recover(directory: str | os.PathLike, *, max_age: float = STALE_AGE) -> RecoveryReport:
    """Finish or undo interrupted writes of sima_fast in one directory.

    Runs by itself at the start of every export into a directory and on
    every writable ``ImagingDataset.load`` (in the dataset directory, and for
    staging directories in its parent); call it yourself to clean a
    directory now, e.g. after a crash, before copying it elsewhere.

    Parameters
    ----------
    directory : str or path-like
        The directory to recover (not its subdirectories).
    max_age : float, optional
        Seconds after which a temporary of another host is considered
        abandoned. Default: :data:`STALE_AGE` (24 hours).

    Returns
    -------
    RecoveryReport
        What was completed, removed, kept or could not be done.

    Raises
    ------
    FileNotFoundError
        If ``directory`` does not exist.
    NotADirectoryError
        If ``directory`` is not a directory.

    Warns
    -----
    RuntimeWarning
        If a rename or removal failed (e.g. permission denied); the report's
        ``failed`` lists them.

    Notes
    -----
    Only temporaries whose writer is gone are touched: a process of this
    host that no longer exists, or another host's entry older than
    ``max_age``. In that order:

    1. publish journals (``.publish-*.json``): a committed publish is
       completed (remaining renames done, journals removed); an uncommitted
       one is undone (its staged files removed);
    2. temporary files (``.tmp-<host>.<pid>.<random>...``) are removed;
    3. staging directories of new datasets (``.<name>.sima.tmp-...``) are
       removed.

    Nothing else is touched: names must match exactly, files must be regular
    files, and symbolic links are never followed nor removed.
    """
    directory = _check_directory(directory, "directory")
    tally = _Tally()
    try:
        entries = _scan(directory)
    except OSError as exc:  # nothing of ours can be seen there (e.g. no read permission)
        tally.failed.append((directory, str(exc)))
        return tally.report()
    now = time.time()
    with _ORPHANED_LOCK:
        orphaned = set(_ORPHANED)
    protected: set[tuple[str, str]] = set()  # writers whose staged files must stay
    for entry, match, mtime in _matching_files(entries, _JOURNAL_RE):
        record = _read_journal(entry.path)
        gone = (
            entry.path in orphaned
            or (record is not None and record["primary"] in orphaned)
            or _owner_gone(match, mtime, now, max_age)
        )
        if not gone or record is None:
            protected.add((match["host"], match["pid"]))
            tally.kept.append(entry.path)
            if gone and record is None:
                tally.failed.append((entry.path, "not a readable publish journal"))
            continue
        if _settle_journal(entry.path, record, tally):
            protected.add((match["host"], match["pid"]))
    for entry, match, mtime in _matching_files(entries, _TEMP_RE):
        if (match["host"], match["pid"]) in protected or not _owner_gone(
            match, mtime, now, max_age
        ):
            tally.kept.append(entry.path)
            continue
        _remove_entry(entry.path, tally)
    _remove_staging(entries, now, max_age, tally)
    _warn(directory, tally)
    return tally.report()


def remove_stale_staging(
    directory: str | os.PathLike, *, max_age: float = STALE_AGE
) -> RecoveryReport:
    """Remove abandoned staging directories of new datasets in ``directory``.

    Parameters
    ----------
    directory : str or path-like
        The directory holding dataset directories (not searched recursively).
    max_age : float, optional
        Seconds after which another host's staging directory, or one named
        by an earlier version, is considered abandoned. Default:
        :data:`STALE_AGE`.

    Returns
    -------
    RecoveryReport
        ``removed`` lists the staging directories removed; ``kept`` those of
        writers that may still be running.

    Raises
    ------
    FileNotFoundError
        If ``directory`` does not exist.
    NotADirectoryError
        If ``directory`` is not a directory.

    Notes
    -----
    Only directories named ``.<name>.sima.tmp-<host>.<pid>.<random>`` (or
    ``.<name>.sima.tmp-<8 hex digits>``, older than ``max_age``) are
    removed; nothing else in ``directory`` is touched.
    """
    directory = _check_directory(directory, "directory")
    tally = _Tally()
    try:
        entries = _scan(directory)
    except OSError as exc:  # nothing of ours can be seen there (e.g. no read permission)
        tally.failed.append((directory, str(exc)))
        return tally.report()
    _remove_staging(entries, time.time(), max_age, tally)
    _warn(directory, tally)
    return tally.report()


def make_staging_dir(target: str | os.PathLike) -> str:
    """Create the staging directory of a new dataset directory ``target``.

    Abandoned staging directories in the same parent are removed first
    (:func:`remove_stale_staging`).

    Parameters
    ----------
    target : str or path-like
        The dataset directory to be created (``.../name.sima``); its parent
        must exist.

    Returns
    -------
    str
        ``<parent>/.<name>.sima.tmp-<host>.<pid>.<random>``, created with
        the umask's permissions; rename it onto ``target`` when complete.

    Raises
    ------
    FileNotFoundError
        If the parent of ``target`` does not exist.
    """
    target = os.path.abspath(os.fspath(target))
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"savedir: the parent directory {parent!r} does not exist")
    remove_stale_staging(parent)
    while True:
        staging = os.path.join(parent, f".{os.path.basename(target)}.tmp-{_owner_part()}")
        try:
            os.mkdir(staging)
        except FileExistsError:  # pragma: no cover - 48 random bits collided
            continue
        return staging


def recover_dataset_dir(savedir: str | os.PathLike, *, inside: bool = True) -> None:
    """Recover a dataset directory before it is opened for writing.

    Removes abandoned staging directories beside ``savedir``
    (:func:`remove_stale_staging` of its parent) and, when ``inside`` is
    true, runs :func:`recover` in ``savedir`` itself.

    Parameters
    ----------
    savedir : str or path-like
        The dataset directory.
    inside : bool, optional
        Also recover ``savedir`` itself. Pass False for a directory that
        must not be modified (one written by SIMA 1.x).

    Raises
    ------
    FileNotFoundError
        If ``savedir`` does not exist.
    """
    savedir = _check_directory(savedir, "path")
    remove_stale_staging(os.path.dirname(savedir))
    if inside:
        recover(savedir)

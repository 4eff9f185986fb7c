"""Crash consistency of multi-file exports and cleanup of abandoned temporaries.

The kill trials run in a helper process (this file run as a script) that
imports sima_fast once and then, for every publishing step k, forks a child
that SIGKILLs itself at its k-th ``os.replace``/``os.remove`` call during an
export. After each kill the helper runs the recovery (the next export into
one directory, or :func:`recover`) and records what it finds; the tests
assert on that record: every destination new, or every destination as it
was, never a mix; no temporary of ours left; the user's files untouched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sima_fast._atomic import (
    STALE_AGE,
    atomic_publish,
    atomic_write,
    host_token,
    make_staging_dir,
    recover,
)

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"), reason="needs fork and SIGKILL"
)

_OUR_PREFIXES = (".tmp-", ".publish-")
_USER_FILES = {  # name -> content: look like ours at a glance, but are not
    ".tmp-foo": b"user 1",
    ".tmp-foo.tif": b"user 2",
    ".tmp-abcdefgh.h5": b"user 3",  # the shape of an old mkstemp name
    ".publish-notes.json": b"{}",
    ".tmp-host-abc123.notapid.0123456789ab.tif": b"user 4",
    "notes.txt": b"user 5",
}


# --------------------------------------------------------------------------
# helper process
# --------------------------------------------------------------------------


def _dataset(offset: float):
    import sima_fast as sima

    rng = np.random.default_rng(int(offset))
    seqs = [
        sima.Sequence.create(
            "ndarray", (rng.random((3 + i, 1, 6, 5, 2)) * 1000 + offset).astype(np.float32)
        )
        for i in range(2)
    ]
    return sima.ImagingDataset(seqs, None, channel_names=["g", "r"])


def _destinations(fmt: str, layout: str, root: str):
    a = os.path.join(root, "A")
    b = os.path.join(root, "B") if layout == "two_dirs" else a
    if fmt == "TIFF16":
        nested = [
            [[os.path.join(a, f"s{i}_g.tif"), os.path.join(b, f"s{i}_r.tif")]] for i in (0, 1)
        ]
        flat = [p for seq in nested for plane in seq for p in plane]
        return nested, flat, sorted({a, b})
    paths = [os.path.join(a, "s0.h5"), os.path.join(b, "s1.h5")]
    return paths, paths, sorted({a, b})


def _read(fmt: str, path: str):
    """The content of one output (an array), 'absent' or 'corrupt'."""
    if not os.path.exists(path):
        return "absent"
    try:
        if fmt == "TIFF16":
            import tifffile

            return tifffile.imread(path)
        import h5py

        with h5py.File(path, "r") as f:
            return f["imaging"][()]
    except Exception:
        return "corrupt"


def _classify(fmt, flat, new, old):
    states = []
    for path, n, o in zip(flat, new, old):
        got = _read(fmt, path)
        if isinstance(got, str):
            states.append(got)
        elif got.shape == n.shape and np.array_equal(got, n):
            states.append("new")
        elif o is not None and got.shape == o.shape and np.array_equal(got, o):
            states.append("old")
        else:
            states.append("other")
    return states


def _ours(dirs):
    return sorted(
        name
        for d in dirs
        for name in os.listdir(d)
        if name.startswith(_OUR_PREFIXES)
        and name not in _USER_FILES
        and not os.path.islink(os.path.join(d, name))
    )


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _plant_user_files(dirs, root):
    target = os.path.join(root, "link_target.txt")
    os.makedirs(root, exist_ok=True)
    with open(target, "wb") as fh:
        fh.write(b"target")
    for d in dirs:
        os.makedirs(d, exist_ok=True)
        for name, content in _USER_FILES.items():
            with open(os.path.join(d, name), "wb") as fh:
                fh.write(content)
        # a symbolic link named exactly like a dead writer's temporary file
        link = f".tmp-{host_token()}.{_dead_pid()}.{'ab' * 6}.tif"
        os.symlink(target, os.path.join(d, link))


def _user_files_intact(dirs, root):
    ok = Path(root, "link_target.txt").read_bytes() == b"target"
    for d in dirs:
        for name, content in _USER_FILES.items():
            path = os.path.join(d, name)
            ok = ok and os.path.isfile(path) and Path(path).read_bytes() == content
        links = [n for n in os.listdir(d) if os.path.islink(os.path.join(d, n))]
        ok = ok and len(links) == 1
    return ok


def _wait(pid: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise RuntimeError(f"child {pid} hung")


def _run_killed(action, k: int) -> int:
    """Fork; the child runs ``action`` and SIGKILLs itself at its k-th publishing step."""
    pid = os.fork()
    if pid == 0:  # child
        try:
            calls = [0]

            def step(real):
                def wrapped(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] == k:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return real(*args, **kwargs)

                return wrapped

            os.replace = step(os.replace)
            os.remove = step(os.remove)
            os.unlink = step(os.unlink)
            action()
            os._exit(0)
        except BaseException:
            os._exit(3)
    return _wait(pid)


def _count_steps(action) -> int:
    calls = [0]
    real = os.replace, os.remove, os.unlink

    def counting(f):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            return f(*args, **kwargs)

        return wrapped

    os.replace, os.remove, os.unlink = (counting(f) for f in real)
    try:
        action()
    finally:
        os.replace, os.remove, os.unlink = real
    return calls[0]


def export_trials(fmt: str, layout: str, root: str) -> dict:
    """Kill an export at every publishing step; recover; record the outcome."""
    from sima_fast._atomic import recover

    new_ds, old_ds = _dataset(0), _dataset(5000)
    ref = os.path.join(root, "ref")
    nested, flat, dirs = _destinations(fmt, layout, ref)
    for d in dirs:
        os.makedirs(d)
    new_ds.export_frames(nested, fmt=fmt, fill_gaps=False)  # first run: imports, caches
    steps = _count_steps(lambda: new_ds.export_frames(nested, fmt=fmt, fill_gaps=False))
    new = [_read(fmt, p) for p in flat]
    old_ds.export_frames(nested, fmt=fmt, fill_gaps=False)
    old = [_read(fmt, p) for p in flat]
    trials = []
    for with_old in (False, True):
        for k in range(1, steps + 2):
            trial_root = os.path.join(root, f"k{k}_{int(with_old)}")
            nested, flat, dirs = _destinations(fmt, layout, trial_root)
            _plant_user_files(dirs, trial_root)
            if with_old:
                old_ds.export_frames(nested, fmt=fmt, fill_gaps=False)
            status = _run_killed(
                lambda nested=nested: new_ds.export_frames(nested, fmt=fmt, fill_gaps=False), k
            )
            killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            before = _classify(fmt, flat, new, old if with_old else [None] * len(flat))
            # Recovery of the first directory only: by the next export into it
            # (odd k) or by recover() (even k).
            if k % 2:
                nxt = [os.path.join(dirs[0], f"next{i}.h5") for i in (0, 1)]
                new_ds.export_frames(nxt, fmt="HDF5", fill_gaps=False)
            else:
                recover(dirs[0])
            after_one = _classify(fmt, flat, new, old if with_old else [None] * len(flat))
            for d in dirs:
                recover(d)
            after_all = _classify(fmt, flat, new, old if with_old else [None] * len(flat))
            trials.append(
                {
                    "k": k,
                    "with_old": with_old,
                    "killed": killed,
                    "exit": status,
                    "before": before,
                    "after_one": after_one,
                    "after_all": after_all,
                    "leftovers": _ours(dirs),
                    "user_ok": _user_files_intact(dirs, trial_root),
                }
            )
    return {"steps": steps, "trials": trials}


def save_trials(root: str) -> dict:
    """Kill ``ImagingDataset.save(new_path)`` while staging and at the final rename."""
    from sima_fast import storage

    ds = _dataset(0)
    results = []
    for where in ("write_metadata", "rename"):
        parent = os.path.join(root, where)  # a save cleans its parent: one parent each
        os.mkdir(parent)
        target = os.path.join(parent, f"{where}.sima")
        pid = os.fork()
        if pid == 0:
            try:
                if where == "rename":
                    os.rename = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
                else:
                    storage.write_metadata = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
                ds.save(target)
                os._exit(0)
            except BaseException:
                os._exit(3)
        status = _wait(pid)
        results.append(
            {
                "where": where,
                "killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
                "staging": [os.path.join(parent, n) for n in sorted(os.listdir(parent))],
                "target_exists": os.path.exists(target),
            }
        )
    return {"results": results}


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    out = export_trials(*args) if kind == "export" else save_trials(*args)
    print(json.dumps(out))


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


def _helper(tmp_path, *args) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, *args, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        # GNU OpenMP refuses to run in a forked child; numba's own layer does not
        env={
            **os.environ,
            "PYTHONWARNINGS": "error::RuntimeWarning",
            "NUMBA_THREADING_LAYER": "workqueue",
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("fmt", "layout", "min_steps"),
    [("TIFF16", "two_dirs", 8), ("HDF5", "two_dirs", 6), ("HDF5", "one_dir", 4)],
)
def test_export_killed_at_every_publishing_step_is_all_or_nothing(
    tmp_path, fmt, layout, min_steps
):
    out = _helper(tmp_path, "export", fmt, layout)
    steps, trials = out["steps"], out["trials"]
    assert steps >= min_steps  # journal(s), one rename per output, journal removal(s)
    assert len(trials) == 2 * (steps + 1)
    mixed_before = 0
    for t in trials:
        label = f"k={t['k']} with_old={t['with_old']}: {t}"
        if t["k"] <= steps:
            assert t["killed"], label
        else:
            assert t["exit"] == 0, label
        untouched = {"old"} if t["with_old"] else {"absent"}
        for key in ("after_one", "after_all"):
            states = set(t[key])
            assert states == {"new"} or states == untouched, label
        assert t["after_one"] == t["after_all"], label
        assert t["leftovers"] == [], label
        assert t["user_ok"], label
        mixed_before += len(set(t["before"])) > 1
    # the trials did reach the window between two renames (where main left a mix)
    assert mixed_before >= 2


def test_kill_during_save_leaves_no_staging_after_the_next_load_or_save(tmp_path):
    from sima_fast import ImagingDataset

    def killed_saves(root):
        root.mkdir(exist_ok=True)
        out = _helper(root, "save")
        for r in out["results"]:
            assert r["killed"], r
            assert not r["target_exists"], r
            assert len(r["staging"]) == 1 and ".sima.tmp-" in r["staging"][0], r
            assert os.path.isdir(r["staging"][0])
            os.rename(r["staging"][0], root / os.path.basename(r["staging"][0]))
            os.rmdir(os.path.dirname(r["staging"][0]))
        staged = sorted(str(p) for p in root.iterdir() if p.name.startswith("."))
        assert len(staged) == 2
        return staged

    # the next save into the same parent removes them
    killed_saves(tmp_path / "first")
    _dataset(1).save(str(tmp_path / "first" / "next"))
    assert sorted(os.listdir(tmp_path / "first")) == ["next.sima"]
    # the next writable load of a dataset in that parent removes them; a read-only one does not
    (tmp_path / "second").mkdir()
    _dataset(2).save(str(tmp_path / "second" / "ds"))
    staged = killed_saves(tmp_path / "second")
    ImagingDataset.load(str(tmp_path / "second" / "ds"), read_only=True)
    assert all(os.path.isdir(p) for p in staged)
    ImagingDataset.load(str(tmp_path / "second" / "ds"))
    assert sorted(os.listdir(tmp_path / "second")) == ["ds.sima"]


def test_a_live_writers_temporary_file_is_not_removed(tmp_path):
    code = (
        "import sys, time\n"
        "from sima_fast._atomic import atomic_write\n"
        "with atomic_write(sys.argv[1]) as tmp:\n"
        "    open(tmp, 'w').write('in progress')\n"
        "    print(tmp, flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "out.txt")], stdout=subprocess.PIPE, text=True
    )
    try:
        tmp = proc.stdout.readline().strip()
        assert os.path.basename(tmp).startswith(f".tmp-{host_token()}.{proc.pid}.")
        report = recover(tmp_path)
        assert os.path.exists(tmp) and tmp in report.kept and not report.removed
        with atomic_publish([tmp_path / "a.tif", tmp_path / "b.tif"]) as tmps:  # an export here
            for t in tmps:
                Path(t).write_text("x")
        assert os.path.exists(tmp)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    report = recover(tmp_path)
    assert tmp in report.removed
    assert sorted(os.listdir(tmp_path)) == ["a.tif", "b.tif"]


def test_other_hosts_temporaries_are_removed_only_when_old(tmp_path):
    names = [
        ".tmp-elsewhere-0a1b2c.123.0123456789ab.h5",
        ".publish-elsewhere-0a1b2c.124.0123456789ab.json",
        ".x.sima.tmp-elsewhere-0a1b2c.123.0123456789ab",
        ".y.sima.tmp-0123abcd",  # staging directory of an earlier version
    ]
    for name in names:
        if ".sima.tmp-" in name:
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_text("{}")
    assert recover(tmp_path).removed == ()
    old = time.time() - STALE_AGE - 60
    for name in names:
        os.utime(tmp_path / name, (old, old))
    with pytest.warns(RuntimeWarning, match="not a readable publish journal"):
        report = recover(tmp_path)  # the journal is not one of ours: it stays
    assert os.listdir(tmp_path) == [names[1]]
    assert len(report.removed) == 3


def test_a_journal_never_renames_files_that_are_not_ours(tmp_path):
    victim = tmp_path / "precious.dat"
    victim.write_text("keep")
    (tmp_path / "dest.dat").write_text("old")
    dead = _dead_pid()
    journal = tmp_path / f".publish-{host_token()}.{dead}.0123456789ab.json"
    same_writer = tmp_path / f".tmp-{host_token()}.{dead}.fedcba987654.dat"
    same_writer.write_text("staged")
    copies = [str(journal)]
    for staged in [str(victim), str(tmp_path / "sub" / f".tmp-{host_token()}.1.0123456789ab")]:
        journal.write_text(
            json.dumps(
                {
                    "format": "sima_fast.publish",
                    "version": 1,
                    "primary": str(journal),
                    "copies": copies,
                    "pairs": [[staged, str(tmp_path / "dest.dat")]],
                }
            )
        )
        with pytest.warns(RuntimeWarning, match="not a readable publish journal"):
            recover(tmp_path)
        assert victim.read_text() == "keep" and (tmp_path / "dest.dat").read_text() == "old"
        assert journal.exists()
        assert same_writer.exists()  # a journal we cannot read protects its writer's files


def test_a_failed_rename_after_the_commit_point_is_completed_by_recover(tmp_path, monkeypatch):
    dests = [tmp_path / "a.h5", tmp_path / "b.h5"]
    real = os.replace
    calls = []

    def flaky(src, dst):  # the first rename onto b.h5 fails
        calls.append(os.fspath(dst))
        if calls.count(str(dests[1])) == 1 and calls[-1] == str(dests[1]):
            raise PermissionError(13, "denied", dst)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(PermissionError):
        with atomic_publish(dests) as tmps:
            for t, text in zip(tmps, "ab"):
                Path(t).write_text(text)
    assert dests[0].read_text() == "a" and not dests[1].exists()
    # this process is alive, yet its failed publish is completed
    report = recover(tmp_path)
    assert report.published == (str(dests[1]),)
    assert [p.read_text() for p in dests] == ["a", "b"]
    assert sorted(os.listdir(tmp_path)) == ["a.h5", "b.h5"]


def test_a_failing_export_leaves_nothing_and_duplicates_are_refused(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_publish([tmp_path / "a.tif", tmp_path / "sub.tif"]) as tmps:
            Path(tmps[0]).write_text("x")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="given twice"):
        with atomic_publish([tmp_path / "a.tif", tmp_path / "." / "a.tif"]):
            pass
    with atomic_write(tmp_path / "x.tif") as tmp:
        assert os.path.basename(tmp).startswith(f".tmp-{host_token()}.{os.getpid()}.")
        assert tmp.endswith(".tif")
        Path(tmp).write_text("x")


def test_staging_directories_are_named_for_cleanup(tmp_path):
    staging = make_staging_dir(tmp_path / "d.sima")
    assert os.path.basename(staging).startswith(f".d.sima.tmp-{host_token()}.{os.getpid()}.")
    assert recover(tmp_path).removed == ()  # ours and alive
    assert os.path.isdir(staging)


def test_recover_names_a_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        recover(tmp_path / "nope")
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError, match=r"'.*f'"):
        recover(tmp_path / "f")


def test_a_publish_through_a_symlinked_directory_is_recovered_under_its_real_name(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    dests = [str(tmp_path / "link" / "a.txt"), str(tmp_path / "link" / "b.txt")]

    def publish():
        with atomic_publish(dests) as tmps:
            for t, text in zip(tmps, "ab"):
                Path(t).write_text(text)

    # killed after the journal (step 1) and the first rename (step 2)
    status = _run_killed(publish, 3)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert (real / "a.txt").read_text() == "a" and not (real / "b.txt").exists()
    report = recover(real)
    assert report.published == (str(real / "b.txt"),)
    assert sorted(os.listdir(real)) == ["a.txt", "b.txt"]
    assert (real / "b.txt").read_text() == "b"


def test_a_temporary_left_in_a_dataset_directory_goes_at_the_next_writable_load(tmp_path):
    from sima_fast import ImagingDataset

    ds = _dataset(3)
    ds.save(str(tmp_path / "d"))
    before = sorted(os.listdir(ds.savedir))

    def rename_channels():
        ds.channel_names = ["x", "y"]  # rewrites metadata.json through a temporary file

    # The first os.replace publishes the lock's holder record, the second is
    # metadata.json's: the child is killed there, still holding the lock.
    status = _run_killed(rename_channels, 2)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    # The killed writer's holder record stays until the next writer replaces
    # it (the OS released the lock itself); it is not a temporary file.
    holder = ".sima_fast.lock.holder"
    assert holder in os.listdir(ds.savedir)
    os.remove(os.path.join(ds.savedir, holder))
    left = [n for n in os.listdir(ds.savedir) if n not in before]
    assert len(left) == 1 and left[0].startswith(".tmp-") and left[0].endswith(".json")
    assert ImagingDataset.load(ds.savedir, read_only=True).channel_names == ["g", "r"]
    assert left[0] in os.listdir(ds.savedir)  # a read-only open changes nothing
    assert ImagingDataset.load(ds.savedir).channel_names == ["g", "r"]
    assert sorted(os.listdir(ds.savedir)) == before

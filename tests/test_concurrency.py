"""Concurrent writers, the dataset directory lock, and which files a save may delete.

The concurrency tests use real processes (``multiprocessing`` with the
``spawn`` start method): two long-lived workers, started once for the module,
meet at a barrier as each enters the read-modify-write of the shared file
(``storage.rewrite_h5_groups``, before its lock), so that their updates truly
overlap. Without the directory lock, 21 of 21 overlapping
pairs lost one label (issue 20). A lost label never comes back (later
rewrites copy the file as it is), so checking every label at the end checks
every round.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sima_fast import storage
from sima_fast.imaging import ImagingDataset
from sima_fast.ROI import ROI, ROIList
from sima_fast.sequence import Sequence

FRAME = (1, 64, 64)
T = 60
ROUNDS = 10
LOCK = ".sima_fast.lock"
HOLDER = ".sima_fast.lock.holder"


def _movie(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.gamma(4.0, 25.0, size=(T, *FRAME, 1)).astype(np.float32) + 10.0


def _rois(n: int, seed: int) -> ROIList:
    """``n`` square mask ROIs (6×6) at random places."""
    rng = np.random.default_rng(seed)
    rois = []
    for i in range(n):
        m = np.zeros(FRAME, dtype=bool)
        y, x = rng.integers(0, FRAME[1] - 6, size=2)
        m[0, y : y + 6, x : x + 6] = True
        rois.append(ROI(mask=m, id=str(i), label=f"cell{i}"))
    return ROIList(rois)


def _groups(path: str) -> dict[str, int]:
    """``label -> number of members`` of a file of labelled groups (fast: no decoding)."""
    import h5py

    with h5py.File(path, "r") as f:
        return {k: len(f[k]) for k in f}


def _new_dataset(path, sets: int = 0) -> ImagingDataset:
    ds = ImagingDataset([Sequence.create("ndarray", _movie())], str(path))
    for k in range(sets):  # some sets to copy on every rewrite: a wider overlap window
        ds.add_ROIs(_rois(12, 100 + k), f"pre{k}")
    return ds


# -- the worker processes ------------------------------------------------------------------


def _do(ds: ImagingDataset, action: str, label: str) -> None:
    if action == "add":
        ds.add_ROIs(_rois(12, len(label)), label)
    elif action == "extract":
        ds.extract(_rois(2, 7), label=label, save_summary=False)
    elif action == "spikes":
        ds.infer_spikes(label=label, gamma=0.9)
    else:
        raise ValueError(action)


def _worker(inbox, outbox, barrier) -> None:
    """Serve commands from ``inbox`` until None; report on ``outbox``."""
    from sima_fast.spikes import infer_spikes_from_signals

    try:  # compile (or load) the kernels before any timed work
        warm = ImagingDataset([Sequence.create("ndarray", _movie(1))], None)
        infer_spikes_from_signals(warm.extract(_rois(3, 1))["raw"], gamma=0.9)
    except BaseException as exc:
        outbox.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    outbox.put(("ready", os.getpid()))
    while (cmd := inbox.get()) is not None:
        kind = cmd[0]
        try:
            if kind == "rounds":
                _, savedir, steps = cmd
                ds = ImagingDataset.load(savedir)
                real = storage.rewrite_h5_groups

                def aligned(*args, real=real, **kwargs):
                    # Both workers start their read-modify-write of the file together
                    # (infer_spikes reads and computes longer than extract before it).
                    barrier.wait(timeout=60)
                    return real(*args, **kwargs)

                storage.rewrite_h5_groups = aligned
                try:
                    for action, label in steps:
                        _do(ds, action, label)
                finally:
                    storage.rewrite_h5_groups = real
                outbox.put(("done", None))
            elif kind == "hold":
                _, savedir, operation = cmd
                with storage.dataset_lock(savedir, operation):
                    outbox.put(("held", os.getpid()))
                    inbox.get()  # the release order
                outbox.put(("released", None))
            elif kind == "churn":
                _, savedir, n = cmd
                ds = ImagingDataset.load(savedir)
                for i in range(n):
                    if i % 3 == 2:
                        ds.channel_names = ["red" if i % 2 else "green"]
                    elif "x" in ds.ROIs:  # the last set removed: rois.h5 goes and comes back
                        ds.delete_ROIs("x")
                    else:
                        ds.add_ROIs(_rois(12, i), "x")
                outbox.put(("done", None))
        except BaseException as exc:  # report, and free the other worker
            barrier.abort()
            outbox.put(("error", f"{type(exc).__name__}: {exc}"))


class Workers:
    def __init__(self, n: int):
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(n)
        self.inboxes = [ctx.Queue() for _ in range(n)]
        self.outboxes = [ctx.Queue() for _ in range(n)]
        self.procs = [
            ctx.Process(target=_worker, args=(i, o, self.barrier), daemon=True)
            for i, o in zip(self.inboxes, self.outboxes)
        ]
        for p in self.procs:
            p.start()
        self.pids = [self.expect(i, "ready", 120) for i in range(n)]

    def send(self, i: int, *cmd) -> None:
        self.inboxes[i].put(cmd)

    def expect(self, i: int, what: str, timeout: float = 60):
        kind, value = self.outboxes[i].get(timeout=timeout)
        assert kind == what, f"worker {i}: {kind}: {value}"
        return value

    def run_rounds(self, savedir: str, steps: list[list[tuple[str, str]]]) -> None:
        self.barrier.reset()
        for i, s in enumerate(steps):
            self.send(i, "rounds", savedir, s)
        for i in range(len(steps)):
            self.expect(i, "done")

    def close(self) -> None:
        for q in self.inboxes:
            q.put(None)
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.terminate()


@pytest.fixture(scope="module")
def workers():
    import numba

    # The workers load the kernels this session compiled; quiet, no compile notice.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NUMBA_CACHE_DIR", numba.config.CACHE_DIR)
        mp.setenv("SIMA_FAST_QUIET", "1")
        pool = Workers(2)
    yield pool
    pool.close()


@pytest.fixture
def short_timeout():
    previous = storage.set_lock_timeout(None)
    yield
    storage.set_lock_timeout(previous)


# -- concurrent writers --------------------------------------------------------------------


def test_concurrent_add_ROIs_keep_every_label(workers, tmp_path):
    ds = _new_dataset(tmp_path / "d", sets=1)
    steps = [[("add", f"{w}{k}") for k in range(ROUNDS)] for w in "ab"]
    workers.run_rounds(ds.savedir, steps)
    sets = _groups(os.path.join(ds.savedir, storage.ROIS_FILE))
    want = {f"{w}{k}" for w in "ab" for k in range(ROUNDS)} | {"pre0"}
    assert set(sets) == want, f"lost: {sorted(want - set(sets))}"
    a3 = ImagingDataset.load(ds.savedir).ROIs["a3"]
    assert [r.id for r in a3] == [str(i) for i in range(12)]
    assert not os.path.exists(os.path.join(ds.savedir, HOLDER))  # removed on release


@pytest.mark.parametrize("other", ["spikes", "extract"])
def test_concurrent_extractions_keep_every_label(workers, tmp_path, other):
    ds = _new_dataset(tmp_path / "d", sets=1)
    bases = ROUNDS if other == "spikes" else 1  # one record per infer_spikes round
    record = ds.extract(_rois(2, 7), save_summary=False)
    for k in range(bases):
        ds._store_signals(0, f"base{k}", record)
    first = [("extract", f"e{k}") for k in range(ROUNDS)]
    if other == "spikes":
        second = [("spikes", f"base{k}") for k in range(ROUNDS)]
    else:
        second = [("extract", f"f{k}") for k in range(ROUNDS)]
    workers.run_rounds(ds.savedir, [first, second])
    signals = ImagingDataset.load(ds.savedir).signals()
    want = {label for _, label in first + second} | {f"base{k}" for k in range(bases)}
    want.add(record["timestamp"])
    assert set(signals) == want, f"lost: {sorted(want - set(signals))}"
    if other == "spikes":  # no update of infer_spikes was lost either
        spikeless = [k for k in range(ROUNDS) if "spikes" not in signals[f"base{k}"]]
        assert not spikeless, f"lost spikes of base{spikeless}"
    for label in want:
        assert signals[label]["raw"][0].shape == (2, T)


def test_threads_of_one_process_take_turns(tmp_path):
    ds = _new_dataset(tmp_path / "d", sets=2)
    start = threading.Barrier(2)
    errors = []

    def write(prefix):
        try:
            for k in range(4):
                start.wait(timeout=30)
                ds.add_ROIs(_rois(20, k), f"{prefix}{k}")
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=write, args=(p,)) for p in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert set(ImagingDataset.load(ds.savedir).ROIs) == {"pre0", "pre1"} | {
        f"{p}{k}" for p in "ab" for k in range(4)
    }


# -- a held lock ---------------------------------------------------------------------------


def test_held_lock_times_out_naming_directory_and_holder(
    workers, tmp_path, monkeypatch, short_timeout
):
    ds = _new_dataset(tmp_path / "d")
    meta_before = Path(ds.savedir, storage.METADATA_FILE).read_text()
    workers.send(0, "hold", ds.savedir, "test-hold")
    pid = workers.expect(0, "held")
    try:
        storage.set_lock_timeout(0.3)
        assert storage.lock_timeout() == 0.3
        t0 = time.perf_counter()
        with pytest.raises(storage.DatasetLockedError) as info:
            ds.add_ROIs(_rois(3, 0), "late")
        waited = time.perf_counter() - t0
        assert 0.3 <= waited < 3.0
        err = info.value
        assert isinstance(err, TimeoutError)
        msg = str(err)
        assert repr(ds.savedir) in msg and "'add_ROIs'" in msg and "0.3 s" in msg
        assert f"pid {pid}" in msg and repr(socket.gethostname()) in msg
        assert "'test-hold'" in msg and "SIMA_FAST_LOCK_TIMEOUT" in msg
        assert err.holder["pid"] == pid and err.holder["operation"] == "test-hold"
        assert err.directory == ds.savedir
        with pytest.raises(storage.DatasetLockedError, match="within 0 s"):  # one attempt
            with storage.dataset_lock(ds.savedir, "housekeeping", timeout=0):
                pass

        # the environment variable, when nothing is set in Python
        storage.set_lock_timeout(None)
        monkeypatch.setenv("SIMA_FAST_LOCK_TIMEOUT", "0.2")
        assert storage.lock_timeout() == 0.2
        with pytest.raises(storage.DatasetLockedError, match=r"within 0\.2 s"):
            ds.channel_names = ["renamed"]
        assert ds.channel_names == ["0"]  # the failed change is not kept
        with pytest.raises(storage.DatasetLockedError):
            ds.extract(_rois(3, 0), label="late", save_summary=False)
        with pytest.raises(storage.DatasetLockedError):
            ds.save()
        monkeypatch.setenv("SIMA_FAST_LOCK_TIMEOUT", "soon")
        with pytest.raises(ValueError, match="SIMA_FAST_LOCK_TIMEOUT='soon'"):
            storage.lock_timeout()
        monkeypatch.delenv("SIMA_FAST_LOCK_TIMEOUT")
        assert storage.lock_timeout() == 60.0
    finally:
        workers.send(0, "release")
        workers.expect(0, "released")
    assert Path(ds.savedir, storage.METADATA_FILE).read_text() == meta_before
    assert "late" not in ds.ROIs and ds.signals() == {}
    ds.add_ROIs(_rois(3, 0), "late")  # free again
    assert "late" in ds.ROIs


def test_set_lock_timeout_checks_its_argument(short_timeout):
    with pytest.raises(ValueError, match="seconds"):
        storage.set_lock_timeout(-1)
    with pytest.raises(ValueError, match="seconds"):
        storage.set_lock_timeout(float("nan"))
    with pytest.raises(TypeError, match="seconds"):
        storage.set_lock_timeout("5")
    assert storage.set_lock_timeout(2) is None
    assert storage.set_lock_timeout(float("inf")) == 2.0
    assert storage.lock_timeout() == float("inf")


def test_lock_is_reentrant_within_a_thread(tmp_path, short_timeout):
    ds = _new_dataset(tmp_path / "d")
    storage.set_lock_timeout(0)
    with storage.dataset_lock(ds.savedir, "outer"):
        holder = json.loads(Path(ds.savedir, HOLDER).read_text())
        assert holder["pid"] == os.getpid() and holder["operation"] == "outer"
        ds.add_ROIs(_rois(3, 0), "inner")  # would time out at once if not re-entrant
        ds.channel_names = ["x"]
        ds.save()
    assert "inner" in ImagingDataset.load(ds.savedir).ROIs
    assert not os.path.exists(os.path.join(ds.savedir, HOLDER))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with storage.dataset_lock(str(tmp_path / "missing.sima"), "x"):
            pass


def test_reader_during_writes_always_loads(workers, tmp_path):
    ds = _new_dataset(tmp_path / "d")
    workers.send(0, "churn", ds.savedir, 18)
    loads = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        loaded = ImagingDataset.load(ds.savedir)
        assert set(loaded.ROIs) in (set(), {"x"})
        assert loaded.channel_names in (["0"], ["red"], ["green"])
        loads += 1
        if not workers.outboxes[0].empty():
            break
    workers.expect(0, "done")
    assert loads >= 5
    final = ImagingDataset.load(ds.savedir)
    assert set(final.ROIs) == set() and final.channel_names == ["red"]  # 12 toggles; i=17 renamed


# -- the lock file -------------------------------------------------------------------------


def test_lock_file_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        ds = _new_dataset(tmp_path / "d")
        os.remove(os.path.join(ds.savedir, LOCK))  # as in a directory of an older version
        ds.add_ROIs(_rois(2, 0), "s")  # the first write creates it
        created = stat.S_IMODE(os.stat(os.path.join(ds.savedir, LOCK)).st_mode)
        fresh = _new_dataset(tmp_path / "e")  # a new dataset has it from the start
        made = stat.S_IMODE(os.stat(os.path.join(fresh.savedir, LOCK)).st_mode)
    finally:
        os.umask(old)
    assert created == made == 0o640


def test_read_only_and_legacy_directories_never_get_a_lock_file(tmp_path, sima132):
    ds = _new_dataset(tmp_path / "d")
    ds.add_ROIs(_rois(2, 0), "s")
    ds.extract(label="x", save_summary=False)
    os.remove(os.path.join(ds.savedir, LOCK))
    ro = ImagingDataset.load(ds.savedir, read_only=True)
    _ = ro.time_averages, ro.ROIs, ro.signals()
    for change in (
        lambda: ro.add_ROIs(_rois(2, 0), "t"),
        lambda: ro.delete_ROIs("s"),
        lambda: ro.extract(label="y", save_summary=False),
        lambda: ro.infer_spikes(label="x"),
        lambda: ro.save(),
    ):
        with pytest.raises(PermissionError):
            change()
    assert not os.path.exists(os.path.join(ds.savedir, LOCK))

    legacy = ImagingDataset.load(os.path.join(sima132, "hdf5_and_ndarray.sima"))
    _ = legacy.time_averages, legacy.ROIs, legacy.signals(0)
    with pytest.raises(PermissionError):
        legacy.add_ROIs(ROIList([ROI(polygons=[[1, 1], [4, 1], [4, 4]])]), "t")
    with pytest.raises(PermissionError):
        legacy.save()
    assert not [
        name for _, _, files in os.walk(sima132) for name in files if name.startswith(".sima_fast")
    ]


# -- in-place saves against other writers --------------------------------------------------


def test_save_keeps_other_writers_changes(tmp_path):
    mine = _new_dataset(tmp_path / "d")
    theirs = ImagingDataset.load(mine.savedir)
    theirs.add_ROIs(_rois(4, 0), "theirs")
    theirs.extract(label="theirs", save_summary=False)
    theirs.channel_names = ["GCaMP"]
    mine.save()  # this object did not rename: the other process's name stays
    assert mine.channel_names == ["GCaMP"]
    again = ImagingDataset.load(mine.savedir)
    assert again.channel_names == ["GCaMP"]
    assert set(again.ROIs) == {"theirs"} and set(again.signals()) == {"theirs"}
    mine.channel_names = ["mine"]  # an explicit change is written
    assert ImagingDataset.load(mine.savedir).channel_names == ["mine"]
    theirs.save()  # unchanged there since its own rename: keeps "mine"
    assert ImagingDataset.load(mine.savedir).channel_names == ["mine"]


def test_save_refuses_a_directory_whose_sequences_were_replaced(tmp_path):
    ds = _new_dataset(tmp_path / "d")
    path = os.path.join(ds.savedir, storage.METADATA_FILE)
    meta = storage.read_metadata(ds.savedir)
    meta["sequences_id"] = "f" * 32  # another process saved other sequences here
    del meta["format"], meta["version"]
    storage.write_metadata(ds.savedir, meta)
    before = Path(path).read_text()
    with pytest.raises(storage.DatasetChangedError, match="sequences_id") as info:
        ds.save()
    assert isinstance(info.value, OSError) and repr(ds.savedir) in str(info.value)
    assert Path(path).read_text() == before
    # the projection cache is not written for sequences that are gone
    _ = ds.time_averages
    assert not os.path.exists(os.path.join(ds.savedir, storage.PROJECTIONS_FILE))
    assert not storage.write_projections(ds.savedir, "0" * 32, {"time_averages": np.zeros(1)})


# -- deleting only our own files -----------------------------------------------------------


def _h5(path):
    import h5py

    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)


def test_save_and_channel_names_keep_user_files(tmp_path):
    ds = _new_dataset(tmp_path / "d")
    ours = sorted(n for n in os.listdir(ds.savedir) if storage.GENERATED_FILE.fullmatch(n))
    assert ours and storage.read_metadata(ds.savedir)["owned_files"] == ours
    user = ["sequence_raw_backup.h5", "arrays_mine.h5", f"sequence_{'ab' * 16}.h5"]
    for name in user:
        _h5(os.path.join(ds.savedir, name))
    ds.save()
    ds.channel_names = ["renamed"]
    ds.save()
    for name in user:
        assert os.path.exists(os.path.join(ds.savedir, name)), name
    loaded = ImagingDataset.load(ds.savedir)
    np.testing.assert_array_equal(np.asarray(loaded.sequences[0]), _movie())
    assert storage.read_metadata(ds.savedir)["owned_files"] == ours


def test_old_metadata_without_ownership(tmp_path):
    ds = _new_dataset(tmp_path / "d")
    path = os.path.join(ds.savedir, storage.METADATA_FILE)
    meta = json.loads(Path(path).read_text())
    ours = meta.pop("owned_files")
    with open(path, "w") as fh:  # as written by an earlier sima_fast
        json.dump(meta, fh)
    stray = f"arrays_{'cd' * 16}.h5"  # generated-looking, but nothing says it is ours
    for name in ("sequence_raw_backup.h5", stray):
        _h5(os.path.join(ds.savedir, name))
    ImagingDataset.load(ds.savedir).save()
    assert os.path.exists(os.path.join(ds.savedir, "sequence_raw_backup.h5"))
    assert os.path.exists(os.path.join(ds.savedir, stray))
    assert storage.read_metadata(ds.savedir)["owned_files"] == ours  # adopted on save

    # Its own files: referenced by the old metadata and named as sima_fast names them.
    d = tmp_path / "old.sima"
    d.mkdir()
    a, s, later = (f"arrays_{'1' * 32}.h5", f"sequence_{'2' * 32}.h5", f"arrays_{'3' * 32}.h5")
    for name in (a, s, later, "sequence_raw.h5", stray):
        _h5(str(d / name))

    def record(name):
        return {"fmt": "HDF5", "path": {"abspath": str(d / name), "relpath": name}}

    previous = {"arrays_file": a, "sequences": [record(s), record("sequence_raw.h5")]}
    new = {"arrays_file": later, "sequences": [record("sequence_raw.h5")], "owned_files": [later]}
    assert storage.owned_files(previous) == {a, s}
    removed = storage.remove_unreferenced(str(d), new, previous)
    assert removed == [a, s]
    assert sorted(os.listdir(d)) == sorted([later, "sequence_raw.h5", stray])


def test_owned_files_must_be_names(tmp_path):
    ds = _new_dataset(tmp_path / "d")
    path = os.path.join(ds.savedir, storage.METADATA_FILE)
    meta = json.loads(Path(path).read_text())
    meta["owned_files"] = "sequence_x.h5"
    with open(path, "w") as fh:
        json.dump(meta, fh)
    with pytest.raises(storage.DatasetFormatError, match="owned_files"):
        ImagingDataset.load(ds.savedir)
    # names with a directory part are never owned
    assert storage.owned_files({"owned_files": ["../x.h5", "a/b.h5", "arrays_1.h5"]}) == {
        "arrays_1.h5"
    }


def test_new_save_locks_nothing(tmp_path, monkeypatch):
    ds = _new_dataset(tmp_path / "d")
    ds.add_ROIs(_rois(3, 0), "s")
    ds.extract(label="x", save_summary=False)
    _ = ds.time_averages
    locked = []
    real = storage.dataset_lock

    def recording(directory, operation):
        locked.append((directory, operation))
        return real(directory, operation)

    monkeypatch.setattr(storage, "dataset_lock", recording)
    ds.save(str(tmp_path / "copy"))  # a staging directory nobody else sees, then a rename
    assert locked == []
    copy = ImagingDataset.load(str(tmp_path / "copy"))
    assert set(copy.ROIs) == {"s"} and set(copy.signals()) == {"x"}
    assert os.path.exists(os.path.join(copy.savedir, storage.PROJECTIONS_FILE))
    assert os.path.exists(tmp_path / "copy.sima" / LOCK)
    assert not os.path.exists(tmp_path / "copy.sima" / HOLDER)
    shutil.rmtree(tmp_path / "copy.sima")

"""Hostile SIMA pickles and .npy object arrays: refused fast, with little memory, naming the file.

The pickles are written opcode by opcode (see :mod:`pickletools`), in
protocol 2 as SIMA's Python 2 pickles and in protocols 4 and 5. Each attack
is loaded through the public API (``ImagingDataset.load``, ``.signals()``,
``load_npy``) in a subprocess with an address-space limit and a timeout; the
child reports the error, the time and its peak memory.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sima_fast._legacy import (
    PickleLimits,
    UnsafePickleError,
    current_limits,
    legacy_load,
    load_npy,
    pickle_limits,
)
from sima_fast.imaging import ImagingDataset

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "sima132", "hdf5_and_ndarray.sima")

# ---------------------------------------------------------------------------
# opcode helpers
# ---------------------------------------------------------------------------

P2 = b"\x80\x02"
P4 = b"\x80\x04"
P5 = b"\x80\x05"
MARK, STOP, POP = b"(", b".", b"0"
EMPTY_LIST, EMPTY_DICT, APPENDS, SETITEM, LIST = b"]", b"}", b"e", b"s", b"l"
TUPLE1, TUPLE2, TUPLE3, TUPLE, REDUCE, BUILD = b"\x85", b"\x86", b"\x87", b"t", b"R", b"b"
NONE, NEWFALSE, NEWTRUE = b"N", b"\x89", b"\x88"


def put(i):
    return b"q" + bytes([i])


def get(i):
    return b"h" + bytes([i])


def uni(s):  # BINUNICODE, protocol 1+
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def binstring(s):  # SHORT_BINSTRING: a Python 2 str
    return b"U" + bytes([len(s)]) + s.encode("latin1")


def binint(n):
    return b"J" + struct.pack("<i", n)


def long1(n):
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def glob(module, name):  # GLOBAL, protocols 0-3
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def stack_glob(module, name):  # STACK_GLOBAL, protocol 4+
    return uni(module) + uni(name) + b"\x93"


def shared_dag(levels):
    """Memo 0 = []; memo k = [memo k-1, memo k-1]; leaves memo ``levels`` on the stack.

    ``levels`` + 1 lists, about 9 bytes each, that a tree walk expands to
    2 ** (levels + 1) - 1 lists.
    """
    out = EMPTY_LIST + put(0) + POP
    for k in range(1, levels + 1):
        out += EMPTY_LIST + put(k) + MARK + get(k - 1) + get(k - 1) + APPENDS
        if k < levels:
            out += POP
    return out


def deep_nesting(depth):
    """[[[...]]] nested ``depth`` deep: every MARK opened, then closed by LIST."""
    return MARK * depth + LIST * depth


def dataset_pkl(channel_names_ops, proto=P2):
    return proto + EMPTY_DICT + uni("channel_names") + channel_names_ops + SETITEM + STOP


def signals_dag(levels, proto=P2):
    """signals_0.pkl as ``{'bomb': {'raw': <shared_dag(levels)>}}``."""
    inner = EMPTY_DICT + uni("raw") + shared_dag(levels) + SETITEM
    return proto + EMPTY_DICT + uni("bomb") + inner + SETITEM + STOP


def bytearray_bomb(n, proto=P2):
    g = glob("__builtin__", "bytearray") if proto == P2 else stack_glob("builtins", "bytearray")
    return proto + g + binint(n) + TUPLE1 + REDUCE + STOP


def reconstruct_bomb(shape, proto=P2):
    """numpy's array reconstruction asked for ``shape`` of float64."""
    if proto == P2:
        rec = glob("numpy.core.multiarray", "_reconstruct")
        nd = glob("numpy", "ndarray")
    else:
        rec = stack_glob("numpy._core.multiarray", "_reconstruct")
        nd = stack_glob("numpy", "ndarray")
    dims = MARK + b"".join(long1(s) for s in shape) + TUPLE
    return proto + rec + nd + dims + binstring("d") + TUPLE3 + REDUCE + STOP


def dtype_ops(code, proto=P2):
    g = glob("numpy", "dtype") if proto == P2 else stack_glob("numpy", "dtype")
    return g + binstring(code) + NEWFALSE + NEWTRUE + TUPLE3 + REDUCE


def array_state_bomb(shape, code, data_ops, proto=P2):
    """A (0,) array reconstructed, then BUILD with a state claiming ``shape``."""
    rec = glob("numpy.core.multiarray", "_reconstruct")
    nd = glob("numpy", "ndarray")
    head = proto + rec + nd + MARK + binint(0) + TUPLE + binstring("b") + TUPLE3 + REDUCE
    dims = MARK + b"".join(long1(s) for s in shape) + TUPLE
    state = MARK + binint(1) + dims + dtype_ops(code, proto) + NEWFALSE + data_ops + TUPLE
    return head + state + BUILD + STOP


def code_exec(proto=P2):
    if proto == P2:
        return proto + glob("os", "system") + uni("touch PWNED") + TUPLE1 + REDUCE + STOP
    return proto + stack_glob("os", "system") + uni("touch PWNED") + TUPLE1 + REDUCE + STOP


def npy_bytes(header: dict, payload: bytes) -> bytes:
    """A version 1.0 .npy file: magic, padded header dict, payload."""
    text = repr(header).encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


OBJ_HEADER = {"descr": "|O", "fortran_order": False, "shape": (1,)}


# ---------------------------------------------------------------------------
# the subprocess harness
# ---------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, os, resource, sys, time
    import numpy as np
    from sima_fast.imaging import ImagingDataset
    from sima_fast._legacy import load_npy
    what, path = sys.argv[1], sys.argv[2]
    # Warm up the code paths on the real SIMA fixture, then cap the address
    # space a little above what the process already holds (numba and
    # llvmlite reserve much virtual memory, so an absolute cap would not do).
    ds = ImagingDataset.load(sys.argv[3]); ds.signals(0); ds.ROIs
    with open('/proc/self/status') as fh:
        vm = [int(l.split()[1]) * 1024 for l in fh if l.startswith('VmSize')][0]
    resource.setrlimit(resource.RLIMIT_AS, (vm + 600 * 2**20, resource.RLIM_INFINITY))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = {}
    try:
        if what == 'load':
            ImagingDataset.load(path)
        elif what == 'signals':
            ImagingDataset.load(path).signals(0)
        elif what == 'rois':
            ImagingDataset.load(path).ROIs
        elif what == 'npy':
            load_npy(path)
        out['error'] = None
    except BaseException as exc:
        out['error'] = type(exc).__name__
        out['mro'] = [c.__name__ for c in type(exc).__mro__]
        out['message'] = str(exc)[:2000]
        out['limit'] = getattr(exc, 'limit', None)
    out['seconds'] = time.perf_counter() - t0
    out['rss_growth_mb'] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps(out))
    """
)


def run_child(what, path, timeout=60):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, what, str(path), FIXTURE],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.dirname(str(path)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def legacy_dir(tmp_path, name, data):
    """A copy of the SIMA 1.3.2 sample with ``name`` replaced by ``data``."""
    d = tmp_path / "hostile.sima"
    shutil.copytree(FIXTURE, d)
    # the sample's sequences point at ../movie_a.h5
    shutil.copy(os.path.join(os.path.dirname(FIXTURE), "movie_a.h5"), tmp_path / "movie_a.h5")
    (d / name).write_bytes(data)
    return d


def assert_refused(out, path, limit=None, match=None):
    assert out["error"] == "UnsafePickleError", out
    assert str(path) in out["message"], out  # the full path of the file
    if limit is not None:
        assert out["limit"] == limit and limit in out["message"], out
    if match is not None:
        assert match in out["message"], out
    assert out["seconds"] < 10, out
    assert out["rss_growth_mb"] < 150, out


# ---------------------------------------------------------------------------
# the attacks of issue 20, through the public API
# ---------------------------------------------------------------------------

LOAD_ATTACKS = {
    # 40 levels of shared references in dataset.pkl's channel names: 2**41 as a tree
    "dag_channel_names_p2": ("dataset.pkl", dataset_pkl(shared_dag(40)), "max_objects"),
    "dag_channel_names_p4": ("dataset.pkl", dataset_pkl(shared_dag(40), P4), "max_objects"),
    # 200,000-deep nesting: was a bare RecursionError
    "deep_nesting": ("dataset.pkl", dataset_pkl(deep_nesting(200_000)), "max_depth"),
    "deep_nesting_p5": ("dataset.pkl", dataset_pkl(deep_nesting(200_000), P5), "max_depth"),
    # bytearray(500_000_000) in 36 bytes: was allocated before the refusal
    "bytearray_p2": ("dataset.pkl", bytearray_bomb(500_000_000), "max_alloc_per_call"),
    "bytearray_p4": ("sequences.pkl", bytearray_bomb(500_000_000, P4), "max_alloc_per_call"),
    # numpy reconstruction asked for 10**10 float64 (80 GB)
    "reconstruct_p2": ("sequences.pkl", reconstruct_bomb((10**5, 10**5)), "max_alloc_per_call"),
    "reconstruct_p4": ("dataset.pkl", reconstruct_bomb((10**10,), P4), "max_alloc_per_call"),
    # an object array state claiming 10**9 items (numpy would allocate 8 GB first)
    "object_state": (
        "sequences.pkl",
        array_state_bomb((10**9,), "O8", MARK + NONE + LIST),
        None,
    ),
    # a float array state claiming 10**9 items with 8 bytes of data
    "float_state": (
        "sequences.pkl",
        array_state_bomb((10**9,), "f8", binstring("\0" * 8)),
        None,
    ),
    # BYTEARRAY8 declaring 3 GB the file does not hold (the C unpickler allocates first)
    "bytearray8_header": (
        "sequences.pkl",
        P5 + b"\x96" + struct.pack("<Q", 3 * 2**30) + b"abc" + STOP,
        None,
    ),
    # a code-executing reduce still refused, now naming the file
    "code_exec_p2": ("sequences.pkl", code_exec(), None),
    "code_exec_p4": ("dataset.pkl", code_exec(P4), None),
}


@pytest.mark.parametrize("case", sorted(LOAD_ATTACKS))
def test_hostile_legacy_load_is_refused_fast(tmp_path, case):
    name, data, limit = LOAD_ATTACKS[case]
    d = legacy_dir(tmp_path, name, data)
    out = run_child("load", d)
    assert_refused(out, d / name, limit)
    assert not (tmp_path / "PWNED").exists() and not (d / "PWNED").exists()


@pytest.mark.parametrize("proto", [P2, P4])
def test_signals_memory_bomb_is_refused(tmp_path, proto):
    # 318 bytes in the issue; 30 levels here: a tree of 2**31 lists
    data = signals_dag(30, proto)
    assert len(data) < 400
    d = legacy_dir(tmp_path, "signals_0.pkl", data)
    out = run_child("signals", d)
    assert_refused(out, d / "signals_0.pkl", "max_objects")


def test_sparse_matrix_with_a_huge_shape_is_refused(tmp_path):
    # A coo record of shape (10**12, 1) in signals: CSR conversion would need 8 TB.
    sp = glob("scipy.sparse.coo", "coo_matrix")
    state = (
        EMPTY_DICT
        + MARK
        + uni("_shape")
        + long1(10**12)
        + binint(1)
        + TUPLE2
        + uni("data")
        + EMPTY_LIST
        + uni("row")
        + EMPTY_LIST
        + uni("col")
        + EMPTY_LIST
        + b"u"
    )
    record = sp + b")" + b"\x81" + state + BUILD  # NEWOBJ, then BUILD
    data = (
        P2 + EMPTY_DICT + uni("s") + EMPTY_DICT + uni("mask") + record + SETITEM + SETITEM + STOP
    )
    d = legacy_dir(tmp_path, "signals_0.pkl", data)
    out = run_child("signals", d)
    assert_refused(out, d / "signals_0.pkl", "max_alloc_per_call")


@pytest.mark.parametrize("name", ["dataset.pkl", "sequences.pkl", "signals_0.pkl", "rois.pkl"])
def test_truncated_pickles_name_the_file(tmp_path, name):
    with open(os.path.join(FIXTURE, name), "rb") as fh:
        data = fh.read()
    d = legacy_dir(tmp_path, name, data[: len(data) // 2])
    what = {"signals_0.pkl": "signals", "rois.pkl": "rois"}.get(name, "load")
    out = run_child(what, d)
    assert_refused(out, d / name, match="not a readable SIMA pickle")


def test_every_refusal_names_the_file(tmp_path):
    # In process (fast): refusals raised inside allow-listed constructors and
    # markers used to carry no path (25 of them in the audit).
    seq = glob("sima.sequence", "_Sequence_HDF5")
    scal = glob("numpy.core.multiarray", "scalar")
    fb = glob("numpy.core.numeric", "_frombuffer")
    cases = {
        "call_marker": P2 + seq + MARK + TUPLE + REDUCE + STOP,
        "build_marker": P2 + seq + EMPTY_DICT + BUILD + STOP,
        "object_scalar": P2 + scal + dtype_ops("O8") + TUPLE1 + REDUCE + STOP,
        "scalar_no_data": P2 + scal + dtype_ops("f8") + TUPLE1 + REDUCE + STOP,
        "frombuffer_object": P2
        + fb
        + MARK
        + binstring("")
        + dtype_ops("O8")
        + MARK
        + TUPLE
        + binstring("C")
        + TUPLE
        + REDUCE
        + STOP,
        "frombuffer_size": P2
        + fb
        + MARK
        + glob("__builtin__", "bytearray")
        + binint(8)
        + TUPLE1
        + REDUCE
        + dtype_ops("f8")
        + MARK
        + binint(1000)
        + TUPLE
        + binstring("C")
        + TUPLE
        + REDUCE
        + STOP,
        "ndarray_call": P2 + glob("numpy", "ndarray") + MARK + binint(10) + TUPLE + REDUCE + STOP,
        "codecs": P2
        + glob("_codecs", "encode")
        + uni("x")
        + uni("rot13")
        + TUPLE2
        + REDUCE
        + STOP,
        "reconstructor": P2
        + glob("copy_reg", "_reconstructor")
        + glob("__builtin__", "list")
        + glob("__builtin__", "object")
        + NONE
        + TUPLE3
        + REDUCE
        + STOP,
        "sparse_state": P2
        + glob("scipy.sparse.lil", "lil_matrix")
        + b")\x81"
        + NONE
        + BUILD
        + STOP,
        "reduce_subtype": P2
        + glob("numpy.core.multiarray", "_reconstruct")
        + glob("__builtin__", "list")
        + MARK
        + binint(0)
        + TUPLE
        + binstring("b")
        + TUPLE3
        + REDUCE
        + STOP,
        "slice_of_lists": P2 + glob("__builtin__", "slice") + EMPTY_LIST + TUPLE1 + REDUCE + STOP,
        "list_of_array": P2
        + glob("__builtin__", "list")
        + glob("numpy.core.multiarray", "_reconstruct")
        + glob("numpy", "ndarray")
        + MARK
        + binint(0)
        + TUPLE
        + binstring("b")
        + TUPLE3
        + REDUCE
        + TUPLE1
        + REDUCE
        + STOP,
        "cycle": P2 + EMPTY_LIST + put(0) + get(0) + b"a" + STOP,
        "bad_opcode": P2 + b"\xff" + STOP,
        "no_stop": P2 + EMPTY_LIST,
        "empty": b"",
        "frame_too_long": P4 + b"\x95" + struct.pack("<Q", 10**9) + NONE + STOP,
        "binunicode8_too_long": P4 + b"\x8d" + struct.pack("<Q", 10**9) + b"ab" + STOP,
        "global_no_newline": P2 + b"cnumpy\nndarr",
        "unknown_global": P2 + glob("builtins", "eval") + STOP,
        "state_not_tuple": P2
        + glob("numpy.core.multiarray", "_reconstruct")
        + glob("numpy", "ndarray")
        + MARK
        + binint(0)
        + TUPLE
        + binstring("b")
        + TUPLE3
        + REDUCE
        + EMPTY_DICT
        + BUILD
        + STOP,
    }
    refused = 0
    for case, data in cases.items():
        path = tmp_path / f"{case}.pkl"
        path.write_bytes(data)
        try:
            legacy_load(path)
        except UnsafePickleError as exc:
            assert str(exc).startswith(str(path) + ":"), (case, str(exc))
            assert exc.path == str(path), case
            refused += 1
        else:
            raise AssertionError(f"{case} was accepted")
    assert refused == len(cases) == 22


def test_limits_can_be_raised_for_a_legitimately_big_file(tmp_path):
    path = tmp_path / "dataset.pkl"
    path.write_bytes(dataset_pkl(shared_dag(20)))  # 2**21 - 1 lists as a tree
    with pytest.raises(UnsafePickleError, match="max_objects") as err:
        legacy_load(path)
    assert err.value.limit == "max_objects"
    with pickle_limits(max_objects=10**7) as limits:
        assert limits.max_objects == 10**7 and current_limits() is limits
        info = legacy_load(path)
    assert current_limits() == PickleLimits()
    from sima_fast import storage

    assert storage.pickle_limits is pickle_limits and storage.PickleLimits is PickleLimits
    assert len(info["channel_names"]) == 2
    assert info["channel_names"][0] is info["channel_names"][1]  # sharing kept
    assert legacy_load(path, limits=PickleLimits(max_objects=10**7)).keys() == {"channel_names"}
    # depth: 150 levels refused by default, accepted with max_depth=200
    path.write_bytes(dataset_pkl(deep_nesting(150)))
    with pytest.raises(UnsafePickleError, match="max_depth"):
        legacy_load(path)
    assert legacy_load(path, limits=PickleLimits(max_depth=200))["channel_names"] is not None
    with pytest.raises(ValueError, match="max_depth"):
        PickleLimits(max_depth=0)
    with pytest.raises(TypeError):
        with pickle_limits(max_things=1):
            pass


def test_channel_names_must_be_strings(tmp_path):
    from sima_fast.storage import DatasetFormatError

    d = legacy_dir(tmp_path, "dataset.pkl", dataset_pkl(MARK + EMPTY_LIST + LIST))
    with pytest.raises(DatasetFormatError, match="channel_names") as err:
        ImagingDataset.load(str(d))
    assert str(d / "dataset.pkl") in str(err.value)


def _sima_classes(monkeypatch):
    import types

    sima = types.ModuleType("sima")
    mod = types.ModuleType("sima.sequence")
    for name in ("_Sequence_HDF5", "_Joined_Sequence"):
        cls = type(name, (), {"__module__": "sima.sequence", "__qualname__": name})
        setattr(mod, name, cls)
    sima.sequence = mod
    monkeypatch.setitem(sys.modules, "sima", sima)
    monkeypatch.setitem(sys.modules, "sima.sequence", mod)
    return mod


def test_shared_sequence_records_are_bounded(tmp_path, monkeypatch):
    mod = _sima_classes(monkeypatch)
    raw = legacy_load(os.path.join(FIXTURE, "sequences.pkl"))
    node = dict(raw[0], __class__=mod._Sequence_HDF5)  # the sample's HDF5 record
    for _ in range(14):  # 2**15 - 1 records as a tree, 15 distinct
        node = {"__class__": mod._Joined_Sequence, "sequences": [node, node]}
    d = legacy_dir(tmp_path, "sequences.pkl", pickle.dumps([node], protocol=2))
    with pytest.raises(UnsafePickleError, match="MAX_LEGACY_SEQUENCE_RECORDS") as err:
        ImagingDataset.load(str(d))
    assert str(d / "sequences.pkl") in str(err.value)
    # a record missing a key names the file and the key
    broken = {k: v for k, v in raw[0].items() if k != "dim_order"}
    broken["__class__"] = mod._Sequence_HDF5
    d2 = tmp_path / "broken"
    d2.mkdir()
    d2 = legacy_dir(d2, "sequences.pkl", pickle.dumps([broken], protocol=2))
    from sima_fast.storage import DatasetFormatError

    with pytest.raises(
        DatasetFormatError, match=r"sequences\.pkl: sequence 0.*'dim_order'"
    ) as err:
        ImagingDataset.load(str(d2))
    assert str(d2 / "sequences.pkl") in str(err.value)


def test_convert_legacy_is_iterative_and_keeps_sharing():
    from sima_fast.storage import convert_legacy

    deep = []
    for _ in range(50_000):
        deep = [deep]
    assert convert_legacy({"a": deep})["a"] is not deep  # no RecursionError
    shared = [1, 2]
    out = convert_legacy((shared, shared, {"k": shared}))
    assert out[0] is out[1] is out[2]["k"] and out[0] == [1, 2]
    cyc = []
    cyc.append(cyc)
    with pytest.raises(ValueError, match="cycle"):
        convert_legacy(cyc)


# ---------------------------------------------------------------------------
# .npy object arrays (suite2p's stat.npy / ops.npy)
# ---------------------------------------------------------------------------


def test_load_npy_reads_suite2p_like_files(tmp_path):
    import datetime

    stat = np.empty(3, dtype=object)
    for i in range(3):
        stat[i] = {
            "ypix": np.arange(5) + i,
            "xpix": np.arange(5, dtype=np.int32),
            "lam": np.linspace(0, 1, 5, dtype=np.float32),
            "med": [i, i + 1],
            "npix": np.int64(5),
            "radius": 2.5,
            "inmerge": False,
            "name": f"roi{i}",
        }
    np.save(tmp_path / "stat.npy", stat, allow_pickle=True)
    got = load_npy(tmp_path / "stat.npy")
    assert got.dtype == object and got.shape == (3,)
    for a, b in zip(got, stat):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert type(got[1]["ypix"]) is np.ndarray and got[1]["npix"] == 5
    ops = {"Ly": 512, "Lx": 512, "date_proc": datetime.datetime(2024, 1, 2, 3, 4, 5)}
    ops["meanImg"] = np.ones((4, 4), np.float32)
    np.save(tmp_path / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
    got_ops = load_npy(tmp_path / "ops.npy").item()
    assert got_ops["date_proc"] == ops["date_proc"] and got_ops["Ly"] == 512
    np.testing.assert_array_equal(got_ops["meanImg"], ops["meanImg"])
    # numeric arrays: numpy with allow_pickle=False, optionally memory-mapped
    F = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "F.npy", F)
    np.testing.assert_array_equal(load_npy(tmp_path / "F.npy"), F)
    mm = load_npy(tmp_path / "F.npy", mmap_mode="r")
    assert isinstance(mm, np.memmap)
    np.testing.assert_array_equal(mm, F)


def test_load_npy_refuses_code_and_bombs(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch PWNED",))

    arr = np.empty(1, dtype=object)
    arr[0] = {"stat": Evil()}
    # written by hand: np.save would not pickle os.system differently, but be explicit
    payload = pickle.dumps(arr, protocol=3)
    (tmp_path / "evil.npy").write_bytes(npy_bytes(OBJ_HEADER, payload))
    with pytest.raises(UnsafePickleError, match=r"refusing to load '(posix|os)\.system'"):
        load_npy(tmp_path / "evil.npy")
    assert not (tmp_path / "PWNED").exists()
    # SIMA's classes and scipy matrices are not on the .npy allow-list
    seq = P2 + glob("sima.sequence", "_Sequence_HDF5") + STOP
    (tmp_path / "sima.npy").write_bytes(npy_bytes(OBJ_HEADER, seq))
    with pytest.raises(UnsafePickleError, match="allow-list"):
        load_npy(tmp_path / "sima.npy")
    # the pickle must hold the array the header declares
    (tmp_path / "other.npy").write_bytes(npy_bytes(OBJ_HEADER, pickle.dumps([1, 2], protocol=2)))
    with pytest.raises(UnsafePickleError, match="header declares"):
        load_npy(tmp_path / "other.npy")
    # a numeric header declaring more data than the file holds: no allocation, named
    big = {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}
    (tmp_path / "big.npy").write_bytes(npy_bytes(big, b"\0" * 64))
    with pytest.raises(ValueError, match="truncated") as err:
        load_npy(tmp_path / "big.npy")
    assert str(tmp_path / "big.npy") in str(err.value)
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match=r"junk\.npy"):
        load_npy(tmp_path / "junk.npy")


NPY_ATTACKS = {
    "stat_dag": (npy_bytes(OBJ_HEADER, P4 + shared_dag(40) + STOP), "max_objects"),
    "stat_deep": (npy_bytes(OBJ_HEADER, P2 + deep_nesting(200_000) + STOP), "max_depth"),
    "stat_bytearray": (npy_bytes(OBJ_HEADER, bytearray_bomb(500_000_000)), None),
    "stat_reconstruct": (npy_bytes(OBJ_HEADER, reconstruct_bomb((10**10,), P4)), None),
    "stat_object_state": (
        npy_bytes(OBJ_HEADER, array_state_bomb((10**9,), "O8", MARK + NONE + LIST)),
        None,
    ),
    "stat_code": (npy_bytes(OBJ_HEADER, code_exec(P4)), None),
}


@pytest.mark.parametrize("case", sorted(NPY_ATTACKS))
def test_hostile_npy_is_refused_fast(tmp_path, case):
    data, limit = NPY_ATTACKS[case]
    path = tmp_path / "stat.npy"
    path.write_bytes(data)
    out = run_child("npy", path)
    assert_refused(out, path, limit)
    assert not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------------------
# what real files hold still loads, identically
# ---------------------------------------------------------------------------


def _sample_data():
    import scipy.sparse

    lil = scipy.sparse.lil_matrix((6, 5))
    lil[1, 2] = 0.5
    lil[4, 0] = 2.0
    objs = np.empty(3, dtype=object)
    objs[0], objs[1], objs[2] = np.arange(3), [1, 2], {"k": np.ones(2)}
    return {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "big_endian": np.arange(4, dtype=">f8"),
        "bool": np.array([True, False]),
        "complex": np.array([1 + 2j]),
        "zero_d": np.array(3.5),
        "empty": np.zeros((0, 4)),
        "strings": np.array(["ab", "c"]),
        "record": np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]),
        "objects": objs,
        "scalars": (np.float64(1.5), np.int32(7), np.bool_(True), 1 + 1j),
        "containers": [set([1, 2]), frozenset(["x"]), (), [], {}, slice(1, None, 2)],
        "bytes": (b"\x00\xff", bytearray(b"ab")),
        "lil": lil,
        "csr": scipy.sparse.csr_matrix(lil),
        "nested": {"a": [{"b": (np.zeros(2), "s")}]},
    }


def _same(a, b):
    import scipy.sparse

    if scipy.sparse.issparse(a) or scipy.sparse.issparse(b):
        from sima_fast._legacy import sparse_from_legacy

        a, b = sparse_from_legacy(a), sparse_from_legacy(b)
        return (a != b).nnz == 0 and a.shape == b.shape
    if isinstance(a, np.ndarray):
        if a.dtype == object:
            return (
                type(b) is np.ndarray
                and a.shape == b.shape
                and all(_same(x, y) for x, y in zip(a.flat, b.flat))
            )
        return (
            type(b) is np.ndarray
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.flags.f_contiguous == b.flags.f_contiguous
            and np.array_equal(a, b)
        )
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_real_pickles_load_identically(tmp_path, protocol):
    raw = pickle.dumps(_sample_data(), protocol=protocol)
    path = tmp_path / "data.pkl"
    path.write_bytes(raw)
    got = legacy_load(path)
    expected = pickle.loads(raw)  # what the unrestricted unpickler builds
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert _same(value, got[key]), (key, value, got[key])
    # Python 2 style: the array data a latin-1 str, as SIMA 1.x under Python 2 wrote
    p2 = array_state_bomb((2,), "f8", binstring("\0" * 8 + "\0\0\0\0\0\0\xf0?"))
    path.write_bytes(p2)
    np.testing.assert_array_equal(legacy_load(path), [0.0, 1.0])


def test_npy_object_arrays_of_arrays_round_trip(tmp_path):
    arr = np.empty((2, 2), dtype=object, order="F")
    arr[0, 0], arr[0, 1] = np.arange(3), np.ones((2, 2), dtype=np.int16)
    arr[1, 0], arr[1, 1] = [np.zeros(1)], None
    np.save(tmp_path / "o.npy", arr, allow_pickle=True)
    got = load_npy(tmp_path / "o.npy")
    assert _same(arr, got)

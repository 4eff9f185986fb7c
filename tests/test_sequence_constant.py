"""Constant sequences and sequence arithmetic: values, dtypes, NaN, validation, saving.

The reference for arithmetic is numpy's ufunc applied to the operands'
materialised native-dtype arrays (``read_chunk(0, T)``).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sima_fast import ImagingDataset, Sequence
from sima_fast._validate import ArgumentTypeError
from sima_fast.sequence import ArithmeticSequence, ConstantSequence, DescriptionError

OPS = {
    "+": (lambda a, b: a + b, np.add),
    "-": (lambda a, b: a - b, np.subtract),
    "*": (lambda a, b: a * b, np.multiply),
    "/": (lambda a, b: a / b, np.true_divide),
    "//": (lambda a, b: a // b, np.floor_divide),
}
DTYPES = ["uint8", "int8", "uint16", "int16", "int32", "uint32", "int64", "float32", "float64"]


def materialise(seq):
    return seq.read_chunk(0, len(seq))


# ------------------------------------------------------------------ constant


def test_constant_fills_every_frame_with_the_value_in_its_own_dtype():
    seq = Sequence.create("constant", value=np.iinfo("uint16").max, shape=(4, 2, 3, 5, 2))
    assert isinstance(seq, ConstantSequence)
    assert seq.shape == (4, 2, 3, 5, 2) and len(seq) == 4
    assert seq.dtype == np.dtype("int64")  # a Python int, as SIMA's dtype=type(value)
    block = materialise(seq)
    assert block.dtype == np.int64 and (block == 65535).all()
    frames = list(seq)
    assert len(frames) == 4 and all(f.shape == (2, 3, 5, 2) for f in frames)
    assert all(f.dtype == np.float64 and (f == 65535).all() for f in frames)
    assert seq.data_files() == [] and seq.children == ()


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (2.5, "float64"),
        (np.float32(0.25), "float32"),
        (np.uint16(7), "uint16"),
        (True, "uint8"),
        (np.int8(-3), "int8"),
    ],
)
def test_constant_dtype_follows_the_value(value, dtype):
    seq = Sequence.create("constant", value, (2, 1, 2, 2, 1))
    assert seq.dtype == np.dtype(dtype)
    assert (materialise(seq) == value).all()


def test_constant_nan_and_explicit_dtype():
    nan = Sequence.create("constant", float("nan"), (3, 1, 2, 2, 1))
    assert np.isnan(materialise(nan)).all()
    narrow = Sequence.create("constant", 65535, (1, 1, 1, 1, 1), dtype="uint16")
    assert narrow.dtype == np.uint16 and materialise(narrow).item() == 65535
    with pytest.raises(ValueError, match="cannot be stored exactly as dtype uint8"):
        Sequence.create("constant", 300, (1, 1, 1, 1, 1), dtype="uint8")
    with pytest.raises(ValueError, match="cannot be stored exactly"):
        Sequence.create("constant", 2.5, (1, 1, 1, 1, 1), dtype="int16")


def test_constant_zero_frames_is_allowed():
    seq = Sequence.create("constant", 1.0, (0, 1, 4, 4, 1))
    assert len(seq) == 0 and list(seq) == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"value": "3", "shape": (1, 1, 1, 1, 1)}, ArgumentTypeError, "value must be a real"),
        ({"value": 1 + 2j, "shape": (1, 1, 1, 1, 1)}, ArgumentTypeError, "value must be a real"),
        ({"value": None, "shape": (1, 1, 1, 1, 1)}, ArgumentTypeError, "value must be a real"),
        ({"value": np.zeros(2), "shape": (1, 1, 1, 1, 1)}, ArgumentTypeError, "value must be"),
        ({"value": 1, "shape": (1, 1, 1, 1)}, ValueError, "exactly 5 entries"),
        ({"value": 1, "shape": 5}, ArgumentTypeError, "shape must be a tuple of 5 ints"),
        ({"value": 1, "shape": (1, 1, 0, 1, 1)}, ValueError, r"shape\[2\] \(num_rows\)"),
        ({"value": 1, "shape": (-1, 1, 1, 1, 1)}, ValueError, r"shape\[0\] \(num_frames\)"),
        ({"value": 1, "shape": (1, 1.5, 1, 1, 1)}, ArgumentTypeError, r"shape\[1\]"),
        (
            {"value": 1, "shape": (1, 1, 1, 1, 1), "dtype": "complex64"},
            ArgumentTypeError,
            "dtype has dtype complex64",
        ),
    ],
)
def test_constant_validation_names_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        Sequence.create("constant", **kwargs)


@pytest.mark.parametrize("value", [65535, -2, 0.1, float("nan"), float("-inf"), np.float32(1 / 3)])
def test_constant_saves_as_a_description_and_reloads_exactly(tmp_path, value):
    seq = Sequence.create("constant", value, (3, 1, 4, 5, 1))
    savedir = str(tmp_path / "c.sima")
    ImagingDataset([seq], savedir=savedir)
    with open(os.path.join(savedir, "metadata.json"), encoding="utf-8") as fh:
        desc = json.load(fh)["sequences"][0]
    assert desc["fmt"] == "constant" and desc["shape"] == [3, 1, 4, 5, 1]
    assert not [name for name in os.listdir(savedir) if name.startswith("sequence_")]
    back = ImagingDataset.load(savedir).sequences[0]
    assert isinstance(back, ConstantSequence) and back.dtype == seq.dtype
    np.testing.assert_array_equal(materialise(back), materialise(seq))


@pytest.mark.parametrize(
    ("desc", "field"),
    [
        ({"fmt": "constant", "value": "1", "dtype": "<c8", "shape": [1, 1, 1, 1, 1]}, "dtype"),
        ({"fmt": "constant", "value": "x", "dtype": "<i8", "shape": [1, 1, 1, 1, 1]}, "value"),
        ({"fmt": "constant", "value": "1", "dtype": "<i8", "shape": [1, 1, 1]}, "shape"),
        ({"fmt": "constant", "value": "1", "dtype": "<i8"}, "shape"),
        ({"fmt": "constant", "value": 1, "dtype": "<i8", "shape": [1, 1, 1, 1, 1]}, "value"),
    ],
)
def test_malformed_constant_descriptions_are_refused_naming_the_field(desc, field):
    with pytest.raises(DescriptionError) as info:
        Sequence.fromdict(desc, None)
    assert info.value.field.endswith(field)


# ------------------------------------------------------------------ arithmetic


def test_scanbox_inversion_pattern():
    raw = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 1, 3, 4, 1) * 1000
    seq = Sequence.create("ndarray", raw)
    full = Sequence.create("constant", value=np.iinfo("uint16").max, shape=seq.shape)
    inverted = full - seq
    assert isinstance(inverted, ArithmeticSequence) and inverted.operation == "subtract"
    assert inverted.dtype == np.int64 and inverted.shape == seq.shape
    np.testing.assert_array_equal(materialise(inverted), 65535 - raw.astype(np.int64))
    assert inverted.describe() == "(Constant 65535 (int64) - Ndarray)"


@pytest.mark.parametrize("symbol", sorted(OPS))
def test_every_operator_is_lazy_and_matches_numpy(symbol):
    rng = np.random.default_rng(4)
    a = rng.normal(size=(5, 2, 3, 4, 2)).astype(np.float32)
    b = rng.normal(size=a.shape)
    b[1, 0, 0, 0, 0] = 0.0
    a[2, 1, 1, 1, 1] = np.nan
    sa, sb = Sequence.create("ndarray", a), Sequence.create("ndarray", b)
    op, ufunc = OPS[symbol]
    out = op(sa, sb)
    with np.errstate(all="ignore"):
        expected = ufunc(a, b)
    assert out.dtype == expected.dtype == np.float64
    np.testing.assert_array_equal(materialise(out), expected)
    np.testing.assert_array_equal(out.read_chunk(1, 3), expected[1:3])
    np.testing.assert_array_equal(out._get_frame(2), expected[2].astype(np.float64))
    assert np.isnan(out._get_frame(2)[1, 1, 1, 1])


def test_integer_division_by_zero_is_quiet_and_follows_numpy(recwarn):
    a = Sequence.create("ndarray", np.array([5, 0, 7], dtype=np.int16).reshape(3, 1, 1, 1, 1))
    z = Sequence.create("constant", np.int16(0), a.shape)
    np.testing.assert_array_equal(materialise(a // z).ravel(), [0, 0, 0])
    true = materialise(a / z).ravel()
    assert true.dtype == np.float64 and np.isinf(true[0]) and np.isnan(true[1])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@st.composite
def operands(draw):
    shape = draw(
        st.tuples(
            st.integers(1, 4), st.integers(1, 2), st.integers(1, 4), st.integers(1, 4),
            st.integers(1, 2),
        )
    )  # fmt: skip
    da, db = draw(st.sampled_from(DTYPES)), draw(st.sampled_from(DTYPES))

    def array(dtype):
        if np.dtype(dtype).kind == "f":
            elements = st.floats(-1e3, 1e3, width=np.dtype(dtype).itemsize * 8) | st.just(np.nan)
            return draw(hnp.arrays(dtype, shape, elements=elements))
        return draw(hnp.arrays(dtype, shape))

    return array(da), array(db), draw(st.sampled_from(sorted(OPS)))


@settings(max_examples=40, deadline=None)
@given(operands())
def test_arithmetic_matches_numpy_on_materialised_arrays(case):
    a, b, symbol = case
    sa, sb = Sequence.create("ndarray", a), Sequence.create("ndarray", b)
    op, ufunc = OPS[symbol]
    with np.errstate(all="ignore"):
        expected = ufunc(a, b)
    out = op(sa, sb)
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(materialise(out), expected)
    frames = np.stack(list(out)) if len(out) else np.empty((0,))
    np.testing.assert_array_equal(frames, expected.astype(np.float64))


def test_arithmetic_views_compose_with_other_views():
    a = Sequence.create("ndarray", np.arange(40.0).reshape(2, 1, 4, 5, 1))
    c = Sequence.create("constant", 1.0, a.shape)
    expr = (a + c) * (a - c)
    np.testing.assert_array_equal(materialise(expr), (materialise(a) ** 2) - 1)
    sub = expr[:, :, 1:3]
    np.testing.assert_array_equal(materialise(sub), materialise(expr)[:, :, 1:3])
    joined = Sequence.join(expr, a)
    assert joined.shape == (2, 1, 4, 5, 2)


def test_operands_are_validated_and_named():
    a = Sequence.create("ndarray", np.zeros((2, 1, 3, 3, 1)))
    b = Sequence.create("constant", 0.0, (2, 1, 3, 4, 1))
    with pytest.raises(ValueError, match=r"left operand Ndarray has shape \(2, 1, 3, 3, 1\)") as e:
        a - b
    assert "right operand Constant 0.0 (float64) has shape (2, 1, 3, 4, 1)" in str(e.value)
    for other in (3, np.zeros((2, 1, 3, 3, 1)), "x"):
        with pytest.raises(ArgumentTypeError, match="right operand must be a Sequence"):
            a - other
    with pytest.raises(ArgumentTypeError, match="left operand must be a Sequence"):
        ArithmeticSequence("add", 2, a)
    with pytest.raises(ValueError, match="operation must be one of"):
        ArithmeticSequence("power", a, a)


def test_arithmetic_saves_as_a_description_and_reloads(tmp_path):
    raw = np.arange(60, dtype=np.uint16).reshape(3, 1, 4, 5, 1)
    path = tmp_path / "raw.bin"
    raw.tofile(path)
    seq = Sequence.create("memmap", str(path), raw.shape, "tzyxc", dtype="uint16")
    expr = Sequence.create("constant", 100, seq.shape) - seq
    savedir = str(tmp_path / "a.sima")
    ImagingDataset([expr], savedir=savedir)
    with open(os.path.join(savedir, "metadata.json"), encoding="utf-8") as fh:
        desc = json.load(fh)["sequences"][0]
    assert desc["fmt"] == "arithmetic" and desc["operation"] == "subtract"
    assert desc["left"]["fmt"] == "constant" and desc["right"]["fmt"] == "memmap"
    ds = ImagingDataset.load(savedir)
    back = ds.sequences[0]
    assert isinstance(back, ArithmeticSequence) and back.dtype == np.int64
    np.testing.assert_array_equal(materialise(back), 100 - raw.astype(np.int64))
    assert back.data_files() == [str(path)]
    np.testing.assert_allclose(ds.time_averages, (100 - raw.astype(float)).mean(0))


def test_malformed_arithmetic_descriptions_are_refused():
    const = {"fmt": "constant", "value": "1", "dtype": "<i8", "shape": [1, 1, 1, 1, 1]}
    other = {"fmt": "constant", "value": "1", "dtype": "<i8", "shape": [1, 1, 2, 1, 1]}
    with pytest.raises(DescriptionError, match="operation"):
        Sequence.fromdict(
            {"fmt": "arithmetic", "operation": "pow", "left": const, "right": const}, None
        )
    with pytest.raises(DescriptionError, match="shapes differ"):
        Sequence.fromdict(
            {"fmt": "arithmetic", "operation": "add", "left": const, "right": other}, None
        )
    with pytest.raises(DescriptionError, match="right"):
        Sequence.fromdict({"fmt": "arithmetic", "operation": "add", "left": const}, None)


# ------------------------------------------------------------------ SIMA 1.x directories


def _sima_classes(monkeypatch, *names):
    """Stand-ins for SIMA's classes, importable as ``sima.sequence.<name>`` while pickling."""
    import sys
    import types

    package = types.ModuleType("sima")
    module = types.ModuleType("sima.sequence")
    package.sequence = module
    monkeypatch.setitem(sys.modules, "sima", package)
    monkeypatch.setitem(sys.modules, "sima.sequence", module)
    classes = {}
    for name in names:
        cls = type(name, (), {"__module__": "sima.sequence"})
        setattr(module, name, cls)
        classes[name] = cls
    return classes


@pytest.mark.parametrize(
    ("sima_name", "ufunc"),
    [
        ("_SubtractWrapperSequence", np.subtract),
        ("_AddWrapperSequence", np.add),
        ("_MultiplyWrapperSequence", np.multiply),
        ("_DivideWrapperSequence", np.true_divide),
        ("_TrueDivideWrapperSequence", np.true_divide),
        ("_FloorDivideWrapperSequence", np.floor_divide),
    ],
)
def test_sima_1x_constant_and_math_records_open(tmp_path, monkeypatch, sima_name, ufunc):
    import pickle

    cls = _sima_classes(monkeypatch, sima_name, "_Sequence_constant", "_Sequence_ndarray")
    raw = (np.arange(24, dtype=np.uint16).reshape(2, 1, 3, 4, 1) + 1) * 7
    record = {
        "__class__": cls[sima_name],
        "base": {"__class__": cls["_Sequence_constant"], "value": 65535, "shape": raw.shape},
        "other": {"__class__": cls["_Sequence_ndarray"], "array": raw},
    }
    savedir = tmp_path / "scanbox.sima"
    savedir.mkdir()
    with open(savedir / "sequences.pkl", "wb") as fh:
        pickle.dump([record], fh, protocol=2)
    with open(savedir / "dataset.pkl", "wb") as fh:
        pickle.dump({"channel_names": ["0"], "savedir": str(savedir)}, fh, protocol=2)
    monkeypatch.undo()  # SIMA's names are gone again: nothing of them is imported to load
    ds = ImagingDataset.load(str(savedir))
    seq = ds.sequences[0]
    assert isinstance(seq, ArithmeticSequence)
    np.testing.assert_array_equal(materialise(seq), ufunc(np.int64(65535), raw))

"""The shared argument checks (sima_fast._validate) and their use across the package.

Wrong types raise ArgumentTypeError, which is both a TypeError and a
ValueError; wrong values of the right type raise a plain ValueError. Every
message starts with the argument's name.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import sima_fast as sima
from sima_fast._validate import (
    ArgumentTypeError,
    check_bool,
    check_channel,
    check_int,
    check_real,
    resolve_channel,
)
from sima_fast.misc import simulate_movie
from sima_fast.online import OnlineExtractor
from sima_fast.ROI import ROI, ROIList
from sima_fast.segment import SmoothROIBoundaries, SparseROIsFromMasks
from sima_fast.spikes import deconvolve


def _type_error(func, *args, match: str, **kwargs) -> ArgumentTypeError:
    with pytest.raises(ArgumentTypeError, match=match) as info:
        func(*args, **kwargs)
    return info.value


def _value_error(func, *args, match: str, **kwargs) -> ValueError:
    """A ValueError that is *not* a type error."""
    with pytest.raises(ValueError, match=match) as info:
        func(*args, **kwargs)
    assert not isinstance(info.value, TypeError)
    return info.value


def test_argument_type_error_is_both_type_and_value_error():
    assert issubclass(ArgumentTypeError, TypeError)
    assert issubclass(ArgumentTypeError, ValueError)
    for caught in (TypeError, ValueError):
        with pytest.raises(caught):
            check_int("n", "3")


# --------------------------------------------------------------------------- check_int


@pytest.mark.parametrize(
    "value",
    [0, 7, np.int8(7), np.uint8(7), np.int32(7), np.int64(7), np.uint64(7), 2**70],
)
def test_check_int_accepts_python_and_numpy_integers(value):
    out = check_int("n", value)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize(
    "value", [True, False, np.bool_(True), 1.5, 2.0, np.float32(2.0), "2", None, [1], 1j]
)
def test_check_int_rejects_other_types(value):
    err = _type_error(check_int, "n_processes", value, low=1, match="n_processes")
    assert str(err) == f"n_processes must be an integer >= 1, got {value!r}"


def test_check_int_integral_float():
    assert check_int("num_pcs", 3.0, integral_float=True) == 3
    assert type(check_int("num_pcs", np.float32(3.0), integral_float=True)) is int
    for bad in (2.5, float("nan"), float("inf"), True, np.bool_(False)):
        _type_error(check_int, "num_pcs", bad, integral_float=True, match="num_pcs")
    _type_error(check_int, "num_pcs", 3.0, match="num_pcs must be an integer")


def test_check_int_bounds():
    assert check_int("k", 1, low=1, high=3) == 1
    assert check_int("k", 3, low=1, high=3) == 3
    assert check_int("k", -5) == -5
    err = _value_error(check_int, "k", 0, low=1, match="k")
    assert str(err) == "k must be >= 1, got 0"
    err = _value_error(check_int, "k", 4, high=3, match="k")
    assert str(err) == "k must be <= 3, got 4"
    err = _value_error(check_int, "k", np.int16(9), low=1, high=3, match="k")
    assert str(err) == f"k must be in [1, 3], got {np.int16(9)!r}"
    _value_error(check_int, "k", 0.0, low=1, integral_float=True, match="k must be >= 1")


# --------------------------------------------------------------------------- check_real


@pytest.mark.parametrize("value", [0, 2, 0.25, np.float32(0.25), np.float64(0.25), np.int64(2)])
def test_check_real_accepts_numbers(value):
    out = check_real("x", value)
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize("value", [True, np.bool_(False), "0.5", None, [0.5], 1j])
def test_check_real_rejects_other_types(value):
    err = _type_error(check_real, "threshold", value, match="threshold")
    assert str(err) == f"threshold must be a real number, got {value!r}"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -np.inf, np.float32("nan")])
def test_check_real_rejects_non_finite_values(value):
    _value_error(check_real, "gain", value, match="gain must be a finite real number")


def test_check_real_bounds_and_none():
    assert check_real("t", 0.0, low=0.0, high=1.0) == 0.0
    assert check_real("t", 1, low=0.0, high=1.0) == 1.0
    err = _value_error(check_real, "t", 1.5, low=0.0, high=1.0, match="t")
    assert str(err) == "t must be in [0, 1], got 1.5"
    _value_error(check_real, "t", -0.5, low=0.0, match=r"t must be >= 0, got -0\.5")
    _value_error(check_real, "t", 2.5, high=2.0, match=r"t must be <= 2, got 2\.5")
    assert check_real("smooth_size", None, allow_none=True) is None
    _type_error(check_real, "smooth_size", None, match="must be a real number, got None")
    _type_error(check_real, "smooth_size", "big", allow_none=True, match="or None")


# --------------------------------------------------------------------------- check_bool


def test_check_bool():
    assert check_bool("verbose", True) is True
    assert check_bool("verbose", np.bool_(False)) is False
    for bad in (0, 1, np.int8(1), "yes", None, 1.0):
        err = _type_error(check_bool, "verbose", bad, match="verbose")
        assert str(err) == f"verbose must be True or False, got {bad!r}"


# --------------------------------------------------------------------------- channels


def test_check_channel():
    assert check_channel("channel", 1) == 1
    assert type(check_channel("channel", np.int64(2))) is int
    assert check_channel("channel", -1) == -1
    assert check_channel("channel", "GCaMP") == "GCaMP"
    for bad in (1.0, True, np.bool_(True), None, [0]):
        _type_error(check_channel, "signal_channel", bad, match="signal_channel must be an int")


def test_resolve_channel():
    names = ["GCaMP", "tdTomato"]
    assert resolve_channel(np.uint8(1), names) == 1
    assert resolve_channel(-2, names) == 0
    assert resolve_channel("GCaMP", names) == 0
    _value_error(resolve_channel, "red", names, match=r"no channel named 'red'.*tdTomato")
    _value_error(resolve_channel, 2, names, match=r"channel index 2 is out of range.*0\.\.1")
    _value_error(resolve_channel, -3, names, match="out of range")
    for bad in (1.0, True, np.bool_(False), None):
        _type_error(resolve_channel, bad, names, match=r"channel must be .*GCaMP")


# --------------------------------------------------------------------------- the package


def _small_dataset():
    movie = np.random.default_rng(0).random((4, 1, 5, 6, 1)).astype(np.float32)
    return sima.ImagingDataset([sima.Sequence.create("ndarray", movie)], None)


def _roi_list():
    mask = np.zeros((1, 5, 6), dtype=bool)
    mask[0, 1:3, 1:3] = True
    return ROIList([ROI(mask=mask)])


def _online(**kwargs):
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 1:3] = True
    return OnlineExtractor([ROI(mask=mask)], (4, 5), warmup=False, **kwargs)


#: One integer argument of each part of the package, called with a given value.
INTEGER_ARGUMENTS = {
    "ImagingDataset.extract": (
        "n_processes",
        lambda v: _small_dataset().extract(_roi_list(), n_processes=v, save_summary=False),
    ),
    "spikes.deconvolve": (
        "n_processes",
        lambda v: deconvolve(np.ones(20), 0.9, 0.3, n_processes=v),
    ),
    "segment.SparseROIsFromMasks": ("n_processes", lambda v: SparseROIsFromMasks(n_processes=v)),
    "segment.SmoothROIBoundaries": ("n_processes", lambda v: SmoothROIBoundaries(n_processes=v)),
    "misc.simulate_movie": ("num_frames", lambda v: simulate_movie(num_frames=v)),
    "online.OnlineExtractor": ("max_frames", lambda v: _online(max_frames=v)),
}


@pytest.mark.parametrize("where", sorted(INTEGER_ARGUMENTS))
@pytest.mark.parametrize("bad", ["2", True, 1.5, [2]])
def test_a_wrong_type_is_the_same_error_everywhere(where, bad):
    name, call = INTEGER_ARGUMENTS[where]
    _type_error(call, bad, match=re.escape(f"{name} must be an integer >= 1, got {bad!r}"))


@pytest.mark.parametrize("where", sorted(INTEGER_ARGUMENTS))
@pytest.mark.parametrize("bad", [0, -3, np.int64(0)])
def test_a_value_out_of_range_is_the_same_error_everywhere(where, bad):
    name, call = INTEGER_ARGUMENTS[where]
    _value_error(call, bad, match=f"{name} must be >= 1, got")

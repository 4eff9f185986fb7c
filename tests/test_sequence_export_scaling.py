"""to8bit / to16bit and the full-range stretch of export_averages, as SIMA computes them."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sima_fast as sima
from sima_fast._validate import ArgumentTypeError
from sima_fast.misc.convert import to8bit, to16bit

RNG = np.random.default_rng(7)


def sima_formula(values, bits):
    """SIMA's to8bit/to16bit written plainly: (2**bits - 1) * v / nanmax(v), then truncated.

    Where SIMA's cast is undefined (NaN, values outside the range) the
    reference saturates, as sima_fast does.
    """
    v = np.array(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    m = finite.max() if finite.size else np.nan
    if np.isfinite(m) and m > 0:
        v = (2**bits - 1) * v / m
    v = np.where(np.isnan(v), 0, v)
    v = np.clip(v, 0, 2**bits - 1)
    return np.trunc(v).astype(np.uint8 if bits == 8 else np.uint16)


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=4, max_side=6),
        elements=st.floats(-50, 1e6) | st.just(np.nan),
    )
)
def test_to8bit_and_to16bit_follow_the_formula(values):
    a8, a16 = to8bit(values), to16bit(values)
    assert a8.dtype == np.uint8 and a16.dtype == np.uint16
    assert a8.shape == a16.shape == values.shape
    np.testing.assert_array_equal(a8, sima_formula(values, 8))
    np.testing.assert_array_equal(a16, sima_formula(values, 16))


@pytest.mark.parametrize("convert,top", [(to8bit, 255), (to16bit, 65535)])
def test_multiplication_comes_first_as_in_sima(convert, top):
    # SIMA computes top * v / max; the factor form v * (top / max) differs in the
    # last bit often enough to change the truncated integer (both forms fall
    # short of top at the maximum for some maxima: that is SIMA's result too)
    differ = 0
    for m in range(100, 3000, 13):  # integer images, as a uint16 movie gives
        values = np.arange(m + 1, dtype=np.float64)
        sima_values = np.trunc(top * values / m)
        differ += int((np.trunc(values * (top / m)) != sima_values).sum())
        np.testing.assert_array_equal(convert(values), sima_values)
    assert differ > 0  # the two forms do differ on these images


def test_integer_and_list_inputs_and_special_values():
    np.testing.assert_array_equal(to8bit([1, 2, 4]), [63, 127, 255])
    np.testing.assert_array_equal(to16bit(np.array([0, 3], dtype=np.uint16)), [0, 65535])
    np.testing.assert_array_equal(to8bit(np.zeros((2, 2))), np.zeros((2, 2), np.uint8))
    np.testing.assert_array_equal(to8bit([-5.0, np.nan, 10.0]), [0, 0, 255])
    np.testing.assert_array_equal(to8bit([np.inf, 1.0, 2.0]), [255, 127, 255])
    np.testing.assert_array_equal(to8bit([np.nan, np.nan]), [0, 0])
    assert to8bit(np.float64(3.0)) == 255  # 0-d in, 0-d out
    assert to8bit(np.float64(3.0)).shape == ()


@pytest.mark.parametrize("bad", [["a", "b"], [1 + 2j], np.array([None, 1.0], dtype=object)])
def test_non_real_input_is_refused(bad):
    with pytest.raises(ArgumentTypeError, match=r"^array must be an array of real numbers"):
        to8bit(bad)
    with pytest.raises(ArgumentTypeError, match=r"^array must be an array of real numbers"):
        to16bit(bad)


def test_reexported_names_are_the_same_functions():
    import sima_fast.misc.convert as convert

    assert sorted(convert.__all__) == ["to16bit", "to8bit"]
    assert convert.to8bit is to8bit


# --------------------------------------------------------------------------
# export_averages
# --------------------------------------------------------------------------


def dataset(scale=1.0):
    a = RNG.uniform(0, 3000, size=(9, 2, 7, 8, 2)) * scale
    a[3, 0, 2, :, 1] = np.nan
    return sima.ImagingDataset([sima.Sequence.create("ndarray", a)], None, ["g", "r"])


@pytest.mark.parametrize("fmt,convert", [("TIFF8", to8bit), ("TIFF16", to16bit)])
@pytest.mark.parametrize("projection", ["average", "std"])
def test_tiff_averages_are_to8bit_to16bit_of_each_channel(tmp_path, fmt, convert, projection):
    ds = dataset()
    paths = [str(tmp_path / f"{c}.tif") for c in ds.channel_names]
    ds.export_averages(paths, fmt=fmt, projection_type=projection)  # scale_values=True
    proj = ds.time_averages if projection == "average" else ds.time_std
    for c, path in enumerate(paths):
        np.testing.assert_array_equal(tifffile.imread(path), convert(proj[..., c]))


def test_hdf5_averages_are_to16bit_of_all_channels(tmp_path):
    ds = dataset()
    ds.export_averages(str(tmp_path / "avg.h5"), fmt="HDF5")
    with h5py.File(tmp_path / "avg.h5", "r") as f:
        np.testing.assert_array_equal(f["time_average"][()], to16bit(ds.time_averages))


@pytest.mark.parametrize("fmt,bits", [("TIFF8", 8), ("TIFF16", 16)])
def test_unscaled_averages_saturate_instead_of_wrapping(tmp_path, fmt, bits):
    ds = dataset(scale=30.0)  # means near 45000: above 255, and some std above 65535 / 30
    paths = [str(tmp_path / f"{c}.tif") for c in ds.channel_names]
    ds.export_averages(paths, fmt=fmt, scale_values=False)
    top = 2**bits - 1
    for c, path in enumerate(paths):
        got = tifffile.imread(path)
        want = np.trunc(np.clip(ds.time_averages[..., c], 0, top)).astype(got.dtype)
        np.testing.assert_array_equal(got, want)
    if bits == 8:
        assert (tifffile.imread(paths[0]) == 255).all()  # SIMA would wrap modulo 256


@pytest.mark.parametrize("fmt,bits", [("TIFF8", 8), ("TIFF16", 16)])
def test_tiff_averages_stretch_multiplying_first(tmp_path, fmt, bits):
    top = 2**bits - 1
    # an integer image on which v * (top / max) and top * v / max truncate differently
    m = next(
        m
        for m in range(100, 5000)
        if (np.trunc(np.arange(m + 1) * (top / m)) != np.trunc(top * np.arange(m + 1) / m)).any()
    )
    image = np.zeros(m + 1 + (-(m + 1)) % 8)  # padded to 8 columns
    image[: m + 1] = np.arange(m + 1)
    frames = image.reshape(1, 1, -1, 8, 1)
    ds = sima.ImagingDataset([sima.Sequence.create("ndarray", frames)], None)
    ds.export_averages([str(tmp_path / "a.tif")], fmt=fmt)
    got = tifffile.imread(tmp_path / "a.tif")
    np.testing.assert_array_equal(got, np.trunc(top * frames[0, 0, :, :, 0] / m))

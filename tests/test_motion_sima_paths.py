"""SIMA's motion module paths (frame_align, dftreg, motion) and their functions.

Every function is checked against a slow, loop-based numpy reference written
here, on small fixed cases and hypothesis-drawn shapes, plus its edge cases
and its errors.
"""

from __future__ import annotations

import importlib
import itertools
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sima_fast.motion
from sima_fast._validate import ArgumentTypeError
from sima_fast.compat import install_sima_alias, uninstall_sima_alias
from sima_fast.motion import frame_align
from sima_fast.motion.frame_align import (
    Struct,
    align_cross_correlation,
    base_alignment,
    pyr_down_3d,
    pyramid_align,
    shifted_corr,
    within_bounds,
)
from sima_fast.motion.motion import add_with_offset

# ---------------------------------------------------------------------------
# module paths

PATHS = {
    "sima_fast.motion.frame_align": [
        "PlaneTranslation2D",
        "VolumeTranslation",
        "Struct",
        "shifted_corr",
        "pyr_down_3d",
        "base_alignment",
        "within_bounds",
        "pyramid_align",
        "align_cross_correlation",
    ],
    "sima_fast.motion.dftreg": ["DiscreteFourier2D"],
    "sima_fast.motion.motion": [
        "MotionEstimationStrategy",
        "ResonantCorrection",
        "add_with_offset",
    ],
}


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in PATHS.items() for n in names])
def test_every_name_imports_from_its_path(module, name):
    mod = importlib.import_module(module)
    assert name in mod.__all__
    obj = getattr(mod, name)
    if hasattr(sima_fast.motion, name):  # strategies: the very same classes
        assert obj is getattr(sima_fast.motion, name)


def test_submodules_are_attributes_of_the_package():
    assert sima_fast.motion.frame_align is frame_align
    assert sima_fast.motion.dftreg.DiscreteFourier2D is sima_fast.motion.DiscreteFourier2D
    assert sima_fast.motion.motion.add_with_offset is add_with_offset
    with pytest.raises(AttributeError, match="no_such"):
        sima_fast.motion.no_such  # noqa: B018


@pytest.fixture
def alias():
    uninstall_sima_alias()
    install_sima_alias()
    yield
    uninstall_sima_alias()
    for name in [n for n in sys.modules if n == "sima" or n.startswith("sima.")]:
        del sys.modules[name]


def test_sima_paths_through_the_alias(alias):
    import sima.motion.frame_align
    from sima.motion.dftreg import DiscreteFourier2D
    from sima.motion.frame_align import pyramid_align as pa
    from sima.motion.motion import MotionEstimationStrategy
    from sima.motion.motion import add_with_offset as awo

    assert pa is pyramid_align and awo is add_with_offset
    assert DiscreteFourier2D is sima_fast.motion.DiscreteFourier2D
    assert MotionEstimationStrategy is sima_fast.motion.MotionEstimationStrategy
    assert sima.motion.frame_align.shifted_corr is shifted_corr


def test_struct_holds_attributes():
    s = Struct(a=1, b="x")
    assert (s.a, s.b) == (1, "x")
    s.c = 2.5
    assert vars(s) == {"a": 1, "b": "x", "c": 2.5}


# ---------------------------------------------------------------------------
# slow references


def ref_shifted_corr(reference, image, d):
    """Pair image[p] with reference[p + d] one pixel at a time."""
    spatial = image.shape[:-1]
    per_channel = []
    for c in range(image.shape[-1]):
        rs, ims = [], []
        for p in itertools.product(*[range(n) for n in spatial]):
            q = tuple(pi + di for pi, di in zip(p, d))
            if all(0 <= qi < n for qi, n in zip(q, reference.shape[:-1])):
                rs.append(reference[(*q, c)])
                ims.append(image[(*p, c)])
        r = np.array(rs, dtype=float)
        i = np.array(ims, dtype=float)
        r = r - (np.nanmean(r) if np.isfinite(r).any() else 0.0)
        i = i - (np.nanmean(i) if np.isfinite(i).any() else 0.0)
        r[np.isnan(r)] = 0.0
        i[np.isnan(i)] = 0.0
        den = np.sqrt(np.sum(r * r) * np.sum(i * i))
        per_channel.append(np.sum(r * i) / den if den > 0 else np.nan)
    per_channel = np.array(per_channel)
    return np.nan if np.isnan(per_channel).all() else np.nanmean(per_channel)


def ref_ncc(a, b, d):
    """Pearson correlation of a[p + d] with b[p] over pairs both finite (SIMA's rules)."""
    xs, ys = [], []
    for p in itertools.product(*[range(n) for n in b.shape]):
        q = tuple(pi + di for pi, di in zip(p, d))
        if all(0 <= qi < n for qi, n in zip(q, a.shape)):
            if np.isfinite(a[q]) and np.isfinite(b[p]):
                xs.append(a[q])
                ys.append(b[p])
    n = len(xs)
    if n < 0.25 * np.prod(np.maximum(a.shape, b.shape)) or n == 0:
        return 0.0
    x = np.array(xs) - np.mean(xs)
    y = np.array(ys) - np.mean(ys)
    den = np.sqrt(np.sum(x * x) * np.sum(y * y))
    if den < 1e-6:
        return 0.0
    return float(np.sum(x * y) / den)


def ref_align(p1, p2, bounds=None):
    """Brute force over every displacement; the first (lowest) maximum wins."""
    best, best_d = -np.inf, None
    ranges = [range(-(nb - 1), na) for na, nb in zip(p1.shape[:-1], p2.shape[:-1])]
    for d in itertools.product(*ranges):
        if bounds is not None and not all(lo <= v < hi for v, lo, hi in zip(d, *bounds)):
            continue
        v = np.mean([ref_ncc(p1[..., c], p2[..., c], d) for c in range(p1.shape[-1])])
        if v > best:
            best, best_d = v, d
    return np.array(best_d), best


def ref_pyr_down(image, axes):
    """Gaussian (sigma 1.05, radius 4, mirrored edges) along each axis, then every other pixel."""
    x = np.arange(-4, 5)
    w = np.exp(-(x**2) / (2 * 1.05**2))
    w /= w.sum()
    out = image.astype(float)
    for ax in axes:
        moved = np.moveaxis(out, ax, 0)
        padded = np.pad(moved, [(4, 4)] + [(0, 0)] * (moved.ndim - 1), mode="symmetric")
        n = moved.shape[0]
        smooth = np.zeros_like(moved)
        for k in range(n):
            for j, wj in enumerate(w):
                smooth[k] += wj * padded[k + j]
        out = np.moveaxis(smooth, 0, ax)
    return out[tuple(slice(None, None, 2) if i in axes else slice(None) for i in range(out.ndim))]


def ref_pyramid(ref, tgt, min_shape, levels, bounds):
    halve = np.minimum(ref.shape[:-1], tgt.shape[:-1]) >= 2 * np.asarray(min_shape)
    if levels <= 0 or not halve.any():
        return ref_align(ref, tgt, bounds)[0]
    axes = tuple(np.flatnonzero(halve))
    f = 1 + halve.astype(int)
    cb = None if bounds is None else [np.floor(bounds[0] / f), np.ceil(bounds[1] / f)]
    coarse = ref_pyramid(
        ref_pyr_down(ref, axes), ref_pyr_down(tgt, axes), min_shape, levels - 1, cb
    )
    best, best_d = -np.inf, None
    for step in itertools.product(*[(-1, 0, 1) if h else (0,) for h in halve]):
        d = f * coarse + np.array(step)
        if bounds is not None and not all(lo <= v < hi for v, lo, hi in zip(d, *bounds)):
            continue
        c = ref_shifted_corr(ref, tgt, d)
        if best_d is None or c > best:
            best, best_d = c, d
    return best_d


def smooth_image(rng, shape, channels=1, sigma=1.5):
    from scipy import ndimage

    img = rng.normal(size=(*shape, channels))
    return ndimage.gaussian_filter(img, [sigma] * len(shape) + [0])


# ---------------------------------------------------------------------------
# shifted_corr


def test_shifted_corr_fixed_volume_is_one_at_the_true_shift():
    rng = np.random.default_rng(3)
    vol = rng.normal(size=(5, 12, 14, 2))
    d = np.array([1, -3, 4])
    moved = np.roll(vol, tuple(-d), axis=(0, 1, 2))  # moved[p] == vol[p + d] (circular)
    assert shifted_corr(vol, moved, d) == pytest.approx(1.0)
    assert shifted_corr(vol, moved, [0, 0, 0]) < 0.5


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    shape_a=st.tuples(st.integers(2, 6), st.integers(2, 7)),
    shape_b=st.tuples(st.integers(2, 6), st.integers(2, 7)),
    channels=st.integers(1, 3),
    nan_fraction=st.sampled_from([0.0, 0.2]),
    data=st.data(),
)
def test_shifted_corr_matches_the_reference(seed, shape_a, shape_b, channels, nan_fraction, data):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(*shape_a, channels))
    b = rng.normal(size=(*shape_b, channels))
    a[rng.random(a.shape) < nan_fraction] = np.nan
    b[rng.random(b.shape) < nan_fraction] = np.nan
    d = [data.draw(st.integers(-(nb - 1), na - 1)) for na, nb in zip(shape_a, shape_b)]
    a0, b0 = a.copy(), b.copy()
    got = shifted_corr(a, b, d)
    want = ref_shifted_corr(a, b, d)
    if np.isnan(want):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(want, abs=1e-9)
    np.testing.assert_array_equal(a, a0)  # inputs untouched (SIMA's modified its reference)
    np.testing.assert_array_equal(b, b0)


def test_shifted_corr_constant_channels():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6, 2))
    b = a.copy()
    b[..., 1] = 7.0  # constant channel: left out of the mean
    assert shifted_corr(a, b, [0, 0]) == pytest.approx(1.0)
    b[..., 0] = 3.0
    assert np.isnan(shifted_corr(a, b, [0, 0]))


def test_shifted_corr_errors():
    a = np.zeros((4, 5, 1))
    with pytest.raises(ValueError, match="no overlap"):
        shifted_corr(a, a, [4, 0])
    with pytest.raises(ArgumentTypeError, match="displacement must be a sequence of 2"):
        shifted_corr(a, a, [1, 2, 3])
    with pytest.raises(ArgumentTypeError, match=r"displacement\[0\]"):
        shifted_corr(a, a, [0.5, 0])
    with pytest.raises(ValueError, match="same number of axes and of channels"):
        shifted_corr(a, np.zeros((4, 5, 2)), [0, 0])
    with pytest.raises(ArgumentTypeError, match="reference must be a numeric array"):
        shifted_corr("abc", a, [0, 0])
    with pytest.raises(ValueError, match="spatial axis and a channel axis"):
        shifted_corr(np.zeros(4), np.zeros(4), [])


# ---------------------------------------------------------------------------
# align_cross_correlation / base_alignment


def test_align_recovers_known_shifts_2d_and_3d():
    rng = np.random.default_rng(5)
    img = smooth_image(rng, (30, 36), channels=2)
    d = np.array([4, -7])
    moved = np.roll(img, tuple(-d), axis=(0, 1))
    got, corr = align_cross_correlation(img, moved)
    np.testing.assert_array_equal(got, d)
    assert corr == pytest.approx(shifted_corr(img, moved, d))
    vol = smooth_image(rng, (6, 20, 22))
    d3 = np.array([-1, 3, 5])
    np.testing.assert_array_equal(
        base_alignment(vol, np.roll(vol, tuple(-d3), axis=(0, 1, 2))), d3
    )


def test_align_crops_of_different_shapes():
    rng = np.random.default_rng(6)
    big = smooth_image(rng, (40, 40))
    crop = big[9:33, 4:30]  # crop[p] == big[p + (9, 4)]
    np.testing.assert_array_equal(base_alignment(big, crop), [9, 4])
    np.testing.assert_array_equal(base_alignment(crop, big), [-9, -4])


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    shape_a=st.lists(st.integers(2, 6), min_size=1, max_size=3),
    channels=st.integers(1, 2),
    nan_fraction=st.sampled_from([0.0, 0.15]),
    data=st.data(),
)
def test_align_matches_brute_force(seed, shape_a, channels, nan_fraction, data):
    rng = np.random.default_rng(seed)
    shape_b = [data.draw(st.integers(2, 6)) for _ in shape_a]
    a = rng.normal(size=(*shape_a, channels))
    b = rng.normal(size=(*shape_b, channels))
    a[rng.random(a.shape) < nan_fraction] = np.nan
    b[rng.random(b.shape) < nan_fraction] = np.nan
    bounds = None
    if data.draw(st.booleans()):
        lo = [data.draw(st.integers(-(nb - 1), na - 1)) for na, nb in zip(shape_a, shape_b)]
        bounds = np.array([lo, [v + data.draw(st.integers(1, 4)) for v in lo]])
    got, corr = align_cross_correlation(a, b, bounds)
    _, best = ref_align(a, b, bounds)
    assert corr == pytest.approx(best, abs=1e-9)
    # the displacement returned scores the maximum (ties may pick either)
    assert np.mean([ref_ncc(a[..., c], b[..., c], got) for c in range(channels)]) == pytest.approx(
        best, abs=1e-9
    )
    if bounds is not None:
        assert within_bounds(got, bounds)
    assert got.dtype == np.int64 and got.shape == (len(shape_a),)


def test_align_bounds_restrict_the_search():
    rng = np.random.default_rng(8)
    img = smooth_image(rng, (24, 24))
    moved = np.roll(img, (-5, 2), axis=(0, 1))
    np.testing.assert_array_equal(base_alignment(img, moved), [5, -2])
    got = base_alignment(img, moved, [[-2, -2], [3, 3]])  # true shift excluded
    assert -2 <= got[0] < 3 and -2 <= got[1] < 3
    np.testing.assert_array_equal(base_alignment(img, moved, [[5, -2], [6, -1]]), [5, -2])


def test_align_constant_images_and_tiny_overlaps_score_zero():
    flat = np.ones((6, 6, 1))
    d, corr = align_cross_correlation(flat, flat)
    assert corr == 0.0 and d.shape == (2,)
    # a displacement overlapping a single row cannot win however well it matches
    a = np.random.default_rng(2).normal(size=(8, 8, 1))
    b = np.random.default_rng(9).normal(size=(8, 8, 1))
    b[0] = a[7]
    d, _ = align_cross_correlation(a, b)
    assert abs(d[0]) <= 6


def test_align_errors():
    a = np.zeros((5, 5, 1))
    with pytest.raises(ValueError, match="leave no displacement"):
        align_cross_correlation(a, a, [[10, 0], [12, 1]])
    with pytest.raises(ValueError, match="lower row below its upper row"):
        align_cross_correlation(a, a, [[0, 0], [0, 1]])
    with pytest.raises(ArgumentTypeError, match=r"displacement_bounds must be None or a \(2, 2\)"):
        align_cross_correlation(a, a, [0, 1])
    with pytest.raises(ValueError, match="must not be empty"):
        align_cross_correlation(np.zeros((0, 5, 1)), a)
    with pytest.raises(ValueError, match="same number of axes"):
        base_alignment(a, np.zeros((5, 5, 5, 1)))


# ---------------------------------------------------------------------------
# pyr_down_3d, within_bounds


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    data=st.data(),
)
def test_pyr_down_matches_the_reference(seed, shape, data):
    img = np.random.default_rng(seed).normal(size=shape)
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True))
    got = pyr_down_3d(img, axes)
    np.testing.assert_allclose(got, ref_pyr_down(img, axes), atol=1e-12)
    assert got.shape == tuple(-(-n // 2) if i in axes else n for i, n in enumerate(shape))


def test_pyr_down_defaults_and_dtypes():
    img = np.arange(60, dtype=np.uint16).reshape(6, 10)
    out = pyr_down_3d(img)  # every axis
    assert out.shape == (3, 5) and out.dtype == np.float64
    np.testing.assert_allclose(out, ref_pyr_down(img, (0, 1)), atol=1e-9)
    assert pyr_down_3d(img.astype(np.float32), [-1]).dtype == np.float32
    with pytest.raises(ValueError, match="axes must be in"):
        pyr_down_3d(img, [2])
    with pytest.raises(ValueError, match="must not repeat"):
        pyr_down_3d(img, [0, -2])
    with pytest.raises(ArgumentTypeError, match="axes must be None or a sequence"):
        pyr_down_3d(img, 0)
    with pytest.raises(ArgumentTypeError, match="real numeric array"):
        pyr_down_3d(np.array(["a"]))
    with pytest.raises(ValueError, match="must not be empty"):
        pyr_down_3d(np.zeros((0, 3)))


def test_within_bounds():
    b = [[-2, 0], [3, 5]]
    assert within_bounds([-2, 0], b) and within_bounds([2, 4], b)
    assert not within_bounds([3, 0], b) and not within_bounds([0, -1], b)
    assert within_bounds([100, -100], None)
    with pytest.raises(ArgumentTypeError, match=r"bounds must be None or a \(2, 3\)"):
        within_bounds([0, 0, 0], b)
    with pytest.raises(ArgumentTypeError, match="displacement must be a sequence"):
        within_bounds("ab", b)


# ---------------------------------------------------------------------------
# pyramid_align


def test_pyramid_align_recovers_large_shifts():
    rng = np.random.default_rng(11)
    img = smooth_image(rng, (64, 96), channels=2, sigma=2.0)
    d = np.array([-9, 21])
    moved = np.roll(img, tuple(-d), axis=(0, 1))
    np.testing.assert_array_equal(pyramid_align(img, moved, min_shape=8), d)
    vol = smooth_image(rng, (8, 48, 40), sigma=2.0)
    d3 = np.array([2, 7, -6])
    got = pyramid_align(vol, np.roll(vol, tuple(-d3), axis=(0, 1, 2)), min_shape=(4, 10, 10))
    np.testing.assert_array_equal(got, d3)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), data=st.data())
def test_pyramid_align_matches_the_reference(seed, data):
    rng = np.random.default_rng(seed)
    shape = (data.draw(st.integers(8, 14)), data.draw(st.integers(8, 14)))
    ref = smooth_image(rng, shape, sigma=1.0)
    tgt = np.roll(ref, (data.draw(st.integers(-3, 3)), data.draw(st.integers(-3, 3))), (0, 1))
    tgt = tgt + 0.1 * rng.normal(size=tgt.shape)
    min_shape = data.draw(st.sampled_from([3, 4, (3, 8)]))
    levels = data.draw(st.sampled_from([None, 1]))
    bounds = data.draw(st.sampled_from([None, np.array([[-4, -4], [5, 5]])]))
    got = pyramid_align(ref, tgt, min_shape, levels, bounds)
    want = ref_pyramid(ref, tgt, min_shape, np.inf if levels is None else levels, bounds)
    np.testing.assert_array_equal(got, want)


def test_pyramid_align_levels_and_bounds():
    rng = np.random.default_rng(4)
    img = smooth_image(rng, (32, 32))
    moved = np.roll(img, (3, -4), axis=(0, 1))
    np.testing.assert_array_equal(
        pyramid_align(img, moved, max_levels=0), base_alignment(img, moved)
    )
    np.testing.assert_array_equal(pyramid_align(img, moved, min_shape=8), [-3, 4])
    got = pyramid_align(img, moved, min_shape=8, bounds=[[-2, 0], [2, 8]])
    assert within_bounds(got, [[-2, 0], [2, 8]])
    with pytest.warns(RuntimeWarning, match="no displacement within bounds"):
        assert pyramid_align(img, moved, bounds=[[40, 0], [41, 1]]) is None


def test_pyramid_align_errors():
    a = np.zeros((8, 8, 1))
    with pytest.raises(ValueError, match="min_shape must be >= 1"):
        pyramid_align(a, a, min_shape=0)
    with pytest.raises(ArgumentTypeError, match="min_shape must be an integer or 2"):
        pyramid_align(a, a, min_shape=(4, 4, 4))
    with pytest.raises(ValueError, match="max_levels must be >= 0"):
        pyramid_align(a, a, max_levels=-1)
    with pytest.raises(ValueError, match="lower row below"):
        pyramid_align(a, a, bounds=[[1, 1], [1, 2]])


# ---------------------------------------------------------------------------
# add_with_offset


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    data=st.data(),
)
def test_add_with_offset_matches_a_loop(seed, shape, data):
    rng = np.random.default_rng(seed)
    total = rng.normal(size=shape)
    block_shape = [data.draw(st.integers(0, n)) for n in shape]
    offset = [data.draw(st.integers(0, n - b)) for n, b in zip(shape, block_shape)]
    block = rng.normal(size=block_shape)
    want = total.copy()
    for p in itertools.product(*[range(n) for n in block_shape]):
        want[tuple(o + q for o, q in zip(offset, p))] += block[p]
    assert add_with_offset(total, block, offset) is None
    np.testing.assert_allclose(total, want)


def test_add_with_offset_errors():
    total = np.zeros((3, 4))
    with pytest.raises(ValueError, match="does not fit inside array1"):
        add_with_offset(total, np.ones((2, 2)), (2, 0))
    with pytest.raises(ValueError, match=r"offset\[1\] must be >= 0"):
        add_with_offset(total, np.ones((1, 1)), (0, -1))
    with pytest.raises(ValueError, match="offset must have 2 entries"):
        add_with_offset(total, np.ones((1, 1)), (0,))
    with pytest.raises(ValueError, match="as many axes as array1"):
        add_with_offset(total, np.ones(2), (0, 0))
    with pytest.raises(ArgumentTypeError, match="array1 must be a numpy array"):
        add_with_offset([[0.0]], np.ones((1, 1)), (0, 0))
    with pytest.raises(ArgumentTypeError, match="offset must be a sequence of integers"):
        add_with_offset(total, np.ones((1, 1)), 0)
    with pytest.raises(ArgumentTypeError, match=r"offset\[0\] must be an integer"):
        add_with_offset(total, np.ones((1, 1)), (0.5, 0))
    np.testing.assert_array_equal(total, 0)  # nothing added on error


# ---------------------------------------------------------------------------
# whole-pixel strategies on two frames a whole number of pixels apart


def test_whole_pixel_reference_from_two_frames_keeps_their_offset(tmp_path, monkeypatch):
    import sima_fast as sima

    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path))
    rng = np.random.default_rng(21)
    frame = smooth_image(rng, (48, 64), sigma=2.0)[None]  # (1, Y, X, 1)
    moved = np.roll(frame, (5, 10), axis=(1, 2))  # odd: the sample's median is x.5 px
    seq = sima.Sequence.create("ndarray", np.stack([frame, moved]))
    ds = sima.ImagingDataset([seq], None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for strategy in (
            sima.motion.PlaneTranslation2D(),
            sima.motion.PlaneTranslation2D(method="phase"),
            sima.motion.DiscreteFourier2D(),
        ):
            (d,) = strategy.estimate(ds)
            np.testing.assert_array_equal(d, [[[5, 10]], [[0, 0]]])

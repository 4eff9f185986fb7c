"""Neuropil correction in ``extract`` (docs/contract.md#neuropil) against a dense reference."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference import extract_reference, neuropil_reference, surround_reference
from sima_fast import ImagingDataset, Sequence
from sima_fast._validate import ArgumentTypeError
from sima_fast.extract import (
    NeuropilOptions,
    estimate_neuropil_coefficient,
    roi_mask_matrix,
    surround_masks,
)
from sima_fast.ROI import ROI

RTOL = 2e-5  # the traces are float32
ATOL = 2e-6


def disc(shape, cy, cx, r, z=None, planes=1):
    """A boolean disc mask of radius r at (cy, cx), on plane z (all planes if None)."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    m2 = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    m = np.zeros((planes, *shape), dtype=bool)
    if z is None:
        m[:] = m2
    else:
        m[z] = m2
    return m


def dataset_of(movie):
    """An in-memory dataset of a (T, Z, Y, X) movie (one channel)."""
    return ImagingDataset([Sequence.create("ndarray", movie[..., None])], None)


def check_against_reference(movies, masks, boolean, opts, remove_overlap=True):
    """Extract with ``opts`` and compare every key with the dense reference.

    ``boolean[i]`` False makes ROI i a weighted mask (weights from 0.5 to 1.5).
    """
    ds = ImagingDataset([Sequence.create("ndarray", m[..., None]) for m in movies], None)
    masks = [
        m if b else m * np.linspace(0.5, 1.5, m.size).reshape(m.shape)
        for m, b in zip(masks, boolean)
    ]
    rois = [ROI(mask=m) for m in masks]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ds.extract(rois, save_summary=False, remove_overlap=remove_overlap)
        rec = ds.extract(rois, save_summary=False, remove_overlap=remove_overlap, neuropil=opts)
    o = NeuropilOptions.resolve(opts)
    mean = ds.time_averages[..., 0].astype(np.float64)
    usable = np.isfinite(mean) & (mean != 0)
    dense = np.asarray(masks, dtype=np.float64)
    S, radii = surround_reference(
        dense, usable, o.inner_radius, o.outer_radius, o.min_pixels, o.exclude_rois
    )
    frames = [np.asarray(m, dtype=np.float64) for m in movies]
    want_np = neuropil_reference(frames, dense, boolean, remove_overlap, mean, S)
    want_raw = extract_reference(frames, dense, boolean, remove_overlap, mean)
    params = rec["neuropil_params"]
    np.testing.assert_array_equal(params["n_pixels"], S.reshape(len(S), -1).sum(axis=1))
    np.testing.assert_allclose(params["outer_radius"], radii)
    for k in range(len(movies)):
        np.testing.assert_array_equal(rec["raw"][k], plain["raw"][k])  # unchanged, bit for bit
        np.testing.assert_allclose(rec["raw"][k], want_raw[k], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(rec["neuropil"][k], want_np[k], rtol=RTOL, atol=ATOL)
        r = params["coefficient"][:, None]
        np.testing.assert_allclose(
            rec["corrected"][k], want_raw[k] - r * want_np[k], rtol=RTOL, atol=4 * ATOL
        )
    return rec


# ----------------------------------------------------------------------------
# fixed cases
# ----------------------------------------------------------------------------


def test_defaults_are_suite2ps_and_the_record_layout():
    rng = np.random.default_rng(1)
    movie = rng.uniform(100, 400, (30, 1, 64, 64)).astype(np.float32)
    masks = [disc((64, 64), 20, 20, 4), disc((64, 64), 40, 45, 5)]
    rec = check_against_reference([movie], masks, [True, True], True)
    p = rec["neuropil_params"]
    assert p["inner_radius"] == 2.0 and p["min_pixels"] == 350 and p["exclude_rois"] is True
    assert p["estimated"] is False
    np.testing.assert_array_equal(p["coefficient"], [0.7, 0.7])
    assert (p["n_pixels"] >= 350).all()
    assert rec["neuropil"][0].shape == rec["raw"][0].shape == rec["corrected"][0].shape
    assert rec["neuropil"][0].dtype == rec["corrected"][0].dtype == np.float32


def test_uniform_contamination_is_removed_exactly():
    """A cell whose pixels are S + r·N, with the surround showing N, corrects to S / μ."""
    rng = np.random.default_rng(2)
    T = 60
    neuropil = 100 + 30 * rng.random(T)
    signal = 50 + 20 * rng.random(T)
    movie = np.broadcast_to(neuropil[:, None, None, None], (T, 1, 48, 48)).copy()
    cell = disc((48, 48), 24, 24, 5)[0]
    movie[:, 0, cell] = (signal + 0.6 * neuropil)[:, None]
    ds = dataset_of(movie)
    rec = ds.extract(
        [ROI(mask=cell)], save_summary=False, neuropil={"coefficient": 0.6, "min_pixels": 100}
    )
    mu = (signal + 0.6 * neuropil).mean()
    np.testing.assert_allclose(rec["corrected"][0][0], signal / mu, rtol=1e-5)


def test_uint16_and_float64_and_several_sequences():
    rng = np.random.default_rng(3)
    shape = (50, 60)
    masks = [disc(shape, 10, 10, 3), disc(shape, 13, 15, 4), disc(shape, 40, 45, 6)]
    for dtype in (np.uint16, np.float64):
        movies = [rng.integers(50, 3000, (n, 1, *shape)).astype(dtype) for n in (9, 14)]
        check_against_reference(movies, masks, [True, False, True], {"min_pixels": 120})


def test_nan_gaps_overlapping_surrounds_and_borders():
    rng = np.random.default_rng(4)
    shape = (40, 40)
    movie = rng.uniform(10, 100, (25, 1, *shape)).astype(np.float32)
    movie[2, 0, :6] = np.nan  # a motion edge
    movie[5, 0, :, :] = np.nan  # a whole frame missing
    movie[:, 0, 30:, 0] = np.nan  # a never-observed column
    masks = [disc(shape, 1, 1, 2), disc(shape, 5, 6, 3), disc(shape, 36, 20, 3)]
    rec = check_against_reference(
        [movie], masks, [True, True, True], {"inner_radius": 1.5, "min_pixels": 90}
    )
    assert np.isnan(rec["neuropil"][0][:, 5]).all()


def test_kept_overlap_fixed_outer_radius_and_rois_not_excluded():
    rng = np.random.default_rng(5)
    shape = (36, 36)
    movie = rng.uniform(10, 100, (12, 1, *shape)).astype(np.float32)
    movie[3, 0, 15:20, 15:20] = np.nan
    masks = [disc(shape, 15, 15, 4), disc(shape, 18, 19, 4)]
    opts = {"outer_radius": 6.5, "exclude_rois": False, "inner_radius": 0}
    with pytest.warns(UserWarning, match="fewer than min_pixels"):
        surround_masks(
            roi_mask_matrix([ROI(mask=m) for m in masks], (1, *shape)), (1, *shape), opts
        )
    check_against_reference([movie], masks, [True, True], opts, remove_overlap=False)


def test_multi_plane_rois():
    rng = np.random.default_rng(6)
    shape = (30, 30)
    movie = rng.uniform(10, 100, (10, 2, *shape)).astype(np.float32)
    masks = [disc(shape, 10, 10, 3, planes=2), disc(shape, 20, 20, 3, z=1, planes=2)]
    check_against_reference([movie], masks, [True, True], {"min_pixels": 200})


def test_estimated_coefficient_recovers_the_mixing_and_is_stored(tmp_path):
    rng = np.random.default_rng(7)
    T = 800
    neuropil = 100 + 40 * np.sin(np.linspace(0, 30, T)) + rng.normal(0, 1, T)
    spikes = (rng.random(T) < 0.05) * 80.0
    signal = 60 + np.convolve(spikes, np.exp(-np.arange(20) / 5))[:T]
    movie = np.broadcast_to(neuropil[:, None, None, None], (T, 1, 40, 40)).copy()
    cell = disc((40, 40), 20, 20, 4)[0]
    movie[:, 0, cell] = (signal + 0.5 * neuropil)[:, None]
    ds = ImagingDataset([Sequence.create("ndarray", movie[..., None])], str(tmp_path / "d.sima"))
    ds.extract(
        [ROI(mask=cell)],
        label="np",
        save_summary=False,
        neuropil={"coefficient": "estimate", "min_pixels": 200},
    )
    rec = ds.signals()["np"]  # read back from the HDF5 file
    p = rec["neuropil_params"]
    assert p["estimated"] is True
    assert abs(p["coefficient"][0] - 0.5) < 0.05
    np.testing.assert_allclose(
        rec["corrected"][0], rec["raw"][0] - p["coefficient"][:, None] * rec["neuropil"][0],
        rtol=1e-5,
    )  # fmt: skip
    again = ImagingDataset.load(str(tmp_path / "d.sima")).signals()["np"]
    for key in ("neuropil", "corrected"):
        np.testing.assert_array_equal(again[key][0], rec[key][0])
    assert set(again["neuropil_params"]) == set(p)


def test_estimate_falls_back_on_a_constant_neuropil():
    with pytest.warns(UserWarning, match="could not be estimated"):
        r = estimate_neuropil_coefficient(np.ones((2, 50)), np.ones((2, 50)), default=0.3)
    np.testing.assert_array_equal(r, [0.3, 0.3])


def test_csv_export_has_raw_neuropil_and_corrected_blocks(tmp_path):
    rng = np.random.default_rng(8)
    movie = rng.uniform(10, 100, (6, 1, 30, 30)).astype(np.float32)
    ds = ImagingDataset([Sequence.create("ndarray", movie[..., None])], str(tmp_path / "d.sima"))
    rois = [ROI(mask=disc((30, 30), 10, 10, 3), id="a"), ROI(mask=disc((30, 30), 20, 20, 3))]
    rec = ds.extract(rois, save_summary=False, neuropil={"min_pixels": 50})
    path = tmp_path / "s.csv"
    ds.export_signals(str(path))
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[3][:2] == ["", "trace"]
    assert rows[3][2:] == ["raw"] * 2 + ["neuropil"] * 2 + ["corrected"] * 2
    assert rows[0][2:] == ["a", "", "a", "", "a", ""]
    body = np.array([[float(v) for v in r[2:]] for r in rows[4:]])
    assert body.shape == (6, 6)
    np.testing.assert_array_equal(body[:, 2:4].T.astype(np.float32), rec["neuropil"][0])
    np.testing.assert_array_equal(body[:, 4:6].T.astype(np.float32), rec["corrected"][0])


def test_no_neuropil_keeps_the_record_and_csv_as_before(tmp_path):
    rng = np.random.default_rng(9)
    movie = rng.uniform(10, 100, (4, 1, 20, 20)).astype(np.float32)
    ds = dataset_of(movie)
    roi = ROI(mask=disc((20, 20), 10, 10, 3))
    for off in (None, False):
        rec = ds.extract([roi], save_summary=False, neuropil=off)
        assert not {"neuropil", "corrected", "neuropil_params"} & set(rec)


# ----------------------------------------------------------------------------
# hypothesis
# ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    shape=st.tuples(st.integers(1, 2), st.integers(8, 28), st.integers(8, 28)),
    dtype=st.sampled_from(["uint16", "float32", "float64"]),
    n_rois=st.integers(1, 4),
    inner=st.sampled_from([0.0, 1.0, 2.0, 2.5]),
    outer=st.sampled_from([None, None, 5.0]),
    min_pixels=st.integers(1, 80),
    exclude=st.booleans(),
    nan_rate=st.sampled_from([0.0, 0.0, 0.1]),
    remove_overlap=st.booleans(),
)
def test_matches_the_dense_reference(
    seed, shape, dtype, n_rois, inner, outer, min_pixels, exclude, nan_rate, remove_overlap
):
    rng = np.random.default_rng(seed)
    Z, Y, X = shape
    T = int(rng.integers(1, 9))
    movie = rng.uniform(1, 1000, (T, Z, Y, X))
    if dtype == "uint16":
        movie = movie.astype(np.uint16).clip(1)
    else:
        movie = movie.astype(dtype)
        if nan_rate:
            movie[rng.random(movie.shape) < nan_rate] = np.nan
    masks, flags = [], []
    for _ in range(n_rois):
        m = disc((Y, X), rng.integers(0, Y), rng.integers(0, X), rng.uniform(0.5, 3.5),
                 z=int(rng.integers(0, Z)), planes=Z)  # fmt: skip
        masks.append(m)
        flags.append(bool(rng.random() < 0.7))
    opts = NeuropilOptions(inner, outer, min_pixels, 0.7, exclude)
    dense = np.asarray(masks, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pixels never observed: an empty mean
        mean = np.nanmean(movie.astype(np.float64), axis=0)
    usable = np.isfinite(mean) & (mean != 0)
    S, _ = surround_reference(dense, usable, inner, outer, min_pixels, exclude)
    S_count = S.reshape(n_rois, -1).sum(axis=1)
    kept = dense.reshape(n_rois, -1) != 0
    if remove_overlap:
        kept[:, kept.sum(axis=0) > 1] = False
    if not kept.any():
        return  # no ROI left: extract refuses that (tested in test_extract)
    if (S_count == 0).any():
        with pytest.raises(ValueError, match="no pixel in its neuropil surround"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset_of(movie).extract(
                    [ROI(mask=m) for m in masks], save_summary=False, neuropil=opts
                )
        return
    check_against_reference([movie], masks, flags, opts, remove_overlap)


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("neuropil", "error", "match"),
    [
        ({"inner_radius": -1}, ValueError, "inner_radius"),
        ({"outer_radius": -3}, ValueError, "outer_radius"),
        ({"inner_radius": 3, "outer_radius": 3}, ValueError, "outer_radius"),
        ({"min_pixels": 0}, ValueError, "min_pixels"),
        ({"min_pixels": 2.5}, ArgumentTypeError, "min_pixels"),
        ({"coefficient": 1.5}, ValueError, "coefficient"),
        ({"coefficient": -0.1}, ValueError, "coefficient"),
        ({"coefficient": "fit"}, ValueError, "coefficient"),
        ({"coefficient": [0.5]}, ArgumentTypeError, "coefficient"),
        ({"coefficient": True}, ArgumentTypeError, "coefficient"),
        ({"exclude_rois": "yes"}, ArgumentTypeError, "exclude_rois"),
        ({"radius": 3}, ArgumentTypeError, "unknown option"),
        ("yes", ArgumentTypeError, "neuropil"),
        (1, ArgumentTypeError, "neuropil"),
    ],
)
def test_bad_options_are_refused_before_any_work(neuropil, error, match):
    ds = dataset_of(np.ones((3, 1, 10, 10), dtype=np.float32))
    with pytest.raises(error, match=match):
        ds.extract([ROI(mask=disc((10, 10), 5, 5, 2))], save_summary=False, neuropil=neuropil)


def test_a_surround_with_no_pixel_names_the_roi():
    ds = dataset_of(np.ones((3, 1, 10, 10), dtype=np.float32))
    left = np.zeros((1, 10, 10), dtype=bool)
    left[:, :, :5] = True
    rois = [ROI(mask=left, label="west"), ROI(mask=~left, label="east")]  # tiling the frame
    with pytest.raises(ValueError, match=r"rois\[0\] \(label 'west'\).*no pixel"):
        ds.extract(rois, save_summary=False, neuropil=True)
    small = [ROI(mask=disc((10, 10), 5, 5, 2))]
    with pytest.raises(ValueError, match="no pixel"):
        ds.extract(small, save_summary=False, neuropil={"inner_radius": 2, "outer_radius": 2.1,
                                                        "exclude_rois": True})  # fmt: skip


# ----------------------------------------------------------------------------
# the kernel's uniform rows (RunWeights.n_weighted)
# ----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    dtype=st.sampled_from(["uint8", "uint16", "int16", "int32", "float32"]),
    n_frames=st.integers(1, 9),
    n_pixels=st.integers(1, 300),
)
def test_uniform_rows_sum_exactly_like_weighted_rows(seed, dtype, n_frames, n_pixels):
    import scipy.sparse

    from sima_fast.kernels.extract import extract_runs, runs_from_csr

    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if dtype != "float32" else None
    lo, hi = (info.min, info.max) if info else (-1e4, 1e4)
    x = rng.uniform(lo, hi, (n_frames, n_pixels)).astype(dtype)
    dense = (rng.random((5, n_pixels)) < 0.3).astype(np.float64)
    weighted = dense[:2] * rng.uniform(0.1, 2.0, (2, n_pixels))
    uniform = dense[2:] * np.array([[0.25], [3.0], [1e-3]])
    m = scipy.sparse.csr_matrix(np.vstack([weighted, uniform]))
    w = np.abs(m.data)
    plan = runs_from_csr(m.indptr, m.indices, m.data, w, n_weighted=2)
    out = extract_runs(x, plan, np.empty((n_frames, 5)))
    want = (m @ x.astype(np.float64).T).T
    empty = np.diff(m.indptr) == 0
    want[:, empty] = np.nan
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-9 * np.abs(x).max())


def test_rows_declared_uniform_must_be():
    from sima_fast.kernels.extract import runs_from_csr

    with pytest.raises(ValueError, match="one weight each"):
        runs_from_csr([0, 1, 3], [0, 1, 2], [1.0, 1.0, 2.0], [1.0, 1.0, 1.0], n_weighted=1)


def test_demixing_gives_the_demixed_frames_their_own_neuropil(tmp_path):
    """With demix_channel, the surrounds of the demixed frames are stored too, with raw's r."""
    rng = np.random.default_rng(11)
    shape = (40, 44)
    T = 30
    green = rng.uniform(50, 400, (T, 1, *shape))
    red = rng.uniform(20, 200, (T, 1, *shape))
    movie = np.stack([green, red], axis=-1).astype(np.float32)
    masks = [disc(shape, 12, 12, 4)[0], disc(shape, 26, 30, 5)[0]]
    ds = ImagingDataset([Sequence.create("ndarray", movie)], str(tmp_path / "d.sima"))
    rois = [ROI(mask=m) for m in masks]
    opts = {"min_pixels": 150, "coefficient": "estimate"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a coefficient on noise may fall back to 0.7
        rec = ds.extract(rois, label="dm", save_summary=False, demix_channel=1, neuropil=opts)
        mixed_only = ds.extract(rois, save_summary=False, demix_channel=1)
    np.testing.assert_array_equal(rec["demixed_raw"][0], mixed_only["demixed_raw"][0])
    # the reference: the demixed frames F_s + factor·F_d, extracted with the signal channel's μ
    W = rec["demixed_raw"][0]
    o = NeuropilOptions.resolve(opts)
    mean = ds.time_averages[..., 0].astype(np.float64)
    usable = np.isfinite(mean) & (mean != 0)
    dense = np.asarray([m[None] for m in masks], dtype=np.float64)
    S, _ = surround_reference(
        dense, usable, o.inner_radius, o.outer_radius, o.min_pixels, o.exclude_rois
    )
    from sima_fast.extract import demixing_matrix

    factor = demixing_matrix(ds.time_averages[..., 0], ds.time_averages[..., 1])[0, 1]
    demixed_frames = movie[..., 0].astype(np.float64) + np.float32(factor) * movie[..., 1]
    want_np = neuropil_reference([demixed_frames], dense, [True, True], True, mean, S)[0]
    want_raw = extract_reference([demixed_frames], dense, [True, True], True, mean)[0]
    np.testing.assert_allclose(W, want_raw, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(rec["demixed_neuropil"][0], want_np, rtol=RTOL, atol=ATOL)
    r = rec["neuropil_params"]["coefficient"][:, None]
    np.testing.assert_allclose(
        rec["demixed_corrected"][0], want_raw - r * want_np, rtol=RTOL, atol=4 * ATOL
    )
    assert rec["demixed_corrected"][0].dtype == np.float32
    # stored and read back with the rest of the record
    again = ImagingDataset.load(str(tmp_path / "d.sima")).signals()["dm"]
    for key in ("demixed_neuropil", "demixed_corrected"):
        np.testing.assert_array_equal(again[key][0], rec[key][0])
    # without demixing there are no demixed keys
    plain = ds.extract(rois, save_summary=False, neuropil={"min_pixels": 150})
    assert "demixed_neuropil" not in plain and "demixed_corrected" not in plain

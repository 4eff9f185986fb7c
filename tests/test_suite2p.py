"""suite2p output folders: export_suite2p, ROIList.load(fmt='suite2p'), and readers of others.

The folders written here are read back by roiextractors'
``Suite2pSegmentationExtractor`` (a client written by others) and by
sima_fast's reader; folders written by the tests themselves, with ``F``
computed by suite2p's published definition, check the reader against the
traces stored in them.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sima_fast as sf
from sima_fast._legacy import UnsafePickleError, load_npy
from sima_fast._validate import ArgumentTypeError
from sima_fast.io.suite2p import (
    Suite2pFormatError,
    enhanced_mean_image,
    local_correlation_image,
    read_suite2p,
)
from sima_fast.ROI import ROI, ROIList

# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


def _movie(rng, T, Z, Y, X, cells):
    """A (T, Z, Y, X) float32 movie: a bright baseline, cells firing, and noise."""
    mov = 100.0 + 10.0 * rng.random((Z, Y, X))
    mov = np.repeat(mov[None], T, axis=0)
    for z, mask in cells:
        trace = np.convolve(rng.random(T) < 0.1, 0.8 ** np.arange(10))[:T]
        mov[:, z] += 50.0 * trace[:, None, None] * mask[None]
    mov += rng.normal(0.0, 2.0, mov.shape)
    return mov.astype(np.float32)


def _disk(Y, X, cy, cx, r):
    yy, xx = np.mgrid[:Y, :X]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture
def dataset(tmp_path):
    """Two planes, two sequences (30 and 20 frames), boolean and weighted ROIs."""
    rng = np.random.default_rng(7)
    Z, Y, X = 2, 24, 30
    masks = [
        (0, _disk(Y, X, 6, 7, 3)),
        (0, _disk(Y, X, 15, 20, 4)),
        (1, _disk(Y, X, 10, 10, 3.5)),
    ]
    seqs = [
        sf.Sequence.create("ndarray", _movie(rng, T, Z, Y, X, masks)[..., None]) for T in (30, 20)
    ]
    ds = sf.ImagingDataset(seqs, str(tmp_path / "ds.sima"))
    rois = []
    for i, (z, m) in enumerate(masks):
        full = np.zeros((Z, Y, X))
        if i == 1:  # a weighted mask
            yy, xx = np.mgrid[:Y, :X]
            full[z] = np.where(m, 1.0 + 0.1 * yy + 0.05 * xx, 0.0)
        else:
            full = full.astype(bool)
            full[z] = m
        rois.append(ROI(mask=full, label=f"cell{i}"))
    ds.add_ROIs(ROIList(rois), "cells")
    ds.extract(label="first", save_summary=False)
    return ds


def _out(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    return out


# --------------------------------------------------------------------------
# export, read back by roiextractors and by sima_fast
# --------------------------------------------------------------------------


def test_export_layout_and_roiextractors(dataset, tmp_path):
    roiextractors = pytest.importorskip("roiextractors")
    out = _out(tmp_path)
    with pytest.warns(UserWarning, match="frame rate is unknown"):
        path = dataset.export_suite2p(out)
    assert path == str(out / "suite2p")
    assert sorted(os.listdir(path)) == ["plane0", "plane1"]
    assert not [n for n in os.listdir(out) if n != "suite2p"]  # no staging left
    for plane in ("plane0", "plane1"):
        names = set(os.listdir(os.path.join(path, plane)))
        assert {"stat.npy", "F.npy", "Fneu.npy", "spks.npy", "iscell.npy", "ops.npy"} <= names
    record = dataset.signals()["first"]
    raw = np.concatenate(record["raw"], axis=1)  # sequences joined in time
    assert raw.shape == (3, 50)
    rows = {"plane0": [0, 1], "plane1": [2]}
    for plane, idx in rows.items():
        ex = roiextractors.Suite2pSegmentationExtractor(str(path), plane_name=plane)
        assert ex.get_num_rois() == len(idx)
        assert ex.get_num_samples() == 50
        assert ex.get_frame_shape() == (24, 30)
        traces = ex.get_traces_dict()
        np.testing.assert_array_equal(np.asarray(traces["raw"]).T, raw[idx].astype(np.float32))
        assert not np.asarray(traces["neuropil"]).any()  # no neuropil extracted: zeros
        assert not np.asarray(traces["deconvolved"]).any()  # no infer_spikes: zeros
        for pm, i in zip(ex.get_roi_pixel_masks(), idx):
            roi = ROI(**record["rois"][i])
            dense = np.asarray(roi)[0 if plane == "plane0" else 1]
            ys, xs = np.nonzero(dense)
            assert sorted(zip(pm[:, 0].astype(int), pm[:, 1].astype(int))) == sorted(zip(ys, xs))
            w = dense[pm[:, 0].astype(int), pm[:, 1].astype(int)]
            expected = np.full(w.size, 1.0 / w.size) if dense.dtype == bool else w
            np.testing.assert_allclose(pm[:, 2], expected, rtol=1e-6)
        assert ex.get_image("correlation").shape == (24, 30)
        assert ex.get_image("mean").shape == (24, 30)


def test_export_spikes_and_fs(dataset, tmp_path):
    from sima_fast.spikes import SpikeInferenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpikeInferenceWarning)  # short noisy traces
        dataset.infer_spikes(label="first")
    out = _out(tmp_path)
    path = dataset.export_suite2p(out, fs=30.0)
    spikes = np.concatenate(dataset.signals()["first"]["spikes"], axis=1)
    got = np.concatenate(
        [load_npy(os.path.join(path, p, "spks.npy")) for p in ("plane0", "plane1")]
    )
    np.testing.assert_allclose(got, spikes.astype(np.float32))
    ops = load_npy(os.path.join(path, "plane0", "ops.npy")).item()
    assert ops["fs"] == 30.0
    assert ops["nframes"] == 50
    assert list(ops["frames_per_file"]) == [30, 20]
    gammas = np.concatenate([p["gamma"] for p in dataset.signals()["first"]["spikes_params"]])
    assert ops["tau"] == pytest.approx(-1.0 / (30.0 * np.log(np.median(gammas))))


def test_export_neuropil_from_the_record(dataset, tmp_path):
    """A record with the neuropil keys exports them: Fneu, and statistics of 'corrected'."""
    from sima_fast.io.suite2p import write_suite2p

    record = dict(dataset.signals()["first"])
    record["neuropil"] = [0.5 * r + 0.25 for r in record["raw"]]
    record["corrected"] = [r - 0.4 * n for r, n in zip(record["raw"], record["neuropil"])]
    record["neuropil_params"] = {"coefficient": np.array([0.4, 0.4, 0.4])}
    path = write_suite2p(dataset, tmp_path, record, channel=0, signals_label="x", fs=5.0)
    fneu = np.concatenate(record["neuropil"], axis=1)
    corrected = np.concatenate(record["corrected"], axis=1)
    got = load_npy(os.path.join(path, "plane0", "Fneu.npy"))
    np.testing.assert_allclose(got, fneu[:2].astype(np.float32))
    stat = load_npy(os.path.join(path, "plane0", "stat.npy"))
    assert stat[1]["std"] == pytest.approx(np.std(corrected[1].astype(np.float64)), rel=1e-5)
    ops = load_npy(os.path.join(path, "plane0", "ops.npy")).item()
    assert ops["neuropil_coefficient"] == pytest.approx(0.4)
    assert ops["fs"] == 5.0


def test_export_images_match_definitions(dataset, tmp_path):
    path = dataset.export_suite2p(_out(tmp_path), fs=10.0)
    frames = np.concatenate([np.asarray(s)[..., 0] for s in dataset.sequences])  # (T, Z, Y, X)
    vcorr = local_correlation_image(frames)
    for z in range(2):
        ops = load_npy(os.path.join(path, f"plane{z}", "ops.npy")).item()
        np.testing.assert_allclose(ops["meanImg"], frames[:, z].mean(0), rtol=1e-5)
        np.testing.assert_allclose(ops["max_proj"], frames[:, z].max(0))
        np.testing.assert_allclose(ops["Vcorr"], vcorr[z], atol=1e-5)
        np.testing.assert_allclose(ops["meanImgE"], enhanced_mean_image(ops["meanImg"]))
        assert (ops["Ly"], ops["Lx"]) == (24, 30)
        assert list(ops["xrange"]) == [0, 30] and list(ops["yrange"]) == [0, 24]
        db = load_npy(os.path.join(path, f"plane{z}", "db.npy")).item()
        settings = load_npy(os.path.join(path, f"plane{z}", "settings.npy")).item()
        assert {**db, **settings}.keys() == ops.keys()


def test_export_stat_fields(dataset, tmp_path):
    path = dataset.export_suite2p(_out(tmp_path), fs=10.0)
    stat = load_npy(os.path.join(path, "plane0", "stat.npy"))
    assert stat.dtype == object and stat.shape == (2,)
    fields = {
        "ypix", "xpix", "lam", "med", "npix", "npix_soma", "soma_crop", "mrs", "mrs0",
        "compact", "radius", "aspect_ratio", "solidity", "footprint", "npix_norm",
        "npix_norm_no_crop", "overlap", "skew", "std", "snr", "iplane",
    }  # fmt: skip
    for s in stat:
        assert fields <= set(s)
        assert s["npix"] == s["ypix"].size == s["lam"].size == s["overlap"].size
        assert not s["overlap"].any()
        # a disk: as compact as a disk, round, convex
        assert s["compact"] == pytest.approx(1.0, abs=0.05)
        assert s["aspect_ratio"] == pytest.approx(1.0, abs=0.05)
        assert 0.7 < s["solidity"] <= 1.0
        assert [s["ypix"][0], s["xpix"][0]] != s["med"] or s["npix"] == 1
        assert s["med"] in [[int(y), int(x)] for y, x in zip(s["ypix"], s["xpix"])]
    # the disk of radius 3 at (6, 7) has its median pixel at the centre
    assert stat[0]["med"] == [6, 7]
    assert stat[0]["npix_norm"] == pytest.approx(
        stat[0]["npix_soma"] / np.median([s["npix_soma"] for s in stat])
    )


def test_round_trip_through_sima_fast(dataset, tmp_path):
    """sima_fast -> suite2p folder -> ROIList.load -> extract gives the same traces."""
    path = dataset.export_suite2p(_out(tmp_path), fs=10.0)
    raw = np.concatenate(dataset.signals()["first"]["raw"], axis=1)
    loaded = [ROIList.load(path, fmt="suite2p", plane=z) for z in (0, 1)]
    assert [len(r) for r in loaded] == [2, 1]
    rois = ROIList(list(loaded[0]) + list(loaded[1]))
    assert all(r.im_shape == (2, 24, 30) for r in rois)
    again = dataset.extract(rois, label="again", save_summary=False)
    np.testing.assert_allclose(np.concatenate(again["raw"], axis=1), raw, rtol=1e-5)


def test_existing_destination_and_overwrite(dataset, tmp_path):
    out = _out(tmp_path)
    path = dataset.export_suite2p(out, fs=10.0)
    marker = os.path.join(path, "mine.txt")
    open(marker, "w").close()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        dataset.export_suite2p(out, fs=10.0)
    assert os.path.exists(marker)
    dataset.export_suite2p(out, fs=10.0, overwrite=True)
    assert not os.path.exists(marker)
    assert sorted(os.listdir(out)) == ["suite2p"]


def test_failed_export_leaves_nothing(dataset, tmp_path, monkeypatch):
    import sima_fast.io.suite2p as s2p

    real = s2p._save_npy

    def failing(directory, name, value):
        if name == "spks.npy" and directory.endswith("plane1"):
            raise OSError("disk full (injected)")
        real(directory, name, value)

    monkeypatch.setattr(s2p, "_save_npy", failing)
    out = _out(tmp_path)
    with pytest.raises(OSError, match="injected"):
        dataset.export_suite2p(out, fs=10.0)
    assert os.listdir(out) == []


def test_export_rois_label(dataset, tmp_path):
    other = ROIList([ROI(mask=np.asarray(dataset.ROIs["cells"][0]), label="only")])
    dataset.add_ROIs(other, "other")
    with pytest.raises(ValueError, match="from the ROI set 'other'"):
        dataset.export_suite2p(_out(tmp_path), rois_label="other", fs=10.0)
    dataset.extract(other, label="second", save_summary=False)
    path = dataset.export_suite2p(tmp_path, rois_label="cells", fs=10.0)
    ops = load_npy(os.path.join(path, "plane0", "ops.npy")).item()
    assert ops["sima_fast"]["signals_label"] == "first"  # the extraction of these ROIs
    with pytest.raises(ValueError, match="'second' was not made"):
        dataset.export_suite2p(
            tmp_path, rois_label="cells", signals_label="second", fs=10.0, overwrite=True
        )
    with pytest.raises(KeyError, match="rois_label"):
        dataset.export_suite2p(tmp_path, rois_label="nope", fs=10.0, overwrite=True)


def test_export_bad_arguments(dataset, tmp_path):
    out = _out(tmp_path)
    with pytest.raises(ArgumentTypeError, match="folder"):
        dataset.export_suite2p(3)
    with pytest.raises(ArgumentTypeError, match="overwrite"):
        dataset.export_suite2p(out, overwrite="yes")
    with pytest.raises(ArgumentTypeError, match="signals_label"):
        dataset.export_suite2p(out, signals_label=1)
    with pytest.raises(KeyError, match="signals_label"):
        dataset.export_suite2p(out, signals_label="nope")
    with pytest.raises(ValueError, match="fs must be positive"):
        dataset.export_suite2p(out, fs=0.0)
    with pytest.raises(ArgumentTypeError, match="fs"):
        dataset.export_suite2p(out, fs="fast")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="folder"):
        dataset.export_suite2p(a_file, fs=10.0)
    # a refused export creates no folder; a valid one creates it with its parents
    with pytest.raises(ValueError, match="fs must be positive"):
        dataset.export_suite2p(tmp_path / "new" / "deeper", fs=0.0)
    assert not (tmp_path / "new").exists()
    assert os.listdir(out) == []
    made = dataset.export_suite2p(tmp_path / "new" / "deeper", fs=10.0)
    assert os.path.isfile(os.path.join(made, "plane0", "stat.npy"))


def test_export_refuses_unrepresentable_rois(tmp_path):
    mov = np.ones((5, 2, 6, 6, 1), np.float32) + np.arange(5.0)[:, None, None, None, None]
    ds = sf.ImagingDataset([sf.Sequence.create("ndarray", mov)], str(tmp_path / "d.sima"))
    with pytest.raises(ValueError, match="run extract"):
        ds.export_suite2p(tmp_path, fs=10.0)
    both = np.zeros((2, 6, 6), bool)
    both[:, 2:4, 2:4] = True
    ds.add_ROIs(ROIList([ROI(mask=both, label="tube")]), "r")
    ds.extract(label="e", save_summary=False)
    with pytest.raises(ValueError, match="spans planes"):
        ds.export_suite2p(tmp_path, fs=10.0)
    assert not os.path.exists(tmp_path / "suite2p")


# --------------------------------------------------------------------------
# folders written by the tests, read by sima_fast
# --------------------------------------------------------------------------


def _suite2p_folder(root, movie, stats, iscell=None, ops_extra=None):
    """Write a suite2p-style plane folder with F by suite2p's definition.

    F_i(t) = sum over the ROI's pixels not shared with another ROI of
    lam_p / (sum of those lam) * frame_p(t).
    """
    T, Y, X = movie.shape
    plane = root / "suite2p" / "plane0"
    plane.mkdir(parents=True)
    count = np.zeros((Y, X), int)
    for s in stats:
        count[s["ypix"], s["xpix"]] += 1
    F = np.zeros((len(stats), T), np.float32)
    for i, s in enumerate(stats):
        s["overlap"] = count[s["ypix"], s["xpix"]] > 1
        keep = ~s["overlap"]
        w = s["lam"][keep] / s["lam"][keep].sum()
        F[i] = movie[:, s["ypix"][keep], s["xpix"][keep]] @ w
    arr = np.empty(len(stats), object)
    arr[:] = stats
    np.save(plane / "stat.npy", arr, allow_pickle=True)
    np.save(plane / "F.npy", F)
    np.save(plane / "Fneu.npy", np.zeros_like(F))
    np.save(plane / "spks.npy", np.zeros_like(F))
    if iscell is None:
        iscell = np.ones((len(stats), 2), np.float32)
    np.save(plane / "iscell.npy", iscell)
    ops = {"Ly": Y, "Lx": X, "nframes": T, "fs": 10.0, "meanImg": movie.mean(0)}
    ops.update(ops_extra or {})
    np.save(plane / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
    return plane, F


def _stat(ypix, xpix, lam):
    return {
        "ypix": np.asarray(ypix, np.int32),
        "xpix": np.asarray(xpix, np.int32),
        "lam": np.asarray(lam, np.float32),
        "med": [int(np.median(ypix)), int(np.median(xpix))],
        "npix": len(ypix),
    }


def _two_cells(Y=16, X=18):
    rng = np.random.default_rng(3)
    a = np.argwhere(_disk(Y, X, 5, 5, 3))
    b = np.argwhere(_disk(Y, X, 9, 12, 3.5))  # overlaps nothing
    c = np.argwhere(_disk(Y, X, 6, 8, 2))  # overlaps a
    return [
        _stat(p[:, 0], p[:, 1], rng.uniform(0.2, 1.0, len(p))) for p in (a, b, c)
    ], rng  # fmt: skip


def test_suite2p_traces_from_a_flat_baseline_movie(tmp_path):
    """extract's raw = L_i * F_i / mean_t(F_i) when each ROI's pixels share one time average.

    L_i is the sum of the ROI's lam over its pixels not shared with another
    ROI (the weights extraction keeps with remove_overlap=True).
    """
    stats, rng = _two_cells()
    T, Y, X = 40, 16, 18
    movie = rng.uniform(50, 150, (T, Y, X))
    target = np.full((Y, X), 120.0)  # every pixel's time average: one value per ROI
    for i, s in enumerate(stats):
        target[s["ypix"], s["xpix"]] = 100.0 + 30.0 * i
    movie *= target / movie.mean(0)
    _, F = _suite2p_folder(tmp_path, movie, stats)
    rois = ROIList.load(tmp_path, fmt="suite2p")
    ds = sf.ImagingDataset([sf.Sequence.create("ndarray", movie[:, None, :, :, None])], None)
    raw = ds.extract(rois, save_summary=False)["raw"][0]
    for i, s in enumerate(stats):
        L = s["lam"][~s["overlap"]].astype(np.float64).sum()
        np.testing.assert_allclose(raw[i], L * F[i] / F[i].mean(), rtol=1e-5)


def test_suite2p_traces_general_movie(tmp_path):
    """In general, raw_i = L_i * (suite2p's F of the movie divided by each pixel's mean)."""
    stats, rng = _two_cells()
    movie = rng.uniform(50, 150, (30, 16, 18))
    _suite2p_folder(tmp_path, movie, stats)
    rois = ROIList.load(tmp_path / "suite2p", fmt="suite2p")
    ds = sf.ImagingDataset([sf.Sequence.create("ndarray", movie[:, None, :, :, None])], None)
    raw = ds.extract(rois, save_summary=False)["raw"][0]
    normalised = movie / movie.mean(0)
    for i, s in enumerate(stats):
        keep = ~s["overlap"]
        lam = s["lam"][keep].astype(np.float64)
        F_norm = normalised[:, s["ypix"][keep], s["xpix"][keep]] @ (lam / lam.sum())
        np.testing.assert_allclose(raw[i], lam.sum() * F_norm, rtol=1e-5)


def test_reader_masks_paths_and_iscell(tmp_path):
    stats, rng = _two_cells()
    movie = rng.uniform(50, 150, (10, 16, 18))
    iscell = np.array([[1, 0.9], [0, 0.4], [1, 0.6]], np.float32)
    plane, _ = _suite2p_folder(tmp_path, movie, stats, iscell=iscell)
    for where in (tmp_path, tmp_path / "suite2p", plane):
        rois = ROIList.load(where, fmt="suite2p")
        assert [r.label for r in rois] == ["0", "2"]
    assert [r.label for r in ROIList.load(plane, fmt="suite2p", iscell="all")] == ["0", "1", "2"]
    assert [r.label for r in ROIList.load(plane, fmt="suite2p", iscell=0.5)] == ["0", "2"]
    assert [r.label for r in ROIList.load(plane, fmt="suite2p", iscell=0.3)] == ["0", "1", "2"]
    rois = ROIList.load(plane, fmt="suite2p", iscell="all")
    for roi, s in zip(rois, stats):
        assert roi.im_shape == (1, 16, 18)
        assert "suite2p" in roi.tags
        dense = np.asarray(roi)[0]
        assert dense.dtype == np.float64
        np.testing.assert_allclose(dense[s["ypix"], s["xpix"]], s["lam"])
        assert np.count_nonzero(dense) == s["npix"]


def test_reader_plane_option(tmp_path):
    stats, rng = _two_cells()
    plane, _ = _suite2p_folder(
        tmp_path, rng.uniform(1, 2, (5, 16, 18)), stats, ops_extra={"nplanes": 3}
    )
    os.rename(plane, plane.parent / "plane2")
    rois = ROIList.load(tmp_path, fmt="suite2p", plane=2)
    assert rois[0].im_shape == (3, 16, 18)
    assert np.asarray(rois[0])[2].any() and not np.asarray(rois[0])[:2].any()
    with pytest.raises(FileNotFoundError, match="plane0"):
        ROIList.load(tmp_path, fmt="suite2p")
    with pytest.raises(ValueError, match="plane 2"):
        ROIList.load(plane.parent / "plane2", fmt="suite2p", plane=1)
    with pytest.raises(ArgumentTypeError, match="plane"):
        ROIList.load(tmp_path, fmt="suite2p", plane="2")
    with pytest.raises(TypeError, match="takes no option"):
        ROIList.load(tmp_path, fmt="suite2p", planes=2)


@pytest.mark.parametrize(
    ("iscell", "error", "match"),
    [
        ("some", ValueError, "iscell"),
        (1.5, ValueError, "iscell"),
        (True, ArgumentTypeError, "iscell"),
        ([1], ArgumentTypeError, "iscell"),
    ],
)
def test_reader_bad_iscell_argument(tmp_path, iscell, error, match):
    stats, rng = _two_cells()
    _suite2p_folder(tmp_path, rng.uniform(1, 2, (5, 16, 18)), stats)
    with pytest.raises(error, match=match):
        ROIList.load(tmp_path, fmt="suite2p", iscell=iscell)


@pytest.mark.parametrize("name", ["stat.npy", "ops.npy", "iscell.npy"])
def test_reader_missing_files_are_named(tmp_path, name):
    stats, rng = _two_cells()
    plane, _ = _suite2p_folder(tmp_path, rng.uniform(1, 2, (5, 16, 18)), stats)
    os.remove(plane / name)
    with pytest.raises(FileNotFoundError, match=name):
        ROIList.load(tmp_path, fmt="suite2p")


def test_reader_without_iscell_reads_all(tmp_path):
    stats, rng = _two_cells()
    plane, _ = _suite2p_folder(tmp_path, rng.uniform(1, 2, (5, 16, 18)), stats)
    os.remove(plane / "iscell.npy")
    assert len(ROIList.load(tmp_path, fmt="suite2p", iscell="all")) == 3


def test_reader_db_npy_instead_of_ops(tmp_path):
    stats, rng = _two_cells()
    plane, _ = _suite2p_folder(tmp_path, rng.uniform(1, 2, (5, 16, 18)), stats)
    os.rename(plane / "ops.npy", plane / "db.npy")
    assert len(ROIList.load(tmp_path, fmt="suite2p")) == 3


def _corrupt(stats, i, **change):
    bad = [dict(s) for s in stats]
    for k, v in change.items():
        if v is None:
            del bad[i][k]
        else:
            bad[i][k] = v
    return bad


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"lam": None}, r"ROI 1 has no field\(s\) \['lam'\]"),
        ({"ypix": np.array([1.5, 2.0]), "xpix": np.array([1, 2]), "lam": np.ones(2)}, "integer"),
        ({"lam": np.array(["a", "b"])}, "1-D numeric"),
        ({"xpix": np.array([[1, 2]])}, "1-D numeric"),
        ({"lam": np.array([1.0])}, "ypix"),
        ({"ypix": np.array([0, 99]), "xpix": np.array([0, 1]), "lam": np.ones(2)}, "outside"),
        ({"ypix": np.array([1, 1]), "xpix": np.array([2, 2]), "lam": np.ones(2)}, "more than"),
        ({"lam": np.array([np.nan] * 2), "ypix": np.arange(2), "xpix": np.arange(2)}, "NaN"),
    ],
)
def test_reader_bad_stat_fields(tmp_path, change, match):
    stats, rng = _two_cells()
    plane, _ = _suite2p_folder(tmp_path, rng.uniform(1, 2, (5, 16, 18)), stats)
    bad = np.empty(3, object)
    bad[:] = _corrupt(load_npy(plane / "stat.npy").tolist(), 1, **change)
    np.save(plane / "stat.npy", bad, allow_pickle=True)
    with pytest.raises(Suite2pFormatError, match=r"stat\.npy") as info:
        ROIList.load(tmp_path, fmt="suite2p", iscell="all")
    assert info.match(match)


def test_reader_bad_files(tmp_path):
    stats, rng = _two_cells()
    plane, _ = _suite2p_folder(tmp_path, rng.uniform(1, 2, (5, 16, 18)), stats)
    np.save(plane / "iscell.npy", np.ones((2, 2)))
    with pytest.raises(Suite2pFormatError, match=r"iscell\.npy"):
        ROIList.load(tmp_path, fmt="suite2p")
    np.save(plane / "iscell.npy", np.ones(3))
    with pytest.raises(Suite2pFormatError, match="no probability column"):
        ROIList.load(tmp_path, fmt="suite2p", iscell=0.5)
    np.save(plane / "ops.npy", np.array({"Ly": 16.0, "Lx": 18}, dtype=object), allow_pickle=True)
    with pytest.raises(Suite2pFormatError, match=r"ops\.npy.*'Ly'"):
        ROIList.load(tmp_path, fmt="suite2p", iscell="all")
    np.save(plane / "ops.npy", np.arange(3))
    with pytest.raises(Suite2pFormatError, match=r"ops\.npy"):
        ROIList.load(tmp_path, fmt="suite2p", iscell="all")
    np.save(plane / "stat.npy", np.arange(3))
    np.save(plane / "ops.npy", np.array({"Ly": 16, "Lx": 18}, dtype=object), allow_pickle=True)
    with pytest.raises(Suite2pFormatError, match=r"stat\.npy.*ROI 0 is a"):
        ROIList.load(tmp_path, fmt="suite2p", iscell="all")
    with pytest.raises(NotADirectoryError):
        read_suite2p(plane / "stat.npy")


class Intruder:
    """Not on the allow-list: unpickling must refuse it, not build it."""


def test_reader_refuses_foreign_objects(tmp_path):
    stats, rng = _two_cells()
    plane, _ = _suite2p_folder(tmp_path, rng.uniform(1, 2, (5, 16, 18)), stats)
    bad = np.empty(1, object)
    bad[0] = {"ypix": np.arange(2), "xpix": np.arange(2), "lam": Intruder()}
    np.save(plane / "stat.npy", bad, allow_pickle=True)
    with pytest.raises(UnsafePickleError):
        ROIList.load(tmp_path, fmt="suite2p", iscell="all")


# --------------------------------------------------------------------------
# the images
# --------------------------------------------------------------------------


def _correlation_reference(frames):
    """Mean Pearson correlation with each existing 8-neighbour, NaN samples set to the mean."""
    _, Y, X = frames.shape
    x = frames.astype(np.float64)
    finite = np.isfinite(x)
    n = finite.sum(axis=0)
    mean = np.where(finite, x, 0.0).sum(axis=0) / np.maximum(n, 1)
    c = np.where(np.isfinite(x), x - mean, 0.0)
    out = np.zeros((Y, X))
    for y in range(Y):
        for xx in range(X):
            rs = []
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if (dy, dx) == (0, 0) or not (0 <= y + dy < Y and 0 <= xx + dx < X):
                        continue
                    a, b = c[:, y, xx], c[:, y + dy, xx + dx]
                    den = np.sqrt((a @ a) * (b @ b))
                    rs.append(a @ b / den if den > 0 else 0.0)
            out[y, xx] = np.mean(rs) if rs else 0.0
    return out


@given(
    shape=st.tuples(st.integers(2, 12), st.integers(1, 5), st.integers(1, 6)),
    seed=st.integers(0, 2**16),
    nan_fraction=st.sampled_from([0.0, 0.1]),
)
def test_local_correlation_image_matches_reference(shape, seed, nan_fraction):
    rng = np.random.default_rng(seed)
    frames = rng.normal(size=shape)
    frames[rng.random(shape) < nan_fraction] = np.nan
    np.testing.assert_allclose(
        local_correlation_image(frames), _correlation_reference(frames), atol=1e-12
    )


def test_enhanced_mean_image():
    img = np.zeros((20, 20))
    img[10, 10] = 5.0
    e = enhanced_mean_image(img)
    assert e.dtype == np.float32 and e.shape == (20, 20)
    assert e.min() >= 0.0 and e.max() <= 1.0 and e[10, 10] == 1.0
    assert not enhanced_mean_image(np.ones((5, 5))).any()
    with pytest.raises(ValueError, match="2-D"):
        enhanced_mean_image(np.ones(5))


def test_object_arrays_with_long_short_bytes_load():
    """numpy pickles 32 to 63 int32 values as SHORT_BINBYTES with a length byte above 127."""
    import tempfile

    arr = np.empty(1, object)
    arr[0] = {"ypix": np.arange(37, dtype=np.int32), "lam": np.ones(50, np.float32)}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "stat.npy"), arr, allow_pickle=True)
        back = load_npy(os.path.join(tmp, "stat.npy"))
    np.testing.assert_array_equal(back[0]["ypix"], np.arange(37))
    np.testing.assert_array_equal(back[0]["lam"], np.ones(50))

"""ROIList.load(folder, fmt='suite2p', plane='all'): every plane of a suite2p run at once.

A multi-plane export of sima_fast is read back whole (each ROI on its own
plane, with the dataset's masks and traces), folders written here in
suite2p's layout check the plane bookkeeping (missing, extra and
disagreeing planes), and roiextractors still reads the export plane by plane.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sima_fast as sf
from sima_fast._legacy import load_npy
from sima_fast._validate import ArgumentTypeError
from sima_fast.io.suite2p import Suite2pFormatError, read_suite2p
from sima_fast.ROI import ROI, ROIList

Z, Y, X = 3, 20, 22

# --------------------------------------------------------------------------
# a three-plane dataset (plane 1 without ROIs), exported
# --------------------------------------------------------------------------


def _ring(cy, cx, r):
    yy, xx = np.mgrid[:Y, :X]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture
def exported(tmp_path):
    """A (Z, Y, X) dataset, ROIs on planes 0 and 2 only, extracted and exported."""
    rng = np.random.default_rng(11)
    placed = [(0, _ring(5, 6, 3)), (0, _ring(13, 15, 3.5)), (2, _ring(9, 9, 4))]
    T = 24
    base = 80.0 + 20.0 * rng.random((Z, Y, X))
    movie = np.repeat(base[None], T, axis=0)
    for z, m in placed:
        movie[:, z] += 30.0 * (rng.random(T) < 0.2)[:, None, None] * m[None]
    movie += rng.normal(0.0, 1.0, movie.shape)
    ds = sf.Sequence.create("ndarray", movie.astype(np.float32)[..., None])
    ds = sf.ImagingDataset([ds], str(tmp_path / "planes.sima"))
    rois = []
    for i, (z, m) in enumerate(placed):
        if i == 2:  # a weighted mask on the last plane
            full = np.zeros((Z, Y, X))
            yy, xx = np.mgrid[:Y, :X]
            full[z] = np.where(m, 0.5 + 0.02 * yy * xx, 0.0)
        else:
            full = np.zeros((Z, Y, X), bool)
            full[z] = m
        rois.append(ROI(mask=full, label=f"r{i}"))
    ds.add_ROIs(ROIList(rois), "cells")
    ds.extract(label="sig", save_summary=False)
    out = tmp_path / "out"
    out.mkdir()
    path = ds.export_suite2p(out, fs=15.0)
    return ds, Path(path), rois, placed


def test_export_round_trips_through_plane_all(exported):
    ds, path, rois, placed = exported
    assert sorted(os.listdir(path)) == ["plane0", "plane1", "plane2"]
    for where in (path.parent, path):
        loaded = ROIList.load(where, fmt="suite2p", plane="all")
        assert [r.label for r in loaded] == ["0/0", "0/1", "2/0"]
        assert [r.id for r in loaded] == ["0/0", "0/1", "2/0"]
    assert all(r.im_shape == (Z, Y, X) for r in loaded)
    assert all("suite2p" in r.tags for r in loaded)
    for got, want, (z, _) in zip(loaded, rois, placed):
        dense = np.asarray(got)
        source = np.asarray(want)
        assert np.flatnonzero(dense.reshape(Z, -1).any(axis=1)).tolist() == [z]
        assert np.array_equal(dense != 0, source != 0)  # same pixels on the same plane
        # suite2p's lam: 1/npix for a boolean mask, the weights (as float32) otherwise
        expected = source / source.sum() if source.dtype == bool else source
        np.testing.assert_allclose(dense, expected, rtol=1e-6)
    raw = np.concatenate(ds.signals()["sig"]["raw"], axis=1)
    again = ds.extract(loaded, label="again", save_summary=False)
    np.testing.assert_allclose(np.concatenate(again["raw"], axis=1), raw, rtol=1e-5)


def test_plane_all_agrees_with_each_plane_and_keeps_the_default(exported):
    _, path, _, _ = exported
    every = ROIList.load(path, fmt="suite2p", plane="all")
    per_plane = [ROIList.load(path, fmt="suite2p", plane=k) for k in range(Z)]
    assert [len(p) for p in per_plane] == [2, 0, 1]
    joined = [r for p in per_plane for r in p]
    for a, b in zip(every, joined, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the default still reads plane 0 alone, labelled by index
    assert [r.label for r in ROIList.load(path, fmt="suite2p")] == ["0", "1"]


def test_iscell_applies_per_plane_and_labels_stay(exported):
    _, path, _, _ = exported
    np.save(path / "plane0" / "iscell.npy", np.array([[0, 0.2], [1, 0.9]], np.float32))
    np.save(path / "plane2" / "iscell.npy", np.array([[1, 0.4]], np.float32))
    assert [r.label for r in ROIList.load(path, fmt="suite2p", plane="all")] == ["0/1", "2/0"]
    kept = ROIList.load(path, fmt="suite2p", plane="all", iscell=0.5)
    assert [r.label for r in kept] == ["0/1"]
    everything = ROIList.load(path, fmt="suite2p", plane="all", iscell="all")
    assert [r.label for r in everything] == ["0/0", "0/1", "2/0"]
    os.remove(path / "plane2" / "iscell.npy")
    with pytest.raises(FileNotFoundError, match=r"plane2.*iscell\.npy"):
        ROIList.load(path, fmt="suite2p", plane="all")


def test_roiextractors_reads_the_multi_plane_export_per_plane(exported):
    roiextractors = pytest.importorskip("roiextractors")
    _, path, _, _ = exported
    every = ROIList.load(path, fmt="suite2p", plane="all")
    for k in range(Z):
        ex = roiextractors.Suite2pSegmentationExtractor(str(path), plane_name=f"plane{k}")
        ours = [r for r in every if r.label.startswith(f"{k}/")]
        assert ex.get_num_rois() == len(ours)
        assert ex.get_frame_shape() == (Y, X)
        for pm, roi in zip(ex.get_roi_pixel_masks(), ours):
            dense = np.asarray(roi)[k]
            ys, xs = pm[:, 0].astype(int), pm[:, 1].astype(int)
            assert sorted(zip(ys, xs)) == sorted(zip(*np.nonzero(dense)))
            np.testing.assert_allclose(pm[:, 2], dense[ys, xs], rtol=1e-6)


def test_plane_folder_and_combined_folder(exported):
    _, path, _, _ = exported
    with pytest.raises(ValueError, match=r"plane 2.*plane=2"):
        ROIList.load(path / "plane2", fmt="suite2p", plane="all")
    # suite2p's combined/ folder: one mosaic image, not planes; read as plane=None reads it
    combined = path / "combined"
    combined.mkdir()
    stat = load_npy(path / "plane2" / "stat.npy")
    for s in stat:
        s["ypix"] = s["ypix"] + Y  # the second tile of a 2 x 1 mosaic
    np.save(combined / "stat.npy", stat, allow_pickle=True)
    np.save(combined / "iscell.npy", np.ones((len(stat), 2), np.float32))
    ops = {"Ly": 2 * Y, "Lx": X, "nplanes": Z}
    np.save(combined / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
    as_all = ROIList.load(combined, fmt="suite2p", plane="all")
    as_none = ROIList.load(combined, fmt="suite2p")
    assert [r.label for r in as_all] == [r.label for r in as_none] == ["0"]
    assert as_all[0].im_shape == (Z, 2 * Y, X)
    np.testing.assert_array_equal(np.asarray(as_all[0]), np.asarray(as_none[0]))
    # ... and a combined/ folder beside the planes is not a plane
    assert len(ROIList.load(path, fmt="suite2p", plane="all")) == 3


# --------------------------------------------------------------------------
# plane bookkeeping on folders written here
# --------------------------------------------------------------------------


def _write_run(root, planes, *, nplanes="count", shapes=None, ops_name="ops.npy"):
    """Write ``root/suite2p/plane<k>`` for each ``k`` in ``planes`` (a dict k -> stats)."""
    top = Path(root) / "suite2p"
    for k, stats in planes.items():
        folder = top / f"plane{k}"
        folder.mkdir(parents=True)
        arr = np.empty(len(stats), object)
        arr[:] = stats
        np.save(folder / "stat.npy", arr, allow_pickle=True)
        np.save(folder / "iscell.npy", np.ones((len(stats), 2), np.float32))
        Ly, Lx = (shapes or {}).get(k, (Y, X))
        ops = {"Ly": Ly, "Lx": Lx}
        if nplanes == "count":
            ops["nplanes"] = len(planes)
        elif nplanes is not None:
            ops["nplanes"] = nplanes
        np.save(folder / ops_name, np.array(ops, dtype=object), allow_pickle=True)
    return top


def _cell(y0, x0, n=4, w=1.0):
    yy, xx = np.mgrid[y0 : y0 + n, x0 : x0 + n]
    return {
        "ypix": yy.ravel().astype(np.int32),
        "xpix": xx.ravel().astype(np.int32),
        "lam": np.full(n * n, w, np.float32),
    }


def test_missing_plane_folder_is_named(tmp_path):
    top = _write_run(tmp_path, {0: [_cell(1, 1)], 2: [_cell(5, 5)]}, nplanes=3)
    with pytest.raises(FileNotFoundError, match=r"plane1: missing.*nplanes=3"):
        ROIList.load(top, fmt="suite2p", plane="all")


def test_missing_first_plane_is_named(tmp_path):
    top = _write_run(tmp_path, {1: [_cell(1, 1)]}, nplanes=2)
    with pytest.raises(FileNotFoundError, match=r"plane0: missing"):
        ROIList.load(top, fmt="suite2p", plane="all")


def test_frame_sizes_must_agree(tmp_path):
    top = _write_run(tmp_path, {0: [_cell(1, 1)], 1: [_cell(2, 2)]}, shapes={1: (Y, X + 1)})
    with pytest.raises(Suite2pFormatError, match=r"plane1.ops\.npy.*plane0.ops\.npy"):
        ROIList.load(top, fmt="suite2p", plane="all")


def test_plane_counts_must_agree(tmp_path):
    top = _write_run(tmp_path, {0: [_cell(1, 1)], 1: [_cell(2, 2)]})
    ops = load_npy(top / "plane1" / "ops.npy").item()
    ops["nplanes"] = 4
    np.save(top / "plane1" / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
    with pytest.raises(Suite2pFormatError, match=r"plane1.ops\.npy: nplanes=4.*plane0.ops\.npy"):
        ROIList.load(top, fmt="suite2p", plane="all")


def test_plane_folder_beyond_nplanes(tmp_path):
    top = _write_run(tmp_path, {0: [_cell(1, 1)], 1: [_cell(2, 2)], 5: []}, nplanes=2)
    with pytest.raises(Suite2pFormatError, match=r"plane5: a plane folder beyond the 2"):
        ROIList.load(top, fmt="suite2p", plane="all")


def test_without_nplanes_the_folders_are_the_planes(tmp_path):
    top = _write_run(tmp_path, {0: [_cell(1, 1)], 1: [], 2: [_cell(3, 4)]}, nplanes=None)
    rois = ROIList.load(top, fmt="suite2p", plane="all")
    assert [r.label for r in rois] == ["0/0", "2/0"]
    assert rois[1].im_shape == (3, Y, X)
    os.rename(top / "plane1", top / "spare")
    with pytest.raises(FileNotFoundError, match=r"plane1: missing.*plane folders found"):
        ROIList.load(top, fmt="suite2p", plane="all")


def test_suite2p_1x_db_npy_and_numeric_order(tmp_path):
    planes = {k: [_cell(k, k, n=2, w=0.25)] for k in range(11)}
    top = _write_run(tmp_path, planes, ops_name="db.npy")
    rois = ROIList.load(tmp_path, fmt="suite2p", plane="all")
    assert [r.label for r in rois] == [f"{k}/0" for k in range(11)]  # plane10 after plane9
    for k, roi in enumerate(rois):
        dense = np.asarray(roi)
        assert dense[k, k : k + 2, k : k + 2].tolist() == [[0.25, 0.25], [0.25, 0.25]]
        assert np.count_nonzero(dense) == 4
    assert not (top / "plane0" / "ops.npy").exists()


def test_no_plane_folders(tmp_path):
    (tmp_path / "suite2p").mkdir()
    with pytest.raises(FileNotFoundError, match="no suite2p plane folders"):
        ROIList.load(tmp_path, fmt="suite2p", plane="all")
    (tmp_path / "notes.txt").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        ROIList.load(tmp_path / "notes.txt", fmt="suite2p", plane="all")


@pytest.mark.parametrize(
    "plane, error",
    [
        ("All", ArgumentTypeError),
        ("2", ArgumentTypeError),
        (1.5, ArgumentTypeError),
        (1.0, ArgumentTypeError),
        (True, ArgumentTypeError),
        (np.bool_(False), ArgumentTypeError),
        ([0, 1], ArgumentTypeError),
        (-1, ValueError),
        (np.int64(-3), ValueError),
    ],
)
def test_bad_plane_values(tmp_path, plane, error):
    top = _write_run(tmp_path, {0: [_cell(1, 1)]})
    with pytest.raises(error, match=r"plane must be .*integer >= 0.*None or 'all'"):
        ROIList.load(top, fmt="suite2p", plane=plane)
    with pytest.raises(error, match="plane must be"):
        read_suite2p(top, plane=plane)


def test_numpy_integer_plane_still_accepted(tmp_path):
    top = _write_run(tmp_path, {0: [_cell(1, 1)], 1: [_cell(6, 6)]})
    rois = ROIList.load(top, fmt="suite2p", plane=np.int32(1))
    assert [r.label for r in rois] == ["0"]
    assert np.asarray(rois[0])[1].any()


# --------------------------------------------------------------------------
# property: 'all' is the planes read one by one, relabelled and in order
# --------------------------------------------------------------------------

_run = st.lists(
    st.lists(
        st.tuples(
            st.integers(0, Y - 3), st.integers(0, X - 3), st.integers(1, 3), st.floats(0.1, 2.0)
        ),
        max_size=3,
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    run=_run,
    dtype=st.sampled_from([np.float32, np.float64]),
    iscell=st.sampled_from(["all", "cells", 0.5]),
)
def test_plane_all_is_the_planes_in_order(run, dtype, iscell):
    with tempfile.TemporaryDirectory() as tmp:
        planes = {}
        for k, cells in enumerate(run):
            stats = []
            for y0, x0, n, w in cells:
                s = _cell(y0, x0, n=n, w=w)
                s["lam"] = s["lam"].astype(dtype)
                stats.append(s)
            planes[k] = stats
        top = _write_run(tmp, planes)
        every = ROIList.load(top, fmt="suite2p", plane="all", iscell=iscell)
        expected = []
        for k in range(len(run)):
            one = ROIList.load(top, fmt="suite2p", plane=k, iscell=iscell)
            expected.extend((f"{k}/{r.label}", np.asarray(r)) for r in one)
        assert [r.label for r in every] == [e[0] for e in expected]
        for roi, (_, dense) in zip(every, expected):
            assert roi.im_shape == (len(run), Y, X)
            np.testing.assert_array_equal(np.asarray(roi), dense)

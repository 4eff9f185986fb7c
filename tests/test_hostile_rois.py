"""Hostile ROI files and ROI values: bounded ImageJ reading, safe member names, finite weights.

Small files that declare huge shapes or decompress to huge members are read in
a child process with an address-space limit and a timeout; the child reports
how long the read took and how much its peak resident memory grew. ROI labels
never become unsafe zip member names, NaN/inf mask weights are refused with the
ROI named, and a mask whose non-zero weight lies outside the frames is refused
the same way by ``add_ROIs`` and by ``extract``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
import zipfile

import h5py
import numpy as np
import pytest
import roifile
from roifile import ROI_OPTIONS, ROI_TYPE, ImagejRoi

import sima_fast.io.imagej as imagej
from sima_fast.imaging import ImagingDataset
from sima_fast.io.imagej import ImageJLimitError, imagej_member_stem
from sima_fast.ROI import ROI, ROIList, check_mask_in_frame
from sima_fast.sequence import Sequence

MIB = 2**20

# --------------------------------------------------------------------------
# Reading in a child process: time, peak-memory growth, outcome
# --------------------------------------------------------------------------

_CHILD = r"""
import json, resource, sys, time
import numpy, scipy.sparse, roifile
import sima_fast.io.imagej
from sima_fast.ROI import ROIList

results = []
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path, shape in json.loads(sys.argv[1]):
    start = time.perf_counter()
    try:
        rois = ROIList.load(path, fmt="ImageJ", im_shape=shape)
        out = {"sizes": [r.size for r in rois] if shape else [len(r.mask) for r in rois]}
    except BaseException as exc:  # report MemoryError too
        out = {"error": type(exc).__name__, "message": str(exc)}
    out["seconds"] = time.perf_counter() - start
    # growth of the peak resident set since the imports, up to the end of this read
    out["grew_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    results.append(out)
print(json.dumps(results))
"""

_AS_LIMIT = 3 * 2**30  # a regression fails with MemoryError instead of exhausting the machine


def _limit_memory():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (_AS_LIMIT, _AS_LIMIT))


def read_in_child(*jobs):
    """Read each ``(path, im_shape)`` in one child process; one result dict per job."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    arg = json.dumps([[str(path), shape] for path, shape in jobs])
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, arg],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        preexec_fn=_limit_memory,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def assert_cheap(out, seconds=2.0, mib=40):
    assert out["seconds"] < seconds, out
    assert out["grew_mib"] < mib, out


def _area_roi(roitype, left, top, right, bottom, **attrs):
    iroi = ImagejRoi()
    iroi.roitype = roitype
    iroi.left, iroi.top, iroi.right, iroi.bottom = left, top, right, bottom
    for key, value in attrs.items():
        setattr(iroi, key, value)
    return iroi


def _zip(path, members):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, iroi in members:
            zf.writestr(name, iroi if isinstance(iroi, bytes) else iroi.tobytes())
    return path


# --------------------------------------------------------------------------
# Shapes declaring huge bounding boxes
# --------------------------------------------------------------------------


def _centred_oval(cx, cy, diameter):
    iroi = _area_roi(ROI_TYPE.OVAL, 0, 0, 8, 8, options=ROI_OPTIONS.SUB_PIXEL_RESOLUTION)
    iroi.xd, iroi.yd = cx - diameter / 2, cy - diameter / 2
    iroi.widthd = iroi.heightd = diameter
    return iroi


def test_huge_oval_is_refused_without_frame_and_clipped_with_it(tmp_path):
    # 64 header bytes declaring a 32000 x 32000 oval: 7.6 GiB of float64 on main
    data = _area_roi(ROI_TYPE.OVAL, 0, 0, 32000, 32000).tobytes()
    assert len(data) <= 128
    single = tmp_path / "huge.roi"
    single.write_bytes(data)
    packed = _zip(tmp_path / "huge.zip", [("cell-7.roi", data)])
    members = [
        ("whole.roi", _centred_oval(24, 32, 32000)),
        ("far.roi", _area_roi(ROI_TYPE.OVAL, 30000, 30000, 32000, 32000)),
        ("rounded.roi", _area_roi(ROI_TYPE.RECT, 0, 0, 32000, 32000, rounded_rect_arc_size=40)),
        ("rect.roi", _area_roi(ROI_TYPE.RECT, 0, 0, 32000, 32000)),
    ]
    clip = _zip(tmp_path / "clip.zip", members)
    one, two, three = read_in_child((single, None), (packed, None), (clip, [1, 64, 48]))
    assert one["error"] == "ImageJLimitError", one
    assert str(single) in one["message"] and "'huge.roi'" in one["message"]
    assert "32000 x 32000" in one["message"] and "IMAGEJ_MAX_MASK_PIXELS" in one["message"]
    assert two["error"] == "ImageJLimitError" and "'cell-7.roi'" in two["message"], two
    for out in (one, two):
        assert_cheap(out, seconds=0.5, mib=10)
    # with the frame: the big oval covers all 64 x 48 pixels; the far one misses the
    # frame; the rounded rectangle loses the pixels of its rounded top-left corner
    assert three["sizes"][:2] == [64 * 48, 0], three
    assert 64 * 48 - 400 < three["sizes"][2] < 64 * 48 and three["sizes"][3] == 64 * 48, three
    assert_cheap(three, seconds=1.0, mib=20)


def test_clipped_mask_equals_reading_then_setting_im_shape(tmp_path):
    iroi = _area_roi(ROI_TYPE.OVAL, 3, 5, 40, 30)
    sub = _area_roi(ROI_TYPE.RECT, 1, 1, 40, 30, rounded_rect_arc_size=12)
    fine = _area_roi(ROI_TYPE.OVAL, 1, 1, 9, 7, options=ROI_OPTIONS.SUB_PIXEL_RESOLUTION)
    fine.xd, fine.yd, fine.widthd, fine.heightd = -2.25, 10.5, 30.5, 12.25
    path = _zip(tmp_path / "s.zip", [("a.roi", iroi), ("b.roi", sub), ("c.roi", fine)])
    for shape in [(1, 20, 25), (3, 64, 64), (1, 8, 9)]:
        clipped = ROIList.load(path, fmt="ImageJ", im_shape=shape)
        later = ROIList.load(path, fmt="ImageJ")
        for a, b in zip(clipped, later, strict=True):
            assert a.im_shape == shape
            b.im_shape = shape
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a shape on a plane outside the frame is refused with the member named
    deep = _area_roi(ROI_TYPE.OVAL, 0, 0, 4, 4, position=5)
    path = _zip(tmp_path / "deep.zip", [("deep.roi", deep)])
    with pytest.raises(ValueError, match=r"'deep\.roi'.*plane 4, outside the 2 plane"):
        ROIList.load(path, fmt="ImageJ", im_shape=(2, 8, 8))


def test_far_away_or_deep_or_non_finite_shapes_without_frame(tmp_path):
    far = _area_roi(ROI_TYPE.OVAL, 30000, 30000, 30010, 30010)
    deep = _area_roi(ROI_TYPE.OVAL, 0, 0, 64, 64, position=2**31 - 1)
    huge = _area_roi(ROI_TYPE.OVAL, 1, 1, 9, 7, options=ROI_OPTIONS.SUB_PIXEL_RESOLUTION)
    huge.xd, huge.yd, huge.widthd, huge.heightd = 0.0, 0.0, 3e38, 2.0
    nan = _area_roi(ROI_TYPE.OVAL, 1, 1, 9, 7, options=ROI_OPTIONS.SUB_PIXEL_RESOLUTION)
    nan.xd, nan.yd, nan.widthd, nan.heightd = 0.0, 0.0, float("nan"), 2.0
    for name, iroi in [("far.roi", far), ("deep.roi", deep), ("huge.roi", huge)]:
        path = _zip(tmp_path / "x.zip", [(name, iroi)])
        with pytest.raises(ImageJLimitError, match=re.escape(repr(name))):
            ROIList.load(path, fmt="ImageJ")
    path = _zip(tmp_path / "x.zip", [("nan.roi", nan)])
    with pytest.raises(ValueError, match=r"'nan\.roi'.*not finite"):
        ROIList.load(path, fmt="ImageJ")
    # with the frame, all of them are cheap (far: empty; deep: plane outside the frame)
    path = _zip(tmp_path / "x.zip", [("far.roi", far), ("huge.roi", huge)])
    sizes = [r.size for r in ROIList.load(path, fmt="ImageJ", im_shape=(16, 16))]
    assert sizes == [0, 0]  # both ellipses miss every pixel centre of the frame


def test_huge_polygons_are_cheap_and_clipped_when_rasterised(tmp_path):
    big = ImagejRoi.frompoints(np.array([[-30000, -30000], [32000, -30000], [32000, 32000]]))
    members = [("tri.roi", big), ("rect.roi", _area_roi(ROI_TYPE.RECT, 0, 0, 32000, 32000))]
    (out,) = read_in_child((_zip(tmp_path / "poly.zip", members), [1, 32, 32]))
    assert out["sizes"][1] == 32 * 32 and 0 < out["sizes"][0] < 32 * 32, out
    assert_cheap(out, seconds=1.0, mib=20)


# --------------------------------------------------------------------------
# Zip bombs, lying headers, too many members, oversized .roi files
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A ~200 KiB zip whose one member decompresses to 200 MiB (written in 1 MiB steps)."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    zero = bytes(MIB)
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open("bomb.roi", "w") as fh,
    ):
        fh.write(_area_roi(ROI_TYPE.RECT, 0, 0, 4, 4).tobytes())
        for _ in range(200):
            fh.write(zero)
    assert os.path.getsize(path) < 2 * MIB
    return path


def _lie_about_size(src, dst, declared):
    """Copy a one-member zip, declaring ``declared`` uncompressed bytes in both headers."""
    data = bytearray(src.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = declared.to_bytes(4, "little")
    data[22:26] = declared.to_bytes(4, "little")  # the local header starts the file
    dst.write_bytes(bytes(data))
    with zipfile.ZipFile(dst) as zf:
        assert zf.infolist()[0].file_size == declared
    return dst


def test_zip_bomb_is_refused_from_its_declared_size_and_lying_headers_stop_early(bomb, tmp_path):
    small = _lie_about_size(bomb, tmp_path / "small.zip", 1000)
    capped = _lie_about_size(bomb, tmp_path / "capped.zip", imagej.IMAGEJ_MAX_MEMBER_BYTES)
    honest, lie_small, lie_capped = read_in_child((bomb, None), (small, None), (capped, None))
    assert honest["error"] == "ImageJLimitError", honest
    assert str(bomb) in honest["message"] and "'bomb.roi'" in honest["message"]
    with zipfile.ZipFile(bomb) as zf:
        declared = zf.infolist()[0].file_size
    assert declared > 200 * MIB and f"declares {declared} bytes" in honest["message"]
    assert f"IMAGEJ_MAX_MEMBER_BYTES = {imagej.IMAGEJ_MAX_MEMBER_BYTES}" in honest["message"]
    assert_cheap(honest, seconds=0.5, mib=10)
    # a header declaring fewer bytes: decompression stops there and the CRC fails
    for out, path in ((lie_small, small), (lie_capped, capped)):
        assert out["error"] == "ValueError", out
        assert str(path) in out["message"] and "'bomb.roi'" in out["message"], out
        assert "CRC" in out["message"], out
    assert_cheap(lie_small, seconds=0.5, mib=10)
    assert_cheap(lie_capped, seconds=1.0, mib=imagej.IMAGEJ_MAX_MEMBER_BYTES / MIB + 20)


def test_member_count_and_total_size_caps(tmp_path, monkeypatch):
    square = ImagejRoi.frompoints(np.array([[1, 1], [5, 1], [5, 5]])).tobytes()
    path = _zip(tmp_path / "many.zip", [(f"m{i}.roi", square) for i in range(12)])
    assert len(ROIList.load(path, fmt="ImageJ")) == 12
    monkeypatch.setattr(imagej, "IMAGEJ_MAX_MEMBERS", 11)
    with pytest.raises(ImageJLimitError, match=r"12 members, more than IMAGEJ_MAX_MEMBERS = 11"):
        ROIList.load(path, fmt="ImageJ")
    monkeypatch.setattr(imagej, "IMAGEJ_MAX_MEMBERS", 12)
    monkeypatch.setattr(imagej, "IMAGEJ_MAX_TOTAL_BYTES", 5 * len(square))
    with pytest.raises(ImageJLimitError, match=r"IMAGEJ_MAX_TOTAL_BYTES.*'m5\.roi'"):
        ROIList.load(path, fmt="ImageJ")


def test_oversized_single_roi_file_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "big.roi"
    path.write_bytes(ImagejRoi.frompoints(np.array([[1, 1], [5, 1], [5, 5]])).tobytes())
    size = os.path.getsize(path)
    monkeypatch.setattr(imagej, "IMAGEJ_MAX_MEMBER_BYTES", size - 1)
    with pytest.raises(ImageJLimitError, match=rf"big\.roi: .*holds {size} bytes"):
        ROIList.load(path, fmt="ImageJ")
    monkeypatch.setattr(imagej, "IMAGEJ_MAX_MEMBER_BYTES", size)
    assert len(ROIList.load(path, fmt="ImageJ")) == 1


# --------------------------------------------------------------------------
# Member names made from hostile labels
# --------------------------------------------------------------------------

HOSTILE_LABELS = [
    "../../evil",
    "/abs/path",
    "C:\\windows\\evil",
    "\x00x",
    ".",
    "..",
    ".hidden",
    "a\nb",
    "\u202eexe.roi",
    "CON",
    "nul.txt",
    "A",
    "a",
    "a/b",
    "a_b",
    "x" * 400,
    "漢字" * 60,
    None,
    "ok",
    "ok",
]


def _safe_member(name):
    stem = name[:-4]
    return (
        name.endswith(".roi")
        and "/" not in name
        and "\\" not in name
        and ".." not in name
        and not name.startswith((".", " "))
        and not any(unicodedata.category(c).startswith("C") for c in name)
        and not any(c in ':*?"<>|' for c in name)
        and stem.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL"}
        and len(name.encode("utf-8")) <= 255
    )


def test_hostile_labels_give_safe_unique_members_and_round_trip(tmp_path):
    square = np.array([[1, 1], [5, 1], [5, 5], [1, 5]])
    rois = ROIList([ROI(polygons=square + k, label=lab) for k, lab in enumerate(HOSTILE_LABELS)])
    path = tmp_path / "out" / "set.zip"
    path.parent.mkdir()
    rois.save(path, fmt="ImageJ")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert len(names) == len(HOSTILE_LABELS)
        assert all(_safe_member(n) for n in names), names
        assert len({n.casefold() for n in names}) == len(names)
        unpack = tmp_path / "unpacked"
        zf.extractall(unpack)
    assert sorted(os.listdir(unpack)) == sorted(names)  # nothing written elsewhere
    assert sorted(os.listdir(tmp_path)) == ["out", "unpacked"]
    back = ROIList.load(path, fmt="ImageJ")
    expected = [*HOSTILE_LABELS[:-3], "roi-1", "ok", "ok-1"]
    assert [r.label for r in back] == expected
    for a, b in zip(rois, back, strict=True):
        np.testing.assert_array_equal(a.rings[0], b.rings[0])
    # ImageJ's name field holds the label too
    assert [r.name for r in roifile.roiread(path)] == expected
    # the unpacked files read as the same set
    for name, label in zip(names, expected, strict=True):
        (one,) = ROIList.load(unpack / name, fmt="ImageJ")
        assert one.label == label


def test_member_stem_rules():
    assert imagej_member_stem("../../evil") == "____evil"
    assert imagej_member_stem("a..b") == "a_b"
    assert imagej_member_stem("..") == imagej_member_stem("\x00") == "roi"
    assert imagej_member_stem("cell 3") == "cell 3" and imagej_member_stem("lpt1") == "lpt1_"
    assert imagej_member_stem("nul.txt") == "nul_.txt" and imagej_member_stem("CON ") == "CON_"
    assert len(imagej_member_stem("漢" * 200).encode()) <= 200
    # ordinary labels are kept as they are, so ordinary member names do not change
    for label in ["cell_000", "0001-0023", "two-1", "Région 5", "a.b"]:
        assert imagej_member_stem(label) == label


def test_foreign_name_field_does_not_replace_member_name(tmp_path):
    # roifile gives every new ROI a made-up name; ImageJ may store one too
    pts = np.array([[1, 1], [5, 1], [5, 5]])
    path = _zip(
        tmp_path / "f.zip",
        [
            ("cellA.roi", ImagejRoi.frompoints(pts, name="something else")),
            ("cellB-2.roi", ImagejRoi.frompoints(pts, name="cellB")),
            ("cellC.roi", ImagejRoi.frompoints(pts, name="cell/C")),
        ],
    )
    assert [r.label for r in ROIList.load(path, fmt="ImageJ")] == ["cellA", "cellB", "cellC"]


# --------------------------------------------------------------------------
# Non-finite mask weights
# --------------------------------------------------------------------------


def _dataset(shape=(1, 32, 32), savedir=None):
    arr = np.random.default_rng(1).uniform(1, 2, (4, *shape, 1)).astype(np.float32)
    return ImagingDataset([Sequence.create("ndarray", arr)], savedir)


def _weights(bad=None, where=(4, 2)):
    w = np.zeros((1, 6, 6))
    w[0, 1:3, 1:3] = 0.5
    if bad is not None:
        w[(0, *where)] = bad
    return w


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weight_is_refused_at_extraction_naming_the_roi(bad):
    ds = _dataset((1, 6, 6))
    good = ROI(mask=_weights(), label="fine")
    rois = ROIList([good, ROI(mask=_weights(bad), label="cell 4")])  # segmentation may hold them
    pattern = r"rois\[1\] \(label 'cell 4'\): mask plane 0 has 1 non-finite .*row 4, column 2"
    with pytest.raises(ValueError, match=pattern):
        ds.extract(rois)
    # the same through add_ROIs, and with a float32 weight on a second plane
    ds.add_ROIs(rois, "s")
    with pytest.raises(ValueError, match=pattern):
        ds.extract(ds.ROIs["s"])
    deep = _dataset((2, 6, 6))
    w = np.zeros((2, 6, 6), np.float32)
    w[0, 1, 1], w[1, 3, 5] = 1.0, bad
    with pytest.raises(ValueError, match=r"rois\[0\]: mask plane 1 has 1 non-finite.*column 5"):
        deep.extract(ROIList([ROI(mask=w)]))
    assert np.isfinite(ds.extract(ROIList([good]))["raw"][0]).all()


def test_non_finite_weight_in_files_is_refused_at_extraction(tmp_path):
    # an ROI file patched on disk ...
    path = tmp_path / "rois.h5"
    ROIList([ROI(mask=_weights(), label="fine"), ROI(mask=_weights(), label="bad")]).save(
        path, label="set"
    )
    with h5py.File(path, "r+") as f:
        f["set/rois/1/mask/0/data"][0] = np.nan
    ds = _dataset((1, 6, 6))
    with pytest.raises(ValueError, match=r"rois\[1\] \(label 'bad'\): .*non-finite"):
        ds.extract(ROIList.load(path))
    # ... and a dataset's own ROI file
    saved = _dataset((1, 6, 6), str(tmp_path / "d.sima"))
    saved.add_ROIs(ROIList([ROI(mask=_weights(), label="c")]), "set")
    with h5py.File(tmp_path / "d.sima" / "rois.h5", "r+") as f:
        f["set/rois/0/mask/0/data"][1] = np.inf
    again = ImagingDataset.load(str(tmp_path / "d.sima"))
    with pytest.raises(ValueError, match=r"rois\[0\] \(label 'c'\): mask plane 0 has 1 non-fin"):
        again.extract(again.ROIs["set"])
    with pytest.raises(ValueError, match="non-finite"):
        again.extract()  # the most recent set


def test_malformed_roi_in_a_file_names_file_and_index(tmp_path):
    path = tmp_path / "rois.h5"
    ROIList([ROI(mask=_weights(), label="a"), ROI(mask=_weights(), label="b")]).save(
        path, label="set"
    )
    with h5py.File(path, "r+") as f:
        f["set/rois/1/mask/0"].attrs["shape"] = np.array([6, 6, 6])
    with pytest.raises(ValueError, match=r"rois\.h5: ROI set '/set', ROI 1: "):
        ROIList.load(path)


# --------------------------------------------------------------------------
# Masks larger than the frame: same refusal through add_ROIs and extract
# --------------------------------------------------------------------------


def _oversized(label="big"):
    m = np.zeros((40, 40), bool)
    m[30:36, 30:36] = True  # crosses the 32 x 32 frame's corner
    return ROI(mask=m, label=label)


def test_oversized_mask_refused_by_extract_and_add_rois_alike():
    ds = _dataset()
    pattern = (
        r"\[0\] \(label 'big'\): mask plane 0 of shape \(40, 40\) does not fit frames of "
        r"\(Z, Y, X\) = \(1, 32, 32\): it has non-zero weight up to row 35, column 35"
    )
    with pytest.raises(ValueError, match="rois" + pattern):
        ds.extract(ROIList([_oversized()]))
    with pytest.raises(ValueError, match="ROIs" + pattern):
        ds.add_ROIs(ROIList([_oversized()]), "x")
    assert "x" not in ds.ROIs
    # an im_shape equal to the frame no longer hides the lost pixels either
    preset = _oversized()
    preset.im_shape = (1, 32, 32)
    with pytest.raises(ValueError, match="ROIs" + pattern):
        ds.add_ROIs(ROIList([preset]), "x")
    with pytest.raises(ValueError, match="rois" + pattern):
        ds.extract(ROIList([preset]))
    # a plane beyond the frames' planes
    deep = ROI(mask=np.stack([np.zeros((32, 32), bool), np.ones((32, 32), bool)]), label="d")
    with pytest.raises(ValueError, match=r"'d'\): mask plane 1 .*does not fit frames"):
        ds.add_ROIs(ROIList([deep]), "x")


def test_zero_margins_are_not_content():
    ds = _dataset()
    m = np.zeros((40, 40), bool)
    m[2:6, 3:7] = True
    ds.add_ROIs(ROIList([ROI(mask=m, label="fits")]), "ok")
    rec = ds.extract(ds.ROIs["ok"])
    assert np.isfinite(rec["raw"][0]).all()
    assert ds.ROIs["ok"][0].size == 16


def test_load_with_im_shape_refuses_oversized_masks(tmp_path):
    path = tmp_path / "r.h5"
    ROIList([_oversized("a")]).save(path, label="s")
    with pytest.raises(
        ValueError, match=r"r\.h5: ROI 0 \(label 'a'\): mask plane 0 .*does not fit"
    ):
        ROIList.load(path, im_shape=(32, 32))
    (roi,) = ROIList.load(path, im_shape=(1, 40, 40))
    assert roi.im_shape == (1, 40, 40) and roi.size == 36


def test_check_mask_in_frame_ignores_polygons_and_zero_planes():
    check_mask_in_frame(ROI(polygons=[[0, 0], [90, 0], [90, 90]]), (8, 8), "p")
    m = np.zeros((3, 4, 4))
    m[0, 1, 1] = 2.0
    check_mask_in_frame(ROI(mask=m), (1, 2, 2), "w")
    with pytest.raises(ValueError, match=r"^w: mask plane 0 .*row 1, column 1$"):
        check_mask_in_frame(ROI(mask=m), (1, 1, 4), "w")

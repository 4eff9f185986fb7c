"""``sima-fast extract --neuropil`` and its options (docs/contract.md#neuropil)."""

from __future__ import annotations

import numpy as np
import pytest

from sima_fast import ImagingDataset, Sequence
from sima_fast.cli import main
from sima_fast.ROI import ROI, ROIList


def make_dir(tmp_path):
    rng = np.random.default_rng(11)
    movie = rng.uniform(50, 200, (20, 1, 40, 40, 1)).astype(np.float32)
    path = str(tmp_path / "d.sima")
    ds = ImagingDataset([Sequence.create("ndarray", movie)], path)
    yy, xx = np.ogrid[:40, :40]
    rois = [
        ROI(mask=((yy - cy) ** 2 + (xx - cx) ** 2 <= 9)[None]) for cy, cx in [(10, 10), (28, 25)]
    ]
    ds.add_ROIs(ROIList(rois), "cells")
    return path


def test_extract_with_neuropil_options_stores_them(tmp_path, capsys):
    path = make_dir(tmp_path)
    args = ["extract", path, "--no-summary", "--quiet", "--label", "np"]
    args += ["--neuropil-min-pixels", "100", "--neuropil-coefficient", "0.5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "neuropil: surrounds of median" in out and "r = 0.5" in out
    rec = ImagingDataset.load(path).signals()["np"]
    p = rec["neuropil_params"]
    assert p["min_pixels"] == 100 and not p["estimated"]
    np.testing.assert_array_equal(p["coefficient"], [0.5, 0.5])
    assert (p["n_pixels"] >= 100).all()
    assert rec["neuropil"][0].shape == rec["raw"][0].shape


def test_plain_flag_uses_the_defaults_and_no_flag_none(tmp_path):
    path = make_dir(tmp_path)
    assert main(["extract", path, "--no-summary", "--quiet", "--label", "a", "--neuropil"]) == 0
    assert main(["extract", path, "--no-summary", "--quiet", "--label", "b"]) == 0
    signals = ImagingDataset.load(path).signals()
    assert signals["a"]["neuropil_params"]["min_pixels"] == 350
    assert "neuropil" not in signals["b"]


@pytest.mark.parametrize(
    ("option", "value", "flag"),
    [
        ("--neuropil-inner", "-1", "--neuropil-inner"),
        ("--neuropil-outer", "1", "--neuropil-outer"),
        ("--neuropil-min-pixels", "0", "--neuropil-min-pixels"),
        ("--neuropil-coefficient", "2", "--neuropil-coefficient"),
        ("--neuropil-coefficient", "fit", "--neuropil-coefficient"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_option(tmp_path, capsys, option, value, flag):
    path = make_dir(tmp_path)
    assert main(["extract", path, "--no-summary", "--quiet", option, value]) == 2
    assert flag in capsys.readouterr().err
    assert ImagingDataset.load(path).signals() == {}

"""``delete_ROIs`` of a label that does not exist: SIMA's silent no-op, with a warning."""

from __future__ import annotations

import numpy as np
import pytest

from sima_fast import ImagingDataset, Sequence
from sima_fast.ROI import ROI, ROIList


def _dataset(tmp_path, saved):
    movie = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 1, 6, 8, 1)
    path = str(tmp_path / "d.sima") if saved else None
    ds = ImagingDataset([Sequence.create("ndarray", movie)], path)
    mask = np.zeros((6, 8), dtype=bool)
    mask[1:3, 2:5] = True
    ds.add_ROIs(ROIList([ROI(mask=mask, id="a")]), "cells")
    return ds


@pytest.mark.parametrize("saved", [False, True])
def test_absent_label_removes_nothing_and_warns(tmp_path, saved):
    ds = _dataset(tmp_path, saved)
    with pytest.warns(UserWarning, match=r"no ROI set labelled 'foo', nothing removed; .*cells"):
        ds.delete_ROIs("foo")
    assert list(ds.ROIs) == ["cells"]
    ds.delete_ROIs("cells")
    assert list(ds.ROIs) == []
    with pytest.warns(UserWarning, match="available: \\[\\]"):
        ds.delete_ROIs("cells")
    if saved:
        assert list(ImagingDataset.load(str(tmp_path / "d.sima")).ROIs) == []

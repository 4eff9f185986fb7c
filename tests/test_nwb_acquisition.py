"""NWB sequences give the acquisition metadata their TwoPhotonSeries and ImagingPlane record."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from sima_fast import ImagingDataset, Sequence  # noqa: E402
from sima_fast.ROI import ROI, ROIList  # noqa: E402

T, Y, X = 20, 6, 8

META = {
    "session_description": "acquisition metadata round trip",
    "session_start_time": "2025-03-04T09:00:00+00:00",
    "subject": {"subject_id": "s1", "species": "Mus musculus", "sex": "F", "age": "P70D"},
    "imaging_plane": {
        "excitation_lambda": 920.0,
        "indicator": "GCaMP6s",
        "location": "CA1",
        "optical_channel": {"emission_lambda": 510.0},
    },
}


def _movie(seed=0):
    return np.random.default_rng(seed).uniform(10, 90, (T, Y, X)).astype(np.float32)


def _write_other_tool(path, grid=None, unit=None, timestamps=None, channel="Green"):
    """An NWB file written with pynwb directly, as another tool would."""
    from pynwb.ophys import OpticalChannel, TwoPhotonSeries

    f = pynwb.NWBFile("other", "id-acq", datetime(2025, 1, 2, tzinfo=timezone.utc))
    extra = {}
    if grid is not None:
        extra["grid_spacing"] = grid
    if unit is not None:
        extra["grid_spacing_unit"] = unit
    plane = f.create_imaging_plane(
        name="ImagingPlane",
        optical_channel=OpticalChannel(name=channel, description="d", emission_lambda=520.0),
        device=f.create_device(name="scope"),
        excitation_lambda=940.0,
        indicator="GCaMP7f",
        location="VISp",
        imaging_rate=30.0,
        **extra,
    )
    timing = {"rate": 7.5} if timestamps is None else {"timestamps": timestamps}
    data = _movie().transpose(0, 2, 1)  # (t, x, y)
    f.add_acquisition(
        TwoPhotonSeries(name="movie", data=data, imaging_plane=plane, unit="n.a.", **timing)
    )
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def test_our_export_reads_back_rate_pixel_size_and_plane_details(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    seq = Sequence.create("ndarray", _movie()[:, None, :, :, None])
    seq.acquisition_metadata = {"frame_rate": 12.5, "pixel_size_um": (0.8, 0.6)}
    ds = ImagingDataset([seq], None)
    mask = np.zeros((1, Y, X), bool)
    mask[0, 1:3, 2:5] = True
    ds.add_ROIs(ROIList([ROI(mask=mask)]), "cells")
    path = ds.export_nwb(tmp_path / "ours.nwb", metadata=META, frames=True)
    meta = Sequence.create("NWB", path).acquisition_metadata
    assert meta.frame_rate == pytest.approx(12.5)
    assert meta.pixel_size_um == pytest.approx((0.8, 0.6))
    assert (meta.n_planes, meta.n_channels) == (1, 1)
    assert meta.extra["indicator"] == "GCaMP6s"
    assert meta.extra["emission_lambda"] == pytest.approx(510.0)


@pytest.mark.parametrize(
    ("grid", "unit", "want"),
    [
        ([0.5e-6, 0.75e-6], None, (0.75, 0.5)),  # NWB's default unit, metres; (x, y) -> (y, x)
        ([1.5, 1.25], "micrometers", (1.25, 1.5)),
        ([0.002, 0.002], "mm", (2.0, 2.0)),
        ([1.0, 1.0], "furlongs", None),  # a unit we cannot convert: no pixel size
        (None, None, None),
    ],
)
def test_other_tools_files_give_pixel_size_in_micrometres(tmp_path, grid, unit, want):
    path = _write_other_tool(tmp_path / "o.nwb", grid=grid, unit=unit)
    meta = Sequence.create("NWB", path).acquisition_metadata
    assert meta.frame_rate == pytest.approx(7.5)  # the series' rate, not the plane's 30 Hz
    if want is None:
        assert meta.pixel_size_um is None
    else:
        assert meta.pixel_size_um == pytest.approx(want)
    assert meta.channel_names == ("Green",)
    assert meta.extra["location"] == "VISp"


def test_timestamps_give_the_rate_and_the_default_channel_name_is_not_a_name(tmp_path):
    stamps = 100.0 + np.arange(T) / 20.0
    path = _write_other_tool(tmp_path / "ts.nwb", timestamps=stamps, channel="OpticalChannel")
    seq = Sequence.create("NWB", path)
    assert seq.rate is None
    meta = seq.acquisition_metadata
    assert meta.frame_rate == pytest.approx(20.0)
    assert meta.channel_names is None
    # a user's value still wins, and a view scales the rate
    assert seq[::2].acquisition_metadata.frame_rate == pytest.approx(10.0)
    seq.acquisition_metadata = {"frame_rate": 19.9}
    assert seq.acquisition_metadata.frame_rate == pytest.approx(19.9)

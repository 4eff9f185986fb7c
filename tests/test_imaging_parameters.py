"""sima_fast.imaging_parameters: Prairie XML and Scanbox .mat metadata, in SIMA's dictionaries."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

import sima_fast as sima
from sima_fast import imaging_parameters as ip

PV52 = """<?xml version="1.0" encoding="utf-8"?>
<PVScan version="5.4.64.100" date="1/2/2026 10:00:00 AM" notes="">
  <SystemIDs SystemID="1234" />
  <PVStateShard>
    <PVStateValue key="activeMode" value="Galvo" />
    <PVStateValue key="framePeriod" value="0.0333" />
    <PVStateValue key="linesPerFrame" value="256" />
    <PVStateValue key="bitDepth" value="13" />
    <PVStateValue key="laserPower">
      <IndexedValue index="0" value="31.5" description="Pockels" />
      <IndexedValue index="1" value="off" />
    </PVStateValue>
    <PVStateValue key="micronsPerPixel">
      <IndexedValue index="XAxis" value="0.8" />
      <IndexedValue index="YAxis" value="0.8" />
    </PVStateValue>
    <PVStateValue key="positionCurrent">
      <SubindexedValues index="XAxis">
        <SubindexedValue subindex="0" value="-120.25" />
      </SubindexedValues>
      <SubindexedValues index="ZAxis">
        <SubindexedValue subindex="0" value="40" description="Z Focus" />
        <SubindexedValue subindex="1" value="15" description="Piezo" />
      </SubindexedValues>
    </PVStateValue>
  </PVStateShard>
  <Sequence type="TSeries Timed Element" cycle="1">
    <PVStateShard>
      <PVStateValue key="framePeriod" value="99" />
    </PVStateShard>
  </Sequence>
</PVScan>
"""

PV4 = """<?xml version="1.0"?>
<PVScan version="4.3.2.24" date="3/4/2013">
  <PVStateShard>
    <Key key="objectiveLens" permissions="Read, Write" value="Nikon 16X" />
    <Key key="dwellTime" permissions="Read" value="3.2" />
    <Key key="pixelsPerLine" value="512" />
  </PVStateShard>
</PVScan>
"""


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# Prairie
# --------------------------------------------------------------------------


def test_prairie_52_values_indexed_and_subindexed(tmp_path):
    path = write(tmp_path / "TSeries-001.xml", PV52)
    params = ip.prairie_imaging_parameters(str(path))
    assert params == {
        "activeMode": "Galvo",
        "framePeriod": 0.0333,  # the first state shard only
        "linesPerFrame": 256.0,
        "bitDepth": 13.0,
        "laserPower": {"0": 31.5, "1": "off"},
        "micronsPerPixel": {"XAxis": 0.8, "YAxis": 0.8},
        "positionCurrent": {"XAxis": {"0": -120.25}, "ZAxis": {"Z Focus": 40.0, "Piezo": 15.0}},
    }
    assert isinstance(params["linesPerFrame"], float)


def test_prairie_before_52_reads_flat_keys(tmp_path):
    path = write(tmp_path / "old.xml", PV4)
    assert ip.prairie_imaging_parameters(path) == {  # a pathlib.Path works too
        "objectiveLens": "Nikon 16X",
        "dwellTime": 3.2,
        "pixelsPerLine": 512.0,
    }


def test_prairie_version_decides_the_layout(tmp_path):
    # a 5.2 file that holds only Key elements gives nothing, as in SIMA
    text = PV4.replace('version="4.3.2.24"', 'version="5.2.0"')
    assert ip.prairie_imaging_parameters(write(tmp_path / "k.xml", text)) == {}
    # version numbers compare numerically: 5.10 is after 5.2
    text = PV52.replace('version="5.4.64.100"', 'version="5.10.1"')
    assert ip.prairie_imaging_parameters(write(tmp_path / "v.xml", text))["bitDepth"] == 13.0
    text = PV52.replace('version="5.4.64.100"', 'version="5.1.9"')
    assert ip.prairie_imaging_parameters(write(tmp_path / "w.xml", text)) == {}


def test_prairie_tif_finds_the_xml_of_its_recording(tmp_path):
    write(tmp_path / "TSeries-001.xml", PV52)
    tif = tmp_path / "TSeries-001_Cycle00001_Ch2_000001.ome.tif"
    tif.write_bytes(b"")
    params = ip.prairie_imaging_parameters(str(tif))
    assert params["activeMode"] == "Galvo"
    other = tmp_path / "Other-002_Cycle00001_Ch2_000001.ome.tif"
    other.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"Other-002\.xml"):
        ip.prairie_imaging_parameters(str(other))


def test_prairie_env_file_without_version_is_read_by_content(tmp_path):
    env = """<?xml version="1.0"?>
<Environment>
  <PVStateShard>
    <PVStateValue key="dwellTime" value="0.4" />
    <PVStateValue key="opticalZoom" value="2" />
  </PVStateShard>
</Environment>
"""
    path = write(tmp_path / "TSeries-001.env", env)
    assert ip.prairie_imaging_parameters(str(path)) == {"dwellTime": 0.4, "opticalZoom": 2.0}
    old_env = PV4.replace('<PVScan version="4.3.2.24" date="3/4/2013">', "<PVScan>")
    path = write(tmp_path / "old.env", old_env)
    assert ip.prairie_imaging_parameters(str(path))["dwellTime"] == 3.2


def test_prairie_without_state_shard_gives_an_empty_dict(tmp_path):
    path = write(tmp_path / "empty.xml", '<PVScan version="5.4"><Sequence /></PVScan>')
    assert ip.prairie_imaging_parameters(str(path)) == {}


@pytest.mark.parametrize(
    "text",
    [
        # entity expansion ("billion laughs")
        '<?xml version="1.0"?><!DOCTYPE PVScan [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<PVScan version="5.4"><PVStateShard><PVStateValue key="x" value="&b;" />'
        "</PVStateShard></PVScan>",
        # an external entity (a file on this machine)
        '<?xml version="1.0"?><!DOCTYPE PVScan [<!ENTITY secret SYSTEM "file:///etc/hostname">]>'
        '<PVScan version="5.4"><PVStateShard><PVStateValue key="x" value="&secret;" />'
        "</PVStateShard></PVScan>",
        # a document type alone
        '<?xml version="1.0"?><!DOCTYPE PVScan SYSTEM "pv.dtd"><PVScan version="5.4" />',
    ],
)
def test_prairie_refuses_document_types_and_entities(tmp_path, text):
    path = write(tmp_path / "evil.xml", text)
    with pytest.raises(ValueError, match="declares a document type or entities"):
        ip.prairie_imaging_parameters(str(path))


def test_prairie_bad_files_and_arguments(tmp_path):
    with pytest.raises(ValueError, match="not well-formed XML"):
        ip.prairie_imaging_parameters(str(write(tmp_path / "cut.xml", "<PVScan><PVState")))
    with pytest.raises(ValueError, match=r"PrairieView \.xml or \.env file"):
        ip.prairie_imaging_parameters(str(write(tmp_path / "p.txt", PV52)))
    with pytest.raises(FileNotFoundError, match="no PrairieView metadata file"):
        ip.prairie_imaging_parameters(str(tmp_path / "missing.xml"))
    with pytest.raises(TypeError, match="filepath must be a path"):
        ip.prairie_imaging_parameters(3)


# --------------------------------------------------------------------------
# Scanbox
# --------------------------------------------------------------------------


def scanbox(tmp_path, name="mouse1_000_001", sbx_bytes=0, **info):
    """A Scanbox info .mat (written by scipy) and an .sbx data file of the given size."""
    mat = tmp_path / f"{name}.mat"
    scipy.io.savemat(str(mat), {"info": info})
    (tmp_path / f"{name}.sbx").write_bytes(b"\0" * sbx_bytes)
    return str(mat)


def test_scanbox_version_2_counts_frames_from_the_data_size(tmp_path):
    rows, cols = 12, 20
    frame_bytes = cols * rows * 2 * 2  # two channels, two bytes each
    mat = scanbox(
        tmp_path,
        sbx_bytes=7 * frame_bytes,
        sz=np.array([rows, cols]),
        recordsPerBuffer=rows,
        channels=1,
        scanbox_version=2,
        scanmode=1,
        resfreq=7930,
        config={"magnification": 2, "objective": "Nikon 16x"},
    )
    info = ip.scanbox_imaging_parameters(mat)
    assert info["nchannels"] == 2
    assert info["nsamples"] == frame_bytes
    assert info["max_idx"] == 6  # seven frames, indices 0..6
    assert info["nplanes"] == 1
    assert info["resfreq"] == 7930
    np.testing.assert_array_equal(info["sz"], [rows, cols])
    assert info["config"] == {"magnification": 2, "objective": "Nikon 16x"}  # struct -> dict
    assert ip.extract_imaging_parameters(mat, format="Scanbox")["max_idx"] == 6


def test_scanbox_bidirectional_old_version_and_volume(tmp_path):
    rows, cols = 10, 16
    mat = scanbox(
        tmp_path,
        sbx_bytes=9 * 640,
        sz=np.array([rows, cols]),
        recordsPerBuffer=rows // 2,
        bytesPerBuffer=640,
        channels=2,  # one PMT
        scanmode=0,  # bidirectional: twice the lines per record
        otwave=np.array([0, 10, 20]),
        volscan=1,
    )
    info = ip.scanbox_imaging_parameters(mat)
    assert info["recordsPerBuffer"] == rows
    assert info["nchannels"] == 1
    assert info["nsamples"] == cols * rows * 1 * 2
    assert info["max_idx"] == 9 * 2 - 1  # old versions: bytesPerBuffer, two records a frame
    assert info["nplanes"] == 3


def test_scanbox_defaults_for_old_info_files(tmp_path):
    mat = scanbox(tmp_path, sbx_bytes=4 * 100, recordsPerBuffer=8, bytesPerBuffer=100, channels=3)
    info = ip.scanbox_imaging_parameters(mat)
    np.testing.assert_array_equal(info["sz"], [512, 796])
    assert info["scanmode"] == 1
    assert info["nsamples"] == 796 * 8 * 1 * 2
    assert info["max_idx"] == 4 * 2 - 1
    assert info["nplanes"] == 1
    # otwave without volscan: a volume when it has entries
    mat = scanbox(
        tmp_path,
        "vol",
        100,
        recordsPerBuffer=8,
        bytesPerBuffer=100,
        channels=3,
        otwave=np.array([1, 2]),
    )
    assert ip.scanbox_imaging_parameters(mat)["nplanes"] == 2


def test_scanbox_errors(tmp_path):
    with pytest.raises(ValueError, match=r"Scanbox \.mat info file"):
        ip.scanbox_imaging_parameters(str(tmp_path / "x.sbx"))
    mat = scanbox(tmp_path, "nopmt", recordsPerBuffer=8, channels=5, scanbox_version=2)
    with pytest.raises(ValueError, match=r"'channels' must be 1 .* got 5"):
        ip.scanbox_imaging_parameters(mat)
    mat = scanbox(tmp_path, "norecords", channels=1, scanbox_version=2)
    with pytest.raises(ValueError, match=r"no 'recordsPerBuffer' field"):
        ip.scanbox_imaging_parameters(mat)
    mat = scanbox(tmp_path, "nosbx", recordsPerBuffer=8, channels=1, scanbox_version=2)
    os.remove(tmp_path / "nosbx.sbx")
    with pytest.raises(FileNotFoundError, match=r"nosbx\.sbx"):
        ip.scanbox_imaging_parameters(mat)
    scipy.io.savemat(str(tmp_path / "other.mat"), {"data": np.zeros(3)})
    with pytest.raises(ValueError, match="no Scanbox 'info' struct"):
        ip.scanbox_imaging_parameters(str(tmp_path / "other.mat"))
    (tmp_path / "junk.mat").write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(ValueError, match=r"cannot read .* as a MATLAB file"):
        ip.scanbox_imaging_parameters(str(tmp_path / "junk.mat"))
    with pytest.raises(FileNotFoundError, match="no MATLAB file"):
        ip.scanbox_imaging_parameters(str(tmp_path / "gone.mat"))


def test_loadmat_turns_structs_and_struct_arrays_into_dicts(tmp_path):
    path = str(tmp_path / "s.mat")
    cells = np.empty((2,), dtype=object)
    cells[0] = {"id": 1, "name": "a"}
    cells[1] = {"id": 2, "name": "b"}
    scipy.io.savemat(path, {"top": {"inner": {"value": 3.5}, "n": 4}, "cells": cells})
    data = ip.loadmat(path)
    assert data["top"] == {"inner": {"value": 3.5}, "n": 4}
    assert data["cells"] == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


# --------------------------------------------------------------------------
# dispatch and import
# --------------------------------------------------------------------------


def test_extract_imaging_parameters_dispatches_and_names_the_formats(tmp_path):
    path = write(tmp_path / "TSeries-001.xml", PV52)
    assert ip.extract_imaging_parameters(str(path), "Prairie") == ip.prairie_imaging_parameters(
        str(path)
    )
    with pytest.raises(ValueError, match=r"format must be one of \['Prairie', 'Scanbox'\]"):
        ip.extract_imaging_parameters(str(path), format="Bruker")


def test_module_is_reached_from_the_package_and_import_stays_light():
    assert sima.imaging_parameters is ip
    code = (
        "import sys, sima_fast; sima_fast.imaging_parameters; "
        "assert 'scipy.io' not in sys.modules, 'scipy.io imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"

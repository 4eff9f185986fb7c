"""The sima-fast command line, the lazy import and the drop-in names.

The names are those of docs/contract.md#drop-in-names.
"""

from __future__ import annotations

import subprocess
import sys

import sima_fast as sima
from sima_fast.cli import main


def test_drop_in_names():
    from sima_fast.misc import example_data, example_imagej_rois

    assert sima.imaging.ImagingDataset is sima.ImagingDataset
    assert sima.ROI.ROI is not None and sima.ROI.ROIList is not None
    assert callable(example_data) and callable(example_imagej_rois)
    assert sima.sequence.Sequence is sima.Sequence
    for name in ("extract", "spikes", "segment", "misc"):
        assert getattr(sima, name).__name__ == f"sima_fast.{name}"
    assert isinstance(sima.__version__, str)


def test_import_is_lazy():
    code = (
        "import sys, sima_fast as sima; "
        "heavy = [m for m in ('numba', 'h5py', 'scipy', 'tifffile', 'zarr', 'sima_fast.kernels') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_info(capsys, tmp_path):
    from sima_fast.misc import example_data

    assert main(["info", example_data()]) == 0
    out = capsys.readouterr().out
    assert "num_sequences=2" in out and "GCaMP" in out and "sequence 1: 200 frames" in out
    assert main(["info", str(tmp_path / "missing.sima")]) == 2
    assert "no dataset directory" in capsys.readouterr().err


def test_info_on_legacy_dataset(capsys, sima132):
    assert main(["info", f"{sima132}/hdf5_and_ndarray.sima"]) == 0
    out = capsys.readouterr().out
    assert "ROI set 'manual': 3 ROI(s)" in out
    assert "signals 'manual_signals' (channel GCaMP): 3 ROI(s)" in out


def test_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "sima_fast.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "sima_fast" in out.stdout

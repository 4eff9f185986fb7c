"""The data tools/sima_suite.py builds for SIMA's example scripts, and how it reports them.

Small versions of every input (the tool's size settings are patched down), so
that each test stays fast; the full-size run is ``python tools/sima_suite.py
SIMA --no-tests --examples``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

TOOL = Path(__file__).resolve().parents[1] / "tools" / "sima_suite.py"


@pytest.fixture
def suite(monkeypatch, tmp_path):
    """The tool as a module, with small data sizes and a private cache."""
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("sima_suite_examples", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(module.WORKFLOW, "cycles", 3)
    monkeypatch.setitem(module.WORKFLOW, "frames", 5)
    monkeypatch.setitem(module.WORKFLOW, "frame_shape", (24, 28))
    monkeypatch.setitem(module.WORKFLOW, "cells", 3)
    monkeypatch.setitem(module.DATASET, "frames", 6)
    monkeypatch.setitem(module.DATASET, "frame_shape", (24, 24))
    monkeypatch.setitem(module.DATASET, "cells", 3)
    monkeypatch.setitem(module.SCANBOX, "frames", 4)
    monkeypatch.setitem(module.SCANBOX, "frame_shape", (20, 24))
    return module


def test_full_size_settings_match_what_the_scripts_expect():
    spec = importlib.util.spec_from_file_location("sima_suite_defaults", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # workflow.py reads Cycle01..Cycle15, channels 1 and 2, and plots ROI #3 of 3 cycles
    assert module.WORKFLOW["cycles"] == 15 and module.WORKFLOW["cells"] >= 4
    # extraction.py extracts channel 'Ch2' by default
    assert "Ch2" in module.DATASET["channels"]


def test_workflow_data_is_one_recording_with_gcamp_as_ch2(suite, tmp_path):
    folder = tmp_path / "workflow_data"
    suite.write_workflow_data(str(folder))
    names = sorted(os.listdir(folder))
    assert names == [f"Cycle{c:02d}_Ch{k}.tif" for c in (1, 2, 3) for k in (1, 2)]
    sim = suite.simulate_recording(15, (24, 28), 3, seed=7)
    for cycle in range(3):
        ch1 = tifffile.imread(folder / f"Cycle{cycle + 1:02d}_Ch1.tif")
        ch2 = tifffile.imread(folder / f"Cycle{cycle + 1:02d}_Ch2.tif")
        assert ch1.shape == ch2.shape == (5, 24, 28) and ch2.dtype == np.uint16
        part = sim.observed[cycle * 5 : (cycle + 1) * 5, 0]
        # the script names Ch1 tdTomato (structure) and Ch2 GCaMP (activity)
        np.testing.assert_array_equal(ch1, part[..., 1])
        np.testing.assert_array_equal(ch2, part[..., 0])
    assert sim.spikes.sum() > 0  # the cells are active


def test_dataset_has_the_channel_names_and_roi_sets_the_scripts_use(suite, tmp_path):
    from sima_fast import ImagingDataset
    from sima_fast.ROI import ROIList

    path = str(tmp_path / "example.sima")
    suite.write_dataset(path, imagej_zip="RoiSet.zip")
    ds = ImagingDataset.load(path)
    assert ds.channel_names == ["Ch1", "Ch2"]
    assert ds.frame_shape == (1, 24, 24, 2) and ds.num_frames == 6
    assert sorted(ds.ROIs) == ["cells", "junk"] and len(ds.ROIs["cells"]) == 3
    imported = ROIList.load(os.path.join(path, "RoiSet.zip"), fmt="ImageJ")
    assert len(imported) == 3
    # channel Ch2 carries the activity: its values vary inside the cells, Ch1's do not
    frames = np.asarray(ds.sequences[0])
    mask = ds.ROIs["cells"][0].mask[0].toarray().astype(bool)
    inside = frames[:, 0][:, mask]  # (T, pixels, C)
    assert inside[..., 1].mean(axis=1).std() > inside[..., 0].mean(axis=1).std()


def test_scanbox_pair_reads_back_as_the_simulated_frames(suite, tmp_path):
    from sima_fast import Sequence
    from sima_fast.imaging_parameters import extract_imaging_parameters

    sbx = suite.write_scanbox(str(tmp_path / "scanbox"))
    info = extract_imaging_parameters(sbx[:-4] + ".mat", format="Scanbox")
    rows, cols = info["recordsPerBuffer"], int(info["sz"][1])
    frames = (info["max_idx"] + 1) // info["nplanes"]
    assert (rows, cols, info["nchannels"], frames) == (20, 24, 2, 4)
    shape = (info["nchannels"], cols, rows, info["nplanes"], frames)
    raw = Sequence.create("memmap", sbx, shape, "cxyzt", dtype="uint16", order="F")
    full = Sequence.create("constant", value=np.iinfo("uint16").max, shape=raw.shape)
    sim = suite.simulate_recording(4, (20, 24), 4, seed=3)
    np.testing.assert_array_equal((full - raw).read_chunk(0, 4), sim.observed)


def test_prepare_example_gives_each_script_its_arguments(suite, tmp_path):
    for name, first in [
        ("extraction.py", "data"),
        ("segmentation.py", "data"),
        ("import_ImageJ_rois.py", "data"),
        ("scanbox.py", "--time_averages"),
    ]:
        cwd = tmp_path / name
        cwd.mkdir()
        args, stdin = suite.prepare_example(name, str(cwd))
        assert args[0].endswith(first) and stdin == ""
        for arg in args:
            if os.sep in arg:
                assert os.path.exists(arg) or os.path.exists(cwd / arg)
    assert os.path.isdir(tmp_path / "extraction.py" / "data" / "notes.sima")
    cwd = tmp_path / "workflow"
    cwd.mkdir()
    args, stdin = suite.prepare_example("workflow.py", str(cwd))
    assert args == [] and stdin.startswith("y\n")
    assert len(os.listdir(cwd / "workflow_data")) == 6
    assert suite.prepare_example("spikeinference.py", str(cwd)) == ([], "")


def test_run_examples_reports_runs_missing_outputs_and_python2(suite, tmp_path):
    root = tmp_path / "sima"
    (root / "examples").mkdir(parents=True)
    (root / "examples" / "fine.py").write_text("import sima\nprint(sima.Sequence)\n")
    (root / "examples" / "scanbox.py").write_text("import sima\n")  # writes nothing
    (root / "examples" / "old.py").write_text('print "hello"\n')
    work = tmp_path / "work"
    work.mkdir()
    rows = {r[0]: r[1:] for r in suite.run_examples(str(root), str(work), timeout=60)}
    assert rows["examples/fine.py"] == ("RUNS", "")
    status, reason = rows["examples/scanbox.py"]
    assert status == "NO OUTPUT" and "mouse1_000_001.sima" in reason
    status, reason = rows["examples/old.py"]
    assert status == "EXIT 1" and reason.startswith("SyntaxError")
    assert suite._python2_only(str(root / "examples" / "old.py"))
    assert not suite._python2_only(str(root / "examples" / "fine.py"))

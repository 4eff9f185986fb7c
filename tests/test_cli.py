"""The sima-fast command line, the lazy import and the drop-in names.

The names are those of docs/contract.md#drop-in-names. The command line is
tested through ``main([...])`` (and once through the installed script): the
pipeline from movie files to exported signals, each step against the library
call it stands for, the order of the output, and the one-line errors and exit
statuses of bad command lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

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


# -- the pipeline from a movie -------------------------------------------------------------
#
# The movies and the ImageJ ROIs are written by the tests (a small simulated recording: one
# plane of 40 x 48 pixels, two channels, 6 cells), so each step's result can be compared with
# the library call it stands for.


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    """Two recordings of the same scene as HDF5 ('tyxc') and TIFF files, and ImageJ ROIs."""
    import h5py
    import tifffile

    from sima_fast.misc import simulate_movie
    from sima_fast.ROI import ROI, ROIList

    root = tmp_path_factory.mktemp("movies")
    sims = [
        simulate_movie(
            num_frames=n,
            frame_shape=(40, 48),
            num_channels=2,
            cells_per_plane=6,
            seed=s,
            scene_seed=3,
        )
        for n, s in ((120, 1), (90, 2))
    ]
    files = {}
    for i, sim in enumerate(sims):
        h5 = root / f"run{i}.h5"
        with h5py.File(h5, "w") as f:
            f["imaging"] = sim.movie[:, 0]  # (T, Y, X, C)
        tif = root / f"run{i}.tif"  # pages interleave channels: page t * 2 + c
        tifffile.imwrite(tif, sim.movie[:, 0].transpose(0, 3, 1, 2).reshape(-1, 40, 48))
        files[f"h5_{i}"], files[f"tif_{i}"] = str(h5), str(tif)
    rois = ROIList([ROI(polygons=[p], label=f"cell{i}") for i, p in enumerate(sims[0].polygons)])
    files["rois"] = str(root / "RoiSet.zip")
    rois.save(files["rois"], fmt="ImageJ")
    files["movies"] = [sim.movie for sim in sims]
    return files


def _library_dataset(movies, fmt="HDF5"):
    """The in-memory dataset the CLI's ``create`` should have stored."""
    from sima_fast import ImagingDataset, Sequence

    if fmt == "HDF5":
        seqs = [Sequence.create("HDF5", movies[f"h5_{i}"], "tyxc") for i in (0, 1)]
    else:
        seqs = [Sequence.create("TIFF", movies[f"tif_{i}"], num_channels=2) for i in (0, 1)]
    return ImagingDataset(seqs, None, channel_names=["GCaMP", "tdTomato"])


def _dense(roi):
    """An ROI's mask as one dense (Z, Y, X) array."""
    return np.stack([plane.toarray() for plane in roi.mask])


def _stderr_line(capsys):
    """The one line written to standard error (and check it is one line, not a traceback)."""
    err = capsys.readouterr().err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _leftovers(directory):
    """Everything in ``directory`` (staging folders of failed writes included)."""
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("fmt", ["HDF5", "TIFF"])
def test_create_from_movie_files(fmt, movies, tmp_path, capsys):
    out = str(tmp_path / "session.sima")
    if fmt == "HDF5":
        argv = [movies["h5_0"], movies["h5_1"], "--format", "HDF5", "--dim-order", "tyxc"]
    else:
        argv = [movies["tif_0"], movies["tif_1"], "--format", "TIFF", "--channels", "2"]
    assert main(["create", out, *argv, "--channel-names", "GCaMP,tdTomato"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("<ImagingDataset: num_sequences=2, frame_shape=(1, 40, 48, 2)")
    assert "channels: GCaMP, tdTomato" in printed and "sequence 1: 90 frames" in printed

    stored = sima.ImagingDataset.load(out)
    want = _library_dataset(movies, fmt)
    assert stored.channel_names == ["GCaMP", "tdTomato"]
    for seq, expected, movie in zip(stored.sequences, want.sequences, movies["movies"]):
        np.testing.assert_array_equal(np.asarray(seq), np.asarray(expected))
        np.testing.assert_array_equal(np.asarray(seq), movie)


def test_create_from_single_image_tiffs(movies, tmp_path, capsys):
    import tifffile

    movie = movies["movies"][1]
    for t in range(5):
        for c in range(2):
            tifffile.imwrite(tmp_path / f"ch{c}_{t:03d}.tif", movie[t, 0, :, :, c])
    patterns = [str(tmp_path / "ch0_*.tif"), str(tmp_path / "ch1_*.tif")]
    out = str(tmp_path / "tiffs.sima")
    assert main(["create", out, *patterns, "--format", "TIFFs", "--channels", "2"]) == 0
    assert "sequence 0: 5 frames" in capsys.readouterr().out
    (seq,) = sima.ImagingDataset.load(out).sequences
    np.testing.assert_array_equal(np.asarray(seq), movie[:5])
    # One pattern cannot make a two-channel sequence.
    assert (
        main(
            [
                "create",
                str(tmp_path / "x.sima"),
                patterns[0],
                "--format",
                "TIFFs",
                "--channels",
                "2",
            ]
        )
        == 2
    )
    assert "2 pattern(s) per sequence" in _stderr_line(capsys)


def test_pipeline_from_a_movie(movies, tmp_path, capsys):
    """create -> import-rois -> segment -> extract -> infer-spikes -> export, each checked
    against the library call it stands for."""
    import h5py
    import tifffile

    from sima_fast.ROI import ROIList
    from sima_fast.segment import STICA
    from sima_fast.spikes import infer_spikes_from_signals

    path = str(tmp_path / "s.sima")
    assert (
        main(
            [
                "create",
                path,
                movies["h5_0"],
                movies["h5_1"],
                "--format",
                "HDF5",
                "--dim-order",
                "tyxc",
                "--channel-names",
                "GCaMP,tdTomato",
            ]
        )
        == 0
    )
    capsys.readouterr()
    want = _library_dataset(movies)

    # import-rois: the ImageJ zip, as ROIList.load reads it
    assert main(["import-rois", path, movies["rois"], "--label", "cells"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [path, f"  6 ROIs from {movies['rois']} stored as ROI set 'cells'"]
    rois = ROIList.load(movies["rois"], fmt="ImageJ")
    want.add_ROIs(rois, "cells")
    stored = sima.ImagingDataset.load(path).ROIs["cells"]
    assert [r.label for r in stored] == [f"cell{i}" for i in range(6)]
    for a, b in zip(stored, rois):
        np.testing.assert_array_equal(_dense(a), _dense(b))

    # segment: the strategy at its default parameters
    assert main(["segment", path, "--strategy", "stica", "--label", "auto"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == path and "with stica (STICA, default parameters)" in out[1]
    found = sima.ImagingDataset.load(path).ROIs["auto"]
    expected = STICA(channel=0).segment(want)
    assert out[2].startswith(f"  {len(expected)} ROI") and len(found) == len(expected) > 0
    for a, b in zip(found, expected):
        np.testing.assert_array_equal(_dense(a), _dense(b))

    # extract (local: a progress line, then the result)
    assert (
        main(
            [
                "extract",
                path,
                "--rois",
                "cells",
                "--label",
                "cells",
                "--no-summary",
                "--channel",
                "GCaMP",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == path
    assert out[1] == (
        "  extracting 6 ROIs (ROI set 'cells') of channel GCaMP from 210 frames in 2 sequences ..."
    )
    assert out[2].startswith("  signals of 6 ROIs x 210 frames (label 'cells') in ")
    record = want.extract(rois, signal_channel=0, save_summary=False)
    signals = sima.ImagingDataset.load(path).signals("GCaMP")["cells"]
    for got, exp in zip(signals["raw"], record["raw"]):
        np.testing.assert_array_equal(got, exp)

    # infer-spikes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noise estimates repaired on a short movie
        assert main(["infer-spikes", path, "--channel", "GCaMP"]) == 0
        spikes, _, _ = infer_spikes_from_signals(record["raw"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == path and out[1].startswith("  spikes of 6 ROIs x 210 frames (label 'cells'")
    signals = sima.ImagingDataset.load(path).signals(0)["cells"]
    for got, exp in zip(signals["spikes"], spikes):
        np.testing.assert_array_equal(got, exp)
    assert main(["info", path]) == 0
    assert "signals 'cells' (channel GCaMP): 6 ROI(s) x 210 frames, spikes inferred" in (
        capsys.readouterr().out
    )

    # export signals: the csv of export_signals
    csv = tmp_path / "cells.csv"
    assert main(["export", path, "signals", str(csv), "--label", "cells"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"    {csv}"
    want_csv = tmp_path / "want.csv"
    sima.ImagingDataset.load(path).export_signals(want_csv, signals_label="cells")
    assert csv.read_text() == want_csv.read_text()

    # export averages: one stem -> one TIFF per channel, named after the channel
    assert main(["export", path, "averages", str(tmp_path / "mean.tif")]) == 0
    names = [str(tmp_path / "mean_GCaMP.tif"), str(tmp_path / "mean_tdTomato.tif")]
    assert capsys.readouterr().out.splitlines()[-2:] == [f"    {n}" for n in names]
    want.export_averages([str(tmp_path / "w0.tif"), str(tmp_path / "w1.tif")])
    for got, exp in zip(names, ["w0.tif", "w1.tif"]):
        np.testing.assert_array_equal(tifffile.imread(got), tifffile.imread(tmp_path / exp))
    # ... the std as HDF5, in a folder
    assert (
        main(
            [
                "export",
                path,
                "averages",
                f"{tmp_path}/avg/",
                "--format",
                "HDF5",
                "--projection",
                "std",
            ]
        )
        == 0
    )
    want.export_averages(str(tmp_path / "w.h5"), fmt="HDF5", projection_type="std")
    with h5py.File(tmp_path / "avg" / "time_std.h5") as a, h5py.File(tmp_path / "w.h5") as b:
        np.testing.assert_array_equal(a["time_std"][()], b["time_std"][()])

    # export frames: one HDF5 file per sequence from a stem; one channel as TIFF
    assert main(["export", path, "frames", str(tmp_path / "fr.h5"), "--format", "HDF5"]) == 0
    want.export_frames([str(tmp_path / "w_0.h5"), str(tmp_path / "w_1.h5")], fmt="HDF5")
    for i in (0, 1):
        with h5py.File(tmp_path / f"fr_seq{i}.h5") as a, h5py.File(tmp_path / f"w_{i}.h5") as b:
            np.testing.assert_array_equal(a["imaging"][()], b["imaging"][()])
    capsys.readouterr()
    assert (
        main(
            [
                "export",
                path,
                "frames",
                str(tmp_path / "g.tif"),
                "--channel",
                "tdTomato",
                "--no-fill-gaps",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"    {tmp_path / 'g_seq0.tif'}",
        f"    {tmp_path / 'g_seq1.tif'}",
    ]
    for i, movie in enumerate(movies["movies"]):
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / f"g_seq{i}.tif"), movie[:, 0, :, :, 1]
        )


def test_each_dataset_is_printed_before_its_lines(movies, tmp_path, capsys):
    paths = []
    for name in ("a", "b"):
        paths.append(str(tmp_path / f"{name}.sima"))
        assert (
            main(
                [
                    "create",
                    paths[-1],
                    movies["h5_0"],
                    "--format",
                    "HDF5",
                    "--dim-order",
                    "tyxc",
                    "--channel-names",
                    "GCaMP,tdTomato",
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert main(["project", *paths, "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if not line.startswith("  ")] == paths
    assert out[1].startswith("  time projections (mean, std, kurtosis) in ")
    assert out[2].startswith("  channel GCaMP: mean ") and out[3].startswith("  channel tdTomato")
    assert out[4] == paths[1] and out[5].startswith("  time projections")
    # A failing dataset: its error on stderr, the others still run, status 1.
    assert main(["extract", paths[0], str(tmp_path / "nope.sima"), "--no-summary"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [paths[0]]
    assert captured.err.splitlines()[-2:] == [
        f"sima-fast extract: {paths[0]}: the dataset has no ROI set; add one with "
        "'sima-fast import-rois' or 'sima-fast segment'",
        f"sima-fast extract: {tmp_path / 'nope.sima'}: no dataset directory here (make one "
        "with 'sima-fast create')",
    ]


def test_help_shows_an_example(capsys):
    commands = [
        "create",
        "import-rois",
        "segment",
        "project",
        "extract",
        "infer-spikes",
        "export",
        "info",
    ]
    for command in commands:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert f"\nexample:\n  sima-fast {command} " in out, command
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "from a movie to spikes:" in out and "sima-fast import-rois" in out


def test_format_choices_come_from_the_registries(tmp_path, capsys):
    from sima_fast.io import roi_readers

    def reader(path, label):
        from sima_fast.ROI import ROI, ROIList

        return ROIList([ROI(mask=np.eye(4, dtype=bool)[None])])

    roi_readers.register("diagonal", reader)
    try:
        with pytest.raises(SystemExit):
            main(["import-rois", "--help"])
        assert "diagonal" in capsys.readouterr().out
        ds = sima.ImagingDataset(
            [sima.Sequence.create("ndarray", np.ones((10, 1, 4, 4, 1)))], str(tmp_path / "d")
        )
        (tmp_path / "any.txt").write_text("")
        assert (
            main(
                [
                    "import-rois",
                    ds.savedir,
                    str(tmp_path / "any.txt"),
                    "--format",
                    "DIAGONAL",
                    "--label",
                    "d",
                ]
            )
            == 0
        )
        assert len(sima.ImagingDataset.load(ds.savedir).ROIs["d"]) == 1
    finally:
        roi_readers.unregister("diagonal")


def _bad_inputs(movies, tmp_path):
    """(argv, status, the text the error line must hold) for wrong command lines."""
    good = str(tmp_path / "good.sima")
    new = str(tmp_path / "new.sima")
    h5 = [movies["h5_0"], "--format", "HDF5", "--dim-order", "tyxc"]
    missing = str(tmp_path / "missing.h5")
    return [
        (
            ["create", new, missing, "--format", "HDF5", "--dim-order", "tyx"],
            2,
            f"{missing}: no such file",
        ),
        (
            ["create", new, movies["h5_0"], "--format", "PNG"],
            2,
            "argument --format: invalid choice: 'PNG'",
        ),
        (["create", new, movies["h5_0"], "--format", "HDF5"], 2, "--dim-order is required"),
        (
            ["create", new, *h5[:-1], "tzyxc"],
            2,
            "dim_order 'tzyxc' has 5 letters but the data has 4 dimensions",
        ),
        (["create", new, *h5, "--key", "nope"], 2, "key 'nope' is not a dataset"),
        (["create", new, *h5, "--channels", "2"], 2, "--channels does not apply to --format HDF5"),
        (
            ["create", new, *h5, "--channel-names", "a,b,c"],
            2,
            "--channel-names: 3 names for 2 channels",
        ),
        (
            [
                "create",
                new,
                movies["h5_0"],
                movies["tif_0"],
                "--format",
                "HDF5",
                "--dim-order",
                "tyxc",
            ],
            1,
            f"{movies['tif_0']}: ",
        ),
        (["create", good, *h5], 2, "already exists"),
        (["create", str(tmp_path / "no" / "x.sima"), *h5], 2, "parent directory"),
        (["import-rois", good, str(tmp_path / "none.zip")], 2, "none.zip: no such file"),
        (
            ["import-rois", good, movies["rois"], "--format", "Photoshop"],
            2,
            "argument --format: invalid choice: 'Photoshop'",
        ),
        (
            ["import-rois", str(tmp_path / "absent.sima"), movies["rois"]],
            2,
            "absent.sima: no dataset directory",
        ),
        (["import-rois", good, movies["rois"], "--label", "a/b"], 2, "--label: a label must"),
        (
            ["segment", good, "--strategy", "stica", "--channel", "red"],
            2,
            "--channel: no channel named 'red'",
        ),
        (["segment", good, "--strategy", "stica", "--planes", "0,1"], 2, "--planes: '0,1'"),
        (
            ["export", good, "averages", str(tmp_path / "a.tif"), "--channel", "3"],
            2,
            "--channel: ",
        ),
        (
            ["export", good, "signals", str(tmp_path / "s.csv"), "--format", "TIFF16"],
            2,
            "--format: 'TIFF16' is not a format for signals; choose from csv",
        ),
        (
            ["export", good, "frames", str(tmp_path / "f.tif"), "--projection", "std"],
            2,
            "--projection does not apply to frames",
        ),
        (
            ["export", good, "frames", str(tmp_path / "1.tif"), str(tmp_path / "2.tif")],
            2,
            "OUT: frames as TIFF16 take 4 paths (one per sequence, plane and channel)",
        ),
        (
            ["export", good, "signals", str(tmp_path / "s.csv")],
            1,
            "channel GCaMP has no extracted signals; run 'sima-fast extract' first",
        ),
        (["extract", good, "--channel", "7"], 1, "--channel: "),
        (["infer-spikes", good], 1, "has no extracted signals"),
        (["info", str(tmp_path / "absent.sima")], 2, "no dataset directory"),
        (["project", good, "--mode", "psd"], 2, "unrecognized arguments: --mode psd"),
    ]


def test_bad_input_is_one_line_and_leaves_nothing(movies, tmp_path, capsys):
    good = str(tmp_path / "good.sima")
    assert (
        main(
            [
                "create",
                good,
                movies["h5_0"],
                movies["h5_1"],
                "--format",
                "HDF5",
                "--dim-order",
                "tyxc",
                "--channel-names",
                "GCaMP,tdTomato",
            ]
        )
        == 0
    )
    capsys.readouterr()
    before = _leftovers(tmp_path)
    good_files = _leftovers(good)
    for argv, status, text in _bad_inputs(movies, tmp_path):
        try:
            got = main(argv)
        except SystemExit as exc:  # argparse
            got = exc.code
        assert got == status, (argv, got)
        line = _stderr_line(capsys)
        assert line.startswith(f"sima-fast {argv[0]}: ") and text in line, (argv, line)
        assert _leftovers(tmp_path) == before, argv
        assert _leftovers(good) == good_files, argv


def test_installed_entry_point(movies, tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "sima-fast")
    if not os.path.exists(script):
        pytest.skip("the sima-fast script is not installed beside this Python")
    path = str(tmp_path / "e.sima")
    run = subprocess.run(
        [script, "create", path, movies["tif_0"], "--format", "TIFF", "--channels", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0 and "num_sequences=1" in run.stdout, run.stderr
    run = subprocess.run(
        [script, "import-rois", path, str(tmp_path / "missing.zip")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == f"sima-fast import-rois: {tmp_path / 'missing.zip'}: no such file\n"


def test_warmup_command(capsys):
    from sima_fast.cli import main

    assert main(["warmup"]) == 0
    out = capsys.readouterr().out
    assert "kernels ready in" in out
    assert "uint16" in out and "float32" in out

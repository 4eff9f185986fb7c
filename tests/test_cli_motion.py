"""``sima-fast motion``: movies with known shifts in, a corrected dataset out; one-line errors.

The movies are crops of one smooth random field moved by known whole-pixel
shifts (plus noise), so a correct run gives frames that agree with each
other where they overlap, displacements equal to the negated shifts
(normalised to a minimum of 0), and a frame trimmed by the shifts' range.
"""

from __future__ import annotations

import os
import re

import h5py
import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter

import sima_fast as sima
from sima_fast.cli import main

SHIFTS = np.array([(0, 0), (3, -2), (1, 4), (-2, 1), (4, 3), (0, -3), (2, 2), (-1, 0)])
SIZE = 48


def shifted(shifts=SHIFTS, seed=1, channels=1):
    """(T, Y, X, C) float crops of one field; content of frame t moved by ``shifts[t]``."""
    pad = 8
    field = np.random.default_rng(0).random((SIZE + 2 * pad, SIZE + 2 * pad))
    field = gaussian_filter(field, 2)
    field = 1000 + 4000 * (field - field.min()) / np.ptp(field)
    noise = np.random.default_rng(seed)
    frames = np.stack(
        [field[pad - dy : pad - dy + SIZE, pad - dx : pad - dx + SIZE] for dy, dx in shifts]
    )
    frames = frames[..., None] * (1 + np.arange(channels))
    return frames + noise.normal(0, 5, frames.shape)


@pytest.fixture
def movies(tmp_path):
    """Two HDF5 movies (tyx, uint16), the second with the shifts reversed."""
    paths = []
    for k, shifts in enumerate((SHIFTS, SHIFTS[::-1])):
        path = str(tmp_path / f"run{k}.h5")
        with h5py.File(path, "w") as f:
            f["data"] = shifted(shifts, seed=k + 1)[..., 0].astype(np.uint16)
        paths.append(path)
    return paths


def truth(shifts=SHIFTS):
    d = -np.asarray(shifts, dtype=float)
    return d - d.min(axis=0)


def corrected_frames(path):
    ds = sima.ImagingDataset.load(path)
    return ds, [np.asarray(s)[:, 0, :, :, :] for s in ds.sequences]


def one_line_error(capsys, status, pattern):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sima-fast motion: "), err
    assert re.search(pattern, lines[0]), lines[0]
    return status


def test_translation_on_hdf5_movies(movies, tmp_path, capsys):
    out = str(tmp_path / "corrected.sima")
    argv = ["motion", *movies, "--dim-order", "tyx", "--out", out, "--strategy", "translation"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    span = np.ptp(SHIFTS, axis=0)
    assert f"{movies[0]}: 8 frames, displacements y 0 to {span[0]}, x 0 to {span[1]} px" in text
    assert f"{movies[1]}: 8 frames, displacements y 0 to {span[0]}, x 0 to {span[1]} px" in text
    assert os.path.abspath(out) in text
    ds, frames = corrected_frames(out)
    assert ds.num_sequences == 2
    assert ds.frame_shape == (1, SIZE - span[0], SIZE - span[1], 1)
    # every corrected frame shows the same content: only noise differs (s.d. 5 -> 7 for a
    # difference), where it would differ by hundreds with a one-pixel error
    first = frames[0][0].astype(float)
    for f in np.concatenate(frames):
        assert np.std(f.astype(float) - first) < 12


def test_rigid_tiff_two_channels_estimated_from_one(tmp_path, capsys):
    movie = shifted(channels=2)
    movie[..., 1] = np.random.default_rng(7).normal(1000, 50, movie.shape[:-1])  # no structure
    path = str(tmp_path / "run.tif")
    tifffile.imwrite(path, movie.transpose(0, 3, 1, 2).reshape(-1, SIZE, SIZE).astype(np.uint16))
    out = str(tmp_path / "rigid")
    argv = ["motion", path, "--out", out, "--strategy", "rigid", "--channels", "2"]
    argv += ["--channel-names", "GCaMP,noise", "--channel", "GCaMP", "--trim-criterion", "0"]
    assert main([*argv, "--max-displacement", "8", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "estimating" not in text  # --quiet
    found = re.search(r"displacements y ([\d.]+) to ([\d.]+), x ([\d.]+) to ([\d.]+) px", text)
    span = np.ptp(SHIFTS, axis=0)
    lo_y, hi_y, lo_x, hi_x = (float(v) for v in found.groups())
    assert lo_y == lo_x == 0
    assert abs(hi_y - span[0]) < 0.3 and abs(hi_x - span[1]) < 0.3
    ds = sima.ImagingDataset.load(out + ".sima")
    assert ds.channel_names == ["GCaMP", "noise"]
    # trim criterion 0 keeps everything observed: the frame grows by the shifts' range (sub-pixel
    # shifts: a pixel is observed between a moved frame's outermost pixel centres)
    for axis in (1, 2):
        assert abs(ds.frame_shape[axis] - (SIZE + span[axis - 1])) <= 1
    assert ds.frame_shape[3] == 2


def test_dataset_directory_in(movies, tmp_path, capsys):
    seqs = [sima.Sequence.create("HDF5", m, "tyx") for m in movies]
    src = str(tmp_path / "raw.sima")
    sima.ImagingDataset(seqs, src, channel_names=["green"])
    out = str(tmp_path / "out.sima")
    argv = ["motion", src, "--out", out, "--strategy", "translation", "--channel", "green"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "sequence 0: 8 frames" in text and "sequence 1: 8 frames" in text
    ds, _ = corrected_frames(out)
    assert ds.channel_names == ["green"]
    assert ds.frame_shape == (1, *(SIZE - np.ptp(SHIFTS, axis=0)), 1)


def test_scheduler_gives_the_local_result(movies, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    base = ["motion", *movies, "--dim-order", "tyx", "--strategy", "rigid", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "here")]) == 0
    here = capsys.readouterr().out
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            protocol="tcp://",
            dashboard_address=":0",  # any free port: tests run in parallel
        ) as cluster,
    ):
        assert (
            main(
                [*base, "--out", str(tmp_path / "there"), "--scheduler", cluster.scheduler_address]
            )
            == 0
        )
    there = capsys.readouterr().out
    assert here.split("\n")[1:3] == there.split("\n")[1:3]  # the displacement lines
    a = [np.asarray(s) for s in sima.ImagingDataset.load(str(tmp_path / "here.sima")).sequences]
    b = [np.asarray(s) for s in sima.ImagingDataset.load(str(tmp_path / "there.sima")).sequences]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


class Drift(sima.motion.MotionEstimationStrategy):
    """Stands in for a strategy that cannot be split in time and takes no max_displacement."""

    def _estimate(self, dataset):
        return [np.zeros((len(s), s.shape[1], 2), dtype=int) for s in dataset]


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--strategy", "nope"], r"argument --strategy: invalid choice"),
        (["--strategy", "rigid", "--max-displacement", "-1"], r"non-negative number"),
        (["--strategy", "rigid", "--max-displacement", "48"], r"--max-displacement: .*below 48"),
        (["--strategy", "rigid", "--trim-criterion", "1.5"], r"from 0 to 1"),
        (["--strategy", "rigid", "--channel", "red"], r"^sima-fast motion: --channel: "),
        (["--strategy", "rigid", "--channels", "2"], r"--channels does not apply to --format"),
        (
            ["--strategy", "rigid", "--format", "TIFF"],
            r"--dim-order does not apply to --format TIFF",
        ),
        (["--strategy", "hmm", "--scheduler", "local"], r"--scheduler does not apply"),
        (["--strategy", "hmm", "--max-displacement", "3"], r"--max-displacement does not apply"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(
    movies, tmp_path, capsys, monkeypatch, extra, pattern
):
    monkeypatch.setattr(sima.motion, "HiddenMarkov2D", Drift, raising=False)
    out = tmp_path / "out.sima"
    argv = ["motion", *movies, "--dim-order", "tyx", "--out", str(out), *extra]
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse
        status = exc.code
    assert status == 2
    one_line_error(capsys, status, pattern)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["run0.h5", "run1.h5"]


def test_input_errors(movies, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "o")
    cases = [
        (["motion", str(tmp_path / "missing.h5"), "--dim-order", "tyx"], r"no such file"),
        (["motion", movies[0]], r"--dim-order is required"),
        (["motion", str(tmp_path / "x.avi")], r"--format: cannot tell the movie format"),
        (["motion", movies[0], "--dim-order", "tyx", "--key", "nope"], r"key 'nope'"),
    ]
    # a file that cannot be read as the format given: the work fails (status 1), as in create
    assert (
        main(["motion", movies[0], "--format", "TIFF", "--out", out, "--strategy", "rigid"]) == 1
    )
    one_line_error(capsys, 1, r"^sima-fast motion: \S*run0\.h5: ")
    assert not os.path.exists(out + ".sima")
    src = str(tmp_path / "raw.sima")
    sima.ImagingDataset([sima.Sequence.create("HDF5", movies[0], "tyx")], src)
    cases += [
        (["motion", src, movies[0], "--dim-order", "tyx"], r"PATH: .*dataset directory"),
        (["motion", src, "--format", "HDF5"], r"--format applies to movie files"),
        (["motion", movies[0], "--dim-order", "tyx", "--out", src], r"--out: .*already exists"),
    ]
    for argv, pattern in cases:
        if "--out" not in argv:
            argv = [*argv, "--out", out]
        assert main([*argv, "--strategy", "translation"]) == 2, argv
        one_line_error(capsys, 2, pattern)
        assert not os.path.exists(out + ".sima")
    # a strategy missing from this installation: named, with the ones available
    monkeypatch.delattr(sima.motion, "RigidRegistration2D")
    assert (
        main(["motion", movies[0], "--dim-order", "tyx", "--out", out, "--strategy", "rigid"]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert re.search(r"--strategy: rigid \(RigidRegistration2D\) is not available", err)
    assert re.search(r"available: translation, dft", err) and "rigid," not in err
    assert not os.path.exists(out + ".sima")

"""What a user owns is never damaged, and what they are told names their own things.

Files get the umask's permissions; exports refuse to overwrite what the
dataset reads or stores and change nothing on disk when they refuse; errors
name the user's path, never a temporary one; warnings point at the user's
line.
"""

from __future__ import annotations

import os
import stat
import warnings

import h5py
import numpy as np
import pytest

import sima_fast as sima
from sima_fast._atomic import atomic_write, new_file_mode
from sima_fast.ROI import ROI, ROIList


def _snapshot(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[path] = (os.stat(path).st_mtime_ns, hash(fh.read()))
    return out


@pytest.fixture
def hdf5_dataset(tmp_path):
    movie = tmp_path / "movie.h5"
    data = np.arange(6 * 4 * 5, dtype=np.uint16).reshape(6, 4, 5)
    with h5py.File(movie, "w") as f:
        f.create_dataset("imaging", data=data)
    seq = sima.Sequence.create("HDF5", str(movie), "tyx", key="imaging")
    dataset = sima.ImagingDataset([seq], str(tmp_path / "session.sima"))
    mask = np.zeros((1, 4, 5), dtype=bool)
    mask[0, 1:3, 1:3] = True
    dataset.extract(ROIList([ROI(mask=mask, label="a")]), label="cells", save_summary=False)
    return dataset, movie


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert new_file_mode() == 0o666 & ~umask
        target = tmp_path / "out.txt"
        with atomic_write(target) as tmp:
            with open(tmp, "w") as fh:
                fh.write("x")
        seq = sima.Sequence.create("ndarray", np.ones((3, 1, 4, 5, 1), dtype=np.float32))
        dataset = sima.ImagingDataset([seq], str(tmp_path / "d.sima"))
        dataset.export_averages([str(tmp_path / "mean.tif")])
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for path in [target, tmp_path / "mean.tif", tmp_path / "d.sima" / "metadata.json"]:
        assert stat.S_IMODE(os.stat(path).st_mode) == expected, path


def test_export_refuses_to_overwrite_the_movie_it_reads(hdf5_dataset, tmp_path):
    dataset, movie = hdf5_dataset
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"refusing to write .*movie\.h5.*reads it"):
        dataset.export_frames([str(movie)], fmt="HDF5")
    with pytest.raises(ValueError, match=r"movie\.h5"):
        dataset.export_averages(str(movie), fmt="HDF5")
    # through another spelling of the same file
    other = os.path.join(str(tmp_path), ".", "movie.h5")
    with pytest.raises(ValueError, match="reads it"):
        dataset.export_frames([[[other]]], fmt="TIFF16")
    assert _snapshot(tmp_path) == before
    # the dataset still opens and reads the same movie
    again = sima.ImagingDataset.load(dataset.savedir)
    assert again.sequences[0].dtype == np.uint16


def test_export_refuses_the_dataset_directorys_own_files(hdf5_dataset, tmp_path):
    dataset, _ = hdf5_dataset
    before = _snapshot(tmp_path)
    for name in ["metadata.json", "signals_0.h5"]:
        with pytest.raises(ValueError, match="dataset's directory"):
            dataset.export_signals(os.path.join(dataset.savedir, name))
    assert _snapshot(tmp_path) == before
    dataset.export_signals(str(tmp_path / "cells.csv"))  # anywhere else is fine
    assert (tmp_path / "cells.csv").exists()


def test_writing_onto_a_directory_names_the_users_path(hdf5_dataset, tmp_path):
    dataset, _ = hdf5_dataset
    (tmp_path / "a.sima").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        dataset.export_signals(str(tmp_path / "a.sima"))
    assert "a.sima" in str(info.value)
    assert ".tmp-" not in str(info.value)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_warnings_point_at_the_callers_line():
    seq = sima.Sequence.create("ndarray", np.ones((20, 1, 4, 5, 1), dtype=np.float32))
    dataset = sima.ImagingDataset([seq], None)
    empty = ROI(mask=np.zeros((1, 4, 5), dtype=bool), label="empty")
    full = ROI(mask=np.ones((1, 4, 5), dtype=bool), label="full")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset.extract(ROIList([empty, full]), save_summary=False)
    assert caught, "an empty ROI gives a warning"
    assert {os.path.basename(w.filename) for w in caught} == {"test_safety.py"}


def test_warmup_compiles_without_writing_datasets(tmp_path, monkeypatch):
    from sima_fast.kernels import hmm as hmm_kernels

    calls = []

    def spy(name):
        real = getattr(hmm_kernels, name)

        def call(*args):
            calls.append(name)
            return real(*args)

        return call

    # the volume HMM (HiddenMarkov3D) kernels are run too, not left to the first real use
    for name in ("beam_viterbi3d", "accumulate_rows3d"):
        monkeypatch.setattr(hmm_kernels, name, spy(name))
    monkeypatch.chdir(tmp_path)
    assert sima.warmup(dtypes=["float32"]) >= 0
    assert os.listdir(tmp_path) == []
    assert {"beam_viterbi3d", "accumulate_rows3d"} <= set(calls)
    calls.clear()
    sima.warmup(dtypes=["float32"], motion=False)
    assert calls == []

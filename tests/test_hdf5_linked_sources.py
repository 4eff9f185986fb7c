"""HDF5 sequences name every file their frames come from, so writers never overwrite one."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from sima_fast import ImagingDataset, Sequence

T, Y, X = 12, 5, 6


def _movie(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(10, 200, (T, Y, X)).astype(np.float32)


@pytest.fixture
def linked(tmp_path):
    """raw/movie.h5 holds the frames; index/wrapper.h5 reaches them by a relative external link."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "index").mkdir()
    src = tmp_path / "raw" / "movie.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("data/frames", data=_movie())
    wrapper = tmp_path / "index" / "wrapper.h5"
    with h5py.File(wrapper, "w") as f:
        f.create_group("session")["frames"] = h5py.ExternalLink("../raw/movie.h5", "/data/frames")
    return src, wrapper


def test_an_external_link_target_is_a_data_file(linked, tmp_path, monkeypatch):
    src, wrapper = linked
    monkeypatch.chdir(tmp_path)  # resolved next to the wrapper, as HDF5 does, not the cwd
    seq = Sequence.create("HDF5", str(wrapper), "tyx", "session", "frames")
    assert seq.data_files() == sorted([str(wrapper), str(src)])
    np.testing.assert_array_equal(np.asarray(seq)[..., 0, :, :, 0], _movie())


def test_a_file_without_links_names_itself_only(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f["frames"] = _movie()
    assert Sequence.create("HDF5", str(path), "tyx").data_files() == [str(path)]


def test_writers_refuse_the_linked_source(linked, tmp_path):
    src, wrapper = linked
    before = src.read_bytes()
    ds = ImagingDataset(
        [Sequence.create("HDF5", str(wrapper), "tyx", "session", "frames")],
        str(tmp_path / "d.sima"),
    )
    with pytest.raises(ValueError, match=r"^filenames: refusing to write .*movie\.h5"):
        ds.export_frames([str(src)], fmt="HDF5")
    with pytest.raises(ValueError, match=r"^filenames: refusing"):
        ds.export_averages([str(src)], fmt="HDF5")
    # and after the dataset is saved and opened again
    again = ImagingDataset.load(ds.savedir)
    with pytest.raises(ValueError, match=r"^filenames: refusing"):
        again.export_frames([str(src)], fmt="HDF5")
    assert src.read_bytes() == before


def test_virtual_dataset_sources_are_data_files(tmp_path):
    parts = []
    for i in range(2):
        p = tmp_path / f"part{i}.h5"
        with h5py.File(p, "w") as f:
            f["frames"] = _movie(i)
        parts.append(p)
    layout = h5py.VirtualLayout(shape=(2 * T, Y, X), dtype=np.float32)
    for i, p in enumerate(parts):
        layout[i * T : (i + 1) * T] = h5py.VirtualSource(p.name, "frames", shape=(T, Y, X))
    joined = tmp_path / "joined.h5"
    with h5py.File(joined, "w") as f:
        f.create_virtual_dataset("frames", layout)
    seq = Sequence.create("HDF5", str(joined), "tyx")
    assert seq.data_files() == sorted([str(joined), *map(str, parts)])
    want = np.concatenate([_movie(0), _movie(1)])
    np.testing.assert_array_equal(np.asarray(seq)[..., 0, :, :, 0], want)


def test_a_vanished_file_is_still_named(linked):
    _, wrapper = linked
    seq = Sequence.create("HDF5", str(wrapper), "tyx", "session", "frames")
    seq._file.close()  # the reader reopens on demand; the file is now gone
    os.remove(wrapper)
    assert seq.data_files() == [str(wrapper)]

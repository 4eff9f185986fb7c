"""The simulator (ground truth by construction) and the cached example dataset."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import roifile
import tifffile

import sima_fast.misc._example as example_module
import sima_fast.misc.simulate as simulate_module
from sima_fast._geometry import polygon_to_mask
from sima_fast.kernels.noise import normal_table
from sima_fast.misc import (
    CHANNEL_NAMES,
    cache_directory,
    example_data,
    example_ground_truth,
    example_hdf5,
    example_imagej_rois,
    example_tiff,
    read_ground_truth,
    simulate_movie,
)

SMALL = {
    "num_frames": 40,
    "num_planes": 2,
    "frame_shape": (48, 56),
    "cells_per_plane": 6,
    "max_displacement": (3, 4),
    "seed": 5,
}


@pytest.fixture(scope="module")
def sim():
    return simulate_movie(**SMALL)


def _digest(s) -> str:
    h = hashlib.sha256()
    for a in (s.movie, s.observed, s.displacements, s.masks, s.spikes, s.calcium, s.baseline):
        h.update(np.ascontiguousarray(a).tobytes())
    for p in s.polygons:
        h.update(p.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- simulator


def test_shapes_and_types(sim):
    T, Z, (Y, X), C = 40, 2, (48, 56), 2
    n = 2 * 6
    assert sim.movie.shape == (T, Z, Y, X, C) and sim.movie.dtype == np.uint16
    assert sim.observed.shape == (T, Z, Y - 3, X - 4, C) and sim.observed.dtype == np.uint16
    assert sim.displacements.shape == (T, 2) and sim.displacements.dtype == np.int64
    assert sim.masks.shape == (n, Z, Y, X) and sim.masks.dtype == bool
    assert sim.spikes.shape == sim.calcium.shape == (n, T)
    assert sim.baseline.shape == (Z, Y, X, C)
    assert sim.neuropil.shape == (Z, T)
    assert len(sim.polygons) == n
    assert sim.planes.tolist() == [0] * 6 + [1] * 6
    assert (sim.num_frames, sim.num_cells, sim.frame_shape) == (T, n, (Z, Y, X, C))
    assert "SimulatedMovie" in repr(sim)


def test_same_arguments_give_identical_output(sim):
    again = simulate_movie(**SMALL)
    assert _digest(again) == _digest(sim)


def test_identical_output_in_another_process(sim):
    code = (
        "import hashlib, numpy as np\n"
        "from sima_fast.misc import simulate_movie\n"
        f"s = simulate_movie(**{SMALL!r})\n"
        "h = hashlib.sha256()\n"
        "for a in (s.movie, s.observed, s.displacements, s.masks, s.spikes, s.calcium,"
        " s.baseline):\n"
        "    h.update(np.ascontiguousarray(a).tobytes())\n"
        "for p in s.polygons:\n"
        "    h.update(p.tobytes())\n"
        "print(h.hexdigest())\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == _digest(sim)


def test_different_seed_changes_activity_not_scene(sim):
    other = simulate_movie(**{**SMALL, "seed": 6, "scene_seed": 5})
    assert not np.array_equal(other.movie, sim.movie)
    assert not np.array_equal(other.spikes, sim.spikes)
    assert not np.array_equal(other.displacements, sim.displacements)
    np.testing.assert_array_equal(other.masks, sim.masks)
    np.testing.assert_array_equal(other.baseline, sim.baseline)
    for a, b in zip(other.polygons, sim.polygons, strict=True):
        np.testing.assert_array_equal(a, b)
    new_scene = simulate_movie(**{**SMALL, "seed": 6})
    assert not np.array_equal(new_scene.masks, sim.masks)


def test_output_does_not_depend_on_chunking(monkeypatch):
    args = {**SMALL, "num_frames": 7, "dtype": "float32", "nan_fraction": 0.1}
    whole = simulate_movie(**args)
    monkeypatch.setattr(simulate_module, "_CHUNK_ELEMENTS", 1000)  # one frame per chunk
    chunked = simulate_movie(**args)
    np.testing.assert_array_equal(chunked.movie, whole.movie)


def test_calcium_is_the_exact_ar1_of_the_spikes(sim):
    gamma = np.exp(-1 / (1.0 * 15.0))
    assert sim.gamma == gamma
    assert sim.spikes.dtype == np.int64 and sim.spikes.min() >= 0
    np.testing.assert_array_equal(sim.calcium[:, 0], sim.spikes[:, 0])
    np.testing.assert_array_equal(
        sim.calcium[:, 1:], gamma * sim.calcium[:, :-1] + sim.spikes[:, 1:]
    )


def test_spike_rate():
    s = simulate_movie(
        num_frames=3000, frame_shape=(40, 40), cells_per_plane=10, spike_rate=2.0, seed=1
    )
    rate = s.spikes.sum() / (s.num_cells * s.num_frames / s.frame_rate)
    assert rate == pytest.approx(2.0, rel=0.05)


def test_masks_are_the_rasterised_polygons(sim):
    Y, X = sim.frame_shape[1:3]
    for i, (poly, plane) in enumerate(zip(sim.polygons, sim.planes, strict=True)):
        assert poly.shape[1] == 3 and 16 <= poly.shape[0] <= 24
        np.testing.assert_array_equal(poly[:, 2], plane)
        np.testing.assert_array_equal(poly.astype(np.float32).astype(np.float64), poly)
        assert np.any(poly[:, :2] != np.round(poly[:, :2]))  # sub-pixel vertices
        assert poly[:, 0].min() >= 2 and poly[:, 0].max() <= X - 2
        assert poly[:, 1].min() >= 2 and poly[:, 1].max() <= Y - 2
        expected = np.zeros(sim.masks.shape[1:], dtype=bool)
        expected[plane] = polygon_to_mask(poly, (Y, X))
        np.testing.assert_array_equal(sim.masks[i], expected)
        assert 30 < sim.masks[i].sum() < 200
    dense = sim.mask_matrix().toarray().reshape(sim.masks.shape)
    np.testing.assert_array_equal(dense, sim.masks)


def test_observed_is_the_displaced_movie(sim):
    d = sim.displacements
    assert d.min() >= 0 and d[:, 0].max() <= 3 and d[:, 1].max() <= 4
    assert d[:, 0].max() == 3 and d[:, 1].max() == 4 and d.min(axis=0).tolist() == [0, 0]
    assert np.abs(np.diff(d, axis=0)).max() <= 3  # a smooth-ish walk, not white noise
    rows, cols = sim.observed.shape[2:4]
    for t, (dy, dx) in enumerate(d):
        np.testing.assert_array_equal(
            sim.observed[t], sim.movie[t, :, dy : dy + rows, dx : dx + cols]
        )


def test_no_motion():
    s = simulate_movie(num_frames=5, frame_shape=(32, 32), cells_per_plane=2)
    assert s.observed is s.movie
    assert s.displacements.shape == (5, 2) and not s.displacements.any()


def test_apply_displacements_reproduces_the_movie(sim):
    sequence = pytest.importorskip("sima_fast.sequence")
    Z, Y, X, _ = sim.frame_shape
    seq = sequence.Sequence.create("ndarray", sim.observed).apply_displacements(
        sim.displacements, frame_shape=(Z, Y, X)
    )
    corrected = np.asarray(seq)
    seen = np.zeros(sim.movie.shape, dtype=bool)
    rows, cols = sim.observed.shape[2:4]
    for t, (dy, dx) in enumerate(sim.displacements):
        seen[t, :, dy : dy + rows, dx : dx + cols] = True
    np.testing.assert_array_equal(corrected[seen], sim.movie[seen])
    assert np.isnan(corrected[~seen]).all()


def test_noise_model_matches_the_expected_frames():
    s = simulate_movie(num_frames=60, frame_shape=(64, 64), cells_per_plane=8, dtype="float64")
    mu = s.expected()
    assert mu.shape == s.movie.shape
    z = (s.movie - mu) / np.sqrt(s.gain * mu + s.read_noise**2)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    # Channel 1 is static; channel 0 at rest equals the baseline.
    np.testing.assert_array_equal(mu[:, ..., 1], np.broadcast_to(s.baseline[..., 1], mu.shape[:4]))
    quiet = mu[:, :, :, :, 0] - s.baseline[None, ..., 0] * (1 + s.neuropil.T[:, :, None, None])
    activity = np.einsum("it,izyx->tzyx", s.amplitudes[:, None] * s.calcium, s.masks)
    np.testing.assert_allclose(quiet, activity, atol=1e-9)
    # Cells are brighter than the background in both channels.
    inside = s.masks.any(axis=0)
    # The integer (float32 arithmetic) path follows the same model, cells included.
    u = simulate_movie(num_frames=60, frame_shape=(64, 64), cells_per_plane=8)
    zu = (u.movie - mu) / np.sqrt(s.gain * mu + s.read_noise**2)
    cells = np.broadcast_to(inside[None, ..., None], zu.shape) & (np.arange(2) == 0)
    assert abs(zu[cells].mean()) < 0.02 and abs(zu[cells].std() - 1) < 0.02
    for c in range(2):
        assert s.baseline[..., c][inside].mean() > 1.3 * s.baseline[..., c][~inside].mean()


def test_values_and_clipping():
    s = simulate_movie(num_frames=30, frame_shape=(40, 40), cells_per_plane=4)
    assert np.percentile(s.movie, 1) > 50 and s.movie.max() < 5000
    bright = simulate_movie(
        num_frames=5, frame_shape=(40, 40), cells_per_plane=4, background=60000.0
    )
    assert bright.movie.dtype == np.uint16 and bright.movie.max() == 65535
    small = simulate_movie(num_frames=5, frame_shape=(40, 40), cells_per_plane=4, dtype="uint8")
    assert small.movie.dtype == np.uint8 and small.movie.max() == 255
    dark = simulate_movie(
        num_frames=5,
        frame_shape=(40, 40),
        cells_per_plane=4,
        dtype="int16",
        background=1.0,
        read_noise=50.0,
    )
    assert dark.movie.min() < 0
    f = simulate_movie(num_frames=5, frame_shape=(40, 40), cells_per_plane=4, dtype="float32")
    assert f.movie.dtype == np.float32 and np.any(f.movie != np.round(f.movie))


def test_nan_fraction():
    s = simulate_movie(
        num_frames=20, frame_shape=(40, 40), cells_per_plane=4, dtype="float32", nan_fraction=0.2
    )
    assert np.isnan(s.movie).mean() == pytest.approx(0.2, abs=0.01)


def test_one_channel_and_no_cells():
    s = simulate_movie(num_frames=4, frame_shape=(20, 30), num_channels=1, cells_per_plane=0)
    assert s.movie.shape == (4, 1, 20, 30, 1) and s.masks.shape == (0, 1, 20, 30)
    assert s.spikes.shape == (0, 4) and s.polygons == ()
    one = simulate_movie(num_frames=4, frame_shape=(40, 40), num_channels=1, cells_per_plane=3)
    two = simulate_movie(num_frames=4, frame_shape=(40, 40), num_channels=2, cells_per_plane=3)
    np.testing.assert_array_equal(one.baseline[..., 0], two.baseline[..., 0])


def test_crowded_frame_still_fills():
    s = simulate_movie(num_frames=2, frame_shape=(30, 30), cells_per_plane=40)
    assert s.num_cells == 40


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": 2.5}, "num_frames"),
        ({"num_planes": -1}, "num_planes"),
        ({"frame_shape": (-4, 40)}, "frame_shape"),
        ({"frame_shape": (40,)}, "frame_shape"),
        ({"num_channels": 3}, "num_channels"),
        ({"cells_per_plane": -2}, "cells_per_plane"),
        ({"frame_rate": 0}, "frame_rate"),
        ({"tau": -1.0}, "tau"),
        ({"spike_rate": -1.0}, "spike_rate"),
        ({"cell_radius": (5.0, 3.0)}, "cell_radius"),
        ({"cell_radius": "big"}, "cell_radius"),
        ({"max_displacement": (40, 0)}, "max_displacement"),
        ({"max_displacement": (0, -1)}, "max_displacement"),
        ({"dtype": "complex64"}, "dtype"),
        ({"dtype": "not a dtype"}, "dtype"),
        ({"nan_fraction": 0.1}, "nan_fraction"),
        ({"nan_fraction": 1.0, "dtype": "float32"}, "nan_fraction"),
        ({"seed": -1}, "seed"),
        ({"gain": float("nan")}, "gain"),
        ({"frame_shape": (12, 12)}, "frame_shape"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, name):
    args = {"num_frames": 3, "frame_shape": (40, 40), "cells_per_plane": 2, **kwargs}
    with pytest.raises(ValueError, match=name):
        simulate_movie(**args)


def test_normal_table():
    t = normal_table(np.float64)
    assert t.shape == (65536,) and np.all(np.diff(t) > 0)
    assert abs(t.mean()) < 1e-12 and abs((t**2).mean() - 1) < 1e-12
    np.testing.assert_allclose(t[54613], 0.9674, atol=1e-3)  # the 0.8333 quantile


def test_movie_expected_range_validation(sim):
    with pytest.raises(ValueError, match="expected"):
        sim.expected(5, 100)


# ---------------------------------------------------------------- example files (no core needed)


@pytest.fixture(scope="module")
def example_sims():
    return example_module._simulate_sequences()


def test_example_files_without_the_dataset(tmp_path, example_sims):
    example_module._write_files(str(tmp_path), example_sims)
    with h5py.File(tmp_path / "example.h5", "r") as f:
        ds = f["imaging"]
        assert ds.dtype == np.uint16 and ds.shape == (200, 2, 128, 128, 2)
        assert [d.label for d in ds.dims] == list("tzyxc")
        np.testing.assert_array_equal(ds[()], example_sims[0].movie)
    observed = example_sims[1].observed
    with tifffile.TiffFile(tmp_path / "example.tif") as tif:
        assert len(tif.pages) == 200 * 2 * 2
        assert tif.pages[0].compression == 1 and tif.pages[0].photometric == 1
        pages = tif.asarray()
    t, p, c = 17, 1, 0
    np.testing.assert_array_equal(pages[t * 4 + p * 2 + c], observed[t, p, :, :, c])
    truth = read_ground_truth(tmp_path / "ground_truth.h5")
    _check_truth(truth, example_sims)
    _check_rois(str(tmp_path / "example_rois.zip"), truth)


def _check_truth(truth, sims):
    assert truth.channel_names == list(CHANNEL_NAMES)
    assert truth.frame_shape == (2, 128, 128, 2)
    assert truth.num_sequences == 2 and truth.num_cells == sims[0].num_cells
    assert 30 <= truth.num_cells / 2 <= 40
    assert truth.cell_names[:2] == ["cell_000", "cell_001"]
    assert truth.frame_rate == 15.0 and truth.gamma == sims[0].gamma
    np.testing.assert_array_equal(truth.masks, sims[0].masks)
    np.testing.assert_array_equal(truth.planes, sims[0].planes)
    for a, b in zip(truth.polygons, sims[0].polygons, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(truth.baseline, sims[0].baseline)
    for k, s in enumerate(sims):
        np.testing.assert_array_equal(truth.spikes[k], s.spikes)
        np.testing.assert_array_equal(truth.calcium[k], s.calcium)
        np.testing.assert_array_equal(truth.displacements[k], s.displacements)
        np.testing.assert_array_equal(truth.neuropil[k], s.neuropil)
    assert not np.array_equal(truth.spikes[0], truth.spikes[1])
    assert not truth.displacements[0].any() and truth.displacements[1].any()
    assert truth.seeds[0] != truth.seeds[1]


def _check_rois(path, truth):
    rois = roifile.roiread(path)
    assert [r.name for r in rois] == truth.cell_names
    for roi, poly, plane in zip(rois, truth.polygons, truth.planes, strict=True):
        assert roi.position == plane + 1
        assert roi.roitype == roifile.ROI_TYPE.POLYGON
        np.testing.assert_array_equal(roi.coordinates(), poly[:, :2])


def test_cache_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert cache_directory() == str(tmp_path / "a")
    monkeypatch.delenv("SIMA_FAST_CACHE")
    assert cache_directory() == str(tmp_path / "b" / "sima_fast")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_directory() == str(tmp_path / "home" / ".cache" / "sima_fast")


# ---------------------------------------------------------------- the example dataset


@pytest.fixture(scope="module")
def built_example(tmp_path_factory):
    pytest.importorskip("sima_fast.imaging")
    cache = tmp_path_factory.mktemp("example_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SIMA_FAST_CACHE", str(cache))
        paths = {
            "dataset": example_data(),
            "hdf5": example_hdf5(),
            "tiff": example_tiff(),
            "rois": example_imagej_rois(),
            "truth": example_ground_truth(),
            "cache": str(cache),
        }
    return paths


def test_example_layout(built_example):
    folder = os.path.join(built_example["cache"], f"example-v{example_module.EXAMPLE_VERSION}")
    assert built_example["dataset"] == os.path.join(folder, "example.sima")
    assert built_example["hdf5"] == os.path.join(folder, "example.h5")
    assert built_example["tiff"] == os.path.join(folder, "example.tif")
    assert built_example["rois"] == os.path.join(folder, "example_rois.zip")
    assert os.path.isdir(built_example["dataset"])
    with open(os.path.join(folder, "COMPLETE.json")) as fh:
        marker = json.load(fh)
    assert marker["version"] == example_module.EXAMPLE_VERSION
    assert sorted(os.listdir(built_example["cache"])) == [os.path.basename(folder)]  # no leftovers


def test_example_dataset_content(built_example, example_sims):
    from sima_fast.imaging import ImagingDataset

    ds = ImagingDataset.load(built_example["dataset"])
    assert ds.num_sequences == 2 and ds.num_frames == 400
    assert ds.frame_shape == (2, 128, 128, 2)
    assert ds.channel_names == ["GCaMP", "tdTomato"]
    np.testing.assert_array_equal(np.asarray(ds.sequences[0]), example_sims[0].movie)
    moved = np.asarray(ds.sequences[1])
    seen = np.isfinite(moved)
    assert 0.8 < seen.mean() < 1  # NaN gaps where the moving microscope saw nothing
    np.testing.assert_array_equal(moved[seen], example_sims[1].movie[seen])
    rows, cols = example_sims[1].observed.shape[2:4]
    for t, (dy, dx) in enumerate(example_sims[1].displacements):
        assert seen[t, :, dy : dy + rows, dx : dx + cols].all()
        assert seen[t].sum() == 2 * 2 * rows * cols


def test_example_ground_truth_and_rois(built_example, example_sims):
    _check_truth(built_example["truth"], example_sims)
    _check_rois(built_example["rois"], built_example["truth"])


def test_example_is_cached(monkeypatch, tmp_path):
    pytest.importorskip("sima_fast.imaging")
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path))
    calls = []
    build = example_module._build_example

    def counting_build(folder):
        calls.append(folder)
        build(folder)

    monkeypatch.setattr(example_module, "_build_example", counting_build)
    first = example_data()
    marker = os.path.join(os.path.dirname(first), "COMPLETE.json")
    stamp = os.stat(marker).st_mtime_ns
    assert example_data() == first
    assert example_tiff() and example_hdf5() and example_imagej_rois()
    assert example_ground_truth().num_cells > 0
    assert len(calls) == 1 and os.stat(marker).st_mtime_ns == stamp
    # A damaged folder (marker lists a missing file) is rebuilt.
    os.remove(example_hdf5())
    assert example_data() == first and len(calls) == 2
    assert os.path.exists(example_hdf5())


def test_interrupted_build_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path))

    def failing_build(folder):
        example_module._write_files(folder, example_module._simulate_sequences())
        raise KeyboardInterrupt

    monkeypatch.setattr(example_module, "_build_example", failing_build)
    with pytest.raises(KeyboardInterrupt):
        example_data()
    assert os.listdir(tmp_path) == []


def test_concurrent_builder_keeps_the_first(tmp_path):
    final = tmp_path / "example-v1"
    final.mkdir()
    (final / "data.txt").write_text("first")
    marker = {"version": example_module.EXAMPLE_VERSION, "files": ["data.txt"]}
    (final / "COMPLETE.json").write_text(json.dumps(marker))
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "data.txt").write_text("second")
    example_module._install(str(staging), str(final))
    assert (final / "data.txt").read_text() == "first"
    # A damaged final folder is replaced.
    (final / "COMPLETE.json").unlink()
    (staging / "COMPLETE.json").write_text(json.dumps(marker))
    example_module._install(str(staging), str(final))
    assert (final / "data.txt").read_text() == "second"
    assert sorted(os.listdir(tmp_path)) == ["example-v1"]

"""``seq.displacements`` on motion-corrected sequences, also indexed (SIMA scripts read it)."""

from __future__ import annotations

import numpy as np
import pytest

from sima_fast import ImagingDataset, Sequence
from sima_fast.motion import PlaneTranslation2D


def test_corrected_and_indexed_sequences_give_their_displacements(tmp_path):
    movie = np.random.default_rng(0).uniform(0, 1, size=(5, 1, 6, 7, 1))
    d = np.array([[[0, 1]], [[1, 0]], [[0, 0]], [[2, 1]], [[1, 1]]])
    corrected = Sequence.create("ndarray", movie).apply_displacements(d)
    np.testing.assert_array_equal(corrected.displacements, d)
    assert corrected.displacements.dtype == np.int64
    with pytest.raises(ValueError):
        corrected.displacements[0, 0, 0] = 5  # read-only: the view's own table
    np.testing.assert_array_equal(corrected[1:3].displacements, d)  # whole, as SIMA's
    with pytest.raises(AttributeError, match="not motion-corrected"):
        _ = Sequence.create("ndarray", movie)[1:3].displacements


def test_every_sequence_of_a_corrected_dataset_has_displacements(tmp_path):
    rng = np.random.default_rng(1)
    scene = rng.uniform(0, 100, size=(40, 40))
    frames = np.stack([scene[s : s + 32, s : s + 32] for s in (0, 2, 1, 3)])[:, None, :, :, None]
    ds = PlaneTranslation2D(max_displacement=6).correct(
        [Sequence.create("ndarray", frames)], str(tmp_path / "c.sima")
    )
    for seq in ImagingDataset.load(str(tmp_path / "c.sima")):
        assert np.all(np.isfinite(seq.displacements))
    assert all(np.all(np.isfinite(seq.displacements)) for seq in ds)

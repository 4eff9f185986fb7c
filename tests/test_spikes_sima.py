"""SIMA's spike-inference helpers and record keys: signatures, defaults, return types.

The traces are simulated here (AR(1) calcium from Poisson spikes plus white
noise, a baseline and a few missing samples), the way a SIMA user's script
builds its test data.
"""

from __future__ import annotations

import inspect
import os
import warnings

import h5py
import numpy as np
import pytest
from scipy.signal import lfilter

import sima_fast as sima
from sima_fast import spikes
from sima_fast._validate import ArgumentTypeError


def calcium_trace(seed, gamma=0.95, sigma=0.1, steps=6000, rate=1.0, deltat=1 / 30, base=0.4):
    train = spikes.get_poisson_spikes(seed=seed, rate=rate, steps=steps, deltat=deltat)
    calcium = lfilter([1.0], [1.0, -gamma], train)
    noise = sigma * np.random.default_rng(seed).standard_normal(steps)
    return train, calcium + noise + base


# -- signatures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("get_poisson_spikes", ["seed", "rate", "steps", "deltat"]),
        ("estimate_parameters", ["fluor", "gamma", "sigma", "mode", "ar_order", "psd_opts"]),
        ("estimate_sigma", ["fluor", "range_ff", "method"]),
        ("estimate_gamma", ["fluor", "sigma", "p", "lags", "fudge_factor"]),
        (
            "spike_inference",
            ["fluor", "sigma", "gamma", "mode", "ar_order", "psd_opts", "verbose", "solver"],
        ),
    ],
)
def test_simas_signatures_and_defaults(name, expected):
    params = inspect.signature(getattr(spikes, name)).parameters
    assert list(params) == expected
    defaults = {
        k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty
    }
    simas = {
        "get_poisson_spikes": {"seed": 11111, "rate": 5, "steps": 1000, "deltat": 1 / 30},
        "estimate_parameters": {
            "gamma": None,
            "sigma": None,
            "mode": "correct",
            "ar_order": 2,
            "psd_opts": None,
        },
        "estimate_sigma": {"range_ff": (0.25, 0.5), "method": "logmexp"},
        "estimate_gamma": {"p": 2, "lags": 5, "fudge_factor": 1},
        "spike_inference": {
            "sigma": None,
            "gamma": None,
            "mode": "correct",
            "ar_order": 2,
            "psd_opts": None,
            "verbose": False,
        },
    }[name]
    assert {k: defaults[k] for k in simas} == simas


# -- get_poisson_spikes -------------------------------------------------------------------------


def test_poisson_spikes_are_reproducible_binary_and_leave_numpys_generator_alone():
    state = np.random.get_state()[1].copy()  # noqa: NPY002 (the legacy global generator)
    train = spikes.get_poisson_spikes()
    assert train.shape == (1000,) and train.dtype == np.float64
    assert set(np.unique(train)) <= {0.0, 1.0}
    np.testing.assert_array_equal(train, spikes.get_poisson_spikes(seed=11111))
    assert not np.array_equal(train, spikes.get_poisson_spikes(seed=11112))
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002
    # numpy's legacy uniform draws, one per bin, compared with rate * deltat
    draws = np.random.RandomState(7).uniform(0.0, 1.0, 500)
    np.testing.assert_array_equal(
        spikes.get_poisson_spikes(seed=7, rate=6, steps=500, deltat=0.05),
        (draws <= 0.3).astype(float),
    )
    long = spikes.get_poisson_spikes(seed=3, rate=2, steps=200_000, deltat=0.01)
    assert long.mean() == pytest.approx(0.02, rel=0.05)
    assert spikes.get_poisson_spikes(steps=0).shape == (0,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"seed": 2**32},
        {"rate": -1.0},
        {"steps": -5},
        {"deltat": -0.1},
        {"seed": "a"},
    ],
)
def test_poisson_spikes_refuse_bad_arguments(kwargs):
    name = next(iter(kwargs))
    with pytest.raises((ValueError, TypeError), match=name):
        spikes.get_poisson_spikes(**kwargs)


# -- estimate_parameters ----------------------------------------------------------------------


def test_estimate_parameters_takes_one_trace_and_returns_gamma_sigma():
    _, fluor = calcium_trace(11, gamma=0.95, sigma=0.1, steps=30_000)
    result = spikes.estimate_parameters(fluor)
    assert isinstance(result, tuple) and len(result) == 2
    gamma, sigma = result
    assert isinstance(gamma, float) and isinstance(sigma, float)
    assert gamma == pytest.approx(0.95, abs=0.02)
    assert sigma == pytest.approx(0.1, rel=0.1)
    # several traces of one ROI (a list, or the rows of an array) share the estimate
    halves = [fluor[:15_000], fluor[15_000:]]
    assert spikes.estimate_parameters(halves)[0] == pytest.approx(gamma, abs=0.01)
    assert spikes.estimate_parameters(np.vstack(halves)) == spikes.estimate_parameters(halves)
    # SIMA's infer_spikes passes sigma=0 to skip the noise estimate, gamma to reuse one
    assert spikes.estimate_parameters(fluor, 0.9, sigma=0) == (0.9, 0.0)
    assert spikes.estimate_parameters(fluor, gamma=0.96)[0] == 0.96
    assert spikes.estimate_parameters(fluor, gamma=0.96)[1] == pytest.approx(
        spikes.estimate_noise(fluor, 0.96), rel=1e-12
    )


def test_estimate_parameters_modes():
    _, fluor = calcium_trace(12, gamma=0.9, sigma=0.2, steps=20_000)
    fluor[100:110] = np.nan  # missing samples are left out
    g_correct, s_correct = spikes.estimate_parameters(fluor, mode="correct")
    g_robust, s_robust = spikes.estimate_parameters(fluor, mode="robust")
    assert g_correct == g_robust and s_robust >= s_correct
    gamma, sigma = spikes.estimate_parameters(fluor, mode="psd")
    assert isinstance(gamma, np.ndarray) and gamma.shape == (2,)  # SIMA's AR(2) coefficients
    assert sigma == pytest.approx(0.2, rel=0.15)
    gamma1, _ = spikes.estimate_parameters(fluor, mode="psd", ar_order=1)
    assert gamma1.shape == (1,) and gamma1[0] == pytest.approx(0.9, abs=0.03)
    _, s_mean = spikes.estimate_parameters(fluor, mode="psd", psd_opts={"noise_method": "mean"})
    finite = fluor[np.isfinite(fluor)]
    assert s_mean == pytest.approx(spikes.estimate_sigma(finite, method="mean"), rel=1e-12)
    with pytest.raises(ValueError, match="mode"):
        spikes.estimate_parameters(fluor, mode="exact")
    with pytest.raises(ValueError, match="gamma"):
        spikes.estimate_parameters(fluor, gamma=1.2)
    with pytest.raises(TypeError, match="psd_opts"):
        spikes.estimate_parameters(fluor, mode="psd", psd_opts=[1])
    with pytest.raises(ValueError, match="fluor"):
        spikes.estimate_parameters(fluor[:5])


# -- estimate_sigma and estimate_gamma ---------------------------------------------------------


def test_estimate_sigma_averages_the_noise_band():
    noise = 0.3 * np.random.default_rng(5).standard_normal(40_000)
    for method in ("logmexp", "mean", "median"):
        assert spikes.estimate_sigma(noise, method=method) == pytest.approx(0.3, rel=0.08)
    assert isinstance(spikes.estimate_sigma(noise), float)
    with_gaps = noise.copy()
    with_gaps[::50] = np.nan
    assert spikes.estimate_sigma(with_gaps) == pytest.approx(0.3, rel=0.08)
    # slow calcium transients, mostly below the band, hardly count as noise
    _, fluor = calcium_trace(6, gamma=0.98, sigma=0.05, steps=20_000, rate=3)
    assert spikes.estimate_sigma(fluor) < 0.2 * np.std(fluor)
    for bad in [(0.4, 0.3), (0.2, 0.7), (-0.1, 0.2)]:
        with pytest.raises(ValueError, match="range_ff"):
            spikes.estimate_sigma(noise, range_ff=bad)
    with pytest.raises(ArgumentTypeError, match="range_ff"):
        spikes.estimate_sigma(noise, range_ff=0.3)
    with pytest.raises(ValueError, match="method"):
        spikes.estimate_sigma(noise, method="max")
    with pytest.raises(ValueError, match="1-D"):
        spikes.estimate_sigma(np.ones((3, 40)))


def test_estimate_gamma_recovers_ar_coefficients():
    rng = np.random.default_rng(8)
    n = 60_000
    drive = rng.standard_normal(n)
    ar2 = lfilter([1.0], [1.0, -1.2, 0.35], drive)  # c_t = 1.2 c_{t-1} - 0.35 c_{t-2} + s_t
    noisy = ar2 + 0.5 * rng.standard_normal(n)
    g2 = spikes.estimate_gamma(noisy, 0.5)
    assert g2.shape == (2,) and g2.dtype == np.float64
    np.testing.assert_allclose(g2, [1.2, -0.35], atol=0.05)
    # the noise correction matters: ignoring the noise biases the estimate
    assert np.abs(spikes.estimate_gamma(noisy, 0.0) - [1.2, -0.35]).max() > 0.05
    ar1 = lfilter([1.0], [1.0, -0.9], drive) + 0.5 * rng.standard_normal(n)
    assert spikes.estimate_gamma(ar1, 0.5, p=1)[0] == pytest.approx(0.9, abs=0.01)
    assert spikes.estimate_gamma(ar1, None, p=1)[0] == pytest.approx(0.9, abs=0.02)
    shrunk = spikes.estimate_gamma(ar1, 0.5, p=1, fudge_factor=0.9)
    assert shrunk[0] == pytest.approx(0.9 * spikes.estimate_gamma(ar1, 0.5, p=1)[0])
    with pytest.raises(ValueError, match="fudge_factor"):
        spikes.estimate_gamma(ar1, 0.5, fudge_factor=1.5)
    with pytest.raises(ValueError, match="p"):
        spikes.estimate_gamma(ar1, 0.5, p=0)
    with pytest.raises(ValueError, match="sigma"):
        spikes.estimate_gamma(ar1, -1.0)


# -- spike_inference ---------------------------------------------------------------------------


def test_spike_inference_in_simas_calling_order_with_verbose(capsys):
    train, fluor = calcium_trace(21, gamma=0.94, sigma=0.05, steps=3000, rate=2)
    inference, fit, params = spikes.spike_inference(fluor, 0.05, 0.94, "correct", 2, None, True)
    line = capsys.readouterr().out.strip()
    assert line.startswith("spike_inference: 3000 samples") and "\n" not in line
    assert inference.shape == fit.shape == (3000,)
    assert {"gamma", "sigma", "baseline"} <= set(params)
    assert params["gamma"] == 0.94 and params["sigma"] == 0.05
    assert np.corrcoef(inference, train)[0, 1] > 0.8
    with pytest.raises(TypeError, match="verbose"):
        spikes.spike_inference(fluor, verbose="yes")
    with pytest.raises(ValueError, match="ar_order"):
        spikes.spike_inference(fluor, ar_order=0)


def test_spike_inference_psd_opts_choose_the_noise_estimate():
    _, fluor = calcium_trace(22, gamma=0.9, sigma=0.1, steps=4000)
    _, _, default = spikes.spike_inference(fluor, mode="psd")
    _, _, median = spikes.spike_inference(fluor, mode="psd", psd_opts={"noise_method": "median"})
    assert median["sigma"] == pytest.approx(spikes.estimate_sigma(fluor, method="median"))
    assert default["sigma"] == pytest.approx(spikes.estimate_noise(fluor, None, "psd"), rel=1e-9)


def test_the_spikeinference_example_workflow():
    """Five traces: joint gamma from all samples as one 1-D array, then per-trace sigma."""
    truth, fluors = zip(*(calcium_trace(2222 + i, gamma=0.944, steps=5000) for i in range(5)))
    fluors = np.asarray(fluors)
    joint_gamma, _joint_sigma = spikes.estimate_parameters(fluors.reshape(fluors.size))
    assert joint_gamma == pytest.approx(0.944, abs=0.03)
    for x in range(5):
        _gamma, sigma_est = spikes.estimate_parameters(fluors[x], gamma=joint_gamma)
        assert sigma_est == pytest.approx(0.1, rel=0.2)
        inference, _fit, _params = spikes.spike_inference(
            fluors[x], sigma=sigma_est, gamma=joint_gamma
        )
        found = inference > 0.1
        hits = (found & (truth[x] > 0)).sum() / max(found.sum(), 1)
        assert hits > 0.7


# -- the signals record ------------------------------------------------------------------------


def _dataset(path, monkeypatch):
    monkeypatch.setenv("SIMA_FAST_CACHE", os.path.dirname(path))
    fluor = np.stack([calcium_trace(30 + k, steps=900)[1] for k in range(3)])
    movie = np.zeros((900, 1, 4, 4, 1), dtype=np.float32)
    ds = sima.ImagingDataset([sima.Sequence.create("ndarray", movie)], path)
    record = {"raw": [fluor], "signal_channel": 0, "timestamp": "2026-12-06-10h00m00s"}
    ds._store_signals(0, "cells", record)
    return ds


def test_infer_spikes_stores_under_simas_keys(tmp_path, monkeypatch):
    ds = _dataset(str(tmp_path / "d.sima"), monkeypatch)
    with warnings.catch_warnings():  # short simulated traces: estimates may be repaired
        warnings.simplefilter("ignore", spikes.SpikeInferenceWarning)
        spike_list, fits, _params = ds.infer_spikes(label="cells")
    with h5py.File(tmp_path / "d.sima" / "signals_0.h5", "r") as f:
        stored = set(f["cells"])
    assert {"spikes", "spikes_fits", "spikes_params"} <= stored and "fits" not in stored
    record = sima.ImagingDataset.load(str(tmp_path / "d.sima")).signals()["cells"]
    np.testing.assert_array_equal(record["spikes_fits"][0], fits[0])
    np.testing.assert_array_equal(record["spikes"][0], spike_list[0])
    assert record["fits"] is record["spikes_fits"]  # the earlier name, same arrays
    assert set(record["spikes_params"][0]) >= {"gamma", "sigma", "baseline"}
    assert record["spikes_params"][0]["sigma"].shape == (3,)


def test_records_stored_by_earlier_versions_read_under_simas_key(tmp_path, monkeypatch):
    ds = _dataset(str(tmp_path / "old.sima"), monkeypatch)
    old = dict(ds.signals()["cells"])
    old["fits"] = [np.ones((3, 900))]  # as earlier sima_fast versions stored it
    ds._store_signals(0, "cells", old)
    record = ds.signals()["cells"]
    np.testing.assert_array_equal(record["spikes_fits"][0], np.ones((3, 900)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spikes.SpikeInferenceWarning)
        ds.infer_spikes(label="cells")
    with h5py.File(tmp_path / "old.sima" / "signals_0.h5", "r") as f:
        assert "fits" not in f["cells"] and "spikes_fits" in f["cells"]

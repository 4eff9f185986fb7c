"""HiddenMarkov3D: row-wise (dz, dy, dx) motion of volumes, against ground truth.

The 3-D kernels are compared with direct numpy versions (the emission
log-likelihood, the canvas accumulation, a full-state Viterbi on tiny cases)
and with the 2-D kernels where a single z state makes them the same problem.
The strategy is checked on volumes rendered from a scene of
``sima_fast.misc.simulate_movie`` with a known displacement for every row:
a random walk in (y, x) along the raster and a jump in z between volumes,
Poisson noise.
"""

from __future__ import annotations

import inspect
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

import sima_fast as sima
from sima_fast._validate import ArgumentTypeError
from sima_fast.kernels.hmm import (
    accumulate_rows3d,
    backtrace,
    beam_viterbi,
    beam_viterbi3d,
    mark_nan_rows,
    row_prefix_sums,
    unit_loglik3d,
)
from sima_fast.misc import simulate_movie
from sima_fast.motion.hmm import HiddenMarkov3D, estimate_rowwise

# ---------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------


def scene_volume(Z, Y, X, seed):
    """A motion-free (Z, Y, X) volume of cells (simulate_movie's scene, no noise).

    simulate_movie draws the planes independently; real planes a few microns
    apart share much of their content (cells span several planes, the
    microscope's axial resolution), so the planes are blurred along z.
    """
    movie = simulate_movie(
        num_frames=2,
        num_planes=Z,
        frame_shape=(Y, X),
        num_channels=1,
        cells_per_plane=max(4, Y * X // 250),
        seed=seed,
        gain=0.0,
        read_noise=0.0,
        neuropil_std=0.0,
        spike_rate=0.0,
    )
    planes = np.asarray(movie.movie, dtype=np.float64)[0, ..., 0]
    return ndimage.gaussian_filter1d(planes, 1.0, axis=0, mode="nearest")


def simulate_volumes(T, Z, Y, X, *, pz=1, pyx=3, step_sd=0.1, photons=0.2, seed=0, rigid=False):
    """Volumes imaged row by row, and the true (T, Z, Y, 3) displacement of every row.

    Row ``y`` of plane ``z`` of volume ``t`` shows the scene at plane
    ``z + dz``, rows ``y + dy``, columns ``x + dx`` (the convention of
    ``apply_displacements``: displacements >= 0, and the observed row lands
    back on the scene at ``p + d``). ``dz`` jumps between volumes; ``(dy, dx)``
    walk along the raster (or jump between volumes, ``rigid=True``).
    """
    rng = np.random.default_rng(seed)
    scene = scene_volume(Z + 2 * pz, Y + 2 * pyx, X + 2 * pyx, seed)
    rows = Z * Y
    d = np.zeros((T * rows, 3), dtype=np.int64)
    yx = np.zeros(2)
    for t in range(T):
        dz = rng.integers(-pz, pz + 1)
        if rigid:
            jump = rng.integers(-pyx, pyx + 1, 2)
        for r in range(rows):
            if rigid:
                yx = jump.astype(np.float64)
            else:
                yx = np.clip(yx * (1 - 1 / 400) + rng.normal(0.0, step_sd, 2), -pyx, pyx)
            d[t * rows + r] = (dz, *np.rint(yx))
    d = d.reshape(T, Z, Y, 3) + np.array([pz, pyx, pyx])
    observed = np.empty((T, Z, Y, X))
    xs = np.arange(X)
    for t in range(T):
        for z in range(Z):
            for y in range(Y):
                dz, dy, dx = d[t, z, y]
                observed[t, z, y] = scene[z + dz, y + dy, xs + dx]
    frames = rng.poisson(observed * photons).astype(np.float32)
    return frames, d, scene


def exact3(est, truth):
    """Fractions of rows exact in (dz, dy, dx) together and per axis, up to one offset."""
    diff = np.asarray(est, dtype=np.int64) - truth
    pairs, counts = np.unique(diff.reshape(-1, 3), axis=0, return_counts=True)
    ok = diff == pairs[np.argmax(counts)]
    return float(np.mean(np.all(ok, axis=-1))), [float(ok[..., a].mean()) for a in range(3)]


def sequence(frames):
    return sima.Sequence.create("ndarray", np.asarray(frames)[..., None])


# ---------------------------------------------------------------------------
# numpy references of the 3-D kernels
# ---------------------------------------------------------------------------


def ref_unit_loglik3d(frames, row0, nrows, iz, iy, ix, lam):
    Z, Y, X = frames.shape[1:]
    total = 0.0
    for r in range(row0, row0 + nrows):
        t, z, y = r // (Z * Y), (r // Y) % Z, r % Y
        row = frames[t, z, y].astype(np.float64)
        window = lam[z + iz, y + iy, ix : ix + X]
        ok = np.isfinite(row)
        total += float(np.sum(row[ok] * np.log(window[ok]) - window[ok]))
    return total


def make_canvas(Z, Y, X, nz, ny, nx, rng):
    lam = rng.uniform(0.5, 5.0, (Z + nz - 1, Y + ny - 1, X + nx - 1))
    cum = np.zeros((*lam.shape[:2], lam.shape[2] + 1))
    row_prefix_sums(lam, cum)
    return lam, np.log(lam), cum


def steps3(reach_z, reach, sd):
    axes = [
        np.arange(-reach_z, reach_z + 1),
        np.arange(-reach, reach + 1),
        np.arange(-reach, reach + 1),
    ]
    g = [a.ravel().astype(np.int64) for a in np.meshgrid(*axes, indexing="ij")]
    lp = -0.5 * (g[0] ** 2 + g[1] ** 2 + g[2] ** 2) / sd**2
    return g[0], g[1], g[2], lp


def run_beam3d(frames, unit_rows, sizes, lam, logref, cum, k, steps, prior, margin=np.inf):
    """The 3-D kernel over all of ``frames`` from a restart; return the best path's states."""
    Z, Y = frames.shape[1:3]
    n_units = -(-frames.shape[0] * Z * Y // unit_rows)
    S = int(np.prod(sizes))
    k = min(k, S)
    bp = np.zeros((n_units, k), np.int16)
    stt = np.zeros((n_units, k), np.int32)
    nslots = np.zeros(n_units, np.int32)
    beam_state = np.zeros(k, np.int32)
    beam_score = np.zeros(k)
    beam_n = np.zeros(1, np.int64)
    nan_rows = np.zeros(frames.shape[0] * Z * Y, np.bool_)
    mark_nan_rows(frames, nan_rows)
    done = beam_viterbi3d(
        frames, 0, frames.shape[0] * Z * Y, unit_rows, *sizes, logref, lam, cum, nan_rows,
        *steps, *steps, prior, True, margin, beam_state, beam_score, beam_n, bp, stt, nslots, 0,
        np.full(S, -np.inf), np.zeros(S, np.int32), np.zeros(S, np.int32),
    )  # fmt: skip
    assert done == n_units
    path = np.zeros(n_units, np.int32)
    backtrace(bp, stt, n_units - 1, int(np.argmax(beam_score[: beam_n[0]])), path)
    return path, bp, stt, nslots, beam_score[: beam_n[0]].copy()


def full_viterbi3d(frames, unit_rows, sizes, lam, steps, prior):
    """Exhaustive Viterbi over every state (numpy), for tiny problems."""
    nz, ny, nx = sizes
    S = nz * ny * nx
    Z, Y = frames.shape[1:3]
    rows = frames.shape[0] * Z * Y
    grid = np.stack(np.unravel_index(np.arange(S), sizes), axis=1)
    step_lp = {(a, b, c): p for a, b, c, p in zip(*steps)}
    trans = np.full((S, S), -np.inf)
    for i in range(S):
        for j in range(S):
            key = tuple(int(v) for v in grid[j] - grid[i])
            if key in step_lp:
                trans[i, j] = step_lp[key]

    def emission(row0):
        n = min(unit_rows, rows - row0)
        return np.array([ref_unit_loglik3d(frames, row0, n, *grid[s], lam) for s in range(S)])

    score = prior + emission(0)
    back = []
    for row0 in range(unit_rows, rows, unit_rows):
        cand = score[:, None] + trans
        back.append(np.argmax(cand, axis=0))
        score = cand.max(axis=0) + emission(row0)
    path = [int(np.argmax(score))]
    for b in reversed(back):
        path.append(int(b[path[-1]]))
    return np.array(path[::-1]), float(score.max())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    Z=st.integers(1, 3),
    Y=st.integers(1, 5),
    X=st.integers(1, 6),
    nz=st.integers(1, 3),
    nan_frac=st.sampled_from([0.0, 0.3]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_unit_loglik3d_matches_the_direct_sum(seed, Z, Y, X, nz, nan_frac, dtype):
    rng = np.random.default_rng(seed)
    frames = rng.poisson(3.0, (2, Z, Y, X)).astype(dtype)
    frames[rng.random(frames.shape) < nan_frac] = np.nan
    ny, nx = 3, 2
    lam, logref, cum = make_canvas(Z, Y, X, nz, ny, nx, rng)
    nan_rows = np.zeros(2 * Z * Y, np.bool_)
    mark_nan_rows(frames, nan_rows)
    for _ in range(5):
        nrows = int(rng.integers(1, 2 * Z * Y + 1))
        row0 = int(rng.integers(0, 2 * Z * Y - nrows + 1))
        iz, iy, ix = (int(rng.integers(0, n)) for n in (nz, ny, nx))
        got = unit_loglik3d(frames, row0, nrows, nan_rows, iz, iy, ix, logref, lam, cum)
        want = ref_unit_loglik3d(frames, row0, nrows, iz, iy, ix, lam)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_accumulate_rows3d_matches_a_loop(seed):
    rng = np.random.default_rng(seed)
    n, Z, Y, X, nz, ny, nx = 3, 2, 4, 5, 3, 3, 4
    frames = rng.normal(5.0, 1.0, (n, Z, Y, X)).astype(np.float32)
    frames[rng.random(frames.shape) < 0.1] = np.nan
    iz = rng.integers(0, nz, (n, Z, Y)).astype(np.int32)
    iy = rng.integers(0, ny, (n, Z, Y)).astype(np.int32)
    ix = rng.integers(0, nx, (n, Z, Y)).astype(np.int32)
    shape = (Z + nz - 1, Y + ny - 1, X + nx - 1)
    total, sq, count = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    accumulate_rows3d(frames, iz, iy, ix, total, sq, count)
    want_t, want_s, want_c = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for t in range(n):
        for z in range(Z):
            for y in range(Y):
                for x in range(X):
                    v = float(frames[t, z, y, x])
                    if np.isfinite(v):
                        p = (z + iz[t, z, y], y + iy[t, z, y], x + ix[t, z, y])
                        want_t[p] += v
                        want_s[p] += v * v
                        want_c[p] += 1
    np.testing.assert_allclose(total, want_t, rtol=1e-6)
    np.testing.assert_allclose(sq, want_s, rtol=1e-5)
    np.testing.assert_array_equal(count, want_c)


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_beam_viterbi3d_with_a_full_beam_is_the_exact_viterbi_path(seed):
    rng = np.random.default_rng(seed)
    Z, Y, X, sizes = 2, 3, 4, (2, 3, 2)
    frames = rng.poisson(4.0, (2, Z, Y, X)).astype(np.float32)
    lam, logref, cum = make_canvas(Z, Y, X, *sizes, rng)
    steps = steps3(1, 1, 0.7)
    prior = rng.normal(0.0, 0.5, int(np.prod(sizes)))
    path, *_ = run_beam3d(frames, 2, sizes, lam, logref, cum, 64, steps, prior)
    want, _ = full_viterbi3d(frames, 2, sizes, lam, steps, prior)
    np.testing.assert_array_equal(path, want)


def test_beam_viterbi3d_with_one_z_state_is_the_2d_kernel():
    rng = np.random.default_rng(5)
    Z, Y, X, ny, nx = 2, 6, 7, 4, 5
    frames = rng.poisson(3.0, (3, Z, Y, X)).astype(np.float32)
    frames[0, 1, 2, 3] = np.nan
    lam, logref, cum = make_canvas(Z, Y, X, 1, ny, nx, rng)
    sz, sy, sx, lp = steps3(0, 1, 0.8)
    prior = rng.normal(0.0, 0.5, ny * nx)
    path3, bp3, st3, ns3, _ = run_beam3d(
        frames, 1, (1, ny, nx), lam, logref, cum, 6, (sz, sy, sx, lp), prior
    )
    rows = 3 * Z * Y
    k = 6
    bp, stt = np.zeros((rows, k), np.int16), np.zeros((rows, k), np.int32)
    nslots = np.zeros(rows, np.int32)
    beam_state, beam_score, beam_n = np.zeros(k, np.int32), np.zeros(k), np.zeros(1, np.int64)
    nan_rows = np.zeros(rows, np.bool_)
    mark_nan_rows(frames, nan_rows)
    S = ny * nx
    beam_viterbi(
        frames, 0, rows, 1, ny, nx, logref, lam, cum, nan_rows, sy, sx, lp, sy, sx, lp, prior,
        True, np.inf, beam_state, beam_score, beam_n, bp, stt, nslots, 0,
        np.full(S, -np.inf), np.zeros(S, np.int32), np.zeros(S, np.int32),
    )  # fmt: skip
    path = np.zeros(rows, np.int32)
    backtrace(bp, stt, rows - 1, int(np.argmax(beam_score[: beam_n[0]])), path)
    np.testing.assert_array_equal(path3, path)
    np.testing.assert_array_equal(ns3, nslots)
    np.testing.assert_array_equal(st3, stt)
    np.testing.assert_array_equal(bp3, bp)


# ---------------------------------------------------------------------------
# the strategy against ground truth
# ---------------------------------------------------------------------------


def test_hidden_markov_3d_recovers_row_displacements_with_z_jumps(capsys):
    # over seeds 1..6 of this simulation: z exact on every row; (dz, dy, dx)
    # exact on 81-94 % of rows (docs/motion.md)
    frames, truth, _ = simulate_volumes(16, 4, 32, 48, photons=0.3, seed=3)
    strategy = HiddenMarkov3D(verbose=False)
    start = time.perf_counter()
    est = strategy.estimate([sequence(frames)])[0]
    seconds = time.perf_counter() - start
    assert est.shape == truth.shape and est.dtype == np.int32
    assert est.reshape(-1, 3).min(axis=0).tolist() == [0, 0, 0]
    both, per_axis = exact3(est, truth)
    assert per_axis[0] >= 0.99, per_axis
    assert both >= 0.9, (both, per_axis)
    assert seconds < 30.0  # about 1-3 s: nothing pathological (the machine is shared)
    assert capsys.readouterr().err == ""  # verbose=False prints nothing


def test_hidden_markov_3d_on_rigid_volume_motion_gives_one_displacement_per_volume():
    # seeds 1..5: (dz, dy, dx) exact on 94-99.9 % of rows, dz on all
    frames, truth, _ = simulate_volumes(10, 4, 32, 48, seed=3, rigid=True, photons=0.3)
    est = HiddenMarkov3D(verbose=False).estimate([sequence(frames)])[0]
    both, per_axis = exact3(est, truth)
    assert per_axis[0] == 1.0
    assert both >= 0.97
    constant = np.all(est == est[:, :1, :1], axis=(1, 2, 3))
    assert constant.mean() >= 0.8


def test_hidden_markov_3d_correct_puts_the_rows_back_on_the_scene():
    frames, truth, _ = simulate_volumes(10, 4, 32, 48, seed=1, rigid=True, photons=0.3)
    dataset = sima.ImagingDataset([sequence(frames)], None)
    strategy = HiddenMarkov3D(verbose=False)
    est = strategy.estimate(dataset)[0]
    corrected = strategy.correct(dataset, None, trim_criterion=0.0)
    data = np.asarray(corrected.sequences[0])[..., 0]
    assert data.shape[0] == 10
    both, _ = exact3(est, truth)
    assert both >= 0.93

    # motion removed: the corrected volumes vary over time about as much as
    # Poisson noise allows, the raw ones much more
    def excess_variance(movie):
        ok = np.all(np.isfinite(movie), axis=0)
        m = movie[:, ok]
        return float(np.mean(m.var(axis=0) / np.maximum(m.mean(axis=0), 1e-9)))

    assert excess_variance(data) < 2.0
    assert excess_variance(frames) > 2.0 * excess_variance(data)


def test_estimate_rowwise_takes_3d_rigid_estimates():
    frames, truth, _ = simulate_volumes(16, 4, 32, 48, seed=3, photons=0.3)
    rigid = truth[:, 0, 0, :]  # the first row's displacement, per volume
    out = estimate_rowwise([frames], [rigid], verbose=False)[0]
    assert out.shape == (16, 4, 32, 3)
    both, _ = exact3(out, truth)
    assert both >= 0.9


# ---------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------


def test_signature_and_defaults_are_sima_s():
    params = inspect.signature(HiddenMarkov3D).parameters
    assert list(params)[:6] == [
        "granularity",
        "num_states_retained",
        "max_displacement",
        "n_processes",
        "restarts",
        "verbose",
    ]
    defaults = [params[n].default for n in list(params)[:6]]
    assert defaults == [2, 50, None, 1, None, True]
    assert sima.motion.HiddenMarkov3D is HiddenMarkov3D
    assert "HiddenMarkov3D(granularity=('row', 1)" in repr(HiddenMarkov3D())


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"granularity": "column"}, ValueError, "column"),
        ({"granularity": 2.5}, ArgumentTypeError, "granularity"),
        ({"num_states_retained": 0}, ValueError, "num_states_retained"),
        ({"max_displacement": [1, 2]}, ArgumentTypeError, "max_displacement"),
        ({"max_displacement": -1}, ValueError, "max_displacement"),
        ({"restarts": 2}, ValueError, "restarts"),
        ({"n_processes": 0}, ValueError, "n_processes"),
        ({"verbose": "yes"}, ArgumentTypeError, "verbose"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, text):
    with pytest.raises(error, match=text):
        HiddenMarkov3D(**kwargs)


def test_a_max_displacement_beyond_the_volume_is_refused_before_any_work():
    frames = np.ones((3, 2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="max_displacement"):
        HiddenMarkov3D(max_displacement=[1, 9, 1], verbose=False).estimate([sequence(frames)])


def test_verbose_reports_the_passes_on_stderr(capsys):
    frames, _, _ = simulate_volumes(4, 2, 24, 24, seed=6, photons=0.3)
    HiddenMarkov3D(granularity="plane").estimate([sequence(frames)])
    err = capsys.readouterr().err
    assert "HiddenMarkov3D" in err and "pass 4/4" in err


def test_a_client_is_refused_with_the_reason():
    frames = np.ones((3, 2, 8, 8), np.float32)
    with pytest.raises(ValueError, match="client"):
        HiddenMarkov3D(verbose=False).estimate([sequence(frames)], client=object())

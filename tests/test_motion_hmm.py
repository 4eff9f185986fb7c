"""The row-wise hidden Markov model: kernels against numpy references, accuracy, API.

The kernels of ``kernels/hmm.py`` are compared with slow, direct numpy
versions (the emission log-likelihood, the canvas accumulation, a beam search
written with Python sets and sorting, a full-state Viterbi on tiny cases, the
coalescence of back-pointers). The estimation is checked on simulated
line-scan movies whose row displacements are known: a smooth field with
cell-like blobs, a random walk sampled row by row during the raster, Poisson
noise.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

import sima_fast as sima
import sima_fast.motion.hmm as hmm_module
from sima_fast._validate import ArgumentTypeError
from sima_fast.kernels.hmm import (
    accumulate_rows,
    backtrace,
    beam_viterbi,
    coalescence,
    mark_nan_rows,
    row_prefix_sums,
    unit_loglik,
)
from sima_fast.motion.hmm import HiddenMarkov2D, estimate_rowwise, parse_granularity

# ---------------------------------------------------------------------------
# simulation
# ---------------------------------------------------------------------------


def field_image(H, W, rng):
    """A smooth background with cell-like blobs, values about 0.2 .. 3."""
    bg = ndimage.gaussian_filter(rng.random((H, W)), 6)
    bg = (bg - bg.min()) / (np.ptp(bg) + 1e-12)
    blobs = np.zeros((H, W))
    n = max(1, H * W // 150)
    blobs[rng.integers(0, H, n), rng.integers(0, W, n)] = rng.uniform(0.5, 1.5, n)
    return 0.2 + 0.5 * bg + 25 * ndimage.gaussian_filter(blobs, 2.0)


def simulate(T, Y, X, *, Z=1, step_sd=0.1, max_disp=6, rate=40.0, seed=0, rigid=False):
    """Line-scanned movie and the true (T, Z, Y, 2) displacement of every row.

    Row ``y`` of plane ``z`` of frame ``t`` shows the field at rows
    ``y + dy``, columns ``x + dx`` (so that source row y lands at y + dy of
    the field, the convention of ``apply_displacements``).
    """
    rng = np.random.default_rng(seed)
    pad = max_disp + 3
    base = np.stack([field_image(Y + 2 * pad, X + 2 * pad, rng) for _ in range(Z)])
    n = T * Z * Y
    if rigid:
        per_frame = rng.integers(-max_disp, max_disp + 1, size=(T, 2))
        d = np.repeat(per_frame[:, None, :], Z * Y, axis=1).reshape(n, 2)
    else:
        walk = np.zeros((n, 2))
        pos = np.zeros(2)
        noise = rng.normal(0.0, step_sd, (n, 2))
        for i in range(n):
            pos = np.clip(pos * (1 - 1 / 400) + noise[i], -max_disp, max_disp)
            walk[i] = pos
        d = np.rint(walk).astype(np.int64)
    d = d.reshape(T, Z, Y, 2)
    expected = np.empty((T, Z, Y, X))
    ys, xs = np.arange(Y), np.arange(X)
    for t in range(T):
        for z in range(Z):
            rows = ys + d[t, z, :, 0] + pad
            cols = xs[None, :] + d[t, z, :, 1][:, None] + pad
            expected[t, z] = base[z][rows[:, None], cols]
    frames = rng.poisson(expected * rate).astype(np.uint16)
    return frames, d, base, pad


def exact_fraction(est, truth):
    """Fraction of rows whose (dy, dx) is exact, up to one constant offset."""
    diff = (np.asarray(est, dtype=np.int64) - truth).reshape(-1, 2)
    off = [np.bincount(c - c.min()).argmax() + c.min() for c in diff.T]
    return float(np.mean(np.all(diff == np.array(off), axis=1)))


def as_sequence(frames):
    return sima.Sequence.create("ndarray", np.asarray(frames)[..., None])


# ---------------------------------------------------------------------------
# numpy references of the kernels
# ---------------------------------------------------------------------------


def ref_row_loglik(row, z, y, iy, ix, lam):
    """Σ c log λ - λ over the finite pixels of one row, directly."""
    window = lam[z, y + iy, ix : ix + row.size]
    ok = np.isfinite(row)
    return float(np.sum(row[ok] * np.log(window[ok]) - window[ok]))


def ref_unit_loglik(frames, row0, nrows, iy, ix, lam):
    Z, Y = frames.shape[1:3]
    total = 0.0
    for r in range(row0, row0 + nrows):
        t, z, y = r // (Z * Y), (r // Y) % Z, r % Y
        total += ref_row_loglik(frames[t, z, y], z, y, iy, ix, lam)
    return total


def canvas(Z, Y, X, ny, nx, rng):
    lam = rng.uniform(0.5, 5.0, (Z, Y + ny - 1, X + nx - 1))
    cum = np.zeros((*lam.shape[:2], lam.shape[2] + 1))
    row_prefix_sums(lam, cum)
    return lam, np.log(lam), cum


def steps_table(reach, sd):
    d = np.arange(-reach, reach + 1)
    sy, sx = (a.ravel() for a in np.meshgrid(d, d, indexing="ij"))
    lp = -0.5 * (sy**2 + sx**2) / sd**2
    return sy.astype(np.int64), sx.astype(np.int64), lp


def run_beam(frames, unit_rows, ny, nx, lam, logref, cum, k, steps, bsteps, prior):
    """Run the kernel over the whole of ``frames`` from a restart; return its buffers."""
    Z, Y = frames.shape[1], frames.shape[2]
    rows = frames.shape[0] * Z * Y
    n_units = -(-rows // unit_rows)
    S = ny * nx
    k = min(k, S)
    bp = np.zeros((n_units, k), np.int16)
    stt = np.zeros((n_units, k), np.int32)
    nslots = np.zeros(n_units, np.int32)
    beam_state = np.zeros(k, np.int32)
    beam_score = np.zeros(k)
    beam_n = np.zeros(1, np.int64)
    nan_rows = np.zeros(rows, np.bool_)
    mark_nan_rows(frames, nan_rows)
    done = beam_viterbi(
        frames, 0, rows, unit_rows, ny, nx, logref, lam, cum, nan_rows,
        *steps, *bsteps, prior, True, np.inf, beam_state, beam_score, beam_n,
        bp, stt, nslots, 0, np.full(S, -np.inf), np.zeros(S, np.int32), np.zeros(S, np.int32),
    )  # fmt: skip
    assert done == n_units
    return bp, stt, nslots, beam_state, beam_score, beam_n


def ref_beam(frames, unit_rows, ny, nx, lam, k, steps, bsteps, prior):
    """The beam search, written directly: per unit, the sorted set of (state, score)."""
    Z, Y = frames.shape[1], frames.shape[2]
    rows = frames.shape[0] * Z * Y
    out = []
    beam = {}
    for u, row0 in enumerate(range(0, rows, unit_rows)):
        nrows = min(unit_rows, rows - row0)

        def emit(s, row0=row0, nrows=nrows):
            return ref_unit_loglik(frames, row0, nrows, s // nx, s % nx, lam)

        if u == 0:
            cand = {s: prior[s] + emit(s) for s in range(ny * nx)}
        else:
            sy, sx, lp = bsteps if row0 % Y == 0 else steps
            best = {}
            for s0, sc in beam.items():
                for a, b, p in zip(sy, sx, lp):
                    iy, ix = s0 // nx + a, s0 % nx + b
                    if 0 <= iy < ny and 0 <= ix < nx:
                        s = iy * nx + ix
                        best[s] = max(best.get(s, -np.inf), sc + p)
            cand = {s: v + emit(s) for s, v in best.items()}
        keep = sorted(cand, key=lambda s: -cand[s])[:k]
        top = max(cand[s] for s in keep)
        beam = {s: cand[s] - top for s in keep}
        out.append(beam)
    return out


def full_viterbi(frames, unit_rows, ny, nx, lam, steps, bsteps, prior):
    """Exact Viterbi over every state (tiny cases): best path and its score."""
    Z, Y = frames.shape[1], frames.shape[2]
    rows = frames.shape[0] * Z * Y
    S = ny * nx
    iy, ix = np.divmod(np.arange(S), nx)
    starts = list(range(0, rows, unit_rows))

    def emission(row0):
        nrows = min(unit_rows, rows - row0)
        return np.array([ref_unit_loglik(frames, row0, nrows, a, b, lam) for a, b in zip(iy, ix)])

    def trans(table):
        sy, sx, lp = table
        m = np.full((S, S), -np.inf)
        for a, b, p in zip(sy, sx, lp):
            ty, tx = iy + a, ix + b
            ok = (ty >= 0) & (ty < ny) & (tx >= 0) & (tx < nx)
            m[np.arange(S)[ok], (ty * nx + tx)[ok]] = p
        return m

    inner, boundary = trans(steps), trans(bsteps)
    score = prior + emission(0)
    back = []
    for row0 in starts[1:]:
        m = boundary if row0 % Y == 0 else inner
        total = score[:, None] + m
        back.append(np.argmax(total, axis=0))
        score = total.max(axis=0) + emission(row0)
    path = [int(np.argmax(score))]
    for b in reversed(back):
        path.append(int(b[path[-1]]))
    return path[::-1], float(score.max())


def path_score(path, frames, unit_rows, nx, lam, steps, bsteps, prior):
    Z, Y = frames.shape[1], frames.shape[2]
    rows = frames.shape[0] * Z * Y
    total = prior[path[0]]
    for u, row0 in enumerate(range(0, rows, unit_rows)):
        s = path[u]
        total += ref_unit_loglik(frames, row0, min(unit_rows, rows - row0), s // nx, s % nx, lam)
        if u:
            sy, sx, lp = bsteps if row0 % Y == 0 else steps
            dy, dx = s // nx - path[u - 1] // nx, s % nx - path[u - 1] % nx
            hit = (sy == dy) & (sx == dx)
            total += lp[hit][0] if hit.any() else -np.inf
    return total


def tiny_case(seed, n=2, Z=1, Y=4, X=5, ny=3, nx=3, nan_frac=0.0, allow_empty_rows=False):
    rng = np.random.default_rng(seed)
    lam, logref, cum = canvas(Z, Y, X, ny, nx, rng)
    frames = rng.poisson(3.0, (n, Z, Y, X)).astype(np.float32)
    if nan_frac:
        frames[rng.random(frames.shape) < nan_frac] = np.nan
        if not allow_empty_rows:
            # a row with no finite pixel scores every state alike: ties make
            # the beam's choice arbitrary
            frames[..., 0] = np.where(np.isnan(frames).all(axis=-1), 1.0, frames[..., 0])
    prior = rng.normal(0, 1, ny * nx)
    return frames, lam, logref, cum, prior


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    Z=st.integers(1, 2),
    Y=st.integers(1, 5),
    X=st.integers(1, 6),
    nan_frac=st.sampled_from([0.0, 0.2]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_unit_loglik_matches_the_direct_sum(seed, Z, Y, X, nan_frac, dtype):
    rng = np.random.default_rng(seed)
    ny, nx = 3, 4
    lam, logref, cum = canvas(Z, Y, X, ny, nx, rng)
    frames = rng.poisson(4.0, (2, Z, Y, X)).astype(dtype)
    frames[rng.random(frames.shape) < nan_frac] = np.nan
    nan_rows = np.zeros(2 * Z * Y, np.bool_)
    mark_nan_rows(frames, nan_rows)
    np.testing.assert_array_equal(nan_rows, np.isnan(frames).any(axis=-1).ravel())
    rows = 2 * Z * Y
    for row0 in range(rows):
        nrows = int(rng.integers(1, rows - row0 + 1))
        iy, ix = int(rng.integers(ny)), int(rng.integers(nx))
        got = unit_loglik(frames, row0, nrows, nan_rows, iy, ix, logref, lam, cum)
        want = ref_unit_loglik(frames.astype(np.float64), row0, nrows, iy, ix, lam)
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_row_prefix_sums_are_cumulative_sums():
    lam = np.random.default_rng(1).random((2, 3, 7))
    out = np.zeros((2, 3, 8))
    row_prefix_sums(lam, out)
    np.testing.assert_allclose(out[..., 1:], np.cumsum(lam, axis=-1))
    assert np.all(out[..., 0] == 0)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float32, np.float64]))
def test_accumulate_rows_matches_a_loop(seed, dtype):
    rng = np.random.default_rng(seed)
    n, Z, Y, X, ny, nx = 3, 2, 4, 5, 3, 4
    frames = rng.random((n, Z, Y, X)).astype(dtype)
    frames[rng.random(frames.shape) < 0.1] = np.nan
    iy = rng.integers(0, ny, (n, Z, Y)).astype(np.int32)
    ix = rng.integers(0, nx, (n, Z, Y)).astype(np.int32)
    shape = (Z, Y + ny - 1, X + nx - 1)
    total, sq, count = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    accumulate_rows(frames, iy, ix, total, sq, count)
    rt, rs, rc = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for t in range(n):
        for z in range(Z):
            for y in range(Y):
                for x in range(X):
                    v = float(frames[t, z, y, x])
                    if np.isfinite(v):
                        h, w = y + iy[t, z, y], x + ix[t, z, y]
                        rt[z, h, w] += v
                        rs[z, h, w] += v * v
                        rc[z, h, w] += 1
    np.testing.assert_allclose(total, rt, rtol=1e-6)
    np.testing.assert_allclose(sq, rs, rtol=1e-6)
    np.testing.assert_array_equal(count, rc)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 6),
    unit_rows=st.sampled_from([1, 2]),
    Z=st.integers(1, 2),
    nan_frac=st.sampled_from([0.0, 0.3]),
)
def test_beam_matches_the_direct_beam_search(seed, k, unit_rows, Z, nan_frac):
    frames, lam, logref, cum, prior = tiny_case(seed, Z=Z, nan_frac=nan_frac)
    ny = nx = 3
    steps, bsteps = steps_table(1, 0.8), steps_table(2, 1.5)
    _, stt, nslots, *_ = run_beam(
        frames, unit_rows, ny, nx, lam, logref, cum, k, steps, bsteps, prior
    )
    want = ref_beam(frames.astype(np.float64), unit_rows, ny, nx, lam, k, steps, bsteps, prior)
    for u, beam in enumerate(want):
        assert nslots[u] == len(beam)
        got = set(stt[u, : nslots[u]].tolist())
        assert got == set(beam)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    unit_rows=st.sampled_from([1, 3]),
    Z=st.integers(1, 2),
    nan_frac=st.sampled_from([0.0, 0.5]),
)
def test_a_beam_holding_every_state_is_exact_viterbi(seed, unit_rows, Z, nan_frac):
    frames, lam, logref, cum, prior = tiny_case(
        seed, n=2, Z=Z, Y=3, nan_frac=nan_frac, allow_empty_rows=True
    )
    ny = nx = 3
    steps, bsteps = steps_table(1, 0.7), steps_table(2, 1.2)
    bp, stt, _, _, beam_score, beam_n = run_beam(
        frames, unit_rows, ny, nx, lam, logref, cum, ny * nx, steps, bsteps, prior
    )
    n_units = bp.shape[0]
    path = np.zeros(n_units, np.int32)
    slot = int(np.argmax(beam_score[: beam_n[0]]))
    backtrace(bp, stt, n_units - 1, slot, path)
    f64 = frames.astype(np.float64)
    _, want_score = full_viterbi(f64, unit_rows, ny, nx, lam, steps, bsteps, prior)
    got_score = path_score(path.tolist(), f64, unit_rows, nx, lam, steps, bsteps, prior)
    assert got_score == pytest.approx(want_score, rel=1e-9, abs=1e-6)


def ref_coalescence(bp, nslots, n_units):
    alive = set(range(nslots[n_units - 1]))
    for u in range(n_units - 1, -1, -1):
        if len(alive) == 1:
            return u, next(iter(alive))
        if u == 0 or any(bp[u, k] < 0 for k in alive):
            return -1, -1
        alive = {int(bp[u, k]) for k in alive}
    return -1, -1


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 5), L=st.integers(1, 8))
def test_coalescence_matches_a_set_walk(seed, K, L):
    rng = np.random.default_rng(seed)
    nslots = rng.integers(1, K + 1, L).astype(np.int32)
    bp = np.zeros((L, K), np.int16)
    for u in range(1, L):
        bp[u, : nslots[u]] = rng.integers(0, nslots[u - 1], nslots[u])
    if L > 2 and rng.random() < 0.2:
        bp[L // 2, : nslots[L // 2]] = -1
    got = coalescence(bp, nslots, L, np.zeros(K, np.bool_), np.zeros(K, np.bool_))
    assert tuple(int(v) for v in got) == ref_coalescence(bp, nslots, L)


# ---------------------------------------------------------------------------
# estimation on simulated line-scan motion
# ---------------------------------------------------------------------------


def test_row_displacements_of_a_simulated_line_scan_are_exact():
    frames, truth, _, _ = simulate(60, 96, 96, seed=3)
    d = HiddenMarkov2D(verbose=False).estimate([as_sequence(frames)])[0]
    assert d.shape == (60, 1, 96, 2) and d.dtype.kind == "i"
    assert d.reshape(-1, 2).min(axis=0).tolist() == [0, 0]
    assert exact_fraction(d, truth) >= 0.95


def test_a_rigid_movie_gives_one_displacement_per_frame():
    frames, truth, _, _ = simulate(30, 64, 64, seed=4, rigid=True)
    d = HiddenMarkov2D(verbose=False).estimate([as_sequence(frames)])[0]
    assert np.all(d == d[:, :, :1])
    assert exact_fraction(d, truth) == 1.0


def test_restarts_every_frame_on_a_rigid_movie():
    frames, truth, _, _ = simulate(20, 48, 48, seed=5, rigid=True)
    d = HiddenMarkov2D(restarts=0, verbose=False).estimate([as_sequence(frames)])[0]
    assert np.all(d == d[:, :, :1])
    assert exact_fraction(d, truth) == 1.0


def test_chunked_decoding_equals_whole_movie_decoding(monkeypatch):
    frames, truth, _, _ = simulate(12, 48, 48, seed=6)
    rigid = [np.rint(truth.mean(axis=2))]
    whole = estimate_rowwise([frames], rigid)[0]
    monkeypatch.setattr(hmm_module, "_CHUNK_BYTES", 1)  # one frame per chunk
    chunked = estimate_rowwise([frames], rigid)[0]
    np.testing.assert_array_equal(whole, chunked)


def test_two_sequences_share_one_reference_and_offset():
    frames, truth, _, _ = simulate(40, 64, 64, seed=7, rigid=True)
    a, b = frames[:20], frames[20:]
    da, db = HiddenMarkov2D(verbose=False, n_processes=2).estimate(
        [as_sequence(a), as_sequence(b)]
    )
    both = np.concatenate([da, db])
    assert exact_fraction(both, truth) == 1.0


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
def test_dtypes_give_the_same_displacements(dtype):
    frames, truth, _, _ = simulate(10, 40, 40, seed=8)
    rigid = [np.rint(truth.mean(axis=2))]
    base = estimate_rowwise([frames], rigid)[0]
    got = estimate_rowwise([frames.astype(dtype)], rigid)[0]
    np.testing.assert_array_equal(base, got)


def test_nan_rows_are_decoded_from_their_neighbours():
    frames, truth, _, _ = simulate(20, 64, 64, seed=9, rigid=True)
    data = frames.astype(np.float32)
    data[3, 0, 10:14] = np.nan  # four unobserved rows
    data[5, 0, :, :8] = np.nan  # a blanked strip
    d = HiddenMarkov2D(verbose=False).estimate([as_sequence(data)])[0]
    assert exact_fraction(d, truth) == 1.0


def test_granularity_groups_rows_planes_and_frames():
    frames = simulate(12, 32, 32, Z=2, seed=10)[0]
    seq = as_sequence(frames)
    d = HiddenMarkov2D(granularity=("row", 4), verbose=False).estimate([seq])[0]
    assert d.shape == (12, 2, 32, 2)
    groups = d.reshape(12, 2, 8, 4, 2)
    assert np.all(groups == groups[:, :, :, :1])
    d = HiddenMarkov2D(granularity="plane", verbose=False).estimate([seq])[0]
    assert np.all(d == d[:, :, :1])
    d = HiddenMarkov2D(granularity=0, verbose=False).estimate([seq])[0]
    assert np.all(d == d[:, :1, :1])
    d = HiddenMarkov2D(granularity=("frame", 3), verbose=False).estimate([seq])[0]
    assert np.all(d.reshape(4, 3, -1, 2) == d.reshape(4, 3, -1, 2)[:, :1, :1])


def test_a_given_reference_fixes_the_frame_of_reference():
    frames, truth, base, pad = simulate(20, 64, 64, seed=11)
    # the field seen at displacement 0, in the data's units
    reference = base[0, pad : pad + 64, pad : pad + 64] * 40.0
    d = estimate_rowwise(
        [frames], [np.rint(truth.mean(axis=2))], reference=reference, n_iterations=2
    )[0]
    assert exact_fraction(d, truth) >= 0.95
    hmm = HiddenMarkov2D(verbose=False, reference=reference)
    d2 = hmm.estimate([as_sequence(frames)])[0]
    assert exact_fraction(d2, truth) >= 0.95


def test_correct_saves_a_dataset_that_loads(tmp_path):
    frames = simulate(10, 32, 32, seed=12, rigid=True)[0]
    seq = as_sequence(frames)
    out = HiddenMarkov2D(verbose=False).correct([seq], str(tmp_path / "c.sima"))
    loaded = sima.ImagingDataset.load(str(tmp_path / "c.sima"))
    assert loaded.frame_shape == out.frame_shape
    assert loaded.num_frames == 10
    mean = np.asarray(loaded.time_averages)
    assert np.isfinite(mean).any()


def test_verbose_prints_each_pass(capsys):
    frames, _, _, _ = simulate(4, 16, 16, seed=13, rigid=True)
    HiddenMarkov2D().estimate([as_sequence(frames)])
    err = capsys.readouterr().err
    assert "rigid first pass" in err and "pass 4/4" in err


# ---------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------


def test_parse_granularity_forms():
    assert parse_granularity(2) == ("row", 1)
    assert parse_granularity("row") == ("row", 1)
    assert parse_granularity(("row", 8)) == ("row", 8)
    assert parse_granularity((1, 2)) == ("plane", 2)
    assert parse_granularity(0) == ("frame", 1)
    with pytest.raises(ValueError, match="column"):
        parse_granularity("column")
    with pytest.raises(ValueError, match="column"):
        parse_granularity(3)
    with pytest.raises(ValueError, match="granularity"):
        parse_granularity("pixel")
    with pytest.raises(ValueError, match="granularity"):
        parse_granularity(7)
    with pytest.raises(ArgumentTypeError, match="granularity"):
        parse_granularity(2.0)
    with pytest.raises(ArgumentTypeError, match="granularity"):
        parse_granularity(("row", 2, 3))
    with pytest.raises(ValueError, match=r"granularity\[1\]"):
        parse_granularity(("row", 0))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_states_retained": 0}, ValueError, "num_states_retained"),
        ({"num_states_retained": 2.5}, ArgumentTypeError, "num_states_retained"),
        ({"max_displacement": -1}, ValueError, "max_displacement"),
        ({"max_displacement": [1, 2, 3]}, ArgumentTypeError, "max_displacement"),
        ({"n_processes": 0}, ValueError, "n_processes"),
        ({"restarts": 2}, ValueError, "restarts"),
        ({"verbose": "yes"}, ArgumentTypeError, "verbose"),
        ({"granularity": "column"}, ValueError, "granularity"),
        ({"reference": "image"}, ArgumentTypeError, "reference"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        HiddenMarkov2D(**kwargs)


def test_errors_that_depend_on_the_data():
    seq = as_sequence(np.ones((3, 1, 10, 12), np.uint16))
    with pytest.raises(ValueError, match="max_displacement"):
        HiddenMarkov2D(max_displacement=20, verbose=False).estimate([seq])
    with pytest.raises(ValueError, match="reference"):
        HiddenMarkov2D(reference=np.ones((9, 12)), verbose=False).estimate([seq])
    with pytest.raises(ValueError, match="divide"):
        HiddenMarkov2D(granularity=("row", 3), verbose=False).estimate([seq])
    other = as_sequence(np.ones((3, 1, 10, 14), np.uint16))
    with pytest.raises(ValueError, match="frame shape"):
        HiddenMarkov2D(verbose=False).estimate([seq, other])
    with pytest.raises(ValueError, match="rigid"):
        estimate_rowwise([np.ones((3, 10, 12))], [np.zeros((4, 2))])
    with pytest.raises(ArgumentTypeError, match="frames"):
        estimate_rowwise([], [])


def test_a_constant_movie_is_estimated_without_motion():
    seq = as_sequence(np.full((4, 1, 10, 12), 7, np.uint16))
    d = HiddenMarkov2D(verbose=False).estimate([seq])[0]
    assert d.shape == (4, 1, 10, 2)
    assert np.all(d == 0)


def test_repr_names_the_parameters():
    strategy = HiddenMarkov2D(granularity=("row", 2), max_displacement=[3, 4], verbose=False)
    text = repr(strategy)
    assert "granularity=('row', 2)" in text and "max_displacement=[3.0, 4.0]" in text


def test_a_chunk_source_gives_the_array_result():
    frames, truth, _, _ = simulate(9, 32, 32, seed=14)
    rigid = [np.rint(truth.mean(axis=2))]
    calls = []

    def source(chunk_frames):
        calls.append(chunk_frames)
        for t0 in range(0, 9, chunk_frames):
            yield t0, frames[t0 : t0 + chunk_frames]

    np.testing.assert_array_equal(
        estimate_rowwise([source], rigid)[0], estimate_rowwise([frames], rigid)[0]
    )
    assert len(calls) > 4  # one per pass over the data (and one to learn the shape)


def test_a_chunk_source_that_breaks_its_promise_is_refused():
    frames, truth, _, _ = simulate(6, 16, 16, seed=15)

    def skipping(chunk_frames):
        yield 0, frames[:2]
        yield 3, frames[3:]

    with pytest.raises(ValueError, match="consecutive"):
        estimate_rowwise([skipping], [np.rint(truth.mean(axis=2))])

    def short(chunk_frames):
        yield 0, frames[:4]

    with pytest.raises(ValueError, match="has 4 frames"):
        estimate_rowwise([short], [np.rint(truth.mean(axis=2))])

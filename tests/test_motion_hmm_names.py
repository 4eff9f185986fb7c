"""SIMA's HMM building blocks: MovementModel, PositionIterator, NormalizedIterator.

MovementModel is checked against its definition: an AR(1) process simulated
with a known decay and noise covariance is fitted back; the decay over ``dt``
steps composes; the whole-pixel step probabilities match a direct numerical
integration and sum to one; the initial probabilities are the stationary
Gaussian's density (scipy's discrete Lyapunov solver and multivariate normal
as references). The iterators are compared with brute-force loops.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, linalg, special, stats

import sima_fast as sima
import sima_fast.motion.hmm as hmm
from sima_fast._validate import ArgumentTypeError
from sima_fast.motion.hmm_model import (
    MovementModel,
    NormalizedIterator,
    PositionIterator,
    parse_sima_granularity,
)


def test_the_names_sima_scripts_import_are_there():
    assert sima.motion.MovementModel is MovementModel
    assert hmm.MovementModel is MovementModel
    assert hmm.PositionIterator is PositionIterator
    assert hmm.NormalizedIterator is NormalizedIterator
    assert sima.motion.HiddenMarkov3D is hmm.HiddenMarkov3D
    for name in ("HiddenMarkov2D", "HiddenMarkov3D", "MovementModel"):
        assert name in sima.motion.__all__


# ---------------------------------------------------------------------------
# MovementModel
# ---------------------------------------------------------------------------


def ar1(A, C, mean, n, seed):
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(C)
    x = np.zeros((n, len(mean)))
    for t in range(1, n):
        x[t] = A @ x[t - 1] + L @ rng.normal(size=len(mean))
    return x + mean


@pytest.mark.parametrize(
    ("A", "C"),
    [
        (np.array([[0.9, 0.05], [0.05, 0.8]]), np.array([[1.0, 0.3], [0.3, 0.5]])),
        (np.diag([0.7, 0.95, 0.85]), np.diag([0.2, 1.0, 0.6])),
    ],
)
def test_estimate_recovers_a_simulated_ar1_process(A, C):
    mean = np.arange(1.0, len(A) + 1.0) * 3
    x = ar1(A, C, mean, 20_000, seed=len(A))
    # the same series split into two arrays of another shape is the same series
    model = MovementModel.estimate([x[:8000].reshape(-1, 2, len(A)), x[8000:]])
    np.testing.assert_allclose(model.decay_matrix(), A, atol=0.02)
    np.testing.assert_allclose(model.cov_matrix(), C, atol=0.05)
    np.testing.assert_allclose(model.mean_shift, x.mean(axis=0), atol=1e-9)


def test_estimate_is_least_squares_over_symmetric_decays():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2)).cumsum(axis=0) * 0.1 + rng.normal(size=(300, 2))
    model = MovementModel.estimate([x])
    c = x - x.mean(axis=0)
    past, future = c[:-1], c[1:]

    def loss(p):
        A = np.array([[p[0], p[1]], [p[1], p[2]]])
        return np.sum((future - past @ A) ** 2)

    from scipy.optimize import minimize

    best = minimize(loss, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    A = np.array([[best[0], best[1]], [best[1], best[2]]])
    w, V = np.linalg.eigh(A)
    np.testing.assert_allclose(model.decay_matrix(), (V * np.clip(w, 0, 1)) @ V.T, atol=1e-5)


def test_decay_composes_and_covariance_scales():
    model = MovementModel.estimate([ar1(np.diag([0.8, 0.6]), np.eye(2), np.zeros(2), 3000, 1)])
    np.testing.assert_allclose(
        model.decay_matrix(0.3) @ model.decay_matrix(0.7), model.decay_matrix(1.0), atol=1e-12
    )
    np.testing.assert_allclose(model.decay_matrix(0.0), np.eye(2), atol=1e-12)
    np.testing.assert_allclose(model.cov_matrix(2.5), 2.5 * model.cov_matrix(), rtol=1e-12)


def test_growth_and_oscillation_are_clipped():
    # x[t+1] = 1.2 x[t] (growth) along y, -0.5 x[t] along x (oscillation)
    rng = np.random.default_rng(0)
    x = np.zeros((60, 2))
    x[0] = [1e-3, 5.0]
    for t in range(1, 60):
        x[t] = [1.2, -0.5] * x[t - 1] + rng.normal(0, 1e-3, 2)
    model = MovementModel.estimate([x])
    w = np.linalg.eigvalsh(model.decay_matrix())
    assert np.all(w >= -1e-12) and np.all(w <= 1 + 1e-12)


def test_log_transition_matrix_integrates_the_gaussian_over_pixel_pairs():
    C = np.array([[0.6, 0.1], [0.1, 0.3]])
    model = MovementModel(C, np.eye(2), [0.5, 0.5], [0.0, 0.0])
    out = model.log_transition_matrix(max_distance=2, dt=1.5)
    assert out.shape == (1, 3, 3)
    cov = 1.5 * C
    pdf = stats.multivariate_normal(np.zeros(2), cov).pdf

    def direct(r):
        f = lambda v, u: pdf([r[0] + u, r[1] + v]) * (1 - abs(u)) * (1 - abs(v))  # noqa: E731
        return integrate.dblquad(f, -1, 1, -1, 1, epsabs=1e-10)[0]

    for r in [(0, 0), (1, 0), (0, 1), (1, 1), (2, 1)]:
        assert np.exp(out[(0, *r)]) == pytest.approx(direct(r), rel=0.03, abs=1e-4)
    # over every signed step the probabilities add up to one (the table is by
    # magnitude: exact for axes that move independently)
    independent = MovementModel(np.diag([0.6, 0.3]), np.eye(2), [0.5, 0.5], [0.0, 0.0])
    wide = np.exp(independent.log_transition_matrix(max_distance=8, dt=1.5)[0])
    mult = np.where(np.arange(9) == 0, 1, 2)
    assert float(np.sum(wide * mult[:, None] * mult[None, :])) == pytest.approx(1.0, abs=0.02)


def test_log_transition_matrix_in_three_dimensions():
    model = MovementModel(np.diag([0.2, 0.5, 0.5]), np.eye(3), [0.9, 0.9, 0.9], [0, 0, 0])
    out = model.log_transition_matrix(max_distance=1)
    assert out.shape == (2, 2, 2)
    assert np.all(np.isfinite(out))
    assert out[0, 0, 0] > out[1, 0, 0] and out[0, 1, 0] > out[1, 0, 0]  # z varies least


def test_initial_probs_are_the_stationary_density():
    A = np.array([[0.8, 0.1], [0.1, 0.7]])
    C = np.array([[0.5, 0.1], [0.1, 0.4]])
    w, V = np.linalg.eigh(A)
    model = MovementModel(C, V, w, [2.0, 3.0])
    table = np.array(list(itertools.product(range(3), range(6), range(6))))
    states, log_p = model.initial_probs(table, [0, 1, 1], [2, 4, 5])
    inside = np.all((table >= [0, 1, 1]) & (table <= [2, 4, 5]), axis=1)
    np.testing.assert_array_equal(states, np.flatnonzero(inside))
    stationary = linalg.solve_discrete_lyapunov(A, C)
    want = stats.multivariate_normal([2.0, 3.0], stationary).logpdf(table[states][:, 1:])
    np.testing.assert_allclose(log_p, want, rtol=1e-6)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((np.eye(2) * -1, np.eye(2), [0.5, 0.5], [0, 0]), ValueError),
        ((np.eye(4), np.eye(4), [0.5] * 4, [0] * 4), ValueError),
        ((np.eye(2), np.eye(3), [0.5, 0.5], [0, 0]), ValueError),
        ((np.eye(2), np.eye(2), [1.5, 0.5], [0, 0]), ValueError),
        ((np.eye(2), np.eye(2), [0.5, 0.5], [0, np.nan]), ValueError),
    ],
)
def test_bad_models_are_refused(args, error):
    with pytest.raises(error):
        MovementModel(*args)


def test_bad_shifts_are_refused():
    with pytest.raises(ArgumentTypeError, match="shifts"):
        MovementModel.estimate(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="last axis"):
        MovementModel.estimate([np.zeros((5, 4))])
    with pytest.raises(ValueError, match="at least 2"):
        MovementModel.estimate([np.zeros((1, 2))])
    model = MovementModel.estimate([np.ma.masked_invalid([[0, 0], [1, np.nan], [2, 1.0]])])
    assert np.all(np.isfinite(model.cov_matrix()))
    with pytest.raises(ValueError, match="within the bounds"):
        model.initial_probs(np.zeros((3, 2)), [1, 1], [2, 2])


# ---------------------------------------------------------------------------
# PositionIterator
# ---------------------------------------------------------------------------


def brute_positions(shape, axis, n, offset):
    """Every unit's (z, y, x) positions, by nested loops, for one frame (or n frames)."""
    _, Z, Y, X = shape
    pixels = [(z, y, x) for z in range(Z) for y in range(Y) for x in range(X)]
    per_unit = int(np.prod(shape[axis + 1 :]))
    units = [pixels[i : i + per_unit] for i in range(0, len(pixels), per_unit)]
    if axis == 0:
        groups = [pixels * n]
    else:
        groups = [list(itertools.chain(*units[i : i + n])) for i in range(0, len(units), n)]
    return [np.array(g) + np.asarray(offset) for g in groups]


@settings(max_examples=40, deadline=None)
@given(
    Z=st.integers(1, 3),
    Y=st.integers(1, 4),
    X=st.integers(1, 4),
    axis=st.integers(0, 3),
    n=st.integers(1, 2),
    offset=st.lists(st.integers(-3, 3), min_size=3, max_size=3),
)
def test_position_iterator_matches_loops(Z, Y, X, axis, n, offset):
    shape = (4, Z, Y, X)
    if shape[axis] % n:
        with pytest.raises(ValueError, match="divide"):
            PositionIterator(shape, (axis, n), offset)
        return
    want = brute_positions(shape, axis, n, offset)
    got = list(itertools.islice(iter(PositionIterator(shape, (axis, n), offset)), 2 * len(want)))
    if axis == 0 and n > 1:
        want = want * (4 // n)
    for g, w in zip(got, want * 2):
        np.testing.assert_array_equal(g, w)


def test_position_iterator_shapes_and_ends():
    it = iter(PositionIterator((6, 3, 8, 10), "plane"))
    assert next(it).shape == (80, 3)
    assert next(PositionIterator((6, 3, 8, 10), ("row", 4), [2, 5]).__iter__()).shape == (40, 3)
    assert len(list(PositionIterator((6, 3, 8, 10), ("frame", 2)))) == 3
    single = list(itertools.islice(iter(PositionIterator((6, 1, 2, 2), "column", [1])), 5))
    assert [p.tolist() for p in single] == [
        [[0, 0, 1]],
        [[0, 0, 2]],
        [[0, 1, 1]],
        [[0, 1, 2]],
        [[0, 0, 1]],
    ]
    with pytest.raises(ArgumentTypeError):
        PositionIterator((6, 3, 8), "row")
    with pytest.raises(ValueError, match="granularity"):
        PositionIterator((6, 3, 8, 10), "pixel")


def test_parse_sima_granularity():
    assert parse_sima_granularity("column") == (3, 1)
    assert parse_sima_granularity((1, 3)) == (1, 3)
    with pytest.raises(ArgumentTypeError):
        parse_sima_granularity(1.5)
    with pytest.raises(ValueError):
        parse_sima_granularity(4)


# ---------------------------------------------------------------------------
# NormalizedIterator
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granularity", "size"),
    [("frame", 120), ("plane", 40), ("row", 8), (("row", 5), 40), ("column", 1)],
)
def test_normalized_iterator_matches_the_formulas(granularity, size):
    rng = np.random.default_rng(0)
    data = rng.poisson(6.0, (2, 3, 5, 8, 2)).astype(np.float64)
    data[0, 0, 0, 0, 1] = np.nan
    gains, means, variances = np.array([2.0, 0.5]), np.array([12.0, 3.0]), np.array([20.0, 1.5])
    units = list(NormalizedIterator(data, gains, means, variances, granularity))
    assert all(u[0].shape == (size, 2) for u in units)
    im = np.concatenate([u[0] for u in units])
    flat = data.reshape(-1, 2) / gains
    flat[np.isnan(flat[:, 1]), 1] = means[1] / gains[1]
    np.testing.assert_allclose(im, flat)
    np.testing.assert_allclose(np.concatenate([u[1] for u in units]), special.gammaln(flat + 1))
    m, v = means / gains, variances / gains**2
    want = stats.norm(m, np.sqrt(v)).logpdf(flat)
    np.testing.assert_allclose(np.concatenate([u[2] for u in units]), want, rtol=1e-12)


def test_normalized_iterator_reads_sequences_and_groups_frames():
    data = np.arange(4 * 2 * 3 * 4, dtype=np.float64).reshape(4, 2, 3, 4, 1) + 1
    seq = sima.Sequence.create("ndarray", data)
    units = list(NormalizedIterator(seq, [1.0], [10.0], [4.0], ("frame", 2)))
    assert len(units) == 2 and units[0][0].shape == (48, 1)
    np.testing.assert_array_equal(units[1][0].ravel(), data[2:].ravel())
    with pytest.raises(ValueError, match="gains"):
        NormalizedIterator(data, [0.0], [1.0], [1.0], "row")
    with pytest.raises(ValueError, match="pixel_variances"):
        NormalizedIterator(data, [1.0], [1.0], [-1.0], "row")

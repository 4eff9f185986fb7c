"""AR(1) non-negative deconvolution with a baseline and a noise constraint.

The model of one fluorescence trace ``y`` (length ``T``, possibly with missing
samples) is ``y_t = b + c_t + noise``, with calcium ``c_t = γ c_{t-1} + s_t``,
spikes ``s_t >= 0``, a free baseline ``b`` and an unpenalised initial calcium
``c_{-1} >= 0``. Because ``c_{-1}`` costs nothing, ``s_0 = 0`` at any optimum
and the problem is about ``c_0 >= 0`` and ``s_t``, ``t >= 1``.

**Penalised problem** (fixed ``λ >= 0`` and ``b``)::

    minimise   ½ Σ_obs (y_t - b - c_t)² + λ Σ_{t>=1} s_t
    over       c_0 >= 0,  s_t = c_t - γ c_{t-1} >= 0.

The spike sum is linear in ``c``: ``Σ_{t>=1} s_t = Σ_t k_t c_t`` with
``k_0 = -γ``, ``k_t = 1 - γ`` inside and ``k_{T-1} = 1``. The solution is a
sequence of *pools*: runs ``[t0, t0 + L)`` on which the calcium decays freely,
``c_t = v γ^(t - t0)``, and a spike starts each pool after the first. For a
pool, with observation weights ``w_t`` (1 observed, 0 missing) and
``τ = t - t0``, the best ``v`` is ``(B - b G - λ K) / A`` where

    A = Σ w_t γ^(2τ),   B = Σ w_t γ^τ y_t,   G = Σ w_t γ^τ,   K = Σ k_t γ^τ.

These sums merge exactly (``X = X_1 + γ^(L_1) X_2``, ``A`` with ``γ^(2 L_1)``),
so the pool-adjacent-violators algorithm of Friedrich, Zhou & Paninski (2017)
solves the problem in one left-to-right sweep: each sample enters as its own
pool, and while a pool starts lower than the previous one decays to
(``v_i < γ^(L_{i-1}) v_{i-1}``, a negative spike) the two are merged. The first
pool is clipped at ``v >= 0``. A pool without observations has no quadratic
term; its value is ``-∞`` or ``+∞`` from the sign of its linear term, which
makes it merge the way the optimum requires.

**Noise-constrained problem** (what the user asks for)::

    minimise Σ s_t   subject to   ‖y - b - c‖_obs <= σ √T_obs

Its solution is the penalised solution for the ``λ`` at which the residual
sum of squares equals ``σ² T_obs``, with ``b`` optimal for that ``λ``. With the
pools held fixed, the residual is affine in ``(b, λ)``, so the optimal ``b`` is
an affine function of ``λ`` and the RSS a quadratic in ``λ``: one pass over
the trace gives its coefficients, the quadratic gives the next ``λ``, and the
pools are recomputed. This active-set iteration (the scheme of the paper, with
the baseline solved jointly) stops when a sweep at the new ``(λ, b)`` meets
both optimality conditions: RSS equal to ``σ² T_obs`` within ``rtol`` and
the residual summing to zero (``b`` optimal). When it cannot be certified in
``max_iter`` sweeps, the status says so and the caller solves the trace
another way.

Two cases are settled before the iteration: if the best spike-free fit
(``c_t = c_0 γ^t`` and ``b``) already meets the noise bound, the answer has no
spikes at all (objective 0); if even ``λ = 0`` cannot reach the bound, the
problem is infeasible and the ``λ = 0`` (least-residual) solution is returned.

References
----------
J. Friedrich, P. Zhou, L. Paninski, "Fast online deconvolution of calcium
imaging data", PLoS Comput Biol 13(3): e1005423 (2017),
https://doi.org/10.1371/journal.pcbi.1005423.
E. A. Pnevmatikakis et al., "Simultaneous denoising, deconvolution, and
demixing of calcium imaging data", Neuron 89(2): 285-299 (2016).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from sima_fast.kernels._jit import jit

__all__ = [
    "STATUS_INFEASIBLE",
    "STATUS_NO_SPIKES",
    "STATUS_OPTIMAL",
    "STATUS_UNCERTIFIED",
    "deconvolve_batch",
    "deconvolve_penalized",
    "deconvolve_trace",
]

#: The noise bound is met with equality and the baseline is optimal.
STATUS_OPTIMAL = 0
#: The best spike-free fit meets the noise bound: no spikes (objective 0).
STATUS_NO_SPIKES = 1
#: Even λ = 0 leaves a residual above the bound; the least-residual fit is returned.
STATUS_INFEASIBLE = 2
#: The active-set iteration did not certify an answer within ``max_iter`` sweeps.
STATUS_UNCERTIFIED = 3

#: Growth of the leading stretches solved to warm-start a long trace.
WARM_FACTOR = 10
#: Default shortest warm-start stretch (samples); 0 disables warm starts.
WARM_LEN = 400


@jit
def _pool_value(a, numer, first):
    if a > 0.0:
        v = numer / a
    elif numer > 0.0:
        v = math.inf
    else:
        v = -math.inf
    if first and v < 0.0:
        v = 0.0
    return v


@jit
def _pava(y, w, gamma, lam, b, gpow, start, length, pa, pb, pg, pk, pv, pn, pgl):
    """Pool the trace for penalty ``lam`` and baseline ``b``; return the pool count.

    ``gpow[n] = γ^n`` (length ``T + 1``). Pool ``i`` covers
    ``[start[i], start[i] + length[i])`` with value ``pv[i]`` and sums ``pa``
    (A), ``pb`` (B), ``pg`` (G), ``pk`` (K) as in the module docstring.

    Merge decisions depend on the data and are hard to predict, so the loop
    is written for a short dependency chain: pools are compared without
    dividing (values are ``N / A`` with ``N = B - b G - λ K``, and "the new
    pool starts below the decayed previous one" is ``N A_prev < γ^L N_prev A``
    for positive weights), and the top of the pool stack lives in local
    variables rather than in memory. ``pn`` and ``pgl`` receive ``N`` and
    ``γ^L``. The first pool is compared through its clipped value (``N = 0,
    A = 1`` when ``N <= 0``) while its true sums are kept.

    Returns
    -------
    int
        The number of pools ``m``: entries ``0 .. m - 1`` of the pool arrays
        hold them.
    """
    n_t = y.shape[0]
    inner = 1.0 - gamma
    # Stack below the top: entries 0 .. m - 1 in the arrays. Top: the t_* locals.
    m = 0
    has_top = False
    t_a = 0.0
    t_n = 0.0
    t_b = 0.0
    t_g = 0.0
    t_k = 0.0
    t_gl = 1.0
    t_len = 0
    for t in range(n_t):
        if t == n_t - 1:
            k = 1.0 if n_t > 1 else 0.0
        elif t == 0:
            k = -gamma
        else:
            k = inner
        wt = w[t]
        a = wt
        sb = wt * y[t]
        sg = wt
        sk = k
        sn = sb - b * sg - lam * sk
        size = 1
        while has_top:
            # Compare against the top (clipped if it is the first pool).
            ca = t_a
            cn = t_n
            if m == 0 and cn <= 0.0 and ca > 0.0:
                ca = 1.0
                cn = 0.0
            elif m == 0 and ca == 0.0 and cn <= 0.0:
                ca = 1.0
                cn = 0.0
            if a > 0.0:
                if not (sn * ca < t_gl * cn * a):
                    break
            elif not (sn <= 0.0 or (ca == 0.0 and cn > 0.0)):
                break
            gl = t_gl
            a = t_a + gl * gl * a
            sn = t_n + gl * sn
            sb = t_b + gl * sb
            sg = t_g + gl * sg
            sk = t_k + gl * sk
            size += t_len
            if m > 0:
                m -= 1
                t_a = pa[m]
                t_n = pn[m]
                t_b = pb[m]
                t_g = pg[m]
                t_k = pk[m]
                t_gl = pgl[m]
                t_len = length[m]
            else:
                has_top = False
        if has_top:
            pa[m] = t_a
            pn[m] = t_n
            pb[m] = t_b
            pg[m] = t_g
            pk[m] = t_k
            pgl[m] = t_gl
            length[m] = t_len
            m += 1
        has_top = True
        t_a = a
        t_n = sn
        t_b = sb
        t_g = sg
        t_k = sk
        t_gl = gpow[size]
        t_len = size
    if has_top:
        pa[m] = t_a
        pn[m] = t_n
        pb[m] = t_b
        pg[m] = t_g
        pk[m] = t_k
        pgl[m] = t_gl
        length[m] = t_len
        m += 1
    pos = 0
    for i in range(m):
        start[i] = pos
        pos += length[i]
        pv[i] = _pool_value(pa[i], pn[i], i == 0)
    return m


@jit
def _moments(b, lam, n, start, length, pa, pb, pg, pk, pv, cum, out):
    """Compute the sums that make the residual a function of ``(b, λ)``, pools fixed.

    With the pools fixed, every observed residual is ``r_t = p_t - b q_t + λ u_t``
    (``p = y - γ^τ B/A``, ``q = 1 - γ^τ G/A``, ``u = γ^τ K/A`` on a free pool;
    ``p = y``, ``q = 1``, ``u = 0`` on a first pool held at zero). Each pool's
    contribution follows from its sums and from prefix sums ``cum`` of the
    observed count, ``y`` and ``y²`` (shape ``(3, T + 1)``), in O(1).
    ``out`` receives ``[Σp, Σq, Σu, Σpp, Σqq, Σuu, Σpq, Σpu, Σqu, Σr, Σr²]``,
    the last two at the given ``(b, λ)``.
    """
    for j in range(11):
        out[j] = 0.0
    for i in range(n):
        t0 = start[i]
        t1 = t0 + length[i]
        m0 = cum[0, t1] - cum[0, t0]
        if m0 == 0.0:
            continue
        m1 = cum[1, t1] - cum[1, t0]
        m2 = cum[2, t1] - cum[2, t0]
        a = pa[i]
        if pv[i] == 0.0 and i == 0:
            out[0] += m1
            out[1] += m0
            out[3] += m2
            out[4] += m0
            out[6] += m1
            continue
        sb = pb[i]
        sg = pg[i]
        cb = sb / a
        cg = sg / a
        ck = pk[i] / a
        out[0] += m1 - cb * sg
        out[1] += m0 - cg * sg
        out[2] += ck * sg
        out[3] += m2 - 2.0 * cb * sb + cb * cb * a
        out[4] += m0 - 2.0 * cg * sg + cg * cg * a
        out[5] += ck * ck * a
        out[6] += m1 - cb * sg - cg * sb + cb * cg * a
        out[7] += ck * (sb - cb * a)
        out[8] += ck * (sg - cg * a)
    sp, sq, su, spp, sqq, suu, spq, spu, squ = (
        out[0],
        out[1],
        out[2],
        out[3],
        out[4],
        out[5],
        out[6],
        out[7],
        out[8],
    )
    out[9] = sp - b * sq + lam * su
    out[10] = (
        spp + b * b * sqq + lam * lam * suu - 2.0 * b * spq + 2.0 * lam * spu - 2.0 * b * lam * squ
    )


@jit
def _fill(gamma, gpow, n, start, length, pv, b, c, s):
    """Write calcium ``c`` and spikes ``s`` from the pools; return the spike sum."""
    total = 0.0
    for i in range(n):
        t0 = start[i]
        v = pv[i]
        for tau in range(length[i]):
            c[t0 + tau] = v * gpow[tau]
            s[t0 + tau] = 0.0
        if i > 0:
            jump = v - gpow[length[i - 1]] * pv[i - 1]
            if jump < 0.0:
                jump = 0.0
            s[t0] = jump
            total += jump
    return total


@jit
def spike_free_fit(y, w, gpow, n_obs):
    """Fit a trace with no spikes: a baseline plus the decay of the initial calcium.

    Minimises ``Σ_t w_t (y_t − b − v γ^t)²`` over ``b`` and ``v >= 0``, the
    answer when the noise constraint allows no spike at all.

    Parameters
    ----------
    y : numpy.ndarray
        ``(T,)`` float64 trace (missing samples may hold anything).
    w : numpy.ndarray
        ``(T,)`` float64 weights: 1 for observed samples, 0 for missing ones.
    gpow : numpy.ndarray
        float64 powers ``γ^t``, at least ``T`` of them (``t = 0, 1, ...``).
    n_obs : int
        Number of observed samples.

    Returns
    -------
    b : float
        The baseline.
    v : float
        The initial calcium, ``>= 0``.
    rss : float
        The residual sum of squares over the observed samples.
    """
    sy = 0.0
    sg = 0.0
    sgg = 0.0
    sgy = 0.0
    for t in range(y.shape[0]):
        if w[t] == 0.0:
            continue
        g = gpow[t]
        sy += y[t]
        sg += g
        sgg += g * g
        sgy += g * y[t]
    det = n_obs * sgg - sg * sg
    v = 0.0
    b = sy / n_obs
    if det > 1e-12 * n_obs * sgg:
        v = (n_obs * sgy - sg * sy) / det
        if v > 0.0:
            b = (sy - v * sg) / n_obs
        else:
            v = 0.0
    rss = 0.0
    for t in range(y.shape[0]):
        if w[t] == 0.0:
            continue
        r = y[t] - b - v * gpow[t]
        rss += r * r
    return b, v, rss


@jit
def _lam_for_target(m, target, lam_old, b_old):
    """Next ``(λ, b)`` from the fixed-pool quadratic; ``ok`` is False if λ is pinned at 0."""
    sp, sq, su, spp, sqq, suu, spq, spu, squ = m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]
    # b(λ) = b0 + λ b1 makes Σ r = 0; with Σq ~ 0 every pool absorbs b and it is kept.
    if sq > 1e-9 * max(spp, 1.0) and sq > 1e-12:
        b0 = sp / sq
        b1 = su / sq
    else:
        b0 = b_old
        b1 = 0.0
    # r = (p - b0 q) + λ (u - b1 q) = r0 + λ r1.
    r0r0 = spp - 2.0 * b0 * spq + b0 * b0 * sqq
    r1r1 = suu - 2.0 * b1 * squ + b1 * b1 * sqq
    r0r1 = spu - b0 * squ - b1 * spq + b0 * b1 * sqq
    qa = r1r1
    qb = 2.0 * r0r1
    qc = r0r0 - target
    lam = lam_old
    if qa > 1e-300:
        disc = qb * qb - 4.0 * qa * qc
        if disc >= 0.0:
            lam = (-qb + math.sqrt(disc)) / (2.0 * qa)
        else:
            lam = -qb / (2.0 * qa)
    elif qb != 0.0:
        lam = -qc / qb
    if not (lam >= 0.0):
        lam = 0.0
    return lam, b0 + lam * b1


@jit
def _iterate(y, w, gamma, target, lam, b, b_tol, rtol, max_iter, gpow, cum, ws_f, ws_i, m):
    """Active-set sweeps from ``(λ, b)``; return ``(λ, b, status, sweeps, pools, rss)``."""
    pa = ws_f[1]
    pb = ws_f[2]
    pg = ws_f[3]
    pk = ws_f[4]
    pv = ws_f[5]
    pn = ws_f[6]
    pgl = ws_f[7]
    start = ws_i[0]
    length = ws_i[1]
    status = STATUS_UNCERTIFIED
    sweeps = 0
    n = 0
    rss = math.inf
    for it in range(max_iter):
        n = _pava(y, w, gamma, lam, b, gpow, start, length, pa, pb, pg, pk, pv, pn, pgl)
        _moments(b, lam, n, start, length, pa, pb, pg, pk, pv, cum, m)
        sweeps = it + 1
        rss = m[10]
        b_ok = abs(m[9]) <= b_tol
        # The RSS comes from pool-level sums: allow for their rounding, which
        # matters only when the noise bound is a tiny fraction of the signal.
        tol = rtol * target + 1e-11 * cum[2, y.shape[0]]
        if b_ok and abs(rss - target) <= tol:
            status = STATUS_OPTIMAL
            break
        if b_ok and lam == 0.0 and rss > target + tol:
            status = STATUS_INFEASIBLE
            break
        lam_new, b_new = _lam_for_target(m, target, lam, b)
        if lam_new == lam and b_new == b:
            break
        lam = lam_new
        b = b_new
    return lam, b, status, sweeps, n, rss


@jit
def _solve(y, w, gamma, sigma, rtol, max_iter, c, s, ws_f, ws_i, warm_len):
    """Solve one trace in place; return ``(b, λ, status, sweeps, rss, n_obs)``.

    ``y`` (missing samples set to 0) and ``w`` (1 observed, 0 missing) are
    overwritten scratch; ``ws_f`` is ``(11, T + 1)`` float64 and ``ws_i``
    ``(2, T)`` int64 workspace.

    Returns
    -------
    tuple
        ``(b, λ, status, sweeps, rss, n_obs)`` as returned by
        :func:`deconvolve_trace`.
    """
    n_t = y.shape[0]
    gpow = ws_f[0]
    cum = ws_f[8:11]
    m = np.empty(11)
    gpow[0] = 1.0
    for j in range(1, n_t + 1):
        gpow[j] = gpow[j - 1] * gamma
    # Centre the observed samples (the baseline absorbs the shift): it keeps
    # the pool-level sums of squares well conditioned.
    n_obs = 0.0
    total = 0.0
    for t in range(n_t):
        n_obs += w[t]
        total += y[t]
    shift = total / n_obs
    cum[0, 0] = 0.0
    cum[1, 0] = 0.0
    cum[2, 0] = 0.0
    for t in range(n_t):
        if w[t] > 0.0:
            y[t] -= shift
        cum[0, t + 1] = cum[0, t] + w[t]
        cum[1, t + 1] = cum[1, t] + y[t]
        cum[2, t + 1] = cum[2, t] + y[t] * y[t]
    target = sigma * sigma * n_obs
    rms = math.sqrt(cum[2, n_t] / n_obs)
    b_tol = rtol * max(sigma, 1e-12 * rms) * n_obs

    # Spike-free fit first: if it meets the bound, no spikes is optimal.
    b, v, rss = spike_free_fit(y, w, gpow, n_obs)
    if rss <= target * (1.0 + rtol):
        for t in range(n_t):
            c[t] = v * gpow[t]
            s[t] = 0.0
        return b + shift, math.inf, STATUS_NO_SPIKES, 0, rss, n_obs

    lam = 0.0
    sweeps = 0
    # Warm start: λ and b barely depend on the trace length, so solving
    # leading stretches first (each ten times longer than the last, the
    # shortest at least ``warm_len`` samples) puts every longer solve close to
    # its answer. A stretch that cannot be certified is simply skipped.
    if warm_len > 0:
        lev = n_t
        while lev // WARM_FACTOR >= warm_len:
            lev //= WARM_FACTOR
        while lev < n_t:
            n_sub = cum[0, lev]
            if n_sub >= 16:
                out = _iterate(
                    y[:lev],
                    w[:lev],
                    gamma,
                    sigma * sigma * n_sub,
                    lam,
                    b,
                    b_tol * n_sub / n_obs,
                    rtol,
                    max_iter,
                    gpow,
                    cum,
                    ws_f,
                    ws_i,
                    m,
                )
                if out[2] == STATUS_OPTIMAL:
                    lam = out[0]
                    b = out[1]
            lev *= WARM_FACTOR
    out = _iterate(y, w, gamma, target, lam, b, b_tol, rtol, max_iter, gpow, cum, ws_f, ws_i, m)
    lam, b, status, sweeps, n, rss = out
    _fill(gamma, gpow, n, ws_i[0], ws_i[1], ws_f[5], b, c, s)
    return b + shift, lam, status, sweeps, rss, n_obs


@jit
def _prepare(trace, y, w):
    for t in range(trace.shape[0]):
        x = float(trace[t])
        if math.isfinite(x):
            y[t] = x
            w[t] = 1.0
        else:
            y[t] = 0.0
            w[t] = 0.0


@jit
def deconvolve_trace(trace, gamma, sigma, c, s, rtol=1e-6, max_iter=60, warm_len=WARM_LEN):
    """Solve the noise-constrained problem for one trace.

    Parameters
    ----------
    trace : numpy.ndarray, shape (T,), float32 or float64
        Fluorescence, read; NaN or infinite samples are missing. At least one
        sample must be finite (a trace with none raises ZeroDivisionError;
        callers leave empty traces out).
    gamma, sigma : float
        Decay factor in ``(0, 1)`` and noise standard deviation ``>= 0``.
    c, s : numpy.ndarray of float64, shape (T,)
        Outputs, overwritten: calcium (without baseline; missing samples get
        the model's value) and spikes (``s[0] = 0``).
    rtol : float
        Relative tolerance on ``RSS = σ² T_obs`` for the certificate.
    max_iter : int
        Most active-set sweeps (per warm-start stretch and for the whole
        trace).
    warm_len : int
        Warm start: leading stretches of the trace, each :data:`WARM_FACTOR`
        times longer than the last and the shortest at least ``warm_len``
        samples, are solved first, each from the answer of the one before;
        0 solves the whole trace from ``λ = 0`` directly.

    Returns
    -------
    baseline : float
        The baseline ``b``.
    lam : float
        The penalty ``λ`` of the answer: ``inf`` for the spike-free answer,
        0 when the problem is infeasible.
    status : int
        One of :data:`STATUS_OPTIMAL`, :data:`STATUS_NO_SPIKES`,
        :data:`STATUS_INFEASIBLE` or :data:`STATUS_UNCERTIFIED`.
    sweeps : int
        Active-set sweeps of the final solve (0 for the spike-free answer).
    rss : float
        Residual sum of squares over the observed samples.
    n_obs : float
        Number of observed samples ``T_obs``.
    """
    n_t = trace.shape[0]
    y = np.empty(n_t)
    w = np.empty(n_t)
    _prepare(trace, y, w)
    ws_f = np.empty((11, n_t + 1))
    ws_i = np.empty((2, n_t), dtype=np.int64)
    return _solve(y, w, gamma, sigma, rtol, max_iter, c, s, ws_f, ws_i, warm_len)


@jit
def deconvolve_penalized(trace, gamma, lam, b, c, s):
    """Solve the penalised problem for fixed ``λ`` and baseline ``b``; return the spike sum.

    ``c`` and ``s`` receive the calcium and spikes of
    ``argmin ½ Σ_obs (y - b - c)² + λ Σ_{t>=1} s_t`` (one sweep of the pool
    algorithm, no noise constraint); the tests compare it with a generic
    convex solver.

    Parameters
    ----------
    trace : numpy.ndarray, shape (T,), float32 or float64
        Fluorescence, read; NaN or infinite samples are missing.
    gamma : float
        Decay factor in ``(0, 1)``.
    lam : float
        Penalty ``λ >= 0`` on the spike sum.
    b : float
        Baseline, held fixed.
    c, s : numpy.ndarray of float64, shape (T,)
        Outputs, overwritten: calcium (without baseline) and spikes
        (``s[0] = 0``).

    Returns
    -------
    float
        The spike sum ``Σ_{t>=1} s_t``.
    """
    n_t = trace.shape[0]
    y = np.empty(n_t)
    w = np.empty(n_t)
    _prepare(trace, y, w)
    ws_f = np.empty((8, n_t + 1))
    ws_i = np.empty((2, n_t), dtype=np.int64)
    gpow = ws_f[0]
    gpow[0] = 1.0
    for j in range(1, n_t + 1):
        gpow[j] = gpow[j - 1] * gamma
    n = _pava(
        y,
        w,
        gamma,
        lam,
        b,
        gpow,
        ws_i[0],
        ws_i[1],
        ws_f[1],
        ws_f[2],
        ws_f[3],
        ws_f[4],
        ws_f[5],
        ws_f[6],
        ws_f[7],
    )
    return _fill(gamma, gpow, n, ws_i[0], ws_i[1], ws_f[5], b, c, s)


@jit(parallel=True)
def deconvolve_batch(
    traces, gammas, sigmas, c, s, baseline, lam, status, sweeps, rtol, max_iter, n_work, warm_len
):
    """Solve every row of ``traces`` in parallel (:func:`deconvolve_trace` per row).

    The rows are dealt to ``n_work`` work items in turn (row ``i`` to item
    ``i % n_work``); each item allocates its workspace once and reuses it for
    all its rows. The answers do not depend on ``n_work`` or on the number of
    threads.

    Parameters
    ----------
    traces : numpy.ndarray, shape (n, T), float32 or float64
        Fluorescence, read; NaN or infinite samples are missing. Every row
        must have a finite sample.
    gammas, sigmas : numpy.ndarray of float64, shape (n,)
        Decay factor and noise standard deviation of each row.
    c, s : numpy.ndarray of float64, shape (n, T)
        Outputs, overwritten: calcium (without baseline) and spikes.
    baseline, lam : numpy.ndarray of float64, shape (n,)
        Outputs, overwritten: baseline and penalty ``λ`` of each row.
    status, sweeps : numpy.ndarray of int64, shape (n,)
        Outputs, overwritten: status code (``STATUS_*``) and active-set
        sweeps of each row.
    rtol : float
        Relative tolerance on ``RSS = σ² T_obs`` for the certificate.
    max_iter : int
        Most active-set sweeps per solve.
    n_work : int
        Work items (clipped to ``1 .. n``); a few per thread balances rows
        of unequal cost.
    warm_len : int
        Shortest warm-start stretch, as in :func:`deconvolve_trace`.
    """
    n_rows, n_t = traces.shape
    n_work = min(n_rows, max(1, n_work))
    for j in prange(n_work):
        y = np.empty(n_t)
        w = np.empty(n_t)
        ws_f = np.empty((11, n_t + 1))
        ws_i = np.empty((2, n_t), dtype=np.int64)
        for i in range(j, n_rows, n_work):
            _prepare(traces[i], y, w)
            out = _solve(
                y, w, gammas[i], sigmas[i], rtol, max_iter, c[i], s[i], ws_f, ws_i, warm_len
            )
            baseline[i] = out[0]
            lam[i] = out[1]
            status[i] = out[2]
            sweeps[i] = out[3]

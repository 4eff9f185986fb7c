"""Per-frame kernels of the online extractor: staging, moments, extraction, online AR(1).

Every kernel here works on one frame (or on the state alone), writes into
preallocated arrays, allocates nothing and releases the GIL; none is
parallel, so one call uses one core. :class:`sima_fast.online.OnlineExtractor`
owns the arrays and documents the API; this module knows only arrays.

**Staging.** The frame is copied once into a small ring of the last ``B``
frames, ``ring[channel, slot, pixel]`` in the input dtype, from any layout
(a non-contiguous view into a shared-memory buffer included). Extraction and
moments read that copy.

**Moments, staggered.** The moment state ``(n, mean, M2, M3, M4)`` of every
pixel (as in :mod:`sima_fast.kernels.moments`, whose accumulation loops are
reused and whose merge formulas are applied) is 40 bytes per pixel: reading
and writing all of it for every frame would cost about as much as the rest
of the update. The pixels are
cut into ``B`` blocks instead, and frame ``t`` folds block ``t mod B`` with
all of its frames not yet folded (at most ``B``, all still in the ring), so
each frame touches ``1/B`` of the state. :func:`flush_moments` folds every
pending frame of every block, after which the state holds exactly the frames
seen. Folding is the offline formula applied to chunks of at most ``B``
frames, so the result equals the offline projections to rounding.

**Extraction** of one frame is the arithmetic of
:mod:`sima_fast.kernels.extract` for a single frame: over the finite pixels,
``Σ a_p x_p · Σ_all w_p² / Σ_finite w_p²``, NaN for an ROI without a finite
pixel (or without pixels).

**Online AR(1) deconvolution** (pool-adjacent violators, Friedrich, Zhou &
Paninski 2017, written from the paper). The model per ROI, with decay ``γ``,
penalty ``λ`` and baseline ``b`` fixed, is the penalised problem of offline spike
inference (see "Spike inference" in docs/contract.md)::

    minimise  ½ Σ_obs (y_t - b - c_t)² + λ Σ_{t>=1} s_t
    over      c_0 >= 0 (unpenalised initial calcium),  s_t = c_t - γ c_{t-1} >= 0.

Writing ``Σ_{t>=1} s_t = Σ_t k_t c_t`` gives ``k_0 = -γ``, ``k_t = 1 - γ`` and
``k_{T-1} = 1`` for the newest sample: the newest sample's coefficient
changes when the next one arrives, which the pools cannot follow (a merge
decided with the larger coefficient may be wrong with the smaller one). The
running state therefore pools the samples with their *settled*
coefficients (``1 - γ`` for the newest sample too), which is the exact
intermediate state of the offline left-to-right sweep; the end term
(``+γ`` on the newest sample) is applied only to a copy when the current
estimate is reported (:func:`ar_provisional`). A pool is a run
``[t0, t0 + L)`` with ``c_t = v γ^(t - t0)`` and sums

    A = Σ w_t γ^(2τ),   N = Σ w_t γ^τ (y_t - b) - λ Σ k_t γ^τ,   v = N / A

(``τ = t - t0``, ``w_t`` 1 when observed, 0 when missing: a pool without
observations has value ``+∞`` or ``-∞`` by the sign of ``N``). Each sample
enters as a pool and is merged into the previous one while it starts below
that pool's decay (``v_i < γ^(L_{i-1}) v_{i-1}``); the first pool is clipped at
0, or, once older pools are frozen, at the decay ``Lb`` of the last frozen
pool.

**Freezing.** After sample ``t`` the pool starting at ``t - lag`` (if any) is
frozen: its value, and so the spike at its start and the calcium over its
run, never changes again. Spikes and calcium of samples ``<= t - lag`` are
*final* and written to the output ring; later samples are *provisional*.
The active pools all start after ``t - lag``, so at most ``lag + 1`` of them
exist: the pool arrays have exactly that capacity and never overflow. With
``lag >= T`` nothing freezes and the reported solution is exactly the
offline one; with a shorter lag a pool is frozen with the data of ``lag``
frames after its start, which changes it only through the terms weighted
by ``γ^lag`` or less.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from sima_fast.kernels._jit import FASTMATH, jit
from sima_fast.kernels.extract import CHUNK_WIDTH, chunk_runs
from sima_fast.kernels.moments import _accumulate_checked, _accumulate_plain

__all__ = [
    "AR_FIELDS",
    "CHUNK_WIDTH",
    "COUNTERS",
    "SNAP",
    "ar_backlog",
    "ar_provisional",
    "ar_step",
    "chunk_runs",
    "correlation_peak",
    "extract_frame",
    "flush_moments",
    "gaussian_spectrum",
    "periodic_component",
    "shift_planes",
    "taper_plane",
    "taper_window",
    "update_2d",
    "update_3d",
    "update_4d",
    "whiten_cross",
]


#: Layout of the int64 ``counters`` array shared by the kernels.
COUNTERS = {
    "frames": 0,  # frames seen
    "ar_samples": 1,  # samples fed to the AR(1) solver (lags ``frames`` until parameters exist)
    "ar_ready": 2,  # 1 once the AR(1) parameters are set
    "signal_channel": 3,
    "lag": 4,
    "block": 5,  # pixels per moment block
    "is_float": 6,  # 1 for float input (finiteness tests on)
    "partial": 7,  # set by extraction: some masked pixel was not finite in the last frame
}
_FRAMES, _AR_SAMPLES, _AR_READY, _SIGNAL, _LAG, _BLOCK, _IS_FLOAT, _PARTIAL = range(8)

#: Last axis of the pool arrays ``pools_f[roi, slot, field]``, ``pools_i[roi, slot, field]``
#: and of the per-ROI arrays ``roi_f[roi, field]``, ``roi_i[roi, field]``, ``params[roi, field]``
#: (one ROI's data side by side: a frame touches few cache lines per ROI).
AR_FIELDS = {
    "pools_f": ("value", "numer", "a", "decay"),  # decay = γ^length
    "pools_i": ("start", "length"),
    "roi_f": ("lower", "frozen_value", "final_calcium"),
    "roi_i": ("head", "count", "frozen_start"),
    "params": ("gamma", "penalty", "baseline"),
}
_V, _N, _A, _G = range(4)
_START, _LEN = range(2)
_LB, _FV, _FC = range(3)
_HEAD, _CNT, _FS = range(3)
_RAW, _SPIKES, _CALCIUM = range(3)


# ---------------------------------------------------------------------------
# staging
# ---------------------------------------------------------------------------


@jit
def _stage_2d(frame, ring, slot):  # pragma: no cover - compiled
    Y, X = frame.shape
    dst = ring[0, slot].reshape((Y, X))  # 2-D indices: the copy loop vectorises
    for y in range(Y):
        for x in range(X):
            dst[y, x] = frame[y, x]


@jit
def _stage_3d(frame, ring, slot):  # pragma: no cover - compiled
    Z, Y, X = frame.shape
    dst = ring[0, slot].reshape((Z, Y, X))
    for z in range(Z):
        for y in range(Y):
            for x in range(X):
                dst[z, y, x] = frame[z, y, x]


@jit
def _stage_4d(frame, ring, slot):  # pragma: no cover - compiled
    Z, Y, X, C = frame.shape
    for c in range(C):
        dst = ring[c, slot].reshape((Z, Y, X))
        for z in range(Z):
            for y in range(Y):
                for x in range(X):
                    dst[z, y, x] = frame[z, y, x, c]


# ---------------------------------------------------------------------------
# moments
# ---------------------------------------------------------------------------


@jit(fastmath=FASTMATH)
def _fold_pixels(
    x, a, n1, n2, count, p0, p1, n, mean, m2, m3, m4, scratch, is_float
):  # pragma: no cover
    """Fold ring rows ``a..a+n1`` and ``0..n2`` (``count`` frames) of pixels ``p0:p1``.

    The chunk's power sums around the pixel's mean (or, for a pixel not seen
    yet, its first finite pending value) are accumulated by the offline
    kernel's loops, then merged with the formulas of
    :mod:`sima_fast.kernels.moments`, written without branches so the merge
    vectorises (a pixel with nothing new keeps its state exactly).
    """
    B = x.shape[0]
    m = p1 - p0
    k = scratch[0]
    c = scratch[1]
    s1 = scratch[2]
    s2 = scratch[3]
    s3 = scratch[4]
    s4 = scratch[5]
    # Short loops over few arrays each: they vectorise (LLVM gives up on loops that
    # would need runtime overlap checks between many arrays).
    nn = n[p0:p1]
    mm = mean[p0:p1]
    q2 = m2[p0:p1]
    q3 = m3[p0:p1]
    q4 = m4[p0:p1]
    for j in range(1, 6):
        row = scratch[j]
        for i in range(m):
            row[i] = 0.0
    for i in range(m):
        k[i] = mm[i]  # 0 while the pixel has not been seen
    unseen = 0
    for i in range(m):
        unseen += nn[i] == 0.0
    if unseen:  # shift by the first finite value among the pending frames
        for i in range(m):
            if nn[i] == 0.0:
                for q in range(count):
                    v = np.float64(x[(a + q) % B, p0 + i])
                    if v - v == 0.0:
                        k[i] = v
                        break
    # Sum without finiteness tests first (as the offline kernel does); float input
    # that turns out to hold a NaN or inf is summed again with the tests.
    _accumulate_plain(x[a : a + n1], p0, p1, k, s1, s2, s3, s4)
    if n2 > 0:
        _accumulate_plain(x[0:n2], p0, p1, k, s1, s2, s3, s4)
    bad = 0
    if is_float:
        for i in range(m):
            bad += not s4[i] - s4[i] == 0.0
    if bad:
        for j in range(2, 6):
            row = scratch[j]
            for i in range(m):
                row[i] = 0.0
        _accumulate_checked(x[a : a + n1], p0, p1, k, c, s1, s2, s3, s4)
        if n2 > 0:
            _accumulate_checked(x[0:n2], p0, p1, k, c, s1, s2, s3, s4)
    else:
        for i in range(m):
            c[i] = count
    # merge: c <- N (new count), s1 <- δ, s_j <- M_j + S_j, then the central sums
    for i in range(m):
        c[i] += nn[i]
    for i in range(m):
        s1[i] = s1[i] / max(c[i], 1.0)
    for i in range(m):
        s2[i] += q2[i]
    for i in range(m):
        s3[i] += q3[i]
    for i in range(m):
        s4[i] += q4[i]
    for i in range(m):
        d = s1[i]
        q4[i] = s4[i] - 4.0 * d * s3[i] + 6.0 * d * d * s2[i] - 3.0 * c[i] * d * d * d * d
    for i in range(m):
        d = s1[i]
        q3[i] = s3[i] - 3.0 * d * s2[i] + 2.0 * c[i] * d * d * d
    for i in range(m):
        d = s1[i]
        q2[i] = s2[i] - c[i] * d * d
    for i in range(m):
        mm[i] = k[i] + s1[i]
    for i in range(m):
        nn[i] = c[i]


@jit
def _fold_block(ring, mom, pending, scratch, j, t, block, is_float):  # pragma: no cover
    """Fold the pending frames ``pending[j]..t`` of pixel block ``j`` into the state.

    The block is processed in pieces of ``scratch.shape[1]`` pixels, so the
    power sums stay in cache while the pending frames stream through.
    """
    B = ring.shape[1]
    P = ring.shape[2]
    first = pending[j]
    count = t - first + 1
    pending[j] = t + 1
    p0 = j * block
    p1 = min(P, p0 + block)
    if count <= 0 or p0 >= p1:
        return
    a = first % B
    n1 = min(count, B - a)
    n2 = count - n1
    piece = scratch.shape[1]
    for ch in range(ring.shape[0]):
        x = ring[ch]
        n = mom[0, ch]
        mean = mom[1, ch]
        m2 = mom[2, ch]
        m3 = mom[3, ch]
        m4 = mom[4, ch]
        for q0 in range(p0, p1, piece):
            q1 = min(p1, q0 + piece)
            _fold_pixels(x, a, n1, n2, count, q0, q1, n, mean, m2, m3, m4, scratch, is_float)


@jit
def flush_moments(ring, mom, pending, scratch, counters):  # pragma: no cover - compiled
    """Fold every pending frame of every block: the state then holds all frames seen.

    Parameters
    ----------
    ring : numpy.ndarray, shape (C, B, P)
        The staged frames, read: ``ring[c, t % B]`` is channel ``c`` of frame
        ``t`` flattened to its ``P = Z·Y·X`` pixels, in the frames' dtype. It
        must still hold every pending frame (at most ``B`` per block, which
        the per-frame kernels guarantee).
    mom : numpy.ndarray of float64, shape (5, C, P)
        The moment state, updated in place: count of finite values, mean and
        central sums ``M2``, ``M3``, ``M4`` of every channel and pixel (as
        :class:`sima_fast.kernels.moments.MomentState`).
    pending : numpy.ndarray of int64, shape (B,)
        ``pending[j]``: the first frame not yet folded into pixel block ``j``
        (pixels ``j·block .. (j + 1)·block - 1``). Updated in place: every
        entry becomes the number of frames seen.
    scratch : numpy.ndarray of float64, shape (6, piece)
        Workspace, overwritten. A block is folded ``piece`` pixels at a time
        (``piece`` at most the block size).
    counters : numpy.ndarray of int64, shape (len(COUNTERS),)
        Read: ``frames``, ``block`` and ``is_float`` (see :data:`COUNTERS`).
    """
    t = counters[_FRAMES] - 1
    for j in range(pending.shape[0]):
        _fold_block(ring, mom, pending, scratch, j, t, counters[_BLOCK], counters[_IS_FLOAT])


# ---------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------


@jit(fastmath=FASTMATH)
def extract_frame(x, chunk_ptr, chunk_start, a, w2, total, out, is_float):  # pragma: no cover
    """Write the weighted sum of every ROI in one flattened frame ``x`` into ``out``.

    Over the finite pixels, ``Σ a_p x_p · Σ_all w_p² / Σ_finite w_p²`` per
    ROI; NaN for an ROI without pixels or without a finite one.

    Parameters
    ----------
    x : numpy.ndarray, shape (P,)
        One channel of one frame, flattened (a row of the staging ring), any
        numeric dtype; read.
    chunk_ptr : numpy.ndarray of int64, shape (n_rois + 1,)
        Chunks of ROI ``r`` are ``chunk_ptr[r]:chunk_ptr[r + 1]`` (from
        :func:`chunk_runs`).
    chunk_start : numpy.ndarray of int64, shape (n_chunks,)
        First pixel of each chunk; ``chunk_start + width <= P``.
    a, w2 : numpy.ndarray of float64, shape (n_chunks * width,)
        Extraction weights ``a_p`` and squared mask weights ``w_p²``,
        ``width`` per chunk (zero-padded); the width is
        ``a.size // chunk_start.size``.
    total : numpy.ndarray of float64, shape (n_rois,)
        ``Σ_all w_p²`` per ROI (:attr:`RunWeights.total`); 0 for an ROI
        without pixels.
    out : numpy.ndarray of float32 or float64, shape (n_rois,)
        The ROI values of this frame, written.
    is_float : bool or int
        Whether ``x`` holds floats: only then are non-finite values looked
        for (integer frames have none).

    Returns
    -------
    int
        The number of masked pixels (``w_p ≠ 0``) that were not finite,
        summed over the ROIs (a pixel shared by two ROIs counts twice). Zero
        means every ROI value is the plain weighted sum; otherwise some ROI
        was re-weighted or is NaN.
    """
    n_rois = chunk_ptr.size - 1
    width = a.size // max(1, chunk_start.size)
    partial = 0
    for r in range(n_rois):
        acc = 0.0
        seen = 0.0
        missing = 0
        tot = total[r]
        for q in range(chunk_ptr[r], chunk_ptr[r + 1]):
            s = chunk_start[q]
            o = q * width
            w = a[o : o + width]
            xs = x[s : s + width]
            for i in range(width):
                acc += w[i] * np.float64(xs[i])
        if is_float and not acc - acc == 0.0:
            # a NaN or inf was summed (possibly at a zero weight): sum the finite pixels
            acc = 0.0
            for q in range(chunk_ptr[r], chunk_ptr[r + 1]):
                s = chunk_start[q]
                o = q * width
                w = a[o : o + width]
                v2 = w2[o : o + width]
                xs = x[s : s + width]
                for i in range(width):
                    f = np.float64(xs[i])
                    ok = f - f == 0.0
                    acc += w[i] * f if ok else 0.0
                    seen += v2[i] if ok else 0.0
                    missing += 0 if ok or v2[i] == 0.0 else 1
            if missing == 0 and tot > 0.0:
                out[r] = acc
            elif seen > 0.0:
                out[r] = acc * (tot / seen)
            else:
                out[r] = np.nan
            partial += missing
        else:
            out[r] = acc if tot > 0.0 else np.nan
    return partial


# ---------------------------------------------------------------------------
# online AR(1)
# ---------------------------------------------------------------------------


@jit(inline="always")
def _pool_value(numer, a):  # pragma: no cover - compiled
    if a > 0.0:
        return numer / a
    if numer > 0.0:
        return math.inf
    return -math.inf


@jit(inline="always")
def _ar_push(r, t, y, params, pools_f, pools_i, roi_f, roi_i, hist, lag, row):  # pragma: no cover
    """Feed sample ``t`` (value ``y``, NaN if missing) of ROI ``r`` to its pools.

    Sample ``t - lag`` (if >= 0) becomes final and is written to row ``row``
    (``(t - lag) % H``) of the spike and calcium rings.
    """
    tau = t - lag
    gamma = params[r, 0]
    lam = params[r, 1]
    b = params[r, 2]
    if not (gamma - gamma == 0.0 and lam - lam == 0.0 and b - b == 0.0):
        if tau >= 0:
            hist[_SPIKES, row, r] = np.nan
            hist[_CALCIUM, row, r] = np.nan
        return
    pf = pools_f[r]
    pi = pools_i[r]
    rf = roi_f[r]
    ri = roi_i[r]
    cap = pf.shape[0]
    head = ri[_HEAD]
    cnt = ri[_CNT]
    lower = rf[_LB]
    if cnt == 0 and ri[_FS] >= 0:  # a new first active pool after a frozen one
        lower = rf[_FV] * gamma ** (t - ri[_FS])
    k = -gamma if t == 0 else 1.0 - gamma
    if y - y == 0.0:
        w = 1.0
        numer = (y - b) - lam * k
    else:
        w = 0.0
        numer = -lam * k
    last = head + cnt
    if last >= cap:
        last -= cap
    v = _pool_value(numer, w)
    if cnt == 0 and v < lower:
        v = lower
    pf[last, _V] = v
    pf[last, _N] = numer
    pf[last, _A] = w
    pf[last, _G] = gamma
    pi[last, _START] = t
    pi[last, _LEN] = 1
    cnt += 1
    while cnt >= 2:
        prev = last - 1 if last > 0 else cap - 1
        pv = pf[prev, _V]
        g = pf[prev, _G]
        if not (pv == math.inf or pf[last, _V] < g * pv):
            break
        pf[prev, _N] += g * pf[last, _N]
        pf[prev, _A] += g * g * pf[last, _A]
        pf[prev, _G] = g * pf[last, _G]
        pi[prev, _LEN] += pi[last, _LEN]
        v = _pool_value(pf[prev, _N], pf[prev, _A])
        if cnt == 2 and v < lower:
            v = lower
        pf[prev, _V] = v
        cnt -= 1
        last = prev
    if tau >= 0:
        spike = 0.0
        if cnt > 0 and pi[head, _START] == tau:
            v = pf[head, _V]
            if v == math.inf:  # no observation yet: continue the decay
                v = lower
            if tau > 0:
                spike = v - lower
            rf[_FV] = v
            rf[_FC] = v
            ri[_FS] = tau
            head = head + 1 if head + 1 < cap else 0
            cnt -= 1
            if cnt > 0:
                lower = v * gamma ** (pi[head, _START] - tau)
                if pf[head, _V] < lower:
                    pf[head, _V] = lower
        else:
            rf[_FC] *= gamma
        hist[_SPIKES, row, r] = spike
        hist[_CALCIUM, row, r] = rf[_FC]
    rf[_LB] = lower
    ri[_HEAD] = head
    ri[_CNT] = cnt


@jit
def _ar_step(values, params, pools_f, pools_i, roi_f, roi_i, hist, counters):  # pragma: no cover
    """Feed one sample of every ROI (``values``, float32) to the solver."""
    t = counters[_AR_SAMPLES]
    lag = counters[_LAG]
    row = (t - lag) % hist.shape[1] if t >= lag else -1
    for r in range(values.shape[0]):
        y = np.float64(values[r])
        _ar_push(r, t, y, params, pools_f, pools_i, roi_f, roi_i, hist, lag, row)
    counters[_AR_SAMPLES] = t + 1


@jit
def ar_backlog(params, pools_f, pools_i, roi_f, roi_i, hist, counters):  # pragma: no cover
    """Feed the solver every extracted frame it has not seen yet (from the raw ring).

    Called once the AR(1) parameters are set, to catch up with the frames
    extracted before (all of which must still be in the history ring).

    Parameters
    ----------
    params : numpy.ndarray of float64, shape (n_rois, 3)
        Read: decay ``γ``, penalty ``λ`` and baseline ``b`` of every ROI
        (``AR_FIELDS["params"]``). An ROI with a NaN among them gets NaN
        spikes and calcium.
    pools_f : numpy.ndarray of float64, shape (n_rois, lag + 1, 4)
        Updated in place: the active pools of every ROI, a ring starting at
        ``roi_i[r, 0]``: value, sum ``N``, sum ``A`` and ``γ^length``
        (``AR_FIELDS["pools_f"]``).
    pools_i : numpy.ndarray of int64, shape (n_rois, lag + 1, 2)
        Updated in place: first sample and length of each active pool
        (``AR_FIELDS["pools_i"]``).
    roi_f : numpy.ndarray of float64, shape (n_rois, 3)
        Updated in place, per ROI: lower bound of the first active pool, value of
        the last frozen pool and calcium of the last final sample
        (``AR_FIELDS["roi_f"]``).
    roi_i : numpy.ndarray of int64, shape (n_rois, 3)
        Updated in place, per ROI: ring index of the first active pool, number of
        active pools and first sample of the last frozen pool, ``-1`` before
        any (``AR_FIELDS["roi_i"]``).
    hist : numpy.ndarray of float32, shape (3, H, n_rois)
        History rings, row ``t % H`` for frame ``t``: ``hist[0]`` the
        extracted values (read), ``hist[1]`` and ``hist[2]`` the spikes and
        calcium (without baseline) of the samples that become final (written).
    counters : numpy.ndarray of int64, shape (len(COUNTERS),)
        Reads ``frames`` and ``lag``; ``ar_samples`` is advanced to ``frames``.
    """
    H = hist.shape[1]
    while counters[_AR_SAMPLES] < counters[_FRAMES]:
        row = hist[_RAW, counters[_AR_SAMPLES] % H]
        _ar_step(row, params, pools_f, pools_i, roi_f, roi_i, hist, counters)


@jit
def ar_provisional(
    params, pools_f, pools_i, roi_f, roi_i, counters, spikes, calcium, work_f, work_i
):  # pragma: no cover - compiled
    """Write the current estimate of the samples that are not final yet, end term included.

    Columns ``0 .. width-1`` of ``spikes`` and ``calcium`` receive samples
    ``n_final .. ar_samples - 1`` with ``n_final = max(0, ar_samples - lag)``:
    the active pools of each ROI are copied to ``work_f`` and ``work_i``, the
    newest sample's coefficient gets its end term (``+γ``, so
    ``N -= λ γ^L`` for the last pool) and violations are merged away, which
    gives the exact solution for the samples so far given the frozen ones.
    The solver's state is not changed.

    Parameters
    ----------
    params : numpy.ndarray of float64, shape (n_rois, 3)
        Read: decay ``γ``, penalty ``λ`` and baseline ``b`` of every ROI
        (``AR_FIELDS["params"]``). An ROI with a NaN among them gets NaN
        spikes and calcium.
    pools_f : numpy.ndarray of float64, shape (n_rois, lag + 1, 4)
        Read: the active pools of every ROI, a ring starting at
        ``roi_i[r, 0]``: value, sum ``N``, sum ``A`` and ``γ^length``
        (``AR_FIELDS["pools_f"]``).
    pools_i : numpy.ndarray of int64, shape (n_rois, lag + 1, 2)
        Read: first sample and length of each active pool
        (``AR_FIELDS["pools_i"]``).
    roi_f : numpy.ndarray of float64, shape (n_rois, 3)
        Read, per ROI: lower bound of the first active pool, value of
        the last frozen pool and calcium of the last final sample
        (``AR_FIELDS["roi_f"]``).
    roi_i : numpy.ndarray of int64, shape (n_rois, 3)
        Read, per ROI: ring index of the first active pool, number of
        active pools and first sample of the last frozen pool, ``-1`` before
        any (``AR_FIELDS["roi_i"]``).
    counters : numpy.ndarray of int64, shape (len(COUNTERS),)
        Read: ``ar_samples`` and ``lag``.
    spikes, calcium : numpy.ndarray of float64, shape (n_rois, lag + 1)
        Written: the provisional spikes and calcium (without baseline) in
        columns ``0 .. width - 1``; the other columns are left as they are.
    work_f : numpy.ndarray of float64, shape (lag + 1, 4)
        Workspace (one ROI's pools), overwritten.
    work_i : numpy.ndarray of int64, shape (lag + 1, 2)
        Workspace (one ROI's pool starts and lengths), overwritten.

    Returns
    -------
    int
        ``width = ar_samples - n_final = min(ar_samples, lag)``, the number of
        provisional samples.
    """
    n_t = counters[_AR_SAMPLES]
    lag = counters[_LAG]
    n_final = max(0, n_t - lag)
    width = n_t - n_final
    cap = pools_f.shape[1]
    for r in range(params.shape[0]):
        gamma = params[r, 0]
        lam = params[r, 1]
        b = params[r, 2]
        if not (gamma - gamma == 0.0 and lam - lam == 0.0 and b - b == 0.0):
            for q in range(width):
                spikes[r, q] = np.nan
                calcium[r, q] = np.nan
            continue
        head = roi_i[r, _HEAD]
        cnt = roi_i[r, _CNT]
        lower = roi_f[r, _LB]
        for i in range(cnt):
            src = (head + i) % cap
            for f in range(4):
                work_f[i, f] = pools_f[r, src, f]
            work_i[i, _START] = pools_i[r, src, _START]
            work_i[i, _LEN] = pools_i[r, src, _LEN]
        if cnt > 0:
            last = cnt - 1
            work_f[last, _N] -= lam * work_f[last, _G]
            v = _pool_value(work_f[last, _N], work_f[last, _A])
            if last == 0 and v < lower:
                v = lower
            work_f[last, _V] = v
            while cnt >= 2:
                i = cnt - 2
                pv = work_f[i, _V]
                g = work_f[i, _G]
                if not (pv == math.inf or work_f[i + 1, _V] < g * pv):
                    break
                work_f[i, _N] += g * work_f[i + 1, _N]
                work_f[i, _A] += g * g * work_f[i + 1, _A]
                work_f[i, _G] = g * work_f[i + 1, _G]
                work_i[i, _LEN] += work_i[i + 1, _LEN]
                v = _pool_value(work_f[i, _N], work_f[i, _A])
                if i == 0 and v < lower:
                    v = lower
                work_f[i, _V] = v
                cnt -= 1
        # samples before the first active pool continue the last frozen pool's decay
        first = work_i[0, _START] if cnt > 0 else n_t
        c = roi_f[r, _FC]
        q = 0
        for _ in range(n_final, first):
            c *= gamma
            spikes[r, q] = 0.0
            calcium[r, q] = c
            q += 1
        before = lower
        for i in range(cnt):
            v = work_f[i, _V]
            if v == math.inf:
                v = before
            spikes[r, q] = v - before if work_i[i, _START] > 0 else 0.0
            c = v
            for j in range(work_i[i, _LEN]):
                if j > 0:
                    c *= gamma
                    spikes[r, q] = 0.0
                calcium[r, q] = c
                q += 1
            before = c * gamma
    return width


# ---------------------------------------------------------------------------
# one frame
# ---------------------------------------------------------------------------


@jit
def _after_staging(
    ring, mom, pending, mscratch, plan_i, plan_f, hist, latest,
    params, pools_f, pools_i, roi_f, roi_i, counters, run_ar,
):  # pragma: no cover - compiled  # fmt: skip
    B = ring.shape[1]
    t = counters[_FRAMES]
    slot = t % B
    counters[_FRAMES] = t + 1
    is_float = counters[_IS_FLOAT]
    _fold_block(ring, mom, pending, mscratch, t % B, t, counters[_BLOCK], is_float)
    x = ring[counters[_SIGNAL], slot]
    partial = extract_frame(
        x, plan_i[0], plan_i[1], plan_f[0], plan_f[1], plan_f[2], latest, is_float
    )
    counters[_PARTIAL] = partial
    H = hist.shape[1]
    row = hist[_RAW, t % H]
    for r in range(latest.shape[0]):
        row[r] = latest[r]
    if run_ar and counters[_AR_READY] and counters[_AR_SAMPLES] == t:
        _ar_step(latest, params, pools_f, pools_i, roi_f, roi_i, hist, counters)


@jit
def update_2d(
    frame, ring, mom, pending, mscratch, plan_i, plan_f, hist, latest,
    params, pools_f, pools_i, roi_f, roi_i, counters, run_ar,
):  # pragma: no cover - compiled  # fmt: skip
    """Process one ``(Y, X)`` frame: stage, fold a moment block, extract, advance AR(1).

    Parameters
    ----------
    frame : numpy.ndarray, shape (Y, X)
        The frame, read; any memory layout, in the dtype of ``ring`` (one of
        :data:`sima_fast.online.DTYPES`). ``C = 1`` in the arrays below.
    ring : numpy.ndarray, shape (C, B, P)
        Ring of the last ``B`` frames, in the frames' dtype, flattened to
        ``P = Z·Y·X`` pixels per channel. This frame, number ``t`` (the
        value of ``counters["frames"]`` on entry), is copied to
        ``ring[:, t % B]``, where the moments and the extraction read it.
    mom : numpy.ndarray of float64, shape (5, C, P)
        Moment state (count, mean, ``M2``, ``M3``, ``M4`` per channel and
        pixel), updated in place for pixel block ``t % B``: see
        :func:`flush_moments`.
    pending : numpy.ndarray of int64, shape (B,)
        First frame not yet folded into each pixel block, updated in place.
    mscratch : numpy.ndarray of float64, shape (6, piece)
        Workspace of the moments, overwritten.
    plan_i : tuple of numpy.ndarray of int64
        ``(chunk_ptr, chunk_start)`` of :func:`chunk_runs`, read.
    plan_f : tuple of numpy.ndarray of float64
        ``(a, w2, total)``: the chunk weights of :func:`chunk_runs` and
        ``Σ_all w_p²`` per ROI, read (see :func:`extract_frame`).
    hist : numpy.ndarray of float32, shape (3, H, n_rois)
        History rings, row ``t % H`` for frame ``t``: this frame's ROI values
        are written to ``hist[0]``; when the frame is fed to the solver,
        ``hist[1]`` and ``hist[2]`` receive the spikes and calcium of the
        sample that becomes final.
    latest : numpy.ndarray of float32, shape (n_rois,)
        This frame's ROI values, written (signal channel only).
    params, pools_f, pools_i, roi_f, roi_i : numpy.ndarray
        The AR(1) parameters (read) and solver state (updated in place when
        the frame is fed to the solver), as in :func:`ar_backlog`.
    counters : numpy.ndarray of int64, shape (len(COUNTERS),)
        ``frames`` is incremented, ``partial`` set to the result of
        :func:`extract_frame` and ``ar_samples`` advanced when the frame is
        fed to the solver; ``signal_channel``, ``lag``, ``block``,
        ``is_float`` and ``ar_ready`` are read.
    run_ar : bool
        Feed the frame to the AR(1) solver (when its parameters are set and
        it has seen every earlier frame). False when the caller re-extracts
        the frame first and then calls :func:`ar_step`.
    """
    _stage_2d(frame, ring, counters[_FRAMES] % ring.shape[1])
    _after_staging(
        ring, mom, pending, mscratch, plan_i, plan_f, hist, latest,
        params, pools_f, pools_i, roi_f, roi_i, counters, run_ar,
    )  # fmt: skip


@jit
def update_3d(
    frame, ring, mom, pending, mscratch, plan_i, plan_f, hist, latest,
    params, pools_f, pools_i, roi_f, roi_i, counters, run_ar,
):  # pragma: no cover - compiled  # fmt: skip
    """Process one ``(Z, Y, X)`` frame, as :func:`update_2d` does a ``(Y, X)`` one.

    Parameters
    ----------
    frame : numpy.ndarray, shape (Z, Y, X)
        The frame, read; any memory layout, in the dtype of ``ring``.
        ``C = 1`` in the arrays below.
    ring : numpy.ndarray, shape (C, B, P)
        Ring of the last ``B`` frames, in the frames' dtype, flattened to
        ``P = Z·Y·X`` pixels per channel. This frame, number ``t`` (the
        value of ``counters["frames"]`` on entry), is copied to
        ``ring[:, t % B]``, where the moments and the extraction read it.
    mom : numpy.ndarray of float64, shape (5, C, P)
        Moment state (count, mean, ``M2``, ``M3``, ``M4`` per channel and
        pixel), updated in place for pixel block ``t % B``: see
        :func:`flush_moments`.
    pending : numpy.ndarray of int64, shape (B,)
        First frame not yet folded into each pixel block, updated in place.
    mscratch : numpy.ndarray of float64, shape (6, piece)
        Workspace of the moments, overwritten.
    plan_i : tuple of numpy.ndarray of int64
        ``(chunk_ptr, chunk_start)`` of :func:`chunk_runs`, read.
    plan_f : tuple of numpy.ndarray of float64
        ``(a, w2, total)``: the chunk weights of :func:`chunk_runs` and
        ``Σ_all w_p²`` per ROI, read (see :func:`extract_frame`).
    hist : numpy.ndarray of float32, shape (3, H, n_rois)
        History rings, row ``t % H`` for frame ``t``: this frame's ROI values
        are written to ``hist[0]``; when the frame is fed to the solver,
        ``hist[1]`` and ``hist[2]`` receive the spikes and calcium of the
        sample that becomes final.
    latest : numpy.ndarray of float32, shape (n_rois,)
        This frame's ROI values, written (signal channel only).
    params, pools_f, pools_i, roi_f, roi_i : numpy.ndarray
        The AR(1) parameters (read) and solver state (updated in place when
        the frame is fed to the solver), as in :func:`ar_backlog`.
    counters : numpy.ndarray of int64, shape (len(COUNTERS),)
        ``frames`` is incremented, ``partial`` set to the result of
        :func:`extract_frame` and ``ar_samples`` advanced when the frame is
        fed to the solver; ``signal_channel``, ``lag``, ``block``,
        ``is_float`` and ``ar_ready`` are read.
    run_ar : bool
        Feed the frame to the AR(1) solver (when its parameters are set and
        it has seen every earlier frame). False when the caller re-extracts
        the frame first and then calls :func:`ar_step`.
    """
    _stage_3d(frame, ring, counters[_FRAMES] % ring.shape[1])
    _after_staging(
        ring, mom, pending, mscratch, plan_i, plan_f, hist, latest,
        params, pools_f, pools_i, roi_f, roi_i, counters, run_ar,
    )  # fmt: skip


@jit
def update_4d(
    frame, ring, mom, pending, mscratch, plan_i, plan_f, hist, latest,
    params, pools_f, pools_i, roi_f, roi_i, counters, run_ar,
):  # pragma: no cover - compiled  # fmt: skip
    """Process one ``(Z, Y, X, C)`` frame, as :func:`update_2d` does a ``(Y, X)`` one.

    Every channel is staged and folded into the moments; the ROIs are
    extracted from the signal channel (``counters["signal_channel"]``).

    Parameters
    ----------
    frame : numpy.ndarray, shape (Z, Y, X, C)
        The frame, read; any memory layout, in the dtype of ``ring``.
    ring : numpy.ndarray, shape (C, B, P)
        Ring of the last ``B`` frames, in the frames' dtype, flattened to
        ``P = Z·Y·X`` pixels per channel. This frame, number ``t`` (the
        value of ``counters["frames"]`` on entry), is copied to
        ``ring[:, t % B]``, where the moments and the extraction read it.
    mom : numpy.ndarray of float64, shape (5, C, P)
        Moment state (count, mean, ``M2``, ``M3``, ``M4`` per channel and
        pixel), updated in place for pixel block ``t % B``: see
        :func:`flush_moments`.
    pending : numpy.ndarray of int64, shape (B,)
        First frame not yet folded into each pixel block, updated in place.
    mscratch : numpy.ndarray of float64, shape (6, piece)
        Workspace of the moments, overwritten.
    plan_i : tuple of numpy.ndarray of int64
        ``(chunk_ptr, chunk_start)`` of :func:`chunk_runs`, read.
    plan_f : tuple of numpy.ndarray of float64
        ``(a, w2, total)``: the chunk weights of :func:`chunk_runs` and
        ``Σ_all w_p²`` per ROI, read (see :func:`extract_frame`).
    hist : numpy.ndarray of float32, shape (3, H, n_rois)
        History rings, row ``t % H`` for frame ``t``: this frame's ROI values
        are written to ``hist[0]``; when the frame is fed to the solver,
        ``hist[1]`` and ``hist[2]`` receive the spikes and calcium of the
        sample that becomes final.
    latest : numpy.ndarray of float32, shape (n_rois,)
        This frame's ROI values, written (signal channel only).
    params, pools_f, pools_i, roi_f, roi_i : numpy.ndarray
        The AR(1) parameters (read) and solver state (updated in place when
        the frame is fed to the solver), as in :func:`ar_backlog`.
    counters : numpy.ndarray of int64, shape (len(COUNTERS),)
        ``frames`` is incremented, ``partial`` set to the result of
        :func:`extract_frame` and ``ar_samples`` advanced when the frame is
        fed to the solver; ``signal_channel``, ``lag``, ``block``,
        ``is_float`` and ``ar_ready`` are read.
    run_ar : bool
        Feed the frame to the AR(1) solver (when its parameters are set and
        it has seen every earlier frame). False when the caller re-extracts
        the frame first and then calls :func:`ar_step`.
    """
    _stage_4d(frame, ring, counters[_FRAMES] % ring.shape[1])
    _after_staging(
        ring, mom, pending, mscratch, plan_i, plan_f, hist, latest,
        params, pools_f, pools_i, roi_f, roi_i, counters, run_ar,
    )  # fmt: skip


@jit
def ar_step(params, pools_f, pools_i, roi_f, roi_i, hist, counters):  # pragma: no cover
    """Feed the newest extracted frame (raw ring) to the solver if it is next in line.

    For a caller that ran the per-frame kernel with ``run_ar=False`` (and may
    then have rewritten the frame's values in ``hist[0]``). Nothing happens
    until the parameters are set (``ar_ready``), nor while older frames wait
    for :func:`ar_backlog`.

    Parameters
    ----------
    params : numpy.ndarray of float64, shape (n_rois, 3)
        Read: decay ``γ``, penalty ``λ`` and baseline ``b`` of every ROI
        (``AR_FIELDS["params"]``). An ROI with a NaN among them gets NaN
        spikes and calcium.
    pools_f : numpy.ndarray of float64, shape (n_rois, lag + 1, 4)
        Updated in place: the active pools of every ROI, a ring starting at
        ``roi_i[r, 0]``: value, sum ``N``, sum ``A`` and ``γ^length``
        (``AR_FIELDS["pools_f"]``).
    pools_i : numpy.ndarray of int64, shape (n_rois, lag + 1, 2)
        Updated in place: first sample and length of each active pool
        (``AR_FIELDS["pools_i"]``).
    roi_f : numpy.ndarray of float64, shape (n_rois, 3)
        Updated in place, per ROI: lower bound of the first active pool, value of
        the last frozen pool and calcium of the last final sample
        (``AR_FIELDS["roi_f"]``).
    roi_i : numpy.ndarray of int64, shape (n_rois, 3)
        Updated in place, per ROI: ring index of the first active pool, number of
        active pools and first sample of the last frozen pool, ``-1`` before
        any (``AR_FIELDS["roi_i"]``).
    hist : numpy.ndarray of float32, shape (3, H, n_rois)
        History rings as in :func:`ar_backlog`: the newest row of ``hist[0]``
        is read, ``hist[1]`` and ``hist[2]`` receive the sample that becomes
        final.
    counters : numpy.ndarray of int64, shape (len(COUNTERS),)
        Reads ``frames``, ``ar_ready`` and ``lag``; advances ``ar_samples``.
    """
    t = counters[_FRAMES] - 1
    if counters[_AR_READY] and counters[_AR_SAMPLES] == t:
        row = hist[_RAW, t % hist.shape[1]]
        _ar_step(row, params, pools_f, pools_i, roi_f, roi_i, hist, counters)


# ---------------------------------------------------------------------------
# per-frame rigid registration (OnlineRegistrar)
# ---------------------------------------------------------------------------
#
# One plane of a frame is registered in five steps, the FFTs (scipy.fft) between
# the kernels: ``taper_plane`` (the frame's plane, its weighted mean removed,
# times a separable edge taper), the forward real FFT, ``whiten_cross`` (the
# frame's spectrum whitened and multiplied by the reference's prepared
# spectrum), the inverse real FFT (the phase correlation map) and
# ``correlation_peak`` (the best integer peak within the allowed displacement,
# refined to subpixel). ``shift_planes`` then resamples every plane and channel.


def taper_window(n: int, width: float) -> np.ndarray:
    """Return the 1-D edge taper of length ``n``: a raised cosine over ``width`` pixels.

    Pixel ``i`` at distance ``e = min(i, n - 1 - i)`` from the nearest edge
    gets ``0.5 - 0.5 cos(π (e + 0.5) / width)`` when ``e + 0.5 < width`` and
    1 otherwise (so every weight is positive); ``width`` up to 0.5 gives ones.

    Parameters
    ----------
    n : int
        Length (>= 1).
    width : float
        Roll-off width in pixels (>= 0).

    Returns
    -------
    numpy.ndarray of float32, shape (n,)
        The weights, in ``(0, 1]``.
    """
    edge = np.minimum(np.arange(n), n - 1 - np.arange(n)).astype(np.float64)
    w = np.ones(n)
    if width > 0:
        inside = edge + 0.5 < width
        w[inside] = 0.5 - 0.5 * np.cos(np.pi * (edge[inside] + 0.5) / width)
    return w.astype(np.float32)


def gaussian_spectrum(shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Return the half spectrum (as from ``rfft2``) of a unit-sum Gaussian of std ``sigma`` px.

    ``exp(-2 π² σ² (fy² + fx²))`` at the frequencies ``fy = fftfreq(Y)``,
    ``fx = rfftfreq(X)`` (cycles per pixel); multiplying a spectrum by it
    smooths the image by a Gaussian (periodically), ``sigma`` 0 gives ones.

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)`` of the image.
    sigma : float
        Standard deviation in pixels (>= 0).

    Returns
    -------
    numpy.ndarray of float64, shape (Y, X // 2 + 1)
        The weights.
    """
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    return np.exp(-2.0 * np.pi**2 * sigma**2 * (fy * fy + fx * fx))


def periodic_component(image: np.ndarray) -> np.ndarray:
    """Return the periodic component of an image (periodic plus smooth decomposition).

    ``image = p + s`` where ``s`` is smooth (harmonic inside, set by the jumps
    across opposite edges) and ``p`` has no discontinuity when the image is
    repeated periodically, so its spectrum has none of the cross-shaped
    artefacts of the edges (Moisan 2011). With ``b`` the image of the jumps
    (``b[0, x] = u[Y-1, x] - u[0, x]``, ``b[Y-1, x] = -b[0, x]``, the same
    along columns, summed at the corners), ``ŝ(q, r) = b̂(q, r) / (2 cos(2πq/Y)
    + 2 cos(2πr/X) - 4)`` with ``ŝ(0, 0) = 0``. Computed once per reference,
    not per frame.

    Parameters
    ----------
    image : numpy.ndarray of float64, shape (Y, X)
        A finite image.

    Returns
    -------
    numpy.ndarray of float64, shape (Y, X)
        ``p = image - s`` (same mean as ``image``).

    References
    ----------
    L. Moisan, "Periodic plus smooth image decomposition", J. Math. Imaging
    Vis. 39, 161-179 (2011), https://doi.org/10.1007/s10851-010-0227-1.
    """
    u = np.asarray(image, dtype=np.float64)
    ny, nx = u.shape
    b = np.zeros_like(u)
    b[0, :] += u[-1, :] - u[0, :]
    b[-1, :] += u[0, :] - u[-1, :]
    b[:, 0] += u[:, -1] - u[:, 0]
    b[:, -1] += u[:, 0] - u[:, -1]
    q = np.arange(ny)[:, None]
    r = np.arange(nx)[None, :]
    den = 2.0 * np.cos(2.0 * np.pi * q / ny) + 2.0 * np.cos(2.0 * np.pi * r / nx) - 4.0
    den[0, 0] = 1.0
    s_hat = np.fft.fft2(b) / den
    s_hat[0, 0] = 0.0
    return u - np.fft.ifft2(s_hat).real


@jit(fastmath=FASTMATH)
def taper_image(plane, wy, wx, out):  # pragma: no cover - compiled
    """Write ``(plane - m) · wy[y] · wx[x]`` into ``out``; return ``m`` (see :func:`taper_plane`).

    Parameters
    ----------
    plane : numpy.ndarray, shape (Y, X)
        The image, any numeric dtype and memory layout; read only.
    wy, wx : numpy.ndarray of float32, shapes (Y,) and (X,)
        The separable taper (:func:`taper_window`).
    out : numpy.ndarray of float32, shape (Y, X)
        Output, overwritten.

    Returns
    -------
    float
        The weighted mean ``m`` of the finite pixels.
    """
    ny, nx = out.shape
    # m = v0 + Σ w (x - v0) / Σ w, around the first finite value v0: exact (so the
    # output exactly 0) for a constant plane, and better conditioned
    v0 = np.nan
    for y in range(ny):
        for x in range(nx):
            v = np.float64(plane[y, x])
            if v - v == 0.0:
                v0 = v
                break
        if v0 - v0 == 0.0:
            break
    if not v0 - v0 == 0.0:  # no finite pixel
        for y in range(ny):
            for x in range(nx):
                out[y, x] = 0.0
        return 0.0
    sw = 0.0
    swd = 0.0
    for y in range(ny):
        wyy = np.float64(wy[y])
        for x in range(nx):
            v = np.float64(plane[y, x])
            if v - v == 0.0:
                w = wyy * np.float64(wx[x])
                sw += w
                swd += w * (v - v0)
    m = v0 + swd / sw
    for y in range(ny):
        wyy = np.float64(wy[y])
        for x in range(nx):
            v = np.float64(plane[y, x])
            if v - v == 0.0:
                out[y, x] = (v - m) * wyy * np.float64(wx[x])
            else:
                out[y, x] = 0.0
    return m


@jit(fastmath=FASTMATH)
def taper_plane(frame, z, c, wy, wx, out):  # pragma: no cover - compiled
    """Write ``(frame[z, :, :, c] - m) · wy[y] · wx[x]`` into ``out``; return ``m``.

    ``m = Σ w x / Σ w`` over the finite pixels (``w = wy[y] wx[x] > 0``), so
    the tapered plane sums to zero; missing (non-finite) pixels are written
    as 0, i.e. as the mean. A plane without a finite pixel (``m`` 0) or
    whose finite pixels are all equal (``m`` that value, exactly) is written
    as exact zeros.

    Parameters
    ----------
    frame : numpy.ndarray, shape (Z, Y, X, C)
        The frame, any numeric dtype and memory layout; read only.
    z, c : int
        Plane and channel.
    wy, wx : numpy.ndarray of float32, shapes (Y,) and (X,)
        The separable taper (:func:`taper_window`).
    out : numpy.ndarray of float32, shape (Y, X)
        Output, overwritten.

    Returns
    -------
    float
        ``m``.
    """
    return taper_image(frame[z, :, :, c], wy, wx, out)


@jit(fastmath=FASTMATH)
def whiten_cross(spectrum, reference):  # pragma: no cover - compiled
    """Whiten ``spectrum`` and multiply it by ``reference``, in place.

    ``S ← S / |S| · R`` (0 where ``|S|`` is 0): the cross-power spectrum of
    phase correlation when ``R`` is the reference's conjugate spectrum,
    whitened and weighted (see ``OnlineRegistrar``).

    Parameters
    ----------
    spectrum : numpy.ndarray of complex64, shape (Y, K)
        The frame's half spectrum; overwritten.
    reference : numpy.ndarray of complex64, shape (Y, K)
        The prepared reference spectrum.
    """
    ny, nk = spectrum.shape
    for y in range(ny):
        for k in range(nk):
            s = spectrum[y, k]
            re = s.real
            im = s.imag
            mag2 = re * re + im * im
            if mag2 > 0.0:
                inv = np.float32(1.0) / np.float32(math.sqrt(mag2))
                r = reference[y, k]
                spectrum[y, k] = complex(
                    (re * r.real - im * r.imag) * inv, (re * r.imag + im * r.real) * inv
                )
            else:
                spectrum[y, k] = 0.0


@jit(inline="always")
def _vertex_offset(a, b, d):  # pragma: no cover - compiled
    """Return the subpixel offset of the peak through ``(-1, a), (0, b), (1, d)``.

    A parabola through the logarithms (exact for a sampled Gaussian) when the
    three values are positive, else through the values; 0 when neither has a
    maximum.

    Returns
    -------
    float
        The vertex's abscissa, clipped to ``[-0.5, 0.5]``.
    """
    off = 0.0
    if a > 0.0 and b > 0.0 and d > 0.0:
        la = math.log(a)
        lb = math.log(b)
        ld = math.log(d)
        den = la - 2.0 * lb + ld
        if den < 0.0:
            off = 0.5 * (la - ld) / den
    else:
        den = a - 2.0 * b + d
        if den < 0.0:
            off = 0.5 * (a - d) / den
    return min(0.5, max(-0.5, off))


@jit
def correlation_peak(corr, max_y, max_x, row0):  # pragma: no cover - compiled
    """Locate the maximum of a periodic correlation map within ``±(max_y, max_x)``, subpixel.

    The integer maximum is searched over the offsets ``-max_y <= dy <= max_y``,
    ``-max_x <= dx <= max_x`` (row ``(dy + row0) mod R``, column ``dx mod X``;
    the first in row-major order of the offsets wins a tie), then refined
    along each axis by a parabola through the logarithms of the maximum and
    its two neighbours (:func:`_vertex_offset`) and clipped to the window.

    Parameters
    ----------
    corr : numpy.ndarray of float32 or float64, shape (R, X)
        The correlation map: all of it (``R = Y``, ``row0 = 0``, offset 0 at
        index ``(0, 0)``), or only its rows ``-row0 .. row0`` in order
        (``R = 2 row0 + 1``, ``row0 >= max_y + 1``).
    max_y, max_x : int
        Largest offsets searched, ``0 <= max_y < R``, ``0 <= max_x < X``.
    row0 : int
        Row of offset ``dy = 0``.

    Returns
    -------
    tuple of float
        ``(py, px, height)``: the peak's offset and the map's value at the
        integer maximum (``py``, ``px`` NaN when no value in the window is
        finite and positive).
    """
    ny, nx = corr.shape
    best = -np.inf
    by = 0
    bx = 0
    for dy in range(-max_y, max_y + 1):
        row = (dy + row0) % ny
        for dx in range(-max_x, max_x + 1):
            v = np.float64(corr[row, dx % nx])
            if v > best:
                best = v
                by = dy
                bx = dx
    if not (best > 0.0 and best < np.inf):
        return np.nan, np.nan, best
    r = (by + row0) % ny
    q = bx % nx
    oy = _vertex_offset(np.float64(corr[(r - 1) % ny, q]), best, np.float64(corr[(r + 1) % ny, q]))
    ox = _vertex_offset(
        np.float64(corr[r, (bx - 1) % nx]), best, np.float64(corr[r, (bx + 1) % nx])
    )
    py = min(np.float64(max_y), max(-np.float64(max_y), by + oy))
    px = min(np.float64(max_x), max(-np.float64(max_x), bx + ox))
    return py, px, best


#: Shifts within this many pixels of a whole number are taken as whole (exact copies): a
#: weight of 1e-12 would otherwise let a NaN neighbour into the sample.
SNAP = 1e-9


@jit(inline="always")
def _axis_plan(d, n):  # pragma: no cover - compiled
    """Plan the sampling of ``i - d`` along an axis of ``n`` pixels (finite ``|d| < n``).

    Returns
    -------
    tuple
        ``(i0, f, lo, hi)``: the source of output index ``i`` is
        ``i + i0 + f`` (``0 <= f < 1``; ``f`` within :data:`SNAP` of 0 or 1
        snapped to 0), defined for ``lo <= i <= hi``.
    """
    s = -d
    i0 = math.floor(s)
    f = s - i0
    if f < SNAP:
        f = 0.0
    elif f > 1.0 - SNAP:
        i0 += 1
        f = 0.0
    lo = max(0, -i0)
    hi = min(n - 1, n - 1 - i0 - (1 if f > 0.0 else 0))
    return i0, f, lo, hi


@jit(fastmath=FASTMATH)
def _translate_plane(src, dst, dy, dx, cval):  # pragma: no cover - compiled
    """``dst[y, x] = src(y - dy, x - dx)`` (bilinear), ``cval`` where undefined.

    The sampling rules of :func:`sima_fast.kernels.warp.shift_frame` (only
    the taps of nonzero weight are read), with the weights of a translation
    computed once: the rows of taps are then plain loops that vectorise.
    """
    ny, nx = dst.shape
    if not (abs(dy) < ny and abs(dx) < nx):  # NaN, or nothing lands
        for y in range(ny):
            for x in range(nx):
                dst[y, x] = cval
        return
    iy, fy, ylo, yhi = _axis_plan(dy, ny)
    ix, fx, xlo, xhi = _axis_plan(dx, nx)
    w00 = (1.0 - fy) * (1.0 - fx)
    w01 = (1.0 - fy) * fx
    w10 = fy * (1.0 - fx)
    w11 = fy * fx
    for y in range(ny):
        if y < ylo or y > yhi:
            for x in range(nx):
                dst[y, x] = cval
            continue
        for x in range(xlo):
            dst[y, x] = cval
        for x in range(xhi + 1, nx):
            dst[y, x] = cval
        r = y + iy
        if fy > 0.0 and fx > 0.0:
            for x in range(xlo, xhi + 1):
                q = x + ix
                dst[y, x] = (
                    w00 * np.float64(src[r, q])
                    + w01 * np.float64(src[r, q + 1])
                    + w10 * np.float64(src[r + 1, q])
                    + w11 * np.float64(src[r + 1, q + 1])
                )
        elif fy > 0.0:
            for x in range(xlo, xhi + 1):
                q = x + ix
                dst[y, x] = (1.0 - fy) * np.float64(src[r, q]) + fy * np.float64(src[r + 1, q])
        elif fx > 0.0:
            for x in range(xlo, xhi + 1):
                q = x + ix
                dst[y, x] = (1.0 - fx) * np.float64(src[r, q]) + fx * np.float64(src[r, q + 1])
        else:
            for x in range(xlo, xhi + 1):
                dst[y, x] = src[r, x + ix]


@jit
def shift_planes(frame, shifts, out, cval):  # pragma: no cover - compiled
    """Translate every plane of a frame by its own shift (bilinear; all channels).

    ``out[z, y, x, c] = frame(z, y - dy_z, x - dx_z, c)`` with the bilinear
    sampling of :func:`sima_fast.kernels.warp.shift_frame` (same values, to
    rounding: only the taps of nonzero weight are read, a whole-pixel shift
    copies; a shift within :data:`SNAP` of a whole pixel counts as whole);
    pixels whose source is outside the plane, and every pixel of a plane
    whose shift is NaN, get ``cval``. The weights of a translation are
    the same for every pixel, so they are computed once per plane and the
    loops vectorise (about 2.5 times faster than ``shift_frame`` for one
    channel).

    Parameters
    ----------
    frame : numpy.ndarray, shape (Z, Y, X, C)
        Input frame, any numeric dtype and layout.
    shifts : numpy.ndarray of float64, shape (Z, 2)
        ``(dy, dx)`` per plane.
    out : numpy.ndarray of float32 or float64, shape (Z, Y, X, C)
        Output, overwritten; must not share memory with ``frame``.
    cval : float
        Fill value.
    """
    for z in range(frame.shape[0]):
        for c in range(frame.shape[3]):
            _translate_plane(frame[z, :, :, c], out[z, :, :, c], shifts[z, 0], shifts[z, 1], cval)


# ---------------------------------------------------------------------------
# the same registration, a block of frames at a time (sima_fast.registration)
# ---------------------------------------------------------------------------


def reference_spectrum(plane: np.ndarray, sigma: float) -> tuple[np.ndarray, float]:
    """Prepare a reference plane for :func:`whiten_cross`: its whitened, smoothed spectrum.

    The plane is made periodic (:func:`periodic_component`: its edge jumps
    removed, so it needs no taper, and a taper shared by both images would
    pull the estimates towards zero shift), its mean removed, transformed,
    whitened, conjugated and multiplied by :func:`gaussian_spectrum` (the DC
    term set to 0: it carries no position).

    Parameters
    ----------
    plane : numpy.ndarray, shape (Y, X)
        The reference plane, finite (fill unobserved pixels first).
    sigma : float
        Width (px) of the Gaussian smoothing of the correlation map.

    Returns
    -------
    spectrum : numpy.ndarray of complex64, shape (Y, X // 2 + 1)
        The prepared spectrum.
    ideal : float
        The height of the correlation peak of a perfect match (the map of
        the reference with itself at zero shift), to scale peaks by.
    """
    import scipy.fft

    ny, nx = plane.shape
    gauss = gaussian_spectrum((ny, nx), sigma)
    gauss[0, 0] = 0.0
    periodic = periodic_component(np.asarray(plane, dtype=np.float64))
    spec = scipy.fft.rfft2(periodic - periodic.mean())
    mag = np.abs(spec)
    white = np.divide(np.conj(spec), mag, out=np.zeros_like(spec), where=mag > 0)
    out = (white * gauss).astype(np.complex64)
    ideal = float(scipy.fft.irfft2(np.abs(out), s=(ny, nx))[0, 0])
    return out, ideal


@jit(parallel=True, fastmath=FASTMATH)
def taper_images(images, wy, wx, out):  # pragma: no cover - compiled
    """:func:`taper_image` of every image of a block, in parallel.

    Parameters
    ----------
    images : numpy.ndarray, shape (n, Y, X)
        The images, any numeric dtype and memory layout; read only.
    wy, wx : numpy.ndarray of float32, shapes (Y,) and (X,)
        The separable taper.
    out : numpy.ndarray of float32, shape (n, Y, X)
        Output, overwritten.

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    for i in prange(images.shape[0]):
        taper_image(images[i], wy, wx, out[i])
    return out


@jit(parallel=True, fastmath=FASTMATH)
def whiten_cross_images(spectra, reference):  # pragma: no cover - compiled
    """:func:`whiten_cross` of every spectrum of a block with one reference, in parallel.

    Parameters
    ----------
    spectra : numpy.ndarray of complex64, shape (n, Y, K)
        The images' half spectra; overwritten.
    reference : numpy.ndarray of complex64, shape (Y, K)
        The prepared reference spectrum (:func:`reference_spectrum`).
    """
    for i in prange(spectra.shape[0]):
        whiten_cross(spectra[i], reference)


@jit(parallel=True)
def correlation_peaks(corr, max_y, max_x, row0, out):  # pragma: no cover - compiled
    """:func:`correlation_peak` of every map of a block, in parallel.

    Parameters
    ----------
    corr : numpy.ndarray of float32 or float64, shape (n, R, X)
        The correlation maps (all rows, or rows ``-row0 .. row0``).
    max_y, max_x : int
        Largest offsets searched.
    row0 : int
        Row of offset 0.
    out : numpy.ndarray of float64, shape (n, 3)
        Filled with ``(py, px, height)`` per map.

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    for i in prange(corr.shape[0]):
        py, px, height = correlation_peak(corr[i], max_y, max_x, row0)
        out[i, 0] = py
        out[i, 1] = px
        out[i, 2] = height
    return out


@jit(parallel=True)
def shift_images(images, shifts, out, cval):  # pragma: no cover - compiled
    """Translate every image of a block by its own shift (bilinear), in parallel.

    ``out[i, y, x] = images(i, y - dy_i, x - dx_i)`` with the sampling of
    :func:`shift_planes`; ``cval`` where no source pixel lands or the shift
    is NaN.

    Parameters
    ----------
    images : numpy.ndarray, shape (n, Y, X)
        Input images, any numeric dtype and layout.
    shifts : numpy.ndarray of float64, shape (n, 2)
        ``(dy, dx)`` per image.
    out : numpy.ndarray of float32 or float64, shape (n, Y, X)
        Output, overwritten; must not share memory with ``images``.
    cval : float
        Fill value.

    Returns
    -------
    numpy.ndarray
        ``out``.
    """
    for i in prange(images.shape[0]):
        _translate_plane(images[i], out[i], shifts[i, 0], shifts[i, 1], cval)
    return out

"""Kernels of the row-wise hidden Markov model of line-scan motion.

The hidden state of one *unit* (a group of consecutive scan rows, in raster
order: rows of plane 0, then plane 1, ..., then the next frame) is its
integer displacement ``(dy, dx)``. States live on a grid of ``Ny × Nx``
displacements; state ``s = iy * Nx + ix`` is ``(dy_min + iy, dx_min + ix)``.
Under state ``(iy, ix)`` the observed pixel ``(z, y, x)`` of a frame is a
sample of the reference *canvas* pixel ``(z, y + iy, x + ix)``: the canvas is
the reference image padded so that every state's window lies inside it
(shape ``(Z, Y + Ny - 1, X + Nx - 1)``).

The emission log-likelihood of a row is Poisson in photon units (counts
``c``, canvas rates ``λ``), ``Σ_x c[x] log λ[x] - λ[x]`` (the ``log c!``
term is the same for every state and dropped); NaN pixels of the row take no
part. The ``Σ λ`` term is read from per-row prefix sums of the canvas, so a
row without NaN costs one dot product per state.

Decoding is a beam Viterbi recursion: the ``K`` best states of a unit are
expanded by a table of steps (a discretised Gaussian random walk), the best
predecessor of each reachable state is kept, the unit's emission is added and
the ``K`` best survive. For every unit the kernel records the surviving state
indices and, per survivor, the slot of its predecessor (int16), so that the
path can be traced back without keeping any likelihood table.

The ``*3d`` kernels are the same model with displacements in three
dimensions ``(dz, dy, dx)``: a state grid of ``Nz × Ny × Nx`` (state
``s = (iz * Ny + iy) * Nx + ix``) and a canvas of shape
``(Z + Nz - 1, Y + Ny - 1, X + Nx - 1)``, observed row ``(z, y)`` under state
``(iz, iy, ix)`` being compared with canvas row ``(z + iz, y + iy)`` from
column ``ix``. They are the one implementation: the 2-D kernels
(:func:`unit_loglik`, :func:`beam_viterbi`, :func:`accumulate_rows`) call them
with a single plane offset (``Nz = 1``, ``iz = 0``), which makes the 3-D
canvas and state numbering the 2-D ones. :func:`coalescence` and
:func:`backtrace` serve both.

Every work array is preallocated by the caller and reused from chunk to
chunk.
"""

from __future__ import annotations

import numpy as np

from sima_fast.kernels._jit import FASTMATH, jit

__all__ = [
    "accumulate_rows",
    "accumulate_rows3d",
    "backtrace",
    "beam_viterbi",
    "beam_viterbi3d",
    "coalescence",
    "mark_nan_rows",
    "row_prefix_sums",
    "unit_loglik",
    "unit_loglik3d",
]


@jit
def row_prefix_sums(lam, out):  # pragma: no cover - compiled
    """Prefix sums of the canvas rates along x.

    Parameters
    ----------
    lam : ndarray, float64, shape (Z, H, W)
        Canvas rates (photon units).
    out : ndarray, float64, shape (Z, H, W + 1)
        Filled with ``out[z, h, w] = Σ_{x < w} lam[z, h, x]``.
    """
    nz, nh, nw = lam.shape
    for z in range(nz):
        for h in range(nh):
            acc = 0.0
            out[z, h, 0] = 0.0
            for w in range(nw):
                acc += lam[z, h, w]
                out[z, h, w + 1] = acc


@jit
def mark_nan_rows(frames, out):  # pragma: no cover - compiled
    """Flag the raster rows of a chunk that hold a NaN.

    Parameters
    ----------
    frames : ndarray, float32 or float64, shape (n, Z, Y, X)
        The chunk.
    out : ndarray of bool, shape (>= n * Z * Y,)
        ``out[t * Z * Y + z * Y + y]`` is set to whether row ``y`` of plane
        ``z`` of frame ``t`` holds a NaN.
    """
    n, nz, ny, nx = frames.shape
    for t in range(n):
        for z in range(nz):
            for y in range(ny):
                flag = False
                for x in range(nx):
                    v = frames[t, z, y, x]
                    if v != v:
                        flag = True
                        break
                out[(t * nz + z) * ny + y] = flag


@jit(inline="always", fastmath=FASTMATH)
def _row_loglik(
    frames, t, z, y, nan_row, iz, iy, ix, logref, lam, lamcum
):  # pragma: no cover - compiled
    """Poisson log-likelihood of one observed row under state (iz, iy, ix)."""
    nx = frames.shape[3]
    p = z + iz
    h = y + iy
    acc = 0.0
    if nan_row:
        for x in range(nx):
            c = frames[t, z, y, x]
            if c == c:
                acc += c * logref[p, h, ix + x] - lam[p, h, ix + x]
        return acc
    for x in range(nx):
        acc += frames[t, z, y, x] * logref[p, h, ix + x]
    return acc - (lamcum[p, h, ix + nx] - lamcum[p, h, ix])


@jit(inline="always")
def unit_loglik3d(
    frames, row0, nrows, nan_rows, iz, iy, ix, logref, lam, lamcum
):  # pragma: no cover - compiled
    """Emission log-likelihood of one unit under a three-dimensional state.

    Parameters
    ----------
    frames : ndarray, float32, shape (n, Z, Y, X)
        Observed counts of the chunk (NaN allowed).
    row0, nrows : int
        First raster row of the unit (``t * Z * Y + z * Y + y`` within the
        chunk) and its number of rows.
    nan_rows : ndarray of bool, shape (n * Z * Y,)
        Rows holding at least one NaN.
    iz, iy, ix : int
        State grid indices.
    logref, lam : ndarray, float64, shape (P, H, W)
        Log rates and rates of the canvas (``P = Z + Nz - 1``).
    lamcum : ndarray, float64, shape (P, H, W + 1)
        :func:`row_prefix_sums` of ``lam``.

    Returns
    -------
    float
        The log-likelihood (up to a state-independent constant).
    """
    nz = frames.shape[1]
    ny = frames.shape[2]
    acc = 0.0
    for r in range(row0, row0 + nrows):
        t = r // (nz * ny)
        z = (r // ny) % nz
        y = r % ny
        acc += _row_loglik(frames, t, z, y, nan_rows[r], iz, iy, ix, logref, lam, lamcum)
    return acc


@jit(inline="always")
def unit_loglik(
    frames, row0, nrows, nan_rows, iy, ix, logref, lam, lamcum
):  # pragma: no cover - compiled
    """Emission log-likelihood of one unit (``nrows`` raster rows from ``row0``).

    :func:`unit_loglik3d` at plane offset ``iz = 0``.

    Parameters
    ----------
    frames : ndarray, float32, shape (n, Z, Y, X)
        Observed counts of the chunk (NaN allowed).
    row0, nrows : int
        First raster row of the unit (``t * Z * Y + z * Y + y`` within the
        chunk) and its number of rows.
    nan_rows : ndarray of bool, shape (n * Z * Y,)
        Rows holding at least one NaN.
    iy, ix : int
        State grid indices.
    logref, lam : ndarray, float64, shape (Z, H, W)
        Log rates and rates of the canvas.
    lamcum : ndarray, float64, shape (Z, H, W + 1)
        :func:`row_prefix_sums` of ``lam``.

    Returns
    -------
    float
        The log-likelihood (up to a state-independent constant).
    """
    return unit_loglik3d(frames, row0, nrows, nan_rows, 0, iy, ix, logref, lam, lamcum)


@jit(inline="always")
def _select_top(scores, idx, n, k):  # pragma: no cover - compiled
    """Move the k largest of scores[idx[:n]] to idx[:k] (any order); return k' = min(n, k)."""
    if n <= k:
        return n
    # quickselect on positions 0..n-1 of idx by descending score
    lo = 0
    hi = n - 1
    target = k - 1
    while lo < hi:
        pivot = scores[idx[(lo + hi) // 2]]
        i = lo
        j = hi
        while i <= j:
            while scores[idx[i]] > pivot:
                i += 1
            while scores[idx[j]] < pivot:
                j -= 1
            if i <= j:
                tmp = idx[i]
                idx[i] = idx[j]
                idx[j] = tmp
                i += 1
                j -= 1
        if target <= j:
            hi = j
        elif target >= i:
            lo = i
        else:
            break
    return k


@jit(fastmath=FASTMATH)
def beam_viterbi3d(
    frames,
    row_start,
    row_stop,
    unit_rows,
    nz_states,
    ny_states,
    nx_states,
    logref,
    lam,
    lamcum,
    nan_rows,
    step_iz,
    step_iy,
    step_ix,
    step_logp,
    bstep_iz,
    bstep_iy,
    bstep_ix,
    bstep_logp,
    prior,
    restart,
    margin,
    beam_state,
    beam_score,
    beam_n,
    bp,
    st,
    nslots,
    l0,
    dense,
    dense_bp,
    touched,
):  # pragma: no cover - compiled
    """Run the beam Viterbi recursion over the units of one chunk segment.

    States are ``s = (iz * ny_states + iy) * nx_states + ix`` and the canvas
    is ``(Z + nz_states - 1, Y + ny_states - 1, X + nx_states - 1)``; with
    ``nz_states = 1`` (and z steps of 0) this is the ``(dy, dx)`` model of
    :func:`beam_viterbi`.

    Parameters
    ----------
    frames : ndarray, float32, shape (n, Z, Y, X)
        Observed counts (NaN allowed) of whole frames.
    row_start, row_stop : int
        Raster rows (within the chunk) of the segment; ``row_start`` is the
        first row of a unit, units are ``unit_rows`` long (the last one may
        be shorter).
    unit_rows : int
        Rows per unit.
    nz_states, ny_states, nx_states : int
        Size of the state grid.
    logref, lam, lamcum : ndarray, float64
        The canvas (see :func:`unit_loglik3d`).
    nan_rows : ndarray of bool, shape (n * Z * Y,)
        :func:`mark_nan_rows` of ``frames``.
    step_iz, step_iy, step_ix, step_logp : ndarray, shape (M,)
        Transition steps within a plane and their log-probabilities.
    bstep_iz, bstep_iy, bstep_ix, bstep_logp : ndarray, shape (Mb,)
        Transition steps into a unit that starts a plane (the scanner's
        return between planes and frames).
    prior : ndarray, float64, shape (Nz * Ny * Nx,)
        Log prior of the states, used when ``restart``.
    restart : bool
        Start the first unit afresh from ``prior`` (every state evaluated)
        instead of from the beam.
    margin : float
        Beam states scoring more than ``margin`` below the best are not
        expanded (``inf``: every state is).
    beam_state, beam_score : ndarray, int32 / float64, shape (K,)
        The beam (state indices, scores), updated in place.
    beam_n : ndarray, int64, shape (1,)
        Number of valid beam slots, updated in place.
    bp : ndarray, int16, shape (L, K)
        Back-pointers: ``bp[u, k]`` is the slot (in unit ``u - 1``) of the
        predecessor of slot ``k`` of unit ``u``; -1 after a restart.
    st : ndarray, int32, shape (L, K)
        State of each slot of each unit.
    nslots : ndarray, int32, shape (L,)
        Valid slots of each unit.
    l0 : int
        Row of ``bp`` / ``st`` the first unit is written to.
    dense, dense_bp, touched : ndarray, float64 / int32 / int32, shape (Nz * Ny * Nx,)
        Work arrays; ``dense`` must hold ``-inf`` everywhere on entry and
        does so again on return.

    Returns
    -------
    int
        The number of units processed.
    """
    ny = frames.shape[2]
    nyx = ny_states * nx_states
    nstates = nz_states * nyx
    k_max = beam_state.shape[0]
    neg_inf = -np.inf
    u = 0
    row0 = row_start
    first = True
    while row0 < row_stop:
        nrows = min(unit_rows, row_stop - row0)
        lrow = l0 + u
        if first and restart:
            for s in range(nstates):
                iz = s // nyx
                iy = (s - iz * nyx) // nx_states
                ix = s - iz * nyx - iy * nx_states
                dense[s] = prior[s] + unit_loglik3d(
                    frames, row0, nrows, nan_rows, iz, iy, ix, logref, lam, lamcum
                )
                touched[s] = s
            nt = nstates
            kk = _select_top(dense, touched, nt, k_max)
            for k in range(kk):
                s = touched[k]
                beam_state[k] = s
                beam_score[k] = dense[s]
                bp[lrow, k] = -1
                st[lrow, k] = s
            for s in range(nstates):
                dense[s] = neg_inf
        else:
            if (row0 % ny) == 0:
                siz = bstep_iz
                siy = bstep_iy
                six = bstep_ix
                slp = bstep_logp
            else:
                siz = step_iz
                siy = step_iy
                six = step_ix
                slp = step_logp
            nt = 0
            for k in range(beam_n[0]):
                s0 = beam_state[k]
                iz0 = s0 // nyx
                iy0 = (s0 - iz0 * nyx) // nx_states
                ix0 = s0 - iz0 * nyx - iy0 * nx_states
                base = beam_score[k]
                if base < -margin:
                    continue
                for m in range(siy.shape[0]):
                    iz = iz0 + siz[m]
                    iy = iy0 + siy[m]
                    ix = ix0 + six[m]
                    if (
                        iz < 0
                        or iz >= nz_states
                        or iy < 0
                        or iy >= ny_states
                        or ix < 0
                        or ix >= nx_states
                    ):
                        continue
                    s = iz * nyx + iy * nx_states + ix
                    sc = base + slp[m]
                    if dense[s] == neg_inf:
                        touched[nt] = s
                        nt += 1
                        dense[s] = sc
                        dense_bp[s] = k
                    elif sc > dense[s]:
                        dense[s] = sc
                        dense_bp[s] = k
            for i in range(nt):
                s = touched[i]
                iz = s // nyx
                iy = (s - iz * nyx) // nx_states
                ix = s - iz * nyx - iy * nx_states
                dense[s] += unit_loglik3d(
                    frames, row0, nrows, nan_rows, iz, iy, ix, logref, lam, lamcum
                )
            kk = _select_top(dense, touched, nt, k_max)
            for k in range(kk):
                s = touched[k]
                beam_state[k] = s
                beam_score[k] = dense[s]
                bp[lrow, k] = dense_bp[s]
                st[lrow, k] = s
            for i in range(nt):
                dense[touched[i]] = neg_inf
        best = neg_inf
        for k in range(kk):
            if beam_score[k] > best:
                best = beam_score[k]
        for k in range(kk):
            beam_score[k] -= best
        beam_n[0] = kk
        nslots[lrow] = kk
        first = False
        u += 1
        row0 += nrows
    return u


@jit(fastmath=FASTMATH)
def beam_viterbi(
    frames,
    row_start,
    row_stop,
    unit_rows,
    ny_states,
    nx_states,
    logref,
    lam,
    lamcum,
    nan_rows,
    step_iy,
    step_ix,
    step_logp,
    bstep_iy,
    bstep_ix,
    bstep_logp,
    prior,
    restart,
    margin,
    beam_state,
    beam_score,
    beam_n,
    bp,
    st,
    nslots,
    l0,
    dense,
    dense_bp,
    touched,
):  # pragma: no cover - compiled
    """Run the beam Viterbi recursion with ``(dy, dx)`` states over one segment.

    :func:`beam_viterbi3d` with one z state (``nz_states = 1``, z steps 0):
    states are ``s = iy * nx_states + ix`` and the canvas is
    ``(Z, Y + ny_states - 1, X + nx_states - 1)``.

    Parameters
    ----------
    frames, row_start, row_stop, unit_rows : see :func:`beam_viterbi3d`
        The chunk and its segment of raster rows.
    ny_states, nx_states : int
        Size of the state grid.
    logref, lam, lamcum, nan_rows : see :func:`beam_viterbi3d`
        The canvas and the chunk's rows that hold a NaN.
    step_iy, step_ix, step_logp : ndarray, shape (M,)
        Transition steps within a plane and their log-probabilities.
    bstep_iy, bstep_ix, bstep_logp : ndarray, shape (Mb,)
        Transition steps into a unit that starts a plane.
    prior : ndarray, float64, shape (Ny * Nx,)
        Log prior of the states, used when ``restart``.
    restart, margin : see :func:`beam_viterbi3d`
        Whether the first unit starts afresh; the beam's margin.
    beam_state, beam_score, beam_n, bp, st, nslots, l0 : see :func:`beam_viterbi3d`
        The beam and the back-pointer buffers, updated in place.
    dense, dense_bp, touched : ndarray, shape (Ny * Nx,)
        Work arrays; ``dense`` holds ``-inf`` everywhere on entry and exit.

    Returns
    -------
    int
        The number of units processed.
    """
    # the 2-D model is the 3-D one with a single plane offset (dz = 0)
    # fmt: off
    return beam_viterbi3d(
        frames, row_start, row_stop, unit_rows,
        1, ny_states, nx_states,
        logref, lam, lamcum, nan_rows,
        np.zeros(step_iy.shape[0], dtype=np.int64), step_iy, step_ix, step_logp,
        np.zeros(bstep_iy.shape[0], dtype=np.int64), bstep_iy, bstep_ix, bstep_logp,
        prior, restart, margin,
        beam_state, beam_score, beam_n, bp, st, nslots, l0,
        dense, dense_bp, touched,
    )
    # fmt: on


@jit
def coalescence(bp, nslots, n_units, mark, prev):  # pragma: no cover - compiled
    """Find the latest unit through which every surviving path passes.

    Parameters
    ----------
    bp : ndarray, int16, shape (L, K)
        Back-pointers (see :func:`beam_viterbi`).
    nslots : ndarray, int32, shape (L,)
        Valid slots per unit.
    n_units : int
        Units recorded (rows ``0 .. n_units - 1`` of ``bp``).
    mark, prev : ndarray of bool, shape (K,)
        Work arrays.

    Returns
    -------
    (int, int)
        ``(u, slot)``: every path alive at the last unit passes through slot
        ``slot`` of unit ``u``; ``(-1, -1)`` when they do not meet (or meet
        only across a restart).
    """
    k_max = bp.shape[1]
    if n_units == 0:
        return -1, -1
    for k in range(k_max):
        mark[k] = k < nslots[n_units - 1]
    u = n_units - 1
    while u >= 0:
        count = 0
        last = -1
        for k in range(k_max):
            if mark[k]:
                count += 1
                last = k
        if count == 1:
            return u, last
        if u == 0:
            return -1, -1
        # move one unit back
        restart = False
        for k in range(k_max):
            if mark[k] and bp[u, k] < 0:
                restart = True
        if restart:
            return -1, -1
        for k in range(k_max):
            prev[k] = False
        for k in range(k_max):
            if mark[k]:
                prev[bp[u, k]] = True
        for k in range(k_max):
            mark[k] = prev[k]
        u -= 1
    return -1, -1


@jit
def backtrace(bp, st, u_end, slot, out):  # pragma: no cover - compiled
    """Trace one path back from slot ``slot`` of unit ``u_end``.

    Parameters
    ----------
    bp : ndarray, int16, shape (L, K)
        Back-pointers.
    st : ndarray, int32, shape (L, K)
        States of the slots.
    u_end : int
        Last unit of the path.
    slot : int
        Its slot in unit ``u_end``.
    out : ndarray, int32, shape (>= u_end + 1,)
        Receives the states of units ``0 .. u_end`` of the path.
    """
    k = slot
    u = u_end
    while u >= 0:
        out[u] = st[u, k]
        if u > 0:
            k = bp[u, k]
            if k < 0:
                # a restart: nothing before it is on this path (the caller
                # commits at restarts, so this is not reached in normal use)
                break
        u -= 1


@jit(fastmath=FASTMATH)
def accumulate_rows3d(frames, iz, iy, ix, total, total_sq, count):  # pragma: no cover - compiled
    """Add every observed row onto the canvas at its three-dimensional state.

    Parameters
    ----------
    frames : ndarray, float32, shape (n, Z, Y, X)
        Observed values (NaN pixels are skipped).
    iz, iy, ix : ndarray, int32, shape (n, Z, Y)
        State grid indices of every row.
    total, total_sq, count : ndarray, float64, shape (P, H, W)
        Sums, sums of squares and numbers of observations on the canvas,
        updated in place.
    """
    n, nz, ny, nx = frames.shape
    for t in range(n):
        for z in range(nz):
            for y in range(ny):
                p = z + iz[t, z, y]
                h = y + iy[t, z, y]
                w0 = ix[t, z, y]
                for x in range(nx):
                    v = frames[t, z, y, x]
                    if v == v:
                        total[p, h, w0 + x] += v
                        total_sq[p, h, w0 + x] += v * v
                        count[p, h, w0 + x] += 1.0


@jit(fastmath=FASTMATH)
def accumulate_rows(frames, iy, ix, total, total_sq, count):  # pragma: no cover - compiled
    """Add every observed row onto the canvas at its state.

    :func:`accumulate_rows3d` with every row at plane offset 0.

    Parameters
    ----------
    frames : ndarray, float32, shape (n, Z, Y, X)
        Observed values (NaN pixels are skipped).
    iy, ix : ndarray, int32, shape (n, Z, Y)
        State grid indices of every row.
    total, total_sq, count : ndarray, float64, shape (Z, H, W)
        Sums, sums of squares and numbers of observations on the canvas,
        updated in place.
    """
    accumulate_rows3d(frames, np.zeros_like(iy), iy, ix, total, total_sq, count)

"""Streaming per-pixel moments: count, mean and central sums M2, M3, M4.

One pass over chunks of frames, flattened to ``(frames, pixels)``, updates an
explicit state ``(n, mean, M2, M3, M4)`` per pixel, where
``M_k = Σ (x - mean)^k`` over the finite values seen so far. States from
different chunks, threads or machines merge exactly with the pairwise
formulas of Chan et al. and Pébay, so the same state serves a file on disk,
a live camera and a cluster.

How a chunk is folded in (per pixel, float64 arithmetic): the chunk's power
sums ``S_k = Σ (x - K)^k`` are accumulated around the pixel's current mean
``K`` (or, for a pixel not seen before, its first finite value in the chunk),
then the central sums of the union follow from ``δ = S_1 / N``::

    M2' = M2 + S2 - N δ²
    M3' = M3 + S3 - 3 δ (M2 + S2) + 2 N δ³
    M4' = M4 + S4 - 4 δ (M3 + S3) + 6 δ² (M2 + S2) - 3 N δ⁴

(``N`` the new count; the old data contribute 0 to ``S_1`` because ``K`` is
their mean). Shifting by the running mean keeps the sums small, which is what
makes the result accurate to ~1e-13 relative on uint16 movies.

The accumulation loop reads eight frames per pass over a block of pixels, so
the five accumulators are loaded and stored once per eight values and the
inner loop vectorises across pixels. Integer input skips the finiteness test.

References
----------
T. F. Chan, G. H. Golub, R. J. LeVeque, "Updating formulae and a pairwise
algorithm for computing sample variances", Stanford CS report STAN-CS-79-773
(1979). P. Pébay, "Formulas for robust, one-pass parallel computation of
covariances and arbitrary-order statistical moments", Sandia Report
SAND2008-6212 (2008), https://doi.org/10.2172/1028931.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from sima_fast.kernels._jit import FASTMATH, jit

__all__ = ["MomentState", "update_moments"]

#: Largest number of pixels per parallel work item. Long rows per frame keep the
#: hardware prefetchers streaming; measured best for 512×512 frames on 2 cores.
BLOCK_PIXELS = 32768

#: Smallest block (below it the per-block overhead shows).
MIN_BLOCK_PIXELS = 2048


def default_block(pixels: int) -> int:
    """Choose the pixels per parallel work item of :func:`update_moments`.

    About four blocks per numba thread (the current thread count), clipped to
    ``[MIN_BLOCK_PIXELS, BLOCK_PIXELS]``.

    Parameters
    ----------
    pixels : int
        Pixels per frame: the width of the ``(frames, pixels)`` chunks.

    Returns
    -------
    int
        Pixels per block (the last block of a frame may be shorter).
    """
    import numba

    per = -(-pixels // (4 * numba.get_num_threads()))
    return int(min(BLOCK_PIXELS, max(MIN_BLOCK_PIXELS, per)))


@jit(inline="always", fastmath=FASTMATH)
def _accumulate_plain(x, p0, p1, k, s1, s2, s3, s4):  # pragma: no cover - compiled
    """Add ``Σ (x - k)^j`` over all frames of pixels ``p0:p1`` (no finiteness test)."""
    T = x.shape[0]
    m = p1 - p0
    t = 0
    while t + 8 <= T:
        r0 = x[t, p0:p1]
        r1 = x[t + 1, p0:p1]
        r2 = x[t + 2, p0:p1]
        r3 = x[t + 3, p0:p1]
        r4 = x[t + 4, p0:p1]
        r5 = x[t + 5, p0:p1]
        r6 = x[t + 6, p0:p1]
        r7 = x[t + 7, p0:p1]
        for i in range(m):
            ki = k[i]
            d0 = np.float64(r0[i]) - ki
            d1 = np.float64(r1[i]) - ki
            d2 = np.float64(r2[i]) - ki
            d3 = np.float64(r3[i]) - ki
            d4 = np.float64(r4[i]) - ki
            d5 = np.float64(r5[i]) - ki
            d6 = np.float64(r6[i]) - ki
            d7 = np.float64(r7[i]) - ki
            q0 = d0 * d0
            q1 = d1 * d1
            q2 = d2 * d2
            q3 = d3 * d3
            q4 = d4 * d4
            q5 = d5 * d5
            q6 = d6 * d6
            q7 = d7 * d7
            s1[i] += ((d0 + d1) + (d2 + d3)) + ((d4 + d5) + (d6 + d7))
            s2[i] += ((q0 + q1) + (q2 + q3)) + ((q4 + q5) + (q6 + q7))
            s3[i] += ((q0 * d0 + q1 * d1) + (q2 * d2 + q3 * d3)) + (
                (q4 * d4 + q5 * d5) + (q6 * d6 + q7 * d7)
            )
            s4[i] += ((q0 * q0 + q1 * q1) + (q2 * q2 + q3 * q3)) + (
                (q4 * q4 + q5 * q5) + (q6 * q6 + q7 * q7)
            )
        t += 8
    while t < T:
        r0 = x[t, p0:p1]
        for i in range(m):
            d = np.float64(r0[i]) - k[i]
            q = d * d
            s1[i] += d
            s2[i] += q
            s3[i] += q * d
            s4[i] += q * q
        t += 1


@jit(inline="always", fastmath=FASTMATH)
def _accumulate_checked(x, p0, p1, k, c, s1, s2, s3, s4):  # pragma: no cover - compiled
    """Like :func:`_accumulate_plain`, skipping non-finite values and counting the rest."""
    T = x.shape[0]
    m = p1 - p0
    t = 0
    while t + 8 <= T:
        r0 = x[t, p0:p1]
        r1 = x[t + 1, p0:p1]
        r2 = x[t + 2, p0:p1]
        r3 = x[t + 3, p0:p1]
        r4 = x[t + 4, p0:p1]
        r5 = x[t + 5, p0:p1]
        r6 = x[t + 6, p0:p1]
        r7 = x[t + 7, p0:p1]
        for i in range(m):
            ki = k[i]
            d0 = np.float64(r0[i]) - ki
            d1 = np.float64(r1[i]) - ki
            d2 = np.float64(r2[i]) - ki
            d3 = np.float64(r3[i]) - ki
            d4 = np.float64(r4[i]) - ki
            d5 = np.float64(r5[i]) - ki
            d6 = np.float64(r6[i]) - ki
            d7 = np.float64(r7[i]) - ki
            o0 = d0 - d0 == 0.0
            o1 = d1 - d1 == 0.0
            o2 = d2 - d2 == 0.0
            o3 = d3 - d3 == 0.0
            o4 = d4 - d4 == 0.0
            o5 = d5 - d5 == 0.0
            o6 = d6 - d6 == 0.0
            o7 = d7 - d7 == 0.0
            d0 = d0 if o0 else 0.0
            d1 = d1 if o1 else 0.0
            d2 = d2 if o2 else 0.0
            d3 = d3 if o3 else 0.0
            d4 = d4 if o4 else 0.0
            d5 = d5 if o5 else 0.0
            d6 = d6 if o6 else 0.0
            d7 = d7 if o7 else 0.0
            q0 = d0 * d0
            q1 = d1 * d1
            q2 = d2 * d2
            q3 = d3 * d3
            q4 = d4 * d4
            q5 = d5 * d5
            q6 = d6 * d6
            q7 = d7 * d7
            c[i] += ((np.float64(o0) + np.float64(o1)) + (np.float64(o2) + np.float64(o3))) + (
                (np.float64(o4) + np.float64(o5)) + (np.float64(o6) + np.float64(o7))
            )
            s1[i] += ((d0 + d1) + (d2 + d3)) + ((d4 + d5) + (d6 + d7))
            s2[i] += ((q0 + q1) + (q2 + q3)) + ((q4 + q5) + (q6 + q7))
            s3[i] += ((q0 * d0 + q1 * d1) + (q2 * d2 + q3 * d3)) + (
                (q4 * d4 + q5 * d5) + (q6 * d6 + q7 * d7)
            )
            s4[i] += ((q0 * q0 + q1 * q1) + (q2 * q2 + q3 * q3)) + (
                (q4 * q4 + q5 * q5) + (q6 * q6 + q7 * q7)
            )
        t += 8
    while t < T:
        r0 = x[t, p0:p1]
        for i in range(m):
            d = np.float64(r0[i]) - k[i]
            ok = d - d == 0.0
            d = d if ok else 0.0
            q = d * d
            c[i] += np.float64(ok)
            s1[i] += d
            s2[i] += q
            s3[i] += q * d
            s4[i] += q * q
        t += 1


@jit(parallel=True, fastmath=FASTMATH)
def _update_float(x, n, mean, m2, m3, m4, frames_seen, block):  # pragma: no cover - compiled
    T, P = x.shape
    nblocks = (P + block - 1) // block
    for b in prange(nblocks):
        p0 = b * block
        p1 = min(P, p0 + block)
        m = p1 - p0
        k = np.empty(m)
        c = np.zeros(m)
        s1 = np.zeros(m)
        s2 = np.zeros(m)
        s3 = np.zeros(m)
        s4 = np.zeros(m)
        # Try the unchecked loop when no pixel of the block has missed a frame so far.
        fast = True
        for i in range(m):
            p = p0 + i
            if frames_seen >= 0 and n[p] != frames_seen:
                fast = False
            if n[p] > 0:
                k[i] = mean[p]
            else:
                k[i] = 0.0
                for t in range(T):
                    v = np.float64(x[t, p])
                    if v - v == 0.0:
                        k[i] = v
                        break
        if fast:
            _accumulate_plain(x, p0, p1, k, s1, s2, s3, s4)
            for i in range(m):
                if s2[i] - s2[i] != 0.0 or s4[i] - s4[i] != 0.0:  # a NaN or inf was summed
                    fast = False
                    break
            if fast:
                for i in range(m):
                    c[i] = T
            else:
                for i in range(m):
                    s1[i] = 0.0
                    s2[i] = 0.0
                    s3[i] = 0.0
                    s4[i] = 0.0
        if not fast:
            _accumulate_checked(x, p0, p1, k, c, s1, s2, s3, s4)
        _fold(n, mean, m2, m3, m4, p0, k, c, s1, s2, s3, s4)


@jit(parallel=True, fastmath=FASTMATH)
def _update_int(x, n, mean, m2, m3, m4, block):  # pragma: no cover - compiled
    T, P = x.shape
    nblocks = (P + block - 1) // block
    for b in prange(nblocks):
        p0 = b * block
        p1 = min(P, p0 + block)
        m = p1 - p0
        k = np.empty(m)
        c = np.full(m, np.float64(T))
        s1 = np.zeros(m)
        s2 = np.zeros(m)
        s3 = np.zeros(m)
        s4 = np.zeros(m)
        for i in range(m):
            p = p0 + i
            k[i] = mean[p] if n[p] > 0 else np.float64(x[0, p])
        _accumulate_plain(x, p0, p1, k, s1, s2, s3, s4)
        _fold(n, mean, m2, m3, m4, p0, k, c, s1, s2, s3, s4)


@jit
def _fold(n, mean, m2, m3, m4, p0, k, c, s1, s2, s3, s4):  # pragma: no cover - compiled
    """Fold a block's shifted power sums (around ``k``) into the state."""
    for i in range(k.shape[0]):
        ci = c[i]
        if ci == 0.0:
            continue
        p = p0 + i
        n_old = n[p]
        total = n_old + ci
        a2 = m2[p] + s2[i]
        a3 = m3[p] + s3[i]
        a4 = m4[p] + s4[i]
        delta = s1[i] / total
        dd = delta * delta
        m4[p] = a4 - 4.0 * delta * a3 + 6.0 * dd * a2 - 3.0 * total * dd * dd
        m3[p] = a3 - 3.0 * delta * a2 + 2.0 * total * dd * delta
        m2[p] = a2 - total * dd
        mean[p] = k[i] + delta
        n[p] = total


def update_moments(
    chunk: np.ndarray,
    n: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    m3: np.ndarray,
    m4: np.ndarray,
    frames_seen: int = -1,
    block: int | None = None,
) -> None:
    """Fold a chunk of frames into a per-pixel moment state, in place.

    Parameters
    ----------
    chunk : numpy.ndarray, shape (frames, pixels)
        C-contiguous; uint8/uint16/int16/int32 or float32/float64. For float
        input, non-finite values (NaN, ±inf) are skipped per pixel.
    n, mean, m2, m3, m4 : numpy.ndarray of float64, shape (pixels,)
        The state: count of finite values, their mean, and the central sums
        ``Σ (x - mean)^k`` for k = 2, 3, 4. Updated in place.
    frames_seen : int, optional
        How many frames the state already holds. For float input, blocks of
        pixels that have not missed any of them are first summed without the
        finiteness test, and summed again with it only if a non-finite value
        turns up; blocks with earlier gaps go straight to the tested loop.
        ``-1`` (unknown) tries the untested loop everywhere.
    block : int, optional
        Pixels per parallel work item (default: :func:`default_block`).
    """
    if chunk.ndim != 2:
        raise ValueError(f"chunk must be 2-D (frames, pixels), got shape {chunk.shape}")
    if chunk.shape[0] == 0:
        return
    x = np.ascontiguousarray(chunk)
    if block is None:
        block = default_block(x.shape[1])
    if x.dtype.kind == "f":
        _update_float(x, n, mean, m2, m3, m4, int(frames_seen), int(block))
    elif x.dtype.kind in "iub":
        if x.dtype.kind == "b":
            x = x.view(np.uint8)
        _update_int(x, n, mean, m2, m3, m4, int(block))
    else:
        raise TypeError(f"chunk must hold numbers, got dtype {x.dtype}")


@dataclass
class MomentState:
    """Per-pixel streaming moments ``(n, mean, M2, M3, M4)`` of everything seen so far.

    The arrays have the shape of one frame (any shape); ``M_k`` is the sum of
    ``(x - mean)^k`` over the finite values of each pixel. States combine with
    :meth:`merge` (exact pairwise formulas), so partial states computed on
    separate chunks, threads or machines give the same result as one pass.

    Examples
    --------
    >>> import numpy as np
    >>> state = MomentState.empty((2,))
    >>> state.update(np.array([[1.0, 5.0], [3.0, np.nan]]))
    >>> state.n, state.mean_value()
    (array([2., 1.]), array([2., 5.]))
    """

    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    m3: np.ndarray
    m4: np.ndarray
    #: Frames folded in so far (finite or not); lets the kernel skip finiteness tests.
    frames: int = 0

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> MomentState:
        """Return the state of no observations for frames of ``shape``.

        Parameters
        ----------
        shape : tuple of int
            Shape of one frame (any number of axes, ``()`` included).

        Returns
        -------
        MomentState
            Five float64 arrays of ``shape``, all zero (views into one block
            of memory), and ``frames = 0``.
        """
        # One block for the five arrays, written here rather than left to calloc:
        # a block this size is eligible for transparent huge pages, and the kernel
        # then does not take two page faults (read, then write) per fresh 4 KiB page.
        # Both were measured: about 16 ms of page faults per new 512×512 state.
        block = np.empty((5, *shape), dtype=np.float64)
        block.fill(0.0)
        return cls(*(block[i, ...] for i in range(5)))  # [i, ...]: arrays even for shape ()

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one frame."""
        return self.n.shape

    def update(self, frames: np.ndarray) -> None:
        """Fold ``frames`` into the state, in place.

        Parameters
        ----------
        frames : array_like, shape (t, *shape)
            ``t`` frames of the state's frame shape, of any numeric dtype
            (integers, bool, float32, float64). For float input, non-finite
            values (NaN, ±inf) are skipped per pixel; all ``t`` frames are
            added to :attr:`MomentState.frames`.

        Raises
        ------
        ValueError
            If the frames do not have the state's frame shape.
        """
        frames = np.asarray(frames)
        if frames.shape[1:] != self.shape:
            raise ValueError(
                f"frames of shape {frames.shape[1:]} do not match the state's {self.shape}"
            )
        flat = frames.reshape(frames.shape[0], self.n.size)
        update_moments(
            flat,
            self.n.reshape(-1),
            self.mean.reshape(-1),
            self.m2.reshape(-1),
            self.m3.reshape(-1),
            self.m4.reshape(-1),
            frames_seen=self.frames,
        )
        self.frames += flat.shape[0]

    def merge(self, other: MomentState) -> MomentState:
        """Return the state of the union of two sets of observations.

        Parameters
        ----------
        other : MomentState
            The moments of other frames of the same frame shape (another
            chunk, thread or machine). Neither state is modified.

        Returns
        -------
        MomentState
            A new state, equal to rounding to one pass over both sets of
            frames; its :attr:`frames` is the sum of the two.

        Raises
        ------
        ValueError
            If the frame shapes differ.
        """
        if other.shape != self.shape:
            raise ValueError(f"cannot merge states of shapes {self.shape} and {other.shape}")
        na, nb = self.n, other.n
        n = na + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            safe = np.where(n > 0, n, 1.0)
            both = (na > 0) & (nb > 0)
            delta = np.where(both, other.mean - self.mean, 0.0)
            mean = np.where(na > 0, self.mean, other.mean) + delta * nb / safe
            d2 = delta * delta
            m2 = self.m2 + other.m2 + d2 * na * nb / safe
            m3 = (
                self.m3
                + other.m3
                + d2 * delta * na * nb * (na - nb) / safe**2
                + 3.0 * delta * (na * other.m2 - nb * self.m2) / safe
            )
            m4 = (
                self.m4
                + other.m4
                + d2 * d2 * na * nb * (na * na - na * nb + nb * nb) / safe**3
                + 6.0 * d2 * (na * na * other.m2 + nb * nb * self.m2) / safe**2
                + 4.0 * delta * (na * other.m3 - nb * self.m3) / safe
            )
        return MomentState(n, mean, m2, m3, m4, self.frames + other.frames)

    def copy(self) -> MomentState:
        """Return an independent copy.

        Returns
        -------
        MomentState
            New arrays holding the same values, and the same :attr:`frames`.
        """
        arrays = (a.copy() for a in (self.n, self.mean, self.m2, self.m3, self.m4))
        return MomentState(*arrays, frames=self.frames)

    def mean_value(self) -> np.ndarray:
        """Return the mean of each pixel's finite values.

        Returns
        -------
        numpy.ndarray of float64, shape :attr:`shape`
            A new array; NaN where nothing finite was seen.
        """
        return self._finalise(_MEAN)

    def std(self) -> np.ndarray:
        """Return the population standard deviation (ddof 0) of each pixel.

        Returns
        -------
        numpy.ndarray of float64, shape :attr:`shape`
            ``sqrt(max(M2, 0) / n)`` in a new array; NaN where nothing finite
            was seen.
        """
        return self._finalise(_STD)

    def kurtosis(self) -> np.ndarray:
        """Return the Pearson kurtosis ``n M4 / M2²`` of each pixel (3 for a normal law).

        Returns
        -------
        numpy.ndarray of float64, shape :attr:`shape`
            A new array; NaN for constant (``M2 = 0``) or never-observed pixels.
        """
        return self._finalise(_KURTOSIS)

    def _finalise(self, what: int) -> np.ndarray:
        # One fused loop into one new array: no full-frame temporaries.
        out = np.empty(self.shape, dtype=np.float64)
        flat = (np.ascontiguousarray(a).reshape(-1) for a in (self.n, self.mean, self.m2, self.m4))
        _finalise(*flat, what, out.reshape(-1))
        return out


_MEAN, _STD, _KURTOSIS = 0, 1, 2


@jit(error_model="numpy")
def _finalise(n, mean, m2, m4, what, out):  # pragma: no cover - compiled
    """``out`` = mean, std or Pearson kurtosis per pixel (NaN where undefined).

    The operations and their order are those of the numpy expressions
    ``where(n > 0, mean, nan)``, ``where(n > 0, sqrt(maximum(m2, 0) / n), nan)``
    and ``where((n > 0) & (m2 > 0), n * m4 / (m2 * m2), nan)``, so the results
    are the same to the last bit (NaN in ``m2`` stays NaN, as with ``maximum``).
    """
    for p in range(out.shape[0]):
        count = n[p]
        if not count > 0.0:
            out[p] = np.nan
        elif what == 0:
            out[p] = mean[p]
        elif what == 1:
            v = m2[p]
            if v < 0.0:
                v = 0.0
            out[p] = np.sqrt(v / count)
        elif m2[p] > 0.0:
            out[p] = count * m4[p] / (m2[p] * m2[p])
        else:
            out[p] = np.nan

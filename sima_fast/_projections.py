"""Per-pixel time projections (mean, std, Pearson kurtosis) in one streaming pass.

The state of the pass is the tuple of central-moment sums ``(n, mean, M2, M3,
M4)`` per pixel and channel, merged across chunks with the pairwise formulas
of Chan et al. (1979) and Pébay (2008), so memory stays bounded by one chunk
and partial states from different chunks, threads or machines combine
exactly. NaN values are skipped per pixel (SPEC.md §6).

References
----------
P. Pébay, "Formulas for robust, one-pass parallel computation of covariances
and arbitrary-order statistical moments", Sandia Report SAND2008-6212 (2008).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MomentState", "moments_of_chunk", "projections"]


@dataclass
class MomentState:
    """Central-moment sums per pixel: count, mean and ``M_k = Σ (x - mean)^k``."""

    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    m3: np.ndarray
    m4: np.ndarray

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> MomentState:
        """The state of no observations."""
        z = lambda: np.zeros(shape, dtype=np.float64)  # noqa: E731
        return cls(z(), z(), z(), z(), z())

    def merge(self, other: MomentState) -> MomentState:
        """Combine two states (Chan/Pébay pairwise update); returns a new state."""
        na, nb = self.n, other.n
        n = na + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            safe = np.where(n > 0, n, 1.0)
            delta = other.mean - self.mean
            delta = np.where((na > 0) & (nb > 0), delta, 0.0)
            mean = np.where(na > 0, self.mean, 0.0) + delta * nb / safe
            mean = np.where(na == 0, other.mean, mean)
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
        return MomentState(n, mean, m2, m3, m4)

    def mean_value(self) -> np.ndarray:
        """Mean per pixel (NaN where nothing was observed)."""
        return np.where(self.n > 0, self.mean, np.nan)

    def std(self) -> np.ndarray:
        """Population standard deviation (ddof 0) per pixel."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, np.sqrt(np.maximum(self.m2, 0.0) / self.n), np.nan)

    def kurtosis(self) -> np.ndarray:
        """Pearson kurtosis ``m4 / m2**2``; NaN for constant or unobserved pixels."""
        with np.errstate(invalid="ignore", divide="ignore"):
            k = self.n * self.m4 / (self.m2 * self.m2)
        return np.where((self.n > 0) & (self.m2 > 0), k, np.nan)


def moments_of_chunk(chunk: np.ndarray) -> MomentState:
    """The moment state of one ``(t, ...)`` block (NaN-aware, float64 arithmetic)."""
    x = np.asarray(chunk, dtype=np.float64)
    finite = np.isfinite(x)
    n = finite.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        xz = np.where(finite, x, 0.0)
        mean = np.where(n > 0, xz.sum(axis=0) / np.where(n > 0, n, 1.0), 0.0)
        d = np.where(finite, x - mean, 0.0)
    d2 = d * d
    return MomentState(n, mean, d2.sum(axis=0), (d2 * d).sum(axis=0), (d2 * d2).sum(axis=0))


def projections(sequences: list, progress: bool = False) -> dict[str, np.ndarray]:
    """Mean, std and Pearson kurtosis over all frames of all ``sequences``.

    Parameters
    ----------
    sequences : list of Sequence
        Sequences of equal frame shape ``(Z, Y, X, C)``.
    progress : bool, optional
        Show a progress bar (tqdm).

    Returns
    -------
    dict
        ``time_averages``, ``time_std`` and ``time_kurtosis``, each
        ``(Z, Y, X, C)`` float64.
    """
    frame_shape = sequences[0].shape[1:]
    state = MomentState.empty(frame_shape)
    frame_bytes = max(int(np.prod(frame_shape)) * 8, 1)
    chunk_frames = max(1, (16 * 2**20) // frame_bytes)
    total = sum(len(s) for s in sequences)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="projections", unit="frame")
    try:
        for seq in sequences:
            for _, chunk in seq.iter_chunks(chunk_frames, reuse_buffer=True):
                state = state.merge(moments_of_chunk(chunk))
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return {
        "time_averages": state.mean_value(),
        "time_std": state.std(),
        "time_kurtosis": state.kurtosis(),
    }

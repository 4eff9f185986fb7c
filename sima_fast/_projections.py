"""Time reductions of a movie: the per-pixel moments and the per-channel maxima.

The three projections (mean, std, Pearson kurtosis) come from one streaming
pass: the frames are read in time chunks (prefetched in a background thread)
and folded into a :class:`~sima_fast.kernels.moments.MomentState` by the numba
kernel, so memory stays bounded by two chunks whatever the number of frames.
NaN and infinite values are skipped per pixel (see
docs/contract.md#projections).

The work on one range of frames is :func:`moments_of_range` (and
:func:`maxima_of_range` for the export's value scaling). The single-machine
functions run it over whole sequences; :mod:`sima_fast.distributed` runs the
same function over time ranges on a cluster and merges the partial results
with :func:`merge_moments` and :func:`merge_maxima`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from sima_fast._threads import kernel_threads
from sima_fast.kernels.moments import MomentState

__all__ = [
    "channel_maxima",
    "maxima_of_range",
    "merge_maxima",
    "merge_moments",
    "moment_state",
    "moments_of_range",
    "projections",
    "projections_of_state",
]


# ---------------------------------------------------------------------------
# moments
# ---------------------------------------------------------------------------


def moments_of_range(
    seq,
    t0: int = 0,
    t1: int | None = None,
    state: MomentState | None = None,
    *,
    on_chunk: Callable[[int], object] | None = None,
) -> MomentState:
    """Fold frames ``t0`` to ``t1`` of ``seq`` into a per-pixel moment state.

    Parameters
    ----------
    seq : Sequence
        The sequence, read in native-dtype chunks (the next one prefetched).
    t0 : int, optional
        First frame. Default: 0.
    t1 : int, optional
        One past the last frame. Default: the end of the sequence.
    state : MomentState, optional
        A state to update in place (e.g. one that already holds earlier
        sequences). Default: a new, empty state.
    on_chunk : callable, optional
        Called with the number of frames of each chunk once it is folded in
        (e.g. a progress bar's ``update``).

    Returns
    -------
    MomentState
        ``state`` (or the new state) holding the frames of the range.
    """
    if state is None:
        state = MomentState.empty(tuple(seq.shape[1:]))
    # While a background thread reads the file, the kernel leaves it a core.
    with kernel_threads(reserve=1 if not seq.zero_copy else 0):
        for _, chunk in seq.iter_chunks(start=t0, stop=t1, reuse_buffer=True, prefetch=True):
            state.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
    return state


def merge_moments(*states: MomentState) -> MomentState:
    """Merge the moment states of disjoint sets of frames into one.

    Parameters
    ----------
    *states : MomentState
        At least one state, all of the same frame shape.

    Returns
    -------
    MomentState
        The state of all their frames (the pairwise Chan/Pébay formulas,
        equal to one pass within rounding).
    """
    return functools.reduce(lambda a, b: a.merge(b), states)


def projections_of_state(state: MomentState) -> dict[str, np.ndarray]:
    """Turn a moment state into the three time projections.

    Parameters
    ----------
    state : MomentState
        The moments of every frame.

    Returns
    -------
    dict
        ``time_averages``, ``time_std`` and ``time_kurtosis``, each
        ``(Z, Y, X, C)`` float64.
    """
    return {
        "time_averages": state.mean_value(),
        "time_std": state.std(),
        "time_kurtosis": state.kurtosis(),
    }


def moment_state(sequences: list, progress: bool = False) -> MomentState:
    """Compute the moment state of every frame of ``sequences`` (equal frame shapes).

    One state is folded through all the sequences in order, with
    :func:`moments_of_range` over each whole sequence.

    Parameters
    ----------
    sequences : list of Sequence
        The sequences, read in native-dtype chunks.
    progress : bool, optional
        Show a progress bar (tqdm).

    Returns
    -------
    MomentState
        The moments of all their frames.
    """
    state = MomentState.empty(tuple(sequences[0].shape[1:]))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(s) for s in sequences), desc="projections", unit="frame")
    try:
        for seq in sequences:
            moments_of_range(seq, state=state, on_chunk=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
    return state


def projections(sequences: list, progress: bool = False) -> dict[str, np.ndarray]:
    """Compute the mean, std and Pearson kurtosis over all frames of all ``sequences``.

    Parameters
    ----------
    sequences : list of Sequence
        Sequences of equal frame shape.
    progress : bool, optional
        Show a progress bar (tqdm).

    Returns
    -------
    dict
        ``time_averages``, ``time_std`` and ``time_kurtosis``, each
        ``(Z, Y, X, C)`` float64, all from the same single pass.
    """
    return projections_of_state(moment_state(sequences, progress=progress))


# ---------------------------------------------------------------------------
# channel maxima
# ---------------------------------------------------------------------------


def maxima_of_range(seq, t0: int = 0, t1: int | None = None) -> np.ndarray:
    """Find the largest finite value of every channel in frames ``t0`` to ``t1`` of ``seq``.

    Parameters
    ----------
    seq : Sequence
        The sequence, read chunk by chunk.
    t0 : int, optional
        First frame. Default: 0.
    t1 : int, optional
        One past the last frame. Default: the end of the sequence.

    Returns
    -------
    numpy.ndarray
        ``(C,)`` float64; NaN for a channel without any finite value in the
        range.
    """
    best = np.full(seq.shape[4], np.nan)
    for _, chunk in seq.iter_chunks(start=t0, stop=t1, reuse_buffer=True, prefetch=True):
        flat = chunk.reshape(-1, chunk.shape[-1])
        if flat.dtype.kind == "f":
            m = np.fmax.reduce(np.where(np.isfinite(flat), flat, np.nan), axis=0)
        else:
            m = flat.max(axis=0).astype(np.float64)
        best = np.fmax(best, m)
    return best


def merge_maxima(*maxima: np.ndarray) -> np.ndarray:
    """Combine per-channel maxima of disjoint sets of frames.

    Parameters
    ----------
    *maxima : numpy.ndarray
        At least one ``(C,)`` array (NaN where a part saw no finite value).

    Returns
    -------
    numpy.ndarray
        ``(C,)`` float64, the largest of them, ignoring NaN.
    """
    return np.asarray(functools.reduce(np.fmax, maxima), dtype=np.float64)


def channel_maxima(sequences: list) -> np.ndarray:
    """Find the largest finite value of every channel over all frames (NaN when none).

    Parameters
    ----------
    sequences : list of Sequence
        The sequences to scan, chunk by chunk.

    Returns
    -------
    numpy.ndarray
        ``(C,)`` float64.
    """
    return merge_maxima(*(maxima_of_range(seq) for seq in sequences))

"""Per-pixel time projections (mean, std, Pearson kurtosis) in one streaming pass.

The dataset's sequences are read in time chunks (prefetched in a background
thread) and folded into a :class:`~sima_fast.kernels.moments.MomentState` by
the numba kernel, so memory stays bounded by two chunks whatever the number
of frames. NaN and infinite values are skipped per pixel (SPEC.md §6).
"""

from __future__ import annotations

import numpy as np

from sima_fast._threads import kernel_threads
from sima_fast.kernels.moments import MomentState

__all__ = ["moment_state", "projections"]


def moment_state(sequences: list, progress: bool = False) -> MomentState:
    """The moment state of every frame of ``sequences`` (equal frame shapes).

    Parameters
    ----------
    sequences : list of Sequence
        The sequences, read in native-dtype chunks.
    progress : bool, optional
        Show a progress bar (tqdm).
    """
    frame_shape = sequences[0].shape[1:]
    state = MomentState.empty(frame_shape)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(s) for s in sequences), desc="projections", unit="frame")
    try:
        for seq in sequences:
            # While a background thread reads the file, the kernel leaves it a core.
            with kernel_threads(reserve=1 if not seq.zero_copy else 0):
                for _, chunk in seq.iter_chunks(reuse_buffer=True, prefetch=True):
                    state.update(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return state


def projections(sequences: list, progress: bool = False) -> dict[str, np.ndarray]:
    """Mean, std and Pearson kurtosis over all frames of all ``sequences``.

    Returns
    -------
    dict
        ``time_averages``, ``time_std`` and ``time_kurtosis``, each
        ``(Z, Y, X, C)`` float64, all from the same single pass.
    """
    state = moment_state(sequences, progress=progress)
    return {
        "time_averages": state.mean_value(),
        "time_std": state.std(),
        "time_kurtosis": state.kurtosis(),
    }

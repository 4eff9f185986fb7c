"""Compile sima_fast's kernels ahead of time (``sima_fast.warmup()``).

The kernels are compiled by numba on first use and cached on disk (see
``sima_fast.kernels._jit``), so the first run on a machine, or after an
upgrade, spends tens of seconds compiling. On an acquisition machine that is
better spent before the experiment: call :func:`warmup` once after installing
(or run ``python -c "import sima_fast; sima_fast.warmup()"``). Later
processes load the compiled code from the cache in well under a second.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np

__all__ = ["warmup"]

DTYPES = ("uint16", "float32", "float64")


def warmup(dtypes: Iterable[str] = DTYPES, verbose: bool = False, motion: bool = True) -> float:
    """Compile (or load from the cache) the kernels of the offline pipeline.

    Runs projections, gap filling, extraction and spike inference on a tiny
    in-memory dataset of each input dtype, and (with ``motion``) rigid,
    non-rigid and row-wise (HMM) motion estimation of planes and volumes
    (:class:`~sima_fast.motion.HiddenMarkov3D`) and the corrected views,
    so that a later call on real data starts at full speed. Nothing is
    written to disk except numba's cache. The per-frame API compiles its own
    kernels in :meth:`sima_fast.online.OnlineExtractor.warmup` (and
    :meth:`sima_fast.OnlineRegistrar.warmup`, called on construction).

    Parameters
    ----------
    dtypes : iterable of str, optional
        The movie dtypes to prepare: kernels are compiled per input dtype.
        Default: ``('uint16', 'float32', 'float64')``.
    verbose : bool, optional
        Print one line per dtype with the time taken.
    motion : bool, optional
        Also prepare the motion-correction kernels (:mod:`sima_fast.motion`).
        Default: True.

    Returns
    -------
    float
        Seconds taken.

    Examples
    --------
    >>> import sima_fast
    >>> seconds = sima_fast.warmup(dtypes=['float64'], motion=False)
    >>> seconds >= 0
    True
    """
    import warnings

    from sima_fast.imaging import ImagingDataset
    from sima_fast.ROI import ROI, ROIList
    from sima_fast.sequence import Sequence
    from sima_fast.spikes import infer_spikes_from_signals

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    mask = np.zeros((1, 8, 8), dtype=bool)
    mask[0, 2:5, 2:5] = True
    rois = ROIList([ROI(mask=mask, label="warmup")])
    for name in dtypes:
        dtype = np.dtype(name)
        t0 = time.perf_counter()
        frames = rng.uniform(10, 20, size=(40, 1, 8, 8, 1)).astype(dtype)
        if dtype.kind == "f":
            frames[3, 0, 0, 0, 0] = np.nan
        seq = Sequence.create("ndarray", frames)
        dataset = ImagingDataset([seq], None)
        _ = dataset.time_averages, dataset.time_std, dataset.time_kurtosis
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            signals = dataset.extract(rois, save_summary=False)
            infer_spikes_from_signals(signals["raw"])
        seq.fill_gaps().read_chunk(0, len(seq))
        if motion:
            _warm_motion(rng, dtype)
            _warm_motion3d(rng, dtype)
        if verbose:
            print(f"warmup: {name} kernels ready in {time.perf_counter() - t0:.1f} s")
        del signals
    return time.perf_counter() - start


def _warm_motion(rng: np.random.Generator, dtype: np.dtype) -> None:
    """Estimate and apply rigid, non-rigid and HMM motion on a tiny moving scene."""
    import warnings

    from scipy import ndimage

    from sima_fast.motion import HiddenMarkov2D, NonRigid2D, RigidRegistration2D
    from sima_fast.sequence import Sequence

    scene = ndimage.gaussian_filter(rng.uniform(0, 100, size=(80, 80)), 2.0) + 20
    frames = np.empty((12, 1, 64, 64, 1), dtype=dtype)
    for t in range(len(frames)):
        dy, dx = (int(v) for v in rng.integers(0, 5, size=2))
        frames[t, 0, :, :, 0] = scene[dy : dy + 64, dx : dx + 64].astype(dtype)
    seq = Sequence.create("ndarray", frames)
    strategies = (
        RigidRegistration2D(max_displacement=8),
        NonRigid2D(block_size=(32, 32), max_displacement=8),
        HiddenMarkov2D(max_displacement=8, verbose=False),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for strategy in strategies:
            shifts = strategy.estimate([seq])[0]
            grow = np.ceil(np.max(np.abs(shifts.reshape(-1, 2)), axis=0)).astype(int) + 1
            view = strategy.corrected_sequence(seq, shifts, (1, 64 + grow[0], 64 + grow[1]))
            view.read_chunk(0, len(view))


def _warm_motion3d(rng: np.random.Generator, dtype: np.dtype) -> None:
    """Estimate and apply volume HMM motion (the 3-D kernels) on a tiny moving volume."""
    import warnings

    from scipy import ndimage

    from sima_fast.motion import HiddenMarkov3D
    from sima_fast.sequence import Sequence

    scene = ndimage.gaussian_filter(rng.uniform(0, 100, size=(6, 22, 22)), 1.0) + 20
    frames = np.empty((6, 4, 18, 18, 1), dtype=dtype)
    for t in range(len(frames)):
        dz, dy, dx = t % 2, int(rng.integers(0, 3)), int(rng.integers(0, 3))
        frames[t, :, :, :, 0] = scene[dz : dz + 4, dy : dy + 18, dx : dx + 18].astype(dtype)
    seq = Sequence.create("ndarray", frames)
    strategy = HiddenMarkov3D(max_displacement=(2, 4, 4), verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shifts = strategy.estimate([seq])[0]
        grow = np.ceil(np.max(np.abs(shifts.reshape(-1, 3)), axis=0)).astype(int) + 1
        view = strategy.corrected_sequence(seq, shifts, (4 + grow[0], 18 + grow[1], 18 + grow[2]))
        view.read_chunk(0, len(view))

"""Per-frame extraction, projections and spike estimates for live acquisition loops.

:class:`OnlineExtractor` is a two-phase object. The *prepare* phase (the
constructor) builds the ROI weights exactly as ``ImagingDataset.extract``
does, allocates every buffer and compiles (or loads from numba's cache) the
kernels of :mod:`sima_fast.kernels.online`. The *update* phase,
:meth:`OnlineExtractor.update`, takes one frame and, in one GIL-free numba
call on one core that allocates no array memory (numba's dispatcher makes
about 1 kB of short-lived Python objects per call, freed on return),

* extracts every ROI's value (NaN-aware, as ``ImagingDataset.extract``),
* folds the frame into the per-pixel moments behind ``time_averages``,
  ``time_std`` and ``time_kurtosis`` (a :class:`~sima_fast.kernels.moments.MomentState`,
  the offline projections' state type, so online and offline states merge),
* advances an online AR(1) deconvolution per ROI whose spike estimates are
  *provisional* for ``lag`` frames and *final* afterwards.

With ``motion=`` (a :class:`~sima_fast.online_motion.OnlineRegistrar`), each
frame is first registered against a fixed reference (rigid, subpixel, per
plane; also preallocated and GIL-free) and the registered frame is what the
steps above see; the shifts are kept in :attr:`~OnlineExtractor.shifts`.

Everything is written into preallocated arrays; the accessors
(:attr:`~OnlineExtractor.raw`, :meth:`~OnlineExtractor.spikes`,
:attr:`~OnlineExtractor.time_averages`, ...) copy out of them when asked.
An object is meant for one thread at a time: call :meth:`update` and the
accessors from the same thread, or guard them with a lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from sima_fast._validate import (
    ArgumentTypeError,
    check_bool,
    check_frame_shape,
    check_int,
    check_real,
)
from sima_fast.kernels.moments import MomentState
from sima_fast.online_motion import OnlineRegistrar

__all__ = ["DTYPES", "PENALTY_SCALE", "OnlineExtractor", "OnlineRegistrar"]

#: Default ring of staged frames: ``moment_batch`` is the largest count up to 64 that fits.
RING_BYTES = 64 * 2**20

#: Pixels folded per piece of a moment block (the power sums stay in L1/L2).
FOLD_PIECE = 2048

#: Frame dtypes accepted (frames must have the declared dtype exactly: no conversion).
DTYPES = ("uint16", "int16", "float32", "float64")

#: Default ``penalty_scale``: λ = PENALTY_SCALE · σ / √(1 − γ²) (see OnlineExtractor).
PENALTY_SCALE = 1.5


def _per_roi(value: Any, n: int, name: str, low: float, high: float, closed: bool) -> np.ndarray:
    """``value`` (scalar or ``(n,)``) as a float64 ``(n,)`` array within the bounds."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise ValueError(f"{name} must be a number or an array of {n} values (one per ROI)")
    arr = np.broadcast_to(arr, (n,)).copy()
    ok = np.isfinite(arr) & (arr >= low if closed else arr > low) & (arr < high)
    if not ok.all():
        bound = f"[{low}, {high})" if closed else f"({low}, {high})"
        raise ValueError(f"{name} must be finite and in {bound}; got {arr[~ok][0]!r}")
    return arr


class OnlineExtractor:
    """Extract ROI signals, pixel moments and AR(1) spike estimates frame by frame.

    Parameters
    ----------
    rois : sequence of sima_fast.ROI.ROI
        The ROIs, in output-row order (as for ``ImagingDataset.extract``).
    frame_shape : tuple of int
        Shape of the frames :meth:`update` will receive: ``(Y, X)``,
        ``(Z, Y, X)`` or ``(Z, Y, X, C)``.
    signal_channel : int, optional
        Channel extracted from ``(Z, Y, X, C)`` frames (0 otherwise).
    mean_frame : numpy.ndarray, optional
        Time average ``μ`` of the signal channel, ``(Z, Y, X)`` (or ``(Y, X)``
        with one plane, or a full ``(Z, Y, X, C)`` average of which the signal
        channel is used). With it, the value of ROI ``i`` is ``Σ_p w_ip F_p /
        μ_p`` exactly as ``ImagingDataset.extract`` computes it with that
        average (pixels whose ``μ`` is 0 or not finite are left out and the
        ROI re-weighted once). Without it, the value is the plain weighted
        mean ``Σ_p w_ip F_p`` (boolean masks normalised to sum to 1,
        weighted masks as given). Either way missing (NaN) pixels of a frame
        are left out and the remaining weights rescaled by ``Σ_all w² /
        Σ_finite w²``; an ROI with no finite pixel gives NaN.
    gamma : float or array_like, optional
        AR(1) decay per frame, in ``(0, 1)``, for all ROIs or one per ROI.
        Estimated when omitted (see Notes).
    sigma : float or array_like, optional
        Noise standard deviation of the ROI values; sets the penalty through
        ``penalty_scale``. Estimated when omitted and ``penalty`` is not given.
    penalty : float or array_like, optional
        The L1 penalty ``λ >= 0`` itself (instead of ``sigma``).
    baseline : float or array_like, optional
        Baseline ``b`` subtracted before deconvolution (about 1 for values
        normalised by ``mean_frame``). Estimated when omitted.
    dtype : {'uint16', 'int16', 'float32', 'float64'}
        The dtype of the frames (exactly; frames are never converted).
    remove_overlap : bool
        Remove pixels shared by several ROIs from all of them (as
        ``ImagingDataset.extract``). With ``False`` and overlapping ROIs,
        frames with missing masked pixels go through the pseudo-inverse path
        of ``extract``, which runs in Python and allocates.
    lag : int
        Frames after which a spike estimate is final (see Notes); take
        several decay times ``-1 / ln γ``. Also the capacity of the per-ROI
        pool arrays (``lag + 1``, always enough).
    max_frames : int
        Frames of history kept for :attr:`raw`, :meth:`spikes` and
        :meth:`calcium` (a ring: older frames are overwritten). Memory is
        ``12 · n_rois · max_frames`` bytes.
    estimate_frames : int
        Frames used to estimate the missing AR(1) parameters (at least 8,
        at most ``max_frames``).
    penalty_scale : float
        ``z`` in the rule ``λ = z σ / √(1 − γ²)`` used when ``penalty`` is not
        given. On simulated sparse activity, the offline noise-constrained
        solution (docs/contract.md#the-optimisation-problem) corresponds to
        ``z`` between about 1 and 2.
    moment_batch : int, optional
        ``B``: the moments of each pixel are folded in every ``B`` frames
        (``1/B`` of the pixels per frame), from a ring of the last ``B``
        frames. Larger is faster per frame and takes more memory. Default:
        the largest ``B <= 64`` whose ring fits in 64 MiB (64 for 512×512
        uint16 or float32 frames).
    warmup : bool
        Call :meth:`warmup` at the end of the constructor.
    motion : sima_fast.online_motion.OnlineRegistrar, optional
        Register every frame before anything else: :meth:`update` gives the
        frame to ``motion.register`` and extracts, folds into the moments and
        deconvolves the *registered* frame (float32, NaN where nothing
        landed, so the ROIs that reach past the edge are re-weighted as for
        any missing pixel). The registrar must be prepared for this
        ``frame_shape`` and ``dtype``. The shift of every kept frame is in
        :attr:`shifts`. Without it (the default) frames are used as they
        are.

    Attributes
    ----------
    frame_shape : tuple of int
        As given.
    dtype : numpy.dtype
        The frames' dtype.
    n_rois : int
        Number of ROIs (rows of every output).
    lag : int
        As given.
    weights : sima_fast.extract.ExtractionWeights
        The weights, built as ``ImagingDataset.extract`` builds them.
    motion : sima_fast.online_motion.OnlineRegistrar or None
        As given.

    Notes
    -----
    **Latency.** :meth:`update` stages the frame (one copy, from any memory
    layout), folds ``1/B`` of the pixels' moments, extracts the ROIs and
    pushes one sample per ROI into the AR(1) solver, in one numba call that
    runs on one core, releases the GIL and allocates no memory (numba only
    wraps each array argument in a small record, freed on return). About
    0.2 ms for 512×512 uint16 frames and 500 ROIs on a 2020s server core
    (``benchmarks/test_online.py``); more when the caches are cold, as after
    33 ms of other work at 30 Hz. The frame that completes the parameter
    estimation window (only when some parameter is estimated) also runs the
    estimation in Python and deconvolves the window: that one call takes
    about 10-20 ms and allocates.

    **Projections.** ``time_averages``, ``time_std``, ``time_kurtosis`` and
    :meth:`moment_state` cover every frame seen so far, over all channels,
    shaped ``(Z, Y, X, C)`` like :attr:`ImagingDataset.time_averages
    <sima_fast.imaging.ImagingDataset.time_averages>` (``C = 1`` for 2-D and
    3-D frames). Asking for them first folds the pending frames (up to
    ``B`` per pixel), so they equal the offline projections of the same
    frames to rounding (1e-10 relative on uint16).

    **Spikes.** Per ROI, with decay ``γ``, penalty ``λ`` and baseline ``b``,
    the solver minimises ``½ Σ_obs (y_t − b − c_t)² + λ Σ_{t≥1} s_t`` over
    ``c_0 ≥ 0`` and ``s_t = c_t − γ c_{t−1} ≥ 0`` on the samples so far (the
    penalised problem of docs/contract.md#the-optimisation-problem with a
    fixed ``λ`` and ``b``; missing samples only leave the squared error), by
    the online pool-adjacent violators algorithm of Friedrich, Zhou & Paninski
    (2017). After frame
    ``t`` the spikes and calcium of frames ``<= t − lag`` are *final*: the
    pool of samples that starts at ``t − lag`` is frozen and later data can
    no longer change it (:attr:`n_final` counts the final frames). Later
    frames are *provisional*: their values are the exact minimiser for the
    data so far given the frozen part, and change as frames arrive. Freezing
    is where the online answer can differ from the offline one: a frozen
    pool misses the influence of data more than ``lag`` frames after its
    start, which enters with weights ``γ^lag`` or less (about ``1e-4`` for
    ``lag`` = 9 decay times). With ``lag`` at least the number of frames,
    nothing freezes and :meth:`spikes` is the offline solution. The spike
    at frame 0 is always 0 (the initial calcium is free).

    **Parameters.** Given ones are used as they are. Missing ones are
    estimated once, when frame ``estimate_frames`` has been extracted, from
    the values of the first ``estimate_frames`` frames: ``γ`` and ``σ`` by
    :func:`sima_fast.spikes.estimate_roi_parameters`
    (docs/contract.md#parameter-estimation: ``γ`` from the lag-3/lag-2
    autocovariance ratio, shared as the median over ROIs; ``σ``
    in the ``'correct'`` mode, with its documented repairs and warnings),
    ``b`` as the median of the ROI's values, and ``λ = penalty_scale · σ /
    √(1 − γ²)``. That rule sets ``λ`` to ``penalty_scale`` standard
    deviations of ``Σ_{t≥τ} γ^(t−τ) ε_t``, the quantity a spike at ``τ`` must
    exceed in pure noise of level ``σ``. Until then no frame is deconvolved;
    afterwards the window is deconvolved at once and every frame as it
    comes. ROIs with fewer than 8 finite values in the window (and empty
    ROIs) get NaN parameters, spikes and calcium.

    References
    ----------
    J. Friedrich, P. Zhou, L. Paninski, "Fast online deconvolution of calcium
    imaging data", PLoS Comput Biol 13(3): e1005423 (2017),
    https://doi.org/10.1371/journal.pcbi.1005423.

    Examples
    --------
    >>> import numpy as np
    >>> from sima_fast.ROI import ROI
    >>> mask = np.zeros((8, 8), dtype=bool)
    >>> mask[2:5, 2:5] = True
    >>> online = OnlineExtractor([ROI(mask=mask)], (8, 8), dtype='float32',
    ...                          gamma=0.5, penalty=0.1, baseline=0.0, lag=3)
    >>> frames = np.zeros((6, 8, 8), dtype=np.float32)
    >>> for t in range(2, 6):
    ...     frames[t, 2:5, 2:5] = 4.0 * 0.5 ** (t - 2)  # one spike at frame 2, then decay
    >>> for frame in frames:
    ...     values = online.update(frame)
    >>> online.raw
    array([[0. , 0. , 4. , 2. , 1. , 0.5]], dtype=float32)
    >>> online.n_final  # frames 0-2 are final, 3-5 provisional
    3
    >>> online.spikes().round(2)
    array([[0.  , 0.  , 3.92, 0.  , 0.  , 0.  ]], dtype=float32)
    >>> online.spikes_final.round(2), online.spikes_provisional.round(2)
    (array([[0.  , 0.  , 3.92]], dtype=float32), array([[0., 0., 0.]], dtype=float32))
    >>> float(online.time_averages[0, 3, 3, 0])  # (4 + 2 + 1 + 0.5) / 6
    1.25
    """

    def __init__(
        self,
        rois: Any,
        frame_shape: tuple[int, ...],
        *,
        signal_channel: int = 0,
        mean_frame: np.ndarray | None = None,
        gamma: float | np.ndarray | None = None,
        sigma: float | np.ndarray | None = None,
        penalty: float | np.ndarray | None = None,
        baseline: float | np.ndarray | None = None,
        dtype: Any = "uint16",
        remove_overlap: bool = True,
        lag: int = 100,
        max_frames: int = 10_000,
        estimate_frames: int = 200,
        penalty_scale: float = PENALTY_SCALE,
        moment_batch: int | None = None,
        warmup: bool = True,
        motion: OnlineRegistrar | None = None,
    ) -> None:
        from sima_fast.extract import ExtractionWeights

        self.frame_shape = check_frame_shape("frame_shape", frame_shape)
        ndim = len(self.frame_shape)
        Z, Y, X = (1, *self.frame_shape) if ndim == 2 else self.frame_shape[:3]
        C = self.frame_shape[3] if ndim == 4 else 1
        self._zyxc = (Z, Y, X, C)
        if isinstance(signal_channel, bool) or not isinstance(signal_channel, (int, np.integer)):
            raise TypeError(f"signal_channel must be an int, got {signal_channel!r}")
        if not -C <= signal_channel < C:
            raise ValueError(
                f"signal_channel {signal_channel} is out of range for frames with {C} channel(s)"
            )
        self.signal_channel = int(signal_channel) % C
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as err:
            raise TypeError(f"dtype must be one of {DTYPES}, got {dtype!r}") from err
        if self.dtype.name not in DTYPES or not self.dtype.isnative:
            raise TypeError(f"dtype must be one of {DTYPES} (native byte order), got {dtype!r}")
        self.motion = self._check_motion(motion)
        # the dtype of the frames the kernels see: the registered frames' with motion
        self._stage_dtype = self.dtype if self.motion is None else np.dtype(np.float32)
        self.lag = check_int("lag", lag, low=0)
        self.max_frames = check_int("max_frames", max_frames, low=1)
        if moment_batch is None:
            frame_bytes = int(np.prod(self.frame_shape)) * self._stage_dtype.itemsize
            moment_batch = int(min(64, max(1, RING_BYTES // frame_bytes)))
        batch = check_int("moment_batch", moment_batch, low=1)
        self.penalty_scale = check_real("penalty_scale", penalty_scale, low=0.0)
        remove_overlap = check_bool("remove_overlap", remove_overlap)
        warmup = check_bool("warmup", warmup)

        mean = self._check_mean_frame(mean_frame, (Z, Y, X))
        self.weights = ExtractionWeights(rois, (Z, Y, X), mean, remove_overlap)
        n = self.n_rois = self.weights.n_rois
        self._pinv = self.weights.pinv_base is not None
        # Masked pixels without a usable mean are missing in every frame: with the
        # pseudo-inverse path every frame then goes through it, as in extract().
        self._pinv_always = self._pinv and not bool(
            np.isfinite(self.weights.inv_mu[self.weights.pinv_pixels]).all()
        )

        # AR(1) parameters: given, or estimated after `estimate_frames` frames
        self._given = {
            "gamma": None if gamma is None else _per_roi(gamma, n, "gamma", 0.0, 1.0, False),
            "sigma": None if sigma is None else _per_roi(sigma, n, "sigma", 0.0, np.inf, True),
            "penalty": None
            if penalty is None
            else _per_roi(penalty, n, "penalty", 0.0, np.inf, True),
            "baseline": None
            if baseline is None
            else _per_roi(baseline, n, "baseline", -np.inf, np.inf, False),
        }
        if sigma is not None and penalty is not None:
            raise ValueError("give sigma or penalty, not both (penalty is derived from sigma)")
        self._estimate_at = 0
        missing = [k for k in ("gamma", "baseline") if self._given[k] is None]
        if sigma is None and penalty is None:
            missing.append("sigma")
        if missing:
            self._estimate_at = check_int("estimate_frames", estimate_frames, low=8)
            if self._estimate_at > self.max_frames:
                raise ValueError(
                    f"estimate_frames ({self._estimate_at}) must not exceed max_frames "
                    f"({self.max_frames}): the window is read back from the history"
                )

        from sima_fast.kernels import online as kern

        self._kern = kern
        self._update_kernel = {2: kern.update_2d, 3: kern.update_3d, 4: kern.update_4d}[ndim]
        self._buffers = _Buffers(
            self.weights.plan, self._stage_dtype, (Z, Y, X, C), n, self.lag, self.max_frames, batch
        )
        # the shift of every kept frame (a ring, as the ROI values' history)
        self._shifts = None if self.motion is None else np.full((self.max_frames, Z, 2), np.nan)
        b = self._buffers
        b.counters[kern.COUNTERS["signal_channel"]] = self.signal_channel
        self._sigma = np.full(n, np.nan) if self._given["sigma"] is None else self._given["sigma"]
        if not missing:
            self._set_parameters(self._given["gamma"], self._given["baseline"])
        self._args = b.kernel_args()
        self._ar_args = b.ar_args()
        self._run_ar = not self._pinv
        self._n = 0
        self._loader: threading.Thread | None = None
        if warmup:
            self.warmup()

    # -- validation -----------------------------------------------------------------------

    def _check_motion(self, motion: Any) -> OnlineRegistrar | None:
        if motion is None:
            return None
        if not isinstance(motion, OnlineRegistrar):
            raise ArgumentTypeError(
                f"motion must be an OnlineRegistrar or None, got {type(motion).__name__}"
            )
        if motion.frame_shape != self.frame_shape:
            raise ValueError(
                f"motion was prepared for frames of shape {motion.frame_shape}, but "
                f"frame_shape is {self.frame_shape}"
            )
        if motion.dtype != self.dtype:
            raise ValueError(
                f"motion was prepared for {motion.dtype} frames, but dtype is {self.dtype}"
            )
        return motion

    def _check_mean_frame(self, mean_frame: Any, zyx: tuple[int, int, int]) -> np.ndarray | None:
        if mean_frame is None:
            return None
        mean = np.asarray(mean_frame, dtype=np.float64)
        Z, Y, X, C = self._zyxc
        if mean.shape == (Z, Y, X, C):
            mean = mean[..., self.signal_channel]
        elif mean.shape == (Y, X) and Z == 1:
            mean = mean[None]
        if mean.shape != zyx:
            raise ValueError(
                f"mean_frame has shape {np.shape(mean_frame)}; expected (Z, Y, X) = {zyx}"
                + (f" or (Y, X) = {zyx[1:]}" if Z == 1 else "")
                + f" or (Z, Y, X, C) = {self._zyxc}"
            )
        return mean

    # -- the per-frame step ---------------------------------------------------------------

    def update(self, frame: np.ndarray) -> np.ndarray:
        """Process one frame; return the ROI values of this frame.

        Parameters
        ----------
        frame : numpy.ndarray
            One frame of shape ``frame_shape`` and dtype ``dtype``, in any
            memory layout (views into a larger buffer, shared memory or a
            memory-mapped file are fine; the frame is copied before this
            returns, so the caller may reuse its memory at once).

        Returns
        -------
        numpy.ndarray, float32, shape (n_rois,)
            The values of this frame. This is the same array at every call,
            overwritten by the next one: copy it to keep it. All frames'
            values are in :attr:`raw`.

        Raises
        ------
        TypeError
            If ``frame`` is not a numpy array of the declared dtype.
        ValueError
            If ``frame`` does not have the declared shape.

        Notes
        -----
        With ``motion``, the frame is registered first (its shift is
        recorded in :attr:`shifts`) and the registered frame is processed.
        """
        if not isinstance(frame, np.ndarray):
            raise TypeError(f"frame must be a numpy.ndarray, got {type(frame).__name__}")
        if frame.dtype is not self.dtype and frame.dtype != self.dtype:
            raise TypeError(
                f"frame has dtype {frame.dtype}, but this OnlineExtractor was prepared for "
                f"{self.dtype} (frames are not converted: pass dtype= to match)"
            )
        if frame.shape != self.frame_shape:
            raise ValueError(
                f"frame has shape {frame.shape}, but this OnlineExtractor was prepared for "
                f"frames of shape {self.frame_shape}"
            )
        if self.motion is not None:
            shift, frame = self.motion.register(frame)
            self._shifts[self._n % self.max_frames] = shift
        self._update_kernel(frame, *self._args, self._run_ar)
        self._n += 1
        if self._pinv:
            self._pinv_step()
        if self._n == self._estimate_at:
            self._estimate()
        return self._buffers.latest

    def _pinv_step(self) -> None:
        """Re-extract a frame with missing masked pixels through the pseudo-inverse path."""
        b = self._buffers
        kern = self._kern
        if self._pinv_always or b.counters[kern.COUNTERS["partial"]]:
            t = self._n - 1
            ring = b.ring[self.signal_channel, t % b.ring.shape[1]]
            row = b.hist[0, t % b.hist.shape[1]]
            self.weights.pinv_extract(ring[None, :], row[None, :])
            b.latest[:] = row
        kern.ar_step(*self._ar_args)

    # -- parameters -------------------------------------------------------------------------

    def _set_parameters(self, gamma: np.ndarray, baseline: np.ndarray) -> None:
        penalty = self._given["penalty"]
        if penalty is None:
            with np.errstate(invalid="ignore"):
                penalty = self.penalty_scale * self._sigma / np.sqrt(1.0 - gamma * gamma)
        gamma = np.where(self.weights.empty, np.nan, gamma)  # empty ROIs: NaN spikes
        b = self._buffers
        b.params[:, 0] = gamma
        b.params[:, 1] = penalty
        b.params[:, 2] = baseline
        b.counters[self._kern.COUNTERS["ar_ready"]] = 1

    def _estimate(self) -> None:
        """Estimate the missing parameters from the first frames; deconvolve them."""
        if self._loader is not None:
            self._loader.join()
        from sima_fast.spikes import MIN_SAMPLES, estimate_roi_parameters

        b = self._buffers
        window = b.hist[0, : self._estimate_at].T.astype(np.float64)  # (n_rois, W)
        ok = np.isfinite(window).sum(axis=1) >= MIN_SAMPLES
        n = self.n_rois
        gamma = np.full(n, np.nan)
        baseline = np.full(n, np.nan)
        if self._given["baseline"] is not None:
            baseline[ok] = self._given["baseline"][ok]
        elif ok.any():
            baseline[ok] = np.nanmedian(window[ok], axis=1)
        given_gamma = self._given["gamma"]
        need_sigma = self._given["sigma"] is None and self._given["penalty"] is None
        if ok.any():
            if given_gamma is None or need_sigma:
                est = estimate_roi_parameters(
                    [window[ok]],
                    gamma=None if given_gamma is None else given_gamma[ok],
                    share_gamma=True,
                    mode="correct",
                    sigma=None if need_sigma else np.ones(int(ok.sum())),
                )
                gamma[ok] = est["gamma"]
                if need_sigma:
                    self._sigma = np.full(n, np.nan)
                    self._sigma[ok] = est["sigma"]
            else:
                gamma[ok] = given_gamma[ok]
        self._set_parameters(gamma, baseline)
        self._kern.ar_backlog(*self._ar_args)

    @property
    def parameters(self) -> dict[str, np.ndarray]:
        """The AR(1) parameters per ROI: ``gamma``, ``sigma``, ``penalty``, ``baseline``.

        NaN until they are estimated (and ``sigma`` stays NaN when ``penalty``
        was given).
        """
        p = self._buffers.params
        return {
            "gamma": p[:, 0].copy(),
            "sigma": self._sigma.copy(),
            "penalty": p[:, 1].copy(),
            "baseline": p[:, 2].copy(),
        }

    # -- outputs ----------------------------------------------------------------------------

    @property
    def n_frames(self) -> int:
        """Frames processed so far."""
        return self._n

    @property
    def first_frame(self) -> int:
        """Index of the oldest frame still in the history (``max(0, n_frames - max_frames)``)."""
        return max(0, self._n - self.max_frames)

    @property
    def n_final(self) -> int:
        """Number of frames (from the first) whose spikes and calcium are final."""
        done = int(self._buffers.counters[self._kern.COUNTERS["ar_samples"]])
        return max(0, done - self.lag)

    def _history(self, kind: int) -> np.ndarray:
        """Rows ``first_frame .. n_frames - 1`` of history ring ``kind``, as (n_rois, K)."""
        H = self.max_frames
        idx = np.arange(self.first_frame, self._n) % H
        return self._buffers.hist[kind][idx].T.copy()

    @property
    def shifts(self) -> np.ndarray | None:
        """Shifts of the kept frames (with ``motion``), ``(n_frames - first_frame, Z, 2)`` float64.

        Aligned with :attr:`raw`: row ``k`` holds the ``(dy, dx)`` of every
        plane of frame ``first_frame + k``, as ``motion.register`` returned
        it (the registered frame is ``frame(p - shift)``). None without
        ``motion``.
        """
        if self._shifts is None:
            return None
        idx = np.arange(self.first_frame, self._n) % self.max_frames
        return self._shifts[idx]

    @property
    def raw(self) -> np.ndarray:
        """ROI values of the kept frames, ``(n_rois, n_frames - first_frame)`` float32.

        The layout of one sequence of ``extract()['raw']``: row ``i`` is ROI
        ``i``, column ``k`` is frame ``first_frame + k``.
        """
        return self._history(0)

    def _deconvolved(self, kind: int, final_only: bool) -> np.ndarray:
        final_only = check_bool("final_only", final_only)
        out = self._history(kind)
        first, n_final = self.first_frame, self.n_final
        out[:, max(0, n_final - first) :] = np.nan
        if final_only:
            return out
        b = self._buffers
        width = self._kern.ar_provisional(*b.provisional_args())
        values = (b.prov_spikes if kind == 1 else b.prov_calcium)[:, :width]
        lo = max(n_final, first)
        out[:, lo - first : n_final + width - first] = values[:, lo - n_final :]
        return out

    def spikes(self, final_only: bool = False) -> np.ndarray:
        """Spike estimates of the kept frames, aligned with :attr:`raw`.

        Parameters
        ----------
        final_only : bool
            Put NaN where the estimate is still provisional (frames from
            :attr:`n_final` on).

        Returns
        -------
        numpy.ndarray, float32, shape (n_rois, n_frames - first_frame)
            ``s_t`` in units of the ROI values (not normalised), final for
            frames before :attr:`n_final` and provisional after; NaN for
            frames not deconvolved yet (before the parameters are estimated)
            and for ROIs without parameters.
        """
        return self._deconvolved(1, final_only)

    def calcium(self, final_only: bool = False) -> np.ndarray:
        """Return the denoised calcium ``c_t`` (without the baseline) of the kept frames.

        Aligned with :attr:`raw` and :meth:`spikes`.

        Parameters
        ----------
        final_only : bool
            Put NaN where the estimate is still provisional (frames from
            :attr:`n_final` on).

        Returns
        -------
        numpy.ndarray, float32, shape (n_rois, n_frames - first_frame)
            ``c_t`` in units of the ROI values, final for frames before
            :attr:`n_final` and provisional after; NaN for frames not
            deconvolved yet and for ROIs without parameters.
        """
        return self._deconvolved(2, final_only)

    @property
    def spikes_final(self) -> np.ndarray:
        """Final spikes of the kept frames before :attr:`n_final`, ``(n_rois, k)``."""
        return self._deconvolved(1, True)[:, : max(0, self.n_final - self.first_frame)]

    @property
    def spikes_provisional(self) -> np.ndarray:
        """Current estimates for frames :attr:`n_final` .. ``n_frames - 1``, ``(n_rois, k)``.

        NaN for frames not deconvolved yet (before parameter estimation).
        """
        start = max(0, self.n_final - self.first_frame)
        return self._deconvolved(1, False)[:, start:]

    # -- moments ----------------------------------------------------------------------------

    def moment_state(self) -> MomentState:
        """Return the moments of every frame seen so far, as ``(Z, Y, X, C)`` arrays (copies).

        Merge it with the state of other data (``state.merge(other)``) to
        combine online and offline projections.

        Returns
        -------
        MomentState
            The running moments of every pixel and channel over the
            :attr:`n_frames` frames given to :meth:`update`.
        """
        b = self._buffers
        self._kern.flush_moments(b.ring, b.mom, b.pending, b.mscratch, b.counters)
        Z, Y, X, C = self._zyxc
        arrays = [np.ascontiguousarray(np.moveaxis(a.reshape(C, Z, Y, X), 0, -1)) for a in b.mom]
        return MomentState(*arrays, frames=self._n)

    @property
    def time_averages(self) -> np.ndarray:
        """Mean of every pixel and channel over the frames so far, ``(Z, Y, X, C)``."""
        return self.moment_state().mean_value()

    @property
    def time_std(self) -> np.ndarray:
        """Population standard deviation (ddof 0) so far, ``(Z, Y, X, C)``."""
        return self.moment_state().std()

    @property
    def time_kurtosis(self) -> np.ndarray:
        """Pearson kurtosis ``m4 / m2²`` so far (NaN for constant pixels), ``(Z, Y, X, C)``."""
        return self.moment_state().kurtosis()

    # -- compilation ------------------------------------------------------------------------

    def warmup(self) -> float:
        """Compile (or load from numba's cache) every kernel this object calls.

        The kernels run on a small private copy of the buffers, so the state
        is untouched. Frames in C order, in other layouts (views) and
        read-only ones are all prepared, so no frame triggers compilation.
        When some AR(1) parameter is to be estimated, the estimators' imports
        (``scipy.signal``, about half a second) start in a background thread,
        so that the frame completing the estimation window does not wait.

        Returns
        -------
        float
            Seconds taken.
        """
        start = time.perf_counter()
        kern = self._kern
        C = self._zyxc[3]
        tiny_shape = {2: (2, 3), 3: (1, 2, 3), 4: (1, 2, 3, C)}[len(self.frame_shape)]
        tiny_zyxc = (1, 2, 3, C)
        from sima_fast.kernels.extract import runs_from_csr

        plan = runs_from_csr([0, 2], [0, 1], [0.5, 0.5], [0.5, 0.5])
        tiny = _Buffers(plan, self._stage_dtype, tiny_zyxc, 1, 2, 8, 2)
        tiny.params[:] = [[0.5, 0.1, 0.0]]
        tiny.counters[kern.COUNTERS["ar_ready"]] = 1
        stage = self._stage_dtype
        wide = np.zeros((*tiny_shape[:-1], 2 * tiny_shape[-1]), dtype=stage)
        frames = [np.zeros(tiny_shape, dtype=stage), wide[..., ::2]]
        for f in frames[:2]:
            ro = f.view()
            ro.flags.writeable = False
            frames.append(ro)
        args = tiny.kernel_args()
        for f in frames:
            self._update_kernel(f, *args, True)
            self._update_kernel(f, *args, False)
        ar = tiny.ar_args()
        kern.ar_step(*ar)
        kern.ar_backlog(*ar)
        kern.ar_provisional(*tiny.provisional_args())
        kern.flush_moments(tiny.ring, tiny.mom, tiny.pending, tiny.mscratch, tiny.counters)
        if self.motion is not None:
            self.motion.warmup()
        pending = self._estimate_at and not self._buffers.counters[kern.COUNTERS["ar_ready"]]
        if pending and self._loader is None:
            # The estimators' noise fallback needs scipy.signal, whose import takes about
            # half a second: load it in the background while frames arrive.
            self._loader = threading.Thread(
                target=_load_estimators, name="sima_fast-online-estimators", daemon=True
            )
            self._loader.start()
        return time.perf_counter() - start

    def __repr__(self) -> str:
        """Return ``<OnlineExtractor: n ROIs, frames ..., n_frames=..., n_final=..., lag=...>``."""
        return (
            f"<OnlineExtractor: {self.n_rois} ROIs, frames {self.frame_shape} {self.dtype}, "
            f"n_frames={self._n}, n_final={self.n_final}, lag={self.lag}>"
        )


def _load_estimators() -> None:
    """Import what parameter estimation needs (run in a background thread)."""
    import scipy.signal  # noqa: F401  (the 'psd' noise estimate)

    import sima_fast.spikes  # noqa: F401


class _Buffers:
    """Every array the kernels of :mod:`sima_fast.kernels.online` read and write."""

    def __init__(
        self,
        plan: Any,
        dtype: np.dtype,
        zyxc: tuple[int, int, int, int],
        n_rois: int,
        lag: int,
        max_frames: int,
        batch: int,
    ) -> None:
        from sima_fast.kernels.online import COUNTERS, chunk_runs

        Z, Y, X, C = zyxc
        P = Z * Y * X
        batch = min(batch, max(1, P))
        block = -(-P // batch)
        cap = lag + 1
        self.ring = np.zeros((C, batch, P), dtype=dtype)
        self.mom = np.zeros((5, C, P))
        self.pending = np.zeros(batch, dtype=np.int64)
        self.mscratch = np.zeros((6, min(block, FOLD_PIECE)))
        ptr, start, a, w2 = chunk_runs(
            plan.roi_ptr, plan.run_start, plan.run_length, plan.run_offset, plan.weights,
            plan.reweight, P,
        )  # fmt: skip
        self.plan_i = (ptr, start)
        self.plan_f = (a, w2, np.ascontiguousarray(plan.total, dtype=np.float64))
        self.hist = np.full((3, max_frames, n_rois), np.nan, dtype=np.float32)
        self.latest = np.full(n_rois, np.nan, dtype=np.float32)
        self.params = np.full((n_rois, 3), np.nan)
        self.pools_f = np.zeros((n_rois, cap, 4))
        self.pools_i = np.zeros((n_rois, cap, 2), dtype=np.int64)
        self.roi_f = np.zeros((n_rois, 3))
        self.roi_i = np.zeros((n_rois, 3), dtype=np.int64)
        self.roi_i[:, 2] = -1  # no frozen pool yet
        self.counters = np.zeros(len(COUNTERS), dtype=np.int64)
        self.counters[COUNTERS["lag"]] = lag
        self.counters[COUNTERS["block"]] = block
        self.counters[COUNTERS["is_float"]] = np.dtype(dtype).kind == "f"
        self.prov_spikes = np.zeros((n_rois, cap))
        self.prov_calcium = np.zeros((n_rois, cap))
        self.work_f = np.zeros((cap, 4))
        self.work_i = np.zeros((cap, 2), dtype=np.int64)

    def kernel_args(self) -> tuple:
        return (
            self.ring, self.mom, self.pending, self.mscratch, self.plan_i, self.plan_f,
            self.hist, self.latest, self.params, self.pools_f, self.pools_i, self.roi_f,
            self.roi_i, self.counters,
        )  # fmt: skip

    def ar_args(self) -> tuple:
        return (
            self.params, self.pools_f, self.pools_i, self.roi_f, self.roi_i, self.hist,
            self.counters,
        )  # fmt: skip

    def provisional_args(self) -> tuple:
        return (
            self.params, self.pools_f, self.pools_i, self.roi_f, self.roi_i, self.counters,
            self.prov_spikes, self.prov_calcium, self.work_f, self.work_i,
        )  # fmt: skip

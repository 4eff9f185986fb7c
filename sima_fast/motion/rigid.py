"""Rigid motion correction: whole-frame translations per plane or per volume.

- :class:`PlaneTranslation2D`: whole-pixel translation of each plane by
  cross-correlation (SIMA's strategy of that name);
- :class:`DiscreteFourier2D`: phase correlation, whole or sub-pixel
  (``upsample_factor``), with SIMA's parameters;
- :class:`RigidRegistration2D`: sub-pixel phase correlation with a spatial
  taper and a smoothed, whitened cross-power spectrum (the registration of
  Pachitariu et al. 2017), corrected by interpolation;
- :class:`VolumeTranslation`: whole-pixel 3-D translation of each volume;
- :class:`ResonantCorrection`: wraps another strategy for resonant-scanner
  data, whose even and odd rows are scanned in opposite directions.

Every strategy builds its reference image from the data (a seed of
mutually similar frames among a sample, refined by aligning the sample to
it and averaging, a few times) unless given one (``reference=``), then
registers every frame against it in blocks of frames
(:class:`sima_fast.registration.RigidRegistrar`). Conventions and
differences from SIMA: docs/motion.md.
"""

from __future__ import annotations

import abc
import importlib
from typing import Any

import numpy as np

from sima_fast._validate import ArgumentTypeError, check_bool, check_int, check_real
from sima_fast.motion.base import (
    MotionEstimationStrategy,
    check_max_displacement,
    check_max_displacement_fits,
    check_reference,
    check_reference_shape,
    iter_estimation_chunks,
)

__all__ = [
    "DiscreteFourier2D",
    "PlaneTranslation2D",
    "ResonantCorrection",
    "RigidRegistration2D",
    "VolumeTranslation",
    "sample_frames",
]

_SEED_NEIGHBOURS = 10  # frames averaged into the seed of a reference
_BIN_ABOVE = 128  # frames at least this wide (px) are compared 2×2-binned for the seed


def sample_frames(sequences: list, num: int, randomise: bool = False, seed: int = 0) -> np.ndarray:
    """Read a sample of frames spread over all sequences, channels summed.

    Parameters
    ----------
    sequences : list of Sequence
        The sequences (already restricted to the channels to use).
    num : int
        Frames wanted (fewer when the sequences hold fewer).
    randomise : bool, optional
        Pick frames at random (reproducibly, from ``seed``) rather than
        evenly spaced.
    seed : int, optional
        Seed of the random choice.

    Returns
    -------
    numpy.ndarray of float64, shape (n, Z, Y, X)
    """
    index = [(i, t) for i, s in enumerate(sequences) for t in range(len(s))]
    if len(index) > num:
        if randomise:
            pick = np.sort(np.random.default_rng(seed).choice(len(index), num, replace=False))
        else:
            pick = np.unique(np.linspace(0, len(index) - 1, num).round().astype(int))
        index = [index[k] for k in pick]
    out = np.empty((len(index), *sequences[0].shape[1:4]))
    for k, (i, t) in enumerate(index):
        out[k] = sequences[i].read_chunk(t, t + 1)[0].sum(axis=-1, dtype=np.float64)
    return out


def _shift_stack(frames: np.ndarray, shifts: np.ndarray, integer: bool) -> np.ndarray:
    """Move each image of ``frames`` (n, Y, X) by its shift; NaN where nothing lands."""
    if not integer:
        from sima_fast.kernels.online import shift_images

        out = np.empty(frames.shape, dtype=np.float32)
        return shift_images(frames, np.asarray(shifts, dtype=np.float64), out, np.nan)
    out = np.full(frames.shape, np.nan)
    n, ny, nx = frames.shape
    for k in range(n):
        dy, dx = (int(v) for v in np.round(shifts[k]))
        ys, yd = slice(max(0, -dy), min(ny, ny - dy)), slice(max(0, dy), min(ny, ny + dy))
        xs, xd = slice(max(0, -dx), min(nx, nx - dx)), slice(max(0, dx), min(nx, nx + dx))
        out[k, yd, xd] = frames[k, ys, xs]
    return out


def _mean_image(frames: np.ndarray) -> np.ndarray:
    """NaN-ignoring mean over the first axis; pixels never seen get the overall mean."""
    from sima_fast.kernels.motion import mean_finite

    mean = mean_finite(frames, np.empty(frames.shape[1:]))
    if not np.isfinite(mean).any():
        return np.zeros(mean.shape)
    mean[~np.isfinite(mean)] = np.nanmean(mean)
    return mean


def _binned(sample: np.ndarray) -> np.ndarray:
    """Sum 2×2 blocks of large images (n, Y, X), to compare frames at a quarter of the cost."""
    ny, nx = sample.shape[1:]
    if min(ny, nx) < _BIN_ABOVE:
        return sample
    y2, x2 = ny - ny % 2, nx - nx % 2
    return (
        sample[:, 0:y2:2, 0:x2:2]
        + sample[:, 1:y2:2, 0:x2:2]
        + sample[:, 0:y2:2, 1:x2:2]
        + sample[:, 1:y2:2, 1:x2:2]
    )


def _seed(sample: np.ndarray) -> np.ndarray:
    """Mean of the frames most alike: the frame with the most similar neighbours, and those."""
    n = sample.shape[0]
    flat = _binned(sample).reshape(n, -1).astype(np.float64)
    for row in flat:
        bad = ~np.isfinite(row)
        row[bad] = np.nanmean(row) if not bad.all() else 0.0
    flat -= flat.mean(axis=1, keepdims=True)
    norm = np.sqrt((flat * flat).sum(axis=1))
    norm[norm == 0] = 1.0
    flat /= norm[:, None]
    cc = flat @ flat.T
    k = max(1, min(_SEED_NEIGHBOURS, n // 5))
    top = np.argsort(-cc, axis=1)[:, :k]
    score = np.take_along_axis(cc, top, axis=1).mean(axis=1)
    return _mean_image(sample[top[int(np.argmax(score))]])


def build_reference_2d(
    sample: np.ndarray,
    make_registrar: Any,
    integer: bool,
    iterations: int = 3,
    tolerance: float = 0.0,
) -> np.ndarray:
    """Build a reference image of one plane from a sample of its frames.

    Parameters
    ----------
    sample : numpy.ndarray, shape (n, Y, X)
        The frames (NaN marks unobserved pixels).
    make_registrar : callable
        ``make_registrar(reference)`` returns an object whose
        ``register(frames)`` gives ``(n, 3)`` ``(dy, dx, peak)``.
    integer : bool
        Align the sample by whole pixels (else by interpolation).
    iterations : int, optional
        Rounds of aligning the sample and averaging it.
    tolerance : float, optional
        Stop early when the mean change of the sample's shifts between two
        rounds is below this (px).

    Returns
    -------
    numpy.ndarray of float64, shape (Y, X)
        Finite everywhere.
    """
    ref = _seed(sample)
    previous = None
    for _ in range(iterations):
        shifts = make_registrar(ref).register(sample)[:, :2]
        centre = np.median(shifts, axis=0)  # keep the reference where the sample is
        if integer:
            # round the frames' shifts and their centre apart: rounding the
            # differences would split a half-pixel centre unevenly (2.5 -> 2,
            # -2.5 -> -2) and blur a reference of two frames
            shifts, centre = np.round(shifts), np.round(centre)
        shifts = shifts - centre
        ref = _mean_image(_shift_stack(sample, shifts, integer))
        if previous is not None and np.abs(shifts - previous).mean() < tolerance:
            break
        previous = shifts
    return ref


class _PlaneStrategy(MotionEstimationStrategy):
    """Per-plane rigid registration against a reference built from the data (or given)."""

    integer = True

    def _setup(
        self,
        max_displacement: Any,
        n_processes: Any,
        reference: Any,
        num_reference_frames: int = 50,
        iterations: int = 3,
    ) -> None:
        self._max_displacement = check_max_displacement(max_displacement, 2)
        self._n_processes = check_int("n_processes", n_processes, low=1)
        self._reference = check_reference(reference)
        self._num_reference_frames = num_reference_frames
        self._iterations = iterations

    @abc.abstractmethod
    def _registrar(self, reference: np.ndarray) -> Any:
        """Return a RigidRegistrar on ``reference`` with this strategy's options."""

    def _preprocess(self, frames: np.ndarray) -> np.ndarray:
        """Filter frames (n, Y, X) before registration (none by default)."""
        return frames

    def _reads_raw(self) -> bool:
        """Whether the registrar reads the frames in their own dtype (no float copy)."""
        return False

    def _sample(self, sequences: list) -> np.ndarray:
        return sample_frames(sequences, self._num_reference_frames)

    def _plane_reference(self, sample: np.ndarray) -> np.ndarray:
        return build_reference_2d(sample, self._registrar, self.integer, self._iterations)

    def _range_setup(self, dataset: Any) -> list:
        """Fix the (preprocessed) reference of every plane before any frame is registered."""
        Z, Y, X, _ = dataset.frame_shape
        check_max_displacement_fits(self._max_displacement, (Y, X))
        check_reference_shape(self._reference, dataset.frame_shape)
        if self._reference is not None:
            return [self._preprocess(self._reference[z][None])[0] for z in range(Z)]
        sample = self._sample(list(dataset.sequences))
        return [self._plane_reference(self._preprocess(sample[:, z])) for z in range(Z)]

    def _estimate_range(self, setup: Any, sequence: Any, t0: int, t1: int) -> np.ndarray:
        """``(t1 - t0, Z, 2)`` float shifts of frames ``t0:t1`` against the plane references."""
        registrars = [self._registrar(r) for r in setup]
        d = np.zeros((t1 - t0, len(setup), 2))
        raw = self._reads_raw()
        for t, block in iter_estimation_chunks(sequence, start=t0, stop=t1, raw=raw):
            for z, registrar in enumerate(registrars):
                frames = self._preprocess(block[:, z])
                d[t - t0 : t - t0 + len(block), z] = registrar.register(frames)[:, :2]
        return d

    def _estimate(self, dataset: Any) -> list:
        setup = self._range_setup(dataset)
        parts = [self._estimate_range(setup, s, 0, len(s)) for s in dataset.sequences]
        return self._finish_ranges(dataset, setup, parts)

    def _finish_ranges(self, dataset: Any, setup: Any, displacements: list) -> list:
        """Align the planes' mean displacements (own references only) and round if whole-pixel."""
        out = displacements
        Z = dataset.frame_shape[0]
        if self._reference is None and Z > 1:
            # each plane's reference has its own origin: give every plane the
            # mean displacement of plane 0 (as SIMA aligns its planes)
            mean = np.concatenate(out).mean(axis=0)
            change = mean - mean[0]
            if self.integer:
                change = np.round(change)
            out = [d - change for d in out]
        if self.integer:
            out = [np.round(d).astype(np.int64) for d in out]
        return out


class PlaneTranslation2D(_PlaneStrategy):
    """Whole-pixel translation of each plane, by cross-correlation with a reference.

    Parameters
    ----------
    max_displacement : int or (int, int), optional
        Largest displacement magnitude ``[y, x]`` (px) from the reference;
        default: any (up to half the frame).
    method : {'correlation', 'phase'}, optional
        ``'correlation'`` (default): cross-correlation of the mean-subtracted,
        tapered frames; ``'phase'``: phase correlation (whitened).
    n_processes : int, optional
        Threads of the FFTs (default 1).
    reference : array_like, optional
        ``(Y, X)`` or ``(Z, Y, X)`` reference image; default: built from the
        data.

    Raises
    ------
    ValueError
        An unknown ``method``, a negative ``max_displacement``, a reference
        with no finite pixel.
    ArgumentTypeError
        An argument of the wrong type.

    Examples
    --------
    >>> import numpy as np, sima_fast as sima
    >>> from scipy.ndimage import gaussian_filter
    >>> field = gaussian_filter(np.random.default_rng(0).random((60, 60)), 2)
    >>> frames = np.stack([field[10 - s:42 - s, 10:42] for s in (0, 3, 1)])
    >>> seq = sima.Sequence.create('ndarray', frames[:, None, :, :, None])
    >>> d = sima.motion.PlaneTranslation2D().estimate([seq])[0]
    >>> d[:, 0].tolist()
    [[3, 0], [0, 0], [2, 0]]
    """

    METHODS = ("correlation", "phase")

    def __init__(
        self,
        max_displacement: Any = None,
        method: str = "correlation",
        n_processes: int = 1,
        reference: Any = None,
    ) -> None:
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {list(self.METHODS)}, got {method!r}")
        self._method = method
        self._setup(max_displacement, n_processes, reference)

    def _registrar(self, reference: np.ndarray) -> Any:
        from sima_fast.registration import RigidRegistrar

        return RigidRegistrar(
            reference,
            whiten=self._method == "phase",
            smooth_sigma=1.5 if self._method == "phase" else 0.0,
            max_shift=self._max_displacement,
            workers=self._n_processes,
        )


class DiscreteFourier2D(_PlaneStrategy):
    """Phase-correlation registration of each plane, whole-pixel or sub-pixel.

    The reference is the mean of ``num_images_for_mean`` frames aligned to
    it, refined until their shifts change by less than ``err_thresh`` px on
    average or ``max_iterations`` rounds.

    Parameters
    ----------
    upsample_factor : int, optional
        Shifts are found to ``1 / upsample_factor`` px (default 1: whole
        pixels, integer displacements; above 1 the displacements are floats
        and the correction interpolates).
    max_displacement : int or (int, int), optional
        Largest displacement magnitude ``[y, x]`` from the reference.
    num_images_for_mean : int, optional
        Frames the reference is built from (default 100).
    randomise_frames : bool, optional
        Choose them at random (reproducibly) rather than evenly spaced
        (default True).
    err_thresh : float, optional
        Convergence threshold of the reference (px, default 0.01).
    max_iterations : int, optional
        Most refinement rounds of the reference (default 5).
    n_processes : int, optional
        Threads of the FFTs (default 1).
    verbose : bool, optional
        Print progress (default False).
    laplace : float, optional
        If positive, register ``|Laplacian(Gaussian(frame, laplace))|``
        instead of the frames, which removes static shading (default 0).
    reference : array_like, optional
        ``(Y, X)`` or ``(Z, Y, X)`` reference; default: built from the data.

    Raises
    ------
    ValueError, ArgumentTypeError
        A parameter out of range or of the wrong type (named).
    """

    def __init__(
        self,
        upsample_factor: int = 1,
        max_displacement: Any = None,
        num_images_for_mean: int = 100,
        randomise_frames: bool = True,
        err_thresh: float = 0.01,
        max_iterations: int = 5,
        n_processes: int = 1,
        verbose: bool = False,
        laplace: float = 0.0,
        reference: Any = None,
    ) -> None:
        self._upsample = check_int("upsample_factor", upsample_factor, low=1)
        num = check_int("num_images_for_mean", num_images_for_mean, low=1)
        self._randomise = check_bool("randomise_frames", randomise_frames)
        self._err_thresh = check_real("err_thresh", err_thresh, low=0.0)
        iterations = check_int("max_iterations", max_iterations, low=1)
        self._verbose = check_bool("verbose", verbose)
        self._laplace = check_real("laplace", laplace, low=0.0)
        self._setup(max_displacement, n_processes, reference, num, iterations)
        self.integer = self._upsample == 1

    def _registrar(self, reference: np.ndarray) -> Any:
        from sima_fast.registration import RigidRegistrar

        return RigidRegistrar(
            reference,
            whiten=True,
            smooth_sigma=1.5,
            max_shift=self._max_displacement,
            subpixel=None if self._upsample == 1 else "upsample",
            upsample=self._upsample,
            workers=self._n_processes,
        )

    def _preprocess(self, frames: np.ndarray) -> np.ndarray:
        if self._laplace <= 0:
            return frames
        from scipy.ndimage import gaussian_filter, laplace

        out = np.empty(frames.shape)
        for k, f in enumerate(frames):
            f = np.where(np.isfinite(f), f, np.nanmean(f) if np.isfinite(f).any() else 0.0)
            out[k] = np.abs(laplace(gaussian_filter(np.asarray(f, float), self._laplace)))
        return out

    def _sample(self, sequences: list) -> np.ndarray:
        return sample_frames(sequences, self._num_reference_frames, randomise=self._randomise)

    def _plane_reference(self, sample: np.ndarray) -> np.ndarray:
        ref = build_reference_2d(
            sample, self._registrar, self.integer, self._iterations, self._err_thresh
        )
        if self._verbose:
            print(f"DiscreteFourier2D: reference built from {len(sample)} frames")
        return ref

    def corrected_sequence(
        self, sequence: Any, displacements: np.ndarray, frame_shape: tuple[int, ...]
    ) -> Any:
        """Return the corrected view: whole-pixel moves, or interpolated for sub-pixel shifts.

        Parameters
        ----------
        sequence : Sequence
            The uncorrected sequence.
        displacements : numpy.ndarray
            ``(T, Z, 2)`` from :meth:`estimate`.
        frame_shape : tuple of int
            ``(Z, Y, X)`` of the corrected frames.

        Returns
        -------
        Sequence
        """
        if self.integer:
            return super().corrected_sequence(sequence, displacements, frame_shape)
        return warped_view(sequence, displacements, frame_shape)


def warped_view(
    sequence: Any,
    displacements: np.ndarray,
    frame_shape: tuple[int, ...],
    interpolation: str = "linear",
) -> Any:
    """Sub-pixel corrected view of a sequence (interpolated; NaN where nothing lands).

    Uses the ``'warped'`` sequence view (:mod:`sima_fast.sequence.warped`)
    where it is installed; without it, the displacements are rounded to
    whole pixels and applied by :meth:`Sequence.apply_displacements`.

    Parameters
    ----------
    sequence : Sequence
        The uncorrected sequence.
    displacements : numpy.ndarray
        ``(T, Z, 2)`` float displacements, all >= 0.
    frame_shape : tuple of int
        ``(Z, Y, X)`` of the corrected frames.
    interpolation : {'linear', 'cubic', 'nearest'}, optional
        The warped view's interpolation (default ``'linear'``).

    Returns
    -------
    Sequence
    """
    d = np.ma.filled(np.ma.asarray(displacements, dtype=np.float64), 0.0)
    shape = tuple(int(s) for s in frame_shape)
    try:
        module = importlib.import_module("sima_fast.sequence.warped")
    except ModuleNotFoundError:
        return sequence.apply_displacements(np.round(d).astype(np.int64), shape)
    return module.WarpedSequence(sequence, d, frame_shape=shape, interpolation=interpolation)


class RigidRegistration2D(_PlaneStrategy):
    """Sub-pixel rigid registration of each plane (tapered, smoothed phase correlation).

    Each frame is tapered at its edges (its weighted mean removed); its
    cross-power spectrum with the reference, which is made periodic rather
    than tapered (so the estimates are not pulled towards zero shift), is
    whitened and multiplied by a Gaussian (which smooths the correlation
    surface and damps the noise that whitening amplifies); the peak is
    refined by a three-point Gaussian fit. Frames are registered in blocks,
    in float32, on the kernels of :class:`sima_fast.OnlineRegistrar`
    (:class:`sima_fast.registration.BatchRegistrar`). The displacements are
    floats and the correction interpolates (bilinear; NaN where nothing
    lands).

    Parameters
    ----------
    max_displacement : float or (float, float), optional
        Largest displacement magnitude ``[y, x]`` from the reference;
        default: any (up to half the frame).
    reference : array_like, optional
        ``(Y, X)`` or ``(Z, Y, X)`` reference; default: built from the data.
    upsample : int, optional
        None (default): Gaussian peak fit. An integer above 1: evaluate the
        correlation on a ``1 / upsample`` px grid around the peak instead
        (slower, rarely more accurate once smoothed; uses the engine of
        ``recentre``).
    taper : float, optional
        Width (px) of the edge taper; default: an eighth of the smaller side,
        at least 32 px and at most a quarter of it (with ``recentre`` or
        ``upsample``: an eighth).
    smooth_sigma : float, optional
        Width (px) of the Gaussian smoothing of the correlation (default 1.5).
    recentre : bool, optional
        Use the earlier engine (:class:`sima_fast.registration.RigidRegistrar`,
        float64): frame and reference both tapered, then a second pass with
        each frame's taper moved by its shift. About as accurate, several
        times slower (default False).
    num_reference_frames : int, optional
        Frames sampled to build the reference (default 50).
    iterations : int, optional
        Rounds of aligning the sample and averaging it (default 3).
    n_processes : int, optional
        Threads of the registration, each registering a share of every block
        of frames (default 1).
    interpolation : {'cubic', 'linear', 'nearest'}, optional
        How :meth:`correct` resamples the frames (the warped view's
        interpolation): Keys' cubic convolution by default (the sharpest
        mean image), bilinear, or the nearest pixel.

    Raises
    ------
    ValueError, ArgumentTypeError
        A parameter out of range or of the wrong type (named).
    """

    integer = False

    def __init__(
        self,
        max_displacement: Any = None,
        reference: Any = None,
        upsample: int | None = None,
        taper: float | None = None,
        smooth_sigma: float = 1.5,
        recentre: bool = False,
        num_reference_frames: int = 50,
        iterations: int = 3,
        n_processes: int = 1,
        interpolation: str = "cubic",
    ) -> None:
        from sima_fast.sequence.warped import check_interpolation

        self._interpolation = check_interpolation(interpolation)
        self._upsample = None if upsample is None else check_int("upsample", upsample, low=2)
        self._taper = None if taper is None else check_real("taper", taper, low=0.0)
        self._smooth = check_real("smooth_sigma", smooth_sigma, low=0.0)
        self._recentre = check_bool("recentre", recentre)
        self._setup(
            max_displacement,
            n_processes,
            reference,
            check_int("num_reference_frames", num_reference_frames, low=1),
            check_int("iterations", iterations, low=1),
        )

    def _reads_raw(self) -> bool:
        # BatchRegistrar's kernels read integer frames as they are (no float32 copy)
        return self._upsample is None and not self._recentre

    def _registrar(self, reference: np.ndarray) -> Any:
        from sima_fast.registration import BatchRegistrar, RigidRegistrar

        if self._upsample is None and not self._recentre:
            return BatchRegistrar(
                reference,
                smooth_sigma=self._smooth,
                taper=self._taper,
                max_shift=self._max_displacement,
                workers=self._n_processes,
            )
        return RigidRegistrar(
            reference,
            whiten=True,
            smooth_sigma=self._smooth,
            taper=self._taper,
            max_shift=self._max_displacement,
            subpixel="gaussian" if self._upsample is None else "upsample",
            upsample=self._upsample or 1,
            recentre=self._recentre,
            workers=self._n_processes,
        )

    def corrected_sequence(
        self, sequence: Any, displacements: np.ndarray, frame_shape: tuple[int, ...]
    ) -> Any:
        """Return the interpolated corrected view (see :func:`warped_view`).

        Parameters
        ----------
        sequence : Sequence
            The uncorrected sequence.
        displacements : numpy.ndarray
            ``(T, Z, 2)`` float displacements from :meth:`estimate`.
        frame_shape : tuple of int
            ``(Z, Y, X)`` of the corrected frames.

        Returns
        -------
        Sequence
        """
        return warped_view(sequence, displacements, frame_shape, self._interpolation)


class VolumeTranslation(MotionEstimationStrategy):
    """Whole-pixel 3-D translation of each volume against a reference volume.

    For every plane offset ``dz`` allowed, the whitened cross-power spectra
    of the overlapping plane pairs are averaged; the ``(dz, dy, dx)`` of the
    highest correlation wins.

    Parameters
    ----------
    max_displacement : int or (int, int, int), optional
        Largest displacement magnitude ``[z, y, x]``; default: any (up to
        ``Z - 1`` planes and half the frame).
    criterion : float, optional
        Frames whose correlation with the reference, once aligned, is more
        than ``criterion`` standard deviations below the mean are rejected:
        their displacements are masked and :meth:`correct` blanks them.
    reference : array_like, optional
        ``(Z, Y, X)`` reference volume; default: built from the data.
    num_reference_frames : int, optional
        Frames sampled to build the reference (default 50).

    Raises
    ------
    ValueError, ArgumentTypeError
        A parameter out of range or of the wrong type (named).
    """

    def __init__(
        self,
        max_displacement: Any = None,
        criterion: float | None = None,
        reference: Any = None,
        num_reference_frames: int = 50,
    ) -> None:
        self._max_displacement = check_max_displacement(max_displacement, 3)
        self._criterion = check_real("criterion", criterion, low=0.0, allow_none=True)
        self._reference = check_reference(reference)
        self._num = check_int("num_reference_frames", num_reference_frames, low=1)

    def _spectra(self, volumes: np.ndarray) -> np.ndarray:
        """Whitened spectra of the tapered planes of volumes (n, Z, Y, X)."""
        from scipy import fft

        from sima_fast.kernels.motion import edge_taper, prepare_frames

        n, Z, Y, X = volumes.shape
        planes = np.ascontiguousarray(volumes.reshape(n * Z, Y, X))
        buf = np.empty(planes.shape)
        prepare_frames(planes, edge_taper((Y, X), min(Y, X) / 8), np.zeros((n * Z, 2), int), buf)
        spec = fft.rfft2(buf)
        mag = np.abs(spec)
        spec /= mag + 1e-6 * mag.reshape(n * Z, -1).max(axis=1)[:, None, None] + 1e-300
        ky = np.fft.fftfreq(Y)[:, None]
        kx = np.fft.rfftfreq(X)[None, :]
        spec *= np.exp(-(np.pi**2) * 1.5**2 * (ky**2 + kx**2))  # half of a 1.5 px smoothing
        return spec.reshape(n, Z, Y, -1)

    def _register(self, ref_spec: np.ndarray, volumes: np.ndarray) -> np.ndarray:
        """(n, 4) ``(dz, dy, dx, peak)`` of volumes against a reference's spectra."""
        from scipy import fft

        from sima_fast.kernels.motion import find_peaks

        n, Z, Y, X = volumes.shape
        lim = self._max_displacement
        lim = np.array([Z - 1, np.inf, np.inf]) if lim is None else lim
        spec = self._spectra(volumes)
        best = np.full((n, 4), -np.inf)
        peaks = np.empty((n, 3))
        for dz in range(-Z + 1, Z):
            if abs(dz) > lim[0]:
                continue
            zs = [z for z in range(Z) if 0 <= z + dz < Z]
            cross = sum(ref_spec[z + dz][None] * np.conj(spec[:, z]) for z in zs) / len(zs)
            surf = fft.irfft2(cross, s=(Y, X))
            find_peaks(surf, float(lim[1]), float(lim[2]), False, peaks)
            better = peaks[:, 2] > best[:, 3]
            best[better, 0] = dz
            best[better, 1:] = peaks[better]
        return best

    @staticmethod
    def _shift_volume(vol: np.ndarray, d: np.ndarray) -> np.ndarray:
        out = np.full(vol.shape, np.nan)
        src, dst = [], []
        for n, s in zip(vol.shape, (int(v) for v in d)):
            src.append(slice(max(0, -s), min(n, n - s)))
            dst.append(slice(max(0, s), min(n, n + s)))
        out[tuple(dst)] = vol[tuple(src)]
        return out

    def _estimate(self, dataset: Any) -> list:
        Z, Y, X, _ = dataset.frame_shape
        check_max_displacement_fits(self._max_displacement, (Z, Y, X))
        check_reference_shape(self._reference, dataset.frame_shape)
        sequences = list(dataset.sequences)
        if self._reference is not None:
            ref = self._reference
        else:
            sample = sample_frames(sequences, self._num)
            ref = np.stack([_seed(sample[:, z]) for z in range(Z)])
            for _ in range(3):
                d = self._register(self._spectra(ref[None])[0], sample)[:, :3]
                d = np.round(d - np.median(d, axis=0))
                ref = np.stack(
                    [
                        _mean_image(
                            np.stack([self._shift_volume(v, s) for v, s in zip(sample, d)])[:, z]
                        )
                        for z in range(Z)
                    ]
                )
        ref_spec = self._spectra(ref[None])[0]
        out, corrs = [], []
        for seq in sequences:
            d = np.zeros((len(seq), 3), dtype=np.int64)
            c = np.zeros(len(seq))
            for t0, block in iter_estimation_chunks(seq):
                r = self._register(ref_spec, block)
                d[t0 : t0 + len(block)] = np.round(r[:, :3]).astype(np.int64)
                if self._criterion is not None:
                    for k, vol in enumerate(block):
                        c[t0 + k] = _overlap_correlation(ref, self._shift_volume(vol, r[k, :3]))
            out.append(d)
            corrs.append(c)
        if self._criterion is not None:
            every = np.concatenate(corrs)
            threshold = every.mean() - self._criterion * every.std()
            out = [
                np.ma.array(d, mask=np.repeat((c < threshold)[:, None], 3, axis=1))
                for d, c in zip(out, corrs)
            ]
        return out


def _overlap_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays where both are finite (0 with too little overlap)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 4:
        return 0.0
    x = a[ok] - a[ok].mean()
    y = b[ok] - b[ok].mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0


class ResonantCorrection(MotionEstimationStrategy):
    """Correct resonant-scanner data: estimate on even and odd rows apart, correct every row.

    A resonant scanner acquires even rows sweeping one way and odd rows the
    other, so the two halves of a frame can differ in brightness and be
    offset horizontally. The base strategy estimates the motion of frames
    made of the even rows and of the odd rows as two channels (half the
    height); the displacements are then spread to every row (vertical
    components doubled) and ``offset`` is added to the horizontal
    displacement of the odd rows (row 0 is even).

    Parameters
    ----------
    base_strategy : MotionEstimationStrategy
        The strategy doing the estimation.
    offset : int, optional
        Horizontal displacement (px) added to the odd rows (default 0).

    Raises
    ------
    ArgumentTypeError
        ``base_strategy`` is not a strategy, or ``offset`` not an integer.
    """

    def __init__(self, base_strategy: Any, offset: int = 0) -> None:
        if not isinstance(base_strategy, MotionEstimationStrategy):
            raise ArgumentTypeError(
                "base_strategy must be a MotionEstimationStrategy, got "
                f"{type(base_strategy).__name__}"
            )
        self._base = base_strategy
        self._offset = check_int("offset", offset)

    def _estimate(self, dataset: Any) -> list:
        from sima_fast.sequence import Sequence

        Y, C = dataset.frame_shape[1], dataset.frame_shape[3]
        if Y % 2:
            raise ValueError(
                f"ResonantCorrection needs an even number of rows, the frames have {Y}"
            )
        halves = [
            Sequence.join(*[s[:, :, p::2, :, c] for c in range(C) for p in (0, 1)])
            for s in dataset.sequences
        ]
        out = []
        for d in self._base.estimate(halves):
            mask = np.ma.getmaskarray(d) if np.ma.isMaskedArray(d) else None
            d = np.ma.filled(np.ma.asarray(d), 0)
            if d.shape[-1] != 2 or d.ndim not in (3, 4):
                raise ValueError(
                    "ResonantCorrection needs a base strategy with per-plane (T, Z, 2) or "
                    f"per-row (T, Z, Y, 2) displacements, got shape {d.shape}"
                )
            if d.ndim == 3:
                rows = np.repeat(d[:, :, None, :], Y, axis=2)
                if mask is not None:
                    mask = np.repeat(mask[:, :, None, :], Y, axis=2)
            else:
                rows = np.repeat(d, 2, axis=2)
                if mask is not None:
                    mask = np.repeat(mask, 2, axis=2)
            rows = rows.copy()
            rows[..., 0] *= 2
            rows[:, :, 1::2, 1] += self._offset
            out.append(rows if mask is None else np.ma.array(rows, mask=mask))
        return out

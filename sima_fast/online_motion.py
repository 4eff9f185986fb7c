"""Per-frame rigid registration for live acquisition loops: :class:`OnlineRegistrar`.

The registrar holds a fixed reference image (one per plane) and, for each
frame it is given, estimates the frame's subpixel translation against that
reference by phase correlation and writes the translated (registered) frame
into a preallocated output. Everything it needs is allocated and compiled by
the constructor; a call to :meth:`OnlineRegistrar.register` then runs numba
kernels that release the GIL and two ``scipy.fft`` transforms per plane,
with no growth of memory from call to call. Give it to
:class:`sima_fast.online.OnlineExtractor` (``motion=``) to register every frame
before extraction.
"""

from __future__ import annotations

import numbers
import time
from typing import Any

import numpy as np

from sima_fast._validate import ArgumentTypeError, check_frame_shape, check_int, check_real

__all__ = ["DTYPES", "OnlineRegistrar"]

#: Frame dtypes accepted (frames must have the declared dtype exactly: no conversion).
DTYPES = ("uint16", "int16", "float32", "float64")


def _frame_dims(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``(Z, Y, X, C)`` of a ``(Y, X)``, ``(Z, Y, X)`` or ``(Z, Y, X, C)`` frame shape."""
    if len(shape) == 2:
        return 1, shape[0], shape[1], 1
    if len(shape) == 3:
        return shape[0], shape[1], shape[2], 1
    return shape  # type: ignore[return-value]


def _as_4d(array: np.ndarray) -> np.ndarray:
    """Return a ``(Z, Y, X, C)`` view of a ``(Y, X)``, ``(Z, Y, X)`` or ``(Z, Y, X, C)`` array."""
    if array.ndim == 2:
        return array[None, :, :, None]
    if array.ndim == 3:
        return array[:, :, :, None]
    return array


class OnlineRegistrar:
    """Register frames one at a time against a fixed reference (rigid, subpixel, per plane).

    Parameters
    ----------
    reference : numpy.ndarray
        The reference image: ``(Y, X)`` for single-plane frames, ``(Z, Y, X)``
        (one image per plane), or ``(Z, Y, X, C)`` (e.g. a dataset's
        ``time_averages``, of which channel ``channel`` is used). Missing
        (NaN) pixels are allowed; they count as the plane's mean.
    frame_shape : tuple of int, optional
        Shape of the frames: ``(Y, X)``, ``(Z, Y, X)`` or ``(Z, Y, X, C)``,
        with the reference's planes and size. Default: the reference's shape.
    dtype : {'uint16', 'int16', 'float32', 'float64'}
        The dtype of the frames (exactly; frames are never converted).
    max_displacement : int or (int, int), optional
        Largest shift searched, in pixels, ``(max_dy, max_dx)`` or one number
        for both; each in ``[0, (n - 1) // 2]`` for a frame dimension ``n``
        (larger shifts alias in a periodic correlation). Default: the whole
        range. Shifts at the limit are clipped to it.
    smooth_sigma : float
        Standard deviation in pixels (>= 0) of the Gaussian that smooths
        the phase correlation map (applied to the whitened spectrum): it
        damps the noisy high frequencies and makes the peak a sampled
        Gaussian, which the subpixel step fits exactly. Default 1.5.
    taper : float
        Width in pixels (>= 0) of the raised-cosine roll-off that takes
        every plane of a frame to its mean at the edges before the FFT (so
        the periodic transform sees no edge discontinuity, and the content
        that moved in from outside counts less); at most a quarter of each
        dimension is used. Take it at least the largest expected shift.
        Default 32.
    channel : int
        Channel of ``(Z, Y, X, C)`` frames (and of a 4-D reference) the shift
        is estimated from; the shift is applied to every channel.
    fill : float
        Value of the registered pixels whose source lies outside the frame
        (default NaN).
    workers : int
        Threads of each ``scipy.fft`` transform (default 1: one core).
    warmup : bool
        Compile (or load from numba's cache) the kernels and plan the FFTs in
        the constructor, so that no call of :meth:`register` does it.

    Attributes
    ----------
    frame_shape : tuple of int
        Shape of the frames.
    dtype : numpy.dtype
        Dtype of the frames.
    max_displacement : tuple of int
        ``(max_dy, max_dx)``.
    shift : numpy.ndarray of float64
        The shift of the last frame, ``(2,)`` for ``(Y, X)`` frames and
        ``(Z, 2)`` otherwise (the array :meth:`register` returns; NaN before
        the first call).
    correlation : numpy.ndarray of float64, shape (Z,)
        Peak of the phase correlation of the last frame per plane, relative
        to the peak of a perfect match (1): about 0.5 to 0.9 for translated
        frames of a simulated scene with noise, near 0 for an unrelated
        image, 0 for a blank plane (a quality measure for the registration).
    corrected : numpy.ndarray of float32
        The preallocated registered frame, ``frame_shape``.

    Raises
    ------
    ArgumentTypeError
        If an argument has the wrong type (e.g. a float ``channel``).
    ValueError
        If an argument is out of range, the shapes do not agree, or a plane
        of the reference is constant or has no finite pixel; the message
        names the argument.

    Notes
    -----
    **Sign.** The returned shift ``d = (dy, dx)`` is the correction, with
    the convention of ``Sequence.apply_displacements``: pixel ``p`` of the
    frame lands at ``p + d`` in the registered frame, i.e.
    ``registered(p) = frame(p - d)``. A frame whose content moved by ``m``
    relative to the reference (``frame(p) = reference(p - m)``) gets
    ``d = -m``.

    **Method** (phase correlation, as in Pachitariu et al. 2017, written
    from the description). With ``T`` the taper, each plane of a frame is
    taken to ``(F - m) T`` (``m`` the taper-weighted mean of its finite
    pixels; missing pixels count as ``m``), transformed (``S = rfft2``),
    whitened and multiplied by the reference's prepared spectrum ``R =
    conj(S_ref) / |S_ref| · G`` (``G`` the spectrum of a Gaussian of
    ``smooth_sigma``, its DC term 0): ``c = irfft2(S / |S| · R)``. ``S_ref``
    is the spectrum of the reference's periodic component
    (:func:`sima_fast.kernels.online.periodic_component`; missing pixels
    set to the mean first), which has no edge discontinuity; the reference
    is *not* tapered, since a window applied to both images correlates with
    itself and biases the estimate toward zero shift (by a few per cent of
    the shift on small frames). For a translated copy of the
    reference ``c`` is the Gaussian centred on the motion ``m``; its maximum
    is searched within ``max_displacement`` and refined to subpixel by a
    parabola through the logarithms of the maximum and its neighbours along
    each axis (exact for a sampled Gaussian). The frame is then translated
    by ``d = -m`` with bilinear interpolation (the kernel of
    :func:`sima_fast.kernels.warp.shift_frame`). A plane that cannot be
    registered (constant, or without finite pixels) gets a NaN shift and a
    plane of ``fill``.

    **Cost.** Two FFTs per plane (the inverse one along x only for the rows
    within ``max_displacement``), three passes over the plane, one over the
    frame; about 2 ms for a 512×512 frame on one core
    (``benchmarks/test_online.py``, group ``online-register``). Memory does
    not grow from call to call: the only per-call allocations are the two
    FFT outputs (freed before the call returns) and numba's small
    temporaries.

    An object is meant for one thread at a time (it reuses its buffers).

    References
    ----------
    M. Pachitariu et al., "Suite2p: beyond 10,000 neurons with standard
    two-photon microscopy", bioRxiv 061507 (2017),
    https://doi.org/10.1101/061507.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> rng = np.random.default_rng(0)
    >>> scene = ndimage.gaussian_filter(rng.random((160, 160)), 2.0)
    >>> reference = scene[16:144, 16:144]
    >>> moved = ndimage.shift(scene, (2.5, -1.5), order=3)[16:144, 16:144]  # motion m
    >>> registrar = OnlineRegistrar(reference, dtype='float64')
    >>> shift, registered = registrar.register(moved)
    >>> np.round(shift, 1)  # the correction: -m
    array([-2.5,  1.5])
    >>> bool(np.abs(registered - reference)[8:-8, 8:-8].max() < 0.01)
    True
    >>> int(np.isnan(registered[:, 64]).sum())  # rows 125..127 had no source
    3
    """

    def __init__(
        self,
        reference: np.ndarray,
        *,
        frame_shape: tuple[int, ...] | None = None,
        dtype: Any = "uint16",
        max_displacement: int | tuple[int, int] | None = None,
        smooth_sigma: float = 1.5,
        taper: float = 32.0,
        channel: int = 0,
        fill: float = np.nan,
        workers: int = 1,
        warmup: bool = True,
    ) -> None:
        from sima_fast.kernels import online as kern

        self._kern = kern
        ref = self._check_reference(reference)
        self.frame_shape = self._check_frame_shape(frame_shape, ref.shape)
        Z, Y, X, C = self._zyxc = _frame_dims(self.frame_shape)
        if isinstance(channel, bool) or not isinstance(channel, numbers.Integral):
            raise ArgumentTypeError(f"channel must be an int, got {channel!r}")
        if not -C <= channel < C:
            raise ValueError(f"channel {channel} is out of range for frames with {C} channel(s)")
        self.channel = int(channel) % C
        if ref.ndim == 4:
            ref = ref[..., self.channel]
        ref = ref.reshape(Z, Y, X)
        try:
            self.dtype = np.dtype(dtype)
        except TypeError as err:
            raise ArgumentTypeError(f"dtype must be one of {DTYPES}, got {dtype!r}") from err
        if self.dtype.name not in DTYPES or not self.dtype.isnative:
            raise ArgumentTypeError(
                f"dtype must be one of {DTYPES} (native byte order), got {dtype!r}"
            )
        self.max_displacement = self._check_max_displacement(max_displacement, (Y, X))
        self.smooth_sigma = check_real("smooth_sigma", smooth_sigma, low=0.0)
        self.taper = check_real("taper", taper, low=0.0)
        if isinstance(fill, bool) or not isinstance(fill, numbers.Real):
            raise ArgumentTypeError(f"fill must be a real number (NaN allowed), got {fill!r}")
        self.fill = float(fill)
        self.workers = check_int("workers", workers, low=1)
        if not isinstance(warmup, (bool, np.bool_)):
            raise ArgumentTypeError(f"warmup must be True or False, got {warmup!r}")

        import scipy.fft

        self._rfft2 = scipy.fft.rfft2
        self._irfft2 = scipy.fft.irfft2
        self._ifft = scipy.fft.ifft
        self._irfft = scipy.fft.irfft
        # with a small search window only the rows -r..r of the correlation map are
        # transformed back along x (the inverse along y is needed for all rows)
        r = self.max_displacement[0] + 1
        self._rows = np.zeros((2 * r + 1, X // 2 + 1), np.complex64) if 2 * r + 1 < Y else None
        # the separable taper, at most a quarter of each dimension wide
        self._wy = kern.taper_window(Y, min(self.taper, Y / 4.0))
        self._wx = kern.taper_window(X, min(self.taper, X / 4.0))
        self._work = np.zeros((Y, X), dtype=np.float32)
        # the prepared reference spectra and the correlation peak of a perfect match
        self._ref = np.empty((Z, Y, X // 2 + 1), dtype=np.complex64)
        self._ideal = np.empty(Z)
        # the reference is not tapered (a window shared by both images correlates with
        # itself and pulls the estimate toward zero shift) but made periodic
        for z in range(Z):
            plane = ref[z]
            finite = np.isfinite(plane)
            if not finite.any():
                raise ValueError(f"reference plane {z} has no finite pixel")
            if plane[finite].min() == plane[finite].max():
                raise ValueError(f"reference plane {z} is constant: nothing to register against")
            plane = np.where(finite, plane, plane[finite].mean())
            self._ref[z], self._ideal[z] = kern.reference_spectrum(plane, self.smooth_sigma)
        self._shifts = np.full((Z, 2), np.nan)
        self.shift = self._shifts[0] if len(self.frame_shape) == 2 else self._shifts
        self.correlation = np.full(Z, np.nan)
        self.corrected = np.zeros(self.frame_shape, dtype=np.float32)
        self._corrected4 = _as_4d(self.corrected)
        if warmup:
            self.warmup()

    # -- validation ---------------------------------------------------------------------

    @staticmethod
    def _check_reference(reference: Any) -> np.ndarray:
        if not isinstance(reference, np.ndarray):
            try:
                reference = np.asarray(reference)
            except (TypeError, ValueError) as err:
                raise ArgumentTypeError(
                    f"reference must be a numeric array, got {type(reference).__name__}"
                ) from err
        if reference.dtype.kind not in "biuf":
            raise ArgumentTypeError(
                f"reference must be a real numeric array, got dtype {reference.dtype}"
            )
        if reference.ndim not in (2, 3, 4) or min(reference.shape) < 1:
            raise ValueError(
                "reference must have shape (Y, X), (Z, Y, X) or (Z, Y, X, C), "
                f"got {reference.shape}"
            )
        if (
            reference.shape[-2 if reference.ndim < 4 else -3] < 2
            or reference.shape[-1 if reference.ndim < 4 else -2] < 2
        ):
            raise ValueError(f"reference planes must be at least 2×2, got {reference.shape}")
        return np.asarray(reference, dtype=np.float64)

    @staticmethod
    def _check_frame_shape(frame_shape: Any, ref_shape: tuple[int, ...]) -> tuple[int, ...]:
        if frame_shape is None:
            return tuple(int(s) for s in ref_shape)
        shape = check_frame_shape("frame_shape", frame_shape)
        zyx = _frame_dims(shape)[:3]
        if len(ref_shape) == 4:
            ref_zyx, ref_c = ref_shape[:3], ref_shape[3]
            if len(shape) != 4 or shape[3] != ref_c:
                raise ValueError(
                    f"reference has shape {ref_shape} (Z, Y, X, C): frame_shape must be "
                    f"(Z, Y, X, C) with {ref_c} channel(s), got {shape}"
                )
        else:
            ref_zyx = _frame_dims(ref_shape)[:3]
        if zyx != ref_zyx:
            raise ValueError(
                f"reference has shape {ref_shape}, which does not match frame_shape {shape}: "
                f"the reference needs the frames' planes and size, (Z, Y, X) = {zyx}"
            )
        return shape

    @staticmethod
    def _check_max_displacement(value: Any, yx: tuple[int, int]) -> tuple[int, int]:
        limits = tuple((n - 1) // 2 for n in yx)
        if value is None:
            return limits  # type: ignore[return-value]
        if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
            value = (value, value)
        try:
            pair = list(value)
        except TypeError:
            raise ArgumentTypeError(
                f"max_displacement must be an int or a pair of ints (max_dy, max_dx), "
                f"got {value!r}"
            ) from None
        if len(pair) != 2:
            raise ValueError(
                f"max_displacement must be an int or a pair of ints (max_dy, max_dx), "
                f"got {value!r}"
            )
        out = []
        for axis, v, n, limit in zip("yx", pair, yx, limits):
            out.append(check_int(f"max_displacement[{'yx'.index(axis)}]", v, low=0))
            if out[-1] > limit:
                raise ValueError(
                    f"max_displacement along {axis} must be at most (n - 1) // 2 = {limit} for "
                    f"frames {n} pixels wide (larger shifts alias), got {out[-1]}"
                )
        return out[0], out[1]

    def _check_frame(self, frame: Any) -> np.ndarray:
        if not isinstance(frame, np.ndarray):
            raise TypeError(f"frame must be a numpy.ndarray, got {type(frame).__name__}")
        if frame.dtype is not self.dtype and frame.dtype != self.dtype:
            raise TypeError(
                f"frame has dtype {frame.dtype}, but this OnlineRegistrar was prepared for "
                f"{self.dtype} (frames are not converted: pass dtype= to match)"
            )
        if frame.shape != self.frame_shape:
            raise ValueError(
                f"frame has shape {frame.shape}, but this OnlineRegistrar was prepared for "
                f"frames of shape {self.frame_shape}"
            )
        return frame

    def _check_out(self, out: Any, frame: np.ndarray) -> np.ndarray:
        if not isinstance(out, np.ndarray) or out.dtype not in (np.float32, np.float64):
            raise TypeError("out must be a float32 or float64 numpy array")
        if out.shape != self.frame_shape:
            raise ValueError(f"out has shape {out.shape}; expected {self.frame_shape}")
        if not out.flags.writeable:
            raise ValueError("out must be writeable")
        if np.may_share_memory(out, frame):
            raise ValueError("out must not share memory with frame")
        return out

    # -- the per-frame step -------------------------------------------------------------

    def register(
        self, frame: np.ndarray, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Estimate the shift of one frame and write the registered frame.

        Parameters
        ----------
        frame : numpy.ndarray
            One frame of shape ``frame_shape`` and dtype ``dtype``, in any
            memory layout (it is only read).
        out : numpy.ndarray of float32 or float64, optional
            Where to write the registered frame (shape ``frame_shape``, not
            sharing memory with ``frame``). Default: :attr:`corrected`.

        Returns
        -------
        shift : numpy.ndarray of float64
            ``(dy, dx)``, shape ``(2,)`` for ``(Y, X)`` frames and ``(Z, 2)``
            (one per plane) otherwise; ``registered(p) = frame(p - shift)``.
            The same array (:attr:`shift`) at every call, overwritten by the
            next one: copy it to keep it.
        corrected : numpy.ndarray
            ``out`` (or :attr:`corrected`, overwritten by the next call),
            with ``fill`` where no source pixel lands.

        Raises
        ------
        TypeError
            If ``frame`` is not a numpy array of the declared dtype, or ``out``
            is not a float array.
        ValueError
            If ``frame`` or ``out`` does not have the declared shape, or
            ``out`` overlaps ``frame``.
        """
        frame = self._check_frame(frame)
        dst = self._corrected4 if out is None else _as_4d(self._check_out(out, frame))
        self._register(_as_4d(frame), dst)
        return self.shift, (self.corrected if out is None else out)

    def _register(self, frame4: np.ndarray, dst4: np.ndarray) -> None:
        kern = self._kern
        work, wy, wx, shifts, corr = self._work, self._wy, self._wx, self._shifts, self.correlation
        shape = work.shape
        my, mx = self.max_displacement
        rfft2, workers, rows = self._rfft2, self.workers, self._rows
        for z in range(shifts.shape[0]):
            kern.taper_plane(frame4, z, self.channel, wy, wx, work)
            spectrum = rfft2(work, workers=workers, overwrite_x=True)
            kern.whiten_cross(spectrum, self._ref[z])
            if rows is None:
                c = self._irfft2(spectrum, s=shape, workers=workers, overwrite_x=True)
                row0 = 0
            else:
                half = self._ifft(spectrum, axis=0, workers=workers, overwrite_x=True)
                row0 = rows.shape[0] // 2
                rows[:row0] = half[shape[0] - row0 :]
                rows[row0:] = half[: row0 + 1]
                c = self._irfft(rows, n=shape[1], axis=1, workers=workers, overwrite_x=True)
            py, px, height = kern.correlation_peak(c, my, mx, row0)
            shifts[z, 0] = -py
            shifts[z, 1] = -px
            corr[z] = height / self._ideal[z]
        kern.shift_planes(frame4, shifts, dst4, self.fill)

    # -- compilation --------------------------------------------------------------------

    def warmup(self) -> float:
        """Compile (or load from numba's cache) the kernels and plan the FFTs of this shape.

        Frames in C order, in other layouts (views) and read-only ones are
        all prepared, with float32 and float64 outputs, so no frame triggers
        compilation. The state (:attr:`shift`, :attr:`correlation`) is left
        as NaN.

        Returns
        -------
        float
            Seconds taken.
        """
        start = time.perf_counter()
        C = self._zyxc[3]
        tiny = np.zeros((1, 4, 4, C), dtype=self.dtype)
        wide = np.zeros((1, 4, 4, 2 * C), dtype=self.dtype)[..., ::2]
        frames = [tiny, wide]
        for f in frames[:2]:
            ro = f.view()
            ro.flags.writeable = False
            frames.append(ro)
        kern = self._kern
        w4 = np.ones(4, dtype=np.float32)
        work = np.zeros((4, 4), dtype=np.float32)
        shifts = np.zeros((1, 2))
        for f in frames:
            kern.taper_plane(f, 0, 0, w4, w4, work)
            for dt in (np.float32, np.float64):
                kern.shift_planes(f, shifts, np.zeros(f.shape, dtype=dt), self.fill)
        kern.whiten_cross(np.zeros((4, 3), np.complex64), np.zeros((4, 3), np.complex64))
        kern.correlation_peak(np.zeros((4, 4), np.float32), 1, 1, 0)
        # one frame of the real shape: plans scipy.fft's transforms, then reset the state
        self._register(_as_4d(np.zeros(self.frame_shape, dtype=self.dtype)), self._corrected4)
        self._shifts[:] = np.nan
        self.correlation[:] = np.nan
        return time.perf_counter() - start

    def __repr__(self) -> str:
        """Return ``<OnlineRegistrar: frames ..., max_displacement=...>``."""
        return (
            f"<OnlineRegistrar: frames {self.frame_shape} {self.dtype}, channel={self.channel}, "
            f"max_displacement={self.max_displacement}, smooth_sigma={self.smooth_sigma}>"
        )

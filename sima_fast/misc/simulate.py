"""Deterministic simulator of two-photon calcium imaging movies with ground truth.

This module owns :func:`simulate_movie` and the :class:`SimulatedMovie` it
returns. The docstring of :func:`simulate_movie` is the definition of the
generative model; the example dataset (:func:`sima_fast.misc.example_data`),
the tests and the benchmarks all draw their data from it.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np
import scipy.sparse
from numpy.typing import DTypeLike

from sima_fast._geometry import polygon_to_mask
from sima_fast._validate import check_int
from sima_fast.misc.motion_truth import MOTION_KINDS, MotionTruth

__all__ = ["SimulatedMovie", "simulate_movie"]

#: Output dtypes the simulator writes (integers are rounded and clipped).
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float32", "float64")

# Each random component draws from its own generator, seeded with
# ``[seed, stream]``, so that changing one component (say the number of frames)
# never changes another (say the cell layout). Scene streams use ``scene_seed``.
_STREAM_CELLS = 1
_STREAM_TEXTURE = 2
_STREAM_BRIGHTNESS = 3
_STREAM_SPIKES = 11
_STREAM_NEUROPIL = 12
_STREAM_MOTION = 13
_STREAM_NOISE = 14
_STREAM_NAN = 15
# Streams of the continuous motion models (motion='rigid', 'nonrigid', 'rowwise').
_STREAM_OBSERVED_NOISE = 16
_STREAM_OBSERVED_NAN = 17
_STREAM_TRAJECTORY = 18
_STREAM_DEFORMATION = 19

# Fixed scene constants (documented in simulate_movie's Notes).
_TEXTURE_SIGMA = 4.0  # px, spatial correlation of the background texture
_TEXTURE_CONTRAST = 0.25  # std of the log-brightness of the texture
_VIGNETTING = 0.2  # relative brightness loss at normalised radius 1
_RED_BACKGROUND = 0.5  # structural background relative to ``background``
_RESTING_RANGE = (0.3, 0.8)  # resting cell brightness / background
_AMPLITUDE_RANGE = (0.4, 1.2)  # activity amplitude per unit calcium / background
_STRUCTURAL_RANGE = (0.6, 1.5)  # structural cell brightness / background
_AXIS_RATIO_RANGE = (0.7, 1.0)  # minor / major axis of a cell outline
_VERTEX_RANGE = (16, 24)  # vertices per outline, inclusive
_WOBBLE = 0.06  # relative radial jitter of the outline vertices
_ANGLE_JITTER = 0.25  # angular jitter of the vertices, in vertex spacings
_MARGIN = 2.0  # px kept free between any outline and the frame edge
_MIN_SPACING = 0.9  # initial minimum centre distance / (r_i + r_j)
_MOTION_TAU = 0.5  # s, correlation time of the motion random walk
_MOTION_JITTER = 0.3  # white jitter relative to the walk's standard deviation
_CHUNK_ELEMENTS = 1 << 21  # working-buffer size (elements) for the noise pass
_FAST_MOTION_WEIGHT = 0.3  # fast component (correlation time: one frame) of the trajectory
_NONRIGID_DEFAULT = 2.0  # px, default bound of the non-rigid deformation
_MAX_WARP_SLOPE = 0.5  # bound on the Jacobian norm of the deformation (keeps it invertible)
_SPLINE_ORDER = 3  # the continuous scene is the cubic B-spline of the expected frame


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SimulatedMovie:
    """A simulated two-photon movie together with its ground truth.

    Produced by :func:`simulate_movie`, which documents the generative model.
    Shapes use ``T`` frames, ``Z`` planes, ``Y × X`` pixels, ``C`` channels and
    ``n`` cells.

    Attributes
    ----------
    movie : numpy.ndarray, shape (T, Z, Y, X, C)
        The noisy movie in the motion-free coordinates of the scene.
    observed : numpy.ndarray, shape (T, Z, Yo, Xo, C)
        The frames a moving microscope records. With ``max_displacement``:
        ``Yo = Y - max_dy``, ``Xo = X - max_dx`` and
        ``observed[t, z, i, j] == movie[t, z, i + dy_t, j + dx_t]``. With
        ``motion``: see :func:`simulate_movie` and :attr:`motion`. Without
        any motion this is the very same array object as ``movie``.
    displacements : numpy.ndarray
        With ``max_displacement`` (or no motion): int64 ``(T, 2)``, per-frame
        ``(dy, dx)`` with ``0 <= dy <= max_dy`` and ``0 <= dx <= max_dx``;
        all zero without motion. Passing them to
        ``Sequence.apply_displacements`` with ``frame_shape=(Z, Y, X)`` maps
        ``observed`` back onto ``movie`` (NaN where nothing was observed).
        With ``motion``: ``motion.displacements`` (rigid: float64
        ``(T, Z, 2)``; row-wise: int64 ``(T, Z, Yo, 2)``; non-rigid: the
        translation part, float64 ``(T, Z, 2)``; the whole field comes from
        ``motion.field()``).
    polygons : tuple of numpy.ndarray, each shape (N, 3)
        Cell outlines as open rings of ``(x, y, z)`` vertices (sub-pixel,
        float32-representable values stored as float64; ``z`` is the plane).
    planes : numpy.ndarray of int64, shape (n,)
        Plane index of each cell.
    masks : numpy.ndarray of bool, shape (n, Z, Y, X)
        ``polygon_to_mask`` of each outline on its plane (zero elsewhere).
    spikes : numpy.ndarray of int64, shape (n, T)
        Spike counts per frame.
    calcium : numpy.ndarray of float64, shape (n, T)
        ``calcium[:, t] = gamma * calcium[:, t - 1] + spikes[:, t]`` with
        ``calcium[:, 0] = spikes[:, 0]``.
    gamma : float
        AR(1) decay per frame, ``exp(-1 / (tau * frame_rate))``.
    frame_rate, tau, spike_rate : float
        Frames per second, indicator decay time (s), mean spike rate (Hz).
    amplitudes : numpy.ndarray, shape (n,)
        Channel-0 counts added per unit of calcium over each cell's mask.
    resting : numpy.ndarray, shape (n,)
        Channel-0 counts each cell adds at rest.
    structural : numpy.ndarray, shape (n,)
        Channel-1 counts each cell adds (drawn but unused when ``C == 1``).
    baseline : numpy.ndarray of float64, shape (Z, Y, X, C)
        Expected image at rest without neuropil fluctuation.
    neuropil : numpy.ndarray of float64, shape (Z, T)
        Relative, shared fluctuation of the channel-0 baseline of each plane.
    gain, read_noise : float
        Noise model parameters (counts per photon, counts).
    seed, scene_seed : int
        Seeds of the activity/noise/motion and of the scene (cells, textures).
    motion : MotionTruth or None
        The true motion when ``simulate_movie`` was given ``motion``
        (see :mod:`sima_fast.misc.motion_truth` for the sign convention);
        None otherwise.
    """

    movie: np.ndarray
    observed: np.ndarray
    displacements: np.ndarray
    polygons: tuple[np.ndarray, ...]
    planes: np.ndarray
    masks: np.ndarray
    spikes: np.ndarray
    calcium: np.ndarray
    gamma: float
    frame_rate: float
    tau: float
    spike_rate: float
    amplitudes: np.ndarray
    resting: np.ndarray
    structural: np.ndarray
    baseline: np.ndarray
    neuropil: np.ndarray
    gain: float
    read_noise: float
    seed: int
    scene_seed: int
    motion: MotionTruth | None = None

    @property
    def num_frames(self) -> int:
        """Number of frames ``T``."""
        return int(self.movie.shape[0])

    @property
    def num_cells(self) -> int:
        """Number of simulated cells ``n``."""
        return int(self.planes.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """Shape ``(Z, Y, X, C)`` of one motion-free frame."""
        return tuple(int(s) for s in self.movie.shape[1:])  # type: ignore[return-value]

    def mask_matrix(self) -> scipy.sparse.csr_array:
        """Return the masks as a sparse ``(n, Z·Y·X)`` boolean matrix.

        Returns
        -------
        scipy.sparse.csr_array
            Row ``i`` is ``masks[i]`` flattened in C order.
        """
        flat = self.masks.reshape(self.num_cells, int(np.prod(self.masks.shape[1:])))
        return _mask_matrix([np.flatnonzero(row) for row in flat], flat.shape[1])

    def expected(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Return the noise-free expected frames ``start:stop`` (float64).

        Parameters
        ----------
        start, stop : int, optional
            Frame range, as in ``range(start, stop)``; ``stop`` defaults to
            the number of frames.

        Returns
        -------
        numpy.ndarray of float64, shape (stop - start, Z, Y, X, C)
            The mean ``μ`` of the noise model in :func:`simulate_movie`.
        """
        stop = self.num_frames if stop is None else stop
        if not 0 <= start <= stop <= self.num_frames:
            raise ValueError(
                f"expected(start={start}, stop={stop}) is outside 0..{self.num_frames}"
            )
        z, y, x, c = self.frame_shape
        out = np.empty((stop - start, z, y, x, c))
        _fill_mean(
            out,
            self.baseline,
            self.neuropil[:, start:stop],
            _ActivityOperator(self.mask_matrix()),
            self.amplitudes[:, None] * self.calcium[:, start:stop],
        )
        return out

    def __repr__(self) -> str:
        """Return ``<SimulatedMovie: frames, frame_shape, cells, dtype, seed>``."""
        return (
            f"<SimulatedMovie: frames={self.num_frames}, frame_shape={self.frame_shape}, "
            f"cells={self.num_cells}, dtype={self.movie.dtype}, seed={self.seed}>"
        )


def simulate_movie(
    num_frames: int = 300,
    num_planes: int = 1,
    frame_shape: tuple[int, int] = (128, 128),
    num_channels: int = 2,
    cells_per_plane: int = 30,
    frame_rate: float = 15.0,
    tau: float = 1.0,
    spike_rate: float = 1.0,
    cell_radius: float | tuple[float, float] = (4.0, 6.5),
    max_displacement: tuple[int, int] = (0, 0),
    nan_fraction: float = 0.0,
    dtype: DTypeLike = "uint16",
    seed: int = 0,
    *,
    scene_seed: int | None = None,
    background: float = 400.0,
    gain: float = 4.0,
    read_noise: float = 5.0,
    neuropil_std: float = 0.05,
    neuropil_tau: float = 3.0,
    motion: str | None = None,
    motion_amplitude: float | tuple[float, float] = 5.0,
    nonrigid_amplitude: float | None = None,
) -> SimulatedMovie:
    """Simulate a two-photon calcium imaging movie with known ground truth.

    The result is a deterministic function of the arguments: the same call
    gives bit-identical arrays, in any process.

    Parameters
    ----------
    num_frames : int
        Number of frames ``T`` (at least 1).
    num_planes : int
        Number of imaging planes ``Z`` (at least 1).
    frame_shape : tuple of int
        ``(rows, columns)`` = ``(Y, X)`` of each plane.
    num_channels : {1, 2}
        Channel 0 is the activity channel; channel 1, when present, is a
        static structural channel.
    cells_per_plane : int
        Cells placed in each plane (0 or more).
    frame_rate : float
        Frames per second (> 0).
    tau : float
        Decay time of the indicator in seconds (> 0).
    spike_rate : float
        Mean firing rate of every cell in Hz (>= 0).
    cell_radius : float or (float, float)
        Range ``(low, high)`` of the equivalent radius of a cell in pixels
        (``1 <= low <= high``); a single number fixes it.
    max_displacement : (int, int)
        Largest motion ``(max_dy, max_dx)`` in pixels (each ``>= 0`` and
        smaller than the frame). Non-zero values add ``observed`` frames
        with whole-pixel, per-frame motion (see Notes). Cannot be combined
        with ``motion``.
    nan_fraction : float
        Fraction in ``[0, 1)`` of pixels (independently per frame, plane,
        row, column and channel) set to NaN; needs a float ``dtype``.
    dtype : {'uint16', 'uint8', 'int16', 'float32', 'float64'}
        Output dtype. Integer outputs are rounded to the nearest integer and
        clipped to the dtype's range; float outputs are neither.
    seed : int
        Seed (>= 0) of the activity, neuropil, motion and noise.
    scene_seed : int, optional
        Seed (>= 0) of the scene: cell positions, outlines, brightness and
        textures. Defaults to ``seed``. Movies with the same ``scene_seed``
        (and geometry arguments) show the same cells with different activity.
    background : float
        Mean background brightness of channel 0, in counts (> 0).
    gain : float
        Counts per detected photon (>= 0); sets the shot noise.
    read_noise : float
        Standard deviation of the detector noise, in counts (>= 0).
    neuropil_std : float
        Standard deviation of the relative neuropil fluctuation (>= 0).
    neuropil_tau : float
        Correlation time of the neuropil fluctuation in seconds (> 0).
    motion : {None, 'rigid', 'nonrigid', 'rowwise'}
        Continuous motion with exact ground truth (``SimulatedMovie.motion``,
        see Notes): sub-pixel translation of each plane, a smooth
        deformation on top of it, or whole-pixel motion that changes from
        row to row (line scanning). None (default): only the motion of
        ``max_displacement``.
    motion_amplitude : float or (float, float)
        With ``motion``: half-range ``(A_y, A_x)`` of the translation in
        pixels (>= 0); the displacements span ``[0, 2·A]`` along each axis,
        i.e. ``±A`` around their middle. A single number applies to both
        axes. Default 5.
    nonrigid_amplitude : float, optional
        With ``motion='nonrigid'``: bound ``A_n`` (>= 0) on the deformation
        added to the translation, in pixels. The deformation must stay
        invertible: ``A_n <= 1 / (4√2·π·√(1/Y² + 1/X²))`` (``N / (8π)``
        for ``N × N`` frames); the default is the smaller of 2 and that.

    Returns
    -------
    SimulatedMovie
        The movie and its ground truth (see the class for every field).

    Raises
    ------
    ValueError
        For an invalid argument; the message names the argument.

    Notes
    -----
    Pixel ``(y, x)`` covers ``[x, x + 1) × [y, y + 1)``; ``a ~ U(l, h)`` means
    drawn uniformly.

    **Cells.** In each plane, ``cells_per_plane`` cells get an equivalent
    radius ``r ~ U(cell_radius)``, an axis ratio ``q ~ U(0.7, 1)``, semi-axes
    ``r / √q`` and ``r·√q``, an orientation ``~ U(0, π)`` and 16–24 vertices
    at evenly spaced angles (jittered by up to a quarter spacing) with a
    radial jitter of ±6 %. Vertex coordinates are rounded to float32. Centres
    are drawn uniformly so that each outline keeps 2 px from the frame edge,
    and rejected while closer than ``0.9·(r_i + r_j)`` to an earlier centre
    (the factor shrinks after repeated rejections, so crowded frames still
    fill). Cells may overlap slightly. Masks ``M_i`` are the outlines
    rasterised by :func:`sima_fast._geometry.polygon_to_mask`.

    **Activity.** Spike counts ``s_i[t] ~ Poisson(spike_rate / frame_rate)``;
    calcium ``c_i[t] = γ·c_i[t−1] + s_i[t]`` with ``c_i[−1] = 0`` and
    ``γ = exp(−1 / (tau·frame_rate))``. The neuropil of plane z is a
    stationary AR(1) process ``n_z[t]`` with standard deviation
    ``neuropil_std`` and correlation time ``neuropil_tau``.

    **Images.** With ``b`` = ``background``, a smooth texture
    ``κ(y, x) = exp(0.25·g − 0.25²/2)`` (``g``: white noise blurred by a
    Gaussian of σ = 4 px, normalised to unit variance; one per plane and
    channel) and a vignetting ``v(y, x) = 1 − 0.2·ρ²`` (``ρ``: distance from
    the frame centre normalised by the half-size along each axis):

    - channel 0 baseline ``B = b·v·κ₀ + Σ_i β_i·M_i`` with resting brightness
      ``β_i = b·U(0.3, 0.8)`` (``resting``);
    - channel 1 baseline ``R = 0.5·b·v·κ₁ + Σ_i σ_i·M_i`` with structural
      brightness ``σ_i = b·U(0.6, 1.5)`` (``structural``);
    - the mean of channel 0 in frame t is
      ``μ₀[t] = B·(1 + n_z[t]) + Σ_i a_i·c_i[t]·M_i`` with amplitude
      ``a_i = b·U(0.4, 1.2)`` counts per unit of calcium (``amplitudes``);
      the mean of channel 1 is ``μ₁ = R`` in every frame.
      :meth:`SimulatedMovie.expected` evaluates ``μ``.

    **Noise.** Each value is ``μ + √(gain·μ + read_noise²)·ε``: a Gaussian
    approximation of shot noise with ``gain`` counts per photon plus detector
    noise. The ``ε`` are independent standard normal variates, quantised to
    65,536 equiprobable levels for speed (exact mean and variance, |ε| < 4.3;
    see :mod:`sima_fast.misc._noise`). Integer outputs are then rounded (ties
    to even) and clipped; finally a ``nan_fraction`` of values becomes NaN.

    **Motion (max_displacement).** Each axis follows a stationary AR(1)
    walk with correlation time 0.5 s plus white jitter of 0.3 of its
    standard deviation, mapped linearly onto ``[0, max_d]`` and rounded, so
    both extremes occur (a single frame has no motion). The
    microscope records ``observed[t] = movie[t, :, dy_t : dy_t + Y − max_dy,
    dx_t : dx_t + X − max_dx]``.

    **Motion (motion=...).** Positions are array indices (``movie[..., i,
    j]`` sits at ``(i, j)``). The continuous scene ``S_t,z`` is the cubic
    B-spline interpolant of the expected frame ``μ[t, z]`` (mirror
    boundary); ``movie`` is unchanged (bit for bit the movie without
    ``motion``) and ``observed`` holds fresh noise (same noise model) around
    ``S`` sampled at displaced positions. The trajectory of the sample is,
    per axis, a stationary AR(1) process with correlation time 0.5 s plus
    0.3 times one with a correlation time of one frame, sampled at the time
    each plane is scanned (plane z of frame t at ``t + (z + ½)/Z`` frames)
    or, for ``'rowwise'``, each row (row i at ``t + (z + (i + ½)/Yo)/Z``),
    and mapped linearly onto ``[0, 2·A]`` (both extremes occur). With
    ``M = ceil(2·A + 2·A_n)`` (``A_n = 0`` unless non-rigid), observed
    frames are ``Yo × Xo = (Y − M_y) × (X − M_x)`` and:

    - ``'rigid'``: ``observed[t, z, i, j] ≈ S_t,z(i + dy, j + dx)`` with
      ``(dy, dx) = motion.displacements[t, z]`` (float, ``(T, Z, 2)``);
    - ``'rowwise'``: the trajectory is rounded to whole pixels per row and
      ``observed[t, z, i, j] ≈ μ[t, z, i + dy_i, j + dx_i]`` exactly (no
      interpolation) with ``(dy_i, dx_i) = motion.displacements[t, z, i]``
      (int64, ``(T, Z, Yo, 2)``), as ``apply_displacements`` reads them;
    - ``'nonrigid'``: the field ``d(q) = D[t, z] + A_n·Σ_k w_k(t, z)·cos(2π
      κ_k·q + φ_k)`` over scene positions ``q`` with the four wavevectors
      ``κ = (1/Y, 0), (0, 1/X), (1/Y, 1/X), (1/Y, −1/X)``, random phases
      ``φ_k`` and weights following slow AR(1) walks, scaled so that
      ``Σ_k |w_k| <= 1`` per axis; ``D`` is the translation shifted by
      ``A_n``. Observed pixel ``p`` shows ``S(q)`` where ``q − d(q) = p``
      (solved by Newton's method to 1e-10 px), so that
      ``corrected(q) = observed(q − d(q))``.

    (``≈``: before noise.) The sign is that of
    ``Sequence.apply_displacements`` and of warped views; see
    :mod:`sima_fast.misc.motion_truth`, which also scores estimates.

    The movie is produced in time chunks straight into the output array;
    memory is about the output (twice with motion) plus the masks. For
    scale: 3,000 frames of 512 × 512 pixels with 500 cells (one channel,
    uint16) take about 6–8 s on one core and 1.9 GB of memory.

    Examples
    --------
    >>> from sima_fast.misc import simulate_movie
    >>> sim = simulate_movie(num_frames=20, frame_shape=(32, 40), cells_per_plane=3,
    ...                      max_displacement=(2, 3), seed=1)
    >>> sim.movie.shape, sim.movie.dtype
    ((20, 1, 32, 40, 2), dtype('uint16'))
    >>> sim.observed.shape, sim.masks.shape
    ((20, 1, 30, 37, 2), (3, 1, 32, 40))
    >>> dy, dx = sim.displacements[5]
    >>> bool((sim.observed[5] == sim.movie[5, :, dy:dy + 30, dx:dx + 37]).all())
    True

    Sub-pixel rigid motion of up to ±3 px, with its exact truth:

    >>> sim = simulate_movie(num_frames=20, frame_shape=(32, 40), cells_per_plane=3,
    ...                      motion="rigid", motion_amplitude=3.0, seed=1)
    >>> sim.observed.shape, sim.motion.displacements.shape
    ((20, 1, 26, 34, 2), (20, 1, 2))
    >>> d = sim.motion.displacements
    >>> float(d.min()), float(d.max())
    (0.0, 6.0)

    Row-wise (line-scan) motion, whole pixels per observed row; without
    noise, each observed row is a row of the expected scene:

    >>> sim = simulate_movie(num_frames=4, frame_shape=(32, 40), cells_per_plane=3,
    ...                      motion="rowwise", motion_amplitude=2.0, gain=0.0,
    ...                      read_noise=0.0, dtype="float64", seed=1)
    >>> dy, dx = sim.motion.displacements[2, 0, 7]
    >>> scene = sim.expected(2, 3)[0, 0]
    >>> bool((sim.observed[2, 0, 7] == scene[7 + dy, dx:dx + 36]).all())
    True
    """
    num_frames = check_int("num_frames", num_frames, low=1)
    num_planes = check_int("num_planes", num_planes, low=1)
    rows, cols = _check_pair("frame_shape", frame_shape, minimum=1)
    num_channels = check_int("num_channels", num_channels, low=1)
    if num_channels > 2:
        raise ValueError(f"num_channels must be 1 or 2, got {num_channels}")
    cells_per_plane = check_int("cells_per_plane", cells_per_plane, low=0)
    frame_rate = _check_float("frame_rate", frame_rate, positive=True)
    tau = _check_float("tau", tau, positive=True)
    spike_rate = _check_float("spike_rate", spike_rate)
    radius = _check_radius(cell_radius)
    max_dy, max_dx = _check_pair("max_displacement", max_displacement, minimum=0)
    if max_dy >= rows or max_dx >= cols:
        raise ValueError(
            f"max_displacement {(max_dy, max_dx)} must be smaller than frame_shape "
            f"{(rows, cols)} along both axes"
        )
    nan_fraction = _check_float("nan_fraction", nan_fraction)
    if nan_fraction >= 1.0:
        raise ValueError(f"nan_fraction must be in [0, 1), got {nan_fraction}")
    out_dtype = _check_dtype(dtype)
    if nan_fraction > 0 and out_dtype.kind != "f":
        raise ValueError(f"nan_fraction > 0 needs a float dtype, got dtype={out_dtype.name!r}")
    seed = check_int("seed", seed, low=0)
    scene_seed = seed if scene_seed is None else check_int("scene_seed", scene_seed, low=0)
    background = _check_float("background", background, positive=True)
    gain = _check_float("gain", gain)
    read_noise = _check_float("read_noise", read_noise)
    neuropil_std = _check_float("neuropil_std", neuropil_std)
    neuropil_tau = _check_float("neuropil_tau", neuropil_tau, positive=True)
    if motion is not None:
        if motion not in MOTION_KINDS:
            raise ValueError(f"motion must be None or one of {MOTION_KINDS}, got {motion!r}")
        if (max_dy, max_dx) != (0, 0):
            raise ValueError(
                "max_displacement and motion cannot be combined: "
                "pass max_displacement=(0, 0) with motion"
            )
    amplitude = _check_amplitude(motion_amplitude)
    warp = _check_nonrigid(nonrigid_amplitude, rows, cols) if motion == "nonrigid" else 0.0
    margin = (int(np.ceil(2 * (amplitude[0] + warp))), int(np.ceil(2 * (amplitude[1] + warp))))
    if motion is not None and (margin[0] >= rows or margin[1] >= cols):
        raise ValueError(
            f"motion_amplitude {amplitude} (plus nonrigid_amplitude {warp}) leaves no "
            f"observed pixels in frame_shape {(rows, cols)}: 2·(A + A_n) must be < each side"
        )
    if cells_per_plane > 0:
        extent = _max_extent(radius[1]) + _MARGIN
        if min(rows, cols) < 2 * extent + 1:
            raise ValueError(
                f"frame_shape {(rows, cols)} is too small for cells of cell_radius up to "
                f"{radius[1]}: both sides need at least {int(np.ceil(2 * extent + 1))} pixels"
            )

    # ---- scene: cells, brightness, textures (from scene_seed) ----
    cell_rng = np.random.default_rng([scene_seed, _STREAM_CELLS])
    polygons: list[np.ndarray] = []
    for z in range(num_planes):
        polygons.extend(_make_outlines(cell_rng, cells_per_plane, z, rows, cols, radius))
    n = len(polygons)
    planes = np.repeat(np.arange(num_planes, dtype=np.int64), cells_per_plane)
    masks = np.zeros((n, num_planes, rows, cols), dtype=bool)
    pixel_lists = []
    for i, poly in enumerate(polygons):
        plane_mask = polygon_to_mask(poly, (rows, cols))
        masks[i, planes[i]] = plane_mask
        pixel_lists.append(planes[i] * rows * cols + np.flatnonzero(plane_mask))
    mask_matrix = _mask_matrix(pixel_lists, num_planes * rows * cols)

    bright_rng = np.random.default_rng([scene_seed, _STREAM_BRIGHTNESS])
    resting = background * bright_rng.uniform(*_RESTING_RANGE, size=n)
    amplitudes = background * bright_rng.uniform(*_AMPLITUDE_RANGE, size=n)
    structural = background * bright_rng.uniform(*_STRUCTURAL_RANGE, size=n)

    texture_rng = np.random.default_rng([scene_seed, _STREAM_TEXTURE])
    vignette = _vignetting(rows, cols)
    baseline = np.empty((num_planes, rows, cols, num_channels))
    for z in range(num_planes):
        for c in range(2):  # always draw both textures: channel 0 never depends on C
            texture = _texture(texture_rng, rows, cols)
            if c < num_channels:
                level = background if c == 0 else _RED_BACKGROUND * background
                baseline[z, :, :, c] = level * vignette * texture
    cell_sum = mask_matrix.T.astype(np.float64)
    baseline[..., 0] += (cell_sum @ resting).reshape(num_planes, rows, cols)
    if num_channels > 1:
        baseline[..., 1] += (cell_sum @ structural).reshape(num_planes, rows, cols)

    # ---- activity (from seed) ----
    gamma = float(np.exp(-1.0 / (tau * frame_rate)))
    spike_rng = np.random.default_rng([seed, _STREAM_SPIKES])
    spikes = np.ascontiguousarray(
        spike_rng.poisson(spike_rate / frame_rate, size=(num_frames, n)).astype(np.int64).T
    )
    calcium = _ar1(spikes, gamma)
    neuropil = _neuropil(
        np.random.default_rng([seed, _STREAM_NEUROPIL]),
        num_planes,
        num_frames,
        neuropil_std,
        float(np.exp(-1.0 / (neuropil_tau * frame_rate))),
    )
    displacements = _motion(
        np.random.default_rng([seed, _STREAM_MOTION]),
        num_frames,
        (max_dy, max_dx),
        float(np.exp(-1.0 / (_MOTION_TAU * frame_rate))),
    )

    # ---- the movie, in time chunks ----
    movie = np.empty((num_frames, num_planes, rows, cols, num_channels), dtype=out_dtype)
    moving = (max_dy, max_dx) != (0, 0)
    if moving:
        obs_rows, obs_cols = rows - max_dy, cols - max_dx
        observed = np.empty(
            (num_frames, num_planes, obs_rows, obs_cols, num_channels), dtype=out_dtype
        )
    else:
        observed = movie
    _render(
        movie,
        baseline,
        neuropil,
        _ActivityOperator(mask_matrix),
        amplitudes[:, None] * calcium,
        gain=gain,
        read_noise=read_noise,
        nan_fraction=nan_fraction,
        noise_rng=np.random.default_rng([seed, _STREAM_NOISE]),
        nan_rng=np.random.default_rng([seed, _STREAM_NAN]),
    )
    if moving:
        for t, (dy, dx) in enumerate(displacements):
            observed[t] = movie[t, :, dy : dy + obs_rows, dx : dx + obs_cols]
    truth = None
    if motion is not None:
        observed_shape = (num_planes, rows - margin[0], cols - margin[1])
        truth = _motion_truth(
            motion,
            seed,
            num_frames,
            (num_planes, rows, cols),
            observed_shape,
            frame_rate,
            amplitude,
            warp,
        )
        displacements = truth.displacements
        observed = np.empty((num_frames, *observed_shape, num_channels), dtype=out_dtype)
        _render_observed(
            observed,
            truth,
            baseline,
            neuropil,
            _ActivityOperator(mask_matrix),
            amplitudes[:, None] * calcium,
            gain=gain,
            read_noise=read_noise,
            nan_fraction=nan_fraction,
            noise_rng=np.random.default_rng([seed, _STREAM_OBSERVED_NOISE]),
            nan_rng=np.random.default_rng([seed, _STREAM_OBSERVED_NAN]),
        )

    return SimulatedMovie(
        movie=movie,
        observed=observed,
        displacements=displacements,
        polygons=tuple(polygons),
        planes=planes,
        masks=masks,
        spikes=spikes,
        calcium=calcium,
        gamma=gamma,
        frame_rate=frame_rate,
        tau=tau,
        spike_rate=spike_rate,
        amplitudes=amplitudes,
        resting=resting,
        structural=structural,
        baseline=baseline,
        neuropil=neuropil,
        gain=gain,
        read_noise=read_noise,
        seed=seed,
        scene_seed=scene_seed,
        motion=truth,
    )


# ---------------------------------------------------------------- validation


def _check_pair(name: str, value: Any, minimum: int) -> tuple[int, int]:
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a pair of integers, got {value!r}") from None
    if len(items) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items
    ):
        raise ValueError(f"{name} must be a pair of integers, got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{name} entries must be >= {minimum}, got {items}")
    return int(items[0]), int(items[1])


def _check_float(name: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} 0")
    return value


def _check_radius(value: Any) -> tuple[float, float]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        low = high = float(value)
    else:
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(
                f"cell_radius must be a number or a (low, high) pair, got {value!r}"
            ) from None
    if not (np.isfinite(high) and 1.0 <= low <= high):
        raise ValueError(f"cell_radius must satisfy 1 <= low <= high, got {value!r}")
    return low, high


def _check_amplitude(value: Any) -> tuple[float, float]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        items: tuple[Any, ...] = (value, value)
    else:
        try:
            items = tuple(value)
        except TypeError:
            items = ()
    if len(items) != 2 or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items
    ):
        raise ValueError(f"motion_amplitude must be a number or a pair, got {value!r}")
    out = (float(items[0]), float(items[1]))
    if not all(np.isfinite(v) and v >= 0 for v in out):
        raise ValueError(f"motion_amplitude entries must be finite and >= 0, got {value!r}")
    return out


def _nonrigid_limit(rows: int, cols: int) -> float:
    """Largest deformation bound keeping the Jacobian norm under ``_MAX_WARP_SLOPE``."""
    # |J|_F <= sqrt(2) · A_n · 2π · max|κ| with max|κ| = hypot(1/Y, 1/X).
    return _MAX_WARP_SLOPE / (np.sqrt(2.0) * 2.0 * np.pi * np.hypot(1.0 / rows, 1.0 / cols))


def _check_nonrigid(value: Any, rows: int, cols: int) -> float:
    limit = _nonrigid_limit(rows, cols)
    if value is None:
        return float(min(_NONRIGID_DEFAULT, limit))
    value = _check_float("nonrigid_amplitude", value)
    if value > limit:
        raise ValueError(
            f"nonrigid_amplitude {value} is too large for frame_shape {(rows, cols)}: "
            f"the deformation must stay invertible, at most {limit:.3g} px"
        )
    return value


def _check_dtype(value: Any) -> np.dtype:
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be one of {SUPPORTED_DTYPES}, got {value!r}")
    return dtype


# ---------------------------------------------------------------- the scene


def _max_extent(radius: float) -> float:
    """Largest distance from a centre to an outline vertex for this radius."""
    return (1.0 + _WOBBLE) * radius / np.sqrt(_AXIS_RATIO_RANGE[0])


def _make_outlines(
    rng: np.random.Generator,
    count: int,
    plane: int,
    rows: int,
    cols: int,
    radius: tuple[float, float],
) -> list[np.ndarray]:
    """Draw ``count`` non-crowded elliptical outlines in one plane."""
    outlines: list[np.ndarray] = []
    centres = np.empty((count, 2))
    radii = np.empty(count)
    for i in range(count):
        r = rng.uniform(*radius)
        q = rng.uniform(*_AXIS_RATIO_RANGE)
        theta = rng.uniform(0.0, np.pi)
        num_vertices = int(rng.integers(_VERTEX_RANGE[0], _VERTEX_RANGE[1] + 1))
        k = np.arange(num_vertices) + rng.uniform(-_ANGLE_JITTER, _ANGLE_JITTER, num_vertices)
        phi = 2.0 * np.pi * k / num_vertices
        wobble = 1.0 + rng.uniform(-_WOBBLE, _WOBBLE, num_vertices)
        major, minor = r / np.sqrt(q), r * np.sqrt(q)
        ex, ey = major * wobble * np.cos(phi), minor * wobble * np.sin(phi)
        dx = ex * np.cos(theta) - ey * np.sin(theta)
        dy = ex * np.sin(theta) + ey * np.cos(theta)
        # Centre range keeping every vertex _MARGIN pixels inside the frame.
        lo_x, hi_x = _MARGIN - dx.min(), cols - _MARGIN - dx.max()
        lo_y, hi_y = _MARGIN - dy.min(), rows - _MARGIN - dy.max()
        spacing = _MIN_SPACING
        while True:
            for _ in range(50):
                cx, cy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
                if i == 0:
                    break
                dist = np.hypot(centres[:i, 0] - cx, centres[:i, 1] - cy)
                if np.all(dist >= spacing * (radii[:i] + r)):
                    break
            else:
                spacing *= 0.8
                continue
            break
        centres[i] = cx, cy
        radii[i] = r
        vertices = np.column_stack([cx + dx, cy + dy, np.full(num_vertices, float(plane))])
        outlines.append(vertices.astype(np.float32).astype(np.float64))
    return outlines


def _vignetting(rows: int, cols: int) -> np.ndarray:
    yy = (np.arange(rows) + 0.5 - rows / 2) / (rows / 2)
    xx = (np.arange(cols) + 0.5 - cols / 2) / (cols / 2)
    return 1.0 - _VIGNETTING * (yy[:, None] ** 2 + xx[None, :] ** 2)


def _texture(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    import scipy.ndimage

    field = scipy.ndimage.gaussian_filter(rng.standard_normal((rows, cols)), _TEXTURE_SIGMA)
    std = field.std()
    field = (field - field.mean()) / std if std > 0 else np.zeros_like(field)
    return np.exp(_TEXTURE_CONTRAST * field - _TEXTURE_CONTRAST**2 / 2)


# ---------------------------------------------------------------- activity


def _ar1(spikes: np.ndarray, gamma: float) -> np.ndarray:
    """``c[:, t] = gamma * c[:, t - 1] + s[:, t]``, evaluated literally."""
    calcium = np.empty(spikes.shape, dtype=np.float64)
    if spikes.shape[1] == 0:
        return calcium
    calcium[:, 0] = spikes[:, 0]
    for t in range(1, spikes.shape[1]):
        calcium[:, t] = gamma * calcium[:, t - 1] + spikes[:, t]
    return calcium


def _neuropil(
    rng: np.random.Generator, planes: int, frames: int, std: float, rho: float
) -> np.ndarray:
    """Stationary AR(1) fluctuation with standard deviation ``std`` per plane."""
    drive = rng.standard_normal((planes, frames)) * std
    drive[:, 1:] *= np.sqrt(1.0 - rho**2)
    out = np.empty_like(drive)
    if frames:
        out[:, 0] = drive[:, 0]
    for t in range(1, frames):
        out[:, t] = rho * out[:, t - 1] + drive[:, t]
    return out


def _motion(
    rng: np.random.Generator, frames: int, max_shift: tuple[int, int], rho: float
) -> np.ndarray:
    """Integer ``(dy, dx)`` per frame from a smooth random walk in ``[0, max]``."""
    walk = _neuropil(rng, 2, frames, 1.0, rho)
    walk += _MOTION_JITTER * rng.standard_normal((2, frames))
    shifts = np.zeros((frames, 2), dtype=np.int64)
    for axis, limit in enumerate(max_shift):
        low, high = walk[axis].min(), walk[axis].max()
        if limit > 0 and high > low:
            shifts[:, axis] = np.rint((walk[axis] - low) / (high - low) * limit)
    return shifts


def _stationary_ar1(rng: np.random.Generator, rows: int, length: int, rho: float) -> np.ndarray:
    """``rows`` independent unit-variance stationary AR(1) series (filtered, vectorised)."""
    import scipy.signal

    drive = rng.standard_normal((rows, length))
    if length < 2:
        return drive
    first = drive[:, :1]
    rest = scipy.signal.lfilter(
        [np.sqrt(1.0 - rho**2)], [1.0, -rho], drive[:, 1:], axis=1, zi=rho * first
    )[0]
    return np.concatenate([first, rest], axis=1)


def _trajectory(
    rng: np.random.Generator, frames: int, per_frame: int, frame_rate: float
) -> np.ndarray:
    """``(2, frames·per_frame)`` motion of the sample, ``per_frame`` samples per frame."""
    step = 1.0 / (frame_rate * per_frame)  # seconds between samples
    n = frames * per_frame
    slow = _stationary_ar1(rng, 2, n, float(np.exp(-step / _MOTION_TAU)))
    fast = _stationary_ar1(rng, 2, n, float(np.exp(-step * frame_rate)))
    return slow + _FAST_MOTION_WEIGHT * fast


def _span(walk: np.ndarray, amplitude: tuple[float, float]) -> np.ndarray:
    """Map each row of ``walk`` linearly onto ``[0, 2·amplitude]`` (last axis (dy, dx))."""
    out = np.zeros((walk.shape[1], 2))
    for axis in range(2):
        low, high = walk[axis].min(), walk[axis].max()
        if amplitude[axis] > 0 and high > low:
            out[:, axis] = (walk[axis] - low) / (high - low) * (2.0 * amplitude[axis])
    return out


def _motion_truth(
    kind: str,
    seed: int,
    frames: int,
    scene_shape: tuple[int, int, int],
    observed_shape: tuple[int, int, int],
    frame_rate: float,
    amplitude: tuple[float, float],
    warp: float,
) -> MotionTruth:
    """Draw the continuous motion of ``simulate_movie(motion=kind)``."""
    planes, rows, cols = scene_shape
    rng = np.random.default_rng([seed, _STREAM_TRAJECTORY])
    per_frame = planes * (observed_shape[1] if kind == "rowwise" else 1)
    shifts = _span(_trajectory(rng, frames, per_frame, frame_rate), amplitude)
    if kind == "rowwise":
        displacements = np.rint(shifts).astype(np.int64).reshape(frames, planes, -1, 2)
    else:
        displacements = shifts.reshape(frames, planes, 2)
    wavevectors = np.zeros((0, 2))
    phases = np.zeros(0)
    weights = np.zeros((frames, planes, 0, 2))
    if kind == "nonrigid":
        wavevectors = np.array(
            [[1 / rows, 0.0], [0.0, 1 / cols], [1 / rows, 1 / cols], [1 / rows, -1 / cols]]
        )
        k = wavevectors.shape[0]
        deform = np.random.default_rng([seed, _STREAM_DEFORMATION])
        phases = deform.uniform(0.0, 2.0 * np.pi, size=k)
        walks = _stationary_ar1(
            deform,
            2 * k,
            frames * planes,
            float(np.exp(-1.0 / (planes * frame_rate * _MOTION_TAU))),
        )
        weights = walks.T.reshape(frames, planes, 2, k).transpose(0, 1, 3, 2).copy()
        total = np.abs(weights).sum(axis=2).max()  # largest Σ_k |w_k| over samples and axes
        weights *= warp / total if total > 0 else 0.0
        displacements = displacements + warp
    return MotionTruth(
        kind=kind,
        scene_shape=scene_shape,
        observed_shape=observed_shape,
        displacements=displacements,
        wavevectors=wavevectors,
        phases=phases,
        weights=weights,
    )


# ---------------------------------------------------------------- rendering


def _mask_matrix(pixel_lists: list[np.ndarray], num_pixels: int) -> scipy.sparse.csr_array:
    """Boolean CSR matrix whose row ``i`` is set at ``pixel_lists[i]``."""
    indptr = np.zeros(len(pixel_lists) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([p.size for p in pixel_lists])
    indices = np.concatenate(pixel_lists) if pixel_lists else np.zeros(0, dtype=np.int64)
    data = np.ones(indices.size, dtype=bool)
    return scipy.sparse.csr_array((data, indices, indptr), shape=(len(pixel_lists), num_pixels))


class _ActivityOperator:
    """Maps per-cell activity ``(n, k)`` to the covered pixels ``(k, P_covered)``.

    Only pixels inside some mask ever receive activity, so the sparse product
    is evaluated on those columns alone.
    """

    def __init__(self, mask_matrix: scipy.sparse.csr_array) -> None:
        counts = np.asarray(mask_matrix.sum(axis=0)).ravel()
        self.covered = np.flatnonzero(counts)
        self.matrix = mask_matrix[:, self.covered].T.astype(np.float64).tocsr()

    def add_to(self, green: np.ndarray, activity: np.ndarray) -> None:
        """Add ``Σ_i activity[i, t]·M_i`` to ``green`` of shape ``(k, Z, Y, X)``."""
        if self.covered.size and green.shape[0]:
            if not green.flags.c_contiguous:
                raise ValueError("green must be C-contiguous")
            flat = green.reshape(green.shape[0], -1)
            flat[:, self.covered] += (self.matrix @ activity).T.astype(green.dtype)


def _fill_mean(
    out: np.ndarray,
    baseline: np.ndarray,
    neuropil: np.ndarray,
    operator: _ActivityOperator,
    activity: np.ndarray,
) -> None:
    """Write the expected frames ``μ`` into ``out`` of shape ``(k, Z, Y, X, C)``.

    ``neuropil`` is ``(Z, k)`` and ``activity`` is ``(n, k)`` (amplitude ×
    calcium); the values are rounded to ``out``'s dtype.
    """
    k, planes, rows, cols, _ = out.shape
    green = np.empty((k, planes, rows, cols), dtype=out.dtype)  # C order: reshaped in place
    np.multiply(baseline[None, ..., 0], 1.0 + neuropil.T[:, :, None, None], out=green)
    operator.add_to(green, activity)
    out[..., 0] = green
    if out.shape[-1] > 1:
        out[..., 1] = baseline[None, ..., 1]


def _render(
    movie: np.ndarray,
    baseline: np.ndarray,
    neuropil: np.ndarray,
    operator: _ActivityOperator,
    activity: np.ndarray,
    *,
    gain: float,
    read_noise: float,
    nan_fraction: float,
    noise_rng: np.random.Generator,
    nan_rng: np.random.Generator,
) -> None:
    """Fill ``movie`` chunk by chunk with noisy realisations of ``μ``."""
    from sima_fast.kernels.noise import add_noise, normal_table  # imports numba

    frames = movie.shape[0]
    work = np.float64 if movie.dtype == np.float64 else np.float32
    table = normal_table(work)
    per_frame = int(np.prod(movie.shape[1:]))
    chunk = max(1, min(frames, _CHUNK_ELEMENTS // max(per_frame, 1)))
    mean = np.empty((chunk, *movie.shape[1:]), dtype=work)
    for start in range(0, frames, chunk):
        stop = min(start + chunk, frames)
        mu = mean[: stop - start]
        _fill_mean(mu, baseline, neuropil[:, start:stop], operator, activity[:, start:stop])
        out = movie[start:stop]
        add_noise(mu, noise_rng, table, gain, read_noise, out)
        if nan_fraction > 0:
            out[nan_rng.random(out.shape, dtype=work) < nan_fraction] = np.nan


def _scene_positions(truth: MotionTruth, t: int, z: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the scene positions ``q`` shown by each observed pixel ``p`` (plane z, frame t).

    Rigid: ``q = p + d``. Non-rigid: ``q − d(q) = p``, by Newton's method
    (the Jacobian of ``d`` is kept below 1/2, so ``q ↦ q − d(q)`` is
    invertible and the iteration converges from ``p + d(p + D)``).

    Returns
    -------
    tuple of numpy.ndarray
        ``(qy, qx)``, each of shape ``(Yo, Xo)``.
    """
    _, rows, cols = truth.observed_shape
    py = np.arange(rows, dtype=np.float64)[:, None]
    px = np.arange(cols, dtype=np.float64)[None, :]
    dy, dx = truth.displacements[t, z]
    qy, qx = np.broadcast_arrays(py + dy, px + dx)
    if truth.kind == "rigid":
        return qy, qx
    weights = truth.weights[t, z]
    turns = 2.0 * np.pi * truth.wavevectors

    def residual(qy: np.ndarray, qx: np.ndarray, jacobian: bool) -> tuple[np.ndarray, ...]:
        # g(q) = q − d(q) − p and, optionally, the entries of ∂g/∂q.
        gy, gx = qy - dy - py, qx - dx - px
        jac = [np.ones_like(qy), np.zeros_like(qy), np.zeros_like(qy), np.ones_like(qy)]
        for k, (ky, kx) in enumerate(turns):
            angle = ky * qy + kx * qx + truth.phases[k]
            wave = np.cos(angle)
            gy -= weights[k, 0] * wave
            gx -= weights[k, 1] * wave
            if jacobian:
                slope = np.sin(angle)  # ∂cos/∂q = −sin·(ky, kx); g has −d
                jac[0] += weights[k, 0] * ky * slope
                jac[1] += weights[k, 0] * kx * slope
                jac[2] += weights[k, 1] * ky * slope
                jac[3] += weights[k, 1] * kx * slope
        return (gy, gx, *jac) if jacobian else (gy, gx)

    gy, gx = residual(qy, qx, False)
    qy, qx = qy - gy, qx - gx  # one fixed-point step: q = p + d(p + D)
    for _ in range(50):
        gy, gx, a, b, c, e = residual(qy, qx, True)
        if max(np.abs(gy).max(), np.abs(gx).max()) < 1e-10:
            return qy, qx
        det = a * e - b * c
        qy = qy - (e * gy - b * gx) / det
        qx = qx - (a * gx - c * gy) / det
    raise RuntimeError("the non-rigid motion could not be inverted")  # pragma: no cover


def _cubic_weights(f: float) -> tuple[float, float, float, float]:
    """Cubic B-spline weights of the coefficients ``n − 1 … n + 2`` at ``n + f``."""
    f2, f3 = f * f, f * f * f
    return (
        (1.0 - f) ** 3 / 6.0,
        (4.0 - 6.0 * f2 + 3.0 * f3) / 6.0,
        (1.0 + 3.0 * f + 3.0 * f2 - 3.0 * f3) / 6.0,
        f3 / 6.0,
    )


def _spline_shift(image: np.ndarray, dy: float, dx: float, rows: int, cols: int) -> np.ndarray:
    """Sample the cubic spline ``S`` of ``image`` at ``(i + dy, j + dx)``.

    The same values as ``scipy.ndimage.map_coordinates(image, ..., order=3,
    mode='mirror')``, computed separably: a translation samples every row (and
    column) at the same fraction, so each axis is one 4-tap filter of the
    spline coefficients.

    Returns
    -------
    numpy.ndarray of float64, shape (rows, cols)
        ``S(i + dy, j + dx)`` for ``i < rows``, ``j < cols``.
    """
    import scipy.ndimage

    coef = np.pad(scipy.ndimage.spline_filter(image, order=3, mode="mirror"), 2, mode="reflect")
    ny, nx = int(np.floor(dy)), int(np.floor(dx))
    along_y = np.zeros((rows, coef.shape[1]))
    for m, w in enumerate(_cubic_weights(dy - ny)):
        along_y += w * coef[1 + ny + m : 1 + ny + m + rows]
    out = np.zeros((rows, cols))
    for m, w in enumerate(_cubic_weights(dx - nx)):
        out += w * along_y[:, 1 + nx + m : 1 + nx + m + cols]
    return out


def _sample_plane(image: np.ndarray, truth: MotionTruth, t: int, z: int, out: np.ndarray) -> None:
    """Write what the moving microscope sees of ``image`` (Y, X, C) into ``out`` (Yo, Xo, C)."""
    import scipy.ndimage

    rows, cols = out.shape[:2]
    if truth.kind == "rowwise":
        d = truth.displacements[t, z]
        ii = np.arange(rows)[:, None] + d[:, 0:1]
        jj = np.arange(cols)[None, :] + d[:, 1:2]
        out[...] = image[ii, jj]
        return
    if truth.kind == "rigid":
        dy, dx = truth.displacements[t, z]
        for c in range(image.shape[-1]):
            out[..., c] = _spline_shift(image[..., c], float(dy), float(dx), rows, cols)
        return
    qy, qx = _scene_positions(truth, t, z)
    for c in range(image.shape[-1]):
        out[..., c] = scipy.ndimage.map_coordinates(
            image[..., c], [qy, qx], order=_SPLINE_ORDER, mode="mirror"
        )


def _render_observed(
    observed: np.ndarray,
    truth: MotionTruth,
    baseline: np.ndarray,
    neuropil: np.ndarray,
    operator: _ActivityOperator,
    activity: np.ndarray,
    *,
    gain: float,
    read_noise: float,
    nan_fraction: float,
    noise_rng: np.random.Generator,
    nan_rng: np.random.Generator,
) -> None:
    """Fill ``observed`` chunk by chunk: sample the moving scene, then add noise."""
    from sima_fast.kernels.noise import add_noise, normal_table  # imports numba

    frames = observed.shape[0]
    work = np.float64 if observed.dtype == np.float64 else np.float32
    table = normal_table(work)
    per_frame = int(np.prod(baseline.shape))
    chunk = max(1, min(frames, _CHUNK_ELEMENTS // max(per_frame, 1)))
    scene = np.empty((chunk, *baseline.shape))  # float64: the spline sees exact means
    sampled = np.empty((chunk, *observed.shape[1:]), dtype=work)
    for start in range(0, frames, chunk):
        stop = min(start + chunk, frames)
        mu = scene[: stop - start]
        _fill_mean(mu, baseline, neuropil[:, start:stop], operator, activity[:, start:stop])
        for i in range(stop - start):
            for z in range(baseline.shape[0]):
                _sample_plane(mu[i, z], truth, start + i, z, sampled[i, z])
        out = observed[start:stop]
        add_noise(sampled[: stop - start], noise_rng, table, gain, read_noise, out)
        if nan_fraction > 0:
            out[nan_rng.random(out.shape, dtype=work) < nan_fraction] = np.nan

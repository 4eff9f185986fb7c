"""The warped view: frames moved by sub-pixel or non-rigid displacement fields.

:class:`WarpedSequence` is the interpolating companion of the whole-pixel
:class:`~sima_fast.sequence.views.MotionCorrectedSequence`. It corrects each
plane of each frame by a displacement field ``d(p)`` in the convention of
:meth:`~sima_fast.sequence.base.Sequence.apply_displacements` (source pixel
``q`` lands at ``q + d``), i.e. the corrected frame is
``corrected(p) = source(p - d(p))``, sampled by the view's interpolation
(``'linear'``, ``'cubic'`` or ``'nearest'``; see :mod:`sima_fast.kernels.warp`).
The field is either
one ``(dy, dx)`` per plane (a rigid sub-pixel shift) or shifts given at the
centres of a grid of blocks, interpolated bilinearly between the centres and
held constant beyond the outermost ones (non-rigid, piecewise-rigid motion
correction). Corrected pixels whose source point lies outside the frame, or
whose interpolation support holds a NaN source pixel, are NaN. Every channel
moves with the same field.

Reading streams: a block of frames is read from the wrapped sequence, in
slices of about :data:`~sima_fast.sequence.base.ITER_CHUNK_BYTES`, and warped
by the numba kernel :func:`sima_fast.kernels.warp.warp_field`; the view is
saved as a description holding the displacements, the grid and the
interpolation (descriptions saved before the interpolation was recorded load
as ``'linear'``, the only one there was).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from sima_fast._validate import ArgumentTypeError
from sima_fast.sequence.base import (
    ITER_CHUNK_BYTES,
    LoadContext,
    SaveContext,
    Sequence,
    WrapperSequence,
    float_dtype,
)

__all__ = ["INTERPOLATIONS", "WarpedSequence", "check_interpolation"]

#: The interpolations of the warped view (those of :mod:`sima_fast.kernels.warp`).
INTERPOLATIONS = ("linear", "cubic", "nearest")


def check_interpolation(value: Any, name: str = "interpolation") -> str:
    """Check an interpolation name for the warped view (or a strategy that makes one).

    Parameters
    ----------
    value : object
        ``'linear'``, ``'cubic'`` or ``'nearest'``.
    name : str, optional
        The argument's name, for the messages (default ``'interpolation'``).

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    ArgumentTypeError
        ``value`` is not a string.
    ValueError
        It names no interpolation.
    """
    if not isinstance(value, str):
        raise ArgumentTypeError(
            f"{name} must be one of {list(INTERPOLATIONS)}, got {type(value).__name__}"
        )
    if value not in INTERPOLATIONS:
        raise ValueError(f"{name} must be one of {list(INTERPOLATIONS)}, got {value!r}")
    return value


def _centres(value: Any, size: int, name: str) -> np.ndarray:
    """Check one axis of the block grid and return it as ``float64``."""
    try:
        c = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            f"grid: {name} must be a 1-D array of numbers, got {type(value).__name__}"
        ) from None
    if c.ndim != 1 or c.shape[0] != size:
        raise ValueError(
            f"grid: {name} must hold {size} block centres (the displacements' grid axis), "
            f"got shape {c.shape}"
        )
    if not np.all(np.isfinite(c)) or np.any(np.diff(c) <= 0):
        raise ValueError(f"grid: {name} must be finite and strictly increasing, got {c}")
    return np.ascontiguousarray(c)


class WarpedSequence(WrapperSequence, format="warped"):
    """Frames corrected by sub-pixel (rigid) or non-rigid displacement fields.

    ``corrected[t, z](p) = base[t, z](p - d_tz(p))``, interpolated, where
    ``p = (row, column)`` is a pixel of the corrected frame; NaN where the
    source point lies outside the frame or a source pixel of its
    interpolation support is NaN (whole-pixel displacements copy the values
    exactly, whatever the interpolation). Same sign as
    :meth:`~sima_fast.sequence.base.Sequence.apply_displacements`: content at
    ``q`` in the source appears at ``q + d`` in the corrected frame.

    Parameters
    ----------
    base : Sequence
        The uncorrected sequence ``(T, Z, Y, X, C)``.
    displacements : array_like of float
        ``(T, Z, 2)``: one ``(dy, dx)`` per frame and plane (a rigid,
        sub-pixel shift of the whole plane); or ``(T, Z, Gy, Gx, 2)``: shifts
        at the centres of a ``Gy × Gx`` grid of blocks, given by ``grid``.
        Finite.
    grid : (array_like, array_like), optional
        ``(centres_y, centres_x)``: the rows (``Gy`` values) and columns
        (``Gx`` values) of the block centres in corrected-frame coordinates,
        strictly increasing. Required with block displacements, not allowed
        with ``(T, Z, 2)`` ones. Between centres the field is bilinear, beyond
        the outermost centres it is constant.
    frame_shape : tuple of int, optional
        ``(Z, Y, X)`` (or ``(Z, Y, X, C)``) of the corrected frames; ``Z``
        (and ``C``) must be the source's. Default: the source frame shape.
    interpolation : {'linear', 'cubic', 'nearest'}, optional
        How the source is sampled between pixel centres (default
        ``'linear'``): bilinear; Keys' cubic convolution (4 × 4 pixels,
        ``a = -0.5``; far less smoothing than bilinear, pixels within one
        pixel of the frame's edge repeat the edge); or the nearest pixel
        (exact source values, up to half a pixel out of place). The same
        pixels are NaN for all three, apart from NaN source pixels (a cubic
        sample's support is 4 × 4 pixels, a bilinear one's 2 × 2).

    Raises
    ------
    ArgumentTypeError
        ``displacements`` or ``grid`` is not numeric, ``frame_shape`` not a
        tuple of integers, ``interpolation`` not a string (a
        :class:`TypeError` and a :class:`ValueError`).
    ValueError
        Shapes that do not match the sequence, non-finite displacements, a
        grid given or missing where it must not or must be, centres that
        are not strictly increasing, or an unknown interpolation.

    Examples
    --------
    >>> import numpy as np
    >>> from sima_fast import Sequence
    >>> from sima_fast.sequence import WarpedSequence
    >>> seq = Sequence.create('ndarray', np.arange(32.).reshape(2, 1, 4, 4, 1))
    >>> view = WarpedSequence(seq, np.array([[[0.0, 0.0]], [[0.0, 0.5]]]))
    >>> view.shape, view.dtype
    ((2, 1, 4, 4, 1), dtype('float64'))
    >>> view.read_chunk(1, 2)[0, 0, 0, :, 0]   # half a column to the right
    array([ nan, 16.5, 17.5, 18.5])
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {
        "base": "description",
        "displacements": "array",
        "grid_y": "?array",
        "grid_x": "?array",
        "frame_shape": "ints",
        "interpolation": "?str",
    }

    def __init__(
        self,
        base: Sequence,
        displacements: Any,
        *,
        grid: Any = None,
        frame_shape: tuple[int, ...] | None = None,
        interpolation: str = "linear",
    ) -> None:
        super().__init__(base)
        self._interpolation = check_interpolation(interpolation)
        T, Z, Y, X, C = base.shape
        try:
            disp = np.asarray(displacements)
        except (TypeError, ValueError):
            disp = np.asarray(None)
        if disp.dtype.kind not in "iuf":
            raise ArgumentTypeError(
                f"displacements must be a numeric array, got {type(displacements).__name__} "
                f"of dtype {disp.dtype}"
            )
        if disp.ndim == 3 and disp.shape[:2] == (T, Z) and disp.shape[2] == 2:
            if grid is not None:
                raise ValueError(
                    "grid must be None for (T, Z, 2) displacements (one shift per plane)"
                )
            self._rigid = True
            blocks = disp.reshape(T, Z, 1, 1, 2)
            cy = cx = np.zeros(1)
        elif disp.ndim == 5 and disp.shape[:2] == (T, Z) and disp.shape[4] == 2:
            if grid is None:
                raise ValueError(
                    "grid=(centres_y, centres_x) is required with (T, Z, Gy, Gx, 2) displacements"
                )
            if not isinstance(grid, (tuple, list)) or len(grid) != 2:
                raise ArgumentTypeError(
                    f"grid must be a pair (centres_y, centres_x), got {type(grid).__name__}"
                )
            self._rigid = False
            blocks = disp
            cy = _centres(grid[0], disp.shape[2], "centres_y")
            cx = _centres(grid[1], disp.shape[3], "centres_x")
        else:
            raise ValueError(
                f"displacements must have shape (T, Z, 2) or (T, Z, Gy, Gx, 2) with "
                f"(T, Z) = {(T, Z)}; got {disp.shape}"
            )
        blocks = np.ascontiguousarray(blocks, dtype=np.float64)
        if not np.all(np.isfinite(blocks)):
            raise ValueError("displacements must be finite (no NaN or inf)")
        self._displacements = np.ascontiguousarray(disp, dtype=np.float64)
        self._blocks = blocks
        self._cy, self._cx = cy, cx
        if frame_shape is None:
            frame_shape = (Z, Y, X)
        else:
            try:
                frame_shape = tuple(int(s) for s in frame_shape)
            except (TypeError, ValueError):
                raise ArgumentTypeError(
                    f"frame_shape must be a tuple of ints (Z, Y, X), got {frame_shape!r}"
                ) from None
            if len(frame_shape) == 4:
                if frame_shape[3] != C:
                    raise ValueError(
                        f"frame_shape has {frame_shape[3]} channels; the sequence has {C}"
                    )
                frame_shape = frame_shape[:3]
            if len(frame_shape) != 3 or min(frame_shape) < 1:
                raise ValueError(
                    f"frame_shape must be three positive ints (Z, Y, X), got {frame_shape!r}"
                )
            if frame_shape[0] != Z:
                raise ValueError(
                    f"frame_shape has {frame_shape[0]} planes; the sequence has {Z} (each "
                    "plane is warped in place)"
                )
        self._frame_shape = frame_shape
        self._dtype = float_dtype(base.dtype)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)``: the wrapped ``T``, ``Z``, ``C``; the corrected ``Y``, ``X``."""
        return (self.base.shape[0], *self._frame_shape, self.base.shape[4])

    @property
    def dtype(self) -> np.dtype:
        """The smallest float dtype holding the wrapped values (see ``float_dtype``)."""
        return self._dtype

    @property
    def displacements(self) -> np.ndarray:
        """The displacements as given: ``(T, Z, 2)`` or ``(T, Z, Gy, Gx, 2)`` ``float64``."""
        return self._displacements

    @property
    def interpolation(self) -> str:
        """``'linear'``, ``'cubic'`` or ``'nearest'``: how the source is sampled."""
        return self._interpolation

    @property
    def grid(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(centres_y, centres_x)`` of the blocks, or None for per-plane shifts."""
        return None if self._rigid else (self._cy, self._cx)

    def field(self, t: int, z: int = 0) -> np.ndarray:
        """Return the per-pixel displacement field of frame ``t``, plane ``z``.

        Parameters
        ----------
        t : int
            Frame index (negative counts from the end).
        z : int, optional
            Plane index (default 0).

        Returns
        -------
        numpy.ndarray
            ``(Y, X, 2)`` ``float64``: the ``(dy, dx)`` applied at each pixel
            of the corrected frame.

        Raises
        ------
        IndexError
            ``t`` or ``z`` is out of range.
        """
        from sima_fast.kernels.warp import interpolate_field

        T, Z = self.shape[:2]
        if not (-T <= t < T and -Z <= z < Z):
            raise IndexError(
                f"frame {t}, plane {z} is outside the sequence's {T} frames and {Z} planes"
            )
        out = np.empty((*self._frame_shape[1:], 2), dtype=np.float64)
        return interpolate_field(self._blocks[t, z], self._cy, self._cx, out)

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        from sima_fast.kernels.warp import warp_field

        src_frame = max(int(np.prod(self.base.shape[1:])) * self.base.dtype.itemsize, 1)
        step = max(1, ITER_CHUNK_BYTES // src_frame)
        for t0 in range(start, stop, step):
            t1 = min(t0 + step, stop)
            src = self.base.read_chunk(t0, t1)
            warp_field(
                src,
                self._blocks[t0:t1],
                self._cy,
                self._cx,
                out[t0 - start : t1 - start],
                interpolation=self._interpolation,
            )

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the view in JSON-compatible form, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; the wrapped sequence is described in it
            too, and the displacements and the grid go to its array store.

        Returns
        -------
        dict
            ``'fmt'``, ``'base'``, ``'displacements'`` (``{'array': key}``),
            ``'grid_y'`` and ``'grid_x'`` (``{'array': key}``, only for block
            displacements), ``'frame_shape'`` (``[Z, Y, X]``) and
            ``'interpolation'``.
        """
        d: dict[str, Any] = {
            "fmt": self.format,
            "base": self.base.todict(ctx),
            "displacements": {"array": ctx.add_array(self._displacements)},
            "frame_shape": list(self._frame_shape),
            "interpolation": self._interpolation,
        }
        if not self._rigid:
            d["grid_y"] = {"array": ctx.add_array(self._cy)}
            d["grid_x"] = {"array": ctx.add_array(self._cx)}
        return d

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Rebuild the view from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description.
        ctx : LoadContext
            The dataset being loaded; its array store holds the displacements
            and the grid. A description without ``'interpolation'`` (saved
            before it was recorded) loads as ``'linear'``.

        Returns
        -------
        WarpedSequence

        Raises
        ------
        ValueError
            The stored arrays do not fit the wrapped sequence, or the
            interpolation is unknown (a corrupt dataset).
        """
        base = Sequence.fromdict(d["base"], ctx)
        disp = ctx.get_array(d["displacements"]["array"])
        grid = None
        if d.get("grid_y") is not None or d.get("grid_x") is not None:
            if d.get("grid_y") is None or d.get("grid_x") is None:
                raise ValueError("a warped view's description has only one of grid_y, grid_x")
            grid = (ctx.get_array(d["grid_y"]["array"]), ctx.get_array(d["grid_x"]["array"]))
        # descriptions written before the interpolation was recorded were bilinear
        interpolation = d.get("interpolation") or "linear"
        return cls(
            base,
            disp,
            grid=grid,
            frame_shape=tuple(d["frame_shape"]),
            interpolation=interpolation,
        )

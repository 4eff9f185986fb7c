"""Views: sequences computed from other sequences without copying them.

Indexing (:class:`IndexedSequence`), joining channels
(:class:`JoinedSequence`), masking (:class:`MaskedSequence`), motion
correction by whole-pixel displacements (:class:`MotionCorrectedSequence`)
and gap filling (:class:`FilledSequence`). Each is made by a
:class:`~sima_fast.sequence.base.Sequence` method and saved as a
description of the view around the description of what it wraps.

Gap filling is also offered per time range (:func:`first_finite_values`,
:func:`last_finite_values`, :func:`fill_gaps_range`), so that a reader
split across the workers of a cluster fills exactly as the view does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from sima_fast.sequence.axes import (
    DIM_ORDER,
    expand_ellipsis,
    index_from_json,
    index_length,
    index_to_json,
    normalize_axis_index,
)
from sima_fast.sequence.base import (
    LoadContext,
    SaveContext,
    Sequence,
    WrapperSequence,
    float_dtype,
)
from sima_fast.sequence.metadata import combine_metadata, index_metadata

__all__ = [
    "FilledSequence",
    "IndexedSequence",
    "JoinedSequence",
    "MaskedSequence",
    "MotionCorrectedSequence",
    "fill_gaps_range",
    "first_finite_values",
    "last_finite_values",
]


class IndexedSequence(WrapperSequence, format="indexed"):
    """``seq[t, z, y, x, c]``: a selection along each axis, no axis dropped.

    Parameters
    ----------
    base : Sequence
        The indexed sequence.
    indices : index or tuple of indices
        Up to five per-axis indices (ints, slices, integer or boolean
        arrays, one ``...``).
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {"base": "description", "indices": "indices"}

    def __init__(self, base: Sequence, indices: Any) -> None:
        super().__init__(base)
        if not isinstance(indices, tuple):
            indices = (indices,)
        indices = expand_ellipsis(indices, 5)
        if len(indices) > 5:
            raise IndexError(
                f"too many indices: a sequence has 5 axes (t, z, y, x, c), got {len(indices)}"
            )
        indices = indices + (slice(None),) * (5 - len(indices))
        self._indices = tuple(
            normalize_axis_index(idx, size, axis)
            for idx, size, axis in zip(indices, base.shape, DIM_ORDER)
        )
        self._shape = tuple(
            index_length(idx, size) for idx, size in zip(self._indices, base.shape)
        )
        t_idx = self._indices[0]
        self._times = (
            np.arange(*t_idx.indices(base.shape[0]), dtype=np.int64)
            if isinstance(t_idx, slice)
            else t_idx
        )
        spatial = self._indices[1:]
        self._spatial_is_full = all(
            isinstance(i, slice) and i == slice(0, size, 1)
            for i, size in zip(spatial, base.shape[1:])
        )

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)``: the length of each axis's selection."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """The wrapped sequence's dtype."""
        return self.base.dtype

    @property
    def indices(self) -> tuple:
        """The five normalised per-axis indices (t, z, y, x, c): slices or int64 arrays."""
        return self._indices

    @property
    def displacements(self) -> np.ndarray:
        """The wrapped sequence's displacements, whole (as SIMA's indexed sequences gave them).

        Raises
        ------
        AttributeError
            If the wrapped sequence is not a motion-corrected view.
        """
        try:
            return self.base.displacements
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} has no displacements: the sequence it indexes is not "
                "motion-corrected"
            ) from None

    def _source_acquisition_metadata(self) -> Any:
        """Return the indexed sequence's metadata, adjusted for the selection."""
        return index_metadata(self.base.acquisition_metadata, self._indices, self.base.shape)

    def _select_spatial(self, block: np.ndarray) -> np.ndarray:
        if self._spatial_is_full:
            return block
        for axis, idx in enumerate(self._indices[1:], start=1):
            if isinstance(idx, slice):
                sl = [slice(None)] * 5
                sl[axis] = idx
                block = block[tuple(sl)]
            else:
                block = np.take(block, idx, axis=axis)
        return block

    def view(self, start: int, stop: int) -> np.ndarray | None:
        """Return frames ``start`` to ``stop`` without copying, when possible.

        Possible when the view selects every pixel of the frames, the frames
        are consecutive in the wrapped sequence, and that sequence can give a
        view of them.

        Parameters
        ----------
        start, stop : int
            Frame range of this view, ``0 <= start <= stop <= len(self)``.

        Returns
        -------
        numpy.ndarray or None
            The wrapped sequence's read-only view, or None.
        """
        if not self._spatial_is_full or stop <= start:
            return None
        times = self._times[start:stop]
        if times[-1] - times[0] != len(times) - 1 or np.any(np.diff(times) != 1):
            return None
        return self.base.view(int(times[0]), int(times[-1]) + 1)

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        times = self._times[start:stop]
        pos = 0
        n = len(times)
        while pos < n:
            # the longest run of consecutive increasing frames (read as one block),
            # allowing small gaps (e.g. a step of 2) to be read through.
            end = pos + 1
            while end < n and 0 < times[end] - times[end - 1] <= 4:
                end += 1
            t0, t1 = int(times[pos]), int(times[end - 1]) + 1
            block = self.base.read_chunk(t0, t1)
            block = block[times[pos:end] - t0] if t1 - t0 != end - pos else block
            np.copyto(out[pos:end], self._select_spatial(block), casting="unsafe")
            pos = end

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the view in JSON-compatible form, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; the wrapped sequence is described in it
            too.

        Returns
        -------
        dict
            ``'fmt'``, ``'base'`` (the wrapped sequence's description) and
            ``'indices'`` (one :func:`index_to_json` per axis).
        """
        return {
            "fmt": self.format,
            "base": self.base.todict(ctx),
            "indices": [index_to_json(i) for i in self._indices],
        }

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Rebuild the view from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description; its ``'base'`` is rebuilt with
            :meth:`Sequence.fromdict`.
        ctx : LoadContext
            The dataset being loaded.

        Returns
        -------
        IndexedSequence
        """
        base = Sequence.fromdict(d["base"], ctx)
        return cls(base, tuple(index_from_json(i) for i in d["indices"]))


class JoinedSequence(WrapperSequence, format="joined"):
    """Sequences side by side along the channel axis (:meth:`Sequence.join`).

    Parameters
    ----------
    sequences : list of Sequence
        Sequences of equal ``(T, Z, Y, X)``.
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {"sequences": "descriptions"}

    def __init__(self, sequences: list[Sequence]) -> None:
        if not sequences:
            raise ValueError("join needs at least one sequence")
        for i, s in enumerate(sequences):
            if not isinstance(s, Sequence):
                raise TypeError(f"sequences[{i}] is a {type(s).__name__}, not a Sequence")
        ref = sequences[0].shape[:4]
        for i, s in enumerate(sequences[1:], start=1):
            if s.shape[:4] != ref:
                raise ValueError(
                    f"sequences[{i}] has (T, Z, Y, X) = {s.shape[:4]} but sequences[0] has "
                    f"{ref}; joined sequences must match in everything but channels"
                )
        super().__init__(*sequences)
        self._dtype = np.result_type(*[s.dtype for s in sequences])

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)``: the joined sequences' ``(T, Z, Y, X)``, their channels summed."""
        return (*self.children[0].shape[:4], sum(s.shape[4] for s in self.children))

    @property
    def dtype(self) -> np.dtype:
        """The type every joined sequence's values fit in (:func:`numpy.result_type`)."""
        return self._dtype

    def _source_acquisition_metadata(self) -> Any:
        """Return the joined sequences' metadata, their channels side by side."""
        return combine_metadata(
            [s.acquisition_metadata for s in self.children], [s.shape[4] for s in self.children]
        )

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        c0 = 0
        for s in self.children:
            c1 = c0 + s.shape[4]
            np.copyto(out[..., c0:c1], s.read_chunk(start, stop), casting="unsafe")
            c0 = c1

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the join in JSON-compatible form, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; the joined sequences are described in it
            too.

        Returns
        -------
        dict
            ``'fmt'`` and ``'sequences'`` (one description per joined sequence).
        """
        return {"fmt": self.format, "sequences": [s.todict(ctx) for s in self.children]}

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Rebuild the view from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description; each entry of ``'sequences'`` is
            rebuilt with :meth:`Sequence.fromdict`.
        ctx : LoadContext
            The dataset being loaded.

        Returns
        -------
        JoinedSequence
        """
        return cls([Sequence.fromdict(s, ctx) for s in d["sequences"]])


def _positions(value: Any, size: int, what: str) -> np.ndarray | None:
    """None (everything) or a sorted int array of positions along one axis."""
    if value is None:
        return None
    arr = np.atleast_1d(np.asarray(value))
    if arr.dtype == bool:
        if arr.shape != (size,):
            raise ValueError(f"masks: boolean {what} selection must have length {size}")
        return np.flatnonzero(arr)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"masks: {what} must be None, an int or a list of ints, got {value!r}")
    if arr.size and (arr.min() < -size or arr.max() >= size):
        raise ValueError(f"masks: {what} {value!r} out of range for size {size}")
    return np.unique(arr.astype(np.int64) % size)


class MaskedSequence(WrapperSequence, format="masked"):
    """Selected pixels set to NaN, in a float view (:meth:`Sequence.mask`).

    Parameters
    ----------
    base : Sequence
        The masked sequence.
    masks : list of tuple
        As :meth:`Sequence.mask` takes them.
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {"base": "description", "masks": "masks"}

    def __init__(self, base: Sequence, masks: Any) -> None:
        super().__init__(base)
        if not isinstance(masks, (list, tuple)):
            raise TypeError(
                "masks must be a list of tuples (frames, zyx_mask, channels) or "
                "(frames, planes, yx_mask, channels)"
            )
        T, Z, Y, X, C = base.shape
        self._entries = []  # (frames | None, zyx bool | None, channels | None)
        self._raw_masks = []
        for k, m in enumerate(masks):
            if not isinstance(m, (tuple, list)) or len(m) not in (3, 4):
                raise ValueError(
                    f"masks[{k}] must be (frames, zyx_mask, channels) or (frames, planes, "
                    f"yx_mask, channels), got {m!r}"
                )
            frames = _positions(m[0], T, "frames")
            channels = _positions(m[-1], C, "channels")
            if len(m) == 3:
                spatial = None if m[1] is None else np.asarray(m[1], dtype=bool)
                if spatial is not None and spatial.shape != (Z, Y, X):
                    raise ValueError(
                        f"masks[{k}]: the zyx mask must have shape {(Z, Y, X)}, "
                        f"got {spatial.shape}"
                    )
            else:
                planes = _positions(m[1], Z, "planes")
                yx = None if m[2] is None else np.asarray(m[2], dtype=bool)
                if yx is not None and yx.shape != (Y, X):
                    raise ValueError(
                        f"masks[{k}]: the yx mask must have shape {(Y, X)}, got {yx.shape}"
                    )
                if planes is None and yx is None:
                    spatial = None
                else:
                    spatial = np.zeros((Z, Y, X), dtype=bool)
                    spatial[planes if planes is not None else slice(None)] = (
                        True if yx is None else yx
                    )
            self._entries.append(
                (frames, None if spatial is None else np.nonzero(spatial), channels)
            )
            self._raw_masks.append((frames, spatial, channels))
        self._dtype = float_dtype(base.dtype)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)`` of the wrapped sequence."""
        return self.base.shape

    @property
    def dtype(self) -> np.dtype:
        """The smallest float dtype holding the wrapped values (see :func:`float_dtype`)."""
        return self._dtype

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        np.copyto(out, self.base.read_chunk(start, stop), casting="unsafe")
        C = out.shape[4]
        for frames, spatial, channels in self._entries:
            if frames is None:
                local = np.arange(stop - start)
            else:
                lo, hi = np.searchsorted(frames, [start, stop])
                local = frames[lo:hi] - start
                if local.size == 0:
                    continue
            for c in range(C) if channels is None else channels:
                plane = out[..., c]
                if spatial is None:
                    plane[local] = np.nan
                else:
                    z, y, x = spatial
                    plane[local[:, None], z[None], y[None], x[None]] = np.nan

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the view in JSON-compatible form, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; the wrapped sequence is described in it
            too, and each spatial mask is added to its array store.

        Returns
        -------
        dict
            ``'fmt'``, ``'base'`` and ``'masks'``: per mask, ``'frames'`` and
            ``'channels'`` (lists of int, or None for all) and ``'zyx_mask'``
            (None, or ``{'array': key}`` of a boolean ``(Z, Y, X)`` array).
        """
        entries = []
        for frames, spatial, channels in self._raw_masks:
            entries.append(
                {
                    "frames": None if frames is None else [int(f) for f in frames],
                    "zyx_mask": None if spatial is None else {"array": ctx.add_array(spatial)},
                    "channels": None if channels is None else [int(c) for c in channels],
                }
            )
        return {"fmt": self.format, "base": self.base.todict(ctx), "masks": entries}

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Rebuild the view from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description.
        ctx : LoadContext
            The dataset being loaded; its array store holds the spatial masks.

        Returns
        -------
        MaskedSequence
        """
        base = Sequence.fromdict(d["base"], ctx)
        masks = []
        for e in d["masks"]:
            zyx = None if e["zyx_mask"] is None else ctx.get_array(e["zyx_mask"]["array"])
            masks.append((e["frames"], zyx, e["channels"]))
        return cls(base, masks)


class MotionCorrectedSequence(WrapperSequence, format="motion_corrected"):
    """Frames moved by whole-pixel displacements (:meth:`Sequence.apply_displacements`).

    Where several source rows land on the same pixel the view holds their
    mean; if any of them is missing there (NaN or infinite), the pixel is
    NaN, as in SIMA's motion-corrected sequences: a missing value is never
    averaged away, and gap filling (:meth:`Sequence.fill_gaps`) then fills
    the pixel from the nearest frame that observed it.

    Parameters
    ----------
    base : Sequence
        The uncorrected sequence.
    displacements : array_like of int
        As :meth:`Sequence.apply_displacements` takes them.
    frame_shape : tuple of int, optional
        ``(Z, Y, X)`` of the corrected frames.
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {
        "base": "description",
        "displacements": "array",
        "frame_shape": "ints",
    }

    def __init__(
        self, base: Sequence, displacements: Any, frame_shape: tuple[int, ...] | None = None
    ) -> None:
        super().__init__(base)
        T, Z, Y, X, _ = base.shape
        disp = np.asarray(displacements)
        if (
            disp.dtype.kind not in "iuf"
            or disp.ndim not in (2, 3, 4)
            or disp.shape[-1]
            not in (
                2,
                3,
            )
        ):
            raise ValueError(
                "displacements must be a numeric array of shape (T, 2|3), (T, Z, 2|3) or "
                f"(T, Z, Y, 2|3); got {disp.dtype} {disp.shape}"
            )
        expected = {2: (T,), 3: (T, Z), 4: (T, Z, Y)}[disp.ndim]
        if disp.shape[:-1] != expected:
            raise ValueError(
                f"displacements of shape {disp.shape} do not match the sequence: expected "
                f"{(*expected, disp.shape[-1])} for (T, Z, Y) = {(T, Z, Y)}"
            )
        if disp.dtype.kind == "f":
            if not np.all(np.isfinite(disp)) or np.any(disp != np.round(disp)):
                raise ValueError("displacements must be whole numbers of pixels")
        if disp.size and disp.min() < 0:
            raise ValueError(
                f"displacements must be >= 0 (shift them so the smallest is 0); got minimum "
                f"{disp.min()}"
            )
        self._displacements = disp.astype(np.int64)
        # Canonical per-row (T, Z, Y, 3) table of (dz, dy, dx).
        full = np.zeros((T, Z, Y, 3), dtype=np.int64)
        d = self._displacements
        if d.shape[-1] == 2:
            d = np.concatenate([np.zeros((*d.shape[:-1], 1), np.int64), d], axis=-1)
        full[...] = {2: lambda a: a[:, None, None], 3: lambda a: a[:, :, None], 4: lambda a: a}[
            d.ndim
        ](d)
        self._rows = full
        if frame_shape is None:
            mx = full.reshape(-1, 3).max(axis=0) if full.size else np.zeros(3, np.int64)
            frame_shape = (Z + int(mx[0]), Y + int(mx[1]), X + int(mx[2]))
        else:
            try:
                frame_shape = tuple(int(s) for s in frame_shape)
            except TypeError:
                raise ValueError(f"frame_shape must be (Z, Y, X), got {frame_shape!r}") from None
            if len(frame_shape) == 4:
                frame_shape = frame_shape[:3]
            if len(frame_shape) != 3 or min(frame_shape) < 1:
                raise ValueError(
                    f"frame_shape must be three positive ints (Z, Y, X), got {frame_shape!r}"
                )
        self._frame_shape = frame_shape
        self._dtype = float_dtype(base.dtype)

    @property
    def displacements(self) -> np.ndarray:
        """The whole-pixel displacements as given, ``int64`` (read-only)."""
        view = self._displacements.view()
        view.flags.writeable = False
        return view

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)``: the wrapped ``T`` and ``C``, the corrected frame shape."""
        return (self.base.shape[0], *self._frame_shape, self.base.shape[4])

    @property
    def dtype(self) -> np.dtype:
        """The smallest float dtype holding the wrapped values (see :func:`float_dtype`)."""
        return self._dtype

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        from sima_fast.kernels.gaps import place_displaced_rows

        src = self.base.read_chunk(start, stop)
        place_displaced_rows(src, self._rows[start:stop], out)

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the view in JSON-compatible form, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; the wrapped sequence is described in it
            too, and the displacements are added to its array store.

        Returns
        -------
        dict
            ``'fmt'``, ``'base'``, ``'displacements'`` (``{'array': key}``) and
            ``'frame_shape'`` (``[Z, Y, X]``).
        """
        return {
            "fmt": self.format,
            "base": self.base.todict(ctx),
            "displacements": {"array": ctx.add_array(self._displacements)},
            "frame_shape": list(self._frame_shape),
        }

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Rebuild the view from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description.
        ctx : LoadContext
            The dataset being loaded; its array store holds the displacements.

        Returns
        -------
        MotionCorrectedSequence
        """
        base = Sequence.fromdict(d["base"], ctx)
        disp = ctx.get_array(d["displacements"]["array"])
        return cls(base, disp, tuple(d["frame_shape"]))


# ---------------------------------------------------------------------------
# gap filling
# ---------------------------------------------------------------------------


def first_finite_values(
    seq: Sequence, start: int = 0, stop: int | None = None, chunk_frames: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's first finite value in frames ``start`` to ``stop`` of ``seq``.

    Reads forward and stops as soon as every pixel has been seen, which
    usually is after the first chunk.

    Parameters
    ----------
    seq : Sequence
        A float sequence.
    start, stop : int, optional
        The frame range (default: every frame).
    chunk_frames : int, optional
        Frames per read (default: :meth:`Sequence.default_chunk_frames`).

    Returns
    -------
    found : numpy.ndarray of bool
        ``(Z * Y * X * C,)``: whether the pixel has a finite value.
    values : numpy.ndarray
        ``(Z * Y * X * C,)`` of ``seq.dtype``: the first finite value, NaN
        where none.

    Examples
    --------
    >>> import numpy as np
    >>> from sima_fast import Sequence
    >>> data = np.array([[np.nan, 2.0], [1.0, 3.0]]).reshape(2, 1, 1, 2, 1)
    >>> first_finite_values(Sequence.create('ndarray', data))
    (array([ True,  True]), array([1., 2.]))
    """
    from sima_fast.kernels.gaps import first_finite

    npix = int(np.prod(seq.shape[1:]))
    found = np.zeros(npix, dtype=bool)
    values = np.full(npix, np.nan, dtype=seq.dtype)
    for _, chunk in seq.iter_chunks(chunk_frames, start=start, stop=stop, reuse_buffer=True):
        if first_finite(chunk.reshape(len(chunk), -1), found, values) == 0:
            break
    return found, values


def last_finite_values(
    seq: Sequence, start: int, stop: int, chunk_frames: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's last finite value in frames ``start`` to ``stop`` of ``seq``.

    Reads backward from ``stop`` and stops as soon as every pixel has been
    seen.

    Parameters
    ----------
    seq : Sequence
        A float sequence.
    start, stop : int
        The frame range.
    chunk_frames : int, optional
        Frames per read (default: :meth:`Sequence.default_chunk_frames`).

    Returns
    -------
    found : numpy.ndarray of bool
        ``(Z * Y * X * C,)``: whether the pixel has a finite value.
    values : numpy.ndarray
        ``(Z * Y * X * C,)`` of ``seq.dtype``: the last finite value, NaN
        where none.

    Examples
    --------
    >>> import numpy as np
    >>> from sima_fast import Sequence
    >>> data = np.array([[1.0, 2.0], [3.0, np.nan]]).reshape(2, 1, 1, 2, 1)
    >>> last_finite_values(Sequence.create('ndarray', data), 0, 2)
    (array([ True,  True]), array([3., 2.]))
    """
    from sima_fast.kernels.gaps import last_finite_before

    npix = int(np.prod(seq.shape[1:]))
    found = np.zeros(npix, dtype=bool)
    values = np.full(npix, np.nan, dtype=seq.dtype)
    step = seq.default_chunk_frames() if chunk_frames is None else int(chunk_frames)
    for b in range(stop, start, -step):
        chunk = seq.read_chunk(max(start, b - step), b)
        if last_finite_before(chunk.reshape(len(chunk), -1), found, values) == 0:
            break
    return found, values


def fill_gaps_range(
    seq: Sequence, start: int, stop: int, carried: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Frames ``start`` to ``stop`` of ``seq`` with every gap filled forward.

    A non-finite value becomes the pixel's last finite value, starting from
    ``carried`` (the values carried into frame ``start``; see
    :meth:`FilledSequence.carried_values`). This is the whole per-range work
    of gap filling: consecutive ranges filled with the same ``carried``
    array give the gap-filled sequence.

    Parameters
    ----------
    seq : Sequence
        A float sequence.
    start, stop : int
        The frame range.
    carried : numpy.ndarray
        ``(Z * Y * X * C,)`` of ``seq.dtype``; updated in place to the values
        carried out of frame ``stop - 1``.
    out : numpy.ndarray, optional
        A C-contiguous ``(stop - start, Z, Y, X, C)`` buffer of ``seq.dtype``.

    Returns
    -------
    numpy.ndarray
        ``out``, or a new array.

    Examples
    --------
    >>> import numpy as np
    >>> from sima_fast import Sequence
    >>> seq = Sequence.create('ndarray', np.array([np.nan, 4.0, np.nan]).reshape(3, 1, 1, 1, 1))
    >>> carried = np.array([1.0])
    >>> fill_gaps_range(seq, 0, 3, carried).ravel(), carried
    (array([1., 4., 4.]), array([4.]))
    """
    from sima_fast.kernels.gaps import fill_forward

    src = seq.read_chunk(start, stop)
    if out is None:
        out = np.empty(src.shape, dtype=seq.dtype)
    fill_forward(src.reshape(len(src), -1), carried, out.reshape(len(out), -1))
    return out


class FilledSequence(WrapperSequence, format="filled"):
    """Gaps (NaN, infinite values) filled from the nearest observation.

    Made by :meth:`Sequence.fill_gaps`.

    Reads keep the values carried out of the last read, so consecutive reads
    cost one pass; a read elsewhere finds what it needs by scanning
    backward (see :meth:`carried_values`).

    Parameters
    ----------
    base : Sequence
        A float sequence.
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {"base": "description"}

    def __init__(self, base: Sequence) -> None:
        super().__init__(base)
        self._first: np.ndarray | None = None
        self._resume: tuple[int, np.ndarray] | None = None  # (next frame, carried values)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)`` of the wrapped sequence."""
        return self.base.shape

    @property
    def dtype(self) -> np.dtype:
        """The wrapped sequence's (float) dtype."""
        return self.base.dtype

    def first_values(self) -> np.ndarray:
        """Each pixel's first finite value over the whole sequence (NaN if none).

        Returns
        -------
        numpy.ndarray
            ``(Z * Y * X * C,)`` of :attr:`dtype`; computed once, then kept.
        """
        if self._first is None:
            self._first = first_finite_values(self.base)[1]
        return self._first

    def carried_values(self, start: int) -> np.ndarray:
        """Return the values carried into frame ``start``: the last finite ones before it.

        Pixels not observed before ``start`` carry their first value.

        Parameters
        ----------
        start : int
            A frame index.

        Returns
        -------
        numpy.ndarray
            ``(Z * Y * X * C,)`` of :attr:`dtype`, a new array.
        """
        if self._resume is not None and self._resume[0] == start:
            return self._resume[1].copy()
        first = self.first_values()
        if start == 0:
            return first.copy()
        found, last = last_finite_values(self.base, 0, start, self.base.default_chunk_frames())
        return np.where(found, last, first)

    def resume_at(self, start: int, carried: np.ndarray) -> None:
        """Take ``carried`` as the values carried into frame ``start``.

        For a reader that knows them already (e.g. one range of a gap fill
        split across the workers of a cluster): the next read starting at
        ``start`` then needs no backward scan.

        Parameters
        ----------
        start : int
            A frame index.
        carried : numpy.ndarray
            ``(Z * Y * X * C,)`` of :attr:`dtype` (copied).
        """
        self._resume = (int(start), np.array(carried, dtype=self.dtype))

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        last = self.carried_values(start)
        fill_gaps_range(self.base, start, stop, last, out)
        self._resume = (stop, last)

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the view in JSON-compatible form, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; the wrapped sequence is described in it
            too.

        Returns
        -------
        dict
            ``'fmt'`` and ``'base'``.
        """
        return {"fmt": self.format, "base": self.base.todict(ctx)}

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Rebuild the view from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description; its ``'base'`` is rebuilt with
            :meth:`Sequence.fromdict`.
        ctx : LoadContext
            The dataset being loaded.

        Returns
        -------
        FilledSequence
        """
        return cls(Sequence.fromdict(d["base"], ctx))

    def __getstate__(self) -> dict[str, Any]:
        """Return the state to pickle, without the position of the last read.

        A copy in another process starts with a backward scan rather than
        trusting values carried for this one.

        Returns
        -------
        dict
        """
        state = super().__getstate__()
        state["_resume"] = None
        return state

"""TIFF sequences: one multi-page file (``'TIFF'``) or one file per frame (``'TIFFs'``)."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence as SequenceABC
from typing import Any

import numpy as np

from sima_fast.sequence.base import (
    LoadContext,
    SaveContext,
    Sequence,
    check_numeric,
    path_record,
    require_file,
    resolve_path,
)

__all__ = ["PageSource", "TIFFSequence", "TIFFsSequence"]


class PageSource:
    """The pages of one TIFF file: memory-mapped when stored raw, decoded otherwise.

    Opening scans the page table once: when every page is stored
    uncompressed in one contiguous strip, the pages are read straight from
    their offsets (through one memory map when the offsets are evenly
    spaced); otherwise each page is decoded by ``tifffile``.

    Parameters
    ----------
    path : str
        The TIFF file; its pages must be single-sample 2-D images of one
        shape.

    Attributes
    ----------
    path : str
    num_pages : int
    page_shape : tuple of int
        ``(Y, X)``.
    dtype : numpy.dtype
        The pages' dtype in native byte order.
    raw_dtype : numpy.dtype
        The dtype as stored (possibly big-endian).

    Raises
    ------
    OSError
        Not a TIFF file.
    ValueError
        No pages, multi-sample pages, or pages of different shapes.
    """

    def __init__(self, path: str) -> None:
        import tifffile

        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:
            raise OSError(f"cannot read {path!r} as a TIFF file ({exc})") from exc
        with tif:
            pages = tif.pages
            pages.useframes = True
            n = len(pages)
            if n == 0:
                raise ValueError(f"TIFF file {path!r} has no pages")
            first = pages[0]
            if first.samplesperpixel != 1 or len(first.shape) != 2:
                raise ValueError(
                    f"TIFF file {path!r}: pages must be single-sample 2-D images, got page "
                    f"shape {first.shape}"
                )
            self.page_shape = tuple(int(s) for s in first.shape)
            raw_dtype = np.dtype(first.dtype).newbyteorder(tif.byteorder)
            self.dtype = check_numeric(raw_dtype, f"TIFF file {path!r}")
            offsets = np.empty(n, dtype=np.int64)
            raw = True
            page_bytes = int(np.prod(self.page_shape)) * raw_dtype.itemsize
            for i in range(n):
                page = pages[i]
                if tuple(page.shape) != self.page_shape:
                    raise ValueError(
                        f"TIFF file {path!r}: page {i} has shape {page.shape}, page 0 has "
                        f"{self.page_shape}; all pages must match"
                    )
                if raw:
                    offs, counts = page.dataoffsets, page.databytecounts
                    key = getattr(page, "keyframe", None) or page
                    contiguous = (
                        key.compression == 1
                        and getattr(key, "predictor", 1) in (None, 1)
                        and getattr(key, "fillorder", 1) == 1
                        and len(offs) > 0
                        and sum(counts) == page_bytes
                        and all(offs[k + 1] == offs[k] + counts[k] for k in range(len(offs) - 1))
                    )
                    if contiguous:
                        offsets[i] = offs[0]
                    else:
                        raw = False
        self.path = path
        self.num_pages = n
        self.raw_dtype = raw_dtype
        self.offsets = offsets if raw else None
        self._array = None
        if raw:
            stride = np.diff(offsets)
            if n == 1 or (stride.min() == stride.max() and stride[0] >= page_bytes):
                step = int(stride[0]) if n > 1 else page_bytes
                mm = np.memmap(path, dtype=np.uint8, mode="r")
                self._array = np.ndarray(
                    (n, *self.page_shape),
                    dtype=raw_dtype,
                    buffer=mm,
                    offset=int(offsets[0]),
                    strides=(
                        step,
                        self.page_shape[1] * raw_dtype.itemsize,
                        raw_dtype.itemsize,
                    ),
                )

    @property
    def mapped(self) -> bool:
        """Whether the pages are read through one memory map (views, no copies)."""
        return self._array is not None

    def pages(self, start: int, stop: int) -> np.ndarray:
        """Pages ``start`` to ``stop`` (exclusive) of the file.

        Parameters
        ----------
        start, stop : int
            Page range.

        Returns
        -------
        numpy.ndarray
            ``(stop - start, Y, X)`` in :attr:`raw_dtype`; a view of the file
            when :attr:`mapped`.
        """
        if self._array is not None:
            return self._array[start:stop]
        out = np.empty((stop - start, *self.page_shape), dtype=self.raw_dtype)
        if self.offsets is not None:
            with open(self.path, "rb") as fh:
                for k, i in enumerate(range(start, stop)):
                    fh.seek(int(self.offsets[i]))
                    fh.readinto(memoryview(out[k]).cast("B"))
            return out
        import tifffile

        with tifffile.TiffFile(self.path) as tif:
            for k, i in enumerate(range(start, stop)):
                out[k] = tif.pages[i].asarray()
        return out


class TIFFSequence(Sequence, format="TIFF"):
    """A multi-page TIFF with interleaved planes and channels (see :meth:`Sequence.create`).

    Parameters
    ----------
    path : str or os.PathLike
        The TIFF file.
    num_planes, num_channels : int, optional
        Pages per frame are ``num_planes * num_channels``, channels varying
        fastest (default 1 each).
    len_ : int, optional
        Keep only the first ``len_`` frames.
    """

    def __init__(
        self, path: Any, num_planes: int = 1, num_channels: int = 1, len_: int | None = None
    ) -> None:
        self._path = os.path.abspath(require_file(path))
        for name, value in (("num_planes", num_planes), ("num_channels", num_channels)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self._num_planes, self._num_channels = int(num_planes), int(num_channels)
        self._source = PageSource(self._path)
        per_frame = self._num_planes * self._num_channels
        available = self._source.num_pages // per_frame
        if len_ is not None:
            if not isinstance(len_, (int, np.integer)) or len_ < 0 or len_ > available:
                raise ValueError(
                    f"len_ must be an integer between 0 and {available} (the complete frames in "
                    f"{self._path!r}), got {len_!r}"
                )
            available = int(len_)
        self._len = available
        self._dtype = self._source.dtype

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)``: complete frames, planes, page shape, channels."""
        y, x = self._source.page_shape
        return (self._len, self._num_planes, y, x, self._num_channels)

    @property
    def dtype(self) -> np.dtype:
        """The pages' dtype, in native byte order."""
        return self._dtype

    @property
    def path(self) -> str:
        """The TIFF file (absolute path)."""
        return self._path

    def data_files(self) -> list[str]:
        """List the data file this sequence reads.

        Returns
        -------
        list of str
            The TIFF file (absolute path).
        """
        return [self._path]

    def describe(self) -> str:
        """Describe the sequence in one line: its kind and its file's name.

        Returns
        -------
        str
            E.g. ``'TIFF movie.tif'``.
        """
        return f"{super().describe()} {os.path.basename(self._path)}"

    def _pages_block(self, start: int, stop: int) -> np.ndarray:
        p, c = self._num_planes, self._num_channels
        pages = self._source.pages(start * p * c, stop * p * c)
        y, x = self._source.page_shape
        return pages.reshape(stop - start, p, c, y, x).transpose(0, 1, 3, 4, 2)

    def view(self, start: int, stop: int) -> np.ndarray | None:
        """Return frames ``start`` to ``stop`` without copying, when possible.

        Possible when the file holds one channel and its pages are memory-mapped
        and stored in native byte order.

        Parameters
        ----------
        start, stop : int
            Frame range, ``0 <= start <= stop <= len(self)``.

        Returns
        -------
        numpy.ndarray or None
            A read-only, C-contiguous ``(stop - start, Z, Y, X, C)`` view of
            :attr:`dtype`, or None when the frames must be copied into a buffer.
        """
        if (
            self._num_channels == 1
            and self._source.mapped
            and self._source.raw_dtype == self._dtype
        ):
            block = self._pages_block(start, stop)
            if block.flags.c_contiguous:
                return block
        return None

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        np.copyto(out, self._pages_block(start, stop), casting="unsafe")

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the sequence in JSON-compatible form, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; the file's path is recorded both absolute
            and relative to ``ctx.savedir``.

        Returns
        -------
        dict
            ``'fmt'``, ``'path'`` (a :func:`path_record`) and
            ``num_planes``, ``num_channels`` and ``len_``.
        """
        return {
            "fmt": self.format,
            "path": path_record(self._path, ctx.savedir),
            "num_planes": self._num_planes,
            "num_channels": self._num_channels,
            "len_": self._len,
        }

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Reopen the sequence from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description.
        ctx : LoadContext
            The dataset being loaded; the TIFF file is looked for relative to
            ``ctx.savedir`` first, then at its absolute path.

        Returns
        -------
        TIFFSequence

        Raises
        ------
        FileNotFoundError
            The TIFF file is at neither path.
        """
        path = resolve_path(d["path"], ctx.savedir, "TIFF file")
        return cls(path, d.get("num_planes", 1), d.get("num_channels", 1), d.get("len_"))

    def __getstate__(self) -> dict[str, Any]:
        """Return the state to pickle, without the open page source.

        Returns
        -------
        dict
        """
        state = super().__getstate__()
        state.pop("_source", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled sequence, scanning the file's pages again.

        Parameters
        ----------
        state : dict
            What :meth:`__getstate__` returned.
        """
        self.__dict__.update(state)
        self._source = PageSource(self._path)


class TIFFsSequence(Sequence, format="TIFFs"):
    """Single-image TIFF files, one per frame, plane and channel (see :meth:`Sequence.create`).

    Parameters
    ----------
    paths : list of list of str
        ``paths[p][c]`` is a glob pattern matching the files of plane p,
        channel c, one per frame in name order.
    """

    def __init__(self, paths: Any) -> None:
        if (
            not isinstance(paths, SequenceABC)
            or isinstance(paths, str)
            or not paths
            or not all(
                isinstance(pl, SequenceABC) and not isinstance(pl, str) and pl for pl in paths
            )
        ):
            raise ValueError(
                "paths must be a non-empty list (one entry per plane) of non-empty lists (one "
                "glob pattern per channel), e.g. [['ch0_*.tif', 'ch1_*.tif']]"
            )
        nchan = {len(pl) for pl in paths}
        if len(nchan) != 1:
            raise ValueError(f"paths: every plane needs the same number of channels, got {nchan}")
        self._patterns = [[os.fspath(p) for p in plane] for plane in paths]
        files = []
        for plane in self._patterns:
            row = []
            for pattern in plane:
                matches = sorted(glob.glob(pattern))
                if not matches:
                    raise FileNotFoundError(f"paths: the pattern {pattern!r} matches no file")
                row.append([os.path.abspath(m) for m in matches])
            files.append(row)
        counts = {len(f) for row in files for f in row}
        if len(counts) != 1:
            raise ValueError(
                "paths: every pattern must match the same number of files (one per frame); "
                f"got counts {sorted(counts)}"
            )
        self._files = files
        import tifffile

        with tifffile.TiffFile(files[0][0][0]) as tif:
            page = tif.pages[0]
            if len(page.shape) != 2:
                raise ValueError(f"{files[0][0][0]!r}: expected 2-D single-sample images")
            self._yx = tuple(int(s) for s in page.shape)
            self._dtype = check_numeric(page.dtype, f"TIFF file {files[0][0][0]!r}")
        self._len = counts.pop()

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)``: files per pattern, planes, image shape, channels."""
        return (self._len, len(self._files), *self._yx, len(self._files[0]))

    @property
    def dtype(self) -> np.dtype:
        """The first image's dtype, in native byte order."""
        return self._dtype

    def data_files(self) -> list[str]:
        """List every TIFF file this sequence reads.

        Returns
        -------
        list of str
            Absolute paths of the files the patterns matched, sorted.
        """
        return sorted({f for row in self._files for files in row for f in files})

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        import tifffile

        for p, row in enumerate(self._files):
            for c, files in enumerate(row):
                for k, t in enumerate(range(start, stop)):
                    img = tifffile.imread(files[t], key=0)
                    if img.shape != self._yx:
                        raise ValueError(
                            f"{files[t]!r} has shape {img.shape}; expected {self._yx} like the "
                            "first file"
                        )
                    out[k, p, :, :, c] = img

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the sequence in JSON-compatible form, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; each glob pattern is recorded both absolute
            and relative to ``ctx.savedir``.

        Returns
        -------
        dict
            ``'fmt'`` and ``'patterns'`` (a :func:`path_record` per plane and
            channel).
        """
        return {
            "fmt": self.format,
            "patterns": [[path_record(p, ctx.savedir) for p in plane] for plane in self._patterns],
        }

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Rebuild the sequence from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description.
        ctx : LoadContext
            The dataset being loaded; each pattern is tried relative to
            ``ctx.savedir`` first, then at its absolute path, and the first that
            matches a file is used.

        Returns
        -------
        TIFFsSequence

        Raises
        ------
        FileNotFoundError
            A pattern matches no file at either path.
        """
        patterns = []
        for plane in d["patterns"]:
            row = []
            for rec in plane:
                rel = rec.get("relpath")
                cand = (
                    os.path.normpath(os.path.join(ctx.savedir, rel))
                    if rel is not None and ctx.savedir is not None
                    else None
                )
                if cand is not None and glob.glob(cand):
                    row.append(cand)
                elif glob.glob(rec["abspath"]):
                    row.append(rec["abspath"])
                else:
                    tried = [p for p in (cand, rec["abspath"]) if p]
                    raise FileNotFoundError(
                        "cannot find the TIFF files of pattern "
                        f"{os.path.basename(rec['abspath'])!r};"
                        " tried: " + ", ".join(map(repr, tried))
                    )
            patterns.append(row)
        return cls(patterns)

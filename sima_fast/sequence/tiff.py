"""TIFF sequences: one multi-page file (``'TIFF'``) or one file per frame (``'TIFFs'``)."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence as SequenceABC
from typing import Any, ClassVar

import numpy as np

from sima_fast.sequence.base import (
    CorruptFileError,
    LoadContext,
    SaveContext,
    Sequence,
    check_numeric,
    path_record,
    require_file,
    resolve_path,
)
from sima_fast.sequence.metadata import read_tiff_metadata

__all__ = ["PageSource", "TIFFSequence", "TIFFsSequence", "read_first_page"]


_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _open_tiff(path: str) -> Any:
    """Open ``path`` with tifffile, telling a damaged TIFF from a file that is no TIFF."""
    import tifffile

    try:
        return tifffile.TiffFile(path)
    except FileNotFoundError:
        raise
    except Exception as exc:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head in _TIFF_SIGNATURES:
            raise CorruptFileError(
                f"TIFF file {path!r} is truncated or corrupt: its header or page table cannot "
                f"be read ({type(exc).__name__}: {exc})",
                path,
            ) from exc
        raise OSError(f"cannot read {path!r} as a TIFF file ({exc})") from exc


def _check_page_data(path: str, index: int, offsets: Any, counts: Any, size: int) -> None:
    """Check that a page has image data and that all of it lies inside the file."""
    if len(offsets) == 1 and len(counts) == 1:  # the common case, without numpy overhead
        offset, count = int(offsets[0]), int(counts[0])
        if offset >= 0 and count >= 0 and offset + count <= size:
            return
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if offsets.size == 0 or offsets.shape != counts.shape:
        raise CorruptFileError(
            f"TIFF file {path!r}: page {index} has no valid image data offsets (the file is "
            "corrupt)",
            path,
        )
    ends = offsets + counts
    if (counts < 0).any() or (offsets < 0).any() or int(ends.max()) > size:
        raise CorruptFileError(
            f"TIFF file {path!r}: the image data of page {index} ends at byte {int(ends.max())}, "
            f"past the end of the file ({size} bytes); the file is truncated or corrupt",
            path,
        )


def _next_page_pointer(tif: Any, ifd_offset: int) -> int | None:
    """Read the pointer to the next page stored at the end of a page's tag list.

    Returns
    -------
    int or None
        0 when the page is the last one, None when the pointer cannot be read.
    """
    import struct

    fmt = tif.tiff
    fh = tif.filehandle
    try:
        fh.seek(ifd_offset)
        raw = fh.read(fmt.tagnosize)
        if len(raw) != fmt.tagnosize:
            return None
        ntags = struct.unpack(fmt.tagnoformat, raw)[0]
        fh.seek(ifd_offset + fmt.tagnosize + ntags * fmt.tagsize)
        raw = fh.read(fmt.offsetsize)
        if len(raw) != fmt.offsetsize:
            return None
        return int(struct.unpack(fmt.offsetformat, raw)[0])
    except (OSError, struct.error):
        return None


def _announced_pages(tif: Any, page_shape: tuple[int, int]) -> tuple[int, str] | None:
    """Read how many pages the first page's metadata announces.

    Only the first page is read (the shape descriptions of later series, if
    any, would only add pages), so this costs nothing on long files.

    Returns
    -------
    (int, str) or None
        The count and where it comes from (ImageJ's ``images`` or tifffile's
        shape description), or None when the file announces nothing usable.
    """
    try:
        first = tif.pages.first
        if first.imagej_description is not None:
            images = (tif.imagej_metadata or {}).get("images")
            if isinstance(images, int) and not isinstance(images, bool) and images > 0:
                return images, "its ImageJ metadata ('images')"
            return None
        described = first.shaped_description
        if described is None:
            return None
        from tifffile.tifffile import shaped_description_metadata

        shape = shaped_description_metadata(described).get("shape")
        if not shape or not all(isinstance(v, int) and v >= 0 for v in shape):
            return None
        total = int(np.prod(shape, dtype=np.int64))
        per_page = page_shape[0] * page_shape[1]
        if total > 0 and total % per_page == 0:
            return total // per_page, "its shape description"
    except Exception:  # unreadable metadata promises nothing; the page checks still apply
        return None
    return None


class PageSource:
    """The pages of one TIFF file: memory-mapped when stored raw, decoded otherwise.

    Opening scans the page table once: when every page is stored
    uncompressed in one contiguous strip, the pages are read straight from
    their offsets (through one memory map when the offsets are evenly
    spaced); otherwise each page is decoded by ``tifffile``.

    Opening also checks that the file is whole, so that a damaged file is
    refused rather than read as a shorter movie: every page's strips or
    tiles lie inside the file, the chain of pages ends properly (a chain
    cut by truncation points past the end of the file), and the file holds
    as many pages as its ImageJ metadata (``images``) or tifffile shape
    description announces. A file with a single page table entry whose
    metadata announces more images stored contiguously (ImageJ files over
    4 GiB, tifffile's ``truncate=True``) is read as all of those images
    when the file holds their bytes.

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
        The dtype pages are read in (see :func:`check_numeric`).
    raw_dtype : numpy.dtype
        The dtype as stored (possibly big-endian).

    Raises
    ------
    OSError
        Not a TIFF file.
    CorruptFileError
        A truncated or corrupt TIFF file (an :class:`OSError`): unreadable
        page table, page data past the end of the file, a broken page chain,
        or fewer pages than the metadata announces.
    ValueError
        No pages, multi-sample pages, or pages of different shapes.
    """

    def __init__(self, path: str) -> None:
        size = os.path.getsize(path)
        tif = _open_tiff(path)
        with tif:
            pages = tif.pages
            pages.useframes = True
            try:
                n = len(pages)
                first = pages[0] if n else None
                shape0 = None if first is None else tuple(first.shape)
                spp = None if first is None else first.samplesperpixel
            except Exception as exc:
                raise CorruptFileError(
                    f"TIFF file {path!r} is corrupt: its first page cannot be read "
                    f"({type(exc).__name__}: {exc})",
                    path,
                ) from exc
            if n == 0:
                raise ValueError(f"TIFF file {path!r} has no pages")
            if spp != 1 or len(shape0) != 2:
                raise ValueError(
                    f"TIFF file {path!r}: pages must be single-sample 2-D images, got page "
                    f"shape {shape0}"
                )
            self.page_shape = tuple(int(s) for s in shape0)
            raw_dtype = np.dtype(first.dtype).newbyteorder(tif.byteorder)
            self.dtype = check_numeric(raw_dtype, f"TIFF file {path!r}")
            offsets = np.empty(n, dtype=np.int64)
            raw = True
            page_bytes = int(np.prod(self.page_shape)) * raw_dtype.itemsize
            last_ifd = 0
            for i in range(n):
                try:
                    page = pages[i]
                    page_shape = tuple(page.shape)
                    offs, counts = page.dataoffsets, page.databytecounts
                    last_ifd = int(page.offset)
                    key = getattr(page, "keyframe", None) or page
                    compression = key.compression
                    plain = getattr(key, "predictor", 1) in (None, 1) and (
                        getattr(key, "fillorder", 1) == 1
                    )
                except Exception as exc:
                    raise CorruptFileError(
                        f"TIFF file {path!r} is truncated or corrupt: page {i} cannot be read "
                        f"({type(exc).__name__}: {exc})",
                        path,
                    ) from exc
                if page_shape != self.page_shape:
                    raise ValueError(
                        f"TIFF file {path!r}: page {i} has shape {page_shape}, page 0 has "
                        f"{self.page_shape}; all pages must match"
                    )
                _check_page_data(path, i, offs, counts, size)
                if raw:
                    contiguous = (
                        compression == 1
                        and plain
                        and sum(counts) == page_bytes
                        and all(offs[k + 1] == offs[k] + counts[k] for k in range(len(offs) - 1))
                    )
                    if contiguous:
                        offsets[i] = offs[0]
                    else:
                        raw = False
            pointer = _next_page_pointer(tif, last_ifd)
            if pointer != 0:
                where = "cannot be read" if pointer is None else f"points to byte {pointer}"
                state = (
                    "truncated"
                    if pointer is None or pointer >= size
                    else "corrupt (the next page cannot be read)"
                )
                raise CorruptFileError(
                    f"TIFF file {path!r} is {state}: the chain of pages stops after {n} "
                    f"page(s) at a pointer that {where} (the file has {size} bytes)",
                    path,
                )
            announced = _announced_pages(tif, self.page_shape)
        if announced is not None and announced[0] > n:
            count, source = announced
            if n == 1 and raw:
                need = int(offsets[0]) + count * page_bytes
                if need > size:
                    raise CorruptFileError(
                        f"TIFF file {path!r} is truncated: {source} announces {count} images "
                        f"stored one after the other from byte {int(offsets[0])}, which needs "
                        f"{need} bytes, but the file has {size}",
                        path,
                    )
                offsets = int(offsets[0]) + np.arange(count, dtype=np.int64) * page_bytes
                n = count
            else:
                raise CorruptFileError(
                    f"TIFF file {path!r} is truncated or corrupt: it holds {n} page(s) but "
                    f"{source} announces {count}",
                    path,
                )
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

        Raises
        ------
        CorruptFileError
            A page cannot be decoded (damaged compressed data) or the file
            lost bytes since it was opened; names the file and the page.
        """
        if self._array is not None:
            return self._array[start:stop]
        out = np.empty((stop - start, *self.page_shape), dtype=self.raw_dtype)
        if self.offsets is not None:
            with open(self.path, "rb") as fh:
                for k, i in enumerate(range(start, stop)):
                    fh.seek(int(self.offsets[i]))
                    got = fh.readinto(memoryview(out[k]).cast("B"))
                    if got != out[k].nbytes:
                        raise CorruptFileError(
                            f"TIFF file {self.path!r}: page {i} ends past the end of the file "
                            "(truncated since it was opened?)",
                            self.path,
                        )
            return out
        with _open_tiff(self.path) as tif:
            for k, i in enumerate(range(start, stop)):
                try:
                    out[k] = tif.pages[i].asarray()
                except Exception as exc:
                    raise CorruptFileError(
                        f"TIFF file {self.path!r}: page {i} cannot be decoded "
                        f"({type(exc).__name__}: {exc}); the file is corrupt or truncated",
                        self.path,
                    ) from exc
        return out


def read_first_page(path: str) -> np.ndarray:
    """Read the first page of a TIFF file, checking that its data is whole.

    How ``'TIFFs'`` sequences read their one-image files.

    Parameters
    ----------
    path : str
        The TIFF file.

    Returns
    -------
    numpy.ndarray
        The page as stored.

    Raises
    ------
    OSError
        Not a TIFF file.
    CorruptFileError
        The page's data lies past the end of the file or cannot be decoded;
        names the file.
    """
    size = os.path.getsize(path)
    with _open_tiff(path) as tif:
        try:
            page = tif.pages[0]
            offsets, counts = page.dataoffsets, page.databytecounts
        except Exception as exc:
            raise CorruptFileError(
                f"TIFF file {path!r} is corrupt: its first page cannot be read "
                f"({type(exc).__name__}: {exc})",
                path,
            ) from exc
        _check_page_data(path, 0, offsets, counts, size)
        try:
            return page.asarray()
        except Exception as exc:
            raise CorruptFileError(
                f"TIFF file {path!r}: page 0 cannot be decoded ({type(exc).__name__}: {exc}); the "
                "file is corrupt or truncated",
                path,
            ) from exc


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

    Raises
    ------
    CorruptFileError
        The file is truncated or corrupt (see :class:`PageSource` for what
        is checked when it is opened), or a page cannot be decoded when
        frames are read. Names the file and the page.
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {
        "path": "path",
        "num_planes": "?int",
        "num_channels": "?int",
        "len_": "?int?",
    }

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

    def _source_acquisition_metadata(self) -> Any:
        """Return the file's ScanImage, OME, ImageJ or resolution-tag metadata, read once."""
        if "_acquisition_file" not in self.__dict__:
            self._acquisition_file = read_tiff_metadata(self._path)
        return self._acquisition_file

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

    Raises
    ------
    CorruptFileError
        A file is empty or shorter than a TIFF header (checked for every
        file when the sequence is created), or a file's first page lies past
        its end or cannot be decoded (the first file is checked when the
        sequence is created, each file when its frame is read).
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {"patterns": "path lists"}

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
        for row in files:
            for group in row:
                for f in group:
                    if os.path.getsize(f) < 8:
                        raise CorruptFileError(
                            f"TIFF file {f!r} holds {os.path.getsize(f)} bytes, too few for a "
                            "TIFF header; it is truncated or empty",
                            f,
                        )
        first = files[0][0][0]
        img = read_first_page(first)
        if img.ndim != 2:
            raise ValueError(f"{first!r}: expected 2-D single-sample images")
        self._yx = tuple(int(s) for s in img.shape)
        self._dtype = check_numeric(img.dtype, f"TIFF file {first!r}")
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

    def _source_acquisition_metadata(self) -> Any:
        """Return the first file's ScanImage, OME, ImageJ or resolution metadata, read once."""
        if "_acquisition_file" not in self.__dict__:
            self._acquisition_file = read_tiff_metadata(self._files[0][0][0])
        return self._acquisition_file

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        for p, row in enumerate(self._files):
            for c, files in enumerate(row):
                for k, t in enumerate(range(start, stop)):
                    img = read_first_page(files[t])
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

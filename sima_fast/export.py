"""Writing time projections and frames to TIFF and HDF5 files (SPEC.md §7).

Both exports stream: frames are read chunk by chunk and written page by page
(TIFF) or slab by slab (HDF5), so memory does not grow with the number of
frames. Every output goes to a temporary file beside its destination and is
moved into place only when all outputs of the call are complete, so a failed
export leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from collections.abc import Sequence as _SeqABC
from typing import Any

import numpy as np

from sima_fast._atomic import atomic_write

__all__ = ["export_averages", "export_frames", "hdf5_block", "to_unsigned"]

FORMATS = ("TIFF8", "TIFF16", "HDF5")
PROJECTION_TYPES = {"average": "time_averages", "std": "time_std", "kurtosis": "time_kurtosis"}
COMPRESSIONS = (None, "gzip", "lzf", "szip")
_BITS = {"TIFF8": 8, "TIFF16": 16, "HDF5": 16}
_DTYPES = {"TIFF8": np.uint8, "TIFF16": np.uint16, "HDF5": np.uint16}


def _is_path(p: Any) -> bool:
    return isinstance(p, (str, os.PathLike))


def _is_list(x: Any) -> bool:
    return isinstance(x, _SeqABC) and not isinstance(x, (str, bytes))


def _check_fmt(fmt: Any) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {list(FORMATS)}, got {fmt!r}")
    return fmt


def _prepare_path(path: Any, argname: str) -> str:
    """Absolute output path with its directory created (an OSError names the path)."""
    if not _is_path(path):
        raise ValueError(f"{argname} must be a path (str or os.PathLike), got {path!r}")
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{argname}: cannot create the directory of {path!r} ({exc})") from exc
    if not os.access(directory, os.W_OK):
        raise OSError(f"{argname}: the directory of {path!r} is not writable")
    if os.path.isdir(path):
        raise OSError(f"{argname}: {path!r} is a directory")
    return path


def to_unsigned(values: np.ndarray, dtype: Any, scale: float | np.ndarray | None) -> np.ndarray:
    """Convert to an unsigned integer type: optionally scale, then clip, truncate.

    NaN becomes 0; values are clipped to the type's range after scaling and
    truncated toward zero (SIMA's ``astype`` convention).
    """
    info = np.iinfo(dtype)
    v = np.asarray(values, dtype=np.float64)
    if scale is not None:
        v = v * scale
    v = np.nan_to_num(v, nan=0.0, posinf=float(info.max), neginf=0.0)
    return np.clip(v, 0, info.max).astype(dtype)


def _full_range_scale(maximum: np.ndarray | float, bits: int) -> np.ndarray:
    """``(2**bits - 1) / maximum`` (1 where the maximum is not positive or not finite)."""
    m = np.asarray(maximum, dtype=np.float64)
    ok = np.isfinite(m) & (m > 0)
    return np.where(ok, (2.0**bits - 1.0) / np.where(ok, m, 1.0), 1.0)


@contextlib.contextmanager
def _all_or_nothing(paths: list[str]):
    """Temporary paths for every output; all are moved into place only on success."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_write(p)) for p in paths]


def export_averages(
    dataset: Any,
    filenames: Any,
    fmt: str = "TIFF16",
    scale_values: bool = True,
    projection_type: str = "average",
) -> None:
    """Write a time projection of every channel (see ``ImagingDataset.export_averages``)."""
    fmt = _check_fmt(fmt)
    if projection_type not in PROJECTION_TYPES:
        raise ValueError(
            f"projection_type must be one of {list(PROJECTION_TYPES)}, got {projection_type!r}"
        )
    C = dataset.frame_shape[3]
    if fmt == "HDF5":
        if _is_list(filenames) and len(filenames) == 1:
            filenames = filenames[0]
        if not _is_path(filenames):
            raise ValueError(
                "filenames must be a single path for fmt='HDF5' (one file holding every "
                f"channel), got {filenames!r}"
            )
        path = _prepare_path(filenames, "filenames")
    else:
        if not _is_list(filenames) or len(filenames) != C or not all(map(_is_path, filenames)):
            raise ValueError(
                f"filenames must be a list of {C} paths for fmt={fmt!r} (one TIFF per "
                f"channel, channels {dataset.channel_names}), got {filenames!r}"
            )
        paths = [_prepare_path(f, f"filenames[{c}]") for c, f in enumerate(filenames)]
    proj = getattr(dataset, PROJECTION_TYPES[projection_type])  # (Z, Y, X, C)
    bits = _BITS[fmt]
    if fmt == "HDF5":
        import h5py

        scale = _full_range_scale(np.nanmax(proj) if np.isfinite(proj).any() else 0, bits)
        data = to_unsigned(proj, np.uint16, scale if scale_values else None)
        name = "time_" + ("average" if projection_type == "average" else projection_type)
        with _all_or_nothing([path]) as (tmp,), h5py.File(tmp, "w") as f:
            dset = f.create_dataset(name, data=data)
            for i, label in enumerate("zyxc"):
                dset.dims[i].label = label
            dset.attrs["channel_names"] = np.array([n.encode() for n in dataset.channel_names])
        return
    import tifffile

    with _all_or_nothing(paths) as tmps:
        for c, tmp in enumerate(tmps):
            channel = proj[..., c]
            finite = np.isfinite(channel)
            scale = _full_range_scale(channel[finite].max() if finite.any() else 0, bits)
            pages = to_unsigned(channel, _DTYPES[fmt], scale if scale_values else None)
            with tifffile.TiffWriter(tmp) as writer:
                for plane in pages:
                    writer.write(plane, photometric="minisblack", contiguous=True)


def _channel_maxima(sequences: list) -> np.ndarray:
    """Largest finite value of every channel over all frames (NaN when none)."""
    best = None
    for seq in sequences:
        for _, chunk in seq.iter_chunks(reuse_buffer=True, prefetch=True):
            flat = chunk.reshape(-1, chunk.shape[-1])
            if flat.dtype.kind == "f":
                m = np.fmax.reduce(np.where(np.isfinite(flat), flat, np.nan), axis=0)
            else:
                m = flat.max(axis=0).astype(np.float64)
            best = m if best is None else np.fmax(best, m)
    return np.asarray(best, dtype=np.float64)


def export_frames(
    dataset: Any,
    filenames: Any,
    fmt: str = "TIFF16",
    fill_gaps: bool = True,
    scale_values: bool = False,
    compression: str | None = None,
    client: Any = None,
) -> None:
    """Write every frame of every sequence (see ``ImagingDataset.export_frames``).

    With a Dask ``client`` the frames are read, gap-filled and converted on
    the cluster (:func:`sima_fast.distributed.frame_blocks`) and written here
    in order; the files are identical.
    """
    fmt = _check_fmt(fmt)
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {list(COMPRESSIONS)}, got {compression!r}")
    S = dataset.num_sequences
    Z, C = dataset.frame_shape[0], dataset.frame_shape[3]
    if fmt == "HDF5":
        if compression == "szip":
            import h5py

            if not h5py.h5z.filter_avail(h5py.h5z.FILTER_SZIP):
                raise ValueError("compression='szip' is not available in this h5py build")
        if not _is_list(filenames) or len(filenames) != S or not all(map(_is_path, filenames)):
            raise ValueError(
                f"filenames must be a list of {S} paths for fmt='HDF5' (filenames[i] is the "
                f"file of sequence i), got {filenames!r}"
            )
        paths = [_prepare_path(f, f"filenames[{i}]") for i, f in enumerate(filenames)]
    else:
        ok = (
            _is_list(filenames)
            and len(filenames) == S
            and all(_is_list(p) and len(p) == Z for p in filenames)
            and all(_is_list(c) and len(c) == C for p in filenames for c in p)
            and all(_is_path(f) for p in filenames for c in p for f in c)
        )
        if not ok:
            raise ValueError(
                f"filenames must be nested as filenames[sequence][plane][channel]: a list of "
                f"{S} lists of {Z} lists of {C} paths for fmt={fmt!r}"
            )
        paths = [
            [
                [_prepare_path(f, f"filenames[{i}][{j}][{k}]") for k, f in enumerate(ch)]
                for j, ch in enumerate(pl)
            ]
            for i, pl in enumerate(filenames)
        ]
    if client is None:
        sequences = [s.fill_gaps() if fill_gaps else s for s in dataset.sequences]
    else:
        sequences = list(dataset.sequences)  # gaps are filled on the cluster
    scale = None
    if scale_values:
        if client is None:
            maxima = _channel_maxima(sequences)
        else:  # filling copies finite values, so it does not change the maxima
            from sima_fast.distributed import channel_maxima

            maxima = channel_maxima(sequences, client)
        scale = _full_range_scale(maxima, _BITS[fmt])  # (C,)
    if fmt == "HDF5":
        convert = functools.partial(hdf5_block, scale=scale)
    else:
        convert = functools.partial(to_unsigned, dtype=_DTYPES[fmt], scale=scale)

    def blocks(seq: Any) -> Iterator[tuple[int, np.ndarray]]:
        if client is None:
            for t0, chunk in seq.iter_chunks(reuse_buffer=True, prefetch=True):
                yield t0, convert(chunk)
        else:
            from sima_fast.distributed import frame_blocks

            yield from frame_blocks(seq, client, convert, fill_gaps=fill_gaps)

    from tqdm.auto import tqdm

    total = sum(len(s) for s in sequences)
    with tqdm(total=total, desc="export_frames", unit="frame", disable=None) as bar:
        if fmt == "HDF5":
            _write_hdf5_frames(sequences, blocks, paths, dataset.channel_names, compression, bar)
        else:
            _write_tiff_frames(sequences, blocks, paths, bar)


def hdf5_block(chunk: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """Frames as written to HDF5: float32, times ``scale`` per channel when given."""
    block = np.asarray(chunk, dtype=np.float32)
    if scale is not None:
        block = (block * scale).astype(np.float32)
    return block


def _write_hdf5_frames(sequences, blocks, paths, channel_names, compression, bar) -> None:
    import h5py

    with _all_or_nothing(paths) as tmps:
        for seq, tmp in zip(sequences, tmps):
            shape = seq.shape
            frame_bytes = max(int(np.prod(shape[1:])) * 4, 1)
            chunks = None
            if compression is not None and shape[0] > 0:
                chunks = (max(1, min(shape[0], 2**20 // frame_bytes)), *shape[1:])
            with h5py.File(tmp, "w") as f:
                dset = f.create_dataset(
                    "imaging",
                    shape=shape,
                    dtype=np.float32,
                    chunks=chunks,
                    compression=compression,
                )
                for i, label in enumerate("tzyxc"):
                    dset.dims[i].label = label
                dset.attrs["channel_names"] = np.array([n.encode() for n in channel_names])
                for t0, block in blocks(seq):
                    dset[t0 : t0 + len(block)] = block
                    bar.update(len(block))


def _write_tiff_frames(sequences, blocks, paths, bar) -> None:
    import tifffile

    flat_paths = [f for pl in paths for ch in pl for f in ch]
    with _all_or_nothing(flat_paths) as tmps:
        for i, seq in enumerate(sequences):
            Z, C = seq.shape[1], seq.shape[4]
            first = i * Z * C  # tmps are ordered sequence, plane, channel
            with contextlib.ExitStack() as stack:
                writers = [
                    [
                        stack.enter_context(tifffile.TiffWriter(tmps[first + j * C + c]))
                        for c in range(C)
                    ]
                    for j in range(Z)
                ]
                for _, pages in blocks(seq):
                    for frame in pages:
                        for j in range(Z):
                            for c in range(C):
                                writers[j][c].write(
                                    frame[j, :, :, c], photometric="minisblack", contiguous=True
                                )
                    bar.update(len(pages))

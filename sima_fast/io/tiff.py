"""TIFF exports of time projections and frames (formats 'TIFF8' and 'TIFF16').

Values are written as 8- or 16-bit unsigned integers, optionally stretched to
the full range as SIMA's ``to8bit``/``to16bit`` do, clipped to the type's
range and truncated; NaN becomes 0.
``tifffile`` is imported only when a file is written.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np

from sima_fast.io._export import (
    all_or_nothing,
    finite_maximum,
    nested_frame_paths,
    per_channel_paths,
    projection,
    to_unsigned,
)
from sima_fast.io._frames import converted_frames, progress_bar
from sima_fast.io._registry import averages_writers, frames_writers

__all__ = ["write_tiff_averages", "write_tiff_frames"]

_DTYPES = {8: np.uint8, 16: np.uint16}


def write_tiff_averages(
    dataset: Any,
    filenames: Any,
    *,
    scale_values: bool = True,
    projection_type: str = "average",
    bits: int = 16,
) -> None:
    """Write a time projection as one TIFF per channel, one page per plane.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset.
    filenames : list of str or path-like
        One path per channel.
    scale_values : bool, optional
        Stretch each channel as ``(2**bits - 1) * v / nanmax(channel)``.
    projection_type : {'average', 'std', 'kurtosis'}, optional
        The projection to write.
    bits : {8, 16}, optional
        Bits per value.

    Raises
    ------
    ValueError
        If ``filenames`` is not one path per channel.
    OSError
        If an output directory cannot be created or written.
    """
    paths = per_channel_paths(filenames, f"TIFF{bits}", dataset.channel_names)
    proj = projection(dataset, projection_type)  # (Z, Y, X, C)
    import tifffile

    with all_or_nothing(paths) as tmps:
        for c, tmp in enumerate(tmps):
            channel = proj[..., c]
            top = finite_maximum(channel) if scale_values else None
            pages = to_unsigned(channel, _DTYPES[bits], top)
            with tifffile.TiffWriter(tmp) as writer:
                for plane in pages:
                    writer.write(plane, photometric="minisblack", contiguous=True)


def write_tiff_frames(
    dataset: Any,
    filenames: Any,
    *,
    fill_gaps: bool = True,
    scale_values: bool = False,
    compression: str | None = None,
    client: Any = None,
    bits: int = 16,
) -> None:
    """Write every frame as one TIFF per sequence, plane and channel, one page per frame.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset.
    filenames : nested list of str or path-like
        ``filenames[i][j][k]`` is the file of sequence i, plane j, channel k.
    fill_gaps : bool, optional
        Fill NaN values from the pixel's nearest observation first.
    scale_values : bool, optional
        Stretch each channel as ``(2**bits - 1) * v / max``, with its
        maximum over the dataset.
    compression : str, optional
        Ignored (TIFF pages are written uncompressed).
    client : dask.distributed.Client, optional
        Read and convert the frames on this Dask cluster.
    bits : {8, 16}, optional
        Bits per value.

    Raises
    ------
    ValueError
        If ``filenames`` is not nested as described.
    OSError
        If an output directory cannot be created or written.
    """
    Z, C = dataset.frame_shape[0], dataset.frame_shape[3]
    paths = nested_frame_paths(filenames, f"TIFF{bits}", dataset.num_sequences, Z, C)
    convert = functools.partial(to_unsigned, dtype=_DTYPES[bits])
    sequences, blocks = converted_frames(
        dataset, fill_gaps, scale_values, bits, convert, client, by_maximum=True
    )
    import tifffile

    flat_paths = [f for pl in paths for ch in pl for f in ch]
    with progress_bar(sequences) as bar, all_or_nothing(flat_paths) as tmps:
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


for _bits in (8, 16):
    averages_writers.register(f"TIFF{_bits}", functools.partial(write_tiff_averages, bits=_bits))
    frames_writers.register(f"TIFF{_bits}", functools.partial(write_tiff_frames, bits=_bits))
del _bits

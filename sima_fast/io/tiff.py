"""TIFF exports of time projections and frames (formats 'TIFF8' and 'TIFF16').

Values are written as 8- or 16-bit unsigned integers, optionally stretched to
the full range as SIMA's ``to8bit``/``to16bit`` do, clipped to the type's
range and truncated; NaN becomes 0.
``tifffile`` is imported only when a file is written.

A frames file whose sequence has a known frame rate or pixel size is an
ImageJ hyperstack of ``T`` frames (:func:`imagej_frames_options`): the frame
interval ``finterval``, and the pixel size as the ``XResolution`` and
``YResolution`` tags with ``unit=um``, which ImageJ, Fiji, tifffile and
:func:`sima_fast.sequence.metadata.read_tiff_metadata` read back. The
other values (zoom, plane spacing, channel names, source, extra) have no
standard place in a one-plane, one-channel ImageJ file and are not written.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import numpy as np

from sima_fast.io._export import (
    all_or_nothing,
    exported_metadata,
    finite_maximum,
    nested_frame_paths,
    per_channel_paths,
    projection,
    to_unsigned,
)
from sima_fast.io._frames import converted_frames, progress_bar
from sima_fast.io._registry import averages_writers, frames_writers

__all__ = ["imagej_frames_options", "write_tiff_averages", "write_tiff_frames"]

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


def imagej_frames_options(meta: Any, num_frames: int) -> dict[str, Any]:
    """Return the ``TiffWriter.write`` options that store acquisition metadata the ImageJ way.

    For a file of ``num_frames`` pages, one per frame (one plane, one
    channel): an ImageJ hyperstack description (``images`` and ``frames``
    equal to ``num_frames``, ``finterval = 1 / frame_rate`` in seconds,
    ``unit=um`` when the pixel size is known) and the resolution tags
    (pixels per micrometre, ``ResolutionUnit`` none, as ImageJ writes a
    calibrated unit).

    Parameters
    ----------
    meta : AcquisitionMetadata or None
        The sequence's metadata.
    num_frames : int
        The number of pages the file will hold.

    Returns
    -------
    dict
        Keyword arguments for every ``write`` call of the file; empty (the
        file is written as before, without ImageJ metadata) when ``meta`` is
        None, knows neither the frame rate nor the pixel size, or the file
        has no frames.
    """
    rate = getattr(meta, "frame_rate", None)
    size = getattr(meta, "pixel_size_um", None)
    if num_frames < 1 or (rate is None and size is None):
        return {}
    from tifffile import imagej_description

    fields: dict[str, Any] = {}
    if rate is not None:
        fields["finterval"] = 1.0 / rate
    options: dict[str, Any] = {}
    if size is not None:
        fields["unit"] = "um"
        options["resolution"] = (1.0 / size[1], 1.0 / size[0])  # pixels per µm along x, y
        options["resolutionunit"] = "NONE"
    options["description"] = imagej_description((num_frames, 1, 1), "TYX", **fields)
    options["metadata"] = None  # the ImageJ description replaces tifffile's own
    return options


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

    Notes
    -----
    When the sequence's frame rate or pixel size is known
    (:func:`sima_fast.io._export.exported_metadata`), every file of it is
    an ImageJ hyperstack carrying them (:func:`imagej_frames_options`).
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
            options = imagej_frames_options(exported_metadata(dataset, i), len(seq))
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
                                    frame[j, :, :, c],
                                    photometric="minisblack",
                                    contiguous=True,
                                    **options,
                                )
                    bar.update(len(pages))


for _bits in (8, 16):
    averages_writers.register(f"TIFF{_bits}", functools.partial(write_tiff_averages, bits=_bits))
    frames_writers.register(f"TIFF{_bits}", functools.partial(write_tiff_frames, bits=_bits))
del _bits

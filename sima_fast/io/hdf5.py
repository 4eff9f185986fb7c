"""HDF5 exports of time projections and frames (format 'HDF5').

A projection is written as one uint16 dataset holding every channel; frames
as one float32 dataset ``imaging`` per sequence file, written slab by slab.
Datasets carry dimension labels and a ``channel_names`` attribute; a frames
dataset also carries the sequence's acquisition metadata, when any is known,
as the JSON attribute ``acquisition_metadata`` that
:func:`sima_fast.sequence.metadata.read_hdf5_metadata` reads back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sima_fast.io._export import (
    all_or_nothing,
    exported_metadata_json,
    finite_maximum,
    per_sequence_paths,
    projection,
    single_path,
    to_unsigned,
)
from sima_fast.io._frames import converted_frames, progress_bar
from sima_fast.io._registry import averages_writers, frames_writers

__all__ = ["hdf5_block", "write_hdf5_averages", "write_hdf5_frames"]

_BITS = 16


@averages_writers.register("HDF5")
def write_hdf5_averages(
    dataset: Any,
    filenames: Any,
    *,
    scale_values: bool = True,
    projection_type: str = "average",
) -> None:
    """Write a time projection of every channel to one HDF5 file.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset.
    filenames : str or path-like, or a list of one
        The output file.
    scale_values : bool, optional
        Stretch all channels as SIMA's ``to16bit`` does,
        ``(2**16 - 1) * v / nanmax`` with one maximum over all channels.
    projection_type : {'average', 'std', 'kurtosis'}, optional
        The projection to write, as dataset ``time_average``, ``time_std``
        or ``time_kurtosis``: uint16, ``(Z, Y, X, C)``, dimension labels z,
        y, x, c.

    Raises
    ------
    ValueError
        If ``filenames`` is not a single path.
    OSError
        If the output directory cannot be created or written.
    """
    path = single_path(filenames, "HDF5")
    proj = projection(dataset, projection_type)  # (Z, Y, X, C)
    import h5py

    data = to_unsigned(proj, np.uint16, finite_maximum(proj) if scale_values else None)
    name = "time_" + ("average" if projection_type == "average" else projection_type)
    with all_or_nothing([path]) as (tmp,), h5py.File(tmp, "w") as f:
        dset = f.create_dataset(name, data=data)
        for i, label in enumerate("zyxc"):
            dset.dims[i].label = label
        dset.attrs["channel_names"] = np.array([n.encode() for n in dataset.channel_names])


def hdf5_block(chunk: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """Frames as written to HDF5: float32, times ``scale`` per channel when given.

    Parameters
    ----------
    chunk : numpy.ndarray
        ``(t, Z, Y, X, C)`` frames.
    scale : numpy.ndarray or None
        ``(C,)`` factors, or None.

    Returns
    -------
    numpy.ndarray
        float32 block of the same shape.
    """
    block = np.asarray(chunk, dtype=np.float32)
    if scale is not None:
        block = (block * scale).astype(np.float32)
    return block


@frames_writers.register("HDF5")
def write_hdf5_frames(
    dataset: Any,
    filenames: Any,
    *,
    fill_gaps: bool = True,
    scale_values: bool = False,
    compression: str | None = None,
    client: Any = None,
) -> None:
    """Write every frame as one HDF5 file per sequence.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset.
    filenames : list of str or path-like
        ``filenames[i]`` is the file of sequence i; it holds a float32
        dataset ``imaging`` shaped ``(T, Z, Y, X, C)`` with dimension labels
        t, z, y, x, c, an attribute ``channel_names`` and, when the
        sequence's acquisition metadata is known
        (:func:`sima_fast.io._export.exported_metadata`), an attribute
        ``acquisition_metadata`` holding it as JSON
        (``AcquisitionMetadata.todict()``), so that
        ``Sequence.create('HDF5', path)`` reads it back.
    fill_gaps : bool, optional
        Fill NaN values from the pixel's nearest observation first.
    scale_values : bool, optional
        Stretch each channel by ``(2**16 - 1) / max`` over the dataset.
    compression : {None, 'gzip', 'lzf', 'szip'}, optional
        Lossless compression filter (chunks of about 1 MiB).
    client : dask.distributed.Client, optional
        Read, gap-fill and convert the frames on this Dask cluster.

    Raises
    ------
    ValueError
        If ``filenames`` is not one path per sequence, or 'szip' is not
        available in this h5py build.
    OSError
        If an output directory cannot be created or written.
    """
    if compression == "szip":
        import h5py

        if not h5py.h5z.filter_avail(h5py.h5z.FILTER_SZIP):
            raise ValueError("compression='szip' is not available in this h5py build")
    paths = per_sequence_paths(filenames, "HDF5", dataset.num_sequences)
    sequences, blocks = converted_frames(
        dataset, fill_gaps, scale_values, _BITS, hdf5_block, client
    )
    import h5py

    with progress_bar(sequences) as bar, all_or_nothing(paths) as tmps:
        for index, (seq, tmp) in enumerate(zip(sequences, tmps)):
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
                dset.attrs["channel_names"] = np.array([n.encode() for n in dataset.channel_names])
                acquisition = exported_metadata_json(dataset, index)
                if acquisition is not None:
                    dset.attrs["acquisition_metadata"] = acquisition
                for t0, block in blocks(seq):
                    dset[t0 : t0 + len(block)] = block
                    bar.update(len(block))

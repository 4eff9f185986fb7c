"""File formats of other tools: one module per ecosystem, found through registries.

Every way of reading or writing ROIs, time projections, frames and signals is
a function registered under a format name in one of five registries; the
public methods (:meth:`sima_fast.ROI.ROIList.load`,
:meth:`~sima_fast.ROI.ROIList.save`,
:meth:`~sima_fast.imaging.ImagingDataset.export_averages`,
:meth:`~sima_fast.imaging.ImagingDataset.export_frames`,
:meth:`~sima_fast.imaging.ImagingDataset.export_signals`) look the function
up by their ``fmt`` argument and call it.

=====================  ==================================================  =======================
registry               function signature                                  built-in formats
=====================  ==================================================  =======================
``roi_readers``        ``reader(path, label) -> ROIList``                  'h5', 'pkl', 'ImageJ',
                                                                           'suite2p', 'NWB'
``roi_writers``        ``writer(rois, path, label) -> None``               'h5', 'pkl', 'ImageJ'
``averages_writers``   ``writer(dataset, filenames, *, scale_values,       'TIFF8', 'TIFF16',
                       projection_type) -> None``                          'HDF5'
``frames_writers``     ``writer(dataset, filenames, *, fill_gaps,          'TIFF8', 'TIFF16',
                       scale_values, compression, client) -> None``        'HDF5'
``signals_writers``    ``writer(path, signals) -> None``                   'csv'
=====================  ==================================================  =======================

ROI format names match regardless of case; the other names match exactly.
The ``path`` given to ROI readers exists (checked by ``ROIList.load``), a
reader may take an optional ``im_shape`` keyword to clip shapes to the frame,
and keyword options of ``ROIList.load`` beyond its own reach the reader; the
dataset methods validate ``fmt``, ``projection_type`` and ``compression``
before calling a writer, and the writer validates ``filenames`` (helpers
shared by the writers are in :mod:`sima_fast.io._export`, the frame
streaming in :mod:`sima_fast.io._frames`).

The built-in modules, each registering its own formats:

- :mod:`sima_fast.io.native`: sima_fast's HDF5 ROI files ('h5'; 'pkl' also
  reads SIMA 1.x ``rois.pkl`` through :mod:`sima_fast.io.sima_legacy`);
- :mod:`sima_fast.io.imagej`: ImageJ ``.roi`` and ``.zip`` ROI files;
- :mod:`sima_fast.io.tiff`, :mod:`sima_fast.io.hdf5`: projections and frames;
- :mod:`sima_fast.io.csv`: extracted signals as tab-separated text;
- :mod:`sima_fast.io.suite2p`: suite2p output folders (ROIs read with their
  weights; :meth:`~sima_fast.imaging.ImagingDataset.export_suite2p` writes
  them).
- :mod:`sima_fast.io.nwb`: NWB files (needs the ``nwb`` extra): the ROIs of a
  PlaneSegmentation ('NWB', read only), and the whole-dataset export behind
  :meth:`~sima_fast.imaging.ImagingDataset.export_nwb`.

They are imported on the first use of a registry. A module for another
ecosystem registers its functions at import and imports its optional
dependency inside those functions only. To add one to the built-ins, append
it to :data:`BUILTIN_MODULES`; code outside sima_fast registers its own.

Examples
--------
>>> from sima_fast.io import frames_writers
>>> frames_writers.names()
['TIFF8', 'TIFF16', 'HDF5']
>>> frames_writers.lookup('PNG')
Traceback (most recent call last):
...
ValueError: fmt must be one of ['TIFF8', 'TIFF16', 'HDF5'], got 'PNG'
"""

from __future__ import annotations

from sima_fast.io._registry import (
    BUILTIN_MODULES,
    Registry,
    averages_writers,
    frames_writers,
    roi_readers,
    roi_writers,
    signals_writers,
)

__all__ = [
    "BUILTIN_MODULES",
    "Registry",
    "averages_writers",
    "frames_writers",
    "roi_readers",
    "roi_writers",
    "signals_writers",
]

"""Imaging sequences: lazy, chunk-readable views of ``(T, Z, Y, X, C)`` movies.

:class:`Sequence` (in :mod:`~sima_fast.sequence.base`) is the protocol every
sequence answers; the readers live one family per module (``hdf5``,
``tiff``, ``arrays``, ``zarr``, ``dask``, ``constant``, ``nwb``) and the views in
``views`` (the interpolating motion-corrected view in ``warped``, sequence
arithmetic in ``arithmetic``). Each reader and view registers its format
name when its module is imported, which importing this package does, so
:meth:`Sequence.create` and :meth:`Sequence.fromdict` know every built-in
format. A new format is one new module whose class names its format::

    class MySequence(Sequence, format="mine"):
        ...

A damaged data file raises :class:`CorruptFileError` (an :class:`OSError`)
naming the file, when the sequence is created where the format allows it,
otherwise when the damaged frames are read; a malformed description raises
:class:`DescriptionError` (a :class:`ValueError`) naming the field.
"""

from __future__ import annotations

from sima_fast.sequence.arithmetic import ArithmeticSequence
from sima_fast.sequence.arrays import MemmapSequence, NdarraySequence
from sima_fast.sequence.axes import DIM_ORDER
from sima_fast.sequence.base import (
    SUPPORTED_DTYPES,
    CorruptFileError,
    DescriptionError,
    LoadContext,
    SaveContext,
    Sequence,
    WrapperSequence,
    path_record,
    resolve_path,
    validate_description,
)
from sima_fast.sequence.constant import ConstantSequence
from sima_fast.sequence.dask import DaskSequence
from sima_fast.sequence.hdf5 import HDF5Sequence
from sima_fast.sequence.metadata import AcquisitionMetadata, AcquisitionMetadataWarning
from sima_fast.sequence.nwb import NWBSequence
from sima_fast.sequence.tiff import TIFFSequence, TIFFsSequence
from sima_fast.sequence.views import (
    FilledSequence,
    IndexedSequence,
    JoinedSequence,
    MaskedSequence,
    MotionCorrectedSequence,
)
from sima_fast.sequence.warped import WarpedSequence
from sima_fast.sequence.zarr import ZarrSequence

__all__ = [
    "DIM_ORDER",
    "SUPPORTED_DTYPES",
    "AcquisitionMetadata",
    "AcquisitionMetadataWarning",
    "ArithmeticSequence",
    "ConstantSequence",
    "CorruptFileError",
    "DaskSequence",
    "DescriptionError",
    "FilledSequence",
    "HDF5Sequence",
    "IndexedSequence",
    "JoinedSequence",
    "LoadContext",
    "MaskedSequence",
    "MemmapSequence",
    "MotionCorrectedSequence",
    "NWBSequence",
    "NdarraySequence",
    "SaveContext",
    "Sequence",
    "TIFFSequence",
    "TIFFsSequence",
    "WarpedSequence",
    "WrapperSequence",
    "ZarrSequence",
    "path_record",
    "resolve_path",
    "validate_description",
]

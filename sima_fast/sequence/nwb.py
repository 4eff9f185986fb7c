"""NWB sequences (``Sequence.create('NWB', path, series=None)``).

A ``TwoPhotonSeries`` stored in an NWB file is an HDF5 dataset ``(t, x, y)``
or ``(t, x, y, z)``; this reader finds it through
:func:`sima_fast.io.nwb.locate_two_photon_series` (the only place pynwb is
imported) and then reads it exactly as :class:`~sima_fast.sequence.hdf5.HDF5Sequence`
reads any HDF5 dataset: in time chunks filled straight from the file, never
the whole movie. A dataset directory records it as the file (absolute and
relative path) and the series' name.

A series written with ``export_nwb(..., frames='link')`` keeps its frames in
another HDF5 file through an external link; :meth:`NWBSequence.data_files`
lists that file too (and the sources of a virtual dataset), so no writer
overwrites a file the sequence reads.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from sima_fast.sequence.base import LoadContext, SaveContext, Sequence, path_record, resolve_path
from sima_fast.sequence.hdf5 import HDF5Sequence

__all__ = ["NWBSequence"]


class NWBSequence(HDF5Sequence, format="NWB"):
    """The frames of a ``TwoPhotonSeries`` of an NWB file, read lazily.

    Parameters
    ----------
    path : str or os.PathLike
        The NWB file.
    series : str, optional
        The series' name, in ``acquisition`` or a processing module.
        Default: the file's only TwoPhotonSeries.

    Raises
    ------
    FileNotFoundError
        No such file.
    OSError
        Not an NWB file.
    KeyError
        No TwoPhotonSeries named ``series`` (the message lists those in the
        file), or none.
    ValueError
        Several series and no name, frames kept in external files, or data
        that is neither 3-D nor 4-D.
    ImportError
        pynwb (the ``nwb`` extra) is not installed.

    Notes
    -----
    NWB's ``x`` axis is the image's column and ``y`` its row, so a series
    ``(t, x, y)`` becomes frames ``(1, Y, X, 1)``. :attr:`rate` and
    :attr:`starting_time` give the series' timing (None when it has
    timestamps).
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {"path": "path", "series": "str"}

    def __init__(self, path: Any, series: str | None = None) -> None:
        from sima_fast.io.nwb import locate_two_photon_series

        info = locate_two_photon_series(path, series)
        super().__init__(path, info["dim_order"], group=info["group"], key=info["key"])
        self._series = info["name"]
        self.rate = info["rate"]
        self.starting_time = info["starting_time"]
        self._nwb_acquisition = info["acquisition"]

    def _source_acquisition_metadata(self) -> Any:
        """Return what the TwoPhotonSeries and its ImagingPlane record (rate, pixel size, ...)."""
        from sima_fast.sequence.metadata import AcquisitionMetadata

        fields = dict(getattr(self, "_nwb_acquisition", None) or {})
        return AcquisitionMetadata(**fields) if fields else None

    @property
    def series(self) -> str:
        """The TwoPhotonSeries' name."""
        return self._series

    def describe(self) -> str:
        """Describe the sequence in one line: the file's name and the series.

        Returns
        -------
        str
            E.g. ``'NWB session.nwb:TwoPhotonSeries'``.
        """
        return f"NWB {os.path.basename(self.path)}:{self._series}"

    def todict(self, ctx: SaveContext) -> dict[str, Any]:
        """Describe the sequence in JSON-compatible form, for :meth:`fromdict`.

        Parameters
        ----------
        ctx : SaveContext
            The dataset being saved; the file is recorded both absolute and
            relative to ``ctx.savedir``.

        Returns
        -------
        dict
            ``'fmt'`` (``'NWB'``), ``'path'`` (a path record) and ``'series'``.
        """
        return {
            "fmt": self.format,
            "path": path_record(self.path, ctx.savedir),
            "series": self._series,
        }

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Reopen the sequence from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description.
        ctx : LoadContext
            The dataset being loaded; the file is looked for relative to
            ``ctx.savedir`` first, then at its absolute path.

        Returns
        -------
        NWBSequence

        Raises
        ------
        FileNotFoundError
            The NWB file is at neither path.
        """
        return cls(resolve_path(d["path"], ctx.savedir, "NWB file"), d["series"])

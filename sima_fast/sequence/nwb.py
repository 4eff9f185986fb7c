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

    def data_files(self) -> list[str]:
        """List every file the series' frames are read from.

        The NWB file itself, and the files HDF5 reaches from it: the target of
        an external link on the way to the frames (resolved by HDF5 itself, as
        h5py and pynwb open it: relative to the NWB file's directory, or
        ``HDF5_EXT_PREFIX``), and the source files of a virtual dataset
        (relative to the file holding it, or ``HDF5_VDS_PREFIX``).

        Returns
        -------
        list of str
            Absolute paths, sorted, without repetitions.
        """
        files = {self._path}
        try:
            self._ds()  # (re)opens the NWB file as self._file
            node = self._file["/"]
            for part in [p for p in self._group.split("/") if p] + [self._key]:
                node = node[part]
                files.add(os.path.abspath(node.file.filename))
            if getattr(node, "is_virtual", False):
                files.update(_virtual_source_files(node))
        except (OSError, KeyError):  # the file is gone or changed: reading will say so
            pass
        return sorted(files)

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


def _virtual_source_files(ds: Any) -> list[str]:
    """List the existing source files of a virtual dataset, where HDF5 finds them.

    A relative source name is looked for under each directory of
    ``HDF5_VDS_PREFIX``, then next to the file holding the dataset, then in
    the current directory; printf-style patterns (``%b``) are skipped.

    Returns
    -------
    list of str
        Absolute paths of the sources found.
    """
    holder = os.path.abspath(ds.file.filename)
    found = []
    for vmap in ds.virtual_sources():
        name = vmap.file_name
        if name == ".":
            continue
        if "%" in name:
            continue
        candidates = [name] if os.path.isabs(name) else []
        base = os.path.basename(name) if os.path.isabs(name) else name
        prefixes = [p for p in os.environ.get("HDF5_VDS_PREFIX", "").split(os.pathsep) if p]
        prefixes += [os.path.dirname(holder), os.getcwd()]
        candidates += [os.path.join(prefix, base) for prefix in prefixes]
        hit = next((c for c in candidates if os.path.isfile(c)), None)
        if hit is not None:
            found.append(os.path.abspath(hit))
    return found

"""The :class:`ImagingDataset`: sequences, channels, ROIs, signals and their storage.

This is the object SIMA users work with. It groups one or more
:class:`~sima_fast.sequence.Sequence` objects of equal frame shape
``(Z, Y, X, C)`` with channel names, and (when it has a ``savedir``) keeps
everything derived from them — ROI sets, extracted signals, cached time
projections — in a dataset directory (see :mod:`sima_fast.storage`).
"""

from __future__ import annotations

import numbers
import os
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np

from sima_fast import storage
from sima_fast._atomic import make_staging_dir, recover_dataset_dir
from sima_fast._lock import create_lock_file
from sima_fast._timestamps import current_timestamp, most_recent
from sima_fast._validate import (
    ArgumentTypeError,
    check_bool,
    check_int,
    check_label,
    resolve_channel,
)
from sima_fast._warnings import warn
from sima_fast.sequence import Sequence
from sima_fast.sequence.metadata import (
    AcquisitionMetadata,
    check_acquisition_metadata,
    combine_metadata,
    index_metadata,
)

__all__ = ["ImagingDataset", "NotADatasetError"]


class NotADatasetError(storage.DatasetFormatError, FileNotFoundError):
    """The directory holds no dataset: neither sima_fast's ``metadata.json`` nor SIMA's pickles.

    Both a :class:`sima_fast.storage.DatasetFormatError` (a ``ValueError``)
    and a ``FileNotFoundError`` (an ``OSError``, i.e. ``IOError``), since
    SIMA raised ``IOError`` there and scripts catch it to skip such folders.
    """


class ImagingDataset:
    """A multi-sequence imaging dataset.

    Iterating over a dataset yields its sequences; iterating over a sequence
    yields frames ``(Z, Y, X, C)``; frames iterate over planes, rows, columns
    and channels as plain numpy arrays do.

    Parameters
    ----------
    sequences : list of Sequence
        The imaging sequences (acquisitions). All must share the frame shape
        ``(num_planes, num_rows, num_columns, num_channels)``.
    savedir : str or None
        Directory in which to store the dataset (``.sima`` is appended when
        missing). It must not exist yet: open existing datasets with
        :meth:`load`. ``None`` keeps the dataset in memory only.
    channel_names : list of str, optional
        One name per channel; default ``['0', '1', ...]``. Integers are
        accepted and stored as their digits (as SIMA did); any other type
        (None, bytes, floats, bools) is refused.
    read_only : bool, optional
        Refuse every change to the dataset directory. Default: False.

    Raises
    ------
    TypeError
        If ``sequences`` is not a list of :class:`Sequence`, a channel name
        is not a str (or int), or ``read_only`` is not a bool
        (:class:`sima_fast._validate.ArgumentTypeError`, also a ValueError).
    ValueError
        Sequences of different frame shapes, or a wrong number of channel names.
    FileExistsError
        If ``savedir`` already exists.

    Examples
    --------
    >>> import sima_fast as sima
    >>> from sima_fast.misc import example_data
    >>> dataset = sima.ImagingDataset.load(example_data())
    >>> for sequence in dataset:
    ...     for frame in sequence:
    ...         for plane in frame:
    ...             for row in plane:
    ...                 for column in row:
    ...                     for channel in column:
    ...                         pass
    >>> dataset[0].num_sequences
    1
    >>> dataset[:, 0].num_frames == dataset.num_sequences
    True
    >>> dataset[:, 0].frame_shape == dataset.frame_shape
    True
    """

    def __init__(
        self,
        sequences: list[Sequence],
        savedir: str | os.PathLike | None,
        channel_names: list[str] | None = None,
        read_only: bool = False,
    ) -> None:
        read_only = check_bool("read_only", read_only)
        if not isinstance(sequences, (list, tuple)):
            raise TypeError(
                f"sequences must be a list of Sequence objects, got {type(sequences).__name__}"
            )
        sequences = list(sequences)
        for i, s in enumerate(sequences):
            if not isinstance(s, Sequence):
                raise TypeError(
                    f"sequences[{i}] is a {type(s).__name__}; every element must be a "
                    "sima_fast Sequence (see Sequence.create)"
                )
        if not sequences:
            raise ValueError("sequences must contain at least one Sequence")
        frame_shape = sequences[0].shape[1:]
        for i, s in enumerate(sequences[1:], start=1):
            if s.shape[1:] != frame_shape:
                raise ValueError(
                    f"sequences[{i}] has frame shape {s.shape[1:]} but sequences[0] has "
                    f"{frame_shape}; all sequences must share (Z, Y, X, C)"
                )
        self._sequences = sequences
        self._channel_names = self._validate_channel_names(channel_names, frame_shape[3])
        self._read_only = bool(read_only)
        self._savedir: str | None = None
        self._legacy = False
        self._meta: dict[str, Any] | None = None  # what metadata.json holds
        self._acquisition_user: AcquisitionMetadata | None = None
        self._projections: dict[str, np.ndarray] = {}
        self._mem_rois: dict[str, Any] = {}
        self._mem_signals: dict[int, dict[str, Any]] = {}
        if savedir is not None:
            target = storage.normalize_savedir(savedir)
            if os.path.exists(target):
                raise FileExistsError(
                    f"savedir {target!r} already exists; open it with ImagingDataset.load or "
                    "choose a new directory"
                )
            self._save_new(target)

    # -- validation helpers ----------------------------------------------------

    @staticmethod
    def _validate_channel_names(names: Any, num_channels: int) -> list[str]:
        if names is None:
            return [str(i) for i in range(num_channels)]
        if isinstance(names, str) or not hasattr(names, "__len__"):
            raise ValueError(
                f"channel_names must be a list of {num_channels} names, got {names!r}"
            )
        for i, n in enumerate(names):
            # str, or an integer written as its digits (as SIMA did); anything else
            # (None, bytes, floats, bools) would become a misleading name like 'None'.
            if not (
                isinstance(n, str)
                or (isinstance(n, numbers.Integral) and not isinstance(n, (bool, np.bool_)))
            ):
                raise ArgumentTypeError(
                    f"channel_names[{i}] must be a str (or an int, used as its digits), got {n!r}"
                )
        names = [str(n) for n in names]
        if len(names) != num_channels:
            raise ValueError(
                f"channel_names has {len(names)} name(s) but the data has {num_channels} "
                f"channel(s): {names}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"channel_names must be unique, got {names}")
        return names

    def _check_writable(self) -> None:
        if self._read_only:
            raise PermissionError(
                "this dataset was opened read_only; load it with read_only=False to change it"
            )
        if self._legacy:
            raise PermissionError(
                f"{self._savedir!r} was written by SIMA 1.x and is never modified; call "
                "save(new_path) to convert it to a sima_fast directory first"
            )

    # -- loading ---------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike, read_only: bool = False) -> ImagingDataset:
        """Open a saved dataset.

        Parameters
        ----------
        path : str or path-like
            A sima_fast dataset directory, or a directory written by SIMA 1.x
            (read through an allow-list unpickler; never modified). The
            ``.sima`` suffix may be omitted.
        read_only : bool, optional
            Refuse every change to the directory. Default: False. A writable
            open first completes or removes what interrupted writes left in
            the directory, and abandoned staging directories of new datasets
            beside it (``sima_fast.storage.recover``); a read-only open
            changes nothing.

        Returns
        -------
        ImagingDataset

        Raises
        ------
        FileNotFoundError
            If the directory, or a data file it refers to, does not exist.
        NotADatasetError
            If the directory holds no dataset (a ``DatasetFormatError`` that
            is also a ``FileNotFoundError``, so ``except IOError`` catches it
            as in SIMA).
        sima_fast.storage.DatasetFormatError
            If the metadata is corrupt.
        sima_fast.storage.UnsafePickleError
            If a SIMA pickle refers to anything outside the allow-list.
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        read_only = check_bool("read_only", read_only)
        raw = os.path.abspath(os.fspath(path))
        candidates = [raw] if os.path.isdir(raw) else [storage.normalize_savedir(raw)]
        savedir = candidates[0]
        if not os.path.isdir(savedir):
            raise FileNotFoundError(f"path: no dataset directory at {os.fspath(path)!r}")
        if not read_only:  # finish or undo what crashed writers left; read-only changes nothing
            recover_dataset_dir(savedir, inside=storage.is_dataset_dir(savedir))
        self = cls.__new__(cls)
        self._read_only = bool(read_only)
        self._acquisition_user = None
        self._projections = {}
        self._mem_rois = {}
        self._mem_signals = {}
        if storage.is_dataset_dir(savedir):
            meta = storage.read_metadata(savedir)
            self._sequences = storage.load_sequences(savedir, meta)
            self._legacy = False
            self._meta = meta
            self._apply_acquisition_record(meta.get("acquisition_metadata"))
        elif storage.is_legacy_dir(savedir):
            info = storage.load_legacy(savedir)
            self._sequences = info["sequences"]
            self._legacy = True
            self._meta = None
            self._projections = dict(info["projections"])
            meta = {"channel_names": info["channel_names"]}
        else:
            raise NotADatasetError(
                f"path: {savedir!r} is neither a sima_fast dataset (no metadata.json) nor a SIMA "
                "dataset (no sequences.pkl or dataset.pkl)"
            )
        if not self._sequences:
            raise storage.DatasetFormatError(f"{savedir!r} holds no sequences")
        frame_shape = self._sequences[0].shape[1:]
        for i, s in enumerate(self._sequences):
            if s.shape[1:] != frame_shape:
                raise storage.DatasetFormatError(
                    f"{savedir!r}: sequence {i} has frame shape {s.shape[1:]}, sequence 0 has "
                    f"{frame_shape}"
                )
        self._channel_names = self._validate_channel_names(meta["channel_names"], frame_shape[3])
        self._savedir = savedir
        return self

    # -- saving ----------------------------------------------------------------

    def save(self, savedir: str | os.PathLike | None = None) -> None:
        """Save the dataset.

        Parameters
        ----------
        savedir : str or path-like, optional
            Where to save (``.sima`` appended when missing). Default: the
            dataset's own directory. A different directory must not exist
            yet; the ROIs, signals and cached projections are carried over.
            Saving a SIMA 1.x dataset to a new directory converts it.

        Raises
        ------
        PermissionError
            On a read-only dataset, or when saving a SIMA 1.x directory in place.
        ValueError
            If the dataset has no directory and none is given.
        FileExistsError
            If a new ``savedir`` already exists.

        Notes
        -----
        Files are written under temporary names and moved into place;
        ``metadata.json`` goes last, so a failed save leaves the previous state
        of the directory intact.

        Saving in place holds the directory's lock (see
        :func:`sima_fast.storage.dataset_lock`) and starts from the metadata
        the directory holds now, so what other processes wrote meanwhile
        survives: their ROI sets and signals are never touched, and channel
        names another process set are kept (and adopted by this object)
        unless this object's names were changed since it was loaded or last
        saved. Only data files that the metadata records as written by
        sima_fast and that it no longer uses are deleted; other files in the
        directory are left alone. If another process replaced the
        directory's sequences meanwhile, :class:`sima_fast.storage.DatasetChangedError`
        is raised and nothing is written.
        """
        if self._read_only:
            raise PermissionError("this dataset was opened read_only; it cannot be saved")
        if savedir is None:
            if self._savedir is None:
                raise ValueError("savedir: this dataset has no directory yet; pass one to save()")
            target = self._savedir
        else:
            target = storage.normalize_savedir(savedir)
        if target == self._savedir:
            self._check_writable()
            self._save_in_place("save", keep_their_names=True)
            return
        if os.path.exists(target):
            raise FileExistsError(f"savedir {target!r} already exists; choose a new directory")
        self._save_new(target)

    def _metadata(
        self, seq_meta: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        from sima_fast import __version__

        meta = {
            "sima_fast_version": __version__,
            "saved": current_timestamp(),
            "channel_names": list(self._channel_names),
            "frame_shape": list(self.frame_shape),
            "num_frames": [len(s) for s in self._sequences],
            "sequences": seq_meta["sequences"],
            "arrays_file": seq_meta["arrays_file"],
            "sequences_id": seq_meta["sequences_id"],
        }
        acquisition = self._acquisition_record()
        if acquisition is not None:
            meta["acquisition_metadata"] = acquisition
        meta["owned_files"] = storage.ownership(meta, previous, seq_meta["new_files"])
        return meta

    def _acquisition_record(self) -> dict[str, Any] | None:
        """Build the ``acquisition_metadata`` field of ``metadata.json``: what users set.

        A sequence's entry is its whole metadata when a user set values on
        it or on a sequence it wraps (so the values survive the save), else
        null; the file's own metadata is read from the file again.

        Returns
        -------
        dict or None
            ``{'dataset': ..., 'sequences': ...}``, or None when nothing was set.
        """

        def user_set(seq: Sequence) -> bool:
            stack = [seq]
            while stack:
                node = stack.pop()
                if node.user_acquisition_metadata is not None:
                    return True
                stack.extend(node.children)
            return False

        per_sequence = [s.acquisition_metadata if user_set(s) else None for s in self._sequences]
        per_sequence = [None if m is None else m.todict() for m in per_sequence]
        if self._acquisition_user is None and all(m is None for m in per_sequence):
            return None
        return {
            "dataset": None if self._acquisition_user is None else self._acquisition_user.todict(),
            "sequences": per_sequence if any(m is not None for m in per_sequence) else None,
        }

    def _apply_acquisition_record(self, record: dict[str, Any] | None) -> None:
        """Take the user-set acquisition metadata of a ``metadata.json`` field (checked)."""
        record = record or {}
        dataset = record.get("dataset")
        self._acquisition_user = None if dataset is None else AcquisitionMetadata.fromdict(dataset)
        for seq, entry in zip(self._sequences, record.get("sequences") or []):
            if entry is not None:
                seq.acquisition_metadata = AcquisitionMetadata.fromdict(entry)

    def _save_in_place(self, operation: str, keep_their_names: bool = False) -> None:
        """Rewrite ``metadata.json`` under the directory's lock, from what it holds now."""
        savedir = self._savedir
        with storage.dataset_lock(savedir, operation):
            current = storage.read_metadata(savedir)
            if self._meta is None:
                seq_meta = storage.serialize_sequences(self._sequences, savedir, savedir)
            else:
                theirs, ours = current.get("sequences_id"), self._meta.get("sequences_id")
                if theirs != ours:
                    raise storage.DatasetChangedError(
                        f"{savedir!r} changed since this dataset was read: its metadata.json now "
                        f"describes other sequences (sequences_id {theirs!r}, not {ours!r}); "
                        "nothing was written. Load it again with ImagingDataset.load"
                    )
                seq_meta = {
                    k: current.get(k) for k in ("sequences", "arrays_file", "sequences_id")
                }
                seq_meta["new_files"] = []
                if keep_their_names and self._channel_names == list(self._meta["channel_names"]):
                    # Unchanged here: keep names another process may have set meanwhile.
                    self._channel_names = self._validate_channel_names(
                        current["channel_names"], self.frame_shape[3]
                    )
                ours = self._acquisition_record()
                theirs = current.get("acquisition_metadata")
                if ours == self._meta.get("acquisition_metadata") and theirs != ours:
                    # Unchanged here: keep acquisition metadata set meanwhile elsewhere.
                    self._apply_acquisition_record(theirs)
            meta = self._metadata(seq_meta, current)
            try:
                storage.write_metadata(savedir, meta)
            except BaseException:
                for name in seq_meta["new_files"]:
                    path = os.path.join(savedir, name)
                    if os.path.exists(path):
                        os.remove(path)
                raise
            storage.remove_unreferenced(savedir, meta, current)
            self._meta = meta

    def _save_new(self, target: str) -> None:
        """Write a complete dataset directory at ``target`` (staged, then renamed)."""
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"savedir: the parent directory {parent!r} does not exist")
        staging = make_staging_dir(target)  # also removes abandoned ones beside it
        try:
            # Nobody else sees the staging directory: it is written without its lock.
            create_lock_file(staging)
            seq_meta = storage.serialize_sequences(self._sequences, target, staging)
            meta = self._metadata(seq_meta)
            # Carry over everything derived from the sequences.
            rois = self.ROIs
            if rois:
                self._write_rois(staging, rois, lock=False)
            for channel in range(self.frame_shape[3]):
                signals = self._read_signals(channel)
                if signals:
                    self._write_signals(staging, channel, signals, lock=False)
            if self._projections:
                storage.write_projections(
                    staging, meta["sequences_id"], self._projections, lock=False
                )
            storage.write_metadata(staging, meta)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._savedir = target
        self._meta = meta
        self._legacy = False
        self._mem_rois = {}
        self._mem_signals = {}

    # -- basic properties ------------------------------------------------------

    @property
    def sequences(self) -> list[Sequence]:
        """The imaging sequences (a list of :class:`Sequence`)."""
        return self._sequences

    @property
    def num_sequences(self) -> int:
        """Number of sequences."""
        return len(self._sequences)

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """``(num_planes, num_rows, num_columns, num_channels)``."""
        return tuple(int(s) for s in self._sequences[0].shape[1:])

    @property
    def num_frames(self) -> int:
        """Total number of frames over all sequences."""
        return int(sum(len(s) for s in self._sequences))

    @property
    def channel_names(self) -> list[str]:
        """Names of the channels."""
        return list(self._channel_names)

    @channel_names.setter
    def channel_names(self, names: list[str]) -> None:
        names = self._validate_channel_names(names, self.frame_shape[3])
        if self._savedir is not None:
            self._check_writable()
            old = self._channel_names
            self._channel_names = names
            try:
                self._save_in_place("set channel_names")
            except BaseException:
                self._channel_names = old
                raise
        else:
            self._channel_names = names

    @property
    def acquisition_metadata(self) -> AcquisitionMetadata | None:
        """What the microscope recorded about the dataset's acquisitions, or None.

        The sequences' :attr:`Sequence.acquisition_metadata
        <sima_fast.sequence.base.Sequence.acquisition_metadata>` merged (a
        value two sequences give differently is unknown), with the values
        set on the dataset laid over them. Setting it (an
        :class:`~sima_fast.sequence.metadata.AcquisitionMetadata`, a dict of
        its fields, or None to remove what was set) saves it in the
        dataset's ``metadata.json`` when the dataset has a directory; so do
        values set on its sequences, at the next :meth:`save`.

        Examples
        --------
        >>> import numpy as np
        >>> import sima_fast as sima
        >>> seq = sima.Sequence.create('ndarray', np.zeros((4, 1, 8, 8, 1)))
        >>> ds = sima.ImagingDataset([seq], None)
        >>> ds.acquisition_metadata is None
        True
        >>> ds.acquisition_metadata = {'frame_rate': 30.0, 'pixel_size_um': [0.5, 0.5]}
        >>> ds.acquisition_metadata.frame_rate
        30.0
        """
        found = combine_metadata([s.acquisition_metadata for s in self._sequences])
        user = self._acquisition_user
        if user is None:
            return found
        return user if found is None else found.merge(user)

    @acquisition_metadata.setter
    def acquisition_metadata(self, value: Any) -> None:
        value = check_acquisition_metadata(value)
        if self._savedir is not None:
            self._check_writable()
            old = self._acquisition_user
            self._acquisition_user = value
            try:
                self._save_in_place("set acquisition_metadata")
            except BaseException:
                self._acquisition_user = old
                raise
        else:
            self._acquisition_user = value

    @property
    def savedir(self) -> str | None:
        """The dataset directory, or ``None`` for an in-memory dataset."""
        return self._savedir

    @property
    def read_only(self) -> bool:
        """Whether changes to the dataset directory are refused."""
        return self._read_only

    def __repr__(self) -> str:
        """Return ``<ImagingDataset: num_sequences=..., frame_shape=..., num_frames=...>``."""
        return (
            f"<ImagingDataset: num_sequences={self.num_sequences}, "
            f"frame_shape={self.frame_shape}, num_frames={self.num_frames}>"
        )

    def __iter__(self) -> Iterator[Sequence]:
        """Iterate over the dataset's sequences, in order."""
        return iter(self._sequences)

    def __len__(self) -> int:
        """Return the number of sequences (not frames)."""
        return self.num_sequences

    def __getitem__(self, indices: Any) -> ImagingDataset:
        """Select sequences and index every selected sequence.

        ``ds[s]`` selects sequences; ``ds[s, t, z, y, x, c]`` (any prefix)
        additionally indexes each selected sequence. Integer indices never drop
        an axis. The result is an in-memory dataset (``savedir=None``) that
        keeps the names of the selected channels.

        Parameters
        ----------
        indices : index or tuple of indices
            Up to six per-axis indices (ints, slices, integer or boolean arrays,
            one ``...``): sequence, then t, z, y, x, c.

        Returns
        -------
        ImagingDataset

        Raises
        ------
        IndexError
            More than six indices, an out-of-range index, or a selection of no
            sequence.
        """
        from sima_fast.sequence.axes import expand_ellipsis, normalize_axis_index

        if not isinstance(indices, tuple):
            indices = (indices,)
        indices = expand_ellipsis(indices, 6)
        if len(indices) > 6:
            raise IndexError(
                "too many indices: a dataset has 6 axes (sequence, t, z, y, x, c), "
                f"got {len(indices)}"
            )
        sel = normalize_axis_index(indices[0], self.num_sequences, "sequence")
        picked = (
            [self._sequences[i] for i in range(*sel.indices(self.num_sequences))]
            if isinstance(sel, slice)
            else [self._sequences[int(i)] for i in sel]
        )
        if not picked:
            raise IndexError("the index selects no sequence")
        rest = indices[1:]
        names = list(self._channel_names)
        user = self._acquisition_user
        if rest:
            shape = picked[0].shape
            picked = [s[rest] for s in picked]
            if len(rest) == 5:
                c = normalize_axis_index(rest[4], self.frame_shape[3], "c")
                idx = range(*c.indices(len(names))) if isinstance(c, slice) else c
                names = [names[int(i)] for i in idx]
            user = index_metadata(user, picked[0].indices, shape)
        result = ImagingDataset(picked, None, channel_names=names)
        result._acquisition_user = user
        return result

    def _channel(self, channel: Any) -> int:
        return resolve_channel(channel, self._channel_names)

    def _resolve_channel(self, chan: Any) -> int | None:
        """Return the index of a channel given by index or name (SIMA's helper).

        SIMA's scripts call this method (``examples/extraction.py``); it has
        SIMA's semantics: None stays None, anything else goes through
        :func:`sima_fast._validate.resolve_channel`.

        Parameters
        ----------
        chan : int, str or None
            A channel index (negative counts from the end), a channel name,
            or None.

        Returns
        -------
        int or None
            The non-negative channel index, or None for None.

        Raises
        ------
        ValueError
            If there is no such channel (the message lists the names).
        sima_fast._validate.ArgumentTypeError
            If ``chan`` is neither None, an integer nor a string (also a
            ``ValueError``, as SIMA's scripts expect).

        Examples
        --------
        >>> import numpy as np
        >>> ds = ImagingDataset([Sequence.create('ndarray', np.zeros((2, 1, 2, 2, 2)))], None,
        ...                     channel_names=['green', 'red'])
        >>> ds._resolve_channel('red'), ds._resolve_channel(0), ds._resolve_channel(None)
        (1, 0, None)
        """
        if chan is None:
            return None
        return resolve_channel(chan, self._channel_names)

    # -- projections -----------------------------------------------------------

    _PROJECTIONS = ("time_averages", "time_std", "time_kurtosis")

    def _ensure_projections(
        self, progress: bool = False, client: Any = None
    ) -> dict[str, np.ndarray]:
        """Load the cached projections, or compute all three in one pass and cache them."""
        if all(k in self._projections for k in self._PROJECTIONS):
            return self._projections
        if self._savedir is not None and self._meta is not None:
            cached = storage.read_projections(self._savedir, self._meta["sequences_id"])
            if all(k in cached for k in self._PROJECTIONS):
                self._projections.update(cached)
                return self._projections
        from sima_fast import _projections

        if client is None:
            result = _projections.projections(self._sequences, progress=progress)
        else:
            from sima_fast import distributed

            result = distributed.projections(self._sequences, client, progress=progress)
        if self._legacy:  # SIMA's cached mean and std are kept as SIMA stored them
            result.update(self._projections)
        self._projections.update(result)
        if (
            self._savedir is not None
            and self._meta is not None
            and not self._read_only
            and not self._legacy
        ):
            storage.write_projections(self._savedir, self._meta["sequences_id"], self._projections)
        return self._projections

    def _projection(self, name: str) -> np.ndarray:
        return self._ensure_projections()[name]

    def compute_projections(
        self, client: Any = None, progress: bool = False
    ) -> dict[str, np.ndarray]:
        """Compute (or load) the three time projections, optionally on a Dask cluster.

        :attr:`time_averages`, :attr:`time_std` and :attr:`time_kurtosis` are
        properties, as in SIMA, so they cannot take arguments: they compute
        on this machine the first time one of them is read. Call this method
        first to choose where the single pass runs; the result is cached (in
        memory and in the dataset directory), so the properties then return
        it at once.

        Parameters
        ----------
        client : dask.distributed.Client, optional
            Run the pass on this cluster: each worker folds a time range into
            a moment state with the same kernel, and the states are merged
            exactly (see :mod:`sima_fast.distributed`); the results equal the
            single-machine ones within 1e-12 relative. Default: this machine.
        progress : bool, optional
            Show a progress bar (Dask's own with a client).

        Returns
        -------
        dict
            ``time_averages``, ``time_std`` and ``time_kurtosis``, each
            ``(Z, Y, X, C)`` float64 (the arrays the properties return).

        Examples
        --------
        >>> import numpy as np
        >>> from sima_fast import ImagingDataset, Sequence
        >>> data = np.arange(8.0).reshape(4, 1, 1, 2, 1)
        >>> ds = ImagingDataset([Sequence.create('ndarray', data)], None)
        >>> ds.compute_projections()['time_averages'].ravel()
        array([3., 4.])
        >>> ds.time_averages is ds.compute_projections()['time_averages']
        True
        """
        progress = check_bool("progress", progress)
        projections = self._ensure_projections(progress=progress, client=client)
        return {name: projections[name] for name in self._PROJECTIONS}

    @property
    def time_averages(self) -> np.ndarray:
        """Per-pixel mean over all finite values of all frames, ``(Z, Y, X, C)``.

        Pixels never observed (always NaN) are NaN. Computed once, in the same
        streaming pass as :attr:`time_std` and :attr:`time_kurtosis`, and cached
        in the dataset directory.
        """
        return self._projection("time_averages")

    @property
    def time_std(self) -> np.ndarray:
        """Per-pixel population standard deviation (ddof 0), ``(Z, Y, X, C)``."""
        return self._projection("time_std")

    @property
    def time_kurtosis(self) -> np.ndarray:
        """Per-pixel Pearson kurtosis ``m4 / m2**2``, ``(Z, Y, X, C)``.

        Unlike SIMA 1.3.2 (which stored the raw fourth central moment under
        this name) this is the kurtosis; constant pixels give NaN.
        """
        return self._projection("time_kurtosis")

    # -- exports -------------------------------------------------------------------

    def export_averages(
        self,
        filenames: Any,
        fmt: str = "TIFF16",
        scale_values: bool = True,
        projection_type: str = "average",
    ) -> None:
        """Save a time projection of every channel as TIFF or HDF5.

        Parameters
        ----------
        filenames : str or list of str
            For ``'TIFF8'``/``'TIFF16'``: one path per channel; each file has
            one page per plane. For ``'HDF5'``: a single path.
        fmt : str, optional
            Output format: a name registered in
            :data:`sima_fast.io.averages_writers`; built in: ``'TIFF16'``,
            ``'TIFF8'``, ``'HDF5'``. Default: 16-bit TIFF.
        scale_values : bool, optional
            Stretch values to the full range of the output type:
            ``v * (2**bits - 1) / nanmax(v)``, per channel for TIFF, one
            factor over all channels for HDF5. Default: True.
        projection_type : {'average', 'std', 'kurtosis'}, optional
            Which projection to save (:attr:`time_averages`,
            :attr:`time_std` or :attr:`time_kurtosis`). Default: 'average'.

        Notes
        -----
        Values are converted to unsigned integers by clipping to the type's
        range and truncating; NaN becomes 0. The HDF5 file holds a uint16
        dataset ``time_average``, ``time_std`` or ``time_kurtosis`` shaped
        ``(Z, Y, X, C)`` with dimension labels z, y, x, c and an attribute
        ``channel_names``. Outputs are written atomically.

        Raises
        ------
        ValueError
            Unknown ``fmt`` or ``projection_type``, ``filenames`` not of the
            expected form, or an output path that a sequence of the dataset
            reads or that is a file of the dataset's directory.
        OSError
            An output directory that cannot be created or written.
        """
        from sima_fast.io import averages_writers
        from sima_fast.io._export import PROJECTION_TYPES, refuse_dataset_files

        scale_values = check_bool("scale_values", scale_values)
        writer = averages_writers.lookup(fmt)
        if projection_type not in PROJECTION_TYPES:
            raise ValueError(
                f"projection_type must be one of {list(PROJECTION_TYPES)}, got {projection_type!r}"
            )
        refuse_dataset_files(self, filenames, "filenames")
        writer(self, filenames, scale_values=scale_values, projection_type=projection_type)

    def export_frames(
        self,
        filenames: Any,
        fmt: str = "TIFF16",
        fill_gaps: bool = True,
        scale_values: bool = False,
        compression: str | None = None,
        client: Any = None,
    ) -> None:
        """Save every frame of every sequence as TIFF or HDF5, streaming.

        Parameters
        ----------
        filenames : nested list of str
            For TIFF, ``filenames[i][j][k]`` is the file of sequence i, plane
            j, channel k (one page per frame). For ``'HDF5'``, ``filenames[i]``
            is the file of sequence i.
        fmt : str, optional
            Output format: a name registered in
            :data:`sima_fast.io.frames_writers`; built in: ``'TIFF16'``,
            ``'TIFF8'``, ``'HDF5'``. Default: 16-bit TIFF.
        fill_gaps : bool, optional
            Replace NaN values (pixels not observed in a frame, e.g. after
            motion correction) by the pixel's nearest observation, as
            :meth:`Sequence.fill_gaps` defines. Default: True.
        scale_values : bool, optional
            Stretch each channel by ``(2**bits - 1) / max`` over the whole
            dataset (16 bits for HDF5). Default: False.
        compression : {None, 'gzip', 'lzf', 'szip'}, optional
            Lossless HDF5 compression filter (ignored for TIFF).
        client : dask.distributed.Client, optional
            Read, gap-fill and convert the frames on this Dask cluster, time
            range by time range, while this process writes the files in
            order (the output is identical). Default: this machine.

        Notes
        -----
        HDF5 files hold a float32 dataset ``imaging`` shaped
        ``(T, Z, Y, X, C)`` with dimension labels t, z, y, x, c and an
        attribute ``channel_names``, and, when the sequence's acquisition
        metadata is known, the JSON attribute ``acquisition_metadata`` (read
        back by ``Sequence.create('HDF5', ...)``). TIFF files with a known
        frame rate or pixel size are ImageJ stacks carrying the frame interval
        and the pixel size in µm. A view's values are written (``ds[:, ::2]``
        has half the frame rate). TIFF values are clipped to the type's
        range and truncated; NaN becomes 0. Memory does not grow with the
        number of frames; a progress bar shows on terminals. All outputs are
        written atomically: a failure leaves none behind.

        Raises
        ------
        ValueError
            Unknown ``fmt`` or ``compression``, ``filenames`` not nested as
            described, or an output path that a sequence of the dataset reads
            or that is a file of the dataset's directory.
        OSError
            An output directory that cannot be created or written.
        """
        from sima_fast.io import frames_writers
        from sima_fast.io._export import COMPRESSIONS, refuse_dataset_files

        fill_gaps = check_bool("fill_gaps", fill_gaps)
        scale_values = check_bool("scale_values", scale_values)
        writer = frames_writers.lookup(fmt)
        if compression not in COMPRESSIONS:
            raise ValueError(
                f"compression must be one of {list(COMPRESSIONS)}, got {compression!r}"
            )
        refuse_dataset_files(self, filenames, "filenames")
        writer(
            self,
            filenames,
            fill_gaps=fill_gaps,
            scale_values=scale_values,
            compression=compression,
            client=client,
        )

    # -- ROIs --------------------------------------------------------------------

    @property
    def ROIs(self) -> dict[str, Any]:
        """The saved ROI sets, ``{label: ROIList}`` (``{}`` when there are none)."""
        if self._savedir is None:
            return dict(self._mem_rois)
        if self._legacy:
            return storage.legacy_roi_labels(self._savedir)
        from sima_fast.io.native import read_roilist_group

        return storage.read_h5_groups(
            os.path.join(self._savedir, storage.ROIS_FILE), read_roilist_group
        )

    @staticmethod
    def _write_rois(directory: str, rois: dict[str, Any], lock: bool = True) -> None:
        from sima_fast.io.native import write_roilist_group

        storage.rewrite_h5_groups(
            os.path.join(directory, storage.ROIS_FILE),
            {
                label: (lambda g, r=roilist: write_roilist_group(g, r))
                for label, roilist in rois.items()
            },
            operation="add_ROIs",
            lock=lock,
        )

    def add_ROIs(self, ROIs: Any, label: str | None = None) -> None:
        """Store a set of ROIs with the dataset.

        Parameters
        ----------
        ROIs : sima_fast.ROI.ROIList
            The regions of interest. Every ROI gets the dataset's
            ``(Z, Y, X)`` as ``im_shape`` (a mask drawn on another frame size
            is zero-padded or cropped, as in SIMA). A mask ROI with non-zero
            weight outside the frames is refused (as :meth:`extract` refuses
            it), never cropped; all-zero margins are fine.
        label : str, optional
            Name of the set (default: the current timestamp). An existing set
            of that name is replaced.

        Examples
        --------
        >>> from sima_fast.ROI import ROIList
        >>> from sima_fast.misc import example_imagej_rois, example_data
        >>> from sima_fast.imaging import ImagingDataset
        >>> dataset = ImagingDataset.load(example_data())
        >>> rois = ROIList.load(example_imagej_rois(), fmt='ImageJ')
        >>> dataset.add_ROIs(rois, 'from_ImageJ')
        """
        from sima_fast.ROI import ROIList, check_mask_in_frame

        if not isinstance(ROIs, ROIList):
            raise TypeError(f"ROIs must be a sima_fast.ROI.ROIList, got {type(ROIs).__name__}")
        label = current_timestamp() if label is None else check_label("label", label)
        im_shape = self.frame_shape[:3]
        for i, roi in enumerate(ROIs):
            name = f"ROIs[{i}]" + (f" (label {roi.label!r})" if roi.label is not None else "")
            check_mask_in_frame(roi, im_shape, name)
            if roi.im_shape != im_shape:  # drawn on another frame size: padded/cropped
                roi.im_shape = im_shape
        if self._savedir is None:
            self._mem_rois[label] = ROIs
            return
        self._check_writable()
        self._write_rois(self._savedir, {label: ROIs})

    def delete_ROIs(self, label: str) -> None:
        """Remove the ROI set ``label`` (the ROI file is removed when no set is left).

        Parameters
        ----------
        label : str
            The label of the set to remove.

        Warns
        -----
        UserWarning
            If there is no set of that label: nothing is removed (SIMA ignored
            such a call silently; the warning names the labels there are).

        Raises
        ------
        PermissionError
            If the dataset was opened ``read_only`` or is a SIMA 1.x directory.
        """
        labels = list(self.ROIs)
        label = check_label("label", label, existing=labels)
        if label not in labels:
            warn(
                f"delete_ROIs: no ROI set labelled {label!r}, nothing removed; "
                f"available: {labels}",
                UserWarning,
            )
            return
        if self._savedir is None:
            del self._mem_rois[label]
            return
        self._check_writable()
        # Under the lock: if another process removed the set meanwhile, this is a no-op.
        storage.rewrite_h5_groups(
            os.path.join(self._savedir, storage.ROIS_FILE), {label: None}, "delete_ROIs"
        )

    def import_transformed_ROIs(
        self,
        source_dataset: ImagingDataset,
        method: str = "affine",
        source_channel: Any = 0,
        target_channel: Any = 0,
        source_label: str | None = None,
        target_label: str | None = None,
        anchor_label: str | None = None,
        copy_properties: bool = True,
        pre_processing_method: str | None = None,
        pre_processing_kwargs: dict[str, Any] | None = None,
        **method_kwargs: Any,
    ) -> Any:
        """Map another dataset's ROIs onto this one and store them (docs/contract.md#roi-import).

        The per-plane transform from ``source_dataset`` to this dataset comes
        from anchor ROIs (``anchor_label``: the first ROI of that label in each
        dataset gives matching points) or, without anchors, from registering
        the two datasets' time-average images (rotation, scale, shear and
        translation, to sub-pixel accuracy). The source ROIs are transformed,
        clipped to this dataset's frame and added under ``target_label``.

        Parameters
        ----------
        source_dataset : ImagingDataset
            The dataset whose ROIs are imported; roughly the same field of view.
        method : str, optional
            Transform model: ``'affine'`` (default), ``'similarity'``,
            ``'euclidean'``, ``'projective'``, ``'polynomial'`` (with
            ``order=``) or ``'piecewise-affine'``.
        source_channel, target_channel : int or str, optional
            Channels whose time averages are registered.
        source_label : str, optional
            The source ROI set (default: its most recent set other than the anchors).
        target_label : str, optional
            Label of the imported set here (default: a timestamp).
        anchor_label : str, optional
            ROI set with one anchor polygon per plane in both datasets; None
            registers the images instead.
        copy_properties : bool, optional
            Keep each ROI's label, id and tags.
        pre_processing_method : str, optional
            Applied to both images before registration: ``'equalize_hist'``,
            ``'equalize_adapthist'`` or ``'gaussian'``.
        pre_processing_kwargs : dict, optional
            Keyword arguments of the pre-processing.
        **method_kwargs
            Passed to the transform estimation (for example ``order``).

        Returns
        -------
        sima_fast.ROI.ROIList
            The imported ROIs, as stored.

        See Also
        --------
        sima_fast.transform_rois.import_transformed_rois : the computation.
        """
        from sima_fast.transform_rois import import_transformed_rois

        if self._savedir is not None:
            self._check_writable()
        rois = import_transformed_rois(
            self,
            source_dataset,
            method=method,
            source_channel=source_channel,
            target_channel=target_channel,
            source_label=source_label,
            target_label=target_label,
            anchor_label=anchor_label,
            copy_properties=copy_properties,
            pre_processing_method=pre_processing_method,
            pre_processing_kwargs=pre_processing_kwargs,
            **method_kwargs,
        )
        self.add_ROIs(rois, target_label)
        return rois

    def segment(self, strategy: Any, label: str | None = None, planes: Any = None) -> Any:
        """Find ROIs with a segmentation strategy and store them.

        Parameters
        ----------
        strategy : sima_fast.segment.SegmentationStrategy
            The strategy (with its post-processing steps appended); any
            object with a ``segment(dataset, planes=...)`` method that
            returns ROIs is accepted.
        label : str, optional
            Label under which the ROIs are stored (default: a timestamp).
        planes : int or list of int, optional
            Restrict segmentation to these planes (SIMA ignored this argument).

        Returns
        -------
        sima_fast.ROI.ROIList
            The segmented ROIs, also stored under ``label``.
        """
        if isinstance(strategy, type) or not callable(getattr(strategy, "segment", None)):
            raise TypeError(
                "strategy must be a sima_fast.segment.SegmentationStrategy (an object with a "
                f"segment(dataset, planes=...) method), got {type(strategy).__name__}"
            )
        if label is not None:
            label = check_label("label", label)
        rois = strategy.segment(self, planes=planes)
        self.add_ROIs(rois, label)
        return rois

    # -- extraction ---------------------------------------------------------------

    def extract(
        self,
        rois: Any = None,
        signal_channel: Any = 0,
        label: str | None = None,
        remove_overlap: bool = True,
        n_processes: int = 1,
        demix_channel: Any = None,
        save_summary: bool = True,
        client: Any = None,
        progress: bool = False,
        neuropil: Any = None,
    ) -> dict[str, Any]:
        """Extract a signal per ROI and frame from the imaging data.

        The value of ROI i in frame t is ``Σ_p w_ip F_p(t) / μ_p``: a
        weighted mean of the signal channel normalised by its time average
        ``μ`` (a boolean ROI at rest reads about 1). Boolean masks are
        normalised to weights summing to 1, weighted masks are used as given.
        Pixels that are NaN in a frame are left out and the remaining weights
        rescaled by ``Σ_all w² / Σ_finite w²``; an ROI with no finite pixel in
        a frame gives NaN, an empty ROI an all-NaN row (with a warning).

        Parameters
        ----------
        rois : sima_fast.ROI.ROIList, optional
            The ROIs. Default: the most recently added ROI set.
        signal_channel : int or str, optional
            Channel to extract. Default: 0.
        label : str, optional
            Label under which the signals are stored (default: the timestamp).
        remove_overlap : bool, optional
            Remove pixels shared by several ROIs from all of them (default).
            With False, overlapping ROIs are separated by the pseudo-inverse
            of the mask matrix (restricted to the finite pixels of each frame).
        n_processes : int, optional
            Number of kernel threads (results do not depend on it). Default: 1.
        demix_channel : int or str, optional
            A channel whose bleed-through into the signal channel is removed
            first: a 2×2 unmixing matrix is estimated by FastICA on the two
            channels' time-average images, and ``F_s + W[s, d] F_d`` is
            extracted into ``demixed_raw``.
        save_summary : bool, optional
            With a dataset directory, also write ``extractSummary_<timestamp>.pdf``
            showing each plane's mean frame, the masks and the overlapping
            pixels (needs matplotlib). Default: True.
        client : dask.distributed.Client, optional
            Extract on this Dask cluster: the weights are scattered once to
            every worker and each task extracts a time range with the same
            kernel (the time average is computed there too when not cached,
            see :meth:`compute_projections`). The signals are bit-identical
            to the single-machine ones; ``n_processes`` is then unused.
            Default: this machine.
        progress : bool, optional
            Show progress bars over the frames on terminals (the time average
            when it is not cached, then the extraction). Default: False; on a
            cluster, see :func:`sima_fast.distributed.report_progress`.
        neuropil : None, bool, dict or sima_fast.extract.NeuropilOptions, optional
            Neuropil correction (docs/contract.md#neuropil). None or False
            (default): none, the record is exactly as without this argument.
            True: suite2p's defaults (surround from 2 px off the ROI, grown
            to at least 350 pixels, r = 0.7); a dict or
            :class:`~sima_fast.extract.NeuropilOptions` for others. Each ROI's
            surround (its planes' pixels beyond ``inner_radius`` from it,
            without any ROI's pixels) is extracted in the same pass as the
            ROIs, NaN-aware, as ``neuropil_i(t) = (Σ_p w_ip / μ_p) · mean of
            F over the surround's finite pixels``: what the ROI would read if
            every one of its pixels showed the surround's mean fluorescence.
            So ``corrected = raw - r · neuropil = Σ_p w_ip (F_p - r F_neu) / μ_p``
            is suite2p's ``F - r·Fneu`` normalised the same way as ``raw``,
            and ``r`` keeps suite2p's meaning. ``coefficient='estimate'``
            fits ``r`` per ROI
            (:func:`~sima_fast.extract.estimate_neuropil_coefficient`).

        Returns
        -------
        dict
            ``raw`` (list over sequences of ``(n_rois, T_k)`` float32),
            ``demixed_raw`` (with demixing), ``neuropil``, ``corrected`` (same
            layout) and ``neuropil_params`` (with neuropil: ``inner_radius``,
            ``outer_radius`` and ``n_pixels`` per ROI, ``min_pixels``,
            ``exclude_rois``, ``coefficient`` per ROI, ``estimated``; with
            demixing too, ``demixed_neuropil`` and ``demixed_corrected``),
            ``mean_frame`` ``(Z, Y, X)``,
            ``overlap`` (``(zeros, flat pixel indices)``), ``signal_channel``,
            ``rois`` (ROI dicts in row order) and ``timestamp``. With a
            dataset directory the record is stored under ``label``.

        Raises
        ------
        ValueError
            No ROIs, ROIs with non-zero weight outside the frames, a NaN or
            infinite mask weight (the error names the ROI by index and
            label), an unknown channel, ``n_processes < 1``, bad neuropil
            options (negative radii, ``outer_radius <= inner_radius``,
            ``min_pixels < 1``, a coefficient outside ``[0, 1]``) or an ROI
            whose neuropil surround has no pixel (named).
        sima_fast._validate.ArgumentTypeError
            An argument of the wrong type (e.g. ``neuropil='yes'``).
        KeyError
            ``rois`` is None and the dataset has no ROI set.
        """
        from sima_fast.extract import (
            NeuropilOptions,
            extract_rois,
            roi_mask_matrix,
            save_extract_summary,
        )
        from sima_fast.ROI import ROIList

        n_processes = check_int("n_processes", n_processes, low=1)
        remove_overlap = check_bool("remove_overlap", remove_overlap)
        save_summary = check_bool("save_summary", save_summary)
        progress = check_bool("progress", progress)
        neuropil = NeuropilOptions.resolve(neuropil)
        channel = resolve_channel(signal_channel, self._channel_names, "signal_channel")
        demix = (
            None
            if demix_channel is None
            else resolve_channel(demix_channel, self._channel_names, "demix_channel")
        )
        if demix is not None and demix == channel:
            raise ValueError("demix_channel must differ from signal_channel")
        if rois is None:
            sets = self.ROIs
            if not sets:
                raise KeyError("the dataset has no ROI set; pass rois or add_ROIs() first")
            rois = sets[most_recent({k: v.timestamp for k, v in sets.items()})]
        if not isinstance(rois, (ROIList, list, tuple)):
            raise TypeError(f"rois must be a ROIList, got {type(rois).__name__}")
        if label is not None:
            label = check_label("label", label)
        if self._savedir is not None:
            self._check_writable()
        if client is None:
            record = extract_rois(
                self,
                rois,
                channel,
                remove_overlap,
                int(n_processes),
                demix,
                progress=progress,
                neuropil=neuropil,
            )
        else:
            from sima_fast import distributed

            record = distributed.extract_rois(
                self, rois, channel, remove_overlap, demix, client, neuropil=neuropil
            )
        if self._savedir is not None:
            self._store_signals(channel, label or record["timestamp"], record, "extract")
            if save_summary:
                path = os.path.join(self._savedir, f"extractSummary_{record['timestamp']}.pdf")
                save_extract_summary(
                    record,
                    path,
                    roi_mask_matrix(rois, self.frame_shape[:3]),
                    label=label or record["timestamp"],
                )
        return record

    # -- signals ------------------------------------------------------------------

    def _read_signals(self, channel: int) -> dict[str, Any]:
        if self._savedir is None:
            return dict(self._mem_signals.get(channel, {}))
        if self._legacy:
            return storage.legacy_signals(self._savedir, channel)
        return storage.read_h5_groups(
            os.path.join(self._savedir, storage.signals_file(channel)), storage.read_tree
        )

    @staticmethod
    def _write_signals(
        directory: str,
        channel: int,
        signals: dict[str, Any],
        operation: str = "store signals",
        lock: bool = True,
    ) -> None:
        storage.rewrite_h5_groups(
            os.path.join(directory, storage.signals_file(channel)),
            {
                label: (lambda g, v=value: storage.write_tree(g, v))
                for label, value in signals.items()
            },
            operation=operation,
            lock=lock,
        )

    def _store_signals(
        self, channel: int, label: str, signals: dict[str, Any], operation: str = "store signals"
    ) -> None:
        """Store (or replace) one labelled signals record for a channel index.

        Other labels of the channel's file are kept, whatever other processes
        stored meanwhile (the file is rewritten under the directory's lock);
        the same label stored by two writers keeps the last one.
        """
        if self._savedir is None:
            self._mem_signals.setdefault(channel, {})[label] = signals
            return
        self._check_writable()
        self._write_signals(self._savedir, channel, {label: signals}, operation)

    def signals(self, channel: Any = 0) -> dict[str, dict[str, Any]]:
        """Return the extracted signals of a channel, ``{label: signals record}``.

        Parameters
        ----------
        channel : int or str, optional
            Channel index or name. Default: 0.

        Returns
        -------
        dict of str to dict
            Every stored extraction of the channel, by label: the record
            :meth:`extract` returned, with SIMA's keys ``spikes``,
            ``spikes_fits`` and ``spikes_params`` once :meth:`infer_spikes`
            has run on it (``fits`` is the same array as ``spikes_fits``, the
            name earlier sima_fast versions stored). Empty when nothing was
            extracted.

        Raises
        ------
        ValueError
            If the channel does not exist.
        """
        return {
            label: storage.with_fits_alias(record)
            for label, record in self._read_signals(self._channel(channel)).items()
        }

    def export_signals(
        self,
        path: str | os.PathLike,
        fmt: str = "csv",
        channel: Any = 0,
        signals_label: str | None = None,
    ) -> None:
        """Write extracted signals to a file (by default tab-separated text).

        Parameters
        ----------
        path : str or path-like
            The output file (written atomically).
        fmt : str, optional
            The format: a name registered in
            :data:`sima_fast.io.signals_writers`; built in: ``'csv'``
            (tab-separated values). Default: 'csv'.
        channel : int or str, optional
            The channel whose signals to export. Default: 0.
        signals_label : str, optional
            Which extraction to export. Default: the most recent one.

        Notes
        -----
        In ``'csv'`` files, three header rows give, per column, the ROI id,
        label and sorted tags (joined by commas); every following row is one
        frame: the sequence index, the frame index within the sequence, then
        one value per ROI. An extraction with neuropil
        (``extract(neuropil=...)``) has three blocks of ROI columns, raw,
        neuropil then corrected, and a fourth header row naming each
        column's block (docs/contract.md#csv-layout).
        """
        from sima_fast.io import signals_writers
        from sima_fast.io._export import refuse_dataset_files

        if not isinstance(path, (str, os.PathLike)):
            raise ArgumentTypeError(f"path must be a str or os.PathLike, got {path!r}")
        if signals_label is not None and not isinstance(signals_label, str):
            raise ArgumentTypeError(f"signals_label must be a str or None, got {signals_label!r}")
        writer = signals_writers.lookup(fmt)
        refuse_dataset_files(self, path, "path")
        all_signals = self.signals(channel)
        if not all_signals:
            raise ValueError(f"channel {channel!r} has no extracted signals; run extract() first")
        label = signals_label if signals_label is not None else _most_recent_signals(all_signals)
        if label not in all_signals:
            raise KeyError(
                f"signals_label: no signals labelled {label!r}; available: {sorted(all_signals)}"
            )
        writer(path, all_signals[label])

    def export_suite2p(
        self,
        folder: str | os.PathLike,
        *,
        rois_label: str | None = None,
        signals_label: str | None = None,
        channel: Any = 0,
        overwrite: bool = False,
        fs: float | None = None,
    ) -> str:
        """Write an extraction as a suite2p output folder, ``folder/suite2p/plane<k>/``.

        One ``plane<k>`` folder per plane holds ``stat.npy`` (each ROI's
        pixels, weights and suite2p's shape and activity statistics, computed
        from the masks and traces), ``F.npy`` (the ``raw`` signals, sequences
        joined in time), ``Fneu.npy`` (the ``neuropil`` signals, or zeros
        when none were extracted), ``spks.npy`` (``infer_spikes``' spikes, or
        zeros), ``iscell.npy`` (every ROI a cell), and ``ops.npy`` (also as
        suite2p 1.x's ``db.npy`` and ``settings.npy``) with the frame size,
        rate and the mean, enhanced mean, maximum and local correlation
        images. suite2p's GUI and roiextractors open it; see docs/suite2p.md.

        Parameters
        ----------
        folder : str or path-like
            The directory ``suite2p/`` is written in, all at once (staged,
            then renamed into place); created with its parents when missing,
            once the export is known to be valid.
        rois_label : str, optional
            The ROI set whose traces to export: the most recent extraction of
            exactly these ROIs (or ``signals_label``'s, which must be of
            these ROIs). Default: the ROIs of the chosen extraction.
        signals_label : str, optional
            Which extraction to export. Default: the most recent one (of
            ``rois_label``'s ROIs when given).
        channel : int or str, optional
            The channel whose signals and images to export. Default: 0.
        overwrite : bool, optional
            Replace an existing ``folder/suite2p``. Default: False.
        fs : float, optional
            Frames per second for ``ops['fs']``. Default: the acquisition
            metadata's frame rate when known, else suite2p's default of 10
            (with a warning).

        Returns
        -------
        str
            The path of the ``suite2p`` folder.

        Raises
        ------
        ArgumentTypeError
            If an argument has the wrong type.
        ValueError
            If the channel has no extraction (run :meth:`extract` first), the
            extraction is not of ``rois_label``'s ROIs, or an ROI is empty or
            spans several planes.
        KeyError
            If ``signals_label`` or ``rois_label`` names nothing.
        NotADirectoryError
            If ``folder`` exists and is not a directory.
        FileExistsError
            If ``folder/suite2p`` exists and ``overwrite`` is False.
        """
        from sima_fast.io.suite2p import same_rois, write_suite2p

        if not isinstance(folder, (str, os.PathLike)):
            raise ArgumentTypeError(f"folder must be a str or os.PathLike, got {folder!r}")
        for name, value in (("rois_label", rois_label), ("signals_label", signals_label)):
            if value is not None and not isinstance(value, str):
                raise ArgumentTypeError(f"{name} must be a str or None, got {value!r}")
        overwrite = check_bool("overwrite", overwrite)
        index = self._channel(channel)
        all_signals = self.signals(index)
        if not all_signals:
            raise ValueError(f"channel {channel!r} has no extracted signals; run extract() first")
        if signals_label is not None and signals_label not in all_signals:
            raise KeyError(
                f"signals_label: no signals labelled {signals_label!r}; "
                f"available: {sorted(all_signals)}"
            )
        if rois_label is None:
            label = signals_label or _most_recent_signals(all_signals)
        else:
            rois = self.ROIs
            if rois_label not in rois:
                raise KeyError(
                    f"rois_label: no ROI set labelled {rois_label!r}; available: {sorted(rois)}"
                )
            names = [signals_label] if signals_label is not None else list(all_signals)
            same = {
                k: all_signals[k]
                for k in names
                if same_rois(
                    all_signals[k].get("rois", []), rois[rois_label], self.frame_shape[:3]
                )
            }
            if not same:
                which = (
                    f"the extraction {signals_label!r} was not made"
                    if signals_label is not None
                    else "no extraction of this channel was made"
                )
                raise ValueError(
                    f"rois_label: {which} from the ROI set {rois_label!r}; extract it first"
                )
            label = _most_recent_signals(same)
        return write_suite2p(
            self,
            folder,
            all_signals[label],
            channel=index,
            signals_label=label,
            overwrite=overwrite,
            fs=fs,
        )

    def export_nwb(
        self,
        path: str | os.PathLike,
        *,
        metadata: Any = None,
        rois_label: str | None = None,
        signals_label: str | None = None,
        channel: Any = 0,
        frames: Any = False,
        spikes: bool = True,
        projections: bool = True,
        masks: str = "auto",
        epochs: bool = True,
        overwrite: bool = False,
        inspect: bool = False,
        compression: str | None = "gzip",
    ) -> Any:
        """Write the dataset as a Neurodata Without Borders (NWB) file.

        The standard optical-physiology layout (docs/nwb.md): Device,
        OpticalChannel and ImagingPlane; optionally a TwoPhotonSeries of the
        frames per sequence; in the ``ophys`` processing module the ROIs
        (ImageSegmentation/PlaneSegmentation), the traces (Fluorescence:
        ``raw`` and, when present, demixed, neuropil, neuropil-corrected,
        spikes and their fits), the spike inference parameters, and the
        mean/std/kurtosis images; an epoch per sequence when there are
        several. Needs the ``nwb`` extra (``pip install "sima_fast[nwb]"``).

        Parameters
        ----------
        path : str or os.PathLike
            The ``.nwb`` file. Written to a temporary file beside it, then
            renamed into place.
        metadata : dict, str or os.PathLike
            The NWB metadata, or a YAML/JSON file of it. Required:
            ``session_description``, ``session_start_time`` (timezone-aware),
            ``subject`` (``subject_id``, ``species``, ``sex``, ``age``) and
            ``imaging_plane`` (``excitation_lambda``, ``indicator``,
            ``location``, ``imaging_rate`` unless the dataset's acquisition
            metadata gives the frame rate, ``optical_channel.emission_lambda``).
        rois_label : str, optional
            The ROI set to write (default: the ROIs of the exported signals,
            else the most recent ROI set).
        signals_label : str, optional
            The extraction to write (default: the most recent of ``channel``).
        channel : int or str, optional
            The channel whose signals and images are written. Default: 0.
        frames : {False, True, 'link'}, optional
            Write the frames: copied in compressed chunks (True; every
            channel, one series each, see docs/nwb.md), or linked to the
            sequences' own TIFF or HDF5 files (``'link'``). Default: False.
        spikes : bool, optional
            Write the inferred spikes and their parameters when present.
        projections : bool, optional
            Write the mean, std and kurtosis images (computed if needed).
        masks : {'auto', 'image', 'pixel'}, optional
            ``image_mask`` or ``pixel_mask`` for single-plane ROIs (volumes
            use ``voxel_mask``); ``'auto'`` chooses image masks up to 64 MiB.
        epochs : bool, optional
            With several sequences, one ``epochs`` row per sequence. Default:
            True.
        overwrite : bool, optional
            Replace an existing file. Default: False.
        inspect : bool, optional
            Run nwbinspector on the written file and return its verdict.
        compression : {'gzip', 'lzf', None}, optional
            HDF5 compression of frames and traces. Default: 'gzip'.

        Returns
        -------
        str or sima_fast.io.nwb.NWBVerdict
            The file's absolute path; with ``inspect=True`` the verdict
            (``.ok``, ``.messages``, ``.summary()``, ``.path``).

        Raises
        ------
        sima_fast.io.nwb.NWBMetadataError
            Required metadata is missing (all missing fields are named) or
            malformed (a ValueError).
        FileExistsError
            ``path`` exists and ``overwrite`` is False.
        ValueError
            ``path`` is a file this dataset reads, or a bad option.
        KeyError
            Unknown ``rois_label`` or ``signals_label``.
        ImportError
            pynwb is not installed.
        """
        from sima_fast.io.nwb import export_nwb

        return export_nwb(
            self,
            path,
            metadata=metadata,
            rois_label=rois_label,
            signals_label=signals_label,
            channel=channel,
            frames=frames,
            spikes=spikes,
            projections=projections,
            masks=masks,
            epochs=epochs,
            overwrite=overwrite,
            inspect=inspect,
            compression=compression,
        )

    # -- spike inference ------------------------------------------------------------

    def infer_spikes(
        self,
        channel: Any = 0,
        label: str | None = None,
        gamma: float | None = None,
        share_gamma: bool = True,
        mode: str = "correct",
        verbose: bool = False,
        client: Any = None,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[dict[str, np.ndarray]]]:
        """Infer spike trains from the ``raw`` signals of an extraction.

        Each ROI trace is modelled as ``b + c + noise`` with AR(1) calcium
        ``c_t = γ c_{t-1} + s_t``; the spikes ``s >= 0`` are the sparsest ones
        (smallest sum) whose fit leaves a residual norm of ``σ √T`` over the
        observed samples (docs/contract.md#the-optimisation-problem). ``γ`` and
        ``σ`` are estimated per ROI from all its sequences; see
        :mod:`sima_fast.spikes`.

        Parameters
        ----------
        channel : int or str, optional
            The channel whose signals to use. Default: 0.
        label : str, optional
            Which extraction. Default: the most recent one.
        gamma : float, optional
            Decay factor in ``(0, 1)`` for every ROI; estimated if None.
        share_gamma : bool, optional
            With an estimated ``gamma``, give every ROI the median estimate.
        mode : {'correct', 'robust', 'psd'}, optional
            Noise estimation method.
        verbose : bool, optional
            Print one progress line per sequence.
        client : dask.distributed.Client, optional
            Deconvolve blocks of ROIs on this Dask cluster (the parameters
            are estimated here first, from all ROIs). The results are
            identical to the single-machine ones. Default: this machine.

        Returns
        -------
        spikes : list of ndarray
            Per sequence, ``(n_rois, T_k)`` spikes, each ROI's row divided by
            its maximum (all-zero rows stay zero).
        fits : list of ndarray
            Per sequence, the denoised fluorescence ``b + c``.
        parameters : list of dict
            Per sequence, per-ROI arrays ``sigma``, ``gamma``, ``baseline``,
            ``lambda``, ``status`` and ``solver`` (which solver produced
            each answer: ``'fast'`` or ``'osqp'``).

        The three are also stored in the signals record under SIMA's keys,
        ``spikes``, ``spikes_fits`` and ``spikes_params`` (see
        :meth:`signals`).

        Raises
        ------
        ValueError
            The channel has no extracted signals, an unknown ``mode``,
            ``gamma`` outside ``(0, 1)``, or a trace with fewer than 8
            observed samples.
        KeyError
            No extraction is labelled ``label``.
        """
        from sima_fast.spikes import infer_spikes_from_signals

        share_gamma = check_bool("share_gamma", share_gamma)
        verbose = check_bool("verbose", verbose)
        if label is not None and not isinstance(label, str):
            raise ArgumentTypeError(f"label must be a str or None, got {label!r}")
        index = self._channel(channel)
        if self._savedir is not None:
            self._check_writable()
        all_signals = self._read_signals(index)
        if not all_signals:
            raise ValueError(f"channel {channel!r} has no extracted signals; run extract() first")
        if label is None:
            label = _most_recent_signals(all_signals)
        elif label not in all_signals:
            raise KeyError(
                f"label: no signals labelled {label!r}; available: {sorted(all_signals)}"
            )
        record = all_signals[label]
        raw = record.get("raw") if isinstance(record, dict) else None
        if raw is None:
            raise ValueError(f"the signals labelled {label!r} have no 'raw' traces")
        if client is None:
            spikes, fits, parameters = infer_spikes_from_signals(
                raw, gamma=gamma, share_gamma=share_gamma, mode=mode, verbose=verbose
            )
        else:
            from sima_fast import distributed

            spikes, fits, parameters = distributed.infer_spikes_from_signals(
                raw, client, gamma=gamma, share_gamma=share_gamma, mode=mode, verbose=verbose
            )
        record = dict(record)
        record.pop("fits", None)  # the name earlier versions stored the fits under
        record.update(spikes=spikes, spikes_fits=fits, spikes_params=parameters)
        self._store_signals(index, label, record, "infer_spikes")
        return spikes, fits, parameters


def _most_recent_signals(records: dict[str, Any]) -> str | None:
    return most_recent(
        {k: (r.get("timestamp", "") if isinstance(r, dict) else "") for k, r in records.items()}
    )

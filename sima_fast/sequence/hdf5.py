"""HDF5 sequences (``Sequence.create('HDF5', path, dim_order, group, key)``).

Also the HDF5 copy that in-memory sequences (numpy and dask arrays) are saved
as in a dataset directory.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, ClassVar

import numpy as np

from sima_fast.sequence.axes import DIM_ORDER, canonical_shape, to_canonical, validate_dim_order
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
from sima_fast.sequence.metadata import read_hdf5_metadata

__all__ = ["HDF5Sequence", "write_hdf5_copy"]


class HDF5Sequence(Sequence, format="HDF5"):
    """One dataset of an HDF5 file, any axis order (see :meth:`Sequence.create`).

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file.
    dim_order : str
        One letter of ``'tzyxc'`` per axis of the dataset.
    group : str, optional
        The group holding the dataset (default: the root).
    key : str, optional
        The dataset's name; may be omitted when the group holds one dataset.

    Raises
    ------
    OSError
        Not an HDF5 file.
    CorruptFileError
        The file is truncated or corrupt (when opened, or when frames are
        read: a damaged chunk), or a virtual dataset's source file lacks
        its dataset. Names the file and the dataset.
    FileNotFoundError
        A source file of a virtual dataset is missing (HDF5 would read its
        part as zeros); the message lists every path tried.
    KeyError
        The group or key is not in the file, or is a dangling soft or
        external link (the message says where it points).
    """

    #: Checked by :func:`~sima_fast.sequence.base.validate_description`.
    description_fields: ClassVar[dict[str, str]] = {
        "path": "path",
        "dim_order": "str",
        "group": "?str?",
        "key": "?str?",
    }

    def __init__(
        self, path: Any, dim_order: str, group: str | None = None, key: str | None = None
    ) -> None:
        import h5py

        self._path = os.path.abspath(require_file(path))
        self._group = "/" if group is None else str(group)
        try:
            f = h5py.File(self._path, "r")
        except OSError as exc:
            if h5py.is_hdf5(self._path):
                raise CorruptFileError(
                    f"path: the HDF5 file {self._path!r} is truncated or corrupt and cannot be "
                    f"opened ({exc})",
                    self._path,
                ) from exc
            raise OSError(f"path: cannot open {self._path!r} as an HDF5 file ({exc})") from exc
        try:
            self._open_dataset(f, dim_order, key)
        except BaseException:
            f.close()
            raise

    def _open_dataset(self, f: Any, dim_order: str, key: str | None) -> None:
        import h5py

        dangling = _dangling_link(f, self._group, self._path) if self._group != "/" else None
        if dangling:
            raise KeyError(f"group {self._group!r} of {self._path!r} is {dangling}")
        if self._group not in f:
            groups = sorted(n for n, o in f.items() if isinstance(o, h5py.Group))
            raise KeyError(
                f"group {self._group!r} is not in {self._path!r}; groups at the root: {groups}"
            )
        grp = f[self._group]
        if not isinstance(grp, h5py.Group):
            raise ValueError(f"group {self._group!r} in {self._path!r} is a dataset, not a group")
        datasets, broken = [], {}
        for name in sorted(grp.keys()):
            dangling = _dangling_link(grp, name, self._path)
            if dangling:
                broken[name] = dangling
            elif isinstance(grp.get(name), h5py.Dataset):
                datasets.append(name)
        if key is None:
            if len(datasets) != 1:
                links = "".join(f"; {n!r} is {why}" for n, why in broken.items())
                raise ValueError(
                    f"key is required: group {self._group!r} of {self._path!r} holds "
                    f"{len(datasets)} datasets {datasets}, not exactly one{links}"
                )
            key = datasets[0]
        key = str(key)
        if key in broken:
            raise KeyError(
                f"key {key!r} in group {self._group!r} of {self._path!r} is {broken[key]}"
            )
        if key not in datasets:
            raise KeyError(
                f"key {key!r} is not a dataset in group {self._group!r} of {self._path!r}; "
                f"available: {datasets}"
            )
        self._key = key
        ds = grp[key]
        self._dim_order = validate_dim_order(dim_order, ds.ndim)
        self._dtype = check_numeric(ds.dtype, f"HDF5 dataset {key!r}")
        if ds.is_virtual:
            _check_virtual_sources(ds, self._path, self._where())
        self._shape = canonical_shape(ds.shape, self._dim_order)
        chunks = ds.chunks
        self._tchunk = None if chunks is None else int(chunks[self._dim_order.index("t")])
        self._file, self._dataset = f, ds
        self._direct = self._dim_order == "".join(d for d in DIM_ORDER if d in self._dim_order)

    def _where(self) -> str:
        group = self._group.strip("/")
        return f"/{group}/{self._key}" if group else f"/{self._key}"

    def _ds(self) -> Any:
        if getattr(self, "_file", None) is None or not self._file.id.valid:
            import h5py

            self._file = h5py.File(self._path, "r")
            self._dataset = self._file[self._group][self._key]
        return self._dataset

    def __getstate__(self) -> dict[str, Any]:
        """Return the state to pickle, without the open HDF5 file and dataset.

        The file is reopened on the first read after unpickling.

        Returns
        -------
        dict
        """
        state = super().__getstate__()
        state.pop("_dataset", None)
        state["_file"] = None
        return state

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(T, Z, Y, X, C)``, absent axes of the storage as size 1."""
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        """The stored dtype, in native byte order."""
        return self._dtype

    @property
    def path(self) -> str:
        """The HDF5 file (absolute path)."""
        return self._path

    def data_files(self) -> list[str]:
        """List every file this sequence's frames are read from.

        The HDF5 file itself, and the files HDF5 reaches from it: the target
        of an external link on the way to the dataset (resolved by HDF5
        itself: relative to the referring file's directory, or
        ``HDF5_EXT_PREFIX``) and the source files of a virtual dataset
        (relative to the file holding it, or ``HDF5_VDS_PREFIX``). Writers
        refuse every one of them as an output.

        Returns
        -------
        list of str
            Absolute paths, sorted, without repetitions.
        """
        files = {self._path}
        try:
            self._ds()  # (re)opens the file as self._file
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
    def storage_chunk_frames(self) -> int:
        """The dataset's chunk length along time (1 for a contiguous dataset)."""
        return 1 if self._tchunk is None else self._tchunk

    def describe(self) -> str:
        """Describe the sequence in one line: its kind and its file's name.

        Returns
        -------
        str
            E.g. ``'HDF5 movie.h5'``.
        """
        return f"{super().describe()} {os.path.basename(self._path)}"

    def default_chunk_frames(self) -> int:
        """Return about 64 MiB of frames per chunk, rounded to whole chunks of a chunked dataset.

        Returns
        -------
        int
            :meth:`Sequence.default_chunk_frames`, rounded down to a multiple of
            :attr:`storage_chunk_frames` (at least one storage chunk) when the
            dataset is chunked.
        """
        n = super().default_chunk_frames()
        if self._tchunk is not None:
            n = max(self._tchunk, (n // self._tchunk) * self._tchunk)
        return n

    def _source_acquisition_metadata(self) -> Any:
        """Return the metadata in the dataset's (and its groups') attributes, read once."""
        if "_acquisition_file" not in self.__dict__:
            self._acquisition_file = read_hdf5_metadata(self._ds())
        return self._acquisition_file

    def _read(self, start: int, stop: int, out: np.ndarray) -> None:
        ds = self._ds()
        t_axis = self._dim_order.index("t")
        sel = [slice(None)] * ds.ndim
        sel[t_axis] = slice(start, stop)
        sel = tuple(sel)
        try:
            if self._direct and ds.dtype == out.dtype:
                file_shape = list(ds.shape)
                file_shape[t_axis] = stop - start
                ds.read_direct(out.reshape(file_shape), source_sel=sel)
                return
            block = ds[sel]
        except OSError as exc:
            raise CorruptFileError(
                f"HDF5 file {self._path!r}: frames {start} to {stop - 1} of dataset "
                f"{self._where()!r} cannot be read ({exc}); a chunk is corrupt or the file is "
                "damaged",
                self._path,
            ) from exc
        np.copyto(out, to_canonical(block, self._dim_order), casting="unsafe")

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
            ``dim_order``, ``group`` and ``key``.
        """
        return {
            "fmt": self.format,
            "path": path_record(self._path, ctx.savedir),
            "dim_order": self._dim_order,
            "group": self._group,
            "key": self._key,
        }

    @classmethod
    def fromdict(cls, d: dict[str, Any], ctx: LoadContext) -> Sequence:
        """Reopen the sequence from its :meth:`todict` description.

        Parameters
        ----------
        d : dict
            The description.
        ctx : LoadContext
            The dataset being loaded; the HDF5 file is looked for relative to
            ``ctx.savedir`` first, then at its absolute path.

        Returns
        -------
        HDF5Sequence

        Raises
        ------
        FileNotFoundError
            The HDF5 file is at neither path.
        """
        path = resolve_path(d["path"], ctx.savedir, "HDF5 file")
        return cls(path, d["dim_order"], group=d.get("group"), key=d.get("key"))


def _dangling_link(group: Any, name: str, path: str) -> str | None:
    """Describe ``group[name]`` when it is a soft or external link that leads nowhere."""
    import h5py

    try:
        link = group.get(name, getlink=True)
    except (KeyError, OSError, ValueError):
        return None
    if not isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
        return None
    try:
        if group.get(name) is not None:
            return None
    except (KeyError, OSError, ValueError):
        pass
    if isinstance(link, h5py.SoftLink):
        return f"a dangling soft link to {link.path!r}, which is not in the file"
    tried = _candidate_paths(link.filename, path, "HDF5_EXT_PREFIX")
    found = [c for c in tried if os.path.exists(c)]
    if not found:
        return (
            f"a dangling external link to {link.path!r} in the file {link.filename!r}, which "
            f"does not exist (looked for: {', '.join(map(repr, tried))})"
        )
    return (
        f"a dangling external link to {link.path!r} in {found[0]!r}, which has no such "
        "object or cannot be opened"
    )


def _candidate_paths(name: str, referrer: str, env: str) -> list[str]:
    """List where HDF5 looks for a file named by a link or virtual dataset of ``referrer``.

    Returns
    -------
    list of str
        An absolute name as it is; then its base name (or the relative name)
        under each directory of the environment variable ``env``, under the
        referring file's directory, and under the current directory.
    """
    candidates = []
    if os.path.isabs(name):
        candidates.append(name)
        name = os.path.basename(name)
    prefixes = [p for p in os.environ.get(env, "").split(os.pathsep) if p]
    prefixes += [os.path.dirname(referrer), os.getcwd()]
    for prefix in prefixes:
        cand = os.path.normpath(os.path.join(prefix, name))
        if cand not in candidates:
            candidates.append(cand)
    return candidates


def _virtual_source_files(ds: Any) -> list[str]:
    """List the existing source files of a virtual dataset, where HDF5 finds them.

    Sources in the same file (``'.'``) and printf-style patterns (``%b``) are
    skipped.

    Returns
    -------
    list of str
        Absolute paths of the sources found.
    """
    holder = os.path.abspath(ds.file.filename)
    found = []
    for vmap in ds.virtual_sources():
        name = vmap.file_name
        if name == "." or "%" in name:
            continue
        hit = next(
            (c for c in _candidate_paths(name, holder, "HDF5_VDS_PREFIX") if os.path.isfile(c)),
            None,
        )
        if hit is not None:
            found.append(os.path.abspath(hit))
    return found


def _check_virtual_sources(ds: Any, path: str, where: str) -> None:
    """Refuse a virtual dataset with a missing source: HDF5 would read it as the fill value."""
    import h5py

    for vmap in ds.virtual_sources():
        fname, dname = vmap.file_name, vmap.dset_name
        if "%" in fname or "%" in dname:
            continue  # a printf-style pattern naming many files: HDF5 resolves it on read
        if fname == ".":
            if dname not in ds.file:
                raise CorruptFileError(
                    f"HDF5 file {path!r}: the virtual dataset {where!r} maps the dataset "
                    f"{dname!r} of the same file, which does not exist; HDF5 would read that "
                    "part as the fill value",
                    path,
                )
            continue
        tried = _candidate_paths(fname, path, "HDF5_VDS_PREFIX")
        found = next((c for c in tried if os.path.isfile(c)), None)
        if found is None:
            raise FileNotFoundError(
                f"HDF5 file {path!r}: the source file {fname!r} of the virtual dataset "
                f"{where!r} is missing (looked for: {', '.join(map(repr, tried))}); HDF5 would "
                "read its part as the fill value"
            )
        try:
            with h5py.File(found, "r") as src:
                present = isinstance(src.get(dname), h5py.Dataset)
        except OSError as exc:
            raise CorruptFileError(
                f"HDF5 file {path!r}: the source file {found!r} of the virtual dataset "
                f"{where!r} cannot be opened ({exc})",
                found,
            ) from exc
        if not present:
            raise CorruptFileError(
                f"HDF5 file {path!r}: the source file {found!r} of the virtual dataset "
                f"{where!r} has no dataset {dname!r}; HDF5 would read that part as the fill "
                "value",
                found,
            )


def write_hdf5_copy(seq: Sequence, ctx: SaveContext) -> dict[str, Any]:
    """Copy a sequence into a new HDF5 file of the dataset directory.

    How sequences without a file of their own (numpy and dask arrays) are
    saved: the frames are written chunk by chunk into
    ``sequence_<id>.h5`` (dataset ``'imaging'``, axes ``'tzyxc'``) in
    ``ctx.writedir``.

    Parameters
    ----------
    seq : Sequence
        The sequence to copy.
    ctx : SaveContext
        The dataset being saved; the new file is added to its ``new_files``.

    Returns
    -------
    dict
        The description of the copy, an ``'HDF5'`` sequence.

    Raises
    ------
    ValueError
        ``ctx`` has no dataset directory.
    """
    if ctx.savedir is None:
        raise ValueError(
            f"a {seq.format!r} sequence can only be described inside a dataset directory"
        )
    import h5py

    from sima_fast._atomic import atomic_write

    name = f"sequence_{uuid.uuid4().hex}.h5"
    path = os.path.join(ctx.writedir, name)
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        dset = f.create_dataset("imaging", shape=seq.shape, dtype=seq.dtype)
        for t0, chunk in seq.iter_chunks():
            dset[t0 : t0 + len(chunk)] = chunk
        for i, label in enumerate(DIM_ORDER):
            dset.dims[i].label = label
    ctx.new_files.append(path)
    return {
        "fmt": HDF5Sequence.format,
        "path": path_record(os.path.join(ctx.savedir, name), ctx.savedir),
        "dim_order": DIM_ORDER,
        "group": "/",
        "key": "imaging",
    }

"""One analysis over many datasets, on a Dask cluster or on this machine.

Projects hold sessions by the thousand. :func:`map_datasets` opens each
dataset directory, calls a function on it and collects what it returns. One
dataset is one task: on a cluster the datasets are spread over the workers,
each analysed there with the single-machine code. A dataset that fails (a
missing file, a corrupt directory, an exception in the function, a worker
that died) is reported with its path, the error and the traceback, and never
costs the results of the others.
"""

from __future__ import annotations

import os
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sima_fast._validate import ArgumentTypeError, check_bool, check_int
from sima_fast.sequence.dask import worker_location

__all__ = ["BatchError", "BatchResult", "DatasetFailure", "map_datasets"]


@dataclass(frozen=True)
class DatasetFailure:
    """Why one dataset of a batch failed.

    Attributes
    ----------
    path : str
        The dataset path, as given.
    error : str
        ``'ExceptionType: message'``.
    traceback : str
        The formatted traceback (from the worker when run on a cluster).
    where : str
        ``'worker <address>'``, ``'the client'`` or ``'the cluster'`` (the
        task was lost, e.g. its worker died too often).
    """

    path: str
    error: str
    traceback: str
    where: str

    def __str__(self) -> str:
        """Return ``'<path>: <error> (on <where>)'``."""
        return f"{self.path}: {self.error} (on {self.where})"


class BatchError(RuntimeError):
    """Raised by :meth:`BatchResult.raise_if_failed`; lists every failed dataset."""


@dataclass
class BatchResult:
    """What :func:`map_datasets` returns.

    Attributes
    ----------
    results : dict
        ``{path: value}`` for every dataset that succeeded, in input order.
    errors : dict
        ``{path: DatasetFailure}`` for every dataset that failed, in input order.
    """

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, DatasetFailure] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no dataset failed."""
        return not self.errors

    def raise_if_failed(self) -> None:
        """Raise :class:`BatchError` naming every failed dataset (no-op when none failed)."""
        if self.errors:
            lines = "\n".join(f"  {failure}" for failure in self.errors.values())
            raise BatchError(
                f"{len(self.errors)} of {len(self.errors) + len(self.results)} dataset(s) "
                f"failed:\n{lines}"
            )


def _run_one(func: Callable[[Any], Any], path: str, load: bool, read_only: bool) -> tuple:
    """``('ok', value)`` or ``('error', message, traceback, where)``; never raises."""
    try:
        if load:
            from sima_fast.imaging import ImagingDataset

            target = ImagingDataset.load(path, read_only=read_only)
        else:
            target = path
        return ("ok", func(target))
    except Exception as exc:
        return ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(), worker_location())


def map_datasets(
    func: Callable[[Any], Any],
    paths: Iterable[str | os.PathLike],
    client: Any = None,
    *,
    load: bool = True,
    read_only: bool = False,
    retries: int = 0,
    progress: bool = False,
) -> BatchResult:
    """Call ``func`` on every dataset of ``paths`` and collect results and failures.

    Parameters
    ----------
    func : callable
        ``func(dataset)`` (or ``func(path)`` with ``load=False``); its return
        value is collected. On a cluster it must be picklable (functions and
        lambdas are, through cloudpickle) and so must its return value.
    paths : iterable of str or path-like
        Dataset directories (each listed once).
    client : dask.distributed.Client, optional
        Run one task per dataset on this cluster; by default the datasets are
        processed one after the other here.
    load : bool, optional
        Open each path with :meth:`ImagingDataset.load` and pass the dataset
        (default); with False, pass the path itself.
    read_only : bool, optional
        Open the datasets read-only. Default: False.
    retries : int, optional
        With a client: times a task is retried when it fails (e.g. on a
        flaky file system). Default: 0.
    progress : bool, optional
        Show a progress bar (Dask's own with a client, else tqdm).

    Returns
    -------
    BatchResult
        ``results`` (path → value) and ``errors`` (path →
        :class:`DatasetFailure`), both in input order.

    Raises
    ------
    ValueError
        A path listed twice, or ``retries < 0``.
    sima_fast._validate.ArgumentTypeError
        An argument of the wrong type: ``func`` not callable, ``paths`` a
        single path or holding a non-path, ``load``, ``read_only`` or
        ``progress`` not a bool, ``retries`` not an int (also a ValueError).

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from sima_fast import ImagingDataset, Sequence
    >>> root = tempfile.mkdtemp()
    >>> good = os.path.join(root, 'good.sima')
    >>> seq = Sequence.create('ndarray', np.ones((3, 1, 2, 2, 1)))
    >>> _ = ImagingDataset([seq], good)
    >>> batch = map_datasets(lambda ds: ds.num_frames, [good, os.path.join(root, 'gone.sima')])
    >>> batch.results == {good: 3}
    True
    >>> print(batch.errors[os.path.join(root, 'gone.sima')].error.split(':')[0])
    FileNotFoundError
    """
    if not callable(func):
        raise ArgumentTypeError(f"func must be callable (func(dataset)), got {func!r}")
    load = check_bool("load", load)
    read_only = check_bool("read_only", read_only)
    retries = check_int("retries", retries, low=0)
    progress = check_bool("progress", progress)
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise ArgumentTypeError(
            f"paths must be an iterable of dataset directories, got the single path {paths!r} "
            "(wrap it in a list)"
        )
    try:
        paths = [os.fspath(p) for p in paths]
    except TypeError as err:
        raise ArgumentTypeError(
            f"paths must be an iterable of str or path-like objects: {err}"
        ) from None
    seen: set[str] = set()
    for p in paths:
        if p in seen:
            raise ValueError(f"paths lists {p!r} more than once")
        seen.add(p)
    outcomes: dict[str, tuple] = {}
    if client is None:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(paths), desc="datasets", unit="dataset")
        try:
            for p in paths:
                outcomes[p] = _run_one(func, p, load, read_only)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    else:
        batch_id = uuid.uuid4().hex[:8]
        futures = client.map(
            _run_one,
            [func] * len(paths),
            paths,
            [load] * len(paths),
            [read_only] * len(paths),
            key=[f"sima-fast-dataset-{batch_id}-{i}" for i in range(len(paths))],
            retries=int(retries),
            pure=False,
        )
        if progress and futures:
            from distributed import progress as dask_progress

            dask_progress(futures)
        for p, future in zip(paths, futures):
            try:
                outcomes[p] = future.result()
            except Exception as exc:  # the task itself was lost (worker died, ...)
                text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                outcomes[p] = ("error", f"{type(exc).__name__}: {exc}", text, "the cluster")
            finally:
                future.release()
    result = BatchResult()
    for p in paths:
        outcome = outcomes[p]
        if outcome[0] == "ok":
            result.results[p] = outcome[1]
        else:
            result.errors[p] = DatasetFailure(p, *outcome[1:])
    return result

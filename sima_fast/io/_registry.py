"""Registries mapping a format name to the function that reads or writes it.

Each kind of file operation has one :class:`Registry`. The built-in io
modules register their functions when imported; they are imported together
on the first use of any registry (see :data:`BUILTIN_MODULES`), so importing
:mod:`sima_fast` or :mod:`sima_fast.io` imports none of them, and an optional
dependency of one module is imported by that module only when one of its
functions runs.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "BUILTIN_MODULES",
    "Registry",
    "averages_writers",
    "frames_writers",
    "roi_readers",
    "roi_writers",
    "signals_writers",
]

BUILTIN_MODULES = (
    "sima_fast.io.native",
    "sima_fast.io.imagej",
    "sima_fast.io.tiff",
    "sima_fast.io.hdf5",
    "sima_fast.io.csv",
    "sima_fast.io.suite2p",
    "sima_fast.io.nwb",
)
"""The io modules imported on first use of a registry; each registers its formats."""

_lock = threading.RLock()
_builtins_state = "pending"  # "pending" -> "loading" -> "loaded"


def _load_builtins() -> None:
    """Import :data:`BUILTIN_MODULES` once (re-entrant: they register while loading)."""
    global _builtins_state
    if _builtins_state == "loaded":
        return
    with _lock:
        if _builtins_state != "pending":
            return  # loaded meanwhile, or a built-in module registering itself
        _builtins_state = "loading"
        try:
            for name in BUILTIN_MODULES:
                importlib.import_module(name)
        except BaseException:
            _builtins_state = "pending"
            raise
        _builtins_state = "loaded"


class Registry:
    """Format names mapped to functions, for one kind of read or write.

    Parameters
    ----------
    kind : str
        What the functions do, for messages (e.g. ``'ROI reader'``).
    unknown : str
        The message of the ValueError for an unknown format, with the
        placeholders ``{fmt!r}`` (the requested format) and ``{names}`` (the
        list of registered names).
    ignore_case : bool
        Whether format names match regardless of case.

    Notes
    -----
    The built-in formats come first, in the order of :data:`BUILTIN_MODULES`
    whatever the order their modules were imported in; other names follow in
    registration order.
    """

    def __init__(self, kind: str, unknown: str, ignore_case: bool) -> None:
        self.kind = kind
        self._unknown = unknown
        self._ignore_case = ignore_case
        self._entries: dict[str, tuple[str, Callable[..., Any]]] = {}
        self._ranks: dict[Any, int] = {}  # key -> place of its built-in module

    def _sort_builtins(self) -> None:
        """Order the entries by their built-in module's place in BUILTIN_MODULES (others last)."""
        self._entries = dict(
            sorted(self._entries.items(), key=lambda item: self._ranks.get(item[0], 0))
        )

    def _sort_builtins(self) -> None:
        """Order the entries as :data:`BUILTIN_MODULES` lists their modules, others after.

        A built-in module imported directly registers its own formats after
        the built-ins that its registration loads, so the order of
        registration depends on the order of imports; this makes it fixed.
        """
        rank = {name: i for i, name in enumerate(BUILTIN_MODULES)}

        def module_rank(item: tuple[str, tuple[str, Callable[..., Any]]]) -> int:
            func = item[1][1]
            func = getattr(func, "func", func)  # a functools.partial: the wrapped function
            return rank.get(getattr(func, "__module__", None), len(rank))

        self._entries = dict(sorted(self._entries.items(), key=module_rank))

    def _key(self, fmt: Any) -> Any:
        return str(fmt).lower() if self._ignore_case else fmt

    def _find(self, fmt: Any) -> tuple[str, Callable[..., Any]] | None:
        try:
            return self._entries.get(self._key(fmt))
        except TypeError:  # an unhashable fmt names no format
            return None

    def register(
        self, name: str, func: Callable[..., Any] | None = None, *, replace: bool = False
    ) -> Any:
        """Register ``func`` under the format name ``name``.

        Parameters
        ----------
        name : str
            The format name users pass as ``fmt``.
        func : callable, optional
            The reader or writer. Without it, ``register`` returns a decorator
            that registers the decorated function and returns it unchanged.
        replace : bool, optional
            Allow replacing a function already registered under ``name``.
            Default: False.

        Returns
        -------
        callable
            ``func``, or the decorator when ``func`` is None.

        Raises
        ------
        ValueError
            If ``name`` is not a non-empty string, or is already registered
            and ``replace`` is False.
        TypeError
            If ``func`` is not callable.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a format name must be a non-empty string, got {name!r}")
        if func is None:

            def decorator(f: Callable[..., Any]) -> Callable[..., Any]:
                self.register(name, f, replace=replace)
                return f

            return decorator
        if not callable(func):
            raise TypeError(f"a {self.kind} must be callable, got {func!r}")
        _load_builtins()
        with _lock:
            existing = self._find(name)
            if existing is not None and not replace:
                raise ValueError(
                    f"a {self.kind} is already registered for format {existing[0]!r}; "
                    "pass replace=True to replace it"
                )
            key = self._key(name)
            if key not in self._ranks:
                module = getattr(getattr(func, "func", func), "__module__", None)
                n = len(BUILTIN_MODULES)
                self._ranks[key] = (
                    BUILTIN_MODULES.index(module) if module in BUILTIN_MODULES else n
                )
            self._entries[key] = (name, func)
            # a built-in module imported directly registers after the built-ins its
            # own first registration loaded: keep BUILTIN_MODULES order regardless
            self._sort_builtins()
        return func

    def unregister(self, name: str) -> None:
        """Remove the function registered under ``name``.

        Parameters
        ----------
        name : str
            A registered format name.

        Raises
        ------
        KeyError
            If nothing is registered under ``name``.
        """
        _load_builtins()
        with _lock:
            if self._find(name) is None:
                raise KeyError(f"no {self.kind} registered for format {name!r}")
            del self._entries[self._key(name)]
            self._ranks.pop(self._key(name), None)

    def lookup(self, fmt: Any) -> Callable[..., Any]:
        """Return the function registered for ``fmt``.

        Parameters
        ----------
        fmt : str
            A format name.

        Returns
        -------
        callable

        Raises
        ------
        ValueError
            If no function is registered for ``fmt``; the message lists the
            registered names.
        """
        _load_builtins()
        entry = self._find(fmt)
        if entry is None:
            raise ValueError(self._unknown.format(fmt=fmt, names=self.names()))
        return entry[1]

    def names(self) -> list[str]:
        """List the registered format names, in registration order.

        Returns
        -------
        list of str
        """
        _load_builtins()
        return [name for name, _ in self._entries.values()]

    def __contains__(self, fmt: Any) -> bool:
        _load_builtins()
        return self._find(fmt) is not None

    def __repr__(self) -> str:
        return f"<Registry of {self.kind}s: {self.names()}>"


_ROI_UNKNOWN = "unknown ROI file format {fmt!r}; accepted: {names}"
_FMT_UNKNOWN = "fmt must be one of {names}, got {fmt!r}"

roi_readers = Registry("ROI reader", _ROI_UNKNOWN, ignore_case=True)
"""``fmt`` -> ``reader(path: str, label: str | None) -> ROIList`` (:meth:`ROIList.load`).

A reader may also accept an ``im_shape=(Z, Y, X)`` keyword: ``ROIList.load``
passes the frame shape it was given to readers whose signature takes it, so
that shapes can be clipped to the frame while they are read.
"""

roi_writers = Registry("ROI writer", _ROI_UNKNOWN, ignore_case=True)
"""``fmt`` -> ``writer(rois: ROIList, path: str, label: str | None)`` (:meth:`ROIList.save`)."""

averages_writers = Registry("time-projection writer", _FMT_UNKNOWN, ignore_case=False)
"""``fmt`` -> ``writer(dataset, filenames, *, scale_values, projection_type) -> None``."""

frames_writers = Registry("frames writer", _FMT_UNKNOWN, ignore_case=False)
"""``fmt`` -> ``writer(dataset, filenames, *, fill_gaps, scale_values, compression, client)``."""

signals_writers = Registry("signals writer", _FMT_UNKNOWN, ignore_case=False)
"""``fmt`` -> ``writer(path: str | os.PathLike, signals: dict) -> None``."""

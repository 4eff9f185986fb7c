"""The one numba decorator of the kernels, the fast-math flags they share, and their cache.

Every kernel is compiled with ``cache=True`` (machine code kept on disk, so a
new process loads it instead of compiling) and
``nogil=True`` (the GIL is released while it runs, so threads of the calling
code overlap with it). The other numba options are per kernel and explicit at
the decorator: ``parallel``, ``fastmath``, ``inline`` and ``error_model``.
Options left at numba's defaults are not passed at all, so a kernel's
compilation flags are exactly the ones written at its decorator.

The compiled code is cached in the user's cache directory
(:func:`kernel_cache_directory`), never inside the installed package: files
written there at run time would outlive an uninstall and shadow a later
install of the package. ``$NUMBA_CACHE_DIR``, when set, is honoured instead.
The first compilation in a process prints a one-line notice on standard error
(it takes tens of seconds, once per machine and version).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import numba
from numba.core import event

__all__ = ["FASTMATH", "cache_directory", "jit", "kernel_cache_directory"]

#: Fast-math flags of the floating-point kernels: fused multiply-add
#: (``contract``) and reassociation of sums (``reassoc``), which let reductions
#: vectorise. The flags that would change meaning (``nnan``, ``ninf``) are not
#: set, so tests such as ``x - x == 0`` still tell NaN and inf apart.
FASTMATH = frozenset({"contract", "reassoc"})


def cache_directory() -> str:
    """Return the directory sima_fast caches generated data and compiled kernels in.

    ``$SIMA_FAST_CACHE`` when set, else ``$XDG_CACHE_HOME/sima_fast``, else
    ``~/.cache/sima_fast``. The directory is not created. (It is defined here,
    with the kernels, because the kernels need it before anything else of
    sima_fast is imported; ``sima_fast.misc.cache_directory`` is this function.)

    Returns
    -------
    str
        An absolute path.

    Examples
    --------
    >>> import os
    >>> os.path.isabs(cache_directory())
    True
    """
    root = os.environ.get("SIMA_FAST_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = xdg if xdg else os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "sima_fast")
    return os.path.abspath(os.path.expanduser(root))


def kernel_cache_directory() -> str:
    """Return the directory numba caches sima_fast's compiled kernels in.

    ``$NUMBA_CACHE_DIR`` when set (numba's own setting), else ``numba/`` in
    :func:`cache_directory`.

    Returns
    -------
    str
        An absolute path.
    """
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    return os.path.join(cache_directory(), "numba")


# numba reads its cache location when a kernel is decorated (the cache object
# is made then), so setting it here, before any kernel module runs its
# decorators, places every kernel's cache outside the package.
numba.config.CACHE_DIR = kernel_cache_directory()


class _FirstCompileNotice(event.Listener):
    """Print one line on standard error when the first kernel starts compiling."""

    def __init__(self) -> None:
        self.shown = False
        self._lock = threading.Lock()

    def on_start(self, event: Any) -> None:
        """Print the notice for the first compilation of a sima_fast kernel.

        Parameters
        ----------
        event : numba.core.event.Event
            The ``numba:compile`` event; its data names the dispatcher.
        """
        dispatcher = (event.data or {}).get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if self.shown or not module.startswith("sima_fast.kernels"):
            return
        with self._lock:
            if self.shown:
                return
            self.shown = True
        if os.environ.get("SIMA_FAST_QUIET"):
            return
        print(
            "sima_fast: compiling its kernels for this machine, once (this can take a"
            " minute; later runs load them from "
            f"{numba.config.CACHE_DIR}; sima_fast.warmup() does it ahead of time)",
            file=sys.stderr,
            flush=True,
        )

    def on_end(self, event: Any) -> None:
        """Do nothing when a compilation ends.

        Parameters
        ----------
        event : numba.core.event.Event
            The ``numba:compile`` event.
        """


FIRST_COMPILE_NOTICE = _FirstCompileNotice()
event.register("numba:compile", FIRST_COMPILE_NOTICE)

F = TypeVar("F", bound=Callable[..., Any])


def jit(
    func: F | None = None,
    *,
    parallel: bool = False,
    fastmath: bool | frozenset[str] = False,
    inline: Literal["never", "always"] = "never",
    error_model: Literal["python", "numpy"] = "python",
) -> Any:
    """Compile a kernel with numba in nopython mode, cached on disk and without the GIL.

    Usable bare (``@jit``) or with options (``@jit(parallel=True, fastmath=FASTMATH)``).

    Parameters
    ----------
    func : callable, optional
        The Python function to compile (given when used bare).
    parallel : bool
        Run ``prange`` loops on numba's thread pool.
    fastmath : bool or frozenset of str
        LLVM fast-math flags: :data:`FASTMATH` for the kernels that keep the
        meaning of NaN and inf, ``True`` for every flag (only for a kernel
        whose input has no NaN or inf by construction).
    inline : {"never", "always"}
        ``"always"`` inlines the function into its numba callers (at numba's
        IR level), for small helpers called from hot loops.
    error_model : {"python", "numpy"}
        ``"numpy"``: a division by zero gives inf or NaN instead of raising,
        so the division needs no zero test.

    Returns
    -------
    numba dispatcher, or a decorator
        The compiled kernel; or, when ``func`` is not given, a decorator that
        compiles the function it receives with these options.
    """
    options: dict[str, Any] = {"cache": True, "nogil": True}
    if parallel:
        options["parallel"] = True
    if fastmath:
        # numba keeps the set it is given: hand it a private, mutable copy
        options["fastmath"] = True if fastmath is True else set(fastmath)
    if inline != "never":
        options["inline"] = inline
    if error_model != "python":
        options["error_model"] = error_model
    decorate = numba.njit(**options)
    return decorate if func is None else decorate(func)

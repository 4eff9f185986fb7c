"""The one numba decorator of the kernels, and the fast-math flags they share.

Every kernel is compiled with ``cache=True`` (machine code kept on disk next to
the module, so a new process loads it instead of compiling) and
``nogil=True`` (the GIL is released while it runs, so threads of the calling
code overlap with it). The other numba options are per kernel and explicit at
the decorator: ``parallel``, ``fastmath``, ``inline`` and ``error_model``.
Options left at numba's defaults are not passed at all, so a kernel's
compilation flags are exactly the ones written at its decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import numba

__all__ = ["FASTMATH", "jit"]

#: Fast-math flags of the floating-point kernels: fused multiply-add
#: (``contract``) and reassociation of sums (``reassoc``), which let reductions
#: vectorise. The flags that would change meaning (``nnan``, ``ninf``) are not
#: set, so tests such as ``x - x == 0`` still tell NaN and inf apart.
FASTMATH = frozenset({"contract", "reassoc"})

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

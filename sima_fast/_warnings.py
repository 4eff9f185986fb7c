"""Warnings that point at the user's line, not at sima_fast's.

A warning raised deep inside the library (``extract`` → ``ExtractionWeights``,
``infer_spikes`` → the parameter estimators) would otherwise be reported at a
library line that says nothing to the user. :func:`warn` walks up the stack to
the first frame outside the package and reports the warning there, so
``warnings.filterwarnings(..., module=...)`` and the printed location both
refer to the caller's code.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn"]

_PACKAGE_DIRS = tuple(
    os.path.dirname(os.path.abspath(p)) + os.sep
    for p in (os.path.dirname(__file__) + os.sep + "__init__.py",)
)


def _library_dirs() -> tuple[str, ...]:
    dirs = list(_PACKAGE_DIRS)
    kernels = sys.modules.get("sima_fast.kernels")
    if kernels is not None and getattr(kernels, "__file__", None):
        dirs.append(os.path.dirname(os.path.abspath(kernels.__file__)) + os.sep)
    return tuple(dirs)


def caller_stacklevel() -> int:
    """Return the ``stacklevel`` of the first frame outside sima_fast.

    Returns
    -------
    int
        The level to pass to :func:`warnings.warn` from the function that
        called this one, so that the warning is attributed to user code.
    """
    dirs = _library_dirs()
    frame = sys._getframe(1)  # the caller of caller_stacklevel, inside sima_fast
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(dirs):
        frame = frame.f_back
        level += 1
    return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue a warning attributed to the first caller outside sima_fast.

    Parameters
    ----------
    message : str
        The warning text, in plain words.
    category : type of Warning, optional
        The warning class. Default: :class:`UserWarning`.
    """
    warnings.warn(message, category, stacklevel=caller_stacklevel())

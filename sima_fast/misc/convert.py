"""SIMA's ``to8bit`` and ``to16bit``: an image stretched to the full range of an unsigned type.

Both compute what SIMA's ``sima.misc.to8bit``/``to16bit`` compute,
``(2**bits - 1) * array / nanmax(array)`` in float64, truncated toward zero,
and they are the conversion that ``export_averages`` and ``export_frames``
apply with ``scale_values=True`` (one implementation:
:func:`sima_fast.io._export.to_unsigned`). Where SIMA's result was undefined
they saturate instead: NaN becomes 0, negative values 0, ``+inf`` the top of
the range, and an array without a positive finite maximum is converted
without stretching.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sima_fast._validate import ArgumentTypeError
from sima_fast.io._export import finite_maximum, to_unsigned

__all__ = ["to8bit", "to16bit"]


def _real_array(array: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(array)
    except Exception as exc:  # ragged lists and the like
        raise ArgumentTypeError(f"{name} must be an array of real numbers ({exc})") from exc
    if a.dtype.kind not in "biuf":
        raise ArgumentTypeError(
            f"{name} must be an array of real numbers, "
            f"got dtype {a.dtype} ({type(array).__name__})"
        )
    return a


def _stretched(array: Any, dtype: Any) -> np.ndarray:
    a = _real_array(array, "array")
    return to_unsigned(a, dtype, finite_maximum(a))


def to8bit(array: Any) -> np.ndarray:
    """Stretch an array to 8 bits: ``255 * array / nanmax(array)``, truncated.

    Parameters
    ----------
    array : array_like
        Real values, any shape.

    Returns
    -------
    numpy.ndarray
        uint8, same shape. The largest finite value becomes 255; NaN and
        negative values become 0, ``+inf`` 255. Without a positive finite
        maximum the values are not stretched (only clipped to 0-255).

    Raises
    ------
    ArgumentTypeError
        If ``array`` is not an array of real numbers.

    Examples
    --------
    >>> import numpy as np
    >>> to8bit(np.array([0.0, 1.0, 2.0, np.nan]))
    array([  0, 127, 255,   0], dtype=uint8)
    """
    return _stretched(array, np.uint8)


def to16bit(array: Any) -> np.ndarray:
    """Stretch an array to 16 bits: ``65535 * array / nanmax(array)``, truncated.

    Parameters
    ----------
    array : array_like
        Real values, any shape.

    Returns
    -------
    numpy.ndarray
        uint16, same shape. The largest finite value becomes 65535; NaN and
        negative values become 0, ``+inf`` 65535. Without a positive finite
        maximum the values are not stretched (only clipped to 0-65535).

    Raises
    ------
    ArgumentTypeError
        If ``array`` is not an array of real numbers.

    Examples
    --------
    >>> import numpy as np
    >>> to16bit(np.array([[0.0, 1.0], [3.0, 4.0]]))
    array([[    0, 16383],
           [49151, 65535]], dtype=uint16)
    """
    return _stretched(array, np.uint16)

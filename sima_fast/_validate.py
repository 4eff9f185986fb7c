"""Argument checks shared by the whole package, so the same mistake gets the same error.

Every helper takes the argument's name first and puts it at the start of its
message, with what was expected and what was given
(``"n_processes must be an integer >= 1, got '2'"``).

Exception types
---------------
* A value of the wrong *type* (a string where a number is expected, ``True``
  where an integer is expected, ``1.5`` where an integer is expected, a float
  channel index) raises :class:`ArgumentTypeError`. It subclasses both
  :class:`TypeError` and :class:`ValueError` (as numpy's ``AxisError``
  subclasses ``ValueError`` and ``IndexError``): callers written against either
  convention, which parts of this package and SIMA used for the same mistake,
  keep catching it.
* A value of the right type that is not allowed (out of range, not finite, an
  unknown channel name) raises a plain :class:`ValueError`.

``bool`` (Python's and numpy's) is never accepted as a number, although
Python treats it as an ``int``: ``n_processes=True`` is a mistake, not ``1``.
numpy integer and floating scalars are accepted like ``int`` and ``float``.

This module imports only numpy, so any module of the package may use it.
"""

from __future__ import annotations

import math
import numbers
import unicodedata
from typing import Any

import numpy as np

__all__ = [
    "ArgumentTypeError",
    "check_bool",
    "check_channel",
    "check_frame_shape",
    "check_int",
    "check_label",
    "check_real",
    "resolve_channel",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: both a :class:`TypeError` and a :class:`ValueError`.

    Examples
    --------
    >>> try:
    ...     check_int('n_processes', '2', low=1)
    ... except ValueError as err:
    ...     print(type(err).__name__, isinstance(err, TypeError), '-', err)
    ArgumentTypeError True - n_processes must be an integer >= 1, got '2'
    """


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _number(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _bounds(low: float | None, high: float | None) -> str:
    """`` >= low``, `` <= high``, `` in [low, high]`` or nothing."""
    if low is not None and high is not None:
        return f" in [{_number(low)}, {_number(high)}]"
    if low is not None:
        return f" >= {_number(low)}"
    if high is not None:
        return f" <= {_number(high)}"
    return ""


def check_int(
    name: str,
    value: Any,
    *,
    low: int | None = None,
    high: int | None = None,
    integral_float: bool = False,
) -> int:
    """Return ``value`` as an ``int`` after checking its type and range.

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : object
        The value given: a Python or numpy integer (not a bool).
    low, high : int, optional
        Inclusive bounds; None leaves that side open.
    integral_float : bool, optional
        Also accept a float with an integral value (``3.0``), as SIMA's
        segmentation parameters did. Default: False.

    Returns
    -------
    int
        The value.

    Raises
    ------
    ArgumentTypeError
        If ``value`` is not an integer (a bool, a non-integral float, a string ...).
    ValueError
        If ``value`` is outside ``[low, high]``.

    Examples
    --------
    >>> check_int('n_processes', np.int64(4), low=1)
    4
    >>> check_int('num_pcs', 3.0, low=1, integral_float=True)
    3
    >>> check_int('n_processes', 0, low=1)
    Traceback (most recent call last):
    ...
    ValueError: n_processes must be >= 1, got 0
    """
    ok = not _is_bool(value) and (
        isinstance(value, numbers.Integral)
        or (
            integral_float
            and isinstance(value, (float, np.floating))
            and float(value).is_integer()
        )
    )
    if not ok:
        raise ArgumentTypeError(f"{name} must be an integer{_bounds(low, high)}, got {value!r}")
    out = int(value)
    if (low is not None and out < low) or (high is not None and out > high):
        raise ValueError(f"{name} must be{_bounds(low, high)}, got {value!r}")
    return out


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    allow_none: bool = False,
) -> float | None:
    """Return ``value`` as a finite ``float`` after checking its type and range.

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : object
        The value given: a Python or numpy real number (not a bool), or None
        when ``allow_none``.
    low, high : float, optional
        Inclusive bounds; None leaves that side open.
    allow_none : bool, optional
        Accept None (and return it). Default: False.

    Returns
    -------
    float or None
        The value.

    Raises
    ------
    ArgumentTypeError
        If ``value`` is not a real number (or None when allowed).
    ValueError
        If ``value`` is NaN or infinite, or outside ``[low, high]``.

    Examples
    --------
    >>> check_real('threshold', np.float32(0.5), low=0.0, high=1.0)
    0.5
    >>> check_real('threshold', 1.5, low=0.0, high=1.0)
    Traceback (most recent call last):
    ...
    ValueError: threshold must be in [0, 1], got 1.5
    """
    if value is None and allow_none:
        return None
    if _is_bool(value) or not isinstance(value, numbers.Real):
        expected = "a real number" + (" or None" if allow_none else "")
        raise ArgumentTypeError(f"{name} must be {expected}, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if (low is not None and out < low) or (high is not None and out > high):
        raise ValueError(f"{name} must be{_bounds(low, high)}, got {value!r}")
    return out


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` as a ``bool``; only ``True`` and ``False`` (numpy's too) are accepted.

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : object
        The value given.

    Returns
    -------
    bool
        The value.

    Raises
    ------
    ArgumentTypeError
        If ``value`` is not a bool (``0``, ``1`` and ``'yes'`` are refused).

    Examples
    --------
    >>> check_bool('verbose', np.bool_(True))
    True
    """
    if not _is_bool(value):
        raise ArgumentTypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_frame_shape(name: str, value: Any) -> tuple[int, ...]:
    """Validate a frame shape: ``(Y, X)``, ``(Z, Y, X)`` or ``(Z, Y, X, C)`` of positive ints.

    Parameters
    ----------
    name : str
        The argument's name, for messages.
    value : Any
        What the caller passed: a sequence of whole numbers.

    Returns
    -------
    tuple of int
        The shape, as Python ints.

    Raises
    ------
    ArgumentTypeError
        If ``value`` is not a sequence of numbers.
    ValueError
        If it has fewer than 2 or more than 4 entries, or an entry is not a
        positive whole number.
    """
    try:
        shape = tuple(int(s) for s in value)
        exact = all(int(s) == s for s in value)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            f"{name} must be a tuple of ints (Y, X), (Z, Y, X) or (Z, Y, X, C), got {value!r}"
        ) from None
    if not exact or len(shape) not in (2, 3, 4) or min(shape) < 1:
        raise ValueError(
            f"{name} must be (Y, X), (Z, Y, X) or (Z, Y, X, C) of positive ints, got {value!r}"
        )
    return shape


def check_channel(name: str, value: Any) -> int | str:
    """Check a channel given before the channel names are known: an index or a name.

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : int or str
        A channel index (a Python or numpy integer, not a bool) or a name.

    Returns
    -------
    int or str
        The index as an ``int``, or the name unchanged. Whether it exists is
        checked later, against a dataset, by :func:`resolve_channel`.

    Raises
    ------
    ArgumentTypeError
        If ``value`` is neither an integer nor a string.

    Examples
    --------
    >>> check_channel('channel', np.int8(1)), check_channel('channel', 'GCaMP')
    (1, 'GCaMP')
    """
    if isinstance(value, str):
        return value
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be an int or a channel name, got {value!r}")
    return int(value)


def resolve_channel(channel: Any, channel_names: list[str], name: str | None = None) -> int:
    """Return the index of a channel given by index or by name.

    Parameters
    ----------
    channel : int or str
        A channel index (Python or numpy integer; negative counts from the
        end) or one of ``channel_names``.
    channel_names : list of str
        The dataset's channel names, in channel order.
    name : str, optional
        The argument's name (e.g. ``'signal_channel'``), put at the start of
        the error messages. Default: messages about "channel" with no prefix.

    Returns
    -------
    int
        The non-negative channel index.

    Raises
    ------
    ArgumentTypeError
        If ``channel`` is neither an integer nor a string (a bool or a float
        is refused).
    ValueError
        If the channel does not exist; the message lists the valid names.

    Examples
    --------
    >>> resolve_channel('red', ['green', 'red'])
    1
    >>> resolve_channel(-1, ['green', 'red'])
    1
    >>> resolve_channel('blue', ['green', 'red'], 'signal_channel')
    Traceback (most recent call last):
    ...
    ValueError: signal_channel: no channel named 'blue'; valid names: ['green', 'red']
    """
    n = len(channel_names)
    prefix = f"{name}: " if name else ""
    if isinstance(channel, str):
        if channel in channel_names:
            return channel_names.index(channel)
        raise ValueError(f"{prefix}no channel named {channel!r}; valid names: {channel_names}")
    if _is_bool(channel) or not isinstance(channel, numbers.Integral):
        raise ArgumentTypeError(
            f"{name or 'channel'} must be an int or one of the channel names {channel_names}, "
            f"got {channel!r}"
        )
    idx = int(channel)
    if -n <= idx < n:
        return idx % n
    raise ValueError(
        f"{prefix}channel index {idx} is out of range for {n} channel(s); valid names: "
        f"{channel_names} (or indices 0..{n - 1})"
    )


def _control_characters(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch) == "Cc"]


def check_label(name: str, value: Any, existing: Any = None) -> str:
    r"""Check a label that names an ROI set or a signals record (an HDF5 group).

    Allowed: any non-empty string without ``'/'`` and without control
    characters (U+0000-U+001F, U+007F-U+009F), other than ``'.'`` and
    ``'..'``. Letters of any script, digits, spaces (also leading or
    trailing) and every other punctuation mark are kept as given, so
    labels such as ``'cells'``, ``'day 2'``, ``'v1.2'``, ``'.hidden'``,
    ``'Zellen (grün)'`` or a timestamp ``'2024-01-31-12h00m00s'`` are
    stored and read back unchanged. Refused: ``'/'`` (the HDF5 path
    separator), ``'.'`` and ``'..'`` (the group itself and its parent), NUL
    (HDF5 ends a name there) and the other control characters (they corrupt
    listings, terminals and file names made from labels).

    Parameters
    ----------
    name : str
        The argument's name, used in the error message.
    value : object
        The label given: a ``str`` (numpy's ``str_`` too).
    existing : collection of str, optional
        Labels already stored. A label found there is returned as is even if
        it breaks the rules above, so sets written before these rules (or by
        other software) can still be read, replaced and deleted.

    Returns
    -------
    str
        The label, as a plain ``str``.

    Raises
    ------
    ArgumentTypeError
        If ``value`` is not a string.
    ValueError
        If the label is empty, ``'.'`` or ``'..'``, or holds ``'/'`` or a
        control character; the message names the character.

    Examples
    --------
    >>> check_label('label', 'day 2 (v1.2)')
    'day 2 (v1.2)'
    >>> check_label('label', 'a/b')
    Traceback (most recent call last):
    ...
    ValueError: label must not contain '/' (the HDF5 group separator), got 'a/b'
    >>> check_label('label', '\x00x')
    Traceback (most recent call last):
    ...
    ValueError: label must not contain control characters (here '\x00'), got '\x00x'
    """
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a str (a label), got {value!r}")
    value = str(value)
    if existing is not None and value in existing:
        return value
    if not value:
        raise ValueError(f"{name} must be a non-empty string, got ''")
    if value in (".", ".."):
        raise ValueError(
            f"{name} must not be {value!r} (it names a group of the HDF5 file, not a new one)"
        )
    if "/" in value:
        raise ValueError(f"{name} must not contain '/' (the HDF5 group separator), got {value!r}")
    bad = _control_characters(value)
    if bad:
        raise ValueError(
            f"{name} must not contain control characters (here {''.join(dict.fromkeys(bad))!r}), "
            f"got {value!r}"
        )
    return value

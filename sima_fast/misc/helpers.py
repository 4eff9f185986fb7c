"""Small helpers that SIMA scripts import from ``sima.misc``, with SIMA's signatures.

- :func:`mkdir_p`: ``mkdir -p``;
- :func:`most_recent_key`: the key of the latest timestamped entry of a dict;
- :func:`copy_label_to_id`: give every ROI its label as its id;
- :func:`estimate_array_transform` and :func:`estimate_coordinate_transform`:
  scikit-image transforms from one image (or set of points) to another,
  computed by :mod:`sima_fast.registration`; a registration that fails
  raises :class:`TransformError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = [
    "TransformError",
    "copy_label_to_id",
    "estimate_array_transform",
    "estimate_coordinate_transform",
    "mkdir_p",
    "most_recent_key",
]


class TransformError(ValueError):
    """A transform between two images or point sets could not be estimated.

    A :class:`ValueError` too, so code catching either keeps working.

    Examples
    --------
    >>> issubclass(TransformError, ValueError)
    True
    """


def mkdir_p(path: str | os.PathLike) -> None:
    """Create a directory and its missing parents; an existing directory is fine.

    Parameters
    ----------
    path : str or path-like
        The directory.

    Raises
    ------
    FileExistsError
        If ``path`` exists and is not a directory.
    OSError
        If the directory cannot be created.

    Examples
    --------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> mkdir_p(os.path.join(root, 'a', 'b'))
    >>> mkdir_p(os.path.join(root, 'a', 'b'))
    >>> os.path.isdir(os.path.join(root, 'a', 'b'))
    True
    """
    os.makedirs(os.fspath(path), exist_ok=True)


def _timestamp(value: Any, key: Any) -> Any:
    try:
        return value["timestamp"]
    except (TypeError, KeyError, IndexError):
        pass
    try:
        return value.timestamp
    except AttributeError:
        raise KeyError(
            f"entry {key!r} has no timestamp (neither a 'timestamp' item nor attribute)"
        ) from None


def most_recent_key(d: Mapping[Any, Any]) -> Any:
    """Return the key of the entry with the latest timestamp.

    Each value's timestamp is its ``'timestamp'`` item, or else its
    ``timestamp`` attribute (as for SIMA's ROI lists and signal records).
    Timestamps in sima_fast's format (``'2024-03-01-14h05m09s'``) order in
    time when compared; of equal timestamps the entry that comes last wins,
    as everywhere in sima_fast.

    Parameters
    ----------
    d : mapping
        Key to a timestamped value.

    Returns
    -------
    object
        The key.

    Raises
    ------
    ValueError
        If ``d`` is empty.
    KeyError
        If a value has no timestamp.
    ArgumentTypeError
        If ``d`` is not a mapping.

    Examples
    --------
    >>> most_recent_key({'a': {'timestamp': '2024-01-02-10h00m00s'},
    ...                  'b': {'timestamp': '2024-01-01-10h00m00s'}})
    'a'
    """
    from sima_fast._validate import ArgumentTypeError

    if not isinstance(d, Mapping):
        raise ArgumentTypeError(f"d must be a mapping, got {type(d).__name__}")
    if not d:
        raise ValueError("d is empty: there is no most recent key")
    best_key, best = None, None
    for key, value in d.items():
        stamp = _timestamp(value, key)
        if best_key is None or stamp >= best:
            best_key, best = key, stamp
    return best_key


def copy_label_to_id(rois: Iterable[Any]) -> None:
    """Set every ROI's ``id`` to its ``label``, in place.

    Useful when labels name the same cell across sessions and ids should
    follow them.

    Parameters
    ----------
    rois : iterable of ROI
        For example a :class:`sima_fast.ROI.ROIList`.

    Examples
    --------
    >>> from sima_fast.ROI import ROI
    >>> roi = ROI(mask=np.array([[True, False]]), label='cell_1')
    >>> copy_label_to_id([roi])
    >>> roi.id
    'cell_1'
    """
    for roi in rois:
        roi.id = roi.label


def _image(name: str, value: Any) -> np.ndarray:
    from sima_fast._validate import ArgumentTypeError

    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            f"{name} must be a 2-D numeric array, got {type(value).__name__}"
        ) from None
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (Y, X), got shape {array.shape}")
    return array


def estimate_array_transform(source: Any, target: Any, method: str = "affine") -> Any:
    """Estimate the transform that maps ``source`` image coordinates onto ``target``.

    The images are registered by :func:`sima_fast.registration.register_images`
    (they may be rotated, scaled, sheared and shifted relative to each other
    and differ in size and brightness). A point ``(x, y) = (column, row)``
    of ``source`` maps to ``tf((x, y))`` in ``target``.

    Parameters
    ----------
    source : array_like, shape (Y, X)
        The image to transform.
    target : array_like, shape (Y, X)
        The image used as the template.
    method : str, optional
        The model: ``'affine'`` (default, SIMA's only one) or any of
        :data:`sima_fast.registration.TRANSFORM_METHODS`.

    Returns
    -------
    skimage.transform.GeometricTransform
        For ``'affine'`` an :class:`skimage.transform.AffineTransform`.

    Raises
    ------
    TransformError
        If the images cannot be registered (too small, constant, or not
        overlapping once registered).
    ValueError
        For an unknown ``method`` or images that are not 2-D.
    ArgumentTypeError
        If an image is not numeric.

    Examples
    --------
    >>> from scipy.ndimage import gaussian_filter, shift
    >>> rng = np.random.default_rng(1)
    >>> source = gaussian_filter(rng.standard_normal((64, 64)), 2)
    >>> target = shift(source, (3, -2), order=3)  # rows +3, columns -2
    >>> tf = estimate_array_transform(source, target)
    >>> np.round(tf.translation).tolist()
    [-2.0, 3.0]
    """
    from sima_fast.registration import check_transform_method, register_images

    method = check_transform_method(method)
    source, target = _image("source", source), _image("target", target)
    try:
        return register_images(source, target, method)
    except ValueError as exc:
        raise TransformError(
            f"cannot estimate the {method} transform from source to target: {exc}"
        ) from exc


def estimate_coordinate_transform(
    source: Any, target: Any, method: str, **method_kwargs: Any
) -> Any:
    """Fit the transform that maps ``source`` points onto ``target`` points.

    Parameters
    ----------
    source : array_like, shape (N, 2)
        ``(x, y)`` points in the source image.
    target : array_like, shape (N, 2)
        The corresponding ``(x, y)`` points in the target image.
    method : str
        The model, one of :data:`sima_fast.registration.TRANSFORM_METHODS`
        (the names of :func:`skimage.transform.estimate_transform`).
    **method_kwargs
        Passed to the model, e.g. ``order`` for ``'polynomial'``.

    Returns
    -------
    skimage.transform.GeometricTransform
        The fitted transform, mapping ``source`` to ``target``.

    Raises
    ------
    TransformError
        If the points do not determine the model (too few, collinear or
        repeated).
    ValueError
        For an unknown ``method``, or point arrays that are not ``(N, 2)``
        or differ in shape.

    Examples
    --------
    >>> src = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    >>> tf = estimate_coordinate_transform(src, src * 2 + 1, 'similarity')
    >>> round(float(tf.scale), 6), np.round(tf.translation, 6).tolist()
    (2.0, [1.0, 1.0])
    """
    from sima_fast.registration import check_transform_method, fit_point_transform

    method = check_transform_method(method)
    src = np.asarray(source, dtype=float)
    dst = np.asarray(target, dtype=float)
    if src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"source must be an (N, 2) array of (x, y) points, got shape {src.shape}")
    if dst.shape != src.shape:
        raise ValueError(f"target must have the shape of source {src.shape}, got {dst.shape}")
    try:
        return fit_point_transform(method, src, dst, **method_kwargs)
    except ValueError as exc:
        raise TransformError(str(exc)) from exc

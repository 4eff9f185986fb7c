"""Polygon rasterisation shared by ROIs, the simulator and the tests.

The point-in-polygon test is shapely's (GEOS), vectorised over the pixel
centres of the polygon's bounding box.

The rule is the one in docs/contract.md#rasterisation: pixel ``(y, x)`` covers the square
``[x, x + 1) × [y, y + 1)`` and belongs to a polygon iff its centre
``(x + 0.5, y + 0.5)`` lies *strictly* inside the polygon (centres exactly on
an edge are outside). This module owns that rule; everything else imports it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["polygon_to_mask"]


def polygon_to_mask(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise one closed polygon onto a ``(rows, columns)`` boolean grid.

    Parameters
    ----------
    vertices : array_like, shape (N, 2) or (N, 3)
        Polygon vertices as ``(x, y[, z])``; a ``z`` column is ignored. The
        ring may be given open or closed (first vertex repeated at the end).
    shape : tuple of int
        ``(rows, columns)`` of the output mask.

    Returns
    -------
    numpy.ndarray of bool, shape ``shape``
        ``True`` where the pixel centre is strictly inside the polygon
        (even-odd rule for self-intersecting rings); a ring of fewer than
        three vertices covers no pixel.

    Examples
    --------
    >>> polygon_to_mask([[0, 0], [1, 0], [1, 1], [0, 1]], (2, 2)).astype(int)
    array([[1, 0],
           [0, 0]])
    """
    import shapely

    rows, cols = int(shape[0]), int(shape[1])
    mask = np.zeros((rows, cols), dtype=bool)
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] < 2 or v.shape[0] < 3 or rows == 0 or cols == 0:
        return mask
    xs, ys = v[:, 0], v[:, 1]
    # Only pixels whose centres fall inside the bounding box can be inside.
    x0 = max(int(np.floor(xs.min() - 0.5)), 0)
    x1 = min(int(np.ceil(xs.max() - 0.5)), cols - 1)
    y0 = max(int(np.floor(ys.min() - 0.5)), 0)
    y1 = min(int(np.ceil(ys.max() - 0.5)), rows - 1)
    if x1 < x0 or y1 < y0:
        return mask
    px, py = np.meshgrid(
        np.arange(x0, x1 + 1, dtype=np.float64) + 0.5,
        np.arange(y0, y1 + 1, dtype=np.float64) + 0.5,
    )
    # GEOS's point-in-polygon test: boundary points are not contained (strict
    # interior), exactly, with robust predicates; a self-intersecting ring is
    # counted by ray-crossing parity (the even-odd rule).
    polygon = shapely.Polygon(v[:, :2])
    if _backtracking_box(np.asarray(polygon.exterior.coords)):
        return mask  # a zero-width ring: no centre is inside (GEOS would fill its box)
    shapely.prepare(polygon)
    mask[y0 : y1 + 1, x0 : x1 + 1] = shapely.contains_xy(polygon, px, py)
    return mask


def _backtracking_box(ring: np.ndarray) -> bool:
    """Tell whether a closed 5-point ring walks its bounding box's corners back and forth.

    GEOS answers point-in-polygon for a ring it takes for a rectangle (5
    points, all on the envelope's corners, each step changing x or y but not
    both) from the envelope alone. A ring that passes those checks without
    alternating x and y steps goes back over its own edge: it encloses
    nothing under the even-odd rule, yet GEOS would report its whole box.

    Returns
    -------
    bool
        True for such a back-tracking ring (it covers no pixel).
    """
    if ring.shape[0] != 5:
        return False
    xs, ys = ring[:, 0], ring[:, 1]
    on_x = (xs == xs.min()) | (xs == xs.max())
    on_y = (ys == ys.min()) | (ys == ys.max())
    if not (on_x.all() and on_y.all()):
        return False
    dx = xs[1:] != xs[:-1]
    dy = ys[1:] != ys[:-1]
    if (dx == dy).any():
        return False  # not what GEOS takes for a rectangle: its general path is exact
    return bool((dx[1:] == dx[:-1]).any())  # two x (or y) steps in a row: a back-track

"""Polygon rasterisation shared by ROIs, the simulator and the tests.

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
        (even-odd rule for self-intersecting rings).

    Examples
    --------
    >>> polygon_to_mask([[0, 0], [1, 0], [1, 1], [0, 1]], (2, 2)).astype(int)
    array([[1, 0],
           [0, 0]])
    """
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
    px = np.arange(x0, x1 + 1, dtype=np.float64)[None, :] + 0.5
    py = np.arange(y0, y1 + 1, dtype=np.float64)[:, None] + 0.5
    inside = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=bool)
    on_edge = np.zeros_like(inside)
    xa, ya = xs, ys
    xb, yb = np.roll(xs, -1), np.roll(ys, -1)
    for ax, ay, bx, by in zip(xa, ya, xb, yb):
        if ax == bx and ay == by:
            continue
        # Crossing-number test with the half-open rule on y.
        straddles = (ay > py) != (by > py)
        if ay != by:
            x_cross = ax + (py - ay) * (bx - ax) / (by - ay)
            inside ^= straddles & (px < x_cross)
        # Exact on-segment test: collinear and within the segment's box.
        cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
        within = (
            (px >= min(ax, bx)) & (px <= max(ax, bx)) & (py >= min(ay, by)) & (py <= max(ay, by))
        )
        on_edge |= (cross == 0) & within
    mask[y0 : y1 + 1, x0 : x1 + 1] = inside & ~on_edge
    return mask

"""Figures of ROIs, traces and registrations, drawn without touching matplotlib's state.

matplotlib is optional (the ``plot`` extra) and imported only inside these
functions, so ``import sima_fast`` never loads it. Figures are built as a
:class:`matplotlib.figure.Figure` with its own Agg canvas, never through
``pyplot``: no backend is selected, no figure is registered globally, and a
user's interactive session is left exactly as it was.

Conventions shared by every figure:

* images are drawn with pixel edges on integer coordinates (pixel ``(row,
  col)`` covers ``[col, col + 1] × [row, row + 1]``), the coordinates of
  :class:`sima_fast.ROI.ROI` polygons, and the axes are labelled in pixels;
* ROIs are outlined one by one (neighbours are never merged) and numbered at
  a point inside each;
* colours come from the Okabe–Ito palette (:data:`OKABE_ITO`), which stays
  distinguishable with the common colour-vision deficiencies; overlays of two
  images use magenta and green;
* the size of a figure follows the aspect of the frame, so a 128 × 256 frame
  fills a wide figure instead of leaving half of a square one blank.

:func:`roi_figure` draws the extraction summary
(:func:`sima_fast.extract.save_extract_summary`); :func:`traces_figure`,
:func:`segmentation_figure`, :func:`registration_figure` and
:func:`motion_figure` draw the comparisons of the demo (:mod:`sima_fast.demo`)
and work on any data of the same kind.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sima_fast._atomic import atomic_write

if TYPE_CHECKING:  # annotations only: matplotlib stays optional
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "OKABE_ITO",
    "draw_labels",
    "draw_outlines",
    "image_axes",
    "label_point",
    "mask_outlines",
    "motion_figure",
    "new_figure",
    "outline_points",
    "panel_figure",
    "pixel_lists",
    "registration_figure",
    "require_matplotlib",
    "rgb_overlay",
    "roi_figure",
    "save_figure",
    "save_pdf_pages",
    "segmentation_figure",
    "shade_pixels",
    "traces_figure",
]

#: The eight colours of Okabe & Ito's palette for colour-vision deficiencies.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

#: Resolution of saved PNG files, dots per inch.
PNG_DPI = 150
_FONT = 9.0  # body text, points
_LEGEND_FONT = 8.5


def require_matplotlib() -> None:
    """Check that matplotlib can be imported.

    Raises
    ------
    ImportError
        When it cannot, with a message naming the ``plot`` extra that
        installs it.
    """
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "matplotlib is not installed; install it with pip install 'sima_fast[plot]'"
        ) from exc


def new_figure(width: float, height: float) -> Figure:
    """Create a figure with its own Agg canvas and constrained layout.

    Parameters
    ----------
    width, height : float
        Size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with ``pyplot``; it is freed with its last reference.

    Raises
    ------
    ImportError
        When matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=PNG_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(w_pad=0.04, h_pad=0.04, wspace=0.03, hspace=0.03)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> str:
    """Write a figure atomically, in the format named by the file's suffix.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : str or path-like
        Destination, e.g. ``rois.png`` or ``rois.pdf``.

    Returns
    -------
    str
        The path written.
    """
    path = os.fspath(path)
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=PNG_DPI, metadata=_metadata(fmt))
    return path


def save_pdf_pages(figs: Sequence[Figure], path: str | os.PathLike, title: str) -> str:
    """Write figures as the pages of one PDF, atomically.

    Parameters
    ----------
    figs : sequence of matplotlib.figure.Figure
        One figure per page (pages may differ in size).
    path : str or path-like
        The PDF to write.
    title : str
        The document title stored in the PDF.

    Returns
    -------
    str
        The path written.
    """
    from matplotlib.backends.backend_pdf import PdfPages

    path = os.fspath(path)
    with atomic_write(path) as tmp:
        with PdfPages(tmp, metadata={**_metadata("pdf"), "Title": title}) as pdf:
            for fig in figs:
                pdf.savefig(fig)
    return path


def _metadata(fmt: str) -> dict[str, Any] | None:
    """File metadata naming sima_fast as the creator (PNG and PDF only)."""
    if fmt == "png":
        return {"Software": "sima_fast"}
    if fmt == "pdf":
        return {"Creator": "sima_fast"}
    return None


# ----------------------------------------------------------------------------
# Geometry: pixel lists, outlines, label points
# ----------------------------------------------------------------------------


def pixel_lists(masks: Any, frame_shape: Sequence[int]) -> list[tuple[np.ndarray, ...]]:
    """List the pixels of each ROI mask as coordinate arrays.

    Parameters
    ----------
    masks : array_like or scipy.sparse matrix
        Either ``(n, Z, Y, X)`` (or ``(n, Y, X)``) masks, or an ``(n, Z*Y*X)``
        sparse matrix such as :func:`sima_fast.extract.roi_mask_matrix`
        returns. A pixel belongs to a mask when its value is nonzero.
    frame_shape : sequence of int
        ``(Z, Y, X)`` (or ``(Y, X)``) of the frames.

    Returns
    -------
    list of tuple of numpy.ndarray
        Per mask, ``(z, y, x)`` integer arrays of its pixels (``z`` all zero
        for 2-D frames).
    """
    shape = tuple(int(s) for s in frame_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    out = []
    if hasattr(masks, "tocsr"):
        csr = masks.tocsr()
        for i in range(csr.shape[0]):
            row = csr.indices[csr.indptr[i] : csr.indptr[i + 1]]
            row = row[csr.data[csr.indptr[i] : csr.indptr[i + 1]] != 0]
            out.append(np.unravel_index(np.sort(row), shape))
        return out
    for mask in masks:
        mask = np.asarray(mask).reshape(shape)
        out.append(np.nonzero(mask))
    return out


def mask_outlines(ys: np.ndarray, xs: np.ndarray) -> list[np.ndarray]:
    """Trace the outline of a set of pixels in one plane.

    Parameters
    ----------
    ys, xs : numpy.ndarray of int
        Rows and columns of the pixels.

    Returns
    -------
    list of numpy.ndarray
        Closed ``(N, 2)`` rings of ``(x, y)`` points in image coordinates
        (pixel edges on integers), one per connected part and hole: the
        half-way contour between the pixels inside and outside.
    """
    from skimage.measure import find_contours

    if ys.size == 0:
        return []
    y0, x0 = int(ys.min()) - 1, int(xs.min()) - 1
    crop = np.zeros((int(ys.max()) - y0 + 2, int(xs.max()) - x0 + 2))
    crop[ys - y0, xs - x0] = 1.0
    return [
        np.column_stack([c[:, 1] + x0 + 0.5, c[:, 0] + y0 + 0.5]) for c in find_contours(crop, 0.5)
    ]


def label_point(ys: np.ndarray, xs: np.ndarray) -> tuple[float, float]:
    """Return a point inside a set of pixels at which to write its label.

    Parameters
    ----------
    ys, xs : numpy.ndarray of int
        Rows and columns of the pixels (at least one).

    Returns
    -------
    tuple of float
        ``(x, y)`` in image coordinates: the centroid when it falls on one
        of the pixels, else the centre of the pixel nearest to it.
    """
    cy, cx = float(ys.mean()), float(xs.mean())
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    if np.any((ys == round(cy)) & (xs == round(cx))):
        return cx + 0.5, cy + 0.5
    return float(xs[k]) + 0.5, float(ys[k]) + 0.5


def outline_points(polygon: Any) -> np.ndarray:
    """Return a closed ``(N + 1, 2)`` ring of an ROI polygon's ``(x, y)`` vertices.

    Parameters
    ----------
    polygon : array_like, shape (N, 2) or (N, 3)
        Vertices ``(x, y[, z])`` of an open ring, as in
        :attr:`sima_fast.ROI.ROI.rings`.

    Returns
    -------
    numpy.ndarray
        The ``(x, y)`` vertices with the first repeated at the end.
    """
    xy = np.asarray(polygon, dtype=np.float64)[:, :2]
    return np.vstack([xy, xy[:1]])


# ----------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------


def panel_figure(
    frame_shape: Sequence[int],
    rows: int,
    cols: int,
    *,
    max_width: float = 12.0,
    panel_area: float = 49.0,
    max_side: float = 10.0,
    extra_width: float = 0.7,
    extra_height: float = 1.2,
) -> tuple[Figure, np.ndarray]:
    """Create a figure of image panels whose size follows the frame's aspect.

    Each panel has the frame's aspect (square pixels) and the largest size
    within the limits, so a wide frame makes a wide figure and a tall
    frame a tall one, with little blank space around the images.

    Parameters
    ----------
    frame_shape : sequence of int
        ``(Y, X)`` of the images shown in every panel.
    rows, cols : int
        The grid of panels.
    max_width : float, optional
        Largest total width of the panels, in inches. Default: 12.
    panel_area : float, optional
        Largest area of one panel, in square inches. Default: 49 (7 × 7).
    max_side : float, optional
        Largest width and height of one panel, in inches. Default: 10.
    extra_width, extra_height : float, optional
        Room for tick labels, titles and a legend, in inches.

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : numpy.ndarray of Axes, shape (rows, cols)
    """
    height, width = (int(s) for s in frame_shape[-2:])
    scale = min(
        math.sqrt(panel_area / (width * height)),
        max_side / width,
        max_side / height,
        max_width / (cols * width),
    )
    fig = new_figure(
        cols * (width * scale + 0.25) + extra_width,
        rows * (height * scale + 0.45) + extra_height,
    )
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    return fig, axes


def image_axes(
    ax: Axes,
    image: Any,
    title: str | None = None,
    *,
    xlabel: bool = True,
    ylabel: bool = True,
    rgb: bool = False,
) -> None:
    """Draw an image in grey (or RGB) with pixel edges on integers and pixel axes.

    The grey scale spans the 0.5th to 99.5th percentile of the finite
    values; pixels that are NaN (never observed) are dark grey.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    image : array_like, shape (Y, X) or (Y, X, 3)
        The image (RGB values in ``[0, 1]`` with ``rgb=True``).
    title : str, optional
        Panel title.
    xlabel, ylabel : bool, optional
        Label the axes "x (pixels)" and "y (pixels)". Default: True.
    rgb : bool, optional
        ``image`` is RGB. Default: False.
    """
    import matplotlib

    image = np.asarray(image, dtype=np.float64)
    rows, cols = image.shape[:2]
    extent = (0.0, float(cols), float(rows), 0.0)
    if rgb:
        ax.imshow(np.clip(image, 0.0, 1.0), extent=extent, interpolation="nearest")
    else:
        finite = image[np.isfinite(image)]
        lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
        cmap = matplotlib.colormaps["gray"].with_extremes(bad="#303030")
        ax.imshow(
            image,
            cmap=cmap,
            vmin=lo,
            vmax=max(hi, lo + 1e-12),
            extent=extent,
            interpolation="nearest",
        )
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.tick_params(labelsize=_FONT - 1, length=3)
    if xlabel:
        ax.set_xlabel("x (pixels)", fontsize=_FONT)
    if ylabel:
        ax.set_ylabel("y (pixels)", fontsize=_FONT)
    if title:
        ax.set_title(title, fontsize=_FONT + 1)


def draw_outlines(
    ax: Axes,
    rings: Sequence[np.ndarray],
    colour: str,
    *,
    linewidth: float = 1.0,
    linestyle: str = "-",
) -> None:
    """Draw closed outlines as one collection of lines.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    rings : sequence of numpy.ndarray
        ``(N, 2)`` rings of ``(x, y)`` points (see :func:`mask_outlines`).
    colour : str
        Line colour.
    linewidth : float, optional
        In points. Default: 1.
    linestyle : str or tuple, optional
        Matplotlib line style. Default: solid.

    Notes
    -----
    Each line has a thin dark edge, so that it reads on bright and dark
    pixels alike.
    """
    from matplotlib.collections import LineCollection

    if rings:
        ax.add_collection(
            LineCollection(
                list(rings),
                colors=colour,
                linewidths=linewidth,
                linestyles=linestyle,
                capstyle="round",
                joinstyle="round",
                path_effects=_edge(linewidth),
            )
        )


def _edge(linewidth: float) -> list[Any]:
    """Path effects drawing a line over a slightly wider, dark, translucent copy."""
    from matplotlib import patheffects

    return [
        patheffects.Stroke(linewidth=linewidth + 1.3, foreground="black", alpha=0.55),
        patheffects.Normal(),
    ]


def _line(colour: str, label: str, linewidth: float = 1.2, linestyle: Any = "-") -> Any:
    """Make a legend entry for outlines drawn by :func:`draw_outlines`."""
    from matplotlib.lines import Line2D

    return Line2D(
        [],
        [],
        color=colour,
        lw=linewidth,
        ls=linestyle,
        label=label,
        path_effects=_edge(linewidth),
    )


def draw_labels(
    ax: Axes, points: Sequence[tuple[float, float]], texts: Sequence[str], fontsize: float
) -> None:
    """Write labels centred on points, white with a dark edge (readable on any image).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    points : sequence of (x, y)
        Where to centre each label.
    texts : sequence of str
        The labels.
    fontsize : float
        In points.
    """
    from matplotlib import patheffects

    stroke = [patheffects.withStroke(linewidth=max(1.5, fontsize / 4), foreground="black")]
    for (x, y), text in zip(points, texts, strict=True):
        ax.text(
            x,
            y,
            text,
            color="white",
            fontsize=fontsize,
            ha="center",
            va="center",
            fontweight="bold",
            path_effects=stroke,
            clip_on=True,
        )


def shade_pixels(ax: Axes, mask: Any, colour: str, alpha: float = 0.85) -> None:
    """Fill the pixels of a 2-D boolean mask with a colour.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel, already showing an image of the mask's shape.
    mask : array_like of bool, shape (Y, X)
        The pixels to fill.
    colour : str
        Fill colour.
    alpha : float, optional
        Opacity. Default: 0.85.
    """
    from matplotlib.colors import to_rgba

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    rgba = np.zeros((*mask.shape, 4))
    rgba[mask] = to_rgba(colour, alpha)
    rows, cols = mask.shape
    ax.imshow(rgba, extent=(0.0, float(cols), float(rows), 0.0), interpolation="nearest")


def rgb_overlay(magenta: Any, green: Any) -> np.ndarray:
    """Overlay two images: the first in magenta, the second in green.

    Each image is scaled from its 1st to its 99.5th percentile to ``[0,
    1]`` (NaN as 0); where both are bright the overlay is white, where
    they disagree it is magenta or green.

    Parameters
    ----------
    magenta, green : array_like, shape (Y, X)
        The two images (same shape).

    Returns
    -------
    numpy.ndarray, shape (Y, X, 3)
        RGB values in ``[0, 1]``.
    """
    scaled = []
    for image in (magenta, green):
        image = np.asarray(image, dtype=np.float64)
        finite = image[np.isfinite(image)]
        lo, hi = np.percentile(finite, [1.0, 99.5]) if finite.size else (0.0, 1.0)
        s = (image - lo) / max(hi - lo, 1e-12)
        scaled.append(np.clip(np.nan_to_num(s, nan=0.0), 0.0, 1.0))
    m, g = scaled
    return np.stack([m, g, m], axis=-1)


def _label_size(pixels: Sequence[tuple[np.ndarray, ...]], points_per_pixel: float) -> float:
    """Choose a label font size that fits inside a typical ROI (5 to 9 points)."""
    sizes = [p[0].size for p in pixels if p[0].size]
    if not sizes:
        return 7.0
    diameter = 2.0 * math.sqrt(float(np.median(sizes)) / math.pi)
    return float(np.clip(0.55 * diameter * points_per_pixel, 5.0, 9.0))


def _points_per_pixel(ax: Axes, columns: int) -> float:
    """Points per image pixel of a panel once the figure is laid out."""
    fig = ax.get_figure()
    fig.canvas.draw()  # settles the constrained layout
    return ax.get_window_extent().width / fig.dpi * 72.0 / columns


def _legend(fig: Figure, handles: list[Any], ncols: int) -> None:
    """Place a legend below the panels, outside them."""
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=ncols,
        fontsize=_LEGEND_FONT,
        frameon=False,
        handlelength=2.2,
        columnspacing=1.6,
    )


# ----------------------------------------------------------------------------
# The figures
# ----------------------------------------------------------------------------


def roi_figure(
    image: Any,
    masks: Any,
    texts: Sequence[str] | None = None,
    overlap: Any = None,
    title: str | None = None,
    planes: Sequence[int] | None = None,
    outline_label: str = "ROI outline and label",
) -> Figure:
    """Draw ROIs, outlined one by one and numbered, on a mean image.

    One panel per plane (in a grid of up to three columns), the ROIs
    outlined in yellow with their labels inside them and the pixels shared
    by several ROIs filled in vermillion, with a legend below.

    Parameters
    ----------
    image : array_like, shape (Z, Y, X) or (Y, X)
        The image to draw on, e.g. the time average of the signal channel.
    masks : array_like or scipy.sparse matrix or None
        The ROI masks, as :func:`pixel_lists` accepts them (None: no ROIs).
    texts : sequence of str, optional
        The label of each ROI. Default: its index.
    overlap : array_like of bool, optional
        ``(Z, Y, X)`` pixels shared by ROIs, filled and named in the legend.
    title : str, optional
        Figure title.
    planes : sequence of int, optional
        Planes to draw. Default: all.
    outline_label : str, optional
        The legend's entry for the outlines (say what the labels are).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Patch

    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = image[None]
    num_planes, rows, cols = image.shape
    planes = list(range(num_planes)) if planes is None else [int(z) for z in planes]
    pixels = [] if masks is None else pixel_lists(masks, image.shape)
    texts = [str(i) for i in range(len(pixels))] if texts is None else [str(t) for t in texts]
    if overlap is not None:
        overlap = np.asarray(overlap, dtype=bool).reshape(image.shape)
    ncols = min(len(planes), 3 if cols <= 1.5 * rows else 2)
    nrows = math.ceil(len(planes) / ncols)
    fig, axes = panel_figure(
        (rows, cols), nrows, ncols, extra_height=0.9 + 0.3 * (title is not None)
    )
    for k, ax in enumerate(axes.ravel()):
        if k >= len(planes):
            ax.set_axis_off()
            continue
        z = planes[k]
        on_plane = [(p[1][p[0] == z], p[2][p[0] == z]) for p in pixels]
        count = sum(ys.size > 0 for ys, _ in on_plane)
        plane_title = f"plane {z}: {count} ROIs" if num_planes > 1 else None
        image_axes(
            ax, image[z], plane_title, xlabel=k // ncols == nrows - 1, ylabel=k % ncols == 0
        )
        if overlap is not None:
            shade_pixels(ax, overlap[z], OKABE_ITO["vermillion"])
        draw_outlines(
            ax,
            [ring for ys, xs in on_plane for ring in mask_outlines(ys, xs)],
            OKABE_ITO["yellow"],
            linewidth=0.9,
        )
    handles = [_line(OKABE_ITO["yellow"], outline_label)]
    if overlap is not None and overlap[planes].any():
        handles.append(Patch(color=OKABE_ITO["vermillion"], label="pixels in more than one ROI"))
    _legend(fig, handles, len(handles))
    if title:
        fig.suptitle(title, fontsize=_FONT + 2)
    if pixels:
        size = _label_size(pixels, _points_per_pixel(axes[0, 0], cols))
        for k, z in enumerate(planes):
            keep = [i for i, p in enumerate(pixels) if np.any(p[0] == z)]
            points = [
                label_point(pixels[i][1][pixels[i][0] == z], pixels[i][2][pixels[i][0] == z])
                for i in keep
            ]
            draw_labels(axes.ravel()[k], points, [texts[i] for i in keep], size)
    return fig


def traces_figure(
    time: Any,
    traces: Any,
    inferred_spikes: Any,
    true_spikes: Any = None,
    true_calcium: Any = None,
    names: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Draw traces with their inferred spikes, beside the true ones when known.

    One row per trace: the trace in black (the true calcium, scaled onto
    the trace by least squares, dashed blue), then beneath it the inferred
    spikes as vermillion bars (height: amplitude relative to the row's
    largest) and the true spikes as blue ticks.

    Parameters
    ----------
    time : array_like, shape (T,)
        Time of each frame, in seconds.
    traces : array_like, shape (n, T)
        The extracted traces.
    inferred_spikes : array_like, shape (n, T)
        Inferred spike amplitudes (nonnegative).
    true_spikes, true_calcium : array_like, shape (n, T), optional
        Ground truth, when known.
    names : sequence of str, optional
        A caption per row.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    time = np.asarray(time, dtype=np.float64)
    traces = np.atleast_2d(np.asarray(traces, dtype=np.float64))
    inferred = np.atleast_2d(np.asarray(inferred_spikes, dtype=np.float64))
    n = traces.shape[0]
    fig = new_figure(10.0, 1.15 * n + 1.0 + 0.2 * (title is not None))
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    blue, red = OKABE_ITO["blue"], OKABE_ITO["vermillion"]
    for i, ax in enumerate(axes):
        trace = traces[i]
        finite = np.isfinite(trace)
        lo, hi = (np.min(trace[finite]), np.max(trace[finite])) if finite.any() else (0.0, 1.0)
        span = max(hi - lo, 1e-12)
        ax.plot(time, trace, color="black", lw=0.8)
        if true_calcium is not None:
            truth = np.asarray(true_calcium[i], dtype=np.float64)
            ok = finite & np.isfinite(truth)
            if ok.sum() > 1 and np.std(truth[ok]) > 0:
                slope, offset = np.polyfit(truth[ok], trace[ok], 1)
                ax.plot(time, offset + slope * truth, color=blue, lw=1.0, ls=(0, (4, 2)))
        # Below the trace: a row of inferred spikes (bars rising from a base
        # line), then a row of true spikes (ticks); the rows are named on the
        # y axis, beside the trace's own ticks.
        spikes = np.nan_to_num(inferred[i], nan=0.0)
        peak = spikes.max() if spikes.size and spikes.max() > 0 else 1.0
        hit = spikes > 0.02 * peak
        base = lo - 0.5 * span
        ax.vlines(time[hit], base, base + 0.33 * span * spikes[hit] / peak, color=red, lw=1.1)
        ticks = [t for t in MaxNLocator(3).tick_values(lo, hi) if lo <= t <= hi]
        positions, labels = [base + 0.12 * span], ["inferred"]
        bottom = base
        if true_spikes is not None:
            bottom = base - 0.3 * span
            events = np.asarray(true_spikes[i]) > 0
            ax.vlines(time[events], bottom, bottom + 0.22 * span, color=blue, lw=1.1)
            positions.insert(0, bottom + 0.11 * span)
            labels.insert(0, "true")
        ax.set_ylim(bottom - 0.05 * span, hi + 0.06 * span)
        ax.set_yticks(positions + ticks, labels + [f"{t:g}" for t in ticks])
        ax.tick_params(labelsize=_FONT - 1, length=3)
        ax.spines[["top", "right"]].set_visible(False)
        if names is not None:
            ax.set_title(names[i], fontsize=_FONT, loc="left", pad=2)
    axes[-1].set_xlabel("time (s)", fontsize=_FONT)
    axes[-1].set_xlim(time[0], time[-1])
    fig.supylabel("trace (F / mean F) and spikes", fontsize=_FONT)
    handles = [Line2D([], [], color="black", lw=1.0, label="extracted trace")]
    if true_calcium is not None:
        handles.append(
            Line2D([], [], color=blue, lw=1.0, ls=(0, (4, 2)), label="true calcium (scaled)")
        )
    handles.append(Line2D([], [], color=red, lw=1.5, label="inferred spikes (height: amplitude)"))
    if true_spikes is not None:
        handles.append(Line2D([], [], color=blue, lw=1.5, label="true spikes"))
    _legend(fig, handles, len(handles))
    if title:
        fig.suptitle(title, fontsize=_FONT + 2)
    return fig


def segmentation_figure(
    image: Any,
    true_masks: Any,
    results: Sequence[tuple[str, Any, Any]],
    planes: Sequence[int] | None = None,
    title: str | None = None,
) -> Figure:
    """Draw segmentations against the true cells, one row per segmentation.

    Found ROIs matched to a true cell are outlined in sky blue, found ROIs
    without a match in vermillion (false positives); true cells appear
    dotted white where found and dashed orange where missed.

    Parameters
    ----------
    image : array_like, shape (Z, Y, X)
        The image to draw on.
    true_masks : array_like or scipy.sparse matrix
        The true cells, as :func:`pixel_lists` accepts them.
    results : sequence of (name, found_masks, matches)
        Per segmentation: its name, the masks it found (as
        :func:`pixel_lists` accepts them) and the ``(k, 2)`` array of
        ``(found index, true index)`` matches
        (:func:`sima_fast.segment.match_rois`).
    planes : sequence of int, optional
        Planes to draw (one column each). Default: all.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = image[None]
    planes = list(range(image.shape[0])) if planes is None else [int(z) for z in planes]
    truth = pixel_lists(true_masks, image.shape)
    colours = {
        "found": OKABE_ITO["sky_blue"],
        "false": OKABE_ITO["vermillion"],
        "missed": OKABE_ITO["orange"],
        "true": "white",
    }
    fig, axes = panel_figure(
        image.shape[1:], len(results), len(planes), max_width=9.5, extra_height=1.3
    )
    for r, (name, found_masks, matches) in enumerate(results):
        found = pixel_lists(found_masks, image.shape)
        pairs = np.asarray(matches, dtype=np.int64).reshape(-1, 2)
        matched_found, matched_true = set(pairs[:, 0].tolist()), set(pairs[:, 1].tolist())
        for c, z in enumerate(planes):
            ax = axes[r, c]
            counts = {"found": 0, "false": 0, "missed": 0}
            groups: dict[str, list[np.ndarray]] = {k: [] for k in colours}
            for i, p in enumerate(found):
                ys, xs = p[1][p[0] == z], p[2][p[0] == z]
                key = "found" if i in matched_found else "false"
                if ys.size:
                    counts[key] += 1
                groups[key] += mask_outlines(ys, xs)
            for i, p in enumerate(truth):
                ys, xs = p[1][p[0] == z], p[2][p[0] == z]
                key = "true" if i in matched_true else "missed"
                if ys.size and key == "missed":
                    counts["missed"] += 1
                groups[key] += mask_outlines(ys, xs)
            image_axes(
                ax,
                image[z],
                f"{name}, plane {z}: {counts['found']} matched, {counts['false']} extra, "
                f"{counts['missed']} missed",
                xlabel=r == len(results) - 1,
                ylabel=c == 0,
            )
            draw_outlines(
                ax, groups["true"], colours["true"], linewidth=0.8, linestyle=(0, (1, 1.5))
            )
            draw_outlines(
                ax, groups["missed"], colours["missed"], linewidth=1.4, linestyle=(0, (3, 1.5))
            )
            draw_outlines(ax, groups["found"], colours["found"], linewidth=1.0)
            draw_outlines(ax, groups["false"], colours["false"], linewidth=1.4)
    handles = [
        _line(colours["found"], "found, matches a true cell"),
        _line(colours["false"], "found, no true cell (extra)", 1.4),
        _line(colours["true"], "true cell, found", 0.8, (0, (1, 1.5))),
        _line(colours["missed"], "true cell, missed", 1.4, (0, (3, 1.5))),
    ]
    _legend(fig, handles, 4)
    if title:
        fig.suptitle(title, fontsize=_FONT + 2)
    return fig


def registration_figure(
    source: Any,
    target: Any,
    registered: Any,
    imported: Sequence[np.ndarray] = (),
    expected: Sequence[np.ndarray] = (),
    title: str | None = None,
) -> Figure:
    """Draw a registration: overlays before and after, and imported ROIs on the target.

    Three panels: the source image (magenta) over the target (green) as
    recorded; the source resampled into the target's frame over the
    target; and the target with the imported ROI outlines (sky blue) over,
    when known, where they should be (wider, dashed orange).

    Parameters
    ----------
    source, target : array_like, shape (Y, X)
        The two images (e.g. two sessions' time averages), same shape.
    registered : array_like, shape (Y, X)
        ``source`` resampled into the frame of ``target``.
    imported : sequence of numpy.ndarray, optional
        ``(N, 2)`` rings of ``(x, y)`` outlines of the imported ROIs.
    expected : sequence of numpy.ndarray, optional
        Rings of where the ROIs truly are in the target.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Patch

    fig, axes = panel_figure(np.shape(target), 1, 3, extra_height=1.4)
    a, b, c = axes[0]
    image_axes(a, rgb_overlay(source, target), "before registration", rgb=True)
    image_axes(b, rgb_overlay(registered, target), "after registration", rgb=True, ylabel=False)
    image_axes(c, target, f"{len(imported)} ROIs imported into the target", ylabel=False)
    draw_outlines(c, list(expected), OKABE_ITO["orange"], linewidth=2.6, linestyle=(0, (2, 1.5)))
    draw_outlines(c, list(imported), OKABE_ITO["sky_blue"], linewidth=1.0)
    handles = [
        Patch(color="#FF00FF", label="source (session 1)"),
        Patch(color="#00FF00", label="target (session 2)"),
        Patch(facecolor="white", edgecolor="0.5", label="both"),
        _line(OKABE_ITO["sky_blue"], "imported ROI", 1.0),
    ]
    if expected:
        handles.append(_line(OKABE_ITO["orange"], "true position", 2.6, (0, (2, 1.5))))
    _legend(fig, handles, len(handles))
    if title:
        fig.suptitle(title, fontsize=_FONT + 2)
    return fig


def motion_figure(
    before: Any,
    after: Any,
    time: Any,
    estimated: Any,
    true: Any,
    title: str | None = None,
) -> Figure:
    """Draw a motion correction: mean images before and after, displacements against the truth.

    Left, the mean image of the movie as recorded (blurred by the motion)
    and of the corrected movie. Right, one row each for ``dy`` and ``dx``:
    the true displacement (black) and the estimate (vermillion, dashed),
    then a row with the error of both components (estimate minus truth,
    after removing their mean difference, the unknown position of the
    reference), whose scale shows how far below a pixel it stays.

    Parameters
    ----------
    before, after : array_like, shape (Y, X)
        Mean images of the uncorrected and corrected movie (NaN where no
        frame observes a pixel); their shapes may differ.
    time : array_like, shape (T,)
        Time of each frame, in seconds.
    estimated, true : array_like, shape (T, 2)
        ``(dy, dx)`` per frame, in pixels: the estimate and the truth.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If the images are not 2-D, or ``estimated`` and ``true`` are not
        ``(T, 2)`` with ``T`` the length of ``time``.
    """
    from matplotlib.lines import Line2D

    before = np.asarray(before, dtype=np.float64)
    after = np.asarray(after, dtype=np.float64)
    time = np.asarray(time, dtype=np.float64).ravel()
    est = np.asarray(estimated, dtype=np.float64)
    tru = np.asarray(true, dtype=np.float64)
    if before.ndim != 2 or after.ndim != 2:
        raise ValueError(
            f"before and after must be 2-D images, got shapes {before.shape} and {after.shape}"
        )
    if est.shape != (time.size, 2) or tru.shape != (time.size, 2):
        raise ValueError(
            f"estimated {est.shape} and true {tru.shape} must both be ({time.size}, 2): "
            "(dy, dx) per frame"
        )
    aligned = est - np.mean(est - tru, axis=0)
    error = aligned - tru
    fig = new_figure(11.5, 5.0 + 0.25 * (title is not None))
    left, right = fig.subfigures(1, 2, width_ratios=[1.5, 1.0], wspace=0.02)
    images = left.subplots(1, 2)
    image_axes(images[0], before, "mean image, as recorded")
    image_axes(images[1], after, "mean image, motion-corrected", ylabel=False)
    axes = right.subplots(3, 1, sharex=True, height_ratios=[1.0, 1.0, 0.8])
    red = OKABE_ITO["vermillion"]
    for k, (ax, name) in enumerate(zip(axes[:2], ("dy", "dx"))):
        ax.plot(time, tru[:, k], color="black", lw=1.6, label="true")
        ax.plot(time, aligned[:, k], color=red, lw=1.1, ls=(0, (3, 1.5)), label="estimated")
        ax.set_ylabel(f"{name} (px)", fontsize=_FONT)
    rms = float(np.sqrt(np.mean(np.sum(error**2, axis=1))))
    axes[2].axhline(0.0, color="0.6", lw=0.8)
    axes[2].plot(time, error[:, 0], color=OKABE_ITO["blue"], lw=1.0, label="dy")
    axes[2].plot(time, error[:, 1], color=OKABE_ITO["orange"], lw=1.0, label="dx")
    axes[2].set_ylabel("error (px)", fontsize=_FONT)
    axes[2].set_title(
        f"estimate − truth (offset removed): RMS {rms:.3f} px", fontsize=_FONT, loc="left", pad=2
    )
    axes[2].legend(fontsize=_LEGEND_FONT, frameon=False, ncols=2, loc="upper right")
    axes[2].set_xlabel("time (s)", fontsize=_FONT)
    axes[2].set_xlim(time[0], time[-1])
    for ax in axes:
        ax.tick_params(labelsize=_FONT - 1, length=3)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_title("displacement of each frame", fontsize=_FONT + 1)
    handles = [
        Line2D([], [], color="black", lw=1.6, label="true displacement"),
        Line2D([], [], color=red, lw=1.1, ls=(0, (3, 1.5)), label="estimated (offset removed)"),
    ]
    _legend(fig, handles, 2)
    if title:
        fig.suptitle(title, fontsize=_FONT + 2)
    return fig

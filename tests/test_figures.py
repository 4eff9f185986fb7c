"""Figures: the extraction summary and the demo's comparisons (sima_fast.figures)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse

from sima_fast import figures
from sima_fast.extract import save_extract_summary

pytest.importorskip("matplotlib")


def _discs(shape, centres, radius):
    """Boolean disc masks ``(n, Z, Y, X)`` at ``(z, y, x)`` centres."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return np.stack(
        [(z == c[0]) & ((y - c[1]) ** 2 + (x - c[2]) ** 2 <= radius**2) for c in centres]
    )


def _record(shape, masks, ids=None):
    """An extraction record as ``extract()`` returns it, for ``masks``."""
    rng = np.random.default_rng(0)
    counts = masks.reshape(len(masks), -1).sum(axis=0)
    rois = [{"id": None if ids is None else ids[i], "label": None} for i in range(len(masks))]
    return {
        "mean_frame": rng.uniform(100, 200, shape),
        "overlap": (np.zeros(0, dtype=np.int64), np.flatnonzero(counts > 1)),
        "rois": rois,
        "timestamp": "2024-01-02-03h04m05s",
    }


def _png_size(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _pdf_pages(path):
    with open(path, "rb") as fh:
        data = fh.read()
    assert data[:4] == b"%PDF"
    boxes = re.findall(rb"/MediaBox \[ *([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) *\]", data)
    return [(float(b[2]) - float(b[0]), float(b[3]) - float(b[1])) for b in boxes]


@pytest.mark.parametrize(
    ("rows", "cols", "low", "high"), [(128, 256, 1.45, 2.2), (128, 128, 0.8, 1.2)]
)
def test_summary_follows_the_frame_aspect(tmp_path, rows, cols, low, high):
    shape = (1, rows, cols)
    masks = _discs(shape, [(0, 30, 40), (0, 36, 48), (0, 90, 100)], 6)
    record = _record(shape, masks)
    matrix = scipy.sparse.csr_matrix(masks.reshape(3, -1).astype(np.float64))
    pdf = tmp_path / "summary.pdf"
    written = save_extract_summary(record, pdf, matrix, label="cells")
    assert written == [str(pdf), str(tmp_path / "summary.png")]
    width, height = _png_size(tmp_path / "summary.png")
    assert low < width / height < high
    ((page_w, page_h),) = _pdf_pages(pdf)
    assert low < page_w / page_h < high
    # the panel (square pixels) takes most of the figure: no half-blank page
    fig = figures.roi_figure(record["mean_frame"], matrix, None, None, "t")
    fig.canvas.draw()
    box = fig.axes[0].get_window_extent()
    fig_w, fig_h = fig.get_size_inches() * fig.dpi
    assert box.width * box.height > 0.55 * fig_w * fig_h
    assert box.width / box.height == pytest.approx(cols / rows, rel=0.02)


def test_summary_figure_content(tmp_path):
    shape = (2, 64, 96)
    masks = _discs(shape, [(0, 20, 20), (0, 20, 28), (1, 40, 60)], 5)  # 0 and 1 overlap
    record = _record(shape, masks, ids=["a1", "b2", "c3"])
    fig = figures.roi_figure(
        record["mean_frame"],
        masks,
        ["a1", "b2", "c3"],
        np.zeros(shape, bool) | (masks.sum(axis=0) > 1),
        "Signals 'cells'",
        outline_label="ROI outline, labelled with the ROI's id",
    )
    assert fig._suptitle.get_text() == "Signals 'cells'"
    plane0, plane1 = fig.axes[:2]
    assert plane0.get_title() == "plane 0: 2 ROIs" and plane1.get_title() == "plane 1: 1 ROIs"
    assert plane0.get_xlabel() == "x (pixels)" and plane0.get_ylabel() == "y (pixels)"
    # one outline per ROI, even where two ROIs touch (never merged)
    (outlines,) = [c for c in plane0.collections if len(c.get_paths())]
    assert len(outlines.get_paths()) == 2
    assert sorted(t.get_text() for t in plane0.texts) == ["a1", "b2"]
    assert [t.get_text() for t in plane1.texts] == ["c3"]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "ROI outline, labelled with the ROI's id",
        "pixels in more than one ROI",
    ]
    # labels do not overlap each other
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    a, b = (t.get_window_extent(renderer) for t in plane0.texts)
    assert not a.overlaps(b)

    # the summary: a PDF page per plane, one PNG of both; the title names the label
    pdf = tmp_path / "s.pdf"
    matrix = scipy.sparse.csr_matrix(masks.reshape(3, -1))
    assert save_extract_summary(record, pdf, matrix) == [str(pdf), str(tmp_path / "s.png")]
    assert len(_pdf_pages(pdf)) == 2
    with open(pdf, "rb") as fh:
        assert b"2024-01-02-03h04m05s" in fh.read()  # no label given: the timestamp stands in


def test_outlines_and_label_points():
    ys, xs = np.array([2]), np.array([3])
    (ring,) = figures.mask_outlines(ys, xs)
    assert (ring.min(axis=0) >= [3, 2]).all() and (ring.max(axis=0) <= [4, 3]).all()
    np.testing.assert_allclose(ring.mean(axis=0), [3.5, 2.5], atol=0.1)
    # a ring: the hole is outlined too, the label lands on a pixel of the ROI
    yy, xx = np.mgrid[:9, :9]
    ring_mask = (np.hypot(yy - 4, xx - 4) <= 4) & (np.hypot(yy - 4, xx - 4) > 2)
    assert len(figures.mask_outlines(*np.nonzero(ring_mask))) == 2
    x, y = figures.label_point(*np.nonzero(ring_mask))
    assert ring_mask[int(y), int(x)]
    assert figures.mask_outlines(np.array([], int), np.array([], int)) == []
    closed = figures.outline_points([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [2.0, 1.0, 1.0]])
    assert closed.shape == (4, 2) and (closed[0] == closed[-1]).all()
    pixels = figures.pixel_lists(scipy.sparse.csr_matrix(ring_mask.reshape(1, -1)), (9, 9))
    assert len(pixels) == 1 and pixels[0][0].size == ring_mask.sum()


def test_rgb_overlay_is_grey_where_the_images_agree():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 1, (16, 16))
    same = figures.rgb_overlay(image, image)
    np.testing.assert_allclose(same[..., 0], same[..., 1])
    np.testing.assert_allclose(same[..., 0], same[..., 2])
    image[0, 0] = np.nan
    assert np.isfinite(figures.rgb_overlay(image, image)).all()


def test_comparison_figures(tmp_path):
    rng = np.random.default_rng(2)
    time = np.arange(100) / 10.0
    truth = (rng.uniform(size=(3, 100)) > 0.9).astype(float)
    fig = figures.traces_figure(
        time, 1 + rng.normal(size=(3, 100)), truth, truth, truth, ["a", "b", "c"], "traces"
    )
    path = figures.save_figure(fig, tmp_path / "traces.png")
    assert _png_size(path)[0] > _png_size(path)[1]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "extracted trace",
        "true calcium (scaled)",
        "inferred spikes (height: amplitude)",
        "true spikes",
    ]

    shape = (1, 40, 60)
    true = _discs(shape, [(0, 10, 10), (0, 25, 40)], 4)
    found = _discs(shape, [(0, 10, 11), (0, 30, 15)], 4)
    fig = figures.segmentation_figure(
        np.ones(shape), true, [("A", found, np.array([[0, 0]]))], title="seg"
    )
    assert fig.axes[0].get_title() == "A, plane 0: 1 matched, 1 extra, 1 missed"
    figures.save_figure(fig, tmp_path / "seg.png")

    image = rng.uniform(size=(40, 60))
    square = np.array([[5.0, 5.0], [9.0, 5.0], [9.0, 9.0], [5.0, 9.0]])
    fig = figures.registration_figure(
        image, image, image, [figures.outline_points(square)], [figures.outline_points(square)]
    )
    assert [ax.get_title() for ax in fig.axes[:3]] == [
        "before registration",
        "after registration",
        "1 ROIs imported into the target",
    ]
    path = figures.save_figure(fig, tmp_path / "reg.pdf")
    assert len(_pdf_pages(path)) == 1


def test_without_matplotlib_the_summary_is_skipped(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"sima_fast\[plot\]"):
        figures.require_matplotlib()
    shape = (1, 8, 8)
    masks = _discs(shape, [(0, 4, 4)], 2)
    with pytest.warns(UserWarning, match="matplotlib is not installed"):
        written = save_extract_summary(
            _record(shape, masks),
            tmp_path / "s.pdf",
            scipy.sparse.csr_matrix(masks.reshape(1, -1)),
        )
    assert written == [] and list(tmp_path.iterdir()) == []


def test_figures_leave_matplotlib_global_state_alone(tmp_path):
    # In a fresh interpreter: importing sima_fast loads no matplotlib, and
    # drawing and saving figures never loads pyplot (no backend is chosen).
    script = f"""
import sys
import numpy as np
import sima_fast, sima_fast.demo, sima_fast.extract, sima_fast.figures
sima_fast.ImagingDataset
assert "matplotlib" not in sys.modules, "import sima_fast loaded matplotlib"
from sima_fast import figures
fig = figures.roi_figure(np.ones((1, 16, 16)), np.ones((1, 1, 16, 16), bool))
figures.save_figure(fig, {str(tmp_path / "f.png")!r})
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

"""A human-readable summary of a dataset, for ``sima-fast info`` and the demo."""

from __future__ import annotations

from typing import Any

__all__ = ["dataset_summary"]


def dataset_summary(dataset: Any) -> str:
    """Describe an :class:`ImagingDataset` in a human-readable, multi-line summary.

    It lists the sequences (kind, shape, dtype), the frame shape, the
    channels, the ROI sets and the labels of extracted signals. ``sima-fast
    info`` prints it, and so does the demo.

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset to describe.

    Returns
    -------
    str
        Several lines, the first the dataset's ``repr``.
    """
    lines = [repr(dataset)]
    lines.append(f"  directory: {dataset.savedir or '(in memory)'}")
    z, y, x, c = dataset.frame_shape
    lines.append(f"  frame shape: {z} plane(s) x {y} rows x {x} columns x {c} channel(s)")
    lines.append(f"  channels: {', '.join(dataset.channel_names)}")
    for i, seq in enumerate(dataset.sequences):
        lines.append(f"  sequence {i}: {len(seq)} frames, {seq.dtype}, {seq.describe()}")
    rois = dataset.ROIs
    if rois:
        for label, roilist in rois.items():
            lines.append(f"  ROI set {label!r}: {len(roilist)} ROI(s)")
    else:
        lines.append("  ROI sets: none")
    any_signals = False
    for ch, name in enumerate(dataset.channel_names):
        for label, rec in dataset.signals(ch).items():
            any_signals = True
            n = len(rec.get("rois", [])) if isinstance(rec, dict) else 0
            lines.append(f"  signals {label!r} (channel {name}): {n} ROI(s)")
    if not any_signals:
        lines.append("  signals: none")
    return "\n".join(lines)

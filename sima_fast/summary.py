"""A human-readable summary of a dataset, for ``sima-fast info`` and the demo."""

from __future__ import annotations

from typing import Any

__all__ = ["dataset_summary"]


def dataset_summary(dataset: Any) -> str:
    """Describe an :class:`ImagingDataset` in a human-readable, multi-line summary.

    It lists the sequences (kind, shape, dtype), the frame shape, the
    channels, the ROI sets and the extracted signals (label, number of ROIs
    and frames, whether spikes were inferred). ``sima-fast info`` and
    ``sima-fast create`` print it, and so does the demo.

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
            lines.append(f"  signals {label!r} (channel {name}): {_signals_text(rec)}")
    if not any_signals:
        lines.append("  signals: none")
    return "\n".join(lines)


def _signals_text(record: Any) -> str:
    """Describe one signals record: its ROIs, its frames and whether it has spikes."""
    if not isinstance(record, dict):
        return "0 ROI(s)"
    text = f"{len(record.get('rois', []))} ROI(s)"
    raw = record.get("raw")
    if isinstance(raw, (list, tuple)) and all(getattr(r, "ndim", 0) == 2 for r in raw):
        text += f" x {sum(r.shape[1] for r in raw)} frames"
    if record.get("spikes") is not None:
        text += ", spikes inferred"
    return text

"""Bad arguments to the public API get a typed error that names the argument (issue 20).

The sweep (``BAD_INPUTS``) feeds one bad value at a time to each public
callable: wrong types, NaN/inf where a finite number is expected, negative
sizes, wrong-length lists, bool-vs-int confusion, strings where numbers or
bools are expected, labels that cannot be stored. Each must raise a
TypeError or ValueError (``ArgumentTypeError`` is both) whose message
contains the argument's name, before anything is written.

The other tests cover the single cases the audit reported: channel names
that are not strings, truthy strings taken as bools, ROI and signal labels
that HDF5 cannot store, overflowing traces in spike inference, and the
command line's one-line errors.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import sima_fast as sima
from sima_fast import batch, distributed, extract, spikes, transform_rois
from sima_fast._validate import ArgumentTypeError, check_label
from sima_fast.online import OnlineExtractor
from sima_fast.ROI import ROI, ROIList
from sima_fast.segment import (
    STICA,
    MergeOverlapping,
    PlaneCA1PC,
    PlaneNormalizedCuts,
    SmoothROIBoundaries,
    SparseROIsFromMasks,
)

T, Y, X, C = 40, 20, 20, 2


def _rois() -> ROIList:
    masks = []
    for y0, x0 in ((1, 1), (6, 6)):
        m = np.zeros((1, Y, X), bool)
        m[0, y0 : y0 + 4, x0 : x0 + 4] = True
        masks.append(ROI(mask=m, label=f"r{y0}"))
    return ROIList(masks)


def _movie(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (100 + 10 * rng.random((T, 1, Y, X, C))).astype(np.float32)


class Ctx:
    """The objects the bad calls are made on (built once per module)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.seq = sima.Sequence.create("ndarray", _movie())
        self.mem = sima.ImagingDataset([self.seq], None, channel_names=["g", "r"])
        self.rois = _rois()
        self.saved_path = os.path.join(root, "saved.sima")
        saved = sima.ImagingDataset([self.seq], self.saved_path, channel_names=["g", "r"])
        saved.add_ROIs(_rois(), "cells")
        saved.extract(_rois(), label="sig", save_summary=False)
        self.other_path = os.path.join(root, "other.sima")
        other = sima.ImagingDataset([sima.Sequence.create("ndarray", _movie(1))], self.other_path)
        other.add_ROIs(_rois(), "cells")
        self.counter = 0
        rng = np.random.default_rng(3)
        self.trace = rng.standard_normal(300) + 5
        self.traces = np.stack([self.trace, self.trace[::-1]])

    @property
    def saved(self):
        return sima.ImagingDataset.load(self.saved_path)

    @property
    def other(self):
        return sima.ImagingDataset.load(self.other_path)

    def fresh(self) -> str:
        """A path that does not exist yet."""
        self.counter += 1
        return os.path.join(self.root, f"new{self.counter}.sima")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Ctx(str(tmp_path_factory.mktemp("bad_inputs")))


class _NotAClient:
    """Stands in for a Dask client: the arguments must be checked before it is used."""


def _ds(c, **kw):
    return sima.ImagingDataset([c.seq], None, **kw)


nan, inf = float("nan"), float("inf")

# (case id, the argument the message must name, the bad call)
BAD_INPUTS = [
    # -- ImagingDataset construction, loading, saving ----------------------------------------
    ("init-sequences-str", "sequences", lambda c: sima.ImagingDataset("x", None)),
    ("init-sequences-elem", "sequences[1]", lambda c: sima.ImagingDataset([c.seq, 3], None)),
    ("init-savedir-int", "savedir", lambda c: sima.ImagingDataset([c.seq], 3)),
    ("init-names-None", "channel_names[0]", lambda c: _ds(c, channel_names=[None, "x"])),
    ("init-names-float", "channel_names[1]", lambda c: _ds(c, channel_names=["x", 1.0])),
    ("init-names-bool", "channel_names[1]", lambda c: _ds(c, channel_names=["x", True])),
    ("init-names-bytes", "channel_names[0]", lambda c: _ds(c, channel_names=[b"a", "x"])),
    ("init-names-str", "channel_names", lambda c: _ds(c, channel_names="ab")),
    ("init-names-length", "channel_names", lambda c: _ds(c, channel_names=["a"])),
    ("init-names-dup", "channel_names", lambda c: _ds(c, channel_names=["a", "a"])),
    ("init-read_only-str", "read_only", lambda c: _ds(c, read_only="no")),
    ("init-read_only-int", "read_only", lambda c: _ds(c, read_only=0)),
    (
        "setter-names-None",
        "channel_names[1]",
        lambda c: setattr(_ds(c), "channel_names", ["a", None]),
    ),
    ("load-path-int", "path", lambda c: sima.ImagingDataset.load(3)),
    ("load-read_only-str", "read_only", lambda c: sima.ImagingDataset.load(c.saved_path, "no")),
    ("save-savedir-int", "savedir", lambda c: _ds(c).save(3)),
    # -- extract ------------------------------------------------------------------------------
    (
        "extract-remove_overlap-str",
        "remove_overlap",
        lambda c: c.mem.extract(c.rois, remove_overlap="no"),
    ),
    (
        "extract-remove_overlap-int",
        "remove_overlap",
        lambda c: c.mem.extract(c.rois, remove_overlap=0),
    ),
    (
        "extract-remove_overlap-None",
        "remove_overlap",
        lambda c: c.mem.extract(c.rois, remove_overlap=None),
    ),
    (
        "extract-save_summary-str",
        "save_summary",
        lambda c: c.mem.extract(c.rois, save_summary="no"),
    ),
    ("extract-progress-str", "progress", lambda c: c.mem.extract(c.rois, progress="yes")),
    ("extract-n_processes-bool", "n_processes", lambda c: c.mem.extract(c.rois, n_processes=True)),
    ("extract-n_processes-zero", "n_processes", lambda c: c.mem.extract(c.rois, n_processes=0)),
    ("extract-n_processes-str", "n_processes", lambda c: c.mem.extract(c.rois, n_processes="2")),
    ("extract-n_processes-float", "n_processes", lambda c: c.mem.extract(c.rois, n_processes=1.5)),
    (
        "extract-channel-float",
        "signal_channel",
        lambda c: c.mem.extract(c.rois, signal_channel=1.0),
    ),
    (
        "extract-channel-bool",
        "signal_channel",
        lambda c: c.mem.extract(c.rois, signal_channel=True),
    ),
    (
        "extract-channel-unknown",
        "signal_channel",
        lambda c: c.mem.extract(c.rois, signal_channel="nope"),
    ),
    ("extract-channel-range", "signal_channel", lambda c: c.mem.extract(c.rois, signal_channel=5)),
    ("extract-demix-float", "demix_channel", lambda c: c.mem.extract(c.rois, demix_channel=1.5)),
    ("extract-demix-same", "demix_channel", lambda c: c.mem.extract(c.rois, demix_channel=0)),
    ("extract-rois-str", "rois", lambda c: c.mem.extract("cells")),
    ("extract-rois-ints", "rois", lambda c: c.mem.extract([1, 2])),
    ("extract-label-dot", "label", lambda c: c.saved.extract(c.rois, label=".")),
    ("extract-label-nul", "label", lambda c: c.saved.extract(c.rois, label="\x00x")),
    ("extract-label-int", "label", lambda c: c.mem.extract(c.rois, label=5)),
    ("extract-label-slash", "label", lambda c: c.mem.extract(c.rois, label="a/b")),
    ("extract-client", "client", lambda c: c.mem.extract(c.rois, client="tcp://x")),
    # -- ROI sets -----------------------------------------------------------------------------
    ("add_ROIs-list", "ROIs", lambda c: c.mem.add_ROIs(list(c.rois), "x")),
    ("add_ROIs-label-dot", "label", lambda c: c.saved.add_ROIs(_rois(), ".")),
    ("add_ROIs-label-dotdot", "label", lambda c: c.saved.add_ROIs(_rois(), "..")),
    ("add_ROIs-label-nul", "label", lambda c: c.saved.add_ROIs(_rois(), "\x00x")),
    ("add_ROIs-label-newline", "label", lambda c: c.saved.add_ROIs(_rois(), "a\nb")),
    ("add_ROIs-label-empty", "label", lambda c: c.saved.add_ROIs(_rois(), "")),
    ("add_ROIs-label-int", "label", lambda c: c.mem.add_ROIs(_rois(), 7)),
    ("add_ROIs-label-mem-dot", "label", lambda c: c.mem.add_ROIs(_rois(), ".")),
    ("delete_ROIs-label-int", "label", lambda c: c.saved.delete_ROIs(3)),
    ("delete_ROIs-label-None", "label", lambda c: c.saved.delete_ROIs(None)),
    ("segment-strategy-str", "strategy", lambda c: c.mem.segment("stica")),
    ("segment-label-dot", "label", lambda c: c.saved.segment(STICA(components=2), label=".")),
    ("segment-label-int", "label", lambda c: c.mem.segment(STICA(components=2), label=3)),
    ("segment-planes-str", "planes", lambda c: c.mem.segment(STICA(components=2), planes="0")),
    ("segment-planes-range", "planes", lambda c: c.mem.segment(STICA(components=2), planes=[4])),
    ("segment-planes-float", "planes", lambda c: c.mem.segment(STICA(components=2), planes=0.0)),
    (
        "import-source-str",
        "source_dataset",
        lambda c: c.saved.import_transformed_ROIs("other.sima", source_label="cells"),
    ),
    (
        "import-target_label-dot",
        "target_label",
        lambda c: c.saved.import_transformed_ROIs(c.other, source_label="cells", target_label="."),
    ),
    (
        "import-target_label-int",
        "target_label",
        lambda c: c.saved.import_transformed_ROIs(c.other, source_label="cells", target_label=4),
    ),
    (
        "import-source_label-int",
        "source_label",
        lambda c: c.saved.import_transformed_ROIs(c.other, source_label=4),
    ),
    (
        "import-source_label-missing",
        "source_label",
        lambda c: c.saved.import_transformed_ROIs(c.other, source_label="nope"),
    ),
    (
        "import-anchor_label-int",
        "anchor_label",
        lambda c: c.saved.import_transformed_ROIs(c.other, source_label="cells", anchor_label=2),
    ),
    (
        "import-method-int",
        "method",
        lambda c: c.saved.import_transformed_ROIs(c.other, method=3, source_label="cells"),
    ),
    (
        "import-copy_properties-str",
        "copy_properties",
        lambda c: c.saved.import_transformed_ROIs(
            c.other, source_label="cells", copy_properties="no"
        ),
    ),
    (
        "import-pre_processing_method",
        "pre_processing_method",
        lambda c: c.saved.import_transformed_ROIs(
            c.other, source_label="cells", pre_processing_method="blur"
        ),
    ),
    (
        "import-pre_processing_kwargs",
        "pre_processing_kwargs",
        lambda c: c.saved.import_transformed_ROIs(
            c.other,
            source_label="cells",
            pre_processing_method="gaussian",
            pre_processing_kwargs=3,
        ),
    ),
    (
        "import-source_channel-float",
        "source_channel",
        lambda c: c.saved.import_transformed_ROIs(
            c.other, source_label="cells", source_channel=0.5
        ),
    ),
    (
        "import-target_channel-unknown",
        "target_channel",
        lambda c: c.saved.import_transformed_ROIs(
            c.other, source_label="cells", target_channel="x"
        ),
    ),
    # -- signals, exports, projections --------------------------------------------------------
    ("signals-channel-float", "channel", lambda c: c.saved.signals(0.0)),
    ("signals-channel-None", "channel", lambda c: c.saved.signals(None)),
    ("export_signals-path-int", "path", lambda c: c.saved.export_signals(3)),
    (
        "export_signals-fmt-int",
        "fmt",
        lambda c: c.saved.export_signals(os.path.join(c.root, "s.csv"), fmt=3),
    ),
    (
        "export_signals-fmt-unknown",
        "fmt",
        lambda c: c.saved.export_signals(os.path.join(c.root, "s.csv"), fmt="xls"),
    ),
    (
        "export_signals-label-int",
        "signals_label",
        lambda c: c.saved.export_signals(os.path.join(c.root, "s.csv"), signals_label=3),
    ),
    (
        "export_signals-label-missing",
        "signals_label",
        lambda c: c.saved.export_signals(os.path.join(c.root, "s.csv"), signals_label="nope"),
    ),
    (
        "export_signals-channel",
        "channel",
        lambda c: c.saved.export_signals(os.path.join(c.root, "s.csv"), channel=2.0),
    ),
    (
        "export_averages-scale-str",
        "scale_values",
        lambda c: c.mem.export_averages(
            [os.path.join(c.root, "a.tif"), os.path.join(c.root, "b.tif")], scale_values="no"
        ),
    ),
    (
        "export_averages-projection",
        "projection_type",
        lambda c: c.mem.export_averages(
            [os.path.join(c.root, "a.tif"), os.path.join(c.root, "b.tif")], projection_type=3
        ),
    ),
    ("export_averages-filenames-int", "filenames", lambda c: c.mem.export_averages(3)),
    (
        "export_averages-fmt-int",
        "fmt",
        lambda c: c.mem.export_averages(["a.tif", "b.tif"], fmt=16),
    ),
    (
        "export_frames-fill_gaps-str",
        "fill_gaps",
        lambda c: c.mem.export_frames([os.path.join(c.root, "f.h5")], fmt="HDF5", fill_gaps="no"),
    ),
    (
        "export_frames-scale-int",
        "scale_values",
        lambda c: c.mem.export_frames([os.path.join(c.root, "f.h5")], fmt="HDF5", scale_values=1),
    ),
    (
        "export_frames-compression",
        "compression",
        lambda c: c.mem.export_frames(
            [os.path.join(c.root, "f.h5")], fmt="HDF5", compression="bz2"
        ),
    ),
    ("export_frames-filenames-int", "filenames", lambda c: c.mem.export_frames(5, fmt="HDF5")),
    ("projections-progress-str", "progress", lambda c: _ds(c).compute_projections(progress="yes")),
    ("projections-client-str", "client", lambda c: _ds(c).compute_projections(client="x")),
    # -- infer_spikes (method) ----------------------------------------------------------------
    ("infer-gamma-above", "gamma", lambda c: c.saved.infer_spikes(gamma=1.5)),
    ("infer-gamma-str", "gamma", lambda c: c.saved.infer_spikes(gamma="0.9")),
    ("infer-gamma-nan", "gamma", lambda c: c.saved.infer_spikes(gamma=nan)),
    ("infer-gamma-bool", "gamma", lambda c: c.saved.infer_spikes(gamma=True)),
    ("infer-share_gamma-str", "share_gamma", lambda c: c.saved.infer_spikes(share_gamma="no")),
    ("infer-verbose-str", "verbose", lambda c: c.saved.infer_spikes(verbose="no")),
    ("infer-mode-unknown", "mode", lambda c: c.saved.infer_spikes(mode="fast")),
    ("infer-mode-int", "mode", lambda c: c.saved.infer_spikes(mode=1)),
    ("infer-label-int", "label", lambda c: c.saved.infer_spikes(label=1)),
    ("infer-label-missing", "label", lambda c: c.saved.infer_spikes(label="nope")),
    ("infer-channel-float", "channel", lambda c: c.saved.infer_spikes(channel=0.0)),
    ("infer-client-str", "client", lambda c: c.saved.infer_spikes(client="x")),
    # -- sima_fast.spikes ---------------------------------------------------------------------
    ("spike_inference-trace-str", "fluor", lambda c: spikes.spike_inference("abc")),
    ("spike_inference-trace-3d", "fluor", lambda c: spikes.spike_inference(np.ones((2, 3, 50)))),
    ("spike_inference-trace-short", "fluor", lambda c: spikes.spike_inference(np.ones(3))),
    (
        "spike_inference-trace-overflow",
        "fluor",
        lambda c: spikes.spike_inference(1e300 * np.random.default_rng(0).standard_normal(300)),
    ),
    (
        "spike_inference-trace-huge",
        "fluor",
        lambda c: spikes.spike_inference(1e200 * np.random.default_rng(0).standard_normal(300)),
    ),
    ("spike_inference-trace-bool", "fluor", lambda c: spikes.spike_inference(c.trace > 5)),
    ("spike_inference-sigma-neg", "sigma", lambda c: spikes.spike_inference(c.trace, sigma=-1.0)),
    ("spike_inference-sigma-nan", "sigma", lambda c: spikes.spike_inference(c.trace, sigma=nan)),
    ("spike_inference-sigma-str", "sigma", lambda c: spikes.spike_inference(c.trace, sigma="1")),
    ("spike_inference-gamma-above", "gamma", lambda c: spikes.spike_inference(c.trace, gamma=1.5)),
    ("spike_inference-gamma-bool", "gamma", lambda c: spikes.spike_inference(c.trace, gamma=True)),
    ("spike_inference-mode", "mode", lambda c: spikes.spike_inference(c.trace, mode="x")),
    ("spike_inference-solver", "solver", lambda c: spikes.spike_inference(c.trace, solver="x")),
    ("deconvolve-gamma-nan", "gamma", lambda c: spikes.deconvolve(c.traces, nan, 1.0)),
    ("deconvolve-gamma-len", "gamma", lambda c: spikes.deconvolve(c.traces, [0.9, 0.9, 0.9], 1.0)),
    ("deconvolve-sigma-neg", "sigma", lambda c: spikes.deconvolve(c.traces, 0.9, -1.0)),
    ("deconvolve-sigma-str", "sigma", lambda c: spikes.deconvolve(c.traces, 0.9, "a")),
    (
        "deconvolve-n_processes-0",
        "n_processes",
        lambda c: spikes.deconvolve(c.traces, 0.9, 1.0, n_processes=0),
    ),
    (
        "deconvolve-n_processes-bool",
        "n_processes",
        lambda c: spikes.deconvolve(c.traces, 0.9, 1.0, n_processes=True),
    ),
    ("deconvolve-solver", "solver", lambda c: spikes.deconvolve(c.traces, 0.9, 1.0, solver=1)),
    ("deconvolve-traces-str", "traces", lambda c: spikes.deconvolve("ab", 0.9, 1.0)),
    (
        "estimate_roi_parameters-share_gamma",
        "share_gamma",
        lambda c: spikes.estimate_roi_parameters([c.traces], share_gamma="no"),
    ),
    (
        "estimate_roi_parameters-gamma-str",
        "gamma",
        lambda c: spikes.estimate_roi_parameters([c.traces], gamma="x"),
    ),
    (
        "estimate_roi_parameters-sigma-neg",
        "sigma",
        lambda c: spikes.estimate_roi_parameters([c.traces], sigma=-1.0),
    ),
    (
        "estimate_roi_parameters-mode-int",
        "mode",
        lambda c: spikes.estimate_roi_parameters([c.traces], mode=0),
    ),
    (
        "estimate_roi_parameters-overflow",
        "signals",
        lambda c: spikes.estimate_roi_parameters([1e300 * c.traces]),
    ),
    (
        "infer_from_signals-verbose",
        "verbose",
        lambda c: spikes.infer_spikes_from_signals([c.traces], verbose="yes"),
    ),
    (
        "infer_from_signals-share_gamma",
        "share_gamma",
        lambda c: spikes.infer_spikes_from_signals([c.traces], share_gamma=1),
    ),
    ("infer_from_signals-signals-str", "signals", lambda c: spikes.infer_spikes_from_signals("x")),
    (
        "infer_from_signals-rows",
        "signals",
        lambda c: spikes.infer_spikes_from_signals([c.traces, c.traces[:1]]),
    ),
    ("estimate_decay-str", "traces", lambda c: spikes.estimate_decay("abc")),
    ("estimate_noise-gamma", "gamma", lambda c: spikes.estimate_noise(c.trace, 2.0)),
    ("estimate_noise-mode", "mode", lambda c: spikes.estimate_noise(c.trace, 0.9, mode="x")),
    ("autocovariance-max_lag-neg", "max_lag", lambda c: spikes.autocovariance(c.trace, -1)),
    ("autocovariance-max_lag-float", "max_lag", lambda c: spikes.autocovariance(c.trace, 1.5)),
    ("autocovariance-max_lag-bool", "max_lag", lambda c: spikes.autocovariance(c.trace, True)),
    ("osqp_trace-gamma", "gamma", lambda c: spikes.osqp_trace(c.trace, 1.5, 1.0)),
    ("osqp_trace-sigma", "sigma", lambda c: spikes.osqp_trace(c.trace, 0.9, -1.0)),
    ("osqp_trace-rtol", "rtol", lambda c: spikes.osqp_trace(c.trace, 0.9, 1.0, rtol=nan)),
    # -- sima_fast.extract --------------------------------------------------------------------
    (
        "extract_rois-remove_overlap",
        "remove_overlap",
        lambda c: extract.extract_rois(c.mem, c.rois, remove_overlap="no"),
    ),
    (
        "extract_rois-progress",
        "progress",
        lambda c: extract.extract_rois(c.mem, c.rois, progress=1),
    ),
    (
        "extract_rois-n_processes",
        "n_processes",
        lambda c: extract.extract_rois(c.mem, c.rois, n_processes=0),
    ),
    ("extract_rois-channel", "signal_channel", lambda c: extract.extract_rois(c.mem, c.rois, 1.0)),
    (
        "roi_mask_matrix-im_shape-neg",
        "im_shape",
        lambda c: extract.roi_mask_matrix(c.rois, (1, -5, 8)),
    ),
    ("roi_mask_matrix-im_shape-str", "im_shape", lambda c: extract.roi_mask_matrix(c.rois, "abc")),
    ("roi_mask_matrix-rois", "rois", lambda c: extract.roi_mask_matrix(3, (1, Y, X))),
    (
        "weights-remove_overlap",
        "remove_overlap",
        lambda c: extract.ExtractionWeights(c.rois, (1, Y, X), None, remove_overlap="no"),
    ),
    (
        "demixing_matrix-shape",
        "demix_image",
        lambda c: extract.demixing_matrix(np.ones((1, Y, X)), np.ones((1, 3, 3))),
    ),
    (
        "demixing_matrix-seed",
        "seed",
        lambda c: extract.demixing_matrix(np.ones((1, Y, X)), np.ones((1, Y, X)), seed="x"),
    ),
    # -- sima_fast.online ---------------------------------------------------------------------
    (
        "online-remove_overlap",
        "remove_overlap",
        lambda c: OnlineExtractor(c.rois, (Y, X), remove_overlap="no", warmup=False),
    ),
    ("online-warmup", "warmup", lambda c: OnlineExtractor(c.rois, (Y, X), warmup="no")),
    ("online-lag-neg", "lag", lambda c: OnlineExtractor(c.rois, (Y, X), lag=-1, warmup=False)),
    ("online-lag-bool", "lag", lambda c: OnlineExtractor(c.rois, (Y, X), lag=True, warmup=False)),
    (
        "online-max_frames-0",
        "max_frames",
        lambda c: OnlineExtractor(c.rois, (Y, X), max_frames=0, warmup=False),
    ),
    (
        "online-penalty_scale-nan",
        "penalty_scale",
        lambda c: OnlineExtractor(c.rois, (Y, X), penalty_scale=nan, warmup=False),
    ),
    (
        "online-penalty_scale-str",
        "penalty_scale",
        lambda c: OnlineExtractor(c.rois, (Y, X), penalty_scale="1", warmup=False),
    ),
    ("online-gamma", "gamma", lambda c: OnlineExtractor(c.rois, (Y, X), gamma=1.5, warmup=False)),
    ("online-sigma", "sigma", lambda c: OnlineExtractor(c.rois, (Y, X), sigma=-1.0, warmup=False)),
    (
        "online-dtype",
        "dtype",
        lambda c: OnlineExtractor(c.rois, (Y, X), dtype="float16", warmup=False),
    ),
    ("online-frame_shape", "frame_shape", lambda c: OnlineExtractor(c.rois, (Y,), warmup=False)),
    (
        "online-signal_channel-bool",
        "signal_channel",
        lambda c: OnlineExtractor(c.rois, (Y, X), signal_channel=True, warmup=False),
    ),
    (
        "online-estimate_frames",
        "estimate_frames",
        lambda c: OnlineExtractor(c.rois, (Y, X), estimate_frames=2, warmup=False),
    ),
    (
        "online-spikes-final_only",
        "final_only",
        lambda c: OnlineExtractor(c.rois, (Y, X), warmup=False).spikes(final_only="no"),
    ),
    (
        "online-calcium-final_only",
        "final_only",
        lambda c: OnlineExtractor(c.rois, (Y, X), warmup=False).calcium(final_only=1),
    ),
    # -- sima_fast.batch ----------------------------------------------------------------------
    ("batch-load", "load", lambda c: batch.map_datasets(len, [c.saved_path], load="no")),
    (
        "batch-read_only",
        "read_only",
        lambda c: batch.map_datasets(len, [c.saved_path], read_only=1),
    ),
    (
        "batch-progress",
        "progress",
        lambda c: batch.map_datasets(len, [c.saved_path], progress="x"),
    ),
    ("batch-retries", "retries", lambda c: batch.map_datasets(len, [c.saved_path], retries=-1)),
    ("batch-func", "func", lambda c: batch.map_datasets(3, [c.saved_path])),
    ("batch-paths-str", "paths", lambda c: batch.map_datasets(len, c.saved_path)),
    # -- sima_fast.transform_rois -------------------------------------------------------------
    ("clip-im_shape-len", "im_shape", lambda c: transform_rois.clip_rois_to_frame(c.rois, (1,))),
    (
        "clip-im_shape-neg",
        "im_shape",
        lambda c: transform_rois.clip_rois_to_frame(c.rois, (1, -2, 5)),
    ),
    (
        "clip-im_shape-str",
        "im_shape",
        lambda c: transform_rois.clip_rois_to_frame(c.rois, "20x20"),
    ),
    (
        "transform-method",
        "method",
        lambda c: transform_rois.estimate_plane_transforms(c.saved, c.other, method="spline"),
    ),
    # -- sima_fast.distributed (arguments checked before the client is used) -------------------
    ("time_ranges-n_parts", "n_parts", lambda c: distributed.time_ranges(10, 0)),
    ("time_ranges-n_frames", "n_frames", lambda c: distributed.time_ranges("10", 2)),
    ("time_ranges-align", "align", lambda c: distributed.time_ranges(10, 2, align=True)),
    (
        "dist-infer-share_gamma",
        "share_gamma",
        lambda c: distributed.infer_spikes_from_signals(
            [c.traces], _NotAClient(), share_gamma="x"
        ),
    ),
    (
        "dist-infer-rois_per_task",
        "rois_per_task",
        lambda c: distributed.infer_spikes_from_signals(
            [c.traces], _NotAClient(), rois_per_task=0
        ),
    ),
    (
        "dist-extract-remove_overlap",
        "remove_overlap",
        lambda c: distributed.extract_rois(c.mem, c.rois, 0, "no", None, _NotAClient()),
    ),
    (
        "dist-projections-chunk_frames",
        "chunk_frames",
        lambda c: distributed.projections([c.seq], _NotAClient(), chunk_frames=0),
    ),
    # -- sima_fast.segment --------------------------------------------------------------------
    ("stica-components", "components", lambda c: STICA(components=0)),
    ("stica-mu-nan", "mu", lambda c: STICA(mu=nan)),
    ("stica-verbose", "verbose", lambda c: STICA(verbose="no")),
    ("stica-post_process", "post_process", lambda c: STICA(post_process=1)),
    ("stica-channel", "channel", lambda c: STICA(channel=1.5)),
    ("normcuts-num_pcs", "num_pcs", lambda c: PlaneNormalizedCuts(num_pcs=-1)),
    ("normcuts-verbose", "verbose", lambda c: PlaneNormalizedCuts(verbose="x")),
    ("normcuts-max_dist", "max_dist", lambda c: PlaneNormalizedCuts(max_dist=(1,))),
    ("normcuts-cut_max_pen", "cut_max_pen", lambda c: PlaneNormalizedCuts(cut_max_pen=inf)),
    ("ca1pc-x_diameter", "x_diameter", lambda c: PlaneCA1PC(x_diameter="8")),
    ("sparse-min_size", "min_size", lambda c: SparseROIsFromMasks(min_size=-1)),
    ("sparse-sign_split", "sign_split", lambda c: SparseROIsFromMasks(sign_split="x")),
    ("smooth-tolerance", "tolerance", lambda c: SmoothROIBoundaries(tolerance=nan)),
    ("merge-threshold", "threshold", lambda c: MergeOverlapping(threshold="0.5")),
]


def _clear(err: BaseException, arg: str) -> bool:
    """A TypeError or ValueError naming ``arg`` (or a KeyError for a label not found)."""
    return isinstance(err, (TypeError, ValueError, KeyError)) and arg in str(err)


@pytest.mark.parametrize(
    ("arg", "call"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_argument_gets_a_typed_error_naming_it(ctx, arg, call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call(ctx)
        except Exception as err:
            assert _clear(err, arg), f"unclear error for {arg}: {type(err).__name__}: {err}"
        else:
            pytest.fail(f"bad {arg} was accepted")


def test_bad_inputs_leave_the_saved_dataset_unchanged(ctx):
    """The sweep ran many bad calls on the saved dataset: its sets are those it had."""
    ds = ctx.saved
    assert sorted(ds.ROIs) == ["cells"]
    assert sorted(ds.signals(0)) == ["sig"]


# -- the single cases of the audit ------------------------------------------------------------

KEPT_LABELS = [
    "cells",
    "day 2",
    "v1.2",
    ".hidden",
    "a..b",
    "Zellen (grün)",
    " lead",
    "2024-01-31-12h00m00s",
    "x" * 300,
]
REFUSED_LABELS = [
    "",
    ".",
    "..",
    "a/b",
    "/abs",
    "\x00x",
    "a\x01b",
    "tab\there",
    "new\nline",
    "del\x7f",
    "c1\x85",
]


@pytest.mark.parametrize("label", KEPT_LABELS)
def test_check_label_keeps_ordinary_labels(label):
    assert check_label("label", label) == label
    assert type(check_label("label", np.str_(label))) is str


@pytest.mark.parametrize("label", REFUSED_LABELS)
def test_check_label_refuses_what_hdf5_or_listings_cannot_hold(label):
    with pytest.raises(ValueError, match=r"^label must") as info:
        check_label("label", label)
    assert not isinstance(info.value, TypeError)


@pytest.mark.parametrize("value", [None, 3, b"cells", ["cells"], True])
def test_check_label_refuses_non_strings(value):
    with pytest.raises(ArgumentTypeError, match=r"^target_label must be a str"):
        check_label("target_label", value)


def test_check_label_accepts_labels_already_stored():
    """Sets stored before the rules (or by other software) stay reachable by their label."""
    assert check_label("label", "a\x01b", existing=["a\x01b"]) == "a\x01b"
    with pytest.raises(ValueError, match="control characters"):
        check_label("label", "a\x01b", existing=["other"])


def test_ordinary_labels_round_trip_through_a_saved_dataset(tmp_path):
    seq = sima.Sequence.create("ndarray", _movie())
    ds = sima.ImagingDataset([seq], str(tmp_path / "labels.sima"))
    for label in KEPT_LABELS[:6]:
        ds.add_ROIs(_rois(), label)
    loaded = sima.ImagingDataset.load(str(tmp_path / "labels.sima"))
    assert sorted(loaded.ROIs) == sorted(KEPT_LABELS[:6])
    loaded.extract(_rois(), label="v1.2", save_summary=False)
    assert list(loaded.signals(0)) == ["v1.2"]
    loaded.delete_ROIs(".hidden")
    assert ".hidden" not in loaded.ROIs


@pytest.mark.parametrize("label", ["", ".", "..", "\x00x", "a\x1bb"])
def test_bad_labels_are_refused_before_anything_is_written(tmp_path, label):
    """'.' gave h5py's 'name already exists'; '\\x00x' gave 'name ... empty string'."""
    seq = sima.Sequence.create("ndarray", _movie())
    path = str(tmp_path / "ds.sima")
    ds = sima.ImagingDataset([seq], path)
    ds.add_ROIs(_rois(), "cells")
    with pytest.raises(ValueError, match=r"^label must"):
        ds.add_ROIs(_rois(), label)
    with pytest.raises(ValueError, match=r"^label must"):
        ds.extract(_rois(), label=label, save_summary=False)
    with pytest.raises(ValueError, match=r"^label must"):
        ds.segment(STICA(components=2), label=label)
    loaded = sima.ImagingDataset.load(path)
    assert list(loaded.ROIs) == ["cells"]
    assert loaded.signals(0) == {}


def test_channel_names_must_be_strings():
    seq = sima.Sequence.create("ndarray", _movie())
    with pytest.raises(ArgumentTypeError, match=r"^channel_names\[0\] must be a str"):
        sima.ImagingDataset([seq], None, channel_names=[None, "x"])
    ds = sima.ImagingDataset([seq], None, channel_names=["g", "r"])
    with pytest.raises(TypeError, match=r"^channel_names\[1\] must be a str"):
        ds.channel_names = ["g", 2.5]
    assert ds.channel_names == ["g", "r"]
    # integers keep SIMA's behaviour: stored as their digits
    assert sima.ImagingDataset([seq], None, channel_names=[np.int64(3), 4]).channel_names == [
        "3",
        "4",
    ]


def test_remove_overlap_must_be_a_bool():
    """'no' counted as true: the overlapping pixels were silently removed."""
    seq = sima.Sequence.create("ndarray", _movie())
    ds = sima.ImagingDataset([seq], None)
    for bad in ("no", "False", 0, None):
        with pytest.raises(ArgumentTypeError, match=r"^remove_overlap must be True or False"):
            ds.extract(_rois(), remove_overlap=bad)
    record = ds.extract(_rois(), remove_overlap=np.bool_(False))
    assert record["raw"][0].shape == (2, T)


def test_spike_inference_names_a_trace_too_large_to_estimate():
    """It said 'sigma must be finite' although no sigma was passed."""
    trace = 1e300 * np.random.default_rng(0).standard_normal(300)
    with pytest.raises(ValueError, match=r"^fluor has values up to 3.11e\+300") as info:
        spikes.spike_inference(trace)
    assert "sigma must be finite" not in str(info.value)
    signals = np.stack([np.random.default_rng(1).standard_normal(300), trace])
    with pytest.raises(ValueError, match=r"signals\[0\] \(ROI 1\) has values up to"):
        spikes.estimate_roi_parameters([signals])
    with pytest.raises(ValueError, match=r"signals\[0\] \(ROI 1\) has values up to"):
        spikes.infer_spikes_from_signals([signals], gamma=0.9, sigma=1.0)
    # the largest accepted magnitude still gives finite parameters
    scaled = spikes.MAX_MAGNITUDE / 4 * np.random.default_rng(2).standard_normal(300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", spikes.SpikeInferenceWarning)  # white noise: gamma floored
        params = spikes.estimate_roi_parameters([scaled[None]])
    assert np.isfinite(params["sigma"]).all() and np.isfinite(params["gamma"]).all()


def test_spike_inference_refuses_bool_traces():
    with pytest.raises(TypeError, match=r"^fluor must hold real numbers, got a bool array"):
        spikes.spike_inference(np.random.default_rng(0).random(300) > 0.5)


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli_dataset(tmp_path):
    seq = sima.Sequence.create("ndarray", _movie())
    path = str(tmp_path / "cli.sima")
    ds = sima.ImagingDataset([seq], path)
    ds.add_ROIs(_rois(), "cells")
    return path


def _cli(capsys, *argv):
    from sima_fast.cli import main

    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_unknown_roi_set_is_named_with_the_available_ones(cli_dataset, capsys):
    status, _, err = _cli(capsys, "extract", cli_dataset, "--rois", "nope", "--quiet")
    assert status != 0
    assert err.count("\n") == 1
    assert "--rois: no ROI set labelled 'nope'; available: cells" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ("extract", "{ds}", "--label", ".", "--quiet", "--no-summary"),
        ("extract", "{ds}", "--label", "a\x01b", "--quiet", "--no-summary"),
        ("segment", "{ds}", "--strategy", "stica", "--label", ".."),
        ("import-rois", "{ds}", "{ds}/metadata.json", "--label", "x\x00"),
        ("export", "{ds}", "signals", "{ds}.csv", "--label", "a/b"),
    ],
    ids=["extract-dot", "extract-control", "segment-dotdot", "import-nul", "export-slash"],
)
def test_cli_bad_labels_get_one_line_errors(cli_dataset, capsys, argv):
    status, _, err = _cli(capsys, *(a.format(ds=cli_dataset) for a in argv))
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "--label" in lines[0] and "a label must" in lines[0]
    assert sorted(sima.ImagingDataset.load(cli_dataset).ROIs) == ["cells"]

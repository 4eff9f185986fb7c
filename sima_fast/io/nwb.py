"""Neurodata Without Borders (NWB): export a dataset, import movies and ROIs.

The only module that imports ``pynwb``, ``hdmf`` and ``nwbinspector`` (the
``nwb`` extra, ``pip install "sima_fast[nwb]"``); it imports them inside its
functions, so registering its formats costs nothing. It provides:

* :func:`export_nwb`, behind
  :meth:`ImagingDataset.export_nwb <sima_fast.imaging.ImagingDataset.export_nwb>`
  and ``sima-fast export-nwb``: the standard optical-physiology layout
  (docs/nwb.md);
* the ROI reader ``'NWB'`` (:func:`read_nwb_rois`, for ``ROIList.load(path,
  fmt='NWB', plane_segmentation=<PlaneSegmentation name>)``);
* :func:`locate_two_photon_series`, which the ``'NWB'`` sequence
  (:class:`sima_fast.sequence.nwb.NWBSequence`) uses to find a
  ``TwoPhotonSeries`` in a file;
* :func:`inspect_nwb`, nwbinspector's verdict on a file, and
  :func:`load_nwb_metadata`, which reads and checks the metadata.

Axes: NWB stores images as ``(x, y)`` = (column, row), movies as
``(t, x, y[, z])`` and ROI pixels as ``(x, y[, z], weight)``, as pynwb's
documentation, roiextractors and neuroconv read them; sima_fast's frames are
``(Z, Y, X)``, so arrays are transposed on the way out and back in.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse

from sima_fast._atomic import atomic_write
from sima_fast._timestamps import most_recent
from sima_fast._validate import ArgumentTypeError, check_bool, check_real, resolve_channel
from sima_fast.io._export import refuse_dataset_files
from sima_fast.io._registry import roi_readers

__all__ = [
    "NWBMetadataError",
    "NWBVerdict",
    "export_nwb",
    "inspect_nwb",
    "load_nwb_metadata",
    "locate_two_photon_series",
    "read_nwb_rois",
]

INSTALL_HINT = 'install the nwb extra: pip install "sima_fast[nwb]"'

#: Importances that fail the verdict (nwbinspector's names).
FAILING_IMPORTANCES = ("ERROR", "PYNWB_VALIDATION", "CRITICAL", "BEST_PRACTICE_VIOLATION")

# metadata field -> (required, kind); nested dicts use dotted names
_FIELDS: dict[str, tuple[bool, str]] = {
    "session_description": (True, "str"),
    "session_start_time": (True, "datetime"),
    "identifier": (False, "str"),
    "experimenter": (False, "strs"),
    "lab": (False, "str"),
    "institution": (False, "str"),
    "experiment_description": (False, "str"),
    "session_id": (False, "str"),
    "keywords": (False, "strs"),
    "related_publications": (False, "strs"),
    "sequence_starting_times": (False, "reals"),
    "subject.subject_id": (True, "str"),
    "subject.species": (True, "str"),
    "subject.sex": (True, "str"),
    "subject.age": (True, "str"),
    "subject.description": (False, "str"),
    "subject.genotype": (False, "str"),
    "subject.strain": (False, "str"),
    "subject.weight": (False, "str"),
    "device.name": (False, "str"),
    "device.description": (False, "str"),
    "device.manufacturer": (False, "str"),
    "imaging_plane.name": (False, "str"),
    "imaging_plane.description": (False, "str"),
    "imaging_plane.excitation_lambda": (True, "real"),
    "imaging_plane.indicator": (True, "str"),
    "imaging_plane.location": (True, "str"),
    "imaging_plane.imaging_rate": (True, "real"),
    "imaging_plane.grid_spacing": (False, "reals"),
    "imaging_plane.grid_spacing_unit": (False, "str"),
    "imaging_plane.origin_coords": (False, "reals"),
    "imaging_plane.origin_coords_unit": (False, "str"),
    "imaging_plane.optical_channel.name": (False, "str"),
    "imaging_plane.optical_channel.description": (False, "str"),
    "imaging_plane.optical_channel.emission_lambda": (True, "real"),
}
_SECTIONS = ("subject", "device", "imaging_plane", "imaging_plane.optical_channel")
# the section that may also be a list, one mapping per channel of the dataset
_OPTICAL = "imaging_plane.optical_channel"

# signals-record key -> (container, series name, description, unit)
_TRACES = (
    ("raw", "Fluorescence", "RoiResponseSeries", "raw ROI signals (sima_fast extract)"),
    (
        "demixed_raw",
        "Fluorescence",
        "DemixedRoiResponseSeries",
        "ROI signals after removing the bleed-through of the demixing channel",
    ),
    ("neuropil", "Fluorescence", "Neuropil", "neuropil (surround) signal of each ROI"),
    (
        "corrected",
        "Fluorescence",
        "NeuropilCorrected",
        "neuropil-corrected ROI signals, F - r * Fneu",
    ),
    (
        "demixed_neuropil",
        "Fluorescence",
        "DemixedNeuropil",
        "neuropil (surround) signal of each ROI in the demixed frames",
    ),
    (
        "demixed_corrected",
        "Fluorescence",
        "DemixedNeuropilCorrected",
        "neuropil-corrected demixed ROI signals, F - r * Fneu",
    ),
    ("dfof", "DfOverF", "RoiResponseSeries", "relative fluorescence change of each ROI"),
    (
        "spikes",
        "Fluorescence",
        "Deconvolved",
        "inferred spikes (sima_fast infer_spikes), each ROI divided by its maximum",
    ),
    (
        "spikes_fits",
        "Fluorescence",
        "Denoised",
        "denoised fluorescence b + c of the spike inference",
    ),
)

# frame bytes written per chunk of the TwoPhotonSeries
_CHUNK_BYTES = 4 * 2**20
# largest image_mask column (bytes as float32) written when masks='auto'
_IMAGE_MASK_LIMIT = 64 * 2**20


class NWBMetadataError(ValueError):
    """NWB metadata is missing or malformed.

    Parameters
    ----------
    message : str
        What is wrong and how to pass the metadata.
    missing : list of str, optional
        Every missing required field, as dotted names
        (``'subject.species'``).

    Attributes
    ----------
    missing : list of str
        As given.
    """

    def __init__(self, message: str, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or [])

    def __reduce__(self) -> tuple:
        """Pickle with the missing fields."""
        return (type(self), (self.args[0] if self.args else "", self.missing))


class NWBVerdict:
    """nwbinspector's messages on a written file, and whether it passes.

    Parameters
    ----------
    path : str
        The NWB file.
    messages : list
        nwbinspector's ``InspectorMessage`` objects.

    Attributes
    ----------
    path : str
        The file.
    messages : list
        The messages.
    counts : dict of str to int
        Number of messages per importance name.
    ok : bool
        True when no message has an importance of
        :data:`FAILING_IMPORTANCES` (``CRITICAL``,
        ``BEST_PRACTICE_VIOLATION``, or the validation errors).
    """

    def __init__(self, path: str, messages: list) -> None:
        self.path = path
        self.messages = list(messages)
        self.counts: dict[str, int] = {}
        for m in self.messages:
            name = m.importance.name
            self.counts[name] = self.counts.get(name, 0) + 1
        self.ok = not any(self.counts.get(name) for name in FAILING_IMPORTANCES)

    def failing(self) -> list:
        """Return the messages that fail the verdict.

        Returns
        -------
        list
            The messages of an importance in :data:`FAILING_IMPORTANCES`.
        """
        return [m for m in self.messages if m.importance.name in FAILING_IMPORTANCES]

    def summary(self) -> str:
        """Describe the verdict in one line.

        Returns
        -------
        str
            E.g. ``'nwbinspector: passed (0 critical, 0 violations, 2 suggestions)'``.
        """
        return (
            f"nwbinspector: {'passed' if self.ok else 'FAILED'} "
            f"({self.counts.get('CRITICAL', 0)} critical, "
            f"{self.counts.get('BEST_PRACTICE_VIOLATION', 0)} violations, "
            f"{self.counts.get('BEST_PRACTICE_SUGGESTION', 0)} suggestions"
            + (
                f", {self.counts.get('ERROR', 0) + self.counts.get('PYNWB_VALIDATION', 0)} errors"
                if self.counts.get("ERROR") or self.counts.get("PYNWB_VALIDATION")
                else ""
            )
            + ")"
        )

    def __str__(self) -> str:
        """Return :meth:`summary`."""
        return self.summary()

    def __repr__(self) -> str:
        """Return ``<NWBVerdict: path, summary>``."""
        return f"<NWBVerdict {os.path.basename(self.path)!r}: {self.summary()}>"


# ---------------------------------------------------------------------------
# optional dependencies
# ---------------------------------------------------------------------------


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"NWB support needs {module.split('.')[0]}; {INSTALL_HINT}") from exc


# ---------------------------------------------------------------------------
# metadata
# ---------------------------------------------------------------------------


def load_nwb_metadata(source: Any) -> dict[str, Any]:
    """Read NWB metadata from a YAML or JSON file, or check a dict.

    Parameters
    ----------
    source : str, os.PathLike or dict
        A ``.yaml``/``.yml`` or ``.json`` file, or the metadata itself. The
        fields are listed in docs/nwb.md: ``session_description``,
        ``session_start_time`` (timezone-aware), ``identifier``,
        ``experimenter``, ``lab``, ``institution``, ``subject``
        (``subject_id``, ``species``, ``sex``, ``age``, ...), ``device``
        and ``imaging_plane`` (with ``optical_channel``, a mapping or a
        list of them, one per channel of the dataset).

    Returns
    -------
    dict
        A deep copy of the metadata with known sections as dicts; missing
        fields are not filled in (see :func:`export_nwb`).

    Raises
    ------
    ArgumentTypeError
        ``source`` is neither a path nor a dict, or a field has the wrong
        type (the message names it).
    FileNotFoundError
        No such file.
    NWBMetadataError
        The file cannot be parsed, has an unknown extension, is not a
        mapping, or holds unknown fields (all are named).
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"metadata: no such file: {path!r}")
        ext = os.path.splitext(path)[1].lower()
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        try:
            if ext in (".yaml", ".yml"):
                yaml = _require("yaml")
                data = yaml.safe_load(text)
            elif ext == ".json":
                data = json.loads(text)
            else:
                raise NWBMetadataError(
                    f"metadata: {path!r} must be a .yaml, .yml or .json file, "
                    f"got the extension {ext or 'none'!r}"
                )
        except NWBMetadataError:
            raise
        except Exception as exc:  # the parsers' own errors, one line
            raise NWBMetadataError(f"metadata: cannot parse {path!r}: {exc}") from exc
        if data is None:
            data = {}
        where = path
    elif isinstance(source, dict):
        data, where = source, "metadata"
    else:
        raise ArgumentTypeError(
            f"metadata must be a dict or the path of a YAML/JSON file, got {type(source).__name__}"
        )
    if not isinstance(data, dict):
        raise NWBMetadataError(f"{where}: expected a mapping of fields, got {type(data).__name__}")
    data = json.loads(json.dumps(data, default=_json_default))  # a deep, plain copy
    unknown = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if name == _OPTICAL and isinstance(value, list):
                if not value or not all(isinstance(v, dict) for v in value):
                    raise ArgumentTypeError(
                        f"{where}: {name} must be a mapping of fields or a non-empty list of "
                        f"them (one per channel), got {value!r}"
                    )
                for entry in value:
                    walk(entry, f"{name}.")
            elif name in _SECTIONS:
                if not isinstance(value, dict):
                    raise ArgumentTypeError(
                        f"{where}: {name} must be a mapping of fields, got {type(value).__name__}"
                    )
                walk(value, f"{name}.")
            elif name not in _FIELDS:
                unknown.append(name)

    walk(data, "")
    if unknown:
        raise NWBMetadataError(
            f"{where}: unknown NWB metadata field(s) {', '.join(sorted(unknown))}; the fields "
            "are listed in docs/nwb.md"
        )
    for name, (_, kind) in _FIELDS.items():
        value = _get(data, name)
        if value is not None:
            _set(data, name, _convert(value, kind, f"{where}: {name}"))
    channels = _get(data, _OPTICAL)
    if isinstance(channels, list):
        for i, entry in enumerate(channels):
            for field, kind in _optical_fields().items():
                if entry.get(field) is not None:
                    name = f"{where}: {_OPTICAL}[{i}].{field}"
                    entry[field] = _convert(entry[field], kind, name)
    return data


def _optical_fields(required: bool = False) -> dict[str, str]:
    """Map the fields of an optical channel (only the required ones) to their kinds."""
    prefix = _OPTICAL + "."
    return {
        name[len(prefix) :]: kind
        for name, (req, kind) in _FIELDS.items()
        if name.startswith(prefix) and (req or not required)
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _get(data: dict, dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _convert(value: Any, kind: str, name: str) -> Any:
    if kind == "str":
        if not isinstance(value, str):
            raise ArgumentTypeError(f"{name} must be a string, got {value!r}")
        return value
    if kind == "strs":
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ArgumentTypeError(f"{name} must be a string or a list of strings, got {value!r}")
        return list(value)
    if kind == "real":
        return check_real(name, value, low=0.0)
    if kind == "reals":
        if not isinstance(value, list):
            raise ArgumentTypeError(f"{name} must be a list of numbers, got {value!r}")
        return [check_real(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if kind == "datetime":
        if isinstance(value, str):
            try:
                value = _dt.datetime.fromisoformat(value)
            except ValueError as exc:
                raise ArgumentTypeError(
                    f"{name} must be an ISO 8601 date and time with a time zone, e.g. "
                    f"'2024-05-01T10:30:00+02:00', got {value!r}"
                ) from exc
        if not isinstance(value, _dt.datetime):
            raise ArgumentTypeError(f"{name} must be a datetime or an ISO 8601 string")
        if value.tzinfo is None or value.utcoffset() is None:
            raise NWBMetadataError(
                f"{name} must be timezone-aware (NWB requires it): add an offset such as "
                f"'+00:00', got {value.isoformat()!r}"
            )
        return value.isoformat()
    raise ValueError(f"unknown metadata kind {kind!r}")  # pragma: no cover


def _complete_metadata(
    metadata: dict[str, Any], dataset: Any, channel: int, per_channel: bool = False
) -> dict[str, Any]:
    """Fill defaults (identifier, names, rate from acquisition metadata); name every gap.

    Returns
    -------
    dict
        The completed metadata. With ``per_channel`` (frames of several
        channels) ``imaging_plane.optical_channel`` is a list of one mapping
        per channel; otherwise a mapping, that of ``channel`` when a list
        was given.
    """
    meta = json.loads(json.dumps(metadata))
    names = list(dataset.channel_names)
    optical = _get(meta, _OPTICAL)
    if isinstance(optical, list) and len(optical) != len(names):
        raise NWBMetadataError(
            f"metadata: {_OPTICAL} lists {len(optical)} optical channels but the dataset has "
            f"{len(names)} channels {names}; give one mapping per channel, in that order",
            [_OPTICAL],
        )
    if per_channel:
        if isinstance(optical, list):
            entries = [dict(e) for e in optical]
        else:  # a mapping describes the exported channel; the others are missing
            entries = [{} for _ in names]
            entries[channel] = dict(optical or {})
    else:
        entries = [dict((optical[channel] if isinstance(optical, list) else optical) or {})]
    acq = getattr(dataset, "acquisition_metadata", None)
    rate = getattr(acq, "frame_rate", None)
    if _get(meta, "imaging_plane.imaging_rate") is None and rate:
        _set(meta, "imaging_plane.imaging_rate", float(rate))
    spacing = _get(meta, "imaging_plane.grid_spacing")
    pixel = getattr(acq, "pixel_size_um", None)
    if spacing is None and pixel is not None:
        px = np.atleast_1d(np.asarray(pixel, dtype=float))
        if px.size == 1:
            px = np.array([px[0], px[0]])
        # NWB's grid is (x, y[, z]); sima_fast's pixel size is (y, x) when two values
        grid = [float(px[-1]) * 1e-6, float(px[0]) * 1e-6]
        dz = getattr(acq, "plane_spacing_um", None)
        if dataset.frame_shape[0] > 1 and dz:
            grid.append(float(dz) * 1e-6)
        _set(meta, "imaging_plane.grid_spacing", grid)
        _set(meta, "imaging_plane.grid_spacing_unit", "meters")
    missing = [
        name
        for name, (req, _) in _FIELDS.items()
        if req and not name.startswith(_OPTICAL + ".") and _get(meta, name) is None
    ]
    for i, entry in enumerate(entries):
        if per_channel or isinstance(optical, list):
            where = f"{_OPTICAL}[{i if per_channel else channel}]"
        else:
            where = _OPTICAL
        missing += [f"{where}.{f}" for f in _optical_fields(True) if entry.get(f) is None]
    if missing:
        several = (
            f". The frames of the {len(names)} channels {names} are written as one "
            f"TwoPhotonSeries each, so {_OPTICAL} is a list of one mapping per channel"
            if per_channel
            else ""
        )
        raise NWBMetadataError(
            "missing required NWB metadata: "
            + ", ".join(missing)
            + several
            + ". Pass them as metadata={...} (nested dicts: subject, imaging_plane, "
            "imaging_plane.optical_channel) or in a YAML/JSON file (metadata='session.yaml', "
            "sima-fast export-nwb --metadata FILE); see docs/nwb.md for an example",
            missing,
        )
    meta.setdefault("identifier", str(uuid.uuid4()))
    _set(meta, "device.name", _get(meta, "device.name") or "Microscope")
    _set(
        meta,
        "device.description",
        _get(meta, "device.description") or "two-photon microscope",
    )
    _set(meta, "imaging_plane.name", _get(meta, "imaging_plane.name") or "ImagingPlane")
    name = dataset.channel_names[channel]
    _set(
        meta,
        "imaging_plane.description",
        _get(meta, "imaging_plane.description")
        or f"imaging plane of {'a volume of ' if dataset.frame_shape[0] > 1 else ''}"
        f"{dataset.frame_shape[1]} x {dataset.frame_shape[2]} pixels",
    )
    for k, entry in enumerate(entries):
        which = names[k] if per_channel else name
        entry["name"] = entry.get("name") or "OpticalChannel"
        entry["description"] = entry.get("description") or f"channel {which!r}"
    meta["imaging_plane"]["optical_channel"] = entries if per_channel else entries[0]
    starts = meta.get("sequence_starting_times")
    if starts is not None and len(starts) != dataset.num_sequences:
        raise NWBMetadataError(
            f"metadata: sequence_starting_times has {len(starts)} values but the dataset has "
            f"{dataset.num_sequences} sequences"
        )
    return meta


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------


def _pick_signals(dataset: Any, channel: int, signals_label: str | None) -> dict | None:
    records = dataset.signals(channel)
    if signals_label is not None:
        if signals_label not in records:
            raise KeyError(
                f"signals_label: no signals labelled {signals_label!r}; "
                f"available: {sorted(records)}"
            )
        return records[signals_label]
    if not records:
        return None
    label = most_recent(
        {k: (r.get("timestamp", "") if isinstance(r, dict) else "") for k, r in records.items()}
    )
    return records[label]


def _pick_rois(dataset: Any, rois_label: str | None, record: dict | None) -> list | None:
    from sima_fast.ROI import ROI

    shape = tuple(dataset.frame_shape[:3])
    if rois_label is not None:
        sets = dataset.ROIs
        if rois_label not in sets:
            raise KeyError(
                f"rois_label: no ROI set labelled {rois_label!r}; available: {sorted(sets)}"
            )
        rois = [r.copy() for r in sets[rois_label]]
        if record is not None and len(record.get("rois", [])) != len(rois):
            raise ValueError(
                f"rois_label: the ROI set {rois_label!r} has {len(rois)} ROIs but the signals "
                f"to export have {len(record.get('rois', []))}; pass the signals_label of an "
                "extraction of this ROI set"
            )
    elif record is not None and record.get("rois") is not None:
        rois = [ROI(**dict(d)) for d in record["rois"]]
    else:
        sets = dataset.ROIs
        if not sets:
            return None
        label = most_recent({k: v.timestamp for k, v in sets.items()})
        rois = [r.copy() for r in sets[label]]
    for roi in rois:
        roi.im_shape = shape
    return rois


def _nwb_image(plane: np.ndarray) -> np.ndarray:
    """Transpose a ``(Y, X)`` image to NWB's ``(x, y)``."""
    return np.ascontiguousarray(np.asarray(plane).T)


def _frame_iterator(
    seqs: list, channel: int, dtype: np.dtype, chunk_frames: int
) -> Iterator[np.ndarray]:
    """Yield NWB-ordered frames ``(x, y[, z])`` of the sequences, read chunk by chunk."""
    for seq in seqs:
        for _, block in seq.iter_chunks(chunk_frames):
            block = block[..., channel]  # (n, Z, Y, X)
            for frame in block:
                if frame.shape[0] == 1:
                    yield np.ascontiguousarray(frame[0].T, dtype=dtype)
                else:
                    yield np.ascontiguousarray(frame.transpose(2, 1, 0), dtype=dtype)


def _channel_suffixes(names: list) -> list[str]:
    """Name each channel within NWB object names (``TwoPhotonSeries_<suffix>``).

    Parameters
    ----------
    names : list
        The dataset's channel names.

    Returns
    -------
    list of str
        The names with every run of characters other than letters, digits,
        ``_``, ``-`` and ``.`` replaced by ``_``; ``ch0``, ``ch1``, ... for
        all when one would be empty or two would be equal.
    """
    import re

    out = [re.sub(r"[^A-Za-z0-9_.-]+", "_", str(n)).strip("_") for n in names]
    if not all(out) or len(set(out)) != len(out):
        out = [f"ch{i}" for i in range(len(names))]
    return out


def _linked_frames(seq: Any, out_dir: str, index: int) -> dict[str, Any]:
    """TwoPhotonSeries arguments that refer to a sequence's own file instead of copying it."""
    from sima_fast.sequence.base import SaveContext

    fmt = seq.format
    where = f"frames='link': sequence {index}"
    desc = seq.todict(SaveContext(None)) if fmt in ("TIFF", "TIFFs", "HDF5") else {}
    if fmt == "TIFF":
        if desc["num_planes"] != 1 or desc["num_channels"] != 1:
            raise ValueError(
                f"{where} is a TIFF of {desc['num_planes']} planes and {desc['num_channels']} "
                "channels interleaved; NWB can link single-plane, single-channel TIFFs only. "
                "Use frames=True to copy the frames"
            )
        files = [seq.path]
        starting_frame = [0]
    elif fmt == "TIFFs":
        files = list(seq.data_files())
        if seq.shape[1] != 1 or seq.shape[4] != 1 or len(files) != len(seq):
            raise ValueError(
                f"{where} reads several TIFF files per frame; NWB can link one image per "
                "file only. Use frames=True to copy the frames"
            )
        starting_frame = list(range(len(files)))
    elif fmt == "HDF5" and desc["dim_order"] in ("txy", "txyz"):
        return {"hdf5": (seq.path, desc["group"], desc["key"])}
    else:
        raise ValueError(
            f"{where} is a {fmt!r} sequence; NWB can link to single-plane TIFF files and to HDF5 "
            "datasets stored with axes 'txy' only. Use frames=True to copy the frames"
        )
    rel = [os.path.relpath(os.path.abspath(f), out_dir) for f in files]
    return {"external_file": rel, "starting_frame": starting_frame}


def export_nwb(
    dataset: Any,
    path: Any,
    *,
    metadata: Any = None,
    rois_label: str | None = None,
    signals_label: str | None = None,
    channel: Any = 0,
    frames: Any = False,
    spikes: bool = True,
    projections: bool = True,
    masks: str = "auto",
    epochs: bool = True,
    overwrite: bool = False,
    inspect: bool = False,
    compression: str | None = "gzip",
) -> Any:
    """Write a dataset as one NWB file (see :meth:`ImagingDataset.export_nwb`).

    Parameters
    ----------
    dataset : ImagingDataset
        The dataset.
    path : str or os.PathLike
        The ``.nwb`` file to write.
    metadata : dict, str or os.PathLike
        The NWB metadata or a YAML/JSON file of it (:func:`load_nwb_metadata`).
    rois_label, signals_label : str, optional
        Which ROI set and which extraction (default: the most recent
        extraction of ``channel`` and its ROIs; without one, the most recent
        ROI set).
    channel : int or str, optional
        The channel whose signals and images are written (and whose imaging
        plane the ROIs refer to). Default: 0.
    frames : {False, True, 'link'}, optional
        Also write the frames as a ``TwoPhotonSeries`` per sequence: copied
        in compressed chunks (True; with several channels, one series per
        sequence and channel, ``TwoPhotonSeries_<channel>`` or
        ``TwoPhotonSeries000_<channel>``, each on its channel's imaging plane
        ``ImagingPlane_<channel>``, and the metadata's
        ``imaging_plane.optical_channel`` a list, one per channel), or
        referring to the sequence's own file (``'link'``: ``external_file``
        for TIFF, an HDF5 link for HDF5 datasets stored ``'txy'``).
        Default: False.
    spikes : bool, optional
        Write the inferred spikes, fits and inference parameters when
        present. Default: True.
    projections : bool, optional
        Write the mean, std and kurtosis images. Default: True.
    masks : {'auto', 'image', 'pixel'}, optional
        How single-plane ROIs are stored: ``image_mask`` (dense, read by every
        NWB client), ``pixel_mask`` (sparse), or ``'auto'``: image masks up
        to 64 MiB of masks, pixel masks above. Volumes use ``voxel_mask``.
    epochs : bool, optional
        With several sequences, add one row per sequence to the file's
        ``epochs`` table (tags ``sequenceK``). Default: True. (roiextractors
        0.10's ``NwbImagingExtractor`` fails on files with epochs.)
    overwrite : bool, optional
        Replace an existing file. Default: False.
    inspect : bool, optional
        Run nwbinspector on the written file and return its verdict.
    compression : {'gzip', 'lzf', None}, optional
        HDF5 compression of frames and traces. Default: 'gzip'.

    Returns
    -------
    str or NWBVerdict
        The absolute path, or with ``inspect`` the :class:`NWBVerdict`
        (whose ``path`` is the file).

    Raises
    ------
    NWBMetadataError
        Required metadata is missing (every missing field is named).
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        ``path`` is a file the dataset reads, bad ``masks``/``frames``/
        ``compression``, or nothing to write.
    KeyError
        Unknown ``rois_label`` or ``signals_label``.
    ArgumentTypeError
        An argument of the wrong type.
    ImportError
        pynwb is not installed.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.path.abspath(os.fspath(path))
    overwrite = check_bool("overwrite", overwrite)
    inspect = check_bool("inspect", inspect)
    spikes = check_bool("spikes", spikes)
    projections = check_bool("projections", projections)
    epochs = check_bool("epochs", epochs)
    if not (isinstance(frames, bool) or (isinstance(frames, str) and frames == "link")):
        raise ArgumentTypeError(f"frames must be True, False or 'link', got {frames!r}")
    if not isinstance(masks, str) or masks not in ("auto", "image", "pixel"):
        raise ValueError(f"masks must be 'auto', 'image' or 'pixel', got {masks!r}")
    if compression is not None and (
        not isinstance(compression, str) or compression not in ("gzip", "lzf")
    ):
        raise ValueError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")
    for name, value in (("rois_label", rois_label), ("signals_label", signals_label)):
        if value is not None and not isinstance(value, str):
            raise ArgumentTypeError(f"{name} must be a str or None, got {value!r}")
    chan = resolve_channel(channel, dataset.channel_names, "channel")
    if metadata is None:
        metadata = {}
    channel_names = list(dataset.channel_names)
    per_channel = frames is True and len(channel_names) > 1
    meta = _complete_metadata(load_nwb_metadata(metadata), dataset, chan, per_channel)
    if os.path.isdir(path):
        raise IsADirectoryError(f"path: {path!r} is a directory; give a .nwb file name")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"path: {path!r} exists; pass overwrite=True to replace it")
    refuse_dataset_files(dataset, path, "path")
    out_dir = os.path.dirname(path)
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"path: the directory {out_dir!r} does not exist")

    pynwb = _require("pynwb")
    hdmf_io = _require("hdmf.backends.hdf5.h5_utils")
    hdmf_data = _require("hdmf.data_utils")
    from pynwb.base import Images
    from pynwb.file import Subject
    from pynwb.image import GrayscaleImage
    from pynwb.ophys import (
        DfOverF,
        Fluorescence,
        ImageSegmentation,
        OpticalChannel,
        RoiResponseSeries,
        TwoPhotonSeries,
    )

    def compressed(data: Any, **kw: Any) -> Any:
        if compression is None:
            return hdmf_io.H5DataIO(data=data, **kw) if kw else data
        return hdmf_io.H5DataIO(data=data, compression=compression, **kw)

    record = _pick_signals(dataset, chan, signals_label)
    rois = _pick_rois(dataset, rois_label, record)
    Z, Y, X = (int(s) for s in dataset.frame_shape[:3])
    rate = float(meta["imaging_plane"]["imaging_rate"])
    lengths = [len(s) for s in dataset.sequences]
    starts = meta.get("sequence_starting_times")
    if starts is None:
        starts = list(np.concatenate([[0], np.cumsum(lengths)[:-1]]) / rate)
    for k in range(1, len(starts)):
        if starts[k] < starts[k - 1] + lengths[k - 1] / rate - 1e-9:
            raise NWBMetadataError(
                f"metadata: sequence_starting_times[{k}] = {starts[k]} s begins before "
                f"sequence {k - 1} ends ({starts[k - 1] + lengths[k - 1] / rate} s)"
            )
    regular = all(
        abs(starts[k] - (starts[k - 1] + lengths[k - 1] / rate)) < 1e-9
        for k in range(1, len(starts))
    )

    subject = Subject(**meta["subject"])
    file_kw = {
        k: meta[k]
        for k in (
            "experimenter",
            "lab",
            "institution",
            "experiment_description",
            "session_id",
            "keywords",
            "related_publications",
        )
        if k in meta
    }
    nwbfile = pynwb.NWBFile(
        session_description=meta["session_description"],
        identifier=meta["identifier"],
        session_start_time=_dt.datetime.fromisoformat(meta["session_start_time"]),
        subject=subject,
        **file_kw,
    )
    device = nwbfile.create_device(**meta["device"])
    plane_meta = dict(meta["imaging_plane"])
    optical = plane_meta.pop("optical_channel")
    # one imaging plane per channel when the frames of several are written (each with its
    # own optical channel, as a TwoPhotonSeries refers to a plane, not to a channel)
    suffixes = _channel_suffixes(channel_names) if per_channel else [""]
    planes = []
    for c, entry in enumerate(optical if per_channel else [optical]):
        this = dict(plane_meta)
        if per_channel:
            this["name"] = f"{plane_meta['name']}_{suffixes[c]}"
            this["description"] = f"{plane_meta['description']}, channel {channel_names[c]!r}"
        planes.append(
            nwbfile.create_imaging_plane(
                optical_channel=OpticalChannel(**entry), device=device, **this
            )
        )
    imaging_plane = planes[chan] if per_channel else planes[0]

    # -- frames --------------------------------------------------------------------
    series_names = (
        ["TwoPhotonSeries"]
        if dataset.num_sequences == 1
        else [f"TwoPhotonSeries{k:03d}" for k in range(dataset.num_sequences)]
    )
    opened: list = []
    reference = None
    if frames:
        for k, c, seq in (
            (k, c, seq)
            for k, seq in enumerate(dataset.sequences)
            for c in (range(len(channel_names)) if per_channel else [chan])
        ):
            common = {
                "name": f"{series_names[k]}_{suffixes[c]}" if per_channel else series_names[k],
                "imaging_plane": planes[c] if per_channel else imaging_plane,
                "rate": rate,
                "starting_time": float(starts[k]),
                "unit": "n.a.",
                "description": f"sequence {k} of the dataset, channel "
                f"{channel_names[c]!r}: {seq.describe()}",
            }
            if frames == "link":
                link = _linked_frames(seq, out_dir, k)
                if "hdf5" in link:
                    import h5py

                    src, group, key = link["hdf5"]
                    fh = h5py.File(src, "r")
                    opened.append(fh)
                    ds = fh[group][key]
                    ts = TwoPhotonSeries(data=hdmf_io.H5DataIO(ds, link_data=True), **common)
                else:
                    ts = TwoPhotonSeries(
                        external_file=link["external_file"],
                        starting_frame=link["starting_frame"],
                        format="external",
                        num_samples=len(seq),
                        dimension=[X, Y],
                        **common,
                    )
            else:
                dtype = np.dtype(seq.dtype)
                frame_bytes = max(Z * Y * X * dtype.itemsize, 1)
                chunk = int(max(1, min(len(seq), _CHUNK_BYTES // frame_bytes)))
                shape = (len(seq), X, Y) if Z == 1 else (len(seq), X, Y, Z)
                iterator = hdmf_data.DataChunkIterator(
                    data=_frame_iterator([seq], c, dtype, chunk),
                    maxshape=shape,
                    dtype=dtype,
                    buffer_size=chunk,
                )
                ts = TwoPhotonSeries(
                    data=compressed(iterator, chunks=(chunk, *shape[1:])),
                    dimension=[X, Y] if Z == 1 else [X, Y, Z],
                    **common,
                )
            nwbfile.add_acquisition(ts)
            # an external series has no frames to compare masks to
            if ts.external_file is None and c == chan:
                reference = reference or ts

    # -- processing: ROIs, traces, images ------------------------------------------
    ophys = nwbfile.create_processing_module(
        name="ophys", description="optical physiology processed by sima_fast"
    )
    table_region = None
    if rois is not None and rois:
        img_seg = ImageSegmentation(name="ImageSegmentation")
        ophys.add(img_seg)
        ps = img_seg.create_plane_segmentation(
            name="PlaneSegmentation",
            description=f"{len(rois)} ROIs exported by sima_fast",
            imaging_plane=imaging_plane,
            **({"reference_images": [reference]} if reference is not None else {}),
        )
        ps.add_column("roi_label", "the ROI's label in sima_fast (empty when it had none)")
        ps.add_column("roi_tags", "the ROI's tags in sima_fast, sorted, joined by commas")
        ps.add_column("roi_name", "the ROI's id in sima_fast (empty when it had none)")
        kind = "voxel" if Z > 1 else masks
        empty = [i for i, roi in enumerate(rois) if not any(p.count_nonzero() for p in roi.mask)]
        if kind == "auto":
            small = len(rois) * X * Y * 4 <= _IMAGE_MASK_LIMIT
            kind = "image" if small or (empty and Z == 1) else "pixel"
        if empty and kind in ("pixel", "voxel"):
            named = ", ".join(
                f"{i} (label {rois[i].label!r})" if rois[i].label is not None else str(i)
                for i in empty[:10]
            )
            raise ValueError(
                f"rois: ROI {named} has no pixel, which an NWB {kind}_mask cannot hold; "
                + ("delete it, or pass masks='image'" if Z == 1 else "delete it")
            )
        for i, roi in enumerate(rois):
            planes = roi.mask
            extra = {
                "roi_label": "" if roi.label is None else str(roi.label),
                "roi_tags": ",".join(sorted(roi.tags)),
                "roi_name": "" if roi.id is None else str(roi.id),
            }
            if kind == "image":
                ps.add_roi(
                    image_mask=_nwb_image(planes[0].toarray().astype(np.float32)), id=i, **extra
                )
            else:
                pix = []
                for z, plane in enumerate(planes):
                    coo = plane.tocoo()
                    for y, x, w in zip(coo.row, coo.col, coo.data):
                        if w != 0:
                            entry = (int(x), int(y), int(z), float(w))
                            pix.append(entry if kind == "voxel" else entry[:2] + entry[3:])
                if kind == "voxel":
                    ps.add_roi(voxel_mask=pix, id=i, **extra)
                else:
                    ps.add_roi(pixel_mask=pix, id=i, **extra)
        table_region = ps.create_roi_table_region(
            region=list(range(len(rois))), description="every ROI"
        )

    if record is not None and table_region is not None:
        written = []
        containers: dict[str, Any] = {}
        for key, container_name, series_name, description in _TRACES:
            if key in ("spikes", "spikes_fits") and not spikes:
                continue
            blocks = record.get(key)
            if blocks is None:
                continue
            blocks = [np.asarray(b, dtype=np.float32) for b in blocks]
            if len(blocks) != dataset.num_sequences or any(
                b.shape != (len(rois), n) for b, n in zip(blocks, lengths)
            ):
                raise ValueError(
                    f"the signals' {key!r} traces do not match the dataset's "
                    f"{dataset.num_sequences} sequences of {lengths} frames and {len(rois)} ROIs"
                )
            data = np.ascontiguousarray(np.concatenate(blocks, axis=1).T)  # (time, rois)
            timing: dict[str, Any]
            if regular:
                timing = {"rate": rate, "starting_time": float(starts[0])}
            else:
                timing = {
                    "timestamps": np.concatenate(
                        [s + np.arange(n) / rate for s, n in zip(starts, lengths)]
                    )
                }
            if container_name not in containers:
                cls = Fluorescence if container_name == "Fluorescence" else DfOverF
                containers[container_name] = cls(name=container_name)
                ophys.add(containers[container_name])
            rrs = RoiResponseSeries(
                name=series_name,
                data=compressed(data),
                rois=table_region,
                unit="n.a.",
                description=description,
                **timing,
            )
            containers[container_name].add_roi_response_series(rrs)
            written.append(rrs)
        params = record.get("spikes_params") if spikes else None
        if params is not None and "spikes" in record:
            _add_spike_parameters(ophys, params, len(rois))
    if epochs and len(lengths) > 1:
        for k, n in enumerate(lengths):
            nwbfile.add_epoch(
                start_time=float(starts[k]),
                stop_time=float(starts[k] + n / rate),
                tags=[f"sequence{k}"],
            )

    if projections:
        proj = dataset.compute_projections()
        images = []
        for name, key in (
            ("mean", "time_averages"),
            ("std", "time_std"),
            ("kurtosis", "time_kurtosis"),
        ):
            for z in range(Z):
                img = np.nan_to_num(np.asarray(proj[key][z, :, :, chan], dtype=np.float32))
                images.append(
                    GrayscaleImage(
                        name=name if Z == 1 else f"{name}_plane{z}",
                        data=_nwb_image(img),
                        description=f"per-pixel time {name} of channel "
                        f"{dataset.channel_names[chan]!r}"
                        + (f", plane {z}" if Z > 1 else "")
                        + " (NaN written as 0)",
                    )
                )
        ophys.add(
            Images(
                name="SegmentationImages",
                images=images,
                description="time projections of the imaging data",
            )
        )

    if not ophys.data_interfaces:
        nwbfile.processing.pop("ophys")
    if not frames and not ophys.data_interfaces:
        raise ValueError(
            "nothing to export: the dataset has no ROIs and projections=False, frames=False"
        )

    try:
        with atomic_write(path) as tmp:
            with pynwb.NWBHDF5IO(tmp, "w") as io:
                io.write(nwbfile)
            if not overwrite and os.path.lexists(path):
                raise FileExistsError(
                    f"path: {path!r} appeared while it was being written; not replaced "
                    "(pass overwrite=True to replace it)"
                )
    finally:
        for fh in opened:
            fh.close()
    if inspect:
        return inspect_nwb(path)
    return path


def _add_spike_parameters(ophys: Any, params: list, n_rois: int) -> None:
    """Add the spike inference parameters, one row per sequence and ROI, as a DynamicTable."""
    from hdmf.common import DynamicTable

    table = DynamicTable(
        name="SpikeInferenceParameters",
        description="parameters of sima_fast's spike inference (AR(1) model c_t = gamma "
        "c_(t-1) + s_t, noise sigma, baseline b, penalty lambda), per sequence and ROI; "
        "see sima_fast's docs/contract.md#spike-inference",
    )
    numeric = ("sigma", "gamma", "baseline", "lambda")
    table.add_column("sequence", "index of the sequence")
    table.add_column("roi", "row of the ROI in PlaneSegmentation")
    for name in numeric:
        table.add_column(name, f"estimated {name} of the ROI")
    for name in ("status", "solver"):
        table.add_column(name, f"the solver's {name} for the ROI")
    for k, p in enumerate(params):
        p = dict(p)
        cols = {name: np.asarray(p.get(name, np.full(n_rois, np.nan))) for name in numeric}
        text = {
            name: [str(v) for v in np.asarray(p.get(name, [""] * n_rois)).ravel()]
            for name in ("status", "solver")
        }
        for i in range(n_rois):
            table.add_row(
                sequence=k,
                roi=i,
                **{name: float(np.ravel(cols[name])[i]) for name in numeric},
                **{name: text[name][i] if i < len(text[name]) else "" for name in text},
            )
    ophys.add(table)


def inspect_nwb(path: Any, config: str | None = None) -> NWBVerdict:
    """Run nwbinspector on an NWB file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    config : {None, 'dandi'}, optional
        nwbinspector's importance configuration: its defaults, or DANDI's
        stricter one.

    Returns
    -------
    NWBVerdict

    Raises
    ------
    FileNotFoundError
        No such file.
    ImportError
        nwbinspector is not installed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file: {path!r}")
    inspector = _require("nwbinspector")
    kw = {}
    if config is not None:
        if config != "dandi":
            raise ValueError(f"config must be None or 'dandi', got {config!r}")
        kw["config"] = inspector.load_config(filepath_or_keyword="dandi")
    messages = list(inspector.inspect_nwbfile(nwbfile_path=path, **kw))
    return NWBVerdict(os.path.abspath(path), messages)


# ---------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------


def _open_nwb(path: str) -> tuple[Any, Any]:
    pynwb = _require("pynwb")
    try:
        io = pynwb.NWBHDF5IO(path, "r")
        return io, io.read()
    except Exception as exc:
        raise OSError(f"path: cannot read {path!r} as an NWB file ({exc})") from exc


def locate_two_photon_series(path: Any, series: str | None = None) -> dict[str, Any]:
    """Find a ``TwoPhotonSeries`` in an NWB file and say where its frames are stored.

    Parameters
    ----------
    path : str or os.PathLike
        The NWB file.
    series : str, optional
        The series' name (in ``acquisition`` or a processing module). Default:
        the file's only TwoPhotonSeries.

    Returns
    -------
    dict
        ``name``, ``group`` (the HDF5 group of the series), ``key``
        (``'data'``), ``dim_order`` (``'txy'`` or ``'txyz'``), ``rate`` and
        ``starting_time`` (None when the series has timestamps), and
        ``acquisition``: the :class:`~sima_fast.sequence.metadata.AcquisitionMetadata`
        fields the series and its ImagingPlane give (frame rate, planes, pixel
        size and plane spacing in µm, channel name; indicator, location and
        wavelengths in ``extra``).

    Raises
    ------
    FileNotFoundError
        No such file.
    OSError
        Not an NWB file.
    KeyError
        No TwoPhotonSeries named ``series`` (the message lists those there
        are), or none at all.
    ValueError
        The series has several candidates and no name was given, its frames
        are in external files, or its data is not 3-D or 4-D.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"path must be a path, got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file: {path!r}")
    if series is not None and not isinstance(series, str):
        raise ArgumentTypeError(f"series must be a str or None, got {series!r}")
    from pynwb.ophys import TwoPhotonSeries

    io, nwbfile = _open_nwb(path)
    try:
        found = {}
        for name, obj in nwbfile.acquisition.items():
            if isinstance(obj, TwoPhotonSeries):
                found[name] = (f"/acquisition/{name}", obj)
        for mod_name, mod in nwbfile.processing.items():
            for name, obj in mod.data_interfaces.items():
                if isinstance(obj, TwoPhotonSeries):
                    found.setdefault(name, (f"/processing/{mod_name}/{name}", obj))
        if not found:
            raise KeyError(f"series: {path!r} holds no TwoPhotonSeries")
        if series is None:
            if len(found) > 1:
                raise ValueError(
                    f"series: {path!r} holds {len(found)} TwoPhotonSeries {sorted(found)}; "
                    "name one"
                )
            series = next(iter(found))
        if series not in found:
            raise KeyError(
                f"series: {path!r} has no TwoPhotonSeries named {series!r}; "
                f"available: {sorted(found)}"
            )
        group, ts = found[series]
        if ts.external_file is not None and len(ts.external_file):
            raise ValueError(
                f"series: the frames of {series!r} in {path!r} are in external files "
                f"{list(ts.external_file)}; open those with Sequence.create('TIFF', ...)"
            )
        ndim = len(ts.data.shape)
        if ndim not in (3, 4):
            raise ValueError(
                f"series: the data of {series!r} in {path!r} has {ndim} axes; expected "
                "(t, x, y) or (t, x, y, z)"
            )
        has_stamps = ts.timestamps is not None
        return {
            "name": series,
            "group": group,
            "key": "data",
            "dim_order": "txy" if ndim == 3 else "txyz",
            "rate": None if has_stamps else ts.rate,
            "starting_time": None if has_stamps else ts.starting_time,
            "acquisition": _series_acquisition(ts, ndim),
        }
    finally:
        io.close()


#: grid_spacing units NWB files use, in micrometres
_UNIT_UM = {
    "meters": 1e6, "meter": 1e6, "m": 1e6,
    "millimeters": 1e3, "millimeter": 1e3, "mm": 1e3,
    "micrometers": 1.0, "micrometer": 1.0, "microns": 1.0, "micron": 1.0, "um": 1.0, "µm": 1.0,
}  # fmt: skip


def _series_acquisition(ts: Any, ndim: int) -> dict[str, Any]:
    """Read what a TwoPhotonSeries and its ImagingPlane record of the acquisition.

    The frame rate is the series' ``rate``, else the median interval of its
    timestamps, else the plane's ``imaging_rate``; the pixel size comes from
    ``grid_spacing`` (NWB's ``(x, y[, z])``, in ``grid_spacing_unit``,
    metres by default), the channel name from the plane's optical channel
    (unless it is pynwb's default name). What the file does not say is left
    out.

    Returns
    -------
    dict
        Keyword arguments of
        :class:`~sima_fast.sequence.metadata.AcquisitionMetadata`.
    """
    out: dict[str, Any] = {"n_channels": 1, "source": "NWB TwoPhotonSeries"}
    rate = None
    if ts.timestamps is None:
        rate = ts.rate
    else:
        stamps = np.asarray(ts.timestamps[: min(len(ts.timestamps), 10_000)], dtype=float)
        steps = np.diff(stamps)
        steps = steps[np.isfinite(steps) & (steps > 0)]
        if steps.size:
            rate = 1.0 / float(np.median(steps))
    plane = getattr(ts, "imaging_plane", None)
    if rate is None and plane is not None:
        rate = getattr(plane, "imaging_rate", None)
    if rate is not None and np.isfinite(rate) and rate > 0:
        out["frame_rate"] = float(rate)
    if ndim == 4:
        out["n_planes"] = int(ts.data.shape[3])
    else:
        out["n_planes"] = 1
    if plane is None:
        return out
    grid = getattr(plane, "grid_spacing", None)
    unit = str(getattr(plane, "grid_spacing_unit", None) or "meters").strip().lower()
    if grid is not None and unit in _UNIT_UM:
        g = np.asarray(grid[:], dtype=float).ravel() * _UNIT_UM[unit]
        if g.size >= 2 and np.all(np.isfinite(g[:2])) and np.all(g[:2] > 0):
            out["pixel_size_um"] = (float(g[1]), float(g[0]))  # (y, x) from NWB's (x, y)
        if g.size >= 3 and np.isfinite(g[2]) and g[2] > 0 and out["n_planes"] > 1:
            out["plane_spacing_um"] = float(g[2])
    channels = list(getattr(plane, "optical_channel", None) or [])
    if len(channels) == 1 and str(channels[0].name) != "OpticalChannel":
        out["channel_names"] = (str(channels[0].name),)
    extra = {}
    for key in ("indicator", "location", "excitation_lambda"):
        value = getattr(plane, key, None)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            extra[key] = value
    if len(channels) == 1:
        emission = getattr(channels[0], "emission_lambda", None)
        if isinstance(emission, (int, float)):
            extra["emission_lambda"] = float(emission)
    if extra:
        out["extra"] = extra
    return out


def _mask_planes(ps: Any, i: int, shape: tuple[int, int, int] | None) -> list:
    """Return the masks of row ``i`` of a PlaneSegmentation as ``Z`` sparse ``(Y, X)`` planes."""
    cols = ps.colnames
    if "image_mask" in cols:
        img = np.asarray(ps["image_mask"][i])
        if img.ndim == 2:
            img = img[:, :, None]
        # NWB (x, y, z) -> (z, y, x)
        vol = img.transpose(2, 1, 0)
        return [scipy.sparse.csr_matrix(p) for p in vol]
    key = "voxel_mask" if "voxel_mask" in cols else "pixel_mask" if "pixel_mask" in cols else None
    if key is None:
        raise ValueError("the PlaneSegmentation has no image_mask, pixel_mask or voxel_mask")
    rows = ps[key][i]
    width = 4 if key == "voxel_mask" else 3
    arr = np.asarray([tuple(r) for r in rows], dtype=float).reshape(-1, width)
    x = arr[:, 0].astype(np.int64)
    y = arr[:, 1].astype(np.int64)
    z = arr[:, 2].astype(np.int64) if key == "voxel_mask" else np.zeros(len(arr), np.int64)
    w = arr[:, -1]
    if len(arr) and (x.min() < 0 or y.min() < 0 or z.min() < 0):
        raise ValueError(f"ROI {i}: negative pixel coordinates in {key}")
    extent = (
        int(z.max()) + 1 if len(arr) else 1,
        int(y.max()) + 1 if len(arr) else 1,
        int(x.max()) + 1 if len(arr) else 1,
    )
    shape = extent if shape is None else tuple(max(a, b) for a, b in zip(shape, extent))
    planes = []
    for p in range(shape[0]):
        sel = z == p
        planes.append(scipy.sparse.csr_matrix((w[sel], (y[sel], x[sel])), shape=shape[1:]))
    return planes


def _reference_shape(ps: Any) -> tuple[int, int, int] | None:
    """``(Z, Y, X)`` of the series a PlaneSegmentation refers to, when it says."""
    try:
        refs = ps.reference_images
        for ref in refs or []:
            shape = getattr(getattr(ref, "data", None), "shape", None)
            if shape is not None and len(shape) in (3, 4) and shape[0] > 0:
                return (shape[3] if len(shape) == 4 else 1, int(shape[2]), int(shape[1]))
            dim = getattr(ref, "dimension", None)
            if dim is not None and len(dim) >= 2:
                return (int(dim[2]) if len(dim) > 2 else 1, int(dim[1]), int(dim[0]))
    except Exception:  # a reference the file cannot resolve: no shape to offer
        return None
    return None


@roi_readers.register("NWB")
def read_nwb_rois(
    path: str,
    label: str | None = None,
    *,
    im_shape: Any = None,
    plane_segmentation: str | None = None,
) -> Any:
    """Read the ROIs of a PlaneSegmentation of an NWB file (format ``'NWB'``).

    Parameters
    ----------
    path : str
        The NWB file.
    label : str, optional
        The PlaneSegmentation's name (in any processing module's
        ImageSegmentation), as for every ROI format. Default: the file's only
        one, or the one named ``'PlaneSegmentation'``.
    im_shape : tuple of int, optional
        ``(Z, Y, X)`` of the frames, for pixel and voxel masks (default: the
        shape of the series the segmentation refers to, else the extent of
        the pixels).
    plane_segmentation : str, optional
        The PlaneSegmentation's name, as pynwb calls it: the same choice as
        ``label`` (give either, or both when equal). When two processing
        modules hold PlaneSegmentations of the same name, name one by its
        path, ``'module/ImageSegmentation/name'``.

    Returns
    -------
    sima_fast.ROI.ROIList
        One mask ROI per row, weights kept as stored; labels, tags and ids
        from the columns sima_fast writes (``roi_label``, ``roi_tags``,
        ``roi_name``) or, in files of other tools, the row id as label.

    Raises
    ------
    KeyError
        No PlaneSegmentation of that name (the message lists them).
    ValueError
        Several PlaneSegmentations and none chosen (the message lists them),
        ``label`` and ``plane_segmentation`` both given and different, or a
        table without masks.
    ArgumentTypeError
        ``label`` or ``plane_segmentation`` is not a str.
    OSError
        Not an NWB file.
    """
    from pynwb.ophys import PlaneSegmentation

    from sima_fast.ROI import ROI, ROIList, normalise_im_shape

    for argname, value in (("label", label), ("plane_segmentation", plane_segmentation)):
        if value is not None and not isinstance(value, str):
            raise ArgumentTypeError(
                f"{argname} must be the name of a PlaneSegmentation (a str) or None, got {value!r}"
            )
    if label is not None and plane_segmentation is not None and label != plane_segmentation:
        raise ValueError(
            f"label={label!r} and plane_segmentation={plane_segmentation!r} name different "
            "PlaneSegmentations; give one of them"
        )
    argname = "plane_segmentation" if plane_segmentation is not None else "label"
    wanted = plane_segmentation if plane_segmentation is not None else label

    io, nwbfile = _open_nwb(os.fspath(path))
    try:
        by_path: dict[str, Any] = {}
        for mod_name, mod in nwbfile.processing.items():
            for obj_name, obj in mod.data_interfaces.items():
                for ps in getattr(obj, "plane_segmentations", {}).values():
                    if isinstance(ps, PlaneSegmentation):
                        by_path[f"{mod_name}/{obj_name}/{ps.name}"] = ps
        by_name: dict[str, list[str]] = {}
        for where, ps in by_path.items():
            by_name.setdefault(ps.name, []).append(where)
        # each PlaneSegmentation by its name, or by its path where names repeat
        found = {
            (name if len(paths) == 1 else where): by_path[where]
            for name, paths in by_name.items()
            for where in paths
        }
        if not found:
            raise KeyError(f"{argname}: {path!r} holds no PlaneSegmentation")
        if wanted is None:
            if len(found) == 1:
                wanted = next(iter(found))
            elif "PlaneSegmentation" in found:
                wanted = "PlaneSegmentation"
            else:
                raise ValueError(
                    f"plane_segmentation: {path!r} holds {len(found)} PlaneSegmentations "
                    f"{sorted(found)}; name one (plane_segmentation=... or label=...)"
                )
        if wanted not in found and wanted in by_path:
            found[wanted] = by_path[wanted]  # a path where the name alone was enough
        if wanted not in found:
            hint = (
                f" (several are named {wanted!r}: give one's path)"
                if len(by_name.get(wanted, ())) > 1
                else ""
            )
            raise KeyError(
                f"{argname}: {path!r} has no PlaneSegmentation named {wanted!r}{hint}; "
                f"available: {sorted(found)}"
            )
        label = wanted
        ps = found[label]
        shape = normalise_im_shape(im_shape) if im_shape is not None else _reference_shape(ps)
        cols = ps.colnames
        ids = list(ps.id.data[:])
        rois = []
        for i in range(len(ids)):
            try:
                planes = _mask_planes(ps, i, shape)
            except ValueError as exc:
                raise ValueError(f"{path!r}, PlaneSegmentation {label!r}: {exc}") from exc
            roi_label = str(ps["roi_label"][i]) if "roi_label" in cols else str(ids[i])
            tags = str(ps["roi_tags"][i]) if "roi_tags" in cols else ""
            name = str(ps["roi_name"][i]) if "roi_name" in cols else ""
            rois.append(
                ROI(
                    mask=planes,
                    label=roi_label or None,
                    tags=[t for t in tags.split(",") if t],
                    id=name or None,
                )
            )
        return ROIList(rois)
    finally:
        io.close()

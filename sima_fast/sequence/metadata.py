"""Acquisition metadata: frame rate, zoom, planes, channels and pixel size of a recording.

:class:`AcquisitionMetadata` is the one type the package uses for what the
microscope recorded about an acquisition. Sequences answer it as
:attr:`Sequence.acquisition_metadata <sima_fast.sequence.base.Sequence.acquisition_metadata>`
(read lazily from the data file: ScanImage, ImageJ and OME-TIFF metadata and
TIFF resolution tags through ``tifffile``, HDF5 attributes), views pass it
through (adjusted for what they select), a dataset merges its sequences'
(:attr:`ImagingDataset.acquisition_metadata
<sima_fast.imaging.ImagingDataset.acquisition_metadata>`), and NWB export
and ``sima-fast info`` read it from there.

Metadata that cannot be read (a malformed ScanImage header, an OME-XML
document that does not parse, values of the wrong type) never stops a
sequence from loading: the reader warns with
:class:`AcquisitionMetadataWarning` and gives None for that file.

Examples
--------
>>> meta = AcquisitionMetadata(frame_rate=30.0, zoom=2.0, source='ScanImage 2016+')
>>> user = AcquisitionMetadata(frame_rate=29.97, pixel_size_um=(0.8, 0.8))
>>> merged = meta.merge(user)              # the values given in `user` win
>>> merged.frame_rate, merged.zoom, merged.pixel_size_um, merged.source
(29.97, 2.0, (0.8, 0.8), 'user; ScanImage 2016+')
>>> AcquisitionMetadata.fromdict(merged.todict()) == merged
True
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from sima_fast._validate import ArgumentTypeError, check_int, check_real
from sima_fast._warnings import warn

__all__ = [
    "FIELDS",
    "AcquisitionMetadata",
    "AcquisitionMetadataWarning",
    "check_acquisition_metadata",
    "combine_metadata",
    "index_metadata",
    "read_hdf5_metadata",
    "read_tiff_metadata",
]

#: The fields of :class:`AcquisitionMetadata`, in order (the keys of its ``todict()``).
FIELDS = (
    "frame_rate",
    "zoom",
    "n_planes",
    "n_channels",
    "pixel_size_um",
    "plane_spacing_um",
    "channel_names",
    "source",
    "extra",
)

_VALUE_FIELDS = FIELDS[:7]

#: Length units of ImageJ, OME and HDF5 metadata, in micrometres.
_UNITS_UM = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "micrometers": 1.0,
    "micrometres": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
}

#: Time units of OME metadata, in seconds.
_UNITS_S = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0, "h": 3600.0}

#: Resolutions (per inch) that are software defaults, not calibrations.
_DEFAULT_DPI = (1.0, 72.0, 96.0, 150.0, 300.0, 600.0)


class AcquisitionMetadataWarning(UserWarning):
    """A data file's acquisition metadata could not be read; it is ignored (None)."""


def _positive_real(name: str, value: Any) -> float | None:
    out = check_real(name, value, allow_none=True)
    if out is not None and out <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return out


def _json_value(value: Any, where: str, depth: int = 0) -> Any:
    """Return ``value`` as plain JSON types (numpy scalars and arrays become numbers and lists)."""
    if depth > 32:
        raise ValueError(f"{where} nests more than 32 levels deep")
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        out = float(value)
        if not math.isfinite(out):
            raise ValueError(f"{where} must be finite (JSON has no NaN nor infinity), got {value}")
        return out
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ArgumentTypeError(f"{where} keys must be strings, got {k!r}")
            out[k] = _json_value(v, f"{where}[{k!r}]", depth + 1)
        return out
    raise ArgumentTypeError(
        f"{where} must hold JSON values (None, bool, numbers, str, lists, dicts), got a "
        f"{type(value).__name__}"
    )


@dataclasses.dataclass(frozen=True)
class AcquisitionMetadata:
    """What the microscope recorded about an acquisition.

    Every value is optional (None: not known). Values are checked and
    normalised when the object is made: numbers become ``float``/``int``,
    ``pixel_size_um`` and ``channel_names`` become tuples, ``extra`` a copy
    of plain JSON values.

    Parameters
    ----------
    frame_rate : float, optional
        Frames per second of the sequence, ``> 0``. A frame is a whole
        ``(Z, Y, X, C)`` volume: with several planes this is the volume rate.
    zoom : float, optional
        The scan zoom factor, ``> 0``.
    n_planes : int, optional
        Planes per frame, ``>= 1``.
    n_channels : int, optional
        Channels per frame, ``>= 1``.
    pixel_size_um : (float, float), optional
        Pixel size ``(y, x)`` in micrometres, both ``> 0``.
    plane_spacing_um : float, optional
        Distance between consecutive planes in micrometres, ``> 0``.
    channel_names : sequence of str, optional
        One name per channel (as long as ``n_channels`` when both are given).
    source : str, optional
        Where the values come from: ``'ScanImage 2016+'``,
        ``'ScanImage 3.x/4/5'``, ``'ImageJ'``, ``'OME-TIFF'``,
        ``'TIFF tags'``, ``'HDF5 attributes'``, ``'Scanbox'``,
        ``'Prairie'``, ``'user'`` (default), or several joined by ``'; '``
        after :meth:`merge`.
    extra : dict, optional
        Further raw key/values worth keeping (string keys, JSON values:
        numpy scalars and arrays are converted), e.g. the ScanImage version
        or the laser wavelength.

    Raises
    ------
    ArgumentTypeError
        A value of the wrong type (a string for a number, a bool, a float
        plane count, a non-JSON value in ``extra``).
    ValueError
        A value out of range (zero or negative rate, size, count; NaN or
        infinity), a pixel size that is not two numbers, or channel names
        whose number differs from ``n_channels``.

    Examples
    --------
    >>> meta = AcquisitionMetadata(frame_rate=15, n_channels=2,
    ...                            channel_names=['GCaMP', 'tdTomato'])
    >>> meta.frame_rate, meta.channel_names
    (15.0, ('GCaMP', 'tdTomato'))
    >>> AcquisitionMetadata(zoom=0)
    Traceback (most recent call last):
    ...
    ValueError: zoom must be > 0, got 0
    """

    frame_rate: float | None = None
    zoom: float | None = None
    n_planes: int | None = None
    n_channels: int | None = None
    pixel_size_um: tuple[float, float] | None = None
    plane_spacing_um: float | None = None
    channel_names: tuple[str, ...] | None = None
    source: str = "user"
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check and normalise every field (see the class docstring)."""
        put = object.__setattr__
        put(self, "frame_rate", _positive_real("frame_rate", self.frame_rate))
        put(self, "zoom", _positive_real("zoom", self.zoom))
        for name in ("n_planes", "n_channels"):
            value = getattr(self, name)
            if value is not None:
                put(self, name, check_int(name, value, low=1))
        size = self.pixel_size_um
        if size is not None:
            if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
                raise ArgumentTypeError(
                    f"pixel_size_um must be a pair (y, x) of sizes in micrometres, got {size!r}"
                )
            put(
                self,
                "pixel_size_um",
                tuple(_positive_real(f"pixel_size_um[{i}]", v) for i, v in enumerate(size)),
            )
        put(self, "plane_spacing_um", _positive_real("plane_spacing_um", self.plane_spacing_um))
        names = self.channel_names
        if names is not None:
            if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
                raise ArgumentTypeError(f"channel_names must be a sequence of str, got {names!r}")
            names = tuple(names)
            for i, n in enumerate(names):
                if not isinstance(n, str):
                    raise ArgumentTypeError(f"channel_names[{i}] must be a str, got {n!r}")
            if not names:
                raise ValueError("channel_names must name at least one channel, got none")
            if self.n_channels is not None and len(names) != self.n_channels:
                raise ValueError(
                    f"channel_names has {len(names)} name(s) but n_channels is {self.n_channels}"
                )
            put(self, "channel_names", names)
        if not isinstance(self.source, str) or not self.source.strip():
            raise ArgumentTypeError(f"source must be a non-empty str, got {self.source!r}")
        if not isinstance(self.extra, Mapping):
            raise ArgumentTypeError(f"extra must be a dict, got {type(self.extra).__name__}")
        put(self, "extra", _json_value(self.extra, "extra"))

    # -- queries ----------------------------------------------------------------

    @property
    def empty(self) -> bool:
        """Whether nothing is known: every value None and ``extra`` empty."""
        return all(getattr(self, f) is None for f in _VALUE_FIELDS) and not self.extra

    def todict(self) -> dict[str, Any]:
        """Return the metadata as a JSON-compatible dict (what :meth:`fromdict` reads).

        Returns
        -------
        dict
            One key per field of :data:`FIELDS`; tuples become lists.
        """
        out = {}
        for name in FIELDS:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        out["extra"] = json.loads(json.dumps(self.extra))
        return out

    @classmethod
    def fromdict(cls, d: Mapping[str, Any]) -> AcquisitionMetadata:
        """Rebuild metadata from :meth:`todict`'s dict.

        Parameters
        ----------
        d : mapping
            Keys among :data:`FIELDS`; missing ones take their defaults.

        Returns
        -------
        AcquisitionMetadata

        Raises
        ------
        ArgumentTypeError
            ``d`` is not a mapping, or a value has the wrong type.
        ValueError
            An unknown key, or a value out of range.
        """
        if not isinstance(d, Mapping):
            raise ArgumentTypeError(
                f"acquisition metadata must be a JSON object (dict), got {type(d).__name__}"
            )
        unknown = sorted(str(k) for k in d if k not in FIELDS)
        if unknown:
            raise ValueError(
                f"acquisition metadata has unknown field(s) {unknown}; the fields are "
                f"{list(FIELDS)}"
            )
        kwargs = dict(d)
        if kwargs.get("source") is None:
            kwargs.pop("source", None)
        if kwargs.get("extra") is None:
            kwargs.pop("extra", None)
        return cls(**kwargs)

    def merge(self, other: AcquisitionMetadata | None) -> AcquisitionMetadata:
        """Combine with ``other``, whose known values win (as user values over a file's).

        Parameters
        ----------
        other : AcquisitionMetadata or None
            The values to lay over these ones; its None values leave these
            ones in place. ``extra`` dicts are merged key by key, ``other``'s
            winning.

        Returns
        -------
        AcquisitionMetadata
            ``self`` when ``other`` is None or empty, ``other`` when ``self``
            is empty; otherwise a new object whose ``source`` names both
            (``'user; ScanImage 2016+'``). Channel names that no longer match
            a channel count ``other`` sets are dropped, and a count that no
            longer matches names ``other`` sets follows the names.

        Raises
        ------
        ArgumentTypeError
            ``other`` is not an :class:`AcquisitionMetadata` or None.
        """
        if other is None:
            return self
        if not isinstance(other, AcquisitionMetadata):
            raise ArgumentTypeError(
                f"other must be an AcquisitionMetadata or None, got {type(other).__name__}"
            )
        if other.empty:
            return self
        if self.empty:
            return other
        values = {
            f: getattr(other, f) if getattr(other, f) is not None else getattr(self, f)
            for f in _VALUE_FIELDS
        }
        names, count = values["channel_names"], values["n_channels"]
        if names is not None and count is not None and len(names) != count:
            if other.channel_names is not None:
                values["n_channels"] = len(names)
            else:
                values["channel_names"] = None
        source = self.source if other.source == self.source else f"{other.source}; {self.source}"
        return AcquisitionMetadata(**values, source=source, extra={**self.extra, **other.extra})

    def replace(self, **changes: Any) -> AcquisitionMetadata:
        """Return a copy with some fields changed (checked like the constructor's).

        Parameters
        ----------
        **changes
            Field name -> new value.

        Returns
        -------
        AcquisitionMetadata
        """
        return dataclasses.replace(self, **changes)

    def summary(self) -> list[str]:
        """Describe the metadata in a few lines, for ``sima-fast info``.

        Returns
        -------
        list of str
            Frame rate, zoom, planes, channels, pixel size and source, with
            ``'unknown'`` for what is not known.
        """

        def num(value: float | None, unit: str = "") -> str:
            return "unknown" if value is None else f"{value:.6g}{unit}"

        planes = num(self.n_planes)
        if self.plane_spacing_um is not None:
            planes += f" ({num(self.plane_spacing_um)} µm apart)"
        channels = num(self.n_channels)
        if self.channel_names is not None:
            channels += f" ({', '.join(self.channel_names)})"
        size = (
            "unknown"
            if self.pixel_size_um is None
            else f"{self.pixel_size_um[0]:.6g} x {self.pixel_size_um[1]:.6g} µm (y x)"
        )
        return [
            f"frame rate: {num(self.frame_rate, ' Hz')}",
            f"zoom: {num(self.zoom)}",
            f"planes: {planes}",
            f"channels: {channels}",
            f"pixel size: {size}",
            f"source: {self.source}",
        ]

    # -- other microscopes' parameter files -------------------------------------

    @classmethod
    def from_scanbox(cls, info: Any) -> AcquisitionMetadata:
        """Convert Scanbox imaging parameters.

        Parameters
        ----------
        info : dict or str or os.PathLike
            What :func:`sima_fast.imaging_parameters.scanbox_imaging_parameters`
            returns, or the ``.mat`` info file to read with it.

        Returns
        -------
        AcquisitionMetadata
            ``source='Scanbox'``. The line rate is the resonant frequency
            ``resfreq`` (two lines per period when bidirectional,
            ``scanmode == 0``); the frame rate is the line rate over the lines
            per frame (``config.lines``, else ``recordsPerBuffer``), divided
            by the planes (``nplanes``) for volumes. The zoom is
            ``config.magnification_list[config.magnification - 1]``, the
            pixel size ``(dycal, dxcal)``, the channels ``nchannels``, when
            present. ``extra`` keeps the resonant frequency, the scan mode and
            the Scanbox version.

        Raises
        ------
        ArgumentTypeError
            ``info`` is neither a dict nor a path.
        ValueError
            The file cannot be read (see the reader).
        """
        if isinstance(info, (str, os.PathLike)):
            from sima_fast.imaging_parameters import scanbox_imaging_parameters

            info = scanbox_imaging_parameters(info)
        if not isinstance(info, Mapping):
            raise ArgumentTypeError(
                "info must be the dict of scanbox_imaging_parameters or a Scanbox .mat path, "
                f"got {type(info).__name__}"
            )
        config = info.get("config") if isinstance(info.get("config"), Mapping) else {}
        resfreq = _number(info.get("resfreq"))
        scanmode = _number(info.get("scanmode"))
        bidirectional = scanmode is not None and int(scanmode) == 0
        planes = _count(info.get("nplanes"))
        lines = _number(config.get("lines"))
        if lines is None:
            lines = _number(info.get("recordsPerBuffer"))
        frame_rate = None
        if resfreq and lines:
            frame_rate = resfreq * (2 if bidirectional else 1) / lines
            if planes:
                frame_rate /= planes
        zoom = None
        mag = _count(config.get("magnification"))
        mag_list = config.get("magnification_list")
        if mag is not None and mag_list is not None:
            options = np.atleast_1d(np.asarray(mag_list, dtype=object)).ravel()
            if 1 <= mag <= options.size:
                zoom = _number(options[mag - 1])
        dy, dx = _number(info.get("dycal")), _number(info.get("dxcal"))
        extra = {}
        for key in ("resfreq", "scanmode", "scanbox_version"):
            value = _number(info.get(key))
            if value is not None:
                extra[key] = value
        return cls(
            frame_rate=frame_rate,
            zoom=zoom if zoom and zoom > 0 else None,
            n_planes=planes,
            n_channels=_count(info.get("nchannels")),
            pixel_size_um=(dy, dx) if dy and dx and dy > 0 and dx > 0 else None,
            source="Scanbox",
            extra=extra,
        )

    @classmethod
    def from_prairie(cls, params: Any) -> AcquisitionMetadata:
        """Convert PrairieView (Bruker) imaging parameters.

        Parameters
        ----------
        params : dict or str or os.PathLike
            What :func:`sima_fast.imaging_parameters.prairie_imaging_parameters`
            returns, or the file to read with it (``.xml``, ``.env`` or one
            of the recording's ``.tif`` images).

        Returns
        -------
        AcquisitionMetadata
            ``source='Prairie'``: the frame rate is ``1 / framePeriod``, the
            zoom ``opticalZoom``, the pixel size ``micronsPerPixel`` (Y and X
            axes; ``micronsPerPixel_YAxis`` in files before PrairieView 5.2),
            the plane spacing its Z axis when the ``ZAxis`` value is given.
            ``extra`` keeps the laser wavelength, the objective and the
            PrairieView frame size when present.

        Raises
        ------
        ArgumentTypeError
            ``params`` is neither a dict nor a path.
        ValueError
            The file cannot be read (see the reader).
        """
        if isinstance(params, (str, os.PathLike)):
            from sima_fast.imaging_parameters import prairie_imaging_parameters

            params = prairie_imaging_parameters(params)
        if not isinstance(params, Mapping):
            raise ArgumentTypeError(
                "params must be the dict of prairie_imaging_parameters or a PrairieView file "
                f"path, got {type(params).__name__}"
            )
        period = _number(params.get("framePeriod"))
        microns = params.get("micronsPerPixel")
        if isinstance(microns, Mapping):
            axis = {str(k): _number(v) for k, v in microns.items()}
        else:
            axis = {a: _number(params.get(f"micronsPerPixel_{a}")) for a in ("XAxis", "YAxis")}
            axis["ZAxis"] = _number(params.get("micronsPerPixel_ZAxis"))
        y, x = axis.get("YAxis"), axis.get("XAxis")
        z = axis.get("ZAxis")
        zoom = _number(params.get("opticalZoom"))
        extra = {}
        for key in (
            "laserWavelength",
            "objectiveLens",
            "objectiveLensMag",
            "objectiveLensNA",
            "linesPerFrame",
            "pixelsPerLine",
            "dwellTime",
        ):
            if key in params:
                try:
                    extra[key] = _json_value(params[key], key)
                except (TypeError, ValueError):
                    continue
        return cls(
            frame_rate=1.0 / period if period and period > 0 else None,
            zoom=zoom if zoom and zoom > 0 else None,
            pixel_size_um=(y, x) if y and x and y > 0 and x > 0 else None,
            plane_spacing_um=z if z and z > 0 else None,
            source="Prairie",
            extra=extra,
        )


# ---------------------------------------------------------------------------
# checks and small conversions
# ---------------------------------------------------------------------------


def check_acquisition_metadata(
    value: Any, name: str = "acquisition_metadata"
) -> AcquisitionMetadata | None:
    """Accept what a user may set as acquisition metadata.

    Parameters
    ----------
    value : AcquisitionMetadata or dict or None
        The metadata, its :meth:`AcquisitionMetadata.todict` form, or None
        (nothing set).
    name : str, optional
        The argument's name in error messages.

    Returns
    -------
    AcquisitionMetadata or None
        None for None; a dict without ``source`` gets ``'user'``.

    Raises
    ------
    ArgumentTypeError
        Something else, or a dict with a value of the wrong type.
    ValueError
        A dict with an unknown key or a value out of range.
    """
    if value is None or isinstance(value, AcquisitionMetadata):
        return value
    if isinstance(value, Mapping):
        try:
            return AcquisitionMetadata.fromdict(value)
        except ArgumentTypeError as exc:
            raise ArgumentTypeError(f"{name}: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    raise ArgumentTypeError(
        f"{name} must be an AcquisitionMetadata, a dict of its fields, or None; got "
        f"{type(value).__name__}"
    )


def _number(value: Any) -> float | None:
    """Read a finite float from a number, a one-element array or list, or a numeric string."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value, dtype=object).ravel()
        if arr.size != 1:
            return None
        return _number(arr[0])
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, numbers.Real):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _count(value: Any) -> int | None:
    """Read a positive whole count, or None."""
    out = _number(value)
    if out is None or out < 1 or not out.is_integer():
        return None
    return int(out)


def _flat(value: Any) -> list[Any]:
    """Flatten nested lists (ScanImage writes ``[1;2]`` as ``[[1], [2]]``)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return [value]
    out: list[Any] = []
    for v in value:
        out.extend(_flat(v))
    return out


def _length_um(value: Any, unit: Any) -> float | None:
    size = _number(value)
    if size is None or size <= 0:
        return None
    if unit is None:
        return size
    scale = _UNITS_UM.get(str(unit).strip().replace("\\u00B5", "µ").lower())
    return None if scale is None else size * scale


# ---------------------------------------------------------------------------
# TIFF files
# ---------------------------------------------------------------------------


def read_tiff_metadata(path: str) -> AcquisitionMetadata | None:
    """Read the acquisition metadata of a TIFF file, never failing.

    The first kind found is used: ScanImage 2016 and later (the non-varying
    frame data of the file header or of the first page's ``Software`` tag,
    the ROI groups of the header or of the ``Artist`` tag), ScanImage 3.x,
    4 and 5 (``state.*`` or ``scanimage.SI4/SI5.*`` keys of the first
    page's description), OME-TIFF (``Pixels`` of the OME-XML), ImageJ
    (``finterval``, ``spacing``, ``unit``, ``channels``, ``slices`` and the
    resolution tags), and, as a last resort, the ``XResolution`` and
    ``YResolution`` tags when their unit is the inch or the centimetre and
    the value is no software default (1, 72, 96, 150, 300, 600 per inch).

    Parameters
    ----------
    path : str
        The TIFF file.

    Returns
    -------
    AcquisitionMetadata or None
        None when the file says nothing usable, or when its metadata cannot
        be read (then an :class:`AcquisitionMetadataWarning` names the file
        and the reason).
    """
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return _tiff_metadata(tif)
    except Exception as exc:  # malformed metadata never stops a load
        warn(
            f"the acquisition metadata of {path!r} cannot be read and is ignored "
            f"({type(exc).__name__}: {exc})",
            AcquisitionMetadataWarning,
        )
        return None


def _tiff_metadata(tif: Any) -> AcquisitionMetadata | None:
    page = tif.pages.first
    description = page.description or ""
    software = page.software or ""
    if software.startswith("SI.") or (tif.is_scanimage and not description.startswith("state.")):
        meta = _scanimage_2016(tif, page, software)
        if meta is not None:
            return meta
    if description.startswith("state.") or "scanimage.SI" in description:
        meta = _scanimage_legacy(description)
        if meta is not None:
            return meta
    if tif.is_ome:
        meta = _ome(tif.ome_metadata)
        if meta is not None:
            return meta
    if tif.is_imagej:
        meta = _imagej(tif.imagej_metadata or {}, page)
        if meta is not None:
            return meta
    size = _resolution_um(page, unit_um=None)
    if size is not None:
        return AcquisitionMetadata(pixel_size_um=size, source="TIFF tags")
    return None


def _tag(page: Any, name: str) -> Any:
    tag = page.tags.get(name)
    return None if tag is None else tag.value


def _resolution_um(page: Any, unit_um: float | None) -> tuple[float, float] | None:
    """Read the pixel size ``(y, x)`` in µm from the resolution tags (pixels per unit).

    ``unit_um`` is the unit's length when another source gives it (ImageJ);
    otherwise the ResolutionUnit tag must be the inch or the centimetre.

    Returns
    -------
    (float, float) or None
    """
    xres, yres = _tag(page, "XResolution"), _tag(page, "YResolution")
    if xres is None or yres is None:
        return None

    def rational(v: Any) -> float | None:
        if isinstance(v, tuple) and len(v) == 2:
            return v[0] / v[1] if v[1] else None
        return _number(v)

    x, y = rational(xres), rational(yres)
    if not x or not y or x <= 0 or y <= 0:
        return None
    if unit_um is None:
        unit = _tag(page, "ResolutionUnit")
        unit = int(unit) if unit is not None else 2  # the TIFF default is the inch
        if unit == 2:
            if x in _DEFAULT_DPI and y in _DEFAULT_DPI:
                return None
            unit_um = 25400.0
        elif unit == 3:
            unit_um = 10000.0
        else:
            return None
    return (unit_um / y, unit_um / x)


def _matlab(text: str) -> dict[str, Any]:
    from tifffile import matlabstr2py

    parsed = matlabstr2py(text)
    return parsed if isinstance(parsed, dict) else {}


def _scanimage_2016(tif: Any, page: Any, software: str) -> AcquisitionMetadata | None:
    frame_data: dict[str, Any] = {}
    rois: Any = None
    version = None
    header = tif.scanimage_metadata or {}
    if isinstance(header.get("FrameData"), dict):
        frame_data = header["FrameData"]
        rois = header.get("RoiGroups")
        version = header.get("version")
    if not frame_data and software.startswith("SI."):
        frame_data = _matlab(software)
    if rois is None:
        artist = _tag(page, "Artist")
        if isinstance(artist, str) and artist.strip().startswith("{"):
            try:
                parsed = json.loads(artist)
            except ValueError:  # the ROI groups are optional: keep the frame data
                parsed = None
            rois = parsed.get("RoiGroups") if isinstance(parsed, dict) else None
    if not frame_data:
        return None

    def get(key: str) -> Any:
        return frame_data.get(f"SI.{key}")

    slices = _count(get("hStackManager.actualNumSlices")) or _count(get("hStackManager.numSlices"))
    fast_z = bool(get("hFastZ.enable")) or (
        bool(get("hStackManager.enable")) and str(get("hStackManager.stackMode")) == "fast"
    )
    stack = fast_z or bool(get("hStackManager.enable"))
    planes = slices if (stack and slices) else 1
    frame_rate = _number(get("hRoiManager.scanFrameRate"))
    if planes > 1 and fast_z:
        volume = _number(get("hRoiManager.scanVolumeRate"))
        frame_rate = volume if volume else (frame_rate / planes if frame_rate else None)
    spacing = None
    if planes > 1:
        step = _number(get("hStackManager.actualStackZStepSize")) or _number(
            get("hStackManager.stackZStepSize")
        )
        spacing = abs(step) if step else None
    saved = [_count(c) for c in _flat(get("hChannels.channelSave"))]
    saved = [c for c in saved if c is not None]
    names = None
    all_names = get("hChannels.channelName")
    if saved and isinstance(all_names, (list, tuple)):
        all_names = [str(n) for n in _flat(all_names)]
        if all(c <= len(all_names) for c in saved):
            names = tuple(all_names[c - 1] for c in saved)
    size = _scanimage_pixel_size(rois, _number(frame_data.get("SI.objectiveResolution")))
    extra: dict[str, Any] = {}
    for key in (
        "VERSION_MAJOR",
        "VERSION_MINOR",
        "hRoiManager.scanFrameRate",
        "hRoiManager.scanVolumeRate",
        "hRoiManager.linesPerFrame",
        "hRoiManager.pixelsPerLine",
        "hStackManager.framesPerSlice",
        "hFastZ.numDiscardFlybackFrames",
        "objectiveResolution",
    ):
        value = get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            if not isinstance(value, float) or math.isfinite(value):
                extra[f"SI.{key}"] = value
    if version is not None:
        extra["tiff_header_version"] = int(version)
    if planes > 1 and not fast_z:
        extra["stack_mode"] = "slow"
    zoom = _number(get("hRoiManager.scanZoomFactor"))
    return AcquisitionMetadata(
        frame_rate=frame_rate if frame_rate and frame_rate > 0 else None,
        zoom=zoom if zoom and zoom > 0 else None,
        n_planes=planes,
        n_channels=len(saved) if saved else None,
        pixel_size_um=size,
        plane_spacing_um=spacing,
        channel_names=names,
        source="ScanImage 2016+",
        extra=extra,
    )


def _scanimage_pixel_size(rois: Any, objective_um_per_deg: float | None) -> tuple | None:
    """Pixel size ``(y, x)`` from the first scan field of the imaging ROI group."""
    if not isinstance(rois, dict) or not objective_um_per_deg:
        return None
    group = rois.get("imagingRoiGroup")
    roi_list = group.get("rois") if isinstance(group, dict) else None
    roi = roi_list[0] if isinstance(roi_list, list) and roi_list else roi_list
    fields = roi.get("scanfields") if isinstance(roi, dict) else None
    field = fields[0] if isinstance(fields, list) and fields else fields
    if not isinstance(field, dict):
        return None
    size = _flat(field.get("sizeXY"))
    pixels = _flat(field.get("pixelResolutionXY"))
    if len(size) != 2 or len(pixels) != 2:
        return None
    sx, sy, px, py = (_number(v) for v in (*size, *pixels))
    if not (sx and sy and px and py) or min(sx, sy, px, py) <= 0:
        return None
    return (sy * objective_um_per_deg / py, sx * objective_um_per_deg / px)


def _scanimage_legacy(description: str) -> AcquisitionMetadata | None:
    """ScanImage 3.x (``state.acq.*``), 4 (``scanimage.SI4.*``) and 5 (``scanimage.SI5.*``)."""
    d = _matlab(description)
    if not d:
        return None
    if any(k.startswith("state.") for k in d):
        frame_rate = _number(d.get("state.acq.frameRate"))
        zoom = _number(d.get("state.acq.zoomFactor"))
        channels = _count(d.get("state.acq.numberOfChannelsSave"))
        planes = _count(d.get("state.acq.numberOfZSlices")) or 1
        step = _number(d.get("state.acq.zStepSize"))
        keys = ("state.software.version", "state.acq.linesPerFrame", "state.acq.pixelsPerLine")
    else:
        prefix = (
            "scanimage.SI5."
            if any(k.startswith("scanimage.SI5.") for k in d)
            else ("scanimage.SI4.")
        )

        def get(key: str) -> Any:
            return d.get(prefix + key)

        frame_rate = _number(get("scanFrameRate"))
        zoom = _number(get("zoomFactor")) or _number(get("scanZoomFactor"))
        saved = [c for c in (_count(v) for v in _flat(get("channelsSave"))) if c is not None]
        channels = len(saved) or None
        fast_z = bool(get("fastZEnable"))
        slices = _count(get("stackNumSlices")) or 1
        planes = slices if fast_z else 1
        if planes > 1 and frame_rate:
            frame_rate /= planes
        step = _number(get("stackZStepSize"))
        keys = tuple(
            prefix + k
            for k in ("VERSION_MAJOR", "scanLinesPerFrame", "scanPixelsPerLine", "fastZPeriod")
        )
    extra = {}
    for key in keys:
        value = d.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            if not isinstance(value, float) or math.isfinite(value):
                extra[key] = value
    return AcquisitionMetadata(
        frame_rate=frame_rate if frame_rate and frame_rate > 0 else None,
        zoom=zoom if zoom and zoom > 0 else None,
        n_planes=planes,
        n_channels=channels,
        plane_spacing_um=abs(step) if planes > 1 and step else None,
        source="ScanImage 3.x/4/5",
        extra=extra,
    )


def _ome(xml: str | None) -> AcquisitionMetadata | None:
    if not xml:
        return None
    from sima_fast.imaging_parameters import parse_xml_string

    root = parse_xml_string(xml, "the OME-XML metadata")
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    a = pixels.attrib

    def size(axis: str) -> float | None:
        return _length_um(a.get(f"PhysicalSize{axis}"), a.get(f"PhysicalSize{axis}Unit", "µm"))

    y, x, z = size("Y"), size("X"), size("Z")
    increment = _number(a.get("TimeIncrement"))
    scale = _UNITS_S.get(str(a.get("TimeIncrementUnit", "s")).strip())
    frame_rate = None
    if increment and increment > 0 and scale:
        frame_rate = 1.0 / (increment * scale)
    planes, channels = _count(a.get("SizeZ")), _count(a.get("SizeC"))
    names = [e.attrib.get("Name") for e in pixels if e.tag.rsplit("}", 1)[-1] == "Channel"]
    names = tuple(names) if names and all(isinstance(n, str) and n for n in names) else None
    if names is not None and channels is not None and len(names) != channels:
        names = None
    extra = {}
    for key in ("DimensionOrder", "SizeT", "Type"):
        if key in a:
            extra[key] = a[key]
    return AcquisitionMetadata(
        frame_rate=frame_rate,
        n_planes=planes,
        n_channels=channels,
        pixel_size_um=(y, x) if y and x else None,
        plane_spacing_um=z if planes and planes > 1 and z else None,
        channel_names=names,
        source="OME-TIFF",
        extra=extra,
    )


def _imagej(ij: dict[str, Any], page: Any) -> AcquisitionMetadata | None:
    unit = ij.get("unit")
    unit_um = _length_um(1.0, unit) if unit is not None else None
    size = _resolution_um(page, unit_um) if unit_um is not None else None
    interval = _number(ij.get("finterval"))
    fps = _number(ij.get("fps"))
    frame_rate = fps if fps and fps > 0 else None
    if interval and interval > 0:
        frame_rate = 1.0 / interval
    planes, channels = _count(ij.get("slices")), _count(ij.get("channels"))
    spacing = _number(ij.get("spacing"))
    spacing_um = spacing * unit_um if spacing and spacing > 0 and unit_um else None
    extra = {}
    for key in ("ImageJ", "frames", "unit", "mode"):
        value = ij.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            extra[key] = value
    meta = AcquisitionMetadata(
        frame_rate=frame_rate,
        n_planes=planes or 1,
        n_channels=channels or 1,
        pixel_size_um=size,
        plane_spacing_um=spacing_um if (planes or 1) > 1 else None,
        source="ImageJ",
        extra=extra,
    )
    return meta


# ---------------------------------------------------------------------------
# HDF5 attributes
# ---------------------------------------------------------------------------

_HDF5_RATE_KEYS = ("frame_rate", "frameRate", "fs", "sampling_rate", "imaging_rate", "fps")


def read_hdf5_metadata(dataset: Any) -> AcquisitionMetadata | None:
    """Read acquisition metadata from an HDF5 dataset's attributes, never failing.

    The dataset's own attributes are read first, then its parent groups'
    up to the root. An attribute ``acquisition_metadata`` holding
    :meth:`AcquisitionMetadata.todict`'s JSON is read as it is; otherwise
    ``frame_rate`` (or ``frameRate``, ``fs``, ``sampling_rate``,
    ``imaging_rate``, ``fps``), ``zoom``, ``pixel_size_um`` (``(y, x)``),
    ``element_size_um`` (``(z, y, x)``, as the ImageJ HDF5 plugin and
    ilastik write it; plane spacing then pixel size), ``plane_spacing_um``
    and ``channel_names`` are taken.

    Parameters
    ----------
    dataset : h5py.Dataset
        The open dataset.

    Returns
    -------
    AcquisitionMetadata or None
        ``source='HDF5 attributes'``; None when no attribute is found or
        when they cannot be read (then an :class:`AcquisitionMetadataWarning`
        says why).
    """
    try:
        nodes = [dataset]
        parent = dataset.parent
        while True:
            nodes.append(parent)
            if parent.name == "/":
                break
            parent = parent.parent
        attrs: dict[str, Any] = {}
        for node in reversed(nodes):  # the dataset's own attributes win
            attrs.update({k: node.attrs[k] for k in node.attrs.keys()})
        raw = attrs.get("acquisition_metadata")
        if raw is not None:
            if isinstance(raw, bytes):
                raw = raw.decode("utf-8")
            return AcquisitionMetadata.fromdict(json.loads(str(raw)))
        rate = next((_number(attrs[k]) for k in _HDF5_RATE_KEYS if k in attrs), None)
        zoom = _number(attrs.get("zoom"))
        size = spacing = None
        if "element_size_um" in attrs:
            element = [_number(v) for v in _flat(attrs["element_size_um"])]
            if len(element) == 3 and all(v and v > 0 for v in element):
                spacing, size = element[0], (element[1], element[2])
            elif len(element) == 2 and all(v and v > 0 for v in element):
                size = (element[0], element[1])
        if "pixel_size_um" in attrs:
            pair = [_number(v) for v in _flat(attrs["pixel_size_um"])]
            if len(pair) == 1 and pair[0]:
                pair = pair * 2
            if len(pair) == 2 and all(v and v > 0 for v in pair):
                size = (pair[0], pair[1])
        if "plane_spacing_um" in attrs:
            spacing = _number(attrs["plane_spacing_um"])
        names = None
        if "channel_names" in attrs:
            names = tuple(
                v.decode("utf-8") if isinstance(v, bytes) else str(v)
                for v in _flat(attrs["channel_names"])
            )
        if all(v is None for v in (rate, zoom, size, spacing, names)):
            return None
        return AcquisitionMetadata(
            frame_rate=rate if rate and rate > 0 else None,
            zoom=zoom if zoom and zoom > 0 else None,
            pixel_size_um=size,
            plane_spacing_um=spacing if spacing and spacing > 0 else None,
            channel_names=names or None,
            source="HDF5 attributes",
        )
    except Exception as exc:  # malformed metadata never stops a load
        where = getattr(getattr(dataset, "file", None), "filename", "?")
        warn(
            f"the acquisition metadata (attributes) of {getattr(dataset, 'name', '?')!r} in "
            f"{where!r} cannot be read and are ignored ({type(exc).__name__}: {exc})",
            AcquisitionMetadataWarning,
        )
        return None


# ---------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------


def _step(index: Any) -> float | None:
    """Return the constant step of an axis selection (1 for one element), None if irregular."""
    if isinstance(index, slice):
        return float(abs(index.step or 1))
    positions = np.asarray(index)
    if positions.size <= 1:
        return 1.0
    steps = np.abs(np.diff(positions))
    if steps.min() == steps.max() and steps[0] > 0:
        return float(steps[0])
    return None


def index_metadata(
    meta: AcquisitionMetadata | None, indices: tuple, base_shape: tuple[int, ...]
) -> AcquisitionMetadata | None:
    """Derive the metadata of ``seq[t, z, y, x, c]`` from the metadata of ``seq``.

    A time step of k divides the frame rate by k (an irregular selection of
    frames has no rate); a step along y or x multiplies the pixel size, one
    along z the plane spacing (irregular: unknown); the plane and channel
    counts become the view's, and the channel names follow the selected
    channels.

    Parameters
    ----------
    meta : AcquisitionMetadata or None
        The indexed sequence's metadata.
    indices : tuple
        Five normalised indices (slices or int arrays), as
        :class:`~sima_fast.sequence.views.IndexedSequence` keeps them.
    base_shape : tuple of int
        The indexed sequence's ``(T, Z, Y, X, C)``.

    Returns
    -------
    AcquisitionMetadata or None
        None when ``meta`` is None.

    Examples
    --------
    >>> meta = AcquisitionMetadata(frame_rate=30.0, n_channels=2, channel_names=('g', 'r'))
    >>> view = index_metadata(meta, (slice(0, 10, 2), slice(0, 1, 1), slice(0, 4, 1),
    ...                              slice(0, 4, 1), np.array([1])), (10, 1, 4, 4, 2))
    >>> view.frame_rate, view.n_channels, view.channel_names
    (15.0, 1, ('r',))
    """
    if meta is None:
        return None
    t, z, y, x, c = indices

    def positions(index: Any, size: int) -> list[int]:
        if isinstance(index, slice):
            return list(range(*index.indices(size)))
        return [int(i) for i in index]

    planes, channels = positions(z, base_shape[1]), positions(c, base_shape[4])
    changes: dict[str, Any] = {}
    if meta.frame_rate is not None:
        step = _step(t)
        changes["frame_rate"] = None if step is None else meta.frame_rate / step
    if meta.pixel_size_um is not None:
        sy, sx = _step(y), _step(x)
        changes["pixel_size_um"] = (
            None
            if sy is None or sx is None
            else (meta.pixel_size_um[0] * sy, meta.pixel_size_um[1] * sx)
        )
    if meta.plane_spacing_um is not None:
        sz = _step(z)
        changes["plane_spacing_um"] = (
            None if sz is None or len(planes) < 2 else meta.plane_spacing_um * sz
        )
    if meta.n_planes is not None:
        changes["n_planes"] = len(planes) or None
    names = meta.channel_names
    if names is not None:
        names = tuple(names[i] for i in channels) if len(names) == base_shape[4] else None
        changes["channel_names"] = names or None
    if meta.n_channels is not None or names:
        changes["n_channels"] = len(channels) or None
    return dataclasses.replace(meta, **changes)


def combine_metadata(
    metas: list[AcquisitionMetadata | None], channels: list[int] | None = None
) -> AcquisitionMetadata | None:
    """Combine the metadata of several sequences: side by side (a join) or one after the other.

    Values the sequences agree on are kept; a value two of them give
    differently becomes unknown (None); a value only some give is kept.
    ``extra`` keeps the keys whose values agree.

    Parameters
    ----------
    metas : list of AcquisitionMetadata or None
        One per sequence.
    channels : list of int, optional
        For a join along channels: each sequence's number of channels. The
        channel count is then the total and the names are joined (when
        every sequence names its channels).

    Returns
    -------
    AcquisitionMetadata or None
        None when no sequence has metadata; the first one's ``source``, or
        the distinct sources joined by ``'; '``.
    """
    known = [m for m in metas if m is not None]
    if not known:
        return None
    values: dict[str, Any] = {}
    fields = (
        _VALUE_FIELDS
        if channels is None
        else ("frame_rate", "zoom", "n_planes", "pixel_size_um", "plane_spacing_um")
    )
    for f in fields:
        given = [getattr(m, f) for m in known if getattr(m, f) is not None]
        values[f] = given[0] if given and all(g == given[0] for g in given) else None
    if channels is not None:
        values["n_channels"] = int(sum(channels))
        names: list[str] = []
        for m, count in zip(metas, channels):
            if m is None or m.channel_names is None or len(m.channel_names) != count:
                names = []
                break
            names.extend(m.channel_names)
        values["channel_names"] = tuple(names) if names else None
    elif values.get("n_channels") is not None and values.get("channel_names") is not None:
        if len(values["channel_names"]) != values["n_channels"]:
            values["channel_names"] = None
    extra: dict[str, Any] = {}
    for key in known[0].extra:
        given = [m.extra[key] for m in known if key in m.extra]
        if all(g == given[0] for g in given):
            extra[key] = given[0]
    sources = list(dict.fromkeys(m.source for m in known))
    return AcquisitionMetadata(**values, source="; ".join(sources), extra=extra)

"""Acquisition metadata of Prairie (Bruker) and Scanbox microscopes, as SIMA's dictionaries.

SIMA's ``sima.imaging_parameters`` under the same names:
:func:`extract_imaging_parameters` (``format='Prairie'`` or ``'Scanbox'``),
:func:`prairie_imaging_parameters` (PrairieView ``.xml`` and ``.env`` files)
and :func:`scanbox_imaging_parameters` (Scanbox ``.mat`` info files), plus
:func:`loadmat`, which reads a MATLAB file with its structs as nested dicts,
and :func:`parse_xml_string`, the same safe XML parser for XML text. The
dictionaries convert to the package's acquisition metadata with
:meth:`AcquisitionMetadata.from_scanbox
<sima_fast.sequence.metadata.AcquisitionMetadata.from_scanbox>` and
:meth:`AcquisitionMetadata.from_prairie
<sima_fast.sequence.metadata.AcquisitionMetadata.from_prairie>`.

XML is parsed with a parser that refuses document type declarations and
entity declarations (so no entity expansion and no external resource is
ever loaded); PrairieView files have neither. ``scipy.io`` is imported only
when a ``.mat`` file is read.

Examples
--------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), 'TSeries-001.xml')
>>> with open(path, 'w') as f:
...     _ = f.write('<PVScan version="5.4.64.100"><PVStateShard>'
...                 '<PVStateValue key="framePeriod" value="0.033" />'
...                 '<PVStateValue key="laserWavelength">'
...                 '<IndexedValue index="0" value="920" /></PVStateValue>'
...                 '</PVStateShard></PVScan>')
>>> params = extract_imaging_parameters(path, format='Prairie')
>>> params['framePeriod'], params['laserWavelength']
(0.033, {'0': 920.0})
"""

from __future__ import annotations

import os
import re
from typing import Any
from xml.etree import ElementTree

import numpy as np

__all__ = [
    "FORMATS",
    "extract_imaging_parameters",
    "loadmat",
    "parse_xml_string",
    "prairie_imaging_parameters",
    "scanbox_imaging_parameters",
]

FORMATS = ("Prairie", "Scanbox")
"""The ``format`` values :func:`extract_imaging_parameters` accepts."""

_PRAIRIE_STATE_VALUES_SINCE = (5, 2)
"""PrairieView versions from 5.2 on write ``PVStateValue``; older ones write ``Key``."""

_SCANBOX_DEFAULT_SZ = (512, 796)
"""Frame size ``(rows, columns)`` of Scanbox versions whose info lacks ``sz``."""


def _path(filepath: Any, argname: str = "filepath") -> str:
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"{argname} must be a path (str or os.PathLike), got {filepath!r}")
    return os.fspath(filepath)


# --------------------------------------------------------------------------
# Prairie
# --------------------------------------------------------------------------


def _safe_parser(what: str, builder: ElementTree.TreeBuilder) -> Any:
    """Make an expat parser feeding ``builder`` that refuses DTDs and entity declarations."""
    from xml.parsers import expat

    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse(*_: Any) -> None:
        raise ValueError(
            f"refusing to read {what}: it declares a document type or entities, which "
            "microscope metadata never does (not expanded, for safety)"
        )

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    return parser


def _parse_xml(path: str) -> ElementTree.Element:
    """Parse an XML file into an Element tree, refusing DTDs and entity declarations."""
    from xml.parsers import expat

    builder = ElementTree.TreeBuilder()
    parser = _safe_parser(repr(path), builder)
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except expat.ExpatError as exc:
        raise ValueError(f"{path!r} is not well-formed XML ({exc})") from exc
    return builder.close()


def parse_xml_string(text: str | bytes, what: str = "the XML text") -> ElementTree.Element:
    """Parse XML text (OME-XML metadata, for instance) safely.

    Document type declarations and entity declarations are refused, never
    expanded, as for PrairieView files; element names keep their namespace
    (``'{http://www.openmicroscopy.org/Schemas/OME/2016-06}Pixels'``).

    Parameters
    ----------
    text : str or bytes
        The XML document.
    what : str, optional
        What the text is, for error messages.

    Returns
    -------
    xml.etree.ElementTree.Element
        The root element.

    Raises
    ------
    ValueError
        The text is not well-formed XML, or declares a document type or
        entities.
    TypeError
        ``text`` is not a str or bytes.

    Examples
    --------
    >>> parse_xml_string('<OME><Image ID="Image:0"/></OME>')[0].get('ID')
    'Image:0'
    """
    from xml.parsers import expat

    if isinstance(text, str):
        data = text.encode("utf-8")
    elif isinstance(text, bytes):
        data = text
    else:
        raise TypeError(f"text must be a str or bytes, got {type(text).__name__}")
    builder = ElementTree.TreeBuilder()
    parser = _safe_parser(what, builder)
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise ValueError(f"{what} is not well-formed XML ({exc})") from exc
    return builder.close()


def _number_or_text(value: str | None) -> float | str | None:
    """``float(value)`` when it reads as a number, else the text itself (as SIMA)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def _version(text: str | None) -> tuple[int, ...] | None:
    """Read the leading numeric parts of a version, ``'5.4.64.100'`` -> ``(5, 4, 64, 100)``."""
    if not text:
        return None
    parts = []
    for piece in text.split("."):
        match = re.match(r"\d+", piece.strip())
        if match is None:
            break
        parts.append(int(match.group()))
    return tuple(parts) or None


def _prairie_xml_path(filepath: str) -> str:
    """Return the metadata file of ``filepath``: itself, or the ``.xml`` beside a ``.tif``."""
    if filepath.lower().endswith((".tif", ".tiff")):
        real = os.path.realpath(filepath)
        return os.path.join(os.path.dirname(real), os.path.basename(real).split("_")[0] + ".xml")
    if not filepath.lower().endswith((".xml", ".env")):
        raise ValueError(
            f"filepath must be a PrairieView .xml or .env file, or one of its .tif images, "
            f"got {filepath!r}"
        )
    return filepath


def _state_values(shard: ElementTree.Element) -> dict[str, Any]:
    """``PVStateValue`` children of a state shard (PrairieView 5.2 and later)."""
    params: dict[str, Any] = {}
    for key in shard.findall("PVStateValue"):
        name = key.get("key")
        indexed = key.findall("IndexedValue")
        subindexed = key.findall("SubindexedValues")
        if indexed:
            params[name] = {v.get("index"): _number_or_text(v.get("value")) for v in indexed}
        elif subindexed:
            params[name] = {
                group.get("index"): {
                    (v.get("description") or v.get("subindex")): _number_or_text(v.get("value"))
                    for v in group.findall("SubindexedValue")
                }
                for group in subindexed
            }
        else:
            params[name] = _number_or_text(key.get("value"))
    return params


def prairie_imaging_parameters(filepath: str | os.PathLike) -> dict[str, Any]:
    """Read the imaging parameters of a PrairieView (Bruker) recording.

    Parameters
    ----------
    filepath : str or os.PathLike
        The recording's ``.xml`` metadata file, its ``.env`` environment
        file, or one of its ``.tif`` images (then the metadata file is
        ``<prefix>.xml`` in the same directory, ``<prefix>`` being the
        image's name up to its first underscore, as SIMA finds it).

    Returns
    -------
    dict
        The values of the file's first ``PVStateShard``, by key. Numbers
        are floats and other values strings. From PrairieView 5.2 on (the
        ``version`` of the ``PVScan`` element), a key with indexed values
        maps to ``{index: value}``, and one with sub-indexed values to
        ``{index: {description or subindex: value}}``; older files hold
        flat ``Key`` elements. A file without a state shard gives ``{}``.

    Raises
    ------
    ValueError
        If ``filepath`` is not one of the files above, is not well-formed
        XML, or declares a document type or entities (refused, never
        expanded).
    FileNotFoundError
        If the metadata file does not exist.
    TypeError
        If ``filepath`` is not a path.

    Notes
    -----
    A file without a version (an ``.env`` file, for instance) is read by its
    content: ``PVStateValue`` elements as PrairieView 5.2, else ``Key``.
    """
    path = _prairie_xml_path(_path(filepath))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no PrairieView metadata file at {path!r}")
    root = _parse_xml(path)
    scan = root if root.tag == "PVScan" else root.find(".//PVScan")
    version = _version((scan if scan is not None else root).get("version"))
    shard = root if root.tag == "PVStateShard" else root.find(".//PVStateShard")
    if shard is None:
        return {}
    if version is None:
        new_format = shard.find("PVStateValue") is not None
    else:
        new_format = version >= _PRAIRIE_STATE_VALUES_SINCE
    if new_format:
        return _state_values(shard)
    return {key.get("key"): _number_or_text(key.get("value")) for key in shard.findall("Key")}


# --------------------------------------------------------------------------
# Scanbox
# --------------------------------------------------------------------------


def _struct_to_dict(value: Any, mat_struct: type) -> Any:
    """MATLAB structs (and arrays of structs) as dicts (and lists of dicts), recursively."""
    if isinstance(value, mat_struct):
        return {
            name: _struct_to_dict(getattr(value, name), mat_struct) for name in value._fieldnames
        }
    if isinstance(value, dict):
        return {k: _struct_to_dict(v, mat_struct) for k, v in value.items()}
    if (
        isinstance(value, np.ndarray)
        and value.dtype == object
        and value.size
        and isinstance(value.flat[0], mat_struct)
    ):
        return [_struct_to_dict(item, mat_struct) for item in value.ravel()]
    return value


def loadmat(filename: str | os.PathLike) -> dict[str, Any]:
    """Read a MATLAB ``.mat`` file with its structs as nested dicts.

    Parameters
    ----------
    filename : str or os.PathLike
        A MATLAB file (format 5 or earlier; what ``scipy.io.loadmat`` reads).

    Returns
    -------
    dict
        Variable name -> value, as ``scipy.io.loadmat(filename,
        struct_as_record=False, squeeze_me=True)`` gives them, with every
        struct turned into a dict of its fields and every array of structs
        into a list of dicts (as SIMA's ``sima.misc.loadmat``).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a MATLAB file scipy can read.
    TypeError
        If ``filename`` is not a path.
    """
    path = _path(filename, "filename")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no MATLAB file at {path!r}")
    import scipy.io
    from scipy.io.matlab import mat_struct

    try:
        data = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise ValueError(f"cannot read {path!r} as a MATLAB file ({exc})") from exc
    return _struct_to_dict(data, mat_struct)


def _info_int(info: dict[str, Any], key: str, path: str) -> int:
    try:
        return int(np.asarray(info[key]).item())
    except KeyError:
        raise ValueError(f"{path!r}: the Scanbox info has no {key!r} field") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{path!r}: the Scanbox info field {key!r} is not a number: {info[key]!r}"
        ) from exc


def scanbox_imaging_parameters(filepath: str | os.PathLike) -> dict[str, Any]:
    """Read the imaging parameters of a Scanbox recording from its ``.mat`` info file.

    Parameters
    ----------
    filepath : str or os.PathLike
        The ``.mat`` info file; the data file is the ``.sbx`` file of the
        same name beside it (its size gives the number of frames).

    Returns
    -------
    dict
        The file's ``info`` struct as a dict (:func:`loadmat`), with SIMA's
        completions: ``sz`` (``[512, 796]`` when missing), ``scanmode`` (1,
        unidirectional, when missing; ``recordsPerBuffer`` is doubled for
        bidirectional scans, ``scanmode == 0``), ``nchannels`` (2 when
        ``channels`` is 1, else 1), ``nsamples`` (bytes per frame,
        ``sz[1] * recordsPerBuffer * nchannels * 2``), ``max_idx`` (the last
        frame index in the ``.sbx`` file) and ``nplanes`` (the length of
        ``otwave`` for volume scans, else 1).

    Raises
    ------
    ValueError
        If ``filepath`` is not a ``.mat`` file, has no ``info`` struct, or a
        field needed above is missing or invalid (``channels`` other than 1,
        2 or 3).
    FileNotFoundError
        If the ``.mat`` or the ``.sbx`` file does not exist.
    TypeError
        If ``filepath`` is not a path.
    """
    path = _path(filepath)
    if not path.endswith(".mat"):
        raise ValueError(f"filepath must be a Scanbox .mat info file, got {path!r}")
    data = loadmat(path)
    info = data.get("info")
    if not isinstance(info, dict):
        raise ValueError(f"{path!r} has no Scanbox 'info' struct")
    data_path = os.path.splitext(path)[0] + ".sbx"

    if "sz" not in info:
        info["sz"] = np.array(_SCANBOX_DEFAULT_SZ)
    if "scanmode" not in info:
        info["scanmode"] = 1  # unidirectional
    elif _info_int(info, "scanmode", path) == 0:  # bidirectional: two lines per record
        info["recordsPerBuffer"] = _info_int(info, "recordsPerBuffer", path) * 2

    channels = _info_int(info, "channels", path)
    if channels == 1:  # both PMTs
        info["nchannels"] = 2
    elif channels in (2, 3):  # one PMT
        info["nchannels"] = 1
    else:
        raise ValueError(
            f"{path!r}: the Scanbox info field 'channels' must be 1 (both PMTs), 2 or 3 "
            f"(one PMT), got {channels}"
        )

    sz = np.asarray(info["sz"]).ravel()
    if sz.size < 2:
        raise ValueError(f"{path!r}: the Scanbox info field 'sz' must hold (rows, columns)")
    records = _info_int(info, "recordsPerBuffer", path)
    info["nsamples"] = int(sz[1]) * records * info["nchannels"] * 2  # 2 bytes a sample

    if not os.path.isfile(data_path):
        raise FileNotFoundError(f"no Scanbox data file {data_path!r} beside {path!r}")
    size = os.path.getsize(data_path)
    version = info.get("scanbox_version", -1)
    if float(np.asarray(version).item()) >= 2:
        info["max_idx"] = size // info["nsamples"] - 1
    else:
        factor = 2 if info["nchannels"] == 1 else 1
        info["max_idx"] = size // _info_int(info, "bytesPerBuffer", path) * factor - 1

    otwave = info.get("otwave", [])
    if "volscan" in info:
        volume = float(np.asarray(info["volscan"]).item()) > 0
    else:
        volume = np.size(otwave) > 0
    info["nplanes"] = int(np.size(otwave)) if volume else 1
    return info


# --------------------------------------------------------------------------
# either
# --------------------------------------------------------------------------


def extract_imaging_parameters(filepath: str | os.PathLike, format: str) -> dict[str, Any]:
    """Get the imaging parameters of a recording from its metadata file.

    Parameters
    ----------
    filepath : str or os.PathLike
        The metadata file: for ``'Prairie'``, the ``.xml`` (or ``.env``)
        file or one of the recording's ``.tif`` images; for ``'Scanbox'``,
        the ``.mat`` info file.
    format : {'Prairie', 'Scanbox'}
        Which microscope software wrote it.

    Returns
    -------
    dict
        Parameter name -> value (:func:`prairie_imaging_parameters`,
        :func:`scanbox_imaging_parameters`).

    Raises
    ------
    ValueError
        If ``format`` is not one of :data:`FORMATS`, or the file cannot be
        read as that format.
    FileNotFoundError
        If a file it needs does not exist.
    TypeError
        If ``filepath`` is not a path.
    """
    if format == "Prairie":
        return prairie_imaging_parameters(filepath)
    if format == "Scanbox":
        return scanbox_imaging_parameters(filepath)
    raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")

"""sima_fast: fast, drop-in analysis of two-photon calcium imaging data.

``import sima_fast as sima`` gives the public API of SIMA's
``sima.ImagingDataset`` family (datasets, sequences, ROIs, extraction, spike
inference, segmentation) backed by numba kernels. Submodules and heavy
dependencies load on first use, so importing the package is cheap.

Examples
--------
>>> import sima_fast as sima
>>> import numpy as np
>>> seq = sima.Sequence.create('ndarray', np.zeros((3, 1, 4, 5, 1)))
>>> sima.ImagingDataset([seq], None)
<ImagingDataset: num_sequences=1, frame_shape=(1, 4, 5, 1), num_frames=3>
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names resolved lazily (PEP 562): name -> (module, attribute or None).
_LAZY = {
    "ImagingDataset": ("sima_fast.imaging", "ImagingDataset"),
    "Sequence": ("sima_fast.sequence", "Sequence"),
    "CorruptFileError": ("sima_fast.sequence", "CorruptFileError"),
    "imaging": ("sima_fast.imaging", None),
    "imaging_parameters": ("sima_fast.imaging_parameters", None),
    "sequence": ("sima_fast.sequence", None),
    "ROI": ("sima_fast.ROI", None),
    "misc": ("sima_fast.misc", None),
    "extract": ("sima_fast.extract", None),
    "spikes": ("sima_fast.spikes", None),
    "segment": ("sima_fast.segment", None),
    "storage": ("sima_fast.storage", None),
    "kernels": ("sima_fast.kernels", None),
    "online": ("sima_fast.online", None),
    "OnlineExtractor": ("sima_fast.online", "OnlineExtractor"),
    "OnlineRegistrar": ("sima_fast.online_motion", "OnlineRegistrar"),
    "transform_rois": ("sima_fast.transform_rois", None),
    "bench": ("sima_fast.bench", None),
    "warmup": ("sima_fast.precompile", "warmup"),
    "io": ("sima_fast.io", None),
    "registration": ("sima_fast.registration", None),
    "distributed": ("sima_fast.distributed", None),
    "motion": ("sima_fast.motion", None),
}

__all__ = [
    "ROI",
    "ImagingDataset",
    "Sequence",
    "__version__",
    "imaging",
    "misc",
    "sequence",
    "warmup",
]


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'sima_fast' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

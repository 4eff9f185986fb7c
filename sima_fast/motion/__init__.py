"""Motion correction: SIMA's ``sima.motion`` strategies, and more.

Every strategy is a :class:`MotionEstimationStrategy`:
``strategy.estimate(dataset)`` returns the displacements of every frame and
``strategy.correct(dataset, savedir)`` saves a motion-corrected dataset.
Conventions, strategies and the differences from SIMA: docs/motion.md.

SIMA's module paths are here too: ``frame_align`` (its alignment functions),
``dftreg`` and ``motion`` (``add_with_offset``) are imported on first access
(``sima_fast.motion.frame_align``), as SIMA's package imported them.
"""

from __future__ import annotations

import importlib
from typing import Any

from sima_fast.motion.base import MotionEstimationStrategy
from sima_fast.motion.hmm import HiddenMarkov2D, HiddenMarkov3D, MovementModel
from sima_fast.motion.nonrigid import NonRigid2D
from sima_fast.motion.rigid import (
    DiscreteFourier2D,
    PlaneTranslation2D,
    ResonantCorrection,
    RigidRegistration2D,
    VolumeTranslation,
)

__all__ = [
    "DiscreteFourier2D",
    "HiddenMarkov2D",
    "HiddenMarkov3D",
    "MotionEstimationStrategy",
    "MovementModel",
    "NonRigid2D",
    "PlaneTranslation2D",
    "ResonantCorrection",
    "RigidRegistration2D",
    "VolumeTranslation",
]

#: SIMA's submodules, imported when first used as attributes.
_SUBMODULES = ("dftreg", "frame_align", "motion")


def __getattr__(name: str) -> Any:
    """Import SIMA's submodule paths (``frame_align``, ``dftreg``, ``motion``) on first access.

    Parameters
    ----------
    name : str
        The attribute looked up.

    Returns
    -------
    module
        The submodule ``sima_fast.motion.<name>``.

    Raises
    ------
    AttributeError
        For any other name.
    """
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

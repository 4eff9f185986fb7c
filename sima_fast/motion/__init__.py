"""Motion correction: SIMA's ``sima.motion`` strategies, and more.

Every strategy is a :class:`MotionEstimationStrategy`:
``strategy.estimate(dataset)`` returns the displacements of every frame and
``strategy.correct(dataset, savedir)`` saves a motion-corrected dataset.
Conventions, strategies and the differences from SIMA: docs/motion.md.
"""

from __future__ import annotations

from sima_fast.motion.base import MotionEstimationStrategy
from sima_fast.motion.hmm import HiddenMarkov2D
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
    "MotionEstimationStrategy",
    "NonRigid2D",
    "PlaneTranslation2D",
    "ResonantCorrection",
    "RigidRegistration2D",
    "VolumeTranslation",
]

"""Motion correction: SIMA's ``sima.motion`` strategies, and more.

Every strategy is a :class:`MotionEstimationStrategy`:
``strategy.estimate(dataset)`` returns the displacements of every frame and
``strategy.correct(dataset, savedir)`` saves a motion-corrected dataset.
Conventions, strategies and the differences from SIMA: docs/motion.md.
"""

from __future__ import annotations

from sima_fast.motion.base import MotionEstimationStrategy

__all__ = [
    "MotionEstimationStrategy",
]

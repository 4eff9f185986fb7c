"""SIMA's ``sima.motion.dftreg``: the :class:`DiscreteFourier2D` strategy.

SIMA's module holds one public name, the strategy; its registration
helpers are private. sima_fast's :class:`DiscreteFourier2D` (defined in
:mod:`sima_fast.motion.rigid`, runs on :mod:`sima_fast.registration`) is
the same object under this path, so ``from sima.motion.dftreg import
DiscreteFourier2D`` works through the ``sima`` alias. Its parameters and
the ones it drops: docs/motion.md.
"""

from __future__ import annotations

from sima_fast.motion.rigid import DiscreteFourier2D

__all__ = ["DiscreteFourier2D"]

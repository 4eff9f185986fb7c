"""Repository-wide pytest setup (applies to tests/ and to the doctests in sima_fast/)."""

from __future__ import annotations

import pytest

# Fix numba's cache location now, from the real environment: the fixture below
# points SIMA_FAST_CACHE at a per-session folder for example data, and a kernel
# module first imported inside a test would otherwise cache its compiled code
# there, recompiling every kernel in every test session.
import sima_fast.kernels._jit  # noqa: F401


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Build the example data in a per-session cache, never in the user's."""
    cache = tmp_path_factory.getbasetemp() / "sima_fast_cache"
    monkeypatch.setenv("SIMA_FAST_CACHE", str(cache))

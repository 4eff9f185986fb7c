"""Repository-wide pytest setup (applies to tests/ and to the doctests in sima_fast/)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Build the example data in a per-session cache, never in the user's."""
    cache = tmp_path_factory.getbasetemp() / "sima_fast_cache"
    monkeypatch.setenv("SIMA_FAST_CACHE", str(cache))

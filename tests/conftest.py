"""Shared fixtures: the SIMA 1.3.2 samples and hypothesis profiles."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DATA = os.path.join(os.path.dirname(__file__), "data")
SIMA132 = os.path.join(DATA, "sima132")


@pytest.fixture
def sima132(tmp_path):
    """A private copy of the SIMA 1.3.2 samples (tests may move or break it)."""
    dst = tmp_path / "sima132"
    shutil.copytree(SIMA132, dst)
    return str(dst)

"""Shared test set-up: the real control-plane fixture, and where the shared test inputs live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.cluster.pytest_plugin", "tests.node.pytest_plugin", "tests.parallel"]

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_profiles_dir() -> Path:
    """Real-world profiles from ../shared/profiles (as people paste them; never edited)."""
    shared = Path(os.environ.get("SECCOMP_SYNC_SHARED_DIR", REPO_ROOT.parent / "shared"))
    profiles = shared / "profiles"
    if not profiles.is_dir():
        pytest.fail(f"shared test profiles not found at {profiles}; set SECCOMP_SYNC_SHARED_DIR")
    return profiles

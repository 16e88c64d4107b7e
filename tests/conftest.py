"""Shared test set-up: the real control-plane fixture, and where the shared test inputs live."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "tests.cluster.pytest_plugin",
    "tests.helm.pytest_plugin",
    "tests.node.pytest_plugin",
    "tests.parallel",
]

REPO_ROOT = Path(__file__).resolve().parents[1]


PROFILES_DIR = REPO_ROOT / "tests" / "data" / "profiles"


@pytest.fixture(scope="session")
def shared_profiles_dir() -> Path:
    """Real-world profiles as people paste them, never edited (tests/data/profiles, sources in
    its README)."""
    return PROFILES_DIR

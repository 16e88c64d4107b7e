"""System tools the integration tests run for real; missing ones fail the test, never skip it."""

from __future__ import annotations

import shutil

import pytest


def require_tool(name: str, debian_package: str) -> str:
    """The path of `name`, or a failure that says how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found on PATH: run scripts/install-system-deps (it installs Debian's "
            f"`{debian_package}` package)",
            pytrace=False,
        )
    return path

"""The files of this repository, as a clone holds them: what git tracks, plus new files it would
add (so that a check also sees a file not yet committed). Without git (an unpacked archive), a
walk of the tree that skips what git would not hold."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SKIPPED_DIRS = {
    ".git",
    ".venv",
    ".demo",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "build",
    "dist",
}


def repository_files() -> list[Path]:
    """Every file of the repository, as absolute paths."""
    git = shutil.which("git")
    if git is not None:
        top = subprocess.run(
            [git, "rev-parse", "--show-toplevel"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        # Only when REPO is itself the top of a work tree: an archive unpacked inside another
        # repository would otherwise be listed by that repository's index.
        if top.returncode == 0 and Path(top.stdout.strip()).resolve() == REPO:
            listed = subprocess.run(
                [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                cwd=REPO,
                capture_output=True,
                timeout=30,
                check=True,
            )
            names = [n for n in listed.stdout.decode().split("\0") if n]
            # A tracked file deleted in the work tree is listed but holds nothing.
            return [REPO / n for n in names if (REPO / n).is_file()]
    found: list[Path] = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        found.extend(Path(root) / f for f in files)
    return found

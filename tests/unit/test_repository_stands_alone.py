"""A clone of this repository has nothing beside it: no file of it may name a folder outside it.

The project's shared inputs once lived in a sibling folder, and tests, benchmarks and README
commands read them from there; on a user's clone they failed at collection. The data they need
is now copied under tests/data/. This test keeps it that way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Spelled in pieces so that this file does not name what it forbids.
FORBIDDEN = (b".." + b"/shared", b"/work" + b"/shared")

# Without git (an unpacked archive), walk the tree but skip what git would not hold.
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
    """Every file git tracks, plus new files it does not ignore (so an uncommitted one counts)."""
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
        if top.returncode == 0 and Path(top.stdout.strip()).resolve() == REPO:
            listed = subprocess.run(
                [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                cwd=REPO,
                capture_output=True,
                timeout=30,
                check=True,
            )
            names = [n for n in listed.stdout.decode().split("\0") if n]
            # A tracked file deleted in the work tree is listed but cannot name anything.
            return [REPO / n for n in names if (REPO / n).is_file()]
    found: list[Path] = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        found.extend(Path(root) / f for f in files)
    return found


def test_the_file_listing_sees_the_whole_repository() -> None:
    # Guards the test below against passing on an empty or partial listing.
    files = {p.relative_to(REPO).as_posix() for p in repository_files()}
    assert {"README.md", "pyproject.toml", "agent/main.py", "tests/conftest.py"} <= files
    assert Path(__file__).relative_to(REPO).as_posix() in files


def test_no_file_names_a_folder_outside_the_repository() -> None:
    offenders = []
    for path in repository_files():
        content = path.read_bytes()
        named = [f.decode() for f in FORBIDDEN if f in content]
        if named:
            offenders.append(f"{path.relative_to(REPO)} names {', '.join(named)}")
    assert not offenders, (
        "these files name a folder that a clone of the repository does not have; copy what they "
        "need into the repository (tests/data/ for test inputs) and point at the copy:\n"
        + "\n".join(offenders)
    )

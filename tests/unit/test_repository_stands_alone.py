"""A clone of this repository has nothing beside it: no file of it may name a folder outside it.

The project's shared inputs once lived in a sibling folder, and tests, benchmarks and README
commands read them from there; on a user's clone they failed at collection. The data they need
is now copied under tests/data/. This test keeps it that way.
"""

from __future__ import annotations

from pathlib import Path

from tests.unit.repo_files import REPO, repository_files

# Spelled in pieces so that this file does not name what it forbids.
FORBIDDEN = (b".." + b"/shared", b"/work" + b"/shared")


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

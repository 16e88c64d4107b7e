"""Every relative link in the documentation leads somewhere.

The manual is README.md plus the pages in docs/, which link each other, the repository's files
and headings (`page.md#anchor`). A page renamed, a heading reworded or a file moved breaks such
links silently; this test reads every markdown file of the repository and checks each relative
link and image against the files and headings that exist. External (http, https, mailto) links
are not fetched: whether a web site is up is not a property of this repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.unit.repo_files import REPO, repository_files

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# A code span may wrap but not cross a blank line (an unmatched backtick hides nothing then).
CODE_SPAN = re.compile(r"(`+)(?:(?!\1)[^\n]|\n(?!\n))+?\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets and wrap.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^\s()]+(?:\([^\s()]*\))?)(?:\s+\"[^\"\n]*\")?\s*\)"
)
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Link:
    page: Path
    line: int
    target: str


def markdown_files() -> list[Path]:
    return sorted(p for p in repository_files() if p.suffix == ".md")


def without_code(text: str) -> str:
    """The text with fenced blocks and code spans blanked out (newlines kept for line numbers):
    a link or heading shown as code is an example, not a link or heading."""
    lines = text.split("\n")
    fence: str | None = None
    for i, line in enumerate(lines):
        opened = FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
            lines[i] = ""
        elif fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
            lines[i] = ""
    return CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), "\n".join(lines))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lowercased, punctuation dropped except
    `-` and `_`, spaces made `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    text = page.read_text(encoding="utf-8")
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for line in without_code(text).split("\n"):
        heading = ATX_HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(1))
        # A repeated heading gets -1, -2, ... as on GitHub.
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def links(page: Path) -> list[Link]:
    text = without_code(page.read_text(encoding="utf-8"))
    found = []
    for pattern in (INLINE_LINK, REFERENCE_DEFINITION):
        for match in pattern.finditer(text):
            target = match.group(1).strip("<>")
            found.append(Link(page, text.count("\n", 0, match.start()) + 1, target))
    return found


def problem(link: Link) -> str | None:
    """Why the link leads nowhere, or None when it resolves."""
    if SCHEME.match(link.target):
        return None  # external: not fetched
    path_part, _, fragment = link.target.partition("#")
    if path_part:
        path = unquote(path_part)
        base = REPO if path.startswith("/") else link.page.parent
        resolved = (base / path.lstrip("/")).resolve()
        if not resolved.is_relative_to(REPO):
            return "points outside the repository"
        if not resolved.exists():
            return "no such file or directory"
    else:
        resolved = link.page
    if fragment and resolved.suffix == ".md" and unquote(fragment) not in anchors(resolved):
        return f"no heading with the anchor #{fragment} in {resolved.relative_to(REPO)}"
    return None


def test_the_manual_is_found() -> None:
    # Guards the test below against passing because it read nothing.
    pages = {p.relative_to(REPO).as_posix() for p in markdown_files()}
    assert "README.md" in pages
    assert any(p.startswith("docs/") for p in pages)
    assert sum(len(links(REPO / p)) for p in pages) > 20


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        (
            "No pod starts before its profile: scheduling gates",
            "no-pod-starts-before-its-profile-scheduling-gates",
        ),
        ("The local control plane (`tests/cluster/`)", "the-local-control-plane-testscluster"),
        ("Metrics, alerts, dashboard", "metrics-alerts-dashboard"),
        (
            "`seccomp-agent test`: find what a profile denies",
            "seccomp-agent-test-find-what-a-profile-denies",
        ),
        ("Before and after (issue 16)", "before-and-after-issue-16"),
    ],
)
def test_anchors_follow_githubs_rules(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in markdown_files():
        for link in links(page):
            reason = problem(link)
            if reason is not None:
                broken.append(f"{page.relative_to(REPO)}:{link.line}: ({link.target}) {reason}")
    assert not broken, "links that lead nowhere:\n" + "\n".join(broken)

"""How big a profile is, measured before anything is copied or modelled.

An object can reach etcd's limit (about 1.5 MB) without breaking any per-field bound, and a
parsed 1.5 MB object costs tens of MB once copied, modelled and checked. So the agent measures
the spec first, walking the parsed data without allocating, and refuses one that is too large
with its size, before building anything of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from agent.api.findings import Finding, error

# The largest spec the CRD's bounds allow is about 230 KB of JSON (see the CRD's size rules and
# tests/unit/test_profile_size.py); a real profile is a few KB (Docker's default: 6 KB).
MAX_SPEC_BYTES: Final = 256 * 1024
# Specs above this are "large": few of them are validated at once.
LARGE_SPEC_BYTES: Final = 32 * 1024


def json_size(value: Any, stop_after: int | None = None) -> int:
    """The size of `value` as compact JSON, estimated without serialising or copying it.

    Exact for ASCII strings, integers and containers; stops walking (returning a size above
    `stop_after`) once that many bytes are counted, so the cost is bounded by the limit.
    """
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, Mapping):
            total += 2 + max(0, len(item) - 1)  # braces and commas
            for key, child in item.items():
                total += len(str(key)) + 3  # quotes and colon
                stack.append(child)
        elif isinstance(item, list | tuple):
            total += 2 + max(0, len(item) - 1)
            stack.extend(item)
        elif item is None or isinstance(item, bool):
            total += 5 if item is False else 4
        else:
            total += len(str(item))
        if stop_after is not None and total > stop_after:
            break
    return total


def size_findings(spec: Any, prefix: str = "spec.") -> list[Finding]:
    """An error when the spec is larger than the agent accepts; empty otherwise."""
    size = json_size(spec, stop_after=None)
    if size <= MAX_SPEC_BYTES:
        return []
    return [
        error(
            prefix.rstrip(".") or "(document)",
            "TooLarge",
            f"the profile is {human_bytes(size)}; the limit is {human_bytes(MAX_SPEC_BYTES)}. "
            "No real profile comes near it (Docker's default is 6 KB): merge rules that share "
            "an action and drop names the workload never calls",
        )
    ]


def human_bytes(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MiB"
    if size >= 1024:
        return f"{size / 1024:.0f} KiB"
    return f"{size} bytes"

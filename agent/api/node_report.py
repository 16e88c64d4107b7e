"""What one node reports about its profiles: the content of its SeccompNodeStatus.

Compact on purpose: one object per node holds every profile, so its size bounds what an
agent writes and what the aggregator reads. Installed profiles are one short string each;
only profiles with a problem carry a reason and a message.

A node also says which architecture it is (an SCMP_ARCH_* name): a profile built on a built-in
base (`runtime/default@...`) is flattened for the node's architecture, so what a node of
another architecture holds has another hash. Agents before this field report none; the
controller reads that as its own architecture, which is what it assumed of every node then.

Two forms. The full form lists every file on disk (`installed`), one entry per profile. The
compact form, written when the digest of what the node has seen equals the one the controller
publishes for its architecture (agent.api.fleet_digest), names that `digest` and lists only the
profiles the node does not hold at that version (`problems`): its size does not grow with the
number of profiles. A compact report never has a truncated problem list (that would claim
profiles it does not hold), so a node with more problems than fit writes the full form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from agent.api.keys import ProfileKey

SHA_PREFIX: Final = 12  # 48 bits: collisions between two versions of one profile are negligible
MAX_PROBLEMS: Final = 500
MAX_MESSAGE: Final = 256


class NodeState(StrEnum):
    """Where a profile stands on one node."""

    INSTALLED = "Installed"
    INVALID = "Invalid"
    PENDING = "Pending"
    TERMINATING = "Terminating"


@dataclass(frozen=True)
class NodeProfileStatus:
    state: NodeState
    sha256: str | None = None
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Problem:
    state: NodeState
    reason: str
    message: str


@dataclass(frozen=True)
class NodeReport:
    """One node's view, parsed back from its SeccompNodeStatus."""

    node: str
    synced: bool
    installed: Mapping[ProfileKey, str]  # key -> sha256 prefix on disk
    problems: Mapping[ProfileKey, Problem]
    architecture: str | None = None  # SCMP_ARCH_*; None from an agent that predates the field
    uid: str = ""  # of the SeccompNodeStatus object, for Events about it
    # The digest of every profile version the node has seen (agent.api.fleet_digest).
    digest: str | None = None
    # No `installed` list: the node holds every version under `digest` but its `problems`.
    compact: bool = False


def build_status(
    node: str,
    synced: bool,
    statuses: Iterable[tuple[ProfileKey, NodeProfileStatus]],
    architecture: str | None = None,
    digest: str | None = None,
    compact: bool = False,
) -> dict[str, Any]:
    """The `status` of a SeccompNodeStatus for this node. Deterministic, for change detection.

    `digest`: of what the node has seen; `compact`: it equals the published one, so leave the
    `installed` list out (sent as null: the status is merge-patched, and only a null removes an
    earlier full list). A problem list too long to send whole makes it the full form anyway.
    """
    installed: list[str] = []
    problems: list[dict[str, str]] = []
    counts = dict.fromkeys((state.value.lower() for state in NodeState), 0)
    truncated = 0
    for key, status in sorted(statuses):
        counts[status.state.value.lower()] += 1
        if status.sha256 is not None:
            installed.append(f"{key}@{status.sha256[:SHA_PREFIX]}")
        if status.state is NodeState.INSTALLED:
            continue
        if len(problems) >= MAX_PROBLEMS:
            truncated += 1
            continue
        problems.append(
            {
                "profile": str(key),
                "state": status.state.value,
                "reason": status.reason or status.state.value,
                "message": _clip(status.message or ""),
            }
        )
    report: dict[str, Any] = {"nodeName": node}
    if architecture is not None:
        report["architecture"] = architecture
    compact = compact and digest is not None and truncated == 0
    report.update(
        synced=synced,
        counts=counts,
        installed=None if compact else installed,
        digest=digest,
        problems=problems,
        problemsTruncated=truncated,
    )
    return report


def parse_status(node: str, status: Mapping[str, Any] | None, uid: str = "") -> NodeReport:
    """Read a SeccompNodeStatus back. Malformed entries are skipped, never fatal."""
    status = status or {}
    architecture = status.get("architecture")
    digest = status.get("digest")
    digest = digest if isinstance(digest, str) and digest else None
    installed: dict[ProfileKey, str] = {}
    for entry in status.get("installed") or []:
        ref, _, sha = str(entry).rpartition("@")
        key = ProfileKey.parse(ref)
        if key is not None and sha:
            installed[key] = sha
    problems: dict[ProfileKey, Problem] = {}
    for entry in status.get("problems") or []:
        key = ProfileKey.parse(str(entry.get("profile", "")))
        try:
            state = NodeState(entry.get("state"))
        except ValueError:
            continue
        if key is not None:
            problems[key] = Problem(
                state, str(entry.get("reason", "")), str(entry.get("message", ""))
            )
    return NodeReport(
        node,
        bool(status.get("synced")),
        installed,
        problems,
        architecture if isinstance(architecture, str) and architecture else None,
        uid,
        digest,
        # Only a report that says what it matched may leave the list out; anything else
        # without a list lists nothing (an agent before the compact form, with no files).
        compact=digest is not None and status.get("installed") is None,
    )


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."

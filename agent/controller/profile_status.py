"""Aggregate the node reports into a SeccompProfile's status and its Ready condition.

Pure: the leader calls it with what it has read; tests call it with plain data.
Expected nodes are the nodes that run an agent, i.e. that have a SeccompNodeStatus and a Node
object: the caller hands in only those reports (`ClusterState.counted_reports`). Each node is
judged against the hash a node of its own architecture renders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from agent.api.keys import ProfileKey
from agent.api.layout import localhost_profile
from agent.api.node_report import SHA_PREFIX, NodeReport, NodeState
from agent.controller.fleet import NO_HOLDINGS, Holding, Holdings

MAX_FAILING_NODES: Final = 10


class NotRendered(Enum):
    """Not rendered for that architecture yet (a moment after it first appears)."""

    TOKEN = "not rendered"


NOT_RENDERED: Final = NotRendered.TOKEN


@dataclass(frozen=True)
class ProfileView:
    """What the aggregator knows of one SeccompProfile object."""

    key: ProfileKey
    generation: int
    expected_sha: str | None  # sha256 of the rendered profile; None if it does not render
    deleting: bool = False

    uid: str = ""  # for Events on the object
    content: bytes | None = None  # the OCI JSON on the nodes: what a tenant policy judges

    invalid_reason: str | None = None  # why it does not render, when known
    base_chain: tuple[str, ...] = ()  # spec.baseProfileName resolved, nearest base first

    # The architecture `expected_sha` is rendered for (the controller's own). A profile on a
    # built-in base renders differently per architecture: `per_architecture` is then True and
    # `other_architectures` holds (architecture, sha) for each other one the nodes report.
    architecture: str = ""
    per_architecture: bool = False
    other_architectures: tuple[tuple[str, str | None], ...] = ()

    def expected_on(self, architecture: str | None) -> str | NotRendered | None:
        """The sha256 a node of `architecture` writes (None: it does not render there).
        A report without an architecture comes from an older agent: taken as ours."""
        if not self.per_architecture or architecture in (None, self.architecture):
            return self.expected_sha
        for other, sha in self.other_architectures:
            if other == architecture:
                return sha
        return NOT_RENDERED


@dataclass(frozen=True)
class NodeVerdict:
    node: str
    state: NodeState
    reason: str
    message: str


def node_verdict(
    view: ProfileView, report: NodeReport, holdings: Holdings = NO_HOLDINGS
) -> NodeVerdict:
    """Where one profile stands on one node, judged by the content hash on its disk (the full
    form) or by what the node's digest stands for (the compact form, via `holdings`)."""
    problem = report.problems.get(view.key)
    if problem is not None and problem.state is not NodeState.PENDING:
        return NodeVerdict(report.node, problem.state, problem.reason, problem.message)
    expected = view.expected_on(report.architecture)
    if report.compact:
        holding = holdings.holding(report, view.key)
        if problem is None and holding is Holding.UNKNOWN:
            return NodeVerdict(
                report.node,
                NodeState.PENDING,
                "Unconfirmed",
                "the node reported a fleet digest this controller does not know (it started "
                "after that report); the node is counted when it reports again",
            )
        installed = holding is Holding.HELD and problem is None
        earlier = holding is Holding.OUTDATED
    else:
        sha = report.installed.get(view.key)
        installed = isinstance(expected, str) and sha == expected[:SHA_PREFIX]
        earlier = sha is not None
    if isinstance(expected, str) and installed:
        return NodeVerdict(report.node, NodeState.INSTALLED, "Installed", "")
    if problem is not None:
        return NodeVerdict(report.node, NodeState.PENDING, problem.reason, problem.message)
    if expected is NOT_RENDERED:
        return NodeVerdict(
            report.node,
            NodeState.PENDING,
            "Rendering",
            f"the controller has not rendered the profile for {report.architecture} yet",
        )
    if not report.synced:
        return NodeVerdict(
            report.node,
            NodeState.PENDING,
            "AgentStarting",
            "the node's agent has not finished its initial sync",
        )
    if earlier:
        return NodeVerdict(
            report.node,
            NodeState.PENDING,
            "Outdated",
            "the node still has an earlier version of the profile",
        )
    return NodeVerdict(
        report.node,
        NodeState.PENDING,
        "NotYetInstalled",
        "the profile is not on the node yet (is its agent running?)",
    )


def profile_status(
    view: ProfileView,
    reports: Mapping[str, NodeReport],
    previous_conditions: list[Mapping[str, Any]] | None,
    now: str,
    holdings: Holdings = NO_HOLDINGS,
) -> dict[str, Any]:
    """The full `status` of one SeccompProfile. `now` is an RFC 3339 time for transitions;
    `holdings` judges the compact reports."""
    verdicts = [node_verdict(view, reports[node], holdings) for node in sorted(reports)]
    installed = sum(v.state is NodeState.INSTALLED for v in verdicts)
    expected = len(verdicts)
    failing = [v for v in verdicts if v.state is not NodeState.INSTALLED]
    state, reason, message = _overall(view, verdicts, installed, expected, failing)
    condition = {
        "type": "Ready",
        "status": "True" if state == "Installed" else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": view.generation,
        "lastTransitionTime": _transition_time(previous_conditions, state == "Installed", now),
    }
    return {
        "observedGeneration": view.generation,
        "localhostProfile": localhost_profile(view.key),
        "state": state,
        "nodesInstalled": installed,
        "nodesExpected": expected,
        "readyNodes": f"{installed}/{expected}",
        "conditions": [condition],
        "failingNodes": [
            {"node": v.node, "state": v.state.value, "reason": v.reason, "message": v.message}
            for v in failing[:MAX_FAILING_NODES]
        ],
        # None (not absent) when there is no base: the status is merge-patched, and only a null
        # removes a chain written before the base was dropped.
        "baseChain": list(view.base_chain) or None,
    }


def _overall(
    view: ProfileView,
    verdicts: list[NodeVerdict],
    installed: int,
    expected: int,
    failing: list[NodeVerdict],
) -> tuple[str, str, str]:
    if view.deleting:
        return "Terminating", "Terminating", "the profile is being deleted"
    invalid = [v for v in verdicts if v.state is NodeState.INVALID]
    if invalid or view.expected_sha is None:
        first = invalid[0] if invalid else None
        detail = f" on {first.node}: {first.message}" if first else ""
        return "Invalid", "Invalid", f"the profile is invalid{detail}"
    if expected == 0:
        return "Pending", "NoAgents", "no seccomp-sync agent has reported yet"
    if installed == expected:
        return "Installed", "Installed", f"installed on all {expected} nodes"
    names = ", ".join(v.node for v in failing[:3]) + (" ..." if len(failing) > 3 else "")
    summary = f"installed on {installed} of {expected} nodes; waiting for {names}"
    return ("Partial" if installed else "Pending"), failing[0].reason, summary


def _transition_time(previous: list[Mapping[str, Any]] | None, ready: bool, now: str) -> str:
    for condition in previous or []:
        unchanged = (condition.get("status") == "True") == ready
        if condition.get("type") == "Ready" and "lastTransitionTime" in condition and unchanged:
            return str(condition["lastTransitionTime"])
    return now

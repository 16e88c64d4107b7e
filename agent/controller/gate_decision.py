"""Decide, for one gated pod, whether it may be scheduled now: release, narrow, or wait.

Judged only from each profile's current generation and the content hashes the nodes report
(via `node_verdict`), never from timing: time only decides *when* lagging nodes are excluded
instead of waited for, never whether a node counts as ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.api.keys import ProfileKey
from agent.api.node_report import NodeReport, NodeState
from agent.controller.fleet import NO_HOLDINGS, Holdings
from agent.controller.gated_pods import GatedPod
from agent.controller.profile_status import ProfileView, node_verdict


@dataclass(frozen=True)
class ProfileReadiness:
    """Where one profile stands across the nodes that run an agent."""

    ready_nodes: frozenset[str]
    lagging: Mapping[str, str]  # node -> reason it does not hold the current version
    # Why no pod can use it anywhere (missing, invalid everywhere), else None.
    problem: str | None


@dataclass(frozen=True)
class Release:
    """Remove the gate; when `exclude` is not empty, keep the pod off those nodes."""

    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Wait:
    """Keep the gate. `message` is worth an Event on the pod (None: just not ready yet)."""

    message: str | None = None


Decision = Release | Wait


def readiness(
    key: ProfileKey,
    view: ProfileView | None,
    reports: Iterable[NodeReport],
    holdings: Holdings = NO_HOLDINGS,
) -> ProfileReadiness:
    """Fold the node reports for one profile (computed once per pass, shared by its pods);
    `holdings` judges the compact ones."""
    label = f"SeccompProfile {key}"
    if view is None:
        return ProfileReadiness(frozenset(), {}, f"{label}: not found")
    if view.deleting:
        return ProfileReadiness(frozenset(), {}, f"{label}: being deleted")
    ready: set[str] = set()
    lagging: dict[str, str] = {}
    invalid: list[str] = []
    for report in reports:
        verdict = node_verdict(view, report, holdings)
        if verdict.state is NodeState.INSTALLED:
            ready.add(report.node)
        else:
            lagging[report.node] = verdict.reason
            if verdict.state is NodeState.INVALID:
                invalid.append(f"{verdict.node}: {verdict.message}")
    problem: str | None = None
    if view.expected_sha is None:
        problem = f"{label}: invalid: {view.invalid_reason or 'does not validate'}"
    elif not ready and not lagging:
        problem = f"{label}: no node runs a seccomp-sync agent"
    elif not ready and invalid and len(invalid) == len(lagging):
        problem = f"{label}: invalid on every node ({invalid[0]})"
    return ProfileReadiness(frozenset(ready), lagging, problem)


def decide(
    pod: GatedPod,
    profiles: Mapping[ProfileKey, ProfileReadiness],
    nodes: frozenset[str],
    now: float,
    grace_seconds: float,
    recordings: Mapping[ProfileKey, ProfileReadiness] | None = None,
) -> Decision:
    """`nodes`: every node that runs an agent; `profiles` holds every key the pod names, and
    `recordings` every recording whose recording profile it names (a recording is ready on a
    node when its agent listens for it: runc refuses to start a container otherwise)."""
    needed = [profiles[k] for k in sorted(pod.profiles)]
    needed += [(recordings or {})[k] for k in sorted(pod.recordings)]
    if not needed:
        # Gated by our policy but naming nothing we can parse (a malformed path): nothing to
        # wait for, and keeping it would hold it forever.
        return Release()
    problems = [r.problem for r in needed if r.problem]
    if problems:
        return Wait("; ".join(p for p in problems if p))
    ready = frozenset(nodes)
    for readiness_of_one in needed:
        ready &= readiness_of_one.ready_nodes
    lagging = nodes - ready
    if not lagging:
        return Release()
    if now - pod.created < grace_seconds:
        return Wait()
    usable = ready if pod.pinned_nodes is None else ready & pod.pinned_nodes
    if not usable:
        where = "its nodes" if pod.pinned_nodes is not None else "any node"
        names = _names(pod.profiles, pod.recordings)
        return Wait(f"{names} not ready on {where} yet: {_lag(lagging)}")
    return Release(exclude=lagging)


def _names(keys: Iterable[ProfileKey], recordings: Iterable[ProfileKey] = ()) -> str:
    return ", ".join(
        [f"SeccompProfile {k}" for k in sorted(keys)]
        + [f"SeccompProfileRecording {k}" for k in sorted(recordings)]
    )


def _lag(nodes: Iterable[str], limit: int = 5) -> str:
    names = sorted(nodes)
    return ", ".join(names[:limit]) + (
        f" and {len(names) - limit} more" if len(names) > limit else ""
    )

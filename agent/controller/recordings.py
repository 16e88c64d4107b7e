"""In-cluster recording, the controller's decisions: pure functions from a SeccompProfileRecording
and the nodes' parts (agent.api.recording) to its status, its results and what to do next.

The node agents record; each publishes its node's part of each recording in its
SeccompNodeStatus. Here the parts are merged (the union of syscall names per container across
pods and nodes), the recording's phase is decided, and once it stops (spec.active false, or
deleted) the results are built: one SeccompProfile per container. `recording_handler` does the
I/O. Plain data in and out, so every decision is tested without a cluster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from agent.api.keys import ProfileKey
from agent.api.model import API_GROUP, API_VERSION, KIND
from agent.api.recording import DegradedPod, NodeRecording, result_profile_name
from agent.controller.gate_decision import ProfileReadiness
from agent.profiles.builtin_bases import builtin_profile

FINALIZER: Final = "seccompsync.io/recording-result"
# On each result: which recording wrote it. A SeccompProfile without this label, or naming
# another recording, is never overwritten.
RECORDING_LABEL: Final = "seccompsync.io/recording"

# What runc calls between loading the container's filter and exec'ing its process. The recorder
# normally sees them (the filter is loaded), but a result without them fails every container at
# start, so it must not depend on what one recording happened to see: the result allows runc's
# list as `seccomp-agent record` does (the built-in base, SPO's runc profile), per architecture.
RUNC_BASE: Final = "runtime/runc@v1.4.2"
# runc refuses SCMP_ACT_NOTIFY on `write` (it reports errors to its parent with it), so the
# recording profile never notifies it: every result allows it, as if it were always seen.
NEVER_NOTIFIED: Final = frozenset({"write"})
# When no node reported an architecture (nothing was recorded yet), runc's list for this one.
DEFAULT_ARCHITECTURE: Final = "SCMP_ARCH_X86_64"

# status.phase
RECORDING: Final = "Recording"
STOPPED: Final = "Stopped"
DEGRADED: Final = "Degraded"
COMPLETED: Final = "Completed"

# Condition types and reasons (CamelCase; Event reasons too).
RESULTS_WRITTEN: Final = "ResultsWritten"
NODES_READY: Final = "NodesReady"
DEGRADED_CONDITION: Final = "Degraded"
PODS_CUT_SHORT: Final = "RecordingDegraded"
PROFILE_EXISTS: Final = "ProfileExists"
RESULT_REFUSED: Final = "ResultRefused"
WRITTEN: Final = "Written"
NOTHING_RECORDED: Final = "NothingRecorded"
PENDING: Final = "Pending"


class ResultRefusedError(Exception):
    """The API server refused a result for good (admission, validation): retrying cannot help."""


@dataclass(frozen=True)
class RecordingView:
    """What the controller reads of a SeccompProfileRecording."""

    key: ProfileKey
    uid: str
    generation: int
    resource_version: str
    active: bool
    deleting: bool
    finalized: bool  # carries FINALIZER
    containers: frozenset[str] | None  # None: every container
    base: str | None
    prefix: str  # profileNamePrefix, else the recording's name
    status: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        return self.deleting or not self.active


def recording_view(body: Mapping[str, Any]) -> RecordingView:
    """Parse a SeccompProfileRecording object (the API has validated its schema)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    name = str(meta.get("name", ""))
    containers = spec.get("containers")
    return RecordingView(
        key=ProfileKey(str(meta.get("namespace", "")), name),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        resource_version=str(meta.get("resourceVersion", "")),
        active=bool(spec.get("active", True)),
        deleting=bool(meta.get("deletionTimestamp")),
        finalized=FINALIZER in (meta.get("finalizers") or []),
        containers=None if containers is None else frozenset(str(c) for c in containers),
        base=spec.get("baseProfileName") or None,
        prefix=str(spec.get("profileNamePrefix") or name),
        status=body.get("status") or {},
    )


@dataclass(frozen=True)
class Merged:
    """Every node's part of one recording, merged."""

    pods: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()  # nodes that recorded at least one pod
    ready_nodes: frozenset[str] = frozenset()
    syscalls: Mapping[str, frozenset[str]] = field(default_factory=dict)  # container -> names
    architectures: frozenset[str] = frozenset()
    degraded: tuple[tuple[str, DegradedPod], ...] = ()  # (node, pod), sorted

    @property
    def syscalls_counted(self) -> int:
        return len(frozenset().union(*self.syscalls.values()))


def merge(view: RecordingView, parts: Mapping[str, Iterable[NodeRecording]]) -> Merged:
    """Merge the nodes' parts (node -> its parts of every recording) for one recording.

    A part whose uid is not the recording's belongs to an earlier recording of the same name
    (deleted and made again) and counts for nothing.
    """
    pods: set[str] = set()
    nodes: set[str] = set()
    ready: set[str] = set()
    syscalls: dict[str, set[str]] = {}
    architectures: set[str] = set()
    degraded: list[tuple[str, DegradedPod]] = []
    for node, node_parts in parts.items():
        for part in node_parts:
            if part.recording != view.key or part.uid != view.uid:
                continue
            if part.ready:
                ready.add(node)
            if part.pods:
                nodes.add(node)
            pods |= part.pods
            architectures |= part.architectures
            for container, names in part.syscalls.items():
                if view.containers is None or container in view.containers:
                    syscalls.setdefault(container, set()).update(names)
            degraded += [(node, d) for d in part.degraded]
    return Merged(
        pods=frozenset(pods),
        nodes=frozenset(nodes),
        ready_nodes=frozenset(ready),
        syscalls={c: frozenset(n) for c, n in sorted(syscalls.items())},
        architectures=frozenset(architectures),
        degraded=tuple(sorted(degraded, key=lambda d: (d[1].pod, d[1].container, d[0]))),
    )


def readiness(
    key: ProfileKey, view: RecordingView | None, merged: Merged, nodes: frozenset[str]
) -> ProfileReadiness:
    """Where a gated pod that names this recording's profile may start: on the nodes whose agent
    says the recording profile is written and its listener accepts (runc refuses to start a
    container whose listener is unreachable)."""
    label = f"SeccompProfileRecording {key}"
    if view is None:
        return ProfileReadiness(frozenset(), {}, f"{label}: not found")
    if view.stopped:
        return ProfileReadiness(
            frozenset(), {}, f"{label}: stopped (its recording profile is being removed)"
        )
    ready = merged.ready_nodes & nodes
    lagging = dict.fromkeys(nodes - ready, "the agent has not reported the recording ready")
    problem = None if ready or not nodes else f"{label}: no node runs a seccomp-sync agent"
    return ProfileReadiness(ready, lagging, problem)


def result_spec(view: RecordingView, merged: Merged, container: str) -> dict[str, Any]:
    """The SeccompProfile spec for one container: deny (EPERM) all but what was seen."""
    architectures = sorted(merged.architectures)
    runc: set[str] = set()
    for architecture in architectures or [DEFAULT_ARCHITECTURE]:
        base = builtin_profile(RUNC_BASE, architecture)
        runc |= {
            name
            for rule in base.syscalls or []
            if rule.action == "SCMP_ACT_ALLOW"
            for name in rule.names
        }
    names = sorted(merged.syscalls.get(container, frozenset()) | NEVER_NOTIFIED | runc)
    spec: dict[str, Any] = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1}
    if architectures:
        spec["architectures"] = architectures
    if view.base:
        spec["baseProfileName"] = view.base
    spec["syscalls"] = [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    return spec


def result_profiles(view: RecordingView, merged: Merged) -> dict[str, dict[str, Any]]:
    """name -> the SeccompProfile object to write, one per recorded container."""
    results: dict[str, dict[str, Any]] = {}
    for container in sorted(merged.syscalls):
        name = result_profile_name(view.prefix, container)
        results[name] = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "metadata": {
                "name": name,
                "namespace": view.key.namespace,
                "labels": {RECORDING_LABEL: view.key.name},
                "annotations": {
                    "seccompsync.io/recorded": (
                        f"container {container} of {len(merged.pods)} pod(s) on "
                        f"{len(merged.nodes)} node(s), recording uid {view.uid}"
                    )
                },
            },
            "spec": result_spec(view, merged, container),
        }
    return results


def ours(view: RecordingView, existing: Mapping[str, Any]) -> bool:
    """Whether an existing SeccompProfile is a result of this recording (may be rewritten)."""
    labels = (existing.get("metadata") or {}).get("labels") or {}
    return labels.get(RECORDING_LABEL) == view.key.name


@dataclass(frozen=True)
class Outcome:
    """What writing the results came to: written names, and refusals (name -> why)."""

    written: tuple[str, ...] = ()
    not_ours: Mapping[str, str] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)


def results_settled(view: RecordingView) -> bool:
    """Whether the results of the current stop are written, or refused for good: they are
    written once per stop (generation), never retried after a refusal until the spec changes."""
    if view.status.get("observedGeneration") != view.generation:
        return False
    if view.status.get("phase") == COMPLETED:
        return True
    condition = _condition(view.status, RESULTS_WRITTEN)
    return condition is not None and condition.get("reason") in {PROFILE_EXISTS, RESULT_REFUSED}


def build_status(
    view: RecordingView,
    merged: Merged,
    outcome: Outcome | None,
    now: dt.datetime,
    nodes: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The recording's status. `outcome`: the results just written, or None (not written in
    this pass: the previous status's results, if any, stand); `nodes`: every node that runs an
    agent."""
    previous = view.status
    conditions: list[dict[str, Any]] = []
    if not view.stopped:
        conditions.append(nodes_ready_condition(merged, nodes))
    if merged.degraded:
        pods = _some(sorted({d.pod for _, d in merged.degraded}))
        reasons = ", ".join(sorted({d.reason for _, d in merged.degraded}))
        conditions.append(
            _make(DEGRADED_CONDITION, True, PODS_CUT_SHORT, f"pods cut short ({reasons}): {pods}")
        )
    else:
        conditions.append(_make(DEGRADED_CONDITION, False, "NoneCutShort", ""))
    profiles = list(previous.get("profiles") or []) if outcome is None else list(outcome.written)
    if outcome is not None:
        conditions.append(results_condition(outcome))
    elif (kept := _condition(previous, RESULTS_WRITTEN)) is not None and view.stopped:
        conditions.append(dict(kept))
    elif view.stopped:
        conditions.append(_make(RESULTS_WRITTEN, False, PENDING, "writing the results"))
    if outcome is not None:
        phase = COMPLETED if not outcome.not_ours and not outcome.refused else STOPPED
    elif view.stopped:
        phase = (
            COMPLETED if results_settled(view) and previous.get("phase") == COMPLETED else STOPPED
        )
    else:
        phase = DEGRADED if merged.degraded else RECORDING
        profiles = []  # results are written when it stops
    status: dict[str, Any] = {
        "observedGeneration": view.generation,
        "phase": phase,
        "podsSeen": len(merged.pods),
        "nodesSeen": len(merged.nodes),
        "syscallsCounted": merged.syscalls_counted,
        "containers": [
            {"name": name, "syscalls": sorted(names)} for name, names in merged.syscalls.items()
        ],
        "profiles": profiles,
        "conditions": [_with_time(c, previous, now) for c in conditions],
    }
    return status


def nodes_ready_condition(merged: Merged, nodes: frozenset[str]) -> dict[str, Any]:
    """Where a recorded pod can start: runc refuses to start a container whose seccomp listener
    cannot be reached, so a node whose agent is down or not ready takes no recorded pod (the
    scheduling gate keeps them off it)."""
    missing = sorted(nodes - merged.ready_nodes)
    if not missing:
        return _make(NODES_READY, True, "AllNodesReady", f"ready on {len(nodes)} node(s)")
    shown = _some(missing)
    return _make(
        NODES_READY,
        False,
        "NodesNotReady",
        f"not ready on {len(missing)} of {len(nodes)} node(s): {shown}; recorded pods cannot "
        "start there (runc needs the agent's listener) and wait at the scheduling gate",
    )


def results_condition(outcome: Outcome) -> dict[str, Any]:
    if outcome.not_ours:
        names = ", ".join(sorted(outcome.not_ours))
        return _make(
            RESULTS_WRITTEN,
            False,
            PROFILE_EXISTS,
            f"not written: SeccompProfile {names} exists and was not written by this recording "
            "(never overwritten): delete or rename it, or set spec.profileNamePrefix, then set "
            "spec.active to true and back to false",
        )
    if outcome.refused:
        name, why = sorted(outcome.refused.items())[0]
        return _make(RESULTS_WRITTEN, False, RESULT_REFUSED, f"SeccompProfile {name}: {why}")
    if not outcome.written:
        return _make(RESULTS_WRITTEN, True, NOTHING_RECORDED, "no pod was recorded: no result")
    return _make(RESULTS_WRITTEN, True, WRITTEN, "wrote " + ", ".join(outcome.written))


def same_status(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal but for the conditions' transition times (a status write only when it changed)."""
    return _timeless(a) == _timeless(b)


def degraded_message(merged: Merged) -> str:
    """The Event naming the pods cut short, node by node."""
    lines = [
        f"{d.pod} container {d.container} on {node}: {d.reason}" for node, d in merged.degraded
    ]
    return (
        "recording cut short, the results may miss syscalls of: "
        + "; ".join(lines)
        + " (restart these pods to record them again)"
    )


def _some(names: list[str], limit: int = 10) -> str:
    """The first names, and how many more: a condition's message stays readable."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _make(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
    }


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition
    return None


def _with_time(
    condition: dict[str, Any], previous: Mapping[str, Any], now: dt.datetime
) -> dict[str, Any]:
    before = _condition(previous, condition["type"])
    if before is not None and before.get("status") == condition["status"]:
        when = str(before.get("lastTransitionTime") or "")
    else:
        when = ""
    return {
        **condition,
        "lastTransitionTime": when or now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _timeless(status: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **status,
        "conditions": [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions") or []
        ],
    }

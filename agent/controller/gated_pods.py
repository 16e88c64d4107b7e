"""Read what the gate handler needs from a Pod object: pure parsing, plain data in and out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from agent.api.keys import ProfileKey
from agent.api.pod_refs import profiles_used_by, recordings_used_by

GATE: Final = "seccompsync.io/profiles-ready"
NODE_NAME_FIELD: Final = "metadata.name"
HOSTNAME_LABEL: Final = "kubernetes.io/hostname"


@dataclass(frozen=True)
class GatedPod:
    """A pod that still carries our scheduling gate."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    created: float  # Unix time of metadata.creationTimestamp
    profiles: frozenset[ProfileKey]
    gates: tuple[str, ...]  # every gate it carries, ours included, in order
    affinity: Mapping[str, Any] | None  # spec.affinity as it is
    # The only nodes it may run on, when its spec pins it by node name (a DaemonSet's pod):
    # None when the spec allows any node that matches labels we do not evaluate.
    pinned_nodes: frozenset[str] | None
    # The in-cluster recordings whose recording profile it names (agent.api.recording).
    recordings: frozenset[ProfileKey] = frozenset()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def gated_pod(pod: Mapping[str, Any]) -> GatedPod | None:
    """The pod as the gate handler sees it, or None when it does not carry our gate."""
    spec = pod.get("spec") or {}
    gates = tuple(str(g.get("name", "")) for g in spec.get("schedulingGates") or [])
    if GATE not in gates or spec.get("nodeName"):
        return None
    meta = pod.get("metadata") or {}
    return GatedPod(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        created=_timestamp(meta.get("creationTimestamp")),
        profiles=profiles_used_by(pod),
        gates=gates,
        affinity=spec.get("affinity"),
        pinned_nodes=_pinned_nodes(spec),
        recordings=recordings_used_by(pod),
    )


def _pinned_nodes(spec: Mapping[str, Any]) -> frozenset[str] | None:
    pinned: set[str] | None = None
    hostname = (spec.get("nodeSelector") or {}).get(HOSTNAME_LABEL)
    if hostname:
        # Node names and hostname labels agree on every kubelet that does not override it.
        pinned = {str(hostname)}
    terms = _required_terms(spec.get("affinity"))
    if terms:
        allowed: set[str] = set()
        for term in terms:
            names = _names_in(term)
            if names is None:  # one term allows nodes by labels: not pinned by name
                return None if pinned is None else frozenset(pinned)
            allowed |= names
        pinned = allowed if pinned is None else pinned & allowed
    return None if pinned is None else frozenset(pinned)


def _names_in(term: Mapping[str, Any]) -> set[str] | None:
    names: set[str] | None = None
    for requirement in term.get("matchFields") or []:
        if requirement.get("key") == NODE_NAME_FIELD and requirement.get("operator") == "In":
            values = {str(v) for v in requirement.get("values") or []}
            names = values if names is None else names & values
    return names


def _required_terms(affinity: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    node_affinity = (affinity or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    return list(required.get("nodeSelectorTerms") or [])


def _timestamp(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0


def release_patch(pod: GatedPod, exclude: frozenset[str]) -> list[dict[str, Any]]:
    """One JSON patch that removes our gate and, when nodes lag, narrows the required node
    affinity so that the pod can never land on them.

    The `test` makes it apply only to the version of the pod this decision was made on. On a
    gated pod the API server allows adding requirements to each existing term (never changing
    one); a node-name field selector with `In` takes one value, so exclusions are one `NotIn`
    requirement ANDed into every term.
    """
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": pod.resource_version}
    ]
    if exclude:
        ops += _narrowing_ops(pod.affinity, sorted(exclude))
    remaining = [{"name": g} for g in pod.gates if g != GATE]
    if remaining:
        ops.append({"op": "replace", "path": "/spec/schedulingGates", "value": remaining})
    else:
        ops.append({"op": "remove", "path": "/spec/schedulingGates"})
    return ops


def _narrowing_ops(affinity: Mapping[str, Any] | None, exclude: list[str]) -> list[dict[str, Any]]:
    requirement = {"key": NODE_NAME_FIELD, "operator": "NotIn", "values": exclude}
    required = {"nodeSelectorTerms": [{"matchFields": [requirement]}]}
    if affinity is None:
        return [
            {
                "op": "add",
                "path": "/spec/affinity",
                "value": {
                    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}
                },
            }
        ]
    node_affinity = affinity.get("nodeAffinity")
    if node_affinity is None:
        return [
            {
                "op": "add",
                "path": "/spec/affinity/nodeAffinity",
                "value": {"requiredDuringSchedulingIgnoredDuringExecution": required},
            }
        ]
    base = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"
    terms = _required_terms(affinity)
    if not terms:
        return [{"op": "add", "path": base, "value": required}]
    ops: list[dict[str, Any]] = []
    for index, term in enumerate(terms):
        path = f"{base}/nodeSelectorTerms/{index}/matchFields"
        if term.get("matchFields"):
            ops.append({"op": "add", "path": f"{path}/-", "value": requirement})
        else:
            ops.append({"op": "add", "path": path, "value": [requirement]})
    return ops

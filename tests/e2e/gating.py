"""The scheduling gate of deploy/base/admission.yaml on a real cluster: is it applied, and
turning its binding off for a test that must see what happens without it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from tests.cluster.pytest_plugin import Cluster
from tests.e2e import pods

GATE = "seccompsync.io/profiles-ready"
BINDING = "mutatingadmissionpolicybinding/seccomp-sync-profiles-ready"
# Posted by the controller on a pod it keeps gated (agent/controller/gates.py).
WAITING_REASON = "SeccompProfileNotReady"
# What the API server sets on a pod's metadata, never part of what one applies.
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def gates_of(obj: dict[str, Any]) -> list[str]:
    return [g["name"] for g in obj["spec"].get("schedulingGates") or []]


def new_pod_is_gated(cluster: Cluster, namespace: str, node_name: str) -> bool:
    """Whether a pod naming a seccomp-sync profile, created now, gets the gate (server-side
    dry run: the admission policies run, nothing is stored)."""
    manifest = pods.probe_pod("gate-probe", node_name, f"seccomp-sync/{namespace}/x.json")
    result = cluster.kubectl(
        "-n", namespace, "create", "--dry-run=server", "-o", "json", "-f", "-",
        input=json.dumps(manifest), check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"dry-run pod creation failed: {result.stderr}")
    return GATE in gates_of(json.loads(result.stdout))


@contextlib.contextmanager
def binding_removed(cluster: Cluster, namespace: str, node_name: str) -> Iterator[None]:
    """Without the MutatingAdmissionPolicyBinding (if deployed): pods are not gated meanwhile.
    The binding is put back as it was afterwards. Both changes reach the API server's admission
    asynchronously, so each waits until a new pod really is (not) gated."""
    out = cluster.kubectl("get", BINDING, "-o", "json", "--ignore-not-found").stdout
    saved: dict[str, Any] | None = json.loads(out) if out.strip() else None
    if saved is not None:
        cluster.kubectl("delete", BINDING, "--wait=true")
    pods.poll(
        lambda: not new_pod_is_gated(cluster, namespace, node_name),
        60,
        "pods to be admitted without the scheduling gate",
        interval=0.5,
    )
    try:
        yield
    finally:
        if saved is not None:
            for field in _SERVER_FIELDS:
                saved["metadata"].pop(field, None)
            saved.pop("status", None)
            cluster.kubectl("create", "-f", "-", input=json.dumps(saved))
            pods.poll(
                lambda: new_pod_is_gated(cluster, namespace, node_name),
                60,
                "the scheduling gate to apply again",
                interval=0.5,
            )

"""Fake Node objects: what a kubelet would register, without a kubelet behind them; and the
reports of simulated agents, written by the agent's own report writer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.api.keys import ProfileKey
from agent.api.node_report import NodeProfileStatus, NodeState, build_status
from agent.node.report_writer import NodeStatusPublisher
from tests.cluster.pytest_plugin import Cluster

STARTUP_TAINT = client.V1Taint(key="seccompsync.io/agent-not-ready", effect="NoSchedule")


def ready_status() -> client.V1NodeStatus:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    resources = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    return client.V1NodeStatus(
        capacity=resources,
        allocatable=resources,
        conditions=[
            client.V1NodeCondition(
                type="Ready",
                status="True",
                reason="KubeletReady",
                message="fake node, no kubelet",
                last_heartbeat_time=now,
                last_transition_time=now,
            )
        ],
    )


def register_node(
    cluster: Cluster, name: str, startup_taint: bool = False, labels: dict[str, str] | None = None
) -> None:
    """Create a schedulable, Ready Node (idempotent), optionally with the startup taint."""
    core = client.CoreV1Api(cluster.api_client())
    body = client.V1Node(
        metadata=client.V1ObjectMeta(
            name=name, labels={"kubernetes.io/hostname": name, **(labels or {})}
        ),
        spec=client.V1NodeSpec(taints=[STARTUP_TAINT] if startup_taint else None),
    )
    try:
        core.create_node(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    # As a kubelet would: through the status subresource (a patch, so controllers that
    # annotate the Node meanwhile cause no conflict).
    status = cluster.api_client().sanitize_for_serialization(ready_status())
    core.patch_node_status(name, {"status": status})


def delete_node(cluster: Cluster, name: str) -> None:
    core = client.CoreV1Api(cluster.api_client())
    try:
        core.delete_node(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def publish_report(
    cluster: Cluster, node: str, architecture: str, installed: Mapping[ProfileKey, str]
) -> None:
    """Write `node`'s SeccompNodeStatus as its agent would, synced, with `installed` (key ->
    sha256 of the file on disk) on a node of `architecture`: the agent's own report code and
    writer (created owned by the Node when there is one, patched after)."""
    statuses = [
        (key, NodeProfileStatus(NodeState.INSTALLED, sha256=sha)) for key, sha in installed.items()
    ]
    status: dict[str, Any] = build_status(node, True, statuses, architecture)

    async def publish() -> None:
        api = cluster.api_client()
        publisher = NodeStatusPublisher(api, node, lambda: status)
        publisher.changed()
        deadline = time.monotonic() + 20
        while publisher.writes == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"the report of {node} was not written in 20 s")
            await asyncio.sleep(0.1)

    asyncio.run(publish())


def node_report(cluster: Cluster, node: str) -> dict[str, Any] | None:
    """The node's SeccompNodeStatus as `kubectl get -o json` shows it; None when it has none."""
    result = cluster.kubectl("get", "seccompnodestatus", node, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def recording_part(cluster: Cluster, node: str, key: ProfileKey) -> dict[str, Any] | None:
    """What this node's agent published for the recording `key` (its report's
    `status.recordings` entry); None when it published nothing for it."""
    status = (node_report(cluster, node) or {}).get("status") or {}
    for part in status.get("recordings") or []:
        if part.get("recording") == str(key):
            found: dict[str, Any] = part
            return found
    return None


def recorded_names(part: dict[str, Any] | None) -> set[str]:
    """Every syscall name of a recording part's containers."""
    return {name for c in (part or {}).get("containers") or [] for name in c["syscalls"]}

"""An agent that starts announces its node without hiding what a previous agent reported.

On the real API server: the report a restarted, upgraded or rolled-back agent finds is left as
it is until its own initial sync replaces it (the files it lists are still on disk), and a node
without a report gets one at once, so the controller counts it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.api.node_report import NodeProfileStatus, NodeState, build_status
from agent.node.report_writer import NodeStatusPublisher
from tests.cluster.pytest_plugin import Cluster
from tests.integration.nodes import delete_node, register_node

pytestmark = pytest.mark.cluster

NOT_SYNCED = build_status("unused", False, [])


@pytest.fixture
def node_name(crd: Cluster) -> Iterator[str]:
    name = f"announce-{uuid.uuid4().hex[:6]}"
    register_node(crd, name)
    yield name
    delete_node(crd, name)
    crd.kubectl("delete", "seccompnodestatus", name, "--ignore-not-found")


def report(cluster: Cluster, node: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", "seccompnodestatus", node, "-o", "json", check=False).stdout
    return json.loads(out) if out else None


def announce(cluster: Cluster, node: str) -> None:
    async def run() -> None:
        with cluster.api_client() as api:
            status = {**NOT_SYNCED, "nodeName": node}
            await NodeStatusPublisher(api, node, lambda: status).announce()

    asyncio.run(run())


def test_a_new_node_is_reported_at_once_as_not_synced(crd: Cluster, node_name: str) -> None:
    assert report(crd, node_name) is None
    announce(crd, node_name)
    created = report(crd, node_name)
    assert created is not None
    assert created["status"]["synced"] is False
    assert created["metadata"]["ownerReferences"][0]["name"] == node_name


def test_the_previous_agents_report_stays_until_the_initial_sync(
    crd: Cluster, node_name: str
) -> None:
    key = ProfileKey("team", "web")
    previous = build_status(
        node_name, True, [(key, NodeProfileStatus(NodeState.INSTALLED, "ab" * 32))]
    )
    crd.kubectl(
        "create", "-f", "-",
        input=json.dumps({
            "apiVersion": "seccompsync.io/v1alpha1", "kind": "SeccompNodeStatus",
            "metadata": {"name": node_name}, "status": previous,
        }),
    )  # fmt: skip
    before = report(crd, node_name)
    assert before is not None and before["status"]["synced"] is True

    announce(crd, node_name)
    after = report(crd, node_name)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"]["synced"] is True
    assert after["status"]["installed"] == [f"team/web@{'ab' * 6}"]

"""An agent that starts announces its node without hiding what a previous agent reported.

On the real API server: the report a restarted, upgraded or rolled-back agent finds is left as
it is until its own initial sync replaces it (the files it lists are still on disk), and a node
without a report gets one at once, so the controller counts it. A report left by an earlier
Node of the same name is replaced, and a report deleted while the agent runs is written again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.api.node_report import NodeProfileStatus, NodeState, build_status
from agent.api.recording import NodeRecording
from agent.node.recording_watch import NodePartPublisher
from agent.node.report_writer import NodeStatusPublisher
from tests.cluster.pytest_plugin import Cluster
from tests.integration.nodes import delete_node, node_report, register_node

pytestmark = pytest.mark.cluster

NOT_SYNCED = build_status("unused", False, [])
# Long enough for the garbage collector to delete a report whose owner is gone (it takes well
# under a second on this control plane; see test_control_plane).
GARBAGE_COLLECTOR_SECONDS = 5.0


@pytest.fixture
def node_name(crd: Cluster) -> Iterator[str]:
    name = f"announce-{uuid.uuid4().hex[:6]}"
    register_node(crd, name)
    yield name
    delete_node(crd, name)
    crd.kubectl("delete", "seccompnodestatus", name, "--ignore-not-found")


def announce(cluster: Cluster, node: str) -> None:
    async def run() -> None:
        with cluster.api_client() as api:
            status = {**NOT_SYNCED, "nodeName": node}
            await NodeStatusPublisher(api, node, lambda: status).announce()

    asyncio.run(run())


def test_a_new_node_is_reported_at_once_as_not_synced(crd: Cluster, node_name: str) -> None:
    assert node_report(crd, node_name) is None
    announce(crd, node_name)
    created = node_report(crd, node_name)
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
    before = node_report(crd, node_name)
    assert before is not None and before["status"]["synced"] is True

    announce(crd, node_name)
    after = node_report(crd, node_name)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"]["synced"] is True
    assert after["status"]["installed"] == [f"team/web@{'ab' * 6}"]


def node_uid(cluster: Cluster, node: str) -> str:
    return str(cluster.kubectl("get", "node", node, "-o", "jsonpath={.metadata.uid}").stdout)


def owner_uids(body: dict[str, Any]) -> list[str]:
    return [o["uid"] for o in body["metadata"].get("ownerReferences") or []]


def test_a_report_left_by_an_earlier_node_of_the_same_name_is_replaced(
    crd: Cluster, node_name: str
) -> None:
    """A Node deleted and registered again under its name (a machine replaced, a kubelet that
    re-registered): the old report, owned by the old Node, waits for the garbage collector.
    The new agent must not keep it as its own, or the collector deletes it afterwards and the
    node has no report at all."""
    earlier = node_uid(crd, node_name)
    key = ProfileKey("team", "web")
    previous = build_status(
        node_name, True, [(key, NodeProfileStatus(NodeState.INSTALLED, "ab" * 32))]
    )
    owner = {"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": earlier}
    crd.kubectl(
        "create", "-f", "-",
        input=json.dumps({
            "apiVersion": "seccompsync.io/v1beta1", "kind": "SeccompNodeStatus",
            "metadata": {"name": node_name, "ownerReferences": [owner]}, "status": previous,
        }),
    )  # fmt: skip
    delete_node(crd, node_name)
    register_node(crd, node_name)
    current = node_uid(crd, node_name)
    assert current != earlier

    announce(crd, node_name)

    replaced = node_report(crd, node_name)
    assert replaced is not None
    assert owner_uids(replaced) == [current]
    assert replaced["status"]["synced"] is False  # this Node's agent has not synced yet
    assert not replaced["status"].get("installed")  # nothing of the earlier Node's list
    # The collector has had its chance at the old report: this one is owned and stays.
    time.sleep(GARBAGE_COLLECTOR_SECONDS)
    kept = node_report(crd, node_name)
    assert kept is not None and owner_uids(kept) == [current]


def test_a_deleted_report_is_written_again(crd: Cluster, node_name: str) -> None:
    """Someone (or something) deletes the node's report while the agent runs: the agent's
    periodic read-back writes it again, though nothing on the node changed."""

    async def run() -> dict[str, Any] | None:
        with crd.api_client() as api:
            status = {**NOT_SYNCED, "nodeName": node_name}
            publisher = NodeStatusPublisher(api, node_name, lambda: status)
            await publisher.announce()
            assert node_report(crd, node_name) is not None
            keeper = asyncio.create_task(publisher.keep(0.5))
            try:
                await asyncio.to_thread(
                    crd.kubectl, "delete", "seccompnodestatus", node_name, "--wait=true"
                )
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    found = await asyncio.to_thread(node_report, crd, node_name)
                    if found is not None:
                        return found
                return None
            finally:
                keeper.cancel()

    written = asyncio.run(run())
    assert written is not None, "the deleted report was not written again within 20 s"
    assert written["status"]["synced"] is False
    assert owner_uids(written) == [node_uid(crd, node_name)]


def test_the_recorded_part_brings_back_a_missing_report(crd: Cluster, node_name: str) -> None:
    """The recorded part is a patch of the node's report; when that report is missing the
    patch cannot land until the report is written again, which the part asks for."""
    part = NodeRecording(
        recording=ProfileKey("shop", "web"),
        uid="u1",
        ready=True,
        pods=frozenset({"shop/web-1"}),
        syscalls={"web": frozenset({"mkdir"})},
        architectures=frozenset({"SCMP_ARCH_X86_64"}),
    )

    async def run() -> dict[str, Any] | None:
        with crd.api_client() as api:
            status = {**NOT_SYNCED, "nodeName": node_name}
            reports = NodeStatusPublisher(api, node_name, lambda: status)
            parts = NodePartPublisher(
                api, node_name, lambda: [part], lambda _: None, report_lost=reports.lost
            )
            task = asyncio.create_task(parts.run())
            try:
                parts.changed()
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    found = await asyncio.to_thread(node_report, crd, node_name)
                    if found is not None and found["status"].get("recordings"):
                        return found
                return None
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    written = asyncio.run(run())
    assert written is not None, "no report with the recorded part within 20 s"
    (entry,) = written["status"]["recordings"]
    assert entry["recording"] == "shop/web"
    assert written["status"]["synced"] is False
    assert owner_uids(written) == [node_uid(crd, node_name)]

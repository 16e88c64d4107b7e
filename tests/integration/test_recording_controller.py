"""In-cluster recording, the controller's part, on the real API server: a real controller process
merges the nodes' parts (written into real SeccompNodeStatus objects as the agents write them,
with `build_node_recordings`) into the SeccompProfileRecording's status, writes the results
when it stops or is deleted, and holds a recording pod until its node reports the recording
ready. No kubelet: the nodes are fake Node objects."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.api.recording import DegradedPod, NodeRecording, build_node_recordings
from agent.controller.recordings import FINALIZER, RECORDING_LABEL
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import wait_for
from tests.integration.controller import ControllerProcess, running_controller
from tests.integration.nodes import delete_node, register_node
from tests.integration.test_recording_admission import (
    GATE,
    create,
    pod,
    recording,
    recording_policy,  # noqa: F401 - a fixture
    settle,
)

pytestmark = pytest.mark.cluster


def node_status(
    node: str, parts: list[NodeRecording], architecture: str = "SCMP_ARCH_X86_64"
) -> dict[str, Any]:
    """A node's report as its agent writes it: synced, no profiles, its recording parts."""
    return {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompNodeStatus",
        "metadata": {"name": node},
        "status": {
            "nodeName": node,
            "architecture": architecture,
            "synced": True,
            "counts": {"installed": 0, "invalid": 0, "pending": 0, "terminating": 0},
            "installed": [],
            "problems": [],
            "recordings": build_node_recordings(parts),
        },
    }


def publish(cluster: Cluster, node: str, parts: list[NodeRecording]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(node_status(node, parts)))


def get(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def status_of(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return (get(cluster, namespace, "scmprec", "web") or {}).get("status") or {}


def events_about(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"involvedObject.kind=SeccompProfileRecording,involvedObject.name={name}",
        "-o",
        "json",
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def uid_of(cluster: Cluster, namespace: str) -> str:
    found = get(cluster, namespace, "scmprec", "web")
    assert found is not None
    return str(found["metadata"]["uid"])


@pytest.fixture
def nodes(crd: Cluster) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:6]
    names = (f"rec-a-{suffix}", f"rec-b-{suffix}")
    for name in names:
        register_node(crd, name)
    yield names
    for name in names:
        crd.kubectl("delete", "seccompnodestatus", name, "--ignore-not-found")
        delete_node(crd, name)


@pytest.fixture
def controller(crd: Cluster, namespace: str, tmp_path: Path) -> Iterator[ControllerProcess]:
    with running_controller(crd, namespace, tmp_path / "controller.log") as running:
        wait_for(running.leading, timeout=30, what="the controller to lead")
        yield running


def parts_from_two_nodes(
    cluster: Cluster, namespace: str, nodes: tuple[str, str], degraded: bool = False
) -> None:
    key = ProfileKey(namespace, "web")
    uid = uid_of(cluster, namespace)
    cut = (DegradedPod(f"{namespace}/web-2", "web", "RecorderRestarted"),) if degraded else ()
    arch = frozenset({"SCMP_ARCH_X86_64"})
    publish(
        cluster,
        nodes[0],
        [
            NodeRecording(
                key,
                uid,
                True,
                frozenset({f"{namespace}/web-1"}),
                {"web": frozenset({"read", "openat", "accept4"})},
                arch,
            ),
            # An earlier recording of the same name: not this one's.
            NodeRecording(key, "old-uid", True, frozenset({"x/y"}), {"web": frozenset({"mount"})}),
        ],
    )
    publish(
        cluster,
        nodes[1],
        [
            NodeRecording(
                key,
                uid,
                True,
                frozenset({f"{namespace}/web-2"}),
                {"web": frozenset({"read", "sendfile"}), "side": frozenset({"nanosleep"})},
                arch,
                cut,
            )
        ],
    )


def test_parts_from_two_nodes_are_merged_and_stopping_writes_the_results(
    crd: Cluster, namespace: str, nodes: tuple[str, str], controller: ControllerProcess
) -> None:
    create(crd, recording(namespace, "web"))
    wait_for(
        lambda: (
            FINALIZER
            in (get(crd, namespace, "scmprec", "web") or {})["metadata"].get("finalizers", [])
        ),
        what="the controller to add its finalizer",
    )
    parts_from_two_nodes(crd, namespace, nodes)
    wait_for(
        lambda: status_of(crd, namespace).get("podsSeen") == 2,
        what=f"the merged status\n{controller.log_tail()}",
    )
    status = status_of(crd, namespace)
    assert status["phase"] == "Recording"
    assert (status["nodesSeen"], status["syscallsCounted"]) == (2, 5)
    assert status["containers"] == [
        {"name": "side", "syscalls": ["nanosleep"]},
        {"name": "web", "syscalls": ["accept4", "openat", "read", "sendfile"]},
    ]
    [ready] = [c for c in status["conditions"] if c["type"] == "NodesReady"]
    assert ready["status"] == "True", ready
    table = crd.kubectl("get", "scmprec", "-n", namespace).stdout.split("\n")[1].split()
    assert table[:5] == ["web", "Recording", "2", "2", "5"]

    crd.kubectl("patch", "scmprec", "web", "-n", namespace, "--type=merge", "-p",
                '{"spec": {"active": false}}')  # fmt: skip
    wait_for(
        lambda: status_of(crd, namespace).get("phase") == "Completed",
        what=f"the results written\n{controller.log_tail()}",
    )
    assert status_of(crd, namespace)["profiles"] == ["web-side", "web-web"]
    result = get(crd, namespace, "seccompprofile", "web-web")
    assert result is not None
    assert result["metadata"]["labels"][RECORDING_LABEL] == "web"
    spec = result["spec"]
    assert spec["defaultAction"] == "SCMP_ACT_ERRNO" and spec["defaultErrnoRet"] == 1
    [rule] = spec["syscalls"]
    assert rule["action"] == "SCMP_ACT_ALLOW"
    assert {"read", "openat", "accept4", "sendfile", "write", "execve"} <= set(rule["names"])
    assert "mount" not in rule["names"]
    # The result is a profile like any other: the API server validated it on the way in.
    side = get(crd, namespace, "seccompprofile", "web-side")
    assert side is not None and "nanosleep" in side["spec"]["syscalls"][0]["names"]


def test_deleting_writes_the_results_and_removes_the_finalizer(
    crd: Cluster, namespace: str, nodes: tuple[str, str], controller: ControllerProcess
) -> None:
    create(crd, recording(namespace, "web", profileNamePrefix="gone"))
    parts_from_two_nodes(crd, namespace, nodes)
    wait_for(lambda: status_of(crd, namespace).get("podsSeen") == 2, what="the merged status")
    crd.kubectl("delete", "scmprec", "web", "-n", namespace, "--timeout=30s")
    assert get(crd, namespace, "scmprec", "web") is None
    result = get(crd, namespace, "seccompprofile", "gone-web")
    assert result is not None
    assert "sendfile" in result["spec"]["syscalls"][0]["names"]


def test_degraded_parts_make_it_degraded_with_an_event_naming_the_pods(
    crd: Cluster, namespace: str, nodes: tuple[str, str], controller: ControllerProcess
) -> None:
    create(crd, recording(namespace, "web"))
    parts_from_two_nodes(crd, namespace, nodes, degraded=True)
    wait_for(lambda: status_of(crd, namespace).get("phase") == "Degraded", what="Degraded")
    [condition] = [c for c in status_of(crd, namespace)["conditions"] if c["type"] == "Degraded"]
    assert condition["status"] == "True" and f"{namespace}/web-2" in condition["message"]
    wait_for(lambda: events_about(crd, namespace, "web"), what="the Event")
    [event] = events_about(crd, namespace, "web")
    assert event["reason"] == "RecordingDegraded"
    assert f"{namespace}/web-2 container web on {nodes[1]}: RecorderRestarted" in event["message"]
    described = crd.kubectl("describe", "scmprec", "web", "-n", namespace).stdout
    assert "RecordingDegraded" in described


def test_an_existing_unrelated_profile_is_not_overwritten(
    crd: Cluster, namespace: str, nodes: tuple[str, str], controller: ControllerProcess
) -> None:
    theirs = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": "web-web", "namespace": namespace},
        "spec": {"defaultAction": "SCMP_ACT_LOG"},
    }
    create(crd, theirs)
    create(crd, recording(namespace, "web"))
    parts_from_two_nodes(crd, namespace, nodes)
    wait_for(lambda: status_of(crd, namespace).get("podsSeen") == 2, what="the merged status")
    crd.kubectl("patch", "scmprec", "web", "-n", namespace, "--type=merge", "-p",
                '{"spec": {"active": false}}')  # fmt: skip
    wait_for(
        lambda: any(
            c["type"] == "ResultsWritten" and c["reason"] == "ProfileExists"
            for c in status_of(crd, namespace).get("conditions", [])
        ),
        what=f"the refusal in the status\n{controller.log_tail()}",
    )
    status = status_of(crd, namespace)
    assert status["phase"] == "Stopped"
    assert status["profiles"] == ["web-side"]
    kept = get(crd, namespace, "seccompprofile", "web-web")
    assert kept is not None and kept["spec"] == {"defaultAction": "SCMP_ACT_LOG"}
    wait_for(lambda: events_about(crd, namespace, "web"), what="the Event")
    assert [e["reason"] for e in events_about(crd, namespace, "web")] == ["ProfileExists"]


def test_the_gate_holds_a_recording_pod_until_its_node_reports_the_recording_ready(
    recording_policy: Cluster,  # noqa: F811 - the fixture
    namespace: str,
    nodes: tuple[str, str],
    controller: ControllerProcess,
) -> None:
    cluster = recording_policy
    create(cluster, recording(namespace, "web"))
    settle(cluster, namespace)
    key = ProfileKey(namespace, "web")
    uid = uid_of(cluster, namespace)
    for node in nodes:
        publish(cluster, node, [NodeRecording(key, uid, False)])
    create(cluster, pod(namespace, "web-1", {"app": "web"}))

    def gates() -> list[str]:
        found = get(cluster, namespace, "pod", "web-1")
        assert found is not None
        return [g["name"] for g in found["spec"].get("schedulingGates") or []]

    assert GATE in gates()
    # Neither node is ready: the pod stays gated (checked over several controller passes).
    with pytest.raises(AssertionError):
        wait_for(lambda: GATE not in gates(), timeout=3, what="a release")
    for node in nodes:
        publish(cluster, node, [NodeRecording(key, uid, True)])
    wait_for(lambda: GATE not in gates(), what=f"the release\n{controller.log_tail()}")

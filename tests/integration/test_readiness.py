"""Readiness a deploy can rely on, with the real scheduler and controller-manager.

Agents run as processes, one per fake Node, each with its own root; a controller process (with
its Lease in the test's namespace) aggregates their reports into each profile's status.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import AgentProcess, running_agent, wait_for
from tests.integration.conftest import apply_profile, delete_profile
from tests.integration.controller import running_controller
from tests.integration.nodes import delete_node, node_report, register_node

pytestmark = pytest.mark.cluster

DENY_MKDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
}


@pytest.fixture
def nodes(crd: Cluster) -> Iterator[tuple[str, str]]:
    """Two fresh node names; node statuses left by earlier tests are cleared first, so the
    expected nodes are exactly the agents this test runs."""
    suffix = uuid.uuid4().hex[:6]
    names = (f"node-a-{suffix}", f"node-b-{suffix}")
    crd.kubectl("delete", "seccompnodestatuses", "--all", "--wait=true")
    yield names
    for name in names:
        delete_node(crd, name)


@pytest.fixture(autouse=True)
def controller(crd: Cluster, namespace: str, tmp_path: Path) -> Iterator[None]:
    with running_controller(crd, namespace, tmp_path / "controller.log"):
        yield


def agent_args(namespace: str) -> tuple[str, ...]:
    return ("--namespace", namespace)


def profile(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "seccompprofile", name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out))


def status_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(profile(cluster, namespace, name).get("status") or {})


def node_status(cluster: Cluster, node: str) -> dict[str, Any] | None:
    report = node_report(cluster, node)
    return None if report is None else dict(report["status"])


def test_kubectl_wait_for_ready_once_every_node_has_it(
    crd: Cluster, namespace: str, nodes: tuple[str, str], tmp_path: Path
) -> None:
    with ExitStack() as stack:
        for node in nodes:
            stack.enter_context(
                running_agent(
                    crd, node, tmp_path / node, tmp_path / f"{node}.log", *agent_args(namespace)
                )
            )
        apply_profile(crd, namespace, "web", DENY_MKDIR)
        waited = crd.kubectl(
            "wait", "--for=condition=Ready", "seccompprofile/web", "-n", namespace, "--timeout=60s"
        )
        assert "condition met" in waited.stdout
        status = status_of(crd, namespace, "web")
        assert status["readyNodes"] == "2/2"
        assert status["state"] == "Installed"
        assert status["localhostProfile"] == "seccomp-sync/" + namespace + "/web.json"
        for node in nodes:
            assert (tmp_path / node / "seccomp-sync" / namespace / "web.json").exists()
        table = crd.kubectl("get", "seccompprofiles", "-n", namespace).stdout
        header, row = table.splitlines()
        assert header.split() == ["NAME", "STATUS", "READY", "WAITING", "AGE", "PROFILE"]
        assert row.split()[:4] == ["web", "Installed", "2/2", "0"]


def test_invalid_profile_is_not_ready_and_says_where_and_why(
    crd: Cluster, namespace: str, nodes: tuple[str, str], tmp_path: Path
) -> None:
    typo = {**DENY_MKDIR, "syscalls": [{"names": ["mkdir", "opne"], "action": "SCMP_ACT_ERRNO"}]}
    with ExitStack() as stack:
        for node in nodes:
            stack.enter_context(
                running_agent(
                    crd, node, tmp_path / node, tmp_path / f"{node}.log", *agent_args(namespace)
                )
            )
        apply_profile(crd, namespace, "bad", typo)

        def invalid_on_every_node() -> dict[str, Any] | None:
            status = status_of(crd, namespace, "bad")
            reasons = [f["reason"] for f in status.get("failingNodes", [])]
            everywhere = len(reasons) == len(nodes) and set(reasons) == {"UnknownSyscall"}
            return status if status.get("state") == "Invalid" and everywhere else None

        status = wait_for(invalid_on_every_node, timeout=30, what="Invalid on both nodes")
        (condition,) = status["conditions"]
        assert condition["status"] == "False"
        assert condition["reason"] == "Invalid"
        assert "spec.syscalls[0].names[1]" in condition["message"]
        assert "`opne` is not a Linux syscall" in condition["message"]
        assert {f["node"] for f in status["failingNodes"]} == set(nodes)
        assert {f["reason"] for f in status["failingNodes"]} == {"UnknownSyscall"}
        for node in nodes:
            report = node_status(crd, node)
            assert report is not None
            assert report["counts"]["invalid"] == 1
            assert report["problems"][0]["profile"] == f"{namespace}/bad"


def test_a_stopped_agent_blocks_new_profiles_until_its_node_is_deleted(
    crd: Cluster, namespace: str, nodes: tuple[str, str], tmp_path: Path
) -> None:
    node_a, node_b = nodes
    with running_agent(crd, node_a, tmp_path / "a", tmp_path / "a.log", *agent_args(namespace)):
        register_node(crd, node_b)
        agent_b = AgentProcess(
            crd, node_b, tmp_path / "b", tmp_path / "b.log", *agent_args(namespace)
        ).start()
        agent_b.wait_ready()
        wait_for(lambda: node_status(crd, node_b), what="node-b's status object")
        agent_b.stop()

        apply_profile(crd, namespace, "late", DENY_MKDIR)
        wait_for(
            lambda: status_of(crd, namespace, "late").get("readyNodes") == "1/2",
            timeout=30,
            what="1/2 while node-b's agent is down",
        )
        status = status_of(crd, namespace, "late")
        assert status["state"] == "Partial"
        assert status["conditions"][0]["status"] == "False"
        assert status["failingNodes"][0]["node"] == node_b

        delete_node(crd, node_b)
        # The garbage collector removes the node's status (owned by the Node) ...
        wait_for(
            lambda: node_status(crd, node_b) is None,
            timeout=30,
            what="node-b's SeccompNodeStatus garbage-collected",
        )
        # ... and the profile no longer waits for a node that is gone.
        crd.kubectl(
            "wait", "--for=condition=Ready", "seccompprofile/late", "-n", namespace, "--timeout=30s"
        )
        assert status_of(crd, namespace, "late")["readyNodes"] == "1/1"


def test_scheduler_places_pods_only_where_the_agent_removed_the_startup_taint(
    crd: Cluster, namespace: str, nodes: tuple[str, str], tmp_path: Path
) -> None:
    node_a, node_b = nodes
    group = {"seccompsync.io/test-group": namespace}
    for node in nodes:
        register_node(crd, node, startup_taint=True, labels=group)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {"nodeSelector": group, "containers": [{"name": "app", "image": "pause"}]},
    }
    crd.kubectl("apply", "-f", "-", input=json.dumps(pod))
    time.sleep(3)
    node_name = crd.kubectl(
        "get", "pod", "app", "-n", namespace, "-o", "jsonpath={.spec.nodeName}"
    ).stdout
    assert node_name == "", "the pod was scheduled while every node still had the taint"

    agent = AgentProcess(
        crd,
        node_a,
        tmp_path / "a",
        tmp_path / "a.log",
        *agent_args(namespace),
        "--remove-startup-taint",
    ).start()
    try:
        agent.wait_ready()

        def bound() -> str:
            return crd.kubectl(
                "get", "pod", "app", "-n", namespace, "-o", "jsonpath={.spec.nodeName}"
            ).stdout

        assert wait_for(bound, timeout=60, what="pod bound") == node_a
        taints = crd.kubectl("get", "node", node_b, "-o", "jsonpath={.spec.taints[*].key}")
        assert "seccompsync.io/agent-not-ready" in taints.stdout
    finally:
        agent.stop()
        crd.kubectl(
            "delete", "pod", "app", "-n", namespace, "--grace-period=0", "--force", check=False
        )


def test_a_deleted_profile_stays_while_a_pod_on_the_node_uses_it(
    crd: Cluster, namespace: str, nodes: tuple[str, str], tmp_path: Path
) -> None:
    node_a, _ = nodes
    with running_agent(
        crd, node_a, tmp_path / "a", tmp_path / "a.log", *agent_args(namespace)
    ) as agent:
        apply_profile(crd, namespace, "used", DENY_MKDIR)
        path = agent.profile_path(namespace, "used")
        wait_for(path.exists, what="profile on disk")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "user", "namespace": namespace},
            "spec": {
                "nodeName": node_a,  # bound already, as the scheduler would
                "containers": [
                    {
                        "name": "app",
                        "image": "pause",
                        "securityContext": {
                            "seccompProfile": {
                                "type": "Localhost",
                                "localhostProfile": f"seccomp-sync/{namespace}/used.json",
                            }
                        },
                    }
                ],
            },
        }
        crd.kubectl("apply", "-f", "-", input=json.dumps(pod))
        time.sleep(1)
        delete_profile(crd, namespace, "used")

        def terminating() -> bool:
            report = node_status(crd, node_a) or {}
            return any(
                p["profile"] == f"{namespace}/used" and p["state"] == "Terminating"
                for p in report.get("problems", [])
            )

        wait_for(terminating, timeout=20, what="Terminating on the node")
        assert path.exists(), "the file must stay while a pod on the node uses it"

        crd.kubectl("delete", "pod", "user", "-n", namespace, "--grace-period=0", "--force")
        wait_for(lambda: not path.exists(), timeout=20, what="file removed once the pod is gone")


def test_readyz_is_false_until_the_initial_sync(
    crd: Cluster, namespace: str, nodes: tuple[str, str], tmp_path: Path
) -> None:
    manifest = "\n---\n".join(
        json.dumps(
            {
                "apiVersion": "seccompsync.io/v1beta1",
                "kind": "SeccompProfile",
                "metadata": {"name": f"p{i}", "namespace": namespace},
                "spec": {
                    **DENY_MKDIR,
                    "syscalls": [
                        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": i + 1}
                    ],
                },
            }
        )
        for i in range(300)
    )
    crd.kubectl("apply", "-f", "-", input=manifest, timeout=300)
    register_node(crd, nodes[0])
    agent = AgentProcess(
        crd, nodes[0], tmp_path / "a", tmp_path / "a.log", *agent_args(namespace)
    ).start()
    answers: list[int] = []
    alive_while_syncing = False
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            code = agent.http("/readyz")[0]
            if code:
                answers.append(code)
            if code == 503:
                alive_while_syncing = alive_while_syncing or agent.http("/healthz")[0] == 200
            if code == 200:
                files = list((tmp_path / "a" / "seccomp-sync" / namespace).glob("*.json"))
                assert len(files) == 300
                break
            time.sleep(0.01)
    finally:
        agent.stop()
    assert answers[0] == 503, "readyz must not say ready before the initial sync"
    assert answers[-1] == 200
    assert alive_while_syncing, "liveness must not depend on the sync"

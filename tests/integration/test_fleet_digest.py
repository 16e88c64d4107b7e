"""Compact node reports: real agents, the real controller process, the real API server.

In the steady state each agent's report names the fleet digest the controller published and
lists no profile, and every profile still counts every node; a node that lags is named, a
controller restart counts nothing it should not, and without a published digest the agents
write the full list, which counts as it always did.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.api.fleet_digest import FLEET_CONFIGMAP
from agent.api.keys import ProfileKey
from agent.seccomp.syscalls import native_architecture
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import AgentProcess, wait_for
from tests.integration.conftest import apply_profile, replace_profile
from tests.integration.controller import ControllerProcess
from tests.integration.nodes import delete_node, publish_report, register_node
from tests.integration.profiles import DENY_MKDIR
from tests.integration.test_fleet_nodes import node_sha, status_of

pytestmark = pytest.mark.cluster

PROFILES = [f"p{i}" for i in range(5)]
DENY_RMDIR = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}
ARCH = native_architecture()
GRACE = ("--grace-seconds", "600")


class Fleet:
    """Real agents on fake Nodes, started and stopped by the test; every Node and report is
    removed afterwards."""

    def __init__(self, cluster: Cluster, tmp_path: Path, fleet_namespace: str) -> None:
        self.cluster = cluster
        self.tmp_path = tmp_path
        self.fleet_namespace = fleet_namespace
        self.agents: dict[str, AgentProcess] = {}
        self.nodes: list[str] = []

    def start(self, node: str) -> AgentProcess:
        if node not in self.nodes:
            register_node(self.cluster, node)
            self.nodes.append(node)
        agent = AgentProcess(
            self.cluster,
            node,
            self.tmp_path / node,
            self.tmp_path / f"{node}-{len(self.agents)}.log",
            "--fleet-namespace",
            self.fleet_namespace,
        ).start()
        self.agents[node] = agent
        agent.wait_ready()
        return agent

    def stop(self, node: str) -> None:
        self.agents.pop(node).stop()

    def close(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        for node in self.nodes:
            delete_node(self.cluster, node)
            self.cluster.kubectl("delete", "seccompnodestatus", node, "--ignore-not-found")


@pytest.fixture
def clean(crd: Cluster) -> Cluster:
    """No report of an earlier test counts here."""
    crd.kubectl("delete", "seccompnodestatuses", "--all", "--wait=true")
    return crd


@contextmanager
def fleet_of(cluster: Cluster, tmp_path: Path, fleet_namespace: str) -> Iterator[Fleet]:
    fleet = Fleet(cluster, tmp_path, fleet_namespace)
    try:
        yield fleet
    finally:
        fleet.close()


def report(cluster: Cluster, node: str) -> dict[str, Any]:
    got = cluster.kubectl("get", "seccompnodestatus", node, "-o", "json").stdout
    return dict(json.loads(got).get("status") or {})


def published(cluster: Cluster, namespace: str) -> dict[str, str]:
    got = cluster.kubectl(
        "get", "configmap", FLEET_CONFIGMAP, "-n", namespace, "-o", "json", check=False
    )
    return dict(json.loads(got.stdout).get("data") or {}) if got.returncode == 0 else {}


def all_compact(cluster: Cluster, namespace: str, nodes: list[str]) -> bool:
    digest = published(cluster, namespace).get(ARCH)
    reports = [report(cluster, node) for node in nodes]
    return digest is not None and all(
        r.get("digest") == digest and "installed" not in r for r in reports
    )


def ready_column(cluster: Cluster, namespace: str, name: str) -> str:
    """The READY column of `kubectl get scmp` (empty before the first status)."""
    table = cluster.kubectl("get", "scmp", name, "-n", namespace).stdout
    header, row = table.splitlines()
    column = header.split().index("READY")
    cells = row.split()
    return cells[column] if len(cells) == len(header.split()) else ""


def all_ready(cluster: Cluster, namespace: str, expected: str) -> bool:
    return all(ready_column(cluster, namespace, name) == expected for name in PROFILES)


def watching(probe: Callable[[], str], seconds: float) -> list[str]:
    """What `probe` shows, sampled for `seconds`."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(probe())
        time.sleep(0.2)
    return seen


def test_compact_reports_count_every_node_through_a_change_a_lagging_node_and_a_restart(
    clean: Cluster, namespace: str, tmp_path: Path
) -> None:
    crd = clean
    suffix = uuid.uuid4().hex[:6]
    nodes = [f"dig-{i}-{suffix}" for i in range(3)]
    log = tmp_path / "controller-1.log"
    controller = ControllerProcess(crd, namespace, log, *GRACE).start()
    with ExitStack() as stack:
        stack.callback(lambda: controller.stop())
        fleet = stack.enter_context(fleet_of(crd, tmp_path, namespace))
        controller.wait_ready()
        for node in nodes:
            fleet.start(node)
        for name in PROFILES:
            apply_profile(crd, namespace, name, DENY_MKDIR)

        # The steady state: every profile on every node, and every report compact and small.
        wait_for(lambda: all_ready(crd, namespace, "3/3"), timeout=60, what="READY 3/3")
        wait_for(lambda: all_compact(crd, namespace, nodes), timeout=30, what="compact reports")
        for node in nodes:
            status = report(crd, node)
            assert len(json.dumps(status)) <= 2048, status
            assert status["problems"] == [] and status["synced"] is True

        # A node stops (its report stays, compact, at the digest before the change), and a
        # profile changes: the node is named for that profile only, and never counted for it.
        lagging = nodes[2]
        fleet.stop(lagging)
        replace_profile(crd, namespace, "p0", DENY_RMDIR)

        def p0() -> str:
            status = status_of(crd, namespace, "p0")
            return f"{status.get('observedGeneration')}:{status.get('readyNodes')}"

        shown = watching(p0, 6.0)
        assert "2:3/3" not in shown, shown
        status = wait_for(
            lambda: (s := status_of(crd, namespace, "p0")).get("readyNodes") == "2/3" and s,
            timeout=30,
            what="p0 READY 2/3",
        )
        assert [(f["node"], f["reason"]) for f in status["failingNodes"]] == [(lagging, "Outdated")]
        assert all(ready_column(crd, namespace, name) == "3/3" for name in PROFILES[1:])
        assert "installed" not in report(crd, lagging)  # judged from its digest alone

        # It comes back and catches up.
        fleet.start(lagging)
        wait_for(lambda: all_ready(crd, namespace, "3/3"), timeout=60, what="READY 3/3 again")
        wait_for(lambda: all_compact(crd, namespace, nodes), timeout=30, what="compact again")

        # A new controller (no history) counts the nodes at the digest it computes itself.
        controller.stop()
        controller = ControllerProcess(crd, namespace, tmp_path / "controller-2.log", *GRACE)
        controller.start().wait_ready()
        wait_for(controller.leading, timeout=30, what="the new controller leading")
        shown = watching(lambda: ready_column(crd, namespace, "p1"), 4.0)
        assert set(shown) == {"3/3"}, shown
        replace_profile(crd, namespace, "p1", DENY_RMDIR)
        wait_for(
            lambda: (
                status_of(crd, namespace, "p1").get("observedGeneration") == 2
                and ready_column(crd, namespace, "p1") == "3/3"
            ),
            timeout=30,
            what="p1's change counted on every node by the new controller",
        )
        wait_for(lambda: all_compact(crd, namespace, nodes), timeout=30, what="compact after")


def test_without_a_published_digest_reports_are_full_and_a_disagreeing_node_is_named(
    clean: Cluster, namespace: str, tmp_path: Path
) -> None:
    """Agents that find no digest (an older controller; here: they look in a namespace it does
    not publish in) write the full list at once, and it counts as it always did. A node that
    renders a profile differently is named for that profile."""
    crd = clean
    suffix = uuid.uuid4().hex[:6]
    nodes = [f"full-{i}-{suffix}" for i in range(2)]
    odd = f"odd-{suffix}"
    controller = ControllerProcess(crd, namespace, tmp_path / "controller.log", *GRACE).start()
    with ExitStack() as stack:
        stack.callback(controller.stop)
        fleet = stack.enter_context(fleet_of(crd, tmp_path, f"{namespace}-elsewhere"))
        controller.wait_ready()
        for node in nodes:
            fleet.start(node)
        apply_profile(crd, namespace, "p0", DENY_MKDIR)
        apply_profile(crd, namespace, "p1", DENY_RMDIR)
        wait_for(
            lambda: (
                ready_column(crd, namespace, "p0") == "2/2"
                and ready_column(crd, namespace, "p1") == "2/2"
            ),
            timeout=60,
            what="READY 2/2",
        )
        assert published(crd, namespace).get(ARCH)  # published, where the agents do not look
        for node in nodes:
            listed = report(crd, node)["installed"]
            assert any(entry.startswith(f"{namespace}/p0@") for entry in listed), listed

        # A node whose rendering of p0 differs (its own hash), p1 as everyone's.
        register_node(crd, odd)
        fleet.nodes.append(odd)
        p0, p1 = ProfileKey(namespace, "p0"), ProfileKey(namespace, "p1")
        publish_report(crd, odd, ARCH, {p0: "0" * 64, p1: node_sha(crd, namespace, "p1", ARCH)})
        status = wait_for(
            lambda: (s := status_of(crd, namespace, "p0")).get("readyNodes") == "2/3" and s,
            timeout=30,
            what="p0 READY 2/3",
        )
        assert [(f["node"], f["reason"]) for f in status["failingNodes"]] == [(odd, "Outdated")]
        wait_for(lambda: ready_column(crd, namespace, "p1") == "3/3", timeout=30, what="p1 3/3")

"""What counts as a node: its own architecture, and only a node that exists.

The real API server, scheduler and controller process; the nodes are fake Node objects whose
reports are written by the agent's own report code (`publish_report`), as an x86_64 and an
aarch64 node would write them: two architectures need two machines, which the test does not.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.cli.documents import Document
from agent.cli.local_profiles import LocalProfiles
from agent.profiles.render import render
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import wait_for
from tests.integration.conftest import apply_profile
from tests.integration.controller import ControllerProcess, running_controller
from tests.integration.nodes import delete_node, publish_report, register_node
from tests.integration.profiles import DENY_MKDIR
from tests.integration.test_gating import gates_of, gating_policy, pod

__all__ = ["gating_policy"]  # a fixture, used by name

pytestmark = pytest.mark.cluster

X86 = "SCMP_ARCH_X86_64"
ARM = "SCMP_ARCH_AARCH64"
ON_DEFAULT = {
    "baseProfileName": "runtime/default@moby-2026-06-30",
    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
}
GRACE = ("--grace-seconds", "600")  # a lagging node is waited for, never excluded, here


@pytest.fixture
def names(crd: Cluster) -> Iterator[list[str]]:
    """Node names for this test; reports left by earlier tests are cleared first, so the
    expected nodes are exactly this test's."""
    crd.kubectl("delete", "seccompnodestatuses", "--all", "--wait=true")
    created: list[str] = []
    yield created
    for name in created:
        delete_node(crd, name)
        crd.kubectl("delete", "seccompnodestatus", name, "--ignore-not-found")


@pytest.fixture
def controller(crd: Cluster, namespace: str, tmp_path: Path) -> Iterator[ControllerProcess]:
    with running_controller(crd, namespace, tmp_path / "controller.log", *GRACE) as process:
        yield process


def node_sha(cluster: Cluster, namespace: str, name: str, architecture: str) -> str:
    """What a node of `architecture` writes for the stored object (the resolution the CLI
    shares with the agent)."""
    body = json.loads(cluster.kubectl("get", "scmp", name, "-n", namespace, "-o", "json").stdout)
    document = Document("api", 0, body)
    report = LocalProfiles([document], [architecture], [], None).report(document).report
    assert report.valid and report.profile is not None, report.errors
    return render(report.profile).sha256


def status_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "scmp", name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out).get("status") or {})


def ready_column(cluster: Cluster, namespace: str, name: str) -> str:
    table = cluster.kubectl("get", "scmp", name, "-n", namespace).stdout
    header, row = table.splitlines()
    return row.split()[header.split().index("READY")]


def create_gated_pod(cluster: Cluster, namespace: str) -> None:
    spec = pod(
        namespace,
        "app",
        f"seccomp-sync/{namespace}/web.json",
        nodeSelector={"seccompsync.io/test-group": namespace},
    )
    cluster.kubectl("create", "-f", "-", input=json.dumps(spec))


def released(cluster: Cluster, namespace: str) -> bool:
    got = cluster.kubectl("get", "pod", "app", "-n", namespace, "-o", "json")
    return not gates_of(json.loads(got.stdout))


def test_a_profile_on_a_builtin_is_ready_on_x86_64_and_aarch64_nodes_alike(
    gating_policy: Cluster,
    namespace: str,
    names: list[str],
    controller: ControllerProcess,
) -> None:
    crd = gating_policy
    suffix = uuid.uuid4().hex[:6]
    amd, arm = f"amd-{suffix}", f"arm-{suffix}"
    names += [amd, arm]
    for node in names:
        register_node(crd, node, labels={"seccompsync.io/test-group": namespace})
    apply_profile(crd, namespace, "web", ON_DEFAULT)
    x86_sha, arm_sha = (node_sha(crd, namespace, "web", a) for a in (X86, ARM))
    assert x86_sha != arm_sha  # the built-in base is flattened per architecture
    key = ProfileKey(namespace, "web")
    publish_report(crd, amd, X86, {key: x86_sha})
    publish_report(crd, arm, ARM, {key: arm_sha})

    wait_for(lambda: ready_column(crd, namespace, "web") == "2/2", timeout=30, what="READY 2/2")
    waited = crd.kubectl(
        "wait", "--for=condition=Ready", "scmp/web", "-n", namespace, "--timeout=60s"
    )
    assert "condition met" in waited.stdout
    (condition,) = status_of(crd, namespace, "web")["conditions"]
    assert (condition["status"], condition["reason"]) == ("True", "Installed")
    # Were the aarch64 node judged by the x86_64 hash, the pod would wait out the grace period.
    create_gated_pod(crd, namespace)
    wait_for(lambda: released(crd, namespace), timeout=30, what="the gated pod released")

    # The aarch64 node still has the x86_64 file (it did not catch up): it lags, and is named.
    publish_report(crd, arm, ARM, {key: x86_sha})

    def partial() -> dict[str, Any] | None:
        status = status_of(crd, namespace, "web")
        return status if status.get("readyNodes") == "1/2" else None

    status = wait_for(partial, timeout=30, what="READY 1/2 with the aarch64 node lagging")
    assert status["state"] == "Partial"
    assert [(f["node"], f["reason"]) for f in status["failingNodes"]] == [(arm, "Outdated")]
    assert arm in status["conditions"][0]["message"]


def nodeless_events(cluster: Cluster, node: str) -> list[dict[str, Any]]:
    got = cluster.kubectl(
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        f"involvedObject.name={node},involvedObject.kind=SeccompNodeStatus,reason=NoSuchNode",
        "-o",
        "json",
    )
    return list(json.loads(got.stdout)["items"])


def test_a_report_without_a_node_does_not_count_until_its_node_exists(
    gating_policy: Cluster,
    namespace: str,
    names: list[str],
    controller: ControllerProcess,
) -> None:
    crd = gating_policy
    suffix = uuid.uuid4().hex[:6]
    real, ghost = f"real-{suffix}", f"ghost-{suffix}"
    names += [real, ghost]
    register_node(crd, real, labels={"seccompsync.io/test-group": namespace})
    apply_profile(crd, namespace, "web", DENY_MKDIR)
    key = ProfileKey(namespace, "web")
    sha = node_sha(crd, namespace, "web", X86)
    # The ghost (an agent run with a kubeconfig outside any node) has nothing installed.
    publish_report(crd, ghost, X86, {})
    create_gated_pod(crd, namespace)
    publish_report(crd, real, X86, {key: sha})

    waited = crd.kubectl(
        "wait", "--for=condition=Ready", "scmp/web", "-n", namespace, "--timeout=60s"
    )
    assert "condition met" in waited.stdout
    assert ready_column(crd, namespace, "web") == "1/1"
    wait_for(lambda: released(crd, namespace), timeout=30, what="the gated pod released")

    events = wait_for(
        lambda: nodeless_events(crd, ghost) or None, timeout=40, what="the NoSuchNode event"
    )
    uid = json.loads(crd.kubectl("get", "seccompnodestatus", ghost, "-o", "json").stdout)
    assert events[0]["involvedObject"]["uid"] == uid["metadata"]["uid"]
    assert f"kubectl delete seccompnodestatus {ghost}" in events[0]["message"]
    assert controller.metric("seccomp_sync_nodeless_reports") == 1.0
    time.sleep(6)  # several more passes of the controller: still one Event, seen once
    events = nodeless_events(crd, ghost)
    assert len(events) == 1 and events[0].get("count", 1) == 1
    warned = [
        line
        for line in controller.log_lines()
        if line.get("node") == ghost and "without a Node" in str(line)
    ]
    assert len(warned) == 1, warned

    # Its Node joins: the report counts from now on (and it has nothing yet).
    register_node(crd, ghost, labels={"seccompsync.io/test-group": namespace})
    wait_for(lambda: ready_column(crd, namespace, "web") == "1/2", timeout=30, what="READY 1/2")
    wait_for(
        lambda: controller.metric("seccomp_sync_nodeless_reports") == 0.0,
        timeout=10,
        what="no report without a Node",
    )

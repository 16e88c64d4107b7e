"""The command docs/upgrades.md gives to release pods held at the gate by hand, run as written
(bash, the cluster's kubectl) on the real control plane and scheduler: it removes our gate and
only ours, and a pod it releases gets scheduled."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.pytest_plugin import Cluster
from tests.integration.nodes import delete_node, register_node

pytestmark = pytest.mark.cluster

DOC = Path(__file__).resolve().parents[2] / "docs" / "upgrades.md"
GATE = "seccompsync.io/profiles-ready"
OTHER_GATE = "example.com/quota-approved"


def release_command(namespace: str) -> str:
    """The documented block, narrowed from every namespace (``-A``) to the test's own, as the
    page says to do for one namespace: other tests' gated pods are not this test's to release."""
    text = DOC.read_text()
    match = re.search(r"<!-- release-gates:[^>]*-->\n```sh\n(.*?)```", text, re.S)
    assert match, f"{DOC}: no release-gates block"
    command = match.group(1)
    assert command.count("get pods -A ") == 1, command
    return command.replace("get pods -A ", f"get pods -n {namespace} ")


@pytest.fixture
def node_name(crd: Cluster) -> Iterator[str]:
    name = f"release-{uuid.uuid4().hex[:6]}"
    register_node(crd, name)
    yield name
    delete_node(crd, name)


def gated_pod(name: str, node: str, gates: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "schedulingGates": [{"name": gate} for gate in gates],
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{"name": "c", "image": "localhost/never-pulled:1"}],
        },
    }


def pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("-n", namespace, "get", "pod", name, "-o", "json").stdout
    return dict(json.loads(out))


def gates(obj: dict[str, Any]) -> list[str]:
    return [g["name"] for g in obj["spec"].get("schedulingGates") or []]


def test_the_documented_command_releases_only_our_gate(
    crd: Cluster, namespace: str, node_name: str
) -> None:
    pods = {
        "ours": [GATE],
        "ours-and-another": [OTHER_GATE, GATE],
        "another-only": [OTHER_GATE],
    }
    for name, pod_gates in pods.items():
        manifest = gated_pod(name, node_name, pod_gates)
        crd.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(manifest))
    env = {
        **os.environ,
        "PATH": f"{crd.kubectl_path.parent}:{os.environ['PATH']}",
        "KUBECONFIG": str(crd.kubeconfig),
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", release_command(namespace)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")[:-1]) == [
        "pod/ours patched",
        "pod/ours-and-another patched",
    ]
    assert gates(pod(crd, namespace, "ours-and-another")) == [OTHER_GATE]
    assert gates(pod(crd, namespace, "another-only")) == [OTHER_GATE]

    # Released: the scheduler binds it; the pods with another gate stay unscheduled.
    deadline = time.monotonic() + 60
    while not pod(crd, namespace, "ours")["spec"].get("nodeName"):
        assert time.monotonic() < deadline, "the released pod was not scheduled within 60 s"
        time.sleep(0.5)
    assert pod(crd, namespace, "ours")["spec"]["nodeName"] == node_name
    assert not pod(crd, namespace, "ours-and-another")["spec"].get("nodeName")

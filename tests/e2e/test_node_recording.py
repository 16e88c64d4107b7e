"""In-cluster recording on a real node: the agent of deploy/ (from its image) writes the
recording profile, runc hands it the container's listener, and the node's SeccompNodeStatus
lists what the container called.

The pod names the recording profile by hand, as the recording's admission policy will: this
is the node's part alone. It is bound to the node directly (spec.nodeName), which the gating
policy leaves alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.api.recording import recording_localhost_profile
from tests.cluster.pytest_plugin import Cluster
from tests.e2e import pods
from tests.e2e.test_node_seccomp import agent  # noqa: F401 - the deployed agent, a fixture
from tests.node.images import BUSYBOX_IMAGE
from tests.node.pytest_plugin import Node

pytestmark = [pytest.mark.cluster, pytest.mark.node]

CRD = "seccompprofilerecordings.seccompsync.io"
MINIMAL_CRD = Path(__file__).resolve().parents[1] / "fixtures" / "recording-crd.yaml"
SCRIPT = "mkdir /tmp/recorded && ls /tmp && grep '^Seccomp:' /proc/self/status && echo done"


@pytest.fixture(scope="module")
def recording_crd(crd: Cluster) -> Iterator[Cluster]:
    """crds/ once it has the recording's CRD; until then a minimal one (removed afterwards)."""
    served = crd.kubectl("get", "crd", CRD, check=False).returncode == 0
    if not served:
        crd.kubectl("apply", "-f", str(MINIMAL_CRD))
        crd.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD}")
    try:
        yield crd
    finally:
        if not served:
            crd.kubectl("delete", "-f", str(MINIMAL_CRD), "--ignore-not-found", check=False)


def recording_parts(cluster: Cluster, node: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "seccompnodestatus", node, "-o", "json", check=False).stdout
    parts: list[dict[str, Any]] = (
        json.loads(out).get("status", {}).get("recordings") or [] if out else []
    )
    return parts


def test_a_pod_under_the_recording_profile_is_recorded_on_its_node(
    recording_crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    cluster = recording_crd
    key = ProfileKey(namespace, "web")
    recording = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfileRecording",
        "metadata": {"name": "web"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}},
    }
    pods.create(cluster, namespace, recording)
    # The agent checks every 30 s for a CRD installed after it started.
    profile = agent.seccomp_root / recording_localhost_profile(key)
    written = pods.poll(
        lambda: json.loads(profile.read_text()) if profile.exists() else None,
        60,
        "the recording profile on the node",
    )
    assert written["listenerPath"] == "/run/seccomp-sync/recorder.sock"
    assert written["listenerMetadata"] == str(key)

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": {
            "nodeName": agent.name,
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "web",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", SCRIPT],
                    "securityContext": {
                        "seccompProfile": {
                            "type": "Localhost",
                            "localhostProfile": recording_localhost_profile(key),
                        }
                    },
                }
            ],
        },
    }
    pods.create(cluster, namespace, pod)
    pods.poll(
        lambda: pods.get(cluster, namespace, "web-1")["status"].get("phase") == "Succeeded" or None,
        120,
        "the recorded pod to run to its end",
    )
    out = pods.logs(cluster, namespace, "web-1")
    assert "recorded" in out and "Seccomp:\t2" in out and "done" in out, out

    def recorded() -> dict[str, Any] | None:
        for part in recording_parts(cluster, agent.name):
            if part["recording"] == str(key) and part.get("containers"):
                return part
        return None

    part = pods.poll(recorded, 30, "the node's part of the recording")
    assert part["ready"] is True
    assert part["pods"] == [f"{namespace}/web-1"]
    assert part["degraded"] == []
    (container,) = part["containers"]
    assert container["name"] == "web"
    assert {"mkdir", "execve", "getdents64", "openat"} <= set(container["syscalls"]), container
    assert part["architectures"] == ["SCMP_ARCH_X86_64"]

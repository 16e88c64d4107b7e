"""In-cluster recording on a real node: the agent of deploy/ (from its image) writes the
recording profile, runc hands it the container's listener, and the node's SeccompNodeStatus
lists what the container called.

The pod names the recording profile by hand, as the recording's admission policy will: this
is the node's part alone. It is bound to the node directly (spec.nodeName), which the gating
policy leaves alone.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.api.recording import recording_localhost_profile
from tests.cluster.pytest_plugin import Cluster
from tests.e2e import pods
from tests.e2e.test_node_seccomp import (  # the deployed agent (a fixture) and its process
    agent,  # noqa: F401
    agent_process,
    ready_agent,
)
from tests.integration.nodes import recording_part
from tests.node.images import BUSYBOX_IMAGE
from tests.node.pytest_plugin import Node

pytestmark = [pytest.mark.cluster, pytest.mark.node]

CRD = "seccompprofilerecordings.seccompsync.io"
EXPECTED = {"mkdir", "execve", "getdents64", "openat"}  # the script's, and runc's exec
SCRIPT = "mkdir /tmp/recorded && ls /tmp && grep '^Seccomp:' /proc/self/status && echo done"


@pytest.fixture(scope="module")
def recording_crd(crd: Cluster) -> Cluster:
    """The `crd` fixture installs every CRD of crds/, the recording's among them."""
    crd.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD}")
    return crd


def start_recording(cluster: Cluster, node: Node, key: ProfileKey) -> None:
    recording = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfileRecording",
        "metadata": {"name": key.name},
        "spec": {"podSelector": {"matchLabels": {"app": key.name}}},
    }
    pods.create(cluster, key.namespace, recording)
    profile = node.seccomp_root / recording_localhost_profile(key)
    pods.poll(lambda: profile.exists() or None, 60, "the recording profile on the node")


def recorded_pod(name: str, node: str, key: ProfileKey, command: list[str]) -> dict[str, Any]:
    """A pod that names the recording profile by hand, bound to `node` (so never gated)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": key.name}},
        "spec": {
            "nodeName": node,
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
                    "command": command,
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


def test_a_pod_under_the_recording_profile_is_recorded_on_its_node(
    recording_crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    cluster = recording_crd
    key = ProfileKey(namespace, "web")
    start_recording(cluster, agent, key)
    written = json.loads((agent.seccomp_root / recording_localhost_profile(key)).read_text())
    assert written["listenerPath"] == "/run/seccomp-sync/recorder.sock"
    assert written["listenerMetadata"] == str(key)

    pods.create(cluster, namespace, recorded_pod("web-1", agent.name, key, ["sh", "-c", SCRIPT]))
    pods.poll(
        lambda: pods.get(cluster, namespace, "web-1")["status"].get("phase") == "Succeeded" or None,
        120,
        "the recorded pod to run to its end",
    )
    out = pods.logs(cluster, namespace, "web-1")
    assert "recorded" in out and "Seccomp:\t2" in out and "done" in out, out

    def recorded() -> dict[str, Any] | None:
        # Published at most about a second after the calls: wait for the last of them.
        found = recording_part(cluster, agent.name, key)
        names = {n for c in (found or {}).get("containers") or [] for n in c["syscalls"]}
        return found if names >= EXPECTED else None

    published = pods.poll(recorded, 30, "the node's part of the recording")
    assert published["ready"] is True
    assert published["pods"] == [f"{namespace}/web-1"]
    assert published["degraded"] == []
    (container,) = published["containers"]
    assert container["name"] == "web"
    assert set(container["syscalls"]) >= EXPECTED, container
    assert published["architectures"] == ["SCMP_ARCH_X86_64"]


def test_a_killed_agent_names_the_container_it_was_recording_as_degraded(
    recording_crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    """The agent's listeners die with it: the restarted agent cannot serve that container
    again, and says so in the node part (the controller marks the recording Degraded)."""
    cluster = recording_crd
    key = ProfileKey(namespace, "sleeper")
    start_recording(cluster, agent, key)
    # Asleep in one syscall, already answered: it outlives its listener without noticing.
    pods.create(cluster, namespace, recorded_pod("sleeper-1", agent.name, key, ["sleep", "3600"]))
    pods.poll(
        lambda: pods.is_running(pods.get(cluster, namespace, "sleeper-1")) or None,
        120,
        "the recorded pod to run",
    )
    pods.poll(
        lambda: (recording_part(cluster, agent.name, key) or {}).get("pods") or None,
        30,
        "the agent to record the pod",
    )

    os.kill(agent_process(agent), signal.SIGKILL)  # the kubelet restarts the agent's container
    ready_agent(cluster, agent.name)

    def degraded() -> list[dict[str, Any]] | None:
        return (recording_part(cluster, agent.name, key) or {}).get("degraded") or None

    assert pods.poll(degraded, 60, "the restarted agent to report the cut-off container") == [
        {"pod": f"{namespace}/sleeper-1", "container": "web", "reason": "RecorderRestarted"}
    ]
    after = recording_part(cluster, agent.name, key)
    assert after is not None and after["containers"][0]["name"] == "web"  # names kept
    assert {"nanosleep", "clock_nanosleep"} & set(after["containers"][0]["syscalls"])

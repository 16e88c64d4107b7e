"""In-cluster recording end to end, as a user does it (issue 18's proof, docs/recording.md).

Everything goes through kubectl: the real CRD, deploy/'s admission policies (the recording's
mutation, the scheduling gate), the agent DaemonSet and the controller from the image, on a real
kubelet, containerd and runc. Pods are created without a seccompProfile and without a node: the
recording's policy gives them the recording profile and the gate, the controller releases them.
The workloads are Debian's busybox (tests/node/images.py: the host's /bin/busybox).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.api.recording import recording_localhost_profile
from tests.cluster.pytest_plugin import Cluster
from tests.e2e import gating, pods
from tests.e2e.test_node_seccomp import (  # the deployed agent (a fixture) and its process
    agent,  # noqa: F401
    agent_process,
    ready_agent,
)
from tests.node.agent_deploy import free_port
from tests.node.images import BUSYBOX_BINARY, BUSYBOX_IMAGE
from tests.node.pytest_plugin import Node

pytestmark = [pytest.mark.cluster, pytest.mark.node]

API_VERSION = "seccompsync.io/v1beta1"


# --- what a user applies -------------------------------------------------------------------


def recording(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "SeccompProfileRecording",
        "metadata": {"name": name},
        "spec": {"podSelector": {"matchLabels": labels}},
    }


def pod(
    name: str,
    node: str,
    labels: dict[str, str],
    command: list[str],
    profile: str | None = None,
    restart: str = "Always",
) -> dict[str, Any]:
    """A pod as a user writes it: no seccompProfile unless `profile` (a Localhost path), placed
    by the scheduler on `node` (so the scheduling gate applies)."""
    container: dict[str, Any] = {
        "name": "web",
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": command,
    }
    if profile is not None:
        container["securityContext"] = {
            "seccompProfile": {"type": "Localhost", "localhostProfile": profile}
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            # Test nodes have no pod network: the server listens on the host's.
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        },
    }


def httpd(port: int) -> list[str]:
    # /etc/hostname is the kubelet's file: something to serve that the image does not hold.
    return ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/etc"]


# --- what a user looks at ------------------------------------------------------------------


def get_recording(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("-n", namespace, "get", "scmprec", name, "-o", "json").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


def recorded_names(status: dict[str, Any], container: str = "web") -> set[str]:
    for entry in status.get("containers") or []:
        if entry["name"] == container:
            return set(entry["syscalls"])
    return set()


def wait_status(
    cluster: Cluster, namespace: str, name: str, what: str, ok: Any, timeout: float = 60
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status: dict[str, Any] = get_recording(cluster, namespace, name).get("status") or {}
        return status if ok(status) else None

    result: dict[str, Any] = pods.poll(probe, timeout, f"recording {namespace}/{name}: {what}")
    return result


def wait_recording_admits(cluster: Cluster, namespace: str, labels: dict[str, str]) -> None:
    """The admission policy sees a new recording through an informer: wait until a pod created
    now would get the recording profile (server-side dry run: nothing is stored)."""

    def mutated() -> bool:
        manifest = pod("probe", "none", labels, ["true"])
        out = cluster.kubectl(
            "-n", namespace, "create", "--dry-run=server", "-o", "json", "-f", "-",
            input=json.dumps(manifest),
        ).stdout  # fmt: skip
        context = json.loads(out)["spec"]["containers"][0].get("securityContext") or {}
        return "seccompProfile" in context

    pods.poll(mutated, 60, "the recording's admission policy to see the recording", 0.5)


def wait_running(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        obj = pods.get(cluster, namespace, name)
        return obj if pods.is_running(obj) else None

    return pods.poll(running, 120, f"pod {namespace}/{name} to run")


def fetch(port: int) -> str:
    """A request as a client on the node would make it (hostNetwork: the host's loopback)."""

    def attempt() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return None

    return pods.poll(attempt, 30, f"the server on port {port} to answer", 0.5)


def seccomp_profile(cluster: Cluster, pod_obj: dict[str, Any]) -> dict[str, Any] | None:
    context = pod_obj["spec"]["containers"][0].get("securityContext") or {}
    profile: dict[str, Any] | None = context.get("seccompProfile")
    return profile


# --- 1. a real server recorded, then enforced ------------------------------------------------


def test_recorded_server_is_enforced_by_its_result(
    crd: Cluster,
    agent: Node,  # noqa: F811
    namespace: str,
) -> None:
    cluster = crd
    labels = {"app": "web"}
    pods.create(cluster, namespace, recording("web", labels))
    wait_recording_admits(cluster, namespace, labels)

    port = free_port()
    pods.create(cluster, namespace, pod("web-1", agent.name, labels, httpd(port)))
    created = pods.get(cluster, namespace, "web-1")
    assert seccomp_profile(cluster, created) == {
        "type": "Localhost",
        "localhostProfile": recording_localhost_profile(ProfileKey(namespace, "web")),
    }
    running = wait_running(cluster, namespace, "web-1")
    assert gating.gates_of(running) == []  # released by the controller
    served = fetch(port)
    assert served.strip()  # the node's hostname (hostNetwork)

    # Published by the agent at most about a second after the calls, then merged.
    status = wait_status(
        cluster, namespace, "web", "the request's calls counted",
        lambda s: {"accept", "accept4"} & recorded_names(s),
    )  # fmt: skip
    assert status["phase"] == "Recording"
    assert (status["podsSeen"], status["nodesSeen"]) == (1, 1)
    assert status["syscallsCounted"] == len(recorded_names(status)) > 10
    recorded = recorded_names(status)
    assert "mkdir" not in recorded  # what the enforced pod will try below
    table = cluster.kubectl("-n", namespace, "get", "scmprec", "web").stdout
    row = table.splitlines()[1].split()
    assert row[:5] == ["web", "Recording", "1", "1", str(status["syscallsCounted"])], table

    cluster.kubectl(
        "-n", namespace, "patch", "scmprec", "web", "--type=merge",
        "-p", '{"spec": {"active": false}}',
    )  # fmt: skip
    done = wait_status(
        cluster, namespace, "web", "Completed", lambda s: s.get("phase") == "Completed"
    )
    assert done["profiles"] == ["web-web"]

    def installed() -> dict[str, Any] | None:
        out = cluster.kubectl("-n", namespace, "get", "scmp", "web-web", "-o", "json", check=False)
        if out.returncode != 0:
            return None
        obj: dict[str, Any] = json.loads(out.stdout)
        return obj if (obj.get("status") or {}).get("state") == "Installed" else None

    result = pods.poll(installed, 60, "the result web-web to be Installed")
    assert result["metadata"]["labels"]["seccompsync.io/recording"] == "web"
    assert result["spec"]["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for rule in result["spec"]["syscalls"] for n in rule["names"]}
    assert recorded | {"write"} <= allowed and "mkdir" not in allowed

    # A new pod of the same workload under the result: a recording no longer mutates it.
    port2 = free_port()
    profile = pods.localhost_profile(namespace, "web-web")
    pods.create(cluster, namespace, pod("web-2", agent.name, labels, httpd(port2), profile))
    assert seccomp_profile(cluster, pods.get(cluster, namespace, "web-2")) == {
        "type": "Localhost",
        "localhostProfile": profile,
    }
    wait_running(cluster, namespace, "web-2")
    assert fetch(port2).strip() == served.strip()
    denied = cluster.kubectl(
        "-n", namespace, "exec", "web-2", "--", "mkdir", "/tmp/never-recorded", check=False
    )  # fmt: skip
    assert denied.returncode != 0
    assert "Operation not permitted" in denied.stderr, denied.stderr  # EPERM, the default
    assert fetch(port2).strip() == served.strip()  # the server lives on

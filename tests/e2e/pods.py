"""Pods on real nodes, and what a user would look at: phase, container state, events, logs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.cluster.pytest_plugin import Cluster
from tests.node.images import BUSYBOX_IMAGE

T = TypeVar("T")

# Prints what the test checks, then waits until told to exit (`touch /tmp/restart`), so a test
# can make the container restart: each run starts with a new root filesystem.
PROBE_SCRIPT = """
grep '^Seccomp:' /proc/self/status
if mkdir /tmp/denied; then echo mkdir=ok; else echo mkdir=failed; fi
if touch /tmp/allowed; then echo touch=ok; else echo touch=failed; fi
echo probe-done
while [ ! -e /tmp/restart ]; do sleep 0.2; done
"""


def localhost_profile(namespace: str, name: str) -> str:
    """The pod's ``localhostProfile`` for a SeccompProfile (what ``kubectl get scmp`` shows)."""
    return f"seccomp-sync/{namespace}/{name}.json"


def probe_pod(name: str, node_name: str, profile: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node_name},
            # Test nodes have loopback-only CNI: no pod network.
            "hostNetwork": True,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "probe",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", PROBE_SCRIPT],
                    "securityContext": {
                        "seccompProfile": {"type": "Localhost", "localhostProfile": profile}
                    },
                }
            ],
        },
    }


def create(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("-n", namespace, "create", "-f", "-", input=json.dumps(manifest))


def get(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("-n", namespace, "get", "pod", name, "-o", "json").stdout
    pod: dict[str, Any] = json.loads(out)
    return pod


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    status: dict[str, Any] = statuses[0]
    return status


def waiting_reason(pod: dict[str, Any]) -> tuple[str, str]:
    waiting = container_status(pod).get("state", {}).get("waiting") or {}
    return waiting.get("reason", ""), waiting.get("message", "")


def is_running(pod: dict[str, Any]) -> bool:
    return "running" in container_status(pod).get("state", {})


def logs(cluster: Cluster, namespace: str, name: str) -> str:
    return cluster.kubectl("-n", namespace, "logs", name, check=False).stdout


def events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "-n", namespace, "get", "events", "-o", "json",
        "--field-selector", f"involvedObject.name={name}",
    ).stdout  # fmt: skip
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def poll(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def wait_probe_done(cluster: Cluster, namespace: str, name: str, timeout: float = 120) -> str:
    """The container's log once its probe ran (in its current run)."""

    def done() -> str | None:
        text = logs(cluster, namespace, name)
        return text if "probe-done" in text else None

    return poll(done, timeout, f"pod {namespace}/{name} to run its probe")


def restart_container(cluster: Cluster, namespace: str, name: str) -> int:
    """Make the container exit; wait until it runs again; return its new restart count."""
    before = int(container_status(get(cluster, namespace, name)).get("restartCount", 0))
    cluster.kubectl("-n", namespace, "exec", name, "--", "touch", "/tmp/restart")

    def restarted() -> int | None:
        pod = get(cluster, namespace, name)
        count = int(container_status(pod).get("restartCount", 0))
        return count if count > before and is_running(pod) else None

    return poll(restarted, 120, f"pod {namespace}/{name} to restart")

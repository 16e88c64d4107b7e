"""Scheduling-gate plumbing shared by the benchmarks that hold pods at the gate (gate_bench,
fleet_bench): the admission policy from deploy/base, pod bodies, and a watch that stamps when
each pod's gate is gone."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from agent.controller.gated_pods import GATE
from agent.kube.list_watch import RawWatch
from tests.cluster.pytest_plugin import Cluster

ADMISSION = Path(__file__).resolve().parents[1] / "deploy" / "base" / "admission.yaml"


@contextmanager
def gating_policy(cluster: Cluster) -> Iterator[None]:
    """The MutatingAdmissionPolicy that adds the gate, applied for the duration."""
    docs = [
        d
        for d in yaml.safe_load_all(ADMISSION.read_text())
        if d and d["kind"].startswith("MutatingAdmissionPolicy")
    ]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs})
    )
    time.sleep(2)  # the policy takes effect asynchronously
    try:
        yield
    finally:
        for doc in docs:
            cluster.kubectl(
                "delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found"
            )


def pod_body(
    namespace: str, name: str, profile: str, node_selector: dict[str, str] | None
) -> dict[str, Any]:
    """A pod on the profile `namespace/profile`; `node_selector` keeps it to some nodes."""
    spec: dict[str, Any] = {
        "securityContext": {
            "seccompProfile": {
                "type": "Localhost",
                "localhostProfile": f"seccomp-sync/{namespace}/{profile}.json",
            }
        },
        "containers": [{"name": "app", "image": "pause"}],
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def create_pods(api_client: client.ApiClient, namespace: str, bodies: list[dict[str, Any]]) -> None:
    core = client.CoreV1Api(api_client)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda b: core.create_namespaced_pod(namespace, b), bodies))


class PodReleases:
    """Watches one namespace's pods and stamps (time.monotonic) when each pod's gate is gone."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self._core = client.CoreV1Api(api_client)
        self._namespace = namespace
        self.released: dict[str, float] = {}  # pod name -> gate gone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> PodReleases:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self._stream()
            except Exception:  # the control plane went away, or a hiccup: watch again
                time.sleep(0.5)

    def _stream(self) -> None:
        # Plain JSON, as the controller reads it: building the client's model of each pod took
        # this thread about a millisecond a pod, so a burst of releases was stamped late, by
        # however long the backlog of pods before it took to build.
        for event in RawWatch().stream(  # type: ignore[no-untyped-call]
            self._core.list_namespaced_pod, self._namespace, timeout_seconds=30
        ):
            pod = event["object"]
            gates = [g.get("name") for g in pod["spec"].get("schedulingGates") or []]
            if GATE not in gates and event["type"] != "DELETED":
                self.released.setdefault(pod["metadata"]["name"], time.monotonic())

"""Scheduling gates against the real control plane: how fast a pod goes once its profile is
Ready, what it costs in API writes, and the controller's memory at scale.

Run from the repository root:
    python -m bench.gate_bench [--cluster-dir DIR] [--agents 2] [--profiles 20] [--pods 200]
                               [--memory-profiles 10000] [--memory-pods 1000] [--json]
(--pods 0 or --memory-profiles 0 skips that part.)
Agents are real `seccomp-agent run` processes for fake Nodes; the controller is a real
`seccomp-agent controller`; the MutatingAdmissionPolicy is the one in deploy/base.

Latency: pods are created first (they wait, gated: their profiles do not exist yet), then the
profiles one by one. This process watches the nodes' reports and the pods itself, so both ends
are stamped by one clock: from the moment the last node reports the profile's content hash to
the moment the pod's gate is gone. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from agent.api.model import API_GROUP, API_VERSION
from agent.api.node_report import SHA_PREFIX
from agent.controller.profiles import profile_view
from bench.cluster import (
    api,
    apiserver_counters,
    control_plane,
    counter_delta,
    create_profiles,
    new_namespace,
    percentile,
    process_tree_stats,
    profile_body,
)
from bench.gating import PodReleases, create_pods, gating_policy, pod_body
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import AgentProcess, wait_for
from tests.integration.controller import ControllerProcess
from tests.integration.nodes import delete_node, register_node

GROUP_LABEL = "seccompsync.io/bench-group"


class Observer:
    """Watches node reports and pods; stamps when a profile is on every node and when each
    pod's gate disappears."""

    def __init__(self, api_client: client.ApiClient, namespace: str, nodes: list[str]) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._namespace = namespace
        self._nodes = set(nodes)
        self.expected: dict[str, str] = {}  # profile name -> sha prefix
        self.installed: dict[str, dict[str, float]] = {}  # profile -> node -> first seen
        self._pods = PodReleases(api_client, namespace)
        self.released = self._pods.released  # pod name -> gate gone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch_reports, daemon=True)

    def start(self) -> Observer:
        self._thread.start()
        self._pods.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._pods.stop()

    def ready_at(self, profile: str) -> float | None:
        seen = self.installed.get(profile, {})
        return max(seen.values()) if self._nodes <= set(seen) else None

    def _watch_reports(self) -> None:
        prefix = f"{self._namespace}/"
        while not self._stop.is_set():
            for event in watch.Watch().stream(  # type: ignore[no-untyped-call]
                self._custom.list_cluster_custom_object,
                API_GROUP,
                API_VERSION,
                "seccompnodestatuses",
                timeout_seconds=30,
            ):
                now = time.monotonic()
                obj = event["object"]
                node = obj["metadata"]["name"]
                for entry in (obj.get("status") or {}).get("installed") or []:
                    ref, _, sha = str(entry).rpartition("@")
                    if not ref.startswith(prefix):
                        continue
                    name = ref.removeprefix(prefix)
                    if self.expected.get(name) == sha:
                        self.installed.setdefault(name, {}).setdefault(node, now)


def latency_run(
    cluster: Cluster, work: Path, agents: int, profiles: int, pods: int
) -> dict[str, Any]:
    namespace = new_namespace(cluster, "bench-gate")
    group = namespace
    api_client = api(cluster)
    custom = client.CustomObjectsApi(api_client)
    nodes = [f"gate-bench-{uuid.uuid4().hex[:5]}-{i}" for i in range(agents)]
    with ExitStack() as stack:
        for node in nodes:
            register_node(cluster, node, labels={GROUP_LABEL: group})
            stack.callback(delete_node, cluster, node)
            agent = AgentProcess(
                cluster, node, work / node, work / f"{node}.log", "--namespace", namespace
            ).start()
            stack.callback(agent.stop)
        for node in nodes:
            wait_for(
                lambda n=node: (  # type: ignore[misc]
                    cluster.kubectl("get", "scmpns", n, check=False).returncode == 0
                ),
                timeout=60,
                what=f"{node} reporting",
            )
        controller = ControllerProcess(
            cluster, namespace, work / "controller.log", "--grace-seconds", "600"
        ).start()
        stack.callback(controller.stop)
        controller.wait_ready()
        observer = Observer(api_client, namespace, nodes).start()
        stack.callback(observer.stop)
        per_profile = max(1, pods // profiles)
        bodies = [
            pod_body(namespace, f"app-{p}-{i}", f"p{p}", {GROUP_LABEL: group})
            for p in range(profiles)
            for i in range(per_profile)
        ]
        before = apiserver_counters(cluster)
        create_pods(api_client, namespace, bodies)
        wait_for(
            lambda: controller.metric("seccomp_sync_gated_pods") == len(bodies),
            timeout=120,
            what="every pod gated",
        )
        time.sleep(2)  # let the "not found" Events go out
        for p in range(profiles):
            body = profile_body(namespace, f"p{p}", errno=p + 1)
            view = profile_view(body)
            assert view.expected_sha is not None
            observer.expected[f"p{p}"] = view.expected_sha[:SHA_PREFIX]
            custom.create_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, "seccompprofiles", body
            )
            time.sleep(0.3)  # one at a time: each pod's wait is its own profile's
        wait_for(
            lambda: len(observer.released) >= len(bodies), timeout=300, what="every pod released"
        )
        time.sleep(2)
        after = apiserver_counters(cluster)
        latencies = []
        for body in bodies:
            name = body["metadata"]["name"]
            profile = name.split("-")[1]
            ready = observer.ready_at(f"p{profile}")
            if ready is not None:
                latencies.append(observer.released[name] - ready)
        pod_patches = counter_delta(
            before, after, "apiserver_request_total", resource="pods", verb="PATCH|PUT|UPDATE"
        )
        events = counter_delta(
            before, after, "apiserver_request_total", resource="events", verb="POST|CREATE"
        )
        ours = sum(
            1
            for e in client.CoreV1Api(api_client).list_namespaced_event(namespace).items
            if e.reason == "SeccompProfileNotReady"
        )
        assert controller.process is not None
        stats = process_tree_stats(controller.process.pid, children=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")
        return {
            "agents": agents,
            "profiles": profiles,
            "pods": len(bodies),
            "latency_ms": {
                "p50": round(percentile(latencies, 0.5) * 1000, 1),
                "p99": round(percentile(latencies, 0.99) * 1000, 1),
                "max": round(max(latencies) * 1000, 1),
                "samples": len(latencies),
            },
            "pod_writes_per_pod": round(pod_patches / len(bodies), 2),
            # All Event writes in the namespace include the scheduler's "Scheduled" ones.
            "event_writes_per_pod": round(events / len(bodies), 2),
            "controller_events_per_pod": round(ours / len(bodies), 2),
            "controller_peak_rss_mb": round(stats["peak_rss_mb"], 1),
        }


def memory_run(cluster: Cluster, work: Path, profiles: int, pods: int) -> dict[str, Any]:
    """The controller's memory with many profiles and many pods waiting (no agent: they wait
    for ever, each with its Event)."""
    namespace = new_namespace(cluster, "bench-gatemem")
    api_client = api(cluster)
    started = time.perf_counter()
    create_profiles(api_client, namespace, profiles)
    create_pods(
        api_client,
        namespace,
        [pod_body(namespace, f"wait-{i}", "missing", None) for i in range(pods)],
    )
    created = time.perf_counter() - started
    controller = ControllerProcess(cluster, namespace, work / "memory-controller.log").start()
    try:
        begin = time.perf_counter()
        controller.wait_ready(timeout=600)
        wait_for(
            lambda: controller.metric("seccomp_sync_gated_pods") == pods,
            timeout=600,
            interval=0.5,
            what=f"{pods} pods gated",
        )
        wait_for(
            lambda: (
                controller.metric("seccomp_sync_profile_ready") is not None
                and _series(controller, "seccomp_sync_profile_nodes_expected") >= profiles
            ),
            timeout=600,
            interval=0.5,
            what="every profile's status computed",
        )
        elapsed = time.perf_counter() - begin
        time.sleep(5)
        assert controller.process is not None
        stats = process_tree_stats(controller.process.pid, children=False)
        current_kb = 0
        for line in Path(f"/proc/{controller.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current_kb = int(line.split()[1])
        return {
            "profiles": profiles,
            "gated_pods": pods,
            "objects_created_seconds": round(created, 1),
            "start_to_all_handled_seconds": round(elapsed, 1),
            "peak_rss_mb": round(stats["peak_rss_mb"], 1),
            "rss_mb": round(current_kb / 1024, 1),
        }
    finally:
        controller.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", timeout=300)


def _series(controller: ControllerProcess, name: str) -> int:
    _, text = controller.http("/metrics")
    return sum(1 for line in text.splitlines() if line.startswith(name + "{"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cluster-dir", type=Path)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--profiles", type=int, default=20)
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--memory-profiles", type=int, default=10_000)
    parser.add_argument("--memory-pods", type=int, default=1_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with control_plane(args.cluster_dir) as cluster, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with gating_policy(cluster):
            results: dict[str, Any] = {}
            if args.pods:
                results["latency"] = latency_run(
                    cluster, work, args.agents, args.profiles, args.pods
                )
            if args.memory_profiles:
                results["memory"] = memory_run(
                    cluster, work, args.memory_profiles, args.memory_pods
                )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    if "latency" in results:
        print_latency(results["latency"])
    if "memory" in results:
        print_memory(results["memory"])
    return 0


def print_latency(lat: dict[str, Any]) -> None:
    print(
        f"gate removal after Ready ({lat['pods']} pods, {lat['profiles']} profiles, "
        f"{lat['agents']} agents): p50 {lat['latency_ms']['p50']} ms, "
        f"p99 {lat['latency_ms']['p99']} ms, max {lat['latency_ms']['max']} ms"
    )
    print(
        f"API writes per gated pod: {lat['pod_writes_per_pod']} pod patch(es), "
        f"{lat['controller_events_per_pod']} controller Event(s) (pods created before their "
        f"profile; all Event writes incl. the scheduler's: {lat['event_writes_per_pod']})"
    )


def print_memory(mem: dict[str, Any]) -> None:
    print(
        f"controller memory, {mem['profiles']} profiles + {mem['gated_pods']} gated pods: "
        f"peak {mem['peak_rss_mb']} MB, now {mem['rss_mb']} MB; start to all handled "
        f"{mem['start_to_all_handled_seconds']} s"
    )


if __name__ == "__main__":
    sys.exit(main())

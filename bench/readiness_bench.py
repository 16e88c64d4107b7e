"""Readiness at scale: many agents (simulated nodes), apply-to-Ready time, and API cost per change.

Run from the repository root:
    python -m bench.readiness_bench [--cluster-dir DIR] [--agents 5,10,20] [--profiles 100]
                                    [--changes 10] [--json]
Each agent is a real `seccomp-agent run` process for a fake Node with its own root. The API
cost is read from the API server's own counters, so it includes every agent and the controller.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client

from agent.api.model import API_GROUP, API_VERSION, PLURAL
from bench.cluster import (
    api,
    apiserver_counters,
    control_plane,
    counter_delta,
    create_profiles,
    distinct_spec,
    new_namespace,
)
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import AgentProcess
from tests.integration.controller import ControllerProcess
from tests.integration.nodes import delete_node, register_node

SECCOMP = "seccompprofiles|seccompnodestatuses"
WRITES = "POST|CREATE|PATCH|PUT|APPLY"


@contextmanager
def agents(cluster: Cluster, work: Path, namespace: str, count: int) -> Iterator[list[str]]:
    names = [f"bench-{uuid.uuid4().hex[:5]}-{i}" for i in range(count)]
    with ExitStack() as stack:
        for name in names:
            register_node(cluster, name)
            stack.callback(delete_node, cluster, name)
            agent = AgentProcess(
                cluster,
                name,
                work / name,
                work / f"{name}.log",
                "--namespace",
                namespace,
            )
            agent.start()
            stack.callback(agent.stop)
        # The controller folds the agents' reports into each profile's status (its Lease in the
        # benchmark's namespace, so it leads at once).
        controller = ControllerProcess(cluster, namespace, work / "controller.log").start()
        stack.callback(controller.stop)
        for name in names:
            _wait_node_synced(cluster, name)
        yield names


def _wait_node_synced(cluster: Cluster, node: str, timeout: float = 120) -> None:
    custom = client.CustomObjectsApi(api(cluster))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = custom.get_cluster_custom_object(
                API_GROUP, API_VERSION, "seccompnodestatuses", node
            ).get("status", {})
            if status.get("synced"):
                return
        except client.exceptions.ApiException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"agent for {node} never synced")


def ready_count(
    custom: client.CustomObjectsApi,
    namespace: str,
    nodes: int,
    generations: dict[str, int] | None = None,
) -> int:
    items = custom.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL)
    ready = 0
    for item in items["items"]:
        status = item.get("status") or {}
        name = item["metadata"]["name"]
        wanted = (generations or {}).get(name, item["metadata"]["generation"])
        if (
            status.get("readyNodes") == f"{nodes}/{nodes}"
            and status.get("state") == "Installed"
            and status.get("observedGeneration", 0) >= wanted
        ):
            ready += 1
    return ready


def wait_all_ready(
    custom: client.CustomObjectsApi, namespace: str, profiles: int, nodes: int, timeout: float = 600
) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if ready_count(custom, namespace, nodes) >= profiles:
            return time.perf_counter() - started
        time.sleep(0.1)
    raise TimeoutError("profiles never became Ready on every node")


def run(cluster: Cluster, work: Path, count: int, profiles: int, changes: int) -> dict[str, Any]:
    namespace = new_namespace(cluster, f"bench-ready{count}")
    custom = client.CustomObjectsApi(api(cluster))
    try:
        with agents(cluster, work / f"n{count}", namespace, count):
            started = time.perf_counter()
            create_profiles(api(cluster), namespace, profiles)
            apply_to_ready = wait_all_ready(custom, namespace, profiles, count)
            total_to_ready = time.perf_counter() - started
            time.sleep(2)  # let debounced writes settle before counting
            before = apiserver_counters(cluster)
            single = []
            for change in range(changes):
                name = f"p{change}"
                patched = custom.patch_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    name,
                    {"spec": distinct_spec(2000 + change)},
                )
                generation = patched["metadata"]["generation"]
                begin = time.perf_counter()
                while ready_count(custom, namespace, count, {name: generation}) < profiles:
                    time.sleep(0.05)
                single.append(time.perf_counter() - begin)
            time.sleep(2)
            after = apiserver_counters(cluster)
        writes = counter_delta(
            before, after, "apiserver_request_total", verb=WRITES, resource=SECCOMP
        )
        events = counter_delta(before, after, "apiserver_watch_events_total", resource=SECCOMP)
        return {
            "agents": count,
            "profiles": profiles,
            "seconds_apply_to_all_ready": round(total_to_ready, 2),
            "seconds_last_profile_ready": round(apply_to_ready, 2),
            "seconds_one_change_to_ready_median": round(sorted(single)[len(single) // 2], 2),
            "api_writes_per_change": round(writes / changes, 1),
            "watch_events_per_change": round(events / changes, 1),
        }
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-dir", type=Path, help="reuse the control plane in DIR")
    parser.add_argument("--agents", default="5,10,20")
    parser.add_argument("--profiles", type=int, default=100)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="seccomp-sync-ready-bench-") as tmp,
        control_plane(args.cluster_dir) as cluster,
    ):
        cluster.kubectl("delete", "seccompnodestatuses", "--all")
        for count in (int(n) for n in args.agents.split(",") if n):
            rows.append(run(cluster, Path(tmp), count, args.profiles, args.changes))
            print(json.dumps(rows[-1]), file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = list(rows[0])
    print("  ".join(f"{c:>{max(len(c), 6)}}" for c in columns))
    for row in rows:
        print("  ".join(f"{row[c]!s:>{max(len(c), 6)}}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of one agent at a cold start, with and without oversize SeccompProfiles.

Run from the repository root:
    python -m bench.oversize_bench [--cluster-dir DIR] [--profiles 500] [--oversize 20]
                                   [--oversize-mb 1.4] [--json]

Two cold starts of a real agent process against the real control plane, each watching its own
namespace: N ordinary profiles, then the same N plus twenty objects of about 1.4 MB each (near
etcd's 1.5 MiB limit). The big objects are created while a permissive copy of the CRD is
installed (the shipped CRD refuses them), which is how they exist on a real cluster: stored
under an older CRD. Peak RSS (VmHWM) is printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from agent.api.model import API_GROUP, API_VERSION, KIND, PLURAL
from bench.cluster import api, control_plane, create_profiles, new_namespace, process_tree_stats
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import AgentProcess
from tests.integration.crds import crd_without_size_totals
from tests.integration.profiles import oversize_spec


def create_oversize(cluster: Cluster, namespace: str, count: int, megabytes: float) -> int:
    """Create the big objects under the permissive CRD; returns the bytes of one object."""
    custom = client.CustomObjectsApi(api(cluster))
    size = 0

    def create(index: int) -> None:
        nonlocal size
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "metadata": {"name": f"big{index}", "namespace": namespace},
            "spec": oversize_spec(index, megabytes),
        }
        size = len(json.dumps(body))
        custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, body, _request_timeout=60
        )

    with crd_without_size_totals(cluster, namespace), ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create, range(count)))
    return size


def cold_start(cluster: Cluster, work: Path, label: str, namespace: str) -> dict[str, Any]:
    root = work / label
    agent = AgentProcess(
        cluster,
        f"oversize-{label}",
        root,
        work / f"{label}.log",
        "--namespace",
        namespace,
    )
    begin = time.perf_counter()
    agent.start()
    try:
        agent.wait_ready(timeout=600)
        elapsed = time.perf_counter() - begin
        assert agent.process is not None
        stats = process_tree_stats(agent.process.pid, children=False)
        time.sleep(0.5)  # the per-state gauges are refreshed a moment after a change
        invalid = agent.metric('seccomp_sync_profiles{state="invalid"}')
        return {
            "seconds_to_ready": round(elapsed, 2),
            "agent_peak_rss_mb": round(stats["peak_rss_mb"], 1),
            "agent_cpu_seconds": round(stats["cpu_seconds"], 2),
            "files_on_disk": len(list((root / "seccomp-sync" / namespace).glob("*.json"))),
            "invalid": int(invalid),
            "alive": agent.process.poll() is None,
        }
    finally:
        agent.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-dir", type=Path, help="reuse the control plane in DIR")
    parser.add_argument("--profiles", type=int, default=500)
    parser.add_argument("--oversize", type=int, default=20)
    parser.add_argument("--oversize-mb", type=float, default=1.4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="seccomp-sync-oversize-bench-") as tmp,
        control_plane(args.cluster_dir) as cluster,
    ):
        work = Path(tmp)
        plain_ns = new_namespace(cluster, "bench-plain")
        mixed_ns = new_namespace(cluster, "bench-oversize")
        try:
            create_profiles(api(cluster), plain_ns, args.profiles)
            create_profiles(api(cluster), mixed_ns, args.profiles)
            size = create_oversize(cluster, mixed_ns, args.oversize, args.oversize_mb)
            results = {
                "profiles": args.profiles,
                "oversize_objects": args.oversize,
                "oversize_object_bytes": size,
                "without": cold_start(cluster, work, "plain", plain_ns),
                "with": cold_start(cluster, work, "mixed", mixed_ns),
            }
        finally:
            for namespace in (plain_ns, mixed_ns):
                cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"cold start of one agent, {results['profiles']} profiles "
        f"(+ {results['oversize_objects']} objects of "
        f"{results['oversize_object_bytes'] / 1e6:.2f} MB)"
    )
    for label in ("without", "with"):
        r = results[label]
        print(
            f"  {label:<8} oversize: peak RSS {r['agent_peak_rss_mb']:>6} MB, "
            f"ready in {r['seconds_to_ready']} s, CPU {r['agent_cpu_seconds']} s, "
            f"{r['files_on_disk']} files, {r['invalid']} invalid, alive={r['alive']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

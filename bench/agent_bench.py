"""The node agent against the real control plane: latency, cold start, drift repair, idle cost.

Run from the repository root:
    python -m bench.agent_bench [--cluster-dir DIR] [--changes 200] [--cold 1000,10000]
                                [--idle-seconds 60] [--py-spy DIR] [--json]
Without --cluster-dir it starts a control plane for the run (tests/cluster/up) and stops it.
`--changes 0` and `--idle-seconds 0` skip those parts (to measure only cold starts). Each cold
start is followed by a restart on the same disk (an upgrade's common case: every file already
there). `--py-spy DIR` samples each cold start's agent with py-spy (installed separately: it is
no dependency of the project) and leaves its collapsed stacks in DIR.
Figures are printed, never asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
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
    process_tree_stats,
    profile_body,
    summary_ms,
)
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import AgentProcess

POLL_SECONDS = 0.0002


def wait_file(path: Path, needle: bytes, timeout: float = 10.0) -> float:
    """Busy-wait until `path` holds `needle`; returns the time it was seen (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            if needle in path.read_bytes():
                return time.perf_counter()
        except FileNotFoundError:
            pass
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"{path} never held {needle!r}")


def apply_latency(cluster: Cluster, work: Path, changes: int) -> dict[str, Any]:
    """API write acknowledged -> new content durable on disk (renamed after fsync)."""
    namespace = new_namespace(cluster, "bench-latency")
    custom = client.CustomObjectsApi(api(cluster))
    agent = AgentProcess(
        cluster, "bench-node", work / "latency", work / "latency.log", "--namespace", namespace
    ).start()
    try:
        agent.wait_ready()
        custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, profile_body(namespace, "p", 1)
        )
        path = agent.profile_path(namespace, "p")
        wait_file(path, b'"errnoRet": 1,')
        samples = []
        for change in range(changes):
            errno = 100 + change
            patch = {"spec": distinct_spec(errno)}
            custom.patch_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, "p", patch
            )
            acknowledged = time.perf_counter()
            seen = wait_file(path, f'"errnoRet": {errno},'.encode())
            samples.append(seen - acknowledged)
        drift = drift_latency(path, 100)
        return {
            "apply_to_disk": {"changes": changes, **summary_ms(samples)},
            "drift_repair": {"repairs": 100, **summary_ms(drift)},
        }
    finally:
        agent.stop()


def drift_latency(path: Path, repairs: int) -> list[float]:
    content = path.read_bytes()
    samples = []
    for _ in range(repairs):
        path.unlink()
        removed = time.perf_counter()
        seen = wait_file(path, content[-40:])
        samples.append(seen - removed)
        time.sleep(0.01)
    return samples


def cold_start(
    cluster: Cluster, work: Path, count: int, py_spy: Path | None = None
) -> dict[str, Any]:
    """Agent start -> every file on disk (its /readyz turns 200 only then), and peak RSS; then
    the same agent restarted on the same disk."""
    namespace = new_namespace(cluster, f"bench-cold{count}")
    started = time.perf_counter()
    create_profiles(api(cluster), namespace, count)
    created = time.perf_counter() - started
    root = work / f"cold{count}"
    try:
        result = _timed_start(cluster, work, root, namespace, count, "empty", py_spy, resync=True)
        on_disk = len(list((root / "seccomp-sync" / namespace).glob("*.json")))
        restart = _timed_start(cluster, work, root, namespace, count, "restart", py_spy)
        return {
            "profiles": count,
            "files_on_disk": on_disk,
            **result,
            "restart": restart,
            "create_objects_seconds": round(created, 1),
        }
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def _timed_start(
    cluster: Cluster,
    work: Path,
    root: Path,
    namespace: str,
    count: int,
    label: str,
    py_spy: Path | None,
    resync: bool = False,
) -> dict[str, Any]:
    agent = AgentProcess(
        cluster,
        f"cold-node-{count}",
        root,
        work / f"cold{count}-{label}.log",
        "--namespace",
        namespace,
        "--resync-seconds",
        str(RESYNC_SECONDS if resync else 3600.0),
    )
    begin = time.perf_counter()
    agent.start()
    assert agent.process is not None
    sampler = _sample(agent.process.pid, py_spy / f"cold{count}-{label}.txt") if py_spy else None
    try:
        agent.wait_ready(timeout=600)
        elapsed = time.perf_counter() - begin
        agent_stats = process_tree_stats(agent.process.pid, children=False)
        worker_stats = process_tree_stats(agent.process.pid, children=True)
        result: dict[str, Any] = {
            "seconds_to_ready": round(elapsed, 2),
            "agent_peak_rss_mb": round(agent_stats["peak_rss_mb"], 1),
            "compile_worker_peak_rss_mb": round(worker_stats["peak_rss_mb"], 1),
            "agent_cpu_seconds": round(agent_stats["cpu_seconds"], 2),
            "files_written": agent.metric("seccomp_sync_files_written_total"),
        }
        if resync:
            result["resync"] = resync_cost(cluster, agent)
        result["agent_errors"] = [
            line.get("msg", "") + " " + str(line.get("error", ""))
            for line in agent.log_lines()
            if line.get("level") == "error"
        ][:5]
        return result
    finally:
        agent.stop()
        if sampler is not None:
            sampler.wait(60)


def _sample(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy on the agent (and its compile worker) until it exits: collapsed stacks."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--threads",
            "--rate",
            "50",
            "--format",
            "raw",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


RESYNC_SECONDS = 4.0


def resync_cost(cluster: Cluster, agent: AgentProcess, resyncs: int = 3) -> dict[str, Any]:
    """The periodic resync with nothing changed: its duration (the agent's own histogram),
    and the API requests it makes on profiles per resync."""
    count_metric = "seccomp_sync_resync_duration_seconds_count"
    first = agent.metric(count_metric)
    before = apiserver_counters(cluster)
    deadline = time.monotonic() + RESYNC_SECONDS * (resyncs + 4) * 3
    while agent.metric(count_metric) < first + resyncs and time.monotonic() < deadline:
        time.sleep(0.2)
    after = apiserver_counters(cluster)
    done = agent.metric(count_metric)
    total = agent.metric("seccomp_sync_resync_duration_seconds_sum")
    runs = max(done, 1.0)
    per = max(done - first, 1.0)
    return {
        "mean_seconds": round(total / runs, 3),
        "profile_lists_per_resync": round(
            counter_delta(
                before, after, "apiserver_request_total", verb="LIST", resource="seccompprofiles"
            )
            / per,
            1,
        ),
        "profile_gets_per_resync": round(
            counter_delta(
                before, after, "apiserver_request_total", verb="GET", resource="seccompprofiles"
            )
            / per,
            1,
        ),
    }


def idle_cost(cluster: Cluster, work: Path, seconds: float) -> dict[str, Any]:
    """With nothing changing: the agent's CPU, and the API requests it adds per minute.

    The control plane's own controllers also call the API, so requests are measured as the
    increase with the agent running minus the increase over the same time without it.
    """
    namespace = new_namespace(cluster, "bench-idle")
    create_profiles(api(cluster), namespace, 100)
    baseline_before = apiserver_counters(cluster)
    time.sleep(seconds)
    baseline = _requests(baseline_before, apiserver_counters(cluster))
    agent = AgentProcess(
        cluster, "idle-node", work / "idle", work / "idle.log", "--namespace", namespace
    ).start()
    try:
        agent.wait_ready()
        time.sleep(5)  # let start-up writes (node status) settle
        assert agent.process is not None
        cpu_before = process_tree_stats(agent.process.pid, children=False)["cpu_seconds"]
        before = apiserver_counters(cluster)
        time.sleep(seconds)
        after = apiserver_counters(cluster)
        cpu = process_tree_stats(agent.process.pid, children=False)["cpu_seconds"] - cpu_before
        with_agent = _requests(before, after)
        per_minute = 60.0 / seconds
        return {
            "seconds": seconds,
            "agent_cpu_seconds_per_minute": round(cpu * per_minute, 3),
            "seccomp_resource_requests_per_minute": round(
                max(0.0, with_agent - baseline) * per_minute, 1
            ),
            "profile_lists_during_idle": counter_delta(
                before, after, "apiserver_request_total", verb="LIST", resource="seccompprofiles"
            ),
        }
    finally:
        agent.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


# Resources only seccomp-sync (and the garbage collector's metadata informers) call: the
# controllers' own traffic on pods, leases and events is far larger than the agent's and too
# noisy to subtract. (Agents hold no Lease: the seccomp-sync controller does.)
SECCOMP_RESOURCES = "seccompprofiles|seccompnodestatuses"


def _requests(before: dict[str, float], after: dict[str, float]) -> float:
    # WATCH requests are long-lived: counting them counts reconnects.
    return counter_delta(
        before, after, "apiserver_request_total", verb=".*", resource=SECCOMP_RESOURCES
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-dir", type=Path, help="reuse the control plane in DIR")
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--cold", default="1000,10000", help="profile counts for cold starts")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--py-spy", type=Path, help="sample cold starts with py-spy into DIR")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="seccomp-sync-agent-bench-") as tmp,
        control_plane(args.cluster_dir) as cluster,
    ):
        work = Path(tmp)
        if args.changes > 0:
            results.update(apply_latency(cluster, work, args.changes))
        results["cold_start"] = [
            cold_start(cluster, work, int(n), args.py_spy) for n in args.cold.split(",") if n
        ]
        if args.idle_seconds > 0:
            results["idle"] = idle_cost(cluster, work, args.idle_seconds)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print_table(results)
    return 0


def print_table(results: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str]] = []
    if "apply_to_disk" in results:
        latency, drift = results["apply_to_disk"], results["drift_repair"]
        rows.append(
            (
                "apply-to-disk latency",
                "p50 / p99 ms",
                f"{latency['p50_ms']} / {latency['p99_ms']}  (over {latency['changes']} changes)",
            )
        )
        rows.append(
            ("drift repair latency", "p50 / p99 ms", f"{drift['p50_ms']} / {drift['p99_ms']}")
        )
    for cold in results["cold_start"]:
        for label, run in (("cold start", cold), ("restart", cold["restart"])):
            rows.append(
                (
                    f"{label}, {cold['profiles']} profiles",
                    "s to ready / agent peak RSS",
                    f"{run['seconds_to_ready']} s / {run['agent_peak_rss_mb']} MB "
                    f"(+ compile worker {run['compile_worker_peak_rss_mb']} MB; "
                    f"{run['agent_cpu_seconds']} CPU-s; {run['files_written']:.0f} files written)",
                )
            )
        rows.append(
            (
                f"periodic resync, {cold['profiles']} profiles",
                "s / API requests",
                f"{cold['resync']['mean_seconds']} s / "
                f"{cold['resync']['profile_lists_per_resync']} LIST pages + "
                f"{cold['resync']['profile_gets_per_resync']} GETs per resync (nothing changed)",
            )
        )
    if "idle" in results:
        idle = results["idle"]
        rows.append(
            (
                "idle cost",
                "CPU s/min / API req/min",
                f"{idle['agent_cpu_seconds_per_minute']} / "
                f"{idle['seccomp_resource_requests_per_minute']} on seccomp-sync resources"
                f"  (profile LISTs while idle: {idle['profile_lists_during_idle']:.0f})",
            )
        )
    width = max(len(r[0]) for r in rows)
    unit_width = max(len(r[1]) for r in rows)
    for name, unit, value in rows:
        print(f"{name:<{width}}  {unit:<{unit_width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())

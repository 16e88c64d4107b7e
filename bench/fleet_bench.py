"""A fleet against the real control plane and the real controller: what a profile change costs
as nodes (N) and profiles (P) grow.

Run from the repository root (the default is one quick size; the full series is below):
    python -m bench.fleet_bench [--nodes 100,250,...] [--profiles 100,1000] [--pods 1000]
                                [--burst 100] [--json]
    python -m bench.fleet_bench --nodes 100,250,500,1000,2000 --profiles 100,1000   # the series

Simulated nodes: one real Node object each (created with a Ready status) and, in this process,
the agent's own report code for each: a `ProfileCatalog` (agent.node.catalog) fed records made
by the agent's `Validator` (rendered once per profile: every simulated node has this machine's
architecture, so all render alike; no libseccomp compile), and a `NodeStatusPublisher`
(agent.node.report_writer) that writes the report, debounced and coalesced as on a node, in the
form the agent's `FleetForm` picks (agent.node.fleet_form: compact when the node's digest matches
the one the controller publishes, which one watch in this process follows for every simulated
node, with the agent's own `fleet_watch`; `--form full` keeps them on the full list). A
simulated node does not watch profiles: it installs a change as soon as the bench's write of it
is acknowledged (a real agent takes a few milliseconds more to write the file), then calls
`changed()` on its publisher, as the agent's readiness refresh does. The controller is a real
`seccomp-agent controller` process, and the MutatingAdmissionPolicy is the one in deploy/base.

The test control plane runs kube-controller-manager without the node-lifecycle controller
(tests/cluster/cmd/testcluster/main.go): Nodes with no kubelet are never marked NotReady,
tainted or evicted, so the fake Nodes need no leases.

For each P, a fresh control plane; N grows within it (nodes are added, never removed). At each
N a new controller process starts and the bench measures:
- start-up: process start to its "every listing is in" log line, and to every profile's status
  written with every node counted;
- one profile change, and a burst of `--burst` changes: report writes and bytes per node, the
  time from the last node's report to Ready (watched by this process: one clock), and the
  controller's CPU (utime + stime from /proc) until it is idle again;
- the size of one node's report as written (compact in the steady state) and as the full list;
- gated pods: `--pods` pods wait on a profile that does not exist yet; it is then created and
  installed on every node; release latency is from the last node's report to the gate gone;
- the controller's peak RSS (VmHWM from /proc: the kernel's own high-water mark).

Figures are printed, never asserted. A least-squares line per P (value = a + b * N) is printed
for each figure, with its value at 5,000 nodes when 5,000 was not measured: read off the line,
and said so.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import functools
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from agent.api.keys import ProfileKey
from agent.api.model import API_GROUP, API_VERSION, NODE_STATUS_PLURAL, PLURAL
from agent.node.catalog import ProfileCatalog, ProfileRecord
from agent.node.fleet_form import FleetForm, Later, PublishedDigests, node_report
from agent.node.fleet_watch import fleet_watch
from agent.node.lanes import ValidationLanes
from agent.node.report_writer import NodeStatusPublisher
from agent.node.validator import Validator
from agent.seccomp.syscalls import native_architecture
from bench.cluster import api, control_plane, new_namespace, percentile, profile_body
from bench.gating import PodReleases, create_pods, gating_policy, pod_body
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import wait_for
from tests.integration.controller import ControllerProcess
from tests.integration.nodes import ready_status

EXTRAPOLATE_TO = 5_000
THREADS = 16  # API calls in flight from this process (node creation, report writes)
NOWHERE = {"seccompsync.io/fleet-bench": "no-such-node"}  # released pods stay unscheduled
ARCH = native_architecture()  # every simulated node's, and the controller's


class MeteredPublisher(NodeStatusPublisher):
    """The agent's publisher, unchanged, with each write it sends counted and stamped."""

    def __init__(
        self,
        api_client: client.ApiClient,
        node: str,
        build: Callable[[], dict[str, Any] | Later],
        meter: Meter,
    ) -> None:
        super().__init__(api_client, node, build)
        self._meter = meter

    def _write(self, status: dict[str, Any]) -> None:
        super()._write(status)
        self._meter.wrote(status)

    def _create_if_missing(self, status: dict[str, Any]) -> bool:
        created = super()._create_if_missing(status)
        self._meter.wrote(status)
        self._meter.announced()
        return created


class Meter:
    """Report writes, their bytes (the JSON body the client sends) and the last one's time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.writes = 0
        self.bytes = 0
        self.last = 0.0
        self.nodes_reported = 0  # first reports written (created, or left by an earlier run)

    def announced(self) -> None:
        with self._lock:
            self.nodes_reported += 1

    def reset(self) -> None:
        with self._lock:
            self.writes, self.bytes, self.last = 0, 0, 0.0

    def wrote(self, status: dict[str, Any]) -> None:
        size = len(json.dumps({"status": status}))
        with self._lock:
            self.writes += 1
            self.bytes += size
            self.last = time.monotonic()


@dataclass
class SimNode:
    name: str
    catalog: ProfileCatalog
    publisher: MeteredPublisher


class Fleet:
    """Simulated nodes on one asyncio loop (its own thread), with the profiles they hold."""

    def __init__(self, cluster: Cluster, namespace: str, compact: bool = True) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.api = api(cluster)
        self.api.configuration.connection_pool_maxsize = THREADS
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.meter = Meter()
        self.nodes: list[SimNode] = []
        self.records: dict[ProfileKey, ProfileRecord] = {}
        self._prefix = f"fleet-{uuid.uuid4().hex[:4]}"
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(ThreadPoolExecutor(THREADS, thread_name_prefix="report"))
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self._renderer = ProfileCatalog()
        self._lanes = ValidationLanes()
        self._validator = Validator(self._renderer, [ARCH], None, self._lanes)
        # What the controller publishes, for every node (it publishes in its Lease's namespace).
        self.published = PublishedDigests()
        if compact:
            watch = fleet_watch(self.api, namespace, self._published)
            self._digests = asyncio.run_coroutine_threadsafe(watch.run(), self.loop)
            wait_for(lambda: self.published.listed, timeout=30, what="the fleet digests listed")
        else:
            self.published.replace(None)  # as from a controller that publishes none

    def _published(self, data: Any) -> None:
        if self.published.replace(data):
            for node in self.nodes:
                node.publisher.changed()

    def call(self, work: Callable[[], Any]) -> Any:
        """Run `work()` on the fleet's loop and wait for it."""

        async def wrapped() -> Any:
            return work()

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result()

    def render(self, body: dict[str, Any]) -> ProfileRecord:
        key = ProfileKey(self.namespace, body["metadata"]["name"])
        future = asyncio.run_coroutine_threadsafe(self._validator.validate(key, body), self.loop)
        record = future.result()
        self._renderer.accept(record)
        self.records[key] = record
        return record

    def write_profiles(self, bodies: Sequence[dict[str, Any]], install: bool) -> list[str]:
        """Create or replace profiles in the API; each one acknowledged is rendered and, with
        `install`, installed on every node (its publisher told). Returns the content hashes."""
        shas: list[str] = []

        def one(body: dict[str, Any]) -> None:
            name = body["metadata"]["name"]
            stored: Any
            try:
                current: Any = self.custom.get_namespaced_custom_object(
                    API_GROUP, API_VERSION, self.namespace, PLURAL, name
                )
                body = {**body, "metadata": {**body["metadata"], **_version(current)}}
                stored = self.custom.replace_namespaced_custom_object(
                    API_GROUP, API_VERSION, self.namespace, PLURAL, name, body
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                stored = self.custom.create_namespaced_custom_object(
                    API_GROUP, API_VERSION, self.namespace, PLURAL, body
                )
            record = self.render(stored)
            assert record.rendered is not None, record.errors
            shas.append(record.rendered.sha256)
            if install:
                self.call(lambda: self._install([record]))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, bodies))
        return shas

    def _install(self, records: Sequence[ProfileRecord]) -> None:
        for node in self.nodes:
            for record in records:
                node.catalog.accept(record)
                assert record.rendered is not None
                node.catalog.mark_installed(record.key, record.rendered.sha256)
            node.publisher.changed()

    def grow(self, count: int) -> float:
        """Add Nodes (and their agents' first reports) up to `count`; seconds it took."""
        started = time.perf_counter()
        names = [f"{self._prefix}-{i}" for i in range(len(self.nodes), count)]
        status = self.api.sanitize_for_serialization(ready_status())  # type: ignore[no-untyped-call]

        def register(name: str) -> None:
            body: Any = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": status,  # a Node's status may be set on create
            }
            self.core.create_node(body)

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(register, names))
        self.call(functools.partial(_each, self._add, names))
        # An announcement that fails is retried by the publisher itself: wait for all of them.
        wait_for(
            lambda: self.meter.nodes_reported >= count,
            timeout=600,
            interval=0.1,
            what=f"{count} nodes' first reports",
        )
        return time.perf_counter() - started

    def _add(self, name: str) -> None:
        catalog = ProfileCatalog()
        for record in self.records.values():
            catalog.accept(record)
            assert record.rendered is not None
            catalog.mark_installed(record.key, record.rendered.sha256)
        catalog.complete = True
        form = FleetForm(self.published, ARCH)
        publisher = MeteredPublisher(
            self.api, name, lambda: node_report(catalog, form, name, time.monotonic), self.meter
        )
        self.nodes.append(SimNode(name, catalog, publisher))
        publisher.announce()

    def report_bytes(self) -> tuple[int, int]:
        """The size of one node's report as written now, and as the full list (every node
        holds the same profiles)."""
        node = self.nodes[0]
        written = self.custom.get_cluster_custom_object(
            API_GROUP, API_VERSION, NODE_STATUS_PLURAL, node.name
        )
        full = self.call(lambda: node.catalog.report(node.name, ARCH))
        return len(json.dumps({"status": written["status"]})), len(json.dumps({"status": full}))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._lanes.shutdown()


def _each(work: Callable[[str], None], names: Sequence[str]) -> None:
    for name in names:
        work(name)


def _version(obj: dict[str, Any]) -> dict[str, Any]:
    return {"resourceVersion": obj["metadata"]["resourceVersion"]}


class ReadyWatch:
    """Stamps when each profile of the namespace is Ready for its generation on `nodes` nodes."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self.expect_nodes = 0
        self.ready: dict[str, tuple[int, float]] = {}  # name -> (generation, first seen)
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def ready_at(self, name: str, generation: int) -> float | None:
        seen = self.ready.get(name)
        return seen[1] if seen and seen[0] >= generation else None

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self._stream()
            except Exception:  # the control plane went away, or a hiccup: watch again
                time.sleep(0.5)

    def _stream(self) -> None:
        custom = self._fleet.custom
        for event in watch.Watch().stream(  # type: ignore[no-untyped-call]
            custom.list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            self._fleet.namespace,
            PLURAL,
            timeout_seconds=600,
        ):
            now = time.monotonic()
            obj = event["object"]
            status = obj.get("status") or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            generation = int(status.get("observedGeneration") or 0)
            name = obj["metadata"]["name"]
            if (
                ready
                and status.get("nodesInstalled") == self.expect_nodes
                and self.ready.get(name, (0, 0.0))[0] < generation
            ):
                self.ready[name] = (generation, now)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_until_idle(pid: int, since: float, quiet: float = 1.0, limit: float = 120.0) -> float:
    """The process's CPU seconds from `since` (a cpu_seconds reading) until it has used less
    than 2% of a core for `quiet` seconds."""
    deadline = time.monotonic() + limit
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_seconds(pid)
        if now - last < 0.02 * quiet:
            return now - since
        last = now
    return cpu_seconds(pid) - since


def one_point(
    fleet: Fleet, watcher: ReadyWatch, work: Path, nodes: int, profiles: int, args: Any
) -> dict[str, Any]:
    cluster = fleet.cluster
    grow_seconds = fleet.grow(nodes)
    watcher.expect_nodes = nodes
    watcher.ready.clear()  # only statuses that count every node of this size
    result: dict[str, Any] = {
        "nodes": nodes,
        "profiles": profiles,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "nodes_added_seconds": round(grow_seconds, 1),
    }
    log_path = work / f"controller-{profiles}-{nodes}.log"
    controller = ControllerProcess(cluster, fleet.namespace, log_path, "--grace-seconds", "600")
    with ExitStack() as stack:
        wall_start, started = time.time(), time.monotonic()
        controller.start()
        stack.callback(controller.stop)
        assert controller.process is not None
        pid = controller.process.pid
        listed = wait_for(
            lambda: _logged_at(log_path, "every listing is in"),
            timeout=600,
            interval=0.1,
            what="the controller's listings",
        )
        result["startup_listings_s"] = round(listed - wall_start, 2)
        names = [f"p{i}" for i in range(profiles)]

        def counted() -> bool:
            return all(watcher.ready_at(n, 1) is not None for n in names)

        wait_for(counted, timeout=900, interval=0.2, what="every status written")
        result["startup_statuses_s"] = round(max(watcher.ready[n][1] for n in names) - started, 2)
        result["startup_cpu_s"] = round(cpu_seconds(pid), 2)
        cpu_until_idle(pid, 0.0)
        settle_reports(fleet)
        result["report_bytes"], result["report_bytes_full"] = fleet.report_bytes()

        # One profile change.
        result["one_change"] = change(fleet, watcher, pid, ["p0"])
        # A burst.
        burst = [f"p{i}" for i in range(1, 1 + min(args.burst, profiles - 1))]
        result["burst"] = change(fleet, watcher, pid, burst)
        if args.pods:
            result["gate"] = gated(fleet, controller, pid, args.pods)
        result["controller_peak_rss_mb"] = round(peak_rss_mb(pid), 1)
    return result


_generations: dict[str, int] = {}


def settle_reports(fleet: Fleet, quiet: float = 2.0, limit: float = 60.0) -> None:
    """Wait until no node has written a report for `quiet` seconds (after the controller's
    first publication, nodes rewrite their reports in the compact form once)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        last = fleet.meter.last
        time.sleep(quiet)
        if fleet.meter.last == last:
            return


def change(fleet: Fleet, watcher: ReadyWatch, pid: int, names: list[str]) -> dict[str, Any]:
    """Change `names` (new content each), install on every node, measure until all Ready."""
    fleet.meter.reset()
    bodies = []
    for name in names:
        _generations[name] = _generations.get(name, 1) + 1
        bodies.append(profile_body(fleet.namespace, name, errno=_generations[name] * 7 + 1))
    cpu_before = cpu_seconds(pid)
    began = time.monotonic()
    fleet.write_profiles(bodies, install=True)
    wait_for(
        lambda: all(watcher.ready_at(n, _generations[n]) is not None for n in names),
        timeout=600,
        interval=0.05,
        what=f"{len(names)} change(s) Ready",
    )
    ready = max(watcher.ready[n][1] for n in names)
    last_report = fleet.meter.last
    cpu = cpu_until_idle(pid, cpu_before)
    settle_reports(fleet)  # writes after Ready (none expected) count too
    count = len(fleet.nodes)
    return {
        "changes": len(names),
        "writes_per_node": round(fleet.meter.writes / count, 2),
        "bytes_per_node": round(fleet.meter.bytes / count),
        "last_report_to_ready_ms": round((ready - last_report) * 1000, 1),
        "first_write_to_ready_s": round(ready - began, 2),
        "controller_cpu_s": round(cpu, 2),
    }


def gated(fleet: Fleet, controller: ControllerProcess, pid: int, pods: int) -> dict[str, Any]:
    """`pods` pods wait on a new profile; it is created and installed everywhere."""
    name = f"gate-{uuid.uuid4().hex[:5]}"
    bodies = [pod_body(fleet.namespace, f"{name}-{i}", name, NOWHERE) for i in range(pods)]
    releases = PodReleases(fleet.api, fleet.namespace).start()
    try:
        create_pods(fleet.api, fleet.namespace, bodies)
        wait_for(
            lambda: (controller.metric("seccomp_sync_gated_pods") or 0) >= pods,
            timeout=300,
            interval=0.2,
            what=f"{pods} pods gated",
        )
        fleet.meter.reset()
        cpu_before = cpu_seconds(pid)
        fleet.write_profiles([profile_body(fleet.namespace, name, errno=4000)], install=True)
        wanted = {b["metadata"]["name"] for b in bodies}
        wait_for(
            lambda: wanted <= set(releases.released),
            timeout=600,
            interval=0.05,
            what="every pod released",
        )
        cpu = cpu_until_idle(pid, cpu_before)
        latencies = [releases.released[p] - fleet.meter.last for p in wanted]
        fleet.core.delete_collection_namespaced_pod(fleet.namespace)
        return {
            "pods": pods,
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1),
            "controller_cpu_s": round(cpu, 2),
        }
    finally:
        releases.stop()


def _logged_at(path: Path, message: str) -> float | None:
    """The wall-clock time of the controller's JSON log line with `message`, if written."""
    for line in path.read_text(errors="replace").splitlines():
        if message in line:
            try:
                stamp = json.loads(line)["ts"]
            except (ValueError, KeyError):
                continue
            parsed = time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
            return calendar.timegm(parsed) + float("0" + stamp[19:-1])
    return None


def run_series(nodes: list[int], profiles: list[int], args: Any) -> list[dict[str, Any]]:
    results = []
    for count in profiles:
        with (
            control_plane(None) as cluster,
            tempfile.TemporaryDirectory() as tmp,
            gating_policy(cluster),
        ):
            namespace = new_namespace(cluster, "fleet")
            fleet = Fleet(cluster, namespace, compact=args.form == "compact")
            watcher = ReadyWatch(fleet)
            try:
                _generations.clear()
                fleet.write_profiles(
                    [profile_body(namespace, f"p{i}", errno=8) for i in range(count)],
                    install=False,
                )
                for n in nodes:
                    point = one_point(fleet, watcher, Path(tmp), n, count, args)
                    results.append(point)
                    print(f"# measured N={n} P={count}: {json.dumps(point)}", file=sys.stderr)
            finally:
                watcher.stop()
                fleet.close()
    return results


# --- tables and fitted lines -------------------------------------------------------------------

FIGURES: list[tuple[str, Callable[[dict[str, Any]], float]]] = [
    ("report per node, as written (bytes)", lambda r: r["report_bytes"]),
    ("report per node, full list (bytes)", lambda r: r["report_bytes_full"]),
    ("one change: report writes per node", lambda r: r["one_change"]["writes_per_node"]),
    ("one change: bytes written per node", lambda r: r["one_change"]["bytes_per_node"]),
    ("one change: last report -> Ready (ms)", lambda r: r["one_change"]["last_report_to_ready_ms"]),
    ("one change: controller CPU (s)", lambda r: r["one_change"]["controller_cpu_s"]),
    ("burst: report writes per node", lambda r: r["burst"]["writes_per_node"]),
    ("burst: bytes written per node", lambda r: r["burst"]["bytes_per_node"]),
    ("burst: last report -> all Ready (ms)", lambda r: r["burst"]["last_report_to_ready_ms"]),
    ("burst: controller CPU (s)", lambda r: r["burst"]["controller_cpu_s"]),
    ("controller peak RSS (MB)", lambda r: r["controller_peak_rss_mb"]),
    ("start: every listing in (s)", lambda r: r["startup_listings_s"]),
    ("start: every status written (s)", lambda r: r["startup_statuses_s"]),
    ("gated pods: release p50 (ms)", lambda r: r["gate"]["p50_ms"]),
    ("gated pods: release p99 (ms)", lambda r: r["gate"]["p99_ms"]),
]


def fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares: y = a + b * x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0
    return mean_y - slope * mean_x, slope


def tables(results: list[dict[str, Any]]) -> str:
    nodes = sorted({r["nodes"] for r in results})
    profiles = sorted({r["profiles"] for r in results})
    by = {(r["nodes"], r["profiles"]): r for r in results}
    out = []
    for title, value in FIGURES:
        if not all(_has(value, r) for r in results):
            continue
        out.append(f"\n{title}")
        head = ["P \\ N", *(f"{n:,}" for n in nodes)]
        extra = EXTRAPOLATE_TO not in nodes and len(nodes) > 1
        if extra:
            head.append(f"{EXTRAPOLATE_TO:,} (line)")
        head.append("fitted line")
        rows = [head]
        for p in profiles:
            cells = [f"{p:,}"]
            points = []
            for n in nodes:
                r = by.get((n, p))
                cells.append(_fmt(value(r)) if r else "")
                if r:
                    points.append((float(n), value(r)))
            a, b = fit(points) if len(points) > 1 else (points[0][1], 0.0)
            if extra:
                # A figure that does not grow with N (noise around a constant) has nothing to
                # read off: its line's slope is noise, and so would its value at 5,000 be.
                cells.append(_fmt(a + b * EXTRAPOLATE_TO) if b > 0 else "no growth")
            cells.append(f"{_fmt(a)} + {b:.4g} per node")
            rows.append(cells)
        if len(profiles) > 1:
            low, high = profiles[0], profiles[-1]
            cells = ["per profile"]
            for n in nodes:
                if (n, low) in by and (n, high) in by:
                    delta = value(by[(n, high)]) - value(by[(n, low)])
                    cells.append(f"{delta / (high - low):.4g}")
                else:
                    cells.append("")
            rows.append(cells + [""] * (len(head) - len(cells)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        for row in rows:
            out.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(out)


def _has(value: Callable[[dict[str, Any]], float], result: dict[str, Any]) -> bool:
    try:
        value(result)
    except KeyError:
        return False
    return True


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="100", help="comma-separated node counts (ascending)")
    parser.add_argument("--profiles", default="100", help="comma-separated profile counts")
    parser.add_argument("--burst", type=int, default=100, help="profiles changed at once")
    parser.add_argument("--pods", type=int, default=1000, help="gated pods (0: skip)")
    parser.add_argument(
        "--form",
        choices=["compact", "full"],
        default="compact",
        help="compact: nodes follow the published digests as agents do; full: they never do",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    nodes = sorted(int(n) for n in args.nodes.split(","))
    profiles = sorted(int(p) for p in args.profiles.split(","))
    load_before = os.getloadavg()
    began = time.monotonic()
    results = run_series(nodes, profiles, args)
    summary = {
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "seconds": round(time.monotonic() - began),
        "points": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"fleet bench: {len(results)} points in {summary['seconds']} s on {os.cpu_count()} "
        f"cores; load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}"
    )
    print(tables(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

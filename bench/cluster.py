"""Shared plumbing for the benchmarks that need the real control plane and real agents."""

from __future__ import annotations

import contextlib
import re
import statistics
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config

from agent.api.model import API_GROUP, API_VERSION, PLURAL
from tests.cluster.pytest_plugin import Cluster
from tests.integration.crds import install_crds


@contextlib.contextmanager
def control_plane(state_dir: Path | None) -> Iterator[Cluster]:
    """Reuse a running control plane in `state_dir`, or start one for this run and stop it."""
    if state_dir is not None:
        cluster = Cluster.in_dir(state_dir)
        cluster.up()
        yield _with_crds(cluster)
        return
    with tempfile.TemporaryDirectory(prefix="seccomp-sync-bench-") as tmp:
        cluster = Cluster.in_dir(Path(tmp) / "cluster")
        cluster.up()
        try:
            yield _with_crds(cluster)
        finally:
            cluster.down()


def _with_crds(cluster: Cluster) -> Cluster:
    return install_crds(cluster)


def api(cluster: Cluster) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


def new_namespace(cluster: Cluster, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    return name


def profile_body(namespace: str, name: str, errno: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "SeccompProfile",
        "metadata": {"name": name, "namespace": namespace},
        "spec": distinct_spec(errno),
    }


def distinct_spec(errno: int) -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["ptrace", "kexec_load", "bpf"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno % 4095,  # 0..4094: libseccomp refuses 4095
            },
            {"names": ["mount", "umount2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        ],
    }


def create_profiles(api_client: client.ApiClient, namespace: str, count: int) -> None:
    """Create `count` distinct profiles, in parallel (the API server is the bottleneck)."""
    custom = client.CustomObjectsApi(api_client)

    def create(index: int) -> None:
        custom.create_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, profile_body(namespace, f"p{index}", index)
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(count)))


def apiserver_counters(cluster: Cluster) -> dict[str, float]:
    """The API server's own request and watch-event counters, keyed by their label sets."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    wanted = ("apiserver_request_total{", "apiserver_watch_events_total{")
    counters: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(wanted):
            series, value = line.rsplit(" ", 1)
            counters[series] = float(value)
    return counters


def counter_delta(
    before: dict[str, float], after: dict[str, float], metric: str, **labels: str
) -> float:
    """Sum of increases of `metric` series whose labels match every regex in `labels`."""
    total = 0.0
    for series, value in after.items():
        if not series.startswith(metric + "{"):
            continue
        if all(re.search(f'{key}="({pattern})"', series) for key, pattern in labels.items()):
            total += value - before.get(series, 0.0)
    return total


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 0.5) * 1000, 2),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 2),
        "max_ms": round(max(samples) * 1000, 2),
        "mean_ms": round(statistics.fmean(samples) * 1000, 2),
    }


def process_tree_stats(pid: int, children: bool) -> dict[str, float]:
    """CPU seconds and peak RSS (VmHWM) of a process, or of its children (the compile worker)."""
    pids = _children(pid) if children else [pid]
    cpu = 0.0
    peak_kb = 0
    ticks = 100.0
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / ticks
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return {"cpu_seconds": cpu, "peak_rss_mb": peak_kb / 1024}


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        path = task / "children"
        if path.exists():
            children += [int(c) for c in path.read_text().split()]
    return children

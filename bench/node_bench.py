"""seccomp-sync on a real node (tests/node): what a pod waiting for its profile waits for.

Run from the repository root:
    python -m bench.node_bench [--cluster-dir DIR] [--pods 3] [--late-wait 30] [--json]

Measures, printing figures (never asserting them):
- node up: tests/node/up to Node Ready, and `ctr images import` of the agent image;
- the agent DaemonSet: apply to its pod Ready (first start on the node);
- profile applied -> pod Running, for a pod already failing with CreateContainerError, split
  into ours (API write -> file on the node) and the kubelet's (file -> container running: its
  retry backoff); once right after the first failure and once after the pod waited longer
  (``--late-wait`` s: the backoff has grown); and, for scale, a pod created after the profile;
- memory: the agent in its container (process RSS and the pod's memory cgroup) against the same
  agent as a plain process for a fake node with the same profiles;
- the image: OCI archive size and unpacked layer size.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.cluster import control_plane, new_namespace
from tests.cluster.pytest_plugin import Cluster
from tests.e2e import gating, pods
from tests.integration.agents import AgentProcess
from tests.integration.conftest import apply_profile
from tests.integration.profiles import DENY_MKDIR
from tests.node import agent_deploy
from tests.node.nodectl import cgroup_mounts, cgroup_pids, cmdline
from tests.node.pytest_plugin import AgentImage, Node, build_agent_image, start

POLL_S = 0.05


def timed_node_up(cluster: Cluster, work: Path, image: AgentImage) -> tuple[Node, dict[str, Any]]:
    started = time.monotonic()
    node = start(cluster, work / "node")
    up_s = time.monotonic() - started
    import_s = node.import_image(image.archive)
    return node, {"node_up_s": round(up_s, 1), "image_import_s": round(import_s, 1)}


def deploy_agent(cluster: Cluster, node: Node, image: AgentImage, work: Path) -> float:
    overlay = agent_deploy.write_kustomization(
        work / "overlay",
        image.tag,
        agent_deploy.api_port(cluster.kubeconfig, cluster.kubectl_path),
        agent_deploy.free_port(),
    )
    started = time.monotonic()
    cluster.kubectl("apply", "-k", str(overlay), timeout=120)

    def ready() -> bool:
        out = cluster.kubectl(
            "-n", agent_deploy.NAMESPACE, "get", "pods", "-l", agent_deploy.AGENT_LABEL, "-o",
            "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}",
        ).stdout  # fmt: skip
        return out.strip() == "True"

    pods.poll(ready, 300, "the agent pod Ready", interval=POLL_S)
    return time.monotonic() - started


def waiting_pod_to_running(
    cluster: Cluster, node: Node, namespace: str, wait_before_apply: float
) -> dict[str, float]:
    """A pod fails on a missing profile; then the profile is applied. Seconds from the apply
    to: the file on the node (ours), and the container running (adds the kubelet's retry)."""
    name = f"p-{uuid.uuid4().hex[:6]}"
    pods.create(
        cluster, namespace, pods.probe_pod(name, node.name, pods.localhost_profile(namespace, name))
    )
    pods.poll(
        lambda: (
            pods.waiting_reason(pods.get(cluster, namespace, name))[0] == "CreateContainerError"
        ),
        120,
        "CreateContainerError",
        interval=POLL_S,
    )
    time.sleep(wait_before_apply)
    path = node.seccomp_root / pods.localhost_profile(namespace, name)
    applied = time.monotonic()
    apply_profile(cluster, namespace, name, DENY_MKDIR)
    pods.poll(path.exists, 60, str(path), interval=0.005)
    on_disk = time.monotonic()
    pods.poll(lambda: pods.is_running(pods.get(cluster, namespace, name)), 600, "Running", POLL_S)
    running = time.monotonic()
    return {
        "apply_to_file_s": round(on_disk - applied, 3),
        "file_to_running_s": round(running - on_disk, 3),
        "apply_to_running_s": round(running - applied, 3),
    }


def fresh_pod_to_running(cluster: Cluster, node: Node, namespace: str) -> float:
    """A pod created after its profile is on the node: the kubelet's own start time."""
    name = f"f-{uuid.uuid4().hex[:6]}"
    apply_profile(cluster, namespace, name, DENY_MKDIR)
    path = node.seccomp_root / pods.localhost_profile(namespace, name)
    pods.poll(path.exists, 60, str(path), interval=0.01)
    started = time.monotonic()
    pods.create(
        cluster, namespace, pods.probe_pod(name, node.name, pods.localhost_profile(namespace, name))
    )
    pods.poll(lambda: pods.is_running(pods.get(cluster, namespace, name)), 120, "Running", POLL_S)
    return time.monotonic() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def agent_memory_in_pod(node: Node) -> dict[str, float]:
    state = json.loads((node.node_dir / "node.json").read_text())
    pids = cgroup_pids(state["cgroup_root"])
    agent_pid = next(pid for pid in pids if "seccomp-agent run" in cmdline(pid))
    memory = next(m for m in cgroup_mounts() if m.name == "memory")
    # The container's memory cgroup: what the kubelet compares with the pod's limit.
    cgroup = Path(f"/proc/{agent_pid}/cgroup").read_text()
    path = next(line.split(":", 2)[2] for line in cgroup.splitlines() if ":memory:" in line)
    container = memory / path.lstrip("/")
    usage = int((container / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (container / "memory.stat").read_text().splitlines())
    return {
        "agent_rss_mb": round(rss_mb(agent_pid), 1),
        "compile_worker_rss_mb": round(sum(rss_mb(c) for c in children(agent_pid)), 1),
        "container_cgroup_usage_mb": round(usage / 2**20, 1),
        "container_cgroup_rss_mb": round(int(stat["total_rss"]) / 2**20, 1),
    }


def agent_memory_as_process(cluster: Cluster, work: Path, settle_s: float) -> dict[str, float]:
    agent = AgentProcess(cluster, f"bench-plain-{uuid.uuid4().hex[:6]}", work / "plain",
                         work / "plain.log").start()  # fmt: skip
    try:
        agent.wait_ready(60)
        time.sleep(settle_s)
        assert agent.process is not None
        pid = agent.process.pid
        return {
            "agent_rss_mb": round(rss_mb(pid), 1),
            "compile_worker_rss_mb": round(sum(rss_mb(c) for c in children(pid)), 1),
        }
    finally:
        agent.stop()
        cluster.kubectl("delete", "node", agent.node, "--ignore-not-found", check=False)
        # Its report has no owner to be collected with: a node report left behind would count
        # as a node that runs an agent for the controller (gated pods would wait for it).
        cluster.kubectl(
            "delete", "seccompnodestatus", agent.node, "--ignore-not-found", check=False
        )  # fmt: skip


def image_size(image: AgentImage) -> dict[str, float]:
    unpacked = 0
    with tarfile.open(image.archive) as outer:
        index = json.loads(_read(outer, "index.json"))
        manifest = json.loads(_blob(outer, index["manifests"][0]["digest"]))
        for layer in manifest["layers"]:
            data = _blob(outer, layer["digest"])
            unpacked += len(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return {
        "archive_mb": round(image.archive.stat().st_size / 2**20, 1),
        "layers_unpacked_mb": round(unpacked / 2**20, 1),
        "layers": len(manifest["layers"]),
    }


def _read(outer: tarfile.TarFile, name: str) -> bytes:
    member = outer.extractfile(name)
    assert member is not None
    return member.read()


def _blob(outer: tarfile.TarFile, digest: str) -> bytes:
    return _read(outer, "blobs/sha256/" + digest.removeprefix("sha256:"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster-dir", type=Path, help="reuse the control plane in DIR")
    parser.add_argument("--pods", type=int, default=3, help="waiting pods per case")
    parser.add_argument("--late-wait", type=float, default=30.0, help="seconds a late pod waits")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    image = build_agent_image()
    results: dict[str, Any] = {"image": image_size(image)}
    with (
        tempfile.TemporaryDirectory(prefix="seccomp-sync-node-bench-", dir="/tmp") as tmp,
        control_plane(args.cluster_dir) as cluster,
    ):
        work = Path(tmp)
        node, results["node"] = timed_node_up(cluster, work, image)
        try:
            results["node"]["agent_daemonset_ready_s"] = round(
                deploy_agent(cluster, node, image, work), 1
            )
            time.sleep(5)  # the same settling time as the plain process gets below
            results["memory"] = {"in_pod_after_ready": agent_memory_in_pod(node)}
            namespace = new_namespace(cluster, "bench-node")
            # What a pod waits for without the gating policy (bench.gate_bench measures the
            # gate): the binding is removed meanwhile, so the pods do reach the kubelet early.
            without_gate = gating.binding_removed(cluster, namespace, node.name)
            with without_gate:
                results["waiting_pod"] = {
                    "right_after_first_failure": [
                        waiting_pod_to_running(cluster, node, namespace, 0)
                        for _ in range(args.pods)
                    ],
                    f"after_waiting_{args.late_wait:.0f}s": [
                        waiting_pod_to_running(cluster, node, namespace, args.late_wait)
                        for _ in range(args.pods)
                    ],
                    "created_after_the_profile_s": [
                        round(fresh_pod_to_running(cluster, node, namespace), 3)
                        for _ in range(args.pods)
                    ],
                }
            results["memory"]["in_pod_after_the_pods"] = agent_memory_in_pod(node)
            results["memory"]["plain_process"] = agent_memory_as_process(cluster, work, 5)
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        finally:
            cluster.kubectl("delete", *agent_deploy.CLUSTER_OBJECTS, "--ignore-not-found",
                            check=False)  # fmt: skip
            cluster.kubectl("delete", "namespace", agent_deploy.NAMESPACE, "--wait=true",
                            "--ignore-not-found", timeout=180, check=False)  # fmt: skip
            node.down()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)
    return 0


def print_table(results: dict[str, Any]) -> None:
    node, image, memory = results["node"], results["image"], results["memory"]
    rows = [
        ("node up (tests/node/up to Node Ready)", f"{node['node_up_s']} s"),
        ("agent image import (ctr images import)", f"{node['image_import_s']} s"),
        ("agent DaemonSet: apply to pod Ready", f"{node['agent_daemonset_ready_s']} s"),
    ]
    for case, samples in results["waiting_pod"].items():
        if case.startswith("created"):
            rows.append(("pod created after its profile: to Running", _list(samples)))
            continue
        rows.append((f"waiting pod, {case.replace('_', ' ')}:", ""))
        for key, label in (
            ("apply_to_file_s", "  profile applied -> file on node (ours)"),
            ("file_to_running_s", "  file on node -> Running (kubelet retry)"),
            ("apply_to_running_s", "  profile applied -> Running (total)"),
        ):
            rows.append((label, _list([s[key] for s in samples])))
    for key, label in (
        ("in_pod_after_ready", "agent RSS in its pod, 5 s after Ready"),
        ("in_pod_after_the_pods", "agent RSS in its pod, after the runs above"),
    ):
        pod = memory[key]
        rows.append(
            (
                label,
                f"{pod['agent_rss_mb']} MB + compile worker {pod['compile_worker_rss_mb']} MB; "
                f"container cgroup {pod['container_cgroup_usage_mb']} MB "
                f"(rss {pod['container_cgroup_rss_mb']} MB)",
            )
        )
    plain = memory["plain_process"]
    rows += [
        (
            "agent RSS as a plain process, 5 s after ready",
            f"{plain['agent_rss_mb']} MB + compile worker {plain['compile_worker_rss_mb']} MB",
        ),
        (
            "image size",
            f"{image['archive_mb']} MB OCI archive, {image['layers_unpacked_mb']} MB unpacked "
            f"({image['layers']} layers)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _list(samples: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in samples) + " s"


if __name__ == "__main__":
    sys.exit(main())

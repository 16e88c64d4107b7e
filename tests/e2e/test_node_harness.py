"""tests/node itself: a node joins as a real, Ready kubelet, and `down` leaves nothing behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cluster.pytest_plugin import Cluster
from tests.node.nodectl import alive, all_pids, cgroup_mounts, cmdline
from tests.node.pytest_plugin import Node

pytestmark = [pytest.mark.cluster, pytest.mark.node]


def processes_naming(path: Path) -> list[int]:
    return [pid for pid in all_pids() if alive(pid) and str(path) in cmdline(pid)]


def test_two_nodes_join_and_down_leaves_nothing_behind(
    cluster: Cluster, node: Node, start_node: Callable[..., Node]
) -> None:
    second = start_node()
    assert second.name != node.name
    for each in (node, second):
        status = json.loads(cluster.kubectl("get", "node", each.name, "-o", "json").stdout)
        ready = {c["type"]: c["status"] for c in status["status"]["conditions"]}["Ready"]
        assert ready == "True"
        # Its name is its address: the API server reaches its kubelet (logs, exec) there.
        assert {"type": "InternalIP", "address": each.name} in status["status"]["addresses"]
    state = json.loads((second.node_dir / "node.json").read_text())
    assert processes_naming(second.node_dir)

    second.down()

    assert not second.node_dir.exists()
    assert processes_naming(second.node_dir) == []
    assert not alive(state["kubelet_pid"]) and not alive(state["containerd_pid"])
    cgroup_root = state["cgroup_root"].lstrip("/")
    assert [m for m in cgroup_mounts() if (m / cgroup_root).exists()] == []
    assert str(second.node_dir) not in Path("/proc/self/mountinfo").read_text()
    gone = cluster.kubectl("get", "node", second.name, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    second.down()  # a second call is a no-op
    # The first node is untouched.
    assert processes_naming(node.node_dir)

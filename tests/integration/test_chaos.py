"""Chaos against the real control plane and real disks: the end state equals the API everywhere.

Two agents (real processes, one per fake Node), each writing to its own tmpfs, go through what
a broken node and a flaky network do to them: a read-only remount, the managed directory removed,
bad names planted, kill -9 in the middle of a burst of changes, the control plane stopped and
started again, the leading controller replica killed. After each fault, every node's files must
equal the rendering of the valid objects in the API, readiness must tell the truth meanwhile, and
every profile ends Ready.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.api.keys import is_dns_label
from agent.api.model import OciSeccomp
from agent.profiles.render import render
from tests.cluster.pytest_plugin import Cluster
from tests.integration.agents import AgentProcess, running_agent, wait_for
from tests.integration.conftest import apply_profile, delete_profile
from tests.integration.controller import ControllerProcess
from tests.integration.nodes import delete_node

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(os.geteuid() != 0, reason="tmpfs mounts and read-only remounts need root"),
]


def deny(errno_ret: int) -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno_ret}],
    }


@pytest.fixture
def tmpfs_roots(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    roots = (tmp_path / "root-a", tmp_path / "root-b")
    for root in roots:
        root.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(root)], check=True)
    try:
        yield roots
    finally:
        for root in roots:
            subprocess.run(["umount", "-l", str(root)], check=False)


def expected_files(cluster: Cluster, namespace: str) -> dict[str, bytes]:
    """What every node must hold: the API's objects, rendered by the agent's own renderer."""
    out = cluster.kubectl("get", "seccompprofiles", "-n", namespace, "-o", "json").stdout
    return {
        item["metadata"]["name"]: render(OciSeccomp.model_validate(item["spec"])).content
        for item in json.loads(out)["items"]
    }


def files_on(agent: AgentProcess, namespace: str) -> dict[str, bytes]:
    directory = agent.managed_dir / namespace
    if not directory.is_dir():
        return {}
    found = {}
    for entry in directory.iterdir():
        name = entry.name.removesuffix(".json")
        # Files planted with names no profile can have are not the agent's; they are left alone.
        if entry.name.endswith(".json") and is_dns_label(name):
            try:
                found[name] = entry.read_bytes()
            except FileNotFoundError:
                continue
    return found


def converge(
    cluster: Cluster, namespace: str, agents: list[AgentProcess], what: str, timeout: float = 60
) -> None:
    def done() -> bool:
        want = expected_files(cluster, namespace)
        for agent in agents:
            agent.assert_running()
            if files_on(agent, namespace) != want or agent.http("/readyz")[0] != 200:
                return False
        return True

    try:
        wait_for(done, timeout, interval=0.2, what=what)
    except AssertionError as exc:
        details = "\n".join(
            f"{a.node}: readyz={a.http('/readyz')} files={sorted(files_on(a, namespace))}\n"
            f"{a.log_tail(15)}"
            for a in agents
        )
        want = sorted(expected_files(cluster, namespace))
        raise AssertionError(f"{exc}\nwant {want}\n{details}") from None


def remove_tree(path: Path) -> None:
    """`rm -rf`, racing an agent that restores files as they go: retry until it went once."""
    for _ in range(20):
        try:
            shutil.rmtree(path)
        except OSError:  # the agent wrote a file back before the directory itself went
            continue
        return
    raise AssertionError(f"could not remove {path}")


def remount(root: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(root)], check=True)


def write_failed_events(cluster: Cluster, namespace: str, node: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=WriteFailed", "-o", "json"
    ).stdout
    return [e for e in json.loads(out)["items"] if e["message"].startswith(f"node {node}:")]


def lease_holder(cluster: Cluster, namespace: str) -> str | None:
    result = cluster.kubectl(
        "get",
        "lease",
        "seccomp-sync-controller",
        "-n",
        namespace,
        "-o",
        "json",
        check=False,
    )
    if result.returncode != 0:
        return None
    holder = json.loads(result.stdout)["spec"].get("holderIdentity")
    return str(holder) if holder else None


@contextmanager
def _controller(cluster: Cluster, namespace: str, log: Path) -> Iterator[ControllerProcess]:
    controller = ControllerProcess(cluster, namespace, log).start()
    try:
        controller.wait_ready()
        yield controller
    finally:
        controller.stop()


def all_ready(cluster: Cluster, namespace: str) -> bool:
    out = cluster.kubectl("get", "seccompprofiles", "-n", namespace, "-o", "json").stdout
    items = json.loads(out)["items"]
    return bool(items) and all(
        any(
            c.get("type") == "Ready"
            and c.get("status") == "True"
            and c.get("observedGeneration") == item["metadata"]["generation"]
            for c in (item.get("status") or {}).get("conditions") or []
        )
        for item in items
    )


def test_chaos_ends_with_every_node_equal_to_the_api(
    crd: Cluster, namespace: str, tmp_path: Path, tmpfs_roots: tuple[Path, Path]
) -> None:
    suffix = uuid.uuid4().hex[:6]
    node_a, node_b = f"chaos-a-{suffix}", f"chaos-b-{suffix}"
    args = ("--namespace", namespace, "--resync-seconds", "3")
    crd.kubectl("delete", "seccompnodestatuses", "--all", "--wait=true")
    with ExitStack() as stack:
        a = stack.enter_context(
            running_agent(crd, node_a, tmpfs_roots[0], tmp_path / "a.log", *args)
        )
        b = stack.enter_context(
            running_agent(crd, node_b, tmpfs_roots[1], tmp_path / "b.log", *args)
        )
        agents = [a, b]
        # Two controller replicas elect one (a Lease in this test's namespace).
        controllers = [
            stack.enter_context(_controller(crd, namespace, tmp_path / f"controller-{i}.log"))
            for i in range(2)
        ]
        for index in range(5):
            apply_profile(crd, namespace, f"p{index}", deny(index + 1))
        converge(crd, namespace, agents, "five profiles on both nodes")

        # A read-only remount: A is honestly not ready, says why, and floods nothing.
        remount(a.root, "ro")
        for index in range(5, 8):
            apply_profile(crd, namespace, f"p{index}", deny(index + 1))
        apply_profile(crd, namespace, "p0", deny(40))
        wait_for(lambda: "EROFS" in a.http("/readyz")[1], 30, what="A not ready with EROFS")
        assert a.http("/healthz")[0] == 200  # not a reason to restart the pod
        wait_for(lambda: a.metric("seccomp_sync_write_failures") >= 4, 30, what="the gauge")
        converge(crd, namespace, [b], "B unaffected")
        assert a.http("/readyz")[0] == 503
        events = write_failed_events(crd, namespace, node_a)
        assert 1 <= len(events) <= 4, [e["message"] for e in events]
        remount(a.root, "rw")
        converge(crd, namespace, agents, "A caught up after the remount")
        wait_for(lambda: a.metric("seccomp_sync_write_failures") == 0, 5, what="gauge at 0")

        # The managed directory removed on the host, twice.
        for attempt in range(2):
            remove_tree(b.managed_dir)
            converge(crd, namespace, agents, f"B restored after removal {attempt + 1}")

        # Bad names planted on the host, then a change: syncing goes on.
        planted = a.managed_dir / namespace
        (planted / "Evil.json").write_text("{}")
        (planted / "my.profile.json").write_text("{}")
        (a.managed_dir / "Bad_Namespace").mkdir()
        apply_profile(crd, namespace, "after-planting", deny(9))
        converge(crd, namespace, agents, "a change after bad names were planted")
        assert (planted / "Evil.json").read_text() == "{}"  # never touched

        # kill -9 in the middle of a burst of changes, then a restart.
        for index in range(20):
            apply_profile(crd, namespace, f"burst{index}", deny(index + 1))
            if index == 5:
                a.stop(signal.SIGKILL)
        delete_profile(crd, namespace, "p1")
        a.start()
        converge(crd, namespace, agents, "A after kill -9 and restart", timeout=90)
        assert not [p for p in planted.iterdir() if ".tmp-" in p.name]

        # The control plane goes away: the agents keep serving what they have, then resync.
        crd.stop()
        try:
            for agent in agents:
                wait_for(
                    lambda ag=agent: ag.http("/healthz")[0] == 200,
                    5,
                    what=f"{agent.node} alive: {agent.http('/healthz')}\n{agent.log_tail(10)}",
                )
                assert agent.http("/readyz")[0] == 200  # the disk is still right
        finally:
            crd.up()
        apply_profile(crd, namespace, "after-outage", deny(11))
        delete_profile(crd, namespace, "p2")
        converge(crd, namespace, agents, "both after the control plane came back", timeout=90)

        # The leading controller is killed: the other replica takes over, every profile Ready.
        leader = wait_for(lambda: lease_holder(crd, namespace), 30, what="a leading controller")
        victim = next(c for c in controllers if c.identity == leader)
        survivor = next(c for c in controllers if c is not victim)
        victim.stop(signal.SIGKILL)
        wait_for(
            lambda: lease_holder(crd, namespace) == survivor.identity,
            60,
            what="the other controller leading",
        )
        converge(crd, namespace, agents, "the end state", timeout=90)
        wait_for(lambda: all_ready(crd, namespace), 60, interval=0.5, what="every profile Ready")
        for agent in agents:
            assert agent.http("/healthz")[0] == 200
    delete_node(crd, node_a)
    delete_node(crd, node_b)

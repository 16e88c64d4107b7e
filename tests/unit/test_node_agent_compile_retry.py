"""The node agent never caches a transient compile failure as a verdict, and retries it.

Real parts: the real libseccomp worker (killed from outside with SIGKILL mid-compile), the real
store on a temporary disk, the node agent's own profile worker and syncer. No API server is
needed: the agent's only API calls are the callables handed in.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.api.keys import ProfileKey, profile_key
from agent.node.agent import NodeAgent
from agent.node.catalog import ProfileCatalog
from agent.node.metrics import Metrics
from agent.node.report_writer import RecordingStatusWriter
from agent.node.store import ProfileStore
from agent.runtime.events import RecordedEvents
from agent.seccomp.compiler import ArchCompileResult, Compiler
from agent.seccomp.cost import Lane, lane_for
from tests.unit.hooked_compile_worker import HOOKED_WORKER_COMMAND, TEST_HOOK_KEY, worker_pids

X86_64 = "SCMP_ARCH_X86_64"


def body(generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"namespace": "team-a", "name": "web", "uid": "u-1", "generation": generation},
        "spec": {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}],
        },
    }


def node_agent(
    store: ProfileStore, compile_profile: Any, events: RecordedEvents | None = None
) -> NodeAgent:
    """A node agent on `store`; its API reads, which nothing here needs, answer empty."""
    return NodeAgent(
        node_name="node-1",
        architectures=[X86_64],
        catalog=ProfileCatalog(),
        store=store,
        metrics=Metrics(),
        compile_profile=compile_profile,
        events=events or RecordedEvents(),
        list_profiles=dict,
        get_profile=lambda key: None,
        list_pods=dict,
        status=RecordingStatusWriter(),
    )


async def handled(agent: NodeAgent, event_type: str, event: dict[str, Any]) -> None:
    """Deliver a watch event, and wait until the agent's profile worker has handled it."""
    agent.on_profile_event(event_type, event)
    await agent.profiles.settled(profile_key(event))


async def eventually(check: Any, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_a_worker_killed_mid_compile_is_retried_and_never_reported_invalid(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "hung-once"
    hang_once = {"architecture": X86_64, "action": "hang-once", "marker": str(marker)}
    events = RecordedEvents()
    (tmp_path / "root").mkdir()
    store = ProfileStore(tmp_path / "root")
    store.ensure_managed_dir()
    key = ProfileKey("team-a", "web")

    async def scenario(compiler: Compiler) -> None:
        def compile_profile(document: Any, architectures: Sequence[str]) -> list[ArchCompileResult]:
            # The first compile hangs until killed; the retry finds the marker and compiles.
            return compiler.compile({**document, TEST_HOOK_KEY: hang_once}, architectures)

        agent = node_agent(store, compile_profile, events)
        parts = [asyncio.create_task(agent.syncer.run()), asyncio.create_task(agent.profiles.run())]
        before = worker_pids()
        handling = asyncio.create_task(handled(agent, "ADDED", body()))
        await eventually(lambda: marker.exists() and worker_pids() - before)
        [pid] = worker_pids() - before
        os.kill(pid, signal.SIGKILL)  # from outside, mid-compile: not the profile's fault
        await handling
        assert key not in agent.catalog.records, "a transient failure must not be cached"
        assert agent.compile_retries.pending() == {key}
        await eventually(lambda: key in agent.catalog.records)
        record = agent.catalog.records[key]
        assert record.valid and record.generation == 1
        path = tmp_path / "root" / "seccomp-sync" / "team-a" / "web.json"
        await eventually(path.exists)
        assert json.loads(path.read_text())["defaultAction"] == "SCMP_ACT_ERRNO"
        for part in parts:
            part.cancel()
        agent.validation_lanes.shutdown()

    with Compiler(timeout_seconds=30, worker_command=HOOKED_WORKER_COMMAND) as compiler:
        asyncio.run(scenario(compiler))
    assert events.warnings == [], "nothing may blame the profile"


def test_a_newer_generation_supersedes_a_pending_retry(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    store = ProfileStore(tmp_path / "root")
    store.ensure_managed_dir()
    key = ProfileKey("team-a", "web")
    calls: list[int] = []

    async def scenario(compiler: Compiler) -> None:
        def compile_profile(document: Any, architectures: Sequence[str]) -> list[ArchCompileResult]:
            calls.append(len(document.get("syscalls", [])))
            if len(calls) == 1:  # the first compile: as if the worker had been killed
                return [ArchCompileResult(a, None, "killed", transient=True) for a in architectures]
            return compiler.compile(document, architectures)

        agent = node_agent(store, compile_profile)
        worker = asyncio.create_task(agent.profiles.run())
        await handled(agent, "ADDED", body(1))
        assert agent.compile_retries.pending() == {key}
        newer = body(2)
        newer["spec"]["syscalls"].append({"names": ["close"], "action": "SCMP_ACT_ALLOW"})
        await handled(agent, "MODIFIED", newer)
        assert agent.compile_retries.pending() == set()
        assert agent.catalog.records[key].generation == 2
        await asyncio.sleep(1.5)  # past the first retry's delay: it must not bring back gen 1
        assert agent.catalog.records[key].generation == 2
        assert calls == [1, 2]
        worker.cancel()
        agent.validation_lanes.shutdown()

    with Compiler() as compiler:
        asyncio.run(scenario(compiler))


def expensive_body(name: str) -> dict[str, Any]:
    """The costliest shape the CRD's bounds allow (512 argument conditions in all): 85 rules x
    6 equality conditions on one syscall, for three architectures; the expensive lane."""
    rules = [
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": i, "value": v * 7 + i, "op": "SCMP_CMP_EQ"} for i in range(6)],
        }
        for v in range(85)
    ]
    noisy = body()
    noisy["metadata"] = {**noisy["metadata"], "name": name, "uid": f"u-{name}"}
    noisy["spec"] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules,
    }
    return noisy


def test_a_trivial_profile_gets_its_verdict_while_expensive_ones_still_compile(
    tmp_path: Path,
) -> None:
    (tmp_path / "root").mkdir()
    store = ProfileStore(tmp_path / "root")
    noisy = [expensive_body(f"noisy-{i}") for i in range(6)]  # as many as the default pool
    trivial_key = ProfileKey("team-a", "web")

    def slow_when_expensive(document: Any, architectures: Sequence[str]) -> list[ArchCompileResult]:
        # Since the CRD bounds a whole profile, the costliest allowed shape compiles in ~60 ms
        # here; half a second per compile stands for a slower node, or looser bounds, so the
        # order below depends on the lanes, not on this machine's speed.
        if lane_for(document, len(architectures)) is Lane.EXPENSIVE:
            time.sleep(0.5)
        return compiler.compile(document, architectures)

    async def scenario(compiler: Compiler) -> list[str]:
        agent = node_agent(store, slow_when_expensive)
        worker = asyncio.create_task(agent.profiles.run())
        done: list[str] = []

        async def handle(event: dict[str, Any]) -> None:
            await handled(agent, "ADDED", event)
            done.append(event["metadata"]["name"])

        tasks = [asyncio.create_task(handle(event)) for event in noisy]
        await asyncio.sleep(0.05)  # the expensive ones arrived first
        await handle(body())
        await asyncio.gather(*tasks)
        assert agent.catalog.records[trivial_key].valid
        worker.cancel()
        agent.validation_lanes.shutdown()
        return done

    with Compiler() as compiler:
        done = asyncio.run(scenario(compiler))
    # Ordering, not wall-clock: the trivial verdict comes before at least five of the six.
    assert done.index("web") <= 1, done


def test_a_restart_compiles_only_what_its_disk_does_not_hold_already(tmp_path: Path) -> None:
    """An agent restarted on its own disk finds every file in place: the same bytes passed the
    compile when they were written and are not compiled again; anything else still is."""
    (tmp_path / "root").mkdir()
    store = ProfileStore(tmp_path / "root")
    store.ensure_managed_dir()
    path = tmp_path / "root" / "seccomp-sync" / "team-a" / "web.json"
    compiled: list[str] = []

    async def start(compiler: Compiler, event: dict[str, Any]) -> NodeAgent:
        def compile_profile(document: Any, architectures: Sequence[str]) -> list[ArchCompileResult]:
            compiled.append(document["defaultAction"])
            return compiler.compile(document, architectures)

        agent = node_agent(store, compile_profile)
        parts = [asyncio.create_task(agent.syncer.run()), asyncio.create_task(agent.profiles.run())]
        await handled(agent, "ADDED", event)
        await agent.syncer.wait_idle()
        for part in parts:
            part.cancel()
        agent.validation_lanes.shutdown()
        return agent

    async def scenario(compiler: Compiler) -> None:
        first = await start(compiler, body())
        written = path.read_bytes()
        assert compiled == ["SCMP_ACT_ERRNO"]
        # A restart: nothing compiled, nothing written, and the profile counts as installed.
        restarted = await start(compiler, body())
        assert compiled == ["SCMP_ACT_ERRNO"]
        assert restarted.catalog.status_of(ProfileKey("team-a", "web")) == first.catalog.status_of(
            ProfileKey("team-a", "web")
        )
        assert restarted.catalog.records[ProfileKey("team-a", "web")].valid
        assert path.read_bytes() == written
        # Changed on the host while the agent was down: compiled again, then restored.
        path.write_bytes(written.replace(b"SCMP_ACT_ERRNO", b"SCMP_ACT_LOG"))
        await start(compiler, body())
        assert compiled == ["SCMP_ACT_ERRNO", "SCMP_ACT_ERRNO"]
        assert path.read_bytes() == written
        # A profile whose content changed meanwhile is compiled before it is written.
        changed = body(2)
        changed["spec"]["defaultAction"] = "SCMP_ACT_KILL_PROCESS"
        await start(compiler, changed)
        assert compiled[-1] == "SCMP_ACT_KILL_PROCESS"
        assert json.loads(path.read_text())["defaultAction"] == "SCMP_ACT_KILL_PROCESS"

    with Compiler() as compiler:
        asyncio.run(scenario(compiler))

"""How the gate handler sends its releases: all of them, at most PARALLEL_WRITES at once, none
started once it stops leading, and decided once per kind of pod. The controller is made by its
one builder; its pod writes go to fakes."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from typing import Any

from agent.api.keys import ProfileKey
from agent.api.node_report import SHA_PREFIX, NodeReport
from agent.controller.gate_decision import Release, Wait, decide, readiness
from agent.controller.gated_pods import GATE, GatedPod, release_patch
from agent.controller.gates import EVENT_REASON, PARALLEL_WRITES, PodGates
from agent.controller.main import CONNECTIONS, WATCHES, Controller
from agent.controller.pod_gates import RecordedPodGates
from agent.controller.profile_status import ProfileView
from agent.controller.settings import (
    DEFAULT_GRACE_SECONDS,
)
from tests.unit.test_controller_decisions import Fakes

WEB = ProfileKey("default", "web")
SHA = "a" * 64


class SlowPodGates:
    """Each release takes `seconds`, or until `unblock` is set; counts calls and the most in
    flight at once."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.unblock = threading.Event()
        self.released: list[str] = []
        self.started = 0
        self.most_at_once = 0
        self._in_flight = 0
        self._lock = threading.Lock()

    def release(self, pod: GatedPod, ops: list[dict[str, Any]]) -> bool:
        with self._lock:
            self.started += 1
            self._in_flight += 1
            self.most_at_once = max(self.most_at_once, self._in_flight)
        if self.seconds:
            time.sleep(self.seconds)
        else:
            self.unblock.wait(10)
        with self._lock:
            self._in_flight -= 1
            self.released.append(pod.ref)
        return True

    def warn(self, pod: GatedPod, reason: str, message: str) -> None:
        raise AssertionError(f"no pod here waits for a reason: {pod.ref}: {message}")


def controller_with(pods: PodGates) -> Controller:
    """Made as the other controller tests make theirs (`Fakes`), its pod writes going to `pods`."""
    fakes = Fakes()
    fakes.io = dataclasses.replace(fakes.io, pods=pods)
    return fakes.controller()


def with_nodes(controller: Controller, names: list[str]) -> None:
    """The Nodes the reports are about, where the controller counts only reports of real Nodes
    (a state without Nodes counts every report)."""
    replace_nodes = getattr(controller.state, "replace_nodes", None)
    if replace_nodes is not None:
        replace_nodes(names)


def ready_controller(pods: SlowPodGates, count: int) -> Controller:
    controller = controller_with(pods)
    with_nodes(controller, ["n1"])
    controller.state.replace_profiles([ProfileView(WEB, 1, SHA, uid="u-web")])
    controller.state.replace_reports([NodeReport("n1", True, {WEB: SHA[:SHA_PREFIX]}, {})])
    controller.state.replace_pods(
        GatedPod(
            "default", f"app-{i}", f"u-{i}", "7", time.time(), frozenset({WEB}), (GATE,), None, None
        )
        for i in range(count)
    )
    return controller


def test_every_ready_pod_is_released_with_a_bounded_number_in_flight() -> None:
    pods = SlowPodGates(seconds=0.01)
    controller = ready_controller(pods, 4 * PARALLEL_WRITES)
    asyncio.run(controller.gates.reconcile(time.time()))
    assert sorted(pods.released) == sorted(f"default/app-{i}" for i in range(4 * PARALLEL_WRITES))
    assert 1 < pods.most_at_once <= PARALLEL_WRITES
    assert controller.gates.waiting_counts() == {}


def test_no_release_starts_once_the_handler_is_cancelled() -> None:
    pods = SlowPodGates()
    controller = ready_controller(pods, 4 * PARALLEL_WRITES)

    async def scenario() -> None:
        task = asyncio.create_task(controller.gates.reconcile(time.time()))
        deadline = time.monotonic() + 10
        while pods.started < PARALLEL_WRITES and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.05)
        pods.unblock.set()
        await asyncio.sleep(0.2)

    asyncio.run(scenario())
    assert pods.started == PARALLEL_WRITES
    assert len(pods.released) == PARALLEL_WRITES


def test_pods_decided_together_get_what_each_would_get_alone() -> None:
    """One decision per kind of pod in a pass (`decision_key`): the releases, narrowings and
    Events are those of deciding every pod on its own."""
    fast, slow, gone = (ProfileKey("default", n) for n in ("fast", "slow", "gone"))
    views = [ProfileView(fast, 1, SHA, uid="u-fast"), ProfileView(slow, 1, SHA, uid="u-slow")]
    reports = [
        NodeReport("n1", True, {fast: SHA[:SHA_PREFIX], slow: SHA[:SHA_PREFIX]}, {}),
        NodeReport("n2", True, {fast: SHA[:SHA_PREFIX]}, {}),
        NodeReport("n3", True, {fast: SHA[:SHA_PREFIX], slow: SHA[:SHA_PREFIX]}, {}),
    ]
    now = time.time()
    kinds = itertools.product(
        (
            frozenset({fast}),
            frozenset({slow}),
            frozenset({fast, slow}),
            frozenset({gone}),
            frozenset(),
        ),
        (None, frozenset({"n1"}), frozenset({"n2"})),
        (1.0, 1.0, 500.0, 500.0),  # seconds waited: two alike within the grace period, two past it
    )
    pods = [
        GatedPod("default", f"app-{i}", f"u-{i}", "7", now - age, profiles, (GATE,), None, pinned)
        for i, (profiles, pinned, age) in enumerate(kinds)
    ]
    ready = {
        k: readiness(k, next((v for v in views if v.key == k), None), reports)
        for k in (fast, slow, gone)
    }
    nodes = frozenset({"n1", "n2", "n3"})
    alone = {p.ref: decide(p, ready, nodes, now, DEFAULT_GRACE_SECONDS) for p in pods}

    fakes = RecordedPodGates()
    controller = controller_with(fakes)
    with_nodes(controller, sorted(nodes))
    controller.state.replace_profiles(views)
    controller.state.replace_reports(reports)
    controller.state.replace_pods(pods)
    asyncio.run(controller.gates.reconcile(now))

    by_ref = {p.ref: p for p in pods}
    released = {
        ref: release_patch(by_ref[ref], d.exclude)
        for ref, d in alone.items()
        if isinstance(d, Release)
    }
    warned = sorted(
        (ref, EVENT_REASON, d.message)
        for ref, d in alone.items()
        if isinstance(d, Wait) and d.message
    )
    assert released and warned and len(released) + len(warned) < len(pods)  # all three kinds
    assert fakes.released == released
    assert sorted(fakes.events) == warned


def test_the_connection_pool_holds_every_watch_and_every_write_in_flight() -> None:
    """Above its size urllib3 opens and discards a connection per request: CONNECTIONS must
    count every watch the controller runs (each holds a connection while it streams)."""
    controller = controller_with(RecordedPodGates())
    watches = [name for name in controller.supervisor.components if name.startswith("watch-")]
    assert len(watches) == WATCHES
    assert CONNECTIONS >= WATCHES + 1 + PARALLEL_WRITES  # the watches, the Lease, the releases

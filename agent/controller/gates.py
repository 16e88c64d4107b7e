"""Release gated pods once every profile they name is Ready where they may run.

Level-based: each pass looks at every gated pod as the watches show it now, so a new leader,
or a pod created while no leader ran, is handled like any other. A pod is patched at most once
per resourceVersion; an Event is posted once per pod and reason.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from agent.api.keys import ProfileKey
from agent.controller.gate_decision import Decision, ProfileReadiness, Release, decide, readiness
from agent.controller.gated_pods import GatedPod, release_patch
from agent.controller.metrics import ControllerMetrics
from agent.controller.state import ClusterState, waiting_counts
from agent.runtime.waiting import event_within

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.02
TICK_SECONDS = 1.0  # how often waiting pods are looked at again for the grace period
# Releases (and Events) in flight at once. Each is one request the API server answers in a few
# to a few tens of milliseconds (an etcd write): with 8 in flight, 1,000 pods took 8 s on a
# loaded API server. 32 keeps a release of 1,000 pods near a second wherever the server answers
# within 30 ms, and stays a small share of what the API server admits at once: mutating requests
# are capped at 200 by default (--max-mutating-requests-inflight), and with priority and
# fairness a controller's service account shares the workload-low level (about 245 of the
# default 600 seats) with every other controller in the cluster.
PARALLEL_WRITES = 32
EVENT_REASON = "SeccompProfileNotReady"


def decision_key(pod: GatedPod, now: float, grace_seconds: float) -> Hashable:
    """Everything `gate_decision.decide` reads of a pod: pods equal in it get the same decision
    in one pass. (A field `decide` starts to read belongs here too.)"""
    return (pod.profiles, pod.recordings, pod.pinned_nodes, now - pod.created < grace_seconds)


class PodGates(Protocol):
    """The handler's writes (`agent.controller.pod_gates`: the API, and a fake)."""

    def release(self, pod: GatedPod, ops: list[dict[str, Any]]) -> bool:
        """Apply a release patch; False when the pod changed or went away meanwhile."""
        ...

    def warn(self, pod: GatedPod, reason: str, message: str) -> None:
        """A Warning Event on the pod (`kubectl describe pod`); best effort, never raises."""
        ...


class GateHandler:
    def __init__(
        self,
        state: ClusterState,
        wake: asyncio.Event,
        pods: PodGates,
        metrics: ControllerMetrics,
        grace_seconds: float,
        on_waiting_change: Callable[[set[ProfileKey]], None],
        recordings: Callable[[ProfileKey, frozenset[str]], ProfileReadiness] | None = None,
    ) -> None:
        """`wake` is set on every change of `state`; `on_waiting_change` hears which profiles'
        count of waiting pods changed; `recordings` says where a recording is ready (in-cluster
        recording, `recording_handler.RecordingBoard.readiness`), given the counted nodes."""
        self._recordings = recordings
        self._state = state
        self._wake = wake
        self._pods = pods
        self._metrics = metrics
        self._grace = grace_seconds
        self._on_waiting_change = on_waiting_change
        self._patched: dict[str, str] = {}  # uid -> resourceVersion already released
        self._warned: dict[str, str] = {}  # uid -> last Event message
        self._waiting: dict[str, frozenset[ProfileKey]] = {}
        self._counts: dict[ProfileKey, int] = {}
        # Its own threads: releasing a pod must not queue behind a burst of status writes in
        # the default executor (a few threads on a small node).
        self._writers = concurrent.futures.ThreadPoolExecutor(
            PARALLEL_WRITES, thread_name_prefix="gate-writer"
        )

    def waiting_counts(self) -> dict[ProfileKey, int]:
        return dict(self._counts)

    async def run(self) -> None:
        """Runs while this controller leads; cancelled when it stops leading."""
        self._wake.set()
        try:
            while True:
                if await event_within(self._wake, TICK_SECONDS):
                    await asyncio.sleep(DEBOUNCE_SECONDS)
                elif not self._waiting:
                    continue
                self._wake.clear()
                if self._state.synced:
                    await self.reconcile(time.time())
        finally:
            self._patched.clear()
            self._set_waiting({}, time.time())

    async def reconcile(self, now: float) -> None:
        """One pass over every gated pod."""
        pods = list(self._state.pods.values())
        names = {key for pod in pods for key in pod.profiles}
        counted = self._state.counted_reports()
        reports = list(counted.values())
        holdings = self._state.fleet.holdings(self._state.compact_digests, names)
        ready: dict[ProfileKey, ProfileReadiness] = {
            key: readiness(key, self._state.profiles.get(key), reports, holdings) for key in names
        }
        nodes = frozenset(counted)
        recording = {
            key: self._recordings(key, nodes) if self._recordings else _no_recordings(key)
            for key in {key for pod in pods for key in pod.recordings}
        }
        waiting: dict[str, frozenset[ProfileKey]] = {}
        releases: list[tuple[GatedPod, Release]] = []
        warnings: list[tuple[GatedPod, str]] = []
        decisions: dict[Hashable, Decision] = {}
        for pod in pods:
            if self._patched.get(pod.uid) == pod.resource_version:
                continue  # released; the watch has not shown the new version yet
            # One decision per kind of pod, not per pod: deciding intersects sets of nodes, and a
            # pass runs for every report that arrives, so deciding 1,000 pods one by one at 500
            # nodes took half the controller's CPU while a change rolled out.
            alike = decision_key(pod, now, self._grace)
            decision = decisions.get(alike)
            if decision is None:
                decision = decisions[alike] = decide(pod, ready, nodes, now, self._grace, recording)
            if isinstance(decision, Release):
                releases.append((pod, decision))
                continue
            waiting[pod.uid] = pod.profiles
            if decision.message and self._warned.get(pod.uid) != decision.message:
                self._warned[pod.uid] = decision.message
                log.info(
                    "pod waits for its profiles", extra={"pod": pod.ref, "why": decision.message}
                )
                warnings.append((pod, decision.message))
        writes: list[Callable[[], None]] = [
            functools.partial(self._release, pod, decision, waiting) for pod, decision in releases
        ]
        writes += [
            functools.partial(self._pods.warn, pod, EVENT_REASON, message)
            for pod, message in warnings
        ]
        await self._write(writes)
        present = set(self._state.pods)
        for table in (self._patched, self._warned):
            for uid in set(table) - present:
                del table[uid]
        self._set_waiting(waiting, now)

    async def _write(self, writes: list[Callable[[], None]]) -> None:
        """Run `writes`, at most PARALLEL_WRITES at a time, each on a writer thread from start
        to end (the call, its log line, its metrics).

        Writer threads take the next write from one shared queue until it is empty: the event
        loop hands over a thousand releases with a few futures, not a thousand, and stays free
        for the watches meanwhile. Cancelled (no longer leading), the threads take nothing more
        from the queue; the writes already sent complete (each within the request timeout).
        """
        if not writes:
            return
        queue = collections.deque(writes)
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                try:
                    write = queue.popleft()
                except IndexError:
                    return
                write()

        loop = asyncio.get_running_loop()
        threads = min(PARALLEL_WRITES, len(writes))
        try:
            await asyncio.gather(
                *(loop.run_in_executor(self._writers, drain) for _ in range(threads))
            )
        finally:
            stop.set()

    def _release(
        self, pod: GatedPod, decision: Release, waiting: dict[str, frozenset[ProfileKey]]
    ) -> None:
        """On a writer thread."""
        if not self._pods.release(pod, release_patch(pod, decision.exclude)):
            waiting[pod.uid] = pod.profiles  # tried again on the next pass
            return
        self._patched[pod.uid] = pod.resource_version
        kind = "narrowed" if decision.exclude else "released"
        self._metrics.gate_releases.labels(kind=kind).inc()
        self._metrics.gate_latency.observe(max(0.0, time.time() - pod.created))
        log.info("released pod", extra={"pod": pod.ref, "excluded_nodes": sorted(decision.exclude)})

    def _set_waiting(self, waiting: dict[str, frozenset[ProfileKey]], now: float) -> None:
        self._waiting = waiting
        counts = waiting_counts(waiting)
        changed = {
            k for k in set(counts) | set(self._counts) if counts.get(k) != self._counts.get(k)
        }
        self._counts = counts
        self._metrics.gated_pods.set(len(waiting))
        oldest = min(
            (self._state.pods[uid].created for uid in waiting if uid in self._state.pods),
            default=now,
        )
        self._metrics.gated_oldest.set(max(0.0, now - oldest))
        if changed:
            self._on_waiting_change(changed)


def _no_recordings(key: ProfileKey) -> ProfileReadiness:
    return ProfileReadiness(
        frozenset(), {}, f"SeccompProfileRecording {key}: this controller does not record"
    )

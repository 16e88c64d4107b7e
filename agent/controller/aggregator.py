"""The elected controller's job: fold every node's report into each SeccompProfile's status.

Cost: each node writes one object when its content changes, and only the controller watches
those objects, so a profile change costs O(nodes) writes and watch events, not nodes squared.
Only the profiles a change touches are recomputed, and the computation runs off the event loop
on a snapshot (2,000 profiles x 200 nodes once took 2.2 s on the loop). Status writes are
debounced and skipped when nothing changed; a new leader first reads the current statuses, so
a failover rewrites nothing that is already right.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from agent.api.keys import ProfileKey
from agent.api.node_report import NodeReport
from agent.controller.fleet import Holdings
from agent.controller.metrics import ControllerMetrics
from agent.controller.profile_status import ProfileView, profile_status
from agent.controller.state import ClusterState

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.5
# A few writes in flight: a cold start of 10,000 profiles is not 10,000 round trips in a row,
# and the API server is not flooded either.
PARALLEL_WRITES = 8
# A recount of every profile is written this many at a time, with newer changes in between.
RECOUNT_CHUNK = 256


# Adds to a profile's status what other reports know (the tenant policy report): view, status,
# the previous conditions, now -> the status to write. Called on the event loop.
StatusReport = Callable[
    [ProfileView, dict[str, Any], list[Mapping[str, Any]] | None, str], dict[str, Any]
]


class ProfileStatuses(Protocol):
    """Read and write the statuses (`agent.controller.profile_statuses`: the API, and a fake)."""

    def current(self) -> dict[ProfileKey, dict[str, Any]]:
        """Every profile's status as stored now."""
        ...

    def write(self, key: ProfileKey, status: dict[str, Any]) -> bool:
        """True when written, False when the profile is gone; raises when it could not be
        written (the API is away, a timeout): the caller tries again."""
        ...


class DirtyProfiles:
    """Profiles whose status may need writing again. The cluster state, the gate handler (pods
    waiting) and the policy reporter mark them; the aggregator takes them. It is made before
    all of them, so each gets it at construction and none needs another's methods."""

    def __init__(self) -> None:
        self.keys: set[ProfileKey] = set()
        self.everything = True
        self.wake = asyncio.Event()

    def mark(self, keys: set[ProfileKey] | None) -> None:
        """These profiles (None: every profile) may need a new status."""
        if keys is None:
            self.everything = True
        else:
            self.keys |= keys
        if keys is None or keys:
            self.wake.set()


class StatusAggregator:
    def __init__(
        self,
        state: ClusterState,
        dirty: DirtyProfiles,
        statuses: ProfileStatuses,
        metrics: ControllerMetrics,
        waiting: Callable[[], Mapping[ProfileKey, int]],
        report: StatusReport,
    ) -> None:
        self._state = state
        self._dirty = dirty
        self._statuses = statuses
        self._metrics = metrics
        self._waiting = waiting  # pods gated on each profile, shown in its status
        self._report = report
        self._written: dict[ProfileKey, dict[str, Any]] = {}

    async def run(self) -> None:
        """Runs while this controller leads; cancelled when it stops leading."""
        # What was marked while another replica led is covered by a recount of everything.
        self._dirty.keys.clear()
        self._dirty.everything = True
        try:
            self._written = await asyncio.to_thread(self._statuses.current)
            self._dirty.wake.set()
            while True:
                await self._dirty.wake.wait()
                await asyncio.sleep(DEBOUNCE_SECONDS)  # batch a burst of reports into one pass
                self._dirty.wake.clear()
                if self._state.countable:
                    await self._flush()
                else:
                    self._dirty.everything = True
        finally:
            self._metrics.clear_profile_metrics()

    async def _flush(self) -> None:
        """Write what changed. A recount of every profile (a node came, went or finished its
        first sync) goes in chunks, and profiles that changed themselves meanwhile go first: a
        new profile's Ready must not wait behind thousands of `nodesExpected` updates."""
        for gone in set(self._written) - set(self._state.profiles):
            self._written.pop(gone, None)
            self._metrics.forget_profile(gone.namespace, gone.name)
        recount = sorted(self._state.profiles) if self._dirty.everything else []
        self._dirty.everything = False
        written_first: set[ProfileKey] = set()
        position = 0
        while True:
            urgent, self._dirty.keys = self._dirty.keys, set()
            if urgent:
                written_first |= urgent
                await self._write_statuses(urgent)
            elif position < len(recount):
                chunk = set(recount[position : position + RECOUNT_CHUNK]) - written_first
                position += RECOUNT_CHUNK
                await self._write_statuses(chunk)
            else:
                return

    async def _write_statuses(self, keys: set[ProfileKey]) -> None:
        views = dict(self._state.profiles)
        reports = self._state.counted_reports()
        waiting = dict(self._waiting())
        keys &= set(views)
        # Taken with the views, on the loop: the fleet history moves with them.
        holdings = self._state.fleet.holdings(self._state.compact_digests, keys)
        previous = {key: self._written.get(key) or {} for key in keys}
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        statuses = await asyncio.to_thread(
            _statuses, sorted(keys), views, reports, waiting, previous, now, holdings
        )
        limit = asyncio.Semaphore(PARALLEL_WRITES)

        async def write(key: ProfileKey, status: dict[str, Any]) -> None:
            async with limit:
                try:
                    # False: the profile was deleted meanwhile and needs no status.
                    if await asyncio.to_thread(self._statuses.write, key, status):
                        self._written[key] = status
                except Exception as exc:  # the API refused, timed out, is away: again in 1 s
                    log.warning(
                        "could not write profile status",
                        extra={
                            "profile": str(key),
                            "status": getattr(exc, "status", None),
                            "error": str(exc)[:200],
                        },
                    )
                    asyncio.get_running_loop().call_later(1.0, self._dirty.mark, {key})

        writes = []
        for key, status in statuses:
            status = self._report(views[key], status, previous[key].get("conditions"), now)
            self._metrics.observe_profile(key.namespace, key.name, status)
            if not _same(status, previous[key]):
                writes.append(write(key, status))
        await asyncio.gather(*writes)


def _statuses(
    keys: list[ProfileKey],
    views: Mapping[ProfileKey, ProfileView],
    reports: Mapping[str, NodeReport],
    waiting: Mapping[ProfileKey, int],
    previous: Mapping[ProfileKey, Mapping[str, Any]],
    now: str,
    holdings: Holdings,
) -> list[tuple[ProfileKey, dict[str, Any]]]:
    """Pure and CPU-bound: runs in a thread on a snapshot."""
    out = []
    for key in keys:
        status = profile_status(views[key], reports, previous[key].get("conditions"), now, holdings)
        status["waitingPods"] = waiting.get(key, 0)
        out.append((key, status))
    return out


def _same(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Equal apart from the transition time, which `profile_status` already carries over."""
    return dict(new) == {k: old.get(k) for k in new}

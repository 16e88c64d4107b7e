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

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.api.keys import ProfileKey
from agent.api.model import API_GROUP, API_VERSION, PLURAL
from agent.api.node_report import NodeReport
from agent.controller.profile_status import ProfileView, profile_status
from agent.controller.state import ClusterState

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.5
REQUEST_TIMEOUT_SECONDS = 10.0
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


class ProfileGauges(Protocol):
    def observe_profile(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...
    def forget_profile(self, namespace: str, name: str) -> None: ...
    def clear_profile_metrics(self) -> None: ...


class StatusAggregator:
    def __init__(
        self,
        api: client.ApiClient,
        state: ClusterState,
        metrics: ProfileGauges,
        waiting: Callable[[], Mapping[ProfileKey, int]] = dict,
        report: StatusReport | None = None,
    ) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._report = report
        self._state = state
        self._metrics = metrics
        self._waiting = waiting  # pods gated on each profile, shown in its status
        self._written: dict[ProfileKey, dict[str, Any]] = {}
        self._dirty: set[ProfileKey] = set()
        self._all_dirty = True
        self._wake = asyncio.Event()
        self._active = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.status_writes = 0
        state.listeners.append(self.changed)

    def changed(self, keys: set[ProfileKey] | None) -> None:
        """From the cluster state: these profiles (None: every profile) may need a new status."""
        if not self._active:
            return
        if keys is None:
            self._all_dirty = True
        else:
            self._dirty |= keys
        if keys is None or keys:
            self._wake.set()

    def refresh_all(self) -> None:
        """Recompute every profile's status (a report's inputs changed)."""
        self.changed(None)

    async def run(self) -> None:
        """Runs while this controller leads; cancelled when it stops leading."""
        self._active, self._all_dirty = True, True
        self._loop = asyncio.get_running_loop()
        try:
            self._written = await asyncio.to_thread(self._current_statuses)
            self._wake.set()
            while True:
                await self._wake.wait()
                await asyncio.sleep(DEBOUNCE_SECONDS)  # batch a burst of reports into one pass
                self._wake.clear()
                if self._state.profiles_listed and self._state.reports_listed:
                    await self._flush()
                else:
                    self._all_dirty = True
        finally:
            self._active = False
            self._metrics.clear_profile_metrics()

    async def _flush(self) -> None:
        """Write what changed. A recount of every profile (a node came, went or finished its
        first sync) goes in chunks, and profiles that changed themselves meanwhile go first: a
        new profile's Ready must not wait behind thousands of `nodesExpected` updates."""
        for gone in set(self._written) - set(self._state.profiles):
            self._written.pop(gone, None)
            self._metrics.forget_profile(gone.namespace, gone.name)
        recount = sorted(self._state.profiles) if self._all_dirty else []
        self._all_dirty = False
        written_first: set[ProfileKey] = set()
        position = 0
        while True:
            urgent, self._dirty = self._dirty, set()
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
        reports = dict(self._state.reports)
        waiting = dict(self._waiting())
        keys &= set(views)
        previous = {key: self._written.get(key) or {} for key in keys}
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        statuses = await asyncio.to_thread(
            _statuses, sorted(keys), views, reports, waiting, previous, now
        )
        limit = asyncio.Semaphore(PARALLEL_WRITES)

        async def write(key: ProfileKey, status: dict[str, Any]) -> None:
            async with limit:
                if await asyncio.to_thread(self._patch_status, key, status):
                    self._written[key] = status

        writes = []
        for key, status in statuses:
            if self._report is not None:
                status = self._report(views[key], status, previous[key].get("conditions"), now)
            self._metrics.observe_profile(key.namespace, key.name, status)
            if not _same(status, previous[key]):
                writes.append(write(key, status))
        await asyncio.gather(*writes)

    def _patch_status(self, key: ProfileKey, status: dict[str, Any]) -> bool:
        try:
            self._custom.patch_namespaced_custom_object_status(
                API_GROUP,
                API_VERSION,
                key.namespace,
                PLURAL,
                key.name,
                {"status": status},
                _request_timeout=REQUEST_TIMEOUT_SECONDS,
            )
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                log.warning(
                    "could not write profile status",
                    extra={"profile": str(key), "status": exc.status},
                )
                self._retry(key)
            return False
        except Exception as exc:  # connection refused, timeout: try again on the next pass
            log.warning(
                "could not write profile status", extra={"profile": str(key), "error": str(exc)}
            )
            self._retry(key)
            return False
        self.status_writes += 1
        return True

    def _retry(self, key: ProfileKey) -> None:
        """From the writing thread: look at this profile again in a second."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.call_later, 1.0, self.changed, {key})

    def _current_statuses(self) -> dict[ProfileKey, dict[str, Any]]:
        """What the objects say now, so a new leader rewrites nothing that is already right."""
        page: Any = self._custom.list_cluster_custom_object(
            API_GROUP, API_VERSION, PLURAL, _request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        return {
            ProfileKey(i["metadata"]["namespace"], i["metadata"]["name"]): i.get("status") or {}
            for i in page.get("items", [])
        }


def _statuses(
    keys: list[ProfileKey],
    views: Mapping[ProfileKey, ProfileView],
    reports: Mapping[str, NodeReport],
    waiting: Mapping[ProfileKey, int],
    previous: Mapping[ProfileKey, Mapping[str, Any]],
    now: str,
) -> list[tuple[ProfileKey, dict[str, Any]]]:
    """Pure and CPU-bound: runs in a thread on a snapshot."""
    out = []
    for key in keys:
        status = profile_status(views[key], reports, previous[key].get("conditions"), now)
        status["waitingPods"] = waiting.get(key, 0)
        out.append((key, status))
    return out


def _same(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Equal apart from the transition time, which `profile_status` already carries over."""
    return dict(new) == {k: old.get(k) for k in new}

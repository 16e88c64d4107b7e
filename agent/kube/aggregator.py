"""The elected agent's job: fold every node's report into each SeccompProfile's status.

Cost: each node writes one object when its content changes, and only this agent watches those
objects, so a profile change costs O(nodes) writes and watch events, not nodes squared. Profile
status writes are debounced and skipped when nothing changed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from agent.catalog import ProfileKey
from agent.kube.node_status import PLURAL as NODE_STATUS_PLURAL
from agent.metrics import Metrics
from agent.model import API_GROUP, API_VERSION, PLURAL
from agent.readiness.node_report import NodeReport, parse_status
from agent.readiness.profile_status import ProfileView, profile_status

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.5
# Adds to a profile's status what other reports know (the tenant policy report): view, status,
# the previous conditions, now -> the status to write.
StatusReport = Callable[
    [ProfileView, dict[str, Any], list[Mapping[str, Any]] | None, str], dict[str, Any]
]
WATCH_TIMEOUT_SECONDS = 30


class StatusAggregator:
    def __init__(
        self,
        api: client.ApiClient,
        profiles: Callable[[], Mapping[ProfileKey, ProfileView]],
        metrics: Metrics,
        report: StatusReport | None = None,
    ) -> None:
        self._api = api
        self._report = report
        self._custom = client.CustomObjectsApi(api)
        self._profiles = profiles
        self._metrics = metrics
        self._reports: dict[str, NodeReport] = {}
        self._written: dict[ProfileKey, dict[str, Any]] = {}
        self._dirty: set[ProfileKey] = set()
        self._all_dirty = True
        self._wake = asyncio.Event()
        self._active = False
        self.status_writes = 0

    def profile_changed(self, key: ProfileKey) -> None:
        if self._active:
            self._dirty.add(key)
            self._wake.set()

    def refresh_all(self) -> None:
        """Recompute every profile's status (a report's inputs changed)."""
        if self._active:
            self._all_dirty = True
            self._wake.set()

    async def run(self) -> None:
        """Runs while this agent holds the lease; cancelled when it loses it."""
        self._active = True
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        watcher = threading.Thread(
            target=self._watch_node_statuses,
            args=(loop, stop),
            daemon=True,
            name="node-status-watch",
        )
        try:
            self._written = await asyncio.to_thread(self._current_statuses)
            watcher.start()
            while True:
                await self._wake.wait()
                await asyncio.sleep(DEBOUNCE_SECONDS)  # batch a burst of reports into one pass
                self._wake.clear()
                await self._flush()
        finally:
            stop.set()
            self._active = False
            self._metrics.clear_profile_metrics()

    async def _flush(self) -> None:
        views = self._profiles()
        keys = set(views) if self._all_dirty else self._dirty & set(views)
        self._all_dirty = False
        self._dirty.clear()
        for gone in set(self._written) - set(views):
            self._written.pop(gone, None)
            self._metrics.forget_profile(gone.namespace, gone.name)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        updates: list[tuple[ProfileKey, dict[str, Any]]] = []
        for key in sorted(keys):
            previous = self._written.get(key) or {}
            status = profile_status(views[key], self._reports, previous.get("conditions"), now)
            if self._report is not None:
                status = self._report(views[key], status, previous.get("conditions"), now)
            self._metrics.observe_profile(key.namespace, key.name, status)
            if not _same(status, previous):
                updates.append((key, status))
        for key, status in updates:
            if await asyncio.to_thread(self._patch_status, key, status):
                self._written[key] = status

    def _patch_status(self, key: ProfileKey, status: dict[str, Any]) -> bool:
        try:
            self._custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, key.namespace, PLURAL, key.name, {"status": status}
            )
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                log.warning(
                    "could not write profile status",
                    extra={"profile": str(key), "status": exc.status},
                )
                self.profile_changed(key)
            return False
        self.status_writes += 1
        return True

    def _current_statuses(self) -> dict[ProfileKey, dict[str, Any]]:
        """What the objects say now, so a new leader rewrites nothing that is already right."""
        page: Any = self._custom.list_cluster_custom_object(API_GROUP, API_VERSION, PLURAL)
        return {
            ProfileKey(i["metadata"]["namespace"], i["metadata"]["name"]): i.get("status") or {}
            for i in page.get("items", [])
        }

    def _node_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        name = str(obj.get("metadata", {}).get("name", ""))
        if kind == "DELETED":
            gone = self._reports.pop(name, None)
            if gone is not None:
                log.info("node left the expected set", extra={"node": name})
                self._all_dirty = True
        else:
            report = parse_status(name, obj.get("status"))
            previous = self._reports.get(name)
            self._reports[name] = report
            if previous is None or previous.synced != report.synced:
                self._all_dirty = True
            else:
                self._dirty |= _changed_keys(previous, report)
        self._wake.set()

    def _node_listing(self, items: list[Mapping[str, Any]]) -> None:
        self._reports = {
            str(i["metadata"]["name"]): parse_status(str(i["metadata"]["name"]), i.get("status"))
            for i in items
        }
        self._all_dirty = True
        self._wake.set()

    def _watch_node_statuses(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """In a daemon thread: list, then watch from that version; list again after 410 Gone."""
        while not stop.is_set():
            try:
                listing: Any = self._custom.list_cluster_custom_object(
                    API_GROUP, API_VERSION, NODE_STATUS_PLURAL
                )
                loop.call_soon_threadsafe(self._node_listing, listing.get("items", []))
                version = listing["metadata"]["resourceVersion"]
                while not stop.is_set():
                    stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                        self._custom.list_cluster_custom_object,
                        API_GROUP,
                        API_VERSION,
                        NODE_STATUS_PLURAL,
                        resource_version=version,
                        timeout_seconds=WATCH_TIMEOUT_SECONDS,
                        allow_watch_bookmarks=True,
                    )
                    for event in stream:
                        if stop.is_set():
                            return
                        obj = event["object"]
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            loop.call_soon_threadsafe(self._node_event, event["type"], obj)
            except ApiException as exc:
                if exc.status != 410:
                    log.warning(
                        "node status watch failed; listing again", extra={"status": exc.status}
                    )
                    stop.wait(1.0)
            except Exception as exc:  # connection errors of any kind: list and watch again
                log.warning("node status watch broke; listing again", extra={"error": str(exc)})
                stop.wait(1.0)


def _changed_keys(old: NodeReport, new: NodeReport) -> set[ProfileKey]:
    keys = set(old.installed) | set(new.installed) | set(old.problems) | set(new.problems)
    return {
        k
        for k in keys
        if old.installed.get(k) != new.installed.get(k)
        or old.problems.get(k) != new.problems.get(k)
    }


def _same(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """Equal apart from the transition time, which `profile_status` already carries over."""
    return dict(new) == {k: old.get(k) for k in new}

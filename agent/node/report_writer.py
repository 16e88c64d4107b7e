"""Publish this node's SeccompNodeStatus: batched, debounced, unchanged content never rewritten.

`NodeStatusPublisher` is the real `StatusWriter` (agent.node.readiness); `RecordingStatusWriter`
is the fake for tests that need no API server. What to write comes from `build`, which may also
answer "not yet" (`Later`: the compact form waits for the controller's digest to catch up,
agent.node.fleet_form).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.api.model import API_GROUP, API_VERSION, NODE_STATUS_KIND, NODE_STATUS_PLURAL
from agent.kube.client import REQUEST_TIMEOUT
from agent.node.fleet_form import Later

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.5
RETRY_SECONDS = 2.0


class NodeStatusPublisher:
    """Writes one object per node. Each call to `changed()` schedules at most one write."""

    def __init__(
        self,
        api: client.ApiClient,
        node: str,
        build: Callable[[], dict[str, Any] | Later],
    ) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._node = node
        self._build = build
        self._published: dict[str, Any] | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self.writes = 0

    def changed(self) -> None:
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(DEBOUNCE_SECONDS, self._start)

    def announce(self) -> asyncio.Task[None]:
        """At start-up: make this node count as expected at once, without hiding what it holds.

        A new node gets its report (not synced yet), so the controller waits for it. A report
        that this node's previous agent left (a restart, a rolling update, a rollback) is left
        as it is until this agent's initial sync replaces it: the files it lists are still on
        disk (an agent never removes files when it stops), while a "not synced" report would
        make every profile not Ready, and hold gated pods, for as long as the restart lasts.
        """
        self._task = asyncio.create_task(self._announce())
        return self._task

    async def _announce(self) -> None:
        status = self._build()
        if isinstance(status, Later):  # not before the initial sync; handled all the same
            asyncio.get_running_loop().call_later(status.seconds, self.announce)
            return
        try:
            created = await asyncio.to_thread(self._create_if_missing, status)
        except Exception as exc:  # API errors, timeouts, refused connections alike
            _retry_later("could not announce this node's status; retrying", exc, self.announce)
            return
        if created:
            self._published = status
            self.writes += 1
        else:
            log.info(
                "kept the node status of the previous agent until the initial sync",
                extra={"node": self._node},
            )

    def _create_if_missing(self, status: dict[str, Any]) -> bool:
        try:
            self._create(status)
        except ApiException as exc:
            if exc.status == 409:  # AlreadyExists
                return False
            raise
        return True

    def _start(self) -> None:
        self._pending = None
        if self._task is not None and not self._task.done():
            self.changed()  # a write is in flight: publish again after it
            return
        self._task = asyncio.create_task(self._publish())

    async def _publish(self) -> None:
        status = self._build()
        if isinstance(status, Later):
            asyncio.get_running_loop().call_later(status.seconds, self.changed)
            return
        if status == self._published:
            return
        try:
            await asyncio.to_thread(self._write, status)
        except Exception as exc:  # API errors, timeouts, refused connections alike
            _retry_later("could not publish node status; retrying", exc, self.changed)
            return
        self._published = status
        self.writes += 1

    def _write(self, status: dict[str, Any]) -> None:
        try:
            self._custom.patch_cluster_custom_object(
                API_GROUP,
                API_VERSION,
                NODE_STATUS_PLURAL,
                self._node,
                {"status": status},
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._create(status)

    def _create(self, status: dict[str, Any]) -> None:
        body: dict[str, Any] = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": NODE_STATUS_KIND,
            "metadata": {"name": self._node, "ownerReferences": self._owner()},
            # A null is how a patch removes a field; a new object simply has none.
            "status": {k: v for k, v in status.items() if v is not None},
        }
        self._custom.create_cluster_custom_object(
            API_GROUP, API_VERSION, NODE_STATUS_PLURAL, body, _request_timeout=REQUEST_TIMEOUT
        )
        log.info("created node status", extra={"node": self._node})

    def _owner(self) -> list[dict[str, Any]]:
        # Owned by the Node: deleting the Node garbage-collects this report, so a node that
        # is gone stops counting at once and nothing waits on it.
        try:
            node = self._core.read_node(self._node, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status != 404:
                raise
            log.warning(
                "no Node object for this node; its status will not be garbage-collected",
                extra={"node": self._node},
            )
            return []
        uid = node.metadata.uid if node.metadata else None
        return [{"apiVersion": "v1", "kind": "Node", "name": self._node, "uid": uid}]


class RecordingStatusWriter:
    """A `StatusWriter` that only counts the calls."""

    def __init__(self) -> None:
        self.changes = 0

    def changed(self) -> None:
        self.changes += 1


def _retry_later(message: str, exc: Exception, again: Callable[[], object]) -> None:
    """Log a failed write (with the API status, if any) and call ``again`` after a pause."""
    log.warning(message, extra={"status": getattr(exc, "status", None), "error": str(exc)[:200]})
    asyncio.get_running_loop().call_later(RETRY_SECONDS, again)

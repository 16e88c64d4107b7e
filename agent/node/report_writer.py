"""Publish this node's SeccompNodeStatus: batched, debounced, unchanged content never rewritten.

`NodeStatusPublisher` is the real `StatusWriter` (agent.node.readiness); `RecordingStatusWriter`
is the fake for tests that need no API server. What to write comes from `build`, which may also
answer "not yet" (`Later`: the compact form waits for the controller's digest to catch up,
agent.node.fleet_form).
"""

from __future__ import annotations

import asyncio
import enum
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


class Claim(enum.Enum):
    """What the announce did with this node's report."""

    CREATED = "created"
    KEPT = "kept"  # the previous agent's, on this very Node
    REPLACED = "replaced"  # an earlier Node's of the same name


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
        A report owned by an earlier Node of the same name is replaced at once (`_claim`).
        """
        self._task = asyncio.create_task(self._announce())
        return self._task

    async def _announce(self) -> None:
        status = self._build()
        if isinstance(status, Later):  # not before the initial sync; handled all the same
            asyncio.get_running_loop().call_later(status.seconds, self.announce)
            return
        try:
            claim = await asyncio.to_thread(self._claim, status)
        except Exception as exc:  # API errors, timeouts, refused connections alike
            _retry_later("could not announce this node's status; retrying", exc, self.announce)
            return
        if claim is Claim.KEPT:
            log.info(
                "kept the node status of the previous agent until the initial sync",
                extra={"node": self._node},
            )
            return
        self._published = status
        self.writes += 1

    def _claim(self, status: dict[str, Any]) -> Claim:
        owner = self._owner()
        try:
            self._create(status, owner)
        except ApiException as exc:
            if exc.status != 409:  # AlreadyExists
                raise
        else:
            return Claim.CREATED
        existing = self._read()
        if existing is None:  # deleted in between (by the garbage collector, say)
            self._create(status, owner)
            return Claim.CREATED
        if not owner or _node_owner_uids(existing) in ([], [owner[0]["uid"]]):
            return Claim.KEPT
        # A report owned by an earlier Node of this name (deleted and registered again): the
        # garbage collector is about to delete it, and what it lists describes that Node. The
        # replacement names this Node as owner, so the collector leaves it alone.
        self._replace(status, owner, existing["metadata"]["resourceVersion"])
        log.info(
            "replaced the node status left by an earlier Node of the same name",
            extra={"node": self._node, "owners": _node_owner_uids(existing)},
        )
        return Claim.REPLACED

    def lost(self) -> None:
        """The report is gone (a 404 elsewhere): write it again, even if nothing changed."""
        self._published = None
        self.changed()

    async def keep(self, period: float) -> None:
        """Supervised: every ``period``, read the report back and write it again if it is gone
        (deleted by a person, or by the garbage collector after a race with a Node deleted
        and registered again). One GET per node and period."""
        while True:
            await asyncio.sleep(period)
            if self._published is None:
                continue  # not written yet: the announce or a write in flight will
            try:
                report = await asyncio.to_thread(self._read)
            except Exception as exc:  # the next period tries again; writes have their retries
                log.warning(
                    "could not read this node's status back",
                    extra={"status": getattr(exc, "status", None), "error": str(exc)[:200]},
                )
                continue
            if report is None:
                log.warning(
                    "this node's status is gone; writing it again", extra={"node": self._node}
                )
                self.lost()

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
            self._create(status, self._owner())

    def _read(self) -> dict[str, Any] | None:
        try:
            body: Any = self._custom.get_cluster_custom_object(
                API_GROUP, API_VERSION, NODE_STATUS_PLURAL, self._node,
                _request_timeout=REQUEST_TIMEOUT,
            )  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None
        return dict(body)

    def _create(self, status: dict[str, Any], owner: list[dict[str, Any]]) -> None:
        self._custom.create_cluster_custom_object(
            API_GROUP, API_VERSION, NODE_STATUS_PLURAL, self._body(status, owner),
            _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        log.info("created node status", extra={"node": self._node})

    def _replace(self, status: dict[str, Any], owner: list[dict[str, Any]], version: str) -> None:
        body = self._body(status, owner)
        body["metadata"]["resourceVersion"] = version  # a conflict is retried from the start
        self._custom.replace_cluster_custom_object(
            API_GROUP, API_VERSION, NODE_STATUS_PLURAL, self._node, body,
            _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip

    def _body(self, status: dict[str, Any], owner: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": NODE_STATUS_KIND,
            "metadata": {"name": self._node, "ownerReferences": owner},
            # A null is how a patch removes a field; a new object simply has none.
            "status": {k: v for k, v in status.items() if v is not None},
        }

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


def _node_owner_uids(report: dict[str, Any]) -> list[str]:
    owners = (report.get("metadata") or {}).get("ownerReferences") or []
    return [o.get("uid", "") for o in owners if o.get("kind") == "Node"]


def _retry_later(message: str, exc: Exception, again: Callable[[], object]) -> None:
    """Log a failed write (with the API status, if any) and call ``again`` after a pause."""
    log.warning(message, extra={"status": getattr(exc, "status", None), "error": str(exc)[:200]})
    asyncio.get_running_loop().call_later(RETRY_SECONDS, again)

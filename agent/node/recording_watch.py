"""The recording's API side on the node: the SeccompProfileRecording watch, and this node's
`status.recordings` (read back at start, then published, debounced).

The node part is written with a JSON merge patch of `status.recordings` alone on this node's
SeccompNodeStatus: the node report (agent.node.report_writer) merges its own fields into the
same object and never names this one, so neither overwrites the other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.api.model import API_GROUP, API_VERSION, NODE_STATUS_PLURAL
from agent.api.recording import (
    RECORDING_PLURAL,
    NodeRecording,
    build_node_recordings,
    parse_node_recordings,
)
from agent.kube.client import REQUEST_TIMEOUT
from agent.kube.list_watch import ListWatch
from agent.node.recordings import Recordings

log = logging.getLogger(__name__)

CRD_NAME: Final = f"{RECORDING_PLURAL}.{API_GROUP}"
CRD_CHECK_SECONDS: Final = 30.0
DEBOUNCE_SECONDS: Final = 1.0  # at most about one write a second, however busy the recorder
RETRY_SECONDS: Final = 2.0


class RecordingWatch:
    """Supervised: waits for the SeccompProfileRecording CRD (said once), then lists and
    watches every recording, cluster-wide and read-only, into `recordings`."""

    def __init__(self, api: client.ApiClient, recordings: Recordings) -> None:
        self._api = api
        self._recordings = recordings
        self._custom = client.CustomObjectsApi(api)

    async def run(self) -> None:
        await self._crd_installed()
        watch = ListWatch(
            "recordings",
            self._list,
            on_list=self._listed,
            on_event=self._event,
        )
        await watch.run()

    def _list(self, **kwargs: Any) -> Any:
        return self._custom.list_cluster_custom_object(
            API_GROUP, API_VERSION, RECORDING_PLURAL, **kwargs
        )

    def _listed(self, bodies: list[Mapping[str, Any]]) -> None:
        try:
            self._recordings.on_list(bodies)
        except Exception:  # a bug must not stop the stream; the next listing repairs it
            log.exception("could not handle the recordings' listing")

    def _event(self, kind: str, body: Mapping[str, Any]) -> None:
        try:
            self._recordings.on_event(kind, body)
        except Exception:
            log.exception("could not handle a recording event")

    async def _crd_installed(self) -> None:
        extensions = client.ApiextensionsV1Api(self._api)
        said = False
        while True:
            try:
                await asyncio.to_thread(
                    extensions.read_custom_resource_definition,
                    CRD_NAME,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                if not said:
                    log.info(
                        "the SeccompProfileRecording CRD is not installed; in-cluster "
                        "recording is off until it is (checked every 30 s)",
                        extra={"crd": CRD_NAME},
                    )
                    said = True
            else:
                if said:
                    log.info("the SeccompProfileRecording CRD is installed; watching recordings")
                return
            await asyncio.sleep(CRD_CHECK_SECONDS)


class NodePartPublisher:
    """This node's `status.recordings`: read back once, then written when it changes."""

    def __init__(
        self,
        api: client.ApiClient,
        node: str,
        build: Callable[[], list[NodeRecording]],
        restore: Callable[[list[NodeRecording]], None],
        report_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._node = node
        self._build = build
        self._restore = restore
        self._report_lost = report_lost
        self._published: list[dict[str, Any]] | None = None
        self._restored = False
        self._wake = asyncio.Event()
        self.writes = 0

    def changed(self) -> None:
        """Thread-safe only through `loop.call_soon_threadsafe(publisher.changed)`."""
        self._wake.set()

    async def run(self) -> None:
        """Supervised. Reads back what an earlier agent published before writing anything: a
        write first would replace those recorded names with this agent's empty sets."""
        self._restore(await self._read_back())
        self._restored = True
        while True:
            await self._wake.wait()
            await asyncio.sleep(DEBOUNCE_SECONDS)
            self._wake.clear()
            built = build_node_recordings(self._build())
            if built == self._published:
                continue
            try:
                await asyncio.to_thread(self._write, built)
            except Exception as exc:  # API errors, timeouts, refused connections alike
                if getattr(exc, "status", None) == 404:
                    # No report to patch: not created yet (the node report's announce will),
                    # or deleted (the node report writes itself again: `report_lost`).
                    self._report_lost()
                log.warning(
                    "could not publish this node's recordings; retrying",
                    extra={"status": getattr(exc, "status", None), "error": str(exc)[:200]},
                )
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()
                continue
            self._published = built
            self.writes += 1

    async def withdraw(self) -> None:
        """On a graceful stop (a rollout, a drain, the DaemonSet leaving the node): publish every
        part as not ready. The listeners go with this process, and a part left saying `ready`
        would have the controller release recorded pods to this node, where runc cannot reach a
        listener and the container fails to start. The names recorded stay. One attempt, bounded
        by the request timeout: a stop must not hang on the API server. After a SIGKILL nothing
        runs here; the next agent publishes its parts once it listens."""
        if not self._restored:
            return  # a write now would replace an earlier agent's names with empty sets
        parts = [dataclasses.replace(part, ready=False) for part in self._build()]
        built = build_node_recordings(parts)
        try:
            await asyncio.to_thread(self._write, built)
        except Exception as exc:
            log.warning(
                "could not mark this node's recordings not ready while stopping",
                extra={"status": getattr(exc, "status", None), "error": str(exc)[:200]},
            )
        else:
            log.info("marked this node's recordings not ready: the agent is stopping")

    async def _read_back(self) -> list[NodeRecording]:
        delay = 0.5
        while True:
            try:
                body: Any = await asyncio.to_thread(
                    self._custom.get_cluster_custom_object,
                    API_GROUP,
                    API_VERSION,
                    NODE_STATUS_PLURAL,
                    self._node,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            except ApiException as exc:
                if exc.status == 404:
                    return []  # a new node: nothing recorded here yet
                error: Exception = exc
            except Exception as exc:
                error = exc
            else:
                parts = parse_node_recordings((body.get("status") or {}).get("recordings"))
                if parts:
                    log.info(
                        "kept the recorded syscalls this node published before",
                        extra={"recordings": [str(p.recording) for p in parts]},
                    )
                return parts
            log.warning(
                "could not read this node's recordings back; retrying",
                extra={"error": str(error)[:200]},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _write(self, recordings: list[dict[str, Any]]) -> None:
        # A merge patch of one field. The object is created by the node report at start-up;
        # until it exists this fails with 404 and is tried again.
        self._custom.patch_cluster_custom_object(
            API_GROUP,
            API_VERSION,
            NODE_STATUS_PLURAL,
            self._node,
            {"status": {"recordings": recordings}},
            _request_timeout=REQUEST_TIMEOUT,
        )

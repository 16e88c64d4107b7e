"""Publish the fleet digests (agent.controller.fleet) in the ConfigMap the agents watch.

Only the leader writes, only once every listing is in and every architecture is rendered (a
digest of a partial view would match no node), at most every `COALESCE_SECONDS` however many
profiles change, and only when a digest moved. `revision` grows with each write, across
leaders (each one starts from what the ConfigMap holds): operators and tests can tell a new
publication from an old one.

`ApiFleetConfigMap` is the real `FleetConfigMap`; `MemoryFleetConfigMap` the fake.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.api.fleet_digest import FLEET_CONFIGMAP, REVISION_KEY, published_digests
from agent.controller.state import ClusterState
from agent.kube.client import REQUEST_TIMEOUT

log = logging.getLogger(__name__)

COALESCE_SECONDS: Final = 0.2
RETRY_SECONDS: Final = 1.0


class FleetConfigMap(Protocol):
    def read(self) -> dict[str, str] | None:
        """The ConfigMap's data (None: there is none)."""
        ...

    def write(self, data: dict[str, str], exists: bool) -> None:
        """Replace its data (create it unless `exists`); raises when it could not."""
        ...


class FleetPublisher:
    """Runs while this controller leads; `wake` is set by every change of the state."""

    def __init__(self, state: ClusterState, configmap: FleetConfigMap, wake: asyncio.Event):
        self._state = state
        self._configmap = configmap
        self._wake = wake

    async def run(self) -> None:
        current: dict[str, str] | None = None
        revision = 0
        stale = True  # what the ConfigMap holds must be read (at start, after a failure)
        self._wake.set()
        while True:
            await self._wake.wait()
            await asyncio.sleep(COALESCE_SECONDS)
            self._wake.clear()
            if not self._state.countable:
                continue
            try:
                if stale:
                    current = await asyncio.to_thread(self._configmap.read)
                    revision, stale = max(revision, _revision(current)), False
                digests = self._state.fleet.published()
                if current is not None and published_digests(current) == digests:
                    continue
                data = {**digests, REVISION_KEY: str(revision + 1)}
                await asyncio.to_thread(self._configmap.write, data, current is not None)
            except Exception as exc:  # the API refused, timed out, is away: again shortly
                log.warning(
                    "could not publish the fleet digests; nodes write full reports meanwhile",
                    extra={"status": getattr(exc, "status", None), "error": str(exc)[:200]},
                )
                stale = True  # deleted or created meanwhile: read it again first
                asyncio.get_running_loop().call_later(RETRY_SECONDS, self._wake.set)
                continue
            current, revision = data, revision + 1
            log.debug("published the fleet digests", extra={"revision": revision})


def _revision(data: dict[str, str] | None) -> int:
    try:
        return int((data or {}).get(REVISION_KEY, "0"))
    except ValueError:
        return 0


class ApiFleetConfigMap:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._core = client.CoreV1Api(api)
        self._namespace = namespace

    def read(self) -> dict[str, str] | None:
        try:
            configmap = self._core.read_namespaced_config_map(
                FLEET_CONFIGMAP, self._namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(configmap.data or {})

    def write(self, data: dict[str, str], exists: bool) -> None:
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name=FLEET_CONFIGMAP,
                labels={"app.kubernetes.io/part-of": "seccomp-sync"},
            ),
            data=data,
        )
        if exists:
            # An update without a resourceVersion: this leader is the only writer, and what it
            # writes is whole (an architecture gone must go from the data too).
            self._core.replace_namespaced_config_map(
                FLEET_CONFIGMAP, self._namespace, body, _request_timeout=REQUEST_TIMEOUT
            )
        else:
            self._core.create_namespaced_config_map(
                self._namespace, body, _request_timeout=REQUEST_TIMEOUT
            )


class MemoryFleetConfigMap:
    def __init__(self) -> None:
        self.data: dict[str, str] | None = None
        self.writes = 0

    def read(self) -> dict[str, str] | None:
        return None if self.data is None else dict(self.data)

    def write(self, data: dict[str, str], exists: bool) -> None:
        self.data = dict(data)
        self.writes += 1

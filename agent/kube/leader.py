"""Leader election on a coordination.k8s.io Lease: exactly one agent aggregates profile status."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


class LeaderElector:
    """Acquire and renew a Lease; run `lead()` while holding it, cancel it when lost."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        lead: Callable[[], Coroutine[Any, Any, None]],
        on_change: Callable[[bool], None],
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
        retry_seconds: float = 2.0,
    ) -> None:
        self._api = client.CoordinationV1Api(api)
        self._namespace = namespace
        self._name = name
        self._identity = identity
        self._lead = lead
        self._on_change = on_change
        self._lease_seconds = lease_seconds
        self._renew_seconds = renew_seconds
        self._retry_seconds = retry_seconds
        self.leading = False

    async def run(self) -> None:
        leading_task: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    holding = await asyncio.to_thread(self._acquire_or_renew)
                except ApiException as exc:
                    log.warning("lease request failed", extra={"status": exc.status})
                    holding = False
                if holding and not self.leading:
                    log.info("became the status aggregator", extra={"lease": self._name})
                    leading_task = asyncio.create_task(self._lead(), name="aggregator")
                elif not holding and self.leading and leading_task is not None:
                    log.warning("lost the status aggregator lease", extra={"lease": self._name})
                    leading_task.cancel()
                    leading_task = None
                if holding != self.leading:
                    self.leading = holding
                    self._on_change(holding)
                await asyncio.sleep(self._renew_seconds if holding else self._retry_seconds)
        finally:
            if leading_task is not None:
                leading_task.cancel()
            if self.leading:
                await asyncio.to_thread(self._release)

    def _acquire_or_renew(self) -> bool:
        now = dt.datetime.now(dt.UTC)
        try:
            lease = self._api.read_namespaced_lease(self._name, self._namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(now)
        spec = lease.spec or client.V1LeaseSpec()
        lease.spec = spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        duration = spec.lease_duration_seconds or self._lease_seconds
        expired = renewed is None or renewed + dt.timedelta(seconds=duration) < now
        if holder not in (None, "", self._identity) and not expired:
            return False
        if holder != self._identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self._identity
        spec.renew_time = now
        spec.lease_duration_seconds = self._lease_seconds
        try:
            self._api.replace_namespaced_lease(self._name, self._namespace, lease)
        except ApiException as exc:
            if exc.status == 409:  # someone else renewed or took it first
                return False
            raise
        return True

    def _create(self, now: dt.datetime) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self._name, namespace=self._namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self._identity,
                lease_duration_seconds=self._lease_seconds,
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            self._api.create_namespaced_lease(self._namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _release(self) -> None:
        """On shutdown: hand the lease over at once instead of after it expires."""
        try:
            lease = self._api.read_namespaced_lease(self._name, self._namespace)
            if lease.spec is not None and lease.spec.holder_identity == self._identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self._api.replace_namespaced_lease(self._name, self._namespace, lease)
        except ApiException as exc:
            log.warning("could not release the lease", extra={"status": exc.status})

"""Leader election on a coordination.k8s.io Lease, with client-go's semantics.

- Expiry is judged on *this* process's clock: a record counts as expired when it has not
  changed for `lease_seconds` since this process last saw it change (the holder's clock,
  written into renewTime, is never compared with ours).
- The leader renews every `retry_seconds`; when no renewal succeeded for `renew_deadline`
  (requests failing, hanging or refused), it stops the led work and steps down, well before
  another candidate may take the lease over (`lease_seconds`).
- When the led work fails, the leader steps down and releases the lease, so another replica
  takes over at once, and `run()` raises for the supervisor to count and restart.
- Every request has a timeout: a hung call can neither renew nor keep the work running. It is
  half the renew deadline (as client-go's resourcelock does), so a renewal that hangs still
  leaves time for another before the deadline, and never more than the one request timeout.
  (The client must not retry on its own, `Configuration.retries = 0`: urllib3's default three
  retries would quadruple every timeout.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.kube.client import REQUEST_TIMEOUT
from agent.runtime.waiting import within

log = logging.getLogger(__name__)

Lead = Callable[[], Coroutine[Any, Any, None]]


class LeadError(RuntimeError):
    """The led work stopped while this process led: it stepped down, and says why."""


@dataclass(frozen=True)
class _Observed:
    record: tuple[Any, ...]
    at: float  # time.monotonic() when this process saw the record change


class LeaderElector:
    """Acquire and renew a Lease; run `lead()` while holding it, cancel it when lost."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        lead: Lead,
        on_change: Callable[[bool], None],
        *,
        lease_seconds: float = 15.0,
        renew_deadline: float = 10.0,
        retry_seconds: float = 2.0,
    ) -> None:
        if not retry_seconds < renew_deadline < lease_seconds:
            raise ValueError("need retry_seconds < renew_deadline < lease_seconds")
        self._api = client.CoordinationV1Api(api)
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._lead = lead
        self._on_change = on_change
        self._lease_seconds = lease_seconds
        self._renew_deadline = renew_deadline
        self._retry_seconds = retry_seconds
        self._timeout = min(renew_deadline / 2, REQUEST_TIMEOUT[1])
        self._observed: _Observed | None = None
        self.leading = False

    async def run(self) -> None:
        """Campaign, lead, step down, campaign again: until cancelled or the work fails."""
        held = False
        try:
            while True:
                await self._acquire()
                held = True
                await self._lead_while_renewing()
                held = False
        finally:
            self._set_leading(False)
            if held:
                # Stopped while holding it (SIGTERM): hand it over at once, not after expiry.
                await self._attempt(self._try_release)

    async def _acquire(self) -> None:
        while True:
            if await self._attempt(self._try_acquire):
                log.info("acquired the lease", extra={"lease": self._name, "id": self.identity})
                return
            await asyncio.sleep(self._retry_seconds)

    async def _lead_while_renewing(self) -> None:
        self._set_leading(True)
        work = asyncio.create_task(self._lead(), name=f"lead-{self._name}")
        last_renewal = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({work}, timeout=self._retry_seconds)
                if done:
                    await self._step_down(release=True)
                    exc = work.exception()
                    raise LeadError(f"the led work stopped: {exc!r}") from exc
                if await self._attempt(self._try_renew):
                    last_renewal = time.monotonic()
                elif time.monotonic() - last_renewal > self._renew_deadline:
                    log.warning(
                        "could not renew the lease in time; stepping down",
                        extra={"lease": self._name, "deadline_seconds": self._renew_deadline},
                    )
                    await self._step_down(release=False)
                    return
        finally:
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
            self._set_leading(False)

    async def _step_down(self, release: bool) -> None:
        self._set_leading(False)
        if release:
            await self._attempt(self._try_release)

    def _set_leading(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            self._on_change(leading)

    async def _attempt(self, call: Callable[[], bool]) -> bool:
        """One request round; any failure (refused, 5xx, timeout, conflict) is a plain False."""
        try:
            # The thread's own request timeouts end it (a round is at most two requests: read,
            # then create or replace); this bounds us even if they do not.
            return await within(asyncio.to_thread(call), self._timeout * 2 + 1)
        except ApiException as exc:
            log.warning("lease request failed", extra={"lease": self._name, "status": exc.status})
        except TimeoutError:
            log.warning(
                "lease request failed",
                extra={"lease": self._name, "error": f"timed out after {self._timeout * 2 + 1} s"},
            )
        except Exception as exc:
            log.warning(
                "lease request failed",
                extra={"lease": self._name, "error": f"{type(exc).__name__}: {exc}"},
            )
        return False

    # --- blocking calls, in a thread -------------------------------------------------------

    def _read(self) -> client.V1Lease | None:
        try:
            return self._api.read_namespaced_lease(
                self._name, self._namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _observe(self, spec: client.V1LeaseSpec) -> _Observed:
        record = (
            spec.holder_identity,
            spec.renew_time,
            spec.acquire_time,
            spec.lease_transitions,
            spec.lease_duration_seconds,
        )
        if self._observed is None or self._observed.record != record:
            self._observed = _Observed(record, time.monotonic())
        return self._observed

    def _try_acquire(self) -> bool:
        now = dt.datetime.now(dt.UTC)
        lease = self._read()
        if lease is None:
            return self._create(now)
        spec = lease.spec or client.V1LeaseSpec()
        observed = self._observe(spec)
        holder = spec.holder_identity
        duration = spec.lease_duration_seconds or self._lease_seconds
        expired = time.monotonic() > observed.at + duration
        if holder and holder != self.identity and not expired:
            return False
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(self._lease_seconds)
        lease.spec = spec
        return self._replace(lease)

    def _try_renew(self) -> bool:
        lease = self._read()
        if lease is None or lease.spec is None or lease.spec.holder_identity != self.identity:
            return False  # taken over or deleted: we are no longer the leader
        lease.spec.renew_time = dt.datetime.now(dt.UTC)
        return self._replace(lease)

    def _try_release(self) -> bool:
        lease = self._read()
        if lease is None or lease.spec is None or lease.spec.holder_identity != self.identity:
            return True
        # As client-go does: an empty holder and a 1 s duration let anyone take it at once.
        lease.spec.holder_identity = None
        lease.spec.lease_duration_seconds = 1
        lease.spec.renew_time = dt.datetime.now(dt.UTC)
        return self._replace(lease)

    def _replace(self, lease: client.V1Lease) -> bool:
        try:
            # Carries the resourceVersion read: a concurrent change is a 409, never lost.
            self._api.replace_namespaced_lease(
                self._name, self._namespace, lease, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def _create(self, now: dt.datetime) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self._name, namespace=self._namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=int(self._lease_seconds),
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            self._api.create_namespaced_lease(self._namespace, body, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

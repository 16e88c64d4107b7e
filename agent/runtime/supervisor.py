"""Run every long-lived part of a process under one supervisor, so that nothing dies silently.

A part is a coroutine that should run until the process stops. When one raises (or returns
when it should not), the supervisor logs it once with its traceback, counts it, and starts it
again after an exponential backoff. A part that keeps failing, or whose liveness probe reports
that it is stuck, makes `problems()` non-empty; `/healthz` turns that into a 503 so that the
kubelet restarts the pod. One-shot parts (the initial sync) are restarted only when they fail.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Runnable = Callable[[], Coroutine[Any, Any, None]]
# Returns None while the part is healthy, else why it is not (shown on /healthz).
LivenessProbe = Callable[[], str | None]

INITIAL_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
# A part that ran this long since its last start is healthy again: its backoff starts over.
STABLE_SECONDS = 60.0
# This many failures in a row, without a stable run between them, fail liveness: restarting
# the part in-process is evidently not enough, so let the kubelet restart the whole pod.
FAILURES_BEFORE_UNHEALTHY = 5


@dataclass
class ComponentState:
    """What the supervisor knows of one part; read by /healthz."""

    name: str
    oneshot: bool
    liveness: LivenessProbe | None
    running: bool = False
    finished: bool = False
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    started_at: float = field(default=0.0)

    def problem(self) -> str | None:
        if self.consecutive_failures >= FAILURES_BEFORE_UNHEALTHY:
            return f"failed {self.consecutive_failures} times in a row: {self.last_error}"
        if self.running and self.liveness is not None:
            return self.liveness()
        return None


class Supervisor:
    """Start, watch and restart the parts; `run()` returns only when cancelled."""

    def __init__(
        self,
        on_failure: Callable[[str], None] = lambda _: None,
        *,
        expected: Callable[[BaseException], bool] = lambda _: False,
        initial_backoff: float = INITIAL_BACKOFF_SECONDS,
        max_backoff: float = MAX_BACKOFF_SECONDS,
        stable_seconds: float = STABLE_SECONDS,
    ) -> None:
        self._on_failure = on_failure
        # Failures a restart of the pod cannot cure (the API server is unreachable): retried
        # with the same backoff, logged without a traceback, and never held against liveness,
        # or an API outage would make the kubelet restart every agent in the cluster.
        self._expected = expected
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._stable_seconds = stable_seconds
        self._parts: dict[str, tuple[Runnable, ComponentState]] = {}

    def add(
        self,
        name: str,
        run: Runnable,
        *,
        oneshot: bool = False,
        liveness: LivenessProbe | None = None,
    ) -> None:
        """Register a part before `run()`; `liveness` is asked while it runs."""
        if name in self._parts:
            raise ValueError(f"a component named {name!r} is already supervised")
        self._parts[name] = (run, ComponentState(name, oneshot, liveness))

    @property
    def components(self) -> dict[str, ComponentState]:
        return {name: state for name, (_, state) in self._parts.items()}

    def problems(self) -> dict[str, str]:
        """Parts failing liveness, with the reason; empty when all is well."""
        found: dict[str, str] = {}
        for name, (_, state) in self._parts.items():
            problem = state.problem()
            if problem is not None:
                found[name] = problem
        return found

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for name, (runnable, state) in self._parts.items():
                group.create_task(self._keep_running(runnable, state), name=f"supervise-{name}")

    async def _keep_running(self, runnable: Runnable, state: ComponentState) -> None:
        backoff = self._initial_backoff
        while True:
            state.running, state.started_at = True, time.monotonic()
            try:
                await runnable()
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as exc:
                if self._expected(exc):
                    log.warning(
                        "component waiting for the API; retrying",
                        extra={"component": state.name, "error": str(exc)[:300]},
                    )
                    state.running = False
                    await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                error: str = f"{type(exc).__name__}: {exc}"
                log.exception("component failed; restarting it", extra={"component": state.name})
            else:
                if state.oneshot:
                    state.running, state.finished = False, True
                    state.consecutive_failures = 0
                    return
                error = "returned although it should run until the agent stops"
                log.error("component stopped; restarting it", extra={"component": state.name})
            state.running = False
            if time.monotonic() - state.started_at >= self._stable_seconds:
                state.consecutive_failures = 0
                backoff = self._initial_backoff
            state.failures += 1
            state.consecutive_failures += 1
            state.last_error = error
            self._on_failure(state.name)
            # Jitter keeps many agents that failed for one shared reason from retrying in step.
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self._max_backoff)

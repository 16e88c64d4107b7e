"""Profiles whose compile failed for a reason unrelated to them, each retried with backoff.

A transient compile failure (worker killed or hung, no descriptors) is no verdict on the profile:
nothing is cached and no Event blames it. The latest object body waits here and is validated
again after a delay that doubles per failure (1 s to 60 s), until a compile succeeds or a newer
event for the same key supersedes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final

from agent.api.keys import ProfileKey

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS: Final = 1.0
MAX_DELAY_SECONDS: Final = 60.0


class CompileRetries:
    """Pending retries by profile key; `retry(key, body)` is awaited when one falls due."""

    def __init__(
        self,
        retry: Callable[[ProfileKey, Mapping[str, Any]], Coroutine[Any, Any, None]],
        first_delay: float = FIRST_DELAY_SECONDS,
        max_delay: float = MAX_DELAY_SECONDS,
    ) -> None:
        self._retry = retry
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._bodies: dict[ProfileKey, Mapping[str, Any]] = {}
        self._failures: dict[ProfileKey, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def failed(self, key: ProfileKey, body: Mapping[str, Any], reason: str) -> None:
        """The compile of `body` failed transiently: validate it again later."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        self._bodies[key] = body
        delay = min(self._first_delay * 2 ** (failures - 1), self._max_delay)
        log.warning(
            "compile failed for a reason unrelated to the profile; retrying",
            extra={"profile": str(key), "failures": failures, "retry_in": delay, "error": reason},
        )
        asyncio.get_running_loop().call_later(delay, self._due, key, body)

    def supersede(self, key: ProfileKey) -> None:
        """A newer event for `key` arrived: it replaces any pending retry (backoff carries on)."""
        self._bodies.pop(key, None)

    def succeeded(self, key: ProfileKey) -> None:
        self._bodies.pop(key, None)
        self._failures.pop(key, None)

    def forget(self, keys: set[ProfileKey]) -> None:
        """These profiles are gone: drop their retries and failure counts."""
        for key in keys:
            self._bodies.pop(key, None)
            self._failures.pop(key, None)

    def pending(self) -> set[ProfileKey]:
        return set(self._bodies)

    def _due(self, key: ProfileKey, body: Mapping[str, Any]) -> None:
        if self._bodies.get(key) is not body:
            return  # superseded, or an earlier timer for a body already retried
        del self._bodies[key]
        task = asyncio.create_task(self._retry(key, body), name=f"compile-retry {key}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("compile retry failed", exc_info=task.exception())

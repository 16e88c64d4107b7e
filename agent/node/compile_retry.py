"""Profiles whose compile failed for a reason unrelated to them, each retried with backoff.

A transient compile failure (worker killed or hung, no descriptors) is no verdict on the profile:
nothing is cached and no Event blames it. The body that failed waits here; after a delay that
doubles per failure (1 s to 60 s) its key is marked for validation again, and the profile worker
takes the body back, unless a newer body of the same profile arrived first (it supersedes the
retry; the backoff carries on).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from agent.api.keys import ProfileKey

log = logging.getLogger(__name__)

FIRST_DELAY_SECONDS: Final = 1.0
MAX_DELAY_SECONDS: Final = 60.0


class CompileRetries:
    """Pending retries by profile key; `mark(key)` is called when one falls due."""

    def __init__(
        self,
        mark: Callable[[ProfileKey], None],
        first_delay: float = FIRST_DELAY_SECONDS,
        max_delay: float = MAX_DELAY_SECONDS,
    ) -> None:
        self._mark = mark
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._bodies: dict[ProfileKey, Mapping[str, Any]] = {}
        self._failures: dict[ProfileKey, int] = {}

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

    def take(self, key: ProfileKey) -> Mapping[str, Any] | None:
        """The body waiting for a retry, no longer pending (validated now, or superseded by a
        newer one), or None."""
        return self._bodies.pop(key, None)

    def clear(self, key: ProfileKey) -> None:
        """The profile compiled at last, or is gone: drop its retry and failure count."""
        self._bodies.pop(key, None)
        self._failures.pop(key, None)

    def pending(self) -> set[ProfileKey]:
        return set(self._bodies)

    def __len__(self) -> int:
        """Profiles with a retry or a failure count (none once they are gone)."""
        return len(self._bodies.keys() | self._failures.keys())

    def _due(self, key: ProfileKey, body: Mapping[str, Any]) -> None:
        if self._bodies.get(key) is body:  # else superseded, or retried already
            self._mark(key)

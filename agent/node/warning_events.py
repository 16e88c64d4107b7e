"""Warning Events for people, each sent once: a profile newly invalid, a file that starts failing
to be written (or fails for another reason). A child listed before its base at start-up is
reported only if the base is still missing once the listing is complete (order is arbitrary).
"""

from __future__ import annotations

import asyncio
import logging

from agent.api.keys import ProfileKey
from agent.node.catalog import ProfileCatalog, ProfileRecord, WriteFailure
from agent.node.metrics import Metrics
from agent.profiles.compose import BASE_NOT_FOUND
from agent.runtime.events import EventSink

log = logging.getLogger(__name__)


class WarningEvents:
    def __init__(self, events: EventSink, catalog: ProfileCatalog, metrics: Metrics) -> None:
        self._events = events
        self._catalog = catalog
        self._metrics = metrics
        self._missing_base_at_start: set[ProfileKey] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def judged(self, record: ProfileRecord, before: ProfileRecord | None) -> None:
        """`record` replaced `before` in the catalog: report it if it is newly invalid."""
        if record.valid or (
            before is not None
            and (before.uid, before.generation, before.errors)
            == (record.uid, record.generation, record.errors)
        ):
            return
        if not self._catalog.complete and record.errors[0].reason == BASE_NOT_FOUND:
            self._missing_base_at_start.add(record.key)
            return
        self._invalid(record)

    def listing_complete(self) -> None:
        """The initial listing is in: children still missing their base are news now."""
        for key in sorted(self._missing_base_at_start):
            record = self._catalog.records.get(key)
            if record is not None and not record.valid:
                self._invalid(record)
        self._missing_base_at_start.clear()

    def write_failed(self, key: ProfileKey, failure: WriteFailure) -> None:
        record = self._catalog.records.get(key)
        if record is not None:  # else deleted: nobody to tell
            self._send(key, record.uid, "WriteFailed", failure.message)

    def _invalid(self, record: ProfileRecord) -> None:
        first = record.errors[0]
        self._metrics.validation_failures.labels(reason=first.reason).inc()
        kept = "; the last valid version stays on disk" if record.rendered else ""
        message = "; ".join(f"{f.field}: {f.message}" for f in record.errors[:3]) + kept
        log.warning(
            "invalid profile",
            extra={
                "profile": str(record.key),
                "generation": record.generation,
                "field": first.field,
                "reason": first.reason,
            },
        )
        self._send(record.key, record.uid, "InvalidProfile", message)

    def _send(self, key: ProfileKey, uid: str, reason: str, message: str) -> None:
        warn = self._events.warn
        task = asyncio.create_task(
            asyncio.to_thread(warn, key.namespace, key.name, uid, reason, message)
        )
        self._tasks.add(task)
        task.add_done_callback(_finished)
        task.add_done_callback(self._tasks.discard)


def _finished(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("could not send an Event", exc_info=task.exception())

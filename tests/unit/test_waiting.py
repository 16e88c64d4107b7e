"""A task told to stop must stop, even when what it waits for arrives in the same loop turn.

CI hung for 300 s in asyncio.run's cleanup: the drift watcher waited with `asyncio.wait_for`,
which on Python 3.11 returns the result instead of raising when the cancellation and the result
arrive together, so the watcher looped on after being cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest

from agent.node.agent import NodeAgent
from agent.node.catalog import ProfileCatalog
from agent.node.metrics import Metrics
from agent.node.report_writer import RecordingStatusWriter
from agent.node.store import ProfileStore
from agent.runtime.waiting import daemon_thread, event_within, within
from tests.unit.agent_harness import RecordedEvents


async def _loop_on(event: asyncio.Event, rounds: list[int]) -> None:
    while True:
        await event_within(event, 10)
        event.clear()
        rounds.append(1)


def test_event_within_says_whether_the_event_came() -> None:
    async def scenario() -> tuple[bool, bool]:
        event = asyncio.Event()
        missed = await event_within(event, 0.01)
        event.set()
        return missed, await event_within(event, 0.01)

    assert asyncio.run(scenario()) == (False, True)


def test_a_cancel_arriving_with_the_event_stops_the_loop() -> None:
    async def scenario() -> tuple[bool, int]:
        event, rounds = asyncio.Event(), []
        task = asyncio.create_task(_loop_on(event, rounds))
        await asyncio.sleep(0)  # the loop is waiting
        event.set()
        task.cancel()  # in the same turn
        await asyncio.wait({task}, timeout=2)
        return task.cancelled(), len(rounds)

    assert asyncio.run(scenario()) == (True, 0)


def test_within_keeps_a_cancel_that_arrives_with_the_result() -> None:
    async def scenario() -> bool:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def waiter() -> None:
            await within(future, 10)  # a swallowed cancel returns here, and the task ends

        task = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        future.set_result(1)
        task.cancel()
        await asyncio.wait({task}, timeout=2)
        return task.cancelled()

    assert asyncio.run(scenario())


def test_the_resync_loop_stops_when_cancelled_as_a_resync_is_requested(tmp_path: Path) -> None:
    async def scenario() -> bool:
        agent = NodeAgent(
            node_name="node-a",
            architectures=["SCMP_ARCH_X86_64"],
            catalog=ProfileCatalog(),
            store=ProfileStore(tmp_path),
            metrics=Metrics(),
            compile_profile=None,
            events=RecordedEvents(),
            list_profiles=dict,
            get_profile=lambda _: None,
            list_pods=dict,
            status=RecordingStatusWriter(),
            resync_seconds=3600,
        )
        task = asyncio.create_task(agent.resync.run())
        await asyncio.sleep(0)
        agent.resync.request()  # e.g. a watch restarted just as the agent shuts down
        task.cancel()
        await asyncio.wait({task}, timeout=2)
        return task.cancelled()

    assert asyncio.run(scenario())


def test_a_thread_ending_after_its_loop_closed_dies_quietly_and_says_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stop closes the event loop while a daemon thread (the recorder's) is still winding
    down: its end has no one to reach, and must not surface as an unhandled thread exception
    (seen as pytest's PytestUnhandledThreadExceptionWarning); an error it ended with is logged."""
    release = threading.Event()
    finished = threading.Event()
    unhandled: list[threading.ExceptHookArgs] = []

    def target() -> None:
        release.wait(10)
        try:
            raise OSError("the socket went away")
        finally:
            finished.set()

    async def start() -> None:
        daemon_thread("late", target)

    previous = threading.excepthook
    threading.excepthook = unhandled.append
    try:
        with caplog.at_level(logging.WARNING, logger="agent.runtime.waiting"):
            asyncio.run(start())  # the loop closes with the thread still running
            release.set()
            assert finished.wait(10)
            time.sleep(0.1)  # the thread's last step, after `finished`
    finally:
        threading.excepthook = previous
    assert unhandled == []
    (record,) = [r for r in caplog.records if r.name == "agent.runtime.waiting"]
    assert record.getMessage() == "a thread ended with an error after its event loop closed"
    assert "the socket went away" in record.__dict__["error"]

"""The supervisor restarts failed parts, counts and logs each failure, and reports liveness."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from agent.runtime.supervisor import FAILURES_BEFORE_UNHEALTHY, Supervisor


def _fast(failed: list[str] | None = None, stable_seconds: float = 60.0) -> Supervisor:
    sink = failed if failed is not None else []
    return Supervisor(
        sink.append, initial_backoff=0.001, max_backoff=0.002, stable_seconds=stable_seconds
    )


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coroutine)


async def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


def test_a_failing_part_is_logged_counted_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        failed: list[str] = []
        supervisor = _fast(failed)
        runs = 0

        async def flaky() -> None:
            nonlocal runs
            runs += 1
            if runs <= 2:
                raise ValueError(f"boom {runs}")
            await asyncio.Event().wait()  # then it runs for good

        supervisor.add("flaky", flaky)
        with caplog.at_level(logging.ERROR, logger="agent.runtime.supervisor"):
            task = asyncio.create_task(supervisor.run())
            await _until(lambda: runs == 3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert failed == ["flaky", "flaky"]
        state = supervisor.components["flaky"]
        assert state.failures == 2
        assert state.last_error == "ValueError: boom 2"
        # Logged once per failure, each with its traceback.
        records = [r for r in caplog.records if r.getMessage().startswith("component failed")]
        assert len(records) == 2
        assert all(r.exc_info is not None for r in records)
        assert supervisor.problems() == {}

    _run(scenario())


def test_a_part_that_returns_is_restarted_but_a_oneshot_is_not() -> None:
    async def scenario() -> None:
        supervisor = _fast()
        forever_runs = oneshot_runs = 0

        async def forever() -> None:
            nonlocal forever_runs
            forever_runs += 1

        async def oneshot() -> None:
            nonlocal oneshot_runs
            oneshot_runs += 1

        supervisor.add("forever", forever)
        supervisor.add("initial-sync", oneshot, oneshot=True)
        task = asyncio.create_task(supervisor.run())
        await _until(lambda: forever_runs >= 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert oneshot_runs == 1
        assert supervisor.components["initial-sync"].finished
        assert "returned although" in (supervisor.components["forever"].last_error or "")

    _run(scenario())


def test_a_part_that_keeps_failing_fails_liveness_until_it_recovers() -> None:
    async def scenario() -> None:
        supervisor = _fast(stable_seconds=0.05)
        broken = True
        runs = 0

        async def part() -> None:
            nonlocal runs
            runs += 1
            if broken:
                raise OSError("EROFS")
            await asyncio.sleep(0.1)  # a stable run resets the count of failures in a row
            raise OSError("once more")

        supervisor.add("syncer", part)
        task = asyncio.create_task(supervisor.run())
        await _until(lambda: runs >= FAILURES_BEFORE_UNHEALTHY + 1)
        problems = supervisor.problems()
        assert set(problems) == {"syncer"}
        assert "in a row" in problems["syncer"]
        assert "EROFS" in problems["syncer"]
        broken = False
        await _until(lambda: supervisor.components["syncer"].consecutive_failures == 1, timeout=10)
        assert supervisor.problems() == {}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(scenario())


def test_liveness_probe_is_asked_while_the_part_runs() -> None:
    async def scenario() -> None:
        supervisor = _fast()
        stuck: str | None = None

        async def part() -> None:
            await asyncio.Event().wait()

        supervisor.add("syncer", part, liveness=lambda: stuck)
        task = asyncio.create_task(supervisor.run())
        await _until(lambda: supervisor.components["syncer"].running)
        assert supervisor.problems() == {}
        stuck = "a write has been in flight for 300 s"
        assert supervisor.problems() == {"syncer": "a write has been in flight for 300 s"}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(scenario())


def test_names_are_unique() -> None:
    supervisor = _fast()

    async def part() -> None:
        return None

    supervisor.add("a", part)
    with pytest.raises(ValueError, match="already supervised"):
        supervisor.add("a", part)


def test_expected_failures_are_retried_but_never_fail_liveness() -> None:
    failed: list[str] = []
    supervisor = Supervisor(
        failed.append,
        expected=lambda exc: isinstance(exc, ConnectionRefusedError),
        initial_backoff=0.001,
        max_backoff=0.002,
    )
    runs = 0

    async def part() -> None:
        nonlocal runs
        runs += 1
        if runs < 20:
            raise ConnectionRefusedError("the API server is down")
        await asyncio.Event().wait()

    supervisor.add("resync", part)

    async def scenario() -> None:
        task = asyncio.create_task(supervisor.run())
        while runs < 20:
            assert supervisor.problems() == {}
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(scenario())
    assert failed == []
    assert supervisor.components["resync"].failures == 0

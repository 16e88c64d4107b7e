"""Waiting with a deadline that a cancellation always ends.

`asyncio.wait_for` on Python 3.11 swallows a cancellation that arrives in the same loop turn as
the awaited result: the task is told to stop, gets the result instead, and runs on. A loop that
waits on an event every few milliseconds (the drift watcher, the resync, the gate handler) hits
that turn sooner or later, and then shutdown hangs. `asyncio.timeout` does not have that defect.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


async def event_within(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; True when it was set."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """`awaitable`'s result, or TimeoutError after `seconds`; cancellation is never lost."""
    async with asyncio.timeout(seconds):
        return await awaitable


def daemon_thread(name: str, target: Callable[[], None]) -> asyncio.Future[None]:
    """Run `target` in a daemon thread; the future settles on this loop with its end.

    A daemon thread, not the default executor: one blocked on a read (a watch, a socket) must not
    keep the process from exiting. Its exception reaches whoever awaits (the supervisor).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(exc: BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(_settle, done, exc)
        except RuntimeError:  # the loop has closed (a stop): nobody awaits this end any more
            if exc is not None:
                log.warning(
                    "a thread ended with an error after its event loop closed",
                    extra={"thread_name": name, "error": repr(exc)[:200]},
                )

    def body() -> None:
        try:
            target()
        except BaseException as exc:
            settle(exc)
        else:
            settle(None)

    threading.Thread(target=body, daemon=True, name=name).start()
    return done


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)

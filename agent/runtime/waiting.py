"""Waiting with a deadline that a cancellation always ends.

`asyncio.wait_for` on Python 3.11 swallows a cancellation that arrives in the same loop turn as
the awaited result: the task is told to stop, gets the result instead, and runs on. A loop that
waits on an event every few milliseconds (the drift watcher, the resync, the gate handler) hits
that turn sooner or later, and then shutdown hangs. `asyncio.timeout` does not have that defect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


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

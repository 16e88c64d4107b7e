"""A queue of keys, as client-go's workqueue, and the keys touched while a listing is taken.

A key waits at most once; one added while a worker holds it is queued again when that worker is
done. No two workers ever hold one key, and a change in flight is never lost: the next pass
reads the latest state. Used for profiles to validate and for files to compare with the catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class KeyQueue(Generic[K]):
    """Keys waiting (queued), held by a worker (processing), or added again meanwhile (dirty)."""

    def __init__(self) -> None:
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._waiters: dict[K, list[asyncio.Future[None]]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, key: K) -> None:
        self._idle.clear()
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    async def take(self, most: int = 1) -> list[K]:
        """The next key, and up to `most` in all if more wait; each is held until `done`."""
        keys = [await self._ready.get()]
        while len(keys) < most and not self._ready.empty():
            keys.append(self._ready.get_nowait())
        self._queued.difference_update(keys)
        self._processing.update(keys)
        return keys

    def done(self, keys: Iterable[K]) -> None:
        for key in keys:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            else:
                for waiter in self._waiters.pop(key, ()):
                    if not waiter.done():
                        waiter.set_result(None)
        if not self._queued and not self._processing:
            self._idle.set()

    async def settled(self, key: K) -> None:
        """Until `key` is neither waiting nor held."""
        if key in self._queued or key in self._processing:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(key, []).append(waiter)
            await waiter

    async def wait_idle(self) -> None:
        await self._idle.wait()


class Touches(Generic[K]):
    """The keys events touched since a listing began: the listing must not overrule them."""

    def __init__(self) -> None:
        self._open: list[set[K]] = []

    def touch(self, key: K) -> None:
        for touched in self._open:
            touched.add(key)

    @contextlib.contextmanager
    def since(self) -> Iterator[set[K]]:
        touched: set[K] = set()
        self._open.append(touched)
        try:
            yield touched
        finally:  # by identity: two windows with the same keys are still two windows
            self._open = [t for t in self._open if t is not touched]

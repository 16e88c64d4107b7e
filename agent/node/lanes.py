"""Run validations on two thread pools, so a cheap profile never waits behind expensive ones.

The agent validates in threads (libseccomp compiles block). With one shared pool, a burst of
expensive profiles occupies every thread waiting for the compile worker, and a trivial profile
queues behind them, and so does everything else that needs a thread. Here each compile lane
(`cost.Lane`) has a pool of its own; the expensive pool has a single thread because its compile
worker serialises the calls anyway, and the queue waits as cheap futures, not blocked threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from agent.seccomp.cost import Lane, lane_for, shape_size

T = TypeVar("T")

CHEAP_THREADS: Final = 4
# (name x condition) pairs up to which the estimate is cheap enough for the event loop.
ESTIMATE_ON_LOOP_UP_TO: Final = 512


class ValidationLanes:
    """One thread pool per compile lane; `run` picks the pool from the profile's estimated cost."""

    def __init__(self, cheap_threads: int = CHEAP_THREADS) -> None:
        self._pools = {
            Lane.CHEAP: ThreadPoolExecutor(cheap_threads, thread_name_prefix="validate-cheap"),
            Lane.EXPENSIVE: ThreadPoolExecutor(1, thread_name_prefix="validate-expensive"),
        }
        self._classifier = ThreadPoolExecutor(1, thread_name_prefix="validate-classify")

    async def run(self, spec: Any, architectures: int, call: Callable[[], T]) -> T:
        """`call()` on the pool of `spec`'s lane (an OCI seccomp object, raw from the API)."""
        loop = asyncio.get_running_loop()
        if shape_size(spec) <= ESTIMATE_ON_LOOP_UP_TO:
            lane = lane_for(spec, architectures)  # microseconds: not worth a thread hop
        else:
            # Estimating a 3,072-condition profile takes milliseconds: on the event loop a
            # burst of them would hold up every other event, on the cheap threads every cheap
            # profile. One thread of its own does them in turn.
            lane = await loop.run_in_executor(self._classifier, lane_for, spec, architectures)
        return await loop.run_in_executor(self._pools[lane], call)

    def shutdown(self) -> None:
        for pool in (*self._pools.values(), self._classifier):
            pool.shutdown(wait=False, cancel_futures=True)

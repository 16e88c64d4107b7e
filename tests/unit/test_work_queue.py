"""The key queue's promises, and the touched-keys windows a listing opens."""

from __future__ import annotations

import asyncio

from agent.node.work_queue import KeyQueue, Touches


def test_a_key_added_while_held_comes_back_once_and_never_to_two_workers() -> None:
    async def scenario() -> list[list[str]]:
        queue: KeyQueue[str] = KeyQueue()
        queue.add("a")
        queue.add("a")  # waiting already: not twice
        taken = [await queue.take(most=10)]
        queue.add("a")  # held: marked dirty, not queued
        queue.add("b")
        taken.append(await queue.take(most=10))
        queue.done(taken[0])  # "a" is let go: queued again, once
        queue.add("a")
        taken.append(await queue.take(most=10))
        queue.done(["b", "a"])
        await queue.wait_idle()
        return taken

    assert asyncio.run(scenario()) == [["a"], ["b"], ["a"]]


def test_settled_waits_for_a_key_changed_in_flight_to_be_handled_again() -> None:
    async def scenario() -> list[str]:
        queue: KeyQueue[str] = KeyQueue()
        steps: list[str] = []
        queue.add("a")
        [key] = await queue.take()
        waiter = asyncio.create_task(queue.settled("a"))
        queue.add("a")  # changed while held
        queue.done([key])
        await asyncio.sleep(0)
        steps.append("settled" if waiter.done() else "still due")
        [key] = await queue.take()
        queue.done([key])
        await waiter
        steps.append("settled")
        return steps

    assert asyncio.run(scenario()) == ["still due", "settled"]


def test_two_listings_at_once_each_see_every_key_touched_while_they_last() -> None:
    touches: Touches[str] = Touches()
    with touches.since() as first:
        with touches.since() as second:
            pass  # closed while both are empty (and so equal)
        touches.touch("a")
    assert first == {"a"}
    assert second == set()

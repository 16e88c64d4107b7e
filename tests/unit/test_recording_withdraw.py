"""A stopping agent's last word on its node's recordings (NodePartPublisher.withdraw): every
part not ready, the names kept, and nothing written before the earlier agent's part was read
back (a write then would replace its names with empty sets). The API is a fake of the one call
the publisher makes; the real one is exercised by tests/e2e/test_recording_e2e.py."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client

from agent.api.keys import ProfileKey
from agent.api.recording import NodeRecording
from agent.node.recording_watch import NodePartPublisher

PART = NodeRecording(
    recording=ProfileKey("shop", "web"),
    uid="u1",
    ready=True,
    pods=frozenset({"shop/web-1"}),
    syscalls={"web": frozenset({"mkdir", "read"})},
    architectures=frozenset({"SCMP_ARCH_X86_64"}),
)


class FakeCustomObjects:
    def __init__(self, stored: list[dict[str, Any]]) -> None:
        self.stored = stored
        self.patches: list[dict[str, Any]] = []

    def get_cluster_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"status": {"recordings": self.stored}}

    def patch_cluster_custom_object(self, *args: Any, **kwargs: Any) -> None:
        self.patches.append(args[4])


def publisher(fake: FakeCustomObjects) -> NodePartPublisher:
    built = NodePartPublisher(client.ApiClient(), "node-1", lambda: [PART], lambda parts: None)
    built._custom = fake  # type: ignore[assignment]
    return built


def test_withdraw_publishes_every_part_not_ready_and_keeps_the_names() -> None:
    fake = FakeCustomObjects([])

    async def scenario() -> None:
        part_publisher = publisher(fake)
        task = asyncio.create_task(part_publisher.run())
        await asyncio.sleep(0.1)  # read back: nothing published before
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await part_publisher.withdraw()

    asyncio.run(scenario())
    (patch,) = fake.patches
    (entry,) = patch["status"]["recordings"]
    assert entry["ready"] is False
    assert entry["containers"] == [{"name": "web", "syscalls": ["mkdir", "read"]}]
    assert entry["pods"] == ["shop/web-1"]


def test_withdraw_before_the_read_back_writes_nothing() -> None:
    fake = FakeCustomObjects([])
    asyncio.run(publisher(fake).withdraw())
    assert fake.patches == []

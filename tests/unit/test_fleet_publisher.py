"""The controller publishes the fleet digests: once every listing is in, only when one moved,
with a revision that only grows (also across leaders), and again after a failed write."""

from __future__ import annotations

import asyncio
import hashlib

from agent.api.keys import ProfileKey
from agent.controller.fleet_publisher import COALESCE_SECONDS, FleetPublisher, MemoryFleetConfigMap
from agent.controller.profile_status import ProfileView
from agent.controller.state import ClusterState

ARCH = "SCMP_ARCH_X86_64"
A = ProfileKey("ns", "a")


def view(version: str) -> ProfileView:
    return ProfileView(A, 1, hashlib.sha256(version.encode()).hexdigest(), architecture=ARCH)


class FailingOnce(MemoryFleetConfigMap):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def write(self, data: dict[str, str], exists: bool) -> None:
        if not self.failed:
            self.failed = True
            raise TimeoutError("the API server did not answer")
        super().write(data, exists)


def run(configmap: MemoryFleetConfigMap, steps: list[tuple[str, object]]) -> list[dict[str, str]]:
    """Drive a publisher over `steps` ("profile", view) / ("wait", seconds); returns what the
    ConfigMap held after each wait."""
    seen: list[dict[str, str]] = []

    async def main() -> None:
        wake = asyncio.Event()
        state = ClusterState(listeners=(lambda _: wake.set(),))
        task = asyncio.create_task(FleetPublisher(state, configmap, wake).run())
        for what, value in steps:
            if what == "listed":
                state.replace_profiles([view("v1")])
                state.replace_reports([])
                state.replace_nodes([])
            elif what == "profile":
                assert isinstance(value, ProfileView)
                state.put_profile(value)
            else:
                assert isinstance(value, float)
                await asyncio.sleep(value)
                seen.append(dict(configmap.data or {}))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    return seen


def test_nothing_is_published_before_every_listing_is_in() -> None:
    configmap = MemoryFleetConfigMap()
    assert run(configmap, [("wait", 3 * COALESCE_SECONDS)]) == [{}]
    assert configmap.writes == 0


def test_a_change_is_published_once_with_a_new_revision_and_an_unchanged_state_not_at_all() -> None:
    configmap = MemoryFleetConfigMap()
    configmap.data = {ARCH: "0" * 64, "revision": "41"}  # left by the previous leader
    later = 3 * COALESCE_SECONDS
    seen = run(
        configmap,
        [
            ("listed", None),
            ("wait", later),
            ("profile", view("v2")),
            ("profile", view("v3")),  # coalesced with the one before
            ("wait", later),
            ("profile", view("v3")),  # no change
            ("wait", later),
        ],
    )
    assert [s["revision"] for s in seen] == ["42", "43", "43"]
    assert seen[0][ARCH] != seen[1][ARCH]
    assert configmap.writes == 2


def test_a_failed_write_is_tried_again() -> None:
    configmap = FailingOnce()
    seen = run(configmap, [("listed", None), ("wait", 1.5 + 3 * COALESCE_SECONDS)])
    assert configmap.failed and seen[-1].get("revision") == "1"

"""The drift watcher hears every change a person or program can make to a managed file, on a
real directory with a real inotify watch, and nothing else: reading a profile (the kubelet does
at every container start) must not wake it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from agent.api.keys import ProfileKey
from agent.node.drift import DriftWatcher
from agent.node.store import ProfileStore

KEY = ProfileKey("default", "web")


async def _watching(root: Path, scenario: Callable[[Path, list[ProfileKey]], object]) -> None:
    store = ProfileStore(root)
    heard: list[ProfileKey] = []
    watcher = DriftWatcher(store, heard.append, lambda: None, check_seconds=0.05)
    task = asyncio.create_task(watcher.run())
    try:
        while not (root / "seccomp-sync").is_dir():
            await asyncio.sleep(0.01)
        namespace = root / "seccomp-sync" / "default"
        namespace.mkdir()
        await asyncio.sleep(0.3)  # watchdog adds the new directory to its watch
        result = scenario(namespace, heard)
        if asyncio.iscoroutine(result):
            await result
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _heard_within(heard: list[ProfileKey], seconds: float = 3.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while not heard:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def test_every_kind_of_change_to_a_managed_file_is_heard(tmp_path: Path) -> None:
    changes: dict[str, Callable[[Path], None]] = {
        "created": lambda d: (d / "web.json").write_text("{}"),
        "overwritten": lambda d: (d / "web.json").write_text('{"defaultAction": "X"}'),
        "chmod-ed": lambda d: (d / "web.json").chmod(0o666),
        "deleted": lambda d: (d / "web.json").unlink(),
        "renamed in": lambda d: (d.parent / "elsewhere.json").rename(d / "web.json"),
        "renamed out": lambda d: (d / "web.json").rename(d.parent / "elsewhere.json"),
    }
    missed: list[str] = []

    async def scenario(namespace: Path, heard: list[ProfileKey]) -> None:
        for what, change in changes.items():
            if what == "renamed in":
                (namespace.parent / "elsewhere.json").write_text("{}")
                await asyncio.sleep(0.1)
            heard.clear()
            change(namespace)
            if not await _heard_within(heard) or KEY not in heard:
                missed.append(what)

    asyncio.run(_watching(tmp_path, scenario))
    assert missed == []


def test_reading_managed_files_does_not_wake_the_watcher(tmp_path: Path) -> None:
    outcome: list[list[ProfileKey]] = []

    async def scenario(namespace: Path, heard: list[ProfileKey]) -> None:
        (namespace / "web.json").write_text("{}")
        await _heard_within(heard)
        await asyncio.sleep(0.3)
        heard.clear()
        for _ in range(200):  # as runtimes do when containers start
            (namespace / "web.json").read_bytes()
        await asyncio.sleep(0.5)
        outcome.append(list(heard))

    asyncio.run(_watching(tmp_path, scenario))
    assert outcome == [[]]

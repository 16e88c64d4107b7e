"""Watch the managed directory (inotify via watchdog) and report changes to managed files.

The agent's own writes show up here too; the syncer compares bytes and does nothing for them.
Anything else (a file deleted, edited or replaced on the host) is restored from memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from agent.catalog import ProfileKey
from agent.store import is_temp_file_name

log = logging.getLogger(__name__)


def key_of(managed_dir: Path, path: str) -> ProfileKey | None:
    """`<managed>/<ns>/<name>.json` -> its key; anything else (temp files, dirs) -> None."""
    try:
        relative = Path(path).relative_to(managed_dir)
    except ValueError:
        return None
    parts = relative.parts
    if len(parts) != 2 or not parts[1].endswith(".json") or is_temp_file_name(parts[1]):
        return None
    return ProfileKey(parts[0], parts[1].removesuffix(".json"))


class _Forwarder(FileSystemEventHandler):
    def __init__(
        self,
        managed_dir: Path,
        loop: asyncio.AbstractEventLoop,
        notify: Callable[[ProfileKey], None],
    ) -> None:
        self._managed_dir = managed_dir
        self._loop = loop
        self._notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write", "closed"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        for raw in paths:
            key = key_of(self._managed_dir, raw if isinstance(raw, str) else raw.decode())
            if key is not None:
                self._loop.call_soon_threadsafe(self._notify, key)


class DriftWatcher:
    """Runs a watchdog observer thread on the managed directory."""

    def __init__(self, managed_dir: Path, notify: Callable[[ProfileKey], None]) -> None:
        self._managed_dir = managed_dir
        self._notify = notify
        self._observer: Any = None  # watchdog's Observer is a platform-chosen class

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The managed directory must exist (the store creates it safely)."""
        observer = Observer()
        observer.schedule(
            _Forwarder(self._managed_dir, loop, self._notify),
            str(self._managed_dir),
            recursive=True,
        )
        observer.daemon = True
        observer.start()
        self._observer = observer
        log.info("watching the managed directory for drift", extra={"path": str(self._managed_dir)})

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

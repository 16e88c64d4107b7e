"""Keep the managed directory present and watched, and report changes to managed files.

Changes arrive through inotify (watchdog). The agent's own writes show up too; the syncer compares
bytes and does nothing for them. Anything else (a file deleted, edited or replaced on the host) is
restored from memory.

An inotify watch dies with its directory, so the directory itself is checked every second too:
- removed (`rm -rf <root>/seccomp-sync` on the host) where the agent can create it again: it is
  recreated, watched anew and every profile is rewritten;
- removed where it cannot come back in-process: in the DaemonSet the directory *is* the bind
  mount, and once deleted on the host the container keeps a directory with no links that the
  runtime no longer reads. That is reported as a liveness problem, so the kubelet restarts the
  container and mounts the directory again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from agent.api.keys import ProfileKey
from agent.api.layout import name_of_file
from agent.node.store import (
    ManagedDirGoneError,
    ProfileStore,
    StoreError,
    is_temp_file_name,
)
from agent.runtime.waiting import event_within

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
# What can change a managed file: written, chmod-ed, created, deleted, renamed in or out (and
# the same for directories). Opens and closes are left out of the inotify mask: every write of
# ours and every read (the kubelet's, at each container start) would otherwise wake watchdog's
# threads several times for nothing; at a 10,000-profile cold start that was 4.7 s of CPU.
DRIFT_EVENTS = (
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,  # chmod, chown
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
)


def key_of(managed_dir: Path, path: str) -> ProfileKey | None:
    """`<managed>/<ns>/<name>.json` -> its key; anything else (temp files, dirs, names that
    are not DNS labels, which no profile can have) -> None."""
    try:
        relative = Path(path).relative_to(managed_dir)
    except ValueError:
        return None
    parts = relative.parts
    if len(parts) != 2 or is_temp_file_name(parts[1]):
        return None
    name = name_of_file(parts[1])
    key = ProfileKey(parts[0], name) if name is not None else None
    return key if key is not None and key.is_valid else None


class _Forwarder(FileSystemEventHandler):
    def __init__(
        self,
        managed_dir: Path,
        loop: asyncio.AbstractEventLoop,
        notify: Callable[[ProfileKey], None],
        wake: asyncio.Event,
    ) -> None:
        self._managed_dir = managed_dir
        self._loop = loop
        self._notify = notify
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = raw if isinstance(raw, str) else raw.decode()
            if path and Path(path) == self._managed_dir:
                # The watched directory itself went away: check at once, not in a second.
                self._loop.call_soon_threadsafe(self._wake.set)
                continue
            key = key_of(self._managed_dir, path)
            if key is not None:
                self._loop.call_soon_threadsafe(self._notify, key)


class DriftWatcher:
    """Supervised: `run()` keeps an inotify watch on a managed directory that exists."""

    def __init__(
        self,
        store: ProfileStore,
        notify: Callable[[ProfileKey], None],
        rescan: Callable[[], None],
        *,
        on_status_change: Callable[[], None] = lambda: None,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self._store = store
        self._notify = notify
        self._rescan = rescan
        self._on_status_change = on_status_change
        self._check_seconds = check_seconds
        self._wake = asyncio.Event()
        # Why the directory cannot be used right now (readiness), and whether only a restart of
        # the container can fix it (liveness).
        self.unavailable: StoreError | None = None
        self.needs_restart: str | None = None
        self.recreations = 0

    @property
    def managed_dir(self) -> Path:
        return self._store.managed_dir

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        first = True
        while True:
            handle = await self._prepare()
            observer = self._start_observer(loop)
            try:
                if not first:
                    # watchdog arms the new watch in its own thread: give it a moment, then
                    # compare every file, so nothing changed in between goes unnoticed.
                    await self._sleep()
                    self.recreations += 1
                    log.warning(
                        "the managed directory was removed or replaced on the host; watching "
                        "it again and rewriting every profile",
                        extra={"path": str(self.managed_dir)},
                    )
                    self._rescan()
                first = False
                while await self._still_watched(handle, observer):
                    pass
            finally:
                await asyncio.to_thread(_stop, observer)
                os.close(handle)

    async def _prepare(self) -> int:
        """Make sure the directory exists and is linked; wait (reporting why) until it is."""
        while True:
            try:
                handle = await asyncio.to_thread(self._ensure)
            except ManagedDirGoneError as exc:
                self._report(exc, needs_restart=True)
            except StoreError as exc:
                self._report(exc, needs_restart=False)
            else:
                if self.unavailable is not None:
                    log.info("the managed directory is usable again")
                    self.unavailable = self.needs_restart = None
                    self._on_status_change()
                return handle
            await self._sleep()

    def _ensure(self) -> int:
        self._store.ensure_managed_dir()
        return self._store.open_managed_dir()

    def _report(self, exc: StoreError, *, needs_restart: bool) -> None:
        changed = self.unavailable is None or self.unavailable.reason != exc.reason
        if changed:
            log.error(
                "the managed directory cannot be used",
                extra={"path": str(self.managed_dir), "reason": exc.reason, "error": str(exc)},
            )
        self.unavailable = exc
        self.needs_restart = str(exc) if needs_restart else None
        if changed:
            self._on_status_change()

    async def _still_watched(self, handle: int, observer: Any) -> bool:
        await self._sleep()
        if not observer.is_alive():
            log.warning("the inotify watcher stopped; starting it again")
            return False
        return await asyncio.to_thread(self._store.is_current, handle)

    async def _sleep(self) -> None:
        await event_within(self._wake, self._check_seconds)
        self._wake.clear()

    def _start_observer(self, loop: asyncio.AbstractEventLoop) -> Any:
        observer = Observer()
        observer.schedule(
            _Forwarder(self.managed_dir, loop, self._notify, self._wake),
            str(self.managed_dir),
            recursive=True,
            event_filter=list(DRIFT_EVENTS),
        )
        observer.daemon = True
        observer.start()
        log.info("watching the managed directory for drift", extra={"path": str(self.managed_dir)})
        return observer


def _stop(observer: Any) -> None:
    observer.stop()
    observer.join(timeout=5)

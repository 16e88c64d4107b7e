"""An in-process, fault-injecting harness for the agent's async core.

The node agent, its syncer, drift watcher and resync run for real, under the real supervisor,
writing to a real directory. What is scripted is what lies outside the core:
- the API's answers (`ScriptedApi`): the objects that exist, the events the watch delivers (or
  loses), and errors of every class thrown at the listing and reading calls;
- the filesystem's faults (`FaultyOs`): the system calls the store is built with, so the store's
  own error handling runs on EROFS, ENOSPC, EMFILE or a call that hangs.
The real API server and a real read-only mount are exercised by tests/integration/test_chaos.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.api.keys import ProfileKey, profile_key
from agent.api.model import OciSeccomp
from agent.kube.client import api_unavailable
from agent.node.agent import NodeAgent
from agent.node.catalog import ProfileCatalog
from agent.node.lanes import ValidationLanes
from agent.node.metrics import Metrics
from agent.node.report_writer import RecordingStatusWriter
from agent.node.resync import PodRefs
from agent.node.store import ProfileStore
from agent.node.syncer import STALL_SECONDS
from agent.node.worker import ObjectVersion
from agent.profiles.render import render
from agent.runtime.events import RecordedEvents
from agent.runtime.supervisor import Supervisor

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT


class FaultyOs:
    """The system calls a store is built with: `os`, with switchable faults."""

    def __init__(self) -> None:
        self.read_only = False  # like a read-only remount: every change fails with EROFS
        self.full = False  # ENOSPC on writing file contents
        self.out_of_descriptors = False  # EMFILE on every open
        self.hang: threading.Event | None = None  # opens block until this is set
        self.crash_on_read: Exception | None = None  # a bug: the store raises something odd

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if not callable(real):
            return real
        if name == "open":
            return self._open
        if name in ("mkdir", "rename", "unlink", "rmdir", "fchmod") and self.read_only:
            return _failing(errno.EROFS)
        if name == "write" and self.full:
            return _failing(errno.ENOSPC)
        return real

    def _open(self, path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if self.hang is not None:
            self.hang.wait()
        if self.out_of_descriptors:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        if self.read_only and flags & _WRITE_FLAGS:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        if self.crash_on_read is not None and not flags & _WRITE_FLAGS:
            raise self.crash_on_read
        return os.open(path, flags, *args, **kwargs)


def _failing(code: int) -> Callable[..., Any]:
    def fail(*_: Any, **__: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return fail


@dataclass
class ScriptedApi:
    """What the API holds, and the errors its next calls throw."""

    objects: dict[ProfileKey, dict[str, Any]] = field(default_factory=dict)
    pods: PodRefs = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    # Called in the listing's thread after it has read the objects (to race with events).
    after_listing: Callable[[], None] | None = None
    lists: int = 0
    _version: int = 0

    def _maybe_fail(self) -> None:
        if self.errors:
            raise self.errors.pop(0)

    def list_profiles(self) -> dict[ProfileKey, ObjectVersion]:
        self._maybe_fail()
        self.lists += 1
        listed = {
            key: ObjectVersion(body["metadata"]["uid"], body["metadata"]["resourceVersion"])
            for key, body in self.objects.items()
        }
        if self.after_listing is not None:
            self.after_listing()
        return listed

    def get_profile(self, key: ProfileKey) -> Mapping[str, Any] | None:
        self._maybe_fail()
        return self.objects.get(key)

    def list_pods(self) -> PodRefs:
        self._maybe_fail()
        return dict(self.pods)

    def put(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update an object as the API server would (uid kept, versions bumped)."""
        key = ProfileKey(namespace, name)
        self._version += 1
        old = self.objects.get(key)
        meta = {
            "namespace": namespace,
            "name": name,
            "uid": old["metadata"]["uid"] if old else f"uid-{namespace}-{name}-{self._version}",
            "generation": (old["metadata"]["generation"] + 1) if old else 1,
            "resourceVersion": str(self._version),
        }
        body = {
            "apiVersion": "seccompsync.io/v1beta1",
            "kind": "SeccompProfile",
            "metadata": meta,
            "spec": dict(spec),
        }
        self.objects[key] = body
        return body


def spec(errno_ret: int = 1) -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno_ret}],
    }


def expected_bytes(body: Mapping[str, Any]) -> bytes:
    return render(OciSeccomp.model_validate(body["spec"])).content


class SlowWithoutBase(ValidationLanes):
    """Lanes where a child whose base is missing waits its turn for a while (a busy lane)."""

    async def run(self, spec: Any, architectures: int, call: Callable[[], Any]) -> Any:
        if isinstance(spec, Mapping) and "baseProfileName" in spec:
            await asyncio.sleep(0.3)
        return await super().run(spec, architectures, call)


class Harness:
    """One node agent on `root`, fed by a ScriptedApi, under the supervisor."""

    def __init__(
        self,
        root: Path,
        *,
        resync_seconds: float = 3600.0,
        stall_seconds: float = STALL_SECONDS,
        lanes: ValidationLanes | None = None,
    ) -> None:
        self.root = root
        self.api = ScriptedApi()
        self.os = FaultyOs()
        self.events = RecordedEvents()
        self.metrics = Metrics()
        self.status = RecordingStatusWriter()
        self.failed_components: list[str] = []
        self.store = ProfileStore(root, self.os)
        self.ready_calls = 0
        self.agent = NodeAgent(
            node_name="node-a",
            architectures=["SCMP_ARCH_X86_64"],
            catalog=ProfileCatalog(),
            store=self.store,
            metrics=self.metrics,
            compile_profile=None,
            events=self.events,
            list_profiles=self.api.list_profiles,
            get_profile=self.api.get_profile,
            list_pods=self.api.list_pods,
            status=self.status,
            on_ready=self._on_ready,
            lanes=lanes,
            resync_seconds=resync_seconds,
            stall_seconds=stall_seconds,
            drift_check_seconds=0.05,
        )
        self.drift = self.agent.drift
        self.supervisor = Supervisor(
            self.failed_components.append,
            expected=api_unavailable,
            initial_backoff=0.01,
            max_backoff=0.05,
        )
        self.agent.supervise(self.supervisor)

    def _on_ready(self) -> None:
        self.ready_calls += 1

    # --- driving it ------------------------------------------------------------------------

    async def deliver(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Deliver a watch event, and wait until the agent has handled it."""
        self.agent.on_profile_event(event_type, body)
        await self.agent.profiles.settled(profile_key(body))

    async def apply(self, namespace: str, name: str, body_spec: Mapping[str, Any]) -> None:
        """Create or update, and deliver the watch event."""
        await self.deliver("MODIFIED", self.api.put(namespace, name, body_spec))

    def apply_unseen(self, namespace: str, name: str, body_spec: Mapping[str, Any]) -> None:
        """Create or update in the API, but the watch loses the event."""
        self.api.put(namespace, name, body_spec)

    async def delete(self, namespace: str, name: str) -> None:
        await self.deliver("DELETED", self.api.objects.pop(ProfileKey(namespace, name)))

    async def start(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self.supervisor.run())

    # --- what a user would check -----------------------------------------------------------

    def valid_objects(self) -> dict[ProfileKey, dict[str, Any]]:
        return {
            key: body
            for key, body in self.api.objects.items()
            if key.is_valid and OciSeccomp.model_validate(body["spec"])
        }

    def disk(self) -> dict[ProfileKey, bytes]:
        managed = self.root / "seccomp-sync"
        found: dict[ProfileKey, bytes] = {}
        if not managed.is_dir():
            return found
        for namespace in managed.iterdir():
            if not namespace.is_dir() or namespace.is_symlink():
                continue
            for entry in namespace.iterdir():
                key = ProfileKey(namespace.name, entry.name.removesuffix(".json"))
                if entry.name.endswith(".json") and key.is_valid and entry.is_file():
                    with contextlib.suppress(FileNotFoundError):  # removed while we look
                        found[key] = entry.read_bytes()
        return found

    def converged(self) -> bool:
        """The disk holds exactly the valid objects' rendered bytes, and readiness says so."""
        wanted = {key: expected_bytes(body) for key, body in self.valid_objects().items()}
        return self.disk() == wanted and self.agent.readiness.ready

    async def until(self, condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}; "
                    f"ready: {self.agent.readiness.not_ready_reason()}; "
                    f"disk: {sorted(map(str, self.disk()))}; "
                    f"api: {sorted(map(str, self.api.objects))}; "
                    f"problems: {self.supervisor.problems()}"
                )
            await asyncio.sleep(0.01)

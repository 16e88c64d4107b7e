"""Recordings on this node: which recording profiles are on disk, which listeners are admitted,
which pods' recordings were cut short, and the node part this adds up to.

Level-based: the watch (agent.node.recording_watch) hands over SeccompProfileRecording objects,
kopf hands over this node's pods; `sync()` makes `_recording/` hold exactly the profiles of the
active recordings, and `parts()` is this node's `status.recordings`, derived from what is known
now. Running either twice changes nothing.

A recording's part outlives its object: the controller writes the result profiles from the
parts, and it may be slower than this agent. A part stays until its object has been gone for
`LINGER_SECONDS` (10 minutes), counted from the delete event, or from the first listing that no
longer shows it (an object deleted while the agent was down).

An agent restart cuts the listeners of every container it was recording: from then on the
kernel answers their notified syscalls with ENOSYS. The restarted agent cannot take those
listeners back, so it says so: a running container under a recording profile that started
before this agent and that no listener of this agent serves is listed as degraded with reason
`RecorderRestarted` (the controller marks the recording Degraded, naming the pods). A listener
the recorder refused is listed as `ListenerRefused`.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from agent.api.keys import ProfileKey
from agent.api.model import OciSeccomp
from agent.api.recording import (
    DegradedPod,
    NodeRecording,
    recording_of_localhost_profile,
)
from agent.node.recorder import ListenerState, Observations
from agent.node.store import ProfileStore, StoreError
from agent.profiles.base_graph import base_key, is_builtin
from agent.profiles.builtin_bases import UnknownBuiltinError, builtin_profile
from agent.profiles.render import render_document
from agent.runtime.waiting import event_within
from agent.seccomp.recording_profile import recording_profile

log = logging.getLogger(__name__)

LINGER_SECONDS: Final = 600.0
CHECK_SECONDS: Final = 30.0  # the recording profiles are compared with the disk this often
# A container's start time has whole seconds: one that started with this agent is not older.
CLOCK_SLACK_SECONDS: Final = 1.0
RECORDER_RESTARTED: Final = "RecorderRestarted"
LISTENER_REFUSED: Final = "ListenerRefused"
_CONTAINER_LISTS: Final = ("containers", "initContainers", "ephemeralContainers")
_STATUS_LISTS: Final = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")


@dataclass(frozen=True)
class RecordingObject:
    """What the node needs of a SeccompProfileRecording."""

    key: ProfileKey
    uid: str
    active: bool
    base: str | None


def parse_recording(body: Mapping[str, Any]) -> RecordingObject | None:
    """A watched object -> what the node uses of it; None if it names no valid key."""
    meta = body.get("metadata") or {}
    key = ProfileKey(str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    if not key.is_valid:
        return None
    spec = body.get("spec") or {}
    base = spec.get("baseProfileName")
    return RecordingObject(
        key=key,
        uid=str(meta.get("uid") or ""),
        # Stopping: spec.active false, or the object on its way out (a finalizer holds it).
        active=spec.get("active", True) is not False and not meta.get("deletionTimestamp"),
        base=base if isinstance(base, str) and base else None,
    )


class Admissions:
    """The recordings whose listeners the recorder may serve, read from its thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: frozenset[ProfileKey] | None = None  # None: not listed yet

    def set(self, active: frozenset[ProfileKey]) -> None:
        with self._lock:
            self._active = active

    def admit(self, state: ListenerState) -> str | None:
        """None to serve the listener; else why not (logged, and listed as degraded)."""
        with self._lock:
            # Before this agent has listed the recordings (it just restarted), a listener is
            # served: runc loaded a recording profile that an agent wrote for an active
            # recording, and refusing it would make the container fail at its first syscall.
            active = self._active is None or state.recording in self._active
        if state.namespace != state.recording.namespace:
            return (
                f"pod {state.pod_ref} is not in the namespace of recording {state.recording}: "
                "a recording observes only its own namespace's pods"
            )
        if not active:
            return f"recording {state.recording} does not exist or is not active"
        return None


class RecorderView(Protocol):
    """What the keeper reads of the recorder (agent.node.recorder.Recorder is one)."""

    listening: bool
    served: set[tuple[str, str]]
    refused: dict[tuple[str, str], str]


BaseLookup = Callable[[ProfileKey], OciSeccomp | None]  # a same-namespace SeccompProfile


class Recordings:
    """This node's recordings; `run()` (supervised) keeps their profiles on disk."""

    def __init__(
        self,
        *,
        store: ProfileStore,
        native: str,
        listener_path: str,
        observations: Observations,
        admissions: Admissions,
        recorder: RecorderView,
        lookup_base: BaseLookup = lambda _: None,
        changed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        linger_seconds: float = LINGER_SECONDS,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        """`store` is rooted at `_recording`; `listener_path` is the recorder's socket as the
        host sees it; `changed` is called whenever `parts()` may differ."""
        self._store = store
        self._native = native
        self._listener_path = listener_path
        self.observations = observations
        self._admissions = admissions
        self._recorder = recorder
        self._lookup_base = lookup_base
        self._changed = changed
        self._clock = clock
        self._linger = linger_seconds
        self._check_seconds = check_seconds
        self.started_at = clock()
        self.objects: dict[ProfileKey, RecordingObject] = {}
        self.gone: dict[ProfileKey, float] = {}  # deleted, since
        self._uids: dict[ProfileKey, str] = {}  # the uid the observations belong to
        self._degraded: dict[ProfileKey, dict[tuple[str, str], str]] = {}
        self._on_disk: dict[ProfileKey, bytes] = {}
        self._problems: dict[ProfileKey, str] = {}
        self._listed = False
        self._wake = asyncio.Event()

    # --- input ---------------------------------------------------------------------------------

    def restore(self, parts: list[NodeRecording]) -> None:
        """This node's parts as an earlier agent published them: nothing recorded is lost."""
        for part in parts:
            self._uids[part.recording] = part.uid
            self.observations.restore(part.recording, part.pods, part.syscalls, part.architectures)
            degraded = self._degraded.setdefault(part.recording, {})
            for entry in part.degraded:
                degraded[(entry.pod, entry.container)] = entry.reason
        self._changed()

    def on_list(self, bodies: list[Mapping[str, Any]]) -> None:
        """A full listing: what it does not show is gone."""
        listed = {obj.key: obj for obj in map(parse_recording, bodies) if obj is not None}
        now = self._clock()
        for key in [*self.objects, *self._uids]:
            if key not in listed:
                self.gone.setdefault(key, now)
        self.objects = {}
        for obj in listed.values():
            self._upsert(obj)
        self._listed = True
        self._update()

    def on_event(self, kind: str, body: Mapping[str, Any]) -> None:
        obj = parse_recording(body)
        if obj is None:
            return
        if kind == "DELETED":
            if self.objects.pop(obj.key, None) is not None or obj.key in self._uids:
                self.gone.setdefault(obj.key, self._clock())
        else:
            self._upsert(obj)
        self._update()

    def on_pod_event(self, kind: str | None, pod: Mapping[str, Any]) -> None:
        """A pod on this node: is one of its recorded containers running without a listener?"""
        if kind == "DELETED":
            return  # what it recorded stays; so does a degradation already noted
        noted = False
        for key, container, started in recorded_containers(pod):
            pod_ref = _pod_ref(pod)
            if (pod_ref, container) in self._recorder.served:
                continue
            refused = self._recorder.refused.get((pod_ref, container))
            if refused is not None:
                reason = LISTENER_REFUSED
            elif started is not None and started < self.started_at - CLOCK_SLACK_SECONDS:
                reason = RECORDER_RESTARTED
            else:
                continue  # started under this agent: its listener is on its way
            degraded = self._degraded.setdefault(key, {})
            if degraded.get((pod_ref, container)) != reason:
                degraded[(pod_ref, container)] = reason
                noted = True
                log.warning(
                    "a recorded container runs without a listener: its notified syscalls fail "
                    "with ENOSYS and its recording is incomplete",
                    extra={
                        "recording": str(key),
                        "pod": pod_ref,
                        "container": container,
                        "reason": reason,
                    },
                )
        if noted:
            self._changed()

    def _upsert(self, obj: RecordingObject) -> None:
        self.gone.pop(obj.key, None)
        if self._uids.get(obj.key, obj.uid) != obj.uid:
            # Deleted and made again: a new recording starts afresh.
            self.observations.forget(obj.key)
            self._degraded.pop(obj.key, None)
        self._uids[obj.key] = obj.uid
        self.objects[obj.key] = obj

    def _update(self) -> None:
        self._admissions.set(frozenset(k for k, o in self.objects.items() if o.active))
        self._wake.set()
        self._changed()

    # --- the node part -------------------------------------------------------------------------

    def parts(self) -> list[NodeRecording]:
        """This node's `status.recordings` as of now (a part lingers after its object)."""
        now = self._clock()
        for key, since in list(self.gone.items()):
            if now - since >= self._linger:
                self._drop(key)
        snapshot = self.observations.snapshot()
        parts = []
        for key, uid in sorted(self._uids.items()):
            observed = snapshot.get(key)
            obj = self.objects.get(key)
            parts.append(
                NodeRecording(
                    recording=key,
                    uid=uid,
                    ready=obj is not None
                    and obj.active
                    and key in self._on_disk
                    and self._recorder.listening,
                    pods=frozenset(observed.pods) if observed else frozenset(),
                    syscalls={c: frozenset(n) for c, n in observed.syscalls.items()}
                    if observed
                    else {},
                    architectures=frozenset(observed.architectures) if observed else frozenset(),
                    degraded=tuple(
                        DegradedPod(pod, container, reason)
                        for (pod, container), reason in sorted(self._degraded.get(key, {}).items())
                    ),
                )
            )
        return parts

    def _drop(self, key: ProfileKey) -> None:
        self.gone.pop(key, None)
        self._uids.pop(key, None)
        self._degraded.pop(key, None)
        self.observations.forget(key)
        log.info("dropped the node part of a deleted recording", extra={"recording": str(key)})

    # --- the profiles on disk ------------------------------------------------------------------

    async def run(self) -> None:
        """Keep `_recording/` equal to the active recordings' profiles (and repair drift)."""
        while True:
            self._wake.clear()
            if self._listed:
                # A copy: the watch replaces the objects on the loop while the disk is written.
                await asyncio.to_thread(self.sync, dict(self.objects))
                self._changed()
            await event_within(self._wake, self._check_seconds)

    def sync(self, objects: Mapping[ProfileKey, RecordingObject] | None = None) -> None:
        """Write each active recording's profile, remove every other file. Idempotent."""
        wanted: dict[ProfileKey, bytes] = {}
        for key, obj in (self.objects if objects is None else objects).items():
            if not obj.active:
                continue
            content, problem = self._content(obj)
            if problem is not None:
                if self._problems.get(key) != problem:
                    log.warning(
                        "cannot write a recording profile",
                        extra={"recording": str(key), "error": problem},
                    )
                self._problems[key] = problem
                continue
            self._problems.pop(key, None)
            if content is not None:
                wanted[key] = content
        for key in self._store.list_managed() - wanted.keys():
            self._remove(key)
        for key, content in wanted.items():
            try:
                self._store.write(key.namespace, key.name, content)
            except StoreError as exc:
                self._on_disk.pop(key, None)
                log.warning(
                    "cannot write a recording profile",
                    extra={"recording": str(key), "reason": exc.reason, "error": str(exc)},
                )
                continue
            if self._on_disk.get(key) != content:
                log.info(
                    "recording profile written",
                    extra={"recording": str(key), "path": str(self._store.profile_path(*key))},
                )
            self._on_disk[key] = content

    def _remove(self, key: ProfileKey) -> None:
        try:
            self._store.remove(key.namespace, key.name)
        except StoreError as exc:
            log.warning(
                "cannot remove a recording profile",
                extra={"recording": str(key), "reason": exc.reason, "error": str(exc)},
            )
            return
        if self._on_disk.pop(key, None) is not None:
            log.info("recording profile removed", extra={"recording": str(key)})

    def _content(self, obj: RecordingObject) -> tuple[bytes | None, str | None]:
        base: OciSeccomp | None = None
        if obj.base is not None:
            if is_builtin(obj.base):
                try:
                    base = builtin_profile(obj.base, self._native)
                except UnknownBuiltinError as exc:
                    return None, str(exc)
            else:
                base = self._lookup_base(base_key(obj.key, obj.base))
                if base is None:
                    return None, (
                        f"the base SeccompProfile {base_key(obj.key, obj.base)} does not exist "
                        "or is not valid on this node"
                    )
        document = recording_profile(self._native, self._listener_path, obj.key, base)
        return render_document(document).content, None


def recorded_containers(
    pod: Mapping[str, Any],
) -> Iterator[tuple[ProfileKey, str, float | None]]:
    """(recording, container, started at) of each running container under a recording profile."""
    spec = pod.get("spec") or {}
    pod_profile = _localhost(spec.get("securityContext"))
    profiles: dict[str, str | None] = {}
    for field in _CONTAINER_LISTS:
        for container in spec.get(field) or []:
            context = container.get("securityContext") or {}
            # A container's own seccompProfile, of any type, overrides the pod's.
            own = "seccompProfile" in context
            profiles[str(container.get("name"))] = _localhost(context) if own else pod_profile
    status = pod.get("status") or {}
    for field in _STATUS_LISTS:
        for entry in status.get(field) or []:
            name = str(entry.get("name"))
            running = (entry.get("state") or {}).get("running")
            path = profiles.get(name)
            key = recording_of_localhost_profile(path) if path else None
            if key is None or not isinstance(running, Mapping):
                continue
            yield key, name, _timestamp(running.get("startedAt"))


def _localhost(context: Mapping[str, Any] | None) -> str | None:
    profile = (context or {}).get("seccompProfile") or {}
    if profile.get("type") == "Localhost" and profile.get("localhostProfile"):
        return str(profile["localhostProfile"])
    return None


def _pod_ref(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_base(rendered: bytes) -> OciSeccomp | None:
    """A same-namespace base as the catalog holds it (its flattened file's bytes)."""
    try:
        return OciSeccomp.model_validate(json.loads(rendered))
    except ValueError:
        return None

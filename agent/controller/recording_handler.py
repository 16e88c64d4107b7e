"""In-cluster recording, the controller's loop: fold the nodes' parts into each
SeccompProfileRecording's status, and write its results when it stops.

Level-based, as the gate handler: each pass looks at every recording as the watches show it
now (`RecordingBoard`) and decides with the pure functions of `recordings`; a new leader picks
up where the last one stopped. Only the leader runs it. The finalizer
seccompsync.io/recording-result keeps a deleted recording until its results are written; a
result the API server refuses for good (an existing profile of another owner, the tenant
policy) is reported and never holds the deletion.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

from agent.api.keys import ProfileKey
from agent.api.recording import NodeRecording
from agent.controller.gate_decision import ProfileReadiness
from agent.controller.recordings import (
    PODS_CUT_SHORT,
    PROFILE_EXISTS,
    RESULT_REFUSED,
    Merged,
    Outcome,
    RecordingView,
    ResultRefusedError,
    build_status,
    degraded_message,
    merge,
    ours,
    readiness,
    recording_view,
    result_profiles,
    results_settled,
    same_status,
)
from agent.runtime.events import EventSink
from agent.runtime.waiting import event_within

log = logging.getLogger(__name__)

TICK_SECONDS: Final = 2.0  # a pass that failed (the API) is tried again this soon
DEBOUNCE_SECONDS: Final = 0.05


class RecordingWrites(Protocol):
    """The handler's I/O (`recording_writes`: the API, and a fake)."""

    def add_finalizer(self, view: RecordingView, present: list[str]) -> None: ...

    def remove_finalizer(self, view: RecordingView, present: list[str]) -> None: ...

    def write_status(self, key: ProfileKey, status: dict[str, Any]) -> None: ...

    def existing(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def write_profile(self, body: dict[str, Any], resource_version: str | None) -> None:
        """Create (None) or replace; `ResultRefusedError` when refused for good."""
        ...


class RecordingBoard:
    """The recordings and the nodes' parts, as the watches show them. Pure data: the watches
    call in on the event loop; `on_change` hears every change."""

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self.views: dict[ProfileKey, RecordingView] = {}
        self.finalizers: dict[ProfileKey, list[str]] = {}
        self.parts: dict[str, list[NodeRecording]] = {}  # node -> its parts
        self.recordings_listed = False
        self.parts_listed = False
        self._on_change = on_change

    @property
    def listed(self) -> bool:
        """Both listings are in. Deciding before the nodes' parts are would write the results
        of a stopped recording from nothing."""
        return self.recordings_listed and self.parts_listed

    def replace_recordings(self, entries: Iterable[tuple[RecordingView, list[str]]]) -> None:
        listed = list(entries)
        self.views = {view.key: view for view, _ in listed}
        self.finalizers = {view.key: finalizers for view, finalizers in listed}
        self.recordings_listed = True
        self._on_change()

    def put_recording(self, view: RecordingView, finalizers: list[str]) -> None:
        self.views[view.key] = view
        self.finalizers[view.key] = finalizers
        self._on_change()

    def drop_recording(self, key: ProfileKey) -> None:
        self.views.pop(key, None)
        self.finalizers.pop(key, None)
        self._on_change()

    def put_parts(self, node: str, parts: list[NodeRecording]) -> None:
        if self.parts.get(node, []) == parts:
            return  # most report changes are about profiles, not recordings
        self.parts[node] = parts
        self._on_change()

    def replace_parts(self, parts: Mapping[str, list[NodeRecording]]) -> None:
        self.parts = {node: p for node, p in parts.items() if p}
        self.parts_listed = True
        self._on_change()

    def drop_parts(self, node: str) -> None:
        if self.parts.pop(node, None) is not None:
            self._on_change()

    def snapshot(self) -> RecordingBoard:
        """A copy to read off the event loop (the lists inside are never changed in place)."""
        copy = RecordingBoard()
        copy.views = dict(self.views)
        copy.finalizers = dict(self.finalizers)
        copy.parts = dict(self.parts)
        copy.recordings_listed = self.recordings_listed
        copy.parts_listed = self.parts_listed
        return copy

    def merged(self, key: ProfileKey) -> Merged:
        view = self.views.get(key)
        return Merged() if view is None else merge(view, self.parts)

    def readiness(self, key: ProfileKey, nodes: frozenset[str]) -> ProfileReadiness:
        """For the gate handler: where a pod naming this recording's profile may start."""
        return readiness(key, self.views.get(key), self.merged(key), nodes)


class RecordingHandler:
    """Runs while this controller leads."""

    def __init__(
        self,
        board: RecordingBoard,
        wake: asyncio.Event,
        writes: RecordingWrites,
        events: EventSink,
        nodes: Callable[[], frozenset[str]] = frozenset,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        """`nodes`: every node that runs an agent (the nodes a recorded pod may go to)."""
        self._board = board
        self._nodes = nodes
        self._wake = wake
        self._writes = writes
        self._events = events
        self._now = now
        self._said: dict[tuple[str, str], str] = {}  # (uid, reason) -> last Event message
        self._retry = False

    @property
    def board(self) -> RecordingBoard:
        return self._board

    async def run(self) -> None:
        self._wake.set()
        while True:
            if await event_within(self._wake, TICK_SECONDS):
                await asyncio.sleep(DEBOUNCE_SECONDS)
            elif not self._retry:
                continue
            self._wake.clear()
            # Read on the loop, where the watches change the board; written from a thread.
            await asyncio.to_thread(self.reconcile, self._board.snapshot(), self._nodes())

    def reconcile(
        self, board: RecordingBoard | None = None, nodes: frozenset[str] | None = None
    ) -> None:
        """One pass over every recording of `board` (a snapshot: this runs on a worker thread,
        as the writes block), given the nodes that run an agent."""
        board = board or self._board.snapshot()
        nodes = self._nodes() if nodes is None else nodes
        self._retry = False
        if not board.listed:
            return
        for key in sorted(board.views):
            view = board.views[key]
            try:
                self._reconcile(board, view, list(board.finalizers.get(key, [])), nodes)
            except Exception as exc:  # the API: the next tick tries again; a bug: said, too
                self._retry = True
                log.warning(
                    "could not reconcile recording",
                    extra={
                        "recording": str(key),
                        "error": f"{type(exc).__name__}: {getattr(exc, 'body', None) or exc}"[:500],
                    },
                )
        present = {view.uid for view in board.views.values()}
        for said in [s for s in self._said if s[0] not in present]:
            del self._said[said]

    def _reconcile(
        self,
        board: RecordingBoard,
        view: RecordingView,
        finalizers: list[str],
        nodes: frozenset[str],
    ) -> None:
        if view.deleting and not view.finalized:
            return  # not ours to hold any more
        if not view.deleting and not view.finalized:
            self._writes.add_finalizer(view, finalizers)
        merged = merge(view, board.parts)
        if merged.degraded:
            self._say(view, PODS_CUT_SHORT, degraded_message(merged))
        outcome = None
        if view.stopped and not results_settled(view):
            outcome = self._write_results(view, merged)
        if view.deleting:
            # Results written, refused for good, or nothing to write: release the deletion.
            self._writes.remove_finalizer(view, finalizers)
            log.info("recording deleted", extra={"recording": str(view.key)})
            return
        status = build_status(view, merged, outcome, self._now(), nodes)
        if not same_status(status, view.status):
            self._writes.write_status(view.key, status)

    def _write_results(self, view: RecordingView, merged: Merged) -> Outcome:
        """Raises on a failure worth retrying (the API): nothing is reported settled then."""
        written: list[str] = []
        not_ours: dict[str, str] = {}
        refused: dict[str, str] = {}
        for name, body in result_profiles(view, merged).items():
            existing = self._writes.existing(view.key.namespace, name)
            if existing is not None and not ours(view, existing):
                not_ours[name] = "exists"
                continue
            version = None if existing is None else str(existing["metadata"]["resourceVersion"])
            try:
                self._writes.write_profile(body, version)
            except ResultRefusedError as exc:
                refused[name] = str(exc)
                continue
            written.append(name)
        outcome = Outcome(tuple(written), not_ours, refused)
        if not_ours:
            self._say(
                view,
                PROFILE_EXISTS,
                "not overwritten: SeccompProfile "
                + ", ".join(f"{view.key.namespace}/{n}" for n in sorted(not_ours))
                + " exists and was not written by this recording; its result is not written",
            )
        for name, why in sorted(refused.items()):
            self._say(view, RESULT_REFUSED, f"SeccompProfile {view.key.namespace}/{name}: {why}")
        log.info(
            "recording results written",
            extra={
                "recording": str(view.key),
                "written": written,
                "not_ours": sorted(not_ours),
                "refused": sorted(refused),
            },
        )
        return outcome

    def _say(self, view: RecordingView, reason: str, message: str) -> None:
        """A Warning Event on the recording, once per recording, reason and message."""
        if self._said.get((view.uid, reason)) == message:
            return
        self._said[(view.uid, reason)] = message
        self._events.warn(view.key.namespace, view.key.name, view.uid, reason, message)


def recording_entry(body: Mapping[str, Any]) -> tuple[RecordingView, list[str]]:
    """A watched SeccompProfileRecording: its view and its finalizers as they are."""
    finalizers = [str(f) for f in (body.get("metadata") or {}).get("finalizers") or []]
    return recording_view(body), finalizers

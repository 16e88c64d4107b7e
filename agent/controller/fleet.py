"""The fleet digests the controller expects, and what a compact node report at one of them holds.

For each architecture the nodes have, the digest (agent.api.fleet_digest) of every profile
version a node of that architecture renders; one profile change moves it in O(1). Each change
gets a sequence number, and a bounded history maps the recent digests to the sequence number
they stood at. A node whose compact report names digest D held, when it wrote it, every profile
as of D's position but the ones it lists as problems; so a profile is held there iff it has not
changed since that position. That question costs O(1), and the controller keeps no node x
profile map for compact nodes: O(profiles x architectures + history) in all.

A digest the history does not know (the controller restarted, or the node is further behind
than the history reaches) answers `UNKNOWN`: counted as not held, until the node reports again,
which it does (it matches the new publication, or writes the full form after a settle time).

Pure: no I/O, no asyncio. `FleetDigests` lives on the event loop; `Holdings` is a snapshot of
the part a status pass needs, handed to a thread.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Final

from agent.api.fleet_digest import Digest
from agent.api.keys import ProfileKey
from agent.api.node_report import NodeReport

if TYPE_CHECKING:  # profile_status judges with `Holdings`: a runtime import would be a cycle
    from agent.controller.profile_status import ProfileView

HISTORY_STATES: Final = 256
HISTORY_SECONDS: Final = 600.0


class Holding(Enum):
    """A profile on a node with a compact report, as far as digests tell."""

    HELD = "held"  # at its current version (unless the node lists it as a problem)
    OUTDATED = "outdated"  # the node's digest predates the profile's current version
    NOT_YET = "not yet"  # ... and predates the profile itself
    UNKNOWN = "unknown"  # the node's digest is not in the history


@dataclass
class _Architecture:
    digest: Digest = field(default_factory=Digest)
    # digest -> (position, when), oldest first; the current digest is always the last one.
    history: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)
    changed: dict[ProfileKey, int] = field(default_factory=dict)  # key -> last change's position
    present_since: dict[ProfileKey, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Holdings:
    """What a status pass needs to judge compact reports: each one's position, and when each
    profile it judges last changed (copied on the loop, read in a thread)."""

    # (architecture, digest) -> its position (None: unknown), for the digests reports name
    positions: Mapping[tuple[str, str], int | None]
    changes: Mapping[tuple[str, ProfileKey], tuple[int, int | None]]  # -> changed, present since

    def holding(self, report: NodeReport, key: ProfileKey) -> Holding:
        if report.architecture is None or report.digest is None:
            return Holding.UNKNOWN
        position = self.positions.get((report.architecture, report.digest))
        if position is None:
            return Holding.UNKNOWN
        changed, since = self.changes.get((report.architecture, key), (0, None))
        if changed <= position:
            return Holding.HELD
        return Holding.OUTDATED if since is not None and since <= position else Holding.NOT_YET


NO_HOLDINGS: Final = Holdings({}, {})


class FleetDigests:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._architectures: dict[str, _Architecture] = {}
        self._position = 0
        self._log: deque[tuple[int, ProfileKey]] = deque()  # (position, key) of each change
        self._views: dict[ProfileKey, ProfileView] = {}

    @property
    def architectures(self) -> set[str]:
        return set(self._architectures)

    def published(self) -> dict[str, str]:
        """Architecture -> the digest to publish."""
        return {arch: state.digest.hex for arch, state in sorted(self._architectures.items())}

    def add_architectures(self, architectures: Iterable[str]) -> bool:
        """Count these architectures too (their views are rendered). True if any is new."""
        new = [arch for arch in architectures if arch and arch not in self._architectures]
        if not new:
            return False
        self._position += 1
        for arch in new:
            state = self._architectures[arch] = _Architecture()
            for key, view in self._views.items():
                sha = _sha_on(view, arch)
                if sha is not None:
                    state.digest.set(key, sha)
                    state.changed[key] = state.present_since[key] = self._position
            self._remember(state)
        return True

    def update(self, views: Mapping[ProfileKey, ProfileView | None]) -> bool:
        """These profiles now have these views (None: gone), as one step of the history.
        True when any digest moved."""
        if not views:
            return False
        self._position += 1
        moved = False
        for key, view in views.items():
            if view is None:
                self._views.pop(key, None)
            else:
                self._views[key] = view
            changed = False
            for arch, state in self._architectures.items():
                sha = None if view is None else _sha_on(view, arch)
                was_present = key in state.digest.members
                if state.digest.set(key, sha):
                    changed = True
                    state.changed[key] = self._position
                    if sha is None:
                        state.present_since.pop(key, None)
                        if view is None:
                            state.changed.pop(key, None)  # gone: nothing left to judge
                    elif not was_present:
                        state.present_since[key] = self._position
            if changed:
                self._log.append((self._position, key))
                moved = True
        if moved:
            for state in self._architectures.values():
                self._remember(state)
        return moved

    def replace(self, views: Iterable[ProfileView]) -> bool:
        """A full listing: the differences from what was known, as one step."""
        new = {view.key: view for view in views}
        diff: dict[ProfileKey, ProfileView | None] = {
            key: view for key, view in new.items() if self._views.get(key) != view
        }
        diff.update(dict.fromkeys(self._views.keys() - new.keys()))
        return self.update(diff)

    def position(self, architecture: str | None, digest: str | None) -> int | None:
        state = self._architectures.get(architecture or "")
        if state is None or digest is None:
            return None
        entry = state.history.get(digest)
        return entry[0] if entry is not None else None

    def changed_between(
        self, architecture: str | None, old: str | None, new: str | None
    ) -> set[ProfileKey] | None:
        """The profiles that changed between two digests (None: one of them is unknown)."""
        a, b = self.position(architecture, old), self.position(architecture, new)
        if a is None or b is None:
            return None
        low, high = min(a, b), max(a, b)
        changed = set()
        # Newest first: a node that moves on usually moves to the latest digest, so this reads
        # only the changes since its last report, not the whole log.
        for position, key in reversed(self._log):
            if position <= low:
                break
            if position <= high:
                changed.add(key)
        return changed

    def holdings(self, digests: Iterable[tuple[str, str]], keys: Iterable[ProfileKey]) -> Holdings:
        """The snapshot a status pass over `keys` needs, for compact reports naming `digests`
        ((architecture, digest) pairs: `ClusterState.compact_digests`, a handful, not one per
        node)."""
        keys = list(keys)
        digests = list(digests)
        if not keys or not digests:
            return NO_HOLDINGS
        positions = {(arch, digest): self.position(arch, digest) for arch, digest in digests}
        changes: dict[tuple[str, ProfileKey], tuple[int, int | None]] = {}
        for arch in {arch for arch, _ in digests}:
            state = self._architectures.get(arch)
            if state is None:
                continue
            for key in keys:
                changed = state.changed.get(key)
                if changed is not None:
                    changes[arch, key] = (changed, state.present_since.get(key))
        return Holdings(positions, changes)

    def _remember(self, state: _Architecture) -> None:
        now = self._clock()
        digest = state.digest.hex
        state.history.pop(digest, None)  # a set seen again stands at its newest position
        state.history[digest] = (self._position, now)
        while len(state.history) > HISTORY_STATES or (
            len(state.history) > 1 and next(iter(state.history.values()))[1] < now - HISTORY_SECONDS
        ):
            state.history.popitem(last=False)
        oldest = min(
            (next(iter(s.history.values()))[0] for s in self._architectures.values() if s.history),
            default=self._position,
        )
        while self._log and self._log[0][0] <= oldest:
            self._log.popleft()


def _sha_on(view: ProfileView, architecture: str) -> str | None:
    sha = view.expected_on(architecture)
    return sha if isinstance(sha, str) else None

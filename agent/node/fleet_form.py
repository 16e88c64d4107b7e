"""Which form this node's next report takes: compact, full, or not yet. Pure: no I/O.

Compact (agent.api.node_report) when the digest of what this node has seen equals the one the
controller publishes for its architecture: the report then names that digest and only what the
node does not hold. Otherwise the full list, which every controller understands, so nothing is
ever less truthful for want of a match; but not at once, since the node and the controller learn
of a profile change through two watches and either may be first: a mismatch is given
`SETTLE_SECONDS` after this node's last change to resolve, and the node's previous report stands
meanwhile (a compact report at an older digest counts nothing changed since, so it claims
nothing the node does not hold). With no digest published for this architecture at all (no
ConfigMap: an older controller, or none yet), there is nothing to wait for: full at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from agent.api.fleet_digest import published_digests
from agent.node.catalog import ProfileCatalog

SETTLE_SECONDS: Final = 5.0
# A node whose digest keeps moving (a long burst of changes) still writes a full report this
# long after the mismatch began.
MAX_SETTLE_SECONDS: Final = 30.0


class Form(Enum):
    COMPACT = "compact"
    FULL = "full"


@dataclass(frozen=True)
class Later:
    """Not yet: ask again in `seconds`."""

    seconds: float


@dataclass
class PublishedDigests:
    """The latest content of the fleet ConfigMap, from its watch (shared by the bench's nodes).
    `listed` False until the watch's first listing; `digests` empty when there is none."""

    digests: dict[str, str] = field(default_factory=dict)
    listed: bool = False

    def replace(self, data: Mapping[str, Any] | None) -> bool:
        """The ConfigMap now holds `data` (None: it does not exist). True when that changed."""
        digests = published_digests(data)
        changed = digests != self.digests or not self.listed
        self.digests, self.listed = digests, True
        return changed


@dataclass
class FleetForm:
    published: PublishedDigests
    architecture: str
    _first_mismatch: float | None = field(default=None, init=False)
    _last_mismatch: tuple[str, float] | None = field(default=None, init=False)  # seen, since

    def decide(self, seen: str, now: float) -> Form | Later:
        """The form for a report of what the digest `seen` stands for, at monotonic `now`."""
        expected = self.published.digests.get(self.architecture)
        if expected == seen:
            self._first_mismatch = self._last_mismatch = None
            return Form.COMPACT
        if self.published.listed and expected is None:
            return Form.FULL
        if self._last_mismatch is None or self._last_mismatch[0] != seen:
            self._last_mismatch = (seen, now)
        if self._first_mismatch is None:
            self._first_mismatch = now
        wait = min(
            self._last_mismatch[1] + SETTLE_SECONDS, self._first_mismatch + MAX_SETTLE_SECONDS
        )
        if now >= wait:
            return Form.FULL
        return Later(wait - now)


def node_report(
    catalog: ProfileCatalog, form: FleetForm, node: str, now: Callable[[], float]
) -> dict[str, Any] | Later:
    """This node's next report, in the form `form` picks (always full before the initial sync
    is done: a digest of a partial view matches nothing, and nothing needs to wait for it)."""
    decision = form.decide(catalog.seen.hex, now()) if catalog.complete else Form.FULL
    if isinstance(decision, Later):
        return decision
    return catalog.report(node, form.architecture, compact=decision is Form.COMPACT)

"""What this agent knows: the desired profiles, and the per-node state of each.

One place holds it (records, which profile is built on which, the files on disk, the writes that
fail, whether the initial sync is done) so that the node report, readiness and the metrics read
the same truth the syncer acts on. Pure data: no I/O, no Kubernetes, no asyncio.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agent.api.findings import Finding, error
from agent.api.fleet_digest import Digest
from agent.api.keys import ProfileKey
from agent.api.model import OciSeccomp
from agent.api.node_report import NodeProfileStatus, NodeState, build_status
from agent.profiles.base_graph import BaseGraph
from agent.profiles.base_resolution import BaseLookup, BaseState
from agent.profiles.render import RenderedProfile

# Findings kept per profile: enough for status, Events and `kubectl describe`; a profile with
# thousands of bad names must not cost thousands of objects for as long as it exists.
MAX_KEPT_FINDINGS = 20
# All rendered profiles together: 10,000 profiles the size of Docker's default as written
# (indented) fit; the DaemonSet's memory limit is 512 MiB.
MAX_RENDERED_BYTES = 192 * 1024 * 1024


@dataclass(frozen=True)
class ProfileRecord:
    """The latest object seen for a key, and the last valid rendering of it.

    `rendered` outlives an invalid update: the last good file stays on disk while the
    current generation's `errors` say what is wrong with the new one.
    """

    key: ProfileKey
    uid: str
    generation: int
    rendered: RenderedProfile | None
    errors: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    base_chain: tuple[str, ...] = ()  # spec.baseProfileName resolved: the bases, nearest first
    # What the controller expects a node to write for this generation when only this node's own
    # checks refuse it (the compile, the memory budget): the controller does not run those, so
    # the fleet digest counts this version, and so must this node's (it reports the profile
    # as a problem). Without it, one such profile kept every node on full reports.
    fleet_sha: str | None = None

    @property
    def valid(self) -> bool:
        return not self.errors


class WriteFailure(NamedTuple):
    """Why the last attempt to write or remove a profile's file failed."""

    reason: str  # short and stable (EROFS, ENOSPC, UnsafePath): what metrics and Events key on
    message: str


@dataclass
class ProfileCatalog:
    records: dict[ProfileKey, ProfileRecord] = field(default_factory=dict)
    bases: BaseGraph = field(default_factory=BaseGraph)
    installed: dict[ProfileKey, str] = field(default_factory=dict)  # key -> sha256 on disk
    failures: dict[ProfileKey, WriteFailure] = field(default_factory=dict)
    # False until the initial sync has seen every listed object: until then a profile missing
    # here (a child's base, say) may still arrive, and the node reports only that it is starting.
    complete: bool = False
    # The rendered files are kept in memory (drift repair restores them from there); their
    # total is capped so that no number of profiles can push the agent past its memory limit.
    max_rendered_bytes: int = MAX_RENDERED_BYTES
    rendered_bytes: int = field(default=0, init=False)
    # The fleet digest of every profile version this node has seen render (agent.api.
    # fleet_digest), kept as records change: what the controller publishes, when both agree.
    seen: Digest = field(default_factory=Digest, init=False)

    def accept(self, record: ProfileRecord) -> ProfileRecord:
        """Store a newly validated record, carrying the last good rendering over an invalid one."""
        previous = self.records.get(record.key)
        kept_before = _size(previous)
        if record.rendered is not None:
            total = self.rendered_bytes - kept_before + len(record.rendered.content)
            if total > self.max_rendered_bytes:
                record = ProfileRecord(
                    record.key,
                    record.uid,
                    record.generation,
                    None,
                    (_over_budget(total, self.max_rendered_bytes),),
                    record.warnings,
                    fleet_sha=record.rendered.sha256,
                )
        if record.rendered is None and previous is not None and previous.uid == record.uid:
            record = ProfileRecord(
                record.key,
                record.uid,
                record.generation,
                previous.rendered,
                record.errors,
                record.warnings,
                record.base_chain,
                record.fleet_sha,
            )
        self.records[record.key] = record
        self.rendered_bytes += _size(record) - kept_before
        self.seen.set(record.key, _seen_sha(record))
        return record

    def forget(self, key: ProfileKey) -> None:
        """The object is gone (its file follows via the syncer, its children stay children)."""
        self.rendered_bytes -= _size(self.records.pop(key, None))
        self.seen.set(key, None)
        self.bases.forget(key)

    def mark_installed(self, key: ProfileKey, sha256: str) -> None:
        self.installed[key] = sha256
        self.failures.pop(key, None)

    def mark_removed(self, key: ProfileKey) -> None:
        self.installed.pop(key, None)
        self.failures.pop(key, None)

    def mark_failed(self, key: ProfileKey, failure: WriteFailure) -> None:
        self.failures[key] = failure

    def status_of(self, key: ProfileKey) -> NodeProfileStatus | None:
        return node_status(self.records.get(key), self.installed.get(key), self.failures.get(key))

    def known_keys(self) -> set[ProfileKey]:
        return set(self.records) | set(self.installed)

    def statuses(self) -> Iterator[tuple[ProfileKey, NodeProfileStatus]]:
        """Every profile's state on this node, sorted."""
        for key in sorted(self.known_keys()):
            status = self.status_of(key)
            if status is not None:
                yield key, status

    def report(
        self, node_name: str, architecture: str | None = None, compact: bool = False
    ) -> dict[str, Any]:
        """This node's SeccompNodeStatus `status`; `architecture`: the node's SCMP_ARCH_*;
        `compact`: the seen digest matches the published one (agent.node.fleet_form)."""
        return build_status(
            node_name, self.complete, self.statuses(), architecture, self.seen.hex, compact
        )

    def count_by_state(self) -> Counter[NodeState]:
        # Unsorted, unlike statuses(): this runs after every burst of changes.
        counts: Counter[NodeState] = Counter()
        for key in self.known_keys():
            status = self.status_of(key)
            if status is not None:
                counts[status.state] += 1
        return counts


def node_status(
    record: ProfileRecord | None, installed_sha: str | None, failure: WriteFailure | None = None
) -> NodeProfileStatus | None:
    """Derive this node's state of one profile from what is wanted and what is on disk."""
    if record is None:
        if installed_sha is None:
            return None
        if failure is not None:
            return NodeProfileStatus(NodeState.TERMINATING, installed_sha, *failure)
        return NodeProfileStatus(NodeState.TERMINATING)
    if record.errors:
        first = record.errors[0]
        return NodeProfileStatus(
            NodeState.INVALID,
            sha256=installed_sha,
            reason=first.reason,
            message=_summary(record.errors),
        )
    if record.rendered is not None and installed_sha == record.rendered.sha256:
        return NodeProfileStatus(NodeState.INSTALLED, sha256=installed_sha)
    if failure is not None:
        return NodeProfileStatus(NodeState.PENDING, installed_sha, *failure)
    return NodeProfileStatus(NodeState.PENDING, sha256=installed_sha)


def _summary(errors: Iterable[Finding], limit: int = 3) -> str:
    errors = list(errors)
    text = "; ".join(f"{f.field}: {f.message}" for f in errors[:limit])
    more = len(errors) - limit
    return text + (f" (and {more} more)" if more > 0 else "")


def kept(findings: tuple[Finding, ...], limit: int = MAX_KEPT_FINDINGS) -> tuple[Finding, ...]:
    """The first `limit` findings, and one that counts the rest."""
    if len(findings) <= limit:
        return findings
    last = findings[limit]
    more = Finding(
        last.field,
        last.severity,
        last.reason,
        f"and {len(findings) - limit} more {last.severity}s (run `seccomp-agent validate` "
        "on the profile for all of them)",
    )
    return (*findings[:limit], more)


def _seen_sha(record: ProfileRecord) -> str | None:
    """The version of a profile this node counts as seen: its current generation's rendering,
    or what the controller renders when only this node's own checks refuse it. Not the kept
    rendering of an invalid update (an older generation's), exactly as the controller leaves
    out what does not render."""
    if record.rendered is not None and not record.errors:
        return record.rendered.sha256
    return record.fleet_sha


def _size(record: ProfileRecord | None) -> int:
    return len(record.rendered.content) if record is not None and record.rendered else 0


def _over_budget(total: int, limit: int) -> Finding:
    mib = 1024 * 1024
    return error(
        "spec",
        "TooLarge",
        f"this node would hold {total / mib:.0f} MiB of profiles with this one; the agent keeps "
        f"at most {limit // mib} MiB in memory. Delete unused profiles or make them smaller",
    )


def catalog_lookup(catalog: ProfileCatalog) -> BaseLookup:
    """Bases as the agent knows them: a valid record's file is the base's flattened profile."""

    def lookup(key: ProfileKey) -> BaseState | None:
        record = catalog.records.get(key)
        if record is None:
            return None
        if record.errors or record.rendered is None:
            first = record.errors[0] if record.errors else None
            return BaseState(None, f"{first.field}: {first.message}" if first else "not valid")
        return BaseState(OciSeccomp.model_validate_json(record.rendered.content))

    return lookup

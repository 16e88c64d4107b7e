"""Pure: what to do on disk for one profile, given what is wanted and what is there."""

from __future__ import annotations

from dataclasses import dataclass

from agent.node.catalog import ProfileRecord


@dataclass(frozen=True)
class Write:
    content: bytes
    sha256: str


@dataclass(frozen=True)
class Remove:
    pass


@dataclass(frozen=True)
class Keep:
    """Nothing to do: the disk already matches, or there is nothing valid to write."""

    sha256: str | None


Action = Write | Remove | Keep


def decide(
    record: ProfileRecord | None,
    on_disk: bytes | None,
    current_sha: str | None,
    in_use: bool = False,
) -> Action:
    """Level-based and idempotent: running it again after acting returns Keep.

    `current_sha` is the hash of `on_disk`, passed in so callers can hash once. `in_use` says
    pods on this node still reference the profile: a deleted profile's file then stays, so
    their containers can restart, until the last such pod is gone.
    An invalid profile with no earlier valid version leaves whatever is on disk alone: that file
    is the last valid one a previous run wrote, and pods may depend on it.
    """
    if record is None:
        if on_disk is None or in_use:
            return Keep(current_sha)
        return Remove()
    if record.rendered is None:
        return Keep(current_sha)
    if on_disk == record.rendered.content:
        return Keep(record.rendered.sha256)
    return Write(record.rendered.content, record.rendered.sha256)

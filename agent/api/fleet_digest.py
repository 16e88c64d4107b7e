"""The fleet digest: one short value that stands for a whole set of (profile, version) pairs.

The controller publishes, per node architecture, the digest of every profile version a node of
that architecture should hold; a node computes the same over what it has seen. Equal digests
mean equal sets (up to a 2**-256 chance), so a node that matches needs to report only what it
does *not* hold, and its report stays the same size however many profiles exist.

The digest is an additive multiset hash: the sum, modulo 2**256, of sha256 over each member's
`namespace/name@sha12`. Adding, removing or replacing one member is O(1) on both sides, and the
order members arrive in does not matter. Pure: no I/O.

Where it is published: one ConfigMap (`FLEET_CONFIGMAP`) in the namespace seccomp-sync runs
in, `data` = {architecture: digest hex, `REVISION_KEY`: a counter that only grows}.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from agent.api.keys import ProfileKey
from agent.api.node_report import SHA_PREFIX

FLEET_CONFIGMAP: Final = "seccomp-sync-fleet"
REVISION_KEY: Final = "revision"
MODULUS: Final = 2**256
HEX_DIGITS: Final = 64
EMPTY: Final = "0" * HEX_DIGITS  # the digest of no profile at all


def term(key: ProfileKey, sha256: str) -> int:
    """One member's contribution: the same on a node (sha of its file) and in the controller."""
    member = f"{key}@{sha256[:SHA_PREFIX]}".encode()
    return int.from_bytes(hashlib.sha256(member).digest(), "big")


def hex_digest(value: int) -> str:
    return format(value % MODULUS, f"0{HEX_DIGITS}x")


@dataclass
class Digest:
    """A running digest with its members, so that a member can be replaced or removed in O(1)."""

    members: dict[ProfileKey, int] = field(default_factory=dict)  # key -> its term
    value: int = 0

    def set(self, key: ProfileKey, sha256: str | None) -> bool:
        """`key` is now at `sha256` (None: not a member). True when the digest changed."""
        new = term(key, sha256) if sha256 is not None else None
        old = self.members.get(key)
        if new == old:
            return False
        if old is not None:
            self.value = (self.value - old) % MODULUS
            del self.members[key]
        if new is not None:
            self.value = (self.value + new) % MODULUS
            self.members[key] = new
        return True

    @property
    def hex(self) -> str:
        return hex_digest(self.value)


def digest_of(members: Iterable[tuple[ProfileKey, str]]) -> str:
    """The digest of a whole set at once (key, sha256)."""
    return hex_digest(sum(term(key, sha) for key, sha in members))


def published_digests(data: Mapping[str, str] | None) -> dict[str, str]:
    """Architecture -> digest, read off the ConfigMap's data (malformed entries skipped)."""
    out: dict[str, str] = {}
    for arch, value in (data or {}).items():
        if arch != REVISION_KEY and isinstance(value, str) and len(value) == HEX_DIGITS:
            out[arch] = value
    return out

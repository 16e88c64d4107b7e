"""Profile keys: the one type that names a SeccompProfile, and the one way to read it off an
object. Pure data."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from agent.api.model import DNS1123_LABEL_MAX, DNS1123_LABEL_PATTERN

_DNS_LABEL = re.compile(DNS1123_LABEL_PATTERN)


def is_dns_label(value: object, *, max_length: int | None = DNS1123_LABEL_MAX) -> bool:
    """True for a DNS-1123 label: the only names that become a directory or file on the host.

    `max_length=None` checks the characters alone, to tell "too long" from "not a label".
    """
    return (
        isinstance(value, str)
        and (max_length is None or len(value) <= max_length)
        and _DNS_LABEL.fullmatch(value) is not None
    )


class ProfileKey(NamedTuple):
    """(namespace, name) of one SeccompProfile; `str()` is `namespace/name`."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_valid(self) -> bool:
        """Both parts are DNS-1123 labels, so the key can name a file on the host.

        Checked at every boundary: names read from the host, and names from the API (an object
        stored under an older, looser CRD can be called `a.b`).
        """
        return is_dns_label(self.namespace) and is_dns_label(self.name)

    @classmethod
    def parse(cls, ref: str) -> ProfileKey | None:
        """`namespace/name` (as `str()` writes it) back to a key; None if either part is empty."""
        namespace, _, name = ref.partition("/")
        return cls(namespace, name) if namespace and name and "/" not in name else None


def profile_key(obj: Mapping[str, Any], *, default_namespace: str = "") -> ProfileKey:
    """The key of an object from the API (a missing part reads as "", which is never valid).

    A file given to the CLI may leave its namespace out: pass `DEFAULT_NAMESPACE` to read it as
    kubectl would.
    """
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return ProfileKey(str(meta.get("namespace") or default_namespace), str(meta.get("name") or ""))

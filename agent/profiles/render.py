"""Render a validated profile into the exact bytes a runtime reads, plus their content hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.api.model import OciSeccomp


@dataclass(frozen=True)
class RenderedProfile:
    content: bytes
    sha256: str


def oci_document(profile: OciSeccomp) -> dict[str, Any]:
    """The OCI seccomp object as plain data, without unset optional fields."""
    return profile.model_dump(mode="json", exclude_none=True)


def render(profile: OciSeccomp) -> RenderedProfile:
    """Deterministic: sorted keys, two-space indent, trailing newline. Same input, same bytes."""
    return render_document(oci_document(profile))


def render_document(document: Mapping[str, Any]) -> RenderedProfile:
    """`render` of a profile already turned into plain data by `oci_document`."""
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=True) + "\n"
    content = text.encode("ascii")
    return RenderedProfile(content=content, sha256=hashlib.sha256(content).hexdigest())

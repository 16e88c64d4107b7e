"""The controller's own view of a SeccompProfile: what its current generation renders to.

Nodes compile for their own architecture; the controller needs only the content hash that a
valid node writes for this generation, so it runs the same pure validation without the
compile (a compile failure shows in the nodes' reports as Invalid).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.catalog import ProfileKey
from agent.readiness.profile_status import ProfileView
from agent.render import render
from agent.validation.syscall_names import native_architecture
from agent.validation.validate import validate_resource


def profile_key(body: Mapping[str, Any]) -> ProfileKey:
    meta = body.get("metadata") or {}
    return ProfileKey(str(meta.get("namespace", "")), str(meta.get("name", "")))


def profile_view(body: Mapping[str, Any]) -> ProfileView:
    """Validate and render one object (pure; about 1 ms)."""
    meta = body.get("metadata") or {}
    result = validate_resource(
        body, default_architectures=[native_architecture()], compile_profile=None
    )
    report = result.report
    rendered = render(report.profile) if report.valid and report.profile else None
    reason = None
    if rendered is None and report.errors:
        first = report.errors[0]
        reason = f"{first.field}: {first.message}"
    return ProfileView(
        key=profile_key(body),
        generation=int(meta.get("generation") or 0),
        expected_sha=rendered.sha256 if rendered else None,
        deleting=bool(meta.get("deletionTimestamp")),
        uid=str(meta.get("uid") or ""),
        content=rendered.content if rendered else None,
        invalid_reason=reason,
    )

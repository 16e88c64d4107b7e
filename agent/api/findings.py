"""What validation says about a profile: findings that name the field, and the report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.api.model import OciSeccomp

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One problem with a profile.

    `field` is a path such as `spec.syscalls[3].names[0]`; `reason` is a short CamelCase word
    from a small fixed set (it labels metrics and status), `message` says what to do.
    """

    field: str
    severity: Severity
    reason: str
    message: str

    def render(self) -> str:
        return f"{self.field}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    """Every finding for one profile and, when the spec parsed, its typed form."""

    findings: tuple[Finding, ...]
    profile: OciSeccomp | None

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def valid(self) -> bool:
        return self.profile is not None and not self.errors


def error(field: str, reason: str, message: str) -> Finding:
    return Finding(field=field, severity="error", reason=reason, message=message)


def warning(field: str, reason: str, message: str) -> Finding:
    return Finding(field=field, severity="warning", reason=reason, message=message)

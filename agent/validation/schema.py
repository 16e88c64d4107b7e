"""Turn pydantic's validation errors into findings that name the field in user terms."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from agent.api.findings import Finding, error

_EMPTY_PROFILE = (
    "a profile needs defaultAction: runtimes treat a profile without one as no seccomp at all"
)


def field_path(location: Sequence[int | str], prefix: str = "") -> str:
    """`("syscalls", 3, "names", 0)` -> `syscalls[3].names[0]`."""
    path = prefix.rstrip(".")
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def schema_findings(exc: ValidationError, prefix: str) -> list[Finding]:
    return [_to_finding(detail, prefix) for detail in _without_union_noise(exc.errors())]


def _to_finding(detail: ErrorDetails, prefix: str) -> Finding:
    location = [part for part in detail["loc"] if not _is_type_tag(part)]
    field = field_path(location, prefix)
    kind = detail["type"]
    if kind == "missing" and location and location[-1] == "defaultAction":
        return error(field, "MissingDefaultAction", _EMPTY_PROFILE)
    if kind == "extra_forbidden":
        return error(
            field,
            "UnknownField",
            "not a field of the OCI seccomp profile; containerd would drop it silently, "
            "so remove it (see `kubectl explain seccompprofile.spec`)",
        )
    if kind == "literal_error":
        expected = (detail.get("ctx") or {}).get("expected", "")
        return error(
            field, "NotAllowed", f"{detail['input']!r} is not allowed; expected one of {expected}"
        )
    return error(field, "Schema", detail["msg"])


def _is_type_tag(part: int | str) -> bool:
    # pydantic adds a step such as "list[...]" or "int" when a field is a union with None.
    return isinstance(part, str) and ("[" in part or part in {"int", "str", "list"})


def _without_union_noise(details: Iterable[ErrorDetails]) -> list[ErrorDetails]:
    """Drop 'input should be None' alternatives that optional fields add to real errors."""
    return [d for d in details if d["type"] != "none_required"]

"""Recognise Docker-format seccomp profiles, which containerd would silently misread.

containerd decodes a Localhost profile into the OCI struct and drops unknown keys. A Docker or
containers/common profile then loses `archMap` and every `includes`/`excludes` gate, so rules
meant only for containers with CAP_SYS_ADMIN (mount, bpf, ptrace...) become plain ALLOWs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from agent.api.findings import Finding, error, warning

_TOP_LEVEL_HINTS: Final = {
    "archMap": "list the architectures in `architectures` instead (for example SCMP_ARCH_X86_64, "
    "SCMP_ARCH_X86, SCMP_ARCH_X32)",
    "defaultErrno": "use the number in `defaultErrnoRet` (EPERM is 1)",
}
_RULE_HINTS: Final = {
    "includes": "resolve the capability/architecture/kernel condition yourself: keep the rule "
    "only if it applies to the containers that will use this profile, then drop the key",
    "excludes": "resolve the condition yourself: drop the rule where it is excluded, then drop "
    "the key",
    "errno": "use the number in `errnoRet` (EPERM is 1)",
    "name": "use the list `names`",
}
# The keys refused; crds/seccompprofile.yaml declares exactly these, so that the API server keeps
# them (instead of pruning them) and refuses them with the same advice.
DOCKER_SPEC_KEYS: Final = tuple(_TOP_LEVEL_HINTS)
DOCKER_RULE_KEYS: Final = tuple(_RULE_HINTS)
_WHY: Final = (
    "this is Docker-format, not OCI: containerd drops unknown keys silently, so the profile would "
    "mean something else on the node"
)


def docker_format_findings(spec: Mapping[str, Any], prefix: str) -> list[Finding]:
    """Findings for every Docker-only key, with what to write instead."""
    findings = [
        error(f"{prefix}{key}", "DockerFormat", f"{_WHY}; {hint}")
        for key, hint in _TOP_LEVEL_HINTS.items()
        if key in spec
    ]
    rules = spec.get("syscalls")
    if isinstance(rules, list):
        for index, rule in enumerate(rules):
            if not isinstance(rule, Mapping):
                continue
            for key, hint in _RULE_HINTS.items():
                if key in rule and not _is_empty_gate(key, rule[key]):
                    findings.append(
                        error(f"{prefix}syscalls[{index}].{key}", "DockerFormat", f"{_WHY}; {hint}")
                    )
            if rule.get("comment"):
                findings.append(
                    warning(
                        f"{prefix}syscalls[{index}].comment",
                        "DockerFormat",
                        "`comment` is not an OCI field and is left out of the file on disk; "
                        "keep notes in YAML comments or annotations",
                    )
                )
    return findings


def strip_inert_docker_keys(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Drop Docker keys that change nothing (empty gates, comments) so the schema check
    reports only what matters; keys that change meaning stay and fail the schema too."""
    cleaned = dict(spec)
    rules = cleaned.get("syscalls")
    if isinstance(rules, list):
        cleaned["syscalls"] = [
            {k: v for k, v in rule.items() if not _is_inert(k, v)}
            if isinstance(rule, Mapping)
            else rule
            for rule in rules
        ]
    return cleaned


def _is_empty_gate(key: str, value: Any) -> bool:
    # `"includes": {}` is common in pasted profiles and is harmless.
    return key in {"includes", "excludes"} and not value


def _is_inert(key: str, value: Any) -> bool:
    return key == "comment" or _is_empty_gate(key, value)

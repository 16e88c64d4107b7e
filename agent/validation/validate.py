"""Validate a profile end to end: Docker keys, schema, semantics, syscall names, a real compile.

This is the one entry point the CLI and the agent call. Everything here is pure except the
compile step, which is handed in (the agent and CLI pass a `Compiler`, tests may pass None).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from agent.model import (
    API_GROUP,
    API_VERSION,
    DNS1123_LABEL_MAX,
    DNS1123_LABEL_PATTERN,
    KIND,
    OciSeccomp,
)
from agent.render import oci_document
from agent.validation.compiler import ArchCompileResult, TransientCompileError
from agent.validation.cost import budget_findings, estimate
from agent.validation.docker_format import docker_format_findings, strip_inert_docker_keys
from agent.validation.findings import Finding, ValidationReport, error
from agent.validation.names import syscall_name_findings
from agent.validation.schema import schema_findings
from agent.validation.semantics import semantic_findings
from agent.validation.size import size_findings

# The kernel refuses a filter over 4096 instructions (BPF_MAXINSNS); runc and crun add a stub of
# their own in front, so leave headroom rather than accept a profile that fails at container start.
MAX_BPF_INSTRUCTIONS: Final = 4000

CompileFn = Callable[[Mapping[str, Any], Sequence[str]], list[ArchCompileResult]]


def target_architectures(profile: OciSeccomp, default_architectures: Sequence[str]) -> list[str]:
    """The profile's architectures, else the node's own: what the filter is built for."""
    return list(profile.architectures or default_architectures)


def validate_spec(
    raw_spec: Any,
    *,
    default_architectures: Sequence[str],
    compile_profile: CompileFn | None,
    prefix: str = "spec.",
    node_architectures: Sequence[str] = (),
) -> ValidationReport:
    """Every finding for one OCI seccomp object (a SeccompProfile's spec, or a profile file).

    Raises `TransientCompileError` when the compile failed for a reason unrelated to the
    profile (worker killed or hung, no descriptors): there is no verdict to report or cache.
    """
    if not isinstance(raw_spec, Mapping):
        field = prefix.rstrip(".") or "(document)"
        return ValidationReport(
            (error(field, "Schema", "expected an object with at least defaultAction"),), None
        )
    too_large = size_findings(raw_spec, prefix)
    if too_large:
        # Nothing more is built of it: checking every rule of a huge spec costs memory and CPU
        # in proportion to its size, for findings nobody would read.
        return ValidationReport(tuple(too_large), None)
    findings = docker_format_findings(raw_spec, prefix)
    try:
        profile = OciSeccomp.model_validate(strip_inert_docker_keys(raw_spec))
    except ValidationError as exc:
        already = {f.field for f in findings}
        findings += [f for f in schema_findings(exc, prefix) if f.field not in already]
        return ValidationReport(tuple(findings), None)

    architectures = target_architectures(profile, default_architectures)
    findings += semantic_findings(profile, prefix, node_architectures)
    findings += syscall_name_findings(profile, architectures, prefix)
    if compile_profile is not None and not any(f.severity == "error" for f in findings):
        document = oci_document(profile)
        # Refuse what would hold a compile worker for seconds before it gets one.
        findings += budget_findings(estimate(document, len(architectures)), prefix)
        if not any(f.severity == "error" for f in findings):
            results = compile_profile(document, architectures)
            if any(result.transient for result in results):
                # Not a verdict on the profile: the caller must not cache it as one.
                raise TransientCompileError(results)
            findings += compile_findings(results, prefix)
    return ValidationReport(tuple(findings), profile)


def compile_findings(results: Sequence[ArchCompileResult], prefix: str) -> list[Finding]:
    """Turn per-architecture compile results into findings (failures and oversize filters)."""
    findings: list[Finding] = []
    for result in results:
        if result.error is not None:
            field = _prefixed(prefix, result.rule_path) if result.rule_path else prefix + "syscalls"
            findings.append(
                error(
                    field,
                    "CompileFailed",
                    f"libseccomp cannot build the filter for {result.architecture}: {result.error}",
                )
            )
        elif result.instructions is not None and result.instructions > MAX_BPF_INSTRUCTIONS:
            findings.append(
                error(
                    prefix + "syscalls",
                    "FilterTooLarge",
                    f"the filter for {result.architecture} compiles to {result.instructions} BPF "
                    f"instructions; the kernel refuses more than 4096 and the runtime adds its "
                    f"own, so at most {MAX_BPF_INSTRUCTIONS} are accepted. Merge rules or drop "
                    "argument conditions",
                )
            )
    return findings


def _prefixed(prefix: str, rule_path: str) -> str:
    # The compiler names rules as `spec.syscalls[i]`; re-anchor them on this prefix.
    return prefix + rule_path.removeprefix("spec.")


@dataclass(frozen=True)
class ResourceReport:
    """Validation of one SeccompProfile object, identified as the user knows it."""

    namespace: str
    name: str
    report: ValidationReport

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


_DNS_LABEL = re.compile(DNS1123_LABEL_PATTERN)
_SPO_GROUP = "security-profiles-operator.x-k8s.io"


def validate_resource(
    document: Any,
    *,
    default_architectures: Sequence[str],
    compile_profile: CompileFn | None,
    node_architectures: Sequence[str] = (),
) -> ResourceReport:
    """Validate a SeccompProfile object: identity, metadata that becomes a path, and the spec."""
    if not isinstance(document, Mapping):
        return ResourceReport(
            "-", "-", ValidationReport((error("(document)", "Schema", "not an object"),), None)
        )
    metadata = document.get("metadata") if isinstance(document.get("metadata"), Mapping) else {}
    assert isinstance(metadata, Mapping)
    name = str(metadata.get("name", "-"))
    namespace = str(metadata.get("namespace", "default"))
    findings = _identity_findings(document) + _metadata_findings(metadata)
    spec_report = validate_spec(
        document.get("spec"),
        default_architectures=default_architectures,
        compile_profile=compile_profile,
        node_architectures=node_architectures,
    )
    report = ValidationReport(
        tuple(findings) + spec_report.findings, spec_report.profile if not findings else None
    )
    return ResourceReport(namespace, name, report)


def _identity_findings(document: Mapping[str, Any]) -> list[Finding]:
    api_version = str(document.get("apiVersion", ""))
    kind = str(document.get("kind", ""))
    expected = f"{API_GROUP}/{API_VERSION}"
    if kind != KIND:
        return [error("kind", "NotASeccompProfile", f"expected kind {KIND}, got {kind or 'none'}")]
    if api_version == expected:
        return []
    hint = (
        "; this is a security-profiles-operator object: change apiVersion and drop SPO-only "
        "fields (baseProfileName...)"
        if api_version.startswith(_SPO_GROUP)
        else ""
    )
    return [
        error("apiVersion", "NotASeccompProfile", f"expected {expected}, got {api_version}{hint}")
    ]


def _metadata_findings(metadata: Mapping[str, Any]) -> list[Finding]:
    findings = []
    for key in ("name", "namespace"):
        value = metadata.get(key, "default" if key == "namespace" else None)
        if not isinstance(value, str) or not _DNS_LABEL.match(value):
            findings.append(
                error(
                    f"metadata.{key}",
                    "InvalidName",
                    f"{value!r} must be a DNS-1123 label (lower-case letters, digits and '-', "
                    f"at most {DNS1123_LABEL_MAX}): it becomes a path component on the node",
                )
            )
        elif len(value) > DNS1123_LABEL_MAX:
            findings.append(
                error(f"metadata.{key}", "InvalidName", f"longer than {DNS1123_LABEL_MAX}")
            )
    return findings

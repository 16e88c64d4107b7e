"""Validate a profile end to end: Docker keys, schema, semantics, syscall names, a real compile.

This is the one entry point the CLI and the agent call. Everything here is pure except the
compile step, which is handed in (the agent and CLI pass a `Compiler`, tests may pass None).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from agent.api.findings import Finding, ValidationReport, error, warning
from agent.api.keys import is_dns_label, profile_key
from agent.api.model import (
    API_GROUP,
    API_VERSION,
    DEFAULT_NAMESPACE,
    DEPRECATED_API_VERSIONS,
    DNS1123_LABEL_MAX,
    KIND,
    OciSeccomp,
    ProfileSpec,
)
from agent.profiles.compose import ResolvedBase, compose
from agent.profiles.render import oci_document
from agent.seccomp.compiler import ArchCompileResult, TransientCompileError
from agent.seccomp.cost import budget_findings, estimate
from agent.validation.docker_format import docker_format_findings, strip_inert_docker_keys
from agent.validation.names import syscall_name_findings
from agent.validation.schema import schema_findings
from agent.validation.semantics import semantic_findings
from agent.validation.size import size_findings

# The kernel refuses a filter over 4096 instructions (BPF_MAXINSNS); runc and crun add a stub of
# their own in front, so leave headroom rather than accept a profile that fails at container start.
MAX_BPF_INSTRUCTIONS: Final = 4000

CompileFn = Callable[[Mapping[str, Any], Sequence[str]], list[ArchCompileResult]]
# Looks up what a `baseProfileName` leads to (the agent: its catalog; the CLI: the files given).
ResolveBaseFn = Callable[[str], ResolvedBase]
# Findings on the composed profile are reported under this prefix: their indexes are those of
# the flattened file (`seccomp-agent render` prints it), not of the child's spec.
FLATTENED_PREFIX: Final = "flattened."

Model = TypeVar("Model", bound=BaseModel)


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
    findings, profile = _parsed(OciSeccomp, raw_spec, prefix)
    if profile is None:
        return ValidationReport(tuple(findings), None)
    architectures = target_architectures(profile, default_architectures)
    findings += semantic_findings(profile, prefix, node_architectures)
    findings += syscall_name_findings(profile, architectures, prefix)
    if compile_profile is not None and not _has_errors(findings):
        findings += _compiled(profile, architectures, compile_profile, prefix)
    return ValidationReport(tuple(findings), profile)


def _parsed(model: type[Model], raw_spec: Any, prefix: str) -> tuple[list[Finding], Model | None]:
    """Docker-format findings, and the model; or, when it does not parse, the schema's findings."""
    findings = docker_format_findings(raw_spec, prefix)
    try:
        return findings, model.model_validate(strip_inert_docker_keys(raw_spec))
    except ValidationError as exc:
        already = {f.field for f in findings}
        findings += [f for f in schema_findings(exc, prefix) if f.field not in already]
        return findings, None


def _compiled(
    profile: OciSeccomp, architectures: Sequence[str], compile_profile: CompileFn, prefix: str
) -> list[Finding]:
    """What a real compile says, once the cost model agrees to it."""
    document = oci_document(profile)
    # Refuse what would hold a compile worker for seconds before it gets one.
    findings = budget_findings(estimate(document, len(architectures)), prefix)
    if _has_errors(findings):
        return findings
    results = compile_profile(document, architectures)
    if any(result.transient for result in results):
        # Not a verdict on the profile: the caller must not cache it as one.
        raise TransientCompileError(results)
    return findings + compile_findings(results, prefix)


def _has_errors(findings: Sequence[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


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


def validate_spec_on_base(
    raw_spec: Mapping[str, Any],
    resolve_base: ResolveBaseFn | None,
    *,
    default_architectures: Sequence[str],
    compile_profile: CompileFn | None,
    prefix: str = "spec.",
    node_architectures: Sequence[str] = (),
) -> tuple[ValidationReport, tuple[str, ...]]:
    """A spec with `baseProfileName`: its own fields, its base, then the flattened result.

    Returns the report (whose profile is the flattened one) and the resolved base chain.
    """
    findings, spec = _parsed(ProfileSpec, raw_spec, prefix)
    if spec is None:
        return ValidationReport(tuple(findings), None), ()
    assert spec.baseProfileName is not None
    field = prefix + "baseProfileName"
    if resolve_base is None:
        reason, message = "BaseNotResolvable", "bases cannot be resolved here"
        return ValidationReport((*findings, error(field, reason, message)), None), ()
    base = resolve_base(spec.baseProfileName)
    if not base.usable or base.profile is None:
        problem = error(field, base.reason or "BaseInvalid", base.message or "unusable base")
        return ValidationReport((*findings, problem), None), base.chain

    # The child's own fields, checked where the user wrote them (its indexes, its names).
    own = _child_view(spec, base.profile)
    architectures = target_architectures(own, default_architectures)
    findings += semantic_findings(own, prefix, node_architectures)
    findings += syscall_name_findings(own, architectures, prefix)
    if _has_errors(findings):
        return ValidationReport(tuple(findings), None), base.chain

    flattened = compose(base.profile, spec)
    architectures = target_architectures(flattened, default_architectures)
    # Only errors of the composition: the base's own warnings (names this libseccomp does not
    # know...) are the base's business, repeated on every child they would be noise.
    findings += [
        f
        for f in semantic_findings(flattened, FLATTENED_PREFIX, node_architectures)
        if f.severity == "error"
    ]
    if compile_profile is not None and not _has_errors(findings):
        findings += _compiled(flattened, architectures, compile_profile, FLATTENED_PREFIX)
    valid = not _has_errors(findings)
    return ValidationReport(tuple(findings), flattened if valid else None), base.chain


def _child_view(spec: ProfileSpec, base: OciSeccomp) -> OciSeccomp:
    """The child's fields as a complete OCI object, with what it inherits filled in."""
    data = spec.model_dump(mode="json", exclude_none=True, exclude={"baseProfileName"})
    if "defaultAction" not in data:
        data["defaultAction"] = base.defaultAction
        if "defaultErrnoRet" not in data and base.defaultErrnoRet is not None:
            data["defaultErrnoRet"] = base.defaultErrnoRet
    if "listenerPath" not in data and base.listenerPath is not None:
        data["listenerPath"] = base.listenerPath
    return OciSeccomp.model_validate(data)


def _prefixed(prefix: str, rule_path: str) -> str:
    # The compiler names rules as `spec.syscalls[i]`; re-anchor them on this prefix.
    return prefix + rule_path.removeprefix("spec.")


@dataclass(frozen=True)
class ResourceReport:
    """Validation of one SeccompProfile object, identified as the user knows it."""

    namespace: str
    name: str
    report: ValidationReport
    base_chain: tuple[str, ...] = ()  # the bases, nearest first, when spec.baseProfileName is set

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


_SPO_GROUP = "security-profiles-operator.x-k8s.io"


def validate_resource(
    document: Any,
    *,
    default_architectures: Sequence[str],
    compile_profile: CompileFn | None,
    node_architectures: Sequence[str] = (),
    resolve_base: ResolveBaseFn | None = None,
) -> ResourceReport:
    """Validate a SeccompProfile object: identity, metadata that becomes a path, and the spec."""
    if not isinstance(document, Mapping):
        return ResourceReport(
            "-", "-", ValidationReport((error("(document)", "Schema", "not an object"),), None)
        )
    metadata = document.get("metadata")
    findings = _identity_findings(document) + _metadata_findings(
        metadata if isinstance(metadata, Mapping) else {}
    )
    raw_spec = document.get("spec")
    chain: tuple[str, ...] = ()
    if isinstance(raw_spec, Mapping) and raw_spec.get("baseProfileName") is not None:
        spec_report, chain = validate_spec_on_base(
            raw_spec,
            resolve_base,
            default_architectures=default_architectures,
            compile_profile=compile_profile,
            node_architectures=node_architectures,
        )
    else:
        spec_report = validate_spec(
            raw_spec,
            default_architectures=default_architectures,
            compile_profile=compile_profile,
            node_architectures=node_architectures,
        )
    report = ValidationReport(
        tuple(findings) + _deprecation_findings(document) + spec_report.findings,
        spec_report.profile if not findings else None,
    )
    key = profile_key(document, default_namespace=DEFAULT_NAMESPACE)
    return ResourceReport(key.namespace, key.name or "-", report, chain)


def _identity_findings(document: Mapping[str, Any]) -> list[Finding]:
    api_version = str(document.get("apiVersion", ""))
    kind = str(document.get("kind", ""))
    expected = f"{API_GROUP}/{API_VERSION}"
    if kind != KIND:
        return [error("kind", "NotASeccompProfile", f"expected kind {KIND}, got {kind or 'none'}")]
    if api_version == expected or api_version in _DEPRECATED:
        return []
    hint = (
        "; this is a security-profiles-operator object: `seccomp-agent convert` turns it into "
        "one of ours (mapping its baseProfileName to a built-in base)"
        if api_version.startswith(_SPO_GROUP)
        else ""
    )
    return [
        error("apiVersion", "NotASeccompProfile", f"expected {expected}, got {api_version}{hint}")
    ]


_DEPRECATED: Final = frozenset(f"{API_GROUP}/{v}" for v in DEPRECATED_API_VERSIONS)


def _deprecation_findings(document: Mapping[str, Any]) -> tuple[Finding, ...]:
    """An older version of the API is still served with the same fields: a warning, not an error."""
    api_version = str(document.get("apiVersion", ""))
    if api_version not in _DEPRECATED:
        return ()
    return (
        warning(
            "apiVersion",
            "DeprecatedApiVersion",
            f"{api_version} is deprecated; use {API_GROUP}/{API_VERSION} (the same fields: "
            "change apiVersion only)",
        ),
    )


def _metadata_findings(metadata: Mapping[str, Any]) -> list[Finding]:
    findings = []
    for key in ("name", "namespace"):
        value = metadata.get(key, DEFAULT_NAMESPACE if key == "namespace" else None)
        if is_dns_label(value):
            continue
        message = (
            f"longer than {DNS1123_LABEL_MAX}"
            if is_dns_label(value, max_length=None)
            else f"{value!r} must be a DNS-1123 label (lower-case letters, digits and '-', "
            f"at most {DNS1123_LABEL_MAX}): it becomes a path component on the node"
        )
        findings.append(error(f"metadata.{key}", "InvalidName", message))
    return findings

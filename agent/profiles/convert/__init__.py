"""Turn what people already have into a SeccompProfile manifest.

Three inputs: a Docker-format profile (moby, containers/common: resolved for a target, see
`agent.profiles.convert.docker`), a raw OCI `linux.seccomp` object (alone or inside a runtime
`config.json`), and a security-profiles-operator SeccompProfile (its `baseProfileName` mapped to
one of our built-ins where one matches, refused with the reason where none does). Pure: the
caller reads files and validates the result.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from agent.api.keys import is_dns_label
from agent.api.model import (
    API_GROUP,
    API_VERSION,
    DEPRECATED_API_VERSIONS,
    DNS1123_LABEL_MAX,
    KIND,
)
from agent.profiles.convert.docker import ConversionError, Target, is_docker_format, resolve

SPO_GROUP: Final = "security-profiles-operator.x-k8s.io"
# SPO names its runc base `runc-v1.4.2` (an object) or `oci://ghcr.io/security-profiles/runc:v1.4.2`.
_SPO_RUNC_BASE = re.compile(r"^(?:oci://ghcr\.io/security-profiles/)?runc[-:@]v?(\d+\.\d+\.\d+)$")
_SPO_SPEC_KEYS: Final = frozenset(
    {
        "defaultAction",
        "architectures",
        "flags",
        "listenerPath",
        "listenerMetadata",
        "syscalls",
        "baseProfileName",
    }
)

__all__ = ["Conversion", "ConversionError", "Target", "convert_document"]


@dataclass
class Conversion:
    kind: str  # docker, oci, spo
    manifest: dict[str, Any]
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def convert_document(
    content: Any,
    target: Target,
    *,
    name: str,
    namespace: str,
    builtins: Collection[str],
    sibling_names: Collection[str] = (),
) -> Conversion:
    """One input document -> one manifest. `sibling_names`: SPO profiles converted alongside
    (a `baseProfileName` naming one of them stays a same-namespace reference)."""
    if not isinstance(content, Mapping):
        raise ConversionError("(document): expected an object")
    if str(content.get("apiVersion", "")).startswith(SPO_GROUP):
        return _from_spo(content, target, namespace, builtins, sibling_names)
    if content.get("apiVersion") in {
        f"{API_GROUP}/{v}" for v in (API_VERSION, *DEPRECATED_API_VERSIONS)
    }:
        raise ConversionError("(document): already a seccomp-sync SeccompProfile")
    if isinstance(content.get("linux"), Mapping):  # a runtime config.json
        seccomp = content["linux"].get("seccomp")
        if not isinstance(seccomp, Mapping):
            raise ConversionError("linux.seccomp: this config.json has no seccomp profile")
        return _from_profile(seccomp, target, name, namespace)
    return _from_profile(content, target, name, namespace)


def _from_profile(
    profile: Mapping[str, Any], target: Target, name: str, namespace: str
) -> Conversion:
    if is_docker_format(profile):
        resolution = resolve(profile, target)
        notes = [
            f"resolved for {target.architecture}, capabilities: "
            f"{', '.join(sorted(target.capabilities)) or 'none'}",
            *resolution.notes,
        ]
        return Conversion(
            "docker", _manifest(name, namespace, resolution.spec), resolution.dropped, notes
        )
    spec = {k: v for k, v in profile.items() if v not in (None, [], "")}
    return Conversion("oci", _manifest(name, namespace, spec))


def _from_spo(
    document: Mapping[str, Any],
    target: Target,
    namespace: str,
    builtins: Collection[str],
    sibling_names: Collection[str],
) -> Conversion:
    meta = document.get("metadata") or {}
    name = dns_label(str(meta.get("name", "")))
    spec = dict(document.get("spec") or {})
    unknown = sorted(set(spec) - _SPO_SPEC_KEYS)
    if unknown:
        raise ConversionError(
            f"spec.{unknown[0]}: a security-profiles-operator field with no seccomp-sync "
            "equivalent; remove it and convert again"
        )
    notes = []
    if name != meta.get("name"):
        notes.append(f"metadata.name {meta.get('name')} -> {name} (it becomes a file name)")
    base = spec.pop("baseProfileName", None)
    if base is not None:
        mapped = _map_spo_base(str(base), builtins, sibling_names)
        spec = {"baseProfileName": mapped, **spec}
        if mapped != base:
            notes.append(f"baseProfileName {base} -> built-in {mapped}")
    conversion = _from_profile(spec, target, name, str(meta.get("namespace") or namespace))
    conversion.kind = "spo"
    conversion.notes = notes + conversion.notes
    for key in ("labels", "annotations"):
        if meta.get(key):
            conversion.manifest["metadata"][key] = dict(meta[key])
    return conversion


def _map_spo_base(base: str, builtins: Collection[str], siblings: Collection[str]) -> str:
    match = _SPO_RUNC_BASE.match(base)
    if match:
        candidate = f"runtime/runc@v{match.group(1)}"
        if candidate in builtins:
            return candidate
        runc = sorted(b for b in builtins if b.startswith("runtime/runc@"))
        raise ConversionError(
            f"spec.baseProfileName: {base} is runc {match.group(1)}, which no built-in base "
            f"matches (built-in runc bases: {', '.join(runc) or 'none'}); rebase the profile on "
            "one of those, or convert that base profile too and name it"
        )
    if base in siblings:
        return dns_label(base)  # converted alongside: one of ours in the same namespace
    raise ConversionError(
        f"spec.baseProfileName: {base} is neither a built-in base "
        f"({', '.join(sorted(builtins))}) nor a profile converted alongside this one; convert "
        "the base too (give both files), or point baseProfileName at a built-in"
    )


def dns_label(text: str) -> str:
    """The nearest DNS-1123 label: our names become file names on every node."""
    if is_dns_label(text):
        return text
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:DNS1123_LABEL_MAX].strip("-") or "converted"


def _manifest(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }

"""Built-in base profiles: the container runtimes' own defaults, under stable versioned names.

A SeccompProfile names one with `spec.baseProfileName: runtime/<name>@<upstream version>`. The
files in `data/` are the upstream files, byte for byte (tests/unit/test_builtin_bases.py checks
them against tests/data/profiles and records their sha256 here). They are flattened when used:
for the node's architecture (archMap and `includes`/`excludes` by architecture), for an
unprivileged container (the runtime's default capabilities, nothing added: see
`agent.profiles.convert.docker.DEFAULT_CONTAINER_CAPABILITIES`), and with every `minKernel`
taken as met (Kubernetes nodes run kernels far newer than the 4.8 the profiles mention). A new
upstream version is added under a new name: what a name allows never changes under a profile.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import yaml

from agent.api.model import OciSeccomp
from agent.profiles.convert.docker import Target, resolve


@dataclass(frozen=True)
class BuiltinBase:
    name: str
    file: str
    sha256: str
    source: str
    summary: str


BUILTINS: Final[dict[str, BuiltinBase]] = {
    b.name: b
    for b in (
        BuiltinBase(
            name="runtime/default@moby-2026-06-30",
            file="moby-default.json",
            sha256="536529b665dd0972c37bfb569f5d4ac8a53592e7b00752bc39ff063ca9864c74",
            source="moby/profiles, seccomp/default.json, commit of 2026-06-30 (Apache-2.0)",
            summary="Docker's default: allow-list of about 370 syscalls, default ERRNO(EPERM); "
            "no mount, bpf, ptrace-class, module, reboot, clock or namespace syscalls",
        ),
        BuiltinBase(
            name="runtime/default@containers-common-2025-08-25",
            file="containers-common-default.json",
            sha256="886ae167646b7e5db381ecf7c31e6de720a8e8da15cf3202fe1f67f424af2b75",
            source="containers/common, pkg/seccomp/seccomp.json, commit of 2025-08-25 (Apache-2.0)",
            summary="Podman's and CRI-O's default: allow-list, default ERRNO(ENOSYS) so programs "
            "fall back on unknown syscalls; privileged syscalls fail with EPERM",
        ),
        BuiltinBase(
            name="runtime/runc@v1.4.2",
            file="spo-baseprofile-runc.yaml",
            sha256="b7fe2b0baad3a6967e0ad41378009175b275151fbed17b599422b38ce1bd0ce1",
            source="kubernetes-sigs/security-profiles-operator, examples/baseprofile-runc.yaml, "
            "commit of 2026-08-21 (Apache-2.0)",
            summary="only the 40 syscalls runc v1.4.2 makes to start a container, default "
            "ERRNO: a base for allow-lists of your own (x86_64 names)",
        ),
    )
}


class UnknownBuiltinError(KeyError):
    def __str__(self) -> str:
        return f"no built-in base {self.args[0]!r}; built-ins are: {', '.join(sorted(BUILTINS))}"


def read_source(name: str) -> Any:
    """The upstream document of a built-in, parsed."""
    try:
        base = BUILTINS[name]
    except KeyError:
        raise UnknownBuiltinError(name) from None
    text = resources.files(__package__).joinpath("data", base.file).read_text(encoding="utf-8")
    return json.loads(text) if base.file.endswith(".json") else yaml.safe_load(text)


@functools.cache
def builtin_profile(name: str, architecture: str) -> OciSeccomp:
    """The built-in base `name`, flattened for a node of `architecture` (cached)."""
    document = read_source(name)
    if document.get("kind") == "SeccompProfile":  # an SPO object: its spec is plain OCI
        spec = dict(document["spec"])
        spec["architectures"] = [architecture]
        return OciSeccomp.model_validate(spec)
    return OciSeccomp.model_validate(resolve(document, Target(architecture)).spec)

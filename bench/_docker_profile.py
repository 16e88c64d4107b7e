"""Docker's default profile in the OCI form Docker hands to runc, for benchmarks and tests.

Docker's profile format gates rules on capabilities, architectures and kernel versions
(`includes`/`excludes`) and maps a machine to its sub-architectures (`archMap`). Docker resolves
all of that when it starts a container; `agent.profiles.convert.docker` does the same for one
container configuration, so the result is the filter runc really loads.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Final

from agent.profiles.convert.docker import DEFAULT_CONTAINER_CAPABILITIES, Target, resolve

# The capabilities Docker grants a container by default (moby oci/caps/defaults.go): the same
# set the converter resolves Docker profiles for.
DOCKER_DEFAULT_CAPABILITIES: Final = DEFAULT_CONTAINER_CAPABILITIES
# Docker names architectures the Go way in `includes.arches`; archMap uses SCMP_ARCH_* names.
GO_TO_SECCOMP_ARCH: Final[Mapping[str, str]] = {
    "amd64": "SCMP_ARCH_X86_64",
    "arm64": "SCMP_ARCH_AARCH64",
    "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
}
REPO_ROOT: Final = Path(__file__).resolve().parents[1]


def shared_profiles_dir() -> Path:
    """Where the real-world profiles live (tests/data/profiles, as for the tests)."""
    return REPO_ROOT / "tests" / "data" / "profiles"


def load_moby_default() -> dict[str, Any]:
    """moby-default.json exactly as published (Docker format)."""
    text = (shared_profiles_dir() / "moby-default.json").read_text(encoding="utf-8")
    profile: dict[str, Any] = json.loads(text)
    return profile


def docker_to_oci(
    profile: Mapping[str, Any],
    *,
    go_arch: str = "amd64",
    capabilities: Collection[str] = DOCKER_DEFAULT_CAPABILITIES,
    kernel: tuple[int, int] = (6, 1),
) -> dict[str, Any]:
    """The OCI profile Docker would pass to runc for a container with these capabilities,
    resolved by the project's own converter (`seccomp-agent convert`)."""
    target = Target(GO_TO_SECCOMP_ARCH[go_arch], frozenset(capabilities), kernel)
    return resolve(profile, target).spec


def moby_default_oci(go_arch: str = "amd64") -> dict[str, Any]:
    """Docker's default profile, resolved for a default container on `go_arch`."""
    return docker_to_oci(load_moby_default(), go_arch=go_arch)

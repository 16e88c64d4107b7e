"""Built-in bases: upstream bytes, flattened per architecture, and a child validated on one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.api.model import BASE_PROFILE_NAME_PATTERN
from agent.profiles.base_graph import walk_chain
from agent.profiles.base_resolution import resolve_base
from agent.profiles.builtin_bases import BUILTINS, builtin_profile
from agent.seccomp.compiler import Compiler
from agent.validation.validate import validate_resource

REPO = Path(__file__).resolve().parents[2]
MOBY = "runtime/default@moby-2026-06-30"
ARCHES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64", "SCMP_ARCH_S390X", "SCMP_ARCH_RISCV64"]


@pytest.fixture(scope="module")
def compiler() -> Iterator[Compiler]:
    with Compiler() as c:
        yield c


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_files_are_the_upstream_files_byte_for_byte(
    shared_profiles_dir: Path, name: str
) -> None:
    base = BUILTINS[name]
    shipped = (REPO / "agent" / "profiles" / "builtin_bases" / "data" / base.file).read_bytes()
    assert shipped == (shared_profiles_dir / base.file).read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == base.sha256


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_names_are_versioned_valid_and_documented(name: str) -> None:
    import re

    assert re.match(BASE_PROFILE_NAME_PATTERN, name)
    assert "@" in name
    assert name in (REPO / "docs" / "api.md").read_text()
    assert name in (REPO / "crds" / "seccompprofile.yaml").read_text()


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_flattens_and_compiles_for_each_node_architecture(
    compiler: Compiler, name: str, arch: str
) -> None:
    profile = builtin_profile(name, arch)
    assert profile.architectures is not None and profile.architectures[0] == arch
    document: dict[str, Any] = profile.model_dump(mode="json", exclude_none=True)
    results = compiler.compile(document, profile.architectures)
    assert [r.error for r in results] == [None] * len(results)


def names(name: str, arch: str) -> set[str]:
    profile = builtin_profile(name, arch)
    return {
        n
        for rule in profile.syscalls or []
        if rule.action == "SCMP_ACT_ALLOW" and not rule.args
        for n in rule.names
    }


def test_moby_default_is_flattened_for_an_unprivileged_container_on_the_node() -> None:
    x86, arm = names(MOBY, "SCMP_ARCH_X86_64"), names(MOBY, "SCMP_ARCH_AARCH64")
    assert {"read", "openat", "chroot"} <= x86  # chroot: CAP_SYS_CHROOT is a default capability
    assert "arch_prctl" in x86 and "arch_prctl" not in arm  # includes.arches resolved
    assert not {"bpf", "mount", "reboot", "init_module", "kcmp"} & x86  # need added caps
    assert "ptrace" in x86  # moby allows it from kernel 4.8 on (minKernel taken as met)
    assert builtin_profile(MOBY, "SCMP_ARCH_X86_64").architectures == [
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
    ]


def test_child_on_a_builtin_validates_compiles_and_renders_the_composition(
    compiler: Compiler,
) -> None:
    child = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": "app", "namespace": "team"},
        "spec": {
            "baseProfileName": MOBY,
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
        },
    }
    key = ProfileKey("team", "app")

    def resolve(name: str) -> Any:
        chain = walk_chain(key, lambda k: name if k == key else None)
        return resolve_base(key, name, chain, lambda _: None, "SCMP_ARCH_X86_64")

    result = validate_resource(
        child,
        default_architectures=["SCMP_ARCH_X86_64"],
        compile_profile=compiler.compile,
        resolve_base=resolve,
    )
    assert result.report.valid, result.report.errors
    assert result.base_chain == (MOBY,)
    flat = result.report.profile
    assert flat is not None and flat.defaultAction == "SCMP_ACT_ERRNO"
    assert flat.syscalls is not None and flat.syscalls[0].names == ["mkdir", "mkdirat"]
    assert "mkdir" not in names(MOBY, "SCMP_ARCH_X86_64") - {"mkdir"}  # only the child has it


def test_unknown_builtin_is_refused_listing_the_ones_that_exist() -> None:
    child = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": "app"},
        "spec": {"baseProfileName": "runtime/default@moby-1999-01-01"},
    }
    key = ProfileKey("default", "app")
    result = validate_resource(
        child,
        default_architectures=["SCMP_ARCH_X86_64"],
        compile_profile=None,
        resolve_base=lambda name: resolve_base(
            key, name, walk_chain(key, lambda k: name if k == key else None), lambda _: None, "x"
        ),
    )
    [error] = result.report.errors
    assert error.field == "spec.baseProfileName"
    assert error.reason == "UnknownBuiltinBase"
    assert MOBY in error.message


def test_child_errors_name_the_childs_own_fields(compiler: Compiler) -> None:
    child = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": "app"},
        "spec": {
            "baseProfileName": MOBY,
            "syscalls": [{"names": ["opne"], "action": "SCMP_ACT_ALLOW"}],
        },
    }
    key = ProfileKey("default", "app")
    result = validate_resource(
        child,
        default_architectures=["SCMP_ARCH_X86_64"],
        compile_profile=compiler.compile,
        resolve_base=lambda name: resolve_base(
            key,
            name,
            walk_chain(key, lambda k: name if k == key else None),
            lambda _: None,
            "SCMP_ARCH_X86_64",
        ),
    )
    assert [e.field for e in result.report.errors] == ["spec.syscalls[0].names[0]"]

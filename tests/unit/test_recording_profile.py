"""The recording profile (pure), checked by the compile check and the semantic rules runc has."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.api.keys import ProfileKey
from agent.api.model import OciSeccomp
from agent.profiles.builtin_bases import builtin_profile
from agent.seccomp.compiler import Compiler
from agent.seccomp.recording_profile import recording_profile
from agent.seccomp.syscalls import names_on
from agent.validation.semantics import semantic_findings

X86_64 = "SCMP_ARCH_X86_64"
SOCKET = "/run/seccomp-sync/recorder.sock"
WEB = ProfileKey("shop", "web")
RUNTIME_DEFAULT = "runtime/default@moby-2026-06-30"


@pytest.fixture(scope="module")
def compiler() -> Iterator[Compiler]:
    with Compiler() as compiler:
        yield compiler


def notified(document: dict[str, object]) -> set[str]:
    rules = document["syscalls"]
    assert isinstance(rules, list)
    return {n for r in rules if r["action"] == "SCMP_ACT_NOTIFY" for n in r["names"]}


def allowed(profile: OciSeccomp) -> set[str]:
    return {n for r in profile.syscalls or [] if r.action == "SCMP_ACT_ALLOW" for n in r.names}


def runc_refusals(document: dict[str, object]) -> list[str]:
    """What the project's copy of runc's rules says about the document (NotifyOnWrite...)."""
    findings = semantic_findings(OciSeccomp.model_validate(document), "", [X86_64])
    return [f"{f.reason}: {f.message}" for f in findings if f.severity == "error"]


def test_without_a_base_every_syscall_of_every_abi_but_write_notifies(
    compiler: Compiler,
) -> None:
    document = recording_profile(X86_64, SOCKET, WEB)

    assert document["defaultAction"] == "SCMP_ACT_ALLOW"  # runc refuses NOTIFY as the default
    assert document["architectures"] == [X86_64, "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    every_name = names_on(X86_64) | names_on("SCMP_ARCH_X86") | names_on("SCMP_ARCH_X32")
    assert notified(document) == every_name - {"write"}
    assert {"mkdir", "getppid", "socketcall", "openat"} <= notified(document)  # x86's too
    assert document["listenerPath"] == SOCKET
    assert document["listenerMetadata"] == "shop/web"
    assert runc_refusals(document) == []
    for result in compiler.compile(document, document["architectures"]):
        assert result.error is None, result
        assert result.instructions is not None and result.instructions < 4096


def test_on_a_base_it_observes_what_the_base_allows_and_denies_the_rest(
    compiler: Compiler,
) -> None:
    base = builtin_profile(RUNTIME_DEFAULT, X86_64)
    document = recording_profile(X86_64, SOCKET, WEB, base)

    # The base's verdicts stand: its default denies, what it allows is notified, then allowed.
    assert document["defaultAction"] == base.defaultAction == "SCMP_ACT_ERRNO"
    assert document["architectures"] == base.architectures
    assert notified(document) == allowed(base) - {"write"}
    assert "write" in allowed(OciSeccomp.model_validate(document))
    assert "mount" not in notified(document)  # denied by the runtime default: stays denied
    denied_rules = [r for r in base.syscalls or [] if r.action == "SCMP_ACT_ERRNO"]
    for rule in denied_rules:
        assert rule.model_dump(mode="json", exclude_none=True) in document["syscalls"]
    assert document["listenerMetadata"] == "shop/web"
    assert runc_refusals(document) == []
    (result,) = compiler.compile(document, [X86_64])
    assert result.error is None, result


def test_a_base_that_allows_by_default_has_everything_else_notified() -> None:
    base = OciSeccomp.model_validate(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": [X86_64],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
        }
    )
    document = recording_profile(X86_64, SOCKET, WEB, base)

    assert document["defaultAction"] == "SCMP_ACT_ALLOW"
    assert document["syscalls"][0] == {
        "names": ["mkdir"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": 1,
    }
    assert notified(document) == names_on(X86_64) - {"write", "mkdir"}
    assert runc_refusals(document) == []

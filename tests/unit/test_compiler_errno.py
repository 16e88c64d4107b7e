"""Why the errno bound is 4094: libseccomp itself refuses 4095, checked against the real library."""

from __future__ import annotations

from agent.api.model import MAX_ERRNO
from agent.seccomp.compiler import Compiler


def profile(errno: int) -> dict[str, object]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno}],
    }


def test_the_largest_errno_the_schema_allows_compiles_and_one_more_does_not() -> None:
    with Compiler() as compiler:
        (accepted,) = compiler.compile(profile(MAX_ERRNO), ["SCMP_ARCH_X86_64"])
        (refused,) = compiler.compile(profile(MAX_ERRNO + 1), ["SCMP_ARCH_X86_64"])
    assert accepted.error is None
    assert refused.error is not None
    assert "EINVAL" in refused.error

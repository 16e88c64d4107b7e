"""Sample profile specs shared by the integration tests."""

from __future__ import annotations

from typing import Any, Final

DENY_MKDIR: Final[dict[str, Any]] = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
}
DENY_PTRACE: Final[dict[str, Any]] = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
}

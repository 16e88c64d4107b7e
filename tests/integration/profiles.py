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


def oversize_spec(index: int = 0, megabytes: float = 1.4) -> dict[str, Any]:
    """A spec of about `megabytes` MB within every per-field bound of the CRD before it bounded a
    whole profile (512 rules, 1,024 names of 64 characters each): near etcd's 1.5 MiB limit."""
    per_rule = max(1, int(megabytes * 1_000_000 / 512 / 67))
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": [
                    f"s{index:02d}_{rule:03d}_{i:04d}_".ljust(64, "x") for i in range(per_rule)
                ],
                "action": "SCMP_ACT_ERRNO",
            }
            for rule in range(512)
        ],
    }

"""What `seccomp-agent test` loads to observe, and how it names the rule behind a denial."""

from __future__ import annotations

from agent.api.model import OciSeccomp
from agent.seccomp.trial.plan import explain, observe_document, record_document

PROFILE = OciSeccomp.model_validate(
    {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {
                "names": ["socket"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}],
            },
            {"names": ["mkdir"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["chmod"], "action": "SCMP_ACT_LOG"},
            {
                "names": ["ioctl"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": 25,
                "args": [
                    {"index": 1, "value": 0xFF00, "valueTwo": 0x5400, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            },
        ],
    }
)


def test_observe_filter_notifies_what_would_be_denied_and_allows_the_rest() -> None:
    document = observe_document(PROFILE)
    assert document["defaultAction"] == "SCMP_ACT_NOTIFY"
    assert document["architectures"] == ["SCMP_ARCH_X86_64"]
    actions = {rule["names"][0]: rule["action"] for rule in document["syscalls"]}
    # Denying rules under a denying default collapse into the default (libseccomp refuses a
    # rule equal to the default); allowing ones stay, LOG included (it lets the call through).
    assert actions == {
        "read": "SCMP_ACT_ALLOW",
        "socket": "SCMP_ACT_ALLOW",
        "chmod": "SCMP_ACT_ALLOW",
    }
    socket = next(r for r in document["syscalls"] if r["names"] == ["socket"])
    assert socket["args"][0]["value"] == 1


def test_deny_list_profile_notifies_only_its_denials() -> None:
    deny_list = OciSeccomp.model_validate(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}],
        }
    )
    document = observe_document(deny_list)
    assert document == {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
    }


def test_record_filter_notifies_everything() -> None:
    assert record_document("SCMP_ARCH_AARCH64") == {
        "defaultAction": "SCMP_ACT_NOTIFY",
        "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],  # 32-bit helpers recorded too
    }


def test_explain_names_the_rule_or_the_default() -> None:
    assert explain(PROFILE, "mkdir", [0] * 6, "spec.").where == "spec.syscalls[2]"
    assert explain(PROFILE, "mkdir", [0] * 6).action == "SCMP_ACT_KILL_PROCESS"
    default = explain(PROFILE, "mount", [0] * 6, "spec.")
    assert (default.where, default.action) == ("spec.defaultAction", "SCMP_ACT_ERRNO(38)")
    # socket(AF_INET=2) does not match the AF_UNIX=1 condition: the default denies it.
    assert explain(PROFILE, "socket", [2, 1, 0, 0, 0, 0]).where == "defaultAction"
    # ioctl(fd, TCGETS=0x5401): (0x5401 & 0xFF00) == 0x5400, the masked rule.
    tty = explain(PROFILE, "ioctl", [3, 0x5401, 0, 0, 0, 0])
    assert (tty.where, tty.action) == ("syscalls[4]", "SCMP_ACT_ERRNO(25)")
    assert explain(PROFILE, "ioctl", [3, 0x8901, 0, 0, 0, 0]).where == "defaultAction"

"""Inputs on which the Python policy (agent/profiles/tenancy/policy.py) and the API server's CEL
(deploy/base/tenant-policy.yaml) must agree: the unit tests check the Python verdicts, the
integration tests feed the same cases to the real API server."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
SCOPE = "namespaces with restricted pod security"
WHERE = f" is not allowed in {SCOPE} (SeccompTenantPolicy restricted-pod-security, "
RUNTIME_DEFAULT = (
    "atLeastRuntimeDefault: the runtime's default profile does not allow it to an "
    "unprivileged container)"
)


@dataclass(frozen=True)
class ProfileCase:
    id: str
    spec: dict[str, Any]
    refusal: str | None  # the API server's message (field: ...), None when admitted
    labels: dict[str, str] = field(default_factory=lambda: dict(RESTRICTED))
    policy: dict[str, Any] = field(default_factory=dict)  # overrides of the default policy


def errno_rule(*names: str) -> dict[str, Any]:
    return {"names": list(names), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}


def allow_rule(*names: str) -> dict[str, Any]:
    return {"names": list(names), "action": "SCMP_ACT_ALLOW"}


STRICT_OK = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "syscalls": [allow_rule("read", "write", "exit_group", "clone", "personality", "ptrace")],
}

PROFILE_CASES = [
    ProfileCase("strict-allowlist-admitted", STRICT_OK, None),
    ProfileCase(
        "allow-default-refused",
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [errno_rule("mkdir")]},
        f"spec.defaultAction: SCMP_ACT_ALLOW{WHERE}atLeastRuntimeDefault: it lets every "
        "syscall that no rule names run)",
    ),
    ProfileCase(
        "log-default-refused",
        {"defaultAction": "SCMP_ACT_LOG"},
        f"spec.defaultAction: SCMP_ACT_LOG{WHERE}atLeastRuntimeDefault: it lets every "
        "syscall that no rule names run)",
    ),
    ProfileCase(
        "mount-allowed-refused",
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                allow_rule("read"),
                errno_rule("mkdir"),
                allow_rule("write"),
                allow_rule("mount", "umount2"),
            ],
        },
        f"spec.syscalls[3].names[0]: mount{WHERE}{RUNTIME_DEFAULT}",
    ),
    ProfileCase(
        "log-rule-on-unshare-refused",
        {
            "defaultAction": "SCMP_ACT_KILL_PROCESS",
            "syscalls": [{"names": ["read", "unshare"], "action": "SCMP_ACT_LOG"}],
        },
        f"spec.syscalls[0].names[1]: unshare{WHERE}{RUNTIME_DEFAULT}",
    ),
    ProfileCase(
        "errno-on-mount-admitted",
        {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [errno_rule("mount")]},
        None,
    ),
    ProfileCase(
        "capability-gated-chroot-refused",
        {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [allow_rule("chroot")]},
        f"spec.syscalls[0].names[0]: chroot{WHERE}{RUNTIME_DEFAULT}",
    ),
    ProfileCase(
        "allow-default-in-unselected-namespace-admitted",
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [allow_rule("mount")]},
        None,
        labels={"pod-security.kubernetes.io/enforce": "baseline"},
    ),
    ProfileCase(
        "notify-refused-by-default",
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "listenerPath": "/run/agents/a.sock",
            "syscalls": [allow_rule("read"), {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
        },
        f"spec.syscalls[1].action: SCMP_ACT_NOTIFY{WHERE}allowedActions)",
        policy={"allowedListenerPathPrefixes": ["/run/agents/"]},
    ),
    ProfileCase(
        "notify-under-allowed-prefix-admitted",
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "listenerPath": "/run/agents/a.sock",
            "syscalls": [allow_rule("read"), {"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}],
        },
        None,
        policy={
            "allowedListenerPathPrefixes": ["/run/agents/"],
            "allowedActions": ["SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW", "SCMP_ACT_NOTIFY"],
        },
    ),
    ProfileCase(
        "containerd-socket-refused",
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "listenerPath": "/run/containerd/containerd.sock",
            "listenerMetadata": "x",
        },
        f"spec.listenerPath: /run/containerd/containerd.sock{WHERE}"
        "allowedListenerPathPrefixes: none)",
    ),
    ProfileCase(
        "relative-escape-refused",
        {"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "../../../run/x.sock"},
        f"spec.listenerPath: ../../../run/x.sock{WHERE}allowedListenerPathPrefixes: "
        "/run/agents/; an absolute path without ., .. or //)",
        policy={"allowedListenerPathPrefixes": ["/run/agents/"]},
    ),
    ProfileCase(
        "dot-dot-under-prefix-refused",
        {"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/agents/../containerd.sock"},
        f"spec.listenerPath: /run/agents/../containerd.sock{WHERE}allowedListenerPathPrefixes: "
        "/run/agents/; an absolute path without ., .. or //)",
        policy={"allowedListenerPathPrefixes": ["/run/agents/"]},
    ),
    ProfileCase(
        "flag-refused",
        {"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_LOG"]},
        f"spec.flags[0]: SECCOMP_FILTER_FLAG_LOG{WHERE}allowedFlags)",
        policy={"allowedFlags": ["SECCOMP_FILTER_FLAG_TSYNC"]},
    ),
    ProfileCase(
        "action-refused-as-default",
        {"defaultAction": "SCMP_ACT_TRAP"},
        f"spec.defaultAction: SCMP_ACT_TRAP{WHERE}allowedActions)",
        policy={"allowedActions": ["SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW"]},
    ),
    ProfileCase(
        "match-expressions-select",
        {"defaultAction": "SCMP_ACT_ALLOW"},
        f"spec.defaultAction: SCMP_ACT_ALLOW{WHERE}atLeastRuntimeDefault: it lets every "
        "syscall that no rule names run)",
        labels={"tier": "tenant"},
        policy={
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["tenant", "shared"]},
                    {"key": "system", "operator": "DoesNotExist"},
                ]
            }
        },
    ),
    ProfileCase(
        "match-expressions-do-not-select",
        {"defaultAction": "SCMP_ACT_ALLOW"},
        None,
        labels={"tier": "tenant", "system": "yes"},
        policy={
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["tenant"]},
                    {"key": "system", "operator": "DoesNotExist"},
                ]
            }
        },
    ),
    ProfileCase(
        "default-description-names-the-policy",
        {"defaultAction": "SCMP_ACT_LOG"},
        "spec.defaultAction: SCMP_ACT_LOG is not allowed in namespaces selected by "
        "SeccompTenantPolicy restricted-pod-security (SeccompTenantPolicy "
        "restricted-pod-security, allowedActions)",
        policy={"namespaceDescription": None, "allowedActions": ["SCMP_ACT_ERRNO"]},
    ),
]


def policy_object(
    overrides: dict[str, Any], name: str = "restricted-pod-security"
) -> dict[str, Any]:
    """The shipped default policy with some fields replaced (None removes a field)."""
    spec: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": dict(RESTRICTED)},
        "namespaceDescription": SCOPE,
        "atLeastRuntimeDefault": True,
    }
    for key, value in copy.deepcopy(overrides).items():  # callers may change what they get
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompTenantPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


@dataclass(frozen=True)
class PodCase:
    id: str
    profiles: dict[str, str]  # field kind ("pod", "container", "init") -> localhostProfile
    refusal: str | None  # with {own} for the pod's own namespace
    policy: dict[str, Any] = field(default_factory=dict)


POD_CASES = [
    PodCase("own-namespace-admitted", {"container": "seccomp-sync/{own}/p.json"}, None),
    PodCase(
        "other-namespace-in-container-refused",
        {"container": "seccomp-sync/team-b/p.json"},
        "spec.containers[0].securityContext.seccompProfile.localhostProfile: "
        "seccomp-sync/team-b/p.json (a profile of namespace team-b)"
        f"{WHERE}allowedProfileNamespaces: only the pod's own namespace)",
    ),
    PodCase(
        "other-namespace-at-pod-level-refused",
        {"pod": "seccomp-sync/team-b/p.json", "container": "seccomp-sync/{own}/p.json"},
        "spec.securityContext.seccompProfile.localhostProfile: "
        "seccomp-sync/team-b/p.json (a profile of namespace team-b)"
        f"{WHERE}allowedProfileNamespaces: only the pod's own namespace)",
    ),
    PodCase(
        "other-namespace-in-init-container-refused",
        {"init": "./seccomp-sync//team-b/p.json"},
        "spec.initContainers[0].securityContext.seccompProfile.localhostProfile: "
        "./seccomp-sync//team-b/p.json (a profile of namespace team-b)"
        f"{WHERE}allowedProfileNamespaces: only the pod's own namespace)",
    ),
    PodCase(
        "allowed-namespace-admitted",
        {"container": "seccomp-sync/shared-profiles/p.json"},
        None,
        policy={"allowedProfileNamespaces": ["shared-profiles"]},
    ),
    PodCase(
        "any-namespace-admitted",
        {"container": "seccomp-sync/team-b/p.json"},
        None,
        policy={"allowedProfileNamespaces": ["*"]},
    ),
    PodCase("profiles-not-ours-admitted", {"container": "profiles/audit.json"}, None),
    # A recording profile is its recording's namespace's: the pods of that namespace may use it.
    PodCase(
        "own-recording-admitted", {"container": "seccomp-sync/_recording/{own}/web.json"}, None
    ),
    PodCase(
        "other-namespace-recording-refused",
        {"container": "seccomp-sync/_recording/team-b/web.json"},
        "spec.containers[0].securityContext.seccompProfile.localhostProfile: "
        "seccomp-sync/_recording/team-b/web.json (a profile of namespace team-b)"
        f"{WHERE}allowedProfileNamespaces: only the pod's own namespace)",
    ),
]


@dataclass(frozen=True)
class RecordingCase:
    """A SeccompProfileRecording named web in a restricted namespace."""

    id: str
    spec: dict[str, Any]
    refusal: str | None
    policy: dict[str, Any] = field(default_factory=dict)


RUNTIME_DEFAULT_ONLY = (
    "recording: RuntimeDefaultOnly: build the recording on runtime/default@moby-... or "
    "runtime/runc@..., so that it still denies what the runtime default denies)"
)
SELECTOR = {"podSelector": {"matchLabels": {"app": "web"}}}
RECORDING_CASES = [
    # The default where atLeastRuntimeDefault (the shipped restricted-pod-security policy).
    RecordingCase(
        "restricted-default-without-base-refused",
        SELECTOR,
        f"spec.baseProfileName: (none){WHERE}{RUNTIME_DEFAULT_ONLY}",
    ),
    RecordingCase(
        "restricted-default-on-moby-default-admitted",
        {**SELECTOR, "baseProfileName": "runtime/default@moby-2026-06-30"},
        None,
    ),
    RecordingCase(
        "restricted-default-on-runc-admitted",
        {**SELECTOR, "baseProfileName": "runtime/runc@v1.4.2"},
        None,
    ),
    RecordingCase(
        "restricted-default-on-containers-common-refused",
        {**SELECTOR, "baseProfileName": "runtime/default@containers-common-2025-08-25"},
        f"spec.baseProfileName: runtime/default@containers-common-2025-08-25{WHERE}"
        f"{RUNTIME_DEFAULT_ONLY}",
    ),
    RecordingCase(
        "restricted-default-on-own-profile-refused",
        {**SELECTOR, "baseProfileName": "mine"},
        f"spec.baseProfileName: mine{WHERE}{RUNTIME_DEFAULT_ONLY}",
    ),
    RecordingCase(
        "lenient-default-admitted", SELECTOR, None, policy={"atLeastRuntimeDefault": False}
    ),
    RecordingCase("allowed-admitted", SELECTOR, None, policy={"recording": "Allowed"}),
    RecordingCase(
        "forbidden-refused",
        {**SELECTOR, "baseProfileName": "runtime/default@moby-2026-06-30"},
        f"metadata.name: SeccompProfileRecording web{WHERE}recording: Forbidden)",
        policy={"recording": "Forbidden"},
    ),
]

"""Typed models of the SeccompProfile resource and of the OCI seccomp object it carries.

Field names follow the OCI runtime-spec (config-linux.md, "Seccomp") exactly, so the spec of a
SeccompProfile *is* the profile a runtime reads. Bounds here mirror the CRD schema in
`crds/seccompprofile.yaml`; the agent re-checks them because a file given to the CLI, or an
object stored under an older CRD, never went through the API server's validation.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

API_GROUP: Final = "seccompsync.io"
API_VERSION: Final = "v1beta1"
# The previous version, still served (deprecated) with the same schema: files and clients of an
# older release that name it are read the same way.
DEPRECATED_API_VERSIONS: Final = ("v1alpha1",)
KIND: Final = "SeccompProfile"
PLURAL: Final = "seccompprofiles"
# One SeccompNodeStatus per node (cluster-scoped, owned by its Node): what the node holds.
NODE_STATUS_KIND: Final = "SeccompNodeStatus"
NODE_STATUS_PLURAL: Final = "seccompnodestatuses"

# Limits shared with the CRD. They keep any one object small enough for etcd (1.5 MiB) and for a
# single BPF filter, and bound the cost of the CEL rules the API server evaluates.
MAX_RULES: Final = 512
MAX_NAMES_PER_RULE: Final = 1024
MAX_SYSCALL_NAME_LENGTH: Final = 64
MAX_ARGS: Final = 6
# The kernel caps errno at 4095 (MAX_ERRNO), but libseccomp refuses an ERRNO action whose value
# is not below it: 4095 itself fails every container with EINVAL, so the usable range is 0..4094.
MAX_ERRNO: Final = 4094
# Whole-profile totals (the CRD checks them with CEL): with them the largest spec the API server
# accepts stays under the agent's size limit (agent/validation/size.py).
MAX_TOTAL_NAMES: Final = 2048
MAX_TOTAL_ARGS: Final = 512
MAX_ARCHITECTURES: Final = 24
MAX_PATH_LENGTH: Final = 4096
UINT64_MAX: Final = 2**64 - 1
SYSCALL_NAME_PATTERN: Final = r"^[a-z_][a-z0-9_]*$"
DNS1123_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_LABEL_MAX: Final = 63
# Where kubectl puts an object whose file names no namespace; the CLI reads files the same way.
DEFAULT_NAMESPACE: Final = "default"
# spec.baseProfileName: another SeccompProfile in the same namespace (a DNS-1123 label), or a
# built-in base shipped with the agent, `runtime/<name>@<upstream version>`
# (agent.profiles.builtin_bases).
# Built-in names carry the upstream version so that what a base allows never changes under a
# profile when the agent is upgraded: a new upstream version is a new name.
BUILTIN_BASE_PREFIX: Final = "runtime/"
# Any runtime/ name passes the pattern: whether it is a built-in is checked against the list of
# built-ins (by the CRD's CEL rule and by base resolution), so a wrong one is refused with the
# list of those that exist rather than with a regular expression.
BASE_PROFILE_NAME_PATTERN: Final = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?|runtime/.+)$"
MAX_BASE_PROFILE_NAME_LENGTH: Final = 128

Action = Literal[
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
]
ACTIONS_WITH_ERRNO: Final = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})

# Architectures runc can load. PARISC, PARISC64, M68K, SH and SHEB are valid libseccomp names but
# runc rejects them, so a profile naming them would fail every container on a runc node.
Architecture = Literal[
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_RISCV64",
]

Flag = Literal[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
]

Operator = Literal[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
]

SyscallName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_SYSCALL_NAME_LENGTH, pattern=SYSCALL_NAME_PATTERN
    ),
]
Errno = Annotated[int, Field(ge=0, le=MAX_ERRNO)]
Uint64 = Annotated[int, Field(ge=0, le=UINT64_MAX)]
DnsLabel = Annotated[
    str,
    StringConstraints(min_length=1, max_length=DNS1123_LABEL_MAX, pattern=DNS1123_LABEL_PATTERN),
]


class StrictModel(BaseModel):
    """Unknown keys are errors: containerd would drop them silently, changing the profile; in a
    policy, a misspelt key would leave the default in force unnoticed."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SyscallArg(StrictModel):
    """One condition on a syscall argument (OCI LinuxSeccompArg)."""

    index: Annotated[int, Field(ge=0, le=MAX_ARGS - 1)]
    value: Uint64
    valueTwo: Uint64 = 0  # noqa: N815 - OCI field name
    op: Operator


class SyscallRule(StrictModel):
    """An action for a set of syscalls, optionally conditioned on arguments (OCI LinuxSyscall)."""

    names: Annotated[list[SyscallName], Field(min_length=1, max_length=MAX_NAMES_PER_RULE)]
    action: Action
    errnoRet: Errno | None = None  # noqa: N815 - OCI field name
    args: Annotated[list[SyscallArg], Field(max_length=MAX_ARGS)] | None = None


class OciSeccomp(StrictModel):
    """The OCI runtime-spec seccomp object: the `spec` of a SeccompProfile and the file on disk."""

    defaultAction: Action  # noqa: N815 - OCI field name
    defaultErrnoRet: Errno | None = None  # noqa: N815
    architectures: Annotated[list[Architecture], Field(max_length=MAX_ARCHITECTURES)] | None = None
    flags: Annotated[list[Flag], Field(max_length=4)] | None = None
    listenerPath: Annotated[str, Field(min_length=1, max_length=MAX_PATH_LENGTH)] | None = None  # noqa: N815
    listenerMetadata: Annotated[str, Field(max_length=MAX_PATH_LENGTH)] | None = None  # noqa: N815
    syscalls: Annotated[list[SyscallRule], Field(max_length=MAX_RULES)] | None = None


BaseProfileName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=MAX_BASE_PROFILE_NAME_LENGTH, pattern=BASE_PROFILE_NAME_PATTERN
    ),
]


class ProfileSpec(OciSeccomp):
    """The `spec` of a SeccompProfile: an OCI seccomp object, optionally built on a base.

    With `baseProfileName`, `defaultAction` may be left out (the base's applies) and the node
    gets the flattened composition (agent.profiles.compose), never this object as written.
    """

    defaultAction: Action | None = None  # type: ignore[assignment]  # noqa: N815
    baseProfileName: BaseProfileName | None = None  # noqa: N815


class ObjectMeta(BaseModel):
    """The part of metadata that seccomp-sync relies on: both names become path components."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: DnsLabel
    namespace: DnsLabel = DEFAULT_NAMESPACE
    uid: str | None = None
    generation: int | None = None
    resourceVersion: str | None = None  # noqa: N815 - Kubernetes field name


class ApiObject(BaseModel):
    """A `seccompsync.io` object (v1beta1, or the deprecated v1alpha1 with the same schema), of
    which only the fields declared are read."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    apiVersion: Literal["seccompsync.io/v1beta1", "seccompsync.io/v1alpha1"]  # noqa: N815


class SeccompProfile(ApiObject):
    """A SeccompProfile object; status is owned by the agents."""

    kind: Literal["SeccompProfile"]
    metadata: ObjectMeta
    spec: ProfileSpec

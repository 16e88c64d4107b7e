"""What a SeccompTenantPolicy allows, decided in Python exactly as the API server decides it.

The API server enforces the policy with the CEL of deploy/base/tenant-policy.yaml; this module is
the same rules, in the same order, with the same messages, for what the CEL cannot do: report
profiles that were stored before a policy was tightened, and check files offline
(`seccomp-agent validate --policy`). tests/integration/test_tenant_policy.py feeds both the same
inputs and checks that they agree. Pure: plain data in, findings out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.api.findings import Finding, error
from agent.api.layout import MANAGED_DIR_NAME
from agent.api.model import Action, ApiObject, Flag, OciSeccomp, StrictModel
from agent.api.recording import RECORDING_DIR_NAME, RECORDING_KIND
from agent.profiles.tenancy.runtime_default import runtime_default_allowed

KIND: Final = "SeccompTenantPolicy"
PLURAL: Final = "seccomptenantpolicies"
# Actions under which a syscall may run: LOG runs it, TRACE lets a tracer in the container.
PERMISSIVE_ACTIONS: Final = frozenset({"SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"})
# The CRD's defaults: every action but NOTIFY (it hands syscalls to a listener on the node),
# every flag.
DEFAULT_ACTIONS: Final[tuple[Action, ...]] = tuple(
    action for action in get_args(Action) if action != "SCMP_ACT_NOTIFY"
)
DEFAULT_FLAGS: Final[tuple[Flag, ...]] = get_args(Flag)
ANY_NAMESPACE: Final = "*"

# Finding reasons (CamelCase, a small fixed set: they label metrics).
ACTION_NOT_ALLOWED: Final = "ActionNotAllowed"
FLAG_NOT_ALLOWED: Final = "FlagNotAllowed"
LISTENER_PATH_NOT_ALLOWED: Final = "ListenerPathNotAllowed"
WEAKER_THAN_RUNTIME_DEFAULT: Final = "WeakerThanRuntimeDefault"
FOREIGN_PROFILE: Final = "ForeignNamespaceProfile"
RECORDING_NOT_ALLOWED: Final = "RecordingNotAllowed"

RecordingMode = Literal["Allowed", "RuntimeDefaultOnly", "Forbidden"]
# The bases a recording may be built on where only the runtime default may be recorded: Docker's
# default profile is what atLeastRuntimeDefault compares with, and runc's base is narrower still.
# Podman's (containers-common) is not: it allows chroot, clone3, keyctl... to any container.
RUNTIME_DEFAULT_BASES: Final = ("runtime/default@moby-", "runtime/runc@")


class LabelRequirement(StrictModel):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = []


class NamespaceSelector(StrictModel):
    matchLabels: dict[str, str] = {}  # noqa: N815 - Kubernetes field name
    matchExpressions: list[LabelRequirement] = []  # noqa: N815


class TenantPolicySpec(StrictModel):
    namespaceSelector: NamespaceSelector  # noqa: N815 - Kubernetes field names
    namespaceDescription: Annotated[str, Field(min_length=1, max_length=128)] | None = None  # noqa: N815
    atLeastRuntimeDefault: bool = False  # noqa: N815
    allowedActions: list[Action] = list(DEFAULT_ACTIONS)  # noqa: N815
    allowedFlags: list[Flag] = list(DEFAULT_FLAGS)  # noqa: N815
    allowedListenerPathPrefixes: list[str] = []  # noqa: N815
    allowedProfileNamespaces: list[str] = []  # noqa: N815
    recording: RecordingMode | None = None  # None: see `recording_mode`


class PolicyMeta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    name: str


class TenantPolicy(ApiObject):
    """A SeccompTenantPolicy object (cluster-scoped)."""

    kind: Literal["SeccompTenantPolicy"]
    metadata: PolicyMeta
    spec: TenantPolicySpec


def selects(policy: TenantPolicy, namespace_labels: Mapping[str, str]) -> bool:
    """Whether the policy's namespaceSelector selects a namespace with these labels."""
    selector = policy.spec.namespaceSelector
    if any(namespace_labels.get(k) != v for k, v in selector.matchLabels.items()):
        return False
    return all(_holds(r, namespace_labels) for r in selector.matchExpressions)


def _holds(requirement: LabelRequirement, labels: Mapping[str, str]) -> bool:
    present = requirement.key in labels
    if requirement.operator == "In":
        return present and labels[requirement.key] in requirement.values
    if requirement.operator == "NotIn":
        return not (present and labels[requirement.key] in requirement.values)
    if requirement.operator == "Exists":
        return present
    return not present


def profile_violations(policy: TenantPolicy, spec: OciSeccomp) -> list[Finding]:
    """Every way the profile breaks the policy, rule by rule in the API server's order.

    The caller decides whether the policy applies (`selects`). The API server names only the
    first offending item of each rule it refuses on; this lists them all.
    """
    rules = spec.syscalls or []
    allowed_actions = set(policy.spec.allowedActions)
    found: list[Finding] = []
    rule = _Rule(policy)
    if spec.defaultAction not in allowed_actions:
        found.append(rule.refuse("spec.defaultAction", spec.defaultAction, "allowedActions"))
    found += [
        rule.refuse(f"spec.syscalls[{i}].action", r.action, "allowedActions")
        for i, r in enumerate(rules)
        if r.action not in allowed_actions
    ]
    found += [
        rule.refuse(f"spec.flags[{i}]", flag, "allowedFlags", FLAG_NOT_ALLOWED)
        for i, flag in enumerate(spec.flags or [])
        if flag not in policy.spec.allowedFlags
    ]
    path = spec.listenerPath
    prefixes = policy.spec.allowedListenerPathPrefixes
    if path is not None and not _listener_path_allowed(path, prefixes):
        detail = (
            ", ".join(prefixes) + "; an absolute path without ., .. or //" if prefixes else "none"
        )
        found.append(
            rule.refuse(
                "spec.listenerPath",
                path,
                f"allowedListenerPathPrefixes: {detail}",
                LISTENER_PATH_NOT_ALLOWED,
            )
        )
    if policy.spec.atLeastRuntimeDefault:
        found += list(_weaker_than_runtime_default(rule, spec))
    return found


def recording_mode(policy: TenantPolicy) -> RecordingMode:
    """Whether the namespaces of `policy` may record; unset, it follows atLeastRuntimeDefault so
    that a recording never weakens what the policy requires."""
    if policy.spec.recording is not None:
        return policy.spec.recording
    return "RuntimeDefaultOnly" if policy.spec.atLeastRuntimeDefault else "Allowed"


def recording_violations(policy: TenantPolicy, name: str, spec: Mapping[str, Any]) -> list[Finding]:
    """Why a SeccompProfileRecording `name` with `spec` may not be made under the policy."""
    mode = recording_mode(policy)
    rule = _Rule(policy)
    if mode == "Forbidden":
        return [
            rule.refuse(
                "metadata.name",
                f"{RECORDING_KIND} {name}",
                "recording: Forbidden",
                RECORDING_NOT_ALLOWED,
            )
        ]
    base = spec.get("baseProfileName")
    if mode == "RuntimeDefaultOnly" and not (
        isinstance(base, str) and base.startswith(RUNTIME_DEFAULT_BASES)
    ):
        return [
            rule.refuse(
                "spec.baseProfileName",
                base if isinstance(base, str) else "(none)",
                "recording: RuntimeDefaultOnly: build the recording on "
                + " or ".join(f"{p}..." for p in RUNTIME_DEFAULT_BASES)
                + ", so that it still denies what the runtime default denies",
                RECORDING_NOT_ALLOWED,
            )
        ]
    return []


def _weaker_than_runtime_default(rule: _Rule, spec: OciSeccomp) -> Iterator[Finding]:
    if spec.defaultAction in PERMISSIVE_ACTIONS:
        yield rule.refuse(
            "spec.defaultAction",
            spec.defaultAction,
            "atLeastRuntimeDefault: it lets every syscall that no rule names run",
            WEAKER_THAN_RUNTIME_DEFAULT,
        )
    allowed = runtime_default_allowed()
    for i, r in enumerate(spec.syscalls or []):
        if r.action not in PERMISSIVE_ACTIONS:
            continue
        for j, name in enumerate(r.names):
            if name not in allowed:
                yield rule.refuse(
                    f"spec.syscalls[{i}].names[{j}]",
                    name,
                    "atLeastRuntimeDefault: the runtime's default profile does not allow it to "
                    "an unprivileged container",
                    WEAKER_THAN_RUNTIME_DEFAULT,
                )


def _listener_path_allowed(path: str, prefixes: Sequence[str]) -> bool:
    # A prefix means nothing for a path that can climb out of it again.
    clean = (
        path.startswith("/")
        and "//" not in path
        and not any(part in {".", ".."} for part in path.split("/"))
    )
    return clean and any(path.startswith(p) for p in prefixes)


def pod_violations(policy: TenantPolicy, namespace: str, pod: Mapping[str, Any]) -> list[Finding]:
    """Profiles of other namespaces that a pod being created names, unless the policy allows."""
    allowed = set(policy.spec.allowedProfileNamespaces)
    if ANY_NAMESPACE in allowed:
        return []
    rule = _Rule(policy)
    detail = ", ".join(policy.spec.allowedProfileNamespaces) or "only the pod's own namespace"
    found = []
    for field, path in localhost_profiles(pod.get("spec") or {}):
        owner = profile_namespace(path)
        if owner is not None and owner != namespace and owner not in allowed:
            found.append(
                rule.refuse(
                    field,
                    f"{path} (a profile of namespace {owner})",
                    f"allowedProfileNamespaces: {detail}",
                    FOREIGN_PROFILE,
                )
            )
    return found


def localhost_profiles(pod_spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, localhostProfile) for the pod level and every container, in the CEL's order."""
    prefix = "securityContext.seccompProfile.localhostProfile"
    pod_level = _localhost_profile(pod_spec)
    if pod_level is not None:
        yield f"spec.{prefix}", pod_level
    for kind in ("containers", "initContainers", "ephemeralContainers"):
        for index, container in enumerate(pod_spec.get(kind) or []):
            value = _localhost_profile(container)
            if value is not None:
                yield f"spec.{kind}[{index}].{prefix}", value


def _localhost_profile(holder: Mapping[str, Any]) -> str | None:
    value = ((holder.get("securityContext") or {}).get("seccompProfile") or {}).get(
        "localhostProfile"
    )
    return value if isinstance(value, str) else None


def profile_namespace(localhost_profile: str) -> str | None:
    """The namespace a seccomp-sync path names, as the kubelet resolves it; None if not ours."""
    parts = [p for p in localhost_profile.split("/") if p not in {"", "."}]
    if len(parts) < 2 or parts[0] != MANAGED_DIR_NAME:
        return None
    # A recording profile, seccomp-sync/_recording/<namespace>/<name>.json: the namespace is
    # the recording's ("_recording" is never a namespace: names start with a letter or digit).
    if parts[1] == RECORDING_DIR_NAME and len(parts) >= 3:
        return parts[2]
    return parts[1]


class _Rule:
    """Builds the refusal messages, word for word those of the API server's policy."""

    def __init__(self, policy: TenantPolicy) -> None:
        name = policy.metadata.name
        scope = policy.spec.namespaceDescription or f"namespaces selected by {KIND} {name}"
        self._where = f" is not allowed in {scope} ({KIND} {name}, "

    def refuse(
        self, field: str, value: str, rule: str, reason: str = ACTION_NOT_ALLOWED
    ) -> Finding:
        return error(field, reason, f"{value}{self._where}{rule})")


class PolicyFileError(ValueError):
    """A document given as a policy is not a valid SeccompTenantPolicy."""


def parse_policy(document: Any) -> TenantPolicy:
    """A SeccompTenantPolicy from plain data; PolicyFileError names the field that is wrong."""
    try:
        return TenantPolicy.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(document)"
        raise PolicyFileError(f"{field}: {first['msg']}") from None

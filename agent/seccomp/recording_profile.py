"""The profile a recorded container runs under: every syscall goes to the node agent's listener.

Two shapes, both pure functions of their inputs:

- **Without a base**: default ALLOW, and every syscall Linux has on the node's architecture and
  its compat ABIs (`COMPAT_ABIS`) is SCMP_ACT_NOTIFY, so a 32-bit helper is recorded too.
- **With a base** (a tenant policy that requires at least the runtime default): the base, with
  each syscall it allows turned into NOTIFY. The container is observed and still denied
  whatever the base denies, so recording never weakens a namespace's policy.

runc's rules apply to both: NOTIFY is refused as the default action (the runtime's own calls
would wait on the listener) and on `write` (runc reports through write(); the listener would
deadlock it), so `write` stays allowed and is not observed: the controller adds it to every
result. `listenerPath` is the agent's socket as the host sees it (runc connects from the host's
mount namespace) and `listenerMetadata` names the recording, which runc hands back with the
listener.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from agent.api.keys import ProfileKey
from agent.api.model import OciSeccomp
from agent.api.recording import listener_metadata
from agent.seccomp.syscalls import names_on
from agent.seccomp.trial.plan import COMPAT_ABIS, denies

NOTIFY: Final = "SCMP_ACT_NOTIFY"
ALLOW: Final = "SCMP_ACT_ALLOW"
# runc refuses NOTIFY on these (libcontainer/seccomp/patchbpf: the runtime writes its errors).
NEVER_NOTIFIED: Final = frozenset({"write"})


def recording_architectures(native: str) -> list[str]:
    """The architectures a recording profile lists on a node of `native`: it and its compat ABIs."""
    return [native, *COMPAT_ABIS.get(native, ())]


def notifiable_names(architectures: Iterable[str]) -> list[str]:
    """Every syscall name of these architectures that may be notified, sorted."""
    names: set[str] = set()
    for architecture in architectures:
        names |= names_on(architecture)
    return sorted(names - NEVER_NOTIFIED)


def recording_profile(
    native: str, listener_path: str, recording: ProfileKey, base: OciSeccomp | None = None
) -> dict[str, Any]:
    """The OCI document of `recording`'s profile on a node of architecture `native`."""
    if base is None:
        architectures = recording_architectures(native)
        document: dict[str, Any] = {
            "defaultAction": ALLOW,
            "architectures": architectures,
            "syscalls": [{"names": notifiable_names(architectures), "action": NOTIFY}],
        }
    else:
        document = _observing(base, native)
    document["listenerPath"] = listener_path
    document["listenerMetadata"] = listener_metadata(recording)
    return document


def _observing(base: OciSeccomp, native: str) -> dict[str, Any]:
    """`base` with what it allows notified instead; what it denies, denied as before."""
    architectures = [str(a) for a in base.architectures] if base.architectures else [native]
    rules: list[dict[str, Any]] = []
    for rule in base.syscalls or []:
        entry: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
        if rule.errnoRet is not None:
            entry["errnoRet"] = rule.errnoRet
        if rule.args:
            entry["args"] = [arg.model_dump(mode="json") for arg in rule.args]
        if denies(rule.action):
            rules.append(entry)
            continue
        notified = [name for name in rule.names if name not in NEVER_NOTIFIED]
        kept = [name for name in rule.names if name in NEVER_NOTIFIED]
        if notified:
            rules.append({**entry, "names": notified, "action": NOTIFY})
        if kept:  # still allowed (by the base's own rule), only not observed
            rules.append({**entry, "names": kept, "action": ALLOW})
    document: dict[str, Any] = {"defaultAction": base.defaultAction}
    if base.defaultErrnoRet is not None:
        document["defaultErrnoRet"] = base.defaultErrnoRet
    if not denies(base.defaultAction):
        # A base that allows by default: what its rules do not name is allowed, so notify it.
        # After the base's rules: libseccomp keeps the first unconditional rule for a name.
        named = {name for rule in base.syscalls or [] for name in rule.names}
        rest = [name for name in notifiable_names(architectures) if name not in named]
        if rest:
            rules.append({"names": rest, "action": NOTIFY})
        document["defaultAction"] = ALLOW
    document["architectures"] = architectures
    if base.flags:
        document["flags"] = list(base.flags)
    document["syscalls"] = rules
    return document

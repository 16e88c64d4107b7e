"""Recording in the cluster: the names and formats the node agent and the controller share.

A `SeccompProfileRecording` selects pods of its own namespace. Those pods run under a recording
profile that the node agent writes on every node (`recording_localhost_profile`); runc hands
the agent each container's seccomp listener over a unix socket, with the OCI state whose
`metadata` is `listener_metadata(key)`. The agent answers every notification with "continue"
and keeps, per container name, the set of syscall names seen. It publishes its node's part in
its SeccompNodeStatus under `status.recordings` (`build_node_recordings`); the controller merges
the parts of every node (`parse_node_recordings`) into the recording's status and, once the
recording stops, into one SeccompProfile per container (`result_profile_name`).

The node part is bounded: a set of names per container (never a log of calls), at most
`MAX_CONTAINERS` containers, `MAX_PODS` pods and `MAX_DEGRADED` degraded pods per recording.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from agent.api.keys import ProfileKey
from agent.api.layout import MANAGED_DIR_NAME, PROFILE_SUFFIX, key_below

RECORDING_KIND: Final = "SeccompProfileRecording"
RECORDING_PLURAL: Final = "seccompprofilerecordings"

# Below the managed directory, beside the namespaces' directories: a namespace name is a DNS
# label, which never starts with "_", so this directory can never be taken for a namespace.
RECORDING_DIR_NAME: Final = "_recording"

MAX_CONTAINERS: Final = 64
MAX_DEGRADED: Final = 50
MAX_PODS: Final = 500  # the CRD's bound: a part lists at most this many pods
MAX_SYSCALLS: Final = 1024  # more names than any architecture has syscalls


def recording_localhost_profile(key: ProfileKey) -> str:
    """The pod's `localhostProfile` for a recording: `seccomp-sync/_recording/<ns>/<name>.json`."""
    return f"{MANAGED_DIR_NAME}/{RECORDING_DIR_NAME}/{key.namespace}/{key.name}{PROFILE_SUFFIX}"


def recording_of_localhost_profile(path: str) -> ProfileKey | None:
    """`seccomp-sync/_recording/<ns>/<name>.json` -> the recording's key; None otherwise."""
    return key_below(path, f"{MANAGED_DIR_NAME}/{RECORDING_DIR_NAME}/")


def listener_metadata(key: ProfileKey) -> str:
    """The recording profile's `listenerMetadata`: runc passes it back with each listener."""
    return str(key)


def result_profile_name(recording: str, container: str) -> str:
    """The SeccompProfile a stopped recording writes for one container."""
    return f"{recording}-{container}"


@dataclass(frozen=True)
class DegradedPod:
    """A pod whose recording was cut short on this node, and why (e.g. the agent restarted)."""

    pod: str  # namespace/name
    container: str
    reason: str


@dataclass(frozen=True)
class NodeRecording:
    """One node's part of one recording."""

    recording: ProfileKey
    uid: str  # of the SeccompProfileRecording: a recording deleted and made again starts afresh
    ready: bool  # the recording profile is on this node's disk and the listener accepts
    pods: frozenset[str] = frozenset()  # namespace/name of every pod recorded here
    syscalls: Mapping[str, frozenset[str]] = field(default_factory=dict)  # container -> names
    architectures: frozenset[str] = frozenset()  # SCMP_ARCH_* of the calls seen
    degraded: tuple[DegradedPod, ...] = ()


def build_node_recordings(parts: Iterable[NodeRecording]) -> list[dict[str, Any]]:
    """`status.recordings` of a SeccompNodeStatus. Deterministic (sorted), for change detection."""
    built: list[dict[str, Any]] = []
    for part in sorted(parts, key=lambda p: p.recording):
        containers = sorted(part.syscalls.items())[:MAX_CONTAINERS]
        built.append(
            {
                "recording": str(part.recording),
                "uid": part.uid,
                "ready": part.ready,
                "pods": sorted(part.pods)[:MAX_PODS],
                "architectures": sorted(part.architectures),
                "containers": [
                    {"name": name, "syscalls": sorted(names)[:MAX_SYSCALLS]}
                    for name, names in containers
                ],
                "degraded": [
                    {"pod": d.pod, "container": d.container, "reason": d.reason}
                    for d in part.degraded[:MAX_DEGRADED]
                ],
            }
        )
    return built


def parse_node_recordings(entries: object) -> list[NodeRecording]:
    """Read `status.recordings` back. Malformed entries are skipped, never fatal."""
    parts: list[NodeRecording] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        key = ProfileKey.parse(str(entry.get("recording", "")))
        if key is None:
            continue
        syscalls: dict[str, frozenset[str]] = {}
        for container in _mappings(entry.get("containers")):
            name = container.get("name")
            if isinstance(name, str) and name:
                syscalls[name] = frozenset(_strings(container.get("syscalls")))
        degraded = tuple(
            DegradedPod(
                str(d.get("pod", "")), str(d.get("container", "")), str(d.get("reason", ""))
            )
            for d in _mappings(entry.get("degraded"))
        )
        parts.append(
            NodeRecording(
                recording=key,
                uid=str(entry.get("uid", "")),
                ready=bool(entry.get("ready")),
                pods=frozenset(_strings(entry.get("pods"))),
                syscalls=syscalls,
                architectures=frozenset(_strings(entry.get("architectures"))),
                degraded=degraded,
            )
        )
    return parts


def _mappings(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []

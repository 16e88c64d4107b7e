"""Which seccomp-sync profiles a pod uses: pure parsing of a pod object."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from agent.api.keys import ProfileKey
from agent.api.layout import key_of_localhost_profile
from agent.api.recording import recording_of_localhost_profile

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


def profiles_used_by(pod: Mapping[str, Any]) -> frozenset[ProfileKey]:
    """Profiles a pod's containers may still start with: pod-level and every container level.

    A pod that has finished never starts a container again, so it uses nothing.
    """
    if (pod.get("status") or {}).get("phase") in _FINISHED_PHASES:
        return frozenset()
    spec = pod.get("spec") or {}
    return frozenset(
        key for key in map(key_of_localhost_profile, _localhost_profiles(spec)) if key is not None
    )


def recordings_used_by(pod: Mapping[str, Any]) -> frozenset[ProfileKey]:
    """The recordings whose recording profile a pod's containers may still start with."""
    if (pod.get("status") or {}).get("phase") in _FINISHED_PHASES:
        return frozenset()
    spec = pod.get("spec") or {}
    return frozenset(
        key
        for key in map(recording_of_localhost_profile, _localhost_profiles(spec))
        if key is not None
    )


def _localhost_profiles(spec: Mapping[str, Any]) -> Iterator[str]:
    contexts = [spec.get("securityContext")]
    for field in _CONTAINER_LISTS:
        contexts += [c.get("securityContext") for c in spec.get(field) or []]
    for context in contexts:
        profile = (context or {}).get("seccompProfile") or {}
        if profile.get("type") == "Localhost" and profile.get("localhostProfile"):
            yield str(profile["localhostProfile"])

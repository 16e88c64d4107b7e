"""The on-disk layout, in one place: `<kubelet seccomp root>/seccomp-sync/<namespace>/<name>.json`.

A pod names a profile by the path below the kubelet's seccomp root (`localhostProfile`); the
node agent writes exactly there. Pure: no filesystem access.
"""

from __future__ import annotations

from typing import Final

from agent.api.keys import ProfileKey, is_dns_label

MANAGED_DIR_NAME: Final = "seccomp-sync"
PROFILE_SUFFIX: Final = ".json"


def file_name(name: str) -> str:
    """The file a profile is written to, inside its namespace's directory."""
    return f"{name}{PROFILE_SUFFIX}"


def name_of_file(entry: str) -> str | None:
    """The profile a file in a namespace directory holds; None for anything we never write."""
    if not entry.endswith(PROFILE_SUFFIX):
        return None
    name = entry.removesuffix(PROFILE_SUFFIX)
    return name if is_dns_label(name) else None


def localhost_profile(key: ProfileKey) -> str:
    """The path under the kubelet's seccomp root: the pod's `localhostProfile` value."""
    return f"{MANAGED_DIR_NAME}/{key.namespace}/{file_name(key.name)}"


def key_of_localhost_profile(path: str) -> ProfileKey | None:
    """`seccomp-sync/<ns>/<name>.json` -> its key; None for a profile that is not ours."""
    return key_below(path, f"{MANAGED_DIR_NAME}/")


def key_below(path: str, prefix: str) -> ProfileKey | None:
    """`<prefix><ns>/<name>.json` -> (ns, name); None for any other shape of path."""
    if not path.startswith(prefix) or not path.endswith(PROFILE_SUFFIX):
        return None
    parts = path.removeprefix(prefix).removesuffix(PROFILE_SUFFIX).split("/")
    return ProfileKey(parts[0], parts[1]) if len(parts) == 2 and all(parts) else None

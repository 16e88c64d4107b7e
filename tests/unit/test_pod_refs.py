"""Which of our profiles a pod uses, at every level a pod can name one."""

from __future__ import annotations

from agent.api.keys import ProfileKey
from agent.api.pod_refs import profiles_used_by


def localhost(path: str) -> dict[str, object]:
    return {"seccompProfile": {"type": "Localhost", "localhostProfile": path}}


def test_every_level_is_read_and_foreign_profiles_are_ignored() -> None:
    pod = {
        "spec": {
            "securityContext": localhost("seccomp-sync/a/pod-level.json"),
            "containers": [
                {"name": "c", "securityContext": localhost("seccomp-sync/a/container.json")},
                {"name": "d", "securityContext": localhost("my-own/profile.json")},
                {"name": "e", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
            ],
            "initContainers": [
                {"name": "i", "securityContext": localhost("seccomp-sync/b/init.json")}
            ],
            "ephemeralContainers": [
                {"name": "x", "securityContext": localhost("seccomp-sync/b/debug.json")}
            ],
        },
        "status": {"phase": "Running"},
    }
    assert profiles_used_by(pod) == {
        ProfileKey("a", "pod-level"),
        ProfileKey("a", "container"),
        ProfileKey("b", "init"),
        ProfileKey("b", "debug"),
    }


def test_finished_pods_use_nothing_and_malformed_paths_are_ignored() -> None:
    done = {
        "spec": {"securityContext": localhost("seccomp-sync/a/p.json")},
        "status": {"phase": "Succeeded"},
    }
    assert profiles_used_by(done) == frozenset()
    odd = {"spec": {"securityContext": localhost("seccomp-sync/a/b/c.json")}}
    assert profiles_used_by(odd) == frozenset()

"""The recording contract between the node agent and the controller (agent/api/recording.py)."""

from __future__ import annotations

from agent.api.keys import ProfileKey
from agent.api.layout import key_of_localhost_profile
from agent.api.recording import (
    MAX_DEGRADED,
    MAX_SYSCALLS,
    DegradedPod,
    NodeRecording,
    build_node_recordings,
    parse_node_recordings,
    recording_localhost_profile,
    recording_of_localhost_profile,
)

WEB = ProfileKey("shop", "web")


def test_a_recording_profile_path_is_never_read_as_a_profile_and_reads_back() -> None:
    path = recording_localhost_profile(WEB)
    assert path == "seccomp-sync/_recording/shop/web.json"
    assert recording_of_localhost_profile(path) == WEB
    assert key_of_localhost_profile(path) is None  # never mistaken for profile "_recording/…"
    assert recording_of_localhost_profile("seccomp-sync/shop/web.json") is None
    assert recording_of_localhost_profile("seccomp-sync/_recording/shop/a/b.json") is None


def test_the_node_part_round_trips_sorted() -> None:
    part = NodeRecording(
        recording=WEB,
        uid="u-1",
        ready=True,
        pods=frozenset({"shop/web-2", "shop/web-1"}),
        syscalls={"web": frozenset({"read", "accept4"}), "side": frozenset({"nanosleep"})},
        architectures=frozenset({"SCMP_ARCH_X86_64"}),
        degraded=(DegradedPod("shop/web-1", "web", "RecorderRestarted"),),
    )
    other = NodeRecording(recording=ProfileKey("a", "b"), uid="u-2", ready=False)
    built = build_node_recordings([part, other])
    assert [entry["recording"] for entry in built] == ["a/b", "shop/web"]
    assert built[1]["pods"] == ["shop/web-1", "shop/web-2"]
    assert built[1]["containers"] == [
        {"name": "side", "syscalls": ["nanosleep"]},
        {"name": "web", "syscalls": ["accept4", "read"]},
    ]
    assert parse_node_recordings(built) == [other, part]


def test_the_node_part_is_bounded() -> None:
    part = NodeRecording(
        recording=WEB,
        uid="u",
        ready=True,
        syscalls={"web": frozenset(f"call_{i}" for i in range(MAX_SYSCALLS + 10))},
        degraded=tuple(DegradedPod(f"shop/p{i}", "web", "RecorderRestarted") for i in range(99)),
    )
    [entry] = build_node_recordings([part])
    assert len(entry["containers"][0]["syscalls"]) == MAX_SYSCALLS
    assert len(entry["degraded"]) == MAX_DEGRADED


def test_malformed_entries_are_skipped_not_fatal() -> None:
    entries = [
        "junk",
        {"recording": "no-slash"},
        {"recording": "shop/web", "uid": "u", "containers": [{"syscalls": ["read"]}, 3]},
    ]
    [part] = parse_node_recordings(entries)
    assert part.recording == WEB and part.syscalls == {}
    assert parse_node_recordings(None) == []

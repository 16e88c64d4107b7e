"""The node's part of recording without a runtime: runc's message, admission, the recording
profiles on a real disk, the node part (lingering, restore, restart), and the store's sweeps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.api.recording import (
    RECORDING_DIR_NAME,
    DegradedPod,
    NodeRecording,
    recording_localhost_profile,
)
from agent.node.drift import key_of
from agent.node.recorder import ListenerState, Observations, StateError, parse_state
from agent.node.recordings import (
    LINGER_SECONDS,
    RECORDER_RESTARTED,
    Admissions,
    Recordings,
)
from agent.node.settings import RECORDER_SOCKET, add_run_arguments, build_settings
from agent.node.store import ProfileStore
from agent.runtime.settings import SettingsError

WEB = ProfileKey("shop", "web")
SOCKET = "/run/seccomp-sync/recorder.sock"


def runc_state(metadata: str = "shop/web", namespace: str = "shop", **extra: Any) -> bytes:
    """The OCI state as runc 1.1 sends it to a seccomp listener (captured on the test node)."""
    annotations = {
        "io.kubernetes.cri.sandbox-namespace": namespace,
        "io.kubernetes.cri.sandbox-name": "web-7d9f",
        "io.kubernetes.cri.sandbox-uid": "0b5c",
        "io.kubernetes.cri.container-name": "web",
        "io.kubernetes.cri.container-type": "container",
    }
    document = {
        "ociVersion": "1.0.2",
        "fds": ["seccompFd"],
        "pid": 4242,
        "metadata": metadata,
        "state": {"ociVersion": "1.0.2", "id": "abc", "status": "creating", "pid": 4242,
                  "bundle": "/run/containerd/x", "annotations": annotations},
        **extra,
    }  # fmt: skip
    return json.dumps(document).encode()


def test_runcs_message_names_the_recording_pod_and_container() -> None:
    state = parse_state(runc_state())
    assert state == ListenerState(WEB, "shop", "web-7d9f", "0b5c", "web", 4242)
    assert state.pod_ref == "shop/web-7d9f"


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (runc_state(metadata="web"), "names no recording"),
        (runc_state(metadata="shop/Web_1"), "names no recording"),
        (json.dumps({"metadata": "shop/web", "state": {}}).encode(), "no annotations"),
        (
            json.dumps({"metadata": "shop/web", "state": {"annotations": {}}}).encode(),
            "io.kubernetes.cri.sandbox-namespace",
        ),
    ],
)
def test_a_message_that_is_not_runcs_is_refused_with_a_reason(payload: bytes, says: str) -> None:
    with pytest.raises(StateError, match=says):
        parse_state(payload)


def test_a_listener_is_served_only_for_an_active_recording_of_its_own_namespace() -> None:
    admissions = Admissions()
    state = parse_state(runc_state())
    admissions.set(frozenset())
    assert admissions.admit(state) == "recording shop/web does not exist or is not active"
    admissions.set(frozenset({WEB}))
    assert admissions.admit(state) is None
    stranger = parse_state(runc_state(namespace="bank"))
    refusal = admissions.admit(stranger)
    assert refusal is not None and "not in the namespace of recording shop/web" in refusal


def test_before_the_recordings_are_listed_a_listener_of_its_own_namespace_is_served() -> None:
    """A restarted agent meets runc before its first listing: the profile on disk was written
    for an active recording, and refusing would make the container fail."""
    admissions = Admissions()
    assert admissions.admit(parse_state(runc_state())) is None
    refusal = admissions.admit(parse_state(runc_state(namespace="bank")))
    assert refusal is not None and "not in the namespace" in refusal


# --- the keeper ------------------------------------------------------------------------------


class FakeRecorder:
    """What the keeper reads of the recorder."""

    def __init__(self) -> None:
        self.listening = True
        self.served: set[tuple[str, str]] = set()
        self.refused: dict[tuple[str, str], str] = {}


class Clock:
    def __init__(self) -> None:
        self.now = 1_796_000_000.0  # December 2026

    def __call__(self) -> float:
        return self.now


def recording(
    name: str = "web", uid: str = "u1", active: bool = True, base: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {}, "active": active}
    if base:
        spec["baseProfileName"] = base
    return {"metadata": {"namespace": "shop", "name": name, "uid": uid}, "spec": spec}


def keeper(root: Path, clock: Clock | None = None) -> tuple[Recordings, FakeRecorder]:
    recorder = FakeRecorder()
    recordings = Recordings(
        store=ProfileStore(root, subdir=RECORDING_DIR_NAME),
        native="SCMP_ARCH_X86_64",
        listener_path=SOCKET,
        observations=Observations(),
        admissions=Admissions(),
        recorder=recorder,
        clock=clock or Clock(),
    )
    return recordings, recorder


def profile_file(root: Path, name: str = "web") -> Path:
    return root / "seccomp-sync" / RECORDING_DIR_NAME / "shop" / f"{name}.json"


def test_active_recordings_have_their_profile_on_disk_and_stopped_ones_do_not(
    tmp_path: Path,
) -> None:
    recordings, _ = keeper(tmp_path)
    recordings.on_list([recording("web"), recording("api", base="runtime/default@moby-2026-06-30")])
    recordings.sync()

    written = json.loads(profile_file(tmp_path).read_text())
    assert written["listenerPath"] == SOCKET
    assert written["listenerMetadata"] == "shop/web"
    assert written["defaultAction"] == "SCMP_ACT_ALLOW"
    on_base = json.loads(profile_file(tmp_path, "api").read_text())
    assert on_base["defaultAction"] == "SCMP_ACT_ERRNO"  # the runtime default still denies
    # The path the pods name is where the file is.
    assert (tmp_path / recording_localhost_profile(WEB)) == profile_file(tmp_path)
    assert [p.ready for p in recordings.parts()] == [True, True]

    recordings.on_event("MODIFIED", recording("web", active=False))
    recordings.on_event("DELETED", recording("api"))
    recordings.sync()
    assert not profile_file(tmp_path).exists()
    assert not profile_file(tmp_path, "api").exists()
    assert [p.ready for p in recordings.parts()] == [False, False]


def test_a_stray_file_under_recording_is_removed_and_a_deleted_one_rewritten(
    tmp_path: Path,
) -> None:
    recordings, _ = keeper(tmp_path)
    recordings.on_list([recording("web")])
    recordings.sync()
    stray = profile_file(tmp_path, "gone")
    stray.write_text("{}")
    profile_file(tmp_path).unlink()
    recordings.sync()
    assert not stray.exists()
    assert profile_file(tmp_path).exists()


def test_a_part_outlives_its_recording_by_ten_minutes(tmp_path: Path) -> None:
    clock = Clock()
    recordings, _ = keeper(tmp_path, clock)
    recordings.on_list([recording("web")])
    recordings.observations.add(WEB, "web", "mkdir", "SCMP_ARCH_X86_64")
    recordings.on_event("DELETED", recording("web"))

    clock.now += LINGER_SECONDS - 1
    (part,) = recordings.parts()
    assert part.syscalls == {"web": frozenset({"mkdir"})} and not part.ready
    clock.now += 1
    assert recordings.parts() == []


def test_a_restart_keeps_what_was_published_and_names_the_containers_it_cut_off(
    tmp_path: Path,
) -> None:
    clock = Clock()
    recordings, _ = keeper(tmp_path, clock)
    published = NodeRecording(
        WEB,
        "u1",
        ready=True,
        pods=frozenset({"shop/web-1"}),
        syscalls={"web": frozenset({"read", "mkdir"})},
        architectures=frozenset({"SCMP_ARCH_X86_64"}),
    )
    recordings.restore([published])
    recordings.on_list([recording("web")])

    started_before = "2026-01-01T00:00:00Z"  # long before this agent's clock
    pod = {
        "metadata": {"namespace": "shop", "name": "web-1", "uid": "p1"},
        "spec": {
            "securityContext": {
                "seccompProfile": {
                    "type": "Localhost",
                    "localhostProfile": recording_localhost_profile(WEB),
                }
            },
            "containers": [{"name": "web"}, {"name": "sidecar", "securityContext": {
                "seccompProfile": {"type": "RuntimeDefault"}}}],
        },
        "status": {"containerStatuses": [
            {"name": "web", "state": {"running": {"startedAt": started_before}}},
            {"name": "sidecar", "state": {"running": {"startedAt": started_before}}},
        ]},
    }  # fmt: skip
    recordings.on_pod_event("MODIFIED", pod)

    (part,) = recordings.parts()
    assert part.syscalls == {"web": frozenset({"read", "mkdir"})}
    assert part.pods == frozenset({"shop/web-1"})
    assert part.degraded == (DegradedPod("shop/web-1", "web", RECORDER_RESTARTED),)

    # A container this agent serves is not degraded, whenever it started.
    recordings2, recorder2 = keeper(tmp_path, clock)
    recordings2.on_list([recording("web")])
    recorder2.served.add(("shop/web-1", "web"))
    recordings2.on_pod_event("MODIFIED", pod)
    assert recordings2.parts()[0].degraded == ()


def test_a_recording_made_again_starts_afresh(tmp_path: Path) -> None:
    recordings, _ = keeper(tmp_path)
    recordings.on_list([recording("web", uid="u1")])
    recordings.observations.add(WEB, "web", "mkdir", "SCMP_ARCH_X86_64")
    recordings.on_event("ADDED", recording("web", uid="u2"))
    (part,) = recordings.parts()
    assert part.uid == "u2" and part.syscalls == {}


def test_the_profile_sweep_and_the_drift_watcher_leave_recording_alone(tmp_path: Path) -> None:
    recordings, _ = keeper(tmp_path)
    recordings.on_list([recording("web")])
    recordings.sync()
    main = ProfileStore(tmp_path)
    main.write("shop", "kept", b"{}\n")

    result = main.collect_garbage(set())  # no SeccompProfile wanted at all
    assert profile_file(tmp_path).exists()
    assert main.managed_dir / RECORDING_DIR_NAME not in result.unexpected
    assert result.removed_profiles == (main.managed_dir / "shop" / "kept.json",)
    assert main.list_managed() == frozenset()
    # The drift watcher maps no recording file to a SeccompProfile to restore.
    assert key_of(main.managed_dir, str(profile_file(tmp_path))) is None


def test_recording_is_on_only_where_the_socket_is_given() -> None:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)

    def socket(argv: list[str], environ: dict[str, str]) -> Path | None:
        return build_settings(
            parser.parse_args(argv), {"NODE_NAME": "n1", **environ}
        ).recorder_socket

    assert socket([], {}) is None  # an agent run by hand takes no host path of its own
    assert socket(["--recorder-socket", str(RECORDER_SOCKET)], {}) == RECORDER_SOCKET
    assert socket([], {"SECCOMP_SYNC_RECORDER_SOCKET": "/run/x.sock"}) == Path("/run/x.sock")
    with pytest.raises(SettingsError, match="absolute path"):
        socket(["--recorder-socket", "recorder.sock"], {})

"""Recording under Debian's real runc: the profile the agent writes, a real listener, a real
container. What runc does with the listener is the whole feature; nothing here is faked."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.api.keys import ProfileKey
from agent.api.recording import RECORDING_DIR_NAME
from agent.node.recorder import Observations, Recorder
from agent.node.recordings import Admissions, Recordings
from agent.node.store import ProfileStore
from agent.profiles.builtin_bases import builtin_profile
from agent.seccomp.syscalls import native_architecture
from tests.integration.tools import require_tool
from tests.runc_bundle import RuncBundle, cri_annotations

pytestmark = [pytest.mark.runc]

REPO = Path(__file__).resolve().parents[2]
WEB = ProfileKey("shop", "web")
RUNTIME_DEFAULT = "runtime/default@moby-2026-06-30"
ANNOTATIONS = cri_annotations("shop", "web-1", "0b5c", "web")


# Waits (its calls answered) until /tmp/go appears, at most 20 s, then makes one more call.
# It reports with write(2), which is never notified, so it can report even after the listener
# is gone; its exit then fails too, and it dies of a signal.
PROBE_C = r"""
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
int main(void) {
    struct timespec pause = {0, 50000000};
    for (int i = 0; i < 400 && access("/tmp/go", F_OK) != 0; i++) nanosleep(&pause, NULL);
    int made = mkdir("/tmp/after", 0755);
    char line[64];
    int n = snprintf(line, sizeof line, "mkdir=%d errno=%d\n", made, made < 0 ? errno : 0);
    write(1, line, n);
    return 0;
}
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> RuncBundle:
    runc = require_tool("runc", "runc")
    busybox = require_tool("busybox", "busybox-static")
    gcc = require_tool("gcc", "gcc")
    bundle = RuncBundle.create(tmp_path_factory.mktemp("bundle"), runc=runc)
    bundle.add(busybox, "/bin/busybox")
    bundle.compile(PROBE_C, "/bin/probe", gcc=gcc)
    return bundle


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: a unix socket's path must stay under 108 bytes.
    path = Path(f"/tmp/rec-{uuid.uuid4().hex[:8]}")
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def written_profile(root: Path, socket_path: Path, base: str | None = None) -> dict[str, Any]:
    """The recording profile exactly as the agent writes it for an active recording."""
    recordings = Recordings(
        store=ProfileStore(root, subdir=RECORDING_DIR_NAME),
        native=native_architecture(),
        listener_path=str(socket_path),
        observations=Observations(),
        admissions=Admissions(),
        recorder=Recorder(socket_path, Observations(), lambda _: None),
    )
    spec: dict[str, Any] = {"podSelector": {}}
    if base is not None:
        spec["baseProfileName"] = base
    recordings.on_list(
        [{"metadata": {"namespace": "shop", "name": "web", "uid": "u1"}, "spec": spec}]
    )
    recordings.sync()
    path = root / "seccomp-sync" / RECORDING_DIR_NAME / "shop" / "web.json"
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def run_container(
    bundle: RuncBundle, seccomp: dict[str, Any], script: str | None
) -> subprocess.Popen[str]:
    """`runc run` of busybox sh (or, with no script, the probe) under `seccomp`, as containerd
    would: the profile file's content as the spec's linux.seccomp, the CRI's annotations."""
    bundle.empty_tmp()
    args = ["/bin/probe"] if script is None else ["/bin/busybox", "sh", "-c", script]
    bundle.configure(args, seccomp, annotations=ANNOTATIONS, writable_root=True)
    return bundle.start("rec")


async def serve_and_run(
    recorder: Recorder, bundle: RuncBundle, seccomp: dict[str, Any], script: str | None
) -> tuple[int, str, str, float]:
    task = asyncio.create_task(recorder.run())
    try:
        while not recorder.listening:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        process = run_container(bundle, seccomp, script)
        out, err = await asyncio.to_thread(process.communicate, timeout=60)
        return process.returncode, out, err, time.monotonic() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_container_under_the_written_profile_is_recorded_and_runs_normally(
    bundle: RuncBundle, socket_dir: Path, tmp_path: Path
) -> None:
    socket_path = socket_dir / "recorder.sock"
    seccomp = written_profile(tmp_path, socket_path)
    observations = Observations()
    admissions = Admissions()
    admissions.set(frozenset({WEB}))
    recorder = Recorder(socket_path, observations, admissions.admit)
    script = "mkdir /tmp/made && ls /tmp && cat /proc/self/status | grep '^Seccomp:'"

    code, out, err, seconds = asyncio.run(serve_and_run(recorder, bundle, seccomp, script))

    assert code == 0, err
    assert "made" in out and "Seccomp:\t2" in out  # filtered, and nothing was denied
    assert seconds < 10  # every syscall waited for the listener, none for long
    assert socket_path.stat().st_mode & 0o777 == 0o600
    observed = observations.snapshot()[WEB]
    assert observed.pods == {"shop/web-1"}
    names = observed.syscalls["web"]
    # The shell's own calls, its child's, and runc's last steps before exec are all there.
    assert {"mkdir", "execve", "openat", "getdents64", "read", "clone"} <= names, names
    assert "write" not in names  # never notified (runc's rule); the controller adds it
    assert observed.architectures == {native_architecture()}
    assert recorder.errors == 0
    assert recorder.live() == []  # the container exited: its listener hung up and is closed


def test_on_a_base_runc_accepts_it_and_only_what_the_base_allows_is_recorded(
    bundle: RuncBundle, socket_dir: Path, tmp_path: Path
) -> None:
    socket_path = socket_dir / "recorder.sock"
    seccomp = written_profile(tmp_path, socket_path, base=RUNTIME_DEFAULT)
    observations = Observations()
    admissions = Admissions()
    admissions.set(frozenset({WEB}))
    recorder = Recorder(socket_path, observations, admissions.admit)

    code, out, err, _ = asyncio.run(
        serve_and_run(recorder, bundle, seccomp, "mkdir /tmp/made && ls /tmp")
    )

    assert code == 0, err
    assert "made" in out
    names = observations.snapshot()[WEB].syscalls["web"]
    assert {"mkdir", "execve", "getdents64"} <= names
    base = builtin_profile(RUNTIME_DEFAULT, native_architecture())
    allowed = {n for r in base.syscalls or [] if r.action == "SCMP_ACT_ALLOW" for n in r.names}
    assert names <= allowed  # nothing the base denies is ever notified


def test_a_listener_for_another_namespace_is_refused_and_its_calls_fail(
    bundle: RuncBundle, socket_dir: Path, tmp_path: Path
) -> None:
    socket_path = socket_dir / "recorder.sock"
    seccomp = written_profile(tmp_path, socket_path)
    seccomp["listenerMetadata"] = "bank/web"  # a recording elsewhere: never this pod's
    admissions = Admissions()
    admissions.set(frozenset({ProfileKey("bank", "web")}))
    recorder = Recorder(socket_path, Observations(), admissions.admit)

    code, out, _, seconds = asyncio.run(serve_and_run(recorder, bundle, seccomp, None))

    # runc's init ran to its exec (a listener closed earlier hangs it in `created` for good),
    # then the program died at its first notified call: the container fails, and fast.
    assert code != 0 and seconds < 30
    assert "mkdir=" not in out
    assert ("shop/web-1", "web") in recorder.refused
    assert recorder.observations.snapshot() == {}
    assert recorder.live() == []


def test_when_the_recorder_dies_the_containers_notified_calls_get_enosys(
    bundle: RuncBundle, socket_dir: Path, tmp_path: Path
) -> None:
    """What an agent restart does to the containers it was recording (docs/recording.md)."""
    socket_path = socket_dir / "recorder.sock"
    seccomp = written_profile(tmp_path, socket_path)
    recorder = subprocess.Popen(
        # `access`: the probe's own loop has begun, runc's init is gone.
        [
            sys.executable,
            "-m",
            "tests.integration.recorder_process",
            str(socket_path),
            "shop/web",
            "access",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert recorder.stdout is not None
        assert recorder.stdout.readline().strip() == "listening"
        container = run_container(bundle, seccomp, None)
        assert recorder.stdout.readline().strip() == "serving shop/web-1 web"
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=10)
        (bundle.rootfs / "tmp" / "go").touch()  # it cannot even stat it now
        out, err = container.communicate(timeout=60)
    finally:
        recorder.kill()
        recorder.wait(timeout=10)
    # mkdir failed with ENOSYS (38), as every notified call does once the listener is gone;
    # even the probe's exit did, so it died of a signal.
    assert out == "mkdir=-1 errno=38\n", (out, err)
    assert not (bundle.rootfs / "tmp" / "after").exists()
    assert container.returncode != 0

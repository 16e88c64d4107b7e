"""Every failure path of the node agent's async core, injected in-process, must converge.

Each test reproduces a defect of issue 9 (the first lines of its docstring say which) or a class
of error, then asserts what a user would check: the files on disk equal the valid objects, the
agent says ready only when that holds, and nothing died on the way.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, ReadTimeoutError

from agent.api.keys import ProfileKey
from agent.kube.client import api_unavailable
from agent.node.store import StoreError
from agent.runtime.process_metrics import PREFIX
from tests.unit.agent_harness import Harness, SlowWithoutBase, spec


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(scenario)


def new_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(new_root(tmp_path))


def metric(h: Harness, name: str, **labels: str) -> float | None:
    return h.metrics.registry.get_sample_value(f"{PREFIX}_{name}", labels)


async def started(h: Harness) -> asyncio.Task[None]:
    task = await h.start()
    await h.until(lambda: h.agent.catalog.complete, "the initial sync")
    return task


def test_bad_file_names_on_the_host_do_not_stop_syncing(harness: Harness) -> None:
    """Defect 1: `Evil.json` or `my.profile.json` planted on the host killed the syncer."""

    async def scenario() -> None:
        h = harness
        task = await started(h)
        managed = h.root / "seccomp-sync" / "default"
        managed.mkdir(parents=True, exist_ok=True)
        for planted in ("Evil.json", "my.profile.json", ".hidden.json"):
            (managed / planted).write_text("{}")
        await asyncio.sleep(0.2)  # the drift watcher has seen them
        await h.apply("default", "after", spec())
        await h.until(h.converged, "the profile applied after the planted files")
        assert h.supervisor.problems() == {}
        assert h.failed_components == []
        # The planted files are left for a person to look at, never touched.
        assert (managed / "Evil.json").read_text() == "{}"
        task.cancel()

    run(scenario())


def test_an_object_whose_name_cannot_be_a_file_is_invalid_not_fatal(harness: Harness) -> None:
    """Defect 1, API side: `a.b`, stored under an older, looser CRD."""

    async def scenario() -> None:
        h = harness
        task = await started(h)
        await h.apply("default", "a.b", spec())
        await h.apply("default", "fine", spec())
        await h.until(
            lambda: h.disk().keys() == {ProfileKey("default", "fine")}, "the valid profile"
        )
        status = dict(h.agent.catalog.statuses())[ProfileKey("default", "a.b")]
        assert status.state == "Invalid"
        assert status.reason == "InvalidName"
        assert h.events.reasons("InvalidProfile") == ["default/a.b"]
        assert h.failed_components == []
        task.cancel()

    run(scenario())


def test_a_batch_that_cannot_create_the_directory_is_retried(harness: Harness) -> None:
    """Defect 2: 8+ queued writes with the managed directory missing on a read-only root."""

    async def scenario() -> None:
        h = harness
        h.os.read_only = True  # and the managed directory does not exist yet
        for index in range(12):
            h.apply_unseen("default", f"p{index}", spec(index + 1))
        task = await h.start()
        for body in list(h.api.objects.values()):
            await h.deliver(None, body)
        await h.until(lambda: h.agent.catalog.complete, "the initial sync")
        await h.until(lambda: len(h.agent.catalog.failures) == 12, "twelve failing writes")
        assert not h.agent.readiness.ready
        h.os.read_only = False
        await h.until(h.converged, "all twelve written once the root is writable", timeout=20)
        assert h.failed_components == []
        task.cancel()

    run(scenario())


def test_readiness_and_the_ready_callback_wait_for_the_disk(harness: Harness) -> None:
    """Defect 3: ready (and the startup taint removed) with 0 of 5 files on a read-only root."""

    async def scenario() -> None:
        h = harness
        (h.root / "seccomp-sync").mkdir()
        h.os.read_only = True
        for index in range(5):
            h.apply_unseen("default", f"p{index}", spec())
        task = await h.start()
        for body in list(h.api.objects.values()):
            await h.deliver(None, body)
        await h.until(lambda: h.agent.catalog.complete, "the initial sync")
        await h.until(lambda: len(h.agent.catalog.failures) == 5, "five failing writes")
        await asyncio.sleep(0.5)
        reason = h.agent.readiness.not_ready_reason()
        assert reason is not None
        assert "5 profile(s) cannot be synced (EROFS: 5)" in reason
        assert h.ready_calls == 0  # the startup taint stays on
        assert metric(h, "agent_ready") == 0
        assert metric(h, "write_failures", reason="EROFS") == 5
        report = h.agent.catalog.report("node-a")
        assert {p["reason"] for p in report["problems"]} == {"EROFS"}
        h.os.read_only = False
        await h.until(h.converged, "all five written", timeout=20)
        await h.until(lambda: h.ready_calls == 1, "the ready callback")
        assert metric(h, "write_failures", reason="EROFS") == 0
        task.cancel()

    run(scenario())


def test_removing_the_managed_directory_is_repaired_every_time(harness: Harness) -> None:
    """Defect 4: after `rm -rf <root>/seccomp-sync` drift repair worked once, never again."""

    async def scenario() -> None:
        h = harness
        task = await started(h)
        await h.apply("default", "one", spec())
        await h.apply("other", "two", spec(2))
        await h.until(h.converged, "both profiles")
        for attempt in range(1, 4):
            subprocess.run(["rm", "-rf", str(h.root / "seccomp-sync")], check=True)
            await h.until(h.converged, f"files restored after removal {attempt}")
            # Each removal is noticed and the new directory watched. (A syncer write can make
            # the directory again before the watcher looks; two removals inside one check
            # would then be noticed once, so the next one waits for this one.)
            await h.until(lambda n=attempt: h.drift.recreations >= n, f"removal {attempt} noticed")
            # ... and a change after the repair still reaches the disk: the new watch is alive.
            (h.root / "seccomp-sync" / "default" / "one.json").write_text("tampered")
            await h.until(h.converged, f"drift repaired after removal {attempt}")
        assert h.supervisor.problems() == {}
        task.cancel()

    run(scenario())


@pytest.mark.skipif(os.geteuid() != 0, reason="a bind mount needs root")
def test_a_deleted_bind_mount_fails_liveness(harness: Harness, tmp_path: Path) -> None:
    """Defect 4, DaemonSet layout: the managed directory is a bind mount of a host directory;
    deleted on the host, it cannot come back in-process, so liveness must fail."""
    host_dir = tmp_path / "host-seccomp-sync"
    host_dir.mkdir()
    mount_point = harness.root / "seccomp-sync"
    mount_point.mkdir()
    subprocess.run(["mount", "--bind", str(host_dir), str(mount_point)], check=True)

    async def scenario() -> None:
        h = harness
        task = await started(h)
        await h.apply("default", "one", spec())
        await h.until(h.converged, "the profile")
        assert (host_dir / "default" / "one.json").exists()
        subprocess.run(["rm", "-rf", str(host_dir)], check=True)
        await h.until(lambda: "drift-watcher" in h.supervisor.problems(), "liveness failing")
        assert "Restart the agent's pod" in h.supervisor.problems()["drift-watcher"]
        assert "ManagedDirRemoved" in (h.agent.readiness.not_ready_reason() or "")
        task.cancel()

    try:
        run(scenario())
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_write_failures_make_one_event_per_profile_and_reason(harness: Harness) -> None:
    """Defect 5: the message named a random temp file, so de-duplication never matched."""

    async def scenario() -> None:
        h = harness
        task = await started(h)
        h.os.full = True
        await h.apply("default", "one", spec())
        await h.apply("default", "two", spec())
        await h.until(lambda: len(h.agent.catalog.failures) == 2, "two failing writes")
        await asyncio.sleep(1.5)  # several retries with backoff
        assert sorted(h.events.reasons("WriteFailed")) == ["default/one", "default/two"]
        assert all(".tmp-" not in message for *_, message in h.events.warnings)
        h.os.full = False
        await h.until(h.converged, "written once there is space")
        # The same fault coming back later is news again.
        h.os.read_only = True
        await h.apply("default", "one", spec(5))
        await h.until(lambda: len(h.events.reasons("WriteFailed")) == 3, "a new event")
        h.os.read_only = False
        await h.until(h.converged, "written")
        task.cancel()

    run(scenario())


def test_a_profile_created_while_a_listing_is_in_flight_is_kept(harness: Harness) -> None:
    """Defect 12: a relist forgot a profile whose ADDED event arrived during the listing."""

    async def scenario() -> None:
        h = harness
        task = await started(h)
        await h.apply("default", "old", spec())
        loop = asyncio.get_running_loop()
        created = threading.Event()

        def create_during_listing() -> None:
            h.api.after_listing = None
            future = asyncio.run_coroutine_threadsafe(h.apply("default", "new", spec()), loop)
            future.result(timeout=5)
            created.set()

        h.api.after_listing = create_during_listing
        await h.agent.resync.once()
        assert created.is_set()
        await h.until(h.converged, "both profiles on disk")
        assert ProfileKey("default", "new") in h.agent.catalog.records
        task.cancel()

    run(scenario())


def test_lost_events_are_repaired_by_the_periodic_resync(tmp_path: Path) -> None:
    """Level-triggered: creations, updates, deletions and pod deletions the watch never
    delivered converge at the next resync; nothing waits for another event."""
    h = Harness(new_root(tmp_path), resync_seconds=0.2)

    async def scenario() -> None:
        task = await started(h)
        await h.apply("default", "kept", spec())
        await h.apply("default", "changed", spec())
        await h.apply("default", "deleted", spec())
        await h.until(h.converged, "three profiles")
        # A pod on this node uses `deleted`; then the profile is deleted (event delivered) ...
        uid = "pod-1"
        h.agent.on_pod_event("ADDED", _pod(uid, "default", "deleted"))
        h.api.pods[uid] = frozenset({ProfileKey("default", "deleted")})
        await h.delete("default", "deleted")
        await asyncio.sleep(0.3)
        assert ProfileKey("default", "deleted") in h.disk()  # in use: the file stays
        # ... then the pod goes, but its DELETED event is lost; so are these changes:
        del h.api.pods[uid]
        h.apply_unseen("default", "changed", spec(7))
        h.apply_unseen("default", "created", spec(8))
        del h.api.objects[ProfileKey("default", "kept")]
        await h.until(h.converged, "the resync's repair", timeout=10)
        assert h.agent.resync.count >= 1
        task.cancel()

    run(scenario())


@pytest.mark.parametrize(
    "failure",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        MaxRetryError(None, "/apis", "connection refused"),  # type: ignore[arg-type]
        ReadTimeoutError(None, "/apis", "read timed out"),  # type: ignore[arg-type]
        ApiException(status=500, reason="Internal Server Error"),
        ApiException(status=503, reason="Service Unavailable"),
        ApiException(status=429, reason="Too Many Requests"),
        ApiException(status=410, reason="Gone"),
        ApiException(status=403, reason="Forbidden"),
        TimeoutError("timed out"),
    ],
    ids=lambda exc: type(exc).__name__ + str(getattr(exc, "status", "") or ""),
)
def test_api_errors_of_every_class_are_retried(harness: Harness, failure: Exception) -> None:
    """The initial sync's listings and the resync retry through any error until the API
    answers; meanwhile nothing is removed and the agent is not ready."""
    assert api_unavailable(failure) == (
        getattr(failure, "status", 500) >= 500 or getattr(failure, "status", 0) == 429
    )

    async def scenario() -> None:
        h = harness
        h.apply_unseen("default", "one", spec())
        h.api.errors = [failure, failure, failure]
        task = await h.start()
        await h.deliver(None, h.api.objects[ProfileKey("default", "one")])
        await h.until(h.converged, "the initial sync despite three failed listings")
        h.api.errors = [failure, failure]
        h.apply_unseen("default", "two", spec(2))
        h.agent.resync.request()
        await h.until(h.converged, "the resync despite two failures")
        # An unreachable or overloaded API is waited out, never held against liveness (or an
        # API outage would restart every agent); anything else is a failure worth counting.
        if api_unavailable(failure):
            assert h.failed_components == []
        else:
            assert h.failed_components.count("resync") == 2
        assert h.supervisor.problems() == {}
        task.cancel()

    run(scenario())


def test_an_unexpected_error_in_the_store_is_retried_not_fatal(harness: Harness) -> None:
    """A bug (not an OSError) while syncing: logged, retried, the worker survives."""

    async def scenario() -> None:
        h = harness
        task = await started(h)
        h.os.crash_on_read = RuntimeError("a bug in the store")
        await h.apply("default", "one", spec())
        await h.until(lambda: ProfileKey("default", "one") in h.agent.catalog.failures, "a failure")
        assert h.agent.catalog.failures[ProfileKey("default", "one")].reason == "Internal"
        h.os.crash_on_read = None
        await h.until(h.converged, "the retry")
        task.cancel()

    run(scenario())


def test_descriptor_exhaustion_recovers(harness: Harness) -> None:
    """EMFILE on every open (a descriptor leak elsewhere in the process)."""

    async def scenario() -> None:
        h = harness
        task = await started(h)
        h.os.out_of_descriptors = True
        await h.apply("default", "one", spec())
        await h.until(lambda: h.agent.readiness.not_ready_reason() is not None, "not ready")
        assert "EMFILE" in (h.agent.readiness.not_ready_reason() or "")
        h.os.out_of_descriptors = False
        await h.until(h.converged, "written once descriptors are back")
        task.cancel()

    run(scenario())


def test_a_hung_filesystem_fails_liveness(tmp_path: Path) -> None:
    """A write that never returns (hung NFS, a stuck device) must not look healthy."""
    h = Harness(new_root(tmp_path), stall_seconds=0.3)

    async def scenario() -> None:
        task = await started(h)
        h.os.hang = threading.Event()
        await h.apply("default", "one", spec())
        await h.until(lambda: "syncer" in h.supervisor.problems(), "liveness failing")
        assert "in flight" in h.supervisor.problems()["syncer"]
        h.os.hang.set()
        h.os.hang = None
        await h.until(h.converged, "written once the filesystem answers")
        # The file is there once renamed; the batch that hung ends after its directory fsync.
        await h.agent.syncer.wait_idle()
        assert h.supervisor.problems() == {}
        task.cancel()

    run(scenario())


def test_bookkeeping_does_not_grow_with_churn(harness: Harness) -> None:
    """Defect 12: per-profile maps only grew."""

    async def scenario() -> None:
        h = harness
        task = await started(h)
        for index in range(50):
            await h.apply("churn", f"p{index}", spec())
        await h.until(h.converged, "fifty profiles")
        for index in range(50):
            await h.delete("churn", f"p{index}")
        await h.until(h.converged, "all gone")
        await h.agent.resync.once()
        await h.agent.syncer.wait_idle()
        a = h.agent
        assert a.catalog.records == {}
        assert a.catalog.installed == {}
        assert a.catalog.failures == {}
        # Versions seen, bodies waiting, compile retries, the syncer's backoff and latency
        # clocks, the keys the initial sync waited for: nothing is left of fifty deleted profiles.
        assert len(a.intake) == len(a.compile_retries) == len(a.syncer) == len(a.resync) == 0
        task.cancel()

    run(scenario())


def test_the_batch_path_reports_store_errors_per_profile(tmp_path: Path) -> None:
    """write_many never raises: a failure of the whole batch is every profile's failure."""
    from agent.node.store import ProfileStore

    root = new_root(tmp_path)
    h = Harness(root)
    h.os.read_only = True
    results = ProfileStore(root, h.os).write_many([("ns", f"p{i}", b"{}") for i in range(10)])
    assert len(results) == 10
    assert all(isinstance(r, StoreError) and r.reason == "EROFS" for r in results)


def _pod(uid: str, namespace: str, profile: str) -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "namespace": namespace, "name": uid},
        "spec": {
            "securityContext": {
                "seccompProfile": {
                    "type": "Localhost",
                    "localhostProfile": f"seccomp-sync/{namespace}/{profile}.json",
                }
            },
            "containers": [{"name": "c", "image": "x"}],
        },
    }


def test_a_child_applied_with_its_base_is_rendered_once_the_base_lands(tmp_path: Path) -> None:
    """CI: `kubectl apply` of a base and its child in a row left the child Invalid
    (BaseNotFound) for good when the base's validation landed while the child's, started
    before the base was known, was still running."""
    # A busy lane for the child validated without its base: the base lands before it finishes.
    h = Harness(new_root(tmp_path), lanes=SlowWithoutBase())

    async def scenario() -> None:
        task = await started(h)
        child = ProfileKey("default", "child")
        base_body = h.api.put("default", "base", spec())
        log_chmod = [{"names": ["chmod"], "action": "SCMP_ACT_LOG"}]
        child_spec = {"baseProfileName": "base", "syscalls": log_chmod}
        child_body = h.api.put("default", "child", child_spec)
        await asyncio.gather(h.deliver("ADDED", base_body), h.deliver("ADDED", child_body))
        await h.until(lambda: h.agent.catalog.records[child].valid, "the child valid")
        child_file = h.root / "seccomp-sync" / "default" / "child.json"
        await h.until(child_file.exists, "the child's file on disk")
        assert b"SCMP_ACT_LOG" in child_file.read_bytes()
        task.cancel()

    run(scenario())

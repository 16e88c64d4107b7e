"""In-cluster recording, the controller's part: merging the nodes' parts, the status, the
results, the finalizer, the Events, and the gate that holds a recording pod until its node is
ready. Decisions only, with the in-memory fakes beside the real writes (the API is
tests/integration/test_recording_controller.py's business)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from typing import Any

from kubernetes import client

from agent.api.keys import ProfileKey
from agent.api.node_report import NodeReport
from agent.api.recording import (
    DegradedPod,
    NodeRecording,
    build_node_recordings,
    parse_node_recordings,
    recording_localhost_profile,
)
from agent.controller.fleet_publisher import MemoryFleetConfigMap
from agent.controller.gate_decision import ProfileReadiness, Release, Wait, decide
from agent.controller.gated_pods import GATE, GatedPod, gated_pod
from agent.controller.main import Controller, ControllerIO, build_controller
from agent.controller.pod_gates import RecordedPodGates
from agent.controller.profile_statuses import RecordedProfileStatuses
from agent.controller.recording_handler import RecordingBoard, RecordingHandler
from agent.controller.recording_writes import RecordedRecordingWrites
from agent.controller.recordings import (
    COMPLETED,
    DEGRADED,
    FINALIZER,
    NEVER_NOTIFIED,
    PODS_CUT_SHORT,
    PROFILE_EXISTS,
    RECORDING,
    RECORDING_LABEL,
    RESULT_REFUSED,
    STOPPED,
    merge,
    recording_view,
)
from agent.controller.settings import add_controller_arguments, build_controller_settings
from agent.profiles.tenancy.compliance import PolicyContext
from agent.runtime.events import RecordedEvents

KEY = ProfileKey("shop", "web")
NOW = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)


def body(**spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": "web",
        "namespace": "shop",
        "uid": "u-1",
        "generation": spec.pop("generation", 1),
        "resourceVersion": "10",
        "finalizers": spec.pop("finalizers", [FINALIZER]),
    }
    if spec.pop("deleting", False):
        meta["deletionTimestamp"] = "2026-12-05T00:00:00Z"
    status = spec.pop("status", {})
    return {
        "metadata": meta,
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, **spec},
        "status": status,
    }


def part(
    pods: set[str],
    syscalls: dict[str, set[str]],
    ready: bool = True,
    uid: str = "u-1",
    degraded: tuple[DegradedPod, ...] = (),
) -> NodeRecording:
    # Through the wire format, as the controller reads what the agents publish.
    [parsed] = parse_node_recordings(
        build_node_recordings(
            [
                NodeRecording(
                    KEY,
                    uid,
                    ready,
                    frozenset(pods),
                    {c: frozenset(n) for c, n in syscalls.items()},
                    frozenset({"SCMP_ARCH_X86_64"}),
                    degraded,
                )
            ]
        )
    )
    return parsed


TWO_NODES = {
    "n1": [part({"shop/web-1"}, {"web": {"read", "openat"}, "side": {"nanosleep"}})],
    "n2": [part({"shop/web-2"}, {"web": {"read", "accept4"}})],
}


# -- merging -------------------------------------------------------------------------------------


def test_parts_from_two_nodes_merge_into_their_union() -> None:
    merged = merge(recording_view(body()), TWO_NODES)
    assert merged.syscalls == {
        "side": frozenset({"nanosleep"}),
        "web": frozenset({"read", "openat", "accept4"}),
    }
    assert merged.pods == {"shop/web-1", "shop/web-2"}
    assert merged.nodes == {"n1", "n2"}
    assert merged.syscalls_counted == 4


def test_a_part_of_an_earlier_recording_of_the_same_name_counts_for_nothing() -> None:
    parts = {**TWO_NODES, "n3": [part({"shop/old"}, {"web": {"mount"}}, uid="u-0")]}
    merged = merge(recording_view(body()), parts)
    assert "mount" not in merged.syscalls["web"]
    assert merged.nodes == {"n1", "n2"}


def test_only_the_named_containers_count() -> None:
    merged = merge(recording_view(body(containers=["web"])), TWO_NODES)
    assert set(merged.syscalls) == {"web"}


# -- the handler ---------------------------------------------------------------------------------


class Rig:
    def __init__(self, **spec: Any) -> None:
        self.writes = RecordedRecordingWrites()
        self.events = RecordedEvents()
        self.board = RecordingBoard()
        self.nodes = frozenset({"n1", "n2"})
        self.handler = RecordingHandler(
            self.board,
            asyncio.Event(),
            self.writes,
            self.events,
            nodes=lambda: self.nodes,
            now=lambda: NOW,
        )
        self.board.replace_recordings([])
        self.put(**spec)
        self.board.replace_parts(TWO_NODES)

    def put(self, **spec: Any) -> None:
        obj = body(**spec)
        self.board.put_recording(recording_view(obj), list(obj["metadata"]["finalizers"]))

    def status(self) -> dict[str, Any]:
        return self.writes.statuses[KEY]

    def reconcile_and_observe(self, **spec: Any) -> None:
        """A pass, then the watch showing the status it wrote (as the API server would)."""
        self.handler.reconcile()
        if KEY in self.writes.statuses:
            self.put(status=self.writes.statuses[KEY], **spec)


def test_an_active_recording_gets_the_finalizer_and_its_merged_status() -> None:
    rig = Rig(finalizers=[])
    rig.handler.reconcile()
    assert rig.writes.finalizers[KEY] == [FINALIZER]
    status = rig.status()
    assert status["phase"] == RECORDING
    assert (status["podsSeen"], status["nodesSeen"], status["syscallsCounted"]) == (2, 2, 4)
    assert status["containers"] == [
        {"name": "side", "syscalls": ["nanosleep"]},
        {"name": "web", "syscalls": ["accept4", "openat", "read"]},
    ]
    assert status["profiles"] == []
    assert rig.writes.profile_writes == []


def test_the_status_names_the_nodes_where_a_recorded_pod_cannot_start() -> None:
    rig = Rig()
    rig.handler.reconcile()
    [ready] = [c for c in rig.status()["conditions"] if c["type"] == "NodesReady"]
    assert ready["status"] == "True"
    rig.nodes = frozenset({"n1", "n2", "n3"})  # a node whose agent has not reported it ready
    rig.handler.reconcile()
    [ready] = [c for c in rig.status()["conditions"] if c["type"] == "NodesReady"]
    assert (ready["status"], ready["reason"]) == ("False", "NodesNotReady")
    assert "not ready on 1 of 3 node(s): n3" in ready["message"]


def test_a_status_already_right_is_not_written_again() -> None:
    rig = Rig()
    rig.reconcile_and_observe()
    rig.writes.statuses.clear()
    rig.handler.reconcile()
    assert rig.writes.statuses == {}


def test_stopping_writes_one_profile_per_container_with_the_union_and_what_runc_needs() -> None:
    rig = Rig(active=False, baseProfileName="runtime/default@moby-2026-06-30")
    rig.reconcile_and_observe(active=False, baseProfileName="runtime/default@moby-2026-06-30")
    assert sorted(rig.writes.profile_writes) == ["web-side", "web-web"]
    web = rig.writes.profiles[("shop", "web-web")]
    assert web["metadata"]["labels"] == {RECORDING_LABEL: "web"}
    spec = web["spec"]
    assert (spec["defaultAction"], spec["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 1)
    assert spec["baseProfileName"] == "runtime/default@moby-2026-06-30"
    [rule] = spec["syscalls"]
    assert rule["action"] == "SCMP_ACT_ALLOW"
    assert {"read", "openat", "accept4"} <= set(rule["names"])
    assert set(rule["names"]) >= NEVER_NOTIFIED
    assert {"execve", "capset", "close"} <= set(rule["names"])  # runc, after the filter
    assert "mount" not in rule["names"]
    status = rig.status()
    assert status["phase"] == COMPLETED
    assert status["profiles"] == ["web-side", "web-web"]
    # Written once per stop: another pass writes nothing more.
    rig.writes.profile_writes.clear()
    rig.handler.reconcile()
    assert rig.writes.profile_writes == []
    assert rig.writes.statuses[KEY]["phase"] == COMPLETED


def test_prefix_names_the_results() -> None:
    rig = Rig(active=False, profileNamePrefix="shop-front")
    rig.handler.reconcile()
    assert sorted(rig.writes.profile_writes) == ["shop-front-side", "shop-front-web"]


def test_an_existing_profile_the_recording_did_not_write_is_never_overwritten() -> None:
    rig = Rig(active=False)
    theirs = {"metadata": {"name": "web-web", "namespace": "shop"}, "spec": {"x": 1}}
    rig.writes.profiles[("shop", "web-web")] = theirs
    rig.reconcile_and_observe(active=False)
    assert rig.writes.profiles[("shop", "web-web")] is theirs
    assert rig.writes.profile_writes == ["web-side"]
    status = rig.status()
    assert status["phase"] == STOPPED
    [written] = [c for c in status["conditions"] if c["type"] == "ResultsWritten"]
    assert (written["status"], written["reason"]) == ("False", PROFILE_EXISTS)
    assert "web-web" in written["message"]
    assert rig.events.reasons(PROFILE_EXISTS) == ["shop/web"]
    # Settled for this stop: not retried (nor warned) on every pass.
    rig.handler.reconcile()
    assert rig.writes.profile_writes == ["web-side"]
    assert len(rig.events.warnings) == 1


def test_a_result_the_api_refuses_is_reported_and_not_retried() -> None:
    rig = Rig(active=False)
    rig.writes.refuse["web-web"] = "denied by the tenant policy"
    rig.reconcile_and_observe(active=False)
    [written] = [c for c in rig.status()["conditions"] if c["type"] == "ResultsWritten"]
    assert written["reason"] == RESULT_REFUSED
    assert "denied by the tenant policy" in written["message"]
    assert rig.events.reasons(RESULT_REFUSED) == ["shop/web"]


def test_deleting_writes_the_results_and_removes_the_finalizer() -> None:
    rig = Rig(deleting=True)
    rig.handler.reconcile()
    assert sorted(rig.writes.profile_writes) == ["web-side", "web-web"]
    assert rig.writes.finalizers[KEY] == []


def test_nothing_is_decided_before_the_nodes_parts_are_listed() -> None:
    """A controller that starts while a recording is being deleted must not write its results
    from nothing (and drop the finalizer) before the node reports are in."""
    rig = Rig(deleting=True)
    rig.board.parts_listed = False
    rig.handler.reconcile()
    assert rig.writes.profile_writes == [] and KEY not in rig.writes.finalizers
    rig.board.replace_parts(TWO_NODES)
    rig.handler.reconcile()
    assert sorted(rig.writes.profile_writes) == ["web-side", "web-web"]


def test_deleting_never_waits_for_a_result_refused_for_good() -> None:
    rig = Rig(deleting=True)
    rig.writes.refuse["web-web"] = "denied"
    rig.writes.profiles[("shop", "web-side")] = {"metadata": {"name": "web-side"}}
    rig.handler.reconcile()
    assert rig.writes.finalizers[KEY] == []


def test_a_recording_deleted_after_its_results_were_written_is_released_at_once() -> None:
    rig = Rig(active=False)
    rig.reconcile_and_observe(active=False)
    rig.writes.profile_writes.clear()
    rig.put(active=False, deleting=True, status=rig.status())
    rig.handler.reconcile()
    assert rig.writes.profile_writes == []
    assert rig.writes.finalizers[KEY] == []


def test_degraded_parts_make_the_phase_degraded_with_one_event_naming_the_pods() -> None:
    rig = Rig()
    cut = DegradedPod("shop/web-1", "web", "RecorderRestarted")
    rig.board.put_parts("n1", [part({"shop/web-1"}, {"web": {"read"}}, degraded=(cut,))])
    rig.reconcile_and_observe()
    status = rig.status()
    assert status["phase"] == DEGRADED
    [condition] = [c for c in status["conditions"] if c["type"] == "Degraded"]
    assert condition["status"] == "True" and "shop/web-1" in condition["message"]
    rig.handler.reconcile()
    [(where, _, reason, message)] = rig.events.warnings
    assert (where, reason) == ("shop/web", PODS_CUT_SHORT)
    assert "shop/web-1 container web on n1: RecorderRestarted" in message


# -- the gate ------------------------------------------------------------------------------------


def recording_pod(created: float) -> GatedPod:
    found = gated_pod(
        {
            "metadata": {"namespace": "shop", "name": "web-1", "uid": "p1"},
            "spec": {
                "schedulingGates": [{"name": GATE}],
                "containers": [
                    {
                        "name": "web",
                        "securityContext": {
                            "seccompProfile": {
                                "type": "Localhost",
                                "localhostProfile": recording_localhost_profile(KEY),
                            }
                        },
                    }
                ],
            },
        }
    )
    assert found is not None
    return GatedPod(**{**found.__dict__, "created": created})


def test_a_recording_pod_waits_until_its_node_reports_the_recording_ready() -> None:
    pod = recording_pod(0.0)
    assert pod.recordings == {KEY} and pod.profiles == frozenset()
    nodes = frozenset({"n1", "n2"})
    not_ready = ProfileReadiness(frozenset(), {"n1": "", "n2": ""}, None)
    assert isinstance(decide(pod, {}, nodes, 1.0, 60.0, {KEY: not_ready}), Wait)
    # After the grace period, still nowhere to go: it waits, and says why.
    waited = decide(pod, {}, nodes, 100.0, 60.0, {KEY: not_ready})
    assert isinstance(waited, Wait) and "SeccompProfileRecording shop/web" in str(waited.message)
    one = ProfileReadiness(frozenset({"n1"}), {"n2": ""}, None)
    assert decide(pod, {}, nodes, 100.0, 60.0, {KEY: one}) == Release(exclude=frozenset({"n2"}))
    both = ProfileReadiness(nodes, {}, None)
    assert decide(pod, {}, nodes, 1.0, 60.0, {KEY: both}) == Release()


def fakes_controller() -> tuple[Controller, RecordedPodGates, RecordedRecordingWrites]:
    pods = RecordedPodGates()
    writes = RecordedRecordingWrites()
    io = ControllerIO(
        RecordedProfileStatuses(),
        pods,
        PolicyContext,
        RecordedEvents(),
        RecordedEvents(),
        MemoryFleetConfigMap(),
        recordings=writes,
    )
    parser = argparse.ArgumentParser()
    add_controller_arguments(parser)
    settings = build_controller_settings(parser.parse_args(["--identity", "c-1"]), {})
    controller = build_controller(settings, client.ApiClient(client.Configuration()), io)
    controller.state.replace_nodes(["n1"])
    return controller, pods, writes


def test_the_controller_releases_a_recording_pod_once_the_agent_reports_ready() -> None:
    controller, pods, _ = fakes_controller()
    board = controller.recordings.board
    controller.state.replace_reports([NodeReport("n1", True, {}, {})])
    obj = body()
    board.replace_recordings([(recording_view(obj), [FINALIZER])])
    board.replace_parts({"n1": [part(set(), {}, ready=False)]})
    controller.state.replace_pods([recording_pod(time.time())])

    async def scenario() -> None:
        await controller.gates.reconcile(time.time())
        assert pods.released == {}
        board.put_parts("n1", [part(set(), {}, ready=True)])
        await controller.gates.reconcile(time.time())
        assert "shop/web-1" in pods.released

    asyncio.run(scenario())


def test_a_pod_of_a_missing_recording_waits_with_an_event() -> None:
    controller, pods, _ = fakes_controller()
    controller.state.replace_reports([NodeReport("n1", True, {}, {})])
    controller.recordings.board.replace_recordings([])
    controller.state.replace_pods([recording_pod(time.time())])

    async def scenario() -> None:
        await controller.gates.reconcile(time.time())
        assert pods.released == {}
        assert pods.events[0][2] == "SeccompProfileRecording shop/web: not found"

    asyncio.run(scenario())

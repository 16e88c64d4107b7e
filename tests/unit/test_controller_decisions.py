"""What the controller decides to write, with its writes going to the in-memory fakes beside the
real ones: the controller is made by its one builder, so the parts are wired as in production.
(That the writes reach the API is the integration tests' business.)"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from kubernetes import client

from agent.api.keys import ProfileKey
from agent.api.node_report import SHA_PREFIX, NodeReport
from agent.controller.fleet_publisher import MemoryFleetConfigMap
from agent.controller.gated_pods import GATE, GatedPod
from agent.controller.gates import EVENT_REASON
from agent.controller.main import Controller, ControllerIO, build_controller
from agent.controller.nodeless import EVENT_REASON as NODELESS
from agent.controller.nodeless import GRACE_SECONDS, NodelessReports
from agent.controller.pod_gates import RecordedPodGates
from agent.controller.profile_status import ProfileView
from agent.controller.profile_statuses import RecordedProfileStatuses
from agent.controller.settings import add_controller_arguments, build_controller_settings
from agent.profiles.tenancy.compliance import PolicyContext
from agent.runtime.events import RecordedEvents

WEB = ProfileKey("default", "web")
SHA = "a" * 64
VIEW = ProfileView(WEB, 1, SHA, uid="u-web")
NOT_YET = NodeReport("n1", True, {}, {})
INSTALLED = NodeReport("n1", True, {WEB: SHA[:SHA_PREFIX]}, {})


class Fakes:
    def __init__(self) -> None:
        self.statuses = RecordedProfileStatuses()
        self.pods = RecordedPodGates()
        self.report_events = RecordedEvents()
        self.io = ControllerIO(
            self.statuses,
            self.pods,
            PolicyContext,
            RecordedEvents(),
            self.report_events,
            MemoryFleetConfigMap(),
        )

    def controller(self) -> Controller:
        parser = argparse.ArgumentParser()
        add_controller_arguments(parser)
        settings = build_controller_settings(parser.parse_args(["--identity", "c-1"]), {})
        # The API client serves only the watches and the Lease, which no test here runs.
        controller = build_controller(settings, client.ApiClient(client.Configuration()), self.io)
        controller.state.replace_nodes(["n1"])  # the Node the reports below are about
        return controller


def app_pod(created: float, resource_version: str = "7") -> GatedPod:
    return GatedPod(
        namespace="default",
        name="app",
        uid="u-app",
        resource_version=resource_version,
        created=created,
        profiles=frozenset({WEB}),
        gates=(GATE,),
        affinity=None,
        pinned_nodes=None,
    )


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def until(probe: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def test_a_missing_profile_gets_one_event_and_the_pod_waits() -> None:
    fakes = Fakes()
    controller = fakes.controller()
    controller.state.replace_reports([NOT_YET])
    controller.state.replace_pods([app_pod(time.time())])

    async def scenario() -> None:
        for _ in range(3):
            await controller.gates.reconcile(time.time())
        assert fakes.pods.events == [
            ("default/app", EVENT_REASON, "SeccompProfile default/web: not found")
        ]
        assert fakes.pods.released == {}
        assert controller.gates.waiting_counts() == {WEB: 1}

    run(scenario)


def test_a_pod_that_changed_since_the_decision_is_not_released_on_the_old_version() -> None:
    fakes = Fakes()
    controller = fakes.controller()
    controller.state.replace_profiles([VIEW])
    controller.state.replace_reports([INSTALLED])
    controller.state.replace_pods([app_pod(time.time())])
    fakes.pods.changed.add("default/app")

    async def scenario() -> None:
        await controller.gates.reconcile(time.time())
        assert fakes.pods.released == {}
        assert controller.gates.waiting_counts() == {WEB: 1}
        fakes.pods.changed.clear()
        controller.state.put_pod(app_pod(time.time(), resource_version="8"))
        await controller.gates.reconcile(time.time())
        assert fakes.pods.released["default/app"][0]["value"] == "8"
        assert controller.gates.waiting_counts() == {}

    run(scenario)


def test_the_waiting_pods_show_in_the_status_until_the_profile_is_ready() -> None:
    """The gate handler's count reaches the status aggregator through the builder's wiring."""
    fakes = Fakes()
    controller = fakes.controller()
    state = controller.state
    state.replace_profiles([VIEW])
    state.replace_reports([NOT_YET])
    state.replace_pods([app_pod(time.time())])

    def status() -> dict[str, Any]:
        return fakes.statuses.statuses.get(WEB, {})

    async def scenario() -> None:
        parts = [
            asyncio.create_task(controller.aggregator.run()),
            asyncio.create_task(controller.gates.run()),
        ]
        try:
            await until(lambda: status().get("waitingPods") == 1, "one pod waiting, in the status")
            assert status()["state"] == "Pending"
            state.put_report(INSTALLED)
            await until(lambda: "default/app" in fakes.pods.released, "the pod released")
            state.drop_pod("u-app")  # as the watch shows it once the gate is gone
            await until(lambda: status().get("waitingPods") == 0, "no pod waiting")
            assert status()["state"] == "Installed"
        finally:
            for task in parts:
                task.cancel()
            await asyncio.gather(*parts, return_exceptions=True)

    run(scenario)


def test_a_status_already_right_is_not_written_again() -> None:
    """Not on a recount, and not by a new leader that reads the statuses as they are."""
    fakes = Fakes()

    async def lead(controller: Controller, seconds: float) -> None:
        task = asyncio.create_task(controller.aggregator.run())
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def scenario() -> None:
        first = fakes.controller()
        first.state.replace_profiles([VIEW])
        first.state.replace_reports([INSTALLED])
        task = asyncio.create_task(first.aggregator.run())
        await until(lambda: fakes.statuses.writes == [WEB], "the first status")
        first.state.replace_reports([INSTALLED])  # a relisting: every profile is counted again
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert fakes.statuses.writes == [WEB]
        second = fakes.controller()
        second.state.replace_profiles([VIEW])
        second.state.replace_reports([INSTALLED])
        await lead(second, 1.0)
        assert fakes.statuses.writes == [WEB]

    run(scenario)


GHOST = NodeReport("ghost", True, {}, {}, uid="u-ghost")  # a report whose Node does not exist


def test_a_report_without_a_node_neither_holds_a_pod_nor_lowers_ready() -> None:
    fakes = Fakes()
    controller = fakes.controller()  # Node n1 exists; there is no Node "ghost"
    state = controller.state
    state.replace_profiles([VIEW])
    state.replace_reports([INSTALLED, GHOST])
    state.replace_pods([app_pod(time.time())])

    async def scenario() -> None:
        task = asyncio.create_task(controller.aggregator.run())
        try:
            await controller.gates.reconcile(time.time())
            assert fakes.pods.released["default/app"]  # not held for the ghost
            await until(lambda: WEB in fakes.statuses.statuses, "the status")
            assert fakes.statuses.statuses[WEB]["readyNodes"] == "1/1"
            state.put_node("ghost")  # its Node appears: it counts from now on
            await until(
                lambda: fakes.statuses.statuses[WEB]["readyNodes"] == "1/2", "ghost counted"
            )
            state.drop_node("ghost")
            await until(
                lambda: fakes.statuses.statuses[WEB]["readyNodes"] == "1/1", "ghost left out"
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(scenario)


def test_a_report_without_a_node_is_warned_of_once_after_the_grace_period() -> None:
    fakes = Fakes()
    controller = fakes.controller()
    state = controller.state
    state.replace_reports([INSTALLED, GHOST])
    nodeless = NodelessReports(state, fakes.report_events, controller.metrics)
    assert nodeless.check(100.0) == []  # its Node may just be on its way
    assert nodeless.check(100.0 + GRACE_SECONDS) == ["ghost"]
    for later in (200.0, 300.0):
        assert nodeless.check(later) == []  # once, not per pass
    assert fakes.report_events.reasons(NODELESS) == ["/ghost"]
    assert "kubectl delete seccompnodestatus ghost" in fakes.report_events.warnings[0][3]
    assert fakes.report_events.warnings[0][1] == "u-ghost"
    gauge = controller.metrics.registry.get_sample_value("seccomp_sync_nodeless_reports")
    assert gauge == 1.0
    state.put_node("ghost")
    assert nodeless.check(400.0) == []
    assert controller.metrics.registry.get_sample_value("seccomp_sync_nodeless_reports") == 0.0

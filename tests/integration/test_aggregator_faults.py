"""The status aggregator against a control plane that goes away: no write is lost, and a failure
where it cannot go on ends its run (so the elector steps down) instead of hanging."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from agent.api.keys import ProfileKey
from agent.api.node_report import SHA_PREFIX, NodeReport
from agent.controller.aggregator import PARALLEL_WRITES, RECOUNT_CHUNK, ProfileStatuses
from agent.controller.main import api_io
from agent.controller.profiles import profile_view
from agent.kube.client import load_configuration
from agent.runtime.waiting import within
from tests.cluster.pytest_plugin import Cluster
from tests.integration.conftest import apply_profile, profile_object
from tests.integration.controller import controller_parts
from tests.integration.profiles import DENY_MKDIR

pytestmark = pytest.mark.cluster


def api_for(cluster: Cluster) -> client.ApiClient:
    configuration = load_configuration(cluster.kubeconfig)
    configuration.retries = 0  # as the controller configures its client
    return client.ApiClient(configuration)


class RecordingStatuses:
    """The real status writes, and the key of each one in order."""

    def __init__(self, real: ProfileStatuses) -> None:
        self.real = real
        self.written: list[ProfileKey] = []

    def current(self) -> dict[ProfileKey, dict[str, Any]]:
        return self.real.current()

    def write(self, key: ProfileKey, status: dict[str, Any]) -> bool:
        self.written.append(key)
        return self.real.write(key, status)


async def until(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(probe):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


def test_a_status_write_during_an_outage_is_made_once_the_api_is_back(
    crd: Cluster, namespace: str
) -> None:
    apply_profile(crd, namespace, "web", DENY_MKDIR)
    body = json.loads(crd.kubectl("get", "scmp", "web", "-n", namespace, "-o", "json").stdout)
    view = profile_view(body)
    assert view.expected_sha is not None
    key = ProfileKey(namespace, "web")
    controller = controller_parts(api_for(crd))
    state = controller.state
    state.replace_profiles([view])
    state.replace_nodes(["n1"])  # no watch runs here: the Node the report is about
    state.replace_reports([NodeReport("n1", True, {key: view.expected_sha[:SHA_PREFIX]}, {})])

    def state_is(expected: str) -> Callable[[], bool]:
        def probe() -> bool:
            result = crd.kubectl("get", "scmp", "web", "-n", namespace, "-o", "json", check=False)
            if result.returncode != 0:
                return False
            return bool(json.loads(result.stdout).get("status", {}).get("state") == expected)

        return probe

    async def scenario() -> None:
        task = asyncio.create_task(controller.aggregator.run())
        await until(state_is("Installed"), 20, "status Installed")
        await asyncio.to_thread(crd.stop)
        try:
            # The node lost the file while the API is down: the write fails and is retried.
            state.put_report(NodeReport("n1", True, {}, {}))
            await asyncio.sleep(3)
            assert not task.done(), "a failed write must not end the aggregator"
        finally:
            await asyncio.to_thread(crd.up)
        await until(state_is("Pending"), 30, "the new status written after the outage")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())


def test_an_unreachable_api_at_start_ends_the_run_promptly(crd: Cluster, namespace: str) -> None:
    """A new leader first reads the current statuses; if it cannot, `run()` raises (within the
    request timeout) so that the elector steps down, rather than leading without working."""
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:9"  # discard port: nothing listens
    configuration.verify_ssl = False
    configuration.retries = 0
    controller = controller_parts(client.ApiClient(configuration))
    controller.state.replace_profiles([profile_view(profile_object(namespace, "web", DENY_MKDIR))])

    async def scenario() -> None:
        aggregator = controller.aggregator
        started = time.monotonic()
        with pytest.raises(Exception, match=r"(?i)refused|connect"):
            await within(aggregator.run(), 15)
        assert time.monotonic() - started < 12

    asyncio.run(scenario())


def test_a_new_profile_is_written_before_a_recount_of_every_profile_ends(
    crd: Cluster, namespace: str
) -> None:
    """A node that joins changes every profile's `nodesExpected`; with thousands of profiles
    that recount takes a while, and a profile created meanwhile must not wait for all of it."""
    count = 1500  # never created: their status writes answer 404 at once
    api = api_for(crd)
    io = api_io(api, "test-controller", namespace)
    recording = RecordingStatuses(io.statuses)
    controller = controller_parts(api, dataclasses.replace(io, statuses=recording))
    state = controller.state
    state.replace_profiles(
        profile_view(profile_object(namespace, f"p{i:04d}", DENY_MKDIR)) for i in range(count)
    )
    state.replace_nodes(["n1", "n2"])  # no watch runs here: the Nodes the reports are about
    state.replace_reports([NodeReport("n1", True, {}, {})])
    apply_profile(crd, namespace, "zz-new", DENY_MKDIR)
    got = crd.kubectl("get", "scmp", "zz-new", "-n", namespace, "-o", "json")
    new_body = json.loads(got.stdout)
    new_key = ProfileKey(namespace, "zz-new")
    written = recording.written

    async def scenario() -> tuple[int, int]:
        task = asyncio.create_task(controller.aggregator.run())
        try:
            await until(lambda: len(written) >= count, 60, "the first pass")
            await asyncio.sleep(1)
            state.put_report(NodeReport("n2", True, {}, {}))  # a node joined: recount all
            recount_start = len(written)
            await until(lambda: len(written) >= recount_start + 100, 60, "the recount under way")
            added_at = len(written)
            state.put_profile(profile_view(new_body))
            await until(lambda: new_key in written, 60, "the new profile's status")
            await until(lambda: len(written) >= recount_start + count + 1, 60, "the recount")
            return written.index(new_key) - added_at, len(written) - recount_start
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    waited_behind, recount_writes = asyncio.run(scenario())
    # At most the chunk in progress (and the writes already in flight) goes before it.
    assert waited_behind <= RECOUNT_CHUNK + PARALLEL_WRITES, waited_behind
    assert recount_writes >= count + 1  # and the recount still covers every profile
    status = json.loads(crd.kubectl("get", "scmp", "zz-new", "-n", namespace, "-o", "json").stdout)
    assert status["status"]["nodesExpected"] == 2

"""The elector against the real API server, and against an API that refuses or never answers.

In-process (asyncio), with the real client: no mocked API. The periods are short (lease 4 s,
renew deadline 3 s, retry 0.5 s) with the relation production uses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest
from kubernetes import client

from agent.kube.client import load_configuration
from agent.kube.leader import LeaderElector, LeadError
from tests.cluster.pytest_plugin import Cluster

pytestmark = pytest.mark.cluster

PERIODS = {
    "lease_seconds": 4.0,
    "renew_deadline": 3.0,
    "retry_seconds": 0.5,
}
# Each Lease request's timeout: half the renew deadline, as the elector derives it.
REQUEST_TIMEOUT = PERIODS["renew_deadline"] / 2


class Replica:
    """One elector and what it saw: every change of its leader gauge, and its work running."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        lease: str,
        work: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.changes: list[bool] = []
        self.working = False

        async def lead() -> None:
            self.working = True
            try:
                if work is not None:
                    await work()
                else:
                    await asyncio.Event().wait()
            finally:
                self.working = False

        self.elector = LeaderElector(
            api,
            namespace,
            lease,
            f"replica-{uuid.uuid4().hex[:6]}",
            lead,
            on_change=self.changes.append,
            **PERIODS,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Replica:
        self.task = asyncio.create_task(self.elector.run())
        return self

    @property
    def leading(self) -> bool:
        return self.elector.leading

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def until(probe: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds it took for `probe` to hold."""
    start = time.monotonic()
    while not probe():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def lease(crd: Cluster, namespace: str) -> Iterator[tuple[client.ApiClient, str, str]]:
    configuration = load_configuration(crd.kubeconfig)
    configuration.retries = 0  # as the controller configures its client
    api = client.ApiClient(configuration)
    yield api, namespace, f"lease-{uuid.uuid4().hex[:6]}"
    api.close()  # type: ignore[no-untyped-call]


def test_one_leader_among_contenders(lease: tuple[client.ApiClient, str, str]) -> None:
    """Three replicas race for one Lease (409s included): never two leaders at once."""

    async def scenario() -> None:
        replicas = [Replica(*lease).start() for _ in range(3)]
        await until(lambda: any(r.leading for r in replicas), 10, "a leader")
        for _ in range(60):
            assert sum(r.working for r in replicas) <= 1
            assert sum(r.leading for r in replicas) == 1
            await asyncio.sleep(0.05)
        for replica in replicas:
            await replica.stop()

    asyncio.run(scenario())


def test_failed_work_steps_down_and_the_other_replica_takes_over(
    lease: tuple[client.ApiClient, str, str],
) -> None:
    """The led work (the aggregator) raises: its replica's gauge drops to 0, it releases the
    Lease and raises for its supervisor, and the standby leads well before the Lease expires."""

    async def scenario() -> None:
        fail = asyncio.Event()

        async def failing_work() -> None:
            await fail.wait()
            raise RuntimeError("aggregator broke")

        first = Replica(*lease, work=failing_work).start()
        await until(lambda: first.working, 10, "the first replica leading")
        standby = Replica(*lease).start()
        await asyncio.sleep(1.0)
        assert not standby.leading
        fail.set()
        took = await until(lambda: standby.working, 10, "the standby taking over")
        assert took < PERIODS["lease_seconds"], "the failed leader did not release the Lease"
        assert first.task is not None
        with pytest.raises(LeadError, match="aggregator broke"):
            await first.task
        assert first.changes == [True, False]
        assert not first.working
        await standby.stop()

    asyncio.run(scenario())


def test_a_stopped_leader_hands_the_lease_over_at_once(
    lease: tuple[client.ApiClient, str, str],
) -> None:
    """SIGTERM (the task cancelled) releases the Lease: the standby need not wait for it to
    expire."""

    async def scenario() -> None:
        first = Replica(*lease).start()
        await until(lambda: first.working, 10, "the first replica leading")
        standby = Replica(*lease).start()
        await asyncio.sleep(1.0)
        await first.stop()
        took = await until(lambda: standby.working, 10, "the standby taking over")
        assert took < PERIODS["lease_seconds"]
        assert first.changes == [True, False]
        await standby.stop()

    asyncio.run(scenario())


def test_a_holder_with_a_skewed_clock_loses_the_lease_by_our_clock(
    lease: tuple[client.ApiClient, str, str],
) -> None:
    """A dead holder wrote a renewTime an hour ahead (its clock was wrong). Expiry is judged
    from when this replica saw the record last change: it takes over after one lease period."""
    api, namespace, name = lease
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    client.CoordinationV1Api(api).create_namespaced_lease(
        namespace,
        client.V1Lease(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1LeaseSpec(
                holder_identity="ghost",
                lease_duration_seconds=2,
                acquire_time=future,
                renew_time=future,
            ),
        ),
    )

    async def scenario() -> None:
        replica = Replica(*lease).start()
        took = await until(lambda: replica.working, 10, "taking over the ghost's Lease")
        assert 2.0 <= took < 5.0
        await replica.stop()

    asyncio.run(scenario())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_at(port: int) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = f"https://127.0.0.1:{port}"
    configuration.verify_ssl = False
    configuration.retries = 0  # as the controller configures its client
    return client.ApiClient(configuration)


def test_connection_refused_never_leads_and_keeps_trying(caplog: pytest.LogCaptureFixture) -> None:
    """No API server at all: the elector never leads, never dies, and keeps asking."""
    caplog.set_level(logging.WARNING, logger="agent.kube.leader")

    async def scenario() -> None:
        replica = Replica(api_at(closed_port()), "default", "lease").start()
        await asyncio.sleep(2.5)
        assert replica.task is not None and not replica.task.done()
        assert replica.changes == []
        await replica.stop()

    asyncio.run(scenario())
    failures = [r for r in caplog.records if r.getMessage() == "lease request failed"]
    assert len(failures) >= 3, [r.__dict__.get("error") for r in failures]
    assert "Connection refused" in str(failures[0].__dict__.get("error"))


def test_an_api_that_never_answers_times_out_each_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that accepts connections and says nothing (a hung API server, a black-holed
    route): each request ends at its timeout instead of blocking the elector forever."""
    caplog.set_level(logging.WARNING, logger="agent.kube.leader")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]

        async def scenario() -> None:
            replica = Replica(api_at(port), "default", "lease").start()
            await asyncio.sleep(4.5)
            assert replica.changes == []
            await replica.stop()

        asyncio.run(scenario())
    failures = [r for r in caplog.records if r.getMessage() == "lease request failed"]
    # Each round: a 1.5 s timeout plus a 0.5 s retry; a hung first call would give zero.
    assert len(failures) >= 2
    assert all("timed out" in str(r.__dict__.get("error")).lower() for r in failures), [
        r.__dict__.get("error") for r in failures
    ]


def test_control_plane_outage_steps_down_then_leads_again(
    crd: Cluster, lease: tuple[client.ApiClient, str, str]
) -> None:
    """The leader cannot renew while the control plane is down: within the renew deadline it
    stops its work and its gauge drops to 0 (it must not act on a Lease another replica may
    take); once the API is back it leads again."""

    async def scenario() -> None:
        replica = Replica(*lease).start()
        await until(lambda: replica.working, 10, "leading")
        await asyncio.to_thread(crd.stop)
        down = PERIODS["renew_deadline"] + PERIODS["retry_seconds"] + 2 * REQUEST_TIMEOUT + 2
        # The renew deadline bounds this; stopping the control plane itself takes a while on a
        # loaded machine, so the wait is generous: what must hold is that it steps down while
        # the API is away, not how fast this machine is.
        await until(lambda: not replica.working, down + 30, "stepping down during the outage")
        assert replica.changes == [True, False]
        await asyncio.to_thread(crd.up)
        await until(lambda: replica.working, 30, "leading again after the outage")
        assert replica.changes == [True, False, True]
        await replica.stop()

    try:
        asyncio.run(scenario())
    finally:
        crd.up()

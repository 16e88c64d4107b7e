"""The controller's watches against the real API server: objects arrive as the plain JSON the
server sent, not as the client's models (building those cost a millisecond a pod)."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client

from agent.kube.list_watch import RawWatch
from tests.cluster.pytest_plugin import Cluster

pytestmark = pytest.mark.cluster


def test_watched_objects_arrive_as_plain_json(crd: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(crd.api_client())
    version = core.list_namespaced_config_map(namespace).metadata.resource_version
    body = {"metadata": {"name": "seen"}, "data": {"key": "value"}}
    threading.Timer(0.5, core.create_namespaced_config_map, (namespace, body)).start()
    events = RawWatch().stream(  # type: ignore[no-untyped-call]
        core.list_namespaced_config_map,
        namespace,
        resource_version=version,
        timeout_seconds=10,
        _request_timeout=(5, 20),
    )
    event = next(e for e in events if e["object"]["metadata"]["name"] == "seen")
    assert event["type"] == "ADDED"
    assert type(event["object"]) is dict
    assert event["object"]["data"] == {"key": "value"}

"""Fixtures for tests on real nodes: the CRDs, a namespace per test, the agent image on the node."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.cluster.pytest_plugin import Cluster
from tests.integration.crds import install_crds
from tests.node.pytest_plugin import AgentImage, Node


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> Cluster:
    return install_crds(cluster)


@pytest.fixture
def namespace(crd: Cluster) -> Iterator[str]:
    name = f"e-{uuid.uuid4().hex[:10]}"
    crd.kubectl("create", "namespace", name)
    yield name
    crd.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def node_with_image(node: Node, agent_image: AgentImage) -> Node:
    """The session's node with the agent image imported (once: about 20 s)."""
    node.import_image(agent_image.archive)
    return node

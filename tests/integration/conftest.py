"""Fixtures for tests against the real control plane: the CRD, a namespace per test, agents."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.pytest_plugin import Cluster
from tests.integration.crds import install_crds


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> Cluster:
    """The control plane with our CRDs applied and Established."""
    return install_crds(cluster)


@pytest.fixture
def namespace(crd: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    crd.kubectl("create", "namespace", name)
    yield name
    crd.kubectl("delete", "namespace", name, "--wait=false", check=False)


REPLACE_ATTEMPTS = 5


def profile_object(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def apply_profile(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(profile_object(namespace, name, spec)))


def replace_profile(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    """Replace the whole spec (apply would merge lists with the previous apply).

    `kubectl replace` reads the object's resourceVersion and then writes; a status write by the
    controller in between makes the server answer Conflict, and a person would run it again."""
    body = json.dumps(profile_object(namespace, name, spec))
    for _ in range(REPLACE_ATTEMPTS - 1):
        result = cluster.kubectl("replace", "-f", "-", input=body, check=False)
        if result.returncode == 0:
            return
        if "Conflict" not in result.stderr:
            break
    cluster.kubectl("replace", "-f", "-", input=body)


def delete_profile(cluster: Cluster, namespace: str, name: str) -> None:
    cluster.kubectl("delete", "seccompprofile", name, "-n", namespace, "--wait=true")

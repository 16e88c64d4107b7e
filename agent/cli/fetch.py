"""Read SeccompProfiles from a cluster for the CLI (`seccomp-agent render --kubeconfig`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kubernetes import client

from agent.api.model import API_GROUP, API_VERSION, KIND, PLURAL
from agent.kube.client import load_configuration
from agent.kube.pager import list_items


def fetch_profiles(kubeconfig: Path | None, namespaces: Iterable[str]) -> list[dict[str, Any]]:
    """Every SeccompProfile object in `namespaces`, as plain data."""
    configuration = load_configuration(kubeconfig)
    objects: list[dict[str, Any]] = []
    with client.ApiClient(configuration) as api:
        custom = client.CustomObjectsApi(api)
        for namespace in sorted(set(namespaces)):
            listing = list_items(
                custom.list_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURAL
            )
            # The API server omits these on list items; validation wants them.
            objects += [
                {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, **item}
                for item in listing
            ]
    return objects

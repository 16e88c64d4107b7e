"""Read SeccompProfiles from a cluster for the CLI (`seccomp-agent render --kubeconfig`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from kubernetes import client

from agent.api.model import API_GROUP, API_VERSION, PLURAL
from agent.kube.client import load_configuration

PAGE_SIZE: Final = 500
REQUEST_TIMEOUT_SECONDS: Final = 30


def fetch_profiles(kubeconfig: Path | None, namespaces: Iterable[str]) -> list[dict[str, Any]]:
    """Every SeccompProfile object in `namespaces`, as plain data."""
    configuration = load_configuration(kubeconfig)
    objects: list[dict[str, Any]] = []
    with client.ApiClient(configuration) as api:
        custom = client.CustomObjectsApi(api)
        for namespace in sorted(set(namespaces)):
            token: str | None = None
            while True:
                page: Any = custom.list_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    limit=PAGE_SIZE,
                    _continue=token,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
                for item in page.get("items", []):
                    # The API server omits these on list items; validation wants them.
                    objects.append({"apiVersion": f"{API_GROUP}/{API_VERSION}", **item})
                    objects[-1].setdefault("kind", "SeccompProfile")
                token = page.get("metadata", {}).get("continue") or None
                if token is None:
                    break
    return objects

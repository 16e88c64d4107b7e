"""A complete, paginated listing of SeccompProfiles: used to confirm deletions after a watch
had to restart, when a DELETED event may have been lost with the old stream."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubernetes import client

from agent.catalog import ProfileKey
from agent.model import API_GROUP, API_VERSION, PLURAL

PAGE_SIZE = 500


def list_profile_keys(api: client.ApiClient, namespaces: Iterable[str]) -> set[ProfileKey]:
    """Every SeccompProfile in `namespaces` (all namespaces when empty)."""
    custom = client.CustomObjectsApi(api)
    scopes: list[str | None] = [*namespaces] or [None]
    keys: set[ProfileKey] = set()
    for namespace in scopes:
        token: str | None = None
        while True:
            page: Any
            if namespace is None:
                page = custom.list_cluster_custom_object(
                    API_GROUP, API_VERSION, PLURAL, limit=PAGE_SIZE, _continue=token
                )
            else:
                page = custom.list_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, PLURAL, limit=PAGE_SIZE, _continue=token
                )
            for item in page.get("items", []):
                meta = item["metadata"]
                keys.add(ProfileKey(meta["namespace"], meta["name"]))
            token = page.get("metadata", {}).get("continue") or None
            if token is None:
                break
    return keys

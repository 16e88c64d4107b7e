"""Complete, paginated listings: the SeccompProfiles that exist (for the initial sync, and to
confirm deletions after a watch restart) and the profiles this node's pods use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubernetes import client

from agent.catalog import ProfileKey
from agent.model import API_GROUP, API_VERSION, PLURAL
from agent.pod_refs import profiles_used_by

PAGE_SIZE = 500
# Only the keys are needed: ask for metadata alone, so a listing's size does not grow with the
# profiles' specs (an object can be 1.5 MB; 500 of them in one page would be 750 MB of JSON).
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
REQUEST_TIMEOUT_SECONDS = 30


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
                    API_GROUP,
                    API_VERSION,
                    PLURAL,
                    limit=PAGE_SIZE,
                    _continue=token,
                    _headers=METADATA_ONLY,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
            else:
                page = custom.list_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    limit=PAGE_SIZE,
                    _continue=token,
                    _headers=METADATA_ONLY,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
            for item in page.get("items") or []:  # null in an empty metadata list
                meta = item["metadata"]
                keys.add(ProfileKey(meta["namespace"], meta["name"]))
            token = page.get("metadata", {}).get("continue") or None
            if token is None:
                break
    return keys


def list_pinned_profiles(api: client.ApiClient, node_name: str) -> frozenset[ProfileKey]:
    """Profiles that pods on this node use (their containers may restart with them)."""
    core = client.CoreV1Api(api)
    pinned: set[ProfileKey] = set()
    token: str | None = None
    while True:
        page = core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node_name}", limit=PAGE_SIZE, _continue=token
        )
        for pod in page.items:
            pinned |= profiles_used_by(api.sanitize_for_serialization(pod))  # type: ignore[no-untyped-call]
        token = (page.metadata._continue if page.metadata else None) or None
        if token is None:
            return frozenset(pinned)

"""Complete, paginated listings, and single reads: the SeccompProfiles that exist (for the
initial sync and the periodic resync) and the profiles this node's pods use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.api.keys import ProfileKey
from agent.api.model import API_GROUP, API_VERSION, PLURAL
from agent.api.pod_refs import profiles_used_by
from agent.kube.client import REQUEST_TIMEOUT
from agent.node.resync import PodRefs
from agent.node.worker import ObjectVersion

PAGE_SIZE = 500
# Only the keys are needed: ask for metadata alone, so a listing's size does not grow with the
# profiles' specs (an object can be 1.5 MB; 500 of them in one page would be 750 MB of JSON).
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}


def list_profile_versions(
    api: client.ApiClient, namespaces: Iterable[str]
) -> dict[ProfileKey, ObjectVersion]:
    """Every SeccompProfile in `namespaces` (all namespaces when empty), with uid and
    resourceVersion. Page by page, keeping only metadata: memory stays flat at any size."""
    custom = client.CustomObjectsApi(api)
    scopes: list[str | None] = [*namespaces] or [None]
    versions: dict[ProfileKey, ObjectVersion] = {}
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
                    _request_timeout=REQUEST_TIMEOUT,
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
                    _request_timeout=REQUEST_TIMEOUT,
                )
            for item in page.get("items") or []:  # null in an empty metadata list
                meta = item["metadata"]
                key = ProfileKey(meta["namespace"], meta["name"])
                versions[key] = ObjectVersion(meta.get("uid", ""), meta.get("resourceVersion", ""))
            token = page.get("metadata", {}).get("continue") or None
            if token is None:
                break
    return versions


def get_profile(api: client.ApiClient, key: ProfileKey) -> dict[str, Any] | None:
    """One SeccompProfile, or None if it does not exist (any more)."""
    custom = client.CustomObjectsApi(api)
    try:
        body: Any = custom.get_namespaced_custom_object(
            API_GROUP,
            API_VERSION,
            key.namespace,
            PLURAL,
            key.name,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(body)


def list_pod_profiles(api: client.ApiClient, node_name: str) -> PodRefs:
    """The pods on this node that use seccomp-sync profiles, by uid (their containers may
    restart with them)."""
    core = client.CoreV1Api(api)
    pods: PodRefs = {}
    token: str | None = None
    while True:
        page = core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={node_name}",
            limit=PAGE_SIZE,
            _continue=token,
            _request_timeout=REQUEST_TIMEOUT,
        )
        for pod in page.items:
            refs = profiles_used_by(api.sanitize_for_serialization(pod))  # type: ignore[no-untyped-call]
            if refs and pod.metadata is not None:
                pods[str(pod.metadata.uid)] = refs
        token = (page.metadata._continue if page.metadata else None) or None
        if token is None:
            return pods

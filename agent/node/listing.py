"""Complete, paged listings (`agent.kube.pager`), and single reads: the SeccompProfiles that
exist (for the initial sync and the periodic resync) and the profiles this node's pods use."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.api.keys import ProfileKey, profile_key
from agent.api.model import API_GROUP, API_VERSION, PLURAL
from agent.api.pod_refs import profiles_used_by
from agent.kube.client import REQUEST_TIMEOUT
from agent.kube.pager import METADATA_ONLY, list_items
from agent.node.resync import PodRefs
from agent.node.worker import ObjectVersion


def list_profile_versions(
    api: client.ApiClient, namespaces: Iterable[str]
) -> dict[ProfileKey, ObjectVersion]:
    """Every SeccompProfile in `namespaces` (all namespaces when empty), with uid and
    resourceVersion. Page by page, keeping only metadata: memory stays flat at any size."""
    versions: dict[ProfileKey, ObjectVersion] = {}
    for list_call in profile_list_calls(api, namespaces):
        for item in list_items(list_call, _headers=METADATA_ONLY):
            meta = item["metadata"]
            versions[profile_key(item)] = ObjectVersion(
                meta.get("uid", ""), meta.get("resourceVersion", "")
            )
    return versions


def profile_list_calls(
    api: client.ApiClient, namespaces: Iterable[str]
) -> list[Callable[..., Any]]:
    """The list call of SeccompProfiles per namespace in `namespaces`, or one for all of them
    (when empty): for listing, and for watching from a listing's version."""
    custom = client.CustomObjectsApi(api)
    return [
        functools.partial(
            custom.list_namespaced_custom_object, API_GROUP, API_VERSION, namespace, PLURAL
        )
        for namespace in namespaces
    ] or [functools.partial(custom.list_cluster_custom_object, API_GROUP, API_VERSION, PLURAL)]


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
    pods: PodRefs = {}
    listing = list_items(
        client.CoreV1Api(api).list_pod_for_all_namespaces,
        field_selector=f"spec.nodeName={node_name}",
    )
    for pod in listing:
        refs = profiles_used_by(pod)
        uid = (pod.get("metadata") or {}).get("uid")
        if refs and uid:
            pods[str(uid)] = refs
    return pods

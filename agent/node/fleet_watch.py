"""The watch of the one ConfigMap the controller publishes its fleet digests in.

Exactly one object, by a field selector on its name: the agent's Role grants get, list and
watch on that name alone (RBAC's resourceNames authorises a list or watch only when it selects
`metadata.name` like this).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client

from agent.api.fleet_digest import FLEET_CONFIGMAP
from agent.kube.list_watch import ListWatch

OnData = Callable[[Mapping[str, Any] | None], None]


def fleet_watch(api: client.ApiClient, namespace: str, on_data: OnData) -> ListWatch:
    """`on_data(data)` on the loop for each listing and event (None: no such ConfigMap)."""

    def listed(items: list[Mapping[str, Any] | None]) -> None:
        on_data(items[0] if items else None)

    def event(kind: str, data: Mapping[str, Any] | None) -> None:
        on_data(None if kind == "DELETED" else data)

    return ListWatch(
        "fleet-digests",
        functools.partial(client.CoreV1Api(api).list_namespaced_config_map, namespace),
        on_list=listed,
        on_event=event,
        field_selector=f"metadata.name={FLEET_CONFIGMAP}",
        transform=_data,
    )


def _data(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("data") or {}

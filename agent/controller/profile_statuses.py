"""Where the aggregator reads and writes SeccompProfile statuses (`aggregator.ProfileStatuses`):
the API, or an in-memory fake for tests of what it decides to write."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.api.keys import ProfileKey, profile_key
from agent.api.model import API_GROUP, API_VERSION, PLURAL
from agent.kube.client import REQUEST_TIMEOUT
from agent.kube.pager import list_items


class ApiProfileStatuses:
    def __init__(self, api: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api)

    def current(self) -> dict[ProfileKey, dict[str, Any]]:
        listing = list_items(
            self._custom.list_cluster_custom_object, API_GROUP, API_VERSION, PLURAL
        )
        return {profile_key(item): item.get("status") or {} for item in listing}

    def write(self, key: ProfileKey, status: dict[str, Any]) -> bool:
        try:
            self._custom.patch_namespaced_custom_object_status(
                API_GROUP,
                API_VERSION,
                key.namespace,
                PLURAL,
                key.name,
                {"status": status},
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 404:  # deleted meanwhile: nothing to report on
                return False
            raise
        return True


@dataclass
class RecordedProfileStatuses:
    """The fake: statuses in a dict, and the key of every write in order."""

    statuses: dict[ProfileKey, dict[str, Any]] = field(default_factory=dict)
    writes: list[ProfileKey] = field(default_factory=list)

    def current(self) -> dict[ProfileKey, dict[str, Any]]:
        return dict(self.statuses)

    def write(self, key: ProfileKey, status: dict[str, Any]) -> bool:
        self.writes.append(key)
        self.statuses[key] = status
        return True

"""The recording handler's I/O (`recording_handler.RecordingWrites`): the recording's finalizer
and status, its results (SeccompProfiles), through the API; and an in-memory fake beside it for
tests of what the handler decides."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.api.keys import ProfileKey
from agent.api.model import API_GROUP, API_VERSION, PLURAL
from agent.api.recording import RECORDING_PLURAL
from agent.controller.recordings import FINALIZER, RecordingView, ResultRefusedError
from agent.kube.client import REQUEST_TIMEOUT

log = logging.getLogger(__name__)


class ApiRecordingWrites:
    def __init__(self, api: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api)

    def add_finalizer(self, view: RecordingView, present: list[str]) -> None:
        self._set_finalizers(view, [*present, FINALIZER])

    def remove_finalizer(self, view: RecordingView, present: list[str]) -> None:
        self._set_finalizers(view, [f for f in present if f != FINALIZER])

    def _set_finalizers(self, view: RecordingView, finalizers: list[str]) -> None:
        # The whole list, with the resourceVersion it was read at: if another party changed
        # the finalizers meanwhile, the API server answers 409 and the next pass decides on
        # the new version (never dropping someone else's finalizer).
        patch = {"metadata": {"resourceVersion": view.resource_version, "finalizers": finalizers}}
        try:
            self._custom.patch_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                view.key.namespace,
                RECORDING_PLURAL,
                view.key.name,
                patch,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or changed since
                raise
            log.info(
                "recording changed meanwhile",
                extra={"recording": str(view.key), "status": exc.status},
            )

    def write_status(self, key: ProfileKey, status: dict[str, Any]) -> None:
        try:
            self._custom.patch_namespaced_custom_object_status(
                API_GROUP,
                API_VERSION,
                key.namespace,
                RECORDING_PLURAL,
                key.name,
                {"status": status},
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                raise

    def existing(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            found = self._custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found if isinstance(found, Mapping) else None

    def write_profile(self, body: dict[str, Any], resource_version: str | None) -> None:
        meta = body["metadata"]
        try:
            if resource_version is None:
                self._custom.create_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    meta["namespace"],
                    PLURAL,
                    body,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            else:
                replaced = {**body, "metadata": {**meta, "resourceVersion": resource_version}}
                self._custom.replace_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    meta["namespace"],
                    PLURAL,
                    meta["name"],
                    replaced,
                    _request_timeout=REQUEST_TIMEOUT,
                )
        except ApiException as exc:
            # 403: an admission policy (the tenant policy) refused it; 422: the schema did.
            # 409 (created or changed meanwhile) is not final: the next pass looks again.
            if exc.status in (403, 422):
                raise ResultRefusedError(_message(exc)) from None
            raise


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


@dataclass
class RecordedRecordingWrites:
    """The fake: profiles and statuses in dicts; names in `refuse` are refused with a message."""

    profiles: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    statuses: dict[ProfileKey, dict[str, Any]] = field(default_factory=dict)
    finalizers: dict[ProfileKey, list[str]] = field(default_factory=dict)
    refuse: dict[str, str] = field(default_factory=dict)
    profile_writes: list[str] = field(default_factory=list)

    def add_finalizer(self, view: RecordingView, present: list[str]) -> None:
        self.finalizers[view.key] = [*present, FINALIZER]

    def remove_finalizer(self, view: RecordingView, present: list[str]) -> None:
        self.finalizers[view.key] = [f for f in present if f != FINALIZER]

    def write_status(self, key: ProfileKey, status: dict[str, Any]) -> None:
        self.statuses[key] = status

    def existing(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        found = self.profiles.get((namespace, name))
        if found is None:
            return None
        return {**found, "metadata": {**found["metadata"], "resourceVersion": "1"}}

    def write_profile(self, body: dict[str, Any], resource_version: str | None) -> None:
        name = body["metadata"]["name"]
        if name in self.refuse:
            raise ResultRefusedError(self.refuse[name])
        self.profile_writes.append(name)
        self.profiles[(body["metadata"]["namespace"], name)] = body

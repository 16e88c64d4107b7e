"""The gate handler's API calls: release a pod (one JSON patch), and tell its owner why not."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.controller.gated_pods import GatedPod

log = logging.getLogger(__name__)

COMPONENT = "seccomp-sync-controller"
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_MESSAGE = 1024


class PodGates:
    def __init__(self, api: client.ApiClient, identity: str) -> None:
        self._core = client.CoreV1Api(api)
        self._identity = identity
        self.writes = 0

    def patch(self, pod: GatedPod, ops: list[dict[str, Any]]) -> bool:
        """Apply a release patch; False when the pod changed or went away meanwhile."""
        try:
            self._core.patch_namespaced_pod(
                pod.name, pod.namespace, ops, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except ApiException as exc:
            # 404: deleted; 409/422: its resourceVersion moved on (the `test` op failed). The
            # watch delivers the new version, and the decision is made again on it.
            level = logging.INFO if exc.status in (404, 409, 422) else logging.WARNING
            log.log(
                level,
                "could not release pod",
                extra={"pod": pod.ref, "status": exc.status, "reason": exc.reason},
            )
            return False
        self.writes += 1
        return True

    def warn(self, pod: GatedPod, reason: str, message: str) -> None:
        """A Warning Event on the pod (`kubectl describe pod`); best effort, never raises."""
        now = dt.datetime.now(dt.UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{pod.name}.{secrets.token_hex(8)}", namespace=pod.namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version="v1", kind="Pod", name=pod.name, namespace=pod.namespace, uid=pod.uid
            ),
            reason=reason,
            message=message[:MAX_MESSAGE],
            type="Warning",
            source=client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=self._identity,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self._core.create_namespaced_event(
                pod.namespace, body, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
            self.writes += 1
        except Exception as exc:
            log.warning("could not post event", extra={"pod": pod.ref, "error": str(exc)})

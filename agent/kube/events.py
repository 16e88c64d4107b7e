"""Kubernetes Events on objects of one kind, readable in `kubectl describe`."""

from __future__ import annotations

import datetime as dt
import logging
import secrets

from kubernetes import client

from agent.kube.client import REQUEST_TIMEOUT

log = logging.getLogger(__name__)
MAX_MESSAGE = 1024  # the API server refuses longer event messages


class EventRecorder:
    """Posts core/v1 Events. Failures are logged, never raised: an event is best effort."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        api_version: str,
        kind: str,
        instance: str,
        role: str,
        component: str,
    ) -> None:
        """Events about objects of `api_version`/`kind`; messages start with "ROLE INSTANCE:"
        (say "node NAME:" or "controller NAME:"); `component` is the Event's source."""
        self._core = client.CoreV1Api(api)
        self._api_version = api_version
        self._kind = kind
        self._node = instance
        self._role = role
        self._component = component

    def warn(self, namespace: str, name: str, uid: str, reason: str, message: str) -> None:
        self._post(namespace, name, uid, "Warning", reason, message)

    def normal(self, namespace: str, name: str, uid: str, reason: str, message: str) -> None:
        self._post(namespace, name, uid, "Normal", reason, message)

    def _post(
        self, namespace: str, name: str, uid: str, kind: str, reason: str, message: str
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        text = f"{self._role} {self._node}: {message}"
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 3] + "..."
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{name}.{secrets.token_hex(8)}", namespace=namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version=self._api_version,
                kind=self._kind,
                name=name,
                namespace=namespace,
                uid=uid,
            ),
            reason=reason,
            message=text,
            type=kind,
            source=client.V1EventSource(component=self._component, host=self._node),
            reporting_component=self._component,
            reporting_instance=self._node,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self._core.create_namespaced_event(namespace, body, _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # API errors, timeouts, refused connections alike
            log.warning(
                "could not post event",
                extra={
                    "profile": f"{namespace}/{name}",
                    "reason": reason,
                    "status": getattr(exc, "status", None),
                    "error": str(exc)[:200],
                },
            )

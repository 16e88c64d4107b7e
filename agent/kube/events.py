"""Kubernetes Events on objects of one kind, readable in `kubectl describe`: the real
`agent.runtime.events.EventSink`."""

from __future__ import annotations

import datetime as dt
import logging
import secrets

from kubernetes import client

from agent.kube.client import REQUEST_TIMEOUT

log = logging.getLogger(__name__)
MAX_MESSAGE = 1024  # the API server refuses longer event messages
CLUSTER_EVENTS_NAMESPACE = "default"


class EventRecorder:
    """Posts core/v1 Warning Events. Failures are logged, never raised: an event is best effort."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        api_version: str,
        kind: str,
        instance: str,
        component: str,
        role: str | None = None,
    ) -> None:
        """Events about objects of `api_version`/`kind`, from `component` on `instance`. With a
        `role`, messages start with "ROLE INSTANCE:" (say "node NAME:"): several replicas or
        nodes post about one object, and the reader must know which one saw what."""
        self._core = client.CoreV1Api(api)
        self._about = (api_version, kind)
        self._source = (component, instance)
        self._prefix = f"{role} {instance}: " if role else ""

    def warn(self, namespace: str, name: str, uid: str, reason: str, message: str) -> None:
        """`namespace` "" for a cluster-scoped object: its Events live in `default`, as
        kubectl's own do."""
        now = dt.datetime.now(dt.UTC)
        home = namespace or CLUSTER_EVENTS_NAMESPACE
        text = self._prefix + message
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 3] + "..."
        (api_version, kind), (component, instance) = self._about, self._source
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{name}.{secrets.token_hex(8)}", namespace=home),
            involved_object=client.V1ObjectReference(
                api_version=api_version, kind=kind, name=name, namespace=namespace or None, uid=uid
            ),
            reason=reason,
            message=text,
            type="Warning",
            source=client.V1EventSource(component=component, host=instance),
            reporting_component=component,
            reporting_instance=instance,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self._core.create_namespaced_event(home, body, _request_timeout=REQUEST_TIMEOUT)
        except Exception as exc:  # API errors, timeouts, refused connections alike
            log.warning(
                "could not post event",
                extra={
                    "object": f"{kind} {namespace}/{name}",
                    "reason": reason,
                    "status": getattr(exc, "status", None),
                    "error": str(exc)[:200],
                },
            )

"""Report profiles that break a tenant policy made after them: the PolicyCompliant condition in
their status, the seccomp_sync_profile_policy_violations metric, and one Warning Event when a
profile becomes non-compliant. Nothing is removed: the profile stays on the nodes.

Runs inside the elected controller's status aggregator, which calls `report` for each profile
status it writes. The policies and the namespaces' labels are listed every REFRESH_SECONDS while
leading (two LISTs; none of namespaces while no policy exists): policies change rarely, and a
missed change only delays a report, never enforcement, which is the API server's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import Gauge

from agent.api.model import API_GROUP, API_VERSION
from agent.controller.profile_status import ProfileView
from agent.kube.events import EventRecorder
from agent.profiles.tenancy.compliance import (
    PolicyContext,
    compliance_condition,
    compliance_findings,
    was_compliant,
)
from agent.profiles.tenancy.policy import PLURAL, PolicyFileError, parse_policy, selects

log = logging.getLogger(__name__)

REFRESH_SECONDS: Final = 30.0
REQUEST_TIMEOUT_SECONDS: Final = 10


class PolicyGauges(Protocol):
    profile_policy_violations: Gauge


class PolicyReporter:
    def __init__(self, api: client.ApiClient, metrics: PolicyGauges, events: EventRecorder) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._metrics = metrics
        self._events = events
        self._context = PolicyContext()
        self.on_change: Callable[[], None] = lambda: None

    async def run(self) -> None:
        """While leading: read the policies and labels, and re-report everything on a change."""
        while True:
            try:
                context = await asyncio.to_thread(self._read)
            except Exception as exc:  # API errors of any kind: keep the last view, try again
                log.warning("could not read tenant policies", extra={"error": str(exc)})
            else:
                if context != self._context:
                    self._context = context
                    log.info("tenant policies changed", extra={"policies": len(context.policies)})
                    self.on_change()
            await asyncio.sleep(REFRESH_SECONDS)

    def report(
        self,
        view: ProfileView,
        status: dict[str, Any],
        previous_conditions: list[Mapping[str, Any]] | None,
        now: str,
    ) -> dict[str, Any]:
        """The status plus PolicyCompliant, when a policy selects the profile's namespace."""
        namespace, name = view.key.namespace, view.key.name
        labels = self._context.namespace_labels.get(namespace, {})
        if view.content is None or not self._selected(labels):
            self._metrics.profile_policy_violations.labels(namespace, name).set(0)
            return status
        findings = compliance_findings(self._context, namespace, view.content)
        self._metrics.profile_policy_violations.labels(namespace, name).set(len(findings))
        condition = compliance_condition(findings, view.generation, previous_conditions, now)
        if findings and was_compliant(previous_conditions):
            asyncio.get_running_loop().run_in_executor(
                None,
                self._events.warn,
                namespace,
                name,
                view.uid,
                "PolicyViolation",
                condition["message"],
            )
        return {**status, "conditions": [*status["conditions"], condition]}

    def _selected(self, labels: Mapping[str, str]) -> bool:
        return any(selects(p, labels) for p in self._context.policies)

    def _read(self) -> PolicyContext:
        listing: Any = self._custom.list_cluster_custom_object(
            API_GROUP, API_VERSION, PLURAL, _request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        policies = []
        for item in listing.get("items", []):
            try:
                policies.append(parse_policy(item))
            except PolicyFileError as exc:  # the CRD schema should make this impossible
                log.warning(
                    "ignoring a tenant policy that does not parse",
                    extra={"policy": item.get("metadata", {}).get("name"), "error": str(exc)},
                )
        if not policies:
            return PolicyContext()
        try:
            namespaces = self._core.list_namespace(_request_timeout=REQUEST_TIMEOUT_SECONDS)
        except ApiException as exc:
            raise RuntimeError(f"listing namespaces failed with {exc.status}") from exc
        labels: dict[str, dict[str, str]] = {}
        for namespace in namespaces.items:
            meta = namespace.metadata
            if meta is not None and meta.name:
                labels[str(meta.name)] = {str(k): str(v) for k, v in (meta.labels or {}).items()}
        return PolicyContext(tuple(policies), labels)

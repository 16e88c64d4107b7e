"""Prometheus metrics of the controller: the aggregated per-profile series (same names as the
agents' aggregator exported before the controller existed), the leader gauge, and gating."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agent.runtime.process_metrics import PREFIX, ProcessMetrics

GATE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


@dataclass
class ControllerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.leader = Gauge(
            f"{PREFIX}_status_leader",
            "1 when this controller replica holds the Lease (aggregates status, releases pods).",
            registry=r,
        )
        labels = ["namespace", "profile"]
        self.profile_nodes_ready = Gauge(
            f"{PREFIX}_profile_nodes_ready",
            "Nodes holding the profile's current version (from the leading controller).",
            labels,
            registry=r,
        )
        self.profile_nodes_expected = Gauge(
            f"{PREFIX}_profile_nodes_expected",
            "Nodes running an agent, which should hold the profile.",
            labels,
            registry=r,
        )
        self.profile_ready = Gauge(
            f"{PREFIX}_profile_ready",
            "1 when the profile's Ready condition is True.",
            labels,
            registry=r,
        )
        self.profile_invalid = Gauge(
            f"{PREFIX}_profile_invalid",
            "1 when the profile is invalid on at least one node.",
            labels,
            registry=r,
        )
        self.gated_pods = Gauge(
            f"{PREFIX}_gated_pods",
            "Pods held by the seccompsync.io/profiles-ready scheduling gate (leader only).",
            registry=r,
        )
        self.profile_policy_violations = Gauge(
            f"{PREFIX}_profile_policy_violations",
            "Violations of the SeccompTenantPolicies selecting the profile's namespace, in a "
            "profile stored before the policy (the API server refuses new ones).",
            labels,
            registry=r,
        )
        self.gated_oldest = Gauge(
            f"{PREFIX}_gated_pod_oldest_wait_seconds",
            "How long the longest-waiting gated pod has existed (0 when none waits).",
            registry=r,
        )
        self.gate_releases = Counter(
            f"{PREFIX}_gate_releases_total",
            "Pods released from the gate: released (every agent node ready) or narrowed "
            "(lagging nodes excluded after the grace period).",
            ["kind"],
            registry=r,
        )
        for kind in ("released", "narrowed"):
            self.gate_releases.labels(kind=kind)
        self.gate_latency = Histogram(
            f"{PREFIX}_gate_wait_seconds",
            "Pod creation to the gate's removal.",
            buckets=GATE_BUCKETS,
            registry=r,
        )
        self.process = ProcessMetrics(r, "controller")

    def observe_profile(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        labels = {"namespace": namespace, "profile": name}
        self.profile_nodes_ready.labels(**labels).set(status["nodesInstalled"])
        self.profile_nodes_expected.labels(**labels).set(status["nodesExpected"])
        self.profile_ready.labels(**labels).set(1 if status["state"] == "Installed" else 0)
        self.profile_invalid.labels(**labels).set(1 if status["state"] == "Invalid" else 0)

    def forget_profile(self, namespace: str, name: str) -> None:
        for gauge in self._profile_gauges():
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)

    def clear_profile_metrics(self) -> None:
        for gauge in self._profile_gauges():
            gauge.clear()

    def _profile_gauges(self) -> tuple[Gauge, ...]:
        return (
            self.profile_nodes_ready,
            self.profile_nodes_expected,
            self.profile_ready,
            self.profile_invalid,
            self.profile_policy_violations,
        )

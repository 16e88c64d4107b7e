"""Prometheus metrics of the controller: the aggregated per-profile series (same names as the
agents' aggregator exported before the controller existed), the leader gauge, and gating."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from agent.runtime.process_metrics import ProcessMetrics, Series

GATE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
PROFILE = ("namespace", "profile")


@dataclass
class ControllerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        series = Series(self.registry)
        self.leader = series.gauge(
            "status_leader",
            "1 when this controller replica holds the Lease (aggregates status, releases pods).",
        )
        self.profile_nodes_ready = series.gauge(
            "profile_nodes_ready",
            "Nodes holding the profile's current version (from the leading controller).",
            PROFILE,
        )
        self.profile_nodes_expected = series.gauge(
            "profile_nodes_expected",
            "Nodes running an agent, which should hold the profile.",
            PROFILE,
        )
        self.profile_ready = series.gauge(
            "profile_ready", "1 when the profile's Ready condition is True.", PROFILE
        )
        self.profile_invalid = series.gauge(
            "profile_invalid", "1 when the profile is invalid on at least one node.", PROFILE
        )
        self.gated_pods = series.gauge(
            "gated_pods",
            "Pods held by the seccompsync.io/profiles-ready scheduling gate (leader only).",
        )
        self.profile_policy_violations = series.gauge(
            "profile_policy_violations",
            "Violations of the SeccompTenantPolicies selecting the profile's namespace, in a "
            "profile stored before the policy (the API server refuses new ones).",
            PROFILE,
        )
        self.nodeless_reports = series.gauge(
            "nodeless_reports",
            "SeccompNodeStatus objects whose Node does not exist; they count for no profile "
            "(leader only).",
        )
        self.gated_oldest = series.gauge(
            "gated_pod_oldest_wait_seconds",
            "How long the longest-waiting gated pod has existed (0 when none waits).",
        )
        self.gate_releases = series.counter(
            "gate_releases_total",
            "Pods released from the gate: released (every agent node ready) or narrowed "
            "(lagging nodes excluded after the grace period).",
            ["kind"],
        )
        for kind in ("released", "narrowed"):
            self.gate_releases.labels(kind=kind)
        self.gate_latency = series.histogram(
            "gate_wait_seconds", "Pod creation to the gate's removal.", GATE_BUCKETS
        )
        self.process = ProcessMetrics(self.registry, "controller")

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

"""The series every seccomp-sync process exports, agent and controller alike: which build it
runs, and how often a supervised part of it failed and was restarted."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from agent import __version__

PREFIX = "seccomp_sync"


class ProcessMetrics:
    def __init__(self, registry: CollectorRegistry, process: str) -> None:
        self.component_failures = Counter(
            f"{PREFIX}_component_failures_total",
            f"Unexpected failures of a long-lived part of the {process}, each followed by a "
            "restart.",
            ["component"],
            registry=registry,
        )
        self.build_info = Gauge(
            f"{PREFIX}_build_info",
            "Build information; the value is always 1.",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(version=__version__).set(1)

    def component_failed(self, name: str) -> None:
        self.component_failures.labels(component=name).inc()

    def watch_components(self, names: Iterable[str]) -> None:
        """Export a failure count of 0 for each supervised part from the start, so an alert on
        its rate has a series before the first failure."""
        for name in names:
            self.component_failures.labels(component=name)

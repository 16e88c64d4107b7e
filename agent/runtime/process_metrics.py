"""The series every seccomp-sync process exports, agent and controller alike: which build it
runs, and how often a supervised part of it failed and was restarted; and `Series`, the one way
both programs define their own."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agent import __version__

PREFIX = "seccomp_sync"


@dataclass(frozen=True)
class Series:
    """Defines metrics in one registry, each named `seccomp_sync_<name>`."""

    registry: CollectorRegistry

    def gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(f"{PREFIX}_{name}", doc, labels, registry=self.registry)

    def histogram(self, name: str, doc: str, buckets: Sequence[float]) -> Histogram:
        return Histogram(f"{PREFIX}_{name}", doc, buckets=buckets, registry=self.registry)


class ProcessMetrics:
    def __init__(self, registry: CollectorRegistry, process: str) -> None:
        series = Series(registry)
        self.component_failures = series.counter(
            "component_failures_total",
            f"Unexpected failures of a long-lived part of the {process}, each followed by a "
            "restart.",
            ["component"],
        )
        self.build_info = series.gauge(
            "build_info", "Build information; the value is always 1.", ["version"]
        )
        self.build_info.labels(version=__version__).set(1)

    def component_failed(self, name: str) -> None:
        self.component_failures.labels(component=name).inc()

    def watch_components(self, names: Iterable[str]) -> None:
        """Export a failure count of 0 for each supervised part from the start, so an alert on
        its rate has a series before the first failure."""
        for name in names:
            self.component_failures.labels(component=name)

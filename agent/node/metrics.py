"""Prometheus metrics of one agent. Label values come from small fixed sets (no per-pod,
per-profile or per-syscall labels), so cardinality stays bounded on any cluster."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from agent.api.node_report import NodeState
from agent.runtime.process_metrics import ProcessMetrics, Series

RECORDER_OUTCOMES = ("accepted", "refused", "malformed", "no-fd", "unreadable")
COMMON_WRITE_FAILURES = ("EROFS", "ENOSPC", "EMFILE", "EACCES", "UnsafePath")
# Event received to file durable: sub-millisecond when warm, up to seconds on a cold start.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _write_failure_reasons: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        series = Series(self.registry)
        self.profiles = series.gauge(
            "profiles", "SeccompProfiles known to this node's agent, by state.", ["state"]
        )
        for state in NodeState:
            self.profiles.labels(state=state.value.lower()).set(0)
        self.sync_duration = series.histogram(
            "sync_duration_seconds",
            "Time from a SeccompProfile event reaching the agent to its file durable on disk.",
            LATENCY_BUCKETS,
        )
        self.files_written = series.counter(
            "files_written_total", "Profile files written (content changed)."
        )
        self.files_removed = series.counter("files_removed_total", "Profile files removed.")
        self.validation_failures = series.counter(
            "validation_failures_total",
            "Profile generations rejected by validation, by the first error's reason.",
            ["reason"],
        )
        self.drift_repairs = series.counter(
            "drift_repairs_total",
            "Managed files found changed or deleted on the host and restored.",
        )
        self.unsafe_paths = series.counter(
            "unsafe_paths_total",
            "Writes refused because a symlink or foreign file sat in the managed tree.",
        )
        self.resync_duration = series.histogram(
            "resync_duration_seconds",
            "Time one periodic resync took (listing, fetching what changed, comparing the disk).",
            (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self.watch_restarts = series.counter(
            "watch_restarts_total",
            "Watch streams that had to list again (410 Gone, API server restart).",
        )
        self.last_full_sync = series.gauge(
            "last_full_sync_timestamp_seconds",
            "Unix time of the last completed full sync (initial listing written, orphans removed).",
        )
        self.ready = series.gauge(
            "agent_ready", "1 when this agent has synced and its watch is healthy."
        )
        self.write_failures = series.gauge(
            "write_failures",
            "Profiles whose file cannot be written or removed right now, by reason "
            "(EROFS, ENOSPC, UnsafePath, ...).",
            ["reason"],
        )
        # The usual reasons exist from the start (at 0), so dashboards and alerts see a series.
        self.set_write_failures(dict.fromkeys(COMMON_WRITE_FAILURES, 0))
        self.recorder_notifications = series.counter(
            "recorder_notifications_total",
            "Syscalls of recorded containers answered (always with 'continue').",
        )
        self.recorder_errors = series.counter(
            "recorder_errors_total",
            "Errors inside the recorder; the syscall was let through all the same, but a name "
            "may be missing from the recording.",
        )
        self.recorder_connections = series.counter(
            "recorder_connections_total",
            "Listeners handed over by the runtime, by outcome (accepted, refused, malformed...).",
            ["outcome"],
        )
        for outcome in RECORDER_OUTCOMES:
            self.recorder_connections.labels(outcome=outcome)
        self.recorder_listeners = series.gauge(
            "recorder_listeners", "Containers being recorded on this node right now."
        )
        self.process = ProcessMetrics(self.registry, "agent")

    def set_profile_counts(self, counts: dict[NodeState, int]) -> None:
        for state in NodeState:
            self.profiles.labels(state=state.value.lower()).set(counts.get(state, 0))

    def set_write_failures(self, counts: Mapping[str, int]) -> None:
        # Reasons that cleared drop to zero rather than vanishing, so alerts see them resolve.
        self._write_failure_reasons.update(counts)
        for reason in self._write_failure_reasons:
            self.write_failures.labels(reason=reason).set(counts.get(reason, 0))


class RecorderMetrics:
    """The recorder's counts (agent.node.recorder.RecorderCounters) as Prometheus series."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def notification(self) -> None:
        self._metrics.recorder_notifications.inc()

    def error(self) -> None:
        self._metrics.recorder_errors.inc()

    def connection(self, outcome: str) -> None:
        self._metrics.recorder_connections.labels(outcome=outcome).inc()

    def listeners(self, count: int) -> None:
        self._metrics.recorder_listeners.set(count)

"""One HTTP port for probes and metrics: /healthz (liveness), /readyz (readiness), /metrics.

The server itself (timeouts, connection cap, quiet refusals) is `agent.runtime.http_server`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from agent.runtime.http_server import HttpLimits, HttpServer, Response


def probe_server(
    registry: CollectorRegistry,
    is_ready: Callable[[], str | None],
    problems: Callable[[], Mapping[str, str]] = dict,
    limits: HttpLimits | None = None,
) -> HttpServer:
    """The server for the port, not yet listening (`await server.start(host, port)`).

    `is_ready` returns None when ready, else the reason it is not (shown in the body);
    `problems` names the parts that are broken or stuck (liveness fails while it is not empty)."""

    def healthz() -> Response:
        # Answering at all proves the event loop is alive; `problems` adds whether every part
        # of the program is still doing its job.
        found = problems()
        if not found:
            return Response(200, b"ok\n")
        lines = "".join(f"{name}: {reason}\n" for name, reason in sorted(found.items()))
        return Response(503, f"unhealthy\n{lines}".encode())

    def readyz() -> Response:
        reason = is_ready()
        if reason is None:
            return Response(200, b"ok\n")
        return Response(503, f"not ready: {reason}\n".encode())

    def metrics() -> Response:
        return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)

    refused = Counter(
        "seccomp_sync_http_refused_total",
        "Connections or requests the probe/metrics port refused or closed early, by reason "
        "(timeout, malformed request, over the connection cap).",
        ["reason"],
        registry=registry,
    )
    return HttpServer(
        {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics},
        limits or HttpLimits(),
        lambda reason: refused.labels(reason=reason).inc(),
    )

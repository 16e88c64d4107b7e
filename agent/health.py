"""One HTTP port for probes and metrics: /healthz (liveness), /readyz (readiness), /metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def build_app(
    registry: CollectorRegistry,
    is_ready: Callable[[], str | None],
    problems: Callable[[], Mapping[str, str]] = dict,
) -> web.Application:
    """`is_ready` returns None when ready, else the reason it is not (shown in the body);
    `problems` names the parts that are broken or stuck (liveness fails while it is not empty)."""

    async def healthz(_: web.Request) -> web.Response:
        # Answering at all proves the event loop is alive; the supervisor's view adds whether
        # every part of the agent is still doing its job.
        found = problems()
        if not found:
            return web.Response(text="ok\n")
        lines = "".join(f"{name}: {reason}\n" for name, reason in sorted(found.items()))
        return web.Response(status=503, text=f"unhealthy\n{lines}")

    async def readyz(_: web.Request) -> web.Response:
        reason = is_ready()
        if reason is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (to clean up) and the bound port (port 0 picks one)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # aiohttp exposes the bound socket only here
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)

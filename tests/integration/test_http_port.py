"""The probe/metrics port under hostile clients: real sockets against a real running server.

Idle and slowloris connections are cut off, connections over the cap never cost the kubelet its
probe, garbage bytes produce a short error and no traceback, and a process with few file
descriptors keeps serving (the port cannot starve the store or the compile worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from agent.runtime.health import probe_server
from agent.runtime.http_server import HttpLimits, HttpServer, Response

REPO = Path(__file__).resolve().parents[2]


async def _serve(
    limits: HttpLimits, ready: Callable[[], str | None] = lambda: None
) -> tuple[HttpServer, int, CollectorRegistry]:
    registry = CollectorRegistry()
    server = probe_server(registry, ready, limits=limits)
    port = await server.start("127.0.0.1", 0)
    return server, port, registry


async def _request(port: int, raw: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read(-1)
    finally:
        writer.close()


async def _get(port: int, path: str = "/healthz") -> bytes:
    return await _request(
        port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closed the connection; fails if it stays open longer."""
    start = time.monotonic()
    async with asyncio.timeout(seconds):
        while await reader.read(4096):
            pass
    return time.monotonic() - start


SMALL = HttpLimits(idle_timeout=0.5, header_timeout=2.0, max_connections=4)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def with_server(
    test: Callable[[HttpServer, int], Coroutine[Any, Any, None]], limits: HttpLimits = SMALL
) -> None:
    """Run `test(server, port)` against a fresh server, stopped afterwards."""

    async def main() -> None:
        server, port, _ = await _serve(limits)
        try:
            await test(server, port)
        finally:
            await server.stop()

    asyncio.run(main())


# --- well-behaved clients -----------------------------------------------------------------------


def test_endpoints_answer_and_keep_alive_serves_several_requests() -> None:
    async def main() -> None:
        server, port, _ = await _serve(HttpLimits(), lambda: "initial sync not done")
        try:
            assert (await _get(port)).startswith(b"HTTP/1.1 200 OK\r\n")
            ready = await _get(port, "/readyz")
            assert ready.startswith(b"HTTP/1.1 503 ")
            assert ready.endswith(b"not ready: initial sync not done\n")
            metrics = await _get(port, "/metrics?x=1")
            assert f"Content-Type: {CONTENT_TYPE_LATEST}".encode() in metrics
            assert b"seccomp_sync_http_refused_total" in metrics
            assert (await _get(port, "/nope")).startswith(b"HTTP/1.1 404 ")

            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(3):
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                assert b"Connection: keep-alive" in head
                assert await reader.readexactly(3) == b"ok\n"
            # Two pipelined requests in one write, the second a HEAD (no body).
            writer.write(b"GET /healthz HTTP/1.1\r\n\r\nHEAD /healthz HTTP/1.1\r\n\r\n")
            await reader.readuntil(b"\r\n\r\nok\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"Content-Length: 3" in head
            writer.close()
        finally:
            await server.stop()

    run(main())


def test_healthz_names_the_broken_parts() -> None:
    async def main() -> None:
        broken = {"syncer": "stalled for 120 s"}
        server = probe_server(CollectorRegistry(), lambda: None, lambda: broken)
        port = await server.start("127.0.0.1", 0)
        try:
            reply = await _get(port)
            assert reply.startswith(b"HTTP/1.1 503 ")
            assert reply.endswith(b"unhealthy\nsyncer: stalled for 120 s\n")
            broken.clear()
            assert (await _get(port)).startswith(b"HTTP/1.1 200 OK")
        finally:
            await server.stop()

    run(main())


# --- timeouts -----------------------------------------------------------------------------------


def test_idle_connection_is_closed_after_the_idle_timeout() -> None:
    async def main(_: HttpServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        closed_after = await _closed_within(reader, 3.0)
        assert 0.4 < closed_after < 2.0
        writer.close()

    with_server(main)


def test_idle_keep_alive_connection_is_closed_after_a_request() -> None:
    async def main(_: HttpServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
        await reader.readuntil(b"ok\n")
        assert await _closed_within(reader, 3.0) < 2.0
        writer.close()

    with_server(main)


def test_slowloris_one_header_byte_per_second_is_cut_off() -> None:
    async def main() -> None:
        server, port, registry = await _serve(
            HttpLimits(idle_timeout=10.0, header_timeout=2.0, max_connections=4)
        )
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow\r\n\r\n"
            start = time.monotonic()
            reply = b""
            for sent, byte in enumerate(request, 1):  # noqa: B007 - `sent` is checked below
                with contextlib.suppress(ConnectionError):
                    writer.write(bytes([byte]))
                try:
                    async with asyncio.timeout(1.0):  # one byte per second
                        # Whatever arrives first: a read to EOF could lose a reply that came
                        # while the server lingers for the client's own EOF.
                        reply = await reader.read(4096)
                    break  # the server answered (or closed)
                except TimeoutError:
                    continue
            elapsed = time.monotonic() - start
            assert sent < len(request), "the slow request was served in full"
            assert elapsed < 4.0
            assert reply.startswith(b"HTTP/1.1 408 "), reply
            writer.close()
            # The server lingers at most a second after its reply (reading what the client
            # still sends, so the reply is not lost to a reset), then lets go.
            async with asyncio.timeout(3):
                while server.open_connections:
                    await asyncio.sleep(0.05)
            refused = registry.get_sample_value(
                "seccomp_sync_http_refused_total", {"reason": "timeout"}
            )
            assert refused == 1.0
        finally:
            await server.stop()

    run(main())


# --- the connection cap -------------------------------------------------------------------------


def test_idle_connections_over_the_cap_cannot_lock_out_a_probe() -> None:
    async def main(srv: HttpServer, port: int) -> None:
        hogs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
        await asyncio.sleep(0.05)
        assert srv.open_connections <= 4
        for _ in range(5):
            reply = await _get(port)
            assert reply.startswith(b"HTTP/1.1 200 OK"), reply
            assert srv.open_connections <= 4
        # The hogs lost their slots: all but at most the cap were closed at once.
        still_open = 0
        for reader, writer in hogs:
            try:
                async with asyncio.timeout(0.05):
                    data = await reader.read(1)
                still_open += data != b""
            except TimeoutError:
                still_open += 1
            writer.close()
        assert still_open <= 4
        assert srv.rejected["evicted_idle"] >= 36

    with_server(main)


def test_connections_over_the_cap_are_refused_when_every_slot_is_busy() -> None:
    """Clients that request a large reply and never read it keep their slots busy."""

    async def main() -> None:
        big = Response(200, b"x" * (32 << 20))
        srv = HttpServer(
            {"/big": lambda: big, "/healthz": lambda: Response(200, b"ok\n")},
            HttpLimits(write_timeout=1.5, max_connections=3),
        )
        port = await srv.start("127.0.0.1", 0)
        try:
            readers = []
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /big HTTP/1.1\r\n\r\n")
                readers.append((reader, writer))
            await asyncio.sleep(0.2)
            # Refused at once: a short 503, or a reset when the kernel drops the unread request.
            try:
                refused = await _get(port)
                assert refused.startswith(b"HTTP/1.1 503 "), refused[:80]
                assert b"too many connections" in refused
            except ConnectionResetError:
                pass
            assert srv.rejected["over_capacity"] == 1
            # The write timeout frees the slots of clients that never read their reply.
            await asyncio.sleep(2.0)
            assert (await _get(port)).startswith(b"HTTP/1.1 200 OK")
            for _, writer in readers:
                writer.close()
        finally:
            await srv.stop()

    run(main())


# --- garbage ------------------------------------------------------------------------------------


GARBAGE = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64) + b"\r\n\r\n",  # TLS
    b"FOO\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody",
    b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
    os.urandom(3000),
]


def test_garbage_gets_a_short_error_and_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        server, port, registry = await _serve(HttpLimits(header_timeout=1.0))
        try:
            for raw in GARBAGE * 5:
                reply = await _request(port, raw)
                assert (
                    reply == b""
                    or reply.startswith(b"HTTP/1.1 4")
                    or reply.startswith(b"HTTP/1.1 505")
                ), reply[:80]
            assert (await _get(port)).startswith(b"HTTP/1.1 200 OK")
            refused = sum(
                registry.get_sample_value("seccomp_sync_http_refused_total", {"reason": r}) or 0
                for r in ("malformed", "too_large", "timeout")
            )
            assert refused == len(GARBAGE) * 5
        finally:
            await server.stop()

    with caplog.at_level(logging.DEBUG):
        run(main())
    assert not [r for r in caplog.records if r.exc_info], "a malformed request logged a traceback"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


# --- few file descriptors -----------------------------------------------------------------------

_LOW_FD_SERVER = textwrap.dedent(
    """
    import asyncio, os, resource, sys, tempfile
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
    from agent.runtime.health import probe_server
    from agent.runtime.http_server import HttpLimits

    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    async def main():
        limits = HttpLimits(max_connections=8, backlog=8)
        server = probe_server(CollectorRegistry(), lambda: None, limits=limits)
        port = await server.start("127.0.0.1", 0)
        print(port, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        # What the store and the compile worker need while the port is under attack.
        with tempfile.TemporaryDirectory() as d:
            files = [open(os.path.join(d, str(i)), "w") for i in range(24)]
            print("opened", len(files), flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        await server.stop()

    asyncio.run(main())
    """
)


def test_a_process_with_few_descriptors_keeps_serving_under_a_connection_flood() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOW_FD_SERVER],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin and proc.stdout
    try:
        port = int(proc.stdout.readline())
        flood = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            flood.append(s)
        reply = asyncio.run(_get(port))
        assert reply.startswith(b"HTTP/1.1 200 OK"), reply
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "opened 24"
        assert asyncio.run(_get(port)).startswith(b"HTTP/1.1 200 OK")
        for s in flood:
            s.close()
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate(timeout=10)
    assert "Traceback" not in stderr, stderr


def test_a_multi_megabyte_response_arrives_whole() -> None:
    """A large /metrics (a controller with thousands of profiles serves megabytes) reaches the
    client byte for byte, whether the server closes the connection after it or keeps it open.

    The kernel's send buffer is made small, as a slow network makes it in effect: the kernel
    then takes the reply in small pieces, and its end still waits in the server's own buffer
    when the server is done with the request (it was cut off there: up to 16 KiB short)."""
    # Every byte position distinguishable, so a gap or a repeat would not compare equal.
    body = b"".join(i.to_bytes(4, "big") for i in range(1024 * 1024))  # 4 MiB
    server = HttpServer({"/big": lambda: Response(200, body)})

    async def main() -> None:
        port = await server.start("127.0.0.1", 0)
        for listening in server.sockets:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        try:
            for _ in range(3):
                closed = await asyncio.to_thread(_fetch_slowly, port, 1, "close")
                assert closed == [body]
                kept = await asyncio.to_thread(_fetch_slowly, port, 2, "keep-alive")
                assert kept == [body, body]
        finally:
            await server.stop()

    run(main())


def _fetch_slowly(port: int, requests: int, connection: str) -> list[bytes]:
    """GET /big `requests` times on one connection with a small receive buffer; each body as
    received (short if the connection ended early)."""
    bodies = []
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        pending = b""
        for _ in range(requests):
            sock.sendall(f"GET /big HTTP/1.1\r\nConnection: {connection}\r\n\r\n".encode())
            while b"\r\n\r\n" not in pending:
                pending += sock.recv(4096)
            head, _, pending = pending.partition(b"\r\n\r\n")
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            while len(pending) < length and (chunk := sock.recv(4096)):
                pending += chunk
            bodies.append(pending[:length])
            pending = pending[length:]
    return bodies

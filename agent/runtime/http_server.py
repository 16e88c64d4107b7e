"""A minimal HTTP/1.1 server for the probe and metrics port, bounded in time and descriptors.

Why not aiohttp's server (which kopf brings along): it has an idle timeout, but no cap on
connections, and it logs a traceback for many malformed requests. On a node agent the port is
reachable from the pod network; every connection it holds is a file descriptor the store and
the compile worker then lack. So this server:

- closes a connection idle for `idle_timeout` (no request started), and one whose request head
  is not complete `header_timeout` after its first byte (slowloris);
- holds at most `max_connections` (plus a bounded accept `backlog`); a new connection beyond
  that evicts the longest-idle one (an idle or trickling client loses its slot, a probe that
  sends its request at once never does), and is refused with 503 only when every slot is busy
  answering;
- answers GET and HEAD without bodies; anything else gets a short 4xx and the connection closed,
  counted and logged as one rate-limited warning line, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final

from agent.runtime.http_request import HEAD_END, BadRequest, parse_head

log = logging.getLogger(__name__)

WARNING_INTERVAL_SECONDS: Final = 60.0
# Metric label for each refusal status; everything else is a malformed request.
_KINDS: Final = {408: "timeout", 431: "too_large"}
LINGER_SECONDS: Final = 1.0


@dataclass(frozen=True)
class HttpLimits:
    idle_timeout: float = 15.0  # connected or last reply sent -> first byte of a request
    header_timeout: float = 5.0  # first byte -> end of the request head
    write_timeout: float = 5.0  # a client that does not read its reply
    max_connections: int = 32
    # asyncio accepts up to `backlog` sockets in one go before any of them is looked at, so the
    # port holds at most max_connections + backlog descriptors, even under a flood.
    backlog: int = 16
    max_head_bytes: int = 8192


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Handler = Callable[[], Response]


class _RefusedError(Exception):
    """A request that gets a short error reply and then the connection is closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    idle_since: float
    busy: bool = False

    def abort(self) -> None:
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()

    def close(self) -> None:
        """Close after the reply is flushed, unless the client is not reading it."""
        transport = self.writer.transport
        if transport.get_write_buffer_size() > 0:
            transport.abort()
        elif not transport.is_closing():
            transport.close()


@dataclass(eq=False)
class HttpServer:
    routes: Mapping[str, Handler]
    limits: HttpLimits = field(default_factory=HttpLimits)
    # Called with a reason ("timeout", "malformed", "over_capacity"...) for each refusal.
    on_reject: Callable[[str], None] = lambda _: None
    rejected: Counter[str] = field(default_factory=Counter, init=False)
    _connections: set[_Connection] = field(default_factory=set, init=False)
    _server: asyncio.Server | None = field(default=None, init=False)
    _next_warning: float = field(default=0.0, init=False)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (port 0 picks a free one)."""
        self._server = await asyncio.start_server(
            self._serve,
            host,
            port,
            limit=self.limits.max_head_bytes,
            backlog=self.limits.backlog,
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (connections inherit their options: tests make the kernel's
        send buffer small, as a slow network would)."""
        return tuple(self._server.sockets) if self._server is not None else ()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # drain() returns once the transport's buffer is below its low-water mark (16 KiB by
        # default), not empty, and close() below aborts a connection whose buffer is not empty:
        # the end of a large reply (a /metrics of megabytes) was cut off. With no watermark,
        # drain() returns only when everything is handed to the kernel, within write_timeout.
        writer.transport.set_write_buffer_limits(high=0)
        connection = _Connection(writer, time.monotonic())
        try:
            if self._admit(connection):
                await self._serve_requests(reader, connection)
        except _RefusedError as exc:
            self._note(_KINDS.get(exc.status, "malformed"), writer, exc.reason)
            with contextlib.suppress(Exception):
                await self._reply(writer, _error(exc.status, exc.reason), False, False)
                await _linger(reader, writer)
        except (ConnectionError, TimeoutError):
            pass  # the client went away or never read its reply: nothing to answer
        finally:
            self._connections.discard(connection)
            connection.close()

    def _admit(self, connection: _Connection) -> bool:
        if len(self._connections) >= self.limits.max_connections:
            idle = [c for c in self._connections if not c.busy]
            if not idle:
                self._note("over_capacity", connection.writer)
                # Best effort and without waiting: a refused client gets no further resources.
                connection.writer.write(_encode(_error(503, "too many connections"), False))
                return False
            oldest = min(idle, key=lambda c: c.idle_since)
            self._connections.discard(oldest)
            oldest.abort()
            self._note("evicted_idle", oldest.writer)
        self._connections.add(connection)
        return True

    async def _serve_requests(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        buffered = b""
        while True:
            connection.busy = False
            connection.idle_since = time.monotonic()
            head, buffered = await self._read_head(reader, buffered)
            if head is None:
                return
            connection.busy = True
            request = parse_head(head)
            if isinstance(request, BadRequest):
                raise _RefusedError(request.status, request.reason)
            handler = self.routes.get(request.path)
            response = _call(handler) if handler else _error(404, "not found")
            await self._reply(
                connection.writer, response, request.method == "HEAD", request.keep_alive
            )
            if not request.keep_alive:
                return

    async def _read_head(
        self, reader: asyncio.StreamReader, buffered: bytes
    ) -> tuple[bytes | None, bytes]:
        """The next request head and what followed it; (None, b"") when the client is done."""
        limits = self.limits
        if not buffered:
            try:
                async with asyncio.timeout(limits.idle_timeout):
                    buffered = await reader.read(limits.max_head_bytes)
            except TimeoutError:
                return None, b""  # an idle keep-alive connection: closing it is routine
            if not buffered:
                return None, b""
        try:
            async with asyncio.timeout(limits.header_timeout):
                while (end := buffered.find(HEAD_END)) < 0:
                    if len(buffered) > limits.max_head_bytes:
                        raise _RefusedError(431, "request head too large")
                    chunk = await reader.read(limits.max_head_bytes)
                    if not chunk:
                        raise _RefusedError(400, "connection closed mid-request")
                    buffered += chunk
        except TimeoutError:
            raise _RefusedError(408, "request head not complete in time") from None
        if end > limits.max_head_bytes:
            raise _RefusedError(431, "request head too large")
        return buffered[:end], buffered[end + len(HEAD_END) :]

    async def _reply(
        self, writer: asyncio.StreamWriter, response: Response, head_only: bool, keep_alive: bool
    ) -> None:
        writer.write(_encode(response, keep_alive, head_only))
        async with asyncio.timeout(self.limits.write_timeout):
            await writer.drain()

    def _note(self, kind: str, writer: asyncio.StreamWriter, detail: str = "") -> None:
        """Count a refusal; one warning line at most per interval, never a traceback."""
        self.rejected[kind] += 1
        self.on_reject(kind)
        peer = str(writer.get_extra_info("peername"))
        now = time.monotonic()
        extra = {"reason": kind, "detail": detail or kind, "peer": peer}
        if now < self._next_warning:
            log.debug("HTTP request refused", extra=extra)
            return
        self._next_warning = now + WARNING_INTERVAL_SECONDS
        log.warning(
            "HTTP request refused; further refusals are counted "
            "in /metrics and logged at most every "
            f"{WARNING_INTERVAL_SECONDS:.0f} s",
            extra={**extra, "refused": dict(self.rejected)},
        )


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then read and drop what the client still sends, briefly: closing a socket
    with unread input makes the kernel send a reset, which can destroy the error reply before
    the client reads it (the "lingering close" of HTTP servers)."""
    writer.write_eof()
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(LINGER_SECONDS):
            while await reader.read(4096):
                pass


def _call(handler: Handler) -> Response:
    try:
        return handler()
    except Exception:
        # Our bug, not the client's: worth its traceback.
        log.exception("HTTP handler failed")
        return _error(500, "internal error")


def _error(status: int, reason: str) -> Response:
    return Response(status, f"{reason}\n".encode())


def _encode(response: Response, keep_alive: bool, head_only: bool = False) -> bytes:
    phrase = HTTPStatus(response.status).phrase
    head = (
        f"HTTP/1.1 {response.status} {phrase}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + response.body

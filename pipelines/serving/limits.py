"""Limits that hold before authentication: request head size and read time, body read time, arrival time.

uvicorn bounds keep-alive (``timeout_keep_alive``) and concurrency (``limit_concurrency``) itself, but
its httptools protocol accepts a request head of any size and waits for it forever: a 50 MB header is
parsed, and a client that sends its headers a byte at a time holds a connection as long as it likes.
:class:`GuardedHttpToolsProtocol` adds what is missing, on the event loop, before any application
code (and so before the bearer token is looked at) runs:

- a request head larger than ``max_header_bytes`` gets ``431`` and the connection is closed (at most
  ``max_header_bytes`` of it is ever buffered by this check);
- a head not complete ``header_timeout_seconds`` after its first byte (or after the connection opened)
  gets ``408`` and the connection is closed; the same for a body not complete
  ``body_timeout_seconds`` after its head;
- the moment the first byte of each request arrived is put into the ASGI scope (:data:`ARRIVAL`), so
  latency is measured as a client sees it, reading and queueing included.

Build the uvicorn settings with :func:`server_limits`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pipelines.serving.config import ServingConfig

ARRIVAL = "pipelines.arrival"  # key in scope["extensions"]: time.perf_counter() of the request's first byte

_HEAD_END = b"\r\n\r\n"


def _response(status: bytes, code: str, detail: str) -> bytes:
    """A whole HTTP/1.1 response in the API's error shape, closing the connection."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head-size cap and head/body read deadlines (see the module doc).

    The limits come from ``config.pipelines_limits`` (a :class:`ServingConfig`), set by :func:`server_limits`.
    """

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        limits: ServingConfig = config.pipelines_limits
        self._max_head = limits.max_header_bytes
        self._head_timeout = limits.header_timeout_seconds
        self._body_timeout = limits.body_timeout_seconds
        self._awaiting_head = True
        self._head = bytearray()  # the head read so far, at most max_head + 3 bytes of it
        self._arrival: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- timers

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, what: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            seconds = self._head_timeout if what == "head" else self._body_timeout
            self.transport.write(_response(b"408 Request Timeout", "request_timeout",
                                           f"the request {what} did not arrive within {seconds:g} s"))
        # The application (if it was reading the body) sees a disconnect once the transport reports it lost.
        self.transport.close()

    def _refuse(self, status: bytes, code: str, detail: str) -> None:
        self._disarm()
        self.transport.write(_response(status, code, detail))
        self.transport.close()

    # ---------------------------------------------------------------- protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._head_timeout, "head")  # a connection that never sends a head is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head and not self.transport.is_closing():
            if self._arrival is None:
                self._arrival = time.perf_counter()
                self._arm(self._head_timeout, "head")
            room = self._max_head + len(_HEAD_END) - 1 - len(self._head)
            if room > 0:
                self._head += data[:room]
            if len(self._head) > self._max_head and _HEAD_END not in self._head:
                self._refuse(b"431 Request Header Fields Too Large", "header_too_large",
                             f"the request head is over {self._max_head} bytes")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head = bytearray()
        arrival, self._arrival = self._arrival or time.perf_counter(), None
        self.scope.setdefault("extensions", {})[ARRIVAL] = arrival  # type: ignore[typeddict-item]
        self._arm(self._body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._awaiting_head = True  # the next request on this connection starts its own head deadline
        super().on_response_complete()


def server_limits(config: ServingConfig) -> dict[str, Any]:
    """The ``uvicorn.Config`` keyword arguments that apply ``config``'s limits (protocol, keep-alive, concurrency).

    ``pipelines_limits`` is not a uvicorn setting: set it as an attribute of the ``uvicorn.Config`` built with
    these (``build_server`` does), where :class:`GuardedHttpToolsProtocol` reads it.
    """
    return {"http": GuardedHttpToolsProtocol, "timeout_keep_alive": config.keepalive_seconds,
            "limit_concurrency": config.max_connections}

"""uvicorn's HTTP/1.1 protocol (h11) with a time limit on request headers.

uvicorn limits idle keep-alive connections (timeout_keep_alive) but not the
time a client takes to send its headers: a client that connects and sends a
byte now and then holds a connection (and a slot of limit_concurrency)
forever. Here every connection must finish each request's headers within
`HEADER_TIMEOUT_S` of connecting or of its previous response; past it the
server answers 408 and closes. (The body has its own limit in app.py.)
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0


def timed_protocol(header_timeout_s: float = HEADER_TIMEOUT_S) -> type:
    """An h11 protocol class for uvicorn (``uvicorn.run(app, http=...)``) that gives headers `header_timeout_s`.

    Example:
        >>> timed_protocol(5.0).header_timeout_s
        5.0
    """
    return type("TimedH11Protocol", (TimedH11Protocol,), {"header_timeout_s": header_timeout_s})


class TimedH11Protocol(H11Protocol):
    """H11Protocol that closes connections whose request headers do not arrive in time (see the module docstring).

    Example:
        >>> uvicorn.run(app, http=timed_protocol(10.0))  # starts a server that runs until stopped (tests/test_serve_limits.py)  # doctest: +SKIP
    """

    header_timeout_s = HEADER_TIMEOUT_S
    _header_timer = None

    def connection_made(self, transport) -> None:  # noqa: D102 - uvicorn's protocol interface
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:  # noqa: D102
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers arrived in full: the body and the app have their own limits
            self._disarm()

    def on_response_complete(self) -> None:  # noqa: D102
        self._arm()  # before super(): it may start a pipelined request at once, which disarms
        super().on_response_complete()

    def connection_lost(self, exc) -> None:  # noqa: D102
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        body = json.dumps({"error": "request timeout", "detail": f"The request headers did not arrive within "
                                                                  f"{self.header_timeout_s:g} s."}).encode()
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                             b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()

"""The HTTP/1.1 connection under ``ojt serve``: uvicorn's h11 protocol with the server's own edges.

    uvicorn.run(app, host="127.0.0.1", port=8000, **uvicorn_options(config))

A request must arrive in full, headers and body, within ``read_timeout`` seconds of the
connection opening (for the first) or of the previous answer; otherwise the connection is
closed. Without that, a client that sends ``Content-Length: 1000`` and ten bytes, or half its
headers, holds its connection open forever, and enough of them exhaust the server's sockets.
(Idle time between requests counts; uvicorn's keep-alive timeout, 5 s, usually closes first.)
An answer that takes long is not limited here: ``timeout`` is that.

A request that HTTP itself cannot parse (a ``Content-Length: abc``) gets the OpenAI-shaped 400
JSON body that every other refusal has, instead of uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from onthejob.serve import protocol as api
from onthejob.serve.config import ServeConfig

log = logging.getLogger("onthejob.serve")


def uvicorn_options(config: ServeConfig) -> dict[str, Any]:
    """What ``uvicorn.run`` (or ``uvicorn.Config``) takes to serve ``config`` over ``OjtProtocol``."""
    protocol = type("OjtProtocol", (OjtProtocol,), {"read_timeout": config.read_timeout})
    return {"http": protocol, "log_level": "warning"}


class OjtProtocol(H11Protocol):
    """uvicorn's h11 protocol; what differs is each method's docstring."""

    read_timeout = 30.0  # seconds; ``uvicorn_options`` makes a subclass with the server's own
    _read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        """The first request's time starts now, before any byte arrives."""
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        """The timer stops once the request is in (and nobody re-arms it while the app answers)."""
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        """The next request's time starts when the answer is out (or stops: it was pipelined in full)."""
        self._stop_timer()  # an answer sent before the body was in (a 401, a 413) restarts it too
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Run the read timer while the client owes (part of) a request, and only then."""
        owing = self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing()
        if not owing:
            self._stop_timer()
        elif self._read_timer is None:
            self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _stop_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            log.info("closed a connection whose request did not arrive within %ss", self.read_timeout)
            self.transport.close()  # an app waiting for the body sees the client go away

    def send_400_response(self, msg: str) -> None:
        """The OpenAI-shaped 400 (uvicorn's is text), then close: the stream cannot be trusted now."""
        message = "the request is not valid HTTP/1.1: its request line, a header or its framing cannot be parsed"
        body = json.dumps(api.APIError(400, message, code="invalid_http").body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        response = h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
        for event in (response, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

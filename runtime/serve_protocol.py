"""uvicorn's HTTP/1.1 protocol (h11) with the service's rules for what happens before a request
reaches the app: a header timeout, and JSON errors where uvicorn itself would answer plain text.

- **Header timeout**: a request's line and headers must be complete within
  ``Settings.header_timeout_s`` of the connection's opening or of the end of the previous
  answer on it (uvicorn has only a keep-alive timeout, which the first byte of a request
  cancels: headers sent a byte every few seconds would hold the connection for ever).  An
  idle connection is closed silently; a half-sent request gets 408.
- **JSON errors**: uvicorn answers a request it cannot parse (a malformed request line,
  header or ``Content-Length``) with a plain-text 400, and headers over
  ``h11_max_incomplete_event_size`` (``Settings.max_header_bytes``) the same way; here both
  are ``{"error": ...}`` like every other refusal, the latter with 431, and close the connection
  (after draining it for LINGER_S: see ``refuse``).

Only under ``runtime.serve.run`` (uvicorn); another ASGI server applies its own rules there.
"""
from __future__ import annotations

import json

LINGER_S = 2.0      # seconds a refused connection is drained before it is closed


def protocol_class(settings):
    """The h11 protocol class for uvicorn's ``Config(http=...)``, bound to ``settings``."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        header_timer = None
        lingering = False

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self):
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:        # a request's headers are complete
                self._disarm()

        def on_response_complete(self):
            if not self.transport.is_closing():
                self._arm()
            super().on_response_complete()     # may start a pipelined request: handle_events disarms

        def _arm(self):
            self._disarm()
            self.header_timer = self.loop.call_later(settings.header_timeout_s, self._header_timeout)

        def _disarm(self):
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _header_timeout(self):
            self.header_timer = None
            if self.transport.is_closing():
                return
            data, _ = self.conn.trailing_data
            if self.conn.their_state is h11.IDLE and not data:
                self.transport.close()             # nothing of a next request: an idle connection
            else:
                self.refuse(408, f"the request's headers did not arrive within this server's "
                                 f"{settings.header_timeout_s:g} s")

        def send_400_response(self, msg: str) -> None:
            data, _ = self.conn.trailing_data
            if len(data) > settings.max_header_bytes:
                self.refuse(431, self.too_large())
            else:
                self.refuse(400, "the request is not valid HTTP/1.1 (a malformed request line, header or "
                                 "Content-Length)")

        def refuse(self, status: int, message: str) -> None:
            """A JSON error written straight to the connection, which is then closed."""
            body = json.dumps({"error": message}).encode()
            reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
            head = [b"HTTP/1.1 %d %s\r\n" % (status, reason.get(status, b"")),
                    *(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers),
                    b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n"]
            self.transport.write(b"".join(head) + body)
            # a lingering close: what the client still sends is read and dropped for a moment,
            # since closing with unread data resets the connection, often before the client
            # has read the answer (a 200 KB header did)
            self.lingering = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)

        def data_received(self, data: bytes) -> None:
            if self.lingering:
                return
            if self.conn.their_state in (h11.IDLE, h11.DONE):    # a request's head is arriving
                # h11 limits only an *incomplete* head: one that arrives in one read is not checked
                pending = self.conn.trailing_data[0] + data
                end = pending.find(b"\r\n\r\n")
                if (end < 0 and len(pending) > settings.max_header_bytes) or end + 4 > settings.max_header_bytes:
                    self.refuse(431, self.too_large())
                    return
            super().data_received(data)

        def too_large(self) -> str:
            return (f"the request's line and headers are larger than this server's limit of "
                    f"{settings.max_header_bytes} bytes")

    return Protocol

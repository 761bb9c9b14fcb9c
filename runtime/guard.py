"""Who may ask, and how much: API keys and per-client limits, as plain ASGI around the app.

- **API keys** (``Settings.api_keys``, read from a file by ``load_api_keys``): every request
  but ``/healthz`` needs ``Authorization: Bearer KEY``.  The token's SHA-256 is compared with
  every key's by ``hmac.compare_digest``, all of them every time, so neither the time nor
  an early exit tells which key, or how much of one, matched.  401 JSON with
  ``WWW-Authenticate: Bearer`` otherwise.  A key is never logged: the access log names a
  client by its key's place in the file ("key 2": the second key).
- **Per-client limits** on ``/v1/upscale`` (a client is its key when keys are set, else its
  address): requests in progress at once, upload included, and requests started in the
  last 60 s; 429 JSON with ``Retry-After`` beyond.  A refused request counts for neither.
- **An answer given before the whole body was read closes the connection** (``Connection:
  close``): the rest of a refused upload is never read, and a client still trickling one
  cannot keep the connection.

Starlette-free and uvicorn-free: the same middleware serves under any ASGI server.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import stat
import threading
import time
from collections import deque
from pathlib import Path

from .errors import InputError

KEYS_FILE_ENV = "LDMIND_API_KEYS_FILE"     # the key file when --api-key-file is not given
MIN_KEY_LENGTH = 16
OPEN_PATHS = ("/healthz",)                 # answered without a key
LIMITED_PATHS = ("/v1/upscale",)           # counted by the per-client limits
WINDOW_S = 60.0                            # the per-minute limit's window


def load_api_keys(path: str | os.PathLike) -> tuple[str, ...]:
    """The keys of a key file: one a line, blank lines and ``#`` comments ignored, each at
    least MIN_KEY_LENGTH printable ASCII characters without spaces.  ``InputError`` (one line,
    never quoting a key) for a file that cannot be read, that other users may read or write,
    that has no keys, or a malformed line."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"API key file {p}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise InputError(f"API key file {p}: every user of this machine may read or write it; "
                         f"make it private (chmod 600 {p})")
    keys: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        if not (key.isascii() and key.isprintable() and " " not in key and len(key) >= MIN_KEY_LENGTH):
            raise InputError(f"API key file {p}, line {n}: a key must be at least {MIN_KEY_LENGTH} printable "
                             f"ASCII characters without spaces")
        if key not in keys:
            keys.append(key)
    if not keys:
        raise InputError(f"API key file {p}: no keys (one a line; blank lines and # comments are ignored)")
    return tuple(keys)


class Keys:
    """Bearer-token checks in constant time: ``match(token)`` is the key's index or None."""

    def __init__(self, keys: tuple[str, ...]):
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def match(self, token: bytes) -> int | None:
        given = hashlib.sha256(token).digest()
        found = None
        for i, d in enumerate(self._digests):      # every key, no early exit
            if hmac.compare_digest(given, d) and found is None:
                found = i
        return found


class ClientLimits:
    """Requests in progress and started in the last WINDOW_S seconds, per client (0: no limit)."""

    def __init__(self, concurrency: int, per_minute: int, clock=time.monotonic):
        self.concurrency, self.per_minute, self.clock = concurrency, per_minute, clock
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.started: dict[str, deque] = {}
        self.swept = clock()

    def enter(self, client: str, busy_s: float = 1.0) -> tuple[str, int] | None:
        """Admit a request of ``client`` (None) or refuse it: (the message, Retry-After seconds)."""
        now = self.clock()
        with self.lock:
            if now - self.swept > WINDOW_S:         # forget clients idle for a whole window
                self.started = {c: q for c, q in self.started.items() if q and q[-1] > now - WINDOW_S}
                self.swept = now
            if self.concurrency and self.active.get(client, 0) >= self.concurrency:
                return (f"this client already has {self.concurrency} requests in progress, the most this server "
                        f"allows; retry when one has been answered"), max(1, math.ceil(busy_s))
            if self.per_minute:
                q = self.started.setdefault(client, deque())
                while q and q[0] <= now - WINDOW_S:
                    q.popleft()
                if len(q) >= self.per_minute:
                    wait = max(1, math.ceil(q[0] + WINDOW_S - now))
                    return (f"this client started {len(q)} requests in the last minute, the most this server "
                            f"allows; retry in {wait} s"), wait
                q.append(now)
            self.active[client] = self.active.get(client, 0) + 1
            return None

    def leave(self, client: str) -> None:
        with self.lock:
            n = self.active.pop(client, 1) - 1
            if n > 0:
                self.active[client] = n


def _header(scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v
    return None


def has_body(scope) -> bool:
    """Whether the request announces a body (a Content-Length other than 0, or chunked)."""
    length = _header(scope, b"content-length")
    return _header(scope, b"transfer-encoding") is not None or (length is not None and length.strip() != b"0")


def bearer(scope) -> bytes | None:
    """The token of ``Authorization: Bearer TOKEN``, or None."""
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(b" ")
    return token.strip() or None if scheme.lower() == b"bearer" else None


async def send_json(send, status: int, message: str, headers: dict | None = None) -> None:
    """A JSON error answer ``{"error": message}`` on the ASGI ``send``."""
    body = json.dumps({"error": " ".join(message.split())}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


UNAUTHORIZED = "this server needs an API key: send the header Authorization: Bearer KEY"
BAD_KEY = "the API key is not valid"


class Guard:
    """ASGI middleware: keys, per-client limits and the closing rule (module doc).  Puts the
    client's name ("key N" or the address) in ``scope["ldmind.client"]`` for the access log.
    ``busy_s()``: the Retry-After of a client at its concurrency limit; ``count(status)``:
    told of every refusal it answers."""

    def __init__(self, app, settings, busy_s=lambda: 1.0, count=lambda status: None):
        self.app, self.busy_s, self.count = app, busy_s, count
        self.keys = Keys(settings.api_keys) if settings.api_keys else None
        self.limits = ClientLimits(settings.per_client_concurrency, settings.per_client_per_minute)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body_done = [not has_body(scope)]

        async def receive_watched():
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done[0] = True
            return message

        async def send_closing(message):
            if message["type"] == "http.response.start" and not body_done[0]:
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        client = (scope.get("client") or ("-", 0))[0]
        scope["ldmind.client"] = client
        if scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive_watched, send_closing)
        if self.keys is not None:
            token = bearer(scope)
            index = None if token is None else self.keys.match(token)
            if index is None:
                self.count(401)
                challenge = 'Bearer realm="ldmind"' + ("" if token is None else ', error="invalid_token"')
                return await send_json(send_closing, 401, UNAUTHORIZED if token is None else BAD_KEY,
                                       {"WWW-Authenticate": challenge})
            client = scope["ldmind.client"] = f"key {index + 1}"
        if scope["path"] not in LIMITED_PATHS:
            return await self.app(scope, receive_watched, send_closing)
        refused = self.limits.enter(client, self.busy_s())
        if refused is not None:
            self.count(429)
            return await send_json(send_closing, 429, refused[0], {"Retry-After": str(refused[1])})
        try:
            await self.app(scope, receive_watched, send_closing)
        finally:
            self.limits.leave(client)

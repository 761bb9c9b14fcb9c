"""The HTTP service: ``python -m runtime serve --engines DIR`` (Starlette + uvicorn, the
``serve`` extra: ``pip install 'ldmind[serve]'``).

    POST /v1/upscale?scale=2.5&seed=7   body: the image file's bytes   -> the image
    GET  /v1/info                       model, limits, queue state, counters (JSON)
    GET  /healthz                       liveness (JSON, no work)

The API, status codes and limits are in docs/RUNTIME.md ("Service"); what a request gets
is decided by ``runtime/service.py``, this module is the HTTP around it: API keys and
per-client limits by ``runtime/guard.py`` (ASGI middleware), the body read with its size
limit and timeouts here, the header timeout and uvicorn's own refusals as JSON by the
protocol class of ``runtime/serve_protocol.py``.  ``create_app`` is a plain ASGI app whose
whole configuration is one ``Settings``.  On SIGTERM or
SIGINT uvicorn stops accepting connections and waits (up to ``shutdown_timeout_s``) for
the requests it has, running and waiting ones alike; then any work still going (a request
that timed out, or one cut off by that limit) is aborted and the workers joined.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

from . import limits
from .errors import InputError
from .guard import Guard
from .service import Reply, Service, Settings, log, status_of

__all__ = ["Settings", "create_app", "serve", "run", "bind"]


async def _read_body(request, settings: Settings) -> bytearray:
    """The body, refused with 413 from Content-Length or as soon as it outgrows the limit, and
    with 408 when a piece of it takes longer than ``body_chunk_timeout_s`` or the whole longer
    than ``body_timeout_s`` (the answer closes the connection: ``guard.Guard``).  Nothing is
    admitted before the body is in: a slow upload holds no worker.  Returned as read, not
    copied (``decode_image`` takes any bytes-like object)."""
    limit = settings.max_body_bytes
    too_big = Reply(413, f"the upload is larger than this server's limit of {limit} bytes "
                         f"({limit / 2 ** 20:.1f} MiB)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.body_timeout_s
    body = bytearray()
    while True:
        wait = min(settings.body_chunk_timeout_s, deadline - loop.time())
        try:
            if wait <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(request.receive(), wait)
        except TimeoutError:
            raise Reply(408, f"the upload was too slow: {len(body)} bytes arrived and this server waits at most "
                             f"{settings.body_chunk_timeout_s:g} s for the next piece and "
                             f"{settings.body_timeout_s:g} s for the whole body") from None
        if message["type"] == "http.disconnect":
            raise Reply(400, "the upload was cut short (client disconnected)")
        body += message.get("body", b"")
        if len(body) > limit:
            raise too_big
        if not message.get("more_body", False):
            return body


class _AccessLog:
    """One line per request on the ``ldmind.serve`` logger: client, method, path, status, ms."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("ldmind.client") or (scope.get("client") or ("-", 0))[0]   # guard.Guard's name
            log.info("%s %s %s %d %.1f ms", client, scope["method"], scope["path"], status[0],
                     1000 * (time.perf_counter() - t0))


def create_app(pipeline, settings: Settings | None = None):
    """The Starlette app serving ``pipeline`` (a ``Pipeline``, or an engine directory loaded
    with the defaults).  ``app.state.service`` is its ``Service``."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if isinstance(pipeline, (str, Path)):
        from .pipeline import Pipeline
        pipeline = Pipeline.load(pipeline)
    service = Service(pipeline, settings or Settings())

    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)

    async def upscale(request) -> Response:
        try:
            p = service.parse(request.query_params)
            body = await _read_body(request, service.settings)
            data, media_type, headers = await service.upscale(body, p)
            response = Response(data, media_type=media_type, headers=headers)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes a JSON error
            response = error(*status_of(e))
        service.count(response.status_code)
        return response

    async def info(_request) -> Response:
        return JSONResponse({"model": service.model, "backend": service.pipe.backend,
                             "settings": service.settings.public(), "queue": service.state(),
                             "counters": dict(service.counts), "recent_seconds": service.recent_s,
                             "uptime_seconds": round(time.time() - service.started, 1),
                             "rss_bytes": limits.proc_bytes("/proc/self/status", "VmRSS")})

    async def healthz(_request) -> Response:
        return JSONResponse({"status": "ok"})

    async def http_error(_request, e):   # 404, 405: JSON like every error
        return error(e.status_code, str(e.detail), getattr(e, "headers", None))

    async def bug(_request, e):
        return error(*status_of(e))

    @asynccontextmanager
    async def lifespan(_app):
        yield
        await asyncio.to_thread(service.close)

    app = Starlette(routes=[Route("/v1/upscale", upscale, methods=["POST"]), Route("/v1/info", info),
                            Route("/healthz", healthz)],
                    middleware=[Middleware(_AccessLog),
                                Middleware(Guard, service.settings, busy_s=lambda: service.recent_s or 1.0,
                                           count=service.count)],
                    lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, Exception: bug})
    app.state.service = service
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: any free port); ``OSError`` as the OS says."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def serve(pipeline, settings: Settings | None = None, host: str = "127.0.0.1", port: int = 8000,
          access_log: bool = True, say=None) -> tuple[str | None, dict]:
    """Serve ``pipeline`` until SIGTERM or SIGINT, then stop gracefully (module doc): returns
    (the signal's name, or None, and the counters).  ``say(line)`` is told the address (port
    0: the port taken); ``access_log``: one line per request on stderr.  uvicorn itself logs
    only warnings.  A port that cannot be had is an ``InputError``."""
    settings = settings or Settings()
    try:
        sock = bind(host, port)
    except OSError as e:
        raise InputError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    handler = None
    try:
        app = create_app(pipeline, settings)
        host, port = sock.getsockname()[:2]
        if access_log:
            handler = logging.StreamHandler(sys.stderr)
            log.addHandler(handler)
            log.setLevel(logging.INFO)
        if say:
            say(f"serving {pipeline.describe()} at http://{f'[{host}]' if ':' in host else host}:{port} "
                f"({settings.workers} worker(s), queue {settings.queue}, timeout {settings.timeout_s:g} s, "
                f"{f'{len(settings.api_keys)} API key(s)' if settings.api_keys else 'no authentication'}); "
                f"SIGTERM or Ctrl+C stops after the requests in progress")
        caught: list[int] = []
        # uvicorn handles SIGTERM/SIGINT while it serves, then restores the handlers it found and
        # raises the signal again: these record it, so that a stop by signal is a normal end
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
            except ValueError:      # not the main thread: uvicorn handles no signals there either
                pass
        try:
            run(app, sock)
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
        return (signal.Signals(caught[0]).name if caught else None), dict(app.state.service.counts)
    finally:
        if handler is not None:
            log.removeHandler(handler)
        sock.close()


def server_config(app, **overrides):
    """The ``uvicorn.Config`` that ``run`` serves ``app`` with: the service's HTTP protocol
    (``serve_protocol``: header timeout, JSON errors), its header size limit, uvicorn's own
    logs at warning level only, the graceful shutdown of the module doc."""
    import uvicorn

    from .serve_protocol import protocol_class

    s: Settings = app.state.service.settings
    options = dict(log_config=None, log_level="warning", access_log=False, lifespan="on",
                   timeout_graceful_shutdown=s.shutdown_timeout_s, server_header=False,
                   http=protocol_class(s), h11_max_incomplete_event_size=s.max_header_bytes)
    return uvicorn.Config(app, **{**options, **overrides})


def run(app, sock: socket.socket) -> None:
    """uvicorn serving ``app`` on ``sock`` until told to stop (a signal, in the main thread),
    with the graceful shutdown of the module doc; the workers are joined when it returns."""
    import uvicorn

    try:
        uvicorn.Server(server_config(app)).run(sockets=[sock])
    finally:
        app.state.service.close()

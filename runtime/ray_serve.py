"""The HTTP service on Ray Serve: ``python -m runtime serve --ray local|ADDRESS --replicas N``.

Each replica is a Ray actor that loads its own ``Pipeline`` once and serves the service's
own ASGI app (``serve.create_app``: the same endpoints, limits, status codes and JSON
errors, each replica with its own ``--workers`` and ``--queue``); Serve's proxy listens on
``--host``/``--port`` and spreads the requests over the replicas (the least loaded of two
picked at random).  The replica that answered is named in ``X-Ldmind-Replica``.

Serve holds at most ``max_ongoing_requests`` requests per replica; it is set above the
app's own ``workers + queue`` so that the app, not Serve, answers a full replica: 503 with
Retry-After at once, as without Ray.  SIGINT or SIGTERM deletes the application: each
replica finishes its requests (up to ``--shutdown-timeout``), then a ``local`` instance
stops.  Ray is imported only here (and in ``ray_cluster.py``), and only with ``--ray``.
"""
from __future__ import annotations

import signal
import sys
import threading

from .console import PROG, say
from .errors import InputError
from .ray_cluster import connect, disconnect, error_line, gpus_per_worker, local_cpus, require_ray, worker_threads
from .service import Settings

APP_NAME = "ldmind"
REPLICA_HEADER = "X-Ldmind-Replica"
# requests a replica takes beyond the app's workers + queue: cheap ones (health, info) and
# those the app answers 503 at once
EXTRA_ONGOING = 16


class ReplicaTag:
    """ASGI middleware: ``X-Ldmind-Replica: <id>`` on every response.  Other attributes are
    the wrapped app's (Serve registers its exception handlers on it)."""

    def __init__(self, app, replica: str):
        self.app, self.replica = app, replica.encode()

    def __getattr__(self, name):
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def tagged(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-ldmind-replica", self.replica)]}
            await send(message)
        await self.app(scope, receive, tagged)


def application(engines, settings: Settings, replicas: int, backend: str = "auto", threads: int = 0,
                precision: str = "auto"):
    """The bound Ray Serve application: ``replicas`` copies of the service (for ``serve.run``;
    the caller is connected to Ray).  ``engines``: an engine directory (the same path on every
    node), or, as ``create_app`` takes a pipeline, a function that returns one, called once
    on each replica (``backend`` and ``threads`` are then its business)."""
    require_ray()
    from ray import serve

    @serve.deployment(name="LdmindService", num_replicas=replicas,
                      max_ongoing_requests=settings.workers + settings.queue + EXTRA_ONGOING,
                      ray_actor_options={"num_cpus": max(1, threads), "num_gpus": gpus_per_worker(backend)},
                      graceful_shutdown_timeout_s=settings.shutdown_timeout_s)
    @serve.ingress()
    class LdmindService:
        """One replica: a pipeline loaded once, the service's app around it."""

        def __init__(self, engines, settings: Settings, backend: str, threads: int, precision: str):
            from .pipeline import Pipeline

            self.pipe = engines() if callable(engines) else Pipeline.load(engines, backend=backend, threads=threads,
                                                                          precision=precision)
            self.settings = settings

        def __serve_build_asgi_app__(self):
            from .serve import create_app

            replica = serve.get_replica_context().replica_id.unique_id
            return ReplicaTag(create_app(self.pipe, self.settings), replica)

    return LdmindService.bind(engines if callable(engines) else str(engines), settings, backend, threads, precision)


def start(address: str, host: str, port: int, engines, settings: Settings, replicas: int,
          backend: str = "auto", threads: int = 0, precision: str = "auto") -> bool:
    """Connect to Ray (``ray_cluster.connect``), start Serve's proxy on ``host:port`` and run
    the application; returns whether the connection was started here (for ``stop``)."""
    ray = require_ray()
    from ray import serve

    started = connect(address, local_cpus(replicas, max(1, threads)) if address == "local" else None)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(application(engines, settings, replicas, backend, threads, precision), name=APP_NAME, route_prefix="/",
                  blocking=False)
    except (ray.exceptions.RayError, RuntimeError, ValueError) as e:
        stop(started)
        raise InputError(f"Ray Serve could not start the service: {error_line(e)}") from None
    except BaseException:
        stop(started)
        raise
    return started


def stop(started: bool) -> None:
    """Delete the application (its replicas finish their requests first); a ``local``
    instance is then shut down, a cluster keeps Serve and its other applications."""
    from ray import serve

    try:
        serve.delete(APP_NAME)          # blocks until the replicas have finished and gone
    except Exception:  # noqa: BLE001 - not deployed (a failed start): nothing to delete
        pass
    finally:
        disconnect(started)             # a local instance: Serve's controller and proxy go with it


def serve_on_ray(args, settings: Settings) -> int:
    """``python -m runtime serve --ray ...``: serve until SIGINT or SIGTERM (module doc)."""
    require_ray()
    from .bundle import load_bundle
    from .serve import bind

    bundle = load_bundle(args.engines, verify=False)      # a bad engine directory: its one line, here
    replicas = args.replicas or 1
    threads = worker_threads(args.threads, replicas, args.ray)
    port = args.port
    if port == 0:                  # Serve's proxy takes a fixed port: a free one, picked here
        probe = bind(args.host, 0)
        port = probe.getsockname()[1]
        probe.close()
    stopping = threading.Event()
    caught: list[int] = []

    def on_signal(signum, _frame):
        caught.append(signum)
        stopping.set()
    started = start(args.ray, args.host, port, args.engines, settings, replicas, args.backend, threads, args.precision)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            host = f"[{args.host}]" if ":" in args.host else args.host
            say(f"{PROG}: serving {bundle.name} at http://{host}:{port} on Ray Serve ({args.ray}): {replicas} "
                f"replica(s) x {settings.workers} worker(s) x {threads} thread(s), queue {settings.queue} per "
                f"replica, timeout {settings.timeout_s:g} s; SIGTERM or Ctrl+C stops after the requests in "
                f"progress", sys.stderr)
            while not stopping.wait(0.5):
                pass
        finally:
            stop(started)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    say(f"{PROG}: stopped{f' ({signal.Signals(caught[0]).name})' if caught else ''}", sys.stderr)
    return 0

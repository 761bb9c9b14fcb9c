"""The upscaling service without HTTP: settings, admission, the checks, the work.

``runtime/serve.py`` puts it behind HTTP (Starlette + uvicorn); everything that decides what
a request gets is here, importable without them (the CLI takes its defaults from
``Settings``).  A request's parameters are parsed and checked by ``runtime/request.py``, as
the CLI's flags are.  Design:

- One ``Pipeline`` (thread-safe after ``load``) is shared by ``Settings.workers`` threads.
  At most ``workers + queue`` upscales are admitted at once; one more is answered 503 with
  ``Retry-After`` at once instead of piling up, so the latency of what is admitted stays
  bounded and a client learns early that it should come back.
- Everything a request can get wrong (parameters, body size, the image, output size and
  memory) is checked *before* it is admitted, in the event loop or Python's default thread
  pool, never on a worker: a bad request costs no slot and always gets a 4xx JSON error.
- A request's deadline (``timeout_s`` from the end of its upload, checks and queue wait
  included) is checked between steps of the work through the pipeline's ``progress``
  callback, which raises to abort it: a timed-out request frees its worker within one step,
  not when the work would have ended.
- Failures map to statuses in one place, ``status_of``: a bad request is always a 4xx.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import io
import logging
import math
import re
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields

import numpy as np
from PIL import Image

from ldmind_ref.core import contract

from . import info, limits
from .errors import InputError, LdmindError, OutOfMemory
from .image_in import decode_image
from .image_out import encode_image
from .output_paths import ALPHA_FORMATS, alpha_extensions
from .request import (UpscaleRequest, int_at_least, integer, parse_backproject, parse_eta, parse_fidelity,
                      parse_format, parse_quality, parse_sampler, parse_scale, parse_size)

log = logging.getLogger("ldmind.serve")


@dataclass(frozen=True)
class Settings:
    # Worker threads running upscales on the one pipeline.  1 by default: ONNX Runtime already
    # spreads one graph call over every core, so on a small CPU a second worker only
    # interleaves two requests, each slower, for no more throughput; more pay off with a GPU
    # or many cores (then also consider --threads to split the cores between workers).
    workers: int = 1
    # Requests admitted beyond the running ones, waiting for a worker; one more gets 503.
    queue: int = 8
    # Largest request body (the encoded image), bytes: 413 beyond, from Content-Length or
    # while reading; never more than this is held in memory for one request.
    max_body_bytes: int = 32 * 2 ** 20
    # Largest input image, pixels (from the file's header, before decoding): 413 beyond.
    max_input_pixels: int = 4_000_000
    # Largest output image, pixels: 413 beyond (checked before the memory check of limits.py).
    max_output_pixels: int = 16_000_000
    # Seconds from the end of the upload (checks and queue wait included) to the answer: 504 beyond.
    timeout_s: float = 300.0
    # DDIM steps when the request gives none, and the most a request may ask for.
    default_steps: int = contract.DEFAULT_STEPS
    max_steps: int = 200
    # On SIGTERM/SIGINT: seconds to let running and waiting requests finish.
    shutdown_timeout_s: float = 60.0
    # API keys (runtime/guard.py): empty, no authentication; else every request but /healthz
    # needs "Authorization: Bearer KEY" with one of them (401 without).  Never shown or logged.
    api_keys: tuple = field(default=(), repr=False)
    # Per client (the API key when keys are set, else the peer address), on /v1/upscale: requests
    # in progress at once (upload included) and requests started in the last 60 s; 429 beyond;
    # 0: no limit.
    per_client_concurrency: int = 4
    per_client_per_minute: int = 120
    # Slow clients: seconds for a request's headers to arrive (from the connection's opening or
    # the end of the previous answer; 408 or a silent close), for its whole body, and between
    # two pieces of its body (408 and the connection closed).
    header_timeout_s: float = 10.0
    body_timeout_s: float = 120.0
    body_chunk_timeout_s: float = 10.0
    # Largest request line + headers, bytes: 431 beyond.
    max_header_bytes: int = 16 * 1024

    def __post_init__(self):
        if not (isinstance(self.api_keys, tuple) and all(isinstance(k, str) and k for k in self.api_keys)):
            raise InputError("serve setting api_keys must be a tuple of non-empty strings")
        for f in fields(self):
            if f.name == "api_keys":
                continue
            v, lo = getattr(self, f.name), 0 if f.name in _ZERO_ALLOWED else 1
            if f.type == "int":
                if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                    raise InputError(f"serve setting {f.name} must be an integer >= {lo}, got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise InputError(f"serve setting {f.name} must be a number > 0, got {v!r}")
        if self.default_steps > self.max_steps:
            raise InputError(f"serve: default steps {self.default_steps} exceed max steps {self.max_steps}")

    def public(self) -> dict:
        """The settings as /v1/info shows them: the keys replaced by whether there are any."""
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "api_keys"},
                "authentication": bool(self.api_keys)}


_ZERO_ALLOWED = ("queue", "per_client_concurrency", "per_client_per_minute")


PARAMETERS = ("scale", "size", "seed", "steps", "sampler", "eta", "fidelity", "backproject", "format", "quality")


class Reply(Exception):
    """A refusal: HTTP ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


class Aborted(Exception):
    """Raised from the progress callback to stop the work: its deadline passed (504), or the
    server is stopping (503)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Query:
    """A request's query string, parsed and checked: what to make and how to encode it."""
    request: UpscaleRequest
    fmt: str                 # Pillow's format name
    quality: int | None


@dataclass
class Job:
    image: np.ndarray
    metadata: object
    query: Query
    deadline: float          # time.monotonic()
    started: float = 0.0     # when a worker took it


class Service:
    """The shared state: the pipeline, the worker pool, admission and the counters.  Apart
    from the Starlette plumbing in ``create_app``, all of the service is here."""

    def __init__(self, pipeline, settings: Settings):
        self.pipe, self.settings = pipeline, settings
        self.pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="ldmind-worker")
        self.lock = threading.Lock()
        self.admitted = 0         # running + waiting
        self.running = 0
        self.recent_s: float | None = None   # moving average of the work's seconds
        self.counts = {"served": 0, "rejected_busy": 0, "client_errors": 0, "timed_out": 0, "server_errors": 0,
                       "unauthorized": 0, "rate_limited": 0}
        self.stopping = threading.Event()
        self.started = time.time()
        self.model = {k: v for k, v in info.summary(pipeline.bundle, verified=False).items()
                      if k != "directory"}    # the server's file system is not the client's business

    # -- admission ---------------------------------------------------------------------------
    def admit(self) -> bool:
        with self.lock:
            if self.stopping.is_set() or self.admitted >= self.settings.workers + self.settings.queue:
                return False
            self.admitted += 1
            return True

    def _release(self, _future: Future | None) -> None:
        with self.lock:
            self.admitted -= 1
            idle = self.admitted == 0
        if idle and _malloc_trim is not None:
            _malloc_trim(0)

    def retry_after(self) -> int:
        """Seconds until the requests already waiting would have started, from the recent
        service time (1 s before there is one)."""
        with self.lock:
            waiting = self.admitted - self.running
            per = self.recent_s or 1.0
        return max(1, min(3600, math.ceil(per * (waiting + 1) / self.settings.workers)))

    def state(self) -> dict:
        with self.lock:
            return {"workers": self.settings.workers, "running": self.running,
                    "waiting": self.admitted - self.running, "capacity": self.settings.workers + self.settings.queue}

    def count(self, status: int) -> None:
        key = ("served" if status < 400 else "rejected_busy" if status == 503 else "timed_out" if status == 504
               else "unauthorized" if status == 401 else "rate_limited" if status == 429
               else "client_errors" if status < 500 else "server_errors")
        with self.lock:
            self.counts[key] += 1

    # -- checks before admission ---------------------------------------------------------------
    def parse(self, query) -> Query:
        """The query string as a ``Query``, by the parsers the CLI's flags use; ``Reply(400)``."""
        unknown = sorted(set(query.keys()) - set(PARAMETERS))
        if unknown:
            raise Reply(400, f"unknown parameter {unknown[0]!r}; accepted: {', '.join(PARAMETERS)}")
        s = self.settings

        def get(name, parse, default):
            values = query.getlist(name)
            if len(values) > 1:
                raise Reply(400, f"parameter {name!r} given {len(values)} times")
            if not values:
                return default
            try:
                return parse(values[0])
            except argparse.ArgumentTypeError as e:
                raise Reply(400, str(e).removeprefix("--")) from None

        p = {"scale": get("scale", parse_scale, None), "size": get("size", parse_size, None),
             "seed": get("seed", integer("seed"), contract.DEFAULT_SEED),
             "eta": get("eta", parse_eta, contract.DEFAULT_ETA),
             "fidelity": get("fidelity", parse_fidelity, contract.DEFAULT_FIDELITY),
             "steps": get("steps", int_at_least(1, "steps"), s.default_steps),
             "backproject": get("backproject", parse_backproject, contract.DEFAULT_BACKPROJECT),
             "sampler": get("sampler", parse_sampler, contract.DEFAULT_SAMPLER)}
        fmt, quality = get("format", parse_format, "PNG"), get("quality", parse_quality, None)
        # in the query's own terms (the request's check would say "a scale or a size")
        if p["scale"] is None and p["size"] is None:
            raise Reply(400, "give scale=S or size=WxH")
        if p["scale"] is not None and p["size"] is not None:
            raise Reply(400, "give either scale or size, not both")
        if p["steps"] > s.max_steps:
            raise Reply(400, f"steps must be at most {s.max_steps} on this server, got {p['steps']}")
        try:
            return Query(UpscaleRequest(**p), fmt, quality)
        except InputError as e:
            raise Reply(400, str(e)) from None

    def prepare(self, body: bytearray, q: Query) -> tuple[np.ndarray, object, tuple[int, int]]:
        """Decode and check the upload and the output it asks for (a Starlette thread, not a
        worker): (the image as ``upscale`` takes it, its metadata, (H, W)) or ``Reply``."""
        s, r = self.settings, q.request
        header = _header_size(body)
        if isinstance(header, int):     # too large for Pillow to open at all
            raise Reply(413, f"the input image's header declares {_mpx(header)}; this server takes at most "
                             f"{_mpx(s.max_input_pixels)}")
        if header and header[0] * header[1] > s.max_input_pixels:
            raise Reply(413, f"the input image is {header[0]}x{header[1]} = {_mpx(header[0] * header[1])}; this "
                             f"server takes at most {_mpx(s.max_input_pixels)}")
        try:
            rgb, alpha, meta = decode_image(body, "the uploaded image")
            H, W = self.pipe.output_size(rgb.shape[0], rgb.shape[1], r.scale, r.size)
        except InputError as e:
            raise Reply(400, str(e)) from None
        if H * W > s.max_output_pixels:
            raise Reply(413, f"a {W}x{H} output is {_mpx(H * W)}; this server makes at most "
                             f"{_mpx(s.max_output_pixels)}: ask for a smaller scale or size")
        try:
            limits.check_output(1, H, W, itemsize=rgb.dtype.itemsize)     # uint16 for a 16-bit upload
        except InputError as e:
            raise Reply(413, str(e)) from None
        if alpha is not None and q.fmt not in ALPHA_FORMATS:      # the hint names format= values
            raise Reply(400, f"the image has transparency and {q.fmt} cannot store it; ask for format="
                             + ", ".join(sorted(e[1:] for e in alpha_extensions())))
        try:
            self.pipe.sampling_schedule(r.steps, r.eta, r.schedule, r.sampler)   # the pipeline's own check
        except InputError as e:
            raise Reply(400, str(e)) from None
        return (rgb if alpha is None else np.dstack((rgb, alpha))), meta, (H, W)

    # -- the work, on a worker thread ----------------------------------------------------------
    def work(self, job: Job) -> bytes:
        with self.lock:
            self.running += 1
        job.started = time.monotonic()
        try:
            def progress(_stage, _done, _total):
                if self.stopping.is_set():
                    raise Aborted(503, "the server is shutting down; retry")
                if time.monotonic() > job.deadline:
                    raise Aborted(504, self.timeout_message())
            progress("start", 0, 1)
            [image] = self.pipe.upscale(job.image, **job.query.request.kwargs(), progress=progress, output="array")
            return encode_image(image, job.query.fmt, job.metadata, job.query.quality)
        finally:
            took = time.monotonic() - job.started
            with self.lock:
                self.running -= 1
                self.recent_s = took if self.recent_s is None else 0.8 * self.recent_s + 0.2 * took

    async def upscale(self, body: bytearray, q: Query) -> tuple[bytes, str, dict]:
        """Check, admit, run: (the encoded image, its media type, headers) or an exception
        (``Reply``, ``Aborted``, the pipeline's) that ``status_of`` turns into a status."""
        t0 = time.monotonic()
        image, meta, (H, W) = await asyncio.to_thread(self.prepare, body, q)
        del body
        if not self.admit():
            raise Reply(503, f"the server is busy ({self.settings.workers} running, {self.settings.queue} waiting); "
                             f"retry later", {"Retry-After": str(self.retry_after())})
        job = Job(image, meta, q, deadline=t0 + self.settings.timeout_s)
        try:
            future = self.pool.submit(self.work, job)
        except RuntimeError:       # the pool is shut down: we are stopping
            self._release(None)
            raise Reply(503, "the server is shutting down; retry", {"Retry-After": "1"}) from None
        future.add_done_callback(self._release)
        waiter = asyncio.wrap_future(future)
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())   # never "never retrieved"
        try:
            done, _ = await asyncio.wait({waiter}, timeout=max(0.0, job.deadline - time.monotonic()))
        except asyncio.CancelledError:      # the shutdown timeout ran out
            future.cancel()                 # not started: never runs; running: aborted by close()
            raise
        if not done:
            future.cancel()                 # still waiting: never runs; running: its progress aborts it
            raise Aborted(504, self.timeout_message())
        data = waiter.result()
        end = time.monotonic()
        started = job.started or end
        return data, Image.MIME.get(q.fmt, "application/octet-stream"), {
            "X-Ldmind-Size": f"{W}x{H}", "X-Ldmind-Seed": str(q.request.seed), "X-Ldmind-Steps": str(q.request.steps),
            "X-Ldmind-Queue-Seconds": f"{started - t0:.3f}", "X-Ldmind-Seconds": f"{end - t0:.3f}"}

    def timeout_message(self) -> str:
        return (f"the request did not finish within the server's {self.settings.timeout_s:g} s timeout (queue "
                f"wait included); ask for fewer steps or a smaller output, or retry later")

    def close(self) -> None:
        """Abort what still runs (at its next step) and join the workers; idempotent."""
        self.stopping.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _trimmer():
    """glibc's ``malloc_trim``, or None (another C library).  ONNX Runtime runs here without
    its arena, so each graph call mallocs and frees its activations; after a burst glibc
    keeps much of that freed memory (its mmap threshold adapts upward), and an idle server
    would sit at the burst's high-water mark.  Trimming when the last admitted request ends
    (a few ms, never under continuous load) gives it back: with 32 clients on the tiny test
    model, 157-179 MiB idle without, 135-141 MiB with (the live memory)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_malloc_trim = _trimmer()


def _mpx(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} Mpx"


def _header_size(data: bytes) -> tuple[int, int] | int | None:
    """(width, height) from the image's header alone; the pixel count where Pillow refuses to
    open an image that large (a decompression bomb: its size is all it says); or None if Pillow
    cannot tell (``decode_image`` then says what is wrong)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except Image.DecompressionBombError as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        return int(m.group(1)) if m else 2 * int(Image.MAX_IMAGE_PIXELS or 0) + 1
    except Exception:  # noqa: BLE001 - any failure here is decode_image's to report
        return None


def status_of(e: BaseException) -> tuple[int, str, dict | None]:
    """A failure as (status, one-line message, headers).  A bad request is 4xx; 5xx means
    the server (503 busy or stopping, 504 too slow, 507 out of memory, 500 engines or bug)."""
    if isinstance(e, Reply):
        return e.status, str(e), e.headers
    if isinstance(e, Aborted):
        return e.status, str(e), {"Retry-After": "1"} if e.status == 503 else None
    if isinstance(e, InputError):
        return 400, str(e), None
    if isinstance(e, (OutOfMemory, MemoryError)):
        return 507, f"the server ran out of memory for this request ({e or 'MemoryError'}); retry later or ask " \
                    f"for a smaller output", None
    if isinstance(e, LdmindError):
        return 500, str(e), None
    log.error("internal error", exc_info=e)
    return 500, f"internal error: {type(e).__name__}: {e}", None

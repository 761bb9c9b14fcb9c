"""The HTTP service (``runtime/serve.py``, ``python -m runtime serve``) on a real uvicorn on
127.0.0.1, through the standard library's ``http.client``: results equal ``Pipeline.upscale``;
bad requests are 4xx JSON (never 5xx), limits 413, a full queue 503 with Retry-After, a
deadline 504 that frees the worker; SIGTERM lets running and waiting requests finish, exit 0.

A worker is held deterministically by ``Gated``, a stand-in for the pipeline that waits at a
gate before the real ``upscale`` (reporting progress meanwhile, as the pipeline does, so a
deadline can abort it): no test hook in the service itself."""
from __future__ import annotations

import http.client
import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import uvicorn  # noqa: E402

from runtime import InputError, Pipeline  # noqa: E402
from runtime.cli import main  # noqa: E402
from runtime.serve import Settings, bind, create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST = "steps=1&backproject=1"


@pytest.fixture(scope="module")
def engines(runtime_exports) -> Path:
    return runtime_exports["sr"]["engines"]


@pytest.fixture(scope="module")
def pipe(engines) -> Pipeline:
    return Pipeline.load(engines, backend="cpu")


class Gated:
    """The pipeline behind a gate: while ``gate`` is clear, ``upscale`` waits (``entered`` set),
    calling ``progress`` as the real work does between steps."""

    def __init__(self, pipe: Pipeline):
        self._pipe = pipe
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def upscale(self, image, progress=None, **kw):
        self.entered.set()
        while not self.gate.wait(0.02):
            if progress:
                progress("held", 0, 1)
        return self._pipe.upscale(image, progress=progress, **kw)


@contextmanager
def running(app, config: uvicorn.Config | None = None):
    """``app`` on uvicorn on a free loopback port, in a thread: yields the port.  ``config``:
    the server's (default: a quiet one with the app's lifespan)."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(config or uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            time.sleep(0.01)
        assert server.started
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def call(port: int, path: str, body: bytes | None = None, method: str | None = None, timeout: float = 60, **kw):
    """(status, headers, body) of one request on a fresh connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method or ("GET" if body is None else "POST"), path, body=body, **kw)
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def error(status: int, data: bytes) -> str:
    msg = json.loads(data)["error"]
    assert isinstance(msg, str) and msg and "\n" not in msg and "Traceback" not in msg, (status, msg)
    return msg


LR = (np.random.RandomState(0).rand(16, 16, 3) * 255).astype(np.uint8)
SETTINGS = Settings(workers=1, queue=0, max_body_bytes=64 * 1024, max_input_pixels=32 * 32,
                    max_output_pixels=64 * 64, timeout_s=60, default_steps=1, max_steps=10)


@pytest.fixture(scope="module")
def server(pipe):
    gated = Gated(pipe)
    app = create_app(gated, SETTINGS)
    with running(app) as port:
        yield port, gated, app.state.service


def test_upscale_equals_the_pipeline(server, pipe):
    port, _, _ = server
    status, headers, data = call(port, f"/v1/upscale?scale=2&seed=5&{FAST}", png(LR))
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert headers["X-Ldmind-Size"] == "32x32" and headers["X-Ldmind-Seed"] == "5"
    assert float(headers["X-Ldmind-Seconds"]) >= float(headers["X-Ldmind-Queue-Seconds"]) >= 0
    [want] = pipe.upscale(LR, scale=2, steps=1, backproject=1, seed=5)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), want)           # byte for byte
    status, _, data = call(port, f"/v1/upscale?scale=2&seed=5&fidelity=0.5&{FAST}", png(LR))
    [want] = pipe.upscale(LR, scale=2, steps=1, backproject=1, seed=5, fidelity=0.5)
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(data))), want)
    # size=WxH, another format, another seed
    status, headers, data = call(port, f"/v1/upscale?size=24x20&seed=9&format=webp&{FAST}", png(LR))
    assert status == 200 and headers["Content-Type"] == "image/webp" and headers["X-Ldmind-Size"] == "24x20"
    assert Image.open(io.BytesIO(data)).size == (24, 20)
    # transparency kept (PNG): colour and alpha as the API gives them
    rgba = np.dstack((LR, np.linspace(0, 255, 256).astype(np.uint8).reshape(16, 16)))
    status, _, data = call(port, f"/v1/upscale?scale=3&seed=1&{FAST}", png(rgba))
    [want] = pipe.upscale(rgba, scale=3, steps=1, backproject=1, seed=1)
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(data))), want)


TRUNCATED = png(LR)[:60]


@pytest.mark.parametrize("query,body,status,says", [
    ("scale=2", b"not an image at all", 400, "not a recognised image"),
    ("scale=2", TRUNCATED, 400, "truncated or corrupt"),
    ("scale=2", b"", 400, "empty"),
    ("scale=2&size=32x32", None, 400, "not both"),
    ("seed=3", None, 400, "scale=S or size=WxH"),
    ("scale=0", None, 400, "scale must be"),
    ("scale=nan", None, 400, "scale must be"),
    ("size=32by32", None, 400, "WIDTHxHEIGHT"),
    ("scale=2&steps=11", None, 400, "at most 10"),
    ("scale=2&steps=0", None, 400, "steps must be >= 1"),
    ("scale=2&eta=-1", None, 400, "eta must be"),
    ("scale=2&fidelity=2", None, 400, "fidelity must be a number in 0..1, got 2"),
    ("scale=2&eta=100&steps=5&sampler=ddim", None, 400, "eta 100 is too large"),
    ("scale=2&seed=x", None, 400, "seed must be an integer"),
    ("scale=2&backproject=101", None, 400, "backproject must be in 0..100"),
    ("scale=2&quality=0", None, 400, "quality must be in 1..100"),
    ("scale=2&format=gif", None, 400, "format must be one of png"),
    ("scale=2&scale=3", None, 400, "given 2 times"),
    ("scale=2&colour=red", None, 400, "unknown parameter 'colour'"),
    ("scale=2&format=jpeg", "rgba", 400, "transparency and JPEG"),
    ("scale=8", None, 413, "at most 0.0041 Mpx"),                          # 128 x 128 output > 64 x 64
    ("scale=1", "large", 413, "takes at most"),                          # 40 x 40 input > 32 x 32
])
def test_bad_requests_are_4xx_json(server, query, body, status, says):
    port, _, service = server
    data = {None: png(LR), "rgba": png(np.dstack((LR, np.full((16, 16), 9, np.uint8)))),
            "large": png(np.zeros((40, 40, 3), np.uint8))}.get(body, body)
    got, headers, out = call(port, f"/v1/upscale?{query}", data)
    assert got == status and headers["Content-Type"] == "application/json"
    assert says in error(got, out)
    assert service.state()["running"] == 0


def test_body_limit_413_before_reading_it(server):
    port, _, _ = server
    # declared too large: refused from the headers, nothing sent
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.putrequest("POST", "/v1/upscale?scale=2")
    c.putheader("Content-Length", str(10 ** 9))
    c.endheaders()
    r = c.getresponse()
    assert r.status == 413 and "larger than this server's limit" in error(413, r.read())
    c.close()
    # no length (chunked): refused once it outgrows the limit
    status, _, data = call(port, "/v1/upscale?scale=2", iter([b"\0" * 30000] * 3), encode_chunked=True)
    assert status == 413 and "65536 bytes" in error(status, data)


def test_full_queue_503_then_recovery_and_bad_requests_still_4xx(server):
    port, gated, service = server
    gated.gate.clear()
    gated.entered.clear()
    held = {}
    t = threading.Thread(target=lambda: held.update(r=call(port, f"/v1/upscale?scale=2&{FAST}", png(LR))))
    t.start()
    try:
        assert gated.entered.wait(30)
        assert service.state() == {"workers": 1, "running": 1, "waiting": 0, "capacity": 1}
        status, headers, data = call(port, f"/v1/upscale?scale=2&{FAST}", png(LR))
        assert status == 503 and int(headers["Retry-After"]) >= 1 and "busy" in error(status, data)
        # checked before admission: a bad request is still a 4xx when no slot is free
        assert call(port, "/v1/upscale?scale=-1", png(LR))[0] == 400
        assert call(port, "/v1/upscale?scale=2", b"garbage")[0] == 400
    finally:
        gated.gate.set()
        t.join(60)
    assert held["r"][0] == 200
    assert call(port, f"/v1/upscale?scale=2&{FAST}", png(LR))[0] == 200                # recovered
    counters = json.loads(call(port, "/v1/info")[2])["counters"]
    assert counters["rejected_busy"] >= 1 and counters["served"] >= 2 and counters["server_errors"] == 0


def test_timeout_504_frees_the_worker(pipe):
    gated = Gated(pipe)
    app = create_app(gated, Settings(workers=1, queue=1, timeout_s=1.0))
    service = app.state.service
    with running(app) as port:
        gated.gate.clear()
        t0 = time.monotonic()
        status, _, data = call(port, f"/v1/upscale?scale=2&{FAST}", png(LR))
        assert status == 504 and "1 s timeout" in error(status, data)
        assert 0.9 < time.monotonic() - t0 < 10
        for _ in range(200):                 # aborted at its next progress call, gate still shut
            if service.state()["running"] == 0:
                break
            time.sleep(0.01)
        assert service.state() == {"workers": 1, "running": 0, "waiting": 0, "capacity": 2}
        gated.gate.set()
        assert call(port, f"/v1/upscale?scale=2&{FAST}", png(LR))[0] == 200
        assert service.counts["timed_out"] == 1 and service.counts["served"] == 1


def test_health_info_and_unknown_paths(server):
    port, _, _ = server
    status, headers, data = call(port, "/healthz")
    assert status == 200 and json.loads(data) == {"status": "ok"}
    status, _, data = call(port, "/v1/info")
    info = json.loads(data)
    assert status == 200 and info["model"]["kind"] == "super-resolution" and "directory" not in info["model"]
    assert info["backend"] == "cpu" and info["settings"]["max_output_pixels"] == 64 * 64
    assert info["queue"]["capacity"] == 1 and set(info["counters"]) >= {"served", "rejected_busy"}
    assert call(port, "/nope")[0] == 404 and "Not Found" in error(404, call(port, "/nope")[2])
    status, _, data = call(port, "/v1/upscale")                                        # GET
    assert status == 405 and error(status, data)


def test_settings_are_checked():
    with pytest.raises(InputError, match="workers must be an integer >= 1"):
        Settings(workers=0)
    with pytest.raises(InputError, match="default steps 50 exceed max steps 10"):
        Settings(max_steps=10, default_steps=50)


def test_sigterm_lets_running_and_waiting_requests_finish(engines):
    """The CLI end to end: a request running and one waiting when SIGTERM arrives both get
    their image, a new connection is refused, the process exits 0 with a one-line summary."""
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "serve", "--engines", str(engines), "--port", "0",
                             "--backend", "cpu", "--queue", "1"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, line
        port = int(m.group(1))
        lr = (np.random.RandomState(1).rand(48, 48, 3) * 255).astype(np.uint8)
        results = [None, None]

        def slow(k):
            results[k] = call(port, "/v1/upscale?scale=4&steps=50", png(lr), timeout=120)
        threads = [threading.Thread(target=slow, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for _ in range(1000):
            q = json.loads(call(port, "/v1/info")[2])["queue"]
            if (q["running"], q["waiting"]) == (1, 1):
                break
            time.sleep(0.01)
        assert (q["running"], q["waiting"]) == (1, 1)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(120)
        for status, headers, data in results:
            assert status == 200 and Image.open(io.BytesIO(data)).size == (192, 192)
        assert proc.wait(60) == 0
        err = proc.stderr.read()
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("python -m runtime: stopped (SIGTERM): 2 served")
        assert err.count("POST /v1/upscale 200") == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_without_the_extra_says_so(engines, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "starlette", None)        # as if not installed
    assert main(["serve", "--engines", str(engines)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "install the serve extra: pip install 'ldmind[serve]'" in err


@pytest.mark.parametrize("argv,says", [
    (["--port", "70000"], "--port must be in 0..65535"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--timeout", "0"], "--timeout must be a finite number > 0"),
    (["--max-body-mb", "x"], "--max-body-mb must be a number"),
])
def test_serve_options_are_checked(engines, argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--engines", str(engines), *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and says in err


def test_busy_port_is_one_line(engines, capsys):
    taken = bind("127.0.0.1", 0)
    try:
        assert main(["serve", "--engines", str(engines), "--backend", "cpu", "--port",
                     str(taken.getsockname()[1])]) == 2
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot listen on 127.0.0.1:" in err


def test_sixteen_bit_upload_comes_back_sixteen_bit(server, pipe):
    """A 16-bit PNG in: a 16-bit PNG out, equal to the API's uint16 result; the DPM solver
    chosen by name gives the API's image for the same sampler."""
    import png as pypng

    from runtime.image_out import encode_image

    lr16 = (np.random.RandomState(3).rand(12, 12, 3) * 65535).astype(np.uint16)
    port, _, _ = server
    status, _, data = call(port, f"/v1/upscale?scale=2&seed=2&sampler=dpm%2B%2B2m&{FAST}", encode_image(lr16, "PNG"))
    assert status == 200
    w, h, rows, info = pypng.Reader(bytes=data).asDirect()
    got = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, 3)
    [want] = pipe.upscale(lr16, scale=2, steps=1, backproject=1, seed=2, sampler="dpm++2m")
    assert info["bitdepth"] == 16 and want.dtype == np.uint16 and np.array_equal(got, want)

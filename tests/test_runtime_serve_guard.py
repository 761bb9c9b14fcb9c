"""The service against hostile or careless clients (issue 23), on a real uvicorn on 127.0.0.1
configured as ``python -m runtime serve`` configures it (``runtime.serve.server_config``):
API keys (401, constant-time check, never logged, /healthz open), per-client limits (429 with
Retry-After), slow uploads and slow headers (408, the connection closed, no worker held),
the declared-size check (413), and uvicorn's own refusals as JSON (400, 431)."""
from __future__ import annotations

import http.client
import io
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from runtime import InputError, Pipeline  # noqa: E402
from runtime.cli import main  # noqa: E402
from runtime.guard import load_api_keys  # noqa: E402
from runtime.serve import Settings, create_app, server_config  # noqa: E402
from test_runtime_serve import running as running_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST = "steps=1&backproject=1"
KEYS = ("k1-" + "a" * 30, "k2-" + "b" * 30)
LR = (np.random.RandomState(0).rand(16, 16, 3) * 255).astype(np.uint8)
BASE = dict(workers=1, queue=0, timeout_s=60, default_steps=1, max_steps=10, per_client_concurrency=0,
            per_client_per_minute=0, header_timeout_s=1.0, body_timeout_s=2.0, body_chunk_timeout_s=0.5,
            max_header_bytes=8192)


@pytest.fixture(scope="module")
def pipe(sr_engines) -> Pipeline:
    return Pipeline.load(sr_engines, backend="cpu")


@contextmanager
def running(pipe, **settings):
    """The app on uvicorn as ``serve`` runs it, on a free loopback port: yields the port."""
    app = create_app(pipe, Settings(**{**BASE, **settings}))
    with running_app(app, server_config(app)) as port:
        yield port


def call(port, path, body=None, key=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        h = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        c.request("GET" if body is None else "POST", path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def png(a) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def error(data: bytes) -> str:
    msg = json.loads(data)["error"]
    assert isinstance(msg, str) and msg and "\n" not in msg
    return msg


def raw(port: int, data: bytes, timeout: float = 10) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything until the server closes the connection (a timeout fails the test)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    return out


def parse(answer: bytes) -> tuple[int, dict, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}, body


def png_header(w: int, h: int) -> bytes:
    """A PNG that declares w x h pixels and holds none."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


# -- API keys ---------------------------------------------------------------------------------------
def key_file(tmp_path, text: str, mode: int = 0o600) -> Path:
    p = tmp_path / "keys"
    p.write_text(text)
    p.chmod(mode)
    return p


def test_key_file_is_checked(tmp_path, sr_engines, capsys):
    assert load_api_keys(key_file(tmp_path, f"# ops\n\n{KEYS[0]}\n  {KEYS[1]}  \n{KEYS[0]}\n")) == KEYS
    for text, mode, says in [(f"{KEYS[0]}\n", 0o644, "chmod 600"), ("# none\n\n", 0o600, "no keys"),
                             ("short\n", 0o600, "line 1: a key must be at least 16")]:
        with pytest.raises(InputError, match=re.escape(says)):
            load_api_keys(key_file(tmp_path, text, mode))
        assert main(["serve", "--engines", str(sr_engines), "--api-key-file", str(tmp_path / "keys")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err and "short" not in err
    assert main(["serve", "--engines", str(sr_engines), "--api-key-file", str(tmp_path / "missing")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_keys_401_200_healthz_open_and_never_logged(tmp_path, sr_engines, pipe):
    """``serve --api-key-file`` end to end: 401 JSON with WWW-Authenticate without a key or with
    a wrong one, 200 with each right one, /healthz open; stderr never holds a key."""
    keys = key_file(tmp_path, "\n".join(KEYS) + "\n")
    wrong = "w-" + "z" * 30
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "serve", "--engines", str(sr_engines), "--port", "0",
                             "--backend", "cpu", "--api-key-file", str(keys)], cwd=ROOT, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stderr.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)", line).group(1))
        assert "2 API key(s)" in line
        status, headers, data = call(port, f"/v1/upscale?scale=2&{FAST}", png(LR))
        assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="ldmind"' and "API key" in error(data)
        status, headers, data = call(port, f"/v1/upscale?scale=2&{FAST}", png(LR), key=wrong)
        assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
        assert error(data) == "the API key is not valid"
        assert call(port, "/v1/info", headers={"Authorization": "Basic " + KEYS[0]})[0] == 401
        assert call(port, "/v1/info")[0] == 401
        status, _, data = call(port, "/healthz")
        assert status == 200 and json.loads(data) == {"status": "ok"}
        [want] = pipe.upscale(LR, scale=2, steps=1, backproject=1, seed=0)
        for key in KEYS:
            status, _, data = call(port, f"/v1/upscale?scale=2&{FAST}", png(LR), key=key)
            assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(data))), want)
        info = json.loads(call(port, "/v1/info", key=KEYS[1])[2])
        assert info["settings"]["authentication"] is True and "api_keys" not in info["settings"]
        assert info["counters"]["unauthorized"] == 4 and KEYS[0] not in json.dumps(info)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        err = line + proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "key 1 POST /v1/upscale 200" in err and "key 2 POST /v1/upscale 200" in err
    assert "127.0.0.1 POST /v1/upscale 401" in err
    for secret in (*KEYS, wrong, "a" * 16, "z" * 16):
        assert secret not in err


# -- per-client limits ------------------------------------------------------------------------------
def hold_upload(port: int, key: str | None = None) -> socket.socket:
    """A connection in the middle of an upload (headers and half of the body sent)."""
    body = png(LR)
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return raw(port, (f"POST /v1/upscale?scale=2&{FAST} HTTP/1.1\r\nHost: x\r\n{auth}"
                      f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:len(body) // 2])


def test_per_client_concurrency_429(pipe):
    with running(pipe, api_keys=KEYS, per_client_concurrency=1, body_chunk_timeout_s=30, body_timeout_s=30) as port:
        held = hold_upload(port, KEYS[0])
        time.sleep(0.3)
        try:
            status, headers, data = call(port, f"/v1/upscale?scale=2&{FAST}", png(LR), key=KEYS[0])
            assert status == 429 and int(headers["Retry-After"]) >= 1 and "1 requests in progress" in error(data)
            assert call(port, f"/v1/upscale?scale=2&{FAST}", png(LR), key=KEYS[1])[0] == 200   # another client
        finally:
            held.close()
        time.sleep(0.3)
        assert call(port, f"/v1/upscale?scale=2&{FAST}", png(LR), key=KEYS[0])[0] == 200     # slot freed


def test_per_minute_429(pipe):
    with running(pipe, per_client_per_minute=2) as port:
        assert call(port, "/v1/upscale?scale=-1", png(LR))[0] == 400          # refused requests count too
        assert call(port, f"/v1/upscale?scale=2&{FAST}", png(LR))[0] == 200
        status, headers, data = call(port, f"/v1/upscale?scale=2&{FAST}", png(LR))
        assert status == 429 and 50 <= int(headers["Retry-After"]) <= 60 and "in the last minute" in error(data)
        assert call(port, "/healthz")[0] == 200 and call(port, "/v1/info")[0] == 200     # not metered
        assert json.loads(call(port, "/v1/info")[2])["counters"]["rate_limited"] == 1


# -- slow clients -----------------------------------------------------------------------------------
def test_slow_upload_is_cut_off_and_holds_no_worker(pipe):
    """One worker, no queue: an upload trickling a byte every 0.2 s gets 408 after the 4 s body
    timeout and its connection closed, while a good request meanwhile gets its image (a held
    worker would make it 503); one that stops sending gets 408 after the 0.5 s chunk timeout."""
    with running(pipe, body_timeout_s=4.0) as port:
        body = png(LR)
        t0 = time.monotonic()
        slow = raw(port, (f"POST /v1/upscale?scale=2&{FAST} HTTP/1.1\r\nHost: x\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n").encode())
        answer = []

        def trickle():
            try:
                for b in body:
                    slow.sendall(bytes([b]))
                    time.sleep(0.2)
            except OSError:            # the server closed it
                pass
        reader = threading.Thread(target=lambda: answer.append(read_all(slow)))
        writer = threading.Thread(target=trickle, daemon=True)
        reader.start()
        writer.start()
        time.sleep(0.5)
        status, _, _ = call(port, f"/v1/upscale?scale=2&{FAST}", body)
        assert status == 200 and reader.is_alive()          # served while the slow one trickles
        reader.join(30)
        status, headers, data = parse(answer[0])
        assert status == 408 and headers["connection"] == "close" and "4 s for the whole body" in error(data)
        assert 3.8 < time.monotonic() - t0 < 15
        stalled = raw(port, (f"POST /v1/upscale?scale=2 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
                             f"\r\n\r\n").encode() + body[:10])
        status, _, data = parse(read_all(stalled))
        assert status == 408 and "10 bytes arrived" in error(data)


def test_slow_headers_408_and_idle_connection_closed(pipe):
    with running(pipe) as port:
        t0 = time.monotonic()
        s = raw(port, b"POST /v1/upscale?scale=2 HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):                         # a header line every 0.4 s: never complete in time
            time.sleep(0.4)
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        status, headers, data = parse(read_all(s))
        assert status == 408 and headers["content-type"] == "application/json" and "1 s" in error(data)
        assert time.monotonic() - t0 < 5
        assert read_all(raw(port, b"")) == b""     # idle: closed without an answer


# -- limits and uvicorn's own refusals --------------------------------------------------------------
def test_declared_huge_image_is_413(pipe):
    with running(pipe) as port:
        status, headers, data = call(port, "/v1/upscale?scale=2", png_header(100000, 100000))
        assert status == 413 and headers["Content-Type"] == "application/json"
        assert "declares 1e+04 Mpx" in error(data)


@pytest.mark.parametrize("request_bytes,status,says", [
    (b"POST /v1/upscale?scale=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n", 400, "not valid HTTP/1.1"),
    (b"POST /v1/upscale?scale=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400,
     "not valid HTTP/1.1"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", 431, "limit of 8192 bytes"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "limit of 8192 bytes"),
])
def test_uvicorn_level_refusals_are_json(pipe, request_bytes, status, says):
    with running(pipe) as port:
        got, headers, data = parse(read_all(raw(port, request_bytes)))
        assert got == status and headers["content-type"] == "application/json" and headers["connection"] == "close"
        assert says in error(data)


def test_settings_of_the_guard_are_checked():
    with pytest.raises(InputError, match="header_timeout_s must be a number > 0"):
        Settings(header_timeout_s=0)
    with pytest.raises(InputError, match="api_keys must be a tuple"):
        Settings(api_keys=("",))
    assert Settings(per_client_concurrency=0).per_client_concurrency == 0

"""Soak test of the HTTP service (a program, never a test): ``python -m runtime.programs.soak``.

    python -m runtime.programs.soak [--minutes 30] [--engines DIR] [--out bench_out/soak.json]
        [--good-clients 4] [--sample-seconds 5] [--steps 2]

Runs ``python -m runtime serve`` as a subprocess on a free loopback port, with API keys and
short slow-client timeouts, and for ``--minutes`` sends it, from several client threads at
once (each with its own key, so the per-client limits apply to each on its own):

- good upscales (``--good-clients`` threads, keep-alive): crops of the photos in tests/data at
  2x and 3x with a few seeds, every 200 compared pixel for pixel with ``Pipeline.upscale`` run
  here on the same input, parameters and seed;
- bad requests (one thread, a fresh connection each): corrupt and non-image bodies, a bad
  scale, no key, a wrong key, a PNG header declaring 100000 x 100000, an output over the
  limit, a Content-Length over the body limit, a malformed Content-Length, a 100 KB header;
- slow requests (one thread): an upload trickling a byte every 0.5 s (cut off by the body
  timeout) and headers that never end (the header timeout);
- a hammer (one thread): cheap bad requests back to back, past the per-minute limit (429).

Every few seconds it samples the server's RSS, open file descriptors (``/proc/PID/fd``) and
threads.  Without ``--engines`` it exports the ``tiny`` preset with random weights once (as
tests/conftest.py does) to ``$TMPDIR/ldmind-soak-engines``.  Checks (exit 1 when one fails): no 5xx
and no connection error, every request its kind's status with a JSON error, every 200
pixel-exact, file descriptors back where they were after warm-up, threads within the count before
the first request plus asyncio's default executor (min(32, CPUs + 4), started as needed), RSS at the end
at most 1.25 x after warm-up, SIGTERM exit 0.  Prints a summary and writes JSON.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ldmind_ref.core.cpuinfo import model_name as cpu_model
from ..limits import proc_bytes
from .benchlib import ROOT, cpu_flags, finish

SERVER = ["--workers", "1", "--queue", "16", "--max-body-mb", "1", "--header-timeout", "3", "--body-timeout", "5",
          "--body-chunk-timeout", "2", "--per-client-concurrency", "4", "--per-client-per-minute", "600",
          "--max-header-kb", "16"]
# kind: expected statuses
EXPECT = {"good": {200}, "corrupt": {400}, "non-image": {400}, "bad-scale": {400}, "no-key": {401},
          "wrong-key": {401}, "bomb-header": {413}, "oversize-output": {413}, "body-too-large": {413},
          "bad-content-length": {400}, "huge-header": {431}, "trickle": {408}, "slow-headers": {408},
          "hammer": {400, 429}}


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _png_header(w: int, h: int) -> bytes:
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def tiny_engines(out: Path) -> Path:
    """The ``tiny`` preset with random weights, exported once (tests/conftest.py's way)."""
    if (out / "manifest.json").exists():
        return out
    from ldmind_ref.checkpoint import save_model
    from ldmind_ref.config import preset
    from ldmind_ref.model import random_model

    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = out.parent / "soak_tiny.safetensors"
    save_model(ckpt, random_model(preset("tiny"), 1))
    subprocess.run([sys.executable, "-m", "export", "--checkpoint", str(ckpt), "--out", str(out)], cwd=ROOT,
                   check=True)
    return out


def raw(port: int, data: bytes, timeout: float = 30) -> tuple[int | None, bool]:
    """Send bytes on a fresh connection, read to the close: (status, whether the body is a JSON error)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        return _read_answer(s)


def _read_answer(s: socket.socket) -> tuple[int | None, bool]:
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except OSError:
        if not out:
            raise
    head, _, body = out.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d+)", head)
    return (int(m.group(1)) if m else None), _json_error(body)


def _json_error(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body)["error"], str)
    except (ValueError, KeyError, TypeError):
        return False


class Soak:
    def __init__(self, a, port: int, keys: list[str], good: list[dict], bad_body: bytes):
        self.a, self.port, self.keys, self.good, self.bad_body = a, port, keys, good, bad_body
        self.lock = threading.Lock()
        self.results: list[dict] = []
        self.stop = threading.Event()

    def record(self, kind: str, status, json_ok: bool, seconds: float, correct=None, error=None):
        with self.lock:
            self.results.append({"kind": kind, "status": status, "json": json_ok, "seconds": round(seconds, 4),
                                 "correct": correct, "error": error})

    def post(self, conn, query: str, body: bytes, key: str | None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        conn.request("POST", f"/v1/upscale?{query}", body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.headers, r.read()

    def good_client(self, k: int):
        rng, key, conn = random.Random(k), self.keys[k], None
        while not self.stop.is_set():
            g = rng.choice(self.good)
            t0 = time.perf_counter()
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                status, headers, data = self.post(conn, g["query"], g["body"], key)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = None
                self.record("good", None, False, time.perf_counter() - t0, error=repr(e))
                continue
            correct = None
            if status == 200:
                got = np.asarray(Image.open(io.BytesIO(data)))
                correct = bool(got.shape == g["want"].shape and np.array_equal(got, g["want"]))
            self.record("good", status, status == 200 or _json_error(data), time.perf_counter() - t0, correct)
            if headers.get("Connection", "").lower() == "close":
                conn.close()
                conn = None

    def bad_client(self, key: str):
        rng, body = random.Random(99), self.good[0]["body"]
        auth = f"Authorization: Bearer {key}\r\n"
        post = "POST /v1/upscale?scale=2 HTTP/1.1\r\nHost: soak\r\n"
        kinds = {
            "corrupt": ("scale=2", self.bad_body, key), "non-image": ("scale=2", b"not an image\n" * 20, key),
            "bad-scale": ("scale=0", body, key), "no-key": ("scale=2", body, None),
            "wrong-key": ("scale=2", body, "wrong-" + "x" * 26), "bomb-header": ("scale=2", _png_header(100000, 100000), key),
            "oversize-output": ("scale=1000", body, key),
            "body-too-large": (post + auth + "Content-Length: 1000000000\r\n\r\n").encode(),
            "bad-content-length": (post + auth + "Content-Length: 12abc\r\n\r\n").encode(),
            "huge-header": (post + auth + "X-Big: " + "a" * 100_000 + "\r\nContent-Length: 0\r\n\r\n").encode()}
        while not self.stop.is_set():
            kind = rng.choice(sorted(kinds))
            t0 = time.perf_counter()
            try:
                if isinstance(kinds[kind], bytes):
                    status, json_ok = raw(self.port, kinds[kind])
                else:
                    q, b, k = kinds[kind]
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                    try:
                        status, _, data = self.post(conn, q, b, k)
                    finally:
                        conn.close()
                    json_ok = _json_error(data)
                self.record(kind, status, json_ok, time.perf_counter() - t0)
            except (OSError, http.client.HTTPException) as e:
                self.record(kind, None, False, time.perf_counter() - t0, error=repr(e))
            time.sleep(0.05)

    def slow_client(self, key: str):
        body = self.good[0]["body"]
        n = 0
        while not self.stop.is_set():
            kind = ("trickle", "slow-headers")[n % 2]
            n += 1
            t0 = time.perf_counter()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=60) as s:
                    head = f"POST /v1/upscale?scale=2 HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {key}\r\n"
                    if kind == "trickle":
                        s.sendall((head + f"Content-Length: {len(body)}\r\n\r\n").encode())
                        drip = body
                    else:
                        s.sendall(head.encode())
                        drip = b"X-Slow: 1\r\n" * 100
                    try:
                        for i in range(0, len(drip)):
                            s.sendall(drip[i:i + 1])
                            time.sleep(0.5)
                    except OSError:        # cut off by the server, as expected
                        pass
                    status, json_ok = _read_answer(s)
                self.record(kind, status, json_ok, time.perf_counter() - t0)
            except OSError as e:
                self.record(kind, None, False, time.perf_counter() - t0, error=repr(e))

    def hammer(self, key: str):
        conn = None
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                status, headers, data = self.post(conn, "scale=-1", b"x", key)
                self.record("hammer", status, _json_error(data), time.perf_counter() - t0)
                if status == 429:
                    time.sleep(1.0)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = None
                self.record("hammer", None, False, time.perf_counter() - t0, error=repr(e))


def sample(pid: int) -> dict:
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        fds = None
    status = f"/proc/{pid}/status"
    threads = None
    try:
        with open(status) as f:
            threads = next((int(line.split()[1]) for line in f if line.startswith("Threads:")), None)
    except OSError:
        pass
    return {"rss_mib": round((proc_bytes(status, "VmRSS") or 0) / 2 ** 20, 1), "fds": fds, "threads": threads}


def busiest() -> list[str]:
    """The machine's busiest processes (what else was running)."""
    try:
        out = subprocess.run(["ps", "-eo", "pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [line[:140] for line in out.splitlines()[1:9]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.programs.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=30)
    p.add_argument("--engines", default=None, help="default: tiny random-weight engines exported once")
    p.add_argument("--out", default="bench_out/soak.json")
    p.add_argument("--good-clients", type=int, default=4)
    p.add_argument("--sample-seconds", type=float, default=5)
    p.add_argument("--warmup-seconds", type=float, default=60, help="the fd/thread/RSS baseline is taken after this")
    p.add_argument("--steps", type=int, default=2)
    a = p.parse_args(argv)
    from ..pipeline import Pipeline
    from .bench_serve import _inputs

    t_all = time.perf_counter()
    engines = a.engines or str(tiny_engines(Path(tempfile.gettempdir()) / "ldmind-soak-engines" / "tiny"))
    pipe = Pipeline.load(engines, backend="cpu")
    good = []
    for k, lr in enumerate(_inputs(ROOT / "tests" / "data", sides=(24, 32))[:4]):
        for scale in (2, 3):
            q = f"scale={scale}&seed={k}&steps={a.steps}&backproject=2"
            [want] = pipe.upscale(lr, scale=scale, steps=a.steps, seed=k, backproject=2)
            good.append({"query": q, "body": _png(lr), "want": want})
    pipe.close()
    body = good[0]["body"]
    bad_body = body[:40] + bytes(b ^ 0x5A for b in body[40:])
    n_keys = a.good_clients + 3
    keys = [f"soak-{i}-" + os.urandom(16).hex() for i in range(n_keys)]
    tmp = tempfile.mkdtemp(prefix="ldmind-soak-")
    key_file = Path(tmp) / "keys"
    key_file.write_text("\n".join(keys) + "\n")
    key_file.chmod(0o600)
    argv_server = [sys.executable, "-m", "runtime", "serve", "--engines", engines, "--port", "0", "--backend", "cpu",
                   "--api-key-file", str(key_file), *SERVER]
    load0, others0 = os.getloadavg(), busiest()
    proc = subprocess.Popen(argv_server, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        first = proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        if not m:
            raise SystemExit(f"python -m runtime.programs.soak: the server did not start: {first.strip()}")
        threading.Thread(target=lambda: lines.extend(line.rstrip() for line in proc.stderr), daemon=True).start()
        soak = Soak(a, int(m.group(1)), keys, good, bad_body)
        threads = [threading.Thread(target=soak.good_client, args=(k,)) for k in range(a.good_clients)]
        threads += [threading.Thread(target=soak.bad_client, args=(keys[-3],)),
                    threading.Thread(target=soak.slow_client, args=(keys[-2],)),
                    threading.Thread(target=soak.hammer, args=(keys[-1],))]
        samples = [{"t": 0.0, **sample(proc.pid)}]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        end = t0 + 60 * a.minutes
        while time.perf_counter() < end:
            time.sleep(min(a.sample_seconds, max(0.0, end - time.perf_counter())))
            samples.append({"t": round(time.perf_counter() - t0, 1), **sample(proc.pid)})
            with soak.lock:
                n, by = len(soak.results), {}
                for r in soak.results:
                    by[str(r["status"])] = by.get(str(r["status"]), 0) + 1
            print(f"  {samples[-1]['t']:7.0f} s  {n} requests {dict(sorted(by.items()))}  rss "
                  f"{samples[-1]['rss_mib']} MiB  fds {samples[-1]['fds']}  threads {samples[-1]['threads']}",
                  flush=True)
        soak.stop.set()
        for t in threads:
            t.join(120)
        time.sleep(3)                          # idle: the server trims its heap
        samples.append({"t": round(time.perf_counter() - t0, 1), "idle": True, **sample(proc.pid)})
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
        time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    res = soak.results
    by_kind: dict[str, dict] = {}
    for r in res:
        d = by_kind.setdefault(r["kind"], {})
        d[str(r["status"])] = d.get(str(r["status"]), 0) + 1
    by_status: dict[str, int] = {}
    for r in res:
        by_status[str(r["status"])] = by_status.get(str(r["status"]), 0) + 1
    base = next((s for s in samples if s["t"] >= a.warmup_seconds), samples[min(1, len(samples) - 1)])
    last = samples[-1]
    good_ok = [r for r in res if r["kind"] == "good" and r["status"] == 200]
    lat = np.array([r["seconds"] for r in good_ok] or [0.0])
    log_text = "\n".join(lines)
    checks = {
        "no 5xx, no connection error": all(r["status"] is not None and r["status"] < 500 for r in res),
        "every request its kind's status": all(r["status"] in EXPECT[r["kind"]] for r in res),
        "every refusal a JSON error": all(r["json"] for r in res if r["status"] not in (200, None)),
        "every 200 pixel-exact": all(r["correct"] for r in good_ok) and len(good_ok) > 0,
        "fds back to the warm-up level (+2)": last["fds"] is not None and last["fds"] <= base["fds"] + 2,
        # asyncio's default executor (the checks before admission) starts its threads as they are
        # needed, up to min(32, CPUs + 4): the bound, from the count before the first request
        "threads within the bound": last["threads"] is not None
        and last["threads"] <= samples[0]["threads"] + min(32, (os.cpu_count() or 1) + 4),
        "RSS at the end <= 1.25 x after warm-up": last["rss_mib"] <= 1.25 * base["rss_mib"],
        "no key in the server's log": not any(k in log_text for k in keys),
        "SIGTERM exit 0": code == 0,
    }
    out = {"command": "python -m runtime.programs.soak " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
           "cpus": os.cpu_count(), "loadavg_before": list(load0), "loadavg_after": list(os.getloadavg()),
           "busiest_before": others0, "busiest_after": busiest(), "engines": engines,
           "server": " ".join(argv_server[3:]).replace(str(key_file), "KEYFILE"), "minutes": a.minutes,
           "clients": {"good": a.good_clients, "bad": 1, "slow": 1, "hammer": 1}, "requests": len(res),
           "by_status": dict(sorted(by_status.items())), "by_kind": {k: dict(sorted(v.items())) for k, v in
                                                                     sorted(by_kind.items())},
           "good_200": len(good_ok), "good_pixel_exact": sum(1 for r in good_ok if r["correct"]),
           "latency_good_seconds": {q: round(float(np.percentile(lat, v)), 3) for q, v in
                                    (("p50", 50), ("p95", 95), ("max", 100))},
           "errors": sorted({r["error"] for r in res if r["error"]})[:20],
           "baseline": base, "end": last, "samples": samples,
           "rss_mib_max": max(s["rss_mib"] for s in samples), "fds_max": max(s["fds"] or 0 for s in samples),
           "threads_max": max(s["threads"] or 0 for s in samples), "exit_status": code, "checks": checks,
           "total_seconds": round(time.perf_counter() - t_all, 1)}
    print(f"soak: {a.minutes:g} min, {len(res)} requests {out['by_status']}")
    for kind, d in out["by_kind"].items():
        print(f"  {kind:20s} {d}")
    print(f"  good: {len(good_ok)} x 200, {out['good_pixel_exact']} pixel-exact, latency {out['latency_good_seconds']}")
    print(f"  server after warm-up {base}, at the end {last}; max RSS {out['rss_mib_max']} MiB, fds "
          f"{out['fds_max']}, threads {out['threads_max']}")
    return finish(out, checks, a.out)


if __name__ == "__main__":
    sys.exit(main())

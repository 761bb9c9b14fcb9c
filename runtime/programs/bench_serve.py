"""Load test of the HTTP service (a program, never a test): ``python -m runtime.programs.bench_serve``.

    python -m runtime.programs.bench_serve --engines engines/small [--out docs/results/serve_load.json]
        [--clients 32] [--requests 500] [--bad 0.1] [--steps 4] [--max-seconds 900]

Runs ``python -m runtime serve`` as a subprocess on a free loopback port and talks to it over
HTTP like any client (``http.client``, one keep-alive connection per client thread):

1. warm-up: the clients send a short mixed run; then one request per distinct good input,
   one after another, and the server's RSS (VmRSS) is read once it is idle;
2. the main run: ``--clients`` threads send ``--requests`` requests in all (bounded by
   count and by ``--max-seconds``), ``--bad`` of them bad (corrupt or truncated images,
   non-images, a bad scale, an output over the server's limit: which ones is fixed by
   ``--seed``); the good ones are small upscales of crops of the photos in tests/data, each
   compared pixel for pixel with ``Pipeline.upscale`` run here on the same input and seed;
   RSS again, after the same sequence of one request per input (so both readings follow
   the same last allocations: the heap's layout, not only its live size, sets the RSS);
3. the overfill run: a second server with 1 worker and a queue of 2 gets a burst of
   ``--burst`` simultaneous requests (503 with Retry-After expected for most), then
   ``--recovery`` requests one after another (all must succeed);
4. SIGTERM to each server: the exit status must be 0.

Checks (exit 1 when one fails): no 5xx but 503, every bad request its expected 4xx, every
good response the expected image, RSS after the run at most 10 % above after warm-up (a leak
grows it; a fall is the heap's layout, which the same sequence before both readings makes
comparable: without it, two readings differed by 11 and 14 %, downwards), 503s in the
overfill burst, every one with Retry-After, and a full recovery.  Prints a table and
writes JSON (machine, load average, settings, every number).
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ldmind_ref.core.cpuinfo import model_name as cpu_model
from ..limits import proc_bytes
from .benchlib import ROOT, finish

# the clients all come from 127.0.0.1: the per-client limits would refuse most of them (429)
NO_CLIENT_LIMITS = ("--per-client-concurrency", "0", "--per-client-per-minute", "0")
BAD_KINDS = {  # kind: (query, expected status)
    "corrupt": ("scale=2", 400), "truncated": ("scale=2", 400), "non-image": ("scale=2", 400),
    "bad-scale": ("scale=0", 400), "oversize-output": ("scale=1000", 413)}


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def crop_inputs(photos: Path, sides=(32, 40, 48)) -> list[np.ndarray]:
    """One crop per photo (sides cycling), from the middle of each."""
    out = []
    for k, p in enumerate(sorted(photos.glob("*.jpg"))):
        a = np.asarray(Image.open(p).convert("RGB"))
        s = sides[k % len(sides)]
        y, x = (a.shape[0] - s) // 2, (a.shape[1] - s) // 2
        out.append(np.ascontiguousarray(a[y:y + s, x:x + s]))
    return out


class Server:
    """``python -m runtime serve`` on a free loopback port; stderr drained (access lines)."""

    def __init__(self, engines: str, backend: str, *options: str):
        self.argv = [sys.executable, "-m", "runtime", "serve", "--engines", engines, "--port", "0",
                     "--backend", backend, *options]
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        first = self.proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", first)
        if not m:
            self.proc.kill()
            raise SystemExit(f"python -m runtime.programs.bench_serve: the server did not start: {first.strip()}")
        self.port = int(m.group(1))
        self.lines = [first.rstrip()]
        threading.Thread(target=lambda: self.lines.extend(l.rstrip() for l in self.proc.stderr), daemon=True).start()

    def rss(self) -> int:
        return proc_bytes(f"/proc/{self.proc.pid}/status", "VmRSS") or 0

    def hwm(self) -> int:
        return proc_bytes(f"/proc/{self.proc.pid}/status", "VmHWM") or 0

    def stop(self) -> tuple[int, float]:
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        time.sleep(0.2)     # the drain thread reads the last lines
        return code, time.perf_counter() - t0


class Client:
    """One keep-alive connection; ``send`` returns (status, headers, body, seconds)."""

    def __init__(self, port: int):
        self.port, self.conn = port, None

    def send(self, query: str, body: bytes):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=900)
            t0 = time.perf_counter()
            try:
                self.conn.request("POST", f"/v1/upscale?{query}", body=body)
                r = self.conn.getresponse()
                data = r.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.conn.close()
                self.conn = None      # the server closed a kept-alive connection: once more, fresh
                if attempt:
                    raise
                continue
            if r.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return r.status, r.headers, data, time.perf_counter() - t0


def settle(port: int, good: list) -> int:
    """One request per distinct good input, one after another; then idle (the server trims
    its heap when the last request ends): the number that failed."""
    c, failed = Client(port), 0
    for g in good:
        status, _, data, _ = c.send(g["query"], g["body"])
        failed += status != 200 or not np.array_equal(np.asarray(Image.open(io.BytesIO(data))), g["want"])
    if c.conn:
        c.conn.close()
    time.sleep(1.0)
    return failed


def plan(n: int, bad: float, seed: int, good: list, bad_bodies: dict) -> list[dict]:
    """``n`` requests, ``round(bad * n)`` of them bad, kinds and order fixed by ``seed``."""
    rng = np.random.RandomState(seed)
    nbad = int(round(bad * n))
    kinds = list(BAD_KINDS)
    reqs = [{"kind": kinds[k % len(kinds)]} for k in range(nbad)]
    reqs += [{"kind": "good", "combo": int(rng.randint(len(good)))} for _ in range(n - nbad)]
    order = rng.permutation(n)
    out = []
    for i in order:
        r = reqs[i]
        if r["kind"] == "good":
            g = good[r["combo"]]
            r.update(query=g["query"], body=g["body"], expect=200)
        else:
            q, status = BAD_KINDS[r["kind"]]
            r.update(query=q, body=bad_bodies[r["kind"]], expect=status)
        out.append(r)
    return out


def run_clients(port: int, reqs: list[dict], clients: int, max_seconds: float, good: list) -> dict:
    """Send ``reqs`` from ``clients`` threads until done or ``max_seconds``; check each reply."""
    results, lock, nxt = [], threading.Lock(), [0]
    deadline = time.perf_counter() + max_seconds

    def worker():
        c = Client(port)
        while True:
            with lock:
                i = nxt[0]
                if i >= len(reqs) or time.perf_counter() > deadline:
                    return
                nxt[0] += 1
            r = reqs[i]
            try:
                status, headers, data, secs = c.send(r["query"], r["body"])
            except OSError as e:
                with lock:
                    results.append({"kind": r["kind"], "status": None, "error": str(e), "seconds": None})
                continue
            res = {"kind": r["kind"], "status": status, "seconds": secs}
            if status == 200 and r["kind"] == "good":
                got = np.asarray(Image.open(io.BytesIO(data)))
                want = good[r["combo"]]["want"]
                res["correct"] = bool(got.shape == want.shape and np.array_equal(got, want))
            elif status == 503:
                res["retry_after"] = headers.get("Retry-After")
            elif status != 200:
                try:
                    res["error"] = json.loads(data)["error"]
                except (ValueError, KeyError):
                    res["error"] = f"not a JSON error: {data[:80]!r}"
            with lock:
                results.append(res)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"results": results, "wall_seconds": time.perf_counter() - t0, "issued": nxt[0]}


def summarise(run: dict, reqs: list[dict]) -> dict:
    res = run["results"]
    by_status: dict[str, int] = {}
    for r in res:
        by_status[str(r["status"])] = by_status.get(str(r["status"]), 0) + 1
    expect = {k: s for k, (_, s) in BAD_KINDS.items()}
    good = [r for r in res if r["kind"] == "good" and r["status"] == 200]
    lat = np.array([r["seconds"] for r in good]) if good else np.zeros(1)
    return {
        "requests": len(reqs), "issued": run["issued"], "completed": len(res), "wall_seconds": round(run["wall_seconds"], 2),
        "by_status": dict(sorted(by_status.items())),
        "server_errors_other_than_503": sum(1 for r in res if r["status"] is None or (r["status"] >= 500 and r["status"] != 503)),
        "bad_requests": sum(1 for r in res if r["kind"] != "good"),
        "bad_with_wrong_status": sum(1 for r in res if r["kind"] != "good" and r["status"] != expect[r["kind"]]),
        "bad_without_json_error": sum(1 for r in res if r["kind"] != "good" and str(r.get("error", "")).startswith("not a JSON")),
        "good_ok": len(good), "good_correct": sum(1 for r in good if r["correct"]),
        "good_503": sum(1 for r in res if r["kind"] == "good" and r["status"] == 503),
        "latency_good_seconds": {"p50": round(float(np.percentile(lat, 50)), 3), "p95": round(float(np.percentile(lat, 95)), 3),
                                 "p99": round(float(np.percentile(lat, 99)), 3), "max": round(float(lat.max()), 3)},
        "latency_bad_seconds_p50": round(float(np.median([r["seconds"] for r in res if r["kind"] != "good" and r["seconds"]] or [0])), 4),
        "throughput_good_per_second": round(len(good) / run["wall_seconds"], 3),
        "throughput_all_per_second": round(len(res) / run["wall_seconds"], 3),
    }


def overfill(engines: str, backend: str, good: list, burst: int, recovery: int) -> dict:
    srv = Server(engines, backend, "--workers", "1", "--queue", "2", *NO_CLIENT_LIMITS)
    try:
        g = min(good, key=lambda x: x["want"].size)          # the smallest request
        barrier = threading.Barrier(burst)
        out: list = []

        def one():
            c = Client(srv.port)
            barrier.wait()
            status, headers, data, secs = c.send(g["query"], g["body"])
            ok = status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(data))), g["want"])
            out.append({"status": status, "retry_after": headers.get("Retry-After"), "seconds": secs, "correct": ok})
        threads = [threading.Thread(target=one) for _ in range(burst)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rejected = [r for r in out if r["status"] == 503]
        after = []
        c = Client(srv.port)
        for _ in range(recovery):
            status, _, data, secs = c.send(g["query"], g["body"])
            after.append(status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(data))), g["want"]))
        code, stop_s = srv.stop()
        return {"server": "workers 1, queue 2", "burst": burst, "request": g["query"],
                "burst_200": sum(1 for r in out if r["status"] == 200),
                "burst_200_correct": sum(1 for r in out if r["status"] == 200 and r["correct"]),
                "burst_503": len(rejected), "burst_other": sum(1 for r in out if r["status"] not in (200, 503)),
                "retry_after_values": sorted({r["retry_after"] for r in rejected}, key=str),
                "every_503_has_retry_after": all(r["retry_after"] and r["retry_after"].isdigit() for r in rejected),
                "latency_503_seconds_max": round(max((r["seconds"] for r in rejected), default=0.0), 4),
                "recovery_requests": recovery, "recovery_ok": sum(after), "exit_status": code,
                "stop_seconds": round(stop_s, 2)}
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.programs.bench_serve", description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="engines/small")
    p.add_argument("--backend", default="cpu")
    p.add_argument("--photos", default=str(ROOT / "tests" / "data"), help="crops of these photos are the inputs")
    p.add_argument("--out", default="bench_out/serve_load.json")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--warmup", type=int, default=64, help="requests before the RSS baseline")
    p.add_argument("--bad", type=float, default=0.1, help="fraction of bad requests")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--queue", type=int, default=32, help="the main run's server queue (>= clients - 1: no 503)")
    p.add_argument("--max-seconds", type=float, default=900, help="the main run sends nothing new after this")
    p.add_argument("--burst", type=int, default=24)
    p.add_argument("--recovery", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    from ..pipeline import Pipeline

    t_all = time.perf_counter()
    inputs = crop_inputs(Path(a.photos))
    # the expected images, computed here on the same inputs and seeds
    pipe = Pipeline.load(a.engines, backend=a.backend)
    good = []
    for k, lr in enumerate(inputs):
        for scale in (2, 3):
            q = f"scale={scale}&seed={k}&steps={a.steps}"
            [want] = pipe.upscale(lr, scale=scale, steps=a.steps, seed=k)
            good.append({"query": q, "body": png_bytes(lr), "want": want, "lr": list(lr.shape[:2])})
    pipe.close()
    del pipe
    body = good[0]["body"]
    bad_bodies = {"corrupt": body[:40] + bytes(b ^ 0x5A for b in body[40:]), "truncated": body[: len(body) // 2],
                  "non-image": b"this is not an image\n" * 20, "bad-scale": body, "oversize-output": good[-1]["body"]}
    load0 = os.getloadavg()

    srv = Server(a.engines, a.backend, "--workers", "1", "--queue", str(a.queue), *NO_CLIENT_LIMITS)
    try:
        warm = plan(a.warmup, a.bad, a.seed + 1, good, bad_bodies)
        warm_run = run_clients(srv.port, warm, a.clients, a.max_seconds, good)
        settle_failed = settle(srv.port, good)
        rss_warm = srv.rss()
        reqs = plan(a.requests, a.bad, a.seed, good, bad_bodies)
        samples, done = [], threading.Event()

        def sample(t0=time.perf_counter()):      # RSS through the run: flat, or a leak
            while not done.wait(2.0):
                samples.append((round(time.perf_counter() - t0, 1), srv.rss()))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        main_run = run_clients(srv.port, reqs, a.clients, a.max_seconds, good)
        done.set()
        settle_failed += settle(srv.port, good)
        rss_after, hwm = srv.rss(), srv.hwm()
        code, stop_s = srv.stop()
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
    summary = summarise(main_run, reqs)
    summary.update(warmup_requests=len(warm_run["results"]),
                   warmup_server_errors=sum(1 for r in warm_run["results"] if r["status"] is None
                                            or (r["status"] >= 500 and r["status"] != 503)),
                   settle_requests=2 * len(good), settle_failed=settle_failed, rss_after_warmup_bytes=rss_warm, rss_after_run_bytes=rss_after,
                   rss_ratio=round(rss_after / rss_warm, 4) if rss_warm else None, peak_rss_bytes=hwm,
                   rss_during_run_mib=[[t, round(b / 2 ** 20, 1)] for t, b in samples],
                   access_lines=sum(1 for line in srv.lines if " POST /v1/upscale " in line),
                   exit_status=code, stop_seconds=round(stop_s, 2))
    over = overfill(a.engines, a.backend, good, a.burst, a.recovery)
    checks = {
        "no 5xx but 503": summary["server_errors_other_than_503"] == 0 and summary["warmup_server_errors"] == 0,
        "all issued": summary["issued"] == a.requests and summary["completed"] == a.requests,
        "bad requests: expected 4xx, JSON": summary["bad_with_wrong_status"] == 0 and summary["bad_without_json_error"] == 0,
        "good responses correct": summary["good_correct"] == summary["good_ok"] and summary["settle_failed"] == 0,
        # a leak grows the RSS; a fall is heap layout (module doc)
        "RSS after the run <= 1.10 x after warm-up": summary["rss_ratio"] is not None and summary["rss_ratio"] <= 1.10,
        "overfill: 503s with Retry-After": over["burst_503"] > 0 and over["every_503_has_retry_after"] and over["burst_other"] == 0,
        "overfill: recovery": over["recovery_ok"] == a.recovery and over["burst_200_correct"] == over["burst_200"],
        "graceful exit 0": summary["exit_status"] == 0 and over["exit_status"] == 0,
    }
    res = {"command": "python -m runtime.programs.bench_serve " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "cpus": os.cpu_count(), "loadavg_before": list(load0),
           "loadavg_after": list(os.getloadavg()), "engines": a.engines, "backend": a.backend,
           "server": f"workers 1, queue {a.queue}, no per-client limits, other settings default",
           "clients": a.clients, "steps": a.steps,
           "inputs": sorted({f"{g['lr'][1]}x{g['lr'][0]}" for g in good}), "scales": [2, 3],
           "bad_fraction": a.bad, "bad_kinds": {k: v[1] for k, v in BAD_KINDS.items()},
           "main": summary, "overfill": over, "checks": checks, "total_seconds": round(time.perf_counter() - t_all, 1)}
    s, o = summary, over
    print(f"load test: {a.clients} clients, {s['requests']} requests ({s['bad_requests']} bad), "
          f"inputs {', '.join(res['inputs'])} px x2/x3, {a.steps} steps, server workers 1, queue {a.queue}")
    print(f"  statuses           {s['by_status']}")
    print(f"  good               {s['good_ok']} ok, {s['good_correct']} pixel-exact, {s['good_503']} got 503")
    lat = s["latency_good_seconds"]
    print(f"  latency (good)     p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s, p99 {lat['p99']:.2f} s, "
          f"max {lat['max']:.2f} s; bad p50 {s['latency_bad_seconds_p50'] * 1000:.1f} ms")
    print(f"  throughput         {s['throughput_good_per_second']:.2f} good/s ({s['wall_seconds']:.0f} s)")
    print(f"  server RSS         {s['rss_after_warmup_bytes'] / 2**20:.1f} MiB after warm-up, "
          f"{s['rss_after_run_bytes'] / 2**20:.1f} MiB after the run (x{s['rss_ratio']}), peak "
          f"{s['peak_rss_bytes'] / 2**20:.1f} MiB")
    during = [m for _, m in s["rss_during_run_mib"]] or [0]
    first, second = during[:max(1, len(during) // 2)], during[len(during) // 2:]
    print(f"  RSS while loaded   first half of the run {min(first):.0f}..{max(first):.0f} MiB, second half "
          f"{min(second):.0f}..{max(second):.0f} MiB ({len(during)} samples, every 2 s)")
    print(f"  overfill           burst of {o['burst']}: {o['burst_200']} x 200, {o['burst_503']} x 503 "
          f"(Retry-After {', '.join(map(str, o['retry_after_values']))}; slowest 503 "
          f"{o['latency_503_seconds_max'] * 1000:.0f} ms), then {o['recovery_ok']}/{o['recovery_requests']} ok")
    print(f"  SIGTERM            exit {s['exit_status']} and {o['exit_status']}")
    return finish(res, checks, a.out, f" ({res['total_seconds']:.0f} s in all)")


if __name__ == "__main__":
    sys.exit(main())

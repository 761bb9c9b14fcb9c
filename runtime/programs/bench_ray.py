"""Ray's cost and speed on this machine (a program, never a test): ``python -m runtime.programs.bench_ray``.

    python -m runtime.programs.bench_ray --engines engines/small [--photos 16] [--steps 10]
        [--requests 40] [--clients 8] [--out bench_out/ray.json]

1. Folder runs: ``--photos`` crops of mixed sizes (``--sides``) of the shipped photos
   (tests/data and runtime/data), upscaled ``--scale`` by the single-process folder run
   (``batch.run_folder`` on one pipeline, all cores, and again with each thread count the
   Ray configurations use) and on a local Ray
   instance (``ray_batch.run_on_ray``) with each ``--ray-configs`` WORKERSxTHREADS.  Each run
   is timed from nothing loaded to the last file written (pipeline loads; for Ray also the
   instance's start, the actors' and the shutdown): throughput in photos/s, and the seconds
   per photo (p50 / p95: one after another single-process, on its worker on Ray).  Every
   Ray run's outputs must equal byte for byte the single-process run's with the same
   threads per graph (ONNX Runtime's sums, hence the last bit, depend on that count).
2. The service: ``bench_serve``'s load test (its clients, requests and checks of each image
   against ``Pipeline.upscale``) against ``python -m runtime serve`` as is and on Ray Serve
   (``--ray local --replicas N``) for each ``--replicas``: throughput, p50 / p95 latency.

Prints a table and writes JSON (machine, load average before and after, every number).  On
a machine whose cores are busy with other work the figures say so in the load average.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ldmind_ref.core.cpuinfo import model_name as cpu_model
from .bench_serve import BAD_KINDS, Server, crop_inputs, plan, png_bytes, run_clients, summarise
from .benchlib import DEMO_PHOTO, ROOT, cpu_flags, finish


def make_folder(dst: Path, n: int, sides: list[int]) -> list[str]:
    """``n`` crops (sides cycling, positions varying) of the shipped photos, as PNG: their sizes."""
    photos = sorted((ROOT / "tests" / "data").glob("*.jpg")) + [DEMO_PHOTO]
    dst.mkdir(parents=True, exist_ok=True)
    sizes = []
    for k in range(n):
        a = np.asarray(Image.open(photos[k % len(photos)]).convert("RGB"))
        h, w = sides[k % len(sides)], sides[(k + 1) % len(sides)]
        y = (k * 37) % (a.shape[0] - h)
        x = (k * 53) % (a.shape[1] - w)
        Image.fromarray(a[y:y + h, x:x + w]).save(dst / f"photo{k:02d}.png")
        sizes.append(f"{w}x{h}")
    return sizes


def _pct(xs: list[float]) -> dict:
    a = np.array(xs or [0.0])
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3)}


def folder_single(src: Path, out: Path, engines: str, request, threads: int) -> dict:
    from ..batch import Summary, plan_folder, run_folder
    from ..image_out import save_image
    from ..pipeline import Pipeline

    t0 = time.perf_counter()
    jobs = plan_folder(src, out, False, None, 1)
    pipe = Pipeline.load(engines, backend="cpu", threads=threads)
    out.mkdir(parents=True, exist_ok=True)
    marks = [time.perf_counter()]
    s = run_folder(jobs, pipe, request, "auto", lambda img, p, meta=None: save_image(img, p, meta), False,
                   lambda _: None, print, lambda *_: marks.append(time.perf_counter()), Summary())
    wall = time.perf_counter() - t0
    pipe.close()
    per = list(np.diff(marks))
    return {"config": f"single process, {threads or 'all'} thread(s)", "workers": 1, "threads": threads,
            "done": s.done, "failed": s.failed, "wall_seconds": round(wall, 2), "work_seconds": round(marks[-1] - marks[0], 2),
            "photos_per_second": round(len(jobs) / wall, 4), "seconds_per_photo": _pct(per)}


def folder_ray(src: Path, out: Path, engines: str, request, workers: int, threads: int) -> dict:
    from ..batch import Summary, plan_folder
    from ..image_out import save_image
    from ..ray_batch import run_on_ray
    from ..ray_cluster import connect, disconnect, local_cpus

    t0 = time.perf_counter()
    jobs = plan_folder(src, out, False, None, 1)
    started = connect("local", local_cpus(workers, threads))
    t_ray = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    marks, per = [], []
    try:
        s = run_on_ray(jobs, engines, "cpu", None, threads, workers, request, "auto",
                       lambda img, p, meta=None: save_image(img, p, meta), False, lambda _: None, print,
                       lambda *_: marks.append(time.perf_counter()), Summary(), seconds=per)
    finally:
        t_end = time.perf_counter()
        disconnect(started)
    wall = time.perf_counter() - t0
    return {"config": f"Ray local, {workers} worker(s) x {threads} thread(s)", "workers": workers, "threads": threads,
            "done": s.done, "failed": s.failed, "wall_seconds": round(wall, 2),
            "ray_start_seconds": round(t_ray - t0, 2), "first_result_seconds": round(marks[0] - t_ray, 2) if marks else None,
            "work_seconds": round(t_end - t_ray, 2), "shutdown_seconds": round(time.perf_counter() - t_end, 2),
            "photos_per_second": round(len(jobs) / wall, 4), "seconds_per_photo": _pct(per)}


def _tree(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def service_run(engines: str, label: str, options: list[str], good: list, bad_bodies: dict, requests: int,
                clients: int, bad: float, seed: int) -> dict:
    t0 = time.perf_counter()
    srv = Server(engines, "cpu", *options)
    start_s = time.perf_counter() - t0
    try:
        warm = run_clients(srv.port, plan(2 * clients, 0.0, seed + 1, good, bad_bodies), clients, 900, good)
        reqs = plan(requests, bad, seed, good, bad_bodies)
        s = summarise(run_clients(srv.port, reqs, clients, 900, good), reqs)
        code, stop_s = srv.stop()
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
    return {"config": label, "options": options, "start_seconds": round(start_s, 1),
            "warmup_ok": sum(1 for r in warm["results"] if r["status"] == 200), **s,
            "exit_status": code, "stop_seconds": round(stop_s, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.programs.bench_ray", description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="engines/small")
    p.add_argument("--photos", type=int, default=16)
    p.add_argument("--sides", default="40,56,72,48,64", help="crop sides, cycling (height, then width)")
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--ray-configs", default="1x2,2x1", help="WORKERSxTHREADS, comma-separated")
    p.add_argument("--replicas", default="1,2", help="Ray Serve replicas to load-test, comma-separated")
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--bad", type=float, default=0.1)
    p.add_argument("--service-steps", type=int, default=4)
    p.add_argument("--skip-folder", action="store_true")
    p.add_argument("--skip-service", action="store_true")
    p.add_argument("--out", default="bench_out/ray.json")
    a = p.parse_args(argv)
    import ray

    from ..pipeline import Pipeline
    from ..request import UpscaleRequest

    t_all = time.perf_counter()
    res: dict = {"command": "python -m runtime.programs.bench_ray " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
                 "cpus": os.cpu_count(), "ray": ray.__version__, "loadavg_before": list(os.getloadavg()),
                 "engines": a.engines, "backend": "cpu"}
    checks = {}
    work = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        if not a.skip_folder:
            src = work / "in"
            sizes = make_folder(src, a.photos, [int(s) for s in a.sides.split(",")])
            request = UpscaleRequest(scale=a.scale, steps=a.steps)
            configs = [tuple(int(v) for v in cfg.split("x")) for cfg in a.ray_configs.split(",")]
            # ONNX Runtime's sums depend on its threads per graph: each Ray run is compared with
            # the single-process run of the same threads (0: all cores, the CLI's default)
            cores = os.cpu_count() or 1
            same = {t: 0 if t == cores else t for _, t in configs}
            runs, want = [], {}
            for t in [0] + sorted({v for v in same.values() if v != 0}):
                runs.append(folder_single(src, work / f"single_{t}", a.engines, request, t))
                want[t] = _tree(work / f"single_{t}")
            base = runs[0]["wall_seconds"]
            for w, t in configs:
                out = work / f"ray_{w}x{t}"
                r = folder_ray(src, out, a.engines, request, w, t)
                r["equals_single_process"] = _tree(out) == want[same[t]]
                r["compared_with"] = next(x["config"] for x in runs if x["threads"] == same[t])
                r["overhead_vs_single"] = round(r["wall_seconds"] / base - 1, 3)
                r["overhead_vs_single_same_threads"] = round(
                    r["wall_seconds"] / next(x["wall_seconds"] for x in runs if x["threads"] == same[t]) - 1, 3)
                runs.append(r)
            res["folder"] = {"photos": a.photos, "sizes": sizes, "scale": a.scale, "steps": a.steps, "runs": runs}
            checks["Ray outputs equal the single-process run (same threads)"] = all(
                r["equals_single_process"] for r in runs if "equals_single_process" in r)
            checks["no file failed"] = all(r["failed"] == 0 and r["done"] == a.photos for r in runs)
        if not a.skip_service:
            inputs = crop_inputs(ROOT / "tests" / "data")
            cores = os.cpu_count() or 1
            # (label, options, threads per graph: 0 all cores); Ray's default: the cores shared
            servers = [("uvicorn, one process", [], 0)] + [
                (f"Ray Serve local, {n} replica(s)", ["--ray", "local", "--replicas", n],
                 0 if max(1, cores // int(n)) == cores else max(1, cores // int(n))) for n in a.replicas.split(",")]
            good: dict[int, list] = {}     # the expected images per threads (ONNX Runtime's sums depend on them)
            for t in sorted({t for _, _, t in servers}):
                pipe = Pipeline.load(a.engines, backend="cpu", threads=t)
                good[t] = []
                for k, lr in enumerate(inputs):
                    for scale in (2, 3):
                        [w] = pipe.upscale(lr, scale=scale, steps=a.service_steps, seed=k)
                        good[t].append({"query": f"scale={scale}&seed={k}&steps={a.service_steps}",
                                        "body": png_bytes(lr), "want": w, "lr": list(lr.shape[:2])})
                pipe.close()
            body = good[0 if 0 in good else min(good)][0]["body"]
            bad_bodies = {"corrupt": body[:40] + bytes(b ^ 0x5A for b in body[40:]), "truncated": body[: len(body) // 2],
                          "non-image": b"not an image\n" * 20, "bad-scale": body, "oversize-output": body}
            queue = ["--queue", str(a.clients)]
            svc = []
            for label, options, t in servers:
                svc.append(service_run(a.engines, label, [*options, "--threads", str(t), *queue], good[t], bad_bodies,
                                       a.requests, a.clients, a.bad, 0))
                svc[-1]["threads"] = t
            res["service"] = {"requests": a.requests, "clients": a.clients, "bad_fraction": a.bad,
                              "bad_kinds": {k: v[1] for k, v in BAD_KINDS.items()}, "steps": a.service_steps,
                              "inputs": sorted({f"{g['lr'][1]}x{g['lr'][0]}" for g in next(iter(good.values()))}),
                              "runs": svc}
            checks["service: every good answer pixel-exact"] = all(r["good_correct"] == r["good_ok"] for r in svc)
            checks["service: no 5xx but 503, bad requests their 4xx"] = all(
                r["server_errors_other_than_503"] == 0 and r["bad_with_wrong_status"] == 0 for r in svc)
            checks["service: graceful exit 0"] = all(r["exit_status"] == 0 for r in svc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res.update(loadavg_after=list(os.getloadavg()), checks=checks, total_seconds=round(time.perf_counter() - t_all, 1))
    print(f"{res['cpu']} ({res['cpus']} CPUs; {res['cpu_flags']}), Ray {res['ray']}, load average before "
          f"{' '.join(f'{v:.1f}' for v in res['loadavg_before'])}, after {' '.join(f'{v:.1f}' for v in res['loadavg_after'])}")
    if "folder" in res:
        f = res["folder"]
        print(f"folder: {f['photos']} photos ({', '.join(sorted(set(f['sizes'])))}) x{f['scale']:g}, {f['steps']} steps")
        for r in f["runs"]:
            extra = (f"; Ray start {r['ray_start_seconds']:.1f} s, first result +{r['first_result_seconds']:.1f} s, "
                     f"overhead {100 * r['overhead_vs_single']:+.0f} % ({100 * r['overhead_vs_single_same_threads']:+.0f} % "
                     f"at the same threads), equal: {r['equals_single_process']}" if "ray_start_seconds" in r else "")
            print(f"  {r['config']:<36} {r['wall_seconds']:7.1f} s  {r['photos_per_second'] * 3600:6.0f} photos/h  "
                  f"per photo p50 {r['seconds_per_photo']['p50']:.2f} s p95 {r['seconds_per_photo']['p95']:.2f} s{extra}")
    if "service" in res:
        s = res["service"]
        print(f"service: {s['requests']} requests ({100 * s['bad_fraction']:.0f} % bad), {s['clients']} clients, "
              f"inputs {', '.join(s['inputs'])} x2/x3, {s['steps']} steps")
        for r in s["runs"]:
            lat = r["latency_good_seconds"]
            print(f"  {r['config']:<36} {r['throughput_good_per_second']:.2f} good/s  p50 {lat['p50']:.2f} s "
                  f"p95 {lat['p95']:.2f} s  statuses {r['by_status']}  start {r['start_seconds']:.0f} s")
    return finish(res, checks, a.out, f" ({res['total_seconds']:.0f} s in all)")


if __name__ == "__main__":
    sys.exit(main())

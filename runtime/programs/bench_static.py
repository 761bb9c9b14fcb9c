"""OpenVINO's fixed-shape copies against its dynamic-shape model, side by side in one process.

    python -m runtime.programs.bench_static --engines engines/small --backend openvino-bf16 \
        --photo 312x208:4 --stages 48:8 --threads 2 --rounds 3 --out docs/results/openvino_static/small.json

The runtime's OpenVINO engines run every call on a copy of the graph compiled for the call's
input shapes (``runtime/backends/openvino.py``); ``max_static=0`` is the control: every call
on the one dynamic-shape model.  Two pipelines on the same engine directory, one per way,
are called in turn, round by round, so that load falls on both alike:

- ``--photo WxH:S``: the demo photo resized to W x H, upscaled by S at the defaults
  (end to end, medians of the rounds, after a warm-up that compiles); the two images'
  largest difference in grey levels; the warm-up's own time (the first request of a new
  size: the fixed way compiles its shapes there, the dynamic way lays out its weights);
- ``--stages L:S``: each graph at the side-by-side benchmark's shapes (``benchlib.stage_calls``:
  an L x L LR, S x output), medians of the rounds.

Prints the table and writes the JSON (machine, CPU flags, load averages before and after).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from PIL import Image

from ..backends import openvino as ov_backend
from ..pipeline import Pipeline
from .benchlib import DEMO_PHOTO, cpu_flags, finish, stage_calls

WAYS = {"dynamic": 0, "fixed": None}     # max_static: 0 the control, None the runtime's limit


def pipelines(engines: str, backend: str, threads: int) -> dict[str, Pipeline]:
    out = {}
    for way, max_static in WAYS.items():
        pipe = Pipeline.load(engines, backend="cpu", threads=threads)
        pipe.engines = ov_backend.create_engines(backend, pipe.bundle, threads, max_static=max_static)
        out[way] = pipe
    return out


def photo_case(pipes: dict, spec: str, rounds: int) -> dict:
    size, scale = spec.split(":")
    w, h = (int(v) for v in size.split("x"))
    img = Image.open(DEMO_PHOTO).convert("RGB").resize((w, h), Image.BICUBIC)
    times: dict[str, list] = {k: [] for k in pipes}
    images = {}
    first = {}
    for k, p in pipes.items():             # warm-up: the fixed way compiles its shapes here
        t = time.perf_counter()
        images[k] = p.upscale(img, scale=float(scale), output="array")[0]
        first[k] = time.perf_counter() - t
    for _ in range(rounds):
        for k, p in pipes.items():
            t = time.perf_counter()
            images[k] = p.upscale(img, scale=float(scale), output="array")[0]
            times[k].append(time.perf_counter() - t)
    diff = np.abs(images["dynamic"].astype(int) - images["fixed"].astype(int))
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"case": spec, "first": first, "seconds": times, "median": med, "ratio": med["dynamic"] / med["fixed"],
            "max_diff": int(diff.max()), "mean_diff": float(diff.mean())}


def stages_case(pipes: dict, spec: str, rounds: int) -> dict:
    lr, scale = (int(v) for v in spec.split(":"))
    calls = {k: stage_calls(p, lr, lr * scale) for k, p in pipes.items()}
    for fns in calls.values():                                    # warm-up: compiles every shape
        for fn in fns.values():
            fn()
    times: dict = {k: {s: [] for s in fns} for k, fns in calls.items()}
    for _ in range(rounds):
        for stage in calls["fixed"]:
            for k in pipes:
                t = time.perf_counter()
                calls[k][stage]()
                times[k][stage].append(time.perf_counter() - t)
    med = {k: {s: float(np.median(v)) for s, v in per.items()} for k, per in times.items()}
    return {"case": spec, "median": med,
            "ratio": {s: med["dynamic"][s] / med["fixed"][s] for s in med["fixed"]}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.programs.bench_static", description=__doc__.splitlines()[0])
    ap.add_argument("--engines", required=True)
    ap.add_argument("--backend", default="openvino-bf16", choices=sorted(ov_backend.PRECISION))
    ap.add_argument("--photo", action="append", default=[], help="WxH:S, repeatable")
    ap.add_argument("--stages", action="append", default=[], help="L:S, repeatable")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if not args.photo and not args.stages:
        ap.error("give --photo and/or --stages")
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "cpu_flags": cpu_flags(), "engines": args.engines, "backend": args.backend, "threads": args.threads,
           "rounds": args.rounds, "load_before": os.getloadavg(), "photo": [], "stages": []}
    pipes = pipelines(args.engines, args.backend, args.threads)
    for spec in args.photo:
        r = photo_case(pipes, spec, args.rounds)
        res["photo"].append(r)
        print(f"photo {spec}: dynamic {r['median']['dynamic']:.2f} s, fixed {r['median']['fixed']:.2f} s, "
              f"{r['ratio']:.3f}x; images differ by at most {r['max_diff']} (mean {r['mean_diff']:.5f}); the first "
              f"request of this size: dynamic {r['first']['dynamic']:.2f} s, fixed {r['first']['fixed']:.2f} s "
              f"(compiling its shapes)", flush=True)
    for spec in args.stages:
        r = stages_case(pipes, spec, args.rounds)
        res["stages"].append(r)
        for s, x in r["ratio"].items():
            print(f"stages {spec} {s:<10} dynamic {r['median']['dynamic'][s] * 1e3:8.1f} ms, fixed "
                  f"{r['median']['fixed'][s] * 1e3:8.1f} ms, {x:.3f}x", flush=True)
    res["load_after"] = os.getloadavg()
    return finish(res, {}, args.out)


if __name__ == "__main__":
    raise SystemExit(main())

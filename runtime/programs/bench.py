"""Timing benchmark (a program, never a test): ``python -m runtime.programs.bench``.

    python -m runtime.programs.bench [--engines engines/tiny-random] [--backend auto] [--out bench_out/bench.json]
                            [--repeat 3] [--no-memory]
    python -m runtime.programs.bench --side-by-side ...      # eager reference vs runtime: runtime/programs/bench_side.py

Times each graph (best of ``--repeat``), LIIF query throughput per tile size, and whole
``upscale`` calls; then runs the memory benchmark (``runtime.programs.bench_memory``) in a fresh
process, because peak RSS is per process.  Prints a table and writes JSON.  Numbers from a
shared or busy machine are noisy: the JSON records the CPU count and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _best(fn, repeat: int) -> float:
    fn()                                   # warm-up (session first-run allocations)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(engines: str, backend: str, repeat: int) -> dict:
    import onnxruntime as ort

    from ldmind_ref.core import consistency, contract, coords, noise

    from ..pipeline import Pipeline

    t0 = time.perf_counter()
    pipe = Pipeline.load(engines, backend=backend)
    load_s = time.perf_counter() - t0
    b = pipe.bundle
    c, lat = b.z_channels, 32
    z = noise.gaussian(0, 0, (1, c, lat, lat))
    res: dict = {"engines": engines, "model": b.name, "backend": pipe.backend, "precision": b.precision,
                 "onnxruntime": ort.__version__, "cpus": os.cpu_count(), "machine": platform.machine(),
                 "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                 "load_seconds": round(load_s, 3), "graphs": {}, "liif_queries_per_second": {}, "upscale": [],
                 "backproject": []}
    g = res["graphs"]
    if b.conditional:
        lr_side = lat * b.ae_downsample // b.cond_scale
        lr = np.zeros((1, 3, lr_side, lr_side), np.float32)
        g[f"encoder lr {lr_side}x{lr_side}"] = _best(lambda: pipe.engines["encoder"]({"lr": lr}), repeat)
    feed = {"z_t": z, "timestep": np.array([500], np.int64), "alpha_bar_t": np.array([0.5], np.float32),
            "alpha_bar_prev": np.array([0.6], np.float32), "sigma_t": np.array([0.1], np.float32), "noise": z}
    if b.conditional:
        feed["cond"] = z
    g[f"unet_step latent {lat}x{lat}"] = _best(lambda: pipe.engines["unet_step"](feed), repeat)
    g[f"decoder latent {lat}x{lat}"] = _best(lambda: pipe.engines["decoder"]({"z": z}), repeat)
    feats = pipe.engines["decoder"]({"z": z})["features"]
    for q in (1024, 4096, 65536):
        co = coords.grid_coords(512, 512)[:q][None]
        ce = coords.cells(512, 512, q)[None]
        t = _best(lambda: pipe.engines["liif"]({"features": feats, "coord": co, "cell": ce}), repeat)
        res["liif_queries_per_second"][str(q)] = round(q / t)
    res["graphs"] = {k: round(v * 1000, 2) for k, v in g.items()}      # milliseconds
    if b.conditional:
        lr_img = (np.random.RandomState(0).rand(24, 24, 3) * 255).astype(np.uint8)
        for scale in (2.0, 4.0, 8.0):
            t0 = time.perf_counter()
            pipe.upscale(lr_img, scale=scale, steps=20, eta=1.0)
            res["upscale"].append({"lr": [24, 24], "scale": scale, "steps": 20,
                                   "seconds": round(time.perf_counter() - t0, 3)})
        # back-projection alone (default iterations) on random pixels: model-independent
        rs = np.random.RandomState(1)
        for lr_side, out_side in ((256, 512), (256, 2048), (48, 3072)):
            small = (rs.rand(lr_side, lr_side, 3) * 255).astype(np.uint8)
            big = (rs.rand(out_side, out_side, 3) * 255).astype(np.uint8)
            t0 = time.perf_counter()
            consistency.apply_inplace(big, small)
            res["backproject"].append({"lr": lr_side, "output": out_side,
                                       "iterations": contract.DEFAULT_BACKPROJECT,
                                       "seconds": round(time.perf_counter() - t0, 3)})
    else:
        for side in (64, 256):
            t0 = time.perf_counter()
            pipe.generate((side, side), steps=20)
            res["upscale"].append({"generate": [side, side], "steps": 20, "seconds": round(time.perf_counter() - t0, 3)})
    return res


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--side-by-side" in argv:          # the eager reference beside the runtime: bench_side.py
        from . import bench_side
        return bench_side.main([a for a in argv if a != "--side-by-side"])
    p = argparse.ArgumentParser(prog="python -m runtime.programs.bench", description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="engines/tiny-random")
    p.add_argument("--backend", default="auto")
    p.add_argument("--out", default="bench_out/bench.json")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-memory", action="store_true", help="skip the memory benchmark")
    a = p.parse_args(argv)
    from ..errors import LdmindError

    try:
        res = run(a.engines, a.backend, a.repeat)
    except LdmindError as e:
        print(f"python -m runtime.programs.bench: error: {e}", file=sys.stderr)
        return 2
    print(f"{res['model']} on {res['backend']} ({res['cpus']} CPUs, load {res['loadavg']}):")
    for k, v in res["graphs"].items():
        print(f"  {k:<28} {v:9.2f} ms")
    for k, v in res["liif_queries_per_second"].items():
        print(f"  liif, tile {k:<17} {v / 1e6:9.3f} M queries/s")
    for u in res["upscale"] + res["backproject"]:
        what = ("back-project " if "iterations" in u else "") + json.dumps({k: v for k, v in u.items() if k != "seconds"})
        print(f"  {what:<45} {u['seconds']:8.2f} s")
    if not a.no_memory:
        r = subprocess.run([sys.executable, "-m", "runtime.programs.bench_memory", "--engines", a.engines],
                           capture_output=True, text=True)
        if r.returncode in (0, 1) and r.stdout.strip():
            res["memory"] = json.loads(r.stdout.strip().splitlines()[-1])
            m = res["memory"]
            print(f"  memory: peak RSS {m['peak_rss_bytes'] / 2**20:.0f} MiB rendering {m['output'][1]}x"
                  f"{m['output'][0]} ({m['output_bytes'] / 2**20:.1f} MiB output; budget "
                  f"{m['budget_bytes'] / 2**20:.0f} MiB) in {m['render_seconds']} s")
        else:
            res["memory"] = {"error": r.stderr.strip()}
            print(f"  memory benchmark failed: {r.stderr.strip()}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

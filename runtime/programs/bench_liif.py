"""The LIIF stage alone, eager reference against the runtime at several query tiles and
backends, calls alternating (a program, never a test; issue 11, part "LIIF stage").

    python -m runtime.programs.bench_liif [--model small=engines/small:ldmind_ref/weights/small.safetensors]
        [--model div2k-sr=engines/div2k-random] [--lr 48] [--scale 8] [--tile 65536 --tile 1024]
        [--backend cpu --backend openvino] [--repeat 5] [--threads 2] [--out bench_out/liif.json]

The queries of a (--lr x scale)^2 output over the decoder features of a --lr LR's latent, as
``runtime.programs.bench_side`` times them (eager: ``ldmind_ref.speed.stage_times``'s loop in the model's
query_chunk; runtime: ``tiling.render_into`` with the features bound once), every column once
per round, median of --repeat rounds after a warm-up: on a shared machine the load falls on
all columns alike.  Wall time and the process's CPU time (less sensitive to other jobs) are
both recorded.  Needs torch for the eager column.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.programs.bench_liif", description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, metavar="LABEL=ENGINES[:CHECKPOINT]")
    ap.add_argument("--backend", action="append", default=None)
    ap.add_argument("--tile", action="append", type=int, default=None)
    ap.add_argument("--lr", type=int, default=48)
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench_out/liif.json")
    a = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("python -m runtime.programs.bench_liif: error: the eager reference needs torch: pip install 'ldmind[ref]'",
              file=sys.stderr)
        return 2
    from ldmind_ref import liif
    from ldmind_ref.core import coords

    from .. import tiling
    from .benchlib import reference_model
    from ..pipeline import Pipeline

    torch.set_num_threads(a.threads)
    models = [m.split("=", 1) for m in (a.model or ["small=engines/small:ldmind_ref/weights/small.safetensors",
                                                    "div2k-sr=engines/div2k-random"])]
    S = a.lr * a.scale
    res = {"date": date.today().isoformat(), "cpus": os.cpu_count(), "threads": a.threads, "lr": a.lr,
           "scale": a.scale, "repeat": a.repeat, "models": {}}
    for label, spec in models:
        engines, _, ckpt = spec.partition(":")
        model = reference_model(engines, ckpt or None).eval()
        pipes = {b: Pipeline.load(engines, backend=b, threads=a.threads) for b in a.backend or ["cpu"]}
        b0 = next(iter(pipes.values())).bundle
        h = a.lr * b0.cond_scale // b0.ae_downsample
        z = np.random.RandomState(0).randn(1, b0.z_channels, h, h).astype(np.float32)
        f = next(iter(pipes.values())).engines["decoder"]({"z": z})["features"]
        ft = torch.from_numpy(f)
        chunk = model.cfg.liif.query_chunk
        co_all = torch.from_numpy(coords.grid_coords(S, S))
        ce = torch.from_numpy(coords.cells(S, S, 1))

        @torch.no_grad()
        def eager():
            for s in range(0, S * S, chunk):
                c = co_all[s:s + chunk][None]
                liif.query(model.liif, ft, c, ce.expand(1, c.shape[1], 2))
        cols = {f"eager (chunk {chunk})": eager}
        img = np.empty((1, S, S, 3), np.uint8)
        for name, pipe in pipes.items():
            for tile in a.tile or [b0.query_chunk, pipe.tile]:
                def render(pipe=pipe, tile=tile):
                    run = pipe.engines["liif"].bind({"features": f})
                    tiling.render_into(img, lambda _w, co, ce_: run({"coord": co, "cell": ce_})["rgb"], h, h, tile)
                cols.setdefault(f"{name} tile {tile}", render)
        wall = {k: [] for k in cols}
        cpu = {k: [] for k in cols}
        for fn in cols.values():
            fn()
        for _ in range(a.repeat):
            for k, fn in cols.items():
                t, p = time.perf_counter(), time.process_time()
                fn()
                wall[k].append(time.perf_counter() - t)
                cpu[k].append(time.process_time() - p)
        base = next(iter(cols))
        r = {k: {"wall_s": round(float(np.median(wall[k])), 4), "cpu_s": round(float(np.median(cpu[k])), 4),
                 "wall_all": [round(x, 3) for x in wall[k]]} for k in cols}
        res["models"][label] = {"columns": r, "loadavg_after": list(os.getloadavg())}
        print(f"\n{label}: LIIF queries of {S}^2 over a {h}^2 latent, {a.threads} threads, median of {a.repeat} "
              f"(x = {base} / column; load average {os.getloadavg()[0]:.1f})")
        for k, v in r.items():
            print(f"  {k:<26} wall {v['wall_s'] * 1e3:9.1f} ms (x{r[base]['wall_s'] / v['wall_s']:4.2f})   "
                  f"cpu {v['cpu_s'] * 1e3:9.1f} ms (x{r[base]['cpu_s'] / v['cpu_s']:4.2f})")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

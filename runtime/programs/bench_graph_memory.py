"""Working memory of single graph calls: measured, beside the manifest's estimate.

    python -m runtime.programs.bench_graph_memory --engines engines/small [--sides 48 96 192] [--json OUT]

Each (graph, latent side) runs once, in a fresh process: an ONNX Runtime CPU session as the
runtime opens it (no memory arena), one thread, inputs of the declared shapes (batch 1, an
h = w = side latent).  The peak RSS of the call (VmHWM, reset just before it through
/proc/self/clear_refs) minus the RSS before it is the measured working memory.  It is a
lower bound: memory the C allocator kept from loading the session can serve part of the
call without growing the RSS.  Beside it: ``latent_tiles.graph_memory``, the estimate from
the terms the exporter measured on the graph (without the runtime's MEMORY_MARGIN), and
measured / estimated.  Linux only (VmHWM, clear_refs).  A program: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MiB = 1024 ** 2


def _feed(bundle, graph: str, side: int) -> dict[str, np.ndarray]:
    """Inputs of ``graph`` for a side x side latent, batch 1, from the manifest's declared
    shapes (the LR of the encoder: the size whose latent that is)."""
    lat = bundle.manifest["latent"]
    dims = {"B": 1, "h": side, "w": side, "H": side * lat["ae_downsample"] // lat["cond_scale"],
            "W": side * lat["ae_downsample"] // lat["cond_scale"]}
    rng = np.random.default_rng(0)
    feed = {}
    for t in bundle.graphs[graph]["inputs"]:
        shape = tuple(dims[d] if isinstance(d, str) else d for d in t["shape"])
        if t["dtype"] == "int64":
            feed[t["name"]] = rng.integers(0, len(bundle.alpha_bar), shape).astype(np.int64)
        else:
            feed[t["name"]] = rng.uniform(-1.0, 1.0, shape).astype(np.dtype(t["dtype"]))
    return feed


def _one(engines: str, graph: str, side: int) -> dict:
    import onnxruntime as ort

    from ldmind_ref.core import latent_tiles

    from .benchlib import current_rss, peak_rss
    from ..bundle import load_bundle

    b = load_bundle(engines)
    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = False
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(b.graph_path(graph)), sess_options=so, providers=["CPUExecutionProvider"])
    feed = _feed(b, graph, side)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                     # VmHWM := VmRSS
    before = current_rss()
    sess.run(None, feed)
    measured = peak_rss() - before
    estimate = latent_tiles.graph_memory(b.costs[graph], side, side)
    return {"model": b.name, "graph": graph, "side": side, "measured_mib": round(measured / MiB, 1),
            "estimate_mib": round(estimate / MiB, 1), "ratio": round(measured / estimate, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.programs.bench_graph_memory", description=__doc__.splitlines()[0])
    p.add_argument("--engines", required=True)
    p.add_argument("--sides", type=int, nargs="+", default=[48, 96, 192])
    p.add_argument("--json", default=None)
    p.add_argument("--_one", nargs=2, metavar=("GRAPH", "SIDE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._one:
        print(json.dumps(_one(args.engines, args._one[0], int(args._one[1]))))
        return 0
    from ..bundle import load_bundle

    rows = []
    for side in args.sides:
        for graph in load_bundle(args.engines).costs:
            r = subprocess.run([sys.executable, "-m", "runtime.programs.bench_graph_memory", "--engines", args.engines,
                                "--_one", graph, str(side)], capture_output=True, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
            if r.returncode != 0:
                print(f"{graph} at {side}: failed\n{r.stderr}", file=sys.stderr)
                continue
            row = json.loads(r.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{row['model']:<10} {graph:<10} {side:>4}^2 cells  measured {row['measured_mib']:8.1f} MiB"
                  f"  estimate {row['estimate_mib']:8.1f} MiB  ratio {row['ratio']:.2f}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"),
                                               "command": "python -m runtime.programs.bench_graph_memory "
                                               + " ".join(argv or sys.argv[1:]), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

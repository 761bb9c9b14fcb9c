"""int8 against fp32 (``python -m export --int8``; issue 11): speed per graph in one run,
error per graph on real inputs, quality on Set5/Set14.

    python -m runtime.programs.bench_int8 speed --fp32 engines/small --int8 engines/small-int8 \
        --data ../shared/data/val --out docs/results/int8_speed.json
    python -m runtime.programs.bench_int8 quality --fp32 engines/small --int8 engines/small-int8 \
        --data ../shared/data/val --scales 4 8 --out docs/results/int8_quality.json

speed: each graph of both exports at the shapes of ``python -m runtime.programs.bench --side-by-side``
(``benchlib.runtime_times``: encoder on an --lr LR, one U-Net step and the decoder on its
latent, the LIIF queries of the --scale output, called as the pipeline calls them); the two
exports alternate for --rounds rounds (each a warm-up and one timed call per stage), so both
see the same machine load, and each figure is the median over rounds.  Each export runs on
ONNX Runtime unless --fp32-backend / --int8-backend name an OpenVINO backend (on a CPU with
VNNI and AVX-512 BF16: --fp32-backend openvino-bf16 --int8-backend openvino-bf16, what
``auto`` runs against int8 convolutions with the rest in bf16).  Then the error of
each int8 graph against its fp32 self on real inputs: the graphs' inputs recorded while the
fp32 pipeline upscales one image of --data at 4x (``runtime.calibrate.Recorder``; Set5/Set14
are never calibrated on), measured as ``export.quantize.graph_error``.

quality: ``runtime.programs.bench_steps`` on each export (the default sampler and steps, seed 0;
PSNR-Y, shave = scale, raw and back-projected), then a table int8 - fp32 per set and scale.
Both print a table and write JSON.
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

from ldmind_ref.core import contract

from ldmind_ref.core.cpuinfo import model_name as cpu_model
from .benchlib import STAGES, cpu_flags, runtime_times


def _machine() -> dict:
    return {"date": date.today().isoformat(), "cpu": cpu_model(), "cpus": os.cpu_count(), "cpu_flags": cpu_flags(),
            "vnni": "vnni" in cpu_flags(), "loadavg_start": list(os.getloadavg())}


def speed(a) -> dict:
    import onnxruntime as ort

    res = {**_machine(), "onnxruntime": ort.__version__, "lr": a.lr, "scale": a.scale, "rounds": a.rounds,
           "threads": a.threads, "backends": {"fp32": a.fp32_backend, "int8": a.int8_backend},
           "times": {"fp32": {s: [] for s in STAGES}, "int8": {s: [] for s in STAGES}}}
    backend = res["backends"]
    for r in range(a.rounds):
        for label, engines in (("fp32", a.fp32), ("int8", a.int8)) if r % 2 == 0 else (("int8", a.int8), ("fp32", a.fp32)):
            t = runtime_times(engines, backend[label], a.lr, a.lr * a.scale, 1, a.threads)["times"]
            for s, v in t.items():
                res["times"][label][s].append(v)
        print(f"  round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    res["median_ms"] = {k: {s: round(1e3 * float(np.median(v)), 2) for s, v in t.items() if v}
                        for k, t in res["times"].items()}
    res["ratio_fp32_over_int8"] = {s: round(res["median_ms"]["fp32"][s] / res["median_ms"]["int8"][s], 3)
                                   for s in res["median_ms"]["int8"]}
    res["error"] = graph_errors(a)
    res["loadavg_end"] = list(os.getloadavg())
    return res


def graph_errors(a) -> dict:
    """{graph: graph_error(fp32, int8)} on the inputs of one real 4x upscale of --image."""
    from export.quantize import graph_error
    from ldmind_ref.benchmark import load_hr, make_lr

    from .bench_steps import images
    from ..calibrate import Recorder
    from ..pipeline import Pipeline

    name, path = images(Path(a.data), 1)[a.image]
    _, lr = make_lr(load_hr(path), 4)
    pipe = Pipeline.load(a.fp32, backend="cpu", threads=a.threads)
    rec = {g: Recorder(e, liif_queries=65536) for g, e in pipe.engines.items()}
    pipe.engines.update(rec)
    pipe.upscale(lr, scale=4, seed=0, backproject=0, output="array")
    fp32, int8 = Pipeline.load(a.fp32, backend="cpu").bundle, Pipeline.load(a.int8, backend="cpu").bundle
    out = {"image": f"{name}/{path.name}", "lr": list(lr.shape[:2]), "scale": 4}
    for g, r in rec.items():
        feeds = [f for _, f in r.feeds][:: max(1, len(r.feeds) // 16)]
        out[g] = {**{k: round(v, 5) for k, v in graph_error(fp32.graph_path(g), int8.graph_path(g), feeds).items()},
                  "inputs": len(feeds)}
    return out


def speed_table(res: dict) -> str:
    m = res["median_ms"]
    b = res.get("backends", {"fp32": "cpu", "int8": "cpu"})
    lines = [f"{res['cpu']} ({res['cpus']} CPUs, VNNI: {'yes' if res['vnni'] else 'no'}), fp32 on {b['fp32']}, "
             f"int8 on {b['int8']} (ONNX Runtime {res['onnxruntime']}), {res['threads']} threads; LR {res['lr']}^2, "
             f"LIIF {res['scale']}x; median of {res['rounds']} alternating rounds (ms)",
             f"{'graph':<10}{'fp32':>10}{'int8':>10}{'fp32/int8':>11}{'rel_rms':>10}{'rel_max':>10}"]
    for s in m["int8"]:
        e = res["error"].get(s, {})
        lines.append(f"{s:<10}{m['fp32'][s]:10.1f}{m['int8'][s]:10.1f}{res['ratio_fp32_over_int8'][s]:10.2f}x"
                     f"{e.get('rel_rms', float('nan')):10.4f}{e.get('rel_max', float('nan')):10.4f}")
    return "\n".join(lines)


def quality(a) -> dict:
    from . import bench_steps

    config = f"{a.sampler}:{a.steps}"
    res = {**_machine(), "config": config, "scales": a.scales, "runs": {}}
    out = Path(a.out)
    for label, engines in (("fp32", a.fp32), ("int8", a.int8)):
        part = out.with_name(f"{out.stem}.{label}.json")       # bench_steps' own, resumable JSON
        t0 = time.time()
        bench_steps.main(["--engines", engines, "--data", a.data, "--scales", *map(str, a.scales),
                          "--configs", config, "--threads", str(a.threads), "--out", str(part)])
        res["runs"][label] = {"json": part.name, "seconds": round(time.time() - t0, 1),
                              "summary": json.loads(part.read_text())["summary"]}
    res["loadavg_end"] = list(os.getloadavg())
    return res


def quality_table(res: dict) -> str:
    c = res["config"]
    f, q = res["runs"]["fp32"]["summary"], res["runs"]["int8"]["summary"]
    lines = [f"PSNR-Y (dB, shave = scale), {c}: fp32 -> int8 (difference), raw and at the defaults",
             f"{'set':<8}{'scale':>6}{'raw fp32':>10}{'raw int8':>10}{'diff':>8}{'def fp32':>10}{'def int8':>10}"
             f"{'diff':>8}{'bicubic':>9}{'n':>4}"]
    for s in f:
        for sc in f[s]:
            a, b = f[s][sc][c], q[s][sc][c]
            lines.append(f"{s:<8}{sc + 'x':>6}{a[0]:10.3f}{b[0]:10.3f}{b[0] - a[0]:+8.3f}{a[1]:10.3f}{b[1]:10.3f}"
                         f"{b[1] - a[1]:+8.3f}{a[2]:9.2f}{a[5]:4d}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.programs.bench_int8", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for name in ("speed", "quality"):
        p = sub.add_parser(name)
        p.add_argument("--fp32", default="engines/small")
        p.add_argument("--int8", default="engines/small-int8")
        p.add_argument("--data", required=True, help="e.g. ../shared/data/val")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--out", required=True)
    sp = sub.choices["speed"]
    sp.add_argument("--lr", type=int, default=48)
    sp.add_argument("--scale", type=int, default=8)
    sp.add_argument("--rounds", type=int, default=7)
    sp.add_argument("--image", type=int, default=0, help="index of the image of --data whose inputs measure the error")
    for label in ("fp32", "int8"):
        sp.add_argument(f"--{label}-backend", default="cpu", choices=("cpu", "openvino", "openvino-bf16"),
                        help=f"what runs the {label} export's graphs (default cpu: ONNX Runtime; openvino-bf16: "
                             "OpenVINO, float arithmetic in bf16)")
    qp = sub.choices["quality"]
    qp.add_argument("--scales", type=int, nargs="+", default=[4, 8])
    qp.add_argument("--sampler", default=contract.DEFAULT_SAMPLER)
    qp.add_argument("--steps", type=int, default=contract.DEFAULT_STEPS)
    a = ap.parse_args(argv)
    res = speed(a) if a.what == "speed" else quality(a)
    res["command"] = "python -m runtime.programs.bench_int8 " + " ".join(sys.argv[1:] if argv is None else argv)
    print(speed_table(res) if a.what == "speed" else quality_table(res))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

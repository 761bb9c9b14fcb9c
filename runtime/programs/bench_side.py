"""Side by side in one run: the eager PyTorch reference and the runtime, same shapes, per
stage and summed (``python -m runtime.programs.bench --side-by-side``; issue 11).

    python -m runtime.programs.bench --side-by-side [--model div2k-sr=engines/div2k-random]
        [--model small=engines/small:ldmind_ref/weights/small.safetensors] [--lr 48] [--scale 8]
        [--steps 50] [--repeat 3] [--threads 2] [--no-bf16] [--out docs/results/side_by_side.json]
        [--plot docs/results/side_by_side.png]

A model is LABEL=ENGINES[:CHECKPOINT]: the runtime opens ENGINES, the reference loads
CHECKPOINT, or, without one, a random model of the preset named by the engines' manifest
(speed does not depend on the weights).  Stages (the issue's table): encoder on an LR of
--lr pixels, one U-Net step and the decoder on its latent, the LIIF queries of the --scale
output; "sum" = encoder + steps x U-Net step + decoder + LIIF.  Columns: eager fp32, eager
bf16 autocast (unless --no-bf16), and the runtime on each --backend (default: cpu).  Each
figure is a median after a warm-up; the columns alternate call by call
(``backends.timing.alternating``), so that a shared machine's load falls on all alike.  Needs the reference (torch): ``pip install
'ldmind[ref]'``; the runtime itself never imports torch.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

import numpy as np

from ..backends.timing import alternating
from ..pipeline import Pipeline
from .benchlib import STAGES, cpu_flags, reference_model, stage_calls


def total(t: dict, steps: int) -> float:
    return t.get("encoder", 0.0) + steps * t["unet_step"] + t["decoder"] + t["liif"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.programs.bench --side-by-side", description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, metavar="LABEL=ENGINES[:CHECKPOINT]")
    ap.add_argument("--backend", action="append", default=None)
    ap.add_argument("--lr", type=int, default=48)
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--out", default="bench_out/side_by_side.json")
    ap.add_argument("--plot", default=None)
    a = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("python -m runtime.programs.bench --side-by-side: error: the eager reference needs torch: "
              "pip install 'ldmind[ref]'", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    models = [m.split("=", 1) for m in (a.model or ["div2k-sr=engines/div2k-random",
                                                    "small=engines/small:ldmind_ref/weights/small.safetensors"])]
    out_side = a.lr * a.scale
    res = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "cpu_flags": cpu_flags(), "torch": torch.__version__, "threads": a.threads, "lr": a.lr,
           "scale": a.scale, "steps": a.steps, "repeat": a.repeat, "models": {}}
    for label, spec in models:
        engines, _, ckpt = spec.partition(":")
        model = reference_model(engines, ckpt or None)
        calls = {"eager fp32": _ref_calls(model, a, out_side, False)}
        if not a.no_bf16:
            calls["eager bf16"] = _ref_calls(model, a, out_side, True)
        pipes = [Pipeline.load(engines, backend=b, threads=a.threads) for b in a.backend or ["cpu"]]
        for pipe in pipes:
            calls[f"runtime {pipe.backend}"] = stage_calls(pipe, a.lr, out_side)
        cols = alternating(calls, a.repeat)
        for pipe in pipes:
            pipe.close()
        res["models"][label] = {k: {**{s: round(v, 4) for s, v in t.items()}, "sum": round(total(t, a.steps), 3)}
                                for k, t in cols.items()}
        print(table(label, res["models"][label], a))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    if a.plot:
        plot(res, a.plot)
    return 0


def _ref_calls(model, a, out_side: int, bf16: bool) -> dict:
    """The eager stages as calls, named as the runtime's (``liif``: the one output side)."""
    from ldmind_ref.speed import stage_calls as eager_calls
    return {("liif" if s == "liif0" else s): fn for s, fn in eager_calls(model, a.lr, [out_side], bf16).items()}


def table(label: str, cols: dict, a) -> str:
    names = list(cols)
    base = cols["eager fp32"]
    lines = [f"\n{label}: LR {a.lr}x{a.lr}, {a.scale}x ({a.lr * a.scale}^2), {a.steps} steps, {a.threads} threads "
             f"(ms; x = eager fp32 / column)",
             f"{'stage':<12}" + "".join(f"{n:>22}" for n in names)]
    for s in (*STAGES, "sum"):
        if s not in base:
            continue
        unit = 1 if s == "sum" else 1e3
        cells = []
        for n in names:
            v = cols[n][s]
            cells.append(f"{v * unit:12.1f}{'s' if s == 'sum' else ''} (x{base[s] / v:4.2f})")
        lines.append(f"{s:<12}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def plot(res: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(res["models"])
    fig, axes = plt.subplots(1, len(labels), figsize=(5.5 * len(labels), 3.4), squeeze=False)
    for ax, label in zip(axes[0], labels):
        cols = res["models"][label]
        stages = [s for s in (*STAGES, "sum") if s in next(iter(cols.values()))]
        x = np.arange(len(stages))
        width = 0.8 / len(cols)
        for k, (name, t) in enumerate(cols.items()):
            ax.bar(x + k * width, [t[s] / cols["eager fp32"][s] for s in stages], width, label=name)
        ax.set_xticks(x + 0.4 - width / 2, stages)
        ax.set_ylabel("time / eager fp32")
        ax.set_title(f"{label}: {res['lr']}^2 LR, {res['scale']}x, {res['steps']} steps", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())

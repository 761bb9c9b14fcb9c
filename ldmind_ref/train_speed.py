"""Training throughput on this machine: images/s per stage and precision, and the loss curve
of bf16 against fp32 for the same steps (a program that prints and saves numbers, never a test).

    python -m ldmind_ref.train_speed --config small --data ../shared/data/train --out docs/results/train_speed
    python -m ldmind_ref.train_speed --init CKPT --stages autoencoder --curve 300 --out ...

Throughput: each (stage, variant) trains ``--steps`` steps on the batches the trainer would
draw (seeded by step), timed after ``--warmup`` steps; ``prep_s`` is the time to draw one
batch in this process (what ``--workers`` would take off the critical path).  Variants:
``fp32``, ``bf16`` (autocast, the trainer's ``--bf16``), ``fp32-cl`` / ``bf16-cl`` (the model
and images channels-last).  The CPU flags are printed beside every figure: bf16 is only fast
where the CPU has AVX-512 BF16 or AMX.

``--curve N``: N steps of the first stage in fp32 and in bf16 from the same weights and
batches; both loss series and their running means go to curve.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .benchmark import cpu_summary
from .config import preset
from .data import ImageFolder, step_generator
from .model import LDMind
from .train import Objective, autocast, batch_for, make_optimizer, trainable

VARIANTS = ("fp32", "bf16", "fp32-cl", "bf16-cl")


def fresh(args, stage: str) -> LDMind:
    torch.manual_seed(0)
    if args.init:
        return ckpt.load_model(args.init)
    return LDMind(preset(args.config))


def train_steps(model: LDMind, stage: str, data: ImageFolder, steps: int, bf16: bool, channels_last: bool,
                warmup: int = 0):
    """Train ``steps`` steps; returns (losses, seconds per step after ``warmup``, prep seconds per batch)."""
    obj = Objective(model, stage)
    opt = make_optimizer(model.cfg, stage, trainable(model, stage))
    if channels_last:
        model.to(memory_format=torch.channels_last)
    dev = torch.device("cpu")
    losses, times, preps = [], [], []
    for k in range(steps):
        t0 = time.perf_counter()
        b = batch_for(data, model.cfg, stage, step_generator(0, stage, 0, k))
        t1 = time.perf_counter()
        if channels_last:
            b = {n: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for n, v in b.items()}
        with autocast(dev, bf16):
            loss = obj(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        preps.append(t1 - t0)
        times.append(time.perf_counter() - t1)
    steady = times[warmup:] or times
    return losses, statistics.median(steady), statistics.median(preps)


def plot_curve(curves: dict[str, list[float]], title: str, path: Path, window: int = 20) -> None:
    """Both loss series and their running means (``window`` steps) in one PNG (matplotlib, the
    ``plot`` extra; skipped with a note without it)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no curve.png", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, losses in curves.items():
        line, = ax.plot(range(1, len(losses) + 1), losses, alpha=0.25)
        run = [statistics.mean(losses[max(0, i - window + 1):i + 1]) for i in range(len(losses))]
        ax.plot(range(1, len(losses) + 1), run, color=line.get_color(), label=f"{name} (mean of {window})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ldmind_ref.train_speed", description=__doc__.split("\n")[0])
    p.add_argument("--config", default="small", help="preset (random weights) unless --init")
    p.add_argument("--init", help="checkpoint to start from (stages 2/3 need a trained auto-encoder for a "
                                  "meaningful curve, not for throughput)")
    p.add_argument("--data", default="../shared/data/train")
    p.add_argument("--stages", nargs="+", default=["autoencoder", "ldm", "align"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--curve", type=int, default=0, metavar="N", help="fp32 vs bf16 loss curve of N steps")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = f"{cpu_summary()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    crop = (ckpt.read_config(args.init) if args.init else preset(args.config)).train.crop
    data = ImageFolder(args.data, crop)
    if args.curve:
        stage = args.stages[0]
        curves = {}
        for v in ("fp32", "bf16"):
            losses, sec, _ = train_steps(fresh(args, stage), stage, data, args.curve, v == "bf16", False)
            curves[v] = losses
            print(f"{stage} {v}: {args.curve} steps, {sec:.3f} s/step, mean loss of the last 50 "
                  f"{statistics.mean(losses[-50:]):.5f}", flush=True)
        (out / "curve.json").write_text(json.dumps({"machine": machine, "stage": stage, "init": args.init,
                                                    "config": args.config, "losses": curves}))
        plot_curve(curves, f"{stage}, {args.init or args.config}\n{machine}", out / "curve.png")
        return 0
    rows = []
    for stage in args.stages:
        for v in args.variants:
            model = fresh(args, stage)
            bs = model.cfg.train.batch
            _, sec, prep = train_steps(model, stage, data, args.steps, v.startswith("bf16"), v.endswith("-cl"),
                                       args.warmup)
            rows.append({"stage": stage, "variant": v, "s_per_step": round(sec, 4),
                         "images_per_s": round(bs / sec, 2), "prep_s": round(prep, 4), "batch": bs})
            print(f"{stage:12s} {v:8s} {sec:.3f} s/step  {bs / sec:6.1f} img/s  (batch prep {prep * 1e3:.0f} ms)",
                  flush=True)
    (out / "train_speed.json").write_text(json.dumps({"machine": machine, "config": args.config, "init": args.init,
                                                      "rows": rows}, indent=1))
    print(machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())

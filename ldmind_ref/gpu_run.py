"""The prepared GPU session (issue 14), one command: train every stage, then time the reference.

    python3 -m ldmind_ref.gpu_run --out "$OUT" --device cuda --bf16 --minutes 6        # on the GPU machine
    python -m ldmind_ref.gpu_run --out /tmp/dry --device cpu --config tiny --data tests/data \
        --minutes 0.5 --timing tiny --threads 1 --workers 1                             # the dry run

1. ``train all`` (``train_all.py``) of ``--config`` on ``--data`` within ``--minutes`` into
   ``--run`` (its full checkpoints stay there); then the shipping checkpoints (float16, each
   far under the 16 MiB a returned file may hold), ``summary.json`` and ``log.csv`` are copied
   to ``--out``.
2. The reference timed on the device (``speed.request_times``): for each entry of the timing
   plan, a random model of the preset, fp32 and bf16, each eager and (CUDA) with the U-Net
   step replayed from a CUDA graph: stage times and the composed request of ``--steps`` steps
   per scale; then one end-to-end ``sampler.upscale`` (fp32, DDIM, eta 1, no back-projection,
   host copies included) per scale.  fp32 is PyTorch's default (TF32 in convolutions only).
   Plan ``paper``: ffhq-sr at 8, 12, 30, 100, 200x of a
   16x16 LR and div2k-sr at 4, 8x of 48x48, 50 steps (the paper's Table 5 setting); plan
   ``tiny``: the tiny preset at small sizes and 2 steps (the dry run).  ``timing.json`` is
   rewritten after every measurement, so a run stopped at its time limit keeps what it had.
   Timing gets ``--timing-minutes``, cut to what is left of ``--total-minutes`` (no
   measurement starts later); a measurement that fails is recorded with its error and the
   run goes on, and so does the timing when the training data are missing.

``python -m ldmind_ref.gpu_run --table OUT/timing.json`` prints the timing as the Markdown
table for docs/BENCHMARKS.md (the run prints it at its end too).

Everything lands flat in ``--out`` (the device tool returns at most 8 files).  The exit
status is 0 only when training and every timing entry succeeded.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from .train_all import SHIPPING

PLANS = {
    # (preset, LR side, scales); the paper's Table 5: ffhq-sr 16x16 LR, 50 steps (RTX 4090:
    # 0.2568 FPS at 8x ... 0.0982 at 200x); div2k-sr at 4x / 8x of 48x48
    "paper": {"steps": 50, "entries": [("ffhq-sr", 16, [8, 12, 30, 100, 200]), ("div2k-sr", 48, [4, 8])]},
    "tiny": {"steps": 2, "entries": [("tiny", 8, [2, 4]), ("tiny", 16, [3])]},
}
PAPER_FPS = {"ffhq-sr": {8: 0.2568, 12: 0.2510, 30: 0.2473, 100: 0.1833, 200: 0.0982}}   # one RTX 4090
RETURNED = (*SHIPPING, "summary.json", "log.csv")   # copied from the training folder to --out
MAX_RETURNED_BYTES = 16 * 2 ** 20


def say(msg: str) -> None:
    print(f"[gpu_run {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def environment(device: str) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "device": device}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env |= {"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2 ** 30, 1),
                "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    return env


def train(a: argparse.Namespace, out: Path) -> bool:
    from . import train as train_cmd

    argv = ["--config", a.config, "--data", a.data, "--out", a.run, "--minutes", str(a.minutes),
            "--device", a.device, "--threads", str(a.threads), "--workers", str(a.workers), "--quiet"] + ["--bf16"] * a.bf16 \
        + (["--shares", a.shares] if a.shares else [])
    if Path(a.run, "summary.json").exists():
        argv.append("--resume")
    ok = True
    try:
        train_cmd.main(["all", *argv])
    except (Exception, SystemExit) as e:   # timing still runs; the error is in run.log and summary
        ok = False
        say(f"training failed: {e!r}")
        traceback.print_exc()
    for name in RETURNED:
        src = Path(a.run) / name
        if src.exists():
            shutil.copyfile(src, out / name)
            if src.stat().st_size > MAX_RETURNED_BYTES:
                say(f"warning: {name} is {src.stat().st_size / 2 ** 20:.1f} MiB, over the 16 MiB a file may return")
                ok = False
        else:
            say(f"missing after training: {src}")
            ok = False
    return ok


def timing(a: argparse.Namespace, out: Path, deadline: float) -> bool:
    from . import sampler, speed
    from .config import preset
    from .model import random_model

    plan = PLANS[a.timing]
    steps = a.steps or plan["steps"]
    # PyTorch's own defaults for "fp32" (training turned TF32 matrix products on): convolutions
    # may use TF32 (cuDNN's default), matrix products may not; cuDNN picks its fastest kernels
    from .train import set_tf32
    set_tf32(matmul=False, cudnn=True)
    torch.backends.cudnn.benchmark = True
    env = environment(a.device) | {"matmul_tf32": False, "cudnn_tf32": True, "cudnn_benchmark": True}
    result = {"env": env, "plan": a.timing, "steps": steps, "repeat": a.repeat,
              "paper_fps_rtx4090": PAPER_FPS, "rows": [], "end_to_end": [], "errors": []}
    path = out / "timing.json"

    def save():
        path.write_text(json.dumps(result, indent=1))

    variants = [(False, False), (True, False)]
    if a.device == "cuda":
        variants += [(False, True), (True, True)]
    ok = True
    for name, lr_side, scales in plan["entries"]:
        model = random_model(preset(name), seed=0).to(a.device)
        for bf16, graph in variants:
            label = f"{name} lr {lr_side} {'bf16' if bf16 else 'fp32'}{' graph' if graph else ''}"
            if time.time() > deadline:
                result["errors"].append(f"{label}: skipped, timing budget spent")
                ok = False
                continue
            t = time.time()
            try:
                rows = speed.request_times(model, lr_side, scales, steps, a.repeat, bf16, graph)
                for r in rows:
                    r |= {"preset": name, "precision": "bf16" if bf16 else "fp32", "cuda_graph": graph}
                result["rows"] += rows
                say(f"{label}: " + ", ".join(f"{r['scale']}x {r['fps']:.3f} fps" for r in rows)
                    + f" ({time.time() - t:.1f} s)")
            except Exception as e:  # noqa: BLE001 - recorded, the run goes on
                result["errors"].append(f"{label}: {e!r}")
                say(f"{label}: failed: {e!r}")
                ok = False
            save()
        # end to end through the reference sampler (fp32, DDIM, eta 1, no back-projection)
        rng = np.random.default_rng(0)
        lr = rng.integers(0, 256, (lr_side, lr_side, 3), dtype=np.uint8)
        for i, s in enumerate([scales[0]] + list(scales)):   # the first call warms up
            if time.time() > deadline:
                result["errors"].append(f"{name} end to end {s}x: skipped, timing budget spent")
                ok = False
                break
            try:
                t = time.time()
                sampler.upscale(model, lr, scale=s, steps=steps, eta=1.0, sampler="ddim", backproject=0)
                if a.device == "cuda":
                    torch.cuda.synchronize()
                if i:
                    sec = time.time() - t
                    result["end_to_end"].append({"preset": name, "lr": lr_side, "scale": s, "steps": steps,
                                                 "precision": "fp32", "seconds": sec, "fps": 1.0 / sec})
                    say(f"{name} end to end {s}x: {sec:.3f} s")
            except Exception as e:  # noqa: BLE001
                result["errors"].append(f"{name} end to end {s}x: {e!r}")
                say(f"{name} end to end {s}x: failed: {e!r}")
                ok = False
            save()
        del model
        if a.device == "cuda":
            torch.cuda.empty_cache()
    save()
    return ok


def timing_table(result: dict) -> str:
    """The timing as one Markdown table (for docs/BENCHMARKS.md): frames per second per preset
    and scale, composed (eager / CUDA graph, fp32 / bf16) and end to end, beside the paper's."""
    env = result["env"]
    variants = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
    fps = {(r["preset"], r["lr"], r["scale"], r["precision"], r["cuda_graph"]): r["fps"] for r in result["rows"]}
    e2e = {(r["preset"], r["lr"], r["scale"]): r["fps"] for r in result["end_to_end"]}
    keys = list(dict.fromkeys((r["preset"], r["lr"], r["scale"], r["out"]) for r in result["rows"]))
    cell = lambda v: f"{v:.4g}" if v is not None else "–"   # noqa: E731
    lines = [f"Reference (PyTorch {env['torch']}) on {env.get('gpu', env['device'])}, random weights, "
             f"{result['steps']} steps, batch 1; frames per second.  *composed*: encoder + steps x U-Net step + "
             f"decoder + queries, each timed alone (median of {result['repeat']}); *end to end*: "
             f"sampler.upscale, fp32, DDIM, no back-projection.", "",
             "| preset | LR → output | scale | fp32 | fp32 + CUDA graph | bf16 | bf16 + CUDA graph | end to end fp32 "
             "| paper, RTX 4090 |", "|---|---|---|---|---|---|---|---|---|"]
    for name, lr, scale, out in keys:
        paper = PAPER_FPS.get(name, {}).get(scale)
        lines.append(f"| {name} | {lr}² → {out}² | {scale}× | "
                     + " | ".join(cell(fps.get((name, lr, scale, p, g))) for p, g in variants)
                     + f" | {cell(e2e.get((name, lr, scale)))} | {cell(paper)} |")
    if result["errors"]:
        lines += ["", "Not measured: " + "; ".join(result["errors"])]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--table"]:   # python -m ldmind_ref.gpu_run --table OUT/timing.json
        if len(argv) != 2 or not Path(argv[1]).is_file():
            raise SystemExit("--table takes the path of a timing.json")
        print(timing_table(json.loads(Path(argv[1]).read_text())))
        return 0
    p = argparse.ArgumentParser(prog="python -m ldmind_ref.gpu_run", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="what comes back ($OUT on the GPU machine)")
    p.add_argument("--run", default="runs/gpu", help="training folder (full checkpoints; not returned)")
    p.add_argument("--config", default="medium")
    p.add_argument("--data", default="pack/train.zip", help="photos: the pack of python -m ldmind_ref.pack")
    p.add_argument("--minutes", type=float, default=6.0, help="training budget")
    p.add_argument("--shares", help="time shares of the training stages (default: train_all.SHARES)")
    p.add_argument("--timing-minutes", type=float, default=2.0, help="timing budget")
    p.add_argument("--total-minutes", type=float, default=9.3,
                   help="no timing measurement starts after this (the device command's limit is 10)")
    p.add_argument("--timing", choices=sorted(PLANS), default="paper")
    p.add_argument("--steps", type=int, default=0, help="sampling steps of the timing (default: the plan's)")
    p.add_argument("--repeat", type=int, default=3, help="timed calls per measurement (median)")
    p.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    p.add_argument("--bf16", action="store_true", help="train with bf16 autocast")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--workers", type=int, default=-1, help="batch-preparing processes (default: train.py's)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-timing", action="store_true")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    say(f"start: {json.dumps(environment(a.device))}")
    ok = True
    if not a.skip_train and not Path(a.data).exists():   # not fatal: the timing still runs
        say(f"training data not found: {a.data} (build it with python -m ldmind_ref.pack and carry it); "
            f"no training")
        ok, a.skip_train = False, True
    if not a.skip_train:
        ok &= train(a, out)
        say(f"training and copies done in {time.time() - t0:.1f} s")
    if not a.skip_timing:
        t1 = time.time()
        ok &= timing(a, out, min(t1 + a.timing_minutes * 60, t0 + a.total_minutes * 60))
        say(f"timing done in {time.time() - t1:.1f} s")
        print(timing_table(json.loads((out / "timing.json").read_text())), file=sys.stderr, flush=True)
    say(f"all done in {time.time() - t0:.1f} s, {'ok' if ok else 'WITH ERRORS (see above)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    from .errors import cli
    sys.exit(cli("python -m ldmind_ref.gpu_run", main))

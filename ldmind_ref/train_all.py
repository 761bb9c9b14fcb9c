"""Every stage in one time budget: ``python -m ldmind_ref.train all``.

    python -m ldmind_ref.train all --config medium --data pack/train.zip --out runs/gpu \\
        --minutes 6 --device cuda --bf16

Runs, in order, the three SR stages of ``train.py`` (auto-encoder, LDM, alignment) and then
the paper's generation variant: an unconditional U-Net (``config.generation_variant``)
trained as stage ``ldm`` on the frozen auto-encoder of stage 1.  Each stage writes what a
stage command writes (``OUT/ae``, ``OUT/ldm``, ``OUT/align``, ``OUT/gen``: ``model.safetensors``,
``state.safetensors``, ``log.jsonl``).

Time budget (``--minutes``, wall clock from the start of the command):
1. *probe*: each stage runs ``--probe-steps`` steps on a random model (``OUT/probe``) and
   its steady throughput is measured (device synchronised);
2. each stage gets its share (``SHARES``, or ``--shares``) of the time left, re-divided over the stages not yet
   done when it starts (time a stage leaves unused goes to the ones after it); its step count
   is planned from its probe (``PLAN_FILL`` of its share) and its learning rate decays
   linearly to zero over those steps (the cool-down);
3. a stage still running at the end of its share stops between two steps, validates and
   checkpoints there.
``--steps N`` gives every stage N steps instead (no probe; ``--minutes`` then only caps).

``OUT/summary.json`` records the plan and, per stage, steps, wall time, images/s and
validation losses (stage 1 also the reconstruction PSNR-Y of the validation photos, the bound
on everything after it); ``OUT/log.csv`` holds every stage's losses.  ``--resume`` continues a
killed run: finished stages are skipped, the interrupted one resumes from its last checkpoint
with its recorded step count (bit-exact, as ``train.py --resume``), the rest follow in the
time given to this invocation.  At the end the shipping checkpoints are written
(``checkpoint.save_shipping``, float16): ``OUT/sr.safetensors`` (after alignment),
``OUT/ldm.safetensors`` (before alignment) and ``OUT/gen.safetensors``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import checkpoint as ckpt, metrics
from .config import ModelConfig, generation_variant, preset
from .core import images
from .data import ImageFolder
from .model import LDMind
from .train_options import add_run_options

# name -> (train.py stage, output folder); the order is the training order
STAGES = {"autoencoder": ("autoencoder", "ae"), "ldm": ("ldm", "ldm"), "align": ("align", "align"),
          "gen": ("ldm", "gen")}
SHARES = {"autoencoder": 0.35, "ldm": 0.30, "align": 0.10, "gen": 0.25}
DEPENDS = {"autoencoder": None, "ldm": "autoencoder", "align": "ldm", "gen": "autoencoder"}   # the stage it starts from
PLAN_FILL = 0.85        # planned steps fill this fraction of a stage's share (start-up, validation, checkpoints)
SHIP_RESERVE = (15.0, 0.05)   # kept back at the end for the shipping checkpoints and logs: min(seconds, fraction)
SHIPPING = {"sr.safetensors": "align", "ldm.safetensors": "ldm", "gen.safetensors": "gen"}


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Run:
    def __init__(self, args: argparse.Namespace, stage_trainer: Callable):
        self.args = args
        self.stage_trainer = stage_trainer     # (stage argv, data) -> train.Trainer
        self.out = Path(args.out)
        self.t_start = time.time()
        budget = args.minutes * 60
        self.end = self.t_start + budget - min(SHIP_RESERVE[0], SHIP_RESERVE[1] * budget) if args.minutes else None
        self.cfg = preset(args.config)
        self.summary_path = self.out / "summary.json"
        self.data: ImageFolder | None = None
        fresh = {"config": self.cfg.name, "device": args.device, "bf16": args.bf16, "seed": args.seed,
                 "fixed_steps": args.steps, "shares": args.shares, "plan_fill": PLAN_FILL, "stages": {}}
        if self.summary_path.exists():
            if not args.resume:
                raise SystemExit(f"{self.out} holds a run already: give --resume, or another --out")
            self.summary = json.loads(self.summary_path.read_text())
            for k in ("config", "bf16", "seed", "fixed_steps"):
                if self.summary.get(k) != fresh[k]:
                    raise SystemExit(f"--resume: {k} was {self.summary.get(k)!r}, now {fresh[k]!r}")
        else:
            self.summary = fresh
        self.summary.setdefault("invocations", []).append({"minutes": args.minutes, "started": round(self.t_start, 1)})

    # -- helpers ---------------------------------------------------------------------------
    def save_summary(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.summary_path, self.summary)

    def stage_argv(self, name: str, out: Path, steps: int, init: Path | None, resume: bool, decay: bool) -> list[str]:
        a = self.args
        argv = [STAGES[name][0], "--data", a.data, "--out", str(out), "--steps", str(steps), "--device", a.device,
                "--seed", str(a.seed), "--workers", str(a.workers), "--threads", str(a.threads)]
        argv += ["--init", str(init)] if init else ["--config", self.cfg.name]
        return argv + ["--decay"] * decay + ["--resume"] * resume + ["--bf16"] * a.bf16 + ["--quiet"] * a.quiet

    def trainer(self, argv: list[str]):
        if self.data is None:   # decoded once for every stage (they share the crop size)
            self.data = ImageFolder(self.args.data, self.cfg.train.crop)
        return self.stage_trainer(argv, self.data)

    def stage_cfg(self, name: str) -> ModelConfig:
        return generation_variant(self.cfg) if name == "gen" else self.cfg

    def make_init(self, name: str, out: Path) -> Path | None:
        """The checkpoint a stage starts from (None: stage 1, from the config)."""
        if name == "autoencoder":
            return None
        if name != "gen":
            prev = {"ldm": "ae", "align": "ldm"}[name]
            return self.out / prev / "model.safetensors"
        # generation: the stage-1 auto-encoder and f_theta, a fresh unconditional U-Net
        init = out / "init.safetensors"
        if not init.exists():
            ae = ckpt.load_model(self.out / "ae" / "model.safetensors")
            torch.manual_seed(self.args.seed + 1)
            model = LDMind(self.stage_cfg("gen"))
            for part in ("encoder", "decoder", "liif"):
                getattr(model, part).load_state_dict(getattr(ae, part).state_dict())
            ckpt.save_model(init, model, stage="autoencoder")
        return init

    # -- the phases ------------------------------------------------------------------------
    def probe(self) -> None:
        """Steady seconds per step of each stage on random models (device synchronised).  A
        stage whose probe fails is recorded with its error (``train all`` then skips it and
        the stages that start from it); a resumed run probes it again."""
        base = self.out / "probe"
        res = self.summary.setdefault("probe", {})
        for name in STAGES:
            if "seconds_per_step" in res.get(name, {}):
                continue
            t = time.time()
            try:
                cfg = self.stage_cfg(name)
                init = None
                if name != "autoencoder":
                    init = base / f"init-{cfg.name}.safetensors"
                    if not init.exists():
                        from .model import random_model
                        ckpt.save_model(init, random_model(cfg, self.args.seed), stage="probe")
                (base / name / "log.jsonl").unlink(missing_ok=True)
                trainer = self.trainer(self.stage_argv(name, base / name, self.args.probe_steps, init, False, False))
                r = trainer.run(self.args.probe_steps, warmup=min(3, self.args.probe_steps - 1))
                del trainer
            except Exception as e:  # noqa: BLE001 - recorded; the other stages still run
                traceback.print_exc()
                res[name] = {"error": repr(e), "wall_s": round(time.time() - t, 2)}
                print(f"probe {name}: failed: {e!r}", file=sys.stderr, flush=True)
                self.save_summary()
                continue
            per_step = r["steady_seconds"] / max(1, r["steady_steps"])
            res[name] = {"seconds_per_step": round(per_step, 5),
                         "images_per_s": round(r["images_per_step"] / per_step, 1) if per_step > 0 else None,
                         "wall_s": round(time.time() - t, 2)}
            print(f"probe {name}: {per_step * 1e3:.1f} ms/step, {res[name]['images_per_s']} images/s "
                  f"({res[name]['wall_s']} s)", file=sys.stderr, flush=True)
            self.save_summary()

    def plan_steps(self, name: str, seconds: float) -> int:
        if self.args.steps:
            return self.args.steps
        per_step = max(self.summary["probe"][name]["seconds_per_step"], 1e-6)
        return max(1, int(PLAN_FILL * seconds / per_step))

    def stage(self, name: str) -> None:
        rec = self.summary["stages"].get(name)
        if rec and rec.get("done"):
            return
        out = self.out / STAGES[name][1]
        now = time.time()
        left = [n for n in STAGES if not self.summary["stages"].get(n, {}).get("done")]
        shares = self.args.shares
        seconds = (self.end - now) * shares[name] / sum(shares[n] for n in left) if self.end else None
        # a stage begun before keeps its step count (its learning-rate decay), resumed from its
        # last checkpoint if it wrote one
        resume = bool(rec) and (out / "state.safetensors").exists()
        if not rec or "steps" not in rec:
            rec = {"steps": self.plan_steps(name, seconds), "budget_s": round(seconds, 1) if seconds else None}
            self.summary["stages"][name] = rec
            self.save_summary()
        if not resume and (out / "log.jsonl").exists():   # a start killed before its first checkpoint
            (out / "log.jsonl").unlink()
        init = self.make_init(name, out)
        t = time.time()
        trainer = self.trainer(self.stage_argv(name, out, rec["steps"], init, resume, True))
        r = trainer.run(rec["steps"], deadline=now + seconds if seconds is not None else None)
        log = read_log(out / "log.jsonl")
        vals = [x["val_loss"] for x in log if "val_loss" in x]
        # steady throughput (after the warm-up steps), or over every step of a run too short for it
        steps_s = (r["steady_steps"], r["steady_seconds"]) if r["steady_steps"] else (r["steps"], r["seconds"])
        per_s = steps_s[0] * r["images_per_step"] / steps_s[1] if steps_s[1] > 0 else None
        rec.update(done=True, steps_done=trainer.step, stopped_early=trainer.step < rec["steps"],
                   wall_s=round(time.time() - t, 1), train_s=r["seconds"],
                   images_per_s=round(per_s, 1) if per_s else None,
                   val_loss_first=vals[0] if vals else None, val_loss_last=vals[-1] if vals else None)
        if name == "autoencoder":
            rec["val_psnr_y"] = reconstruction_psnr(trainer.model, trainer.data, trainer.device)
        self.summary["stages"][name] = rec
        self.save_summary()
        print(f"{name}: {trainer.step} of {rec['steps']} steps in {rec['wall_s']} s, {rec['images_per_s']} images/s, "
              f"val loss {rec['val_loss_first']} -> {rec['val_loss_last']}"
              + (f", reconstruction PSNR-Y {rec['val_psnr_y']:.2f} dB" if "val_psnr_y" in rec else ""),
              file=sys.stderr, flush=True)
        del trainer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def ship(self) -> None:
        """float16 shipping checkpoints and one CSV of every stage's log."""
        shipped = {}
        for fname, name in SHIPPING.items():
            if not self.summary["stages"].get(name, {}).get("done"):
                continue
            model = ckpt.load_model(self.out / STAGES[name][1] / "model.safetensors")
            ckpt.save_shipping(self.out / fname, model, stage=name,
                               step=str(self.summary["stages"][name]["steps_done"]))
            shipped[fname] = (self.out / fname).stat().st_size
        self.summary["shipped_bytes"] = shipped
        with open(self.out / "log.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["stage", "step", "loss", "val_loss", "time"])
            for name, (_, folder) in STAGES.items():
                for x in read_log(self.out / folder / "log.jsonl"):
                    w.writerow([name, x.get("step"), x.get("loss", ""), x.get("val_loss", ""), x.get("time", "")])
        self.summary["total_s"] = round(time.time() - self.t_start, 1)
        self.save_summary()


@torch.no_grad()
def reconstruction_psnr(model: LDMind, data: ImageFolder, device, side: int = 256) -> float:
    """Mean PSNR-Y (shave 0) of E then D_phi + f_theta at the same size, on centre crops of up
    to ``side`` pixels of the validation photos."""
    model.eval()
    f = model.cfg.autoencoder.downsample
    out = []
    for path in data.val:
        img = data.load(path)
        h, w = (min(side, img.shape[0]) // f) * f, (min(side, img.shape[1]) // f) * f
        y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        crop = np.ascontiguousarray(img[y:y + h, x:x + w])
        t = torch.from_numpy(images.to_float(crop))[None].to(device)
        rgb = model.render(model.encode(t), h, w).float().cpu().numpy()
        out.append(metrics.psnr_y(images.to_uint8(rgb)[0], crop, 0))
    model.train()
    return round(float(np.mean(out)), 3)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ldmind_ref.train all", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="preset name (the SR model; its generation variant follows)")
    p.add_argument("--data", required=True, help="folder or zip of PNG/JPEG photos")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget of this command")
    p.add_argument("--steps", type=int, default=0, help="steps per stage instead of the plan (no probe)")
    p.add_argument("--probe-steps", type=int, default=0,
                   help="steps per stage in the throughput probe (default: 30 on CUDA, 4 on the CPU)")
    p.add_argument("--shares", default=",".join(str(v) for v in SHARES.values()),
                   help=f"time shares of {', '.join(STAGES)} (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue a killed run in OUT")
    add_run_options(p)
    a = p.parse_args(argv)
    try:
        shares = [float(v) for v in a.shares.split(",")]
    except ValueError:
        shares = []
    if len(shares) != len(STAGES) or not all(v > 0 for v in shares):
        raise SystemExit(f"--shares takes {len(STAGES)} positive numbers separated by commas, got {a.shares!r}")
    a.shares = dict(zip(STAGES, shares))
    if not a.minutes and not a.steps:
        raise SystemExit("give --minutes M (a time budget) or --steps N (steps per stage)")
    if a.minutes < 0 or a.steps < 0 or a.probe_steps < 0:
        raise SystemExit("--minutes, --steps and --probe-steps must not be negative")
    a.probe_steps = a.probe_steps or (30 if a.device == "cuda" else 4)
    if a.probe_steps < 2:
        raise SystemExit("--probe-steps must be at least 2 (one warm-up step, one timed)")
    return a


def main(argv, stage_trainer: Callable) -> int:
    """``train.main(["all", ...])`` calls this with ``train.stage_trainer``, the one way the
    stages are run (``train`` imports this module, never the reverse).
    Errors are ``SystemExit("message")``.  A stage that fails is recorded in the summary with
    its error, the stages that start from it are skipped, the others still run and ship; the
    command then ends with ``SystemExit`` naming the failed stages."""
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    run = Run(args, stage_trainer)
    run.save_summary()
    if not args.steps:
        run.probe()
    failed: dict[str, str] = {}
    stages = run.summary["stages"]
    for name in STAGES:
        probe_error = run.summary.get("probe", {}).get(name, {}).get("error")
        if DEPENDS[name] in failed or probe_error:
            failed[name] = probe_error or f"skipped: {DEPENDS[name]} failed"
            stages.setdefault(name, {})["error"] = failed[name]
            run.save_summary()
            continue
        try:
            run.stage(name)
            stages[name].pop("error", None)
        except Exception as e:  # noqa: BLE001 - recorded; independent stages still run
            traceback.print_exc()
            failed[name] = repr(e)
            stages.setdefault(name, {})["error"] = repr(e)
            run.save_summary()
    run.ship()
    s = run.summary
    print(f"done in {s['total_s']} s: " + ", ".join(f"{n} {r['steps_done']} steps {r['images_per_s']} img/s"
                                                   for n, r in stages.items() if r.get("done")), file=sys.stderr)
    if failed:
        raise SystemExit("stages failed: " + "; ".join(f"{n}: {e}" for n, e in failed.items()))
    return 0

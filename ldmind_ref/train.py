"""The three training stages, one command each.

    python -m ldmind_ref.train autoencoder --config small --data DIR --out runs/ae
    python -m ldmind_ref.train ldm   --init runs/ae/model.safetensors  --data DIR --out runs/ldm
    python -m ldmind_ref.train align --init runs/ldm/model.safetensors --data DIR --out runs/align

1. autoencoder: E + D_phi + f_theta, L1 on sampled pixels of the crop resized to a random size.
2. ldm: the U-Net on frozen E latents (``scale_by_std`` from the first batch), eps L2, EMA.
3. align: the U-Net only, L_align = SNR * (||z0 - pred_z0||^2 + ||x0 - ND(pred_z0)||^2) through
   the frozen decoder (lambda_1, lambda_2 from the config).

Beside them, stage 1 on part of the auto-encoder, the same batches and L1 (``TRAINED``):
``decoder`` trains D_phi and f_theta with E frozen (the latents, and so any U-Net trained on
them, stay valid); ``liif`` trains f_theta alone.  They fit a smaller f_theta to a trained
auto-encoder (``--config`` a preset that differs only in f_theta, ``--warm`` the trained
checkpoint): f_theta runs four times per output pixel (docs/BENCHMARKS.md, the LIIF stage).

    python -m ldmind_ref.train liif --config small3-lite --warm small3-ae.safetensors --data DIR --out runs/lite
    python -m ldmind_ref.train decoder --init runs/lite/model.safetensors --data DIR --out runs/lite2

After stage 2, ``sampled`` trains D_phi and f_theta (E and the U-Net frozen) to render what
the sampler actually returns: each step samples latents of the batch's LRs at the runtime's
defaults (``sampler.sample_batch``; one scale per batch, ``data.SAMPLED_SCALES``) and takes
L1 of their render against the HR pixels, plus the stage-1 L1 of ND(E(HR)) on the same pixels
so that the auto-encoder's ceiling is kept.  Not a stage of the paper, whose stage 3 moves the
U-Net towards the decoder (``align``); this moves the decoder towards the U-Net's latents.

    python -m ldmind_ref.train sampled --init runs/ldm/model.safetensors --data DIR --out runs/sampled

Each ``--out`` gets ``model.safetensors`` (inference weights; the U-Net is the EMA in
stages 2/3), ``state.safetensors`` (raw weights, EMA, optimiser, step) and ``log.jsonl``.
``--resume`` continues from ``state.safetensors`` exactly as an uninterrupted run, because
every random draw of step k is seeded by (seed, stage, rank, k).  Multi-process training:
``torchrun --nproc_per_node N -m ldmind_ref.train ...`` (gloo on CPU, NCCL on CUDA).

``--lr`` overrides the stage's learning rate from the config and ``--decay`` lowers it
linearly to zero at step ``--steps`` (a continuation run's cool-down); both are run
arguments, not model config, so a resumed run must be given the same ones.

``--bf16`` runs forward and loss under bf16 autocast (CUDA, and CPU where supported);
``--workers N`` prepares batches in N processes (default: none on the CPU, up to 12 on
CUDA), which changes nothing in what is drawn.  Losses reach the log in groups (one
device synchronisation per group), each record with its own step.

    python -m ldmind_ref.train all --config medium --data DIR --out DIR --minutes 6 --device cuda --bf16

runs every stage and the generation model in one time budget (``train_all.py``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import checkpoint as ckpt, ladder, liif, sampler, train_all
from .autoencoder import kl_divergence, split_posterior
from .config import ModelConfig, preset
from .core import contract, diffusion
from .data import ImageFolder, StepBatches, autoencoder_batch, sampled_batch, sr_batch, step_generator
from .grow import grow
from .model import LDMind
from .train_options import add_run_options

STAGES = ("autoencoder", "decoder", "liif", "ldm", "align", "sampled")
# the modules each stage trains; every other one is frozen
TRAINED = {"autoencoder": ("encoder", "decoder", "liif"), "decoder": ("decoder", "liif"), "liif": ("liif",),
           "ldm": ("unet",), "align": ("unet",), "sampled": ("decoder", "liif")}


class Objective(nn.Module):
    """The loss of one stage; a module so that DDP can wrap it."""

    def __init__(self, model: LDMind, stage: str):
        super().__init__()
        self.model, self.stage = model, stage
        self.register_buffer("alpha_bar", torch.tensor(diffusion.alpha_bar_for(model.cfg.diffusion),
                                                        dtype=torch.float32), persistent=False)

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.stage == "sampled":
            return self.sampled_loss(b)
        return self.autoencoder_loss(b) if self.stage in ckpt.AUTOENCODER_STAGES else self.diffusion_loss(b)

    def autoencoder_loss(self, b):
        m, trained = self.model, TRAINED[self.stage]
        if "encoder" not in trained:   # frozen parts build no graph; E gives the posterior mean, as inference
            with torch.no_grad():
                z = m.encode_raw(b["x"])
            with contextlib.nullcontext() if "decoder" in trained else torch.no_grad():
                features = m.decoder(z)
            return F.l1_loss(liif.query(m.liif, features, b["coord"], b["cell"]), b["rgb"])
        moments = m.encoder(b["x"])
        if m.cfg.autoencoder.kl:
            mean, logvar = split_posterior(moments)
            z = mean + torch.exp(0.5 * logvar) * b["posterior_eps"]
            kl = kl_divergence(mean, logvar)
        else:
            z, kl = moments, moments.new_zeros(())
        pred = liif.query(m.liif, m.decoder(z), b["coord"], b["cell"])
        return F.l1_loss(pred, b["rgb"]) + m.cfg.train.kl_weight * kl

    def sampled_loss(self, b):
        m = self.model
        with torch.no_grad():  # E and the U-Net are frozen: the sampler's latents are data here
            z_sample = sampler.sample_batch(m, m.encode_lr(b["lr"]), b["noise"])
            z_true = m.encode(b["hr"])
        render = lambda z: liif.query(m.liif, m.decode(z), b["coord"], b["cell"])  # noqa: E731
        return F.l1_loss(render(z_sample), b["rgb"]) + F.l1_loss(render(z_true), b["rgb"])

    def diffusion_loss(self, b):
        m, t = self.model, b["t"]
        with torch.no_grad():  # E is frozen in stages 2 and 3
            z0 = m.encode(b["hr"])
            cond = m.encode_lr(b["lr"]) if m.cfg.unet.conditional else None
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        z_t = diffusion.q_sample(z0, b["eps"], ab)
        eps = m.eps(z_t, cond, t)
        if self.stage == "ldm":
            return F.mse_loss(eps, b["eps"])
        # alignment: both terms weighted by alpha_bar / (1 - alpha_bar), per sample
        weight = diffusion.align_weight(ab.view(-1))
        z0_hat = diffusion.pred_z0(z_t, eps, ab)
        latent = (z0 - z0_hat).pow(2).flatten(1).mean(1)
        rgb = liif.query(m.liif, m.decode(z0_hat), b["coord"], b["cell"])
        image = (rgb - b["rgb"]).pow(2).flatten(1).mean(1)
        tc = m.cfg.train
        return (weight * (tc.lambda_latent * latent + tc.lambda_image * image)).mean()


def trainable(model: LDMind, stage: str) -> list[nn.Parameter]:
    parts = [getattr(model, name) for name in TRAINED[stage]]
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for part in parts for p in part.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def make_optimizer(cfg: ModelConfig, stage: str, params) -> torch.optim.Optimizer:
    t = cfg.train
    if "unet" not in TRAINED[stage]:   # the auto-encoder's parts: stage 1's optimiser
        return torch.optim.Adam(params, lr=t.ae_lr)
    if stage == "ldm":
        return torch.optim.AdamW(params, lr=t.ldm_lr)
    return torch.optim.Adam(params, lr=t.align_lr)


def learning_rate(base: float, step: int, steps: int, decay: bool, warmup: int = 0) -> float:
    """LR of optimisation step ``step`` (0-based) of a run of ``steps`` steps: linear from
    base / warmup up to ``base`` over the first ``warmup`` steps (a restarted Adam's first
    updates are about ``lr`` per weight whatever the gradient, which knocks a warm-started
    model out of its minimum), then constant or, with ``decay``, linear down to 0 at ``steps``."""
    lr = base * (1.0 - step / steps) if decay else base
    return lr * min(1.0, (step + 1) / warmup) if warmup > 0 else lr


def ema_decay(decay: float, updates: int) -> float:
    """EMA decay of the ``updates``-th update (1-based): ``decay``, but at most (1 + n) / (10 + n),
    as latent-diffusion's LitEma.  A fixed decay d keeps d^n of the *random* initial weights
    after n updates: 17 % after 1,750 at 0.999, 37 % after 10,000 at 0.9999.  Its samples
    were noise where the live U-Net's were photographs (session 7); short runs need this."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


LOSS_GROUP = 25   # loss values read back from the device every this many steps


def batch_for(data: ImageFolder, cfg: ModelConfig, stage: str, g: torch.Generator, split="train"):
    return batch_maker(stage)(data, g, cfg, split)


def batch_maker(stage: str):
    if stage == "sampled":
        return sampled_batch
    return autoencoder_batch if stage in ckpt.AUTOENCODER_STAGES else sr_batch


def to_device(b: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in b.items()}


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on the device when asked (losses and norms stay fp32 by autocast's rules)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PREFETCH = 2         # batches in flight per batch-preparing process
SHM_FRACTION = 0.5   # of the free shared memory they may fill


def shm_free() -> float:
    """Free bytes of /dev/shm, where the batches of loading processes travel (inf if absent)."""
    try:
        return float(shutil.disk_usage("/dev/shm").free)
    except OSError:
        return float("inf")


def set_tf32(matmul: bool, cudnn: bool) -> None:
    """TF32 in matrix products / convolutions on CUDA.  Newer PyTorch releases phase these
    flags out: a refusal is reported on one line, never fatal to a run."""
    try:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn
    except Exception as e:  # noqa: BLE001
        print(f"note: TF32 settings not applied ({e})", file=sys.stderr)


def default_workers(device: torch.device) -> int:
    return 0 if device.type == "cpu" else max(0, min(12, (os.cpu_count() or 1) - 2))


def warm_start(model: LDMind, source: LDMind) -> int:
    """Copy every tensor of ``source`` whose name and shape match into ``model`` (a changed
    architecture starts from what it shares with a trained one); the rest keeps its random
    initialisation.  Returns the number of tensors copied."""
    src = source.state_dict()
    own = model.state_dict()
    same = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(same, strict=False)
    return len(same)


def inference_state(model: LDMind, ema: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    state = dict(model.state_dict())
    if ema is not None:
        state.update({f"unet.{k}": v for k, v in ema.items()})
    return state


class Trainer:
    def __init__(self, args: argparse.Namespace, data: ImageFolder | None = None):
        """``data``: the photos of ``args.data`` already opened (``train all`` shares them)."""
        self.args, self.stage = args, args.stage
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.device = torch.device(args.device)
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            set_tf32(matmul=True, cudnn=True)
        self.workers = default_workers(self.device) if args.workers < 0 else args.workers
        self.out = Path(args.out)
        self.state_path = self.out / "state.safetensors"
        cfg = self._config()
        torch.manual_seed(args.seed)  # the initial weights of stage 1 depend on the seed alone
        self.model = LDMind(cfg)
        if args.init:
            ckpt.require_complete(args.init)
            init = ckpt.load_model(args.init)
            if init.cfg != cfg:
                raise SystemExit(f"--init {args.init} was trained with another config ({init.cfg.name})")
            self.model.load_state_dict(init.state_dict())
        elif getattr(args, "grow", None):
            try:
                grow(self.model, ckpt.load_model(args.grow))
            except ValueError as e:
                raise SystemExit(f"--grow {args.grow}: {e}") from None
            print(f"grown from {args.grow}: the same image at step 0", file=sys.stderr)
        elif getattr(args, "warm", None):
            copied = warm_start(self.model, ckpt.load_model(args.warm))
            print(f"warm start from {args.warm}: {copied} of {len(self.model.state_dict())} tensors copied",
                  file=sys.stderr)
        self.model.to(self.device)
        self.cfg = cfg
        self.params = trainable(self.model, self.stage)
        self.opt = make_optimizer(cfg, self.stage, self.params)
        self.base_lr = args.lr if args.lr is not None else self.opt.param_groups[0]["lr"]
        self.ema = ({k: v.detach().clone() for k, v in self.model.unet.state_dict().items()}
                    if "unet" in TRAINED[self.stage] else None)
        self.step = 0
        self.data = data if data is not None else ImageFolder(args.data, cfg.train.crop)
        if args.resume and self.state_path.exists():
            self._load_state()
        elif self.stage == "ldm":
            self._scale_by_std()
        self.objective = Objective(self.model, self.stage).to(self.device)
        self.wrapped = self.objective
        if self.world > 1:
            self.wrapped = nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _config(self) -> ModelConfig:
        a = self.args
        if a.init:
            cfg = ckpt.read_config(a.init)
            if a.config and a.config != cfg.name:
                raise SystemExit(f"--config {a.config} does not match --init ({cfg.name})")
            return cfg
        if self.stage not in ckpt.AUTOENCODER_STAGES:
            raise SystemExit(f"stage {self.stage} needs --init (the previous stage's model.safetensors)")
        if not a.config:
            raise SystemExit("give --config NAME (a preset) or --init CHECKPOINT")
        if "encoder" not in TRAINED[self.stage] and not (a.warm or getattr(a, "grow", None)):
            raise SystemExit(f"stage {self.stage} trains on a frozen encoder: give --init or --warm "
                             f"(a trained auto-encoder)")
        return preset(a.config)

    @torch.no_grad()
    def _scale_by_std(self) -> None:
        """scale_factor = 1 / std of the latents of the first training batch."""
        b = batch_for(self.data, self.cfg, self.stage, step_generator(self.args.seed, "scale", 0, 0))
        z = self.model.encode_raw(b["hr"].to(self.device))
        self.model.scale_factor.fill_(1.0 / z.float().std().item())

    def _load_state(self) -> None:
        meta = ckpt.read_metadata(self.state_path)
        if meta.get("stage") != self.stage:
            raise SystemExit(f"{self.state_path} belongs to stage {meta.get('stage')}, not {self.stage}")
        t = ckpt.load_tensors(self.state_path, self.device)
        model_state = {k[6:]: v for k, v in t.items() if k.startswith("model.")}
        ckpt.check_state(self.model.state_dict(), model_state, str(self.state_path))
        self.model.load_state_dict(model_state)
        ckpt.optimizer_from_tensors(self.opt, t, meta["param_groups"], "opt")
        if self.ema is not None:
            self.ema = {k[4:]: v for k, v in t.items() if k.startswith("ema.")}
        self.step = int(meta["step"])
        self.args.seed = int(meta["seed"])

    def save(self) -> None:
        if self.rank:
            return
        opt_t, groups = ckpt.optimizer_to_tensors(self.opt, "opt")
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()} | opt_t
        if self.ema is not None:
            tensors |= {f"ema.{k}": v for k, v in self.ema.items()}
        meta = {"format": ckpt.FORMAT, "config": self.cfg.to_json(), "stage": self.stage,
                "step": str(self.step), "seed": str(self.args.seed), "param_groups": groups}
        ckpt.save_tensors(tensors, self.state_path, meta)
        ckpt.save_tensors(inference_state(self.model, self.ema), self.out / "model.safetensors",
                          {"format": ckpt.FORMAT, "config": self.cfg.to_json(), "stage": self.stage,
                           "step": str(self.step)})

    @torch.no_grad()
    def validate(self) -> float:
        self.objective.eval()
        n = max(1, -(-self.cfg.train.val_images // self.cfg.train.batch))
        # the stages of one objective validate on the same draws, so their losses compare
        family = "autoencoder" if self.stage in ckpt.AUTOENCODER_STAGES else self.stage
        losses = []
        for i in range(n):
            b = to_device(batch_for(self.data, self.cfg, self.stage, step_generator(0, family + "/val", 0, i),
                                    "val"), self.device)
            with autocast(self.device, self.args.bf16):
                losses.append(self.objective(b).item())
        self.objective.train()
        return sum(losses) / len(losses)

    def batches(self, steps: int):
        """Batches of steps self.step .. steps - 1, from ``self.workers`` processes or this one.
        The first is made here; its size bounds the workers by the shared memory that their
        batches in flight need (a small /dev/shm, as in many containers, would kill them)."""
        ds = StepBatches(self.data, self.cfg, self.stage, batch_maker(self.stage), self.args.seed, self.rank)
        start = self.step
        if start >= steps:
            return
        first = ds[start]
        yield first
        todo = range(start + 1, steps)
        workers = self.workers
        if workers:
            need = sum(v.numel() * v.element_size() for v in first.values()) * PREFETCH
            fit = int(SHM_FRACTION * shm_free() // need)
            if fit < workers:
                print(f"note: shared memory for {fit} batch-preparing processes, not {workers}", file=sys.stderr)
                workers = fit
        if not workers:
            yield from (ds[k] for k in todo)
            return
        self.data.preload()  # decoded once here, shared by the forked workers
        yield from torch.utils.data.DataLoader(
            ds, batch_size=None, sampler=todo, num_workers=workers, prefetch_factor=PREFETCH,
            pin_memory=self.device.type == "cuda", multiprocessing_context="fork")

    def log(self, record: dict) -> None:
        if self.rank == 0:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def run(self, steps: int, deadline: float | None = None, warmup: int = 3) -> dict:
        """Train up to step ``steps``, or until ``deadline`` (a ``time.time()``, checked between
        steps: the run then validates and checkpoints where it stopped).  Returns the steps
        done here and their wall time, in all and after the first ``warmup`` steps (device
        synchronised at both ends: the throughput of the running stage)."""
        from tqdm import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        tc = self.cfg.train
        bar = tqdm(total=steps, initial=self.step, desc=self.stage, disable=self.rank != 0 or self.args.quiet,
                   dynamic_ncols=True, file=sys.stderr)
        live = list(self.model.unet.state_dict().items()) if self.ema is not None else []
        ema_f = [self.ema[k] for k, v in live if v.is_floating_point()] if live else []
        live_f = [v for _, v in live if v.is_floating_point()]
        pending: list[tuple[int, torch.Tensor, float]] = []

        def flush():
            if not pending:
                return
            values = torch.stack([v for _, v, _ in pending]).float().cpu().tolist()
            for (k, _, t), v in zip(pending, values):
                if not math.isfinite(v):
                    raise SystemExit(f"non-finite loss at step {k}")
                self.log({"step": k, "loss": v, "time": t})
            bar.set_postfix(loss=f"{values[-1]:.4f}")
            pending.clear()

        start, t0 = self.step, time.time()
        t_warm, saved, validated = None, -1, -1
        for b in self.batches(steps):
            if deadline is not None and self.step > start and time.time() >= deadline:   # one step at least
                break
            b = to_device(b, self.device)
            with autocast(self.device, self.args.bf16):
                loss = self.wrapped(b)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            for group in self.opt.param_groups:
                group["lr"] = learning_rate(self.base_lr, self.step, steps, self.args.decay,
                                            getattr(self.args, "warmup", 0))
            if tc.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.params, tc.grad_clip)
            self.opt.step()
            if self.ema is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(ema_f, live_f, 1.0 - ema_decay(tc.ema_decay, self.step + 1))
                    for k, v in live:
                        if not v.is_floating_point():
                            self.ema[k].copy_(v)
            self.step += 1
            bar.update(1)
            pending.append((self.step, loss.detach(), round(time.time() - t0, 2)))
            if self.step - start == warmup:
                synchronize(self.device)
                t_warm = time.time()
            if len(pending) >= LOSS_GROUP:
                flush()
            if self.step % tc.val_every == 0 and self.rank == 0:
                flush()
                self._validate_and_log(bar)
                validated = self.step
            if self.step % tc.ckpt_every == 0:
                flush()
                self.save()
                saved = self.step
        synchronize(self.device)
        t_end = time.time()
        flush()
        if self.step > start:
            if validated != self.step and self.rank == 0:
                self._validate_and_log(bar)
            if saved != self.step:
                self.save()
        bar.close()
        done = self.step - start
        steady = done - warmup if t_warm is not None else 0
        return {"steps": done, "seconds": round(t_end - t0, 3), "steady_steps": steady,
                "steady_seconds": round(t_end - t_warm, 3) if t_warm is not None else 0.0,
                "images_per_step": tc.batch * self.world}

    def _validate_and_log(self, bar) -> None:
        val = self.validate()
        rec = {"step": self.step, "val_loss": val}
        msg = f"step {self.step}: val loss {val:.5f}"
        if "unet" not in TRAINED[self.stage] and self.args.ceiling:
            # the bound of everything after stage 1: ND(E(HR)) against bicubic from the 4x LR
            f = self.cfg.autoencoder.downsample
            hrs = [ladder.centre_crop(self.data.load(p), self.args.ceiling, 4 * f) for p in self.data.val]
            c = ladder.ceiling(self.model, hrs, 4)
            rec |= {f"val_{k}": round(v, 3) for k, v in c.items()}
            msg += f", ceiling {c['ceiling']:.2f} dB = bicubic {c['margin']:+.2f} (worst {c['worst_margin']:+.2f})"
            if self.stage == "sampled":   # what the stage is for: the sample at the defaults, seed 0
                rows = [ladder.image_rungs(self.model, hr, 4, 1, contract.DEFAULT_STEPS, 0, True) for hr in hrs]
                for rung in ("raw", "defaults"):
                    margin = float(np.mean([r[rung] - r["bicubic"] for r in rows]))
                    rec[f"val_{rung}_margin"] = round(margin, 3)
                    msg += f", {rung} = bicubic {margin:+.2f}"
        self.log(rec)
        bar.write(msg)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ldmind_ref.train", description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--config", help="preset name (stage 1), or a check against --init")
    p.add_argument("--init", help="checkpoint to start from (required for ldm and align)")
    p.add_argument("--warm", help="stage 1 with --config: copy the tensors of this checkpoint that match "
                                  "the preset's architecture by name and shape (the rest starts random)")
    p.add_argument("--grow", help="stage 1 with --config: start from this checkpoint grown to the preset "
                                  "(more ResBlocks, a wider or deeper LIIF MLP), computing the same image "
                                  "at step 0 (ldmind_ref/grow.py)")
    p.add_argument("--data", required=True, help="folder of PNG/JPEG images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--steps", type=int, default=1000, help="total optimisation steps")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.safetensors")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the config's for the stage)")
    p.add_argument("--decay", action="store_true", help="decay the learning rate linearly to 0 at --steps")
    p.add_argument("--warmup", type=int, default=0, metavar="N",
                   help="raise the learning rate linearly over the first N steps of the run (0: off)")
    p.add_argument("--minutes", type=float, default=None, metavar="M",
                   help="stop after M minutes of wall time (validated and checkpointed where it stopped)")
    add_run_options(p)
    return p.parse_args(argv)


def stage_trainer(argv: list[str], data: ImageFolder | None = None) -> Trainer:
    """The ``Trainer`` of a stage command line (how ``train all`` runs each stage)."""
    return Trainer(parse_args(argv), data=data)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["all"]:
        return train_all.main(argv[1:], stage_trainer)
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.lr is not None and not args.lr > 0:
        raise SystemExit("--lr must be positive")
    if args.warmup < 0:
        raise SystemExit("--warmup must be >= 0")
    if args.warm and args.grow:
        raise SystemExit("give --warm or --grow, not both")
    if args.minutes is not None and not args.minutes > 0:
        raise SystemExit("--minutes must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    deadline = time.time() + 60.0 * args.minutes if args.minutes is not None else None
    trainer = Trainer(args)
    try:
        trainer.run(args.steps, deadline=deadline)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    from .errors import cli
    sys.exit(cli("python -m ldmind_ref.train", main))

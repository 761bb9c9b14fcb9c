"""The quality ladder: what bounds an SR result, rung by rung, on held-out photos.

    python -m ldmind_ref.ladder --model small=ldmind_ref/weights/small.safetensors --out docs/results/ladder

Per held-out set and scale (4x, 8x), PSNR-Y (shave = scale, LIIF's protocol) of
  - ``ceiling``: ND(E(HR)) at the HR size -- the auto-encoder given the *true* image; nothing
    after stage 1 can do much better (the diffusion model only has to find this latent);
  - ``raw``: one diffusion sample rendered at the HR size, no back-projection;
  - ``mean_k``: the mean of K samples' renders (the posterior-mean end of the fidelity dial);
  - ``mean_z``: the render of the mean of the same K latents (one render instead of K);
  - ``defaults``: the CLI's defaults (one sample, back-projection onto the LR);
  - ``bicubic``: PIL bicubic from the LR.
Held-out data: Set5, Set14 (never trained or tuned on) and every 20th training photo (the
trainer's validation split), each as a centre crop of at most ``--side`` pixels.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from . import metrics, sampler
from .benchmark import bicubic, cpu_summary, load_hr
from .checkpoint import AUTOENCODER_STAGES, load_model, read_metadata
from .core import consistency, contract, images
from .data import EXTENSIONS, ImageFolder


def centre_crop(img: np.ndarray, side: int, multiple: int) -> np.ndarray:
    """The centre crop of at most side x side pixels, both sides multiples of ``multiple``."""
    h = (min(side, img.shape[0]) // multiple) * multiple
    w = (min(side, img.shape[1]) // multiple) * multiple
    y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[y:y + h, x:x + w])


@torch.no_grad()
def reconstruct(model, hr: np.ndarray) -> np.ndarray:
    """ND(E(HR)) at the HR size: uint8 [H, W, 3] -> uint8 [H, W, 3] (H, W multiples of the
    auto-encoder's downsampling)."""
    was = model.training
    model.eval()
    t = torch.from_numpy(images.to_float(hr))[None].to(next(model.parameters()).device)
    rgb = model.render(model.encode(t), hr.shape[0], hr.shape[1]).float().cpu().numpy()
    model.train(was)
    return images.to_uint8(rgb)[0]


def ceiling(model, hrs: list[np.ndarray], scale: int = 4) -> dict:
    """Mean PSNR-Y (shave ``scale``) of the auto-encoder's reconstruction and of bicubic from
    the ``scale``x LR, and the worst per-image margin, over uint8 HR crops whose sides are
    multiples of ``scale`` and of the downsampling."""
    nd, bic = [], []
    for hr in hrs:
        H, W = hr.shape[:2]
        nd.append(metrics.psnr_y(reconstruct(model, hr), hr, scale))
        lr = bicubic(hr, W // scale, H // scale)
        bic.append(metrics.psnr_y(bicubic(lr, W, H), hr, scale))
    margins = np.subtract(nd, bic)
    return {"ceiling": float(np.mean(nd)), "bicubic": float(np.mean(bic)),
            "margin": float(margins.mean()), "worst_margin": float(margins.min())}


# -- the whole ladder ------------------------------------------------------------------------
SCALES = (4, 8)
RUNGS = ("ceiling", "raw", "mean_k", "mean_z", "defaults", "bicubic")


def heldout_sets(val_dir: Path | None, train_dir: Path | None, side: int) -> dict[str, list[tuple[str, np.ndarray]]]:
    """{set name: [(image name, uint8 HR centre crop)]}: each subfolder of ``val_dir`` (Set5,
    Set14) and every 20th photo of ``train_dir`` (the trainer's validation split).  Crops are
    multiples of 8 * 4 pixels per side so that every scale and the latent divide them."""
    sets: dict[str, list[tuple[str, np.ndarray]]] = {}
    unit = max(SCALES) * 4
    if val_dir is not None:
        for d in sorted(p for p in val_dir.iterdir() if p.is_dir()):
            files = sorted(f for f in d.iterdir() if f.suffix.lower() in EXTENSIONS)
            sets[d.name] = [(f.name, centre_crop(load_hr(f), side, unit)) for f in files]
    if train_dir is not None:
        data = ImageFolder(train_dir, 0)
        sets["heldout-train"] = [(Path(p).name, centre_crop(data.load(p), side, unit)) for p in data.val]
    return sets


def image_rungs(model, hr: np.ndarray, scale: int, k: int, steps: int, seed: int, with_sampler: bool,
                fidelity: float = contract.DEFAULT_FIDELITY) -> dict:
    """PSNR-Y (shave = scale) of every rung for one HR crop at one scale; the samples drawn at
    ``fidelity`` (``diffusion.fidelity_window``)."""
    H, W = hr.shape[:2]
    lr = bicubic(hr, W // scale, H // scale)
    out = {"bicubic": metrics.psnr_y(bicubic(lr, W, H), hr, scale),
           "ceiling": metrics.psnr_y(reconstruct(model, hr), hr, scale)}
    if with_sampler:
        z = sampler.upscale_latents(model, lr, steps, 1.0, seed, num_samples=k, fidelity=fidelity)
        renders = sampler.render(model, z, [(H, W)])[0]                       # [k, H, W, 3] uint8
        out["raw"] = metrics.psnr_y(renders[0], hr, scale)
        mean = np.floor(renders.astype(np.float64).mean(0) + 0.5).astype(np.uint8)
        out["mean_k"] = metrics.psnr_y(mean, hr, scale)
        # the same posterior mean taken in latent space: one render instead of K
        out["mean_z"] = metrics.psnr_y(sampler.render(model, z.mean(0, keepdims=True), [(H, W)])[0][0], hr, scale)
        defaults = consistency.apply_inplace(renders[0].copy(), lr, contract.DEFAULT_BACKPROJECT)
        out["defaults"] = metrics.psnr_y(defaults, hr, scale)
    return out


def ladder_table(results: dict, label: str, meta: dict) -> str:
    lines = [f"**{label}** (`{meta['models'][label]}`; PSNR-Y dB, shave = scale, centre crops of at most "
             f"{meta['side']} px; mean_k: mean of {meta['k']} samples' images, mean_z: the image of their mean latent; "
             f"{meta['steps']} steps, fidelity {meta.get('fidelity', 0.0):g}; {meta['date']}, "
             f"{meta['machine']})", "",
             "| set | scale | n | ceiling ND(E(HR)) | raw | mean_k | mean_z | defaults | bicubic | ceiling − bicubic (worst image) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, per_scale in results[label].items():
        for s, rows in per_scale.items():
            cell = lambda key: f"{np.mean([r[key] for r in rows]):.2f}" if key in rows[0] else "—"  # noqa: E731
            margin = [r["ceiling"] - r["bicubic"] for r in rows]
            lines.append(f"| {name} | {s}× | {len(rows)} | " + " | ".join(cell(k) for k in RUNGS)
                         + f" | {np.mean(margin):+.2f} ({min(margin):+.2f}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ldmind_ref.ladder", description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="LABEL=CHECKPOINT",
                   help="repeat to compare; a stage-1 checkpoint gets the ceiling and bicubic rungs only")
    p.add_argument("--val", default="../shared/data/val", help="folder of benchmark sets (Set5, Set14)")
    p.add_argument("--train", default="../shared/data/train", help="training photos: every 20th is held out")
    p.add_argument("--side", type=int, default=256, help="centre crops of at most this many pixels")
    p.add_argument("--scales", type=int, nargs="+", default=list(SCALES), choices=SCALES)
    p.add_argument("-k", type=int, default=4, help="samples averaged by the mean_k rung")
    p.add_argument("--steps", type=int, default=contract.DEFAULT_STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fidelity", type=float, default=contract.DEFAULT_FIDELITY,
                   help="the samples' fidelity (0: the paper's sampler; 1: no noise)")
    p.add_argument("--limit", type=int, default=0, help="images per set (0: all)")
    p.add_argument("--machine", default=cpu_summary())
    p.add_argument("--out", required=True, help="folder for ladder.json and ladder.md")
    args = p.parse_args(argv)
    torch.set_grad_enabled(False)
    sets = heldout_sets(Path(args.val) if args.val else None, Path(args.train) if args.train else None, args.side)
    models = dict(spec.split("=", 1) for spec in args.model)
    meta = {"date": date.today().isoformat(), "machine": args.machine, "side": args.side, "k": args.k,
            "steps": args.steps, "seed": args.seed, "fidelity": args.fidelity, "models": models}
    results: dict = {}
    t0 = time.time()
    for label, path in models.items():
        model = load_model(path)
        full = read_metadata(path).get("stage") not in AUTOENCODER_STAGES and model.cfg.unet.conditional
        results[label] = {}
        for name, crops in sets.items():
            for s in args.scales:
                rows = [image_rungs(model, hr, s, args.k, args.steps, args.seed, full, args.fidelity)
                        for _, hr in crops[: args.limit or None]]
                results[label].setdefault(name, {})[s] = rows
                print(f"[{time.time() - t0:6.0f}s] {label} {name} {s}x: ceiling "
                      f"{np.mean([r['ceiling'] for r in rows]):.2f}, bicubic {np.mean([r['bicubic'] for r in rows]):.2f}",
                      file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta["seconds"] = round(time.time() - t0, 1)
    (out / "ladder.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    md = "\n\n".join(ladder_table(results, label, meta) for label in models)
    (out / "ladder.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

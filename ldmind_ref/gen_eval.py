"""Generation models measured against the photos they learned from, without a learned backbone.

    python -m ldmind_ref.gen_eval --model small-gen=ldmind_ref/weights/small-gen.safetensors \\
        --model random=/tmp/random-gen.safetensors --data ../shared/data/train --out docs/results/gen

FID and LPIPS need network weights that cannot be downloaded here, so the measure is built
from statistics that need none (``metrics.image_stats``): colour means and spreads,
colourfulness, gradient energy and the slope of the power spectrum (near -2 for photographs
of natural scenes).  For each model, ``--samples`` images of ``--size`` pixels (seeds
``--seed``, ``--seed`` + 1, ...) and, as the yardstick, two independent sets of as many
random crops of the same size from the training split of ``--data`` (the training
distribution: native-resolution crops, as ``data.ImageFolder.crops`` makes them):

- ``fd_stats``: the Frechet distance (the formula of FID) between the statistics of the
  samples and those of the first real set, each statistic divided by its spread over the
  real crops.  The second real set against the first gives the value of a perfect model
  with this many images (``real crops (second set)``);
- ``diversity``: ``metrics.diversity``, the mean per-pixel standard deviation across the
  images (0..255); the real crops give the yardstick;
- the mean of each statistic, to see *how* a model differs (too smooth, too grey...).

A contact sheet per model (its first 16 samples) and one of real crops, ``table.md`` and
``generation.json`` go to ``--out``.  ``compare.py`` calls ``evaluate`` for its ``--gen``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from . import metrics
from .core import contract

SHEET = 16          # images per contact sheet


def real_crops(data: str, n: int, size: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two independent sets of n random native-resolution crops of size x size from the
    training split of ``data`` (folder or zip): ``data.ImageFolder.crops`` without the flips,
    the crops the models learned from; each photo decoded once."""
    import torch

    from .data import ImageFolder

    crops = ImageFolder(data, size).crops(torch.Generator().manual_seed(seed), 2 * n, size, "train",
                                          augment=False)
    return crops[:n], crops[n:]


def stats(images: list[np.ndarray]) -> np.ndarray:
    """float64 [len(images), len(metrics.STAT_NAMES)]: ``metrics.image_stats`` of each image."""
    return np.stack([metrics.image_stats(im) for im in images])


def summarise(images: list[np.ndarray], st: np.ndarray, ref: np.ndarray, spread: np.ndarray) -> dict:
    """fd_stats of the statistics ``st`` of ``images`` against ``ref`` (both scaled by
    ``spread``), the images' diversity and mean statistics."""
    return {"fd_stats": round(metrics.frechet_distance(st / spread, ref / spread), 3),
            "diversity": round(metrics.diversity(images), 2),
            "mean": {k: round(float(v), 3) for k, v in zip(metrics.STAT_NAMES, st.mean(0))}}


def sheet(images: list[np.ndarray], path: Path, cols: int = 4) -> None:
    s = images[0].shape[0]
    rows = -(-len(images) // cols)
    canvas = Image.new("RGB", (cols * s + (cols - 1) * 4, rows * s + (rows - 1) * 4), "white")
    for i, im in enumerate(images):
        canvas.paste(Image.fromarray(im), ((i % cols) * (s + 4), (i // cols) * (s + 4)))
    canvas.save(path)


def samples(checkpoint: str, n: int, size: int, steps: int, seed: int,
            fidelity: float = contract.DEFAULT_GENERATION_FIDELITY) -> tuple[str, list[np.ndarray]]:
    """(model name, n reference samples of size x size, seeds seed .. seed + n - 1), each
    sampled, as ``generate`` does by default, on a latent of the output's own scale: the scale
    of the native-resolution crops they are measured against."""
    from . import sampler
    from .checkpoint import load_model

    model = load_model(checkpoint)
    return model.cfg.name, sampler.generate(model, (size, size), steps=steps, seed=seed, num_samples=n,
                                            fidelity=fidelity)


def evaluate(models: dict[str, str], data: str, out: Path, n: int = 64, size: int = 128,
             steps: int = contract.DEFAULT_STEPS, seed: int = 0, log=print,
             fidelity: float = contract.DEFAULT_GENERATION_FIDELITY) -> dict:
    """Every model of ``models`` ({label: checkpoint}) and the real yardstick; writes the
    sheets, ``generation.json`` and ``table.md`` into ``out``; returns the json's content."""
    out.mkdir(parents=True, exist_ok=True)
    real_a, real_b = real_crops(data, n, size, seed)
    ref = stats(real_a)
    spread = ref.std(0) + 1e-9
    sheet(real_a[:SHEET], out / "real.png")
    rows = {"real crops (first set)": summarise(real_a, ref, ref, spread) | {"sheet": "real.png"},
            "real crops (second set)": summarise(real_b, stats(real_b), ref, spread)}
    for label, path in models.items():
        name, imgs = samples(path, n, size, steps, seed, fidelity)
        sheet(imgs[:SHEET], out / f"{label}.png")
        rows[label] = summarise(imgs, stats(imgs), ref, spread) | {"checkpoint": str(path), "config": name,
                                                      "sheet": f"{label}.png"}
        log(f"{label}: fd_stats {rows[label]['fd_stats']}, diversity {rows[label]['diversity']}")
    res = {"data": str(data), "samples": n, "size": size, "steps": steps, "sampler": contract.DEFAULT_SAMPLER,
           "fidelity": fidelity, "seed": seed, "stats": list(metrics.STAT_NAMES), "rows": rows}
    (out / "generation.json").write_text(json.dumps(res, indent=1))
    (out / "table.md").write_text(table(res) + "\n")
    return res


def table(res: dict) -> str:
    lines = [f"{res['samples']} images of {res['size']} px each; models sampled with {res['sampler']}, "
             f"{res['steps']} steps, fidelity {res.get('fidelity', 0.0):g}, "
             f"seeds {res['seed']}..{res['seed'] + res['samples'] - 1}; real crops from "
             f"{res['data']}.  fd_stats: Frechet distance of the standardised image statistics to the first real "
             "set (lower is closer; the second real set shows the floor at this many images).", "",
             "| images | fd_stats | diversity (0..255) | colourfulness | gradient | spectrum slope |",
             "|---|---|---|---|---|---|"]
    for label, r in res["rows"].items():
        m = r["mean"]
        lines.append(f"| {label} | {r['fd_stats']:.2f} | {r['diversity']:.1f} | {m['colourfulness']:.1f} | "
                     f"{m['gradient']:.2f} | {m['spectrum_slope']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ldmind_ref.gen_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, metavar="LABEL=CHECKPOINT",
                   help="a generation checkpoint (repeatable)")
    p.add_argument("--data", required=True, help="the photos (folder or zip) the models learned from")
    p.add_argument("--out", required=True)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=contract.DEFAULT_STEPS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fidelity", type=float, default=contract.DEFAULT_GENERATION_FIDELITY,
                   help="the sampler's fidelity (diffusion.fidelity_window; default the generation default)")
    a = p.parse_args(argv)
    models = {}
    for m in a.model:
        label, _, path = m.partition("=")
        if not label or not Path(path).is_file():
            raise SystemExit(f"--model {m}: give LABEL=CHECKPOINT of an existing file")
        if label in models or label.startswith("real"):
            raise SystemExit(f"--model {m}: labels must be unique and not start with 'real'")
        models[label] = path
    if not Path(a.data).exists():
        raise SystemExit(f"data not found: {a.data}")
    if a.samples < 2 or a.size < 8:
        raise SystemExit("--samples must be at least 2 and --size at least 8")
    res = evaluate(models, a.data, Path(a.out), a.samples, a.size, a.steps, a.seed, fidelity=a.fidelity)
    print(table(res))
    return 0


if __name__ == "__main__":
    from .errors import cli
    sys.exit(cli("python -m ldmind_ref.gen_eval", main))

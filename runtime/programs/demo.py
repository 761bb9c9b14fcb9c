"""``make demo``: export the shipped model, upscale a sample at 2.5x, 4x and 7.3x, generate
4 images, and write everything under demo_out/ with one contact sheet.

    python -m runtime.programs.demo [--out demo_out] [--steps N] [--seed 0]

The export step shells out to ``python -m export`` (the demo's venv has torch; this module
itself never imports it).  Engines: ``ldmind_ref/weights/small.safetensors`` -> engines/small
when the trained weights are there; otherwise the ``tiny`` preset with random weights ->
engines/tiny-random, announced loudly, because its pictures are noise.  Generation: the
same with ``ldmind_ref/weights/small-gen.safetensors`` -> engines/small-gen, else a random
``tiny-gen`` (engines/tiny-gen-random), announced.  The generated images are sampled at the
photos' scale (``latent_tiles.native_latent``), as ``python -m ldmind_ref.gen_eval`` measures
them.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ldmind_ref.core import consistency, contract, latent_tiles

from ..errors import EngineError, LdmindError
from .benchlib import DEMO_PHOTO, ROOT

SCALES = (2.5, 4.0, 7.3)
LR_SIDE = 48


def _notice(text: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n" + "\n".join(f"!! {line}" for line in text.splitlines()) + f"\n{bar}\n", file=sys.stderr)


def _export(out: Path, source: list[str], stale_if_older_than: Path | None = None) -> Path:
    """Run ``python -m export`` unless ``out`` already holds a valid, up-to-date export."""
    from ..bundle import load_bundle

    manifest = out / "manifest.json"
    fresh = manifest.is_file() and (stale_if_older_than is None
                                    or manifest.stat().st_mtime >= stale_if_older_than.stat().st_mtime)
    if fresh:
        try:
            load_bundle(out)
            print(f"using existing export {out}")
            return out
        except EngineError as e:
            print(f"re-exporting {out}: {e}")
    cmd = [sys.executable, "-m", "export", *source, "--out", str(out)]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    return out


def _shipped_or_random(engines: Path, weights: Path, preset: str, notice: str) -> tuple[Path, str]:
    """(engine directory, contact-sheet note): ``weights`` exported to engines/NAME (NAME its
    stem) when the file ships; otherwise ``notice``, loudly, and ``preset`` with random
    weights exported to engines/PRESET-random."""
    if weights.is_file():
        return (_export(engines / weights.stem, ["--checkpoint", str(weights)], stale_if_older_than=weights),
                f"shipped model '{weights.stem}'")
    _notice(notice)
    return (_export(engines / f"{preset}-random", ["--preset", preset, "--random-init"]),
            f"{preset} preset, RANDOM weights")


def _sample_image() -> tuple[np.ndarray, str]:
    """A 48 x 48 LR picture made from the real photo shipped with the runtime
    (``runtime/data/demo_photo.png``, 192 x 192, scikit-image's ``chelsea``, public domain)
    by bicubic / 4, as the benchmarks make LR images."""
    from ..image_in import load_image

    hr = Image.fromarray(load_image(DEMO_PHOTO))
    lr = hr.resize((hr.width // 4, hr.height // 4), Image.BICUBIC)
    left, top = (lr.width - LR_SIDE) // 2, (lr.height - LR_SIDE) // 2
    return (np.asarray(lr.crop((left, top, left + LR_SIDE, top + LR_SIDE))),
            f"{DEMO_PHOTO.name} (skimage chelsea), bicubic /4")


def _sheet(rows: list[list[tuple[str, Image.Image]]], footer: str, cell: int = 240) -> Image.Image:
    """Label above each picture; pictures scaled to fit ``cell`` (nearest, to show pixels)."""
    pad, label_h, footer_h = 8, 16, 18
    ncols = max(len(r) for r in rows)
    height = pad + len(rows) * (cell + label_h + pad) + footer_h
    sheet = Image.new("RGB", (pad + ncols * (cell + pad), height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, height - footer_h), footer, fill=(150, 0, 0))
    for r, row in enumerate(rows):
        for c, (label, img) in enumerate(row):
            x0, y0 = pad + c * (cell + pad), pad + r * (cell + label_h + pad)
            f = cell / max(img.size)
            shown = img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), Image.NEAREST)
            sheet.paste(shown, (x0, y0 + label_h))
            draw.text((x0, y0 + 2), label, fill=(0, 0, 0))
    return sheet


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.programs.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "demo_out")
    p.add_argument("--steps", type=int, default=contract.DEFAULT_STEPS)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    from ..image_out import save_image
    from ..pipeline import Pipeline
    from ..progress import Progress

    t0 = time.perf_counter()
    weights = ROOT / "ldmind_ref" / "weights" / "small.safetensors"
    gen_weights = ROOT / "ldmind_ref" / "weights" / "small-gen.safetensors"
    engines = ROOT / "engines"
    engines.mkdir(exist_ok=True)
    try:
        sr_dir, sr_note = _shipped_or_random(
            engines, weights, "tiny",
            f"NOTICE: {weights.relative_to(ROOT)} is not there (the trained model has not been shipped\n"
            f"yet), so this demo exports the 'tiny' preset with RANDOM WEIGHTS to engines/tiny-random.\n"
            f"Its outputs show the pipeline working end to end, but they are noise, not upscaled photos.")
        gen_dir, gen_note = _shipped_or_random(
            engines, gen_weights, "tiny-gen",
            f"NOTICE: {gen_weights.relative_to(ROOT)} is not there, so the 4 generated images\n"
            "come from the 'tiny-gen' preset with RANDOM WEIGHTS (engines/tiny-gen-random): expect noise.")
    except subprocess.CalledProcessError as e:
        print(f"python -m runtime.programs.demo: error: the export failed (exit {e.returncode}); see above", file=sys.stderr)
        return 1

    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        lr, where = _sample_image()
        save_image(lr, out / "input_lr.png")
        sr = Pipeline.load(sr_dir)
        progress = Progress(header=f"upscaling {lr.shape[1]}x{lr.shape[0]} ({where}) with {sr.bundle.name} on {sr.backend}")
        # one sample, rendered at every scale: the decoder runs once, and the three outputs
        # are the same picture at different resolutions (the method's scale consistency)
        z = sr.upscale_latents(lr, steps=a.steps, eta=1.0, seed=a.seed, progress=progress)
        sizes = [sr.output_size(lr.shape[0], lr.shape[1], scale=s) for s in SCALES]
        # and each is back-projected onto the input, as `upscale` does by default
        ups = [consistency.apply_inplace(r[0], lr) for r in sr.render(z, sizes, progress=progress)]
        for s, img in zip(SCALES, ups):
            print(save_image(img, out / f"upscaled_x{s:g}.png"))
        gen = Pipeline.load(gen_dir)
        progress = Progress(header=f"generating 4 images with {gen.bundle.name} on {gen.backend}")
        side = latent_tiles.native_latent(128, gen.bundle.ae_downsample, gen.bundle.tile_align)
        gens = gen.generate((128, 128), steps=a.steps, eta=1.0, seed=a.seed, num_samples=4, progress=progress,
                            latent_size=(side, side))
        for j, img in enumerate(gens):
            print(save_image(img, out / f"generated_{j}.png"))
        rows = [[(f"input {lr.shape[1]}x{lr.shape[0]}", Image.fromarray(lr))]
                + [(f"x{s:g} {img.shape[1]}x{img.shape[0]}", Image.fromarray(img)) for s, img in zip(SCALES, ups)],
                [(f"generated {j} (seed {a.seed + j})", Image.fromarray(g)) for j, g in enumerate(gens)]]
        sheet = _sheet(rows, f"upscaling: {sr_note}; generation: {gen_note}; "
                             f"{a.steps} {contract.DEFAULT_SAMPLER} steps, seed {a.seed}, "
                             f"{contract.DEFAULT_BACKPROJECT} back-projection iterations")
        print(save_image(sheet, out / "contact_sheet.png"))
    except LdmindError as e:
        print(f"python -m runtime.programs.demo: error: {e}", file=sys.stderr)
        return 2
    print(f"demo done in {time.perf_counter() - t0:.0f} s: {out}/contact_sheet.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

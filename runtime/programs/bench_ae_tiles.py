"""How the auto-encoder's graphs depend on their latent tile: time per cell, and PSNR-Y.

The encoder and the decoder compute their GroupNorm statistics and their middle attention over
everything one call is given, so a tile's output is not the whole latent's output cut to the
tile: smaller tiles are cheaper per cell (attention costs the square of a tile's cells) but see
other statistics.  This program measures both sides (docs/BENCHMARKS.md, *Tiles per graph*):

    python -m runtime.programs.bench_ae_tiles --engines engines/small --data ../shared/data/val \\
        --sets Set5 Set14 --tiles 96 64 48 --threads 1 --json OUT.json

- speed: the encoder, the decoder and one U-Net step on one t x t latent tile for each of
  ``--tiles``, the median of ``--repeat`` calls after one, in microseconds per latent cell;
- quality: each image at 4x (seed 0, the request defaults), the U-Net always on the whole
  latent; "whole": encoder and decoder whole too; "encoder T": the encoder on T-cell tiles
  (overlap ``--overlap``), the decoder whole; "decoder T": the encoder whole, the decoder on
  T-cell tiles.  PSNR-Y (shave 4) of the raw sample and after back-projection (the defaults).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .benchlib import cpu_flags


def speed(pipe, tiles: list[int], repeat: int) -> dict:
    """Microseconds per latent cell of one call on a t x t tile, per graph (the calls of
    ``backends.timing.graph_calls``, timed by its ``alternating``: median after a warm-up)."""
    from ..backends.timing import alternating, graph_calls

    engines = {g: pipe.engines[g] for g in ("encoder", "unet_step", "decoder")}
    out = {}
    for t in tiles:
        row = alternating({"t": graph_calls(pipe.bundle, engines, t, 0)}, repeat)["t"]
        out[str(t)] = {k: round(v / (t * t) * 1e6, 2) for k, v in row.items()}
        print(f"tile {t}: " + ", ".join(f"{k} {v} us/cell" for k, v in out[str(t)].items()), flush=True)
    return out


def latents(pipe, lr: np.ndarray, enc_tile: int | None, overlap: int) -> np.ndarray:
    """The request's latents of ``lr`` (seed 0, defaults) with the encoder on ``enc_tile``-cell
    tiles (None: whole) and the U-Net on the whole latent: ``Pipeline.upscale_latents`` with
    the encoder's plan chosen here."""
    from ldmind_ref.core import contract, images, latent_tiles, tiled_sampling

    b = pipe.bundle
    x = images.pad_lr(images.to_float(lr), images.lr_pad_unit(b.cond_scale, b.ae_downsample, b.unet_multiple))[None]
    ch, cw = pipe.sampling_latent(*lr.shape[:2])
    r = images.latent_per_lr_pixel(b.cond_scale, b.ae_downsample)
    pe = latent_tiles.whole(ch, cw) if enc_tile is None else pipe.plan(ch, cw, 0, 1, enc_tile, overlap)
    encoder = pipe.engines["encoder"]
    cond = tiled_sampling.encode(lambda t: encoder({"lr": t})["cond"], x, pe, r, 1)
    z = pipe.sample_latents(cond, (b.z_channels, ch, cw), contract.DEFAULT_STEPS, contract.DEFAULT_ETA,
                            contract.DEFAULT_SEED, 1, plan=latent_tiles.whole(ch, cw))
    lh, lw = lr.shape[0] * r, lr.shape[1] * r
    return np.ascontiguousarray(z[:, :, :lh, :lw])


def quality(pipe, files: list[Path], tiles: list[int], overlap: int) -> list[dict]:
    from ldmind_ref import benchmark, metrics
    from ldmind_ref.core import consistency

    rows = []
    for f in files:
        hr_s, lr = benchmark.make_lr(np.asarray(Image.open(f).convert("RGB")), 4)
        H, W = hr_s.shape[:2]
        whole_z = latents(pipe, lr, None, overlap)
        big = max(whole_z.shape[2:])
        runs = {"whole": (whole_z, big, None)}
        for t in tiles:
            runs[f"encoder {t}"] = (latents(pipe, lr, t, overlap), big, None)
            runs[f"decoder {t}"] = (whole_z, t, overlap)
        row = {"set": f.parent.name, "image": f.stem, "latent": list(whole_z.shape[2:])}
        for name, (z, dt, do) in runs.items():
            [raw] = pipe.render(z, [(H, W)], latent_tile=dt, latent_overlap=do)[0]
            out = raw.copy()
            consistency.apply_inplace(out, lr)
            row[name] = {"raw": round(metrics.psnr_y(raw, hr_s, 4), 4), "default": round(metrics.psnr_y(out, hr_s, 4), 4)}
        rows.append(row)
        print(f"{row['set']:<6} {row['image']:<12} latent {row['latent']}: " + "  ".join(
            f"{k} {v['raw']:.2f}/{v['default']:.2f}" for k, v in row.items() if isinstance(v, dict)), flush=True)
    return rows


def summary(rows: list[dict]) -> dict:
    """Per variant: mean raw and default PSNR-Y, and the mean and worst change against whole."""
    out = {}
    for name in [k for k, v in rows[0].items() if isinstance(v, dict)]:
        d = {key: np.array([r[name][key] - r["whole"][key] for r in rows]) for key in ("raw", "default")}
        out[name] = {"raw": float(np.mean([r[name]["raw"] for r in rows])),
                     "default": float(np.mean([r[name]["default"] for r in rows])),
                     "raw_change": float(d["raw"].mean()), "raw_worst": float(d["raw"].min()),
                     "default_change": float(d["default"].mean()), "default_worst": float(d["default"].min())}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.programs.bench_ae_tiles", description=__doc__.splitlines()[0])
    p.add_argument("--engines", required=True)
    p.add_argument("--data", required=True, help="folder of benchmark sets (each a folder of HR images)")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    p.add_argument("--tiles", type=int, nargs="+", default=[96, 64, 48])
    p.add_argument("--overlap", type=int, default=8, help="latent overlap of the tiled runs (default 8)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="timed calls per graph and tile")
    p.add_argument("--limit", type=int, default=0, help="images per set (0: all)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    from ..pipeline import Pipeline

    pipe = Pipeline.load(args.engines, backend=args.backend, threads=args.threads)
    files = []
    for s in args.sets:
        found = sorted((Path(args.data) / s).glob("*.png"))
        files += found[:args.limit] if args.limit else found
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {cpu_flags()}",
              "backend": pipe.backend, "command": "python -m runtime.programs.bench_ae_tiles " + " ".join(argv or []),
              "speed_us_per_cell": speed(pipe, args.tiles, args.repeat)}
    rows = quality(pipe, files, args.tiles, args.overlap)
    result["summary"], result["rows"] = summary(rows), rows
    print(json.dumps(result["summary"], indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Large-input benchmark of latent tiling: time, memory and seams on real photos.

    python -m runtime.programs.bench_tiles large --engines engines/small --photo PHOTO [--steps 20]
                                        [--case 512x384:4 --case 1024x768:2 ...] [--json OUT]
    python -m runtime.programs.bench_tiles quality --engines engines/small --data ../shared/data/val
                                          [--scales 4 8] [--sets Set5 Set14] [--tile 72]
                                          [--overlap 20 --overlap 8 ...] [--steps 20] [--json OUT]
    python -m runtime.programs.bench_tiles exact --engines engines/small --data ../shared/data/val --sets Set14
                                          --tile 48 --overlap 0 --overlap 4 --overlap 8 [--json OUT]

``exact``: the seam score where two tiles meet with exactly each ``--overlap`` (0: none, the
control that shows a seam), over the untiled image's at the same rows.
``large``: each case (LR WxH : scale) is the photo resized (PIL bicubic) to the LR size and
upscaled in a fresh process, so that its peak RSS (VmHWM) is its own; prints seconds,
seconds per input megapixel and peak RSS against the budget output bytes + 2 GiB.
``quality``: Set5/Set14 (LIIF protocol: bicubic LR, PSNR-Y with shave = scale) untiled and
with forced small latent tiles (one run per ``--overlap``), same seed and noise, plus the seam
score of the tiled image:
the mean absolute difference between neighbouring rows (columns) across tile and band borders
over the mean across all other rows (columns); 1 means no seam.
Programs, never tests: numbers are printed and saved, nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

GiB = 1024 ** 3
DEFAULT_CASES = ("512x384:4", "1024x768:2", "2048x1536:2")


def _case(engines: str, photo: str, lr_size: tuple[int, int], scale: float, steps: int, threads: int,
          latent_tile: int | None) -> dict:
    from .benchlib import peak_rss
    from ..pipeline import Pipeline

    lr = np.asarray(Image.open(photo).convert("RGB").resize(lr_size, Image.BICUBIC))
    pipe = Pipeline.load(engines, backend="cpu", threads=threads)
    h, w = lr.shape[:2]
    b = pipe.bundle
    p = pipe.plan(*pipe.sampling_latent(h, w), steps, 1, latent_tile)
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    last = [t0]

    def progress(stage, done, total):
        if done == total:
            now = time.perf_counter()
            key = stage.split()[0]
            stages[key] = stages.get(key, 0.0) + now - last[0]
            last[0] = now

    [out] = pipe.upscale(lr, scale=scale, steps=steps, seed=0, progress=progress, latent_tile=latent_tile)
    seconds = time.perf_counter() - t0
    peak = peak_rss()
    return {"model": b.name, "lr": [w, h], "scale": scale, "output": [out.shape[1], out.shape[0]],
            "steps": steps, "tiles": len(p), "tile": [p.th, p.tw], "overlap": p.overlap,
            "seconds": round(seconds, 2), "seconds_per_input_mpx": round(seconds / (w * h / 1e6), 2),
            "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
            "output_bytes": int(out.nbytes), "peak_rss_bytes": peak,
            "budget_bytes": int(out.nbytes) + 2 * GiB, "within_budget": peak <= out.nbytes + 2 * GiB}


def run_large(args, save) -> list[dict]:
    """Each case in its own process; ``save(rows)`` after each, so a long run keeps what it
    measured if it is stopped."""
    rows = []
    for case in args.case or DEFAULT_CASES:
        size, scale = case.split(":")
        cmd = [sys.executable, "-m", "runtime.programs.bench_tiles", "_case", "--engines", args.engines, "--photo", args.photo,
               "--lr", size, "--scale", scale, "--steps", str(args.steps), "--threads", str(args.threads)]
        if args.tile:
            cmd += ["--tile", str(args.tile)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{case}: failed\n{r.stderr}", file=sys.stderr)
            rows.append({"case": case, "error": r.stderr.strip().splitlines()[-1:]})
            continue
        row = json.loads(r.stdout.strip().splitlines()[-1])
        row["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
        rows.append(row)
        save(rows)
        print(f"{row['model']:<10} LR {row['lr'][0]}x{row['lr'][1]} x{row['scale']} -> {row['output'][0]}x"
              f"{row['output'][1]}  {row['tiles']} tiles of {row['tile'][0]}x{row['tile'][1]}  {row['seconds']:8.1f} s"
              f"  {row['seconds_per_input_mpx']:8.1f} s/Mpx  peak {row['peak_rss_bytes'] / GiB:.2f} GiB"
              f" (budget {row['budget_bytes'] / GiB:.2f})  {row['stage_seconds']}", flush=True)
    return rows


def seam_score(img: np.ndarray, rows: list[int], cols: list[int], ref_rows: list[int] | None = None,
               ref_cols: list[int] | None = None) -> float:
    """Mean |difference| across the given row/column borders (border k lies between k - 1 and
    k) over the mean across all others (or across ``ref_rows``/``ref_cols`` only), rows and
    columns pooled."""
    x = img.astype(np.float64)
    gy = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2))       # gy[k - 1]: between rows k - 1 and k
    gx = np.abs(np.diff(x, axis=1)).mean(axis=(0, 2))
    ry = sorted({k - 1 for k in rows if 0 < k < img.shape[0]})
    rx = sorted({k - 1 for k in cols if 0 < k < img.shape[1]})
    if not ry and not rx:
        return float("nan")
    on = np.concatenate([gy[ry], gx[rx]])
    if ref_rows is None:
        off = np.concatenate([np.delete(gy, ry), np.delete(gx, rx)])
    else:
        fy = sorted({k - 1 for k in ref_rows if 0 < k < img.shape[0]} - set(ry))
        fx = sorted({k - 1 for k in ref_cols if 0 < k < img.shape[1]} - set(rx))
        off = np.concatenate([gy[fy], gx[fx]])
    return float(on.mean() / off.mean())


def cell_borders(H: int, W: int, h: int, w: int) -> tuple[list[int], list[int]]:
    """First output row (column) of every latent cell: tile borders always fall on these, and
    the decoder's per-cell features make them differ from rows inside a cell."""
    from ldmind_ref.core import latent_tiles as lt
    return ([lt.band_rows(H, h, a, h)[0] for a in range(1, h)], [lt.band_rows(W, w, a, w)[0] for a in range(1, w)])


def borders(pipe, h: int, w: int, H: int, W: int, steps: int, tile: int,
            overlap: int | None = None) -> tuple[list[int], list[int]]:
    """Output rows/columns where a tile of the sampling or decoding plan starts or ends, and
    where a render band starts: the places a seam would show."""
    from ldmind_ref.core import latent_tiles as lt
    ys, xs = set(), set()
    for p, hh, ww in ((pipe.plan(*pipe.sampling_latent(h, w), steps, 1, tile, overlap), h, w),
                      (pipe.plan(h, w, 0, 1, tile, overlap, graphs=("decoder",), align=1), h, w)):
        if not p.tiled:
            continue
        for s in p.ys:
            ys.update({s, s + p.th})
        for s in p.xs:
            xs.update({s, s + p.tw})
        ys.update(range(0, hh, lt.render_band(p)))
    rows = [lt.band_rows(H, h, a, h)[0] for a in ys if 0 < a < h]
    cols = [lt.band_rows(W, w, a, w)[0] for a in xs if 0 < a < w]
    return rows, cols


def run_quality(args) -> list[dict]:
    from ldmind_ref import benchmark, metrics
    from ldmind_ref.core import consistency

    from ..pipeline import Pipeline

    pipe = Pipeline.load(args.engines, backend="cpu", threads=args.threads)
    rows = []
    variants = [("untiled", None, None)] + [(variant_name(o), args.tile, o) for o in args.overlap or [None]]
    files = sorted(p for d in args.sets for p in (Path(args.data) / d).glob("*.png"))
    for f in files:
        hr = np.asarray(Image.open(f).convert("RGB"))
        for s in args.scales:
            hr_s, lr = benchmark.make_lr(hr, s)
            H, W = hr_s.shape[:2]
            h, w = lr.shape[:2]
            row = {"set": f.parent.name, "image": f.stem, "scale": s, "lr": [w, h]}
            untiled = untiled_raw = None    # this image's untiled render (variants[0]), once made
            for name, tile, overlap in variants:
                t0 = time.perf_counter()
                try:
                    [raw] = pipe.upscale(lr, size=(W, H), steps=args.steps, seed=0, backproject=0, latent_tile=tile,
                                         latent_overlap=overlap)
                except Exception as e:     # the untiled run can be refused for memory
                    row[name] = {"error": str(e)}
                    continue
                out = raw.copy()
                consistency.apply_inplace(out, lr)
                row[name] = {"psnr": metrics.psnr_y(out, hr_s, s), "raw_psnr": metrics.psnr_y(raw, hr_s, s),
                             "seconds": round(time.perf_counter() - t0, 2)}
                if tile is not None:
                    p = pipe.plan(*pipe.sampling_latent(h, w), args.steps, 1, tile, overlap)
                    row[name]["tiles"], row[name]["overlap"] = len(p), p.overlap
                    row[name]["cells"] = len(p) * p.th * p.tw / (h * w)    # computed / needed latent cells
                    rb, cb = borders(pipe, h, w, H, W, args.steps, tile, overlap)
                    seams = len(p) > 1
                    has_control = seams and untiled is not None     # the untiled run may have been refused
                    row[name]["seam"] = seam_score(out, rb, cb) if seams else None
                    row[name]["seam_raw"] = seam_score(raw, rb, cb) if seams else None
                    # control: the untiled image scored at the same rows/columns (what the
                    # content alone gives there)
                    row[name]["seam_control"] = seam_score(untiled, rb, cb) if has_control else None
                    row[name]["seam_raw_control"] = seam_score(untiled_raw, rb, cb) if has_control else None
                    # against the other latent-cell borders only (same phase of the LIIF grid)
                    cr, cc = cell_borders(H, W, h, w)
                    row[name]["seam_cells"] = seam_score(out, rb, cb, cr, cc) if seams else None
                    row[name]["seam_cells_control"] = seam_score(untiled, rb, cb, cr, cc) if has_control else None
                else:
                    untiled, untiled_raw = out, raw
            rows.append(row)
            print(f"{row['set']:<6} {row['image']:<12} x{s:<3} LR {w}x{h}: untiled {row['untiled'].get('psnr', 0):6.2f}"
                  + "".join(f"  {n} {row[n].get('psnr', 0):6.2f} dB ({row[n].get('tiles')} tiles, seam "
                            f"{row[n].get('seam')}, raw {row[n].get('seam_raw')}, untiled there {row[n].get('seam_control')})"
                            for n, _, _ in variants[1:]), flush=True)
    return rows


def run_exact(args) -> list[dict]:
    """Seams where the plan's overlap is exactly each ``--overlap`` (0: no overlap, the positive
    control): the LR is the top-left crop of L x L with L = 2 tile - overlap, so that two tiles
    per axis meet with that overlap; the seam score of the tiled output over the untiled one's at
    the same rows, raw and at the defaults."""
    from ldmind_ref import benchmark
    from ldmind_ref.core import consistency

    from ..pipeline import Pipeline

    pipe = Pipeline.load(args.engines, backend="cpu", threads=args.threads)
    rows = []
    for f in sorted(p for d in args.sets for p in (Path(args.data) / d).glob("*.png")):
        full = np.asarray(Image.open(f).convert("RGB"))
        row = {"set": f.parent.name, "image": f.stem}
        for o in args.overlap:
            L = 2 * args.tile - o
            if min(full.shape[:2]) < 4 * L:
                continue
            hr_s, lr = benchmark.make_lr(full[:4 * L, :4 * L], 4)
            H, W = hr_s.shape[:2]
            p = pipe.plan(L, L, args.steps, 1, args.tile, o)
            assert p.ys == (0, args.tile - o), p.ys        # exactly two tiles meeting with overlap o
            [untiled] = pipe.upscale(lr, size=(W, H), steps=args.steps, seed=0, backproject=0)
            [tiled] = pipe.upscale(lr, size=(W, H), steps=args.steps, seed=0, backproject=0,
                                   latent_tile=args.tile, latent_overlap=o)
            rb, cb = borders(pipe, L, L, H, W, args.steps, args.tile, o)
            d_un, d_t = untiled.copy(), tiled.copy()
            consistency.apply_inplace(d_un, lr)
            consistency.apply_inplace(d_t, lr)
            row[f"overlap {o}"] = {"lr": L, "raw": seam_score(tiled, rb, cb) / seam_score(untiled, rb, cb),
                                   "default": seam_score(d_t, rb, cb) / seam_score(d_un, rb, cb)}
        rows.append(row)
        print(f"{row['image']:<12}" + "".join(f"  {k}: raw {v['raw']:.3f} default {v['default']:.3f}"
                                              for k, v in row.items() if k.startswith("overlap")), flush=True)
    return rows


def variant_name(overlap: int | None) -> str:
    return "tiled" if overlap is None else f"overlap {overlap}"


def summarise_quality(rows: list[dict], names: list[str]) -> dict:
    """Per set and scale, per tiled variant: PSNR means against untiled, and the seam scores
    of the really tiled images (with the untiled image scored at the same rows)."""
    out = {}
    for s in sorted({r["scale"] for r in rows}):
        for st in sorted({r["set"] for r in rows}):
            rs = [r for r in rows if r["scale"] == s and r["set"] == st and "psnr" in r.get("untiled", {})]
            if not rs:
                continue
            per = {"images": len(rs), "psnr_untiled": float(np.mean([r["untiled"]["psnr"] for r in rs])),
                   "raw_psnr_untiled": float(np.mean([r["untiled"]["raw_psnr"] for r in rs]))}
            for n in names:
                tiled = [r for r in rs if r[n].get("tiles", 1) > 1]
                mean = lambda key, rr=tiled: float(np.mean([r[n][key] for r in rr])) if rr else None  # noqa: E731
                per[n] = {"tiled_images": len(tiled),
                          "psnr": float(np.mean([r[n]["psnr"] for r in rs])),
                          "raw_psnr": float(np.mean([r[n]["raw_psnr"] for r in rs])),
                          "cells": mean("cells"),
                          "seam_mean": mean("seam"), "seam_max": float(np.max([r[n]["seam"] for r in tiled])) if tiled else None,
                          "seam_raw_mean": mean("seam_raw"), "seam_control_mean": mean("seam_control"),
                          "seam_raw_control_mean": mean("seam_raw_control"),
                          "seam_cells_mean": mean("seam_cells"), "seam_cells_control_mean": mean("seam_cells_control")}
            out[f"{st} x{s}"] = per
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.programs.bench_tiles", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("large", "quality", "exact", "_case"):
        q = sub.add_parser(name)
        q.add_argument("--engines", required=True)
        q.add_argument("--steps", type=int, default=20)
        q.add_argument("--threads", type=int, default=0)
        q.add_argument("--tile", type=int, default=None, help="latent tile (large: default from the model; "
                                                            "quality: the forced tile, default 3x the training latent)")
        q.add_argument("--json", default=None)
        if name == "large":
            q.add_argument("--photo", required=True)
            q.add_argument("--case", action="append", help="LR WxH:scale (repeatable)")
        if name in ("quality", "exact"):
            q.add_argument("--data", required=True)
            q.add_argument("--scales", type=int, nargs="+", default=[4, 8])
            q.add_argument("--sets", nargs="+", default=["Set5", "Set14"], help="folders of DATA (default Set5 Set14)")
            q.add_argument("--overlap", type=int, action="append", default=None,
                           help="latent overlap of the tiled runs (repeatable: one run each; quality's "
                                "default: the default overlap of the tile)")
        if name == "_case":
            q.add_argument("--photo", required=True)
            q.add_argument("--lr", required=True)
            q.add_argument("--scale", type=float, required=True)
    args = p.parse_args(argv)
    if args.cmd == "exact" and (args.tile is None or not args.overlap):
        p.error("exact: give --tile and at least one --overlap")
    if args.cmd == "_case":
        w, h = (int(v) for v in args.lr.split("x"))
        print(json.dumps(_case(args.engines, args.photo, (w, h), args.scale, args.steps, args.threads, args.tile)))
        return 0
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "load_average": os.getloadavg(), "command": "python -m runtime.programs.bench_tiles " + " ".join(argv or sys.argv[1:])}
    def save(result):
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n")

    if args.cmd == "large":
        result = {**meta, "rows": run_large(args, lambda rows: save({**meta, "rows": rows}))}
    elif args.cmd == "exact":
        rows = run_exact(args)
        summary = {k: {m: float(np.mean([r[k][m] for r in rows if k in r])) for m in ("raw", "default")}
                   for k in dict.fromkeys(k for r in rows for k in r if k.startswith("overlap"))}
        result = {**meta, "tile": args.tile, "summary": summary, "rows": rows}
        print(json.dumps(summary, indent=1))
    else:
        if args.tile is None:
            from ..bundle import load_bundle
            b = load_bundle(args.engines)
            args.tile = 3 * b.train_latent
        rows = run_quality(args)
        names = [variant_name(o) for o in args.overlap or [None]]
        result = {**meta, "tile": args.tile, "summary": summarise_quality(rows, names), "rows": rows}
        print(json.dumps(result["summary"], indent=1))
    save(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

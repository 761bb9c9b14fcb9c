"""Quality against steps: DDIM and DPM-Solver++(2M) on the same graphs (issue 11).

    python -m runtime.programs.bench_steps --engines engines/small --data ../shared/data/val \
        --scales 4 8 --out docs/results/steps_val.json [--plot docs/results/steps_val.png]
    python -m runtime.programs.bench_steps --engines engines/small --data ../shared/data/train --every 20 \
        --crop 256 --scales 4 8 --out docs/results/steps_holdout.json

For every image (each set folder under --data, or the files of --data itself; with --every K
only every K-th file, with --crop C a centre crop of C x C), every scale and every
configuration (sampler, steps): the LR is made by the benchmark protocol
(``ldmind_ref/benchmark.py``: PIL bicubic, HR cropped to a multiple of the scale); one latent
is sampled (seed 0) and rendered once; PSNR-Y with shave = scale of the raw render and of
the render back-projected onto the LR (the defaults).  Results are appended to the JSON as
each image finishes, so an interrupted run resumes where it stopped.  Prints the mean table;
``--plot`` draws PSNR against steps (matplotlib, an optional extra).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ldmind_ref import metrics
from ldmind_ref.benchmark import bicubic, load_hr, make_lr
from ldmind_ref.core import consistency, contract

from ..pipeline import Pipeline

DEFAULT_CONFIGS = ("ddim:10", "ddim:20", "ddim:50", "dpm++2m:5", "dpm++2m:10", "dpm++2m:20")


def images(data: Path, every: int) -> list[tuple[str, Path]]:
    sets = sorted(d for d in data.iterdir() if d.is_dir())
    groups = [(d.name, d) for d in sets] or [(data.name, data)]
    out = []
    for name, d in groups:
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        out += [(name, f) for f in files[::every]]   # from the first: with 20, the trainer's held-out split
    return out


def centre_crop(hr: np.ndarray, c: int) -> np.ndarray:
    if not c:
        return hr
    y, x = max(0, (hr.shape[0] - c) // 2), max(0, (hr.shape[1] - c) // 2)
    return hr[y:y + c, x:x + c]


def summarise(rows: list[dict]) -> dict:
    """{set: {scale: {config: [raw, default, bicubic, seconds, diversity, n]}}} of means
    (diversity NaN when one sample was drawn)."""
    out: dict = {}
    for r in rows:
        e = out.setdefault(r["set"], {}).setdefault(str(r["scale"]), {}).setdefault(r["config"], [])
        e.append((r["raw_psnr"], r["psnr"], r["bicubic_psnr"], r["seconds"], r.get("diversity", float("nan"))))
    return {s: {sc: {c: [*np.mean(v, axis=0).round(4).tolist(), len(v)] for c, v in per.items()}
                for sc, per in scales.items()} for s, scales in out.items()}


def table(summary: dict, configs) -> str:
    lines = []
    for s, scales in summary.items():
        for sc, per in scales.items():
            bic = next(iter(per.values()))[2]
            lines.append(f"\n{s} {sc}x (bicubic {bic:.2f} dB), PSNR-Y raw / default, seconds per image")
            for c in configs:
                if c in per:
                    raw, d, _, sec, div, n = per[c]
                    extra = "" if div != div else f"   diversity {div:.2f}"
                    lines.append(f"  {c:12s} {raw:6.2f} / {d:6.2f}   {sec:6.1f} s{extra}   (n={n})")
    return "\n".join(lines)


def plot(summary: dict, configs, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, sc) for s, scales in summary.items() for sc in scales]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (s, sc) in zip(axes[0], panels):
        per = summary[s][sc]
        for sampler, style in (("ddim", "o-"), ("dpm++2m", "s-")):
            pts = sorted((int(c.split(":")[1]), per[c]) for c in configs if c in per and c.startswith(sampler + ":"))
            if pts:
                ax.plot([p[0] for p in pts], [p[1][1] for p in pts], style, label=f"{sampler} (default)")
                ax.plot([p[0] for p in pts], [p[1][0] for p in pts], style, alpha=0.45, label=f"{sampler} (raw)")
        ax.axhline(next(iter(per.values()))[2], color="grey", ls=":", label="bicubic")
        ax.set_xscale("log")
        ticks = sorted({int(c.split(":")[1]) for c in configs})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("steps")
        ax.set_ylabel("PSNR-Y (dB)")
        ax.set_title(f"{s} {sc}x")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="engines/small")
    ap.add_argument("--data", required=True)
    ap.add_argument("--every", type=int, default=1,
                    help="every K-th file of each folder from the first (default all; 20 on the training "
                         "folder: the photos the trainer holds out, ldmind_ref/data.py)")
    ap.add_argument("--crop", type=int, default=0, help="centre crop of the HR, pixels (default none)")
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), help="SAMPLER:STEPS ...")
    ap.add_argument("--backproject", type=int, default=contract.DEFAULT_BACKPROJECT)
    ap.add_argument("--samples", type=int, default=1,
                    help="samples per image (seeds 0..K-1); K > 1 also records diversity: the mean per-pixel "
                         "standard deviation over the K back-projected samples (the benchmark's metric)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", required=True, help="JSON (appended to, resumable)")
    ap.add_argument("--plot", default=None)
    args = ap.parse_args(argv)
    out = Path(args.out)
    state = json.loads(out.read_text()) if out.exists() else {"args": vars(args), "rows": []}
    done = {(r["set"], r["image"], r["scale"], r["config"]) for r in state["rows"]}
    pipe = Pipeline.load(args.engines, threads=args.threads)
    t0 = time.time()
    for set_name, f in images(Path(args.data), args.every):
        hr_full = centre_crop(load_hr(f), args.crop)
        for s in args.scales:
            hr, lr = make_lr(hr_full, s)
            H, W = hr.shape[:2]
            bic = metrics.psnr_y(bicubic(lr, W, H), hr, s)
            for c in args.configs:
                if (set_name, f.name, s, c) in done:
                    continue
                sampler, steps = c.split(":")
                t = time.perf_counter()
                z = pipe.upscale_latents(lr, steps=int(steps), eta=1.0, seed=0, sampler=sampler,
                                         num_samples=args.samples)
                imgs = pipe.render(z, [(H, W)])[0]
                img = imgs[0]
                raw = metrics.psnr_y(img, hr, s)
                for im in imgs:
                    consistency.apply_inplace(im, lr, args.backproject)
                state["rows"].append({"set": set_name, "image": f.name, "scale": s, "config": c,
                                      "raw_psnr": raw, "psnr": metrics.psnr_y(img, hr, s), "bicubic_psnr": bic,
                                      "seconds": round(time.perf_counter() - t, 2),
                                      **({"diversity": metrics.diversity(list(imgs))} if args.samples > 1 else {})})
                print(f"[{time.time() - t0:7.1f}s] {set_name}/{f.name} {s}x {c}: raw {raw:.2f}, "
                      f"default {state['rows'][-1]['psnr']:.2f} (bicubic {bic:.2f})", file=sys.stderr, flush=True)
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=0))
            tmp.replace(out)
    state["summary"] = summarise(state["rows"])
    out.write_text(json.dumps(state, indent=0))
    print(table(state["summary"], args.configs))
    if args.plot:
        plot(state["summary"], args.configs, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fidelity: detail against faithfulness (issue 20 item 6).

    nice python -m runtime.programs.bench_fidelity --engines engines/small --val ../shared/data/val \
        --train ../shared/data/train --threads 1 --out docs/results/fidelity/fidelity.json \
        --plot docs/results/fidelity/fidelity.png

Held-out sets as the quality ladder takes them (``ldmind_ref.ladder.heldout_sets``: Set5 and
Set14 from --val, every 20th photo of --train, the trainer's validation split, each a centre
crop of at most --side pixels).  For every image, scale and fidelity F (``--fidelity``: the
sampler's window, ``diffusion.fidelity_window``), K samples (seeds 0..K-1) are drawn with the
defaults otherwise (DPM-Solver++(2M), ``contract.DEFAULT_STEPS``) and rendered at the HR size:

  raw        PSNR-Y (shave = scale) of the raw samples, the mean over the K
  default    the same after back-projection onto the LR (the CLI's default output)
  diversity  mean over pixels of the per-pixel standard deviation across the K raw samples
             (0..255; ``metrics.diversity``); ``diversity_default`` the same of the outputs
and at F = 0 the reference point of the posterior mean by averaging: the PSNR-Y of the mean of
the K raw samples (``mean_raw``) and of the K back-projected ones (``mean_default``).

The held-out photos come first and 4x before 8x (the default is chosen there); rows are
appended to the JSON as each image finishes, so an interrupted run resumes where it stopped.
Prints the mean table and the default that the stated rule picks (``choose``: the smallest F
whose raw samples beat bicubic at 4x and 8x on the held-out photos); ``--plot``
draws PSNR against diversity (matplotlib, the optional extra ``plot``).  A program: it prints
and saves numbers, it asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ldmind_ref import metrics
from ldmind_ref.benchmark import bicubic, cpu_summary, make_lr
from ldmind_ref.core import consistency, contract

from ..pipeline import Pipeline
from .benchlib import save_json

FIDELITIES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
HELDOUT = "heldout-train"          # ldmind_ref.ladder.heldout_sets' name of the training photos
KEYS = ("raw", "default", "diversity", "diversity_default")


def _mean_image(imgs: np.ndarray) -> np.ndarray:
    return np.floor(imgs.astype(np.float64).mean(0) + 0.5).astype(np.uint8)


def measure(pipe: Pipeline, hr: np.ndarray, scale: int, fidelity: float, k: int, backproject: int) -> dict:
    """One image at one scale and fidelity: the numbers of the module docstring."""
    hr, lr = make_lr(hr, scale)
    H, W = hr.shape[:2]
    z = pipe.upscale_latents(lr, seed=0, num_samples=k, fidelity=fidelity)
    raw = pipe.render(z, [(H, W)])[0]                                  # [k, H, W, 3] uint8
    out = {"raw": float(np.mean([metrics.psnr_y(im, hr, scale) for im in raw])),
           "diversity": metrics.diversity(list(raw)), "bicubic": metrics.psnr_y(bicubic(lr, W, H), hr, scale)}
    if fidelity == 0:
        out["mean_raw"] = metrics.psnr_y(_mean_image(raw), hr, scale)
    done = np.stack([consistency.apply_inplace(im.copy(), lr, backproject) for im in raw])
    out["default"] = float(np.mean([metrics.psnr_y(im, hr, scale) for im in done]))
    out["diversity_default"] = metrics.diversity(list(done))
    if fidelity == 0:
        out["mean_default"] = metrics.psnr_y(_mean_image(done), hr, scale)
    return out


def summarise(rows: list[dict]) -> dict:
    """{set: {scale: {fidelity: {key: mean, "n": images}}}} (keys: KEYS, bicubic, and the means at 0)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(r["set"], {}).setdefault(str(r["scale"]), {}).setdefault(f"{r['fidelity']:g}", []).append(r)
    out: dict = {}
    for s, scales in groups.items():
        for sc, per in scales.items():
            for f, rs in sorted(per.items(), key=lambda kv: float(kv[0])):
                keys = [k for k in rs[0] if k not in ("set", "image", "scale", "fidelity", "seconds")]
                e = {k: round(float(np.mean([r[k] for r in rs])), 4) for k in keys}
                out.setdefault(s, {}).setdefault(sc, {})[f] = {**e, "n": len(rs)}
    return out


def choose(summary: dict, scales: tuple[str, ...] = ("4", "8")) -> dict:
    """The default by the stated rule on the held-out photos (never Set5 / Set14): the smallest
    fidelity (the most detail) whose raw samples, the mean PSNR-Y over the K seeds, are above
    bicubic at every one of ``scales`` (the issue's rule for a shipped model's raw samples);
    None when no measured fidelity is."""
    per = {sc: summary.get(HELDOUT, {}).get(sc, {}) for sc in scales}
    if not all(per.values()):
        return {"fidelity": None, "why": f"no {HELDOUT} rows at every scale of {scales}"}
    common = sorted(set.intersection(*(set(p) for p in per.values())), key=float)
    for f in common:
        margins = {sc: per[sc][f]["raw"] - per[sc][f]["bicubic"] for sc in scales}
        if all(m > 0 for m in margins.values()):
            return {"fidelity": float(f), "set": HELDOUT, "why": f"fidelity {f}: raw above bicubic by " + ", ".join(
                f"{m:+.2f} dB at {sc}x" for sc, m in margins.items()) + "; every smaller fidelity is not"}
    return {"fidelity": None, "set": HELDOUT, "why": "no measured fidelity has raw samples above bicubic at "
            + " and ".join(f"{sc}x" for sc in scales)}


def table(summary: dict) -> str:
    lines = []
    for s, scales in summary.items():
        for sc, per in scales.items():
            bic = next(iter(per.values()))["bicubic"]
            lines.append(f"\n{s} {sc}x (bicubic {bic:.2f} dB): PSNR-Y raw / default, diversity raw / default")
            for f, e in per.items():
                extra = ""
                if "mean_raw" in e:
                    extra = f"   mean of K: {e['mean_raw']:.2f} / {e['mean_default']:.3f}"
                lines.append(f"  F={f:5s} {e['raw']:6.2f} / {e['default']:7.3f}   {e['diversity']:5.2f} / "
                             f"{e['diversity_default']:5.2f}{extra}   (n={e['n']})")
    return "\n".join(lines)


def plot(summary: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, sc) for s, scales in summary.items() for sc in scales]
    fig, axes = plt.subplots(2, len(panels), figsize=(3.6 * len(panels), 6.4), squeeze=False)
    for col, (s, sc) in enumerate(panels):
        per = summary[s][sc]
        fs = list(per)
        div = [per[f]["diversity"] for f in fs]
        for row, key, label in ((0, "raw", "raw sample"), (1, "default", "back-projected (default)")):
            ax = axes[row][col]
            ax.plot(div, [per[f][key] for f in fs], "o-")
            for f, x in zip(fs, div):
                ax.annotate(f"F={f}", (x, per[f][key]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            mean_key = "mean_raw" if key == "raw" else "mean_default"
            if mean_key in per.get("0", {}):
                ax.axhline(per["0"][mean_key], color="grey", ls=":", label="mean of K at F=0")
                ax.legend(fontsize=7)
            ax.set_xlabel("diversity (std across seeds, 0..255)")
            ax.set_ylabel(f"PSNR-Y {label} (dB)")
            ax.set_title(f"{s} {sc}x", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    from ldmind_ref.ladder import heldout_sets     # imports torch: only here, for the data split

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=contract.DEFAULT_ENGINES)
    ap.add_argument("--val", default="../shared/data/val", help="folder of Set5, Set14 (none: '')")
    ap.add_argument("--train", default="../shared/data/train", help="the training photos (none: '')")
    ap.add_argument("--side", type=int, default=256, help="centre crops of at most this many pixels")
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--fidelity", type=float, nargs="+", default=list(FIDELITIES))
    ap.add_argument("--samples", type=int, default=3, help="K: seeds 0..K-1 per image")
    ap.add_argument("--backproject", type=int, default=contract.DEFAULT_BACKPROJECT)
    ap.add_argument("--sets", nargs="+", default=None, help="only these sets (default all, held-out photos first)")
    ap.add_argument("--threads", type=int, default=contract.DEFAULT_THREADS)
    ap.add_argument("--out", required=True, help="JSON (appended to, resumable)")
    ap.add_argument("--plot", default=None)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = json.loads(out.read_text()) if out.exists() else {"args": vars(args), "rows": []}
    done = {(r["set"], r["image"], r["scale"], r["fidelity"]) for r in state["rows"]}
    sets = heldout_sets(Path(args.val) if args.val else None, Path(args.train) if args.train else None, args.side)
    order = sorted(sets, key=lambda s: (s != HELDOUT, s))
    pipe = Pipeline.load(args.engines, threads=args.threads)
    print(f"{pipe.describe()}; sets {', '.join(f'{s} ({len(sets[s])})' for s in order)}", file=sys.stderr)
    t0 = time.time()
    for s in order:
        if args.sets and s not in args.sets:
            continue
        for scale in args.scales:
            for name, hr in sets[s]:
                for f in args.fidelity:
                    if (s, name, scale, f) in done:
                        continue
                    t = time.perf_counter()
                    r = measure(pipe, hr, scale, f, args.samples, args.backproject)
                    state["rows"].append({"set": s, "image": name, "scale": scale, "fidelity": f, **r,
                                          "seconds": round(time.perf_counter() - t, 2)})
                    print(f"[{time.time() - t0:7.1f}s] {s}/{name} {scale}x F={f:g}: raw {r['raw']:.2f}, default "
                          f"{r['default']:.3f}, diversity {r['diversity']:.2f}", file=sys.stderr, flush=True)
                save_json(out, state)
    state["summary"] = summarise(state["rows"])
    state["choice"] = choose(state["summary"])
    state["machine"] = {"cpu": cpu_summary(), "pipeline": pipe.describe(), "loadavg_end": list(os.getloadavg())}
    out.write_text(json.dumps(state, indent=1))
    print(table(state["summary"]))
    print(f"\ndefault by the rule (held-out photos, 4x and 8x): {state['choice']}")
    if args.plot:
        plot(state["summary"], args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

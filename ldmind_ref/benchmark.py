"""SR benchmark (torch-free): PSNR-Y / SSIM-Y against PIL bicubic, SelfSSIM, diversity.

The same protocol runs on the reference (``python -m ldmind_ref.eval --model
LABEL=CHECKPOINT ...``) and on exported engines (``python -m runtime.programs.eval --model
LABEL=ENGINES ...``): a *sampler* is any object with
``upscale_latents(lr, steps, eta, seed, num_samples) -> z`` and ``render(z, sizes) -> [uint8
[N, H, W, 3] per size]`` (``ldmind_ref.eval.ReferenceSampler``, ``runtime.Pipeline``).

Protocol (LIIF's): the HR image is cropped to a multiple of the scale, LR = PIL bicubic
downsampling, PSNR and SSIM on the Y channel with ``shave = scale`` pixels cut from every
border.  SelfSSIM: one latent of the 4x LR rendered at 4x and at 8x, the 8x render bicubic-
downsampled to the 4x size, SSIM-Y between the two.  Diversity: mean per-pixel standard
deviation (0..255) over 4 samples at 8x.  Sampling uses the CLI defaults unless overridden,
back-projection onto the LR included (``consistency.py``); ``raw_psnr`` is the same sample
without it (the diffusion model's own output).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from . import metrics
from .core import consistency, contract, cpuinfo

DIVERSITY_SCALE, DIVERSITY_SAMPLES = 8, 4
SELF_SSIM_SCALES = (4, 8)


def median_seconds(fn, repeat: int) -> float:
    """Median wall time of ``repeat`` calls of ``fn`` after one warm-up call (first-run
    allocations and caches are not counted)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def cpu_flag_list() -> list[str]:
    """The CPU's feature flags in /proc/cpuinfo's order: what every timing and every bf16
    figure depends on (``core.cpuinfo``)."""
    return cpuinfo.flag_list()


def cpu_summary() -> str:
    """'x86_64, 2 cores, AVX2 AVX-512 BF16 VNNI AMX': the machine every figure is quoted with."""
    return cpuinfo.summary()


def load_hr(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def bicubic(img: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))


def make_lr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped to a multiple of scale, its bicubic LR)."""
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    hr = hr[:h, :w]
    return hr, bicubic(hr, w // scale, h // scale)


def evaluate_image(sampler, hr: np.ndarray, scales, steps: int, eta: float, seed: int,
                   refusals: tuple[type[Exception], ...] = (),
                   backproject: int = contract.DEFAULT_BACKPROJECT,
                   schedule: str = contract.DEFAULT_DDIM_SCHEDULE) -> dict:
    """Metrics of one HR image at every scale.  A sampler error of a type in ``refusals``
    (the runtime refusing an input too large for memory) records None for that scale."""
    out: dict = {"psnr": {}, "ssim": {}, "raw_psnr": {}, "bicubic_psnr": {}, "bicubic_ssim": {}, "refused": {}}
    for s in scales:
        hr_s, lr = make_lr(hr, s)
        H, W = hr_s.shape[:2]
        n = DIVERSITY_SAMPLES if s == DIVERSITY_SCALE else 1
        try:
            z = sampler.upscale_latents(lr, steps=steps, eta=eta, seed=seed, num_samples=n, schedule=schedule)
        except refusals as e:
            for key in ("psnr", "ssim", "raw_psnr", "bicubic_psnr", "bicubic_ssim"):
                out[key][s] = None
            out["refused"][s] = str(e)
            continue
        sizes = [(H, W)]
        if s == SELF_SSIM_SCALES[0]:
            k = SELF_SSIM_SCALES[1] // SELF_SSIM_SCALES[0]
            sizes.append((H * k, W * k))
        renders = sampler.render(z, sizes)
        out["raw_psnr"][s] = metrics.psnr_y(renders[0][0], hr_s, s)
        for per_size in renders:
            for img in per_size:
                consistency.apply_inplace(img, lr, backproject)
        ours = renders[0][0]
        bic = bicubic(lr, W, H)
        out["psnr"][s] = metrics.psnr_y(ours, hr_s, s)
        out["ssim"][s] = metrics.ssim_y(ours, hr_s, s)
        out["bicubic_psnr"][s] = metrics.psnr_y(bic, hr_s, s)
        out["bicubic_ssim"][s] = metrics.ssim_y(bic, hr_s, s)
        if n > 1:
            out["diversity"] = metrics.diversity(list(renders[0]))
        if len(sizes) > 1:
            big = bicubic(renders[1][0], W, H)
            out["self_ssim"] = metrics.ssim_y(ours, big, s)
            out["_figure"] = (lr, bic, ours, renders[1][0], hr_s)
    return out


def mean(values) -> float:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else float("nan")


def figure(rows: list[tuple[str, tuple]], path: Path, tile: int = 192) -> None:
    """One row per image: LR | bicubic 4x | ours 4x | ours 8x (same latent) | ground truth."""
    cols = ["LR (x4 down)", "bicubic 4x", "ours 4x", "ours 8x", "ground truth"]
    canvas = Image.new("RGB", (tile * len(cols), tile * len(rows)), "white")
    for r, (_, panels) in enumerate(rows):
        for c, p in enumerate(panels):
            im = Image.fromarray(p)
            h, w = p.shape[:2]
            # centre crop of the same image region in every panel, shown at tile x tile
            side = min(h, w) // 2
            box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
            im = im.crop(box).resize((tile, tile), Image.NEAREST if c == 0 else Image.LANCZOS)
            canvas.paste(im, (c * tile, r * tile))
    canvas.save(path)


def table(results: dict, scales, labels: list[str], meta: dict) -> str:
    bp = meta.get("backproject", 0)
    lines = [f"Measured {meta['date']} on {meta['machine']}; {meta['steps']} DDIM steps "
             f"(schedule {meta.get('schedule', 'full')}), eta {meta['eta']}, "
             f"seed {meta['seed']}, {bp} back-projection iterations. PSNR/SSIM on the Y channel, "
             f"shave = scale, LR by PIL bicubic. *raw*: the same sample without back-projection.", ""]
    for ds, per_label in results.items():
        lines.append(f"### {ds}")
        lines.append("")
        head = "| scale | bicubic PSNR / SSIM | " + " | ".join(f"{l} PSNR / SSIM | {l} raw PSNR"
                                                             for l in labels) + " |"
        lines += [head, "|" + "---|" * (2 + 2 * len(labels))]
        any_label = per_label[labels[0]]
        for s in scales:
            # only the images every model ran at this scale, so the columns stay comparable
            ok = [all(per_label[l][i]["psnr"][s] is not None for l in labels) for i in range(len(any_label))]
            pick = lambda rs: [r for r, keep in zip(rs, ok) if keep]  # noqa: E731
            count = "" if all(ok) else f" ({sum(ok)} of {len(ok)} images)"
            row = f"| {s}x{count} | {mean(r['bicubic_psnr'][s] for r in pick(any_label)):.2f} / " \
                  f"{mean(r['bicubic_ssim'][s] for r in pick(any_label)):.4f} |"
            for l in labels:
                rs = pick(per_label[l])
                raw = mean(r.get("raw_psnr", {}).get(s) for r in rs)
                row += f" {mean(r['psnr'][s] for r in rs):.2f} / {mean(r['ssim'][s] for r in rs):.4f} | {raw:.2f} |"
            lines.append(row)
        for l in labels:
            rs = per_label[l]
            lines.append("")
            lines.append(f"{l}: SelfSSIM(4x, 8x) {mean(r.get('self_ssim') for r in rs):.4f}; "
                         f"diversity at 8x (mean per-pixel std over 4 samples, 0..255) "
                         f"{mean(r.get('diversity') for r in rs):.3f}")
        lines.append("")
    return "\n".join(lines)


def parser(prog: str, what: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True, metavar=f"LABEL={what}",
                   help="repeat to compare models; the first one gives the figure")
    p.add_argument("--data", required=True, help="folder of benchmark sets (each a folder of HR images)")
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4, 6, 8, 12])
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (the CLI default)")
    p.add_argument("--eta", type=float, default=1.0, help="DDIM eta (the CLI default)")
    p.add_argument("--schedule", choices=contract.DDIM_SCHEDULES, default=contract.DEFAULT_DDIM_SCHEDULE,
                   help=f"DDIM steps executed: full, or paper (the noisiest dropped; default "
                        f"{contract.DEFAULT_DDIM_SCHEDULE})")
    p.add_argument("--backproject", type=int, default=contract.DEFAULT_BACKPROJECT,
                   help=f"back-projection iterations (the CLI default, {contract.DEFAULT_BACKPROJECT})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="images per set (0: all)")
    p.add_argument("--figure-images", type=int, default=3)
    p.add_argument("--machine", default=f"{platform.machine()} CPU")
    p.add_argument("--out", required=True)
    return p


def run(args: argparse.Namespace, open_sampler: Callable[[str], object],
        refusals: tuple[type[Exception], ...] = ()) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    schedule = getattr(args, "schedule", contract.DEFAULT_DDIM_SCHEDULE)   # callers building their own args
    models = [tuple(spec.split("=", 1)) for spec in args.model]
    if any(len(m) != 2 for m in models):
        raise SystemExit("--model takes LABEL=PATH")
    sets = sorted(d for d in Path(args.data).iterdir() if d.is_dir())
    results: dict = {d.name: {label: [] for label, _ in models} for d in sets}
    fig_rows = []
    t0 = time.time()
    for label, path in models:
        sampler = open_sampler(path)
        for d in sets:
            files = sorted(f for f in d.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
            for f in files[: args.limit or None]:
                r = evaluate_image(sampler, load_hr(f), args.scales, args.steps, args.eta, args.seed, refusals,
                                   args.backproject, schedule)
                fig = r.pop("_figure", None)
                if label == models[0][0] and fig is not None and len(fig_rows) < args.figure_images:
                    fig_rows.append((f.name, fig))
                r["image"] = f.name
                results[d.name][label].append(r)
                print(f"[{time.time() - t0:7.1f}s] {label} {d.name}/{f.name}: " +
                      " ".join(f"{s}x refused" if r["psnr"][s] is None else
                               f"{s}x {r['psnr'][s]:.2f} (bic {r['bicubic_psnr'][s]:.2f})" for s in args.scales),
                      file=sys.stderr, flush=True)
    meta = {"date": date.today().isoformat(), "machine": args.machine, "steps": args.steps, "eta": args.eta,
            "schedule": schedule,
            "seed": args.seed, "backproject": args.backproject, "models": dict(models), "seconds": round(time.time() - t0, 1)}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    md = table(results, args.scales, [label for label, _ in models], meta)
    (out / "results.md").write_text(md + "\n")
    if fig_rows:
        figure(fig_rows, out / "figure.png")
    print(md)
    return 0


def merge(paths: list[str], out: str) -> str:
    """Combine the results.json of several runs (other models, or other scales of the same
    model) into one table: OUT/results.md and OUT/results.json."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    results: dict = {}
    for run_ in runs:
        for ds, per_label in run_["results"].items():
            for label, rows in per_label.items():
                merged = {r["image"]: r for r in results.setdefault(ds, {}).setdefault(label, [])}
                for r in rows:
                    m = merged.setdefault(r["image"], {"image": r["image"]})
                    for k, v in r.items():
                        m[k] = {**m.get(k, {}), **v} if isinstance(v, dict) else v
                results[ds][label] = sorted(merged.values(), key=lambda r: r["image"])
    labels = list(dict.fromkeys(label for run_ in runs for label in run_["meta"]["models"]))
    scales = sorted({s for per in results.values() for rows in per.values() for r in rows for s in r["psnr"]},
                    key=int)
    meta = dict(runs[0]["meta"], models={k: v for r in runs for k, v in r["meta"]["models"].items()})
    md = table(results, scales, labels, meta)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "results.md").write_text(md + "\n")
    (Path(out) / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    return md


if __name__ == "__main__":  # python -m ldmind_ref.benchmark OUT RESULTS.json [RESULTS.json ...]
    print(merge(sys.argv[2:], sys.argv[1]))

"""A new SR model against the shipped one, and the issue-14 targets, in one command.

    python -m ldmind_ref.compare --model small=ldmind_ref/weights/small.safetensors \\
        --model medium=runs/gpu/sr.safetensors --gen runs/gpu/gen.safetensors \\
        --data ../shared/data/val --out docs/results/medium

The SR benchmark of ``benchmark.py`` on the reference (``eval.ReferenceSampler``; float16
shipping checkpoints load as float32) for exactly two models, the shipped one first, at
the CLI defaults (``--steps`` defaults to ``contract.DEFAULT_STEPS`` with the default
sampler, ``--backproject`` to its default); every row also has the raw sample (no
back-projection).  Then ``verdict.json`` / ``verdict.md``, per benchmark set:

- *raw above bicubic*: the second model's raw PSNR-Y above bicubic at 4, 8 and 12x (those run);
- *defaults vs bicubic at 4x*: at least ``MARGIN_4X`` dB above bicubic;
- *beats the shipped model*: PSNR-Y at the defaults above the first model's at every scale;
  ``ship`` is true only if it does so on every set.

``--gen CHECKPOINT --gen-data PHOTOS`` adds the generation model, measured by
``gen_eval.evaluate`` against crops of the photos it learned from: ``--gen-samples`` samples
(one seed each) at ``--gen-size``, a contact sheet ``generation.png``, their diversity and
the Frechet distance of their image statistics (``gen_eval.py`` says which and why).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import benchmark, gen_eval
from .core import contract

RAW_SCALES = (4, 8, 12)
MARGIN_4X = 1.0


def _mean(rows, key, s):
    return benchmark.mean(r[key].get(s, r[key].get(str(s))) for r in rows)


def verdict(results: dict, old: str, new: str, scales) -> dict:
    """The checks above from a benchmark results dict (``results.json``'s ``results``)."""
    checks, ship = [], True
    for ds, per_label in results.items():
        o, n = per_label[old], per_label[new]
        raw = {s: (_mean(n, "raw_psnr", s), _mean(n, "bicubic_psnr", s)) for s in scales if s in RAW_SCALES}
        if raw:
            checks.append({"set": ds, "check": f"{new} raw above bicubic at {', '.join(f'{s}x' for s in raw)}",
                           "met": all(a > b for a, b in raw.values()),
                           "detail": {f"{s}x": f"{a:.2f} vs {b:.2f}" for s, (a, b) in raw.items()}})
        if 4 in scales:
            a, b = _mean(n, "psnr", 4), _mean(n, "bicubic_psnr", 4)
            checks.append({"set": ds, "check": f"{new} at the defaults >= bicubic + {MARGIN_4X} dB at 4x",
                           "met": a - b >= MARGIN_4X, "detail": {"4x": f"{a:.2f} vs {b:.2f} ({a - b:+.2f} dB)"}})
        beats = {s: (_mean(n, "psnr", s), _mean(o, "psnr", s)) for s in scales}
        met = all(a > b for a, b in beats.values())
        ship &= met
        checks.append({"set": ds, "check": f"{new} above {old} at the defaults at every scale", "met": met,
                       "detail": {f"{s}x": f"{a:.2f} vs {b:.2f} ({a - b:+.2f})" for s, (a, b) in beats.items()}})
    return {"old": old, "new": new, "ship": ship, "checks": checks}


def verdict_md(v: dict) -> str:
    lines = [f"**Ship {v['new']} in place of {v['old']}: {'yes' if v['ship'] else 'no'}**", "",
             "| set | check | met | numbers |", "|---|---|---|---|"]
    for c in v["checks"]:
        detail = "; ".join(f"{k}: {d}" for k, d in c["detail"].items())
        lines.append(f"| {c['set']} | {c['check']} | {'yes' if c['met'] else '**no**'} | {detail} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = benchmark.parser("python -m ldmind_ref.compare", "CHECKPOINT")
    p.set_defaults(steps=contract.DEFAULT_STEPS)
    p.add_argument("--gen", help="generation checkpoint: contact sheet and statistics (gen_eval.py)")
    p.add_argument("--gen-data", help="the photos (folder or zip) the generation model learned from")
    p.add_argument("--gen-samples", type=int, default=64)
    p.add_argument("--gen-size", type=int, default=128)
    args = p.parse_args(argv)
    if len(args.model) != 2:
        raise SystemExit("give exactly two --model LABEL=CHECKPOINT: the shipped model first, the new one second")
    labels = [m.split("=", 1)[0] for m in args.model]
    if len(set(labels)) != 2:
        raise SystemExit("the two --model labels must differ")
    for m in args.model:
        if "=" not in m or not Path(m.split("=", 1)[1]).is_file():
            raise SystemExit(f"--model {m}: give LABEL=CHECKPOINT of an existing file")
    if args.gen and not (args.gen_data and Path(args.gen_data).exists()):
        raise SystemExit("--gen needs --gen-data: the photos (folder or zip) the generation model learned from")
    if not Path(args.data).is_dir():
        raise SystemExit(f"benchmark folder not found: {args.data}")
    from .eval import ReferenceSampler

    benchmark.run(args, ReferenceSampler)
    out = Path(args.out)
    res = json.loads((out / "results.json").read_text())
    v = verdict(res["results"], labels[0], labels[1], args.scales)
    if args.gen:
        g = gen_eval.evaluate({"generation": args.gen}, args.gen_data, out, args.gen_samples, args.gen_size,
                              args.steps)
        v["generation"] = g["rows"]["generation"] | {"samples": g["samples"], "size": g["size"], "steps": g["steps"],
                                                     "real_fd_stats": g["rows"]["real crops (second set)"]["fd_stats"]}
    (out / "verdict.json").write_text(json.dumps(v, indent=1))
    md = verdict_md(v)
    if "generation" in v:
        g = v["generation"]
        md += (f"\n\nGeneration ({g['checkpoint']}): {g['samples']} samples at {g['size']} px, {g['steps']} steps, "
               f"diversity {g['diversity']} (mean per-pixel std, 0..255), fd_stats {g['fd_stats']} (real crops: "
               f"{g['real_fd_stats']}); contact sheet generation.png, statistics in table.md")
    (out / "verdict.md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    from .errors import cli
    sys.exit(cli("python -m ldmind_ref.compare", main))

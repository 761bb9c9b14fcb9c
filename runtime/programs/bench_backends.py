"""CPU backends side by side (a program, never a test): ONNX Runtime and OpenVINO on the same
graphs, per graph and end to end, calls alternating so that a shared machine's load falls on
both alike.

    python -m runtime.programs.bench_backends --engines engines/small [--backend cpu --backend openvino]
        [--lr 48] [--scale 8] [--e2e-lr 48|WxH] [--photo PATH] [--e2e-scale 4] [--steps 10] [--repeat 5]
        [--threads 2]
        [--out bench_out/backends.json] [--record]

Per graph: the stages of ``runtime.programs.bench_side`` (encoder on an LR of --lr pixels, one U-Net
step and the decoder on its latent, the LIIF queries of the --scale output).  End to end:
``Pipeline.upscale`` of a --e2e-lr square photo crop at --e2e-scale with --steps steps of the
default sampler.  Each figure is the median of --repeat rounds after a warm-up; a round calls
every backend once.  ``--record`` writes the per-graph medians to the record that
``backend="auto"`` chooses by (runtime/backends/record.py, choice.py), as its own first-use
measurement would.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

import numpy as np

from ..backends.timing import alternating
from .benchlib import DEMO_PHOTO, STAGES, cpu_flags, stage_calls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.programs.bench_backends", description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="engines/small")
    ap.add_argument("--backend", action="append", default=None)
    ap.add_argument("--lr", type=int, default=48)
    ap.add_argument("--scale", type=int, default=8)
    ap.add_argument("--e2e-lr", default="48", help="end-to-end input: a SIDE or WxH centre crop of --photo")
    ap.add_argument("--photo", default=str(DEMO_PHOTO), help="the end-to-end photo (default: the demo's)")
    ap.add_argument("--e2e-scale", type=float, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench_out/backends.json")
    ap.add_argument("--record", action="store_true", help="save the per-graph medians for backend='auto'")
    a = ap.parse_args(argv)

    from ..backends import record as backend_record
    from ..errors import LdmindError
    from ..pipeline import Pipeline

    backends = a.backend or ["cpu", "openvino", "openvino-bf16"]
    try:
        pipes = {b: Pipeline.load(a.engines, backend=b, threads=a.threads) for b in backends}
    except LdmindError as e:
        print(f"python -m runtime.programs.bench_backends: error: {e}", file=sys.stderr)
        return 2
    bundle = next(iter(pipes.values())).bundle
    out_side = a.lr * a.scale
    per_graph = alternating({b: stage_calls(p, a.lr, out_side) for b, p in pipes.items()}, a.repeat)
    photo = _photo(a.photo, a.e2e_lr)
    e2e = alternating({b: {"upscale": (lambda p=p: p.upscale(photo, scale=a.e2e_scale, steps=a.steps))}
                       for b, p in pipes.items()}, a.repeat)
    res = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "cpu": backend_record.machine_key(), "cpu_flags": cpu_flags(),
           "loadavg": list(os.getloadavg()), "engines": a.engines, "model": backend_record.export_key(bundle),
           "threads": a.threads, "repeat": a.repeat, "lr": a.lr, "scale": a.scale,
           "e2e": {"photo": Path(a.photo).name, "lr": a.e2e_lr, "scale": a.e2e_scale, "steps": a.steps},
           "seconds": {b: {**per_graph[b], "upscale": e2e[b]["upscale"]} for b in backends}}
    print(table(res, backends))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    if a.record:
        path = backend_record.save(bundle, per_graph, {"date": res["date"], "e2e_seconds":
                                                       {b: e2e[b]["upscale"] for b in backends}})
        print(f"recorded for backend='auto': {path or 'not written (the record is not writable)'}")
    return 0


def _photo(path: str, crop: str) -> np.ndarray:
    """A centre crop of ``path`` (uint8 RGB): ``crop`` is SIDE (a square) or WxH."""
    from PIL import Image

    from ..image_in import to_rgb_array

    cw, _, ch = crop.partition("x")
    cw, ch = int(cw), int(ch or cw)
    with Image.open(path) as im:
        rgb = to_rgb_array(im)
    h, w = rgb.shape[:2]
    y, x = max(0, (h - ch) // 2), max(0, (w - cw) // 2)
    return np.ascontiguousarray(rgb[y:y + ch, x:x + cw])


def table(res: dict, backends: list[str]) -> str:
    base = res["seconds"][backends[0]]
    e = res["e2e"]
    lines = [f"\n{res['model']}: per graph at LR {res['lr']}^2 ({res['scale']}x LIIF), end to end "
             f"{e['lr']} -> {e['scale']}x, {e['steps']} steps; {res['threads']} threads "
             f"(ms; x = {backends[0]} / column)",
             f"{'what':<12}" + "".join(f"{b:>22}" for b in backends)]
    for w in (*(s for s in STAGES if s in base), "upscale"):
        lines.append(f"{w:<12}" + "".join(f"{res['seconds'][b][w] * 1e3:12.1f} (x{base[w] / res['seconds'][b][w]:4.2f})"
                                          .rjust(22) for b in backends))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

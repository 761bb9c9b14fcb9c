"""The C++ runtime against the Python runtime on one request, side by side (issue 12), on any
backends (issue 24: the C++ ``auto`` choice against Python's and against ONNX Runtime alone).

    python -m runtime.programs.bench_cpp [--engines engines/small] [--image tests/data/skimage-astronaut.jpg]
        [--crop 128 | --crop 96x64] [--scale 4] [--steps N] [--rounds 3]
        [--runs python:cpu,cpp:cpu] [--out docs/results/cpp_vs_python.json]

Each run of ``--runs`` (SIDE:BACKEND, side ``python`` or ``cpp``) is one profiler process
(``python -m runtime profile`` or ``ldmind profile``, the same table) on the same request -- a
crop of a real photo, the shipped model, the default sampler -- timing one request after its
own warm-up; the runs go in turn, the order rotated each round, so that a shared machine's
load falls on all alike.  The figures are medians over the rounds; each round's request time
is printed with the 1-minute load average read just before it.  The ratio column is the first
run's time over each other run's.  Needs ``make cpp``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ldmind_ref.core import cpuinfo
from ldmind_ref.core.contract import DEFAULT_STEPS

from ..profile import STAGES
from .benchlib import ROOT

LDMIND = ROOT / "runtime" / "cpp" / "build" / "rel" / "ldmind"
SIDES = ("python", "cpp")


def profile(cmd: list[str], out: Path) -> dict:
    r = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return json.loads(out.read_text())


def parse_runs(text: str) -> list[tuple[str, str]]:
    """"python:cpu,cpp:auto" -> [("python", "cpu"), ("cpp", "auto")]."""
    runs = []
    for item in text.split(","):
        side, _, backend = item.partition(":")
        if side not in SIDES or not backend:
            raise argparse.ArgumentTypeError(f"--runs: {item!r} is not SIDE:BACKEND with SIDE python or cpp")
        runs.append((side, backend))
    if len(set(runs)) != len(runs):
        raise argparse.ArgumentTypeError("--runs names a run twice")
    return runs


def crop_size(text: str) -> tuple[int, int]:
    """"128" -> (128, 128); "96x64" -> (96, 64): width, height."""
    w, _, h = text.partition("x")
    return int(w), int(h or w)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.programs.bench_cpp", description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", default="engines/small")
    p.add_argument("--image", default=str(ROOT / "tests" / "data" / "skimage-astronaut.jpg"))
    p.add_argument("--crop", type=crop_size, default=(128, 128), help="LR size: a centred crop, SIDE or WxH")
    p.add_argument("--scale", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=parse_runs, default=parse_runs("python:cpu,cpp:cpu"),
                   help="SIDE:BACKEND,... (default python:cpu,cpp:cpu)")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "cpp_vs_python.json"))
    a = p.parse_args(argv)
    if not LDMIND.exists():
        sys.exit(f"{LDMIND} not found: run `make cpp` first")
    labels = [f"{side}:{backend}" for side, backend in a.runs]
    runs: dict[str, list[dict]] = {k: [] for k in labels}
    with tempfile.TemporaryDirectory() as tmp:
        img = Image.open(a.image).convert("RGB")
        (cw, ch), x0, y0 = a.crop, (img.width - a.crop[0]) // 2, (img.height - a.crop[1]) // 2
        lr = Path(tmp) / "lr.png"
        img.crop((x0, y0, x0 + cw, y0 + ch)).save(lr)
        args = [a.engines, str(lr), "--scale", str(a.scale), "--steps", str(a.steps), "--repeat", "1"]
        cmds = {f"{side}:{backend}": ([sys.executable, "-m", "runtime", "profile"] if side == "python" else
                                      [str(LDMIND), "profile"]) + [*args, "--backend", backend]
                for side, backend in a.runs}
        for k in range(a.rounds):
            for label in labels[k % len(labels):] + labels[:k % len(labels)]:
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                r = profile(cmds[label], Path(tmp) / f"run{k}.json")
                r |= {"load1": load, "process_s": time.perf_counter() - t0}
                runs[label].append(r)
                print(f"round {k + 1}/{a.rounds} {label}: {r['total_s']:.2f} s (load {load:.2f})", file=sys.stderr)
    med = {label: {s: float(np.median([r["stages_s"][s] for r in rs])) for s in STAGES} |
           {"total": float(np.median([r["total_s"] for r in rs])),
            "peak_rss_mib": float(np.median([r["peak_rss_bytes"] for r in rs])) / 2 ** 20}
           for label, rs in runs.items()}
    first = labels[0]
    print(f"{'stage':<20} " + " ".join(f"{k + ' ms':>18}" for k in labels) +
          "".join(f" {first + ' / ' + k:>24}" for k in labels[1:]))
    for s in [*STAGES, "total"]:
        print(f"{s:<20} " + " ".join(f"{med[k][s] * 1e3:18.1f}" for k in labels) +
              "".join(f" {med[first][s] / med[k][s] if med[k][s] else float('nan'):24.2f}" for k in labels[1:]))
    for k in labels:
        rounds = ", ".join(f"{r['total_s']:.2f} s (load {r['load1']:.2f})" for r in runs[k])
        print(f"{k}: {rounds}; peak RSS {med[k]['peak_rss_mib']:.0f} MiB; {runs[k][0]['backend_reason']}")
    out = {"engines": a.engines, "image": Path(a.image).name, "crop": list(a.crop), "scale": a.scale,
           "steps": a.steps, "rounds": a.rounds, "runs": labels, "median_s": med,
           "per_round": {k: [{"total_s": r["total_s"], "process_s": r["process_s"], "load1": r["load1"]} for r in rs]
                         for k, rs in runs.items()},
           "graph_backends": {k: rs[0]["graph_backends"] for k, rs in runs.items()},
           "backend_reason": {k: rs[0]["backend_reason"] for k, rs in runs.items()},
           "machine": os.uname().nodename, "cpu": cpuinfo.summary(), "cpus": os.cpu_count()}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

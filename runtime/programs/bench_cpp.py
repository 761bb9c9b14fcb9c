"""The C++ runtime against the Python runtime on one request, side by side (issue 12).

    python -m runtime.programs.bench_cpp [--engines engines/small] [--image tests/data/skimage-astronaut.jpg]
        [--crop 128] [--scale 4] [--steps N] [--rounds 3] [--out docs/results/cpp_vs_python.json]

Both profilers (``python -m runtime profile`` and ``ldmind profile``, the same table) run the
same request -- a crop of a real photo, the shipped model, the default sampler -- alternating
which goes first in each round, each after its own warm-up; the figures are medians over the
rounds and the ratio Python / C++ per stage is the Python overhead.  Needs ``make cpp``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ldmind_ref.core.contract import DEFAULT_STEPS

from ..profile import STAGES
from .benchlib import ROOT

LDMIND = ROOT / "runtime" / "cpp" / "build" / "rel" / "ldmind"


def profile(cmd: list[str], out: Path) -> dict:
    r = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return json.loads(out.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.programs.bench_cpp", description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", default="engines/small")
    p.add_argument("--image", default=str(ROOT / "tests" / "data" / "skimage-astronaut.jpg"))
    p.add_argument("--crop", type=int, default=128, help="LR side: a centred crop of the image")
    p.add_argument("--scale", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "cpp_vs_python.json"))
    a = p.parse_args(argv)
    if not LDMIND.exists():
        sys.exit(f"{LDMIND} not found: run `make cpp` first")
    with tempfile.TemporaryDirectory() as tmp:
        img = Image.open(a.image).convert("RGB")
        x0, y0 = (img.width - a.crop) // 2, (img.height - a.crop) // 2
        lr = Path(tmp) / "lr.png"
        img.crop((x0, y0, x0 + a.crop, y0 + a.crop)).save(lr)
        args = [a.engines, str(lr), "--scale", str(a.scale), "--steps", str(a.steps), "--backend", "cpu", "--repeat", "1"]
        sides = {"python": [sys.executable, "-m", "runtime", "profile", *args], "cpp": [str(LDMIND), "profile", *args]}
        runs: dict[str, list[dict]] = {"python": [], "cpp": []}
        for k in range(a.rounds):
            for side in (("python", "cpp") if k % 2 == 0 else ("cpp", "python")):
                runs[side].append(profile(sides[side], Path(tmp) / f"{side}{k}.json"))
                print(f"round {k + 1}/{a.rounds} {side}: {runs[side][-1]['total_s']:.2f} s", file=sys.stderr)
    med = {side: {s: float(np.median([r["stages_s"][s] for r in rs])) for s in STAGES} | 
           {"total": float(np.median([r["total_s"] for r in rs])),
            "peak_rss_mib": float(np.median([r["peak_rss_bytes"] for r in rs])) / 2 ** 20}
           for side, rs in runs.items()}
    rows = [*STAGES, "total"]
    print(f"{'stage':<20} {'python ms':>10} {'C++ ms':>10} {'py / C++':>9}")
    for s in rows:
        py, cc = med["python"][s], med["cpp"][s]
        print(f"{s:<20} {py * 1e3:10.1f} {cc * 1e3:10.1f} {py / cc if cc else float('nan'):9.2f}")
    print(f"peak RSS: python {med['python']['peak_rss_mib']:.0f} MiB, C++ {med['cpp']['peak_rss_mib']:.0f} MiB")
    out = {"engines": a.engines, "image": Path(a.image).name, "crop": a.crop, "scale": a.scale, "steps": a.steps,
           "rounds": a.rounds, "median_s": med, "machine": os.uname().nodename, "cpus": os.cpu_count()}
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

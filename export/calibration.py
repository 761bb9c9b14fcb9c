"""Calibration inputs for ``python -m export --int8``: each graph's real inputs, recorded
while the fp32 runtime upscales photos.

The exporter first writes the fp32 graphs; ``record`` has the runtime open them in its own
process (``python -m runtime.calibrate``, CPU), with every engine wrapped in a recorder that
keeps a copy of what the pipeline feeds it: the encoder's LR tiles, the U-Net's latents and
coefficients at every solver step, the decoder's latents and the LIIF features with real
query coordinates.  So the ranges that static quantization calibrates are those of real
requests, not of random numbers.

Each photo: shrunk by the plan's LR factor (PIL bicubic, as the benchmark makes LR images),
a centre crop of ``crop`` pixels, upscaled at one of ``scales`` (in turn) with the default
sampler and steps, no back-projection (it runs no graph).  The last ``holdout`` photos are
not calibrated on: their inputs measure the quantized graphs' error against fp32.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ldmind_ref.core import contract

REPO_ROOT = Path(__file__).resolve().parents[1]   # where ``runtime`` sits beside ``export``
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

Feed = dict[str, np.ndarray]


class CalibrationError(ValueError):
    """A calibration folder that cannot be used (one line, names the folder or file)."""


@dataclass(frozen=True)
class CalibrationPlan:
    folder: Path
    images: int = 24                 # photos used, spread evenly over the sorted folder
    holdout: int = 1                 # the last ones measure the error instead of calibrating
    shrink: int = 4                  # photo -> LR by this factor (PIL bicubic) before cropping
    crop: int = 64                   # LR centre crop, pixels (smaller photos: all of it)
    scales: tuple[float, ...] = (4.0, 2.0, 8.0)   # upscale factor per photo, in turn
    steps: int = contract.DEFAULT_STEPS
    sampler: str = contract.DEFAULT_SAMPLER
    per_graph: int = 32              # calibration inputs kept per graph (evenly spread)
    liif_queries: int = 4096         # queries kept per recorded LIIF call (a random subset)

    def to_json(self, used: list[Path]) -> dict:
        return {"folder": str(self.folder), "photos": [p.name for p in used], "holdout": self.holdout,
                "shrink": self.shrink, "crop": self.crop, "scales": list(self.scales), "steps": self.steps,
                "sampler": self.sampler, "per_graph": self.per_graph, "liif_queries": self.liif_queries}


def photos(plan: CalibrationPlan) -> list[Path]:
    """The photos ``plan`` uses, each checked readable; ``CalibrationError`` otherwise."""
    folder = Path(plan.folder)
    if not folder.exists():
        raise CalibrationError(f"calibration folder {folder} does not exist")
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder {folder} is not a directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    need = plan.holdout + 1
    if len(files) < need:
        raise CalibrationError(f"calibration folder {folder} holds {len(files)} image(s) "
                               f"({', '.join(IMAGE_EXTENSIONS)}); --int8 needs at least {need} "
                               f"(one to calibrate on, {plan.holdout} to measure the error)")
    n = max(need, min(plan.images, len(files)))
    chosen = [files[round(i * (len(files) - 1) / max(1, n - 1))] for i in range(n)]
    for p in chosen:
        try:
            with Image.open(p) as im:
                im.verify()
        except Exception as e:  # noqa: BLE001 - Pillow raises many types for a bad file
            raise CalibrationError(f"calibration image {p} is not a readable image ({type(e).__name__})") from None
    return chosen


def load_feeds(path: Path) -> dict[str, dict[str, list[Feed]]]:
    """The .npz of ``runtime.calibrate`` back as {split: {graph: [feed, ...]}} in order."""
    out: dict[str, dict[str, dict[str, Feed]]] = {}
    with np.load(path) as z:
        for key in sorted(z.files):
            split, graph, index, name = key.split("|")
            out.setdefault(split, {}).setdefault(graph, {}).setdefault(index, {})[name] = z[key]
    return {split: {g: [fs[i] for i in sorted(fs)] for g, fs in graphs.items()} for split, graphs in out.items()}


def record(engines_dir: Path, manifest: dict, plan: CalibrationPlan, used: list[Path], log=print
           ) -> tuple[dict[str, list[Feed]], dict[str, list[Feed]]]:
    """Upscale every photo of ``used`` with the fp32 graphs in ``engines_dir`` that ``manifest``
    (validated, not yet written) describes; returns ({graph: calibration feeds}, {graph:
    held-out feeds}), at most ``plan.per_graph`` each.

    The runtime records them in its own process (``python -m runtime.calibrate``): imports
    flow one way, ``export`` never imports ``runtime``.  Its progress lines go to ``log``; a
    failure is a ``CalibrationError`` with the runtime's last line."""
    graphs = list(manifest["graphs"])
    with tempfile.TemporaryDirectory(prefix="ldmind-calibration-") as tmp:
        job = {"engines": str(Path(engines_dir).resolve()), "manifest": manifest,
               "photos": [str(Path(p).resolve()) for p in used], "holdout": plan.holdout,
               "shrink": plan.shrink, "crop": plan.crop, "scales": list(plan.scales), "steps": plan.steps,
               "sampler": plan.sampler, "per_graph": plan.per_graph, "liif_queries": plan.liif_queries,
               "out": str(Path(tmp) / "feeds.npz")}
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        proc = subprocess.Popen([sys.executable, "-m", "runtime.calibrate", str(Path(tmp) / "job.json")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        lines = []
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if line.startswith("  calibration photo "):
                log(line)
        if proc.wait() != 0:
            last = next((x for x in reversed(lines) if x.strip()), f"exit code {proc.returncode}")
            raise CalibrationError(f"recording the calibration inputs failed: {last.strip()}")
        feeds = load_feeds(Path(job["out"]))
    return ({g: feeds.get("calib", {}).get(g, []) for g in graphs},
            {g: feeds.get("held", {}).get(g, []) for g in graphs})

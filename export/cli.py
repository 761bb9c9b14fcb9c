"""The command line: ``python -m export (--checkpoint PATH | --preset NAME --random-init) --out DIR
[--fp16 | --int8 --calibration DIR [--calibration-images N]] [--opset N] [--trt] [--seed N] [--no-check]``

Exit status: 0 exported, 2 bad arguments or unreadable checkpoint (one line on stderr,
no traceback), 1 the export itself failed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .calibration import CalibrationPlan, photos
from .specs import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        # one line, no usage dump: the user sees what is wrong and where to look
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m export", description="Export ldmind to ONNX graphs (+ TensorRT engines).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="ldmind checkpoint (.safetensors) to export")
    src.add_argument("--preset", help="model preset to export untrained (needs --random-init)")
    p.add_argument("--random-init", action="store_true",
                   help="with --preset: random weights (all non-zero, scale factor 0.75), for testing")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init (default 0)")
    p.add_argument("--out", type=Path, required=True, help="output directory, e.g. engines/NAME")
    p.add_argument("--fp16", action="store_true",
                   help="half-precision graphs, fp32 kept where fp16 breaks (docs/EXPORT.md)")
    p.add_argument("--int8", action="store_true",
                   help="int8 graphs for the CPU (ONNX Runtime static quantization, QDQ, per-channel "
                        "weights), calibrated on --calibration; float kept where int8 breaks (docs/EXPORT.md)")
    p.add_argument("--calibration", type=Path, default=None,
                   help="with --int8: a folder of photos to calibrate on, e.g. ../shared/data/train")
    p.add_argument("--calibration-images", type=int, default=CalibrationPlan.images,
                   help=f"with --int8: photos used, spread over the folder, the last held out to measure "
                        f"the error (default {CalibrationPlan.images})")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})")
    p.add_argument("--trt", action="store_true",
                   help="also build fp16 TensorRT engines (implies --fp16; skipped with a "
                        "message when tensorrt or a GPU is missing)")
    p.add_argument("--no-check", action="store_true",
                   help="skip the self-check that runs each graph in ONNX Runtime against PyTorch")
    a = p.parse_args(argv)
    if a.preset is not None and not a.random_init:
        p.error("--preset has no trained weights: add --random-init, or export a --checkpoint")
    if a.preset is not None:
        from ldmind_ref.config import PRESETS  # torch-free
        if a.preset not in PRESETS:
            p.error(f"unknown preset {a.preset!r}; choose from {', '.join(sorted(PRESETS))}")
    if a.checkpoint is not None and a.random_init:
        p.error("--random-init goes with --preset, not --checkpoint")
    if a.int8 and (a.fp16 or a.trt):
        p.error("--int8 goes alone: not with --fp16 or --trt (TensorRT engines are built from fp16 graphs)")
    if a.int8 and a.calibration is None:
        p.error("--int8 needs --calibration DIR, a folder of photos to calibrate on (e.g. ../shared/data/train)")
    if not a.int8 and (a.calibration is not None or a.calibration_images != CalibrationPlan.images):
        p.error("--calibration and --calibration-images go with --int8")
    if a.calibration_images < CalibrationPlan.holdout + 1:
        p.error(f"--calibration-images must be at least {CalibrationPlan.holdout + 1}")
    if not MIN_OPSET <= a.opset <= MAX_OPSET:
        p.error(f"--opset {a.opset} is outside the supported {MIN_OPSET}..{MAX_OPSET}")
    if a.out.exists() and not a.out.is_dir():
        p.error(f"--out {a.out} exists and is not a directory")
    return a


def load(a: argparse.Namespace):
    """The model and a description of where its weights came from; ValueError/OSError on
    bad input (reported as usage errors)."""
    if a.checkpoint is not None:
        from ldmind_ref.checkpoint import load_model
        if not a.checkpoint.is_file():
            raise ValueError(f"checkpoint {a.checkpoint} does not exist")
        return load_model(a.checkpoint), f"checkpoint {a.checkpoint.name}"
    from ldmind_ref.config import preset
    from ldmind_ref.model import random_model
    return random_model(preset(a.preset), a.seed), f"random-init seed {a.seed}"


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    prog = "python -m export"
    plan = None
    try:
        if a.int8:   # a bad folder is refused before the export, not after it
            plan = CalibrationPlan(a.calibration, images=a.calibration_images)
            photos(plan)
        model, source = load(a)
    except (ValueError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    # heavy imports only now: argument errors above answer at once
    from .build import export_model
    from .onnx_export import ExportError

    precision = "int8" if a.int8 else "fp16" if (a.fp16 or a.trt) else "fp32"
    if a.trt and not a.fp16:
        print("--trt: exporting the fp16 graphs (engines are built strongly typed from them)")
    print(f"exporting {model.cfg.name} ({source}) to {a.out}: {precision}, opset {a.opset}")
    t0 = time.perf_counter()
    try:
        manifest = export_model(model, a.out, precision, a.opset, tensorrt=a.trt, check=not a.no_check,
                                source=source, calibration=plan)
        if a.checkpoint is not None:
            from .gate import carry
            carry(a.checkpoint, a.out, manifest)
    except (ExportError, OSError) as e:
        print(f"{prog}: export failed: {e}", file=sys.stderr)
        return 1
    total = sum((a.out / g["file"]).stat().st_size for g in manifest["graphs"].values())
    print(f"done in {time.perf_counter() - t0:.1f} s: {len(manifest['graphs'])} graphs, "
          f"{total / 2**20:.1f} MiB, manifest {a.out / 'manifest.json'}")
    return 0



"""The command line: ``python -m export (--checkpoint PATH | --preset NAME --random-init) --out DIR
[--fp16] [--opset N] [--trt] [--seed N] [--no-check]``

Exit status: 0 exported, 2 bad arguments or unreadable checkpoint (one line on stderr,
no traceback), 1 the export itself failed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .specs import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        # one line, no usage dump: the user sees what is wrong and where to look
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="python -m export", description="Export ldmind to ONNX graphs (+ TensorRT engines).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="ldmind checkpoint (.safetensors) to export")
    src.add_argument("--preset", help="model preset to export untrained (needs --random-init)")
    p.add_argument("--random-init", action="store_true",
                   help="with --preset: random weights (all non-zero, scale factor 0.75), for testing")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init (default 0)")
    p.add_argument("--out", type=Path, required=True, help="output directory, e.g. engines/NAME")
    p.add_argument("--fp16", action="store_true",
                   help="half-precision graphs, fp32 kept where fp16 breaks (docs/EXPORT.md)")
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
    try:
        model, source = load(a)
    except (ValueError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    # heavy imports only now: argument errors above answer at once
    from .build import export_model
    from .onnx_export import ExportError

    precision = "fp16" if (a.fp16 or a.trt) else "fp32"
    if a.trt and not a.fp16:
        print("--trt: exporting the fp16 graphs (engines are built strongly typed from them)")
    print(f"exporting {model.cfg.name} ({source}) to {a.out}: {precision}, opset {a.opset}")
    t0 = time.perf_counter()
    try:
        manifest = export_model(model, a.out, precision, a.opset, tensorrt=a.trt, check=not a.no_check,
                                source=source)
    except (ExportError, OSError) as e:
        print(f"{prog}: export failed: {e}", file=sys.stderr)
        return 1
    total = sum((a.out / g["file"]).stat().st_size for g in manifest["graphs"].values())
    print(f"done in {time.perf_counter() - t0:.1f} s: {len(manifest['graphs'])} graphs, "
          f"{total / 2**20:.1f} MiB, manifest {a.out / 'manifest.json'}")
    return 0



"""Carry a checkpoint's precision gate into its export.

The quality gate of bf16 (runtime/precision_gate.py) is measured on an export's graphs, but what
it judges is the network's arithmetic, which the weights fix: graphs exported again from the
same checkpoint compute the same function.  So shipped weights keep their gate beside them
(``NAME.precision_gate.json`` next to ``NAME.safetensors``, with the checkpoint's sha256), and
an fp32 export of that checkpoint gets it, re-keyed to the new graphs' sha256.  A gate of other
weights, or of a reduced-precision export, is not carried.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from .manifest import sha256_file
from .specs import PRECISION_GATE_NAME

SUFFIX = "." + PRECISION_GATE_NAME     # beside the checkpoint: NAME.precision_gate.json


def sidecar(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + SUFFIX)


def carry(checkpoint: Path, out_dir: Path, manifest: dict[str, Any], log: Callable[[str], None] = print) -> bool:
    """Write ``out_dir``/precision_gate.json from ``checkpoint``'s sidecar when it was measured on
    these weights and the export is fp32; returns whether it did."""
    src = sidecar(checkpoint)
    if manifest.get("precision") != "fp32" or not src.is_file():
        return False
    try:
        gate = json.loads(src.read_text())
    except ValueError:
        log(f"  precision gate {src} is not JSON: not carried")
        return False
    if gate.get("checkpoint_sha256") != sha256_file(checkpoint):
        log(f"  precision gate {src.name} was measured on other weights: not carried")
        return False
    gate["graphs_sha256"] = {g: e["sha256"] for g, e in manifest["graphs"].items()}
    gate["carried_from"] = src.name
    tmp = out_dir / f".{PRECISION_GATE_NAME}.tmp"
    tmp.write_text(json.dumps(gate, indent=1) + "\n")
    tmp.replace(out_dir / PRECISION_GATE_NAME)
    log(f"  precision gate carried from {src.name} (bf16 allowed for: "
        f"{', '.join(g for g, m in gate['precisions']['bf16']['per_graph'].items() if m.get('pass')) or 'none'})")
    return True

"""The quality gate of reduced precision: which graphs of an export may run in bf16.

``python -m runtime.programs.precision_gate --engines DIR`` upscales held-out photos with each
graph in bf16 alone and with all of them, against fp32 with the same seeds, and writes
``DIR/precision_gate.json``.  A graph passes when, at the defaults and with raw samples
(``--backproject 0``), the mean PSNR-Y against the ground truth falls by at most
``MAX_LOSS_DB``.  ``auto``
runs a graph in bf16 only when the gate file is there, was measured on these very graphs
(their sha256), the graph passed, and all passing graphs together passed too.

Shipped weights carry their gate beside them (``ldmind_ref/weights/NAME.precision_gate.json``,
written by the program's ``--checkpoint``): ``python -m export --checkpoint`` copies it into the
engine directory when it was measured on the same weights (``export.gate``), so an export of
shipped weights runs bf16 where the CPU has it without measuring anything.
"""
from __future__ import annotations

import json
from pathlib import Path

from export.specs import PRECISION_GATE_NAME as GATE_FILE

from .bundle import Bundle

# PSNR-Y a reduced precision may cost against fp32, per setting (dB; issue 24's gate)
MAX_LOSS_DB = {"defaults": 0.1, "raw": 0.2}
REDUCED = ("bf16",)


def path(bundle: Bundle) -> Path:
    return bundle.root / GATE_FILE


def graph_digests(bundle: Bundle) -> dict[str, str]:
    """The sha256 of every graph, as the manifest declares them: what a gate was measured on."""
    return {g: spec["sha256"] for g, spec in bundle.graphs.items()}


def load(bundle: Bundle) -> dict | None:
    """The gate file of ``bundle`` (None where absent or unreadable)."""
    try:
        data = json.loads(path(bundle).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def refusal(bundle: Bundle, precision: str, graph: str) -> str | None:
    """Why ``graph`` of ``bundle`` may not run in ``precision`` (None: the gate allows it)."""
    if precision == "fp32":
        return None
    data = load(bundle)
    if data is None:
        return (f"no quality gate for {precision} in {bundle.root} (measure one: "
                f"python -m runtime.programs.precision_gate --engines {bundle.root})")
    if data.get("graphs_sha256") != graph_digests(bundle):
        return f"{path(bundle)} was measured on other graphs (re-run the gate after an export)"
    entry = data.get("precisions", {}).get(precision)
    if not entry:
        return f"{path(bundle)} has no {precision} measurement"
    g = entry.get("per_graph", {}).get(graph)
    if not g or not g.get("pass"):
        return f"{graph} in {precision} failed the quality gate ({_losses(g)})" if g else \
            f"{path(bundle)} has no {precision} measurement of {graph}"
    if not entry.get("together", {}).get("pass"):
        return f"the graphs in {precision} together failed the quality gate ({_losses(entry.get('together'))})"
    return None


def _losses(m: dict | None) -> str:
    if not m:
        return "not measured"
    return ", ".join(f"{k} {m[k + '_loss_db']:+.3f} dB" for k in MAX_LOSS_DB if k + "_loss_db" in m)


def passes(losses: dict[str, float]) -> bool:
    """Whether PSNR-Y losses {setting: dB lost against fp32} are within ``MAX_LOSS_DB``."""
    return all(losses[k] <= limit for k, limit in MAX_LOSS_DB.items())

"""What the benchmark programs share: the machine a figure was measured on, peak RSS, the
demo photo, and the per-stage calls that the side-by-side, backend and int8 benchmarks time
alike (so their columns measure the same thing).

Programs only: the runtime library never imports ``runtime.programs``, and the wheel leaves
it out.
"""
from __future__ import annotations

import json
import resource
import sys
from pathlib import Path


from export.specs import GRAPH_NAMES
from ldmind_ref.benchmark import cpu_flag_list, median_seconds

from ..limits import proc_bytes

ROOT = Path(__file__).resolve().parents[2]
# the runtime's one shipped photo (runtime/data/README.md): scikit-image's ``chelsea``, 192 x 192
DEMO_PHOTO = ROOT / "runtime" / "data" / "demo_photo.png"
STAGES = GRAPH_NAMES


def finish(res: dict, checks: dict[str, bool], out: str, note: str = "") -> int:
    """The end of a program with checks: each check printed ok/FAIL, ``res`` written to ``out``
    as JSON (its folder created), the path printed; exit status 0 when every check passed."""
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {path}{note}")
    return 0 if all(checks.values()) else 1


def save_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` whole or not at all (a temporary renamed over it): the
    state file of a resumable program survives an interrupt."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=0))
    tmp.replace(path)


def cpu_flags() -> str:
    """The CPU's vector extensions (AVX, AMX, FMA flags of /proc/cpuinfo): what a timing depends on."""
    flags = cpu_flag_list()
    if not flags:
        return "unknown"
    keep = [f for f in flags if f.startswith(("avx", "amx", "fma"))]
    return " ".join(keep) or "no AVX"


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (VmHWM; ru_maxrss as a fallback)."""
    hwm = proc_bytes("/proc/self/status", "VmHWM")
    if hwm is not None:
        return hwm
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024   # bytes on macOS, KiB on Linux


def current_rss() -> int:
    return proc_bytes("/proc/self/status", "VmRSS") or 0


def runtime_times(engines: str, backend: str, lr_side: int, out_side: int, repeat: int, threads: int) -> dict:
    """The runtime's graphs at the same shapes, called as the pipeline calls them (LIIF: the
    band loop of ``tiling.render_into`` with the features bound once)."""
    from ..pipeline import Pipeline

    pipe = Pipeline.load(engines, backend=backend, threads=threads)
    out = {s: median_seconds(fn, repeat) for s, fn in stage_calls(pipe, lr_side, out_side).items()}
    return {"model": pipe.bundle.name, "backend": pipe.backend, "times": out}


def stage_calls(pipe, lr_side: int, out_side: int) -> dict:
    """{stage: a call of that stage} for the stages of ``STAGES``: the encoder on an LR of
    lr_side^2, one U-Net step and the decoder on its latent, the LIIF queries of an
    out_side^2 output (``backends.timing.graph_calls``)."""
    from ..backends.timing import graph_calls

    b = pipe.bundle
    return graph_calls(b, pipe.engines, max(1, lr_side * b.cond_scale // b.ae_downsample), out_side, pipe.tile)


def reference_model(engines: str, checkpoint: str | None):
    """The eager reference of an export: ``checkpoint``'s weights, or without one a random
    model of the exported architecture (speed does not depend on the weights).  Needs torch."""
    from ldmind_ref.checkpoint import load_model
    from ldmind_ref.config import ModelConfig
    from ldmind_ref.model import random_model

    from ..bundle import load_bundle

    if checkpoint:
        return load_model(checkpoint)
    return random_model(ModelConfig.from_dict(load_bundle(engines).config), 0)

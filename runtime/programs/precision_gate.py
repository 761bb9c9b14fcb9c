"""The quality gate of reduced precision (a program, never a test): each graph of an fp32 export
in bf16 alone, then all passing graphs together, against fp32 on held-out photos with the same
seeds; writes what ``auto`` reads (runtime/precision_gate.py).

    python -m runtime.programs.precision_gate --engines engines/small \\
        --val ../shared/data/val --train ../shared/data/train [--per-set 6] [--side 128] [--write]
        [--checkpoint ldmind_ref/weights/small.safetensors]

Held-out photos: each subfolder of --val (Set5, Set14) and every 20th photo of --train (the
trainer's validation split), centre crops of --side pixels, at most --per-set per set; LR by
PIL bicubic at 4x.  Each photo is upscaled 4x once per variant with the default sampler and
steps; "raw" is that sample, "defaults" the same sample back-projected onto the LR (the
defaults' iterations).  A graph passes when the mean PSNR-Y falls by at most
``precision_gate.MAX_LOSS_DB`` in both.  bf16 runs on OpenVINO (``openvino-bf16``): figures
mean something only on a CPU with native bf16 (the program says which it is).

``--int8 DIR`` (an int8 export of the same weights: ``python -m export --int8``) measures its
graphs the same way, each alone and the passing ones together, on ``--int8-backend``
(default ``openvino-bf16``: int8 convolutions, the rest in bf16); the result is recorded
under ``precisions.int8`` with the int8 graphs' sha256.  ``auto`` does not read it: an int8
export is a separate engine directory, never mixed into an fp32 one's plan.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from ldmind_ref.core import consistency, contract, cpuinfo

from .. import engine as _engine
from .. import precision_gate
from ..backends.base import graphs_of
from ..bundle import load_bundle
from ..calibrate import spread
from ..pipeline import Pipeline

SCALE = 4


def photos(val: Path | None, train: Path | None, side: int, per_set: int) -> dict[str, list]:
    """{set: [(name, HR crop, LR)]}, at most ``per_set`` photos per set, evenly spread."""
    from ldmind_ref.benchmark import make_lr
    from ldmind_ref.ladder import heldout_sets

    out = {}
    for name, items in heldout_sets(val, train, side).items():
        out[name] = [(n, *make_lr(hr, SCALE)) for n, hr in spread(items, per_set)]
    return out


def measure(pipe: Pipeline, sets: dict[str, list]) -> dict[str, float]:
    """Mean PSNR-Y over every photo of ``sets``: {"raw": dB, "defaults": dB}."""
    from ldmind_ref import metrics

    raw, defaults = [], []
    for items in sets.values():
        for i, (_, hr, lr) in enumerate(items):
            img, = pipe.upscale(lr, scale=SCALE, seed=i, backproject=0, output="array")
            raw.append(metrics.psnr_y(img, hr, SCALE))
            consistency.apply_inplace(img, lr, contract.DEFAULT_BACKPROJECT)
            defaults.append(metrics.psnr_y(img, hr, SCALE))
    return {"raw": float(np.mean(raw)), "defaults": float(np.mean(defaults))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.programs.precision_gate", description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="engines/small", help="an fp32 export")
    ap.add_argument("--val", type=Path, default=None, help="folder of held-out sets (Set5, Set14 subfolders)")
    ap.add_argument("--train", type=Path, default=None, help="training photos (every 20th is held out)")
    ap.add_argument("--per-set", type=int, default=6)
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench_out/precision_gate.json")
    ap.add_argument("--write", action="store_true", help=f"write ENGINES/{precision_gate.GATE_FILE} for auto")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="the weights ENGINES was exported from: also write the gate beside them "
                         "(NAME.precision_gate.json), which `python -m export --checkpoint` carries into its exports")
    ap.add_argument("--int8", type=Path, default=None,
                    help="an int8 export of the same weights (python -m export --int8): measure its graphs too")
    ap.add_argument("--int8-backend", default="openvino-bf16", choices=("cpu", "openvino", "openvino-bf16"),
                    help="what runs the int8 graphs (default openvino-bf16: the rest of each graph in bf16)")
    a = ap.parse_args(argv)
    if a.val is None and a.train is None:
        ap.error("give --val and/or --train (held-out photos)")
    bundle = load_bundle(a.engines)
    if bundle.precision != "fp32":
        ap.error(f"{a.engines} is {bundle.precision}: the gate compares against an fp32 export")
    int8 = None
    if a.int8 is not None:
        int8 = load_bundle(a.int8)
        if int8.precision != "int8" or graphs_of(int8) != graphs_of(bundle):
            ap.error(f"--int8 {a.int8}: not an int8 export of the same graphs as {a.engines}")
    sets = photos(a.val, a.train, a.side, a.per_set)
    n = sum(len(v) for v in sets.values())
    print(f"{bundle.name}: {n} photos ({', '.join(f'{k} {len(v)}' for k, v in sets.items())}), {a.side} px crops, "
          f"{SCALE}x; CPU {cpuinfo.summary()}" + ("" if cpuinfo.native_bf16() else " - no native bf16: emulated"),
          flush=True)
    t0 = time.time()
    graphs = graphs_of(bundle)
    fp32 = _engine.create_engines(bundle, "cpu", a.threads)
    reduced = {"bf16": _engine.create_engines(bundle, "openvino-bf16", a.threads)}
    if int8 is not None:
        reduced["int8"] = _engine.create_engines(int8, a.int8_backend, a.threads)

    def run(variant: str, precision: str | None = None, graphs_reduced: tuple[str, ...] = ()) -> dict[str, float]:
        engines = {g: reduced[precision][g] if g in graphs_reduced else fp32[g] for g in graphs}
        r = measure(Pipeline(bundle, engines, _engine.backend_name(engines), requested="gate"), sets)
        print(f"  {variant:<18} raw {r['raw']:.3f} dB, defaults {r['defaults']:.3f} dB "
              f"({time.time() - t0:.0f} s)", flush=True)
        return r

    psnr = {"fp32": run("fp32")}

    def losses(r: dict) -> dict:
        lost = {k: psnr["fp32"][k] - r[k] for k in precision_gate.MAX_LOSS_DB}
        return {**{f"{k}_loss_db": round(v, 4) for k, v in lost.items()}, "pass": precision_gate.passes(lost)}

    precisions = {}
    for p in reduced:
        per_graph = {}
        for g in graphs:
            psnr[f"{p} {g}"] = run(f"{p} {g}", p, (g,))
            per_graph[g] = losses(psnr[f"{p} {g}"])
        passing = [g for g in graphs if per_graph[g]["pass"]]
        together = {"pass": False, "graphs": []}
        if passing:
            psnr[f"{p} " + "+".join(passing)] = r = run(f"{p} together", p, tuple(passing))
            together = {**losses(r), "graphs": passing}
        precisions[p] = {"per_graph": per_graph, "together": together}
    if int8 is not None:
        precisions["int8"] |= {"engines": str(a.int8), "backend": a.int8_backend,
                               "graphs_sha256": precision_gate.graph_digests(int8)}
    res = {"date": date.today().isoformat(), "cpu": cpuinfo.model_name(), "cpu_flags": cpuinfo.summary(),
           "native_bf16": cpuinfo.native_bf16(), "loadavg": list(os.getloadavg()),
           "command": "python -m runtime.programs.precision_gate " + " ".join(argv if argv is not None else sys.argv[1:]),
           "engines": str(a.engines), "model": bundle.name, "graphs_sha256": precision_gate.graph_digests(bundle),
           "photos": {k: [x[0] for x in v] for k, v in sets.items()}, "side": a.side, "scale": SCALE,
           "steps": contract.DEFAULT_STEPS, "sampler": contract.DEFAULT_SAMPLER, "fidelity": contract.DEFAULT_FIDELITY,
           "thresholds": precision_gate.MAX_LOSS_DB,
           "psnr_y": psnr, "precisions": precisions,
           "seconds": round(time.time() - t0, 1)}
    for p, entry in precisions.items():
        print(f"\n{p} against fp32 (PSNR-Y lost, dB; pass: defaults <= {precision_gate.MAX_LOSS_DB['defaults']}, "
              f"raw <= {precision_gate.MAX_LOSS_DB['raw']})")
        for g, m in [*entry["per_graph"].items(), ("together", entry["together"])]:
            if "raw_loss_db" in m:
                print(f"  {g:<10} defaults {m['defaults_loss_db']:+.3f}  raw {m['raw_loss_db']:+.3f}  "
                      f"{'pass' if m['pass'] else 'FAIL'}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    if a.write or a.checkpoint:
        if not res["native_bf16"]:
            print("not written: bf16 on this CPU is emulated, so the gate would judge another arithmetic",
                  file=sys.stderr)
            return 2
        targets = [precision_gate.path(bundle)] if a.write else []
        if a.checkpoint:
            from export.gate import sidecar
            from export.manifest import sha256_file
            res["checkpoint_sha256"] = sha256_file(a.checkpoint)
            targets.append(sidecar(a.checkpoint))
        for target in targets:
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(json.dumps(res, indent=1) + "\n")
            tmp.replace(target)
            print(f"written: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

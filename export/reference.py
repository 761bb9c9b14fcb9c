"""Saved reference outputs for comparing a graph with the polygraphy CLI.

    python -m export.reference --preset tiny --random-init --graph decoder --out ref/
    polygraphy run engines/tiny/decoder.onnx --onnxrt \\
        --load-inputs ref/decoder.inputs.json --load-outputs ref/decoder.reference.json \\
        --atol features:<printed> --rtol 0

The inputs are a polygraphy input file (a list with one feed dict), the outputs a
polygraphy ``RunResults`` file whose runner is the PyTorch fp32 reference.  The graph,
an ONNX file or (with ``--trt``) an engine, must come from the same weights: the same
checkpoint, or the same preset and ``--seed``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import feeds, graphs
from .specs import GRAPH_NAMES, GraphSpec

RUNNER = "ldmind_ref-fp32"
# polygraphy compares elementwise |out - ref| <= atol (+ rtol |ref|); an atol of this
# fraction of max |ref| is the relative criterion of the tests
RELATIVE = {"fp32": 1e-4, "fp16": 1e-2}


def save_reference(model, name: str, spec: GraphSpec, feed: dict[str, np.ndarray],
                   out_dir: str | Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Run graph ``name`` of the fp32 reference on ``feed``; write
    ``NAME.inputs.json`` and ``NAME.reference.json`` in polygraphy's formats."""
    from polygraphy.logger import G_LOGGER

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = graphs.run_reference(graphs.model_for(model, "fp32"), name, spec, feed)
    inputs_path, outputs_path = out_dir / f"{name}.inputs.json", out_dir / f"{name}.reference.json"
    with G_LOGGER.verbosity(G_LOGGER.ERROR):  # polygraphy announces every file it saves
        from polygraphy.comparator import RunResults
        from polygraphy.json import save_json

        save_json([feed], str(inputs_path), description="reference inputs")
        results = RunResults()
        results.add([outputs], runner_name=RUNNER)
        results.save(str(outputs_path))
    return inputs_path, outputs_path, outputs


def polygraphy_atol(outputs: dict[str, np.ndarray], precision: str) -> list[str]:
    """``--atol`` values, one per output (``name:value``): RELATIVE x max |reference|."""
    return [f"{k}:{RELATIVE[precision] * float(np.abs(v).max()):.4g}" for k, v in outputs.items()]


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 16x24, got {text!r}") from None
    return h, w


def main(argv: list[str] | None = None) -> int:
    from .cli import Parser, load

    p = Parser(prog="python -m export.reference", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path)
    src.add_argument("--preset")
    p.add_argument("--random-init", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--graph", required=True, choices=GRAPH_NAMES)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--latent", type=_size, default=(16, 16), help="latent size HxW (default 16x16)")
    p.add_argument("--scale", type=float, default=4.0, help="liif: output scale of the queries")
    p.add_argument("--precision", choices=graphs.PRECISIONS, default="fp32",
                   help="precision of the graph to compare (sets the printed --atol)")
    a = p.parse_args(argv)
    if a.preset is not None and not a.random_init:
        p.error("--preset has no trained weights: add --random-init, or use --checkpoint")
    try:
        model, _ = load(a)
        from .build import specs_for
        spec = specs_for(model).get(a.graph)
        if spec is None:
            raise ValueError(f"model {model.cfg.name} has no {a.graph} graph")
        dims = feeds.dims_for(model.cfg, a.batch, a.latent)
    except (ValueError, OSError) as e:
        print(f"python -m export.reference: error: {e}", file=sys.stderr)
        return 2
    coord, cell = feeds.query_points(a.latent[0], a.latent[1], a.scale, a.batch, limit=65536)
    feed = feeds.random_feed(spec, model.cfg, dims, seed=a.seed, coord=coord, cell=cell)
    inputs, outputs, values = save_reference(model, a.graph, spec, feed, a.out)
    print(f"polygraphy run {a.graph}.onnx --onnxrt --load-inputs {inputs} --load-outputs {outputs} "
          f"--atol {' '.join(polygraphy_atol(values, a.precision))} --rtol 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())

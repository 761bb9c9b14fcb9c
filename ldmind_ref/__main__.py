"""Command line of the reference: ``info`` and ``upscale``.

    python -m ldmind_ref info --preset div2k-sr --json
    python -m ldmind_ref upscale IN (--checkpoint PATH | --preset NAME --random-init) --scale S -o OUT
"""
from __future__ import annotations

import argparse
import json
import sys

from .core import contract


def _model(args):
    from .checkpoint import load_model
    from .config import preset
    from .model import random_model

    if args.checkpoint:
        return load_model(args.checkpoint, args.device)
    if not args.random_init:
        raise SystemExit("give --checkpoint PATH, or --preset NAME --random-init")
    print(f"notice: {args.preset} with random weights (untrained): the output is noise-like", file=sys.stderr)
    return random_model(preset(args.preset), args.seed).to(args.device)


def cmd_info(args) -> int:
    from .checkpoint import read_config
    from .config import preset
    from .model import LDMind, count_params

    import torch

    cfg = read_config(args.checkpoint) if args.checkpoint else preset(args.preset)
    with torch.device("meta"):  # count without allocating (div2k-sr is 166 M parameters)
        params = count_params(LDMind(cfg))
    if args.json:
        print(json.dumps({"preset": cfg.name, "params": params, "config": cfg.to_dict()}))
    else:
        print(f"{cfg.name}: " + ", ".join(f"{k} {v / 1e6:.3f} M" for k, v in params.items()))
    return 0


def cmd_upscale(args) -> int:
    from PIL import Image

    from . import sampler

    model = _model(args)
    lr = Image.open(args.input)
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    outs = sampler.upscale(model, lr, scale=args.scale, size=size, steps=args.steps, eta=args.eta,
                           seed=args.seed, num_samples=args.num_samples, schedule=args.schedule,
                           sampler=args.sampler, fidelity=args.fidelity)
    for i, img in enumerate(outs):
        path = args.output if len(outs) == 1 else args.output.replace(".png", f"_{i}.png")
        Image.fromarray(img).save(path)
        print(path)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ldmind_ref")
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("info", help="parameter counts per component")
    src = i.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset")
    src.add_argument("--checkpoint")
    i.add_argument("--json", action="store_true")
    u = sub.add_parser("upscale", help="super-resolve an image with the reference sampler")
    u.add_argument("input")
    u.add_argument("--checkpoint")
    u.add_argument("--preset", default="tiny")
    u.add_argument("--random-init", action="store_true")
    g = u.add_mutually_exclusive_group(required=True)
    g.add_argument("--scale", type=float)
    g.add_argument("--size", help="WxH")
    u.add_argument("--steps", type=int, default=contract.DEFAULT_STEPS)
    u.add_argument("--eta", type=float, default=contract.DEFAULT_ETA)
    u.add_argument("--schedule", choices=contract.DDIM_SCHEDULES, default=contract.DEFAULT_DDIM_SCHEDULE,
                   help="DDIM steps executed: full (all N) or paper (the paper's code: N - 1)")
    u.add_argument("--sampler", choices=contract.SAMPLERS, default=contract.DEFAULT_SAMPLER,
                   help="ddim, or dpm++2m: DPM-Solver++(2M), the same image in fewer steps (eta unused)")
    u.add_argument("--fidelity", type=float, default=contract.DEFAULT_FIDELITY,
                   help="0..1: detail against faithfulness (0: the paper's sampler; higher: faithful, fewer steps)")
    u.add_argument("--seed", type=int, default=contract.DEFAULT_SEED)
    u.add_argument("-n", "--num-samples", type=int, default=contract.DEFAULT_NUM_SAMPLES)
    u.add_argument("--device", default="cpu")
    u.add_argument("-o", "--output", required=True)
    args = p.parse_args(argv)
    return {"info": cmd_info, "upscale": cmd_upscale}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

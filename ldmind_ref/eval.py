"""The SR benchmark on reference checkpoints (protocol: ``benchmark.py``).

    python -m ldmind_ref.eval --model final=ldmind_ref/weights/small.safetensors \
        --model pre-align=runs/small/ldm/model.safetensors --data ../shared/data/val --out docs/results
"""
from __future__ import annotations

import sys

import torch

from . import sampler
from .benchmark import parser, run
from .checkpoint import load_model
from .core import contract


class ReferenceSampler:
    """The benchmark's sampler interface over a checkpoint and the reference sampler."""

    def __init__(self, path: str):
        self.model = load_model(path)

    @torch.no_grad()
    def upscale_latents(self, lr, steps, eta, seed, num_samples, schedule=contract.DEFAULT_DDIM_SCHEDULE):
        return sampler.upscale_latents(self.model, lr, steps, eta, seed, num_samples=num_samples, schedule=schedule)

    def render(self, z, sizes):
        return sampler.render(self.model, z, sizes)


def main(argv=None) -> int:
    return run(parser("python -m ldmind_ref.eval", "CHECKPOINT").parse_args(argv), ReferenceSampler)


if __name__ == "__main__":
    sys.exit(main())

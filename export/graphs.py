"""The exported computations as ``nn.Module`` wrappers around the reference model, and
example inputs to trace them with.

Every wrapper calls the reference (``ldmind_ref``) itself, so the graph computes exactly
what the reference computes; the wrappers only add the precision policy at the graph
boundary:

- Graph inputs and outputs are float32 (``timestep`` int64) in both precisions, so callers
  never change with ``--fp16``.
- fp16: the wrapped model is ``model.half()``; the wrapper casts the float inputs the
  network consumes to half and its outputs back to float32.  What stays fp32 inside:
  GroupNorm statistics and the attention softmax (``ldmind_ref.layers`` computes them in
  fp32 whatever the weights' dtype), the timestep embedding, the DDIM update and the latent
  it carries between steps (``unet_step`` below), and all LIIF coordinate math and
  ensemble weights (``ldmind_ref.liif.query`` runs them in the dtype of ``coord``, which
  stays fp32; only the gathered features and the MLP are fp16).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ldmind_ref import liif
from ldmind_ref.core import diffusion
from ldmind_ref.model import LDMind

from .specs import GraphSpec

PRECISIONS = ("fp32", "fp16")


def model_for(model: LDMind, precision: str) -> LDMind:
    """``model`` in the graph's precision, on the CPU, in eval mode: the model itself when it
    already is (fp32 on the CPU; a div2k-sr copy is another 0.6 GB), else a converted copy
    (the caller's model is never changed)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    want = torch.float16 if precision == "fp16" else torch.float32
    tensors = [*model.parameters(), *model.buffers()]
    if not model.training and all(t.dtype == want and t.device.type == "cpu" for t in tensors):
        return model
    return copy.deepcopy(model).cpu().to(want).eval()


class _Graph(nn.Module):
    def __init__(self, model: LDMind):
        super().__init__()
        self.model = model
        self.half = next(model.parameters()).dtype == torch.float16

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        """Cast a float32 graph input to the network's dtype (no node at all in fp32)."""
        return x.half() if self.half else x


class EncoderGraph(_Graph):
    """``encoder``: lr [B,3,H,W] -> cond [B,c,h,w] = LDMind.encode_lr (nearest resize by
    cond_scale, E, times scale_factor)."""

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.model.encode_lr(self.inside(lr)).float()


class UNetStepGraph(_Graph):
    """``unet_step`` of an SR model: one DDIM step = LDMind.unet_step.

    fp16: only eps_theta runs in half; the update runs in fp32 on the fp32 z_t, because the
    latent is carried across up to T steps (fp16 would round it at every step) and
    pred_z0 divides by sqrt(alpha_bar_t), which amplifies fp16 rounding of eps."""

    def forward(self, z_t, cond, timestep, alpha_bar_t, alpha_bar_prev, sigma_t, noise):
        return self.step(z_t, cond, timestep, alpha_bar_t, alpha_bar_prev, sigma_t, noise)

    def step(self, z_t, cond, timestep, alpha_bar_t, alpha_bar_prev, sigma_t, noise):
        if not self.half:
            return self.model.unet_step(z_t, cond, timestep, alpha_bar_t, alpha_bar_prev, sigma_t, noise)
        eps = self.model.eps(z_t.half(), None if cond is None else cond.half(), timestep).float()
        return diffusion.ddim_step(z_t, eps, alpha_bar_t, alpha_bar_prev, sigma_t, noise)


class UNetStepUncondGraph(UNetStepGraph):
    """``unet_step`` of a generation model: the same step without ``cond``."""

    def forward(self, z_t, timestep, alpha_bar_t, alpha_bar_prev, sigma_t, noise):  # type: ignore[override]
        return self.step(z_t, None, timestep, alpha_bar_t, alpha_bar_prev, sigma_t, noise)


class DecoderGraph(_Graph):
    """``decoder``: z [B,c,h,w] -> features [B,C,h,w] = LDMind.decode (1/scale_factor, D_phi)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.inside(z)).float()


class LIIFGraph(_Graph):
    """``liif``: features [B,C,h,w], coord/cell [B,Q,2] -> rgb [B,Q,3] = ldmind_ref.liif.query
    (local ensemble inside).  coord and cell are never cast: they set the dtype of the
    coordinate math and of the ensemble weights (fp32)."""

    def forward(self, features: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        return liif.query(self.model.liif, self.inside(features), coord, cell)


def wrap(model: LDMind, name: str) -> _Graph:
    """The wrapper of graph ``name`` around a model already in the graph's precision."""
    if name == "unet_step":
        return UNetStepGraph(model) if model.cfg.unet.conditional else UNetStepUncondGraph(model)
    classes = {"encoder": EncoderGraph, "decoder": DecoderGraph, "liif": LIIFGraph}
    if name not in classes:
        raise KeyError(f"unknown graph {name!r}")
    return classes[name](model)


def run_reference(model: LDMind, name: str, spec: GraphSpec,
                  feed: dict[str, "object"]) -> dict[str, "object"]:
    """Run graph ``name`` of ``model`` (in its own precision) on numpy inputs named as in
    ``spec``; returns numpy outputs named as in ``spec``."""
    module = wrap(model, name)
    args = [torch.from_numpy(feed[t.name]) for t in spec.inputs]
    with torch.no_grad():
        out = module(*args)
    out = out if isinstance(out, tuple) else (out,)
    return {t.name: o.detach().float().numpy() for t, o in zip(spec.outputs, out)}

"""Function-preserving growth of a stage-1 model (``train autoencoder --grow CKPT``).

A trained auto-encoder that has reached its plateau gets more capacity without losing what
it learned: the grown model computes *the same function* as the checkpoint at step 0
(Net2Net, Chen et al. 2016), and training then only has to improve on it.  A partial warm
start (``--warm``) instead leaves every changed tensor random, and the first sitting of
``small2`` spent most of its time recovering the ceiling it started from (docs/TRAINING.md).

What may grow, and how the start keeps the function:
- more ResBlocks per level in E and D_phi (``num_res_blocks``): each new block has
  ``cin == cout`` (an identity skip), and its last convolution starts at zero, so the block
  is the identity; the old blocks keep their weights in order.  Where exactly the new
  blocks sit does not change the function (identities commute), so the alignment is the
  simple greedy one: an old block is taken by the first new block of its shape.
- a wider or deeper LIIF MLP (``LIIFConfig.hidden``, each width >= the old one): the old
  weights fill the top-left corner of each layer; a new hidden unit gets the usual random
  input weights but a zero weight in the next layer, so it adds nothing at step 0 and still
  receives a gradient through that zero weight.  Extra layers are inserted before the
  output layer as the identity on the old units: their inputs are ReLU outputs (>= 0), and
  ReLU(x) = x there.
Everything else (the latent, widths of E and D_phi, the U-Net) must be the same.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import ResBlock
from .model import LDMind


def _tensors(m: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in m.state_dict().values()]


def _grow_sequence(new: nn.Sequential, old: nn.Sequential, where: str) -> None:
    """Copy ``old``'s blocks into the first blocks of ``new`` with the same tensor shapes,
    in order; every other block of ``new`` becomes the identity (a ResBlock only)."""
    olds = list(old)
    k = 0
    for block in new:
        if k < len(olds) and type(block) is type(olds[k]) and _tensors(block) == _tensors(olds[k]):
            block.load_state_dict(olds[k].state_dict())
            k += 1
        elif isinstance(block, ResBlock) and isinstance(block.skip, nn.Identity):
            nn.init.zeros_(block.conv2.weight)
            nn.init.zeros_(block.conv2.bias)
        else:
            raise ValueError(f"cannot grow {where}: block {type(block).__name__} matches no old block")
    if k != len(olds):
        raise ValueError(f"cannot grow {where}: {len(olds) - k} old blocks have no place in the new model")


def _grow_mlp(new: nn.Sequential, old: nn.Sequential) -> None:
    """The LIIF MLP: old Linear layers into the corners of the new ones, extra layers as the
    identity before the output layer, new units' outgoing weights zero (under ``grow``'s no_grad)."""
    new_lin = [m for m in new if isinstance(m, nn.Linear)]
    old_lin = [m for m in old if isinstance(m, nn.Linear)]
    if len(new_lin) < len(old_lin):
        raise ValueError("cannot grow the LIIF MLP: the new one has fewer layers")
    if new_lin[0].in_features != old_lin[0].in_features or new_lin[-1].out_features != old_lin[-1].out_features:
        raise ValueError("cannot grow the LIIF MLP: its input or output width differs")
    extra = len(new_lin) - len(old_lin)
    # the source of each new layer: old hidden layers in order, then identities, then the output
    plan = old_lin[:-1] + [None] * extra + old_lin[-1:]
    width_in = old_lin[0].in_features   # live input units of the current layer
    for layer, src in zip(new_lin, plan):
        if src is None:                  # identity on the live units
            if layer.out_features < width_in:
                raise ValueError("cannot grow the LIIF MLP: an inserted layer is narrower than its input")
            layer.weight[:width_in, :width_in] = torch.eye(width_in)
            layer.bias[:width_in] = 0.0
            out_live = width_in
        else:
            if layer.out_features < src.out_features or layer.in_features < src.in_features:
                raise ValueError("cannot grow the LIIF MLP: a layer is narrower than the old one")
            layer.weight[:src.out_features, :src.in_features] = src.weight
            layer.bias[:src.out_features] = src.bias
            out_live = src.out_features
        layer.weight[:, width_in:] = 0.0   # new units of the layer below add nothing yet
        width_in = out_live


@torch.no_grad()
def grow(model: LDMind, source: LDMind) -> None:
    """Make ``model`` (a larger stage-1 architecture) compute what ``source`` computes:
    E, D_phi and f_theta as described above; the U-Net is copied when its shapes match."""
    a, b = model.cfg.autoencoder, source.cfg.autoencoder
    same = ("in_channels", "ch", "ch_mult", "z_channels", "kl", "num_groups", "attn_resolutions")
    diff = [f for f in same if getattr(a, f) != getattr(b, f)] + \
        (["feature_channels"] if a.feature_channels != b.feature_channels else [])
    if diff:
        raise ValueError(f"cannot grow: {', '.join(diff)} differ (only num_res_blocks and the LIIF MLP may grow)")
    if a.num_res_blocks < b.num_res_blocks:
        raise ValueError("cannot grow: the new model has fewer ResBlocks per level")
    enc, src_enc = model.encoder, source.encoder
    for name in ("conv_in", "mid", "norm_out", "conv_out", "quant_conv"):
        getattr(enc, name).load_state_dict(getattr(src_enc, name).state_dict())
    _grow_sequence(enc.down, src_enc.down, "E")
    dec, src_dec = model.decoder, source.decoder
    for name in ("post_quant_conv", "conv_in", "mid"):
        getattr(dec, name).load_state_dict(getattr(src_dec, name).state_dict())
    _grow_sequence(dec.up, src_dec.up, "D_phi")
    _grow_mlp(model.liif.layers, source.liif.layers)
    model.scale_factor.copy_(source.scale_factor)
    if _tensors(model.unet) == _tensors(source.unet):
        model.unet.load_state_dict(source.unet.state_dict())

"""LDMind: the full model (E_phi, D_phi, f_theta, eps_theta) and the four computations that
are exported as graphs.  Tensor names here are the graph tensor names.

    cond     = encode_lr(lr)                         # "encoder":   lr [B,3,h,w] in [-1,1] -> cond [B,c,h',w']
    z_prev, pred_z0 = unet_step(z_t, cond, timestep, alpha_bar_t, alpha_bar_prev, sigma_t, noise)
    features = decode(z)                             # "decoder":   z [B,c,h',w'] -> features [B,C,h',w']
    rgb      = liif.query(head, features, coord, cell)   # "liif"

Latents ``z`` live in diffusion space: z = scale_factor * E(x) (``scale_by_std``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import liif
from .autoencoder import Decoder, Encoder, split_posterior
from .config import ModelConfig
from .core import diffusion
from .unet import UNet


class LDMind(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ae = cfg.autoencoder
        self.encoder = Encoder(ae)
        self.decoder = Decoder(ae)
        self.liif = liif.LIIFHead(ae.feature_channels, cfg.liif.hidden)
        self.unet = UNet(cfg.unet, cfg.unet_in_channels, ae.z_channels)
        # 1 / std of the first stage-2 training batch of latents; 1.0 until stage 2 sets it
        self.register_buffer("scale_factor", torch.ones(()))

    # -- auto-encoder ----------------------------------------------------------------------
    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        """E: image [B,3,H,W] in [-1,1] -> latent before scaling (the posterior mean if KL)."""
        moments = self.encoder(x)
        return split_posterior(moments)[0] if self.cfg.autoencoder.kl else moments

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> diffusion-space latent z = scale_factor * E(x)."""
        return self.encode_raw(x) * self.scale_factor.to(x.dtype)

    def encode_lr(self, lr: torch.Tensor) -> torch.Tensor:
        """The SR conditioning: nearest-resize the LR image by ``cond_scale`` (to the training
        HR size, as the official code), encode, scale.  [B,3,h,w] -> [B,c,h*s/f,w*s/f]."""
        s = float(self.cfg.cond_scale)
        return self.encode(F.interpolate(lr, scale_factor=(s, s), mode="nearest"))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """D_phi on a diffusion-space latent: [B,c,h,w] -> features [B,C,h,w]."""
        return self.decoder(z / self.scale_factor.to(z.dtype))

    def render(self, z: torch.Tensor, H: int, W: int, chunk: int | None = None) -> torch.Tensor:
        """ND(z) at H x W: [B,c,h,w] -> image [B,3,H,W] in (roughly) [-1,1]."""
        return liif.render(self.liif, self.decode(z), H, W, chunk or self.cfg.liif.query_chunk)

    # -- diffusion -------------------------------------------------------------------------
    def eps(self, z_t: torch.Tensor, cond: torch.Tensor | None, timestep: torch.Tensor) -> torch.Tensor:
        x = torch.cat([z_t, cond], dim=1) if self.cfg.unet.conditional else z_t
        return self.unet(x, timestep)

    def unet_step(self, z_t, cond, timestep, alpha_bar_t, alpha_bar_prev, sigma_t, noise):
        """One DDIM step with its coefficients as tensors (one graph serves every step)."""
        eps = self.eps(z_t, cond, timestep)
        return diffusion.ddim_step(z_t, eps, alpha_bar_t, alpha_bar_prev, sigma_t, noise)


def count_params(model: LDMind) -> dict[str, int]:
    """Parameters per paper component (encoder and decoder include their 1x1 convs)."""
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"encoder": n(model.encoder), "decoder": n(model.decoder), "liif": n(model.liif),
            "unet": n(model.unet)}


def random_model(cfg: ModelConfig, seed: int = 0) -> LDMind:
    """An untrained model whose every tensor is random, for tests and ``--random-init``.

    The U-Net zero-initialises its output convolutions (so that a fresh model predicts
    eps = 0); here those get small random values too, and the scale factor is set to 0.75,
    so that every exported graph computes something non-trivial."""
    torch.manual_seed(seed)
    model = LDMind(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        model.scale_factor.fill_(0.75)
    return model.eval()

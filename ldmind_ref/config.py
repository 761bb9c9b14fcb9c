"""Model configurations: one frozen dataclass per component, presets by name.

Every number of the paper presets comes from ``shared/design/PAPER.md`` (the official
configurations of Kim & Kim, CVPR 2024).  ``tiny`` exists for tests (seconds on a CPU);
``small`` is the model we train on CPU and ship; ``medium`` is sized for ten minutes of one
H200 (``python -m ldmind_ref.train all``; sizing in docs/TRAINING.md).  ``NAME-gen`` is the
generation variant of ``NAME`` (``generation_variant``): the same auto-encoder and U-Net
widths, without the conditioning channels.

Configs round-trip through plain dicts (``to_dict`` / ``from_dict``); loading rejects
unknown keys at every level so that a typo never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .core.images import latent_per_lr_pixel


# Query blocks of the auto-encoder's attention in exported graphs.  Its middle blocks attend
# over every latent cell (T = h * w tokens): in one block ONNX Runtime would hold a T x T
# score matrix (27 GiB for a 250 x 240 LR image); in 32 blocks it holds T x T / 32 at a time.
# The U-Net attends at downsampled resolutions and keeps one block (fewer graph nodes).
AE_GRAPH_ATTENTION_BLOCKS = 32


@dataclass(frozen=True)
class AutoencoderConfig:
    in_channels: int = 3                   # image channels (RGB)
    ch: int = 128                          # base width of E and D_phi
    ch_mult: tuple[int, ...] = (1, 2, 4)   # width multiplier per level; len-1 = number of 2x downsamplings
    num_res_blocks: int = 2                # ResBlocks per encoder level (D_phi uses one more, as the official code)
    resolution: int = 192                  # nominal input size; only used to place attn_resolutions
    attn_resolutions: tuple[int, ...] = () # nominal resolutions whose level gets self-attention (the middle always has it)
    z_channels: int = 3                    # latent channels c of z
    kl: bool = False                       # KL posterior: E predicts mean and log-variance (ffhq-sr)
    num_groups: int = 32                   # GroupNorm groups
    feature_ch: int = 0                    # width of D_phi's last level = the LIIF features; 0: ch * ch_mult[0] (official)

    @property
    def downsample(self) -> int:
        """Spatial factor between image and latent (h = H / downsample)."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def feature_channels(self) -> int:
        """Channels of the D_phi feature map fed to the LIIF head."""
        return self.feature_ch or self.ch * self.ch_mult[0]


@dataclass(frozen=True)
class LIIFConfig:
    # f_theta is always used with cell decoding and the 4-way local ensemble, without
    # feature unfolding (the paper's setting), so those are not switches here.
    hidden: tuple[int, ...] = (256, 256, 256, 256)  # hidden widths of the ReLU MLP
    query_chunk: int = 65536                       # queries per MLP call when rendering (bounded memory)


@dataclass(frozen=True)
class UNetConfig:
    model_channels: int = 160                          # base width
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)       # width multiplier per level
    num_res_blocks: int = 2                            # ResBlocks per level (decoder side uses one more)
    attention_resolutions: tuple[int, ...] = (8,)      # downsample factors with self-attention (plus the middle)
    num_head_channels: int = 32                        # channels per attention head
    num_groups: int = 32                               # GroupNorm groups
    conditional: bool = True                           # SR: concatenate the LR latent on channels; False: generation


@dataclass(frozen=True)
class DiffusionConfig:
    timesteps: int = 1000          # T
    schedule: str = "linear"       # "linear" (official: betas = linspace(sqrt(start), sqrt(end))^2), "linear_beta", "cosine"
    linear_start: float = 0.0015   # beta_1 of the linear schedules
    linear_end: float = 0.0155     # beta_T of the linear schedules
    cosine_s: float = 8e-3         # offset s of the cosine schedule


@dataclass(frozen=True)
class TrainConfig:
    crop: int = 192                # HR crop size (stage 1 input, stage 2/3 ground truth)
    gt_min: int = 48               # stage 1: smallest ground-truth size the crop is resized to
    gt_max: int = 192              # stage 1: largest ground-truth size
    gt_native: float = 0.0         # stage 1: fraction of targets at the crop's own size (the 4x ceiling), the rest uniform
    colour_aug: bool = False       # stage 1: random channel order and inversion of each crop (saturated colours photos rarely have)
    batch: int = 8                 # images per step (per process under DDP)
    sample_q: int = 2304           # query pixels per image for the L1 / alignment image loss
    ae_lr: float = 1e-4            # stage 1, Adam
    ldm_lr: float = 1e-4           # stage 2, AdamW
    align_lr: float = 1e-6         # stage 3, Adam on the U-Net only
    ema_decay: float = 0.9999      # stage 2/3 EMA of the U-Net
    kl_weight: float = 1e-6        # stage 1 KL term (only when the auto-encoder is KL)
    lambda_latent: float = 1.0     # stage 3 lambda_1
    lambda_image: float = 1.0      # stage 3 lambda_2
    grad_clip: float = 0.0         # global grad-norm clip; 0 disables (the official training does not clip)
    ckpt_every: int = 500          # steps between checkpoints
    val_every: int = 500           # steps between validation losses
    val_images: int = 8            # fixed validation crops


@dataclass(frozen=True)
class ModelConfig:
    name: str = "custom"                                          # preset name, informative only
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    liif: LIIFConfig = field(default_factory=LIIFConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cond_scale: int = 4            # SR: LR is nearest-resized by this factor (the training HR size) before E
    # training builds LR as HR / cond_scale by PIL bicubic; unused by generation models

    def __post_init__(self) -> None:
        ae, un = self.autoencoder, self.unet
        if ae.ch % ae.num_groups or un.model_channels % un.num_groups:
            raise ValueError("channel counts must be divisible by num_groups")
        if un.conditional and self.cond_scale % ae.downsample:
            # the LR latent has LR size * cond_scale / downsample cells: keep it an integer
            raise ValueError("cond_scale must be a multiple of the auto-encoder downsampling")

    # -- derived sizes -------------------------------------------------------------------
    @property
    def unet_in_channels(self) -> int:
        z = self.autoencoder.z_channels
        return 2 * z if self.unet.conditional else z

    @property
    def latent_per_lr_pixel(self) -> int:
        """Latent cells per LR pixel along each side (cond_scale / downsample; 1 for generation)."""
        return latent_per_lr_pixel(self.cond_scale, self.autoencoder.downsample) if self.unet.conditional else 1

    @property
    def tile_align(self) -> int:
        """Every latent tile start and size is a multiple of this: the U-Net's size multiple
        (2 ** its downsamplings) and whole LR pixels."""
        return math.lcm(2 ** (len(self.unet.channel_mult) - 1), self.latent_per_lr_pixel)

    @property
    def train_latent(self) -> int:
        """Side of the latent the model was trained on (crop / downsample)."""
        return self.train.crop // self.autoencoder.downsample

    def latent_size_for_lr(self, h: int, w: int) -> tuple[int, int]:
        """Latent (h, w) of the conditioning for an LR image of h x w pixels."""
        f = self.autoencoder.downsample
        return h * self.cond_scale // f, w * self.cond_scale // f

    # -- dict round trip -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return _from_dict(cls, d, "config")

    @classmethod
    def from_json(cls, s: str) -> "ModelConfig":
        return cls.from_dict(json.loads(s))


def _from_dict(cls, d: dict[str, Any], where: str):
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for k, v in d.items():
        sub = _NESTED.get((cls, k))
        if sub is not None:
            kwargs[k] = _from_dict(sub, v, f"{where}.{k}")
        elif isinstance(v, list):
            kwargs[k] = tuple(v)
        else:
            kwargs[k] = v
    return cls(**kwargs)


_NESTED = {
    (ModelConfig, "autoencoder"): AutoencoderConfig,
    (ModelConfig, "liif"): LIIFConfig,
    (ModelConfig, "unet"): UNetConfig,
    (ModelConfig, "diffusion"): DiffusionConfig,
    (ModelConfig, "train"): TrainConfig,
}


# -- presets ---------------------------------------------------------------------------------
def _div2k_sr() -> ModelConfig:
    return ModelConfig(name="div2k-sr")


def _ffhq_sr() -> ModelConfig:
    return ModelConfig(
        name="ffhq-sr",
        # "attention at 16": with the levels at 128/64/32 for a 128 crop this never fires,
        # exactly as in the official configuration; kept for faithfulness.
        autoencoder=AutoencoderConfig(resolution=128, attn_resolutions=(16,), z_channels=32, kl=True),
        unet=UNetConfig(model_channels=256, channel_mult=(1, 2, 4, 4), attention_resolutions=(4, 2, 1)),
        diffusion=DiffusionConfig(linear_start=1e-4, linear_end=0.015),
        train=TrainConfig(crop=128, gt_min=32, gt_max=128, sample_q=1024, ldm_lr=1e-6),
        cond_scale=8,
    )


def _ffhq_gen() -> ModelConfig:
    # The paper's generation column differs from DIV2K only where the table says so:
    # an unconditional U-Net on 3-channel 64x64 latents of 256 crops.
    return ModelConfig(
        name="ffhq-gen",
        autoencoder=AutoencoderConfig(resolution=256),
        unet=UNetConfig(conditional=False),
        train=TrainConfig(crop=256, gt_min=64, gt_max=256, batch=4, sample_q=4096),
        cond_scale=4,
    )


def _tiny() -> ModelConfig:
    return ModelConfig(
        name="tiny",
        autoencoder=AutoencoderConfig(ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, resolution=32,
                                      attn_resolutions=(8,), num_groups=4),
        liif=LIIFConfig(hidden=(32, 32), query_chunk=4096),
        unet=UNetConfig(model_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                        attention_resolutions=(2,), num_head_channels=8, num_groups=8),
        train=TrainConfig(crop=32, gt_min=8, gt_max=32, batch=2, sample_q=64, ae_lr=1e-3,
                          ldm_lr=1e-3, align_lr=1e-4, ema_decay=0.9, ckpt_every=2, val_every=2,
                          val_images=2),
    )


def generation_variant(cfg: ModelConfig) -> ModelConfig:
    """The paper's generation model on the auto-encoder of ``cfg``: the same config with an
    unconditional U-Net, named NAME-gen (``train all`` trains it after the SR stages)."""
    if not cfg.unet.conditional:
        return cfg
    return dataclasses.replace(cfg, name=f"{cfg.name}-gen", unet=dataclasses.replace(cfg.unet, conditional=False))


def _tiny_gen() -> ModelConfig:
    # ``tiny`` with an unconditional U-Net: tests and the demo of generation
    return generation_variant(_tiny())


def _small() -> ModelConfig:
    return ModelConfig(
        name="small",
        autoencoder=AutoencoderConfig(ch=32, ch_mult=(1, 2, 4), num_res_blocks=1, resolution=96,
                                      num_groups=16),
        liif=LIIFConfig(hidden=(128, 128, 128), query_chunk=65536),
        unet=UNetConfig(model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=1,
                        attention_resolutions=(4,), num_head_channels=32, num_groups=16),
        train=TrainConfig(crop=96, gt_min=24, gt_max=96, batch=8, sample_q=1024, ae_lr=2e-4,
                          ldm_lr=2e-4, align_lr=1e-5, ema_decay=0.999, grad_clip=1.0, ckpt_every=250,
                          val_every=250),
    )


def _medium() -> ModelConfig:
    # Sized for ten minutes of one H200 and <= 30 MB of fp16 weights for the SR model and its
    # generation variant together (docs/TRAINING.md, "Sizing medium"): small's U-Net, a deeper
    # auto-encoder (it bounds everything after it), a wider f_theta, 128 px crops, batch 32.
    return ModelConfig(
        name="medium",
        autoencoder=AutoencoderConfig(ch=32, ch_mult=(1, 2, 4), num_res_blocks=2, resolution=128,
                                      num_groups=16),
        liif=LIIFConfig(hidden=(192, 192, 192), query_chunk=65536),
        unet=UNetConfig(model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=1,
                        attention_resolutions=(4,), num_head_channels=32, num_groups=16),
        train=TrainConfig(crop=128, gt_min=32, gt_max=128, batch=32, sample_q=2304, ae_lr=4e-4,
                          ldm_lr=3e-4, align_lr=5e-5, ema_decay=0.999, grad_clip=1.0, ckpt_every=1000,
                          val_every=500, val_images=32),
    )


def _small2() -> ModelConfig:
    # The successor of ``small`` in training (docs/TRAINING.md, "Raising the ceiling"): the
    # same widths but D_phi's last level at 64 channels (the LIIF features were 32 for a
    # 4 x 4 x 3 pixel patch per latent cell), half the stage-1 targets at the native size (the
    # 4x ceiling), colour augmentation (saturated highlights), stage 1 in bf16 where the CPU has it.
    s = _small()
    return dataclasses.replace(
        s, name="small2", autoencoder=dataclasses.replace(s.autoencoder, feature_ch=64),
        train=dataclasses.replace(s.train, gt_native=0.5, colour_aug=True))


def _small3() -> ModelConfig:
    # ``small2`` grown at its plateau (docs/TRAINING.md, "Growing the plateaued model"): two ResBlocks per
    # level in E and D_phi instead of one, and the paper's LIIF MLP (4 x 256 against 3 x 128).
    # Trained from small2 by function-preserving growth (``train --grow``, ldmind_ref/grow.py).
    s = _small2()
    return dataclasses.replace(
        s, name="small3", autoencoder=dataclasses.replace(s.autoencoder, num_res_blocks=2),
        liif=dataclasses.replace(s.liif, hidden=(256, 256, 256, 256)))


def _small3_lite() -> ModelConfig:
    # ``small3`` with ``small``'s f_theta widths (3 x 128 against 4 x 256: a fifth of the
    # multiply-adds per query), fitted to small3's frozen E (``train liif``, then ``train
    # decoder``: docs/TRAINING.md).  f_theta runs four times per output pixel: at 4x it was a
    # quarter of small3's request (BENCHMARKS).
    s = _small3()
    return dataclasses.replace(s, name="small3-lite", liif=dataclasses.replace(s.liif, hidden=(128, 128, 128)))


PRESETS = {
    "div2k-sr": _div2k_sr,
    "ffhq-sr": _ffhq_sr,
    "ffhq-gen": _ffhq_gen,
    "tiny": _tiny,
    "tiny-gen": _tiny_gen,
    "small": _small,
    "small2": _small2,
    "small3": _small3,
    "small3-lite": _small3_lite,
    "medium": _medium,
    "medium-gen": lambda: generation_variant(_medium()),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None

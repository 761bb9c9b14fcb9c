"""Refuse work that cannot fit in memory *before* allocating it.

Two things grow with the request: the uint8 output (N x H x W x 3 bytes, the only
allocation that grows with the scale: rendering is tiled) and the attention layers, whose
score matrices grow with the square of the latent area (the LR image's size).  Both are
estimated from the manifest and compared with the memory the OS says is available.
"""
from __future__ import annotations

import math
import os

from ldmind_ref.config import AE_GRAPH_ATTENTION_BLOCKS

from .errors import InputError

GiB = 1024 ** 3
# what a process needs besides the estimate: ORT arenas, per-tile buffers, Python
HEADROOM = 512 * 1024 ** 2


def proc_bytes(path: str, key: str) -> int | None:
    """A "Key:  N kB" line of a Linux /proc file, in bytes; None where there is none."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_memory() -> int:
    """Bytes the OS can give us now (MemAvailable on Linux; physical memory elsewhere)."""
    override = os.environ.get("LDMIND_MEMORY_LIMIT")   # tests and containers
    if override:
        return memory_limit_env(override)
    avail = proc_bytes("/proc/meminfo", "MemAvailable")
    if avail is not None:
        return avail
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62   # unknown: do not refuse


def memory_limit_env(text: str) -> int:
    """LDMIND_MEMORY_LIMIT: a number of bytes (``8e9`` works), or ``InputError``."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v < 0:
        raise InputError(f"LDMIND_MEMORY_LIMIT must be a number of bytes >= 0 (e.g. 8e9), got {text!r}")
    return int(v)


def _fmt(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB / 10 else f"{n / 1024 ** 2:.0f} MiB"


def check_output(num: int, H: int, W: int, what: str = "output") -> None:
    """Refuse an output whose uint8 pixels alone would not fit."""
    need = num * H * W * 3
    avail = available_memory()
    if need + HEADROOM > avail:
        count = "a" if num == 1 else f"{num} images of"
        raise InputError(f"{count} {W}x{H} {what} needs {_fmt(need)} of memory but only {_fmt(avail)} is "
                         f"available; ask for a smaller scale or size")


def attention_bytes(config: dict, batch: int, h: int, w: int) -> int:
    """Rough peak bytes of the attention score matrices for a latent of h x w.

    The exported graphs compute attention as MatMul -> Softmax -> MatMul, so each layer
    holds [B, heads, tokens, tokens] scores, their softmax and a temporary (x3, float32: x4) for a
    moment; ONNX Runtime frees them before the next layer, so the peak is the largest layer.
    Auto-encoder: one head in the middle block (latent resolution) and at its listed
    resolutions, its queries in AE_GRAPH_ATTENTION_BLOCKS blocks (one block's scores at a
    time); U-Net: channels / num_head_channels heads at each listed downsample factor and in
    the middle, one block."""
    ae, un = config.get("autoencoder") or {}, config.get("unet") or {}

    def ae_layer(t: int) -> int:
        return 3 * batch * t * -(-t // AE_GRAPH_ATTENTION_BLOCKS) * 4

    tokens = h * w
    layers = [ae_layer(tokens)]
    # encoder attention at nominal resolutions r: image-space downsample resolution / r
    f = 2 ** max(0, len(ae.get("ch_mult") or (1,)) - 1)
    for r in ae.get("attn_resolutions") or ():
        ds = max(1, int(ae.get("resolution", r)) // int(r))
        t = (h * f // ds) * (w * f // ds)
        layers.append(ae_layer(t))
    mult = list(un.get("channel_mult") or ())
    if mult:
        mc, hc = int(un.get("model_channels", 0)), max(1, int(un.get("num_head_channels", 32)))
        levels = set(int(d) for d in un.get("attention_resolutions") or ())
        deepest = 2 ** (len(mult) - 1)
        for level, m in enumerate(mult):
            ds = 2 ** level
            if ds in levels or ds == deepest:
                t = (h // ds) * (w // ds)
                layers.append(3 * batch * max(1, mc * m // hc) * t ** 2 * 4)
    return max(layers)


def check_latent(config: dict, batch: int, h: int, w: int, lr_size: tuple[int, int] | None = None) -> None:
    need = attention_bytes(config, batch, h, w)
    avail = available_memory()
    if need + HEADROOM > avail:
        src = f"a {lr_size[1]}x{lr_size[0]} input image" if lr_size else "this request"
        raise InputError(f"{src} is too large for this model: its {w}x{h} latent needs about {_fmt(need)} for "
                         f"attention, {_fmt(avail)} is available; use a smaller input (or fewer samples)")

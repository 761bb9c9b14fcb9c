"""Self-describing checkpoints: safetensors weights with the model config in the metadata.

Never pickle: optimiser state is stored as named tensors plus JSON metadata.

Shipping form (``save_shipping``): weight matrices and kernels stored as float16 (half the
bytes; every tensor of one dimension or less, such as biases, norms and the scale factor,
stays float32), and a generation model's encoder left out (generation never runs E).
``load_model`` reads either form into a float32 model; the metadata says what was done
(``storage``, ``omitted``), and an omitted part may not be trained on (``require_complete``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .config import ModelConfig
from .model import LDMind

FORMAT = "ldmind-checkpoint/1"


class CheckpointError(ValueError):
    pass


def save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, meta: dict[str, str]) -> None:
    """Write a safetensors file atomically (temporary name, then rename): an interrupted
    save never leaves a half-written checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # safetensors raises several types for bad files
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


# Training stages whose checkpoint holds a trained auto-encoder and an untrained U-Net.
AUTOENCODER_STAGES = ("autoencoder", "decoder", "liif")


def save_model(path, model: LDMind, **meta: str) -> None:
    """Weights + config (+ free-form string metadata such as the training stage)."""
    save_tensors(model.state_dict(), path, {"format": FORMAT, "config": model.cfg.to_json(), **meta})


def read_config(path) -> ModelConfig:
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an ldmind checkpoint (format {meta.get('format')!r})")
    return ModelConfig.from_json(meta["config"])


def shipping_tensors(state: dict[str, torch.Tensor], cfg: ModelConfig,
                     omit: list[str] | None = None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(tensors in the shipping form, omitted module prefixes).  By default a generation model
    leaves out the encoder (generation never runs it); ``omit`` names the parts instead (a
    stage-1 milestone leaves out the U-Net, still random then)."""
    omitted = list(omit) if omit is not None else ([] if cfg.unet.conditional else ["encoder"])
    out = {}
    for k, v in state.items():
        if k.split(".", 1)[0] in omitted:
            continue
        out[k] = v.to(torch.float16) if v.is_floating_point() and v.dim() >= 2 else v
    return out, omitted


def save_shipping(path, model: LDMind, omit: list[str] | None = None, **meta: str) -> None:
    """The inference weights of ``model`` in the shipping form (float16 storage)."""
    tensors, omitted = shipping_tensors(model.state_dict(), model.cfg, omit)
    save_tensors(tensors, path, {"format": FORMAT, "config": model.cfg.to_json(), "storage": "float16",
                                 "omitted": ",".join(omitted), **meta})


def omitted_parts(path) -> list[str]:
    """Module prefixes a shipping checkpoint left out (``[]`` for a complete one)."""
    return [p for p in read_metadata(path).get("omitted", "").split(",") if p]


def require_complete(path) -> None:
    """Refuse to train from a checkpoint that lacks modules (their weights would be random)."""
    parts = omitted_parts(path)
    if parts:
        raise CheckpointError(f"{path}: a shipping checkpoint without {', '.join(parts)}; "
                              f"train from the run's model.safetensors instead")


def load_tensors(path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def check_state(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], where: str) -> None:
    """Every key present, none extra, every shape equal; one message listing the problems."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    shapes = [f"{k}: expected {tuple(expected[k].shape)}, got {tuple(got[k].shape)}"
              for k in expected if k in got and expected[k].shape != got[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)})")
    if extra:
        problems.append(f"unexpected {extra[:5]}{' ...' if len(extra) > 5 else ''} ({len(extra)})")
    if shapes:
        problems.append("shape mismatch " + "; ".join(shapes[:5]))
    if problems:
        raise CheckpointError(f"{where}: " + ", ".join(problems))


def load_model(path, device: str | torch.device = "cpu") -> LDMind:
    """A float32 model from a training or shipping checkpoint (float16 tensors are widened;
    an omitted part keeps its initial weights: the encoder of a generation model, which never
    runs it, or the U-Net of a stage-1 milestone, which ``--warm`` continues)."""
    cfg = read_config(path)
    model = LDMind(cfg)
    state = load_tensors(path, device)
    omitted = tuple(p + "." for p in omitted_parts(path))
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(omitted)}
    check_state(expected, state, str(path))
    model.load_state_dict(state, strict=not omitted)
    return model.to(device).eval()


# -- training state -------------------------------------------------------------------------
def optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], str]:
    sd = opt.state_dict()
    tensors = {f"{prefix}.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items()
               if isinstance(v, torch.Tensor)}
    return tensors, json.dumps(sd["param_groups"])


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           groups_json: str, prefix: str) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(groups_json)})

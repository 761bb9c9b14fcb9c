"""Self-describing checkpoints: safetensors weights with the model config in the metadata.

Never pickle: optimiser state is stored as named tensors plus JSON metadata.
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


def save_model(path, model: LDMind, **meta: str) -> None:
    """Weights + config (+ free-form string metadata such as the training stage)."""
    save_tensors(model.state_dict(), path, {"format": FORMAT, "config": model.cfg.to_json(), **meta})


def read_config(path) -> ModelConfig:
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an ldmind checkpoint (format {meta.get('format')!r})")
    return ModelConfig.from_json(meta["config"])


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
    cfg = read_config(path)
    model = LDMind(cfg)
    state = load_tensors(path, device)
    check_state(model.state_dict(), state, str(path))
    model.load_state_dict(state)
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

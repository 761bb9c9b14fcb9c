"""The exported graphs, declared as data (torch-free: the runtime imports this module).

Tensor names are identical in the reference (``ldmind_ref.model``), the ONNX graphs and
the runtime.  Graph inputs/outputs are float32 (timestep int64) in every precision: an
fp16 graph casts inside and an int8 graph quantizes inside, so callers never change with
``--fp16`` or ``--int8``.

Symbolic dimensions: B batch, H/W LR image size (already padded to the U-Net multiple),
h/w latent size, Q query count.
"""
from __future__ import annotations

from dataclasses import dataclass

MANIFEST_NAME = "manifest.json"
# beside the manifest: which graphs may run in bf16 (runtime/precision_gate.py); an export
# carries it from beside its checkpoint (``CKPT_STEM`` + this suffix) when measured on those weights
PRECISION_GATE_NAME = "precision_gate.json"
# ONNX opset of the graphs: 17 by default (GroupNorm as InstanceNormalization, which every
# backend folds); the legacy exporter reaches 20, and attention (SDPA) needs 14.
DEFAULT_OPSET, MIN_OPSET, MAX_OPSET = 17, 14, 20


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str                    # numpy dtype name: "float32" or "int64"
    shape: tuple[str | int, ...]  # symbolic names are dynamic axes


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # TensorRT optimisation profiles: symbol -> (min, opt, max)
    profile: dict[str, tuple[int, int, int]]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)}
                for t in self.inputs + self.outputs}


def _f(name, *shape):
    return TensorSpec(name, "float32", tuple(shape))


def graph_specs(z_channels: int, feature_channels: int, conditional: bool) -> dict[str, GraphSpec]:
    """The four graphs of a model (``encoder`` only for super-resolution models)."""
    c, C = z_channels, feature_channels
    lat = {"B": (1, 1, 4), "h": (8, 64, 256), "w": (8, 64, 256)}
    specs = {}
    if conditional:
        specs["encoder"] = GraphSpec(
            "encoder", (_f("lr", "B", 3, "H", "W"),), (_f("cond", "B", c, "h", "w"),),
            {"B": (1, 1, 4), "H": (8, 64, 256), "W": (8, 64, 256)})
    step_in = [_f("z_t", "B", c, "h", "w")]
    if conditional:
        step_in.append(_f("cond", "B", c, "h", "w"))
    step_in += [TensorSpec("timestep", "int64", ("B",)), _f("alpha_bar_t", 1), _f("alpha_bar_prev", 1),
                _f("sigma_t", 1), _f("noise", "B", c, "h", "w")]
    specs["unet_step"] = GraphSpec("unet_step", tuple(step_in),
                                   (_f("z_prev", "B", c, "h", "w"), _f("pred_z0", "B", c, "h", "w")), lat)
    specs["decoder"] = GraphSpec("decoder", (_f("z", "B", c, "h", "w"),),
                                 (_f("features", "B", C, "h", "w"),), lat)
    specs["liif"] = GraphSpec(
        "liif", (_f("features", "B", C, "h", "w"), _f("coord", "B", "Q", 2), _f("cell", "B", "Q", 2)),
        (_f("rgb", "B", "Q", 3),), {**lat, "Q": (1024, 65536, 65536)})
    return specs


# Every graph a model may have, in pipeline order (an SR model's; generation has no encoder),
# read off the declaration above rather than listed again.
GRAPH_NAMES: tuple[str, ...] = tuple(graph_specs(1, 1, conditional=True))

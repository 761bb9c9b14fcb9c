"""``manifest.json``: what an export directory holds, and its validation.

Torch-free and onnx-free (json + hashlib only): the runtime imports this module to load an
export directory and refuse a broken one.  Every error is a ``ManifestError`` whose message
starts with the offending file's path.

Layout (``format_version`` = ``specs.MANIFEST_VERSION``)::

    format_version  int
    model           {name, config (ModelConfig.to_dict()), source}
    scale_factor    float
    latent          {z_channels, feature_channels, ae_downsample, cond_scale, unet_multiple,
                     conditional, generation_latent [h, w], train_latent, tile_align}
    schedule        {name, timesteps, linear_start, linear_end, cosine_s, alpha_bar [T floats]}
    liif            {query_chunk}
    precision       "fp32" | "fp16"
    graphs          {name: {file, sha256, precision, inputs, outputs, profile, [cost]}}
                    inputs/outputs: [{name, dtype, shape}], symbolic dims as strings;
                    cost (encoder, unet_step, decoder): {macs_per_cell, attention: [{stride,
                    channels, heads, blocks}]} as measured by ``ldmind_ref.costs``
    producer        {ldmind, torch, onnx, opset}
    tensorrt        null, or {version, gpu, compute_capability, timing_cache,
                              engines: {name: {file, sha256, precision, profiles}}}
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .specs import MANIFEST_NAME, MANIFEST_VERSION, GraphSpec, graph_specs


class ManifestError(ValueError):
    """An export directory that cannot be used; the message names the offending file."""


_REQUIRED = {
    "": ("format_version", "model", "scale_factor", "latent", "schedule", "liif", "precision",
         "graphs", "producer", "tensorrt"),
    "model": ("name", "config"),
    "latent": ("z_channels", "feature_channels", "ae_downsample", "cond_scale", "unet_multiple",
               "conditional", "generation_latent", "train_latent", "tile_align"),
    "schedule": ("name", "timesteps", "linear_start", "linear_end", "cosine_s", "alpha_bar"),
    "liif": ("query_chunk",),
    "producer": ("ldmind", "torch", "onnx", "opset"),
}
_GRAPH_KEYS = ("file", "sha256", "precision", "inputs", "outputs", "profile")
_TRT_KEYS = ("version", "gpu", "compute_capability", "engines")
_ENGINE_KEYS = ("file", "sha256", "profiles")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def tensors_to_json(tensors) -> list[dict[str, Any]]:
    """TensorSpecs -> [{name, dtype, shape}] (shape: ints and symbol strings)."""
    return [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in tensors]


def graph_to_json(spec: GraphSpec, file: str, sha256: str, precision: str) -> dict[str, Any]:
    return {"file": file, "sha256": sha256, "precision": precision,
            "inputs": tensors_to_json(spec.inputs), "outputs": tensors_to_json(spec.outputs),
            "profile": {k: list(v) for k, v in spec.profile.items()}}


def write_manifest(directory: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write atomically: a reader never sees a half-written manifest."""
    path = Path(directory) / MANIFEST_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _need(d: Any, keys, where: str, what: str) -> None:
    if not isinstance(d, dict):
        raise ManifestError(f"{where}: {what} must be an object, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise ManifestError(f"{where}: {what} lacks key(s) {missing}")


def _check_file(directory: Path, entry: dict[str, Any], where: str, what: str, verify: bool) -> None:
    name = entry["file"]
    if not isinstance(name, str) or Path(name).name != name:
        # a plain file name: a manifest must not point outside its directory
        raise ManifestError(f"{where}: {what} file must be a plain file name, got {name!r}")
    path = directory / name
    if not path.is_file():
        raise ManifestError(f"{path}: missing ({what} listed in {where})")
    if verify:
        got = sha256_file(path)
        if got != entry["sha256"]:
            raise ManifestError(f"{path}: sha256 mismatch (manifest {entry['sha256'][:16]}..., file "
                                f"{got[:16]}...): the file was modified or belongs to another "
                                f"export; re-export with `python -m export`")


def _is_number(v: Any, positive: bool = False) -> bool:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
    return ok and (v > 0 if positive else v >= 0)


def _check_cost(cost: Any, where: str, name: str) -> None:
    """A graph's measured cost (see ``ldmind_ref.costs``): what tiling and memory checks read."""
    what = f"graph '{name}' cost"
    _need(cost, ("macs_per_cell", "attention"), where, what)
    if not _is_number(cost["macs_per_cell"]) or not isinstance(cost["attention"], list):
        raise ManifestError(f"{where}: {what} must hold macs_per_cell >= 0 and an attention list")
    for a in cost["attention"]:
        _need(a, ("stride", "channels", "heads", "blocks"), where, f"{what} attention layer")
        if not all(_is_number(a[k], positive=True) for k in ("stride", "channels", "heads", "blocks")):
            raise ManifestError(f"{where}: {what}: attention stride/channels/heads/blocks must be positive numbers")


def validate(manifest: dict[str, Any], directory: str | os.PathLike, verify: bool = True,
             where: str | None = None) -> None:
    """Raise ManifestError unless ``manifest`` describes a usable export in ``directory``:
    format version, required keys, the graph set and I/O of ``specs.graph_specs``, every
    listed file present and (``verify``) with its sha256."""
    directory = Path(directory)
    where = where or str(directory / MANIFEST_NAME)
    _need(manifest, _REQUIRED[""], where, "the manifest")
    version = manifest["format_version"]
    if version != MANIFEST_VERSION:
        raise ManifestError(f"{where}: format_version {version!r}, this code reads {MANIFEST_VERSION}; "
                            f"re-export with the matching `python -m export`")
    for key, keys in _REQUIRED.items():
        if key:
            _need(manifest[key], keys, where, f"'{key}'")
    if manifest["precision"] not in ("fp32", "fp16"):
        raise ManifestError(f"{where}: precision must be 'fp32' or 'fp16', got {manifest['precision']!r}")
    lat = manifest["latent"]
    if len(manifest["schedule"]["alpha_bar"]) != manifest["schedule"]["timesteps"]:
        raise ManifestError(f"{where}: schedule.alpha_bar has {len(manifest['schedule']['alpha_bar'])} "
                            f"values for {manifest['schedule']['timesteps']} timesteps")

    expected = graph_specs(lat["z_channels"], lat["feature_channels"], lat["conditional"])
    graphs = manifest["graphs"]
    _need(graphs, expected, where, "'graphs'")
    for name, spec in expected.items():
        g = graphs[name]
        _need(g, _GRAPH_KEYS, where, f"graph '{name}'")
        for io in ("inputs", "outputs"):
            want = tensors_to_json(getattr(spec, io))
            if g[io] != want:
                raise ManifestError(f"{where}: graph '{name}' {io} {g[io]} differ from the declared "
                                    f"{want} (export/specs.py)")
        if name != "liif":
            _check_cost(g.get("cost"), where, name)
        _check_file(directory, g, where, f"graph '{name}'", verify)
    for key in ("train_latent", "tile_align"):
        if not _is_number(lat[key], positive=True) or not isinstance(lat[key], int):
            raise ManifestError(f"{where}: latent.{key} must be a positive integer, got {lat[key]!r}")

    trt = manifest["tensorrt"]
    if trt is not None:
        _need(trt, _TRT_KEYS, where, "'tensorrt'")
        _need(trt["engines"], (), where, "'tensorrt.engines'")
        for name, e in trt["engines"].items():
            _need(e, _ENGINE_KEYS, where, f"engine '{name}'")
            _check_file(directory, e, where, f"engine '{name}'", verify)


def load_manifest(directory: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Read and validate ``directory/manifest.json`` (see ``validate``)."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path}: missing; is {directory} an export directory "
                            f"(made by `python -m export`)?")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: not readable JSON ({e})") from None
    validate(manifest, path.parent, verify, where=str(path))
    return manifest


def engine_mismatch(manifest: dict[str, Any], trt_version: str, compute_capability: str) -> str | None:
    """Why this export's TensorRT engines cannot run here (None if they can): engines are
    tied to the TensorRT version and the GPU's compute capability that built them."""
    trt = manifest.get("tensorrt")
    if not trt:
        return "the export has no TensorRT engines"
    if trt["version"] != trt_version:
        return f"engines were built with TensorRT {trt['version']}, this is {trt_version}"
    if str(trt["compute_capability"]) != str(compute_capability):
        return (f"engines were built for compute capability {trt['compute_capability']} "
                f"({trt['gpu']}), this GPU is {compute_capability}")
    return None

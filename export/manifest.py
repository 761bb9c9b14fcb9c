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
    precision       "fp32" | "fp16" | "int8"
    graphs          {name: {file, sha256, precision, inputs, outputs, profile, [cost]}}
                    inputs/outputs: [{name, dtype, shape}], symbolic dims as strings;
                    cost (encoder, unet_step, decoder): {macs_per_cell, attention: [{stride,
                    channels, heads, blocks}], memory: [[bytes per cell, per cell^2]]}
                    as measured by ``ldmind_ref.costs`` and ``export.activations``
    producer        {ldmind, torch, onnx, opset}
    tensorrt        null, or {version, gpu, compute_capability, timing_cache,
                              engines: {name: {file, sha256, precision, profiles}}}
    quantization    int8 only: {method, calibration {folder, photos, ...}, graphs: {name:
                    {error {rel_rms, rel_max}, float_nodes {node: why}}}} (export/quantize.py)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from .specs import MANIFEST_NAME, MANIFEST_VERSION, PRECISIONS, GraphSpec, graph_specs


class ManifestError(ValueError):
    """An export directory that cannot be used; the message names the offending file."""


# -- the manifest's schema, declared once ----------------------------------------------------
# Every reader goes through ``validate``, which walks this declaration: a field of the wrong
# type or range is refused with one line naming it (never a TypeError deep in a reader).
# Objects list their required keys; extra keys are allowed (a newer exporter may add some).
class _Spec:
    what = "?"

    def problem(self, value: Any) -> str | None:      # None when ``value`` conforms
        raise NotImplementedError


class _Int(_Spec):
    def __init__(self, lo: int | None = None):
        self.lo = lo
        self.what = "an integer" if lo is None else f"an integer >= {lo}"

    def problem(self, v):
        ok = isinstance(v, int) and not isinstance(v, bool) and (self.lo is None or v >= self.lo)
        return None if ok else self.what


class _Number(_Spec):
    def __init__(self, positive: bool = False):
        self.positive = positive
        self.what = "a finite number" + (" > 0" if positive else "")

    def problem(self, v):
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
              and (not self.positive or v > 0))
        return None if ok else self.what


class _Is(_Spec):
    def __init__(self, types: tuple, what: str, test=None):
        self.types, self.what, self.test = types, what, test

    def problem(self, v):
        # bool is an int to Python, never to a manifest
        ok = isinstance(v, self.types) and not (isinstance(v, bool) and int in self.types)
        return None if ok and (self.test is None or self.test(v)) else self.what


class _OneOf(_Spec):
    def __init__(self, *values):
        self.values = values
        self.what = "one of " + ", ".join(repr(v) for v in values)

    def problem(self, v):
        return None if any(v == x and type(v) is type(x) for x in self.values) else self.what


class _Nullable(_Spec):
    def __init__(self, spec):
        self.spec = spec
        self.what = f"null or {spec.what}"


class _List(_Spec):
    def __init__(self, item, length: int | None = None, min_length: int = 0):
        self.item, self.length, self.min_length = item, length, min_length
        self.what = "a list" + (f" of {length}" if length is not None else "")

    def problem(self, v):
        if not isinstance(v, list):
            return self.what
        if self.length is not None and len(v) != self.length:
            return self.what
        return None if len(v) >= self.min_length else f"a list of at least {self.min_length}"


class _Map(_Spec):
    """An object whose keys are names (graphs, engines) and whose values follow one spec."""
    def __init__(self, value):
        self.value = value
        self.what = "an object"


class _Object(_Spec):
    def __init__(self, fields: dict[str, Any]):
        self.fields = fields
        self.what = "an object"


_ANY = _Is((object,), "anything")
_STR = _Is((str,), "a string")
_BOOL = _Is((bool,), "true or false")
_POS = _Int(1)
_SHA256 = _Is((str,), "64 hexadecimal digits",
              lambda v: len(v) == 64 and all(c in "0123456789abcdef" for c in v.lower()))
_FILE = _Is((str,), "a plain file name (no folder)", lambda v: v not in ("", ".", "..") and Path(v).name == v)
_TENSOR = _Object({"name": _STR, "dtype": _STR,
                   "shape": _List(_Is((int, str), "an integer or a symbol name"))})
_GRAPH = _Object({"file": _FILE, "sha256": _SHA256, "precision": _STR, "inputs": _List(_TENSOR),
                  "outputs": _List(_TENSOR), "profile": _Map(_List(_Int(0), length=3))})
# what ``ldmind_ref.costs`` measured (encoder, unet_step, decoder): tiling and memory checks read it
# and what ``export.activations`` measured on the graph (working memory per cell and cell^2)
_COST = _Object({"macs_per_cell": _Number(positive=True),
                 "attention": _List(_Object({"stride": _Number(positive=True), "channels": _POS, "heads": _POS,
                                             "blocks": _POS})),
                 "memory": _List(_List(_Number(), length=2), min_length=1)})
_ENGINE = _Object({"file": _FILE, "sha256": _SHA256, "profiles": _List(_ANY)})

MANIFEST_SCHEMA = _Object({
    "format_version": _Int(),
    "model": _Object({"name": _STR, "config": _Map(_ANY)}),
    "scale_factor": _Number(positive=True),
    "latent": _Object({"z_channels": _POS, "feature_channels": _POS, "ae_downsample": _POS, "cond_scale": _POS,
                       "unet_multiple": _POS, "conditional": _BOOL,
                       "generation_latent": _Nullable(_List(_POS, length=2)),
                       "train_latent": _POS, "tile_align": _POS}),
    "schedule": _Object({"name": _STR, "timesteps": _POS, "linear_start": _Number(), "linear_end": _Number(),
                         "cosine_s": _Number(), "alpha_bar": _List(_Number(positive=True), min_length=1)}),
    "liif": _Object({"query_chunk": _POS}),
    "precision": _OneOf(*PRECISIONS),
    "graphs": _Map(_GRAPH),
    "producer": _Object({"ldmind": _ANY, "torch": _ANY, "onnx": _ANY, "opset": _ANY}),
    "tensorrt": _Nullable(_Object({"version": _STR, "gpu": _STR, "compute_capability": _Is((str, int, float), "a version"),
                                   "engines": _Map(_ENGINE)})),
})


def _short(v: Any) -> str:
    text = repr(v) if not isinstance(v, (dict, list)) else type(v).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def check_schema(value: Any, spec: _Spec, where: str, path: str = "") -> None:
    """Raise ManifestError naming ``path`` (e.g. ``graphs.liif.sha256``) where ``value``
    does not follow ``spec``."""
    name = path or "the manifest"
    if isinstance(spec, _Nullable):
        if value is not None:
            check_schema(value, spec.spec, where, path)
        return
    if isinstance(spec, (_Object, _Map)):
        if not isinstance(value, dict):
            raise ManifestError(f"{where}: {name} must be an object, got {_short(value)}")
        if isinstance(spec, _Map):
            for key, v in value.items():
                check_schema(v, spec.value, where, f"{path}.{key}" if path else key)
            return
        missing = [k for k in spec.fields if k not in value]
        if missing:
            raise ManifestError(f"{where}: {name} lacks key(s) {missing}")
        for key, sub in spec.fields.items():
            check_schema(value[key], sub, where, f"{path}.{key}" if path else key)
        return
    why = spec.problem(value)
    if why is not None:
        raise ManifestError(f"{where}: {name} must be {why}, got {_short(value)}")
    if isinstance(spec, _List):
        for i, v in enumerate(value):
            check_schema(v, spec.item, where, f"{path}[{i}]")


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


def _check_file(directory: Path, entry: dict[str, Any], where: str, what: str, verify: bool) -> None:
    name = entry["file"]       # a plain file name (the schema): never outside its directory
    path = directory / name
    if not path.is_file():
        raise ManifestError(f"{path}: missing ({what} listed in {where})")
    if verify:
        got = sha256_file(path)
        if got != entry["sha256"]:
            raise ManifestError(f"{path}: sha256 mismatch (manifest {entry['sha256'][:16]}..., file "
                                f"{got[:16]}...): the file was modified or belongs to another "
                                f"export; re-export with `python -m export`")


def validate(manifest: dict[str, Any], directory: str | os.PathLike, verify: bool = True,
             where: str | None = None) -> None:
    """Raise ManifestError unless ``manifest`` describes a usable export in ``directory``:
    format version, required keys, the graph set and I/O of ``specs.graph_specs``, every
    listed file present and (``verify``) with its sha256."""
    directory = Path(directory)
    where = where or str(directory / MANIFEST_NAME)
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where}: the manifest must be an object, got {_short(manifest)}")
    version = manifest.get("format_version")
    if version != MANIFEST_VERSION:
        raise ManifestError(f"{where}: format_version {version!r}, this code reads {MANIFEST_VERSION}; "
                            f"re-export with the matching `python -m export`")
    check_schema(manifest, MANIFEST_SCHEMA, where)
    lat = manifest["latent"]
    if len(manifest["schedule"]["alpha_bar"]) != manifest["schedule"]["timesteps"]:
        raise ManifestError(f"{where}: schedule.alpha_bar has {len(manifest['schedule']['alpha_bar'])} "
                            f"values for {manifest['schedule']['timesteps']} timesteps")

    expected = graph_specs(lat["z_channels"], lat["feature_channels"], lat["conditional"])
    graphs = manifest["graphs"]
    missing = [k for k in expected if k not in graphs]
    if missing:
        raise ManifestError(f"{where}: 'graphs' lacks key(s) {missing}")
    for name, spec in expected.items():
        g = graphs[name]
        for io in ("inputs", "outputs"):
            want = tensors_to_json(getattr(spec, io))
            if g[io] != want:
                raise ManifestError(f"{where}: graph '{name}' {io} {g[io]} differ from the declared "
                                    f"{want} (export/specs.py)")
        if name != "liif":
            if "cost" not in g:
                raise ManifestError(f"{where}: graph '{name}' lacks its measured cost; re-export with `python -m export`")
            check_schema(g["cost"], _COST, where, f"graphs.{name}.cost")
        _check_file(directory, g, where, f"graph '{name}'", verify)

    trt = manifest["tensorrt"]
    if trt is not None:
        for name, e in trt["engines"].items():
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
    except RecursionError:   # e.g. [[[[...]]]] 200,000 levels deep: json recurses per level
        raise ManifestError(f"{path}: not a manifest (JSON nested too deeply to read)") from None
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

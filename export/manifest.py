"""``manifest.json``: what an export directory holds, and its validation.

Torch-free and onnx-free (json, hashlib, jsonschema): the runtime imports this module to load
an export directory and refuse a broken one.  Every error is a ``ManifestError`` whose message
starts with the offending file's path.

The fields, their types and ranges are declared once, in ``manifest.schema.json`` beside this
module (a JSON Schema document: format_version, model, scale_factor, latent, schedule, liif,
precision, graphs, producer, tensorrt, and for int8 quantization).  ``validate`` checks a
manifest against it and then what a schema cannot say: the graph set and their inputs and
outputs (``specs.graph_specs``), a schedule that is one non-increasing value per timestep,
every listed file present and (``verify``) with its sha256.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import jsonschema

from .specs import MANIFEST_NAME, GraphSpec, graph_specs


class ManifestError(ValueError):
    """An export directory that cannot be used; the message names the offending file."""


# -- the manifest's schema, declared once: manifest.schema.json ----------------------------------
# Every reader goes through ``validate``: a field of the wrong type or range is refused with one
# line naming it (never a TypeError deep in a reader).  The C++ loader checks the same document
# through a table generated from it (``export.schema_header``).
SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
MANIFEST_VERSION: int = SCHEMA["properties"]["format_version"]["const"]


def _finite_number(_checker, v: Any) -> bool:
    # JSON's numbers are finite; Python's json also reads NaN and Infinity
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(_checker, v: Any) -> bool:
    # written without a fraction: 3.0 is not an integer (jsonschema's default takes it)
    return isinstance(v, int) and not isinstance(v, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"number": _finite_number, "integer": _integer}))
_VALIDATOR = _Validator(SCHEMA)

# how each JSON type is named in a message
TYPE_WORDS = {"integer": "an integer", "number": "a finite number", "string": "a string", "boolean": "true or false",
              "null": "null", "object": "an object", "array": "a list"}


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """A schema node, its ``$ref`` (to ``#/$defs/NAME``: the only kind the schema uses) followed."""
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].removeprefix("#/$defs/")]
    return node


def wording(node: dict[str, Any]) -> str:
    """What a value at ``node`` must be, as the one-line message says it ("an integer >= 1"):
    the node's title, else derived from its keywords."""
    node = resolve(node)
    if "title" in node:
        return node["title"]
    if "const" in node:
        return repr(node["const"])
    if "enum" in node:
        return "one of " + ", ".join(repr(v) for v in node["enum"])
    types = node["type"] if isinstance(node.get("type"), list) else [node.get("type")]
    words = []
    for t in types:
        w = TYPE_WORDS.get(t, "anything")
        if t in ("integer", "number"):
            lo = ("(", node["exclusiveMinimum"]) if "exclusiveMinimum" in node else ("[", node.get("minimum"))
            hi = (node["exclusiveMaximum"], ")") if "exclusiveMaximum" in node else (node.get("maximum"), "]")
            if lo[1] is not None and hi[0] is not None:
                w += f" in {lo[0]}{lo[1]}, {hi[0]}{hi[1]}"
            elif lo[1] is not None:
                w += f" {'>' if lo[0] == '(' else '>='} {lo[1]}"
            elif hi[0] is not None:
                w += f" {'<' if hi[1] == ')' else '<='} {hi[0]}"
        elif t == "array" and node.get("minItems") is not None and node.get("minItems") == node.get("maxItems"):
            w += f" of {node['minItems']}"
        elif t == "array" and node.get("minItems"):
            w += f" of at least {node['minItems']}"
        words.append(w)
    return " or ".join(words)


def _short(v: Any) -> str:
    text = repr(v) if not isinstance(v, (dict, list)) else type(v).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def path_name(path) -> str:
    """``graphs.decoder.sha256``, ``schedule.alpha_bar[3]``: where in the manifest."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out or "the manifest"


def _walk_order(error: jsonschema.ValidationError, manifest: Any) -> tuple:
    """Where ``error`` comes in a depth-first walk of the schema that checks each node's keywords
    in the order written, ``properties`` in the schema's order and the members of
    ``additionalProperties`` and ``items`` in the manifest's: the first error is the one the
    C++ loader, which walks so, reports too (jsonschema visits additional properties in set order)."""
    node, value, key = SCHEMA, manifest, []
    for step in error.absolute_path:
        node = resolve(node)
        keywords = list(node)
        if isinstance(step, int):
            key += [keywords.index("items"), step]
            node = node["items"]
        elif step in node.get("properties", {}):
            key += [keywords.index("properties"), list(node["properties"]).index(step)]
            node = node["properties"][step]
        else:
            key += [keywords.index("additionalProperties"), list(value).index(step)]
            node = node["additionalProperties"]
        value = value[step]
    return (*key, list(resolve(node)).index(error.validator))


def schema_problem(manifest: Any) -> str | None:
    """The first place where ``manifest`` breaks the schema, as one line without the file name
    ("latent.z_channels must be an integer >= 1, got True"); None when it conforms."""
    errors = list(_VALIDATOR.iter_errors(manifest))
    if not errors:
        return None
    e = min(errors, key=lambda e: _walk_order(e, manifest))
    name = path_name(e.absolute_path)
    if e.validator == "required":
        return f"{name} lacks key(s) {[k for k in e.validator_value if k not in e.instance]}"
    return f"{name} must be {wording(e.schema)}, got {_short(e.instance)}"


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
    name = entry["file"]       # a plain file name (the schema's "file"): never outside its directory
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
    format version, the schema (``schema_problem``), a non-increasing schedule of one value per
    timestep, the graph set and I/O of ``specs.graph_specs``, every listed file present and
    (``verify``) with its sha256."""
    directory = Path(directory)
    where = where or str(directory / MANIFEST_NAME)
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where}: the manifest must be an object, got {_short(manifest)}")
    version = manifest.get("format_version")
    if version != MANIFEST_VERSION:
        raise ManifestError(f"{where}: format_version {version!r}, this code reads {MANIFEST_VERSION}; "
                            f"re-export with the matching `python -m export`")
    why = schema_problem(manifest)
    if why:
        raise ManifestError(f"{where}: {why}")
    lat, alpha_bar = manifest["latent"], manifest["schedule"]["alpha_bar"]
    if len(alpha_bar) != manifest["schedule"]["timesteps"]:
        raise ManifestError(f"{where}: schedule.alpha_bar has {len(alpha_bar)} "
                            f"values for {manifest['schedule']['timesteps']} timesteps")
    # every sampler coefficient comes from it: refuse what cannot be a cumulative product of (1 - beta)
    if any(b > a for a, b in zip(alpha_bar, alpha_bar[1:])):
        raise ManifestError(f"{where}: schedule.alpha_bar must be a non-increasing list of numbers in (0, 1]")

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
        if name != "liif" and "cost" not in g:
            raise ManifestError(f"{where}: graph '{name}' lacks its measured cost; re-export with `python -m export`")
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

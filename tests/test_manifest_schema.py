"""The one manifest schema (export/manifest.schema.json): a valid JSON Schema document, the
messages export.manifest words from it, and the C++ table generated from it, which must be
the committed one (runtime/cpp/src/manifest_schema.hpp).  Fast: no export, no build."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema
import pytest

from conftest import ROOT
from export import schema_header
from export.manifest import MANIFEST_VERSION, SCHEMA, graph_to_json, schema_problem, wording
from export.specs import graph_specs


def valid_manifest() -> dict:
    """A manifest that follows the schema (its files need not exist: ``schema_problem`` only)."""
    graphs = {name: graph_to_json(spec, f"{name}.onnx", "0" * 64, "fp32")
              for name, spec in graph_specs(4, 8, True).items()}
    for name in ("encoder", "unet_step", "decoder"):
        graphs[name]["cost"] = {"macs_per_cell": 1000.0, "attention": [{"stride": 1, "channels": 8, "heads": 1,
                                                                        "blocks": 1}], "memory": [[1.0, 0.0]]}
    return {"format_version": MANIFEST_VERSION, "model": {"name": "tiny", "config": {}}, "scale_factor": 0.75,
            "latent": {"z_channels": 4, "feature_channels": 8, "ae_downsample": 4, "cond_scale": 2,
                       "unet_multiple": 4, "conditional": True, "generation_latent": None, "train_latent": 16,
                       "tile_align": 4},
            "schedule": {"name": "linear", "timesteps": 3, "linear_start": 0.1, "linear_end": 0.2, "cosine_s": 0.008,
                         "alpha_bar": [0.9, 0.8, 0.7]},
            "liif": {"query_chunk": 4096}, "precision": "fp32", "graphs": graphs,
            "producer": {"ldmind": "0", "torch": "0", "onnx": "0", "opset": 17}, "tensorrt": None}


def test_the_schema_is_a_json_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert schema_problem(valid_manifest()) is None


def test_the_cpp_table_is_generated_from_the_schema():
    """Fails when the schema changed and the header was not regenerated."""
    assert schema_header.HEADER.read_text() == schema_header.header(), \
        "runtime/cpp/src/manifest_schema.hpp is stale: run `python -m export.schema_header`"
    assert f"constexpr int MANIFEST_VERSION = {MANIFEST_VERSION};" in schema_header.header()


def test_the_check_option_says_stale(tmp_path, monkeypatch):
    stale = tmp_path / "manifest_schema.hpp"
    stale.write_text("// an old table\n")
    monkeypatch.setattr(schema_header, "HEADER", stale)
    assert schema_header.main(["--check"]) == 1
    assert schema_header.main([]) == 0 and schema_header.main(["--check"]) == 0


def test_the_generator_refuses_what_the_cpp_walker_does_not_implement():
    with pytest.raises(ValueError, match="does not implement 'format'"):
        schema_header.Table().node({"type": "string", "format": "date"})
    with pytest.raises(ValueError, match="compares strings only"):
        schema_header.Table().node({"enum": [1, 2]})


@pytest.mark.parametrize("node,says", [
    ({"type": "integer", "minimum": 1}, "an integer >= 1"),
    ({"type": "number", "exclusiveMinimum": 0}, "a finite number > 0"),
    ({"type": "number", "exclusiveMinimum": 0, "maximum": 1}, "a finite number in (0, 1]"),
    ({"type": ["array", "null"], "minItems": 2, "maxItems": 2}, "a list of 2 or null"),
    ({"type": "array", "minItems": 1}, "a list of at least 1"),
    ({"type": "string", "enum": ["fp32", "fp16"]}, "one of 'fp32', 'fp16'"),
    ({"$ref": "#/$defs/sha256"}, "64 hexadecimal digits"),
])
def test_wording(node, says):
    assert wording(node) == says


@pytest.mark.parametrize("change,says", [
    (lambda m: m.pop("latent"), "the manifest lacks key(s) ['latent']"),
    (lambda m: (m["latent"].pop("tile_align"), m["latent"].pop("z_channels")),
     "latent lacks key(s) ['z_channels', 'tile_align']"),
    (lambda m: m["schedule"]["alpha_bar"].__setitem__(1, float("nan")),
     "schedule.alpha_bar[1] must be a finite number in (0, 1], got nan"),
    (lambda m: m["latent"].__setitem__("cond_scale", 2.0), "latent.cond_scale must be an integer >= 1, got 2.0"),
    (lambda m: m["graphs"]["liif"].__setitem__("file", "a/liif.onnx"),
     "graphs.liif.file must be a plain file name (no folder), got 'a/liif.onnx'"),
    (lambda m: m["graphs"]["decoder"]["inputs"][0]["shape"].__setitem__(0, None),
     "graphs.decoder.inputs[0].shape[0] must be an integer or a symbol name, got None"),
    (lambda m: m.__setitem__("tensorrt", "none"), "tensorrt must be an object or null, got 'none'"),
])
def test_messages(change, says):
    m = valid_manifest()
    change(m)
    assert schema_problem(m) == says


def test_the_first_problem_is_in_manifest_order_whatever_the_hash_seed():
    """Two graphs broken: the one first in the file is reported (as the C++ loader reports it),
    though jsonschema visits additional properties in set order, which the hash seed changes."""
    m = valid_manifest()
    for name in ("liif", "encoder", "decoder"):
        m["graphs"][name]["sha256"] = None
    code = ("import json, sys; from export.manifest import schema_problem; "
            "print(schema_problem(json.loads(sys.stdin.read())))")
    for seed in ("0", "1", "2", "3"):
        r = subprocess.run([sys.executable, "-c", code], input=json.dumps(m), capture_output=True,
                           text=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)})
        assert r.stdout.strip() == "graphs.encoder.sha256 must be 64 hexadecimal digits, got None", r.stderr

"""How ``backend="auto"`` runs an export on the CPU (runtime/backends/choice.py): per graph, the
fastest allowed CPU backend by a record measured once per machine and export
(runtime/backends/record.py); bf16 only where the CPU has it natively and the export's quality
gate passes the graph (runtime/precision_gate.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from ldmind_ref.core import cpuinfo
from runtime import Pipeline, info
from runtime import precision_gate
from runtime.backends import choice, record
from runtime.bundle import load_bundle

GRAPHS = ["encoder", "unet_step", "decoder", "liif"]


@pytest.fixture()
def export(sr_engines, tmp_path, monkeypatch):
    """A copy of the tiny SR export (a gate file may be written beside it) and an empty record."""
    d = tmp_path / "tiny"
    shutil.copytree(sr_engines, d)
    monkeypatch.setenv(record.RECORD_ENV, str(tmp_path / "cache" / "backends.json"))
    return d


def _gate(d, per_graph: dict[str, bool], together: bool = True, digests=None) -> None:
    b = load_bundle(d)
    (d / precision_gate.GATE_FILE).write_text(json.dumps({
        "graphs_sha256": digests or precision_gate.graph_digests(b),
        "precisions": {"bf16": {"per_graph": {g: {"pass": ok, "defaults_loss_db": 0.01 if ok else 0.5,
                                                  "raw_loss_db": 0.02} for g, ok in per_graph.items()},
                                "together": {"pass": together, "defaults_loss_db": 0.05, "raw_loss_db": 0.1}}}}))


def test_fastest_per_graph_cpu_on_ties_and_gaps():
    s = {"cpu": {"encoder": 1.0, "unet_step": 2.0, "decoder": 1.0},
         "openvino": {"encoder": 0.5, "unet_step": 2.5, "decoder": 1.0, "liif": 0.1},
         "openvino-bf16": {"encoder": 0.2, "unet_step": 1.0}}
    ok = {"cpu": GRAPHS, "openvino": GRAPHS, "openvino-bf16": ["unet_step"]}
    assert choice.fastest(s, ok, GRAPHS) == {"encoder": "openvino", "unet_step": "openvino-bf16",
                                             "decoder": "cpu", "liif": "openvino"}


def test_gate_refusals(export):
    b = load_bundle(export)
    assert precision_gate.refusal(b, "fp32", "liif") is None
    assert "no quality gate" in precision_gate.refusal(b, "bf16", "liif")
    _gate(export, {g: True for g in GRAPHS}, digests={g: "0" * 64 for g in GRAPHS})
    assert "measured on other graphs" in precision_gate.refusal(b, "bf16", "liif")
    _gate(export, {"encoder": True, "unet_step": True, "decoder": True, "liif": False})
    assert precision_gate.refusal(b, "bf16", "encoder") is None
    assert "liif in bf16 failed the quality gate (defaults +0.500 dB, raw +0.020 dB)" in \
        precision_gate.refusal(b, "bf16", "liif")
    _gate(export, {g: True for g in GRAPHS}, together=False)
    assert "together failed" in precision_gate.refusal(b, "bf16", "encoder")
    assert precision_gate.passes({"defaults": 0.1, "raw": 0.2})
    assert not precision_gate.passes({"defaults": 0.11, "raw": 0.0})
    assert not precision_gate.passes({"defaults": 0.0, "raw": 0.21})


def test_bf16_offered_only_with_native_bf16_and_a_passing_gate(export, monkeypatch):
    b = load_bundle(export)
    _gate(export, {"encoder": True, "unet_step": True, "decoder": False, "liif": True})
    monkeypatch.setattr(cpuinfo, "native_bf16", lambda flags=None: False)
    ok, over = choice.allowed(b)
    assert "openvino-bf16" not in ok and "no native bf16" in over["openvino-bf16"]
    assert ok["cpu"] == GRAPHS and ok["openvino"] == GRAPHS
    monkeypatch.setattr(cpuinfo, "native_bf16", lambda flags=None: True)
    ok, over = choice.allowed(b)
    assert ok["openvino-bf16"] == ["encoder", "unet_step", "liif"] and "openvino-bf16" not in over


def test_cpuinfo_reads_flags(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: Some CPU @ 2GHz\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                 "processor\t: 1\nflags\t\t: other\n")
    assert cpuinfo.model_name(str(f)) == "Some CPU @ 2GHz"
    assert cpuinfo.flag_list(str(f)) == ["fpu", "avx2", "avx512f", "avx512_bf16"]
    assert cpuinfo.native_bf16(["avx2", "amx_bf16"]) and cpuinfo.native_bf16(["avx512_bf16"])
    assert not cpuinfo.native_bf16(["avx2", "avx512f", "avx512_vnni"])
    assert cpuinfo.summary(["avx2", "avx512f", "avx512_bf16"]).endswith("AVX2 AVX-512 BF16")
    assert cpuinfo.model_name(str(tmp_path / "absent")) == "unknown"


def test_auto_follows_the_record_per_graph(export, monkeypatch):
    b = load_bundle(export)
    monkeypatch.setenv(choice.MEASURE_ENV, "0")
    record.save(b, {"cpu": {"encoder": 1.0, "unet_step": 1.0, "decoder": 1.0, "liif": 1.0},
                    "openvino": {"encoder": 2.0, "unet_step": 2.0, "decoder": 2.0, "liif": 0.5}})
    pipe = Pipeline.load(export)
    assert pipe.graph_backends == {"encoder": "cpu", "unet_step": "cpu", "decoder": "cpu", "liif": "openvino"}
    assert pipe.backend == "mixed" and "liif openvino (2.00x cpu)" in pipe.auto
    assert "recorded for this machine" in pipe.auto
    cpu = Pipeline.load(export, backend="cpu")
    img = np.random.RandomState(5).randint(0, 256, (9, 14, 3)).astype(np.uint8)
    a, = cpu.upscale(img, scale=2.5, steps=3, seed=4)
    m, = pipe.upscale(img, scale=2.5, steps=3, seed=4)
    assert np.abs(a.astype(int) - m.astype(int)).max() <= 1
    assert info.summary(b, False)["auto"].startswith("encoder cpu, unet_step cpu, decoder cpu, liif openvino")
    # a record of another machine, or of other graphs, does not count
    data = json.loads(record.record_path().read_text())
    record.record_path().write_text(json.dumps({"another CPU | 2 CPUs": data[record.machine_key()]}))
    assert record.times(b) is None and Pipeline.load(export).graph_backends["liif"] == "cpu"


MEASURE_ONCE = """
import json, sys
from runtime import Pipeline
from runtime.backends import choice, record
from runtime.bundle import load_bundle
choice.MEASURE_REPEAT = 1
export = sys.argv[1]
b = load_bundle(export)
pipe = Pipeline.load(export)
seconds = record.times(b)
ok, _ = choice.allowed(b)
print(json.dumps({"plan": pipe.graph_backends, "auto": pipe.auto, "seconds": seconds, "ok": ok}))
pipe.close()
print("---", file=sys.stderr)
again = Pipeline.load(export)
print(json.dumps({"plan": again.graph_backends, "auto": again.auto}))
"""


def test_auto_measures_once_on_first_use(export):
    """In a process of its own: OpenVINO's bf16 compilation leaves oneDNN/TBB state in the
    process that a later fork (torch's DataLoader workers in the training tests) or signal did
    not survive when this ran in the suite's process."""
    env = {**os.environ, choice.MEASURE_ENV: "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", MEASURE_ONCE, str(export)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    first, second = (json.loads(line) for line in r.stdout.strip().splitlines())
    before, after = r.stderr.split("---\n")
    assert "auto: timing cpu, openvino" in before and after == ""          # measured once, then silent
    ok, seconds = first["ok"], first["seconds"]
    assert set(seconds) == set(ok) and all(set(seconds[k]) == set(v) for k, v in ok.items())
    assert first["plan"] == choice.fastest(seconds, ok, GRAPHS) and "measured" in first["auto"]
    assert second["plan"] == first["plan"] and "recorded for this machine" in second["auto"]


def test_export_carries_a_gate_measured_on_the_same_weights(export, tmp_path):
    from export import gate
    from export.manifest import load_manifest, sha256_file

    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"weights")
    m = load_manifest(export)
    (export / precision_gate.GATE_FILE).unlink(missing_ok=True)
    assert not gate.carry(ckpt, export, m, log=lambda _: None)                # no sidecar
    body = {"graphs_sha256": {g: "0" * 64 for g in GRAPHS}, "checkpoint_sha256": sha256_file(ckpt),
            "precisions": {"bf16": {"per_graph": {g: {"pass": g != "liif"} for g in GRAPHS},
                                    "together": {"pass": True}}}}
    gate.sidecar(ckpt).write_text(json.dumps(body))
    assert gate.sidecar(ckpt).name == "w.precision_gate.json"
    assert not gate.carry(ckpt, export, {**m, "precision": "fp16"}, log=lambda _: None)   # fp32 only
    assert gate.carry(ckpt, export, m, log=lambda _: None)
    b = load_bundle(export)
    assert precision_gate.refusal(b, "bf16", "unet_step") is None             # re-keyed to these graphs
    assert "liif in bf16 failed" in precision_gate.refusal(b, "bf16", "liif")
    ckpt.write_bytes(b"other weights")
    (export / precision_gate.GATE_FILE).unlink()
    assert not gate.carry(ckpt, export, m, log=lambda _: None)
    assert not (export / precision_gate.GATE_FILE).exists()

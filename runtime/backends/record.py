"""Measured graph times per CPU backend: what ``auto`` chooses by (runtime/backends/choice.py).

Which CPU backend runs a graph fastest depends on the CPU (AVX2, AVX-512, BF16, AMX), the
library versions, the graph and its precision: ONNX Runtime leads on one graph, OpenVINO on
another, and bf16 doubles OpenVINO's speed where the CPU has it.  So ``auto`` times every
graph on every allowed CPU backend once (``choice.measure``, a few seconds) and keeps the
medians here, keyed by the machine (CPU model, CPUs, onnxruntime and openvino versions:
``machine_key``) and the export (its graphs' sha256: ``export_key``):

    {machine key: {export key: {"seconds": {backend: {graph: s}}, "date": ..., ...}}}

The file is ``$LDMIND_BACKEND_RECORD``, else ``$XDG_CACHE_HOME/ldmind/backends.json``
(~/.cache).  ``python -m runtime.programs.bench_backends --record`` writes the same entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from ldmind_ref.core import cpuinfo

from ..bundle import Bundle

RECORD_ENV = "LDMIND_BACKEND_RECORD"


def record_path() -> Path:
    """``$LDMIND_BACKEND_RECORD``, else ``$XDG_CACHE_HOME/ldmind/backends.json`` (~/.cache)."""
    if os.environ.get(RECORD_ENV):
        return Path(os.environ[RECORD_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ldmind" / "backends.json"


def machine_key() -> str:
    """What a measurement is valid for: CPU model, CPUs, onnxruntime and openvino versions."""
    return (f"{cpuinfo.model_name()} | {os.cpu_count()} CPUs | onnxruntime {_version('onnxruntime', 'onnxruntime-gpu')} | "
            f"openvino {_version('openvino')}")


def _version(*packages: str) -> str:
    """The installed version of the first of ``packages`` that is installed, without importing
    it (openvino's import takes seconds)."""
    for p in packages:
        try:
            return metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return "none"


def export_key(bundle: Bundle) -> str:
    """The export a measurement is of: its name and precision and a digest of its graphs."""
    digest = hashlib.sha256("".join(f"{g}:{s['sha256']};" for g, s in sorted(bundle.graphs.items())).encode())
    return f"{bundle.name}/{bundle.precision}/{digest.hexdigest()[:16]}"


def load() -> dict:
    """The record file; {} if absent or unreadable."""
    try:
        data = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def times(bundle: Bundle) -> dict[str, dict[str, float]] | None:
    """{backend: {graph: seconds}} recorded for ``bundle`` on this machine, or None."""
    entry = load().get(machine_key(), {}).get(export_key(bundle))
    s = entry.get("seconds") if isinstance(entry, dict) else None
    if not isinstance(s, dict) or not all(isinstance(v, dict) for v in s.values()):
        return None
    return s


def save(bundle: Bundle, seconds: dict[str, dict[str, float]], detail: dict | None = None) -> Path | None:
    """Record ``seconds`` ({backend: {graph: s}}) for ``bundle`` on this machine; written
    atomically.  None where the record cannot be written (a read-only home): ``auto`` then
    measures again next time, and says nothing."""
    data = load()
    data.setdefault(machine_key(), {})[export_key(bundle)] = {"seconds": seconds, **(detail or {})}
    path = record_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)
    except OSError:
        return None
    return path

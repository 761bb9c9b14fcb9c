"""Recorded backend measurements: which CPU backend ``auto`` picks on this machine.

ONNX Runtime (``cpu``) and OpenVINO (``openvino``) both run the graphs on the CPU, and which
is faster depends on the CPU (AVX2 / AVX-512 / AMX), the library versions and the model: on
the 2-core AVX2 development machine they are within noise of each other (docs/BENCHMARKS.md).
Timing both at every load would cost seconds, so ``auto`` follows a measurement recorded by

    python -m runtime.programs.bench_backends --engines ENGINES --record

which times both end to end, alternating, and writes the result to ``record_path()``.
``auto`` picks ``openvino`` for a model only when a record exists for this machine (CPU
model, core count, onnxruntime and openvino versions: ``machine_key``) and that model
(name and precision), and it says OpenVINO was faster there; otherwise it keeps ``cpu``
and ``Pipeline.skipped`` says why.
"""
from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

from ..bundle import Bundle

RECORD_ENV = "LDMIND_BACKEND_RECORD"


def record_path() -> Path:
    """``$LDMIND_BACKEND_RECORD``, else ``$XDG_CACHE_HOME/ldmind/backends.json`` (~/.cache)."""
    if os.environ.get(RECORD_ENV):
        return Path(os.environ[RECORD_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ldmind" / "backends.json"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or "unknown"."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


def machine_key() -> str:
    """What a measurement is valid for: CPU model, CPUs, onnxruntime and openvino versions."""
    return (f"{cpu_model()} | {os.cpu_count()} CPUs | onnxruntime {_version('onnxruntime', 'onnxruntime-gpu')} | "
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


def model_key(bundle: Bundle) -> str:
    return f"{bundle.name}/{bundle.precision}"


def load() -> dict:
    """The record file ({machine key: {model key: {backend: seconds, ...}}}); {} if absent or unreadable."""
    try:
        data = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(bundle: Bundle, seconds: dict[str, float], detail: dict | None = None) -> Path:
    """Record end-to-end ``seconds`` per backend for ``bundle`` on this machine."""
    data = load()
    data.setdefault(machine_key(), {})[model_key(bundle)] = {"seconds": seconds, **(detail or {})}
    path = record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
    return path


def not_faster(backend: str, bundle: Bundle, baseline: str = "cpu") -> str | None:
    """Why ``auto`` should not pick ``backend`` over ``baseline`` here (None: a record says it is faster)."""
    entry = load().get(machine_key(), {}).get(model_key(bundle))
    if not entry:
        return (f"not measured faster than {baseline} on this machine (record one with "
                f"`python -m runtime.programs.bench_backends --engines {bundle.root} --record`)")
    s = entry.get("seconds", {})
    if backend not in s or baseline not in s:
        return f"the record at {record_path()} has no {backend}/{baseline} times for {model_key(bundle)}"
    if s[backend] >= s[baseline]:
        return f"measured slower than {baseline} here ({s[backend]:.3g} s vs {s[baseline]:.3g} s end to end)"
    return None

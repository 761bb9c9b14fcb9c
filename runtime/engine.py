"""Which backend runs an export's graphs: an explicit one, or ``backend="auto"``.

    backend, engines, skipped = select(bundle, "auto")
    engines["liif"]({"features": f, "coord": c, "cell": s})     # runtime/backends/base.py

The backends are plugins (runtime/backends/, registered in ``backends.base.REGISTRY``):

- ``cpu``      ONNX Runtime, CPUExecutionProvider.  The default; the only one executed here.
- ``cuda``     ONNX Runtime, CUDAExecutionProvider with IO binding.
- ``ort-trt``  ONNX Runtime, TensorrtExecutionProvider.            (backends/onnxruntime.py)
- ``tensorrt`` native TensorRT engines listed in the manifest.      (backends/tensorrt.py)
- ``openvino`` the ONNX graphs compiled by OpenVINO for the CPU.    (backends/openvino.py)

This module reads the registry and decides; it imports no backend itself, and no backend
imports it.
"""
from __future__ import annotations

from .backends import record
from .backends.base import REGISTRY, Engine, plugin
from .bundle import Bundle
from .errors import EngineError, OutOfMemory

BACKENDS = tuple(REGISTRY)
AUTO_ORDER = ("tensorrt", "ort-trt", "cuda", "openvino", "cpu")   # fastest first
# backends that ``auto`` takes only where a recorded measurement says they beat ``cpu`` here
# (runtime/backends/record.py): both run on the same CPU, and which wins depends on it
AUTO_IF_MEASURED = ("openvino",)


def unavailable_reason(backend: str, bundle: Bundle) -> str | None:
    """Why ``backend`` cannot run here (None: worth trying)."""
    if backend not in REGISTRY:
        return f"unknown backend {backend!r}; choose from auto, {', '.join(BACKENDS)}"
    return plugin(backend).unavailable_reason(backend, bundle)


def create_engines(bundle: Bundle, backend: str, threads: int = 0) -> dict[str, Engine]:
    """All graphs of ``bundle`` on one explicit backend, or ``EngineError`` saying why not."""
    why = unavailable_reason(backend, bundle)
    if why:
        raise EngineError(f"backend {backend!r} is not available: {why}")
    return plugin(backend).create_engines(backend, bundle, threads)


def auto_unavailable_reason(backend: str, bundle: Bundle) -> str | None:
    """Why ``auto`` passes ``backend`` over (None: it takes it if it opens)."""
    why = unavailable_reason(backend, bundle)
    if why is None and backend in AUTO_IF_MEASURED:
        why = record.not_faster(backend, bundle)
    return why


def select(bundle: Bundle, backend: str = "auto", threads: int = 0
           ) -> tuple[str, dict[str, Engine], dict[str, str]]:
    """(backend, engines, {faster backend passed over: why}).  ``auto`` tries ``AUTO_ORDER``."""
    if backend != "auto":
        return backend, create_engines(bundle, backend, threads), {}
    skipped: dict[str, str] = {}
    last: EngineError | None = None
    for name in AUTO_ORDER:
        why = auto_unavailable_reason(name, bundle)
        if why is None:
            try:
                return name, create_engines(bundle, name, threads), skipped
            except EngineError as e:
                why, last = str(e), e
        skipped[name] = why
    if isinstance(last, OutOfMemory):
        raise last      # the slowest backend failed for memory: that is the user's answer
    raise EngineError("no backend can run these graphs: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))

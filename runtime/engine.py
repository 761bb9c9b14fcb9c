"""Which backend runs an export's graphs: an explicit one, or ``backend="auto"``.

    engines, skipped, how = select(bundle, "auto")
    engines["liif"]({"features": f, "coord": c, "cell": s})     # runtime/backends/base.py

The backends are plugins (runtime/backends/, registered in ``backends.base.REGISTRY``):

- ``cpu``      ONNX Runtime, CPUExecutionProvider.  Executed here, as is OpenVINO.
- ``cuda``     ONNX Runtime, CUDAExecutionProvider with IO binding.
- ``ort-trt``  ONNX Runtime, TensorrtExecutionProvider.            (backends/onnxruntime.py)
- ``tensorrt`` native TensorRT engines listed in the manifest.      (backends/tensorrt.py)
- ``openvino`` the ONNX graphs compiled by OpenVINO for the CPU;    (backends/openvino.py)
  ``openvino-bf16`` the same in bf16.

This module reads the registry and decides; it imports no backend itself, and no backend
imports it.
"""
from __future__ import annotations

from .backends import choice
from .backends.base import REGISTRY, Engine, plugin
from .bundle import Bundle
from .errors import EngineError

BACKENDS = tuple(REGISTRY)
# ``auto``: the GPU backends first, fastest first, each running every graph; where none opens,
# each graph on the fastest CPU backend allowed for it (runtime/backends/choice.py)
GPU_ORDER = ("tensorrt", "ort-trt", "cuda")


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


def backend_name(engines: dict[str, Engine]) -> str:
    """The backend running ``engines``: its name where one runs them all, else "mixed"."""
    names = {e.backend for e in engines.values()}
    return names.pop() if len(names) == 1 else "mixed"


PRECISIONS = ("auto", "fp32", "bf16")


def select(bundle: Bundle, backend: str = "auto", threads: int = 0, precision: str = "auto"
           ) -> tuple[dict[str, Engine], dict[str, str], str | None]:
    """(engines, {backend passed over: why}, how ``auto`` chose: None for an explicit backend).
    Each engine's ``backend`` names what runs it.  ``precision`` (auto, fp32, bf16) forces the
    CPU arithmetic: fp32 keeps ``auto`` off bf16, bf16 runs every graph on ``openvino-bf16``
    (quality gate or not); on an explicit CPU backend it must be the backend's own."""
    if precision not in PRECISIONS:
        raise EngineError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if backend == "auto" and precision == "bf16":
        backend = "openvino-bf16"
    if backend != "auto":
        own = choice.PRECISION.get(backend)
        if precision != "auto" and own is not None and own != precision:
            raise EngineError(f"backend {backend!r} runs {own}, not {precision}")
        return create_engines(bundle, backend, threads), {}, None
    skipped: dict[str, str] = {}
    for name in GPU_ORDER:
        why = unavailable_reason(name, bundle)
        if why is None:
            try:
                return create_engines(bundle, name, threads), skipped, "the fastest backend that opens"
            except EngineError as e:
                why = str(e)
        skipped[name] = why
    plan, engines = choice.cpu_plan(bundle, threads, fp32_only=precision == "fp32")
    return engines, skipped | plan.passed_over, plan.describe()

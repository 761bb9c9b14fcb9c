"""The ``openvino`` backend: the exported ONNX graphs compiled by OpenVINO for the CPU.

An optional extra (``pip install 'ldmind[openvino]'``); the runtime never imports openvino
unless this backend is asked for or ``auto`` considers it.  Same ``Engine`` interface as the
ONNX Runtime backends: dict of numpy arrays in, dict out; ``bind`` keeps the constants as
host arrays passed (without a copy: ``share_inputs``) on every call.

Precision, by backend name: ``openvino`` runs fp32 (``INFERENCE_PRECISION_HINT=f32``), whatever
the CPU - OpenVINO's own default on CPUs with AVX-512 BF16 or AMX is bf16, which would change
the numbers behind the user's back; ``openvino-bf16`` asks for bf16.  On a CPU without native
bf16 (``core.cpuinfo.native_bf16``) OpenVINO emulates it no faster; ``auto`` offers it only
where the CPU has it and the export's quality gate allows it (runtime/backends/choice.py).

Thread safety: one compiled model per graph; each call takes an idle infer request from a
pool (creating one when all are busy) and returns it afterwards, so concurrent calls never
share a request.
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from ..bundle import Bundle
from ..errors import EngineError
from .base import Engine, Feed, first_line, graphs_of, load_error

# backend name -> OpenVINO's inference precision
PRECISION = {"openvino": "f32", "openvino-bf16": "bf16"}


def _ov():
    import openvino
    return openvino


def unavailable_reason(backend: str, bundle: Bundle) -> str | None:
    """Why OpenVINO cannot run ``bundle`` here (None: worth trying).  Cheap: looks the package
    up without importing it (the import takes seconds)."""
    if importlib.util.find_spec("openvino") is None:
        return "openvino is not installed; pip install 'ldmind[openvino]'"
    return None


class OpenVINOEngine(Engine):
    """One graph compiled by OpenVINO for the CPU."""

    def __init__(self, core, path: Path, graph: str, threads: int = 0, declared: dict | None = None,
                 backend: str = "openvino"):
        self.backend = backend
        config = {"INFERENCE_PRECISION_HINT": PRECISION[backend], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with its own text
            raise load_error(path, "openvino", e) from None
        declared = declared or {}
        inputs, outputs = (_names(ports, [t["name"] for t in declared.get(kind) or []])
                           for kind, ports in (("inputs", self.compiled.inputs), ("outputs", self.compiled.outputs)))
        if declared:
            for kind, have in (("inputs", inputs), ("outputs", outputs)):
                want = [t["name"] for t in declared.get(kind) or []]
                if sorted(have) != sorted(want):
                    raise EngineError(f"{path}: graph {graph!r} does not match the manifest ({kind} {sorted(have)}, "
                                      f"the manifest declares {sorted(want)}): re-export with `python -m export`")
        super().__init__(graph, inputs, outputs)
        self._idle: list = []
        self._lock = threading.Lock()

    def _run(self, feed: Feed, bound: dict) -> Feed:
        with self._lock:
            request = self._idle.pop() if self._idle else None
        try:
            if request is None:
                request = self.compiled.create_infer_request()
            request.infer({**bound, **feed}, share_inputs=True)
            # the request owns its output memory and is reused: copy out before returning it
            outs = {n: np.array(request.get_output_tensor(i).data, copy=True)
                    for i, n in enumerate(self.output_names)}
        except Exception as e:  # noqa: BLE001
            raise self._error(e) from None
        with self._lock:
            self._idle.append(request)
        return outs

    def close(self) -> None:
        """Release the compiled model and its infer requests now, not at garbage collection."""
        with self._lock:
            self._idle.clear()
        self.compiled = None


def _names(ports, wanted: list[str]) -> list[str]:
    """A port's ONNX name: OpenVINO gives a tensor several (an output is also known by its
    node's name, '/Mul_output_0'); the one the manifest declares when it is among them."""
    out = []
    for p in ports:
        names = p.get_names()
        out.append(next((n for n in wanted if n in names), p.get_any_name()))
    return out


def create_engines(backend: str, bundle: Bundle, threads: int = 0, graphs: list[str] | None = None
                   ) -> dict[str, Engine]:
    try:
        core = _ov().Core()
    except Exception as e:  # noqa: BLE001 - a broken install: ImportError, RuntimeError, ...
        raise EngineError(f"openvino cannot start ({first_line(e)})") from None
    return {g: OpenVINOEngine(core, bundle.graph_path(g), g, threads, bundle.graphs[g], backend)
            for g in graphs or graphs_of(bundle)}

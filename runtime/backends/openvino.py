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

Shapes: each distinct set of input shapes gets its own copy of the graph compiled with those
shapes fixed (``model.reshape``), on its first call.  OpenVINO's dynamic-shape kernels re-infer
shapes and re-plan memory on every call; fixed shapes run the same arithmetic without that:
measured 1.07x (a 96-cell tile) to 1.4x (a 24-cell latent) faster per call, compiled in
0.05-0.9 s, the same numbers (tests/openvino_cases.py).  The image is therefore a
function of the shapes alone, never of which shapes a process met before: every call runs on
a fixed-shape copy.  A dynamic model compiled at load validates the graph and costs little
memory: OpenVINO lays out its weights on its first inference, which never comes.  Copies are
kept least recently used first, at most ``max_static`` per graph (``static_limit``: each copy
holds the graph's weights again), so memory stays bounded in a long-running service.
``max_static=0`` runs every call on the dynamic model instead: the control of
``runtime.programs.bench_static``, never chosen by the runtime.

Thread safety: each compiled copy keeps a pool of infer requests; a call takes an idle one
(creating one when all are busy) and returns it afterwards, so concurrent calls never share a
request.
"""
from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..bundle import Bundle
from ..errors import EngineError
from .base import Engine, Feed, first_line, graphs_of, io_error, load_error, names_mismatch

# backend name -> OpenVINO's inference precision
PRECISION = {"openvino": "f32", "openvino-bf16": "bf16"}

# fixed-shape copies of one graph may hold this many bytes of weights in all (each copy holds
# the graph's weights once, laid out for its precision)
STATIC_WEIGHT_BUDGET = 512 << 20
STATIC_MAX = 8          # ... and never more than this many copies


def static_limit(graph_bytes: int) -> int:
    """How many fixed-shape copies of a graph of ``graph_bytes`` (its file) to keep: as many as
    fit the weight budget, at least 2 (a tile group and its remainder alternate within one
    sampling step) and at most ``STATIC_MAX``."""
    return max(2, min(STATIC_MAX, STATIC_WEIGHT_BUDGET // max(graph_bytes, 1)))


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
    """One graph compiled by OpenVINO for the CPU, a fixed-shape copy per input shapes."""

    def __init__(self, core, path: Path, graph: str, threads: int = 0, declared: dict | None = None,
                 backend: str = "openvino", max_static: int | None = None):
        self.backend = backend
        self._core = core
        self._config = {"INFERENCE_PRECISION_HINT": PRECISION[backend], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = threads
        try:
            self._model = core.read_model(str(path))
            # compiled once with its axes dynamic: proves OpenVINO can run it here, and names its ports
            dynamic = core.compile_model(self._model, "CPU", self._config)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError with its own text
            raise load_error(path, "openvino", e) from None
        self.max_static = static_limit(path.stat().st_size) if max_static is None else max_static
        self._dynamic = _Compiled(dynamic) if self.max_static == 0 else None
        declared = declared or {}
        inputs, outputs = (_names(ports, [t["name"] for t in declared.get(kind) or []])
                           for kind, ports in (("inputs", dynamic.inputs), ("outputs", dynamic.outputs)))
        if declared:
            for kind, have in (("inputs", inputs), ("outputs", outputs)):
                why = names_mismatch(kind, have, [t["name"] for t in declared.get(kind) or []])
                if why:
                    raise io_error(path, graph, why)
        super().__init__(graph, inputs, outputs)
        # the model's input ports by the names calls use (for reshape)
        self._ports = dict(zip(_names(self._model.inputs, inputs), self._model.inputs))
        self._static: OrderedDict[tuple, _Compiled] = OrderedDict()   # shapes -> copy, least recent first
        self._lock = threading.Lock()          # guards _static
        self._compiling = threading.Lock()     # one compilation at a time

    def _compiled_for(self, feed: Feed) -> "_Compiled":
        """The fixed-shape copy for ``feed``'s shapes, compiled on first use."""
        if self._dynamic is not None:
            return self._dynamic
        key = tuple(sorted((n, a.shape) for n, a in feed.items()))
        with self._lock:
            c = self._static.get(key)
            if c is not None:
                self._static.move_to_end(key)
                return c
        with self._compiling:
            with self._lock:            # another thread may have compiled it meanwhile
                c = self._static.get(key)
            if c is None:
                c = _Compiled(self._compile_static(dict(key)))
            with self._lock:
                self._static[key] = c
                self._static.move_to_end(key)
                while len(self._static) > self.max_static:
                    self._static.popitem(last=False)
            return c

    def _compile_static(self, shapes: dict) -> object:
        ov = _ov()
        model = self._model.clone()
        model.reshape({self._ports[n].get_any_name(): ov.PartialShape(list(s)) for n, s in shapes.items()})
        return self._core.compile_model(model, "CPU", self._config)

    def _run(self, feed: Feed, bound: dict) -> Feed:
        full = {**bound, **feed}
        try:
            compiled = self._compiled_for(full)
            request = compiled.take()
            request.infer(full, share_inputs=True)
            # the request owns its output memory and is reused: copy out before returning it
            outs = {n: np.array(request.get_output_tensor(i).data, copy=True)
                    for i, n in enumerate(self.output_names)}
        except EngineError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._error(e) from None
        compiled.give(request)
        return outs

    @property
    def static_shapes(self) -> list[dict]:
        """The input shapes of the fixed-shape copies held now, least recently used first."""
        with self._lock:
            return [dict(k) for k in self._static]

    def close(self) -> None:
        """Release the compiled models and their infer requests now, not at garbage collection."""
        with self._lock:
            self._static.clear()
        self._model = self._dynamic = None


class _Compiled:
    """One compiled model and its pool of idle infer requests."""

    def __init__(self, compiled):
        self.compiled = compiled
        self._idle: list = []
        self._lock = threading.Lock()

    def take(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self.compiled.create_infer_request()

    def give(self, request) -> None:
        with self._lock:
            self._idle.append(request)


def _names(ports, wanted: list[str]) -> list[str]:
    """A port's ONNX name: OpenVINO gives a tensor several (an output is also known by its
    node's name, '/Mul_output_0'); the one the manifest declares when it is among them."""
    out = []
    for p in ports:
        names = p.get_names()
        out.append(next((n for n in wanted if n in names), p.get_any_name()))
    return out


def create_engines(backend: str, bundle: Bundle, threads: int = 0, graphs: list[str] | None = None,
                   max_static: int | None = None) -> dict[str, Engine]:
    try:
        core = _ov().Core()
    except Exception as e:  # noqa: BLE001 - a broken install: ImportError, RuntimeError, ...
        raise EngineError(f"openvino cannot start ({first_line(e)})") from None
    return {g: OpenVINOEngine(core, bundle.graph_path(g), g, threads, bundle.graphs[g], backend, max_static)
            for g in graphs or graphs_of(bundle)}

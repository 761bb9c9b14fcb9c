"""The ``Engine`` interface every backend implements, and the registry of backends.

    engine = create_engines(bundle, "cpu")["liif"]              # runtime.engine
    out = engine({"features": f, "coord": c, "cell": s})      # dict in, dict out (numpy)
    run = engine.bind({"features": f})                        # constants stay put ...
    out = run({"coord": c, "cell": s})                        # ... across many calls

A backend is a module of this package with two functions, registered by name in ``REGISTRY``:

    unavailable_reason(backend, bundle) -> str | None    why it cannot run here (None: worth
                                                          trying); cheap, imports nothing heavy
    create_engines(backend, bundle, threads, graphs=None) -> {graph: Engine}   (all the
                                                          bundle's graphs, or those named), or
                                                          EngineError saying why not

The registry names modules rather than importing them: a backend's module (and its library:
openvino takes seconds to import, tensorrt is absent from most machines) is imported only
when that backend is asked about, and this module imports none of them, so the backends
import it without a cycle.  ``runtime.engine`` reads the registry and chooses among them.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable

import numpy as np

from ..bundle import Bundle
from ..errors import EngineError, OutOfMemory

# backend name -> the module implementing it; one module may serve several names
REGISTRY: dict[str, str] = {
    "cpu": f"{__package__}.onnxruntime",        # ONNX Runtime, CPUExecutionProvider
    "cuda": f"{__package__}.onnxruntime",       # ONNX Runtime, CUDAExecutionProvider, IO binding
    "ort-trt": f"{__package__}.onnxruntime",    # ONNX Runtime, TensorrtExecutionProvider
    "tensorrt": f"{__package__}.tensorrt",      # native TensorRT engines listed in the manifest
    "openvino": f"{__package__}.openvino",      # the ONNX graphs compiled by OpenVINO for the CPU, fp32
    "openvino-bf16": f"{__package__}.openvino", # the same in bf16 (fast where the CPU has AVX-512 BF16 / AMX)
}

Feed = dict[str, np.ndarray]


def plugin(backend: str) -> ModuleType:
    """The module implementing ``backend`` (a name of ``REGISTRY``), imported on first use."""
    return importlib.import_module(REGISTRY[backend])


def graphs_of(bundle: Bundle) -> list[str]:
    """The graphs a bundle runs, in pipeline order (the encoder only for super-resolution)."""
    return (["encoder"] if bundle.conditional else []) + ["unet_step", "decoder", "liif"]


class Engine:
    """One graph on one backend.  Subclasses implement ``_run(feed, bound)``."""

    backend = "?"
    max_batch: int | None = None      # largest B a call may carry (None: unlimited)
    # LIIF queries per call this backend renders fastest with, when below the manifest's
    # query_chunk (None: the manifest's; the chunking never changes the image)
    query_tile: int | None = None

    def __init__(self, graph: str, input_names: list[str], output_names: list[str]):
        self.graph = graph
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def __call__(self, feed: Feed) -> Feed:
        return self._run(self._checked(feed), {})

    def bind(self, constants: Feed) -> Callable[[Feed], Feed]:
        """A callable that feeds ``constants`` on every call without passing them again;
        device backends keep them resident.  Cheap, per call site: safe across threads."""
        bound = self._upload(self._checked(constants, partial=True))
        return lambda feed: self._run(self._checked(feed, partial=True), bound)

    # -- for subclasses -------------------------------------------------------------------
    def _upload(self, constants: Feed) -> dict:
        return dict(constants)

    def _run(self, feed: Feed, bound: dict) -> Feed:  # pragma: no cover - abstract
        raise NotImplementedError

    def _checked(self, feed: Feed, partial: bool = False) -> Feed:
        unknown = set(feed) - set(self.input_names)
        if unknown:
            raise EngineError(f"{self.graph}: unknown input(s) {sorted(unknown)}; expects {self.input_names}")
        # ORT and TensorRT read raw memory: give them contiguous arrays
        return {k: np.ascontiguousarray(v) for k, v in feed.items()}

    def _error(self, e: Exception) -> EngineError:
        msg = first_line(e)
        if out_of_memory(msg):
            return OutOfMemory(f"the machine ran out of memory while running the {self.graph} graph "
                               f"({self.backend}); ask for a smaller output, fewer samples or a smaller input, "
                               f"or free memory")
        return EngineError(f"{self.graph} ({self.backend}): {msg}")

    def close(self) -> None:
        pass


def first_line(e: Exception) -> str:
    """The first line of a backend's exception text (its type's name when it has none): the
    user gets one line."""
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def out_of_memory(message: str) -> bool:
    """Whether a backend's error text is an allocation failure (ORT: std::bad_alloc, "Failed to
    allocate memory", a thread it could not create: "error code: 12" = ENOMEM; CUDA: "out of
    memory")."""
    m = message.lower()
    return ("bad_alloc" in m or "failed to allocate" in m or "out of memory" in m
            or "cannot allocate memory" in m)


def names_mismatch(kind: str, have, want) -> str | None:
    """How a graph's input or output names (``kind``: "inputs"/"outputs") differ from those its
    manifest entry declares (None: the same set)."""
    if sorted(have) != sorted(want):
        return f"{kind} {sorted(have)}, the manifest declares {sorted(want)}"
    return None


def io_error(path, graph: str, why: str) -> EngineError:
    """A graph file whose inputs/outputs are not its manifest entry's (``why``), for every backend."""
    return EngineError(f"{path}: graph {graph!r} does not match the manifest ({why}): the file was swapped "
                       f"or replaced; re-export with `python -m export`")


def load_error(path, library: str, e: Exception) -> EngineError:
    """A graph file ``library`` could not load: out of memory, or its own one-line reason."""
    msg = first_line(e)
    if out_of_memory(msg):
        return OutOfMemory(f"the machine ran out of memory while loading {path.name}; free memory and retry")
    return EngineError(f"{path}: {library} cannot load this graph ({msg})")

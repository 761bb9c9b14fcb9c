"""The ONNX Runtime backends: ``cpu`` (the default, the only one executed here), ``cuda`` and
``ort-trt``.

- ``cpu``      CPUExecutionProvider.
- ``cuda``     CUDAExecutionProvider with IO binding: ``bind`` uploads the constants (the LR
               latent for all DDIM steps, the decoder features for all query tiles) once into
               device-resident OrtValues; outputs are bound to device memory and copied back
               once per call.
- ``ort-trt``  TensorrtExecutionProvider (CUDA fallback for unsupported nodes), engine and
               timing caches beside the graphs, profiles from the manifest.

Thread safety: ``InferenceSession.run`` and ``run_with_iobinding`` may be called from several
threads at once (each call makes its own IO binding).
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from pathlib import Path

from ..bundle import Bundle
from ..errors import EngineError
from .base import Engine, Feed, graphs_of, io_error, load_error, names_mismatch

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "ort-trt": "TensorrtExecutionProvider"}
# ORT's own log lines ("[E:onnxruntime:...] ... bad_alloc", "[W:onnxruntime:...] telemetry ...")
# would break the one-line contract: only fatal messages, no telemetry.  Errors still reach us
# as exceptions, which the CLI reports in one line.
ORT_LOG_SEVERITY = 4   # 0 verbose, 1 info, 2 warning, 3 error, 4 fatal
# ONNX Runtime on the CPU renders faster in smaller query chunks than the manifest's 65,536:
# the MLP's hidden activations (4 neighbours x chunk x width floats) stay in cache between its
# MatMul, Add and Relu nodes.  4,096 was the fastest or within noise of it in every run on the
# 2-core development machine (small: 1.2-1.5x less CPU time than 65,536; 1,024 was best in one
# run and worst in another); docs/BENCHMARKS.md "LIIF stage".
CPU_QUERY_TILE = 4096


@contextlib.contextmanager
def _quiet_stderr_fd():
    """File descriptor 2 pointed at /dev/null meanwhile: native code's log lines (ONNX Runtime
    writes "[W:onnxruntime:...] Failed to persist telemetry device ID" while it is imported,
    when $HOME is not writable, before any severity can be set) do not reach the user.
    Python's own errors are exceptions and still do."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_IMPORT_LOCK = threading.Lock()


def _ort():
    try:
        if "onnxruntime" not in sys.modules:
            # the first import only, and one thread at a time: fd 2 is process-wide, and a
            # second redirection saved while the first is active would restore /dev/null
            with _IMPORT_LOCK, _quiet_stderr_fd():
                import onnxruntime  # noqa: F401
        import onnxruntime as ort
    except ImportError as e:
        raise EngineError(f"onnxruntime is not installed ({e}); pip install onnxruntime") from None
    if not getattr(_ort, "configured", False):
        ort.set_default_logger_severity(ORT_LOG_SEVERITY)
        if hasattr(ort, "disable_telemetry_events"):
            ort.disable_telemetry_events()
        _ort.configured = True
    return ort


_ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)", "int64": "tensor(int64)",
              "int32": "tensor(int32)"}


def io_mismatch(session, declared: dict) -> str | None:
    """How an ORT session's inputs/outputs differ from a manifest graph entry's declared
    ``inputs``/``outputs`` ([{name, dtype, shape}]; None: they agree).  Names and dtypes must
    match; shapes must have the same rank and the same fixed sizes (symbolic axes: any)."""
    for kind, got in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        want = {t["name"]: t for t in declared.get(kind) or []}
        have = {t.name: t for t in got}
        why = names_mismatch(kind, have, want)
        if why:
            return why
        for name, t in have.items():
            w = want[name]
            if t.type != _ORT_TYPES.get(w["dtype"], w["dtype"]):
                return f"{kind[:-1]} {name!r} is {t.type}, the manifest declares {w['dtype']}"
            shape = list(t.shape)
            if len(shape) != len(w["shape"]) or any(isinstance(d, int) and not isinstance(d, bool) and g != d
                                                   for d, g in zip(w["shape"], shape)):
                return f"{kind[:-1]} {name!r} has shape {shape}, the manifest declares {w['shape']}"
    return None


def verify_graphs(bundle: Bundle) -> None:
    """Open every graph of ``bundle`` on the CPU (no optimisation: cheap) and check its
    inputs/outputs against the manifest (``io_mismatch``); ``EngineError`` naming the file."""
    ort = _ort()
    so = ort.SessionOptions()
    so.log_severity_level = ORT_LOG_SEVERITY
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for g in graphs_of(bundle):
        path = bundle.graph_path(g)
        try:
            session = _session(path, so, ["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise load_error(path, "onnxruntime", e) from None
        why = io_mismatch(session, bundle.graphs[g])
        if why:
            raise io_error(path, g, why)


def _session(path: Path, so, providers: list):
    """``ort.InferenceSession`` without its console output: when a provider fails to start (a
    thread it cannot create for lack of memory, say) ORT's Python wrapper *prints* an "EP Error"
    banner to stdout and retries on the CPU.  stdout carries only the output path, so the
    banner is swallowed; the retry's own failure, if any, is raised as usual."""
    with contextlib.redirect_stdout(io.StringIO()):
        return _ort().InferenceSession(str(path), sess_options=so, providers=providers)


class OrtEngine(Engine):
    """ONNX Runtime on the CPU (also the base of the GPU providers)."""

    backend = "cpu"
    query_tile = CPU_QUERY_TILE

    def __init__(self, path: Path, graph: str, providers: list, threads: int = 0, declared: dict | None = None):
        ort = _ort()
        so = ort.SessionOptions()
        so.log_severity_level = ORT_LOG_SEVERITY  # log lines would break the one-line CLI contract
        if threads:
            so.intra_op_num_threads = threads
        if providers[0] == "CPUExecutionProvider":
            # No CPU arena: with it each session keeps its largest activations for good (the
            # encoder's while the decoder runs); without it a 96 x 96 tile through encoder, U-Net
            # and decoder peaked at 312 MiB instead of 527 and held 170 MiB instead of 527,
            # at the same speed (measured, small model).
            so.enable_cpu_mem_arena = False
        try:
            self.session = _session(path, so, providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
            raise load_error(path, "onnxruntime", e) from None
        if declared is not None:
            why = io_mismatch(self.session, declared)
            if why:
                raise io_error(path, graph, why)
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        if wanted not in self.session.get_providers():
            # ORT falls back to the CPU silently when a GPU provider fails to initialise
            raise EngineError(f"{path.name}: {wanted} did not initialise (no usable GPU or driver?)")
        super().__init__(graph, [i.name for i in self.session.get_inputs()],
                         [o.name for o in self.session.get_outputs()])

    def _run(self, feed: Feed, bound: dict) -> Feed:
        try:
            outs = self.session.run(self.output_names, {**bound, **feed})
        except Exception as e:  # noqa: BLE001
            raise self._error(e) from None
        return dict(zip(self.output_names, outs))


class OrtCudaEngine(OrtEngine):
    """ONNX Runtime with CUDA (or TensorRT) and IO binding.  Not executed here (no GPU)."""

    backend = "cuda"
    device_id = 0
    query_tile = None

    def _upload(self, constants: Feed) -> dict:
        ort = _ort()
        # one device copy per constant, reused by every call of the bound function
        return {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", self.device_id) for k, v in constants.items()}

    def _run(self, feed: Feed, bound: dict) -> Feed:
        try:
            io = self.session.io_binding()      # per call: bindings are not shared between threads
            for name, value in bound.items():
                io.bind_ortvalue_input(name, value)
            for name, arr in feed.items():
                io.bind_cpu_input(name, arr)
            for name in self.output_names:
                io.bind_output(name, "cuda", self.device_id)
            self.session.run_with_iobinding(io)
            outs = io.copy_outputs_to_cpu()
        except Exception as e:  # noqa: BLE001
            raise self._error(e) from None
        return dict(zip(self.output_names, outs))


class OrtTensorRTEngine(OrtCudaEngine):
    """ONNX Runtime's TensorRT execution provider.  Not executed here (no GPU)."""

    backend = "ort-trt"


_ENGINES = {"cpu": OrtEngine, "cuda": OrtCudaEngine, "ort-trt": OrtTensorRTEngine}


def _profile_option(bundle: Bundle, graph: str, which: int) -> str:
    """``trt_profile_*_shapes`` value, "name:1x3x8x8,..." from the manifest's graph profile."""
    g = bundle.graphs[graph]
    prof = {k: v[which] for k, v in (g.get("profile") or {}).items()}
    parts = []
    for spec in g.get("inputs") or []:
        dims = [str(prof.get(d, 1)) if isinstance(d, str) else str(d) for d in spec["shape"]]
        parts.append(f"{spec['name']}:{'x'.join(dims)}")
    return ",".join(parts)


def providers(backend: str, bundle: Bundle, graph: str) -> list:
    """The ORT providers list (with their options) that runs ``graph`` on ``backend``."""
    if backend == "cpu":
        return ["CPUExecutionProvider"]
    cuda = ("CUDAExecutionProvider", {"device_id": 0})
    if backend == "cuda":
        return [cuda, "CPUExecutionProvider"]
    cache = _cache_dir(bundle)
    trt_opts = {"device_id": 0, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache),
                "trt_fp16_enable": bundle.precision == "fp16"}
    if bundle.graphs[graph].get("profile") and bundle.graphs[graph].get("inputs"):
        for i, key in enumerate(("min", "opt", "max")):
            trt_opts[f"trt_profile_{key}_shapes"] = _profile_option(bundle, graph, i)
    return [("TensorrtExecutionProvider", trt_opts), cuda, "CPUExecutionProvider"]


def _cache_dir(bundle: Bundle) -> Path:
    # engines are GPU- and version-specific caches: beside the graphs when writable
    d = bundle.root / ".ort-trt-cache"
    if not os.access(bundle.root, os.W_OK):
        d = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ldmind" / bundle.root.name
    d.mkdir(parents=True, exist_ok=True)
    return d


def unavailable_reason(backend: str, bundle: Bundle) -> str | None:
    provider = PROVIDERS[backend]
    try:
        available = _ort().get_available_providers()
    except EngineError as e:
        return str(e)
    if provider not in available:
        hint = "" if backend == "cpu" else " (install onnxruntime-gpu in place of onnxruntime)"
        return f"onnxruntime has no {provider}{hint}"
    return None


def create_engines(backend: str, bundle: Bundle, threads: int = 0, graphs: list[str] | None = None
                   ) -> dict[str, Engine]:
    return {g: _ENGINES[backend](bundle.graph_path(g), g, providers(backend, bundle, g), threads, bundle.graphs[g])
            for g in graphs or graphs_of(bundle)}

"""The ``tensorrt`` backend, native TensorRT: serialized engines listed in the manifest's ``tensorrt`` block.

NOT EXECUTED HERE: written to the documented TensorRT 10 Python API (name-based I/O:
``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) and the cuda-python runtime bindings
(``cudaMalloc``, ``cudaMemcpyAsync``, stream capture into CUDA graphs).  The machines this
project is tested on have no GPU; see docs/RUNTIME.md.

Design:
- one device buffer per I/O tensor, allocated once at the profile's maximum shape and
  registered with ``set_tensor_address`` once: a call only copies inputs in and outputs
  out, it never allocates;
- constants given to ``bind`` (the LR latent, the decoder features) get their own
  device buffers, uploaded once;
- CUDA graphs (``LDMIND_CUDA_GRAPHS=1``): after one ordinary launch of a given set of
  shapes and addresses (TensorRT needs it to settle lazily-initialised state), the
  second is captured and later ones replay the graph; copies stay outside the graph
  because they hit the same buffers every time;
- one execution context per engine, guarded by a lock: calls from several threads are
  serialised rather than corrupting each other's shapes.
"""
from __future__ import annotations

import hashlib
import os
import threading

import numpy as np

from ..bundle import Bundle
from ..errors import EngineError
from .base import Engine, Feed, graphs_of


def _cudart():
    try:
        from cuda.bindings import runtime as cudart      # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart                          # older cuda-python
    return cudart


def _ck(result):
    """cuda-python returns (error, *values): raise on error, unwrap the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    cudart = _cudart()
    if int(err) != int(cudart.cudaError_t.cudaSuccess):
        raise EngineError(f"CUDA error {int(err)}: {cudart.cudaGetErrorString(err)[1]}")
    return values[0] if len(values) == 1 else (values or None)


def device_description() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of device 0."""
    cudart = _cudart()
    props = _ck(cudart.cudaGetDeviceProperties(0))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}"


def unavailable_reason(backend: str, bundle: Bundle) -> str | None:
    info = bundle.tensorrt
    if not info or not info.get("engines"):
        return "the manifest lists no TensorRT engines (export them on the target GPU)"
    try:
        import tensorrt as trt
        _cudart()
    except ImportError as e:
        return f"the tensorrt and cuda-python packages are needed ({e})"
    missing = [g for g in graphs_of(bundle) if g not in info["engines"]]
    if missing:
        return f"the manifest has no TensorRT engine for {missing}"
    try:
        _gpu, cc = device_description()
    except Exception as e:  # noqa: BLE001 - no driver / no device
        return f"no usable CUDA device ({e})"
    # engines are tied to the TensorRT version and the compute capability that built them;
    # the exporter's own check decides, so writer and reader agree
    from export.manifest import engine_mismatch
    why = engine_mismatch(bundle.manifest, trt.__version__, cc)
    return f"{why}: rebuild them with `python -m export --trt` on this machine" if why else None


class TrtEngine(Engine):
    backend = "tensorrt"

    def __init__(self, bundle: Bundle, graph: str):
        import tensorrt as trt

        cudart = _cudart()
        entry = bundle.tensorrt["engines"][graph]
        path = bundle.root / entry["file"]
        if not path.is_file():
            raise EngineError(f"{path}: TensorRT engine file missing (listed in manifest.json)")
        blob = path.read_bytes()
        if entry.get("sha256") and hashlib.sha256(blob).hexdigest() != entry["sha256"]:
            raise EngineError(f"{path}: checksum mismatch (file changed since export); re-export the engines")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(blob)
        if self._engine is None:
            raise EngineError(f"{path}: TensorRT could not deserialize this engine (version or GPU mismatch?)")
        self._ctx = self._engine.create_execution_context()
        self._stream = _ck(cudart.cudaStreamCreate())
        self._lock = threading.Lock()
        self._graphs: dict[tuple, object] = {}
        self._seen: set[tuple] = set()
        self._use_graphs = os.environ.get("LDMIND_CUDA_GRAPHS", "0") == "1"
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        super().__init__(graph, inputs, outputs)
        self._dtype = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        # maximum shapes: inputs from the engine's profile 0, outputs from the manifest's
        # symbolic shapes with every symbol at its profile maximum
        self._max = {n: tuple(self._engine.get_tensor_profile_shape(n, 0)[2]) for n in inputs}
        prof = {k: v[2] for k, v in (bundle.graphs[graph].get("profile") or {}).items()}
        for spec in bundle.graphs[graph].get("outputs") or []:
            self._max[spec["name"]] = tuple(prof[d] if isinstance(d, str) else d for d in spec["shape"])
        self.max_batch = prof.get("B")
        self._buf = {}
        for n in names:
            nbytes = int(np.prod(self._max[n])) * self._dtype[n].itemsize
            self._buf[n] = _ck(cudart.cudaMalloc(max(nbytes, 1)))
            self._ctx.set_tensor_address(n, self._buf[n])

    def _upload(self, constants: Feed) -> dict:
        cudart = _cudart()
        bound = {}
        for name, arr in constants.items():
            self._check_shape(name, arr)
            ptr = _ck(cudart.cudaMalloc(max(arr.nbytes, 1)))
            _ck(cudart.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            bound[name] = (ptr, arr.shape, _Free(ptr))
        return bound

    def _check_shape(self, name: str, arr: np.ndarray) -> None:
        top = self._max[name]
        if len(arr.shape) != len(top) or any(a > m for a, m in zip(arr.shape, top)):
            raise EngineError(f"{self.graph} (tensorrt): {name} {arr.shape} exceeds the engine profile "
                              f"maximum {top}; re-export with a larger profile or use --backend cuda")

    def _run(self, feed: Feed, bound: dict) -> Feed:
        cudart = _cudart()
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            key = []
            for name, (ptr, shape, _) in bound.items():
                self._ctx.set_input_shape(name, shape)
                self._ctx.set_tensor_address(name, ptr)
                key.append((name, shape, ptr))
            for name, arr in feed.items():
                arr = arr.astype(self._dtype[name], copy=False)
                self._check_shape(name, arr)
                self._ctx.set_input_shape(name, arr.shape)
                self._ctx.set_tensor_address(name, self._buf[name])
                _ck(cudart.cudaMemcpyAsync(self._buf[name], arr.ctypes.data, arr.nbytes, h2d, self._stream))
                key.append((name, arr.shape, self._buf[name]))
            self._launch(tuple(sorted(key)))
            outs = {}
            for name in self.output_names:
                out = np.empty(tuple(self._ctx.get_tensor_shape(name)), dtype=self._dtype[name])
                _ck(cudart.cudaMemcpyAsync(out.ctypes.data, self._buf[name], out.nbytes, d2h, self._stream))
                outs[name] = out
            _ck(cudart.cudaStreamSynchronize(self._stream))
        return {k: v.astype(np.float32, copy=False) if v.dtype == np.float16 else v for k, v in outs.items()}

    def _launch(self, key: tuple) -> None:
        cudart = _cudart()
        exec_graph = self._graphs.get(key)
        if exec_graph is not None:
            _ck(cudart.cudaGraphLaunch(exec_graph, self._stream))
            return
        if not self._use_graphs or key not in self._seen:
            self._seen.add(key)
            if not self._ctx.execute_async_v3(self._stream):
                raise EngineError(f"{self.graph} (tensorrt): execute_async_v3 failed")
            return
        _ck(cudart.cudaStreamBeginCapture(self._stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        ok = self._ctx.execute_async_v3(self._stream)
        graph = _ck(cudart.cudaStreamEndCapture(self._stream))
        if not ok:
            raise EngineError(f"{self.graph} (tensorrt): execute_async_v3 failed during CUDA graph capture")
        self._graphs[key] = _ck(cudart.cudaGraphInstantiate(graph, 0))
        _ck(cudart.cudaGraphLaunch(self._graphs[key], self._stream))

    def close(self) -> None:
        cudart = _cudart()
        for ptr in self._buf.values():
            cudart.cudaFree(ptr)
        self._buf.clear()


class _Free:
    """Frees a bound constant's device buffer when the bound function is dropped."""

    def __init__(self, ptr):
        self.ptr = ptr

    def __del__(self):
        try:
            _cudart().cudaFree(self.ptr)
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def create_engines(backend: str, bundle: Bundle, threads: int = 0, graphs: list[str] | None = None
                   ) -> dict[str, Engine]:
    """``threads`` is the CPU backends' setting: TensorRT runs on the GPU."""
    return {g: TrtEngine(bundle, g) for g in graphs or graphs_of(bundle)}

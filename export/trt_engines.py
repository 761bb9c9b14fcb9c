"""TensorRT engines from the exported ONNX graphs, through polygraphy's Python API.

NOT executed by the test suite (no GPU, no TensorRT there): written to the documented
polygraphy API (``network_from_onnx_path``, ``CreateConfig``, ``Profile``,
``engine_from_network``, ``save_engine``) and exercised only by ``python -m export --trt``
on a machine with an NVIDIA GPU and the ``tensorrt`` package.

Precision: the network is parsed *strongly typed*, so TensorRT gives every tensor the
type the ONNX graph declares and obeys its casts.  ``--trt`` therefore uses the fp16 graphs
(``python -m export`` turns ``--fp16`` on with ``--trt``): half precision where the graph is
half, and the fp32 islands of the fp16 policy (normalisation statistics, softmax, DDIM
update, LIIF coordinates and weights) stay fp32 in the engine, exactly as tested on CPU.
A weakly typed build with the FP16 builder flag would let TensorRT pick fp16 for any layer,
those islands included.

Engines are tied to the TensorRT version and the GPU model that built them: both go into
the manifest (``manifest.engine_mismatch`` tells the runtime when to refuse).  The tactic
timing cache (also GPU-specific) is ``timing.cache`` beside the engines; a rebuild in the
same directory reuses it.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

from . import manifest as mf
from .specs import GraphSpec

TIMING_CACHE = "timing.cache"


def gpu_info() -> tuple[str, str] | None:
    """(name, compute capability "major.minor") of GPU 0, or None without a visible GPU."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30, check=True).stdout
            name, cc = (s.strip() for s in out.splitlines()[0].rsplit(",", 1))
            return name, cc
        except (subprocess.SubprocessError, OSError, IndexError, ValueError):
            pass
    try:
        import torch
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return torch.cuda.get_device_name(0), f"{major}.{minor}"
    except Exception:  # a torch without CUDA support: no GPU as far as we can tell
        pass
    return None


def available() -> tuple[bool, str]:
    """Whether engines can be built here, and if not, why (one line)."""
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # ImportError, or a broken install raising OSError etc.
        return False, f"the tensorrt package does not import ({type(e).__name__}: {e})"
    if gpu_info() is None:
        return False, "tensorrt imports but no CUDA GPU is visible"
    return True, ""


def profile_shapes(spec: GraphSpec) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Per dynamic input: (min, opt, max) shapes from the spec's symbol ranges."""
    out = {}
    for t in spec.inputs:
        if any(isinstance(d, str) for d in t.shape):
            out[t.name] = tuple(tuple(spec.profile[d][k] if isinstance(d, str) else d for d in t.shape)
                                for k in range(3))
    return out


def build_engines(out_dir: Path, specs: dict[str, GraphSpec], files: dict[str, str], precision: str,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """One engine per graph, ``NAME.engine`` beside ``NAME.onnx``; returns the manifest's
    ``tensorrt`` entry."""
    import tensorrt as trt
    from polygraphy.backend.trt import (CreateConfig, Profile, engine_from_network,
                                        network_from_onnx_path, save_engine)

    name_cc = gpu_info()
    if name_cc is None:
        raise RuntimeError("no CUDA GPU visible")
    cache = str(out_dir / TIMING_CACHE)
    engines: dict[str, Any] = {}
    for name, spec in specs.items():
        shapes = profile_shapes(spec)
        profile = Profile()
        for tensor, (lo, opt, hi) in shapes.items():
            profile.add(tensor, min=lo, opt=opt, max=hi)
        network = network_from_onnx_path(str(out_dir / files[name]), strongly_typed=True)
        # load_timing_cache warns (and starts empty) when the file does not exist yet
        config = CreateConfig(profiles=[profile], load_timing_cache=cache)
        engine = engine_from_network(network, config=config, save_timing_cache=cache)
        file = f"{name}.engine"
        save_engine(engine, path=str(out_dir / file))
        engines[name] = {"file": file, "sha256": mf.sha256_file(out_dir / file), "precision": precision,
                         "profiles": [{k: {"min": list(v[0]), "opt": list(v[1]), "max": list(v[2])}
                                       for k, v in shapes.items()}]}
        log(f"  {file:<15} {(out_dir / file).stat().st_size / 2**20:9.1f} MiB  TensorRT {trt.__version__}")
    return {"version": trt.__version__, "gpu": name_cc[0], "compute_capability": name_cc[1],
            "timing_cache": TIMING_CACHE, "engines": engines}

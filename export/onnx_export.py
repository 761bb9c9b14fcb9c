"""One graph -> one self-contained ONNX file: trace, fold constants, check.

- The legacy TorchScript exporter (``dynamo=False``): the dynamo exporter's optimiser folds
  LIIF's ``area + 1e-9`` to ``area`` (0/0 = NaN at image corners) and fixed a symbolic batch
  to 1 when the example batch was 1.  Examples here have batch 2 and latent sizes that no
  test uses, and the result's I/O is checked against the declared spec.
- Cleanup: polygraphy's constant folding (onnx-graphsurgeon underneath: folds what is
  constant, e.g. fp16 weights cast to fp32 for GroupNorm, static parts of shapes) and
  removal of dead nodes; then ``onnx.checker`` with full shape inference.
- Weights stay embedded (one file per graph): the largest graph (div2k-sr's U-Net, fp32)
  is ~0.45 GB, below protobuf's 2 GB limit, which is checked.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import onnx
import torch

from .specs import DEFAULT_OPSET, GraphSpec

# protobuf refuses to serialise a message of 2 GiB or more
_PROTOBUF_LIMIT = 2 ** 31 - 1
_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64",
                onnx.TensorProto.FLOAT16: "float16"}


class ExportError(RuntimeError):
    pass


def _trace(module: torch.nn.Module, spec: GraphSpec, example: dict[str, torch.Tensor],
           path: Path, opset: int) -> None:
    args = tuple(example[t.name] for t in spec.inputs)
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter announces its deprecation, and the tracer warns about
        # torch.tensor(constant) (LIIF's four neighbour offsets, constant by design).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        # torch's own folding skips strided slices; polygraphy's folding runs afterwards
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        try:
            torch.onnx.export(
                module, args, str(path), dynamic_axes=spec.dynamic_axes(), dynamo=False,
                opset_version=opset, export_params=True, do_constant_folding=True,
                input_names=[t.name for t in spec.inputs], output_names=[t.name for t in spec.outputs])
        except torch.onnx.errors.OnnxExporterError as e:
            raise ExportError(f"graph {spec.name}: the ONNX exporter failed at opset {opset}: "
                              f"{str(e).splitlines()[0]}") from None


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """polygraphy constant folding + graph-surgeon cleanup (errors are raised, not hidden)."""
    import onnxruntime
    from polygraphy.backend.onnx import fold_constants as _fold
    from polygraphy.logger import G_LOGGER

    # folding evaluates subgraphs with ONNX Runtime, whose optimiser logs harmless warnings
    onnxruntime.set_default_logger_severity(3)
    with G_LOGGER.verbosity(G_LOGGER.WARNING):
        return _fold(model, error_ok=False)


def declare_outputs(model: onnx.ModelProto, spec: GraphSpec, where: str) -> None:
    """Name the output dimensions with the spec's symbols.

    Shape inference during folding writes derived expressions in their place (the
    encoder's h becomes floor(floor(4.0*H)/2)/2)); the spec's names are the contract with
    the runtime.  Only symbols are renamed: the rank and every static size must agree."""
    for v, t in zip(model.graph.output, spec.outputs):
        dims = v.type.tensor_type.shape.dim
        if len(dims) != len(t.shape):
            raise ExportError(f"{where}: output {t.name} has rank {len(dims)}, declared {list(t.shape)}")
        for d, want in zip(dims, t.shape):
            if isinstance(want, str):
                d.Clear()
                d.dim_param = want
            elif d.dim_value != want:
                raise ExportError(f"{where}: output {t.name} has shape {_dims(v)}, declared {list(t.shape)}")


def _dims(value_info) -> list[str | int]:
    return [d.dim_param if d.dim_param else d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_io(model: onnx.ModelProto, spec: GraphSpec, where: str) -> None:
    """The graph's inputs/outputs are exactly the spec's: names, order, dtypes, and every
    dimension - symbols stay symbols (dynamic), integers stay those integers."""
    for kind, got, want in (("input", model.graph.input, spec.inputs),
                            ("output", model.graph.output, spec.outputs)):
        got_names = [v.name for v in got]
        if got_names != [t.name for t in want]:
            raise ExportError(f"{where}: {kind}s {got_names}, declared {[t.name for t in want]}")
        for v, t in zip(got, want):
            dtype = _ONNX_DTYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type))
            if dtype != t.dtype or _dims(v) != list(t.shape):
                raise ExportError(f"{where}: {kind} {t.name} is {dtype} {_dims(v)}, "
                                  f"declared {t.dtype} {list(t.shape)}")


def export_graph(module: torch.nn.Module, spec: GraphSpec, example: dict[str, torch.Tensor],
                 path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export ``module`` as ``path``; returns the saved model."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        _trace(module, spec, example, tmp, opset)
        model = fold_constants(onnx.load(str(tmp)))
        model.producer_name = "ldmind.export"
        size = model.ByteSize()
        if size > _PROTOBUF_LIMIT:
            raise ExportError(f"{path}: {size / 2**30:.2f} GiB is beyond the 2 GiB that one ONNX "
                              f"file with embedded weights can hold")
        if len(model.graph.output) != len(spec.outputs):
            raise ExportError(f"{path}: {len(model.graph.output)} outputs, declared {len(spec.outputs)}")
        declare_outputs(model, spec, str(path))
        check_io(model, spec, str(path))
        onnx.save(model, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"{path}: onnx.checker rejects the graph: {e}") from None
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return model

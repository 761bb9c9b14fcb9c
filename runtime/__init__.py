"""ldmind runtime: arbitrary-scale upsampling and generation on exported graphs.

    from runtime import Pipeline
    pipe = Pipeline.load("engines/small")                 # backend="auto"
    [hr] = pipe.upscale(Image.open("in.png"), scale=3.7)

Depends on numpy, Pillow, onnxruntime, pypng, tifffile and jsonschema only (GPU backends, the service, plots optional); never imports torch.
See docs/RUNTIME.md.
"""
from __future__ import annotations

from .errors import EngineError, InputError, LdmindError, NumericalError
from .pipeline import Pipeline

__all__ = ["Pipeline", "LdmindError", "InputError", "EngineError", "NumericalError"]

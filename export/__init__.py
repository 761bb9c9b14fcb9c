"""ONNX export of ldmind (``python -m export``; docs/EXPORT.md).

Torch-free modules, imported by the runtime: ``specs`` (the graph declarations) and
``manifest`` (reading and validating an export directory against the one manifest schema,
``manifest.schema.json``); ``schema_header`` writes that schema as the C++ loader's table.
The rest imports torch:
``graphs`` (the wrappers around the reference), ``onnx_export`` (trace, fold, check),
``build`` (a whole export directory), ``quantize`` (``--int8``: static quantization of the
fp32 graphs, calibrated by ``calibration`` on inputs the runtime records), ``trt_engines``
(TensorRT via polygraphy), ``reference`` (saved reference outputs for the polygraphy CLI),
``cli``.  ``feeds``
(valid random graph inputs) needs numpy and ldmind_ref's torch-free helpers only.
"""

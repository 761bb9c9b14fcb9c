"""ONNX export of ldmind (``python -m export``).  This package's ``specs`` module is
torch-free so that the runtime can import the graph declarations."""

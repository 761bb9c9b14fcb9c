"""The torch-free math that the reference, the exporter and the runtime share.

Sampler schedules (``diffusion``), the RNG contract (``noise``), output coordinates
(``coords``), pixel conversions (``images``), the latent tile plan (``latent_tiles``), the
tiled sampling sequence (``tiled_sampling``), back-projection (``consistency``), and the
request contract (``contract``: every default, limit, progress stage name and validation
message, also written out for the C++ runtime).  numpy only: torch is never imported here
(``tests/test_core_torch_free.py`` fails if it is), so that the runtime can use all of it.
Importing the package imports nothing.
"""

"""ldmind_ref: the paper-faithful PyTorch reference of ldmind.

Importing the package imports nothing heavy: ``diffusion``, ``noise``, ``coords``,
``images``, ``metrics`` and ``benchmark`` are torch-free and shared with the runtime; the
model modules import torch.
"""

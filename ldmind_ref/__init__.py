"""ldmind_ref: the paper-faithful PyTorch reference of ldmind.

Importing the package imports nothing heavy.  ``ldmind_ref.core`` holds the torch-free math
shared with the exporter and the runtime (schedules, noise, coordinates, tiles,
back-projection); ``metrics`` and ``benchmark`` are torch-free too; the model modules import
torch.
"""

"""Run options shared by ``python -m ldmind_ref.train STAGE`` (``train.py``) and ``... train all``
(``train_all.py``): here, below both, so that neither imports the other for them."""
from __future__ import annotations

import argparse


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the stage commands and ``all``."""
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for forward and loss")
    p.add_argument("--workers", type=int, default=-1,
                   help="batch-preparing processes (default: 0 on the CPU, up to 12 on CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--ceiling", type=int, default=0, metavar="SIDE",
                   help="stage 1: also log the 4x ceiling (PSNR-Y of ND(E(HR)) vs bicubic) on SIDE-pixel "
                        "centre crops of the validation photos at every validation, and in stage "
                        "sampled the raw sample's and the defaults' margins over bicubic (0: off)")

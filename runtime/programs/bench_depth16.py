"""A smooth 16-bit gradient through the pipeline at 16 and at 8 bits: is there 8-bit banding?

    python -m runtime.programs.bench_depth16 [--engines engines/small] [--steps 10] [--json OUT]

The LR is a sky-like ramp (64 x 48, about six 8-bit levels across each channel, every
16-bit value distinct), upscaled 4x once as uint16 and once reduced to uint8.  Printed per
path: distinct values in the red channel (banding: a handful of flat bands at 8 bits), the
output shrunk back by PIL's bicubic (float mode, an implementation apart from ours) against
the 16-bit LR, in 16-bit units (257 = one 8-bit level), and the mean step between
horizontal neighbours.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .. import Pipeline
from ..depth16 import reduce8


def gradient(h: int = 48, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    ramp = np.array([30000.0, 36000, 52000]) + (x / (w - 1))[:, :, None] * [1500.0, 1200, 900] \
        + (y / (h - 1))[:, :, None] * 300
    return np.floor(ramp + 0.5).astype(np.uint16)


def shrink(img: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(img[:, :, c].astype(np.float32), "F").resize((w, h), Image.BICUBIC),
                                np.float64) for c in range(3)], axis=-1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="engines/small")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    pipe = Pipeline.load(args.engines)
    lr16 = gradient()
    h, w = lr16.shape[:2]
    rows = []
    for name, lr in (("16-bit", lr16), ("8-bit", reduce8(lr16))):
        t = time.perf_counter()
        out, = pipe.upscale(lr, scale=4, steps=args.steps, seed=0, output="array")
        o = out.astype(np.float64) * (65535 / np.iinfo(out.dtype).max)
        err = np.abs(shrink(o, h, w) - lr16)
        rows.append({"path": name, "dtype": str(out.dtype), "seconds": round(time.perf_counter() - t, 2),
                     "distinct_values_red": int(len(np.unique(out[:, :, 0]))),
                     "shrunk_vs_lr16_max": round(float(err.max()), 1), "shrunk_vs_lr16_mean": round(float(err.mean()), 2),
                     "mean_abs_dx": round(float(np.abs(np.diff(o, axis=1)).mean()), 1)})
        print(" ".join(f"{k}={v}" for k, v in rows[-1].items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"engines": args.engines, "steps": args.steps, "lr": [w, h], "scale": 4,
                                               "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Memory benchmark: render a 48x48 latent at 64x (3072 x 3072) and report peak RSS.

    python -m runtime.programs.bench_memory [--engines engines/tiny-random] [--latent 48] [--scale 64] [--tile Q]

Budget: peak RSS <= the output's bytes + 1 GiB (the render is tiled: nothing else grows
with the scale).  Run it in its own process (peak RSS is per process); ``python -m
runtime.programs.bench`` does.  Prints one JSON object; exit status 1 when over budget.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from .benchlib import current_rss, peak_rss

GiB = 1024 ** 3


def run(engines: str, latent: int, scale: int, tile: int | None, backend: str = "cpu") -> dict:
    from ldmind_ref.core import noise

    from ..pipeline import Pipeline

    pipe = Pipeline.load(engines, backend=backend, tile=tile)
    z = noise.gaussian(0, 0, (1, pipe.bundle.z_channels, latent, latent))
    size = latent * scale
    pipe.render(z, [(8, 8)])                     # warm up the sessions before measuring
    before = peak_rss()
    t0 = time.perf_counter()
    [out] = pipe.render(z, [(size, size)])
    seconds = time.perf_counter() - t0
    peak = peak_rss()
    out_bytes = out.nbytes
    return {
        "engines": engines, "model": pipe.bundle.name, "backend": pipe.backend,
        "latent": [latent, latent], "scale": scale, "output": [size, size], "tile": pipe.tile,
        "output_bytes": out_bytes, "peak_rss_bytes": peak, "peak_rss_before_render_bytes": before,
        "budget_bytes": out_bytes + GiB, "within_budget": peak <= out_bytes + GiB,
        "render_seconds": round(seconds, 2), "megapixels_per_second": round(size * size / 1e6 / seconds, 3),
        "rss_after_bytes": current_rss(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.programs.bench_memory", description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="engines/tiny-random")
    p.add_argument("--latent", type=int, default=48)
    p.add_argument("--scale", type=int, default=64)
    p.add_argument("--tile", type=int, default=None)
    p.add_argument("--backend", default="cpu")
    a = p.parse_args(argv)
    from ..errors import LdmindError

    try:
        r = run(a.engines, a.latent, a.scale, a.tile, a.backend)
    except LdmindError as e:
        print(f"python -m runtime.programs.bench_memory: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(r))
    mib = 1024 ** 2
    print(f"peak RSS {r['peak_rss_bytes'] / mib:.0f} MiB for a {r['output'][1]}x{r['output'][0]} output of "
          f"{r['output_bytes'] / mib:.1f} MiB (budget {r['budget_bytes'] / mib:.0f} MiB): "
          f"{'OK' if r['within_budget'] else 'OVER BUDGET'}", file=sys.stderr)
    return 0 if r["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""``python -m runtime.calibrate JOB.json``: record the inputs the fp32 runtime feeds each graph
while it upscales photos - the calibration data of ``python -m export --int8``.

The exporter runs this as a separate process (``export.calibration.record``) so that imports
keep flowing one way (``export`` never imports ``runtime``): what int8 quantization calibrates
on is what real requests feed the graphs, and only the runtime knows that.

JOB.json (written by the exporter): ``engines`` (the fp32 graphs), ``manifest`` (their
manifest, validated, perhaps not yet in ``engines``), ``photos`` (paths; the last ``holdout``
are held out), ``shrink``, ``crop``, ``scales``, ``steps``, ``sampler``, ``per_graph``,
``liif_queries``, ``out`` (the .npz to write).  Each photo: shrunk by ``shrink`` (PIL bicubic,
as the benchmark makes LR images), a centre crop of ``crop`` pixels, upscaled at one of
``scales`` (in turn) with no back-projection (it runs no graph).  The .npz holds
``SPLIT|GRAPH|INDEX|INPUT`` arrays, SPLIT ``calib`` or ``held``, at most ``per_graph`` feeds
of each graph per split, evenly spread over the run.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from . import bundle as _bundle
from . import engine as _engine
from .pipeline import Pipeline

Feed = dict[str, np.ndarray]


def lr_crop(path: Path, shrink: int, crop: int) -> np.ndarray:
    """uint8 [h, w, 3]: the photo shrunk by ``shrink`` (PIL bicubic), centre crop of ``crop``."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    small = rgb.resize((max(1, w // shrink), max(1, h // shrink)), Image.BICUBIC)
    a = np.asarray(small)
    y, x = max(0, (a.shape[0] - crop) // 2), max(0, (a.shape[1] - crop) // 2)
    return np.ascontiguousarray(a[y:y + crop, x:x + crop])


class Recorder:
    """An engine that runs the wrapped one and keeps a copy of every feed it is given
    (``bind`` constants included), tagged with the photo being upscaled.  LIIF feeds keep a
    random subset of ``liif_queries`` queries (ranges, not every pixel, are what counts)."""

    def __init__(self, engine, liif_queries: int, seed: int = 0):
        self.engine = engine
        self.liif_queries = liif_queries
        self.rng = np.random.default_rng(seed)
        self.photo = 0
        self.feeds: list[tuple[int, Feed]] = []
        self.max_batch = getattr(engine, "max_batch", None)

    def _keep(self, feed: Feed) -> None:
        feed = {k: np.array(v) for k, v in feed.items()}
        if "coord" in feed and feed["coord"].shape[1] > self.liif_queries:
            idx = np.sort(self.rng.choice(feed["coord"].shape[1], self.liif_queries, replace=False))
            feed["coord"], feed["cell"] = feed["coord"][:, idx], feed["cell"][:, idx]
        self.feeds.append((self.photo, feed))

    def __call__(self, feed: Feed) -> Feed:
        self._keep(feed)
        return self.engine(feed)

    def bind(self, constants: Feed):
        run = self.engine.bind(constants)

        def call(feed: Feed) -> Feed:
            self._keep({**constants, **feed})
            return run(feed)
        return call

    def close(self) -> None:
        self.engine.close()


def spread(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spread, first and last included."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)] if n > 1 else items[:1]


def record(job: dict, log=print) -> dict[str, dict[str, list[Feed]]]:
    """{"calib": {graph: feeds}, "held": {graph: feeds}} of ``job`` (the module's JOB.json)."""
    b = _bundle.from_manifest(Path(job["engines"]), job["manifest"])
    pipe = Pipeline(b, _engine.create_engines(b, "cpu"), "cpu", requested="cpu")
    recorders = {g: Recorder(e, job["liif_queries"], seed=i) for i, (g, e) in enumerate(pipe.engines.items())}
    pipe.engines.update(recorders)
    photos = [Path(p) for p in job["photos"]]
    first_held = len(photos) - job["holdout"]
    try:
        for i, path in enumerate(photos):
            for r in recorders.values():
                r.photo = i
            lr = lr_crop(path, job["shrink"], job["crop"])
            scale = job["scales"][i % len(job["scales"])]
            pipe.upscale(lr, scale=scale, steps=job["steps"], sampler=job["sampler"], seed=i, backproject=0,
                         output="array")
            log(f"  calibration photo {i + 1}/{len(photos)}: {path.name}, LR {lr.shape[1]}x{lr.shape[0]} "
                f"x{scale:g}{' (held out)' if i >= first_held else ''}")
    finally:
        pipe.close()
    n = job["per_graph"]
    return {"calib": {g: spread([f for p, f in r.feeds if p < first_held], n) for g, r in recorders.items()},
            "held": {g: spread([f for p, f in r.feeds if p >= first_held], n) for g, r in recorders.items()}}


def save(path: Path, feeds: dict[str, dict[str, list[Feed]]]) -> None:
    arrays = {f"{split}|{g}|{i:04d}|{k}": v for split, graphs in feeds.items()
              for g, fs in graphs.items() for i, f in enumerate(fs) for k, v in f.items()}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m runtime.calibrate JOB.json (written by python -m export --int8)", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    save(Path(job["out"]), record(job, log=lambda line: print(line, flush=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

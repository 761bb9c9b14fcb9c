"""Calibration inputs for ``python -m export --int8``: each graph's real inputs, recorded
while the fp32 runtime upscales photos.

The exporter first writes the fp32 graphs; ``record`` opens them with the runtime
(``runtime.Pipeline``, CPU) and wraps every engine in a ``Recorder`` that keeps a copy of
what the pipeline feeds it: the encoder's LR tiles, the U-Net's latents and coefficients
at every solver step, the decoder's latents and the LIIF features with real query
coordinates.  So the ranges that static quantization calibrates are those of real
requests, not of random numbers.

Each photo: shrunk by the plan's LR factor (PIL bicubic, as the benchmark makes LR images),
a centre crop of ``crop`` pixels, upscaled at one of ``scales`` (in turn) with the default
sampler and steps, no back-projection (it runs no graph).  The last ``holdout`` photos are
not calibrated on: their inputs measure the quantized graphs' error against fp32.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ldmind_ref.core import contract

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

Feed = dict[str, np.ndarray]


class CalibrationError(ValueError):
    """A calibration folder that cannot be used (one line, names the folder or file)."""


@dataclass(frozen=True)
class CalibrationPlan:
    folder: Path
    images: int = 24                 # photos used, spread evenly over the sorted folder
    holdout: int = 1                 # the last ones measure the error instead of calibrating
    shrink: int = 4                  # photo -> LR by this factor (PIL bicubic) before cropping
    crop: int = 64                   # LR centre crop, pixels (smaller photos: all of it)
    scales: tuple[float, ...] = (4.0, 2.0, 8.0)   # upscale factor per photo, in turn
    steps: int = contract.DEFAULT_STEPS
    sampler: str = contract.DEFAULT_SAMPLER
    per_graph: int = 32              # calibration inputs kept per graph (evenly spread)
    liif_queries: int = 4096         # queries kept per recorded LIIF call (a random subset)

    def to_json(self, used: list[Path]) -> dict:
        return {"folder": str(self.folder), "photos": [p.name for p in used], "holdout": self.holdout,
                "shrink": self.shrink, "crop": self.crop, "scales": list(self.scales), "steps": self.steps,
                "sampler": self.sampler, "per_graph": self.per_graph, "liif_queries": self.liif_queries}


def photos(plan: CalibrationPlan) -> list[Path]:
    """The photos ``plan`` uses, each checked readable; ``CalibrationError`` otherwise."""
    folder = Path(plan.folder)
    if not folder.exists():
        raise CalibrationError(f"calibration folder {folder} does not exist")
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder {folder} is not a directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    need = plan.holdout + 1
    if len(files) < need:
        raise CalibrationError(f"calibration folder {folder} holds {len(files)} image(s) "
                               f"({', '.join(IMAGE_EXTENSIONS)}); --int8 needs at least {need} "
                               f"(one to calibrate on, {plan.holdout} to measure the error)")
    n = max(need, min(plan.images, len(files)))
    chosen = [files[round(i * (len(files) - 1) / max(1, n - 1))] for i in range(n)]
    for p in chosen:
        try:
            with Image.open(p) as im:
                im.verify()
        except Exception as e:  # noqa: BLE001 - Pillow raises many types for a bad file
            raise CalibrationError(f"calibration image {p} is not a readable image ({type(e).__name__})") from None
    return chosen


def lr_crop(path: Path, plan: CalibrationPlan) -> np.ndarray:
    """uint8 [h, w, 3]: the photo shrunk by ``plan.shrink`` (PIL bicubic), centre crop."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    small = rgb.resize((max(1, w // plan.shrink), max(1, h // plan.shrink)), Image.BICUBIC)
    a = np.asarray(small)
    c = plan.crop
    y, x = max(0, (a.shape[0] - c) // 2), max(0, (a.shape[1] - c) // 2)
    return np.ascontiguousarray(a[y:y + c, x:x + c])


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


def _spread(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)] if n > 1 else items[:1]


def record(engines_dir: Path, manifest: dict, plan: CalibrationPlan, used: list[Path], log=print
           ) -> tuple[dict[str, list[Feed]], dict[str, list[Feed]]]:
    """Upscale every photo of ``used`` with the fp32 graphs in ``engines_dir`` that ``manifest``
    (validated, not yet written) describes; returns ({graph: calibration feeds}, {graph:
    held-out feeds}), at most ``plan.per_graph`` each."""
    # the torch-free runtime, imported only when calibrating
    from runtime import Pipeline, bundle as _bundle, engine as _engine

    b = _bundle.from_manifest(engines_dir, manifest)
    pipe = Pipeline(b, _engine.create_engines(b, "cpu"), "cpu", requested="cpu")
    recorders = {g: Recorder(e, plan.liif_queries, seed=i) for i, (g, e) in enumerate(pipe.engines.items())}
    pipe.engines.update(recorders)
    try:
        for i, path in enumerate(used):
            for r in recorders.values():
                r.photo = i
            lr = lr_crop(path, plan)
            scale = plan.scales[i % len(plan.scales)]
            pipe.upscale(lr, scale=scale, steps=plan.steps, sampler=plan.sampler, seed=i, backproject=0,
                         output="array")
            log(f"  calibration photo {i + 1}/{len(used)}: {path.name}, LR {lr.shape[1]}x{lr.shape[0]} "
                f"x{scale:g}{' (held out)' if i >= len(used) - plan.holdout else ''}")
    finally:
        pipe.close()
    first_held = len(used) - plan.holdout
    calib = {g: _spread([f for p, f in r.feeds if p < first_held], plan.per_graph) for g, r in recorders.items()}
    held = {g: _spread([f for p, f in r.feeds if p >= first_held], plan.per_graph) for g, r in recorders.items()}
    return calib, held

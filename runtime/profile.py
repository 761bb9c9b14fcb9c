"""Latency profile of one real request, stage by stage (issue 11).

    python -m runtime profile ENGINES [IMAGE] (--scale S | --size WxH) [--steps N]
        [--sampler ddim|dpm++2m] [--backend B] [--repeat K] [--json OUT] [--plot OUT.png]

One request as a user makes it, from the file on disk to the file written: image decode,
encoder, every U-Net step, decoder, LIIF queries, back-projection, image encode + write.
The pipeline runs unchanged; two things watch it:

- the ``progress`` callback it already calls at every stage boundary (encoder tile groups,
  each DDIM/solver step, decoder tile groups, query chunks, back-projection): the time
  between those calls is the stage's *wall* time, Python work (tile blends, noise draws,
  rounding) included;
- each graph wrapped in ``Timed``: the time inside ``Engine`` calls alone, so the table says
  how much of a stage is the graph and how much is the code around it.

A first request warms up (sessions allocate, caches fill) and is not counted; then
``--repeat`` requests, and each figure is the median over them (a U-Net step: median and p90
over all steps of all repeats).  Peak RSS is the process's high-water mark.  On a GPU backend
each stage is also an NVTX range when the ``nvtx`` package is installed (Nsight shows them);
the backends' calls are synchronous (outputs are copied back), so wall times are device
times plus copies.  Not executed here: no GPU.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ldmind_ref.core import contract, noise as rng
from ldmind_ref.core.contract import PROFILE_STAGES as STAGES   # the table's rows, in order

from .console import one_line
from .engine import GPU_ORDER
from .errors import InputError
from .limits import proc_bytes


def _nvtx(enabled: bool):
    """``range(name)`` context: NVTX when asked for and available, else nothing."""
    if enabled:
        try:
            import nvtx   # noqa: F401 - optional, GPU machines only
            return lambda name: nvtx.annotate(name)
        except ImportError:
            pass
    return lambda name: contextlib.nullcontext()


class Timed:
    """An ``Engine`` whose calls add their duration to ``seconds[graph]``."""

    def __init__(self, engine, seconds: dict):
        self._e, self._s = engine, seconds
        self.graph, self.max_batch, self.query_tile = engine.graph, engine.max_batch, engine.query_tile

    def _timed(self, fn):
        def call(feed):
            t = time.perf_counter()
            try:
                return fn(feed)
            finally:
                self._s[self.graph] = self._s.get(self.graph, 0.0) + time.perf_counter() - t
        return call

    def __call__(self, feed):
        return self._timed(self._e)(feed)

    def bind(self, constants):
        return self._timed(self._e.bind(constants))

    def close(self):
        self._e.close()


class Recorder:
    """The ``progress`` callback: stage boundaries as timestamps."""

    def __init__(self, nvtx=None):
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.wall: dict[str, float] = {}
        self.steps: list[float] = []
        self._range = nvtx or _nvtx(False)
        self._open = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        name = contract.profile_stage(stage)
        if self._open is None or self._open[0] != name:
            if self._open is not None:
                self._open[1].__exit__(None, None, None)
            ctx = self._range(name)
            ctx.__enter__()
            self._open = (name, ctx)
        if done > 0:
            self.wall[name] = self.wall.get(name, 0.0) + now - self.last
            if name == "U-Net steps":
                self.steps.append(now - self.last)
        self.last = now

    def close(self):
        if self._open is not None:
            self._open[1].__exit__(None, None, None)
            self._open = None


def one_request(pipe, image_path: str | None, scale, size, steps: int, sampler: str, seed: int,
                out_dir: str, nvtx, latent_overlap: int | None, fidelity: float) -> dict:
    """Run one request; returns its stage times (seconds), graph times and per-step times."""
    from .image_in import load_upscale_input
    from .image_out import encode_image
    from .output_paths import output_format

    graph_s: dict[str, float] = {}
    original = pipe.engines
    pipe.engines = {g: Timed(e, graph_s) for g, e in original.items()}
    rec = Recorder(nvtx)
    out_path = os.path.join(out_dir, "profile.png")
    start = time.perf_counter()
    try:
        t = start
        with nvtx("image decode"):
            image = None
            if image_path is not None:
                image, meta = load_upscale_input(image_path, [out_path])
        decode = time.perf_counter() - t
        rec.t0 = rec.last = time.perf_counter()
        if image is not None:
            out = pipe.upscale(image, scale=scale, size=size, steps=steps, seed=seed, sampler=sampler,
                               progress=rec, output="array", latent_overlap=latent_overlap, fidelity=fidelity)
        else:
            out = pipe.generate(size, steps=steps, seed=seed, sampler=sampler, progress=rec,
                                latent_overlap=latent_overlap, fidelity=fidelity)
        rec.close()
        t = time.perf_counter()
        with nvtx("image encode+write"):
            data = encode_image(out[0], output_format(out_path))
            with open(out_path, "wb") as f:
                f.write(data)
        write = time.perf_counter() - t
    finally:
        pipe.engines = original
    total = time.perf_counter() - start
    wall = dict(rec.wall)
    wall["image decode"], wall["image encode+write"] = decode, write
    wall["other"] = max(0.0, total - sum(wall.values()))      # between stage boundaries
    return {"wall": wall, "total": total, "graph": graph_s, "steps": rec.steps, "output": list(out[0].shape[:2])}


def profile(engines: str, image: str | None, scale=None, size=None, steps: int | None = None,
            sampler: str | None = None, backend: str = "auto", repeat: int = contract.DEFAULT_PROFILE_REPEAT,
            seed: int = contract.DEFAULT_SEED, threads: int = contract.DEFAULT_THREADS,
            precision: str = "auto", latent_overlap: int | None = None, fidelity: float | None = None) -> dict:
    """Warm-up + ``repeat`` requests; medians per stage (see the module doc).  ``steps`` and
    ``sampler``: the defaults (``contract.DEFAULT_STEPS``/``DEFAULT_SAMPLER``) when None;
    ``latent_overlap`` and ``fidelity``: the request's (None: the task's default)."""
    from .pipeline import Pipeline

    steps = contract.DEFAULT_STEPS if steps is None else steps
    sampler = contract.DEFAULT_SAMPLER if sampler is None else sampler
    fidelity = rng.default_fidelity(image is not None) if fidelity is None else fidelity
    if repeat < 1:
        raise InputError(f"--repeat must be at least 1, got {repeat}")
    pipe = Pipeline.load(engines, backend=backend, threads=threads, precision=precision)
    if image is None and pipe.bundle.conditional:
        raise InputError(f"{engines}: a super-resolution model: give an IMAGE to upscale")
    if image is not None and not pipe.bundle.conditional:
        raise InputError(f"{engines}: a generation model: give --size and no IMAGE")
    if image is None and size is None:
        raise InputError("generation: give --size WxH")
    nvtx = _nvtx(any(b in GPU_ORDER for b in pipe.graph_backends.values()))
    runs = []
    with tempfile.TemporaryDirectory(prefix="ldmind-profile-") as tmp:
        for k in range(repeat + 1):                       # k = 0: warm-up, not counted
            r = one_request(pipe, image, scale, size, steps, sampler, seed, tmp, nvtx, latent_overlap, fidelity)
            if k:
                runs.append(r)
    H, W = runs[0]["output"]
    stages = {}
    for s in STAGES:
        vals = [r["wall"].get(s, 0.0) for r in runs]
        stages[s] = float(np.median(vals))
    graph = {g: float(np.median([r["graph"].get(g, 0.0) for r in runs])) for g in pipe.engines}
    all_steps = [t for r in runs for t in r["steps"]]
    peak = proc_bytes("/proc/self/status", "VmHWM")
    return {
        "engines": str(engines), "model": pipe.bundle.name, "backend": pipe.backend,
        "graph_backends": pipe.graph_backends, "backend_reason": pipe.backend_reason, "image": image,
        "output": [W, H], "steps": steps, "sampler": sampler, "repeat": repeat,
        "fidelity": fidelity,
        "stages_s": stages, "total_s": float(np.median([r["total"] for r in runs])),
        "graph_s": graph,
        "unet_step_s": {"median": float(np.median(all_steps)) if all_steps else 0.0,
                        "p90": float(np.percentile(all_steps, 90)) if all_steps else 0.0,
                        "count": len(all_steps) // max(1, len(runs))},
        "liif_s_per_output_mpx": stages["LIIF queries"] / (H * W / 1e6),
        "peak_rss_bytes": peak,
    }


_GRAPH_OF = {"encoder": "encoder", "U-Net steps": "unet_step", "decoder": "decoder", "LIIF queries": "liif"}


def table(p: dict) -> str:
    """The stage table (the C++ benchmark prints the same layout)."""
    W, H = p["output"]
    lines = [f"{one_line(p['model'])} on {p['backend']}: {one_line(p['image']) if p['image'] else 'generate'} -> {W}x{H}, {p['steps']} steps "
             f"({p['sampler']}), median of {p['repeat']} after a warm-up",
             f"{'stage':<20} {'wall ms':>10} {'graph ms':>10} {'share':>6}"]
    total = p["total_s"]
    for s in STAGES:
        wall = p["stages_s"][s]
        g = p["graph_s"].get(_GRAPH_OF.get(s, ""), None)
        lines.append(f"{s:<20} {wall * 1e3:10.1f} {'' if g is None else f'{g * 1e3:10.1f}':>10} "
                     f"{100 * wall / total if total else 0:5.1f}%")
    u = p["unet_step_s"]
    lines += [f"{'total':<20} {total * 1e3:10.1f}",
              f"U-Net step: median {u['median'] * 1e3:.1f} ms, p90 {u['p90'] * 1e3:.1f} ms ({u['count']} per request)",
              f"LIIF queries: {p['liif_s_per_output_mpx']:.2f} s per output megapixel",
              f"peak RSS: {p['peak_rss_bytes'] / 2 ** 20:.0f} MiB" if p["peak_rss_bytes"] else "peak RSS: unknown"]
    return "\n".join(lines)


def plot(p: dict, path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'ldmind[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(STAGES)
    wall = [p["stages_s"][s] for s in names]
    graph = [p["graph_s"].get(_GRAPH_OF.get(s, ""), 0.0) for s in names]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    y = np.arange(len(names))
    ax.barh(y, wall, color="#9ab", label="stage (wall)")
    ax.barh(y, graph, color="#357", height=0.45, label="inside the graph")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("seconds (median)")
    W, H = p["output"]
    ax.set_title(f"{p['model']} on {p['backend']}: {W}x{H}, {p['steps']} steps ({p['sampler']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = Path(path).with_name(Path(path).name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def write_json(p: dict, path: str) -> None:
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text(json.dumps(p, indent=1) + "\n")
    os.replace(tmp, path)

"""The sampling pipeline on exported graphs: ``Pipeline.load(dir).upscale(...)``.

Method, step for step the reference sampler (``ldmind_ref/sampler.py``): both run the
sequence of ``ldmind_ref/core/tiled_sampling.py`` over the tile plan of ``ldmind_ref/core/latent_tiles.py``.

    upscale:  LR uint8 -> [-1, 1] -> mirror-pad to ``images.lr_pad_unit(cond_scale,
              ae_downsample, unet_multiple)`` -> tile plan of the latent -> encoder on LR
              tiles, blended -> cond; DDIM from z_T with cond at every step, the U-Net on
              latent tiles blended each step; crop the latent to (h * cond_scale //
              ae_downsample, ...); decoder on tiles, blended -> features; LIIF queries at
              ``coords.output_size`` band by band -> uint8; back-projection onto the LR
              (``ldmind_ref/core/consistency.py``), row block by row block.
    generate: DDIM from z_T at the manifest's ``generation_latent`` (or any latent size,
              tiled); decoder; LIIF.
    tiles:    a few times the training latent with >= 25 % overlap, unless the whole latent
              fits in memory and is estimated faster (``Pipeline.plan``); a latent that fits
              in one tile is sampled exactly as without tiling.
    DDIM:     ``diffusion.ddim_schedule(alpha_bar from the manifest, steps, eta)``; noise by
              the RNG contract (``ldmind_ref/core/noise.py``): sample j uses seed + j, stream 0 is
              z_T, stream k the k-th executed step, drawn only when sigma_t > 0; fidelity
              narrows the window of steps (``diffusion.fidelity_window``).

Batches larger than a backend accepts (TensorRT profiles) are split; because sample j
always uses seed + j, the split never changes a result.  A ``Pipeline`` holds no mutable
state after ``load``: several threads may call one pipeline at once.
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ldmind_ref.core import consistency, contract, coords, diffusion, images, latent_tiles, noise as rng, tiled_sampling
from ldmind_ref.core.contract import MAX_SAMPLES, TILE_BATCH_CELLS

from . import alpha as _alpha, engine as _engine, limits, tiling
from .backends.base import Engine, graphs_of
from .backends.timing import liif_tile
from .bundle import Bundle, load_bundle
from .errors import InputError, NumericalError
from .image_in import Metadata, read_metadata, to_rgb_alpha, to_rgb_array

Progress = Callable[[str, int, int], None]


class Pipeline:
    def __init__(self, bundle: Bundle, engines: dict[str, Engine], backend: str,
                 skipped: dict[str, str] | None = None, tile: int | None = None, requested: str = "auto",
                 auto: str | None = None):
        self.bundle = bundle
        self.engines = engines
        self.backend = backend            # the backend running the graphs ("mixed": several, see graph_backends)
        self.graph_backends = {g: getattr(e, "backend", backend) for g, e in engines.items()}
        self.skipped = dict(skipped or {})  # backend="auto": backends passed over, and why
        self.requested = requested
        self.auto = auto                  # backend="auto": how it chose, per graph (one line)
        # LIIF queries per call: the manifest's query_chunk, or less where the backend is faster so
        self.tile = _positive(tile, "tile") if tile is not None else liif_tile(bundle, engines)
        limits_ = [e.max_batch for e in engines.values() if e.max_batch]
        self.max_batch = min(limits_) if limits_ else None

    @classmethod
    def load(cls, path: str | Path, backend: str = "auto", tile: int | None = None, threads: int = 0,
             verify: bool = True, precision: str = "auto") -> "Pipeline":
        """Open an engine directory.  ``backend``: auto (the fastest that works here, per graph
        on the CPU: see ``backend_reason`` and runtime/backends/choice.py), cpu, cuda, ort-trt,
        tensorrt, openvino or openvino-bf16.  ``precision``: auto, fp32 (never bf16) or bf16."""
        bundle = load_bundle(path, verify=verify)
        limits.check_address_space(sum(bundle.graph_path(g).stat().st_size for g in graphs_of(bundle)))
        limits.reserve_blas_buffers()
        engines, skipped, how = _engine.select(bundle, backend, threads, precision)
        return cls(bundle, engines, _engine.backend_name(engines), skipped, tile, requested=backend, auto=how)

    @property
    def backend_reason(self) -> str:
        if self.requested != "auto":
            return "requested"
        out = f"auto: {self.auto}" if self.auto else "auto"
        if self.skipped:
            out += "; skipped " + "; ".join(f"{k}: {v}" for k, v in self.skipped.items())
        return out

    def describe(self) -> str:
        kind = "super-resolution" if self.bundle.conditional else "generation"
        return f"{self.bundle.name} ({kind}, {self.bundle.precision}) on {self.backend} [{self.backend_reason}]"

    def close(self) -> None:
        for e in self.engines.values():
            e.close()

    # -- public API --------------------------------------------------------------------------
    def upscale(self, image, scale: float | None = None, size: tuple[int, int] | None = None,
                steps: int = contract.DEFAULT_STEPS, eta: float = contract.DEFAULT_ETA,
                seed: int = contract.DEFAULT_SEED, num_samples: int = contract.DEFAULT_NUM_SAMPLES,
                tile: int | None = None, progress: Progress | None = None, output: str = "auto",
                backproject: int = contract.DEFAULT_BACKPROJECT, latent_tile: int | None = None,
                latent_overlap: int | None = None, schedule: str = contract.DEFAULT_DDIM_SCHEDULE,
                depth: int | None = None, sampler: str = contract.DEFAULT_SAMPLER,
                fidelity: float = contract.DEFAULT_FIDELITY) -> list:
        """Super-resolve ``image`` (PIL image, uint8 or uint16 array) by ``scale`` or to ``size``
        = (W, H).  Returns ``num_samples`` images: PIL if the input was PIL (``output="auto"``),
        else arrays [H, W, 3]; ``output="pil"``/``"array"`` forces one.  A translucent input
        (RGBA, LA, a palette with transparency, an [H, W, 4] array) gives RGBA / [H, W, 4]
        outputs: colour through the model, alpha resized beside it (``runtime/alpha.py``).
        ``depth``: bits per value of array outputs, 8 (uint8) or 16 (uint16); default the
        input's.  A 16-bit input keeps its precision end to end (float into the encoder, LIIF
        and back-projection in float, rounded once to 16 bits); PIL outputs are 8-bit (Pillow
        has no 16-bit RGB mode).
        ``backproject``: iterations of back-projection onto the input (0: the raw sample).
        ``latent_tile``/``latent_overlap``: latent tile side and overlap in cells (default:
        chosen from the model, see ``plan``).  ``schedule``: DDIM's "full" or "paper"
        (``contract.DDIM_SCHEDULES``).  ``sampler``: "ddim" or "dpm++2m" (DPM-Solver++(2M):
        deterministic, the same image in fewer steps; ``eta`` and ``schedule`` are DDIM's).
        ``fidelity``: 0..1, detail against faithfulness (``diffusion.fidelity_window``: 0 the
        paper's sampler, the model's full diversity; higher skips the noisiest and the last steps,
        more faithful and faster)."""
        self._need_conditional(True)
        lr, alpha = to_rgb_alpha(image, "input image")
        try:
            backproject = consistency.iterations_arg(backproject)
        except ValueError as e:
            raise InputError(str(e)) from None
        pil = _wants_pil(output, isinstance(image, Image.Image))
        dtype = _depth_dtype(depth, lr.dtype, pil)
        H, W = self.output_size(lr.shape[0], lr.shape[1], scale, size)
        n = _count(num_samples)
        extra = self._working_bytes(n, *self._lr_latent(lr.shape[:2]))
        if alpha is not None:
            extra += _alpha.working_bytes(n, H, W, dtype.itemsize)
        limits.check_output(n, H, W, extra=extra, itemsize=dtype.itemsize)
        if alpha is not None:
            lr = _alpha.bleed(lr, alpha)     # no dark fringe from the colour under transparent pixels
        z = self._upscale_latents(lr, steps, eta, seed, n, progress, latent_tile, latent_overlap, schedule, sampler,
                                  fidelity)
        out = list(self._render(z, [(H, W)], tile, progress, latent_tile, latent_overlap, dtype)[0])
        for k, img in enumerate(out, start=1):
            consistency.apply_inplace(img, lr, backproject)
            if progress and backproject:
                progress(contract.STAGE_BACKPROJECT, k, len(out))
        if alpha is not None:
            a = _alpha.resize(alpha, H, W, dtype)
            out = [np.dstack((img, a)) for img in out]
        return _convert(out, pil, read_metadata(image) if isinstance(image, Image.Image) else None)

    def generate(self, size: tuple[int, int], steps: int = contract.DEFAULT_STEPS, eta: float = contract.DEFAULT_ETA,
                 seed: int = contract.DEFAULT_SEED, num_samples: int = contract.DEFAULT_NUM_SAMPLES, tile: int | None = None, progress: Progress | None = None,
                 output: str = "array", latent_size: tuple[int, int] | None = None,
                 latent_tile: int | None = None, latent_overlap: int | None = None,
                 schedule: str = contract.DEFAULT_DDIM_SCHEDULE, depth: int | None = None,
                 sampler: str = contract.DEFAULT_SAMPLER, zoom: bool = False,
                 fidelity: float = contract.DEFAULT_GENERATION_FIDELITY) -> list:
        """Unconditional samples rendered at ``size`` = (W, H), from a latent of the output's own
        scale (``latent_tiles.generation_latent``: size / downsample per side, sampled in tiles
        when larger than the training latent), or with ``zoom`` the manifest's generation
        latent stretched to the size, or ``latent_size`` = (h, w).
        ``depth``: 8 (uint8, the default) or 16 (uint16, arrays only); ``fidelity`` as ``upscale``'s."""
        self._need_conditional(False)
        pil = _wants_pil(output, False)
        dtype = _depth_dtype(depth, np.uint8, pil)
        H, W = self.output_size(1, 1, size=size)
        n = _count(num_samples)
        b, m = self.bundle, self.bundle.tile_align
        if latent_size is None and zoom:
            lh, lw = b.generation_latent or (0, 0)
        else:
            lh, lw = latent_size or latent_tiles.generation_latent(H, W, b.ae_downsample, m, b.train_latent, False)
        if isinstance(lh, bool) or isinstance(lw, bool) or not isinstance(lh, numbers.Integral) \
                or not isinstance(lw, numbers.Integral) or lh < 1 or lw < 1 or lh % m or lw % m:
            raise InputError(contract.LATENT_SIZE.format(m, lh, lw))
        limits.check_output(n, H, W, extra=self._working_bytes(n, lh, lw), itemsize=dtype.itemsize)
        sched = self.sampling_schedule(steps, eta, schedule, sampler, fidelity)   # refuse bad options before any work
        p = self.plan(lh, lw, steps, n, latent_tile, latent_overlap)
        z = self._sample(None, (self.bundle.z_channels, lh, lw), sched, seed, n, progress, p)
        out = self._render(z, [(H, W)], tile, progress, latent_tile, latent_overlap, dtype)[0]
        return _convert(list(out), pil)

    def plan(self, h: int, w: int, steps: int = contract.DEFAULT_STEPS, num_samples: int = contract.DEFAULT_NUM_SAMPLES,
             latent_tile: int | None = None,
             latent_overlap: int | None = None, graphs: tuple[str, ...] | None = None, align: int | None = None):
        """The latent tile plan (``ldmind_ref.core.latent_tiles.choose``) of an h x w latent: tiles of
        a few times the training latent, unless the whole latent fits in memory and is
        estimated faster; ``latent_tile``/``latent_overlap`` override."""
        b = self.bundle
        for v, what in ((latent_tile, "latent tile"), (latent_overlap, "latent overlap")):
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0):
                raise InputError(contract.NON_NEGATIVE_INTEGER.format(what, v))
        costs = {k: v for k, v in b.costs.items() if graphs is None or k in graphs}
        batch = self._batch(num_samples)
        try:
            p = latent_tiles.choose(h, w, align or b.tile_align, b.train_latent, costs, steps, latent_tile,
                                    latent_overlap, fits=limits.fits_budget(costs, batch))
        except ValueError as e:
            raise InputError(str(e)) from None
        limits.check_latent(costs, batch * min(len(p), self._tile_batch(p, batch)), p.th, p.tw)
        return p

    def render(self, z: np.ndarray, sizes: Sequence[tuple[int, int]], tile: int | None = None,
               progress: Progress | None = None, latent_tile: int | None = None,
               latent_overlap: int | None = None) -> list[np.ndarray]:
        """Latents [N, c, h, w] at several (H, W): one uint8 array [N, H, W, 3] per size.
        The decoder runs once (in latent tiles when the plan says so); each size is queried
        chunk by chunk into its uint8 array."""
        z = np.asarray(z)
        c = self.bundle.z_channels
        if z.ndim != 4 or z.shape[1] != c or min(z.shape) < 1:
            raise InputError(f"latents must be an array [N, {c}, h, w], got shape {z.shape}")
        if not np.all(np.isfinite(z)):
            raise InputError("latents contain NaN or infinity")
        z = np.ascontiguousarray(z, dtype=np.float32)
        sizes = [(_positive(H, "height"), _positive(W, "width")) for H, W in sizes]
        for H, W in sizes:
            limits.check_output(z.shape[0], H, W, extra=self._working_bytes(z.shape[0], z.shape[2], z.shape[3]))
        return self._render(z, sizes, tile, progress, latent_tile, latent_overlap)

    def upscale_latents(self, image, steps: int = contract.DEFAULT_STEPS, eta: float = contract.DEFAULT_ETA,
                        seed: int = contract.DEFAULT_SEED, num_samples: int = contract.DEFAULT_NUM_SAMPLES,
                        progress: Progress | None = None, latent_tile: int | None = None,
                        latent_overlap: int | None = None, schedule: str = contract.DEFAULT_DDIM_SCHEDULE,
                        sampler: str = contract.DEFAULT_SAMPLER,
                        fidelity: float = contract.DEFAULT_FIDELITY) -> np.ndarray:
        """Sampled latents of an LR image cropped to the LR area: float32 [N, c, h', w']."""
        self._need_conditional(True)
        lr = to_rgb_array(image, "input image")
        return self._upscale_latents(lr, steps, eta, seed, _count(num_samples), progress, latent_tile,
                                     latent_overlap, schedule, sampler, fidelity)

    def sample_latents(self, cond: np.ndarray | None, shape: tuple[int, int, int], steps: int, eta: float,
                       seed: int, num_samples: int, progress: Progress | None = None, plan=None,
                       schedule: str = contract.DEFAULT_DDIM_SCHEDULE,
                       sampler: str = contract.DEFAULT_SAMPLER,
                       fidelity: float | None = None) -> np.ndarray:
        """From z_T to z_0 (DDIM or ``sampler``): float32 [num_samples, *shape]; ``cond``
        [1, c, h, w] or None; over the tiles of ``plan`` (default: ``self.plan``); ``fidelity``
        None: the task's default (upscale's with ``cond``, generation's without)."""
        if fidelity is None:
            fidelity = rng.default_fidelity(cond is not None)
        sched = self.sampling_schedule(steps, eta, schedule, sampler, fidelity, cond is not None)
        n = _count(num_samples)
        return self._sample(cond, shape, sched, seed, n, progress, plan or self.plan(shape[1], shape[2], steps, n))

    def _sample(self, cond: np.ndarray | None, shape: tuple[int, int, int], schedule: list, seed: int,
                n: int, progress: Progress | None, p) -> np.ndarray:
        """``sample_latents`` on a checked ``schedule`` (``sampling_schedule``) and plan ``p``."""
        seed = _seed(seed)
        batches = list(self._batches(n))
        done = [0]
        total = len(schedule) * len(batches)
        if progress:
            progress(contract.STAGE_DENOISE, 0, total)

        def tick(_stage, _k, _total):
            done[0] += 1
            if progress:
                progress(contract.STAGE_DENOISE, done[0], total)

        unet = self.engines["unet_step"]

        def make_step(cond_tiles, ntiles):
            run = unet.bind({"cond": cond_tiles} if cond_tiles is not None else {})

            def step(z_t, st, noise):
                nb = z_t.shape[0]
                z = run({"z_t": z_t, "timestep": np.full((nb,), st.t, dtype=np.int64),
                         "alpha_bar_t": np.array([st.alpha_bar_t], dtype=np.float32),
                         "alpha_bar_prev": np.array([st.alpha_bar_prev], dtype=np.float32),
                         "sigma_t": np.array([st.sigma_t], dtype=np.float32), "noise": noise})
                return (self._finite("unet_step", z["z_prev"], f" at t={st.t}"),
                        self._finite("unet_step", z["pred_z0"], f" at t={st.t}"))
            return step

        out = []
        for a, b in batches:
            noise = (lambda s0, nb: lambda stream, shp: rng.batch_gaussian(s0, stream, nb, shp))(seed + a, b - a)
            out.append(tiled_sampling.denoise(make_step, cond, b - a, shape[0], schedule, noise, p,
                                              self._tile_batch(p, b - a), tick))
        return np.concatenate(out)

    def output_size(self, h: int, w: int, scale: float | None = None,
                    size: tuple[int, int] | None = None) -> tuple[int, int]:
        """(H, W) of the output, as ``coords.output_size``, with user-facing errors."""
        if scale is not None and size is not None:
            raise InputError(contract.SCALE_AND_SIZE)
        if scale is None and size is None:
            raise InputError(contract.SCALE_OR_SIZE)
        if scale is not None:
            if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(float(scale)) \
                    or float(scale) <= 0:
                raise InputError(contract.POSITIVE_NUMBER.format("scale", scale))
        else:
            if len(tuple(size)) != 2:
                raise InputError(f"size must be (width, height), got {size}")
            for v in size:
                _positive(v, "output width/height")
        try:
            return coords.output_size(h, w, scale=scale, size=size)
        except ValueError as e:
            raise InputError(str(e)) from None

    # -- internals ---------------------------------------------------------------------------
    def sampling_latent(self, h: int, w: int) -> tuple[int, int]:
        """Latent (h', w') that ``upscale`` samples for an h x w LR image: the LR mirror-padded to
        multiples of ``images.lr_pad_unit``, times cond_scale / ae_downsample."""
        b = self.bundle
        u = images.lr_pad_unit(b.cond_scale, b.ae_downsample, b.unet_multiple)
        return self._lr_latent((-(-h // u) * u, -(-w // u) * u))

    def _lr_latent(self, hw) -> tuple[int, int]:
        b = self.bundle
        return hw[0] * b.cond_scale // b.ae_downsample, hw[1] * b.cond_scale // b.ae_downsample

    def _working_bytes(self, n: int, h: int, w: int) -> int:
        """Full-size float32 arrays besides the output: decoder features and a few latents
        (z, z_prev, noise, cond) of an h x w latent."""
        b = self.bundle
        return 4 * h * w * (n * b.feature_channels + 4 * n * b.z_channels + b.z_channels)

    def _tile_batch(self, p, n: int) -> int:
        """Tiles per graph call: at most TILE_BATCH_CELLS latent cells (times samples), within
        the working-memory budget of a call, and what the backend's batch limit allows."""
        t = max(1, TILE_BATCH_CELLS // max(1, p.th * p.tw * n))
        one = limits.graph_bytes(self.bundle.costs, n, p.th, p.tw)
        t = max(1, min(t, limits.graph_budget() // max(1, one)))
        if self.max_batch:
            t = min(t, max(1, self.max_batch // n))
        return t

    def _upscale_latents(self, lr: np.ndarray, steps, eta, seed, n: int, progress, latent_tile, latent_overlap,
                         schedule: str, sampler: str, fidelity):
        """Latents cropped to the LR area [n, c, h', w']."""
        b = self.bundle
        unit = images.lr_pad_unit(b.cond_scale, b.ae_downsample, b.unet_multiple)
        x = images.pad_lr(images.to_float(lr), unit)[None]
        ch, cw = self._lr_latent(x.shape[2:])
        sched = self.sampling_schedule(steps, eta, schedule, sampler, fidelity, True)  # before the encoder runs
        p = self.plan(ch, cw, steps, n, latent_tile, latent_overlap)
        encoder = self.engines["encoder"]
        r = images.latent_per_lr_pixel(b.cond_scale, b.ae_downsample)
        cond = tiled_sampling.encode(lambda t: self._finite("encoder", encoder({"lr": t})["cond"]), x, p, r,
                                     self._tile_batch(p, 1), progress)
        z = self._sample(cond, (b.z_channels, ch, cw), sched, seed, n, progress, p)
        lh, lw = self._lr_latent(lr.shape[:2])
        return np.ascontiguousarray(z[:, :, :lh, :lw])

    def _render(self, z: np.ndarray, sizes, tile, progress, latent_tile, latent_overlap,
                dtype=np.uint8) -> list[np.ndarray]:
        tile = self.tile if tile is None else _positive(tile, "tile")
        # the decoder has no downsampling: any tile size (align 1), its plan chosen for it alone
        p = self.plan(z.shape[2], z.shape[3], 0, z.shape[0], latent_tile, latent_overlap, graphs=("decoder",),
                      align=1)
        decoder, liif = self.engines["decoder"], self.engines["liif"]
        features = [tiled_sampling.decode(lambda t: self._finite("decoder", decoder({"z": t})["features"]),
                                          z[a:b], p, self._tile_batch(p, b - a), progress)
                    for a, b in self._batches(z.shape[0])]
        band = latent_tiles.render_band(p)
        results = []
        for H, W in sizes:
            out = np.empty((z.shape[0], H, W, 3), dtype=dtype)
            for (a, b), f in zip(self._batches(z.shape[0]), features):
                bound = {}

                def query(window, co, ce, f=f, bound=bound):
                    key = (window.start, window.stop)
                    if key not in bound:          # one binding per band: the features stay put
                        bound.clear()
                        bound[key] = liif.bind({"features": np.ascontiguousarray(f[:, :, window])})
                    return bound[key]({"coord": co, "cell": ce})["rgb"]
                tiling.render_into(out[a:b], query, z.shape[2], band, tile, progress, contract.render_stage(W, H))
            results.append(out)
        return results

    def sampling_schedule(self, steps, eta, schedule: str = contract.DEFAULT_DDIM_SCHEDULE,
                          sampler: str = contract.DEFAULT_SAMPLER, fidelity=contract.DEFAULT_FIDELITY,
                          conditional: bool = False) -> list:
        """The sampler's steps (``diffusion.sampling_schedule`` on the manifest's alpha_bar, over
        ``fidelity``'s window): the one check of ``steps``, ``eta``, ``schedule``, ``sampler`` and
        then ``fidelity`` (``InputError``)."""
        T = self.bundle.timesteps
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= T:
            raise InputError(contract.STEPS.format(T, steps))
        if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not math.isfinite(eta) or eta < 0:
            raise InputError(contract.ETA.format(eta))
        try:
            full = diffusion.sampling_schedule(self.bundle.alpha_bar, int(steps), float(eta), schedule, sampler)
        except ValueError as e:   # an eta the schedule cannot take, an unknown schedule or sampler name
            raise InputError(str(e)) from None
        fidelity = _fidelity(fidelity)
        return full if fidelity == 0 else diffusion.sampling_schedule(
            self.bundle.alpha_bar, int(steps), float(eta), schedule, sampler, fidelity, conditional)

    def _batch(self, n: int) -> int:
        return min(n, self.max_batch) if self.max_batch else n

    def _batches(self, n: int):
        step = self._batch(n)
        return [(a, min(a + step, n)) for a in range(0, n, step)]

    def _need_conditional(self, want: bool) -> None:
        if self.bundle.conditional != want:
            kind = contract.GENERATION_MODEL if want else contract.SR_MODEL
            raise InputError(kind.format(self.bundle.root, self.bundle.name))

    @staticmethod
    def _finite(graph: str, x: np.ndarray, where: str = "") -> np.ndarray:
        if not np.all(np.isfinite(x)):
            raise NumericalError(contract.NOT_FINITE.format(graph, where))
        return x


def _positive(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise InputError(contract.POSITIVE_INTEGER.format(what, v))
    return int(v)


def _depth_dtype(depth, input_dtype, pil: bool) -> np.dtype:
    """The output dtype: ``depth`` 8 or 16 bits, or (None) the input's, uint8 for PIL outputs."""
    if depth is None:
        return np.dtype(np.uint8 if pil else input_dtype)
    if isinstance(depth, bool) or depth not in (8, 16):
        raise InputError(f"depth must be 8 or 16 (bits per value), got {depth!r}")
    if pil and depth == 16:
        raise InputError("depth 16 needs output='array': Pillow has no 16-bit RGB mode")
    return np.dtype(np.uint8 if depth == 8 else np.uint16)


def _count(n) -> int:
    n = _positive(n, "num_samples")
    if n > MAX_SAMPLES:
        raise InputError(contract.TOO_MANY_SAMPLES.format(MAX_SAMPLES, n))
    return n


def _fidelity(fidelity) -> float:
    try:
        return rng.fidelity_arg(fidelity)
    except ValueError as e:
        raise InputError(str(e)) from None


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InputError(f"seed must be an integer, got {seed!r}")
    return int(seed)


def _wants_pil(output: str, was_pil: bool) -> bool:
    """Whether the API returns PIL images (``output`` checked here, before any work)."""
    if output not in ("auto", "pil", "array"):
        raise InputError(f"output must be 'auto', 'pil' or 'array', got {output!r}")
    return output == "pil" or (output == "auto" and was_pil)


def _convert(arrays: list[np.ndarray], pil: bool, metadata: Metadata | None = None) -> list:
    """The API's return type; PIL outputs carry the input's ICC profile and EXIF in ``info``
    (``runtime.image_out.save_image`` writes them)."""
    if pil:
        images = [Image.fromarray(a, "RGBA" if a.shape[2] == 4 else "RGB") for a in arrays]
        for im in images:
            if metadata is not None and metadata.icc_profile:
                im.info["icc_profile"] = metadata.icc_profile
            if metadata is not None and metadata.exif:
                im.info["exif"] = metadata.exif
        return images
    return arrays

"""``python -m runtime``: upscale, generate, info, serve.

    python -m runtime upscale IN [--engines DIR] (--scale S | --size WxH) [-n K] [--steps N]
                      [--eta E] [--seed S] [--backproject K] [--backend B] [--tile Q]
                      [--latent-tile N] [--latent-overlap N] [--threads T] [--quiet] -o OUT
    python -m runtime upscale DIR ... [--recursive] [--skip-existing] [--ext EXT] -o OUTDIR
    python -m runtime generate [--engines DIR] --size WxH [-n K] ... -o DIR
    python -m runtime info ENGINES [--json] [--no-verify]
    python -m runtime serve [--engines DIR] [--host H] [--port N] [--workers N] [--queue N] ...

Exit status: 0 done (``serve``: stopped by SIGTERM or SIGINT once its requests are answered);
2 bad input, engines or options, or out of memory (one line on stderr, no traceback, no
output file); 1 a folder run in which some image failed (one line each, and
a summary), or an internal error (a bug: set LDMIND_DEBUG=1 for the traceback); 130
interrupted (SIGINT), 143 terminated (SIGTERM), one line either way.
Output images are written under a temporary name and renamed when complete; an interrupt
removes the temporary.  Once the images are written the job has succeeded: a closed or full
stdout/stderr (``| head -0``, ``>/dev/full``) no longer changes the exit status.
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import signal
import sys
from pathlib import Path

from ldmind_ref import latent_tiles
from ldmind_ref.consistency import DEFAULT_ITERATIONS as DEFAULT_BACKPROJECT, MAX_ITERATIONS
from ldmind_ref.diffusion import DDIM_SCHEDULES, DEFAULT_DDIM_SCHEDULE, DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS

from .backends.onnxruntime import CPU_QUERY_TILE
from .engine import BACKENDS
from .errors import InputError, LdmindError

PROG = "python -m runtime"
DEFAULT_ENGINES = "engines/small"


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so that every ``finally``/cleanup runs."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _say(text: str, stream=None) -> None:
    """Print to stdout (or ``stream``); a reader that went away (BrokenPipe) or a full device
    (ENOSPC) is ignored: this output is informative, the work is done.  The stream is then
    pointed at /dev/null so that Python's final flush does not fail either."""
    stream = stream or sys.stdout
    try:
        print(text, file=stream, flush=True)
    except OSError as e:
        if not isinstance(e, BrokenPipeError) and e.errno not in (errno.ENOSPC, errno.EPIPE, errno.EIO):
            raise
        _silence(stream)


def _silence(stream) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        # one line, no usage dump (the contract of every error of this CLI)
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def _positive_number(what: str):
    """A parser of finite numbers > 0 whose messages name ``what``."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise argparse.ArgumentTypeError(f"{what} must be a finite number > 0, got {text}")
        return v
    return parse


_scale = _positive_number("scale")


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT in pixels, e.g. 512x384, got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def _int_at_least(lo: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{what} must be >= {lo}, got {v}")
        return v
    return parse


def _eta(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"eta must be a number, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"eta must be a finite number >= 0, got {text}")
    return v


def _backproject(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--backproject must be an integer, got {text!r}") from None
    if not 0 <= v <= MAX_ITERATIONS:
        raise argparse.ArgumentTypeError(f"--backproject must be in 0..{MAX_ITERATIONS}, got {v}")
    return v


def _quality(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--quality must be an integer, got {text!r}") from None
    if not 1 <= v <= 100:
        raise argparse.ArgumentTypeError(f"--quality must be in 1..100, got {v}")
    return v


def _depth(text: str):
    if text == "auto":
        return text
    if text not in ("8", "16"):
        raise argparse.ArgumentTypeError(f"--depth must be 8, 16 or auto, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    v = _int_at_least(0, "--port")(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"--port must be in 0..65535, got {v}")
    return v


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engines", default=DEFAULT_ENGINES,
                   help=f"engine directory written by `python -m export` (default {DEFAULT_ENGINES})")
    p.add_argument("-n", "--num-samples", type=_int_at_least(1, "-n"), default=1, help="samples (default 1)")
    p.add_argument("--steps", type=_int_at_least(1, "--steps"), default=DEFAULT_STEPS,
                   help=f"sampler steps (default {DEFAULT_STEPS})")
    p.add_argument("--eta", type=_eta, default=1.0, help="DDIM eta: 0 deterministic, 1 DDPM-like (default 1)")
    p.add_argument("--schedule", choices=DDIM_SCHEDULES, default=DEFAULT_DDIM_SCHEDULE,
                   help=f"DDIM steps executed: full (all N) or paper (the paper's code: the noisiest "
                        f"step dropped, N - 1 run; default {DEFAULT_DDIM_SCHEDULE})")
    p.add_argument("--sampler", choices=SAMPLERS, default=DEFAULT_SAMPLER,
                   help=f"ddim, or dpm++2m: DPM-Solver++(2M), deterministic, the same image in fewer steps "
                        f"(--eta and --schedule are DDIM's) (default {DEFAULT_SAMPLER})")
    p.add_argument("--seed", type=int, default=0, help="sample j uses seed + j (default 0)")
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS],
                   help="graph backend (default auto: the fastest available)")
    p.add_argument("--tile", type=_int_at_least(1, "--tile"), default=None,
                   help=f"output pixels per LIIF query (default: the manifest's query_chunk, at most "
                        f"{CPU_QUERY_TILE} on the cpu backend)")
    p.add_argument("--latent-tile", type=_int_at_least(1, "--latent-tile"), default=None,
                   help="latent tile side in cells (default: from the model, see docs/RUNTIME.md)")
    p.add_argument("--latent-overlap", type=_int_at_least(0, "--latent-overlap"), default=None,
                   help="overlap of neighbouring latent tiles in cells (default: a quarter of the tile)")
    p.add_argument("--threads", type=_int_at_least(0, "--threads"), default=0,
                   help="CPU threads per graph (default 0: ONNX Runtime decides)")
    p.add_argument("--quality", type=_quality, default=None,
                   help="JPEG and lossy WebP output quality 1..100 (default 95)")
    p.add_argument("--webp-lossless", action="store_true", help="WebP output without loss")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Arbitrary-scale upsampling and generation on exported ldmind graphs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    up = sub.add_parser("upscale", help="super-resolve an image to any scale or size")
    up.add_argument("input", help="input image (PNG, JPEG, WebP, TIFF, BMP, ...), or a folder of them")
    what = up.add_mutually_exclusive_group(required=True)
    what.add_argument("--scale", type=_scale, help="scale factor s: output round(s*h) x round(s*w)")
    what.add_argument("--size", type=_size, help="output size WIDTHxHEIGHT")
    up.add_argument("-o", "--output", required=True, help="output image (a folder when IN is one); with -n K: "
                                                             "NAME_0.EXT ... NAME_{K-1}.EXT")
    up.add_argument("--overwrite", action="store_true", help="allow -o to be the input image itself (replaced)")
    up.add_argument("--strip-metadata", action="store_true",
                    help="do not carry the input's ICC colour profile and EXIF to the output")
    up.add_argument("--recursive", action="store_true", help="folder input: also its subfolders (mirrored)")
    up.add_argument("--skip-existing", action="store_true",
                    help="folder input: skip images whose outputs exist (resume an interrupted run)")
    up.add_argument("--ext", default=None, help="folder input: output format by extension, e.g. png "
                                               "(default: the input's, or png)")
    up.add_argument("--depth", type=_depth, default="auto",
                    help="bits per value of the output, 8 or 16 (PNG, TIFF) (default auto: 16 when the input "
                         "is a 16-bit file and the output format stores 16 bits, else 8)")
    up.add_argument("--backproject", type=_backproject, default=DEFAULT_BACKPROJECT,
                    help=f"iterations of back-projection onto the input, so that the output shrunk "
                         f"by PIL bicubic gives the input back (default {DEFAULT_BACKPROJECT}; 0: raw sample)")
    _common(up)
    gen = sub.add_parser("generate", help="sample new images (generation models)")
    gen.add_argument("--size", type=_size, required=True, help="output size WIDTHxHEIGHT")
    gen.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    gen.add_argument("--depth", type=_depth, default=8, help="bits per value of the PNG outputs, 8 or 16 "
                                                            "(default 8)")
    _common(gen)
    prof = sub.add_parser("profile", help="latency of one real request, stage by stage")
    prof.add_argument("engines", help="engine directory")
    prof.add_argument("image", nargs="?", default=None, help="input image (super-resolution models)")
    what = prof.add_mutually_exclusive_group()
    what.add_argument("--scale", type=_scale, help="scale factor")
    what.add_argument("--size", type=_size, help="output size WIDTHxHEIGHT")
    prof.add_argument("--steps", type=_int_at_least(1, "--steps"), default=DEFAULT_STEPS,
                      help=f"steps (default {DEFAULT_STEPS})")
    prof.add_argument("--sampler", choices=SAMPLERS, default=DEFAULT_SAMPLER, help="ddim or dpm++2m")
    prof.add_argument("--backend", default="auto", choices=["auto", *BACKENDS])
    prof.add_argument("--threads", type=_int_at_least(0, "--threads"), default=0)
    prof.add_argument("--repeat", type=_int_at_least(1, "--repeat"), default=3,
                      help="requests measured after one warm-up (default 3); figures are medians")
    prof.add_argument("--json", default=None, help="write the profile as JSON")
    prof.add_argument("--plot", default=None, help="write a bar chart (PNG; needs matplotlib)")
    info = sub.add_parser("info", help="summarise an engine directory")
    info.add_argument("engines", help="engine directory")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--no-verify", action="store_true", help="skip the checksum verification")
    _serve_parser(sub)
    return p


def _serve_parser(sub) -> None:
    from .service import Settings    # the service's defaults, stated once (no Starlette needed)

    d = Settings()
    srv = sub.add_parser("serve", help="an HTTP upscaling service (needs the serve extra)")
    srv.add_argument("--engines", default=DEFAULT_ENGINES,
                     help=f"engine directory written by `python -m export` (default {DEFAULT_ENGINES})")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000; 0: any free port, printed)")
    srv.add_argument("--workers", type=_int_at_least(1, "--workers"), default=d.workers,
                     help=f"upscales running at once on the one loaded pipeline (default {d.workers})")
    srv.add_argument("--queue", type=_int_at_least(0, "--queue"), default=d.queue,
                     help=f"requests waiting for a worker before 503 (default {d.queue})")
    srv.add_argument("--timeout", type=_positive_number("--timeout"), default=d.timeout_s,
                     help=f"seconds per request, queue wait included, before 504 (default {d.timeout_s:g})")
    srv.add_argument("--max-body-mb", type=_positive_number("--max-body-mb"), default=d.max_body_bytes / 2 ** 20,
                     help=f"largest upload in MiB (default {d.max_body_bytes / 2 ** 20:g})")
    srv.add_argument("--max-input-mpx", type=_positive_number("--max-input-mpx"), default=d.max_input_pixels / 1e6,
                     help=f"largest input image in megapixels (default {d.max_input_pixels / 1e6:g})")
    srv.add_argument("--max-output-mpx", type=_positive_number("--max-output-mpx"),
                     default=d.max_output_pixels / 1e6,
                     help=f"largest output image in megapixels (default {d.max_output_pixels / 1e6:g})")
    srv.add_argument("--max-steps", type=_int_at_least(1, "--max-steps"), default=d.max_steps,
                     help=f"most DDIM steps a request may ask for (default {d.max_steps}; "
                          f"a request without steps gets {d.default_steps})")
    srv.add_argument("--shutdown-timeout", type=_positive_number("--shutdown-timeout"), default=d.shutdown_timeout_s,
                     help=f"seconds SIGTERM waits for running and waiting requests (default {d.shutdown_timeout_s:g})")
    srv.add_argument("--backend", default="auto", choices=["auto", *BACKENDS],
                     help="graph backend (default auto: the fastest available)")
    srv.add_argument("--threads", type=_int_at_least(0, "--threads"), default=0,
                     help="CPU threads per graph (default 0: ONNX Runtime decides)")
    srv.add_argument("-q", "--quiet", action="store_true", help="no access log (one line per request on stderr)")


def _outputs(path: str, n: int) -> list[Path]:
    p = Path(path)
    return [p] if n == 1 else [p.with_name(f"{p.stem}_{j}{p.suffix}") for j in range(n)]


def _load(args):
    from .pipeline import Pipeline
    from .progress import Progress

    pipe = Pipeline.load(args.engines, backend=args.backend, tile=args.tile, threads=args.threads)
    how = "requested" if args.backend != "auto" else "auto"
    if pipe.skipped:
        how += f"; {', '.join(pipe.skipped)} unavailable: `{PROG} info {args.engines}` says why"
    return pipe, Progress(quiet=args.quiet, header=f"{pipe.bundle.name}: backend {pipe.backend} ({how})")


def _saver(args):
    """``save(image, path, metadata)`` with the command's output options."""
    from .image_out import save_image

    strip = getattr(args, "strip_metadata", False)
    return lambda img, path, meta=None: save_image(img, path, None if strip else meta, args.quality,
                                                   args.webp_lossless)


def cmd_upscale(args) -> int:
    from .image_in import load_upscale_input
    from .output_paths import check_output_path, output_depth

    if Path(args.input).is_dir():
        return _upscale_folder(args)
    if args.recursive or args.skip_existing or args.ext is not None:
        raise InputError(f"{args.input}: --recursive, --skip-existing and --ext apply to a folder input, "
                         f"and this is not a folder")
    outs = _outputs(args.output, args.num_samples)
    for o in outs:
        check_output_path(o, inputs=(args.input,), overwrite_input=args.overwrite)
    image, meta = load_upscale_input(args.input, outs)
    depth = output_depth(outs[0], image.dtype, args.depth)
    pipe, progress = _load(args)
    images = pipe.upscale(image, scale=args.scale, size=args.size, steps=args.steps, eta=args.eta, seed=args.seed,
                          num_samples=args.num_samples, progress=progress, backproject=args.backproject,
                          latent_tile=args.latent_tile, latent_overlap=args.latent_overlap, schedule=args.schedule,
                          sampler=args.sampler, depth=depth)
    save = _saver(args)
    for img, o in zip(images, outs):
        _say(str(save(img, o, meta)))
    return 0


def _upscale_folder(args) -> int:
    from .batch import Summary, file_progress, plan_folder, run_folder

    src, out = Path(args.input), Path(args.output)
    from .output_paths import output_depth

    jobs = plan_folder(src, out, args.recursive, args.ext, args.num_samples, args.overwrite)
    if args.depth == 16:
        for job in jobs:
            output_depth(job.outputs[0], None, 16)      # a format that stores 8 bits: refused up front
    pipe, progress = _load(args)
    if not args.quiet:
        _say(f"{progress.header}; {len(jobs)} images from {src}", sys.stderr)
    out.mkdir(exist_ok=True)

    def upscale(lr, outputs):
        return pipe.upscale(lr, scale=args.scale, size=args.size, steps=args.steps, eta=args.eta, seed=args.seed,
                            num_samples=args.num_samples, backproject=args.backproject,
                            latent_tile=args.latent_tile, latent_overlap=args.latent_overlap, schedule=args.schedule,
                            sampler=args.sampler, depth=output_depth(outputs[0], lr.dtype, args.depth))

    summary = Summary()
    try:
        run_folder(jobs, upscale, _saver(args), args.skip_existing, _say,
                   lambda line: _say(f"{PROG}: failed: {line}", sys.stderr), file_progress(quiet=args.quiet), summary)
    except (KeyboardInterrupt, Terminated) as e:
        e.add_note(f"{summary.line()} before it; --skip-existing resumes")   # main's one line says it
        raise
    _say(f"{PROG}: {summary.line()}", sys.stderr)
    return 1 if summary.failed else 0


def cmd_generate(args) -> int:
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; -o wants a folder for generated images")
    if not out.exists():
        if not out.parent.is_dir():
            raise InputError(f"{out}: parent folder {out.parent} does not exist")
    pipe, progress = _load(args)
    images = pipe.generate(args.size, steps=args.steps, eta=args.eta, seed=args.seed,
                           num_samples=args.num_samples, progress=progress, latent_tile=args.latent_tile,
                           latent_overlap=args.latent_overlap, schedule=args.schedule, sampler=args.sampler,
                           depth=args.depth)
    out.mkdir(exist_ok=True)
    save = _saver(args)
    for j, img in enumerate(images):
        _say(str(save(img, out / f"sample_seed{args.seed + j}.png")))
    return 0


def summary(engines: str, verify: bool = True) -> dict:
    from . import engine, limits
    from .backends import onnxruntime
    from .bundle import load_bundle

    b = load_bundle(engines, verify=verify)
    if verify:
        onnxruntime.verify_graphs(b)    # a swapped graph file with its checksum fixed up
    m = b.manifest
    # the tiles a large input gets here: the default, shrunk to the working-memory budget
    big = latent_tiles.choose(1 << 14, 1 << 14, b.tile_align, b.train_latent, b.costs, 50,
                              fits=limits.fits_budget(b.costs, 1))
    tile = (big.th, big.overlap)
    backends = {name: engine.unavailable_reason(name, b) or "available" for name in engine.BACKENDS}
    for name in engine.AUTO_IF_MEASURED:
        why = engine.auto_unavailable_reason(name, b)
        if backends[name] == "available" and why:
            backends[name] = f"available; auto passes it over: {why}"
    auto = next((n for n in engine.AUTO_ORDER if engine.auto_unavailable_reason(n, b) is None), None)
    return {
        "directory": str(b.root), "model": b.name, "source": m["model"].get("source"),
        "kind": "super-resolution" if b.conditional else "generation", "precision": b.precision,
        "format_version": m["format_version"], "scale_factor": m.get("scale_factor"),
        "latent": {**m["latent"], "default_tile": list(tile),
                   "default_tile_working_bytes": limits.graph_bytes(b.costs, 1, tile[0], tile[0])},
        "schedule": {k: v for k, v in m["schedule"].items() if k != "alpha_bar"},
        "alpha_bar": [float(b.alpha_bar[0]), float(b.alpha_bar[-1])], "query_chunk": b.query_chunk,
        "graphs": {k: {"file": g["file"], "bytes": (b.root / g["file"]).stat().st_size,
                       "sha256": g["sha256"], "precision": g.get("precision")} for k, g in b.graphs.items()},
        "producer": m.get("producer"),
        "tensorrt": None if not b.tensorrt else {k: b.tensorrt.get(k) for k in ("version", "gpu", "compute_capability")},
        "checksums": "verified" if verify else "not checked", "backends": backends, "auto": auto,
    }


def cmd_info(args) -> int:
    from . import limits

    s = summary(args.engines, verify=not args.no_verify)
    if args.json:
        _say(json.dumps(s, indent=2))
        return 0
    lat, sch = s["latent"], s["schedule"]
    lines = [
        f"{s['directory']}: {s['model']} ({s['kind']}), {s['precision']}, manifest format {s['format_version']}",
        f"  weights:   {s['source']}",
        f"  latent:    {lat['z_channels']} channels, auto-encoder /{lat['ae_downsample']}, cond_scale "
        f"{lat['cond_scale']}, U-Net multiple {lat['unet_multiple']}, generation latent "
        f"{lat['generation_latent'][0]}x{lat['generation_latent'][1]}, scale factor {s['scale_factor']:.4g}",
        f"  schedule:  {sch['name']}, T = {sch['timesteps']}, alpha_bar {s['alpha_bar'][0]:.6g} .. {s['alpha_bar'][1]:.6g}",
        f"  tiles:     latent tiles of {lat['default_tile'][0]} cells, overlap {lat['default_tile'][1]} "
        f"(trained on {lat['train_latent']}x{lat['train_latent']}; starts multiples of {lat['tile_align']}), "
        f"about {lat['default_tile_working_bytes'] / 2 ** 20:.0f} MiB per graph call (budget "
        f"{limits.GRAPH_MEMORY_BUDGET / 2 ** 30:g} GiB); one piece when that fits and is cheaper",
        f"  queries:   {s['query_chunk']} per LIIF call",
        "  graphs:    " + ", ".join(f"{g['file']} {g['bytes'] / 2 ** 20:.1f} MiB" for g in s["graphs"].values())
        + f" (checksums {s['checksums']})",
        "  producer:  " + ", ".join(f"{k} {v}" for k, v in (s["producer"] or {}).items()),
        "  tensorrt:  " + ("none" if not s["tensorrt"] else
                            f"TensorRT {s['tensorrt']['version']} for {s['tensorrt']['gpu']} "
                            f"(sm {s['tensorrt']['compute_capability']})"),
        "  backends:",
        *[f"    {k:<9} {v}" for k, v in s["backends"].items()],
        f"  auto picks: {s['auto']}",
    ]
    _say("\n".join(lines))
    return 0


def cmd_profile(args) -> int:
    from . import profile

    if args.image is not None and args.scale is None and args.size is None:
        raise InputError("give --scale or --size")
    for path in (args.json, args.plot):
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise InputError(f"{path}: output folder {Path(path).parent} does not exist")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError("--plot needs matplotlib: pip install 'ldmind[plot]'") from None
    p = profile.profile(args.engines, args.image, args.scale, args.size, args.steps, args.sampler, args.backend,
                        args.repeat, threads=args.threads)
    _say(profile.table(p))
    if args.json:
        profile.write_json(p, args.json)
    if args.plot:
        profile.plot(p, args.plot)
    return 0


def cmd_serve(args) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise LdmindError("the service needs Starlette and uvicorn: install the serve extra: "
                          "pip install 'ldmind[serve]'") from None
    from .pipeline import Pipeline
    from .serve import Settings, serve

    settings = Settings(workers=args.workers, queue=args.queue, timeout_s=args.timeout,
                        max_body_bytes=max(1, round(args.max_body_mb * 2 ** 20)),
                        max_input_pixels=max(1, round(args.max_input_mpx * 1e6)),
                        max_output_pixels=max(1, round(args.max_output_mpx * 1e6)),
                        max_steps=args.max_steps, default_steps=min(Settings.default_steps, args.max_steps),
                        shutdown_timeout_s=args.shutdown_timeout)
    pipe = Pipeline.load(args.engines, backend=args.backend, threads=args.threads)
    stopped_by, counts = serve(pipe, settings, args.host, args.port, access_log=not args.quiet,
                               say=lambda line: _say(f"{PROG}: {line}", sys.stderr))
    _say(f"{PROG}: stopped{f' ({stopped_by})' if stopped_by else ''}: "
         + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()), sys.stderr)
    return 0


def _notes(e: BaseException) -> str:
    return "".join(f"; {n}" for n in getattr(e, "__notes__", ()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = None
    try:
        # SIGTERM as SIGINT: an exception, so the temporary output is removed (main thread only)
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        pass
    try:
        return {"upscale": cmd_upscale, "generate": cmd_generate, "info": cmd_info,
                "profile": cmd_profile, "serve": cmd_serve}[args.command](args)
    except LdmindError as e:
        _say(f"{PROG}: error: {e}", sys.stderr)
        return 2
    except MemoryError:
        _say(f"{PROG}: error: the machine ran out of memory; ask for a smaller output, fewer samples or a "
             f"smaller input, or free memory", sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        _say(f"{PROG}: interrupted (SIGINT){_notes(e)}", sys.stderr)
        return 130
    except Terminated as e:
        _say(f"{PROG}: terminated (SIGTERM){_notes(e)}", sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as e:  # noqa: BLE001 - a bug: say so in one line unless debugging
        if os.environ.get("LDMIND_DEBUG"):
            raise
        _say(f"{PROG}: internal error: {type(e).__name__}: {e} (set LDMIND_DEBUG=1 for the traceback)", sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

"""The commands of ``python -m runtime`` on parsed arguments (``cli.py`` parses and dispatches):
each returns the exit status or raises ``LdmindError`` (one line, exit 2)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import info
from .console import PROG, Terminated, one_line, say
from .errors import InputError, LdmindError
from .request import GenerateRequest, UpscaleRequest


def _outputs(path: str, n: int) -> list[Path]:
    p = Path(path)
    return [p] if n == 1 else [p.with_name(f"{p.stem}_{j}{p.suffix}") for j in range(n)]


def _load(args):
    from .pipeline import Pipeline
    from .progress import Progress

    pipe = Pipeline.load(args.engines, backend=args.backend, tile=args.tile, threads=args.threads,
                         precision=args.precision)
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
    from .batch import warn_dropped_metadata
    from .image_in import load_upscale_input
    from .output_paths import check_depth, check_output_path, output_depth

    request = UpscaleRequest.from_namespace(args)
    if Path(args.input).is_dir():
        return _upscale_folder(args, request)
    if args.recursive or args.skip_existing or args.ext is not None:
        raise InputError(f"{args.input}: --recursive, --skip-existing and --ext apply to a folder input, "
                         f"and this is not a folder")
    if args.ray or args.workers is not None:
        raise InputError(f"{args.input}: --ray and --workers apply to a folder input, and this is not a folder")
    outs = _outputs(args.output, request.num_samples)
    for o in outs:
        check_output_path(o, inputs=(args.input,), overwrite_input=args.overwrite)
    check_depth(outs[0], args.depth)
    image, meta = load_upscale_input(args.input, outs)
    depth = output_depth(outs[0], image.dtype, args.depth)
    warn_dropped_metadata(outs[0], meta, args.input, _warner(args))
    pipe, progress = _load(args)
    images = pipe.upscale(image, **request.kwargs(), progress=progress, depth=depth)
    save = _saver(args)
    for img, o in zip(images, outs):
        say(one_line(str(save(img, o, meta))))
    return 0


def _warner(args):
    """``warn(note)``: one warning line (metadata an output format cannot hold, said before the
    work: ``image_out.fit_metadata``); None with --strip-metadata (nothing is carried anyway)."""
    if getattr(args, "strip_metadata", False):
        return None
    return lambda note: say(one_line(f"{PROG}: warning: {note}"), sys.stderr)


def _upscale_folder(args, request: UpscaleRequest) -> int:
    from .batch import Summary, file_progress, plan_folder, run_folder

    if args.workers is not None and not args.ray:
        raise InputError("--workers N runs a folder on N Ray workers: give --ray local or --ray ADDRESS too")
    src, out = Path(args.input), Path(args.output)
    if args.ray:
        from .ray_cluster import require_ray
        require_ray()                   # without Ray: its one line before anything else
    jobs = plan_folder(src, out, args.recursive, args.ext, request.num_samples, args.overwrite, args.depth)
    if args.ray:                        # the same jobs on a Ray actor pool (runtime/ray_batch.py)
        from .ray_batch import upscale_folder
        return upscale_folder(args, request, jobs, _saver(args))
    pipe, progress = _load(args)
    if not args.quiet:
        say(one_line(f"{progress.header}; {len(jobs)} images from {src}"), sys.stderr)
    out.mkdir(exist_ok=True)
    summary = Summary()
    try:
        run_folder(jobs, pipe, request, args.depth, _saver(args), args.skip_existing, lambda path: say(one_line(path)),
                   lambda line: say(one_line(f"{PROG}: failed: {line}"), sys.stderr), file_progress(quiet=args.quiet),
                   summary, warn=_warner(args))
    except (KeyboardInterrupt, Terminated) as e:
        e.add_note(f"{summary.line()} before it; --skip-existing resumes")   # main's one line says it
        raise
    say(f"{PROG}: {summary.line()}", sys.stderr)
    return 1 if summary.failed else 0


def cmd_generate(args) -> int:
    request = GenerateRequest.from_namespace(args)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; -o wants a folder for generated images")
    if not out.exists():
        if not out.parent.is_dir():
            raise InputError(f"{out}: parent folder {out.parent} does not exist")
    pipe, progress = _load(args)
    images = pipe.generate(**request.kwargs(), progress=progress, depth=args.depth)
    out.mkdir(exist_ok=True)
    save = _saver(args)
    for j, img in enumerate(images):
        say(one_line(str(save(img, out / f"sample_seed{request.seed + j}.png"))))
    return 0


def cmd_info(args) -> int:
    from .backends import onnxruntime
    from .bundle import load_bundle

    verify = not args.no_verify
    b = load_bundle(args.engines, verify=verify)
    if verify:
        onnxruntime.verify_graphs(b)    # a swapped graph file with its checksum fixed up
    s = info.summary(b, verified=verify)
    say(json.dumps(s, indent=2) if args.json else info.lines(s))
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
                        args.repeat, threads=args.threads, precision=args.precision,
                        latent_overlap=args.latent_overlap, fidelity=args.fidelity)
    say(f"backends: {p['backend_reason']}")
    say(profile.table(p))
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
    from .guard import load_api_keys
    from .pipeline import Pipeline
    from .serve import Settings, serve

    settings = Settings(workers=args.workers, queue=args.queue, timeout_s=args.timeout,
                        max_body_bytes=max(1, round(args.max_body_mb * 2 ** 20)),
                        max_input_pixels=max(1, round(args.max_input_mpx * 1e6)),
                        max_output_pixels=max(1, round(args.max_output_mpx * 1e6)),
                        max_steps=args.max_steps, default_steps=min(Settings.default_steps, args.max_steps),
                        shutdown_timeout_s=args.shutdown_timeout,
                        api_keys=load_api_keys(args.api_key_file) if args.api_key_file else (),
                        per_client_concurrency=args.per_client_concurrency,
                        per_client_per_minute=args.per_client_per_minute,
                        header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
                        body_chunk_timeout_s=args.body_chunk_timeout,
                        max_header_bytes=max(1, round(args.max_header_kb * 1024)))
    if args.ray:                        # one pipeline per Ray Serve replica (runtime/ray_serve.py)
        from .ray_serve import serve_on_ray
        return serve_on_ray(args, settings)
    if args.replicas is not None:
        raise InputError("--replicas N runs N copies of the service on Ray Serve: give --ray local or --ray "
                         "ADDRESS too")
    pipe = Pipeline.load(args.engines, backend=args.backend, threads=args.threads, precision=args.precision)
    stopped_by, counts = serve(pipe, settings, args.host, args.port, access_log=not args.quiet,
                               say=lambda line: say(f"{PROG}: {line}", sys.stderr))
    say(f"{PROG}: stopped{f' ({stopped_by})' if stopped_by else ''}: "
        + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()), sys.stderr)
    return 0


COMMANDS = {"upscale": cmd_upscale, "generate": cmd_generate, "info": cmd_info, "profile": cmd_profile,
            "serve": cmd_serve}

"""``python -m runtime``: upscale, generate, info, profile, serve.

    python -m runtime upscale IN [--engines DIR] (--scale S | --size WxH) [-n K] [--steps N]
                      [--eta E] [--fidelity F] [--seed S] [--backproject K] [--backend B] [--tile Q]
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

This module: the command line (flags, their parsers from ``request.py``, defaults from the
contract) and ``main``, which runs a command of ``commands.py`` and turns every failure into
its one line and exit status.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

from ldmind_ref.core import contract

from .commands import COMMANDS
from .console import PROG, Terminated, on_sigterm, one_line, say
from .backends.onnxruntime import CPU_QUERY_TILE
from .engine import BACKENDS, PRECISIONS
from .errors import LdmindError
from .request import (int_at_least, parse_backproject, parse_depth, parse_eta, parse_fidelity, parse_port,
                      parse_quality, parse_scale, parse_size, positive_number)


BACKEND_HELP = "graph backend (default auto: on the CPU, each graph on the fastest backend allowed here)"
PRECISION_HELP = ("CPU arithmetic: auto (bf16 where the CPU has it natively and the model's quality gate "
                  "allows it), fp32, or bf16 (forced, on openvino-bf16)")
THREADS_HELP = f"CPU threads per graph (default {contract.DEFAULT_THREADS}: ONNX Runtime decides)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        # one line, no usage dump (the contract of every error of this CLI); an argument argparse
        # quotes as typed (an unrecognized one) may hold a newline or an escape
        self.exit(2, one_line(f"{PROG}: error: {message} (see --help)") + "\n")


def _common(p: argparse.ArgumentParser, engines: str) -> None:
    c = contract
    p.add_argument("--engines", default=engines,
                   help=f"engine directory written by `python -m export` (default {engines})")
    p.add_argument("-n", "--num-samples", type=int_at_least(1, "-n"), default=c.DEFAULT_NUM_SAMPLES,
                   help=f"samples (default {c.DEFAULT_NUM_SAMPLES})")
    p.add_argument("--steps", type=int_at_least(1, "--steps"), default=c.DEFAULT_STEPS,
                   help=f"sampler steps (default {c.DEFAULT_STEPS})")
    p.add_argument("--eta", type=parse_eta, default=c.DEFAULT_ETA,
                   help=f"DDIM eta: 0 deterministic, 1 DDPM-like (default {c.DEFAULT_ETA:g})")
    p.add_argument("--fidelity", type=parse_fidelity, default=c.DEFAULT_FIDELITY,
                   help=f"detail against faithfulness, 0..1: 0 the paper's sampler (the model's full diversity); "
                        f"higher skips the noisiest and the last steps: more faithful and faster "
                        f"(default {c.DEFAULT_FIDELITY:g} for upscale, {c.DEFAULT_GENERATION_FIDELITY:g} for generate)")
    p.add_argument("--schedule", choices=c.DDIM_SCHEDULES, default=c.DEFAULT_DDIM_SCHEDULE,
                   help=f"DDIM steps executed: full (all N) or paper (the paper's code: the noisiest "
                        f"step dropped, N - 1 run; default {c.DEFAULT_DDIM_SCHEDULE})")
    p.add_argument("--sampler", choices=c.SAMPLERS, default=c.DEFAULT_SAMPLER,
                   help=f"ddim, or dpm++2m: DPM-Solver++(2M), deterministic, the same image in fewer steps "
                        f"(--eta and --schedule are DDIM's) (default {c.DEFAULT_SAMPLER})")
    p.add_argument("--seed", type=int, default=c.DEFAULT_SEED,
                   help=f"sample j uses seed + j (default {c.DEFAULT_SEED})")
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help=BACKEND_HELP)
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--tile", type=int_at_least(1, "--tile"), default=None,
                   help=f"output pixels per LIIF query (default: the manifest's query_chunk, at most "
                        f"{CPU_QUERY_TILE} on the cpu backend)")
    p.add_argument("--latent-tile", type=int_at_least(1, "--latent-tile"), default=None,
                   help="latent tile side in cells (default: from the model, see docs/RUNTIME.md)")
    p.add_argument("--latent-overlap", type=int_at_least(0, "--latent-overlap"), default=None,
                   help="overlap of neighbouring latent tiles in cells (default: at least 8 %% of the tile)")
    _threads(p, THREADS_HELP)
    p.add_argument("--quality", type=parse_quality, default=None,
                   help=f"JPEG and lossy WebP output quality {c.MIN_QUALITY}..{c.MAX_QUALITY} "
                        f"(default {c.DEFAULT_QUALITY})")
    p.add_argument("--webp-lossless", action="store_true", help="WebP output without loss")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _threads(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--threads", type=int_at_least(0, "--threads"), default=contract.DEFAULT_THREADS, help=help)


def build_parser() -> argparse.ArgumentParser:
    c = contract
    p = _Parser(prog=PROG, description="Arbitrary-scale upsampling and generation on exported ldmind graphs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    up = sub.add_parser("upscale", help="super-resolve an image to any scale or size")
    up.add_argument("input", help="input image (PNG, JPEG, WebP, TIFF, BMP, ...), or a folder of them")
    what = up.add_mutually_exclusive_group(required=True)
    what.add_argument("--scale", type=parse_scale, help="scale factor s: output round(s*h) x round(s*w)")
    what.add_argument("--size", type=parse_size, help="output size WIDTHxHEIGHT")
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
    up.add_argument("--depth", type=parse_depth, default="auto",
                    help="bits per value of the output, 8 or 16 (PNG, TIFF) (default auto: 16 when the input "
                         "is a 16-bit file and the output format stores 16 bits, else 8)")
    up.add_argument("--backproject", type=parse_backproject, default=c.DEFAULT_BACKPROJECT,
                    help=f"iterations of back-projection onto the input, so that the output shrunk "
                         f"by PIL bicubic gives the input back (default {c.DEFAULT_BACKPROJECT}; 0: raw sample)")
    _ray(up, "--workers", "folder input: Ray workers, each loading the engines once (default 1)")
    _common(up, c.DEFAULT_ENGINES)
    gen = sub.add_parser("generate", help="sample new images (generation models)")
    gen.add_argument("--size", type=parse_size, required=True, help="output size WIDTHxHEIGHT")
    gen.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    gen.add_argument("--depth", type=parse_depth, default=8, help="bits per value of the PNG outputs, 8 or 16 "
                                                                 "(default 8)")
    gen.add_argument("--zoom", action="store_true",
                     help="sample the training latent and stretch it to --size (large, soft cells); "
                          "default: a latent of the output's own scale, tiled, detail at the photos' scale")
    _common(gen, c.DEFAULT_GENERATION_ENGINES)
    gen.set_defaults(fidelity=c.DEFAULT_GENERATION_FIDELITY)   # generation's own default (contract)
    prof = sub.add_parser("profile", help="latency of one real request, stage by stage")
    prof.add_argument("engines", help="engine directory")
    prof.add_argument("image", nargs="?", default=None, help="input image (super-resolution models)")
    what = prof.add_mutually_exclusive_group()
    what.add_argument("--scale", type=parse_scale, help="scale factor")
    what.add_argument("--size", type=parse_size, help="output size WIDTHxHEIGHT")
    prof.add_argument("--steps", type=int_at_least(1, "--steps"), default=c.DEFAULT_STEPS,
                      help=f"steps (default {c.DEFAULT_STEPS})")
    prof.add_argument("--sampler", choices=c.SAMPLERS, default=c.DEFAULT_SAMPLER, help="ddim or dpm++2m")
    prof.add_argument("--fidelity", type=parse_fidelity, default=None,
                      help=f"the request's fidelity (default {c.DEFAULT_FIDELITY:g} for upscale, "
                           f"{c.DEFAULT_GENERATION_FIDELITY:g} for generation)")
    prof.add_argument("--latent-overlap", type=int_at_least(0, "--latent-overlap"), default=None,
                      help="overlap of neighbouring latent tiles in cells (default: the request default)")
    prof.add_argument("--backend", default="auto", choices=["auto", *BACKENDS])
    prof.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    _threads(prof)
    prof.add_argument("--repeat", type=int_at_least(1, "--repeat"), default=c.DEFAULT_PROFILE_REPEAT,
                      help=f"requests measured after one warm-up (default {c.DEFAULT_PROFILE_REPEAT}); "
                           f"figures are medians")
    prof.add_argument("--json", default=None, help="write the profile as JSON")
    prof.add_argument("--plot", default=None, help="write a bar chart (PNG; needs matplotlib)")
    info = sub.add_parser("info", help="summarise an engine directory")
    info.add_argument("engines", help="engine directory")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--no-verify", action="store_true", help="skip the checksum verification")
    _serve_parser(sub)
    return p


def _serve_parser(sub) -> None:
    from .guard import KEYS_FILE_ENV
    from .service import Settings    # the service's defaults, stated once (no Starlette needed)

    d = Settings()
    srv = sub.add_parser("serve", help="an HTTP upscaling service (needs the serve extra)")
    srv.add_argument("--engines", default=contract.DEFAULT_ENGINES,
                     help=f"engine directory written by `python -m export` (default {contract.DEFAULT_ENGINES})")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=parse_port, default=8000, help="TCP port (default 8000; 0: any free port, printed)")
    srv.add_argument("--workers", type=int_at_least(1, "--workers"), default=d.workers,
                     help=f"upscales running at once on the one loaded pipeline (default {d.workers})")
    srv.add_argument("--queue", type=int_at_least(0, "--queue"), default=d.queue,
                     help=f"requests waiting for a worker before 503 (default {d.queue})")
    srv.add_argument("--timeout", type=positive_number("--timeout"), default=d.timeout_s,
                     help=f"seconds per request, queue wait included, before 504 (default {d.timeout_s:g})")
    srv.add_argument("--max-body-mb", type=positive_number("--max-body-mb"), default=d.max_body_bytes / 2 ** 20,
                     help=f"largest upload in MiB (default {d.max_body_bytes / 2 ** 20:g})")
    srv.add_argument("--max-input-mpx", type=positive_number("--max-input-mpx"), default=d.max_input_pixels / 1e6,
                     help=f"largest input image in megapixels (default {d.max_input_pixels / 1e6:g})")
    srv.add_argument("--max-output-mpx", type=positive_number("--max-output-mpx"),
                     default=d.max_output_pixels / 1e6,
                     help=f"largest output image in megapixels (default {d.max_output_pixels / 1e6:g})")
    srv.add_argument("--max-steps", type=int_at_least(1, "--max-steps"), default=d.max_steps,
                     help=f"most DDIM steps a request may ask for (default {d.max_steps}; "
                          f"a request without steps gets {d.default_steps})")
    srv.add_argument("--shutdown-timeout", type=positive_number("--shutdown-timeout"), default=d.shutdown_timeout_s,
                     help=f"seconds SIGTERM waits for running and waiting requests (default {d.shutdown_timeout_s:g})")
    srv.add_argument("--api-key-file", default=os.environ.get(KEYS_FILE_ENV) or None, metavar="PATH",
                     help=f"require Authorization: Bearer KEY with a key of this file (one a line, # comments; "
                          f"mode 600); default ${KEYS_FILE_ENV}, else no authentication")
    srv.add_argument("--per-client-concurrency", type=int_at_least(0, "--per-client-concurrency"),
                     default=d.per_client_concurrency,
                     help=f"upscales one client (API key, else address) may have in progress, 429 beyond "
                          f"(default {d.per_client_concurrency}; 0: no limit)")
    srv.add_argument("--per-client-per-minute", type=int_at_least(0, "--per-client-per-minute"),
                     default=d.per_client_per_minute,
                     help=f"upscales one client may start in 60 s, 429 beyond (default {d.per_client_per_minute}; "
                          f"0: no limit)")
    srv.add_argument("--header-timeout", type=positive_number("--header-timeout"), default=d.header_timeout_s,
                     help=f"seconds for a request's headers to arrive (default {d.header_timeout_s:g})")
    srv.add_argument("--body-timeout", type=positive_number("--body-timeout"), default=d.body_timeout_s,
                     help=f"seconds for a whole upload, 408 beyond (default {d.body_timeout_s:g})")
    srv.add_argument("--body-chunk-timeout", type=positive_number("--body-chunk-timeout"),
                     default=d.body_chunk_timeout_s,
                     help=f"seconds between two pieces of an upload, 408 beyond (default {d.body_chunk_timeout_s:g})")
    srv.add_argument("--max-header-kb", type=positive_number("--max-header-kb"), default=d.max_header_bytes / 1024,
                     help=f"largest request line + headers in KiB, 431 beyond (default {d.max_header_bytes / 1024:g})")
    srv.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help=BACKEND_HELP)
    srv.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    _threads(srv, THREADS_HELP)
    srv.add_argument("-q", "--quiet", action="store_true", help="no access log (one line per request on stderr)")
    _ray(srv, "--replicas", "copies of the service on Ray Serve, each with its own pipeline, --workers and --queue "
                            "(default 1)")


def _ray(p: argparse.ArgumentParser, count: str, help: str) -> None:
    """--ray local|ADDRESS and its count of workers or replicas (the ray extra; docs/DEPLOY.md)."""
    p.add_argument("--ray", default=None, metavar="local|ADDRESS",
                   help="run on Ray: local starts an instance on this machine for the command, ADDRESS joins a "
                        "running cluster (e.g. auto, or HEAD:6379; needs the ray extra)")
    p.add_argument(count, type=int_at_least(1, count), default=None, help=help)


def _notes(e: BaseException) -> str:
    return "".join(f"; {n}" for n in getattr(e, "__notes__", ()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = None
    try:
        # SIGTERM as SIGINT: an exception, so the temporary output is removed (main thread only)
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:
        pass
    try:
        return COMMANDS[args.command](args)
    except LdmindError as e:
        say(one_line(f"{PROG}: error: {e}"), sys.stderr)
        return 2
    except MemoryError:
        say(f"{PROG}: error: {contract.OUT_OF_MEMORY}", sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        say(one_line(f"{PROG}: interrupted (SIGINT){_notes(e)}"), sys.stderr)
        return 130
    except Terminated as e:
        say(one_line(f"{PROG}: terminated (SIGTERM){_notes(e)}"), sys.stderr)
        return 128 + signal.SIGTERM
    except Exception as e:  # noqa: BLE001 - a bug: say so in one line unless debugging
        if os.environ.get("LDMIND_DEBUG"):
            raise
        say(one_line(f"{PROG}: internal error: {type(e).__name__}: {e} (set LDMIND_DEBUG=1 for the traceback)"),
            sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

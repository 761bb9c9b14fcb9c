"""The request contract, stated once: defaults, limits, progress stage names and the messages
that refuse a bad request.

Read by the reference sampler, the runtime's pipeline, CLI, service, folder run and profiler,
and by the C++ library and CLI through ``runtime/cpp/src/contract.hpp``, which this module
writes (``python -m ldmind_ref.core.contract --cpp runtime/cpp/src/contract.hpp``; a test
fails when the committed header differs from what it writes now).  Plain Python: nothing is
imported, so every side can read it.

Messages are templates whose only fields are ``{}``, filled in order: Python
``ETA.format(value)``, C++ ``contract::fill(contract::ETA, {value})``.  Where a message
quotes what the user typed, the caller passes ``repr(text)`` (C++: ``py_repr``).
"""
from __future__ import annotations

# -- engines --------------------------------------------------------------------------------
# Where `python -m runtime` and `ldmind` look without --engines: the shipped super-resolution
# and generation models as `make demo` / `python -m runtime.programs.demo` export them (engines/README.md).
DEFAULT_ENGINES = "engines/small"
DEFAULT_GENERATION_ENGINES = "engines/small-gen"

# -- sampling -------------------------------------------------------------------------------
# Samplers over the one ``unet_step`` graph (``diffusion.sampling_schedule``): "ddim", or
# "dpm++2m", DPM-Solver++(2M), deterministic, the same image in fewer steps.
SAMPLERS = ("ddim", "dpm++2m")
# The defaults of every API and CLI, chosen by the quality-against-steps curve of the shipped
# model (docs/RESULTS.md, "Fewer steps"; `python -m runtime.programs.bench_steps`) on the
# held-out training photos: DPM-Solver++(2M) with 8 steps is within 0.11 dB PSNR-Y of 10 steps
# raw and 0.01 dB after back-projection at 4x and 8x (the reduced-precision gate allows 0.2 and
# 0.1), for 4/5 of the U-Net calls; 6 steps lose 0.45 dB raw.  10 steps were within 0.07 dB of
# 50 DDIM steps.
DEFAULT_SAMPLER = "dpm++2m"
DEFAULT_STEPS = 8
# DPM-Solver++(2M), as diffusers' DPMSolverMultistepScheduler (lower_order_final): below this
# many steps the last step is first order, which is stabler where the step in lambda is the longest.
LOWER_ORDER_FINAL_BELOW = 15
# DDIM's executed steps: "full" (all N) or "paper" (the paper's code: the noisiest dropped,
# N - 1 run; ``diffusion.ddim_executed_timesteps``).
DDIM_SCHEDULES = ("full", "paper")
DEFAULT_DDIM_SCHEDULE = "full"
# DDIM's eta: 0 deterministic, 1 DDPM-like (the latent-diffusion DDIM sampler's default).
DEFAULT_ETA = 1.0
# Fidelity: detail against faithfulness.  It narrows the sampler's window of steps
# (``diffusion.fidelity_window``): the noisiest steps are skipped, starting from the noised
# conditioning latent, and the sampler exits early with the network's estimate of z_0.  0 is the
# paper's sampler (the model's full diversity); higher is more faithful and runs fewer steps.
# The default is chosen on the held-out training photos by a stated rule: the smallest F whose
# raw samples beat bicubic at 4x and 8x (docs/RESULTS.md, "Fidelity";
# ``python -m runtime.programs.bench_fidelity``); for the shipped `small`, 0.25 (6 of 8 steps).
DEFAULT_FIDELITY = 0.25
# Generation's own default (its sampler has no conditioning latent to start from, so fidelity
# only ends its window early): 0, because ending early costs generation its texture
# (``gen_eval``: fd_stats 5.85 at 0 against 9.36 at 0.5; docs/RESULTS.md, "Fidelity").
DEFAULT_GENERATION_FIDELITY = 0.0
MIN_FIDELITY, MAX_FIDELITY = 0.0, 1.0
DEFAULT_SEED = 0            # sample j uses seed + j
DEFAULT_NUM_SAMPLES = 1
MAX_SAMPLES = 1024          # most samples one request may ask for

# -- back-projection onto the input (``consistency``) ----------------------------------------
DEFAULT_BACKPROJECT = 10    # iterations of ``upscale`` (0 = the raw diffusion sample)
MAX_BACKPROJECT = 100       # largest count the APIs and CLIs accept

# -- output ---------------------------------------------------------------------------------
DEFAULT_QUALITY = 95        # JPEG and lossy WebP (Pillow's own default, 75, visibly softens an upscale)
MIN_QUALITY, MAX_QUALITY = 1, 100
DEFAULT_THREADS = 0         # CPU threads per graph; 0: ONNX Runtime decides
DEFAULT_PROFILE_REPEAT = 3  # requests `profile` measures after its warm-up

# -- latent tiles (``latent_tiles``) ---------------------------------------------------------
# Default tile: this many times the latent the model was trained on; neighbouring tiles
# overlap by at least this fraction of it (8 cells of small's 96; the plan spreads its tiles
# evenly, so most overlaps are larger).  Measured on Set5/Set14 at 4x (docs/BENCHMARKS.md,
# "Tiles and seams", `bench_tiles exact`): where two tiles meet with exactly 8 cells of
# overlap, the seam score stays within 0.5 % of the untiled image's at the defaults and 2.1 %
# raw (4 cells: 0.8 % / 4.8 %; no overlap: +3 to +6 % / up to 30 %).  A quarter (the value
# before 2026-12-07) cost 1.81x the latent's cells on a 1-Mpx input; this costs 1.33x.
DEFAULT_TILE_FACTOR = 4
MIN_OVERLAP_FRACTION = 0.08
# Latent cells per graph call when tiles are batched: bounds the activations of one call (on a
# CPU, batching tiles is no faster than one tile per call: measured 4.26 s for 4 tiles of 96 x
# 96 through the small encoder, 1.15 s for one, with 3.5x the peak memory).
TILE_BATCH_CELLS = 96 * 96

# -- memory (runtime/limits.py) --------------------------------------------------------------
# What a process needs besides the estimates: ONNX Runtime's arenas, per-tile buffers, Python.
HEADROOM = 512 * 1024 ** 2
# The most working memory the runtime's own tile choice lets one graph call take, whatever the
# machine has: memory stays bounded (a service runs several pipelines) and larger calls are not
# faster per cell on a CPU.  A user's forced latent tile may use more.
GRAPH_MEMORY_BUDGET = 1024 ** 3
# The measured working-memory terms see the values of the graph, not kernel scratch space or
# allocator slack: single calls of 96^2 cells and more measured 0.79-1.70x the terms, the calls
# of several hundred MiB 0.79-1.34x (docs/BENCHMARKS.md).
MEMORY_MARGIN = 1.5

# -- progress: the stages a pipeline reports to its ``progress(stage, done, total)`` ----------
STAGE_ENCODE = "encode"              # encoder tile groups
STAGE_DENOISE = "denoise"            # sampler steps
STAGE_DECODE = "decode"              # decoder tile groups
STAGE_RENDER = "render"              # LIIF query chunks; reported as "render WxH" per output size
STAGE_BACKPROJECT = "back-project"   # one per sample
# `profile`'s table, in order, and the progress stage each row times
PROFILE_STAGES = ("image decode", "encoder", "U-Net steps", "decoder", "LIIF queries", "back-projection",
                  "image encode+write", "other")
PROFILE_STAGE_OF = {STAGE_ENCODE: "encoder", STAGE_DENOISE: "U-Net steps", STAGE_DECODE: "decoder",
                    STAGE_RENDER: "LIIF queries", STAGE_BACKPROJECT: "back-projection"}

# -- messages (templates: see the module docstring) ------------------------------------------
NUMBER = "{} must be a number, got {}"                          # what, repr(text)
POSITIVE_NUMBER = "{} must be a finite number > 0, got {}"      # what, value
INTEGER = "{} must be an integer, got {}"                       # what, repr(text)
AT_LEAST = "{} must be >= {}, got {}"                           # what, lowest, value
IN_RANGE = "{} must be in {}..{}, got {}"                       # what, lowest, highest, value
POSITIVE_INTEGER = "{} must be a positive integer, got {}"      # what, value
NON_NEGATIVE_INTEGER = "{} must be a non-negative integer, got {}"
ONE_OF = "{} must be one of {}, got {}"                         # what, "a, b", repr(value)
ETA = "eta must be a finite number >= 0, got {}"
FIDELITY = "fidelity must be a number in 0..1, got {}"         # value
ETA_TOO_LARGE = ("eta {} is too large for {} steps: sigma_t^2 would exceed 1 - alpha_bar_prev; this schedule "
                 "allows eta up to {}")                         # eta %g, steps, largest %.4g
STEPS = "steps must be an integer in 1..{}, got {}"             # timesteps, value
SCHEDULE_STEPS = "steps must be in 1..{}, got {}"               # timesteps, value
PAPER_STEPS = ("the paper schedule drops the noisiest of the requested steps: steps must be in 2..{}, "
               "got {}")                                        # timesteps, value
BACKPROJECT = "back-projection iterations must be an integer in 0..{}, got {}"   # MAX_BACKPROJECT, value
TOO_MANY_SAMPLES = "num_samples must be at most {}, got {}"     # MAX_SAMPLES, value
SIZE_FORMAT = "size must be WIDTHxHEIGHT in pixels, e.g. 512x384, got {}"        # repr(text)
SIZE_POSITIVE = "size must be positive, got {}"                 # repr(text)
DEPTH = "--depth must be 8, 16 or auto, got {}"                 # repr(text)
SCALE_AND_SIZE = "give either a scale or a size, not both"
SCALE_OR_SIZE = "give a scale or a size"
EMPTY_OUTPUT = "scale {} gives an empty output for a {}x{} input"                 # scale, w, h
LATENT_TILE = "latent tile must be a positive multiple of {} cells, got {}"      # align, value
LATENT_OVERLAP = "latent overlap must be a multiple of {} in 0..{} (half the tile), got {}"
LATENT_SIZE = "latent size must be positive multiples of {}, got {}x{}"          # align, h, w
GENERATION_MODEL = "{}: {} is a generation model (unconditional): use generate, not upscale"   # root, name
SR_MODEL = "{}: {} is a super-resolution model: use upscale, not generate"                   # root, name
NOT_FINITE = ("the {} graph produced NaN/inf{}: the engines are broken or the model diverged; "
              "no image was written")                           # graph, where ("" or " at t=...")
OUTPUT_MEMORY = ("{} {}x{} {} needs {} of memory but only {} is available; ask for a smaller scale or "
                 "size")                                        # "a" or "N images of", W, H, what, need, available
LATENT_MEMORY = ("{} with {}x{} latent tiles needs about {} of working memory, {} is available; use smaller "
                 "latent tiles (or fewer samples)")             # what, w, h, need, available
MEMORY_LIMIT_ENV = "LDMIND_MEMORY_LIMIT must be a number of bytes >= 0 (e.g. 8e9), got {}"   # repr(text)
# an input that is not a regular file, refused before a byte is read (a FIFO would block, a
# device such as /dev/zero never end): name, one of FILE_KINDS' values
NOT_A_REGULAR_FILE = "{}: is {}, not a regular image file"
FILE_KINDS = {"fifo": "a FIFO (named pipe)", "char": "a character device", "block": "a block device",
              "socket": "a socket", "other": "a special file"}
OUT_OF_MEMORY = ("the machine ran out of memory; ask for a smaller output, fewer samples or a smaller input, "
                 "or free memory")


def render_stage(width: int, height: int) -> str:
    """The progress stage of the LIIF queries of one output size."""
    return f"{STAGE_RENDER} {width}x{height}"


def profile_stage(stage: str) -> str:
    """The row of `profile`'s table that a progress stage belongs to."""
    return PROFILE_STAGE_OF.get(stage.split(" ")[0], stage)


# -- the C++ header ---------------------------------------------------------------------------
_FILL = """\
// a message template (the {} fields filled in order, as Python's str.format)
inline std::string fill(const char* tmpl, std::initializer_list<std::string> args) {
    std::string out, t = tmpl;
    auto a = args.begin();
    for (size_t i = 0; i < t.size(); ++i) {
        if (t[i] == '{' && i + 1 < t.size() && t[i + 1] == '}' && a != args.end()) {
            out += *a++;
            ++i;
        } else {
            out += t[i];
        }
    }
    return out;
}"""


def _cpp_string(s: str) -> str:
    if not s.isascii() or any(c in s for c in '"\\\n'):
        raise ValueError(f"contract string {s!r}: keep it plain ASCII without quotes or backslashes")
    return f'"{s}"'


def _check_template(name: str, s: str) -> None:
    import string
    for _, field, spec, conversion in string.Formatter().parse(s):
        if field is not None and (field or spec or conversion):
            raise ValueError(f"{name}: message fields must be bare {{}}, got {{{field}{spec or ''}}}")


def _cpp_value(name: str, v) -> str:
    if isinstance(v, bool):
        raise TypeError(f"{name}: no booleans in the contract")
    if isinstance(v, int):
        return f"inline constexpr {'int' if -2 ** 31 <= v < 2 ** 31 else 'long long'} {name} = {v};"
    if isinstance(v, float):
        return f"inline constexpr double {name} = {v!r};"
    if isinstance(v, str):
        _check_template(name, v)
        return f"inline constexpr const char* {name} = {_cpp_string(v)};"
    if isinstance(v, tuple) and all(isinstance(x, str) for x in v):
        return f"inline const std::vector<std::string> {name}{{{', '.join(map(_cpp_string, v))}}};"
    if isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        pairs = ", ".join(f"{{{_cpp_string(k)}, {_cpp_string(x)}}}" for k, x in v.items())
        return f"inline const std::map<std::string, std::string> {name}{{{pairs}}};"
    raise TypeError(f"{name}: {type(v).__name__} has no C++ form here")


def cpp_header() -> str:
    """``runtime/cpp/src/contract.hpp``: every public constant of this module, and ``fill``."""
    constants = {k: v for k, v in globals().items() if k.isupper() and not k.startswith("_")}
    lines = ["// Generated by `python -m ldmind_ref.core.contract --cpp runtime/cpp/src/contract.hpp`",
             "// from ldmind_ref/core/contract.py: do not edit (tests/test_contract.py compares them).",
             "#pragma once", "#include <initializer_list>", "#include <map>", "#include <string>",
             "#include <vector>", "", "namespace ldmind::contract {", ""]
    lines += [_cpp_value(k, v) for k, v in constants.items()]
    lines += ["", _FILL, "", "}  // namespace ldmind::contract", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m ldmind_ref.core.contract", description=__doc__.split("\n")[0])
    p.add_argument("--cpp", required=True, metavar="HEADER", help="write the C++ header here")
    a = p.parse_args(argv)
    with open(a.cpp, "w") as f:
        f.write(cpp_header())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Whole folders: ``python -m runtime upscale DIR -o OUTDIR [--recursive] [--skip-existing]``.

The input tree is mirrored under OUTDIR (``a/b.jpg`` -> ``OUTDIR/a/b.jpg``, or ``.png`` with
``--ext png``).  Everything that can be checked without reading pixels is checked before the
first image is touched (one line, exit 2): the folders, the extension, two inputs that would
write the same output, an output that is an input, --depth 16 for a format that stores 8 bits.
Then one loaded pipeline upscales the files in sorted order, each with the one
``UpscaleRequest`` of the command; a file that cannot be read or upscaled is reported on one line and
the batch goes on; a summary ends the run (done / skipped / failed, time), and the exit
status is 1 when any file failed.  Each output is written atomically, so an interrupted run
leaves only complete images, and ``--skip-existing`` resumes it where it stopped.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from .console import pause_point
from .errors import InputError, LdmindError
from .depth16 import PNG_IEND
from .image_in import decode_image, load_upscale_input, read_input_file
from .image_out import fit_metadata
from .output_paths import (OUTPUT_EXTENSIONS, check_depth, check_output_path, output_depth, output_extensions,
                           output_format)
from .request import UpscaleRequest


@dataclass(frozen=True)
class Job:
    src: Path
    outputs: tuple[Path, ...]     # one per sample


def input_extensions() -> set[str]:
    """File extensions this Pillow can read (a folder's other files are not images)."""
    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def output_name(rel: Path, ext: str | None, n: int) -> tuple[Path, ...]:
    """Output paths relative to OUTDIR for input ``rel``: its extension, or ``ext``, or .png when
    the input's format cannot be written; ``NAME_j.EXT`` per sample when n > 1."""
    suffix = ext or (rel.suffix.lower() if rel.suffix.lower() in OUTPUT_EXTENSIONS else ".png")
    base = rel.with_suffix(suffix)
    return (base,) if n == 1 else tuple(base.with_name(f"{base.stem}_{j}{suffix}") for j in range(n))


def plan_folder(src: Path, out: Path, recursive: bool, ext: str | None, n: int,
                overwrite: bool = False, depth: int | str = "auto") -> list[Job]:
    """The jobs of a folder run, or ``InputError`` for what would go wrong for every file
    (``depth``: bits per value asked for the outputs, 8, 16 or "auto")."""
    if ext is not None:
        ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
        if ext not in output_extensions():
            raise InputError(f"--ext {ext.lstrip('.')}: cannot write that format; use "
                             f"{', '.join(e.lstrip('.') for e in output_extensions())}")
    if not out.exists() and out.suffix.lower() in OUTPUT_EXTENSIONS:
        raise InputError(f"{src}: is a folder, so -o is the output folder, but {out} looks like an image "
                         f"file name; give a folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; with a folder as input, -o is the output folder")
    if not out.exists() and not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise InputError(f"{out}: its parent folder {out.parent} does not exist")
    readable = input_extensions()
    out_abs = out.resolve()
    files = []
    walk = os.walk(src) if recursive else [(str(src), [], [e.name for e in os.scandir(src) if not _is_dir(e)])]
    for folder, dirs, names in walk:
        # outputs written inside the input tree are not inputs of this run (or the next)
        dirs[:] = sorted(d for d in dirs if Path(folder, d).resolve() != out_abs)
        files += [Path(folder, f) for f in sorted(names) if Path(f).suffix.lower() in readable]
    if not files:
        raise InputError(f"{src}: no image files found" + ("" if recursive else " (add --recursive for subfolders)"))
    jobs, claimed = [], {}
    for f in files:
        outs = tuple(out / r for r in output_name(f.relative_to(src), ext, n))
        for o in outs:
            if o in claimed:
                raise InputError(f"{claimed[o]} and {f} would both be written to {o}; use --ext or rename one")
            claimed[o] = f
            if not overwrite and o.exists() and os.path.samefile(o, f):
                raise InputError(f"{o}: is the input image; refusing to replace it (add --overwrite)")
        jobs.append(Job(f, outs))
    for job in jobs:
        check_depth(job.outputs[0], depth)              # 16 for a format that stores 8 bits: refused up front
    return jobs


def _is_dir(entry: os.DirEntry) -> bool:
    """Whether a folder entry is a folder; one that cannot be told (a symlink loop) is listed
    as a file, so that reading it reports it as the one file that failed (as ``os.walk`` does)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return f"{self.done} done, {self.skipped} skipped, {self.failed} failed in {self.seconds:.1f} s"


def run_folder(jobs: list[Job], pipe, request: UpscaleRequest, depth: int | str, save: Callable,
               skip_existing: bool, say: Callable[[str], None], report: Callable[[str], None],
               progress: Callable[[int, int, float], None], s: Summary | None = None,
               warn: Callable[[str], None] | None = None) -> Summary:
    """Upscale each job on ``pipe`` (a ``Pipeline``) as ``request`` asks, its outputs ``depth``
    bits per value (8, 16, or "auto": as ``output_paths.output_depth`` decides per file), write each with
    ``save(image, path, metadata) -> path`` (``runtime.image_out.save_image``); ``say`` each output path (stdout),
    ``report`` one line per failed file (stderr), ``progress(done, total, eta)`` after each.
    Counts go into ``s`` as they happen (an interrupted run's caller still has them); ``warn``
    (stderr) is told of metadata an output cannot hold, before that file's work."""
    s = s if s is not None else Summary()
    t0 = time.perf_counter()
    worked = 0.0                       # seconds spent on files that were upscaled (for the ETA)
    for k, job in enumerate(jobs):
        if skip_existing and all(complete_output(o) for o in job.outputs):
            s.skipped += 1
        else:
            t = time.perf_counter()
            try:
                for o in job.outputs:
                    o.parent.mkdir(parents=True, exist_ok=True)
                    check_output_path(o)
                image, meta = load_upscale_input(job.src, job.outputs)
                warn_dropped_metadata(job.outputs[0], meta, job.src, warn)
                images = pipe.upscale(image, **request.kwargs(),
                                      depth=output_depth(job.outputs[0], image.dtype, depth))
                for img, o in zip(images, job.outputs):
                    say(str(save(img, o, meta)))
                s.done += 1
            except LdmindError as e:
                s.failed += 1
                report(f"{job.src}: {e}" if str(job.src) not in str(e) else str(e))
            except MemoryError:
                s.failed += 1
                report(f"{job.src}: the machine ran out of memory for this image")
            except OSError as e:     # mkdir of an output folder
                s.failed += 1
                report(f"{job.src}: cannot write its output ({e.strerror or e})")
            worked += time.perf_counter() - t
            pause_point("file-done")
        left = len(jobs) - k - 1
        attempted = s.done + s.failed
        s.seconds = time.perf_counter() - t0
        progress(k + 1, len(jobs), worked / attempted * left if attempted else float("nan"))
    return s


def complete_output(path: Path) -> bool:
    """Whether ``path`` is an output that --skip-existing may keep: a regular file that ends as
    its format ends (PNG's IEND chunk, JPEG's end marker, the length WebP's RIFF or BMP's header
    declares; a TIFF must decode).  Anything else (cut short by another program or a full disk,
    a folder of that name) is done again; a folder in the way then fails on its own line."""
    try:
        data = read_input_file(path)
    except InputError:
        return False
    fmt = OUTPUT_EXTENSIONS.get(path.suffix.lower())
    if fmt == "PNG":
        return data.endswith(PNG_IEND)
    if fmt == "JPEG":
        return data.endswith(b"\xff\xd9")
    if fmt in ("WEBP", "BMP"):
        at, base = (4, 8) if fmt == "WEBP" else (2, 0)
        return len(data) > at + 4 and int.from_bytes(data[at:at + 4], "little") + base == len(data)
    try:
        decode_image(data, str(path))
    except InputError:
        return False
    return True


def warn_dropped_metadata(out: Path, meta, src, warn: Callable[[str], None] | None) -> None:
    """``warn`` (if any) of what of ``meta`` the format of ``out`` cannot hold (``fit_metadata``)."""
    note = fit_metadata(output_format(out), meta, str(src))[1] if warn else None
    if note:
        warn(note)


def file_progress(stream=None, quiet: bool = False) -> Callable[[int, int, float], None]:
    """``progress(done, total, eta_seconds)``: a bar redrawn in place on a terminal, one line
    per file otherwise."""
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    state = {"quiet": quiet}

    def show(done: int, total: int, eta: float) -> None:
        if state["quiet"]:
            return
        left = "" if eta != eta else f", about {_duration(eta)} left"
        width = 30
        bar = "#" * (width * done // max(total, 1))
        text = (f"\rfiles [{bar:<{width}}] {done}/{total}{left}" + ("\n" if done == total else "")
                if tty else f"files: {done}/{total}{left}\n")
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            state["quiet"] = True
    return show


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"

"""Output paths: the formats an extension names, the checks made before any work (folder,
name length, the input itself, alpha, bit depth), and the temporary files of atomic writes.

An output is written to a temporary name in the destination folder and renamed
(``image_out.save_image``).  The temporary name is short (``.ldmind-<pid>-<hex>.tmp``), so any
output name the file system allows works; temporaries of this pattern whose process is gone
(a SIGKILL, a power cut) are removed by the next write into the same folder.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import numpy as np
from PIL import Image

from . import depth16
from .errors import InputError

# The output formats, one list: what ``output_format`` accepts is what its message names.
OUTPUT_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
                     ".tiff": "TIFF", ".bmp": "BMP"}


def output_extensions() -> list[str]:
    """The output extensions this Pillow can write (``OUTPUT_EXTENSIONS`` it supports)."""
    Image.init()
    return [ext for ext, fmt in OUTPUT_EXTENSIONS.items() if fmt in Image.SAVE]


def output_format(path: str | os.PathLike) -> str:
    """Pillow format name for ``path``'s extension, or ``InputError`` listing the accepted ones."""
    ext = Path(path).suffix.lower()
    accepted = output_extensions()
    if ext not in accepted:
        raise InputError(f"{path}: cannot tell the output format from the extension {ext or '(none)'!r}; "
                         f"use {', '.join(accepted)}")
    return OUTPUT_EXTENSIONS[ext]


def name_max(folder: Path) -> int:
    """Longest file name (bytes) the file system of ``folder`` allows."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def check_output_path(path: str | os.PathLike, inputs: tuple = (), overwrite_input: bool = False) -> None:
    """Refuse an output path before any work is done: bad extension, a name too long for the
    file system, missing or unwritable folder, a directory in the way, or one of ``inputs``
    (the user's original) unless ``overwrite_input``."""
    p = Path(path)
    output_format(p)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{p}: output folder {parent} does not exist")
    limit = name_max(parent)
    if len(os.fsencode(p.name)) > limit:
        raise InputError(f"{p.name[:40]}...: output file name is {len(os.fsencode(p.name))} bytes long, "
                         f"the file system allows {limit}")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{p}: output folder {parent} is not writable")
    if p.is_dir():
        raise InputError(f"{p}: is a directory; give an image file name")
    for src in inputs:
        if not overwrite_input and _same_file(p, Path(src)):
            raise InputError(f"{p}: is the input image; refusing to replace it (add --overwrite to replace "
                             f"the original)")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


# our temporaries: ".ldmind-<pid>-<8 hex>.tmp", short whatever the output name
_TMP_PATTERN = re.compile(r"\.ldmind-(\d+)-[0-9a-f]{8}\.tmp")


def temporary_path(folder: Path) -> Path:
    """A new name for a temporary in ``folder`` (``_TMP_PATTERN``), unique to this process."""
    return folder / f".ldmind-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True     # not a pid we wrote: leave it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:     # EPERM: another user's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete our temporaries (``_TMP_PATTERN``) in ``folder`` whose writing process is dead
    (killed by SIGKILL or a power cut); returns them.  Only that pattern, only dead pids, so
    another run's file in progress and anything else are never touched."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TMP_PATTERN.fullmatch(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(Path(folder) / name)
            except OSError:
                pass
    return removed


ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}    # of OUTPUT_EXTENSIONS' formats, those that keep alpha


def alpha_extensions() -> list[str]:
    return [e for e in output_extensions() if OUTPUT_EXTENSIONS[e] in ALPHA_FORMATS]


def check_alpha_format(fmt: str, what: str) -> None:
    """Refuse an output format that would lose transparency; ``what`` starts the message."""
    if fmt not in ALPHA_FORMATS:
        raise InputError(f"{what} has transparency and {fmt} cannot store it; use {', '.join(alpha_extensions())}")


def check_alpha_output(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output format that would lose an input's transparency."""
    check_alpha_format(output_format(path), f"{path}: the input")


def check_depth(path: str | os.PathLike, requested: str | int) -> None:
    """Refuse ``requested`` bits (8, 16, "auto") for ``path``'s format before the input is even
    read: --depth 16 for a JPEG must not wait for a large 16-bit PNG to be decoded."""
    if requested != "auto":
        output_depth(path, None, requested)


def output_depth(path: str | os.PathLike, input_dtype, requested: str | int = "auto") -> int:
    """Bits per value an upscale writes to ``path``: ``requested`` 8 or 16, or "auto": 16
    when the input was 16-bit and the format stores 16 bits (PNG, TIFF), else 8.  16 for a
    format that cannot store it is refused here, before any work."""
    fmt = output_format(path)
    if requested == "auto":
        return 16 if np.dtype(input_dtype) == np.uint16 and fmt in depth16.DEEP_FORMATS else 8
    if requested not in (8, 16):
        raise InputError(f"depth must be 8, 16 or auto, got {requested!r}")
    if requested == 16 and fmt not in depth16.DEEP_FORMATS:
        deep = [e for e in output_extensions() if OUTPUT_EXTENSIONS[e] in depth16.DEEP_FORMATS]
        raise InputError(f"{path}: {fmt} stores 8 bits per value; for 16 use {', '.join(deep)}")
    return int(requested)

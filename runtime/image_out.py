"""Image files out: encoding (8 or 16 bits, alpha, the input's metadata carried over) and
atomic writes, so a crash or a full disk never leaves a half-written image behind."""
from __future__ import annotations

import dataclasses
import errno
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ldmind_ref.core.contract import DEFAULT_QUALITY

from . import depth16
from .console import pause_point
from .errors import InputError
from .image_in import Metadata
from .output_paths import check_alpha_format, output_format, remove_stale_temporaries, temporary_path

# the EXIF sub-IFD, and its PixelXDimension / PixelYDimension tags (set to the output's size)
_EXIF_IFD, _PIXEL_X, _PIXEL_Y = 0x8769, 0xA002, 0xA003


def _exif_for(exif: bytes, width: int, height: int) -> bytes:
    """EXIF bytes with the pixel dimensions (where the block has them) set to the output's."""
    try:
        e = Image.Exif()
        e.load(exif)
        ifd = e.get_ifd(_EXIF_IFD)
        if _PIXEL_X in ifd or _PIXEL_Y in ifd:
            ifd[_PIXEL_X], ifd[_PIXEL_Y] = width, height
        return e.tobytes()
    except Exception:  # noqa: BLE001
        return exif


# The most EXIF a format's container holds: JPEG's one APP1 marker segment (Pillow's
# MAX_BYTES_IN_MARKER, the "Exif" header included); PNG, WebP and TIFF hold any size.
MAX_EXIF_BYTES = {"JPEG": 65533}


def fit_metadata(fmt: str, metadata: Metadata | None, name: str = "the input") -> tuple[Metadata | None, str | None]:
    """(what of ``metadata`` a ``fmt`` file can hold, the warning to give about what it cannot
    or None).  An EXIF block too large for the format is dropped rather than failing after the
    work (Pillow: "EXIF data is too long"); the CLI says so before it starts."""
    limit = MAX_EXIF_BYTES.get(fmt)
    if metadata is None or not metadata.exif or limit is None or len(metadata.exif) <= limit:
        return metadata, None
    return (dataclasses.replace(metadata, exif=None),
            f"{name}: its EXIF block ({len(metadata.exif)} bytes) is larger than {fmt} holds ({limit} bytes); "
            f"the output is written without it")


def save_options(fmt: str, width: int, height: int, metadata: Metadata | None, quality: int | None = None,
                 lossless: bool = False) -> dict:
    """Pillow ``save`` keywords: the metadata where the format can hold it (BMP cannot), the
    quality of JPEG and lossy WebP, WebP's lossless mode."""
    kw: dict = {}
    if metadata is not None and fmt != "BMP":
        if metadata.icc_profile:
            kw["icc_profile"] = metadata.icc_profile
        exif = _exif_for(metadata.exif, width, height) if metadata.exif else None
        if exif and len(exif) <= MAX_EXIF_BYTES.get(fmt, len(exif)):
            kw["exif"] = exif
    if fmt in ("JPEG", "WEBP"):
        kw["quality"] = DEFAULT_QUALITY if quality is None else quality
    if fmt == "WEBP" and lossless:
        kw["lossless"] = True
    return kw


def encode_image(image: np.ndarray | Image.Image, fmt: str, metadata: Metadata | None = None,
                 quality: int | None = None, lossless: bool = False, what: str = "the image") -> bytes:
    """An output image encoded in ``fmt`` (a value of ``OUTPUT_EXTENSIONS``), as bytes.

    A uint16 array is written with 16 bits per value to PNG and TIFF (``runtime/depth16.py``)
    and reduced to 8 bits for the other formats.  ``metadata``: what to carry (``Metadata``);
    a PIL image returned by the API carries its input's in ``info`` and that is used when
    ``metadata`` is None.  ``quality``: JPEG and lossy WebP (default DEFAULT_QUALITY);
    ``lossless``: WebP only.  An image with alpha is refused for a format that cannot store it
    (``what`` names it in the message)."""
    if isinstance(image, Image.Image):
        img, deep = image, None
        alpha = image.mode in ("RGBA", "LA", "PA")
    else:
        a = np.asarray(image)
        if a.dtype == np.uint16 and fmt not in depth16.DEEP_FORMATS:
            a = depth16.reduce8(a)
        deep = a if a.dtype == np.uint16 else None
        img = None if deep is not None else Image.fromarray(
            np.asarray(a, dtype=np.uint8), "RGBA" if a.ndim == 3 and a.shape[2] == 4 else "RGB")
        alpha = a.ndim == 3 and a.shape[2] == 4
    if alpha:
        check_alpha_format(fmt, what)
    if metadata is None and isinstance(image, Image.Image):
        metadata = Metadata(image.info.get("icc_profile") or None, image.info.get("exif") or None)
    if deep is not None:
        icc = metadata.icc_profile if metadata else None
        if fmt == "TIFF":
            return depth16.encode_tiff(deep, icc)
        exif = _exif_for(metadata.exif, deep.shape[1], deep.shape[0]) if metadata and metadata.exif else None
        return depth16.encode_png(deep, icc, exif)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save_options(fmt, img.width, img.height, metadata, quality, lossless))
    return buf.getvalue()


def save_image(image: np.ndarray | Image.Image, path: str | os.PathLike, metadata: Metadata | None = None,
               quality: int | None = None, lossless: bool = False) -> Path:
    """Write ``encode_image(image, <format of path's extension>, ...)`` atomically: an unnamed
    temporary in ``path``'s folder (O_TMPFILE: nothing to leave behind, even after SIGKILL),
    linked under a temporary name once complete and renamed over ``path``.  Where the file system
    has no unnamed files, a named temporary (``output_paths.temporary_path``: those of dead
    processes are removed by the next write into the folder).  An interrupt (SIGINT, SIGTERM
    raised as an exception) at any point removes the temporary; ``path`` is never half-written."""
    p = Path(path)
    fmt = output_format(p)
    data = encode_image(image, fmt, metadata, quality, lossless, what=f"{p}: the input")
    folder = p.parent if str(p.parent) else Path(".")
    remove_stale_temporaries(folder)
    tmp = temporary_path(folder)
    try:
        if not _write_unnamed(folder, data, tmp):
            # O_EXCL with a random name rather than mkstemp: mkstemp's 0600 would survive the
            # rename, while this honours the umask like any other new file.  Created inside the
            # try: an interrupt right after the open still removes it.
            _write_fd(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), data)
        os.replace(tmp, p)
    except BaseException as e:
        if not isinstance(e, FileExistsError):   # never delete a file that is not ours
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError):
            raise InputError(f"{p}: cannot write ({e.strerror or e})") from None
        raise
    return p


# what open(O_TMPFILE) or the link of /proc/self/fd/N fails with where they are not supported
_NO_UNNAMED = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EXDEV, errno.EPERM}


def _write_unnamed(folder: Path, data: bytes, name: Path) -> bool:
    """Write ``data`` to an unnamed file in ``folder`` and link it as ``name`` once complete;
    False (nothing written) where the file system or the platform has no unnamed files."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        return False
    try:
        fd = os.open(folder, flag | os.O_WRONLY, 0o666)
    except OSError as e:
        if e.errno in _NO_UNNAMED:
            return False
        raise
    try:
        _write_fd(fd, data, close=False)
        os.link(f"/proc/self/fd/{fd}", name)
    except OSError as e:
        if e.errno in _NO_UNNAMED and not os.path.lexists(name):
            return False
        raise
    finally:
        os.close(fd)
    return True


def _write_fd(fd: int, data: bytes, close: bool = True) -> None:
    """All of ``data`` to ``fd``, then to the disk (``console.pause_point("write")`` half way)."""
    try:
        view = memoryview(data)
        half = len(view) // 2
        for part in (view[:half], view[half:]):
            while part:
                part = part[os.write(fd, part):]
            if half:
                pause_point("write")
                half = 0
        os.fsync(fd)
    finally:
        if close:
            os.close(fd)

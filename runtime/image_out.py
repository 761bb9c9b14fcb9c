"""Image files out: encoding (8 or 16 bits, alpha, the input's metadata carried over) and
atomic writes, so a crash or a full disk never leaves a half-written image behind."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ldmind_ref.core.contract import DEFAULT_QUALITY

from . import depth16
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


def save_options(fmt: str, width: int, height: int, metadata: Metadata | None, quality: int | None = None,
                 lossless: bool = False) -> dict:
    """Pillow ``save`` keywords: the metadata where the format can hold it (BMP cannot), the
    quality of JPEG and lossy WebP, WebP's lossless mode."""
    kw: dict = {}
    if metadata is not None and fmt != "BMP":
        if metadata.icc_profile:
            kw["icc_profile"] = metadata.icc_profile
        if metadata.exif:
            kw["exif"] = _exif_for(metadata.exif, width, height)
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
    """Write ``encode_image(image, <format of path's extension>, ...)`` atomically: a
    temporary file beside ``path``, then an atomic rename.  An interrupt (SIGINT, SIGTERM
    raised as an exception) at any point removes the temporary."""
    p = Path(path)
    fmt = output_format(p)
    data = encode_image(image, fmt, metadata, quality, lossless, what=f"{p}: the input")
    folder = p.parent if str(p.parent) else Path(".")
    remove_stale_temporaries(folder)
    # O_EXCL with a random name rather than mkstemp: mkstemp's 0600 would survive the
    # rename, while this honours the umask like any other new file
    tmp = temporary_path(folder)
    try:
        # created inside the try: an interrupt right after the open still removes it
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
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

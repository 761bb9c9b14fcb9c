"""Image files in and out: validation, conversion to uint8 RGB, atomic writes.

Inputs are refused with one line naming the file when they cannot be read faithfully;
they are converted when the conversion is unambiguous:

- grayscale (1, L, I;16, I) -> RGB;
- 16-bit files keep their 16 bits: uint16 arrays (PNG of any colour type, RGB/RGBA TIFF are
  read by ``runtime/depth16.py``, 16-bit grayscale by Pillow); ``load_image`` alone reduces
  them to 8 bits (v / 257, rounded);
- palette (P) -> RGB, or RGBA when the palette has transparency;
- RGBA / LA whose alpha is fully opaque -> RGB (alpha dropped); translucent ones keep their
  alpha (``pil_to_rgb_alpha``; ``upscale`` renders it beside the colour, see
  ``runtime/alpha.py``), and are written only to formats that store it (PNG, WebP, TIFF);
- CMYK, YCbCr, LAB, HSV -> RGB by Pillow's conversion;
- float images (F) are refused (their range is unknown);
- EXIF orientation is applied (a phone photo comes out the way it is shown);
- animated files: the first frame;
- decompression bombs (more than MAX_INPUT_PIXELS pixels) are refused from the header,
  before any pixel is decoded;
- a PNG may carry an ICC profile or text chunks up to 64 MiB (Pillow's default refuses
  more than 1 MiB decompressed, which a camera's profile can exceed); the profile is not
  applied but carried to the output (``Metadata``), with the EXIF block;
- a JPEG missing only its end-of-image marker is read, as viewers do and as a PNG missing
  its IEND chunk is; a JPEG whose entropy-coded (pixel) data is cut short is refused.

Outputs are written to a temporary name in the destination folder and renamed, so a
crash or a full disk never leaves a half-written image behind.  The temporary name is
short (``.ldmind-<pid>-<hex>.tmp``), so any output name the file system allows works;
temporaries of this pattern whose process is gone (a SIGKILL, a power cut) are removed
by the next write into the same folder.
"""
from __future__ import annotations

import io
import os
import re
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from ldmind_ref.core.contract import DEFAULT_QUALITY

from . import depth16
from .errors import InputError

# Pillow warns above MAX_IMAGE_PIXELS (~89 Mpx) and refuses above twice that; we refuse at
# its warning threshold (or 89 Mpx if it is disabled), from the header alone.
MAX_INPUT_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)

_CONVERTIBLE = {"1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGB"}
_WITH_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}

# A large ICC profile (iCCP) or text chunk is not corruption; Pillow's per-chunk default
# (1 MiB decompressed) refuses a valid 4 MiB profile.  The total stays bounded by
# PngImagePlugin.MAX_TEXT_MEMORY (64 MiB).
PNG_MAX_CHUNK = 64 * 1024 ** 2
PngImagePlugin.MAX_TEXT_CHUNK = max(PngImagePlugin.MAX_TEXT_CHUNK, PNG_MAX_CHUNK)

# The output formats, one list: what ``output_format`` accepts is what its message names.
OUTPUT_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
                     ".tiff": "TIFF", ".bmp": "BMP"}

_JPEG_EOI = b"\xff\xd9"


@dataclass(frozen=True)
class Metadata:
    """What an output carries over from its input: the ICC colour profile (the pixels are
    passed through in the input's colour space, so its profile still describes them) and
    the EXIF block (camera, date, ...) with its orientation set to 1, since the pixels were
    already turned upright when read."""
    icc_profile: bytes | None = None
    exif: bytes | None = None


_ORIENTATION, _EXIF_IFD, _PIXEL_X, _PIXEL_Y = 0x0112, 0x8769, 0xA002, 0xA003


def read_metadata(img: Image.Image) -> Metadata:
    """The ICC profile and EXIF (orientation reset) of an opened image; a broken EXIF block
    is dropped rather than refused (the pixels are what matters)."""
    icc = img.info.get("icc_profile") or None
    if not isinstance(icc, bytes) or icc[16:20] != b"RGB ":
        icc = None      # a CMYK or grey profile does not describe the RGB pixels we write
    exif = None
    try:
        e = img.getexif()
        if len(e):
            if _ORIENTATION in e:
                e[_ORIENTATION] = 1
            exif = e.tobytes()
    except Exception:  # noqa: BLE001 - Pillow raises many kinds on malformed EXIF
        exif = None
    return Metadata(icc, exif)


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


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3] (16-bit files reduced) or raise
    ``InputError`` naming ``path`` (translucent images too: ``load_image_meta`` keeps their
    alpha and 16 bits)."""
    rgb, alpha, _ = load_image_meta(path)
    rgb = _opaque(rgb, alpha, str(path))
    return depth16.reduce8(rgb) if rgb.dtype == np.uint16 else rgb


def load_upscale_input(path: str | os.PathLike, outputs) -> tuple[np.ndarray, Metadata]:
    """An image file as ``upscale`` takes it: uint8 (uint16 for 16-bit files) [H, W, 3], or
    [H, W, 4] when it is translucent (after checking that every one of ``outputs`` can store alpha), and its
    ``Metadata``."""
    rgb, alpha, meta = load_image_meta(path)
    if alpha is None:
        return rgb, meta
    for o in outputs:
        check_alpha_output(o)
    return np.dstack((rgb, alpha)), meta


def load_image_meta(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, Metadata]:
    """An image file as (RGB [H, W, 3], alpha [H, W] or None, its ``Metadata``): uint8, or
    uint16 for a 16-bit file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not an image file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror})") from None
    return decode_image(data, str(p))


def decode_image(data: bytes, name: str = "image") -> tuple[np.ndarray, np.ndarray | None, Metadata]:
    """Encoded image bytes (a file's content, an upload) as (RGB, alpha or None, ``Metadata``),
    by the rules of the module doc; ``InputError`` naming ``name`` otherwise."""
    if len(data) == 0:
        raise InputError(f"{name}: empty file (0 bytes), not an image")
    try:
        with warnings.catch_warnings():
            # a bomb warning would print a second line: make it the error it is
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > MAX_INPUT_PIXELS:
                    raise InputError(_bomb(name, w, h))
                img.seek(0)
                if depth16.is_deep(img, data):
                    return (*_split(depth16.orient(depth16.read(img, data, name), _orientation(img)), name),
                            read_metadata(img))
                try:
                    img.load()
                except OSError:
                    repaired = _jpeg_without_eoi(data) if img.format == "JPEG" else None
                    if repaired is None:
                        raise
                    return (*pil_to_rgb_alpha(repaired, name), read_metadata(repaired))
                return (*pil_to_rgb_alpha(img, name), read_metadata(img))
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{name}: refused as a possible decompression bomb (its header declares more than "
                         f"{MAX_INPUT_PIXELS / 1e6:.0f} Mpx)") from None
    except UnidentifiedImageError:
        if depth16.is_tiff(data):          # a 16-bit layout Pillow does not open: tifffile may
            a, icc = depth16.read_tiff(data, name, MAX_INPUT_PIXELS)
            return (*_split(a, name), Metadata(icc if icc and icc[16:20] == b"RGB " else None, None))
        raise InputError(f"{name}: not a recognised image file (corrupt, or not an image)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as e:
        # Pillow reports truncation and corruption through all of these
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{name}: truncated or corrupt image file ({msg})") from None


def _orientation(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(_ORIENTATION)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make the pixels unreadable
        return None


def _split(a: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """[H, W, C] (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) -> (RGB, alpha or None if opaque:
    one that is the dtype's maximum everywhere).  The one rule for arrays and 16-bit files."""
    w, h = a.shape[1], a.shape[0]
    if w < 1 or h < 1:
        raise InputError(f"{name}: empty image ({w}x{h})")
    colour = a[:, :, :3] if a.shape[2] >= 3 else np.repeat(a[:, :, :1], 3, axis=2)
    alpha = a[:, :, -1] if a.shape[2] in (2, 4) else None
    if alpha is not None and alpha.min() == np.iinfo(a.dtype).max:
        alpha = None
    return np.ascontiguousarray(colour), (None if alpha is None else np.ascontiguousarray(alpha))


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _jpeg_without_eoi(data: bytes) -> Image.Image | None:
    """A JPEG that Pillow found short: decoded when only its end marker (FF D9) is missing,
    else None (truncated pixel data).  Test: libjpeg fills data cut short with zero
    bits, so a truncated scan decodes differently when filler bytes precede the end marker,
    while a complete one ignores bytes after its last scan."""
    if data.endswith(_JPEG_EOI):
        return None
    body = data[:-1] if data.endswith(b"\xff") else data    # FF of a half-written marker
    try:
        closed = _decode(body + _JPEG_EOI)
        padded = _decode(body + b"\x55" * 256 + _JPEG_EOI)
    except (OSError, SyntaxError, ValueError):
        return None
    return closed if np.array_equal(np.asarray(closed), np.asarray(padded)) else None


def _bomb(p, w: int, h: int) -> str:
    return (f"{p}: {w}x{h} = {w * h / 1e6:.0f} Mpx exceeds the {MAX_INPUT_PIXELS / 1e6:.0f} Mpx limit "
            f"(refused as a possible decompression bomb)")


def pil_to_rgb(img: Image.Image, name: str = "image") -> np.ndarray:
    """A PIL image in any mode -> uint8 RGB [H, W, 3] (see the module doc for the rules);
    translucent images are refused (``pil_to_rgb_alpha`` keeps their alpha)."""
    return _opaque(*pil_to_rgb_alpha(img, name), name)


def _opaque(rgb: np.ndarray, alpha: np.ndarray | None, name: str) -> np.ndarray:
    if alpha is not None:
        raise InputError(f"{name}: image has transparent pixels; here only opaque images are accepted "
                         f"(upscale keeps transparency)")
    return rgb


def pil_to_rgb_alpha(img: Image.Image, name: str = "image") -> tuple[np.ndarray, np.ndarray | None]:
    """A PIL image in any mode -> (uint8 RGB [H, W, 3], uint8 alpha [H, W] or None when the
    image is opaque: no alpha channel, or one that is 255 everywhere); uint16 RGB for 16-bit
    grayscale (I;16, I).  RGB is straight (not premultiplied) colour."""
    w, h = img.size
    if w < 1 or h < 1:
        raise InputError(f"{name}: empty image ({w}x{h})")
    if w * h > MAX_INPUT_PIXELS:
        raise InputError(_bomb(name, w, h))
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make the pixels unreadable
        pass
    mode = img.mode
    if mode == "P" and ("transparency" in img.info or img.palette and img.palette.mode == "RGBA"):
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _SIXTEEN_BIT or mode == "I":
        a = np.asarray(img)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise InputError(f"{name}: 32-bit integer image with values outside 0..65535 is not supported; "
                             f"convert it to 8-bit RGB")
        return np.repeat(a.astype(np.uint16)[:, :, None], 3, axis=2), None
    if mode == "F" or mode.startswith("F;"):
        raise InputError(f"{name}: floating-point image (mode F) is not supported; convert it to 8-bit RGB")
    if mode in _WITH_ALPHA:
        rgba = np.asarray(img.convert("RGBA"))         # premultiplied RGBa/La: un-premultiplied
        alpha = rgba[:, :, 3]
        return np.ascontiguousarray(rgba[:, :, :3]), (np.ascontiguousarray(alpha) if alpha.min() < 255 else None)
    if mode in _CONVERTIBLE:
        try:
            out = np.asarray(img if mode == "RGB" else img.convert("RGB"))
        except (ValueError, OSError) as e:
            raise InputError(f"{name}: cannot convert mode {mode} to RGB ({e})") from None
        return np.ascontiguousarray(out, dtype=np.uint8), None
    raise InputError(f"{name}: unsupported image mode {mode!r}; convert it to 8-bit RGB")


def to_rgb_array(image, name: str = "image") -> np.ndarray:
    """PIL image or array -> RGB [H, W, 3] (uint8, or uint16 for 16-bit); translucent images
    are refused."""
    return _opaque(*to_rgb_alpha(image, name), name)


def to_rgb_alpha(image, name: str = "image") -> tuple[np.ndarray, np.ndarray | None]:
    """PIL image or array -> (RGB [H, W, 3], alpha [H, W] or None if opaque), uint8 or (16-bit
    inputs) uint16.

    Arrays: uint8, uint16 or bool, shaped [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] (RGBA,
    straight alpha)."""
    if isinstance(image, Image.Image):
        return pil_to_rgb_alpha(image, name)
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name}: expected a PIL image or a numpy array, got {type(image).__name__}")
    a = image
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"{name}: expected an array [H, W], [H, W, 3] or [H, W, 4], got shape {image.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(f"{name}: empty image (shape {image.shape})")
    if a.shape[0] * a.shape[1] > MAX_INPUT_PIXELS:
        raise InputError(_bomb(name, a.shape[1], a.shape[0]))
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{name}: expected uint8 (0..255) or uint16 (0..65535) pixels, got {a.dtype}; "
                         f"scale and cast, e.g. (x * 255).round().astype(np.uint8)")
    return _split(a, name)


# -- output ----------------------------------------------------------------------------------
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
    tmp = folder / f".ldmind-{os.getpid()}-{secrets.token_hex(4)}.tmp"
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

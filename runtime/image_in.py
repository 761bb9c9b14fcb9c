"""Image files in: validation and conversion to uint8 (or uint16) RGB with alpha apart.

Inputs are refused with one line naming the file when they cannot be read faithfully;
they are converted when the conversion is unambiguous:

- grayscale (1, L, I;16, I) -> RGB;
- 16-bit files keep their 16 bits: uint16 arrays (PNG of any colour type, RGB/RGBA TIFF are
  read by ``runtime/depth16.py``, 16-bit grayscale by Pillow); ``load_image`` alone reduces
  them to 8 bits (v / 257, rounded);
- palette (P) -> RGB, or RGBA when the palette has transparency; a grey or RGB PNG with a
  colour key (tRNS) -> RGBA, 8-bit as 16-bit;
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
- a JPEG missing only its end-of-image marker is read, as viewers do and as a PNG (8- or
  16-bit) missing its IEND chunk is; a JPEG whose entropy-coded (pixel) data is cut short is
  refused;
- only regular files are read (``read_input_file``): a FIFO, a device, a socket are refused
  before a byte is read.
"""
from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from ldmind_ref.core import contract

from . import depth16
from .errors import InputError
from .output_paths import check_alpha_output

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

_JPEG_EOI = b"\xff\xd9"


@dataclass(frozen=True)
class Metadata:
    """What an output carries over from its input: the ICC colour profile (the pixels are
    passed through in the input's colour space, so its profile still describes them) and
    the EXIF block (camera, date, ...) with its orientation set to 1, since the pixels were
    already turned upright when read."""
    icc_profile: bytes | None = None
    exif: bytes | None = None


# the EXIF orientation tag: applied when read, reset to 1 in what is carried over
_ORIENTATION = 0x0112


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
    return decode_image(read_input_file(path), str(path))


def _kind(mode: int) -> str:
    """A ``FILE_KINDS`` key for a file that is neither a regular file nor a directory."""
    for test, kind in ((stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return kind
    return "other"


def _check_regular(st: os.stat_result, name: str) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{name}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(contract.NOT_A_REGULAR_FILE.format(name, contract.FILE_KINDS[_kind(st.st_mode)]))


def read_input_file(path: str | os.PathLike) -> bytes:
    """The bytes of an input file.  Anything but a regular file (after symlinks) is refused
    before a byte is read: a FIFO would block, a device such as /dev/zero never end.  The file
    is opened without blocking and checked again (it may have been swapped since), and read no
    further than the size it had then."""
    name = str(path)
    try:
        _check_regular(os.stat(path), name)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{name}: no such file") from None
    except OSError as e:            # a symlink loop, a permission, a name too long
        raise InputError(f"{name}: cannot read ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        _check_regular(st, name)
        parts, left = [], st.st_size
        while left > 0:
            part = os.read(fd, left)
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return b"".join(parts)
    except OSError as e:
        raise InputError(f"{name}: cannot read ({e.strerror or e})") from None
    finally:
        os.close(fd)


def decode_image(data: bytes, name: str = "image") -> tuple[np.ndarray, np.ndarray | None, Metadata]:
    """Encoded image bytes (a file's content, an upload) as (RGB, alpha or None, ``Metadata``),
    by the rules of the module doc; ``InputError`` naming ``name`` otherwise."""
    if len(data) == 0:
        raise InputError(f"{name}: empty file (0 bytes), not an image")
    try:
        with warnings.catch_warnings():
            # a warning would print more lines ("Truncated File Read", "Corrupt EXIF data"):
            # what matters is said by the error, if any; a bomb warning is made the error it is
            warnings.simplefilter("ignore")
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
    elif mode in ("1", "L", "RGB") and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"      # a colour key (PNG tRNS), as 16-bit files keep it
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

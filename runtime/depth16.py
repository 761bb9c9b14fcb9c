"""16-bit image files: read and written at full precision.

Pillow has no 16-bit RGB mode: it opens a 16-bit RGB PNG or TIFF as 8-bit RGB and cannot
write one.  Those files are therefore read here by libraries that keep every bit (pypng for
PNG, tifffile for TIFF; both pure Python, from PyPI), while Pillow still reads their header,
profile and EXIF.  16-bit grayscale is Pillow's mode I;16 and needs none of this, but a PNG
takes one route whatever its colour type.

Written: PNG by ``encode_png`` (numpy + zlib: Paeth-filtered rows, the ICC profile in iCCP
and EXIF in eXIf, as Pillow writes them for 8 bits); TIFF by tifffile (deflate, the ICC
profile in its tag; EXIF is not written: tifffile cannot write an EXIF sub-directory).
"""
from __future__ import annotations

import contextlib
import io
import logging
import struct
import zlib

import numpy as np

from .errors import InputError

DEEP_FORMATS = {"PNG", "TIFF"}    # of the output formats, those that store 16 bits per value
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\0\0\0\0IEND\xaeB`\x82"    # the PNG end chunk, always these 12 bytes
_ROWS_PER_BLOCK = 256             # PNG rows filtered at a time (bounds the int32 temporaries)


def reduce8(a: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 by v / 257, rounded halves up (65535 -> 255, 32896 -> 128)."""
    return np.floor(a.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)


def is_deep(img, data: bytes) -> bool:
    """Whether ``img`` (opened by Pillow from ``data``) has 16-bit colour that Pillow would
    reduce: any 16-bit PNG (IHDR bit depth, byte 24), or a TIFF of 16-bit samples with more
    than one channel (16-bit grayscale TIFF is Pillow's I;16)."""
    if img.format == "PNG":
        return len(data) > 24 and data[24] == 16
    if img.format == "TIFF":
        bits = img.tag_v2.get(258, (1,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return bits[0] == 16 and int(img.tag_v2.get(277, 1)) > 1
    return False


def read(img, data: bytes, name: str) -> np.ndarray:
    """The pixels of a deep file (``is_deep``) as uint16 [H, W, C], C = 1 (grey), 2 (grey +
    alpha), 3 (RGB) or 4 (RGBA, straight alpha), before EXIF orientation."""
    return _read_png(data, name) if img.format == "PNG" else read_tiff(data, name, img.width * img.height)[0]


def is_tiff(data: bytes) -> bool:
    return data[:4] in (b"II*\0", b"MM\0*")


def _read_png(data: bytes, name: str) -> np.ndarray:
    import png    # pypng
    if not data.endswith(PNG_IEND):
        data += PNG_IEND              # read without its IEND chunk, as Pillow reads 8-bit ones
    try:
        reader = png.Reader(bytes=data)
        reader.preamble()
        if reader.sbit and not all(0 < b <= reader.bitdepth for b in reader.sbit):
            reader.sbit = None      # an sBIT the spec forbids (0, or more than the depth): all bits count
        w, h, rows, info = reader.asDirect()
        a = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows])
    except (png.Error, ValueError, zlib.error, EOFError) as e:
        raise InputError(f"{name}: truncated or corrupt PNG file ({str(e).splitlines()[0] if str(e) else e})") from None
    a = a.reshape(h, w, info["planes"])
    bits = info["bitdepth"]
    return a if bits == 16 else rescale_significant_bits(a, bits)


def rescale_significant_bits(a: np.ndarray, bits: int) -> np.ndarray:
    """Values of ``bits`` significant bits (what pypng returns for an sBIT chunk) back to
    0..65535: v * 65535 / (2^bits - 1), rounded, so that the largest maps to 65535 (dividing by
    2^bits instead would leave white at 65520 for 12 bits)."""
    return np.floor(a.astype(np.float64) * (65535.0 / (2 ** bits - 1)) + 0.5).astype(np.uint16)


def _needs_imagecodecs(name: str, why: str) -> str:
    return (f"{name}: a 16-bit TIFF compressed this way ({why}) is read at full precision only with the "
            f"imagecodecs package (pip install imagecodecs); or save it uncompressed or with ZIP compression")


@contextlib.contextmanager
def _quiet_log(name: str):
    """The logger ``name`` silenced meanwhile: tifffile logs what it finds wrong in a file
    ("<TiffTag.fromfile> raised ...") before the error that reports it in one line."""
    log = logging.getLogger(name)
    before = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = before


def read_tiff(data: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, bytes | None]:
    """A 16-bit TIFF as (uint16 [H, W, C] as ``read``, its ICC profile or None); tifffile
    alone, so it also reads layouts Pillow does not open (planes stored separately).  More
    than ``max_pixels`` pixels: refused from the header, before decoding."""
    import tifffile
    try:
        with _quiet_log("tifffile"), tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            if page.imagewidth * page.imagelength > max_pixels:
                raise InputError(f"{name}: {page.imagewidth}x{page.imagelength} exceeds the "
                                 f"{max_pixels / 1e6:.0f} Mpx limit (refused as a possible decompression bomb)")
            try:                   # a codec tifffile has only with imagecodecs: said before decoding
                tifffile.TIFF.DECOMPRESSORS[page.compression]
            except KeyError as e:
                raise InputError(_needs_imagecodecs(name, str(e).strip(chr(34)))) from None
            a = page.asarray()
            separate = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
            extra = tuple(page.extrasamples or ())
            icc = page.tags.valueof(34675)
    except InputError:
        raise
    except KeyError as e:          # a compression tifffile decodes only with imagecodecs
        raise InputError(_needs_imagecodecs(name, str(e).strip(chr(34)))) from None
    except Exception as e:  # noqa: BLE001 - tifffile raises many kinds on corrupt files
        raise InputError(f"{name}: truncated or corrupt TIFF file ({str(e).splitlines()[0] if str(e) else e})") \
            from None
    if a.dtype != np.uint16:
        raise InputError(f"{name}: TIFF with {a.dtype} samples is not supported; save it as 8- or 16-bit "
                         f"unsigned integers")
    if separate:
        a = np.moveaxis(a, 0, -1)
    a = a.reshape(a.shape[0], a.shape[1], -1)
    if a.shape[2] > 4:
        a = a[:, :, :4]
    if extra and extra[0] == 1 and a.shape[2] in (2, 4):     # associated (premultiplied) alpha
        alpha = a[:, :, -1:].astype(np.float64)
        colour = np.where(alpha > 0, a[:, :, :-1] * 65535.0 / np.maximum(alpha, 1), 0.0)
        a = np.concatenate([np.floor(np.clip(colour, 0, 65535) + 0.5).astype(np.uint16), a[:, :, -1:]], axis=2)
    return np.ascontiguousarray(a), (bytes(icc) if isinstance(icc, (bytes, bytearray)) else None)


def orient(a: np.ndarray, orientation: int | None) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an [H, W, ...] array: what Pillow's
    ``ImageOps.exif_transpose`` does to an image (2 mirror, 3 rotate 180, 4 flip, 5
    transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise)."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = np.rot90(a, -1)
    elif orientation == 7:
        a = a.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        a = np.rot90(a, 1)
    return np.ascontiguousarray(a)


# -- output ----------------------------------------------------------------------------------
def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _paeth_rows(rows: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """PNG filter 4 (Paeth) of byte rows [n, L] given the row before them (zeros for the
    first), each prefixed with its filter byte.  The encoder predicts from the original
    bytes, so unlike decoding this is one vectorised expression."""
    r = rows.astype(np.int32)
    up = np.vstack([above[None].astype(np.int32), r[:-1]])
    left = np.zeros_like(r)
    left[:, bpp:] = r[:, :-bpp]
    corner = np.zeros_like(r)
    corner[:, bpp:] = up[:, :-bpp]
    p = left + up - corner
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - corner)
    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, corner))
    out = np.empty((r.shape[0], r.shape[1] + 1), np.uint8)
    out[:, 0] = 4
    out[:, 1:] = (r - pred) & 0xFF
    return out


def encode_png(a: np.ndarray, icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """uint16 [H, W, 3] (RGB) or [H, W, 4] (RGBA) as a 16-bit PNG; ``exif`` as Pillow's
    ``Exif.tobytes()`` gives it (the "Exif" header, if any, is dropped: eXIf holds the TIFF
    structure alone)."""
    H, W, C = a.shape
    rows = a.astype(">u2").view(np.uint8).reshape(H, W * C * 2)
    bpp = C * 2
    z = zlib.compressobj(6)
    parts = [_PNG_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 16, 6 if C == 4 else 2, 0, 0, 0))]
    if icc_profile:
        parts.append(_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc_profile)))
    if exif:
        parts.append(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    idat = []
    above = np.zeros(rows.shape[1], np.uint8)
    for r0 in range(0, H, _ROWS_PER_BLOCK):
        block = rows[r0:r0 + _ROWS_PER_BLOCK]
        idat.append(z.compress(_paeth_rows(block, above, bpp).tobytes()))
        above = block[-1]
    idat.append(z.flush())
    parts += [_chunk(b"IDAT", b"".join(idat)), _chunk(b"IEND", b"")]
    return b"".join(parts)


def encode_tiff(a: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """uint16 [H, W, 3|4] as a 16-bit TIFF (deflate; alpha as unassociated extra sample)."""
    import tifffile
    buf = io.BytesIO()
    tifffile.imwrite(buf, a, photometric="rgb", compression="zlib", metadata=None,
                     extrasamples=("unassalpha",) if a.shape[2] == 4 else None, iccprofile=icc_profile or None)
    return buf.getvalue()

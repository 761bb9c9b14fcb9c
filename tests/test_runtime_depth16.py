"""16-bit end to end (issue 13): 16-bit PNG/TIFF read without loss, float into the encoder,
float LIIF output and back-projection, 16-bit output; a smooth 16-bit gradient comes out
without 8-bit banding."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import png
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps

from ldmind_ref.core import consistency, images
from runtime import alpha as ra, depth16
from runtime.cli import main
from runtime.errors import InputError
from runtime.programs.bench_depth16 import gradient, shrink
from runtime.image_in import Metadata, decode_image, load_image, to_rgb_alpha
from runtime.image_out import encode_image
from runtime.output_paths import output_depth

FAST = ["--steps", "2", "-q"]
RNG = np.random.default_rng(7)
RGB16 = RNG.integers(0, 65536, (13, 17, 3)).astype(np.uint16)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_by_hand(a: np.ndarray, filters: list[int]) -> bytes:
    """A 16-bit RGB PNG built from the specification, row filter by row filter (0 none,
    1 sub, 2 up), independently of the code under test."""
    h, w, _ = a.shape
    raw = a.astype(">u2").view(np.uint8).reshape(h, w * 6).astype(np.int32)
    rows = []
    for y, f in enumerate(filters):
        prior = raw[y - 1] if y else np.zeros(w * 6, np.int32)
        left = np.concatenate([np.zeros(6, np.int32), raw[y, :-6]])
        pred = {0: 0, 1: left, 2: prior}[f]
        rows.append(bytes([f]) + ((raw[y] - pred) & 0xFF).astype(np.uint8).tobytes())
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"".join(rows))) \
        + _chunk(b"IEND", b"")


# -- shared math, pinned by hand -----------------------------------------------------------------
def test_pixel_conversions_by_hand():
    a = np.array([[[0, 32767, 65535]]], np.uint16)
    np.testing.assert_allclose(images.to_float(a)[:, 0, 0], [-1.0, 32767 / 32767.5 - 1, 1.0], atol=1e-7)
    # uint8 unchanged: 0 -> -1, 255 -> 1, 51 -> 51 / 127.5 - 1 = -0.6
    np.testing.assert_allclose(images.to_float(np.array([[[0, 51, 255]]], np.uint8))[:, 0, 0], [-1, -0.6, 1],
                               atol=1e-7)
    # (x + 1) * 32767.5, halves up: -1 -> 0; 0 -> 32767.5 -> 32768; 1 -> 65535; beyond -> clipped
    x = np.array([-1.0, 0.0, 1.0, 1.5, -2.0], np.float32).reshape(1, 5, 1).repeat(3, axis=0)
    np.testing.assert_array_equal(images.to_uint16(x)[:, 0, 0], [0, 32768, 65535, 65535, 0])
    assert images.to_pixels(x, np.uint8).dtype == np.uint8
    np.testing.assert_array_equal(depth16.reduce8(np.array([0, 128, 32896, 65535], np.uint16)), [0, 0, 128, 255])


def test_back_projection_in_sixteen_bits():
    """The same iteration in 16-bit units: a uint16 output is pulled onto a uint16 LR to well
    under one 8-bit level, and a uint8 LR is taken in the uint16 output's unit (x 257)."""
    lr = RNG.integers(20000, 40000, (6, 8, 3)).astype(np.uint16)
    out = np.asarray(Image.fromarray(np.zeros((24, 32), np.uint8))).astype(np.uint16)[:, :, None].repeat(3, 2)
    out += 30000
    consistency.apply_inplace(out, lr, 30)
    down = consistency.BackProjection(lr, 24, 32).down_y.apply(
        consistency.BackProjection(lr, 24, 32).down_x.apply(out.astype(np.float64), 1), 0)
    assert np.abs(down - lr).max() < 257 / 4
    lr8 = depth16.reduce8(lr)
    a = consistency.apply_inplace(np.full((24, 32, 3), 30000, np.uint16), lr8, 5)
    b = consistency.apply_inplace(np.full((24, 32, 3), 30000, np.uint16), lr8.astype(np.float64) * 257, 5)
    np.testing.assert_array_equal(a, b)


# -- files ---------------------------------------------------------------------------------------
def test_sixteen_bit_png_read_exactly():
    a = RGB16[:5, :7]
    assert np.array_equal(decode_image(_png_by_hand(a, [0, 1, 2, 1, 0]), "x")[0], a)
    assert load_image is not None and decode_image(_png_by_hand(a, [0] * 5), "x")[0].dtype == np.uint16
    # written by pypng: RGBA and grey + alpha
    rgba = RNG.integers(0, 65536, (6, 9, 4)).astype(np.uint16)
    buf = io.BytesIO()
    png.Writer(9, 6, greyscale=False, alpha=True, bitdepth=16).write(buf, rgba.reshape(6, 36))
    rgb, alpha, _ = decode_image(buf.getvalue(), "rgba")
    assert np.array_equal(rgb, rgba[:, :, :3]) and np.array_equal(alpha, rgba[:, :, 3])
    la = RNG.integers(0, 65536, (4, 5, 2)).astype(np.uint16)
    buf = io.BytesIO()
    png.Writer(5, 4, greyscale=True, alpha=True, bitdepth=16).write(buf, la.reshape(4, 10))
    rgb, alpha, _ = decode_image(buf.getvalue(), "la")
    assert np.array_equal(rgb, np.repeat(la[:, :, :1], 3, 2)) and np.array_equal(alpha, la[:, :, 1])


def test_sixteen_bit_png_written_exactly_with_profile_and_exif():
    """Our writer (Paeth rows, more than one block of rows) read back by pypng, an
    independent decoder; the ICC profile and EXIF read back by Pillow."""
    a = RNG.integers(0, 65536, (300, 7, 3)).astype(np.uint16)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "ldmind-test-camera"
    data = encode_image(a, "PNG", Metadata(icc, exif.tobytes()))
    w, h, rows, info = png.Reader(bytes=data).asDirect()
    assert info["bitdepth"] == 16 and np.array_equal(np.vstack(list(map(np.uint16, rows))).reshape(h, w, 3), a)
    with Image.open(io.BytesIO(data)) as im:
        assert im.info["icc_profile"] == icc and im.getexif()[0x010F] == "ldmind-test-camera"
    assert encode_image(a, "PNG").find(b"iCCP") < 0                     # nothing to carry: nothing written


def test_sixteen_bit_tiff_round_trip_and_refusals():
    rgba = RNG.integers(0, 65536, (8, 6, 4)).astype(np.uint16)
    rgb, alpha, meta = decode_image(encode_image(rgba, "TIFF", Metadata(b"\0" * 16 + b"RGB " + b"\0" * 200)), "t")
    assert np.array_equal(rgb, rgba[:, :, :3]) and np.array_equal(alpha, rgba[:, :, 3])
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.moveaxis(RGB16, -1, 0), photometric="rgb", planarconfig="separate")   # Pillow cannot
    assert np.array_equal(decode_image(buf.getvalue(), "planar")[0], RGB16)
    # a compression tifffile decodes only with imagecodecs (LZW, tag 259 = 5): one clear line
    data = bytearray(buf.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        offset = tif.pages[0].tags["Compression"].valueoffset
    struct.pack_into("<H", data, offset, 5)
    with pytest.raises(InputError, match="imagecodecs"):
        decode_image(bytes(data), "lzw.tif")
    assert encode_image(RGB16, "JPEG")[:2] == b"\xff\xd8"                  # 8-bit formats: reduced


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_of_deep_files_matches_pillow(orientation):
    """``depth16.orient`` against Pillow's own exif_transpose (an independent implementation)."""
    base = RNG.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    im = Image.fromarray(base)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    assert np.array_equal(depth16.orient(base, orientation), expected)
    deep = encode_image(base.astype(np.uint16) * 257, "PNG", Metadata(None, exif.tobytes()))
    assert np.array_equal(decode_image(deep, "o")[0], expected.astype(np.uint16) * 257)


def test_output_depth_rule():
    assert output_depth("o.png", np.uint16) == 16 and output_depth("o.tif", np.uint16) == 16
    assert output_depth("o.jpg", np.uint16) == 8 and output_depth("o.png", np.uint8) == 8
    assert output_depth("o.png", np.uint8, 16) == 16 and output_depth("o.tiff", np.uint16, 8) == 8
    with pytest.raises(InputError, match="stores 8 bits"):
        output_depth("o.webp", np.uint16, 16)
    arr16 = to_rgb_alpha(np.dstack([RGB16, np.full(RGB16.shape[:2], 65535, np.uint16)]))
    assert arr16[0].dtype == np.uint16 and arr16[1] is None                # opaque 16-bit alpha dropped


# -- end to end ----------------------------------------------------------------------------------
# the benchmark's own ramp (a smooth sky-like gradient, every 16-bit value distinct) and shrink
# (PIL's bicubic in float mode: an implementation apart from ours)
_gradient, _down = gradient, shrink


def test_smooth_gradient_without_eight_bit_banding(sr_pipe):
    """16 bits kept through the pipeline: the output shrunk back matches the 16-bit input to
    a small fraction of an 8-bit level, with thousands of distinct values; the same gradient
    through 8 bits is off by up to half a level or more and falls into a few flat bands."""
    lr = _gradient(24, 32)
    out16, = sr_pipe.upscale(lr, scale=3, steps=2, seed=0, backproject=20)
    out8, = sr_pipe.upscale(depth16.reduce8(lr), scale=3, steps=2, seed=0, backproject=20)
    assert out16.dtype == np.uint16 and out8.dtype == np.uint8
    err16 = np.abs(_down(out16.astype(np.float64), 24, 32) - lr)
    err8 = np.abs(_down(out8.astype(np.float64) * 257, 24, 32) - lr)
    assert err16.max() < 257 / 8, err16.max()
    assert err8.max() > 257 / 2.5, err8.max()
    assert len(np.unique(out16[:, :, 2])) > 500 and len(np.unique(out8[:, :, 2])) < 40
    # depth=8 on a 16-bit input: the 8-bit rendering, still from the 16-bit LR
    assert sr_pipe.upscale(lr, scale=3, steps=2, seed=0, depth=8)[0].dtype == np.uint8
    with pytest.raises(InputError, match="depth must be 8 or 16"):
        sr_pipe.upscale(lr, scale=2, steps=1, depth=12)


def test_sixteen_bit_alpha(sr_pipe):
    a = np.zeros((16, 16), np.uint16)
    a[4:12, 4:12] = 65535
    a[3, 4:12] = 20000
    rgba = np.dstack([_gradient(16, 16), a])
    out, = sr_pipe.upscale(rgba, scale=2, steps=1, backproject=1)
    assert out.dtype == np.uint16 and out.shape == (32, 32, 4)
    np.testing.assert_array_equal(out[:, :, 3], ra.resize(a, 32, 32))
    assert 0 < out[7, 12, 3] < 65535                                      # the soft row stays soft
    bled = ra.bleed(rgba[:, :, :3], a)
    assert bled.dtype == np.uint16 and np.array_equal(bled[a > 0], rgba[:, :, :3][a > 0])
    assert bled[a == 0].min() > 25000                                     # no black under transparency


def test_cli_keeps_sixteen_bits(sr_engines, tmp_path, capsys):
    lr = _gradient(20, 20)
    src = tmp_path / "in16.png"
    src.write_bytes(encode_image(lr, "PNG"))
    code = main(["upscale", str(src), "--engines", str(sr_engines), "--scale", "2", "-o", str(tmp_path / "o.png"),
                 *FAST])
    assert code == 0, capsys.readouterr().err
    w, h, rows, info = png.Reader(filename=str(tmp_path / "o.png")).asDirect()
    assert (w, h, info["bitdepth"], info["planes"]) == (40, 40, 16, 3)
    assert main(["upscale", str(src), "--engines", str(sr_engines), "--scale", "2", "-o", str(tmp_path / "o.tif"),
                 *FAST]) == 0
    assert tifffile.imread(tmp_path / "o.tif").dtype == np.uint16
    assert main(["upscale", str(src), "--engines", str(sr_engines), "--scale", "2", "-o", str(tmp_path / "o.jpg"),
                 *FAST]) == 0                                           # JPEG: 8 bits, as it stores
    assert Image.open(tmp_path / "o.jpg").mode == "RGB"
    capsys.readouterr()
    code = main(["upscale", str(src), "--engines", str(sr_engines), "--scale", "2", "-o", str(tmp_path / "x.webp"),
                 "--depth", "16", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "stores 8 bits" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.webp").exists()
    # an 8-bit input asked for 16 bits: a 16-bit PNG
    src8 = tmp_path / "in8.png"
    Image.fromarray(depth16.reduce8(lr)).save(src8)
    assert main(["upscale", str(src8), "--engines", str(sr_engines), "--scale", "2", "-o", str(tmp_path / "d.png"),
                 "--depth", "16", *FAST]) == 0
    assert png.Reader(filename=str(tmp_path / "d.png")).asDirect()[3]["bitdepth"] == 16

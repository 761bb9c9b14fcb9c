"""Image loading and conversion rules of runtime/image_in.py, output paths (runtime/output_paths.py)
and atomic writes (runtime/image_out.py)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.errors import InputError
from runtime.image_in import load_image, to_rgb_array
from runtime.image_out import save_image

ROOT = Path(__file__).resolve().parents[1]
RGB = np.random.RandomState(0).randint(0, 256, (12, 16, 3)).astype(np.uint8)


def test_rgb_png_roundtrip(tmp_path):
    p = tmp_path / "a.png"
    Image.fromarray(RGB).save(p)
    np.testing.assert_array_equal(load_image(p), RGB)


def test_grayscale_becomes_rgb(tmp_path):
    g = RGB[:, :, 0]
    p = tmp_path / "g.png"
    Image.fromarray(g, "L").save(p)
    out = load_image(p)
    assert out.shape == (12, 16, 3) and all(np.array_equal(out[:, :, c], g) for c in range(3))


def test_bilevel(tmp_path):
    p = tmp_path / "b.png"
    bits = RGB[:, :, 0] > 128
    Image.fromarray(bits).save(p)
    out = load_image(p)
    # each bit becomes black or white in all three channels, pixel for pixel
    np.testing.assert_array_equal(out, np.repeat(np.where(bits, 255, 0)[:, :, None], 3, axis=2))


def test_sixteen_bit_grayscale_is_scaled(tmp_path):
    v = np.array([[0, 257, 65535, 32896]], dtype=np.uint16).repeat(3, 0)
    p = tmp_path / "g16.png"
    Image.fromarray(v).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I")
    out = load_image(p)
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 128])


def test_palette_and_palette_with_transparency(tmp_path):
    p = tmp_path / "p.png"
    Image.fromarray(RGB).convert("P").save(p)
    with Image.open(p) as im:                       # the expected colours: a palette lookup by hand
        table = np.array(im.getpalette(), dtype=np.uint8).reshape(-1, 3)
        expected = table[np.asarray(im)]
    np.testing.assert_array_equal(load_image(p), expected)
    im = Image.fromarray(RGB).convert("P")
    im.info["transparency"] = 0
    q = tmp_path / "pt.png"
    im.save(q, transparency=int(np.asarray(im)[0, 0]))
    with pytest.raises(InputError, match="transparent"):
        load_image(q)
    from runtime.image_in import load_image_meta
    rgb, alpha, _ = load_image_meta(q)              # upscale's reader keeps the alpha
    transparent = np.asarray(Image.open(q)) == np.asarray(Image.open(q))[0, 0]
    np.testing.assert_array_equal(alpha == 0, transparent)
    assert rgb.shape == (12, 16, 3) and (alpha[~transparent] == 255).all()


def test_opaque_alpha_is_dropped(tmp_path):
    p = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([RGB, np.full((12, 16), 255, np.uint8)]), "RGBA").save(p)
    np.testing.assert_array_equal(load_image(p), RGB)
    q = tmp_path / "la.png"
    Image.fromarray(RGB[:, :, 0], "L").convert("LA").save(q)
    assert load_image(q).shape == (12, 16, 3)


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "c.jpg"
    Image.fromarray(RGB).convert("CMYK").save(p, quality=95)
    with Image.open(p) as im:
        assert im.mode == "CMYK"
    out = load_image(p)
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8
    # RGB -> CMYK (K = 0, C = 255 - R) -> JPEG -> RGB comes back within JPEG's error
    assert np.abs(out.astype(int) - RGB).mean() < 12


def test_cmyk_values(tmp_path):
    """Lossless CMYK: with K = 0, R = 255 - C etc.; K = 255 is black (the values every CMYK
    -> RGB formula agrees on)."""
    cmyk = np.array([[[0, 255, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 0], [100, 50, 200, 0]]], np.uint8)
    p = tmp_path / "c.tif"
    Image.fromarray(cmyk, "CMYK").save(p)
    np.testing.assert_array_equal(load_image(p)[0], [[255, 0, 255], [0, 255, 255], [0, 0, 0], [255, 255, 255],
                                                     [155, 205, 55]])


def test_exif_orientation_is_honoured(tmp_path):
    p = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                # "rotate 90 CW to display"
    Image.fromarray(RGB).save(p, exif=exif, quality=95)
    out = load_image(p)
    assert out.shape == (16, 12, 3)                 # displayed upright: sides swapped


def test_animated_gif_first_frame(tmp_path):
    p = tmp_path / "anim.gif"
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(p, save_all=True, append_images=frames[1:])
    assert load_image(p)[0, 0, 0] < 50


def test_arrays():
    np.testing.assert_array_equal(to_rgb_array(RGB), RGB)
    assert to_rgb_array(RGB[:, :, 0]).shape == (12, 16, 3)
    assert to_rgb_array(RGB[:, :, :1]).shape == (12, 16, 3)
    assert to_rgb_array(np.full((2, 2, 3), 65535, np.uint16)).dtype == np.uint16     # 16 bits kept
    assert to_rgb_array(np.ones((2, 2), bool)).max() == 255
    with pytest.raises(InputError, match="expected uint8"):
        to_rgb_array(RGB.astype(np.float32))
    with pytest.raises(InputError, match="shape"):
        to_rgb_array(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(InputError, match="empty"):
        to_rgb_array(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(InputError, match="transparent"):
        to_rgb_array(np.zeros((2, 2, 4), np.uint8))
    from runtime.image_in import to_rgb_alpha
    rgba = np.dstack([RGB, np.arange(12 * 16).reshape(12, 16).astype(np.uint8)])
    rgb, alpha = to_rgb_alpha(rgba)
    np.testing.assert_array_equal(rgb, RGB)
    np.testing.assert_array_equal(alpha, rgba[:, :, 3])
    assert to_rgb_alpha(np.dstack([RGB, np.full((12, 16), 255, np.uint8)]))[1] is None
    with pytest.raises(InputError, match="PIL image or a numpy array"):
        to_rgb_array([[1, 2]])


def test_save_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "o.png"
    save_image(RGB, out)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), RGB)
    before = out.read_bytes()

    def boom(fd):                                  # the disk fills after part of the file is written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(InputError, match="No space left"):
        save_image(RGB[::-1], out)
    assert out.read_bytes() == before              # the old file is intact ...
    assert os.listdir(tmp_path) == ["o.png"]       # ... and no temporary file is left


def test_sixteen_bit_rgb_png(tmp_path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    a = (np.arange(36).reshape(3, 4, 3) * 1800).astype(">u2")
    raw = b"".join(b"\0" + a[y].tobytes() for y in range(3))
    p = tmp_path / "rgb16.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 16, 2, 0, 0, 0))
                  + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    out = load_image(p)                        # load_image: 8 bits (upscale's reader keeps 16)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - np.round(a / 257)).max() <= 1


# -- issue 10: inputs viewers open, temporaries that cannot leak ---------------------------------
def test_png_with_a_large_icc_profile_is_read(tmp_path):
    """A valid 4 MiB ICC profile is not corruption (Pillow's default chunk limit is 1 MiB)."""
    p = tmp_path / "icc.png"
    Image.fromarray(RGB).save(p, icc_profile=np.random.RandomState(0).bytes(4 * 2 ** 20))
    assert p.stat().st_size > 4 * 2 ** 20
    np.testing.assert_array_equal(load_image(p), RGB)


def test_png_without_iend_and_jpeg_without_eoi_are_read(tmp_path):
    """Viewers open both; so do we (the same pixels as the complete file)."""
    png = tmp_path / "a.png"
    Image.fromarray(RGB).save(png)
    data = png.read_bytes()
    assert data.endswith(b"IEND\xaeB`\x82")
    png.write_bytes(data[:-12])
    np.testing.assert_array_equal(load_image(png), RGB)
    photo = np.asarray(Image.open(ROOT / "tests" / "data" / "skimage-coffee.jpg"))
    for progressive in (False, True):
        jpg = tmp_path / "a.jpg"
        Image.fromarray(photo).save(jpg, quality=90, progressive=progressive)
        full = load_image(jpg)
        data = jpg.read_bytes()
        assert data.endswith(b"\xff\xd9")
        for cut in (1, 2):                          # D9 missing, or the whole FF D9 marker
            jpg.write_bytes(data[:-cut])
            np.testing.assert_array_equal(load_image(jpg), full)


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("keep", [0.5, 0.9, "one byte short"])
def test_jpeg_with_truncated_pixel_data_is_refused(tmp_path, progressive, keep):
    photo = np.asarray(Image.open(ROOT / "tests" / "data" / "skimage-coffee.jpg"))
    jpg = tmp_path / "t.jpg"
    Image.fromarray(photo).save(jpg, quality=90, progressive=progressive)
    data = jpg.read_bytes()
    # "one byte short": the last byte of scan data and the end marker are gone
    jpg.write_bytes(data[:-3] if keep == "one byte short" else data[: int(len(data) * keep)])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(jpg)


def test_interrupt_right_after_the_temporary_is_created(tmp_path, monkeypatch):
    """The temporary is created inside the try that removes it: an interrupt arriving just
    after os.open returns leaves nothing behind."""
    real_open = os.open

    def open_then_interrupt(path, flags, mode=0o777, **kw):
        os.close(real_open(path, flags, mode, **kw))
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "open", open_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_image(RGB, tmp_path / "o.png")
    assert os.listdir(tmp_path) == []


def test_temporary_name_is_short_and_stale_ones_of_dead_processes_go(tmp_path, monkeypatch):
    import subprocess
    import sys

    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: seen.append(Path(a).name) or real_replace(a, b))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".ldmind-{dead.pid}-0123abcd.tmp"
    live = tmp_path / f".ldmind-{os.getppid()}-0123abcd.tmp"        # a running process's file in progress
    foreign = [tmp_path / ".o.png.1.abcd.tmp", tmp_path / ".ldmind-x-0123abcd.tmp", tmp_path / "ldmind-1-0123abcd.tmp"]
    for f in [stale, live, *foreign]:
        f.write_bytes(b"")
    save_image(RGB, tmp_path / ("x" * 250 + ".png"))
    assert not stale.exists() and live.exists() and all(f.exists() for f in foreign)
    assert len(seen) == 1 and len(seen[0]) <= len(".ldmind-4194304-01234567.tmp")


def test_output_checks(tmp_path):
    from runtime.output_paths import check_output_path

    check_output_path(tmp_path / ("a" * 251 + ".png"))
    with pytest.raises(InputError, match="256 bytes long"):
        check_output_path(tmp_path / ("a" * 252 + ".png"))
    with pytest.raises(InputError, match=r"use \.png, \.jpg"):
        check_output_path(tmp_path / "o.pdf")
    src = tmp_path / "in.png"
    Image.fromarray(RGB).save(src)
    with pytest.raises(InputError, match="is the input image"):
        check_output_path(src, inputs=(src,))
    check_output_path(src, inputs=(src,), overwrite_input=True)

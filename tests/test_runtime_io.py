"""Image loading and conversion rules of runtime/io.py, and atomic writes."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from runtime.errors import InputError
from runtime.io import load_image, save_image, to_rgb_array

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
    Image.fromarray(RGB[:, :, 0] > 128).save(p)
    out = load_image(p)
    assert set(np.unique(out)) <= {0, 255} and out.shape == (12, 16, 3)


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
    assert load_image(p).shape == (12, 16, 3)
    im = Image.fromarray(RGB).convert("P")
    im.info["transparency"] = 0
    q = tmp_path / "pt.png"
    im.save(q, transparency=int(np.asarray(im)[0, 0]))
    with pytest.raises(InputError, match="transparent"):
        load_image(q)


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
    np.testing.assert_array_equal(to_rgb_array(np.full((2, 2, 3), 65535, np.uint16)), np.full((2, 2, 3), 255))
    assert to_rgb_array(np.ones((2, 2), bool)).max() == 255
    with pytest.raises(InputError, match="expected uint8"):
        to_rgb_array(RGB.astype(np.float32))
    with pytest.raises(InputError, match="shape"):
        to_rgb_array(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(InputError, match="empty"):
        to_rgb_array(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(InputError, match="transparent"):
        to_rgb_array(np.zeros((2, 2, 4), np.uint8))
    with pytest.raises(InputError, match="PIL image or a numpy array"):
        to_rgb_array([[1, 2]])


def test_save_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "o.png"
    save_image(RGB, out)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), RGB)
    before = out.read_bytes()

    def boom(self, fp, *a, **k):
        fp.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", boom)
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
    out = load_image(p)
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - np.round(a / 257)).max() <= 1

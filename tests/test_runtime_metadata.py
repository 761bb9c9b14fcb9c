"""Colour profile and EXIF carried from input to output (orientation normalised), dropped
with --strip-metadata; JPEG/WebP quality and WebP lossless options."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from runtime.cli import main
from runtime.image_in import Metadata, read_metadata
from runtime.image_out import save_image

FAST = ["--steps", "1", "--backproject", "1", "-q"]
ORIENTATION, MAKE, EXIF_IFD, PIXEL_X, PIXEL_Y = 0x0112, 0x010F, 0x8769, 0xA002, 0xA003


@pytest.fixture(scope="module")
def sr(runtime_exports) -> Path:
    return runtime_exports["sr"]["engines"]


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()   # once: it holds a timestamp


def _srgb() -> bytes:
    return _SRGB


def _photo(path: Path, fmt: str = "JPEG") -> None:
    """A 12 x 8 (stored) photo with an sRGB profile and EXIF saying: rotate 90 degrees to show
    (orientation 6, so it is shown 8 x 12), camera 'ldmind-test', 12 x 8 pixels."""
    a = np.zeros((8, 12, 3), np.uint8)
    a[:, :6] = (200, 30, 30)                       # left half red as stored: top half once upright
    e = Image.Exif()
    e[ORIENTATION], e[MAKE] = 6, "ldmind-test"
    ifd = e.get_ifd(EXIF_IFD)
    ifd[PIXEL_X], ifd[PIXEL_Y] = 12, 8
    Image.fromarray(a).save(path, format=fmt, icc_profile=_srgb(), exif=e.tobytes(), quality=100)


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tif"])
def test_profile_and_exif_reach_the_output(sr, tmp_path, ext, capsys):
    src, out = tmp_path / "in.jpg", tmp_path / f"out.{ext}"
    _photo(src)
    assert main(["upscale", str(src), "--engines", str(sr), "--scale", "2", "-o", str(out), *FAST,
                 "--backproject", "10"]) == 0      # the colours follow the input closely
    im = Image.open(out)
    assert im.size == (16, 24)                     # upright: the 8 x 12 shown image, doubled
    assert im.info.get("icc_profile") == _srgb()
    e = im.getexif()
    assert e.get(MAKE) == "ldmind-test" and e.get(ORIENTATION) == 1   # not turned a second time
    ifd = e.get_ifd(EXIF_IFD)
    assert (ifd.get(PIXEL_X), ifd.get(PIXEL_Y)) == (16, 24)
    px = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert px[:12, :, 0].mean() > px[12:, :, 0].mean() + 60           # the red half on top


def test_strip_metadata(sr, tmp_path, capsys):
    src, out = tmp_path / "in.jpg", tmp_path / "out.png"
    _photo(src)
    assert main(["upscale", str(src), "--engines", str(sr), "--scale", "2", "-o", str(out), "--strip-metadata",
                 *FAST]) == 0
    im = Image.open(out)
    assert im.size == (16, 24) and "icc_profile" not in im.info and len(im.getexif()) == 0


def test_a_cmyk_profile_is_not_put_on_rgb_pixels():
    cmyk = Image.new("CMYK", (4, 4))
    cmyk.info["icc_profile"] = b"\0" * 16 + b"CMYK" + b"\0" * 108
    assert read_metadata(cmyk) == Metadata(None, None)
    rgb = Image.new("RGB", (4, 4))
    rgb.info["icc_profile"] = _srgb()
    assert read_metadata(rgb).icc_profile == _srgb()


def test_api_outputs_carry_the_metadata(runtime_exports, tmp_path):
    from runtime import Pipeline

    src = tmp_path / "in.jpg"
    _photo(src)
    pipe = Pipeline.load(runtime_exports["sr"]["engines"], backend="cpu")
    [out] = pipe.upscale(Image.open(src), scale=2, steps=1, backproject=1)
    assert out.size == (16, 24) and out.info["icc_profile"] == _srgb()
    path = save_image(out, tmp_path / "api.webp")                    # save_image reads them from info
    back = Image.open(path)
    assert back.info["icc_profile"] == _srgb() and back.getexif().get(MAKE) == "ldmind-test"
    [arr] = pipe.upscale(np.asarray(Image.open(src)), scale=2, steps=1, backproject=1)
    assert isinstance(arr, np.ndarray)                                # arrays carry nothing


def test_quality_and_webp_lossless(tmp_path):
    rng = np.random.RandomState(0)
    a = rng.randint(0, 256, (64, 64, 3)).astype(np.uint8)
    sizes = {q: save_image(a, tmp_path / f"q{q}.jpg", quality=q).stat().st_size for q in (30, 95)}
    default = save_image(a, tmp_path / "default.jpg").stat().st_size
    assert sizes[30] < sizes[95] == default
    lossless = save_image(a, tmp_path / "l.webp", lossless=True)
    np.testing.assert_array_equal(np.asarray(Image.open(lossless).convert("RGB")), a)
    lossy = save_image(a, tmp_path / "lossy.webp")
    assert not np.array_equal(np.asarray(Image.open(lossy).convert("RGB")), a)


@pytest.mark.parametrize("value", ["0", "101", "high"])
def test_bad_quality_is_refused(sr, tmp_path, capsys, value):
    src = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(src)
    out = tmp_path / "out.jpg"
    with pytest.raises(SystemExit) as e:
        main(["upscale", str(src), "--engines", str(sr), "--scale", "2", "-o", str(out), "--quality", value])
    assert e.value.code == 2 and "--quality must be" in capsys.readouterr().err and not out.exists()

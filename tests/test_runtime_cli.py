"""The CLI's error contract: bad input -> one clear line on stderr, exit status 2, no
traceback, no output file (issue 4).  Plus the successful paths of each command."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--steps", "3"]          # not --quiet: a refused request must print one line anyway


@pytest.fixture(scope="module")
def sr(runtime_exports) -> Path:
    return runtime_exports["sr"]["engines"]


@pytest.fixture(scope="module")
def gen(runtime_exports) -> Path:
    return runtime_exports["gen"]["engines"]


@pytest.fixture
def lr_png(tmp_path) -> Path:
    p = tmp_path / "lr.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (10, 12, 3)).astype(np.uint8)).save(p)
    return p


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def assert_refused(argv, capsys, pattern: str, out: Path | None = None) -> str:
    """Exit 2, exactly one line on stderr matching ``pattern``, no traceback, no output."""
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main([str(a) for a in argv]))
    err = capsys.readouterr().err
    assert exc.value.code == 2, f"exit {exc.value.code}, stderr {err!r}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {lines}"
    assert "Traceback" not in err
    import re
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"
    if out is not None:
        folder = out.parent
        assert not out.exists()
        assert not [f for f in os.listdir(folder) if f.endswith(".tmp")], "temporary file left behind"
    return lines[0]


# -- bad images --------------------------------------------------------------------------------
def _png_header_only(path: Path, w: int, h: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _bad_image(kind: str, tmp: Path) -> Path:
    rgb = np.random.RandomState(1).randint(0, 256, (40, 48, 3)).astype(np.uint8)
    if kind == "empty":
        p = tmp / "empty.png"
        p.write_bytes(b"")
    elif kind == "truncated-png":
        p = tmp / "trunc.png"
        Image.fromarray(rgb).save(p)
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif kind == "truncated-jpeg":
        p = tmp / "trunc.jpg"
        Image.fromarray(rgb).save(p, quality=95)
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif kind == "garbage":
        p = tmp / "garbage.png"
        p.write_bytes(np.random.RandomState(2).bytes(5000))
    elif kind == "text":
        p = tmp / "notes.jpg"
        p.write_text("this is not an image\n")
    elif kind == "missing":
        p = tmp / "nope.png"
    elif kind == "directory":
        p = tmp / "folder.png"
        p.mkdir()
    elif kind == "bomb":
        p = tmp / "bomb.png"
        _png_header_only(p, 40000, 40000)        # 1.6 Gpx declared, a few bytes of data
    elif kind == "translucent":
        p = tmp / "alpha.png"
        a = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
        Image.fromarray(a, "RGBA").save(p)
    elif kind == "float":
        p = tmp / "float.tif"
        Image.fromarray(np.random.RandomState(3).rand(20, 20).astype(np.float32), "F").save(p)
    else:
        raise AssertionError(kind)
    return p


@pytest.mark.parametrize("kind,pattern", [
    ("empty", r"empty file"),
    ("truncated-png", r"truncated or corrupt"),
    ("truncated-jpeg", r"truncated or corrupt"),
    ("garbage", r"not a recognised image"),
    ("text", r"not a recognised image"),
    ("missing", r"no such file"),
    ("directory", r"is a directory"),
    ("bomb", r"decompression bomb"),
    ("translucent", r"transparent pixels"),
    ("float", r"floating-point"),
])
def test_bad_image_files(kind, pattern, sr, tmp_path, capsys):
    src = _bad_image(kind, tmp_path)
    out = tmp_path / "out.png"
    line = assert_refused(["upscale", src, "--engines", sr, "--scale", "2", "-o", out, *FAST], capsys, pattern, out)
    assert src.name in line                       # the message names the file


# -- bad numbers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("args,pattern", [
    (["--scale", "0"], r"scale must be a finite number > 0"),
    (["--scale", "-2"], r"scale must be a finite number > 0"),
    (["--scale", "nan"], r"scale must be a finite number > 0, got nan"),
    (["--scale", "inf"], r"scale must be a finite number > 0, got inf"),
    (["--scale", "abc"], r"scale must be a number"),
    (["--size", "0x10"], r"size must be positive"),
    (["--size", "12"], r"WIDTHxHEIGHT"),
    (["--scale", "2", "--size", "8x8"], r"not allowed with"),
    ([], r"one of the arguments --scale --size is required"),
    (["--scale", "100000"], r"a 1200000x1000000 output needs .* of memory but only .* is available"),
    (["--scale", "2", "--steps", "0"], r"--steps must be >= 1"),
    (["--scale", "2", "--steps", "5000"], r"steps must be an integer in 1\.\.1000"),
    (["--scale", "2", "--eta", "-1"], r"eta must be a finite number >= 0"),
    (["--scale", "2", "--eta", "nan"], r"eta must be a finite number >= 0"),
    (["--scale", "2", "--backproject", "-1"], r"--backproject must be in 0..100"),
    (["--scale", "2", "--backproject", "two"], r"--backproject must be an integer"),
    (["--scale", "2", "-n", "0"], r"-n must be >= 1"),
    (["--scale", "2", "--tile", "0"], r"--tile must be >= 1"),
])
def test_bad_numbers(args, pattern, sr, lr_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert_refused(["upscale", lr_png, "--engines", sr, "-o", out, *args], capsys, pattern, out)


def test_forced_latent_tile_too_large_for_attention(sr, tmp_path, capsys):
    """Tiling keeps attention bounded; only a user's forced whole-image tile can exceed memory."""
    big = tmp_path / "big.png"
    Image.new("RGB", (600, 600), (10, 20, 30)).save(big)
    out = tmp_path / "out.png"
    assert_refused(["upscale", big, "--engines", sr, "--scale", "2", "--latent-tile", "600", "-o", out, *FAST],
                   capsys, r"600x600 latent tiles needs about .* for attention", out)


@pytest.mark.parametrize("args, pattern", [
    (["--latent-tile", "7"], r"latent tile must be a positive multiple of 2 cells, got 7"),
    (["--latent-tile", "16", "--latent-overlap", "10"], r"latent overlap must be a multiple of 2 in 0..8"),
    (["--latent-tile", "0"], r"--latent-tile must be >= 1"),
    (["--latent-overlap", "-2"], r"--latent-overlap must be >= 0"),
])
def test_bad_latent_tiles(args, pattern, sr, lr_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert_refused(["upscale", lr_png, "--engines", sr, "--scale", "2", "-o", out, *args, *FAST], capsys,
                   pattern, out)


# -- bad outputs ---------------------------------------------------------------------------------
def test_unknown_output_extension(sr, lr_png, tmp_path, capsys):
    out = tmp_path / "out.xyz"
    assert_refused(["upscale", lr_png, "--engines", sr, "--scale", "2", "-o", out, *FAST], capsys,
                   r"cannot tell the output format", out)


def test_output_folder_missing(sr, lr_png, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "out.png"
    assert_refused(["upscale", lr_png, "--engines", sr, "--scale", "2", "-o", out, *FAST], capsys,
                   r"output folder .* does not exist")


def test_generate_output_is_a_file(gen, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert_refused(["generate", "--engines", gen, "--size", "16x16", "-o", f, *FAST], capsys, r"not a folder")


# -- bad engines ---------------------------------------------------------------------------------
def _variant(src: Path, dst: Path, mutate) -> Path:
    shutil.copytree(src, dst)
    mutate(dst)
    return dst


def _rewrite_manifest(d: Path, fn) -> None:
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    (d / "manifest.json").write_text(json.dumps(m))


def _nan_liif(d: Path) -> None:
    import hashlib

    import onnx
    from onnx import helper, numpy_helper
    model = onnx.load(d / "liif.onnx")
    g = model.graph
    for node in g.node:                            # rename the producer of "rgb"
        node.output[:] = ["rgb_pre" if o == "rgb" else o for o in node.output]
    g.initializer.append(numpy_helper.from_array(np.array([np.nan], np.float32), "nan_const"))
    g.node.append(helper.make_node("Mul", ["rgb_pre", "nan_const"], ["rgb"]))
    onnx.save(model, d / "liif.onnx")
    sha = hashlib.sha256((d / "liif.onnx").read_bytes()).hexdigest()
    _rewrite_manifest(d, lambda m: m["graphs"]["liif"].__setitem__("sha256", sha))


@pytest.mark.parametrize("kind,pattern", [
    ("missing-dir", r"engine directory .* not found"),
    ("not-a-dir", r"is not a directory"),
    ("no-manifest", r"manifest\.json not found"),
    ("missing-graph", r"unet_step\.onnx: missing"),
    ("version", r"format_version 99"),
    ("checksum", r"decoder\.onnx: sha256 mismatch"),
    ("bad-json", r"not readable JSON"),
    ("nan", r"liif graph produced NaN"),
])
def test_bad_engines(kind, pattern, sr, lr_png, tmp_path, capsys):
    eng = tmp_path / "engines"
    if kind == "missing-dir":
        pass
    elif kind == "not-a-dir":
        eng.write_text("x")
    elif kind == "no-manifest":
        _variant(sr, eng, lambda d: (d / "manifest.json").unlink())
    elif kind == "missing-graph":
        _variant(sr, eng, lambda d: (d / "unet_step.onnx").unlink())
    elif kind == "version":
        _variant(sr, eng, lambda d: _rewrite_manifest(d, lambda m: m.__setitem__("format_version", 99)))
    elif kind == "checksum":
        def flip(d):
            b = bytearray((d / "decoder.onnx").read_bytes())
            b[len(b) // 2] ^= 0xFF
            (d / "decoder.onnx").write_bytes(bytes(b))
        _variant(sr, eng, flip)
    elif kind == "bad-json":
        _variant(sr, eng, lambda d: (d / "manifest.json").write_text('{"format_version": 1, '))
    elif kind == "nan":
        _variant(sr, eng, _nan_liif)
    out = tmp_path / "out.png"
    # -q: a NaN is found mid-run, after progress lines; the error itself is one line
    assert_refused(["upscale", lr_png, "--engines", eng, "--scale", "2", "-o", out, *FAST, "-q"], capsys, pattern, out)


def test_wrong_kind_of_model(sr, gen, lr_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert_refused(["upscale", lr_png, "--engines", gen, "--scale", "2", "-o", out, *FAST], capsys,
                   r"generation model .* use generate", out)
    assert_refused(["generate", "--engines", sr, "--size", "16x16", "-o", tmp_path / "g", *FAST], capsys,
                   r"super-resolution model: use upscale")
    assert not (tmp_path / "g").exists()


def test_unavailable_backend(sr, lr_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert_refused(["upscale", lr_png, "--engines", sr, "--scale", "2", "--backend", "cuda", "-o", out, *FAST],
                   capsys, r"backend 'cuda' is not available: onnxruntime has no CUDAExecutionProvider", out)


def test_info_missing_dir(tmp_path, capsys):
    assert_refused(["info", tmp_path / "nothing"], capsys, r"not found")


def test_default_engines_missing(lr_png, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)                    # no engines/small here
    assert_refused(["upscale", lr_png, "--scale", "2", "-o", tmp_path / "o.png", *FAST], capsys,
                   r"engines/small not found.*make demo")


# -- a real process: exit status and stderr as a user sees them ----------------------------------
def test_subprocess_exit_codes(sr, lr_png, tmp_path):
    garbage = _bad_image("garbage", tmp_path)
    cases = [
        (["upscale", str(garbage), "--engines", str(sr), "--scale", "2", "-o", str(tmp_path / "a.png")], "not a recognised"),
        (["upscale", str(lr_png), "--engines", str(sr), "--scale", "nan", "-o", str(tmp_path / "b.png")], "finite"),
        (["upscale", str(lr_png), "--engines", str(tmp_path / "none"), "--scale", "2", "-o", str(tmp_path / "c.png")],
         "not found"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv, text in cases:
        r = subprocess.run([sys.executable, "-m", "runtime", *argv], capture_output=True, text=True, env=env, cwd=ROOT)
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and text in r.stderr and "Traceback" not in r.stderr
        assert not Path(argv[-1]).exists()


# -- success paths -------------------------------------------------------------------------------
def test_upscale_writes_images(sr, lr_png, tmp_path, capsys):
    out = tmp_path / "hr.png"
    code, _ = run_cli(["upscale", lr_png, "--engines", sr, "--scale", "2.5", "-n", "2", "-o", out, *FAST], capsys)
    assert code == 0
    for j in range(2):
        with Image.open(tmp_path / f"hr_{j}.png") as im:
            assert im.size == (30, 25) and im.mode == "RGB"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_upscale_size_and_progress(sr, lr_png, tmp_path, capsys):
    out = tmp_path / "hr.jpg"
    code, err = run_cli(["upscale", lr_png, "--engines", sr, "--size", "33x17", "--steps", "3", "--tile", "100",
                         "-o", out], capsys)
    assert code == 0 and "backend cpu" in err and "denoise" in err and "render 33x17" in err
    with Image.open(out) as im:
        assert im.size == (33, 17) and im.format == "JPEG"


def test_generate_writes_images(gen, tmp_path, capsys):
    code, _ = run_cli(["generate", "--engines", gen, "--size", "24x20", "-n", "3", "--seed", "5",
                       "-o", tmp_path / "g", *FAST], capsys)
    assert code == 0
    files = sorted(os.listdir(tmp_path / "g"))
    assert files == ["sample_seed5.png", "sample_seed6.png", "sample_seed7.png"]
    with Image.open(tmp_path / "g" / files[0]) as im:
        assert im.size == (24, 20)


def test_info(sr, capsys):
    code = main(["info", str(sr)])
    text = capsys.readouterr().out
    assert code == 0 and "tiny (super-resolution)" in text and "auto picks: cpu" in text
    assert "checksums verified" in text
    code = main(["info", str(sr), "--json"])
    s = json.loads(capsys.readouterr().out)
    assert s["auto"] == "cpu" and s["latent"]["cond_scale"] == 4 and s["backends"]["cpu"] == "available"

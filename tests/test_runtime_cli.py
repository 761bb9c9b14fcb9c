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

from conftest import ROOT, default_sigint
from runtime.cli import main

FAST = ["--steps", "3"]          # not --quiet: a refused request must print one line anyway


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
    ("directory", r"is a folder, so -o is the output folder, but .*out\.png looks like an image file name"),
    ("bomb", r"decompression bomb"),
    ("float", r"floating-point"),
])
def test_bad_image_files(kind, pattern, sr_engines, tmp_path, capsys):
    src = _bad_image(kind, tmp_path)
    out = tmp_path / "out.png"
    line = assert_refused(["upscale", src, "--engines", sr_engines, "--scale", "2", "-o", out, *FAST], capsys, pattern, out)
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
    (["--scale", "2", "--fidelity", "1.5"], r"fidelity must be a number in 0\.\.1, got 1\.5"),
    (["--scale", "2", "--fidelity", "x"], r"fidelity must be a number, got 'x'"),
    (["--scale", "2", "--backproject", "-1"], r"--backproject must be in 0..100"),
    (["--scale", "2", "--backproject", "two"], r"--backproject must be an integer"),
    (["--scale", "2", "-n", "0"], r"-n must be >= 1"),
    (["--scale", "2", "--tile", "0"], r"--tile must be >= 1"),
])
def test_bad_numbers(args, pattern, sr_engines, lr_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert_refused(["upscale", lr_png, "--engines", sr_engines, "-o", out, *args], capsys, pattern, out)


def test_forced_latent_tile_too_large_for_attention(sr_engines, tmp_path, capsys):
    """Tiling keeps attention bounded; only a user's forced whole-image tile can exceed memory."""
    big = tmp_path / "big.png"
    Image.new("RGB", (600, 600), (10, 20, 30)).save(big)
    out = tmp_path / "out.png"
    assert_refused(["upscale", big, "--engines", sr_engines, "--scale", "2", "--latent-tile", "600", "-o", out, *FAST],
                   capsys, r"600x600 latent tiles needs about .* of working memory", out)


@pytest.mark.parametrize("args, pattern", [
    (["--latent-tile", "7"], r"latent tile must be a positive multiple of 2 cells, got 7"),
    (["--latent-tile", "16", "--latent-overlap", "10"], r"latent overlap must be a multiple of 2 in 0..8"),
    (["--latent-tile", "0"], r"--latent-tile must be >= 1"),
    (["--latent-overlap", "-2"], r"--latent-overlap must be >= 0"),
])
def test_bad_latent_tiles(args, pattern, sr_engines, lr_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "-o", out, *args, *FAST], capsys,
                   pattern, out)


# -- bad outputs ---------------------------------------------------------------------------------
def test_unknown_output_extension(sr_engines, lr_png, tmp_path, capsys):
    out = tmp_path / "out.xyz"
    assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "-o", out, *FAST], capsys,
                   r"cannot tell the output format", out)


def test_output_folder_missing(sr_engines, lr_png, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "out.png"
    assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "-o", out, *FAST], capsys,
                   r"output folder .* does not exist")


def test_generate_output_is_a_file(gen_engines, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert_refused(["generate", "--engines", gen_engines, "--size", "16x16", "-o", f, *FAST], capsys, r"not a folder")


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
def test_bad_engines(kind, pattern, sr_engines, lr_png, tmp_path, capsys):
    eng = tmp_path / "engines"
    if kind == "missing-dir":
        pass
    elif kind == "not-a-dir":
        eng.write_text("x")
    elif kind == "no-manifest":
        _variant(sr_engines, eng, lambda d: (d / "manifest.json").unlink())
    elif kind == "missing-graph":
        _variant(sr_engines, eng, lambda d: (d / "unet_step.onnx").unlink())
    elif kind == "version":
        _variant(sr_engines, eng, lambda d: _rewrite_manifest(d, lambda m: m.__setitem__("format_version", 99)))
    elif kind == "checksum":
        def flip(d):
            b = bytearray((d / "decoder.onnx").read_bytes())
            b[len(b) // 2] ^= 0xFF
            (d / "decoder.onnx").write_bytes(bytes(b))
        _variant(sr_engines, eng, flip)
    elif kind == "bad-json":
        _variant(sr_engines, eng, lambda d: (d / "manifest.json").write_text('{"format_version": 1, '))
    elif kind == "nan":
        _variant(sr_engines, eng, _nan_liif)
    out = tmp_path / "out.png"
    # -q: a NaN is found mid-run, after progress lines; the error itself is one line
    assert_refused(["upscale", lr_png, "--engines", eng, "--scale", "2", "-o", out, *FAST, "-q"], capsys, pattern, out)


def test_wrong_kind_of_model(sr_engines, gen_engines, lr_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert_refused(["upscale", lr_png, "--engines", gen_engines, "--scale", "2", "-o", out, *FAST], capsys,
                   r"generation model .* use generate", out)
    assert_refused(["generate", "--engines", sr_engines, "--size", "16x16", "-o", tmp_path / "g", *FAST], capsys,
                   r"super-resolution model: use upscale")
    assert not (tmp_path / "g").exists()


def test_unavailable_backend(sr_engines, lr_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "--backend", "cuda", "-o", out, *FAST],
                   capsys, r"backend 'cuda' is not available: onnxruntime has no CUDAExecutionProvider", out)


def test_info_missing_dir(tmp_path, capsys):
    assert_refused(["info", tmp_path / "nothing"], capsys, r"not found")


def test_default_engines_missing(lr_png, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)                    # no engines/small here
    assert_refused(["upscale", lr_png, "--scale", "2", "-o", tmp_path / "o.png", *FAST], capsys,
                   r"engines/small not found.*make demo")


def test_generate_default_engines(gen_engines, tmp_path, capsys, monkeypatch):
    """generate without --engines looks where `make demo` exports the shipped generation model
    (engines/small-gen), not at the super-resolution engines/small it would refuse."""
    monkeypatch.chdir(tmp_path)
    assert_refused(["generate", "--size", "8x8", "-o", tmp_path / "g", *FAST], capsys,
                   r"^python -m runtime: error: engine directory engines/small-gen not found.*make demo")
    shutil.copytree(gen_engines, tmp_path / "engines" / "small-gen")
    code, _ = run_cli(["generate", "--size", "8x8", "-o", tmp_path / "g", "-q", *FAST], capsys)
    assert code == 0 and (tmp_path / "g" / "sample_seed0.png").is_file()


# -- a real process: exit status and stderr as a user sees them ----------------------------------
def test_subprocess_exit_codes(sr_engines, lr_png, tmp_path):
    garbage = _bad_image("garbage", tmp_path)
    cases = [
        (["upscale", str(garbage), "--engines", str(sr_engines), "--scale", "2", "-o", str(tmp_path / "a.png")], "not a recognised"),
        (["upscale", str(lr_png), "--engines", str(sr_engines), "--scale", "nan", "-o", str(tmp_path / "b.png")], "finite"),
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
def test_upscale_writes_images(sr_engines, lr_png, tmp_path, capsys):
    out = tmp_path / "hr.png"
    code, _ = run_cli(["upscale", lr_png, "--engines", sr_engines, "--scale", "2.5", "-n", "2", "-o", out, *FAST], capsys)
    assert code == 0
    for j in range(2):
        with Image.open(tmp_path / f"hr_{j}.png") as im:
            assert im.size == (30, 25) and im.mode == "RGB"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_upscale_size_and_progress(sr_engines, lr_png, tmp_path, capsys):
    out = tmp_path / "hr.jpg"
    code, err = run_cli(["upscale", lr_png, "--engines", sr_engines, "--size", "33x17", "--steps", "3", "--tile", "100",
                         "-o", out], capsys)
    assert code == 0 and "backend cpu" in err and "denoise" in err and "render 33x17" in err
    with Image.open(out) as im:
        assert im.size == (33, 17) and im.format == "JPEG"


def test_generate_writes_images(gen_engines, tmp_path, capsys):
    code, _ = run_cli(["generate", "--engines", gen_engines, "--size", "24x20", "-n", "3", "--seed", "5",
                       "-o", tmp_path / "g", *FAST], capsys)
    assert code == 0
    files = sorted(os.listdir(tmp_path / "g"))
    assert files == ["sample_seed5.png", "sample_seed6.png", "sample_seed7.png"]
    with Image.open(tmp_path / "g" / files[0]) as im:
        assert im.size == (24, 20)


def test_info(sr_engines, capsys):
    code = main(["info", str(sr_engines)])
    text = capsys.readouterr().out
    assert code == 0 and "tiny (super-resolution)" in text and "auto picks: cpu" in text
    assert "checksums verified" in text
    code = main(["info", str(sr_engines), "--json"])
    s = json.loads(capsys.readouterr().out)
    assert s["auto"].startswith("cpu for every graph") and s["latent"]["cond_scale"] == 4 and s["backends"]["cpu"] == "available"
    from runtime.bundle import load_bundle
    from runtime.limits import graph_bytes
    assert s["latent"]["default_tile"] == [32, 4]
    assert s["latent"]["default_tile_working_bytes"] == graph_bytes(load_bundle(sr_engines).costs, 1, 32, 32) > 0



def test_info_prints_a_directory_name_on_one_line(sr_engines, tmp_path, capsys):
    """A directory named with a newline and ESC: ``info`` escapes it as every other line that
    names a file does (``console.one_line``)."""
    import shutil
    odd = tmp_path / "a\nb\x1b[31m"
    shutil.copytree(sr_engines, odd)
    assert main(["info", str(odd)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(str(tmp_path) + "/a\\nb\\x1b[31m: tiny (super-resolution)"), first

# -- issue 10: reliability findings, each at the CLI --------------------------------------------
def _cli_proc(argv, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **kw.pop("env", {})}
    return subprocess.run([sys.executable, "-m", "runtime", *map(str, argv)], capture_output=True, text=True,
                          env=env, cwd=ROOT, **kw)


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_steps_equal_T_runs_upscale_and_generate(sr_engines, gen_engines, lr_png, tmp_path, capsys):
    """Finding 1: --steps 1000 (= T, accepted by validation) used to index alpha_bar[1000]."""
    out = tmp_path / "t.png"
    code, err = run_cli(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "--steps", "1000", "-q", "-o", out],
                        capsys)
    assert code == 0 and out.is_file(), err
    code, err = run_cli(["generate", "--engines", gen_engines, "--size", "8x8", "--steps", "1000", "-q",
                         "-o", tmp_path / "g"], capsys)
    assert code == 0 and (tmp_path / "g" / "sample_seed0.png").is_file(), err


def _nested(d: Path) -> None:
    (d / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)


@pytest.mark.parametrize("command", ["upscale", "info"])
@pytest.mark.parametrize("kind,pattern", [
    ("nested", r"nested too deeply"),                                            # finding 2
    ("scale-abc", r"scale_factor must be a finite number > 0, got 'abc'"),       # finding 3
    ("scale-null", r"scale_factor must be a finite number > 0, got None"),
    ("sha-null", r"graphs\.decoder\.sha256 must be 64 hexadecimal digits, got None"),   # finding 4
    ("timesteps-str", r"schedule\.timesteps must be an integer >= 1, got '1000'"),
    ("latent-bool", r"latent\.z_channels must be an integer >= 1, got True"),
    ("swapped", r"encoder\.onnx: graph 'encoder' does not match the manifest .*inputs \['z'\]"),  # finding 11
])
def test_broken_manifests_exit_2(command, kind, pattern, sr_engines, lr_png, tmp_path, capsys):
    eng = tmp_path / "engines"

    def swap(d):
        import hashlib
        shutil.copy(d / "decoder.onnx", d / "encoder.onnx")       # another graph, checksum fixed up
        sha = hashlib.sha256((d / "encoder.onnx").read_bytes()).hexdigest()
        _rewrite_manifest(d, lambda m: m["graphs"]["encoder"].__setitem__("sha256", sha))

    mutate = {
        "nested": _nested,
        "scale-abc": lambda d: _rewrite_manifest(d, lambda m: m.__setitem__("scale_factor", "abc")),
        "scale-null": lambda d: _rewrite_manifest(d, lambda m: m.__setitem__("scale_factor", None)),
        "sha-null": lambda d: _rewrite_manifest(d, lambda m: m["graphs"]["decoder"].__setitem__("sha256", None)),
        "timesteps-str": lambda d: _rewrite_manifest(d, lambda m: m["schedule"].__setitem__("timesteps", "1000")),
        "latent-bool": lambda d: _rewrite_manifest(d, lambda m: m["latent"].__setitem__("z_channels", True)),
        "swapped": swap,
    }[kind]
    _variant(sr_engines, eng, mutate)
    out = tmp_path / "out.png"
    argv = ["info", eng] if command == "info" else ["upscale", lr_png, "--engines", eng, "--scale", "2", "-o", out,
                                                    *FAST]
    assert_refused(argv, capsys, pattern, out if command == "upscale" else None)


def test_memory_limit_variable_must_be_a_number(sr_engines, lr_png, tmp_path, capsys, monkeypatch):
    """Finding 5: LDMIND_MEMORY_LIMIT=abc."""
    out = tmp_path / "out.png"
    for bad in ("abc", "-5", "nan"):
        monkeypatch.setenv("LDMIND_MEMORY_LIMIT", bad)
        assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "-o", out, *FAST], capsys,
                       r"LDMIND_MEMORY_LIMIT must be a number of bytes", out)


def test_closed_or_full_stdout_after_the_image_is_written(sr_engines, lr_png, tmp_path):
    """Finding 6: `| head -0` and `>/dev/full` after a finished job: exit 0, image complete."""
    out = tmp_path / "a.png"
    argv = [sys.executable, "-m", "runtime", "upscale", str(lr_png), "--engines", str(sr_engines), "--scale", "2",
            "-o", str(out), *FAST]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    p.stdout.close()                                # the reader is gone before anything is printed
    err = p.stderr.read().decode()
    assert p.wait() == 0, err
    assert "Error" not in err and "Traceback" not in err
    with Image.open(out) as im:
        im.load()
        assert im.size == (24, 20)
    out.unlink()
    with open("/dev/full", "w") as full:
        r = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "Exception" not in r.stderr, r.stderr
    assert out.is_file()
    with open("/dev/full", "w") as full:             # progress on a full stderr too
        r = subprocess.run(argv, stdout=full, stderr=full, env=env, cwd=ROOT)
    assert r.returncode == 0


def test_out_of_memory_says_so_without_onnxruntime_log(sr_engines, lr_png, tmp_path):
    """Finding 7: under an address-space cap ONNX Runtime's bad_alloc came with its own log
    line and no word about memory.  Later siblings: OpenBLAS exiting with status 1 when its
    first product (back-projection) could not get its buffers, ORT's "EP Error" banner on
    stdout and "no backend can run" when a session could not create its threads."""
    import resource

    # where exactly memory runs out (loading a graph, ORT's bad_alloc while running one,
    # numpy's MemoryError) varies with the cap and the machine: every request must end in
    # exit 0 with a complete image or in the one-line out-of-memory error, and some must
    # hit the cap
    refused = 0
    # 300 and 450 MiB: refused before ONNX Runtime opens a session (it can crash there, seen at
    # 400 MiB: limits.check_address_space); 600 and 700: the run itself runs short
    for mib in (300, 450, 600, 700):
        def cap(mib=mib):
            resource.setrlimit(resource.RLIMIT_AS, (mib * 2 ** 20, mib * 2 ** 20))

        for extra in (["--scale", "40"], ["--scale", "80"],
                      ["--size", "3000x3000", "--tile", "1000000", "--backproject", "0"]):
            out = tmp_path / "big.png"
            r = _cli_proc(["upscale", lr_png, "--engines", sr_engines, "-q", "-o", out, "--steps", "2", *extra],
                          preexec_fn=cap)
            assert r.returncode in (0, 2) and "onnxruntime" not in r.stderr.lower(), (mib, extra, r.returncode,
                                                                                       r.stderr)
            if r.returncode == 2:
                refused += 1
                assert "ran out of memory" in _one_line(r.stderr) and r.stdout == "", (mib, extra, r.stderr)
                assert not out.exists()
            else:
                assert r.stderr == "" and out.is_file()
                out.unlink()
            assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert refused >= 3


def test_no_onnxruntime_lines_with_unwritable_home(sr_engines, lr_png, tmp_path):
    """Finding 8: ORT's telemetry warning on every run when HOME is not writable."""
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    out = tmp_path / "a.png"
    r = _cli_proc(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "-q", "-o", out, *FAST],
                  env={"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache")})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = _cli_proc(["info", sr_engines], env={"HOME": str(home)})
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_long_output_names(sr_engines, lr_png, tmp_path, capsys):
    """Finding 9: a legal 250-character name works (the temporary name is short); a name the
    file system cannot hold is refused before any work."""
    out = tmp_path / ("x" * 246 + ".png")
    code, err = run_cli(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "-o", out, *FAST], capsys)
    assert code == 0 and out.is_file(), err
    too_long = tmp_path / ("y" * 252 + ".png")
    line = assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "-o", too_long, *FAST], capsys,
                          r"output file name is 256 bytes long, the file system allows 255")
    # with -n 2 the names get _0/_1: 250 + 2 + 4 bytes, too long as well
    assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "-n", "2", "-o",
                    tmp_path / ("z" * 250 + ".png"), *FAST], capsys, r"256 bytes long")
    assert "y" * 40 in line


def test_sigterm_while_writing_exits_143_and_leaves_nothing(sr_engines, lr_png, tmp_path):
    """Finding 10: SIGTERM during the write: one line, exit 143, no temporary, and an
    existing output stays as it was.  A real process, paused half way through writing its
    output (``LDMIND_PAUSE_AT=write:FLAG``) until the signal has been sent: a SIGTERM sent to
    the test's own process would also reach every native library loaded into it."""
    import signal as _signal
    import time

    out, flag = tmp_path / "o.png", tmp_path / "writing"
    out.write_bytes(b"previous result")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LDMIND_PAUSE_AT": f"write:{flag}"}
    p = subprocess.Popen([sys.executable, "-m", "runtime", "upscale", str(lr_png), "--engines", str(sr_engines),
                          "--scale", "2", "-q", "-o", str(out), *FAST], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 300
    while not flag.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert flag.exists(), p.communicate()
    p.send_signal(_signal.SIGTERM)
    flag.unlink()                                   # the write goes on, and the handler stops it
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143 and _one_line(err).endswith("terminated (SIGTERM)"), (p.returncode, err)
    assert out.read_bytes() == b"previous result"
    assert sorted(os.listdir(tmp_path)) == ["lr.png", "o.png"]


def test_sigterm_from_outside_and_sigint(sr_engines, lr_png, tmp_path):
    """A real process: SIGTERM mid-run exits 143 with one line, SIGINT 130; nothing left."""
    import signal as _signal
    import time

    for sig, code, text in ((_signal.SIGTERM, 143, "terminated (SIGTERM)"), (_signal.SIGINT, 130, "interrupted")):
        out, flag = tmp_path / f"o{code}.png", tmp_path / f"working{code}"
        # the run waits at its first progress report until the signal comes
        # (runtime.console.pause_point): mid-run on any CPU, however fast
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LDMIND_PAUSE_AT": f"progress:{flag}"}
        p = subprocess.Popen([sys.executable, "-m", "runtime", "upscale", str(lr_png), "--engines", str(sr_engines),
                              "--scale", "2", "--steps", "3", "-o", str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, preexec_fn=default_sigint)
        deadline = time.monotonic() + 300
        while not flag.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        p.send_signal(sig)
        _, rest = p.communicate(timeout=120)
        assert p.returncode == code, rest
        last = [ln for ln in rest.splitlines() if ln.strip()][-1]
        assert text in last and "Traceback" not in rest
        assert not out.exists() and not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_impossible_eta_refused_before_any_work(sr_engines, gen_engines, lr_png, tmp_path, capsys):
    """Finding 12: --eta 100 failed only after the encoder and a U-Net step (no -q: a
    started job would print its progress header first)."""
    out = tmp_path / "o.png"
    ddim = ["--sampler", "ddim", "--steps", "50"]           # eta and the schedule are DDIM's
    assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "--eta", "100", *ddim, "-o", out], capsys,
                   r"eta 100 is too large for 50 steps.*allows eta up to 1\.0\d+", out)
    assert_refused(["generate", "--engines", gen_engines, "--size", "8x8", "--eta", "100", *ddim, "-o", tmp_path / "g"],
                   capsys, r"eta 100 is too large")
    assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "--steps", "1", "--schedule", "paper",
                    "--sampler", "ddim", "-o", out], capsys, r"paper schedule drops the noisiest", out)


def test_output_extensions_agree_with_the_message(sr_engines, lr_png, tmp_path, capsys):
    """Finding 13: .pdf was written while the message listed png/jpg/webp/tif/bmp."""
    from runtime.output_paths import output_extensions

    out = tmp_path / "o.pdf"
    line = assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "-o", out, *FAST], capsys,
                          r"cannot tell the output format from the extension '\.pdf'", out)
    listed = line.split("; use ")[1].split(", ")
    assert listed == output_extensions() and {".png", ".jpg", ".tif", ".bmp"} <= set(listed)
    for ext in listed:                               # every extension the message lists is written
        o = tmp_path / f"ok{ext}"
        code, err = run_cli(["upscale", lr_png, "--engines", sr_engines, "--scale", "1", "-q", "-o", o, "--steps", "1"],
                            capsys)
        assert code == 0, err
        with Image.open(o) as im:
            assert im.size == (12, 10)


def test_output_equal_to_input_needs_overwrite(sr_engines, lr_png, tmp_path, capsys):
    """Finding 15: -o IN silently replaced the original."""
    before = lr_png.read_bytes()
    assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "-o", lr_png, *FAST], capsys,
                   r"is the input image; refusing to replace it \(add --overwrite")
    assert lr_png.read_bytes() == before
    # another spelling of the same file
    assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "-o",
                    tmp_path / "." / ".." / tmp_path.name / "lr.png", *FAST], capsys, r"is the input image")
    code, err = run_cli(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "--overwrite", "-q", "-o", lr_png,
                         *FAST], capsys)
    assert code == 0, err
    with Image.open(lr_png) as im:
        assert im.size == (24, 20)


def test_paper_schedule_option(sr_engines, lr_png, tmp_path, capsys):
    """--schedule paper runs N - 1 steps (the progress says so) and gives another sample
    (fidelity 0: the whole window)."""
    a, b = tmp_path / "full.png", tmp_path / "paper.png"
    code, err_full = run_cli(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "--steps", "4", "--sampler", "ddim",
                              "--fidelity", "0", "-o", a], capsys)
    assert code == 0 and "denoise: 4 steps" in err_full
    code, err_paper = run_cli(["upscale", lr_png, "--engines", sr_engines, "--scale", "2", "--steps", "4",
                               "--schedule", "paper", "--sampler", "ddim", "--fidelity", "0", "-o", b], capsys)
    assert code == 0 and "denoise: 3 steps" in err_paper
    assert not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_memory_check_counts_every_sample(sr_engines, lr_png, tmp_path, capsys, monkeypatch):
    """One 480x400 output fits the memory, four do not: -n 4 is refused up front, -n 1 runs."""
    from ldmind_ref.core.contract import HEADROOM

    one = 400 * 480 * 3
    monkeypatch.setenv("LDMIND_MEMORY_LIMIT", str(HEADROOM + 2 * one))
    out = tmp_path / "o.png"
    assert_refused(["upscale", lr_png, "--engines", sr_engines, "--scale", "40", "-n", "4", "-o", out, *FAST], capsys,
                   r"4 images of 480x400 output needs .* of memory but only .* is available", out)
    code, err = run_cli(["upscale", lr_png, "--engines", sr_engines, "--scale", "40", "-q", "-o", out, "--steps", "1",
                         "--backproject", "0"], capsys)
    assert code == 0 and out.is_file(), err

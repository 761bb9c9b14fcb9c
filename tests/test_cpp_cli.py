"""The C++ CLI ``ldmind`` (runtime/cpp/cli) against ``python -m runtime`` (issue 12).

- bad input: the same exit status and the same one-line message after the program name, case
  by case (the Python CLI runs in-process through ``runtime.cli.main``, which is what
  ``python -m runtime`` calls: no interpreter start per case);
- the same pixels: upscale at 2x and 3.7x (PNG and an EXIF-rotated JPEG input, -n 2) and
  generate, on the tiny test models;
- nothing left behind: a refused or interrupted run leaves no temporary and never touches an
  existing output; stale temporaries of dead processes are swept;
- ``ldmind profile`` prints the Python profiler's table layout.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FIXED_MEMORY as MEMORY, TEST_DATA, default_sigint, reseal

pytestmark = pytest.mark.usefixtures("fixed_memory")
PY_PROG = "python -m runtime"
FAST = ["--steps", "3"]


@pytest.fixture(scope="session")
def ldmind(cpp_build) -> Path:
    return cpp_build / "ldmind"


def crop(h: int, w: int, name: str = "skimage-coffee.jpg") -> Image.Image:
    return Image.open(TEST_DATA / name).convert("RGB").crop((60, 40, 60 + w, 40 + h))


def run_cpp(ldmind: Path, argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(ldmind), *map(str, argv)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LDMIND_MEMORY_LIMIT": MEMORY}, **kw)


def run_python(argv, capsys) -> tuple[int, str]:
    from runtime.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:              # argparse
        code = e.code
    return code, capsys.readouterr().err


def after_prog(err: str, prog: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {lines}"
    assert lines[0].startswith(prog + ": "), lines[0]
    return lines[0][len(prog):]


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".ldmind-"))


# -- (a) bad input: the same status and message --------------------------------------------------
def _copy_engines(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _tampered(sr_engines: Path, tmp: Path) -> Path:
    d = _copy_engines(sr_engines, tmp / "tampered")
    g = d / "liif.onnx"
    data = bytearray(g.read_bytes())
    data[len(data) // 2] ^= 0xFF
    g.write_bytes(bytes(data))
    return d


def _swapped(sr_engines: Path, tmp: Path) -> Path:
    """The decoder's file as the encoder, its checksum fixed up: only the graph's own inputs
    and outputs tell (Python's onnxruntime io_mismatch; C++ engine.cpp io_mismatch)."""
    d = _copy_engines(sr_engines, tmp / "swapped")
    shutil.copy(d / "decoder.onnx", d / "encoder.onnx")
    reseal(d, "encoder")
    return d


def _reshaped(sr_engines: Path, tmp: Path) -> Path:
    """The encoder's input channel axis made a symbol ("C" for 3), its checksum fixed up: the
    names agree, the shape does not (io_mismatch's shape branch, both shapes quoted)."""
    import onnx

    d = _copy_engines(sr_engines, tmp / "reshaped")
    model = onnx.load(d / "encoder.onnx")
    axis = model.graph.input[0].type.tensor_type.shape.dim[1]
    axis.ClearField("dim_value")
    axis.dim_param = "C"
    onnx.save(model, d / "encoder.onnx")
    reseal(d, "encoder")
    return d


def _misdeclared(sr_engines: Path, tmp: Path) -> Path:
    """A manifest whose U-Net step declares other inputs than export/specs.py's (a channel count
    and the key order changed): export/manifest.py validate against manifest.cpp's spec table."""
    d = _copy_engines(sr_engines, tmp / "misdeclared")
    m = json.loads((d / "manifest.json").read_text())
    z_t = m["graphs"]["unet_step"]["inputs"][0]
    m["graphs"]["unet_step"]["inputs"][0] = {"shape": [z_t["shape"][0], 7, *z_t["shape"][2:]], "name": z_t["name"],
                                             "dtype": z_t["dtype"]}
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def _bad_version(sr_engines: Path, tmp: Path) -> Path:
    d = _copy_engines(sr_engines, tmp / "version")
    m = json.loads((d / "manifest.json").read_text())
    m["format_version"] = 99
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def _unwritable(tmp: Path) -> Path:
    d = tmp / "read-only"
    d.mkdir()
    d.chmod(0o500)
    if os.access(d, os.W_OK):            # root: permissions do not stop it
        d = Path("/proc/1")
        if os.access(d, os.W_OK):
            pytest.skip("no unwritable folder here")
    return d


def _truncated_png(tmp: Path) -> Path:
    p = tmp / "cut.png"
    buf = tmp / "whole.png"
    crop(20, 24).save(buf)
    data = buf.read_bytes()
    p.write_bytes(data[:len(data) - 40])     # cut inside the image data
    return p


def _truncated_jpeg(tmp: Path) -> Path:
    p = tmp / "cut.jpg"
    buf = tmp / "whole.jpg"
    crop(40, 48).save(buf, quality=90)
    data = buf.read_bytes()
    p.write_bytes(data[:len(data) // 2])     # cut inside the entropy-coded data
    return p


def _broken_zlib_png(tmp: Path) -> Path:
    """A PNG whose IDAT zlib stream breaks (a stored block with bad lengths; checksums fixed):
    Pillow says "broken data stream", zlib "invalid stored block lengths"."""
    buf = io.BytesIO()
    crop(20, 24).save(buf, "PNG")
    d = bytearray(buf.getvalue())
    i = d.index(b"IDAT")
    n = struct.unpack(">I", d[i - 4:i])[0]
    d[i + 6:i + 11] = b"\x00\x10\x00\x10\x00"      # BTYPE 00 (stored), LEN 0x0010, NLEN not its complement
    d[i + 4 + n:i + 8 + n] = struct.pack(">I", zlib.crc32(bytes(d[i:i + 4 + n])))
    p = tmp / "zbroken.png"
    p.write_bytes(bytes(d))
    return p


def _special_files(tmp: Path) -> dict:
    """A symlink to /dev/zero, a FIFO and a Unix socket, named *.png (issue 23.1)."""
    (tmp / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(tmp / "fifo.png")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp / "sock.png"))         # the socket file stays after close
    return {"zero": tmp / "zero.png", "fifo": tmp / "fifo.png", "sock": tmp / "sock.png"}


# (id, argv builder: (files dict) -> argv); every case gets --engines unless it sets it
CASES = {
    "not-an-image": lambda f: ["upscale", f["text"], "--scale", "2", "-o", f["out"]],
    "truncated-png": lambda f: ["upscale", f["cut_png"], "--scale", "2", "-o", f["out"]],
    "truncated-jpeg": lambda f: ["upscale", f["cut_jpg"], "--scale", "2", "-o", f["out"]],
    "broken-zlib-png": lambda f: ["upscale", f["zbroken"], "--scale", "2", "-o", f["out"]],
    "devzero-symlink": lambda f: ["upscale", f["zero"], "--scale", "2", "-o", f["out"]],
    "fifo-input": lambda f: ["upscale", f["fifo"], "--scale", "2", "-o", f["out"]],
    "socket-input": lambda f: ["upscale", f["sock"], "--scale", "2", "-o", f["out"]],
    "empty-file": lambda f: ["upscale", f["empty"], "--scale", "2", "-o", f["out"]],
    "missing-input": lambda f: ["upscale", f["tmp"] / "nope.png", "--scale", "2", "-o", f["out"]],
    "scale-0": lambda f: ["upscale", f["png"], "--scale", "0", "-o", f["out"]],
    "scale-negative": lambda f: ["upscale", f["png"], "--scale", "-1", "-o", f["out"]],
    "scale-nan": lambda f: ["upscale", f["png"], "--scale", "nan", "-o", f["out"]],
    "scale-abc": lambda f: ["upscale", f["png"], "--scale", "abc", "-o", f["out"]],
    "scale-empty-output": lambda f: ["upscale", f["png"], "--scale", "0.01", "-o", f["out"]],
    "size-0x5": lambda f: ["upscale", f["png"], "--size", "0x5", "-o", f["out"]],
    "size-ax3": lambda f: ["upscale", f["png"], "--size", "ax3", "-o", f["out"]],
    "scale-and-bad-size": lambda f: ["upscale", f["png"], "--scale", "2", "--size", "5x5x5", "-o", f["out"]],
    "scale-and-size": lambda f: ["upscale", f["png"], "--scale", "2", "--size", "40x30", "-o", f["out"]],
    "neither-scale-nor-size": lambda f: ["upscale", f["png"], "-o", f["out"]],
    "missing-o": lambda f: ["upscale", f["png"], "--scale", "2"],
    "no-command": lambda f: [],
    "unknown-command": lambda f: ["upsample", f["png"]],
    "unknown-flag": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--fast"],
    "unknown-flag-with-newline": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--fa\nst\x1b[2J"],
    "ambiguous-abbreviation": lambda f: ["upscale", f["png"], "--s", "2", "-o", f["out"]],
    "bad-sampler": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--sampler", "euler"],
    "steps-0": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--steps", "0"],
    "steps-1.5": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--steps", "1.5"],
    "steps-above-T": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--steps", "5000"],
    "eta-negative": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--eta", "-1"],
    "fidelity-above-1": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--fidelity", "1.5"],
    "fidelity-abc": lambda f: ["generate", "--size", "8x8", "-o", f["tmp"] / "gen", "--fidelity", "abc"],
    "backproject-101": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--backproject", "101"],
    "seed-not-int": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--seed", "x"],
    "n-0": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "-n", "0"],
    "tampered-engines": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--engines", f["tampered"]],
    "missing-engines": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--engines",
                                  f["tmp"] / "no-engines"],
    "not-an-engine-dir": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--engines", f["tmp"]],
    "format-version": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--engines", f["version"]],
    "output-folder-missing": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["tmp"] / "no" / "out.png"],
    "output-unwritable": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["unwritable"] / "out.png"],
    "output-extension-unknown": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["tmp"] / "out.gif"],
    "output-extension-missing-n2": lambda f: ["upscale", f["png"], "--scale", "2", "-n", "2", "-o", f["tmp"] / "out"],
    "output-is-input": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["png"]],
    "output-is-a-folder": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["folder.png"]],
    "generate-on-sr-model": lambda f: ["generate", "--size", "16x16", "-o", f["tmp"] / "gen"],
    "upscale-on-gen-model": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--engines", f["gen"]],
    "generate-output-is-a-file": lambda f: ["generate", "--size", "16x16", "-o", f["text"], "--engines", f["gen"]],
    "info-missing-dir": lambda f: ["info", f["tmp"] / "no-engines"],
    "info-tampered": lambda f: ["info", f["tampered"]],
    "swapped-graph": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--engines", f["swapped"]],
    "info-swapped-graph": lambda f: ["info", f["swapped"]],
    "reshaped-graph": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--engines", f["reshaped"]],
    "info-reshaped-graph": lambda f: ["info", f["reshaped"]],
    "misdeclared-graph": lambda f: ["upscale", f["png"], "--scale", "2", "-o", f["out"], "--engines",
                                    f["misdeclared"]],
    "info-misdeclared-graph": lambda f: ["info", f["misdeclared"]],
    "profile-without-image": lambda f: ["profile", f["sr"], "--scale", "2"],
    "profile-image-without-scale": lambda f: ["profile", f["sr"], f["png"]],
}


@pytest.fixture(scope="module")
def files(sr_engines, gen_engines, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("cli_cases")
    png = tmp / "lr.png"
    crop(20, 24).save(png)
    (tmp / "text.png").write_text("not an image\n")
    (tmp / "empty.png").write_bytes(b"")
    (tmp / "folder.png").mkdir()
    return {"tmp": tmp, "png": png, "out": tmp / "out.png", "text": tmp / "text.png", "empty": tmp / "empty.png",
            "cut_png": _truncated_png(tmp), "cut_jpg": _truncated_jpeg(tmp), "tampered": _tampered(sr_engines, tmp),
            "swapped": _swapped(sr_engines, tmp), "misdeclared": _misdeclared(sr_engines, tmp),
            "reshaped": _reshaped(sr_engines, tmp),
            "version": _bad_version(sr_engines, tmp), "unwritable": _unwritable(tmp), "folder.png": tmp / "folder.png",
            "sr": sr_engines, "gen": gen_engines, "zbroken": _broken_zlib_png(tmp), **_special_files(tmp)}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_same_status_and_message(case, ldmind, files, capsys):
    argv = [str(a) for a in CASES[case](files)]
    if argv and argv[0] in ("upscale", "generate") and "--engines" not in argv:
        argv += ["--engines", str(files["sr"])]
    py_code, py_err = run_python(argv, capsys)
    cc = run_cpp(ldmind, argv)
    assert py_code == 2, py_err
    assert cc.returncode == py_code, cc.stderr
    assert after_prog(cc.stderr, "ldmind") == after_prog(py_err, PY_PROG)
    assert cc.stdout == ""
    assert not files["out"].exists()
    assert temporaries(files["tmp"]) == []


@pytest.mark.parametrize("argv, text", [
    (["serve"], "serve is not part of the C++ CLI"),
    (["upscale", "{tmp}", "--scale", "2", "-o", "{tmp}/o"], "folder inputs are not supported"),
    (["upscale", "{png}", "--scale", "2", "-o", "{tmp}/o.png", "--recursive"], "apply to a folder input"),
    (["upscale", "{png}", "--scale", "2", "-o", "{tmp}/o.webp"], "writes PNG and JPEG only"),
    (["upscale", "{png}", "--scale", "2", "-o", "{tmp}/o.png", "--depth", "16"], "--depth 16"),
    (["upscale", "{rgba}", "--scale", "2", "-o", "{tmp}/o.png"], "transparent pixels"),
    (["upscale", "{deep}", "--scale", "2", "-o", "{tmp}/o.png"], "16-bit PNG"),
    (["upscale", "{gif}", "--scale", "2", "-o", "{tmp}/o.png"], "reads PNG and JPEG only"),
    (["info", "{sr}", "--json"], "info --json is not supported"),
])
def test_refusals_of_what_the_cpp_cli_does_not_do(argv, text, ldmind, files, sr_engines):
    tmp = files["tmp"]
    rgba = np.asarray(crop(10, 12).convert("RGBA")).copy()
    rgba[0, 0, 3] = 7
    Image.fromarray(rgba).save(tmp / "rgba.png")
    Image.fromarray((np.arange(120, dtype=np.uint16).reshape(10, 12) * 500)).save(tmp / "deep.png")
    crop(10, 12).save(tmp / "lr.gif")
    subst = {"tmp": tmp, "png": files["png"], "rgba": tmp / "rgba.png", "deep": tmp / "deep.png",
             "gif": tmp / "lr.gif", "sr": sr_engines}
    args = [a.format(**subst) for a in argv]
    if args[0] == "upscale":
        args += ["--engines", str(sr_engines)]
    r = run_cpp(ldmind, args)
    assert r.returncode == 2, r.stderr
    line = after_prog(r.stderr, "ldmind")
    assert line.startswith(": error: ") and text in line
    assert not list(tmp.glob("o.*"))


# -- (b) the same pixels ----------------------------------------------------------------------------
def _pixels(p: Path) -> np.ndarray:
    with Image.open(p) as im:
        assert im.mode == "RGB"
        return np.asarray(im)


@pytest.mark.parametrize("scale, extra", [("2", []), ("3.7", ["--backproject", "0", "--sampler", "ddim", "--eta", "0.5",
                                                          "--fidelity", "0.5"])])
def test_upscale_png_equals_python(scale, extra, ldmind, sr_engines, tmp_path, capsys):
    lr = tmp_path / "lr.png"
    crop(20, 28).save(lr)
    args = ["upscale", lr, "--engines", sr_engines, "--scale", scale, "--seed", "5", *FAST, *extra]
    code, err = run_python([*args, "-o", tmp_path / "py.png"], capsys)
    assert code == 0, err
    r = run_cpp(ldmind, [*args, "-o", tmp_path / "cc.png"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "cc.png")
    # progress, Python's style: FAST's steps, less fidelity's window (diffusion.fidelity_window)
    from ldmind_ref.core import contract, diffusion
    n = int(args[args.index("--steps") + 1])
    f = float(extra[extra.index("--fidelity") + 1]) if "--fidelity" in extra else contract.DEFAULT_FIDELITY
    run = n - sum(diffusion.fidelity_window(n, f, True))
    assert "encode: " in r.stderr and f"denoise: {run} steps" in r.stderr
    a, b = _pixels(tmp_path / "cc.png"), _pixels(tmp_path / "py.png")
    assert a.shape == b.shape and np.array_equal(a, b)


def test_upscale_rotated_jpeg_two_samples_equal_python(ldmind, sr_engines, tmp_path, capsys):
    """libjpeg's decode and the EXIF orientation equal Pillow's; -n 2 names NAME_0, NAME_1; stale
    temporaries of dead processes are swept by the next write."""
    lr = tmp_path / "lr.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                      # rotated 90 degrees: the output is portrait
    crop(24, 32).save(lr, quality=90, exif=exif.tobytes())
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "cc" / f".ldmind-{dead.pid}-0123abcd.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    args = ["upscale", lr, "--engines", sr_engines, "--size", "41x29", "-n", "2", "-q", *FAST]
    (tmp_path / "py").mkdir()
    code, err = run_python([*args, "-o", tmp_path / "py" / "x.png"], capsys)
    assert code == 0, err
    r = run_cpp(ldmind, [*args, "-o", tmp_path / "cc" / "x.png"])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.split() == [str(tmp_path / "cc" / f"x_{j}.png") for j in range(2)]
    assert sorted(os.listdir(tmp_path / "cc")) == ["x_0.png", "x_1.png"]
    for j in range(2):
        a, b = _pixels(tmp_path / "cc" / f"x_{j}.png"), _pixels(tmp_path / "py" / f"x_{j}.png")
        assert a.shape == (29, 41, 3) and np.array_equal(a, b)


def test_jpeg_output(ldmind, sr_engines, tmp_path):
    lr = tmp_path / "lr.png"
    crop(20, 24).save(lr)
    r = run_cpp(ldmind, ["upscale", lr, "--engines", sr_engines, "--scale", "2", "-q", "--quality", "80", *FAST,
                         "-o", tmp_path / "o.jpg"])
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "o.jpg") as im:
        assert im.format == "JPEG" and im.size == (48, 40)


def test_generate_equals_python(ldmind, gen_engines, tmp_path, capsys):
    args = ["generate", "--engines", gen_engines, "--size", "40x36", "-n", "2", "--seed", "7", "-q", *FAST]
    code, err = run_python([*args, "-o", tmp_path / "py"], capsys)
    assert code == 0, err
    r = run_cpp(ldmind, [*args, "-o", tmp_path / "cc"])
    assert r.returncode == 0, r.stderr
    names = ["sample_seed7.png", "sample_seed8.png"]
    assert r.stdout.split() == [str(tmp_path / "cc" / n) for n in names]
    for n in names:
        assert np.array_equal(_pixels(tmp_path / "cc" / n), _pixels(tmp_path / "py" / n))


def test_info(ldmind, sr_engines):
    r = run_cpp(ldmind, ["info", sr_engines])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{sr_engines}: tiny (super-resolution), fp32, manifest format 3"
    assert "liif.onnx" in lines[1] and lines[1].endswith("(checksums verified)")
    assert lines[2].startswith("  backend:   cpu")
    r = run_cpp(ldmind, ["info", sr_engines, "--no-verify"])
    assert "(checksums not checked)" in r.stdout


# A name with a newline, terminal escapes (ESC [ and ESC ] ... BEL), a printable non-ASCII letter,
# a no-break space (not printable for Python) and an undecodable byte (\udcff: the byte 0xff)
ODD_NAME = "odd\nname\x1b[31m\x1b]0;title\x07é\xa0\udcff"


def test_names_with_control_characters_are_escaped_as_in_python(ldmind, sr_engines, tmp_path, capsys):
    """Every line that names a file goes through one_line (runtime/console.py; C++: pytext.cpp):
    the same escapes in both CLIs, so a name can neither split a line nor drive the terminal."""
    from runtime.cli import main
    from runtime.console import one_line

    bad = tmp_path / f"{ODD_NAME}.png"
    bad.write_text("not an image\n")
    args = ["upscale", bad, "--scale", "2", "-o", tmp_path / "o.png", "--engines", sr_engines]
    code, err = run_python(args, capsys)
    cc = subprocess.run([os.fsencode(a) for a in [ldmind, *args]], capture_output=True,
                        env={**os.environ, "LDMIND_MEMORY_LIMIT": MEMORY}, timeout=300)
    stderr = cc.stderr.decode()
    assert code == cc.returncode == 2, stderr
    assert after_prog(stderr, "ldmind") == after_prog(err, PY_PROG)
    assert "odd\\nname\\x1b[31m\\x1b]0;title\\x07é\\xa0\\udcff.png" in stderr and "\x1b" not in stderr

    lr = tmp_path / "lr.png"
    crop(20, 24).save(lr)
    outs = {}
    for side in ("py", "cc"):
        (tmp_path / side).mkdir()
        outs[side] = tmp_path / side / f"{ODD_NAME}.png"
    args = ["upscale", lr, "--scale", "2", "-q", "--engines", sr_engines, *FAST]
    capsys.readouterr()
    assert main([str(a) for a in [*args, "-o", outs["py"]]]) == 0
    py_out = capsys.readouterr().out
    cc = subprocess.run([os.fsencode(a) for a in [ldmind, *args, "-o", outs["cc"]]], capture_output=True,
                        env={**os.environ, "LDMIND_MEMORY_LIMIT": MEMORY}, timeout=300)
    assert cc.returncode == 0, cc.stderr
    assert py_out == one_line(str(outs["py"])) + "\n"
    assert cc.stdout.decode() == one_line(str(outs["cc"])) + "\n"
    assert outs["cc"].exists() and np.array_equal(_pixels(outs["cc"]), _pixels(outs["py"]))


def test_one_line_table_is_generated_from_python():
    """runtime/cpp/cli/printable.hpp is what runtime/console.py writes (under the Unicode version
    it was written with: another Python's table differs in the code points assigned since)."""
    import unicodedata

    from conftest import ROOT
    from runtime import console

    header = (ROOT / "runtime" / "cpp" / "cli" / "printable.hpp").read_text()
    written = re.search(r'NONPRINTABLE_UNICODE = "([^"]+)"', header)[1]
    if written != unicodedata.unidata_version:
        pytest.skip(f"printable.hpp is for Unicode {written}, this Python has {unicodedata.unidata_version}")
    assert header == console.cpp_header(), (
        "runtime/cpp/cli/printable.hpp differs from runtime/console.py: regenerate it with "
        "`python -m runtime.console --cpp runtime/cpp/cli/printable.hpp`")


# -- (c) nothing left behind ---------------------------------------------------------------------
def test_refused_run_keeps_the_existing_output(ldmind, sr_engines, tmp_path):
    lr = tmp_path / "lr.png"
    crop(20, 24).save(lr)
    out = tmp_path / "out.png"
    out.write_bytes(b"the previous result")
    r = run_cpp(ldmind, ["upscale", lr, "--engines", sr_engines, "--scale", "2", "--steps", "5000", "-o", out])
    assert r.returncode == 2
    assert out.read_bytes() == b"the previous result"
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                             (signal.SIGINT, 130, "interrupted (SIGINT)")])
def test_signal_cancels_and_leaves_nothing(sig, code, word, ldmind, sr_engines, tmp_path):
    lr = tmp_path / "lr.png"
    crop(20, 24).save(lr)
    out = tmp_path / "out.png"
    out.write_bytes(b"the previous result")
    p = subprocess.Popen([str(ldmind), "upscale", str(lr), "--engines", str(sr_engines), "--scale", "3", "--steps", "400",
                          "-o", str(out)], stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "LDMIND_MEMORY_LIMIT": MEMORY}, preexec_fn=default_sigint)
    seen = []
    deadline = time.monotonic() + 60
    for line in p.stderr:                 # wait until the library is sampling
        seen.append(line)
        if line.startswith("denoise:") or time.monotonic() > deadline:
            break
    p.send_signal(sig)
    rest = p.stderr.read()
    assert p.wait(timeout=60) == code, seen + [rest]
    assert rest.strip().splitlines()[-1] == f"ldmind: {word}"
    assert out.read_bytes() == b"the previous result"
    assert temporaries(tmp_path) == []


# -- (d) the profiler's table ----------------------------------------------------------------------
_ROW = re.compile(r"^(?P<stage>.{20}) (?P<wall>[ \d.]{10}) (?P<graph>[ \d.]{10}) (?P<share>[ \d.]{5})%$")


def _layout(table: str) -> list:
    """The table with its numbers masked: header text, column header, stage names, footers."""
    lines = table.strip().splitlines()
    out = [re.sub(r"[\d.]+", "#", lines[0]), lines[1]]
    for ln in lines[2:10]:
        m = _ROW.match(ln)
        assert m, f"not a stage row: {ln!r}"
        out.append(m["stage"])
    # numbers masked, and the padding before them (a 4-digit total is one space narrower)
    out += [re.sub(r" *\d+(\.\d+)?", " #", ln) for ln in lines[10:]]
    return out


def test_profile_table_has_the_python_layout(ldmind, sr_engines, tmp_path, capsys):
    lr = tmp_path / "lr.png"
    crop(20, 24).save(lr)
    args = ["profile", sr_engines, lr, "--scale", "2", "--steps", "2", "--repeat", "2"]
    code, _ = run_python([*args, "--json", tmp_path / "py.json"], capsys)
    assert code == 0
    from runtime import profile as py_profile
    p = json.loads((tmp_path / "py.json").read_text())
    py_table = py_profile.table(p)
    r = run_cpp(ldmind, [*args, "--json", tmp_path / "cc.json"])
    assert r.returncode == 0, r.stderr
    backends, table = r.stdout.split("\n", 1)       # as Python's: the plan's line, then the table
    c = json.loads((tmp_path / "cc.json").read_text())
    assert backends == f"backends: {c['backend_reason']}" and c["backend_reason"].startswith("auto: ")
    assert _layout(table) == _layout(py_table)
    assert table.splitlines()[0] == py_table.splitlines()[0].replace(f"{p['backend']}:", "cpu:")
    assert set(c) == set(p) and set(c["stages_s"]) == set(p["stages_s"])
    assert c["graph_backends"] == p["graph_backends"]
    assert c["output"] == p["output"] == [48, 40] and c["unet_step_s"]["count"] == 2
    # the stages cover the request: what falls between stage boundaries stays small
    assert c["stages_s"]["other"] < 0.5 * c["total_s"]
    assert all(c["stages_s"][s] > 0 for s in ("encoder", "U-Net steps", "decoder", "LIIF queries"))

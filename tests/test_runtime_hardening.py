"""Issue 23, the input side: whatever a user points the CLI at, the answer is one line on
stderr and exit 2 (a folder run: one ``failed:`` line per bad file, the run goes on, exit 1),
no traceback, nothing half-written, no existing output destroyed."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.cli import main

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--steps", "1", "--backproject", "1"]


def refused(argv, capsys) -> str:
    """Run the CLI in this process: exit 2 and exactly one line on stderr, which is returned."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


def folder_run(argv, capsys) -> tuple[int, list[str], str]:
    """A folder run in this process: (exit status, its failed: lines, its last line)."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, [ln for ln in err.splitlines() if ": failed: " in ln], err.splitlines()[-1]


@pytest.fixture
def special(tmp_path):
    """{kind: path}: a symlink to /dev/zero, a FIFO and a Unix socket, all named *.png."""
    d = tmp_path / "special"
    d.mkdir()
    (d / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(d / "fifo.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "sock.png"))
    yield {"char": d / "zero.png", "fifo": d / "fifo.png", "socket": d / "sock.png"}
    sock.close()


# -- 1: endless and special inputs -------------------------------------------------------------
@pytest.mark.parametrize("kind", ["char", "fifo", "socket"])
def test_special_files_are_refused_before_reading(special, kind, tmp_path, capsys):
    """/dev/zero was read until the machine ran out of memory; a FIFO blocked forever."""
    from ldmind_ref.core.contract import FILE_KINDS

    t = time.monotonic()
    line = refused(["upscale", special[kind], "--scale", "2", "-o", tmp_path / "o.png",
                    "--engines", tmp_path / "none"], capsys)
    assert time.monotonic() - t < 1.0
    assert line.endswith(f"{special[kind].name}: is {FILE_KINDS[kind]}, not a regular image file"), line
    assert not (tmp_path / "o.png").exists()


def test_special_files_in_a_folder_run_fail_alone(special, sr_engines, tmp_path, capsys):
    src = special["fifo"].parent
    Image.new("RGB", (8, 6), (10, 200, 30)).save(src / "ok.png")
    t = time.monotonic()
    for recursive in ([], ["--recursive"]):
        out = tmp_path / f"out{len(recursive)}"
        code, failed, last = folder_run(["upscale", src, "--engines", sr_engines, "--scale", "2", "-o", out, "-q",
                                         *recursive, *FAST], capsys)
        assert code == 1 and len(failed) == 3, failed
        assert {ln.split(": failed: ")[1].split(":")[0] for ln in failed} == {str(p) for p in special.values()}
        assert last.endswith("1 done, 0 skipped, 3 failed in " + last.split(" failed in ")[1])
        assert sorted(p.name for p in out.iterdir()) == ["ok.png"]
    assert time.monotonic() - t < 30


# -- 2: a symlink loop in a folder ----------------------------------------------------------------
@pytest.mark.parametrize("recursive", [[], ["--recursive"]])
def test_symlink_loop_in_a_folder_is_one_failed_line(sr_engines, tmp_path, capsys, recursive):
    """Was: ``internal error: OSError: [Errno 40] ...`` and no summary."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "loop.png").symlink_to("loop.png")
    Image.new("RGB", (8, 6)).save(src / "ok.png")
    code, failed, last = folder_run(["upscale", src, "--engines", sr_engines, "--scale", "2", "-o", tmp_path / "out",
                                     "-q", *recursive, *FAST], capsys)
    assert code == 1 and len(failed) == 1 and "loop.png: cannot read (Too many levels of symbolic links)" in failed[0]
    assert "1 done, 0 skipped, 1 failed" in last


# -- 4: one line whatever the name, the file or the machine ----------------------------------------
def test_newline_in_a_file_name_stays_one_line(sr_engines, tmp_path, capsys):
    """Was: the name's newline split the error (and a folder run's failed: line) in two."""
    from runtime.console import one_line

    assert one_line("a\nb\tc\x1b[31m\udcff.png") == "a\\nb\\tc\\x1b[31m\\udcff.png"
    src = tmp_path / "in"
    src.mkdir()
    bad = src / "bad\nname.png"
    bad.write_bytes(b"not an image\n")
    line = refused(["upscale", bad, "--scale", "2", "-o", tmp_path / "o.png", "--engines", sr_engines], capsys)
    assert "bad\\nname.png: not a recognised image file" in line
    Image.new("RGB", (8, 6)).save(src / "ok\nname.png")
    out = tmp_path / "out"
    code = main([str(a) for a in ["upscale", src, "--engines", sr_engines, "--scale", "2", "-o", out, "-q", *FAST]])
    cap = capsys.readouterr()
    assert code == 1 and len(cap.err.splitlines()) == 2, cap.err          # one failed: line, the summary
    assert "failed: " in cap.err and "bad\\nname.png" in cap.err
    assert cap.out.splitlines() == [str(out / "ok\\nname.png")] and (out / "ok\nname.png").is_file()


def test_truncated_sixteen_bit_tiff_is_one_line(tmp_path, capsys):
    """Was: a Pillow UserWarning and a tifffile log line before the error."""
    import tifffile

    p = tmp_path / "deep.tif"
    tifffile.imwrite(p, np.arange(64 * 48 * 3, dtype=np.uint16).reshape(64, 48, 3), photometric="rgb")
    p.write_bytes(p.read_bytes()[:200])     # inside the tags' values: both libraries complain
    line = refused(["upscale", p, "--scale", "2", "-o", tmp_path / "o.png", "--engines", tmp_path / "none"], capsys)
    assert "deep.tif: truncated or corrupt" in line


def test_unwritable_home_adds_no_onnxruntime_line(sr_engines, tmp_path):
    """Was: "[W:onnxruntime:...] Failed to persist telemetry device ID" (written while
    onnxruntime is imported).  /proc/...: a HOME that not even root can create."""
    Image.new("RGB", (8, 6)).save(tmp_path / "in.png")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": "/proc/ldmind-no-home"}
    r = subprocess.run([sys.executable, "-m", "runtime", "upscale", str(tmp_path / "in.png"), "--engines",
                        str(sr_engines), "--scale", "2", "-q", "-o", str(tmp_path / "o.png"), *FAST],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and r.stderr == "", r.stderr


# -- 3: sBIT and an EXIF block too large for the output ---------------------------------------------
def _png_with_sbit(rgb16: np.ndarray, sbit: bytes) -> bytes:
    """A 16-bit RGB PNG of ``rgb16`` with an sBIT chunk right after IHDR."""
    import struct
    import zlib

    from runtime.depth16 import encode_png

    data = encode_png(rgb16)
    body = sbit
    chunk = struct.pack(">I", len(body)) + b"sBIT" + body + struct.pack(">I", zlib.crc32(b"sBIT" + body))
    return data[:33] + chunk + data[33:]                     # signature (8) + IHDR (25)


def test_sbit_of_zero_is_ignored_not_a_crash(tmp_path, capsys):
    """Was: TypeError inside pypng (exit 1, internal error)."""
    from runtime.image_in import decode_image

    rgb = (np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 1000)
    got, alpha, _ = decode_image(_png_with_sbit(rgb, b"\0\0\0"), "zero-sbit.png")
    np.testing.assert_array_equal(got, rgb)                  # all 16 bits, as if there were no sBIT
    got, _, _ = decode_image(_png_with_sbit(rgb, b"\x11\x11\x11"), "big-sbit.png")   # 17 > 16: ignored too
    np.testing.assert_array_equal(got, rgb)


def test_significant_bits_are_scaled_by_two_to_the_bits_minus_one():
    """12 significant bits (sBIT 12): v12 -> v12 * 65535 / 4095, rounded; white stays 65535
    (65535 / 4096 would give 65520), mid grey 2048 -> 32776 (not 32768)."""
    from runtime.image_in import decode_image

    v12 = np.array([0, 1, 2048, 4095], dtype=np.uint16)
    stored = (v12 << 4) | (v12 >> 8)                         # the spec's left-bit replication
    rgb = np.repeat(stored[None, :, None], 3, axis=2)
    got, _, _ = decode_image(_png_with_sbit(rgb, b"\x0c\x0c\x0c"), "sbit12.png")
    np.testing.assert_array_equal(got[0, :, 0], [0, 16, 32776, 65535])

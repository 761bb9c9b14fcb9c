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


def test_exif_too_large_for_jpeg_is_dropped_with_one_warning_before_the_work(sr_engines, tmp_path, capsys):
    """Was: the whole pipeline ran, then ``ValueError: EXIF data is too long`` (exit 1)."""
    from runtime.image_in import Metadata
    from runtime.image_out import save_image

    exif = Image.Exif()
    exif[0x010E] = "x" * 100_000                              # ImageDescription: a 100 KB block
    src = tmp_path / "big-exif.png"
    Image.new("RGB", (8, 6), (1, 2, 3)).save(src, exif=exif)
    out = tmp_path / "o.jpg"
    code = main([str(a) for a in ["upscale", src, "--engines", sr_engines, "--scale", "2", "-o", out, "-q", *FAST]])
    err = capsys.readouterr().err
    assert code == 0 and len(err.splitlines()) == 1, err
    assert "warning: " in err and "EXIF block (" in err and "without it" in err
    with Image.open(out) as im:
        assert im.size == (16, 12) and not im.getexif()
    # the API writes it without the block too, rather than failing after the work
    save_image(np.zeros((4, 4, 3), np.uint8), tmp_path / "api.jpg", Metadata(None, exif.tobytes()))
    assert (tmp_path / "api.jpg").stat().st_size > 0


# -- 5: SIGKILL during the write ----------------------------------------------------------------------
def wait_for(flag: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    """Until ``proc`` reaches the pause point that creates ``flag`` (runtime.console.pause_point)."""
    deadline = time.monotonic() + seconds
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the pause point was never reached"
        time.sleep(0.02)


def test_sigkill_mid_write_leaves_nothing(sr_engines, tmp_path):
    """Was: a .ldmind-*.tmp left in the output folder.  The write stops half way (the test's
    pause point) and the process is killed there: the folder holds what it held before."""
    src, out, flag = tmp_path / "in.png", tmp_path / "out", tmp_path / "flag"
    Image.new("RGB", (8, 6), (9, 99, 199)).save(src)
    out.mkdir()
    (out / "o.png").write_bytes(b"previous result")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LDMIND_PAUSE_AT": f"write:{flag}"}
    p = subprocess.Popen([sys.executable, "-m", "runtime", "upscale", str(src), "--engines", str(sr_engines),
                          "--scale", "2", "-q", "-o", str(out / "o.png"), *FAST], env=env, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(flag, p)
    p.kill()
    p.communicate()
    assert os.listdir(out) == ["o.png"] and (out / "o.png").read_bytes() == b"previous result"


# -- 8: decided: what --skip-existing keeps, colour keys, IEND, codecs, depth before decoding ---------
def test_complete_output_by_format(tmp_path):
    from runtime.batch import complete_output

    rgb = Image.fromarray(np.random.RandomState(3).randint(0, 256, (20, 24, 3)).astype(np.uint8))
    for ext in (".png", ".jpg", ".webp", ".bmp", ".tif"):
        p = tmp_path / f"whole{ext}"
        rgb.save(p)
        assert complete_output(p), ext
        cut = tmp_path / f"cut{ext}"
        cut.write_bytes(p.read_bytes()[:p.stat().st_size - 30])
        assert not complete_output(cut), ext
    (tmp_path / "dir.png").mkdir()
    assert not complete_output(tmp_path / "dir.png") and not complete_output(tmp_path / "none.png")


def test_skip_existing_keeps_only_complete_outputs(sr_engines, tmp_path, capsys):
    """Was: a truncated earlier output, or a folder named like one, was 'skipped'.  Now a cut
    output is done again, a folder in the way fails on its own line, a complete one is kept."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for n in ("a", "b", "c"):
        Image.new("RGB", (8, 6), (50, 100, 150)).save(src / f"{n}.png")
    Image.new("RGB", (16, 12)).save(out / "a.png")
    (out / "a.png").write_bytes((out / "a.png").read_bytes()[:-20])     # cut short
    (out / "b.png").mkdir()                                             # in the way
    Image.new("RGB", (16, 12), (1, 2, 3)).save(out / "c.png")           # complete: kept as it is
    kept = (out / "c.png").read_bytes()
    code, failed, last = folder_run(["upscale", src, "--engines", sr_engines, "--scale", "2", "-o", out, "-q",
                                     "--skip-existing", *FAST], capsys)
    assert code == 1 and len(failed) == 1 and "b.png: is a directory" in failed[0], failed
    assert "1 done, 1 skipped, 1 failed" in last
    with Image.open(out / "a.png") as im:
        im.load()
        assert im.size == (16, 12)
    assert (out / "c.png").read_bytes() == kept


def test_colour_key_transparency_is_kept_for_eight_bit_as_for_sixteen(tmp_path):
    """Was: an 8-bit RGB PNG with a tRNS colour key lost its transparency, a 16-bit one kept it."""
    from runtime.depth16 import encode_png
    from runtime.image_in import decode_image, load_image_meta

    rgb8 = np.zeros((2, 3, 3), np.uint8)
    rgb8[0, 0] = (1, 2, 3)
    Image.fromarray(rgb8).save(tmp_path / "key8.png", transparency=(1, 2, 3))
    Image.fromarray(rgb8[:, :, 0]).save(tmp_path / "key8grey.png", transparency=1)
    # the 16-bit file: encode_png's RGB, then a tRNS chunk for the key (1, 2, 3) * 257
    import struct
    import zlib
    data = encode_png(rgb8.astype(np.uint16) * 257)
    body = struct.pack(">HHH", 257, 514, 771)
    trns = struct.pack(">I", 6) + b"tRNS" + body + struct.pack(">I", zlib.crc32(b"tRNS" + body))
    _, alpha16, _ = decode_image(data[:33] + trns + data[33:], "key16.png")
    for name in ("key8.png", "key8grey.png"):
        _, alpha8, _ = load_image_meta(tmp_path / name)
        expected = np.full((2, 3), 255, np.uint8)
        expected[0, 0] = 0
        if name == "key8grey.png":
            expected[rgb8[:, :, 0] == 1] = 0
        np.testing.assert_array_equal(alpha8, expected, err_msg=name)
    np.testing.assert_array_equal(alpha16, np.where(np.all(rgb8 == (1, 2, 3), axis=2), 0, 65535))


def test_sixteen_bit_png_without_iend_is_read_as_eight_bit_ones_are():
    from runtime.depth16 import encode_png
    from runtime.image_in import decode_image

    a = (np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 997)
    data = encode_png(a)
    assert data.endswith(b"IEND\xaeB`\x82")
    np.testing.assert_array_equal(decode_image(data[:-12], "no-iend.png")[0], a)
    with pytest.raises(Exception, match="truncated or corrupt"):
        decode_image(data[:-40], "cut.png")                        # image data cut: still refused


def test_tiff_with_a_missing_codec_says_so(tmp_path):
    """Was: "truncated or corrupt TIFF file (... requires the 'imagecodecs' package)"."""
    import io
    import struct

    import tifffile

    from runtime.errors import InputError
    from runtime.image_in import decode_image

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.full((4, 5, 3), 1000, np.uint16), photometric="rgb")
    d = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", d[4:8])[0]
    for k in range(struct.unpack("<H", d[ifd:ifd + 2])[0]):            # Compression (259) := 5, LZW
        e = ifd + 2 + 12 * k
        if struct.unpack("<H", d[e:e + 2])[0] == 259:
            d[e + 8:e + 10] = struct.pack("<H", 5)
    try:
        import imagecodecs  # noqa: F401
        pytest.skip("imagecodecs is installed: LZW is read")
    except ImportError:
        pass
    with pytest.raises(InputError) as e:
        decode_image(bytes(d), "lzw.tif")
    assert "imagecodecs" in str(e.value) and "corrupt" not in str(e.value)


def test_depth_for_the_format_is_checked_before_decoding(tmp_path, capsys, monkeypatch):
    """Was: a large 16-bit PNG decoded for seconds before --depth 16 -o out.jpg was refused."""
    import runtime.image_in

    def never(*a, **k):
        raise AssertionError("decoded before the options were checked")

    monkeypatch.setattr(runtime.image_in, "decode_image", never)
    Image.new("RGB", (8, 6)).save(tmp_path / "in.png")
    line = refused(["upscale", tmp_path / "in.png", "--scale", "2", "--depth", "16", "-o", tmp_path / "o.jpg",
                    "--engines", tmp_path / "none"], capsys)
    assert "o.jpg: JPEG stores 8 bits per value" in line

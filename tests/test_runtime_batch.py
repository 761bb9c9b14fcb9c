"""Folder runs (``upscale DIR -o OUTDIR``): the tree mirrored, a corrupt file reported and
skipped, exit 1 when any failed, a resumed run with --skip-existing, refusals up front."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, default_sigint
from runtime import batch
from runtime.cli import main
FAST = ["--steps", "1", "--backproject", "1"]


@pytest.fixture(scope="module")
def sr(runtime_exports) -> Path:
    return runtime_exports["sr"]["engines"]


def _tree(root: Path) -> dict[str, Path]:
    """in/a.png, in/b.jpg, in/sub/c.png, in/sub/deeper/d.webp, in/notes.txt, in/broken.png."""
    rng = np.random.RandomState(0)
    files = {"a.png": (10, 12), "b.jpg": (12, 8), "sub/c.png": (8, 8), "sub/deeper/d.webp": (9, 11)}
    out = {}
    for rel, (h, w) in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8)).save(p)
        out[rel] = p
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)   # a PNG signature, then nothing
    return out


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_folder_run_mirrors_the_tree_and_reports_the_bad_file(sr, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _tree(src)
    code, stdout, err = _run(["upscale", src, "--engines", sr, "--scale", "2", "-o", out, "--recursive", *FAST],
                             capsys)
    assert code == 1, err                                                 # broken.png failed
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a.png", "b.jpg", "sub/c.png", "sub/deeper/d.webp"]
    assert Image.open(out / "a.png").size == (24, 20) and Image.open(out / "sub/deeper/d.webp").size == (22, 18)
    assert sorted(Path(line).relative_to(out).as_posix() for line in stdout.split()) == written
    failed = [ln for ln in err.splitlines() if "failed:" in ln]
    assert len(failed) == 1 and "broken.png" in failed[0] and "Traceback" not in err
    assert "4 done, 0 skipped, 1 failed in " in err.strip().splitlines()[-1]
    assert "files: 5/5" in err                                            # progress over files (not a tty)
    # without --recursive: the top folder only; --ext: one output format
    out2 = tmp_path / "flat"
    code, stdout, err = _run(["upscale", src, "--engines", sr, "--scale", "2", "-o", out2, "--ext", "png", "-q",
                              *FAST], capsys)
    assert code == 1 and sorted(p.name for p in out2.iterdir()) == ["a.png", "b.png"]
    assert "failed: " in err and "1 failed" in err


def test_folder_run_takes_the_sampling_options(sr, tmp_path, capsys):
    """The folder run upscales with the request's options (here --fidelity and --seed): each
    output equals the API's image for the same options."""
    from runtime import Pipeline

    src, out = tmp_path / "in", tmp_path / "out"
    files = _tree(src)
    (src / "broken.png").unlink()
    # 4 steps: fidelity 0.5 runs a window of (1, 1), the default 0.25 one of (1, 0)
    code, _, err = _run(["upscale", src, "--engines", sr, "--scale", "2", "-o", out, "--fidelity", "0.5", "--seed", "3",
                         "-q", *FAST, "--steps", "4"], capsys)
    assert code == 0, err
    pipe = Pipeline.load(sr, backend="cpu")
    [want] = pipe.upscale(np.asarray(Image.open(files["a.png"])), scale=2, steps=4, backproject=1, seed=3,
                          fidelity=0.5)
    assert np.array_equal(np.asarray(Image.open(out / "a.png")), want)
    [free] = pipe.upscale(np.asarray(Image.open(files["a.png"])), scale=2, steps=4, backproject=1, seed=3)
    assert not np.array_equal(free, want)


def test_resumed_run_skips_what_exists(sr, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _tree(src)
    (src / "broken.png").unlink()
    code, _, _ = _run(["upscale", src, "--engines", sr, "--scale", "2", "-o", out, "-q", *FAST], capsys)
    assert code == 0
    first = (out / "a.png").stat().st_mtime_ns
    (out / "b.jpg").unlink()                                              # as if the run had stopped there
    code, stdout, err = _run(["upscale", src, "--engines", sr, "--scale", "2", "-o", out, "--skip-existing", *FAST],
                             capsys)
    assert code == 0 and stdout.split() == [str(out / "b.jpg")]
    assert "1 done, 1 skipped, 0 failed" in err
    assert (out / "a.png").stat().st_mtime_ns == first


def test_interrupted_folder_run_resumes(sr, tmp_path):
    """SIGINT in the middle of a folder run: complete images only, one line saying how far it
    got; the re-run with --skip-existing does the rest and leaves the finished ones alone."""
    src, out = tmp_path / "in", tmp_path / "out"
    rng = np.random.RandomState(1)
    src.mkdir()
    for k in range(6):
        Image.fromarray(rng.randint(0, 256, (32, 32, 3)).astype(np.uint8)).save(src / f"im{k}.png")
    argv = [sys.executable, "-m", "runtime", "upscale", str(src), "--engines", str(sr), "--scale", "4", "-o",
            str(out), "-q", "--steps", "10"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    flag = tmp_path / "first-file-done"
    # the run waits after its first file until the signal comes (runtime.console.pause_point):
    # interrupted mid-run on any CPU, however fast
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**env, "LDMIND_PAUSE_AT": f"file-done:{flag}"}, preexec_fn=default_sigint)
    deadline = time.time() + 300
    while time.time() < deadline and not flag.exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=300)
    finished = sorted(p.name for p in out.iterdir())
    assert proc.returncode == 130 and len(err.strip().splitlines()) == 1, err
    assert "interrupted (SIGINT)" in err and "--skip-existing resumes" in err
    assert finished == ["im0.png"]                                                  # no temporaries
    for n in finished:
        assert Image.open(out / n).size == (128, 128)
    stamps = {n: (out / n).stat().st_mtime_ns for n in finished}
    r = subprocess.run(argv[:-1] + ["4", "--skip-existing"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"im{k}.png" for k in range(6)]
    assert {n: (out / n).stat().st_mtime_ns for n in finished} == stamps
    assert f"{6 - len(finished)} done, {len(finished)} skipped, 0 failed" in r.stderr


@pytest.mark.parametrize("setup, args, pattern", [
    (lambda s, o: None, ["--ext", "gif"], r"--ext gif: cannot write that format"),
    (lambda s, o: o.write_text("x"), [], r"exists and is not a folder"),
    (lambda s, o: [p.unlink() for p in s.rglob("*") if p.is_file()], ["--recursive"], r"no image files found"),
    (lambda s, o: Image.new("RGB", (4, 4)).save(s / "a.jpg"), ["--ext", "png"],
     r"a\.jpg and .*a\.png would both be written to .*a\.png"),
    (lambda s, o: None, ["--ext", "png", "--same-folder"], r"is the input image; refusing to replace it"),
])
def test_folder_refusals_come_before_any_work(sr, tmp_path, capsys, setup, args, pattern):
    import re

    src, out = tmp_path / "in", tmp_path / "out"
    _tree(src)
    (src / "broken.png").unlink()
    setup(src, out)
    if "--same-folder" in args:
        args = [a for a in args if a != "--same-folder"]
        out = src
    before = sorted(p for p in tmp_path.rglob("*"))
    code, stdout, err = _run(["upscale", src, "--engines", sr, "--scale", "2", "-o", out, *args, *FAST], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(pattern, err), err
    assert stdout == "" and sorted(p for p in tmp_path.rglob("*")) == before


def test_folder_options_on_a_file_are_refused(sr, tmp_path, capsys):
    f = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(f)
    code, _, err = _run(["upscale", f, "--engines", sr, "--scale", "2", "-o", tmp_path / "b.png", "--recursive"],
                        capsys)
    assert code == 2 and "apply to a folder input" in err


def test_output_names():
    assert batch.output_name(Path("x/a.jpg"), None, 1) == (Path("x/a.jpg"),)
    assert batch.output_name(Path("a.gif"), None, 1) == (Path("a.png"),)           # gif cannot be written
    assert batch.output_name(Path("a.JPG"), ".webp", 2) == (Path("a_0.webp"), Path("a_1.webp"))

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import ROOT


def _run(*args):
    return subprocess.run([sys.executable, "-m", "ldmind_ref", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_info_json():
    r = _run("info", "--preset", "div2k-sr", "--json")
    assert r.returncode == 0, r.stderr
    params = json.loads(r.stdout)["params"]
    assert set(params) == {"encoder", "decoder", "liif", "unet"}
    assert abs(params["unet"] - 113.6e6) / 113.6e6 < 0.02


def test_upscale_random_init(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((11, 9, 3)) * 255).astype(np.uint8)).save(src)
    out = tmp_path / "out.png"
    r = _run("upscale", str(src), "--preset", "tiny", "--random-init", "--scale", "3.7", "--steps", "3",
             "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "random weights" in r.stderr
    assert Image.open(out).size == (33, 41)  # round(3.7 * 9) x round(3.7 * 11)

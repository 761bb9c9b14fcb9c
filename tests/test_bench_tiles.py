"""``bench_tiles quality`` on the tiny export: the tiled run's seam controls are scored on
*this* image's untiled render, and are absent (not taken from another image) where the
untiled render was refused."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from runtime.pipeline import Pipeline
from runtime.programs import bench_tiles


def _data(tmp_path):
    src = Image.open("tests/data/skimage-coffee.jpg").convert("RGB")
    d = tmp_path / "data" / "Set5"
    d.mkdir(parents=True)
    src.crop((200, 100, 296, 164)).save(d / "a.png")
    src.crop((300, 200, 396, 264)).save(d / "b.png")
    return tmp_path / "data"


def _run(sr_engines, tmp_path, name):
    out = tmp_path / f"{name}.json"
    assert bench_tiles.main(["quality", "--engines", str(sr_engines), "--data", str(_data(tmp_path) if name == "ok"
                             else tmp_path / "data"), "--sets", "Set5", "--scales", "4", "--steps", "2", "--tile", "8",
                             "--overlap", "2", "--json", str(out)]) == 0
    return json.loads(out.read_text())["rows"]


def test_seam_controls_come_from_the_same_images_untiled_render(sr_engines, tmp_path, monkeypatch):
    rows = _run(sr_engines, tmp_path, "ok")
    assert [r["image"] for r in rows] == ["a", "b"]
    for r in rows:
        tiled = r["overlap 2"]
        assert tiled["tiles"] > 1 and tiled["seam_control"] is not None and r["untiled"]["psnr"] > 0

    # the untiled render of the second image refused: its controls are missing, never the
    # first image's untiled render scored at the second's rows
    real = Pipeline.upscale
    calls = []

    def refuse_second_untiled(self, lr, **kw):
        calls.append(kw.get("latent_tile"))
        if kw.get("latent_tile") is None and len([c for c in calls if c is None]) == 2:
            raise MemoryError("refused")
        return real(self, lr, **kw)
    monkeypatch.setattr(Pipeline, "upscale", refuse_second_untiled)
    rows = _run(sr_engines, tmp_path, "refused")
    assert rows[0]["overlap 2"]["seam_control"] is not None
    assert "error" in rows[1]["untiled"]
    assert rows[1]["overlap 2"]["seam_control"] is None and rows[1]["overlap 2"]["seam"] is not None
    assert np.isfinite(rows[1]["overlap 2"]["seam"])

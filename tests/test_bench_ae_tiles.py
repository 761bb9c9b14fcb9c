"""``bench_ae_tiles`` on the tiny export: its "whole" run is the pipeline's untiled request,
and its tiled runs really tile the graph they name (and only it)."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from ldmind_ref import benchmark
from runtime.programs import bench_ae_tiles


def test_whole_is_the_untiled_request_and_tiles_change_only_their_graph(sr, tmp_path):
    _, pipe = sr
    src = Image.open("tests/data/skimage-coffee.jpg").convert("RGB")
    d = tmp_path / "data" / "Set5"
    d.mkdir(parents=True)
    src.crop((200, 100, 328, 196)).save(d / "a.png")            # LR 32 x 24 at 4x: tiny's latent 32 x 24
    hr_s, lr = benchmark.make_lr(np.asarray(Image.open(d / "a.png")), 4)
    whole = bench_ae_tiles.latents(pipe, lr, None, 2)
    [[untiled]] = pipe.render(whole, [hr_s.shape[:2]], latent_tile=32)
    [request] = pipe.upscale(lr, size=(hr_s.shape[1], hr_s.shape[0]), backproject=0, latent_tile=32)
    np.testing.assert_array_equal(untiled, request)
    assert not np.array_equal(bench_ae_tiles.latents(pipe, lr, 12, 2), whole)     # the encoder on 12-cell tiles

    out = tmp_path / "r.json"
    assert bench_ae_tiles.main(["--engines", str(pipe.bundle.root), "--data", str(tmp_path / "data"), "--sets", "Set5",
                                "--tiles", "16", "12", "--overlap", "2", "--repeat", "1", "--backend", "cpu",
                                "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert set(r["speed_us_per_cell"]) == {"16", "12"}
    [row] = r["rows"]
    assert row["whole"]["raw"] > 0 and r["summary"]["whole"]["raw_change"] == 0
    assert row["decoder 12"]["raw"] != row["whole"]["raw"] and row["encoder 12"]["raw"] != row["whole"]["raw"]

"""The latency profiler (issue 11): one real request, stage by stage, as table, JSON and plot."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime import profile
from runtime.cli import main


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("profile") / "in.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (12, 16, 3)).astype(np.uint8)).save(p)
    return p


def test_profile_of_an_upscale(runtime_exports, photo, tmp_path, capsys):
    sr = runtime_exports["sr"]["engines"]
    j, png = tmp_path / "p.json", tmp_path / "p.png"
    code = main(["profile", str(sr), str(photo), "--scale", "2", "--steps", "3", "--repeat", "2", "--backend", "cpu",
                 "--json", str(j), "--plot", str(png)])
    out = capsys.readouterr().out
    assert code == 0
    for stage in profile.STAGES:
        assert stage in out
    p = json.loads(j.read_text())
    assert p["output"] == [32, 24] and p["unet_step_s"]["count"] == 3 and p["repeat"] == 2
    st = p["stages_s"]
    # the stage boundaries cover the request: what falls between them ("other") is a small part
    assert sum(v for k, v in st.items() if k != "other") <= p["total_s"] and st["other"] < 0.5 * p["total_s"]
    for stage, graph in (("encoder", "encoder"), ("U-Net steps", "unet_step"), ("decoder", "decoder"),
                         ("LIIF queries", "liif")):
        assert 0 < p["graph_s"][graph] <= st[stage] * 1.02 + 1e-3, (stage, p["graph_s"][graph], st[stage])
    assert st["back-projection"] > 0 and st["image decode"] > 0 and st["image encode+write"] > 0
    assert p["peak_rss_bytes"] > 0 and p["liif_s_per_output_mpx"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_of_a_generation_and_engines_restored(runtime_exports):
    gen = runtime_exports["gen"]["engines"]
    p = profile.profile(str(gen), None, size=(16, 16), steps=2, sampler="dpm++2m", backend="cpu", repeat=1)
    assert p["stages_s"]["encoder"] == 0 and p["stages_s"]["back-projection"] == 0
    assert p["unet_step_s"]["count"] == 2 and p["graph_s"]["unet_step"] > 0


@pytest.mark.parametrize("argv, says", [
    (["--scale", "2"], "give an IMAGE"),                         # an SR model without an image
    (["IMG"], "give --scale or --size"),
    (["IMG", "--scale", "2", "--json", "/nonexistent/dir/p.json"], "does not exist"),
])
def test_profile_refusals(runtime_exports, photo, capsys, argv, says):
    sr = runtime_exports["sr"]["engines"]
    code = main(["profile", str(sr), *[str(photo) if a == "IMG" else a for a in argv], "--steps", "1", "--repeat", "1"])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1


def test_side_by_side_program_runs(runtime_exports, tmp_path):
    """The side-by-side benchmark (a program, not a timing test): every stage in every column."""
    from runtime.programs import bench

    e = runtime_exports["sr"]
    out = tmp_path / "side.json"
    assert bench.main(["--side-by-side", "--model", f"tiny={e['engines']}:{e['ckpt']}", "--lr", "8", "--scale", "2",
                       "--steps", "2", "--repeat", "1", "--threads", "1", "--out", str(out)]) == 0
    cols = json.loads(out.read_text())["models"]["tiny"]
    assert set(cols) == {"eager fp32", "eager bf16", "runtime cpu"}
    for t in cols.values():
        assert all(t[s] > 0 for s in ("encoder", "unet_step", "decoder", "liif"))
        assert t["sum"] == pytest.approx(t["encoder"] + 2 * t["unet_step"] + t["decoder"] + t["liif"], abs=2e-3)

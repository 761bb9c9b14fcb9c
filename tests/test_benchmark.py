import json

import numpy as np
import pytest
from PIL import Image

from ldmind_ref import benchmark, metrics


def test_psnr_y_known_value():
    a = np.full((20, 20, 3), 100, np.uint8)
    b = np.full((20, 20, 3), 103, np.uint8)
    dy = 3 * (65.481 + 128.553 + 24.966) / 255
    assert metrics.psnr_y(a, b, 2) == pytest.approx(20 * np.log10(255 / dy))
    b[0, :] = 0  # the shaved border does not count
    assert metrics.psnr_y(a, b, 2) == pytest.approx(20 * np.log10(255 / dy))
    assert metrics.psnr_y(a, a, 0) == float("inf")


def test_ssim():
    rng = np.random.default_rng(0)
    a = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    assert metrics.ssim_y(a, a, 0) == pytest.approx(1.0)
    noisy = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    assert 0 < metrics.ssim_y(a, noisy, 0) < 0.95
    assert metrics.ssim_y(a, noisy, 4) != metrics.ssim_y(a, noisy, 0)


def test_diversity():
    a = np.zeros((4, 4, 3), np.uint8)
    assert metrics.diversity([a, a]) == 0
    assert metrics.diversity([a, a + 10]) == pytest.approx(5.0)


def test_make_lr_crops_to_a_multiple():
    hr = np.zeros((37, 50, 3), np.uint8)
    hr_c, lr = benchmark.make_lr(hr, 4)
    assert hr_c.shape == (36, 48, 3) and lr.shape == (9, 12, 3)


def test_reference_and_runtime_benchmarks_agree(tmp_path, runtime_exports):
    """The same protocol through the reference checkpoint and through its exported engines."""
    from ldmind_ref import eval as ref_eval
    from runtime.programs import eval as rt_eval

    data = tmp_path / "data" / "SetA"
    data.mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(data / "a.png")
    common = ["--data", str(tmp_path / "data"), "--scales", "2", "4", "8", "--steps", "2"]
    ref_eval.main(["--model", f"ref={runtime_exports['sr']['ckpt']}", "--out", str(tmp_path / "r"), *common])
    rt_eval.main(["--model", f"rt={runtime_exports['sr']['engines']}", "--out", str(tmp_path / "o"), *common])
    r = json.loads((tmp_path / "r" / "results.json").read_text())["results"]["SetA"]["ref"][0]
    o = json.loads((tmp_path / "o" / "results.json").read_text())["results"]["SetA"]["rt"][0]
    for key in ("psnr", "ssim", "bicubic_psnr"):
        for s in ("2", "4", "8"):
            assert r[key][s] == pytest.approx(o[key][s], abs=0.01), (key, s)
    assert r["self_ssim"] == pytest.approx(o["self_ssim"], abs=1e-3)
    assert r["diversity"] > 0  # four samples at 8x differ
    assert (tmp_path / "r" / "figure.png").is_file()
    md = (tmp_path / "o" / "results.md").read_text()
    assert "| 8x |" in md and "SelfSSIM" in md


def test_refused_scales_are_left_out_and_counted(tmp_path, runtime_exports):
    """An image the sampler refuses at one scale is left out of that scale's mean, for every
    model, and the table says how many images ran; merge() joins runs of other scales."""
    import argparse

    from ldmind_ref.eval import ReferenceSampler

    class TooLarge(Exception):
        pass

    class Refusing(ReferenceSampler):
        def upscale_latents(self, lr, steps, eta, seed, num_samples, **kw):
            if lr.shape[0] > 12:
                raise TooLarge(f"{lr.shape[0]} rows is too many")
            return super().upscale_latents(lr, steps, eta, seed, num_samples, **kw)

    data = tmp_path / "data" / "SetB"
    data.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for name, side in (("big.png", 48), ("small.png", 24)):
        Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(data / name)
    ckpt = str(runtime_exports["sr"]["ckpt"])
    args = argparse.Namespace(model=[f"m={ckpt}"], data=str(tmp_path / "data"), scales=[2, 4], steps=1, eta=1.0,
                              seed=0, limit=0, figure_images=0, machine="test", out=str(tmp_path / "a"),
                              backproject=2)
    benchmark.run(args, Refusing, (TooLarge,))
    res = json.loads((tmp_path / "a" / "results.json").read_text())["results"]["SetB"]["m"]
    big = next(r for r in res if r["image"] == "big.png")
    assert big["psnr"]["2"] is None and "too many" in big["refused"]["2"]   # 24 rows at 2x
    assert big["psnr"]["4"] is not None                                      # 12 rows at 4x
    md = (tmp_path / "a" / "results.md").read_text()
    assert "| 2x (1 of 2 images) |" in md and "| 4x |" in md
    assert big["raw_psnr"]["4"] is not None and "m raw PSNR" in md and "2 back-projection iterations" in md
    args.scales, args.out = [3], str(tmp_path / "b")
    benchmark.run(args, Refusing, (TooLarge,))
    merged = benchmark.merge([str(tmp_path / "a" / "results.json"), str(tmp_path / "b" / "results.json")],
                             str(tmp_path / "c"))
    assert "| 3x" in merged and "| 4x |" in merged
    rows = json.loads((tmp_path / "c" / "results.json").read_text())["results"]["SetB"]["m"]
    assert len(rows) == 2 and set(rows[0]["psnr"]) == {"2", "3", "4"}

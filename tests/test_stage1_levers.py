"""Stage-1 options that raise the auto-encoder ceiling: the feature width of D_phi, the share
of native-size targets, colour augmentation, the partial warm start and the ceiling metric."""
import dataclasses
import json

import numpy as np
import torch

from ldmind_ref import checkpoint as ckpt, ladder, metrics
from ldmind_ref.config import ModelConfig, preset
from ldmind_ref.data import ImageFolder, autoencoder_batch, colour_augment, step_generator
from ldmind_ref.model import LDMind
from ldmind_ref.train import main, warm_start

R = dataclasses.replace


def test_feature_ch_sets_the_decoder_output_and_the_liif_input():
    cfg = preset("tiny")
    wide = R(cfg, autoencoder=R(cfg.autoencoder, feature_ch=12))
    m = LDMind(wide)
    z = torch.randn(1, cfg.autoencoder.z_channels, 5, 6)
    assert m.decoder(z).shape == (1, 12, 5, 6)
    assert m.liif.layers[0].in_features == 12 + 4
    # 0 keeps the official width, ch * ch_mult[0], and the old config dicts still load
    assert LDMind(cfg).decoder(z).shape[1] == cfg.autoencoder.ch * cfg.autoencoder.ch_mult[0]
    old = cfg.to_dict()
    del old["autoencoder"]["feature_ch"], old["train"]["gt_native"], old["train"]["colour_aug"]
    assert ModelConfig.from_dict(old) == cfg


def _target_sizes(cfg, data, n=40):
    sizes = []
    for k in range(n):
        b = autoencoder_batch(data, step_generator(0, "autoencoder", 0, k), cfg)
        # the cell of a target of side S is 2 / S
        sizes += [round(2 / float(c)) for c in b["cell"][:, 0, 0]]
    return sizes


def test_gt_native_share_of_targets_at_the_crop_size(train_dir):
    cfg = preset("tiny")
    data = ImageFolder(train_dir, cfg.train.crop)
    always = R(cfg, train=R(cfg.train, gt_native=1.0))
    assert set(_target_sizes(always, data)) == {cfg.train.crop}
    half = _target_sizes(R(cfg, train=R(cfg.train, gt_native=0.5)), data)
    share = np.mean(np.array(half) == cfg.train.crop)
    assert 0.3 < share < 0.75, share          # 80 draws of p = 0.5 (plus the uniform's own hits)
    # off: the draws of the old configs, unchanged
    assert np.mean(np.array(_target_sizes(cfg, data)) == cfg.train.crop) < 0.3


def test_colour_augment_permutes_channels_and_inverts():
    crop = np.zeros((4, 4, 3), np.uint8)
    crop[..., 0], crop[..., 1], crop[..., 2] = 10, 100, 200
    seen = set()
    for k in range(64):
        out = colour_augment(crop, torch.Generator().manual_seed(k))
        px = tuple(int(v) for v in out[0, 0])
        assert (out == out[0, 0]).all()
        assert sorted(px) in ([10, 100, 200], [55, 155, 245])   # a permutation, or of the inverted pixel
        seen.add(px)
    assert len(seen) == 12        # 6 orders x {as is, inverted}


def test_warm_start_copies_what_matches(tmp_path):
    cfg = preset("tiny")
    torch.manual_seed(1)
    src = LDMind(cfg)
    wide = R(cfg, autoencoder=R(cfg.autoencoder, feature_ch=12))
    torch.manual_seed(2)
    dst = LDMind(wide)
    n = warm_start(dst, src)
    s, d = src.state_dict(), dst.state_dict()
    same = [k for k in d if k in s and s[k].shape == d[k].shape]
    assert n == len(same) < len(d)
    assert all(torch.equal(d[k], s[k]) for k in same)
    assert torch.equal(dst.encoder.conv_in.weight, src.encoder.conv_in.weight)
    # the widened first layer of f_theta keeps its own random weights; the next one is copied
    assert "liif.layers.0.weight" not in same and "liif.layers.2.weight" in same


def test_ceiling_is_psnr_of_reconstruction_against_bicubic():
    """An auto-encoder whose reconstruction is the image itself has an infinite ceiling, one
    that returns bicubic-from-LR has margin 0: checked with a stand-in model."""
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)

    class Echo:
        def __init__(self, f):
            self.f = f

    orig = ladder.reconstruct
    try:
        ladder.reconstruct = lambda m, x: m.f(x)
        bic = lambda x: ladder.bicubic(ladder.bicubic(x, 12, 8), 48, 32)  # noqa: E731
        c = ladder.ceiling(Echo(bic), [hr], 4)
        assert c["margin"] == 0 and c["ceiling"] == c["bicubic"]
        assert abs(c["bicubic"] - metrics.psnr_y(bic(hr), hr, 4)) < 1e-12
    finally:
        ladder.reconstruct = orig
    assert ladder.centre_crop(hr, 20, 8).shape == (16, 16, 3)


def test_ceiling_logged_at_validation(tmp_path, train_dir):
    main(["autoencoder", "--config", "tiny", "--data", str(train_dir), "--out", str(tmp_path), "--steps", "2",
          "--quiet", "--ceiling", "64", "--bf16"])
    recs = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    val = [r for r in recs if "val_ceiling" in r]
    assert val and np.isfinite(val[-1]["val_ceiling"]) and np.isfinite(val[-1]["val_bicubic"])
    assert abs(val[-1]["val_margin"] - (val[-1]["val_ceiling"] - val[-1]["val_bicubic"])) < 2e-3
    assert val[-1]["val_worst_margin"] <= val[-1]["val_margin"] + 1e-9
    assert ckpt.load_model(tmp_path / "model.safetensors").cfg == preset("tiny")


def test_stage1_milestone_without_unet_continues_by_warm_start(tmp_path, train_dir):
    """A committed stage-1 milestone stores E, D_phi and f_theta in float16 without the (still
    random) U-Net; ``--warm`` continues stage 1 from it with every stored tensor."""
    cfg = preset("tiny")
    torch.manual_seed(3)
    m = LDMind(cfg)
    path = tmp_path / "ae.safetensors"
    ckpt.save_shipping(path, m, omit=["unet"], stage="autoencoder", step="7")
    assert ckpt.omitted_parts(path) == ["unet"]
    assert not any(k.startswith("unet.") for k in ckpt.load_tensors(path))
    back = ckpt.load_model(path)
    assert torch.equal(back.encoder.conv_in.weight, m.encoder.conv_in.weight.half().float())
    main(["autoencoder", "--config", "tiny", "--warm", str(path), "--data", str(train_dir),
          "--out", str(tmp_path / "next"), "--steps", "1", "--quiet"])
    assert ckpt.load_model(tmp_path / "next" / "model.safetensors").cfg == cfg


def _milestone_ceilings(name: str, config: str, before: str | None) -> tuple[dict, dict | None]:
    """The 4x ceilings (``ladder.ceiling``) of the committed stage-1 milestone
    ``ldmind_ref/weights/NAME.safetensors`` and of the weights ``before`` it (None: none), on
    128-pixel centre crops of the repository's photos, after checking that the milestone is
    preset ``config`` without its untrained U-Net and within the weights budget."""
    from conftest import ROOT, shipped_photos
    from ldmind_ref.benchmark import load_hr

    path = ROOT / f"ldmind_ref/weights/{name}.safetensors"
    assert ckpt.read_config(path) == preset(config) and ckpt.omitted_parts(path) == ["unet"]
    assert path.stat().st_size < 30e6
    torch.set_num_threads(min(2, torch.get_num_threads()))
    hrs = [ladder.centre_crop(load_hr(p), 128, 32) for p in shipped_photos()]
    return (ladder.ceiling(ckpt.load_model(path), hrs),
            None if before is None else
            ladder.ceiling(ckpt.load_model(ROOT / f"ldmind_ref/weights/{before}.safetensors"), hrs))


def test_committed_small2_milestone_raises_the_ceiling():
    """The committed stage-1 milestone is preset small2 without its untrained U-Net, and its
    4x ceiling on the repository's photos (128-pixel centre crops) is above bicubic on every
    one and above the former small's (measured: +0.45 dB mean, +0.35 worst at 10,000 steps; the
    small shipped until 2026-12-07, in git history: +0.20, -0.37)."""
    new, _ = _milestone_ceilings("small2-ae", "small2", None)
    assert new["worst_margin"] > 0.1 and new["margin"] > 0.20 + 0.1, new


def test_committed_small3_milestone_raises_the_ceiling_again():
    """small3 (small2 grown, ldmind_ref/grow.py, then four sittings) is committed without its
    untrained U-Net, and its 4x ceiling on the repository's photos is far above small2's
    (measured at 24,435 steps: +2.50 dB mean, +1.74 worst; at 20,435: +2.20, +1.58; at 18,000:
    +1.79, +1.34; at 14,000: +0.87, +0.67; small2 +0.45, +0.35)."""
    new, old = _milestone_ceilings("small3-ae", "small3", "small2-ae")
    assert new["worst_margin"] > 1.2 and new["margin"] > old["margin"] + 1.5, (new, old)


def test_committed_fifth_sitting_raises_the_former_ceiling():
    """The fifth stage-1 sitting (small3-lite: E, D_phi and f_theta of the small shipped until
    2026-12-08 trained 4,000 more steps; the shipped small's E since) is committed without its
    U-Net, and its 4x ceiling on the repository's photos is above that former file's (measured:
    +2.48 dB mean, +1.78 worst; the former small, in git history: +2.35, +1.68)."""
    new, _ = _milestone_ceilings("small3-lite-ae", "small3-lite", None)
    assert new["worst_margin"] > 1.5 and new["margin"] > 2.35 + 0.06, new

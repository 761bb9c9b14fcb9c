import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ldmind_ref import checkpoint as ckpt
from ldmind_ref.config import preset
from ldmind_ref.core import contract
from ldmind_ref.data import ImageFolder, step_generator
from ldmind_ref.model import LDMind, random_model
from ldmind_ref.train import Objective, batch_for, main, make_optimizer, trainable

from conftest import ROOT


@pytest.mark.parametrize("stage", ["autoencoder", "decoder", "liif", "ldm", "align", "sampled"])
def test_overfit_one_fixed_batch(stage, train_dir):
    cfg = preset("tiny")
    torch.manual_seed(0)
    model = LDMind(cfg) if stage in ckpt.AUTOENCODER_STAGES else random_model(cfg, seed=0)
    data = ImageFolder(train_dir, cfg.train.crop)
    batch = batch_for(data, cfg, stage, step_generator(0, stage, 0, 0))
    obj = Objective(model, stage)
    opt = make_optimizer(cfg, stage, trainable(model, stage))
    losses = []
    for _ in range(25):
        loss = obj(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.9 * losses[0], losses
    assert losses[-1] < losses[len(losses) // 2] < losses[0], losses


def _train(stage, out, steps, data, *extra):
    main([stage, "--data", str(data), "--out", str(out), "--steps", str(steps), "--quiet", *extra])


@pytest.fixture(scope="module")
def stage_runs(tmp_path_factory, train_dir):
    """The three stages chained, 4 steps each, as the CLI runs them."""
    base = tmp_path_factory.mktemp("runs")
    _train("autoencoder", base / "ae", 4, train_dir, "--config", "tiny")
    _train("ldm", base / "ldm", 4, train_dir, "--init", str(base / "ae" / "model.safetensors"))
    _train("align", base / "align", 4, train_dir, "--init", str(base / "ldm" / "model.safetensors"))
    return base


def test_stage_outputs(stage_runs):
    for stage in ("ae", "ldm", "align"):
        log = [json.loads(line) for line in (stage_runs / stage / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
        assert any("val_loss" in r for r in log)
        m = ckpt.load_model(stage_runs / stage / "model.safetensors")
        assert m.cfg == preset("tiny")
    ae = ckpt.load_model(stage_runs / "ae" / "model.safetensors")
    ldm = ckpt.load_model(stage_runs / "ldm" / "model.safetensors")
    align = ckpt.load_model(stage_runs / "align" / "model.safetensors")
    assert float(ae.scale_factor) == 1.0 and float(ldm.scale_factor) != 1.0  # scale_by_std
    # stage 2 trains only the U-Net; stage 3 keeps E, D_phi, f_theta frozen too
    for frozen in ("encoder", "decoder", "liif"):
        for a, b in zip(getattr(ae, frozen).parameters(), getattr(align, frozen).parameters()):
            assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(ldm.unet.parameters(), align.unet.parameters()))


@pytest.mark.parametrize("stage", ["autoencoder", "liif", "ldm", "align", "sampled"])
def test_resume_is_exact(stage, stage_runs, train_dir, tmp_path):
    init = {"autoencoder": ["--config", "tiny"],
            "liif": ["--config", "tiny", "--warm", str(stage_runs / "ae" / "model.safetensors")],
            "ldm": ["--init", str(stage_runs / "ae" / "model.safetensors")],
            "align": ["--init", str(stage_runs / "ldm" / "model.safetensors")],
            "sampled": ["--init", str(stage_runs / "ldm" / "model.safetensors")]}[stage]
    _train(stage, tmp_path / "straight", 4, train_dir, *init)
    _train(stage, tmp_path / "split", 2, train_dir, *init)
    _train(stage, tmp_path / "split", 4, train_dir, *init, "--resume")
    a = load_file(str(tmp_path / "straight" / "state.safetensors"))
    b = load_file(str(tmp_path / "split" / "state.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("opt.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert ckpt.read_metadata(tmp_path / "split" / "state.safetensors")["step"] == "4"


@pytest.mark.parametrize("stage, moved", [("liif", ("liif",)), ("decoder", ("decoder", "liif"))])
def test_partial_stage_one_trains_its_parts_alone(stage, moved, stage_runs, train_dir, tmp_path):
    # the frozen parts keep the warm start's weights to the bit, the trained ones move; the file
    # is a stage-1 checkpoint (the ladder gives it the ceiling rungs only)
    ae = stage_runs / "ae" / "model.safetensors"
    _train(stage, tmp_path / "part", 3, train_dir, "--config", "tiny", "--warm", str(ae))
    before, after = ckpt.load_model(ae), ckpt.load_model(tmp_path / "part" / "model.safetensors")
    for part in ("encoder", "decoder", "liif", "unet"):
        same = all(torch.equal(a, b) for a, b in zip(getattr(before, part).parameters(),
                                                      getattr(after, part).parameters()))
        assert same == (part not in moved), part
    assert ckpt.read_metadata(tmp_path / "part" / "model.safetensors")["stage"] in ckpt.AUTOENCODER_STAGES


def test_partial_stage_one_validates_as_stage_one(stage_runs, train_dir, tmp_path):
    # the same weights give the same validation loss under every stage-1 objective: one set of draws
    from ldmind_ref.train import Trainer, parse_args
    ae = str(stage_runs / "ae" / "model.safetensors")
    vals = [Trainer(parse_args([stage, "--init", ae, "--data", str(train_dir), "--out", str(tmp_path / stage),
                                "--quiet"])).validate() for stage in ckpt.AUTOENCODER_STAGES]
    assert vals == pytest.approx([vals[0]] * len(vals), rel=1e-5), vals


def test_small3_lite_differs_from_small3_in_f_theta_alone():
    import dataclasses
    a, b = preset("small3"), preset("small3-lite")
    assert b.liif.hidden == preset("small").liif.hidden == (128, 128, 128)
    assert dataclasses.replace(b, name="small3", liif=a.liif) == a


def test_stages_without_a_trained_unet_are_the_checkpoints_ladder_treats_as_stage_one():
    from ldmind_ref.train import STAGES, TRAINED
    assert set(TRAINED) == set(STAGES)
    # ``sampled`` trains no U-Net but starts from a trained one (it samples with it)
    assert set(ckpt.AUTOENCODER_STAGES) == {s for s, parts in TRAINED.items() if "unet" not in parts} - {"sampled"}


def test_sampled_stage_trains_the_decoder_on_samples(stage_runs, train_dir, tmp_path):
    # D_phi and f_theta move, E and the U-Net keep stage 2's weights to the bit; its validation
    # logs the ceiling and the sample's margins over bicubic; the file is a complete model
    ldm = stage_runs / "ldm" / "model.safetensors"
    _train("sampled", tmp_path / "s", 3, train_dir, "--init", str(ldm), "--ceiling", "32")
    before, after = ckpt.load_model(ldm), ckpt.load_model(tmp_path / "s" / "model.safetensors")
    for part in ("encoder", "decoder", "liif", "unet"):
        same = all(torch.equal(a, b) for a, b in zip(getattr(before, part).parameters(),
                                                      getattr(after, part).parameters()))
        assert same == (part in ("encoder", "unet")), part
    assert float(after.scale_factor) == float(before.scale_factor)
    val = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines() if "val_loss" in line]
    assert {"val_margin", "val_raw_margin", "val_defaults_margin"} <= set(val[-1])
    assert ckpt.read_metadata(tmp_path / "s" / "model.safetensors")["stage"] == "sampled"


def test_sampled_batch_draws_every_scale_and_the_sampler_noise(train_dir):
    from ldmind_ref.data import SAMPLED_SCALES, sampled_batch
    cfg = preset("tiny")
    data = ImageFolder(train_dir, cfg.train.crop)
    sides = set()
    for k in range(40):
        b = sampled_batch(data, step_generator(0, "sampled", 0, k), cfg)
        side = b["lr"].shape[-1]
        sides.add(side)
        assert b["hr"].shape[-1] == cfg.train.crop and b["coord"].shape[1] == cfg.train.sample_q
        assert b["noise"].shape == (contract.DEFAULT_STEPS + 1, cfg.train.batch, cfg.autoencoder.z_channels, side, side)
    # tiny's 32 px crop divides into whole, U-Net-aligned latents at 2x, 4x and 8x
    assert sides == {cfg.train.crop // s for s in SAMPLED_SCALES if s in (2, 4, 8)}


@pytest.mark.parametrize("stage", ["decoder", "liif"])
def test_partial_stage_one_needs_a_trained_autoencoder(stage, train_dir, tmp_path):
    with pytest.raises(SystemExit, match=f"stage {stage} trains on a frozen encoder: give --init or --warm"):
        _train(stage, tmp_path / "x", 1, train_dir, "--config", "tiny")


def test_later_stage_needs_init(train_dir, tmp_path):
    with pytest.raises(SystemExit, match="needs --init"):
        _train("ldm", tmp_path / "x", 1, train_dir, "--config", "tiny")


def test_ddp_two_gloo_processes(train_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ldmind_ref.train", "autoencoder", "--config", "tiny", "--data", str(train_dir),
           "--out", str(tmp_path / "ddp"), "--steps", "3", "--quiet"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    m = ckpt.load_model(tmp_path / "ddp" / "model.safetensors")
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]  # rank 0 logs alone
    assert all(torch.isfinite(p).all() for p in m.parameters())


def test_ema_decay_warms_up():
    # latent-diffusion's LitEma: min(decay, (1 + n) / (10 + n)) at the n-th update, by hand
    from ldmind_ref.train import ema_decay
    assert ema_decay(0.999, 1) == 2 / 11 and ema_decay(0.999, 90) == 91 / 100
    assert ema_decay(0.999, 8991) == 0.999 and ema_decay(0.9999, 10 ** 6) == 0.9999
    assert ema_decay(0.9, 5) == 6 / 15 and ema_decay(0.9, 80) == 0.9


def test_trainer_ema_uses_the_warm_up(train_dir, tmp_path):
    # after the first update the EMA is init + (1 - 2/11) (live - init), not the fixed 0.9 of tiny
    from ldmind_ref.train import Trainer, parse_args
    init = tmp_path / "init.safetensors"
    ckpt.save_model(init, random_model(preset("tiny"), 0))
    t = Trainer(parse_args(["ldm", "--init", str(init), "--data", str(train_dir), "--out", str(tmp_path / "o"),
                            "--quiet"]))
    before = {k: v.clone() for k, v in t.model.unet.state_dict().items() if v.is_floating_point()}
    t.run(1)
    live = t.model.unet.state_dict()
    w = 1 - 2 / 11
    assert max((t.ema[k] - (v + w * (live[k] - v))).abs().max().item() for k, v in before.items()) < 1e-6
    assert any((live[k] - v).abs().max() > 1e-4 for k, v in before.items())     # the step moved the weights


def test_learning_rate_schedule():
    from ldmind_ref.train import learning_rate
    assert learning_rate(2e-4, 0, 100, False) == learning_rate(2e-4, 99, 100, False) == 2e-4
    assert learning_rate(2e-4, 0, 100, True) == 2e-4
    assert learning_rate(2e-4, 50, 100, True) == pytest.approx(1e-4)
    assert learning_rate(2e-4, 99, 100, True) == pytest.approx(2e-6)
    # warm-up: step k (0-based) of 4 gets (k + 1) / 4 of the rate, then the schedule as before
    assert [learning_rate(2e-4, k, 100, False, 4) for k in range(5)] == pytest.approx([5e-5, 1e-4, 1.5e-4, 2e-4, 2e-4])
    assert learning_rate(2e-4, 1, 100, True, 4) == pytest.approx(2e-4 * 0.99 * 0.5)


def test_lr_override_reaches_the_optimiser(train_dir, tmp_path):
    from ldmind_ref.train import Trainer, parse_args
    t = Trainer(parse_args(["autoencoder", "--config", "tiny", "--data", str(train_dir), "--out", str(tmp_path),
                            "--lr", "0.5", "--decay", "--quiet"]))
    t.run(2)
    assert t.opt.param_groups[0]["lr"] == pytest.approx(0.25)   # step index 1 of 2
    with pytest.raises(SystemExit, match="--lr must be positive"):
        main(["autoencoder", "--config", "tiny", "--data", str(train_dir), "--out", str(tmp_path), "--lr", "0"])

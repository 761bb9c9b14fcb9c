"""``train all`` (every stage in one budget), the training pack, the shipping checkpoints, the
prepared GPU script's dry run and the comparison command, on the tiny presets (issue 14)."""
import json
import zipfile

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ldmind_ref import checkpoint as ckpt, gpu_run, train
from ldmind_ref.config import generation_variant, preset
from ldmind_ref.data import ImageFolder
from ldmind_ref.errors import cli
from ldmind_ref.model import LDMind

FOLDERS = ("ae", "ldm", "align", "gen")


def _all(out, data, *extra):
    return train.main(["all", "--config", "tiny", "--data", str(data), "--out", str(out), "--quiet",
                       "--threads", "1", *extra])


@pytest.fixture(scope="module")
def straight(tmp_path_factory, train_dir):
    out = tmp_path_factory.mktemp("all") / "straight"
    assert _all(out, train_dir, "--steps", "3") == 0
    return out


def test_all_runs_every_stage_and_ships_fp16(straight):
    s = json.loads((straight / "summary.json").read_text())
    assert list(s["stages"]) == ["autoencoder", "ldm", "align", "gen"]
    for name, r in s["stages"].items():
        assert r["done"] and r["steps_done"] == 3 and r["images_per_s"] > 0, (name, r)
    assert s["stages"]["autoencoder"]["val_psnr_y"] > 0
    header, *rows = (straight / "log.csv").read_text().splitlines()
    assert header == "stage,step,loss,val_loss,time" and len(rows) >= 4 * 3
    # SR after alignment, float16 storage, loads as float32 equal to the run's weights within fp16
    full = ckpt.load_model(straight / "align" / "model.safetensors")
    sr = ckpt.load_model(straight / "sr.safetensors")
    raw = load_file(str(straight / "sr.safetensors"))
    assert raw["unet.conv_in.weight"].dtype == torch.float16 and raw["scale_factor"].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in sr.parameters())
    for (k, a), b in zip(full.state_dict().items(), sr.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), k
    # generation: the unconditional variant on the stage-1 auto-encoder, without its encoder
    gen = ckpt.load_model(straight / "gen.safetensors")
    ae = ckpt.load_model(straight / "ae" / "model.safetensors")
    assert gen.cfg == generation_variant(preset("tiny")) and not gen.cfg.unet.conditional
    assert not any(k.startswith("encoder.") for k in load_file(str(straight / "gen.safetensors")))
    for a, b in zip(ae.decoder.parameters(), ckpt.load_model(straight / "gen" / "model.safetensors").decoder.parameters()):
        assert torch.equal(a, b)
    assert gen.scale_factor != 1.0   # its own scale_by_std
    with pytest.raises(ckpt.CheckpointError, match="without encoder"):
        train.main(["ldm", "--init", str(straight / "gen.safetensors"), "--data", "x", "--out", "x"])


def test_all_resume_after_kill_is_exact(straight, train_dir, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    save = train.Trainer.save

    def save_then_die(self):
        save(self)
        if self.stage == "ldm" and self.step == 2:      # just after stage 2's first checkpoint
            raise KeyboardInterrupt

    monkeypatch.setattr(train.Trainer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _all(out, train_dir, "--steps", "3")
    monkeypatch.setattr(train.Trainer, "save", save)
    with pytest.raises(SystemExit, match="holds a run already"):
        _all(out, train_dir, "--steps", "3")
    with pytest.raises(SystemExit, match="fixed_steps"):
        _all(out, train_dir, "--steps", "4", "--resume")
    assert _all(out, train_dir, "--steps", "3", "--resume") == 0
    for folder in FOLDERS:
        a = load_file(str(straight / folder / "state.safetensors"))
        b = load_file(str(out / folder / "state.safetensors"))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), folder
    log = [json.loads(x) for x in (out / "ldm" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert len(json.loads((out / "summary.json").read_text())["invocations"]) == 2


def test_pack_reads_as_the_folder(train_dir, tmp_path, capsys):
    from ldmind_ref import pack
    z = tmp_path / "p" / "train.zip"
    assert pack.main(["--data", str(train_dir), "--out", str(z), "--max-side", "96", "--min-side", "40"]) == 0
    folder, packed = ImageFolder(train_dir, 32), ImageFolder(z, 32)
    assert [p.stem for p in folder.train] == [n[:-4] for n in packed.train]
    assert [p.stem for p in folder.val] == [n[:-4] for n in packed.val]
    for n in packed.train:
        assert max(packed.load(n).shape[:2]) <= 96 and min(packed.load(n).shape[:2]) >= 32
    with zipfile.ZipFile(z) as f:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in f.infolist())
    # as a program: one line, exit status 2, nothing written (errors.cli, in process: no interpreter start)
    rc = cli("python -m ldmind_ref.pack", lambda: pack.main(["--data", str(train_dir), "--out", str(tmp_path / "big.zip"),
                                                             "--max-side", "64", "--min-side", "32", "--max-mb", "0.001"]))
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "over --max-mb" in err
    assert not (tmp_path / "big.zip").exists()


def test_medium_fits_the_weights_budget():
    """SR + generation shipping checkpoints <= 30 MB together, each <= 16 MiB (what a file
    coming back from the GPU machine may hold)."""
    sizes = []
    for cfg in (preset("medium"), generation_variant(preset("medium"))):
        with torch.device("meta"):
            tensors, _ = ckpt.shipping_tensors(LDMind(cfg).state_dict(), cfg)
        sizes.append(sum(t.numel() * t.element_size() for t in tensors.values()))
    assert all(s <= gpu_run.MAX_RETURNED_BYTES for s in sizes) and sum(sizes) <= 30e6, sizes


def test_gpu_run_dry_run(train_dir, tmp_path):
    """The prepared GPU command on the CPU: tiny preset, 9 s of training, tiny timing."""
    out = tmp_path / "OUT"
    assert gpu_run.main(["--out", str(out), "--run", str(tmp_path / "run"), "--device", "cpu", "--config", "tiny",
                         "--data", str(train_dir), "--minutes", "0.15", "--timing", "tiny", "--threads", "1",
                         "--workers", "1", "--repeat", "1", "--shares", "4,3,1,2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*gpu_run.RETURNED, "timing.json"])
    s = json.loads((out / "summary.json").read_text())
    assert set(s["probe"]) == set(s["stages"]) == {"autoencoder", "ldm", "align", "gen"}
    assert all(r["done"] and r["steps_done"] >= 1 for r in s["stages"].values())
    assert s["shares"] == {"autoencoder": 4, "ldm": 3, "align": 1, "gen": 2}
    # within its share a stage does at most its planned steps; one begun after the end does
    # one step (the probe alone may spend 12 s on a loaded CPU: the time is not asserted)
    for r in s["stages"].values():
        assert r["steps_done"] <= r["steps"] and (r["budget_s"] > 0 or r["steps_done"] == 1), r
    t = json.loads((out / "timing.json").read_text())
    assert not t["errors"] and len(t["rows"]) == 2 * 3 and len(t["end_to_end"]) == 3
    assert all(r["fps"] > 0 and r["total_s"] >= r["unet_step_s"] * r["steps"] for r in t["rows"])
    table = gpu_run.timing_table(t).splitlines()
    assert len(table) == 4 + 3 and table[-1].startswith("| tiny | 16² → 48² | 3× |")


def test_compare_on_tiny(straight, train_dir, tmp_path):
    from ldmind_ref import compare
    sets = tmp_path / "sets" / "SetA"
    sets.mkdir(parents=True)
    with Image.open(sorted(train_dir.glob("*.jpg"))[0]) as im:
        im.convert("RGB").crop((0, 0, 48, 48)).save(sets / "a.png")
    out = tmp_path / "cmp"
    assert compare.main(["--model", f"old={straight / 'ldm.safetensors'}", "--model", f"new={straight / 'sr.safetensors'}",
                         "--gen", str(straight / "gen.safetensors"), "--gen-data", str(train_dir), "--gen-samples", "2",
                         "--gen-size", "16",
                         "--data", str(sets.parent), "--out", str(out), "--scales", "4", "8", "--steps", "2",
                         "--figure-images", "0"]) == 0
    v = json.loads((out / "verdict.json").read_text())
    assert {c["check"].split(" ", 1)[1] for c in v["checks"]} == {
        "raw above bicubic at 4x, 8x", "at the defaults >= bicubic + 1.0 dB at 4x", "above old at the defaults at every scale"}
    assert isinstance(v["ship"], bool) and v["generation"]["diversity"] >= 0 and v["generation"]["fd_stats"] >= 0
    assert (out / "generation.png").exists() and "Ship new in place of old" in (out / "verdict.md").read_text()
    with pytest.raises(SystemExit, match="exactly two"):
        compare.main(["--model", f"a={straight / 'sr.safetensors'}", "--data", str(sets.parent), "--out", str(out)])


@pytest.mark.parametrize("stage", ["autoencoder", "ldm", "align"])
def test_training_step_keeps_to_the_model_device(stage, train_dir):
    """A training step and the timed stages on a device other than the CPU (meta tensors:
    no data, but a tensor left on the CPU fails as it would on CUDA)."""
    from ldmind_ref import speed
    from ldmind_ref.data import step_generator
    cfg = preset("tiny")
    with torch.device("meta"):
        model = LDMind(cfg)
    obj = train.Objective(model, stage).to("meta")
    batch = train.to_device(train.batch_for(ImageFolder(train_dir, 32), cfg, stage, step_generator(0, stage, 0, 0)), "meta")
    loss = obj(batch)
    loss.backward()
    assert loss.device.type == "meta"
    if stage == "ldm":
        assert speed.request_times(model, 8, [2, 3], 2, repeat=1)[1]["out"] == 24
        assert model.render(torch.zeros(1, 3, 8, 8, device="meta"), 20, 20).shape == (1, 3, 20, 20)


def test_bf16_is_accepted_on_the_cpu(train_dir, tmp_path):
    train.main(["autoencoder", "--config", "tiny", "--data", str(train_dir), "--out", str(tmp_path / "a"),
                "--steps", "2", "--bf16", "--quiet", "--threads", "1"])
    log = [json.loads(x) for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2] and all(r["val_loss"] > 0 for r in log if "val_loss" in r)


def test_a_failing_stage_spares_the_others(train_dir, tmp_path, monkeypatch):
    """Alignment fails: generation (which starts from stage 1, not from alignment) still
    trains and ships; the run ends with one message naming the failure; --resume retries it."""
    loss = train.Objective.diffusion_loss

    def broken(self, b):
        if self.stage == "align":
            raise RuntimeError("planted")
        return loss(self, b)

    monkeypatch.setattr(train.Objective, "diffusion_loss", broken)
    out = tmp_path / "f"
    with pytest.raises(SystemExit, match="stages failed: align: RuntimeError"):
        _all(out, train_dir, "--steps", "1")
    s = json.loads((out / "summary.json").read_text())["stages"]
    assert s["gen"]["done"] and not s["align"].get("done") and "planted" in s["align"]["error"]
    assert (out / "gen.safetensors").exists() and not (out / "sr.safetensors").exists()
    monkeypatch.setattr(train.Objective, "diffusion_loss", loss)
    assert _all(out, train_dir, "--steps", "1", "--resume") == 0 and (out / "sr.safetensors").exists()


@pytest.mark.parametrize("shm", [1e12, 1.0])
def test_loading_processes_draw_the_same_batches(shm, train_dir, tmp_path, monkeypatch):
    """Two loading processes (or none, when shared memory is too small for their batches)
    train exactly as one process does."""
    monkeypatch.setattr(train, "shm_free", lambda: shm)
    for workers in ("0", "2"):
        train.main(["autoencoder", "--config", "tiny", "--data", str(train_dir), "--out", str(tmp_path / workers),
                    "--steps", "3", "--workers", workers, "--quiet", "--threads", "1"])
    a, b = (load_file(str(tmp_path / w / "state.safetensors")) for w in ("0", "2"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_tf32_settings_are_never_fatal(monkeypatch, capsys):
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    train.set_tf32(matmul=False, cudnn=True)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, True)
    train.set_tf32(*before)

    class Refusing:
        def __setattr__(self, name, value):
            raise RuntimeError("use fp32_precision")
    monkeypatch.setattr(torch.backends.cuda, "matmul", Refusing())
    train.set_tf32(matmul=True, cudnn=True)
    assert "TF32 settings not applied (use fp32_precision)" in capsys.readouterr().err

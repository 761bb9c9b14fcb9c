"""Function-preserving growth (ldmind_ref/grow.py): the grown model computes what the
source computes, and it then trains (its new weights receive gradients)."""
import dataclasses

import pytest
import torch

from ldmind_ref.config import preset
from ldmind_ref.grow import grow
from ldmind_ref.model import LDMind


def _pair(hidden=(256, 256, 256, 256), blocks=2):
    torch.manual_seed(0)
    src = LDMind(preset("small2"))
    for p in src.parameters():          # every weight non-zero, as after training
        p.data += 0.02 * torch.randn_like(p)
    cfg = preset("small2")
    cfg = dataclasses.replace(cfg, autoencoder=dataclasses.replace(cfg.autoencoder, num_res_blocks=blocks),
                              liif=dataclasses.replace(cfg.liif, hidden=hidden))
    torch.manual_seed(1)
    new = LDMind(cfg)
    grow(new, src)
    return src, new


def _reconstruct(m, x):
    from ldmind_ref import liif
    z = m.encode(x)
    return liif.render(m.liif, m.decode(z), 40, 36, 4096)


@pytest.mark.parametrize("hidden,blocks", [((256, 256, 256, 256), 2), ((128, 128, 128), 3), ((160, 200, 128), 1)])
def test_grown_model_computes_the_same_image(hidden, blocks):
    src, new = _pair(hidden, blocks)
    x = torch.rand(1, 3, 40, 36) * 2 - 1
    with torch.no_grad():
        a, b = _reconstruct(src, x), _reconstruct(new, x)
    assert new.cfg.autoencoder.num_res_blocks == blocks
    assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in src.parameters()) or blocks == 1
    torch.testing.assert_close(b, a, rtol=0, atol=2e-5)


def test_a_grown_model_learns_with_every_new_weight():
    """Zero outgoing weights still receive gradients, and after one step every new unit
    gets one too (no dead copy of the old model)."""
    src, new = _pair()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    opt = torch.optim.SGD(new.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        loss = (_reconstruct(new, x) - 0.3).abs().mean()
        loss.backward()
        opt.step()
    last = new.liif.layers[-1].weight
    assert last[:, 128:].abs().sum() > 0            # new units' outgoing weights moved
    first = [m for m in new.liif.layers if isinstance(m, torch.nn.Linear)][1]
    assert first.weight.grad[128:].abs().sum() > 0  # and new units now receive gradients
    assert new.decoder.up[2].conv2.weight.abs().sum() > 0


def test_growth_that_would_change_the_function_is_refused():
    src = LDMind(preset("small2"))
    narrower = preset("small")            # 32 feature channels against small2's 64
    with pytest.raises(ValueError, match="feature_channels"):
        grow(LDMind(narrower), src)
    cfg = preset("small2")
    with pytest.raises(ValueError, match="narrower"):
        grow(LDMind(dataclasses.replace(cfg, liif=dataclasses.replace(cfg.liif, hidden=(64, 128, 128)))), src)


def test_train_grow_continues_a_milestone_as_the_larger_preset(tmp_path, train_dir):
    """``train autoencoder --config small3 --grow small2-milestone``: the run starts from the
    grown model (its first checkpoint is small3); --warm with --grow is refused in one line."""
    from conftest import ROOT
    from ldmind_ref import checkpoint as ckpt
    from ldmind_ref.train import main

    milestone = str(ROOT / "ldmind_ref/weights/small2-ae.safetensors")
    main(["autoencoder", "--config", "small3", "--grow", milestone, "--data", str(train_dir),
          "--out", str(tmp_path / "run"), "--steps", "1", "--lr", "1e-12", "--quiet"])
    grown = ckpt.load_model(tmp_path / "run" / "model.safetensors")
    assert grown.cfg == preset("small3")
    src = ckpt.load_model(milestone)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():      # one step at a negligible rate: still the milestone's image
        torch.testing.assert_close(_reconstruct(grown, x), _reconstruct(src, x), rtol=0, atol=1e-3)
    with pytest.raises(SystemExit, match="--warm or --grow"):
        main(["autoencoder", "--config", "small3", "--grow", milestone, "--warm", milestone,
              "--data", str(train_dir), "--out", str(tmp_path / "x")])

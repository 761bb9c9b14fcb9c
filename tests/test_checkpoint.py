import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ldmind_ref import checkpoint as ckpt
from ldmind_ref.config import preset
from ldmind_ref.model import random_model


def _outputs(m):
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(2, 3, 8, 10, generator=g) * 2 - 1
    z = torch.randn(2, 3, 8, 10, generator=g)
    t = torch.tensor([3, 900])
    one = torch.ones(1)
    with torch.no_grad():
        return (m.encode_lr(lr), m.decode(z), m.render(z, 17, 23),
                m.unet_step(z, m.encode_lr(lr), t, one * 0.5, one * 0.6, one * 0.1, z)[0])


def test_round_trip_identical_outputs(tmp_path):
    m = random_model(preset("tiny"), seed=7)
    path = tmp_path / "m.safetensors"
    ckpt.save_model(path, m, stage="test")
    assert ckpt.read_metadata(path)["stage"] == "test"
    loaded = ckpt.load_model(path)
    assert loaded.cfg == m.cfg
    assert float(loaded.scale_factor) == 0.75
    for a, b in zip(_outputs(m), _outputs(loaded)):
        assert torch.equal(a, b)


def test_never_unpickles_and_checks_every_key(tmp_path):
    m = random_model(preset("tiny"), seed=7)
    path = tmp_path / "m.safetensors"
    ckpt.save_model(path, m)
    meta = ckpt.read_metadata(path)
    state = load_file(str(path))
    # a wrong shape
    bad = dict(state)
    bad["liif.layers.0.weight"] = torch.zeros(3, 3)
    save_file(bad, str(tmp_path / "shape.safetensors"), metadata=meta)
    with pytest.raises(ckpt.CheckpointError, match=r"shape mismatch liif\.layers\.0\.weight"):
        ckpt.load_model(tmp_path / "shape.safetensors")
    # a missing and an extra key
    bad = dict(state)
    del bad["unet.conv_in.weight"]
    bad["unet.extra"] = torch.zeros(1)
    save_file(bad, str(tmp_path / "keys.safetensors"), metadata=meta)
    with pytest.raises(ckpt.CheckpointError, match=r"missing \['unet\.conv_in\.weight'\].*unexpected \['unet\.extra'\]"):
        ckpt.load_model(tmp_path / "keys.safetensors")
    # an unknown config key
    cfg = json.loads(meta["config"])
    cfg["liif"]["unfold"] = True
    save_file(state, str(tmp_path / "cfg.safetensors"), metadata={**meta, "config": json.dumps(cfg)})
    with pytest.raises(ValueError, match="unknown key.*unfold"):
        ckpt.load_model(tmp_path / "cfg.safetensors")


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="not a readable safetensors"):
        ckpt.load_model(p)
    save_file({"a": torch.zeros(1)}, str(p))
    with pytest.raises(ckpt.CheckpointError, match="not an ldmind checkpoint"):
        ckpt.load_model(p)

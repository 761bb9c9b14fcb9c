import json

import pytest
import torch

from ldmind_ref.config import PRESETS, ModelConfig, preset
from ldmind_ref.model import LDMind, count_params


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip(name):
    cfg = preset(name)
    assert cfg.name == name
    assert ModelConfig.from_json(cfg.to_json()) == cfg


def test_unknown_keys_rejected_at_every_level():
    d = preset("tiny").to_dict()
    with pytest.raises(ValueError, match="unknown key.*'colour'"):
        ModelConfig.from_dict({**d, "colour": 1})
    d2 = json.loads(json.dumps(d))
    d2["unet"]["model_chanels"] = 3
    with pytest.raises(ValueError, match=r"config\.unet: unknown key.*model_chanels"):
        ModelConfig.from_dict(d2)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'div2k'"):
        preset("div2k")


def test_configs_are_frozen():
    with pytest.raises(Exception):
        preset("tiny").unet.model_channels = 3  # type: ignore[misc]


# Official parameter counts (PAPER.md); encoder/decoder include their 1x1 convs.
OFFICIAL_DIV2K = {"unet": 113.6e6, "encoder": 22.3e6, "decoder": 30.0e6, "liif": 0.23e6}


def test_div2k_sr_parameter_counts_match_official():
    with torch.device("meta"):
        counts = count_params(LDMind(preset("div2k-sr")))
    for part, official in OFFICIAL_DIV2K.items():
        rel = abs(counts[part] - official) / official
        assert rel <= 0.02, f"{part}: {counts[part]} vs official {official:.0f} ({rel:.2%})"


def test_paper_presets_structure():
    ffhq = preset("ffhq-sr")
    assert ffhq.autoencoder.kl and ffhq.autoencoder.z_channels == 32
    assert ffhq.unet_in_channels == 64 and ffhq.cond_scale == 8
    gen = preset("ffhq-gen")
    assert not gen.unet.conditional and gen.unet_in_channels == 3
    with torch.device("meta"):
        m = LDMind(ffhq)
    assert m.unet.conv_in.in_channels == 64 and m.unet.conv_out.out_channels == 32
    assert m.encoder.quant_conv.out_channels == 64  # mean and log-variance

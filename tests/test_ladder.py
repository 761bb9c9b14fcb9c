import numpy as np
import torch

from ldmind_ref import ladder
from ldmind_ref.config import preset
from ldmind_ref.model import random_model


def test_fidelity_one_draws_one_sample_whatever_the_seed():
    # at fidelity 1 every noise draw is zero: the K samples are one image (mean_k = raw);
    # at 0 they differ, so the rung would see a fidelity argument that never reached the sampler
    model = random_model(preset("tiny"), seed=0)
    hr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with torch.no_grad():   # not set_grad_enabled: that would leak into every later test
        paper = ladder.image_rungs(model, hr, 4, 2, 2, 0, True, fidelity=0.0)
        flat = ladder.image_rungs(model, hr, 4, 2, 2, 0, True, fidelity=1.0)
    assert paper["raw"] != paper["mean_k"]
    assert flat["raw"] == flat["mean_k"] == flat["mean_z"]
    assert flat["ceiling"] == paper["ceiling"] and flat["bicubic"] == paper["bicubic"]

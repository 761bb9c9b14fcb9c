import numpy as np
import torch

from ldmind_ref import ladder
from ldmind_ref.config import preset
from ldmind_ref.model import random_model


def test_fidelity_reaches_the_sampler():
    # the rung's fidelity must reach the sampler: at fidelity 1 the samples differ from fidelity
    # 0's, and the K samples still differ from each other (the window keeps the seed's noise)
    model = random_model(preset("tiny"), seed=0)
    hr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with torch.no_grad():   # not set_grad_enabled: that would leak into every later test
        paper = ladder.image_rungs(model, hr, 4, 2, 4, 0, True, fidelity=0.0)
        flat = ladder.image_rungs(model, hr, 4, 2, 4, 0, True, fidelity=1.0)
    assert paper["raw"] != paper["mean_k"] and flat["raw"] != flat["mean_k"]
    assert flat["raw"] != paper["raw"]
    assert flat["ceiling"] == paper["ceiling"] and flat["bicubic"] == paper["bicubic"]

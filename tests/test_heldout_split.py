"""Every program that evaluates on 'held-out training photos' takes the photos the trainer
holds out (ldmind_ref/data.py: every 20th file from the first), never a photo it trains on."""
import numpy as np
from PIL import Image

from ldmind_ref import ladder
from ldmind_ref.data import ImageFolder
from runtime.programs import bench_steps


def test_bench_steps_every_20_is_the_trainers_validation_split(tmp_path):
    for i in range(45):
        Image.fromarray(np.full((40, 40, 3), i, np.uint8)).save(tmp_path / f"p{i:02d}.png")
    held = [f.name for _, f in bench_steps.images(tmp_path, 20)]
    assert held == [f.name for f in ImageFolder(tmp_path, 0).val]
    assert held == ["p00.png", "p20.png", "p40.png"]
    assert [n for n, _ in ladder.heldout_sets(None, tmp_path, 32)["heldout-train"]] == held

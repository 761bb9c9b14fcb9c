"""The shipped generation model (``ldmind_ref/weights/small-gen.safetensors``: the generation
variant of ``small3``, trained on the CPU; docs/TRAINING.md): its stored form, and samples with the statistics of photographs rather
than of the coloured noise an untrained or half-averaged U-Net gives (docs/RESULTS.md)."""
from pathlib import Path

import numpy as np

from ldmind_ref import checkpoint as ckpt, metrics, sampler

WEIGHTS = Path(__file__).resolve().parents[1] / "ldmind_ref" / "weights" / "small-gen.safetensors"


def test_shipped_generation_checkpoint_form():
    assert ckpt.read_metadata(WEIGHTS)["storage"] == "float16"
    assert ckpt.omitted_parts(WEIGHTS) == ["encoder"]          # generation never runs E
    m = ckpt.load_model(WEIGHTS)
    assert m.cfg.name == "small3-gen" and not m.cfg.unet.conditional


def test_shipped_generation_samples_are_not_noise():
    m = ckpt.load_model(WEIGHTS)
    imgs = [sampler.generate(m, (64, 64), steps=10, seed=s, latent_size=(16, 16))[0] for s in range(4)]
    st = np.stack([metrics.image_stats(x) for x in imgs]).mean(0)
    stats = dict(zip(metrics.STAT_NAMES, st))
    # 64 random crops of the training photos: colourfulness 32-33, gradient 4.8-5.0; these
    # samples: 31.3, 2.2; an untrained U-Net: 93.8, 16.0; a half-averaged EMA: 76.2, 12.5
    assert stats["colourfulness"] < 60 and stats["gradient"] < 8, stats
    assert metrics.diversity(imgs) > 10          # four seeds, four pictures


def test_shipped_generation_runtime_equals_reference(tmp_path):
    """Exported and run by the runtime (ONNX Runtime CPU), the shipped generation model gives
    the reference's samples, sample j from seed + j, to within fp32 rounding (1 of 255)."""
    import subprocess
    import sys

    from runtime import Pipeline

    root = WEIGHTS.parents[2]
    subprocess.run([sys.executable, "-m", "export", "--checkpoint", str(WEIGHTS), "--out", str(tmp_path / "e")],
                   cwd=root, check=True, capture_output=True)
    pipe = Pipeline.load(tmp_path / "e", backend="cpu")
    got = pipe.generate((64, 64), steps=4, seed=3, num_samples=2, latent_size=(16, 16))
    m = ckpt.load_model(WEIGHTS)
    for j, img in enumerate(got):
        ref = sampler.generate(m, (64, 64), steps=4, seed=3 + j, latent_size=(16, 16))[0]
        assert np.abs(ref.astype(int) - img.astype(int)).max() <= 1, j

"""Training data: any folder of PNG/JPEG photos (or a zip of them: ``pack.py``), random
crops with flips/transposes.

Every random choice of step k comes from a generator seeded by (seed, stage, rank, k), so a
run resumed at step k draws exactly what an uninterrupted run would have drawn.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .core import contract, coords, images

EXTENSIONS = {".png", ".jpg", ".jpeg"}


def step_generator(seed: int, stage: str, rank: int, step: int) -> torch.Generator:
    key = hashlib.sha256(f"{seed}/{stage}/{rank}/{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & (2 ** 63 - 1))


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=g))


class ImageFolder:
    """Photos of a folder or a zip file, decoded lazily and cached; a fixed train/validation
    split (every 20th file in sorted order is validation, at least one when there are 2+
    files).  A zip's members are read into memory at once (its bytes, not decoded), so
    data-loading processes forked later share them without sharing a file handle."""

    def __init__(self, root: str | Path, min_side: int):
        root = Path(root)
        self._bytes: dict[str, bytes] = {}
        if root.is_file() and root.suffix.lower() == ".zip":
            with zipfile.ZipFile(root) as z:
                self._bytes = {n: z.read(n) for n in z.namelist() if Path(n).suffix.lower() in EXTENSIONS}
            files = sorted(self._bytes)
        elif not root.is_dir():
            raise FileNotFoundError(f"data folder not found: {root}")
        else:
            files = sorted(p for p in root.iterdir() if p.suffix.lower() in EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"no PNG/JPEG images in {root}")
        val_idx = set(range(0, len(files), 20)) if len(files) > 1 else set()
        self.train = [f for i, f in enumerate(files) if i not in val_idx]
        self.val = [f for i, f in enumerate(files) if i in val_idx] or self.train[:1]
        self.min_side = min_side
        self._cache: dict[Path, np.ndarray] = {}

    def preload(self) -> None:
        """Decode every photo now (before forking data-loading processes, which then share them)."""
        for f in self.train + self.val:
            self.load(f)

    def load(self, path) -> np.ndarray:
        if path not in self._cache:
            with Image.open(io.BytesIO(self._bytes[path]) if self._bytes else path) as im:
                im = im.convert("RGB")
                short = min(im.size)
                if short < self.min_side:  # too small for a crop: enlarge (bicubic)
                    f = self.min_side / short
                    im = im.resize((max(self.min_side, round(im.width * f)),
                                    max(self.min_side, round(im.height * f))), Image.BICUBIC)
                self._cache[path] = np.asarray(im).copy()
        return self._cache[path]

    def crops(self, g: torch.Generator, n: int, size: int, split: str = "train", augment: bool = True) -> list[np.ndarray]:
        """n random uint8 crops [size, size, 3] with random flips and transposes."""
        files = self.train if split == "train" else self.val
        out = []
        for _ in range(n):
            img = self.load(files[_randint(g, 0, len(files) - 1)])
            y = _randint(g, 0, img.shape[0] - size)
            x = _randint(g, 0, img.shape[1] - size)
            c = img[y:y + size, x:x + size]
            flips = torch.randint(0, 2, (3,), generator=g).tolist()
            if augment:
                if flips[0]:
                    c = c[:, ::-1]
                if flips[1]:
                    c = c[::-1]
                if flips[2]:
                    c = c.transpose(1, 0, 2)
            out.append(np.ascontiguousarray(c))
        return out


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """PIL bicubic resize of a uint8 [H, W, 3] array."""
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))


def to_batch(crops: list[np.ndarray]) -> torch.Tensor:
    """uint8 crops -> float [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.stack([images.to_float(c) for c in crops]))


def sample_queries(g: torch.Generator, target: np.ndarray, q: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q random pixels of a uint8 [S1, S2, 3] target: (coord [q, 2], cell [q, 2], rgb [q, 3] in [-1, 1])."""
    H, W = target.shape[:2]
    replace = H * W < q
    idx = (torch.randint(0, H * W, (q,), generator=g) if replace
           else torch.randperm(H * W, generator=g)[:q]).numpy()
    coord = coords.grid_coords(H, W)[idx]
    rgb = target.reshape(-1, 3)[idx].astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(coord), torch.from_numpy(coords.cells(H, W, q)), torch.from_numpy(rgb)


def colour_augment(crop: np.ndarray, g: torch.Generator) -> np.ndarray:
    """A random channel order and, with probability 1/2, the inverted image (255 - x): the
    auto-encoder must reconstruct any colour, and photos rarely show saturated highlights
    (bright sky, white water) that their inverted shadows supply."""
    order = torch.randperm(3, generator=g).tolist()
    c = crop[..., order]
    if int(torch.randint(0, 2, (1,), generator=g)):
        c = 255 - c
    return np.ascontiguousarray(c)


def autoencoder_batch(data: ImageFolder, g: torch.Generator, cfg, split: str = "train") -> dict[str, torch.Tensor]:
    """Stage 1: the crop, and sampled pixels of the crop bicubic-resized to a random size."""
    t = cfg.train
    crops = data.crops(g, t.batch, t.crop, split)
    if t.colour_aug:  # drawn only when asked, so that older configs draw what they always drew
        crops = [colour_augment(c, g) for c in crops]
    qs = []
    for c in crops:
        # the native size is drawn only when asked, so that older configs draw what they always drew
        native = t.gt_native > 0 and float(torch.rand((), generator=g)) < t.gt_native
        s = t.crop if native else _randint(g, t.gt_min, t.gt_max)
        qs.append(sample_queries(g, resize(c, s, s), t.sample_q))
    coord, cell, rgb = (torch.stack(v) for v in zip(*qs))
    out = {"x": to_batch(crops), "coord": coord, "cell": cell, "rgb": rgb}
    if cfg.autoencoder.kl:  # reparameterisation noise of the KL posterior
        lat = t.crop // cfg.autoencoder.downsample
        out["posterior_eps"] = torch.randn(t.batch, cfg.autoencoder.z_channels, lat, lat, generator=g)
    return out


def sr_batch(data: ImageFolder, g: torch.Generator, cfg, split: str = "train") -> dict[str, torch.Tensor]:
    """Stages 2/3: HR crop, its LR by PIL bicubic / cond_scale, t, eps, and sampled HR pixels."""
    t = cfg.train
    crops = data.crops(g, t.batch, t.crop, split)
    lr_side = t.crop // cfg.cond_scale
    out = {"hr": to_batch(crops)}
    if cfg.unet.conditional:
        out["lr"] = to_batch([resize(c, lr_side, lr_side) for c in crops])
    qs = [sample_queries(g, c, t.sample_q) for c in crops]
    out["coord"], out["cell"], out["rgb"] = (torch.stack(v) for v in zip(*qs))
    out["t"] = torch.randint(0, cfg.diffusion.timesteps, (t.batch,), generator=g)
    lat = t.crop // cfg.autoencoder.downsample
    out["eps"] = torch.randn(t.batch, cfg.autoencoder.z_channels, lat, lat, generator=g)
    return out


# the ``sampled`` stage's scales: the LR side is the crop's divided by one of these (whole
# latents for a 96 px crop; 4x is the U-Net's training scale, the rest the arbitrary-scale use)
SAMPLED_SCALES = (2, 3, 4, 6, 8)


def sampled_batch(data: ImageFolder, g: torch.Generator, cfg, split: str = "train") -> dict[str, torch.Tensor]:
    """The ``sampled`` stage: HR crops, their LR by PIL bicubic at one scale per batch drawn from
    ``SAMPLED_SCALES``, sampled HR pixels, and the sampler's noise for every stream of the
    default schedule (``sampler.sample_batch``: [steps + 1, B, c, h, w] at the LR's latent size)."""
    t = cfg.train
    crops = data.crops(g, t.batch, t.crop, split)
    usable = [s for s in SAMPLED_SCALES
              if t.crop % s == 0 and (t.crop // s * cfg.latent_per_lr_pixel) % cfg.tile_align == 0]
    s = usable[_randint(g, 0, len(usable) - 1)]
    lr_side = t.crop // s
    out = {"hr": to_batch(crops), "lr": to_batch([resize(c, lr_side, lr_side) for c in crops])}
    qs = [sample_queries(g, c, t.sample_q) for c in crops]
    out["coord"], out["cell"], out["rgb"] = (torch.stack(v) for v in zip(*qs))
    lat = lr_side * cfg.latent_per_lr_pixel
    out["noise"] = torch.randn(contract.DEFAULT_STEPS + 1, t.batch, cfg.autoencoder.z_channels, lat, lat, generator=g)
    return out


class StepBatches(torch.utils.data.Dataset):
    """Batch k of a stage is item k: drawn from ``step_generator(seed, stage, rank, k)`` alone,
    so that a pool of loading processes (``torch.utils.data.DataLoader`` with ``batch_size=None``
    and the step indices as sampler) yields exactly what a single process would."""

    def __init__(self, data: ImageFolder, cfg, stage: str, make_batch, seed: int, rank: int):
        self.data, self.cfg, self.stage, self.make_batch, self.seed, self.rank = data, cfg, stage, make_batch, seed, rank

    def __len__(self) -> int:
        return 2 ** 62

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        return self.make_batch(self.data, step_generator(self.seed, self.stage, self.rank, step), self.cfg)

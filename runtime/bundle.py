"""An engine directory (``python -m export --out DIR``) as the runtime sees it.

The manifest is read and validated by the exporter's own torch-free
``export.manifest.load_manifest`` against the one manifest schema (export/manifest.schema.json:
format version, every field's type and range, the graph set, every graph's checksum), so that
writer and reader can never disagree on the format; this module only turns a valid manifest
into the handful of numbers the pipeline needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.manifest import ManifestError, load_manifest
from export.specs import MANIFEST_NAME

from .errors import EngineError


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: dict[str, Any]
    name: str
    conditional: bool          # SR model (encoder + cond input) or generation model
    z_channels: int
    feature_channels: int
    ae_downsample: int
    cond_scale: int
    unet_multiple: int
    generation_latent: tuple[int, int] | None
    train_latent: int          # latent side the model was trained on (default tiles: a few times it)
    tile_align: int            # every latent tile start and size is a multiple of this
    alpha_bar: np.ndarray      # float64 [T], straight from the manifest
    query_chunk: int
    precision: str
    graphs: dict[str, dict[str, Any]]
    tensorrt: dict[str, Any] | None

    @property
    def timesteps(self) -> int:
        return len(self.alpha_bar)

    @property
    def costs(self) -> dict[str, dict[str, Any]]:
        """Measured cost of each network graph (``ldmind_ref.costs``): {graph: {macs_per_cell,
        attention: [{stride, channels, heads, blocks}]}}, what tiling and memory checks read."""
        return {k: g["cost"] for k, g in self.graphs.items() if "cost" in g}

    @property
    def config(self) -> dict[str, Any]:
        """The model config dict (``ldmind_ref.config.ModelConfig.to_dict``), possibly empty."""
        cfg = self.manifest.get("model", {}).get("config")
        return cfg if isinstance(cfg, dict) else {}

    def graph_path(self, name: str) -> Path:
        return self.root / self.graphs[name]["file"]


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read and check ``path``/manifest.json (checksums too when ``verify``)."""
    root = Path(path)
    if not root.exists():
        raise EngineError(f"engine directory {root} not found; create it with "
                          f"`python -m export --checkpoint CKPT --out {root}` (or run `make demo`)")
    if not root.is_dir():
        raise EngineError(f"{root} is not a directory; --engines wants the folder written by `python -m export`")
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise EngineError(f"{mpath} not found: {root} is not an engine directory written by `python -m export`")
    try:
        return from_manifest(root, load_manifest(root, verify=verify))
    except ManifestError as e:
        raise EngineError(str(e)) from None
    except OSError as e:
        raise EngineError(f"{mpath}: cannot read ({e.strerror or e})") from None


def from_manifest(root: str | Path, m: dict[str, Any]) -> Bundle:
    """The bundle of a validated manifest (``export.manifest.validate``): ``load_bundle``'s, or
    one not written yet (``python -m export --int8`` runs its fp32 graphs to record calibration
    inputs before it writes the final manifest)."""
    lat, graphs = m["latent"], m["graphs"]
    gen = lat["generation_latent"]
    return Bundle(
        root=Path(root), manifest=m, name=m["model"]["name"], conditional=lat["conditional"],
        z_channels=lat["z_channels"], feature_channels=lat["feature_channels"],
        ae_downsample=lat["ae_downsample"], cond_scale=lat["cond_scale"], unet_multiple=lat["unet_multiple"],
        generation_latent=tuple(gen) if gen else None, train_latent=lat["train_latent"],
        tile_align=lat["tile_align"], alpha_bar=np.asarray(m["schedule"]["alpha_bar"], dtype=np.float64),
        query_chunk=m["liif"]["query_chunk"], precision=m["precision"], graphs=dict(graphs),
        tensorrt=m["tensorrt"],
    )

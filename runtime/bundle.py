"""An engine directory (``python -m export --out DIR``) as the runtime sees it.

The manifest is read and verified (format version, every graph's checksum) by the
exporter's own torch-free ``export.manifest.load_manifest``, so that writer and reader
can never disagree on the format; this module only turns it into the handful of numbers
the pipeline needs and refuses, with one clear line, anything it cannot run.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EngineError

REQUIRED_GRAPHS = ("unet_step", "decoder", "liif")


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


def _as_dict(obj: Any) -> dict[str, Any]:
    # load_manifest returns the parsed JSON; accept a dataclass or an object with to_dict too
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    raise EngineError(f"export.manifest.load_manifest returned an unexpected {type(obj).__name__}")


def _positive_int(value: Any, what: str, where: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EngineError(f"{where}: {what} must be a positive integer, got {value!r}")
    return value


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read and check ``path``/manifest.json (checksums too when ``verify``)."""
    root = Path(path)
    if not root.exists():
        raise EngineError(f"engine directory {root} not found; create it with "
                          f"`python -m export --checkpoint CKPT --out {root}` (or run `make demo`)")
    if not root.is_dir():
        raise EngineError(f"{root} is not a directory; --engines wants the folder written by `python -m export`")
    try:
        from export import manifest as _manifest
        from export.specs import MANIFEST_NAME
    except ImportError as e:  # the runtime is installed from the same distribution as export
        raise EngineError(f"cannot read engine manifests: the torch-free module export.manifest is missing ({e})") from None
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise EngineError(f"{mpath} not found: {root} is not an engine directory written by `python -m export`")
    try:
        raw = _as_dict(_manifest.load_manifest(root, verify=verify))
    except _manifest.ManifestError as e:
        raise EngineError(str(e)) from None
    except OSError as e:
        raise EngineError(f"{mpath}: cannot read ({e.strerror or e})") from None
    return _bundle_from(root, raw, mpath)


def from_manifest(root: str | Path, manifest: dict[str, Any]) -> Bundle:
    """The bundle of a manifest that is not written yet (``python -m export --int8`` runs its
    fp32 graphs to record calibration inputs before it writes the final manifest)."""
    from export.specs import MANIFEST_NAME
    return _bundle_from(Path(root), manifest, Path(root) / MANIFEST_NAME)


def _bundle_from(root: Path, m: dict[str, Any], mpath: Path) -> Bundle:
    try:
        lat, sched, graphs = m["latent"], m["schedule"], m["graphs"]
        conditional = bool(lat["conditional"])
        alpha_bar = np.asarray(sched["alpha_bar"], dtype=np.float64)
        gen = lat.get("generation_latent")
        bundle = Bundle(
            root=root, manifest=m, name=str(m.get("model", {}).get("name", root.name)),
            conditional=conditional,
            z_channels=_positive_int(lat["z_channels"], "latent.z_channels", mpath),
            feature_channels=_positive_int(lat["feature_channels"], "latent.feature_channels", mpath),
            ae_downsample=_positive_int(lat["ae_downsample"], "latent.ae_downsample", mpath),
            cond_scale=_positive_int(lat["cond_scale"], "latent.cond_scale", mpath),
            unet_multiple=_positive_int(lat["unet_multiple"], "latent.unet_multiple", mpath),
            generation_latent=(tuple(_positive_int(v, "latent.generation_latent", mpath) for v in gen)
                               if gen else None),
            train_latent=_positive_int(lat["train_latent"], "latent.train_latent", mpath),
            tile_align=_positive_int(lat["tile_align"], "latent.tile_align", mpath),
            alpha_bar=alpha_bar,
            query_chunk=_positive_int(m.get("liif", {}).get("query_chunk", 65536), "liif.query_chunk", mpath),
            precision=str(m.get("precision", "fp32")),
            graphs=dict(graphs),
            tensorrt=m.get("tensorrt"),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise EngineError(f"{mpath}: malformed manifest ({type(e).__name__}: {e})") from None
    # The schedule drives every DDIM coefficient: refuse one that cannot be a cumulative
    # product of (1 - beta) rather than sample garbage from it.
    ab = bundle.alpha_bar
    if ab.ndim != 1 or len(ab) < 1 or not np.all(np.isfinite(ab)) or ab.min() <= 0 or ab.max() > 1 \
            or np.any(np.diff(ab) > 0):
        raise EngineError(f"{mpath}: schedule.alpha_bar must be a non-increasing list of numbers in (0, 1]")
    T = sched.get("timesteps")
    if T is not None and T != len(ab):
        raise EngineError(f"{mpath}: schedule.timesteps is {T} but alpha_bar has {len(ab)} entries")
    needed = REQUIRED_GRAPHS + (("encoder",) if bundle.conditional else ())
    for name in needed:
        if name not in bundle.graphs:
            raise EngineError(f"{mpath}: graph {name!r} is missing from the manifest")
        f = bundle.graph_path(name)
        if not f.is_file():
            raise EngineError(f"{f}: graph file missing (listed in {mpath.name}); re-run `python -m export`")
    if bundle.generation_latent is not None and len(bundle.generation_latent) != 2:
        raise EngineError(f"{mpath}: latent.generation_latent must be [h, w]")
    if not math.isfinite(float(m.get("scale_factor", 1.0))):
        raise EngineError(f"{mpath}: scale_factor is not a finite number")
    return bundle

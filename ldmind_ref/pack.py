"""A compact copy of a training folder for the trip to a GPU machine: one zip of JPEGs.

    python -m ldmind_ref.pack --data ../shared/data/train --out pack/train.zip

Each photo is shrunk (PIL Lanczos) so that its longer side is at most ``--max-side`` pixels
(never enlarged, never below the crop the training needs: ``--min-side``) and stored as a
JPEG of ``--quality`` (4:2:0 chroma below 95) under its own name with a ``.jpg`` suffix, so the sorted order, and with
it the train/validation split of ``data.ImageFolder``, is the folder's.  The members are
stored uncompressed (JPEG does not shrink further).  The source folder is only read.  If the
zip would exceed ``--max-mb``, nothing is written and the command says so (exit 2).
``ImageFolder`` (hence ``--data`` of ``python -m ldmind_ref.train``) reads the zip directly.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import zipfile
from pathlib import Path

from PIL import Image

from .data import EXTENSIONS


def shrunk_jpeg(path: Path, max_side: int, min_side: int, quality: int) -> tuple[bytes, tuple[int, int]]:
    with Image.open(path) as im:
        im = im.convert("RGB")
        f = min(1.0, max_side / max(im.size))
        f = max(f, min(1.0, min_side / min(im.size)))
        if f < 1.0:
            im = im.resize((round(im.width * f), round(im.height * f)), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality, subsampling=0 if quality >= 95 else 2)   # 4:2:0 below 95
        return buf.getvalue(), im.size


def pack(data: Path, out: Path, max_side: int, min_side: int, quality: int, max_mb: float) -> dict:
    files = sorted(p for p in data.iterdir() if p.suffix.lower() in EXTENSIONS)
    if not files:
        raise SystemExit(f"no PNG/JPEG images in {data}")
    if out.resolve().is_relative_to(data.resolve()):
        raise SystemExit(f"--out {out} is inside --data {data}: the source folder is only read")
    members = {}
    for p in files:
        name = p.stem + ".jpg"
        if name in members:
            raise SystemExit(f"two photos would share the name {name} in the pack")
        members[name] = shrunk_jpeg(p, max_side, min_side, quality)
    total = sum(len(b) for b, _ in members.values())
    if total > max_mb * 1e6:
        raise SystemExit(f"the pack would hold {total / 1e6:.1f} MB, over --max-mb {max_mb}: "
                         f"lower --max-side or --quality")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for name, (b, _) in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), b)   # fixed date: same bytes every time
    os.replace(tmp, out)
    pixels = sum(w * h for _, (w, h) in members.values())
    return {"photos": len(members), "bytes": out.stat().st_size, "megapixels": round(pixels / 1e6, 1)}


def main(argv=None) -> int:
    """Errors are ``SystemExit("message")``; as a program: one line, exit status 2 (``errors.cli``)."""
    p = argparse.ArgumentParser(prog="python -m ldmind_ref.pack", description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="folder of PNG/JPEG photos (read only)")
    p.add_argument("--out", required=True, help="zip file to write")
    p.add_argument("--max-side", type=int, default=1024, help="longer side at most this (default 1024)")
    p.add_argument("--min-side", type=int, default=256, help="shorter side kept at least this (default 256)")
    p.add_argument("--quality", type=int, default=92, help="JPEG quality (default 92)")
    p.add_argument("--max-mb", type=float, default=20.0, help="refuse to write a larger pack (default 20)")
    a = p.parse_args(argv)
    if not Path(a.data).is_dir():
        raise SystemExit(f"data folder not found: {a.data}")
    if a.max_side < a.min_side or a.min_side < 1 or not 1 <= a.quality <= 100:
        raise SystemExit("need 1 <= --min-side <= --max-side and 1 <= --quality <= 100")
    r = pack(Path(a.data), Path(a.out), a.max_side, a.min_side, a.quality, a.max_mb)
    print(f"{a.out}: {r['photos']} photos, {r['megapixels']} Mpx, {r['bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    from .errors import cli
    sys.exit(cli("python -m ldmind_ref.pack", main))

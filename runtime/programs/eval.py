"""The SR benchmark on exported engines, torch-free (protocol: ``ldmind_ref/benchmark.py``).

    python -m runtime.programs.eval --model final=engines/small --data ../shared/data/val --out docs/results
"""
from __future__ import annotations

import sys

from ldmind_ref.benchmark import parser, run

from ..errors import InputError
from ..pipeline import Pipeline


def main(argv=None) -> int:
    p = parser("python -m runtime.programs.eval", "ENGINES")
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads per graph (0: the backend's default)")
    args = p.parse_args(argv)
    # the runtime refuses inputs whose attention would not fit in memory: those images are
    # left out of that scale's mean (the table says how many ran)
    return run(args, lambda path: Pipeline.load(path, backend=args.backend, threads=args.threads), (InputError,))


if __name__ == "__main__":
    sys.exit(main())

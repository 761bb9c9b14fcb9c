"""Refuse work that cannot fit in memory *before* allocating it.

What grows with the request: the uint8 output (N x H x W x 3 bytes, the only allocation
that grows with the scale: rendering is tiled), the full-size latents and decoder features
(linear in the input's area), and the working memory of a graph call, which grows with the
latent *tile* (activations with its area, attention scores with its square): latent tiling
keeps it bounded.  All are estimated from the manifest and compared with the memory the OS
says is available.
"""
from __future__ import annotations

import math
import os

from ldmind_ref.core import latent_tiles
from ldmind_ref.core.contract import (GRAPH_MEMORY_BUDGET, HEADROOM, LATENT_MEMORY, MEMORY_LIMIT_ENV, MEMORY_MARGIN,
                                      OUTPUT_MEMORY)

from .errors import InputError, OutOfMemory

GiB = 1024 ** 3


def proc_bytes(path: str, key: str) -> int | None:
    """A "Key:  N kB" line of a Linux /proc file, in bytes; None where there is none."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_memory() -> int:
    """Bytes the OS can give us now (MemAvailable on Linux; physical memory elsewhere)."""
    override = os.environ.get("LDMIND_MEMORY_LIMIT")   # tests and containers
    if override:
        return memory_limit_env(override)
    avail = proc_bytes("/proc/meminfo", "MemAvailable")
    if avail is not None:
        return avail
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62   # unknown: do not refuse


def memory_limit_env(text: str) -> int:
    """LDMIND_MEMORY_LIMIT: a number of bytes (``8e9`` works), or ``InputError``."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v < 0:
        raise InputError(MEMORY_LIMIT_ENV.format(repr(text)))
    return int(v)


def _fmt(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB / 10 else f"{n / 1024 ** 2:.0f} MiB"


def check_output(num: int, H: int, W: int, what: str = "output", extra: int = 0, itemsize: int = 1) -> None:
    """Refuse an output whose pixels (``itemsize`` bytes a value: 1 for uint8, 2 for uint16;
    plus ``extra`` bytes of full-size working arrays: latents and decoder features) would not fit."""
    need = num * H * W * 3 * itemsize + extra
    avail = available_memory()
    if need + HEADROOM > avail:
        count = "a" if num == 1 else f"{num} images of"
        raise InputError(OUTPUT_MEMORY.format(count, W, H, what, _fmt(need), _fmt(avail)))


def graph_bytes(costs: dict, batch: int, h: int, w: int) -> int:
    """Estimated peak working memory of one graph call on ``batch`` h x w latents (tiles):
    the largest graph's, from the terms the exporter measured on each graph
    (``graphs[*].cost.memory``, see ``export.activations``): the largest a c + b c^2 over
    the terms, c = h w cells, per sample, times MEMORY_MARGIN.

    The linear terms are activations; the squared ones attention scores.  What they do not
    see (kernel scratch space, allocator slack) is what MEMORY_MARGIN covers: single calls
    measured by ``python -m runtime.programs.bench_graph_memory`` against the terms are in
    docs/BENCHMARKS.md."""
    need = max((latent_tiles.graph_memory(cost, h, w) for cost in costs.values()), default=0.0)
    return int(MEMORY_MARGIN * batch * need)


def graph_budget() -> int:
    """Working memory one graph call may take when the runtime picks the tiles: at most
    GRAPH_MEMORY_BUDGET, and what is available after HEADROOM."""
    return min(GRAPH_MEMORY_BUDGET, available_memory() - HEADROOM)


def fits_budget(costs: dict, batch: int):
    """``fits(th, tw)``: whether one call of every graph in ``costs`` on ``batch`` th x tw
    tiles stays within ``graph_budget`` (what ``latent_tiles.choose`` asks)."""
    budget = graph_budget()
    return lambda th, tw: graph_bytes(costs, batch, th, tw) <= budget


def check_latent(costs: dict, batch: int, h: int, w: int, lr_size: tuple[int, int] | None = None) -> None:
    """Refuse a latent tile whose graphs cannot fit in the memory available (the default
    tiles always do: only a user's forced ``latent_tile`` can reach this)."""
    need = graph_bytes(costs, batch, h, w)
    avail = available_memory()
    if need + HEADROOM > avail:
        src = f"a {lr_size[1]}x{lr_size[0]} input image" if lr_size else "this request"
        raise InputError(LATENT_MEMORY.format(src, w, h, _fmt(need), _fmt(avail)))


# Virtual memory that opening the four ONNX Runtime sessions takes beyond the graph files
# (thread stacks, arenas, mappings): measured 336 MiB for `tiny` and 382 MiB for `small` on 2
# CPUs (VmSize before and after `Pipeline.load`).  Per CPU: one more intra-op thread per
# session, 8 MiB of stack each.
LOAD_BASE = 288 * 1024 ** 2
LOAD_PER_CPU = 4 * 8 * 1024 ** 2


def check_address_space(graph_bytes: int) -> None:
    """Refuse, with the out-of-memory line, to open the graphs under an address-space limit
    (``ulimit -v``, RLIMIT_AS) that leaves less than they need: ONNX Runtime does not always
    survive an allocation failing while it creates a session (a segmentation fault, seen at
    400 MiB), while every later shortage is an error it reports."""
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return
    if soft == resource.RLIM_INFINITY:
        return
    used = proc_bytes("/proc/self/status", "VmSize") or 0
    need = LOAD_BASE + LOAD_PER_CPU * (os.cpu_count() or 1) + 2 * graph_bytes
    if soft - used < need:
        raise OutOfMemory(f"the machine ran out of memory while loading the graphs: the address-space limit "
                          f"(ulimit -v) leaves {_fmt(max(0, soft - used))}, loading needs about {_fmt(need)}; "
                          f"raise the limit or free memory")


_blas_reserved = False


def reserve_blas_buffers() -> None:
    """Make numpy's BLAS take its work buffers now, while memory is still free.

    OpenBLAS allocates one work buffer per thread (about 32 MiB each) the first time a
    matrix product runs, keeps them for the life of the process, and when that first
    allocation fails it prints its own line and *exits the process* (status 1): no
    exception, no cleanup of the temporary output.  Back-projection's products come after
    the output and the graphs hold their memory, so on a tight machine that is where it
    happened.  One product over all threads at load moves the allocation to a point where
    nothing is half-done; a shortage later then surfaces as numpy's ``MemoryError`` or the
    graph's error, which the CLI reports as one line.  Costs a few milliseconds, once."""
    global _blas_reserved
    if not _blas_reserved:
        import numpy as np
        a = np.ones((512, 512))     # 512^3 multiply-adds: above OpenBLAS's threshold for all threads
        np.dot(a, a)
        _blas_reserved = True

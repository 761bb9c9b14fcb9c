"""Working memory of an exported graph as a function of the latent size, read off the graph.

Tile choice needs how much memory one graph call takes on c = h x w latent cells.  It is
measured on the exported file rather than on the PyTorch modules, because what is alive at
once depends on how the graph is written:

1. every intermediate value is made a graph output and the graph is run with ONNX Runtime
   at two probe latents, side ``s`` and ``2 s`` (batch 1): each value's real size in bytes;
2. a value that grows 4x with the 4x area is an activation (linear in c); 16x, an attention
   score matrix (quadratic in c); one that does not grow is a weight or shape arithmetic
   (not working memory);
3. the nodes are walked in the file's (topological) order: a node's outputs come alive when
   it runs, a value dies after its last consumer, graph inputs live until their last use and
   outputs to the end.  After each node the live bytes are a c + b c^2; the manifest keeps
   the pairs (a, b) that can be the largest for some c (``envelope``).

This is the peak of a plan that frees every value as early as possible, which ONNX Runtime's
planner (without the CPU arena, as the runtime runs it) approaches.  It does not see kernel
scratch space or allocator slack: the runtime adds a margin (``runtime.limits.graph_bytes``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from . import feeds
from .specs import GraphSpec


def _all_values_graph(model: onnx.ModelProto) -> bytes:
    """A copy of ``model`` with every node output also a graph output, serialised."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    existing = {o.name for o in copy.graph.output}
    copy.graph.output.extend(onnx.ValueInfoProto(name=n) for node in copy.graph.node for n in node.output
                             if n and n not in existing)
    return copy.SerializeToString()


def _sizes(blob: bytes, feed: dict) -> dict[str, int]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every value
    sess = ort.InferenceSession(blob, sess_options=so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return {n: int(np.asarray(v).nbytes) for n, v in zip(names, sess.run(None, feed))}


def live_bytes(graph: onnx.GraphProto, size: dict[str, int], counted: set[str]) -> list[int]:
    """Total ``size`` of the ``counted`` values alive after each node when the nodes run in
    order (pure: no ONNX Runtime).  A value is alive from the node that makes it (graph
    inputs: from the start) to its last consumer (graph outputs: to the end)."""
    last: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for n in node.input:
            last[n] = i
    end = len(graph.node)
    for o in graph.output:
        last[o.name] = end
    initialisers = {t.name for t in graph.initializer}
    live = {i.name for i in graph.input if i.name not in initialisers and i.name in counted}
    total = sum(size[n] for n in live)
    out = []
    for i, node in enumerate(graph.node):
        for n in node.output:
            if n in counted and n not in live:
                live.add(n)
                total += size[n]
        out.append(total)
        for n in set(node.input) | set(node.output):
            if n in live and last.get(n, i) <= i:
                live.discard(n)
                total -= size[n]
    return out


def envelope(pairs: list[tuple[float, float]]) -> list[list[float]]:
    """The pairs no other pair matches or exceeds in both terms (the only ones that can be
    the maximum for some latent size), sorted."""
    pairs = sorted(set(pairs), reverse=True)
    out, best_q = [], -1.0
    for lin, quad in pairs:          # by linear term, descending: keep a growing quadratic term
        if quad > best_q:
            out.append([lin, quad])
            best_q = quad
    return sorted(out)


def memory_terms(path: str | Path, spec: GraphSpec, cfg, side: int) -> list[list[float]]:
    """[[bytes per latent cell, bytes per latent cell squared], ...]: the working memory of
    one call on c latent cells (batch 1) is the largest ``a c + b c^2`` of the list (see the
    module doc).  Measured at latents of ``side`` and ``2 side`` squared; ``side`` must be a
    size every input of the graph can take (a multiple of the tile alignment)."""
    model = onnx.load(str(path))
    blob = _all_values_graph(model)
    probes = []
    for s in (side, 2 * side):
        dims = feeds.dims_for(cfg, 1, (s, s), queries=0)
        sizes = _sizes(blob, feeds.random_feed(spec, cfg, dims, seed=0))
        for t in spec.inputs:   # the graph's own inputs, from their declared shapes
            sizes[t.name] = int(np.prod(feeds.shape_of(t.shape, dims))) * np.dtype(t.dtype).itemsize
        probes.append((dims["h"] * dims["w"], sizes))
    (c1, small), (c2, large) = probes
    # each value grows with the area (x4 between the probes: activations), with its square
    # (x16: attention scores) or not at all (weights, shape arithmetic: not working memory)
    linear, quadratic = set(), set()
    for n, b in large.items():
        if small.get(n, 0) > 0 and b > small[n]:
            growth = np.log(b / small[n]) / np.log(c2 / c1)     # 1: linear, 2: quadratic
            (linear if growth < 1.5 else quadratic).add(n)
    lin = live_bytes(model.graph, large, linear)
    quad = live_bytes(model.graph, large, quadratic)
    return envelope([(a / c2, q / c2 ** 2) for a, q in zip(lin, quad)])

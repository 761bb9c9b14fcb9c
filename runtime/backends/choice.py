"""How ``backend="auto"`` runs an export on the CPU: each graph on the fastest CPU backend
allowed for it here (a mixed plan is normal: the U-Net on one backend, LIIF on another).

Allowed (``allowed``): ``cpu`` (ONNX Runtime, fp32) always; ``openvino`` (fp32) where it is
installed; ``openvino-bf16`` where it is installed, the CPU computes bf16 natively
(``core.cpuinfo.native_bf16``: AVX-512 BF16 or AMX) and the export's quality gate passes the
graph (runtime/precision_gate.py).  Fastest: by the per-graph medians recorded for this
machine and export (runtime/backends/record.py).  On first use they are measured -
every allowed graph on every allowed backend, calls alternating, a few seconds - and
recorded, so later loads decide at once.  ``LDMIND_AUTO_MEASURE=0`` turns the first-use
measurement off: without a record every graph then runs on ``cpu``.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from datetime import date

from ldmind_ref.core import cpuinfo

from .. import precision_gate
from ..bundle import Bundle
from ..errors import EngineError
from . import record, timing
from .base import Engine, graphs_of, plugin

CPU_BACKENDS = ("cpu", "openvino", "openvino-bf16")       # ``cpu`` first: the fallback
PRECISION = {"cpu": "fp32", "openvino": "fp32", "openvino-bf16": "bf16"}
MEASURE_ENV = "LDMIND_AUTO_MEASURE"
MEASURE_REPEAT = 3          # rounds after the warm-up call; the median is kept
MEASURE_LATENT = 2          # measured on a latent of this many training latents per side


@dataclass
class Plan:
    backends: dict[str, str]                          # graph -> the backend that runs it
    why: str                                          # how it was decided, one line
    passed_over: dict[str, str] = field(default_factory=dict)   # CPU backend -> why not offered (at all)
    seconds: dict[str, dict[str, float]] | None = None         # the times decided by

    def describe(self) -> str:
        """'encoder openvino-bf16 (2.1x cpu), unet_step cpu, ...; measured 2026-12-06'."""
        parts = []
        for g, b in self.backends.items():
            s = (self.seconds or {})
            gain = (f" ({s['cpu'][g] / s[b][g]:.2f}x cpu)" if b != "cpu" and g in s.get("cpu", {})
                    and g in s.get(b, {}) and s[b][g] > 0 else "")
            parts.append(f"{g} {b}{gain}")
        return ", ".join(parts) + f"; {self.why}"


def measuring() -> bool:
    return os.environ.get(MEASURE_ENV, "1") != "0"


def allowed(bundle: Bundle, fp32_only: bool = False) -> tuple[dict[str, list[str]], dict[str, str]]:
    """({backend: the graphs it may run}, {backend: why it runs none}) among ``CPU_BACKENDS``."""
    graphs = graphs_of(bundle)
    ok: dict[str, list[str]] = {}
    over: dict[str, str] = {}
    for b in CPU_BACKENDS:
        why = plugin(b).unavailable_reason(b, bundle)
        if why is None and PRECISION[b] != "fp32" and fp32_only:
            why = "fp32 requested"
        if why is None and PRECISION[b] == "bf16" and not cpuinfo.native_bf16():
            why = "the CPU has no native bf16 (avx512_bf16 / amx_bf16 in /proc/cpuinfo)"
        if why is None and PRECISION[b] != "fp32" and bundle.precision != "fp32":
            why = f"the export is {bundle.precision} already"
        if why is not None:
            over[b] = why
            continue
        refused = {g: precision_gate.refusal(bundle, PRECISION[b], g) for g in graphs}
        mine = [g for g in graphs if refused[g] is None]
        if mine:
            ok[b] = mine
        else:
            over[b] = next(iter(refused.values()))
    return ok, over


def covers(seconds: dict[str, dict[str, float]] | None, ok: dict[str, list[str]]) -> bool:
    """Whether recorded ``seconds`` time every graph on every backend allowed for it."""
    return seconds is not None and all(g in seconds.get(b, {}) for b, gs in ok.items() for g in gs)


def fastest(seconds: dict[str, dict[str, float]], ok: dict[str, list[str]], graphs: list[str]) -> dict[str, str]:
    """{graph: the allowed backend with the least recorded time} (``cpu`` on ties or gaps)."""
    out = {}
    for g in graphs:
        timed = [(seconds[b][g], i, b) for i, b in enumerate(CPU_BACKENDS)
                 if g in ok.get(b, []) and g in seconds.get(b, {})]
        out[g] = min(timed)[2] if timed else "cpu"
    return out


def measure(bundle: Bundle, engines: dict[str, dict[str, Engine]], repeat: int = MEASURE_REPEAT
            ) -> dict[str, dict[str, float]]:
    """{backend: {graph: median seconds}} of ``engines`` ({backend: {graph: Engine}}) at the
    representative size: a latent of ``MEASURE_LATENT`` training latents per side, 4x output."""
    side = MEASURE_LATENT * bundle.train_latent
    out_side = 4 * side * bundle.ae_downsample // max(1, bundle.cond_scale)
    calls = {b: timing.graph_calls(bundle, e, side, out_side) for b, e in engines.items()}
    return timing.alternating(calls, repeat)


def preview(bundle: Bundle) -> str:
    """What ``cpu_plan`` would run, without opening anything: the recorded plan, or what it
    would measure on first use (``info``)."""
    graphs = graphs_of(bundle)
    ok, _ = allowed(bundle)
    if list(ok) == ["cpu"]:
        return "cpu for every graph (the only CPU backend allowed here)"
    seconds = record.times(bundle)
    if covers(seconds, ok):
        return Plan(fastest(seconds, ok, graphs), "recorded for this machine and export", {}, seconds).describe()
    if not measuring():
        return f"cpu for every graph (not measured: {MEASURE_ENV}=0)"
    return "per graph, the fastest of " + ", ".join(f"{b} ({len(gs)} graphs)" for b, gs in ok.items()) \
        + ", timed on first use"


def cpu_plan(bundle: Bundle, threads: int = 0, log=None, fp32_only: bool = False) -> tuple[Plan, dict[str, Engine]]:
    """The CPU plan for ``bundle`` and its engines (one per graph).  ``log``: where the one-line
    notice of a first-use measurement goes (default stderr).  ``fp32_only``: no bf16."""
    graphs = graphs_of(bundle)
    ok, over = allowed(bundle, fp32_only)
    if list(ok) == ["cpu"]:
        plan = Plan({g: "cpu" for g in graphs}, "the only CPU backend allowed here", over)
        return plan, _create(bundle, plan.backends, threads)
    seconds = record.times(bundle)
    if covers(seconds, ok):
        plan = Plan(fastest(seconds, ok, graphs), "recorded for this machine and export", over, seconds)
        try:
            return plan, _create(bundle, plan.backends, threads)
        except EngineError as e:
            if set(plan.backends.values()) == {"cpu"}:
                raise
            plan = Plan({g: "cpu" for g in graphs}, f"the recorded choice failed to load ({e})", over)
            return plan, _create(bundle, plan.backends, threads)
    if not measuring():
        plan = Plan({g: "cpu" for g in graphs}, f"not measured ({MEASURE_ENV}=0)", over)
        return plan, _create(bundle, plan.backends, threads)
    (log or _stderr)(f"auto: timing {', '.join(ok)} on each graph of {bundle.name} once for this machine "
                     f"(kept in {record.record_path()})")
    candidates: dict[str, dict[str, Engine]] = {}
    try:
        for b, gs in ok.items():
            try:
                candidates[b] = plugin(b).create_engines(b, bundle, threads, gs)
            except EngineError as e:
                if b == "cpu":
                    raise
                over[b] = str(e)
        t0 = time.perf_counter()
        seconds = measure(bundle, candidates)
        choice = fastest(seconds, {b: list(e) for b, e in candidates.items()}, graphs)
        record.save(bundle, seconds, {"date": date.today().isoformat(), "measure_seconds":
                                      round(time.perf_counter() - t0, 2), "cpu_flags": cpuinfo.summary()})
        engines = {g: candidates[b].pop(g) for g, b in choice.items()}
    finally:
        for e in candidates.values():
            for engine in e.values():
                engine.close()
    return Plan(choice, f"measured {date.today().isoformat()}", over, seconds), engines


def _create(bundle: Bundle, backends: dict[str, str], threads: int) -> dict[str, Engine]:
    """One engine per graph on the backend ``backends`` gives it, created backend by backend."""
    engines: dict[str, Engine] = {}
    try:
        for b in dict.fromkeys(backends.values()):
            engines |= plugin(b).create_engines(b, bundle, threads, [g for g, x in backends.items() if x == b])
    except BaseException:
        for e in engines.values():
            e.close()
        raise
    return {g: engines[g] for g in backends}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

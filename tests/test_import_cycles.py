"""No import cycles in ``runtime`` and ``export`` (docs/ARCHITECTURE.md, "One way").

Every import statement counts, the ones inside functions too: a cycle hidden behind a lazy
import (engine -> a backend -> engine) is still two modules that cannot be understood, or
split, one without the other.  The source is read, not imported: nothing heavy loads.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "export")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``name`` imports (its own parent packages left out: they
    are imported before any module of theirs, never because of it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)      # from pkg import module
    out = set()
    for m in found:
        while m and m not in known:
            m = m.rpartition(".")[0]
        if m and m != name and not name.startswith(m + "."):
            out.add(m)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "__init__.py").write_text("from .x import f\n")
    (tmp_path / "p" / "x.py").write_text("def f():\n    from . import y\n")
    (tmp_path / "p" / "y.py").write_text("from .x import f\n")
    known = {"p": tmp_path / "p" / "__init__.py", "p.x": tmp_path / "p" / "x.py", "p.y": tmp_path / "p" / "y.py"}
    graph = {m: imports(m, p, known) for m, p in known.items()}
    assert graph == {"p": {"p.x"}, "p.x": {"p.y"}, "p.y": {"p.x"}}
    assert cycles(graph) == [["p.x", "p.y"]]


def test_no_import_cycles():
    known = modules()
    assert "runtime.engine" in known and "runtime.backends.base" in known
    graph = {m: imports(m, p, known) for m, p in known.items()}
    assert cycles(graph) == []


def test_imports_flow_one_way():
    """``ldmind_ref`` <- ``export`` <- ``runtime``: neither ``export`` nor ``ldmind_ref`` imports
    ``runtime``, not even inside a function (the int8 calibration runs ``python -m
    runtime.calibrate`` as a child process instead)."""
    known = modules() | {"runtime": ROOT / "runtime" / "__init__.py"}
    offenders = {}
    for pkg in ("export", "ldmind_ref"):
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            bad = sorted(m for m in imports(name, path, known) if m == "runtime" or m.startswith("runtime."))
            if bad:
                offenders[name] = bad
    assert offenders == {}

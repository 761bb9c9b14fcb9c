"""The manifest schema and the graph declarations as C++ tables: writes
``runtime/cpp/src/manifest_schema.hpp``.

    python -m export.schema_header           # regenerate the header after changing the schema
    python -m export.schema_header --check   # exit 1 when the committed header is stale

The C++ loader (runtime/cpp/src/manifest.cpp) walks this table as ``export.manifest``'s
``schema_problem`` walks the schema: the same checks in the same order, the same wording
(``manifest.wording``, computed here once).  A keyword the walker does not implement stops
the generation, so the two sides can only check the same facts.  The graphs' inputs and outputs
(``export.specs.graph_specs``) become a table too, from which the loader builds what each
graph must declare and the pipeline order of the graphs.  Torch-free.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .manifest import MANIFEST_VERSION, SCHEMA, SCHEMA_PATH, resolve, wording
from .specs import graph_specs

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "runtime" / "cpp" / "src" / "manifest_schema.hpp"
# annotations: no check behind them
IGNORED = {"$schema", "$comment", "title", "$defs"}
TYPES = {"null": "NUL", "boolean": "BOOLEAN", "integer": "INTEGER", "number": "NUMBER", "string": "STRING",
         "array": "ARRAY", "object": "OBJECT"}
BOUNDS = {"const": "Const", "minItems": "MinItems", "maxItems": "MaxItems", "minimum": "Minimum",
          "exclusiveMinimum": "ExclusiveMinimum", "maximum": "Maximum", "exclusiveMaximum": "ExclusiveMaximum",
          "maxLength": "MaxLength"}


class Table:
    """Nodes, checks, properties and names, each a list of C++ initialisers."""

    def __init__(self):
        self.nodes: list[str | None] = []
        self.checks: list[str] = []
        self.properties: list[str] = []
        self.names: list[str] = []
        self.index: dict[int, int] = {}      # id(schema node) -> its row: a $def is one node

    def strings(self, values: list[str]) -> tuple[int, int]:
        if not all(isinstance(v, str) for v in values):
            raise ValueError(f"the C++ loader compares strings only: {values}")
        first = len(self.names)
        self.names += [json.dumps(v) for v in values]
        return first, len(values)

    def node(self, node: dict[str, Any]) -> int:
        node = resolve(node)
        if id(node) in self.index:
            return self.index[id(node)]
        row = self.index[id(node)] = len(self.nodes)
        self.nodes.append(None)                     # children come after their parent
        checks = []        # this node's rows, appended together after its children's
        for key, value in node.items():
            if key in IGNORED:
                continue
            if key == "type":
                kinds = value if isinstance(value, list) else [value]
                checks.append(f"{{Op::Type, {' | '.join(TYPES[t] for t in kinds)}, 0, 0, 0, -1, nullptr}}")
            elif key in BOUNDS:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{key}: the C++ loader compares numbers only, got {value!r}")
                checks.append(f"{{Op::{BOUNDS[key]}, 0, {float(value)!r}, 0, 0, -1, nullptr}}")
            elif key in ("enum", "required"):
                first, count = self.strings(value)
                checks.append(f"{{Op::{key.capitalize()}, 0, 0, {first}, {count}, -1, nullptr}}")
            elif key == "not" and list(value) == ["enum"]:
                first, count = self.strings(value["enum"])
                checks.append(f"{{Op::NotEnum, 0, 0, {first}, {count}, -1, nullptr}}")
            elif key == "pattern":
                checks.append(f"{{Op::Pattern, 0, 0, 0, 0, -1, {json.dumps(value)}}}")
            elif key == "properties":
                rows = [(name, self.node(sub)) for name, sub in value.items()]
                checks.append(f"{{Op::Properties, 0, 0, {len(self.properties)}, {len(rows)}, -1, nullptr}}")
                self.properties += [f"{{{json.dumps(name)}, {r}}}" for name, r in rows]
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                op = "Items" if key == "items" else "AdditionalProperties"
                checks.append(f"{{Op::{op}, 0, 0, 0, 0, {self.node(value)}, nullptr}}")
            else:
                raise ValueError(f"the C++ loader does not implement {key!r} (runtime/cpp/src/manifest.cpp)")
        what = wording(node) if checks else "anything"
        self.nodes[row] = f"{{{json.dumps(what)}, {len(self.checks)}, {len(checks)}}}"
        self.checks += checks
        return row


# stand-ins for the latent's channel counts when graph_specs is written as a table: sizes no graph uses
_Z, _F = 1_000_003, 1_000_033


def spec_table() -> tuple[list[str], list[str], list[str]]:
    """graph_specs as rows: SPEC_GRAPHS (name, for SR models only), SPEC_TENSORS (graph, output,
    for SR models only, name, dtype, SPEC_DIMS range) and SPEC_DIMS, in graph_specs's order."""
    sr, gen = graph_specs(_Z, _F, True), graph_specs(_Z, _F, False)
    graphs, tensors, dims = [], [], []
    for gi, (name, spec) in enumerate(sr.items()):
        graphs.append(f"{{{json.dumps(name)}, {str(name not in gen).lower()}}}")
        for output, group in ((False, spec.inputs), (True, spec.outputs)):
            kept = [t.name for t in (getattr(gen[name], "outputs" if output else "inputs") if name in gen else ())]
            if kept != [t.name for t in group if t.name in kept]:
                raise ValueError(f"graph_specs: {name}'s generation tensors are not its SR tensors in order")
            for t in group:
                tensors.append(f"{{{gi}, {str(output).lower()}, {str(t.name not in kept).lower()}, "
                               f"{json.dumps(t.name)}, {json.dumps(t.dtype)}, {len(dims)}, {len(t.shape)}}}")
                for d in t.shape:
                    if isinstance(d, str):
                        dims.append(f"{{Dim::Symbol, 0, {json.dumps(d)}}}")
                    elif d in (_Z, _F):
                        dims.append(f"{{Dim::{'ZChannels' if d == _Z else 'FeatureChannels'}, 0, nullptr}}")
                    else:
                        dims.append(f"{{Dim::Size, {d}, nullptr}}")
    return graphs, tensors, dims


def header() -> str:
    t = Table()
    t.node(SCHEMA)
    graphs, tensors, dims = spec_table()
    rows = lambda items: "\n".join(f"    {x},  // {k}" for k, x in enumerate(items))  # noqa: E731
    return f"""// GENERATED from {SCHEMA_PATH.relative_to(ROOT).as_posix()} by `python -m export.schema_header`:
// do not edit.  The manifest schema as a table: manifest.cpp walks NODES[0] over manifest.json as
// export/manifest.py's schema_problem walks the schema (the same checks, order and wording).
#pragma once

namespace ldmind::core::schema {{

constexpr int MANIFEST_VERSION = {MANIFEST_VERSION};

enum Type : unsigned {{ NUL = 1, BOOLEAN = 2, INTEGER = 4, NUMBER = 8, STRING = 16, ARRAY = 32, OBJECT = 64 }};
enum class Op {{
    Type, Const, Enum, NotEnum, Required, Properties, AdditionalProperties, Items,
    MinItems, MaxItems, Minimum, ExclusiveMinimum, Maximum, ExclusiveMaximum, MaxLength, Pattern
}};

// one keyword of a node
struct Check {{
    Op op;
    unsigned types;        // Type: the JSON types allowed (an INTEGER is written without a fraction)
    double bound;          // Const, MinItems ... MaxLength
    int first, count;      // Enum, NotEnum, Required: NAMES[first, first + count); Properties: PROPERTIES[...]
    int node;              // Items, AdditionalProperties: the node every member follows
    const char* pattern;   // Pattern (ECMAScript)
}};
struct Node {{
    const char* what;      // what a value here must be, as the message says it
    int first, count;      // CHECKS[first, first + count), in the schema's order
}};
struct Property {{
    const char* name;
    int node;
}};

inline constexpr Node NODES[] = {{
{rows(t.nodes)}
}};
inline constexpr Check CHECKS[] = {{
{rows(t.checks)}
}};
inline constexpr Property PROPERTIES[] = {{
{rows(t.properties)}
}};
inline constexpr const char* NAMES[] = {{
{rows(t.names)}
}};

// export/specs.py graph_specs: every graph's inputs and outputs, in its order (a generation
// model has neither the graphs nor the tensors marked sr_only)
struct SpecGraph {{
    const char* name;
    bool sr_only;
}};
struct Dim {{
    enum Kind {{ Size, Symbol, ZChannels, FeatureChannels }} kind;   // the last two: the latent's counts
    long long size;        // Size
    const char* symbol;    // Symbol
}};
struct SpecTensor {{
    int graph;             // SPEC_GRAPHS row
    bool output, sr_only;
    const char* name;
    const char* dtype;
    int first, count;      // SPEC_DIMS[first, first + count)
}};

inline constexpr SpecGraph SPEC_GRAPHS[] = {{
{rows(graphs)}
}};
inline constexpr SpecTensor SPEC_TENSORS[] = {{
{rows(tensors)}
}};
inline constexpr Dim SPEC_DIMS[] = {{
{rows(dims)}
}};

}}  // namespace ldmind::core::schema
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.schema_header", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when the header differs from the schema's")
    a = p.parse_args(argv)
    text = header()
    if a.check:
        if not HEADER.is_file() or HEADER.read_text() != text:
            print(f"{HEADER} is stale: run `python -m export.schema_header`", file=sys.stderr)
            return 1
        return 0
    HEADER.write_text(text)
    print(f"wrote {HEADER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The shared math (``ldmind_ref.core``) and every module of the runtime import without torch.

The runtime must run where torch is not installed, and it uses ``ldmind_ref.core``: a module
of either that imports torch (at import time) breaks it.  Each package is imported in a fresh
interpreter where ``import torch`` raises (``sys.modules["torch"] = None``), module by module.
"""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

# every module of the packages named in argv, imported with torch unavailable:
# {"imported": [...], "failed": {module: "error"}}
IMPORT_ALL = r"""
import importlib, json, pkgutil, sys
sys.modules["torch"] = None
imported, failed = [], {}
for top in sys.argv[1:]:
    try:
        pkg = importlib.import_module(top)
    except Exception as e:
        failed[top] = f"{type(e).__name__}: {e}"
        continue
    imported.append(top)
    for m in pkgutil.walk_packages(pkg.__path__, top + ".", onerror=lambda name: None):
        if m.name.endswith(".__main__"):       # runs a program
            continue
        try:
            importlib.import_module(m.name)
            imported.append(m.name)
        except Exception as e:
            failed[m.name] = f"{type(e).__name__}: {e}"
print(json.dumps({"imported": imported, "failed": failed}))
"""


def import_without_torch(*packages: str) -> dict:
    r = subprocess.run([sys.executable, "-c", IMPORT_ALL, *packages], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_core_imports_without_torch():
    r = import_without_torch("ldmind_ref.core")
    assert r["failed"] == {}
    shared = {"diffusion", "coords", "latent_tiles", "tiled_sampling", "noise", "consistency", "images", "contract"}
    assert {f"ldmind_ref.core.{m}" for m in shared} <= set(r["imported"])


def test_runtime_imports_without_torch():
    r = import_without_torch("runtime")
    assert r["failed"] == {}
    assert {"runtime.cli", "runtime.commands", "runtime.pipeline", "runtime.request", "runtime.service"} <= set(r["imported"])

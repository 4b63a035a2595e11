"""Imports only downwards: no cycles among rope_viz modules, every import at the top, each module imports alone."""
from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "rope_viz"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def rope_viz_imports(node: ast.AST) -> set[str]:
    """rope_viz modules one import statement names (`from rope_viz import a, b`, `from rope_viz.c import x`)."""
    if isinstance(node, ast.Import):
        return {a.name.split(".")[1] for a in node.names if a.name.startswith("rope_viz.")}
    if isinstance(node, ast.ImportFrom):
        if node.module == "rope_viz" or (node.level == 1 and node.module is None):
            return {a.name for a in node.names if a.name in MODULES}
        if node.module and (node.module.startswith("rope_viz.") or node.level == 1):
            return {node.module.split(".")[-1] if node.level == 0 else node.module.split(".")[0]}
    return set()


def parse(module: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{module}.py").read_text(), filename=f"rope_viz/{module}.py")


def test_no_import_inside_a_function():
    """Every import at the top of its module: no function or method imports anything (rope_viz or not)."""
    found = []
    for module in MODULES:
        for func in ast.walk(parse(module)):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [f"rope_viz/{module}.py:{n.lineno} in {func.name}()" for n in ast.walk(func)
                          if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not found, "imports inside functions:\n" + "\n".join(sorted(set(found)))


def test_no_import_cycles():
    graph = {m: set().union(*(rope_viz_imports(n) for n in ast.walk(parse(m)))) - {m} for m in MODULES}
    assert graph["memory"] <= {"errors"} and graph["locking"] == set(), "the leaf modules import nothing of ours"
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


# One fresh interpreter loads the third-party packages once, then forks a child per module that imports
# that rope_viz module alone (nothing of rope_viz is loaded before it): seconds, not a torch import each.
ALONE = """
import os, sys, traceback
import numpy, PIL.Image, torch, timm, captum.attr, plotly.graph_objects, pandas, streamlit, safetensors.torch
assert not [m for m in sys.modules if m.startswith("rope_viz")]
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__("rope_viz." + name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    if os.waitpid(pid, 0)[1]:
        failed.append(name)
print("FAILED", " ".join(failed))
sys.exit(1 if failed else 0)
"""


def test_each_module_imports_alone_in_a_fresh_interpreter():
    run = subprocess.run([sys.executable, "-c", ALONE, *MODULES], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, timeout=600)
    assert run.returncode == 0 and "FAILED \n" in run.stdout + "\n", run.stdout[-2000:] + run.stderr[-3000:]

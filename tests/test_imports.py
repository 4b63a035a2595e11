"""The package's shape: imports only downwards through the layers, no cycles, every import at the top,
each module imports alone, only rope_viz/app imports Streamlit, and no module over 400 lines."""
from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "rope_viz"
# Layers, lowest first: a module may import its own layer (without cycles) and the ones below it.
LAYERS = (
    {"errors", "runtime"},
    {"rotary", "scenes"},
    {"adapters"},
    {"rope", "models"},
    {"measure", "training"},
    {"app"},
    {"__main__", "notebook"},
)
# Old module names kept for outside code: each only re-exports the module it names (sys.modules alias).
ALIASES = {"capture", "positions", "features", "families", "data", "attribution", "sweep", "anatomy"}
MAX_LINES = 400


def module_name(path) -> str:
    """'rope_viz/measure/capture.py' -> 'measure.capture'; a package's __init__ -> the package."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def imported(node: ast.AST) -> set[str]:
    """rope_viz modules one import statement names, as keys of MODULES (`from rope_viz.a import b` -> 'a.b' or 'a')."""
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
    out = set()
    for name in names:
        if name == "rope_viz" or not name.startswith("rope_viz."):
            continue
        rel = name[len("rope_viz."):]
        while rel and rel not in MODULES:
            rel = rel.rpartition(".")[0]
        if rel:
            out.add(rel)
    return out


def graph() -> dict[str, set[str]]:
    out = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        deps = set().union(*(imported(n) for n in ast.walk(tree))) - {name}
        # `from rope_viz.measure import capture` names the package too; a package is its __init__
        out[name] = {d for d in deps if not (d in MODULES and MODULES[d].stem == "__init__" and any(
            x.startswith(d + ".") for x in deps))}
    return out


def test_no_import_inside_a_function():
    """Every import at the top of its module: no function or method imports anything (rope_viz or not)."""
    found = []
    for name, path in MODULES.items():
        for func in ast.walk(ast.parse(path.read_text())):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [f"{path.relative_to(ROOT)}:{n.lineno} in {func.name}()" for n in ast.walk(func)
                          if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not found, "imports inside functions:\n" + "\n".join(sorted(set(found)))


def test_no_import_cycles():
    deps = graph()
    assert deps["runtime.memory"] <= {"errors"} and deps["runtime.locking"] == set(), "the leaf modules import nothing of ours"
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(deps[module]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in deps:
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_imports_only_go_down_the_layers():
    upward = [f"{m} -> {d}" for m, ds in graph().items() if m not in ALIASES and m != "__init__"
              for d in ds if layer_of(d) > layer_of(m)]
    assert not upward, "imports that go up a layer:\n" + "\n".join(sorted(upward))


def test_old_names_are_thin_aliases():
    for name in ALIASES:
        text = MODULES[name].read_text()
        assert "sys.modules[__name__] = _module" in text and len(text.splitlines()) <= 8, name


def test_only_the_app_imports_streamlit():
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(m.split(".")[0] == "streamlit" for m in mods) and not name.startswith("app"):
                found.append(name)
    assert not found, f"Streamlit imported outside rope_viz/app: {sorted(set(found))}"


def test_no_module_over_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


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
            __import__("rope_viz" + ("" if name == "__init__" else "." + name))
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
    names = [m for m in MODULES if m != "__main__"]
    run = subprocess.run([sys.executable, "-c", ALONE, *names], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}, timeout=600)
    assert run.returncode == 0 and "FAILED \n" in run.stdout + "\n", run.stdout[-2000:] + run.stderr[-3000:]

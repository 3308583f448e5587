"""The packages import one way: `modeling_ophclip` (remote code) <- `datasets_ophvl` <- `evaluate_suite` <-
`ophclip_train` <- `ophclip_cli`; `model_cards` imports none of them (the leaderboard of `evaluate_suite` and the
trainer write cards through it); no import cycle among our modules."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("modeling_ophclip", "datasets_ophvl", "evaluate_suite", "ophclip_train", "ophclip_cli")
PACKAGES = (*LAYERS, "model_cards")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module_level_only: bool = False) -> set[str]:
    """The modules of ours that `path` imports (relative imports resolved), anywhere in the file or only at module
    level (where an import runs when the module is imported)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return {module for module in found if module.split(".")[0] in PACKAGES}


def _our_files():
    return [path for package in PACKAGES for path in sorted((REPO_ROOT / package).rglob("*.py"))]


def test_each_package_imports_only_the_layers_below_it():
    wrong = []
    for path in _our_files():
        own = path.relative_to(REPO_ROOT).parts[0]
        for module in _imports(path):
            target = module.split(".")[0]
            if target == own:
                continue
            if own == "model_cards" or target == "model_cards" and own not in ("evaluate_suite", "ophclip_train"):
                wrong.append(f"{path.relative_to(REPO_ROOT)} imports {module}")
            elif own in LAYERS and target in LAYERS and LAYERS.index(target) > LAYERS.index(own):
                wrong.append(f"{path.relative_to(REPO_ROOT)} imports {module}, a layer above it")
    assert not wrong, "\n".join(wrong)


def test_importing_the_model_package_imports_nothing_else_of_ours():
    code = ("import sys, modeling_ophclip; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(PACKAGES) - {'modeling_ophclip'}!r}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_no_import_cycle_among_our_modules():
    modules = {_module_name(path): path for path in _our_files()}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for module in _imports(path, module_level_only=True):
            while module and module not in modules:  # `from pkg.mod import name` -> pkg.mod
                module = module.rpartition(".")[0]
            if module and module != name:
                edges.add(module)
        graph[name] = edges
    # A package's __init__ importing its own submodules is not a cycle of its own: the submodule importing the
    # package (`from . import x`) resolves to the already-initialising package.
    for name in graph:
        graph[name] = {m for m in graph[name] if not (name.startswith(m + ".") and modules[m].name == "__init__.py")}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)

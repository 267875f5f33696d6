"""The package's import graph: no cycles, and no layer imports a layer above it.

Every module under ``posttrain/`` is parsed with ``ast``; every ``import`` counts, at module level and inside
functions, except those under ``if TYPE_CHECKING:`` (annotations only, never executed). Layers, top to bottom
(a module may import its own layer, acyclically, and any layer below):

1. commands: ``cli``, ``experiments``, ``vllm_serve``, ``__main__``, ``_vllm_cli``
2. train: ``train`` (a run), ``recipe`` (reads a recipe and asks the method registry to validate it)
3. methods: ``methods`` (the registry and one module per method: its wiring)
4. trainers: ``trainers`` (trainer and config classes, TRL's private surface)
5. components: ``data``, ``rewards``, ``evaluation``, ``generation``, ``chat_backends``, ``principles``
6. models: ``models``, ``lm_head``, ``checkpoints``, ``model_card``, ``vllm_support``
7. leaves: ``losses``, ``errors``, ``paths``, ``jsonl``, ``yaml_file``, ``tracking``, ``trl_compat``, ``log``,
   the package itself

A new module must be given a layer here (the test names it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "posttrain"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("commands", ("cli", "experiments", "vllm_serve", "__main__", "_vllm_cli")),
    ("train", ("train", "recipe")),
    ("methods", ("methods",)),
    ("trainers", ("trainers",)),
    ("components", ("data", "rewards", "evaluation", "generation", "chat_backends", "principles")),
    ("models", ("models", "lm_head", "checkpoints", "model_card", "vllm_support")),
    ("leaves", ("losses", "errors", "paths", "jsonl", "yaml_file", "tracking", "trl_compat", "log")),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("posttrain", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom in the tree, inside functions too, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _target(name: str) -> str | None:
    """The posttrain module ``name`` refers to (``posttrain.x.y.func`` → ``posttrain.x.y``)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    is_package = path.name == "__init__.py"
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            names = [origin, *(f"{origin}.{alias.name}" for alias in node.names)]
        for name in names:
            if name.split(".")[0] == "posttrain":
                target = _target(name)
                if target is not None and target != module:
                    found.add(target)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def layer_of(module: str) -> int:
    if module == "posttrain":
        return len(LAYERS) - 1
    top = module.split(".")[1]
    for rank, (_, names) in enumerate(LAYERS):
        if top in names:
            return rank
    raise LookupError(module)


def test_every_module_has_a_layer():
    missing = []
    for module in MODULES:
        try:
            layer_of(module)
        except LookupError:
            missing.append(module)
    assert not missing, f"give these modules a layer in tests/test_architecture.py LAYERS: {missing}"


def test_the_parser_sees_function_level_imports():
    # the recipe loader imports the method registry inside load_recipe (startup time)
    assert "posttrain.methods" in GRAPH["posttrain.recipe"]
    assert "posttrain.methods.base" in GRAPH["posttrain.recipe"]


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in GRAPH:
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def test_no_import_cycles():
    assert _cycles() == []


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    monkeypatch.setitem(GRAPH, "posttrain.errors", GRAPH["posttrain.errors"] | {"posttrain.paths"})
    monkeypatch.setitem(GRAPH, "posttrain.paths", GRAPH["posttrain.paths"] | {"posttrain.errors"})
    assert ["posttrain.errors", "posttrain.paths"] in _cycles()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_layer_above_it(module):
    rank = layer_of(module)
    upward = sorted(
        f"{target} ({LAYERS[layer_of(target)][0]})" for target in GRAPH[module] if layer_of(target) < rank
    )
    assert not upward, f"{module} ({LAYERS[rank][0]}) imports a layer above it: {upward}"

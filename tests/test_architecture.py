"""The package's architecture as tests: layers, import direction, no cycles, sizes, ``__all__``.

Layers of ``analysis`` (see ``analysis/__init__.py``): the base modules import none of the
layers; ``data`` imports base; ``design`` imports base and ``data``; ``outcomes`` imports base,
``data`` and ``design``. ``analysis`` never imports ``synthetic`` or ``evaluation``;
``synthetic`` never imports ``evaluation``.

Size limits: a module over ``MAX_MODULE_LINES`` lines or a function over ``MAX_FUNCTION_LINES``
lines (a function's lines counted without its docstring) needs a reason, written as a comment ``# long: <reason>`` (for a function: on the lines
just above its ``def`` or in the first lines of its body; for a module: anywhere in its first 60 lines).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analysis", "synthetic", "evaluation")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
REASON = re.compile(r"#\s*(length|long):\s*\S")

# layer of a module inside analysis -> layers it may import
LAYERS = {
    "base": {"base"},
    "data": {"base", "data"},
    "design": {"base", "data", "design"},
    "outcomes": {"base", "data", "design", "outcomes"},
}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the project modules a file imports (at any depth in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    out: set[str] = set()
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:  # annotations only: not an import at run time
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "analysis":
        return None
    if len(parts) > 1 and parts[1] in ("data", "design", "outcomes"):
        return parts[1]
    return "base"


ALL_MODULES = {_name(p): p for pkg in PACKAGES for p in _modules(pkg)}


def _resolve(name: str) -> str | None:
    """The project module an imported name refers to (a module, or the module defining it)."""
    while name:
        if name in ALL_MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in ALL_MODULES.items():
        targets = {_resolve(n) for n in _imports(path)}
        graph[module] = {t for t in targets if t and t != module}
    return graph


@pytest.mark.parametrize("module", sorted(m for m in ALL_MODULES if m.startswith("analysis")))
def test_analysis_layers_import_only_downwards(module):
    allowed = LAYERS[_layer(module)]
    for target in _graph()[module]:
        assert target.split(".")[0] == "analysis", f"{module} imports {target}"
        if target == "analysis":  # the package docstring/version only
            continue
        assert _layer(target) in allowed, f"{module} ({_layer(module)}) imports {target}"


def test_synthetic_never_imports_evaluation():
    graph = _graph()
    for module in (m for m in graph if m.startswith("synthetic")):
        bad = [t for t in graph[module] if t.startswith("evaluation")]
        assert not bad, f"{module} imports {bad}"


def test_no_import_cycle():
    graph = _graph()
    # packages' __init__ importing their own modules is not a cycle of concepts
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("module", sorted(ALL_MODULES))
def test_module_size_has_a_reason(module):
    lines = ALL_MODULES[module].read_text(encoding="utf-8").splitlines()
    if len(lines) > MAX_MODULE_LINES:
        head = "\n".join(lines[:60])
        assert REASON.search(head), (
            f"{module}: {len(lines)} lines; split it or give a '# long:' reason"
        )


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function without its docstring (numpydoc docstrings are long by design)."""
    body = fn.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        doc = body[0].end_lineno - body[0].lineno + 1
    else:
        doc = 0
    return fn.end_lineno - fn.lineno + 1 - doc


@pytest.mark.parametrize("module", sorted(m for m in ALL_MODULES if m.startswith("analysis")))
def test_function_size_has_a_reason(module):
    path = ALL_MODULES[module]
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    too_long = []
    for fn in _functions(ast.parse(source)):
        n = _code_lines(fn)
        if n <= MAX_FUNCTION_LINES:
            continue
        first = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
        after_doc = fn.body[0].end_lineno if len(fn.body) > 1 else fn.lineno
        window = lines[max(0, first - 4) : fn.lineno + 3] + lines[after_doc : after_doc + 5]
        if not any(REASON.search(line) for line in window):
            too_long.append(f"{fn.name} ({n} code lines, line {fn.lineno})")
    assert not too_long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {too_long}"


@pytest.mark.parametrize(
    "module",
    sorted(
        m
        for m, p in ALL_MODULES.items()
        if m.startswith("analysis")
        and p.name != "__init__.py"
        and not p.name.startswith("_")
        and p.name != "__main__.py"
    ),
)
def test_public_analysis_modules_declare_all(module):
    tree = ast.parse(ALL_MODULES[module].read_text(encoding="utf-8"))
    names = {
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    assert "__all__" in names, f"{module} has no __all__"


def test_help_shows_the_layers():
    import analysis

    doc = analysis.__doc__
    for layer in ("analysis.data", "analysis.design", "analysis.outcomes", "base"):
        assert layer in doc

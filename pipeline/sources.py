"""The project's own source modules: which of them a module imports, and a digest of their code.

DVC's `deps` of a stage must cover every project module its command imports (a test derives them
from here and compares with dvc.yaml), and a training resumes only from a checkpoint made by the
same code (the digest enters its fingerprint). Imports are read from the source (every `import`,
inside functions too, but not those under `if TYPE_CHECKING:`, which never run), so nothing is
imported to find them. Imports nothing of the project.
"""
from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the folder holding the `pipeline` and `model` packages
PACKAGES = ("pipeline", "model")


def module_file(name: str) -> Path | None:
    """The file of project module `name` (a package's __init__.py), or None if it is not one."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """Every module name an import statement of module `name` refers to (absolute)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up `level - 1` more
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:  # `from package import module` imports the module, else the package
                submodule = f"{base}.{alias.name}"
                found.add(submodule if module_file(submodule) is not None else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@lru_cache(maxsize=None)
def imports(name: str) -> frozenset[str]:
    """The project modules module `name` imports directly (by its own import statements)."""
    path = module_file(name)
    if path is None:
        return frozenset()
    tree = ast.parse(path.read_text(), str(path))
    names = _imported_names(tree, name, path.name == "__init__.py")
    return frozenset(n for n in names if module_file(n) is not None and n != name)


def _parents(name: str) -> list[str]:
    """The packages whose __init__ runs when `name` is imported: pipeline.a.b -> pipeline, pipeline.a."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(name: str) -> list[str]:
    """Every project module that importing `name` runs (itself, its parent packages and all that
    they import, transitively), sorted."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen or module_file(current) is None:
            continue
        seen.add(current)
        todo.extend(imports(current))
        todo.extend(_parents(current))
    return sorted(seen)


def all_modules() -> list[str]:
    """Every module of the project's packages."""
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def cycles() -> list[list[str]]:
    """Import circles among the project's modules (by their explicit imports), each as a list."""
    graph = {m: sorted(imports(m)) for m in all_modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongly_connected(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, []):
            if w not in index:
                strongly_connected(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            strongly_connected(module)
    return found


def _code(path: Path) -> str:
    """The module's syntax tree without docstrings: comments, layout and docs do not count."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def digest(modules: list[str]) -> str:
    """sha256 of the code of `modules` (their syntax trees, docstrings and comments left out)."""
    h = hashlib.sha256()
    for name in sorted(modules):
        h.update(name.encode() + b"\0" + _code(module_file(name)).encode() + b"\0")
    return h.hexdigest()


if __name__ == "__main__":  # python -m pipeline.sources: the import circles, if any
    circles = cycles()
    for circle in circles:
        print("import circle: " + " -> ".join(circle))
    print(f"{len(all_modules())} modules, {len(circles)} import circles")
    raise SystemExit(1 if circles else 0)

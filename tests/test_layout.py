"""The house's rules, read from the source: the layers import what they may, no module imports
itself back through others, modules stay small unless they hold one concept, and nothing links
outside the repository."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _package_dirs() -> dict[str, Path]:
    """Each installed package's folder, as pyproject.toml's package-dir maps it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in config["package-dir"].items()}


def _modules() -> dict[str, Path]:
    """Every module of the installed package by its dotted name."""
    found: dict[str, Path] = {}
    for package, folder in _package_dirs().items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, *, top_level_only: bool) -> Iterator[str]:
    """The modules `path` imports (absolute names), skipping `if TYPE_CHECKING:` blocks and,
    with `top_level_only`, imports inside functions (made when called, not when imported)."""
    module = next(name for name, where in MODULES.items() if where == path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def walk(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, ast.If) and _type_checking(node):
                continue
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from package import module` is an import of that module; of the package's
                # own body only when a name that is no module is taken from it
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                yield from (name for name in submodules if name in MODULES)
                if any(name not in MODULES for name in submodules):
                    yield base
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and top_level_only:
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.AST):
                    yield from walk(inner)  # type: ignore[arg-type]

    yield from walk(ast.parse(path.read_text()).body)


def _importers(prefix: str, *, top_level_only: bool = False) -> dict[str, set[str]]:
    return {
        name: set(_imports(path, top_level_only=top_level_only))
        for name, path in MODULES.items()
        if name == prefix or name.startswith(prefix + ".")
    }


def _matching(imported: set[str], forbidden: tuple[str, ...]) -> set[str]:
    return {
        name for name in imported if any(name == f or name.startswith(f + ".") for f in forbidden)
    }


def test_the_engine_imports_no_framework_and_no_outer_layer() -> None:
    forbidden = ("fastapi", "starlette", "uvicorn", "celery", "kombu", "procexec.api")
    forbidden += ("procexec.workers", "procexec.cli", "procexec.service", "procexec.examples")
    found = {
        module: sorted(bad)
        for module, imported in _importers("procexec.engine").items()
        if (bad := _matching(imported, forbidden))
    }
    assert found == {}


def test_the_workers_never_import_the_api() -> None:
    found = {
        module: sorted(bad)
        for module, imported in _importers("procexec.workers").items()
        if (bad := _matching(imported, ("procexec.api", "fastapi", "starlette")))
    }
    assert found == {}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph` (each as a path that comes back to its start)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_module_imports_itself_back() -> None:
    """No cycle among the modules' import-time imports (`procexec` imports its parts lazily)."""
    graph = {
        module: {name for name in imported if name in MODULES and name != module}
        for module, imported in _importers("procexec", top_level_only=True).items()
    }
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


#: modules over the line limit, each holding one concept, and why it is not split
ONE_CONCEPT: dict[str, str] = {
    "procexec.engine.store.mongo": "the MongoDB store, one class over one client",
}
LINE_LIMIT = 400


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_over_the_limit_holds_one_concept(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    if module in ONE_CONCEPT:
        assert lines > LINE_LIMIT, f"{module} is {lines} lines now: drop it from ONE_CONCEPT"
    else:
        assert lines <= LINE_LIMIT, f"{module} is {lines} lines: split it, or say why not"


def test_nothing_refers_to_the_project_s_private_folders() -> None:
    """What users get stands on its own: no code, doc or setting names `../shared` or the
    workplace's folders (tests/docs checks that the docs' relative links resolve inside)."""
    private = re.compile(r"\.\./shared|/work/")
    shipped = [*_package_dirs().values(), ROOT / "docs", ROOT / "bench"]
    files = [
        path for folder in shipped for path in folder.rglob("*") if path.suffix in {".py", ".md"}
    ]
    files += [ROOT / name for name in ("README.md", "pyproject.toml", "docker-compose.yml")]
    offenders = [str(path.relative_to(ROOT)) for path in files if private.search(path.read_text())]
    assert offenders == []


def test_every_package_folder_is_installed() -> None:
    """pyproject.toml lists the packages by hand (package-dir maps them): a folder missing from
    the list would be missing from the wheel."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {name for name in MODULES if MODULES[name].name == "__init__.py"}
    # folders of data files alone: the examples' samples, the dashboard's page and scripts
    assert packages == set(config["packages"]) - {"procexec.examples.data", "procexec.api.web"}


def test_no_private_name_is_imported_across_modules() -> None:
    """A name two modules need is public in the one that owns it."""
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("procexec"):
                found += [
                    f"{module}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert found == []

"""The package's layer edges, checked from the source (every import statement, module level and inside functions):

- no module under ``kernels/`` imports ``attnx.store`` (kernels take numpy arrays);
- no module under ``engine/``, ``analysis/``, ``store/``, ``kernels/``, ``scaleout/`` imports the top-level
  ``attnx`` package (the facade imports them, not the other way round);
- the modules of ``store/``, and of the whole package, import each other one way only (no cycle, lazy imports
  included).
"""

from __future__ import annotations

import ast
from pathlib import Path

import attnx

SRC = Path(attnx.__file__).resolve().parent
LOWER_LAYERS = ("engine", "analysis", "store", "kernels", "scaleout")


def module_name(path: Path) -> str:
    parts = ["attnx", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def imported_modules(name: str) -> list[tuple[int, str, str | None]]:
    """``(line, module, imported name)`` for every import in module ``name``, resolved to absolute names.
    ``from P import X`` counts as an import of ``P.X`` when ``P.X`` is a module of the package, else of ``P``
    (the third field then holds ``X``)."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    package = name if is_package(name) else name.rpartition(".")[0]
    out: list[tuple[int, str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((node.lineno, sub, None) if sub in MODULES else (node.lineno, base, alias.name))
    return out


def in_layer(name: str, layer: str) -> bool:
    return name == f"attnx.{layer}" or name.startswith(f"attnx.{layer}.")


def test_the_module_table_finds_the_package() -> None:
    assert "attnx.kernels.common" in MODULES and "attnx.store.reader" in MODULES and is_package("attnx.store")


def test_kernels_never_import_the_store() -> None:
    bad = [
        f"{name}:{line} imports {target}"
        for name in MODULES
        if in_layer(name, "kernels")
        for line, target, _ in imported_modules(name)
        if in_layer(target, "store")
    ]
    assert not bad, "kernels take numpy arrays; move what needs the store to the caller:\n" + "\n".join(bad)


def test_lower_layers_never_import_the_facade() -> None:
    bad = [
        f"{name}:{line} imports attnx" + (f" ({what})" if what else "")
        for name in MODULES
        if any(in_layer(name, layer) for layer in LOWER_LAYERS)
        for line, target, what in imported_modules(name)
        if target == "attnx"
    ]
    assert not bad, "import the submodule that holds it (attnx._version for the version):\n" + "\n".join(bad)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a closed path, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def import_graph(layer: str | None = None) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (lazy imports included); within ``layer`` only if given."""
    names = [name for name in MODULES if layer is None or in_layer(name, layer)]
    return {
        name: {target for _, target, _ in imported_modules(name) if target in names and target != name}
        for name in names
    }


def test_store_modules_import_each_other_one_way() -> None:
    cycle = find_cycle(import_graph("store"))
    assert cycle is None, "import cycle in attnx.store: " + " -> ".join(cycle or [])


def test_no_import_cycle_in_the_package() -> None:
    """Lazy imports count too: a function-level import that closes a loop is a layer edge pointing the wrong way."""
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_version_has_one_home() -> None:
    """pyproject reads the version from attnx._version, which the facade re-exports."""
    import tomllib

    from attnx._version import __version__

    project = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"] and "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "attnx._version.__version__"}
    assert attnx.__version__ == __version__

"""The package's import structure stays as built.

Reads every module of ``sima_fast`` (and ``kernels/``, installed as
``sima_fast.kernels``) with :mod:`ast`, imports inside functions included, and
checks two rules (docs/architecture.md, "Layering rules"):

* no import cycle among ``sima_fast`` modules (imports guarded by
  ``if TYPE_CHECKING:`` are annotations only and do not count);
* no private name (one starting with ``_``) imported from another
  ``sima_fast`` module. Kernels may share their own private kernels with
  each other; importing a private *module* (``sima_fast._atomic``) for its
  public names is fine.

The module graph comes from the source files, so the test also runs from an
installed package (it reads the files next to the imported modules).
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest

import sima_fast
import sima_fast.kernels

PACKAGE = "sima_fast"
KERNELS = "sima_fast.kernels"


def _module_files() -> dict[str, Path]:
    """Map every module name of the package to its source file."""
    roots = {
        PACKAGE: Path(sima_fast.__file__).parent,
        KERNELS: Path(sima_fast.kernels.__file__).parent,
    }
    modules: dict[str, Path] = {}
    for prefix, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if prefix == PACKAGE and parts and parts[0] == "kernels":
                continue  # an editable layout never has it here; a wheel does: read it once
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts]) if parts else prefix
            modules[name] = path
    return modules


MODULES = _module_files()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Yield every import node, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve_base(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _owner(name: str) -> str | None:
    """The package module that defines ``name`` (a module name or a dotted attribute)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _edges() -> tuple[dict[str, set[str]], list[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    private: list[str] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _owner(alias.name)
                    if target and target != module:
                        graph[module].add(target)
                continue
            base = _resolve_base(module, node)
            if not base.startswith(PACKAGE):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in MODULES:  # a submodule
                    target = full
                else:
                    target = _owner(base)
                    if (
                        target
                        and target != module
                        and alias.name.startswith("_")
                        and not alias.name.startswith("__")
                        and not (module.startswith(KERNELS) and target.startswith(KERNELS))
                    ):
                        private.append(f"{module} imports {alias.name} from {target}")
                if target and target != module:
                    graph[module].add(target)
        private.extend(_private_attributes(module, tree))
    return graph, private


def _private_attributes(module: str, tree: ast.AST) -> list[str]:
    """``alias._name`` where ``alias`` is another package module bound by an import."""
    aliases: dict[str, str] = {}
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES and alias.asname:
                    aliases[alias.asname] = alias.name
        else:
            base = _resolve_base(module, node)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in MODULES:
                    aliases[alias.asname or alias.name] = full
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            target = aliases[node.value.id]
            if target != module and not (
                module.startswith(KERNELS) and target.startswith(KERNELS)
            ):
                found.append(f"{module} uses {node.value.id}.{node.attr} of {target}")
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_reads_the_whole_package():
    assert "sima_fast.imaging" in MODULES
    assert "sima_fast.kernels.moments" in MODULES
    assert all(os.path.isfile(p) for p in MODULES.values())


def test_no_import_cycles():
    graph, _ = _edges()
    cycles = _cycles(graph)
    assert not cycles, "import cycles among sima_fast modules:\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_no_private_names_across_modules():
    _, private = _edges()
    assert not private, "private names imported across modules:\n" + "\n".join(private)


KERNEL_IMPORTS = {"numpy", "numba", "scipy", *sys.stdlib_module_names}


def _kernel_import_problems(module: str, tree: ast.AST) -> list[str]:
    """Imports of a kernel module other than the standard library, numerics and kernels."""
    bad = []
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            names = [_resolve_base(module, node)] if node.level == 0 else [KERNELS]
        for name in names:
            if not (name.startswith(KERNELS) or name.split(".")[0] in KERNEL_IMPORTS):
                bad.append(f"{module} imports {name}")
    return bad


def test_kernels_import_only_numerics():
    """Kernels know only arrays: the standard library, numpy, numba, scipy and each other."""
    bad = []
    for module, path in MODULES.items():
        if module.startswith(KERNELS):
            bad += _kernel_import_problems(module, ast.parse(path.read_text(encoding="utf-8")))
    assert not bad, "\n".join(bad)


# --- the checker itself must be able to fail ------------------------------


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_cycle_finder(graph, expected):
    assert _cycles(graph) == expected


def test_private_attribute_of_an_imported_module_is_found():
    tree = ast.parse("from sima_fast import spikes as sp\ndef f():\n    return sp._prepare(1)\n")
    found = _private_attributes("sima_fast.distributed", tree)
    assert found == ["sima_fast.distributed uses sp._prepare of sima_fast.spikes"]


def test_kernel_rule_reports_api_and_heavy_imports():
    tree = ast.parse("import numpy\nimport h5py\nfrom sima_fast.ROI import ROI\nimport math\n")
    assert sorted(_kernel_import_problems("sima_fast.kernels.x", tree)) == [
        "sima_fast.kernels.x imports h5py",
        "sima_fast.kernels.x imports sima_fast.ROI",
    ]


def test_type_checking_imports_are_skipped():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from sima_fast.imaging import ImagingDataset\n"
        "def f():\n    from sima_fast.ROI import ROI\n"
    )
    names = [n.module for n in _imports(tree) if isinstance(n, ast.ImportFrom)]
    assert "sima_fast.imaging" not in names
    assert "sima_fast.ROI" in names


def test_every_subpackage_is_installed():
    # pyproject lists the packages explicitly: a new subpackage missing there
    # works from the checkout (editable install) and is absent from a wheel.
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    with open(root / "pyproject.toml", "rb") as fh:
        listed = set(tomllib.load(fh)["tool"]["setuptools"]["packages"])
    found = {
        "sima_fast." + ".".join(p.parent.relative_to(root / "sima_fast").parts)
        for p in (root / "sima_fast").rglob("__init__.py")
        if p.parent != root / "sima_fast"
    } | {"sima_fast", "sima_fast.kernels"}
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"

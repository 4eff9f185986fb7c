"""Every public callable documents its arguments and its result (numpydoc).

ruff's pydocstyle rules (numpy convention, ``pyproject.toml``) check the form
of the docstrings that exist, and that a ``Parameters`` section names every
argument; they cannot see a missing section. This test reads the source with
:mod:`ast` and requires, for every public function, method and class of
``sima_fast`` and ``sima_fast.kernels`` (names without a leading underscore,
in any module):

* a ``Parameters`` section when it takes arguments (for a class, on the class
  docstring, which documents ``__init__``);
* a ``Returns`` (or ``Yields``) section when it returns a value.

Properties, setters, overloads and methods of private classes are exempt. A
method with no docstring of its own that overrides a method documented in
another class of the package inherits that docstring (as ``inspect.getdoc``
and Sphinx do) and passes when the inherited one does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import sima_fast
import sima_fast.kernels

ROOTS = [Path(sima_fast.__file__).parent, Path(sima_fast.kernels.__file__).parent]
SECTION = r"^\s*{}\s*\n\s*-{{3,}}\s*$"


def _files() -> list[Path]:
    seen: dict[Path, None] = {}
    for root in ROOTS:
        for path in sorted(root.rglob("*.py")):
            seen.setdefault(path.resolve(), None)
    return list(seen)


def _has_section(doc: str | None, *names: str) -> bool:
    return bool(doc) and any(
        re.search(SECTION.format(name), doc, flags=re.MULTILINE) for name in names
    )


def _decorator_names(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = set()
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute):
            names.add(target.attr)
        elif isinstance(target, ast.Name):
            names.add(target.id)
    return names


def _arguments(node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[str]:
    args = node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    if method and names and "staticmethod" not in _decorator_names(node):
        names = names[1:]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return names


def _own_nodes(node: ast.AST):
    """The nodes of a function body, not descending into nested functions or classes."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        yield child
        stack.extend(ast.iter_child_nodes(child))


def _returns_value(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[bool, bool]:
    """(returns a value, is a generator)."""
    own = list(_own_nodes(node))
    generator = any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in own)
    value = any(
        isinstance(n, ast.Return)
        and n.value is not None
        and not (isinstance(n.value, ast.Constant) and n.value.value is None)
        for n in own
    )
    return value, generator


def _documented_methods(paths: list[Path]) -> set[str]:
    """Names of methods that have a docstring of their own in some package class."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                        ast.get_docstring(item)
                    ):
                        names.add(item.name)
    return names


def _problems_in(path: Path, inherited: frozenset[str] = frozenset()) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = f"{path.parent.name}/{path.name}"
    out: list[str] = []

    def check_function(node, method: bool, owner: str) -> None:
        decorators = _decorator_names(node)
        if node.name.startswith("_") or decorators & {"property", "setter", "overload"}:
            return
        doc = ast.get_docstring(node)
        if method and doc is None and node.name in inherited:
            return  # inherits the documented docstring of the method it overrides
        name = f"{where}:{node.lineno} {owner}{node.name}"
        if _arguments(node, method) and not _has_section(doc, "Parameters"):
            out.append(f"{name}: no Parameters section")
        value, generator = _returns_value(node)
        if generator and not _has_section(doc, "Yields"):
            out.append(f"{name}: no Yields section")
        elif value and not generator and not _has_section(doc, "Returns"):
            out.append(f"{name}: no Returns section")

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            check_function(node, method=False, owner="")
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            doc = ast.get_docstring(node)
            init = next(
                (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
                None,
            )
            if (
                init is not None
                and _arguments(init, True)
                and not _has_section(doc, "Parameters", "Attributes")
            ):
                out.append(f"{where}:{node.lineno} class {node.name}: no Parameters section")
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    check_function(item, method=True, owner=f"{node.name}.")
    return out


def test_every_public_callable_has_numpydoc_sections():
    files = _files()
    inherited = frozenset(_documented_methods(files))
    problems = [p for path in files for p in _problems_in(path, inherited)]
    assert not problems, f"{len(problems)} docstrings lack sections:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(a):\n    '''Do.'''\n", ["no Parameters"]),
        ("def f():\n    '''Do.'''\n    return 1\n", ["no Returns"]),
        ("def f():\n    '''Do.'''\n    yield 1\n", ["no Yields"]),
        ("def _f(a):\n    return a\n", []),
        (
            "def f(a):\n    '''Do.\n\n    Parameters\n    ----------\n    a : int\n"
            "        A.\n\n    Returns\n    -------\n    int\n        B.\n    '''\n    return a\n",
            [],
        ),
        ("class C:\n    '''C.'''\n    def __init__(self, a):\n        pass\n", ["no Parameters"]),
        ("class C:\n    @property\n    def p(self):\n        return 1\n", []),
        ("class C(B):\n    def inherited(self, a):\n        return a\n", []),
        (
            "class C(B):\n    def other(self, a):\n        return a\n",
            ["no Parameters", "no Returns"],
        ),
    ],
)
def test_checker_can_fail(tmp_path, source, expected):
    path = tmp_path / "mod.py"
    path.write_text(source)
    problems = _problems_in(path, frozenset({"inherited"}))
    assert len(problems) == len(expected)
    for problem, text in zip(problems, expected):
        assert text in problem

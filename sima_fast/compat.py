"""Run unchanged SIMA scripts on sima_fast: an opt-in ``sima`` import alias.

``import sima_fast as sima`` is the documented way to switch. Scripts that
also use ``from sima.X import Y`` or ``import sima.motion`` need the name
``sima`` itself; :func:`install_sima_alias` provides it, for this process
only, without touching any installed package:

- ``sima`` and every ``sima.X.Y`` are imported as ``sima_fast.X.Y``, lazily,
  on first import. ``sima.X.Y`` *is* the module ``sima_fast.X.Y`` (same
  classes and functions), so ``isinstance`` checks hold and pickles that
  name ``sima.ROI.ROI`` load as sima_fast objects (the project's own
  directory loader keeps its allow-list; this alias does not widen it);
- two modules are thin views instead: ``sima`` itself (attributes are
  sima_fast's) and ``sima.misc``, whose ``example_data``, ``example_tiff``,
  ``example_hdf5`` and ``example_imagej_rois`` return files in SIMA's layout
  (:func:`sima_fast.misc.sima_example_tiff` and friends), as SIMA's scripts
  and tests expect. ``sima_fast.misc`` itself is unchanged;
- a module sima_fast does not have raises :class:`ModuleNotFoundError`
  naming both the SIMA module and the sima_fast module looked for.

The alias refuses to install when a real SIMA is importable (or already
imported), so it never hides a SIMA install by accident;
``force=True`` shadows an importable one.

To run a script unchanged: ``sima-fast run-sima script.py ARGS...`` or
``python -m sima_fast.compat script.py ARGS...``. To run SIMA's own test
suite against sima_fast: ``pytest -p sima_fast.compat ...`` installs the
alias before the tests are collected (see docs/migrating.md).

Examples
--------
>>> from sima_fast.compat import install_sima_alias, uninstall_sima_alias
>>> install_sima_alias()
True
>>> from sima.ROI import ROI
>>> import sima_fast.ROI
>>> ROI is sima_fast.ROI.ROI
True
>>> uninstall_sima_alias()
True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import runpy
import sys
import types
from collections.abc import Sequence
from typing import Any

__all__ = [
    "SimaAliasConflictError",
    "install_sima_alias",
    "main",
    "pytest_configure",
    "run_sima_script",
    "run_with_status",
    "sima_alias_installed",
    "uninstall_sima_alias",
]

_ALIAS = "sima"
_TARGET = "sima_fast"
#: ``sima.misc`` names that give SIMA's example layout under the alias.
_MISC_OVERRIDES = {
    "example_data": "sima_example_data",
    "example_tiff": "sima_example_tiff",
    "example_hdf5": "sima_example_hdf5",
    "example_imagej_rois": "sima_example_imagej_rois",
}


class SimaAliasConflictError(ImportError):
    """The ``sima`` alias cannot be installed: a real SIMA is importable or imported.

    Examples
    --------
    >>> issubclass(SimaAliasConflictError, ImportError)
    True
    """


def _target_name(fullname: str) -> str:
    return _TARGET + fullname[len(_ALIAS) :]


def _is_alias_name(fullname: str) -> bool:
    return fullname == _ALIAS or fullname.startswith(_ALIAS + ".")


class _View(types.ModuleType):
    """A module named ``sima`` or ``sima.misc`` whose attributes are a sima_fast module's."""

    def __init__(self, name: str, target: types.ModuleType, overrides: dict[str, Any]) -> None:
        super().__init__(name, target.__doc__)
        self.__dict__.update(overrides)
        self.__dict__["_sima_fast_target"] = target
        self.__path__ = list(getattr(target, "__path__", []))
        self.__file__ = getattr(target, "__file__", None)

    def __getattr__(self, name: str) -> Any:
        target = self.__dict__["_sima_fast_target"]
        value = getattr(target, name)  # AttributeError names the sima_fast module
        if isinstance(value, types.ModuleType) and value.__name__ == f"{target.__name__}.{name}":
            # A submodule: import it through the alias (sima.misc is a view too).
            return importlib.import_module(f"{self.__name__}.{name}")
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self.__dict__["_sima_fast_target"])) | set(self.__dict__))


def _view(fullname: str, target: types.ModuleType) -> types.ModuleType:
    if fullname == f"{_ALIAS}.misc":
        overrides = {name: getattr(target, real) for name, real in _MISC_OVERRIDES.items()}
        return _View(fullname, target, overrides)
    return _View(fullname, target, {})


class _AliasLoader(importlib.abc.Loader):
    """Load ``sima.X`` as the already imported ``sima_fast.X`` (or a view of it)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(self.target)
        if spec.name in (_ALIAS, f"{_ALIAS}.misc"):
            return _view(spec.name, module)
        # The import system sets ``__spec__`` on the module it gets; keep the real one.
        self._spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        if self._spec is not None:
            module.__spec__ = self._spec


class _SimaAliasFinder(importlib.abc.MetaPathFinder):
    """Find ``sima`` and ``sima.*`` as the sima_fast modules of the same path."""

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not _is_alias_name(fullname):
            return None
        name = _target_name(fullname)
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            found = None
        if found is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: the sima alias looks for {name!r}, which "
                "sima_fast does not have (see docs/migrating.md)",
                name=fullname,
            )
        is_package = found.submodule_search_locations is not None
        return importlib.util.spec_from_loader(
            fullname, _AliasLoader(name), origin=found.origin, is_package=is_package
        )


def _installed_finder() -> _SimaAliasFinder | None:
    for finder in sys.meta_path:
        if isinstance(finder, _SimaAliasFinder):
            return finder
    return None


def sima_alias_installed() -> bool:
    """Tell whether the ``sima`` alias is installed in this process.

    Returns
    -------
    bool
    """
    return _installed_finder() is not None


def _real_sima() -> str | None:
    """Where a real SIMA would be imported from, or None."""
    loaded = sys.modules.get(_ALIAS)
    if loaded is not None and not isinstance(loaded, _View):
        return getattr(loaded, "__file__", None) or "an imported module"
    for finder in sys.meta_path:
        if isinstance(finder, _SimaAliasFinder) or not hasattr(finder, "find_spec"):
            continue
        try:
            spec = finder.find_spec(_ALIAS, None)
        except (ImportError, ValueError, AttributeError, TypeError):
            continue
        if spec is not None:
            return spec.origin or str(list(spec.submodule_search_locations or [])) or "a finder"
    return None


def install_sima_alias(force: bool = False) -> bool:
    """Make ``import sima`` and ``import sima.X.Y`` give sima_fast, in this process.

    Parameters
    ----------
    force : bool, optional
        Install even when a real SIMA is importable, shadowing it for the
        rest of the process (default False: refuse).

    Returns
    -------
    bool
        True if the alias was installed now, False if it already was.

    Raises
    ------
    SimaAliasConflictError
        If a real SIMA is importable and ``force`` is False, or if a real
        ``sima`` module is already imported (even with ``force``: its modules
        are in use and cannot be replaced).
    ArgumentTypeError
        If ``force`` is not a bool.
    """
    from sima_fast._validate import check_bool

    force = check_bool("force", force)
    if sima_alias_installed():
        return False
    loaded = sys.modules.get(_ALIAS)
    if loaded is not None and not isinstance(loaded, _View):
        raise SimaAliasConflictError(
            f"a real 'sima' is already imported ({getattr(loaded, '__file__', loaded)!r}); "
            "install the sima_fast alias before anything imports sima, or use "
            "'import sima_fast as sima'"
        )
    where = _real_sima()
    if where is not None and not force:
        raise SimaAliasConflictError(
            f"a real SIMA is installed ({where}); the sima alias would hide it. Use "
            "'import sima_fast as sima' in your script, run it in an environment without "
            "SIMA, or pass force=True (command line: --force) to shadow SIMA in this process"
        )
    sys.meta_path.insert(0, _SimaAliasFinder())
    return True


def uninstall_sima_alias() -> bool:
    """Remove the ``sima`` alias and forget the ``sima`` modules it imported.

    Modules that already hold a reference to ``sima`` keep it.

    Returns
    -------
    bool
        True if the alias was installed.
    """
    finder = _installed_finder()
    if finder is None:
        return False
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _SimaAliasFinder)]
    for name in [n for n in sys.modules if _is_alias_name(n)]:
        module = sys.modules[name]
        if isinstance(module, _View) or getattr(module, "__name__", "").startswith(_TARGET):
            del sys.modules[name]
    return True


def run_sima_script(
    path: str | os.PathLike, args: Sequence[str] = (), force: bool = False
) -> dict[str, Any]:
    """Run a SIMA script unchanged on sima_fast, as ``python SCRIPT ARGS...`` would.

    Installs the ``sima`` alias (see :func:`install_sima_alias`), then runs
    the script as ``__main__`` with ``sys.argv = [path, *args]`` and its
    folder first on ``sys.path``. ``sys.argv`` and ``sys.path`` are restored
    afterwards; the alias stays installed.

    Parameters
    ----------
    path : str or path-like
        The script (a ``.py`` file, or a folder or zip with ``__main__.py``).
    args : sequence of str, optional
        The script's arguments.
    force : bool, optional
        Passed to :func:`install_sima_alias`.

    Returns
    -------
    dict
        The script's global variables when it finished.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ArgumentTypeError
        If ``args`` is not a sequence of strings.
    SimaAliasConflictError
        See :func:`install_sima_alias`.
    SystemExit
        When the script exits (its status), as under ``python``.
    """
    from sima_fast._validate import ArgumentTypeError

    path = os.fspath(path)
    if isinstance(args, (str, bytes)) or not all(isinstance(a, str) for a in args):
        raise ArgumentTypeError(f"args must be a sequence of str, got {args!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such script: {path!r}")
    install_sima_alias(force=force)
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        return runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv[:] = saved_argv
        sys.path[:] = saved_path


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m sima_fast.compat [--force] SCRIPT [ARGS...]``.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The script's exit status (0 when it ends normally); 2 when the
        command line is wrong, the script does not exist or the alias cannot
        be installed (the reason on standard error).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    force = False
    if argv and argv[0] == "--force":
        force, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: python -m sima_fast.compat [--force] SCRIPT [ARGS...]\n"
            "Run a SIMA script unchanged on sima_fast (the 'sima' import alias).",
            file=sys.stderr if not argv else sys.stdout,
        )
        return 2 if not argv else 0
    return run_with_status(argv[0], argv[1:], force=force, prog="sima_fast.compat")


def run_with_status(script: str, args: Sequence[str], force: bool, prog: str) -> int:
    """Run a script as :func:`run_sima_script` and turn its ending into an exit status.

    Parameters
    ----------
    script : str
        The script.
    args : sequence of str
        Its arguments.
    force : bool
        Passed to :func:`install_sima_alias`.
    prog : str
        The program name used in front of error messages.

    Returns
    -------
    int
        0 when the script ends normally, its ``SystemExit`` status otherwise
        (1 for a non-integer message, printed), 2 when the script does not
        exist or the alias cannot be installed. An exception raised by the
        script propagates, as under ``python``.
    """
    if not os.path.isfile(script):
        print(f"{prog}: no such script: {script!r}", file=sys.stderr)
        return 2
    try:
        install_sima_alias(force=force)
    except SimaAliasConflictError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        run_sima_script(script, args, force=force)
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return int(code or 0)
        print(code, file=sys.stderr)
        return 1
    return 0


def pytest_configure(config: Any) -> None:
    """Install the alias when pytest loads this module as a plugin (``-p sima_fast.compat``).

    A real SIMA is shadowed (``force=True``): asking for the plugin is the
    explicit choice to test sima_fast under SIMA's name.

    Parameters
    ----------
    config : pytest.Config
        pytest's configuration (unused).
    """
    install_sima_alias(force=True)


if __name__ == "__main__":  # pragma: no cover
    # Run the imported module's main, not this __main__ copy's: one finder class.
    from sima_fast.compat import main as _main

    sys.exit(_main())

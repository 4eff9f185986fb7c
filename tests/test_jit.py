"""Every kernel is compiled through kernels/_jit.py: cached, without the GIL, one FASTMATH."""

from __future__ import annotations

import importlib
import os
import pkgutil

import numpy as np
from numba.core.registry import CPUDispatcher

import sima_fast.kernels
from sima_fast.kernels._jit import FASTMATH, jit


def _dispatchers():
    for info in pkgutil.iter_modules(sima_fast.kernels.__path__):
        module = importlib.import_module(f"sima_fast.kernels.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == module.__name__:
                yield obj


def test_every_kernel_is_cached_and_releases_the_gil():
    kernels = list(_dispatchers())
    assert len(kernels) > 40
    for kernel in kernels:
        assert kernel._cache.__class__.__name__ == "FunctionCache", kernel
        assert kernel.targetoptions["nogil"] is True, kernel
        fastmath = kernel.targetoptions.get("fastmath")
        # FASTMATH, or every flag for the bandwidth probe (no NaN in its input)
        assert fastmath is None or fastmath == set(FASTMATH) or fastmath is True, kernel


def test_jit_passes_only_the_options_given():
    def add(a, b):  # pragma: no cover - compiled
        return a + b

    bare = jit(add)
    assert bare(1.0, 2.0) == 3.0
    assert set(bare.targetoptions) == {"nopython", "nogil", "boundscheck"}
    fast = jit(fastmath=FASTMATH, error_model="numpy")(add)
    assert fast.targetoptions["fastmath"] == {"contract", "reassoc"}
    assert fast.targetoptions["error_model"] == "numpy"
    assert (
        fast.targetoptions["fastmath"] is not jit(fastmath=FASTMATH)(add).targetoptions["fastmath"]
    )  # each kernel gets its own copy of the flags
    assert np.isnan(fast(np.nan, 1.0))  # NaN keeps its meaning


def test_compiled_code_is_cached_outside_the_package():
    """A cache inside site-packages would outlive an uninstall and shadow the next install."""
    import numba

    from sima_fast.kernels._jit import cache_directory, kernel_cache_directory

    package = os.path.dirname(os.path.abspath(sima_fast.kernels.__file__))
    cache = os.path.abspath(numba.config.CACHE_DIR)
    assert not (cache + os.sep).startswith(package + os.sep)
    if not os.environ.get("NUMBA_CACHE_DIR"):
        assert os.path.isabs(kernel_cache_directory())
        assert kernel_cache_directory().startswith(os.path.dirname(cache_directory()))
    for kernel in _dispatchers():
        locator = kernel._cache._cache_path
        assert not os.path.abspath(locator).startswith(package + os.sep), kernel


def test_kernel_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    from sima_fast.kernels._jit import kernel_cache_directory

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "c"))
    assert kernel_cache_directory() == str(tmp_path / "c" / "numba")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "n"))
    assert kernel_cache_directory() == str(tmp_path / "n")


def test_first_compilation_prints_one_notice(capsys, monkeypatch):
    from types import SimpleNamespace

    from sima_fast.kernels._jit import _FirstCompileNotice

    monkeypatch.delenv("SIMA_FAST_QUIET", raising=False)
    notice = _FirstCompileNotice()

    def event(module):
        return SimpleNamespace(
            data={"dispatcher": SimpleNamespace(py_func=SimpleNamespace(__module__=module))}
        )

    notice.on_start(event("somebody_else"))
    assert capsys.readouterr().err == ""
    notice.on_start(event("sima_fast.kernels.moments"))
    notice.on_start(event("sima_fast.kernels.extract"))
    err = capsys.readouterr().err
    assert err.count("compiling its kernels") == 1
    assert "sima_fast.warmup()" in err

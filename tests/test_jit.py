"""Every kernel is compiled through kernels/_jit.py: cached, without the GIL, one FASTMATH."""

from __future__ import annotations

import importlib
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

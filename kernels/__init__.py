"""Numba kernels of sima_fast, installed as ``sima_fast.kernels``.

Kernels are pure functions of arrays (inputs, preallocated outputs, explicit
state): they know nothing of files, datasets or ROIs. Every kernel is
compiled by the one decorator of ``_jit.py`` (:func:`sima_fast.kernels._jit.jit`):
on first call, cached on disk, releasing the GIL, with its other numba options
(parallel, fast-math flags, inlining, error model) explicit at its definition.
"""

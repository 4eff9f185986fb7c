"""Numba kernels of sima_fast, installed as ``sima_fast.kernels``.

Kernels are pure functions of arrays (inputs, preallocated outputs, explicit
state): they know nothing of files, datasets or ROIs. They are compiled on
first call and cached on disk (``cache=True``), and release the GIL.
"""

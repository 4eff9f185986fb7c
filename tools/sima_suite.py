#!/usr/bin/env python
"""Run a SIMA checkout's own tests, docstring examples, tutorial and examples on sima_fast.

A development check, not part of the package: it takes the path of a SIMA
source tree (e.g. a clone of losonczylab/sima at 1.3.2), copies its test
files to a temporary folder (a SIMA tree may be read-only, and its tests
write next to themselves), and runs them under the ``sima`` alias of
:mod:`sima_fast.compat`, so every ``import sima`` there imports sima_fast.
Nothing of SIMA is imported, kept or copied into this repository.

Usage::

    python tools/sima_suite.py /path/to/sima            # tests, then a summary
    python tools/sima_suite.py /path/to/sima --all      # also docstrings, tutorial, examples
    python tools/sima_suite.py /path/to/sima --doctests --tutorial --examples --no-tests
    python tools/sima_suite.py /path/to/sima -k extract # pytest -k filter
    python tools/sima_suite.py /path/to/sima --no-tests --example workflow.py
    python tools/sima_suite.py /path/to/sima --no-tests --examples --2to3  # Python 2 ones too

It prints one line per test (``PASS``, ``FAIL``, ``ERROR``, ``SKIP``,
``XFAIL``, ``XPASS`` or ``NOT COLLECTED``) with the first line of the
reason, then the counts; for ``examples/``, one line per script (``RUNS``
when it exits with 0 and leaves its outputs), each run on data simulated by
sima_fast (see :func:`prepare_example`). The exit status is 0 whatever the outcome (it is a
report, not a gate), 2 for a bad command line.

SIMA's tests were written for nose-era numpy and pytest; the runner supplies
what has since been removed from those, so that the tests exercise
sima_fast and not the test tools: ``numpy.testing.dec`` (``knownfailureif``
becomes an expected failure, ``skipif`` a skip), ``run_module_suite``,
nose-style ``setup``/``teardown`` functions and methods, ``numpy.string_``
(removed in numpy 2.0), and, when the
``future`` package is not installed, ``past.utils.old_div`` and
``future.standard_library``. Everything else is SIMA's test as written.
``--ignore-marks`` also runs the tests SIMA marks as known failures or
skips for its optional solvers (picos, mosek) as plain tests.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET

#: SIMA test folders (relative to the checkout) -> folder names in the run.
TEST_DIRS = {
    "sima/tests": "sima_tests",
    "sima/motion/tests": "motion_tests",
    "sima/segment/tests": "segment_tests",
}

# The conftest written next to the copied tests: shims for removed test tools.
CONFTEST = """
import os
import sys
import types
import unittest

import numpy
import numpy.testing
import pytest


IGNORE_MARKS = os.environ.get("SIMA_SUITE_IGNORE_MARKS") == "1"


def _install_shims():
    if not hasattr(numpy.testing, "dec"):
        dec = types.ModuleType("numpy.testing.dec")

        def knownfailureif(fail_condition, msg=None):
            if IGNORE_MARKS:
                return lambda f: f
            reason = msg or "known failure (SIMA's own mark)"
            return pytest.mark.xfail(bool(fail_condition), reason=reason, strict=False)

        def skipif(skip_condition, msg=None):
            if IGNORE_MARKS:
                return lambda f: f
            return pytest.mark.skipif(bool(skip_condition), reason=msg or "SIMA's skipif")

        def slow(f):
            return f

        dec.knownfailureif = knownfailureif
        dec.skipif = skipif
        dec.slow = slow
        numpy.testing.dec = dec
        sys.modules["numpy.testing.dec"] = dec
    if "string_" not in numpy.__dict__:  # removed in numpy 2.0; SIMA's tests compare with it
        numpy.string_ = numpy.bytes_
    if not hasattr(numpy.testing, "run_module_suite"):
        numpy.testing.run_module_suite = lambda *a, **k: None
    if not hasattr(numpy.testing, "Tester"):
        class Tester:
            def test(self, *a, **k):
                return None
        numpy.testing.Tester = Tester
    try:
        import past.utils  # noqa: F401
    except ImportError:
        past = types.ModuleType("past")
        utils = types.ModuleType("past.utils")

        def old_div(a, b):
            import numbers
            if isinstance(a, numbers.Integral) and isinstance(b, numbers.Integral):
                return a // b
            return a / b

        utils.old_div = old_div
        past.utils = utils
        sys.modules["past"] = past
        sys.modules["past.utils"] = utils
    try:
        import future.standard_library  # noqa: F401
    except ImportError:
        future = types.ModuleType("future")
        std = types.ModuleType("future.standard_library")
        std.install_aliases = lambda: None
        future.standard_library = std
        sys.modules["future"] = future
        sys.modules["future.standard_library"] = std


_install_shims()


def _plain_function(obj, name):
    f = getattr(obj, name, None)
    return f if callable(f) else None


@pytest.fixture(autouse=True, scope="module")
def _nose_module_setup(request):
    module = request.module
    setup = _plain_function(module, "setup")
    teardown = _plain_function(module, "teardown")
    if setup is not None:
        setup()
    yield
    if teardown is not None:
        teardown()


@pytest.fixture(autouse=True)
def _nose_method_setup(request):
    instance = request.instance
    if instance is None or isinstance(instance, unittest.TestCase):
        yield
        return
    setup = _plain_function(instance, "setup")
    teardown = _plain_function(instance, "teardown")
    if setup is not None:
        setup()
    yield
    if teardown is not None:
        teardown()
"""


def _copy_tests(sima_root: str, work: str) -> list[str]:
    folders = []
    for src, name in TEST_DIRS.items():
        source = os.path.join(sima_root, src)
        if not os.path.isdir(source):
            continue
        dest = os.path.join(work, name)
        os.makedirs(dest)
        for entry in sorted(os.listdir(source)):
            if entry.endswith(".py") and entry != "__init__.py":
                shutil.copy(os.path.join(source, entry), dest)
        folders.append(name)
    with open(os.path.join(work, "conftest.py"), "w", encoding="utf-8") as fh:
        fh.write(CONFTEST)
    with open(os.path.join(work, "pytest.ini"), "w", encoding="utf-8") as fh:
        fh.write("[pytest]\naddopts =\npython_classes = Test* test_*\n")
    return folders


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith(("def ", "@", ">", "#")) and line != "^":
            return line[:160]
    return ""


def _reason(element: ET.Element) -> str:
    message = element.get("message") or ""
    text = element.text or ""
    # The last "E   " line of the traceback is the exception.
    errors = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
    if errors:
        return _first_line(errors[-1]) or _first_line(message)
    return _first_line(message) or _first_line(text.splitlines()[-1] if text else "")


def _test_id(cls: str, name: str) -> str:
    """``sima/tests/test_x.py::Class::test`` from junit's class name and test name."""
    dotted = cls or name
    folder, _, rest = dotted.partition(".")
    sima_dir = next((k for k, v in TEST_DIRS.items() if v == folder), folder)
    module, _, klass = rest.partition(".")
    test_id = f"{sima_dir}/{module}.py"
    if klass:
        test_id += f"::{klass}"
    return f"{test_id}::{name}" if cls else test_id


def _outcomes(junit: str) -> list[tuple[str, str, str]]:
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        cls, name = case.get("classname", ""), case.get("name", "")
        test_id = _test_id(cls, name)
        skipped, failure, error = (case.find(t) for t in ("skipped", "failure", "error"))
        if skipped is not None:
            kind = skipped.get("type", "")
            outcome = "XFAIL" if "xfail" in kind else "SKIP"
            rows.append((test_id, outcome, _first_line(skipped.get("message"))))
        elif failure is not None:
            outcome = "XPASS" if "XPASS" in (failure.get("message") or "") else "FAIL"
            rows.append((test_id, outcome, _reason(failure)))
        elif error is not None:
            collect = not cls or "collection" in (error.get("message") or "")
            rows.append((test_id, "NOT COLLECTED" if collect else "ERROR", _reason(error)))
        else:
            rows.append((test_id, "PASS", ""))
    return rows


def run_tests(
    sima_root: str, work: str, keyword: str | None, timeout: float, ignore_marks: bool = False
) -> list:
    """Run SIMA's tests under the alias; return ``(test id, outcome, reason)`` rows."""
    folders = _copy_tests(sima_root, work)
    junit = os.path.join(work, "junit.xml")
    cmd = [
        sys.executable, "-m", "pytest", *folders,
        "-p", "sima_fast.compat", "-p", "no:cacheprovider",
        "--import-mode=importlib", "-c", os.path.join(work, "pytest.ini"),
        "--rootdir", work, "-q", "-rxXs", "--junitxml", junit,
        "-o", "junit_family=xunit1", "-W", "ignore::DeprecationWarning",
        "--continue-on-collection-errors",
    ]  # fmt: skip
    if keyword:
        cmd += ["-k", keyword]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["SIMA_SUITE_IGNORE_MARKS"] = "1" if ignore_marks else "0"
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    if not os.path.exists(junit):
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        return []
    return _outcomes(junit)


# ---------------------------------------------------------------- docstrings and tutorial

#: Run in a subprocess with the alias installed: doctest examples from stdin (JSON).
DOCTEST_RUNNER = r"""
import doctest, json, os, sys, traceback
from sima_fast.compat import install_sima_alias
install_sima_alias(force=True)
jobs = json.load(sys.stdin)
flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
results = []
for job in jobs:
    parser = doctest.DocTestParser()
    globs = {"__name__": "__main__"}
    for statement in job.get("imports", []):
        try:
            exec(statement, globs)
        except Exception:
            pass
    test = parser.get_doctest(job["text"], globs, job["name"], job["file"], 0)
    raised, differed = [], []

    class Runner(doctest.DocTestRunner):
        def report_failure(self, out, test, example, got):
            differed.append((example.lineno, example.source.strip()[:70], got.strip()[:80]))
        def report_unexpected_exception(self, out, test, example, exc_info):
            line = traceback.format_exception_only(exc_info[0], exc_info[1])[-1].strip()
            raised.append((example.lineno, example.source.strip()[:70], line[:160]))

    cwd = os.getcwd()
    os.chdir(job["cwd"])
    try:
        Runner(optionflags=flags, verbose=False).run(test, out=lambda s: None)
    finally:
        os.chdir(cwd)
    results.append({"name": job["name"], "examples": len(test.examples),
                    "raised": raised, "differed": differed})
json.dump(results, sys.stdout)
"""


def _docstrings(sima_root: str, only: set[str] | None) -> list[dict]:
    """Docstrings with examples in SIMA's modules, read with ast (SIMA is not imported)."""
    jobs = []
    package = os.path.join(sima_root, "sima")
    for folder, _dirs, files in os.walk(package):
        if os.sep + "tests" in folder:
            continue
        for name in sorted(files):
            if not name.endswith(".py") or name == "tifffile.py":
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, sima_root)
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
            # doctest runs with the module's globals: give it the module's imports
            imports = [
                ast.unparse(node)
                for node in tree.body
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0)
            ]
            for qual, node in _walk_defs(tree):
                doc = ast.get_docstring(node, clean=True)
                if doc and ">>>" in doc and (only is None or qual in only):
                    jobs.append(
                        {"name": f"{rel}:{qual}", "file": rel, "text": doc, "imports": imports}
                    )
    return jobs


def _walk_defs(tree: ast.AST, prefix: str = ""):
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            qual = f"{prefix}{node.name}"
            yield qual, node
            if isinstance(node, ast.ClassDef):
                yield from _walk_defs(node, qual + ".")


def _tutorial(sima_root: str) -> list[dict]:
    path = os.path.join(sima_root, "doc", "source", "tutorial.rst")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    # Keep the interactive examples (and their expected output), dedented.
    text = textwrap.dedent("\n".join(lines))
    kept = [
        ln.strip() if ln.strip().startswith((">>>", "...")) else "" for ln in text.splitlines()
    ]
    return [{"name": "doc/source/tutorial.rst", "file": path, "text": "\n".join(kept)}]


def run_doctests(jobs: list[dict], work: str, timeout: float) -> list[dict]:
    """Run docstring or tutorial examples under the alias, each job in a folder of its own."""
    import json

    for job in jobs:
        job["cwd"] = tempfile.mkdtemp(prefix="doc-", dir=work)
    proc = subprocess.run(
        [sys.executable, "-c", DOCTEST_RUNNER],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=work,
    )
    try:
        return json.loads(proc.stdout)
    except ValueError:
        print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
        return []


# ---------------------------------------------------------------- examples/

#: ``workflow.py``'s recording: cycles, frames per cycle, frame (rows, columns)
#: and cells. Channel ``Ch1`` is the static structural channel (tdTomato),
#: ``Ch2`` the activity channel (GCaMP), as the script names them.
WORKFLOW = {"cycles": 15, "frames": 20, "frame_shape": (128, 128), "cells": 30}

#: The dataset the dataset-scanning scripts (``extraction.py``,
#: ``segmentation.py``) find: channels named as SIMA's scripts name them.
DATASET = {"frames": 60, "frame_shape": (64, 64), "cells": 8, "channels": ("Ch1", "Ch2")}

#: ``scanbox.py``'s recording: one ``.sbx`` file and its ``.mat`` info.
SCANBOX = {"name": "mouse1_000_001", "frames": 12, "frame_shape": (48, 64)}

#: What each script must leave behind (relative to its folder) to count as RUNS.
EXPECTED_OUTPUTS = {
    "workflow.py": ["example_signals.csv", "workflow_data/dataset.sima/metadata.json"],
    "scanbox.py": [f"scanbox/{SCANBOX['name']}.sima/metadata.json"],
}

#: What each script must print (standard output) to count as RUNS.
EXPECTED_STDOUT = {
    "extraction.py": ["Extraction complete"],
    "import_ImageJ_rois.py": ["Added 8 ROIs with label 'imported'"],
    "transform_rois.py": ["SUCCESS, ROIs transformed"],
}


def _python2_only(path: str) -> bool:
    """Tell whether a script does not compile on Python 3 (Python 2 syntax)."""
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    try:
        compile(source, path, "exec")
    except SyntaxError:
        return True
    return False


def convert_2to3(path: str) -> bool:
    """Rewrite a Python 2 script in place with ``lib2to3`` (Python <= 3.12), if available.

    Returns
    -------
    bool
        Whether the script was converted and now compiles.
    """
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "lib2to3", "-w", "-n", path],
        capture_output=True, text=True,
    )  # fmt: skip
    return proc.returncode == 0 and not _python2_only(path)


def simulate_recording(
    frames: int,
    frame_shape: tuple[int, int],
    cells: int,
    seed: int,
    scene_seed: int | None = None,
    motion: bool = True,
):
    """Simulate a moving two-channel recording with active cells (sima_fast's simulator).

    ``scene_seed`` (default ``seed``) fixes the cells: two recordings with the
    same scene seed image the same field of view. Without ``motion`` the
    frames are the scene itself (``observed`` is ``movie``), where the
    simulated cell masks lie.

    Returns
    -------
    sima_fast.misc.SimulatedMovie
        ``observed`` is ``(frames, 1, rows, columns, 2)`` uint16, with
        whole-pixel motion of up to 4 rows and 6 columns if ``motion``;
        channel 0 carries the activity, channel 1 the static structure.
    """
    from sima_fast.misc import simulate_movie

    margin = (4, 6) if motion else (0, 0)
    return simulate_movie(
        num_frames=frames,
        frame_shape=(frame_shape[0] + margin[0], frame_shape[1] + margin[1]),
        num_channels=2,
        cells_per_plane=cells,
        max_displacement=margin,
        seed=seed,
        scene_seed=scene_seed,
    )


def write_workflow_data(folder: str) -> None:
    """Write ``workflow.py``'s ``Cycle{NN}_Ch{1,2}.tif`` files: one recording cut into cycles.

    Parameters
    ----------
    folder : str
        The ``workflow_data`` folder (created).
    """
    import tifffile

    os.makedirs(folder, exist_ok=True)
    n = WORKFLOW["frames"]
    sim = simulate_recording(
        WORKFLOW["cycles"] * n, WORKFLOW["frame_shape"], WORKFLOW["cells"], seed=7
    )
    for cycle in range(WORKFLOW["cycles"]):
        part = sim.observed[cycle * n : (cycle + 1) * n, 0]
        # Ch1 = tdTomato (structure, simulated channel 1), Ch2 = GCaMP (activity, channel 0)
        for name, channel in (("Ch1", 1), ("Ch2", 0)):
            path = os.path.join(folder, f"Cycle{cycle + 1:02d}_{name}.tif")
            tifffile.imwrite(path, part[..., channel])


def write_dataset(path: str, seed: int = 11, imagej_zip: str | None = None) -> None:
    """Write a sima_fast dataset with channels ``Ch1``, ``Ch2`` and ROI sets, for the scanners.

    The ROI set ``'cells'`` holds the simulated cells' outlines (extracted by
    ``extraction.py``); ``'junk'`` is one of the labels that script skips.

    Parameters
    ----------
    path : str
        The ``.sima`` directory to create.
    seed : int, optional
        The recording's activity seed; the cells are always the same.
    imagej_zip : str, optional
        Also write the cells as an ImageJ ROI ``.zip`` of this name inside
        the directory (what ``import_ImageJ_rois.py`` looks for).
    """
    import numpy as np

    from sima_fast import ImagingDataset, Sequence
    from sima_fast.ROI import ROI, ROIList

    sim = simulate_recording(
        DATASET["frames"], DATASET["frame_shape"], DATASET["cells"], seed, 11, motion=False
    )
    frames = np.ascontiguousarray(sim.movie[..., ::-1])  # Ch1 structure, Ch2 activity
    dataset = ImagingDataset(
        [Sequence.create("ndarray", frames)], path, channel_names=list(DATASET["channels"])
    )
    dataset.add_ROIs(
        ROIList([ROI(mask=m, label=f"cell{i}") for i, m in enumerate(sim.masks)]), "cells"
    )
    dataset.add_ROIs(ROIList([ROI(mask=sim.masks[0])]), "junk")
    if imagej_zip is not None:
        cells = ROIList([ROI(polygons=p, label=f"cell{i}") for i, p in enumerate(sim.polygons)])
        cells.save(os.path.join(path, imagej_zip), fmt="ImageJ")


def write_scanbox(folder: str) -> str:
    """Write a Scanbox recording: ``<name>.sbx`` (inverted uint16) and its ``<name>.mat`` info.

    Scanbox stores ``65535 - value`` frame by frame, each frame rows × columns
    × channels with the channel varying fastest; ``scanbox.py`` inverts it
    back with a ``'constant'`` sequence minus the memory-mapped file.

    Parameters
    ----------
    folder : str
        Created; receives the two files.

    Returns
    -------
    str
        The ``.sbx`` file.
    """
    import numpy as np
    import scipy.io

    os.makedirs(folder, exist_ok=True)
    rows, cols = SCANBOX["frame_shape"]
    sim = simulate_recording(SCANBOX["frames"], (rows, cols), 4, seed=3)
    frames = sim.observed[:, 0]  # (T, Y, X, C), uint16
    base = os.path.join(folder, SCANBOX["name"])
    (np.iinfo("uint16").max - frames).astype("<u2").tofile(base + ".sbx")
    info = {
        "sz": np.array([rows, cols], dtype=float),
        "recordsPerBuffer": rows,
        "channels": 1,  # both PMTs: two channels
        "scanbox_version": 2,
        "scanmode": 1,
        "resfreq": 7930,
        "config": {"magnification": 2, "objective": "Nikon 16x"},
    }
    scipy.io.savemat(base + ".mat", {"info": info})
    return base + ".sbx"


def prepare_example(name: str, cwd: str) -> tuple[list[str], str]:
    """Prepare the inputs of one of SIMA's example scripts in ``cwd``.

    The data are sima_fast's own simulations (never SIMA's files): for
    ``workflow.py`` the 15 cycles × 2 channels of TIFFs it expects in
    ``workflow_data/`` (one moving recording with active cells, cut into
    cycles, ``Ch2`` the activity channel); for the scripts that scan a folder
    for datasets, a folder holding a dataset with channels ``Ch1``/``Ch2``
    and ROI sets, and a ``.sima`` folder that is not a dataset (which they
    must skip); for ``scanbox.py`` a Scanbox ``.sbx``/``.mat`` pair; for
    the Python 2 scripts ``import_ImageJ_rois.py`` (a dataset holding an
    ImageJ ``.zip``) and ``transform_rois.py`` (a source dataset with ROIs
    and a folder of target datasets of the same cells), which run with
    ``--2to3``.

    Parameters
    ----------
    name : str
        The script's file name.
    cwd : str
        The folder the script will run in.

    Returns
    -------
    tuple of (list of str, str)
        The script's arguments and its standard input.
    """
    if name in ("extraction.py", "segmentation.py"):
        data = os.path.join(cwd, "data")
        os.makedirs(data)
        write_dataset(os.path.join(data, "example.sima"))
        os.makedirs(os.path.join(data, "notes.sima"))  # not a dataset: skipped with IOError
        return [data], ""
    if name == "workflow.py":
        write_workflow_data(os.path.join(cwd, "workflow_data"))
        return [], "y\n" * 10
    if name == "scanbox.py":
        write_scanbox(os.path.join(cwd, "scanbox"))
        return ["--time_averages", "scanbox"], ""
    if name == "import_ImageJ_rois.py":  # Python 2: runs with --2to3
        data = os.path.join(cwd, "data")
        os.makedirs(data)
        write_dataset(os.path.join(data, "example.sima"), imagej_zip="RoiSet.zip")
        return [data, "imported"], ""
    if name == "transform_rois.py":  # Python 2: runs with --2to3
        source = os.path.join(cwd, "source.sima")
        targets = os.path.join(cwd, "targets")
        os.makedirs(targets)
        write_dataset(source)
        write_dataset(os.path.join(targets, "day2.sima"), seed=12)
        return [source, targets, "cells"], ""
    return [], ""


def _missing_outputs(name: str, cwd: str, stdout: str) -> str:
    """Return the first expected output a script did not produce, or ``''``."""
    for rel in EXPECTED_OUTPUTS.get(name, []):
        if not os.path.exists(os.path.join(cwd, rel)):
            return f"ended without writing {rel}"
    for text in EXPECTED_STDOUT.get(name, []):
        if text not in stdout:
            return f"ended without printing {text!r}"
    return ""


def run_examples(
    sima_root: str,
    work: str,
    timeout: float,
    only: set[str] | None = None,
    py2: bool = False,
) -> list[tuple[str, str, str]]:
    """Run each script of ``examples/`` with ``python -m sima_fast.compat``, in a new folder.

    With ``py2``, a script in Python 2 syntax is first converted with
    ``lib2to3`` (a check of sima_fast's side only: SIMA's scripts as written
    cannot run on Python 3); its status then ends in ``(2to3)``.

    Returns
    -------
    list of (str, str, str)
        ``(script, status, reason)``: ``RUNS`` (exit 0 and the expected
        outputs present), ``NO OUTPUT``, ``EXIT n``, ``TIMEOUT`` or
        ``NO DATA`` (its inputs could not be built).
    """
    rows = []
    folder = os.path.join(sima_root, "examples")
    env = dict(os.environ, MPLBACKEND="Agg")  # plt.show() must not wait for a window
    env.pop("PYTHONPATH", None)
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith(".py") or (only and name not in only):
            continue
        cwd = tempfile.mkdtemp(prefix="example-", dir=work)
        script = shutil.copy(os.path.join(folder, name), cwd)
        suffix = ""
        if py2 and _python2_only(script):
            if not convert_2to3(script):
                rows.append((f"examples/{name}", "PYTHON 2", "lib2to3 could not convert it"))
                continue
            suffix = " (2to3)"
        try:
            script_args, stdin = prepare_example(name, cwd)
        except Exception as exc:  # a report line, not a crash of the whole run
            rows.append((f"examples/{name}", "NO DATA", f"{type(exc).__name__}: {exc}"[:160]))
            continue
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "sima_fast.compat", "--force", script, *script_args],
                cwd=cwd, capture_output=True, text=True, timeout=timeout, input=stdin, env=env,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            rows.append((f"examples/{name}", "TIMEOUT", f"still running after {timeout:.0f} s"))
            continue
        if proc.returncode == 0:
            missing = _missing_outputs(name, cwd, proc.stdout)
            status, reason = ("NO OUTPUT", missing) if missing else ("RUNS", "")
        else:
            last = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            status, reason = f"EXIT {proc.returncode}", last[-1][:160] if last else ""
        rows.append((f"examples/{name}", status + suffix, reason))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen stages and print their report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sima", help="path of a SIMA source checkout (holding sima/tests)")
    parser.add_argument("-k", dest="keyword", help="run only the tests pytest -k selects")
    parser.add_argument(
        "--ignore-marks", action="store_true",
        help="run the tests SIMA marks as known failures or skips (picos, mosek) as plain tests",
    )  # fmt: skip
    parser.add_argument("--no-tests", action="store_true", help="skip SIMA's test suite")
    parser.add_argument("--doctests", action="store_true", help="run SIMA's docstring examples")
    parser.add_argument(
        "--only", action="append", metavar="QUALNAME",
        help="docstrings of these objects only (e.g. ImagingDataset.add_ROIs); repeatable",
    )  # fmt: skip
    parser.add_argument("--tutorial", action="store_true", help="run doc/source/tutorial.rst")
    parser.add_argument("--examples", action="store_true", help="run the scripts in examples/")
    parser.add_argument(
        "--example", action="append", metavar="SCRIPT",
        help="run only this script of examples/ (e.g. workflow.py); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--2to3", dest="py2", action="store_true",
        help="convert Python 2 example scripts with lib2to3 before running them",
    )  # fmt: skip
    parser.add_argument("--all", action="store_true", help="tests, doctests, tutorial, examples")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per stage")
    args = parser.parse_args(argv)
    root = os.path.abspath(args.sima)
    if not os.path.isdir(os.path.join(root, "sima")):
        parser.error(f"{root!r} is not a SIMA checkout (no 'sima' folder)")
    work = tempfile.mkdtemp(prefix="sima_suite-")
    try:
        if not args.no_tests:
            rows = run_tests(root, work, args.keyword, args.timeout, args.ignore_marks)
            width = max((len(r[0]) for r in rows), default=10)
            for test_id, outcome, reason in rows:
                print(f"{outcome:<13} {test_id:<{width}}  {reason}".rstrip())
            counts: dict[str, int] = {}
            for _, outcome, _ in rows:
                counts[outcome] = counts.get(outcome, 0) + 1
            print("tests:", ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())))
        jobs = []
        if args.doctests or args.all:
            jobs += _docstrings(root, set(args.only) if args.only else None)
        if args.tutorial or args.all:
            jobs += _tutorial(root)
        if jobs:
            print()
            for res in run_doctests(jobs, work, args.timeout):
                ok = not res["raised"]
                print(
                    f"{'RUNS' if ok else 'RAISES':<7} {res['name']}: {res['examples']} examples, "
                    f"{len(res['raised'])} raised, {len(res['differed'])} printed other output"
                )
                for lineno, source, line in res["raised"]:
                    print(f"    line {lineno + 1}: {source!r}\n        -> {line}")
        if args.examples or args.all or args.example:
            print()
            only = set(args.example) if args.example else None
            for name, status, reason in run_examples(root, work, args.timeout, only, args.py2):
                print(f"{status:<14} {name}  {reason}".rstrip())
    finally:
        if args.keep:
            print(f"\n(kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""tools/sima_suite.py on a small SIMA-like checkout of our own making."""

from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "sima_suite.py"

# A nose-era test module, written the way SIMA's are (module and method
# setup, numpy.testing.dec marks, run_module_suite), exercising sima_fast
# through the alias.
NOSE_STYLE_TESTS = textwrap.dedent(
    """
    import os
    from numpy.testing import assert_equal, dec, run_module_suite
    from past.utils import old_div
    from sima.misc import mkdir_p
    import sima

    tmp_dir = None

    def setup():
        global tmp_dir
        tmp_dir = os.path.join(os.path.dirname(__file__), 'tmp')
        mkdir_p(tmp_dir)

    def teardown():
        os.rmdir(tmp_dir)

    def test_module_setup_ran():
        assert os.path.isdir(tmp_dir)

    class TestThing(object):
        def setup(self):
            self.value = old_div(7, 2)

        def test_method_setup_ran(self):
            assert_equal(self.value, 3)

        def test_fails(self):
            assert_equal(sima.Sequence.__name__, 'NotASequence')

        @dec.knownfailureif(True)
        def test_known_failure(self):
            raise RuntimeError('expected')

        @dec.skipif(True)
        def test_skipped(self):
            pass

    if __name__ == '__main__':
        run_module_suite()
    """
)

BROKEN_IMPORT = "import sima.no_such_module\n\ndef test_never_runs():\n    pass\n"

DOCSTRINGS = textwrap.dedent(
    '''
    import numpy as np


    class Thing(object):
        """A documented class.

        >>> import sima
        >>> np.zeros(2).shape
        (2,)
        >>> sima.Sequence.create('ndarray', np.zeros((2, 1, 3, 4, 1))).shape
        (2, 1, 3, 4, 1)
        """


    def broken():
        """Raises under sima_fast.

        >>> from sima.no_such_module import x
        """
    '''
)

TUTORIAL = textwrap.dedent(
    """
    Tutorial
    ========

        >>> import sima
        >>> seq = sima.Sequence.create('ndarray', np.zeros((3, 1, 4, 5, 1)))
        >>> import numpy as np
        >>> len(np.zeros(3))
        3
    """
)


@pytest.fixture
def suite():
    spec = importlib.util.spec_from_file_location("sima_suite_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "sima_checkout"
    (root / "sima" / "tests").mkdir(parents=True)
    (root / "sima" / "motion" / "tests").mkdir(parents=True)
    (root / "doc" / "source").mkdir(parents=True)
    (root / "sima" / "__init__.py").write_text("")
    (root / "sima" / "thing.py").write_text(DOCSTRINGS)
    (root / "sima" / "tests" / "test_nose.py").write_text(NOSE_STYLE_TESTS)
    (root / "sima" / "motion" / "tests" / "test_broken.py").write_text(BROKEN_IMPORT)
    (root / "doc" / "source" / "tutorial.rst").write_text(TUTORIAL)
    return root


@pytest.mark.slow  # runs pytest and doctest in subprocesses (about 10 s)
def test_suite_reports_each_test_and_leaves_the_checkout_alone(
    suite, checkout, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv("SIMA_FAST_CACHE", str(tmp_path / "cache"))
    before = sorted(p for p in checkout.rglob("*"))
    assert suite.main([str(checkout), "--doctests", "--tutorial"]) == 0
    out = capsys.readouterr().out
    rows = [line.split(maxsplit=2) for line in out.splitlines() if "::" in line]
    outcomes = {row[1] if row[0] != "NOT" else row[2].split()[0]: row[0] for row in rows}
    assert outcomes["sima/tests/test_nose.py::test_module_setup_ran"] == "PASS"
    assert outcomes["sima/tests/test_nose.py::TestThing::test_method_setup_ran"] == "PASS"
    assert outcomes["sima/tests/test_nose.py::TestThing::test_fails"] == "FAIL"
    assert outcomes["sima/tests/test_nose.py::TestThing::test_known_failure"] == "XFAIL"
    assert outcomes["sima/tests/test_nose.py::TestThing::test_skipped"] == "SKIP"
    assert "NOT COLLECTED sima/motion/tests/test_broken.py" in out
    assert "sima.no_such_module" in out
    assert "tests: 1 fail, 1 not collected, 2 pass, 1 skip, 1 xfail" in out
    assert "RUNS    sima/thing.py:Thing: 3 examples, 0 raised" in out
    assert "RAISES  sima/thing.py:broken: 1 examples, 1 raised" in out
    # the tutorial's np is used before its import: one example raises NameError
    assert "RAISES  doc/source/tutorial.rst: 4 examples, 1 raised" in out
    assert "NameError" in out
    assert sorted(p for p in checkout.rglob("*")) == before  # nothing written there


def test_suite_refuses_a_folder_that_is_not_a_checkout(suite, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        suite.main([str(tmp_path)])
    assert exc.value.code == 2
    assert "not a SIMA checkout" in capsys.readouterr().err
    assert not os.listdir(tmp_path)

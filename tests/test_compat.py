"""The opt-in ``sima`` alias (sima_fast.compat), its script runner and its CLI command."""

from __future__ import annotations

import importlib
import pickle
import sys
import textwrap

import numpy as np
import pytest

import sima_fast
from sima_fast import cli, compat
from sima_fast._validate import ArgumentTypeError
from sima_fast.compat import (
    SimaAliasConflictError,
    install_sima_alias,
    main,
    run_sima_script,
    sima_alias_installed,
    uninstall_sima_alias,
)


@pytest.fixture(autouse=True)
def no_alias_left():
    """Every test starts and ends without the alias or any 'sima' module."""
    uninstall_sima_alias()
    yield
    uninstall_sima_alias()
    for name in [n for n in sys.modules if n == "sima" or n.startswith("sima.")]:
        del sys.modules[name]


@pytest.fixture
def fake_sima(tmp_path, monkeypatch):
    """A real-looking 'sima' package on sys.path (as if SIMA were installed)."""
    package = tmp_path / "site" / "sima"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("REAL = True\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    return package


def test_alias_gives_the_sima_fast_objects():
    assert install_sima_alias() is True
    assert sima_alias_installed()
    import sima
    import sima.motion
    from sima.ROI import ROI, ROIList
    from sima.spikes import spike_inference

    import sima_fast.motion
    import sima_fast.ROI
    import sima_fast.spikes

    assert sima.ImagingDataset is sima_fast.ImagingDataset
    assert sima.Sequence is sima_fast.Sequence
    assert sima.motion is sima_fast.motion
    assert ROI is sima_fast.ROI.ROI and ROIList is sima_fast.ROI.ROIList
    assert spike_inference is sima_fast.spikes.spike_inference
    roi = sima_fast.ROI.ROI(mask=np.array([[True, False]]))
    assert isinstance(roi, ROI)
    # the aliased modules keep their own spec and name
    assert sima_fast.motion.__spec__.name == "sima_fast.motion"
    assert sima_fast.motion.__name__ == "sima_fast.motion"
    assert sima.__name__ == "sima"
    assert "ImagingDataset" in dir(sima)


def test_attribute_access_reaches_submodules_through_the_alias():
    install_sima_alias()
    import sima

    import sima_fast.misc

    assert sima.misc is sys.modules["sima.misc"]
    assert sima.misc.mkdir_p is sima_fast.misc.mkdir_p
    assert sima.extract is sima_fast.extract
    with pytest.raises(AttributeError, match="no_such_name"):
        sima.no_such_name  # noqa: B018


def test_pickles_naming_sima_load_as_sima_fast_objects():
    install_sima_alias()
    import sima_fast.ROI

    # A protocol-0 pickle of the class sima.ROI.ROI, as SIMA would write it.
    assert pickle.loads(b"csima.ROI\nROI\n.") is sima_fast.ROI.ROI
    roi = sima_fast.ROI.ROI(mask=np.array([[True, False]]), label="a")
    assert pickle.loads(pickle.dumps(roi)).label == "a"


def test_sima_misc_gives_sima_layout_examples_and_sima_fast_misc_is_unchanged():
    install_sima_alias()
    import sima.misc
    from sima.misc import example_hdf5, example_tiffs, example_volume

    import sima_fast.misc

    assert example_hdf5 is sima_fast.misc.sima_example_hdf5
    assert sima.misc.example_tiff is sima_fast.misc.sima_example_tiff
    assert sima.misc.example_data is sima_fast.misc.sima_example_data
    assert sima.misc.example_imagej_rois is sima_fast.misc.sima_example_imagej_rois
    assert example_tiffs is sima_fast.misc.example_tiffs
    assert example_volume is sima_fast.misc.example_volume
    # sima_fast's own forms stay what they were
    assert sima_fast.misc.example_hdf5.__module__ == "sima_fast.misc._example"
    assert sima_fast.misc.example_hdf5 is not sima.misc.example_hdf5


def test_missing_module_names_both_sides():
    install_sima_alias()
    with pytest.raises(ModuleNotFoundError, match=r"sima\.no_such.*sima_fast\.no_such") as err:
        import sima.no_such  # noqa: F401
    assert err.value.name == "sima.no_such"
    with pytest.raises(ImportError):
        from sima.motion import no_such_strategy  # noqa: F401


def test_install_is_idempotent_and_uninstall_forgets_modules():
    assert install_sima_alias() is True
    assert install_sima_alias() is False
    import sima.ROI  # noqa: F401

    assert "sima.ROI" in sys.modules
    assert uninstall_sima_alias() is True
    assert not sima_alias_installed()
    assert not any(n == "sima" or n.startswith("sima.") for n in sys.modules)
    assert "sima_fast.ROI" in sys.modules
    assert uninstall_sima_alias() is False
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("sima")


def test_refuses_to_hide_an_installed_sima(fake_sima):
    with pytest.raises(SimaAliasConflictError, match=r"real SIMA is installed.*force=True"):
        install_sima_alias()
    assert not sima_alias_installed()
    assert install_sima_alias(force=True) is True
    import sima

    assert sima.ImagingDataset is sima_fast.ImagingDataset
    assert not hasattr(sima, "REAL")


def test_refuses_when_a_real_sima_is_already_imported(fake_sima):
    import sima

    assert sima.REAL
    with pytest.raises(SimaAliasConflictError, match="already imported"):
        install_sima_alias(force=True)
    assert not sima_alias_installed()


def test_force_must_be_a_bool():
    with pytest.raises(ArgumentTypeError, match="force"):
        install_sima_alias(force="yes")
    assert not sima_alias_installed()


SCRIPT = textwrap.dedent(
    """
    import sys
    import sima
    import sima.motion
    from sima.misc import mkdir_p
    from helper import VALUE          # a module next to the script
    ARGS = sys.argv[1:]
    NAME = __name__
    DATASET = sima.ImagingDataset
    if ARGS and ARGS[0] == "exit":
        sys.exit(int(ARGS[1]))
    print("script ran", ARGS, VALUE)
    """
)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "sima_script.py"
    path.write_text(SCRIPT)
    (tmp_path / "helper.py").write_text("VALUE = 42\n")
    return path


def test_run_sima_script_runs_as_main_and_restores_argv_and_path(script):
    argv, path = sys.argv[:], sys.path[:]
    result = run_sima_script(script, ["a", "--b"])
    assert result["ARGS"] == ["a", "--b"]
    assert result["NAME"] == "__main__"
    assert result["DATASET"] is sima_fast.ImagingDataset
    assert sys.argv == argv and sys.path == path
    assert sima_alias_installed()


def test_run_sima_script_errors(tmp_path, script):
    with pytest.raises(FileNotFoundError, match="no such script"):
        run_sima_script(tmp_path / "missing.py")
    with pytest.raises(ArgumentTypeError, match="args"):
        run_sima_script(script, "a b")
    with pytest.raises(SystemExit) as exc:
        run_sima_script(script, ["exit", "4"])
    assert exc.value.code == 4


def test_module_main_exit_statuses(script, tmp_path, capsys):
    assert main([str(script), "x"]) == 0
    assert "script ran ['x'] 42" in capsys.readouterr().out
    assert main([str(script), "exit", "3"]) == 3
    assert main([str(tmp_path / "missing.py")]) == 2
    assert "no such script" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "SCRIPT" in capsys.readouterr().out


def test_module_main_refuses_an_installed_sima_unless_forced(fake_sima, script, capsys):
    assert main([str(script)]) == 2
    assert "real SIMA is installed" in capsys.readouterr().err
    assert main(["--force", str(script)]) == 0


def test_cli_run_sima(script, capsys):
    assert cli.main(["run-sima", str(script), "one", "--two"]) == 0
    assert "script ran ['one', '--two'] 42" in capsys.readouterr().out
    assert cli.main(["run-sima", str(script), "exit", "5"]) == 5
    assert cli.main(["run-sima", str(script) + ".missing"]) == 2
    assert "sima-fast run-sima: no such script" in capsys.readouterr().err


def test_cli_run_sima_force(fake_sima, script, capsys):
    assert cli.main(["run-sima", str(script)]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main(["run-sima", "--force", str(script)]) == 0


def test_pytest_plugin_hook_installs_the_alias():
    compat.pytest_configure(None)
    assert sima_alias_installed()
    import sima

    assert sima.Sequence is sima_fast.Sequence


def test_an_error_inside_the_script_propagates_as_under_python(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("open('no_such_input_file.tif')\n")
    with pytest.raises(FileNotFoundError, match="no_such_input_file"):
        main([str(script)])

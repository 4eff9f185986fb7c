"""The benchmark harness: its table, plot and bandwidth probe (timings are not asserted)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sima_fast import bench
from sima_fast.cli import main


def _results():
    return [
        bench.CaseResult("projections", "10×4×4 uint16", 0.01, {"numpy": 1.0}, 10 * 16 * 2, []),
        bench.CaseResult("deconvolution", "100 samples", 2e-4, {"a": 2e-3, "b": 1e-4}, None, []),
    ]


def test_markdown_table_has_one_row_per_baseline_with_ratios():
    table = bench.markdown_table(_results(), bandwidth=10.0)
    lines = table.splitlines()
    assert lines[0].startswith("| work | size | ours (median) | baseline")
    assert len(lines) == 2 + 3
    assert "| projections | 10×4×4 uint16 | 10.0 ms | numpy | 1.00 s | 100.0× |" in table
    assert "0.0 GB/s (0%)" in table  # 320 bytes in 10 ms
    assert "| 0.5× |" in table  # a baseline faster than ours is shown as such
    assert "200 µs" in table


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "ratios.png"
    bench.plot_ratios(_results(), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_memory_bandwidth_probe_reads_the_array():
    gbs = bench.memory_bandwidth(1 << 22, threads=1)
    assert np.isfinite(gbs) and gbs > 0


def test_median_time_stops_at_the_budget():
    calls = []
    median, result = bench._median_time(lambda: calls.append(1) or len(calls), 50, 0.0)
    assert len(calls) == 1 and result == 1 and median >= 0


def test_cli_bench_writes_json(tmp_path, monkeypatch, capsys):
    recorded = {}

    def fake_run(quick, json_path, plot_path):
        recorded.update(quick=quick, json_path=json_path, plot_path=plot_path)
        with open(json_path, "w") as f:
            json.dump({"results": []}, f)

    monkeypatch.setattr(bench, "run_benchmarks", fake_run)
    out = tmp_path / "r.json"
    assert main(["bench", "--quick", "--json", str(out)]) == 0
    assert recorded == {"quick": True, "json_path": str(out), "plot_path": None}
    assert json.loads(out.read_text()) == {"results": []}


# -- the case registry ---------------------------------------------------------------------


def test_registry_cases_are_well_formed():
    import inspect

    from sima_fast.bench.cases import CASES

    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    for case in CASES:
        impls = [impl.name for impl in case.implementations]
        assert len(impls) == len(set(impls)) and impls.count("ours") == 1, case.name
        assert case.ours.cli, case.name
        assert set(case.quick) == set(case.full), case.name
        assert set(case.env) <= set(case.full), case.name
        params = set(inspect.signature(case.setup).parameters) - {"scratch"}
        assert set(case.full) <= params, case.name
    cli = [case.name for case in CASES if case.cli]
    assert cli == [
        "moments-uint16",
        "moments-float32",
        "fill-gaps",
        "read-hdf5",
        "spikes-trace-10k",
        "extract-uint16-memory",
        "online-update-uint16",
    ]


def test_case_size_quick_full_and_environment():
    from sima_fast.bench.cases import get_case

    case = get_case("online-update-uint16")
    env = {"SIMA_FAST_BENCH_ONLINE_FRAMES": "77"}
    assert case.size(quick=True, environ=env) == case.quick
    assert case.size(environ={}) == case.full
    assert case.size(environ=env) == {**case.full, "updates": 77}
    with pytest.raises(KeyError):
        get_case("no such case")


def test_time_case_checks_every_answer(tmp_path):
    from sima_fast.bench.cases import get_case

    case = get_case("moments-uint16")
    inputs = case.setup(str(tmp_path), frames=16)
    result = bench.time_case(case, inputs, budget=0.0)
    assert result.work == case.work and result.size == "16×512×512 uint16"
    assert set(result.baselines) == {"numpy+scipy", "numpy mean"}
    assert result.nbytes == inputs["movie"].nbytes and result.ours > 0
    # a wrong answer does not pass
    mean, std, kurtosis = case.ours.run(inputs)
    with pytest.raises(AssertionError):
        case.check(inputs, "ours", (mean, std * 1.001, kurtosis))


def test_gap_filling_case_checks_whole_movie(tmp_path):
    from sima_fast.bench.cases import get_case

    case = get_case("fill-gaps")
    inputs = case.setup(str(tmp_path), frames=12)
    assert np.isnan(inputs["movie"]).any()
    for impl in case.implementations:
        result = impl.run(inputs)
        case.check(inputs, impl.name, result)
    filled = case.ours.run(inputs).copy()
    filled[5, 1] += 1.0  # off the checked subset of pixels: caught by the whole-movie check
    with pytest.raises(AssertionError):
        case.check(inputs, "ours", filled)


def test_unavailable_baseline_is_skipped_with_a_note():
    from sima_fast.bench.cases import BenchCase, Implementation, Inputs

    def setup(scratch, n):
        return Inputs(f"{n} values", None, {"x": np.arange(n)})

    def check(inputs, name, result):
        assert result == inputs["x"].sum()

    case = BenchCase(
        name="toy",
        work="toy sum",
        suite="none",
        setup=setup,
        implementations=(
            Implementation("ours", "ours", lambda inputs: inputs["x"].sum(), rounds=2),
            Implementation("python", "python sum", lambda inputs: sum(inputs["x"].tolist())),
            Implementation(
                "missing", "missing", lambda inputs: 0, unavailable=lambda: "not installed"
            ),
            Implementation("suite_only", "suite only", lambda inputs: 0, cli=False),
        ),
        check=check,
        quick={"n": 10},
        full={"n": 100},
    )
    result = bench.time_case(case, case.setup("", **case.size(quick=True)), budget=1.0)
    assert list(result.baselines) == ["python sum"]
    assert result.notes == ["not installed"]
    assert case.implementation("missing").why_unavailable() == "not installed"


def test_mean_var_sums_matches_numpy():
    from sima_fast.kernels.bandwidth import mean_var_sums

    rng = np.random.default_rng(5)
    x = rng.integers(0, 4096, size=(19, 300)).astype(np.float32)
    shift = np.full(300, 2000.0)
    s1 = np.zeros(300)
    s2 = np.zeros(300)
    mean_var_sums(x, shift, s1, s2, block=64)
    d = x[:16].astype(np.float64) - shift  # whole groups of eight frames only
    np.testing.assert_allclose(s1, d.sum(0), rtol=1e-12)
    np.testing.assert_allclose(s2, (d * d).sum(0), rtol=1e-12)
    with pytest.raises(ValueError):
        mean_var_sums(x.T, shift, s1, s2, 64)

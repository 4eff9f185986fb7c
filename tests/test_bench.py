"""The benchmark harness: its table, plot and bandwidth probe (timings are not asserted)."""

from __future__ import annotations

import gc
import importlib.util
import io
import json
import weakref
from pathlib import Path

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
    # a 16-byte cache: the 320 bytes of the projections row count as read from memory
    table = bench.markdown_table(_results(), bandwidth=10.0, cache_bytes=16)
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
        "extract-neuropil",
        "online-update-uint16",
        "motion-rigid",
    ]
    # slow cases run in the full `sima-fast bench` at a reduced size, never in --quick
    quick = [case.name for case in CASES if case.cli and case.cli_quick]
    assert "motion-rigid" not in quick and len(quick) == len(cli) - 1


def test_case_size_quick_full_and_environment():
    from sima_fast.bench.cases import get_case

    case = get_case("online-update-uint16")
    env = {"SIMA_FAST_BENCH_ONLINE_FRAMES": "77"}
    assert case.size(quick=True, environ=env) == case.quick
    assert case.size(environ={}) == case.full
    assert case.size(environ=env) == {**case.full, "updates": 77}
    motion = get_case("motion-rigid")
    assert motion.size(environ={}, cli=True) == motion.cli_size != motion.full
    assert motion.size(environ={}) == motion.full
    assert motion.size(environ={"SIMA_FAST_BENCH_MOTION_FRAMES": "50"}, cli=True) == {"frames": 50}
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


# -- the bandwidth share: only for working sets beyond the caches ----------------------------


def test_bandwidth_share_is_withheld_for_a_working_set_that_fits_the_caches():
    mib = 2**20
    small = bench.CaseResult("small", "in cache", 0.001, {"b": 0.002}, 100 * mib, [])
    large = bench.CaseResult("large", "in memory", 0.1, {"b": 0.2}, 200 * mib, [])
    unknown = bench.CaseResult("unknown", "no bytes", 0.1, {"b": 0.2}, None, [])
    assert not bench.in_memory(100 * mib, 32 * mib) and bench.in_memory(200 * mib, 32 * mib)
    assert small.bandwidth_share(bandwidth=10.0, cache_bytes=32 * mib) is None
    assert unknown.bandwidth_share(bandwidth=10.0, cache_bytes=32 * mib) is None
    share = large.bandwidth_share(bandwidth=10.0, cache_bytes=32 * mib)
    assert share == pytest.approx(200 * mib / 0.1 / 1e10)

    table = bench.markdown_table([small, large, unknown], bandwidth=10.0, cache_bytes=32 * mib)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()}
    assert rows["small"].endswith("| —¹ |")  # 100 MiB: within 4× a 32 MiB cache
    assert rows["large"].endswith(f"| 2.1 GB/s ({share:.0%}) |")
    assert rows["unknown"].endswith("| 2.0× |  |")  # no bytes, no share, no footnote mark
    footnote = table.splitlines()[-1]
    assert footnote.startswith("¹ No share") and "32 MiB" in footnote
    # every working set beyond the caches: no footnote
    only_large = bench.markdown_table([large], bandwidth=10.0, cache_bytes=32 * mib)
    assert "¹" not in only_large and len(only_large.splitlines()) == 3


def test_last_level_cache_is_read_from_sysfs_or_falls_back(tmp_path, monkeypatch):
    for index, (level, kind, size) in enumerate(
        [
            (1, "Data", "32K"),
            (1, "Instruction", "32K"),
            (2, "Unified", "1024K"),
            (3, "Unified", "16M"),
        ]
    ):
        d = tmp_path / f"index{index}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    assert bench.last_level_cache_bytes(str(tmp_path)) == 16 * 2**20
    monkeypatch.setattr(bench.os, "sysconf", lambda name: -1)
    assert bench.last_level_cache_bytes(str(tmp_path / "none")) == bench.DEFAULT_CACHE_BYTES
    assert bench.last_level_cache_bytes() > 0  # this machine's


# -- run_benchmarks holds one case's data at a time -----------------------------------------


def _toy_case(name: str, alive: list, seen: list):
    from sima_fast.bench.cases import BenchCase, Implementation, Inputs

    def setup(scratch, n):
        # every earlier case's inputs and data are gone before this one is built
        seen.append([ref() is None for ref in alive])
        data = np.arange(n, dtype=np.float64)
        inputs = Inputs(f"{n} values", data.nbytes, {"x": data})
        alive.extend([weakref.ref(inputs), weakref.ref(data)])
        return inputs

    def check(inputs, impl, result):
        assert result == inputs["x"].sum()

    return BenchCase(
        name=name,
        work=name,
        suite="none",
        setup=setup,
        implementations=(
            Implementation("ours", "ours", lambda inputs: inputs["x"].sum(), rounds=2),
            Implementation("python", "python sum", lambda inputs: sum(inputs["x"].tolist())),
        ),
        check=check,
        quick={"n": 1000},
        full={"n": 1000},
    )


def test_run_benchmarks_releases_each_case_before_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "memory_bandwidth", lambda nbytes: 10.0)
    alive: list = []
    seen: list = []
    cases = [_toy_case(f"toy {i}", alive, seen) for i in range(3)]
    out = io.StringIO()
    payload = bench.run_benchmarks(
        quick=True, json_path=str(tmp_path / "r.json"), out=out, cases=cases
    )
    assert seen == [[], [True, True], [True, True, True, True]]
    gc.collect()
    assert all(ref() is None for ref in alive)
    assert [r["work"] for r in payload["results"]] == ["toy 0", "toy 1", "toy 2"]
    # 8 kB per call fits any cache: no share, and the table says why
    assert all(r["bandwidth_share"] is None for r in payload["results"])
    assert payload["llc_bytes"] == bench.last_level_cache_bytes()
    assert "—¹" in out.getvalue() and "¹ No share" in out.getvalue()
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(payload))


def test_registry_scene_holds_one_movie_dtype_at_a_time():
    from sima_fast.bench.cases import release_shared, simulated_cells, simulated_rois

    release_shared()
    try:
        first = simulated_cells(3)
        as_float = simulated_cells(3, "float32")
        assert as_float["movie"].dtype == np.float32
        np.testing.assert_array_equal(as_float["movie"], first["movie"])
        ref = weakref.ref(first["movie"])
        del first
        gc.collect()
        assert ref() is None  # the uint16 movie is no longer kept
        assert simulated_rois() is as_float["rois"]  # the kept scene's ROIs
    finally:
        release_shared()


# -- benchmarks/report.py: which side is which ------------------------------------------------


def _report_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "report.py"
    spec = importlib.util.spec_from_file_location("bench_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entry(group: str, impl: str, median: float, nbytes: int | None = None) -> dict:
    info = {"bytes": nbytes} if nbytes else {}
    return {
        "group": group,
        "name": f"test_x[{impl}]",
        "params": {"impl": impl},
        "stats": {"median": median},
        "extra_info": info,
    }


def test_report_names_both_sides_of_every_ratio(tmp_path, capsys):
    report = _report_module()
    results = {
        "benchmarks": [
            _entry("moments-uint16", "ours", 0.05, 10**9),
            _entry("moments-uint16", "numpy_mean", 0.25, 10**9),
            _entry("dask-projections-hdf5", "dask_2_workers", 0.40, 10**9),
            _entry("dask-projections-hdf5", "dask_1_worker", 0.60, 10**9),
            _entry("dask-projections-hdf5", "here_1_thread", 0.30, 10**9),
            _entry("dask-projections-hdf5", "here", 0.21, 10**9),
            # a file written before the two-worker run was renamed
            _entry("dask-extraction-zarr", "ours", 0.50),
            _entry("dask-extraction-zarr", "here", 0.26),
        ]
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert report.main([str(path)]) == 0
    text = capsys.readouterr().out
    baselines, dask = text.strip().split("\n\n")
    header = baselines.splitlines()[0]
    assert "ours (sima_fast) median" in header
    assert "| baseline / ours (above 1: ours faster) |" in header
    assert "| moments-uint16 |" in baselines and "| 5.00× |" in baselines
    assert "dask" not in baselines
    header = dask.splitlines()[0]
    assert "| A | A median |" in header and "| B / A (above 1: A faster) |" in header
    assert "ours" not in dask
    rows = dask.splitlines()[2:]
    assert (
        "| dask-projections-hdf5 | 1.00 GB | Dask, 2 workers | 400.0 ms | 2.50 "
        "| single process, 2 threads | 210.0 ms | 4.76 | 0.52× |" in rows
    )
    assert any(
        "| Dask, 2 workers |" in r and "| Dask, 1 worker |" in r and "1.50×" in r for r in rows
    )
    assert any(
        "| single process, 1 thread |" in r and "| Dask, 1 worker |" in r and "2.00×" in r
        for r in rows
    )
    assert any(
        r.startswith("| dask-extraction-zarr |") and "Dask, 2 workers" in r and "0.52×" in r
        for r in rows
    )

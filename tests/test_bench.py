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
